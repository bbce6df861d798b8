/* test_optim_state.c - properties of the optimizers and gradient utilities that
 * need no golden: results independent of the thread count and of where an
 * element sits in a parameter (vector body or scalar tail), a checkpointed
 * state that resumes bit for bit, and NaN/Inf gradients caught and named. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "train/grad.h"
#include "train/optim.h"
#include "train/schedule.h"

/* A large arena: sizes that are not multiples of the chunk or vector width,
 * gaps, a frozen and a no-decay parameter. */
enum { BIG_PARAMS = 6 };
static const struct {
  size_t numel, gap;
  uint32_t flags;
  float lr_scale;
} k_big[BIG_PARAMS] = {
    {100003, 0, 0, 1.0f},
    {30011, 5, WK_PARAM_NO_DECAY, 1.0f},
    {7, 3, 0, 0.5f},
    {65536, 0, 0, 1.0f},
    {20000, 1, WK_PARAM_FROZEN, 1.0f},
    {4099, 2, WK_PARAM_NO_DECAY, 0.1f},
};

typedef struct arena {
  wk_param params[BIG_PARAMS];
  size_t n_params, n_elems;
  float *w, *g; /* (n_elems) each */
} arena;

static void arena_init(arena *a, uint64_t seed) {
  memset(a, 0, sizeof *a);
  size_t off = 0;
  for (int i = 0; i < BIG_PARAMS; i++) {
    off += k_big[i].gap;
    wk_param *p = &a->params[i];
    snprintf(p->name, sizeof p->name, "big.p%d", i);
    p->ndim = 1;
    p->shape[0] = (int64_t)k_big[i].numel;
    p->offset = off;
    p->numel = k_big[i].numel;
    p->flags = k_big[i].flags;
    p->lr_scale = k_big[i].lr_scale;
    off += k_big[i].numel;
  }
  a->n_params = BIG_PARAMS;
  a->n_elems = off;
  a->w = malloc(off * sizeof *a->w);
  a->g = malloc(off * sizeof *a->g);
  wkt_fill_f32(a->w, (int64_t)off, seed, -1.0f, 1.0f);
  wkt_fill_f32(a->g, (int64_t)off, seed + 1, -2.0f, 2.0f);
}

static void arena_free(arena *a) {
  free(a->w);
  free(a->g);
}

/* The gradient of step s: g scaled and shifted per step, so steps differ. */
static void step_grad(const arena *a, int s, float *g) {
  const float scale = 1.0f + 0.25f * (float)s, shift = 0.01f * (float)s;
  for (size_t i = 0; i < a->n_elems; i++) g[i] = a->g[i] * scale - shift;
}

static wk_optim_config test_config(int which) {
  wk_optim_config c = wk_optim_config_default(which == 2 ? WK_OPTIM_ADAMW : WK_OPTIM_SGD);
  if (which == 0) c.momentum = 0.0;
  if (which == 1) {
    c.nesterov = true;
    c.weight_decay = 1e-2;
  }
  return c;
}

/* Runs `steps` updates from a's weights on ctx; returns the weights and the
 * state arrays concatenated (caller frees). */
static float *run_steps(const arena *a, const wk_optim_config *cfg, wk_ctx *ctx, int steps) {
  const size_t n = a->n_elems;
  float *out = malloc(3 * n * sizeof *out), *g = malloc(n * sizeof *g);
  memset(out, 0, 3 * n * sizeof *out);
  memcpy(out, a->w, n * sizeof *out);
  wk_optim *opt = NULL;
  WKT_OK(wk_optim_create(cfg, a->params, a->n_params, n, &opt));
  for (int s = 0; s < steps; s++) {
    step_grad(a, s, g);
    WKT_OK(wk_optim_step(opt, ctx, out, g, 0.01));
  }
  for (size_t i = 0; i < wk_optim_state_count(opt); i++)
    WKT_OK(wk_optim_state_get(opt, wk_optim_state_name(opt, i), out + (i + 1) * n, n));
  wk_optim_destroy(opt);
  free(g);
  return out;
}

