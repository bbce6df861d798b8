/* test_lrfind.c - the learning-rate range test (src/train/lrfind.h).
 *
 * The main case trains a least-squares problem with whisker's SGD: minimise
 *   f(w) = 1/2 |X w - b|^2,  X = [diag(sqrt(lambda)); 0],  b = [sqrt(lambda) t; r]
 * whose Hessian X^T X = diag(lambda) has largest eigenvalue L, so plain
 * gradient descent converges for every lr < 2/L and diverges above. The finder
 * must stop on the divergence, after 2/L and before lr_max, and suggest a rate
 * below 2/L within a factor 10 of the best fixed rate found by a grid search
 * (fastai's steepest-descent rule lands near a tenth of the rate where the loss
 * bottoms out, and that is below the edge of stability). The other cases check
 * the sweep, the smoothing, the choice of the steepest point, and that
 * degenerate curves give a clear error instead of a number. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "train/lrfind.h"
#include "train/optim.h"

#define BAD(expr) WKT_FAILS(WK_ERR_INVALID_ARG, expr)

/* ---------------------------------------------------------- least squares */

enum { DIM = 64, SPLIT = 40 }; /* two parameters: w[0..40) and w[40..64) */
#define CURV_L 4.0             /* largest eigenvalue */
#define CURV_MU 0.04           /* smallest */
#define RESIDUAL 0.5           /* |r|^2 / 2: the loss no w can remove */

typedef struct lsq {
  double lambda[DIM], target[DIM];
  wk_param params[2];
} lsq;

static void lsq_init(lsq *p) {
  for (int i = 0; i < DIM; i++) {
    p->lambda[i] = CURV_MU * pow(CURV_L / CURV_MU, (double)i / (DIM - 1));
    p->target[i] = 1.0 + 0.5 * sin((double)i);
  }
  memset(p->params, 0, sizeof p->params);
  p->params[0] = (wk_param){.name = "lsq.a", .ndim = 1, .shape = {SPLIT}, .offset = 0,
                            .numel = SPLIT, .lr_scale = 1.0f};
  p->params[1] = (wk_param){.name = "lsq.b", .ndim = 1, .shape = {DIM - SPLIT},
                            .offset = SPLIT, .numel = DIM - SPLIT, .lr_scale = 1.0f};
}

/* f(w), and its gradient into g. */
static double lsq_loss(const lsq *p, const float *w, float *g) {
  double f = RESIDUAL;
  for (int i = 0; i < DIM; i++) {
    const double d = (double)w[i] - p->target[i];
    f += 0.5 * p->lambda[i] * d * d;
    g[i] = (float)(p->lambda[i] * d);
  }
  return f;
}

static wk_optim *lsq_sgd(const lsq *p) {
  wk_optim_config c = wk_optim_config_default(WK_OPTIM_SGD);
  c.momentum = 0.0; /* plain gradient descent: stable exactly for lr < 2/L */
  wk_optim *o = NULL;
  WKT_OK(wk_optim_create(&c, p->params, 2, DIM, &o));
  return o;
}

/* The loss after `steps` of gradient descent at a fixed rate from w = 0. */
static double lsq_train(const lsq *p, double lr, int steps) {
  float w[DIM] = {0}, g[DIM];
  wk_optim *o = lsq_sgd(p);
  for (int s = 0; s < steps; s++) {
    lsq_loss(p, w, g);
    WKT_OK(wk_optim_step(o, NULL, w, g, lr));
  }
  wk_optim_destroy(o);
  return lsq_loss(p, w, g);
}

