/* test_onnx.c - ONNX import against the graphs' own reference outputs.
 *
 * - The ONNX Model Zoo's int8 MobileNetV2 ($WHISKER_DATA/pretrained): imported
 *   by dequantizing, it must give the reference top-1 class on the 5 reference
 *   inputs (the references come from the int8 graph, so logits agree only
 *   roughly; the largest relative error is printed).
 * - Float graphs from scripts/export_resnet18_onnx.py (Debian's torch, random
 *   weights): torchvision resnet18, mobilenet_v2 with BatchNormalization nodes,
 *   a small net with the remaining ops and a hand-written graph with Gemm's
 *   options must match PyTorch's logits within 1e-4 (max |a - ref| /
 *   max |ref|); a graph with a Sigmoid is refused naming the node.
 * - Truncated, corrupt and empty files fail cleanly.
 * Parts whose inputs are missing (no shared data, no torch) are left out; with
 * neither the suite exits 77 (skip). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx.h"
#include "test_util.h"

static char wkt_pre[4096];  /* $WHISKER_DATA/pretrained */
static char wkt_fx[300];    /* the torch-generated fixtures */
static char wkt_tmp[256];   /* scratch files */

/* An ONNX test tensor [1, C, H, W] as an NHWC tensor, or [1, K] as is. */
static wk_tensor wkt_read_pb(const char *path) {
  float *d;
  int64_t dims[WK_ONNX_MAX_DIMS];
  int nd;
  WKT_OK(wk_onnx_read_tensor_file(path, &d, dims, &nd));
  if (nd == 2) {
    wk_tensor t = wkt_tensor(WK_F32, 2, dims);
    memcpy(t.data, d, (size_t)(dims[0] * dims[1]) * sizeof(float));
    free(d);
    return t;
  }
  ck_assert_int_eq(nd, 4);
  const int64_t n = dims[0], c = dims[1], h = dims[2], w = dims[3];
  const int64_t shape[4] = {n, h, w, c};
  wk_tensor t = wkt_tensor(WK_F32, 4, shape);
  float *o = t.data;
  for (int64_t b = 0; b < n; b++)
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t i = 0; i < h * w; i++) o[(b * h * w + i) * c + ch] = d[(b * c + ch) * h * w + i];
  free(d);
  return t;
}

static int64_t wkt_argmax(const float *x, int64_t n) {
  int64_t k = 0;
  for (int64_t i = 1; i < n; i++)
    if (x[i] > x[k]) k = i;
  return k;
}

