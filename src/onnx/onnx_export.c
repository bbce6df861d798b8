/* onnx_export.c - a whisker network as a float ONNX graph (opset 13).
 *
 * The graph is NCHW throughout, as ONNX expects: input "input" float
 * [batch, C, H, W], output "logits" [batch, K]. Conv weights go out as
 * (O, I, KH, KW) under the network's PyTorch-style parameter names, so
 * importing the file back gives the same names. Node by node:
 *   conv -> Conv, batchnorm -> BatchNormalization, relu -> Relu,
 *   relu6 -> Clip(0, 6), max/avg pool -> MaxPool/AveragePool,
 *   global_avgpool -> GlobalAveragePool + Flatten (whisker's output is flat),
 *   flatten of an H x W > 1 map -> Transpose to NHWC + Flatten (whisker
 *   flattens in NHWC order, and its linear weights expect that order),
 *   linear -> Gemm(transB = 1), add -> Add, dropout -> nothing (inference).
 * The class names travel as metadata_props "whisker.classes" (a JSON array),
 * which the importer reads back. Every message, tensor and string is malloc'ed into one list and freed after
 * packing; the file is written atomically. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "onnx/onnx.h"
#include "onnx/onnx_impl.h"

typedef struct wk_exp {
  void **mem;        /* every allocation, freed at the end */
  size_t n_mem, cap_mem;
  bool oom;
  Onnx__NodeProto **nodes;
  size_t n_nodes, cap_nodes;
  Onnx__TensorProto **inits;
  size_t n_inits, cap_inits;
  char **vname;      /* per whisker value: its tensor name */
} wk_exp;

static bool wk_exp_push(wk_exp *e, void ***arr, size_t *n, size_t *cap, void *p) {
  if (!p) return false;
  if (*n == *cap) {
    size_t c = *cap ? 2 * *cap : 64;
    void **a = realloc(*arr, c * sizeof *a);
    if (!a) {
      e->oom = true;
      return false;
    }
    *arr = a;
    *cap = c;
  }
  (*arr)[(*n)++] = p;
  return true;
}

static void *wk_exp_alloc(wk_exp *e, size_t n_bytes) {
  void *p = calloc(1, n_bytes ? n_bytes : 1);
  if (!p || !wk_exp_push(e, &e->mem, &e->n_mem, &e->cap_mem, p)) {
    free(p);
    e->oom = true;
    return NULL;
  }
  return p;
}

