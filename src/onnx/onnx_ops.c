/* onnx_ops.c - float ONNX ops -> whisker nodes: Conv, BatchNormalization,
 * Relu, Clip (ReLU/ReLU6), Add, GlobalAveragePool, AveragePool, MaxPool, Gemm,
 * MatMul (+ a constant Add as its bias), Flatten and Reshape to [N, -1], and
 * Transpose to NHWC before a Flatten (whisker's export writes that). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx_import_impl.h"

static wk_node wk_ops_node(wk_node_op op, int in) {
  wk_node nd;
  memset(&nd, 0, sizeof nd);
  nd.op = op;
  nd.n_in = 1;
  nd.in[0] = in;
  return nd;
}

/* auto_pad other than NOTSET/VALID changes pads by the input size: refused. */
static wk_status wk_ops_auto_pad(wk_imp *imp, const Onnx__NodeProto *node, bool *valid) {
  const Onnx__AttributeProto *a = wk_onnx_attr(node, "auto_pad");
  *valid = false;
  if (a && a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "attribute 'auto_pad' is not a STRING");
  if (!a || !a->has_s || a->s.len == 0) return WK_OK;
  if (a->s.len == 6 && !memcmp(a->s.data, "NOTSET", 6)) return WK_OK;
  if (a->s.len == 5 && !memcmp(a->s.data, "VALID", 5)) {
    *valid = true;
    return WK_OK;
  }
  return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "auto_pad SAME_* is not supported");
}

/* Reads a 2-D attribute (strides, dilations, kernel_shape) or its default. */
static wk_status wk_ops_pair(wk_imp *imp, const Onnx__NodeProto *node, const char *name,
                             int dflt, int lo, int hi, int out[2]) {
  int64_t v[2];
  int n = wk_onnx_attr_ints(node, name, v, 2);
  if (n < 0) {
    out[0] = out[1] = dflt;
    return WK_OK;
  }
  if (n != 2 || v[0] < lo || v[0] > hi || v[1] < lo || v[1] > hi)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "'%s' must be 2 values in [%d, %d]", name,
                       lo, hi);
  out[0] = (int)v[0];
  out[1] = (int)v[1];
  return WK_OK;
}

/* pads [top, left, bottom, right] (ONNX: x1_begin, x2_begin, x1_end, x2_end),
 * each at most max. */
static wk_status wk_ops_pads(wk_imp *imp, const Onnx__NodeProto *node, int max, int out[4]) {
  bool valid;
  WK_TRY(wk_ops_auto_pad(imp, node, &valid));
  int64_t v[4] = {0, 0, 0, 0};
  int n = wk_onnx_attr_ints(node, "pads", v, 4);
  if (n >= 0 && n != 4) return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "'pads' needs 4 values");
  for (int i = 0; i < 4; i++) {
    if (v[i] < 0 || v[i] > max)
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "pad %lld out of range [0, %d]",
                         (long long)v[i], max);
    out[i] = valid ? 0 : (int)v[i];
  }
  return WK_OK;
}

wk_status wk_imp_conv_attrs(wk_imp *imp, const Onnx__NodeProto *node, const wk_iv *w,
                            wk_node *nd) {
  const int kmax = WK_MODEL_MAX_KERNEL;
  if (w->ndim != 4 || w->dims[0] < 1 || w->dims[2] < 1 || w->dims[2] > kmax || w->dims[3] < 1 ||
      w->dims[3] > kmax)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "weight '%s' must be 2-D conv [O, I, KH, KW]",
                       w->name);
  if (w->dims[0] > WK_MODEL_MAX_CONV_OUT)
    return wk_imp_fail(imp, node, WK_ERR_LIMIT, "%lld output channels (a model holds at most %d)",
                       (long long)w->dims[0], WK_MODEL_MAX_CONV_OUT);
  int k[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1}, pad[4] = {0, 0, 0, 0};
  WK_TRY(wk_ops_pair(imp, node, "kernel_shape", (int)w->dims[2], 1, kmax, k));
  WK_TRY(wk_ops_pair(imp, node, "strides", 1, 1, kmax, s));
  WK_TRY(wk_ops_pair(imp, node, "dilations", 1, 1, kmax, d));
  WK_TRY(wk_ops_pads(imp, node, kmax, pad));
  if (k[0] != w->dims[2] || k[1] != w->dims[3])
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "kernel_shape disagrees with the weight");
  int64_t groups;
  WK_TRY(wk_imp_attr_int(imp, node, "group", 1, &groups));
  if (groups < 1 || groups > WK_MODEL_MAX_CONV_OUT || w->dims[0] % groups)
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "group %lld invalid", (long long)groups);
  nd->op = WK_NODE_CONV;
  nd->out_ch = (int)w->dims[0];
  nd->kh = k[0];
  nd->kw = k[1];
  nd->conv = (wk_conv2d_params){.stride_h = s[0], .stride_w = s[1], .pad_top = pad[0],
                                .pad_left = pad[1], .pad_bottom = pad[2], .pad_right = pad[3],
                                .dilation_h = d[0], .dilation_w = d[1], .groups = (int)groups};
  return WK_OK;
}

