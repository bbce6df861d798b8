/* test_gpu_net.c - networks on the GPU (wk_net_use_gpu, src/cuda/cuda_net.c)
 * against the same networks on the CPU.
 *
 * Every node type runs on the device: the zoo's smallcnn, resnet18 and
 * mobilenetv2 (conv with groups, batchnorm, relu, relu6, max pool, global
 * average pool, linear, add, dropout) and a hand-built graph for the rest
 * (dilated conv with bias, average pooling with and without the padding
 * counted, flatten). For each: evaluation forward (its values sharing memory
 * by the forward's steps; again after training, each value held), training
 * forward (outputs and the batchnorm running statistics it moves), backward
 * (the whole gradient arena), and three SGD steps through the trainer (losses
 * and final weights).
 * The training step on the device (its update, its loss) against the host's
 * on the same GPU. The whole step in one call (the default) and in CUDA
 * graphs ($WHISKER_CUDA_GRAPH=1) against the stepwise calls, bit for bit;
 * what a step costs the host in waits and allocations (emulated only).
 * Convolution algorithms chosen by timing against cuDNN's heuristics, and the
 * context's cache of timed choices. The caching device allocator under
 * networks (nothing leaked, memory reused, no buffer read before it is
 * written).
 *
 * Tolerances (normalised error, max |gpu - cpu| / max |cpu|): 1e-4 for
 * outputs and 2e-4 for statistics and weights after steps; gradients get
 * ck_grads_f32's (relu masks can flip between the two sides). Both
 * sides compute in float32 without TF32 (cuDNN FMA math, cuBLAS default), but
 * with different summation orders and algorithms (Winograd on the CPU, cuDNN's
 * choices on the GPU), so bit equality is not expected; 1e-4 is ~1000 float
 * ulps of accumulated rounding over a few layers and far below any real error
 * (a wrong index or a missing term shows as O(1)).
 *
 * Each test runs in a process of its own (Check's fork mode; the parent never
 * touches CUDA, the device count comes from a child): a fault that poisons a
 * CUDA context, a hang (each test's timeout) or an environment variable a
 * failed test left set stays with that test. Results stream as TAP where
 * $CK_TAP_LOG_FILE_NAME says (gpu_check.sh: standard output), so a run cut
 * short still shows what finished.
 *
 * Without a device, the suite checks only that the failure is clean and exits
 * 77 (ctest: skipped). */
#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cuda/cuda.h"
#include "nn/net.h"
#include "nn/net_impl.h" /* wk_net_value_numel */
#include "nn/zoo.h"
#include "test_util.h"
#include "modelio/model.h"
#include "dist/dist.h"
#include "train/ddp.h"
#include "train/trainer.h"
#include "fake.h" /* wk_fake_stats_t: test_step_budget, emulated device only */

enum { WKT_SKIP = 77 };
static int n_devices;

typedef wk_net *(*wkt_builder)(wk_ctx *ctx);

static wk_net *wkt_zoo(wk_ctx *ctx, const char *arch, int size, float width) {
  wk_arch_opts o = wk_arch_opts_default(5);
  o.in_h = o.in_w = size;
  o.width = width;
  wk_net *net = NULL;
  ck_assert_msg(wk_zoo_build(ctx, arch, &o, 11, &net) == WK_OK, "%s: %s", arch, wk_last_error());
  return net;
}

static wk_net *wkt_smallcnn(wk_ctx *ctx) { return wkt_zoo(ctx, "smallcnn", 32, 1.0f); }
static wk_net *wkt_resnet18(wk_ctx *ctx) { return wkt_zoo(ctx, "resnet18", 64, 1.0f); }
static wk_net *wkt_mobilenet(wk_ctx *ctx) { return wkt_zoo(ctx, "mobilenetv2", 64, 0.5f); }
/* For tests that count the step's pieces of work, not its values: the same
 * nodes on a quarter of the pixels (ResNet-18 at half width too: a sixteenth
 * of its convolutions' arithmetic, which the emulated device spends most of
 * such a test's time on). */
static wk_net *wkt_resnet18_small(wk_ctx *ctx) { return wkt_zoo(ctx, "resnet18", 32, 0.5f); }
static wk_net *wkt_mobilenet_small(wk_ctx *ctx) { return wkt_zoo(ctx, "mobilenetv2", 32, 0.5f); }

/* The ops the zoo does not use: dilated conv with bias, both average pools,
 * flatten; a dead end, a convolution nothing reads (its gradient, which no
 * node writes, is zero: its weights' too); and a max pooling at stride 1
 * whose input is also the add's (its backward adds to a gradient begun). */
static wk_net *wkt_misc(wk_ctx *ctx) {
  wk_net *net = NULL;
  ck_assert_int_eq(wk_net_create(ctx, 20, 20, 3, &net), WK_OK);
  wk_conv2d_params cp = wk_conv2d_params_make(1, 2, 1);
  cp.dilation_h = cp.dilation_w = 2;
  int x = wk_net_conv(net, "conv", 0, 8, 3, 3, &cp, true);
  x = wk_net_batchnorm(net, "bn", x, 1e-5f, 0.1f);
  x = wk_net_act(net, "relu", x, WK_ACT_RELU);
  const wk_conv2d_params one = wk_conv2d_params_make(1, 0, 1);
  ck_assert_int_ge(wk_net_conv(net, "dead_end", x, 4, 1, 1, &one, true), 0);
  const wk_pool2d_params mp = wk_pool2d_params_make(3, 1, 1);
  x = wk_net_add(net, "add_max", x, wk_net_maxpool(net, "pool_max", x, &mp));
  wk_pool2d_params ap = wk_pool2d_params_make(3, 2, 1);
  ap.count_include_pad = true;
  x = wk_net_avgpool(net, "pool_incl", x, &ap);
  ap.count_include_pad = false;
  x = wk_net_avgpool(net, "pool_excl", x, &ap);
  x = wk_net_flatten(net, "flatten", x);
  x = wk_net_linear(net, "fc", x, 4, true);
  ck_assert_int_ge(x, 0);
  ck_assert_msg(wk_net_finalize(net, 5) == WK_OK, "%s", wk_last_error());
  return net;
}

/* Non-trivial batchnorm statistics and affine parameters, as a trained net has. */
static void wkt_perturb(wk_net *net) {
  size_t np, nb;
  const wk_param *p = wk_net_params(net, &np);
  const wk_param *b = wk_net_buffers(net, &nb);
  for (size_t i = 0; i < np; i++)
    if (p[i].ndim == 1)
      wkt_fill_f32(wk_net_weights(net) + p[i].offset, (int64_t)p[i].numel, 100 + i, 0.5f, 1.5f);
  for (size_t i = 0; i < nb; i++)
    wkt_fill_f32(wk_net_buffer_data(net) + b[i].offset, (int64_t)b[i].numel, 200 + i, 0.2f,
                 1.0f);
  wk_net_weights_changed(net);
}

static void ck_close(const char *what, const float *gpu, const float *cpu, int64_t n, double tol) {
  const double e = wkt_rel_err(gpu, cpu, n, 1e-6);
  ck_assert_msg(e <= tol, "%s: normalised error %g > %g", what, e, tol);
}

/* float32 gradients, GPU against CPU, every parameter. Two things move them
 * beyond float rounding without anything being wrong, so the bounds are
 * test_fidelity.c's for its fast path (a wrong op is off by O(1)):
 * - an activation within rounding of a relu kink flips a mask element on one
 *   side (cuDNN's algorithms round differently from the CPU's): everything
 *   upstream moves by up to ~1e-2 of its largest value, more at small maps;
 * - a gradient that is exactly zero in theory (a bias a training batchnorm
 *   cancels) is rounding noise on both sides: the floor, 1e-3 of the largest
 *   gradient of the network, keeps it from being divided by nothing.
 * Each tensor's error (normalised by its largest value, at least the floor)
 * <= 0.25, and <= 2e-2 scaled to the largest gradient; the worst is printed,
 * so the run shows how close they really are. The output layer's parameters,
 * when it is a linear layer (no relu mask lies between it and the loss, and a
 * flip moves its input by rounding only), keep 2e-4. */
static void ck_grads_f32(const char *what, const float *gpu, wk_net *cpu_net) {
  size_t np;
  const wk_param *ps = wk_net_params(cpu_net, &np);
  const float *cpu = wk_net_grads(cpu_net);
  const size_t n_elems = wk_net_n_elems(cpu_net);
  const wk_node *last = wk_net_node(cpu_net, wk_net_n_nodes(cpu_net) - 1);
  double gmax = 0.0;
  for (size_t k = 0; k < n_elems; k++) gmax = fmax(gmax, fabs((double)cpu[k]));
  const double floor = 1e-3 * gmax;
  double worst = 0.0, worst_global = 0.0;
  const char *worst_name = "";
  for (size_t i = 0; i < np; i++) {
    const float *g = gpu + ps[i].offset, *c = cpu + ps[i].offset;
    const int64_t n = (int64_t)ps[i].numel;
    const double e = wkt_rel_err(g, c, n, floor);
    double m = floor;
    for (int64_t k = 0; k < n; k++) m = fmax(m, fabs((double)c[k]));
    const double eg = gmax > 0 ? e * m / gmax : e;
    if (e > worst) worst = e, worst_name = ps[i].name;
    worst_global = fmax(worst_global, eg);
    ck_assert_msg(e <= 0.25 && eg <= 2e-2,
                  "%s: gradient of %s: normalised error %g (bound 0.25), %g of the largest "
                  "gradient (bound 2e-2)", what, ps[i].name, e, eg);
    const bool output_layer = last->op == WK_NODE_LINEAR &&
                              ((int)i == last->param[0] || (int)i == last->param[1]);
    ck_assert_msg(!output_layer || e <= 2e-4,
                  "%s: gradient of the output layer's %s: normalised error %g > 2e-4", what,
                  ps[i].name, e);
  }
  printf("%s: gradients within %.2g (worst, %s) and %.2g of the largest\n", what, worst,
         worst_name, worst_global);
}

/* wk_net_use_gpu with $WHISKER_BN_FUSE=fuse (NULL: unset) while the GPU
 * network is made (it reads it then), the caller's value restored after. */
static wk_status wkt_use_gpu_env(wk_net *net, const char *name, const char *value) {
  const char *old = getenv(name);
  char *keep = old ? strdup(old) : NULL;
  if (value) setenv(name, value, 1);
  else unsetenv(name);
  const wk_status st = wk_net_use_gpu(net, 0);
  if (keep) setenv(name, keep, 1);
  else unsetenv(name);
  free(keep);
  return st;
}

static wk_status wkt_use_gpu_fuse(wk_net *net, const char *fuse) {
  return wkt_use_gpu_env(net, "WHISKER_BN_FUSE", fuse);
}

/* A GPU network made with $name=value is refused (WK_ERR_INVALID_ARG) with a
 * message holding `expect`. */
static void wkt_env_refused(const char *name, const char *value, const char *expect) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_smallcnn(ctx);
  ck_assert_int_eq(wkt_use_gpu_env(net, name, value), WK_ERR_INVALID_ARG);
  ck_assert_msg(strstr(wk_last_error(), expect) != NULL, "$%s=%s: %s", name, value,
                wk_last_error());
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}

/* wkt_compare's batch for net: `batch` inputs in [-1, 1] (seed 7). */
static wk_tensor wkt_compare_input(const wk_net *net, int batch) {
  int h, w, c;
  wk_net_input_shape(net, &h, &w, &c);
  const int64_t xs[4] = {batch, h, w, c};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 7, -1.0f, 1.0f);
  return x;
}

/* ... its labels (i mod the classes), and its trainer's settings: SGD at a
 * constant 0.01 for three steps. */
static wk_tensor wkt_compare_labels(const wk_net *net, int batch) {
  const int64_t f = wk_net_output_features(net), ls[1] = {batch};
  wk_tensor labels = wkt_tensor(WK_I32, 1, ls);
  for (int i = 0; i < batch; i++) ((int32_t *)labels.data)[i] = (int32_t)(i % f);
  return labels;
}

static wk_train_config wkt_compare_sgd(void) {
  return (wk_train_config){.optim = wk_optim_config_default(WK_OPTIM_SGD),
                           .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 3),
                           .seed = 1};
}

/* The losses of wkt_compare's three SGD steps of a freshly built and
 * perturbed network of ctx, into loss[3], and its weights after them, into a
 * new array (*weights, the caller frees). */
static void wkt_sgd3(wk_ctx *ctx, wkt_builder build, int batch, float loss[3], float **weights) {
  wk_net *net = build(ctx);
  wkt_perturb(net);
  wk_tensor x = wkt_compare_input(net, batch), labels = wkt_compare_labels(net, batch);
  const wk_train_config tc = wkt_compare_sgd();
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &tc, &t), WK_OK);
  for (int s = 0; s < 3; s++) ck_assert_int_eq(wk_trainer_step(t, &x, &labels, &loss[s], NULL), WK_OK);
  const size_t n = wk_net_n_elems(net);
  *weights = malloc(n * sizeof **weights);
  ck_assert_ptr_nonnull(*weights);
  memcpy(*weights, wk_net_weights(net), n * sizeof **weights);
  wk_trainer_destroy(t);
  wk_tensor_free(&labels);
  wk_tensor_free(&x);
  wk_net_destroy(net);
}

/* fuse: $WHISKER_BN_FUSE for the GPU network (NULL: unset); gs: where to
 * put its graph stats at the end (NULL: nowhere). oracle: also train the
 * network on the reference implementation (plain loops, same thread count),
 * and let the GPU's losses and weights after the SGD steps be within the
 * bounds of the CPU's or of the reference's: for a network whose training
 * takes one of two paths by a rounding-level event, where the CPU fast path
 * and the reference may take different ones (test_mobilenetv2). */
static void wkt_compare_ex(const char *name, wkt_builder build, int batch, const char *fuse,
                           wk_gpu_graph_stats *gs, bool oracle) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *cpu = build(ctx), *gpu = build(ctx);
  wkt_perturb(cpu);
  wkt_perturb(gpu);
  ck_assert_msg(wkt_use_gpu_fuse(gpu, fuse) == WK_OK, "%s: %s", name, wk_last_error());
  ck_assert(wk_net_on_gpu(gpu));
  wk_tensor x = wkt_compare_input(cpu, batch);
  const int64_t f = wk_net_output_features(cpu), n_out = batch * f;
  char what[128];
  /* evaluation */
  wk_tensor yc, yg;
  ck_assert_int_eq(wk_net_forward(cpu, &x, false, &yc), WK_OK);
  float *ref = malloc((size_t)n_out * sizeof *ref);
  memcpy(ref, yc.data, (size_t)n_out * sizeof *ref);
  ck_assert_msg(wk_net_forward(gpu, &x, false, &yg) == WK_OK, "%s: %s", name, wk_last_error());
  snprintf(what, sizeof what, "%s eval forward", name);
  ck_close(what, yg.data, ref, n_out, 1e-4);
  /* that network has only run inference: its values share memory by the
   * forward's steps (mem_plan.h), less than every value (each at least one
   * 256-byte piece) */
  wk_gpu_graph_stats vs;
  ck_assert_int_eq(wk_net_gpu_graph_stats(gpu, &vs), WK_OK);
  size_t every = 0;
  for (int v = 0; v <= wk_net_n_nodes(gpu); v++)
    if (v == 0 || wk_net_node(gpu, v - 1)->op != WK_NODE_FLATTEN)
      every += ((size_t)(batch * wk_net_value_numel(gpu, v)) * 4 + 255) / 256 * 256;
  printf("%s: inference values %zu bytes, every value %zu (%.1f%%)\n", name, vs.value_bytes,
         every, 100.0 * (double)vs.value_bytes / (double)every);
  ck_assert_msg(vs.values_shared && vs.value_bytes > 0 && vs.value_bytes < every,
                "%s: inference values %s, %zu bytes of %zu", name,
                vs.values_shared ? "shared" : "not shared", vs.value_bytes, every);
  /* training forward and backward */
  wk_net_set_dropout_seed(cpu, 3, 9);
  wk_net_set_dropout_seed(gpu, 3, 9);
  ck_assert_int_eq(wk_net_forward(cpu, &x, true, &yc), WK_OK);
  memcpy(ref, yc.data, (size_t)n_out * sizeof *ref);
  ck_assert_msg(wk_net_forward(gpu, &x, true, &yg) == WK_OK, "%s: %s", name, wk_last_error());
  snprintf(what, sizeof what, "%s train forward", name);
  ck_close(what, yg.data, ref, n_out, 1e-4);
  const int64_t ds[2] = {batch, f};
  wk_tensor dy = wkt_tensor(WK_F32, 2, ds);
  wkt_fill_f32(dy.data, n_out, 8, -1.0f, 1.0f);
  ck_assert_int_eq(wk_net_backward(cpu, &dy), WK_OK);
  ck_assert_msg(wk_net_backward(gpu, &dy) == WK_OK, "%s: %s", name, wk_last_error());
  ck_grads_f32(name, wk_net_grads(gpu), cpu);
  snprintf(what, sizeof what, "%s running statistics", name);
  ck_close(what, wk_net_buffer_data(gpu), wk_net_buffer_data(cpu),
           (int64_t)wk_net_n_buffer_elems(cpu), 2e-4);
  /* three SGD steps through the trainer: the losses and the weights (and
   * the reference's, for the allowance) */
  float ref_loss[3] = {0, 0, 0}, *ref_w = NULL;
  if (oracle) {
    /* the same thread count: a context's count is the creating thread's
     * OpenMP setting, which oneDNN follows, so another count here would
     * change the CPU network's too */
    wk_ctx *rctx = wkt_ctx(WK_IMPL_REF, 2);
    wkt_sgd3(rctx, build, batch, ref_loss, &ref_w);
    wk_ctx_destroy(rctx);
  }
  const wk_train_config tc = wkt_compare_sgd();
  wk_trainer *tcpu, *tgpu;
  ck_assert_int_eq(wk_trainer_create(cpu, &tc, &tcpu), WK_OK);
  ck_assert_int_eq(wk_trainer_create(gpu, &tc, &tgpu), WK_OK);
  wk_tensor labels = wkt_compare_labels(cpu, batch);
  /* with the oracle: the GPU must follow the CPU or the reference all the
   * way, the three losses and the weights (not one at one step, the other at
   * the next) */
  bool all_cpu = true, all_ref = oracle;
  for (int s = 0; s < 3; s++) {
    float lc, lg;
    ck_assert_int_eq(wk_trainer_step(tcpu, &x, &labels, &lc, NULL), WK_OK);
    ck_assert_msg(wk_trainer_step(tgpu, &x, &labels, &lg, NULL) == WK_OK, "%s: %s", name,
                  wk_last_error());
    printf("%s step %d: loss %.7g on the GPU, %.7g on the CPU (relative difference %.2g)\n",
           name, s, (double)lg, (double)lc, fabs((double)lg - lc) / fabs((double)lc));
    const bool near_cpu = fabs((double)lg - lc) <= 1e-4 * fabs((double)lc) + 1e-6;
    const bool near_ref = oracle && fabs((double)lg - ref_loss[s]) <=
                                        1e-4 * fabs((double)ref_loss[s]) + 1e-6;
    if (oracle)
      printf("%s step %d: loss %.7g on the reference (relative difference: the CPU %.2g, the "
             "GPU %.2g)\n", name, s, (double)ref_loss[s],
             fabs((double)lc - ref_loss[s]) / fabs((double)ref_loss[s]),
             fabs((double)lg - ref_loss[s]) / fabs((double)ref_loss[s]));
    ck_assert_msg(near_cpu || near_ref, "%s step %d: loss %g on the GPU, %g on the CPU%s", name,
                  s, (double)lg, (double)lc, oracle ? " (and not the reference's either)" : "");
    all_cpu = all_cpu && near_cpu;
    all_ref = all_ref && near_ref;
  }
  snprintf(what, sizeof what, "%s weights after 3 steps", name);
  const int64_t n_w = (int64_t)wk_net_n_elems(cpu);
  const double e_cpu = wkt_rel_err(wk_net_weights(gpu), wk_net_weights(cpu), n_w, 1e-6);
  const double e_ref = oracle ? wkt_rel_err(wk_net_weights(gpu), ref_w, n_w, 1e-6) : e_cpu;
  if (oracle)
    printf("%s weights after 3 steps (normalised error): the GPU %.2g from the CPU, %.2g from "
           "the reference; the CPU %.2g from the reference\n", name, e_cpu, e_ref,
           wkt_rel_err(wk_net_weights(cpu), ref_w, n_w, 1e-6));
  all_cpu = all_cpu && e_cpu <= 2e-4;
  all_ref = all_ref && e_ref <= 2e-4;
  ck_assert_msg(all_cpu || all_ref, "%s: normalised error %g from the CPU's > 2e-4%s", what,
                e_cpu, oracle ? " and from the reference's, or the losses followed one and the "
                "other" : "");
  free(ref_w);
  /* evaluation again, on the values as training holds them (each its own):
   * the CPU given the GPU's trained weights and statistics */
  memcpy(wk_net_weights(cpu), wk_net_weights(gpu), wk_net_n_elems(cpu) * sizeof(float));
  memcpy(wk_net_buffer_data(cpu), wk_net_buffer_data(gpu),
         wk_net_n_buffer_elems(cpu) * sizeof(float));
  wk_net_weights_changed(cpu);
  ck_assert_int_eq(wk_net_forward(cpu, &x, false, &yc), WK_OK);
  memcpy(ref, yc.data, (size_t)n_out * sizeof *ref);
  ck_assert_msg(wk_net_forward(gpu, &x, false, &yg) == WK_OK, "%s: %s", name, wk_last_error());
  snprintf(what, sizeof what, "%s eval forward after training", name);
  ck_close(what, yg.data, ref, n_out, 1e-4);
  const size_t shared_bytes = vs.value_bytes;
  ck_assert_int_eq(wk_net_gpu_graph_stats(gpu, &vs), WK_OK);
  ck_assert_msg(!vs.values_shared && vs.value_bytes > shared_bytes, "%s: trained values %s, "
                "%zu bytes (%zu shared)", name, vs.values_shared ? "shared" : "not shared",
                vs.value_bytes, shared_bytes);
  if (gs) ck_assert_int_eq(wk_net_gpu_graph_stats(gpu, gs), WK_OK);
  wk_trainer_destroy(tcpu);
  wk_trainer_destroy(tgpu);
  wk_tensor_free(&labels);
  wk_tensor_free(&dy);
  wk_tensor_free(&x);
  free(ref);
  wk_net_destroy(cpu);
  wk_net_destroy(gpu);
  wk_ctx_destroy(ctx);
}

