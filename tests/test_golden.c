/* test_golden.c - replays the PyTorch golden run (scripts/gen_golden.py, described
 * in tests/golden/README.md) with whisker's ops, once with the reference
 * implementation and once with the CPU fast path.
 *
 * The net is rebuilt by hand, op by op: forward, then backward in reverse order
 * (the residual's gradient joined with wk_add_backward/wk_add_forward), then
 * torch.optim.SGD's momentum + weight-decay update. Checked against the golden
 * file, each with the normalised error max|a - ref| / max|ref| <= 1e-4: the logits
 * and loss of the first forward, every parameter's gradient, the losses of the 5
 * forwards (one SGD step after each), the BN running statistics after them and
 * the parameters after the 5 steps. Also tests the golden file reader against
 * truncated and corrupted input. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_io.h"
#include "test_util.h"

#define GOLDEN_TOL 1e-4
#define GOLDEN_STEPS 5
#define GOLDEN_FILE "tests/golden/small_net.bin"

/* Fails the test with the call and whisker's message when an op fails. */
#define OK(expr)                                                                   \
  do {                                                                             \
    wk_status ok_s_ = (expr);                                                      \
    ck_assert_msg(ok_s_ == WK_OK, "%s: %s: %s", #expr, wk_status_name(ok_s_),      \
                  wk_last_error());                                                \
  } while (0)

static void golden_path(char *buf, size_t buf_bytes) {
  snprintf(buf, buf_bytes, "%s/%s", wkt_source_dir(), GOLDEN_FILE);
}

/* ------------------------------------------------------------------ the net */

enum { P_STEM_W, P_STEM_G, P_STEM_B, P_R1_W, P_R1_G, P_R1_B, P_R2_W, P_R2_G, P_R2_B,
       P_DW_W, P_DW_BIAS, P_DW_G, P_DW_B, P_PW_W, P_PW_G, P_PW_B, P_FC_W, P_FC_B, N_PARAMS };

static const struct {
  const char *name; /* as in the file, after "init.", "grad.", "final." */
  int ndim;
  int64_t shape[4];
  int floor_from; /* see check_grads; -1 for none */
} k_params[N_PARAMS] = {
    {"stem.conv.w", 4, {8, 3, 3, 3}, -1}, {"stem.bn.gamma", 1, {8}, -1},
    {"stem.bn.beta", 1, {8}, -1},         {"res.conv1.w", 4, {8, 3, 3, 8}, -1},
    {"res.bn1.gamma", 1, {8}, -1},        {"res.bn1.beta", 1, {8}, -1},
    {"res.conv2.w", 4, {8, 3, 3, 8}, -1}, {"res.bn2.gamma", 1, {8}, -1},
    {"res.bn2.beta", 1, {8}, -1},         {"dw.conv.w", 4, {8, 3, 3, 1}, -1},
    {"dw.conv.b", 1, {8}, P_DW_W},        {"dw.bn.gamma", 1, {8}, -1},
    {"dw.bn.beta", 1, {8}, -1},           {"pw.conv.w", 4, {16, 1, 1, 8}, -1},
    {"pw.bn.gamma", 1, {16}, -1},         {"pw.bn.beta", 1, {16}, -1},
    {"fc.w", 2, {5, 16}, -1},             {"fc.b", 1, {5}, -1},
};

enum { BN_STEM, BN_R1, BN_R2, BN_DW, BN_PW, N_BN };

static const struct {
  const char *name; /* after "running_mean." / "running_var." */
  int gamma, beta;
  int64_t channels;
} k_bns[N_BN] = {
    {"stem.bn", P_STEM_G, P_STEM_B, 8}, {"res.bn1", P_R1_G, P_R1_B, 8},
    {"res.bn2", P_R2_G, P_R2_B, 8},     {"dw.bn", P_DW_G, P_DW_B, 8},
    {"pw.bn", P_PW_G, P_PW_B, 16},
};

/* Activations: x, then per unit conv output (C), BN output (B), activation (A). */
enum { A_X, A_C1, A_B1, A_A1, A_C2, A_B2, A_A2, A_C3, A_B3, A_S, A_A3, A_C4, A_B4, A_A4,
       A_C5, A_B5, A_A5, A_MP, A_AP, A_G, A_LOGITS, N_ACTS };

