/* build.c - building a network: nodes, output shapes, parameter registration,
 * and the arenas laid out at finalize. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/exec_node.h"
#include "ops/ref.h"

/* Bounds that keep a hostile architecture from sizing huge allocations. */
#define WK_PARAM_MAX_ELEMS (1 << 28)
#define WK_VALUE_MAX_ELEMS (1 << 28)

static const char *const wk_op_names[WK_NODE_OP_COUNT] = {
    [WK_NODE_CONV] = "conv",       [WK_NODE_BATCHNORM] = "batchnorm",
    [WK_NODE_ACT] = "act",         [WK_NODE_MAXPOOL] = "maxpool",
    [WK_NODE_AVGPOOL] = "avgpool", [WK_NODE_GLOBAL_AVGPOOL] = "global_avgpool",
    [WK_NODE_FLATTEN] = "flatten", [WK_NODE_LINEAR] = "linear",
    [WK_NODE_ADD] = "add",         [WK_NODE_DROPOUT] = "dropout",
};

const char *wk_node_op_name(wk_node_op op) {
  return (unsigned)op < WK_NODE_OP_COUNT ? wk_op_names[op] : "?";
}

void wk_node_shape_str(const wk_node *nd, char *buf, size_t n) {
  if (nd->out_ndim == 3)
    snprintf(buf, n, "%lldx%lldx%lld", (long long)nd->out_shape[0], (long long)nd->out_shape[1],
             (long long)nd->out_shape[2]);
  else
    snprintf(buf, n, "%lld", (long long)nd->out_shape[0]);
}

wk_status wk_node_op_parse(const char *name, wk_node_op *out) {
  for (int i = 0; i < WK_NODE_OP_COUNT; i++) {
    if (strcmp(name, wk_op_names[i]) == 0) {
      *out = (wk_node_op)i;
      return WK_OK;
    }
  }
  return wk_fail(WK_ERR_FORMAT, "unknown node op '%s'", name);
}

wk_status wk_net_create(wk_ctx *ctx, int in_h, int in_w, int in_c, wk_net **out) {
  *out = NULL;
  if (in_h < 1 || in_w < 1 || in_c < 1 || in_h > 16384 || in_w > 16384 || in_c > 4096)
    return wk_fail(WK_ERR_INVALID_ARG, "network input %dx%dx%d out of range", in_h, in_w, in_c);
  wk_net *net = calloc(1, sizeof *net);
  if (!net) return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  net->ctx = ctx;
  net->in_h = in_h;
  net->in_w = in_w;
  net->in_c = in_c;
  *out = net;
  return WK_OK;
}

/* The name indexes of finalize (wk_check_unique_names), gone stale or unwanted. */
static void wk_drop_name_index(wk_net *net) {
  free(net->param_by_name);
  free(net->buffer_by_name);
  net->param_by_name = net->buffer_by_name = NULL;
}

void wk_net_destroy(wk_net *net) {
  if (!net) return;
  wk_net_release_gpu(net);
  wk_net_release_runtime(net);
  free(net->in_f32);
  free(net->nodes);
  free(net->params);
  free(net->buffers);
  wk_drop_name_index(net);
  free(net->weights);
  free(net->grads);
  free(net->buffer_data);
  free(net->n_consumers);
  free(net->alias);
  free(net->needs_grad);
  free(net->bn_relu);
  free(net->sync_bn_buf);
  free(net->fold_bn);
  free(net->fold_act);
  free(net->conv_act);
  free(net->skip_train_fwd);
  free(net->skip_train);
  free(net->skip_eval);
  free(net->pwdw);
  free(net->sum_add);
  free(net->sum_act);
  free(net->alias_eval);
  free(net->last_use_eval);
  free(net->blk_eval);
  free(net->prof_fwd_s);
  free(net->prof_bwd_s);
  free(net->prof_notes);
  free(net);
}

/* Records the first builder error; returns -1 for the builder to return. */
WK_PRINTF(3, 4)
static int wk_build_fail(wk_net *net, wk_status code, const char *fmt, ...) {
  if (net->build_error == WK_OK) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(net->build_msg, sizeof net->build_msg, fmt, ap);
    va_end(ap);
    net->build_error = code;
  }
  return -1;
}