static void wkt_compare(const char *name, wkt_builder build, int batch, const char *fuse,
                        wk_gpu_graph_stats *gs) {
  wkt_compare_ex(name, build, batch, fuse, gs, false);
}

START_TEST(test_smallcnn) { wkt_compare("smallcnn", wkt_smallcnn, 4, NULL, NULL); }
END_TEST
START_TEST(test_resnet18) {
  wk_gpu_graph_stats gs;
  wkt_compare("resnet18", wkt_resnet18, 3, "0", &gs);
  ck_assert_int_eq(gs.bn_fuse_groups, 0); /* unfused when asked; fused by default below */
  ck_assert_int_eq(gs.bn_infer_fused_runs, 0);
}
END_TEST

/* Inference through cuDNN's batchnorm, the nodes one by one
 * ($WHISKER_GPU_INFER_BN=cudnn), against the CPU as above: no group runs
 * whole; a value that is not own or cudnn is refused. */
START_TEST(test_infer_bn_cudnn) {
  setenv("WHISKER_GPU_INFER_BN", "cudnn", 1);
  wk_gpu_graph_stats gs;
  wkt_compare("resnet18, inference through cuDNN", wkt_resnet18, 3, NULL, &gs);
  ck_assert_int_eq(gs.bn_fuse_groups, 20);
  ck_assert_int_eq(gs.bn_infer_fused_runs, 0);
  unsetenv("WHISKER_GPU_INFER_BN");
  wkt_env_refused("WHISKER_GPU_INFER_BN", "cuda", "expected own or cudnn");
}
END_TEST
/* mobilenetv2's training here takes one of two paths by a rounding-level
 * event in the first step (an activation crossing a ReLU6 kink is the likely
 * one; not pinned down): the reference implementation itself moves from one
 * to the other when one input in seven is scaled by 1 - 1e-7 (the loss after
 * one step 0.9107645 or 0.9106156, after three 1.364636 or 1.371638). The
 * CPU at two threads takes the second path, at one thread and on the
 * reference the first; so the GPU may match either (the oracle). */
START_TEST(test_mobilenetv2) { wkt_compare_ex("mobilenetv2", wkt_mobilenet, 3, NULL, NULL, true); }
END_TEST
START_TEST(test_misc_ops) { wkt_compare("misc", wkt_misc, 5, NULL, NULL); }
END_TEST

/* The GPU executor refuses a graph it cannot run or that is malformed,
 * before it touches the device's memory: a parameter or batchnorm buffer
 * index past its table or below -1 (WK_ERR_INVALID_ARG), asymmetric padding
 * (WK_ERR_UNSUPPORTED); the same graph unharmed is accepted. */
static wk_status wkt_try_graph(const wk_net *net, int node, int field, int value) {
  wk_node *nodes = malloc((size_t)net->n_nodes * sizeof *nodes);
  ck_assert_ptr_nonnull(nodes);
  memcpy(nodes, net->nodes, (size_t)net->n_nodes * sizeof *nodes);
  if (field == 0) nodes[node].param[0] = value;
  else if (field == 1) nodes[node].param[1] = value;
  else if (field == 2) nodes[node].buffer[0] = value;
  else if (field == 3) nodes[node].conv.pad_bottom = nodes[node].conv.pad_top + value;
  const wk_gpu_graph g = {.in_h = net->in_h, .in_w = net->in_w, .in_c = net->in_c,
                          .precision = net->precision, .n_nodes = net->n_nodes, .nodes = nodes,
                          .n_params = net->n_params, .n_elems = net->n_elems,
                          .params = net->params, .n_buffers = net->n_buffers,
                          .n_buffer_elems = net->n_buffer_elems, .buffers = net->buffers};
  wk_gpu_net *gn = NULL;
  const wk_status s = wk_gpu_net_create(&g, 0, &gn);
  ck_assert_int_eq(s == WK_OK, gn != NULL);
  if (gn) wk_gpu_net_destroy(gn);
  free(nodes);
  return s;
}

START_TEST(test_graph_refused) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_smallcnn(ctx);
  int conv = -1, bn = -1;
  for (int i = 0; i < net->n_nodes; i++) {
    if (conv < 0 && net->nodes[i].op == WK_NODE_CONV) conv = i;
    if (bn < 0 && net->nodes[i].op == WK_NODE_BATCHNORM) bn = i;
  }
  ck_assert_int_ge(conv, 0);
  ck_assert_int_ge(bn, 0);
  ck_assert_msg(wkt_try_graph(net, conv, -1, 0) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wkt_try_graph(net, conv, 0, (int)net->n_params), WK_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "index out of range"));
  ck_assert_int_eq(wkt_try_graph(net, bn, 1, -2), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wkt_try_graph(net, bn, 2, (int)net->n_buffers), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wkt_try_graph(net, conv, 3, 1), WK_ERR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "asymmetric padding"));
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Max pooling through cuDNN ($WHISKER_GPU_POOL=cudnn; whisker's kernels are
 * the default, in every test above), against the CPU as above; a value that
 * is not own or cudnn is refused. */
START_TEST(test_pool_cudnn) {
  setenv("WHISKER_GPU_POOL", "cudnn", 1);
  wkt_compare("resnet18, max pooling through cuDNN", wkt_resnet18, 3, NULL, NULL);
  wkt_compare("misc, max pooling through cuDNN", wkt_misc, 5, NULL, NULL);
  unsetenv("WHISKER_GPU_POOL");
  wkt_env_refused("WHISKER_GPU_POOL", "fast", "expected own or cudnn");
}
END_TEST

/* Batchnorm fused with relu and with the residual add, the other batchnorms
 * plain ($WHISKER_BN_FUSE=groups) against the CPU at float32's bounds: every gradient
 * (the batchnorm's input's, its scale's and bias's, the add's other
 * input's, through the scratch where a value has two readers), the running
 * statistics and three SGD steps. resnet18 has 17 groups: the stem's
 * bn1 + relu, and in each of the 8 blocks bn1 + relu and bn2 + add + relu.
 * Should cuDNN refuse float32 (its fused kernels are documented for 16-bit
 * NHWC), the groups run unfused, the comparison holds all the same, and the
 * test says so: the fusion's own arithmetic is then checked only by the
 * 16-bit tests below. */
static void wkt_expect_fused(const char *name, const wk_gpu_graph_stats *gs, int groups,
                             int train_forwards) {
  ck_assert_int_eq(gs->bn_fuse_groups, groups);
  if (gs->bn_fuse_refused)
    printf("%s: %d of %d groups ran unfused: %s\n", name, gs->bn_fuse_refused, groups,
           gs->bn_fuse_note);
  else
    ck_assert_int_eq(gs->bn_fused_runs, (int64_t)train_forwards * groups);
}

START_TEST(test_bn_fuse_fp32_resnet18) {
  wk_gpu_graph_stats gs;
  wkt_compare("resnet18, batchnorm fused", wkt_resnet18, 3, "groups", &gs);
  /* training forwards: wkt_compare's own, then one per step; its two eval
   * forwards run the groups whole on whisker's kernel */
  wkt_expect_fused("test_bn_fuse_fp32_resnet18", &gs, 17, 4);
  ck_assert_int_eq(gs.bn_infer_fused_runs, 2 * 17);
}
END_TEST

/* The fusion's corners, in float32 against the CPU as above: a batchnorm on
 * the input itself (value 0: no gradient wanted), an add whose other input
 * is the batchnorm's own input (two readers: both gradients through the
 * scratch's halves and added in), a frozen batchnorm (its scale's and bias's
 * gradients discarded, its input's still wanted), and a batchnorm whose
 * output also feeds a second reader (not fused: 3 groups of 4 batchnorms). */
static wk_net *wkt_fuse_corners(wk_ctx *ctx) {
  wk_net *net = NULL;
  ck_assert_int_eq(wk_net_create(ctx, 16, 16, 4, &net), WK_OK);
  const wk_conv2d_params same = wk_conv2d_params_make(1, 1, 1);
  int x = wk_net_act(net, "relu_in", wk_net_batchnorm(net, "bn_in", 0, 1e-5f, 0.1f), WK_ACT_RELU);
  const int a = wk_net_conv(net, "conv_a", x, 8, 3, 3, &same, false);
  const int ba = wk_net_batchnorm(net, "bn_a", a, 1e-5f, 0.1f);
  x = wk_net_act(net, "relu_a", wk_net_add(net, "add_a", ba, a), WK_ACT_RELU);
  const int b = wk_net_batchnorm(net, "bn_b", wk_net_conv(net, "conv_b", x, 8, 3, 3, &same, false),
                                 1e-5f, 0.1f);
  x = wk_net_act(net, "relu_b", b, WK_ACT_RELU);
  const int c = wk_net_batchnorm(net, "bn_c", wk_net_conv(net, "conv_c", x, 8, 3, 3, &same, false),
                                 1e-5f, 0.1f);
  x = wk_net_add(net, "add_c", wk_net_act(net, "relu_c", c, WK_ACT_RELU), c);
  x = wk_net_flatten(net, "flatten", wk_net_global_avgpool(net, "gap", x));
  x = wk_net_linear(net, "fc", x, 5, true);
  ck_assert_int_ge(x, 0);
  ck_assert_msg(wk_net_finalize(net, 5) == WK_OK, "%s", wk_last_error());
  wk_net_set_frozen(net, "bn_b", true);
  return net;
}

/* Shapes no other GPU test sends cuDNN's batchnorm calls: 6 channels (NVIDIA's reference asks
 * for a multiple of 4 with the add-and-relu op; TensorFlow fuses only then) in a relu group,
 * an add-and-relu group and a batchnorm alone, and a batchnorm over a linear layer's (N, C)
 * output, which reaches cuDNN as N x C x 1 x 1. Whatever cuDNN takes or refuses, the run must
 * match the CPU's. */
static wk_net *wkt_fuse_odd(wk_ctx *ctx) {
  wk_net *net = NULL;
  ck_assert_int_eq(wk_net_create(ctx, 12, 12, 3, &net), WK_OK);
  const wk_conv2d_params same = wk_conv2d_params_make(1, 1, 1);
  const int a = wk_net_conv(net, "conv_a", 0, 6, 3, 3, &same, false);
  int x = wk_net_act(net, "relu_a", wk_net_batchnorm(net, "bn_a", a, 1e-5f, 0.1f), WK_ACT_RELU);
  const int b = wk_net_batchnorm(net, "bn_b", wk_net_conv(net, "conv_b", x, 6, 3, 3, &same, false),
                                 1e-5f, 0.1f);
  x = wk_net_act(net, "relu_b", wk_net_add(net, "add_b", b, x), WK_ACT_RELU);
  const int c = wk_net_batchnorm(net, "bn_c", wk_net_conv(net, "conv_c", x, 6, 3, 3, &same, false),
                                 1e-5f, 0.1f);
  x = wk_net_add(net, "add_c", wk_net_act(net, "relu_c", c, WK_ACT_RELU), c);
  x = wk_net_flatten(net, "flatten", wk_net_global_avgpool(net, "gap", x));
  x = wk_net_linear(net, "fc1", x, 10, true);
  x = wk_net_act(net, "relu_fc", wk_net_batchnorm(net, "bn_fc", x, 1e-5f, 0.1f), WK_ACT_RELU);
  x = wk_net_linear(net, "fc2", x, 5, true);
  ck_assert_int_ge(x, 0);
  ck_assert_msg(wk_net_finalize(net, 5) == WK_OK, "%s", wk_last_error());
  return net;
}

START_TEST(test_bn_fuse_odd_shapes) {
  wk_gpu_graph_stats gs;
  wkt_compare("odd batchnorm shapes, every batchnorm through the Ex calls", wkt_fuse_odd, 6,
              "all", &gs);
  printf("odd batchnorm shapes: %d groups (%d a batchnorm alone), %d refused: %s\n",
         gs.bn_fuse_groups, gs.bn_solo_groups, gs.bn_fuse_refused, gs.bn_fuse_note);
  ck_assert_int_ge(gs.bn_fuse_groups, 3);
  wkt_compare("odd batchnorm shapes, unfused", wkt_fuse_odd, 6, "0", &gs);
}
END_TEST

START_TEST(test_bn_fuse_fp32_corners) {
  wk_gpu_graph_stats gs;
  wkt_compare("fusion corners", wkt_fuse_corners, 6, "groups", &gs);
  wkt_expect_fused("test_bn_fuse_fp32_corners", &gs, 3, 4);
}
END_TEST

/* $WHISKER_GPU_WORKSPACE_MB=0 keeps the convolutions to algorithms without
 * workspace, and the fused batchnorms fused (their workspace has a floor of
 * its own): every group of the corners fused at every training forward. */
START_TEST(test_bn_fuse_workspace_zero) {
  setenv("WHISKER_GPU_WORKSPACE_MB", "0", 1);
  wk_gpu_graph_stats gs;
  wkt_compare("fusion corners, no workspace", wkt_fuse_corners, 6, "groups", &gs);
  unsetenv("WHISKER_GPU_WORKSPACE_MB");
  ck_assert_msg(gs.bn_fuse_refused == 0, "%d groups unfused: %s", gs.bn_fuse_refused,
                gs.bn_fuse_note);
  wkt_expect_fused("test_bn_fuse_workspace_zero", &gs, 3, 4);
}
END_TEST

/* The default ($WHISKER_BN_FUSE unset, or all): the batchnorms no group
 * takes (resnet18's three downsample ones; the corners' bn_c, whose output
 * has two readers) run alone through the Ex calls (CUDNN_BATCHNORM_OPS_BN),
 * at the same bounds; the eval forwards run the 17 relu groups whole and the
 * three alone on whisker's kernel. */
START_TEST(test_bn_fuse_all_fp32) {
  wk_gpu_graph_stats gs;
  wkt_compare("resnet18, every batchnorm through the Ex calls", wkt_resnet18, 3, NULL, &gs);
  ck_assert_int_eq(gs.bn_solo_groups, 3);
  wkt_expect_fused("test_bn_fuse_all_fp32 resnet18", &gs, 20, 4);
  ck_assert_int_eq(gs.bn_infer_fused_runs, 2 * 17);
  wkt_compare("fusion corners, every batchnorm through the Ex calls", wkt_fuse_corners, 6, "all",
              &gs);
  ck_assert_int_eq(gs.bn_solo_groups, 1);
  wkt_expect_fused("test_bn_fuse_all_fp32 corners", &gs, 4, 4);
  /* a value that is none of the modes is refused, naming them */
  wkt_env_refused("WHISKER_BN_FUSE", "yes", "expected auto, 1, all, groups or 0");
}
END_TEST

/* A frozen body (fine-tuning's first phase) gets no gradient on the GPU either,
 * and unfreezing reaches the device. */
START_TEST(test_frozen_body) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net = wkt_smallcnn(ctx);
  ck_assert_int_eq(wk_net_use_gpu(net, 0), WK_OK);
  wk_net_set_frozen(net, "conv", true);
  wk_net_set_frozen(net, "bn", true);
  const int64_t xs[4] = {2, 32, 32, 3}, ds[2] = {2, 5};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), dy = wkt_tensor(WK_F32, 2, ds), y;
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 1, -1.0f, 1.0f);
  wkt_fill_f32(dy.data, 10, 2, -1.0f, 1.0f);
  ck_assert_int_eq(wk_net_forward(net, &x, true, &y), WK_OK);
  ck_assert_int_eq(wk_net_backward(net, &dy), WK_OK);
  size_t np;
  const wk_param *ps = wk_net_params(net, &np);
  bool head_moved = false;
  for (size_t i = 0; i < np; i++)
    for (size_t k = 0; k < ps[i].numel; k++) {
      const float g = wk_net_grads(net)[ps[i].offset + k];
      if (ps[i].flags & WK_PARAM_FROZEN) ck_assert_float_eq(g, 0.0f);
      else head_moved |= g != 0.0f;
    }
  ck_assert(head_moved);
  wk_net_set_frozen(net, "", false);
  ck_assert_int_eq(wk_net_forward(net, &x, true, &y), WK_OK);
  ck_assert_int_eq(wk_net_backward(net, &dy), WK_OK);
  const int c1 = wk_net_find_param(net, "conv1.weight");
  ck_assert_int_ge(c1, 0);
  bool conv_moved = false;
  for (size_t k = 0; k < ps[c1].numel; k++) conv_moved |= wk_net_grads(net)[ps[c1].offset + k] != 0;
  ck_assert_msg(conv_moved, "unfreezing did not reach the GPU");
  wk_tensor_free(&x);
  wk_tensor_free(&dy);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* A frozen backbone, as fine-tuning's first phase: resnet18 with everything
 * but layer4 and fc frozen, its training forward and backward against the
 * CPU. The groups with nothing trainable upstream (the stem's and layer1-3's,
 * 13 of the 17 relu groups, and 2 of the 3 downsample batchnorms alone) run
 * on whisker's kernel, the relu groups whole at their relu; layer4's 4 relu
 * groups and its downsample batchnorm are run by cuDNN's Ex calls; the
 * trainable layers' gradients match the CPU's and the frozen ones stay zero. */
START_TEST(test_frozen_backbone) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *cpu = wkt_resnet18(ctx), *gpu = wkt_resnet18(ctx);
  wkt_perturb(cpu);
  wkt_perturb(gpu);
  ck_assert_int_eq(wk_net_use_gpu(gpu, 0), WK_OK);
  wk_net *both[2] = {cpu, gpu};
  for (int k = 0; k < 2; k++) {
    wk_net_set_frozen(both[k], "", true);
    wk_net_set_frozen(both[k], "layer4", false);
    wk_net_set_frozen(both[k], "fc", false);
  }
  const int batch = 3;
  wk_tensor x = wkt_compare_input(cpu, batch), yc, yg;
  const int64_t f = wk_net_output_features(cpu), n_out = batch * f, ds[2] = {batch, f};
  ck_assert_int_eq(wk_net_forward(cpu, &x, true, &yc), WK_OK);
  float *ref = malloc((size_t)n_out * sizeof *ref);
  ck_assert_ptr_nonnull(ref);
  memcpy(ref, yc.data, (size_t)n_out * sizeof *ref);
  ck_assert_msg(wk_net_forward(gpu, &x, true, &yg) == WK_OK, "%s", wk_last_error());
  ck_close("frozen backbone train forward", yg.data, ref, n_out, 1e-4);
  wk_tensor dy = wkt_tensor(WK_F32, 2, ds);
  wkt_fill_f32(dy.data, n_out, 8, -1.0f, 1.0f);
  ck_assert_int_eq(wk_net_backward(cpu, &dy), WK_OK);
  ck_assert_msg(wk_net_backward(gpu, &dy) == WK_OK, "%s", wk_last_error());
  ck_grads_f32("frozen backbone", wk_net_grads(gpu), cpu);
  size_t np;
  const wk_param *ps = wk_net_params(gpu, &np);
  for (size_t i = 0; i < np; i++)
    for (size_t k = 0; (ps[i].flags & WK_PARAM_FROZEN) && k < ps[i].numel; k++)
      ck_assert_msg(wk_net_grads(gpu)[ps[i].offset + k] == 0.0f, "%s moved", ps[i].name);
  ck_close("frozen backbone running statistics", wk_net_buffer_data(gpu),
           wk_net_buffer_data(cpu), (int64_t)wk_net_n_buffer_elems(cpu), 2e-4);
  wk_gpu_graph_stats gs;
  ck_assert_int_eq(wk_net_gpu_graph_stats(gpu, &gs), WK_OK);
  ck_assert_int_eq(gs.bn_fuse_groups, 20);
  ck_assert_int_eq(gs.bn_infer_fused_runs, 13);
  if (!gs.bn_fuse_refused) ck_assert_int_eq(gs.bn_fused_runs, 5);
  free(ref);
  wk_tensor_free(&x);
  wk_tensor_free(&dy);
  wk_net_destroy(cpu);
  wk_net_destroy(gpu);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Saves t (a smallcnn of 5 classes at 32 px) as a checkpoint in a scratch
 * folder and loads it back into *back and *tb (on the host; the folder is
 * gone again). */