WK_PRINTF(2, 3)
static char *wk_exp_str(wk_exp *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = n >= 0 ? wk_exp_alloc(e, (size_t)n + 1) : NULL;
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* A float initializer (data copied; NULL data = zeros), or NULL when out of
 * memory. */
static Onnx__TensorProto *wk_exp_tensor(wk_exp *e, const char *name, int ndim,
                                        const int64_t *dims, const float *data) {
  static const Onnx__TensorProto init = ONNX__TENSOR_PROTO__INIT;
  if (!name) return NULL;
  Onnx__TensorProto *t = wk_exp_alloc(e, sizeof *t);
  size_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
  int64_t *d = wk_exp_alloc(e, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
  uint8_t *raw = wk_exp_alloc(e, n * sizeof(float));
  char *nm = wk_exp_str(e, "%s", name);
  if (!t || !d || !raw || !nm) return NULL;
  *t = init;
  if (ndim) memcpy(d, dims, sizeof(int64_t) * (size_t)ndim);
  if (data) memcpy(raw, data, n * sizeof(float));
  t->n_dims = (size_t)ndim;
  t->dims = d;
  t->has_data_type = true;
  t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  t->name = nm;
  t->has_raw_data = true;
  t->raw_data.len = n * sizeof(float);
  t->raw_data.data = raw;
  return wk_exp_push(e, (void ***)&e->inits, &e->n_inits, &e->cap_inits, t) ? t : NULL;
}

/* The same, returning its name. */
static const char *wk_exp_init(wk_exp *e, const char *name, int ndim, const int64_t *dims,
                               const float *data) {
  const Onnx__TensorProto *t = wk_exp_tensor(e, name, ndim, dims, data);
  return t ? t->name : NULL;
}

static Onnx__AttributeProto *wk_exp_attr(wk_exp *e, Onnx__NodeProto *n, const char *name,
                                         Onnx__AttributeProto__AttributeType type) {
  static const Onnx__AttributeProto init = ONNX__ATTRIBUTE_PROTO__INIT;
  Onnx__AttributeProto *a = wk_exp_alloc(e, sizeof *a);
  Onnx__AttributeProto **list = wk_exp_alloc(e, (n->n_attribute + 1) * sizeof *list);
  char *nm = wk_exp_str(e, "%s", name);
  if (!a || !list || !nm) return NULL;
  *a = init;
  a->name = nm;
  a->has_type = true;
  a->type = type;
  if (n->n_attribute) memcpy(list, n->attribute, n->n_attribute * sizeof *list);
  list[n->n_attribute++] = a;
  n->attribute = list;
  return a;
}

static void wk_exp_attr_ints(wk_exp *e, Onnx__NodeProto *n, const char *name, const int *v,
                             int count) {
  Onnx__AttributeProto *a = wk_exp_attr(e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  int64_t *iv = wk_exp_alloc(e, sizeof(int64_t) * (size_t)count);
  if (!a || !iv) return;
  for (int i = 0; i < count; i++) iv[i] = v[i];
  a->n_ints = (size_t)count;
  a->ints = iv;
}

static void wk_exp_attr_int(wk_exp *e, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = wk_exp_attr(e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (!a) return;
  a->has_i = true;
  a->i = v;
}

static void wk_exp_attr_float(wk_exp *e, Onnx__NodeProto *n, const char *name, float v) {
  Onnx__AttributeProto *a = wk_exp_attr(e, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (!a) return;
  a->has_f = true;
  a->f = v;
}

/* A node "/<scope>/<op>" reading n_in names and writing `out`. */
static Onnx__NodeProto *wk_exp_node(wk_exp *e, const char *op, const char *scope, const char *out,
                                    int n_in, const char *const *in) {
  static const Onnx__NodeProto init = ONNX__NODE_PROTO__INIT;
  Onnx__NodeProto *n = wk_exp_alloc(e, sizeof *n);
  char **ins = wk_exp_alloc(e, sizeof(char *) * (size_t)n_in);
  char **outs = wk_exp_alloc(e, sizeof(char *));
  char *name = wk_exp_str(e, "/%s/%s", scope, op), *opn = wk_exp_str(e, "%s", op);
  if (!n || !ins || !outs || !name || !opn) return NULL;
  for (int i = 0; i < n_in; i++)
    if (!in[i]) return NULL; /* an allocation before failed */
  *n = init;
  for (int i = 0; i < n_in; i++) ins[i] = (char *)in[i];
  outs[0] = (char *)out;
  n->n_input = (size_t)n_in;
  n->input = ins;
  n->n_output = 1;
  n->output = outs;
  n->name = name;
  n->op_type = opn;
  wk_exp_push(e, (void ***)&e->nodes, &e->n_nodes, &e->cap_nodes, n);
  return n;
}

/* Parameter k of node nd as an initializer in PyTorch's layout. */
static const char *wk_exp_param(wk_exp *e, wk_net *net, const wk_node *nd, int k) {
  size_t np;
  const wk_param *p = &wk_net_params(net, &np)[nd->param[k]];
  const float *src = wk_net_weights(net) + p->offset;
  if (p->ndim != 4) return wk_exp_init(e, p->name, p->ndim, p->shape, src);
  const int64_t d[4] = {p->shape[0], p->shape[3], p->shape[1], p->shape[2]};
  Onnx__TensorProto *t = wk_exp_tensor(e, p->name, 4, d, NULL);
  if (!t) return NULL;
  wk_conv_weight_transpose(p, src, (float *)t->raw_data.data, true);
  return t->name;
}

static const char *wk_exp_buffer(wk_exp *e, wk_net *net, const wk_node *nd, int k) {
  size_t nb;
  const wk_param *b = &wk_net_buffers(net, &nb)[nd->buffer[k]];
  return wk_exp_init(e, b->name, b->ndim, b->shape, wk_net_buffer_data(net) + b->offset);
}

/* Inputs of a conv or linear node: x, the weight and the bias if any; returns
 * how many. */
static int wk_exp_weighted_inputs(wk_exp *e, wk_net *net, const wk_node *nd, const char *x,
                                  const char *in[3]) {
  in[0] = x;
  in[1] = wk_exp_param(e, net, nd, 0);
  in[2] = nd->bias ? wk_exp_param(e, net, nd, 1) : NULL;
  return nd->bias ? 3 : 2;
}

/* Clip(x, 0, 6) bounds as initializers named after node i and its output value
 * (two nodes may share a name; initializer names must not). */
static void wk_exp_clip_inputs(wk_exp *e, const wk_node *nd, int i, const char *x,
                               const char *in[3]) {
  static const float lim[2] = {0.0f, 6.0f};
  in[0] = x;
  in[1] = wk_exp_init(e, wk_exp_str(e, "%s:%d:clip_min", nd->name, i + 1), 0, NULL, &lim[0]);
  in[2] = wk_exp_init(e, wk_exp_str(e, "%s:%d:clip_max", nd->name, i + 1), 0, NULL, &lim[1]);
}

static void wk_exp_pool_attrs(wk_exp *e, Onnx__NodeProto *n, const wk_pool2d_params *p) {
  const int k[2] = {p->kernel_h, p->kernel_w}, s[2] = {p->stride_h, p->stride_w};
  const int pad[4] = {p->pad_top, p->pad_left, p->pad_bottom, p->pad_right};
  wk_exp_attr_ints(e, n, "kernel_shape", k, 2);
  wk_exp_attr_ints(e, n, "strides", s, 2);
  wk_exp_attr_ints(e, n, "pads", pad, 4);
}

/* The ONNX nodes of whisker node i (output value i + 1). */
static void wk_exp_node_i(wk_exp *e, wk_net *net, int i, bool last) {
  const wk_node *nd = wk_net_node(net, i);
  const char *x = e->vname[nd->in[0]];
  const char *out = last ? "logits" : wk_exp_str(e, "%s:%d", nd->name, i + 1);
  const char *in2[2] = {x, nd->n_in > 1 ? e->vname[nd->in[1]] : NULL};
  const char *in[5];
  Onnx__NodeProto *n = NULL;
  switch (nd->op) {
  case WK_NODE_CONV: {
    const int n_in = wk_exp_weighted_inputs(e, net, nd, x, in);
    const wk_conv2d_params *p = &nd->conv;
    const int k[2] = {nd->kh, nd->kw}, s[2] = {p->stride_h, p->stride_w};
    const int pad[4] = {p->pad_top, p->pad_left, p->pad_bottom, p->pad_right};
    const int d[2] = {p->dilation_h, p->dilation_w};
    if (!(n = wk_exp_node(e, "Conv", nd->name, out, n_in, in))) break;
    wk_exp_attr_ints(e, n, "kernel_shape", k, 2);
    wk_exp_attr_ints(e, n, "strides", s, 2);
    wk_exp_attr_ints(e, n, "pads", pad, 4);
    wk_exp_attr_ints(e, n, "dilations", d, 2);
    wk_exp_attr_int(e, n, "group", p->groups);
    break;
  }
  case WK_NODE_BATCHNORM:
    in[0] = x;
    in[1] = wk_exp_param(e, net, nd, 0);
    in[2] = wk_exp_param(e, net, nd, 1);
    in[3] = wk_exp_buffer(e, net, nd, 0);
    in[4] = wk_exp_buffer(e, net, nd, 1);
    if (!(n = wk_exp_node(e, "BatchNormalization", nd->name, out, 5, in))) break;
    wk_exp_attr_float(e, n, "epsilon", nd->bn.eps);
    wk_exp_attr_float(e, n, "momentum", 1.0f - nd->bn.momentum);
    break;
  case WK_NODE_ACT:
    if (nd->act == WK_ACT_RELU) {
      wk_exp_node(e, "Relu", nd->name, out, 1, in2);
    } else {
      wk_exp_clip_inputs(e, nd, i, x, in);
      wk_exp_node(e, "Clip", nd->name, out, 3, in);
    }
    break;
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL:
    n = wk_exp_node(e, nd->op == WK_NODE_MAXPOOL ? "MaxPool" : "AveragePool", nd->name, out, 1,
                    in2);
    if (!n) break;
    wk_exp_pool_attrs(e, n, &nd->pool);
    if (nd->op == WK_NODE_AVGPOOL)
      wk_exp_attr_int(e, n, "count_include_pad", nd->pool.count_include_pad);
    break;
  case WK_NODE_GLOBAL_AVGPOOL: {
    const char *mid[1] = {wk_exp_str(e, "%s:%d:pooled", nd->name, i + 1)};
    wk_exp_node(e, "GlobalAveragePool", nd->name, mid[0], 1, in2);
    if ((n = wk_exp_node(e, "Flatten", nd->name, out, 1, mid))) wk_exp_attr_int(e, n, "axis", 1);
    break;
  }
  case WK_NODE_FLATTEN: {
    const wk_node *src = nd->in[0] > 0 ? wk_net_node(net, nd->in[0] - 1) : NULL;
    int h, w, c;
    if (src && src->out_ndim == 1) { /* already flat: whisker's flatten is the identity */
      e->vname[i + 1] = (char *)x;
      if (last) wk_exp_node(e, "Identity", nd->name, out, 1, in2);
      return;
    }
    if (src) h = (int)src->out_shape[0], w = (int)src->out_shape[1];
    else wk_net_input_shape(net, &h, &w, &c);
    const char *mid[1] = {x};
    if (h * w > 1) {
      static const int perm[4] = {0, 2, 3, 1};
      mid[0] = wk_exp_str(e, "%s:%d:nhwc", nd->name, i + 1);
      if ((n = wk_exp_node(e, "Transpose", nd->name, mid[0], 1, in2)))
        wk_exp_attr_ints(e, n, "perm", perm, 4);
    }
    if ((n = wk_exp_node(e, "Flatten", nd->name, out, 1, mid))) wk_exp_attr_int(e, n, "axis", 1);
    break;
  }
  case WK_NODE_LINEAR:
    if ((n = wk_exp_node(e, "Gemm", nd->name, out, wk_exp_weighted_inputs(e, net, nd, x, in), in)))
      wk_exp_attr_int(e, n, "transB", 1);
    break;
  case WK_NODE_ADD:
    wk_exp_node(e, "Add", nd->name, out, 2, in2);
    break;
  case WK_NODE_DROPOUT:
    e->vname[i + 1] = (char *)x;
    if (last) wk_exp_node(e, "Identity", nd->name, out, 1, in2);
    return;
  default:
    WK_ASSERT(!"unknown node op");
  }
  e->vname[i + 1] = (char *)out;
}

/* A graph input/output declaration: float [batch, dims...]. */
static Onnx__ValueInfoProto *wk_exp_value_info(wk_exp *e, const char *name, int ndim,
                                               const int64_t *dims) {
  static const Onnx__ValueInfoProto vi_init = ONNX__VALUE_INFO_PROTO__INIT;
  static const Onnx__TypeProto tp_init = ONNX__TYPE_PROTO__INIT;
  static const Onnx__TypeProto__Tensor tt_init = ONNX__TYPE_PROTO__TENSOR__INIT;
  static const Onnx__TensorShapeProto sh_init = ONNX__TENSOR_SHAPE_PROTO__INIT;
  static const Onnx__TensorShapeProto__Dimension d_init = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
  Onnx__ValueInfoProto *vi = wk_exp_alloc(e, sizeof *vi);
  Onnx__TypeProto *tp = wk_exp_alloc(e, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = wk_exp_alloc(e, sizeof *tt);
  Onnx__TensorShapeProto *sh = wk_exp_alloc(e, sizeof *sh);
  Onnx__TensorShapeProto__Dimension **d = wk_exp_alloc(e, sizeof *d * (size_t)(ndim + 1));
  if (!vi || !tp || !tt || !sh || !d) return NULL;
  *vi = vi_init, *tp = tp_init, *tt = tt_init, *sh = sh_init;
  for (int i = 0; i <= ndim; i++) {
    if (!(d[i] = wk_exp_alloc(e, sizeof **d))) return NULL;
    *d[i] = d_init;
    if (i == 0) {
      d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d[i]->dim_param = wk_exp_str(e, "batch");
    } else {
      d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d[i]->dim_value = dims[i - 1];
    }
  }
  sh->n_dim = (size_t)ndim + 1;
  sh->dim = d;
  tt->has_elem_type = true;
  tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tt->shape = sh;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  vi->name = (char *)name;
  vi->type = tp;
  return vi;
}

/* metadata_props {"whisker.classes": JSON array of meta's names}. */
static Onnx__StringStringEntryProto *wk_exp_classes(wk_exp *e, const wk_model_meta *meta) {
  static const Onnx__StringStringEntryProto init = ONNX__STRING_STRING_ENTRY_PROTO__INIT;
  cJSON *a = cJSON_CreateStringArray((const char *const *)meta->class_names, meta->n_classes);
  char *text = a ? cJSON_PrintUnformatted(a) : NULL;
  cJSON_Delete(a);
  Onnx__StringStringEntryProto *kv = wk_exp_alloc(e, sizeof *kv);
  char *value = text ? wk_exp_str(e, "%s", text) : NULL;
  cJSON_free(text);
  if (!kv || !value) {
    e->oom = true;
    return NULL;
  }
  *kv = init;
  kv->key = wk_exp_str(e, "whisker.classes");
  kv->value = value;
  return kv;
}

static wk_status wk_exp_pack_write(const char *path, Onnx__ModelProto *m) {
  const size_t n = onnx__model_proto__get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return wk_fail(WK_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
  const size_t packed = onnx__model_proto__pack(m, buf);
  wk_status s = packed == n ? wk_atomic_write_file(path, buf, n)
                            : wk_fail(WK_ERR_BACKEND, "%s: protobuf-c packed %zu of %zu bytes",
                                      path, packed, n);
  free(buf);
  return s;
}

wk_status wk_onnx_export(const char *path, wk_net *net, const wk_model_meta *meta) {
  const int n_nodes = wk_net_n_nodes(net);
  if (n_nodes < 1) return wk_fail(WK_ERR_INVALID_ARG, "%s: the network has no nodes", path);
  if (meta && meta->n_classes != wk_net_output_features(net))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: %d classes for %lld outputs", path, meta->n_classes,
                   (long long)wk_net_output_features(net));
  /* what the importer and the model loader would refuse is not written (the
   * API takes any meta, not only one a loader checked) */
  if (meta) WK_TRY(wk_model_meta_check_classes(meta, path));
  wk_exp e = {0};
  e.vname = wk_exp_alloc(&e, sizeof(char *) * (size_t)(n_nodes + 1));
  if (e.vname) e.vname[0] = "input";
  for (int i = 0; !e.oom && i < n_nodes; i++) wk_exp_node_i(&e, net, i, i == n_nodes - 1);
  int h, w, c;
  wk_net_input_shape(net, &h, &w, &c);
  const int64_t in_dims[3] = {c, h, w}, out_dims[1] = {wk_net_output_features(net)};
  Onnx__ValueInfoProto *vin = wk_exp_value_info(&e, "input", 3, in_dims);
  Onnx__ValueInfoProto *vout = wk_exp_value_info(&e, "logits", 1, out_dims);
  Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
  Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
  Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
  Onnx__OperatorSetIdProto *opsets[1] = {&opset};
  graph.name = (char *)"whisker";
  graph.n_node = e.n_nodes;
  graph.node = e.nodes;
  graph.n_initializer = e.n_inits;
  graph.initializer = e.inits;
  graph.n_input = 1;
  graph.input = &vin;
  graph.n_output = 1;
  graph.output = &vout;
  opset.domain = (char *)"";
  opset.has_version = true;
  opset.version = 13;
  model.has_ir_version = true;
  model.ir_version = 7;
  model.producer_name = (char *)"whisker";
  model.producer_version = (char *)WHISKER_VERSION_STRING;
  model.n_opset_import = 1;
  model.opset_import = opsets;
  model.graph = &graph;
  Onnx__StringStringEntryProto *props[1] = {meta ? wk_exp_classes(&e, meta) : NULL};
  if (props[0]) {
    model.n_metadata_props = 1;
    model.metadata_props = props;
  }
  wk_status s = e.oom || !vin || !vout ? wk_fail(WK_ERR_NOMEM, "%s: out of memory", path)
                                       : wk_exp_pack_write(path, &model);
  for (size_t i = 0; i < e.n_mem; i++) free(e.mem[i]);
  free(e.mem);
  free(e.nodes);
  free(e.inits);
  return s;
}