START_TEST(test_int8_mobilenet_top1) {
  char path[4200];
  snprintf(path, sizeof path, "%s/mobilenetv2-12-int8.onnx", wkt_pre);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net;
  wk_model_meta meta;
  WKT_OK(wk_onnx_import(ctx, path, &net, &meta));
  ck_assert_int_eq(meta.n_classes, 1000);
  ck_assert_int_eq(meta.pre.crop_px, 224);
  ck_assert_int_eq(meta.pre.resize_px, 256);
  /* the digest pretrained/README.md gives for this file */
  ck_assert_ptr_nonnull(strstr(meta.provenance, "\"sha256\":\"cc028fe6cae7bc11a4ff53cfc9b79c920e8be65"
                                                "ce33a904ec3e2a8f66d77f95f\""));
  double worst = 0;
  for (int i = 0; i < 5; i++) {
    snprintf(path, sizeof path, "%s/mobilenetv2-12-int8_testdata/test_data_set_%d/input_0.pb",
             wkt_pre, i);
    wk_tensor x = wkt_read_pb(path);
    snprintf(path, sizeof path, "%s/mobilenetv2-12-int8_testdata/test_data_set_%d/output_0.pb",
             wkt_pre, i);
    wk_tensor ref = wkt_read_pb(path);
    wk_tensor y;
    WKT_OK(wk_net_forward(net, &x, false, &y));
    ck_assert_int_eq(wk_tensor_numel(&y), 1000);
    const float *r = ref.data;
    const int64_t top = wkt_argmax(y.data, 1000), rtop = wkt_argmax(r, 1000);
    /* the reference logits are multiples of 0.16: a tie for first place is possible */
    ck_assert_msg(r[top] == r[rtop], "set %d: whisker's top-1 %lld (%g), reference %lld (%g)", i,
                  (long long)top, (double)r[top], (long long)rtop, (double)r[rtop]);
    const double e = wkt_rel_err(y.data, r, 1000, 1e-6);
    printf("int8 mobilenetv2 set %d: top-1 %lld (reference %lld), logits relative error %.4f\n",
           i, (long long)top, (long long)rtop, e);
    worst = fmax(worst, e);
    wk_tensor_free(&x);
    wk_tensor_free(&ref);
  }
  printf("int8 mobilenetv2: 5/5 top-1 agree; max relative error of the logits %.4f\n", worst);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Imports fixture `name`, checks PyTorch's logits, saves it as a model file,
 * reloads it and checks the logits again (bit for bit). */
static void wkt_float_graph(const char *name, int classes) {
  char path[512], st[512];
  snprintf(path, sizeof path, "%s/%s.onnx", wkt_fx, name);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net, *back;
  wk_model_meta meta, meta2;
  WKT_OK(wk_onnx_import(ctx, path, &net, &meta));
  ck_assert_int_eq(meta.n_classes, classes);
  char last[24];
  snprintf(last, sizeof last, "class%d", classes - 1);
  ck_assert_str_eq(meta.class_names[classes - 1], last);
  snprintf(path, sizeof path, "%s/%s_input.pb", wkt_fx, name);
  wk_tensor x = wkt_read_pb(path);
  snprintf(path, sizeof path, "%s/%s_logits.pb", wkt_fx, name);
  wk_tensor ref = wkt_read_pb(path);
  wk_tensor y;
  WKT_OK(wk_net_forward(net, &x, false, &y));
  ck_assert_int_eq(wk_tensor_numel(&y), classes);
  const double e = wkt_rel_err(y.data, ref.data, classes, 1e-6);
  printf("float %s: relative error against PyTorch %.3g\n", name, e);
  ck_assert_msg(e <= 1e-4, "%s: relative error %g > 1e-4", name, e);
  float *first = malloc((size_t)classes * sizeof *first);
  memcpy(first, y.data, (size_t)classes * sizeof *first);
  snprintf(st, sizeof st, "%s/%s.safetensors", wkt_tmp, name);
  WKT_OK(wk_model_save(st, net, &meta, NULL, 0, NULL, 0));
  WKT_OK(wk_model_load(ctx, st, &back, &meta2));
  WKT_OK(wk_net_forward(back, &x, false, &y));
  ck_assert_msg(memcmp(first, y.data, (size_t)classes * sizeof *first) == 0,
                "%s: the saved model computes other logits", name);
  free(first);
  wk_tensor_free(&x);
  wk_tensor_free(&ref);
  wk_model_meta_free(&meta);
  wk_model_meta_free(&meta2);
  wk_net_destroy(net);
  wk_net_destroy(back);
  wk_ctx_destroy(ctx);
}

START_TEST(test_float_resnet18) { wkt_float_graph("resnet18", 1000); }
END_TEST
START_TEST(test_float_mobilenetv2_batchnorm) { wkt_float_graph("mobilenetv2", 10); }
END_TEST
START_TEST(test_float_small_ops) { wkt_float_graph("small", 10); }
END_TEST
START_TEST(test_float_gemm_variants) { wkt_float_graph("gemm", 4); }
END_TEST

START_TEST(test_unsupported_op_named) {
  char path[512];
  snprintf(path, sizeof path, "%s/unsupported.onnx", wkt_fx);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  wk_model_meta meta;
  WKT_FAILS(WK_ERR_UNSUPPORTED, wk_onnx_import(ctx, path, &net, &meta));
  ck_assert_ptr_null(net);
  ck_assert_msg(strstr(wk_last_error(), "'the_sigmoid' (Sigmoid)") != NULL, "message: %s",
                wk_last_error());
  wk_ctx_destroy(ctx);
}
END_TEST

static void wkt_write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fwrite(data, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

/* Every damaged file is refused with a message naming it; none crashes. */
static void wkt_expect_refused(wk_ctx *ctx, const char *path) {
  wk_net *net = (wk_net *)1;
  wk_model_meta meta;
  wk_clear_error();
  wk_status s = wk_onnx_import(ctx, path, &net, &meta);
  ck_assert_msg(s != WK_OK, "%s was accepted", path);
  ck_assert_ptr_null(net);
  ck_assert_msg(strstr(wk_last_error(), path) != NULL, "message does not name the file: %s",
                wk_last_error());
}

START_TEST(test_broken_files) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  char path[512];
  snprintf(path, sizeof path, "%s/broken.onnx", wkt_tmp);
  wkt_write(path, "", 0);
  wkt_expect_refused(ctx, path); /* an empty ModelProto: no graph */
  const char junk[] = "this is not a protobuf \xff\xff\xff\xff\xff\xff\xff";
  wkt_write(path, junk, sizeof junk);
  wkt_expect_refused(ctx, path);
  snprintf(path, sizeof path, "%s/missing.onnx", wkt_tmp);
  WKT_FAILS(WK_ERR_IO, wk_onnx_import(ctx, path, &(wk_net *){NULL}, &(wk_model_meta){0}));
  wk_ctx_destroy(ctx);
}
END_TEST

/* The zoo model cut at several lengths, and with bytes overwritten. */
START_TEST(test_truncated_model) {
  char path[4200], out[512];
  snprintf(path, sizeof path, "%s/mobilenetv2-12-int8.onnx", wkt_pre);
  size_t n;
  uint8_t *data = wkt_read_file(path, &n);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  snprintf(out, sizeof out, "%s/truncated.onnx", wkt_tmp);
  const double cuts[] = {0.0001, 0.01, 0.3, 0.5, 0.9, 0.9999};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    wkt_write(out, data, (size_t)(cuts[i] * (double)n));
    wkt_expect_refused(ctx, out);
  }
  ck_assert_msg(strstr(wk_last_error(), "does not parse") != NULL, "%s", wk_last_error());
  /* an overlong varint where the first field starts (bytes overwritten inside
   * tensor data would still parse: that is a valid file with other weights) */
  uint8_t *bad = malloc(n);
  memcpy(bad, data, n);
  memset(bad + 1, 0xff, 16);
  wkt_write(out, bad, n);
  wkt_expect_refused(ctx, out);
  free(bad);
  free(data);
  wk_ctx_destroy(ctx);
}
END_TEST

