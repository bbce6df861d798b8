/* context.c - creation of the execution context. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "core/context.h"

#include <errno.h>
#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hostres.h"
#include "cuda/cuda.h"
#include "ops/dnnl_util.h"

wk_status wk_impl_parse(const char *name, wk_impl *out) {
  if (!strcmp(name, "ref")) *out = WK_IMPL_REF;
  else if (!strcmp(name, "cpu")) *out = WK_IMPL_CPU;
  else if (!strcmp(name, "cuda")) *out = WK_IMPL_CUDA;
  else return wk_fail(WK_ERR_INVALID_ARG, "unknown implementation '%s' (ref, cpu or cuda)", name);
  return WK_OK;
}

const char *wk_impl_name(wk_impl impl) {
  switch (impl) {
    case WK_IMPL_REF: return "ref";
    case WK_IMPL_CPU: return "cpu";
    case WK_IMPL_CUDA: return "cuda";
  }
  return "?";
}

static wk_status wk_threads_from_env(int *n) {
  const char *s = getenv("WHISKER_THREADS");
  if (s && *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > 1024)
      return wk_fail(WK_ERR_INVALID_ARG, "WHISKER_THREADS='%s': expected 1..1024", s);
    *n = (int)v;
    return WK_OK;
  }
  *n = wk_cpu_count();
  return WK_OK;
}

int wk_cpu_count(void) {
  cpu_set_t set;
  int n;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
    n = CPU_COUNT(&set);
  } else {
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    n = cores > 0 ? (int)cores : 1;
  }
  /* A CPU quota (docker --cpus, Kubernetes' limits, systemd's CPUQuota) lets
   * the process run Q CPUs' worth per period on any of them: more threads
   * than that are throttled together, each barrier then waits a period. */
  const int quota = wk_cgroup_cpu_quota("");
  return quota > 0 && quota < n ? quota : n;
}

wk_status wk_ctx_create(wk_ctx **out, int n_threads) {
  *out = NULL;
  if (n_threads <= 0) WK_TRY(wk_threads_from_env(&n_threads));
  wk_impl impl = WK_IMPL_CPU;
  const char *env_impl = getenv("WHISKER_IMPL");
  if (env_impl && *env_impl) {
    wk_status s = wk_impl_parse(env_impl, &impl);
    if (s != WK_OK) return wk_fail(s, "WHISKER_IMPL: %s", wk_last_error());
    /* No op dispatches to the GPU yet: refuse rather than run the CPU quietly. */
    if (impl == WK_IMPL_CUDA)
      return wk_fail(WK_ERR_UNSUPPORTED, "WHISKER_IMPL=cuda: the ops have no CUDA route in this "
                     "version (only ref and cpu)");
  }
  wk_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return wk_fail(WK_ERR_NOMEM, "context: out of memory");
  ctx->impl = impl;
  ctx->n_threads = n_threads;
  wk_status s = wk_pool_create(&ctx->pool, n_threads);
  if (s == WK_OK) s = wk_dnnl_create(&ctx->dnnl);
  if (s != WK_OK) {
    wk_ctx_destroy(ctx);
    return s;
  }
  omp_set_num_threads(n_threads);
  *out = ctx;
  return WK_OK;
}

wk_status wk_ctx_scratch(wk_ctx *ctx, size_t bytes, void **out) {
  if (bytes > ctx->scratch_bytes) {
    size_t want = (bytes + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(64, want);
    if (!p) return wk_fail(WK_ERR_NOMEM, "out of memory for %zu bytes of scratch", want);
    free(ctx->scratch);
    ctx->scratch = p;
    ctx->scratch_bytes = want;
  }
  *out = ctx->scratch;
  return WK_OK;
}

void wk_ctx_destroy(wk_ctx *ctx) {
  if (!ctx) return;
  wk_gpu_algos_destroy(ctx->gpu_algos);
  free(ctx->scratch);
  wk_dnnl_destroy(ctx->dnnl);
  wk_pool_destroy(ctx->pool);
  free(ctx);
}