static void wkt_checkpoint_round_trip(wk_ctx *ctx, wk_trainer *t, wk_net **back,
                                      wk_trainer **tb) {
  char dir[] = "/tmp/wk_gpu_ckpt_XXXXXX", path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
  wk_model_meta meta;
  ck_assert_int_eq(wk_model_meta_init(&meta, "smallcnn", 5, 32), WK_OK);
  const wk_data_pos pos = {0, 3, 4};
  ck_assert_msg(wk_checkpoint_save(path, t, &meta, &pos) == WK_OK, "%s", wk_last_error());
  wk_model_meta_free(&meta);
  ck_assert_msg(wk_checkpoint_load(ctx, path, back, tb, &meta, NULL) == WK_OK, "%s",
                wk_last_error());
  wk_model_meta_free(&meta);
  remove(path);
  rmdir(dir);
}

/* The step on the device (the optimizer's update in kernels/train.cu, the
 * weights, gradients, statistics and optimizer state kept there, and the
 * loss) against the host's loss and optimizer on the same GPU
 * ($WHISKER_GPU_HOST_STEP=1): the same forward feeds both, the two losses
 * and their gradients differ by float rounding only (see wkt_device_loss),
 * and the update kernels are the host loop operation for operation, so the
 * two agree to cuDNN's own run-to-run variation (1e-5).
 * Midway the device-side run is checkpointed (its state comes back to the
 * host) and resumed into a fresh trainer (the state goes up again): after two
 * more steps both continuations agree. For SGD with Nesterov momentum and for
 * AdamW. */
static void wkt_device_step(wk_optim_kind kind) {
  setenv("WHISKER_CUDNN_DETERMINISTIC", "1", 1); /* the two nets' gradients alike */
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *dev = wkt_smallcnn(ctx), *host = wkt_smallcnn(ctx);
  wkt_perturb(dev);
  wkt_perturb(host);
  ck_assert_int_eq(wk_net_use_gpu(dev, 0), WK_OK);
  ck_assert_int_eq(wk_net_use_gpu(host, 0), WK_OK);
  wk_train_config tc = {.optim = wk_optim_config_default(kind),
                        .schedule = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, 0.01, 8),
                        .seed = 1};
  if (kind == WK_OPTIM_SGD) tc.optim.nesterov = true;
  tc.optim.weight_decay = 1e-3;
  wk_trainer *td, *th;
  ck_assert_int_eq(wk_trainer_create(dev, &tc, &td), WK_OK);
  ck_assert_int_eq(wk_trainer_create(host, &tc, &th), WK_OK);
  const int64_t xs[4] = {4, 32, 32, 3}, ls[1] = {4};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), labels = wkt_tensor(WK_I32, 1, ls);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 5, -1.0f, 1.0f);
  for (int i = 0; i < 4; i++) ((int32_t *)labels.data)[i] = i % 5;
  const int64_t n = (int64_t)wk_net_n_elems(dev);
  for (int s = 0; s < 3; s++) {
    float ld, lh;
    ck_assert_msg(wk_trainer_step(td, &x, &labels, &ld, NULL) == WK_OK, "%s", wk_last_error());
    setenv("WHISKER_GPU_HOST_STEP", "1", 1);
    ck_assert_msg(wk_trainer_step(th, &x, &labels, &lh, NULL) == WK_OK, "%s", wk_last_error());
    unsetenv("WHISKER_GPU_HOST_STEP");
    ck_assert_msg(fabs((double)ld - lh) <= 1e-5 * fabs((double)lh) + 1e-7,
                  "step %d: loss %g with the device's step, %g with the host's", s, (double)ld,
                  (double)lh);
  }
  ck_close("weights after 3 steps, device step vs host step", wk_net_weights(dev),
           wk_net_weights(host), n, 1e-5);
  /* checkpoint the device-side run, resume it, and go on with both */
  wk_net *back = NULL;
  wk_trainer *tb = NULL;
  wkt_checkpoint_round_trip(ctx, td, &back, &tb);
  ck_assert_int_eq(wk_net_use_gpu(back, 0), WK_OK);
  for (int s = 0; s < 2; s++) {
    float ld, lb;
    ck_assert_msg(wk_trainer_step(td, &x, &labels, &ld, NULL) == WK_OK, "%s", wk_last_error());
    ck_assert_msg(wk_trainer_step(tb, &x, &labels, &lb, NULL) == WK_OK, "%s", wk_last_error());
  }
  ck_close("weights 2 steps after a checkpoint, resumed vs uninterrupted", wk_net_weights(back),
           wk_net_weights(dev), n, 1e-5);
  wk_trainer_destroy(tb);
  wk_net_destroy(back);
  wk_trainer_destroy(td);
  wk_trainer_destroy(th);
  wk_tensor_free(&x);
  wk_tensor_free(&labels);
  wk_net_destroy(dev);
  wk_net_destroy(host);
  wk_ctx_destroy(ctx);
}

/* --precision tf32, bf16 and fp16 against the CPU's float32. tf32 runs
 * convolutions and linear layers on tensor cores with 10-bit mantissas in the
 * products (relative error ~5e-4 each): resnet18's output is compared with
 * the CPU's at 2e-2 and the loss of three training steps at 1e-2. bf16 and
 * fp16 are autocast: every value and gradient is stored in 16 bits. How far
 * that moves these networks is PyTorch's own experience, measured on the same
 * shapes (3 images of 64x64, 5 classes, mobilenet_v2 at width 0.5, random
 * weights, the same dropout masks, 8 seeds) with its CPU bfloat16 autocast:
 * scripts/autocast_tolerance_torch.py finds at most 1.9e-2 (resnet18) and
 * 9.9e-3 (mobilenet_v2) relative error in the eval output, and 6.7e-3 and
 * 2.9e-2 in the first training loss (mobilenet_v2's batchnorms over 3 images
 * of 2x2 pixels near the end amplify the rounding). With every value rounded
 * to 16 bits, as here (--storage, against float64): bf16 1.7e-2 and 9.9e-3,
 * losses 6.1e-3 and 3.0e-2; fp16 1.9e-3 and 1.6e-3, losses 1.4e-3 and
 * 8.8e-3. With the statistics and 1-D parameters drawn as wkt_perturb draws
 * them (--storage --test-perturb: eval activations grow through the layers,
 * the test's own case): bf16 1.5e-2 and 5.9e-3, losses 4.2e-3 and 8.8e-3;
 * fp16 2.2e-3 and 6.7e-4, losses 5.7e-4 and 8.7e-4. The bounds leave 2.5x
 * or more: outputs 5e-2; bf16 losses 3e-2
 * (resnet18) and 0.1 (mobilenetv2); fp16 losses 2e-2 and 3e-2. Far from bit
 * for bit, close enough that a wrong index or a missing term (an O(1) error)
 * still shows; the weight gradients also go through mobilenetv2's grouped
 * convolutions. The steps use a learning rate of 0.001: at 0.01 one step
 * memorises the three images (resnet18's loss 2.67, then 0.078, then 0.0016),
 * and the relative difference of so small a loss measures rounding amplified
 * by a saturated softmax, not the step (the emulated plugin, whose libraries
 * compute in double, found fp16 2.2% and 7% apart at 0.01; 0.09% and 0.25% at
 * 0.001). */
static void wkt_precision(wk_precision prec, wkt_builder build, int size, double out_tol,
                          double loss_tol, double loss_scale) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *cpu = build(ctx), *gpu = build(ctx);
  wkt_perturb(cpu);
  wkt_perturb(gpu);
  ck_assert_int_eq(wk_net_set_precision(gpu, prec), WK_OK);
  ck_assert_msg(wk_net_place(gpu, 0) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_net_set_precision(gpu, WK_PRECISION_FP32), WK_ERR_INVALID_ARG);
  const char *name = wk_precision_name(prec);
  const int64_t xs[4] = {3, size, size, 3}, ls[1] = {3};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), labels = wkt_tensor(WK_I32, 1, ls);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 7, -1.0f, 1.0f);
  for (int i = 0; i < 3; i++) ((int32_t *)labels.data)[i] = i;
  wk_tensor yc, yg;
  ck_assert_int_eq(wk_net_forward(cpu, &x, false, &yc), WK_OK);
  float ref[15];
  memcpy(ref, yc.data, sizeof ref);
  ck_assert_msg(wk_net_forward(gpu, &x, false, &yg) == WK_OK, "%s", wk_last_error());
  char what[64];
  snprintf(what, sizeof what, "%s eval forward", name);
  ck_close(what, yg.data, ref, 15, out_tol);
  wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                        .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.001, 3), .seed = 1};
  wk_trainer *tcpu, *tgpu;
  ck_assert_int_eq(wk_trainer_create(cpu, &tc, &tcpu), WK_OK);
  ck_assert_int_eq(wk_trainer_create(gpu, &tc, &tgpu), WK_OK);
  if (loss_scale > 0) wk_trainer_set_loss_scale(tgpu, loss_scale);
  float first = 0, lg = 0;
  for (int s = 0; s < 3; s++) {
    float lc;
    ck_assert_int_eq(wk_trainer_step(tcpu, &x, &labels, &lc, NULL), WK_OK);
    ck_assert_msg(wk_trainer_step(tgpu, &x, &labels, &lg, NULL) == WK_OK, "%s", wk_last_error());
    ck_assert_int_eq(wk_trainer_skipped_steps(tgpu), 0);
    printf("%s step %d: loss %.6g on the GPU, %.6g on the CPU (relative difference %.2g, bound "
           "%.2g)\n", name, s, (double)lg, (double)lc, fabs((double)lg - lc) / fabs((double)lc),
           loss_tol);
    ck_assert_msg(fabs((double)lg - lc) <= loss_tol * fabs((double)lc),
                  "%s step %d: loss %g on the GPU, %g on the CPU", name, s, (double)lg,
                  (double)lc);
    if (s == 0) first = lg;
  }
  /* the steps train: a GPU step that changed nothing cannot pass */
  ck_assert_msg(fabs((double)lg - first) > 2 * loss_tol * fabs((double)first),
                "%s: the loss moved from %g to %g only", name, (double)first, (double)lg);
  wk_trainer_destroy(tcpu);
  wk_trainer_destroy(tgpu);
  wk_tensor_free(&x);
  wk_tensor_free(&labels);
  wk_net_destroy(cpu);
  wk_net_destroy(gpu);
  wk_ctx_destroy(ctx);
}

START_TEST(test_tf32) { wkt_precision(WK_PRECISION_TF32, wkt_resnet18, 64, 2e-2, 1e-2, 0); }
END_TEST
START_TEST(test_bf16_resnet18) {
  wkt_precision(WK_PRECISION_BF16, wkt_resnet18, 64, 5e-2, 3e-2, 0);
}
END_TEST
START_TEST(test_bf16_mobilenetv2) {
  wkt_precision(WK_PRECISION_BF16, wkt_mobilenet, 64, 5e-2, 0.1, 0);
}
END_TEST
/* fp16 at a loss scale small enough that nothing overflows (the skip is
 * tested on its own below) */
START_TEST(test_fp16_resnet18) {
  wkt_precision(WK_PRECISION_FP16, wkt_resnet18, 64, 5e-2, 2e-2, 128);
}
END_TEST
START_TEST(test_fp16_mobilenetv2) {
  wkt_precision(WK_PRECISION_FP16, wkt_mobilenet, 64, 5e-2, 3e-2, 128);
}
END_TEST

/* Without batchnorm, where 16 bits stay well conditioned: convolutions with
 * bias, relu, relu6, a residual add, max pooling, a strided convolution,
 * global average pooling and a linear layer with bias. */
static wk_net *wkt_plain(wk_ctx *ctx) {
  wk_net *net = NULL;
  ck_assert_int_eq(wk_net_create(ctx, 32, 32, 3, &net), WK_OK);
  const wk_conv2d_params same = wk_conv2d_params_make(1, 1, 1);
  const wk_conv2d_params down = wk_conv2d_params_make(2, 1, 1);
  const int a = wk_net_act(net, "relu1", wk_net_conv(net, "conv1", 0, 16, 3, 3, &same, true),
                           WK_ACT_RELU);
  const int b = wk_net_act(net, "relu6", wk_net_conv(net, "conv2", a, 16, 3, 3, &same, true),
                           WK_ACT_RELU6);
  const wk_pool2d_params mp = wk_pool2d_params_make(2, 2, 0);
  int x = wk_net_maxpool(net, "pool", wk_net_add(net, "add", a, b), &mp);
  x = wk_net_act(net, "relu3", wk_net_conv(net, "conv3", x, 32, 3, 3, &down, true), WK_ACT_RELU);
  x = wk_net_flatten(net, "flatten", wk_net_global_avgpool(net, "gap", x));
  x = wk_net_linear(net, "fc", x, 5, true);
  ck_assert_int_ge(x, 0);
  ck_assert_msg(wk_net_finalize(net, 5) == WK_OK, "%s", wk_last_error());
  return net;
}

/* The gradients of bf16 and fp16 autocast against the CPU's float32, on
 * wkt_plain: the 16-bit bias add and bias gradient kernels, the linear
 * layer's 16-bit products and its weight gradient into the float32 arena, the
 * widened convolution weight gradients. Where batchnorm normalises over a few
 * pixels (resnet18 at 64x64, batch 3) per-parameter gradients under 16-bit
 * storage differ from float32's by O(1) in PyTorch's own autocast too
 * (cancellation in batchnorm's backward), so those tests compare outputs and
 * losses only. The same net in PyTorch's CPU bfloat16 autocast (8 seeds,
 * batch 4 at 32x32: scripts/autocast_tolerance_torch.py --plain) moves the
 * output by at most 6.1e-3 and a parameter's gradient by at most
 * 0.13 (conv1's weights, sums over every pixel). Every value and gradient
 * rounded to 16 bits, as here (--plain --storage, against float64): bf16
 * 7.7e-3 and 0.15, fp16 1.9e-3 and 0.036 (only ~4x finer: the gradients'
 * error is mostly relu units whose sign flips, not accumulated rounding; 200
 * seeds reach 0.087 in fp16). Bounds 5e-2 and 0.3 for bf16, 2e-2 and 0.1 for
 * fp16. A wrong index, a bias added twice or a missing term is an O(1) error
 * in some parameter's gradient. */
static void wkt_half_grads(wk_precision prec, double out_tol, double grad_tol) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *cpu = wkt_plain(ctx), *gpu = wkt_plain(ctx);
  ck_assert_int_eq(wk_net_set_precision(gpu, prec), WK_OK);
  ck_assert_msg(wk_net_use_gpu(gpu, 0) == WK_OK, "%s", wk_last_error());
  const char *name = wk_precision_name(prec);
  enum { B = 4, F = 5 };
  const int64_t xs[4] = {B, 32, 32, 3}, ds[2] = {B, F};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), dy = wkt_tensor(WK_F32, 2, ds);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 21, -1.0f, 1.0f);
  wkt_fill_f32(dy.data, B * F, 22, -1.0f, 1.0f);
  wk_tensor yc, yg;
  float ref[B * F];
  ck_assert_int_eq(wk_net_forward(cpu, &x, true, &yc), WK_OK);
  memcpy(ref, yc.data, sizeof ref);
  ck_assert_msg(wk_net_forward(gpu, &x, true, &yg) == WK_OK, "%s", wk_last_error());
  char what[128];
  snprintf(what, sizeof what, "%s plain net train forward", name);
  ck_close(what, yg.data, ref, B * F, out_tol);
  ck_assert_int_eq(wk_net_backward(cpu, &dy), WK_OK);
  ck_assert_msg(wk_net_backward(gpu, &dy) == WK_OK, "%s", wk_last_error());
  size_t np;
  const wk_param *ps = wk_net_params(cpu, &np);
  for (size_t i = 0; i < np; i++) {
    snprintf(what, sizeof what, "%s gradient of %s", name, ps[i].name);
    ck_close(what, wk_net_grads(gpu) + ps[i].offset, wk_net_grads(cpu) + ps[i].offset,
             (int64_t)ps[i].numel, grad_tol);
  }
  wk_tensor_free(&x);
  wk_tensor_free(&dy);
  wk_net_destroy(cpu);
  wk_net_destroy(gpu);
  wk_ctx_destroy(ctx);
}

START_TEST(test_bf16_gradients) { wkt_half_grads(WK_PRECISION_BF16, 5e-2, 0.3); }
END_TEST
START_TEST(test_fp16_gradients) { wkt_half_grads(WK_PRECISION_FP16, 2e-2, 0.1); }
END_TEST

/* A residual net where batchnorm normalises over thousands of values (batch
 * 8 at 32x32 and 16x16), so 16-bit storage moves its gradients little:
 * scripts/bn_fuse_tolerance_torch.py emulates it. Five fusion groups: the
 * stem's bn + relu, bn + relu and bn + add + relu in each block; block 2's
 * add reads two batchnorms (one fused, the shortcut's not). */
static wk_net *wkt_resblock(wk_ctx *ctx) {
  wk_net *net = NULL;
  ck_assert_int_eq(wk_net_create(ctx, 32, 32, 3, &net), WK_OK);
  const wk_conv2d_params same = wk_conv2d_params_make(1, 1, 1);
  const wk_conv2d_params down = wk_conv2d_params_make(2, 1, 1);
  const wk_conv2d_params down1 = wk_conv2d_params_make(2, 0, 1);
#define WKT_CBN(name, in, ch, k, p) \
  wk_net_batchnorm(net, "bn_" name, wk_net_conv(net, name, in, ch, k, k, p, false), 1e-5f, 0.1f)
  const int stem = wk_net_act(net, "relu0", WKT_CBN("conv0", 0, 16, 3, &same), WK_ACT_RELU);
  int a = wk_net_act(net, "relu1a", WKT_CBN("conv1a", stem, 16, 3, &same), WK_ACT_RELU);
  a = WKT_CBN("conv1b", a, 16, 3, &same);
  const int y1 = wk_net_act(net, "relu1", wk_net_add(net, "add1", a, stem), WK_ACT_RELU);
  a = wk_net_act(net, "relu2a", WKT_CBN("conv2a", y1, 32, 3, &down), WK_ACT_RELU);
  a = WKT_CBN("conv2b", a, 32, 3, &same);
  const int z = WKT_CBN("conv2s", y1, 32, 1, &down1);
  int x = wk_net_act(net, "relu2", wk_net_add(net, "add2", a, z), WK_ACT_RELU);
#undef WKT_CBN
  x = wk_net_flatten(net, "flatten", wk_net_global_avgpool(net, "gap", x));
  x = wk_net_linear(net, "fc", x, 5, true);
  ck_assert_int_ge(x, 0);
  ck_assert_msg(wk_net_finalize(net, 5) == WK_OK, "%s", wk_last_error());
  /* batchnorm scale in [0.5, 1.5] and bias in [-0.1, 0.1], as the emulation's */
  size_t np;
  const wk_param *p = wk_net_params(net, &np);
  for (size_t i = 0; i < np; i++) {
    if (strncmp(p[i].name, "bn_", 3) != 0) continue;
    const bool scale = strstr(p[i].name, ".weight") != NULL;
    wkt_fill_f32(wk_net_weights(net) + p[i].offset, (int64_t)p[i].numel, 300 + i,
                 scale ? 0.5f : -0.1f, scale ? 1.5f : 0.1f);
  }
  wk_net_weights_changed(net);
  return net;
}

/* One training forward and backward of wkt_resblock on the GPU in `prec`,
 * $WHISKER_BN_FUSE=fuse: the output, the gradient arena and the step of the
 * running statistics (after - before) into out, grads and stats, the graph
 * stats into gs. */
static void wkt_resblock_gpu(wk_ctx *ctx, wk_precision prec, const char *fuse, const wk_tensor *x,
                             const wk_tensor *dy, float *out, float *grads, float *stats,
                             wk_gpu_graph_stats *gs) {
  wk_net *net = wkt_resblock(ctx);
  ck_assert_int_eq(wk_net_set_precision(net, prec), WK_OK);
  ck_assert_msg(wkt_use_gpu_fuse(net, fuse) == WK_OK, "%s", wk_last_error());
  const size_t nb = wk_net_n_buffer_elems(net);
  memcpy(stats, wk_net_buffer_data(net), nb * sizeof *stats);
  wk_tensor y;
  ck_assert_msg(wk_net_forward(net, x, true, &y) == WK_OK, "%s", wk_last_error());
  memcpy(out, y.data, (size_t)wk_tensor_numel(dy) * sizeof *out);
  ck_assert_msg(wk_net_backward(net, dy) == WK_OK, "%s", wk_last_error());
  memcpy(grads, wk_net_grads(net), wk_net_n_elems(net) * sizeof *grads);
  for (size_t k = 0; k < nb; k++) stats[k] = wk_net_buffer_data(net)[k] - stats[k];
  ck_assert_int_eq(wk_net_gpu_graph_stats(net, gs), WK_OK);
  wk_net_destroy(net);
}

/* Bounds of wkt_bn_fuse_half (normalised errors): the output, the worst
 * parameter's gradient, the running statistics' step, each against the CPU;
 * the output's and the worst gradient's fused against unfused. */
typedef struct wkt_fuse_tol {
  double out, grad, stats, pair_out, pair_grad;
} wkt_fuse_tol;

/* Batchnorm fused with relu and the residual add in bf16 and fp16 (the
 * default there) against the CPU's float32 and against the same precision
 * unfused ($WHISKER_BN_FUSE=0), on wkt_resblock: the output, every
 * parameter's gradient (each parameter on its own) and what the training
 * forward moved the running statistics by. Bounds from
 * scripts/bn_fuse_tolerance_torch.py, which emulates both ways of storing 16
 * bits on this net (8 seeds): see the calls below. fp16 is what cuDNN
 * documents its fused kernels for: there every group must run fused; bf16
 * fuses where cuDNN takes it, and the test says what it refused. */
