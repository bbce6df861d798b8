/* test_nn.c - networks: the zoo's parameter counts against torchvision's, the
 * fast path (plans and fusions) against the reference on whole networks in
 * both modes and in backward, freezing, batch-size changes and builder errors. */
#include <check.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/augment.h"
#include "nn/net.h"
#include "nn/zoo.h"
#include "ops/plan.h"
#include "test_util.h"

/* Parameter counts printed by torchvision 0.14 (Debian python3-torchvision):
 *   sum(p.numel() for p in torchvision.models.<arch>(num_classes=K).parameters()) */
static const struct {
  const char *arch;
  int classes;
  float width;
  int64_t count;
} wk_counts[] = {
    {"resnet18", 1000, 1, 11689512},   {"resnet34", 1000, 1, 21797672},
    {"resnet50", 1000, 1, 25557032},   {"mobilenetv2", 1000, 1, 3504872},
    {"mobilenetv2", 1000, 0.5f, 1968680}, {"mobilenetv2", 1000, 1.4f, 6108776},
    {"resnet18", 2, 1, 11177538},      {"resnet50", 2, 1, 23512130},
    {"mobilenetv2", 2, 1, 2226434},    {"mobilenetv2", 10, 0.5f, 700490},
};

START_TEST(test_param_counts_match_torchvision) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  for (size_t i = 0; i < sizeof wk_counts / sizeof wk_counts[0]; i++) {
    wk_arch_opts o = wk_arch_opts_default(wk_counts[i].classes);
    o.width = wk_counts[i].width;
    o.in_h = o.in_w = 64; /* counts do not depend on the input size */
    wk_net *net;
    ck_assert_msg(wk_zoo_build(ctx, wk_counts[i].arch, &o, 1, &net) == WK_OK, "%s",
                  wk_last_error());
    ck_assert_msg(wk_net_param_count(net) == wk_counts[i].count, "%s/%d/%g: %lld != %lld",
                  wk_counts[i].arch, wk_counts[i].classes, (double)wk_counts[i].width,
                  (long long)wk_net_param_count(net), (long long)wk_counts[i].count);
    ck_assert_int_eq(wk_net_output_features(net), wk_counts[i].classes);
    wk_net_destroy(net);
  }
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_param_names_follow_torchvision) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts o = wk_arch_opts_default(10);
  o.in_h = o.in_w = 64;
  wk_net *net;
  ck_assert_int_eq(wk_zoo_build(ctx, "resnet18", &o, 1, &net), WK_OK);
  const char *names[] = {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight",
                         "layer2.0.downsample.0.weight", "layer4.1.bn2.bias", "fc.weight",
                         "fc.bias"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    ck_assert_msg(wk_net_find_param(net, names[i]) >= 0, "missing %s", names[i]);
  ck_assert_int_ge(wk_net_find_buffer(net, "layer3.1.bn1.running_var"), 0);
  int p = wk_net_find_param(net, "layer1.0.conv1.weight");
  size_t np;
  const wk_param *params = wk_net_params(net, &np);
  ck_assert_int_eq(params[p].ndim, 4);
  ck_assert_int_eq(params[p].shape[0], 64); /* OHWI */
  ck_assert_int_eq(params[p].shape[3], 64);
  ck_assert(params[wk_net_find_param(net, "bn1.bias")].flags & WK_PARAM_NO_DECAY);
  ck_assert(!(params[wk_net_find_param(net, "fc.weight")].flags & WK_PARAM_NO_DECAY));
  for (size_t i = 0; i < np; i++) ck_assert_uint_eq(params[i].offset % 16, 0);
  wk_net_destroy(net);
  ck_assert_int_eq(wk_zoo_build(ctx, "mobilenetv2", &o, 1, &net), WK_OK);
  ck_assert_int_ge(wk_net_find_param(net, "features.1.conv.0.0.weight"), 0);
  ck_assert_int_ge(wk_net_find_param(net, "features.2.conv.3.weight"), 0);
  ck_assert_int_ge(wk_net_find_param(net, "features.18.1.weight"), 0);
  ck_assert_int_ge(wk_net_find_param(net, "classifier.1.weight"), 0);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Everything a training step produces, for comparing two runs. */
typedef struct wkt_step {
  float *eval_out, *train_out, *grads, *buffers;
  int64_t n_out;
  size_t n_elems, n_buf;
} wkt_step;

static void wkt_step_free(wkt_step *s) {
  free(s->eval_out);
  free(s->train_out);
  free(s->grads);
  free(s->buffers);
}

static float *wkt_copy(const float *p, size_t n) {
  float *c = malloc(n * sizeof *c);
  ck_assert_ptr_nonnull(c);
  memcpy(c, p, n * sizeof *c);
  return c;
}

/* Batchnorm statistics and affine parameters (and biases) set to
 * non-trivial values, so that evaluation folding is exercised. */
static void wkt_perturb(wk_net *net) {
  size_t np, nb;
  const wk_param *params = wk_net_params(net, &np);
  const wk_param *bufs = wk_net_buffers(net, &nb);
  float *w = wk_net_weights(net), *bd = wk_net_buffer_data(net);
  for (size_t i = 0; i < np; i++)
    if (strstr(params[i].name, "bn") || params[i].ndim == 1)
      wkt_fill_f32(w + params[i].offset, (int64_t)params[i].numel, 100 + i, 0.5f, 1.5f);
  for (size_t i = 0; i < nb; i++)
    wkt_fill_f32(bd + bufs[i].offset, (int64_t)bufs[i].numel, 500 + i, 0.2f, 1.0f);
  wk_net_weights_changed(net);
}

/* Builds `arch` under `impl`, perturbs batchnorm statistics and affine params
 * (so evaluation folding is exercised with non-trivial values), runs eval
 * forward, train forward and backward of sum(out * r). */
static wkt_step wkt_run(wk_impl impl, const char *arch, int classes, int size, int batch,
                        const char *freeze_prefix) {
  wk_ctx *ctx = wkt_ctx(impl, 2);
  wk_arch_opts o = wk_arch_opts_default(classes);
  o.in_h = o.in_w = size;
  o.width = strcmp(arch, "mobilenetv2") == 0 ? 0.5f : 1.0f;
  wk_net *net;
  ck_assert_msg(wk_zoo_build(ctx, arch, &o, 7, &net) == WK_OK, "%s", wk_last_error());
  wkt_perturb(net);
  float *bd = wk_net_buffer_data(net);
  if (freeze_prefix) wk_net_set_frozen(net, freeze_prefix, true);
  const int64_t xs[4] = {batch, size, size, 3};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 3, -1.0f, 1.0f);
  wkt_step r = {0};
  wk_tensor out;
  ck_assert_msg(wk_net_forward(net, &x, false, &out) == WK_OK, "%s", wk_last_error());
  r.n_out = wk_tensor_numel(&out);
  r.eval_out = wkt_copy(out.data, (size_t)r.n_out);
  ck_assert_msg(wk_net_forward(net, &x, true, &out) == WK_OK, "%s", wk_last_error());
  r.train_out = wkt_copy(out.data, (size_t)r.n_out);
  wk_tensor dy = wkt_tensor(WK_F32, 2, out.shape);
  wkt_fill_f32(dy.data, r.n_out, 11, -1.0f, 1.0f);
  ck_assert_msg(wk_net_backward(net, &dy) == WK_OK, "%s", wk_last_error());
  r.n_elems = wk_net_n_elems(net);
  r.n_buf = wk_net_n_buffer_elems(net);
  r.grads = wkt_copy(wk_net_grads(net), r.n_elems);
  r.buffers = wkt_copy(bd, r.n_buf);
  wk_tensor_free(&x);
  wk_tensor_free(&dy);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  return r;
}

/* Batches large enough that the last batchnorm normalises over more than a
 * handful of values (over 2 values, any rounding difference becomes +-1). */