START_TEST(test_thread_count_independence) {
  arena a;
  arena_init(&a, 42);
  const size_t n = a.n_elems;
  wk_ctx *ctx[3] = {wkt_ctx(WK_IMPL_CPU, 1), wkt_ctx(WK_IMPL_CPU, 2), wkt_ctx(WK_IMPL_CPU, 3)};
  for (int which = 0; which < 3; which++) {
    const wk_optim_config cfg = test_config(which);
    float *ref = run_steps(&a, &cfg, NULL, 3);
    ck_assert_msg(memcmp(ref, a.w, n * sizeof *ref) != 0, "the steps changed nothing");
    for (int k = 0; k < 3; k++) {
      float *got = run_steps(&a, &cfg, ctx[k], 3);
      ck_assert_msg(memcmp(got, ref, 3 * n * sizeof *got) == 0, "config %d: %d threads differ",
                    which, ctx[k]->n_threads);
      free(got);
    }
    free(ref);
  }
  /* clipping: the same norm and the same clipped bits for every thread count */
  float *g_ref = malloc(n * sizeof *g_ref), *g = malloc(n * sizeof *g);
  memcpy(g_ref, a.g, n * sizeof *g);
  double norm_ref = 0.0, norm = 0.0;
  WKT_OK(wk_grad_clip_global_norm(NULL, a.params, a.n_params, g_ref, 1.0, &norm_ref));
  ck_assert(norm_ref > 1.0);
  for (int k = 0; k < 3; k++) {
    memcpy(g, a.g, n * sizeof *g);
    WKT_OK(wk_grad_clip_global_norm(ctx[k], a.params, a.n_params, g, 1.0, &norm));
    ck_assert(norm == norm_ref);
    ck_assert(memcmp(g, g_ref, n * sizeof *g) == 0);
  }
  /* and the norm is right: squares of the non-frozen elements, in double */
  double sum = 0.0;
  for (int i = 0; i < BIG_PARAMS; i++)
    if (!(a.params[i].flags & WK_PARAM_FROZEN))
      for (size_t e = 0; e < a.params[i].numel; e++) {
        const double x = a.g[a.params[i].offset + e];
        sum += x * x;
      }
  ck_assert_msg(fabs(norm_ref - sqrt(sum)) <= 1e-12 * sqrt(sum), "norm %.17g, direct %.17g",
                norm_ref, sqrt(sum));
  free(g_ref);
  free(g);
  for (int k = 0; k < 3; k++) wk_ctx_destroy(ctx[k]);
  arena_free(&a);
}
END_TEST

/* The same 37 elements as one parameter (vector body + scalar tail) and as 37
 * one-element parameters (scalar only) give the same bits. */
START_TEST(test_element_position_independence) {
  enum { N = 37 };
  wk_param one = {.name = "one", .ndim = 1, .shape = {N}, .offset = 0, .numel = N, .lr_scale = 1};
  wk_param many[N];
  for (int i = 0; i < N; i++)
    many[i] = (wk_param){.name = "e", .ndim = 1, .shape = {1}, .offset = (size_t)i, .numel = 1,
                         .lr_scale = 1};
  float w0[N], g[N], w1[N], w2[N];
  wkt_fill_f32(w0, N, 7, -1.0f, 1.0f);
  for (int which = 0; which < 3; which++) {
    const wk_optim_config cfg = test_config(which);
    wk_optim *o1 = NULL, *o2 = NULL;
    WKT_OK(wk_optim_create(&cfg, &one, 1, N, &o1));
    WKT_OK(wk_optim_create(&cfg, many, N, N, &o2));
    memcpy(w1, w0, sizeof w0);
    memcpy(w2, w0, sizeof w0);
    for (int s = 0; s < 4; s++) {
      wkt_fill_f32(g, N, 100 + (uint64_t)s, -1.0f, 1.0f);
      WKT_OK(wk_optim_step(o1, NULL, w1, g, 0.05));
      WKT_OK(wk_optim_step(o2, NULL, w2, g, 0.05));
    }
    ck_assert_msg(memcmp(w1, w2, sizeof w1) == 0, "config %d: position changes the result",
                  which);
    ck_assert(memcmp(w1, w0, sizeof w1) != 0);
    wk_optim_destroy(o1);
    wk_optim_destroy(o2);
  }
}
END_TEST

