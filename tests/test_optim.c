/* test_optim.c - the optimizers, gradient clipping and learning-rate schedules of
 * src/train/ against PyTorch goldens (scripts/gen_optim_golden.py, records in
 * tests/golden/README.md), plus the rejection of invalid configurations.
 *
 * Tolerance: whisker does, element by element, the float32 operations of
 * torch's kernels in torch's order, with the float factors derived in double
 * as torch derives them from Python floats. What remains is torch's vectorised
 * kernels fusing a multiply and an add (one rounding instead of two, <= 6e-8
 * relative per operation); over 6 steps these stay within a few float ulps of
 * the largest value. A normalised error max|a - ref| / max|ref| <= 1e-6 (about
 * 16 ulps) passes that and fails any real difference (a wrong bias correction,
 * a decay applied to a no-decay parameter, a momentum buffer started as 0: all
 * >= 1e-3). Schedules are computed in double and stored as float: 1e-6
 * relative per value. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_io.h"
#include "test_util.h"
#include "train/grad.h"
#include "train/optim.h"
#include "train/schedule.h"

#define TOL 1e-6
#define N_PARAMS 6
#define N_STEPS 6
#define GAP_W 7.0f

#define BAD(expr) WKT_FAILS(WK_ERR_INVALID_ARG, expr)

typedef struct golden {
  wkg_file f;
  size_t n_elems;
  wk_param params[N_PARAMS];
  const int32_t *flags; /* (N_STEPS, N_PARAMS) */
  const float *w0;      /* (n_elems) */
  const float *grads;   /* (N_STEPS, n_elems) */
} golden;

static const float *get_f32(const golden *gd, const char *name, int ndim, const int64_t *shape) {
  const wk_tensor *t = NULL;
  WKT_OK(wkg_get(&gd->f, name, WK_F32, ndim, shape, &t));
  return t->data;
}

static const int32_t *get_i32(const golden *gd, const char *name, int ndim,
                              const int64_t *shape) {
  const wk_tensor *t = NULL;
  WKT_OK(wkg_get(&gd->f, name, WK_I32, ndim, shape, &t));
  return t->data;
}

static void golden_load(golden *gd) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/golden/optim.bin", wkt_source_dir());
  memset(gd, 0, sizeof *gd);
  WKT_OK(wkg_load(path, &gd->f));
  const wk_tensor *w0 = wkg_find(&gd->f, "init.w");
  ck_assert_ptr_nonnull(w0);
  ck_assert_int_eq(w0->ndim, 1);
  gd->n_elems = (size_t)w0->shape[0];
  const int64_t np[1] = {N_PARAMS}, nf[2] = {N_STEPS, N_PARAMS};
  const int64_t ne[1] = {(int64_t)gd->n_elems}, ng[2] = {N_STEPS, (int64_t)gd->n_elems};
  const int32_t *off = get_i32(gd, "layout.offset", 1, np);
  const int32_t *numel = get_i32(gd, "layout.numel", 1, np);
  const float *scale = get_f32(gd, "layout.lr_scale", 1, np);
  for (int i = 0; i < N_PARAMS; i++) {
    wk_param *p = &gd->params[i];
    snprintf(p->name, sizeof p->name, "golden.p%d", i);
    p->ndim = 1;
    p->shape[0] = numel[i];
    p->offset = (size_t)off[i];
    p->numel = (size_t)numel[i];
    p->lr_scale = scale[i];
  }
  gd->flags = get_i32(gd, "layout.flags", 2, nf);
  gd->w0 = get_f32(gd, "init.w", 1, ne);
  gd->grads = get_f32(gd, "grad", 2, ng);
}

static void golden_set_flags(golden *gd, int step) {
  for (int i = 0; i < N_PARAMS; i++) gd->params[i].flags = (uint32_t)gd->flags[step * N_PARAMS + i];
}

static bool in_param(const golden *gd, size_t e) {
  for (int i = 0; i < N_PARAMS; i++)
    if (e >= gd->params[i].offset && e < gd->params[i].offset + gd->params[i].numel) return true;
  return false;
}

/* Elements outside every parameter keep their value, and a parameter frozen at
 * `step` is bit-for-bit what it was before the step. */
