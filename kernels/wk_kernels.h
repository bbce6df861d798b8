/* wk_kernels.h - plain-C launchers of whisker's own CUDA kernels (the .cu files in
 * kernels/).
 *
 * Contract shared by every launcher:
 * - pointers are device pointers; n, sizes and counts are element counts;
 * - `stream` is a cudaStream_t passed as void* (NULL = the legacy default stream),
 *   so this header needs no CUDA headers;
 * - the work is queued on `stream` and not waited for;
 * - the return value is a cudaError_t as an int: the launch's cudaGetLastError(),
 *   0 (cudaSuccess) when the kernel was queued; cudaErrorInvalidValue (1) for
 *   arguments the launcher rejects before launching. Faults during execution
 *   appear at the next synchronising call. Check it with WK_CUDA_TRY.
 * - n == 0 (or an empty batch) launches nothing and returns 0, except for the
 *   reductions that must still write their (zero) result: wk_launch_sum_f32,
 *   wk_launch_sum_rows_f32 and wk_launch_col_sum_h with no rows, and the
 *   batchnorm sums wk_launch_bn_sums / wk_launch_bn_grad_sums (rows == 0: zeros);
 *   the batchnorm launchers reject c == 0 (their section below).
 * Semantics are those of the reference ops in src/ops/ref_template.inc, bit for
 * bit for the elementwise ops (same comparisons, IEEE single-precision add). */
#ifndef WK_KERNELS_H
#define WK_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 16-bit storage (--precision bf16 and fp16: cuda_net.c holds every activation
 * and its gradient so): the *_h launchers take the format and uint16_t
 * pointers holding a bfloat16's or an IEEE float16's bits. Each computes what
 * its float32 launcher computes on the elements widened to float (exact),
 * rounding every stored result once to nearest even (bfloat16: as
 * wk_launch_f32_to_bf16; float16: as wk_launch_f32_to_f16, overflow to
 * infinity). So a *_h kernel equals, bit for bit, the float32 kernel run on
 * the widened inputs followed by the rounding, unless a contract below says
 * otherwise. An unknown kind is cudaErrorInvalidValue. */
typedef enum { WK_HALF_BF16 = 0, WK_HALF_F16 = 1 } wk_half_kind;
/* A storage of either kind (syncbn.cu's launchers take void pointers and this). */
typedef enum {
  WK_STORE_F32 = -1,
  WK_STORE_BF16 = WK_HALF_BF16,
  WK_STORE_F16 = WK_HALF_F16
} wk_store_kind;

/* ------------------------------------------------------------------ eltwise.cu */

/* 0 when this build holds kernels the current device can run (machine code for
 * its architecture, or PTX it can compile); else the runtime's error, e.g.
 * cudaErrorNoKernelImageForDevice (209) on a GPU older than the architectures
 * built. Launches nothing. */
int wk_kernels_runnable(void);

/* y[i] = x[i] > 0 ? x[i] : 0. x, y: (n); y may alias x. */
int wk_launch_relu_forward_f32(int64_t n, const float *x, float *y, void *stream);
/* y[i] = min(max(x[i], 0), 6) (NaN -> 0, as the reference). x, y: (n); y may alias x. */
int wk_launch_relu6_forward_f32(int64_t n, const float *x, float *y, void *stream);
/* dx[i] = x[i] > 0 ? dy[i] : 0. x, dy, dx: (n); dx may alias dy. */
int wk_launch_relu_backward_f32(int64_t n, const float *x, const float *dy, float *dx,
                                void *stream);
/* dx[i] = 0 < x[i] < 6 ? dy[i] : 0. x, dy, dx: (n); dx may alias dy. */
int wk_launch_relu6_backward_f32(int64_t n, const float *x, const float *dy, float *dx,
                                 void *stream);
/* y[i] = a[i] + b[i]. a, b, y: (n); y may alias a or b. */
int wk_launch_add_forward_f32(int64_t n, const float *a, const float *b, float *y,
                              void *stream);
/* 16 bits: relu (relu6 false) or relu6 forward and backward, the add. */
int wk_launch_act_forward_h(wk_half_kind kind, int64_t n, bool relu6, const uint16_t *x,
                            uint16_t *y, void *stream);
