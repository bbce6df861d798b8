/* onnx_quant.c - quantized ONNX ops -> float whisker nodes.
 *
 * A quantized activation stands for its dequantized value, so QuantizeLinear
 * and DequantizeLinear of activations are pass-throughs (but for the folded
 * activations below). Weights are
 * dequantized to float: w = scale[o] * (q - zero_point[o]) (per output channel
 * or per tensor), an int32 conv bias is b = q * input_scale * weight_scale[o].
 *
 * Folded activations. A quantized op's output covers [scale * (qmin - zp),
 * scale * (qmax - zp)]; quantizers (onnxruntime's quantize_static among them)
 * fold a following Relu or Clip(0, 6) into that range and drop the node. The
 * rule used here, for QLinearConv, QLinearAdd and QLinearMatMul outputs (the
 * QOperator format) and for a QuantizeLinear of an activation (the QDQ
 * format, onnxruntime's default: Conv -> QuantizeLinear -> DequantizeLinear):
 *   - zp == qmin (the range starts at exactly 0: the int8 graph cannot output
 *     a negative value) -> an activation is restored;
 *   - it is ReLU6 when the range ends at or below 6 (within 0.1%), else ReLU.
 * A QuantizeLinear whose input is already non-negative (a Relu or Clip the
 * quantizer kept, or pooling of one) adds nothing; one quantized per channel
 * folds when every channel's range starts at 0 (ReLU6 when all end by 6) and
 * is refused when only some do.
 * In mobilenetv2-12-int8 every folded range starts at 0 and ends at 6.0 (13
 * convs) or below (22 convs, calibrated ranges such as [0, 2.3]): ReLU6 there
 * is what MobileNetV2 has, and for any range [0, m] with m <= 6 it is at least
 * as close to the int8 graph (which saturates at m) as ReLU. A range over 6
 * cannot come from ReLU6, so it gets ReLU. The 17 projection convs and 11 adds
 * have ranges that straddle 0 and get none. The upper saturation at m < 6 is
 * not reproduced: the float network keeps the values the int8 graph clips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx_import_impl.h"

/* Per-channel (n == count) or per-tensor (n == 1) parameter i. */
static double wk_q_at(const wk_iv *p, int64_t i) { return p->c[p->n == 1 ? 0 : i]; }

static wk_status wk_q_params(wk_imp *imp, const Onnx__NodeProto *node, size_t k, int64_t count,
                             wk_iv **scale, wk_iv **zp) {
  WK_TRY(wk_imp_const_in(imp, node, k, scale));
  *zp = NULL;
  if (wk_imp_has_in(node, k + 1)) WK_TRY(wk_imp_const_in(imp, node, k + 1, zp));
  if (((*scale)->n != 1 && (*scale)->n != count) || (*zp && (*zp)->n != 1 && (*zp)->n != count))
    return wk_imp_fail(imp, node, WK_ERR_SHAPE, "scale/zero point '%s' must have 1 or %lld values",
                       (*scale)->name, (long long)count);
  for (int64_t i = 0; i < (*scale)->n; i++)
    if (!((*scale)->c[i] > 0) || !isfinite((*scale)->c[i]))
      return wk_imp_fail(imp, node, WK_ERR_FORMAT, "scale '%s' is not positive", (*scale)->name);
  return WK_OK;
}

/* QuantizeLinear/DequantizeLinear's scale and zero point (inputs 1, 2) for
 * `count` channels: the zero point has the scale's shape, as ONNX requires (a
 * per-tensor scale with a per-channel zero point would read one of its
 * values), and blocked quantization (opset 21's block_size) is refused. */
static wk_status wk_q_qdq_params(wk_imp *imp, const Onnx__NodeProto *node, int64_t count,
                                 wk_iv **s, wk_iv **zp) {
  int64_t block;
  WK_TRY(wk_imp_attr_int(imp, node, "block_size", 0, &block));
  if (block != 0)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "blocked quantization (block_size %lld)",
                       (long long)block);
  WK_TRY(wk_q_params(imp, node, 1, count, s, zp));
  if (*zp && (*zp)->n != (*s)->n)
    return wk_imp_fail(imp, node, WK_ERR_SHAPE,
                       "zero point '%s' has %lld values and scale '%s' %lld: they must match",
                       (*zp)->name, (long long)(*zp)->n, (*s)->name, (long long)(*s)->n);
  return WK_OK;
}

