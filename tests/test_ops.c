/* test_ops.c - every op case on every available implementation against the
 * reference (ggml test-backend-ops style), plus known values for the reference
 * itself and the error paths.
 *
 * Error measure: max |impl - ref| / max |ref| over the whole output (wkt_rel_err).
 * Tolerances, and why:
 *   conv2d, linear, batchnorm  1e-5: oneDNN accumulates in float (with a
 *       different summation order), the reference in double; over the <= ~600-term
 *       sums here float rounding stays well below 1e-5 of the largest output.
 *   average pooling           1e-6: same kernel, float result of a double sum.
 *   everything else           exact: the fast path runs the reference kernel on
 *       independent slices, so any difference at all is a bug. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/bn_act.h"
#include "ops/plan.h"
#include "ops/ref.h"
#include "ops/wino.h"
#include "test_util.h"

/* The implementations compared with the reference. The CUDA backend adds itself
 * here once its ops exist (its own suite, tests/test_gpu_ops.c, runs on a GPU). */
static const wk_impl wk_test_impls[] = {WK_IMPL_CPU};
enum { WK_N_TEST_IMPLS = sizeof wk_test_impls / sizeof wk_test_impls[0] };

static wk_tensor rand_tensor(int ndim, const int64_t *shape, uint64_t seed, float lo, float hi) {
  wk_tensor t = wkt_tensor(WK_F32, ndim, shape);
  wkt_fill_f32(t.data, wk_tensor_numel(&t), seed, lo, hi);
  return t;
}

static wk_tensor zeros_like(const wk_tensor *t) { return wkt_tensor(t->dtype, t->ndim, t->shape); }

static void expect_close(const char *what, const char *case_name, wk_impl impl,
                         const wk_tensor *got, const wk_tensor *ref, double tol) {
  double err = wkt_rel_err(got->data, ref->data, wk_tensor_numel(ref), 1e-6);
  ck_assert_msg(err <= tol, "%s [%s] on %s: relative error %.3g > %.3g", what, case_name,
                wk_impl_name(impl), err, tol);
}

static void expect_ok(wk_status s, const char *what) {
  ck_assert_msg(s == WK_OK, "%s: %s (%s)", what, wk_status_name(s), wk_last_error());
}

/* ------------------------------------------------------------------ conv2d */

typedef struct {
  const char *name;
  int64_t n, h, w, c, o, kh, kw;
  wk_conv2d_params p;
  bool bias;
} conv_case;

#define P(sh, sw, pt, pl, pb, pr, dh, dw, g) \
  {.stride_h = sh, .stride_w = sw, .pad_top = pt, .pad_left = pl, .pad_bottom = pb, \
   .pad_right = pr, .dilation_h = dh, .dilation_w = dw, .groups = g}

static const conv_case conv_cases[] = {
    {"1x1", 2, 5, 5, 8, 16, 1, 1, P(1, 1, 0, 0, 0, 0, 1, 1, 1), false},
    {"3x3 pad 1 bias", 2, 7, 7, 3, 5, 3, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 1), true},
    {"3x3 stride 2 odd", 1, 9, 11, 6, 10, 3, 3, P(2, 2, 1, 1, 1, 1, 1, 1, 1), false},
    {"grouped 3", 2, 6, 6, 12, 9, 3, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 3), true},
    {"depthwise", 2, 8, 8, 17, 17, 3, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 17), false},
    {"depthwise stride 2", 1, 9, 9, 32, 32, 3, 3, P(2, 2, 1, 1, 1, 1, 1, 1, 32), true},
    {"depthwise multiplier 2", 2, 5, 5, 4, 8, 3, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 4), false},
    {"dilation 2", 2, 9, 9, 4, 6, 3, 3, P(1, 1, 2, 2, 2, 2, 2, 2, 1), false},
    {"dilation 2x3 stride 2", 1, 11, 13, 5, 7, 3, 3, P(2, 2, 2, 3, 2, 3, 2, 3, 1), true},
    {"asymmetric padding", 1, 6, 7, 3, 4, 3, 3, P(1, 1, 0, 1, 2, 1, 1, 1, 1), false},
    {"7x7 stride 2 stem", 1, 23, 23, 3, 8, 7, 7, P(2, 2, 3, 3, 3, 3, 1, 1, 1), false},
    {"batch 1 odd channels", 1, 4, 4, 33, 65, 3, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 1), true},
    {"3x5 kernel stride 1x2", 3, 7, 9, 5, 3, 3, 5, P(1, 2, 1, 2, 1, 2, 1, 1, 1), false},
    {"1x1 stride 2 downsample", 2, 7, 7, 16, 24, 1, 1, P(2, 2, 0, 0, 0, 0, 1, 1, 1), false},
    {"no padding 1x1 output", 2, 3, 3, 7, 5, 3, 3, P(1, 1, 0, 0, 0, 0, 1, 1, 1), true},
};

START_TEST(test_conv2d_vs_ref) {
  const conv_case *cc = &conv_cases[_i];
  wk_conv2d_geom g;
  expect_ok(wk_conv2d_geom_make(&cc->p, cc->n, cc->h, cc->w, cc->c, cc->o, cc->kh, cc->kw, &g),
            cc->name);
  const int64_t xs[4] = {g.n, g.h, g.w, g.c}, ws[4] = {g.o, g.kh, g.kw, g.c / g.groups};
  const int64_t ys[4] = {g.n, g.oh, g.ow, g.o};
  wk_tensor x = rand_tensor(4, xs, 1 + (uint64_t)_i, -1, 1);
  wk_tensor w = rand_tensor(4, ws, 100 + (uint64_t)_i, -1, 1);
  wk_tensor b = rand_tensor(1, &g.o, 200 + (uint64_t)_i, -1, 1);
  wk_tensor dy = rand_tensor(4, ys, 300 + (uint64_t)_i, -1, 1);
  wk_tensor *bp = cc->bias ? &b : NULL;
  wk_ctx *ref = wkt_ctx(WK_IMPL_REF, 1);
  wk_tensor y0 = wkt_tensor(WK_F32, 4, ys), dx0 = zeros_like(&x), dw0 = zeros_like(&w),
            db0 = zeros_like(&b);
  expect_ok(wk_conv2d_forward(ref, &cc->p, &x, &w, bp, &y0), "ref forward");
  expect_ok(wk_conv2d_backward(ref, &cc->p, &x, &w, &dy, &dx0, &dw0, cc->bias ? &db0 : NULL),
            "ref backward");
  for (int k = 0; k < WK_N_TEST_IMPLS; k++) {
    wk_ctx *ctx = wkt_ctx(wk_test_impls[k], 2);
    wk_tensor y1 = wkt_tensor(WK_F32, 4, ys), dx1 = zeros_like(&x), dw1 = zeros_like(&w),
              db1 = zeros_like(&b);
    expect_ok(wk_conv2d_forward(ctx, &cc->p, &x, &w, bp, &y1), "forward");
    expect_close("conv2d forward", cc->name, ctx->impl, &y1, &y0, 1e-5);
    /* all gradients at once, then each alone (the fast path has separate routes) */
    expect_ok(wk_conv2d_backward(ctx, &cc->p, &x, &w, &dy, &dx1, &dw1, cc->bias ? &db1 : NULL),
              "backward");
    expect_close("conv2d backward data", cc->name, ctx->impl, &dx1, &dx0, 1e-5);
    expect_close("conv2d backward weights", cc->name, ctx->impl, &dw1, &dw0, 1e-5);
    if (cc->bias) expect_close("conv2d backward bias", cc->name, ctx->impl, &db1, &db0, 1e-5);
    memset(dx1.data, 0, wk_tensor_nbytes(&dx1));
    expect_ok(wk_conv2d_backward(ctx, &cc->p, &x, &w, &dy, &dx1, NULL, NULL), "backward dx only");
    expect_close("conv2d backward data only", cc->name, ctx->impl, &dx1, &dx0, 1e-5);
    memset(dw1.data, 0, wk_tensor_nbytes(&dw1));
    expect_ok(wk_conv2d_backward(ctx, &cc->p, &x, &w, &dy, NULL, &dw1, NULL), "backward dw only");
    expect_close("conv2d backward weights only", cc->name, ctx->impl, &dw1, &dw0, 1e-5);
    if (cc->bias) {
      memset(db1.data, 0, wk_tensor_nbytes(&db1));
      expect_ok(wk_conv2d_backward(ctx, &cc->p, &x, &w, &dy, NULL, NULL, &db1), "backward db only");
      expect_close("conv2d backward bias only", cc->name, ctx->impl, &db1, &db0, 1e-5);
    }
    wk_tensor_free(&y1), wk_tensor_free(&dx1), wk_tensor_free(&dw1), wk_tensor_free(&db1);
    wk_ctx_destroy(ctx);
  }
  wk_tensor_free(&y0), wk_tensor_free(&dx0), wk_tensor_free(&dw0), wk_tensor_free(&db0);
  wk_tensor_free(&x), wk_tensor_free(&w), wk_tensor_free(&b), wk_tensor_free(&dy);
  wk_ctx_destroy(ref);
}
END_TEST

/* Inference plans of 3x3 stride-1 convolutions run whisker's own Winograd
 * (ops/wino.h) on x86-64 CPUs with AVX-512: F(2x2) and F(4x4), each forced on
 * every shape, with the activation fused, against the reference conv + bias +
 * activation. Shapes cover a channel count that is not a multiple of 16 (the
 * masked tail), images smaller than a tile and not a multiple of it, and
 * batches. Tolerance 1e-5 for F(2x2) as for oneDNN (measured up to 1e-6);
 * F(4x4)'s transforms multiply by up to 8 on the way out and 5 on the way
 * in, so its rounding is larger: 5e-5 (measured up to 7.6e-6). Also: the
 * weights cache (a version kept, a new one, version 0), 1 and 3 threads and
 * chunks of 3 tiles giving the same bits, and no bias. */
typedef struct {
  const char *name;
  int64_t n, h, w, c, o;
} wino_case;

static const wino_case wino_cases[] = {
    {"7x7 c64", 1, 7, 7, 64, 64},     {"14x14 c32 o128", 1, 14, 14, 32, 128},
    {"odd 5x9 c24", 2, 5, 9, 24, 64}, {"odd 13x11 c40 batch 3", 3, 13, 11, 40, 128},
    {"1x1 image", 1, 1, 1, 16, 64},   {"3x2 image c300", 1, 3, 2, 300, 64},
};

/* Whether whisker's Winograd runs here at all (ops/wino.h decides). */
static bool wino_available(void) {
  const wk_conv2d_params cp = P(1, 1, 1, 1, 1, 1, 1, 1, 1);
  wk_conv2d_geom g;
  return wk_conv2d_geom_make(&cp, 1, 7, 7, 64, 64, 3, 3, &g) == WK_OK && wk_wino_pick(&g) != 0;
}

/* The reference output for (x, w, b) with the activation applied. */
static void wino_ref(const wk_conv2d_params *cp, const wk_tensor *x, const wk_tensor *w,
                     const wk_tensor *b, wk_post_act post, wk_tensor *y) {
  wk_ctx *ref = wkt_ctx(WK_IMPL_REF, 1);
  expect_ok(wk_conv2d_forward(ref, cp, x, w, b, y), "ref forward");
  float *r = y->data;
  for (int64_t i = 0; i < wk_tensor_numel(y); i++) {
    if (post != WK_POST_NONE && r[i] < 0) r[i] = 0;
    if (post == WK_POST_RELU6 && r[i] > 6) r[i] = 6;
  }
  wk_ctx_destroy(ref);
}

