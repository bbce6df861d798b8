/* exec_plan.c - the CPU fast path of a network: oneDNN plans per node and the
 * fusions that save memory passes.
 *
 * Training: a batchnorm whose only consumer is an in-place ReLU or ReLU6 runs
 * it inside the batchnorm's kernel (forward and backward); the activation
 * node does nothing. A conv whose only consumer is an in-place ReLU or ReLU6
 * (a network with its batchnorms folded, as imported from ONNX) applies it
 * as its primitive's post-op, saving a pass over memory; the activation's
 * backward (the mask, from its output) stays its own. WHISKER_FUSE_CONV_ACT=0
 * turns that off. Evaluation: conv -> batchnorm [-> relu/relu6] becomes one
 * convolution with the batchnorm folded into its weights and bias and the
 * activation as a post-op; the chain's values share one buffer.
 *
 * Plans are made for one batch size and rebuilt when it changes. Training
 * plans reorder weights once per forward (net->plan_version identifies the
 * step), so backward reuses them; evaluation plans keep them until the weights
 * change (wk_net_weights_changed) or a training forward moves the batchnorm
 * running statistics.
 *
 * Evaluation also runs a 1x1 conv (with its folded chain) whose only reader is
 * a depthwise 3x3 conv inside that conv's node, as one plan
 * (wk_conv2d_pwdw_plan: MobileNetV2's expansion never reaches memory); the 1x1
 * node is skipped and its output shares its input's buffer, which the
 * depthwise node then reads. WHISKER_PWDW=0 turns this off.
 *
 * Evaluation also adds a convolution's result straight into the buffer of
 * the other input of the residual add it feeds (oneDNN's sum post-op: y =
 * act(y + conv(x))), with the activation after the add fused too; the add
 * (and activation) nodes are skipped. It does so where nothing reads that
 * buffer after the convolution but the add: MobileNetV2's projections into
 * the block's input, ResNet's last conv of a block into its shortcut.
 * WHISKER_FUSE_ADD=0 turns this off. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/exec_node.h"
#include "ops/ref.h"

/* The first node reading each value (-1: none) in reader[nv] (malloc'ed).
 * Planning asks for a value's reader once per node: a scan of the graph for
 * each made planning quadratic, seconds on a 100,000-node graph. */
static wk_status wk_first_readers(const wk_net *net, int **out) {
  const int nv = net->n_nodes + 1;
  int *reader = malloc((size_t)nv * sizeof *reader);
  *out = reader;
  if (!reader) return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  for (int v = 0; v < nv; v++) reader[v] = -1;
  for (int i = net->n_nodes - 1; i >= 0; i--)
    for (int k = 0; k < net->nodes[i].n_in; k++) reader[net->nodes[i].in[k]] = i;
  return WK_OK;
}

/* The node consuming value v when exactly one does, else -1 (reader from
 * wk_first_readers). */
static int wk_sole_consumer(const wk_net *net, const int *reader, int v) {
  return net->n_consumers[v] == 1 ? reader[v] : -1;
}

/* Whether node i (not skipped in evaluation) can read an nChw16c input. */
static bool wk_reads_blocked(const wk_node *nd) {
  switch (nd->op) {
  case WK_NODE_CONV:
  case WK_NODE_ADD:
  case WK_NODE_ACT:
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL:
  case WK_NODE_GLOBAL_AVGPOOL:
    return true;
  default:
    return false;
  }
}

static bool wk_pointwise_or_grouped(const wk_node *nd) {
  return nd->op == WK_NODE_CONV && ((nd->kh == 1 && nd->kw == 1) || nd->conv.groups > 1);
}

/* Per root r of alias_eval, in feeds[r]: whether every node reading r's
 * buffer in evaluation (past the nodes folded into its producer) is a 1x1 or
 * grouped conv or a global pooling, and one at least does. One pass over the
 * graph for every root, not one per root. */
static void wk_feeds_pointwise(const wk_net *net, bool *feeds, bool *other) {
  const int nv = net->n_nodes + 1;
  memset(feeds, 0, (size_t)nv * sizeof *feeds);
  memset(other, 0, (size_t)nv * sizeof *other);
  for (int i = 0; i < net->n_nodes; i++) {
    if (net->skip_eval[i]) continue;
    const wk_node *nd = &net->nodes[i];
    const bool pw = wk_pointwise_or_grouped(nd) || nd->op == WK_NODE_GLOBAL_AVGPOOL;
    for (int k = 0; k < nd->n_in; k++) {
      const int r = net->alias_eval[nd->in[k]];
      if (pw)
        feeds[r] = true;
      else
        other[r] = true;
    }
  }
  for (int r = 0; r < nv; r++) feeds[r] = feeds[r] && !other[r];
}

/* Union-find over values (parent[v] == v: a set's representative). */
static int wk_set_of(int *parent, int v) {
  while (parent[v] != v) {
    parent[v] = parent[parent[v]];
    v = parent[v];
  }
  return v;
}

static void wk_set_join(int *parent, int a, int b) {
  a = wk_set_of(parent, a);
  b = wk_set_of(parent, b);
  if (a < b)
    parent[b] = a;
  else
    parent[a] = b;
}

