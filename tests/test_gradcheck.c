/* test_gradcheck.c - finite-difference gradient checks in double precision.
 *
 * The reference ops are compiled for double too (ref_f64.c, the same source as
 * the float oracle). For each op and each input, with a random projection r of
 * the output, L = sum(r * y): the analytic gradient (backward with dy = r) must
 * match the central difference (L(x + h) - L(x - h)) / 2h. With h = 1e-6 in
 * double the difference is accurate to ~1e-9 relative; the tolerance 1e-6 of
 * the largest gradient catches any real mistake (a wrong sign, a missing term,
 * an off-by-one window) by orders of magnitude. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ref.h"
#include "test_util.h"

typedef struct gc_case gc_case;
typedef void (*gc_fwd)(const gc_case *c, double *const *in, double *out);
typedef void (*gc_bwd)(const gc_case *c, double *const *in, const double *dout,
                       double *const *din);

struct gc_case {
  const char *name;
  int n_in;
  int64_t in_n[3];
  int64_t out_n;
  gc_fwd fwd;
  gc_bwd bwd;
  const void *cfg;
  double avoid_lo, avoid_hi; /* keep inputs away from kinks in this band (if lo < hi) */
};

static double gc_loss(const gc_case *c, double *const *in, const double *r, double *out) {
  c->fwd(c, in, out);
  double l = 0;
  for (int64_t i = 0; i < c->out_n; i++) l += r[i] * out[i];
  return l;
}

/* Returns the number of elements whose analytic and numeric gradients differ;
 * the first few are printed. */
static int gc_mismatches(const gc_case *c, uint64_t seed) {
  int bad = 0;
  double *in[3] = {0}, *din[3] = {0};
  double *r = malloc((size_t)c->out_n * sizeof *r), *out = malloc((size_t)c->out_n * sizeof *out);
  ck_assert(r && out);
  wkt_fill_f64(r, c->out_n, seed + 99, -1, 1);
  for (int t = 0; t < c->n_in; t++) {
    in[t] = malloc((size_t)c->in_n[t] * sizeof(double));
    din[t] = calloc((size_t)c->in_n[t], sizeof(double));
    ck_assert(in[t] && din[t]);
    wkt_fill_f64(in[t], c->in_n[t], seed + (uint64_t)t, -1, 1);
    if (t == 1 && c->n_in == 3 && !strncmp(c->name, "batchnorm", 9))
      for (int64_t i = 0; i < c->in_n[t]; i++) in[t][i] += 1.5; /* gamma away from 0 */
    if (c->avoid_lo < c->avoid_hi)
      for (int64_t i = 0; i < c->in_n[t]; i++) {
        double v = in[t][i] * 4.0; /* spread over [-4, 4] */
        for (double k = c->avoid_lo; k <= c->avoid_hi; k += 6.0)
          if (fabs(v - k) < 0.05) v = k + 0.1;
        in[t][i] = v;
      }
  }
  c->bwd(c, in, r, din);
  const double h = 1e-6;
  for (int t = 0; t < c->n_in; t++) {
    double max_g = 1e-3;
    for (int64_t i = 0; i < c->in_n[t]; i++) max_g = fmax(max_g, fabs(din[t][i]));
    /* every element when small, else an even sample of 97 */
    const int64_t step = c->in_n[t] <= 200 ? 1 : c->in_n[t] / 97;
    for (int64_t i = 0; i < c->in_n[t]; i += step) {
      const double keep = in[t][i];
      in[t][i] = keep + h;
      const double lp = gc_loss(c, in, r, out);
      in[t][i] = keep - h;
      const double lm = gc_loss(c, in, r, out);
      in[t][i] = keep;
      const double num = (lp - lm) / (2 * h);
      if (!(fabs(num - din[t][i]) <= 1e-6 * max_g) && bad++ < 3)
        fprintf(stderr, "%s: input %d element %lld: analytic %.10g, numeric %.10g\n", c->name,
                t, (long long)i, din[t][i], num);
    }
  }
  for (int t = 0; t < c->n_in; t++) free(in[t]), free(din[t]);
  free(r), free(out);
  return bad;
}