START_TEST(test_conv2d_winograd_vs_ref) {
  if (!wino_available()) {
    fprintf(stderr, "test_conv2d_winograd_vs_ref: skipped, no AVX-512 here (oneDNN runs)\n");
    return;
  }
  const wino_case *wc = &wino_cases[_i / 6];
  const int m = _i % 2 ? 4 : 2;
  const wk_post_act post = (wk_post_act)((_i / 2) % 3);
  const bool bias = _i % 4 != 3; /* one combination per shape without */
  const wk_conv2d_params cp = P(1, 1, 1, 1, 1, 1, 1, 1, 1);
  wk_conv2d_geom g;
  expect_ok(wk_conv2d_geom_make(&cp, wc->n, wc->h, wc->w, wc->c, wc->o, 3, 3, &g), wc->name);
  const int64_t xs[4] = {g.n, g.h, g.w, g.c}, ws[4] = {g.o, 3, 3, g.c}, ys[4] = {g.n, g.h, g.w, g.o};
  wk_tensor x = rand_tensor(4, xs, 11 + (uint64_t)_i, -1, 1);
  wk_tensor w = rand_tensor(4, ws, 12 + (uint64_t)_i, -0.3f, 0.3f);
  wk_tensor w2 = rand_tensor(4, ws, 14 + (uint64_t)_i, -0.3f, 0.3f);
  wk_tensor b = rand_tensor(1, &g.o, 13 + (uint64_t)_i, -1, 1);
  const wk_tensor *bp = bias ? &b : NULL;
  const float *bd = bias ? b.data : NULL;
  wk_tensor y0 = wkt_tensor(WK_F32, 4, ys), y0b = wkt_tensor(WK_F32, 4, ys);
  wk_tensor y1 = wkt_tensor(WK_F32, 4, ys), y2 = wkt_tensor(WK_F32, 4, ys);
  wino_ref(&cp, &x, &w, bp, post, &y0);
  wino_ref(&cp, &x, &w2, bp, post, &y0b);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  char tile[2] = {(char)('0' + m), 0};
  setenv("WHISKER_WINO", tile, 1);
  wk_conv2d_plan *p;
  expect_ok(wk_conv2d_plan_create(ctx, &g, bias, true, post, &p), "plan");
  unsetenv("WHISKER_WINO");
  const char *want = m == 4 ? "wino_f4x4:whisker" : "wino_f2x2:whisker";
  ck_assert_msg(!strcmp(wk_conv2d_plan_impl(p), want), "%s: plan runs %s, not %s", wc->name,
                wk_conv2d_plan_impl(p), want);
  const double tol = m == 4 ? 5e-5 : 1e-5;
  expect_ok(wk_conv2d_plan_forward(p, x.data, w.data, 1, bd, y1.data), "forward");
  expect_close("winograd forward", wc->name, WK_IMPL_CPU, &y1, &y0, tol);
  /* version 1 again with other weights: the kept transform, the old output */
  expect_ok(wk_conv2d_plan_forward(p, x.data, w2.data, 1, bd, y2.data), "forward, kept");
  ck_assert_msg(!memcmp(y1.data, y2.data, wk_tensor_nbytes(&y1)),
                "%s: version 1 again did not reuse the transformed weights", wc->name);
  /* a new version: transformed again */
  expect_ok(wk_conv2d_plan_forward(p, x.data, w2.data, 2, bd, y2.data), "forward, new weights");
  expect_close("winograd forward, new weights", wc->name, WK_IMPL_CPU, &y2, &y0b, tol);
  /* version 0: transformed on every call */
  expect_ok(wk_conv2d_plan_forward(p, x.data, w.data, 0, bd, y2.data), "forward, version 0");
  ck_assert_msg(!memcmp(y1.data, y2.data, wk_tensor_nbytes(&y1)), "%s: version 0 (w)", wc->name);
  expect_ok(wk_conv2d_plan_forward(p, x.data, w2.data, 0, bd, y2.data), "forward, version 0");
  expect_close("winograd forward, version 0", wc->name, WK_IMPL_CPU, &y2, &y0b, tol);
  wk_conv2d_plan_destroy(p);
  /* 1 and 3 threads, and chunks of 3 tiles (seams inside rows of tiles and
   * images): every tile goes through the same operations, so the same bits */
  const int threads[3] = {1, 3, 2};
  const int64_t chunks[3] = {0, 0, 3};
  for (int k = 0; k < 3; k++) {
    wk_ctx *c2 = wkt_ctx(WK_IMPL_CPU, threads[k]);
    wk_wino *wp;
    expect_ok(wk_wino_create(&g, post, false, m, chunks[k], &wp), "wino");
    expect_ok(wk_wino_forward(wp, c2, x.data, w.data, 1, bd, y2.data), "wino forward");
    ck_assert_msg(!memcmp(y1.data, y2.data, wk_tensor_nbytes(&y1)),
                  "%s: %d threads, chunks of %lld tiles: other bits", wc->name, threads[k],
                  (long long)chunks[k]);
    wk_wino_destroy(wp);
    wk_ctx_destroy(c2);
  }
  /* adding into y (a residual add fused, wk_conv2d_plan_create_sum): bit for
   * bit y + the plain forward without the activation, then the activation */
  wk_tensor r = rand_tensor(4, ys, 15 + (uint64_t)_i, -2, 2);
  wk_tensor y3 = wkt_tensor(WK_F32, 4, ys);
  memcpy(y3.data, r.data, wk_tensor_nbytes(&r));
  setenv("WHISKER_WINO", tile, 1);
  wk_conv2d_plan *q;
  expect_ok(wk_conv2d_plan_create_sum(ctx, &g, bias, post, false, &p), "plan, sum");
  expect_ok(wk_conv2d_plan_create(ctx, &g, bias, true, WK_POST_NONE, &q), "plan, no act");
  unsetenv("WHISKER_WINO");
  ck_assert_msg(!strcmp(wk_conv2d_plan_impl(p), want), "%s: the sum plan runs %s, not %s",
                wc->name, wk_conv2d_plan_impl(p), want);
  expect_ok(wk_conv2d_plan_forward(p, x.data, w.data, 1, bd, y3.data), "forward, sum");
  expect_ok(wk_conv2d_plan_forward(q, x.data, w.data, 1, bd, y2.data), "forward, no act");
  const float *rv = r.data, *plain = y2.data, *got = y3.data;
  for (int64_t k = 0; k < wk_tensor_numel(&r); k++) {
    float e = rv[k] + plain[k];
    if (post != WK_POST_NONE) e = e > 0 ? e : 0;
    if (post == WK_POST_RELU6) e = e < 6 ? e : 6;
    if (memcmp(&e, &got[k], sizeof e))
      ck_abort_msg("%s: sum at %lld: %.9g, not %.9g", wc->name, (long long)k, got[k], e);
  }
  wk_conv2d_plan_destroy(p);
  wk_conv2d_plan_destroy(q);
  wk_tensor_free(&r), wk_tensor_free(&y3);
  wk_tensor_free(&x), wk_tensor_free(&w), wk_tensor_free(&w2), wk_tensor_free(&b);
  wk_tensor_free(&y0), wk_tensor_free(&y0b), wk_tensor_free(&y1), wk_tensor_free(&y2);
  wk_ctx_destroy(ctx);
}
END_TEST

/* A residual add fused into oneDNN's direct convolution (its sum post-op,
 * wk_conv2d_plan_create_sum) on NHWC activations: y = post(y + conv(x) + b)
 * against the plain plan's output added to y; and the shapes it declines. */
START_TEST(test_conv2d_sum_direct) {
  static const struct {
    const char *name;
    int64_t n, h, c, o, k;
    wk_conv2d_params p;
  } cases[] = {{"1x1 24->40", 2, 14, 24, 40, 1, P(1, 1, 0, 0, 0, 0, 1, 1, 1)},
               {"3x3 s2 16->32", 3, 15, 16, 32, 3, P(2, 2, 1, 1, 1, 1, 1, 1, 1)},
               {"3x3 dw 32", 1, 9, 32, 32, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 32)}};
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    for (int post = WK_POST_NONE; post <= WK_POST_RELU6; post++) {
      wk_conv2d_geom g;
      expect_ok(wk_conv2d_geom_make(&cases[c].p, cases[c].n, cases[c].h, cases[c].h, cases[c].c,
                                    cases[c].o, cases[c].k, cases[c].k, &g), cases[c].name);
      const int64_t xs[4] = {g.n, g.h, g.w, g.c}, ys[4] = {g.n, g.oh, g.ow, g.o};
      const int64_t ws[4] = {g.o, g.kh, g.kw, g.c / g.groups};
      wk_tensor x = rand_tensor(4, xs, 21 + c, -1, 1), w = rand_tensor(4, ws, 22 + c, -0.5f, 0.5f);
      wk_tensor b = rand_tensor(1, &g.o, 23 + c, -1, 1), r = rand_tensor(4, ys, 24 + c, -2, 2);
      wk_tensor y = wkt_tensor(WK_F32, 4, ys), plain = wkt_tensor(WK_F32, 4, ys);
      wk_tensor want = wkt_tensor(WK_F32, 4, ys);
      memcpy(y.data, r.data, wk_tensor_nbytes(&r));
      wk_conv2d_plan *p, *q;
      expect_ok(wk_conv2d_plan_create_sum(ctx, &g, true, (wk_post_act)post, false, &p), "sum plan");
      expect_ok(wk_conv2d_plan_create(ctx, &g, true, true, WK_POST_NONE, &q), "plain plan");
      expect_ok(wk_conv2d_plan_forward(p, x.data, w.data, 1, b.data, y.data), "sum forward");
      expect_ok(wk_conv2d_plan_forward(q, x.data, w.data, 1, b.data, plain.data), "plain forward");
      const float *rv = r.data, *pv = plain.data;
      float *wv = want.data;
      for (int64_t k = 0; k < wk_tensor_numel(&y); k++) {
        float e = rv[k] + pv[k];
        if (post != WK_POST_NONE) e = e > 0 ? e : 0;
        if (post == WK_POST_RELU6) e = e < 6 ? e : 6;
        wv[k] = e;
      }
      expect_close("conv with the add fused", cases[c].name, WK_IMPL_CPU, &y, &want, 1e-6);
      wk_conv2d_plan_destroy(p);
      wk_conv2d_plan_destroy(q);
      wk_tensor *ts[7] = {&x, &w, &b, &r, &y, &plain, &want};
      for (int k = 0; k < 7; k++) wk_tensor_free(ts[k]);
    }
  }
  /* declined, with no error recorded, where oneDNN's Winograd has the shape
   * (whisker's off): its nChw16c copies cannot add into y */
  const wk_conv2d_params same = P(1, 1, 1, 1, 1, 1, 1, 1, 1);
  wk_conv2d_geom g;
  expect_ok(wk_conv2d_geom_make(&same, 1, 56, 56, 64, 64, 3, 3, &g), "geom");
  wk_conv2d_plan *p = NULL;
  wk_clear_error();
  setenv("WHISKER_WINO", "0", 1);
  /* oneDNN's Winograd is an AVX-512 kernel: elsewhere the direct one takes the sum */
  const bool wino = wk_conv2d_blocked_native();
  ck_assert_int_eq(wk_conv2d_plan_create_sum(ctx, &g, false, WK_POST_NONE, false, &p),
                   wino ? WK_ERR_UNSUPPORTED : WK_OK);
  unsetenv("WHISKER_WINO");
  ck_assert((p == NULL) == wino);
  wk_conv2d_plan_destroy(p);
  ck_assert_str_eq(wk_last_error(), "");
  wk_ctx_destroy(ctx);
}
END_TEST

/* Which shapes take whisker's Winograd, and which tile: geometries it cannot
 * compute stay with oneDNN even when a tile is forced. */
