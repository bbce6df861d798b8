/* bufpool.h - reusable 64-byte aligned float buffers for activations and
 * gradients.
 *
 * A training step asks for the same sequence of sizes every time, so buffers
 * are kept after release and handed out again: after the first step no
 * allocation happens. A request takes the smallest free buffer that is large
 * enough (best fit); among free buffers of that size, the one made first. The
 * pool owns every buffer and frees them all in wk_bufpool_free.
 *
 * Cost: acquire O(log n) expected (the free buffers form a treap ordered by
 * size), release O(1) expected (a map from address to buffer), release_all
 * O(k log n) for k buffers in use; n buffers held. A zeroed wk_bufpool is an
 * empty pool. */
#ifndef WK_BUFPOOL_H
#define WK_BUFPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Links (left, right, the root, the map's slots) name entries by index + 1;
 * 0 is none. */
typedef struct wk_bufpool_entry {
  float *data;  /* (n_elems) floats, 64-byte aligned */
  size_t n_elems;
  bool in_use;
  size_t left, right; /* free entries only: the treap's children */
} wk_bufpool_entry;

typedef struct wk_bufpool {
  wk_bufpool_entry *entries; /* (cap), n of them made, in the order they were made */
  size_t n, cap;
  size_t free_root;  /* the treap of free entries, keyed by (n_elems, index) */
  size_t *slots;     /* (n_slots) address -> entry: open addressing, at most half full */
  size_t n_slots;    /* 0 or a power of two */
  size_t bytes_held; /* every buffer, in use or not */
  size_t bytes_in_use;
  size_t peak_bytes_in_use;
  uint64_t n_visits; /* treap nodes and map slots looked at: the pool's work, for tests of its
                      * scale */
  const char *host_root; /* NULL: the live system's /proc and /sys; tests point it at a tree of
                          * their own (core/hostres.h) */
} wk_bufpool;

/* A buffer of n_elems floats (contents undefined). A new buffer (none free
 * is large enough) is refused with WK_ERR_NOMEM, and a message that suggests
 * a smaller batch, where it would take the pool past $WHISKER_MEM_LIMIT_MB or
 * leave under 256 MB of available memory: the system's (/proc/meminfo's
 * MemAvailable) or, tighter in a container or a batch job, what the
 * process's memory cgroup leaves (core/hostres.h); read at each new buffer:
 * after the first step, none. */
wk_status wk_bufpool_acquire(wk_bufpool *p, size_t n_elems, float **out);
/* Returns a buffer from this pool; NULL is ignored. Asserts that data is a
 * buffer of this pool that is in use. */
void wk_bufpool_release(wk_bufpool *p, float *data);
/* Marks every buffer free (the start of a step). */
void wk_bufpool_release_all(wk_bufpool *p);
void wk_bufpool_free(wk_bufpool *p);

#endif
