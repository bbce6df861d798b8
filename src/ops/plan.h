/* plan.h - ops prepared once for a fixed shape.
 *
 * A plan creates its oneDNN primitives (or, for some inference convolutions,
 * whisker's own kernels: the Winograd of ops/wino.h, the fused 1x1 +
 * depthwise of ops/pwdw_own.h) once and keeps the weights in the layout
 * its kernel prefers, reordering them only when the caller says they changed
 * (a new weights version). The network executor holds one plan per node and
 * batch size; the stateless functions of ops.h build a throw-away plan per
 * call. A plan, and the context whose scratch it uses, serve one thread at a
 * time. Plans exist on the CPU fast path only: creating one under
 * WK_IMPL_REF returns WK_ERR_UNSUPPORTED without recording an error, and the
 * caller runs the reference instead. */
#ifndef WK_OPS_PLAN_H
#define WK_OPS_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "ops/ops.h"

/* An activation fused after a convolution. */
typedef enum wk_post_act {
  WK_POST_NONE = 0,
  WK_POST_RELU,
  WK_POST_RELU6,
} wk_post_act;

typedef struct wk_conv2d_plan wk_conv2d_plan;

/* Whether oneDNN's kernels on this CPU work on nChw16c activations: its
 * AVX-512 ones do; its AVX2 ones block by 8 and leave nChw16c to its
 * reference kernels, hundreds of times slower (MobileNetV2's depthwise
 * convolutions: 2.6 s per photo instead of 3 ms). The network keeps its
 * activations blocked, and pairs 1x1 and depthwise convolutions, only where
 * this holds. */
bool wk_conv2d_blocked_native(void);

/* inference: a forward-only plan; else a training plan (forward,
 * backward-data, backward-weights). Either applies `post` to the forward's
 * output (a oneDNN post-op; a training plan on oneDNN's Winograd, which takes
 * no ReLU6, clips in a second pass instead of leaving Winograd). The
 * backward is the convolution's alone: the caller applies the activation's
 * mask to dy first. */
wk_status wk_conv2d_plan_create(wk_ctx *ctx, const wk_conv2d_geom *g, bool bias, bool inference,
                                wk_post_act post, wk_conv2d_plan **out);
/* The same with the caller's activations in oneDNN's nChw16c layout (channels
 * padded to a multiple of 16, the padding zero) where src_blk / dst_blk say
 * so, NHWC elsewhere; inference plans only. The primitive runs in the
 * source's layout and the output is reordered when the two differ. */
wk_status wk_conv2d_plan_create_layout(wk_ctx *ctx, const wk_conv2d_geom *g, bool bias,
                                       bool inference, wk_post_act post, bool src_blk,
                                       bool dst_blk, wk_conv2d_plan **out);
/* An inference plan whose forward adds the convolution into y (y = post(y +
 * conv(x))): a residual add fused into the convolution before it, both
 * activations NHWC or both nChw16c (blk). WK_ERR_UNSUPPORTED, with no error
 * recorded, where the convolution would not run on y directly (Winograd, the
 * stem kernel, a layout reorder): the caller then adds on its own. */
wk_status wk_conv2d_plan_create_sum(wk_ctx *ctx, const wk_conv2d_geom *g, bool bias,
                                    wk_post_act post, bool blk, wk_conv2d_plan **out);
void wk_conv2d_plan_destroy(wk_conv2d_plan *p);

/* w_version identifies the weights' content: reordered weights are reused while
 * it stays the same; 0 means "unknown", always reorder. Buffers as in ops.h:
 * x (N,H,W,C), w (O,KH,KW,C/g), b (O) or NULL, y (N,OH,OW,O). */
wk_status wk_conv2d_plan_forward(wk_conv2d_plan *p, const float *x, const float *w,
                                 uint64_t w_version, const float *b, float *y);
/* Training plans only. dx, dw, db may each be NULL. */
wk_status wk_conv2d_plan_backward(wk_conv2d_plan *p, const float *x, const float *w,
                                  uint64_t w_version, const float *dy, float *dx, float *dw,
                                  float *db);
/* The forward implementation's name: oneDNN's, e.g. "brg:avx512_core", or
 * "wino_f4x4:whisker" / "wino_f2x2:whisker" for whisker's Winograd. */
const char *wk_conv2d_plan_impl(const wk_conv2d_plan *p);

/* A 1x1 convolution followed by a depthwise 3x3 one (stride 1 or 2, padding
 * 1 all round, one filter per channel), for inference: MobileNetV2's
 * expansion and depthwise layers. Fused (oneDNN's depthwise post-op with a jit
 * kernel for the pair; nChw16c activations on both sides only), the expanded
 * activations between the two, six times the block's input, are made a few
 * rows at a time in cache and never written out: 1.2-1.6x faster for the
 * wide early layers at batch 32. Otherwise, or with fuse false, the two plans
 * run in turn through the caller's scratch.
 * Each side takes its own post activation. WK_ERR_INVALID_ARG for geometries
 * that are not such a pair (wk_conv2d_pwdw_pair says which are). */
typedef struct wk_conv2d_pwdw_plan wk_conv2d_pwdw_plan;

