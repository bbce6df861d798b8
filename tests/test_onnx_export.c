/* test_onnx_export.c - whisker export then import gives back the network:
 * the same nodes, names, parameters and logits (bit for bit), for the zoo's
 * architectures and a net with every node kind (tests/onnx_nets.h); a file
 * that cannot be written fails cleanly; randomly damaged exports never crash
 * the importer.
 * Import of small graphs written in C (tests/onnx_graph.h): hostile files
 * (deep nesting, memory and time amplification, sizes a model file cannot
 * hold) are refused naming the file and node, and constructs the importer
 * once mapped wrongly (a flatten's order through element-wise ops, folded
 * activations of QDQ graphs, attributes of the wrong type) import right or
 * are refused.
 * tests/test_onnx_ort.c runs the same exports in ONNX Runtime. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/sha256.h"
#include "core/utf8.h"
#include "onnx/onnx.h"
#include "onnx_graph.h"
#include "onnx_nets.h"
#include "test_util.h"

static void wkt_round_trip(const char *arch) {
  const int px = wkt_onnx_px(arch), classes = 7;
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 2);
  wk_net *net = wkt_onnx_net(ctx, arch, px, classes, 11), *back;
  char path[256];
  snprintf(path, sizeof path, "/tmp/wk_onnx_rt_%d_%s.onnx", (int)getpid(), arch);
  wk_model_meta meta;
  WKT_OK(wk_model_meta_init(&meta, arch, classes, px));
  WKT_OK(wk_model_meta_set_class(&meta, classes - 1, "the \"last\" class"));
  WKT_OK(wk_onnx_export(path, net, &meta));
  wk_model_meta_free(&meta);
  WKT_OK(wk_onnx_import(ctx, path, &back, &meta));
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(meta.n_classes, classes);
  ck_assert_str_eq(meta.class_names[0], "0");
  ck_assert_str_eq(meta.class_names[classes - 1], "the \"last\" class");
  /* the same graph, dropout aside (inference drops it) */
  int k = 0;
  for (int i = 0; i < wk_net_n_nodes(net); i++) {
    const wk_node *a = wk_net_node(net, i);
    if (a->op == WK_NODE_DROPOUT) continue;
    ck_assert_int_lt(k, wk_net_n_nodes(back));
    const wk_node *b = wk_net_node(back, k++);
    ck_assert_int_eq(a->op, b->op);
    ck_assert_str_eq(a->name, b->name);
    ck_assert_int_eq(a->out_ndim, b->out_ndim);
    ck_assert_mem_eq(a->out_shape, b->out_shape, sizeof a->out_shape);
  }
  ck_assert_int_eq(k, wk_net_n_nodes(back));
  size_t na, nb;
  const wk_param *pa = wk_net_params(net, &na), *pb = wk_net_params(back, &nb);
  ck_assert_uint_eq(na, nb);
  for (size_t i = 0; i < na; i++) {
    ck_assert_str_eq(pa[i].name, pb[i].name);
    ck_assert_uint_eq(pa[i].numel, pb[i].numel);
    ck_assert_mem_eq(wk_net_weights(net) + pa[i].offset, wk_net_weights(back) + pb[i].offset,
                     pa[i].numel * sizeof(float));
  }
  float *nchw;
  wk_tensor x = wkt_onnx_batch(2, px, 5, &nchw), y;
  WKT_OK(wk_net_forward(net, &x, false, &y));
  float *want = malloc(2 * classes * sizeof *want);
  memcpy(want, y.data, 2 * classes * sizeof *want);
  WKT_OK(wk_net_forward(back, &x, false, &y));
  ck_assert_mem_eq(want, y.data, 2 * classes * sizeof *want);
  free(want);
  free(nchw);
  wk_tensor_free(&x);
  wk_model_meta_free(&meta);
  wk_net_destroy(back);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}

START_TEST(test_round_trip) { wkt_round_trip(wkt_onnx_archs[_i]); }
END_TEST

START_TEST(test_unwritable) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_onnx_net(ctx, "custom", 20, 3, 1);
  WKT_FAILS(WK_ERR_IO, wk_onnx_export("/nonexistent-dir/x.onnx", net, NULL));
  ck_assert_msg(strstr(wk_last_error(), "/nonexistent-dir/x.onnx") != NULL, "%s",
                wk_last_error());
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Export takes any meta, not only one a loader checked: a class name the
 * importer would refuse was written, and the file then failed to import.
 * Refused now before anything is written, naming the file and the class; a
 * file already at the path stays as it was. */
START_TEST(test_export_class_names_checked) {
  char long_name[257];
  memset(long_name, 'a', 256);
  long_name[256] = '\0';
  const struct {
    const char *name, *want;
  } bad[] = {{"\xff", "class name 2 is not valid UTF-8 (byte 0)"},
             {"d\xc3", "class name 2 is not valid UTF-8 (byte 1)"},
             {"", "class name 2 is empty"},
             {long_name, "class name 2 is longer than 255 bytes"}};
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_onnx_net(ctx, "custom", 20, 3, 1);
  char dir[] = "/tmp/wk_onnx_classes_XXXXXX", path[64], want[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/x.onnx", dir);
  for (int k = 0; k < 2; k++) { /* k = 1: a file there already */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      wk_model_meta meta;
      WKT_OK(wk_model_meta_init(&meta, "custom", 3, 20));
      WKT_OK(wk_model_meta_set_class(&meta, 2, bad[i].name));
      WKT_FAILS(WK_ERR_FORMAT, wk_onnx_export(path, net, &meta));
      snprintf(want, sizeof want, "%s: %s", path, bad[i].want);
      ck_assert_str_eq(wk_last_error(), want);
      ck_assert_int_eq(wkt_count_entries(dir), k);
      if (k == 1) {
        size_t n;
        free(wkt_read_file(path, &n));
        ck_assert_uint_eq(n, 5);
      }
      wk_model_meta_free(&meta);
    }
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite("kept!", 1, 5, f), 5);
    ck_assert_int_eq(fclose(f), 0);
  }
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(rmdir(dir), 0);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* An exported file with bytes overwritten at random places, many times: each
 * import either succeeds or fails with a message; none crashes or hangs (the
 * file still parses often: most bytes are weights). */
START_TEST(test_mutated_files) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_onnx_net(ctx, "custom", 20, 3, 1);
  char path[256], bad[256];
  snprintf(path, sizeof path, "/tmp/wk_onnx_mut_%d.onnx", (int)getpid());
  snprintf(bad, sizeof bad, "/tmp/wk_onnx_mut_%d_bad.onnx", (int)getpid());
  WKT_OK(wk_onnx_export(path, net, NULL));
  size_t n;
  uint8_t *orig = wkt_read_file(path, &n), *buf = malloc(n);
  ck_assert_ptr_nonnull(buf);
  wk_rng rng = wk_rng_make(77, 0);
  int accepted = 0;
  for (int round = 0; round < 300; round++) {
    memcpy(buf, orig, n);
    const int flips = 1 + (int)(wk_rng_u32(&rng) % 4);
    for (int k = 0; k < flips; k++) {
      /* the graph structure sits after the weights: aim there half the time */
      const uint32_t r = wk_rng_u32(&rng);
      const size_t at = (r & 1) ? n - 1 - (r >> 1) % (n < 2048 ? n : 2048) : (r >> 1) % n;
      buf[at] = (uint8_t)wk_rng_u32(&rng);
    }
    FILE *f = fopen(bad, "wb");
    ck_assert_int_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    wk_net *back = NULL;
    wk_model_meta meta;
    wk_clear_error();
    if (wk_onnx_import(ctx, bad, &back, &meta) == WK_OK) {
      accepted++;
      wk_model_meta_free(&meta);
      wk_net_destroy(back);
    } else {
      ck_assert_ptr_null(back);
      ck_assert_msg(wk_last_error()[0] != '\0', "round %d: failed without a message", round);
    }
  }
  printf("mutated exports: %d of 300 still imported, the rest refused\n", accepted);
  unlink(path);
  unlink(bad);
  free(buf);
  free(orig);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* The digest recorded in an import's provenance, at the padding edges. */
START_TEST(test_sha256) {
  static const uint8_t zeros[64] = {0};
  char hex[65];
  wk_sha256_hex("", 0, hex);
  ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  wk_sha256_hex("abc", 3, hex);
  ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  wk_sha256_hex(zeros, 55, hex);
  ck_assert_str_eq(hex, "02779466cdec163811d078815c633f21901413081449002f24aa3e80f0b88ef7");
  wk_sha256_hex(zeros, 56, hex);
  ck_assert_str_eq(hex, "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb");
  wk_sha256_hex(zeros, 64, hex);
  ck_assert_str_eq(hex, "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b");
}
END_TEST

