/* bufpool.c - see bufpool.h.
 *
 * The free entries form a treap: a binary search tree on (n_elems, index)
 * that is also a heap on a priority drawn from the index by a fixed hash, so
 * its shape is that of a tree built in random order (depth O(log n) expected)
 * and the same on every run. The smallest key with n_elems >= the request is
 * the best fit of the old linear scan, its tie (the entry made first)
 * included. Entries are never removed before wk_bufpool_free, so the address
 * map needs no deletion. */
#include "nn/bufpool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/hostres.h"
#include "core/tensor.h"

/* Host memory a new buffer leaves for everything else (the loader, the
 * plans' weight copies, the system): under this, a new buffer is refused. */
#define WK_BP_RESERVE_BYTES ((size_t)256 << 20)

/* Entry `id` (index + 1). */
#define WK_BP_E(p, id) (&(p)->entries[(id) - 1])

/* A fixed mix of x (MurmurHash3's 64-bit finalizer). */
static uint64_t wk_bp_mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdu;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53u;
  x ^= x >> 33;
  return x;
}

/* Whether entry a's key (n_elems, id) comes before entry b's. */
static bool wk_bp_less(const wk_bufpool *p, size_t a, size_t b) {
  const size_t na = WK_BP_E(p, a)->n_elems, nb = WK_BP_E(p, b)->n_elems;
  return na < nb || (na == nb && a < b);
}

/* Splits treap t into *l (keys before entry x's) and *r (the rest). */
static void wk_bp_split(wk_bufpool *p, size_t t, size_t x, size_t *l, size_t *r) {
  while (t) {
    p->n_visits++;
    wk_bufpool_entry *e = WK_BP_E(p, t);
    if (wk_bp_less(p, t, x)) {
      *l = t;
      l = &e->right;
      t = e->right;
    } else {
      *r = t;
      r = &e->left;
      t = e->left;
    }
  }
  *l = *r = 0;
}

/* The treap of a's keys then b's (every key of a before every key of b). */
static size_t wk_bp_merge(wk_bufpool *p, size_t a, size_t b) {
  size_t root = 0, *link = &root;
  while (a && b) {
    p->n_visits++;
    if (wk_bp_mix(a) > wk_bp_mix(b)) {
      *link = a;
      link = &WK_BP_E(p, a)->right;
      a = *link;
    } else {
      *link = b;
      link = &WK_BP_E(p, b)->left;
      b = *link;
    }
  }
  *link = a ? a : b;
  return root;
}

static void wk_bp_tree_insert(wk_bufpool *p, size_t x) {
  size_t *link = &p->free_root;
  const uint64_t prio = wk_bp_mix(x);
  while (*link && wk_bp_mix(*link) >= prio) {
    p->n_visits++;
    wk_bufpool_entry *e = WK_BP_E(p, *link);
    link = wk_bp_less(p, x, *link) ? &e->left : &e->right;
  }
  wk_bufpool_entry *e = WK_BP_E(p, x);
  wk_bp_split(p, *link, x, &e->left, &e->right);
  *link = x;
}

static void wk_bp_tree_remove(wk_bufpool *p, size_t x) {
  size_t *link = &p->free_root;
  while (*link != x) {
    p->n_visits++;
    WK_ASSERT(*link);
    wk_bufpool_entry *e = WK_BP_E(p, *link);
    link = wk_bp_less(p, x, *link) ? &e->left : &e->right;
  }
  const wk_bufpool_entry *e = WK_BP_E(p, x);
  *link = wk_bp_merge(p, e->left, e->right);
}

/* The free entry of smallest key with n_elems >= n_elems, or 0. */
static size_t wk_bp_best_fit(wk_bufpool *p, size_t n_elems) {
  size_t best = 0;
  for (size_t t = p->free_root; t;) {
    p->n_visits++;
    const wk_bufpool_entry *e = WK_BP_E(p, t);
    if (e->n_elems >= n_elems) {
      best = t;
      t = e->left;
    } else {
      t = e->right;
    }
  }
  return best;
}

/* The slot holding data's entry, or the empty slot where it would go
 * (n_slots > 0). */
static size_t *wk_bp_slot(wk_bufpool *p, const float *data) {
  const size_t mask = p->n_slots - 1;
  for (size_t i = (size_t)wk_bp_mix((uintptr_t)data >> 6) & mask;; i = (i + 1) & mask) {
    p->n_visits++;
    if (!p->slots[i] || WK_BP_E(p, p->slots[i])->data == data) return &p->slots[i];
  }
}

/* Room for one more entry in entries and in the map. */
static wk_status wk_bp_reserve(wk_bufpool *p) {
  if (p->n == p->cap) {
    const size_t cap = p->cap ? 2 * p->cap : 64;
    wk_bufpool_entry *e = realloc(p->entries, cap * sizeof *e);
    if (!e) return wk_fail(WK_ERR_NOMEM, "buffer pool: out of memory");
    p->entries = e;
    p->cap = cap;
  }
  if (2 * (p->n + 1) <= p->n_slots) return WK_OK;
  const size_t n_slots = p->n_slots ? 2 * p->n_slots : 128;
  size_t *slots = calloc(n_slots, sizeof *slots);
  if (!slots) return wk_fail(WK_ERR_NOMEM, "buffer pool: out of memory");
  free(p->slots);
  p->slots = slots;
  p->n_slots = n_slots;
  for (size_t id = 1; id <= p->n; id++) *wk_bp_slot(p, WK_BP_E(p, id)->data) = id;
  return WK_OK;
}

