/* activation.c - relu and relu6, forward and backward. */
#include <stdbool.h>

#include "ops/parallel.h"
#include "ops/ref.h"

typedef struct {
  wk_act act;
  bool ref; /* WK_IMPL_REF: the reference loops */
  const float *x, *dy;
  float *out;
} wk_act_job;

/* The fast path's loops select without branches so that they vectorise: the
 * reference's `x > 0 && x < 6 ? dy : 0` compiles to two branches, which the
 * signs of activations make unpredictable (MobileNetV2's ReLU6 backward took
 * half of a training step at batch 32). Same results, NaN included. In place
 * (out == x, or out == dy) is fine: each element is read before it is
 * written. */
static void wk_act_fwd_slice(const void *arg, int64_t b, int64_t e) {
  const wk_act_job *j = arg;
  const float *x = j->x;
  float *y = j->out;
  if (j->ref) {
    wk_act_forward_ref_f32(j->act, e - b, x + b, y + b);
  } else if (j->act == WK_ACT_RELU) {
#pragma omp simd
    for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  } else {
#pragma omp simd
    for (int64_t i = b; i < e; i++) {
      const float v = x[i] > 0.0f ? x[i] : 0.0f;
      y[i] = v < 6.0f ? v : 6.0f;
    }
  }
}

static void wk_act_bwd_slice(const void *arg, int64_t b, int64_t e) {
  const wk_act_job *j = arg;
  const float *x = j->x, *dy = j->dy;
  float *dx = j->out;
  if (j->ref) {
    wk_act_backward_ref_f32(j->act, e - b, x + b, dy + b, dx + b);
  } else if (j->act == WK_ACT_RELU) {
#pragma omp simd
    for (int64_t i = b; i < e; i++) {
      const float g = dy[i]; /* loaded either way: a conditional load does not vectorise */
      dx[i] = x[i] > 0.0f ? g : 0.0f;
    }
  } else {
#pragma omp simd
    for (int64_t i = b; i < e; i++) {
      const float g = dy[i];
      dx[i] = (x[i] > 0.0f) & (x[i] < 6.0f) ? g : 0.0f;
    }
  }
}

static wk_status wk_act_check(wk_act act, const wk_tensor *x, const wk_tensor *other,
                              const char *other_name) {
  if (act != WK_ACT_RELU && act != WK_ACT_RELU6)
    return wk_fail(WK_ERR_INVALID_ARG, "activation: unknown kind %d", (int)act);
  if (!x || !other) return wk_fail(WK_ERR_INVALID_ARG, "activation: missing tensor");
  WK_TRY(wk_tensor_expect(x, "activation input", WK_F32, x->ndim, x->shape));
  return wk_tensor_expect(other, other_name, WK_F32, x->ndim, x->shape);
}

wk_status wk_act_forward(wk_ctx *ctx, wk_act act, const wk_tensor *x, wk_tensor *y) {
  WK_TRY(wk_act_check(act, x, y, "activation output"));
  wk_act_job j = {act, ctx->impl == WK_IMPL_REF, x->data, NULL, y->data};
  wk_parallel_slices(ctx, wk_tensor_numel(x), 1, wk_act_fwd_slice, &j);
  return WK_OK;
}

wk_status wk_act_backward(wk_ctx *ctx, wk_act act, const wk_tensor *x, const wk_tensor *dy,
                          wk_tensor *dx) {
  WK_TRY(wk_act_check(act, x, dy, "activation output gradient"));
  WK_TRY(wk_act_check(act, x, dx, "activation input gradient"));
  wk_act_job j = {act, ctx->impl == WK_IMPL_REF, x->data, dy->data, dx->data};
  wk_parallel_slices(ctx, wk_tensor_numel(x), 1, wk_act_bwd_slice, &j);
  return WK_OK;
}