/* Evaluation layouts. oneDNN's 1x1 and depthwise kernels are 1.3-1.8x faster
 * on nChw16c than on NHWC activations (MobileNetV2's layers at batch 32 on
 * AVX-512, measured), its dense 3x3 kernels are not (ResNet-18 at batch 1 ran
 * 2% slower blocked), and a convolution is fast only with the same layout on
 * both sides. So in evaluation a buffer is nChw16c when it is 4-D, made by a
 * 1x1 or grouped conv (or a dense one read only by those), an add, activation
 * or pooling (not one working in place), and read only by nodes that take nChw16c (conv, add, activation,
 * pooling, global pooling), with an add's inputs and output, and an
 * activation's or pooling's input and output, in the same layout; everything
 * else (the input, dense convs' outputs, flatten, linear, ...) is NHWC.
 * Starting from every candidate and dropping those that break a rule reaches
 * the largest consistent set. A convolution between the two layouts reorders
 * its output (wk_conv2d_plan_create_layout). WHISKER_BLOCKED=0 turns it off. */
static wk_status wk_plan_blocked(wk_net *net) {
  const int nn = net->n_nodes, nv = nn + 1;
  const int *root = net->alias_eval;
  net->blk_eval = calloc((size_t)nv, sizeof *net->blk_eval);
  if (!net->blk_eval) return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  const char *env = getenv("WHISKER_BLOCKED");
  if (net->ctx->impl != WK_IMPL_CPU || (env && strcmp(env, "0") == 0) ||
      !wk_conv2d_blocked_native())
    return WK_OK;
  bool *b = net->blk_eval;
  bool *feeds = malloc((size_t)nv * sizeof *feeds), *other = malloc((size_t)nv * sizeof *other);
  int *set = malloc((size_t)nv * sizeof *set);
  if (!feeds || !other || !set) {
    free(feeds);
    free(other);
    free(set);
    return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  }
  wk_feeds_pointwise(net, feeds, other);
  for (int i = 0; i < nn; i++) {
    const wk_node *nd = &net->nodes[i];
    /* a buffer's layout is chosen by the node that makes it (an in-place
     * add or activation writes into its input's) */
    if (net->skip_eval[i] || nd->out_ndim != 3 || root[i + 1] != i + 1) continue;
    if (nd->op == WK_NODE_CONV ? wk_pointwise_or_grouped(nd) || feeds[root[i + 1]]
                               : nd->op == WK_NODE_ADD || nd->op == WK_NODE_ACT ||
                                     nd->op == WK_NODE_MAXPOOL || nd->op == WK_NODE_AVGPOOL)
      b[root[i + 1]] = true;
  }
  b[root[0]] = false;
  b[root[nn]] = false; /* the network's output is NHWC */
  /* Dropping a candidate only ever forces others to drop, so the rules have
   * one largest consistent set, found without passes repeated to a fixpoint
   * (one pass each time a drop travels back a node: quadratic on a long
   * chain). Two rules are about one buffer alone: a node that cannot read
   * nChw16c drops its inputs, and a dense conv adding into a residual
   * (net->sum_add) keeps the add's rule: its output would have been NHWC, so
   * the buffer is. The third, that an add, activation or pooling has its
   * inputs and output in one layout, joins their buffers into sets that are
   * blocked only when every member still is. */
  for (int v = 0; v < nv; v++) set[v] = v;
  for (int i = 0; i < nn; i++) {
    const wk_node *nd = &net->nodes[i];
    if (net->skip_eval[i]) continue;
    const int r = root[i + 1];
    for (int k = 0; k < nd->n_in; k++)
      if (!wk_reads_blocked(nd)) b[root[nd->in[k]]] = false;
    if (nd->op == WK_NODE_CONV && net->sum_add[i] >= 0 && !wk_pointwise_or_grouped(nd))
      b[r] = false;
    const bool same = nd->op == WK_NODE_ADD || nd->op == WK_NODE_ACT ||
                      nd->op == WK_NODE_MAXPOOL || nd->op == WK_NODE_AVGPOOL;
    for (int k = 0; same && k < nd->n_in; k++) wk_set_join(set, r, root[nd->in[k]]);
  }
  bool *all = feeds; /* per set: every member blocked */
  for (int v = 0; v < nv; v++) all[v] = true;
  for (int v = 0; v < nv; v++) all[wk_set_of(set, v)] &= b[v];
  for (int v = 0; v < nv; v++) b[v] = all[wk_set_of(set, v)];
  free(feeds);
  free(other);
  free(set);
  return WK_OK;
}

static wk_status wk_conv_geom(const wk_node *nd, const wk_tensor *x, wk_conv2d_geom *g) {
  return wk_conv2d_geom_make(&nd->conv, x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                             nd->out_ch, nd->kh, nd->kw, g);
}

/* Node i's geometry for one sample, from its input value's shape. */
static wk_status wk_node_geom1(const wk_net *net, int i, wk_conv2d_geom *g) {
  const wk_tensor x = wk_net_value_tensor(net, net->nodes[i].in[0], 1, NULL);
  if (x.ndim != 4) return WK_ERR_UNSUPPORTED;
  return wk_conv_geom(&net->nodes[i], &x, g);
}