static int wk_value_ndim(const wk_net *net, int v, int64_t shape[3]) {
  if (v == 0) {
    shape[0] = net->in_h;
    shape[1] = net->in_w;
    shape[2] = net->in_c;
    return 3;
  }
  const wk_node *n = &net->nodes[v - 1];
  memcpy(shape, n->out_shape, sizeof n->out_shape);
  return n->out_ndim;
}

int64_t wk_net_eval_numel(const wk_net *net, int v) {
  int64_t s[3];
  int nd = wk_value_ndim(net, v, s);
  if (nd == 3 && wk_eval_blocked(net, v))
    return s[0] * s[1] * wk_blk16(s[2]);
  return nd == 3 ? s[0] * s[1] * s[2] : s[0];
}

int64_t wk_net_value_numel(const wk_net *net, int v) {
  int64_t s[3];
  int nd = wk_value_ndim(net, v, s);
  return nd == 3 ? s[0] * s[1] * s[2] : s[0];
}

wk_tensor wk_net_value_tensor(const wk_net *net, int v, int64_t n, float *data) {
  int64_t s[3];
  int nd = wk_value_ndim(net, v, s);
  const int64_t shape[4] = {n, s[0], s[1], s[2]};
  return wk_tensor_view(data, WK_F32, nd + 1, shape);
}

static int wk_add_entry(wk_param **arr, size_t *n, size_t *cap, const char *node_name,
                        const char *suffix, int ndim, const int64_t *shape, uint32_t flags) {
  if (*n == *cap) {
    size_t c = *cap ? 2 * *cap : 64;
    wk_param *a = realloc(*arr, c * sizeof *a);
    if (!a) return -1;
    *arr = a;
    *cap = c;
  }
  wk_param *p = &(*arr)[*n];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s.%s", node_name, suffix);
  p->ndim = ndim;
  p->numel = 1;
  for (int i = 0; i < ndim; i++) { /* the limit checked as it grows: no wrap-around */
    p->shape[i] = shape[i];
    if (shape[i] < 0 || (shape[i] > 0 && p->numel > WK_PARAM_MAX_ELEMS / (size_t)shape[i]))
      return -2;
    p->numel *= (size_t)shape[i];
  }
  p->flags = flags;
  p->lr_scale = 1.0f;
  if (p->numel > WK_PARAM_MAX_ELEMS) return -2;
  return (int)(*n)++;
}

static int wk_add_param(wk_net *net, wk_node *node, const char *suffix, int ndim,
                        const int64_t *shape, uint32_t flags) {
  int i = wk_add_entry(&net->params, &net->n_params, &net->cap_params, node->name, suffix, ndim,
                       shape, flags);
  if (i == -2) return wk_build_fail(net, WK_ERR_LIMIT, "%s.%s: more than %d elements", node->name,
                                    suffix, WK_PARAM_MAX_ELEMS);
  if (i < 0) wk_build_fail(net, WK_ERR_NOMEM, "network: out of memory");
  return i;
}

static int wk_add_buffer(wk_net *net, wk_node *node, const char *suffix, int64_t c) {
  int i = wk_add_entry(&net->buffers, &net->n_buffers, &net->cap_buffers, node->name, suffix, 1,
                       &c, 0);
  if (i < 0) wk_build_fail(net, WK_ERR_NOMEM, "network: out of memory");
  return i;
}

