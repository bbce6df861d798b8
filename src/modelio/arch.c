/* arch.c - a network's architecture as JSON ("whisker.arch" in a model file),
 * both ways. Reading treats the text as hostile: every field is type- and
 * range-checked, and the builder checks the graph, before anything is sized
 * from it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelio/model.h"
#include "nn/zoo.h"


static const char *wk_act_json_name(wk_act a) { return a == WK_ACT_RELU6 ? "relu6" : "relu"; }

static bool wk_json_add_ints(cJSON *o, const char *key, const int *v, int n) {
  cJSON *a = cJSON_CreateIntArray(v, n);
  return a && cJSON_AddItemToObject(o, key, a);
}

static bool wk_node_to_json(const wk_node *nd, cJSON *o) {
  bool ok = cJSON_AddStringToObject(o, "op", wk_node_op_name(nd->op)) &&
            cJSON_AddStringToObject(o, "name", nd->name) && wk_json_add_ints(o, "in", nd->in, nd->n_in);
  switch (nd->op) {
  case WK_NODE_CONV: {
    const wk_conv2d_params *p = &nd->conv;
    const int k[2] = {nd->kh, nd->kw}, s[2] = {p->stride_h, p->stride_w};
    const int pad[4] = {p->pad_top, p->pad_left, p->pad_bottom, p->pad_right};
    const int d[2] = {p->dilation_h, p->dilation_w};
    ok = ok && cJSON_AddNumberToObject(o, "out", nd->out_ch) && wk_json_add_ints(o, "k", k, 2) &&
         wk_json_add_ints(o, "stride", s, 2) && wk_json_add_ints(o, "pad", pad, 4) &&
         wk_json_add_ints(o, "dilation", d, 2) && cJSON_AddNumberToObject(o, "groups", p->groups) &&
         cJSON_AddBoolToObject(o, "bias", nd->bias);
    break;
  }
  case WK_NODE_BATCHNORM:
    ok = ok && cJSON_AddNumberToObject(o, "eps", nd->bn.eps) &&
         cJSON_AddNumberToObject(o, "momentum", nd->bn.momentum);
    break;
  case WK_NODE_ACT:
    ok = ok && cJSON_AddStringToObject(o, "act", wk_act_json_name(nd->act));
    break;
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL: {
    const wk_pool2d_params *p = &nd->pool;
    const int k[2] = {p->kernel_h, p->kernel_w}, s[2] = {p->stride_h, p->stride_w};
    const int pad[4] = {p->pad_top, p->pad_left, p->pad_bottom, p->pad_right};
    ok = ok && wk_json_add_ints(o, "k", k, 2) && wk_json_add_ints(o, "stride", s, 2) &&
         wk_json_add_ints(o, "pad", pad, 4) &&
         cJSON_AddBoolToObject(o, "count_include_pad", p->count_include_pad);
    break;
  }
  case WK_NODE_LINEAR:
    ok = ok && cJSON_AddNumberToObject(o, "out", nd->out_ch) &&
         cJSON_AddBoolToObject(o, "bias", nd->bias);
    break;
  case WK_NODE_DROPOUT:
    ok = ok && cJSON_AddNumberToObject(o, "p", nd->drop_p);
    break;
  default:
    break;
  }
  return ok;
}

wk_status wk_arch_to_json(const wk_net *net, const wk_model_meta *meta, char **out) {
  *out = NULL;
  int h, w, c;
  wk_net_input_shape(net, &h, &w, &c);
  const int input[3] = {h, w, c};
  cJSON *root = cJSON_CreateObject(), *nodes = NULL;
  bool ok = root && cJSON_AddStringToObject(root, "name", meta->arch) &&
            cJSON_AddNumberToObject(root, "width", meta->width) &&
            cJSON_AddNumberToObject(root, "num_classes", (double)wk_net_output_features(net)) &&
            wk_json_add_ints(root, "input", input, 3) &&
            (nodes = cJSON_AddArrayToObject(root, "nodes")) != NULL;
  for (int i = 0; ok && i < wk_net_n_nodes(net); i++) {
    cJSON *o = cJSON_CreateObject();
    ok = o && cJSON_AddItemToArray(nodes, o) && wk_node_to_json(wk_net_node(net, i), o);
  }
  if (ok) *out = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!ok || !*out) return wk_fail(WK_ERR_NOMEM, "architecture JSON: out of memory");
  return WK_OK;
}

/* ------------------------------------------------------------------ reading */

