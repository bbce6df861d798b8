/* schedule.c - learning-rate schedules in torch's closed forms (see schedule.h). */
#include "train/schedule.h"

#include <math.h>
#include <string.h>

#define WK_PI 3.14159265358979323846

static const char *const k_schedule_names[] = {"constant", "onecycle", "cosine", "step"};

wk_schedule wk_schedule_default(wk_schedule_kind kind, double lr, int64_t total_steps) {
  wk_schedule s = {
      .kind = kind,
      .lr = lr,
      .total_steps = total_steps,
      .pct_start = 0.3,
      .div_factor = 25.0,
      .final_div_factor = 1e4,
      .cycle_momentum = true,
      .base_momentum = 0.85,
      .max_momentum = 0.95,
      .warmup_steps = 0,
      .warmup_start_factor = 1.0 / 3.0,
      .eta_min = 0.0,
      .step_size = total_steps / 3 > 1 ? total_steps / 3 : 1,
      .gamma = 0.1,
  };
  return s;
}

static bool wk_positive(double x) { return isfinite(x) && x > 0.0; }
static bool wk_unit(double x) { return x >= 0.0 && x < 1.0; }

static wk_status wk_one_cycle_check(const wk_schedule *s) {
  const double end_rise = s->pct_start * (double)s->total_steps - 1.0;
  const double end_fall = (double)s->total_steps - 1.0;
  if (!(end_rise > 0.0 && end_fall > end_rise))
    return wk_fail(WK_ERR_INVALID_ARG,
                   "onecycle: pct_start %g with total_steps %lld leaves an empty phase (need "
                   "1 < pct_start * total_steps and pct_start < 1)",
                   s->pct_start, (long long)s->total_steps);
  if (!wk_positive(s->div_factor) || !wk_positive(s->final_div_factor))
    return wk_fail(WK_ERR_INVALID_ARG,
                   "onecycle: div_factor %g and final_div_factor %g must be finite and > 0",
                   s->div_factor, s->final_div_factor);
  if (s->cycle_momentum && !(wk_unit(s->base_momentum) && wk_unit(s->max_momentum)))
    return wk_fail(WK_ERR_INVALID_ARG,
                   "onecycle: base_momentum %g and max_momentum %g must be in [0, 1)",
                   s->base_momentum, s->max_momentum);
  return WK_OK;
}

static wk_status wk_cosine_check(const wk_schedule *s) {
  if (s->warmup_steps < 0 || s->warmup_steps >= s->total_steps)
    return wk_fail(WK_ERR_INVALID_ARG, "cosine: warmup_steps %lld must be in [0, %lld)",
                   (long long)s->warmup_steps, (long long)s->total_steps);
  if (!(s->warmup_start_factor > 0.0 && s->warmup_start_factor <= 1.0))
    return wk_fail(WK_ERR_INVALID_ARG, "cosine: warmup_start_factor %g must be in (0, 1]",
                   s->warmup_start_factor);
  if (!(s->eta_min >= 0.0 && s->eta_min <= s->lr))
    return wk_fail(WK_ERR_INVALID_ARG, "cosine: eta_min %g must be in [0, lr = %g]", s->eta_min,
                   s->lr);
  return WK_OK;
}

wk_status wk_schedule_check(const wk_schedule *s) {
  if (!s) return wk_fail(WK_ERR_INVALID_ARG, "schedule: NULL");
  if ((unsigned)s->kind > WK_SCHEDULE_STEP)
    return wk_fail(WK_ERR_INVALID_ARG, "schedule: unknown kind %d", (int)s->kind);
  const char *k = wk_schedule_kind_name(s->kind);
  if (s->kind == WK_SCHEDULE_CONSTANT)
    return isfinite(s->lr) && s->lr >= 0.0
               ? WK_OK
               : wk_fail(WK_ERR_INVALID_ARG, "constant: lr %g must be finite and >= 0", s->lr);
  if (!wk_positive(s->lr))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: lr %g must be finite and > 0", k, s->lr);
  if (s->kind == WK_SCHEDULE_STEP) {
    if (s->step_size < 1)
      return wk_fail(WK_ERR_INVALID_ARG, "step: step_size %lld must be >= 1",
                     (long long)s->step_size);
    if (!wk_positive(s->gamma))
      return wk_fail(WK_ERR_INVALID_ARG, "step: gamma %g must be finite and > 0", s->gamma);
    return WK_OK;
  }
  if (s->total_steps < 1)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: total_steps %lld must be >= 1", k,
                   (long long)s->total_steps);
  return s->kind == WK_SCHEDULE_ONE_CYCLE ? wk_one_cycle_check(s) : wk_cosine_check(s);
}