START_TEST(test_conv2d_winograd_pick) {
  if (!wino_available()) {
    fprintf(stderr, "test_conv2d_winograd_pick: skipped, no AVX-512 here\n");
    return;
  }
  const wk_conv2d_params same = P(1, 1, 1, 1, 1, 1, 1, 1, 1);
  wk_conv2d_geom g;
  /* ResNet-18 at batch 1: F(4x4) from 14x14 up, F(2x2) at 7x7; at batch 4
   * 7x7 has 16 tiles of 4x4: F(4x4) */
  const int64_t sizes[4][4] = {{1, 56, 64, 4}, {1, 14, 256, 4}, {1, 7, 512, 2}, {4, 7, 512, 4}};
  for (int k = 0; k < 4; k++) {
    expect_ok(wk_conv2d_geom_make(&same, sizes[k][0], sizes[k][1], sizes[k][1], sizes[k][2],
                                  sizes[k][2], 3, 3, &g), "geom");
    ck_assert_int_eq(wk_wino_pick(&g), (int)sizes[k][3]);
  }
  /* not computable: too few input channels, output channels not a multiple of
   * 64, stride 2, no padding, a 1x1 kernel, groups */
  const struct {
    const char *name;
    int64_t c, o, k;
    wk_conv2d_params p;
  } no[] = {{"c 8", 8, 64, 3, same},
            {"o 96", 64, 96, 3, same},
            {"stride 2", 64, 64, 3, P(2, 2, 1, 1, 1, 1, 1, 1, 1)},
            {"no padding", 64, 64, 3, P(1, 1, 0, 0, 0, 0, 1, 1, 1)},
            {"1x1", 64, 64, 1, P(1, 1, 0, 0, 0, 0, 1, 1, 1)},
            {"groups 2", 64, 64, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 2)}};
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  setenv("WHISKER_WINO", "4", 1);
  for (size_t k = 0; k < sizeof no / sizeof no[0]; k++) {
    expect_ok(wk_conv2d_geom_make(&no[k].p, 1, 9, 9, no[k].c, no[k].o, no[k].k, no[k].k, &g),
              no[k].name);
    ck_assert_msg(wk_wino_pick(&g) == 0, "%s: picked", no[k].name);
    wk_conv2d_plan *p;
    expect_ok(wk_conv2d_plan_create(ctx, &g, false, true, WK_POST_NONE, &p), no[k].name);
    ck_assert_msg(!strstr(wk_conv2d_plan_impl(p), "whisker"), "%s: runs %s", no[k].name,
                  wk_conv2d_plan_impl(p));
    wk_conv2d_plan_destroy(p);
  }
  /* a bad WHISKER_WINO is refused, naming the variable */
  setenv("WHISKER_WINO", "3", 1);
  expect_ok(wk_conv2d_geom_make(&same, 1, 7, 7, 64, 64, 3, 3, &g), "geom");
  wk_conv2d_plan *p = NULL;
  ck_assert_int_eq(wk_conv2d_plan_create(ctx, &g, false, true, WK_POST_NONE, &p),
                   WK_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "WHISKER_WINO"));
  /* WHISKER_WINOGRAD=0 turns it off with oneDNN's */
  unsetenv("WHISKER_WINO");
  setenv("WHISKER_WINOGRAD", "0", 1);
  expect_ok(wk_conv2d_plan_create(ctx, &g, false, true, WK_POST_NONE, &p), "plan");
  ck_assert_msg(!strstr(wk_conv2d_plan_impl(p), "whisker"), "WHISKER_WINOGRAD=0: runs %s",
                wk_conv2d_plan_impl(p));
  wk_conv2d_plan_destroy(p);
  unsetenv("WHISKER_WINOGRAD");
  wk_ctx_destroy(ctx);
}
END_TEST

/* Inference plans with the caller's activations in oneDNN's nChw16c layout
 * (plan.h: wk_conv2d_plan_create_layout), as evaluation uses them between
 * MobileNetV2's 1x1 and depthwise convolutions, and the stem path (a few input
 * channels, NHWC in, nChw16c out: oneDNN's first-layer kernel on a planar
 * copy): every combination against the reference, the blocked output's
 * padding channels zero (the next layer reads them). */
typedef struct {
  const char *name;
  int64_t n, h, w, c, o, k;
  wk_conv2d_params p;
  bool src_blk, dst_blk;
  wk_post_act post;
} blk_case;

static const blk_case blk_cases[] = {
    {"stem 3>32 k3/2", 2, 17, 17, 3, 32, 3, P(2, 2, 1, 1, 1, 1, 1, 1, 1), false, true, WK_POST_RELU6},
    {"stem 1>20 k3/1", 1, 9, 8, 1, 20, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 1), false, true, WK_POST_NONE},
    {"stem 5>16 k7/2", 1, 15, 15, 5, 16, 7, P(2, 2, 3, 3, 3, 3, 1, 1, 1), false, true, WK_POST_RELU},
    {"1x1 24>40 blocked", 2, 7, 9, 24, 40, 1, P(1, 1, 0, 0, 0, 0, 1, 1, 1), true, true, WK_POST_RELU6},
    {"dw 32 k3/2 blocked", 1, 11, 11, 32, 32, 3, P(2, 2, 1, 1, 1, 1, 1, 1, 32), true, true, WK_POST_RELU6},
    {"3x3 16>24 blocked in", 1, 6, 6, 16, 24, 3, P(1, 1, 1, 1, 1, 1, 1, 1, 1), true, false, WK_POST_NONE},
};

/* NHWC (n, hw, c) <-> nChw16c (n, ceil(c / 16), hw, 16), the padding zero. */
static void to_blk(const float *x, int64_t n, int64_t hw, int64_t c, float *y) {
  const int64_t cb = wk_blk16(c) / 16;
  memset(y, 0, (size_t)(n * cb * hw * 16) * sizeof *y);
  for (int64_t i = 0; i < n; i++)
    for (int64_t p = 0; p < hw; p++)
      for (int64_t k = 0; k < c; k++) y[((i * cb + k / 16) * hw + p) * 16 + k % 16] = x[(i * hw + p) * c + k];
}

START_TEST(test_conv2d_blocked_layouts) {
  const blk_case *bc = &blk_cases[_i];
  wk_conv2d_geom g;
  expect_ok(wk_conv2d_geom_make(&bc->p, bc->n, bc->h, bc->w, bc->c, bc->o, bc->k, bc->k, &g),
            bc->name);
  const int64_t xs[4] = {g.n, g.h, g.w, g.c}, ws[4] = {g.o, g.kh, g.kw, g.c / g.groups};
  const int64_t ys[4] = {g.n, g.oh, g.ow, g.o};
  wk_tensor x = rand_tensor(4, xs, 21 + (uint64_t)_i, -1, 1);
  wk_tensor w = rand_tensor(4, ws, 22 + (uint64_t)_i, -0.5f, 0.5f);
  wk_tensor b = rand_tensor(1, &g.o, 23 + (uint64_t)_i, -1, 1);
  wk_tensor y0 = wkt_tensor(WK_F32, 4, ys);
  wino_ref(&bc->p, &x, &w, &b, bc->post, &y0);
  const int64_t hw_in = g.h * g.w, hw_out = g.oh * g.ow;
  const int64_t xb_n = g.n * wk_blk16(g.c) * hw_in, yb_n = g.n * wk_blk16(g.o) * hw_out;
  float *xb = malloc((size_t)xb_n * sizeof *xb), *yb = malloc((size_t)yb_n * sizeof *yb);
  float *yref_b = malloc((size_t)yb_n * sizeof *yref_b);
  ck_assert(xb && yb && yref_b);
  to_blk(x.data, g.n, hw_in, g.c, xb);
  for (int64_t i = 0; i < yb_n; i++) yb[i] = 12345.0f; /* the padding must be written */
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_conv2d_plan *p;
  expect_ok(wk_conv2d_plan_create_layout(ctx, &g, true, true, bc->post, bc->src_blk, bc->dst_blk,
                                         &p), bc->name);
  expect_ok(wk_conv2d_plan_forward(p, bc->src_blk ? xb : x.data, w.data, 1, b.data, yb),
            "forward"); /* yb holds either layout: the blocked one is the larger */
  if (bc->dst_blk) {
    to_blk(y0.data, g.n, hw_out, g.o, yref_b);
    const double e = wkt_rel_err(yb, yref_b, yb_n, 1e-6);
    ck_assert_msg(e <= 1e-5, "%s (%s): relative error %.3g (padding channels included)", bc->name,
                  wk_conv2d_plan_impl(p), e);
  } else {
    const double e = wkt_rel_err(yb, y0.data, wk_tensor_numel(&y0), 1e-6);
    ck_assert_msg(e <= 1e-5, "%s (%s): relative error %.3g", bc->name, wk_conv2d_plan_impl(p), e);
  }
  wk_conv2d_plan_destroy(p);
  wk_ctx_destroy(ctx);
  free(xb), free(yb), free(yref_b);
  wk_tensor_free(&x), wk_tensor_free(&w), wk_tensor_free(&b), wk_tensor_free(&y0);
}
END_TEST

/* A 1x1 convolution and the depthwise 3x3 one after it as one plan
 * (plan.h: wk_conv2d_pwdw_plan), fused and split, against the two reference
 * convolutions: both layouts on each side, channel counts off the 16-channel
 * blocks, odd sizes, stride 1 and 2, with and without biases and
 * activations; the blocked output's padding channels zero; new weights taken
 * when their version changes. oneDNN fuses only large shapes ("big": 112x112
 * with 96 channels, on AVX-512), and whisker only nChw16c on both sides: its
 * NHWC kernel computed garbage and its kernel without a 1x1 bias crashed
 * (oneDNN 2.6.3), so the big cases pin both. */
typedef struct {
  const char *name;
  int64_t n, h, w, c, e;
  int stride;
  bool src_blk, dst_blk, pw_bias, dw_bias;
  wk_post_act pw_post, dw_post;
  bool big;
} pwdw_case;

static const pwdw_case pwdw_cases[] = {
    {"16>96 s2 blocked", 1, 112, 112, 16, 96, 2, true, true, true, true, WK_POST_RELU6, WK_POST_RELU6, true},
    {"16>96 s2 blocked, no biases", 1, 112, 112, 16, 96, 2, true, true, false, false, WK_POST_RELU6, WK_POST_NONE, true},
    {"16>96 s2 nhwc", 1, 112, 112, 16, 96, 2, false, false, true, true, WK_POST_RELU6, WK_POST_RELU6, true},
    {"24>144 s1 blocked", 1, 9, 7, 24, 144, 1, true, true, true, true, WK_POST_RELU6, WK_POST_RELU6, false},
    {"20>40 s2 odd", 2, 7, 5, 20, 40, 2, true, true, false, false, WK_POST_RELU, WK_POST_NONE, false},
    {"8>24 s1 nhwc", 1, 6, 6, 8, 24, 1, false, false, true, false, WK_POST_NONE, WK_POST_RELU6, false},
    {"32>64 s2 blocked in", 3, 8, 8, 32, 64, 2, true, false, false, true, WK_POST_RELU6, WK_POST_RELU, false},
    {"160>960 s1 7x7", 1, 7, 7, 160, 960, 1, true, true, true, true, WK_POST_RELU6, WK_POST_RELU6, false},
    /* whisker's kernel (with the 9x7 and 7x7 cases above, which share an
     * image out by channel blocks): tiles of 14 pixels and a ragged one, an
     * odd block count (the 1x1's last step one block), an image shared out by
     * rows (stride 1 and 2) and by blocks at stride 2 on even sizes, images
     * that do not divide over the threads (3 on 2: each shared out), whole
     * images (2 on 2), every activation, with and without biases */
    {"24>144 s1 56x31", 1, 56, 31, 24, 144, 1, true, true, true, true, WK_POST_RELU6, WK_POST_RELU6, false},
    {"24>144 s2 57x29 nobias", 2, 57, 29, 24, 144, 2, true, true, false, false, WK_POST_RELU, WK_POST_NONE, false},
    {"32>96 s2 33x17 rows", 1, 33, 17, 32, 96, 2, true, true, true, true, WK_POST_RELU6, WK_POST_RELU, false},
    {"32>64 s2 8x8 blocks", 1, 8, 8, 32, 64, 2, true, true, false, true, WK_POST_RELU, WK_POST_RELU6, false},
    {"40>80 s2 3x3 batch 3", 3, 3, 3, 40, 80, 2, true, true, true, false, WK_POST_NONE, WK_POST_RELU, false},
    {"7>16 s1 1x1 image", 2, 1, 1, 7, 16, 1, true, true, false, true, WK_POST_RELU6, WK_POST_RELU6, false},
};

