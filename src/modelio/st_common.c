/* st_common.c - dtype table, shape arithmetic and name ordering shared by the
 * safetensors reader and writer. */
#include <string.h>

#include "modelio/st_impl.h"

typedef struct st_dtype_info {
  const char *name;
  size_t n_bytes;
} st_dtype_info;

/* Indexed by wk_st_dtype. */
static const st_dtype_info st_dtypes[WK_ST_N_DTYPES] = {
  [WK_ST_BOOL] = {"BOOL", 1},   [WK_ST_U8] = {"U8", 1},
  [WK_ST_I8] = {"I8", 1},       [WK_ST_I16] = {"I16", 2},
  [WK_ST_U16] = {"U16", 2},     [WK_ST_F16] = {"F16", 2},
  [WK_ST_BF16] = {"BF16", 2},   [WK_ST_I32] = {"I32", 4},
  [WK_ST_U32] = {"U32", 4},     [WK_ST_F32] = {"F32", 4},
  [WK_ST_F64] = {"F64", 8},     [WK_ST_I64] = {"I64", 8},
  [WK_ST_U64] = {"U64", 8},     [WK_ST_F8_E4M3] = {"F8_E4M3", 1},
  [WK_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *wk_st_dtype_name(wk_st_dtype dtype) {
  return (unsigned)dtype < WK_ST_N_DTYPES ? st_dtypes[dtype].name : "?";
}

size_t wk_st_dtype_size(wk_st_dtype dtype) {
  return (unsigned)dtype < WK_ST_N_DTYPES ? st_dtypes[dtype].n_bytes : 0;
}

bool wk_st_dtype_parse(const char *name, wk_st_dtype *out) {
  for (int i = 0; i < WK_ST_N_DTYPES; i++)
    if (!strcmp(name, st_dtypes[i].name)) {
      *out = (wk_st_dtype)i;
      return true;
    }
  return false;
}

wk_st_dtype wk_st_dtype_of(wk_dtype dtype) {
  switch (dtype) {
    case WK_F32: return WK_ST_F32;
    case WK_F64: return WK_ST_F64;
    case WK_BF16: return WK_ST_BF16;
    case WK_F16: return WK_ST_F16;
    case WK_U8: return WK_ST_U8;
    case WK_I32: return WK_ST_I32;
  }
  WK_ASSERT(!"unknown wk_dtype");
  return WK_ST_F32;
}

bool wk_st_shape_bytes(wk_st_dtype dtype, int ndim, const int64_t *shape, uint64_t max_bytes,
                       uint64_t *n_bytes) {
  WK_ASSERT(ndim >= 0 && ndim <= WK_MAX_DIMS);
  for (int i = 0; i < ndim; i++) {
    WK_ASSERT(shape[i] >= 0);
    if (shape[i] == 0) {
      *n_bytes = 0;
      return true;
    }
  }
  uint64_t bytes = wk_st_dtype_size(dtype);
  for (int i = 0; i < ndim; i++) {
    if (bytes > max_bytes / (uint64_t)shape[i]) return false;
    bytes *= (uint64_t)shape[i];
  }
  if (bytes > max_bytes) return false;
  *n_bytes = bytes;
  return true;
}

const char *wk_st_shape_str(int ndim, const int64_t *shape, char *buf, size_t buf_bytes) {
  wk_tensor t = wk_tensor_view(NULL, WK_U8, ndim, shape);
  return wk_shape_str(&t, buf, buf_bytes);
}

int wk_st_cmp_entry_name(const void *a, const void *b) {
  const wk_st_entry *x = *(const wk_st_entry *const *)a, *y = *(const wk_st_entry *const *)b;
  return strcmp(x->name, y->name);
}

int wk_st_cmp_meta_key(const void *a, const void *b) {
  const wk_st_meta *x = *(const wk_st_meta *const *)a, *y = *(const wk_st_meta *const *)b;
  return strcmp(x->key, y->key);
}
