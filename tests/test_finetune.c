/* test_finetune.c - a new head on a trained body (train/finetune.h): what is
 * kept, what is frozen, the batchnorm statistics of a frozen body, the
 * discriminative learning rates, and the models it refuses. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "modelio/model.h"
#include "nn/zoo.h"
#include "test_fs.h"
#include "test_util.h"
#include "train/finetune.h"
#include "train/trainer.h"

enum { SIZE = 24, BATCH = 6 };

/* A smallcnn for 3 classes with non-trivial batchnorm statistics, saved. */
static char *wkt_base_model(wk_ctx *ctx, const char *dir) {
  wk_arch_opts o = wk_arch_opts_default(3);
  o.in_h = o.in_w = SIZE;
  wk_net *net;
  WKT_OK(wk_zoo_build(ctx, "smallcnn", &o, 11, &net));
  size_t nb;
  const wk_param *b = wk_net_buffers(net, &nb);
  for (size_t i = 0; i < nb; i++)
    wkt_fill_f32(wk_net_buffer_data(net) + b[i].offset, (int64_t)b[i].numel, 40 + i, 0.3f, 1.2f);
  wk_net_weights_changed(net);
  wk_model_meta m;
  WKT_OK(wk_model_meta_init(&m, "smallcnn", 3, SIZE));
  m.pre.mean[0] = 0.25f;
  char *path = wkt_join(dir, "base.safetensors", NULL);
  WKT_OK(wk_model_save(path, net, &m, NULL, 0, NULL, 0));
  wk_model_meta_free(&m);
  wk_net_destroy(net);
  return path;
}

static float *wkt_dup(const float *p, size_t n) {
  float *d = malloc(n * sizeof *d);
  ck_assert_ptr_nonnull(d);
  memcpy(d, p, n * sizeof *d);
  return d;
}

START_TEST(test_new_head_keeps_body) {
  char *dir = wkt_tempdir();
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  char *path = wkt_base_model(ctx, dir);
  wk_net *base, *net;
  wk_model_meta bm, m;
  WKT_OK(wk_model_load(ctx, path, &base, &bm));
  WKT_OK(wk_finetune_from(ctx, path, 2, 0, 5, &net, &m));
  ck_assert_int_eq(wk_net_output_features(net), 2);
  ck_assert_int_eq(m.n_classes, 2);
  ck_assert_float_eq(m.pre.mean[0], 0.25f); /* the base model's normalisation */
  size_t np, nb;
  const wk_param *p = wk_net_params(net, &np);
  const wk_node *head = wk_net_node(net, wk_net_n_nodes(net) - 1);
  for (size_t i = 0; i < np; i++) {
    const int j = wk_net_find_param(base, p[i].name);
    ck_assert_int_ge(j, 0);
    const wk_param *q = &wk_net_params(base, &(size_t){0})[j];
    if ((int)i == head->param[0] || (int)i == head->param[1]) {
      ck_assert_int_ne(p[i].numel, q->numel); /* 2 outputs, not 3 */
      continue;
    }
    ck_assert_int_eq(p[i].numel, q->numel);
    ck_assert_msg(!memcmp(wk_net_weights(net) + p[i].offset, wk_net_weights(base) + q->offset,
                          p[i].numel * sizeof(float)), "%s changed", p[i].name);
  }
  const wk_param *b = wk_net_buffers(net, &nb);
  for (size_t i = 0; i < nb; i++) {
    const int j = wk_net_find_buffer(base, b[i].name);
    const wk_param *q = &wk_net_buffers(base, &(size_t){0})[j];
    ck_assert(!memcmp(wk_net_buffer_data(net) + b[i].offset,
                      wk_net_buffer_data(base) + q->offset, b[i].numel * sizeof(float)));
  }
  wk_net_destroy(net);
  wk_model_meta_free(&m);
  /* a different input size: the convolutional body fits any */
  WKT_OK(wk_finetune_from(ctx, path, 4, 40, 5, &net, &m));
  int h, w, c;
  wk_net_input_shape(net, &h, &w, &c);
  ck_assert_int_eq(h, 40);
  ck_assert_int_eq(m.pre.crop_px, 40);
  wk_net_destroy(net);
  wk_model_meta_free(&m);
  wk_net_destroy(base);
  wk_model_meta_free(&bm);
  free(path);
  wk_ctx_destroy(ctx);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

/* Phase 1: training steps change the head only; the body's weights and its
 * batchnorm running statistics stay bit for bit, and a training forward
 * equals an evaluation forward (the frozen batchnorms use running stats). */
START_TEST(test_frozen_body_is_untouched) {
  char *dir = wkt_tempdir();
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  char *path = wkt_base_model(ctx, dir);
  wk_net *net;
  wk_model_meta m;
  WKT_OK(wk_finetune_from(ctx, path, 2, 0, 5, &net, &m));
  wk_finetune_freeze_body(net);
  const size_t ne = wk_net_n_elems(net), nbe = wk_net_n_buffer_elems(net);
  float *w0 = wkt_dup(wk_net_weights(net), ne), *b0 = wkt_dup(wk_net_buffer_data(net), nbe);

  const int64_t xs[4] = {BATCH, SIZE, SIZE, 3}, ls[1] = {BATCH};
  wk_tensor x = wkt_tensor(WK_F32, 4, xs), y = wkt_tensor(WK_I32, 1, ls);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), 9, -1.0f, 1.0f);
  for (int i = 0; i < BATCH; i++) ((int32_t *)y.data)[i] = i % 2;
  wk_tensor out;
  WKT_OK(wk_net_forward(net, &x, false, &out));
  float *eval = wkt_dup(out.data, (size_t)wk_tensor_numel(&out));
  WKT_OK(wk_net_forward(net, &x, true, &out));
  ck_assert_msg(wkt_rel_err(out.data, eval, wk_tensor_numel(&out), 1e-6) < 1e-5,
                "a frozen body must run with its running statistics in training");

  wk_train_config tc = {.optim = wk_optim_config_default(WK_OPTIM_ADAMW), .seed = 1};
  tc.schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 1e-2, 10);
  wk_trainer *t;
  WKT_OK(wk_trainer_create(net, &tc, &t));
  for (int s = 0; s < 3; s++) {
    float loss;
    double lr;
    WKT_OK(wk_trainer_step(t, &x, &y, &loss, &lr));
  }
  ck_assert(!memcmp(b0, wk_net_buffer_data(net), nbe * sizeof(float)));
  size_t np;
  const wk_param *p = wk_net_params(net, &np);
  const wk_node *head = wk_net_node(net, wk_net_n_nodes(net) - 1);
  bool head_moved = false;
  for (size_t i = 0; i < np; i++) {
    const bool same = !memcmp(w0 + p[i].offset, wk_net_weights(net) + p[i].offset,
                              p[i].numel * sizeof(float));
    if ((int)i == head->param[0] || (int)i == head->param[1])
      head_moved |= !same;
    else
      ck_assert_msg(same, "frozen %s changed", p[i].name);
  }
  ck_assert(head_moved);

  /* Phase 2: everything trains, and the body's statistics move again */
  wk_finetune_unfreeze(net, 0.01);
  float loss;
  double lr;
  WKT_OK(wk_trainer_step(t, &x, &y, &loss, &lr));
  ck_assert(memcmp(b0, wk_net_buffer_data(net), nbe * sizeof(float)) != 0);
  ck_assert(memcmp(w0 + p[0].offset, wk_net_weights(net) + p[0].offset,
                   p[0].numel * sizeof(float)) != 0);
  wk_trainer_destroy(t);
  wk_tensor_free(&x);
  wk_tensor_free(&y);
  free(w0);
  free(b0);
  free(eval);
  wk_net_destroy(net);
  wk_model_meta_free(&m);
  free(path);
  wk_ctx_destroy(ctx);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