START_TEST(test_conv2d_pwdw_vs_ref) {
  const pwdw_case *pc = &pwdw_cases[_i / 2];
  const bool fuse = _i % 2 == 0;
  const wk_conv2d_params p1 = P(1, 1, 0, 0, 0, 0, 1, 1, 1);
  const int s = pc->stride;
  const wk_conv2d_params p2 = P(s, s, 1, 1, 1, 1, 1, 1, (int)pc->e);
  wk_conv2d_geom g1, g2;
  expect_ok(wk_conv2d_geom_make(&p1, pc->n, pc->h, pc->w, pc->c, pc->e, 1, 1, &g1), pc->name);
  expect_ok(wk_conv2d_geom_make(&p2, pc->n, pc->h, pc->w, pc->e, pc->e, 3, 3, &g2), pc->name);
  ck_assert(wk_conv2d_pwdw_pair(&g1, &g2));
  ck_assert(!wk_conv2d_pwdw_pair(&g2, &g1));
  const int64_t xs[4] = {pc->n, pc->h, pc->w, pc->c}, w1s[4] = {pc->e, 1, 1, pc->c};
  const int64_t w2s[4] = {pc->e, 3, 3, 1}, ms[4] = {pc->n, pc->h, pc->w, pc->e};
  const int64_t ys[4] = {pc->n, g2.oh, g2.ow, pc->e};
  wk_tensor x = rand_tensor(4, xs, 31 + (uint64_t)_i, -1, 1);
  wk_tensor w1[2] = {rand_tensor(4, w1s, 32, -0.4f, 0.4f), rand_tensor(4, w1s, 33, -0.4f, 0.4f)};
  wk_tensor w2[2] = {rand_tensor(4, w2s, 34, -0.5f, 0.5f), rand_tensor(4, w2s, 37, -0.5f, 0.5f)};
  wk_tensor b1 = rand_tensor(1, &pc->e, 35, -0.5f, 1), b2 = rand_tensor(1, &pc->e, 36, -1, 1);
  wk_tensor mid = wkt_tensor(WK_F32, 4, ms), y0 = wkt_tensor(WK_F32, 4, ys);
  const int64_t hw_in = pc->h * pc->w, hw_out = g2.oh * g2.ow;
  const int64_t xb_n = pc->n * wk_blk16(pc->c) * hw_in, yb_n = pc->n * wk_blk16(pc->e) * hw_out;
  float *xb = malloc((size_t)xb_n * sizeof *xb), *y = malloc((size_t)yb_n * sizeof *y);
  float *want = malloc((size_t)yb_n * sizeof *want);
  ck_assert(xb && y && want);
  to_blk(x.data, pc->n, hw_in, pc->c, xb);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_conv2d_pwdw_plan *plan;
  expect_ok(wk_conv2d_pwdw_plan_create(ctx, &g1, pc->pw_bias, pc->pw_post, &g2, pc->dw_bias,
                                       pc->dw_post, pc->src_blk, pc->dst_blk, fuse, &plan),
            pc->name);
  if (!fuse) ck_assert(!wk_conv2d_pwdw_plan_fused(plan));
  const size_t sb = wk_conv2d_pwdw_plan_scratch_bytes(plan);
  const bool own = strstr(wk_conv2d_pwdw_plan_impl(plan), "whisker") != NULL;
  ck_assert((sb == 0) == (wk_conv2d_pwdw_plan_fused(plan) && !own));
  /* fused, by oneDNN or else by whisker's kernel, wherever both sides are
   * blocked and the expanded channels whole 16-channel blocks; the kernel
   * only there */
  const char *own_env = getenv("WHISKER_PWDW_OWN");
  const bool own_on = wino_available() && !(own_env && strcmp(own_env, "0") == 0);
  const bool own_fits = pc->src_blk && pc->dst_blk && pc->e % 16 == 0;
  if (fuse && own_on && own_fits)
    ck_assert_msg(wk_conv2d_pwdw_plan_fused(plan), "%s: %s", pc->name,
                  wk_conv2d_pwdw_plan_impl(plan));
  if (own) ck_assert_msg(fuse && own_fits, "%s: %s", pc->name, wk_conv2d_pwdw_plan_impl(plan));
  if (fuse && own_fits && !own_on && _i == 6)
    printf("test_ops: whisker's fused 1x1 + depthwise kernel not available here (no AVX-512 "
           "as oneDNN sees it, or $WHISKER_PWDW_OWN=0): its cases ran oneDNN's plans\n");
  float *scratch = NULL;
  if (sb) ck_assert_int_eq(posix_memalign((void **)&scratch, 64, sb), 0);
  if (fuse && pc->big && wino_available()) /* AVX-512: oneDNN's jit kernel for the pair */
    ck_assert_msg(wk_conv2d_pwdw_plan_fused(plan) == (pc->src_blk && pc->dst_blk), "%s: %s",
                  pc->name, wk_conv2d_pwdw_plan_impl(plan));
  for (int k = 0; k < 2; k++) { /* the second weights under a new version */
    wino_ref(&p1, &x, &w1[k], pc->pw_bias ? &b1 : NULL, pc->pw_post, &mid);
    wino_ref(&p2, &mid, &w2[k], pc->dw_bias ? &b2 : NULL, pc->dw_post, &y0);
    const int64_t n_cmp = pc->dst_blk ? yb_n : wk_tensor_numel(&y0);
    if (pc->dst_blk)
      to_blk(y0.data, pc->n, hw_out, pc->e, want);
    else
      memcpy(want, y0.data, (size_t)n_cmp * sizeof *want);
    for (int64_t i = 0; i < yb_n; i++) y[i] = 12345.0f; /* the padding must be written */
    const wk_conv2d_weights a = {w1[k].data, 1 + (uint64_t)k, pc->pw_bias ? b1.data : NULL};
    /* the depthwise weights change too, the second time under version 0
     * ("changed at every call") */
    const wk_conv2d_weights b = {w2[k].data, k == 0 ? 1 : 0, pc->dw_bias ? b2.data : NULL};
    expect_ok(wk_conv2d_pwdw_plan_forward(plan, pc->src_blk ? xb : x.data, &a, &b, scratch, y),
              "forward");
    const double e = wkt_rel_err(y, want, n_cmp, 1e-6);
    ck_assert_msg(e <= 1e-5, "%s (%s, weights %d): relative error %.3g", pc->name,
                  wk_conv2d_pwdw_plan_impl(plan), k, e);
  }
  wk_conv2d_pwdw_plan_destroy(plan);
  wk_ctx_destroy(ctx);
  free(xb), free(y), free(want), free(scratch);
  wk_tensor_free(&x), wk_tensor_free(&w1[0]), wk_tensor_free(&w1[1]), wk_tensor_free(&w2[0]);
  wk_tensor_free(&w2[1]);
  wk_tensor_free(&b1), wk_tensor_free(&b2), wk_tensor_free(&mid), wk_tensor_free(&y0);
}
END_TEST

/* The reference itself on numbers worked out by hand: a 3x3 image 1..9, a 2x2
 * kernel of ones, stride 1, no padding: each output is the sum of a 2x2 block. */
