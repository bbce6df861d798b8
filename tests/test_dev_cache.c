/* test_dev_cache.c - the caching device-memory allocator (src/cuda/dev_cache.c:
 * no CUDA in it), on the CPU. The device is a fake: segments are carved from
 * one 512-aligned arena, lowest gap first (so segments often touch, as
 * cudaMalloc's may), under a capacity in bytes. It counts its calls, knows
 * every segment it handed out (a free of anything else, a double free or a
 * leak fails the test), can be told to fail its next allocation, and fails
 * the test when a segment holding a block freed since the last sync is given
 * back before the device was waited for.
 *
 * Checked: n_bytes 0 and free(NULL); rounding to WK_DCACHE_ROUND and the
 * blocks' alignment; small requests sharing one WK_DCACHE_SMALL_SEGMENT and not
 * overlapping; the small and large pools apart; the large pool's segment sizes
 * (WK_DCACHE_MID_SEGMENT below WK_DCACHE_MID, else rounded to
 * WK_DCACHE_LARGE_ROUND), best fit and splitting; neighbours merging once free,
 * never across segments; a freed block pending until one sync, never handed
 * out before it, and no sync when a free block fits or nothing was freed; out
 * of memory: the cache emptied and the request retried once, a large request
 * then a segment of its own size (a small one none), then WK_ERR_NOMEM with a
 * message and nothing leaked; other device errors passed through without
 * emptying; pointers not handed out and double frees refused with nothing
 * changed; the statistics and their peaks; wk_dcache_release; caching off;
 * destroy with blocks still out; and a seeded random mix of 2,000 allocations,
 * frees and releases under a capacity that runs out, with every invariant
 * checked after every operation. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/dev_cache.h"
#include "test_util.h"

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)
#define WKT_MAX_SEGS 512

static size_t wkt_round(size_t n) {
  return (n + WK_DCACHE_ROUND - 1) / WK_DCACHE_ROUND * WK_DCACHE_ROUND;
}

/* ---- the fake device ---------------------------------------------------- */

typedef struct wkt_seg {
  uint8_t *p;
  size_t n;
  bool dirty; /* holds a block freed since the last sync */
} wkt_seg;

typedef struct wkt_dev {
  uint8_t *arena; /* the device's address space: segments are carved from it */
  size_t arena_bytes;
  size_t capacity; /* bytes the device holds at most */
  size_t live_bytes;
  int n_live;
  wkt_seg segs[WKT_MAX_SEGS];
  int64_t n_alloc_calls; /* every ops.alloc, failed ones included */
  int64_t n_allocs;      /* ops.alloc that succeeded */
  int64_t n_frees, n_syncs;
  size_t last_alloc;     /* the size of the last successful ops.alloc */
  wk_status fail_next;   /* WK_OK, or the status the next ops.alloc fails with */
  bool check_synced;     /* fail on giving back a dirty segment */
} wkt_dev;

static wkt_dev wkt_d;

static wk_status wkt_dev_alloc(void *ctx, size_t n, void **out) {
  wkt_dev *d = ctx;
  d->n_alloc_calls++;
  ck_assert_uint_gt(n, 0);
  ck_assert_ptr_nonnull(out);
  if (d->fail_next != WK_OK) {
    const wk_status s = d->fail_next;
    d->fail_next = WK_OK;
    return wk_fail(s, "fake device: injected failure of a %zu-byte allocation", n);
  }
  if (n > d->capacity - d->live_bytes)
    return wk_fail(WK_ERR_NOMEM, "fake device: %zu bytes wanted, %zu of %zu free", n,
                   d->capacity - d->live_bytes, d->capacity);
  ck_assert_int_lt(d->n_live, WKT_MAX_SEGS);
  /* the lowest gap that holds it: segments often end where the next begins,
   * as cudaMalloc's may */
  const size_t need = wkt_round(n);
  size_t at = 0;
  for (bool moved = true; moved;) {
    moved = false;
    for (int i = 0; i < d->n_live; i++) {
      const size_t lo = (size_t)(d->segs[i].p - d->arena), hi = lo + wkt_round(d->segs[i].n);
      if (at < hi && lo < at + need) {
        at = hi;
        moved = true;
      }
    }
  }
  ck_assert_msg(at + need <= d->arena_bytes, "the fake's address space is too small");
  uint8_t *p = d->arena + at;
  d->segs[d->n_live++] = (wkt_seg){.p = p, .n = n, .dirty = false};
  d->live_bytes += n;
  d->n_allocs++;
  d->last_alloc = n;
  *out = p;
  return WK_OK;
}

static wk_status wkt_dev_free(void *ctx, void *p) {
  wkt_dev *d = ctx;
  int i = 0;
  while (i < d->n_live && d->segs[i].p != p) i++;
  ck_assert_msg(i < d->n_live, "ops.free of %p, which the device did not hand out (or twice)", p);
  ck_assert_msg(!d->check_synced || !d->segs[i].dirty,
                "segment %p given back with a block freed since the last sync", p);
  d->live_bytes -= d->segs[i].n;
  d->segs[i] = d->segs[--d->n_live];
  d->n_frees++;
  return WK_OK;
}

static wk_status wkt_dev_sync(void *ctx) {
  wkt_dev *d = ctx;
  for (int i = 0; i < d->n_live; i++) d->segs[i].dirty = false;
  d->n_syncs++;
  return WK_OK;
}

/* The fake segment holding [p, p + n), or -1. */
static int wkt_seg_of(const void *p, size_t n) {
  const uintptr_t a = (uintptr_t)p;
  for (int i = 0; i < wkt_d.n_live; i++) {
    const uintptr_t b = (uintptr_t)wkt_d.segs[i].p;
    if (a >= b && a - b <= wkt_d.segs[i].n && n <= wkt_d.segs[i].n - (a - b)) return i;
  }
  return -1;
}

/* A cache over a fresh fake device of `capacity` bytes. */
static wk_dcache *wkt_setup(size_t capacity, bool caching) {
  memset(&wkt_d, 0, sizeof wkt_d);
  wkt_d.capacity = capacity;
  /* address space to spare (only what the tests write is ever touched) */
  wkt_d.arena_bytes = capacity == SIZE_MAX ? 256 * MiB : 8 * capacity;
  wkt_d.arena = aligned_alloc(512, wkt_d.arena_bytes);
  ck_assert_ptr_nonnull(wkt_d.arena);
  wkt_d.check_synced = caching; /* without caching, ops.free is cudaFree's own wait */
  const wk_dcache_ops ops = {
      .ctx = &wkt_d, .alloc = wkt_dev_alloc, .free = wkt_dev_free, .sync = wkt_dev_sync};
  wk_dcache *c = NULL;
  WKT_OK(wk_dcache_create(&ops, caching, &c));
  ck_assert_ptr_nonnull(c);
  return c;
}

/* Destroys the cache; the device must have everything back. */
static void wkt_teardown(wk_dcache *c) {
  wkt_d.check_synced = false; /* destroy: nothing uses the blocks any more */
  const int64_t frees = wkt_d.n_frees;
  const int live = wkt_d.n_live;
  wk_dcache_destroy(c);
  ck_assert_int_eq(wkt_d.n_live, 0);
  ck_assert_uint_eq(wkt_d.live_bytes, 0);
  ck_assert_int_eq(wkt_d.n_frees, frees + live);
  free(wkt_d.arena);
  wkt_d.arena = NULL;
}

