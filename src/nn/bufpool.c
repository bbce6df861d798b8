/* bufpool.c - see bufpool.h. A linear scan is enough: a network holds a few
 * hundred buffers at most. */
#include "nn/bufpool.h"

#include <stdlib.h>

#include "core/tensor.h"

wk_status wk_bufpool_acquire(wk_bufpool *p, size_t n_elems, float **out) {
  if (n_elems == 0) n_elems = 1;
  /* best fit among free buffers at least as large, so a freed large gradient
   * buffer serves smaller requests instead of sitting idle */
  wk_bufpool_entry *best = NULL;
  for (size_t i = 0; i < p->n; i++) {
    wk_bufpool_entry *e = &p->entries[i];
    if (!e->in_use && e->n_elems >= n_elems && (!best || e->n_elems < best->n_elems)) best = e;
  }
  if (best) {
    best->in_use = true;
    p->bytes_in_use += best->n_elems * sizeof(float);
    if (p->bytes_in_use > p->peak_bytes_in_use) p->peak_bytes_in_use = p->bytes_in_use;
    *out = best->data;
    return WK_OK;
  }
  if (n_elems > WK_TENSOR_MAX_BYTES / sizeof(float))
    return wk_fail(WK_ERR_LIMIT, "activation buffer of %zu floats exceeds the tensor limit",
                   n_elems);
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 64;
    wk_bufpool_entry *e = realloc(p->entries, cap * sizeof *e);
    if (!e) return wk_fail(WK_ERR_NOMEM, "buffer pool: out of memory");
    p->entries = e;
    p->cap = cap;
  }
  size_t bytes = (n_elems * sizeof(float) + 63) & ~(size_t)63;
  float *data = aligned_alloc(64, bytes);
  if (!data)
    return wk_fail(WK_ERR_NOMEM, "out of memory allocating a %zu-byte activation buffer", bytes);
  p->entries[p->n++] = (wk_bufpool_entry){.data = data, .n_elems = n_elems, .in_use = true};
  p->bytes_held += bytes;
  p->bytes_in_use += n_elems * sizeof(float);
  if (p->bytes_in_use > p->peak_bytes_in_use) p->peak_bytes_in_use = p->bytes_in_use;
  *out = data;
  return WK_OK;
}

void wk_bufpool_release(wk_bufpool *p, float *data) {
  if (!data) return;
  for (size_t i = 0; i < p->n; i++) {
    if (p->entries[i].data == data) {
      WK_ASSERT(p->entries[i].in_use);
      p->entries[i].in_use = false;
      p->bytes_in_use -= p->entries[i].n_elems * sizeof(float);
      return;
    }
  }
  WK_ASSERT(!"buffer not from this pool");
}

void wk_bufpool_release_all(wk_bufpool *p) {
  for (size_t i = 0; i < p->n; i++) p->entries[i].in_use = false;
  p->bytes_in_use = 0;
}

void wk_bufpool_free(wk_bufpool *p) {
  for (size_t i = 0; i < p->n; i++) free(p->entries[i].data);
  free(p->entries);
  *p = (wk_bufpool){0};
}
