/* exec.c - running a network forward and backward.
 *
 * Buffers come from the network's pool: in training every value lives until
 * the backward pass ends; in evaluation a value is released after its last
 * consumer. An activation that is its input's only consumer runs in place.
 * Backward walks the nodes in reverse; a value's gradient buffer is written by
 * its first consumer (in reverse order) and accumulated into by the others,
 * and is released once its producer has used it. Ops that pass the gradient
 * through unchanged (flatten, add, in-place activations) hand the buffer on
 * instead of copying it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/exec_node.h"
#include "core/clock.h"
#include "nn/net_impl.h"

void wk_net_release_runtime(wk_net *net) {
  if (net->state) {
    for (int i = 0; i < net->n_nodes; i++) wk_node_state_free(net, i);
    free(net->state);
    net->state = NULL;
  }
  wk_bufpool_free(&net->pool);
  free(net->val);
  free(net->grad);
  net->val = net->grad = NULL;
}

void wk_net_set_dropout_seed(wk_net *net, uint64_t seed, uint64_t step) {
  net->dropout_seed = seed;
  net->dropout_step = step;
}

void wk_net_set_dropout_first(wk_net *net, int64_t first) { net->dropout_first = first; }

void wk_net_set_backward_hook(wk_net *net, wk_net_node_done_fn fn, void *user) {
  net->bwd_hook = fn;
  net->bwd_hook_user = user;
}

void wk_net_set_sync_bn(wk_net *net, wk_net_allreduce_fn fn, void *user, int world) {
  net->sync_bn_fn = world > 1 ? fn : NULL;
  net->sync_bn_user = user;
  net->sync_bn_world = world > 1 ? world : 1;
}

wk_status wk_net_profile_enable(wk_net *net) {
  if (net->prof_fwd_s) return WK_OK;
  net->prof_fwd_s = calloc((size_t)net->n_nodes + 1, sizeof(double));
  net->prof_bwd_s = calloc((size_t)net->n_nodes + 1, sizeof(double));
  if (!net->prof_fwd_s || !net->prof_bwd_s) return wk_fail(WK_ERR_NOMEM, "out of memory");
  return wk_net_gpu_profile_start(net);
}

void wk_net_profile_get(const wk_net *net, int i, double *fwd_s, double *bwd_s) {
  *fwd_s = net->prof_fwd_s && i >= 0 && i < net->n_nodes ? net->prof_fwd_s[i] : 0.0;
  *bwd_s = net->prof_bwd_s && i >= 0 && i < net->n_nodes ? net->prof_bwd_s[i] : 0.0;
}

size_t wk_net_activation_bytes(const wk_net *net) { return net->pool.bytes_held; }

wk_status wk_net_check_input(const wk_net *net, const wk_tensor *x) {
  if (!net->finalized) return wk_fail(WK_ERR_INVALID_ARG, "network used before finalize");
  if (!x || x->ndim != 4 || x->shape[0] < 1)
    return wk_fail(WK_ERR_SHAPE, "network input must be (N, %d, %d, %d)", net->in_h, net->in_w,
                   net->in_c);
  const int64_t s[4] = {x->shape[0], net->in_h, net->in_w, net->in_c};
  if (x->dtype == WK_U8 && !net->in_norm)
    return wk_fail(WK_ERR_INVALID_ARG, "network input: 8-bit pixels need the normalisation "
                   "(wk_net_set_input_norm)");
  return wk_tensor_expect(x, "network input", x->dtype == WK_U8 ? WK_U8 : WK_F32, 4, s);
}

wk_status wk_net_set_input_norm(wk_net *net, const float mean[3], const float std[3]) {
  if (net->in_c != 3) return wk_fail(WK_ERR_INVALID_ARG, "8-bit input needs 3 channels");
  for (int c = 0; c < 3; c++) {
    if (!(std[c] > 0.0f) || !isfinite(std[c]) || !isfinite(mean[c]))
      return wk_fail(WK_ERR_INVALID_ARG, "input normalisation: mean %g, std %g", (double)mean[c],
                     (double)std[c]);
    /* the loader's float path: work * (1 / std) + (-mean * (1 / std)) */
    net->in_mean[c] = mean[c];
    net->in_std[c] = std[c];
    net->in_scale[c] = 1.0f / std[c];
    net->in_shift[c] = -mean[c] * net->in_scale[c];
  }
  net->in_norm = true;
  return WK_OK;
}

