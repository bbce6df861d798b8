/* tensor.c - allocation, views and shape checks. */
#include "core/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t wk_dtype_size(wk_dtype dtype) {
  switch (dtype) {
    case WK_F32: return 4;
    case WK_F64: return 8;
    case WK_BF16: return 2;
    case WK_F16: return 2;
    case WK_U8: return 1;
    case WK_I32: return 4;
  }
  return 0;
}

const char *wk_dtype_name(wk_dtype dtype) {
  switch (dtype) {
    case WK_F32: return "f32";
    case WK_F64: return "f64";
    case WK_BF16: return "bf16";
    case WK_F16: return "f16";
    case WK_U8: return "u8";
    case WK_I32: return "i32";
  }
  return "?";
}

static wk_status wk_shape_bytes(wk_dtype dtype, int ndim, const int64_t *shape, size_t *out) {
  if (ndim < 0 || ndim > WK_MAX_DIMS)
    return wk_fail(WK_ERR_INVALID_ARG, "tensor: %d dimensions (at most %d)", ndim, WK_MAX_DIMS);
  size_t bytes = wk_dtype_size(dtype);
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return wk_fail(WK_ERR_INVALID_ARG, "tensor: negative extent %lld in dimension %d",
                     (long long)shape[i], i);
    if (shape[i] > 0 && bytes > WK_TENSOR_MAX_BYTES / (size_t)shape[i])
      return wk_fail(WK_ERR_LIMIT, "tensor: size exceeds the limit of %zu bytes",
                     (size_t)WK_TENSOR_MAX_BYTES);
    bytes *= (size_t)shape[i];
  }
  *out = bytes;
  return WK_OK;
}

wk_status wk_tensor_alloc(wk_tensor *t, wk_dtype dtype, int ndim, const int64_t *shape) {
  memset(t, 0, sizeof *t);
  size_t bytes = 0;
  WK_TRY(wk_shape_bytes(dtype, ndim, shape, &bytes));
  size_t rounded = (bytes + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (!p) return wk_fail(WK_ERR_NOMEM, "tensor: cannot allocate %zu bytes", bytes);
  memset(p, 0, rounded ? rounded : 64);
  *t = wk_tensor_view(p, dtype, ndim, shape);
  t->owns_data = true;
  return WK_OK;
}

wk_tensor wk_tensor_view(void *data, wk_dtype dtype, int ndim, const int64_t *shape) {
  wk_tensor t;
  memset(&t, 0, sizeof t);
  WK_ASSERT(ndim >= 0 && ndim <= WK_MAX_DIMS);
  t.data = data;
  t.dtype = dtype;
  t.ndim = ndim;
  t.device = WK_DEVICE_CPU;
  for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
  return t;
}

void wk_tensor_free(wk_tensor *t) {
  if (t->owns_data) free(t->data);
  memset(t, 0, sizeof *t);
}

int64_t wk_tensor_numel(const wk_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

size_t wk_tensor_nbytes(const wk_tensor *t) {
  return (size_t)wk_tensor_numel(t) * wk_dtype_size(t->dtype);
}

bool wk_tensor_same_shape(const wk_tensor *a, const wk_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

static const char *wk_dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t used = 0;
  used += (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (used < n) snprintf(buf + used, n - used, ")");
  return buf;
}

const char *wk_shape_str(const wk_tensor *t, char *buf, size_t buf_bytes) {
  return wk_dims_str(t->ndim, t->shape, buf, buf_bytes);
}

wk_status wk_tensor_expect(const wk_tensor *t, const char *what, wk_dtype dtype, int ndim,
                           const int64_t *shape) {
  char have[96], want[96];
  if (!t || !t->data)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: missing tensor", what);
  if (t->device != WK_DEVICE_CPU)
    return wk_fail(WK_ERR_UNSUPPORTED, "%s: tensor is not on the CPU", what);
  if (t->dtype != dtype)
    return wk_fail(WK_ERR_SHAPE, "%s: dtype %s, expected %s", what, wk_dtype_name(t->dtype),
                   wk_dtype_name(dtype));
  bool ok = t->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
  if (!ok)
    return wk_fail(WK_ERR_SHAPE, "%s: shape %s, expected %s", what,
                   wk_shape_str(t, have, sizeof have), wk_dims_str(ndim, shape, want, sizeof want));
  return WK_OK;
}
