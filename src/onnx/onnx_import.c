/* onnx_import.c - ONNX graph -> whisker network: the entry table, the walk over
 * the nodes in their (topological) order, node names, and the weights copied
 * into the finalized network (see onnx_import_impl.h for the state). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "onnx/onnx_import_impl.h"

wk_status (wk_imp_fail)(wk_imp *imp, const Onnx__NodeProto *node, wk_status code,
                      const char *fmt, ...) {
  imp->failed = code;
  if (!node && imp->cur < imp->g->n_node) node = imp->g->node[imp->cur];
  char msg[320];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!node) return wk_fail(code, "%s: %s", imp->path, msg);
  return wk_fail(code, "%s: node '%s' (%s): %s", imp->path, node->name ? node->name : "",
                 node->op_type ? node->op_type : "?", msg);
}

/* ------------------------------------------------------------------ attributes */

static const char *wk_imp_attr_type_name(Onnx__AttributeProto__AttributeType t) {
  switch (t) {
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: return "FLOAT";
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: return "INT";
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: return "STRING";
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: return "TENSOR";
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS: return "FLOATS";
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS: return "INTS";
  default: return "of another type";
  }
}

/* Checks that present attribute a is of type `want`: its declared type, or,
 * in a file that declares none, the value's field (has) being set. */
static wk_status wk_imp_attr_typed(wk_imp *imp, const Onnx__NodeProto *node, const char *name,
                                   Onnx__AttributeProto__AttributeType want, bool has,
                                   const Onnx__AttributeProto *a) {
  if (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED) {
    if (a->type == want) return WK_OK;
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "attribute '%s' is %s, not %s", name,
                       wk_imp_attr_type_name(a->type), wk_imp_attr_type_name(want));
  }
  if (!has)
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "attribute '%s' holds no %s value", name,
                       wk_imp_attr_type_name(want));
  return WK_OK;
}

wk_status wk_imp_attr_int(wk_imp *imp, const Onnx__NodeProto *node, const char *name,
                          int64_t dflt, int64_t *out) {
  const Onnx__AttributeProto *a = wk_onnx_attr(node, name);
  *out = dflt;
  if (!a) return WK_OK;
  WK_TRY(wk_imp_attr_typed(imp, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, a->has_i,
                           a));
  *out = a->i;
  return WK_OK;
}

wk_status wk_imp_attr_float(wk_imp *imp, const Onnx__NodeProto *node, const char *name,
                            float dflt, float *out) {
  const Onnx__AttributeProto *a = wk_onnx_attr(node, name);
  *out = dflt;
  if (!a) return WK_OK;
  WK_TRY(wk_imp_attr_typed(imp, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT,
                           a->has_f, a));
  *out = a->f;
  return WK_OK;
}

/* ------------------------------------------------------------------ entries */

/* A new entry for name, or NULL when out of memory. */
static wk_iv *wk_imp_new(wk_imp *imp, const char *name) {
  WK_ASSERT(imp->n_v < imp->cap_v);
  if (!wk_strmap_put(&imp->entries, name, (int64_t)imp->n_v)) return NULL;
  wk_iv *e = &imp->v[imp->n_v++];
  memset(e, 0, sizeof *e);
  e->name = name;
  return e;
}

static wk_iv *wk_imp_lookup(wk_imp *imp, const char *name) {
  int64_t i;
  return wk_strmap_get(&imp->entries, name, &i) ? &imp->v[i] : NULL;
}

/* Materializes tensor t as a constant entry; fails naming the file, the
 * current node and the tensor. */
static wk_status wk_imp_tensor_const(wk_imp *imp, const Onnx__TensorProto *t, const char *name,
                                     wk_iv **out) {
  char what[160];
  snprintf(what, sizeof what, "tensor '%s'", name);
  if (t->n_dims > WK_ONNX_MAX_DIMS)
    return wk_imp_fail(imp, NULL, WK_ERR_UNSUPPORTED, "%s: %zu dims", what, t->n_dims);
  const int64_t n = wk_onnx_tensor_numel(t, what);
  if (n < 0) return wk_imp_fail(imp, NULL, WK_ERR_LIMIT, "%s", wk_last_error());
  WK_TRY(wk_imp_charge(imp, NULL, (double)n * sizeof(double)));
  double *c = malloc((size_t)(n ? n : 1) * sizeof *c);
  if (!c) return wk_imp_fail(imp, NULL, WK_ERR_NOMEM, "%s: out of memory", what);
  wk_status s = wk_onnx_tensor_values(t, what, c, n);
  if (s != WK_OK) {
    free(c);
    return wk_imp_fail(imp, NULL, s, "%s", wk_last_error());
  }
  wk_iv *e = wk_imp_new(imp, name);
  if (!e) {
    free(c);
    return wk_imp_fail(imp, NULL, WK_ERR_NOMEM, "%s: out of memory", what);
  }
  e->is_const = true;
  e->c = c;
  e->owns_c = true;
  e->n = n;
  e->ndim = (int)t->n_dims;
  for (size_t i = 0; i < t->n_dims; i++) e->dims[i] = t->dims[i];
  e->dtype = t->data_type;
  *out = e;
  return WK_OK;
}