wk_status wk_net_prefer_u8(wk_net *net, const float mean[3], const float std[3], bool *u8) {
  const char *e = getenv("WHISKER_INPUT_U8");
  if (e && *e && strcmp(e, "0") != 0 && strcmp(e, "1") != 0)
    return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_INPUT_U8='%s': expected 0 or 1", e);
  const bool want = e && *e ? strcmp(e, "1") == 0 : wk_net_on_gpu(net);
  *u8 = want && net->in_c == 3;
  return *u8 ? wk_net_set_input_norm(net, mean, std) : WK_OK;
}

/* An 8-bit batch on the CPU: normalised into the net's float buffer, *f32 a
 * view of it. */
static wk_status wk_input_to_f32(wk_net *net, const wk_tensor *x, wk_tensor *f32) {
  const size_t n = (size_t)wk_tensor_numel(x);
  if (n > net->in_f32_elems) {
    float *p = realloc(net->in_f32, n * sizeof *p);
    if (!p) return wk_fail(WK_ERR_NOMEM, "out of memory for the network's input");
    net->in_f32 = p;
    net->in_f32_elems = n;
  }
  *f32 = wk_tensor_view(net->in_f32, WK_F32, 4, x->shape);
  return wk_normalize_u8(net->ctx, x, net->in_scale, net->in_shift, f32);
}

wk_status wk_net_forward(wk_net *net, const wk_tensor *x, bool train, wk_tensor *out) {
  return wk_net_forward_next(net, x, train, NULL, out);
}

wk_status wk_net_forward_next(wk_net *net, const wk_tensor *x, bool train, const wk_tensor *next,
                              wk_tensor *out) {
  WK_TRY(wk_net_check_input(net, x));
  if (net->gpu) return wk_net_forward_gpu(net, x, train, next, out);
  wk_tensor xf;
  if (x->dtype == WK_U8) {
    WK_TRY(wk_input_to_f32(net, x, &xf));
    x = &xf;
  }
  const int64_t n = x->shape[0];
  const int nv = net->n_nodes + 1, last = net->n_nodes;
  if (n != net->batch) {
    for (int i = 0; i < net->n_nodes; i++) wk_node_state_free(net, i);
    net->batch = n;
  }
  wk_bufpool_release_all(&net->pool);
  memset(net->val, 0, (size_t)nv * sizeof *net->val);
  memset(net->grad, 0, (size_t)nv * sizeof *net->grad);
  net->val[0] = x->data;
  net->last_train = train;
  if (train) net->plan_version++;
  const int *alias = train ? net->alias : net->alias_eval;
  for (int i = 0; i < net->n_nodes; i++) {
    const int v = i + 1;
    if (alias[v] != v) {
      net->val[v] = net->val[alias[v]];
    } else {
      const int64_t per = train ? wk_net_value_numel(net, v) : wk_net_eval_numel(net, v);
      WK_TRY(wk_bufpool_acquire(&net->pool, (size_t)(n * per),
                                &net->val[v]));
    }
    const double t0 = net->prof_fwd_s ? wk_now_s() : 0.0;
    wk_status s = wk_node_forward(net, i, train);
    if (s != WK_OK) return s;
    if (net->prof_fwd_s) net->prof_fwd_s[i] += wk_now_s() - t0;
    if (train) continue;
    /* evaluation: free inputs whose buffer nobody reads any more */
    const wk_node *nd = &net->nodes[i];
    for (int k = 0; k < nd->n_in; k++) {
      int root = alias[nd->in[k]];
      if (root != 0 && root != alias[last] && net->last_use_eval[root] == i &&
          !(k == 1 && alias[nd->in[0]] == root))
        wk_bufpool_release(&net->pool, net->val[root]);
    }
  }
  if (train) {
    net->bn_batches++;
    net->bn_version++;
  }
  if (out) *out = wk_net_value_tensor(net, last, n, net->val[last]);
  return WK_OK;
}

/* grad[in] += g, over the whole value. */
static void wk_grad_add(wk_net *net, int in, const float *g) {
  float *acc = net->grad[in];
  const int64_t n = net->batch * wk_net_value_numel(net, in);
  for (int64_t i = 0; i < n; i++) acc[i] += g[i];
}

