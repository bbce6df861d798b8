/* exec_node.c - forward and backward of one node, by op. Buffers are set up by
 * exec.c: net->val[v] holds every value the node reads or writes, and
 * net->grad[i + 1] the gradient of its output during backward. */
#include <stdlib.h>
#include <string.h>

#include "nn/exec_node.h"
#include "nn/net_impl.h"

void wk_node_state_free(wk_net *net, int i) {
  wk_node_state *st = &net->state[i];
  free(st->save_mean);
  free(st->save_stat);
  wk_node_plan_free(st);
  memset(st, 0, sizeof *st);
}

static wk_tensor wk_val(const wk_net *net, int v, float *data) {
  return wk_net_value_tensor(net, v, net->batch, data);
}

static wk_tensor wk_param_t(wk_net *net, int p, float *arena) {
  if (p < 0) return (wk_tensor){0};
  const wk_param *pp = &net->params[p];
  return wk_tensor_view(arena + pp->offset, WK_F32, pp->ndim, pp->shape);
}

static wk_tensor wk_buffer_t(wk_net *net, int b) {
  const wk_param *pp = &net->buffers[b];
  return wk_tensor_view(net->buffer_data + pp->offset, WK_F32, pp->ndim, pp->shape);
}

static wk_status wk_node_fail(const wk_node *nd, wk_status s) {
  return wk_fail(s, "%s (%s): %s", nd->name, wk_node_op_name(nd->op), wk_last_error());
}

static bool wk_blk(const wk_net *net, int v, bool train) {
  return !train && wk_eval_blocked(net, v);
}

/* A whole nChw16c buffer as a flat tensor: elementwise ops run over the
 * padding too, which stays zero (relu, relu6 and add keep 0 at 0). */
static wk_tensor wk_flat(const wk_net *net, int v, float *data) {
  const int64_t n = net->batch * wk_net_eval_numel(net, v);
  return wk_tensor_view(data, WK_F32, 1, &n);
}

/* Global average pooling of an nChw16c buffer into (N, C). */
static void wk_gap_blocked(const wk_net *net, int in, const float *x, float *y) {
  const wk_tensor t = wk_net_value_tensor(net, in, 1, NULL); /* (1, H, W, C) */
  const int64_t hw = t.shape[1] * t.shape[2], c = t.shape[3], cb = wk_blk16(c) / 16;
  for (int64_t n = 0; n < net->batch; n++)
    for (int64_t b = 0; b < cb; b++) {
      const float *p = x + (n * cb + b) * hw * 16;
      double acc[16] = {0};
      for (int64_t q = 0; q < hw; q++)
        for (int l = 0; l < 16; l++) acc[l] += p[q * 16 + l];
      for (int l = 0; l < 16 && b * 16 + l < c; l++)
        y[n * c + b * 16 + l] = (float)(acc[l] / (double)hw);
    }
}

