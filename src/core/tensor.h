/* tensor.h - n-dimensional arrays with a dtype, a device and an owner.
 *
 * Layout conventions used across whisker:
 *   activations  (N, H, W, C)       channels-last (NHWC)
 *   conv weights (O, KH, KW, I/g)   OHWI
 *   linear       (O, I)             as PyTorch, y = x W^T + b
 * Tensors are dense and row-major in the order of `shape`. A tensor either owns
 * its buffer (wk_tensor_alloc; freed by wk_tensor_free) or views memory owned by
 * someone else (wk_tensor_view; wk_tensor_free only clears it). */
#ifndef WK_TENSOR_H
#define WK_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define WK_MAX_DIMS 6

/* Largest buffer a single tensor may hold; guards against sizes that come from
 * untrusted headers. */
#define WK_TENSOR_MAX_BYTES ((size_t)1 << 36)

typedef enum wk_dtype {
  WK_F32 = 0,
  WK_F64,  /* tests and gradient checks */
  WK_BF16,
  WK_F16,
  WK_U8,
  WK_I32,
} wk_dtype;

typedef enum wk_device_kind {
  WK_DEVICE_CPU = 0,
  WK_DEVICE_CUDA,
} wk_device_kind;

typedef struct wk_tensor {
  void *data;
  int64_t shape[WK_MAX_DIMS];
  int ndim;
  wk_dtype dtype;
  wk_device_kind device;
  int device_index;
  bool owns_data;
} wk_tensor;

size_t wk_dtype_size(wk_dtype dtype);
const char *wk_dtype_name(wk_dtype dtype);

/* Allocates a zero-filled CPU tensor, 64-byte aligned. Fails with WK_ERR_LIMIT
 * when the size overflows or exceeds WK_TENSOR_MAX_BYTES, WK_ERR_NOMEM when the
 * allocation fails. On failure *t is left empty. */
wk_status wk_tensor_alloc(wk_tensor *t, wk_dtype dtype, int ndim, const int64_t *shape);

/* A non-owning view of `data` with the given shape. */
wk_tensor wk_tensor_view(void *data, wk_dtype dtype, int ndim, const int64_t *shape);

/* Frees an owned buffer; always leaves *t empty. Safe on an empty tensor. */
void wk_tensor_free(wk_tensor *t);

int64_t wk_tensor_numel(const wk_tensor *t);
size_t wk_tensor_nbytes(const wk_tensor *t);

/* True when both tensors have the same ndim and shape. */
bool wk_tensor_same_shape(const wk_tensor *a, const wk_tensor *b);

/* Writes "(2, 3, 4)" into buf. */
const char *wk_shape_str(const wk_tensor *t, char *buf, size_t buf_bytes);

/* Checks that t is a CPU tensor of `dtype` with exactly the given shape; the
 * message names `what` and both shapes. */
wk_status wk_tensor_expect(const wk_tensor *t, const char *what, wk_dtype dtype, int ndim,
                           const int64_t *shape);

#endif