/* The last node of conv i's folded chain (its activation, its batchnorm, or i). */
static int wk_chain_end(const wk_net *net, int i) {
  return net->fold_act[i] >= 0 ? net->fold_act[i] : net->fold_bn[i] >= 0 ? net->fold_bn[i] : i;
}

/* Marks the 1x1 -> depthwise pairs of evaluation (net->pwdw). */
static wk_status wk_plan_pwdw(wk_net *net, const int *reader) {
  const int nn = net->n_nodes;
  net->pwdw = malloc((size_t)nn * sizeof *net->pwdw);
  if (!net->pwdw) return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  for (int i = 0; i < nn; i++) net->pwdw[i] = -1;
  const char *env = getenv("WHISKER_PWDW");
  /* the pair runs on nChw16c activations (fused, or in turn through a blocked scratch) */
  if (net->ctx->impl != WK_IMPL_CPU || (env && strcmp(env, "0") == 0) ||
      !wk_conv2d_blocked_native())
    return WK_OK;
  for (int i = 0; i < nn; i++) {
    if (net->nodes[i].op != WK_NODE_CONV) continue;
    const int d = wk_sole_consumer(net, reader, wk_chain_end(net, i) + 1);
    wk_conv2d_geom pw, dw;
    if (d < 0 || net->nodes[d].op != WK_NODE_CONV || wk_node_geom1(net, i, &pw) != WK_OK ||
        wk_node_geom1(net, d, &dw) != WK_OK || !wk_conv2d_pwdw_pair(&pw, &dw))
      continue;
    net->pwdw[d] = i;
    net->skip_eval[i] = true;
  }
  return WK_OK;
}

/* What wk_plan_sum looks up, made once (a scan of the graph per residual add
 * before: quadratic on a 100,000-node graph). alias_eval, skip_eval of the
 * convs, pwdw and fold_act stay as they are while it runs. */
typedef struct wk_sum_index {
  int *chain_conv; /* per value c: the conv whose folded chain, with no activation, ends in
                      c (the conv's output or its folded batchnorm's), or -1 */
  int *use_start;  /* per root r + 1: where its users begin in use (use_start[r + 1] ends them) */
  int *use;        /* the nodes that read or write each root in evaluation, ascending */
} wk_sum_index;

static void wk_sum_index_free(wk_sum_index *x) {
  free(x->chain_conv);
  free(x->use_start);
  free(x->use);
}

/* The roots node n reads or writes in evaluation, each once, in r[3]. */
static int wk_roots_used(const wk_net *net, int n, int r[3]) {
  int m = 0;
  const int cand[3] = {net->alias_eval[n + 1], net->alias_eval[net->nodes[n].in[0]],
                       net->nodes[n].n_in > 1 ? net->alias_eval[net->nodes[n].in[1]] : -1};
  for (int k = 0; k < 3; k++) {
    bool seen = cand[k] < 0;
    for (int q = 0; q < m; q++) seen = seen || r[q] == cand[k];
    if (!seen) r[m++] = cand[k];
  }
  return m;
}

static wk_status wk_sum_index_make(const wk_net *net, wk_sum_index *x) {
  const int nn = net->n_nodes, nv = nn + 1;
  x->chain_conv = malloc((size_t)nv * sizeof *x->chain_conv);
  x->use_start = calloc((size_t)nv + 1, sizeof *x->use_start);
  x->use = malloc(((size_t)3 * (size_t)nn + 1) * sizeof *x->use);
  if (!x->chain_conv || !x->use_start || !x->use)
    return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  for (int v = 0; v < nv; v++) x->chain_conv[v] = -1;
  for (int i = 0; i < nn; i++) {
    int *c = &x->chain_conv[wk_chain_end(net, i) + 1];
    if (net->nodes[i].op == WK_NODE_CONV && !net->skip_eval[i] && net->pwdw[i] < 0 &&
        net->fold_act[i] < 0 && *c < 0)
      *c = i;
  }
  int r[3];
  for (int n = 0; n < nn; n++)
    for (int q = wk_roots_used(net, n, r); q-- > 0;) x->use_start[r[q] + 1]++;
  for (int v = 0; v < nv; v++) x->use_start[v + 1] += x->use_start[v];
  int *fill = malloc((size_t)nv * sizeof *fill);
  if (!fill) return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  memcpy(fill, x->use_start, (size_t)nv * sizeof *fill);
  for (int n = 0; n < nn; n++)
    for (int q = wk_roots_used(net, n, r); q-- > 0;) x->use[fill[r[q]]++] = n;
  free(fill);
  return WK_OK;
}

/* Whether conv node i may add its result into root r, the other input of add
 * node a: r holds data made before i, and no node from i on uses r but the
 * add and, where the add writes into r, the add's readers. */
static bool wk_sum_target_ok(const wk_net *net, const wk_sum_index *x, int i, int a, int r) {
  if (r == 0 || r - 1 >= i) return false; /* the caller's input, or made after the conv */
  const bool add_in_r = net->alias_eval[a + 1] == r;
  /* the first node from i on that uses r, by bisection of r's users */
  int lo = x->use_start[r], hi = x->use_start[r + 1];
  const int end = hi;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (x->use[mid] < i)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == end) return true; /* none */
  if (x->use[lo] < a) return false;
  /* every user from i on is the add or after it: those after it must be the
   * add's readers, which only an add writing into r allows */
  return add_in_r || x->use[end - 1] == a;
}