START_TEST(test_finder_on_least_squares) {
  lsq p;
  lsq_init(&p);
  const double edge = 2.0 / CURV_L;
  /* the problem is what it claims: just below the edge converges, above diverges */
  ck_assert(lsq_train(&p, 0.95 * edge, 300) < RESIDUAL + 1e-3);
  ck_assert(lsq_train(&p, 1.05 * edge, 300) > 1e3);

  wk_lrfind_config cfg = wk_lrfind_config_default();
  cfg.lr_min = 1e-4;
  cfg.lr_max = 100.0;
  cfg.n_steps = 100;
  wk_lrfind *f = NULL;
  WKT_OK(wk_lrfind_create(&cfg, &f));
  float w[DIM] = {0}, g[DIM];
  wk_optim *o = lsq_sgd(&p);
  while (wk_lrfind_running(f)) {
    const double lr = wk_lrfind_lr(f);
    const double loss = lsq_loss(&p, w, g);
    if (!wk_lrfind_observe(f, loss)) break;
    WKT_OK(wk_optim_step(o, NULL, w, g, lr));
  }
  wk_optim_destroy(o);
  const size_t n = wk_lrfind_n_points(f);
  const double *lrs = wk_lrfind_lrs(f);
  ck_assert_int_eq(wk_lrfind_get_state(f), WK_LRFIND_DIVERGED);
  ck_assert_msg(lrs[n - 1] > edge && lrs[n - 1] < cfg.lr_max,
                "stopped at lr %g: 2/L = %g, lr_max %g", lrs[n - 1], edge, cfg.lr_max);
  ck_assert_uint_lt(n, (size_t)cfg.n_steps);

  double suggested = 0.0;
  size_t at = 0;
  WKT_OK(wk_lrfind_suggest(f, &suggested, &at));
  ck_assert(suggested == lrs[at]);
  /* the best fixed rate for 100 steps, on a grid up to the edge */
  double best_lr = 0.0, best_loss = INFINITY;
  for (int k = 0; k < 80; k++) {
    const double lr = 1e-3 * pow(edge / 1e-3, k / 80.0);
    const double loss = lsq_train(&p, lr, 100);
    if (loss < best_loss) {
      best_loss = loss;
      best_lr = lr;
    }
  }
  ck_assert_msg(suggested < edge && suggested >= best_lr / 10.0 && suggested <= best_lr,
                "suggested %g; best fixed rate %g; 2/L = %g", suggested, best_lr, edge);
  /* and training at the suggestion makes real progress */
  ck_assert(lsq_train(&p, suggested, 100) < lsq_train(&p, 0.0, 100) - 1.0);
  wk_lrfind_destroy(f);
}
END_TEST

/* ---------------------------------------------------------- the machinery */

static wk_lrfind *make_finder(double lr_min, double lr_max, int64_t n, double beta) {
  wk_lrfind_config c = wk_lrfind_config_default();
  c.lr_min = lr_min;
  c.lr_max = lr_max;
  c.n_steps = n;
  c.smooth_beta = beta;
  wk_lrfind *f = NULL;
  WKT_OK(wk_lrfind_create(&c, &f));
  return f;
}

START_TEST(test_sweep_and_smoothing) {
  wk_lrfind *f = make_finder(1e-3, 10.0, 5, 0.98);
  const double losses[5] = {2.0, 1.0, 3.0, 0.5, 0.25};
  double avg = 0.0;
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(wk_lrfind_get_state(f), WK_LRFIND_RUNNING);
    const double want_lr = 1e-3 * pow(1e4, i / 4.0);
    ck_assert_msg(fabs(wk_lrfind_lr(f) - want_lr) <= 1e-12 * want_lr, "lr %d", i);
    ck_assert_int_eq(wk_lrfind_observe(f, losses[i]), i < 4);
    avg = 0.98 * avg + 0.02 * losses[i];
    const double want = avg / (1.0 - pow(0.98, i + 1));
    ck_assert_msg(fabs(wk_lrfind_smoothed(f)[i] - want) <= 1e-12, "smoothed %d", i);
    ck_assert(wk_lrfind_losses(f)[i] == losses[i]);
  }
  ck_assert_int_eq(wk_lrfind_get_state(f), WK_LRFIND_DONE);
  ck_assert_uint_eq(wk_lrfind_n_points(f), 5);
  ck_assert(wk_lrfind_lrs(f)[0] == 1e-3 && fabs(wk_lrfind_lrs(f)[4] - 10.0) < 1e-12);
  ck_assert(wk_lrfind_smoothed(f)[0] == 2.0); /* bias correction: the first point is the loss */
  ck_assert_str_eq(wk_lrfind_state_name(WK_LRFIND_DIVERGED), "diverged");
  wk_lrfind_destroy(f);
}
END_TEST

/* Without smoothing, a loss falling fastest (against log lr) at lr = 0.1 is
 * suggested exactly there: 121 rates from 1e-4 to 1e2, 20 per decade. */
START_TEST(test_suggest_picks_steepest_descent) {
  wk_lrfind *f = make_finder(1e-4, 1e2, 121, 0.0);
  while (wk_lrfind_running(f)) {
    const double x = log10(wk_lrfind_lr(f));
    wk_lrfind_observe(f, 3.0 - tanh(2.0 * (x + 1.0)) + 0.01 * (x + 4.0));
  }
  double lr = 0.0;
  size_t at = 0;
  WKT_OK(wk_lrfind_suggest(f, &lr, &at));
  ck_assert_uint_eq(at, 60);
  ck_assert_msg(fabs(lr - 0.1) < 1e-12, "suggested %g", lr);
  wk_lrfind_destroy(f);
}
END_TEST