static void wkt_compare_impls(const char *arch, int size, int batch, double grad_tol) {
  wkt_step ref = wkt_run(WK_IMPL_REF, arch, 5, size, batch, NULL);
  wkt_step cpu = wkt_run(WK_IMPL_CPU, arch, 5, size, batch, NULL);
  /* float sums in a different order through ~20-50 layers: 1e-4 relative to
   * the largest value */
  double e;
  e = wkt_rel_err(cpu.eval_out, ref.eval_out, ref.n_out, 1e-6);
  ck_assert_msg(e < 1e-4, "%s eval output: %g", arch, e);
  e = wkt_rel_err(cpu.train_out, ref.train_out, ref.n_out, 1e-6);
  ck_assert_msg(e < 1e-4, "%s train output: %g", arch, e);
  e = wkt_rel_err(cpu.buffers, ref.buffers, (int64_t)ref.n_buf, 1e-6);
  ck_assert_msg(e < 1e-4, "%s running statistics: %g", arch, e);
  e = wkt_rel_err(cpu.grads, ref.grads, (int64_t)ref.n_elems, 1e-6);
  ck_assert_msg(e < grad_tol, "%s gradients: %g", arch, e);
  wkt_step_free(&ref);
  wkt_step_free(&cpu);
}

/* Winograd convolutions (3x3, stride 1) trade accuracy for speed: through
 * resnet18's 16 of them gradients move by ~2e-3 of the largest; direct
 * convolutions stay within 1e-3. */
START_TEST(test_fast_path_matches_reference_smallcnn) { wkt_compare_impls("smallcnn", 32, 2, 1e-3); }
END_TEST
START_TEST(test_fast_path_matches_reference_resnet18) { wkt_compare_impls("resnet18", 64, 4, 5e-3); }
END_TEST
START_TEST(test_fast_path_matches_reference_resnet18_direct) {
  setenv("WHISKER_WINOGRAD", "0", 1);
  wkt_compare_impls("resnet18", 64, 4, 1e-3);
  unsetenv("WHISKER_WINOGRAD");
}
END_TEST
START_TEST(test_fast_path_matches_reference_mobilenetv2) {
  wkt_compare_impls("mobilenetv2", 64, 4, 1e-3);
}
END_TEST
/* The default runs each batchnorm + ReLU6 as one node on whisker's kernels
 * (src/ops/batchnorm_act.c) and the other batchnorms on oneDNN's; here every
 * batchnorm on whisker's ("1"), and the ReLU6 unfused after oneDNN's ("0"). */
START_TEST(test_fast_path_matches_reference_mobilenetv2_bn_kernels) {
  setenv("WHISKER_BN_OWN", _i == 0 ? "0" : "1", 1);
  wkt_compare_impls("mobilenetv2", 64, 4, 1e-3);
  unsetenv("WHISKER_BN_OWN");
}
END_TEST

/* A frozen body (fine-tuning's head phase): its batchnorms use their running
 * statistics in training too, the fused ReLU6 applied after them. */
START_TEST(test_fast_path_matches_reference_frozen_body) {
  wkt_step ref = wkt_run(WK_IMPL_REF, "mobilenetv2", 5, 64, 4, "features");
  wkt_step cpu = wkt_run(WK_IMPL_CPU, "mobilenetv2", 5, 64, 4, "features");
  double e = wkt_rel_err(cpu.train_out, ref.train_out, ref.n_out, 1e-6);
  ck_assert_msg(e < 1e-4, "train output: %g", e);
  e = wkt_rel_err(cpu.grads, ref.grads, (int64_t)ref.n_elems, 1e-6);
  ck_assert_msg(e < 1e-4, "gradients: %g", e);
  wkt_step_free(&ref);
  wkt_step_free(&cpu);
}
END_TEST

/* Which activations training runs inside their batchnorm: all 35 of
 * MobileNetV2's ReLU6 (each follows a batchnorm) by default, none with
 * $WHISKER_BN_OWN=0; the 9 of ResNet-18's 17 ReLU that follow a batchnorm
 * (the other 8 follow a residual add) either way; none under the reference. */
START_TEST(test_train_fusions) {
  const char *arch[2] = {"mobilenetv2", "resnet18"};
  for (int mode = 0; mode < 2; mode++) {
    if (mode) setenv("WHISKER_BN_OWN", "0", 1);
    else unsetenv("WHISKER_BN_OWN");
    for (int a = 0; a < 2; a++)
      for (int impl = WK_IMPL_REF; impl <= WK_IMPL_CPU; impl++) {
        wk_ctx *ctx = wkt_ctx((wk_impl)impl, 1);
        wk_arch_opts o = wk_arch_opts_default(10);
        o.in_h = o.in_w = 32;
        wk_net *net;
        ck_assert_msg(wk_zoo_build(ctx, arch[a], &o, 7, &net) == WK_OK, "%s", wk_last_error());
        int acts = 0, fused = 0;
        for (int i = 0; i < wk_net_n_nodes(net); i++) {
          const wk_node *nd = wk_net_node(net, i);
          if (nd->op != WK_NODE_ACT) continue;
          acts++;
          const int host = wk_net_node_train_host(net, i);
          if (host < 0) continue;
          fused++;
          ck_assert_int_eq(wk_net_node(net, host)->op, WK_NODE_BATCHNORM);
          ck_assert_int_eq(nd->in[0], host + 1);
        }
        const int want = impl == WK_IMPL_REF ? 0 : a == 1 ? 9 : mode ? 0 : 35;
        ck_assert_msg(fused == want, "%s, %s, WHISKER_BN_OWN %s: %d of %d activations fused, "
                      "want %d", arch[a], wk_impl_name(ctx->impl), mode ? "0" : "unset", fused,
                      acts, want);
        wk_net_destroy(net);
        wk_ctx_destroy(ctx);
      }
  }
  unsetenv("WHISKER_BN_OWN");
}
END_TEST

/* Evaluation's fusions (exec_plan.c): each 1x1 conv whose only reader is a
 * depthwise 3x3 conv runs inside that conv's node (wk_conv2d_pwdw_plan), and
 * a conv adds into its residual add's other input. A network is built three
 * times: the reference, the fast path, and the fast path with the fusion's
 * switch off (off_env=0, read when the network is finalized). */
typedef wk_net *(*pwdw_builder)(wk_ctx *ctx);

static void fused_nets(pwdw_builder build, const char *off_env, wk_net *nets[3]) {
  const wk_impl impls[3] = {WK_IMPL_REF, WK_IMPL_CPU, WK_IMPL_CPU};
  for (int k = 0; k < 3; k++) {
    if (k == 2)
      setenv(off_env, "0", 1);
    else
      unsetenv(off_env);
    nets[k] = build(wkt_ctx(impls[k], 2));
  }
  unsetenv(off_env);
}

static void pwdw_nets(pwdw_builder build, wk_net *nets[3]) {
  fused_nets(build, "WHISKER_PWDW", nets);
}

static void pwdw_nets_free(wk_net *nets[3]) {
  for (int k = 0; k < 3; k++) {
    wk_ctx *ctx = wk_net_ctx(nets[k]);
    wk_net_destroy(nets[k]);
    wk_ctx_destroy(ctx);
  }
}

/* Evaluates x on the three networks: fused vs reference within 1e-4, vs
 * unfused within 1e-5; with x0 (x's values), x must stay unwritten. */
static void pwdw_expect_close(wk_net *nets[3], const wk_tensor *x, const float *x0,
                              const char *what) {
  float *out[3];
  int64_t n_out = 0;
  for (int k = 0; k < 3; k++) {
    wk_tensor y;
    ck_assert_msg(wk_net_forward(nets[k], x, false, &y) == WK_OK, "%s", wk_last_error());
    n_out = wk_tensor_numel(&y);
    out[k] = wkt_copy(y.data, (size_t)n_out);
    if (x0) ck_assert_msg(!memcmp(x->data, x0, wk_tensor_nbytes(x)), "net %d wrote into its input", k);
  }
  double e = wkt_rel_err(out[1], out[0], n_out, 1e-6);
  ck_assert_msg(e < 1e-4, "%s: fused vs reference: %g", what, e);
  e = wkt_rel_err(out[1], out[2], n_out, 1e-6);
  ck_assert_msg(e < 1e-5, "%s: fused vs unfused: %g", what, e);
  for (int k = 0; k < 3; k++) free(out[k]);
}

static int node_named(const wk_net *net, const char *name) {
  for (int i = 0; i < wk_net_n_nodes(net); i++)
    if (!strcmp(wk_net_node(net, i)->name, name)) return i;
  ck_abort_msg("no node %s", name);
  return -1;
}

