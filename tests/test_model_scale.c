/* test_model_scale.c - loading and building a network scale with its size:
 * counted, not timed. A model file may hold WK_MODEL_MAX_NODES (100,000)
 * nodes and as many classes; work that grows with the square of either made
 * `whisker info` take minutes on one.
 *
 * The suite is linked with -Wl,--wrap=cJSON_GetArrayItem,--wrap=strcmp
 * (tests/CMakeLists.txt), so every call from whisker's code comes through the
 * counters below:
 *   - cJSON arrays are linked lists and cJSON_GetArrayItem(a, i) walks i links
 *     from the head, so the indices asked for add up to the links walked: an
 *     array read item by item costs the square of its length;
 *   - name checks and lookups count their strcmp calls: n log n when sorted
 *     and bisected, n^2 / 2 when every pair is compared.
 * The bounds sit far from both sides: a few times what the linear (or
 * n log n) code needs, a small fraction of what the quadratic code did.
 *
 * The fusion plan (nn/exec_plan.c) calls nothing a wrapper could count: its
 * work is the instructions finalize retires, from the CPU's counter where the
 * kernel gives one (perf_event_open), compared between a graph and one 8 times
 * larger. Its answers are checked on long graphs where one has to travel the
 * whole graph (its equivalence with the per-node scans it replaced was checked
 * on the zoo and random graphs when it changed). */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modelio/model.h"
#include "nn/net_impl.h"
#include "onnx/onnx.h"
#include "ops/plan.h"
#include "test_fs.h"
#include "test_insn.h"
#include "test_util.h"
#include "train/finetune.h"

/* ------------------------------------------------------------------ counters */

cJSON *__real_cJSON_GetArrayItem(const cJSON *array, int index);
cJSON *__wrap_cJSON_GetArrayItem(const cJSON *array, int index);
int __real_strcmp(const char *a, const char *b);
int __wrap_strcmp(const char *a, const char *b);

static long long wkt_links, wkt_strcmps;

cJSON *__wrap_cJSON_GetArrayItem(const cJSON *array, int index) {
  if (index > 0) wkt_links += index;
  return __real_cJSON_GetArrayItem(array, index);
}

int __wrap_strcmp(const char *a, const char *b) {
  wkt_strcmps++;
  return __real_strcmp(a, b);
}

static void wkt_count_reset(void) { wkt_links = wkt_strcmps = 0; }

/* The graph sizes the work is counted on (wkt_expect_linear). */
static const int wkt_scale_nodes[2] = {2000, 16000};

/* ------------------------------------------------------------------ fixtures */

/* A network of about n_nodes nodes on a 2x2x3 input: ResNet's basic blocks
 * with a 3x3 and a 1x1 conv (conv, batchnorm, relu, conv, batchnorm, add of
 * the block's input, relu: the fusions' whole repertoire, folding, the add
 * into the shortcut, nChw16c layouts), then a global pool and a linear layer
 * of `classes` outputs. Not finalized. */
#define WKT_BLOCK 7
static wk_net *wkt_chain(wk_ctx *ctx, int n_nodes, int classes) {
  wk_net *net;
  WKT_OK(wk_net_create(ctx, 2, 2, 3, &net));
  const wk_conv2d_params cp[2] = {
      {.stride_h = 1, .stride_w = 1, .pad_top = 1, .pad_left = 1, .pad_bottom = 1,
       .pad_right = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1},
      {.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1}};
  char name[64];
  int v = 0;
  for (int b = 0; wk_net_n_nodes(net) + WKT_BLOCK + 2 <= n_nodes; b++) {
    int c = v;
    for (int k = 1; k <= 2; k++) {
      snprintf(name, sizeof name, "layer.%d.conv%d", b, k);
      c = wk_net_conv(net, name, c, 3, k == 1 ? 3 : 1, k == 1 ? 3 : 1, &cp[k - 1], false);
      snprintf(name, sizeof name, "layer.%d.bn%d", b, k);
      c = wk_net_batchnorm(net, name, c, 1e-5f, 0.1f);
      snprintf(name, sizeof name, "layer.%d.relu%d", b, k);
      if (k == 2) {
        c = wk_net_add(net, name, c, v);
        snprintf(name, sizeof name, "layer.%d.relu", b);
      }
      c = wk_net_act(net, name, c, WK_ACT_RELU);
    }
    v = c;
  }
  v = wk_net_global_avgpool(net, "pool", v);
  ck_assert_int_gt(wk_net_linear(net, "fc", v, classes, true), 0);
  return net;
}