static void check_untouched(const golden *gd, int step, const float *before, const float *w) {
  for (size_t e = 0; e < gd->n_elems; e++)
    if (!in_param(gd, e)) ck_assert_float_eq(w[e], GAP_W);
  for (int i = 0; i < N_PARAMS; i++) {
    const wk_param *p = &gd->params[i];
    if (p->flags & WK_PARAM_FROZEN)
      ck_assert_msg(memcmp(w + p->offset, before + p->offset, p->numel * sizeof *w) == 0,
                    "step %d: frozen parameter %d changed", step, i);
  }
}

static void replay_case(golden *gd, const char *name) {
  char rec[128];
  const int64_t ncfg[1] = {10};
  snprintf(rec, sizeof rec, "%s.cfg", name);
  const float *c = get_f32(gd, rec, 1, ncfg);
  wk_optim_config cfg = wk_optim_config_default(c[0] == 0.0f ? WK_OPTIM_SGD : WK_OPTIM_ADAMW);
  const double lr = c[1];
  cfg.momentum = c[2];
  cfg.nesterov = c[3] != 0.0f;
  cfg.weight_decay = c[4];
  cfg.decay_norm_and_bias = c[5] != 0.0f;
  cfg.beta1 = c[6];
  cfg.beta2 = c[7];
  cfg.eps = c[8];
  const bool one_cycle = c[9] != 0.0f;
  wk_schedule sched = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, lr, N_STEPS);
  WKT_OK(wk_schedule_check(&sched));

  const size_t n = gd->n_elems;
  const int64_t nw[2] = {N_STEPS, (int64_t)n};
  snprintf(rec, sizeof rec, "%s.w", name);
  const float *want = get_f32(gd, rec, 2, nw);
  float *w = malloc(n * sizeof *w), *before = malloc(n * sizeof *w);
  memcpy(w, gd->w0, n * sizeof *w);
  golden_set_flags(gd, 0);
  wk_optim *opt = NULL;
  WKT_OK(wk_optim_create(&cfg, gd->params, N_PARAMS, n, &opt));
  for (int s = 0; s < N_STEPS; s++) {
    golden_set_flags(gd, s);
    double step_lr = lr, m = 0.0;
    if (one_cycle) {
      step_lr = wk_schedule_lr(&sched, s);
      ck_assert(wk_schedule_momentum(&sched, s, &m));
      WKT_OK(wk_optim_set_momentum(opt, m));
    }
    memcpy(before, w, n * sizeof *w);
    WKT_OK(wk_optim_step(opt, NULL, w, gd->grads + (size_t)s * n, step_lr));
    const double err = wkt_rel_err(w, want + (size_t)s * n, (int64_t)n, 1e-6);
    ck_assert_msg(err <= TOL, "%s: step %d: weights differ from torch by %g", name, s, err);
    check_untouched(gd, s, before, w);
  }
  for (size_t i = 0; i < wk_optim_state_count(opt); i++) {
    const char *key = wk_optim_state_name(opt, i);
    snprintf(rec, sizeof rec, "%s.state.%s", name, key);
    const int64_t ns[1] = {(int64_t)n};
    const float *want_state = get_f32(gd, rec, 1, ns);
    WKT_OK(wk_optim_state_get(opt, key, before, n));
    const double err = wkt_rel_err(before, want_state, (int64_t)n, 1e-6);
    ck_assert_msg(err <= TOL, "%s: state %s differs from torch by %g", name, key, err);
  }
  ck_assert_uint_eq(wk_optim_state_count(opt),
                    cfg.kind == WK_OPTIM_ADAMW ? 2 : (cfg.momentum != 0.0 ? 1 : 0));
  if (cfg.kind == WK_OPTIM_ADAMW) {
    snprintf(rec, sizeof rec, "%s.steps", name);
    const int64_t np[1] = {N_PARAMS};
    const int32_t *want_steps = get_i32(gd, rec, 1, np);
    int64_t steps[N_PARAMS];
    WKT_OK(wk_optim_steps_get(opt, steps, N_PARAMS));
    for (int i = 0; i < N_PARAMS; i++)
      ck_assert_msg(steps[i] == want_steps[i], "%s: parameter %d: %lld steps, torch %d", name,
                    i, (long long)steps[i], want_steps[i]);
  }
  wk_optim_destroy(opt);
  free(w);
  free(before);
}

static const char *const k_cases[] = {"sgd_plain",   "sgd_momentum",   "sgd_nesterov_wd",
                                      "sgd_wd_nodecay", "adamw",      "adamw_nodecay",
                                      "sgd_onecycle", "adamw_onecycle"};

