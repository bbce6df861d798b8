/* context.h - the execution context every op receives.
 *
 * A context owns the thread pool, the oneDNN engine and stream, and the choice of
 * implementation. There is no global state: two contexts can coexist (e.g. one
 * forcing the reference and one using the fast path, as the op tests do).
 *
 * Environment: WHISKER_IMPL=ref|cpu forces an implementation; WHISKER_THREADS=N
 * sets the default thread count (else every online core). */
#ifndef WK_CONTEXT_H
#define WK_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "core/threadpool.h"

typedef enum wk_impl {
  WK_IMPL_REF = 0,  /* plain loops: the oracle */
  WK_IMPL_CPU,      /* CPU fast path: oneDNN and threaded loops, falls back to ref */
  WK_IMPL_CUDA,     /* GPU backend */
} wk_impl;

typedef struct wk_dnnl wk_dnnl; /* oneDNN engine/stream, see ops/dnnl_util.h */
struct wk_gpu_algos;            /* timed cuDNN convolution algorithms, see cuda/cuda.h */

typedef struct wk_ctx {
  wk_impl impl;
  int n_threads;
  wk_pool *pool;
  wk_dnnl *dnnl;
  void *scratch;        /* shared temporary memory of the fast paths, see wk_ctx_scratch */
  size_t scratch_bytes;
  struct wk_gpu_algos *gpu_algos; /* shared by the context's networks on GPUs: made by the
                                   * first (nn/exec_gpu.c), freed with the context */
} wk_ctx;

/* The cores this process may run on: its CPU affinity (taskset, Slurm,
 * cgroup cpusets), not the machine's count, and no more than its cgroups'
 * CPU quota allows (docker --cpus; core/hostres.h); the default thread
 * count. */
int wk_cpu_count(void);

/* n_threads <= 0 means WHISKER_THREADS, else every online core. The
 * implementation is WK_IMPL_CPU unless WHISKER_IMPL says otherwise. Note that
 * oneDNN runs on OpenMP, whose thread count is process-wide: the last context
 * created sets it. */
wk_status wk_ctx_create(wk_ctx **out, int n_threads);
void wk_ctx_destroy(wk_ctx *ctx);

/* A 64-byte aligned scratch buffer of at least `bytes`, valid until the next
 * call (one op at a time uses it; its contents do not survive the op). */
wk_status wk_ctx_scratch(wk_ctx *ctx, size_t bytes, void **out);

/* Parses "ref", "cpu" or "cuda". */
wk_status wk_impl_parse(const char *name, wk_impl *out);
const char *wk_impl_name(wk_impl impl);

#endif
