/* linear.c - fully connected layer y = x w^T + b, forward and backward. The
 * fast path is oneDNN's sgemm (row-major BLAS semantics). */
#include <oneapi/dnnl/dnnl.h>
#include <string.h>

#include "ops/dnnl_util.h"
#include "ops/ref.h"

static wk_status wk_linear_check(const wk_tensor *x, const wk_tensor *w, const wk_tensor *b,
                                 int64_t *n, int64_t *in, int64_t *out) {
  if (!x || !w || x->ndim != 2 || w->ndim != 2)
    return wk_fail(WK_ERR_SHAPE, "linear: input must be (N,I) and weights (O,I)");
  *n = x->shape[0];
  *in = x->shape[1];
  *out = w->shape[0];
  if (*n < 1 || *in < 1 || *out < 1) return wk_fail(WK_ERR_SHAPE, "linear: empty input or weights");
  WK_TRY(wk_tensor_expect(x, "linear input", WK_F32, 2, x->shape));
  const int64_t ws[2] = {*out, *in};
  WK_TRY(wk_tensor_expect(w, "linear weights", WK_F32, 2, ws));
  if (b) WK_TRY(wk_tensor_expect(b, "linear bias", WK_F32, 1, out));
  return WK_OK;
}

static wk_status wk_sgemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc) {
  dnnl_status_t s = dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  if (s != dnnl_success) return wk_dnnl_error(s, "dnnl_sgemm", __FILE__, __LINE__);
  return WK_OK;
}

wk_status wk_linear_forward(wk_ctx *ctx, const wk_tensor *x, const wk_tensor *w,
                            const wk_tensor *b, wk_tensor *y) {
  int64_t n, in, out;
  WK_TRY(wk_linear_check(x, w, b, &n, &in, &out));
  const int64_t ys[2] = {n, out};
  if (!y) return wk_fail(WK_ERR_INVALID_ARG, "linear: missing output");
  WK_TRY(wk_tensor_expect(y, "linear output", WK_F32, 2, ys));
  const float *bp = b ? b->data : NULL;
  if (ctx->impl == WK_IMPL_REF) {
    wk_linear_forward_ref_f32(n, in, out, x->data, w->data, bp, y->data);
    return WK_OK;
  }
  float *yp = y->data;
  WK_TRY(wk_sgemm('N', 'T', n, out, in, x->data, in, w->data, in, yp, out));
  if (bp)
    for (int64_t i = 0; i < n; i++)
      for (int64_t o = 0; o < out; o++) yp[i * out + o] += bp[o];
  return WK_OK;
}

wk_status wk_linear_backward(wk_ctx *ctx, const wk_tensor *x, const wk_tensor *w,
                             const wk_tensor *dy, wk_tensor *dx, wk_tensor *dw, wk_tensor *db) {
  int64_t n, in, out;
  WK_TRY(wk_linear_check(x, w, db, &n, &in, &out));
  const int64_t ys[2] = {n, out};
  if (!dy) return wk_fail(WK_ERR_INVALID_ARG, "linear backward: missing output gradient");
  WK_TRY(wk_tensor_expect(dy, "linear output gradient", WK_F32, 2, ys));
  if (dx) WK_TRY(wk_tensor_expect(dx, "linear input gradient", WK_F32, 2, x->shape));
  if (dw) WK_TRY(wk_tensor_expect(dw, "linear weight gradient", WK_F32, 2, w->shape));
  float *dxp = dx ? dx->data : NULL, *dwp = dw ? dw->data : NULL, *dbp = db ? db->data : NULL;
  if (ctx->impl == WK_IMPL_REF) {
    wk_linear_backward_ref_f32(n, in, out, x->data, w->data, dy->data, dxp, dwp, dbp);
    return WK_OK;
  }
  if (dxp) WK_TRY(wk_sgemm('N', 'N', n, in, out, dy->data, out, w->data, in, dxp, in));
  if (dwp) WK_TRY(wk_sgemm('T', 'N', out, in, n, dy->data, out, x->data, in, dwp, in));
  if (dbp) wk_linear_backward_ref_f32(n, in, out, x->data, w->data, dy->data, NULL, NULL, dbp);
  return WK_OK;
}