wk_status wk_node_forward(wk_net *net, int i, bool train) {
  const wk_node *nd = &net->nodes[i];
  if (train ? net->skip_train[i] || net->skip_train_fwd[i] : net->skip_eval[i])
    return WK_OK; /* fused into another */
  wk_node_state *st = &net->state[i];
  const int v = i + 1, in = nd->in[0];
  wk_tensor x = wk_val(net, in, net->val[in]), y = wk_val(net, v, net->val[v]);
  wk_status s = WK_OK;
  switch (nd->op) {
  case WK_NODE_CONV: {
    wk_tensor w = wk_param_t(net, nd->param[0], net->weights);
    wk_tensor b = wk_param_t(net, nd->param[1], net->weights);
    s = wk_node_conv_forward(net, i, train, &x, &w, nd->param[1] >= 0 ? &b : NULL, &y);
    break;
  }
  case WK_NODE_BATCHNORM:
    /* (N,H,W,C) or (N,C): batchnorm treats both as rows of C. A frozen
     * batchnorm with nothing trainable upstream (a frozen body being
     * fine-tuned) keeps its running statistics in training too: it uses them
     * and leaves them unchanged, as a frozen layer should. */
    if (train && net->needs_grad[v]) {
      s = wk_node_bn_forward_train(net, i, &x, &y);
    } else {
      wk_tensor g = wk_param_t(net, nd->param[0], net->weights);
      wk_tensor b = wk_param_t(net, nd->param[1], net->weights);
      wk_tensor rm = wk_buffer_t(net, nd->buffer[0]), rv = wk_buffer_t(net, nd->buffer[1]);
      s = wk_batchnorm_forward_infer(net->ctx, &nd->bn, &x, &g, &b, &rm, &rv, &y);
      /* the activation fused into a training batchnorm runs here instead (in place) */
      if (s == WK_OK && train && net->bn_relu[i] >= 0)
        s = wk_act_forward(net->ctx, net->nodes[net->bn_relu[i]].act, &y, &y);
    }
    break;
  case WK_NODE_ACT:
    if (wk_blk(net, v, train)) {
      wk_tensor fx = wk_flat(net, in, net->val[in]), fy = wk_flat(net, v, net->val[v]);
      s = wk_act_forward(net->ctx, nd->act, &fx, &fy);
      break;
    }
    s = wk_act_forward(net->ctx, nd->act, &x, &y);
    break;
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL: {
    bool done;
    s = wk_node_pool_forward(net, i, train, &x, &y, &done);
    if (s != WK_OK || done) break;
    if (nd->op == WK_NODE_AVGPOOL) {
      s = wk_avgpool2d_forward(net->ctx, &nd->pool, &x, &y);
      break;
    }
    wk_tensor am = {0};
    if (train) {
      float *buf;
      WK_TRY(wk_bufpool_acquire(&net->pool, (size_t)wk_tensor_numel(&y), &buf));
      st->argmax = (int32_t *)buf; /* same size as a float; the pool is untyped */
      am = wk_tensor_view(buf, WK_I32, y.ndim, y.shape);
    }
    s = wk_maxpool2d_forward(net->ctx, &nd->pool, &x, &y, train ? &am : NULL);
    break;
  }
  case WK_NODE_GLOBAL_AVGPOOL:
    if (wk_blk(net, in, train)) {
      wk_gap_blocked(net, in, x.data, y.data);
      break;
    }
    s = wk_global_avgpool_forward(net->ctx, &x, &y);
    break;
  case WK_NODE_FLATTEN:
    break; /* a view of its input */
  case WK_NODE_LINEAR: {
    wk_tensor w = wk_param_t(net, nd->param[0], net->weights);
    wk_tensor b = wk_param_t(net, nd->param[1], net->weights);
    s = wk_linear_forward(net->ctx, &x, &w, nd->param[1] >= 0 ? &b : NULL, &y);
    break;
  }
  case WK_NODE_ADD: {
    if (wk_blk(net, v, train)) {
      wk_tensor fa = wk_flat(net, in, net->val[in]), fy = wk_flat(net, v, net->val[v]);
      wk_tensor fb = wk_flat(net, nd->in[1], net->val[nd->in[1]]);
      s = wk_add_forward(net->ctx, &fa, &fb, &fy);
      break;
    }
    wk_tensor b = wk_val(net, nd->in[1], net->val[nd->in[1]]);
    s = wk_add_forward(net->ctx, &x, &b, &y);
    break;
  }
  case WK_NODE_DROPOUT: {
    if (!train || nd->drop_p == 0.0f) {
      memcpy(y.data, x.data, wk_tensor_nbytes(&x));
      break;
    }
    wk_dropout_params p = {.p = nd->drop_p, .seed = net->dropout_seed,
                           .stream = (net->dropout_step << 16) ^ (uint64_t)i,
                           .first = (uint64_t)(net->dropout_first *
                                               wk_net_value_numel(net, nd->in[0]))};
    s = wk_dropout_forward(net->ctx, &p, &x, &y);
    break;
  }
  default:
    WK_ASSERT(!"unknown op");
  }
  return s == WK_OK ? WK_OK : wk_node_fail(nd, s);
}

static bool wk_trainable(const wk_net *net, int p) {
  return p >= 0 && !(net->params[p].flags & WK_PARAM_FROZEN);
}

