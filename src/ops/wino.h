/* wino.h - whisker's Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions
 * (conv2d_wino.c): an inference-only forward for 3x3, stride-1, padding-1
 * dense convolutions on NHWC activations, which inference conv plans use
 * where it beats oneDNN's kernels (conv2d_dnnl.c). x86-64 with AVX-512 only;
 * elsewhere wk_wino_pick says 0 and oneDNN runs.
 *
 * A wk_wino keeps the weights transformed ((m + 2)^2 / 9 times their size)
 * until their version changes, and uses the context's scratch: one thread at
 * a time per plan and per context, as every plan (plan.h). */
#ifndef WK_OPS_WINO_H
#define WK_OPS_WINO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/plan.h"

typedef struct wk_wino wk_wino;

/* The output tile side (2 or 4) whisker's Winograd takes for the geometry,
 * or 0 when it does not apply: it needs 3x3, stride 1, dilation 1, padding 1
 * on every side, no groups, at least 16 input channels, output channels a
 * multiple of 64, and an x86-64 CPU with AVX-512. It depends on the shape
 * (the batch size included) and the CPU alone, never on timing: a run on the
 * same machine computes the same bits every time. (The same image can round
 * differently in a batch of 1 and of 8: at 7x7 the tile changes at 4.) */
int wk_wino_pick(const wk_conv2d_geom *g);
/* m: the output tile side, 2 or 4. chunk_tiles: tiles transformed and
 * multiplied at a time, 0 for the default (at least 64, about 8 MB of
 * scratch); any value gives the same bits. sum: the forward adds into y, y =
 * post(y + conv(x) + b), bit for bit the plain forward's result added to y
 * and then the activation. WK_ERR_UNSUPPORTED (no error recorded) when the
 * geometry does not fit. */
wk_status wk_wino_create(const wk_conv2d_geom *g, wk_post_act post, bool sum, int m,
                         int64_t chunk_tiles, wk_wino **out);
void wk_wino_destroy(wk_wino *p);
int wk_wino_tile(const wk_wino *p);
/* x (N,H,W,C), w (O,3,3,C), b (O) or NULL, y (N,H,W,O), x and y not
 * overlapping, with the plan's activation applied; on the context's threads
 * (any count gives the same bits). w_version as in wk_conv2d_plan_forward:
 * the transformed weights are kept while it stays the same; 0 transforms on
 * every call. */
wk_status wk_wino_forward(wk_wino *p, wk_ctx *ctx, const float *x, const float *w,
                          uint64_t w_version, const float *b, float *y);

#endif