typedef struct wk_jctx {
  const char *what; /* the file, for messages */
  int node;         /* index of the node being read, -1 outside */
} wk_jctx;

WK_PRINTF(3, 4)
static wk_status (wk_jfail)(const wk_jctx *j, wk_status code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (j->node >= 0)
    return wk_fail(code, "%s: whisker.arch node %d: %s", j->what, j->node, msg);
  return wk_fail(code, "%s: whisker.arch: %s", j->what, msg);
}

#ifdef __clang_analyzer__ /* the analyzer does not inline variadic calls */
#define wk_jfail(j, code, ...) ((void)(wk_jfail)((j), (code), __VA_ARGS__), (code))
#endif

/* An integer field in [lo, hi]; *present false (no error) when optional and absent. */
static wk_status wk_jint(const wk_jctx *j, const cJSON *o, const char *key, int lo, int hi,
                         int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v)) return wk_jfail(j, WK_ERR_FORMAT, "'%s' missing or not a number", key);
  double d = v->valuedouble;
  if (!(d >= lo && d <= hi) || d != floor(d))
    return wk_jfail(j, WK_ERR_FORMAT, "'%s' = %g is not an integer in [%d, %d]", key, d, lo, hi);
  *out = (int)d;
  return WK_OK;
}

static wk_status wk_jints(const wk_jctx *j, const cJSON *o, const char *key, int n, int lo, int hi,
                          int *out) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
    return wk_jfail(j, WK_ERR_FORMAT, "'%s' must be an array of %d integers", key, n);
  for (int i = 0; i < n; i++) {
    const cJSON *v = cJSON_GetArrayItem(a, i);
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi) || d != floor(d))
      return wk_jfail(j, WK_ERR_FORMAT, "'%s'[%d] is not an integer in [%d, %d]", key, i, lo, hi);
    out[i] = (int)d;
  }
  return WK_OK;
}

static wk_status wk_jfloat(const wk_jctx *j, const cJSON *o, const char *key, double lo, double hi,
                           float *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
    return wk_jfail(j, WK_ERR_FORMAT, "'%s' missing or outside [%g, %g]", key, lo, hi);
  *out = (float)v->valuedouble;
  return WK_OK;
}

static wk_status wk_jbool(const wk_jctx *j, const cJSON *o, const char *key, bool *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsBool(v)) return wk_jfail(j, WK_ERR_FORMAT, "'%s' missing or not true/false", key);
  *out = cJSON_IsTrue(v);
  return WK_OK;
}

