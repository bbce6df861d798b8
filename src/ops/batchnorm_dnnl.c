/* batchnorm_dnnl.c - batch normalisation through oneDNN. The data is described
 * as (M, C, 1, 1) in `nhwc` layout: NHWC activations flattened over N, H and W,
 * which is exactly how batch norm treats them. (A 2-D `nc` description selects
 * oneDNN's slow generic kernel; this one selects the jit kernel.) */
#include <stdlib.h>

#include "ops/bn_act.h"
#include "ops/dnnl_util.h"
#include "ops/fast.h"
#include "ops/plan.h"

static dnnl_status_t wk_bn_mds(int64_t m, int64_t c, dnnl_memory_desc_t *data,
                               dnnl_memory_desc_t *chan) {
  const dnnl_dims_t dd = {m, c, 1, 1}, cd = {c};
  dnnl_status_t s = dnnl_memory_desc_init_by_tag(data, 4, dd, dnnl_f32, dnnl_nhwc);
  if (s != dnnl_success) return s;
  return dnnl_memory_desc_init_by_tag(chan, 1, cd, dnnl_f32, dnnl_a);
}

/* Runs pd where each argument is either the data or a per-channel tensor. */
static wk_status wk_bn_exec(wk_dnnl *d, dnnl_primitive_desc_t pd, const dnnl_memory_desc_t *data,
                            const dnnl_memory_desc_t *chan, int n, const int *kinds,
                            const bool *is_data, const void *const *ptrs) {
  const dnnl_memory_desc_t *mds[10];
  WK_ASSERT(n <= 10);
  for (int i = 0; i < n; i++) mds[i] = is_data[i] ? data : chan;
  return wk_dnnl_run(d, pd, n, kinds, mds, ptrs);
}

static dnnl_status_t wk_bn_fwd_pd(wk_dnnl *d, const dnnl_memory_desc_t *data, float eps,
                                  bool global_stats, dnnl_primitive_desc_t *pd) {
  dnnl_batch_normalization_desc_t bd;
  unsigned flags = dnnl_use_scale | dnnl_use_shift | (global_stats ? dnnl_use_global_stats : 0u);
  dnnl_status_t s = dnnl_batch_normalization_forward_desc_init(
      &bd, global_stats ? dnnl_forward_inference : dnnl_forward_training, data, eps, flags);
  if (s != dnnl_success) return s;
  return dnnl_primitive_desc_create(pd, &bd, NULL, d->engine, NULL);
}

wk_status wk_batchnorm_forward_train_dnnl(wk_ctx *ctx, int64_t m, int64_t c, float eps,
                                          const float *x, const float *gamma, const float *beta,
                                          float *mean_out, float *var_out, float *y) {
  wk_status st = WK_OK;
  dnnl_memory_desc_t data, chan;
  dnnl_primitive_desc_t pd = NULL;
  WK_DNNL_CHECK(wk_bn_mds(m, c, &data, &chan));
  WK_DNNL_CHECK(wk_bn_fwd_pd(ctx->dnnl, &data, eps, false, &pd));
  {
    const int kinds[6] = {DNNL_ARG_SRC, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_DST,
                          DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
    const bool is_data[6] = {true, false, false, true, false, false};
    const void *ptrs[6] = {x, gamma, beta, y, mean_out, var_out};
    st = wk_bn_exec(ctx->dnnl, pd, &data, &chan, 6, kinds, is_data, ptrs);
  }
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return st;
}

wk_status wk_batchnorm_forward_infer_dnnl(wk_ctx *ctx, int64_t m, int64_t c, float eps,
                                          const float *x, const float *gamma, const float *beta,
                                          const float *mean, const float *var, float *y) {
  wk_status st = WK_OK;
  dnnl_memory_desc_t data, chan;
  dnnl_primitive_desc_t pd = NULL;
  WK_DNNL_CHECK(wk_bn_mds(m, c, &data, &chan));
  WK_DNNL_CHECK(wk_bn_fwd_pd(ctx->dnnl, &data, eps, true, &pd));
  {
    const int kinds[6] = {DNNL_ARG_SRC, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN,
                          DNNL_ARG_VARIANCE, DNNL_ARG_DST};
    const bool is_data[6] = {true, false, false, false, false, true};
    const void *ptrs[6] = {x, gamma, beta, mean, var, y};
    st = wk_bn_exec(ctx->dnnl, pd, &data, &chan, 6, kinds, is_data, ptrs);
  }
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return st;
}

wk_status wk_batchnorm_backward_dnnl(wk_ctx *ctx, int64_t m, int64_t c, float eps,
                                     bool frozen_stats, const float *x, const float *gamma,
                                     const float *mean, const float *var, const float *dy,
                                     float *dx, float *dgamma, float *dbeta) {
  wk_status st = WK_OK;
  dnnl_memory_desc_t data, chan;
  dnnl_primitive_desc_t fwd = NULL, pd = NULL;
  dnnl_batch_normalization_desc_t bd;
  /* tmp holds the shift oneDNN insists on (unused by the gradients: zeros), and
   * stands in for outputs the caller does not want. */
  float *tmp = calloc((size_t)c * 3 + (dx ? 0 : (size_t)(m * c)), sizeof *tmp);
  if (!tmp) return wk_fail(WK_ERR_NOMEM, "batchnorm backward: out of memory");
  float *shift = tmp, *dg = dgamma ? dgamma : tmp + c, *db = dbeta ? dbeta : tmp + 2 * c;
  float *dxp = dx ? dx : tmp + 3 * c;
  unsigned flags = dnnl_use_scale | dnnl_use_shift | (frozen_stats ? dnnl_use_global_stats : 0u);
  WK_DNNL_CHECK(wk_bn_mds(m, c, &data, &chan));
  WK_DNNL_CHECK(wk_bn_fwd_pd(ctx->dnnl, &data, eps, frozen_stats, &fwd));
  WK_DNNL_CHECK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &data, &data, eps,
                                                            flags));
  WK_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &bd, NULL, ctx->dnnl->engine, fwd));
  {
    const int kinds[9] = {DNNL_ARG_SRC,       DNNL_ARG_MEAN,       DNNL_ARG_VARIANCE,
                          DNNL_ARG_DIFF_DST,  DNNL_ARG_SCALE,      DNNL_ARG_SHIFT,
                          DNNL_ARG_DIFF_SRC,  DNNL_ARG_DIFF_SCALE, DNNL_ARG_DIFF_SHIFT};
    const bool is_data[9] = {true, false, false, true, false, false, true, false, false};
    const void *ptrs[9] = {x, mean, var, dy, gamma, shift, dxp, dg, db};
    st = wk_bn_exec(ctx->dnnl, pd, &data, &chan, 9, kinds, is_data, ptrs);
  }