/* Marks the convs that add into their residual add's other input in
 * evaluation (net->sum_add, net->sum_act); *root_of (per value, -1 = its
 * own) receives the buffer each such conv writes into. */
static wk_status wk_plan_sum(wk_net *net, const int *reader, int *root_of) {
  const int nn = net->n_nodes;
  net->sum_add = malloc((size_t)nn * sizeof *net->sum_add);
  net->sum_act = malloc((size_t)nn * sizeof *net->sum_act);
  if (!net->sum_add || !net->sum_act) return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  for (int i = 0; i < nn; i++) net->sum_add[i] = net->sum_act[i] = -1;
  const char *env = getenv("WHISKER_FUSE_ADD");
  if (net->ctx->impl != WK_IMPL_CPU || (env && strcmp(env, "0") == 0)) return WK_OK;
  wk_sum_index x = {0};
  const wk_status s = wk_sum_index_make(net, &x);
  if (s != WK_OK) {
    wk_sum_index_free(&x);
    return s;
  }
  for (int a = 0; a < nn; a++) {
    const wk_node *ad = &net->nodes[a];
    if (ad->op != WK_NODE_ADD || net->skip_eval[a] || ad->in[0] == ad->in[1]) continue;
    for (int k = 0; k < 2; k++) {
      const int c = ad->in[k], o = ad->in[1 - k];
      const int i = c > 0 ? x.chain_conv[c] : -1;
      if (i < 0 || net->n_consumers[c] != 1 || net->alias_eval[o] == net->alias_eval[c] ||
          !wk_sum_target_ok(net, &x, i, a, net->alias_eval[o]))
        continue;
      net->sum_add[i] = a;
      net->skip_eval[a] = true;
      root_of[i + 1] = net->alias_eval[o];
      const int r = wk_sole_consumer(net, reader, a + 1);
      if (r >= 0 && net->nodes[r].op == WK_NODE_ACT &&
          (net->nodes[r].act == WK_ACT_RELU || net->nodes[r].act == WK_ACT_RELU6)) {
        net->sum_act[i] = r;
        net->skip_eval[r] = true;
      }
      break;
    }
  }
  wk_sum_index_free(&x);
  return WK_OK;
}

/* alias_eval: a skipped node's output shares its input's buffer, a node
 * working in place its input's, a conv adding into a residual its target's
 * (root_of, or NULL). */
static void wk_alias_eval(wk_net *net, const int *root_of) {
  for (int v = 0; v < net->n_nodes + 1; v++) {
    const int i = v - 1;
    net->alias_eval[v] = v;
    if (v == 0) continue;
    const wk_node *nd = &net->nodes[i];
    if (root_of && root_of[v] >= 0) {
      net->alias_eval[v] = net->alias_eval[root_of[v]];
      continue;
    }
    if (net->skip_eval[i]) {
      net->alias_eval[v] = net->alias_eval[nd->in[0]];
      continue;
    }
    for (int k = 0; k < nd->n_in && net->alias[v] != v; k++)
      if (net->alias[nd->in[k]] == net->alias[v]) {
        net->alias_eval[v] = net->alias_eval[nd->in[k]];
        break;
      }
  }
}