int wk_launch_act_backward_h(wk_half_kind kind, int64_t n, bool relu6, const uint16_t *x,
                             const uint16_t *dy, uint16_t *dx, void *stream);
int wk_launch_add_h(wk_half_kind kind, int64_t n, const uint16_t *a, const uint16_t *b, uint16_t *y,
                    void *stream);
/* y[r, j] = round(y[r, j] + bias[j]) for r < rows, j < k: a convolution's or a
 * linear layer's float bias added to its 16-bit output in place. y: (rows,
 * k); bias: (k) float. */
int wk_launch_bias_add_h(wk_half_kind kind, int64_t rows, int64_t k, const float *bias, uint16_t *y,
                         void *stream);

/* The most channels wk_launch_normalize_u8_f32 handles (RGBA). */
#define WK_NORMALIZE_MAX_CHANNELS 4

/* Turns a batch of 8-bit images into normalised floats as the loader's float
 * path does for the same pixel values (data/augment_colour.c; for c = 3 bit for
 * bit ops/ops.h's wk_normalize_u8_ref), each operation rounded on its own:
 *   y[b, i, j, ch] = ((float)x[b, i, j', ch] * (1/255)) * s[ch] + t[ch],
 *   s = 1 / std, t = -mean * s (floats), j' = flip && flip[b] ? w - 1 - j : j
 *   (a horizontal mirror of image b).
 * x: (n, h, w, c) uint8 NHWC; y: (n, h, w, c) float NHWC, must not overlap x;
 * flip: (n) device bytes, nonzero = mirror, or NULL for no flips. mean, std:
 * (c) HOST arrays, read before returning (passed to the kernel by value);
 * 1 <= c <= WK_NORMALIZE_MAX_CHANNELS, std[ch] != 0, n, h, w >= 0. */
int wk_launch_normalize_u8_f32(int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t *x,
                               const uint8_t *flip, const float *mean, const float *std,
                               float *y, void *stream);
/* The same into 16 bits: the float result rounded once. */
int wk_launch_normalize_u8_h(wk_half_kind kind, int64_t n, int64_t h, int64_t w, int64_t c,
                             const uint8_t *x, const uint8_t *flip, const float *mean,
                             const float *std, uint16_t *y, void *stream);

/* bfloat16 (stored as its 16 bits) for --precision bf16's convolutions.
 * f32_to_bf16: round to nearest even (__float2bfloat16_rn; bit for bit the
 * reference of the rounding in test_gpu_ops for every non-NaN value; NaN stays
 * a NaN). bf16_to_f32: exact; with accumulate, y[i] += the value (one IEEE add).
 * x, y: (n), must not overlap. */
int wk_launch_f32_to_bf16(int64_t n, const float *x, uint16_t *y, void *stream);
int wk_launch_bf16_to_f32(int64_t n, const uint16_t *x, float *y, bool accumulate, void *stream);
/* The same for IEEE float16 (--precision fp16): __float2half_rn (nearest even,
 * overflow to infinity, subnormals kept), and back exactly. */
int wk_launch_f32_to_f16(int64_t n, const float *x, uint16_t *y, void *stream);
int wk_launch_f16_to_f32(int64_t n, const uint16_t *x, float *y, bool accumulate, void *stream);

/* -------------------------------------------------------------------- train.cu */

/* Dropout with the mask of wk_dropout_ref_f32(p, seed, stream_id, offset, n, x, y):
 * element i keeps x[i] * (float)(1 / (1 - p)) when
 * wk_u32_to_unit(wk_rng_at(seed, stream_id, offset + i)) >= p, else 0; bit for
 * bit (Philox4x32-10 ported to the device). p is a double as in the reference
 * (a float p could move the threshold across a mask value); 0 <= p < 1,
 * offset >= 0. x, y: (n); y may alias x. Backward is the same call on dy -> dx
 * with the forward's (p, seed, stream_id, offset). */
int wk_launch_dropout_forward_f32(int64_t n, double p, uint64_t seed, uint64_t stream_id,
                                  int64_t offset, const float *x, float *y, void *stream);