static wk_dcache_stats wkt_stats(const wk_dcache *c) {
  wk_dcache_stats st;
  memset(&st, 0xa5, sizeof st);
  wk_dcache_get_stats(c, &st);
  return st;
}

/* The cache's counts agree with what the fake device saw. */
static void wkt_agree(const wk_dcache *c) {
  const wk_dcache_stats st = wkt_stats(c);
  ck_assert_uint_eq(st.reserved_bytes, wkt_d.live_bytes);
  ck_assert_int_eq(st.n_segments, wkt_d.n_allocs);
  ck_assert_int_eq(st.n_releases, wkt_d.n_frees);
  ck_assert_int_eq(st.n_syncs, wkt_d.n_syncs);
  ck_assert_uint_ge(st.peak_allocated_bytes, st.allocated_bytes);
  ck_assert_uint_ge(st.peak_reserved_bytes, st.reserved_bytes);
  ck_assert_uint_le(st.allocated_bytes, st.reserved_bytes);
}

static void wkt_same_stats(const wk_dcache_stats *a, const wk_dcache_stats *b) {
  ck_assert_uint_eq(a->allocated_bytes, b->allocated_bytes);
  ck_assert_uint_eq(a->reserved_bytes, b->reserved_bytes);
  ck_assert_uint_eq(a->peak_allocated_bytes, b->peak_allocated_bytes);
  ck_assert_uint_eq(a->peak_reserved_bytes, b->peak_reserved_bytes);
  ck_assert_int_eq(a->n_allocs, b->n_allocs);
  ck_assert_int_eq(a->n_hits, b->n_hits);
  ck_assert_int_eq(a->n_segments, b->n_segments);
  ck_assert_int_eq(a->n_releases, b->n_releases);
  ck_assert_int_eq(a->n_syncs, b->n_syncs);
  ck_assert_int_eq(a->n_oom_retries, b->n_oom_retries);
}

static void *wkt_alloc(wk_dcache *c, size_t n) {
  void *p = NULL;
  WKT_OK(wk_dcache_alloc(c, n, &p));
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_eq((uintptr_t)p % WK_DCACHE_ROUND, 0);
  ck_assert_msg(wkt_seg_of(p, n) >= 0, "block %p (%zu bytes) outside every segment", p, n);
  ck_assert(wk_dcache_owns(c, p));
  return p;
}

/* Frees p through the cache, marking its segment as holding a pending block. */
static void wkt_free(wk_dcache *c, void *p) {
  const int s = wkt_seg_of(p, 1);
  ck_assert_int_ge(s, 0);
  wkt_d.segs[s].dirty = true;
  WKT_OK(wk_dcache_free(c, p));
  ck_assert(!wk_dcache_owns(c, p));
}

static bool wkt_in_seg_of(const void *p, size_t n, const void *q) {
  const int s = wkt_seg_of(q, 1);
  return s >= 0 && wkt_seg_of(p, n) == s;
}

static bool wkt_disjoint(const void *p, size_t n, const void *q, size_t m) {
  const uintptr_t a = (uintptr_t)p, b = (uintptr_t)q;
  return a + n <= b || b + m <= a;
}

/* Block contents: a byte from the block's tag; all of a small block, the
 * first and last 4 KiB and three middle bytes of a big one. */
static uint8_t wkt_byte(int tag) { return (uint8_t)(tag * 151 + 17); }

static void wkt_fill(void *p, size_t n, int tag) {
  uint8_t *b = p;
  const uint8_t v = wkt_byte(tag);
  if (n <= 16 * KiB) {
    memset(b, v, n);
    return;
  }
  memset(b, v, 4 * KiB);
  memset(b + n - 4 * KiB, v, 4 * KiB);
  b[n / 3] = b[n / 2] = b[2 * n / 3] = v;
}

static bool wkt_intact(const void *p, size_t n, int tag) {
  const uint8_t *b = p;
  const uint8_t v = wkt_byte(tag);
  const size_t head = n <= 16 * KiB ? n : 4 * KiB;
  for (size_t i = 0; i < head; i++)
    if (b[i] != v) return false;
  if (n <= 16 * KiB) return true;
  for (size_t i = n - 4 * KiB; i < n; i++)
    if (b[i] != v) return false;
  return b[n / 3] == v && b[n / 2] == v && b[2 * n / 3] == v;
}

/* ---- the cases ---------------------------------------------------------- */

START_TEST(test_zero_and_null) {
  for (int caching = 0; caching < 2; caching++) {
    wk_dcache *c = wkt_setup(SIZE_MAX, caching);
    const wk_dcache_stats before = wkt_stats(c);
    ck_assert_uint_eq(before.allocated_bytes, 0);
    ck_assert_uint_eq(before.reserved_bytes, 0);
    ck_assert_int_eq(before.n_allocs, 0);
    void *p = &wkt_d;
    WKT_OK(wk_dcache_alloc(c, 0, &p));
    ck_assert_ptr_null(p);
    WKT_OK(wk_dcache_free(c, NULL));
    ck_assert(!wk_dcache_owns(c, NULL));
    const wk_dcache_stats after = wkt_stats(c);
    wkt_same_stats(&before, &after);
    ck_assert_int_eq(wkt_d.n_alloc_calls, 0);
    ck_assert_int_eq(wkt_d.n_syncs, 0);
    wkt_teardown(c);
  }
  wk_dcache_destroy(NULL);
}
END_TEST

/* 1, 511, 512 and 513 bytes are 512, 512, 512 and 1024 bytes of blocks, every
 * block 512-aligned within its segment (the fake's segments are 512-aligned). */
START_TEST(test_rounding) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  const size_t sizes[] = {1, 511, 512, 513};
  const size_t rounded[] = {512, 512, 512, 1024};
  void *p[4];
  size_t total = 0;
  for (int i = 0; i < 4; i++) {
    p[i] = wkt_alloc(c, sizes[i]);
    total += rounded[i];
    ck_assert_uint_eq(wkt_stats(c).allocated_bytes, total);
    const uintptr_t base = (uintptr_t)wkt_d.segs[wkt_seg_of(p[i], sizes[i])].p;
    ck_assert_uint_eq(((uintptr_t)p[i] - base) % WK_DCACHE_ROUND, 0);
    wkt_fill(p[i], rounded[i], i); /* the whole rounded block is the caller's */
  }
  for (int i = 0; i < 4; i++) {
    ck_assert(wkt_intact(p[i], rounded[i], i));
    for (int j = 0; j < i; j++) ck_assert(wkt_disjoint(p[i], rounded[i], p[j], rounded[j]));
  }
  ck_assert_int_eq(wkt_stats(c).n_segments, 1);
  for (int i = 3; i >= 0; i--) {
    wkt_free(c, p[i]);
    total -= rounded[i];
    ck_assert_uint_eq(wkt_stats(c).allocated_bytes, total);
  }
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* Small requests, up to WK_DCACHE_SMALL bytes, share one segment of
 * WK_DCACHE_SMALL_SEGMENT; the next segment comes only when none fits. */