wk_status wk_net_plan_fusions(wk_net *net) {
  const int nn = net->n_nodes, nv = nn + 1;
  WK_ASSERT(nn > 0); /* finalize refuses an empty network */
  net->bn_relu = malloc((size_t)nn * sizeof *net->bn_relu);
  net->fold_bn = malloc((size_t)nn * sizeof *net->fold_bn);
  net->fold_act = malloc((size_t)nn * sizeof *net->fold_act);
  net->conv_act = malloc((size_t)nn * sizeof *net->conv_act);
  net->skip_train = calloc((size_t)nn, sizeof *net->skip_train);
  net->skip_train_fwd = calloc((size_t)nn, sizeof *net->skip_train_fwd);
  net->skip_eval = calloc((size_t)nn, sizeof *net->skip_eval);
  net->alias_eval = malloc((size_t)nv * sizeof *net->alias_eval);
  net->last_use_eval = malloc((size_t)nv * sizeof *net->last_use_eval);
  if (!net->bn_relu || !net->fold_bn || !net->fold_act || !net->conv_act || !net->skip_train ||
      !net->skip_train_fwd || !net->skip_eval || !net->alias_eval || !net->last_use_eval)
    return wk_fail(WK_ERR_NOMEM, "network: out of memory");
  for (int i = 0; i < nn; i++)
    net->bn_relu[i] = net->fold_bn[i] = net->fold_act[i] = net->conv_act[i] = -1;
  const char *conv_act_env = getenv("WHISKER_FUSE_CONV_ACT");
  const bool conv_act = !conv_act_env || strcmp(conv_act_env, "0") != 0;
  int *reader = NULL, *root_of = NULL;
  wk_status s = wk_first_readers(net, &reader);
  const bool fast = net->ctx->impl == WK_IMPL_CPU;
  for (int i = 0; s == WK_OK && fast && i < nn; i++) {
    const wk_node *nd = &net->nodes[i];
    if (nd->op == WK_NODE_BATCHNORM && nd->out_ndim == 3) {
      int k = wk_sole_consumer(net, reader, i + 1);
      if (k >= 0 && net->nodes[k].op == WK_NODE_ACT &&
          (net->nodes[k].act == WK_ACT_RELU ||
           (net->nodes[k].act == WK_ACT_RELU6 && wk_batchnorm_fuses(WK_POST_RELU6))) &&
          net->alias[k + 1] == net->alias[i + 1]) {
        net->bn_relu[i] = k;
        net->skip_train[k] = true;
      }
    }
    if (nd->op == WK_NODE_CONV) {
      /* conv -> batchnorm -> act, conv -> batchnorm, or (a network whose
       * batchnorms were folded already, e.g. imported from ONNX) conv -> act */
      int j = wk_sole_consumer(net, reader, i + 1);
      if (j < 0) continue;
      if (net->nodes[j].op == WK_NODE_BATCHNORM) {
        net->fold_bn[i] = j;
        net->skip_eval[j] = true;
        j = wk_sole_consumer(net, reader, j + 1);
      }
      if (j >= 0 && net->nodes[j].op == WK_NODE_ACT) {
        net->fold_act[i] = j;
        net->skip_eval[j] = true;
        /* training: the conv applies the activation it writes in place (a batchnorm-free
         * network's conv -> act) */
        if (conv_act && net->fold_bn[i] < 0 && net->alias[j + 1] == net->alias[i + 1]) {
          net->conv_act[i] = j;
          net->skip_train_fwd[j] = true;
        }
      }
    }
  }
  if (s == WK_OK) s = wk_plan_pwdw(net, reader);
  if (s == WK_OK) {
    wk_alias_eval(net, NULL);
    if (!(root_of = malloc((size_t)nv * sizeof *root_of)))
      s = wk_fail(WK_ERR_NOMEM, "network: out of memory");
  }
  for (int v = 0; s == WK_OK && v < nv; v++) root_of[v] = -1;
  if (s == WK_OK) s = wk_plan_sum(net, reader, root_of);
  if (s == WK_OK) wk_alias_eval(net, root_of);
  free(root_of);
  free(reader);
  WK_TRY(s);
  WK_TRY(wk_plan_blocked(net));
  /* A buffer dies after the last node that reads it or writes into it. */
  for (int v = 0; v < nv; v++) net->last_use_eval[v] = v - 1; /* its producer */
  for (int i = 0; i < nn; i++) {
    net->last_use_eval[net->alias_eval[i + 1]] = i;
    for (int k = 0; k < net->nodes[i].n_in; k++)
      net->last_use_eval[net->alias_eval[net->nodes[i].in[k]]] = i;
  }
  return WK_OK;
}

static void wk_plans_free(wk_node_state *st) {
  wk_conv2d_plan_destroy(st->conv_train);
  wk_conv2d_plan_destroy(st->conv_eval);
  wk_conv2d_pwdw_plan_destroy(st->pwdw_eval);
  wk_batchnorm_plan_destroy(st->bn);
  wk_pool2d_plan_destroy(st->pool_train);
  wk_pool2d_plan_destroy(st->pool_eval);
  st->conv_train = st->conv_eval = NULL;
  st->pwdw_eval = NULL;
  st->bn = NULL;
  st->pool_train = st->pool_eval = NULL;
  st->sum_declined = false;
  st->impl[0] = '\0';
  st->plan_n = 0;
}

void wk_node_plan_free(wk_node_state *st) {
  wk_plans_free(st);
  free(st->folded);
  st->folded = NULL;
}

static void wk_plans_for_batch(wk_node_state *st, int64_t n) {
  if (st->plan_n != n) {
    wk_plans_free(st);
    st->plan_n = n;
  }
}

static const float *wk_arena_at(const wk_net *net, const float *arena, int p) {
  return p >= 0 ? arena + net->params[p].offset : NULL;
}

/* Folds batchnorm node j into conv node i's weights: w' = w s, b' = beta +
 * (b - mean) s with s = gamma / sqrt(var + eps), per output channel. */
static wk_status wk_fold(wk_net *net, int i, int j) {
  wk_node_state *st = &net->state[i];
  const wk_node *cv = &net->nodes[i], *bn = &net->nodes[j];
  const wk_param *wp = &net->params[cv->param[0]];
  const int64_t o = wp->shape[0], per_o = (int64_t)wp->numel / o;
  if (st->folded && st->folded_wv == net->weights_version && st->folded_bv == net->bn_version)
    return WK_OK;
  if (!st->folded) {
    st->folded = malloc((wp->numel + (size_t)o) * sizeof(float));
    if (!st->folded) return wk_fail(WK_ERR_NOMEM, "%s: out of memory folding", cv->name);
  }
  const float *w = wk_arena_at(net, net->weights, cv->param[0]);
  const float *b = wk_arena_at(net, net->weights, cv->param[1]);
  const float *gamma = wk_arena_at(net, net->weights, bn->param[0]);
  const float *beta = wk_arena_at(net, net->weights, bn->param[1]);
  const float *mean = net->buffer_data + net->buffers[bn->buffer[0]].offset;
  const float *var = net->buffer_data + net->buffers[bn->buffer[1]].offset;
  float *fw = st->folded, *fb = st->folded + wp->numel;
  for (int64_t oc = 0; oc < o; oc++) {
    const double s = (double)gamma[oc] / sqrt((double)var[oc] + (double)bn->bn.eps);
    for (int64_t k = 0; k < per_o; k++) fw[oc * per_o + k] = (float)(w[oc * per_o + k] * s);
    fb[oc] = (float)((double)beta[oc] + ((b ? (double)b[oc] : 0.0) - (double)mean[oc]) * s);
  }
  st->folded_wv = net->weights_version;
  st->folded_bv = net->bn_version;
  st->folded_version = ++net->plan_version;
  return WK_OK;
}

