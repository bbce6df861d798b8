/* test_model.c - model files and checkpoints: save/load round trips give
 * identical outputs, a resumed checkpoint continues bit for bit, and broken
 * files are refused with a message. Also what a training step reports: a NaN
 * loss stops it, and the predicted classes training accuracy counts. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"
#include "modelio/model.h"
#include "nn/zoo.h"
#include "test_util.h"
#include "train/metrics.h"
#include "train/predict.h"
#include "train/trainer.h"

static char wkt_tmp[256];

static const char *wkt_path(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", wkt_tmp, name);
  return buf[k];
}

static wk_net *wkt_net(wk_ctx *ctx, const char *arch, int classes, int size) {
  wk_arch_opts o = wk_arch_opts_default(classes);
  o.in_h = o.in_w = size;
  o.width = 0.5f;
  wk_net *net;
  ck_assert_msg(wk_zoo_build(ctx, arch, &o, 9, &net) == WK_OK, "%s", wk_last_error());
  return net;
}

static wk_tensor wkt_input(int n, int size, uint64_t seed) {
  const int64_t s[4] = {n, size, size, 3};
  wk_tensor x = wkt_tensor(WK_F32, 4, s);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), seed, -1.0f, 1.0f);
  return x;
}

START_TEST(test_round_trip_identical_outputs) {
  const char *archs[] = {"smallcnn", "resnet18", "mobilenetv2"};
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  for (int a = 0; a < 3; a++) {
    wk_net *net = wkt_net(ctx, archs[a], 3, 32);
    wk_model_meta meta;
    ck_assert_int_eq(wk_model_meta_init(&meta, archs[a], 3, 32), WK_OK);
    ck_assert_int_eq(wk_model_meta_set_class(&meta, 1, "dog \"quoted\" \xc3\xa9"), WK_OK);
    ck_assert_int_eq(wk_model_meta_set_provenance(&meta, "{\"epochs\": 3}"), WK_OK);
    wk_tensor x = wkt_input(2, 32, 4), out;
    /* a training step first, so batchnorm statistics are not the defaults */
    ck_assert_int_eq(wk_net_forward(net, &x, true, &out), WK_OK);
    ck_assert_int_eq(wk_net_forward(net, &x, false, &out), WK_OK);
    float before[6];
    memcpy(before, out.data, sizeof before);
    const char *path = wkt_path("m.safetensors");
    ck_assert_msg(wk_model_save(path, net, &meta, NULL, 0, NULL, 0) == WK_OK, "%s",
                  wk_last_error());
    wk_net *back;
    wk_model_meta m2;
    ck_assert_msg(wk_model_load(ctx, path, &back, &m2) == WK_OK, "%s", wk_last_error());
    ck_assert_str_eq(m2.arch, archs[a]);
    ck_assert_int_eq(m2.n_classes, 3);
    ck_assert_str_eq(m2.class_names[1], "dog \"quoted\" \xc3\xa9");
    ck_assert_int_eq(m2.pre.crop_px, 32);
    ck_assert_ptr_nonnull(strstr(m2.provenance, "epochs"));
    ck_assert_int_eq(wk_net_param_count(back), wk_net_param_count(net));
    ck_assert_int_eq(wk_net_bn_batches(back), wk_net_bn_batches(net));
    ck_assert_int_eq(wk_net_forward(back, &x, false, &out), WK_OK);
    ck_assert_mem_eq(out.data, before, sizeof before);
    ck_assert_mem_eq(wk_net_weights(back), wk_net_weights(net),
                     wk_net_n_elems(net) * sizeof(float));
    wk_tensor_free(&x);
    wk_model_meta_free(&meta);
    wk_model_meta_free(&m2);
    wk_net_destroy(net);
    wk_net_destroy(back);
  }
  wk_ctx_destroy(ctx);
}
END_TEST

/* IEEE half precision: exact values, rounding to nearest even, the
 * subnormal range, overflow and NaN. */
START_TEST(test_f16_conversion) {
  const struct { float f; uint16_t h; } k[] = {
      {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000},
      {65504.0f, 0x7bff}, {65520.0f, 0x7c00}, {1e6f, 0x7c00}, {-1e6f, 0xfc00},
      {0.1f, 0x2e66}, {1.0f + 1.0f / 2048, 0x3c00}, {1.0f + 3.0f / 2048, 0x3c02},
      {5.9604645e-8f, 0x0001}, {2.9802322e-8f, 0x0000}, {6.1035156e-5f, 0x0400},
      {6.0975552e-5f, 0x03ff}, {1e-10f, 0x0000}, {INFINITY, 0x7c00}};
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
    ck_assert_msg(wk_f32_to_f16(k[i].f) == k[i].h, "%g -> 0x%04x, expected 0x%04x",
                  (double)k[i].f, wk_f32_to_f16(k[i].f), k[i].h);
  ck_assert_int_eq(wk_f32_to_f16(NAN) & 0x7c00, 0x7c00);
  ck_assert_int_ne(wk_f32_to_f16(NAN) & 0x3ff, 0);
}
END_TEST