START_TEST(test_small_share_one_segment) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  const size_t sizes[] = {1, 1000, 4096, 65536, 100000, 1536, 300000, WK_DCACHE_SMALL};
  enum { N = sizeof sizes / sizeof sizes[0] };
  void *p[N];
  size_t total = 0;
  for (int i = 0; i < N; i++) {
    p[i] = wkt_alloc(c, sizes[i]);
    wkt_fill(p[i], sizes[i], i);
    total += wkt_round(sizes[i]);
  }
  ck_assert_uint_lt(total, WK_DCACHE_SMALL_SEGMENT);
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_eq(st.n_segments, 1);
  ck_assert_int_eq(wkt_d.n_alloc_calls, 1);
  ck_assert_uint_eq(wkt_d.last_alloc, WK_DCACHE_SMALL_SEGMENT);
  ck_assert_uint_eq(st.reserved_bytes, WK_DCACHE_SMALL_SEGMENT);
  ck_assert_uint_eq(st.allocated_bytes, total);
  ck_assert_int_eq(st.n_allocs, N);
  ck_assert_int_eq(st.n_hits, N - 1);
  for (int i = 0; i < N; i++) {
    ck_assert_msg(wkt_intact(p[i], sizes[i], i), "block %d overwritten", i);
    ck_assert(wkt_in_seg_of(p[i], sizes[i], p[0]));
    for (int j = 0; j < i; j++)
      ck_assert_msg(wkt_disjoint(p[i], wkt_round(sizes[i]), p[j], wkt_round(sizes[j])),
                    "blocks %d and %d overlap", i, j);
  }
  /* what is left of the segment (under 1 MiB) does not hold another 1 MiB */
  void *q = wkt_alloc(c, WK_DCACHE_SMALL);
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_segments, 2);
  ck_assert_uint_eq(wkt_d.last_alloc, WK_DCACHE_SMALL_SEGMENT);
  ck_assert_uint_eq(st.reserved_bytes, 2 * WK_DCACHE_SMALL_SEGMENT);
  ck_assert(!wkt_in_seg_of(q, WK_DCACHE_SMALL, p[0]));
  for (int i = 0; i < N; i++) ck_assert(wkt_intact(p[i], sizes[i], i));
  for (int i = 0; i < N; i++) wkt_free(c, p[i]);
  wkt_free(c, q);
  st = wkt_stats(c);
  ck_assert_uint_eq(st.allocated_bytes, 0);
  ck_assert_uint_eq(st.reserved_bytes, 2 * WK_DCACHE_SMALL_SEGMENT); /* cached */
  ck_assert_int_eq(st.n_releases, 0);
  ck_assert_int_eq(st.n_syncs, 0); /* a free never waits */
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* A freed block is pending until the device has been waited for once; a free
 * block that fits is taken without waiting. */
START_TEST(test_reuse_waits_once) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  const size_t n = 12 * MiB; /* a segment of its own, exactly this size */
  void *x = wkt_alloc(c, n);
  ck_assert_uint_eq(wkt_d.last_alloc, n);
  wkt_free(c, x);
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_eq(st.n_syncs, 0);
  ck_assert_uint_eq(st.reserved_bytes, n);
  ck_assert_uint_eq(st.allocated_bytes, 0);
  void *x2 = wkt_alloc(c, n); /* only the pending block: one wait, then reused */
  ck_assert_ptr_eq(x2, x);
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_segments, 1);
  ck_assert_int_eq(st.n_hits, 1);
  ck_assert_int_eq(st.n_syncs, 1);
  ck_assert_int_eq(wkt_d.n_syncs, 1);

  /* three blocks pending: one wait makes all three free */
  void *y = wkt_alloc(c, n), *z = wkt_alloc(c, n);
  ck_assert_int_eq(wkt_stats(c).n_segments, 3);
  ck_assert_int_eq(wkt_stats(c).n_syncs, 1); /* nothing was pending */
  wkt_free(c, x2);
  wkt_free(c, y);
  wkt_free(c, z);
  void *a1 = wkt_alloc(c, n);
  ck_assert_int_eq(wkt_stats(c).n_syncs, 2);
  void *a2 = wkt_alloc(c, n); /* a free block fits: no wait */
  ck_assert_int_eq(wkt_stats(c).n_syncs, 2);
  ck_assert_ptr_ne(a1, a2);
  wkt_free(c, a1); /* pending again, beside one free block */
  void *a3 = wkt_alloc(c, n);
  ck_assert_int_eq(wkt_stats(c).n_syncs, 2);
  ck_assert_msg(a3 != a1, "a pending block handed out without a wait");
  ck_assert_ptr_ne(a3, a2);
  void *a4 = wkt_alloc(c, n); /* only the pending one left */
  ck_assert_ptr_eq(a4, a1);
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_syncs, 3);
  ck_assert_int_eq(st.n_segments, 3);
  ck_assert_int_eq(st.n_allocs, 8);
  ck_assert_int_eq(st.n_hits, 5);
  ck_assert_uint_eq(st.allocated_bytes, 3 * n);
  wkt_agree(c);

  /* small pool: the freed block is pending, the rest of the segment is free */
  void *s = wkt_alloc(c, 4096);
  wkt_fill(s, 4096, 1);
  wkt_free(c, s);
  void *s2 = wkt_alloc(c, 4096);
  ck_assert_int_eq(wkt_stats(c).n_syncs, 3);
  ck_assert_msg(wkt_disjoint(s2, 4096, s, 4096), "a pending block handed out without a wait");
  ck_assert(wkt_in_seg_of(s2, 4096, s));
  ck_assert_int_eq(wkt_stats(c).n_segments, 4);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

START_TEST(test_no_sync_without_free) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  const size_t sizes[] = {1,       4096,     WK_DCACHE_SMALL, 3 * MiB, 7 * MiB + 5,
                          12 * MiB, 2 * MiB, 900 * KiB,       30 * MiB, 64};
  for (int i = 0; i < 10; i++) wkt_alloc(c, sizes[i]);
  ck_assert_int_eq(wkt_stats(c).n_syncs, 0);
  WKT_OK(wk_dcache_release(c)); /* nothing pending, nothing to give back */
  const wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_eq(st.n_syncs, 0);
  ck_assert_int_eq(st.n_releases, 0);
  ck_assert_int_eq(wkt_d.n_syncs, 0);
  ck_assert_int_eq(st.n_allocs, 10);
  ck_assert_int_eq(st.n_allocs, st.n_hits + st.n_segments);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* Segment sizes: WK_DCACHE_MID_SEGMENT for a large request below WK_DCACHE_MID,
 * else the request rounded up to WK_DCACHE_LARGE_ROUND; large requests best fit
 * in one pool, apart from the small one. */
