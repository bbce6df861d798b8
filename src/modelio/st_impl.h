/* st_impl.h - internals shared by the safetensors reader, writer and
 * accessors; not part of the public interface (safetensors.h). */
#ifndef WK_ST_IMPL_H
#define WK_ST_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "modelio/safetensors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; whisker reads and writes it in host order"
#endif

/* Offsets and sizes in a header are JSON numbers, which cJSON holds as
 * doubles; integers are exact up to 2^53, far beyond any real file. */
#define WK_ST_MAX_JSON_INT ((uint64_t)1 << 53)

struct wk_st_file {
  char *path;
  uint64_t data_start;            /* 8 + header length */
  wk_st_entry *entries;           /* (n_entries) in data-section order */
  uint64_t *offsets;              /* (n_entries) begin of each entry in the data section */
  const wk_st_entry **by_name;    /* (n_entries) sorted by name, for lookups */
  size_t n_entries;
  wk_st_meta *meta;               /* (n_meta) in header order */
  const wk_st_meta **meta_by_key; /* (n_meta) sorted by key */
  size_t n_meta;
  char *strings;                  /* every name, key and value, NUL-terminated */
  void *data;                     /* the data section, 64-byte aligned */
};

/* Bytes of `ndim` dims of `dtype`: false when the product exceeds max_bytes
 * (or overflows). Dims must be >= 0. A zero dim makes 0 whatever the others. */
bool wk_st_shape_bytes(wk_st_dtype dtype, int ndim, const int64_t *shape, uint64_t max_bytes,
                       uint64_t *n_bytes);

/* "(3, 4)" into buf; "()" for a scalar. */
const char *wk_st_shape_str(int ndim, const int64_t *shape, char *buf, size_t buf_bytes);

/* qsort/bsearch comparators over arrays of `const wk_st_entry *` (by name)
 * and of `const wk_st_meta *` (by key). */
int wk_st_cmp_entry_name(const void *a, const void *b);
int wk_st_cmp_meta_key(const void *a, const void *b);

/* Checks the header text h[0, n_bytes) (h[n_bytes] is NUL) of f->path, whose
 * data section holds data_bytes, and fills f's entries, offsets, indexes,
 * metadata and strings. Entry data pointers are left NULL for the caller to
 * set once the data is read. On failure f may hold partial allocations, which
 * wk_st_close frees. (st_header.c) */
wk_status wk_st_parse_header(wk_st_file *f, const char *h, size_t n_bytes, uint64_t data_bytes);

#endif