START_TEST(test_optim_matches_torch) {
  golden gd;
  golden_load(&gd);
  replay_case(&gd, k_cases[_i]);
  wkg_free(&gd.f);
}
END_TEST

START_TEST(test_clip_matches_torch) {
  golden gd;
  golden_load(&gd);
  golden_set_flags(&gd, 0);
  const size_t n = gd.n_elems;
  const int64_t n2[1] = {2}, ng[2] = {2, (int64_t)n};
  const float *max_norm = get_f32(&gd, "clip.max_norm", 1, n2);
  const float *norm = get_f32(&gd, "clip.norm", 1, n2);
  const float *want = get_f32(&gd, "clip.g", 2, ng);
  float *g = malloc(n * sizeof *g);
  for (int k = 0; k < 2; k++) {
    memcpy(g, gd.grads, n * sizeof *g); /* step 0, NaN in gaps and frozen parameters */
    double got = 0.0;
    WKT_OK(wk_grad_clip_global_norm(NULL, gd.params, N_PARAMS, g, max_norm[k], &got));
    ck_assert_msg(fabs(got - norm[k]) <= TOL * norm[k], "norm %g, torch %g", got,
                  (double)norm[k]);
    /* NaN where torch left NaN (not read), values elsewhere */
    const double err = wkt_rel_err(g, want + (size_t)k * n, (int64_t)n, 1e-6);
    ck_assert_msg(err <= TOL, "max_norm %g: clipped gradients differ by %g", (double)max_norm[k],
                  err);
  }
  /* the small max_norm clipped; the large one left every bit alone (NaNs too) */
  ck_assert(norm[0] > max_norm[0] && norm[1] < max_norm[1]);
  ck_assert_int_eq(memcmp(g, gd.grads, n * sizeof *g), 0);
  BAD(wk_grad_clip_global_norm(NULL, gd.params, N_PARAMS, g, 0.0, NULL));
  BAD(wk_grad_clip_global_norm(NULL, gd.params, N_PARAMS, g, NAN, NULL));
  free(g);
  wkg_free(&gd.f);
}
END_TEST

/* Compares n scheduled values with a golden record, relatively, value by value. */
static void check_series(const golden *gd, const char *rec, const double *got, int n) {
  const int64_t shape[1] = {n};
  const float *want = get_f32(gd, rec, 1, shape);
  for (int s = 0; s < n; s++)
    ck_assert_msg(fabs(got[s] - want[s]) <= TOL * fabs((double)want[s]),
                  "%s: step %d: %.9g, torch %.9g", rec, s, got[s], (double)want[s]);
}

START_TEST(test_schedules_match_torch) {
  golden gd;
  golden_load(&gd);
  double lr[64], mom[64];
  const char *const one_cycles[2] = {"onecycle", "onecycle2"};
  for (int k = 0; k < 2; k++) {
    char rec[64];
    snprintf(rec, sizeof rec, "sched.%s.cfg", one_cycles[k]);
    const int64_t n7[1] = {7};
    const float *c = get_f32(&gd, rec, 1, n7);
    wk_schedule s = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, c[0], (int64_t)c[1]);
    s.pct_start = c[2];
    s.div_factor = c[3];
    s.final_div_factor = c[4];
    s.base_momentum = c[5];
    s.max_momentum = c[6];
    if (k == 0) { /* the first is torch's defaults */
      const wk_schedule d = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, c[0], (int64_t)c[1]);
      ck_assert(fabs(d.pct_start - 0.3) < 1e-7 && d.div_factor == 25.0 &&
                d.final_div_factor == 1e4 && d.cycle_momentum);
    }
    WKT_OK(wk_schedule_check(&s));
    const int total = (int)c[1];
    ck_assert_int_le(total, 64);
    for (int t = 0; t < total; t++) {
      lr[t] = wk_schedule_lr(&s, t);
      ck_assert(wk_schedule_momentum(&s, t, &mom[t]));
    }
    snprintf(rec, sizeof rec, "sched.%s.lr", one_cycles[k]);
    check_series(&gd, rec, lr, total);
    snprintf(rec, sizeof rec, "sched.%s.momentum", one_cycles[k]);
    check_series(&gd, rec, mom, total);
    /* past the end: the final rate, where torch would raise */
    ck_assert(wk_schedule_lr(&s, total + 5) == lr[total - 1]);
  }
  const int64_t n5[1] = {5}, n3[1] = {3};
  const float *c = get_f32(&gd, "sched.cosine.cfg", 1, n5);
  wk_schedule s = wk_schedule_default(WK_SCHEDULE_COSINE, c[0], (int64_t)c[1]);
  s.warmup_steps = (int64_t)c[2];
  s.warmup_start_factor = c[3];
  s.eta_min = c[4];
  WKT_OK(wk_schedule_check(&s));
  const int total = (int)c[1];
  for (int t = 0; t < total; t++) lr[t] = wk_schedule_lr(&s, t);
  check_series(&gd, "sched.cosine.lr", lr, total);
  ck_assert(!wk_schedule_momentum(&s, 0, &mom[0]));
  ck_assert(wk_schedule_lr(&s, total) == s.eta_min && wk_schedule_lr(&s, 10 * total) == s.eta_min);

  c = get_f32(&gd, "sched.step.cfg", 1, n3);
  s = wk_schedule_default(WK_SCHEDULE_STEP, c[0], 0);
  s.step_size = (int64_t)c[1];
  s.gamma = c[2];
  WKT_OK(wk_schedule_check(&s));
  for (int t = 0; t < total; t++) lr[t] = wk_schedule_lr(&s, t);
  check_series(&gd, "sched.step.lr", lr, total);

  s = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.25, 0);
  WKT_OK(wk_schedule_check(&s));
  ck_assert(wk_schedule_lr(&s, 0) == 0.25 && wk_schedule_lr(&s, 1000000) == 0.25);
  wkg_free(&gd.f);
}
END_TEST

