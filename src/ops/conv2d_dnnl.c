/* conv2d_dnnl.c - convolution forward, backward-data and backward-weights through
 * oneDNN's C API.
 *
 * Activations stay in whisker's NHWC layout (oneDNN's jit kernels run on it
 * directly, no reorder). Weights are declared with format `any` so oneDNN picks
 * its preferred blocked layout; whisker's OHWI weights are reordered into it
 * for forward/backward-data, and weight gradients are reordered back to OHWI.
 * Algorithm: direct (no Winograd), so results match the reference to float
 * rounding. Primitive descriptors are created per call; oneDNN's primitive
 * cache makes repeated shapes cheap. */
#include <stdlib.h>
#include <string.h>

#include "ops/dnnl_util.h"
#include "ops/fast.h"

typedef struct wk_conv_mds {
  dnnl_memory_desc_t src, dst, wei_user, wei_any, bias;
  dnnl_dims_t strides, dilates, pad_l, pad_r;
} wk_conv_mds;

static dnnl_status_t wk_conv_mds_init(const wk_conv2d_geom *g, wk_conv_mds *m) {
  dnnl_status_t s;
  const dnnl_dims_t src = {g->n, g->c, g->h, g->w};
  const dnnl_dims_t dst = {g->n, g->o, g->oh, g->ow};
  if ((s = dnnl_memory_desc_init_by_tag(&m->src, 4, src, dnnl_f32, dnnl_nhwc))) return s;
  if ((s = dnnl_memory_desc_init_by_tag(&m->dst, 4, dst, dnnl_f32, dnnl_nhwc))) return s;
  if (g->groups == 1) {
    const dnnl_dims_t wd = {g->o, g->c, g->kh, g->kw};
    if ((s = dnnl_memory_desc_init_by_tag(&m->wei_user, 4, wd, dnnl_f32, dnnl_ohwi))) return s;
    if ((s = dnnl_memory_desc_init_by_tag(&m->wei_any, 4, wd, dnnl_f32, dnnl_format_tag_any)))
      return s;
  } else {
    const dnnl_dims_t wd = {g->groups, g->o / g->groups, g->c / g->groups, g->kh, g->kw};
    if ((s = dnnl_memory_desc_init_by_tag(&m->wei_user, 5, wd, dnnl_f32, dnnl_gohwi))) return s;
    if ((s = dnnl_memory_desc_init_by_tag(&m->wei_any, 5, wd, dnnl_f32, dnnl_format_tag_any)))
      return s;
  }
  const dnnl_dims_t bd = {g->o};
  if ((s = dnnl_memory_desc_init_by_tag(&m->bias, 1, bd, dnnl_f32, dnnl_a))) return s;
  m->strides[0] = g->sh;
  m->strides[1] = g->sw;
  m->dilates[0] = g->dh - 1; /* oneDNN counts dilation from 0 */
  m->dilates[1] = g->dw - 1;
  m->pad_l[0] = g->pt;
  m->pad_l[1] = g->pl;
  m->pad_r[0] = g->pb;
  m->pad_r[1] = g->pr;
  return dnnl_success;
}

/* The forward primitive descriptor: the primitive itself, or the hint backward
 * descriptors need. */
static dnnl_status_t wk_conv_fwd_pd(wk_dnnl *d, const wk_conv_mds *m, bool with_bias,
                                    dnnl_primitive_desc_t *pd) {
  dnnl_convolution_desc_t cd;
  dnnl_status_t s = dnnl_dilated_convolution_forward_desc_init(
      &cd, dnnl_forward_training, dnnl_convolution_direct, &m->src, &m->wei_any,
      with_bias ? &m->bias : NULL, &m->dst, m->strides, m->dilates, m->pad_l, m->pad_r);
  if (s != dnnl_success) return s;
  return dnnl_primitive_desc_create(pd, &cd, NULL, d->engine, NULL);
}

/* Returns user weights in the layout `want`: either `w` itself or a reordered
 * copy in *owned (freed by the caller). */
static wk_status wk_conv_weights_as(wk_dnnl *d, const wk_conv_mds *m,
                                    const dnnl_memory_desc_t *want, const float *w,
                                    const void **out, void **owned) {
  *owned = NULL;
  *out = w;
  if (dnnl_memory_desc_equal(want, &m->wei_user)) return WK_OK;
  WK_TRY(wk_dnnl_buffer(dnnl_memory_desc_get_size(want), owned));
  wk_status s = wk_dnnl_reorder(d, &m->wei_user, w, want, *owned);
  if (s != WK_OK) return s;
  *out = *owned;
  return WK_OK;
}