/* qmin and qmax of an ONNX quantized type. */
static wk_status wk_q_range(wk_imp *imp, const Onnx__NodeProto *node, int32_t type, double *qmin,
                            double *qmax) {
  switch (type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: *qmin = 0, *qmax = 255; return WK_OK;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: *qmin = -128, *qmax = 127; return WK_OK;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: *qmin = 0, *qmax = 65535; return WK_OK;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: *qmin = -32768, *qmax = 32767; return WK_OK;
  default:
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "quantized data type %d is not supported",
                       (int)type);
  }
}

/* The rule above for the ranges scale[i] * ([qmin, qmax] - zp[i]) of a
 * quantized type (the zero point's, else `type`): *fold false when no range
 * starts at 0. */
static wk_status wk_q_fold_rule(wk_imp *imp, const Onnx__NodeProto *node, const wk_iv *s,
                                const wk_iv *zp, int32_t type, bool *fold, wk_act *act) {
  double qmin = 0, qmax = 0;
  WK_TRY(wk_q_range(imp, node, zp ? zp->dtype : type, &qmin, &qmax));
  const int64_t n = zp && zp->n > s->n ? zp->n : s->n;
  int64_t at_zero = 0;
  bool to_6 = true;
  for (int64_t i = 0; i < n; i++) {
    const double z = zp ? wk_q_at(zp, i) : 0;
    if (z != qmin) continue;
    at_zero++;
    to_6 = to_6 && wk_q_at(s, i) * (qmax - z) <= 6.0 * 1.001;
  }
  if (at_zero > 0 && at_zero < n)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                       "%lld of %lld channels' ranges start at 0 (a folded ReLU) and the others "
                       "do not", (long long)at_zero, (long long)n);
  *fold = at_zero > 0;
  *act = to_6 ? WK_ACT_RELU6 : WK_ACT_RELU;
  return WK_OK;
}

/* Appends activation act after value *v, named after the node computing it;
 * *v becomes its value. */
static wk_status wk_q_append_act(wk_imp *imp, const Onnx__NodeProto *node, wk_act act, int *v) {
  char base[WK_NODE_NAME_MAX], name[WK_NODE_NAME_MAX];
  snprintf(base, sizeof base, "%.*s.%s", WK_NODE_NAME_MAX - 8,
           *v > 0 ? wk_net_node(imp->net, *v - 1)->name : "input",
           act == WK_ACT_RELU6 ? "relu6" : "relu");
  wk_imp_unique_name(imp, base, name);
  const int a = wk_imp_add_act(imp, node, *v, act, name);
  if (a < 0) return imp->failed;
  *v = a;
  return WK_OK;
}

/* Appends the activation folded into the per-tensor output range (scale, zp)
 * at inputs k, k + 1 of a QLinear op, if any; *v becomes its value. */
static wk_status wk_q_folded_act(wk_imp *imp, const Onnx__NodeProto *node, size_t k, int *v) {
  wk_iv *s, *zp;
  WK_TRY(wk_q_params(imp, node, k, 1, &s, &zp));
  bool fold;
  wk_act act;
  WK_TRY(wk_q_fold_rule(imp, node, s, zp, ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, &fold, &act));
  return fold ? wk_q_append_act(imp, node, act, v) : WK_OK;
}

/* Value v cannot be negative: an activation, or pooling/flattening of one. */
static bool wk_q_nonneg(const wk_imp *imp, int v) {
  while (v > 0) {
    const wk_node *nd = wk_net_node(imp->net, v - 1);
    if (nd->op == WK_NODE_ACT) return true;
    if (nd->op != WK_NODE_MAXPOOL && nd->op != WK_NODE_AVGPOOL &&
        nd->op != WK_NODE_GLOBAL_AVGPOOL && nd->op != WK_NODE_FLATTEN &&
        nd->op != WK_NODE_DROPOUT)
      return false;
    v = nd->in[0];
  }
  return false;
}

/* QuantizeLinear of activation x (QDQ graphs): a pass-through, with the
 * activation its range folds restored (see above). */
static wk_status wk_q_quantize_act(wk_imp *imp, const Onnx__NodeProto *node, wk_iv *x) {
  int64_t axis, type, d[4];
  WK_TRY(wk_imp_attr_int(imp, node, "axis", 1, &axis));
  WK_TRY(wk_imp_attr_int(imp, node, "output_dtype", 0, &type));
  const int r = wk_imp_onnx_shape(imp, x, d);
  if (axis < 0) axis += r;
  wk_iv *s, *zp;
  WK_TRY(wk_q_qdq_params(imp, node, axis >= 0 && axis < r ? d[axis] : 1, &s, &zp));
  if (s->n > 1 && (axis < 0 || axis >= r))
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "axis out of range");
  bool fold;
  wk_act act;
  WK_TRY(wk_q_fold_rule(imp, node, s, zp,
                        type ? (int32_t)type : ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, &fold, &act));
  if (!fold || wk_q_nonneg(imp, x->value)) return wk_imp_alias(imp, node, 0, x);
  int v = x->value;
  WK_TRY(wk_q_append_act(imp, node, act, &v));
  return wk_imp_set_act_as(imp, node, 0, v, x);
}

