/* parallel.c - slices over the context's threads.
 *
 * The slices run on OpenMP's threads, the ones oneDNN's primitives and whisker's own
 * kernels (conv2d_wino.c, conv2d_pwdw_own.c) run on, not on the context's pool of
 * threads of its own: OpenMP's threads spin for a while after each parallel region,
 * so a second set of threads woken right after a convolution competed with them for
 * the cores. The partition is the pool's (wk_pool_parallel_for): at most one
 * contiguous chunk per thread, of at least `grain` items, so results do not depend on
 * which runs them. */
#include "ops/parallel.h"

#include <omp.h>

void wk_parallel_slices(wk_ctx *ctx, int64_t n, int64_t cost_per_item, wk_slice_fn fn,
                        const void *arg) {
  if (n <= 0) return;
  if (cost_per_item < 1) cost_per_item = 1;
  if (ctx->impl == WK_IMPL_REF || n * cost_per_item < WK_PARALLEL_MIN_WORK || ctx->n_threads < 2 ||
      omp_in_parallel()) {
    fn(arg, 0, n);
    return;
  }
  const int64_t grain = (WK_PARALLEL_MIN_WORK + cost_per_item - 1) / cost_per_item;
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int n_chunks = max_chunks < ctx->n_threads ? (int)max_chunks : ctx->n_threads;
  if (n_chunks <= 1) {
    fn(arg, 0, n);
    return;
  }
  const int64_t chunk = (n + n_chunks - 1) / n_chunks;
#pragma omp parallel num_threads(n_chunks)
  { /* every chunk once, whatever the team OpenMP gives */
    const int tn = omp_get_num_threads();
    for (int c = omp_get_thread_num(); c < n_chunks; c += tn) {
      const int64_t begin = (int64_t)c * chunk, end = begin + chunk < n ? begin + chunk : n;
      if (begin < end) fn(arg, begin, end);
    }
  }
}