int wk_launch_dropout_backward_f32(int64_t n, double p, uint64_t seed, uint64_t stream_id,
                                   int64_t offset, const float *dy, float *dx, void *stream);
/* The same masks with the stream read on the device when the kernel runs, so
 * that a captured CUDA graph takes each step's values (cuda_net_step.c's fused
 * step): seed = seed_step[0], stream_id = (seed_step[1] << 16) ^ node, the
 * stream nn/exec_node.c gives node `node` at step seed_step[1]. seed_step: two
 * device uint64_t (the seed, the step). Forward and backward alike. */
int wk_launch_dropout_at_f32(int64_t n, double p, const uint64_t *seed_step, uint64_t node,
                             int64_t offset, const float *x, float *y, void *stream);
/* 16 bits, forward or backward: seed_step NULL is the forward/backward
 * launchers' (seed, stream_id); else the _at launcher's, with stream_id as
 * its `node` (seed ignored). */
int wk_launch_dropout_h(wk_half_kind kind, int64_t n, double p, uint64_t seed, uint64_t stream_id,
                        const uint64_t *seed_step, int64_t offset, const uint16_t *x,
                        uint16_t *y, void *stream);

/* Global average pooling, NHWC. Forward: y[i, ch] = (float)(sum_p x[i, p, ch] / hw),
 * the sum in double in order p = 0, 1, ... (one thread per (i, ch)): bit for bit
 * wk_global_avgpool_forward_ref_f32. x: (n, hw, c); y: (n, c); hw >= 1.
 * Backward: dx[i, p, ch] = (float)((double)dy[i, ch] / hw), bit for bit the
 * reference. dy: (n, c); dx: (n, hw, c). Neither may overlap its input. */
int wk_launch_global_avgpool_forward_f32(int64_t n, int64_t hw, int64_t c, const float *x,
                                         float *y, void *stream);
int wk_launch_global_avgpool_backward_f32(int64_t n, int64_t hw, int64_t c, const float *dy,
                                          float *dx, void *stream);
/* 16 bits: forward (x, y as above) or backward (x = dy, y = dx). */
int wk_launch_global_avgpool_h(wk_half_kind kind, bool forward, int64_t n, int64_t hw, int64_t c,
                               const uint16_t *x, uint16_t *y, void *stream);

/* Max pooling, NHWC: x (n, h, w, c) to y (n, oh, ow, c); output (oy, ox)'s
 * window is rows oy * sh - pt + [0, kh) and columns ox * sw - pl + [0, kw),
 * the positions outside x skipped. The launchers reject a negative size, a
 * window or stride under 1, padding outside [0, kernel), an output window
 * that sees no position of x, and sizes whose products overflow. */
typedef struct wk_maxpool_geom {
  int64_t n, h, w, c, oh, ow;
  int32_t kh, kw, sh, sw, pt, pl;
} wk_maxpool_geom;
/* Forward, bit for bit wk_maxpool2d_forward_ref_f32 (16 bits: on the widened
 * values, the maximum stored back exactly): each window scanned in row-major
 * order, the first position taken, then any greater one or any NaN (the
 * last NaN wins, so a NaN propagates). y must not overlap x. */
int wk_launch_maxpool_forward(wk_store_kind kind, const wk_maxpool_geom *g, const void *x,
                              void *y, void *stream);
/* Backward, without the forward's argmax: each input position gathers, in
 * ascending output order, dy of every window whose maximum (found again from
 * x as the forward takes it, where the position's x equals the window's y or
 * both are NaN) is that position, in float from 0, so the sums are
 * wk_maxpool2d_backward_ref_f32's additions in its order, bit for bit; then
 * dx = that sum, or dx + that sum (one float addition) with accumulate,
 * rounded once to the storage. y must be the forward's output for this x.
 * dx must not overlap x, y or dy. Deterministic: no atomics. */
int wk_launch_maxpool_backward(wk_store_kind kind, const wk_maxpool_geom *g, const void *x,
                               const void *y, const void *dy, int accumulate, void *dx,
                               void *stream);