/* Two MobileNetV2-like blocks (batchnorms to fold, a residual add reading the
 * block's input too, biases without batchnorm, stride 1 and 2, activations in
 * nChw16c), compared before and after the weights change. */
static int64_t blocks_c = 16; /* the blocks' input and output channels */

static wk_net *pwdw_blocks_net(wk_ctx *ctx) {
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 64, 64, 16, &net), WK_OK);
  const wk_conv2d_params pw = wk_conv2d_params_make(1, 0, 1);
  const wk_conv2d_params dw1 = wk_conv2d_params_make(1, 1, 96);
  const wk_conv2d_params dw2 = wk_conv2d_params_make(2, 1, 96);
  /* a 1x1 stem, so that the blocks' inputs are in nChw16c as MobileNetV2's */
  const int stem = wk_net_act(net, "stem.relu",
                              wk_net_conv(net, "stem", 0, blocks_c, 1, 1, &pw, true), WK_ACT_RELU);
  int v = wk_net_conv(net, "b1.expand", stem, 96, 1, 1, &pw, false);
  v = wk_net_batchnorm(net, "b1.expand.bn", v, 1e-5f, 0.1f);
  v = wk_net_act(net, "b1.expand.relu6", v, WK_ACT_RELU6);
  v = wk_net_conv(net, "b1.dw", v, 96, 3, 3, &dw1, false);
  v = wk_net_batchnorm(net, "b1.dw.bn", v, 1e-5f, 0.1f);
  v = wk_net_act(net, "b1.dw.relu6", v, WK_ACT_RELU6);
  v = wk_net_conv(net, "b1.project", v, blocks_c, 1, 1, &pw, false);
  v = wk_net_batchnorm(net, "b1.project.bn", v, 1e-5f, 0.1f);
  v = wk_net_add(net, "b1.add", v, stem);
  v = wk_net_conv(net, "b2.expand", v, 96, 1, 1, &pw, true);
  v = wk_net_act(net, "b2.expand.relu6", v, WK_ACT_RELU6);
  v = wk_net_conv(net, "b2.dw", v, 96, 3, 3, &dw2, true);
  v = wk_net_global_avgpool(net, "pool", v);
  v = wk_net_flatten(net, "flat", v);
  v = wk_net_linear(net, "fc", v, 5, true);
  ck_assert_msg(v > 0 && wk_net_finalize(net, 9) == WK_OK, "%s", wk_last_error());
  wkt_perturb(net);
  return net;
}

START_TEST(test_eval_pointwise_depthwise_fusion) {
  wk_net *nets[3];
  pwdw_nets(pwdw_blocks_net, nets);
  const int64_t xs[4] = {2, 64, 64, 16};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 5, -1.0f, 1.0f);
  pwdw_expect_close(nets, &x, NULL, "first weights");
  for (int k = 0; k < 3; k++) { /* new weights for the first block's 1x1 and depthwise convs */
    size_t np;
    const wk_param *params = wk_net_params(nets[k], &np);
    for (size_t i = 0; i < np; i++)
      if (!strcmp(params[i].name, "b1.expand.weight") || !strcmp(params[i].name, "b1.dw.weight"))
        wkt_fill_f32(wk_net_weights(nets[k]) + params[i].offset, (int64_t)params[i].numel,
                     900 + i, -0.5f, 0.5f);
    wk_net_weights_changed(nets[k]);
  }
  pwdw_expect_close(nets, &x, NULL, "new weights");
  /* the pairs run on nChw16c activations: where oneDNN's kernels take them (AVX-512) */
  const bool paired = wk_conv2d_blocked_native();
  for (int b = 1; b <= 2; b++) {
    char dw[16], ex[16];
    snprintf(dw, sizeof dw, "b%d.dw", b);
    snprintf(ex, sizeof ex, "b%d.expand", b);
    const char *fused = wk_net_node_eval_impl(nets[1], node_named(nets[1], dw));
    const char *plain = wk_net_node_eval_impl(nets[2], node_named(nets[2], dw));
    ck_assert_msg(fused && !strncmp(fused, "1x1+dw", 6) == paired, "%s ran on %s", dw, fused);
    ck_assert_msg(plain && strncmp(plain, "1x1+dw", 6), "%s ran on %s (WHISKER_PWDW=0)", dw, plain);
    ck_assert((wk_net_node_eval_impl(nets[1], node_named(nets[1], ex)) == NULL) == paired);
    ck_assert_ptr_nonnull(wk_net_node_eval_impl(nets[2], node_named(nets[2], ex)));
  }
  /* with AVX-512 oneDNN has a jit kernel for the strided pair at this size */
  const char *b2 = wk_net_node_eval_impl(nets[1], node_named(nets[1], "b2.dw"));
  if (paired) ck_assert_msg(!strncmp(b2, "1x1+dw fused", 12), "b2.dw ran on %s", b2);
  wk_tensor_free(&x);
  pwdw_nets_free(nets);
}
END_TEST

/* The pair on the network's own input (value 0, NHWC): the skipped 1x1's
 * output shares the input's buffer, which must stay the caller's. */
static wk_net *pwdw_input_net(wk_ctx *ctx) {
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 20, 20, 8, &net), WK_OK);
  const wk_conv2d_params pw = wk_conv2d_params_make(1, 0, 1);
  const wk_conv2d_params dw = wk_conv2d_params_make(2, 1, 32);
  int v = wk_net_conv(net, "expand", 0, 32, 1, 1, &pw, false);
  v = wk_net_act(net, "expand.relu6", v, WK_ACT_RELU6);
  v = wk_net_conv(net, "dw", v, 32, 3, 3, &dw, true);
  v = wk_net_flatten(net, "flat", v);
  v = wk_net_linear(net, "fc", v, 3, true);
  ck_assert_msg(v > 0 && wk_net_finalize(net, 4) == WK_OK, "%s", wk_last_error());
  return net;
}

START_TEST(test_eval_pointwise_depthwise_on_the_input) {
  wk_net *nets[3];
  pwdw_nets(pwdw_input_net, nets);
  const int64_t xs[4] = {3, 20, 20, 8};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 6, -1.0f, 1.0f);
  float *x0 = wkt_copy(x.data, (size_t)wk_tensor_numel(&x));
  pwdw_expect_close(nets, &x, x0, "on the input");
  const char *impl = wk_net_node_eval_impl(nets[1], node_named(nets[1], "dw"));
  ck_assert_msg(impl && !strncmp(impl, "1x1+dw", 6) == wk_conv2d_blocked_native(), "dw ran on %s",
                impl);
  pwdw_nets_free(nets);
  free(x0);
  wk_tensor_free(&x);
}
END_TEST

/* Residual adds fused into the conv before them (y = act(y + conv(x))),
 * against the reference and WHISKER_FUSE_ADD=0: a ResNet-like block in NHWC
 * (3x3 into the shortcut, then ReLU; a 1x1 stride-2 downsample into the
 * other branch, then ReLU6), and three adds that must stay as they are: the
 * other input read again later, read by the conv itself, and the network's
 * own input. The MobileNetV2-like blocks of pwdw_blocks_net give nChw16c. */
static int add_net_side = 12;