/* A model stored in f16 is half the size and gives the f32 model's logits
 * within half precision's error. */
START_TEST(test_f16_model_file) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net = wkt_net(ctx, "mobilenetv2", 3, 32);
  wk_model_meta meta;
  ck_assert_int_eq(wk_model_meta_init(&meta, "mobilenetv2", 3, 32), WK_OK);
  wk_tensor x = wkt_input(2, 32, 4), out;
  ck_assert_int_eq(wk_net_forward(net, &x, true, &out), WK_OK);
  ck_assert_int_eq(wk_net_forward(net, &x, false, &out), WK_OK);
  float before[6];
  memcpy(before, out.data, sizeof before);
  const char *p32 = wkt_path("m32.safetensors"), *p16 = wkt_path("m16.safetensors");
  ck_assert_int_eq(wk_model_save(p32, net, &meta, NULL, 0, NULL, 0), WK_OK);
  ck_assert_msg(wk_model_save_f16(p16, net, &meta) == WK_OK, "%s", wk_last_error());
  struct stat a, b;
  ck_assert_int_eq(stat(p32, &a), 0);
  ck_assert_int_eq(stat(p16, &b), 0);
  ck_assert_int_lt(b.st_size, a.st_size * 6 / 10);
  wk_net *back;
  wk_model_meta m2;
  ck_assert_msg(wk_model_load(ctx, p16, &back, &m2) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_net_forward(back, &x, false, &out), WK_OK);
  const double e = wkt_rel_err(out.data, before, 6, 1e-6);
  ck_assert_msg(e < 1e-2 && e > 0, "f16 logits differ by %g", e);
  wk_tensor_free(&x);
  wk_model_meta_free(&meta);
  wk_model_meta_free(&m2);
  wk_net_destroy(net);
  wk_net_destroy(back);
  wk_ctx_destroy(ctx);
}
END_TEST

/* n steps of training on fixed random batches; batch k from seed 100 + k */
static void wkt_train(wk_trainer *t, int64_t from, int64_t n) {
  const int64_t ls[1] = {4};
  wk_tensor labels = wkt_tensor(WK_I32, 1, ls);
  for (int64_t k = from; k < from + n; k++) {
    wk_tensor x = wkt_input(4, 32, 100 + (uint64_t)k);
    for (int i = 0; i < 4; i++) ((int32_t *)labels.data)[i] = (int32_t)((k + i) % 3);
    float loss;
    double lr;
    ck_assert_msg(wk_trainer_step(t, &x, &labels, &loss, &lr) == WK_OK, "%s", wk_last_error());
    wk_tensor_free(&x);
  }
  wk_tensor_free(&labels);
}

static void wkt_resume_case(wk_optim_kind kind, wk_schedule_kind sk) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_train_config cfg = {.optim = wk_optim_config_default(kind),
                         .schedule = wk_schedule_default(sk, 0.05, 12),
                         .seed = 77,
                         .label_smoothing = 0.1f,
                         .clip_norm = 5.0};
  cfg.optim.weight_decay = 1e-4;
  /* mobilenetv2 has dropout, so the (seed, step) stream is exercised */
  wk_net *a = wkt_net(ctx, "mobilenetv2", 3, 32);
  wk_trainer *ta;
  ck_assert_msg(wk_trainer_create(a, &cfg, &ta) == WK_OK, "%s", wk_last_error());
  wkt_train(ta, 0, 5);
  wk_model_meta meta;
  ck_assert_int_eq(wk_model_meta_init(&meta, "mobilenetv2", 3, 32), WK_OK);
  const wk_data_pos pos = {.epoch = 2, .batch = 5};
  const char *path = wkt_path("ck.safetensors");
  ck_assert_msg(wk_checkpoint_save(path, ta, &meta, &pos) == WK_OK, "%s", wk_last_error());
  wkt_train(ta, 5, 7); /* the uninterrupted run */

  wk_net *b;
  wk_trainer *tb;
  wk_model_meta mb;
  wk_data_pos pb;
  ck_assert_msg(wk_checkpoint_load(ctx, path, &b, &tb, &mb, &pb) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_trainer_steps(tb), 5);
  ck_assert_int_eq(pb.epoch, 2);
  ck_assert_int_eq(pb.batch, 5);
  /* a resume with a batch 10 times larger: the one-cycle schedule would be
   * 1 step long, too short to rise (it once aborted on an assertion); and a
   * rescaling past any step count. Both refused, the trainer unchanged. */
  if (sk == WK_SCHEDULE_ONE_CYCLE)
    ck_assert_int_eq(wk_trainer_rescale_steps(tb, 0.1), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_trainer_rescale_steps(tb, 1e300), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_trainer_steps(tb), 5);
  ck_assert_int_eq(wk_trainer_config(tb)->schedule.total_steps, 12);
  wkt_train(tb, 5, 7);
  ck_assert_int_eq(wk_trainer_steps(tb), 12);
  ck_assert_mem_eq(wk_net_weights(b), wk_net_weights(a), wk_net_n_elems(a) * sizeof(float));
  ck_assert_mem_eq(wk_net_buffer_data(b), wk_net_buffer_data(a),
                   wk_net_n_buffer_elems(a) * sizeof(float));
  wk_trainer_destroy(tb);
  wk_net_destroy(b);
  wk_model_meta_free(&mb);
  /* a checkpoint is also a model file */
  wk_net *c;
  wk_model_meta mc;
  ck_assert_int_eq(wk_model_load(ctx, path, &c, &mc), WK_OK);
  wk_net_destroy(c);
  wk_model_meta_free(&mc);
  /* and a model file is not a checkpoint */
  ck_assert_int_eq(wk_model_save(wkt_path("plain.safetensors"), a, &meta, NULL, 0, NULL, 0),
                   WK_OK);
  ck_assert_int_eq(wk_checkpoint_load(ctx, wkt_path("plain.safetensors"), &c, &tb, &mc, &pb),
                   WK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "not a checkpoint"));
  wk_trainer_destroy(ta);
  wk_net_destroy(a);
  wk_model_meta_free(&meta);
  ck_assert_int_eq(wk_checkpoint_load(ctx, path, &b, &tb, &mb, &pb), WK_OK);
  wk_trainer_destroy(tb);
  wk_net_destroy(b);
  wk_model_meta_free(&mb);
  wk_ctx_destroy(ctx);
}