/* Output shape and parameters of a node whose inputs are already checked. */
static int wk_node_derive(wk_net *net, wk_node *nd) {
  int64_t s[3], s2[3];
  int ndim = wk_value_ndim(net, nd->in[0], s);
  const char *name = nd->name;
  bool spatial = ndim == 3;
  nd->param[0] = nd->param[1] = nd->buffer[0] = nd->buffer[1] = -1;
  nd->out_ndim = ndim;
  memcpy(nd->out_shape, s, sizeof s);
  switch (nd->op) {
  case WK_NODE_CONV: {
    if (!spatial) return wk_build_fail(net, WK_ERR_SHAPE, "%s: conv needs an (H,W,C) input", name);
    wk_conv2d_geom g;
    if (nd->out_ch < 1 || wk_conv2d_geom_make(&nd->conv, 1, s[0], s[1], s[2], nd->out_ch, nd->kh,
                                              nd->kw, &g) != WK_OK)
      return wk_build_fail(net, WK_ERR_SHAPE, "%s: %s", name,
                           nd->out_ch < 1 ? "no output channels" : wk_last_error());
    nd->out_shape[0] = g.oh;
    nd->out_shape[1] = g.ow;
    nd->out_shape[2] = g.o;
    const int64_t ws[4] = {g.o, g.kh, g.kw, g.c / g.groups};
    nd->param[0] = wk_add_param(net, nd, "weight", 4, ws, 0);
    if (nd->bias) nd->param[1] = wk_add_param(net, nd, "bias", 1, &g.o, WK_PARAM_NO_DECAY);
    break;
  }
  case WK_NODE_BATCHNORM: {
    int64_t c = ndim == 3 ? s[2] : s[0];
    if (!(nd->bn.eps > 0) || !(nd->bn.momentum >= 0 && nd->bn.momentum <= 1))
      return wk_build_fail(net, WK_ERR_INVALID_ARG, "%s: batchnorm eps %g / momentum %g invalid",
                           name, nd->bn.eps, nd->bn.momentum);
    nd->param[0] = wk_add_param(net, nd, "weight", 1, &c, WK_PARAM_NO_DECAY);
    nd->param[1] = wk_add_param(net, nd, "bias", 1, &c, WK_PARAM_NO_DECAY);
    nd->buffer[0] = wk_add_buffer(net, nd, "running_mean", c);
    nd->buffer[1] = wk_add_buffer(net, nd, "running_var", c);
    break;
  }
  case WK_NODE_ACT:
    if (nd->act != WK_ACT_RELU && nd->act != WK_ACT_RELU6)
      return wk_build_fail(net, WK_ERR_INVALID_ARG, "%s: unknown activation %d", name, nd->act);
    break;
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL: {
    wk_pool2d_geom g;
    if (!spatial || wk_pool2d_geom_make(&nd->pool, 1, s[0], s[1], s[2], &g) != WK_OK)
      return wk_build_fail(net, WK_ERR_SHAPE, "%s: %s", name,
                           spatial ? wk_last_error() : "pooling needs an (H,W,C) input");
    nd->out_shape[0] = g.oh;
    nd->out_shape[1] = g.ow;
    break;
  }
  case WK_NODE_GLOBAL_AVGPOOL:
  case WK_NODE_FLATTEN:
    if (!spatial) {
      if (nd->op == WK_NODE_FLATTEN) break; /* already flat: identity */
      return wk_build_fail(net, WK_ERR_SHAPE, "%s: global pooling needs an (H,W,C) input", name);
    }
    nd->out_ndim = 1;
    nd->out_shape[0] = nd->op == WK_NODE_FLATTEN ? s[0] * s[1] * s[2] : s[2];
    nd->out_shape[1] = nd->out_shape[2] = 0;
    break;
  case WK_NODE_LINEAR: {
    if (spatial) return wk_build_fail(net, WK_ERR_SHAPE, "%s: linear needs a flat input", name);
    if (nd->out_ch < 1) return wk_build_fail(net, WK_ERR_SHAPE, "%s: no output features", name);
    const int64_t ws[2] = {nd->out_ch, s[0]};
    const int64_t o = nd->out_ch;
    nd->out_shape[0] = o;
    nd->param[0] = wk_add_param(net, nd, "weight", 2, ws, 0);
    if (nd->bias) nd->param[1] = wk_add_param(net, nd, "bias", 1, &o, WK_PARAM_NO_DECAY);
    break;
  }
  case WK_NODE_ADD: {
    int ndim2 = wk_value_ndim(net, nd->in[1], s2);
    if (ndim2 != ndim || memcmp(s, s2, sizeof(int64_t) * (size_t)ndim) != 0)
      return wk_build_fail(net, WK_ERR_SHAPE, "%s: add of values with different shapes", name);
    break;
  }
  case WK_NODE_DROPOUT:
    if (!(nd->drop_p >= 0 && nd->drop_p < 1))
      return wk_build_fail(net, WK_ERR_INVALID_ARG, "%s: dropout p %g not in [0, 1)", name,
                           nd->drop_p);
    break;
  default:
    return wk_build_fail(net, WK_ERR_INVALID_ARG, "%s: unknown op %d", name, nd->op);
  }
  /* in double: huge paddings through the API would wrap an int64 product */
  if ((double)nd->out_shape[0] *
          (nd->out_ndim == 3 ? (double)nd->out_shape[1] * (double)nd->out_shape[2] : 1.0) >
      (double)WK_VALUE_MAX_ELEMS)
    return wk_build_fail(net, WK_ERR_LIMIT, "%s: output of more than %d elements per sample",
                         name, WK_VALUE_MAX_ELEMS);
  return 0;
}