static void wk_bp_count_in_use(wk_bufpool *p, size_t n_elems) {
  p->bytes_in_use += n_elems * sizeof(float);
  if (p->bytes_in_use > p->peak_bytes_in_use) p->peak_bytes_in_use = p->bytes_in_use;
}

/* Whether the host has room for a new buffer of `bytes`: within
 * $WHISKER_MEM_LIMIT_MB for the pool as a whole, and within the memory the
 * system, or the process's memory cgroup, has available less a reserve
 * (core/hostres.h). Linux hands out more than it has and
 * kills the process (or swaps for minutes) when the pages are touched; a
 * clear refusal before that is what a user can act on. */
static wk_status wk_bp_room(const wk_bufpool *p, size_t bytes) {
  const size_t mb = (size_t)1 << 20;
  const char *env = getenv("WHISKER_MEM_LIMIT_MB");
  if (env && *env) {
    char *end;
    errno = 0;
    const unsigned long long lim = strtoull(env, &end, 10);
    if (errno || *end || *env == '-' || lim == 0 || lim > SIZE_MAX / mb)
      return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_MEM_LIMIT_MB='%s': expected a number of "
                     "megabytes above 0", env);
    if (p->bytes_held + bytes > (size_t)lim * mb)
      return wk_fail(WK_ERR_NOMEM, "out of memory: the network's activations and gradients "
                     "need more than $WHISKER_MEM_LIMIT_MB=%llu MB (%zu MB held, %zu MB more "
                     "asked for); try a smaller --batch",
                     lim, p->bytes_held / mb, (bytes + mb - 1) / mb);
  }
  wk_host_mem m;
  if (!wk_host_mem_read(p->host_root ? p->host_root : "", &m) ||
      bytes + WK_BP_RESERVE_BYTES <= m.avail)
    return WK_OK;
  if (m.by_cgroup)
    return wk_fail(WK_ERR_NOMEM, "out of memory: the network's activations and gradients "
                   "need %zu MB more, the process's control group (a container's or job's "
                   "memory limit, %zu MB) leaves %zu MB, %zu of them kept free (%zu MB held "
                   "already); try a smaller --batch", (bytes + mb - 1) / mb, m.cg_limit / mb,
                   m.avail / mb, WK_BP_RESERVE_BYTES / mb, p->bytes_held / mb);
  return wk_fail(WK_ERR_NOMEM, "out of memory: the network's activations and gradients "
                 "need %zu MB more, the system has %zu MB available, %zu of them kept free "
                 "(%zu MB held already); try a smaller --batch", (bytes + mb - 1) / mb,
                 m.avail / mb, WK_BP_RESERVE_BYTES / mb, p->bytes_held / mb);
}

wk_status wk_bufpool_acquire(wk_bufpool *p, size_t n_elems, float **out) {
  if (n_elems == 0) n_elems = 1;
  /* best fit among free buffers at least as large, so a freed large gradient
   * buffer serves smaller requests instead of sitting idle */
  const size_t best = wk_bp_best_fit(p, n_elems);
  if (best) {
    wk_bp_tree_remove(p, best);
    wk_bufpool_entry *e = WK_BP_E(p, best);
    e->in_use = true;
    wk_bp_count_in_use(p, e->n_elems);
    *out = e->data;
    return WK_OK;
  }
  if (n_elems > WK_TENSOR_MAX_BYTES / sizeof(float))
    return wk_fail(WK_ERR_LIMIT, "activation buffer of %zu floats exceeds the tensor limit",
                   n_elems);
  size_t bytes = (n_elems * sizeof(float) + 63) & ~(size_t)63;
  WK_TRY(wk_bp_room(p, bytes));
  WK_TRY(wk_bp_reserve(p));
  float *data = aligned_alloc(64, bytes);
  if (!data)
    return wk_fail(WK_ERR_NOMEM, "out of memory allocating a %zu-byte activation buffer", bytes);
  p->entries[p->n++] = (wk_bufpool_entry){.data = data, .n_elems = n_elems, .in_use = true};
  *wk_bp_slot(p, data) = p->n;
  p->bytes_held += bytes;
  wk_bp_count_in_use(p, n_elems);
  *out = data;
  return WK_OK;
}

void wk_bufpool_release(wk_bufpool *p, float *data) {
  if (!data) return;
  const size_t id = p->n_slots ? *wk_bp_slot(p, data) : 0;
  WK_ASSERT(id && "buffer not from this pool");
  wk_bufpool_entry *e = WK_BP_E(p, id);
  WK_ASSERT(e->in_use);
  e->in_use = false;
  p->bytes_in_use -= e->n_elems * sizeof(float);
  wk_bp_tree_insert(p, id);
}

void wk_bufpool_release_all(wk_bufpool *p) {
  for (size_t id = 1; id <= p->n; id++) {
    wk_bufpool_entry *e = WK_BP_E(p, id);
    if (!e->in_use) continue;
    e->in_use = false;
    wk_bp_tree_insert(p, id);
  }
  p->bytes_in_use = 0;
}

void wk_bufpool_free(wk_bufpool *p) {
  for (size_t i = 0; i < p->n; i++) free(p->entries[i].data);
  free(p->entries);
  free(p->slots);
  *p = (wk_bufpool){0};
}