static wk_status wk_node_from_json(const wk_jctx *j, const cJSON *o, int n_values, wk_node *nd) {
  memset(nd, 0, sizeof *nd);
  if (!cJSON_IsObject(o)) return wk_jfail(j, WK_ERR_FORMAT, "not an object");
  const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "op");
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
  if (!cJSON_IsString(op) || wk_node_op_parse(op->valuestring, &nd->op) != WK_OK)
    return wk_jfail(j, WK_ERR_FORMAT, "'op' missing or unknown");
  if (!cJSON_IsString(name) || !name->valuestring[0] ||
      strlen(name->valuestring) >= sizeof nd->name)
    return wk_jfail(j, WK_ERR_FORMAT, "'name' missing, empty or longer than %d bytes",
                    (int)sizeof nd->name - 1);
  strcpy(nd->name, name->valuestring);
  const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "in");
  nd->n_in = cJSON_IsArray(in) ? cJSON_GetArraySize(in) : 0;
  if (nd->n_in < 1 || nd->n_in > 2)
    return wk_jfail(j, WK_ERR_FORMAT, "'in' must list 1 or 2 value ids");
  WK_TRY(wk_jints(j, o, "in", nd->n_in, 0, n_values - 1, nd->in));
  int k[2], s[2], pad[4], d[2];
  switch (nd->op) {
  case WK_NODE_CONV:
    WK_TRY(wk_jint(j, o, "out", 1, WK_MODEL_MAX_CONV_OUT, &nd->out_ch));
    WK_TRY(wk_jints(j, o, "k", 2, 1, WK_MODEL_MAX_KERNEL, k));
    WK_TRY(wk_jints(j, o, "stride", 2, 1, WK_MODEL_MAX_KERNEL, s));
    WK_TRY(wk_jints(j, o, "pad", 4, 0, WK_MODEL_MAX_KERNEL, pad));
    WK_TRY(wk_jints(j, o, "dilation", 2, 1, WK_MODEL_MAX_KERNEL, d));
    WK_TRY(wk_jint(j, o, "groups", 1, WK_MODEL_MAX_CONV_OUT, &nd->conv.groups));
    WK_TRY(wk_jbool(j, o, "bias", &nd->bias));
    nd->kh = k[0];
    nd->kw = k[1];
    nd->conv = (wk_conv2d_params){.stride_h = s[0], .stride_w = s[1], .pad_top = pad[0],
                                  .pad_left = pad[1], .pad_bottom = pad[2], .pad_right = pad[3],
                                  .dilation_h = d[0], .dilation_w = d[1],
                                  .groups = nd->conv.groups};
    break;
  case WK_NODE_BATCHNORM:
    WK_TRY(wk_jfloat(j, o, "eps", WK_MODEL_MIN_BN_EPS, 1.0, &nd->bn.eps));
    WK_TRY(wk_jfloat(j, o, "momentum", 0.0, 1.0, &nd->bn.momentum));
    break;
  case WK_NODE_ACT: {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "act");
    if (cJSON_IsString(a) && strcmp(a->valuestring, "relu") == 0)
      nd->act = WK_ACT_RELU;
    else if (cJSON_IsString(a) && strcmp(a->valuestring, "relu6") == 0)
      nd->act = WK_ACT_RELU6;
    else
      return wk_jfail(j, WK_ERR_FORMAT, "'act' must be \"relu\" or \"relu6\"");
    break;
  }
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL:
    WK_TRY(wk_jints(j, o, "k", 2, 1, WK_MODEL_MAX_KERNEL, k));
    WK_TRY(wk_jints(j, o, "stride", 2, 1, WK_MODEL_MAX_KERNEL, s));
    WK_TRY(wk_jints(j, o, "pad", 4, 0, WK_MODEL_MAX_POOL_PAD, pad));
    WK_TRY(wk_jbool(j, o, "count_include_pad", &nd->pool.count_include_pad));
    nd->pool = (wk_pool2d_params){.kernel_h = k[0], .kernel_w = k[1], .stride_h = s[0],
                                  .stride_w = s[1], .pad_top = pad[0], .pad_left = pad[1],
                                  .pad_bottom = pad[2], .pad_right = pad[3],
                                  .count_include_pad = nd->pool.count_include_pad};
    break;
  case WK_NODE_LINEAR:
    WK_TRY(wk_jint(j, o, "out", 1, WK_MODEL_MAX_CLASSES, &nd->out_ch));
    WK_TRY(wk_jbool(j, o, "bias", &nd->bias));
    break;
  case WK_NODE_DROPOUT:
    WK_TRY(wk_jfloat(j, o, "p", 0.0, 0.999, &nd->drop_p));
    break;
  default:
    break;
  }
  return WK_OK;
}

