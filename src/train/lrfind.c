/* lrfind.c - the learning-rate range test (see lrfind.h). */
#include "train/lrfind.h"

#include <math.h>
#include <stdlib.h>

#define WK_LRFIND_MAX_STEPS 1000000
#define WK_LRFIND_MIN_POINTS 5
#define WK_LRFIND_MIN_DROP 0.01 /* the smoothed loss must fall by 1% of its start */

struct wk_lrfind {
  wk_lrfind_config cfg;
  wk_lrfind_state state;
  size_t n;            /* points recorded */
  int64_t step;        /* observations made, NaN/Inf included */
  double avg, best;    /* running average (not bias-corrected), best smoothed loss */
  double *lrs, *losses, *smoothed; /* (n_steps) each */
};

wk_lrfind_config wk_lrfind_config_default(void) {
  return (wk_lrfind_config){.lr_min = 1e-7, .lr_max = 10.0, .n_steps = 100,
                            .smooth_beta = 0.98, .diverge_factor = 4.0};
}

static wk_status wk_lrfind_check(const wk_lrfind_config *c) {
  if (!c) return wk_fail(WK_ERR_INVALID_ARG, "lrfind: NULL configuration");
  if (!(c->lr_min > 0.0 && c->lr_max > c->lr_min && isfinite(c->lr_max / c->lr_min)))
    return wk_fail(WK_ERR_INVALID_ARG,
                   "lrfind: need 0 < lr_min (%g) < lr_max (%g), with a finite ratio",
                   c->lr_min, c->lr_max);
  if (c->n_steps < 2 || c->n_steps > WK_LRFIND_MAX_STEPS)
    return wk_fail(WK_ERR_INVALID_ARG, "lrfind: n_steps %lld must be in [2, %d]",
                   (long long)c->n_steps, WK_LRFIND_MAX_STEPS);
  if (!(c->smooth_beta >= 0.0 && c->smooth_beta < 1.0))
    return wk_fail(WK_ERR_INVALID_ARG, "lrfind: smooth_beta %g must be in [0, 1)",
                   c->smooth_beta);
  if (!(isfinite(c->diverge_factor) && c->diverge_factor > 1.0))
    return wk_fail(WK_ERR_INVALID_ARG, "lrfind: diverge_factor %g must be finite and > 1",
                   c->diverge_factor);
  return WK_OK;
}

wk_status wk_lrfind_create(const wk_lrfind_config *cfg, wk_lrfind **out) {
  if (!out) return wk_fail(WK_ERR_INVALID_ARG, "lrfind: NULL output");
  *out = NULL;
  WK_TRY(wk_lrfind_check(cfg));
  wk_lrfind *f = calloc(1, sizeof *f);
  const size_t n = (size_t)cfg->n_steps;
  if (f) {
    f->lrs = malloc(n * sizeof *f->lrs);
    f->losses = malloc(n * sizeof *f->losses);
    f->smoothed = malloc(n * sizeof *f->smoothed);
  }
  if (!f || !f->lrs || !f->losses || !f->smoothed) {
    wk_lrfind_destroy(f);
    return wk_fail(WK_ERR_NOMEM, "lrfind: out of memory for %zu points", n);
  }
  f->cfg = *cfg;
  f->state = WK_LRFIND_RUNNING;
  f->best = INFINITY;
  *out = f;
  return WK_OK;
}

void wk_lrfind_destroy(wk_lrfind *f) {
  if (!f) return;
  free(f->lrs);
  free(f->losses);
  free(f->smoothed);
  free(f);
}

wk_lrfind_state wk_lrfind_get_state(const wk_lrfind *f) { return f->state; }
bool wk_lrfind_running(const wk_lrfind *f) { return f->state == WK_LRFIND_RUNNING; }

const char *wk_lrfind_state_name(wk_lrfind_state state) {
  switch (state) {
    case WK_LRFIND_RUNNING: return "running";
    case WK_LRFIND_DONE: return "done";
    case WK_LRFIND_DIVERGED: return "diverged";
    case WK_LRFIND_NONFINITE: return "non-finite loss";
  }
  return "unknown";
}