/* OneCycleLR's _annealing_cos: from start (pct 0) to end (pct 1). */
static double wk_anneal_cos(double start, double end, double pct) {
  const double cos_out = cos(WK_PI * pct) + 1.0;
  return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR.get_lr for both the rate (want_momentum false) and the momentum. */
static double wk_one_cycle(const wk_schedule *s, int64_t step, bool want_momentum) {
  const double total = (double)s->total_steps;
  const double end_rise = s->pct_start * total - 1.0, end_fall = total - 1.0;
  const double x = step < s->total_steps ? (double)step : end_fall;
  const double initial = s->lr / s->div_factor, final = initial / s->final_div_factor;
  if (x <= end_rise) {
    const double pct = x / end_rise;
    return want_momentum ? wk_anneal_cos(s->max_momentum, s->base_momentum, pct)
                         : wk_anneal_cos(initial, s->lr, pct);
  }
  const double pct = (x - end_rise) / (end_fall - end_rise);
  return want_momentum ? wk_anneal_cos(s->base_momentum, s->max_momentum, pct)
                       : wk_anneal_cos(s->lr, final, pct);
}

static double wk_cosine(const wk_schedule *s, int64_t step) {
  if (step < s->warmup_steps) {
    const double f = s->warmup_start_factor;
    return s->lr * (f + (1.0 - f) * (double)step / (double)s->warmup_steps);
  }
  const int64_t t_max = s->total_steps - s->warmup_steps;
  const int64_t t = step - s->warmup_steps < t_max ? step - s->warmup_steps : t_max;
  return s->eta_min +
         (s->lr - s->eta_min) * (1.0 + cos(WK_PI * (double)t / (double)t_max)) / 2.0;
}

double wk_schedule_lr(const wk_schedule *s, int64_t step) {
  WK_ASSERT(step >= 0);
  WK_ASSERT(wk_schedule_check(s) == WK_OK);
  switch (s->kind) {
    case WK_SCHEDULE_CONSTANT: return s->lr;
    case WK_SCHEDULE_ONE_CYCLE: return wk_one_cycle(s, step, false);
    case WK_SCHEDULE_COSINE: return wk_cosine(s, step);
    case WK_SCHEDULE_STEP: return s->lr * pow(s->gamma, (double)(step / s->step_size));
  }
  return s->lr;
}

bool wk_schedule_momentum(const wk_schedule *s, int64_t step, double *momentum) {
  WK_ASSERT(step >= 0);
  WK_ASSERT(wk_schedule_check(s) == WK_OK);
  if (s->kind != WK_SCHEDULE_ONE_CYCLE || !s->cycle_momentum) return false;
  *momentum = wk_one_cycle(s, step, true);
  return true;
}

wk_status wk_schedule_kind_parse(const char *name, wk_schedule_kind *out) {
  for (int k = 0; name && k <= WK_SCHEDULE_STEP; k++)
    if (strcmp(name, k_schedule_names[k]) == 0) {
      *out = (wk_schedule_kind)k;
      return WK_OK;
    }
  return wk_fail(WK_ERR_INVALID_ARG, "unknown schedule '%s' (constant, onecycle, cosine, step)",
                 name ? name : "(null)");
}

const char *wk_schedule_kind_name(wk_schedule_kind kind) {
  return (unsigned)kind <= WK_SCHEDULE_STEP ? k_schedule_names[kind] : "unknown";
}