/* ------------------------------------------------------------------ import of graphs written in C */

/* Writes g to a scratch file (its path in path[256]) and imports it; *net is
 * NULL unless the status is WK_OK. */
static wk_status wkt_og_import(wkt_og *g, wk_ctx *ctx, wk_net **net, wk_model_meta *meta,
                               char path[256]) {
  snprintf(path, 256, "/tmp/wk_onnx_g_%d.onnx", (int)getpid());
  wkt_og_write(g, path);
  wk_clear_error();
  const wk_status s = wk_onnx_import(ctx, path, net, meta);
  unlink(path);
  if (s != WK_OK) ck_assert_ptr_null(*net);
  return s;
}

/* Imports g, which must succeed, into a network with a context of its own
 * (free with wkt_og_net_free). */
static wk_net *wkt_og_imported(wkt_og *g) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  wk_model_meta meta;
  char path[256];
  WKT_OK(wkt_og_import(g, ctx, &net, &meta, path));
  wk_model_meta_free(&meta);
  return net;
}

static void wkt_og_net_free(wk_net *net) {
  wk_ctx *ctx = wk_net_ctx(net);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}

/* Fails the test unless importing g fails with `code` and a message naming the
 * file and containing each of the `want` strings (NULL-terminated). */
static void wkt_og_refused(wkt_og *g, wk_status code, const char *const *want) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = (wk_net *)1;
  wk_model_meta meta;
  char path[256];
  const wk_status s = wkt_og_import(g, ctx, &net, &meta, path);
  ck_assert_msg(s == code, "got %s, expected %s: %s", wk_status_name(s), wk_status_name(code),
                wk_last_error());
  const char *msg = wk_last_error(), *at = strstr(msg, path);
  ck_assert_msg(at != NULL, "message does not name the file: %s", msg);
  ck_assert_msg(strstr(at + 1, path) == NULL, "message names the file twice: %s", msg);
  for (int i = 0; want[i]; i++)
    ck_assert_msg(strstr(msg, want[i]) != NULL, "message lacks '%s': %s", want[i], msg);
  wk_ctx_destroy(ctx);
}

#define WKT_REFUSED(g, code, ...) wkt_og_refused(g, code, (const char *const[]){__VA_ARGS__, NULL})

/* ModelProto { graph { node { attribute { g { node { attribute { g ... }}}}}}}
 * `depth` graphs deep: protobuf-c's unpack recursed once per level until the
 * stack overflowed (3000 levels, 30 KB, crashed whisker import). */
static void wkt_nested(int depth, wkt_pb *out) {
  wkt_pb g = {0};
  for (int i = 0; i < depth; i++) {
    wkt_pb attr = {0}, node = {0}, graph = {0};
    wkt_pb_msg(&attr, 6, &g);      /* AttributeProto.g */
    wkt_pb_msg(&node, 5, &attr);   /* NodeProto.attribute */
    wkt_pb_msg(&graph, 1, &node);  /* GraphProto.node */
    wkt_pb_free(&g), wkt_pb_free(&attr), wkt_pb_free(&node);
    g = graph;
  }
  memset(out, 0, sizeof *out);
  wkt_pb_msg(out, 7, &g); /* ModelProto.graph */
  wkt_pb_free(&g);
}

START_TEST(test_deep_nesting_refused) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  char path[256];
  snprintf(path, sizeof path, "/tmp/wk_onnx_deep_%d.onnx", (int)getpid());
  /* n levels put the innermost (empty) graph 3n + 1 messages deep: 21 is the
   * deepest the cap (64) lets through */
  const int depths[] = {3000, 21, 22};
  for (int i = 0; i < 3; i++) {
    wkt_pb m;
    wkt_nested(depths[i], &m);
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(m.data, 1, m.n, f), m.n);
    ck_assert_int_eq(fclose(f), 0);
    wkt_pb_free(&m);
    wk_net *net = (wk_net *)1;
    wk_model_meta meta;
    wk_clear_error();
    ck_assert_int_ne(wk_onnx_import(ctx, path, &net, &meta), WK_OK);
    ck_assert_ptr_null(net);
    ck_assert_msg(strstr(wk_last_error(), path) != NULL, "%s", wk_last_error());
    /* 21 levels parse, and the graph (no input) is refused after */
    const bool deep = strstr(wk_last_error(), "nested more than 64 deep") != NULL;
    ck_assert_msg(deep == (depths[i] > 21), "depth %d: %s", depths[i], wk_last_error());
  }
  unlink(path);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Flatten -> Gemm with W [out, 48] for the 3x4x4 input. */
static void wkt_og_flatten_gemm(wkt_og *g, int out) {
  float w[48 * 48];
  ck_assert_int_le(out, 48);
  wkt_fill_f32(w, 48 * out, 3, -1.0f, 1.0f);
  wkt_og_init(g, 3, 4, 4, out);
  wkt_og_node(g, "Flatten", "flat", "x", "f");
  wkt_og_node(g, "Gemm", "fc", "f,W", "y");
  wkt_og_floats(g, "W", 2, (const int64_t[]){out, 48}, w);
}

/* An attribute of another type than ONNX gives it (transB as FLOAT 1.0) was
 * taken as absent: the default (transB 0) read the weight transposed. */
START_TEST(test_attribute_type_refused) {
  wkt_og g;
  wkt_og_flatten_gemm(&g, 48);
  wkt_og_attr_float(&g, "transB", 1.0f);
  WKT_REFUSED(&g, WK_ERR_FORMAT, "node 'fc' (Gemm)", "attribute 'transB' is FLOAT, not INT");
  wkt_og_flatten_gemm(&g, 5);
  wkt_og_attr_int(&g, "transB", 1);
  wkt_og_attr_int(&g, "alpha", 2);
  WKT_REFUSED(&g, WK_ERR_FORMAT, "node 'fc' (Gemm)", "attribute 'alpha' is INT, not FLOAT");
  /* the right types import */
  wkt_og_flatten_gemm(&g, 5);
  wkt_og_attr_int(&g, "transB", 1);
  wkt_og_attr_float(&g, "alpha", 2.0f);
  wk_net *net = wkt_og_imported(&g);
  wkt_og_net_free(net);
}
END_TEST

/* The logits of one NCHW sample [c, h, w] through net (k of them). */
static void wkt_logits(wk_net *net, const float *nchw, int c, int h, int w, float *out, int k) {
  const int64_t shape[4] = {1, h, w, c};
  wk_tensor x = wkt_tensor(WK_F32, 4, shape), y;
  float *p = x.data;
  for (int ch = 0; ch < c; ch++)
    for (int i = 0; i < h * w; i++) p[i * c + ch] = nchw[ch * h * w + i];
  WKT_OK(wk_net_forward(net, &x, false, &y));
  ck_assert_int_eq(wk_tensor_numel(&y), k);
  memcpy(out, y.data, (size_t)k * sizeof *out);
  wk_tensor_free(&x);
}

/* An element-wise op between a Flatten of a 3x4x4 map and a Gemm: the
 * flatten's order (whisker flattens (H, W, C), ONNX (C, H, W)) must reach the
 * Gemm, whose weight columns are permuted for it. Relu, Clip and
 * BatchNormalization dropped it (logits off by 2.3 to 12.5). */
enum { WKT_EW_RELU, WKT_EW_CLIP, WKT_EW_BN, WKT_EW_ADD, WKT_EW_N };

static double wkt_ew_ref(int op, const float *x, int i, const float *bn[4]) {
  const double v = x[i];
  switch (op) {
  case WKT_EW_RELU: return v > 0 ? v : 0;
  case WKT_EW_CLIP: return v < 0 ? 0 : v > 6 ? 6 : v;
  case WKT_EW_BN: return bn[0][i] * (v - bn[2][i]) / sqrt(bn[3][i] + 1e-3) + bn[1][i];
  default: return v + (v > 0 ? v : 0);
  }
}

