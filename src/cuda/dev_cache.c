/* dev_cache.c - the caching device-memory allocator (dev_cache.h has the
 * scheme and the contract).
 *
 * The blocks live in one array sorted by address. A segment (one ops.alloc)
 * is a run of consecutive blocks, its first marked `head`; the blocks of a
 * segment tile it without gaps, so a block's neighbours in its segment are its
 * neighbours in the array (up to the next head). */
#include "cuda/dev_cache.h"

#include <stdlib.h>
#include <string.h>

typedef enum wk_dblock_state { WK_DB_FREE, WK_DB_USED, WK_DB_PENDING } wk_dblock_state;

typedef struct wk_dblock {
  char *ptr;
  size_t n_bytes;
  uint8_t state; /* wk_dblock_state */
  bool head;     /* the first block of its segment: ptr is what ops.alloc gave */
  bool large;    /* the pool: requests above WK_DCACHE_SMALL */
} wk_dblock;

struct wk_dcache {
  wk_dcache_ops ops;
  bool caching;
  wk_dblock *b; /* sorted by ptr */
  size_t n, cap;
  size_t n_pending;
  wk_dcache_stats st;
};

static size_t wk_round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* The segment a request of `size` (rounded) is carved from. */
static size_t wk_segment_bytes(size_t size) {
  if (size <= WK_DCACHE_SMALL) return WK_DCACHE_SMALL_SEGMENT;
  if (size < WK_DCACHE_MID) return WK_DCACHE_MID_SEGMENT;
  return wk_round_up(size, WK_DCACHE_LARGE_ROUND);
}

wk_status wk_dcache_create(const wk_dcache_ops *ops, bool caching, wk_dcache **out) {
  WK_ASSERT(ops && ops->alloc && ops->free && ops->sync && out);
  *out = NULL;
  wk_dcache *c = calloc(1, sizeof *c);
  if (!c) return wk_fail(WK_ERR_NOMEM, "out of memory");
  c->ops = *ops;
  c->caching = caching;
  *out = c;
  return WK_OK;
}

void wk_dcache_destroy(wk_dcache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++)
    if (c->b[i].head) (void)c->ops.free(c->ops.ctx, c->b[i].ptr);
  free(c->b);
  free(c);
}

/* Room for `more` blocks beyond n, so what follows cannot fail half-way. */
static wk_status wk_reserve(wk_dcache *c, size_t more) {
  if (c->n + more <= c->cap) return WK_OK;
  size_t cap = c->cap ? c->cap * 2 : 64;
  while (cap < c->n + more) cap *= 2;
  wk_dblock *b = realloc(c->b, cap * sizeof *b);
  if (!b) return wk_fail(WK_ERR_NOMEM, "out of memory");
  c->b = b;
  c->cap = cap;
  return WK_OK;
}

static void wk_insert(wk_dcache *c, size_t at, wk_dblock blk) {
  WK_ASSERT(c->n < c->cap && at <= c->n);
  memmove(&c->b[at + 1], &c->b[at], (c->n - at) * sizeof *c->b);
  c->b[at] = blk;
  c->n++;
}