/* Conv node i's weights for evaluation: with its batchnorm folded in, or as
 * they are. */
static wk_status wk_eval_weights(wk_net *net, int i, wk_conv2d_weights *out) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  const int j = net->fold_bn[i];
  if (j < 0) {
    out->w = wk_arena_at(net, net->weights, nd->param[0]);
    out->version = net->weights_version + 1;
    out->b = wk_arena_at(net, net->weights, nd->param[1]);
    return WK_OK;
  }
  WK_TRY(wk_fold(net, i, j));
  out->w = st->folded;
  out->version = st->folded_version;
  out->b = st->folded + net->params[nd->param[0]].numel;
  return WK_OK;
}

/* The activation fused after conv node i in evaluation. */
static wk_post_act wk_eval_post(const wk_net *net, int i) {
  return wk_act_post(net, net->fold_act[i]);
}

/* Depthwise node d with its 1x1 node (net->pwdw[d]), reading the 1x1's input. */
static wk_status wk_node_pwdw_forward(wk_net *net, int d, wk_tensor *y) {
  const int a = net->pwdw[d];
  const wk_node *pn = &net->nodes[a], *dn = &net->nodes[d];
  wk_node_state *st = &net->state[d];
  const wk_tensor x = wk_net_value_tensor(net, pn->in[0], net->batch, net->val[pn->in[0]]);
  const wk_tensor expanded = wk_net_value_tensor(net, dn->in[0], net->batch, NULL);
  wk_conv2d_weights w1, w2;
  WK_TRY(wk_eval_weights(net, a, &w1));
  WK_TRY(wk_eval_weights(net, d, &w2));
  wk_plans_for_batch(st, x.shape[0]);
  if (!st->pwdw_eval) {
    wk_conv2d_geom g1, g2;
    WK_TRY(wk_conv_geom(pn, &x, &g1));
    WK_TRY(wk_conv_geom(dn, &expanded, &g2));
    WK_TRY(wk_conv2d_pwdw_plan_create(net->ctx, &g1, w1.b != NULL, wk_eval_post(net, a), &g2,
                                      w2.b != NULL, wk_eval_post(net, d), wk_eval_blocked(net, pn->in[0]),
                                      wk_eval_blocked(net, d + 1), true, &st->pwdw_eval));
  }
  /* the expanded activations when the two run in turn: a pool buffer, as
   * the 1x1's output would have been */
  const size_t mid_bytes = wk_conv2d_pwdw_plan_scratch_bytes(st->pwdw_eval);
  float *mid = NULL;
  if (mid_bytes) WK_TRY(wk_bufpool_acquire(&net->pool, mid_bytes / sizeof *mid, &mid));
  const wk_status s = wk_conv2d_pwdw_plan_forward(st->pwdw_eval, x.data, &w1, &w2, mid, y->data);
  wk_bufpool_release(&net->pool, mid);
  return s;
}

/* Conv node i adding into the other input of its residual add, y
 * (net->sum_add): y = act(y + conv(x)) in one plan where the convolution can
 * run on y directly, else into a pool buffer that is then added in. */
