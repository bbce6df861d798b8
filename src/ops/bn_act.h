/* bn_act.h - whisker's own training batchnorm with the activation after it
 * fused (src/ops/batchnorm_act.c explains it). Internal to the ops: the
 * batchnorm plans (plan.h) run it for the activations oneDNN does not fuse. */
#ifndef WK_OPS_BN_ACT_H
#define WK_OPS_BN_ACT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/context.h"
#include "ops/plan.h"

typedef struct wk_bn_act wk_bn_act;

/* For M rows of C channels (M, C >= 1; training needs M >= 2, the caller's
 * check). */
wk_status wk_bn_act_create(int64_t m, int64_t c, float eps, wk_post_act act, wk_bn_act **out);
void wk_bn_act_destroy(wk_bn_act *p);
/* Tests: off, the plain loops run even where AVX-512 is there (on: where it
 * is). Both give the same bits. */
void wk_bn_act_use_avx512(wk_bn_act *p, bool on);
/* Both use the context's scratch (wk_ctx_scratch) during the call.
 * mean and var (C) receive the batch mean and the biased batch variance;
 * y = act(batchnorm(x)). */
wk_status wk_bn_act_forward(wk_bn_act *p, wk_ctx *ctx, const float *x, const float *gamma,
                            const float *beta, float *mean, float *var, float *y);
/* dy: the gradient of act's output. dx (may be dy), dgamma and dbeta may each
 * be NULL. gamma, beta, mean and var must be forward's. */
wk_status wk_bn_act_backward(wk_bn_act *p, wk_ctx *ctx, const float *x, const float *gamma,
                             const float *beta, const float *mean, const float *var,
                             const float *dy, float *dx, float *dgamma, float *dbeta);

#endif
