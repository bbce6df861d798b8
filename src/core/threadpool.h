/* threadpool.h - a small fixed pool of worker threads for parallel loops.
 *
 * wk_pool_parallel_for splits [0, n) into at most one contiguous chunk per thread
 * (the caller's thread works too) and returns when every chunk is done. A call
 * made from inside a worker runs inline on that worker, so nesting cannot
 * deadlock. The partition depends on the thread count, so work that must give
 * bit-identical results for any thread count must not reduce across chunks. */
#ifndef WK_THREADPOOL_H
#define WK_THREADPOOL_H

#include <stdint.h>

#include "core/status.h"

typedef struct wk_pool wk_pool;

/* body(arg, begin, end) processes indices [begin, end). */
typedef void (*wk_range_fn)(void *arg, int64_t begin, int64_t end);

/* n_threads counts the calling thread; 1 creates no worker. */
wk_status wk_pool_create(wk_pool **out, int n_threads);
void wk_pool_destroy(wk_pool *pool);
int wk_pool_size(const wk_pool *pool);

/* Runs body over [0, n) in chunks of at least `grain` indices. pool may be NULL
 * (runs inline). */
void wk_pool_parallel_for(wk_pool *pool, int64_t n, int64_t grain, wk_range_fn body, void *arg);

#endif
