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
 * - n == 0 (or an empty batch) launches nothing and returns 0.
 * Semantics are those of the reference ops in src/ops/ref_template.inc, bit for
 * bit for the elementwise ops (same comparisons, IEEE single-precision add). */
#ifndef WK_KERNELS_H
#define WK_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ eltwise.cu */

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

/* The most channels wk_launch_normalize_u8_f32 handles (RGBA). */
#define WK_NORMALIZE_MAX_CHANNELS 4

/* Turns a batch of 8-bit images into normalised floats:
 *   y[b, i, j, ch] = (x[b, i, j', ch] / 255 - mean[ch]) / std[ch],
 *   j' = flip && flip[b] ? w - 1 - j : j   (a horizontal mirror of image b).
 * x: (n, h, w, c) uint8 NHWC; y: (n, h, w, c) float NHWC, must not overlap x;
 * flip: (n) device bytes, nonzero = mirror, or NULL for no flips. mean, std:
 * (c) HOST arrays, read before returning (passed to the kernel by value);
 * 1 <= c <= WK_NORMALIZE_MAX_CHANNELS, std[ch] != 0, n, h, w >= 0. */
int wk_launch_normalize_u8_f32(int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t *x,
                               const uint8_t *flip, const float *mean, const float *std,
                               float *y, void *stream);

#ifdef __cplusplus
}
#endif

#endif