static void wkt_bn_fuse_half(wk_precision prec, const wkt_fuse_tol *tol, bool must_fuse) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *cpu = wkt_resblock(ctx);
  enum { B = 8, F = 5 };
  const int64_t xs[4] = {B, 32, 32, 3}, ds[2] = {B, F};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), dy = wkt_tensor(WK_F32, 2, ds), yc;
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 31, -1.0f, 1.0f);
  wkt_fill_f32(dy.data, B * F, 32, -1.0f, 1.0f);
  const size_t n = wk_net_n_elems(cpu), nb = wk_net_n_buffer_elems(cpu);
  /* unfused, the relu groups fused ($WHISKER_BN_FUSE=groups), every
   * batchnorm through the Ex calls (the default: the block's downsample
   * batchnorm alone), and stats[3] the CPU's */
  enum { V = 3 };
  static const char *const fuse[V] = {"0", "groups", NULL}, *const hows[V] = {
      "unfused", "fused", "all through the Ex calls"};
  float ref[B * F], out[V][B * F], *grads[V], *stats[V + 1];
  for (int f = 0; f < V; f++) ck_assert_ptr_nonnull(grads[f] = malloc(n * sizeof(float)));
  for (int f = 0; f <= V; f++) ck_assert_ptr_nonnull(stats[f] = malloc(nb * sizeof(float)));
  memcpy(stats[V], wk_net_buffer_data(cpu), nb * sizeof(float));
  ck_assert_int_eq(wk_net_forward(cpu, &x, true, &yc), WK_OK);
  memcpy(ref, yc.data, sizeof ref);
  ck_assert_int_eq(wk_net_backward(cpu, &dy), WK_OK);
  for (size_t k = 0; k < nb; k++) stats[V][k] = wk_net_buffer_data(cpu)[k] - stats[V][k];
  const char *name = wk_precision_name(prec);
  size_t np;
  const wk_param *ps = wk_net_params(cpu, &np);
  char what[160];
  for (int f = 0; f < V; f++) {
    wk_gpu_graph_stats gs;
    wkt_resblock_gpu(ctx, prec, fuse[f], &x, &dy, out[f], grads[f], stats[f], &gs);
    const char *how = hows[f];
    const int groups = f == 0 ? 0 : f == 1 ? 5 : 6;
    ck_assert_int_eq(gs.bn_fuse_groups, groups);
    ck_assert_int_eq(gs.bn_solo_groups, f == 2 ? 1 : 0);
    if (f && must_fuse)
      ck_assert_msg(gs.bn_fuse_refused == 0 && gs.bn_fused_runs == groups,
                    "%s %s: %d groups refused: %s", name, how, gs.bn_fuse_refused, gs.bn_fuse_note);
    if (f)
      printf("%s %s: %lld of %d batchnorm groups ran fused%s%s%s%s\n", name, how,
             (long long)gs.bn_fused_runs, groups, gs.bn_fuse_refused ? ": " : "", gs.bn_fuse_note,
             gs.bn_own_note[0] ? "; batchnorm on whisker's kernels: " : "", gs.bn_own_note);
    snprintf(what, sizeof what, "%s %s output vs the CPU", name, how);
    ck_close(what, out[f], ref, B * F, tol->out);
    snprintf(what, sizeof what, "%s %s running statistics' step vs the CPU", name, how);
    ck_close(what, stats[f], stats[V], (int64_t)nb, tol->stats);
    for (size_t i = 0; i < np; i++) {
      snprintf(what, sizeof what, "%s %s gradient of %s vs the CPU", name, how, ps[i].name);
      ck_close(what, grads[f] + ps[i].offset, wk_net_grads(cpu) + ps[i].offset,
               (int64_t)ps[i].numel, tol->grad);
    }
  }
  for (int f = 1; f < V; f++) {
    snprintf(what, sizeof what, "%s output, %s vs unfused", name, hows[f]);
    ck_close(what, out[f], out[0], B * F, tol->pair_out);
    for (size_t i = 0; i < np; i++) {
      snprintf(what, sizeof what, "%s gradient of %s, %s vs unfused", name, ps[i].name, hows[f]);
      ck_close(what, grads[f] + ps[i].offset, grads[0] + ps[i].offset, (int64_t)ps[i].numel,
               tol->pair_grad);
    }
  }
  for (int k = 0; k <= V; k++) free(stats[k]);
  for (int k = 0; k < V; k++) free(grads[k]);
  wk_tensor_free(&x);
  wk_tensor_free(&dy);
  wk_net_destroy(cpu);
  wk_ctx_destroy(ctx);
}

/* The emulation, worst of 8 seeds (float64 reference): fp16 output 1.1e-3
 * unfused, 1.0e-3 fused, 8.1e-4 fused vs unfused; the worst parameter's
 * gradient 0.12, 0.073 and 0.12; the running statistics' step 4.9e-4 and
 * 5.3e-4; bf16 output 6.9e-3, 8.3e-3, 6.0e-3, gradients 0.24, 0.23, 0.17,
 * statistics 4.0e-3 and 3.9e-3. The gradients' error is relu units whose
 * sign flips (each moves a sum over every pixel), not accumulated rounding:
 * fp16 is only ~2x finer than bf16 there, and fused vs unfused differs as
 * much as either from float32. Bounds about 2.5x (3x for the statistics,
 * whose emulation initialises the convolutions differently): fp16 output
 * 3e-3, gradients 0.3, statistics 2e-3; bf16 output 2e-2, gradients 0.6 (0.5
 * fused vs unfused), statistics 1.5e-2. A lost term (the add's other
 * input's gradient, the scale's, a statistic not moved) is O(1). */
START_TEST(test_bn_fuse_fp16) {
  const wkt_fuse_tol tol = {.out = 3e-3, .grad = 0.3, .stats = 2e-3, .pair_out = 3e-3,
                            .pair_grad = 0.3};
  wkt_bn_fuse_half(WK_PRECISION_FP16, &tol, true);
}
END_TEST
START_TEST(test_bn_fuse_bf16) {
  const wkt_fuse_tol tol = {.out = 2e-2, .grad = 0.6, .stats = 1.5e-2, .pair_out = 2e-2,
                            .pair_grad = 0.5};
  wkt_bn_fuse_half(WK_PRECISION_BF16, &tol, false);
}
END_TEST

/* Whisker's batchnorm kernels on the GPU (kernels/syncbn.cu) against the
 * CPU's batchnorm: synchronised over an NCCL communicator of one rank (whose
 * statistics are the batch's own), or alone ($WHISKER_GPU_OWN_BN=1, what runs
 * where cuDNN refuses a 16-bit batchnorm). The eval forward (the alone ones'
 * inference kernel; cuDNN's for the synchronised), the training forward,
 * every gradient and the running statistics' step must match as cuDNN's
 * batchnorm does (float32: 1e-4, ck_grads_f32's bounds, 2e-4; grad_tol is
 * not used there), and in 16 bits within the
 * storage's bounds of wkt_bn_fuse_half (the emulation's unfused path, which
 * rounds what this path rounds: fp16 3e-3, 0.3, 2e-3; bf16 2e-2, 0.6,
 * 1.5e-2; the eval output, which that emulation does not cover, measured
 * once the same way: bf16 9.6e-3, fp16 7.8e-4). Every batchnorm of
 * wkt_resblock runs so, and each one's input is a convolution's output (its
 * gradient wanted), so each also sums over the ranks in backward. */
static void wkt_whisker_bn(wk_precision prec, bool sync, double out_tol, double grad_tol,
                           double stats_tol) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *cpu = wkt_resblock(ctx), *gpu = wkt_resblock(ctx);
  ck_assert_int_eq(wk_net_set_precision(gpu, prec), WK_OK);
  ck_assert_msg(wkt_use_gpu_env(gpu, "WHISKER_GPU_OWN_BN", sync ? NULL : "1") == WK_OK, "%s",
                wk_last_error());
  size_t np;
  const wk_param *ps = wk_net_params(cpu, &np);
  int *param_bucket = calloc(np, sizeof *param_bucket);
  ck_assert_ptr_nonnull(param_bucket);
  if (sync) {
    const size_t lo = 0, hi = wk_net_n_elems(gpu);
    const wk_gpu_buckets b = {.n = 1, .lo = &lo, .hi = &hi, .param_bucket = param_bucket};
    unsigned char id[WK_GPU_COMM_ID_BYTES];
    ck_assert_msg(wk_gpu_comm_unique_id(id) == WK_OK, "%s", wk_last_error());
    ck_assert_msg(wk_net_gpu_attach_comm(gpu, id, 0, 1, &b, 60.0, true) == WK_OK, "%s",
                  wk_last_error());
  }
  enum { B = 8, F = 5 };
  const int64_t xs[4] = {B, 32, 32, 3}, ds[2] = {B, F};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), dy = wkt_tensor(WK_F32, 2, ds), yc, yg;
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 41, -1.0f, 1.0f);
  wkt_fill_f32(dy.data, B * F, 42, -1.0f, 1.0f);
  /* running statistics a trained net has, so that eval is not the identity */
  const size_t nb = wk_net_n_buffer_elems(cpu);
  wkt_fill_f32(wk_net_buffer_data(cpu), (int64_t)nb, 43, 0.2f, 1.0f);
  memcpy(wk_net_buffer_data(gpu), wk_net_buffer_data(cpu), nb * sizeof(float));
  wk_net_weights_changed(gpu);
  const char *name = wk_precision_name(prec), *how = sync ? "synchronised" : "whisker's";
  char what[160];
  float ref[B * F];
  ck_assert_int_eq(wk_net_forward(cpu, &x, false, &yc), WK_OK);
  memcpy(ref, yc.data, sizeof ref);
  ck_assert_msg(wk_net_forward(gpu, &x, false, &yg) == WK_OK, "%s", wk_last_error());
  snprintf(what, sizeof what, "%s %s batchnorm: eval output", name, how);
  ck_close(what, yg.data, ref, B * F, out_tol);
  float *before = malloc(nb * sizeof *before), *step[2] = {malloc(nb * 4), malloc(nb * 4)};
  ck_assert(before && step[0] && step[1]);
  memcpy(before, wk_net_buffer_data(cpu), nb * sizeof *before);
  ck_assert_int_eq(wk_net_forward(cpu, &x, true, &yc), WK_OK);
  memcpy(ref, yc.data, sizeof ref);
  ck_assert_msg(wk_net_forward(gpu, &x, true, &yg) == WK_OK, "%s", wk_last_error());
  snprintf(what, sizeof what, "%s %s batchnorm: training output", name, how);
  ck_close(what, yg.data, ref, B * F, out_tol);
  ck_assert_int_eq(wk_net_backward(cpu, &dy), WK_OK);
  ck_assert_msg(wk_net_backward(gpu, &dy) == WK_OK, "%s", wk_last_error());
  snprintf(what, sizeof what, "%s %s batchnorm", name, how);
  if (prec == WK_PRECISION_FP32)
    ck_grads_f32(what, wk_net_grads(gpu), cpu);
  for (size_t i = 0; prec != WK_PRECISION_FP32 && i < np; i++) {
    snprintf(what, sizeof what, "%s %s batchnorm: gradient of %s", name, how, ps[i].name);
    ck_close(what, wk_net_grads(gpu) + ps[i].offset, wk_net_grads(cpu) + ps[i].offset,
             (int64_t)ps[i].numel, grad_tol);
  }
  for (size_t k = 0; k < nb; k++) {
    step[0][k] = wk_net_buffer_data(cpu)[k] - before[k];
    step[1][k] = wk_net_buffer_data(gpu)[k] - before[k];
  }
  snprintf(what, sizeof what, "%s %s batchnorm: running statistics' step", name, how);
  ck_close(what, step[1], step[0], (int64_t)nb, stats_tol);
  /* the path ran (the bounds hold for cuDNN's batchnorm too): its 6
   * batchnorms in the training forward, and nothing fused, though cuDNN's
   * batchnorm would run 6 groups (5 with relu, 1 alone) */
  wk_gpu_graph_stats gs;
  ck_assert_int_eq(wk_net_gpu_graph_stats(gpu, &gs), WK_OK);
  ck_assert_int_eq(gs.bn_own_runs, 6);
  ck_assert_int_eq(gs.bn_fused_runs, 0);
  ck_assert_int_eq(gs.bn_fuse_groups, 6);
  free(param_bucket);
  free(before);
  free(step[0]);
  free(step[1]);
  wk_tensor_free(&x);
  wk_tensor_free(&dy);
  wk_net_destroy(cpu);
  wk_net_destroy(gpu);
  wk_ctx_destroy(ctx);
}

START_TEST(test_sync_bn_fp32) { wkt_whisker_bn(WK_PRECISION_FP32, true, 1e-4, 0, 2e-4); }
END_TEST
START_TEST(test_sync_bn_fp16) { wkt_whisker_bn(WK_PRECISION_FP16, true, 3e-3, 0.3, 2e-3); }
END_TEST
START_TEST(test_own_bn_fp32) { wkt_whisker_bn(WK_PRECISION_FP32, false, 1e-4, 0, 2e-4); }
END_TEST
START_TEST(test_own_bn_bf16) { wkt_whisker_bn(WK_PRECISION_BF16, false, 2e-2, 0.6, 1.5e-2); }
END_TEST

/* fp16's dynamic loss scaling: at a scale that overflows float16 the step
 * is skipped (the weights stay as they were, the scale halves, the count
 * shows it); at a sane scale the next step updates the weights. */
START_TEST(test_fp16_overflow_skips) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net = wkt_smallcnn(ctx);
  wkt_perturb(net);
  ck_assert_int_eq(wk_net_set_precision(net, WK_PRECISION_FP16), WK_OK);
  ck_assert_msg(wk_net_place(net, 0) == WK_OK, "%s", wk_last_error());
  wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                        .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 3), .seed = 1};
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &tc, &t), WK_OK);
  ck_assert(wk_trainer_loss_scale(t) == 65536.0);
  const int64_t xs[4] = {4, 32, 32, 3}, ls[1] = {4};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), labels = wkt_tensor(WK_I32, 1, ls);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 3, -1.0f, 1.0f);
  for (int i = 0; i < 4; i++) ((int32_t *)labels.data)[i] = i;
  const size_t n = wk_net_n_elems(net);
  float *before = malloc(n * sizeof *before);
  ck_assert_ptr_nonnull(before);
  memcpy(before, wk_net_weights(net), n * sizeof *before);
  wk_trainer_set_loss_scale(t, 1e30);
  float loss;
  ck_assert_msg(wk_trainer_step(t, &x, &labels, &loss, NULL) == WK_OK, "%s", wk_last_error());
  ck_assert(isfinite(loss));
  ck_assert_int_eq(wk_trainer_skipped_steps(t), 1);
  ck_assert(wk_trainer_loss_scale(t) == 5e29);
  ck_assert_int_eq(memcmp(before, wk_net_weights(net), n * sizeof *before), 0);
  wk_trainer_set_loss_scale(t, 128);
  ck_assert_msg(wk_trainer_step(t, &x, &labels, &loss, NULL) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_trainer_skipped_steps(t), 1);
  ck_assert_int_ne(memcmp(before, wk_net_weights(net), n * sizeof *before), 0);
  /* a checkpoint keeps the scale and the count of skipped steps */
  wk_net *back = NULL;
  wk_trainer *tb = NULL;
  wkt_checkpoint_round_trip(ctx, t, &back, &tb);
  ck_assert_int_eq(wk_trainer_skipped_steps(tb), 1);
  ck_assert(wk_trainer_loss_scale(tb) == 128.0);
  wk_trainer_destroy(tb);
  wk_net_destroy(back);
  free(before);
  wk_trainer_destroy(t);
  wk_tensor_free(&x);
  wk_tensor_free(&labels);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* The loss on the device (kernels/train.cu's softmax cross-entropy, its
 * gradient written into the output's gradient buffer) against the host's
 * loss on the same GPU ($WHISKER_GPU_HOST_LOSS=1: the logits come down and
 * their gradient goes up), all else equal: label smoothing 0.1, SGD with
 * momentum, four steps on a batch of 5, the update on the device, or with
 * clipping on the host (which needs the parameters' gradients, not the
 * logits'); fp16 at loss scale 128, so the scale goes into the loss's
 * gradient on both paths (and the update takes it out).
 * Tolerances: the same forward feeds both losses. The device sums the rows'
 * losses rounded to float (<= 6e-8 relative), and CUDA's exp and log differ
 * from glibc's by an ulp of double, so a probability, hence an element of the
 * logits' gradient, can differ by one float ulp. Those and cuDNN's own
 * run-to-run variation (the device-step test's 1e-5) are all that separates
 * the paths: losses within 1e-5 relative, weights within 1e-5 normalised
 * error. fp16 stores every value's gradient in 11 bits, where one float ulp
 * can cross a rounding boundary (~5e-4 of that element), and after two
 * updates the loss carries such flips: 1e-3 (seen on an H100: 3.4e-4 at
 * step 2, in one run of two).
 * A wrong factor (the 1 / batch, the loss scale, the smoothing) moves the
 * gradient and the loss by 10% or more. The predicted classes agree exactly
 * (these random logits do not tie within an ulp). */
static void wkt_device_loss(wk_precision prec, double loss_scale, double clip, double tol) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *dev = wkt_smallcnn(ctx), *host = wkt_smallcnn(ctx);
  wkt_perturb(dev);
  wkt_perturb(host);
  ck_assert_int_eq(wk_net_set_precision(dev, prec), WK_OK);
  ck_assert_int_eq(wk_net_set_precision(host, prec), WK_OK);
  ck_assert_msg(wk_net_use_gpu(dev, 0) == WK_OK, "%s", wk_last_error());
  ck_assert_msg(wk_net_use_gpu(host, 0) == WK_OK, "%s", wk_last_error());
  wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                        .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 4),
                        .seed = 1, .label_smoothing = 0.1f, .clip_norm = clip};
  wk_trainer *td, *th;
  ck_assert_int_eq(wk_trainer_create(dev, &tc, &td), WK_OK);
  ck_assert_int_eq(wk_trainer_create(host, &tc, &th), WK_OK);
  if (loss_scale > 0) {
    wk_trainer_set_loss_scale(td, loss_scale);
    wk_trainer_set_loss_scale(th, loss_scale);
  }
  enum { B = 5 };
  const int64_t xs[4] = {B, 32, 32, 3}, ls[1] = {B};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), labels = wkt_tensor(WK_I32, 1, ls);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 13, -1.0f, 1.0f);
  for (int i = 0; i < B; i++) ((int32_t *)labels.data)[i] = (i * 3) % 5;
  const char *name = wk_precision_name(prec);
  for (int s = 0; s < 4; s++) {
    float ld, lh;
    int32_t pd[B];
    ck_assert_msg(wk_trainer_step(td, &x, &labels, &ld, NULL) == WK_OK, "%s", wk_last_error());
    memcpy(pd, wk_trainer_predicted(td), sizeof pd);
    setenv("WHISKER_GPU_HOST_LOSS", "1", 1);
    const wk_status st = wk_trainer_step(th, &x, &labels, &lh, NULL);
    unsetenv("WHISKER_GPU_HOST_LOSS");
    ck_assert_msg(st == WK_OK, "%s", wk_last_error());
    ck_assert_msg(fabs((double)ld - lh) <= tol * fabs((double)lh) + 1e-7,
                  "%s step %d: loss %.9g on the device, %.9g on the host", name, s, (double)ld,
                  (double)lh);
    for (int i = 0; i < B; i++)
      ck_assert_msg(pd[i] == wk_trainer_predicted(th)[i], "%s step %d sample %d: predicted %d "
                    "on the device, %d on the host", name, s, i, pd[i],
                    wk_trainer_predicted(th)[i]);
    ck_assert_int_eq(wk_trainer_skipped_steps(td), 0);
    ck_assert_int_eq(wk_trainer_skipped_steps(th), 0);
    ck_assert(wk_trainer_loss_scale(td) == wk_trainer_loss_scale(th));
  }
  char what[96];
  snprintf(what, sizeof what, "%s weights after 4 steps, device loss vs host loss", name);
  ck_close(what, wk_net_weights(dev), wk_net_weights(host), (int64_t)wk_net_n_elems(dev), tol);
  wk_trainer_destroy(td);
  wk_trainer_destroy(th);
  wk_tensor_free(&x);
  wk_tensor_free(&labels);
  wk_net_destroy(dev);
  wk_net_destroy(host);
  wk_ctx_destroy(ctx);
}

START_TEST(test_device_loss_fp32) { wkt_device_loss(WK_PRECISION_FP32, 0, 0, 1e-5); }
END_TEST
START_TEST(test_device_loss_fp32_clipped) { wkt_device_loss(WK_PRECISION_FP32, 0, 1.0, 1e-5); }
END_TEST
START_TEST(test_device_loss_fp16) { wkt_device_loss(WK_PRECISION_FP16, 128, 0, 1e-3); }
END_TEST

/* Sets element 0 of parameter `name` to v, returning the old value; the
 * network uploads it before its next step. */
static float wkt_set_param0(wk_net *net, const char *name, float v) {
  size_t np;
  const wk_param *ps = wk_net_params(net, &np);
  for (size_t i = 0; i < np; i++)
    if (!strcmp(ps[i].name, name)) {
      float *p = wk_net_weights(net) + ps[i].offset;
      const float old = *p;
      *p = v;
      wk_net_weights_changed(net);
      return old;
    }
  ck_abort_msg("no parameter %s", name);
  return 0;
}