/* One convolution's weights (w, with its version as in
 * wk_conv2d_plan_forward) and bias b (or NULL). */
typedef struct wk_conv2d_weights {
  const float *w;
  uint64_t version;
  const float *b;
} wk_conv2d_weights;

/* Whether `pw` then `dw` form the pair above, on the same batch. */
bool wk_conv2d_pwdw_pair(const wk_conv2d_geom *pw, const wk_conv2d_geom *dw);
wk_status wk_conv2d_pwdw_plan_create(wk_ctx *ctx, const wk_conv2d_geom *pw, bool pw_bias,
                                     wk_post_act pw_post, const wk_conv2d_geom *dw, bool dw_bias,
                                     wk_post_act dw_post, bool src_blk, bool dst_blk, bool fuse,
                                     wk_conv2d_pwdw_plan **out);
void wk_conv2d_pwdw_plan_destroy(wk_conv2d_pwdw_plan *p);
/* The scratch a forward needs (64-byte aligned): the expanded activations when
 * the two run in turn, three expanded rows per thread for whisker's fused
 * kernel, 0 for oneDNN's. */
size_t wk_conv2d_pwdw_plan_scratch_bytes(const wk_conv2d_pwdw_plan *p);
/* x: pw's input, y: dw's output (layouts as create said); scratch as above
 * (NULL when 0 bytes). */
wk_status wk_conv2d_pwdw_plan_forward(wk_conv2d_pwdw_plan *p, const float *x,
                                      const wk_conv2d_weights *pw, const wk_conv2d_weights *dw,
                                      float *scratch, float *y);
/* Whether the plan runs the pair fused (oneDNN's primitive, or where oneDNN
 * declines and the pair fits it, whisker's kernel: src/ops/pwdw_own.h); what
 * it runs, e.g. "1x1+dw fused: jit_1x1:avx512_core", "1x1+dw fused: whisker
 * avx512" or "1x1+dw in turn: IMPL, IMPL". */
bool wk_conv2d_pwdw_plan_fused(const wk_conv2d_pwdw_plan *p);
const char *wk_conv2d_pwdw_plan_impl(const wk_conv2d_pwdw_plan *p);

/* running = (1 - momentum) running + momentum batch, with the unbiased
 * variance (m / (m - 1) times the biased `var`), as PyTorch. */
void wk_batchnorm_running_update(const wk_batchnorm_params *p, int64_t m, int64_t c,
                                 const float *mean, const float *var, float *running_mean,
                                 float *running_var);

/* Batch normalisation in training mode over M rows of C channels (NHWC
 * flattened), optionally with a ReLU or ReLU6 fused after it (act): forward
 * saves what the fused backward needs inside the plan, so a backward must
 * follow the forward it belongs to. oneDNN runs none and ReLU, whisker's own
 * kernels ReLU6 (src/ops/batchnorm_act.c; all three with $WHISKER_BN_OWN=1). */
typedef struct wk_batchnorm_plan wk_batchnorm_plan;

/* Whether a plan takes `act` (ReLU6: unless $WHISKER_BN_OWN=0). */
bool wk_batchnorm_fuses(wk_post_act act);

wk_status wk_batchnorm_plan_create(wk_ctx *ctx, int64_t m, int64_t c, float eps, wk_post_act act,
                                   wk_batchnorm_plan **out);
void wk_batchnorm_plan_destroy(wk_batchnorm_plan *p);
/* mean and var (C) receive the batch mean and the biased batch variance. */
wk_status wk_batchnorm_plan_forward(wk_batchnorm_plan *p, const float *x, const float *gamma,
                                    const float *beta, float *mean, float *var, float *y);
/* dy is the gradient of the (ReLU'd, when fused) output; dx may be NULL. */
wk_status wk_batchnorm_plan_backward(wk_batchnorm_plan *p, const float *x, const float *gamma,
                                     const float *beta, const float *mean, const float *var,
                                     const float *dy, float *dx, float *dgamma, float *dbeta);

/* Max or average pooling (NHWC) for a fixed shape. A training plan of max
 * pooling keeps where each maximum came from until its backward. */
typedef struct wk_pool2d_geom wk_pool2d_geom;
typedef struct wk_pool2d_plan wk_pool2d_plan;

wk_status wk_pool2d_plan_create(wk_ctx *ctx, const wk_pool2d_geom *g, bool max, bool training,
                                wk_pool2d_plan **out);
/* The same on nChw16c activations (inference). */
wk_status wk_pool2d_plan_create_layout(wk_ctx *ctx, const wk_pool2d_geom *g, bool max,
                                       bool training, bool blk, wk_pool2d_plan **out);
/* Channels of an nChw16c buffer: c rounded up to 16. */
static inline int64_t wk_blk16(int64_t c) { return (c + 15) / 16 * 16; }
void wk_pool2d_plan_destroy(wk_pool2d_plan *p);
wk_status wk_pool2d_plan_forward(wk_pool2d_plan *p, const float *x, float *y);
wk_status wk_pool2d_plan_backward(wk_pool2d_plan *p, const float *dy, float *dx);

#endif