int wk_net_add_node(wk_net *net, const wk_node *node) {
  if (net->build_error != WK_OK) return -1;
  if (net->finalized)
    return wk_build_fail(net, WK_ERR_INVALID_ARG, "%s: network already finalized", node->name);
  const int n_values = net->n_nodes + 1;
  const int want_in = node->op == WK_NODE_ADD ? 2 : 1;
  if (node->n_in != want_in)
    return wk_build_fail(net, WK_ERR_SHAPE, "%s: %s takes %d input(s), got %d", node->name,
                         wk_node_op_name(node->op), want_in, node->n_in);
  for (int i = 0; i < node->n_in; i++)
    if (node->in[i] < 0 || node->in[i] >= n_values)
      return wk_build_fail(net, WK_ERR_SHAPE, "%s: input value %d does not exist (yet)",
                           node->name, node->in[i]);
  if (!node->name[0] || memchr(node->name, '\0', sizeof node->name) == NULL)
    return wk_build_fail(net, WK_ERR_INVALID_ARG, "node %d: empty or unterminated name",
                         net->n_nodes);
  wk_drop_name_index(net); /* new names, after a finalize that failed */
  if (net->n_nodes == net->cap_nodes) {
    int cap = net->cap_nodes ? 2 * net->cap_nodes : 64;
    wk_node *a = realloc(net->nodes, (size_t)cap * sizeof *a);
    if (!a) return wk_build_fail(net, WK_ERR_NOMEM, "network: out of memory");
    net->nodes = a;
    net->cap_nodes = cap;
  }
  wk_node *nd = &net->nodes[net->n_nodes];
  *nd = *node;
  if (wk_node_derive(net, nd) < 0) return -1;
  if (net->build_error != WK_OK) return -1;
  return ++net->n_nodes; /* the output value of node i is i + 1 */
}

static wk_node wk_node_base(wk_node_op op, const char *name, int in) {
  wk_node n;
  memset(&n, 0, sizeof n);
  n.op = op;
  snprintf(n.name, sizeof n.name, "%s", name);
  n.n_in = 1;
  n.in[0] = in;
  return n;
}

int wk_net_conv(wk_net *net, const char *name, int in, int out_ch, int kh, int kw,
                const wk_conv2d_params *p, bool bias) {
  wk_node n = wk_node_base(WK_NODE_CONV, name, in);
  n.out_ch = out_ch;
  n.kh = kh;
  n.kw = kw;
  n.conv = *p;
  n.bias = bias;
  n.init = WK_INIT_KAIMING_FAN_OUT;
  return wk_net_add_node(net, &n);
}

int wk_net_batchnorm(wk_net *net, const char *name, int in, float eps, float momentum) {
  wk_node n = wk_node_base(WK_NODE_BATCHNORM, name, in);
  n.bn.eps = eps;
  n.bn.momentum = momentum;
  return wk_net_add_node(net, &n);
}

