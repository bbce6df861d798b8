/* eltwise.c - elementwise add (the residual connection), forward and backward;
 * the input normalisation of 8-bit pixels. */
#include <string.h>

#include "ops/parallel.h"
#include "ops/ref.h"

typedef struct {
  const float *a, *b;
  float *y;
} wk_add_job;

static void wk_add_slice(const void *arg, int64_t b, int64_t e) {
  const wk_add_job *j = arg;
  wk_add_forward_ref_f32(e - b, j->a + b, j->b + b, j->y + b);
}

wk_status wk_add_forward(wk_ctx *ctx, const wk_tensor *a, const wk_tensor *b, wk_tensor *y) {
  if (!a || !b || !y) return wk_fail(WK_ERR_INVALID_ARG, "add: missing tensor");
  WK_TRY(wk_tensor_expect(a, "add first input", WK_F32, a->ndim, a->shape));
  WK_TRY(wk_tensor_expect(b, "add second input", WK_F32, a->ndim, a->shape));
  WK_TRY(wk_tensor_expect(y, "add output", WK_F32, a->ndim, a->shape));
  wk_add_job j = {a->data, b->data, y->data};
  wk_parallel_slices(ctx, wk_tensor_numel(a), 1, wk_add_slice, &j);
  return WK_OK;
}

wk_status wk_add_backward(wk_ctx *ctx, const wk_tensor *dy, wk_tensor *da, wk_tensor *db) {
  (void)ctx;
  if (!dy) return wk_fail(WK_ERR_INVALID_ARG, "add backward: missing output gradient");
  WK_TRY(wk_tensor_expect(dy, "add output gradient", WK_F32, dy->ndim, dy->shape));
  wk_tensor *grads[2] = {da, db};
  for (int i = 0; i < 2; i++) {
    if (!grads[i]) continue;
    WK_TRY(wk_tensor_expect(grads[i], "add input gradient", WK_F32, dy->ndim, dy->shape));
    if (grads[i]->data != dy->data) memmove(grads[i]->data, dy->data, wk_tensor_nbytes(dy));
  }
  return WK_OK;
}

void wk_normalize_u8_ref(int64_t n_px, const uint8_t *x, const float scale[3],
                         const float shift[3], float *y) {
  for (int64_t p = 0; p < n_px; p++)
    for (int c = 0; c < 3; c++) {
      const float v = (float)x[3 * p + c] * (1.0f / 255.0f);
      y[3 * p + c] = v * scale[c] + shift[c];
    }
}

typedef struct {
  const uint8_t *x;
  const float *scale, *shift;
  float *y;
} wk_norm_job;

static void wk_norm_slice(const void *arg, int64_t b, int64_t e) {
  const wk_norm_job *j = arg;
  wk_normalize_u8_ref(e - b, j->x + 3 * b, j->scale, j->shift, j->y + 3 * b);
}

wk_status wk_normalize_u8(wk_ctx *ctx, const wk_tensor *x, const float scale[3],
                          const float shift[3], wk_tensor *y) {
  if (!x || !y || !scale || !shift)
    return wk_fail(WK_ERR_INVALID_ARG, "normalize: missing argument");
  if (x->ndim != 4 || x->shape[3] != 3)
    return wk_fail(WK_ERR_SHAPE, "normalize: input must be (N, H, W, 3) u8");
  WK_TRY(wk_tensor_expect(x, "normalize input", WK_U8, 4, x->shape));
  WK_TRY(wk_tensor_expect(y, "normalize output", WK_F32, 4, x->shape));
  wk_norm_job j = {x->data, scale, shift, y->data};
  wk_parallel_slices(ctx, wk_tensor_numel(x) / 3, 3, wk_norm_slice, &j);
  return WK_OK;
}
