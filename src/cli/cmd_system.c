/* cmd_system.c - `whisker system`: what this build can run on. */
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
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
           "instruction set), the default thread count and the CUDA devices.\n");
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
  char buf[4096];
  wk_status s = wk_cuda_describe(buf, sizeof buf);
  printf("%s", s == WK_OK ? buf : "gpu: ");
  if (s != WK_OK) printf("%s\n", wk_last_error());
  wk_ctx_destroy(ctx);
  return WK_EXIT_OK;
}