START_TEST(test_large_pool) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  void *b = wkt_alloc(c, 12 * MiB);
  ck_assert_uint_eq(wkt_d.last_alloc, 12 * MiB);
  void *d = wkt_alloc(c, 13 * MiB + 1);
  ck_assert_uint_eq(wkt_d.last_alloc, 14 * MiB);
  void *e = wkt_alloc(c, WK_DCACHE_MID); /* not below WK_DCACHE_MID */
  ck_assert_uint_eq(wkt_d.last_alloc, 10 * MiB);
  void *h = wkt_alloc(c, 11 * MiB);
  ck_assert_uint_eq(wkt_d.last_alloc, 12 * MiB);
  void *a = wkt_alloc(c, 5 * MiB);
  ck_assert_uint_eq(wkt_d.last_alloc, WK_DCACHE_MID_SEGMENT);
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_uint_eq(st.reserved_bytes, (12 + 14 + 10 + 12 + 20) * MiB);
  ck_assert_int_eq(st.n_segments, 5);
  ck_assert_int_eq(st.n_hits, 0);
  void *f = wkt_alloc(c, 3 * MiB); /* the 20 MiB segment's remainder */
  ck_assert(wkt_in_seg_of(f, 3 * MiB, a));
  ck_assert(wkt_disjoint(f, 3 * MiB, a, 5 * MiB));
  void *g = wkt_alloc(c, 12 * MiB); /* exactly what is left of it */
  ck_assert(wkt_in_seg_of(g, 12 * MiB, a));
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_segments, 5);
  ck_assert_int_eq(st.n_hits, 2);
  ck_assert_uint_eq(st.reserved_bytes, 68 * MiB);
  /* the tails of the 14 and 12 MiB segments (not more than WK_DCACHE_SMALL)
   * may stay with their blocks */
  ck_assert_uint_ge(st.allocated_bytes, (12 + 13 + 10 + 11 + 5 + 3 + 12) * MiB + 512);
  ck_assert_uint_le(st.allocated_bytes, (12 + 14 + 10 + 12 + 5 + 3 + 12) * MiB);
  (void)b;
  (void)d;
  (void)e;
  (void)h;
  wkt_agree(c);
  wkt_teardown(c);

  /* the pools apart: a large request never takes the small segment's free
   * space, a small one never the large segment's */
  c = wkt_setup(SIZE_MAX, true);
  void *s = wkt_alloc(c, 512);
  ck_assert_uint_eq(wkt_d.last_alloc, WK_DCACHE_SMALL_SEGMENT);
  void *l = wkt_alloc(c, WK_DCACHE_SMALL + 1); /* 1.5 MiB would fit in s's segment */
  ck_assert_uint_eq(wkt_d.last_alloc, WK_DCACHE_MID_SEGMENT);
  ck_assert(!wkt_in_seg_of(l, WK_DCACHE_SMALL + 1, s));
  void *t = wkt_alloc(c, WK_DCACHE_SMALL); /* at most WK_DCACHE_SMALL: small */
  ck_assert(wkt_in_seg_of(t, WK_DCACHE_SMALL, s));
  void *u = wkt_alloc(c, WK_DCACHE_SMALL); /* 512 short in s's segment: a new small one */
  ck_assert(!wkt_in_seg_of(u, WK_DCACHE_SMALL, l));
  ck_assert(!wkt_in_seg_of(u, WK_DCACHE_SMALL, s));
  ck_assert_uint_eq(wkt_d.last_alloc, WK_DCACHE_SMALL_SEGMENT);
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_segments, 3);
  ck_assert_uint_eq(st.reserved_bytes, 2 * WK_DCACHE_SMALL_SEGMENT + WK_DCACHE_MID_SEGMENT);
  ck_assert_uint_eq(st.allocated_bytes, 512 + (WK_DCACHE_SMALL + 512) + 2 * WK_DCACHE_SMALL);
  wkt_agree(c);
  wkt_teardown(c);

  /* best fit: the smallest free block that fits */
  c = wkt_setup(SIZE_MAX, true);
  void *w = wkt_alloc(c, 20 * MiB), *x = wkt_alloc(c, 14 * MiB), *y = wkt_alloc(c, 12 * MiB);
  wkt_free(c, w);
  wkt_free(c, x);
  wkt_free(c, y);
  void *y2 = wkt_alloc(c, 11 * MiB);
  ck_assert_msg(wkt_in_seg_of(y2, 11 * MiB, y), "11 MiB not from the 12 MiB block");
  void *x2 = wkt_alloc(c, 13 * MiB);
  ck_assert_msg(wkt_in_seg_of(x2, 13 * MiB, x), "13 MiB not from the 14 MiB block");
  void *w2 = wkt_alloc(c, 15 * MiB);
  ck_assert(wkt_in_seg_of(w2, 15 * MiB, w));
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_segments, 3);
  ck_assert_int_eq(st.n_hits, 3);
  ck_assert_int_eq(st.n_syncs, 1);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* Neighbours in a segment merge once both are free; split remainders are
 * blocks of their own; segments never merge. */
START_TEST(test_split_merge) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  /* 20 MiB: A, B, C of 6 MiB and 2 MiB left (more than WK_DCACHE_SMALL: split off) */
  void *a = wkt_alloc(c, 6 * MiB), *b = wkt_alloc(c, 6 * MiB), *cc = wkt_alloc(c, 6 * MiB);
  ck_assert(wkt_in_seg_of(b, 6 * MiB, a));
  ck_assert(wkt_in_seg_of(cc, 6 * MiB, a));
  ck_assert(wkt_disjoint(a, 6 * MiB, b, 6 * MiB));
  ck_assert(wkt_disjoint(a, 6 * MiB, cc, 6 * MiB));
  ck_assert(wkt_disjoint(b, 6 * MiB, cc, 6 * MiB));
  wkt_fill(cc, 6 * MiB, 3);
  void *r = wkt_alloc(c, WK_DCACHE_SMALL + 512); /* the 2 MiB remainder */
  ck_assert(wkt_in_seg_of(r, WK_DCACHE_SMALL + 512, a));
  ck_assert_int_eq(wkt_stats(c).n_segments, 1);
  wkt_free(c, r);
  wkt_free(c, a);
  wkt_free(c, b);
  /* 8 MiB fits neither A nor B nor the remainder alone: only A and B merged */
  void *q = wkt_alloc(c, 8 * MiB);
  ck_assert_int_eq(wkt_stats(c).n_segments, 1);
  const uintptr_t lo = (uintptr_t)a < (uintptr_t)b ? (uintptr_t)a : (uintptr_t)b;
  ck_assert_uint_ge((uintptr_t)q, lo);
  ck_assert_uint_le((uintptr_t)q + 8 * MiB, lo + 12 * MiB);
  ck_assert(wkt_disjoint(q, 8 * MiB, cc, 6 * MiB));
  ck_assert(wkt_intact(cc, 6 * MiB, 3));
  /* all free again: one block of the whole segment (merging on both sides) */
  wkt_free(c, q);
  wkt_free(c, cc);
  void *whole = wkt_alloc(c, 19 * MiB);
  ck_assert(wkt_in_seg_of(whole, 19 * MiB, a));
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_eq(st.n_segments, 1);
  ck_assert_int_eq(st.n_syncs, 2);
  ck_assert_uint_eq(st.reserved_bytes, WK_DCACHE_MID_SEGMENT);
  wkt_free(c, whole);
  /* freed in the other order (B before A), with C in the middle freed last */
  a = wkt_alloc(c, 6 * MiB);
  b = wkt_alloc(c, 6 * MiB);
  cc = wkt_alloc(c, 6 * MiB);
  ck_assert_int_eq(wkt_stats(c).n_segments, 1);
  wkt_free(c, b);
  wkt_free(c, a);
  q = wkt_alloc(c, 9 * MiB);
  ck_assert(wkt_in_seg_of(q, 9 * MiB, cc));
  ck_assert(wkt_disjoint(q, 9 * MiB, cc, 6 * MiB));
  ck_assert_int_eq(wkt_stats(c).n_segments, 1);
  wkt_agree(c);
  wkt_teardown(c);

  /* two free 12 MiB segments never make a 24 MiB block */
  c = wkt_setup(SIZE_MAX, true);
  void *x = wkt_alloc(c, 12 * MiB), *y = wkt_alloc(c, 12 * MiB);
  wkt_free(c, x);
  wkt_free(c, y);
  void *big = wkt_alloc(c, 24 * MiB);
  ck_assert_uint_eq(wkt_d.last_alloc, 24 * MiB);
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_segments, 3);
  ck_assert_uint_eq(st.reserved_bytes, 48 * MiB);
  ck_assert(wkt_disjoint(big, 24 * MiB, x, 12 * MiB));
  ck_assert(wkt_disjoint(big, 24 * MiB, y, 12 * MiB));
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* The device full of cached segments that cannot serve the request: the cache
 * waits, gives back every segment with nothing in use and tries once more. */