done:
  free(tmp);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (fwd) dnnl_primitive_desc_destroy(fwd);
  return st;
}

/* ---------------------------------------------------------------- plans */

struct wk_batchnorm_plan {
  wk_dnnl *d;
  int64_t m, c;
  dnnl_memory_desc_t data, chan, ws_md;
  dnnl_primitive_desc_t fwd_pd, bwd_pd;
  dnnl_primitive_t fwd, bwd;
  void *ws;          /* ReLU mask from forward (fused plans) */
  float *scratch_c;  /* 2 x C: stand-ins for unwanted parameter gradients */
  float *scratch_dx; /* M x C when the caller wants no dx (allocated on demand) */
  bool fuse_relu;
  wk_bn_act *own;    /* whisker's kernels (batchnorm_act.c) instead of oneDNN's */
  wk_ctx *ctx;
};

/* $WHISKER_BN_OWN: 0 never whisker's kernels (a ReLU6 then runs unfused), 1
 * always, anything else (the default) for a ReLU6 only. */
static int wk_bn_own_mode(void) {
  const char *e = getenv("WHISKER_BN_OWN");
  if (e && (e[0] == '0' || e[0] == '1') && !e[1]) return e[0] - '0';
  return -1;
}

bool wk_batchnorm_fuses(wk_post_act act) {
  return act != WK_POST_RELU6 || wk_bn_own_mode() != 0;
}

/* Whose kernels a plan with `act` after it runs: oneDNN fuses a ReLU or
 * nothing; whisker's own run a ReLU6, which oneDNN cannot. */
static bool wk_bn_own(wk_post_act act) {
  const int mode = wk_bn_own_mode();
  return mode == 1 || (mode != 0 && act == WK_POST_RELU6);
}