static const struct {
  int ndim;
  int64_t shape[4];
} k_acts[N_ACTS] = {
    [A_X] = {4, {4, 16, 16, 3}},  [A_C1] = {4, {4, 16, 16, 8}}, [A_B1] = {4, {4, 16, 16, 8}},
    [A_A1] = {4, {4, 16, 16, 8}}, [A_C2] = {4, {4, 16, 16, 8}}, [A_B2] = {4, {4, 16, 16, 8}},
    [A_A2] = {4, {4, 16, 16, 8}}, [A_C3] = {4, {4, 16, 16, 8}}, [A_B3] = {4, {4, 16, 16, 8}},
    [A_S] = {4, {4, 16, 16, 8}},  [A_A3] = {4, {4, 16, 16, 8}}, [A_C4] = {4, {4, 8, 8, 8}},
    [A_B4] = {4, {4, 8, 8, 8}},   [A_A4] = {4, {4, 8, 8, 8}},   [A_C5] = {4, {4, 8, 8, 16}},
    [A_B5] = {4, {4, 8, 8, 16}},  [A_A5] = {4, {4, 8, 8, 16}},  [A_MP] = {4, {4, 4, 4, 16}},
    [A_AP] = {4, {4, 2, 2, 16}},  [A_G] = {2, {4, 16}},         [A_LOGITS] = {2, {4, 5}},
};

typedef struct net {
  wk_tensor p[N_PARAMS], g[N_PARAMS], buf[N_PARAMS]; /* params, grads, momentum */
  wk_tensor v[N_ACTS], d[N_ACTS];                    /* activations, their grads */
  wk_tensor rmean[N_BN], rvar[N_BN], mean[N_BN], invstd[N_BN]; /* (C) each */
  wk_tensor argmax; /* (4, 4, 4, 16) i32 */
  wk_tensor probs;  /* (4, 5) */
  wk_tensor dskip;  /* (4, 16, 16, 8): the residual's identity-branch gradient */
  const wk_tensor *labels; /* (4) i32, owned by the golden file */
  wk_conv2d_params conv3, conv_dw, conv1;
  wk_pool2d_params maxpool, avgpool;
  wk_batchnorm_params bn;
  wk_xent_params xent;
  float lr, momentum, weight_decay;
} net;

static const wk_tensor *golden_get(const wkg_file *f, const char *name, wk_dtype dtype,
                                   int ndim, const int64_t *shape) {
  const wk_tensor *t = NULL;
  OK(wkg_get(f, name, dtype, ndim, shape, &t));
  return t;
}

static wk_tensor copy_of(const wk_tensor *src) {
  wk_tensor t = wkt_tensor(src->dtype, src->ndim, src->shape);
  memcpy(t.data, src->data, wk_tensor_nbytes(src));
  return t;
}

static void net_init_hparams(net *n, const wkg_file *f) {
  const float *h = golden_get(f, "hparams", WK_F32, 1, (int64_t[]){6})->data;
  n->lr = h[0];
  n->momentum = h[1];
  n->weight_decay = h[2];
  n->xent.label_smoothing = h[3];
  n->bn.eps = h[4];
  n->bn.momentum = h[5];
  n->conv3 = wk_conv2d_params_make(1, 1, 1);
  n->conv_dw = wk_conv2d_params_make(2, 1, 8);
  n->conv1 = wk_conv2d_params_make(1, 0, 1);
  n->maxpool = wk_pool2d_params_make(3, 2, 1);
  n->avgpool = wk_pool2d_params_make(2, 2, 0);
  n->avgpool.count_include_pad = true; /* torch's default; no padding here anyway */
}

static void net_init(net *n, const wkg_file *f) {
  memset(n, 0, sizeof *n);
  net_init_hparams(n, f);
  char name[128];
  for (int i = 0; i < N_PARAMS; i++) {
    snprintf(name, sizeof name, "init.%s", k_params[i].name);
    n->p[i] = copy_of(golden_get(f, name, WK_F32, k_params[i].ndim, k_params[i].shape));
    n->g[i] = wkt_tensor(WK_F32, k_params[i].ndim, k_params[i].shape);
    n->buf[i] = wkt_tensor(WK_F32, k_params[i].ndim, k_params[i].shape);
  }
  for (int i = 0; i < N_ACTS; i++) {
    n->v[i] = wkt_tensor(WK_F32, k_acts[i].ndim, k_acts[i].shape);
    n->d[i] = wkt_tensor(WK_F32, k_acts[i].ndim, k_acts[i].shape);
  }
  const wk_tensor *x = golden_get(f, "input", WK_F32, 4, k_acts[A_X].shape);
  memcpy(n->v[A_X].data, x->data, wk_tensor_nbytes(x));
  n->labels = golden_get(f, "labels", WK_I32, 1, (int64_t[]){4});
  for (int b = 0; b < N_BN; b++) {
    const int64_t *c = &k_bns[b].channels;
    n->rmean[b] = wkt_tensor(WK_F32, 1, c); /* torch starts at mean 0, var 1 */
    n->rvar[b] = wkt_tensor(WK_F32, 1, c);
    for (int64_t i = 0; i < *c; i++) ((float *)n->rvar[b].data)[i] = 1.0f;
    n->mean[b] = wkt_tensor(WK_F32, 1, c);
    n->invstd[b] = wkt_tensor(WK_F32, 1, c);
  }
  n->argmax = wkt_tensor(WK_I32, 4, k_acts[A_MP].shape);
  n->probs = wkt_tensor(WK_F32, 2, k_acts[A_LOGITS].shape);
  n->dskip = wkt_tensor(WK_F32, 4, k_acts[A_A1].shape);
}