static wk_net *add_resnet_net(wk_ctx *ctx) {
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, add_net_side, add_net_side, 16, &net), WK_OK);
  const wk_conv2d_params same = wk_conv2d_params_make(1, 1, 1);
  const wk_conv2d_params pw = wk_conv2d_params_make(1, 0, 1);
  const wk_conv2d_params pw2 = wk_conv2d_params_make(2, 0, 1);
  const wk_conv2d_params s2 = wk_conv2d_params_make(2, 1, 1);
  const int stem = wk_net_act(net, "stem.relu", wk_net_conv(net, "stem", 0, 64, 3, 3, &same, true),
                              WK_ACT_RELU);
  int v = wk_net_conv(net, "a.conv1", stem, 64, 3, 3, &same, false);
  v = wk_net_act(net, "a.relu1", wk_net_batchnorm(net, "a.bn1", v, 1e-5f, 0.1f), WK_ACT_RELU);
  v = wk_net_conv(net, "a.conv2", v, 64, 3, 3, &same, false);
  v = wk_net_batchnorm(net, "a.bn2", v, 1e-5f, 0.1f);
  const int a = wk_net_act(net, "a.relu", wk_net_add(net, "a.add", v, stem), WK_ACT_RELU);
  v = wk_net_conv(net, "b.conv1", a, 32, 3, 3, &s2, false);
  v = wk_net_batchnorm(net, "b.bn1", v, 1e-5f, 0.1f);
  int d = wk_net_conv(net, "b.down", a, 32, 1, 1, &pw2, false);
  d = wk_net_batchnorm(net, "b.down.bn", d, 1e-5f, 0.1f);
  const int b = wk_net_act(net, "b.relu6", wk_net_add(net, "b.add", v, d), WK_ACT_RELU6);
  /* b read again after the add: stays */
  v = wk_net_act(net, "c.relu", wk_net_conv(net, "c.pre", b, 32, 1, 1, &pw, true), WK_ACT_RELU);
  v = wk_net_conv(net, "c.conv", v, 32, 1, 1, &pw, true);
  v = wk_net_add(net, "c.add2", wk_net_add(net, "c.add", v, b), b);
  /* the conv reads the add's other input itself: stays */
  v = wk_net_add(net, "d.add", wk_net_conv(net, "d.conv", v, 32, 1, 1, &pw, true), v);
  /* the conv's result read by another node too: stays */
  const int s0 = v;
  v = wk_net_act(net, "f.relu", wk_net_conv(net, "f.pre", s0, 32, 1, 1, &pw, true), WK_ACT_RELU);
  const int fv = wk_net_conv(net, "f.conv", v, 32, 1, 1, &pw, true);
  v = wk_net_add(net, "f.add2", wk_net_add(net, "f.add", fv, s0), fv);
  v = wk_net_global_avgpool(net, "pool", v);
  v = wk_net_flatten(net, "flat", v);
  v = wk_net_linear(net, "fc", v, 5, true);
  ck_assert_msg(v > 0 && wk_net_finalize(net, 11) == WK_OK, "%s", wk_last_error());
  wkt_perturb(net);
  return net;
}

static wk_net *add_input_net(wk_ctx *ctx) {
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 10, 10, 16, &net), WK_OK);
  const wk_conv2d_params same = wk_conv2d_params_make(1, 1, 1);
  const wk_conv2d_params pw = wk_conv2d_params_make(1, 0, 1);
  int v = wk_net_act(net, "relu", wk_net_conv(net, "conv1", 0, 16, 3, 3, &same, true), WK_ACT_RELU);
  v = wk_net_add(net, "add", wk_net_conv(net, "conv", v, 16, 1, 1, &pw, true), 0);
  v = wk_net_global_avgpool(net, "pool", v);
  v = wk_net_flatten(net, "flat", v);
  v = wk_net_linear(net, "fc", v, 3, true);
  ck_assert_msg(v > 0 && wk_net_finalize(net, 12) == WK_OK, "%s", wk_last_error());
  return net;
}

static void expect_impl(wk_net *net, const char *node, const char *part, bool present) {
  const char *impl = wk_net_node_eval_impl(net, node_named(net, node));
  ck_assert_msg(impl != NULL, "%s: no implementation", node);
  ck_assert_msg((strstr(impl, part) != NULL) == present, "%s ran on '%s' (%s '%s')", node, impl,
                present ? "wanted" : "not wanted", part);
}

START_TEST(test_eval_residual_add_fusion) {
  unsetenv("WHISKER_WINOGRAD"); /* the plans expected below */
  wk_net *nets[3];
  fused_nets(add_resnet_net, "WHISKER_FUSE_ADD", nets);
  const int64_t xs[4] = {2, 12, 12, 16};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 7, -1.0f, 1.0f);
  pwdw_expect_close(nets, &x, NULL, "resnet-like");
  expect_impl(nets[1], "a.conv2", " + add + act", true);
  expect_impl(nets[1], "b.down", " + add + act", true); /* the later of the two branches */
  expect_impl(nets[1], "b.conv1", "add", false);
  expect_impl(nets[1], "c.conv", "add", false);
  expect_impl(nets[1], "d.conv", "add", false);
  expect_impl(nets[1], "f.conv", "add", false);
  expect_impl(nets[2], "a.conv2", "add", false);
  /* batch 1: new plans */
  x.shape[0] = 1;
  pwdw_expect_close(nets, &x, NULL, "resnet-like, batch 1");
  pwdw_nets_free(nets);
  wk_tensor_free(&x);

  /* where the conv cannot add into its output itself (oneDNN's Winograd,
   * whisker's off): into a pool buffer, then the add and the activation */
  setenv("WHISKER_WINO", "0", 1);
  add_net_side = 20;
  fused_nets(add_resnet_net, "WHISKER_FUSE_ADD", nets);
  const int64_t xs20[4] = {2, 20, 20, 16};
  x = wkt_tensor(WK_F32, 4, xs20);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 10, -1.0f, 1.0f);
  pwdw_expect_close(nets, &x, NULL, "resnet-like, add after");
  /* (oneDNN's Winograd is an AVX-512 kernel: elsewhere the direct one adds into y itself) */
  expect_impl(nets[1], "a.conv2", wk_conv2d_blocked_native() ? ", add + act after" : " + add + act",
              true);
  expect_impl(nets[1], "b.down", " + add + act", true);
  add_net_side = 12;
  unsetenv("WHISKER_WINO");
  pwdw_nets_free(nets);
  wk_tensor_free(&x);

  fused_nets(add_input_net, "WHISKER_FUSE_ADD", nets);
  const int64_t xs2[4] = {2, 10, 10, 16};
  x = wkt_tensor(WK_F32, 4, xs2);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 8, -1.0f, 1.0f);
  float *x0 = wkt_copy(x.data, (size_t)wk_tensor_numel(&x));
  pwdw_expect_close(nets, &x, x0, "the input as the shortcut");
  expect_impl(nets[1], "conv", "add", false);
  pwdw_nets_free(nets);
  free(x0);
  wk_tensor_free(&x);

  /* nChw16c: MobileNetV2's projection into the block's input, 16 channels
   * and 24 (8 of padding) */
  for (blocks_c = 16; blocks_c <= 24; blocks_c += 8) {
    fused_nets(pwdw_blocks_net, "WHISKER_FUSE_ADD", nets);
    const int64_t xs3[4] = {2, 64, 64, 16};
    x = wkt_tensor(WK_F32, 4, xs3);
    wkt_fill_f32(x.data, wk_tensor_numel(&x), 9, -1.0f, 1.0f);
    pwdw_expect_close(nets, &x, NULL, "mobilenetv2-like");
    expect_impl(nets[1], "b1.project", " + add", true);
    expect_impl(nets[2], "b1.project", "add", false);
    pwdw_nets_free(nets);
    wk_tensor_free(&x);
  }
  blocks_c = 16;
}
END_TEST

/* A network with its batchnorms folded (as imported from ONNX): conv (bias)
 * -> activation, the activation run as the conv's post-op in training
 * (exec_plan.c), its backward on its own. A stride-2 stem and a 1x1 and a
 * depthwise conv (oneDNN's direct kernels, the post-op), a dense 3x3 stride-1
 * conv at 8 x 10 x 10 outputs (oneDNN's Winograd, which takes no ReLU6: the
 * plan clips after it), and a ReLU6 whose conv output is read by an add too
 * (not in place: stays a node of its own). Inputs up to +-30 drive values past
 * both of ReLU6's kinks. */
static wk_net *folded_net(wk_ctx *ctx) {
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 20, 20, 3, &net), WK_OK);
  const wk_conv2d_params s2 = wk_conv2d_params_make(2, 1, 1), s1 = wk_conv2d_params_make(1, 1, 1);
  const wk_conv2d_params pw = wk_conv2d_params_make(1, 0, 1), dw = wk_conv2d_params_make(1, 1, 16);
  int v = wk_net_act(net, "stem.relu6", wk_net_conv(net, "stem", 0, 16, 3, 3, &s2, true),
                     WK_ACT_RELU6);
  v = wk_net_act(net, "wino.relu6", wk_net_conv(net, "wino", v, 32, 3, 3, &s1, true),
                 WK_ACT_RELU6);
  v = wk_net_act(net, "pw.relu", wk_net_conv(net, "pw", v, 16, 1, 1, &pw, true), WK_ACT_RELU);
  v = wk_net_act(net, "dw.relu6", wk_net_conv(net, "dw", v, 16, 3, 3, &dw, true), WK_ACT_RELU6);
  const int t = wk_net_conv(net, "two", v, 16, 1, 1, &pw, true);
  v = wk_net_add(net, "add", wk_net_act(net, "two.relu6", t, WK_ACT_RELU6), t);
  v = wk_net_flatten(net, "flat", wk_net_global_avgpool(net, "pool", v));
  v = wk_net_linear(net, "fc", v, 4, true);
  ck_assert_msg(v > 0 && wk_net_finalize(net, 13) == WK_OK, "%s", wk_last_error());
  wkt_perturb(net);
  return net;
}