wk_iv *wk_imp_find(wk_imp *imp, const char *name) {
  wk_iv *e = wk_imp_lookup(imp, name);
  if (e) return e;
  int64_t i;
  if (wk_strmap_get(&imp->inits, name, &i)) {
    const Onnx__TensorProto *t = imp->g->initializer[i];
    return wk_imp_tensor_const(imp, t, t->name, &e) == WK_OK ? e : NULL;
  }
  wk_imp_fail(imp, NULL, WK_ERR_FORMAT, "tensor '%s' is used before any node computes it", name);
  return NULL;
}

bool wk_imp_has_in(const Onnx__NodeProto *node, size_t k) {
  return k < node->n_input && node->input[k] && node->input[k][0];
}

static wk_status wk_imp_in(wk_imp *imp, const Onnx__NodeProto *node, size_t k, bool want_const,
                           wk_iv **out) {
  if (!wk_imp_has_in(node, k))
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "input %zu is missing", k);
  wk_iv *e = wk_imp_find(imp, node->input[k]);
  if (!e) return imp->failed;
  if (e->is_const != want_const)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "input '%s' must be %s", node->input[k],
                       want_const ? "a constant (an initializer)"
                                  : "computed from the graph input, not a constant");
  *out = e;
  return WK_OK;
}

wk_status wk_imp_act_in(wk_imp *imp, const Onnx__NodeProto *node, size_t k, wk_iv **out) {
  return wk_imp_in(imp, node, k, false, out);
}

wk_status wk_imp_const_in(wk_imp *imp, const Onnx__NodeProto *node, size_t k, wk_iv **out) {
  return wk_imp_in(imp, node, k, true, out);
}

static wk_status wk_imp_out(wk_imp *imp, const Onnx__NodeProto *node, size_t k, wk_iv **out) {
  if (k >= node->n_output || !node->output[k] || !node->output[k][0])
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "output %zu is missing", k);
  if (wk_imp_lookup(imp, node->output[k]))
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "output '%s' is computed twice",
                       node->output[k]);
  *out = wk_imp_new(imp, node->output[k]);
  return *out ? WK_OK : wk_imp_fail(imp, node, WK_ERR_NOMEM, "out of memory");
}

wk_status wk_imp_set_act(wk_imp *imp, const Onnx__NodeProto *node, size_t k, int value,
                         int onnx_rank) {
  wk_iv *e;
  WK_TRY(wk_imp_out(imp, node, k, &e));
  e->value = value;
  e->onnx_rank = onnx_rank;
  return WK_OK;
}

wk_status wk_imp_set_act_as(wk_imp *imp, const Onnx__NodeProto *node, size_t k, int value,
                            const wk_iv *like) {
  const int rank = like->onnx_rank, h = like->flat_h, w = like->flat_w, c = like->flat_c;
  wk_iv *e;
  WK_TRY(wk_imp_out(imp, node, k, &e));
  e->value = value;
  e->onnx_rank = rank;
  e->flat_h = h, e->flat_w = w, e->flat_c = c;
  return WK_OK;
}

wk_status wk_imp_charge(wk_imp *imp, const Onnx__NodeProto *node, double n_bytes) {
  if (n_bytes > (double)(imp->budget_bytes - imp->used_bytes))
    return wk_imp_fail(imp, node, WK_ERR_LIMIT,
                       "constants and weights would need more than %zu MiB (%d times the "
                       "file's size plus %zu MiB)", imp->budget_bytes >> 20,
                       WK_IMP_BYTES_PER_FILE_BYTE, WK_IMP_BYTES_FLOOR >> 20);
  imp->used_bytes += (size_t)n_bytes;
  return WK_OK;
}

