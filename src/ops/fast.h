/* fast.h - the CPU fast paths behind the tensor-level ops. Each takes already
 * validated raw buffers and returns WK_ERR_UNSUPPORTED (without recording an
 * error) for a case it does not handle, in which case the caller runs the
 * reference. Any other failure is a real error. */
#ifndef WK_OPS_FAST_H
#define WK_OPS_FAST_H

#include "ops/plan.h"
#include "ops/ref.h"

wk_status wk_conv2d_forward_dnnl(wk_ctx *ctx, const wk_conv2d_geom *g, const float *x,
                                 const float *w, const float *b, float *y);
wk_status wk_conv2d_backward_dnnl(wk_ctx *ctx, const wk_conv2d_geom *g, const float *x,
                                  const float *w, const float *dy, float *dx, float *dw,
                                  float *db);

/* var_out receives the biased batch variance (C). */
wk_status wk_batchnorm_forward_train_dnnl(wk_ctx *ctx, int64_t m, int64_t c, float eps,
                                          const float *x, const float *gamma, const float *beta,
                                          float *mean_out, float *var_out, float *y);
wk_status wk_batchnorm_forward_infer_dnnl(wk_ctx *ctx, int64_t m, int64_t c, float eps,
                                          const float *x, const float *gamma, const float *beta,
                                          const float *mean, const float *var, float *y);
wk_status wk_batchnorm_backward_dnnl(wk_ctx *ctx, int64_t m, int64_t c, float eps,
                                     bool frozen_stats, const float *x, const float *gamma,
                                     const float *mean, const float *var, const float *dy,
                                     float *dx, float *dgamma, float *dbeta);

#endif
