/* lrfind.h - the learning-rate range test (Smith 2015; fastai's lr_find) as a
 * small state machine that the trainer drives, one training step at a time:
 *
 *   while (wk_lrfind_running(f)) {
 *     double lr = wk_lrfind_lr(f);           // the rate of this step
 *     loss = forward + backward of the next batch;
 *     if (!wk_lrfind_observe(f, loss)) break; // diverged or the sweep is done
 *     wk_optim_step(opt, ctx, w, g, lr);
 *   }
 *   wk_lrfind_suggest(f, &lr, NULL);
 *
 * Rates sweep exponentially: step i of n_steps uses
 * lr_min * (lr_max / lr_min)^(i / (n_steps - 1)). Observed losses are smoothed
 * as fastai does: avg = beta * avg + (1 - beta) * loss, smoothed = avg /
 * (1 - beta^(i+1)). The sweep stops early when the smoothed loss exceeds
 * diverge_factor times the best smoothed loss so far (checked while that best
 * is > 0: losses are assumed non-negative, as cross-entropy is) or when a loss
 * is NaN or Inf. Every finite observation is kept as a point (lr, loss,
 * smoothed loss) of the curve, the one that diverged included; a NaN/Inf loss
 * is not. */
#ifndef WK_TRAIN_LRFIND_H
#define WK_TRAIN_LRFIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct wk_lrfind_config {
  double lr_min, lr_max;  /* 0 < lr_min < lr_max, finite */
  int64_t n_steps;        /* sweep length, in [2, 1000000] */
  double smooth_beta;     /* in [0, 1) */
  double diverge_factor;  /* > 1 */
} wk_lrfind_config;

/* fastai's defaults: 1e-7 to 10 over 100 steps, beta 0.98, factor 4. */
wk_lrfind_config wk_lrfind_config_default(void);

typedef enum wk_lrfind_state {
  WK_LRFIND_RUNNING,   /* expects an observation */
  WK_LRFIND_DONE,      /* observed all n_steps */
  WK_LRFIND_DIVERGED,  /* smoothed loss > diverge_factor * best */
  WK_LRFIND_NONFINITE, /* a loss was NaN or Inf */
} wk_lrfind_state;

typedef struct wk_lrfind wk_lrfind;

wk_status wk_lrfind_create(const wk_lrfind_config *cfg, wk_lrfind **out);
void wk_lrfind_destroy(wk_lrfind *f);

wk_lrfind_state wk_lrfind_get_state(const wk_lrfind *f);
bool wk_lrfind_running(const wk_lrfind *f);
/* "running", "done", "diverged", "non-finite loss". */
const char *wk_lrfind_state_name(wk_lrfind_state state);

/* The rate of the step whose loss is observed next; only while running. */
double wk_lrfind_lr(const wk_lrfind *f);

/* Records the loss of the step taken at wk_lrfind_lr() and advances. Returns
 * true when the sweep goes on (apply the step, then observe the next one). */
bool wk_lrfind_observe(wk_lrfind *f, double loss);

/* The curve so far: n points with rate, raw loss and smoothed loss (each array
 * holds wk_lrfind_n_points() values, valid until the next observe or destroy). */
size_t wk_lrfind_n_points(const wk_lrfind *f);
const double *wk_lrfind_lrs(const wk_lrfind *f);
const double *wk_lrfind_losses(const wk_lrfind *f);
const double *wk_lrfind_smoothed(const wk_lrfind *f);

/* The suggested rate: the steepest descent of the smoothed loss against log(lr).
 * The first n_steps / 10 points are skipped (the bias-corrected average is
 * still mostly single losses there, as fastai skips them); from the rest, the
 * points up to the minimum smoothed loss are the descent, and the suggestion is
 * the point whose central-difference slope d smoothed / d log(lr) is the most
 * negative (one-sided at the two ends of the descent). *index (may be NULL)
 * gets the point's index in the curve.
 * WK_ERR_INVALID_ARG, with a message saying what is wrong, when the curve is
 * degenerate: fewer than 5 points after the skipped ones (it diverged at once:
 * lower lr_min), or a smoothed loss that never falls by at least 1% below its
 * first kept value (flat or rising: raise lr_max or check the training). */
wk_status wk_lrfind_suggest(const wk_lrfind *f, double *lr, size_t *index);

#endif