int wk_net_act(wk_net *net, const char *name, int in, wk_act act) {
  wk_node n = wk_node_base(WK_NODE_ACT, name, in);
  n.act = act;
  return wk_net_add_node(net, &n);
}

int wk_net_maxpool(wk_net *net, const char *name, int in, const wk_pool2d_params *p) {
  wk_node n = wk_node_base(WK_NODE_MAXPOOL, name, in);
  n.pool = *p;
  return wk_net_add_node(net, &n);
}

int wk_net_avgpool(wk_net *net, const char *name, int in, const wk_pool2d_params *p) {
  wk_node n = wk_node_base(WK_NODE_AVGPOOL, name, in);
  n.pool = *p;
  return wk_net_add_node(net, &n);
}

int wk_net_global_avgpool(wk_net *net, const char *name, int in) {
  wk_node n = wk_node_base(WK_NODE_GLOBAL_AVGPOOL, name, in);
  return wk_net_add_node(net, &n);
}

int wk_net_flatten(wk_net *net, const char *name, int in) {
  wk_node n = wk_node_base(WK_NODE_FLATTEN, name, in);
  return wk_net_add_node(net, &n);
}

int wk_net_linear(wk_net *net, const char *name, int in, int out_features, bool bias) {
  wk_node n = wk_node_base(WK_NODE_LINEAR, name, in);
  n.out_ch = out_features;
  n.bias = bias;
  n.init = WK_INIT_TORCH_DEFAULT;
  return wk_net_add_node(net, &n);
}

int wk_net_add(wk_net *net, const char *name, int a, int b) {
  wk_node n = wk_node_base(WK_NODE_ADD, name, a);
  n.n_in = 2;
  n.in[1] = b;
  return wk_net_add_node(net, &n);
}

int wk_net_dropout(wk_net *net, const char *name, int in, float p) {
  wk_node n = wk_node_base(WK_NODE_DROPOUT, name, in);
  n.drop_p = p;
  return wk_net_add_node(net, &n);
}

void wk_net_set_init(wk_net *net, wk_init init) {
  for (int i = net->n_nodes - 1; i >= 0; i--) {
    if (net->nodes[i].op == WK_NODE_CONV || net->nodes[i].op == WK_NODE_LINEAR) {
      net->nodes[i].init = init;
      return;
    }
  }
}

/* Gives each entry a 64-byte aligned offset; returns the arena length. */
static size_t wk_layout(wk_param *a, size_t n) {
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    a[i].offset = off;
    off += (a[i].numel + 15) & ~(size_t)15;
  }
  return off;
}

/* By name, then by position in the array (the lower index first). */
static int wk_cmp_entry_name(const void *a, const void *b) {
  const wk_param *x = *(const wk_param *const *)a, *y = *(const wk_param *const *)b;
  const int c = strcmp(x->name, y->name);
  return c ? c : (x > y) - (x < y);
}

/* The indices of a[0, n) sorted by name (ties by index) in *out (malloc'ed):
 * name lookups by bisection, and duplicates side by side. */
static wk_status wk_name_index(const wk_param *a, size_t n, int **out) {
  *out = NULL;
  const wk_param **by = malloc((n ? n : 1) * sizeof *by);
  int *idx = malloc((n ? n : 1) * sizeof *idx);
  if (!by || !idx) {
    free(by);
    free(idx);
    return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  }
  for (size_t i = 0; i < n; i++) by[i] = &a[i];
  qsort(by, n, sizeof *by, wk_cmp_entry_name);
  for (size_t i = 0; i < n; i++) idx[i] = (int)(by[i] - a);
  free(by);
  *out = idx;
  return WK_OK;
}

/* Indexes the parameter and buffer names (net->param_by_name,
 * net->buffer_by_name) and refuses two parameters of one name, naming the
 * lowest-numbered parameter that has a namesake. Sorting, not comparing every
 * pair: an imported graph may have 100,000 nodes. */
