/* batchnorm.c - batch normalisation over the channel (last) dimension:
 * validation, running statistics and dispatch. oneDNN fast path in
 * batchnorm_dnnl.c; reference in ref_template.inc. */
#include <math.h>
#include <stdlib.h>

#include "ops/fast.h"

/* Validates x/y as (..., C) and every per-channel tensor as (C); sets m and c. */
static wk_status wk_bn_check(const wk_batchnorm_params *p, const wk_tensor *x,
                             const wk_tensor *y, const char *y_name,
                             const wk_tensor *const *per_channel, const char *const *names,
                             int n_per_channel, int64_t *m, int64_t *c) {
  if (!x || !y) return wk_fail(WK_ERR_INVALID_ARG, "batchnorm: missing tensor");
  if (x->ndim < 2) return wk_fail(WK_ERR_SHAPE, "batchnorm: input needs at least 2 dimensions");
  if (!(p->eps > 0.0f) || !(p->momentum >= 0.0f && p->momentum <= 1.0f))
    return wk_fail(WK_ERR_INVALID_ARG, "batchnorm: eps %g must be > 0, momentum %g in [0, 1]",
                   (double)p->eps, (double)p->momentum);
  WK_TRY(wk_tensor_expect(x, "batchnorm input", WK_F32, x->ndim, x->shape));
  WK_TRY(wk_tensor_expect(y, y_name, WK_F32, x->ndim, x->shape));
  *c = x->shape[x->ndim - 1];
  *m = wk_tensor_numel(x) / (*c ? *c : 1);
  if (*c < 1 || *m < 1) return wk_fail(WK_ERR_SHAPE, "batchnorm: empty input");
  for (int i = 0; i < n_per_channel; i++)
    if (per_channel[i]) WK_TRY(wk_tensor_expect(per_channel[i], names[i], WK_F32, 1, c));
  return WK_OK;
}

void wk_batchnorm_running_update(const wk_batchnorm_params *p, int64_t m, int64_t c,
                                 const float *mean, const float *var, float *running_mean,
                                 float *running_var) {
  const double mom = p->momentum, unbias = (double)m / (double)(m - 1);
  for (int64_t ch = 0; ch < c; ch++) {
    running_mean[ch] = (float)((1.0 - mom) * running_mean[ch] + mom * mean[ch]);
    running_var[ch] = (float)((1.0 - mom) * running_var[ch] + mom * var[ch] * unbias);
  }
}

wk_status wk_batchnorm_forward_train(wk_ctx *ctx, const wk_batchnorm_params *p,
                                     const wk_tensor *x, const wk_tensor *gamma,
                                     const wk_tensor *beta, wk_tensor *running_mean,
                                     wk_tensor *running_var, wk_tensor *save_mean,
                                     wk_tensor *save_invstd, wk_tensor *y) {
  int64_t m = 0, c = 0;
  const wk_tensor *pc[6] = {gamma, beta, running_mean, running_var, save_mean, save_invstd};
  const char *names[6] = {"batchnorm gamma", "batchnorm beta", "batchnorm running mean",
                          "batchnorm running variance", "batchnorm saved mean",
                          "batchnorm saved inverse std"};
  WK_TRY(wk_bn_check(p, x, y, "batchnorm output", pc, names, 6, &m, &c));
  for (int i = 0; i < 6; i++)
    if (!pc[i]) return wk_fail(WK_ERR_INVALID_ARG, "%s: missing", names[i]);
  if (m < 2)
    return wk_fail(WK_ERR_SHAPE, "batchnorm: training needs more than one value per channel "
                   "(got a batch of %lld)", (long long)m);
  float *rm = running_mean->data, *rv = running_var->data;
  float *sm = save_mean->data, *si = save_invstd->data;
  if (ctx->impl != WK_IMPL_REF) {
    /* oneDNN returns the batch mean and biased variance into sm/si; turn them
     * into the saved inverse std and the running statistics here. */
    wk_status s = wk_batchnorm_forward_train_dnnl(ctx, m, c, p->eps, x->data, gamma->data,
                                                  beta->data, sm, si, y->data);
    if (s == WK_OK) {
      wk_batchnorm_running_update(p, m, c, sm, si, rm, rv);
      for (int64_t ch = 0; ch < c; ch++) si[ch] = (float)(1.0 / sqrt((double)si[ch] + p->eps));
    }
    if (s != WK_ERR_UNSUPPORTED) return s;
  }
  wk_batchnorm_forward_train_ref_f32(m, c, p->eps, p->momentum, x->data, gamma->data,
                                     beta->data, rm, rv, sm, si, y->data);
  return WK_OK;
}