START_TEST(test_train_conv_act_fusion) {
  unsetenv("WHISKER_WINOGRAD");
  wk_net *nets[3]; /* reference, fused, WHISKER_FUSE_CONV_ACT=0 */
  fused_nets(folded_net, "WHISKER_FUSE_CONV_ACT", nets);
  const char *acts[5] = {"stem.relu6", "wino.relu6", "pw.relu", "dw.relu6", "two.relu6"};
  for (int k = 0; k < 3; k++)
    for (int a = 0; a < 5; a++) {
      const int host = wk_net_node_train_host(nets[k], node_named(nets[k], acts[a]));
      if (k != 1 || a == 4) {
        ck_assert_msg(host < 0, "net %d: %s runs inside %d", k, acts[a], host);
        continue;
      }
      ck_assert_msg(host >= 0 && wk_net_node(nets[k], host)->op == WK_NODE_CONV &&
                        wk_net_node(nets[k], node_named(nets[k], acts[a]))->in[0] == host + 1,
                    "net %d: %s runs inside %d, not its conv", k, acts[a], host);
    }
  const int64_t xs[4] = {8, 20, 20, 3};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 21, -30.0f, 30.0f);
  float *out[3], *grads[3];
  int64_t n_out = 0;
  const size_t n_elems = wk_net_n_elems(nets[0]);
  for (int step = 0; step < 2; step++) { /* the second on the plans the first made */
    for (int k = 0; k < 3; k++) {
      wk_tensor y;
      ck_assert_msg(wk_net_forward(nets[k], &x, true, &y) == WK_OK, "%s", wk_last_error());
      n_out = wk_tensor_numel(&y);
      out[k] = wkt_copy(y.data, (size_t)n_out);
      wk_tensor dy = wkt_tensor(WK_F32, 2, y.shape);
      wkt_fill_f32(dy.data, n_out, 22 + step, -1.0f, 1.0f);
      ck_assert_msg(wk_net_backward(nets[k], &dy) == WK_OK, "%s", wk_last_error());
      grads[k] = wkt_copy(wk_net_grads(nets[k]), n_elems);
      wk_tensor_free(&dy);
    }
    /* the post-op clips the convolution's own result: the same bits as the pass after it */
    ck_assert_msg(!memcmp(out[1], out[2], (size_t)n_out * sizeof(float)),
                  "step %d: fused and unfused outputs differ", step);
    ck_assert_msg(!memcmp(grads[1], grads[2], n_elems * sizeof(float)),
                  "step %d: fused and unfused gradients differ", step);
    double e = wkt_rel_err(out[1], out[0], n_out, 1e-6);
    ck_assert_msg(e < 1e-4, "step %d: output vs reference: %g", step, e);
    e = wkt_rel_err(grads[1], grads[0], (int64_t)n_elems, 1e-6);
    ck_assert_msg(e < 1e-3, "step %d: gradients vs reference: %g", step, e);
    for (int k = 0; k < 3; k++) {
      free(out[k]);
      free(grads[k]);
    }
  }
  pwdw_nets_free(nets);
  wk_tensor_free(&x);
}
END_TEST

START_TEST(test_frozen_body_gets_no_gradient) {
  wkt_step all = wkt_run(WK_IMPL_CPU, "smallcnn", 3, 32, 4, NULL);
  wkt_step head = wkt_run(WK_IMPL_CPU, "smallcnn", 3, 32, 4, "conv");
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts o = wk_arch_opts_default(3);
  o.in_h = o.in_w = 32;
  wk_net *net;
  ck_assert_int_eq(wk_zoo_build(ctx, "smallcnn", &o, 7, &net), WK_OK);
  size_t np;
  const wk_param *params = wk_net_params(net, &np);
  for (size_t i = 0; i < np; i++) {
    const wk_param *p = &params[i];
    const float *gh = head.grads + p->offset, *ga = all.grads + p->offset;
    if (strncmp(p->name, "conv", 4) == 0) {
      for (size_t k = 0; k < p->numel; k++) ck_assert_float_eq(gh[k], 0.0f);
    } else {
      /* unfrozen parameters see exactly the same gradient */
      ck_assert_msg(wkt_rel_err(gh, ga, (int64_t)p->numel, 1e-6) < 1e-6, "%s", p->name);
    }
  }
  ck_assert_int_eq(wk_net_set_frozen(net, "bn", true), 8);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  wkt_step_free(&all);
  wkt_step_free(&head);
}
END_TEST

/* Synchronised batchnorm with a "sum over ranks" that doubles (two ranks that
 * hold the same batch) must train exactly as plain batchnorm on that batch:
 * same statistics, outputs and gradients; only the running variance's
 * unbiasing sees twice the count. */
static wk_status wkt_double_sum(void *user, double *buf, size_t n) {
  (*(int *)user)++;
  for (size_t i = 0; i < n; i++) buf[i] *= 2.0;
  return WK_OK;
}

static wk_net *relu6_net(wk_ctx *ctx) {
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 16, 16, 3, &net), WK_OK);
  const wk_conv2d_params p1 = wk_conv2d_params_make(1, 1, 1), p0 = wk_conv2d_params_make(1, 0, 1);
  const wk_conv2d_params p2 = wk_conv2d_params_make(2, 1, 1);
  int v = wk_net_conv(net, "a", 0, 16, 3, 3, &p1, false);
  v = wk_net_act(net, "a.relu6", wk_net_batchnorm(net, "a.bn", v, 1e-5f, 0.1f), WK_ACT_RELU6);
  v = wk_net_batchnorm(net, "b.bn", wk_net_conv(net, "b", v, 24, 1, 1, &p0, false), 1e-5f, 0.1f);
  v = wk_net_conv(net, "c", v, 32, 3, 3, &p2, false);
  v = wk_net_act(net, "c.relu", wk_net_batchnorm(net, "c.bn", v, 1e-5f, 0.1f), WK_ACT_RELU);
  v = wk_net_flatten(net, "flat", wk_net_global_avgpool(net, "pool", v));
  wk_net_linear(net, "fc", v, 3, true);
  ck_assert_msg(wk_net_finalize(net, 9) == WK_OK, "%s", wk_last_error());
  return net;
}