static void net_free(net *n) {
  for (int i = 0; i < N_PARAMS; i++) {
    wk_tensor_free(&n->p[i]);
    wk_tensor_free(&n->g[i]);
    wk_tensor_free(&n->buf[i]);
  }
  for (int i = 0; i < N_ACTS; i++) {
    wk_tensor_free(&n->v[i]);
    wk_tensor_free(&n->d[i]);
  }
  for (int b = 0; b < N_BN; b++) {
    wk_tensor_free(&n->rmean[b]);
    wk_tensor_free(&n->rvar[b]);
    wk_tensor_free(&n->mean[b]);
    wk_tensor_free(&n->invstd[b]);
  }
  wk_tensor_free(&n->argmax);
  wk_tensor_free(&n->probs);
  wk_tensor_free(&n->dskip);
}

/* ------------------------------------------------------------------ forward */

static void conv_fwd(wk_ctx *ctx, net *n, const wk_conv2d_params *cp, int in, int w, int b,
                     int out) {
  OK(wk_conv2d_forward(ctx, cp, &n->v[in], &n->p[w], b >= 0 ? &n->p[b] : NULL, &n->v[out]));
}

static void bn_fwd(wk_ctx *ctx, net *n, int bn, int in, int out) {
  OK(wk_batchnorm_forward_train(ctx, &n->bn, &n->v[in], &n->p[k_bns[bn].gamma],
                                &n->p[k_bns[bn].beta], &n->rmean[bn], &n->rvar[bn],
                                &n->mean[bn], &n->invstd[bn], &n->v[out]));
}

static void act_fwd(wk_ctx *ctx, net *n, wk_act act, int in, int out) {
  OK(wk_act_forward(ctx, act, &n->v[in], &n->v[out]));
}

/* Runs the whole net on the golden batch; returns the loss. */
static float net_forward(wk_ctx *ctx, net *n) {
  wk_tensor *v = n->v;
  conv_fwd(ctx, n, &n->conv3, A_X, P_STEM_W, -1, A_C1);
  bn_fwd(ctx, n, BN_STEM, A_C1, A_B1);
  act_fwd(ctx, n, WK_ACT_RELU, A_B1, A_A1);
  conv_fwd(ctx, n, &n->conv3, A_A1, P_R1_W, -1, A_C2);
  bn_fwd(ctx, n, BN_R1, A_C2, A_B2);
  act_fwd(ctx, n, WK_ACT_RELU, A_B2, A_A2);
  conv_fwd(ctx, n, &n->conv3, A_A2, P_R2_W, -1, A_C3);
  bn_fwd(ctx, n, BN_R2, A_C3, A_B3);
  OK(wk_add_forward(ctx, &v[A_B3], &v[A_A1], &v[A_S]));
  act_fwd(ctx, n, WK_ACT_RELU, A_S, A_A3);
  conv_fwd(ctx, n, &n->conv_dw, A_A3, P_DW_W, P_DW_BIAS, A_C4);
  bn_fwd(ctx, n, BN_DW, A_C4, A_B4);
  act_fwd(ctx, n, WK_ACT_RELU6, A_B4, A_A4);
  conv_fwd(ctx, n, &n->conv1, A_A4, P_PW_W, -1, A_C5);
  bn_fwd(ctx, n, BN_PW, A_C5, A_B5);
  act_fwd(ctx, n, WK_ACT_RELU, A_B5, A_A5);
  OK(wk_maxpool2d_forward(ctx, &n->maxpool, &v[A_A5], &v[A_MP], &n->argmax));
  OK(wk_avgpool2d_forward(ctx, &n->avgpool, &v[A_MP], &v[A_AP]));
  OK(wk_global_avgpool_forward(ctx, &v[A_AP], &v[A_G]));
  OK(wk_linear_forward(ctx, &v[A_G], &n->p[P_FC_W], &n->p[P_FC_B], &v[A_LOGITS]));
  float loss = NAN;
  OK(wk_softmax_xent_forward(ctx, &n->xent, &v[A_LOGITS], n->labels, &n->probs, &loss));
  return loss;
}