/* The input's channels must be I * groups of the weight. */
static wk_status wk_ops_conv_check(wk_imp *imp, const Onnx__NodeProto *node, const wk_iv *x,
                                   const wk_iv *w, const wk_node *nd) {
  int64_t d[4];
  if (wk_imp_onnx_shape(imp, x, d) != 4 || (x->value > 0 &&
                                           wk_net_node(imp->net, x->value - 1)->out_ndim != 3))
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "input must be a spatial [N, C, H, W] map");
  if (d[1] != w->dims[1] * nd->conv.groups)
    return wk_imp_fail(imp, node, WK_ERR_SHAPE, "input has %lld channels, weight expects %lld",
                       (long long)d[1], (long long)(w->dims[1] * nd->conv.groups));
  return WK_OK;
}

static wk_status wk_ops_conv(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x, *w, *b = NULL;
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  WK_TRY(wk_imp_const_in(imp, node, 1, &w));
  if (wk_imp_has_in(node, 2)) WK_TRY(wk_imp_const_in(imp, node, 2, &b));
  wk_node nd = wk_ops_node(WK_NODE_CONV, x->value);
  WK_TRY(wk_imp_conv_attrs(imp, node, w, &nd));
  WK_TRY(wk_ops_conv_check(imp, node, x, w, &nd));
  if (b && b->n != nd.out_ch)
    return wk_imp_fail(imp, node, WK_ERR_SHAPE, "bias has %lld values for %d channels",
                       (long long)b->n, nd.out_ch);
  nd.bias = b != NULL;
  wk_imp_node_name(imp, node, w->name, nd.name);
  const int v = wk_imp_add(imp, node, &nd, wk_imp_floats(w), b ? wk_imp_floats(b) : NULL, NULL,
                           NULL);
  return v < 0 ? imp->failed : wk_imp_set_act(imp, node, 0, v, 4);
}

/* Per-feature values c of input x in whisker's order: a flat x whose ONNX
 * order is (C, H, W) holds them as (H, W, C). */
static float *wk_ops_feature_floats(const wk_iv *c, const wk_iv *x) {
  float *f = wk_imp_floats(c);
  if (!f || !x->flat_h) return f;
  const int64_t hw = (int64_t)x->flat_h * x->flat_w, ch = x->flat_c;
  WK_ASSERT(c->n == hw * ch);
  float *p = malloc((size_t)c->n * sizeof *p);
  for (int64_t k = 0; p && k < ch; k++)
    for (int64_t s = 0; s < hw; s++) p[s * ch + k] = f[k * hw + s];
  free(f);
  return p;
}