static wk_status wk_arch_nodes(const wk_jctx *jc, wk_ctx *ctx, const cJSON *nodes,
                               const int input[3], wk_net **out) {
  wk_jctx j = *jc;
  const int n = cJSON_GetArraySize(nodes);
  if (n < 1 || n > WK_MODEL_MAX_NODES)
    return wk_jfail(&j, WK_ERR_FORMAT, "%d nodes (need 1 to %d)", n, WK_MODEL_MAX_NODES);
  wk_net *net;
  WK_TRY(wk_net_create(ctx, input[0], input[1], input[2], &net));
  /* walked along the list: cJSON_GetArrayItem(nodes, i) starts from the head
   * each time, which made a 100,000-node file take seconds to read */
  const cJSON *item = nodes->child;
  for (j.node = 0; j.node < n; j.node++, item = item->next) {
    wk_node nd;
    wk_status s = wk_node_from_json(&j, item, j.node + 1, &nd);
    if (s == WK_OK && wk_net_add_node(net, &nd) < 0) {
      /* the builder recorded why; finalize-style check reports it */
      s = wk_net_build_error(net);
      s = wk_jfail(&j, s, "%s", wk_last_error());
    }
    if (s != WK_OK) {
      wk_net_destroy(net);
      return s;
    }
  }
  *out = net;
  return WK_OK;
}

static wk_status wk_arch_parse(const wk_jctx *j, wk_ctx *ctx, const cJSON *root, wk_net **net,
                               wk_model_meta *meta) {
  if (!cJSON_IsObject(root)) return wk_jfail(j, WK_ERR_FORMAT, "not a JSON object");
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
  if (!cJSON_IsString(name) || !name->valuestring[0] ||
      strlen(name->valuestring) >= sizeof meta->arch)
    return wk_jfail(j, WK_ERR_FORMAT, "'name' missing or too long");
  int input[3] = {0, 0, 0}, classes = 0;
  float width = 1.0f;
  WK_TRY(wk_jints(j, root, "input", 3, 1, WK_MODEL_MAX_INPUT_PX, input));
  if (input[2] > WK_MODEL_MAX_INPUT_CH)
    return wk_jfail(j, WK_ERR_FORMAT, "input has %d channels", input[2]);
  WK_TRY(wk_jint(j, root, "num_classes", 1, WK_MODEL_MAX_CLASSES, &classes));
  if (cJSON_GetObjectItemCaseSensitive(root, "width"))
    WK_TRY(wk_jfloat(j, root, "width", 0.01, 4.0, &width));
  const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
  if (nodes && !cJSON_IsArray(nodes)) return wk_jfail(j, WK_ERR_FORMAT, "'nodes' not an array");
  snprintf(meta->arch, sizeof meta->arch, "%s", name->valuestring);
  meta->width = width;
  meta->n_classes = classes;
  if (nodes) {
    WK_TRY(wk_arch_nodes(j, ctx, nodes, input, net));
  } else {
    if (input[2] != 3) return wk_jfail(j, WK_ERR_FORMAT, "zoo models take 3 input channels");
    wk_arch_opts o = {.num_classes = classes, .in_h = input[0], .in_w = input[1], .width = width};
    wk_status s = wk_zoo_build_graph(ctx, name->valuestring, &o, net);
    if (s != WK_OK) return wk_jfail(j, s, "%s", wk_last_error());
  }
  const int64_t features = wk_net_output_features(*net);
  if (features != classes) {
    wk_net_destroy(*net);
    *net = NULL;
    return wk_jfail(j, WK_ERR_FORMAT, "the graph ends in %lld outputs, num_classes says %d",
                    (long long)features, classes);
  }
  return WK_OK;
}

wk_status wk_arch_from_json(wk_ctx *ctx, const char *json, const char *what, wk_net **net,
                            wk_model_meta *meta) {
  *net = NULL;
  wk_jctx j = {.what = what, .node = -1};
  cJSON *root = cJSON_Parse(json);
  if (!root) return wk_jfail(&j, WK_ERR_FORMAT, "not valid JSON");
  wk_status s = wk_arch_parse(&j, ctx, root, net, meta);
  cJSON_Delete(root);
  return s;
}
