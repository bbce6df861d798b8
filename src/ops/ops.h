/* ops.h - the op core: forward and backward of every layer whisker trains.
 *
 * Tensor-level entry points. Each checks its tensors (dtype f32, CPU, shapes that
 * fit together) and returns WK_ERR_SHAPE / WK_ERR_INVALID_ARG with a message
 * otherwise, then runs the implementation the context selects:
 *   WK_IMPL_REF  the plain-loop reference (ops/ref.h), the oracle;
 *   WK_IMPL_CPU  the fast path (oneDNN for conv and batchnorm, sgemm for linear,
 *                threaded loops elsewhere); a shape the fast path does not
 *                handle runs the reference.
 *
 * Layouts (see core/tensor.h): activations NHWC, conv weights OHWI, linear
 * weights (O, I). Backward functions overwrite their outputs (no accumulation);
 * any gradient output may be NULL when it is not needed. */
#ifndef WK_OPS_H
#define WK_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/context.h"
#include "core/tensor.h"

/* ------------------------------------------------------------------ conv2d */

typedef struct wk_conv2d_params {
  int stride_h, stride_w;
  int pad_top, pad_left, pad_bottom, pad_right;
  int dilation_h, dilation_w; /* 1 = dense */
  int groups;                 /* 1 = dense, C = depthwise */
} wk_conv2d_params;

/* Symmetric padding, stride, dilation 1 and groups as given. */
wk_conv2d_params wk_conv2d_params_make(int stride, int pad, int groups);

/* The full geometry of one convolution, derived and validated from the params
 * and the input/weight shapes. */
typedef struct wk_conv2d_geom {
  int64_t n, h, w, c;   /* input (N, H, W, C) */
  int64_t o, kh, kw;    /* weights (O, KH, KW, C/groups) */
  int64_t oh, ow;       /* output (N, OH, OW, O) */
  int64_t sh, sw, pt, pl, pb, pr, dh, dw, groups;
} wk_conv2d_geom;

wk_status wk_conv2d_geom_make(const wk_conv2d_params *p, int64_t n, int64_t h, int64_t w,
                              int64_t c, int64_t o, int64_t kh, int64_t kw,
                              wk_conv2d_geom *out);

/* x (N,H,W,C), w (O,KH,KW,C/g), b (O) or NULL, y (N,OH,OW,O). */
wk_status wk_conv2d_forward(wk_ctx *ctx, const wk_conv2d_params *p, const wk_tensor *x,
                            const wk_tensor *w, const wk_tensor *b, wk_tensor *y);
/* dy (N,OH,OW,O) -> dx (N,H,W,C), dw (O,KH,KW,C/g), db (O); each may be NULL. */
wk_status wk_conv2d_backward(wk_ctx *ctx, const wk_conv2d_params *p, const wk_tensor *x,
                             const wk_tensor *w, const wk_tensor *dy, wk_tensor *dx,
                             wk_tensor *dw, wk_tensor *db);

/* ------------------------------------------------------------------ batchnorm
 * Normalises over every dimension but the last (channels): x is (N,H,W,C) or
 * (N,C), seen as M rows of C. Semantics follow torch.nn.BatchNorm2d: training
 * normalises with the biased batch variance and updates the running variance
 * with the unbiased one; running = (1 - momentum) * running + momentum * batch. */

typedef struct wk_batchnorm_params {
  float eps;      /* 1e-5 in PyTorch */
  float momentum; /* 0.1 in PyTorch */
} wk_batchnorm_params;

/* Training: uses batch statistics, updates running_mean/var (C) in place and
 * saves mean and 1/sqrt(var + eps) (C) for the backward pass. M must be > 1. */
wk_status wk_batchnorm_forward_train(wk_ctx *ctx, const wk_batchnorm_params *p,
                                     const wk_tensor *x, const wk_tensor *gamma,
                                     const wk_tensor *beta, wk_tensor *running_mean,
                                     wk_tensor *running_var, wk_tensor *save_mean,
                                     wk_tensor *save_invstd, wk_tensor *y);
/* Inference: uses the running statistics. y may alias x. */
wk_status wk_batchnorm_forward_infer(wk_ctx *ctx, const wk_batchnorm_params *p,
                                     const wk_tensor *x, const wk_tensor *gamma,
                                     const wk_tensor *beta, const wk_tensor *running_mean,
                                     const wk_tensor *running_var, wk_tensor *y);
/* Backward of either mode. With frozen_stats false, mean/invstd are the saved
 * batch statistics and the gradient flows through them; with frozen_stats true
 * they are the running statistics (a frozen layer) and are constants. */
wk_status wk_batchnorm_backward(wk_ctx *ctx, const wk_batchnorm_params *p, bool frozen_stats,
                                const wk_tensor *x, const wk_tensor *gamma,
                                const wk_tensor *mean, const wk_tensor *invstd,
                                const wk_tensor *dy, wk_tensor *dx, wk_tensor *dgamma,
                                wk_tensor *dbeta);

/* ------------------------------------------------------------------ activations */

typedef enum wk_act {
  WK_ACT_RELU = 0,  /* max(x, 0) */
  WK_ACT_RELU6,     /* min(max(x, 0), 6) */
} wk_act;

/* y may alias x. */
wk_status wk_act_forward(wk_ctx *ctx, wk_act act, const wk_tensor *x, wk_tensor *y);
/* dx = dy where the activation's slope is 1 at x, else 0 (at the kinks, 0, as
 * PyTorch). dx may alias dy. */