static wk_status wk_ops_batchnorm(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x, *p[4];
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  for (int k = 0; k < 4; k++) WK_TRY(wk_imp_const_in(imp, node, (size_t)k + 1, &p[k]));
  int64_t training;
  float eps, momentum;
  WK_TRY(wk_imp_attr_int(imp, node, "training_mode", 0, &training));
  WK_TRY(wk_imp_attr_float(imp, node, "epsilon", 1e-5f, &eps));
  WK_TRY(wk_imp_attr_float(imp, node, "momentum", 0.9f, &momentum));
  if (training != 0)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "training_mode batchnorm");
  if (!(eps >= WK_MODEL_MIN_BN_EPS && eps <= 1) || !(momentum >= 0 && momentum <= 1))
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                       "epsilon %g or momentum %g outside what a model holds ([%g, 1], [0, 1])",
                       (double)eps, (double)momentum, WK_MODEL_MIN_BN_EPS);
  int64_t d[4];
  wk_imp_onnx_shape(imp, x, d);
  for (int k = 0; k < 4; k++)
    if (p[k]->n != d[1])
      return wk_imp_fail(imp, node, WK_ERR_SHAPE, "'%s' has %lld values for %lld channels",
                         p[k]->name, (long long)p[k]->n, (long long)d[1]);
  wk_node nd = wk_ops_node(WK_NODE_BATCHNORM, x->value);
  nd.bn.eps = eps;
  nd.bn.momentum = 1.0f - momentum; /* PyTorch's convention */
  wk_imp_node_name(imp, node, p[0]->name, nd.name);
  const int v = wk_imp_add(imp, node, &nd, wk_ops_feature_floats(p[0], x),
                           wk_ops_feature_floats(p[1], x), wk_ops_feature_floats(p[2], x),
                           wk_ops_feature_floats(p[3], x));
  return v < 0 ? imp->failed : wk_imp_set_act_as(imp, node, 0, v, x);
}

/* Relu, or Clip(0, 6) / Clip(0, none). */
static wk_status wk_ops_act(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x;
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  wk_act act = WK_ACT_RELU;
  if (!strcmp(node->op_type, "Clip")) {
    float lo, hi;
    WK_TRY(wk_imp_attr_float(imp, node, "min", -INFINITY, &lo));
    WK_TRY(wk_imp_attr_float(imp, node, "max", INFINITY, &hi));
    double lim[2] = {lo, hi};
    for (int k = 0; k < 2; k++) {
      if (!wk_imp_has_in(node, (size_t)k + 1)) continue;
      wk_iv *c;
      WK_TRY(wk_imp_const_in(imp, node, (size_t)k + 1, &c));
      if (c->n != 1) return wk_imp_fail(imp, node, WK_ERR_FORMAT, "min/max must be scalars");
      lim[k] = c->c[0];
    }
    if (lim[0] != 0 || (lim[1] != 6 && !isinf(lim[1])))
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                         "Clip(%g, %g) is neither ReLU (0, none) nor ReLU6 (0, 6)", lim[0], lim[1]);
    act = isinf(lim[1]) ? WK_ACT_RELU : WK_ACT_RELU6;
  }
  char name[WK_NODE_NAME_MAX];
  wk_imp_node_name(imp, node, NULL, name);
  const int v = wk_imp_add_act(imp, node, x->value, act, name);
  return v < 0 ? imp->failed : wk_imp_set_act_as(imp, node, 0, v, x);
}

int wk_imp_sum(wk_imp *imp, const Onnx__NodeProto *node, size_t ka, size_t kb,
               const char *bias_op, const wk_iv **like) {
  wk_iv *a, *b;
  wk_status s = wk_imp_act_in(imp, node, ka, &a);
  if (s == WK_OK) s = wk_imp_act_in(imp, node, kb, &b);
  if (s != WK_OK) {
    wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                "only the sum of two computed tensors, or a constant bias right after %s, is "
                "supported", bias_op);
    return -1;
  }
  if (a->onnx_rank != b->onnx_rank) { /* [N, C, 1, 1] + [N, C] broadcasts to [N, C, N, C] */
    wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                "'%s' has rank %d and '%s' rank %d: broadcasting is not supported", a->name,
                a->onnx_rank, b->name, b->onnx_rank);
    return -1;
  }
  if (a->flat_h != b->flat_h || a->flat_w != b->flat_w || a->flat_c != b->flat_c) {
    wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                "'%s' and '%s' are flattened in different orders (one from a %dx%dx%d map, "
                "the other from a %dx%dx%d one)", a->name, b->name, a->flat_c, a->flat_h,
                a->flat_w, b->flat_c, b->flat_h, b->flat_w);
    return -1;
  }
  wk_node nd = wk_ops_node(WK_NODE_ADD, a->value);
  nd.n_in = 2;
  nd.in[1] = b->value;
  wk_imp_node_name(imp, node, NULL, nd.name);
  *like = a;
  return wk_imp_add(imp, node, &nd, NULL, NULL, NULL, NULL);
}

static wk_status wk_ops_add(wk_imp *imp, const Onnx__NodeProto *node) {
  const wk_iv *like;
  const int v = wk_imp_sum(imp, node, 0, 1, "MatMul", &like);
  return v < 0 ? imp->failed : wk_imp_set_act_as(imp, node, 0, v, like);
}

