/* bufpool.h - reusable 64-byte aligned float buffers for activations and
 * gradients.
 *
 * A training step asks for the same sequence of sizes every time, so buffers
 * are kept after release and handed out again (the smallest free one that is
 * large enough): after the first step no allocation happens. The pool owns every buffer and
 * frees them all in wk_bufpool_free. */
#ifndef WK_BUFPOOL_H
#define WK_BUFPOOL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef struct wk_bufpool_entry {
  float *data;
  size_t n_elems;
  bool in_use;
} wk_bufpool_entry;

typedef struct wk_bufpool {
  wk_bufpool_entry *entries;
  size_t n, cap;
  size_t bytes_held;   /* every buffer, in use or not */
  size_t bytes_in_use;
  size_t peak_bytes_in_use;
} wk_bufpool;

/* A buffer of n_elems floats (contents undefined). */
wk_status wk_bufpool_acquire(wk_bufpool *p, size_t n_elems, float **out);
/* Returns a buffer from this pool; NULL is ignored. */
void wk_bufpool_release(wk_bufpool *p, float *data);
/* Marks every buffer free (the start of a step). */
void wk_bufpool_release_all(wk_bufpool *p);
void wk_bufpool_free(wk_bufpool *p);

#endif
