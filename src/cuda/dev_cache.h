/* dev_cache.h - a caching allocator for device memory (cuda_backend.c's
 * wk_cuda_malloc and wk_cuda_free go through one per GPU).
 *
 * cudaMalloc and cudaFree are slow (a millisecond or more each) and cudaFree
 * waits for the whole device. A network's buffers are made again whenever they
 * move: a larger batch, the convolution workspace resized while algorithms are
 * timed, a network made for another model in the same process. The cache keeps
 * freed memory and hands it out again; the device gets memory back only when
 * an allocation would otherwise fail, or when asked (wk_dcache_release).
 *
 * The scheme is PyTorch's CUDA caching allocator, simplified for an allocation
 * pattern with no allocation inside a training step:
 * - requests are rounded up to WK_DCACHE_ROUND bytes (so every block stays
 *   that aligned);
 * - small requests (at most WK_DCACHE_SMALL) share WK_DCACHE_SMALL_SEGMENT
 *   segments; larger ones come from segments of WK_DCACHE_MID_SEGMENT bytes
 *   below WK_DCACHE_MID, else the request rounded up to WK_DCACHE_LARGE_ROUND.
 *   A request takes the smallest free block of its pool that fits (best fit)
 *   and splits off the rest when that is at least WK_DCACHE_ROUND (small pool)
 *   or more than WK_DCACHE_SMALL (large pool); neighbours in one segment merge
 *   again once both are free.
 * - Stream safety without streams: a freed block may still be read or written
 *   by work queued on the device, so it stays "pending" until the device has
 *   finished all its work. An allocation that finds no free block but pending
 *   ones waits for the device (ops.sync) once and then may use them; this is
 *   never more waiting than cudaFree, which synchronises the device every time.
 * - Out of device memory: wait for the device, give back every segment with
 *   nothing in use, try once more; a large request then tries a segment of
 *   just its size (rounded to WK_DCACHE_LARGE_ROUND); then it fails with
 *   WK_ERR_NOMEM and a message saying how much is held and how much in use.
 * - With caching off (wk_dcache_create's `caching` false, $WHISKER_GPU_CACHE=0
 *   for the CUDA one) every request is its own device allocation and every
 *   free gives it back at once: the plain cudaMalloc behaviour, for comparison.
 *
 * Every call costs O(blocks held): fine for the few hundred buffers a network
 * holds, made outside the training step. Not thread safe: the caller locks.
 * No CUDA in here (the device calls are the ops below), so the allocator is
 * tested on the CPU (tests/test_dev_cache.c). */
#ifndef WK_DEV_CACHE_H
#define WK_DEV_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define WK_DCACHE_ROUND ((size_t)512)
#define WK_DCACHE_SMALL ((size_t)1 << 20)               /* 1 MiB */
#define WK_DCACHE_SMALL_SEGMENT ((size_t)2 << 20)       /* 2 MiB */
#define WK_DCACHE_MID ((size_t)10 << 20)                /* 10 MiB */
#define WK_DCACHE_MID_SEGMENT ((size_t)20 << 20)        /* 20 MiB */
#define WK_DCACHE_LARGE_ROUND ((size_t)2 << 20)         /* 2 MiB */

/* The device underneath. Each returns WK_OK or fails with a message
 * (wk_fail); alloc fails with WK_ERR_NOMEM exactly when the device has no room
 * (the error that releasing cached memory may cure). */
typedef struct wk_dcache_ops {
  void *ctx;
  wk_status (*alloc)(void *ctx, size_t n_bytes, void **out);
  wk_status (*free)(void *ctx, void *p);
  wk_status (*sync)(void *ctx); /* returns once all work queued on the device is done */
} wk_dcache_ops;

typedef struct wk_dcache_stats {
  size_t allocated_bytes;      /* in blocks handed out: the rounded request, plus in the
                                * large pool a rest too small to split off (at most
                                * WK_DCACHE_SMALL) */
  size_t reserved_bytes;       /* in segments held from the device */
  size_t peak_allocated_bytes; /* the largest each has been */
  size_t peak_reserved_bytes;
  int64_t n_allocs;    /* requests of at least one byte that succeeded */
  int64_t n_hits;      /* of those, served from memory already held */
  int64_t n_segments;  /* device allocations made (ops.alloc that succeeded) */
  int64_t n_releases;  /* segments given back (ops.free) */
  int64_t n_syncs;     /* waits for the device (ops.sync) */
  int64_t n_oom_retries; /* times the cache was emptied to retry an allocation */
} wk_dcache_stats;

/* n_bytes in MiB, for messages. */
static inline double wk_mib(size_t n_bytes) { return (double)n_bytes / 1048576.0; }

typedef struct wk_dcache wk_dcache;

/* A cache over `ops` (copied). */
wk_status wk_dcache_create(const wk_dcache_ops *ops, bool caching, wk_dcache **out);
/* Gives every segment back, blocks still handed out included (the caller
 * knows nothing uses them any more); NULL is a no-op. */
void wk_dcache_destroy(wk_dcache *c);

/* n_bytes of device memory, WK_DCACHE_ROUND-aligned relative to the segment
 * (the device's own alignment beyond that); n_bytes 0 gives NULL and WK_OK.
 * WK_ERR_NOMEM with a message when the device has no room even after the
 * cache was emptied (nothing is leaked; the cache stays usable). */
wk_status wk_dcache_alloc(wk_dcache *c, size_t n_bytes, void **out);
/* Returns p (from wk_dcache_alloc of this cache) to the cache; NULL is a
 * no-op. A pointer the cache did not hand out, or one already freed, is
 * refused with WK_ERR_INVALID_ARG and changes nothing. */
wk_status wk_dcache_free(wk_dcache *c, void *p);
/* Whether p is a block this cache handed out and has not taken back. */
bool wk_dcache_owns(const wk_dcache *c, const void *p);
/* Waits for the device if blocks are pending, then gives back every segment
 * with nothing in use (PyTorch's empty_cache). */
wk_status wk_dcache_release(wk_dcache *c);

void wk_dcache_get_stats(const wk_dcache *c, wk_dcache_stats *out);
/* Forgets the peaks: they restart at the current values. */
void wk_dcache_reset_peaks(wk_dcache *c);

#endif