START_TEST(test_conv2d_known_values) {
  float xd[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, wd[4] = {1, 1, 1, 1}, bd[1] = {0.5f}, yd[4];
  const int64_t xs[4] = {1, 3, 3, 1}, ws[4] = {1, 2, 2, 1}, ys[4] = {1, 2, 2, 1}, bs = 1;
  wk_tensor x = wk_tensor_view(xd, WK_F32, 4, xs), w = wk_tensor_view(wd, WK_F32, 4, ws);
  wk_tensor b = wk_tensor_view(bd, WK_F32, 1, &bs), y = wk_tensor_view(yd, WK_F32, 4, ys);
  const float want[4] = {12.5f, 16.5f, 24.5f, 28.5f};
  for (int impl = WK_IMPL_REF; impl <= WK_IMPL_CPU; impl++) {
    wk_ctx *ctx = wkt_ctx((wk_impl)impl, 1);
    wk_conv2d_params p = wk_conv2d_params_make(1, 0, 1);
    expect_ok(wk_conv2d_forward(ctx, &p, &x, &w, &b, &y), "forward");
    for (int i = 0; i < 4; i++)
      ck_assert_msg(yd[i] == want[i], "%s: y[%d] = %g, want %g", wk_impl_name(ctx->impl), i,
                    (double)yd[i], (double)want[i]);
    wk_ctx_destroy(ctx);
  }
}
END_TEST

/* ------------------------------------------------------------------ batchnorm */

typedef struct {
  const char *name;
  int ndim;
  int64_t shape[4];
} bn_case;

static const bn_case bn_cases[] = {
    {"nhwc small", 4, {2, 3, 3, 5}},
    {"2-d (N,C)", 2, {4, 7}},
    {"odd spatial 16 channels", 4, {1, 5, 7, 16}},
    {"one channel", 4, {3, 4, 4, 1}},
    {"many channels", 4, {2, 2, 3, 67}},
};

START_TEST(test_batchnorm_vs_ref) {
  const bn_case *bc = &bn_cases[_i];
  const int64_t c = bc->shape[bc->ndim - 1];
  wk_batchnorm_params p = {.eps = 1e-5f, .momentum = 0.1f};
  wk_tensor x = rand_tensor(bc->ndim, bc->shape, 11 + (uint64_t)_i, -2, 3);
  wk_tensor dy = rand_tensor(bc->ndim, bc->shape, 12 + (uint64_t)_i, -1, 1);
  wk_tensor gamma = rand_tensor(1, &c, 13, 0.5f, 1.5f), beta = rand_tensor(1, &c, 14, -0.5f, 0.5f);
  wk_tensor rm_init = rand_tensor(1, &c, 15, -0.1f, 0.1f), rv_init = rand_tensor(1, &c, 16, 0.5f, 2);
  struct bn_out { wk_tensor y, rm, rv, sm, si, yi, dx, dg, db, dxf, dgf, dbf; } out[2];
  wk_ctx *ctxs[2] = {wkt_ctx(WK_IMPL_REF, 1), NULL};
  for (int k = 0; k < WK_N_TEST_IMPLS; k++) {
    ctxs[1] = wkt_ctx(wk_test_impls[k], 2);
    for (int j = 0; j < 2; j++) {
      if (k > 0 && j == 0) continue; /* the reference is computed once */
      struct bn_out *o = &out[j];
      o->y = zeros_like(&x), o->yi = zeros_like(&x), o->dx = zeros_like(&x), o->dxf = zeros_like(&x);
      o->rm = zeros_like(&rm_init), o->rv = zeros_like(&rv_init);
      memcpy(o->rm.data, rm_init.data, wk_tensor_nbytes(&rm_init));
      memcpy(o->rv.data, rv_init.data, wk_tensor_nbytes(&rv_init));
      o->sm = zeros_like(&gamma), o->si = zeros_like(&gamma), o->dg = zeros_like(&gamma);
      o->db = zeros_like(&gamma), o->dgf = zeros_like(&gamma), o->dbf = zeros_like(&gamma);
      wk_ctx *ctx = ctxs[j];
      expect_ok(wk_batchnorm_forward_train(ctx, &p, &x, &gamma, &beta, &o->rm, &o->rv, &o->sm,
                                           &o->si, &o->y), "forward train");
      expect_ok(wk_batchnorm_forward_infer(ctx, &p, &x, &gamma, &beta, &rm_init, &rv_init, &o->yi),
                "forward infer");
      expect_ok(wk_batchnorm_backward(ctx, &p, false, &x, &gamma, &o->sm, &o->si, &dy, &o->dx,
                                      &o->dg, &o->db), "backward");
      /* frozen: running statistics as constants, invstd from the running variance */
      wk_tensor is = zeros_like(&rv_init);
      for (int64_t ch = 0; ch < c; ch++)
        ((float *)is.data)[ch] = (float)(1.0 / sqrt((double)((float *)rv_init.data)[ch] + 1e-5));
      expect_ok(wk_batchnorm_backward(ctx, &p, true, &x, &gamma, &rm_init, &is, &dy, &o->dxf,
                                      &o->dgf, &o->dbf), "backward frozen");
      wk_tensor_free(&is);
    }
    const char *n = bc->name;
    wk_impl im = ctxs[1]->impl;
    expect_close("batchnorm train output", n, im, &out[1].y, &out[0].y, 1e-5);
    expect_close("batchnorm running mean", n, im, &out[1].rm, &out[0].rm, 1e-5);
    expect_close("batchnorm running var", n, im, &out[1].rv, &out[0].rv, 1e-5);
    expect_close("batchnorm saved mean", n, im, &out[1].sm, &out[0].sm, 1e-5);
    expect_close("batchnorm saved invstd", n, im, &out[1].si, &out[0].si, 1e-5);
    expect_close("batchnorm infer output", n, im, &out[1].yi, &out[0].yi, 1e-5);
    expect_close("batchnorm dx", n, im, &out[1].dx, &out[0].dx, 1e-5);
    expect_close("batchnorm dgamma", n, im, &out[1].dg, &out[0].dg, 1e-5);
    expect_close("batchnorm dbeta", n, im, &out[1].db, &out[0].db, 1e-5);
    expect_close("batchnorm frozen dx", n, im, &out[1].dxf, &out[0].dxf, 1e-5);
    expect_close("batchnorm frozen dgamma", n, im, &out[1].dgf, &out[0].dgf, 1e-5);
    expect_close("batchnorm frozen dbeta", n, im, &out[1].dbf, &out[0].dbf, 1e-5);
    wk_tensor *all = &out[1].y;
    for (int t = 0; t < 12; t++) wk_tensor_free(&all[t]);
    wk_ctx_destroy(ctxs[1]);
  }
  wk_tensor *all = &out[0].y;
  for (int t = 0; t < 12; t++) wk_tensor_free(&all[t]);
  wk_ctx_destroy(ctxs[0]);
  wk_tensor_free(&x), wk_tensor_free(&dy), wk_tensor_free(&gamma), wk_tensor_free(&beta);
  wk_tensor_free(&rm_init), wk_tensor_free(&rv_init);
}
END_TEST

/* Normalised output has zero mean and unit (biased) variance per channel. */
START_TEST(test_batchnorm_normalises) {
  const int64_t shape[4] = {4, 3, 3, 6}, c = 6;
  wk_tensor x = rand_tensor(4, shape, 3, -5, 9), y = zeros_like(&x);
  wk_tensor gamma = wkt_tensor(WK_F32, 1, &c);
  wk_tensor beta = zeros_like(&gamma), rm = zeros_like(&gamma), rv = zeros_like(&gamma);
  wk_tensor sm = zeros_like(&gamma), si = zeros_like(&gamma);
  for (int i = 0; i < c; i++) ((float *)gamma.data)[i] = 1.0f, ((float *)rv.data)[i] = 1.0f;
  for (int impl = WK_IMPL_REF; impl <= WK_IMPL_CPU; impl++) {
    wk_ctx *ctx = wkt_ctx((wk_impl)impl, 2);
    wk_batchnorm_params p = {.eps = 1e-5f, .momentum = 0.1f};
    expect_ok(wk_batchnorm_forward_train(ctx, &p, &x, &gamma, &beta, &rm, &rv, &sm, &si, &y), "bn");
    const float *yd = y.data;
    for (int ch = 0; ch < c; ch++) {
      double s = 0, s2 = 0;
      for (int r = 0; r < 36; r++) s += yd[r * c + ch], s2 += (double)yd[r * c + ch] * yd[r * c + ch];
      ck_assert_msg(fabs(s / 36) < 1e-5 && fabs(s2 / 36 - 1) < 1e-3,
                    "%s channel %d: mean %g, variance %g", wk_impl_name(ctx->impl), ch, s / 36,
                    s2 / 36);
    }
    wk_ctx_destroy(ctx);
  }
  wk_tensor *ts[7] = {&x, &y, &gamma, &beta, &rm, &rv, &sm};
  for (int i = 0; i < 7; i++) wk_tensor_free(ts[i]);
  wk_tensor_free(&si);
}
END_TEST

/* ------------------------------------------- batchnorm with its activation fused */

/* whisker's own training batchnorm with the activation after it fused
 * (src/ops/batchnorm_act.c), against sums in double: the statistics within
 * 1e-6 (mean, of |mean| + std) and 1e-5 (variance); the output within 2e-5 of
 * the largest (it is x * s + t, whose rounding grows with |mean| / std: some
 * channels sit at +50 with a std near 1.4); dx within 1e-4 of its terms'
 * largest magnitude (|gamma / std| (|dz| + |mean(dz)| + |xhat mean(dz xhat)|):
 * dx itself nearly vanishes over 2 rows), dgamma and dbeta within 1e-5 of the
 * sum of their terms' magnitudes.
 * The backward's mask is the forward output's (0 < y < 6 for ReLU6): an
 * element where backward recomputed it otherwise would be off by a whole dy.
 * Bit for bit: the plain loops against AVX-512's (and its non-temporal
 * stores, 70,000 rows of 96), 1 thread against 2, dx written over dy against
 * out of place, and no dx against dx. */
typedef struct {
  const char *name;
  int64_t m, c;
  bool misalign; /* every buffer one float off 64 bytes: no streaming */
} bna_case;

static const bna_case bna_cases[] = {
    {"2 rows", 2, 3, false},
    {"under one chunk, 24 channels", 31, 24, false},
    {"33 rows of 16", 33, 16, false},
    {"blocks and chunks with remainders", 3000, 96, false},
    {"40 channels", 1030, 40, false},
    {"past the caches: streamed", 70000, 96, false},
    {"past the caches, misaligned", 70000, 96, true},
};

typedef struct {
  float *y, *mean, *var, *dx, *dg, *db;
} bna_out;

/* n + 16 floats, 64-byte aligned (whisker streams only to such rows), zeroed;
 * aligned_alloc takes a multiple of the alignment */
static float *bna_floats(int64_t n) {
  const size_t bytes = ((size_t)(n + 16) * sizeof(float) + 63) & ~(size_t)63;
  float *p = aligned_alloc(64, bytes);
  ck_assert(p);
  memset(p, 0, bytes);
  return p;
}

static void bna_alloc(bna_out *o, int64_t m, int64_t c) {
  o->y = bna_floats(m * c), o->dx = bna_floats(m * c);
  o->mean = calloc((size_t)c, sizeof(float)), o->var = calloc((size_t)c, sizeof(float));
  o->dg = calloc((size_t)c, sizeof(float)), o->db = calloc((size_t)c, sizeof(float));
  ck_assert(o->y && o->dx && o->mean && o->var && o->dg && o->db);
}

static void bna_free(bna_out *o) {
  free(o->y), free(o->dx), free(o->mean), free(o->var), free(o->dg), free(o->db);
}

static void bna_run(wk_ctx *ctx, bool avx512, const bna_case *bc, wk_post_act act, const float *x,
                    const float *g, const float *b, const float *dy, bna_out *o) {
  wk_bn_act *p;
  expect_ok(wk_bn_act_create(bc->m, bc->c, 1e-5f, act, &p), "fused batchnorm");
  wk_bn_act_use_avx512(p, avx512);
  const int off = bc->misalign ? 1 : 0;
  expect_ok(wk_bn_act_forward(p, ctx, x, g, b, o->mean, o->var, o->y + off), "forward");
  expect_ok(wk_bn_act_backward(p, ctx, x, g, b, o->mean, o->var, dy, o->dx + off, o->dg, o->db),
            "backward");
  wk_bn_act_destroy(p);
}

static void bna_same(const char *what, const bna_case *bc, const bna_out *a, const bna_out *b) {
  const size_t n = (size_t)(bc->m * bc->c + 16) * sizeof(float), nc = (size_t)bc->c * sizeof(float);
  ck_assert_msg(!memcmp(a->y, b->y, n) && !memcmp(a->mean, b->mean, nc) &&
                    !memcmp(a->var, b->var, nc), "[%s] forward: %s", bc->name, what);
  ck_assert_msg(!memcmp(a->dx, b->dx, n) && !memcmp(a->dg, b->dg, nc) && !memcmp(a->db, b->db, nc),
                "[%s] backward: %s", bc->name, what);
}

START_TEST(test_batchnorm_act) {
  const bna_case *bc = &bna_cases[_i / 3];
  const wk_post_act act = (wk_post_act)(_i % 3);
  const char *an = act == WK_POST_NONE ? "none" : act == WK_POST_RELU ? "relu" : "relu6";
  const int64_t m = bc->m, c = bc->c, n = m * c;
  const int off = bc->misalign ? 1 : 0;
  /* 64-byte aligned buffers (plus one float for the misaligned case) */
  float *xb = bna_floats(n), *dyb = bna_floats(n);
  float *g = malloc((size_t)c * sizeof *g), *b = malloc((size_t)c * sizeof *b);
  ck_assert(g && b);
  float *x = xb + off, *dy = dyb + off;
  wkt_fill_f32(x, n, 21 + (uint64_t)_i, -2.0f, 3.0f);
  wkt_fill_f32(dy, n, 22 + (uint64_t)_i, -1.0f, 1.0f);
  wkt_fill_f32(g, c, 23, 0.5f, 1.5f);
  wkt_fill_f32(b, c, 24, -1.0f, 5.0f); /* ReLU6 clips on both sides */
  for (int64_t ch = 0; ch < c; ch++) {
    if (ch % 5 == 4) g[ch] = -g[ch];
    if (ch % 3 == 0)
      for (int64_t r = 0; r < m; r++) x[r * c + ch] += 50.0f;
  }
  bna_out ref, o;
  bna_alloc(&ref, m, c);
  bna_alloc(&o, m, c);
  wk_ctx *ctx2 = wkt_ctx(WK_IMPL_CPU, 2), *ctx1 = wkt_ctx(WK_IMPL_CPU, 1);
  bna_run(ctx2, true, bc, act, x, g, b, dy, &ref);

  /* against double */
  const float *y = ref.y + off, *dx = ref.dx + off;
  double max_y = 1.0, max_dx = 0.0, err_y = 0.0, err_dx = 0.0;
  for (int64_t ch = 0; ch < c; ch++) {
    double s = 0.0, s2 = 0.0;
    for (int64_t r = 0; r < m; r++) s += x[r * c + ch];
    const double mu = s / (double)m;
    for (int64_t r = 0; r < m; r++) s2 += (x[r * c + ch] - mu) * (x[r * c + ch] - mu);
    const double var = s2 / (double)m, is = 1.0 / sqrt(var + 1e-5);
    ck_assert_msg(fabs(ref.mean[ch] - mu) <= 1e-6 * (fabs(mu) + sqrt(var)),
                  "[%s, %s] channel %lld: mean %.9g, want %.9g", bc->name, an, (long long)ch,
                  ref.mean[ch], mu);
    ck_assert_msg(fabs(ref.var[ch] - var) <= 1e-5 * var, "[%s, %s] channel %lld: variance %.9g, "
                  "want %.9g", bc->name, an, (long long)ch, ref.var[ch], var);
    double sdz = 0.0, sdzxh = 0.0, adz = 0.0, adzxh = 0.0;
    for (int64_t r = 0; r < m; r++) {
      const double xh = (x[r * c + ch] - mu) * is, z = xh * g[ch] + b[ch];
      double want = z;
      if (act != WK_POST_NONE) want = want > 0.0 ? want : 0.0;
      if (act == WK_POST_RELU6) want = want < 6.0 ? want : 6.0;
      const float yv = y[r * c + ch];
      max_y = fmax(max_y, fabs(want));
      err_y = fmax(err_y, fabs(yv - want));
      /* the mask of forward's output */
      const bool pass = act == WK_POST_NONE || (yv > 0.0f && (act == WK_POST_RELU || yv < 6.0f));
      const double dz = pass ? dy[r * c + ch] : 0.0;
      sdz += dz, sdzxh += dz * xh, adz += fabs(dz), adzxh += fabs(dz * xh);
    }
    ck_assert_msg(fabs(ref.db[ch] - sdz) <= 1e-5 * adz + 1e-6, "[%s, %s] channel %lld: dbeta "
                  "%.9g, want %.9g", bc->name, an, (long long)ch, ref.db[ch], sdz);
    ck_assert_msg(fabs(ref.dg[ch] - sdzxh) <= 1e-5 * adzxh + 1e-6, "[%s, %s] channel %lld: dgamma "
                  "%.9g, want %.9g", bc->name, an, (long long)ch, ref.dg[ch], sdzxh);
    for (int64_t r = 0; r < m; r++) {
      const double xh = (x[r * c + ch] - mu) * is;
      const float yv = y[r * c + ch];
      const bool pass = act == WK_POST_NONE || (yv > 0.0f && (act == WK_POST_RELU || yv < 6.0f));
      const double dz = pass ? dy[r * c + ch] : 0.0;
      const double want = g[ch] * is * (dz - sdz / (double)m - xh * sdzxh / (double)m);
      max_dx = fmax(max_dx, fabs(g[ch] * is) * (fabs(dz) + fabs(sdz / (double)m) +
                                                fabs(xh * sdzxh / (double)m)));
      err_dx = fmax(err_dx, fabs(dx[r * c + ch] - want));
    }
  }
  ck_assert_msg(err_y <= 2e-5 * max_y, "[%s, %s] output: error %.3g of %.3g", bc->name, an, err_y,
                max_y);
  ck_assert_msg(err_dx <= 1e-4 * max_dx, "[%s, %s] dx: error %.3g, terms up to %.3g", bc->name, an,
                err_dx, max_dx);

  /* the same bits: plain loops, one thread */
  bna_run(ctx2, false, bc, act, x, g, b, dy, &o);
  bna_same("the plain loops differ from AVX-512's", bc, &ref, &o);
  bna_run(ctx1, true, bc, act, x, g, b, dy, &o);
  bna_same("1 thread differs from 2", bc, &ref, &o);
  /* dx over dy, and no dx */
  wk_bn_act *p;
  expect_ok(wk_bn_act_create(m, c, 1e-5f, act, &p), "fused batchnorm");
  float *inplace = o.dx + off;
  memcpy(inplace, dy, (size_t)n * sizeof *dy);
  memset(o.dg, 0, (size_t)c * sizeof *o.dg);
  expect_ok(wk_bn_act_backward(p, ctx2, x, g, b, ref.mean, ref.var, inplace, inplace, NULL, NULL),
            "backward in place");
  ck_assert_msg(!memcmp(inplace, dx, (size_t)n * sizeof *dx), "[%s, %s] dx over dy differs",
                bc->name, an);
  expect_ok(wk_bn_act_backward(p, ctx2, x, g, b, ref.mean, ref.var, dy, NULL, o.dg, o.db),
            "backward without dx");
  ck_assert_msg(!memcmp(o.dg, ref.dg, (size_t)c * sizeof *o.dg) &&
                    !memcmp(o.db, ref.db, (size_t)c * sizeof *o.db),
                "[%s, %s] no dx changes dgamma or dbeta", bc->name, an);
  wk_bn_act_destroy(p);
  if (_i == 0 && !wino_available())
    printf("test_ops: no AVX-512 here: the fused batchnorm's plain loops checked alone\n");
  bna_free(&ref);
  bna_free(&o);
  wk_ctx_destroy(ctx1);
  wk_ctx_destroy(ctx2);
  free(xb), free(dyb), free(g), free(b);
}
END_TEST

/* Which kernels a batchnorm plan runs (ops/plan.h): ReLU6 on whisker's (the
 * same bits as wk_bn_act), none and ReLU on oneDNN's (close, not the same
 * bits) unless $WHISKER_BN_OWN=1; with $WHISKER_BN_OWN=0 a ReLU6 plan is
 * refused by name and networks leave the ReLU6 unfused. */
START_TEST(test_batchnorm_plan_kernels) {
  const bna_case bc = {"plan", 3000, 48, false};
  const int64_t m = bc.m, c = bc.c, n = m * c;
  float *x = malloc((size_t)n * sizeof *x), *dy = malloc((size_t)n * sizeof *dy);
  float g[48], b[48];
  ck_assert(x && dy);
  wkt_fill_f32(x, n, 31, -2.0f, 3.0f);
  wkt_fill_f32(dy, n, 32, -1.0f, 1.0f);
  wkt_fill_f32(g, c, 33, 0.5f, 1.5f);
  wkt_fill_f32(b, c, 34, -1.0f, 5.0f);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  for (int mode = 0; mode < 3; mode++) { /* unset, "1", "0" */
    if (mode == 0) unsetenv("WHISKER_BN_OWN");
    else setenv("WHISKER_BN_OWN", mode == 1 ? "1" : "0", 1);
    ck_assert(wk_batchnorm_fuses(WK_POST_RELU) && wk_batchnorm_fuses(WK_POST_NONE));
    ck_assert(wk_batchnorm_fuses(WK_POST_RELU6) == (mode != 2));
    for (int a = 0; a < 3; a++) {
      const wk_post_act act = (wk_post_act)a;
      wk_batchnorm_plan *plan = NULL;
      wk_status s = wk_batchnorm_plan_create(ctx, m, c, 1e-5f, act, &plan);
      if (mode == 2 && act == WK_POST_RELU6) {
        ck_assert_int_eq(s, WK_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(wk_last_error(), "WHISKER_BN_OWN"), "%s", wk_last_error());
        continue;
      }
      expect_ok(s, "batchnorm plan");
      bna_out want, got;
      bna_alloc(&want, m, c);
      bna_alloc(&got, m, c);
      bna_run(ctx, true, &bc, act, x, g, b, dy, &want);
      expect_ok(wk_batchnorm_plan_forward(plan, x, g, b, got.mean, got.var, got.y), "forward");
      expect_ok(wk_batchnorm_plan_backward(plan, x, g, b, got.mean, got.var, dy, got.dx, got.dg,
                                           got.db), "backward");
      const bool own = act == WK_POST_RELU6 || mode == 1;
      const bool same = !memcmp(got.y, want.y, (size_t)n * sizeof(float)) &&
                        !memcmp(got.dx, want.dx, (size_t)n * sizeof(float)) &&
                        !memcmp(got.var, want.var, (size_t)c * sizeof(float));
      ck_assert_msg(same == own, "mode %d, act %d: %s bits as whisker's kernels", mode, a,
                    same ? "the same" : "not the same");
      ck_assert_msg(wkt_rel_err(got.y, want.y, n, 1e-6) < 1e-5 &&
                        wkt_rel_err(got.dx, want.dx, n, 1e-6) < 1e-4,
                    "mode %d, act %d: oneDNN and whisker disagree", mode, a);
      bna_free(&want);
      bna_free(&got);
      wk_batchnorm_plan_destroy(plan);
    }
  }
  unsetenv("WHISKER_BN_OWN");
  wk_ctx_destroy(ctx);
  free(x), free(dy);
}
END_TEST

/* ------------------------------------------------------------------ elementwise */

static const int64_t elt_sizes[] = {1, 7, 1000, 100003};

START_TEST(test_activations_vs_ref) {
  const int64_t n = elt_sizes[_i % 4];
  const wk_act act = _i < 4 ? WK_ACT_RELU : WK_ACT_RELU6;
  wk_tensor x = rand_tensor(1, &n, 21 + (uint64_t)_i, -8, 8), dy = rand_tensor(1, &n, 22, -1, 1);
  wk_tensor y0 = zeros_like(&x), dx0 = zeros_like(&x), y1 = zeros_like(&x), dx1 = zeros_like(&x);
  /* the edges of both masks, NaN (no gradient, output 0), huge and denormal values */
  const float edge[] = {0.0f, -0.0f, 6.0f, NAN, 1e30f, -1e30f, 1e-40f, 5.9999995f, 6.0000005f};
  for (size_t k = 0; k < sizeof edge / sizeof edge[0] && (int64_t)k < n; k++)
    ((float *)x.data)[k * (size_t)n / (sizeof edge / sizeof edge[0])] = edge[k];
  wk_ctx *ref = wkt_ctx(WK_IMPL_REF, 1);
  expect_ok(wk_act_forward(ref, act, &x, &y0), "ref forward");
  expect_ok(wk_act_backward(ref, act, &x, &dy, &dx0), "ref backward");
  const float *xd = x.data, *yd = y0.data, *dyd = dy.data, *dxd = dx0.data;
  for (int64_t i = 0; i < n; i++) { /* the definition, checked on the reference */
    float want = !(xd[i] > 0) ? 0 : (act == WK_ACT_RELU6 && xd[i] > 6 ? 6 : xd[i]);
    ck_assert_float_eq(yd[i], want);
    bool pass = xd[i] > 0 && (act == WK_ACT_RELU || xd[i] < 6);
    ck_assert_float_eq(dxd[i], pass ? dyd[i] : 0.0f);
  }
  for (int k = 0; k < WK_N_TEST_IMPLS; k++) {
    wk_ctx *ctx = wkt_ctx(wk_test_impls[k], 2);
    expect_ok(wk_act_forward(ctx, act, &x, &y1), "forward");
    expect_ok(wk_act_backward(ctx, act, &x, &dy, &dx1), "backward");
    expect_close("activation forward", act ? "relu6" : "relu", ctx->impl, &y1, &y0, 0);
    expect_close("activation backward", act ? "relu6" : "relu", ctx->impl, &dx1, &dx0, 0);
    /* in place */
    memcpy(y1.data, x.data, wk_tensor_nbytes(&x));
    expect_ok(wk_act_forward(ctx, act, &y1, &y1), "in-place forward");
    expect_close("activation in place", act ? "relu6" : "relu", ctx->impl, &y1, &y0, 0);
    memcpy(dx1.data, dy.data, wk_tensor_nbytes(&dy)); /* training's in-place backward */
    expect_ok(wk_act_backward(ctx, act, &x, &dx1, &dx1), "in-place backward");
    expect_close("activation backward in place", act ? "relu6" : "relu", ctx->impl, &dx1, &dx0, 0);
    wk_ctx_destroy(ctx);
  }
  wk_ctx_destroy(ref);
  wk_tensor *ts[6] = {&x, &dy, &y0, &dx0, &y1, &dx1};
  for (int i = 0; i < 6; i++) wk_tensor_free(ts[i]);
}
END_TEST

START_TEST(test_add_vs_ref) {
  const int64_t n = elt_sizes[_i];
  wk_tensor a = rand_tensor(1, &n, 31, -1, 1), b = rand_tensor(1, &n, 32, -1, 1);
  wk_tensor y0 = zeros_like(&a), y1 = zeros_like(&a), da = zeros_like(&a), db = zeros_like(&a);
  wk_ctx *ref = wkt_ctx(WK_IMPL_REF, 1);
  expect_ok(wk_add_forward(ref, &a, &b, &y0), "ref add");
  for (int64_t i = 0; i < n; i++)
    ck_assert_float_eq(((float *)y0.data)[i], ((float *)a.data)[i] + ((float *)b.data)[i]);
  for (int k = 0; k < WK_N_TEST_IMPLS; k++) {
    wk_ctx *ctx = wkt_ctx(wk_test_impls[k], 2);
    expect_ok(wk_add_forward(ctx, &a, &b, &y1), "add");
    expect_close("add forward", "", ctx->impl, &y1, &y0, 0);
    memcpy(y1.data, a.data, wk_tensor_nbytes(&a)); /* in place, as the residual add runs */
    expect_ok(wk_add_forward(ctx, &y1, &b, &y1), "in-place add");
    expect_close("add forward in place", "", ctx->impl, &y1, &y0, 0);
    expect_ok(wk_add_backward(ctx, &a, &da, &db), "add backward");
    expect_close("add backward a", "", ctx->impl, &da, &a, 0);
    expect_close("add backward b", "", ctx->impl, &db, &a, 0);
    wk_ctx_destroy(ctx);
  }
  wk_ctx_destroy(ref);
  wk_tensor *ts[6] = {&a, &b, &y0, &y1, &da, &db};
  for (int i = 0; i < 6; i++) wk_tensor_free(ts[i]);
}
END_TEST

/* ------------------------------------------------------------------ pooling */

typedef struct {
  const char *name;
  int64_t n, h, w, c;
  wk_pool2d_params p;
} pool_case;

#define PP(kh, kw, sh, sw, pt, pl, pb, pr, inc) \
  {.kernel_h = kh, .kernel_w = kw, .stride_h = sh, .stride_w = sw, .pad_top = pt, \
   .pad_left = pl, .pad_bottom = pb, .pad_right = pr, .count_include_pad = inc}

static const pool_case pool_cases[] = {
    {"3x3 s2 p1 (resnet stem)", 2, 9, 9, 5, PP(3, 3, 2, 2, 1, 1, 1, 1, true)},
    {"2x2 s2", 3, 8, 6, 3, PP(2, 2, 2, 2, 0, 0, 0, 0, true)},
    {"3x3 s1 p1 odd", 1, 7, 5, 17, PP(3, 3, 1, 1, 1, 1, 1, 1, true)},
    {"3x3 s1 p1 exclude pad", 1, 7, 5, 17, PP(3, 3, 1, 1, 1, 1, 1, 1, false)},
    {"2x3 s1x2 asym", 2, 5, 9, 4, PP(2, 3, 1, 2, 0, 1, 1, 0, true)},
    {"window = input", 2, 4, 4, 6, PP(4, 4, 1, 1, 0, 0, 0, 0, true)},
    {"batch 1 many channels", 1, 6, 6, 130, PP(3, 3, 2, 2, 1, 1, 1, 1, false)},
};

START_TEST(test_pooling_vs_ref) {
  const pool_case *pc = &pool_cases[_i];
  wk_pool2d_geom g;
  expect_ok(wk_pool2d_geom_make(&pc->p, pc->n, pc->h, pc->w, pc->c, &g), pc->name);
  const int64_t xs[4] = {g.n, g.h, g.w, g.c}, ys[4] = {g.n, g.oh, g.ow, g.c};
  wk_tensor x = rand_tensor(4, xs, 41 + (uint64_t)_i, -3, 3), dy = rand_tensor(4, ys, 42, -1, 1);
  wk_tensor r[5], o[5]; /* max y, argmax, max dx, avg y, avg dx */
  wk_ctx *ctxs[2] = {wkt_ctx(WK_IMPL_REF, 1), wkt_ctx(wk_test_impls[0], 2)};
  for (int j = 0; j < 2; j++) {
    wk_tensor *t = j ? o : r;
    t[0] = wkt_tensor(WK_F32, 4, ys), t[1] = wkt_tensor(WK_I32, 4, ys), t[2] = zeros_like(&x);
    t[3] = wkt_tensor(WK_F32, 4, ys), t[4] = zeros_like(&x);
    expect_ok(wk_maxpool2d_forward(ctxs[j], &pc->p, &x, &t[0], &t[1]), "max forward");
    expect_ok(wk_maxpool2d_backward(ctxs[j], &pc->p, &t[1], &dy, &t[2]), "max backward");
    expect_ok(wk_avgpool2d_forward(ctxs[j], &pc->p, &x, &t[3]), "avg forward");
    expect_ok(wk_avgpool2d_backward(ctxs[j], &pc->p, &dy, &t[4]), "avg backward");
  }
  /* the reference's max really is the window maximum and argmax points at it */
  const float *xd = x.data, *yd = r[0].data;
  const int32_t *am = r[1].data;
  for (int64_t i = 0; i < wk_tensor_numel(&r[0]); i++) {
    int64_t n = i / (g.oh * g.ow * g.c), c = i % g.c;
    ck_assert_float_eq(yd[i], xd[(n * g.h * g.w + am[i]) * g.c + c]);
  }
  wk_impl im = ctxs[1]->impl;
  expect_close("max pool forward", pc->name, im, &o[0], &r[0], 0);
  ck_assert_msg(!memcmp(o[1].data, r[1].data, wk_tensor_nbytes(&r[1])), "argmax differs [%s]", pc->name);
  expect_close("max pool backward", pc->name, im, &o[2], &r[2], 0);
  expect_close("avg pool forward", pc->name, im, &o[3], &r[3], 1e-6);
  expect_close("avg pool backward", pc->name, im, &o[4], &r[4], 1e-6);
  for (int k = 0; k < 5; k++) wk_tensor_free(&r[k]), wk_tensor_free(&o[k]);
  wk_ctx_destroy(ctxs[0]), wk_ctx_destroy(ctxs[1]);
  wk_tensor_free(&x), wk_tensor_free(&dy);
}
END_TEST

/* Average pooling by hand: 2x2 ones-and-threes, with and without counting pad. */
START_TEST(test_avgpool_known_values) {
  float xd[4] = {1, 3, 3, 1}, yd[4];
  const int64_t xs[4] = {1, 2, 2, 1}, ys[4] = {1, 2, 2, 1};
  wk_tensor x = wk_tensor_view(xd, WK_F32, 4, xs), y = wk_tensor_view(yd, WK_F32, 4, ys);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_REF, 1);
  wk_pool2d_params p = PP(2, 2, 1, 1, 1, 1, 0, 0, true); /* pad top/left only */
  expect_ok(wk_avgpool2d_forward(ctx, &p, &x, &y), "avg");
  /* windows: {pad,pad,pad,1} {pad,pad,1,3} {pad,1,pad,3} {1,3,3,1} */
  ck_assert_float_eq(yd[0], 0.25f); ck_assert_float_eq(yd[1], 1.0f);
  ck_assert_float_eq(yd[2], 1.0f); ck_assert_float_eq(yd[3], 2.0f);
  p.count_include_pad = false;
  expect_ok(wk_avgpool2d_forward(ctx, &p, &x, &y), "avg");
  ck_assert_float_eq(yd[0], 1.0f); ck_assert_float_eq(yd[1], 2.0f);
  ck_assert_float_eq(yd[2], 2.0f); ck_assert_float_eq(yd[3], 2.0f);
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_global_avgpool_vs_ref) {
  const int64_t shapes[3][4] = {{1, 1, 1, 3}, {2, 7, 7, 512}, {5, 3, 5, 9}};
  const int64_t *xs = shapes[_i], vs[2] = {xs[0], xs[3]};
  wk_tensor x = rand_tensor(4, xs, 51, -2, 2), dy = rand_tensor(2, vs, 52, -1, 1);
  wk_tensor y0 = wkt_tensor(WK_F32, 2, vs), y1 = wkt_tensor(WK_F32, 2, vs);
  wk_tensor dx0 = zeros_like(&x), dx1 = zeros_like(&x);
  wk_ctx *ref = wkt_ctx(WK_IMPL_REF, 1), *ctx = wkt_ctx(wk_test_impls[0], 2);
  expect_ok(wk_global_avgpool_forward(ref, &x, &y0), "ref"), expect_ok(wk_global_avgpool_forward(ctx, &x, &y1), "fast");
  expect_ok(wk_global_avgpool_backward(ref, &dy, &dx0), "ref"), expect_ok(wk_global_avgpool_backward(ctx, &dy, &dx1), "fast");
  double s = 0; /* channel 0 of image 0 by hand */
  for (int64_t p = 0; p < xs[1] * xs[2]; p++) s += ((float *)x.data)[p * xs[3]];
  ck_assert_double_le(fabs(((float *)y0.data)[0] - s / (double)(xs[1] * xs[2])), 1e-6);
  expect_close("global avg pool forward", "", ctx->impl, &y1, &y0, 0);
  expect_close("global avg pool backward", "", ctx->impl, &dx1, &dx0, 0);
  wk_ctx_destroy(ref), wk_ctx_destroy(ctx);
  wk_tensor *ts[6] = {&x, &dy, &y0, &y1, &dx0, &dx1};
  for (int i = 0; i < 6; i++) wk_tensor_free(ts[i]);
}
END_TEST