/* c * n * log2(n): the budget of sorting and bisecting n names. */
static long long wkt_nlogn(long long c, long long n) {
  return (long long)(c * n * ceil(log2((double)(n > 2 ? n : 2))));
}

/* ------------------------------------------------------------------ loading */

/* Loading a model of n nodes and k classes reads whisker.arch's node list and
 * whisker.classes along the lists (two small arrays per node are read by
 * index, a handful of links each), and checks its ~0.85 n parameter names
 * in n log n comparisons. */
START_TEST(test_load_reads_each_array_once) {
  const int n = 6000, k = 6000;
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_chain(ctx, n, k), *back;
  WKT_OK(wk_net_finalize(net, 1));
  wk_model_meta meta, got;
  WKT_OK(wk_model_meta_init(&meta, "custom", k, 2));
  for (int i = 0; i < k; i++) {
    char name[32];
    snprintf(name, sizeof name, "class %d", i);
    WKT_OK(wk_model_meta_set_class(&meta, i, name));
  }
  char *dir = wkt_tempdir(), *path = wkt_join(dir, "chain.safetensors", NULL);
  WKT_OK(wk_model_save(path, net, &meta, NULL, 0, NULL, 0));
  size_t np;
  wk_net_params(net, &np);
  wkt_count_reset();
  WKT_OK(wk_model_load(ctx, path, &back, &got));
  /* the quadratic reading walked n^2 / 2 + k^2 / 2 = 36,000,000 links */
  ck_assert_msg(wkt_links <= 16LL * (n + k), "%lld links walked for %d nodes and %d classes",
                wkt_links, n, k);
  /* the file's ~2 n tensors sorted and each found twice (safetensors), the
   * names checked at finalize: ~600,000 calls; the pairwise check alone
   * compared np^2 / 2 = 13,000,000 pairs */
  ck_assert_msg(wkt_strcmps <= wkt_nlogn(16, (long long)np + n),
                "%lld strcmp calls loading %zu parameters", wkt_strcmps, np);
  ck_assert_int_eq(wk_net_n_nodes(back), wk_net_n_nodes(net));
  ck_assert_str_eq(got.class_names[k - 1], "class 5999");
  wk_model_meta_free(&got);
  wk_net_destroy(back);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wkt_rmtree(dir);
  free(path);
  free(dir);
  wk_ctx_destroy(ctx);
}
END_TEST

/* An ONNX file written by whisker keeps the class names as JSON
 * (whisker.classes); importing reads them along the list. */