/* Softmax cross-entropy with label smoothing, one block per row, in double as
 * wk_softmax_xent_forward_ref_f32:
 *   probs[i, j] = (float)(exp(l[i, j] - max_i) / sum_j exp(l[i, j] - max_i)),
 *   row_loss[i] = (float)(lse_i - (1 - smoothing) l[i, labels[i]] - smoothing / k sum_j l[i, j]).
 * The reference returns sum_i row_loss in double; sum row_loss with
 * wk_launch_sum_f32 (the per-row float rounding costs ~6e-8 relative). The
 * row sums use a tree, not the reference's order, and CUDA's exp/log differ
 * from glibc's by an ulp of double: results agree to about 1e-7 relative, not
 * bit for bit. A label outside [0, k) is never read through: that row's loss
 * is NaN (its probs are still written), so a non-finite check on the loss
 * catches it. logits, probs: (n, k), must not overlap; labels, row_loss: (n);
 * k >= 1; 0 <= smoothing <= 1. probs may be NULL (loss only). */
int wk_launch_softmax_xent_forward_f32(int64_t n, int64_t k, double smoothing,
                                       const float *logits, const int32_t *labels, float *probs,
                                       float *row_loss, void *stream);
/* dlogits[i, j] = (float)(scale * (probs[i, j] - q)), q = (j == labels[i] ?
 * 1 - smoothing : 0) + smoothing / k, in double: bit for bit
 * wk_softmax_xent_backward_ref_f32 with scale = dloss / batch (the reference
 * divides by the batch; here the caller does, in double). A label outside
 * [0, k) matches no j (q = smoothing / k for the whole row), as the reference.
 * probs, dlogits: (n, k); dlogits may alias probs; labels: (n). */
int wk_launch_softmax_xent_backward_f32(int64_t n, int64_t k, double smoothing, double scale,
                                        const float *probs, const int32_t *labels,
                                        float *dlogits, void *stream);
/* The same with scale read on the device when the kernel runs (one device
 * double), for a captured graph whose loss scale changes between replays. */
int wk_launch_softmax_xent_backward_at_f32(int64_t n, int64_t k, double smoothing,
                                           const double *scale, const float *probs,
                                           const int32_t *labels, float *dlogits, void *stream);

/* out[i] = the column of row i's largest value, by train/metrics.c's wk_argmax
 * exactly: scanning j = 1, 2, ... in order, j replaces the best so far when
 * x[i, j] > x[i, best], so the first of equal maxima wins, a NaN never wins,
 * and a NaN in column 0 keeps 0. One thread per row: meant for a batch's
 * probabilities (the predicted classes of a training step), not for long rows
 * of many thousand columns. x: (n, k); out: (n); 1 <= k <= INT32_MAX. */
int wk_launch_argmax_rows_f32(int64_t n, int64_t k, const float *x, int32_t *out, void *stream);

/* *out = sum_i x[i] in double, deterministic (one block of a fixed size, a fixed
 * tree): the same bits on every run and every GPU, not the sequential order's
 * bits. Meant for small vectors (per-row losses). n == 0 writes 0 (a launch).
 * x: (n) float; out: one device double. */
int wk_launch_sum_f32(int64_t n, const float *x, double *out, void *stream);

/* out[j] = (float)(sum_i x[i, j]) over rows i, in double in order i = 0, 1, ...
 * (one thread per column): bit for bit the bias gradient of
 * wk_linear_backward_ref_f32. x: (n, k); out: (k), must not overlap x. n == 0
 * writes zeros (a launch); k == 0 launches nothing. */
int wk_launch_sum_rows_f32(int64_t n, int64_t k, const float *x, float *out, void *stream);

/* The row chunks of wk_launch_col_sum_h: its partial sums take
 * min(rows, WK_COL_SUM_CHUNKS) x k floats. */