int wk_imp_global_pool(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x;
  if (wk_imp_act_in(imp, node, 0, &x) != WK_OK) return -1;
  wk_node nd = wk_ops_node(WK_NODE_GLOBAL_AVGPOOL, x->value);
  wk_imp_node_name(imp, node, NULL, nd.name);
  return wk_imp_add(imp, node, &nd, NULL, NULL, NULL, NULL);
}

static wk_status wk_ops_pool(wk_imp *imp, const Onnx__NodeProto *node, bool is_max) {
  wk_iv *x;
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  int k[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1}, pad[4] = {0, 0, 0, 0};
  if (wk_onnx_attr_ints(node, "kernel_shape", (int64_t[2]){0, 0}, 2) != 2)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "needs a 2-D kernel_shape");
  WK_TRY(wk_ops_pair(imp, node, "kernel_shape", 1, 1, WK_MODEL_MAX_KERNEL, k));
  WK_TRY(wk_ops_pair(imp, node, "strides", 1, 1, WK_MODEL_MAX_KERNEL, s));
  WK_TRY(wk_ops_pair(imp, node, "dilations", 1, 1, 1, d));
  WK_TRY(wk_ops_pads(imp, node, WK_MODEL_MAX_POOL_PAD, pad));
  int64_t ceil_mode, include_pad;
  WK_TRY(wk_imp_attr_int(imp, node, "ceil_mode", 0, &ceil_mode));
  WK_TRY(wk_imp_attr_int(imp, node, "count_include_pad", 0, &include_pad));
  if (ceil_mode != 0)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "ceil_mode 1 is not supported");
  if (node->n_output > 1 && node->output[1] && node->output[1][0])
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "the Indices output is not supported");
  wk_node nd = wk_ops_node(is_max ? WK_NODE_MAXPOOL : WK_NODE_AVGPOOL, x->value);
  nd.pool = (wk_pool2d_params){.kernel_h = k[0], .kernel_w = k[1], .stride_h = s[0],
                               .stride_w = s[1], .pad_top = pad[0], .pad_left = pad[1],
                               .pad_bottom = pad[2], .pad_right = pad[3],
                               .count_include_pad = include_pad != 0};
  wk_imp_node_name(imp, node, NULL, nd.name);
  const int v = wk_imp_add(imp, node, &nd, NULL, NULL, NULL, NULL);
  return v < 0 ? imp->failed : wk_imp_set_act(imp, node, 0, v, 4);
}

wk_status wk_imp_flatten(wk_imp *imp, const Onnx__NodeProto *node, wk_iv *x, size_t out_k) {
  const wk_node *src = x->value > 0 ? wk_net_node(imp->net, x->value - 1) : NULL;
  if (src && src->out_ndim == 1) { /* already flat in whisker (a global pool) */
    WK_TRY(wk_imp_alias(imp, node, out_k, x));
    wk_imp_find(imp, node->output[out_k])->onnx_rank = 2;
    return WK_OK;
  }
  int h, w, c;
  if (src) {
    h = (int)src->out_shape[0], w = (int)src->out_shape[1], c = (int)src->out_shape[2];
  } else {
    wk_net_input_shape(imp->net, &h, &w, &c);
  }
  wk_node nd = wk_ops_node(WK_NODE_FLATTEN, x->value);
  wk_imp_node_name(imp, node, NULL, nd.name);
  const int v = wk_imp_add(imp, node, &nd, NULL, NULL, NULL, NULL);
  if (v < 0) return imp->failed;
  WK_TRY(wk_imp_set_act(imp, node, out_k, v, 2));
  if (h * w > 1) {
    wk_iv *e = wk_imp_find(imp, node->output[out_k]);
    e->flat_h = h, e->flat_w = w, e->flat_c = c;
  }
  return WK_OK;
}