/* Discriminative rates: min_scale at the first layer, 1 at the head, never
 * decreasing in between; nothing frozen. */
START_TEST(test_discriminative_rates) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts o = wk_arch_opts_default(5);
  o.in_h = o.in_w = 32;
  wk_net *net;
  WKT_OK(wk_zoo_build(ctx, "resnet18", &o, 1, &net));
  wk_finetune_freeze_body(net);
  wk_finetune_unfreeze(net, 0.01);
  size_t np;
  const wk_param *p = wk_net_params(net, &np);
  float prev = 0.0f;
  for (int i = 0; i < wk_net_n_nodes(net); i++) {
    const wk_node *nd = wk_net_node(net, i);
    if (nd->param[0] < 0) continue;
    const wk_param *q = &p[nd->param[0]];
    ck_assert(!(q->flags & WK_PARAM_FROZEN));
    ck_assert_float_ge(q->lr_scale, prev);
    prev = q->lr_scale;
  }
  ck_assert_float_eq_tol(p[0].lr_scale, 0.01f, 1e-6f);
  ck_assert_float_eq_tol(prev, 1.0f, 1e-6f);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_refuses) {
  char *dir = wkt_tempdir();
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  wk_model_meta m;
  /* no linear head to replace: the network ends in a global pool */
  WKT_OK(wk_net_create(ctx, 8, 8, 3, &net));
  const wk_conv2d_params cp = wk_conv2d_params_make(1, 1, 1);
  int v = wk_net_conv(net, "conv", 0, 4, 3, 3, &cp, true);
  wk_net_global_avgpool(net, "pool", v);
  WKT_OK(wk_net_finalize(net, 1));
  WKT_OK(wk_model_meta_init(&m, "custom", 4, 8));
  char *path = wkt_join(dir, "nohead.safetensors", NULL);
  WKT_OK(wk_model_save(path, net, &m, NULL, 0, NULL, 0));
  wk_net_destroy(net);
  wk_model_meta_free(&m);
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_finetune_from(ctx, path, 2, 0, 1, &net, &m));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "not a linear"));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), path));
  /* a missing file, and a class count out of range */
  char *missing = wkt_join(dir, "missing.safetensors", NULL);
  ck_assert_int_ne(wk_finetune_from(ctx, missing, 2, 0, 1, &net, &m), WK_OK);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "missing.safetensors"));
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_finetune_from(ctx, path, 1, 0, 1, &net, &m));
  free(missing);
  free(path);
  wk_ctx_destroy(ctx);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("finetune");
  TCase *tc = tcase_create("finetune");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_new_head_keeps_body);
  tcase_add_test(tc, test_frozen_body_is_untouched);
  tcase_add_test(tc, test_discriminative_rates);
  tcase_add_test(tc, test_refuses);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
