/* cmd_system.c - `whisker system`: what this build can run on. */
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/omp_wait.h"
#include "core/hostres.h"
#include "cuda/cuda.h"
#include "whisker.h"

static const char *wk_isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "SSE4.1";
    case dnnl_cpu_isa_avx: return "AVX";
    case dnnl_cpu_isa_avx2: return "AVX2";
    case dnnl_cpu_isa_avx512_core: return "AVX-512";
    case dnnl_cpu_isa_avx512_core_vnni: return "AVX-512 VNNI";
    case dnnl_cpu_isa_avx512_core_bf16: return "AVX-512 BF16";
    case dnnl_cpu_isa_avx512_core_amx: return "AVX-512 AMX";
    default: return "generic";
  }
}

int wk_cmd_system(int argc, char **argv) {
  if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
    printf("usage: whisker system\n\nPrints the version, the CPU backend (oneDNN and its "
           "instruction set), the default thread count (the CPUs the process may run on: its\n"
           "affinity and its control group's CPU quota), the memory available (the system's\n"
           "and its control group's limit) and the CUDA devices.\n");
    return WK_EXIT_OK;
  }
  if (argc > 0) {
    fprintf(stderr, "whisker system: unexpected argument '%s'\n", argv[0]);
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx = NULL;
  if (wk_ctx_create(&ctx, 0) != WK_OK) {
    fprintf(stderr, "whisker system: %s\n", wk_last_error());
    return WK_EXIT_FAIL;
  }
  const dnnl_version_t *v = dnnl_version();
  printf("whisker %s\n", wk_version());
  printf("cpu: oneDNN %d.%d.%d, %s, %d thread%s, implementation %s\n", v->major, v->minor,
         v->patch, wk_isa_name(dnnl_get_effective_cpu_isa()), ctx->n_threads,
         ctx->n_threads == 1 ? "" : "s", wk_impl_name(ctx->impl));
#ifdef WK_HAVE_OMP_WAIT
  const char *wait = wk_omp_wait_policy();
#else
  const char *wait = NULL;
#endif
  const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
  if (wait) printf("openmp: idle threads spin briefly, then sleep (%s, whisker's default)\n", wait);
  else printf("openmp: idle threads wait as OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s say\n",
              policy ? policy : "(unset)", spin ? spin : "(unset)");
  const int quota = wk_cgroup_cpu_quota("");
  if (quota > 0) printf("cpu quota: %d CPU%s (control group)\n", quota, quota == 1 ? "" : "s");
  wk_host_mem m;
  if (wk_host_mem_read("", &m)) {
    /* MB of 2^20 bytes, as the out-of-memory messages count them */
    if (m.sys_avail != SIZE_MAX) printf("memory: %zu MB available", m.sys_avail >> 20);
    else printf("memory: the system's available memory unknown");
    if (m.cg_limit)
      printf("; control group limit %zu MB, leaving %zu MB", m.cg_limit >> 20, m.cg_room >> 20);
    printf("\n");
  }
  char buf[4096];
  wk_status s = wk_cuda_describe(buf, sizeof buf);
  printf("%s", s == WK_OK ? buf : "gpu: ");
  if (s != WK_OK) printf("%s\n", wk_last_error());
  wk_ctx_destroy(ctx);
  return WK_EXIT_OK;
}