static wk_status wk_imp_const_out(wk_imp *imp, const Onnx__NodeProto *node, size_t k, double *c,
                                  bool owns, int64_t n, int ndim, const int64_t *dims,
                                  int32_t dtype) {
  wk_iv *e;
  wk_status s = wk_imp_out(imp, node, k, &e);
  if (s != WK_OK) {
    if (owns) free(c);
    return s;
  }
  e->is_const = true;
  e->c = c;
  e->owns_c = owns;
  e->n = n;
  e->ndim = ndim;
  if (ndim) memcpy(e->dims, dims, sizeof(int64_t) * (size_t)ndim);
  e->dtype = dtype;
  return WK_OK;
}

wk_status wk_imp_set_const(wk_imp *imp, const Onnx__NodeProto *node, size_t k, double *c,
                           int64_t n, int ndim, const int64_t *dims, int32_t dtype) {
  return wk_imp_const_out(imp, node, k, c, true, n, ndim, dims, dtype);
}

wk_status wk_imp_set_const_view(wk_imp *imp, const Onnx__NodeProto *node, size_t k,
                                const wk_iv *src, int ndim, const int64_t *dims) {
  return wk_imp_const_out(imp, node, k, src->c, false, src->n, ndim, dims, src->dtype);
}

wk_status wk_imp_alias(wk_imp *imp, const Onnx__NodeProto *node, size_t k, const wk_iv *src) {
  if (src->is_const) return wk_imp_set_const_view(imp, node, k, src, src->ndim, src->dims);
  const wk_iv copy = *src;
  wk_iv *e;
  WK_TRY(wk_imp_out(imp, node, k, &e));
  const char *name = e->name;
  *e = copy;
  e->name = name;
  return WK_OK;
}

float *wk_imp_floats(const wk_iv *c) {
  float *f = malloc((size_t)(c->n ? c->n : 1) * sizeof *f);
  for (int64_t i = 0; f && i < c->n; i++) f[i] = (float)c->c[i];
  return f;
}

int wk_imp_onnx_shape(const wk_imp *imp, const wk_iv *x, int64_t dims[4]) {
  int h, w, c;
  if (x->value == 0) {
    wk_net_input_shape(imp->net, &h, &w, &c);
    dims[0] = 1, dims[1] = c, dims[2] = h, dims[3] = w;
    return 4;
  }
  const wk_node *nd = wk_net_node(imp->net, x->value - 1);
  dims[0] = 1;
  if (nd->out_ndim == 3) {
    dims[1] = nd->out_shape[2], dims[2] = nd->out_shape[0], dims[3] = nd->out_shape[1];
    return 4;
  }
  dims[1] = nd->out_shape[0];
  if (x->onnx_rank == 4) {
    dims[2] = dims[3] = 1;
    return 4;
  }
  return 2;
}

int64_t wk_imp_features(const wk_imp *imp, const wk_iv *x) {
  int64_t d[4];
  int r = wk_imp_onnx_shape(imp, x, d);
  int64_t f = 1;
  for (int i = 1; i < r; i++) f *= d[i];
  return f;
}

/* ------------------------------------------------------------------ nodes */

static bool wk_imp_name_taken(const wk_imp *imp, const char *name) {
  return wk_strmap_get(&imp->taken, name, NULL);
}

/* "/layer1/layer1.0/conv1/Conv" -> "layer1.0.conv1": the scope path without
 * the op, from its last segment that is a dotted module name. */
static void wk_imp_scope_name(const char *onnx_name, char *out, size_t n) {
  char buf[WK_NODE_NAME_MAX * 2];
  snprintf(buf, sizeof buf, "%s", onnx_name);
  char *seg[32], *save = NULL;
  int ns = 0;
  for (char *tok = strtok_r(buf, "/", &save); tok && ns < 32; tok = strtok_r(NULL, "/", &save))
    seg[ns++] = tok;
  out[0] = '\0';
  if (ns == 0) return;
  if (ns > 1) ns--; /* the op itself */
  int k = 0;
  for (int i = 0; i < ns; i++)
    if (strchr(seg[i], '.')) k = i;
  size_t o = 0;
  for (int i = k; i < ns && o + 1 < n; i++)
    o += (size_t)snprintf(out + o, n - o, "%s%s", i > k ? "." : "", seg[i]);
}