static wk_status wk_check_unique_names(wk_net *net) {
  wk_drop_name_index(net); /* a finalize that failed may have made one */
  WK_TRY(wk_name_index(net->params, net->n_params, &net->param_by_name));
  WK_TRY(wk_name_index(net->buffers, net->n_buffers, &net->buffer_by_name));
  const int *by = net->param_by_name;
  int first = -1;
  for (size_t k = 1; k < net->n_params; k++)
    if (strcmp(net->params[by[k - 1]].name, net->params[by[k]].name) == 0 &&
        (first < 0 || by[k - 1] < first))
      first = by[k - 1];
  if (first >= 0)
    return wk_fail(WK_ERR_INVALID_ARG, "network: two parameters named '%s'",
                   net->params[first].name);
  return WK_OK;
}

/* Whether the producer of value v reads v itself in backward (an activation
 * takes its mask from its output), so v must not be overwritten in place. */
static bool wk_needs_own_output(const wk_net *net, int v) {
  return v > 0 && net->nodes[v - 1].op == WK_NODE_ACT;
}

/* Whether value v's buffer may be overwritten by its one consumer: nobody
 * else reads the buffer, it is not the network's input (the caller's), and
 * its producer's backward does not read it. A flatten is a view of its
 * input's buffer, so every flatten between v and the buffer's owner must
 * have that one consumer too, and the owner is what is checked: x -> flatten
 * -> relu once overwrote the caller's input, u -> flatten -> relu a value
 * another node still read, and relu -> flatten -> add the mask of the
 * relu's backward. */
static bool wk_writable_in_place(const wk_net *net, int v) {
  while (v > 0 && net->nodes[v - 1].op == WK_NODE_FLATTEN) {
    if (net->n_consumers[v] != 1) return false;
    v = net->nodes[v - 1].in[0];
  }
  return v != 0 && net->n_consumers[v] == 1 && !wk_needs_own_output(net, v);
}

static wk_status wk_derive_graph(wk_net *net) {
  const int nv = net->n_nodes + 1;
  net->n_consumers = calloc((size_t)nv, sizeof *net->n_consumers);
  net->alias = calloc((size_t)nv, sizeof *net->alias);
  net->needs_grad = calloc((size_t)nv, sizeof *net->needs_grad);
  if (!net->n_consumers || !net->alias || !net->needs_grad)
    return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  for (int i = 0; i < net->n_nodes; i++)
    for (int k = 0; k < net->nodes[i].n_in; k++) net->n_consumers[net->nodes[i].in[k]]++;
  for (int v = 0; v < nv; v++) net->alias[v] = v;
  for (int i = 0; i < net->n_nodes; i++) {
    const wk_node *nd = &net->nodes[i];
    int in = nd->in[0];
    /* An activation is computed in place when it is its input's only consumer
     * (its backward reads the output, which carries the same mask); a flatten is
     * a view. The network input itself is never overwritten. */
    bool in_place = (nd->op == WK_NODE_ACT && wk_writable_in_place(net, in)) ||
                    nd->op == WK_NODE_FLATTEN;
    if (in_place) net->alias[i + 1] = net->alias[in];
    /* an add writes over an input nobody else reads (as PyTorch's `out +=
     * identity`); add's backward needs neither input */
    for (int k = 0; nd->op == WK_NODE_ADD && k < 2; k++) {
      const int a = nd->in[k];
      if (nd->in[0] != nd->in[1] && wk_writable_in_place(net, a)) {
        net->alias[i + 1] = net->alias[a];
        break;
      }
    }
  }
  return WK_OK;
}

/* needs_grad: whether a value's gradient must be computed, i.e. a trainable
 * parameter lies upstream. Recomputed whenever freezing changes. */
static void wk_derive_needs_grad(wk_net *net) {
  net->params_version++; /* a GPU copy must learn of it (exec_gpu.c) */
  net->needs_grad[0] = false;
  for (int i = 0; i < net->n_nodes; i++) {
    const wk_node *nd = &net->nodes[i];
    bool need = false;
    for (int k = 0; k < nd->n_in; k++) need |= net->needs_grad[nd->in[k]];
    for (int k = 0; k < 2; k++)
      if (nd->param[k] >= 0 && !(net->params[nd->param[k]].flags & WK_PARAM_FROZEN)) need = true;
    net->needs_grad[i + 1] = need;
  }
}