START_TEST(test_flatten_order_through_elementwise) {
  const int op = _i, k = 5;
  float x[48], w[5 * 48], b[5], bn[4][48];
  wkt_fill_f32(x, 48, 1, -3.0f, 9.0f); /* both sides of Clip's 0 and 6 */
  wkt_fill_f32(w, 5 * 48, 2, -1.0f, 1.0f);
  wkt_fill_f32(b, 5, 3, -1.0f, 1.0f);
  for (int j = 0; j < 4; j++) wkt_fill_f32(bn[j], 48, 4 + (uint64_t)j, 0.5f, 1.5f);
  const int64_t feat[1] = {48};
  wkt_og g;
  wkt_og_init(&g, 3, 4, 4, k);
  wkt_og_node(&g, "Flatten", "flat", "x", "f");
  switch (op) {
  case WKT_EW_RELU: wkt_og_node(&g, "Relu", "act", "f", "r"); break;
  case WKT_EW_CLIP:
    wkt_og_node(&g, "Clip", "act", "f,lo,hi", "r");
    wkt_og_scalar(&g, "lo", WKT_F32, 0);
    wkt_og_scalar(&g, "hi", WKT_F32, 6);
    break;
  case WKT_EW_BN:
    wkt_og_node(&g, "BatchNormalization", "bn", "f,gamma,beta,mean,var", "r");
    wkt_og_attr_float(&g, "epsilon", 1e-3f);
    wkt_og_floats(&g, "gamma", 1, feat, bn[0]);
    wkt_og_floats(&g, "beta", 1, feat, bn[1]);
    wkt_og_floats(&g, "mean", 1, feat, bn[2]);
    wkt_og_floats(&g, "var", 1, feat, bn[3]);
    break;
  default:
    wkt_og_node(&g, "Relu", "act", "f", "a");
    wkt_og_node(&g, "Add", "sum", "f,a", "r");
  }
  wkt_og_node(&g, "Gemm", "fc", "r,W,B", "y");
  wkt_og_attr_int(&g, "transB", 1);
  wkt_og_floats(&g, "W", 2, (const int64_t[]){k, 48}, w);
  wkt_og_floats(&g, "B", 1, (const int64_t[]){k}, b);
  wk_net *net = wkt_og_imported(&g);
  float got[5], want[5];
  wkt_logits(net, x, 3, 4, 4, got, k);
  const float *bnp[4] = {bn[0], bn[1], bn[2], bn[3]};
  for (int o = 0; o < k; o++) {
    double acc = b[o];
    for (int i = 0; i < 48; i++) acc += (double)w[o * 48 + i] * wkt_ew_ref(op, x, i, bnp);
    want[o] = (float)acc;
  }
  const double e = wkt_rel_err(got, want, k, 1e-6);
  ck_assert_msg(e < 1e-5, "op %d: relative error %g (logit 0: %g, want %g)", op, e, got[0],
                want[0]);
  wkt_og_net_free(net);
}
END_TEST

/* The sum of a flatten of a map (whisker's (H, W, C) order) and a tensor in
 * ONNX's own order (a Gemm's output) would add mismatched features. */
START_TEST(test_add_of_flatten_orders_refused) {
  float w[48 * 48];
  wkt_fill_f32(w, 48 * 48, 2, -1.0f, 1.0f);
  wkt_og g;
  wkt_og_init(&g, 3, 4, 4, 48);
  wkt_og_node(&g, "Flatten", "flat", "x", "f");
  wkt_og_node(&g, "Gemm", "fc", "f,W", "m");
  wkt_og_attr_int(&g, "transB", 1);
  wkt_og_node(&g, "Add", "sum", "f,m", "y");
  wkt_og_floats(&g, "W", 2, (const int64_t[]){48, 48}, w);
  WKT_REFUSED(&g, WK_ERR_UNSUPPORTED, "node 'sum' (Add)", "flattened in different orders");
}
END_TEST

static int wkt_cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* No two nodes of net share a name (sorted, neighbours compared). */
static void wkt_names_unique(const wk_net *net) {
  const int n = wk_net_n_nodes(net);
  const char **names = malloc((size_t)n * sizeof *names);
  ck_assert_ptr_nonnull(names);
  for (int i = 0; i < n; i++) names[i] = wk_net_node(net, i)->name;
  qsort(names, (size_t)n, sizeof *names, wkt_cmp_str);
  for (int i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0) ck_abort_msg("two nodes named '%s'", names[i]);
  free(names);
}

/* A quantized conv "a" whose ReLU6 is folded into its output range, after a
 * Clip node scoped "a.relu6": the restored ReLU6 was named "a.relu6" directly,
 * a second node of that name. */
START_TEST(test_folded_act_name_unique) {
  double wq[4 * 3 * 9];
  for (int i = 0; i < 4 * 3 * 9; i++) wq[i] = (i * 37) % 255 - 127;
  float fc[5 * 4];
  wkt_fill_f32(fc, 20, 9, -1.0f, 1.0f);
  wkt_og g;
  wkt_og_init(&g, 3, 4, 4, 5);
  wkt_og_node(&g, "Clip", "/a.relu6/Clip", "x,lo,hi", "c0");
  wkt_og_node(&g, "QuantizeLinear", NULL, "c0,s0,z0", "xq");
  wkt_og_node(&g, "QLinearConv", "conv", "xq,s0,z0,a.weight,ws,wz,s1,z1", "cq");
  wkt_og_attr_ints(&g, "pads", 4, (const int64_t[]){1, 1, 1, 1});
  wkt_og_node(&g, "DequantizeLinear", NULL, "cq,s1,z1", "cd");
  wkt_og_node(&g, "GlobalAveragePool", NULL, "cd", "p");
  wkt_og_node(&g, "Flatten", NULL, "p", "f");
  wkt_og_node(&g, "Gemm", "fc", "f,Wg", "y");
  wkt_og_attr_int(&g, "transB", 1);
  wkt_og_scalar(&g, "lo", WKT_F32, 0);
  wkt_og_scalar(&g, "hi", WKT_F32, 6);
  wkt_og_scalar(&g, "s0", WKT_F32, 0.03);
  wkt_og_scalar(&g, "z0", WKT_U8, 0);
  wkt_og_tensor(&g, "a.weight", WKT_I8, 4, (const int64_t[]){4, 3, 3, 3}, wq);
  wkt_og_scalar(&g, "ws", WKT_F32, 0.01);
  wkt_og_scalar(&g, "wz", WKT_I8, 0);
  wkt_og_scalar(&g, "s1", WKT_F32, 0.02); /* [0, 5.1]: a folded ReLU6 */
  wkt_og_scalar(&g, "z1", WKT_U8, 0);
  wkt_og_floats(&g, "Wg", 2, (const int64_t[]){5, 4}, fc);
  wk_net *net = wkt_og_imported(&g);
  ck_assert_int_eq(wk_net_n_nodes(net), 5); /* relu6, conv, relu6, pool, linear */
  ck_assert_str_eq(wk_net_node(net, 0)->name, "a.relu6");
  ck_assert_str_eq(wk_net_node(net, 1)->name, "a");
  ck_assert_int_eq(wk_net_node(net, 2)->act, WK_ACT_RELU6);
  wkt_names_unique(net);
  wkt_og_net_free(net);
}
END_TEST

/* Two ReLU6 nodes of one name (nothing in a network forbids it): the export
 * named both Clips' bounds "r6.clip_min", duplicate initializers that make the
 * file invalid ONNX. */