static bool wkt_is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int main(void) {
  const char *env = getenv("WHISKER_DATA");
  if (env && *env)
    snprintf(wkt_pre, sizeof wkt_pre, "%s/pretrained", env);
  else
    snprintf(wkt_pre, sizeof wkt_pre, "%s/../shared/data/pretrained", wkt_source_dir());
  const bool have_data = wkt_is_dir(wkt_pre);
  const char *py = getenv("WHISKER_PYTHON") ? getenv("WHISKER_PYTHON") : "/usr/bin/python3";
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s -c 'import torch, torchvision, onnx' 2>/dev/null", py);
  const bool have_torch = system(cmd) == 0;
  if (!have_data) fprintf(stderr, "test_onnx: %s not found: int8 tests left out\n", wkt_pre);
  if (!have_torch) fprintf(stderr, "test_onnx: %s lacks torch/onnx: float tests left out\n", py);
  snprintf(wkt_tmp, sizeof wkt_tmp, "/tmp/wk_onnx_%d", (int)getpid());
  snprintf(wkt_fx, sizeof wkt_fx, "%s/fixtures", wkt_tmp);
  if (mkdir(wkt_tmp, 0700) != 0) return 1;
  if (have_torch) {
    snprintf(cmd, sizeof cmd, "%s %s/scripts/export_resnet18_onnx.py %s >/dev/null 2>&1", py,
             wkt_source_dir(), wkt_fx);
    if (system(cmd) != 0) {
      fprintf(stderr, "test_onnx: %s failed\n", cmd);
      return 1;
    }
  }
  wk_log_set_level(WK_LOG_ERROR);
  Suite *s = suite_create("onnx");
  TCase *tc = tcase_create("onnx");
  tcase_set_timeout(tc, 240);
  tcase_add_test(tc, test_broken_files);
  if (have_data) {
    tcase_add_test(tc, test_int8_mobilenet_top1);
    tcase_add_test(tc, test_truncated_model);
  }
  if (have_torch) {
    tcase_add_test(tc, test_float_resnet18);
    tcase_add_test(tc, test_float_mobilenetv2_batchnorm);
    tcase_add_test(tc, test_float_small_ops);
    tcase_add_test(tc, test_float_gemm_variants);
    tcase_add_test(tc, test_unsupported_op_named);
  }
  suite_add_tcase(s, tc);
  int rc = 77;
  if (have_data || have_torch)
    rc = wkt_run_suite(s);
  else
    srunner_free(srunner_create(s)); /* frees the suite */
  snprintf(cmd, sizeof cmd, "rm -rf %s", wkt_tmp);
  if (system(cmd) != 0) fprintf(stderr, "test_onnx: could not remove %s\n", wkt_tmp);
  return rc;
}
