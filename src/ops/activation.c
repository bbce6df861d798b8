/* activation.c - relu and relu6, forward and backward. */
#include "ops/parallel.h"
#include "ops/ref.h"

typedef struct {
  wk_act act;
  const float *x, *dy;
  float *out;
} wk_act_job;

static void wk_act_fwd_slice(const void *arg, int64_t b, int64_t e) {
  const wk_act_job *j = arg;
  wk_act_forward_ref_f32(j->act, e - b, j->x + b, j->out + b);
}

static void wk_act_bwd_slice(const void *arg, int64_t b, int64_t e) {
  const wk_act_job *j = arg;
  wk_act_backward_ref_f32(j->act, e - b, j->x + b, j->dy + b, j->out + b);
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
  wk_act_job j = {act, x->data, NULL, y->data};
  wk_parallel_slices(ctx, wk_tensor_numel(x), 1, wk_act_fwd_slice, &j);
  return WK_OK;
}

wk_status wk_act_backward(wk_ctx *ctx, wk_act act, const wk_tensor *x, const wk_tensor *dy,
                          wk_tensor *dx) {
  WK_TRY(wk_act_check(act, x, dy, "activation output gradient"));
  WK_TRY(wk_act_check(act, x, dx, "activation input gradient"));
  wk_act_job j = {act, x->data, dy->data, dx->data};
  wk_parallel_slices(ctx, wk_tensor_numel(x), 1, wk_act_bwd_slice, &j);
  return WK_OK;
}