#define WK_COL_SUM_CHUNKS 256
/* out[j] = sum_r x[r, j] over the rows of a 16-bit x (rows, k), in float: the
 * 16-bit path's bias gradients (a convolution's rows are every pixel of the
 * batch). Deterministic, not the sequential order: the rows are cut into
 * min(rows, WK_COL_SUM_CHUNKS) chunks, each summed in float by a fixed
 * assignment to 8 lanes combined in order into partial (that many rows of k
 * floats of scratch), and the chunks' sums added in double in order as
 * wk_launch_sum_rows_f32 does. Error against the exact sum: at most about
 * the float additions of a lane (a chunk's rows / 8, plus 8 to combine the
 * lanes), each off by at most 2^-24 of the column's sum of |x| (a bound, not
 * relative to a sum that cancels; typically far less). With at most
 * WK_COL_SUM_CHUNKS rows every chunk is one row and the result is the
 * sequential double sum rounded to float. out: (k) float, written (not
 * added to); rows == 0 writes zeros. */
int wk_launch_col_sum_h(wk_half_kind kind, int64_t rows, int64_t k, const uint16_t *x,
                        float *partial, float *out, void *stream);

/* One parameter's slice of the arena and the float factors of its update at
 * this step: wk_optim_coef (src/train/optim_impl.h) for elements
 * [offset, offset + numel). Frozen parameters simply have no segment. */
typedef struct wk_optim_segment {
  int64_t offset, numel;
  /* SGD */
  float neg_lr, wd, momentum;
  int32_t first; /* nonzero: first update, the momentum buffer starts as d */
  /* AdamW */
  float decay, b1, c1, b2, c2, bc2_sqrt, eps, neg_step;
} wk_optim_segment;

/* SGD over every segment in one launch, the element loop of optim_step.c with
 * the same float operations in the same order (no fused multiply-adds), so bit
 * for bit wk_optim_step:
 *   d = g + wd * w;  b = first ? d : buf * momentum + d;  buf = b;
 *   w = w + neg_lr * (nesterov ? d + momentum * b : b)
 * buf == NULL: plain SGD (momentum 0, no buffer), w = w + neg_lr * d.
 * segs: (n_segments) DEVICE array, read by the kernel (keep it alive until the
 * launch has run); w, g, buf: the arenas, indexed by each segment's offset.
 * Segments must not overlap. n_segments == 0 launches nothing. */
int wk_launch_sgd_f32(int n_segments, const wk_optim_segment *segs, bool nesterov, float *w,
                      const float *g, float *buf, void *stream);
/* AdamW likewise, bit for bit wk_optim_step:
 *   p = w * decay;  m = exp_avg * b1 + c1 * g;  v = exp_avg_sq * b2 + (c2 * g) * g;
 *   exp_avg = m;  exp_avg_sq = v;  w = p + (neg_step * m) / (sqrt(v) / bc2_sqrt + eps) */
int wk_launch_adamw_f32(int n_segments, const wk_optim_segment *segs, float *w, const float *g,
                        float *exp_avg, float *exp_avg_sq, void *stream);
/* The two updates unless *skip (one device int, read when the kernel runs;
 * NULL: never) is nonzero, when they change nothing: the non-finite check's
 * flag gates the update on the device, with no decision on the host between
 * the check and the update (cuda_net_step.c's fused step). */
int wk_launch_sgd_unless_f32(int n_segments, const wk_optim_segment *segs, bool nesterov,
                             float *w, const float *g, float *buf, const int *skip,
                             void *stream);
int wk_launch_adamw_unless_f32(int n_segments, const wk_optim_segment *segs, float *w,
                               const float *g, float *exp_avg, float *exp_avg_sq,
                               const int *skip, void *stream);

/* x[i] *= s (IEEE single multiply). x: (n). */
int wk_launch_scale_f32(int64_t n, float s, float *x, void *stream);
/* The same with s read on the device (one device float), unless *skip (as
 * above; NULL: never) is nonzero. */
int wk_launch_scale_unless_f32(int64_t n, const float *s, const int *skip, float *x,
                               void *stream);
/* Sets *flag = 1 when some x[i] is NaN or infinite; never writes 0 (the caller
 * zeroes the flag, so one flag can gather several tensors). x: (n); flag: one
 * device int. */
int wk_launch_nonfinite_f32(int64_t n, const float *x, int *flag, void *stream);