/* The device's loss fails as the host's does: a label out of range with the
 * host's message; a NaN loss stops the step with the same message and
 * changes no weight; a probe (the learning-rate sweep's step) reports the
 * NaN instead. The NaN comes from the last layer's bias: a NaN in the input
 * would not reach the loss (batchnorm spreads it over the channel and the
 * ReLU after it, on both sides, maps NaN to 0), only the gradients. */
START_TEST(test_device_loss_errors) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net = wkt_smallcnn(ctx);
  ck_assert_msg(wk_net_use_gpu(net, 0) == WK_OK, "%s", wk_last_error());
  wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                        .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 4),
                        .seed = 1, .label_smoothing = 0.1f};
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &tc, &t), WK_OK);
  const int64_t xs[4] = {3, 32, 32, 3}, ls[1] = {3};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), labels = wkt_tensor(WK_I32, 1, ls);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 17, -1.0f, 1.0f);
  int32_t *l = labels.data;
  l[0] = 1, l[1] = 5, l[2] = 0; /* 5 classes: label 5 is out of range */
  char msg[512];
  float loss;
  for (int pass = 0; pass < 2; pass++) { /* bad label, then a NaN loss */
    if (pass == 1) {
      l[1] = 4;
      wkt_set_param0(net, "fc.bias", NAN);
    }
    const size_t n = wk_net_n_elems(net);
    float *before = malloc(n * sizeof *before);
    ck_assert_ptr_nonnull(before);
    memcpy(before, wk_net_weights(net), n * sizeof *before);
    const wk_status sd = wk_trainer_step(t, &x, &labels, &loss, NULL);
    snprintf(msg, sizeof msg, "%s", wk_last_error());
    setenv("WHISKER_GPU_HOST_LOSS", "1", 1);
    const wk_status sh = wk_trainer_step(t, &x, &labels, &loss, NULL);
    unsetenv("WHISKER_GPU_HOST_LOSS");
    ck_assert_int_eq(sd, WK_ERR_INVALID_ARG);
    ck_assert_int_eq(sh, WK_ERR_INVALID_ARG);
    ck_assert_msg(strcmp(msg, wk_last_error()) == 0, "device: '%s', host: '%s'", msg,
                  wk_last_error());
    ck_assert_msg(strstr(msg, pass ? "step 0: the loss is NaN" : "label 5 of sample 1") != NULL,
                  "%s", msg);
    ck_assert_int_eq(memcmp(before, wk_net_weights(net), n * sizeof *before), 0);
    ck_assert_int_eq(wk_trainer_steps(t), 0);
    free(before);
  }
  ck_assert_msg(wk_trainer_step_at(t, &x, &labels, 0.01, &loss) == WK_OK, "%s", wk_last_error());
  ck_assert(isnan(loss));
  wk_trainer_destroy(t);
  wk_tensor_free(&x);
  wk_tensor_free(&labels);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------ CUDA graphs
 * The step on the device in one call (cuda/cuda.h; the trainer's default),
 * and with $WHISKER_CUDA_GRAPH=1 that call captured as a CUDA graph once a
 * batch size has run two steps, replayed after. The same network trains
 * twelve steps in one call, in one call captured, and twice stepwise
 * ($WHISKER_GPU_FUSED_STEP=0: the host's decisions between forward, loss,
 * backward and update), the baseline the
 * others must equal; the batch size goes 4, 3, 4 (each
 * size is captured and replayed, the switch may make the buffers move and
 * the graphs go), every step has its own batch and labels, the one-cycle
 * schedule changes the learning rate and the momentum at every step, and
 * dropout (mobilenetv2) draws new masks at every step: a graph that kept a
 * capture-time value shows.
 * Tolerance: none. The kernels are the uncaptured step's with the same
 * arguments, so the losses, predicted classes, weights and batchnorm
 * statistics must agree bit for bit, when the two runs without graphs agree
 * bit for bit with each other (cuDNN's chosen algorithms deterministic on
 * this GPU). When they do not, the graph run is held to their own variation,
 * the device-step test's 1e-5 (fp16 1e-4, see wkt_device_loss), and the test
 * says so. The graphs must have been captured (at least two) and replayed
 * (at least two), and no capture may have failed. */
enum { WKT_G_STEPS = 12, WKT_G_MAX_BATCH = 4 };
static const int wkt_g_batch[WKT_G_STEPS] = {4, 4, 4, 4, 3, 3, 3, 3, 4, 4, 4, 4};

typedef struct wkt_graph_case {
  const char *name;
  wkt_builder build;
  wk_precision prec;
  wk_optim_kind optim;
  float smoothing;
  bool u8;       /* batches of 8-bit pixels, normalised on the device */
  int skip_step; /* fp16: the loss scale is 1e30 at this step, which is skipped; -1 none */
} wkt_graph_case;

typedef struct wkt_graph_run {
  float loss[WKT_G_STEPS];
  int32_t pred[WKT_G_STEPS][WKT_G_MAX_BATCH];
  float *weights, *buffers;
  size_t n, n_buffers;
  int64_t skipped;
  double scale;
  wk_gpu_graph_stats gs;
} wkt_graph_run;

/* Step s's batch (b, h, w, c) and labels, the same in every run. */
static void wkt_graph_batch(const wkt_graph_case *c, wk_net *net, int s, wk_tensor *x,
                            wk_tensor *labels) {
  int h, w, ch;
  wk_net_input_shape(net, &h, &w, &ch);
  const int64_t b = wkt_g_batch[s], xs[4] = {b, h, w, ch}, ls[1] = {b};
  const int64_t f = wk_net_output_features(net);
  *x = wkt_tensor(c->u8 ? WK_U8 : WK_F32, 4, xs);
  *labels = wkt_tensor(WK_I32, 1, ls);
  const int64_t n = wk_tensor_numel(x);
  if (c->u8) {
    float *v = malloc((size_t)n * sizeof *v);
    ck_assert_ptr_nonnull(v);
    wkt_fill_f32(v, n, 100 + (uint64_t)s, 0.0f, 256.0f);
    for (int64_t i = 0; i < n; i++) ((uint8_t *)x->data)[i] = (uint8_t)v[i];
    free(v);
  } else {
    wkt_fill_f32(x->data, n, 100 + (uint64_t)s, -1.0f, 1.0f);
  }
  for (int64_t i = 0; i < b; i++) ((int32_t *)labels->data)[i] = (int32_t)((i * 7 + s) % f);
}

/* How a run's steps go to the device. */
typedef enum wkt_step_mode { WKT_STEPWISE, WKT_ONE_CALL, WKT_GRAPHS } wkt_step_mode;
static const char *const wkt_mode_names[] = {"stepwise", "one call", "graphs"};

/* The trainer's steps from now on in `mode` (its environment variables), and
 * back to the default. */
static void wkt_step_mode_set(wkt_step_mode mode) {
  if (mode == WKT_GRAPHS) setenv("WHISKER_CUDA_GRAPH", "1", 1);
  if (mode == WKT_STEPWISE) setenv("WHISKER_GPU_FUSED_STEP", "0", 1);
}

static void wkt_step_mode_clear(void) {
  unsetenv("WHISKER_CUDA_GRAPH");
  unsetenv("WHISKER_GPU_FUSED_STEP");
}

/* A run of WKT_G_STEPS steps in the given mode. With `stage` each
 * step is given the next one's batch (wk_trainer_set_next: copied up while the
 * step computes, as train/fit.c does), except that step WKT_G_DECOY is given a
 * decoy of the next batch's shape and other pixels (the step after it must
 * upload its own batch, not take the staged decoy), and step 0 a one-row batch
 * (step 1 uploads its own, and step 1's staging grows the device's buffer). */
enum { WKT_G_DECOY = 6 };
static void wkt_graph_train(wk_ctx *ctx, const wkt_graph_case *c, wkt_step_mode mode,
                            bool stage, wkt_graph_run *r) {
  memset(r, 0, sizeof *r);
  wk_net *net = c->build(ctx);
  wkt_perturb(net);
  ck_assert_int_eq(wk_net_set_precision(net, c->prec), WK_OK);
  ck_assert_msg(wk_net_use_gpu(net, 0) == WK_OK, "%s: %s", c->name, wk_last_error());
  if (c->u8) {
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    ck_assert_int_eq(wk_net_set_input_norm(net, mean, std), WK_OK);
  }
  wk_train_config tc = {.optim = wk_optim_config_default(c->optim),
                        .schedule = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, 0.01, WKT_G_STEPS),
                        .seed = 1, .label_smoothing = c->smoothing};
  tc.optim.weight_decay = 1e-3;
  if (c->optim == WK_OPTIM_SGD) tc.optim.nesterov = true;
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &tc, &t), WK_OK);
  const bool fp16 = c->prec == WK_PRECISION_FP16;
  if (fp16) wk_trainer_set_loss_scale(t, 128);
  wkt_step_mode_set(mode);
  wk_tensor xs[WKT_G_STEPS], ls[WKT_G_STEPS], decoy, decoy_labels;
  for (int s = 0; s < WKT_G_STEPS; s++) wkt_graph_batch(c, net, s, &xs[s], &ls[s]);
  wkt_graph_batch(c, net, WKT_G_DECOY + 1, &decoy, &decoy_labels);
  int h, w, ch;
  wk_net_input_shape(net, &h, &w, &ch);
  const int64_t one_s[4] = {1, h, w, ch};
  wk_tensor one = wkt_tensor(c->u8 ? WK_U8 : WK_F32, 4, one_s);
  memset(one.data, 0, wk_tensor_nbytes(&one));
  if (c->u8)
    for (int64_t i = 0; i < wk_tensor_numel(&decoy); i++) ((uint8_t *)decoy.data)[i] ^= 0x5a;
  else
    for (int64_t i = 0; i < wk_tensor_numel(&decoy); i++) ((float *)decoy.data)[i] += 0.5f;
  for (int s = 0; s < WKT_G_STEPS; s++) {
    wk_tensor x = xs[s], labels = ls[s];
    if (stage && s + 1 < WKT_G_STEPS)
      wk_trainer_set_next(t, s == 0 ? &one : s == WKT_G_DECOY ? &decoy : &xs[s + 1]);
    const int64_t skipped = wk_trainer_skipped_steps(t);
    if (s == c->skip_step) wk_trainer_set_loss_scale(t, 1e30);
    const wk_status st = wk_trainer_step(t, &x, &labels, &r->loss[s], NULL);
    ck_assert_msg(st == WK_OK, "%s (%s) step %d: %s", c->name, wkt_mode_names[mode], s,
                  wk_last_error());
    if (s == c->skip_step) {
      ck_assert_int_eq(wk_trainer_skipped_steps(t), skipped + 1);
      wk_trainer_set_loss_scale(t, 128);
    }
    memcpy(r->pred[s], wk_trainer_predicted(t), (size_t)wkt_g_batch[s] * sizeof(int32_t));
  }
  for (int s = 0; s < WKT_G_STEPS; s++) {
    wk_tensor_free(&xs[s]);
    wk_tensor_free(&ls[s]);
  }
  wk_tensor_free(&decoy);
  wk_tensor_free(&decoy_labels);
  wk_tensor_free(&one);
  wkt_step_mode_clear();
  r->skipped = wk_trainer_skipped_steps(t);
  r->scale = wk_trainer_loss_scale(t);
  ck_assert_msg(wk_net_gpu_graph_stats(net, &r->gs) == WK_OK, "%s", wk_last_error());
  r->n = wk_net_n_elems(net);
  r->n_buffers = wk_net_n_buffer_elems(net);
  r->weights = malloc(r->n * sizeof(float));
  r->buffers = malloc((r->n_buffers ? r->n_buffers : 1) * sizeof(float));
  ck_assert(r->weights && r->buffers);
  memcpy(r->weights, wk_net_weights(net), r->n * sizeof(float)); /* brought back from the GPU */
  memcpy(r->buffers, wk_net_buffer_data(net), r->n_buffers * sizeof(float));
  wk_trainer_destroy(t);
  wk_net_destroy(net);
}

/* Whether two runs agree bit for bit; when not and `why` is given, what differs first. */
static bool wkt_graph_same(const wkt_graph_run *a, const wkt_graph_run *b, char *why, size_t n) {
  for (int s = 0; s < WKT_G_STEPS; s++) {
    if (memcmp(&a->loss[s], &b->loss[s], sizeof a->loss[s]) != 0) {
      snprintf(why, n, "step %d: loss %.9g vs %.9g", s, (double)a->loss[s], (double)b->loss[s]);
      return false;
    }
    if (memcmp(a->pred[s], b->pred[s], (size_t)wkt_g_batch[s] * sizeof(int32_t)) != 0) {
      snprintf(why, n, "step %d: the predicted classes", s);
      return false;
    }
  }
  for (size_t i = 0; i < a->n; i++)
    if (memcmp(&a->weights[i], &b->weights[i], sizeof(float)) != 0) {
      snprintf(why, n, "weight %zu: %.9g vs %.9g", i, (double)a->weights[i],
               (double)b->weights[i]);
      return false;
    }
  for (size_t i = 0; i < a->n_buffers; i++)
    if (memcmp(&a->buffers[i], &b->buffers[i], sizeof(float)) != 0) {
      snprintf(why, n, "statistic %zu: %.9g vs %.9g", i, (double)a->buffers[i],
               (double)b->buffers[i]);
      return false;
    }
  return true;
}

static void wkt_graph_free(wkt_graph_run *r) {
  free(r->weights);
  free(r->buffers);
}

/* Run g (`what`: how it was made) against the plain run a: bit for bit when
 * two plain runs (a, b) agree so, else within their tolerance. */
static void wkt_expect_like_plain(const wkt_graph_case *c, const char *what_run,
                                  const wkt_graph_run *a, const wkt_graph_run *b,
                                  const wkt_graph_run *g) {
  ck_assert_int_eq(g->skipped, a->skipped);
  ck_assert(g->scale == a->scale);
  char why[256] = "";
  if (wkt_graph_same(a, b, why, sizeof why)) {
    const bool same = wkt_graph_same(a, g, why, sizeof why);
    ck_assert_msg(same, "%s: %s, not bit for bit the plain steps: %s", c->name, what_run, why);
    return;
  }
  printf("%s: two plain runs differ (%s) although $WHISKER_CUDNN_DETERMINISTIC=1; the run "
         "%s is held to their tolerance\n", c->name, why, what_run);
  const double tol = c->prec == WK_PRECISION_FP16 ? 1e-4 : 1e-5;
  for (int s = 0; s < WKT_G_STEPS; s++)
    ck_assert_msg(fabs((double)g->loss[s] - a->loss[s]) <= tol * fabs((double)a->loss[s]) + 1e-7,
                  "%s step %d: loss %.9g %s, %.9g plain", c->name, s, (double)g->loss[s],
                  what_run, (double)a->loss[s]);
  char what[160];
  snprintf(what, sizeof what, "%s weights after %d steps, %s vs plain", c->name, WKT_G_STEPS,
           what_run);
  ck_close(what, g->weights, a->weights, (int64_t)a->n, tol);
  snprintf(what, sizeof what, "%s statistics after %d steps, %s vs plain", c->name,
           WKT_G_STEPS, what_run);
  ck_close(what, g->buffers, a->buffers, (int64_t)a->n_buffers, tol);
}

/* Steps given the next step's batch take the staged copy: all but the first
 * (none staged), the second (a one-row batch staged) and the one after the
 * decoy. */
static void wkt_expect_staged(const wkt_graph_case *c, const wkt_graph_run *r, bool staged) {
  const int64_t want = staged ? WKT_G_STEPS - 3 : 0;
  ck_assert_msg(r->gs.staged == want, "%s: %lld steps took a staged batch, expected %lld",
                c->name, (long long)r->gs.staged, (long long)want);
}

static void wkt_graph_vs_plain(const wkt_graph_case *c) {
  /* runs compared bit for bit: no convolution algorithm that adds with atomics (this
   * test's own process: Check's fork mode) */
  setenv("WHISKER_CUDNN_DETERMINISTIC", "1", 1);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wkt_graph_run a, b, f, g, sp, sf, sg;
  /* a first run times the convolutions (and resizes its workspace while it
   * does); the runs compared take the context's choices alike */
  wkt_graph_train(ctx, c, WKT_STEPWISE, false, &a);
  wkt_graph_free(&a);
  wkt_graph_train(ctx, c, WKT_STEPWISE, false, &a);
  wkt_graph_train(ctx, c, WKT_STEPWISE, false, &b);
  wkt_graph_train(ctx, c, WKT_ONE_CALL, false, &f);
  wkt_graph_train(ctx, c, WKT_GRAPHS, false, &g);
  wkt_graph_train(ctx, c, WKT_STEPWISE, true, &sp);
  wkt_graph_train(ctx, c, WKT_ONE_CALL, true, &sf);
  wkt_graph_train(ctx, c, WKT_GRAPHS, true, &sg);
  printf("%s: graphs captured %lld, replayed %lld, dropped %lld times%s; staged batches taken "
         "%lld (plain), %lld (graphs)\n", c->name,
         (long long)g.gs.captured, (long long)g.gs.replayed, (long long)g.gs.invalidations,
         g.gs.off ? ", OFF (a capture failed)" : "", (long long)sp.gs.staged,
         (long long)sg.gs.staged);
  ck_assert_msg(!g.gs.off && !sg.gs.off, "%s: a capture failed (see the warning above)", c->name);
  ck_assert_msg(g.gs.captured >= 2 && g.gs.replayed >= 2, "%s: %lld captured, %lld replayed",
                c->name, (long long)g.gs.captured, (long long)g.gs.replayed);
  ck_assert_int_eq(sg.gs.captured, g.gs.captured); /* staging moves no buffer a graph holds */
  ck_assert_int_eq(sg.gs.replayed, g.gs.replayed);
  /* the one-call runs without graphs capture nothing */
  ck_assert(f.gs.captured == 0 && f.gs.replayed == 0 && sf.gs.captured == 0);
  wkt_expect_staged(c, &a, false);
  wkt_expect_staged(c, &f, false);
  wkt_expect_staged(c, &g, false);
  wkt_expect_staged(c, &sp, true);
  wkt_expect_staged(c, &sf, true);
  wkt_expect_staged(c, &sg, true);
  wkt_expect_like_plain(c, "in one call", &a, &b, &f);
  wkt_expect_like_plain(c, "with graphs", &a, &b, &g);
  wkt_expect_like_plain(c, "with the next batch staged", &a, &b, &sp);
  wkt_expect_like_plain(c, "in one call with the next batch staged", &a, &b, &sf);
  wkt_expect_like_plain(c, "with graphs and the next batch staged", &a, &b, &sg);
  wkt_graph_free(&a);
  wkt_graph_free(&b);
  wkt_graph_free(&f);
  wkt_graph_free(&g);
  wkt_graph_free(&sp);
  wkt_graph_free(&sf);
  wkt_graph_free(&sg);
  wk_ctx_destroy(ctx);
}

START_TEST(test_graph_resnet18_sgd) {
  const wkt_graph_case c = {"resnet18 sgd", wkt_resnet18, WK_PRECISION_FP32, WK_OPTIM_SGD,
                            0.0f, false, -1};
  wkt_graph_vs_plain(&c);
}
END_TEST
START_TEST(test_graph_mobilenetv2_adamw_dropout_u8) {
  const wkt_graph_case c = {"mobilenetv2 adamw u8", wkt_mobilenet, WK_PRECISION_FP32,
                            WK_OPTIM_ADAMW, 0.1f, true, -1};
  wkt_graph_vs_plain(&c);
}
END_TEST
/* fp16: the unscale and the update gated on the device; step 3, a replay,
 * overflows at scale 1e30 and is skipped on both sides */
START_TEST(test_graph_resnet18_fp16_skip) {
  const wkt_graph_case c = {"resnet18 fp16", wkt_resnet18, WK_PRECISION_FP16, WK_OPTIM_SGD,
                            0.0f, false, 3};
  wkt_graph_vs_plain(&c);
}
END_TEST

/* Evaluation forwards given the next batch (wk_net_forward_next, as eval's loop and bench's
 * inference do) give the outputs plain forwards give, bit for bit, and the forward after takes
 * the staged copy: over batches of 4, 4, 1, 4 and 3 rows where forward 1 is given a decoy of
 * batch 2's shape and other pixels (forward 2 must upload its own), forwards 1, 3 and 4 take a
 * staged batch and forward 2 does not; a plain forward drops what was staged, and
 * $WHISKER_GPU_PREFETCH=0 stages nothing. In float32 with float batches and in bf16 with 8-bit
 * batches normalised on the device. */