START_TEST(test_import_reads_class_names_once) {
  const int k = 8000;
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_chain(ctx, 30, k), *back;
  WKT_OK(wk_net_finalize(net, 1));
  wk_model_meta meta, got;
  WKT_OK(wk_model_meta_init(&meta, "custom", k, 2));
  WKT_OK(wk_model_meta_set_class(&meta, k - 1, "the last"));
  char *dir = wkt_tempdir(), *path = wkt_join(dir, "chain.onnx", NULL);
  WKT_OK(wk_onnx_export(path, net, &meta));
  wkt_count_reset();
  WKT_OK(wk_onnx_import(ctx, path, &back, &got));
  ck_assert_msg(wkt_links <= 16LL * k, "%lld links walked for %d class names", wkt_links, k);
  ck_assert_str_eq(got.class_names[k - 1], "the last");
  ck_assert_str_eq(got.class_names[0], "0");
  wk_model_meta_free(&got);
  wk_net_destroy(back);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wkt_rmtree(dir);
  free(path);
  free(dir);
  wk_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------ names */

/* Finalize refuses two parameters of one name by sorting the names, and
 * lookups by name bisect that order once the network is finalized. */
START_TEST(test_names_sorted_not_paired) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_chain(ctx, 20000, 10);
  size_t np, nb;
  (void)wk_net_params(net, &np); /* the counts; the tables are read after finalize */
  (void)wk_net_buffers(net, &nb);
  wkt_count_reset();
  WKT_OK(wk_net_finalize_empty(net));
  /* ~250,000 sorting; comparing every pair made np^2 / 2 = 147,000,000 */
  ck_assert_msg(wkt_strcmps <= wkt_nlogn(4, (long long)(np + nb)),
                "%lld strcmp calls to check %zu parameter names", wkt_strcmps, np);
  const wk_param *p = wk_net_params(net, &np);
  const wk_param *b = wk_net_buffers(net, &nb);
  wkt_count_reset();
  for (size_t i = 0; i < np; i++) ck_assert_int_eq(wk_net_find_param(net, p[i].name), (int)i);
  for (size_t i = 0; i < nb; i++) ck_assert_int_eq(wk_net_find_buffer(net, b[i].name), (int)i);
  /* ~15 each by bisection; a scan per name made (np^2 + nb^2) / 2 */
  ck_assert_msg(wkt_strcmps <= wkt_nlogn(4, (long long)(np + nb)),
                "%lld strcmp calls to find %zu names", wkt_strcmps, np + nb);
  ck_assert_int_eq(wk_net_find_param(net, "layer.0.conv1"), -1);
  ck_assert_int_eq(wk_net_find_param(net, ""), -1);
  ck_assert_int_eq(wk_net_find_param(net, "zzz"), -1);
  ck_assert_int_eq(wk_net_find_buffer(net, "layer.0.bn1.weight"), -1);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Lookups before finalize (a scan) and after (bisection) agree, and the
 * duplicate refused is the lowest-numbered parameter that has a namesake, as
 * when every pair was compared: x.weight (0 and 3) before y.weight (1, 2). */
START_TEST(test_duplicate_names_and_lookups) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  const wk_conv2d_params cp = {.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1,
                               .groups = 1};
  const char *names[] = {"x", "y", "y", "x"};
  wk_net *net;
  WKT_OK(wk_net_create(ctx, 2, 2, 3, &net));
  int v = 0;
  for (int i = 0; i < 4; i++) v = wk_net_conv(net, names[i], v, 3, 1, 1, &cp, false);
  v = wk_net_global_avgpool(net, "pool", v);
  wk_net_linear(net, "fc", v, 2, true);
  ck_assert_int_eq(wk_net_find_param(net, "y.weight"), 1);
  ck_assert_int_eq(wk_net_find_param(net, "fc.bias"), 5);
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_net_finalize(net, 1));
  ck_assert_str_eq(wk_last_error(), "network: two parameters named 'x.weight'");
  /* the same answers from the index a failed finalize leaves */
  ck_assert_int_eq(wk_net_find_param(net, "x.weight"), 0);
  ck_assert_int_eq(wk_net_find_param(net, "y.weight"), 1);
  ck_assert_int_eq(wk_net_find_param(net, "fc.bias"), 5);
  ck_assert_int_eq(wk_net_find_param(net, "w.weight"), -1);
  wk_net_destroy(net);

  /* unique names: every one found, before and after finalize */
  net = wkt_chain(ctx, 40, 3);
  size_t np, nb;
  const wk_param *p = wk_net_params(net, &np);
  const wk_param *b = wk_net_buffers(net, &nb);
  for (size_t i = 0; i < np; i++) ck_assert_int_eq(wk_net_find_param(net, p[i].name), (int)i);
  for (size_t i = 0; i < nb; i++) ck_assert_int_eq(wk_net_find_buffer(net, b[i].name), (int)i);
  WKT_OK(wk_net_finalize(net, 1));
  p = wk_net_params(net, &np);
  b = wk_net_buffers(net, &nb);
  for (size_t i = 0; i < np; i++) ck_assert_int_eq(wk_net_find_param(net, p[i].name), (int)i);
  for (size_t i = 0; i < nb; i++) ck_assert_int_eq(wk_net_find_buffer(net, b[i].name), (int)i);
  ck_assert_int_eq(wk_net_find_buffer(net, "layer.0.bn1.running_var"), 1);
  ck_assert_int_eq(wk_net_find_buffer(net, "layer.0.bn1.running"), -1);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------ planning */