void wk_imp_node_name(wk_imp *imp, const Onnx__NodeProto *node, const char *weight, char *out) {
  char base[WK_NODE_NAME_MAX];
  base[0] = '\0';
  if (weight) {
    char w[WK_NODE_NAME_MAX * 2];
    snprintf(w, sizeof w, "%s", weight);
    char *q = strstr(w, "_quantized");
    if (q && q[10] == '\0') *q = '\0';
    size_t len = strlen(w);
    if (len > 7 && strcmp(w + len - 7, ".weight") == 0 && len - 7 < sizeof base) {
      w[len - 7] = '\0';
      memcpy(base, w, len - 6);
    }
  }
  if (!base[0] && node->name && node->name[0])
    wk_imp_scope_name(node->name, base, sizeof base - 8);
  for (char *p = base; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') *p = '_';
  if (!base[0]) {
    snprintf(base, sizeof base - 8, "%s_%zu", node->op_type ? node->op_type : "node", imp->cur);
    for (char *p = base; *p; p++) *p = (char)tolower((unsigned char)*p);
  }
  wk_imp_unique_name(imp, base, out);
}

void wk_imp_unique_name(wk_imp *imp, const char *base, char *out) {
  snprintf(out, WK_NODE_NAME_MAX, "%s", base);
  if (!wk_imp_name_taken(imp, out)) return;
  /* the suffixes before the one base took last are taken: n nodes of one name
   * cost n probes in all, not n^2 / 2 (the node cap keeps i to 6 digits) */
  int64_t i = 2;
  wk_strmap_get(&imp->next_suffix, base, &i);
  for (;; i++) {
    snprintf(out, WK_NODE_NAME_MAX, "%.*s_%lld", WK_NODE_NAME_MAX - 8, base, (long long)i);
    if (!wk_imp_name_taken(imp, out)) break;
  }
  wk_strmap_put(&imp->next_suffix, base, i + 1); /* out of memory: only slower */
}

int wk_imp_add(wk_imp *imp, const Onnx__NodeProto *node, const wk_node *nd, float *p0, float *p1,
               float *b0, float *b1) {
  const int i = wk_net_n_nodes(imp->net);
  if (i >= WK_MODEL_MAX_NODES) {
    free(p0), free(p1), free(b0), free(b1);
    wk_imp_fail(imp, node, WK_ERR_LIMIT, "more than the %d nodes a model may have",
                WK_MODEL_MAX_NODES);
    return -1;
  }
  if (i >= imp->cap_w) {
    int cap = imp->cap_w ? 2 * imp->cap_w : 256;
    wk_imp_w *w = realloc(imp->w, (size_t)cap * sizeof *w);
    if (!w) {
      free(p0), free(p1), free(b0), free(b1);
      wk_imp_fail(imp, node, WK_ERR_NOMEM, "out of memory");
      return -1;
    }
    memset(w + imp->cap_w, 0, (size_t)(cap - imp->cap_w) * sizeof *w);
    imp->w = w;
    imp->cap_w = cap;
  }
  imp->w[i] = (wk_imp_w){.p = {p0, p1}, .buf = {b0, b1}};
  const bool need_p0 = nd->op == WK_NODE_CONV || nd->op == WK_NODE_LINEAR ||
                       nd->op == WK_NODE_BATCHNORM;
  const bool need_p1 = nd->op == WK_NODE_BATCHNORM || (need_p0 && nd->bias);
  if ((need_p0 && !p0) || (need_p1 && !p1) || (nd->op == WK_NODE_BATCHNORM && (!b0 || !b1))) {
    wk_imp_fail(imp, node, WK_ERR_NOMEM, "out of memory");
    return -1;
  }
  const int v = wk_net_add_node(imp->net, nd);
  if (v < 0) {
    wk_net_build_error(imp->net);
    wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "%s", wk_last_error());
    return -1;
  }
  if (!wk_strmap_put(&imp->taken, nd->name, 0)) {
    wk_imp_fail(imp, node, WK_ERR_NOMEM, "out of memory");
    return -1;
  }
  /* the weights just kept (they are no larger than the constants they came from) */
  const wk_node *added = wk_net_node(imp->net, v - 1);
  size_t np, nb;
  const wk_param *params = wk_net_params(imp->net, &np), *bufs = wk_net_buffers(imp->net, &nb);
  double n_bytes = 0;
  for (int k = 0; k < 2; k++) {
    if (added->param[k] >= 0) n_bytes += (double)params[added->param[k]].numel * sizeof(float);
    if (added->buffer[k] >= 0) n_bytes += (double)bufs[added->buffer[k]].numel * sizeof(float);
  }
  return wk_imp_charge(imp, node, n_bytes) == WK_OK ? v : -1;
}