static wk_status wk_q_quantize(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x = wk_imp_find(imp, wk_imp_has_in(node, 0) ? node->input[0] : "");
  if (!x) return imp->failed;
  const bool dq = !strcmp(node->op_type, "DequantizeLinear");
  if (!x->is_const) return dq ? wk_imp_alias(imp, node, 0, x) : wk_q_quantize_act(imp, node, x);
  if (!dq) return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "quantizing a constant");
  /* a quantized weight (QDQ graphs): dequantize it along `axis` */
  int64_t axis, inner = 1, count = 1;
  WK_TRY(wk_imp_attr_int(imp, node, "axis", 1, &axis));
  if (axis < 0) axis += x->ndim;
  wk_iv *s, *zp;
  if (axis >= 0 && axis < x->ndim) count = x->dims[axis];
  WK_TRY(wk_q_qdq_params(imp, node, count, &s, &zp));
  if (s->n > 1 && (axis < 0 || axis >= x->ndim))
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "axis out of range");
  for (int64_t d = axis + 1; s->n > 1 && d < x->ndim; d++) inner *= x->dims[d];
  WK_TRY(wk_imp_charge(imp, node, (double)x->n * sizeof(double)));
  double *c = malloc((size_t)(x->n ? x->n : 1) * sizeof *c);
  if (!c) return wk_imp_fail(imp, node, WK_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < x->n; i++) {
    const int64_t ch = s->n > 1 ? (i / inner) % count : 0;
    c[i] = wk_q_at(s, ch) * (x->c[i] - (zp ? wk_q_at(zp, ch) : 0));
  }
  return wk_imp_set_const(imp, node, 0, c, x->n, x->ndim, x->dims,
                          ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
}

static wk_status wk_q_conv(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x, *xs, *xzp, *w, *ws, *wzp, *b = NULL;
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  WK_TRY(wk_q_params(imp, node, 1, 1, &xs, &xzp));
  WK_TRY(wk_imp_const_in(imp, node, 3, &w));
  wk_node nd;
  memset(&nd, 0, sizeof nd);
  nd.n_in = 1;
  nd.in[0] = x->value;
  WK_TRY(wk_imp_conv_attrs(imp, node, w, &nd));
  const int64_t o = nd.out_ch, per_o = w->n / o;
  WK_TRY(wk_q_params(imp, node, 4, o, &ws, &wzp));
  if (wk_imp_has_in(node, 8)) WK_TRY(wk_imp_const_in(imp, node, 8, &b));
  if (b && b->n != o)
    return wk_imp_fail(imp, node, WK_ERR_SHAPE, "bias has %lld values for %lld channels",
                       (long long)b->n, (long long)o);
  int64_t d[4];
  wk_imp_onnx_shape(imp, x, d);
  if (d[1] != w->dims[1] * nd.conv.groups)
    return wk_imp_fail(imp, node, WK_ERR_SHAPE, "input has %lld channels, weight expects %lld",
                       (long long)d[1], (long long)(w->dims[1] * nd.conv.groups));
  float *wf = malloc((size_t)w->n * sizeof *wf), *bf = b ? malloc((size_t)o * sizeof *bf) : NULL;
  for (int64_t i = 0; wf && i < w->n; i++) {
    const int64_t ch = i / per_o;
    wf[i] = (float)(wk_q_at(ws, ch) * (w->c[i] - (wzp ? wk_q_at(wzp, ch) : 0)));
  }
  for (int64_t i = 0; bf && i < o; i++) bf[i] = (float)(b->c[i] * xs->c[0] * wk_q_at(ws, i));
  nd.bias = b != NULL;
  wk_imp_node_name(imp, node, w->name, nd.name);
  int v = wk_imp_add(imp, node, &nd, wf, bf, NULL, NULL);
  if (v < 0) return imp->failed;
  WK_TRY(wk_q_folded_act(imp, node, 6, &v));
  return wk_imp_set_act(imp, node, 0, v, 4);
}

static wk_status wk_q_add(wk_imp *imp, const Onnx__NodeProto *node) {
  const wk_iv *like;
  int v = wk_imp_sum(imp, node, 0, 3, "QLinearMatMul", &like);
  if (v < 0) return imp->failed;
  WK_TRY(wk_q_folded_act(imp, node, 6, &v));
  return wk_imp_set_act_as(imp, node, 0, v, like);
}