/* A checkpoint keeps the precision its run trained in (a resumed `--precision
 * auto` run trains on in it): set on a network not yet on a GPU, saved, and
 * loaded back onto the loaded network. */
START_TEST(test_checkpoint_keeps_precision) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_train_config cfg = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                         .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 1),
                         .seed = 1};
  const wk_precision ps[2] = {WK_PRECISION_BF16, WK_PRECISION_FP32};
  for (int k = 0; k < 2; k++) {
    wk_net *a = wkt_net(ctx, "smallcnn", 3, 32);
    ck_assert_int_eq(wk_net_set_precision(a, ps[k]), WK_OK);
    wk_trainer *ta;
    ck_assert_msg(wk_trainer_create(a, &cfg, &ta) == WK_OK, "%s", wk_last_error());
    wk_model_meta meta;
    ck_assert_int_eq(wk_model_meta_init(&meta, "smallcnn", 3, 32), WK_OK);
    const wk_data_pos pos = {.epoch = 0, .batch = 0};
    const char *path = wkt_path("prec.safetensors");
    ck_assert_msg(wk_checkpoint_save(path, ta, &meta, &pos) == WK_OK, "%s", wk_last_error());
    wk_net *b;
    wk_trainer *tb;
    wk_model_meta mb;
    wk_data_pos pb;
    ck_assert_msg(wk_checkpoint_load(ctx, path, &b, &tb, &mb, &pb) == WK_OK, "%s",
                  wk_last_error());
    ck_assert_int_eq(wk_net_precision(b), ps[k]);
    wk_trainer_destroy(tb);
    wk_net_destroy(b);
    wk_model_meta_free(&mb);
    wk_trainer_destroy(ta);
    wk_net_destroy(a);
    wk_model_meta_free(&meta);
  }
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_nan_loss_stops_with_the_step) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_train_config cfg = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                         .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 1),
                         .seed = 1};
  wk_net *net = wkt_net(ctx, "smallcnn", 3, 32);
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &cfg, &t), WK_OK);
  wkt_train(t, 0, 2);
  wk_tensor x = wkt_input(4, 32, 1);
  ((float *)x.data)[17] = NAN;
  const int64_t ls[1] = {4};
  wk_tensor labels = wkt_tensor(WK_I32, 1, ls);
  const float *w0 = wk_net_weights(net);
  float before = w0[0];
  float loss;
  ck_assert_int_ne(wk_trainer_step(t, &x, &labels, &loss, NULL), WK_OK);
  ck_assert_msg(strstr(wk_last_error(), "step 2") != NULL, "%s", wk_last_error());
  ck_assert_float_eq(wk_net_weights(net)[0], before); /* no update applied */
  ck_assert_int_eq(wk_trainer_steps(t), 2);
  wk_tensor_free(&x);
  wk_tensor_free(&labels);
  wk_trainer_destroy(t);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* A learning-rate sweep's step (wk_trainer_step_at) whose loss is finite but
 * whose gradient is not: reported as a NaN loss, like a non-finite loss, with
 * nothing updated and the step not counted; the same step outside a sweep is
 * an error. The net (flatten, fc1 48 -> 2, fc2 2 -> 3, no biases) is set up
 * so: x = 1e21 everywhere, fc1's weights 1e-21 (h = 48), fc2's rows 1e25
 * times (1, 1 + 1e-7 c): finite logits of ~5e26 whose differences make a
 * huge but finite loss, and fc1's gradient (fc2^T dy) x^T ~ 1e18 x 1e21
 * overflows float. */