static void gc_run(const gc_case *c, uint64_t seed) {
  int bad = gc_mismatches(c, seed);
  ck_assert_msg(bad == 0, "%s: %d gradient elements differ from finite differences", c->name, bad);
}

/* ------------------------------------------------------------------ op adapters */

static void conv_fwd(const gc_case *c, double *const *in, double *out) {
  wk_conv2d_forward_ref_f64(c->cfg, in[0], in[1], in[2], out);
}
static void conv_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  wk_conv2d_backward_ref_f64(c->cfg, in[0], in[1], d, din[0], din[1], din[2]);
}

typedef struct {
  int64_t m, c;
} bn_cfg;

static void bn_train_fwd(const gc_case *c, double *const *in, double *out) {
  const bn_cfg *b = c->cfg;
  double rm[64] = {0}, rv[64] = {0}, sm[64], si[64];
  wk_batchnorm_forward_train_ref_f64(b->m, b->c, 1e-5, 0.1, in[0], in[1], in[2], rm, rv, sm, si, out);
}
static void bn_train_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  const bn_cfg *b = c->cfg;
  double rm[64] = {0}, rv[64] = {0}, sm[64], si[64];
  double *y = malloc((size_t)(b->m * b->c) * sizeof *y);
  wk_batchnorm_forward_train_ref_f64(b->m, b->c, 1e-5, 0.1, in[0], in[1], in[2], rm, rv, sm, si, y);
  wk_batchnorm_backward_ref_f64(b->m, b->c, false, in[0], in[1], sm, si, d, din[0], din[1], din[2]);
  free(y);
}
/* frozen statistics: mean 0.1 * (ch + 1), var 0.5 + ch */
static void bn_frozen_stats(int64_t c, double *mean, double *var, double *invstd) {
  for (int64_t ch = 0; ch < c; ch++) {
    mean[ch] = 0.1 * (double)(ch + 1);
    var[ch] = 0.5 + (double)ch;
    invstd[ch] = 1.0 / sqrt(var[ch] + 1e-5);
  }
}
static void bn_frozen_fwd(const gc_case *c, double *const *in, double *out) {
  const bn_cfg *b = c->cfg;
  double mean[64], var[64], is[64];
  bn_frozen_stats(b->c, mean, var, is);
  wk_batchnorm_forward_infer_ref_f64(b->m, b->c, 1e-5, in[0], in[1], in[2], mean, var, out);
}
static void bn_frozen_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  const bn_cfg *b = c->cfg;
  double mean[64], var[64], is[64];
  bn_frozen_stats(b->c, mean, var, is);
  wk_batchnorm_backward_ref_f64(b->m, b->c, true, in[0], in[1], mean, is, d, din[0], din[1], din[2]);
}

static void relu_fwd(const gc_case *c, double *const *in, double *out) {
  wk_act_forward_ref_f64(*(const wk_act *)c->cfg, c->in_n[0], in[0], out);
}
static void relu_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  wk_act_backward_ref_f64(*(const wk_act *)c->cfg, c->in_n[0], in[0], d, din[0]);
}

static void maxpool_fwd(const gc_case *c, double *const *in, double *out) {
  wk_maxpool2d_forward_ref_f64(c->cfg, in[0], out, NULL);
}
static void maxpool_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  int32_t *am = malloc((size_t)c->out_n * sizeof *am);
  double *y = malloc((size_t)c->out_n * sizeof *y);
  wk_maxpool2d_forward_ref_f64(c->cfg, in[0], y, am);
  wk_maxpool2d_backward_ref_f64(c->cfg, am, d, din[0]);
  free(am), free(y);
}
static void avgpool_fwd(const gc_case *c, double *const *in, double *out) {
  wk_avgpool2d_forward_ref_f64(c->cfg, in[0], out);
}
static void avgpool_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  wk_avgpool2d_backward_ref_f64(c->cfg, d, din[0]);
}

typedef struct {
  int64_t n, hw, c;
} gap_cfg;
static void gap_fwd(const gc_case *c, double *const *in, double *out) {
  const gap_cfg *g = c->cfg;
  wk_global_avgpool_forward_ref_f64(g->n, g->hw, g->c, in[0], out);
}
static void gap_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  const gap_cfg *g = c->cfg;
  wk_global_avgpool_backward_ref_f64(g->n, g->hw, g->c, d, din[0]);
}

