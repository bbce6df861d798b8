/* gen_seeds.c - writes the generated part of the fuzz seed corpus:
 *   OUT/fuzz_model/tiny.safetensors   a whole model (conv, batchnorm, relu,
 *                                     max pool, add, global pool, linear), 8x8 input
 *   OUT/fuzz_model/tiny_checkpoint.safetensors  a checkpoint of it (optimizer state)
 *   OUT/fuzz_arch/tiny.json           its whisker.arch JSON; smallcnn.json (zoo by name)
 *   OUT/fuzz_csv/NAME.csv              CSV lists: header, quoting, CRLF, bad rows
 * Run by fuzz/gen_corpus.sh; the output is committed, so this only needs
 * rerunning when the formats change.  usage: wk_fuzz_seeds OUT_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelio/model.h"
#include "train/trainer.h"

static int wk_write(const char *dir, const char *name, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
    fprintf(stderr, "wk_fuzz_seeds: cannot write %s\n", path);
    return 1;
  }
  return 0;
}

static wk_status wk_tiny_net(wk_ctx *ctx, wk_net **out) {
  wk_net *net;
  WK_TRY(wk_net_create(ctx, 8, 8, 3, &net));
  const wk_conv2d_params c3 = {.stride_h = 1, .stride_w = 1, .pad_top = 1, .pad_left = 1,
                               .pad_bottom = 1, .pad_right = 1, .dilation_h = 1,
                               .dilation_w = 1, .groups = 1};
  const wk_pool2d_params mp = {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
  int x = wk_net_conv(net, "conv1", 0, 4, 3, 3, &c3, false);
  x = wk_net_batchnorm(net, "bn1", x, 1e-5f, 0.1f);
  x = wk_net_act(net, "relu1", x, WK_ACT_RELU);
  x = wk_net_maxpool(net, "pool1", x, &mp);
  const wk_conv2d_params dw = {.stride_h = 1, .stride_w = 1, .pad_top = 1, .pad_left = 1,
                               .pad_bottom = 1, .pad_right = 1, .dilation_h = 1,
                               .dilation_w = 1, .groups = 4};
  int y = wk_net_conv(net, "conv2", x, 4, 3, 3, &dw, true);
  x = wk_net_add(net, "add", x, y);
  x = wk_net_global_avgpool(net, "gap", x);
  x = wk_net_linear(net, "fc", x, 2, true);
  wk_status s = x < 0 ? wk_net_build_error(net) : wk_net_finalize(net, 1);
  if (s != WK_OK) {
    wk_net_destroy(net);
    return s;
  }
  *out = net;
  return WK_OK;
}

/* A checkpoint of the tiny net after one SGD-momentum step: the model plus
 * the optimizer state and the "whisker.checkpoint" metadata. */
static wk_status wk_checkpoint_seed(wk_net *net, const wk_model_meta *meta, const char *out) {
  wk_train_config cfg = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                         .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 4),
                         .seed = 3};
  wk_trainer *t;
  WK_TRY(wk_trainer_create(net, &cfg, &t));
  const int64_t xs[4] = {2, 8, 8, 3}, ls[1] = {2};
  wk_tensor x, labels;
  wk_status s = wk_tensor_alloc(&x, WK_F32, 4, xs);
  if (s == WK_OK) s = wk_tensor_alloc(&labels, WK_I32, 1, ls);
  if (s == WK_OK) {
    float *px = x.data;
    for (int64_t i = 0; i < wk_tensor_numel(&x); i++) px[i] = (float)(i % 7) / 7.0f;
    ((int32_t *)labels.data)[0] = 0;
    ((int32_t *)labels.data)[1] = 1;
    float loss;
    double lr;
    s = wk_trainer_step(t, &x, &labels, &loss, &lr);
    wk_tensor_free(&x);
    wk_tensor_free(&labels);
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/fuzz_model/tiny_checkpoint.safetensors", out);
  const wk_data_pos pos = {.epoch = 1, .batch = 1};
  if (s == WK_OK) s = wk_checkpoint_save(path, t, meta, &pos);
  wk_trainer_destroy(t);
  return s;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: wk_fuzz_seeds OUT_DIR (with fuzz_model/ fuzz_arch/ fuzz_csv/)\n");
    return 2;
  }
  const char *out = argv[1];
  char dir[1024], path[1024];
  wk_ctx *ctx;
  wk_net *net = NULL;
  wk_model_meta meta;
  char *json = NULL;
  wk_status s = wk_ctx_create(&ctx, 1);
  if (s == WK_OK) s = wk_tiny_net(ctx, &net);
  if (s == WK_OK) s = wk_model_meta_init(&meta, "custom", 2, 8);
  if (s == WK_OK) s = wk_model_meta_set_class(&meta, 0, "cat");
  if (s == WK_OK) s = wk_model_meta_set_class(&meta, 1, "dog");
  if (s == WK_OK) s = wk_model_meta_set_provenance(&meta, "{\"epochs\": 1}");
  if (s == WK_OK) {
    snprintf(path, sizeof path, "%s/fuzz_model/tiny.safetensors", out);
    s = wk_model_save(path, net, &meta, NULL, 0, NULL, 0);
  }
  if (s == WK_OK) s = wk_checkpoint_seed(net, &meta, out);
  if (s == WK_OK) s = wk_arch_to_json(net, &meta, &json);
  if (s != WK_OK) {
    fprintf(stderr, "wk_fuzz_seeds: %s\n", wk_last_error());
    return 1;
  }
  int bad = 0;
  snprintf(dir, sizeof dir, "%s/fuzz_arch", out);
  bad |= wk_write(dir, "tiny.json", json);
  bad |= wk_write(dir, "smallcnn.json",
                  "{\"name\":\"smallcnn\",\"width\":1,\"num_classes\":3,\"input\":[32,32,3]}");
  snprintf(dir, sizeof dir, "%s/fuzz_csv", out);
  bad |= wk_write(dir, "plain.csv", "path,label\na.jpg,cat\nsub/b.png,dog\n/abs/c.jpg,cat\n");
  bad |= wk_write(dir, "quoted_crlf.csv",
                  "\xEF\xBB\xBF\"x,1.jpg\",\"say \"\"hi\"\"\"\r\n  b.jpg , dog \r\n\r\nc.jpg,cat");
  bad |= wk_write(dir, "numeric.csv", "0.jpg,10\n1.jpg,2\n2.jpg,0\n3.jpg,2\n");
  bad |= wk_write(dir, "bad_rows.csv",
                  "a.jpg\nb.jpg,cat,extra\n,cat\nc.jpg,\n\"d.jpg\"x,cat\ne\"f.jpg,dog\n"
                  "g.jpg,dog\n\"open,cat\n");
  free(json);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  return bad;
}