START_TEST(test_oom_release_retry) {
  wk_dcache *c = wkt_setup(40 * MiB, true);
  void *s = wkt_alloc(c, 4096); /* a small segment in use: kept */
  wkt_fill(s, 4096, 7);
  void *x[3];
  for (int i = 0; i < 3; i++) x[i] = wkt_alloc(c, 12 * MiB);
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, 38 * MiB);
  for (int i = 0; i < 3; i++) wkt_free(c, x[i]);
  const int64_t frees = wkt_d.n_frees, calls = wkt_d.n_alloc_calls;
  void *big = wkt_alloc(c, 24 * MiB); /* 38 + 24 > 40: only after giving back */
  ck_assert_int_eq(wkt_d.n_alloc_calls, calls + 2); /* refused, then once more */
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_eq(st.n_oom_retries, 1);
  ck_assert_int_eq(wkt_d.n_frees, frees + 3);
  ck_assert_int_eq(st.n_releases, 3);
  ck_assert_int_ge(st.n_syncs, 1);
  ck_assert_uint_eq(st.reserved_bytes, WK_DCACHE_SMALL_SEGMENT + 24 * MiB);
  ck_assert_uint_eq(st.allocated_bytes, 4096 + 24 * MiB);
  ck_assert_uint_eq(st.peak_reserved_bytes, 38 * MiB);
  ck_assert_int_eq(st.n_allocs, 5);
  ck_assert_int_eq(st.n_hits, 0);
  ck_assert(wk_dcache_owns(c, s));
  ck_assert(wkt_intact(s, 4096, 7));
  wkt_fill(big, 24 * MiB, 8);
  wkt_agree(c);

  /* more than the device holds: WK_ERR_NOMEM, the cache emptied, nothing leaked */
  wkt_free(c, big);
  void *p = &wkt_d;
  const int64_t calls2 = wkt_d.n_alloc_calls;
  WKT_FAILS(WK_ERR_NOMEM, wk_dcache_alloc(c, 64 * MiB, &p));
  ck_assert_ptr_null(p);
  ck_assert_int_ge(wkt_d.n_alloc_calls, calls2 + 2); /* tried again after giving back, */
  ck_assert_int_le(wkt_d.n_alloc_calls, calls2 + 3); /* at most once more its own size */
  const char *msg = wk_last_error();
  ck_assert_msg(strpbrk(msg, "0123456789") != NULL, "no sizes in \"%s\"", msg);
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_allocs, 5);
  ck_assert_uint_eq(st.allocated_bytes, 4096);
  ck_assert_uint_eq(st.reserved_bytes, WK_DCACHE_SMALL_SEGMENT); /* the 24 MiB went back */
  ck_assert_int_eq(wkt_d.n_live, 1);
  ck_assert_int_ge(st.n_oom_retries, 2);
  wkt_agree(c);
  /* and it still works */
  void *after = wkt_alloc(c, 30 * MiB);
  wkt_fill(after, 30 * MiB, 9);
  ck_assert(wkt_intact(s, 4096, 7));
  ck_assert(wkt_intact(after, 30 * MiB, 9));
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, WK_DCACHE_SMALL_SEGMENT + 30 * MiB);
  wkt_free(c, after);
  wkt_free(c, s);
  WKT_OK(wk_dcache_release(c));
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, 0);
  ck_assert_int_eq(wkt_d.n_live, 0);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* No room for a WK_DCACHE_MID_SEGMENT: a large request tries a segment of its
 * own size (rounded up to WK_DCACHE_LARGE_ROUND) before failing; a small one
 * has no such fallback. */
START_TEST(test_oom_own_size_segment) {
  wk_dcache *c = wkt_setup(39 * MiB, true);
  void *held = wkt_alloc(c, 24 * MiB);
  void *s = wkt_alloc(c, 4096);
  void *s2 = wkt_alloc(c, WK_DCACHE_SMALL); /* s's segment has room for it */
  ck_assert(wkt_in_seg_of(s2, WK_DCACHE_SMALL, s));
  void *t = wkt_alloc(c, WK_DCACHE_SMALL); /* a second small segment */
  ck_assert(!wkt_in_seg_of(t, WK_DCACHE_SMALL, s));
  wkt_free(c, t); /* that segment cached: 28 MiB held, 11 MiB of the device left */
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, 28 * MiB);
  const int64_t calls = wkt_d.n_alloc_calls;
  void *m = wkt_alloc(c, 5 * MiB); /* no 20 MiB segment even after giving back */
  ck_assert_uint_eq(wkt_d.last_alloc, 6 * MiB);
  ck_assert_int_eq(wkt_d.n_alloc_calls, calls + 3); /* 20 MiB, again, then 6 MiB */
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_eq(st.n_oom_retries, 1);
  ck_assert_int_eq(st.n_releases, 1);
  ck_assert_uint_eq(st.reserved_bytes, (24 + 2 + 6) * MiB);
  ck_assert_uint_ge(st.allocated_bytes, 24 * MiB + 4096 + WK_DCACHE_SMALL + 5 * MiB);
  ck_assert_uint_le(st.allocated_bytes, 24 * MiB + 4096 + WK_DCACHE_SMALL + 6 * MiB);
  wkt_fill(m, 5 * MiB, 1);
  /* 7 MiB left, nothing to give back: 5 MiB + 1 gets a segment of 6 */
  void *n = wkt_alloc(c, 5 * MiB + 1);
  ck_assert_uint_eq(wkt_d.last_alloc, 6 * MiB);
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, 38 * MiB);
  /* 1 MiB left: a small request (no room in s's segment) has no fallback */
  void *p = &wkt_d;
  WKT_FAILS(WK_ERR_NOMEM, wk_dcache_alloc(c, WK_DCACHE_SMALL, &p));
  ck_assert_ptr_null(p);
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, 38 * MiB);
  ck_assert(wkt_intact(m, 5 * MiB, 1));
  (void)held;
  (void)n;
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* Only WK_ERR_NOMEM empties the cache: another device error comes back as is. */
START_TEST(test_backend_error_passes_through) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  void *x = wkt_alloc(c, 12 * MiB);
  wkt_free(c, x); /* cached: could be given back */
  const wk_dcache_stats before = wkt_stats(c);
  const int64_t calls = wkt_d.n_alloc_calls;
  wkt_d.fail_next = WK_ERR_BACKEND;
  void *p = &wkt_d;
  WKT_FAILS(WK_ERR_BACKEND, wk_dcache_alloc(c, 24 * MiB, &p));
  ck_assert_int_eq(wkt_d.n_alloc_calls, calls + 1); /* no retry */
  const wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_eq(st.n_oom_retries, 0);
  ck_assert_int_eq(st.n_releases, 0);
  ck_assert_int_eq(wkt_d.n_frees, 0);
  ck_assert_uint_eq(st.reserved_bytes, 12 * MiB);
  ck_assert_int_eq(st.n_allocs, before.n_allocs);
  ck_assert_int_eq(st.n_segments, before.n_segments);
  ck_assert_uint_eq(st.allocated_bytes, 0);
  wkt_agree(c);
  /* the cached block still serves, and the device works again */
  void *y = wkt_alloc(c, 12 * MiB);
  ck_assert_ptr_eq(y, x);
  wkt_alloc(c, 24 * MiB);
  ck_assert_int_eq(wkt_stats(c).n_segments, 2);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* Pointers the cache did not hand out, and double frees: refused, nothing changed. */