START_TEST(test_sync_bn_matches_plain_batchnorm) {
  /* smallcnn: batchnorm + ReLU; a net of batchnorm + ReLU6 (its scale 4, so
   * that some values pass 6), batchnorm alone and batchnorm + ReLU */
  const char *arch = _i ? "relu6 net" : "smallcnn";
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts o = wk_arch_opts_default(3);
  o.in_h = o.in_w = 16;
  wk_net *net[2];
  const int64_t xs[4] = {4, 16, 16, 3};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 5, -1.0f, 1.0f);
  float *out[2], *grads[2];
  int calls = 0;
  for (int k = 0; k < 2; k++) {
    if (_i) {
      net[k] = relu6_net(ctx);
      const int gp = wk_net_find_param(net[k], "a.bn.weight");
      ck_assert_int_ge(gp, 0);
      float *gamma = wk_net_weights(net[k]) + wk_net_params(net[k], &(size_t){0})[gp].offset;
      for (int ch = 0; ch < 16; ch++) gamma[ch] = 4.0f;
      wk_net_weights_changed(net[k]);
    } else {
      ck_assert_int_eq(wk_zoo_build(ctx, arch, &o, 9, &net[k]), WK_OK);
    }
    if (k == 1) wk_net_set_sync_bn(net[k], wkt_double_sum, &calls, 2);
    wk_tensor y;
    ck_assert_msg(wk_net_forward(net[k], &x, true, &y) == WK_OK, "%s", wk_last_error());
    out[k] = wkt_copy(y.data, (size_t)wk_tensor_numel(&y));
    wk_tensor dy = wkt_tensor(WK_F32, 2, y.shape);
    wkt_fill_f32(dy.data, wk_tensor_numel(&dy), 6, -1.0f, 1.0f);
    ck_assert_msg(wk_net_backward(net[k], &dy) == WK_OK, "%s", wk_last_error());
    grads[k] = wkt_copy(wk_net_grads(net[k]), wk_net_n_elems(net[k]));
    wk_tensor_free(&dy);
  }
  /* two sums in each batchnorm's forward, one in its backward (the first has no dx) */
  ck_assert_int_gt(calls, 2);
  const double eo = wkt_rel_err(out[1], out[0], 4 * 3, 1e-6);
  const double eg = wkt_rel_err(grads[1], grads[0], (int64_t)wk_net_n_elems(net[0]), 1e-6);
  ck_assert_msg(eo < 1e-4 && eg < 1e-4, "%s: output %g, gradients %g", arch, eo, eg);
  size_t nb;
  const wk_param *bufs = wk_net_buffers(net[0], &nb);
  const float *b0 = wk_net_buffer_data(net[0]), *b1 = wk_net_buffer_data(net[1]);
  for (size_t i = 0; i < nb; i++)
    if (strstr(bufs[i].name, "running_mean"))
      ck_assert_double_lt(wkt_rel_err(b1 + bufs[i].offset, b0 + bufs[i].offset,
                                      (int64_t)bufs[i].numel, 1e-6), 1e-4);
  for (int k = 0; k < 2; k++) {
    free(out[k]);
    free(grads[k]);
    wk_net_destroy(net[k]);
  }
  wk_tensor_free(&x);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Two "ranks" as threads, each with half of a batch and a sum over both
 * through a barrier: synchronised batchnorm must give the gradients of one
 * network over the whole batch (the mean of the ranks' gradients, each rank's
 * loss being the mean over its half). */
typedef struct wkt_pair {
  pthread_barrier_t bar;
  double *slot[2];
} wkt_pair;

typedef struct wkt_rank {
  wkt_pair *pair;
  int rank;
  wk_net *net;
  wk_tensor x, dy;
  wk_status st;
} wkt_rank;

static wk_status wkt_pair_sum(void *user, double *buf, size_t n) {
  wkt_rank *r = user;
  r->pair->slot[r->rank] = buf;
  pthread_barrier_wait(&r->pair->bar);
  double *other = r->pair->slot[1 - r->rank];
  double *tmp = malloc(n * sizeof *tmp);
  for (size_t i = 0; i < n; i++) tmp[i] = buf[i] + other[i];
  pthread_barrier_wait(&r->pair->bar); /* both have read before either writes */
  memcpy(buf, tmp, n * sizeof *tmp);
  free(tmp);
  return WK_OK;
}

static void *wkt_rank_main(void *arg) {
  wkt_rank *r = arg;
  wk_tensor y;
  r->st = wk_net_forward(r->net, &r->x, true, &y);
  if (r->st == WK_OK) r->st = wk_net_backward(r->net, &r->dy);
  return NULL;
}

START_TEST(test_sync_bn_two_ranks_match_one_batch) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts o = wk_arch_opts_default(3);
  o.in_h = o.in_w = 16;
  const int64_t xs[4] = {8, 16, 16, 3}, hs[4] = {4, 16, 16, 3}, ds[2] = {8, 3}, dh[2] = {4, 3};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), dy = wkt_tensor(WK_F32, 2, ds);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 5, -1.0f, 1.0f);
  wkt_fill_f32(dy.data, wk_tensor_numel(&dy), 6, -1.0f, 1.0f);
  wk_net *whole;
  ck_assert_int_eq(wk_zoo_build(ctx, "smallcnn", &o, 9, &whole), WK_OK);
  wk_tensor y;
  ck_assert_int_eq(wk_net_forward(whole, &x, true, &y), WK_OK);
  ck_assert_int_eq(wk_net_backward(whole, &dy), WK_OK);
  wkt_pair pair;
  pthread_barrier_init(&pair.bar, NULL, 2);
  wkt_rank r[2];
  pthread_t th[2];
  const int64_t half = wk_tensor_numel(&x) / 2;
  for (int k = 0; k < 2; k++) {
    r[k] = (wkt_rank){.pair = &pair, .rank = k};
    wk_ctx *c = wkt_ctx(WK_IMPL_CPU, 1);
    ck_assert_int_eq(wk_zoo_build(c, "smallcnn", &o, 9, &r[k].net), WK_OK);
    wk_net_set_sync_bn(r[k].net, wkt_pair_sum, &r[k], 2);
    r[k].x = wk_tensor_view((float *)x.data + k * half, WK_F32, 4, hs);
    /* each rank's loss is the mean over its half: twice the whole batch's dy */
    r[k].dy = wkt_tensor(WK_F32, 2, dh);
    for (int i = 0; i < 12; i++) ((float *)r[k].dy.data)[i] = 2.0f * ((float *)dy.data)[k * 12 + i];
    pthread_create(&th[k], NULL, wkt_rank_main, &r[k]);
  }
  for (int k = 0; k < 2; k++) {
    pthread_join(th[k], NULL);
    ck_assert_msg(r[k].st == WK_OK, "rank %d failed", k);
  }
  const size_t n = wk_net_n_elems(whole);
  float *mean = malloc(n * sizeof *mean);
  const float *g0 = wk_net_grads(r[0].net), *g1 = wk_net_grads(r[1].net);
  for (size_t i = 0; i < n; i++) mean[i] = 0.5f * (g0[i] + g1[i]);
  size_t np;
  const wk_param *ps = wk_net_params(whole, &np);
  for (size_t i = 0; i < np; i++)
    ck_assert_msg(wkt_rel_err(mean + ps[i].offset, wk_net_grads(whole) + ps[i].offset,
                              (int64_t)ps[i].numel, 1e-6) < 1e-4,
                  "%s: %g", ps[i].name,
                  wkt_rel_err(mean + ps[i].offset, wk_net_grads(whole) + ps[i].offset,
                              (int64_t)ps[i].numel, 1e-6));
  free(mean);
  for (int k = 0; k < 2; k++) {
    wk_ctx *c = wk_net_ctx(r[k].net);
    wk_net_destroy(r[k].net);
    wk_ctx_destroy(c);
    wk_tensor_free(&r[k].dy);
  }
  pthread_barrier_destroy(&pair.bar);
  wk_net_destroy(whole);
  wk_tensor_free(&x);
  wk_tensor_free(&dy);
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_batch_size_change_and_repeat) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_arch_opts o = wk_arch_opts_default(4);
  o.in_h = o.in_w = 40;
  wk_net *net;
  ck_assert_int_eq(wk_zoo_build(ctx, "resnet18", &o, 3, &net), WK_OK);
  const int64_t s3[4] = {3, 40, 40, 3};
  wk_tensor x = wkt_tensor(WK_F32, 4, s3);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 5, -1, 1);
  wk_tensor out;
  ck_assert_int_eq(wk_net_forward(net, &x, false, &out), WK_OK);
  float first[12];
  memcpy(first, out.data, sizeof first);
  /* the first sample alone, then all three again: same logits */
  wk_tensor x1 = wk_tensor_view(x.data, WK_F32, 4, (const int64_t[4]){1, 40, 40, 3});
  ck_assert_int_eq(wk_net_forward(net, &x1, false, &out), WK_OK);
  ck_assert_int_eq(out.shape[0], 1);
  ck_assert(wkt_rel_err(out.data, first, 4, 1e-6) < 1e-5);
  ck_assert_int_eq(wk_net_forward(net, &x, false, &out), WK_OK);
  ck_assert(wkt_rel_err(out.data, first, 12, 1e-6) < 1e-6);
  ck_assert_uint_gt(wk_net_activation_bytes(net), 0);
  /* backward without a training forward is refused */
  wk_tensor dy = wkt_tensor(WK_F32, 2, out.shape);
  ck_assert_int_eq(wk_net_backward(net, &dy), WK_ERR_INVALID_ARG);
  /* a wrong input shape is refused with a message */
  wk_tensor bad = wk_tensor_view(x.data, WK_F32, 4, (const int64_t[4]){1, 40, 39, 3});
  ck_assert_int_eq(wk_net_forward(net, &bad, false, &out), WK_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "network input"));
  wk_tensor_free(&x);
  wk_tensor_free(&dy);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* 8-bit input (wk_net_set_input_norm): a picture through the evaluation
 * transform at its own size (no resampling, so the loader's float path holds
 * whole pixel values) gives the float batch and the u8 batch; the network's
 * output from the u8 batch is bit for bit the output from the float batch
 * (the GPU does the same normalisation in a kernel, test_gpu_ops). Without the
 * normalisation a u8 batch is refused. */