/* Evaluation layouts on a long chain: a 1x1 conv's output is a candidate for
 * nChw16c, and a chain of poolings and activations keeps its input's layout.
 * Ending in a flatten (which reads NHWC only) drops the whole chain back to the
 * conv; ending in a 1x1 conv keeps it blocked. The drop travels back one node
 * per pass of a loop repeated to a fixpoint; the sets of a union-find carry
 * it at once. */
static wk_net *wkt_pool_chain(wk_ctx *ctx, int len, bool flatten) {
  wk_net *net;
  WKT_OK(wk_net_create(ctx, 4, 4, 16, &net));
  const wk_conv2d_params cp = {.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1,
                               .groups = 1};
  const wk_pool2d_params pp = {.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1,
                               .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1};
  char name[32];
  int v = wk_net_conv(net, "head", 0, 16, 1, 1, &cp, false);
  for (int i = 0; i < len; i++) {
    snprintf(name, sizeof name, "pool%d", i);
    v = i % 3 == 2 ? wk_net_avgpool(net, name, v, &pp) : wk_net_maxpool(net, name, v, &pp);
  }
  if (!flatten) v = wk_net_conv(net, "tail", v, 16, 1, 1, &cp, false);
  v = flatten ? wk_net_flatten(net, "flat", v) : wk_net_global_avgpool(net, "gap", v);
  ck_assert_int_gt(wk_net_linear(net, "fc", v, 2, true), 0);
  return net;
}

START_TEST(test_blocked_layout_travels_the_chain) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  const int len = 3000;
  for (int flatten = 0; flatten < 2; flatten++) {
    wk_net *net = wkt_pool_chain(ctx, len, flatten);
    WKT_OK(wk_net_finalize(net, 1));
    /* nChw16c only where oneDNN's kernels take it (AVX-512) */
    const bool blk = !flatten && wk_conv2d_blocked_native();
    for (int v = 1; v <= len + 1; v++)
      ck_assert_msg(net->blk_eval[net->alias_eval[v]] == blk, "value %d: %s", v,
                    blk ? "not blocked" : "blocked");
    ck_assert(!net->blk_eval[net->alias_eval[0]]);
    ck_assert(!net->blk_eval[net->alias_eval[wk_net_n_nodes(net)]]);
    /* and it runs: the layouts are consistent */
    const int64_t shape[4] = {2, 4, 4, 16};
    wk_tensor x = wkt_tensor(WK_F32, 4, shape), y;
    wkt_fill_f32(x.data, wk_tensor_numel(&x), 3, -1.0f, 1.0f);
    WKT_OK(wk_net_forward(net, &x, false, &y));
    ck_assert(isfinite(((const float *)y.data)[0]));
    wk_tensor_free(&x);
    wk_net_destroy(net);
  }
  wk_ctx_destroy(ctx);
}
END_TEST

/* The residual adds of a long chain: each block's second conv (its batchnorm
 * folded) adds into the block's input, which nothing reads after the add, and
 * the relu after the add runs inside it; the first block's input is the
 * network's, never overwritten. Each answer came from a scan from the conv to
 * the end of the graph. */