enum { WKT_EN = 5 };
static void wkt_eval_next_case(wk_ctx *ctx, wk_precision prec, bool u8) {
  static const int64_t rows[WKT_EN] = {4, 4, 1, 4, 3};
  const char *what = u8 ? "bf16, 8-bit batches" : "fp32, float batches";
  wk_net *net = wkt_smallcnn(ctx);
  wkt_perturb(net);
  ck_assert_int_eq(wk_net_set_precision(net, prec), WK_OK);
  if (u8) {
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    ck_assert_int_eq(wk_net_set_input_norm(net, mean, std), WK_OK);
  }
  ck_assert_msg(wk_net_use_gpu(net, 0) == WK_OK, "%s", wk_last_error());
  int h, w, ch;
  wk_net_input_shape(net, &h, &w, &ch);
  const int64_t f = wk_net_output_features(net);
  wk_tensor xs[WKT_EN + 1]; /* the last: the decoy */
  for (int i = 0; i <= WKT_EN; i++) {
    const int64_t shape[4] = {i < WKT_EN ? rows[i] : rows[2], h, w, ch};
    xs[i] = wkt_tensor(u8 ? WK_U8 : WK_F32, 4, shape);
    const int64_t n = wk_tensor_numel(&xs[i]);
    float *v = u8 ? malloc((size_t)n * sizeof *v) : xs[i].data;
    ck_assert_ptr_nonnull(v);
    wkt_fill_f32(v, n, 300 + (uint64_t)i, u8 ? 0.0f : -1.0f, u8 ? 256.0f : 1.0f);
    if (u8) {
      for (int64_t k = 0; k < n; k++) ((uint8_t *)xs[i].data)[k] = (uint8_t)v[k];
      free(v);
    }
  }
  float *plain[WKT_EN];
  for (int i = 0; i < WKT_EN; i++) {
    wk_tensor out;
    ck_assert_msg(wk_net_forward(net, &xs[i], false, &out) == WK_OK, "%s", wk_last_error());
    plain[i] = malloc((size_t)(rows[i] * f) * sizeof(float));
    ck_assert_ptr_nonnull(plain[i]);
    memcpy(plain[i], out.data, (size_t)(rows[i] * f) * sizeof(float));
  }
  wk_gpu_graph_stats g0, g1;
  ck_assert_int_eq(wk_net_gpu_graph_stats(net, &g0), WK_OK);
  for (int i = 0; i < WKT_EN; i++) {
    const wk_tensor *next = i == 1 ? &xs[WKT_EN] : i + 1 < WKT_EN ? &xs[i + 1] : NULL;
    wk_tensor out;
    ck_assert_msg(wk_net_forward_next(net, &xs[i], false, next, &out) == WK_OK, "%s",
                  wk_last_error());
    ck_assert_int_eq(out.shape[0], rows[i]);
    for (int64_t k = 0; k < rows[i] * f; k++)
      ck_assert_msg(memcmp(&((const float *)out.data)[k], &plain[i][k], sizeof(float)) == 0,
                    "%s: forward %d, output %lld: %.9g staged, %.9g plain", what, i,
                    (long long)k, (double)((const float *)out.data)[k], (double)plain[i][k]);
  }
  ck_assert_int_eq(wk_net_gpu_graph_stats(net, &g1), WK_OK);
  const long long taken = (long long)(g1.staged - g0.staged);
  ck_assert_msg(taken == 3, "%s: %lld forwards took a staged batch, expected 3", what, taken);
  /* a plain forward after a forward that staged drops the staged copy */
  wk_tensor out;
  ck_assert_int_eq(wk_net_forward_next(net, &xs[0], false, &xs[1], &out), WK_OK);
  ck_assert_int_eq(wk_net_forward(net, &xs[2], false, &out), WK_OK);
  ck_assert_int_eq(wk_net_forward(net, &xs[1], false, &out), WK_OK);
  ck_assert_int_eq(wk_net_gpu_graph_stats(net, &g0), WK_OK);
  ck_assert_int_eq(g0.staged, g1.staged);
  for (int64_t k = 0; k < rows[1] * f; k++)
    ck_assert(memcmp(&((const float *)out.data)[k], &plain[1][k], sizeof(float)) == 0);
  /* $WHISKER_GPU_PREFETCH=0 stages nothing */
  setenv("WHISKER_GPU_PREFETCH", "0", 1);
  ck_assert_int_eq(wk_net_forward_next(net, &xs[0], false, &xs[1], &out), WK_OK);
  ck_assert_int_eq(wk_net_forward_next(net, &xs[1], false, NULL, &out), WK_OK);
  unsetenv("WHISKER_GPU_PREFETCH");
  ck_assert_int_eq(wk_net_gpu_graph_stats(net, &g0), WK_OK);
  ck_assert_int_eq(g0.staged, g1.staged);
  for (int64_t k = 0; k < rows[1] * f; k++)
    ck_assert(memcmp(&((const float *)out.data)[k], &plain[1][k], sizeof(float)) == 0);
  printf("eval forwards given the next batch (%s): outputs as plain, %lld staged batches taken\n",
         what, taken);
  for (int i = 0; i < WKT_EN; i++) free(plain[i]);
  for (int i = 0; i <= WKT_EN; i++) wk_tensor_free(&xs[i]);
  wk_net_destroy(net);
}

START_TEST(test_eval_next) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wkt_eval_next_case(ctx, WK_PRECISION_FP32, false);
  wkt_eval_next_case(ctx, WK_PRECISION_BF16, true);
  wk_ctx_destroy(ctx);
}
END_TEST

/* A NaN loss at a replayed step, and at a step in one call uncaptured, fails
 * with the stepwise step's message and changes no weight, and the
 * optimizer's step counts are put back (AdamW's bias corrections would show
 * otherwise): after it the three runs go on and end with the same weights; a
 * probe (the learning-rate sweep's step) reports the
 * NaN. The NaN is the last layer's bias (see test_device_loss_errors), set
 * on the host between replays, so the replayed step also reads weights the
 * host changed. Only the weights are compared at the end. */
START_TEST(test_graph_nan_loss) {
  setenv("WHISKER_CUDNN_DETERMINISTIC", "1", 1);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  float *end[3] = {NULL, NULL, NULL};
  char msg[3][512];
  size_t n = 0;
  for (int mode = WKT_STEPWISE; mode <= WKT_GRAPHS; mode++) {
    wk_net *net = wkt_smallcnn(ctx);
    wkt_perturb(net);
    ck_assert_int_eq(wk_net_use_gpu(net, 0), WK_OK);
    wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_ADAMW),
                          .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 8),
                          .seed = 1};
    wk_trainer *t;
    ck_assert_int_eq(wk_trainer_create(net, &tc, &t), WK_OK);
    const int64_t xs[4] = {3, 32, 32, 3}, ls[1] = {3};
    wk_tensor x = wkt_tensor(WK_F32, 4, xs), labels = wkt_tensor(WK_I32, 1, ls);
    for (int i = 0; i < 3; i++) ((int32_t *)labels.data)[i] = i;
    wkt_step_mode_set(mode);
    n = wk_net_n_elems(net);
    float *before = malloc(n * sizeof *before);
    ck_assert_ptr_nonnull(before);
    float loss;
    for (int s = 0; s < 8; s++) {
      wkt_fill_f32(x.data, wk_tensor_numel(&x), 40 + (uint64_t)s, -1.0f, 1.0f);
      if (s == 4) { /* steps 0, 1 warm up, 2 captures, 3 replays: 4 replays */
        const float bias0 = wkt_set_param0(net, "fc.bias", NAN); /* see test_device_loss_errors */
        memcpy(before, wk_net_weights(net), n * sizeof *before);
        ck_assert_int_eq(wk_trainer_step(t, &x, &labels, &loss, NULL), WK_ERR_INVALID_ARG);
        snprintf(msg[mode], sizeof msg[mode], "%s", wk_last_error());
        ck_assert_int_eq(memcmp(before, wk_net_weights(net), n * sizeof *before), 0);
        ck_assert_int_eq(wk_trainer_steps(t), 4);
        ck_assert_msg(wk_trainer_step_at(t, &x, &labels, 0.01, &loss) == WK_OK, "%s",
                      wk_last_error());
        ck_assert(isnan(loss));
        ck_assert_int_eq(memcmp(before, wk_net_weights(net), n * sizeof *before), 0);
        ck_assert_int_eq(wk_trainer_steps(t), 4);
        wkt_set_param0(net, "fc.bias", bias0);
      }
      ck_assert_msg(wk_trainer_step(t, &x, &labels, &loss, NULL) == WK_OK, "step %d: %s", s,
                    wk_last_error());
    }
    wkt_step_mode_clear();
    if (mode == WKT_GRAPHS) {
      wk_gpu_graph_stats gs;
      ck_assert_int_eq(wk_net_gpu_graph_stats(net, &gs), WK_OK);
      printf("nan loss: graphs captured %lld, replayed %lld\n", (long long)gs.captured,
             (long long)gs.replayed);
      ck_assert(!gs.off && gs.captured >= 1 && gs.replayed >= 3);
    }
    end[mode] = malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(end[mode]);
    memcpy(end[mode], wk_net_weights(net), n * sizeof(float));
    free(before);
    wk_tensor_free(&x);
    wk_tensor_free(&labels);
    wk_trainer_destroy(t);
    wk_net_destroy(net);
  }
  for (int m = WKT_ONE_CALL; m <= WKT_GRAPHS; m++) {
    ck_assert_msg(strcmp(msg[0], msg[m]) == 0, "stepwise: '%s', %s: '%s'", msg[0],
                  wkt_mode_names[m], msg[m]);
    ck_assert_msg(memcmp(end[0], end[m], n * sizeof(float)) == 0 ||
                      wkt_rel_err(end[m], end[0], (int64_t)n, 1e-6) <= 1e-5,
                  "weights after a NaN step: %s vs stepwise differ by %g", wkt_mode_names[m],
                  wkt_rel_err(end[m], end[0], (int64_t)n, 1e-6));
  }
  ck_assert_msg(strstr(msg[0], "step 4: the loss is NaN") != NULL, "%s", msg[0]);
  for (int m = 0; m < 3; m++) free(end[m]);
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_device_step_sgd) { wkt_device_step(WK_OPTIM_SGD); }
END_TEST
START_TEST(test_device_step_adamw) { wkt_device_step(WK_OPTIM_ADAMW); }
END_TEST

/* The host-side cost of a training step in steady state, as fit.c runs it
 * (8-bit batches normalised on the device, the next batch staged while the
 * step computes, AdamW on a one-cycle schedule), counted by the emulated
 * device (tests/emu/fake: fake.h's wk_fake_stats, with lazy streams, where
 * every piece of work waits until something forces it, as on a device far
 * slower than the host: the GPU-bound case). A real GPU has no such counters,
 * so this test is added only where $WKT_FAKE_STATS=1 (the emulated suite),
 * and fails there without them. Per step, once the first steps have made
 * the buffers, chosen the algorithms and captured the graphs:
 * - no device or pinned allocation and no free, in every mode (each
 *   synchronises the device, or may: the caching allocator and the step's
 *   own buffers must serve every step);
 * - the trainer's default, the step in one call: one drain (the host waits
 *   for the device once, for the loss it reports, and the device then has
 *   nothing queued until the next step; the next batch is staged before that
 *   wait, so its upload goes on);
 * - with CUDA graphs, the same, and one graph launch and at most eight other
 *   pieces of work (the uploads, the loss coming back);
 * - stepwise ($WHISKER_GPU_FUSED_STEP=0): four drains (the loss after the
 *   forward, the end of backward, the gradients' check, the update), printed
 *   with the rest as the cost the one call removes; it must not grow;
 * - in every mode, every stall a drain: no wait for part of the step while
 *   the rest of it is queued;
 * - the same with data parallelism (a communicator of one rank, the NCCL path
 *   of --gpus 0; the end of the step is then polled with the deadline, each
 *   completed poll counted as a wait).
 * $WK_FAKE_TRACE_WAITS=1 prints where each wait comes from. */
enum { WKT_BUDGET_STEPS = 9, WKT_BUDGET_WARM = 5 };

typedef struct wkt_budget_case {
  const char *name;
  wkt_builder build;
  wk_precision prec;
  wkt_step_mode mode;
  int drains; /* per step, at most */
  bool nccl;  /* data parallelism: a communicator of one rank (what --gpus 0 runs) */
  bool sync_bn; /* ... with synchronised batchnorm */
} wkt_budget_case;

/* The emulated plugin's counters (wk_fake_stats), through a handle to close. */
typedef void (*wkt_stats_fn)(wk_fake_stats_t *);
static wkt_stats_fn wkt_fake_stats_fn(const char *who, void **handle) {
  const char *plugin = getenv("WHISKER_CUDA_PLUGIN");
  void *h = plugin ? dlopen(plugin, RTLD_NOW | RTLD_LOCAL) : NULL;
  wkt_stats_fn stats = h ? (wkt_stats_fn)dlsym(h, "wk_fake_stats") : NULL;
  ck_assert_msg(stats != NULL, "%s: no wk_fake_stats in $WHISKER_CUDA_PLUGIN (%s): not the "
                "emulated plugin", who, plugin ? plugin : "unset");
  *handle = h;
  return stats;
}

static void wkt_budget(const wkt_budget_case *c) {
  void *h;
  const wkt_stats_fn stats = wkt_fake_stats_fn(c->name, &h);
  wk_fake_stats_t a, b;
  stats(&a);
  ck_assert_msg(a.lazy, "%s: the counters need lazy streams ($WK_FAKE_LAZY=1)", c->name);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net = c->build(ctx);
  ck_assert_int_eq(wk_net_set_precision(net, c->prec), WK_OK);
  ck_assert_msg(wk_net_use_gpu(net, 0) == WK_OK, "%s: %s", c->name, wk_last_error());
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  ck_assert_int_eq(wk_net_set_input_norm(net, mean, std), WK_OK);
  wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_ADAMW),
                        .schedule = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, 0.01,
                                                        WKT_BUDGET_STEPS),
                        .seed = 1};
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &tc, &t), WK_OK);
  wk_dist *d = NULL;
  wk_ddp *ddp = NULL;
  if (c->nccl) {
    const wk_dist_opts dopts = wk_dist_opts_default();
    ck_assert_msg(wk_dist_open(&dopts, &d) == WK_OK, "%s", wk_last_error());
    const wk_ddp_opts po = {.nccl_single = true, .sync_bn = c->sync_bn};
    ck_assert_msg(wk_ddp_create(d, net, &po, &ddp) == WK_OK, "%s", wk_last_error());
    ck_assert(wk_ddp_nccl(ddp));
    wk_trainer_set_ddp(t, ddp);
  }
  wkt_step_mode_set(c->mode);
  ck_assert(wk_trainer_graphs_wanted(t) == (c->mode == WKT_GRAPHS));
  const wkt_graph_case gc = {c->name, c->build, c->prec, WK_OPTIM_ADAMW, 0.0f, true, -1};
  wk_tensor xs[2], ls[2];
  for (int k = 0; k < 2; k++) wkt_graph_batch(&gc, net, k, &xs[k], &ls[k]); /* batch 4 */
  for (int s = 0; s < WKT_BUDGET_STEPS; s++) {
    if (s == WKT_BUDGET_WARM) stats(&a);
    wk_trainer_set_next(t, &xs[(s + 1) % 2]);
    float loss;
    ck_assert_msg(wk_trainer_step(t, &xs[s % 2], &ls[s % 2], &loss, NULL) == WK_OK,
                  "%s step %d: %s", c->name, s, wk_last_error());
    ck_assert_msg(isfinite(loss), "%s step %d: loss %g", c->name, s, (double)loss);
  }
  stats(&b);
  wkt_step_mode_clear();
  wk_gpu_graph_stats gs;
  ck_assert_int_eq(wk_net_gpu_graph_stats(net, &gs), WK_OK);
  const int n = WKT_BUDGET_STEPS - WKT_BUDGET_WARM;
  const long long work = b.work - a.work, launches = b.graph_launches - a.graph_launches;
  const long long drains = b.drains - a.drains;
  printf("%s, %s%s%s: per step in steady state: %.1f pieces of device work (%.1f graph launches), "
         "%.1f host waits, %.1f stalls, %.1f drains, %.1f allocations, %.1f pinned, %.1f frees; "
         "staged batches taken %lld\n",
         c->name, wkt_mode_names[c->mode], c->nccl ? ", NCCL (one rank)" : "",
         c->sync_bn ? ", synchronised batchnorm" : "",
         (double)work / n, (double)launches / n,
         (double)(b.host_waits - a.host_waits) / n, (double)(b.stalls - a.stalls) / n,
         (double)drains / n, (double)(b.allocs - a.allocs) / n,
         (double)(b.host_allocs - a.host_allocs) / n, (double)(b.frees - a.frees) / n,
         (long long)gs.staged);
  ck_assert_msg(b.allocs == a.allocs && b.host_allocs == a.host_allocs && b.frees == a.frees,
                "%s: allocations or frees in steady state (see the line above)", c->name);
  ck_assert_msg(drains <= (long long)c->drains * n, "%s, %s: %.1f drains per step, at most %d",
                c->name, wkt_mode_names[c->mode], (double)drains / n, c->drains);
  ck_assert_msg(drains >= n, "%s: %lld drains in %d steps: the loss must come back every step",
                c->name, drains, n);
  /* a wait for part of the step, the rest still queued (a stall that drains nothing), would
   * hold the host while the device has work: not one, but with synchronised batchnorm,
   * whose sums the host follows a few layers behind (cuda_comm.c: wk_comm_sum) */
  const long long partial = b.stalls - a.stalls - drains;
  if (!c->sync_bn) {
    ck_assert_msg(partial == 0, "%s: %lld stalls, %lld of them drains", c->name,
                  (long long)(b.stalls - a.stalls), drains);
  } else {
    /* every batchnorm sums twice in forward and once in backward, the step's check once;
     * the host waits for the sum 16 back (cuda_comm.c: WK_SUM_WINDOW) before each sum after
     * the 16th, and the lazy device has run none of them by then */
    long long n_bn = 0;
    for (int i = 0; i < wk_net_n_nodes(net); i++)
      n_bn += wk_net_node(net, i)->op == WK_NODE_BATCHNORM;
    const long long want = 3 * n_bn + 1 - 16;
    ck_assert_msg(partial == want * n, "%s: %.1f partial waits a step (%lld batchnorms), "
                  "expected %lld", c->name, (double)partial / n, n_bn, want);
  }
  ck_assert_msg(gs.staged >= WKT_BUDGET_STEPS - 1, "%s: %lld staged batches taken", c->name,
                (long long)gs.staged);
  if (c->mode == WKT_GRAPHS)
    ck_assert_msg(launches == n && work <= 9LL * n && !gs.off,
                  "%s: %lld graph launches and %lld pieces of work in %d steps", c->name,
                  launches, work, n);
  else
    ck_assert_msg(launches == 0 && work > 20LL * n, "%s: %lld graph launches, %lld pieces of "
                  "work in %d steps uncaptured", c->name, launches, work, n);
  for (int k = 0; k < 2; k++) {
    wk_tensor_free(&xs[k]);
    wk_tensor_free(&ls[k]);
  }
  wk_trainer_destroy(t);
  wk_ddp_destroy(ddp);
  wk_dist_close(d);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  dlclose(h);
}

START_TEST(test_step_budget) {
  const wkt_budget_case cases[] = {
      {"smallcnn fp32", wkt_smallcnn, WK_PRECISION_FP32, WKT_STEPWISE, 4, false, false},
      {"smallcnn fp32", wkt_smallcnn, WK_PRECISION_FP32, WKT_ONE_CALL, 1, false, false},
      {"mobilenetv2 bf16", wkt_mobilenet_small, WK_PRECISION_BF16, WKT_ONE_CALL, 1, false, false},
      {"mobilenetv2 bf16", wkt_mobilenet_small, WK_PRECISION_BF16, WKT_GRAPHS, 1, false, false},
      {"resnet18 fp16", wkt_resnet18_small, WK_PRECISION_FP16, WKT_ONE_CALL, 1, false, false},
      {"resnet18 fp16", wkt_resnet18_small, WK_PRECISION_FP16, WKT_GRAPHS, 1, false, false},
      {"smallcnn fp32", wkt_smallcnn, WK_PRECISION_FP32, WKT_STEPWISE, 4, true, false},
      {"smallcnn fp32", wkt_smallcnn, WK_PRECISION_FP32, WKT_ONE_CALL, 1, true, false},
      {"resnet18 fp32", wkt_resnet18_small, WK_PRECISION_FP32, WKT_ONE_CALL, 1, true, true},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) wkt_budget(&cases[k]);
}
END_TEST

/* Emulated device only: a graph launch that fails with an error that is not
 * sticky (the fake's $WK_FAKE_GRAPH_LAUNCH_FAIL: out of resources) queues
 * nothing; graphs go off, that step and the rest run uncaptured, and the run
 * ends bit for bit where the one-call run without graphs does. Tried at the
 * launch right after the first capture (step 2) and at the first replay
 * (step 3). */
START_TEST(test_graph_launch_fails) {
  setenv("WHISKER_CUDNN_DETERMINISTIC", "1", 1);
  void *h;
  const wkt_stats_fn stats = wkt_fake_stats_fn("graph launch", &h);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  const wkt_graph_case c = {"smallcnn adamw", wkt_smallcnn, WK_PRECISION_FP32, WK_OPTIM_ADAMW,
                            0.0f, false, -1};
  wkt_graph_run a, b, g;
  wkt_graph_train(ctx, &c, WKT_ONE_CALL, false, &a); /* times the convolutions */
  wkt_graph_free(&a);
  wkt_graph_train(ctx, &c, WKT_ONE_CALL, false, &a);
  wkt_graph_train(ctx, &c, WKT_ONE_CALL, false, &b);
  for (int k = 1; k <= 2; k++) {
    wk_fake_stats_t st;
    stats(&st);
    char v[32];
    snprintf(v, sizeof v, "%lld", st.graph_launches + k);
    setenv("WK_FAKE_GRAPH_LAUNCH_FAIL", v, 1);
    wkt_graph_train(ctx, &c, WKT_GRAPHS, false, &g);
    unsetenv("WK_FAKE_GRAPH_LAUNCH_FAIL");
    const char *what = k == 1 ? "its first launch failing" : "its first replay failing";
    printf("graph launch: %s: captured %lld, replayed %lld%s\n", what, (long long)g.gs.captured,
           (long long)g.gs.replayed, g.gs.off ? ", graphs off" : "");
    /* the failed launch (after the capture, or the replay) is not a replay */
    ck_assert_msg(g.gs.off && g.gs.captured == 1 && g.gs.replayed == 0,
                  "%s: off %d, %lld captured, %lld replayed", what, g.gs.off,
                  (long long)g.gs.captured, (long long)g.gs.replayed);
    wkt_expect_like_plain(&c, what, &a, &b, &g);
    wkt_graph_free(&g);
  }
  wkt_graph_free(&a);
  wkt_graph_free(&b);
  wk_ctx_destroy(ctx);
  dlclose(h);
}
END_TEST