START_TEST(test_degenerate_curves) {
  double lr = -1.0;
  /* explodes at once: stops after 2 points, too few to suggest from */
  wk_lrfind *f = make_finder(1e-5, 1.0, 100, 0.98);
  ck_assert(wk_lrfind_observe(f, 1.0));
  ck_assert(!wk_lrfind_observe(f, 10.0));
  ck_assert_int_eq(wk_lrfind_get_state(f), WK_LRFIND_DIVERGED);
  ck_assert_uint_eq(wk_lrfind_n_points(f), 2);
  BAD(wk_lrfind_suggest(f, &lr, NULL));
  ck_assert_msg(strstr(wk_last_error(), "only 2 points"), "%s", wk_last_error());
  wk_lrfind_destroy(f);
  /* NaN: stops, the NaN is not a point of the curve */
  f = make_finder(1e-5, 1.0, 100, 0.98);
  for (int i = 0; i < 3; i++) ck_assert(wk_lrfind_observe(f, 1.0 - 0.1 * i));
  ck_assert(!wk_lrfind_observe(f, NAN));
  ck_assert_int_eq(wk_lrfind_get_state(f), WK_LRFIND_NONFINITE);
  ck_assert_uint_eq(wk_lrfind_n_points(f), 3);
  BAD(wk_lrfind_suggest(f, &lr, NULL));
  wk_lrfind_destroy(f);
  /* rising, flat, and falling by less than 1%: no descent to suggest from */
  const double slopes[3] = {1e-3, 0.0, -4e-5};
  for (int k = 0; k < 3; k++) {
    f = make_finder(1e-5, 1.0, 100, 0.98);
    for (int i = 0; wk_lrfind_running(f); i++) wk_lrfind_observe(f, 1.0 + slopes[k] * i);
    ck_assert_int_eq(wk_lrfind_get_state(f), WK_LRFIND_DONE);
    BAD(wk_lrfind_suggest(f, &lr, NULL));
    ck_assert_msg(strstr(wk_last_error(), "never falls"), "%s", wk_last_error());
    wk_lrfind_destroy(f);
  }
  ck_assert(lr == -1.0); /* no failed call wrote a rate */
  /* a 5% fall over the same sweep is enough (the smoothed curve, lagging, falls ~2.5%) */
  f = make_finder(1e-5, 1.0, 100, 0.98);
  for (int i = 0; wk_lrfind_running(f); i++) wk_lrfind_observe(f, 1.0 - 5e-4 * i);
  WKT_OK(wk_lrfind_suggest(f, &lr, NULL));
  wk_lrfind_destroy(f);
}
END_TEST

START_TEST(test_invalid_config) {
  wk_lrfind *f = NULL;
  const wk_lrfind_config d = wk_lrfind_config_default();
  ck_assert(d.lr_min == 1e-7 && d.lr_max == 10.0 && d.n_steps == 100 && d.smooth_beta == 0.98 &&
            d.diverge_factor == 4.0);
  wk_lrfind_config c = d;
  c.lr_min = 0.0;
  BAD(wk_lrfind_create(&c, &f));
  c = d;
  c.lr_max = c.lr_min;
  BAD(wk_lrfind_create(&c, &f));
  c = d;
  c.lr_max = INFINITY;
  BAD(wk_lrfind_create(&c, &f));
  c = d;
  c.n_steps = 1;
  BAD(wk_lrfind_create(&c, &f));
  c = d;
  c.smooth_beta = 1.0;
  BAD(wk_lrfind_create(&c, &f));
  c = d;
  c.diverge_factor = 1.0;
  BAD(wk_lrfind_create(&c, &f));
  c = d;
  c.diverge_factor = NAN;
  BAD(wk_lrfind_create(&c, &f));
  ck_assert_ptr_null(f);
}
END_TEST

int main(void) {
  Suite *s = suite_create("lrfind");
  TCase *tc = tcase_create("lrfind");
  tcase_add_test(tc, test_finder_on_least_squares);
  tcase_add_test(tc, test_sweep_and_smoothing);
  tcase_add_test(tc, test_suggest_picks_steepest_descent);
  tcase_add_test(tc, test_degenerate_curves);
  tcase_add_test(tc, test_invalid_config);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
