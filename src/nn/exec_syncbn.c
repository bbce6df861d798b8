/* exec_syncbn.c - synchronised batchnorm for data-parallel training: the batch
 * statistics are those of every rank's batch together, so R ranks of batch B
 * normalise exactly as one process of batch R*B would.
 *
 * Forward: per-channel sums, summed over the ranks (net->sync_bn_fn), give the
 * mean; the centred sums of squares, summed too, the biased variance (two
 * passes, in double: no cancellation). Backward (as PyTorch's SyncBatchNorm):
 * the local sums of dy and dy * xhat are summed over the ranks for dx, and
 * gamma's and beta's gradients stay local (the gradient all-reduce averages
 * them with every other gradient). A ReLU or ReLU6 fused into the batchnorm is
 * applied here too, its mask recomputed in backward. Single-threaded plain loops:
 * synchronised batchnorm is an option for small per-rank batches, where the
 * cost is the communication, not these passes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/exec_node.h"

/* The fused activation (none, relu, relu6) of z, and whether its gradient
 * passes at z. */
static float wk_sync_act(wk_post_act act, float z) {
  if (act == WK_POST_NONE) return z;
  const float v = z > 0.0f ? z : 0.0f;
  return act == WK_POST_RELU6 && !(v < 6.0f) ? 6.0f : v;
}

static bool wk_sync_pass(wk_post_act act, float z) {
  if (act == WK_POST_RELU6) return z > 0.0f && z < 6.0f;
  return act == WK_POST_NONE || z > 0.0f;
}

/* A (2C) double scratch, reused across calls. */
static wk_status wk_sync_scratch(wk_net *net, int64_t c, double **out) {
  if (net->sync_bn_cap < 2 * c) {
    double *p = realloc(net->sync_bn_buf, (size_t)(2 * c) * sizeof *p);
    if (!p) return wk_fail(WK_ERR_NOMEM, "synchronised batchnorm: out of memory");
    net->sync_bn_buf = p;
    net->sync_bn_cap = 2 * c;
  }
  *out = net->sync_bn_buf;
  return WK_OK;
}

wk_status wk_node_bn_forward_sync(wk_net *net, int i, const wk_tensor *x, wk_tensor *y) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  const wk_param *gp = &net->params[nd->param[0]];
  const int64_t c = gp->shape[0], m = wk_tensor_numel(x) / c;
  const int64_t total = m * net->sync_bn_world;
  const float *gamma = net->weights + gp->offset;
  const float *beta = net->weights + net->params[nd->param[1]].offset;
  float *rm = net->buffer_data + net->buffers[nd->buffer[0]].offset;
  float *rv = net->buffer_data + net->buffers[nd->buffer[1]].offset;
  const float *xs = x->data;
  float *ys = y->data;
  double *acc = NULL;
  WK_TRY(wk_sync_scratch(net, c, &acc));
  if (total < 2)
    return wk_fail(WK_ERR_SHAPE, "%s: training needs more than one value per channel", nd->name);
  memset(acc, 0, (size_t)c * sizeof *acc);
  for (int64_t r = 0; r < m; r++)
    for (int64_t ch = 0; ch < c; ch++) acc[ch] += xs[r * c + ch];
  WK_TRY(net->sync_bn_fn(net->sync_bn_user, acc, (size_t)c));
  for (int64_t ch = 0; ch < c; ch++) st->save_mean[ch] = (float)(acc[ch] / (double)total);
  memset(acc, 0, (size_t)c * sizeof *acc);
  for (int64_t r = 0; r < m; r++)
    for (int64_t ch = 0; ch < c; ch++) {
      const double d = (double)xs[r * c + ch] - st->save_mean[ch];
      acc[ch] += d * d;
    }
  WK_TRY(net->sync_bn_fn(net->sync_bn_user, acc, (size_t)c));
  /* save_stat holds the biased variance for the running update, then 1/std */
  for (int64_t ch = 0; ch < c; ch++) st->save_stat[ch] = (float)(acc[ch] / (double)total);
  wk_batchnorm_running_update(&nd->bn, total, c, st->save_mean, st->save_stat, rm, rv);
  for (int64_t ch = 0; ch < c; ch++)
    st->save_stat[ch] = (float)(1.0 / sqrt((double)st->save_stat[ch] + nd->bn.eps));
  const wk_post_act act = wk_bn_post(net, i);
  for (int64_t r = 0; r < m; r++)
    for (int64_t ch = 0; ch < c; ch++) {
      const float z = (xs[r * c + ch] - st->save_mean[ch]) * st->save_stat[ch] * gamma[ch] +
                      beta[ch];
      ys[r * c + ch] = wk_sync_act(act, z);
    }
  st->stat_is_var = false;
  st->stat_synced = true;
  return WK_OK;
}

wk_status wk_node_bn_backward_sync(wk_net *net, int i, const wk_tensor *x, const wk_tensor *dy,
                                   float *dx) {
  const wk_node *nd = &net->nodes[i];
  const wk_node_state *st = &net->state[i];
  const wk_param *gp = &net->params[nd->param[0]], *bp = &net->params[nd->param[1]];
  const int64_t c = gp->shape[0], m = wk_tensor_numel(x) / c;
  const double total = (double)m * net->sync_bn_world;
  const bool frozen = gp->flags & WK_PARAM_FROZEN;
  const wk_post_act act = wk_bn_post(net, i);
  const float *gamma = net->weights + gp->offset, *beta = net->weights + bp->offset;
  const float *xs = x->data, *g = dy->data, *mean = st->save_mean, *invstd = st->save_stat;
  double *acc = NULL; /* [0, C): sum of dz; [C, 2C): sum of dz * xhat */
  WK_TRY(wk_sync_scratch(net, c, &acc));
  memset(acc, 0, (size_t)(2 * c) * sizeof *acc);
  for (int64_t r = 0; r < m; r++)
    for (int64_t ch = 0; ch < c; ch++) {
      const float xh = (xs[r * c + ch] - mean[ch]) * invstd[ch];
      const float dz = wk_sync_pass(act, xh * gamma[ch] + beta[ch]) ? g[r * c + ch] : 0.0f;
      acc[ch] += dz;
      acc[c + ch] += (double)dz * xh;
    }
  if (!frozen) {
    float *dgamma = net->grads + gp->offset, *dbeta = net->grads + bp->offset;
    for (int64_t ch = 0; ch < c; ch++) {
      dbeta[ch] = (float)acc[ch];
      dgamma[ch] = (float)acc[c + ch];
    }
  }
  if (!dx) return WK_OK; /* the same on every rank: the graph decides it */
  WK_TRY(net->sync_bn_fn(net->sync_bn_user, acc, (size_t)(2 * c)));
  for (int64_t r = 0; r < m; r++)
    for (int64_t ch = 0; ch < c; ch++) {
      const float xh = (xs[r * c + ch] - mean[ch]) * invstd[ch];
      const float dz = wk_sync_pass(act, xh * gamma[ch] + beta[ch]) ? g[r * c + ch] : 0.0f;
      dx[r * c + ch] = gamma[ch] * invstd[ch] *
                       (float)(dz - acc[ch] / total - xh * (acc[c + ch] / total));
    }
  return WK_OK;
}