/* The index of the first block at or after p. */
static size_t wk_lower_bound(const wk_dcache *c, const char *p) {
  size_t lo = 0, hi = c->n;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (c->b[mid].ptr < p) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* The index of the block starting at p, or c->n. */
static size_t wk_find(const wk_dcache *c, const void *p) {
  const size_t i = wk_lower_bound(c, p);
  return i < c->n && c->b[i].ptr == p ? i : c->n;
}

/* The smallest free block of the pool that holds `size`, or c->n. */
static size_t wk_best_fit(const wk_dcache *c, bool large, size_t size) {
  size_t best = c->n;
  for (size_t i = 0; i < c->n; i++) {
    const wk_dblock *b = &c->b[i];
    if (b->state != WK_DB_FREE || b->large != large || b->n_bytes < size) continue;
    if (best == c->n || b->n_bytes < c->b[best].n_bytes) best = i;
  }
  return best;
}

/* Merges every free block into a free predecessor of its segment. */
static void wk_coalesce(wk_dcache *c) {
  size_t w = 0;
  for (size_t r = 0; r < c->n; r++) {
    const wk_dblock b = c->b[r];
    if (w > 0 && !b.head && b.state == WK_DB_FREE && c->b[w - 1].state == WK_DB_FREE) {
      WK_ASSERT(c->b[w - 1].ptr + c->b[w - 1].n_bytes == b.ptr);
      c->b[w - 1].n_bytes += b.n_bytes;
      continue;
    }
    c->b[w++] = b;
  }
  c->n = w;
}

/* Waits for the device; the pending blocks are then free (and merged). */
static wk_status wk_flush_pending(wk_dcache *c) {
  if (c->n_pending == 0) return WK_OK;
  c->st.n_syncs++;
  WK_TRY(c->ops.sync(c->ops.ctx));
  for (size_t i = 0; i < c->n; i++)
    if (c->b[i].state == WK_DB_PENDING) c->b[i].state = WK_DB_FREE;
  c->n_pending = 0;
  wk_coalesce(c);
  return WK_OK;
}

/* Gives back every segment that is one free block; *n_released counts them. */
static wk_status wk_release_free(wk_dcache *c, int64_t *n_released) {
  *n_released = 0;
  wk_status s = WK_OK;
  size_t w = 0;
  for (size_t r = 0; r < c->n; r++) {
    const wk_dblock b = c->b[r];
    const bool whole = b.head && (r + 1 == c->n || c->b[r + 1].head);
    if (s == WK_OK && whole && b.state == WK_DB_FREE) {
      s = c->ops.free(c->ops.ctx, b.ptr);
      if (s == WK_OK) {
        c->st.reserved_bytes -= b.n_bytes;
        c->st.n_releases++;
        (*n_released)++;
        continue;
      }
    }
    c->b[w++] = b;
  }
  c->n = w;
  return s;
}

wk_status wk_dcache_release(wk_dcache *c) {
  WK_TRY(wk_flush_pending(c));
  int64_t n = 0;
  return wk_release_free(c, &n);
}

/* A new segment of seg_bytes as one free block; *at its index. */
static wk_status wk_new_segment(wk_dcache *c, size_t seg_bytes, bool large, size_t *at) {
  void *p = NULL;
  WK_TRY(c->ops.alloc(c->ops.ctx, seg_bytes, &p));
  WK_ASSERT(p);
  c->st.n_segments++;
  c->st.reserved_bytes += seg_bytes;
  if (c->st.reserved_bytes > c->st.peak_reserved_bytes)
    c->st.peak_reserved_bytes = c->st.reserved_bytes;
  *at = wk_lower_bound(c, p);
  wk_insert(c, *at, (wk_dblock){.ptr = p, .n_bytes = seg_bytes, .state = WK_DB_FREE,
                                .head = true, .large = large});
  return WK_OK;
}

/* A segment for `size`; when the device has no room, the cache emptied and
 * the same again, then the smallest segment that holds the request. */
static wk_status wk_grow(wk_dcache *c, size_t size, bool large, size_t *at) {
  const size_t seg = c->caching ? wk_segment_bytes(size) : size;
  wk_status s = wk_new_segment(c, seg, large, at);
  if (s != WK_ERR_NOMEM || !c->caching) return s;
  WK_TRY(wk_flush_pending(c));
  int64_t released = 0;
  WK_TRY(wk_release_free(c, &released));
  if (released > 0) {
    c->st.n_oom_retries++;
    s = wk_new_segment(c, seg, large, at);
    if (s != WK_ERR_NOMEM) return s;
  }
  const size_t least = large ? wk_round_up(size, WK_DCACHE_LARGE_ROUND) : seg;
  if (least < seg) s = wk_new_segment(c, least, large, at);
  return s;
}

/* Hands out `size` bytes of free block i, the rest split off when large
 * enough to serve another request of its pool. */
static void wk_take(wk_dcache *c, size_t i, size_t size) {
  wk_dblock *b = &c->b[i];
  WK_ASSERT(b->state == WK_DB_FREE && b->n_bytes >= size);
  const size_t rest = b->n_bytes - size;
  const bool split = c->caching && (b->large ? rest > WK_DCACHE_SMALL : rest >= WK_DCACHE_ROUND);
  b->state = WK_DB_USED;
  if (split) {
    b->n_bytes = size;
    wk_insert(c, i + 1, (wk_dblock){.ptr = b->ptr + size, .n_bytes = rest,
                                    .state = WK_DB_FREE, .large = b->large});
    b = &c->b[i]; /* the insert may not move the array (reserved), but stay exact */
  }
  c->st.allocated_bytes += b->n_bytes;
  if (c->st.allocated_bytes > c->st.peak_allocated_bytes)
    c->st.peak_allocated_bytes = c->st.allocated_bytes;
  c->st.n_allocs++;
}

wk_status wk_dcache_alloc(wk_dcache *c, size_t n_bytes, void **out) {
  WK_ASSERT(c && out);
  *out = NULL;
  if (n_bytes == 0) return WK_OK;
  if (n_bytes > SIZE_MAX / 2)
    return wk_fail(WK_ERR_NOMEM, "device memory: a request of %zu bytes is too large", n_bytes);
  const size_t size = wk_round_up(n_bytes, WK_DCACHE_ROUND);
  const bool large = size > WK_DCACHE_SMALL;
  WK_TRY(wk_reserve(c, 2)); /* the new segment's block and the split-off rest */
  size_t i = c->caching ? wk_best_fit(c, large, size) : c->n;
  if (i == c->n && c->n_pending > 0) {
    WK_TRY(wk_flush_pending(c));
    i = wk_best_fit(c, large, size);
  }
  if (i < c->n) {
    c->st.n_hits++;
  } else {
    const wk_status s = wk_grow(c, size, large, &i);
    if (s == WK_ERR_NOMEM)
      return wk_fail(s, "out of device memory for %.1f MiB (%s); this process holds %.1f MiB, "
                     "%.1f MiB of it in use", wk_mib(size), wk_last_error(),
                     wk_mib(c->st.reserved_bytes), wk_mib(c->st.allocated_bytes));
    WK_TRY(s);
  }
  wk_take(c, i, size);
  *out = c->b[i].ptr;
  return WK_OK;
}

wk_status wk_dcache_free(wk_dcache *c, void *p) {
  WK_ASSERT(c);
  if (!p) return WK_OK;
  const size_t i = wk_find(c, p);
  if (i == c->n || c->b[i].state != WK_DB_USED)
    return wk_fail(WK_ERR_INVALID_ARG, "device memory %p was not handed out by this cache, or "
                   "was freed already", p);
  if (!c->caching) {
    WK_TRY(c->ops.free(c->ops.ctx, p));
    c->st.allocated_bytes -= c->b[i].n_bytes;
    c->st.reserved_bytes -= c->b[i].n_bytes;
    c->st.n_releases++;
    memmove(&c->b[i], &c->b[i + 1], (c->n - i - 1) * sizeof *c->b);
    c->n--;
    return WK_OK;
  }
  c->st.allocated_bytes -= c->b[i].n_bytes;
  c->b[i].state = WK_DB_PENDING;
  c->n_pending++;
  return WK_OK;
}

bool wk_dcache_owns(const wk_dcache *c, const void *p) {
  if (!c || !p) return false;
  const size_t i = wk_find(c, p);
  return i < c->n && c->b[i].state == WK_DB_USED;
}

void wk_dcache_get_stats(const wk_dcache *c, wk_dcache_stats *out) { *out = c->st; }

void wk_dcache_reset_peaks(wk_dcache *c) {
  c->st.peak_allocated_bytes = c->st.allocated_bytes;
  c->st.peak_reserved_bytes = c->st.reserved_bytes;
}