/* ------------------------------------------------------------------ linear */

START_TEST(test_linear_vs_ref) {
  const int64_t cases[5][3] = {{1, 1, 1}, {7, 13, 5}, {32, 512, 10}, {3, 100, 1000}, {17, 9, 33}};
  const int64_t n = cases[_i][0], in = cases[_i][1], out = cases[_i][2];
  const int64_t xs[2] = {n, in}, ws[2] = {out, in}, ys[2] = {n, out};
  wk_tensor x = rand_tensor(2, xs, 61, -1, 1), w = rand_tensor(2, ws, 62, -1, 1);
  wk_tensor b = rand_tensor(1, &out, 63, -1, 1), dy = rand_tensor(2, ys, 64, -1, 1);
  wk_tensor r[4] = {wkt_tensor(WK_F32, 2, ys), zeros_like(&x), zeros_like(&w), zeros_like(&b)};
  wk_tensor o[4] = {wkt_tensor(WK_F32, 2, ys), zeros_like(&x), zeros_like(&w), zeros_like(&b)};
  wk_ctx *ref = wkt_ctx(WK_IMPL_REF, 1), *ctx = wkt_ctx(wk_test_impls[0], 2);
  expect_ok(wk_linear_forward(ref, &x, &w, &b, &r[0]), "ref");
  expect_ok(wk_linear_backward(ref, &x, &w, &dy, &r[1], &r[2], &r[3]), "ref");
  expect_ok(wk_linear_forward(ctx, &x, &w, &b, &o[0]), "fast");
  expect_ok(wk_linear_backward(ctx, &x, &w, &dy, &o[1], &o[2], &o[3]), "fast");
  const char *names[4] = {"linear forward", "linear dx", "linear dw", "linear db"};
  for (int k = 0; k < 4; k++) expect_close(names[k], "", ctx->impl, &o[k], &r[k], 1e-5);
  wk_ctx_destroy(ref), wk_ctx_destroy(ctx);
  for (int k = 0; k < 4; k++) wk_tensor_free(&r[k]), wk_tensor_free(&o[k]);
  wk_tensor_free(&x), wk_tensor_free(&w), wk_tensor_free(&b), wk_tensor_free(&dy);
}
END_TEST