wk_status wk_conv2d_forward_dnnl(wk_ctx *ctx, const wk_conv2d_geom *g, const float *x,
                                 const float *w, const float *b, float *y) {
  wk_status st = WK_OK;
  wk_dnnl *d = ctx->dnnl;
  wk_conv_mds m;
  dnnl_primitive_desc_t pd = NULL;
  void *wbuf = NULL;
  const void *wdata;
  WK_DNNL_CHECK(wk_conv_mds_init(g, &m));
  WK_DNNL_CHECK(wk_conv_fwd_pd(d, &m, b != NULL, &pd));
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  if ((st = wk_conv_weights_as(d, &m, wmd, w, &wdata, &wbuf)) != WK_OK) goto done;
  {
    const int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    const dnnl_memory_desc_t *mds[4] = {&m.src, wmd, &m.dst, &m.bias};
    const void *ptrs[4] = {x, wdata, y, b};
    st = wk_dnnl_run(d, pd, b ? 4 : 3, kinds, mds, ptrs);
  }
done:
  free(wbuf);
  if (pd) dnnl_primitive_desc_destroy(pd);
  return st;
}

static wk_status wk_conv2d_backward_data_dnnl(wk_dnnl *d, const wk_conv_mds *m,
                                              dnnl_primitive_desc_t fwd, const float *w,
                                              const float *dy, float *dx) {
  wk_status st = WK_OK;
  dnnl_convolution_desc_t cd;
  dnnl_primitive_desc_t pd = NULL;
  void *wbuf = NULL;
  const void *wdata;
  WK_DNNL_CHECK(dnnl_dilated_convolution_backward_data_desc_init(
      &cd, dnnl_convolution_direct, &m->src, &m->wei_any, &m->dst, m->strides, m->dilates,
      m->pad_l, m->pad_r));
  WK_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, d->engine, fwd));
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  if ((st = wk_conv_weights_as(d, m, wmd, w, &wdata, &wbuf)) != WK_OK) goto done;
  {
    const int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
    const dnnl_memory_desc_t *mds[3] = {&m->dst, wmd, &m->src};
    const void *ptrs[3] = {dy, wdata, dx};
    st = wk_dnnl_run(d, pd, 3, kinds, mds, ptrs);
  }
done:
  free(wbuf);
  if (pd) dnnl_primitive_desc_destroy(pd);
  return st;
}

static wk_status wk_conv2d_backward_weights_dnnl(wk_dnnl *d, const wk_conv_mds *m,
                                                 dnnl_primitive_desc_t fwd, const float *x,
                                                 const float *dy, float *dw, float *db) {
  wk_status st = WK_OK;
  dnnl_convolution_desc_t cd;
  dnnl_primitive_desc_t pd = NULL;
  void *wbuf = NULL;
  WK_DNNL_CHECK(dnnl_dilated_convolution_backward_weights_desc_init(
      &cd, dnnl_convolution_direct, &m->src, &m->wei_any, db ? &m->bias : NULL, &m->dst,
      m->strides, m->dilates, m->pad_l, m->pad_r));
  WK_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, NULL, d->engine, fwd));
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
  const bool direct = dnnl_memory_desc_equal(wmd, &m->wei_user);
  if (!direct && (st = wk_dnnl_buffer(dnnl_memory_desc_get_size(wmd), &wbuf)) != WK_OK) goto done;
  {
    const int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS,
                          DNNL_ARG_DIFF_BIAS};
    const dnnl_memory_desc_t *mds[4] = {&m->src, &m->dst, wmd, &m->bias};
    const void *ptrs[4] = {x, dy, direct ? (void *)dw : wbuf, db};
    if ((st = wk_dnnl_run(d, pd, db ? 4 : 3, kinds, mds, ptrs)) != WK_OK) goto done;
  }
  if (!direct) st = wk_dnnl_reorder(d, wmd, wbuf, &m->wei_user, dw);
done:
  free(wbuf);
  if (pd) dnnl_primitive_desc_destroy(pd);
  return st;
}

wk_status wk_conv2d_backward_dnnl(wk_ctx *ctx, const wk_conv2d_geom *g, const float *x,
                                  const float *w, const float *dy, float *dx, float *dw,
                                  float *db) {
  wk_status st = WK_OK;
  wk_dnnl *d = ctx->dnnl;
  wk_conv_mds m;
  dnnl_primitive_desc_t fwd = NULL;
  WK_DNNL_CHECK(wk_conv_mds_init(g, &m));
  WK_DNNL_CHECK(wk_conv_fwd_pd(d, &m, db != NULL, &fwd));
  if (dx && (st = wk_conv2d_backward_data_dnnl(d, &m, fwd, w, dy, dx)) != WK_OK) goto done;
  if (dw) {
    st = wk_conv2d_backward_weights_dnnl(d, &m, fwd, x, dy, dw, db);
  } else if (db) {
    /* Only the bias gradient: a column sum, no need for the weight primitive. */
    wk_conv2d_backward_ref_f32(g, x, w, dy, NULL, NULL, db);
  }
done:
  if (fwd) dnnl_primitive_desc_destroy(fwd);
  return st;
}