wk_status wk_act_backward(wk_ctx *ctx, wk_act act, const wk_tensor *x, const wk_tensor *dy,
                          wk_tensor *dx);

/* ------------------------------------------------------------------ pooling */

typedef struct wk_pool2d_params {
  int kernel_h, kernel_w;
  int stride_h, stride_w;
  int pad_top, pad_left, pad_bottom, pad_right;
  bool count_include_pad; /* average pooling: divide by the whole window */
} wk_pool2d_params;

wk_pool2d_params wk_pool2d_params_make(int kernel, int stride, int pad);

/* Max pooling over x (N,H,W,C) into y (N,OH,OW,C); padding never wins. argmax
 * (N,OH,OW,C) i32, or NULL at inference, receives ih * W + iw of each maximum
 * (the first in row-major window order on ties). Padding is at most half the
 * kernel, as in PyTorch, so every window sees an input pixel. */
wk_status wk_maxpool2d_forward(wk_ctx *ctx, const wk_pool2d_params *p, const wk_tensor *x,
                               wk_tensor *y, wk_tensor *argmax);
wk_status wk_maxpool2d_backward(wk_ctx *ctx, const wk_pool2d_params *p, const wk_tensor *argmax,
                                const wk_tensor *dy, wk_tensor *dx);
wk_status wk_avgpool2d_forward(wk_ctx *ctx, const wk_pool2d_params *p, const wk_tensor *x,
                               wk_tensor *y);
wk_status wk_avgpool2d_backward(wk_ctx *ctx, const wk_pool2d_params *p, const wk_tensor *dy,
                                wk_tensor *dx);
/* x (N,H,W,C) -> y (N,C), the mean over H and W. */
wk_status wk_global_avgpool_forward(wk_ctx *ctx, const wk_tensor *x, wk_tensor *y);
wk_status wk_global_avgpool_backward(wk_ctx *ctx, const wk_tensor *dy, wk_tensor *dx);

/* ------------------------------------------------------------------ linear */

/* y (N,O) = x (N,I) w^T (O,I) + b (O, or NULL). */
wk_status wk_linear_forward(wk_ctx *ctx, const wk_tensor *x, const wk_tensor *w,
                            const wk_tensor *b, wk_tensor *y);
wk_status wk_linear_backward(wk_ctx *ctx, const wk_tensor *x, const wk_tensor *w,
                             const wk_tensor *dy, wk_tensor *dx, wk_tensor *dw, wk_tensor *db);

/* ------------------------------------------------------------------ add */

/* y = a + b, all the same shape; y may alias a or b. */
wk_status wk_add_forward(wk_ctx *ctx, const wk_tensor *a, const wk_tensor *b, wk_tensor *y);

/* The network's input from 8-bit RGB pixels: y[3p + c] = ((float)x[3p + c] *
 * (1/255)) * scale[c] + shift[c], each operation rounded on its own. With
 * scale = 1 / std and shift = -mean * scale this is exactly what the loader's
 * float path gives for the same pixel values (data/augment_colour.c); the GPU
 * kernel (wk_launch_normalize_u8_f32) is bit for bit this. */
void wk_normalize_u8_ref(int64_t n_px, const uint8_t *x, const float scale[3],
                         const float shift[3], float *y);
/* The same over a (N, H, W, 3) u8 tensor into a (N, H, W, 3) f32 one, in parallel. */
wk_status wk_normalize_u8(wk_ctx *ctx, const wk_tensor *x, const float scale[3],
                          const float shift[3], wk_tensor *y);
/* da = db = dy; either may be NULL or alias dy. */
wk_status wk_add_backward(wk_ctx *ctx, const wk_tensor *dy, wk_tensor *da, wk_tensor *db);

/* ------------------------------------------------------------------ dropout
 * Inverted dropout: y = x * keep / (1 - p), where element i is kept when
 * uniform(seed, stream, i) >= p (core/rng.h). The mask is a function of
 * (seed, stream, i) alone, so backward recomputes it instead of storing it, and
 * it does not depend on the thread count. */

typedef struct wk_dropout_params {
  float p;          /* drop probability, [0, 1) */
  uint64_t seed;
  uint64_t stream;  /* distinct per layer and step */
  uint64_t first;   /* the mask's counter at element 0 (a data-parallel rank's offset) */
} wk_dropout_params;

wk_status wk_dropout_forward(wk_ctx *ctx, const wk_dropout_params *p, const wk_tensor *x,
                             wk_tensor *y);
wk_status wk_dropout_backward(wk_ctx *ctx, const wk_dropout_params *p, const wk_tensor *dy,
                              wk_tensor *dx);

/* ------------------------------------------------------------------ loss
 * Softmax cross-entropy with label smoothing, as torch.nn.CrossEntropyLoss:
 * target q = (1 - s) one_hot(label) + s / K; loss = mean over the batch of
 * -sum_k q_k log softmax(logits)_k. */

typedef struct wk_xent_params {
  float label_smoothing; /* s in [0, 1] */
} wk_xent_params;

/* logits (N,K) f32, labels (N) i32 in [0, K); probs (N,K) receives the softmax
 * (needed by backward; may be NULL); *loss the batch mean. */
wk_status wk_softmax_xent_forward(wk_ctx *ctx, const wk_xent_params *p, const wk_tensor *logits,
                                  const wk_tensor *labels, wk_tensor *probs, float *loss);
/* dlogits = dloss * (probs - q) / N. */
wk_status wk_softmax_xent_backward(wk_ctx *ctx, const wk_xent_params *p, const wk_tensor *probs,
                                   const wk_tensor *labels, float dloss, wk_tensor *dlogits);

#endif