/* ------------------------------------------------------------------ backward */

static void conv_bwd(wk_ctx *ctx, net *n, const wk_conv2d_params *cp, int in, int w, int b,
                     int out) {
  OK(wk_conv2d_backward(ctx, cp, &n->v[in], &n->p[w], &n->d[out], in == A_X ? NULL : &n->d[in],
                        &n->g[w], b >= 0 ? &n->g[b] : NULL));
}

static void bn_bwd(wk_ctx *ctx, net *n, int bn, int in, int out) {
  const int gm = k_bns[bn].gamma, bt = k_bns[bn].beta;
  OK(wk_batchnorm_backward(ctx, &n->bn, false, &n->v[in], &n->p[gm], &n->mean[bn],
                           &n->invstd[bn], &n->d[out], &n->d[in], &n->g[gm], &n->g[bt]));
}

static void act_bwd(wk_ctx *ctx, net *n, wk_act act, int in, int out) {
  OK(wk_act_backward(ctx, act, &n->v[in], &n->d[out], &n->d[in]));
}

/* Gradients of the loss of the last net_forward into n->g. */
static void net_backward(wk_ctx *ctx, net *n) {
  wk_tensor *v = n->v, *d = n->d;
  OK(wk_softmax_xent_backward(ctx, &n->xent, &n->probs, n->labels, 1.0f, &d[A_LOGITS]));
  OK(wk_linear_backward(ctx, &v[A_G], &n->p[P_FC_W], &d[A_LOGITS], &d[A_G], &n->g[P_FC_W],
                        &n->g[P_FC_B]));
  OK(wk_global_avgpool_backward(ctx, &d[A_G], &d[A_AP]));
  OK(wk_avgpool2d_backward(ctx, &n->avgpool, &d[A_AP], &d[A_MP]));
  OK(wk_maxpool2d_backward(ctx, &n->maxpool, &n->argmax, &d[A_MP], &d[A_A5]));
  act_bwd(ctx, n, WK_ACT_RELU, A_B5, A_A5);
  bn_bwd(ctx, n, BN_PW, A_C5, A_B5);
  conv_bwd(ctx, n, &n->conv1, A_A4, P_PW_W, -1, A_C5);
  act_bwd(ctx, n, WK_ACT_RELU6, A_B4, A_A4);
  bn_bwd(ctx, n, BN_DW, A_C4, A_B4);
  conv_bwd(ctx, n, &n->conv_dw, A_A3, P_DW_W, P_DW_BIAS, A_C4);
  act_bwd(ctx, n, WK_ACT_RELU, A_S, A_A3);
  OK(wk_add_backward(ctx, &d[A_S], &d[A_B3], &n->dskip));
  bn_bwd(ctx, n, BN_R2, A_C3, A_B3);
  conv_bwd(ctx, n, &n->conv3, A_A2, P_R2_W, -1, A_C3);
  act_bwd(ctx, n, WK_ACT_RELU, A_B2, A_A2);
  bn_bwd(ctx, n, BN_R1, A_C2, A_B2);
  conv_bwd(ctx, n, &n->conv3, A_A1, P_R1_W, -1, A_C2);
  OK(wk_add_forward(ctx, &d[A_A1], &n->dskip, &d[A_A1])); /* join the two branches */
  act_bwd(ctx, n, WK_ACT_RELU, A_B1, A_A1);
  bn_bwd(ctx, n, BN_STEM, A_C1, A_B1);
  conv_bwd(ctx, n, &n->conv3, A_X, P_STEM_W, -1, A_C1);
}

/* torch.optim.SGD (dampening 0, not Nesterov): d = g + wd p; buf = d on the first
 * step, else momentum buf + d; p -= lr buf. */
static void net_sgd_step(net *n, int step) {
  for (int i = 0; i < N_PARAMS; i++) {
    float *p = n->p[i].data, *buf = n->buf[i].data;
    const float *g = n->g[i].data;
    for (int64_t j = 0; j < wk_tensor_numel(&n->p[i]); j++) {
      const float dp = g[j] + n->weight_decay * p[j];
      buf[j] = step == 0 ? dp : n->momentum * buf[j] + dp;
      p[j] -= n->lr * buf[j];
    }
  }
}

/* ------------------------------------------------------------------ comparisons */

enum { CAT_LOGITS, CAT_LOSS, CAT_GRAD, CAT_LOSSES, CAT_RUNNING, CAT_FINAL, N_CAT };
static const char *const k_cat_names[N_CAT] = {"logits", "loss", "grads", "losses",
                                               "running stats", "final params"};