/* Steps s..e-1 with one-cycle lr and momentum; "late" parameter 2 is frozen
 * before step 3, so the restored state has parameters at different counts. */
static void run_range(wk_optim *opt, const arena *a, wk_param *params, const wk_schedule *sched,
                      float *w, float *g, int s0, int s1) {
  for (int s = s0; s < s1; s++) {
    params[2].flags = s < 3 ? WK_PARAM_FROZEN : 0;
    double m = 0.0;
    ck_assert(wk_schedule_momentum(sched, s, &m));
    WKT_OK(wk_optim_set_momentum(opt, m));
    step_grad(a, s, g);
    WKT_OK(wk_optim_step(opt, NULL, w, g, wk_schedule_lr(sched, s)));
  }
}

START_TEST(test_state_round_trip) {
  arena a;
  arena_init(&a, 9);
  const size_t n = a.n_elems;
  wk_param *params = a.params;
  const wk_schedule sched = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, 0.05, 10);
  WKT_OK(wk_schedule_check(&sched));
  float *w_full = malloc(n * sizeof(float)), *w_res = malloc(n * sizeof(float));
  float *w_cold = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
  float *saved[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
  float *st1 = malloc(n * sizeof(float)), *st2 = malloc(n * sizeof(float));
  for (int which = 1; which < 3; which++) {
    const wk_optim_config cfg = test_config(which);
    wk_optim *full = NULL, *first = NULL, *resumed = NULL, *cold = NULL;
    /* 10 steps straight */
    memcpy(w_full, a.w, n * sizeof(float));
    WKT_OK(wk_optim_create(&cfg, params, BIG_PARAMS, n, &full));
    run_range(full, &a, params, &sched, w_full, g, 0, 10);
    /* 5 steps, save, restore into a fresh optimizer, 5 more */
    memcpy(w_res, a.w, n * sizeof(float));
    WKT_OK(wk_optim_create(&cfg, params, BIG_PARAMS, n, &first));
    run_range(first, &a, params, &sched, w_res, g, 0, 5);
    int64_t steps[BIG_PARAMS], steps2[BIG_PARAMS];
    WKT_OK(wk_optim_steps_get(first, steps, BIG_PARAMS));
    ck_assert(steps[0] == 5 && steps[2] == 2 && steps[4] == 0);
    const size_t n_state = wk_optim_state_count(first);
    ck_assert_uint_eq(n_state, which == 2 ? 2 : 1);
    for (size_t i = 0; i < n_state; i++)
      WKT_OK(wk_optim_state_get(first, wk_optim_state_name(first, i), saved[i], n));
    wk_optim_destroy(first);
    memcpy(w_cold, w_res, n * sizeof(float));
    WKT_OK(wk_optim_create(&cfg, params, BIG_PARAMS, n, &resumed));
    for (size_t i = 0; i < n_state; i++)
      WKT_OK(wk_optim_state_set(resumed, wk_optim_state_name(resumed, i), saved[i], n));
    WKT_OK(wk_optim_steps_set(resumed, steps, BIG_PARAMS));
    run_range(resumed, &a, params, &sched, w_res, g, 5, 10);
    ck_assert_msg(memcmp(w_res, w_full, n * sizeof(float)) == 0, "config %d: resumed run differs",
                  which);
    for (size_t i = 0; i < n_state; i++) {
      WKT_OK(wk_optim_state_get(full, wk_optim_state_name(full, i), st1, n));
      WKT_OK(wk_optim_state_get(resumed, wk_optim_state_name(resumed, i), st2, n));
      ck_assert(memcmp(st1, st2, n * sizeof(float)) == 0);
    }
    WKT_OK(wk_optim_steps_get(full, steps, BIG_PARAMS));
    WKT_OK(wk_optim_steps_get(resumed, steps2, BIG_PARAMS));
    ck_assert(memcmp(steps, steps2, sizeof steps) == 0);
    /* the check can fail: resuming without the state gives other weights */
    WKT_OK(wk_optim_create(&cfg, params, BIG_PARAMS, n, &cold));
    run_range(cold, &a, params, &sched, w_cold, g, 5, 10);
    ck_assert(memcmp(w_cold, w_full, n * sizeof(float)) != 0);
    wk_optim_destroy(full);
    wk_optim_destroy(resumed);
    wk_optim_destroy(cold);
  }
  free(w_full);
  free(w_res);
  free(w_cold);
  free(g);
  free(saved[0]);
  free(saved[1]);
  free(st1);
  free(st2);
  arena_free(&a);
}
END_TEST