START_TEST(test_sweep_step_with_a_nonfinite_gradient) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_REF, 1);
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 4, 4, 3, &net), WK_OK);
  int v = wk_net_flatten(net, "flatten", 0);
  v = wk_net_linear(net, "fc1", v, 2, false);
  v = wk_net_linear(net, "fc2", v, 3, false);
  ck_assert_int_ge(v, 0);
  ck_assert_msg(wk_net_finalize(net, 3) == WK_OK, "%s", wk_last_error());
  size_t np;
  const wk_param *ps = wk_net_params(net, &np);
  float *w = wk_net_weights(net);
  const wk_param *p1 = &ps[wk_net_find_param(net, "fc1.weight")];
  const wk_param *p2 = &ps[wk_net_find_param(net, "fc2.weight")];
  for (size_t i = 0; i < p1->numel; i++) w[p1->offset + i] = 1e-21f;
  for (int c = 0; c < 3; c++)
    for (int j = 0; j < 2; j++) w[p2->offset + (size_t)(c * 2 + j)] = 1e25f * (1.0f + 1e-7f * c);
  wk_net_weights_changed(net);
  const float w0 = w[p1->offset];
  wk_train_config cfg = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                         .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 4),
                         .seed = 1};
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &cfg, &t), WK_OK);
  const int64_t xs[4] = {2, 4, 4, 3}, ls[1] = {2};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), labels = wkt_tensor(WK_I32, 1, ls), out;
  for (int64_t i = 0; i < wk_tensor_numel(&x); i++) ((float *)x.data)[i] = 1e21f;
  ((int32_t *)labels.data)[0] = 0, ((int32_t *)labels.data)[1] = 1;
  /* the premise: the loss is finite */
  ck_assert_int_eq(wk_net_forward(net, &x, false, &out), WK_OK);
  for (int i = 0; i < 6; i++) ck_assert(isfinite(((const float *)out.data)[i]));
  float loss = 0.0f;
  ck_assert_msg(wk_trainer_step_at(t, &x, &labels, 0.01, &loss) == WK_OK, "%s", wk_last_error());
  ck_assert_msg(isnan(loss), "loss %g", (double)loss);
  ck_assert_float_eq(wk_net_weights(net)[p1->offset], w0); /* no update */
  ck_assert_int_eq(wk_trainer_steps(t), 0);
  ck_assert_int_ne(wk_trainer_step(t, &x, &labels, &loss, NULL), WK_OK);
  ck_assert_msg(strstr(wk_last_error(), "fc1.weight") != NULL, "%s", wk_last_error());
  wk_tensor_free(&x);
  wk_tensor_free(&labels);
  wk_trainer_destroy(t);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* wk_trainer_predicted after a step on the CPU (the loss on the host): each
 * row's argmax of the softmax probabilities of the step's forward, the first
 * of equal maxima. The network (flatten, linear) has no batchnorm and no
 * dropout, so an evaluation forward before the step gives the step's logits;
 * then, with the weights zeroed and the bias {0, 1, 0, 2, 2}, every row's
 * classes 3 and 4 tie exactly and 3 must win. */
/* A 4 x 4 x 3 input flattened into one linear layer of k outputs (with a
 * bias), initialised with seed 3. */
static wk_net *wkt_flat_fc(wk_ctx *ctx, int k) {
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, 4, 4, 3, &net), WK_OK);
  const int v = wk_net_linear(net, "fc", wk_net_flatten(net, "flatten", 0), k, true);
  ck_assert_int_ge(v, 0);
  ck_assert_msg(wk_net_finalize(net, 3) == WK_OK, "%s", wk_last_error());
  return net;
}