typedef struct report {
  const char *impl;
  int n_checks, n_fail;
  char first_fail[256];
  double max_err[N_CAT];
  char worst[N_CAT][128];
} report;

static double max_abs(const wk_tensor *t) {
  const float *p = t->data;
  double m = 0.0;
  for (int64_t i = 0; i < wk_tensor_numel(t); i++) m = fmax(m, fabs((double)p[i]));
  return m;
}

/* Compares `got` with the golden record `ref_name` (which must exist with got's
 * shape); errors are normalised by max(max|ref|, norm_floor). Failures are printed and
 * counted, and the caller asserts on the count, so one run names every bad tensor. */
static void compare(report *r, int cat, const wkg_file *f, const char *ref_name,
                    const wk_tensor *got, double norm_floor) {
  const wk_tensor *ref = golden_get(f, ref_name, WK_F32, got->ndim, got->shape);
  const double err = wkt_rel_err(got->data, ref->data, wk_tensor_numel(got), norm_floor);
  r->n_checks++;
  if (!(err <= r->max_err[cat]) || !r->worst[cat][0]) {
    r->max_err[cat] = err;
    snprintf(r->worst[cat], sizeof r->worst[cat], "%s", ref_name);
  }
  if (err <= GOLDEN_TOL) return;
  char msg[256];
  snprintf(msg, sizeof msg, "golden [%s]: %s: relative error %.3e > %.0e (max|ref| %.3e)",
           r->impl, ref_name, err, GOLDEN_TOL, max_abs(ref));
  fprintf(stderr, "%s\n", msg);
  if (r->n_fail++ == 0) snprintf(r->first_fail, sizeof r->first_fail, "%s", msg);
}

static void compare_scalars(report *r, int cat, const wkg_file *f, const char *ref_name,
                            float *vals, int64_t n) {
  wk_tensor t = wk_tensor_view(vals, WK_F32, 1, &n);
  compare(r, cat, f, ref_name, &t, 1e-6);
}

/* The bias of the depthwise conv feeds a training-mode BN, so its gradient is zero
 * up to rounding (~1e-7 in torch): it is normalised by its weight's gradient scale
 * instead of its own (k_params[].floor_from). */
static void check_grads(report *r, const wkg_file *f, const net *n) {
  char name[128];
  for (int i = 0; i < N_PARAMS; i++) {
    double norm_floor = 1e-6;
    const int j = k_params[i].floor_from;
    if (j >= 0) {
      snprintf(name, sizeof name, "grad.%s", k_params[j].name);
      norm_floor = max_abs(golden_get(f, name, WK_F32, k_params[j].ndim, k_params[j].shape));
    }
    snprintf(name, sizeof name, "grad.%s", k_params[i].name);
    compare(r, CAT_GRAD, f, name, &n->g[i], norm_floor);
  }
}

static void check_final(report *r, const wkg_file *f, const net *n) {
  char name[128];
  for (int b = 0; b < N_BN; b++) {
    snprintf(name, sizeof name, "running_mean.%s", k_bns[b].name);
    compare(r, CAT_RUNNING, f, name, &n->rmean[b], 1e-6);
    snprintf(name, sizeof name, "running_var.%s", k_bns[b].name);
    compare(r, CAT_RUNNING, f, name, &n->rvar[b], 1e-6);
  }
  for (int i = 0; i < N_PARAMS; i++) {
    snprintf(name, sizeof name, "final.%s", k_params[i].name);
    compare(r, CAT_FINAL, f, name, &n->p[i], 1e-6);
  }
}

static int count_prefix(const wkg_file *f, const char *prefix) {
  int count = 0;
  for (int i = 0; i < f->n_records; i++)
    count += strncmp(f->records[i].name, prefix, strlen(prefix)) == 0;
  return count;
}

/* The file holds exactly the records this test checks, so none goes unchecked. */
static void check_file_covered(const wkg_file *f) {
  ck_assert_int_eq(count_prefix(f, "init."), N_PARAMS);
  ck_assert_int_eq(count_prefix(f, "grad."), N_PARAMS);
  ck_assert_int_eq(count_prefix(f, "final."), N_PARAMS);
  ck_assert_int_eq(count_prefix(f, "running_mean."), N_BN);
  ck_assert_int_eq(count_prefix(f, "running_var."), N_BN);
  ck_assert_int_eq(f->n_records, 3 * N_PARAMS + 2 * N_BN + 6);
}