typedef struct {
  int64_t n, in, out;
} lin_cfg;
static void linear_fwd(const gc_case *c, double *const *in, double *out) {
  const lin_cfg *l = c->cfg;
  wk_linear_forward_ref_f64(l->n, l->in, l->out, in[0], in[1], in[2], out);
}
static void linear_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  const lin_cfg *l = c->cfg;
  wk_linear_backward_ref_f64(l->n, l->in, l->out, in[0], in[1], d, din[0], din[1], din[2]);
}

static void add_fwd(const gc_case *c, double *const *in, double *out) {
  wk_add_forward_ref_f64(c->out_n, in[0], in[1], out);
}
static void add_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  /* the backward of add is the identity into both inputs (wk_add_backward) */
  memcpy(din[0], d, (size_t)c->out_n * sizeof *d);
  memcpy(din[1], d, (size_t)c->out_n * sizeof *d);
}

static void dropout_fwd(const gc_case *c, double *const *in, double *out) {
  wk_dropout_ref_f64(0.4, 77, 3, 0, c->out_n, in[0], out);
}
static void dropout_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  wk_dropout_ref_f64(0.4, 77, 3, 0, c->out_n, d, din[0]);
}

typedef struct {
  int64_t n, k;
  double smoothing;
  int32_t labels[8];
} xent_cfg;
static void xent_fwd(const gc_case *c, double *const *in, double *out) {
  const xent_cfg *x = c->cfg;
  double sum;
  wk_softmax_xent_forward_ref_f64(x->n, x->k, x->smoothing, in[0], x->labels, NULL, &sum);
  out[0] = sum / (double)x->n;
}
static void xent_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  const xent_cfg *x = c->cfg;
  double sum, *probs = malloc((size_t)(x->n * x->k) * sizeof *probs);
  wk_softmax_xent_forward_ref_f64(x->n, x->k, x->smoothing, in[0], x->labels, probs, &sum);
  wk_softmax_xent_backward_ref_f64(x->n, x->k, x->smoothing, x->n, probs, x->labels, d[0], din[0]);
  free(probs);
}

/* ------------------------------------------------------------------ cases */

static void conv_case_run(const char *name, const wk_conv2d_params *p, int64_t n, int64_t h,
                          int64_t w, int64_t c, int64_t o, int64_t k, uint64_t seed) {
  wk_conv2d_geom g;
  ck_assert_int_eq(wk_conv2d_geom_make(p, n, h, w, c, o, k, k, &g), WK_OK);
  gc_case gc = {name, 3, {n * h * w * c, o * k * k * (c / p->groups), o}, n * g.oh * g.ow * o,
                conv_fwd, conv_bwd, &g, 0, 0};
  gc_run(&gc, seed);
}

START_TEST(test_gradcheck_conv2d) {
  wk_conv2d_params p = wk_conv2d_params_make(1, 1, 1);
  conv_case_run("conv 3x3 pad 1", &p, 2, 5, 4, 3, 4, 3, 1);
  p = wk_conv2d_params_make(2, 1, 1);
  conv_case_run("conv 3x3 stride 2", &p, 1, 7, 6, 2, 3, 3, 2);
  p = wk_conv2d_params_make(1, 1, 4);
  conv_case_run("conv depthwise", &p, 2, 5, 5, 4, 4, 3, 3);
  p = wk_conv2d_params_make(2, 1, 2);
  conv_case_run("conv grouped stride 2", &p, 1, 6, 7, 4, 6, 3, 4);
  p = (wk_conv2d_params){.stride_h = 1, .stride_w = 2, .pad_top = 2, .pad_left = 1,
                         .pad_bottom = 0, .pad_right = 3, .dilation_h = 2, .dilation_w = 1,
                         .groups = 1};
  conv_case_run("conv dilated asymmetric", &p, 1, 7, 8, 2, 3, 3, 5);
}
END_TEST

START_TEST(test_gradcheck_batchnorm) {
  bn_cfg b = {12, 5};
  gc_case train = {"batchnorm train", 3, {60, 5, 5}, 60, bn_train_fwd, bn_train_bwd, &b, 0, 0};
  gc_run(&train, 10);
  gc_case frozen = {"batchnorm frozen", 3, {60, 5, 5}, 60, bn_frozen_fwd, bn_frozen_bwd, &b, 0, 0};
  gc_run(&frozen, 11);
}
END_TEST