static wk_status wk_node_conv_sum_forward(wk_net *net, int i, const wk_tensor *x,
                                          const wk_conv2d_geom *g, const wk_conv2d_weights *wt,
                                          wk_tensor *y) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  const int r = net->sum_act[i];
  const wk_act act = r >= 0 ? net->nodes[r].act : WK_ACT_RELU;
  const wk_post_act post = wk_act_post(net, r);
  const bool src_blk = wk_eval_blocked(net, nd->in[0]), dst_blk = wk_eval_blocked(net, i + 1);
  if (!st->conv_eval && !st->sum_declined) {
    const wk_status s = src_blk == dst_blk
                            ? wk_conv2d_plan_create_sum(net->ctx, g, wt->b != NULL, post, dst_blk,
                                                        &st->conv_eval)
                            : WK_ERR_UNSUPPORTED;
    if (s != WK_OK && s != WK_ERR_UNSUPPORTED) return s;
    st->sum_declined = s == WK_ERR_UNSUPPORTED;
    const char *conv = st->conv_eval ? wk_conv2d_plan_impl(st->conv_eval) : NULL;
    if (conv)
      snprintf(st->impl, sizeof st->impl, "%s + add%s", conv, r < 0 ? "" : " + act");
  }
  if (!st->sum_declined)
    return wk_conv2d_plan_forward(st->conv_eval, x->data, wt->w, wt->version, wt->b, y->data);
  if (!st->conv_eval) {
    WK_TRY(wk_conv2d_plan_create_layout(net->ctx, g, wt->b != NULL, true, WK_POST_NONE, src_blk,
                                        dst_blk, &st->conv_eval));
    snprintf(st->impl, sizeof st->impl, "%s, add%s after", wk_conv2d_plan_impl(st->conv_eval),
             r < 0 ? "" : " + act");
  }
  /* whole buffers: the padding of nChw16c stays zero through add and act */
  const int64_t n = net->batch * wk_net_eval_numel(net, i + 1);
  float *tmp;
  WK_TRY(wk_bufpool_acquire(&net->pool, (size_t)n, &tmp));
  wk_status s = wk_conv2d_plan_forward(st->conv_eval, x->data, wt->w, wt->version, wt->b, tmp);
  wk_tensor ft = wk_tensor_view(tmp, WK_F32, 1, &n), fy = wk_tensor_view(y->data, WK_F32, 1, &n);
  if (s == WK_OK) s = wk_add_forward(net->ctx, &fy, &ft, &fy);
  if (s == WK_OK && r >= 0) s = wk_act_forward(net->ctx, act, &fy, &fy);
  wk_bufpool_release(&net->pool, tmp);
  return s;
}

wk_status wk_node_conv_forward(wk_net *net, int i, bool train, const wk_tensor *x,
                               const wk_tensor *w, const wk_tensor *b, wk_tensor *y) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  if (net->ctx->impl != WK_IMPL_CPU) return wk_conv2d_forward(net->ctx, &nd->conv, x, w, b, y);
  wk_conv2d_geom g;
  if (train) {
    WK_TRY(wk_conv_geom(nd, x, &g));
    wk_plans_for_batch(st, x->shape[0]);
    const wk_post_act post = wk_act_post(net, net->conv_act[i]); /* fused in training */
    if (!st->conv_train)
      WK_TRY(wk_conv2d_plan_create(net->ctx, &g, b != NULL, false, post, &st->conv_train));
    return wk_conv2d_plan_forward(st->conv_train, x->data, w->data, net->plan_version,
                                  b ? b->data : NULL, y->data);
  }
  if (net->pwdw[i] >= 0) return wk_node_pwdw_forward(net, i, y);
  WK_TRY(wk_conv_geom(nd, x, &g));
  wk_plans_for_batch(st, x->shape[0]);
  wk_conv2d_weights wt;
  WK_TRY(wk_eval_weights(net, i, &wt));
  if (net->sum_add[i] >= 0) return wk_node_conv_sum_forward(net, i, x, &g, &wt, y);
  if (!st->conv_eval)
    WK_TRY(wk_conv2d_plan_create_layout(net->ctx, &g, wt.b != NULL, true, wk_eval_post(net, i),
                                        wk_eval_blocked(net, nd->in[0]), wk_eval_blocked(net, i + 1),
                                        &st->conv_eval));
  return wk_conv2d_plan_forward(st->conv_eval, x->data, wt.w, wt.version, wt.b, y->data);
}

const char *wk_net_node_eval_impl(const wk_net *net, int i) {
  if (!net->state || i < 0 || i >= net->n_nodes) return NULL;
  const wk_node_state *st = &net->state[i];
  if (st->pwdw_eval) return wk_conv2d_pwdw_plan_impl(st->pwdw_eval);
  if (st->impl[0]) return st->impl;
  return st->conv_eval ? wk_conv2d_plan_impl(st->conv_eval) : NULL;
}

int wk_net_node_train_host(const wk_net *net, int i) {
  if (!net->bn_relu || i < 0 || i >= net->n_nodes) return -1;
  if (!net->skip_train[i] && !net->skip_train_fwd[i]) return -1;
  for (int j = 0; j < net->n_nodes; j++)
    if (net->bn_relu[j] == i || net->conv_act[j] == i) return j;
  return -1;
}

wk_status wk_node_conv_backward(wk_net *net, int i, const wk_tensor *x, const wk_tensor *w,
                                const wk_tensor *dy, wk_tensor *dx, wk_tensor *dw,
                                wk_tensor *db) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  if (!st->conv_train)
    return wk_conv2d_backward(net->ctx, &nd->conv, x, w, dy, dx, dw, db);
  return wk_conv2d_plan_backward(st->conv_train, x->data, w->data, net->plan_version, dy->data,
                                 dx ? dx->data : NULL, dw ? dw->data : NULL,
                                 db ? db->data : NULL);
}

static wk_status wk_bn_state(wk_net *net, int i, int64_t c) {
  wk_node_state *st = &net->state[i];
  if (st->save_mean) return WK_OK;
  st->save_mean = malloc((size_t)c * sizeof(float));
  st->save_stat = malloc((size_t)c * sizeof(float));
  if (!st->save_mean || !st->save_stat)
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory", net->nodes[i].name);
  return WK_OK;
}