int wk_imp_add_act(wk_imp *imp, const Onnx__NodeProto *node, int x, wk_act act, const char *name) {
  wk_node nd;
  memset(&nd, 0, sizeof nd);
  nd.op = WK_NODE_ACT;
  nd.act = act;
  nd.n_in = 1;
  nd.in[0] = x;
  snprintf(nd.name, sizeof nd.name, "%s", name);
  return wk_imp_add(imp, node, &nd, NULL, NULL, NULL, NULL);
}

const Onnx__NodeProto *wk_imp_sole_consumer(const wk_imp *imp, const char *name, size_t *index) {
  int64_t i;
  if (!wk_strmap_get(&imp->uses, name, &i)) return NULL;
  const wk_imp_use *u = &imp->use[i];
  if (u->is_output || u->n_readers != 1 || u->first <= imp->cur) return NULL;
  *index = u->first;
  return imp->g->node[u->first];
}

/* Records name as read by node i (or as a graph output, i = SIZE_MAX). */
static bool wk_imp_note_use(wk_imp *imp, const char *name, size_t i, size_t *n_use) {
  int64_t k;
  if (!wk_strmap_get(&imp->uses, name, &k)) {
    k = (int64_t)(*n_use)++;
    if (!wk_strmap_put(&imp->uses, name, k)) return false;
    imp->use[k] = (wk_imp_use){.first = SIZE_MAX, .last = SIZE_MAX};
  }
  wk_imp_use *u = &imp->use[k];
  if (i == SIZE_MAX) {
    u->is_output = true;
  } else if (u->last != i) { /* a node reading a name twice is one reader */
    if (u->n_readers++ == 0) u->first = i;
    u->last = i;
  }
  return true;
}

/* Fills the indices by name: initializers, the readers of every tensor. */
static wk_status wk_imp_index(wk_imp *imp, const char *sha256) {
  uint64_t seed = 0;
  for (int i = 0; i < 16; i++) seed = seed << 4 | (uint64_t)(sha256[i] & 0xf); /* hex or not */
  wk_strmap_init(&imp->entries, seed);
  wk_strmap_init(&imp->inits, seed);
  wk_strmap_init(&imp->uses, seed);
  wk_strmap_init(&imp->taken, seed);
  wk_strmap_init(&imp->next_suffix, seed);
  const Onnx__GraphProto *g = imp->g;
  size_t n_names = g->n_output, n_use = 0;
  for (size_t i = 0; i < g->n_node; i++) n_names += g->node[i]->n_input;
  imp->use = calloc(n_names ? n_names : 1, sizeof *imp->use);
  bool ok = imp->use != NULL;
  for (size_t i = 0; ok && i < g->n_initializer; i++)
    if (g->initializer[i]->name && !wk_strmap_get(&imp->inits, g->initializer[i]->name, NULL))
      ok = wk_strmap_put(&imp->inits, g->initializer[i]->name, (int64_t)i);
  for (size_t i = 0; ok && i < g->n_node; i++)
    for (size_t k = 0; ok && k < g->node[i]->n_input; k++)
      if (g->node[i]->input[k]) ok = wk_imp_note_use(imp, g->node[i]->input[k], i, &n_use);
  for (size_t j = 0; ok && j < g->n_output; j++)
    if (g->output[j]->name) ok = wk_imp_note_use(imp, g->output[j]->name, SIZE_MAX, &n_use);
  return ok ? WK_OK : wk_fail(WK_ERR_NOMEM, "%s: out of memory", imp->path);
}

/* ------------------------------------------------------------------ the walk */

/* The graph input: the one input that is not an initializer, float
 * [N or 1, C, H, W] with H, W fixed. */