wk_status wk_net_build_error(const wk_net *net) {
  if (net->build_error != WK_OK) return wk_fail(net->build_error, "%s", net->build_msg);
  return WK_OK;
}

static wk_status wk_net_finalize_impl(wk_net *net, bool init, uint64_t seed) {
  if (net->build_error != WK_OK) return wk_fail(net->build_error, "%s", net->build_msg);
  if (net->finalized) return wk_fail(WK_ERR_INVALID_ARG, "network finalized twice");
  if (net->n_nodes == 0) return wk_fail(WK_ERR_INVALID_ARG, "network has no nodes");
  if (net->nodes[net->n_nodes - 1].out_ndim != 1)
    return wk_fail(WK_ERR_SHAPE, "network output '%s' is not flat (N, F): end with a global "
                   "pool or flatten and a linear layer", net->nodes[net->n_nodes - 1].name);
  WK_TRY(wk_check_unique_names(net));
  net->n_elems = wk_layout(net->params, net->n_params);
  net->n_buffer_elems = wk_layout(net->buffers, net->n_buffers);
  /* aligned_alloc wants a size that is a multiple of the alignment (16 floats) */
  size_t ne = (net->n_elems + 16) & ~(size_t)15, nb = (net->n_buffer_elems + 16) & ~(size_t)15;
  net->weights = aligned_alloc(64, ne * sizeof(float));
  net->grads = aligned_alloc(64, ne * sizeof(float));
  net->buffer_data = aligned_alloc(64, nb * sizeof(float));
  net->state = calloc((size_t)net->n_nodes, sizeof *net->state);
  net->val = calloc((size_t)net->n_nodes + 1, sizeof *net->val);
  net->grad = calloc((size_t)net->n_nodes + 1, sizeof *net->grad);
  if (!net->weights || !net->grads || !net->buffer_data || !net->state || !net->val || !net->grad)
    return wk_fail(WK_ERR_NOMEM, "network: out of memory for %zu parameters", net->n_elems);
  memset(net->weights, 0, ne * sizeof(float));
  memset(net->grads, 0, ne * sizeof(float));
  memset(net->buffer_data, 0, nb * sizeof(float));
  WK_TRY(wk_derive_graph(net));
  WK_TRY(wk_net_plan_fusions(net));
  wk_derive_needs_grad(net);
  if (init) WK_TRY(wk_net_init_params(net, seed));
  net->finalized = true;
  return WK_OK;
}

wk_status wk_net_finalize(wk_net *net, uint64_t seed) { return wk_net_finalize_impl(net, true, seed); }
wk_status wk_net_finalize_empty(wk_net *net) { return wk_net_finalize_impl(net, false, 0); }

int wk_net_n_nodes(const wk_net *net) { return net->n_nodes; }
wk_ctx *wk_net_ctx(const wk_net *net) { return net->ctx; }
const wk_node *wk_net_node(const wk_net *net, int i) {
  return i >= 0 && i < net->n_nodes ? &net->nodes[i] : NULL;
}
void wk_net_input_shape(const wk_net *net, int *h, int *w, int *c) {
  *h = net->in_h;
  *w = net->in_w;
  *c = net->in_c;
}
int64_t wk_net_output_features(const wk_net *net) {
  return net->n_nodes ? net->nodes[net->n_nodes - 1].out_shape[0] : 0;
}
const wk_param *wk_net_params(const wk_net *net, size_t *n) {
  *n = net->n_params;
  return net->params;
}
const wk_param *wk_net_buffers(const wk_net *net, size_t *n) {
  *n = net->n_buffers;
  return net->buffers;
}
/* On a GPU running the step on the device, the host arenas may be behind:
 * these bring them up to date first (exec_gpu.c). */