START_TEST(test_residual_fusion_on_a_long_chain) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_chain(ctx, 7000, 2);
  WKT_OK(wk_net_finalize(net, 1));
  const int n_blocks = (wk_net_n_nodes(net) - 2) / WKT_BLOCK;
  ck_assert_int_eq(n_blocks, 999);
  for (int i = 0; i < n_blocks * WKT_BLOCK; i++) {
    const wk_node *nd = wk_net_node(net, i);
    if (nd->op != WK_NODE_CONV) continue;
    ck_assert_int_eq(net->fold_bn[i], i + 1);
    const bool second = i % WKT_BLOCK == 3;
    ck_assert_int_eq(net->fold_act[i], second ? -1 : i + 2);
    const bool fused = second && i > WKT_BLOCK;
    ck_assert_msg(net->sum_add[i] == (fused ? i + 2 : -1), "node %d: sum_add %d", i,
                  net->sum_add[i]);
    ck_assert_int_eq(net->sum_act[i], fused ? i + 3 : -1);
  }
  wk_net_destroy(net);

  /* every add reads the input of the whole chain (x, value 1): read again by
   * the next add, it may not be overwritten but by the last conv */
  WKT_OK(wk_net_create(ctx, 2, 2, 3, &net));
  const wk_conv2d_params cp = {.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1,
                               .groups = 1};
  char name[32];
  const int x = wk_net_conv(net, "stem", 0, 3, 1, 1, &cp, false);
  int v = x;
  for (int b = 0; b < 1000; b++) {
    snprintf(name, sizeof name, "c%d", b);
    const int c = wk_net_conv(net, name, v, 3, 1, 1, &cp, false);
    snprintf(name, sizeof name, "a%d", b);
    v = wk_net_add(net, name, c, x);
  }
  wk_net_linear(net, "fc", wk_net_global_avgpool(net, "pool", v), 2, true);
  WKT_OK(wk_net_finalize(net, 1));
  const int last = wk_net_n_nodes(net) - 4; /* c999, then a999, pool, fc */
  for (int i = 0; i < last; i++)
    ck_assert_msg(net->sum_add[i] < 0, "node %d adds into a shortcut read later", i);
  ck_assert_int_eq(net->sum_add[last], last + 1);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Finalize (the name check, the layouts, the fusion plan: every model load
 * runs it) on 8 times the nodes costs about 8 times the instructions, not 64,
 * on the residual chain and on the pooling chain whose layout travels back.
 * Counted on the CPU's instruction counter where there is one: the planning
 * loops call nothing a wrapper could count. */
START_TEST(test_finalize_work_grows_linearly) {
  const int fd = wkt_insn_open_for("test_finalize_work_grows_linearly");
  if (fd < 0) return;
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  for (int pools = 0; pools < 2; pools++) {
    long long insn[2];
    for (int k = 0; k < 2; k++) {
      const int n = wkt_scale_nodes[k];
      wk_net *net = pools ? wkt_pool_chain(ctx, n, true) : wkt_chain(ctx, n, 10);
      wkt_insn_start(fd);
      WKT_OK(wk_net_finalize_empty(net));
      insn[k] = wkt_insn_stop(fd);
      wk_net_destroy(net);
    }
    if (!wkt_expect_linear("test_finalize_work_grows_linearly",
                           pools ? "finalize, pooling chain" : "finalize, residual chain",
                           wkt_scale_nodes, insn))
      break;
  }
  close(fd);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Fine-tuning's freezing of the body and unfreezing: once per call, not a
 * re-derivation of the graph per node. */
START_TEST(test_freezing_work_grows_linearly) {
  const int fd = wkt_insn_open_for("test_freezing_work_grows_linearly");
  if (fd < 0) return;
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  long long insn[2];
  for (int k = 0; k < 2; k++) {
    wk_net *net = wkt_chain(ctx, wkt_scale_nodes[k], 10);
    WKT_OK(wk_net_finalize_empty(net));
    wkt_insn_start(fd);
    wk_finetune_freeze_body(net);
    wk_finetune_unfreeze(net, 0.01);
    insn[k] = wkt_insn_stop(fd);
    wk_net_destroy(net);
  }
  close(fd);
  wkt_expect_linear("test_freezing_work_grows_linearly", "freezing", wkt_scale_nodes, insn);
  wk_ctx_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("model_scale");
  TCase *tc = tcase_create("model_scale");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_load_reads_each_array_once);
  tcase_add_test(tc, test_import_reads_class_names_once);
  tcase_add_test(tc, test_names_sorted_not_paired);
  tcase_add_test(tc, test_duplicate_names_and_lookups);
  tcase_add_test(tc, test_blocked_layout_travels_the_chain);
  tcase_add_test(tc, test_residual_fusion_on_a_long_chain);
  tcase_add_test(tc, test_finalize_work_grows_linearly);
  tcase_add_test(tc, test_freezing_work_grows_linearly);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