START_TEST(test_u8_input_matches_the_float_path) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_arch_opts o = wk_arch_opts_default(3);
  o.in_h = o.in_w = 24;
  wk_net *net;
  ck_assert_int_eq(wk_zoo_build(ctx, "smallcnn", &o, 5, &net), WK_OK);
  wk_augment_cfg ac = wk_augment_cfg_eval(24);
  ac.eval_resize = 24;
  ac.mean[1] = 0.5f, ac.std[2] = 0.3f; /* not ImageNet's: the values must travel */
  wk_augmenter *aug;
  ck_assert_int_eq(wk_augmenter_create(&ac, &aug), WK_OK);
  uint8_t px[24 * 24 * 3];
  wk_rng r = wk_rng_make(9, 0);
  for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)wk_rng_u32(&r);
  const wk_image img = {.data = px, .width = 24, .height = 24, .stride_bytes = 24 * 3};
  const int64_t s[4] = {2, 24, 24, 3};
  wk_tensor xf = wkt_tensor(WK_F32, 4, s), xu = wkt_tensor(WK_U8, 4, s);
  for (int b = 0; b < 2; b++)
    ck_assert_int_eq(wk_augment_image(aug, &img, 1, 0, b, (float *)xf.data + b * 24 * 24 * 3,
                                      (uint8_t *)xu.data + b * 24 * 24 * 3),
                     WK_OK);
  ck_assert_int_eq(memcmp(xu.data, px, sizeof px), 0); /* no resampling: the pixels as given */
  wk_tensor out;
  ck_assert_int_eq(wk_net_forward(net, &xu, false, &out), WK_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "wk_net_set_input_norm"));
  ck_assert_int_eq(wk_net_set_input_norm(net, ac.mean, ac.std), WK_OK);
  ck_assert_int_eq(wk_net_forward(net, &xf, false, &out), WK_OK);
  float want[6];
  memcpy(want, out.data, sizeof want);
  ck_assert_int_eq(wk_net_forward(net, &xu, false, &out), WK_OK);
  ck_assert_int_eq(memcmp(out.data, want, sizeof want), 0);
  const float bad_std[3] = {0.2f, 0.0f, 0.2f};
  ck_assert_int_eq(wk_net_set_input_norm(net, ac.mean, bad_std), WK_ERR_INVALID_ARG);
  wk_tensor_free(&xf);
  wk_tensor_free(&xu);
  wk_augmenter_destroy(aug);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_builder_errors) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 8, 8, 3, &net), WK_OK);
  wk_conv2d_params p = wk_conv2d_params_make(1, 0, 1);
  int v = wk_net_conv(net, "c", 0, 4, 9, 9, &p, false); /* 9x9 kernel on 8x8 */
  ck_assert_int_eq(v, -1);
  ck_assert_int_eq(wk_net_linear(net, "fc", 0, 3, true), -1); /* sticky */
  ck_assert_int_eq(wk_net_finalize(net, 1), WK_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "c:"));
  wk_net_destroy(net);

  ck_assert_int_eq(wk_net_create(ctx, 8, 8, 3, &net), WK_OK);
  v = wk_net_conv(net, "c", 0, 4, 3, 3, &p, false);
  ck_assert_int_eq(v, 1);
  ck_assert_int_eq(wk_net_add(net, "a", 1, 0), -1); /* shapes differ */
  ck_assert_int_eq(wk_net_finalize(net, 1), WK_ERR_SHAPE);
  wk_net_destroy(net);

  ck_assert_int_eq(wk_net_create(ctx, 8, 8, 3, &net), WK_OK);
  v = wk_net_conv(net, "c", 0, 4, 3, 3, &p, false);
  ck_assert_int_eq(v, 1);
  ck_assert_int_eq(wk_net_finalize(net, 1), WK_ERR_SHAPE); /* output not flat */
  wk_net_destroy(net);

  ck_assert_int_eq(wk_net_create(ctx, 8, 8, 3, &net), WK_OK);
  v = wk_net_global_avgpool(net, "g", 0);
  v = wk_net_linear(net, "fc", v, 2, true);
  ck_assert_int_eq(wk_net_linear(net, "fc", v, 2, true), 3);
  ck_assert_int_eq(wk_net_finalize(net, 1), WK_ERR_INVALID_ARG); /* two fc.weight */
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "fc.weight"));
  wk_net_destroy(net);

  /* sizes whose products wrap 64 bits to 0 (2^16 x 2^24 x 2^24 x 1) are
   * refused, not taken for empty */
  ck_assert_int_eq(wk_net_create(ctx, 8, 8, 1, &net), WK_OK);
  const wk_conv2d_params huge = wk_conv2d_params_make(1 << 24, 1 << 23, 1); /* a 1x1 output */
  ck_assert_int_eq(wk_net_conv(net, "c", 0, 1 << 16, 1 << 24, 1 << 24, &huge, false), -1);
  ck_assert_int_eq(wk_net_finalize(net, 1), WK_ERR_LIMIT);
  wk_net_destroy(net);

  wk_arch_opts o = wk_arch_opts_default(0);
  ck_assert_int_eq(wk_zoo_build(ctx, "resnet18", &o, 1, &net), WK_ERR_INVALID_ARG);
  o.num_classes = 2;
  ck_assert_int_eq(wk_zoo_build(ctx, "vgg16", &o, 1, &net), WK_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "vgg16"));
  o.in_h = o.in_w = 16; /* too small for resnet's five halvings? still >= 1x1 */
  ck_assert_int_eq(wk_zoo_build(ctx, "resnet18", &o, 1, &net), WK_OK);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_init_is_deterministic_and_scaled) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts o = wk_arch_opts_default(10);
  o.in_h = o.in_w = 32;
  wk_net *a, *b;
  ck_assert_int_eq(wk_zoo_build(ctx, "resnet18", &o, 42, &a), WK_OK);
  ck_assert_int_eq(wk_zoo_build(ctx, "resnet18", &o, 42, &b), WK_OK);
  ck_assert_mem_eq(wk_net_weights(a), wk_net_weights(b), wk_net_n_elems(a) * sizeof(float));
  /* kaiming normal, fan_out: conv1 (64, 7, 7, 3) has std sqrt(2 / (64 * 49)) */
  size_t np;
  const wk_param *p = &wk_net_params(a, &np)[wk_net_find_param(a, "conv1.weight")];
  const float *w = wk_net_weights(a) + p->offset;
  double ss = 0;
  for (size_t i = 0; i < p->numel; i++) ss += (double)w[i] * w[i];
  double std = sqrt(ss / (double)p->numel), want = sqrt(2.0 / (64 * 49));
  ck_assert_msg(fabs(std - want) < 0.05 * want, "std %g want %g", std, want);
  /* bn weight 1, running var 1 */
  ck_assert_float_eq(wk_net_weights(a)[wk_net_params(a, &np)[wk_net_find_param(a, "bn1.weight")]
                                            .offset], 1.0f);
  wk_net_destroy(a);
  wk_net_destroy(b);
  wk_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------- in place through a flatten */

/* A flatten is a view of its input's buffer, so an activation or an add
 * after it writes into that buffer. Three graphs where that buffer must not
 * be written, each against the same function with a dropout(p=0) (a copy)
 * in front of the flatten, in training (outputs and the conv's weight
 * gradient) and in evaluation:
 *   0: x -> flatten -> relu -> fc                 (x is the caller's input)
 *   1: u = conv(x); fc(relu(flatten(u))) + gap(u) (u has another reader)
 *   2: r = relu(conv(x)); fc2(flatten(r) + fc1(gap(x))) (r is relu's mask) */