static wk_status wk_q_global_pool(wk_imp *imp, const Onnx__NodeProto *node) {
  int64_t channels_last;
  WK_TRY(wk_imp_attr_int(imp, node, "channels_last", 0, &channels_last));
  if (channels_last != 0)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "channels_last input");
  const int v = wk_imp_global_pool(imp, node);
  return v < 0 ? imp->failed : wk_imp_set_act(imp, node, 0, v, 4);
}

/* The QLinearAdd of a constant that is the only reader of `out`: its bias
 * (dequantized, malloc'ed); marks it done. */
static float *wk_q_take_bias(wk_imp *imp, const char *out, int64_t o,
                             const Onnx__NodeProto **add) {
  size_t j;
  const Onnx__NodeProto *c = wk_imp_sole_consumer(imp, out, &j);
  if (!c || !c->op_type || strcmp(c->op_type, "QLinearAdd") != 0 || c->n_input < 8) return NULL;
  /* a damaged file can leave input names unset (NULL) */
  const size_t k = c->input[0] && strcmp(c->input[0], out) == 0 ? 3 : 0;
  if (!c->input[k]) return NULL;
  wk_iv *q = wk_imp_find(imp, c->input[k]), *s = NULL, *zp = NULL;
  const size_t saved = imp->cur;
  imp->cur = j;
  const bool ok = q && q->is_const && q->n == o && wk_q_params(imp, c, k + 1, o, &s, &zp) == WK_OK;
  imp->cur = saved;
  if (!ok) {
    wk_clear_error();
    return NULL;
  }
  float *bias = malloc((size_t)o * sizeof *bias);
  for (int64_t i = 0; bias && i < o; i++)
    bias[i] = (float)(wk_q_at(s, i) * (q->c[i] - (zp ? wk_q_at(zp, i) : 0)));
  imp->done[j] = true;
  *add = c;
  return bias;
}

static wk_status wk_q_matmul(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x, *xs, *xzp, *b, *bs, *bzp;
  WK_TRY(wk_imp_act_in(imp, node, 0, &x));
  WK_TRY(wk_q_params(imp, node, 1, 1, &xs, &xzp));
  WK_TRY(wk_imp_const_in(imp, node, 3, &b));
  if (b->ndim != 2) return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "B must be 2-D");
  const int64_t k = b->dims[0], o = b->dims[1];
  if (o > WK_MODEL_MAX_CLASSES)
    return wk_imp_fail(imp, node, WK_ERR_LIMIT, "%lld outputs (a model holds at most %d)",
                       (long long)o, WK_MODEL_MAX_CLASSES);
  if (k != wk_imp_features(imp, x) || o < 1)
    return wk_imp_fail(imp, node, WK_ERR_SHAPE, "B is %lldx%lld for %lld input features",
                       (long long)k, (long long)o, (long long)wk_imp_features(imp, x));
  WK_TRY(wk_q_params(imp, node, 4, o, &bs, &bzp));
  float *w = malloc((size_t)(o * k) * sizeof *w);
  for (int64_t i = 0; w && i < o; i++)
    for (int64_t j = 0; j < k; j++)
      w[i * k + j] = (float)(wk_q_at(bs, i) * (b->c[j * o + i] - (bzp ? wk_q_at(bzp, i) : 0)));
  const Onnx__NodeProto *add = NULL;
  float *bias = wk_q_take_bias(imp, node->output[0], o, &add);
  char name[WK_NODE_NAME_MAX];
  wk_imp_node_name(imp, node, b->name, name);
  int v = wk_imp_linear(imp, node, x, name, (int)o, w, bias);
  if (v < 0) return imp->failed;
  const Onnx__NodeProto *last = add ? add : node;
  WK_TRY(wk_q_folded_act(imp, last, 6, &v));
  return wk_imp_set_act(imp, last, 0, v, 2);
}

wk_status wk_imp_quant_op(wk_imp *imp, const Onnx__NodeProto *node, bool *handled) {
  const char *op = node->op_type;
  *handled = true;
  imp->quantized |= !strncmp(op, "QLinear", 7) || !strcmp(op, "QuantizeLinear");
  if (!strcmp(op, "QuantizeLinear") || !strcmp(op, "DequantizeLinear")) {
    return wk_q_quantize(imp, node);
  }
  if (!strcmp(op, "QLinearConv")) return wk_q_conv(imp, node);
  if (!strcmp(op, "QLinearAdd")) return wk_q_add(imp, node);
  if (!strcmp(op, "QLinearGlobalAveragePool")) return wk_q_global_pool(imp, node);
  if (!strcmp(op, "QLinearMatMul")) return wk_q_matmul(imp, node);
  *handled = false;
  return WK_OK;
}