START_TEST(test_refusals) {
  for (int caching = 0; caching < 2; caching++) {
    wk_dcache *c = wkt_setup(SIZE_MAX, caching);
    uint8_t *big = wkt_alloc(c, 5 * MiB);
    uint8_t *p = wkt_alloc(c, 4096); /* nothing handed out after it */
    wkt_fill(p, 4096, 1);
    int local = 0;
    ck_assert(wk_dcache_owns(c, p));
    ck_assert(wk_dcache_owns(c, big));
    ck_assert(!wk_dcache_owns(c, &local));
    ck_assert(!wk_dcache_owns(c, p + 512));
    ck_assert(!wk_dcache_owns(c, p + 4096));
    ck_assert(!wk_dcache_owns(c, big + MiB));
    const wk_dcache_stats before = wkt_stats(c);
    const int64_t frees = wkt_d.n_frees, syncs = wkt_d.n_syncs;
    WKT_FAILS(WK_ERR_INVALID_ARG, wk_dcache_free(c, &local));
    WKT_FAILS(WK_ERR_INVALID_ARG, wk_dcache_free(c, p + 512));   /* inside a live block */
    WKT_FAILS(WK_ERR_INVALID_ARG, wk_dcache_free(c, p + 4096));  /* just past it */
    WKT_FAILS(WK_ERR_INVALID_ARG, wk_dcache_free(c, big + MiB)); /* inside a large one */
    wk_dcache_stats st = wkt_stats(c);
    wkt_same_stats(&before, &st);
    ck_assert(wk_dcache_owns(c, p));
    ck_assert(wk_dcache_owns(c, big));
    ck_assert(wkt_intact(p, 4096, 1));
    wkt_free(c, p);
    ck_assert(!wk_dcache_owns(c, p));
    const wk_dcache_stats freed = wkt_stats(c);
    const int64_t frees2 = wkt_d.n_frees;
    WKT_FAILS(WK_ERR_INVALID_ARG, wk_dcache_free(c, p)); /* twice */
    st = wkt_stats(c);
    wkt_same_stats(&freed, &st);
    ck_assert_int_eq(wkt_d.n_frees, frees2);
    ck_assert_int_eq(wkt_d.n_syncs, syncs);
    if (caching) ck_assert_int_eq(wkt_d.n_frees, frees);
    /* a block handed out again is the cache's to take back once more */
    void *q = wkt_alloc(c, 4096);
    wkt_free(c, q);
    WKT_FAILS(WK_ERR_INVALID_ARG, wk_dcache_free(c, q));
    wkt_free(c, big);
    WKT_FAILS(WK_ERR_INVALID_ARG, wk_dcache_free(c, big));
    st = wkt_stats(c);
    ck_assert_uint_eq(st.allocated_bytes, 0);
    wkt_agree(c);
    wkt_teardown(c);
  }
}
END_TEST

START_TEST(test_stats_and_peaks) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  void *a = wkt_alloc(c, 1000), *b = wkt_alloc(c, 3000);
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_uint_eq(st.allocated_bytes, 1024 + 3072);
  ck_assert_uint_eq(st.peak_allocated_bytes, 4096);
  ck_assert_uint_eq(st.reserved_bytes, WK_DCACHE_SMALL_SEGMENT);
  ck_assert_uint_eq(st.peak_reserved_bytes, WK_DCACHE_SMALL_SEGMENT);
  ck_assert_int_eq(st.n_allocs, 2);
  ck_assert_int_eq(st.n_hits, 1);
  ck_assert_int_eq(st.n_segments, 1);
  wkt_free(c, a);
  st = wkt_stats(c);
  ck_assert_uint_eq(st.allocated_bytes, 3072);
  ck_assert_uint_eq(st.peak_allocated_bytes, 4096); /* the peak stays */
  wk_dcache_reset_peaks(c);
  st = wkt_stats(c);
  ck_assert_uint_eq(st.peak_allocated_bytes, 3072);
  ck_assert_uint_eq(st.peak_reserved_bytes, WK_DCACHE_SMALL_SEGMENT);
  void *l = wkt_alloc(c, 12 * MiB);
  st = wkt_stats(c);
  ck_assert_uint_eq(st.allocated_bytes, 3072 + 12 * MiB);
  ck_assert_uint_eq(st.peak_allocated_bytes, 3072 + 12 * MiB);
  ck_assert_uint_eq(st.reserved_bytes, WK_DCACHE_SMALL_SEGMENT + 12 * MiB);
  ck_assert_uint_eq(st.peak_reserved_bytes, WK_DCACHE_SMALL_SEGMENT + 12 * MiB);
  wkt_free(c, l);
  WKT_OK(wk_dcache_release(c));
  st = wkt_stats(c);
  ck_assert_uint_eq(st.allocated_bytes, 3072);
  ck_assert_uint_eq(st.reserved_bytes, WK_DCACHE_SMALL_SEGMENT);
  ck_assert_uint_eq(st.peak_allocated_bytes, 3072 + 12 * MiB);
  ck_assert_uint_eq(st.peak_reserved_bytes, WK_DCACHE_SMALL_SEGMENT + 12 * MiB);
  ck_assert_int_eq(st.n_releases, 1);
  ck_assert_int_eq(st.n_allocs, 3);
  ck_assert_int_eq(st.n_hits, 1);
  ck_assert_int_eq(st.n_segments, 2);
  wk_dcache_reset_peaks(c);
  st = wkt_stats(c);
  ck_assert_uint_eq(st.peak_allocated_bytes, 3072);
  ck_assert_uint_eq(st.peak_reserved_bytes, WK_DCACHE_SMALL_SEGMENT);
  ck_assert_int_eq(st.n_allocs, 3); /* only the peaks restart */
  wkt_free(c, b);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* release waits if something is pending, then gives back every segment with
 * nothing in use; segments with a live block stay. */
