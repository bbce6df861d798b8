/* pwdw_own.h - whisker's own fused 1x1 + depthwise 3x3 kernel for
 * conv2d_pwdw.c (src/ops/conv2d_pwdw_own.c explains it). Internal to the
 * ops. */
#ifndef WK_OPS_PWDW_OWN_H
#define WK_OPS_PWDW_OWN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/context.h"
#include "ops/plan.h"

typedef struct wk_pwdw_own wk_pwdw_own;

/* Whether the kernel runs the pair (already wk_conv2d_pwdw_pair): expanded
 * channels a multiple of 16, activations none, relu or relu6, AVX-512 as
 * oneDNN sees it, and $WHISKER_PWDW_OWN not 0. Activations nChw16c on both
 * sides is the caller's condition. */
bool wk_pwdw_own_usable(const wk_conv2d_geom *pw, const wk_conv2d_geom *dw, wk_post_act pw_post,
                        wk_post_act dw_post);
wk_status wk_pwdw_own_create(const wk_conv2d_geom *pw, const wk_conv2d_geom *dw,
                             wk_post_act pw_post, wk_post_act dw_post, wk_pwdw_own **out);
void wk_pwdw_own_destroy(wk_pwdw_own *p);
/* The scratch forward needs: three expanded rows per thread. */
size_t wk_pwdw_own_scratch_bytes(const wk_pwdw_own *p, const wk_ctx *ctx);
/* x, y: nChw16c; weights in the user's layouts (OHWI), repacked when their
 * version changes (0: every call). */
wk_status wk_pwdw_own_forward(wk_pwdw_own *p, wk_ctx *ctx, const float *x,
                              const wk_conv2d_weights *pw, const wk_conv2d_weights *dw,
                              float *scratch, float *y);

#endif