static void print_report(const report *r) {
  printf("golden [%s]: %d checks, %d failed; max relative error:", r->impl, r->n_checks,
         r->n_fail);
  for (int c = 0; c < N_CAT; c++)
    printf("%s %s %.2e (%s)", c ? "," : "", k_cat_names[c], r->max_err[c], r->worst[c]);
  printf("\n");
  fflush(stdout);
}

/* ------------------------------------------------------------------ the golden run */

static void run_golden(wk_impl impl, int n_threads) {
  char path[1024];
  golden_path(path, sizeof path);
  wkg_file f;
  OK(wkg_load(path, &f));
  check_file_covered(&f);
  wk_ctx *ctx = wkt_ctx(impl, n_threads);
  net n;
  net_init(&n, &f);
  report r = {.impl = wk_impl_name(impl)};
  float losses[GOLDEN_STEPS];
  for (int step = 0; step < GOLDEN_STEPS; step++) {
    losses[step] = net_forward(ctx, &n);
    net_backward(ctx, &n);
    if (step == 0) {
      compare(&r, CAT_LOGITS, &f, "logits", &n.v[A_LOGITS], 1e-6);
      compare_scalars(&r, CAT_LOSS, &f, "loss", &losses[0], 1);
      check_grads(&r, &f, &n);
    }
    net_sgd_step(&n, step);
  }
  compare_scalars(&r, CAT_LOSSES, &f, "losses", losses, GOLDEN_STEPS);
  check_final(&r, &f, &n);
  print_report(&r);
  ck_assert_int_eq(r.n_checks, 2 + N_PARAMS + 1 + 2 * N_BN + N_PARAMS);
  ck_assert_msg(r.n_fail == 0, "golden [%s]: %d of %d checks over %.0e; first: %s", r.impl,
                r.n_fail, r.n_checks, GOLDEN_TOL, r.first_fail);
  net_free(&n);
  wk_ctx_destroy(ctx);
  wkg_free(&f);
}

START_TEST(test_golden_ref) { run_golden(WK_IMPL_REF, 1); }
END_TEST

START_TEST(test_golden_cpu) { run_golden(WK_IMPL_CPU, 2); }
END_TEST

/* ------------------------------------------------------------------ the reader */

typedef struct byte_buf {
  uint8_t b[1024];
  size_t n;
} byte_buf;

static void put_bytes(byte_buf *bb, const void *p, size_t n) {
  ck_assert_uint_le(bb->n + n, sizeof bb->b);
  memcpy(bb->b + bb->n, p, n);
  bb->n += n;
}

static void put_u32(byte_buf *bb, uint32_t v) {
  const uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put_bytes(bb, le, 4);
}

/* A record with `ndim` dims and `n_words` 4-byte elements (which need not agree). */
static void put_record(byte_buf *bb, const char *name, uint32_t dtype, uint32_t ndim,
                       const uint32_t *dims, uint32_t n_words, const uint32_t *words) {
  put_u32(bb, (uint32_t)strlen(name));
  put_bytes(bb, name, strlen(name));
  put_u32(bb, dtype);
  put_u32(bb, ndim);
  for (uint32_t i = 0; i < ndim; i++) put_u32(bb, dims[i]);
  for (uint32_t i = 0; i < n_words; i++) put_u32(bb, words[i]);
}

static void put_header(byte_buf *bb, uint32_t n_records) {
  bb->n = 0;
  put_bytes(bb, WKG_MAGIC, 8);
  put_u32(bb, n_records);
}

/* Parses `bb` expecting WK_ERR_FORMAT with `needle` and the path in the message. */
static void expect_format_error(const byte_buf *bb, const char *needle) {
  wkg_file f;
  wk_status s = wkg_parse(bb->b, bb->n, "crafted.bin", &f);
  ck_assert_msg(s == WK_ERR_FORMAT, "expected a format error (%s), got %s: %s", needle,
                wk_status_name(s), wk_last_error());
  ck_assert_msg(strstr(wk_last_error(), "crafted.bin") && strstr(wk_last_error(), needle),
                "message '%s' lacks the file name or '%s'", wk_last_error(), needle);
  ck_assert(f.records == NULL && f.n_records == 0 && f.path == NULL);
  wkg_free(&f);
}

/* Byte ranges [start, end) of the file's headers: magic and count, then each
 * record's name length, name, dtype, ndim and dims. Returns their count; checks
 * that the records end exactly at n_bytes. */