START_TEST(test_predicted_classes) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_flat_fc(ctx, 5);
  wk_train_config cfg = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                         .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 2),
                         .seed = 1,
                         .label_smoothing = 0.1f};
  wk_trainer *t;
  ck_assert_int_eq(wk_trainer_create(net, &cfg, &t), WK_OK);
  enum { N = 7, K = 5 };
  wk_tensor x = wkt_input(N, 4, 21);
  const int64_t ls[1] = {N}, ps[2] = {N, K};
  wk_tensor labels = wkt_tensor(WK_I32, 1, ls), probs = wkt_tensor(WK_F32, 2, ps), out;
  for (int i = 0; i < N; i++) ((int32_t *)labels.data)[i] = i % K;
  ck_assert_int_eq(wk_net_forward(net, &x, false, &out), WK_OK);
  const wk_xent_params xp = {.label_smoothing = 0.1f};
  float loss, step_loss;
  ck_assert_int_eq(wk_softmax_xent_forward(ctx, &xp, &out, &labels, &probs, &loss), WK_OK);
  int want[N];
  for (int i = 0; i < N; i++) want[i] = wk_argmax((const float *)probs.data + i * K, K);
  ck_assert_msg(wk_trainer_step(t, &x, &labels, &step_loss, NULL) == WK_OK, "%s",
                wk_last_error());
  ck_assert_msg(fabsf(step_loss - loss) <= 1e-6f * loss, "step loss %g, forward's %g",
                (double)step_loss, (double)loss); /* the same logits */
  const int32_t *pred = wk_trainer_predicted(t);
  ck_assert_ptr_nonnull(pred);
  for (int i = 0; i < N; i++) ck_assert_int_eq(pred[i], want[i]);
  float *w = wk_net_weights(net);
  memset(w, 0, wk_net_n_elems(net) * sizeof *w);
  const int b = wk_net_find_param(net, "fc.bias");
  ck_assert_int_ge(b, 0);
  size_t np;
  const float bias[K] = {0, 1, 0, 2, 2};
  memcpy(w + wk_net_params(net, &np)[b].offset, bias, sizeof bias);
  wk_net_weights_changed(net);
  ck_assert_msg(wk_trainer_step(t, &x, &labels, &step_loss, NULL) == WK_OK, "%s",
                wk_last_error());
  pred = wk_trainer_predicted(t);
  for (int i = 0; i < N; i++) ck_assert_int_eq(pred[i], 3);
  wk_tensor_free(&x);
  wk_tensor_free(&labels);
  wk_tensor_free(&probs);
  wk_trainer_destroy(t);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_resume_sgd_one_cycle) { wkt_resume_case(WK_OPTIM_SGD, WK_SCHEDULE_ONE_CYCLE); }
END_TEST
START_TEST(test_resume_adamw_cosine) { wkt_resume_case(WK_OPTIM_ADAMW, WK_SCHEDULE_COSINE); }
END_TEST

/* Rewrites a saved model with one metadata value replaced. */
static void wkt_rewrite_meta(const char *src, const char *dst, const char *key, const char *value) {
  wk_st_file *f;
  ck_assert_int_eq(wk_st_open(src, &f), WK_OK);
  size_t n = wk_st_count(f), nm = wk_st_meta_count(f);
  wk_st_entry *e = calloc(n, sizeof *e);
  wk_st_meta *m = calloc(nm, sizeof *m);
  for (size_t i = 0; i < n; i++) e[i] = *wk_st_entry_at(f, i);
  for (size_t i = 0; i < nm; i++) {
    m[i] = *wk_st_meta_at(f, i);
    if (strcmp(m[i].key, key) == 0) m[i].value = value;
  }
  ck_assert_int_eq(wk_st_write(dst, e, n, m, nm), WK_OK);
  free(e);
  free(m);
  wk_st_close(f);
}

static void wkt_expect_refused(wk_ctx *ctx, const char *path, const char *needle) {
  wk_net *net = NULL;
  wk_model_meta meta;
  wk_status s = wk_model_load(ctx, path, &net, &meta);
  ck_assert_msg(s != WK_OK, "%s loaded", needle);
  ck_assert_ptr_null(net);
  ck_assert_msg(strstr(wk_last_error(), needle) != NULL, "'%s' not in '%s'", needle,
                wk_last_error());
}