static wk_status wk_imp_input(wk_imp *imp, const Onnx__ValueInfoProto **out, int dims[3]) {
  const Onnx__ValueInfoProto *in = NULL;
  for (size_t i = 0; i < imp->g->n_input; i++) {
    const Onnx__ValueInfoProto *vi = imp->g->input[i];
    if (vi->name && wk_strmap_get(&imp->inits, vi->name, NULL)) continue;
    if (in) return wk_fail(WK_ERR_UNSUPPORTED, "%s: the graph has more than one input", imp->path);
    in = vi;
  }
  if (!in || !in->name) return wk_fail(WK_ERR_FORMAT, "%s: the graph has no input", imp->path);
  const Onnx__TypeProto *t = in->type;
  const Onnx__TensorShapeProto *sh = t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
                                     t->tensor_type ? t->tensor_type->shape : NULL;
  if (!sh || t->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || sh->n_dim != 4)
    return wk_fail(WK_ERR_UNSUPPORTED, "%s: input '%s' must be a float tensor [N, C, H, W]",
                   imp->path, in->name);
  Onnx__TensorShapeProto__Dimension *const *d = sh->dim;
  const bool n_ok = d[0]->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
                    d[0]->dim_value == 1;
  for (int i = 1; i < 4; i++) {
    if (d[i]->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
        d[i]->dim_value < 1)
      return wk_fail(WK_ERR_UNSUPPORTED, "%s: input '%s' dim %d must be a fixed size", imp->path,
                     in->name, i);
    const int max = i == 1 ? WK_MODEL_MAX_INPUT_CH : WK_MODEL_MAX_INPUT_PX;
    if (d[i]->dim_value > max)
      return wk_fail(WK_ERR_LIMIT, "%s: input '%s' has %lld %s (a model holds at most %d)",
                     imp->path, in->name, (long long)d[i]->dim_value,
                     i == 1 ? "channels" : i == 2 ? "rows" : "columns", max);
    dims[i - 1] = (int)d[i]->dim_value;
  }
  if (!n_ok)
    return wk_fail(WK_ERR_UNSUPPORTED, "%s: input '%s' must have batch 1 or a symbolic batch",
                   imp->path, in->name);
  *out = in;
  return WK_OK;
}

/* Every node has an op type and every input and output a name (a damaged
 * file can leave them unset): checked once, so the walk and the look-ahead at
 * later nodes (a fused bias, a flatten) can compare names freely. */
static wk_status wk_imp_check_names(wk_imp *imp) {
  for (size_t i = 0; i < imp->g->n_node; i++) {
    const Onnx__NodeProto *node = imp->g->node[i];
    bool ok = node->op_type != NULL;
    for (size_t k = 0; ok && k < node->n_input; k++) ok = node->input[k] != NULL;
    for (size_t k = 0; ok && k < node->n_output; k++) ok = node->output[k] != NULL;
    if (!ok) {
      imp->cur = i;
      return wk_imp_fail(imp, node, WK_ERR_FORMAT, "node without an op type, or with an "
                         "unnamed input or output");
    }
  }
  return WK_OK;
}

static wk_status wk_imp_walk(wk_imp *imp) {
  WK_TRY(wk_imp_check_names(imp));
  for (imp->cur = 0; imp->cur < imp->g->n_node; imp->cur++) {
    if (imp->done[imp->cur]) continue;
    const Onnx__NodeProto *node = imp->g->node[imp->cur];
    const char *dom = node->domain ? node->domain : "";
    if (!node->op_type || node->n_output < 1 || !node->output[0][0])
      return wk_imp_fail(imp, node, WK_ERR_FORMAT, "node without an op type or an output");
    if (dom[0] && strcmp(dom, "ai.onnx") != 0 && strcmp(dom, "com.microsoft") != 0)
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "operator domain '%s' is not supported",
                         dom);
    bool handled = false;
    WK_TRY(wk_imp_const_op(imp, node, &handled));
    if (!handled) WK_TRY(wk_imp_float_op(imp, node, &handled));
    if (!handled) WK_TRY(wk_imp_quant_op(imp, node, &handled));
    if (!handled)
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                         "op type '%s' cannot be mapped to a whisker network", node->op_type);
  }
  if (imp->g->n_output != 1 || !imp->g->output[0]->name)
    return wk_fail(WK_ERR_UNSUPPORTED, "%s: the graph must have exactly one output (logits)",
                   imp->path);
  const char *oname = imp->g->output[0]->name;
  const wk_iv *o = wk_imp_lookup(imp, oname);
  const int n = wk_net_n_nodes(imp->net);
  if (!o || o->is_const || n == 0 || o->value != n)
    return wk_fail(WK_ERR_UNSUPPORTED, "%s: output '%s' is not the last computed value",
                   imp->path, oname);
  if (wk_net_node(imp->net, n - 1)->out_ndim != 1 || o->onnx_rank != 2)
    return wk_fail(WK_ERR_UNSUPPORTED, "%s: output '%s' must be [N, classes]", imp->path, oname);
  if (wk_net_output_features(imp->net) > WK_MODEL_MAX_CLASSES)
    return wk_fail(WK_ERR_LIMIT, "%s: output '%s' has %lld classes (a model holds at most %d)",
                   imp->path, oname, (long long)wk_net_output_features(imp->net),
                   WK_MODEL_MAX_CLASSES);
  return WK_OK;
}