START_TEST(test_release) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  void *s = wkt_alloc(c, 4096);                                  /* small segment, in use */
  void *b1 = wkt_alloc(c, 5 * MiB), *b2 = wkt_alloc(c, 5 * MiB); /* one 20 MiB segment */
  void *l = wkt_alloc(c, 12 * MiB);                              /* a segment of its own */
  void *m = wkt_alloc(c, 14 * MiB);                              /* another */
  ck_assert(wkt_in_seg_of(b2, 5 * MiB, b1));
  wkt_fill(s, 4096, 1);
  wkt_fill(b2, 5 * MiB, 2);
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, (2 + 20 + 12 + 14) * MiB);
  wkt_free(c, b1);
  wkt_free(c, l);
  wkt_free(c, m);
  WKT_OK(wk_dcache_release(c));
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_eq(st.n_syncs, 1);
  ck_assert_int_eq(st.n_releases, 2);
  ck_assert_uint_eq(st.reserved_bytes, (2 + 20) * MiB);
  ck_assert_uint_eq(st.allocated_bytes, 4096 + 5 * MiB);
  ck_assert_int_eq(wkt_d.n_live, 2);
  ck_assert(wk_dcache_owns(c, s));
  ck_assert(wk_dcache_owns(c, b2));
  ck_assert(wkt_intact(s, 4096, 1));
  ck_assert(wkt_intact(b2, 5 * MiB, 2));
  wkt_agree(c);
  /* nothing pending now: no wait, nothing to give back */
  WKT_OK(wk_dcache_release(c));
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_syncs, 1);
  ck_assert_int_eq(st.n_releases, 2);
  /* free (already waited for) blocks only: given back without a wait */
  void *x = wkt_alloc(c, 12 * MiB), *y = wkt_alloc(c, 12 * MiB);
  wkt_free(c, x);
  wkt_free(c, y);
  void *z = wkt_alloc(c, 12 * MiB); /* waits: both free after it */
  ck_assert_int_eq(wkt_stats(c).n_syncs, 2);
  WKT_OK(wk_dcache_release(c));
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_syncs, 2);
  ck_assert_int_eq(st.n_releases, 3);
  ck_assert_uint_eq(st.reserved_bytes, (2 + 20 + 12) * MiB);
  ck_assert(wk_dcache_owns(c, z));
  /* everything back */
  wkt_free(c, z);
  wkt_free(c, s);
  wkt_free(c, b2);
  WKT_OK(wk_dcache_release(c));
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_syncs, 3);
  ck_assert_uint_eq(st.reserved_bytes, 0);
  ck_assert_uint_eq(st.allocated_bytes, 0);
  ck_assert_int_eq(st.n_releases, 6);
  ck_assert_int_eq(wkt_d.n_live, 0);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* Caching off: one device allocation per request, given back at its free. */
START_TEST(test_caching_off) {
  wk_dcache *c = wkt_setup(SIZE_MAX, false);
  const size_t sizes[] = {1, 513, 4096, WK_DCACHE_SMALL, 3 * MiB, 12 * MiB + 1};
  enum { N = sizeof sizes / sizeof sizes[0] };
  void *p[N];
  size_t total = 0;
  for (int i = 0; i < N; i++) {
    p[i] = wkt_alloc(c, sizes[i]);
    ck_assert_int_eq(wkt_d.n_allocs, i + 1);
    ck_assert_uint_ge(wkt_d.last_alloc, sizes[i]);
    ck_assert_uint_le(wkt_d.last_alloc, wkt_round(sizes[i]));
    wkt_fill(p[i], sizes[i], i);
    total += wkt_round(sizes[i]);
    const wk_dcache_stats st = wkt_stats(c);
    ck_assert_uint_eq(st.allocated_bytes, total);
    ck_assert_int_eq(st.n_segments, i + 1);
    ck_assert_int_eq(st.n_hits, 0);
    wkt_agree(c);
  }
  for (int i = 0; i < N; i++) ck_assert(wkt_intact(p[i], sizes[i], i));
  for (int i = 0; i < N; i++) {
    WKT_OK(wk_dcache_free(c, p[i]));
    ck_assert_int_eq(wkt_d.n_frees, i + 1); /* at once */
    ck_assert_int_eq(wkt_d.n_live, N - 1 - i);
    wkt_agree(c);
  }
  wk_dcache_stats st = wkt_stats(c);
  ck_assert_uint_eq(st.reserved_bytes, 0);
  ck_assert_uint_eq(st.allocated_bytes, 0);
  ck_assert_uint_eq(st.peak_allocated_bytes, total);
  /* the same request again is a device allocation again */
  void *q = wkt_alloc(c, 4096);
  ck_assert_int_eq(wkt_d.n_allocs, N + 1);
  WKT_OK(wk_dcache_free(c, q));
  ck_assert_int_eq(wkt_d.n_frees, N + 1);
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_allocs, N + 1);
  ck_assert_int_eq(st.n_hits, 0);
  WKT_OK(wk_dcache_release(c));
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, 0);
  wkt_agree(c);
  wkt_teardown(c);

  /* no room: WK_ERR_NOMEM, nothing held */
  c = wkt_setup(8 * MiB, false);
  void *a = wkt_alloc(c, 5 * MiB);
  void *r = &wkt_d;
  WKT_FAILS(WK_ERR_NOMEM, wk_dcache_alloc(c, 5 * MiB, &r));
  ck_assert_ptr_null(r);
  st = wkt_stats(c);
  ck_assert_int_eq(st.n_allocs, 1);
  ck_assert_int_eq(wkt_d.n_live, 1);
  WKT_OK(wk_dcache_free(c, a));
  void *b = wkt_alloc(c, 5 * MiB);
  WKT_OK(wk_dcache_free(c, b));
  ck_assert_uint_eq(wkt_stats(c).reserved_bytes, 0);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

/* destroy gives every segment back, blocks still handed out included. */
START_TEST(test_destroy_with_live_blocks) {
  wk_dcache *c = wkt_setup(SIZE_MAX, true);
  wkt_alloc(c, 100);
  wkt_alloc(c, WK_DCACHE_SMALL);
  wkt_alloc(c, 5 * MiB);
  void *f = wkt_alloc(c, 12 * MiB);
  wkt_alloc(c, 31 * MiB);
  void *g = wkt_alloc(c, 7 * MiB);
  wkt_free(c, f); /* cached */
  wkt_free(c, g); /* pending, in a segment with a live block */
  ck_assert_int_gt(wkt_d.n_live, 3);
  wkt_teardown(c); /* every segment back, none twice */
  ck_assert_int_eq(wkt_d.n_frees, wkt_d.n_allocs);
}
END_TEST

/* ---- the random mix ----------------------------------------------------- */

enum { WKT_MAX_LIVE = 64, WKT_OPS = 2000 };

typedef struct wkt_live {
  uint8_t *p;
  size_t n, rounded;
  int tag;
} wkt_live;

static uint64_t wkt_lcg(uint64_t *x) {
  *x = *x * 6364136223846793005ull + 1442695040888963407ull;
  return *x >> 33;
}

/* skewed towards small: most below 64 KiB, some around WK_DCACHE_SMALL and
 * WK_DCACHE_MID, a few up to 30 MiB, and the boundaries themselves */
static size_t wkt_rand_size(uint64_t *x) {
  const uint64_t k = wkt_lcg(x) % 100, r = wkt_lcg(x);
  if (k < 50) return 1 + r % (64 * KiB);
  if (k < 72) return 1 + r % (2 * MiB);
  if (k < 90) return 1 + r % (12 * MiB);
  if (k < 96) return 1 + r % (30 * MiB);
  const size_t edges[] = {1, 512, 513, WK_DCACHE_SMALL, WK_DCACHE_SMALL + 1, WK_DCACHE_MID,
                          WK_DCACHE_MID + 1, WK_DCACHE_MID_SEGMENT, 2 * MiB - 1, 30 * MiB};
  return edges[r % (sizeof edges / sizeof edges[0])];
}

/* The smallest segment the cache tries for a request of n bytes before it
 * fails: WK_DCACHE_SMALL_SEGMENT, or a large request rounded up to
 * WK_DCACHE_LARGE_ROUND. */
static size_t wkt_least_segment(size_t n) {
  const size_t r = wkt_round(n);
  if (r <= WK_DCACHE_SMALL) return WK_DCACHE_SMALL_SEGMENT;
  return (r + WK_DCACHE_LARGE_ROUND - 1) / WK_DCACHE_LARGE_ROUND * WK_DCACHE_LARGE_ROUND;
}

