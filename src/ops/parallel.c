/* parallel.c - slices over the thread pool. */
#include "ops/parallel.h"

typedef struct {
  wk_slice_fn fn;
  const void *arg;
} wk_slice_job;

static void wk_slice_body(void *arg, int64_t begin, int64_t end) {
  const wk_slice_job *job = arg;
  job->fn(job->arg, begin, end);
}

void wk_parallel_slices(wk_ctx *ctx, int64_t n, int64_t cost_per_item, wk_slice_fn fn,
                        const void *arg) {
  enum { WK_MIN_WORK = 1 << 15 };
  if (cost_per_item < 1) cost_per_item = 1;
  if (ctx->impl == WK_IMPL_REF || n * cost_per_item < WK_MIN_WORK || ctx->n_threads < 2) {
    fn(arg, 0, n);
    return;
  }
  int64_t grain = (WK_MIN_WORK + cost_per_item - 1) / cost_per_item;
  wk_slice_job job = {fn, arg};
  wk_pool_parallel_for(ctx->pool, n, grain, wk_slice_body, &job);
}
