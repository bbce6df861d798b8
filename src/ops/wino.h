/* wino.h - whisker's Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions
 * (conv2d_wino.c): an inference-only forward for 3x3, stride-1, padding-1
 * dense convolutions on NHWC activations, which inference conv plans use at
 * small batches, where it beats oneDNN's kernels. */
#ifndef WK_OPS_WINO_H
#define WK_OPS_WINO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/plan.h"

typedef struct wk_wino wk_wino;

/* The output tile side (2 or 4) whisker's Winograd would take for the
 * geometry, or 0 when it does not apply: it needs 3x3, stride 1, dilation 1,
 * padding 1 on every side, no groups, at least 16 input channels, output
 * channels a multiple of 64, and a CPU with AVX-512. A rule of the shape
 * alone, so every run computes the same bits. */
int wk_wino_pick(const wk_conv2d_geom *g);
/* m: the output tile side, 2 or 4. WK_ERR_UNSUPPORTED (no error recorded)
 * when the geometry does not fit. */
wk_status wk_wino_create(const wk_conv2d_geom *g, wk_post_act post, int m, wk_wino **out);
void wk_wino_destroy(wk_wino *p);
int wk_wino_tile(const wk_wino *p);
/* The context scratch one forward takes. */
size_t wk_wino_scratch_bytes(const wk_wino *p);
/* x (N,H,W,C), w (O,3,3,C), b (O) or NULL, y (N,H,W,O), with the plan's
 * activation applied. w_version as in wk_conv2d_plan_forward: the transformed
 * weights are kept while it stays the same (0: transform every call). */
wk_status wk_wino_forward(wk_wino *p, wk_ctx *ctx, const float *x, const float *w,
                          uint64_t w_version, const float *b, float *y);

#endif