/* Convolution algorithms by timing (cudnnFind*AlgorithmEx, the default for a
 * network that trains) against cuDNN's heuristics ($WHISKER_CUDNN_ALGO=
 * heuristic): two copies of a network train four SGD steps on the same batch.
 * Both compute in float32 with FMA math (no TF32), so other algorithms only
 * sum in another order: the losses must agree to 1e-4 relative (+1e-6) and
 * the weights after the steps to 2e-4 normalised error, the bars the GPU
 * meets against the CPU, whose algorithms differ from cuDNN's as much. A
 * wrong algorithm, math type or workspace shows as O(1).
 * The context's cache: the timing network timed (at most three directions of
 * each convolution), the heuristic one added nothing; a batch size not seen
 * yet is timed and one seen already is not; a third network of the same
 * shapes in the same context times nothing. */
static void wkt_algo_gpu(wk_net *net, const char *mode) {
  if (mode) setenv("WHISKER_CUDNN_ALGO", mode, 1);
  else unsetenv("WHISKER_CUDNN_ALGO");
  const wk_status s = wk_net_use_gpu(net, 0);
  unsetenv("WHISKER_CUDNN_ALGO");
  ck_assert_msg(s == WK_OK, "%s", wk_last_error());
}

static wk_gpu_algo_stats wkt_algo_stats(wk_ctx *ctx) {
  wk_gpu_algo_stats st;
  ck_assert_ptr_nonnull(ctx->gpu_algos);
  ck_assert_msg(wk_gpu_algos_stats(ctx->gpu_algos, &st) == WK_OK, "%s", wk_last_error());
  return st;
}

/* dirs: the most choices a convolution times (3 directions; 4 through the
 * graph API, whose backward-data adding into a begun gradient is a plan of
 * its own) */
static void wkt_find_vs_heuristic(const char *name, wkt_builder build, int batch, int dirs) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *heur = build(ctx), *timed = build(ctx);
  wkt_perturb(heur);
  wkt_perturb(timed);
  wkt_algo_gpu(heur, "heuristic");
  wkt_algo_gpu(timed, NULL);
  int h, w, c, n_conv = 0;
  wk_net_input_shape(heur, &h, &w, &c);
  for (int i = 0; i < wk_net_n_nodes(heur); i++) n_conv += wk_net_node(heur, i)->op == WK_NODE_CONV;
  const int64_t f = wk_net_output_features(heur);
  const int64_t xs[4] = {batch, h, w, c}, ls[1] = {batch};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), labels = wkt_tensor(WK_I32, 1, ls), y;
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 7, -1.0f, 1.0f);
  for (int i = 0; i < batch; i++) ((int32_t *)labels.data)[i] = (int32_t)(i % f);
  wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                        .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 4), .seed = 1};
  wk_trainer *th, *tt;
  ck_assert_int_eq(wk_trainer_create(heur, &tc, &th), WK_OK);
  ck_assert_int_eq(wk_trainer_create(timed, &tc, &tt), WK_OK);
  for (int s = 0; s < 4; s++) {
    float lh, lt;
    ck_assert_msg(wk_trainer_step(th, &x, &labels, &lh, NULL) == WK_OK, "%s: %s", name,
                  wk_last_error());
    ck_assert_msg(wk_trainer_step(tt, &x, &labels, &lt, NULL) == WK_OK, "%s: %s", name,
                  wk_last_error());
    /* step 0 is one forward on the same weights; every step after it carries
     * the algorithms' different rounding through updates, which mobilenetv2
     * amplifies (seen on an H100: 1.1e-4 at step 3) */
    const double tol = s == 0 ? 1e-4 : 1e-3;
    ck_assert_msg(fabs((double)lt - lh) <= tol * fabs((double)lh) + 1e-6,
                  "%s step %d: loss %.8g with timed algorithms, %.8g with the heuristics'", name,
                  s, (double)lt, (double)lh);
  }
  char what[128];
  snprintf(what, sizeof what, "%s weights after 4 steps, timed vs heuristic algorithms", name);
  ck_close(what, wk_net_weights(timed), wk_net_weights(heur), (int64_t)wk_net_n_elems(heur), 1e-3);
  const wk_gpu_algo_stats st = wkt_algo_stats(ctx);
  printf("%s: %d convolutions, %lld directions timed, %lld reused, %lld fell back to the "
         "heuristics\n", name, n_conv, (long long)st.timed, (long long)st.reused,
         (long long)st.fell_back);
  ck_assert_msg(st.timed > 0 && st.timed <= dirs * n_conv, "%s: %lld timed for %d convolutions",
                name, (long long)st.timed, n_conv);
  /* a new batch size is timed; going back to the old one is not */
  const int64_t xs1[4] = {batch - 1, h, w, c};
  wk_tensor x1 = wkt_tensor(WK_F32, 4, xs1);
  wkt_fill_f32(x1.data, wk_tensor_numel(&x1), 9, -1.0f, 1.0f);
  ck_assert_msg(wk_net_forward(timed, &x1, false, &y) == WK_OK, "%s", wk_last_error());
  const wk_gpu_algo_stats st1 = wkt_algo_stats(ctx);
  ck_assert_msg(st1.timed > st.timed, "%s: batch %d was not timed", name, batch - 1);
  ck_assert_msg(wk_net_forward(timed, &x, false, &y) == WK_OK, "%s", wk_last_error());
  const wk_gpu_algo_stats st2 = wkt_algo_stats(ctx);
  ck_assert_msg(st2.timed == st1.timed && st2.reused > st1.reused,
                "%s: batch %d timed again (%lld -> %lld)", name, batch, (long long)st1.timed,
                (long long)st2.timed);
  /* a second network of the same shapes takes the context's choices */
  wk_net *again = build(ctx);
  wkt_perturb(again);
  wkt_algo_gpu(again, NULL);
  ck_assert_msg(wk_net_forward(again, &x, true, &y) == WK_OK, "%s", wk_last_error());
  const wk_gpu_algo_stats st3 = wkt_algo_stats(ctx);
  ck_assert_msg(st3.timed == st2.timed && st3.reused > st2.reused,
                "%s: a second network timed again (%lld -> %lld)", name, (long long)st2.timed,
                (long long)st3.timed);
  wk_trainer_destroy(th);
  wk_trainer_destroy(tt);
  wk_tensor_free(&x);
  wk_tensor_free(&x1);
  wk_tensor_free(&labels);
  wk_net_destroy(again);
  wk_net_destroy(heur);
  wk_net_destroy(timed);
  wk_ctx_destroy(ctx);
}

START_TEST(test_find_vs_heuristic_resnet18) {
  wkt_find_vs_heuristic("resnet18", wkt_resnet18, 3, 3);
}
END_TEST
START_TEST(test_find_vs_heuristic_mobilenetv2) {
  wkt_find_vs_heuristic("mobilenetv2", wkt_mobilenet, 3, 3);
}
END_TEST

/* Emulated device only: cuDNN's heuristics are a performance model, and
 * their ranking can be wrong where the call is not. The fake's
 * $WK_FAKE_CUDNN_HEURISTIC_LIES=1 ranks first, as a success, an algorithm
 * whose call is refused, and states no workspace for the next one, which
 * needs some. With the heuristics' choices ($WHISKER_CUDNN_ALGO=heuristic),
 * resnet18 passes over the first entry of each direction it chooses (every
 * convolution's three, less the stem's backward-data, which never runs),
 * takes the second with the workspace cuDNN's query gives, and trains four
 * SGD steps bit for bit as with an honest ranking. Taking the ranking on
 * trust, the first step fails. wkt_heuristic_run sets the fake's `fault`
 * variable (NULL: none) to 1 for its run, chooses algorithms by `algo`
 * ($WHISKER_CUDNN_ALGO) and trains its four steps at batches 3, 3, 3, 3 or,
 * with `resize`, 3, 2, 3, 2 (each change of batch chooses again); *st1:
 * the algorithm statistics after step 1, *st after step 4. */
static void wkt_heuristic_run(const char *fault, const char *algo, bool resize, float *losses,
                              float **weights, int64_t *n_elems, wk_gpu_algo_stats *st1,
                              wk_gpu_algo_stats *st, int *n_conv) {
  if (fault) setenv(fault, "1", 1);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net = wkt_resnet18(ctx);
  wkt_perturb(net);
  wkt_algo_gpu(net, algo);
  int h, w, c;
  wk_net_input_shape(net, &h, &w, &c);
  *n_conv = 0;
  for (int i = 0; i < wk_net_n_nodes(net); i++) *n_conv += wk_net_node(net, i)->op == WK_NODE_CONV;
  const int64_t f = wk_net_output_features(net);
  wk_tensor x[2], labels[2];
  for (int b = 0; b < 2; b++) { /* batches of 3 and 2 */
    const int64_t xs[4] = {3 - b, h, w, c}, ls[1] = {3 - b};
    x[b] = wkt_tensor(WK_F32, 4, xs);
    labels[b] = wkt_tensor(WK_I32, 1, ls);
    wkt_fill_f32(x[b].data, wk_tensor_numel(&x[b]), 7 + (uint64_t)b, -1.0f, 1.0f);
    for (int i = 0; i < 3 - b; i++) ((int32_t *)labels[b].data)[i] = (int32_t)(i % f);
  }
  wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                        .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 4), .seed = 1};
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &tc, &t), WK_OK);
  for (int k = 0; k < 4; k++) {
    const int b = resize ? k % 2 : 0;
    ck_assert_msg(wk_trainer_step(t, &x[b], &labels[b], &losses[k], NULL) == WK_OK,
                  "step %d with %s: %s", k + 1, fault ? fault : "no fault", wk_last_error());
    if (k == 0) *st1 = wkt_algo_stats(ctx);
  }
  *st = wkt_algo_stats(ctx);
  *n_elems = (int64_t)wk_net_n_elems(net);
  *weights = malloc((size_t)*n_elems * sizeof **weights);
  ck_assert_ptr_nonnull(*weights);
  memcpy(*weights, wk_net_weights(net), (size_t)*n_elems * sizeof **weights);
  wk_trainer_destroy(t);
  for (int b = 0; b < 2; b++) {
    wk_tensor_free(&x[b]);
    wk_tensor_free(&labels[b]);
  }
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  if (fault) unsetenv(fault);
}

START_TEST(test_heuristic_lies) {
  float lh[4], ll[4], *wh, *wl;
  int64_t nh, nl;
  wk_gpu_algo_stats sh, sl, s1;
  int n_conv;
  wkt_heuristic_run(NULL, "heuristic", false, lh, &wh, &nh, &s1, &sh, &n_conv);
  wkt_heuristic_run("WK_FAKE_CUDNN_HEURISTIC_LIES", "heuristic", false, ll, &wl, &nl, &s1, &sl,
                    &n_conv);
  printf("heuristic lies: resnet18, %d convolutions: %lld entries passed over (honest ranking: "
         "%lld); losses %.8g .. %.8g\n", n_conv, (long long)sl.refused, (long long)sh.refused,
         (double)ll[0], (double)ll[3]);
  ck_assert_int_eq(sh.refused, 0);
  ck_assert_int_eq(sh.exec_refused, 0);
  ck_assert_int_eq(sl.refused, 3 * n_conv - 1);
  ck_assert_int_eq(sl.exec_refused, 0);
  ck_assert_int_eq(nh, nl);
  for (int k = 0; k < 4; k++)
    ck_assert_msg(memcmp(&lh[k], &ll[k], sizeof lh[k]) == 0, "step %d: loss %.9g, honest %.9g",
                  k + 1, (double)ll[k], (double)lh[k]);
  ck_assert_msg(memcmp(wh, wl, (size_t)nh * sizeof *wh) == 0,
                "the weights after 4 steps differ from the honest ranking's");
  free(wh);
  free(wl);
}
END_TEST

/* Emulated device only: an algorithm that cuDNN's ranking and workspace
 * query accept can still be refused by the call itself (nothing documented
 * rules it out). The fake's $WK_FAKE_CUDNN_EXEC_REFUSES=1 refuses, at the
 * call, with CUDNN_STATUS_NOT_SUPPORTED_SHAPE, the algorithm its heuristics
 * rank first, which is also the one its timing finds fastest. resnet18 meets
 * one refusal per convolution and direction (every convolution's three, less
 * the stem's backward-data) at each choice that takes that algorithm,
 * replaces it with the ranking's next, growing the workspace that one needs,
 * and trains four SGD steps bit for bit as with calls that refuse nothing
 * (the fake's algorithms all compute the same loops). Timed, at batches 3,
 * 2, 3, 2: a timing can pass an algorithm the call then refuses (it runs on
 * other buffers, whose alignment can differ), and the fake's does. Step 1
 * meets the same refusals; at batch 2 only the convolutions whose shape was
 * timed there meet one (the others find the kept choice, which they have
 * passed over already: it is not counted as reused), and steps 3 and 4 meet
 * none. Without the replacement, step 1 fails. */
static void wkt_exec_refusal(const char *algo, bool resize) {
  float lh[4], lr[4], *wh, *wr;
  int64_t nh, nr;
  wk_gpu_algo_stats sh, sr, s1h, s1r;
  int n_conv;
  wkt_heuristic_run(NULL, algo, resize, lh, &wh, &nh, &s1h, &sh, &n_conv);
  wkt_heuristic_run("WK_FAKE_CUDNN_EXEC_REFUSES", algo, resize, lr, &wr, &nr, &s1r, &sr,
                    &n_conv);
  printf("refused when called (%s%s): resnet18, %d convolutions: %lld replaced in step 1, %lld "
         "in all (%lld shapes and directions timed after step 1); losses %.8g .. %.8g\n", algo,
         resize ? ", batches 3, 2, 3, 2" : "", n_conv, (long long)s1r.exec_refused,
         (long long)sr.exec_refused, (long long)(sr.timed - s1r.timed), (double)lr[0],
         (double)lr[3]);
  printf("kept choices taken: %lld after step 1, %lld with calls that refuse nothing\n",
         (long long)(sr.reused - s1r.reused), (long long)(sh.reused - s1h.reused));
  ck_assert_int_eq(sh.exec_refused, 0);
  ck_assert_int_eq(s1r.exec_refused, 3 * n_conv - 1);
  ck_assert_int_eq(sr.exec_refused - s1r.exec_refused, sr.timed - s1r.timed);
  if (resize) ck_assert_int_gt(sr.timed - s1r.timed, 0);
  /* after step 1 every kept choice is one its convolution has passed over:
   * none is taken (nor counted as taken), where the honest run takes many */
  if (resize) ck_assert_int_gt(sh.reused - s1h.reused, 0);
  ck_assert_int_eq(sr.reused, s1r.reused);
  ck_assert_int_eq(sr.refused, 0); /* the query accepted every one */
  ck_assert_int_eq(nh, nr);
  for (int k = 0; k < 4; k++)
    ck_assert_msg(memcmp(&lh[k], &lr[k], sizeof lh[k]) == 0, "step %d: loss %.9g, honest %.9g",
                  k + 1, (double)lr[k], (double)lh[k]);
  ck_assert_msg(memcmp(wh, wr, (size_t)nh * sizeof *wh) == 0,
                "the weights after 4 steps differ from those of calls that refuse nothing");
  free(wh);
  free(wr);
}

START_TEST(test_exec_refusal) {
  wkt_exec_refusal("heuristic", false);
}
END_TEST
START_TEST(test_exec_refusal_timed) {
  wkt_exec_refusal("find", true);
}
END_TEST

/* ------------------------------------------------------------------ the graph API */

/* Convolutions through cuDNN's graph API ($WHISKER_CUDNN_API=graph,
 * conv_graph.c) against the CPU as wkt_compare does, with the engines timed
 * (training networks time by default): resnet18 (a block's input has two
 * readers, so its backward-data adds into a begun gradient: the beta-1
 * plans), misc (dilation, a bias, a 1x1 convolution whose input has three
 * readers) and mobilenetv2 (grouped convolutions); a value that is not
 * legacy or graph is refused. On the emulated device the engine ranked first
 * computes from inputs rounded to fp16 (its note says it converts them
 * down): taking it would miss float32's bounds. */
START_TEST(test_conv_graph) {
  setenv("WHISKER_CUDNN_API", "graph", 1);
  wkt_compare("resnet18, convolutions through the graph API", wkt_resnet18, 3, NULL, NULL);
  wkt_compare("misc, convolutions through the graph API", wkt_misc, 5, NULL, NULL);
  wkt_compare_ex("mobilenetv2, convolutions through the graph API", wkt_mobilenet, 3, NULL, NULL,
                 true);
  unsetenv("WHISKER_CUDNN_API");
  wkt_env_refused("WHISKER_CUDNN_API", "v8", "expected legacy or graph");
}
END_TEST

/* Timing through the graph API: as test_find_vs_heuristic's (the choices
 * kept per shape, direction and beta; a batch seen before and a second
 * network time nothing). */
START_TEST(test_conv_graph_find) {
  setenv("WHISKER_CUDNN_API", "graph", 1);
  wkt_find_vs_heuristic("resnet18 (graph API)", wkt_resnet18, 3, 4);
  unsetenv("WHISKER_CUDNN_API");
}
END_TEST

/* One SGD step of resnet18 at batch 2 through the graph API with the
 * heuristics' engines, $fault=1 (NULL: none), $WHISKER_CUDNN_DETERMINISTIC=det
 * and `prec`, profiled: *out the notes of its convolutions, one line each
 * ("name: what ran it"), and its loss. Returns the step's status. */
static wk_status wkt_graph_notes(const char *fault, const char *det, wk_precision prec,
                                 char *out, size_t n, float *loss, wk_gpu_algo_stats *st) {
  setenv("WHISKER_CUDNN_API", "graph", 1);
  setenv("WHISKER_CUDNN_DETERMINISTIC", det, 1);
  if (fault) setenv(fault, "1", 1);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net = wkt_resnet18(ctx);
  wkt_perturb(net);
  ck_assert_int_eq(wk_net_set_precision(net, prec), WK_OK);
  wkt_algo_gpu(net, "heuristic");
  ck_assert_int_eq(wk_net_profile_enable(net), WK_OK);
  wk_tensor x = wkt_compare_input(net, 2), labels = wkt_compare_labels(net, 2);
  const wk_train_config tc = wkt_compare_sgd();
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &tc, &t), WK_OK);
  wk_status s = wk_trainer_step(t, &x, &labels, loss, NULL);
  if (s == WK_OK) s = wk_net_profile_collect(net);
  char err[512];
  snprintf(err, sizeof err, "%s", s == WK_OK ? "" : wk_last_error());
  size_t k = 0;
  out[0] = '\0';
  for (int i = 0; s == WK_OK && i < wk_net_n_nodes(net); i++) {
    const wk_node *nd = wk_net_node(net, i);
    if (nd->op != WK_NODE_CONV) continue;
    const int w = snprintf(out + k, n - k, "%s: %s\n", nd->name, wk_net_profile_note(net, i));
    ck_assert(w > 0 && (size_t)w < n - k);
    k += (size_t)w;
  }
  if (st) *st = wkt_algo_stats(ctx);
  wk_trainer_destroy(t);
  wk_tensor_free(&labels);
  wk_tensor_free(&x);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  if (fault) unsetenv(fault);
  unsetenv("WHISKER_CUDNN_DETERMINISTIC");
  unsetenv("WHISKER_CUDNN_API");
  if (s != WK_OK) wk_fail(s, "%s", err);
  return s;
}

/* Whether every line of notes (one per convolution) holds `want`, and none `never`. */
static void wkt_notes_hold(const char *what, const char *notes, const char *want,
                           const char *never) {
  int lines = 0;
  for (const char *l = notes; *l;) {
    const char *e = strchr(l, '\n');
    ck_assert_ptr_nonnull(e);
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)(e - l), l);
    ck_assert_msg(!want || strstr(line, want), "%s: '%s' lacks '%s'", what, line, want);
    ck_assert_msg(!never || !strstr(line, never), "%s: '%s' has '%s'", what, line, never);
    lines++;
    l = e + 1;
  }
  ck_assert_int_eq(lines, 20); /* resnet18's convolutions */
}

/* Which of the emulated cuDNN's engines (tests/emu/fake/fake_cudnn_graph.c:
 * ranked 3 (converts inputs down), 0 (nondeterministic for backward-filter),
 * 1 (tensor cores, a workspace), 2 (refuses grouped and 1x1 convolutions,
 * the largest workspace), then the fallback list's 4) the heuristics'
 * choice takes, by the profile's notes: never 3; for float32 0 everywhere
 * (tensor cores would be TF32), and the blocks' beta-1 backward-data plans
 * made; deterministic, backward-filter on 2, or 4 where 2 refuses. An engine
 * refused when run (the fake's engine 0) gives way to the next usable one
 * (2, or 4 where 2 refuses), counted, for the same losses bit for bit, also with the
 * engines numbered from 100; where no engine adds into dx when run, the contribution goes
 * through the scratch, for the same loss; where heuristics mode A does not take a graph, the
 * fallback list's engine runs it. With no engine at all the step fails, naming the way back
 * to the legacy calls, and with plans failing otherwise than refused, also cuDNN's words. */