static int wkt_by_addr(const void *a, const void *b) {
  const uintptr_t x = (uintptr_t)((const wkt_live *)a)->p, y = (uintptr_t)((const wkt_live *)b)->p;
  return x < y ? -1 : x > y;
}

static void wkt_check_all(const wk_dcache *c, const wkt_live *live, int n_live,
                          int64_t n_allocs, int op) {
  wkt_agree(c);
  const wk_dcache_stats st = wkt_stats(c);
  size_t sum = 0, slack = 0;
  for (int i = 0; i < n_live; i++) {
    const wkt_live *b = &live[i];
    sum += b->rounded;
    if (b->rounded > WK_DCACHE_SMALL) slack += WK_DCACHE_SMALL; /* an unsplit tail */
    ck_assert_msg(wk_dcache_owns(c, b->p), "op %d: live block %d not owned", op, i);
    ck_assert_msg(wkt_seg_of(b->p, b->rounded) >= 0, "op %d: block %d outside segments", op, i);
    ck_assert_msg(wkt_intact(b->p, b->n, b->tag), "op %d: block %d (%zu bytes) overwritten", op,
                  i, b->n);
  }
  ck_assert_msg(st.allocated_bytes >= sum && st.allocated_bytes <= sum + slack,
                "op %d: allocated_bytes %zu, blocks of %zu (+%zu unsplit at most)", op,
                st.allocated_bytes, sum, slack);
  ck_assert_int_eq(st.n_allocs, n_allocs);
  ck_assert_int_eq(st.n_allocs, st.n_hits + st.n_segments);
  wkt_live sorted[WKT_MAX_LIVE];
  memcpy(sorted, live, (size_t)n_live * sizeof *live);
  qsort(sorted, (size_t)n_live, sizeof *sorted, wkt_by_addr);
  for (int i = 1; i < n_live; i++)
    ck_assert_msg((uintptr_t)sorted[i - 1].p + sorted[i - 1].rounded <= (uintptr_t)sorted[i].p,
                  "op %d: blocks overlap", op);
}

START_TEST(test_random_mix) {
  wk_dcache *c = wkt_setup(96 * MiB, true); /* runs out now and then */
  wkt_live live[WKT_MAX_LIVE];
  int n_live = 0, tag = 0, n_nomem = 0, n_release_ops = 0;
  int64_t n_allocs = 0;
  static uintptr_t pend_lo[WKT_OPS], pend_hi[WKT_OPS]; /* freed since the last sync */
  int n_pend = 0;
  uint64_t x = 0x5eedf00dull;
  for (int op = 0; op < WKT_OPS; op++) {
    const uint64_t k = wkt_lcg(&x) % 100;
    if (k < 2) { /* release */
      size_t kept = 0;
      for (int s = 0; s < wkt_d.n_live; s++) {
        bool used = false;
        for (int i = 0; i < n_live && !used; i++) used = wkt_seg_of(live[i].p, 1) == s;
        if (used) kept += wkt_d.segs[s].n;
      }
      const int64_t syncs = wkt_d.n_syncs;
      WKT_OK(wk_dcache_release(c));
      ck_assert_int_eq(wkt_d.n_syncs, syncs + (n_pend > 0)); /* waits only if pending */
      n_pend = 0;
      ck_assert_uint_eq(wkt_stats(c).reserved_bytes, kept);
      n_release_ops++;
    } else if (n_live == 0 || (k < 53 && n_live < WKT_MAX_LIVE)) { /* allocate */
      const size_t n = wkt_rand_size(&x);
      const int64_t syncs = wkt_d.n_syncs;
      const wk_dcache_stats before = wkt_stats(c);
      void *p = NULL;
      wk_clear_error();
      const wk_status s = wk_dcache_alloc(c, n, &p);
      if (wkt_d.n_syncs != syncs) n_pend = 0;
      if (s == WK_ERR_NOMEM) {
        n_nomem++;
        ck_assert_ptr_null(p);
        ck_assert_msg(wk_last_error()[0] != '\0', "op %d: no message", op);
        const wk_dcache_stats st = wkt_stats(c);
        ck_assert_uint_eq(st.allocated_bytes, before.allocated_bytes);
        /* the cache was emptied: the device lacks room for any segment that serves it */
        ck_assert_msg(wkt_d.capacity - wkt_d.live_bytes < wkt_least_segment(n),
                      "op %d: %zu bytes refused with %zu of the device free", op, n,
                      wkt_d.capacity - wkt_d.live_bytes);
      } else {
        ck_assert_msg(s == WK_OK, "op %d: %zu bytes: %s: %s", op, n, wk_status_name(s),
                      wk_last_error());
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % WK_DCACHE_ROUND, 0);
        for (int i = 0; i < n_pend; i++)
          ck_assert_msg((uintptr_t)p + n <= pend_lo[i] || pend_hi[i] <= (uintptr_t)p,
                        "op %d: a block freed since the last sync handed out again", op);
        live[n_live] = (wkt_live){.p = p, .n = n, .rounded = wkt_round(n), .tag = ++tag};
        wkt_fill(p, n, tag);
        n_live++;
        n_allocs++;
      }
    } else { /* free */
      const int i = (int)(wkt_lcg(&x) % (uint64_t)n_live);
      pend_lo[n_pend] = (uintptr_t)live[i].p;
      pend_hi[n_pend] = (uintptr_t)live[i].p + live[i].rounded;
      n_pend++;
      wkt_free(c, live[i].p);
      live[i] = live[--n_live];
    }
    wkt_check_all(c, live, n_live, n_allocs, op);
  }
  const wk_dcache_stats st = wkt_stats(c);
  ck_assert_int_gt(n_nomem, 0); /* the capacity ran out at times */
  ck_assert_int_gt(st.n_oom_retries, 0);
  ck_assert_int_gt(st.n_hits, st.n_segments); /* and the cache served most requests */
  ck_assert_int_gt(n_release_ops, 0);
  while (n_live > 0) wkt_free(c, live[--n_live].p);
  WKT_OK(wk_dcache_release(c));
  const wk_dcache_stats end = wkt_stats(c);
  ck_assert_uint_eq(end.allocated_bytes, 0);
  ck_assert_uint_eq(end.reserved_bytes, 0);
  ck_assert_int_eq(wkt_d.n_live, 0);
  wkt_agree(c);
  wkt_teardown(c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("dev_cache");
  TCase *tc = tcase_create("dev_cache");
  tcase_add_test(tc, test_zero_and_null);
  tcase_add_test(tc, test_rounding);
  tcase_add_test(tc, test_small_share_one_segment);
  tcase_add_test(tc, test_reuse_waits_once);
  tcase_add_test(tc, test_no_sync_without_free);
  tcase_add_test(tc, test_large_pool);
  tcase_add_test(tc, test_split_merge);
  tcase_add_test(tc, test_oom_release_retry);
  tcase_add_test(tc, test_oom_own_size_segment);
  tcase_add_test(tc, test_backend_error_passes_through);
  tcase_add_test(tc, test_refusals);
  tcase_add_test(tc, test_stats_and_peaks);
  tcase_add_test(tc, test_release);
  tcase_add_test(tc, test_caching_off);
  tcase_add_test(tc, test_destroy_with_live_blocks);
  tcase_add_test(tc, test_random_mix);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