/* Copies the kept weights into the finalized network's arenas. */
static void wk_imp_load_weights(wk_imp *imp) {
  size_t np, nb;
  const wk_param *params = wk_net_params(imp->net, &np);
  const wk_param *bufs = wk_net_buffers(imp->net, &nb);
  float *w = wk_net_weights(imp->net), *bd = wk_net_buffer_data(imp->net);
  for (int i = 0; i < wk_net_n_nodes(imp->net); i++) {
    const wk_node *nd = wk_net_node(imp->net, i);
    for (int k = 0; k < 2; k++) {
      if (nd->param[k] >= 0) {
        const wk_param *p = &params[nd->param[k]];
        if (p->ndim == 4)
          wk_conv_weight_transpose(p, imp->w[i].p[k], w + p->offset, false);
        else
          memcpy(w + p->offset, imp->w[i].p[k], p->numel * sizeof(float));
      }
      if (nd->buffer[k] >= 0)
        memcpy(bd + bufs[nd->buffer[k]].offset, imp->w[i].buf[k],
               bufs[nd->buffer[k]].numel * sizeof(float));
    }
  }
  wk_net_weights_changed(imp->net);
}

static const char *wk_basename(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* Class names from metadata_props "whisker.classes" (whisker's export writes
 * them), else "class0"..: refused, naming the file and the class, as the
 * model loader refuses them in a model file (not a JSON array of k names, a
 * name that is empty, longer than 255 bytes or not UTF-8), so that the model
 * written from them loads. */
static wk_status wk_imp_classes(const char *path, const Onnx__ModelProto *m,
                                wk_model_meta *meta) {
  const int k = meta->n_classes;
  const char *text = NULL;
  for (size_t i = 0; i < m->n_metadata_props; i++)
    if (!text && m->metadata_props[i]->key && m->metadata_props[i]->value &&
        !strcmp(m->metadata_props[i]->key, "whisker.classes"))
      text = m->metadata_props[i]->value;
  wk_status st = WK_OK;
  if (!text) {
    for (int i = 0; st == WK_OK && i < k; i++) {
      char name[24];
      snprintf(name, sizeof name, "class%d", i);
      st = wk_model_meta_set_class(meta, i, name);
    }
    return st;
  }
  cJSON *a = cJSON_Parse(text);
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != k)
    st = wk_fail(WK_ERR_FORMAT, "%s: metadata whisker.classes is not an array of %d names",
                 path, k);
  /* along the list: cJSON_GetArrayItem walks from the head every time */
  const cJSON *s = st == WK_OK ? a->child : NULL;
  for (int i = 0; st == WK_OK && i < k; i++, s = s->next) {
    if (!cJSON_IsString(s))
      st = wk_fail(WK_ERR_FORMAT, "%s: class name %d is not a string", path, i);
    else if ((st = wk_model_check_class_name(path, i, s->valuestring)) == WK_OK)
      st = wk_model_meta_set_class(meta, i, s->valuestring);
  }
  cJSON_Delete(a);
  return st;
}

/* Appends src to the string dst[cap] (of length at) for a JSON string: whole
 * UTF-8 characters only, up to the last that fits, with '"', '\\', control
 * characters and bytes that are not UTF-8 as '_' (a file name or producer
 * can hold any bytes). Returns the new length. */
static size_t wk_imp_json_append(char *dst, size_t cap, size_t at, const char *src) {
  const unsigned char *s = (const unsigned char *)src;
  size_t n = strlen(src);
  while (n > 0) {
    size_t len = wk_utf8_seq_bytes(s, n);
    const bool plain = len > 1 || (len == 1 && *s >= 0x20 && *s != '"' && *s != '\\');
    if (!plain) len = 1;
    if (at + len >= cap) break;
    if (plain) memcpy(dst + at, s, len);
    else dst[at] = '_';
    at += len, s += len, n -= len;
  }
  dst[at] = '\0';
  return at;
}