static wk_net *wkt_flatten_net(int kind, bool guard) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  const int hw = kind == 1 ? 2 : 1, c = kind == 1 ? 3 : 4;
  ck_assert_int_eq(wk_net_create(ctx, hw, hw, c, &net), WK_OK);
  const wk_conv2d_params p = wk_conv2d_params_make(1, 0, 1);
  if (kind == 0) {
    const int f = wk_net_flatten(net, "flat", guard ? wk_net_dropout(net, "copy", 0, 0.0f) : 0);
    wk_net_linear(net, "fc", wk_net_act(net, "relu", f, WK_ACT_RELU), 2, true);
  } else if (kind == 1) {
    const int u = wk_net_conv(net, "conv", 0, 4, 1, 1, &p, false);
    const int f = wk_net_flatten(net, "flat", guard ? wk_net_dropout(net, "copy", u, 0.0f) : u);
    const int a = wk_net_linear(net, "fc", wk_net_act(net, "relu", f, WK_ACT_RELU), 4, false);
    wk_net_add(net, "add", a, wk_net_global_avgpool(net, "gap", u));
  } else {
    int r = wk_net_act(net, "relu", wk_net_conv(net, "conv", 0, 4, 1, 1, &p, false), WK_ACT_RELU);
    if (guard) r = wk_net_dropout(net, "copy", r, 0.0f);
    const int h = wk_net_linear(net, "fc1", wk_net_global_avgpool(net, "gap", 0), 4, true);
    wk_net_linear(net, "fc2", wk_net_add(net, "add", wk_net_flatten(net, "flat", r), h), 2, true);
  }
  ck_assert_msg(wk_net_finalize(net, 7) == WK_OK, "%s", wk_last_error());
  return net;
}

START_TEST(test_in_place_through_flatten) {
  const int kind = _i;
  wk_net *net[2] = {wkt_flatten_net(kind, false), wkt_flatten_net(kind, true)};
  const int hw = kind == 1 ? 2 : 1, c = kind == 1 ? 3 : 4;
  const int64_t xs[4] = {4, hw, hw, c};
  const int64_t nx = 4 * hw * hw * c;
  float x0[48], xk[48], out[2][2][16], grad[2][16];
  for (int64_t i = 0; i < nx; i++) x0[i] = sinf(1.3f * (float)i);
  for (int k = 0; k < 2; k++) {
    for (int train = 0; train < 2; train++) {
      memcpy(xk, x0, sizeof xk);
      wk_tensor x = wk_tensor_view(xk, WK_F32, 4, xs), y;
      ck_assert_msg(wk_net_forward(net[k], &x, train, &y) == WK_OK, "%s", wk_last_error());
      ck_assert_int_le(wk_tensor_numel(&y), 16);
      memcpy(out[k][train], y.data, (size_t)wk_tensor_numel(&y) * sizeof(float));
      ck_assert_msg(!memcmp(xk, x0, (size_t)nx * sizeof(float)), "graph %d: the input changed",
                    kind);
      if (!train) continue;
      float dyd[16];
      for (int i = 0; i < 16; i++) dyd[i] = cosf(0.7f * (float)i);
      const int64_t ds[2] = {y.shape[0], y.shape[1]};
      wk_tensor dy = wk_tensor_view(dyd, WK_F32, 2, ds);
      ck_assert_msg(wk_net_backward(net[k], &dy) == WK_OK, "%s", wk_last_error());
      const int pi = wk_net_find_param(net[k], kind == 0 ? "fc.weight" : "conv.weight");
      ck_assert_int_ge(pi, 0);
      size_t np;
      const wk_param *pp = wk_net_params(net[k], &np);
      memcpy(grad[k], wk_net_grads(net[k]) + pp[pi].offset, 8 * sizeof(float));
    }
  }
  for (int train = 0; train < 2; train++)
    for (int i = 0; i < 8; i++)
      ck_assert_msg(fabsf(out[0][train][i] - out[1][train][i]) <= 1e-6f,
                    "graph %d (%s): output %d is %g, with a copy before the flatten %g", kind,
                    train ? "training" : "evaluation", i, (double)out[0][train][i],
                    (double)out[1][train][i]);
  for (int i = 0; i < 8; i++)
    ck_assert_msg(fabsf(grad[0][i] - grad[1][i]) <= 1e-6f,
                  "graph %d: weight gradient %d is %g, with a copy before the flatten %g", kind,
                  i, (double)grad[0][i], (double)grad[1][i]);
  for (int k = 0; k < 2; k++) {
    wk_ctx *ctx = wk_net_ctx(net[k]);
    wk_net_destroy(net[k]);
    wk_ctx_destroy(ctx);
  }
}
END_TEST

/* Batchnorm in training over one value per channel (batch 1 of a 1x1 map)
 * is an error, with the batchnorm fused with its relu too (that path once
 * asserted and aborted the process). */
START_TEST(test_bn_one_value_refused) {
  const bool relu = _i;
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 1, 1, 3, &net), WK_OK);
  const wk_conv2d_params p = wk_conv2d_params_make(1, 0, 1);
  int v = wk_net_batchnorm(net, "bn", wk_net_conv(net, "conv", 0, 4, 1, 1, &p, false), 1e-5f,
                           0.1f);
  if (relu) v = wk_net_act(net, "relu", v, WK_ACT_RELU);
  wk_net_linear(net, "fc", wk_net_global_avgpool(net, "gap", v), 2, true);
  ck_assert_msg(wk_net_finalize(net, 7) == WK_OK, "%s", wk_last_error());
  float xd[6] = {1, 2, 3, 4, 5, 6};
  const int64_t one[4] = {1, 1, 1, 3}, two[4] = {2, 1, 1, 3};
  wk_tensor x = wk_tensor_view(xd, WK_F32, 4, one), y;
  ck_assert_int_eq(wk_net_forward(net, &x, true, &y), WK_ERR_SHAPE);
  ck_assert_msg(strstr(wk_last_error(), "bn: training needs more than one value per channel"),
                "%s", wk_last_error());
  ck_assert_int_eq(wk_net_forward(net, &x, false, &y), WK_OK); /* evaluation is fine */
  x = wk_tensor_view(xd, WK_F32, 4, two);
  ck_assert_msg(wk_net_forward(net, &x, true, &y) == WK_OK, "%s", wk_last_error());
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

static Suite *nn_suite(void) {
  Suite *s = suite_create("nn");
  TCase *tc = tcase_create("nn");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_param_counts_match_torchvision);
  tcase_add_loop_test(tc, test_in_place_through_flatten, 0, 3);
  tcase_add_loop_test(tc, test_bn_one_value_refused, 0, 2);
  tcase_add_test(tc, test_param_names_follow_torchvision);
  tcase_add_test(tc, test_fast_path_matches_reference_smallcnn);
  tcase_add_test(tc, test_fast_path_matches_reference_resnet18);
  tcase_add_test(tc, test_fast_path_matches_reference_resnet18_direct);
  tcase_add_test(tc, test_fast_path_matches_reference_mobilenetv2);
  tcase_add_loop_test(tc, test_fast_path_matches_reference_mobilenetv2_bn_kernels, 0, 2);
  tcase_add_test(tc, test_train_fusions);
  tcase_add_test(tc, test_train_conv_act_fusion);
  tcase_add_test(tc, test_fast_path_matches_reference_frozen_body);
  tcase_add_test(tc, test_eval_pointwise_depthwise_fusion);
  tcase_add_test(tc, test_eval_pointwise_depthwise_on_the_input);
  tcase_add_test(tc, test_eval_residual_add_fusion);
  tcase_add_test(tc, test_frozen_body_gets_no_gradient);
  tcase_add_test(tc, test_batch_size_change_and_repeat);
  tcase_add_loop_test(tc, test_sync_bn_matches_plain_batchnorm, 0, 2);
  tcase_add_test(tc, test_sync_bn_two_ranks_match_one_batch);
  tcase_add_test(tc, test_builder_errors);
  tcase_add_test(tc, test_u8_input_matches_the_float_path);
  tcase_add_test(tc, test_init_is_deterministic_and_scaled);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return wkt_run_suite(nn_suite()); }