START_TEST(test_broken_models_refused) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_net(ctx, "smallcnn", 2, 32);
  wk_model_meta meta;
  ck_assert_int_eq(wk_model_meta_init(&meta, "smallcnn", 2, 32), WK_OK);
  const char *good = wkt_path("good.safetensors"), *bad = wkt_path("bad.safetensors");
  ck_assert_int_eq(wk_model_save(good, net, &meta, NULL, 0, NULL, 0), WK_OK);
  /* truncated: the safetensors layer refuses it, naming the file */
  FILE *f = fopen(good, "rb");
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  f = fopen(bad, "wb");
  ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
  fclose(f);
  wkt_expect_refused(ctx, bad, "bad.safetensors");
  /* architecture tampering */
  wkt_rewrite_meta(good, bad, "whisker.arch", "{\"name\":\"smallcnn\"");
  wkt_expect_refused(ctx, bad, "not valid JSON");
  wkt_rewrite_meta(good, bad, "whisker.arch",
                   "{\"name\":\"x\",\"num_classes\":2,\"input\":[32,32,3],\"nodes\":"
                   "[{\"op\":\"teleport\",\"name\":\"a\",\"in\":[0]}]}");
  wkt_expect_refused(ctx, bad, "node 0");
  wkt_rewrite_meta(good, bad, "whisker.arch",
                   "{\"name\":\"x\",\"num_classes\":2,\"input\":[32,32,3],\"nodes\":"
                   "[{\"op\":\"global_avgpool\",\"name\":\"g\",\"in\":[5]}]}");
  wkt_expect_refused(ctx, bad, "'in'");
  wkt_rewrite_meta(good, bad, "whisker.arch",
                   "{\"name\":\"x\",\"num_classes\":2,\"input\":[32,32,3],\"nodes\":"
                   "[{\"op\":\"conv\",\"name\":\"conv1\",\"in\":[0],\"out\":65536,\"k\":[64,64],"
                   "\"stride\":[1,1],\"pad\":[0,0,0,0],\"dilation\":[1,1],\"groups\":1,"
                   "\"bias\":false}]}");
  wkt_expect_refused(ctx, bad, "conv1");
  /* the graph wants a tensor the file does not have the shape of */
  wkt_rewrite_meta(good, bad, "whisker.arch",
                   "{\"name\":\"smallcnn\",\"num_classes\":5,\"input\":[32,32,3]}");
  wkt_expect_refused(ctx, bad, "fc.weight");
  wkt_rewrite_meta(good, bad, "whisker.classes", "[\"a\"]");
  wkt_expect_refused(ctx, bad, "whisker.classes");
  wkt_rewrite_meta(good, bad, "whisker.classes", "[\"a\",\"\"]");
  wkt_expect_refused(ctx, bad, "class name 1 is empty");
  wkt_rewrite_meta(good, bad, "whisker.classes", "[3,\"a\"]");
  wkt_expect_refused(ctx, bad, "class name 0 is not a string");
  wkt_rewrite_meta(good, bad, "whisker.preprocess", "{\"resize\":10,\"crop\":20}");
  wkt_expect_refused(ctx, bad, "whisker.preprocess");
  wkt_rewrite_meta(good, bad, "whisker.preprocess",
                   "{\"resize\":73,\"crop\":64,\"mean\":[0,0,0],\"std\":[1,1,1]}");
  wkt_expect_refused(ctx, bad, "crops 64 px, but the network takes 32 x 32");
  /* a file that is not a model at all */
  wk_st_entry e = {.name = "x", .dtype = WK_ST_F32, .ndim = 1, .shape = {1},
                   .data = (float[1]){1}, .n_bytes = 4};
  ck_assert_int_eq(wk_st_write(bad, &e, 1, NULL, 0), WK_OK);
  wkt_expect_refused(ctx, bad, "not a whisker model");
  wkt_expect_refused(ctx, wkt_path("missing.safetensors"), "missing.safetensors");
  /* values no trained model holds: a NaN weight, a negative running
   * variance (once loaded, giving no answer or a confident wrong one); and
   * a weight beyond float16's range, refused by the f16 writer rather than
   * stored as infinity */
  const int fc = wk_net_find_param(net, "fc.weight");
  ck_assert_int_ge(fc, 0);
  size_t np, nb;
  float *w = wk_net_weights(net) + wk_net_params(net, &np)[fc].offset;
  const float w0 = w[0];
  w[0] = NAN;
  wk_net_weights_changed(net);
  ck_assert_int_eq(wk_model_save(bad, net, &meta, NULL, 0, NULL, 0), WK_OK);
  wkt_expect_refused(ctx, bad, "fc.weight");
  w[0] = 1e5f;
  wk_net_weights_changed(net);
  ck_assert_int_eq(wk_model_save_f16(bad, net, &meta), WK_ERR_UNSUPPORTED);
  ck_assert_msg(strstr(wk_last_error(), "fc.weight") && strstr(wk_last_error(), "65504"), "%s",
                wk_last_error());
  w[0] = w0;
  wk_net_weights_changed(net);
  const wk_param *bufs = wk_net_buffers(net, &nb);
  float *var = NULL;
  for (size_t i = 0; i < nb && !var; i++)
    if (strstr(bufs[i].name, "running_var")) var = wk_net_buffer_data(net) + bufs[i].offset;
  ck_assert_ptr_nonnull(var);
  var[0] = -1.0f;
  ck_assert_int_eq(wk_model_save(bad, net, &meta, NULL, 0, NULL, 0), WK_OK);
  wkt_expect_refused(ctx, bad, "negative variance");
  var[0] = 1.0f;
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Class names the loader refuses were written: an empty one or one over 255
 * bytes made a file that did not load, and one that is not UTF-8 was refused
 * as "metadata value 3", naming no class. The writer refuses each now, naming
 * the file and the class, and writes nothing. */