/* ------------------------------------------------------------------ syncbn.cu
 * Whisker's batchnorm, synchronised over ranks (the sums all-reduced between
 * the launches) or alone where cuDNN refuses one (cuda_net.c; the CPU's
 * src/nn/exec_syncbn.c): c >= 1 (c == 0 is cudaErrorInvalidValue); x and
 * dy are (rows, c) in `kind`'s storage (NHWC: rows = batch x height x width);
 * mean, invstd, gamma, beta per channel in float. Sums are in double: rows cut
 * into min(rows, WK_BN_SUM_CHUNKS) chunks, each over 8 interleaved lanes
 * combined in order, the chunks added in order (partial: that many times the
 * output's width of doubles of scratch): deterministic, not the CPU's
 * sequential order. The rest is the CPU's arithmetic bit for bit on the same
 * inputs (elements widened to float, one rounding on a 16-bit store). */
#define WK_BN_SUM_CHUNKS 256
/* out[j] = sum_r x[r, j], or with mean, sum_r ((double)x[r, j] - mean[j])^2.
 * out: (c) doubles; rows == 0 writes zeros. */
int wk_launch_bn_sums(wk_store_kind kind, int64_t rows, int64_t c, const void *x,
                      const float *mean, double *partial, double *out, void *stream);
/* out[j] = sum_r dy[r, j] and out[c + j] = sum_r dy[r, j] * xhat[r, j], xhat
 * = (x - mean[j]) * invstd[j] in float. out: (2c) doubles. */
int wk_launch_bn_grad_sums(wk_store_kind kind, int64_t rows, int64_t c, const void *x,
                           const void *dy, const float *mean, const float *invstd,
                           double *partial, double *out, void *stream);
/* mean[j] = (float)(sum[j] / total). */
int wk_launch_bn_mean(int64_t c, double total, const double *sum, float *mean, void *stream);
/* var = (float)(sq[j] / total) (biased); the running statistics move as
 * wk_batchnorm_running_update moves them (momentum, var unbiased by total /
 * (total - 1)); invstd[j] = (float)(1 / sqrt(var + eps)) in double. total >= 2,
 * momentum in [0, 1], eps > 0 (the float parameters widened: the CPU's). */
int wk_launch_bn_finish(int64_t c, double total, const double *sq, const float *mean,
                        double momentum, double eps, float *rm, float *rv, float *invstd,
                        void *stream);
/* invstd[j] = (float)(1 / sqrt(var[j] + eps)) in double: inference from the
 * running variance (then wk_launch_bn_norm with the running mean). eps > 0. */
int wk_launch_bn_invstd(int64_t c, const float *var, double eps, float *invstd, void *stream);
/* y = xhat * gamma[j] + beta[j]; y may alias x. */
int wk_launch_bn_norm(wk_store_kind kind, int64_t rows, int64_t c, const void *x,
                      const float *mean, const float *invstd, const float *gamma,
                      const float *beta, void *y, void *stream);
/* wk_launch_bn_norm's y, then + z (when z is not NULL: widened, one float
 * addition) and with relu t > 0 ? t : 0 (the relu kernels'), rounded once to the
 * storage: a fused group's relu(bn(x) [+ z]) in inference. y may alias x or z. */
int wk_launch_bn_norm_act(wk_store_kind kind, int64_t rows, int64_t c, const void *x,
                          const void *z, const float *mean, const float *invstd,
                          const float *gamma, const float *beta, int relu, void *y,
                          void *stream);
/* dbeta[j] = (float)sums[j], dgamma[j] = (float)sums[c + j] (wk_launch_bn_grad_sums's). */
int wk_launch_bn_param_grads(int64_t c, const double *sums, float *dgamma, float *dbeta,
                             void *stream);
/* dx = gamma[j] * invstd[j] * (float)(dy - sums[j] / total - xhat * (sums[c + j] /
 * total)), written (not added); sums summed over every rank's batch. */
int wk_launch_bn_dx(wk_store_kind kind, int64_t rows, int64_t c, double total, const void *x,
                    const void *dy, const float *mean, const float *invstd, const float *gamma,
                    const double *sums, void *dx, void *stream);

#ifdef __cplusplus
}
#endif

#endif