/* ------------------------------------------------------------------ dropout */

START_TEST(test_dropout) {
  const int64_t n = 200003;
  wk_tensor x = rand_tensor(1, &n, 71, 0.5f, 1.5f);
  wk_tensor y[3] = {zeros_like(&x), zeros_like(&x), zeros_like(&x)}, dx = zeros_like(&x);
  wk_dropout_params p = {.p = 0.3f, .seed = 1234, .stream = 7};
  wk_ctx *ctxs[3] = {wkt_ctx(WK_IMPL_REF, 1), wkt_ctx(WK_IMPL_CPU, 1), wkt_ctx(WK_IMPL_CPU, 2)};
  for (int j = 0; j < 3; j++) expect_ok(wk_dropout_forward(ctxs[j], &p, &x, &y[j]), "dropout");
  /* bit-identical for any implementation and thread count */
  expect_close("dropout 1 thread", "", WK_IMPL_CPU, &y[1], &y[0], 0);
  expect_close("dropout 2 threads", "", WK_IMPL_CPU, &y[2], &y[0], 0);
  int64_t dropped = 0;
  const float *xd = x.data, *yd = y[0].data;
  for (int64_t i = 0; i < n; i++) {
    if (yd[i] == 0.0f) dropped++;
    else ck_assert_float_eq_tol(yd[i], xd[i] / 0.7f, 1e-6f);
  }
  /* 0.3 n expected; 5 binomial standard deviations is ~0.005 n */
  ck_assert_msg(fabs((double)dropped / (double)n - 0.3) < 0.005, "dropped %lld of %lld",
                (long long)dropped, (long long)n);
  /* backward applies the same mask */
  expect_ok(wk_dropout_backward(ctxs[2], &p, &x, &dx), "dropout backward");
  expect_close("dropout backward", "", WK_IMPL_CPU, &dx, &y[0], 0);
  /* another stream gives another mask */
  p.stream = 8;
  expect_ok(wk_dropout_forward(ctxs[2], &p, &x, &y[1]), "dropout");
  ck_assert_msg(memcmp(y[1].data, y[0].data, wk_tensor_nbytes(&x)) != 0, "streams 7 and 8 agree");
  for (int j = 0; j < 3; j++) wk_ctx_destroy(ctxs[j]), wk_tensor_free(&y[j]);
  wk_tensor_free(&x), wk_tensor_free(&dx);
}
END_TEST