START_TEST(test_gradcheck_activations) {
  wk_act relu = WK_ACT_RELU, relu6 = WK_ACT_RELU6;
  gc_case a = {"relu", 1, {150}, 150, relu_fwd, relu_bwd, &relu, 0, 6};
  gc_run(&a, 20);
  gc_case b = {"relu6", 1, {150}, 150, relu_fwd, relu_bwd, &relu6, 0, 6};
  gc_run(&b, 21);
}
END_TEST

START_TEST(test_gradcheck_pooling) {
  wk_pool2d_geom g;
  wk_pool2d_params p = wk_pool2d_params_make(3, 2, 1);
  ck_assert_int_eq(wk_pool2d_geom_make(&p, 2, 7, 6, 3, &g), WK_OK);
  gc_case mx = {"max pool 3x3 s2 p1", 1, {2 * 7 * 6 * 3}, 2 * g.oh * g.ow * 3, maxpool_fwd, maxpool_bwd, &g, 0, 0};
  gc_run(&mx, 30);
  gc_case av = {"avg pool 3x3 s2 p1", 1, {2 * 7 * 6 * 3}, 2 * g.oh * g.ow * 3, avgpool_fwd, avgpool_bwd, &g, 0, 0};
  gc_run(&av, 31);
  wk_pool2d_geom g2 = g;
  g2.count_include_pad = false;
  gc_case av2 = {"avg pool exclude pad", 1, {2 * 7 * 6 * 3}, 2 * g.oh * g.ow * 3, avgpool_fwd, avgpool_bwd, &g2, 0, 0};
  gc_run(&av2, 32);
  gap_cfg gp = {2, 12, 5};
  gc_case gap = {"global avg pool", 1, {120}, 10, gap_fwd, gap_bwd, &gp, 0, 0};
  gc_run(&gap, 33);
}
END_TEST

START_TEST(test_gradcheck_linear_add_dropout_xent) {
  lin_cfg l = {3, 7, 4};
  gc_case lin = {"linear", 3, {21, 28, 4}, 12, linear_fwd, linear_bwd, &l, 0, 0};
  gc_run(&lin, 40);
  gc_case add = {"add", 2, {50, 50}, 50, add_fwd, add_bwd, NULL, 0, 0};
  gc_run(&add, 41);
  gc_case drop = {"dropout", 1, {80}, 80, dropout_fwd, dropout_bwd, NULL, 0, 0};
  gc_run(&drop, 42);
  for (int s = 0; s < 2; s++) {
    xent_cfg x = {4, 6, s ? 0.1 : 0.0, {0, 5, 2, 2}};
    gc_case xe = {s ? "xent smoothing 0.1" : "xent", 1, {24}, 1, xent_fwd, xent_bwd, &x, 0, 0};
    gc_run(&xe, 43 + (uint64_t)s);
  }
}
END_TEST

/* The check can fail: a deliberately wrong backward (relu passing every
 * gradient) must be caught, or the whole suite proves nothing. */
static void wrong_relu_bwd(const gc_case *c, double *const *in, const double *d, double *const *din) {
  memcpy(din[0], d, (size_t)c->in_n[0] * sizeof *d);
}
START_TEST(test_gradcheck_catches_a_wrong_gradient) {
  wk_act relu = WK_ACT_RELU;
  gc_case bad = {"wrong relu", 1, {50}, 50, relu_fwd, wrong_relu_bwd, &relu, 0, 6};
  ck_assert_int_gt(gc_mismatches(&bad, 50), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("gradcheck");
  TCase *tc = tcase_create("f64");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_gradcheck_conv2d);
  tcase_add_test(tc, test_gradcheck_batchnorm);
  tcase_add_test(tc, test_gradcheck_activations);
  tcase_add_test(tc, test_gradcheck_pooling);
  tcase_add_test(tc, test_gradcheck_linear_add_dropout_xent);
  suite_add_tcase(s, tc);
  tcase_add_test(tc, test_gradcheck_catches_a_wrong_gradient);
  return wkt_run_suite(s);
}
