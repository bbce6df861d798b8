/* test_onnx_ort.c - whisker's ONNX export run in ONNX Runtime (onnxruntime-node,
 * pinned in tools/ort/package.json) gives whisker's logits within 1e-4
 * (max |a - ref| / max |ref|), for the zoo's architectures, a net with every
 * node kind (tests/onnx_nets.h) and the imported int8 MobileNetV2, at batch 2
 * (the exported batch is dynamic). tools/ort/run.js does the ONNX Runtime
 * side. Exits 77 (skip) when node or tools/ort/node_modules is missing
 * (scripts/setup.sh installs it). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx.h"
#include "onnx_nets.h"
#include "test_util.h"

static char wkt_tmp[256];

/* Exports net (px x px inputs), runs it in ONNX Runtime at batch 2. */
static void wkt_ort(wk_ctx *ctx, wk_net *net, const char *arch, int px) {
  const int classes = (int)wk_net_output_features(net), n = 2;
  char model[512], in[512], out[512], cmd[2048];
  snprintf(model, sizeof model, "%s/%s.onnx", wkt_tmp, arch);
  snprintf(in, sizeof in, "%s/%s.in", wkt_tmp, arch);
  snprintf(out, sizeof out, "%s/%s.out", wkt_tmp, arch);
  WKT_OK(wk_onnx_export(model, net, NULL));
  float *nchw;
  wk_tensor x = wkt_onnx_batch(n, px, 9, &nchw), y;
  FILE *f = fopen(in, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fwrite(nchw, sizeof(float), (size_t)(n * 3 * px * px), f),
                   (size_t)(n * 3 * px * px));
  ck_assert_int_eq(fclose(f), 0);
  snprintf(cmd, sizeof cmd, "node %s/tools/ort/run.js %s %s %d,3,%d,%d %s", wkt_source_dir(),
           model, in, n, px, px, out);
  ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
  size_t n_bytes;
  float *ort = (float *)wkt_read_file(out, &n_bytes);
  ck_assert_uint_eq(n_bytes, (size_t)(n * classes) * sizeof(float));
  WKT_OK(wk_net_forward(net, &x, false, &y));
  const double e = wkt_rel_err(ort, y.data, n * classes, 1e-6);
  printf("%s: ONNX Runtime vs whisker, relative error %.3g\n", arch, e);
  ck_assert_msg(e <= 1e-4, "%s: relative error %g > 1e-4", arch, e);
  free(ort);
  free(nchw);
  wk_tensor_free(&x);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}

START_TEST(test_ort_matches_whisker) {
  const char *arch = wkt_onnx_archs[_i];
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wkt_ort(ctx, wkt_onnx_net(ctx, arch, wkt_onnx_px(arch), 5, 21), arch, wkt_onnx_px(arch));
}
END_TEST

/* An imported graph exported again: the ONNX Model Zoo's int8 MobileNetV2,
 * dequantized, as a float graph. */
START_TEST(test_ort_imported_int8) {
  const char *env = getenv("WHISKER_DATA");
  char path[4200];
  if (env && *env)
    snprintf(path, sizeof path, "%s/pretrained/mobilenetv2-12-int8.onnx", env);
  else
    snprintf(path, sizeof path, "%s/../shared/data/pretrained/mobilenetv2-12-int8.onnx",
             wkt_source_dir());
  if (access(path, R_OK) != 0) {
    printf("%s missing: imported-graph check left out\n", path);
    return;
  }
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net;
  wk_model_meta meta;
  WKT_OK(wk_onnx_import(ctx, path, &net, &meta));
  wk_model_meta_free(&meta);
  wkt_ort(ctx, net, "imported-mobilenetv2-int8", 224);
}
END_TEST

int main(void) {
  char path[4200];
  struct stat st;
  snprintf(path, sizeof path, "%s/tools/ort/node_modules/onnxruntime-node", wkt_source_dir());
  if (system("node --version >/dev/null 2>&1") != 0 || stat(path, &st) != 0) {
    fprintf(stderr, "test_onnx_ort: node or %s missing (npm ci --prefix tools/ort): skipped\n",
            path);
    return 77;
  }
  snprintf(wkt_tmp, sizeof wkt_tmp, "/tmp/wk_onnx_ort_%d", (int)getpid());
  if (mkdir(wkt_tmp, 0700) != 0) return 1;
  wk_log_set_level(WK_LOG_ERROR);
  Suite *s = suite_create("onnx_ort");
  TCase *tc = tcase_create("onnx_ort");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_ort_matches_whisker, 0, WKT_ONNX_N_ARCHS);
  tcase_add_test(tc, test_ort_imported_int8);
  suite_add_tcase(s, tc);
  int rc = wkt_run_suite(s);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", wkt_tmp);
  if (system(cmd) != 0) fprintf(stderr, "test_onnx_ort: could not remove %s\n", wkt_tmp);
  return rc;
}