static wk_status wk_ops_flatten(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x;
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  if (!strcmp(node->op_type, "Flatten")) {
    int64_t axis;
    WK_TRY(wk_imp_attr_int(imp, node, "axis", 1, &axis));
    if (axis != 1)
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "only axis 1 (to [N, -1])");
  } else { /* Reshape: the target must be [N, -1] in one of its spellings */
    wk_iv *shape;
    WK_TRY(wk_imp_const_in(imp, node, 1, &shape));
    const int64_t f = wk_imp_features(imp, x);
    const double a = shape->n == 2 ? shape->c[0] : 99, b = shape->n == 2 ? shape->c[1] : 99;
    const bool ok = shape->n == 2 && ((a == 1 || a == 0 || a == -1) && (b == -1 || b == f) &&
                                      !(a == -1 && b == -1));
    if (!ok)
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                         "only a reshape to [N, -1] (a flatten) is supported");
  }
  return wk_imp_flatten(imp, node, x, 0);
}

/* Transpose to NHWC feeding a Flatten (how whisker's own export spells its
 * NHWC-order flatten): one whisker flatten, no column permutation after. */
static wk_status wk_ops_transpose(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x;
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  int64_t perm[4];
  size_t j;
  const Onnx__NodeProto *f = wk_imp_sole_consumer(imp, node->output[0], &j);
  int64_t axis = 1;
  if (f && !strcmp(f->op_type, "Flatten")) WK_TRY(wk_imp_attr_int(imp, f, "axis", 1, &axis));
  if (wk_onnx_attr_ints(node, "perm", perm, 4) != 4 || perm[0] != 0 || perm[1] != 2 ||
      perm[2] != 3 || perm[3] != 1 || !f || strcmp(f->op_type, "Flatten") != 0 || axis != 1)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                       "only a transpose to NHWC (perm 0,2,3,1) followed by Flatten");
  imp->done[j] = true;
  WK_TRY(wk_imp_flatten(imp, f, x, 0));
  wk_iv *e = wk_imp_find(imp, f->output[0]);
  e->flat_h = e->flat_w = e->flat_c = 0; /* already in whisker's order */
  return WK_OK;
}

int wk_imp_linear(wk_imp *imp, const Onnx__NodeProto *node, const wk_iv *x, const char *name,
                  int out_f, float *w, float *bias) {
  const int64_t k = wk_imp_features(imp, x);
  const wk_node *src = x->value > 0 ? wk_net_node(imp->net, x->value - 1) : NULL;
  if (!src || src->out_ndim != 1 || x->onnx_rank != 2) {
    free(w), free(bias);
    wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "input must be a flat [N, K] tensor");
    return -1;
  }
  if (w && x->flat_h) { /* ONNX flattened (C, H, W); whisker (H, W, C) */
    float *p = malloc((size_t)out_f * (size_t)k * sizeof *p);
    const int64_t hw = (int64_t)x->flat_h * x->flat_w, c = x->flat_c;
    WK_ASSERT(hw * c == k); /* both from the flattened value's shape */
    for (int64_t o = 0; p && o < out_f; o++)
      for (int64_t ch = 0; ch < c; ch++)
        for (int64_t s = 0; s < hw; s++) p[o * k + s * c + ch] = w[o * k + ch * hw + s];
    free(w);
    w = p;
  }
  wk_node nd = wk_ops_node(WK_NODE_LINEAR, x->value);
  nd.out_ch = out_f;
  nd.bias = bias != NULL;
  snprintf(nd.name, sizeof nd.name, "%s", name);
  return wk_imp_add(imp, node, &nd, w, bias, NULL, NULL);
}

/* A constant Add that is the only reader of `out` becomes the bias (o values):
 * returns it (malloc'ed) and marks the Add done, *add naming it; else NULL. */
static float *wk_ops_take_bias(wk_imp *imp, const char *out, int o,
                               const Onnx__NodeProto **add) {
  size_t j;
  const Onnx__NodeProto *c = wk_imp_sole_consumer(imp, out, &j);
  if (!c || strcmp(c->op_type, "Add") != 0 || c->n_input != 2) return NULL;
  const char *other = strcmp(c->input[0], out) == 0 ? c->input[1] : c->input[0];
  wk_iv *b = wk_imp_find(imp, other);
  if (!b || !b->is_const || b->n != o) {
    wk_clear_error();
    return NULL;
  }
  imp->done[j] = true;
  *add = c;
  return wk_imp_floats(b);
}