START_TEST(test_invalid_configs) {
  wk_param p[2] = {{.name = "a", .offset = 0, .numel = 10, .lr_scale = 1.0f},
                   {.name = "b", .offset = 10, .numel = 6, .lr_scale = 1.0f}};
  wk_optim *opt = NULL;
  wk_optim_config c = wk_optim_config_default(WK_OPTIM_SGD);
  c.momentum = -0.1;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  c.momentum = 1.0;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  c = wk_optim_config_default(WK_OPTIM_SGD);
  c.momentum = 0.0;
  c.nesterov = true;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  c = wk_optim_config_default(WK_OPTIM_SGD);
  c.weight_decay = -1e-4;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  c.weight_decay = NAN;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  const double bad_betas[][2] = {{1.0, 0.999}, {-0.1, 0.999}, {0.9, 1.0}, {0.9, NAN}};
  for (int i = 0; i < 4; i++) {
    c = wk_optim_config_default(WK_OPTIM_ADAMW);
    c.beta1 = bad_betas[i][0];
    c.beta2 = bad_betas[i][1];
    BAD(wk_optim_create(&c, p, 2, 16, &opt));
  }
  c = wk_optim_config_default(WK_OPTIM_ADAMW);
  c.eps = 0.0;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  c.kind = (wk_optim_kind)7;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  ck_assert_ptr_null(opt);

  /* layouts: outside the arena, overlapping, negative lr_scale */
  c = wk_optim_config_default(WK_OPTIM_ADAMW);
  BAD(wk_optim_create(&c, p, 2, 15, &opt));
  p[1].offset = 9;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  p[1].offset = 10;
  p[1].lr_scale = -1.0f;
  BAD(wk_optim_create(&c, p, 2, 16, &opt));
  p[1].lr_scale = 1.0f;
  ck_assert_ptr_null(opt);

  /* steps and state: bad lr, bad lr_scale set later, bad momentum, bad state */
  WKT_OK(wk_optim_create(&c, p, 2, 16, &opt));
  float w[16] = {0}, g[16] = {0}, st[16] = {0};
  BAD(wk_optim_step(opt, NULL, w, g, -1e-3));
  BAD(wk_optim_step(opt, NULL, w, g, NAN));
  BAD(wk_optim_step(opt, NULL, w, g, INFINITY));
  p[0].lr_scale = NAN;
  BAD(wk_optim_step(opt, NULL, w, g, 1e-3));
  p[0].lr_scale = 1.0f;
  int64_t steps[2];
  WKT_OK(wk_optim_steps_get(opt, steps, 2));
  ck_assert(steps[0] == 0 && steps[1] == 0); /* the rejected steps did nothing */
  BAD(wk_optim_set_momentum(opt, 1.0));
  BAD(wk_optim_set_momentum(opt, -0.5));
  WKT_OK(wk_optim_set_momentum(opt, 0.0)); /* beta1 0 is valid Adam */
  BAD(wk_optim_state_set(opt, "momentum_buffer", st, 16));
  BAD(wk_optim_state_get(opt, "exp_avg", st, 15));
  st[3] = -1e-9f;
  BAD(wk_optim_state_set(opt, "exp_avg_sq", st, 16));
  st[3] = NAN;
  BAD(wk_optim_state_set(opt, "exp_avg", st, 16));
  steps[1] = -1;
  BAD(wk_optim_steps_set(opt, steps, 2));
  BAD(wk_optim_steps_get(opt, steps, 3));
  wk_optim_destroy(opt);
  c = wk_optim_config_default(WK_OPTIM_SGD);
  c.momentum = 0.0;
  WKT_OK(wk_optim_create(&c, p, 2, 16, &opt));
  ck_assert_uint_eq(wk_optim_state_count(opt), 0);
  BAD(wk_optim_set_momentum(opt, 0.9)); /* no buffer to cycle */
  wk_optim_destroy(opt);

  wk_optim_kind kind;
  WKT_OK(wk_optim_kind_parse("adamw", &kind));
  ck_assert_int_eq(kind, WK_OPTIM_ADAMW);
  BAD(wk_optim_kind_parse("adam", &kind));
}
END_TEST