/* ------------------------------------------------------------------ softmax cross-entropy */

START_TEST(test_softmax_xent_vs_ref) {
  const int64_t cases[4][2] = {{1, 2}, {7, 5}, {64, 1000}, {3, 1}};
  const int64_t n = cases[_i][0], k = cases[_i][1], ls[2] = {n, k};
  wk_tensor logits = rand_tensor(2, ls, 81, -4, 4), labels = wkt_tensor(WK_I32, 1, &n);
  for (int64_t i = 0; i < n; i++) ((int32_t *)labels.data)[i] = (int32_t)((i * 7 + 3) % k);
  for (int s = 0; s < 2; s++) {
    wk_xent_params p = {.label_smoothing = s ? 0.1f : 0.0f};
    wk_tensor pr0 = zeros_like(&logits), pr1 = zeros_like(&logits);
    wk_tensor g0 = zeros_like(&logits), g1 = zeros_like(&logits);
    float l0, l1;
    wk_ctx *ref = wkt_ctx(WK_IMPL_REF, 1), *ctx = wkt_ctx(wk_test_impls[0], 2);
    expect_ok(wk_softmax_xent_forward(ref, &p, &logits, &labels, &pr0, &l0), "ref");
    expect_ok(wk_softmax_xent_forward(ctx, &p, &logits, &labels, &pr1, &l1), "fast");
    expect_ok(wk_softmax_xent_backward(ref, &p, &pr0, &labels, 1.0f, &g0), "ref");
    expect_ok(wk_softmax_xent_backward(ctx, &p, &pr1, &labels, 1.0f, &g1), "fast");
    ck_assert_float_eq(l0, l1);
    expect_close("softmax", "", ctx->impl, &pr1, &pr0, 0);
    expect_close("xent gradient", "", ctx->impl, &g1, &g0, 0);
    /* the definition, on row 0: -sum_j q_j log p_j */
    const float *pd = pr0.data;
    double row = 0, psum = 0;
    for (int64_t j = 0; j < k; j++) {
      double q = (j == ((int32_t *)labels.data)[0] ? 1.0 - p.label_smoothing : 0.0) +
                 p.label_smoothing / (double)k;
      row -= q * log((double)pd[j]);
      psum += pd[j];
    }
    ck_assert_double_le(fabs(psum - 1.0), 1e-5);
    if (n == 1) ck_assert_double_le(fabs(row - (double)l0), 1e-5 * fabs(row) + 1e-6);
    wk_ctx_destroy(ref), wk_ctx_destroy(ctx);
    wk_tensor_free(&pr0), wk_tensor_free(&pr1), wk_tensor_free(&g0), wk_tensor_free(&g1);
  }
  wk_tensor_free(&logits), wk_tensor_free(&labels);
}
END_TEST

START_TEST(test_softmax_xent_large_logits) {
  float ld[3] = {1000.0f, -1000.0f, 999.0f}, pd[3];
  int32_t lab[1] = {2};
  const int64_t ls[2] = {1, 3}, n = 1;
  wk_tensor logits = wk_tensor_view(ld, WK_F32, 2, ls), probs = wk_tensor_view(pd, WK_F32, 2, ls);
  wk_tensor labels = wk_tensor_view(lab, WK_I32, 1, &n);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_xent_params p = {0};
  float loss;
  expect_ok(wk_softmax_xent_forward(ctx, &p, &logits, &labels, &probs, &loss), "xent");
  /* log(1 + e^-1) + 1 = 1.3132617 */
  ck_assert_float_eq_tol(loss, 1.3132617f, 1e-5f);
  ck_assert(isfinite(pd[1]) && pd[1] == 0.0f);
  wk_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------ bad input */

START_TEST(test_errors_name_the_problem) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  const int64_t xs[4] = {1, 5, 5, 4}, ws_bad[4] = {8, 3, 3, 3}, ys[4] = {1, 5, 5, 8};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), w = wkt_tensor(WK_F32, 4, ws_bad), y = wkt_tensor(WK_F32, 4, ys);
  wk_conv2d_params p = wk_conv2d_params_make(1, 1, 1);
  ck_assert_int_eq(wk_conv2d_forward(ctx, &p, &x, &w, NULL, &y), WK_ERR_SHAPE);
  ck_assert_msg(strstr(wk_last_error(), "conv2d weights") != NULL, "message: %s", wk_last_error());
  p.groups = 3; /* does not divide 4 channels */
  ck_assert_int_eq(wk_conv2d_forward(ctx, &p, &x, &w, NULL, &y), WK_ERR_INVALID_ARG);
  ck_assert_msg(strstr(wk_last_error(), "groups") != NULL, "message: %s", wk_last_error());
  p = wk_conv2d_params_make(0, 1, 1);
  ck_assert_int_eq(wk_conv2d_forward(ctx, &p, &x, &w, NULL, &y), WK_ERR_INVALID_ARG);
  /* kernel larger than the padded input */
  const int64_t big[4] = {8, 9, 9, 4};
  wk_tensor wb = wkt_tensor(WK_F32, 4, big);
  p = wk_conv2d_params_make(1, 1, 1);
  ck_assert_int_eq(wk_conv2d_forward(ctx, &p, &x, &wb, NULL, &y), WK_ERR_SHAPE);
  /* labels out of range */
  const int64_t ls[2] = {2, 3}, n = 2;
  wk_tensor logits = wkt_tensor(WK_F32, 2, ls), labels = wkt_tensor(WK_I32, 1, &n);
  ((int32_t *)labels.data)[1] = 3;
  wk_xent_params xp = {0};
  float loss;
  ck_assert_int_eq(wk_softmax_xent_forward(ctx, &xp, &logits, &labels, NULL, &loss), WK_ERR_INVALID_ARG);
  ck_assert_msg(strstr(wk_last_error(), "label 3 of sample 1") != NULL, "message: %s", wk_last_error());
  /* dtype mismatch */
  wk_tensor xi = wkt_tensor(WK_I32, 4, xs), yi = wkt_tensor(WK_F32, 4, xs);
  ck_assert_int_eq(wk_act_forward(ctx, WK_ACT_RELU, &xi, &yi), WK_ERR_SHAPE);
  ck_assert_msg(strstr(wk_last_error(), "dtype i32") != NULL, "message: %s", wk_last_error());
  /* pooling padding over half the kernel */
  wk_pool2d_params pp = wk_pool2d_params_make(2, 1, 2);
  ck_assert_int_eq(wk_maxpool2d_forward(ctx, &pp, &x, &y, NULL), WK_ERR_INVALID_ARG);
  /* batchnorm training on a single value per channel */
  const int64_t one[2] = {1, 4}, c4 = 4;
  wk_tensor x1 = wkt_tensor(WK_F32, 2, one), v[6];
  for (int i = 0; i < 6; i++) v[i] = wkt_tensor(WK_F32, 1, &c4);
  wk_batchnorm_params bp = {.eps = 1e-5f, .momentum = 0.1f};
  ck_assert_int_eq(wk_batchnorm_forward_train(ctx, &bp, &x1, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &x1),
                   WK_ERR_SHAPE);
  for (int i = 0; i < 6; i++) wk_tensor_free(&v[i]);
  wk_tensor *ts[9] = {&x, &w, &y, &wb, &logits, &labels, &xi, &yi, &x1};
  for (int i = 0; i < 9; i++) wk_tensor_free(ts[i]);
  wk_ctx_destroy(ctx);
}
END_TEST

static Suite *ops_suite(void) {
  Suite *s = suite_create("ops");
  TCase *tc = tcase_create("vs_ref");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_conv2d_vs_ref, 0, sizeof conv_cases / sizeof conv_cases[0]);
  tcase_add_test(tc, test_conv2d_sum_direct);
  tcase_add_loop_test(tc, test_conv2d_winograd_vs_ref, 0,
                      6 * (int)(sizeof wino_cases / sizeof wino_cases[0]));
  tcase_add_test(tc, test_conv2d_winograd_pick);
  tcase_add_loop_test(tc, test_conv2d_blocked_layouts, 0,
                      (int)(sizeof blk_cases / sizeof blk_cases[0]));
  tcase_add_loop_test(tc, test_conv2d_pwdw_vs_ref, 0,
                      2 * (int)(sizeof pwdw_cases / sizeof pwdw_cases[0]));
  tcase_add_test(tc, test_conv2d_known_values);
  tcase_add_loop_test(tc, test_batchnorm_vs_ref, 0, sizeof bn_cases / sizeof bn_cases[0]);
  tcase_add_test(tc, test_batchnorm_normalises);
  tcase_add_loop_test(tc, test_batchnorm_act, 0, 3 * (int)(sizeof bna_cases / sizeof bna_cases[0]));
  tcase_add_test(tc, test_batchnorm_plan_kernels);
  tcase_add_loop_test(tc, test_activations_vs_ref, 0, 8);
  tcase_add_loop_test(tc, test_add_vs_ref, 0, 4);
  tcase_add_loop_test(tc, test_pooling_vs_ref, 0, sizeof pool_cases / sizeof pool_cases[0]);
  tcase_add_test(tc, test_avgpool_known_values);
  tcase_add_loop_test(tc, test_global_avgpool_vs_ref, 0, 3);
  tcase_add_loop_test(tc, test_linear_vs_ref, 0, 5);
  tcase_add_test(tc, test_dropout);
  tcase_add_loop_test(tc, test_softmax_xent_vs_ref, 0, 4);
  tcase_add_test(tc, test_softmax_xent_large_logits);
  tcase_add_test(tc, test_errors_name_the_problem);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return wkt_run_suite(ops_suite());
}