START_TEST(test_conv_graph_engines) {
  char notes[4096];
  float loss, loss_det, loss_ref;
  wk_gpu_algo_stats st;
  ck_assert_msg(wkt_graph_notes(NULL, "0", WK_PRECISION_FP32, notes, sizeof notes, &loss, &st) ==
                WK_OK, "%s", wk_last_error());
  printf("graph API, float32, heuristics:\n%s", notes);
  wkt_notes_hold("fp32", notes, "fwd engine 0", "engine 3");
  wkt_notes_hold("fp32", notes, NULL, "engine 1");
  ck_assert_msg(strstr(notes, "dgrad adding engine 0"), "no beta-1 plan:\n%s", notes);
  ck_assert_msg(strstr(notes, "layer1.0.conv1: fwd engine 0; dgrad engine 0; wgrad engine 0; "
                              "dgrad adding engine 0"), "%s", notes);
  ck_assert_int_eq(st.exec_refused, 0);

  ck_assert_msg(wkt_graph_notes(NULL, "1", WK_PRECISION_FP32, notes, sizeof notes, &loss_det,
                                NULL) == WK_OK, "%s", wk_last_error());
  printf("graph API, float32, deterministic:\n%s", notes);
  wkt_notes_hold("deterministic", notes, NULL, "wgrad engine 0");
  ck_assert_msg(strstr(notes, "wgrad engine 2") && strstr(notes, "wgrad engine 4"), "%s", notes);
  ck_assert_msg(memcmp(&loss, &loss_det, sizeof loss) == 0, "%.9g %.9g", (double)loss,
                (double)loss_det);

  ck_assert_msg(wkt_graph_notes(NULL, "0", WK_PRECISION_BF16, notes, sizeof notes, &loss_ref,
                                NULL) == WK_OK, "%s", wk_last_error());
  wkt_notes_hold("bf16", notes, "fwd engine 0", "engine 3");

  ck_assert_msg(wkt_graph_notes("WK_FAKE_CUDNN_GRAPH_EXEC_REFUSES", "0", WK_PRECISION_FP32, notes,
                                sizeof notes, &loss_ref, &st) == WK_OK, "%s", wk_last_error());
  printf("graph API, float32, engine 0 refused when run (%lld replaced):\n%s",
         (long long)st.exec_refused, notes);
  /* every convolution ran its forward, its backward-filter and (but the stem) one of
   * its backward-data plans once, each refused once; a plan that never ran (a block's
   * first backward-data writes through the beta-1 one) keeps engine 0 */
  wkt_notes_hold("refused", notes, NULL, "fwd engine 0");
  wkt_notes_hold("refused", notes, NULL, "wgrad engine 0");
  wkt_notes_hold("refused", notes, NULL, "engine 3");
  wkt_notes_hold("refused", notes, NULL, "engine 1"); /* TF32 */
  ck_assert_int_eq(st.exec_refused, 3 * 20 - 1);
  ck_assert_msg(memcmp(&loss, &loss_ref, sizeof loss) == 0, "loss %.9g, without refusals %.9g",
                (double)loss_ref, (double)loss);

  /* the same with engines numbered from 100, as a cuDNN with many engines numbers them: the
   * refused ones are still kept track of, by index */
  setenv("WK_FAKE_CUDNN_GRAPH_INDEX_BASE", "100", 1);
  const wk_status wide = wkt_graph_notes("WK_FAKE_CUDNN_GRAPH_EXEC_REFUSES", "0",
                                         WK_PRECISION_FP32, notes, sizeof notes, &loss_ref, &st);
  unsetenv("WK_FAKE_CUDNN_GRAPH_INDEX_BASE");
  ck_assert_msg(wide == WK_OK, "%s", wk_last_error());
  wkt_notes_hold("refused, from 100", notes, "fwd engine 10", "fwd engine 100");
  wkt_notes_hold("refused, from 100", notes, NULL, "wgrad engine 100");
  ck_assert_int_eq(st.exec_refused, 3 * 20 - 1);
  ck_assert_msg(memcmp(&loss, &loss_ref, sizeof loss) == 0, "loss %.9g, without refusals %.9g",
                (double)loss_ref, (double)loss);

  /* every engine refuses to add into dx when run: the blocks' backward-data contributions
   * go through the scratch instead, for the same loss */
  ck_assert_msg(wkt_graph_notes("WK_FAKE_CUDNN_GRAPH_BETA1_REFUSES", "0", WK_PRECISION_FP32,
                                notes, sizeof notes, &loss_ref, &st) == WK_OK, "%s",
                wk_last_error());
  printf("graph API, float32, no engine adds into dx (%lld refused):\n%s",
         (long long)st.exec_refused, notes);
  /* the blocks' first convolutions' beta-1 plans ran (the downsample ones' never do: theirs
   * is the backward-data that writes first), each refused by the three usable engines (0,
   * 2, 4), and are gone */
  int adding = 0;
  for (const char *l = strstr(notes, "dgrad adding"); l; l = strstr(l + 1, "dgrad adding"))
    adding++;
  ck_assert_msg(adding == 3, "%d beta-1 plans left, expected the 3 downsample ones':\n%s",
                adding, notes);
  ck_assert_msg(!strstr(notes, "conv1: fwd engine 0; dgrad engine 0; wgrad engine 0; dgrad adding"),
                "%s", notes);
  ck_assert_int_eq(st.exec_refused, 8 * 3);
  ck_assert_msg(memcmp(&loss, &loss_ref, sizeof loss) == 0, "loss %.9g, adding in cuDNN %.9g",
                (double)loss_ref, (double)loss);

  /* heuristics mode A does not take the graphs: the fallback list's engine runs them */
  ck_assert_msg(wkt_graph_notes("WK_FAKE_CUDNN_GRAPH_MODE_A_REFUSES", "0", WK_PRECISION_FP32,
                                notes, sizeof notes, &loss_ref, NULL) == WK_OK, "%s",
                wk_last_error());
  wkt_notes_hold("mode A refused", notes, "fwd engine 4;", "engine 0");
  wkt_notes_hold("mode A refused", notes, "wgrad engine 4", "engine 2");
  ck_assert_msg(memcmp(&loss, &loss_ref, sizeof loss) == 0, "loss %.9g, engine 0's %.9g",
                (double)loss_ref, (double)loss);

  ck_assert_int_ne(wkt_graph_notes("WK_FAKE_CUDNN_GRAPH_NO_ENGINES", "0", WK_PRECISION_FP32, notes,
                                   sizeof notes, &loss_ref, NULL), WK_OK);
  ck_assert_msg(strstr(wk_last_error(), "no cuDNN engine") &&
                strstr(wk_last_error(), "WHISKER_CUDNN_API=legacy"), "%s", wk_last_error());
  /* plans failing for another reason than a refusal: the error says so, with cuDNN's words */
  ck_assert_int_ne(wkt_graph_notes("WK_FAKE_CUDNN_GRAPH_PLAN_FAILS", "0", WK_PRECISION_FP32, notes,
                                   sizeof notes, &loss_ref, NULL), WK_OK);
  ck_assert_msg(strstr(wk_last_error(), "no cuDNN engine") &&
                strstr(wk_last_error(), "cuDNN also failed: a plan: CUDNN_STATUS_INTERNAL_ERROR") &&
                strstr(wk_last_error(), "cannot compile"), "%s", wk_last_error());
}
END_TEST

/* An unknown $WHISKER_CUDNN_ALGO is refused by name. */
START_TEST(test_cudnn_algo_env) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_smallcnn(ctx);
  setenv("WHISKER_CUDNN_ALGO", "fastest", 1);
  const wk_status s = wk_net_use_gpu(net, 0);
  unsetenv("WHISKER_CUDNN_ALGO");
  ck_assert_int_eq(s, WK_ERR_INVALID_ARG);
  ck_assert_msg(strstr(wk_last_error(), "WHISKER_CUDNN_ALGO") != NULL, "%s", wk_last_error());
  ck_assert(!wk_net_on_gpu(net));
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* A resnet18 on GPU 0 through the caching allocator: a training forward and
 * backward at batch 4, then an evaluation forward at batch 8 (the buffers
 * grow). *alive: the figures while the net still holds its memory. Returns
 * the evaluation's logits (malloc'd, 8 x WKT_MEM_CLASSES). */
enum { WKT_MEM_CLASSES = 5 }; /* wkt_resnet18's classes (wkt_zoo) */
static float *wkt_memory_run(wk_ctx *ctx, wk_gpu_memory *alive) {
  wk_net *net = wkt_resnet18(ctx);
  ck_assert_int_eq(wk_net_output_features(net), WKT_MEM_CLASSES);
  ck_assert_msg(wk_net_use_gpu(net, 0) == WK_OK, "%s", wk_last_error());
  const int64_t xs4[4] = {4, 64, 64, 3}, xs8[4] = {8, 64, 64, 3}, ds[2] = {4, WKT_MEM_CLASSES};
  wk_tensor x4 = wkt_tensor(WK_F32, 4, xs4), x8 = wkt_tensor(WK_F32, 4, xs8);
  wk_tensor dy = wkt_tensor(WK_F32, 2, ds), y;
  wkt_fill_f32(x4.data, wk_tensor_numel(&x4), 21, -1.0f, 1.0f);
  wkt_fill_f32(x8.data, wk_tensor_numel(&x8), 22, -1.0f, 1.0f);
  wkt_fill_f32(dy.data, wk_tensor_numel(&dy), 23, -1.0f, 1.0f);
  ck_assert_msg(wk_net_forward(net, &x4, true, &y) == WK_OK, "%s", wk_last_error());
  ck_assert_msg(wk_net_backward(net, &dy) == WK_OK, "%s", wk_last_error());
  ck_assert_msg(wk_net_forward(net, &x8, false, &y) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_tensor_numel(&y), 8 * WKT_MEM_CLASSES);
  float *out = malloc(8 * WKT_MEM_CLASSES * sizeof *out);
  memcpy(out, y.data, 8 * WKT_MEM_CLASSES * sizeof *out);
  ck_assert_int_eq(wk_net_gpu_memory(net, alive), WK_OK);
  /* at least the weights and their gradients are in use */
  ck_assert_uint_ge(alive->cache.allocated_bytes, 2 * wk_net_n_elems(net) * sizeof(float));
  wk_tensor_free(&x4);
  wk_tensor_free(&x8);
  wk_tensor_free(&dy);
  wk_net_destroy(net);
  return out;
}

/* The caching allocator under networks (src/cuda/dev_cache.h): a destroyed
 * net gives back every byte it used; its memory stays cached and serves the
 * next net; and a net whose every buffer starts as NaN bytes
 * ($WHISKER_GPU_POISON=1) computes bit for bit what the same net computed on
 * reused memory, so nothing reads a buffer before writing it. Run 0 warms the
 * context's algorithm cache, so runs 1 and 2 make the same choices (checked:
 * nothing timed, nothing fell back). */
START_TEST(test_device_memory) {
  const char *env = getenv("WHISKER_GPU_CACHE");
  const bool caching = !(env && strcmp(env, "0") == 0);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_gpu_memory m0, a, m1, m2;
  ck_assert_int_eq(wk_gpu_memory_stats(0, &m0), WK_OK);
  ck_assert_uint_gt(m0.device_total_bytes, 0);
  ck_assert_uint_le(m0.device_free_bytes, m0.device_total_bytes);
  free(wkt_memory_run(ctx, &a));
  ck_assert_uint_ge(a.cache.reserved_bytes, a.cache.allocated_bytes);
  ck_assert_uint_ge(a.cache.peak_allocated_bytes, a.cache.allocated_bytes);
  ck_assert_uint_ge(a.cache.peak_reserved_bytes, a.cache.reserved_bytes);
  const wk_gpu_algo_stats s0 = wkt_algo_stats(ctx);
  float *first = wkt_memory_run(ctx, &a);
  ck_assert_int_eq(wk_gpu_memory_stats(0, &m1), WK_OK);
  ck_assert_uint_eq(m1.cache.allocated_bytes, m0.cache.allocated_bytes); /* nothing leaked */
  if (caching) ck_assert_uint_gt(m1.cache.reserved_bytes, m1.cache.allocated_bytes);
  else ck_assert_uint_eq(m1.cache.reserved_bytes, m1.cache.allocated_bytes);
  /* ctest poisons every suite's buffers; a plain run of the suite poisons here */
  const char *was = getenv("WHISKER_GPU_POISON");
  const bool poisoned = was && strcmp(was, "1") == 0;
  setenv("WHISKER_GPU_POISON", "1", 1);
  float *second = wkt_memory_run(ctx, &a);
  if (!poisoned) unsetenv("WHISKER_GPU_POISON");
  ck_assert_int_eq(wk_gpu_memory_stats(0, &m2), WK_OK);
  ck_assert_uint_eq(m2.cache.allocated_bytes, m0.cache.allocated_bytes);
  if (caching) ck_assert_int_gt(m2.cache.n_hits, m1.cache.n_hits);
  const wk_gpu_algo_stats s2 = wkt_algo_stats(ctx);
  ck_assert_int_eq(s2.timed, s0.timed);
  ck_assert_int_eq(s2.fell_back, s0.fell_back);
  for (int i = 0; i < 8 * WKT_MEM_CLASSES; i++)
    ck_assert_msg(isfinite(first[i]), "logit %d: %g", i, first[i]);
  ck_assert_msg(memcmp(first, second, 8 * WKT_MEM_CLASSES * sizeof *first) == 0,
                "the logits on NaN-filled buffers differ from those on reused ones: a buffer "
                "is read before it is written");
  free(first);
  free(second);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Without a device: a clean error naming the problem, and the net stays usable. */
START_TEST(test_no_device_is_clean) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_smallcnn(ctx);
  ck_assert_int_ne(wk_net_place(net, 0), WK_OK);
  ck_assert_msg(strstr(wk_last_error(), "--device cuda:0") != NULL, "%s", wk_last_error());
  ck_assert_int_eq(wk_net_place(net, WK_DEVICE_AUTO), WK_OK); /* falls back, warns */
  ck_assert(!wk_net_on_gpu(net));
  const int64_t xs[4] = {1, 32, 32, 3};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), y;
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 1, -1.0f, 1.0f);
  ck_assert_int_eq(wk_net_forward(net, &x, false, &y), WK_OK);
  wk_tensor_free(&x);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* The device count, asked in a child: CUDA initialised in this process would
 * be unusable in the tests' forked children. */
static int wkt_device_count_in_child(void) {
  fflush(NULL);
  const pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    const int n = wk_cuda_device_count();
    _exit(n < 0 ? 0 : n > 100 ? 100 : n);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return 0;
  return WEXITSTATUS(st);
}

/* Whether the comma-separated list names test `name`. */
static bool wkt_listed(const char *list, const char *name) {
  const size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
  return false;
}

/* $WKT_GPU_NET_ONLY: the tests to run (comma-separated; all when unset), to
 * run one while debugging; $WKT_GPU_NET_SKIP: tests to leave out (the
 * emulated plugin's, tests/CMakeLists.txt, says why); $WKT_GPU_NET_SHARD=I/N:
 * of the tests those leave, every Nth from the Ith (0-based), so that N ctest
 * entries share the suite between the cores (the emulated device runs it on
 * one). */
static int wkt_n_added, wkt_n_kept;

static void wkt_add(TCase *tc, const TTest *t) {
  const char *only = getenv("WKT_GPU_NET_ONLY"), *skip = getenv("WKT_GPU_NET_SKIP");
  if ((only && !wkt_listed(only, t->name)) || (skip && wkt_listed(skip, t->name))) {
    printf("%s: left out ($WKT_GPU_NET_ONLY / $WKT_GPU_NET_SKIP)\n", t->name);
    return;
  }
  const char *shard = getenv("WKT_GPU_NET_SHARD");
  if (shard && *shard) {
    int i = -1, n = 0;
    char end;
    if (sscanf(shard, "%d/%d%c", &i, &n, &end) != 2 || n < 1 || i < 0 || i >= n) {
      fprintf(stderr, "test_gpu_net: $WKT_GPU_NET_SHARD is '%s', not I/N with 0 <= I < N\n",
              shard);
      exit(EXIT_FAILURE);
    }
    if (wkt_n_kept++ % n != i) return;
  }
  tcase_add_test(tc, t);
  wkt_n_added++;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* each line as it comes, through a pipe too */
  /* the knobs the tests set themselves, or assume unset */
  const char *const knobs[] = {"WHISKER_BN_FUSE",        "WHISKER_GPU_OWN_BN", "WHISKER_GPU_INFER_BN",
                               "WHISKER_GPU_POOL",
                               "WHISKER_CUDA_GRAPH",     "WHISKER_GPU_HOST_STEP",
                               "WHISKER_GPU_HOST_LOSS",  "WHISKER_CUDNN_ALGO",
                               "WHISKER_GPU_WORKSPACE_MB", "WHISKER_GPU_PREFETCH",
                               "WHISKER_CUDNN_DETERMINISTIC", "WHISKER_GPU_FUSED_STEP"};
  for (size_t k = 0; k < sizeof knobs / sizeof knobs[0]; k++) unsetenv(knobs[k]);
  n_devices = wkt_device_count_in_child();
  Suite *s = suite_create("gpu_net");
  TCase *tc = tcase_create("gpu_net");
  tcase_set_timeout(tc, 300);
  if (n_devices > 0) {
    wkt_add(tc, test_smallcnn);
    wkt_add(tc, test_resnet18);
    wkt_add(tc, test_infer_bn_cudnn);
    wkt_add(tc, test_mobilenetv2);
    wkt_add(tc, test_misc_ops);
    wkt_add(tc, test_pool_cudnn);
    wkt_add(tc, test_graph_refused);
    wkt_add(tc, test_bn_fuse_fp32_resnet18);
    wkt_add(tc, test_bn_fuse_fp32_corners);
    wkt_add(tc, test_bn_fuse_workspace_zero);
    wkt_add(tc, test_bn_fuse_odd_shapes);
    wkt_add(tc, test_bn_fuse_all_fp32);
    wkt_add(tc, test_frozen_body);
    wkt_add(tc, test_frozen_backbone);
    wkt_add(tc, test_device_step_sgd);
    wkt_add(tc, test_tf32);
    wkt_add(tc, test_bf16_resnet18);
    wkt_add(tc, test_bf16_mobilenetv2);
    wkt_add(tc, test_bf16_gradients);
    wkt_add(tc, test_fp16_gradients);
    wkt_add(tc, test_bn_fuse_fp16);
    wkt_add(tc, test_bn_fuse_bf16);
    wkt_add(tc, test_sync_bn_fp32);
    wkt_add(tc, test_sync_bn_fp16);
    wkt_add(tc, test_own_bn_fp32);
    wkt_add(tc, test_own_bn_bf16);
    wkt_add(tc, test_fp16_resnet18);
    wkt_add(tc, test_fp16_mobilenetv2);
    wkt_add(tc, test_fp16_overflow_skips);
    wkt_add(tc, test_device_step_adamw);
    wkt_add(tc, test_device_loss_fp32);
    wkt_add(tc, test_device_loss_fp32_clipped);
    wkt_add(tc, test_device_loss_fp16);
    wkt_add(tc, test_device_loss_errors);
    wkt_add(tc, test_graph_resnet18_sgd);
    wkt_add(tc, test_graph_mobilenetv2_adamw_dropout_u8);
    wkt_add(tc, test_graph_resnet18_fp16_skip);
    wkt_add(tc, test_graph_nan_loss);
    wkt_add(tc, test_eval_next);
    wkt_add(tc, test_find_vs_heuristic_resnet18);
    wkt_add(tc, test_find_vs_heuristic_mobilenetv2);
    wkt_add(tc, test_cudnn_algo_env);
    wkt_add(tc, test_conv_graph);
    wkt_add(tc, test_conv_graph_find);
    wkt_add(tc, test_device_memory);
    const char *fs = getenv("WKT_FAKE_STATS");
    if (fs && strcmp(fs, "1") == 0) {
      wkt_add(tc, test_step_budget);
      wkt_add(tc, test_graph_launch_fails);
      wkt_add(tc, test_heuristic_lies);
      wkt_add(tc, test_exec_refusal);
      wkt_add(tc, test_exec_refusal_timed);
      wkt_add(tc, test_conv_graph_engines);
    }
  } else {
    wkt_add(tc, test_no_device_is_clean);
  }
  if (wkt_n_added == 0) {
    fprintf(stderr, "test_gpu_net: $WKT_GPU_NET_ONLY (with $WKT_GPU_NET_SHARD) leaves no test\n");
    return EXIT_FAILURE;
  }
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  /* a process per test (whatever $CK_FORK says): this one never initialised CUDA */
  srunner_set_fork_status(sr, CK_FORK);
  srunner_run_all(sr, CK_NORMAL);
  const int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (failed) return EXIT_FAILURE;
  if (n_devices == 0) {
    printf("test_gpu_net: no CUDA device: the GPU comparisons were skipped\n");
    return WKT_SKIP;
  }
  return EXIT_SUCCESS;
}