wk_status wk_batchnorm_plan_create(wk_ctx *ctx, int64_t m, int64_t c, float eps, wk_post_act act,
                                   wk_batchnorm_plan **out) {
  wk_status st = WK_OK;
  *out = NULL;
  if (ctx->impl != WK_IMPL_CPU) return WK_ERR_UNSUPPORTED;
  wk_batchnorm_plan *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "batchnorm plan: out of memory");
  p->d = ctx->dnnl;
  p->ctx = ctx;
  p->m = m;
  p->c = c;
  const bool own = wk_bn_own(act);
  if (act == WK_POST_RELU6 && !own) {
    free(p);
    return wk_fail(WK_ERR_UNSUPPORTED, "batchnorm: a fused ReLU6 needs whisker's kernels "
                   "($WHISKER_BN_OWN is 0)");
  }
  if (own) {
    if ((st = wk_bn_act_create(m, c, eps, act, &p->own)) != WK_OK) goto done;
    *out = p;
    return WK_OK;
  }
  const bool fuse_relu = act == WK_POST_RELU;
  p->fuse_relu = fuse_relu;
  dnnl_batch_normalization_desc_t bd;
  unsigned flags = dnnl_use_scale | dnnl_use_shift | (fuse_relu ? dnnl_fuse_norm_relu : 0u);
  WK_DNNL_CHECK(wk_bn_mds(m, c, &p->data, &p->chan));
  WK_DNNL_CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &p->data,
                                                           eps, flags));
  WK_DNNL_CHECK(dnnl_primitive_desc_create(&p->fwd_pd, &bd, NULL, p->d->engine, NULL));
  WK_DNNL_CHECK(dnnl_primitive_create(&p->fwd, p->fwd_pd));
  WK_DNNL_CHECK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &p->data,
                                                            &p->data, eps, flags));
  WK_DNNL_CHECK(dnnl_primitive_desc_create(&p->bwd_pd, &bd, NULL, p->d->engine, p->fwd_pd));
  WK_DNNL_CHECK(dnnl_primitive_create(&p->bwd, p->bwd_pd));
  if (fuse_relu) {
    p->ws_md = *dnnl_primitive_desc_query_md(p->fwd_pd, dnnl_query_workspace_md, 0);
    if ((st = wk_dnnl_buffer(dnnl_memory_desc_get_size(&p->ws_md), &p->ws)) != WK_OK) goto done;
  }
  p->scratch_c = calloc((size_t)(2 * c), sizeof(float));
  if (!p->scratch_c) st = wk_fail(WK_ERR_NOMEM, "batchnorm plan: out of memory");
done:
  if (st != WK_OK) {
    wk_batchnorm_plan_destroy(p);
    return st;
  }
  *out = p;
  return WK_OK;
}

void wk_batchnorm_plan_destroy(wk_batchnorm_plan *p) {
  if (!p) return;
  wk_bn_act_destroy(p->own);
  if (p->fwd) dnnl_primitive_destroy(p->fwd);
  if (p->bwd) dnnl_primitive_destroy(p->bwd);
  if (p->fwd_pd) dnnl_primitive_desc_destroy(p->fwd_pd);
  if (p->bwd_pd) dnnl_primitive_desc_destroy(p->bwd_pd);
  free(p->ws);
  free(p->scratch_c);
  free(p->scratch_dx);
  free(p);
}

wk_status wk_batchnorm_plan_forward(wk_batchnorm_plan *p, const float *x, const float *gamma,
                                    const float *beta, float *mean, float *var, float *y) {
  if (p->own) return wk_bn_act_forward(p->own, p->ctx, x, gamma, beta, mean, var, y);
  const int kinds[7] = {DNNL_ARG_SRC, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_DST,
                        DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_WORKSPACE};
  const dnnl_memory_desc_t *mds[7] = {&p->data, &p->chan, &p->chan, &p->data,
                                      &p->chan, &p->chan, &p->ws_md};
  const void *ptrs[7] = {x, gamma, beta, y, mean, var, p->ws};
  return wk_dnnl_exec(p->d, p->fwd, p->fuse_relu ? 7 : 6, kinds, mds, ptrs);
}

wk_status wk_batchnorm_plan_backward(wk_batchnorm_plan *p, const float *x, const float *gamma,
                                     const float *beta, const float *mean, const float *var,
                                     const float *dy, float *dx, float *dgamma, float *dbeta) {
  if (p->own)
    return wk_bn_act_backward(p->own, p->ctx, x, gamma, beta, mean, var, dy, dx, dgamma, dbeta);
  if (!dx) {
    if (!p->scratch_dx) WK_TRY(wk_dnnl_buffer((size_t)(p->m * p->c) * sizeof(float),
                                              (void **)&p->scratch_dx));
    dx = p->scratch_dx;
  }
  if (!dgamma) dgamma = p->scratch_c;
  if (!dbeta) dbeta = p->scratch_c + p->c;
  const int kinds[10] = {DNNL_ARG_SRC,      DNNL_ARG_MEAN,       DNNL_ARG_VARIANCE,
                         DNNL_ARG_DIFF_DST, DNNL_ARG_SCALE,      DNNL_ARG_SHIFT,
                         DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_SCALE, DNNL_ARG_DIFF_SHIFT,
                         DNNL_ARG_WORKSPACE};
  const dnnl_memory_desc_t *mds[10] = {&p->data, &p->chan, &p->chan, &p->data, &p->chan,
                                       &p->chan, &p->data, &p->chan, &p->chan, &p->ws_md};
  const void *ptrs[10] = {x, mean, var, dy, gamma, beta, dx, dgamma, dbeta, p->ws};
  return wk_dnnl_exec(p->d, p->bwd, p->fuse_relu ? 10 : 9, kinds, mds, ptrs);
}
