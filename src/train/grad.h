/* grad.h - whole-arena gradient utilities: global-norm clipping and a check for
 * NaN/Inf.
 *
 * Both visit the non-frozen parameters of `params` only (frozen parameters'
 * gradients and elements outside every parameter are never read), in fixed
 * chunks whose partial results are combined in order, so the results do not
 * depend on the context's thread count. ctx may be NULL (calling thread). */
#ifndef WK_TRAIN_GRAD_H
#define WK_TRAIN_GRAD_H

#include <stddef.h>

#include "core/context.h"
#include "core/status.h"
#include "nn/param.h"

/* torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2) over the non-frozen
 * parameters: norm = the L2 norm of all their gradient elements (squares
 * accumulated in double); when max_norm / (norm + 1e-6) < 1 every such gradient
 * is multiplied by that factor. *norm_before (may be NULL) receives the norm.
 * max_norm must be finite and > 0. A non-finite norm (NaN or Inf in g) leaves g
 * untouched and returns WK_ERR_INVALID_ARG naming the first bad element, as
 * wk_grad_check_finite does (torch would silently fill g with NaN). */
wk_status wk_grad_clip_global_norm(wk_ctx *ctx, const wk_param *params, size_t n_params,
                                   float *g, double max_norm, double *norm_before);

/* WK_OK when every gradient element of the non-frozen parameters is finite;
 * else WK_ERR_INVALID_ARG with a message naming the first parameter (in
 * parameter order) and element that is NaN or Inf. */
wk_status wk_grad_check_finite(wk_ctx *ctx, const wk_param *params, size_t n_params,
                               const float *g);

#endif
