/* parallel.h - runs a kernel over independent slices on the context's threads
 * (OpenMP's, as oneDNN's: parallel.c). Slices never share outputs and kernels
 * do not reduce across slices, so the result is bit-identical for any thread
 * count and equal to one call over everything (the reference). */
#ifndef WK_OPS_PARALLEL_H
#define WK_OPS_PARALLEL_H

#include <stdint.h>

#include "core/context.h"

/* The least work (n * cost_per_item) worth more than one thread. */
enum { WK_PARALLEL_MIN_WORK = 1 << 15 };
/* fn(arg, begin, end) processes items [begin, end). Runs inline when the
 * context is the reference or the job is small (n * cost_per_item <
 * WK_PARALLEL_MIN_WORK). */
typedef void (*wk_slice_fn)(const void *arg, int64_t begin, int64_t end);
void wk_parallel_slices(wk_ctx *ctx, int64_t n, int64_t cost_per_item, wk_slice_fn fn,
                        const void *arg);

#endif