double wk_lrfind_lr(const wk_lrfind *f) {
  WK_ASSERT(f->state == WK_LRFIND_RUNNING);
  const double pct = (double)f->step / (double)(f->cfg.n_steps - 1);
  return f->cfg.lr_min * pow(f->cfg.lr_max / f->cfg.lr_min, pct);
}

bool wk_lrfind_observe(wk_lrfind *f, double loss) {
  WK_ASSERT(f->state == WK_LRFIND_RUNNING);
  const double lr = wk_lrfind_lr(f);
  f->step++;
  if (!isfinite(loss)) {
    f->state = WK_LRFIND_NONFINITE;
    return false;
  }
  const double beta = f->cfg.smooth_beta;
  f->avg = beta * f->avg + (1.0 - beta) * loss;
  const double smoothed = f->avg / (1.0 - pow(beta, (double)f->step));
  f->lrs[f->n] = lr;
  f->losses[f->n] = loss;
  f->smoothed[f->n] = smoothed;
  f->n++;
  if (smoothed < f->best) f->best = smoothed;
  if (f->best > 0.0 && smoothed > f->cfg.diverge_factor * f->best)
    f->state = WK_LRFIND_DIVERGED;
  else if (f->step == f->cfg.n_steps)
    f->state = WK_LRFIND_DONE;
  return f->state == WK_LRFIND_RUNNING;
}

size_t wk_lrfind_n_points(const wk_lrfind *f) { return f->n; }
const double *wk_lrfind_lrs(const wk_lrfind *f) { return f->lrs; }
const double *wk_lrfind_losses(const wk_lrfind *f) { return f->losses; }
const double *wk_lrfind_smoothed(const wk_lrfind *f) { return f->smoothed; }

wk_status wk_lrfind_suggest(const wk_lrfind *f, double *lr, size_t *index) {
  const size_t skip = (size_t)(f->cfg.n_steps / 10);
  const double *s = f->smoothed;
  if (f->n < skip + WK_LRFIND_MIN_POINTS)
    return wk_fail(WK_ERR_INVALID_ARG,
                   "lrfind: only %zu points (%s after %lld steps), need %d after the first %zu; "
                   "lower lr_min or take more steps",
                   f->n, wk_lrfind_state_name(f->state), (long long)f->step,
                   WK_LRFIND_MIN_POINTS, skip);
  size_t lowest = skip;
  for (size_t i = skip + 1; i < f->n; i++)
    if (s[i] < s[lowest]) lowest = i;
  if (!(s[skip] - s[lowest] >= WK_LRFIND_MIN_DROP * fabs(s[skip])) || lowest == skip)
    return wk_fail(WK_ERR_INVALID_ARG,
                   "lrfind: the smoothed loss never falls by %g%% (from %g to at best %g between "
                   "lr %g and %g); raise lr_max or check the training",
                   100.0 * WK_LRFIND_MIN_DROP, s[skip], s[lowest], f->lrs[skip],
                   f->lrs[f->n - 1]);
  /* Slopes against log(lr) over the descent [skip, lowest]: central inside,
   * one-sided at both ends. log(lr) grows by the same dlog > 0 every step. */
  const double dlog = log(f->cfg.lr_max / f->cfg.lr_min) / (double)(f->cfg.n_steps - 1);
  size_t best = skip;
  double best_slope = INFINITY;
  for (size_t i = skip; i <= lowest; i++) {
    const size_t a = i > skip ? i - 1 : i, b = i < lowest ? i + 1 : i;
    const double slope = (s[b] - s[a]) / ((double)(b - a) * dlog);
    if (slope < best_slope) {
      best_slope = slope;
      best = i;
    }
  }
  WK_ASSERT(best_slope < 0.0); /* s[lowest] < s[skip], so some step goes down */
  *lr = f->lrs[best];
  if (index) *index = best;
  return WK_OK;
}