START_TEST(test_nonfinite_gradients) {
  arena a;
  arena_init(&a, 5);
  const size_t n = a.n_elems;
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_ctx *ctxs[2] = {NULL, ctx};
  for (int k = 0; k < 2; k++) {
    float *g = malloc(n * sizeof *g);
    memcpy(g, a.g, n * sizeof *g);
    WKT_OK(wk_grad_check_finite(ctxs[k], a.params, a.n_params, g));
    /* in a frozen parameter and in a gap: not read, so not reported */
    g[a.params[4].offset + 17] = NAN;
    g[a.params[1].offset - 1] = INFINITY;
    WKT_OK(wk_grad_check_finite(ctxs[k], a.params, a.n_params, g));
    /* deep in a large parameter */
    g[a.params[3].offset + 60001] = NAN;
    ck_assert_int_eq(wk_grad_check_finite(ctxs[k], a.params, a.n_params, g), WK_ERR_INVALID_ARG);
    ck_assert_msg(strstr(wk_last_error(), "big.p3") && strstr(wk_last_error(), "element 60001"),
                  "message: %s", wk_last_error());
    /* the first in parameter order is named */
    g[a.params[0].offset + 99999] = -INFINITY;
    ck_assert_int_eq(wk_grad_check_finite(ctxs[k], a.params, a.n_params, g), WK_ERR_INVALID_ARG);
    ck_assert_msg(strstr(wk_last_error(), "big.p0") && strstr(wk_last_error(), "element 99999") &&
                      strstr(wk_last_error(), "inf"),
                  "message: %s", wk_last_error());
    /* clipping refuses, names the element and leaves g as it was */
    float *g2 = malloc(n * sizeof *g2);
    memcpy(g2, g, n * sizeof *g);
    double norm = 0.0;
    ck_assert_int_eq(wk_grad_clip_global_norm(ctxs[k], a.params, a.n_params, g, 1.0, &norm),
                     WK_ERR_INVALID_ARG);
    ck_assert(!isfinite(norm));
    ck_assert_msg(strstr(wk_last_error(), "big.p0"), "message: %s", wk_last_error());
    ck_assert(memcmp(g, g2, n * sizeof *g) == 0);
    free(g2);
    free(g);
  }
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_grad_check_finite(NULL, a.params, a.n_params, NULL));
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_grad_clip_global_norm(NULL, a.params, a.n_params, NULL, 1.0,
                                                         NULL));
  wk_ctx_destroy(ctx);
  arena_free(&a);
}
END_TEST

int main(void) {
  Suite *s = suite_create("optim_state");
  TCase *tc = tcase_create("optim_state");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_thread_count_independence);
  tcase_add_test(tc, test_element_position_independence);
  tcase_add_test(tc, test_state_round_trip);
  tcase_add_test(tc, test_nonfinite_gradients);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
