/* optim.h - SGD and AdamW over a parameter arena, with torch.optim semantics.
 *
 * The weights `w` and gradients `g` are two host float arenas of n_elems
 * elements with the layout of `params` (nn/param.h). One wk_optim_step updates
 * every parameter that is not WK_PARAM_FROZEN, exactly as torch.optim.SGD
 * (dampening 0) or torch.optim.AdamW (amsgrad False) would with one parameter
 * group per parameter, of learning rate lr * lr_scale and of weight decay 0 for
 * WK_PARAM_NO_DECAY parameters unless decay_norm_and_bias is set:
 *
 *   SGD    d = g + wd * w;  buf = d on a parameter's first update, else
 *          buf = momentum * buf + d;  d = nesterov ? d + momentum * buf : buf
 *          (d as is when momentum is 0);  w -= lr * d
 *   AdamW  t += 1 (per parameter);  w *= 1 - lr * wd;
 *          m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *          w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * Frozen parameters are skipped entirely: their weights, state and step count
 * stay as they are (torch skips a parameter whose grad is None), so a parameter
 * unfrozen later starts its own momentum buffer and bias correction then.
 * Elements of the arena outside every parameter are never read or written.
 *
 * Hyper-parameters are doubles, as torch keeps them (Python floats): the float
 * factors of the update are derived from them in double, e.g. 1 - beta2, so the
 * arithmetic matches torch's float32 kernels to rounding (a float beta2 = 0.999f
 * would make 1 - beta2 off by 1.3e-5 relative).
 *
 * Results do not depend on the context's thread count: the update is
 * element-wise. Memory is host memory; a GPU update is not part of this file. */
#ifndef WK_TRAIN_OPTIM_H
#define WK_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/context.h"
#include "core/status.h"
#include "nn/param.h"

typedef enum wk_optim_kind { WK_OPTIM_SGD, WK_OPTIM_ADAMW } wk_optim_kind;

typedef struct wk_optim_config {
  wk_optim_kind kind;
  double weight_decay;      /* >= 0; SGD: L2 added to the gradient, AdamW: decoupled */
  bool decay_norm_and_bias; /* also decay WK_PARAM_NO_DECAY parameters (torch's single group) */
  /* SGD */
  double momentum; /* in [0, 1); 0 = plain SGD (no buffer is kept) */
  bool nesterov;   /* needs momentum > 0 */
  /* AdamW */
  double beta1, beta2; /* each in [0, 1) */
  double eps;          /* > 0 */
} wk_optim_config;

/* torch's defaults (SGD: weight_decay 0, AdamW: betas (0.9, 0.999), eps 1e-8,
 * weight_decay 1e-2) but SGD's momentum is the usual 0.9, not torch's 0, and
 * no-decay parameters are not decayed (decay_norm_and_bias false). */
wk_optim_config wk_optim_config_default(wk_optim_kind kind);

/* Checks a configuration; WK_ERR_INVALID_ARG with a message naming the field. */
wk_status wk_optim_config_check(const wk_optim_config *cfg);

/* "sgd" or "adamw". */
wk_status wk_optim_kind_parse(const char *name, wk_optim_kind *out);
const char *wk_optim_kind_name(wk_optim_kind kind);

typedef struct wk_optim wk_optim;

/* Creates an optimizer with zeroed state and every step count 0. `params` is
 * borrowed and must outlive the optimizer: flags and lr_scale are read at every
 * step (freezing, unfreezing and discriminative rates may change between
 * steps), its layout (offset, numel, n_params) must not change. Parameters must
 * lie inside n_elems and not overlap. */
wk_status wk_optim_create(const wk_optim_config *cfg, const wk_param *params, size_t n_params,
                          size_t n_elems, wk_optim **out);
void wk_optim_destroy(wk_optim *opt);

/* One update of w (n_elems) from g (n_elems) with learning rate lr (finite,
 * >= 0). ctx may be NULL (runs on the calling thread); else its pool spreads
 * chunks of parameters over threads. WK_ERR_INVALID_ARG for a bad lr or lr_scale;
 * nothing is updated then. Non-finite gradients are not checked here (see
 * wk_grad_check_finite). */
wk_status wk_optim_step(wk_optim *opt, wk_ctx *ctx, float *w, const float *g, double lr);

/* Sets SGD's momentum or AdamW's beta1 for the following steps (one-cycle
 * momentum cycling; AdamW's bias correction then uses the new beta1, as torch).
 * SGD: in (0, 1) and only for an optimizer created with momentum > 0 (it has a
 * buffer); AdamW: in [0, 1). */
wk_status wk_optim_set_momentum(wk_optim *opt, double momentum_or_beta1);

/* The configuration in force (after wk_optim_set_momentum). */
const wk_optim_config *wk_optim_get_config(const wk_optim *opt);

/* ---- state, for checkpoints ----
 * The state is a list of named float arrays of n_elems elements each, in the
 * arena's layout, named as torch's state keys: SGD with momentum
 * "momentum_buffer"; AdamW "exp_avg", "exp_avg_sq"; plain SGD none. Plus one
 * step count per parameter: the number of updates it has received (AdamW's
 * "step"; for SGD, 0 means the momentum buffer is not yet initialised). Setting
 * the state and step counts saved after step k and continuing reproduces the
 * uninterrupted run bit for bit. */
size_t wk_optim_state_count(const wk_optim *opt);
/* The name of state array i, or NULL when i >= wk_optim_state_count(). */
const char *wk_optim_state_name(const wk_optim *opt, size_t i);
/* Copies array `name` out to / in from dst/src of n_elems elements. Unknown
 * name or wrong n_elems: WK_ERR_INVALID_ARG. set rejects non-finite values and
 * negative exp_avg_sq (a corrupt checkpoint) and leaves the state unchanged. */
wk_status wk_optim_state_get(const wk_optim *opt, const char *name, float *dst, size_t n_elems);
wk_status wk_optim_state_set(wk_optim *opt, const char *name, const float *src, size_t n_elems);
/* Per-parameter step counts (n_params of them); set rejects negative counts. */
wk_status wk_optim_steps_get(const wk_optim *opt, int64_t *dst, size_t n_params);
wk_status wk_optim_steps_set(wk_optim *opt, const int64_t *src, size_t n_params);

/* ------------------------------------------------------------------ elsewhere
 * For an update that runs on another device (train/trainer.c: the GPU):
 * wk_optim_step's checks and per-parameter factors at rate lr, as segments
 * (one per parameter not frozen, at most n_params, *n of them), and the step
 * counts advanced as a step advances them. The device applies them to its own
 * copy of the state arrays; wk_optim_state_data gives the host arrays (n_elems
 * each) to copy that state into before the state is read (a checkpoint) and
 * out of before the device's first step. */
struct wk_gpu_optim_segment;
wk_status wk_optim_step_segments(wk_optim *opt, double lr, struct wk_gpu_optim_segment *segs,
                                 int *n);
float *wk_optim_state_data(wk_optim *opt, size_t i); /* NULL when i >= wk_optim_state_count() */

#endif