float *wk_net_weights(wk_net *net) {
  if (net->gpu_stale) wk_net_sync_host_or_die(net);
  return net->weights;
}
float *wk_net_grads(wk_net *net) {
  if (net->gpu_stale) wk_net_sync_host_or_die(net);
  return net->grads;
}
float *wk_net_buffer_data(wk_net *net) {
  if (net->gpu_stale) wk_net_sync_host_or_die(net);
  return net->buffer_data;
}
size_t wk_net_n_elems(const wk_net *net) { return net->n_elems; }
size_t wk_net_n_buffer_elems(const wk_net *net) { return net->n_buffer_elems; }
int64_t wk_net_bn_batches(const wk_net *net) { return net->bn_batches; }
void wk_net_set_bn_batches(wk_net *net, int64_t n) { net->bn_batches = n; }
void wk_net_weights_changed(wk_net *net) { net->weights_version++; }

int64_t wk_net_param_count(const wk_net *net) {
  int64_t n = 0;
  for (size_t i = 0; i < net->n_params; i++) n += (int64_t)net->params[i].numel;
  return n;
}

/* The lowest index i of a[0, n) named `name`, or -1: by bisection of the
 * name index `by` (made at finalize), else by a scan. */
static int wk_find(const wk_param *a, size_t n, const int *by, const char *name) {
  if (!by) {
    for (size_t i = 0; i < n; i++)
      if (strcmp(a[i].name, name) == 0) return (int)i;
    return -1;
  }
  size_t lo = 0, hi = n; /* the first entry of by not before name */
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (strcmp(a[by[mid]].name, name) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && strcmp(a[by[lo]].name, name) == 0 ? by[lo] : -1;
}
int wk_net_find_param(const wk_net *net, const char *name) {
  return wk_find(net->params, net->n_params, net->param_by_name, name);
}
int wk_net_find_buffer(const wk_net *net, const char *name) {
  return wk_find(net->buffers, net->n_buffers, net->buffer_by_name, name);
}

int wk_net_set_frozen(wk_net *net, const char *prefix, bool frozen) {
  int matched = 0;
  size_t len = strlen(prefix);
  for (size_t i = 0; i < net->n_params; i++) {
    if (strncmp(net->params[i].name, prefix, len) != 0) continue;
    if (frozen)
      net->params[i].flags |= WK_PARAM_FROZEN;
    else
      net->params[i].flags &= ~(uint32_t)WK_PARAM_FROZEN;
    matched++;
  }
  if (net->finalized) wk_derive_needs_grad(net);
  return matched;
}

void wk_net_set_lr_scale(wk_net *net, const char *prefix, float scale) {
  size_t len = strlen(prefix);
  for (size_t i = 0; i < net->n_params; i++)
    if (strncmp(net->params[i].name, prefix, len) == 0) net->params[i].lr_scale = scale;
}

void wk_net_set_node_frozen(wk_net *net, int i, bool frozen) {
  WK_ASSERT(i >= 0 && i < net->n_nodes);
  for (int k = 0; k < 2; k++) {
    const int p = net->nodes[i].param[k];
    if (p < 0) continue;
    if (frozen)
      net->params[p].flags |= WK_PARAM_FROZEN;
    else
      net->params[p].flags &= ~(uint32_t)WK_PARAM_FROZEN;
  }
  if (net->finalized) wk_derive_needs_grad(net);
}

void wk_net_set_node_lr_scale(wk_net *net, int i, float scale) {
  WK_ASSERT(i >= 0 && i < net->n_nodes);
  for (int k = 0; k < 2; k++)
    if (net->nodes[i].param[k] >= 0) net->params[net->nodes[i].param[k]].lr_scale = scale;
}

int wk_net_set_dropout(wk_net *net, float p) {
  int n = 0;
  WK_ASSERT(p >= 0.0f && p < 1.0f);
  WK_ASSERT(!wk_net_on_gpu(net)); /* the GPU copy took the graph when it was placed */
  for (int i = 0; i < net->n_nodes; i++) {
    if (net->nodes[i].op != WK_NODE_DROPOUT) continue;
    net->nodes[i].drop_p = p;
    n++;
  }
  return n;
}