/* Gemm (transA 0) and MatMul with a constant B. */
static wk_status wk_ops_gemm(wk_imp *imp, const Onnx__NodeProto *node) {
  const bool gemm = !strcmp(node->op_type, "Gemm");
  wk_iv *x, *b, *c = NULL;
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  WK_TRY(wk_imp_const_in(imp, node, 1, &b));
  if (gemm && wk_imp_has_in(node, 2)) WK_TRY(wk_imp_const_in(imp, node, 2, &c));
  int64_t trans_a = 0, trans_b = 0;
  float alpha = 1.0f, beta = 1.0f;
  if (gemm) {
    WK_TRY(wk_imp_attr_int(imp, node, "transA", 0, &trans_a));
    WK_TRY(wk_imp_attr_int(imp, node, "transB", 0, &trans_b));
    WK_TRY(wk_imp_attr_float(imp, node, "alpha", 1.0f, &alpha));
    WK_TRY(wk_imp_attr_float(imp, node, "beta", 1.0f, &beta));
  }
  if (trans_a != 0)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "transA 1 is not supported");
  if (b->ndim != 2) return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "B must be 2-D");
  const int64_t o = trans_b ? b->dims[0] : b->dims[1], k = trans_b ? b->dims[1] : b->dims[0];
  if (o > WK_MODEL_MAX_CLASSES)
    return wk_imp_fail(imp, node, WK_ERR_LIMIT, "%lld outputs (a model holds at most %d)",
                       (long long)o, WK_MODEL_MAX_CLASSES);
  if (k != wk_imp_features(imp, x) || o < 1)
    return wk_imp_fail(imp, node, WK_ERR_SHAPE, "B is %lldx%lld for %lld input features",
                       (long long)b->dims[0], (long long)b->dims[1],
                       (long long)wk_imp_features(imp, x));
  if (c && c->n != o && c->n != 1)
    return wk_imp_fail(imp, node, WK_ERR_SHAPE, "C has %lld values for %lld outputs",
                       (long long)c->n, (long long)o);
  /* calloc: every element is written below, but the analyzer loses count
   * of that where wk_imp_linear reorders a flattened input's rows */
  float *w = calloc((size_t)(o * k), sizeof *w), *bias = NULL;
  for (int64_t i = 0; w && i < o; i++)
    for (int64_t j = 0; j < k; j++)
      w[i * k + j] = (float)(alpha * (trans_b ? b->c[i * k + j] : b->c[j * o + i]));
  const Onnx__NodeProto *add = NULL;
  if (c) {
    bias = malloc((size_t)o * sizeof *bias);
    for (int64_t i = 0; bias && i < o; i++) bias[i] = (float)(beta * c->c[c->n == 1 ? 0 : i]);
  } else if (!gemm) {
    bias = wk_ops_take_bias(imp, node->output[0], (int)o, &add);
  }
  char name[WK_NODE_NAME_MAX];
  wk_imp_node_name(imp, node, b->name, name);
  const int v = wk_imp_linear(imp, node, x, name, (int)o, w, bias);
  if (v < 0) return imp->failed;
  return add ? wk_imp_set_act(imp, add, 0, v, 2) : wk_imp_set_act(imp, node, 0, v, 2);
}

wk_status wk_imp_float_op(wk_imp *imp, const Onnx__NodeProto *node, bool *handled) {
  const char *op = node->op_type;
  *handled = true;
  if (!strcmp(op, "Conv")) return wk_ops_conv(imp, node);
  if (!strcmp(op, "BatchNormalization")) return wk_ops_batchnorm(imp, node);
  if (!strcmp(op, "Relu") || !strcmp(op, "Clip")) return wk_ops_act(imp, node);
  if (!strcmp(op, "Add")) return wk_ops_add(imp, node);
  if (!strcmp(op, "GlobalAveragePool")) {
    const int v = wk_imp_global_pool(imp, node);
    return v < 0 ? imp->failed : wk_imp_set_act(imp, node, 0, v, 4);
  }
  if (!strcmp(op, "MaxPool")) return wk_ops_pool(imp, node, true);
  if (!strcmp(op, "AveragePool")) return wk_ops_pool(imp, node, false);
  if (!strcmp(op, "Gemm") || !strcmp(op, "MatMul")) return wk_ops_gemm(imp, node);
  if (!strcmp(op, "Flatten") || !strcmp(op, "Reshape")) return wk_ops_flatten(imp, node);
  if (!strcmp(op, "Transpose")) return wk_ops_transpose(imp, node);
  *handled = false;
  return WK_OK;
}