START_TEST(test_invalid_schedules) {
  wk_schedule s = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, 0.1, 3);
  BAD(wk_schedule_check(&s)); /* 0.3 * 3 - 1 < 0: an empty rising phase */
  s = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, 0.1, 100);
  s.pct_start = 1.0;
  BAD(wk_schedule_check(&s));
  s = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, -0.1, 100);
  BAD(wk_schedule_check(&s));
  s = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, 0.1, 100);
  s.max_momentum = 1.0;
  BAD(wk_schedule_check(&s));
  s.max_momentum = 0.95;
  s.div_factor = 0.0;
  BAD(wk_schedule_check(&s));
  s = wk_schedule_default(WK_SCHEDULE_COSINE, 0.1, 100);
  s.warmup_steps = 100;
  BAD(wk_schedule_check(&s));
  s.warmup_steps = 10;
  s.warmup_start_factor = 0.0;
  BAD(wk_schedule_check(&s));
  s.warmup_start_factor = 0.1;
  s.eta_min = 0.2;
  BAD(wk_schedule_check(&s));
  s = wk_schedule_default(WK_SCHEDULE_COSINE, 0.1, 0);
  BAD(wk_schedule_check(&s));
  s = wk_schedule_default(WK_SCHEDULE_STEP, 0.1, 100);
  s.step_size = 0;
  BAD(wk_schedule_check(&s));
  s.step_size = 10;
  s.gamma = INFINITY;
  BAD(wk_schedule_check(&s));
  s = wk_schedule_default(WK_SCHEDULE_CONSTANT, NAN, 0);
  BAD(wk_schedule_check(&s));
  s.kind = (wk_schedule_kind)9;
  BAD(wk_schedule_check(&s));
  wk_schedule_kind kind;
  WKT_OK(wk_schedule_kind_parse("onecycle", &kind));
  ck_assert_int_eq(kind, WK_SCHEDULE_ONE_CYCLE);
  BAD(wk_schedule_kind_parse("cyclic", &kind));
  /* cosine without warm-up starts at lr; a warm-up starts at start_factor * lr */
  s = wk_schedule_default(WK_SCHEDULE_COSINE, 0.1, 100);
  WKT_OK(wk_schedule_check(&s));
  ck_assert(wk_schedule_lr(&s, 0) == 0.1);
  s.warmup_steps = 10;
  ck_assert(fabs(wk_schedule_lr(&s, 0) - 0.1 / 3.0) < 1e-15);
}
END_TEST

int main(void) {
  Suite *s = suite_create("optim");
  TCase *tc = tcase_create("optim");
  tcase_add_loop_test(tc, test_optim_matches_torch, 0,
                      (int)(sizeof k_cases / sizeof k_cases[0]));
  tcase_add_test(tc, test_clip_matches_torch);
  tcase_add_test(tc, test_schedules_match_torch);
  tcase_add_test(tc, test_invalid_configs);
  tcase_add_test(tc, test_invalid_schedules);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