/* Where a node's backward writes the gradient of its input value `in`: the
 * value's own buffer when nothing was written yet, else a scratch buffer that
 * wk_grad_commit adds in. NULL when the input needs no gradient. */
wk_status wk_grad_dest(wk_net *net, int in, float **dst) {
  *dst = NULL;
  if (in == 0 || !net->needs_grad[in]) return WK_OK;
  return wk_bufpool_acquire(&net->pool, (size_t)(net->batch * wk_net_value_numel(net, in)), dst);
}

void wk_grad_commit(wk_net *net, int in, float *dst) {
  if (!dst) return;
  if (!net->grad[in]) {
    net->grad[in] = dst;
    return;
  }
  wk_grad_add(net, in, dst);
  wk_bufpool_release(&net->pool, dst);
}

/* Hands the buffer `g` (the gradient of a node's output) on as the gradient
 * of `in`, or adds it in when `in` already has one. Returns whether `g` was
 * taken over (so the caller must not release it). */
bool wk_grad_pass(wk_net *net, int in, float *g) {
  if (in == 0 || !net->needs_grad[in]) return false;
  if (!net->grad[in]) {
    net->grad[in] = g;
    return true;
  }
  wk_grad_add(net, in, g);
  return false;
}

/* The value whose buffer node i's backward reads, or -1: conv, batchnorm and
 * linear read their input; an activation that was not fused away reads its
 * own output (for the mask). */
static int wk_backward_reads(const wk_net *net, int i) {
  const wk_node *nd = &net->nodes[i];
  switch (nd->op) {
  case WK_NODE_CONV:
  case WK_NODE_BATCHNORM:
  case WK_NODE_LINEAR:
    return nd->in[0];
  case WK_NODE_ACT:
    return net->skip_train[i] ? -1 : i + 1;
  default:
    return -1;
  }
}

wk_status wk_net_backward(wk_net *net, const wk_tensor *dy) {
  if (net->gpu) return wk_net_backward_gpu(net, dy);
  const int last = net->n_nodes, nv = net->n_nodes + 1;
  if (!net->finalized || !net->last_train || !net->val[last])
    return wk_fail(WK_ERR_INVALID_ARG, "backward needs a training forward first");
  const int64_t n = net->batch;
  const int64_t s[2] = {n, wk_net_output_features(net)};
  WK_TRY(wk_tensor_expect(dy, "output gradient", WK_F32, 2, s));
  memset(net->grads, 0, net->n_elems * sizeof(float));
  if (!net->needs_grad[last]) return WK_OK;
  /* Activations are released as soon as no backward still to run reads them,
   * so gradient buffers reuse their memory. */
  int *readers = calloc((size_t)nv, sizeof *readers);
  if (!readers) return wk_fail(WK_ERR_NOMEM, "backward: out of memory");
  for (int i = 0; i < net->n_nodes; i++) {
    int r = wk_backward_reads(net, i);
    if (r >= 0) readers[net->alias[r]]++;
  }
  wk_status st = WK_OK;
  float *g;
  if ((st = wk_bufpool_acquire(&net->pool, (size_t)(s[0] * s[1]), &g)) != WK_OK) goto done;
  memcpy(g, dy->data, (size_t)(s[0] * s[1]) * sizeof(float));
  net->grad[last] = g;
  net->last_train = false; /* the values are consumed: one backward per forward */
  for (int i = net->n_nodes - 1; i >= 0; i--) {
    const int v = i + 1;
    if (net->grad[v]) {
      bool kept = false;
      const double t0 = net->prof_bwd_s ? wk_now_s() : 0.0;
      if ((st = wk_node_backward(net, i, &kept)) != WK_OK) goto done;
      if (net->prof_bwd_s) net->prof_bwd_s[i] += wk_now_s() - t0;
      if (!kept) wk_bufpool_release(&net->pool, net->grad[v]);
      net->grad[v] = NULL;
      if (net->bwd_hook && (st = net->bwd_hook(net->bwd_hook_user, i)) != WK_OK) goto done;
    }
    const int r = wk_backward_reads(net, i);
    if (r < 0) continue;
    const int root = net->alias[r];
    if (--readers[root] == 0 && root != 0 && root != net->alias[last]) {
      wk_bufpool_release(&net->pool, net->val[root]);
      net->val[root] = NULL;
    }
  }
done:
  free(readers);
  return st;
}