wk_status wk_batchnorm_forward_infer(wk_ctx *ctx, const wk_batchnorm_params *p,
                                     const wk_tensor *x, const wk_tensor *gamma,
                                     const wk_tensor *beta, const wk_tensor *running_mean,
                                     const wk_tensor *running_var, wk_tensor *y) {
  int64_t m = 0, c = 0;
  const wk_tensor *pc[4] = {gamma, beta, running_mean, running_var};
  const char *names[4] = {"batchnorm gamma", "batchnorm beta", "batchnorm running mean",
                          "batchnorm running variance"};
  WK_TRY(wk_bn_check(p, x, y, "batchnorm output", pc, names, 4, &m, &c));
  for (int i = 0; i < 4; i++)
    if (!pc[i]) return wk_fail(WK_ERR_INVALID_ARG, "%s: missing", names[i]);
  if (ctx->impl != WK_IMPL_REF) {
    wk_status s = wk_batchnorm_forward_infer_dnnl(ctx, m, c, p->eps, x->data, gamma->data,
                                                  beta->data, running_mean->data,
                                                  running_var->data, y->data);
    if (s != WK_ERR_UNSUPPORTED) return s;
  }
  wk_batchnorm_forward_infer_ref_f32(m, c, p->eps, x->data, gamma->data, beta->data,
                                     running_mean->data, running_var->data, y->data);
  return WK_OK;
}

wk_status wk_batchnorm_backward(wk_ctx *ctx, const wk_batchnorm_params *p, bool frozen_stats,
                                const wk_tensor *x, const wk_tensor *gamma,
                                const wk_tensor *mean, const wk_tensor *invstd,
                                const wk_tensor *dy, wk_tensor *dx, wk_tensor *dgamma,
                                wk_tensor *dbeta) {
  int64_t m = 0, c = 0;
  const wk_tensor *pc[5] = {gamma, mean, invstd, dgamma, dbeta};
  const char *names[5] = {"batchnorm gamma", "batchnorm mean", "batchnorm inverse std",
                          "batchnorm gamma gradient", "batchnorm beta gradient"};
  WK_TRY(wk_bn_check(p, x, dy, "batchnorm output gradient", pc, names, 5, &m, &c));
  for (int i = 0; i < 3; i++)
    if (!pc[i]) return wk_fail(WK_ERR_INVALID_ARG, "%s: missing", names[i]);
  if (dx) WK_TRY(wk_tensor_expect(dx, "batchnorm input gradient", WK_F32, x->ndim, x->shape));
  float *dxp = dx ? dx->data : NULL, *dgp = dgamma ? dgamma->data : NULL;
  float *dbp = dbeta ? dbeta->data : NULL;
  if (ctx->impl != WK_IMPL_REF) {
    /* oneDNN wants the variance: var = 1/invstd^2 - eps. */
    float *var = malloc((size_t)c * sizeof *var);
    if (!var) return wk_fail(WK_ERR_NOMEM, "batchnorm: out of memory");
    const float *is = invstd->data;
    for (int64_t ch = 0; ch < c; ch++)
      var[ch] = (float)(1.0 / ((double)is[ch] * (double)is[ch]) - (double)p->eps);
    wk_status s = wk_batchnorm_backward_dnnl(ctx, m, c, p->eps, frozen_stats, x->data,
                                             gamma->data, mean->data, var, dy->data, dxp, dgp,
                                             dbp);
    free(var);
    if (s != WK_ERR_UNSUPPORTED) return s;
  }
  wk_batchnorm_backward_ref_f32(m, c, frozen_stats, x->data, gamma->data, mean->data,
                                invstd->data, dy->data, dxp, dgp, dbp);
  return WK_OK;
}
