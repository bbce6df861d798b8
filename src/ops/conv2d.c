/* conv2d.c - 2-D convolution (groups, stride, asymmetric padding, dilation,
 * optional bias): validation and dispatch. Reference in ref_template.inc,
 * oneDNN fast path in conv2d_dnnl.c. */
#include <stdlib.h>

#include "ops/fast.h"

wk_conv2d_params wk_conv2d_params_make(int stride, int pad, int groups) {
  wk_conv2d_params p = {.stride_h = stride, .stride_w = stride, .pad_top = pad, .pad_left = pad,
                        .pad_bottom = pad, .pad_right = pad, .dilation_h = 1, .dilation_w = 1,
                        .groups = groups};
  return p;
}

static int64_t wk_conv_out_extent(int64_t in, int64_t pad_lo, int64_t pad_hi, int64_t k,
                                  int64_t dil, int64_t stride) {
  const int64_t span = in + pad_lo + pad_hi - dil * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

wk_status wk_conv2d_geom_make(const wk_conv2d_params *p, int64_t n, int64_t h, int64_t w,
                              int64_t c, int64_t o, int64_t kh, int64_t kw,
                              wk_conv2d_geom *g) {
  if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1)
    return wk_fail(WK_ERR_INVALID_ARG, "conv2d: stride %dx%d and dilation %dx%d must be >= 1",
                   p->stride_h, p->stride_w, p->dilation_h, p->dilation_w);
  if (p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0)
    return wk_fail(WK_ERR_INVALID_ARG, "conv2d: negative padding");
  if (p->groups < 1 || c % p->groups || o % p->groups)
    return wk_fail(WK_ERR_INVALID_ARG,
                   "conv2d: %d groups must divide the input channels (%lld) and the output "
                   "channels (%lld)", p->groups, (long long)c, (long long)o);
  if (n < 1 || h < 1 || w < 1 || c < 1 || o < 1 || kh < 1 || kw < 1)
    return wk_fail(WK_ERR_SHAPE, "conv2d: empty input or kernel");
  *g = (wk_conv2d_geom){.n = n, .h = h, .w = w, .c = c, .o = o, .kh = kh, .kw = kw,
                        .sh = p->stride_h, .sw = p->stride_w, .pt = p->pad_top,
                        .pl = p->pad_left, .pb = p->pad_bottom, .pr = p->pad_right,
                        .dh = p->dilation_h, .dw = p->dilation_w, .groups = p->groups};
  g->oh = wk_conv_out_extent(h, g->pt, g->pb, kh, g->dh, g->sh);
  g->ow = wk_conv_out_extent(w, g->pl, g->pr, kw, g->dw, g->sw);
  if (g->oh < 1 || g->ow < 1)
    return wk_fail(WK_ERR_SHAPE, "conv2d: a %lldx%lld kernel (dilation %lldx%lld) does not fit "
                   "the padded %lldx%lld input", (long long)kh, (long long)kw, (long long)g->dh,
                   (long long)g->dw, (long long)(h + g->pt + g->pb), (long long)(w + g->pl + g->pr));
  return WK_OK;
}

/* Validates x and w, derives the geometry, then checks the output-side tensors. */
static wk_status wk_conv2d_check(const wk_conv2d_params *p, const wk_tensor *x,
                                 const wk_tensor *w, const wk_tensor *b, const wk_tensor *y,
                                 const char *y_name, wk_conv2d_geom *g) {
  if (!x || !w || x->ndim != 4 || w->ndim != 4)
    return wk_fail(WK_ERR_SHAPE, "conv2d: input must be (N,H,W,C) and weights (O,KH,KW,C/groups)");
  WK_TRY(wk_conv2d_geom_make(p, x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0],
                             w->shape[1], w->shape[2], g));
  WK_TRY(wk_tensor_expect(x, "conv2d input", WK_F32, 4, x->shape));
  const int64_t ws[4] = {g->o, g->kh, g->kw, g->c / g->groups};
  WK_TRY(wk_tensor_expect(w, "conv2d weights", WK_F32, 4, ws));
  if (b) WK_TRY(wk_tensor_expect(b, "conv2d bias", WK_F32, 1, &g->o));
  const int64_t ys[4] = {g->n, g->oh, g->ow, g->o};
  if (y) WK_TRY(wk_tensor_expect(y, y_name, WK_F32, 4, ys));
  return WK_OK;
}

wk_status wk_conv2d_forward(wk_ctx *ctx, const wk_conv2d_params *p, const wk_tensor *x,
                            const wk_tensor *w, const wk_tensor *b, wk_tensor *y) {
  wk_conv2d_geom g;
  if (!y) return wk_fail(WK_ERR_INVALID_ARG, "conv2d: missing output");
  WK_TRY(wk_conv2d_check(p, x, w, b, y, "conv2d output", &g));
  const float *bp = b ? b->data : NULL;
  if (ctx->impl != WK_IMPL_REF) {
    wk_status s = wk_conv2d_forward_dnnl(ctx, &g, x->data, w->data, bp, y->data);
    if (s != WK_ERR_UNSUPPORTED) return s;
  }
  wk_conv2d_forward_ref_f32(&g, x->data, w->data, bp, y->data);
  return WK_OK;
}

wk_status wk_conv2d_backward(wk_ctx *ctx, const wk_conv2d_params *p, const wk_tensor *x,
                             const wk_tensor *w, const wk_tensor *dy, wk_tensor *dx,
                             wk_tensor *dw, wk_tensor *db) {
  wk_conv2d_geom g;
  if (!dy) return wk_fail(WK_ERR_INVALID_ARG, "conv2d backward: missing output gradient");
  WK_TRY(wk_conv2d_check(p, x, w, db, dy, "conv2d output gradient", &g));
  if (dx) WK_TRY(wk_tensor_expect(dx, "conv2d input gradient", WK_F32, 4, x->shape));
  if (dw) WK_TRY(wk_tensor_expect(dw, "conv2d weight gradient", WK_F32, 4, w->shape));
  float *dxp = dx ? dx->data : NULL, *dwp = dw ? dw->data : NULL, *dbp = db ? db->data : NULL;
  if (ctx->impl != WK_IMPL_REF) {
    wk_status s = wk_conv2d_backward_dnnl(ctx, &g, x->data, w->data, dy->data, dxp, dwp, dbp);
    if (s != WK_ERR_UNSUPPORTED) return s;
  }
  wk_conv2d_backward_ref_f32(&g, x->data, w->data, dy->data, dxp, dwp, dbp);
  return WK_OK;
}
