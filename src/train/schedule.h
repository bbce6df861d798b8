/* schedule.h - learning-rate (and momentum) schedules as pure functions of the
 * optimizer step, so a resumed run continues exactly: the checkpoint needs the
 * schedule's fields and the step, nothing else.
 *
 * `step` counts optimizer steps from 0: wk_schedule_lr(s, k) is the rate of the
 * k-th update, the value torch's scheduler holds after k calls of
 * scheduler.step(). Rates are computed in double with torch's closed forms:
 *
 *   CONSTANT   lr
 *   ONE_CYCLE  torch.optim.lr_scheduler.OneCycleLR(max_lr=lr, total_steps,
 *              pct_start, anneal_strategy='cos', div_factor, final_div_factor,
 *              three_phase=False): cosine from lr/div_factor up to lr over the
 *              steps 0..pct_start*total_steps-1, then cosine down to
 *              lr/div_factor/final_div_factor at step total_steps-1; momentum
 *              (SGD's momentum or AdamW's beta1) mirrors it, max_momentum ->
 *              base_momentum -> max_momentum.
 *   COSINE     LinearLR(start_factor=warmup_start_factor, end_factor=1,
 *              total_iters=warmup_steps) then CosineAnnealingLR(T_max =
 *              total_steps - warmup_steps, eta_min) under SequentialLR
 *              (milestones=[warmup_steps]): linear from warmup_start_factor*lr to
 *              lr over the warm-up, then cosine to eta_min, reached at step
 *              total_steps (one past the last update, as torch).
 *   STEP       StepLR(step_size, gamma) counted in optimizer steps:
 *              lr * gamma^floor(step / step_size). For a decay every E epochs,
 *              step_size = E * steps_per_epoch.
 *
 * Past the end (step >= total_steps) ONE_CYCLE holds its final rate and COSINE
 * holds eta_min, where torch raises (OneCycleLR) or rises again along the cosine
 * (CosineAnnealingLR). */
#ifndef WK_TRAIN_SCHEDULE_H
#define WK_TRAIN_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

typedef enum wk_schedule_kind {
  WK_SCHEDULE_CONSTANT,
  WK_SCHEDULE_ONE_CYCLE,
  WK_SCHEDULE_COSINE,
  WK_SCHEDULE_STEP,
} wk_schedule_kind;

typedef struct wk_schedule {
  wk_schedule_kind kind;
  double lr;           /* CONSTANT: the rate; ONE_CYCLE: max_lr; COSINE: the rate after
                          warm-up; STEP: the initial rate. Finite, > 0 (CONSTANT: >= 0) */
  int64_t total_steps; /* ONE_CYCLE, COSINE: updates in the run, >= 1 */
  /* ONE_CYCLE */
  double pct_start;        /* share of the run spent rising, in (1/total_steps, 1) */
  double div_factor;       /* initial rate = lr / div_factor, > 0 */
  double final_div_factor; /* final rate = initial rate / final_div_factor, > 0 */
  bool cycle_momentum;     /* whether wk_schedule_momentum gives a value */
  double base_momentum, max_momentum; /* each in [0, 1) */
  /* COSINE */
  int64_t warmup_steps;       /* in [0, total_steps) */
  double warmup_start_factor; /* in (0, 1] */
  double eta_min;             /* in [0, lr] */
  /* STEP */
  int64_t step_size; /* >= 1 */
  double gamma;      /* finite, > 0 */
} wk_schedule;

/* A schedule of `kind` with torch's defaults for the rest: one-cycle pct_start
 * 0.3, div_factor 25, final_div_factor 1e4, momentum cycled 0.95 -> 0.85 -> 0.95;
 * cosine warm-up 0 steps from 1/3 (LinearLR's default start factor), eta_min 0;
 * step gamma 0.1 (StepLR's) every max(1, total_steps / 3) steps (whisker's
 * choice: StepLR has no default step size). */
wk_schedule wk_schedule_default(wk_schedule_kind kind, double lr, int64_t total_steps);

/* WK_ERR_INVALID_ARG with a message naming the field when the schedule is not
 * usable. wk_schedule_lr and wk_schedule_momentum require a schedule that passes. */
wk_status wk_schedule_check(const wk_schedule *s);

/* The learning rate of update `step` (>= 0). */
double wk_schedule_lr(const wk_schedule *s, int64_t step);

/* The momentum (SGD) or beta1 (AdamW) of update `step` for a one-cycle schedule
 * with cycle_momentum; false (and *momentum untouched) for every other schedule. */
bool wk_schedule_momentum(const wk_schedule *s, int64_t step, double *momentum);

/* "constant", "onecycle", "cosine", "step". */
wk_status wk_schedule_kind_parse(const char *name, wk_schedule_kind *out);
const char *wk_schedule_kind_name(wk_schedule_kind kind);

#endif
