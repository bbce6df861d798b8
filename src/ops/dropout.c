/* dropout.c - inverted dropout with a counter-based mask (see ops.h). */
#include "ops/parallel.h"
#include "ops/ref.h"

typedef struct {
  const wk_dropout_params *p;
  const float *in;
  float *out;
} wk_dropout_job;

static void wk_dropout_slice(const void *arg, int64_t b, int64_t e) {
  const wk_dropout_job *j = arg;
  wk_dropout_ref_f32(j->p->p, j->p->seed, j->p->stream, (int64_t)j->p->first + b, e - b, j->in + b, j->out + b);
}

static wk_status wk_dropout_run(wk_ctx *ctx, const wk_dropout_params *p, const wk_tensor *in,
                                wk_tensor *out, const char *what) {
  if (!p || !(p->p >= 0.0f && p->p < 1.0f))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: drop probability must be in [0, 1)", what);
  if (!in || !out) return wk_fail(WK_ERR_INVALID_ARG, "%s: missing tensor", what);
  WK_TRY(wk_tensor_expect(in, what, WK_F32, in->ndim, in->shape));
  WK_TRY(wk_tensor_expect(out, what, WK_F32, in->ndim, in->shape));
  wk_dropout_job j = {p, in->data, out->data};
  wk_parallel_slices(ctx, wk_tensor_numel(in), 8, wk_dropout_slice, &j);
  return WK_OK;
}

wk_status wk_dropout_forward(wk_ctx *ctx, const wk_dropout_params *p, const wk_tensor *x,
                             wk_tensor *y) {
  return wk_dropout_run(ctx, p, x, y, "dropout");
}

wk_status wk_dropout_backward(wk_ctx *ctx, const wk_dropout_params *p, const wk_tensor *dy,
                              wk_tensor *dx) {
  return wk_dropout_run(ctx, p, dy, dx, "dropout backward");
}