wk_status wk_node_backward(wk_net *net, int i, bool *kept) {
  const wk_node *nd = &net->nodes[i];
  wk_node_state *st = &net->state[i];
  const int v = i + 1, in = nd->in[0];
  float *g = net->grad[v];
  wk_tensor x = wk_val(net, in, net->val[in]), dy = wk_val(net, v, g);
  float *dxp = NULL;
  wk_status s = WK_OK;
  *kept = false;
  /* ops that hand the gradient on (a fused activation: its batchnorm applies
   * the mask) */
  if (nd->op == WK_NODE_FLATTEN || (nd->op == WK_NODE_DROPOUT && nd->drop_p == 0.0f) ||
      net->skip_train[i]) {
    *kept = wk_grad_pass(net, in, g);
    return WK_OK;
  }
  if (nd->op == WK_NODE_ADD) {
    /* both inputs receive dy: the first takes the buffer over, the second gets a
     * copy (or, for x + x, adds it in a second time) */
    const int in1 = nd->in[1];
    bool taken = wk_grad_pass(net, in, g);
    if (taken && in1 != in) {
      WK_TRY(wk_grad_dest(net, in1, &dxp));
      if (dxp) memcpy(dxp, g, (size_t)wk_tensor_numel(&dy) * sizeof(float));
      wk_grad_commit(net, in1, dxp);
    } else {
      taken = wk_grad_pass(net, in1, g) || taken;
    }
    *kept = taken;
    return WK_OK;
  }
  if (nd->op == WK_NODE_ACT && net->alias[v] == net->alias[in]) {
    /* in place: the output buffer is the input's; the mask comes from it */
    wk_tensor yv = wk_val(net, v, net->val[v]);
    s = wk_act_backward(net->ctx, nd->act, &yv, &dy, &dy);
    if (s != WK_OK) return wk_node_fail(nd, s);
    *kept = wk_grad_pass(net, in, g);
    return WK_OK;
  }
  WK_TRY(wk_grad_dest(net, in, &dxp));
  wk_tensor dx = wk_val(net, in, dxp);
  wk_tensor *dxt = dxp ? &dx : NULL;
  switch (nd->op) {
  case WK_NODE_CONV: {
    wk_tensor w = wk_param_t(net, nd->param[0], net->weights);
    wk_tensor dw = wk_param_t(net, nd->param[0], net->grads);
    wk_tensor db = wk_param_t(net, nd->param[1], net->grads);
    s = wk_node_conv_backward(net, i, &x, &w, &dy, dxt,
                              wk_trainable(net, nd->param[0]) ? &dw : NULL,
                              wk_trainable(net, nd->param[1]) ? &db : NULL);
    break;
  }
  case WK_NODE_BATCHNORM:
    s = wk_node_bn_backward(net, i, &x, &dy, dxp);
    break;
  case WK_NODE_ACT: {
    wk_tensor yv = wk_val(net, v, net->val[v]);
    if (dxt) s = wk_act_backward(net->ctx, nd->act, &yv, &dy, dxt);
    break;
  }
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL: {
    bool done = false;
    if (dxt) s = wk_node_pool_backward(net, i, &dy, dxt, &done);
    if (!dxt || s != WK_OK || done) break;
    if (nd->op == WK_NODE_AVGPOOL) {
      s = wk_avgpool2d_backward(net->ctx, &nd->pool, &dy, dxt);
    } else {
      wk_tensor am = wk_tensor_view(st->argmax, WK_I32, dy.ndim, dy.shape);
      s = wk_maxpool2d_backward(net->ctx, &nd->pool, &am, &dy, dxt);
    }
    break;
  }
  case WK_NODE_GLOBAL_AVGPOOL:
    if (dxt) s = wk_global_avgpool_backward(net->ctx, &dy, dxt);
    break;
  case WK_NODE_LINEAR: {
    wk_tensor w = wk_param_t(net, nd->param[0], net->weights);
    wk_tensor dw = wk_param_t(net, nd->param[0], net->grads);
    wk_tensor db = wk_param_t(net, nd->param[1], net->grads);
    s = wk_linear_backward(net->ctx, &x, &w, &dy, dxt,
                           wk_trainable(net, nd->param[0]) ? &dw : NULL,
                           wk_trainable(net, nd->param[1]) ? &db : NULL);
    break;
  }
  case WK_NODE_DROPOUT: {
    wk_dropout_params p = {.p = nd->drop_p, .seed = net->dropout_seed,
                           .stream = (net->dropout_step << 16) ^ (uint64_t)i,
                           .first = (uint64_t)(net->dropout_first *
                                               wk_net_value_numel(net, nd->in[0]))};
    if (dxt) s = wk_dropout_backward(net->ctx, &p, &dy, dxt);
    break;
  }
  default:
    WK_ASSERT(!"unknown op");
  }
  if (s != WK_OK) {
    wk_bufpool_release(&net->pool, dxp);
    return wk_node_fail(nd, s);
  }
  wk_grad_commit(net, in, dxp);
  return WK_OK;
}