wk_status wk_node_bn_forward_train(wk_net *net, int i, const wk_tensor *x, wk_tensor *y) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  const wk_param *gp = &net->params[nd->param[0]];
  const int64_t c = gp->shape[0], m = wk_tensor_numel(x) / c;
  float *gamma = net->weights + gp->offset;
  float *beta = net->weights + net->params[nd->param[1]].offset;
  float *rm = net->buffer_data + net->buffers[nd->buffer[0]].offset;
  float *rv = net->buffer_data + net->buffers[nd->buffer[1]].offset;
  WK_TRY(wk_bn_state(net, i, c));
  if (net->sync_bn_fn) return wk_node_bn_forward_sync(net, i, x, y);
  st->stat_synced = false;
  /* before the paths part: a fused batchnorm + relu has only the fast one */
  if (m < 2)
    return wk_fail(WK_ERR_SHAPE, "%s: training needs more than one value per channel (got a "
                   "batch of %lld)", nd->name, (long long)x->shape[0]);
  if (net->ctx->impl == WK_IMPL_CPU) {
    wk_plans_for_batch(st, x->shape[0]);
    if (!st->bn)
      WK_TRY(wk_batchnorm_plan_create(net->ctx, m, c, nd->bn.eps, wk_bn_post(net, i), &st->bn));
    WK_TRY(wk_batchnorm_plan_forward(st->bn, x->data, gamma, beta, st->save_mean, st->save_stat,
                                     y->data));
    wk_batchnorm_running_update(&nd->bn, m, c, st->save_mean, st->save_stat, rm, rv);
    st->stat_is_var = true;
    return WK_OK;
  }
  WK_ASSERT(net->bn_relu[i] < 0); /* fusions exist on the fast path only */
  wk_tensor g = wk_tensor_view(gamma, WK_F32, 1, &c), b = wk_tensor_view(beta, WK_F32, 1, &c);
  wk_tensor rmt = wk_tensor_view(rm, WK_F32, 1, &c), rvt = wk_tensor_view(rv, WK_F32, 1, &c);
  wk_tensor sm = wk_tensor_view(st->save_mean, WK_F32, 1, &c);
  wk_tensor ss = wk_tensor_view(st->save_stat, WK_F32, 1, &c);
  st->stat_is_var = false;
  return wk_batchnorm_forward_train(net->ctx, &nd->bn, x, &g, &b, &rmt, &rvt, &sm, &ss, y);
}

wk_status wk_node_bn_backward(wk_net *net, int i, const wk_tensor *x, const wk_tensor *dy,
                              float *dx) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  const wk_param *gp = &net->params[nd->param[0]], *bp = &net->params[nd->param[1]];
  const int64_t c = gp->shape[0];
  const bool frozen = gp->flags & WK_PARAM_FROZEN;
  float *dgamma = frozen ? NULL : net->grads + gp->offset;
  float *dbeta = frozen ? NULL : net->grads + bp->offset;
  const float *gamma = net->weights + gp->offset, *beta = net->weights + bp->offset;
  if (st->stat_synced) return wk_node_bn_backward_sync(net, i, x, dy, dx);
  if (st->stat_is_var)
    return wk_batchnorm_plan_backward(st->bn, x->data, gamma, beta, st->save_mean, st->save_stat,
                                      dy->data, dx, dgamma, dbeta);
  wk_tensor g = wk_tensor_view((float *)gamma, WK_F32, 1, &c);
  wk_tensor mean = wk_tensor_view(st->save_mean, WK_F32, 1, &c);
  wk_tensor invstd = wk_tensor_view(st->save_stat, WK_F32, 1, &c);
  wk_tensor dxt = wk_tensor_view(dx, WK_F32, x->ndim, x->shape);
  wk_tensor dgt = wk_tensor_view(dgamma, WK_F32, 1, &c), dbt = wk_tensor_view(dbeta, WK_F32, 1, &c);
  return wk_batchnorm_backward(net->ctx, &nd->bn, false, x, &g, &mean, &invstd, dy,
                               dx ? &dxt : NULL, frozen ? NULL : &dgt, frozen ? NULL : &dbt);
}

wk_status wk_node_pool_forward(wk_net *net, int i, bool train, const wk_tensor *x, wk_tensor *y,
                               bool *done) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  *done = false;
  if (net->ctx->impl != WK_IMPL_CPU) return WK_OK;
  wk_plans_for_batch(st, x->shape[0]);
  wk_pool2d_plan **pp = train ? &st->pool_train : &st->pool_eval;
  if (!*pp) {
    wk_pool2d_geom g;
    WK_TRY(wk_pool2d_geom_make(&nd->pool, x->shape[0], x->shape[1], x->shape[2], x->shape[3], &g));
    const bool blk = !train && net->blk_eval[net->alias_eval[nd->in[0]]];
    WK_TRY(wk_pool2d_plan_create_layout(net->ctx, &g, nd->op == WK_NODE_MAXPOOL, train, blk, pp));
  }
  *done = true;
  return wk_pool2d_plan_forward(*pp, x->data, y->data);
}

wk_status wk_node_pool_backward(wk_net *net, int i, const wk_tensor *dy, wk_tensor *dx,
                                bool *done) {
  wk_node_state *st = &net->state[i];
  *done = st->pool_train != NULL;
  if (!*done) return WK_OK;
  return wk_pool2d_plan_backward(st->pool_train, dy->data, dx->data);
}