START_TEST(test_class_names_checked_on_save) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_net(ctx, "smallcnn", 2, 32);
  char long_name[257];
  memset(long_name, 'a', 256);
  long_name[256] = '\0';
  const struct { int i; const char *name, *want; } k[] = {
      {1, "", "class name 1 is empty"},
      {0, long_name, "class name 0 is longer than 255 bytes"},
      {1, "d\xc3", "class name 1 is not valid UTF-8 (byte 1)"},
      {0, "\xed\xbf\xbf", "class name 0 is not valid UTF-8 (byte 0)"},
  };
  const char *path = wkt_path("names.safetensors");
  for (size_t t = 0; t < sizeof k / sizeof k[0]; t++) {
    wk_model_meta meta;
    WKT_OK(wk_model_meta_init(&meta, "smallcnn", 2, 32));
    WKT_OK(wk_model_meta_set_class(&meta, k[t].i, k[t].name));
    WKT_FAILS(WK_ERR_FORMAT, wk_model_save(path, net, &meta, NULL, 0, NULL, 0));
    ck_assert_msg(strstr(wk_last_error(), path) && strstr(wk_last_error(), k[t].want), "%s",
                  wk_last_error());
    ck_assert_int_ne(access(path, F_OK), 0);
    wk_model_meta_free(&meta);
  }
  /* 255 bytes load */
  wk_model_meta meta, back;
  WKT_OK(wk_model_meta_init(&meta, "smallcnn", 2, 32));
  long_name[255] = '\0';
  WKT_OK(wk_model_meta_set_class(&meta, 1, long_name));
  WKT_OK(wk_model_save(path, net, &meta, NULL, 0, NULL, 0));
  wk_net *net2;
  WKT_OK(wk_model_load(ctx, path, &net2, &back));
  ck_assert_str_eq(back.class_names[1], long_name);
  wk_model_meta_free(&meta);
  wk_model_meta_free(&back);
  wk_net_destroy(net2);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Finite weights can still overflow on some input. Such an image gets a
 * row of NaN and is counted as failed, like an unreadable file, so classify
 * reports it instead of printing nothing for it under exit 0. */
START_TEST(test_predict_files_nonfinite_output) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_flat_fc(ctx, 2);
  float *w = wk_net_weights(net);
  for (size_t i = 0; i < wk_net_n_elems(net); i++) w[i] = 1e-3f;
  const int fc = wk_net_find_param(net, "fc.weight");
  size_t np;
  const wk_param *prm = wk_net_params(net, &np);
  w[prm[fc].offset] = w[prm[fc].offset + 1] = 3e38f; /* finite; their sum is not */
  wk_net_weights_changed(net);
  const char *paths[3] = {wkt_path("dark.png"), NULL, NULL};
  paths[1] = wkt_path("bright.png");
  paths[2] = wkt_path("missing.png");
  for (int k = 0; k < 2; k++) {
    wk_image img = {0};
    ck_assert_int_eq(wk_image_alloc(&img, 4, 4), WK_OK);
    for (int y = 0; y < 4; y++) memset(img.data + y * img.stride_bytes, k ? 255 : 0, 4 * 3);
    ck_assert_int_eq(wk_image_write_png(&img, paths[k]), WK_OK);
    wk_image_free(&img);
  }
  const wk_preprocess pre = {.resize_px = 4, .crop_px = 4, .mean = {0, 0, 0}, .std = {1, 1, 1}};
  float probs[3 * 2];
  int64_t bad = -1;
  char *why[3] = {NULL, NULL, NULL};
  ck_assert_msg(wk_predict_files(net, &pre, paths, 3, 2, probs, &bad, why) == WK_OK, "%s",
                wk_last_error());
  ck_assert_int_eq(bad, 2); /* the bright one and the missing one */
  /* each failure's reason, without its path; none for the good one */
  ck_assert_ptr_null(why[0]);
  ck_assert_msg(why[1] && !strncmp(why[1], "the model's output is not a number", 34), "%s", why[1]);
  ck_assert_msg(why[2] && !strncmp(why[2], "cannot open", 11), "%s", why[2]);
  for (int i = 0; i < 3; i++) free(why[i]);
  /* without why the same */
  bad = -1;
  ck_assert_int_eq(wk_predict_files(net, &pre, paths, 3, 2, probs, &bad, NULL), WK_OK);
  ck_assert_int_eq(bad, 2);
  ck_assert(isfinite(probs[0]) && isfinite(probs[1]));
  ck_assert_float_eq_tol(probs[0] + probs[1], 1.0f, 1e-6f);
  for (int j = 2; j < 6; j++) ck_assert_msg(isnan(probs[j]), "probs[%d] = %g", j, probs[j]);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* classify's files decode on the context's threads, a batch at a time: over 11 files in
 * batches of 4, three of them broken (missing, not an image, a truncated PNG) in different
 * batches and places, 3 threads give every file the probabilities it gets alone on 1 thread
 * (the good files packed into the forward in order), the same failures with the same reasons,
 * and the same count. */