static int header_spans(const wkg_file *f, size_t n_bytes, size_t *start, size_t *end,
                        int max_spans) {
  ck_assert_int_le(f->n_records + 1, max_spans);
  size_t off = 12;
  start[0] = 0;
  end[0] = 12;
  for (int i = 0; i < f->n_records; i++) {
    const wk_tensor *t = &f->records[i].t;
    start[i + 1] = off;
    end[i + 1] = off + 4 + strlen(f->records[i].name) + 8 + 4 * (size_t)t->ndim;
    off = end[i + 1] + wk_tensor_nbytes(t);
  }
  ck_assert_uint_eq(off, n_bytes);
  return f->n_records + 1;
}

START_TEST(test_io_load) {
  char path[1024];
  golden_path(path, sizeof path);
  wkg_file f;
  OK(wkg_load(path, &f));
  ck_assert_int_eq(f.n_records, 3 * N_PARAMS + 2 * N_BN + 6);
  const wk_tensor *t = NULL;
  OK(wkg_get(&f, "logits", WK_F32, 2, (int64_t[]){4, 5}, &t));
  ck_assert_ptr_eq(t, wkg_find(&f, "logits"));
  ck_assert_ptr_null(wkg_find(&f, "no.such.record"));
  ck_assert_int_eq(wkg_get(&f, "logits", WK_F32, 2, (int64_t[]){5, 4}, &t), WK_ERR_FORMAT);
  ck_assert_msg(strstr(wk_last_error(), path) && strstr(wk_last_error(), "logits"), "%s",
                wk_last_error());
  ck_assert_int_eq(wkg_get(&f, "labels", WK_F32, 1, (int64_t[]){4}, &t), WK_ERR_FORMAT);
  ck_assert_int_eq(wkg_get(&f, "no.such.record", WK_F32, 1, (int64_t[]){1}, &t), WK_ERR_FORMAT);
  ck_assert_ptr_null(t);
  const int32_t *labels = wkg_find(&f, "labels")->data;
  for (int i = 0; i < 4; i++) ck_assert(labels[i] >= 0 && labels[i] < 5);
  wkg_free(&f);
  wkg_free(&f); /* safe twice */

  ck_assert_int_eq(wkg_load("/nonexistent/golden.bin", &f), WK_ERR_IO);
  ck_assert_msg(strstr(wk_last_error(), "/nonexistent/golden.bin"), "%s", wk_last_error());
  wkg_free(&f);
}
END_TEST

START_TEST(test_io_crafted) {
  const uint32_t one[1] = {1}, two[2] = {2, 1}, data[2] = {0x3fc00000u, 0xfffffffdu};
  byte_buf bb;
  put_header(&bb, 2); /* a valid file: f32 (1) = 1.5, i32 (2, 1) = {-3, ...} */
  put_record(&bb, "a", 0, 1, one, 1, data);
  put_record(&bb, "b", 1, 2, two, 2, (const uint32_t[]){0xfffffffdu, 7});
  wkg_file f;
  OK(wkg_parse(bb.b, bb.n, "crafted.bin", &f));
  ck_assert_float_eq(((const float *)wkg_find(&f, "a")->data)[0], 1.5f);
  ck_assert_int_eq(((const int32_t *)wkg_find(&f, "b")->data)[0], -3);
  ck_assert_int_eq(wkg_find(&f, "b")->shape[0], 2);
  wkg_free(&f);

  bb.b[0] = 'X';
  expect_format_error(&bb, "magic");
  put_header(&bb, 0);
  expect_format_error(&bb, "record count");
  put_header(&bb, 0xffffffffu);
  expect_format_error(&bb, "record count");
  put_header(&bb, 2);
  put_record(&bb, "a", 0, 1, one, 1, data);
  put_record(&bb, "a", 0, 1, one, 1, data);
  expect_format_error(&bb, "duplicate");
  put_header(&bb, 1);
  put_record(&bb, "a", 0, 1, one, 2, data);
  expect_format_error(&bb, "trailing");
  put_header(&bb, 1);
  put_record(&bb, "a", 2, 1, one, 1, data);
  expect_format_error(&bb, "dtype");
  put_header(&bb, 1);
  put_record(&bb, "a", 0, 0, one, 1, data);
  expect_format_error(&bb, "ndim");
  put_header(&bb, 1);
  put_record(&bb, "a", 0, 7, (const uint32_t[]){1, 1, 1, 1, 1, 1, 1}, 1, data);
  expect_format_error(&bb, "ndim");
  put_header(&bb, 1);
  put_record(&bb, "a", 0, 2, (const uint32_t[]){1, 0}, 1, data);
  expect_format_error(&bb, "zero or larger");
  put_header(&bb, 1);
  put_record(&bb, "a", 0, 4, (const uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu, 2}, 1,
             data);
  expect_format_error(&bb, "zero or larger");
  put_header(&bb, 1);
  put_record(&bb, "a", 0, 1, (const uint32_t[]){2}, 1, data);
  expect_format_error(&bb, "past the end");
  put_header(&bb, 1);
  put_record(&bb, "a\tb", 0, 1, one, 1, data);
  expect_format_error(&bb, "printable");
  put_header(&bb, 1);
  put_u32(&bb, 0xffffffffu);
  expect_format_error(&bb, "name length");
  put_header(&bb, 1);
  put_u32(&bb, 200);
  put_bytes(&bb, "abc", 3);
  expect_format_error(&bb, "past the end");
}
END_TEST

