/* eltwise.c - elementwise add (the residual connection), forward and backward. */
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