static wk_status wk_imp_meta(const wk_imp *imp, const Onnx__ModelProto *m, const char *sha256,
                             wk_model_meta *meta) {
  int h, w, c;
  wk_net_input_shape(imp->net, &h, &w, &c);
  const int k = (int)wk_net_output_features(imp->net);
  WK_TRY(wk_model_meta_init(meta, "onnx", k, h));
  WK_TRY(wk_imp_classes(imp->path, m, meta));
  int64_t opset = 0;
  for (size_t i = 0; i < m->n_opset_import; i++)
    if (!m->opset_import[i]->domain || !m->opset_import[i]->domain[0])
      opset = m->opset_import[i]->version;
  char prov[640], file[160], producer[96];
  wk_imp_json_append(file, sizeof file, 0, wk_basename(imp->path));
  size_t n = wk_imp_json_append(producer, sizeof producer, 0,
                                m->producer_name ? m->producer_name : "");
  n = wk_imp_json_append(producer, sizeof producer, n, " ");
  wk_imp_json_append(producer, sizeof producer, n,
                     m->producer_version ? m->producer_version : "");
  snprintf(prov, sizeof prov,
           "{\"source\":\"onnx\",\"file\":\"%s\",\"sha256\":\"%s\",\"producer\":\"%s\","
           "\"opset\":%lld,\"quantized\":%s}",
           file, sha256, producer, (long long)opset, imp->quantized ? "true" : "false");
  return wk_model_meta_set_provenance(meta, prov);
}

static void wk_imp_free(wk_imp *imp) {
  for (size_t i = 0; i < imp->n_v; i++)
    if (imp->v[i].owns_c) free(imp->v[i].c);
  for (int i = 0; i < imp->cap_w; i++) {
    free(imp->w[i].p[0]), free(imp->w[i].p[1]);
    free(imp->w[i].buf[0]), free(imp->w[i].buf[1]);
  }
  free(imp->v);
  free(imp->w);
  free(imp->done);
  free(imp->use);
  wk_strmap_free(&imp->entries);
  wk_strmap_free(&imp->inits);
  wk_strmap_free(&imp->uses);
  wk_strmap_free(&imp->taken);
  wk_strmap_free(&imp->next_suffix);
}

wk_status wk_onnx_import(wk_ctx *ctx, const char *path, wk_net **net, wk_model_meta *meta) {
  *net = NULL;
  memset(meta, 0, sizeof *meta);
  Onnx__ModelProto *m;
  char sha256[65];
  size_t file_bytes;
  WK_TRY(wk_onnx_load_model(path, &m, sha256, &file_bytes));
  if (m->graph->n_node > WK_MODEL_MAX_NODES) {
    const size_t n = m->graph->n_node;
    onnx__model_proto__free_unpacked(m, NULL);
    return wk_fail(WK_ERR_LIMIT, "%s: %zu nodes, more than the %d a model may have", path, n,
                   WK_MODEL_MAX_NODES);
  }
  wk_imp imp = {.path = path, .g = m->graph,
                .budget_bytes = WK_IMP_BYTES_FLOOR + WK_IMP_BYTES_PER_FILE_BYTE * file_bytes};
  size_t n_out = 0;
  for (size_t i = 0; i < imp.g->n_node; i++) n_out += imp.g->node[i]->n_output;
  imp.cap_v = imp.g->n_initializer + n_out + 4;
  imp.v = calloc(imp.cap_v, sizeof *imp.v);
  imp.done = calloc(imp.g->n_node + 1, sizeof *imp.done);
  const Onnx__ValueInfoProto *in = NULL;
  int dims[3];
  wk_status s = imp.v && imp.done ? wk_imp_index(&imp, sha256)
                                  : wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
  if (s == WK_OK) s = wk_imp_input(&imp, &in, dims);
  if (s == WK_OK && dims[1] != dims[2])
    s = wk_fail(WK_ERR_UNSUPPORTED, "%s: input %dx%d is not square (whisker crops squares)",
                path, dims[1], dims[2]);
  if (s == WK_OK) s = wk_net_create(ctx, dims[1], dims[2], dims[0], &imp.net);
  if (s == WK_OK) {
    wk_iv *e = wk_imp_new(&imp, in->name);
    if (e) {
      e->value = 0;
      e->onnx_rank = 4;
      s = wk_imp_walk(&imp);
    } else {
      s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
    }
  }
  if (s == WK_OK) s = wk_net_finalize_empty(imp.net);
  if (s == WK_OK) {
    wk_imp_load_weights(&imp);
    s = wk_imp_meta(&imp, m, sha256, meta);
  }
  if (s == WK_OK) {
    *net = imp.net;
    imp.net = NULL;
  } else {
    wk_model_meta_free(meta);
  }
  wk_net_destroy(imp.net);
  wk_imp_free(&imp);
  onnx__model_proto__free_unpacked(m, NULL);
  return s;
}