START_TEST(test_export_clip_names_unique) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  WKT_OK(wk_net_create(ctx, 4, 4, 3, &net));
  int x = wk_net_act(net, "r6", 0, WK_ACT_RELU6);
  x = wk_net_act(net, "r6", x, WK_ACT_RELU6);
  x = wk_net_global_avgpool(net, "pool", x);
  wk_net_linear(net, "fc", x, 2, true);
  WKT_OK(wk_net_finalize(net, 1));
  char path[256];
  snprintf(path, sizeof path, "/tmp/wk_onnx_clip_%d.onnx", (int)getpid());
  WKT_OK(wk_onnx_export(path, net, NULL));
  size_t n;
  uint8_t *data = wkt_read_file(path, &n);
  char names[16][128];
  const int k = wkt_onnx_initializer_names(data, n, names, 16);
  ck_assert_int_eq(k, 6); /* two Clips' bounds, fc.weight, fc.bias */
  for (int i = 0; i < k; i++)
    for (int j = 0; j < i; j++)
      ck_assert_msg(strcmp(names[i], names[j]) != 0, "initializer '%s' twice", names[i]);
  free(data);
  unlink(path);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* A QDQ graph (onnxruntime's default quantized format): x -> Q -> DQ -> 1x1
 * Conv (weight int8 -> DQ) [-> Relu] -> Q(s1, z1) -> DQ -> GlobalAveragePool
 * -> Flatten -> Gemm. The quantizer folds a Relu/Clip into the second Q's
 * range; whisker restored that only for QLinear ops, so these imported
 * without it. Case: {s1, z1, z1's type, explicit Relu, the activation
 * expected (-1 none)}. */
typedef struct wkt_qdq_case {
  double s1, z1;
  int z_type;
  bool relu_node;
  int want;
} wkt_qdq_case;

static const wkt_qdq_case wkt_qdq_cases[] = {
    {0.02, 0, WKT_U8, false, WK_ACT_RELU6},  /* [0, 5.1] */
    {0.05, 0, WKT_U8, false, WK_ACT_RELU},   /* [0, 12.75]: more than ReLU6 gives */
    {0.02, 10, WKT_U8, false, -1},           /* [-0.2, 4.9]: none */
    {0.02, -128, WKT_I8, false, WK_ACT_RELU6},
    {0.02, 0, WKT_U8, true, WK_ACT_RELU},    /* the quantizer kept the Relu: no second one */
};

static void wkt_qdq_graph(wkt_og *g, const wkt_qdq_case *c, const float *w, const float *fc,
                          int n_z, const double *z1) {
  double wq[12];
  for (int i = 0; i < 12; i++) wq[i] = w[i] * 100; /* weight scale 0.01 */
  wkt_og_init(g, 3, 4, 4, 5);
  wkt_og_node(g, "QuantizeLinear", "qx", "x,s0,z0", "xq");
  wkt_og_node(g, "DequantizeLinear", "dqx", "xq,s0,z0", "xd");
  wkt_og_node(g, "DequantizeLinear", "dqw", "wq,ws", "w");
  wkt_og_node(g, "Conv", "conv", "xd,w", c->relu_node ? "c0" : "c");
  if (c->relu_node) wkt_og_node(g, "Relu", "relu", "c0", "c");
  wkt_og_node(g, "QuantizeLinear", "qc", "c,s1,z1", "cq");
  wkt_og_node(g, "DequantizeLinear", "dqc", "cq,s1,z1", "cd");
  wkt_og_node(g, "GlobalAveragePool", "pool", "cd", "p");
  wkt_og_node(g, "Flatten", "flat", "p", "f");
  wkt_og_node(g, "Gemm", "fc", "f,Wg", "y");
  wkt_og_attr_int(g, "transB", 1);
  wkt_og_scalar(g, "s0", WKT_F32, 0.02);
  wkt_og_scalar(g, "z0", WKT_U8, 128);
  wkt_og_tensor(g, "wq", WKT_I8, 4, (const int64_t[]){4, 3, 1, 1}, wq);
  wkt_og_scalar(g, "ws", WKT_F32, 0.01);
  if (n_z == 1) {
    wkt_og_scalar(g, "s1", WKT_F32, c->s1);
    wkt_og_scalar(g, "z1", c->z_type, c->z1);
  } else {
    const double s1[4] = {c->s1, c->s1, c->s1, c->s1};
    wkt_og_tensor(g, "s1", WKT_F32, 1, (const int64_t[]){n_z}, s1);
    wkt_og_tensor(g, "z1", c->z_type, 1, (const int64_t[]){n_z}, z1);
  }
  wkt_og_floats(g, "Wg", 2, (const int64_t[]){5, 4}, fc);
}

static void wkt_qdq_check(const wkt_qdq_case *c, int n_z, const double *z1) {
  float x[48], w[12], fc[20];
  wkt_fill_f32(x, 48, 11, -2.0f, 2.0f);
  wkt_fill_f32(w, 12, 12, -1.0f, 1.0f);
  for (int i = 0; i < 12; i++) w[i] = roundf(w[i] * 100) / 100; /* exact in int8 * 0.01 */
  wkt_fill_f32(fc, 20, 13, -1.0f, 1.0f);
  wkt_og g;
  wkt_qdq_graph(&g, c, w, fc, n_z, z1);
  wk_net *net = wkt_og_imported(&g);
  int n_act = 0, act = -1;
  for (int i = 0; i < wk_net_n_nodes(net); i++)
    if (wk_net_node(net, i)->op == WK_NODE_ACT) n_act++, act = (int)wk_net_node(net, i)->act;
  ck_assert_int_eq(n_act, c->want < 0 ? 0 : 1);
  ck_assert_int_eq(act, c->want);
  wkt_names_unique(net);
  /* the float graph with that activation */
  double pooled[4] = {0, 0, 0, 0};
  for (int o = 0; o < 4; o++) {
    for (int p = 0; p < 16; p++) {
      double v = 0;
      for (int ci = 0; ci < 3; ci++) v += (double)w[o * 3 + ci] * x[ci * 16 + p];
      if (c->want >= 0) v = v < 0 ? 0 : v;
      if (c->want == WK_ACT_RELU6) v = v > 6 ? 6 : v;
      pooled[o] += v / 16;
    }
  }
  float got[5], want[5];
  for (int k = 0; k < 5; k++) {
    double y = 0;
    for (int o = 0; o < 4; o++) y += (double)fc[k * 4 + o] * pooled[o];
    want[k] = (float)y;
  }
  wkt_logits(net, x, 3, 4, 4, got, 5);
  const double e = wkt_rel_err(got, want, 5, 1e-6);
  ck_assert_msg(e < 1e-5, "relative error %g", e);
  wkt_og_net_free(net);
}

START_TEST(test_qdq_folded_act) { wkt_qdq_check(&wkt_qdq_cases[_i], 1, NULL); }
END_TEST

/* Quantized per channel (axis 1): folds when every channel's range starts at
 * 0, refused when only some do (no whisker node expresses that). */
START_TEST(test_qdq_folded_act_per_channel) {
  const double zeros[4] = {0, 0, 0, 0}, mixed[4] = {0, 0, 9, 0};
  wkt_qdq_check(&wkt_qdq_cases[0], 4, zeros);
  float w[12] = {0}, fc[20] = {0};
  wkt_og g;
  wkt_qdq_graph(&g, &wkt_qdq_cases[0], w, fc, 4, mixed);
  WKT_REFUSED(&g, WK_ERR_UNSUPPORTED, "node 'qc' (QuantizeLinear)", "3 of 4 channels");
}
END_TEST

/* GlobalAveragePool -> Flatten -> Gemm "fc" to 2 classes, for graphs whose
 * point lies elsewhere (c channels). */
static void wkt_og_head(wkt_og *g, const char *x, int c) {
  float *w = calloc(2 * (size_t)c, sizeof *w);
  wkt_og_node(g, "GlobalAveragePool", "pool", x, "p");
  wkt_og_node(g, "Flatten", "flat", "p", "f");
  wkt_og_node(g, "Gemm", "fc", "f,Wfc", "y");
  wkt_og_attr_int(g, "transB", 1);
  wkt_og_floats(g, "Wfc", 2, (const int64_t[]){2, c}, w);
  free(w);
}

static long wkt_peak_rss_kib(void) {
  struct rusage ru;
  ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
  return ru.ru_maxrss;
}

/* 200 Identity nodes in a row after a 256 KiB int8 constant, and 100
 * Unsqueeze of it: each copied the constant's values as doubles (2 MiB each,
 * 600 MiB in all; a review's 1 MB file took 2.4 GB). They share them now. */
START_TEST(test_constant_aliases_shared) {
  const int n = 1 << 18;
  double *big = calloc((size_t)n, sizeof *big);
  wkt_og g;
  wkt_og_init(&g, 3, 4, 4, 2);
  wkt_og_tensor(&g, "big", WKT_I8, 1, (const int64_t[]){n}, big);
  free(big);
  char in[32] = "big", out[32];
  for (int i = 0; i < 300; i++) { /* 200 Identity in a row, 100 Unsqueeze of the constant */
    snprintf(out, sizeof out, "id%d", i);
    if (i % 3 == 2) {
      wkt_og_node(&g, "Unsqueeze", NULL, "big", out);
      wkt_og_attr_ints(&g, "axes", 1, (const int64_t[]){0});
    } else {
      wkt_og_node(&g, "Identity", NULL, in, out);
      snprintf(in, sizeof in, "%s", out);
    }
  }
  wkt_og_head(&g, "x", 3);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  wk_model_meta meta;
  char path[256];
  const long before = wkt_peak_rss_kib();
  WKT_OK(wkt_og_import(&g, ctx, &net, &meta, path));
  const long grew = wkt_peak_rss_kib() - before;
  ck_assert_msg(grew < 64 * 1024, "the import's peak memory grew by %ld KiB", grew);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* 300 DequantizeLinear nodes of one 1 MiB int8 constant each compute 8 MiB
 * of doubles: refused once constants and weights pass 32 times the file's size
 * plus 64 MiB, naming the node. */
START_TEST(test_constant_budget_refused) {
  const int n = 1 << 20;
  double *big = calloc((size_t)n, sizeof *big);
  wkt_og g;
  wkt_og_init(&g, 3, 4, 4, 2);
  wkt_og_tensor(&g, "big", WKT_I8, 1, (const int64_t[]){n}, big);
  wkt_og_scalar(&g, "s", WKT_F32, 0.5);
  free(big);
  for (int i = 0; i < 300; i++) {
    char name[32], out[32];
    snprintf(name, sizeof name, "dq%d", i);
    snprintf(out, sizeof out, "d%d", i);
    wkt_og_node(&g, "DequantizeLinear", name, "big,s", out);
  }
  wkt_og_head(&g, "x", 3);
  WKT_REFUSED(&g, WK_ERR_LIMIT, "(DequantizeLinear)", "would need more than 96 MiB");
}
END_TEST

/* One 64x64x3x3 weight (144 KiB) read by 600 convs in a row keeps 600 float
 * copies (86 MiB): weights count against the same budget. */
START_TEST(test_weight_budget_refused) {
  float *w = calloc(64 * 64 * 9, sizeof *w);
  wkt_og g;
  wkt_og_init(&g, 64, 4, 4, 2);
  wkt_og_floats(&g, "w", 4, (const int64_t[]){64, 64, 3, 3}, w);
  free(w);
  char in[32] = "x", out[32];
  for (int i = 0; i < 600; i++) {
    snprintf(out, sizeof out, "c%d", i);
    wkt_og_node(&g, "Conv", NULL, (snprintf(in + strlen(in), 8, ",w"), in), out);
    wkt_og_attr_ints(&g, "pads", 4, (const int64_t[]){1, 1, 1, 1});
    snprintf(in, sizeof in, "%s", out);
  }
  wkt_og_head(&g, in, 64);
  WKT_REFUSED(&g, WK_ERR_LIMIT, "(Conv)", "constants and weights would need more than");
}
END_TEST

/* n Relu nodes in a row, every one named `name` (NULL: "r0", "r1" ...), then
 * Flatten -> Gemm. */
static void wkt_og_relus(wkt_og *g, int n, const char *name) {
  float w[5 * 48] = {0};
  wkt_og_init(g, 3, 4, 4, 5);
  char in[32] = "x", out[32], nm[32];
  for (int i = 0; i < n; i++) {
    snprintf(out, sizeof out, "a%d", i);
    snprintf(nm, sizeof nm, "r%d", i);
    wkt_og_node(g, "Relu", name ? name : nm, in, out);
    snprintf(in, sizeof in, "%s", out);
  }
  wkt_og_node(g, "Flatten", NULL, in, "f");
  wkt_og_node(g, "Gemm", "fc", "f,W", "y");
  wkt_og_attr_int(g, "transB", 1);
  wkt_og_floats(g, "W", 2, (const int64_t[]){5, 48}, w);
}

static double wkt_now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Names were probed base, base_2 ... each probe a scan of every node: 3000
 * nodes of one name took about 20 s (4000: 46 s), 40,000 of distinct names
 * 7.4 s. Both are linear now (well under a second here). */
START_TEST(test_import_time_linear) {
  const struct { int n; const char *name; } cases[] = {{3000, "r"}, {40000, NULL}};
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  for (int c = 0; c < 2; c++) {
    wkt_og g;
    wkt_og_relus(&g, cases[c].n, cases[c].name);
    wk_net *net;
    wk_model_meta meta;
    char path[256];
    const double t0 = wkt_now_s();
    WKT_OK(wkt_og_import(&g, ctx, &net, &meta, path));
    const double dt = wkt_now_s() - t0;
    ck_assert_int_eq(wk_net_n_nodes(net), cases[c].n + 2);
    if (cases[c].name) {
      ck_assert_str_eq(wk_net_node(net, 0)->name, "r");
      ck_assert_str_eq(wk_net_node(net, cases[c].n - 1)->name, "r_3000");
      wkt_names_unique(net);
    }
    printf("%d Relu nodes%s imported in %.3f s\n", cases[c].n,
           cases[c].name ? " of one name" : "", dt);
    ck_assert_msg(dt < 3.0, "%d nodes took %.1f s", cases[c].n, dt);
    wk_model_meta_free(&meta);
    wk_net_destroy(net);
  }
  wk_ctx_destroy(ctx);
}
END_TEST

/* More nodes than a model file may hold (the loader's 100,000) are refused
 * before the walk. */
START_TEST(test_node_cap_refused) {
  wkt_og g;
  wkt_og_relus(&g, 100000, "r");
  WKT_REFUSED(&g, WK_ERR_LIMIT, "100002 nodes, more than the 100000");
}
END_TEST

/* Graphs whisker's importer took although the model they make cannot be
 * loaded (modelio/arch.c's limits, now shared through modelio/model.h), or
 * refused only after the walk without naming the file: each is refused naming
 * the file and what is too large. */
enum { WKT_LIM_PX, WKT_LIM_CH, WKT_LIM_LINEAR, WKT_LIM_CONV, WKT_LIM_BN_EPS, WKT_LIM_CLASSES,
       WKT_LIM_N };

START_TEST(test_model_limits_refused) {
  wkt_og g;
  float *w = NULL;
  switch (_i) {
  case WKT_LIM_PX:
    wkt_og_init(&g, 3, 8192, 8192, 2);
    wkt_og_head(&g, "x", 3);
    WKT_REFUSED(&g, WK_ERR_LIMIT, "input 'x' has 8192 rows (a model holds at most 4096)");
    break;
  case WKT_LIM_CH:
    wkt_og_init(&g, 100, 32, 32, 2);
    wkt_og_head(&g, "x", 100);
    WKT_REFUSED(&g, WK_ERR_LIMIT, "input 'x' has 100 channels (a model holds at most 64)");
    break;
  case WKT_LIM_LINEAR:
    w = calloc(100001 * 3, sizeof *w);
    wkt_og_init(&g, 3, 4, 4, 100001);
    wkt_og_node(&g, "GlobalAveragePool", NULL, "x", "p");
    wkt_og_node(&g, "Flatten", NULL, "p", "f");
    wkt_og_node(&g, "Gemm", "fc", "f,W", "y");
    wkt_og_attr_int(&g, "transB", 1);
    wkt_og_floats(&g, "W", 2, (const int64_t[]){100001, 3}, w);
    WKT_REFUSED(&g, WK_ERR_LIMIT, "node 'fc' (Gemm)", "100001 outputs");
    break;
  case WKT_LIM_CONV:
    w = calloc(65537 * 3, sizeof *w);
    wkt_og_init(&g, 3, 4, 4, 2);
    wkt_og_node(&g, "Conv", "conv", "x,W", "c");
    wkt_og_floats(&g, "W", 4, (const int64_t[]){65537, 3, 1, 1}, w);
    wkt_og_head(&g, "c", 65537);
    WKT_REFUSED(&g, WK_ERR_LIMIT, "node 'conv' (Conv)", "65537 output channels");
    break;
  case WKT_LIM_BN_EPS: {
    const float one[3] = {1, 1, 1}, zero[3] = {0, 0, 0};
    wkt_og_init(&g, 3, 4, 4, 2);
    wkt_og_node(&g, "BatchNormalization", "bn", "x,one,zero,zero,one", "b");
    wkt_og_attr_float(&g, "epsilon", 1e-13f);
    wkt_og_floats(&g, "one", 1, (const int64_t[]){3}, one);
    wkt_og_floats(&g, "zero", 1, (const int64_t[]){3}, zero);
    wkt_og_head(&g, "b", 3);
    WKT_REFUSED(&g, WK_ERR_UNSUPPORTED, "node 'bn' (BatchNormalization)", "epsilon 1e-13");
    break;
  }
  default: /* a flatten of a 3x200x200 map as the output: 120,000 classes */
    wkt_og_init(&g, 3, 200, 200, 120000);
    wkt_og_node(&g, "Flatten", NULL, "x", "y");
    WKT_REFUSED(&g, WK_ERR_LIMIT, "output 'y' has 120000 classes");
  }
  free(w);
}
END_TEST

/* A graph at those limits imports, and the model file it makes loads. */
START_TEST(test_model_at_limits_loads) {
  float w[64 * 64];
  const float one[64] = {[0 ... 63] = 1}, zero[64] = {0};
  wkt_fill_f32(w, 64 * 64, 21, -1.0f, 1.0f);
  wkt_og g;
  wkt_og_init(&g, 64, 6, 6, 2);
  wkt_og_node(&g, "Conv", "conv", "x,W", "c");
  wkt_og_floats(&g, "W", 4, (const int64_t[]){64, 64, 1, 1}, w);
  wkt_og_node(&g, "BatchNormalization", "bn", "c,one,zero,zero,one", "b");
  wkt_og_attr_float(&g, "epsilon", 2e-12f); /* (1e-12f is just below 1e-12) */
  wkt_og_attr_float(&g, "momentum", 1.0f);
  wkt_og_floats(&g, "one", 1, (const int64_t[]){64}, one);
  wkt_og_floats(&g, "zero", 1, (const int64_t[]){64}, zero);
  wkt_og_node(&g, "AveragePool", "pool", "b", "m");
  wkt_og_attr_ints(&g, "kernel_shape", 2, (const int64_t[]){64, 64});
  wkt_og_attr_ints(&g, "pads", 4, (const int64_t[]){32, 32, 32, 32});
  wkt_og_head(&g, "m", 64);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net, *back;
  wk_model_meta meta, meta2;
  char path[256], st[300];
  WKT_OK(wkt_og_import(&g, ctx, &net, &meta, path));
  snprintf(st, sizeof st, "%s.safetensors", path);
  WKT_OK(wk_model_save(st, net, &meta, NULL, 0, NULL, 0));
  WKT_OK(wk_model_load(ctx, st, &back, &meta2));
  unlink(st);
  ck_assert_int_eq(wk_net_n_nodes(back), wk_net_n_nodes(net));
  wk_model_meta_free(&meta);
  wk_model_meta_free(&meta2);
  wk_net_destroy(net);
  wk_net_destroy(back);
  wk_ctx_destroy(ctx);
}
END_TEST

/* A producer name and a file name of many 2-byte characters: the provenance
 * cut them at 95 and 159 bytes, mid-character, and the model file's writer
 * refused the metadata (not UTF-8). A byte that is not UTF-8 becomes '_'. */
START_TEST(test_provenance_utf8) {
  char producer[300] = "", path[512], st[600];
  for (int i = 0; i < 20; i++) strcat(producer, "\xc3\xa9"); /* e acute */
  strcat(producer, "\xff\"q");
  for (int i = 0; i < 40; i++) strcat(producer, "\xc3\xa9");
  int n = snprintf(path, sizeof path, "/tmp/wk_onnx_%d_", (int)getpid());
  for (int i = 0; i < 90; i++) n += snprintf(path + n, sizeof path - (size_t)n, "\xc3\xbc");
  snprintf(path + n, sizeof path - (size_t)n, ".onnx");
  wkt_og g;
  wkt_og_flatten_gemm(&g, 5);
  wkt_og_attr_int(&g, "transB", 1);
  g.producer = producer;
  wkt_og_write(&g, path);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net, *back;
  wk_model_meta meta, meta2;
  WKT_OK(wk_onnx_import(ctx, path, &net, &meta));
  unlink(path);
  ck_assert_msg(wk_utf8_valid(meta.provenance, strlen(meta.provenance), NULL), "%s",
                meta.provenance);
  ck_assert_ptr_nonnull(strstr(meta.provenance, "\"producer\":\"\xc3\xa9\xc3\xa9"));
  ck_assert_ptr_nonnull(strstr(meta.provenance, "\xc3\xa9__q\xc3\xa9")); /* \xff and '"' */
  ck_assert_ptr_nonnull(strstr(meta.provenance, "\"file\":\"wk_onnx_"));
  snprintf(st, sizeof st, "/tmp/wk_onnx_%d.safetensors", (int)getpid());
  WKT_OK(wk_model_save(st, net, &meta, NULL, 0, NULL, 0));
  WKT_OK(wk_model_load(ctx, st, &back, &meta2));
  unlink(st);
  ck_assert_str_eq(meta.provenance, meta2.provenance);
  wk_model_meta_free(&meta);
  wk_model_meta_free(&meta2);
  wk_net_destroy(net);
  wk_net_destroy(back);
  wk_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------ class names */

/* Flatten -> Gemm to 3 classes, with `classes` as the file's whisker.classes. */
static void wkt_og_classes(wkt_og *g, const char *classes) {
  wkt_og_flatten_gemm(g, 3);
  wkt_og_attr_int(g, "transB", 1);
  g->classes_json = classes;
}

/* Class names from the metadata were taken unchecked for UTF-8: a name that
 * is not went into the model, and the model file's writer refused it as
 * "metadata value 3", naming neither the ONNX file nor the class. A list that
 * was not 3 names of 1 to 255 bytes was dropped for class0.. without a word,
 * where the model loader refuses the same list in a model file. Each is
 * refused now as the loader refuses it, naming the file and the class. */
static const struct {
  const char *classes, *want;
} wkt_bad_classes[] = {
    {"[\"cat\",\"\xff\",\"dog\"]", "class name 1 is not valid UTF-8 (byte 0)"},
    {"[\"cat\",\"dog\",\"d\xc3\"]", "class name 2 is not valid UTF-8 (byte 1)"}, /* cut short */
    {"[\"\xed\xa0\x80\",\"cat\",\"dog\"]", "class name 0 is not valid UTF-8"},   /* a surrogate */
    {"[\"\xc0\xaf\",\"cat\",\"dog\"]", "class name 0 is not valid UTF-8"},       /* overlong '/' */
    {"[\"\xf4\x90\x80\x80\",\"cat\",\"dog\"]", "class name 0 is not valid UTF-8"}, /* > U+10FFFF */
    {"[\"cat\",\"\",\"dog\"]", "class name 1 is empty"},
    {"[\"cat\",\"dog\",7]", "class name 2 is not a string"},
    {NULL, "class name 1 is longer than 255 bytes"}, /* 256 bytes, made below */
    {"[\"cat\",\"dog\"]", "whisker.classes is not an array of 3 names"},
    {"[\"cat\",\"dog\",\"emu\",\"fox\"]", "whisker.classes is not an array of 3 names"},
    {"{\"cat\":1}", "whisker.classes is not an array of 3 names"},
    {"[\"cat\",\"dog\",\"emu\"", "whisker.classes is not an array of 3 names"},
};
#define WKT_N_BAD_CLASSES (int)(sizeof wkt_bad_classes / sizeof wkt_bad_classes[0])

START_TEST(test_import_class_names_checked) {
  char long_list[400];
  const char *classes = wkt_bad_classes[_i].classes;
  if (!classes) {
    char name[257];
    memset(name, 'a', 256);
    name[256] = '\0';
    snprintf(long_list, sizeof long_list, "[\"cat\",\"%s\",\"dog\"]", name);
    classes = long_list;
  }
  wkt_og g;
  wkt_og_classes(&g, classes);
  WKT_REFUSED(&g, WK_ERR_FORMAT, wkt_bad_classes[_i].want);
}
END_TEST

/* What the loader takes, import takes, and the model it makes loads with the
 * same names: any UTF-8 (255 bytes of it, in 3-byte characters), quotes,
 * and control characters (JSON escapes them in the file). */
START_TEST(test_import_class_names_load) {
  char list[1200], long_name[256] = "";
  for (int i = 0; i < 85; i++) strcat(long_name, "\xe2\x82\xac"); /* the euro sign */
  ck_assert_uint_eq(strlen(long_name), 255);
  snprintf(list, sizeof list, "[\"chat \\\"noir\\\" \xc3\xa9t\xc3\xa9 \xf0\x9f\x90\x88\","
                              "\"%s\",\"tab\\there\\u0001\"]", long_name);
  const char *want[3] = {"chat \"noir\" \xc3\xa9t\xc3\xa9 \xf0\x9f\x90\x88", long_name,
                         "tab\there\x01"};
  wkt_og g;
  wkt_og_classes(&g, list);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net, *back;
  wk_model_meta meta, meta2;
  char path[256], st[300];
  WKT_OK(wkt_og_import(&g, ctx, &net, &meta, path));
  for (int i = 0; i < 3; i++) ck_assert_str_eq(meta.class_names[i], want[i]);
  snprintf(st, sizeof st, "%s.safetensors", path);
  WKT_OK(wk_model_save(st, net, &meta, NULL, 0, NULL, 0));
  WKT_OK(wk_model_load(ctx, st, &back, &meta2));
  unlink(st);
  for (int i = 0; i < 3; i++) ck_assert_str_eq(meta2.class_names[i], want[i]);
  wk_model_meta_free(&meta);
  wk_model_meta_free(&meta2);
  wk_net_destroy(net);
  wk_net_destroy(back);
  /* without the metadata: class0.. */
  wkt_og_classes(&g, NULL);
  WKT_OK(wkt_og_import(&g, ctx, &net, &meta, path));
  ck_assert_str_eq(meta.class_names[2], "class2");
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* A labels file (`whisker import --labels`) holding `text` (n bytes) read
 * into a 3-class meta (free it after, whatever the status). */
static wk_status wkt_labels(const char *text, size_t n, wk_model_meta *meta, char path[256]) {
  snprintf(path, 256, "/tmp/wk_labels_%d.txt", (int)getpid());
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(text, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
  WKT_OK(wk_model_meta_init(meta, "onnx", 3, 4));
  wk_clear_error();
  const wk_status s = wk_model_meta_read_labels(meta, path);
  unlink(path);
  return s;
}

#define WKT_LABELS(text, meta, path) wkt_labels(text, sizeof text - 1, meta, path)

/* Line ends as a user's editor writes them (LF, CRLF, CR), a UTF-8 byte order
 * mark, blank lines: the byte order mark was kept as part of the first name
 * (invisible when printed, and never equal to a folder's name), and a file
 * with CR line ends read as one name. */
START_TEST(test_labels_file_line_ends) {
  static const char *const texts[] = {
      "cat\ndog\n\xc3\xa9mu\n",
      "\xef\xbb\xbf" "cat\r\ndog\r\n\r\n\xc3\xa9mu\r\n\r\n",
      "cat\rdog\r\xc3\xa9mu",
      "\xef\xbb\xbf\ncat\n\ndog\r\xc3\xa9mu",
  };
  for (int t = 0; t < 4; t++) {
    wk_model_meta meta;
    char path[256];
    const wk_status s = wkt_labels(texts[t], strlen(texts[t]), &meta, path);
    ck_assert_msg(s == WK_OK, "text %d: %s", t, wk_last_error());
    ck_assert_str_eq(meta.class_names[0], "cat");
    ck_assert_str_eq(meta.class_names[1], "dog");
    ck_assert_str_eq(meta.class_names[2], "\xc3\xa9mu");
    wk_model_meta_free(&meta);
  }
}
END_TEST

/* Names the model loader would refuse: a line that is not UTF-8 (a Latin-1
 * file) went into the model and the writer refused "metadata value 3"; a line
 * over 255 bytes was cut at byte 255, mid-character; a NUL byte was reported
 * as a line over 1023 bytes. Each is refused naming the file, the line and
 * the class; a line of 255 bytes and control characters (as the loader) are
 * taken. */
START_TEST(test_labels_file_names_checked) {
  wk_model_meta meta;
  char path[256], text[1200];
  WKT_FAILS(WK_ERR_FORMAT, WKT_LABELS("cat\n\n\xe9mu\ndog\n", &meta, path));
  ck_assert_msg(strstr(wk_last_error(), path) &&
                    strstr(wk_last_error(), "line 3: class name 1 is not valid UTF-8 (byte 0)"),
                "%s", wk_last_error());
  wk_model_meta_free(&meta);
  WKT_FAILS(WK_ERR_FORMAT, WKT_LABELS("cat\ndog\n\xed\xa0\x80\n", &meta, path));
  ck_assert_msg(strstr(wk_last_error(), "line 3: class name 2 is not valid UTF-8"), "%s",
                wk_last_error());
  wk_model_meta_free(&meta);
  WKT_FAILS(WK_ERR_FORMAT, WKT_LABELS("c\0at\ndog\nemu\n", &meta, path));
  ck_assert_msg(strstr(wk_last_error(), "line 1: class name 0 holds a NUL byte"), "%s",
                wk_last_error());
  wk_model_meta_free(&meta);
  /* 256 bytes, 300 bytes of 2-byte characters, 1100 bytes */
  const size_t lens[3] = {256, 300, 1100};
  for (int t = 0; t < 3; t++) {
    size_t n = (size_t)snprintf(text, sizeof text, "cat\ndog\n");
    for (size_t i = 0; i < lens[t]; i += t == 1 ? 2 : 1)
      n += (size_t)snprintf(text + n, sizeof text - n, "%s", t == 1 ? "\xc3\xa9" : "x");
    text[n++] = '\n';
    WKT_FAILS(WK_ERR_FORMAT, wkt_labels(text, n, &meta, path));
    ck_assert_msg(strstr(wk_last_error(), path) &&
                      strstr(wk_last_error(), "line 3: class name 2 is longer than 255 bytes"),
                  "%zu bytes: %s", lens[t], wk_last_error());
    wk_model_meta_free(&meta);
  }
  /* 255 bytes (127 2-byte characters and one byte), a tab, a control character */
  size_t n = (size_t)snprintf(text, sizeof text, "a\tb\n\x01\n");
  for (int i = 0; i < 127; i++) n += (size_t)snprintf(text + n, sizeof text - n, "\xc3\xa9");
  n += (size_t)snprintf(text + n, sizeof text - n, "z");
  WKT_OK(wkt_labels(text, n, &meta, path));
  ck_assert_str_eq(meta.class_names[0], "a\tb");
  ck_assert_str_eq(meta.class_names[1], "\x01");
  ck_assert_uint_eq(strlen(meta.class_names[2]), 255);
  wk_model_meta_free(&meta);
  /* 255 bytes after a byte order mark */
  n = (size_t)snprintf(text, sizeof text, "\xef\xbb\xbf");
  for (int i = 0; i < 255; i++) text[n++] = 'x';
  n += (size_t)snprintf(text + n, sizeof text - n, "\ncat\ndog\n");
  WKT_OK(wkt_labels(text, n, &meta, path));
  ck_assert_uint_eq(strlen(meta.class_names[0]), 255);
  ck_assert_int_eq(meta.class_names[0][0], 'x');
  wk_model_meta_free(&meta);
  /* the count */
  WKT_FAILS(WK_ERR_FORMAT, WKT_LABELS("cat\ndog\n", &meta, path));
  ck_assert_msg(strstr(wk_last_error(), "2 labels for a model with 3 classes"), "%s",
                wk_last_error());
  wk_model_meta_free(&meta);
}
END_TEST

/* Messages about a tensor named the file twice ("e.onnx: node 'conv0' (Conv):
 * e.onnx: tensor ..."). */
START_TEST(test_tensor_messages_name_file_once) {
  wkt_og g;
  wkt_og_init(&g, 3, 4, 4, 2);
  wkt_og_node(&g, "Conv", "conv0", "x,Wmissing", "c");
  wkt_og_head(&g, "c", 4);
  WKT_REFUSED(&g, WK_ERR_FORMAT, "node 'conv0' (Conv): tensor 'Wmissing' is used before");
  /* an initializer whose data is short of its dims */
  wkt_og_init(&g, 3, 4, 4, 2);
  wkt_pb t = {0};
  wkt_pb_int(&t, 1, 4), wkt_pb_int(&t, 1, 3), wkt_pb_int(&t, 1, 1), wkt_pb_int(&t, 1, 1);
  wkt_pb_int(&t, 2, WKT_F32);
  wkt_pb_str(&t, 8, "W2");
  wkt_pb_bytes(&t, 9, "abcd", 4);
  wkt_pb_msg(&g.graph, 5, &t);
  wkt_pb_free(&t);
  wkt_og_node(&g, "Conv", "conv1", "x,W2", "c2");
  wkt_og_head(&g, "c2", 4);
  WKT_REFUSED(&g, WK_ERR_FORMAT, "node 'conv1' (Conv): tensor 'W2': raw_data holds 4 bytes");
}
END_TEST

/* Shape's start/end (opset 15) were ignored: Shape(x, start=1) gave [1, 3,
 * 4, 4] where ONNX gives [3, 4, 4]. Only the whole shape is taken. */
START_TEST(test_shape_slice_refused) {
  wkt_og g;
  static const struct { const char *attr; int value; } part[2] = {{"start", 1}, {"end", -1}};
  for (int t = 0; t < 2; t++) {
    wkt_og_init(&g, 3, 4, 4, 2);
    wkt_og_node(&g, "Shape", "shape", "x", "s");
    wkt_og_attr_int(&g, part[t].attr, part[t].value);
    wkt_og_head(&g, "x", 3);
    WKT_REFUSED(&g, WK_ERR_UNSUPPORTED, "node 'shape' (Shape)", "start/end other than the whole");
  }
  /* start -4 and end 10 are the whole [1, 3, 4, 4] */
  wkt_og_init(&g, 3, 4, 4, 2);
  wkt_og_node(&g, "Shape", "shape", "x", "s");
  wkt_og_attr_int(&g, "start", -4);
  wkt_og_attr_int(&g, "end", 10);
  wkt_og_head(&g, "x", 3);
  wk_net *net = wkt_og_imported(&g);
  wkt_og_net_free(net);
}
END_TEST

/* Gather indices and Unsqueeze axes are read as doubles: NaN or 1e30 was cast
 * to int64 (undefined behaviour), 2.5 truncated to 2. Each is refused. */
START_TEST(test_const_indices_checked) {
  const double bad[4] = {NAN, 1e30, 2.5, -5};
  for (int i = 0; i < 4; i++) {
    wkt_og g;
    wkt_og_init(&g, 3, 4, 4, 2);
    wkt_og_node(&g, "Shape", NULL, "x", "s");
    wkt_og_node(&g, "Gather", "gather", "s,i", "v");
    wkt_og_tensor(&g, "i", WKT_F32, 1, (const int64_t[]){1}, &bad[i]);
    wkt_og_head(&g, "x", 3);
    WKT_REFUSED(&g, WK_ERR_FORMAT, "node 'gather' (Gather): index", "is not an integer in [-4, 3]");
    wkt_og_init(&g, 3, 4, 4, 2);
    wkt_og_node(&g, "Unsqueeze", "unsq", "one,axes", "u");
    wkt_og_scalar(&g, "one", WKT_I64, 1);
    wkt_og_tensor(&g, "axes", WKT_F32, 1, (const int64_t[]){1}, &bad[i]);
    wkt_og_head(&g, "x", 3);
    WKT_REFUSED(&g, WK_ERR_FORMAT, "node 'unsq' (Unsqueeze): axis");
  }
}
END_TEST

/* x -> Conv(DequantizeLinear(wq [4, 3, 1, 1], ws, wz)) -> head, with ws and
 * wz of n_s and n_z values and DequantizeLinear's block_size (0: none). */
static void wkt_dq_weight_graph(wkt_og *g, int n_s, int n_z, int64_t block) {
  double wq[12], s[4] = {0.1, 0.2, 0.3, 0.4}, z[4] = {1, 2, 3, 4};
  for (int i = 0; i < 12; i++) wq[i] = i - 6;
  wkt_og_init(g, 3, 4, 4, 2);
  wkt_og_node(g, "DequantizeLinear", "dqw", "wq,ws,wz", "w");
  wkt_og_attr_int(g, "axis", 0);
  if (block) wkt_og_attr_int(g, "block_size", block);
  wkt_og_node(g, "Conv", "conv", "x,w", "c");
  wkt_og_tensor(g, "wq", WKT_I8, 4, (const int64_t[]){4, 3, 1, 1}, wq);
  wkt_og_tensor(g, "ws", WKT_F32, n_s > 1, (const int64_t[]){n_s}, s);
  wkt_og_tensor(g, "wz", WKT_I8, n_z > 1, (const int64_t[]){n_z}, z);
  wkt_og_head(g, "c", 4);
}

/* A per-tensor scale with a per-channel zero point dequantized every channel
 * with the first zero point; ONNX requires their shapes to match. Opset 21's
 * block_size was ignored. */
START_TEST(test_dequantize_params_checked) {
  wkt_og g;
  wkt_dq_weight_graph(&g, 1, 4, 0);
  WKT_REFUSED(&g, WK_ERR_SHAPE, "node 'dqw' (DequantizeLinear)",
              "zero point 'wz' has 4 values and scale 'ws' 1");
  wkt_dq_weight_graph(&g, 4, 1, 0);
  WKT_REFUSED(&g, WK_ERR_SHAPE, "zero point 'wz' has 1 values and scale 'ws' 4");
  wkt_dq_weight_graph(&g, 4, 4, 2);
  WKT_REFUSED(&g, WK_ERR_UNSUPPORTED, "node 'dqw' (DequantizeLinear)", "block_size 2");
  wkt_og_init(&g, 3, 4, 4, 2);
  wkt_og_node(&g, "QuantizeLinear", "q", "x,s", "xq");
  wkt_og_attr_int(&g, "block_size", 4);
  wkt_og_scalar(&g, "s", WKT_F32, 0.1);
  wkt_og_head(&g, "x", 3);
  WKT_REFUSED(&g, WK_ERR_UNSUPPORTED, "node 'q' (QuantizeLinear)", "block_size 4");
  /* matching shapes import */
  wkt_dq_weight_graph(&g, 4, 4, 0);
  wk_net *net = wkt_og_imported(&g);
  size_t np;
  const wk_param *p = wk_net_params(net, &np);
  const float *w = wk_net_weights(net) + p[0].offset; /* OHWI = (4, 1, 1, 3) */
  for (int o = 0; o < 4; o++)
    for (int i = 0; i < 3; i++)
      ck_assert_float_eq_tol(w[o * 3 + i], 0.1f * (o + 1) * (float)(o * 3 + i - 6 - (o + 1)),
                             1e-6f);
  wkt_og_net_free(net);
}
END_TEST

/* GlobalAveragePool's [N, C, 1, 1] plus its Flatten's [N, C] is a broadcast
 * to [N, C, N, C] in ONNX; whisker, holding both as C features, added them
 * element-wise. */
START_TEST(test_add_of_ranks_refused) {
  wkt_og g;
  wkt_og_init(&g, 3, 4, 4, 3);
  wkt_og_node(&g, "GlobalAveragePool", NULL, "x", "p");
  wkt_og_node(&g, "Flatten", NULL, "p", "f");
  wkt_og_node(&g, "Add", "sum", "f,p", "y");
  WKT_REFUSED(&g, WK_ERR_UNSUPPORTED, "node 'sum' (Add)", "'f' has rank 2 and 'p' rank 4");
}
END_TEST

/* Every realloc of the code linked into this test comes here (-Wl,--wrap=realloc
 * in tests/CMakeLists.txt): with wkt_realloc_fail_at = k, the k-th call from
 * then on fails. */
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static long wkt_realloc_fail_at, wkt_realloc_calls;

void *__wrap_realloc(void *p, size_t n) {
  if (wkt_realloc_fail_at > 0 && ++wkt_realloc_calls == wkt_realloc_fail_at) return NULL;
  return __real_realloc(p, n);
}

/* Export with each of its reallocs failing in turn: WK_ERR_NOMEM naming the
 * file every time, then a whole export. When growing the initializer list
 * failed, the conv weight was written through the tensor before it (or, for
 * the first, through inits[-1] of a NULL list: a crash). */
START_TEST(test_export_out_of_memory) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_onnx_net(ctx, "custom", 20, 3, 1), *back;
  char path[256];
  snprintf(path, sizeof path, "/tmp/wk_onnx_oom_%d.onnx", (int)getpid());
  long k = 1;
  for (;; k++) {
    wkt_realloc_calls = 0;
    wkt_realloc_fail_at = k;
    wk_clear_error();
    const wk_status s = wk_onnx_export(path, net, NULL);
    wkt_realloc_fail_at = 0;
    if (s == WK_OK) break;
    ck_assert_msg(s == WK_ERR_NOMEM, "realloc %ld failing: %s", k, wk_last_error());
    ck_assert_msg(strstr(wk_last_error(), path) != NULL, "%s", wk_last_error());
    ck_assert_int_eq(access(path, F_OK), -1);
  }
  ck_assert_int_gt(k, 3); /* the node, initializer and allocation lists at least */
  wk_model_meta meta;
  WKT_OK(wk_onnx_import(ctx, path, &back, &meta));
  unlink(path);
  wk_model_meta_free(&meta);
  wk_net_destroy(back);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

int main(void) {
  wk_log_set_level(WK_LOG_ERROR);
  Suite *s = suite_create("onnx_export");
  TCase *tc = tcase_create("onnx_export");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_round_trip, 0, WKT_ONNX_N_ARCHS);
  tcase_add_test(tc, test_unwritable);
  tcase_add_test(tc, test_export_class_names_checked);
  tcase_add_test(tc, test_mutated_files);
  tcase_add_test(tc, test_sha256);
  tcase_add_test(tc, test_deep_nesting_refused);
  tcase_add_test(tc, test_attribute_type_refused);
  tcase_add_loop_test(tc, test_flatten_order_through_elementwise, 0, WKT_EW_N);
  tcase_add_test(tc, test_add_of_flatten_orders_refused);
  tcase_add_test(tc, test_folded_act_name_unique);
  tcase_add_test(tc, test_export_clip_names_unique);
  tcase_add_loop_test(tc, test_qdq_folded_act, 0,
                      (int)(sizeof wkt_qdq_cases / sizeof wkt_qdq_cases[0]));
  tcase_add_test(tc, test_qdq_folded_act_per_channel);
  tcase_add_test(tc, test_constant_aliases_shared);
  tcase_add_test(tc, test_constant_budget_refused);
  tcase_add_test(tc, test_weight_budget_refused);
  tcase_add_test(tc, test_import_time_linear);
  tcase_add_test(tc, test_node_cap_refused);
  tcase_add_loop_test(tc, test_model_limits_refused, 0, WKT_LIM_N);
  tcase_add_test(tc, test_model_at_limits_loads);
  tcase_add_test(tc, test_provenance_utf8);
  tcase_add_loop_test(tc, test_import_class_names_checked, 0, WKT_N_BAD_CLASSES);
  tcase_add_test(tc, test_import_class_names_load);
  tcase_add_test(tc, test_labels_file_line_ends);
  tcase_add_test(tc, test_labels_file_names_checked);
  tcase_add_test(tc, test_tensor_messages_name_file_once);
  tcase_add_test(tc, test_shape_slice_refused);
  tcase_add_test(tc, test_const_indices_checked);
  tcase_add_test(tc, test_dequantize_params_checked);
  tcase_add_test(tc, test_add_of_ranks_refused);
  tcase_add_test(tc, test_export_out_of_memory);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