/* The golden file's bytes and the spans of its headers (at most 256). */
typedef struct {
  uint8_t *buf;
  size_t n_bytes;
  size_t start[256], end[256];
  int n_spans;
} golden_bytes;

static void golden_bytes_load(golden_bytes *g) {
  char path[1024];
  golden_path(path, sizeof path);
  g->buf = wkt_read_file(path, &g->n_bytes);
  wkg_file f;
  OK(wkg_parse(g->buf, g->n_bytes, path, &f));
  g->n_spans = header_spans(&f, g->n_bytes, g->start, g->end, 256);
  wkg_free(&f);
}

/* Every truncation inside or just after a header fails cleanly, as do a sample
 * of truncations inside the data. */
START_TEST(test_io_truncated) {
  golden_bytes g;
  golden_bytes_load(&g);
  uint8_t *buf = g.buf;
  const size_t n_bytes = g.n_bytes;
  const size_t *start = g.start, *end = g.end;
  const int n_spans = g.n_spans;
  wkg_file f;
  int n_tried = 0;
  for (size_t len = 0; len < n_bytes; len++) {
    bool near_header = len % 97 == 0 || len + 8 > n_bytes;
    for (int s = 0; s < n_spans && !near_header; s++)
      near_header = len >= start[s] && len <= end[s] + 8;
    if (!near_header) continue;
    wk_status st = wkg_parse(buf, len, "trunc.bin", &f);
    ck_assert_msg(st == WK_ERR_FORMAT, "truncated at %zu: %s", len, wk_status_name(st));
    ck_assert_msg(strstr(wk_last_error(), "trunc.bin"), "%s", wk_last_error());
    ck_assert(f.records == NULL && f.n_records == 0);
    n_tried++;
  }
  ck_assert_int_gt(n_tried, 2000);
  free(buf);
}
END_TEST

/* Every header byte replaced by a few values either parses (e.g. a renamed
 * record) or fails with a format error; nothing crashes or leaks. */
START_TEST(test_io_corrupted) {
  golden_bytes g;
  golden_bytes_load(&g);
  uint8_t *buf = g.buf;
  const size_t n_bytes = g.n_bytes;
  const size_t *start = g.start, *end = g.end;
  const int n_spans = g.n_spans;
  wkg_file f;
  const uint8_t values[] = {0x00, 0x01, 0x7f, 0xff};
  int n_fail = 0, n_tried = 0;
  for (int s = 0; s < n_spans; s++)
    for (size_t i = start[s]; i < end[s]; i++)
      for (size_t v = 0; v < sizeof values; v++) {
        const uint8_t saved = buf[i];
        if (values[v] == saved) continue;
        buf[i] = values[v];
        wk_status st = wkg_parse(buf, n_bytes, "corrupt.bin", &f);
        buf[i] = saved;
        ck_assert_msg(st == WK_OK || st == WK_ERR_FORMAT, "byte %zu = %u: %s", i, values[v],
                      wk_status_name(st));
        if (st == WK_ERR_FORMAT)
          ck_assert_msg(strstr(wk_last_error(), "corrupt.bin"), "%s", wk_last_error());
        n_fail += st != WK_OK;
        n_tried++;
        wkg_free(&f);
      }
  ck_assert_int_gt(n_fail, n_tried / 2);
  free(buf);
}
END_TEST

static Suite *golden_suite(void) {
  Suite *s = suite_create("golden");
  TCase *run = tcase_create("pytorch");
  tcase_set_timeout(run, 120);
  tcase_add_test(run, test_golden_ref);
  tcase_add_test(run, test_golden_cpu);
  suite_add_tcase(s, run);
  TCase *io = tcase_create("reader");
  tcase_set_timeout(io, 120);
  tcase_add_test(io, test_io_load);
  tcase_add_test(io, test_io_crafted);
  tcase_add_test(io, test_io_truncated);
  tcase_add_test(io, test_io_corrupted);
  suite_add_tcase(s, io);
  return s;
}

int main(void) { return wkt_run_suite(golden_suite()); }
