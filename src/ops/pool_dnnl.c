/* pool_dnnl.c - max and average pooling plans through oneDNN (ops/plan.h).
 * NHWC in and out; max pooling in training keeps oneDNN's workspace (where
 * each maximum came from) inside the plan for the backward pass. */
#include <stdlib.h>

#include "ops/dnnl_util.h"
#include "ops/plan.h"
#include "ops/ref.h"

struct wk_pool2d_plan {
  wk_dnnl *d;
  bool training;
  dnnl_memory_desc_t src, dst, ws_md;
  dnnl_primitive_desc_t fwd_pd, bwd_pd;
  dnnl_primitive_t fwd, bwd;
  void *ws;
};

wk_status wk_pool2d_plan_create(wk_ctx *ctx, const wk_pool2d_geom *g, bool max, bool training,
                                wk_pool2d_plan **out) {
  return wk_pool2d_plan_create_layout(ctx, g, max, training, false, out);
}

wk_status wk_pool2d_plan_create_layout(wk_ctx *ctx, const wk_pool2d_geom *g, bool max,
                                       bool training, bool blk, wk_pool2d_plan **out) {
  wk_status st = WK_OK;
  *out = NULL;
  if (ctx->impl != WK_IMPL_CPU) return WK_ERR_UNSUPPORTED;
  wk_pool2d_plan *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "pooling plan: out of memory");
  p->d = ctx->dnnl;
  p->training = training;
  const dnnl_dims_t sd = {g->n, g->c, g->h, g->w}, dd = {g->n, g->c, g->oh, g->ow};
  const dnnl_dims_t strides = {g->sh, g->sw}, kernel = {g->kh, g->kw}, dil = {0, 0};
  const dnnl_dims_t pl = {g->pt, g->pl}, pr = {g->pb, g->pr};
  const dnnl_alg_kind_t alg = max ? dnnl_pooling_max
                                  : g->count_include_pad ? dnnl_pooling_avg_include_padding
                                                         : dnnl_pooling_avg_exclude_padding;
  dnnl_pooling_v2_desc_t pd;
  const dnnl_format_tag_t tag = blk ? dnnl_nChw16c : dnnl_nhwc;
  WK_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&p->src, 4, sd, dnnl_f32, tag));
  WK_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&p->dst, 4, dd, dnnl_f32, tag));
  WK_DNNL_CHECK(dnnl_pooling_v2_forward_desc_init(
      &pd, training ? dnnl_forward_training : dnnl_forward_inference, alg, &p->src, &p->dst,
      strides, kernel, dil, pl, pr));
  WK_DNNL_CHECK(dnnl_primitive_desc_create(&p->fwd_pd, &pd, NULL, p->d->engine, NULL));
  WK_DNNL_CHECK(dnnl_primitive_create(&p->fwd, p->fwd_pd));
  if (training) {
    WK_DNNL_CHECK(dnnl_pooling_v2_backward_desc_init(&pd, alg, &p->src, &p->dst, strides, kernel,
                                                     dil, pl, pr));
    WK_DNNL_CHECK(dnnl_primitive_desc_create(&p->bwd_pd, &pd, NULL, p->d->engine, p->fwd_pd));
    WK_DNNL_CHECK(dnnl_primitive_create(&p->bwd, p->bwd_pd));
    const dnnl_memory_desc_t *ws = dnnl_primitive_desc_query_md(p->fwd_pd,
                                                                dnnl_query_workspace_md, 0);
    if (ws && ws->ndims > 0) {
      p->ws_md = *ws;
      st = wk_dnnl_buffer(dnnl_memory_desc_get_size(ws), &p->ws);
    }
  }
done:
  if (st != WK_OK) {
    wk_pool2d_plan_destroy(p);
    return st;
  }
  *out = p;
  return WK_OK;
}

void wk_pool2d_plan_destroy(wk_pool2d_plan *p) {
  if (!p) return;
  if (p->fwd) dnnl_primitive_destroy(p->fwd);
  if (p->bwd) dnnl_primitive_destroy(p->bwd);
  if (p->fwd_pd) dnnl_primitive_desc_destroy(p->fwd_pd);
  if (p->bwd_pd) dnnl_primitive_desc_destroy(p->bwd_pd);
  free(p->ws);
  free(p);
}

wk_status wk_pool2d_plan_forward(wk_pool2d_plan *p, const float *x, float *y) {
  const int kinds[3] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_WORKSPACE};
  const dnnl_memory_desc_t *mds[3] = {&p->src, &p->dst, &p->ws_md};
  const void *ptrs[3] = {x, y, p->ws};
  return wk_dnnl_exec(p->d, p->fwd, p->ws ? 3 : 2, kinds, mds, ptrs);
}

wk_status wk_pool2d_plan_backward(wk_pool2d_plan *p, const float *dy, float *dx) {
  WK_ASSERT(p->training);
  const int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC, DNNL_ARG_WORKSPACE};
  const dnnl_memory_desc_t *mds[3] = {&p->dst, &p->src, &p->ws_md};
  const void *ptrs[3] = {dy, dx, p->ws};
  return wk_dnnl_exec(p->d, p->bwd, p->ws ? 3 : 2, kinds, mds, ptrs);
}