START_TEST(test_predict_files_threads) {
  enum { N = 11 };
  char names[N][512];
  const char *paths[N];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "%s/img%02d.png", wkt_tmp, i);
    paths[i] = names[i];
    if (i == 1 || i == 6 || i == 7) continue;
    wk_image img = {0};
    ck_assert_int_eq(wk_image_alloc(&img, 4, 4), WK_OK);
    for (int y = 0; y < 4; y++)
      for (int x = 0; x < 12; x++)
        img.data[y * img.stride_bytes + x] = (uint8_t)((i * 37 + y * 11 + x * 5) % 256);
    ck_assert_int_eq(wk_image_write_png(&img, paths[i]), WK_OK);
    wk_image_free(&img);
  }
  /* 1: missing; 6: not an image; 7: a PNG cut short */
  FILE *f = fopen(paths[6], "wb");
  ck_assert_ptr_nonnull(f);
  fputs("this is not a picture", f);
  fclose(f);
  {
    wk_image img = {0};
    ck_assert_int_eq(wk_image_alloc(&img, 4, 4), WK_OK);
    memset(img.data, 90, (size_t)img.stride_bytes * 4);
    ck_assert_int_eq(wk_image_write_png(&img, paths[7]), WK_OK);
    wk_image_free(&img);
    ck_assert_int_eq(truncate(paths[7], 40), 0);
  }
  const wk_preprocess pre = {.resize_px = 4, .crop_px = 4, .mean = {0.5f, 0.5f, 0.5f},
                             .std = {0.25f, 0.25f, 0.25f}};
  float alone[N * 3], many[N * 3];
  char *why1[N] = {NULL}, *why3[N] = {NULL};
  wk_ctx *c1 = wkt_ctx(WK_IMPL_CPU, 1), *c3 = wkt_ctx(WK_IMPL_CPU, 3);
  wk_net *n1 = wkt_flat_fc(c1, 3), *n3 = wkt_flat_fc(c3, 3);
  wkt_fill_f32(wk_net_weights(n1), (int64_t)wk_net_n_elems(n1), 7, -0.5f, 0.5f);
  memcpy(wk_net_weights(n3), wk_net_weights(n1), wk_net_n_elems(n1) * sizeof(float));
  wk_net_weights_changed(n1);
  wk_net_weights_changed(n3);
  int64_t bad1 = 0, bad3 = -1;
  for (int i = 0; i < N; i++) { /* each file alone, one thread */
    int64_t b = -1;
    ck_assert_int_eq(wk_predict_files(n1, &pre, paths + i, 1, 4, alone + i * 3, &b, why1 + i),
                     WK_OK);
    bad1 += b;
  }
  ck_assert_msg(wk_predict_files(n3, &pre, paths, N, 4, many, &bad3, why3) == WK_OK, "%s",
                wk_last_error());
  ck_assert_int_eq(bad1, 3);
  ck_assert_int_eq(bad3, 3);
  for (int i = 0; i < N; i++) {
    const bool broken = i == 1 || i == 6 || i == 7;
    ck_assert_msg(!why3[i] == !broken, "file %d: reason %s", i, why3[i] ? why3[i] : "(none)");
    if (broken) ck_assert_str_eq(why3[i], why1[i]);
    for (int j = 0; j < 3; j++) {
      if (broken) {
        ck_assert_msg(isnan(many[i * 3 + j]), "file %d: %g", i, (double)many[i * 3 + j]);
        continue;
      }
      ck_assert_msg(fabsf(many[i * 3 + j] - alone[i * 3 + j]) <= 1e-6f,
                    "file %d class %d: %.9g in a batch on 3 threads, %.9g alone", i, j,
                    (double)many[i * 3 + j], (double)alone[i * 3 + j]);
    }
  }
  /* the good files' answers differ (a row put in the wrong place would show) */
  ck_assert(fabsf(alone[0] - alone[2 * 3]) > 1e-4f);
  ck_assert_msg(strstr(why3[1], "cannot open"), "%s", why3[1]);
  for (int i = 0; i < N; i++) {
    free(why1[i]);
    free(why3[i]);
  }
  wk_net_destroy(n1);
  wk_net_destroy(n3);
  wk_ctx_destroy(c1);
  wk_ctx_destroy(c3);
}
END_TEST

int main(void) {
  snprintf(wkt_tmp, sizeof wkt_tmp, "/tmp/wk_test_model_%d", (int)getpid());
  if (mkdir(wkt_tmp, 0700) != 0) return 1;
  Suite *s = suite_create("model");
  TCase *tc = tcase_create("model");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_round_trip_identical_outputs);
  tcase_add_test(tc, test_nan_loss_stops_with_the_step);
  tcase_add_test(tc, test_sweep_step_with_a_nonfinite_gradient);
  tcase_add_test(tc, test_checkpoint_keeps_precision);
  tcase_add_test(tc, test_predicted_classes);
  tcase_add_test(tc, test_predict_files_nonfinite_output);
  tcase_add_test(tc, test_predict_files_threads);
  tcase_add_test(tc, test_resume_sgd_one_cycle);
  tcase_add_test(tc, test_resume_adamw_cosine);
  tcase_add_test(tc, test_broken_models_refused);
  tcase_add_test(tc, test_class_names_checked_on_save);
  tcase_add_test(tc, test_f16_conversion);
  tcase_add_test(tc, test_f16_model_file);
  suite_add_tcase(s, tc);
  int rc = wkt_run_suite(s);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", wkt_tmp);
  if (system(cmd) != 0) return 1;
  return rc;
}
