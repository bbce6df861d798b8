/* cuda_net_bwd.c - a GPU network's backward (cuda_net.c has the design): the
 * nodes in reverse, the first write into a gradient overwriting it and later
 * ones adding, the fused groups' one call at their relu, and cuda.h's
 * wk_gpu_net_backward. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_net_impl.h"

/* ------------------------------------------------------------------ backward */

/* Whether value v's gradient already holds a contribution of this backward
 * (a node writing one adds to it, beta = 1) or not (a node writes it, beta =
 * 0: its buffer holds another gradient's leftovers, mem_plan.h); either way
 * it does from now on. */
static bool wk_grad_add(wk_gpu_net *net, int v) {
  bool *begun = &net->grad_begun[net->alias[v]];
  const bool was = *begun;
  *begun = true;
  return was;
}

/* Where a kernel writes value `in`'s gradient contribution: the gradient
 * buffer itself for the first, else the scratch (added in by wk_commit). */
static void *wk_dest(wk_gpu_net *net, int in) {
  return wk_grad_add(net, in) ? (void *)net->scratch : net->grad[in];
}

static wk_status wk_commit(wk_gpu_net *net, int in, void *dst) {
  if (dst == net->grad[in]) return WK_OK;
  const int64_t len = net->batch * net->numel[in];
  return wk_k_add(net, len, net->grad[in], dst, net->grad[in], "gradient accumulate");
}

/* Backward (after either forward: cuDNN's saved mean and inverse standard
 * deviation are these kernels'): this rank's sums of dy and dy * xhat give
 * gamma's and beta's gradients (synchronised, the gradient all-reduce
 * averages them with the rest, as on the CPU); summed over the ranks, the
 * input's gradient. need_dx is the graph's (the same on every rank), so
 * every rank sums or none does. */
static wk_status wk_own_bn_backward(wk_gpu_net *net, int i, bool need_dx) {
  const wk_node *nd = &net->nodes[i];
  const wk_gnode *s = &net->gn[i];
  const int in = nd->in[0];
  int64_t rows;
  int c;
  double total;
  WK_TRY(wk_bn_rows(net, i, &rows, &c, &total));
  const wk_store_kind k = wk_store(net);
  static const char what[] = "batchnorm backward (whisker's kernels)";
  const void *x = net->val[in], *dy = net->grad[i + 1];
  WK_TRY(wk_kernel_try(wk_launch_bn_grad_sums(k, rows, c, x, dy, s->save_mean, s->save_invvar,
                                              net->sync_partial, net->sync_sums, net->stream),
                       what));
  if (wk_trainable(net, nd->param[0]))
    WK_TRY(wk_kernel_try(wk_launch_bn_param_grads(c, net->sync_sums, wk_pg(net, nd->param[0]),
                                                  wk_pg(net, nd->param[1]), net->stream),
                         what));
  if (!need_dx) return WK_OK;
  if (net->sync_bn)
    WK_TRY(wk_gpucomm_sum_f64(net->comm, net->sync_sums, 2 * (size_t)c, net->stream,
                              "synchronised batchnorm gradient sums"));
  void *dst = wk_dest(net, in);
  WK_TRY(wk_kernel_try(wk_launch_bn_dx(k, rows, c, total, x, dy, s->save_mean, s->save_invvar,
                                       wk_pw(net, nd->param[0]), net->sync_sums, dst,
                                       net->stream), what));
  return wk_commit(net, in, dst);
}

static wk_status wk_backward_node(wk_gpu_net *net, int i, const uint64_t *seed_step);

/* Group j's backward, at its relu (where its output's gradient is complete):
 * cuDNN's fused backward gives the batchnorm's input gradient, its scale's
 * and bias's, and the add's other input's, from the relu's output and
 * gradient and the reserve space its forward kept. cuDNN writes the two
 * input gradients (it does not add): each goes straight into its gradient
 * buffer where the group writes it first, else into a half of the scratch
 * and is added in (two values' room, see wk_prepare_batch). */
static wk_status wk_fused_backward(wk_gpu_net *net, int j) {
  wk_gnode *s = &net->gn[j];
  const wk_node *bn = &net->nodes[s->fuse_bn];
  wk_gnode *sb = &net->gn[s->fuse_bn];
  const bool add = s->fuse_add >= 0;
  const int in = bn->in[0], z = s->fuse_z;
  const int64_t len = net->batch * net->numel[j + 1];
  void *spare = (char *)net->scratch + (((size_t)len * wk_esize(net) + 255) & ~(size_t)255);
  const bool need_dx = in != 0 && net->needs_grad[in];
  const bool need_dz = add && z != 0 && net->needs_grad[z];
  /* should cuDNN refuse the call, nothing was written: the nodes one by one
   * find the two gradients as they were */
  const bool begun_x = net->grad_begun[net->alias[in]];
  const bool begun_z = add && net->grad_begun[net->alias[z]];
  void *dx = need_dx ? wk_dest(net, in) : (void *)net->scratch;
  void *dz = !add ? NULL : need_dz && !wk_grad_add(net, z) ? net->grad[z] : spare;
  const bool frozen = !wk_trainable(net, bn->param[0]);
  int h, w, c;
  wk_gv_hwc(net, j + 1, &h, &w, &c);
  float *dg = frozen ? net->bn_discard : wk_pg(net, bn->param[0]);
  float *db = frozen ? net->bn_discard + c : wk_pg(net, bn->param[1]);
  const float one = 1.0f, zero = 0.0f;
  const cudnnStatus_t e = cudnnBatchNormalizationBackwardEx(
      net->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, wk_fuse_ops(s), &one, &zero, &one, &zero,
      sb->x, net->val[in], s->y, net->val[j + 1], s->y, net->grad[j + 1], add ? sb->y : NULL, dz,
      sb->x, dx, sb->bias, wk_pw(net, bn->param[0]), wk_pw(net, bn->param[1]), dg, db,
      wk_bn_eps(bn), sb->save_mean, sb->save_invvar, wk_fuse_act(net, s), net->workspace,
      net->workspace_bytes, s->reserve, s->reserve_bytes);
  if (CUDNN_STATUS_CATEGORY(e) == CUDNN_STATUS_NOT_SUPPORTED) {
    /* the nodes one by one from here: the relu's output and the batchnorm's
     * saved statistics are what the fused forward left, and the add and the
     * batchnorm see the group unfused when the walk reaches them */
    wk_graph_table_invalidate(&net->graphs);
    s->fuse_off = true;
    s->fused = false;
    wk_fuse_note(net, j, cudnnGetErrorString(e));
    if (add) net->grad_begun[net->alias[z]] = begun_z;
    net->grad_begun[net->alias[in]] = begun_x;
    return wk_backward_node(net, j, NULL);
  }
  if (e != CUDNN_STATUS_SUCCESS && s->fuse_solo)
    return wk_cudnn_failed(e, "batchnorm %s through the Ex call, backward "
                           "($WHISKER_BN_FUSE=groups runs it plain)", bn->name);
  if (e != CUDNN_STATUS_SUCCESS)
    return wk_cudnn_failed(e, "fused batchnorm %s%s with relu, backward ($WHISKER_BN_FUSE=0 "
                           "runs them one by one)", bn->name, add ? " and the add" : "");
  if (need_dx) WK_TRY(wk_commit(net, in, dx));
  if (need_dz) WK_TRY(wk_commit(net, z, dz));
  return WK_OK;
}

/* Convolution i's backward: its input's gradient (need_dx), its weights' and
 * bias's (where trainable), from the output's gradient dy and the input x. */
static wk_status wk_bwd_conv(wk_gpu_net *net, int i, const void *x, const void *dy,
                             bool need_dx) {
  const wk_node *nd = &net->nodes[i];
  wk_gnode *s = &net->gn[i];
  const int v = i + 1, in = nd->in[0];
  const bool half = wk_half(net);
  const float one = 1.0f, zero = 0.0f;
  const int64_t len = net->batch * net->numel[v];
  if (half) WK_TRY(wk_half_weights(net));
  const bool add = need_dx && wk_grad_add(net, in);
  const float *dx_beta = add ? &one : &zero;
  if (need_dx && net->conv_graph) { /* adding: the beta-1 plan, or through the scratch */
    void *w = wk_cw(net, nd->param[0]), *dyw = (void *)(uintptr_t)dy;
    if (add && s->plan[3]) WK_TRY(wk_plan_run(net, i, 3, net->grad[in], w, dyw));
    if (!(add && s->plan[3])) { /* none, or no engine left adds (wk_plan_answered) */
      void *dx = add ? (void *)net->scratch : net->grad[in];
      WK_TRY(wk_plan_run(net, i, 1, dx, w, dyw));
      WK_TRY(wk_commit(net, in, dx));
    }
  } else for (bool again = need_dx; again;) {
    WK_CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->bwd_data_math));
    WK_TRY(wk_conv_answered(
        net, i, WK_CONV_BWD_DATA,
        cudnnConvolutionBackwardData(net->cudnn, &one, s->w, wk_cw(net, nd->param[0]), s->y,
                                     dy, s->conv, s->bwd_data_algo, net->workspace,
                                     net->workspace_bytes, dx_beta, s->x, net->grad[in]),
        &again));
  }
  if (wk_trainable(net, nd->param[0])) { /* 16 bits: into bdw, then widened */
    const wk_param *pw = &net->params[nd->param[0]];
    if (net->conv_graph)
      WK_TRY(wk_plan_run(net, i, 2, (void *)(uintptr_t)x,
                         half ? (void *)net->bdw : (void *)(net->grads + pw->offset),
                         (void *)(uintptr_t)dy));
    else for (bool again = true; again;) {
      WK_CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->bwd_filter_math));
      WK_TRY(wk_conv_answered(
          net, i, WK_CONV_BWD_FILTER,
          cudnnConvolutionBackwardFilter(
              net->cudnn, &one, s->x, x, s->y, dy, s->conv, s->bwd_filter_algo,
              net->workspace, net->workspace_bytes, &zero, s->w,
              half ? (void *)net->bdw : (void *)(net->grads + pw->offset)),
          &again));
    }
    if (half)
      WK_TRY(wk_from_half(net, net->bdw, (int64_t)pw->numel, net->grads + pw->offset, false));
  }
  if (!wk_trainable(net, nd->param[1])) return WK_OK;
  if (half) return wk_k_bias_grad(net, len / nd->out_ch, nd->out_ch, dy,
                                  wk_pg(net, nd->param[1]));
  WK_CUDNN_TRY(cudnnConvolutionBackwardBias(net->cudnn, &one, s->y, dy, &zero, s->bias,
                                            wk_pg(net, nd->param[1])));
  return WK_OK;
}

/* Batchnorm i's backward on its own (not fused, or its group refused): cuDNN's
 * plain call, or whisker's kernels where they ran the forward or cuDNN refuses. */
static wk_status wk_bwd_bn(wk_gpu_net *net, int i, const void *x, const void *dy,
                           bool need_dx) {
  const wk_node *nd = &net->nodes[i];
  wk_gnode *s = &net->gn[i];
  const int v = i + 1, in = nd->in[0];
  const float one = 1.0f, zero = 0.0f;
  if (s->fused_into >= 0 && net->gn[s->fused_into].fused) return wk_fused_backward(net, i);
  if (!s->bn_trained) return WK_OK; /* frozen with nothing trainable upstream */
  if (s->bn_ran_own) return wk_own_bn_backward(net, i, need_dx);
  const bool frozen = !wk_trainable(net, nd->param[0]);
  int h, w, c;
  wk_gv_hwc(net, v, &h, &w, &c);
  /* cuDNN always computes the parameter gradients (a frozen layer's are
   * discarded) and dx (into the scratch when nothing upstream wants it) */
  float *dg = frozen ? net->bn_discard : wk_pg(net, nd->param[0]);
  float *db = frozen ? net->bn_discard + c : wk_pg(net, nd->param[1]);
  const double eps = wk_bn_eps(nd);
  bool *dx_begun = &net->grad_begun[net->alias[in]];
  const bool dx_add = need_dx && *dx_begun; /* marked once cuDNN has written it */
  const cudnnStatus_t e = cudnnBatchNormalizationBackward(
      net->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, dx_add ? &one : &zero, &one, &zero, s->x, x,
      s->y, dy, s->x, need_dx ? net->grad[in] : (void *)net->scratch, s->bias,
      wk_pw(net, nd->param[0]), dg, db, eps, s->save_mean, s->save_invvar);
  if (wk_half(net) && CUDNN_STATUS_CATEGORY(e) == CUDNN_STATUS_NOT_SUPPORTED) {
    /* cuDNN's forward saved the mean and inverse deviation these kernels use */
    wk_bn_refused(net, i, e);
    return wk_own_bn_backward(net, i, need_dx);
  }
  if (e != CUDNN_STATUS_SUCCESS) return wk_cudnn_failed(e, "batchnorm %s backward", nd->name);
  *dx_begun |= need_dx;
  return WK_OK;
}

/* Linear layer i's backward through cuBLAS: dx, dW and db where wanted. */
static wk_status wk_bwd_linear(wk_gpu_net *net, int i, const void *x, const void *dy,
                               bool need_dx) {
  const wk_node *nd = &net->nodes[i];
  const int in = nd->in[0];
  const bool half = wk_half(net);
  const float one = 1.0f, zero = 0.0f;
  const int64_t n = net->batch;
  const int in_f = (int)net->numel[in], out_f = nd->out_ch;
  const bool dw = wk_trainable(net, nd->param[0]), db = wk_trainable(net, nd->param[1]);
  const bool dx_add = need_dx && wk_grad_add(net, in);
  if (half) {
    WK_TRY(wk_half_weights(net));
    if (need_dx)
      WK_TRY(wk_gemm_h(net, CUBLAS_OP_N, CUBLAS_OP_N, in_f, (int)n, out_f,
                       wk_cw(net, nd->param[0]), in_f, dy, out_f, dx_add ? 1.0f : 0.0f,
                       net->grad[in], false, in_f));
    if (dw) /* into the float32 arena directly (cuDNN's filter gradient cannot) */
      WK_TRY(wk_gemm_h(net, CUBLAS_OP_N, CUBLAS_OP_T, in_f, out_f, (int)n, x, in_f, dy, out_f,
                       0.0f, wk_pg(net, nd->param[0]), true, in_f));
    return db ? wk_k_bias_grad(net, n, out_f, dy, wk_pg(net, nd->param[1])) : WK_OK;
  }
  if (need_dx) /* dx (n, I) (+)= dy (n, O) W (O, I) */
    WK_CUBLAS_TRY(cublasSgemm(net->cublas, CUBLAS_OP_N, CUBLAS_OP_N, in_f, (int)n, out_f, &one,
                              wk_pw(net, nd->param[0]), in_f, dy, out_f,
                              dx_add ? &one : &zero, net->grad[in], in_f));
  if (dw) /* dW (O, I) = dy^T (O, n) x (n, I) */
    WK_CUBLAS_TRY(cublasSgemm(net->cublas, CUBLAS_OP_N, CUBLAS_OP_T, in_f, out_f, (int)n, &one,
                              x, in_f, dy, out_f, &zero, wk_pg(net, nd->param[0]), in_f));
  if (db) /* db (O) = dy^T 1 */
    WK_CUBLAS_TRY(cublasSgemv(net->cublas, CUBLAS_OP_N, out_f, (int)n, &one, dy, out_f,
                              net->ones, 1, &zero, wk_pg(net, nd->param[1]), 1));
  return WK_OK;
}

/* Node i's backward; seed_step as wk_forward_node's. A fused group's runs at
 * its relu (wk_fused_backward), its batchnorm and add then have nothing left
 * to do. */
static wk_status wk_backward_node(wk_gpu_net *net, int i, const uint64_t *seed_step) {
  const wk_node *nd = &net->nodes[i];
  wk_gnode *s = &net->gn[i];
  const int v = i + 1, in = nd->in[0];
  const int64_t n = net->batch, len = n * net->numel[v];
  const void *x = net->val[in], *y = net->val[v], *dy = net->grad[v];
  const bool need_dx = in != 0 && net->needs_grad[in];
  const float one = 1.0f, zero = 0.0f;
  /* a fused group's batchnorm and add: the group's relu did their backward
   * (wk_fused_backward), and their own gradients are neither written nor read */
  if ((nd->op == WK_NODE_BATCHNORM || nd->op == WK_NODE_ADD) && s->fused_into >= 0 &&
      !s->fuse_solo && net->gn[s->fused_into].fused)
    return WK_OK;
  if (nd->op != WK_NODE_FLATTEN && !wk_grad_add(net, v)) /* nothing reached it: zero */
    WK_CUDA_TRY(cudaMemsetAsync(net->grad[v], 0, (size_t)len * wk_esize(net), net->stream));
  switch (nd->op) {
  case WK_NODE_CONV:
    return wk_bwd_conv(net, i, x, dy, need_dx);
  case WK_NODE_BATCHNORM:
    return wk_bwd_bn(net, i, x, dy, need_dx);
  case WK_NODE_ACT: {
    if (s->fused) return wk_fused_backward(net, i);
    if (!need_dx) return WK_OK;
    void *dst = wk_dest(net, in);
    /* relu's mask from its output (y > 0 iff x > 0); relu6's from its input */
    const bool relu6 = nd->act == WK_ACT_RELU6;
    WK_TRY(wk_k_act_back(net, relu6, len, relu6 ? x : y, dy, dst));
    return wk_commit(net, in, dst);
  }
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL:
    if (!need_dx) return WK_OK;
    if (nd->op == WK_NODE_MAXPOOL && net->pool_own) {
      const wk_maxpool_geom g = wk_maxpool_geom_of(net, i);
      return wk_kernel_try(wk_launch_maxpool_backward(wk_store(net), &g, x, y, dy,
                                                      wk_grad_add(net, in), net->grad[in],
                                                      net->stream),
                           "max pooling, backward");
    }
    WK_CUDNN_TRY(cudnnPoolingBackward(net->cudnn, s->pool, &one, s->y, y, s->y, dy, s->x, x,
                                      wk_grad_add(net, in) ? &one : &zero, s->x, net->grad[in]));
    return WK_OK;
  case WK_NODE_GLOBAL_AVGPOOL: {
    if (!need_dx) return WK_OK;
    void *dst = wk_dest(net, in);
    WK_TRY(wk_k_gap(net, i, false, dy, dst));
    return wk_commit(net, in, dst);
  }
  case WK_NODE_FLATTEN:
    return WK_OK; /* the same buffer as its input's gradient */
  case WK_NODE_LINEAR:
    return wk_bwd_linear(net, i, x, dy, need_dx);
  case WK_NODE_ADD:
    for (int k = 0; k < 2; k++) {
      const int src = nd->in[k];
      if (src == 0 || !net->needs_grad[src]) continue;
      if (wk_grad_add(net, src))
        WK_TRY(wk_k_add(net, len, net->grad[src], dy, net->grad[src], "add backward"));
      else
        WK_CUDA_TRY(cudaMemcpyAsync(net->grad[src], dy, (size_t)len * wk_esize(net),
                                    cudaMemcpyDeviceToDevice, net->stream));
    }
    return WK_OK;
  case WK_NODE_DROPOUT: {
    if (!need_dx) return WK_OK;
    void *dst = wk_dest(net, in);
    if (nd->drop_p == 0.0f)
      WK_CUDA_TRY(cudaMemcpyAsync(dst, dy, (size_t)len * wk_esize(net), cudaMemcpyDeviceToDevice,
                                  net->stream));
    else
      WK_TRY(wk_k_dropout(net, i, len, &net->drop, seed_step, dy, dst, "dropout backward"));
    return wk_commit(net, in, dst);
  }
  default:
    return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: op %d", nd->name, (int)nd->op);
  }
}

/* Queues backward from the output gradient: dy (host) when given, else the
 * loss's gradient from the last loss forward times dloss, or, with scale_dev
 * (the fused step's), times the factor read there (one device double,
 * dloss / batch); seed_step as wk_forward_node's. Waits for nothing. */
wk_status wk_backward_queue(wk_gpu_net *net, const float *dy, float dloss,
                            const double *scale_dev, const uint64_t *seed_step) {
  const int64_t n = net->batch;
  WK_CUDA_TRY(cudaMemsetAsync(net->grads, 0, net->g.n_elems * sizeof(float), net->stream));
  memset(net->grad_begun, 0, (size_t)net->n_values * sizeof *net->grad_begun);
  const int last = net->n_values - 1;
  const int64_t n_out = n * net->numel[last];
  /* the output's gradient in float32: in place, or in the scratch for 16 bits
   * (and where nothing trainable wants it: everything frozen) */
  float *d_out = wk_half(net) || !net->grad[last] ? net->scratch : (float *)net->grad[last];
  if (dy) {
    WK_CUDA_TRY(cudaMemcpyAsync(d_out, dy, (size_t)n_out * sizeof(float), cudaMemcpyHostToDevice,
                                net->stream));
  } else if (scale_dev) {
    WK_TRY(wk_kernel_try(wk_launch_softmax_xent_backward_at_f32(
                             n, net->numel[last], net->xent_smoothing, scale_dev,
                             net->xent_probs, net->xent_labels, d_out, net->stream),
                         "softmax cross-entropy backward"));
  } else { /* the reference's factor: dloss / batch in double */
    const double scale = (double)dloss / (double)n;
    WK_TRY(wk_kernel_try(wk_launch_softmax_xent_backward_f32(
                             n, net->numel[last], net->xent_smoothing, scale, net->xent_probs,
                             net->xent_labels, d_out, net->stream),
                         "softmax cross-entropy backward"));
  }
  if (wk_half(net) && net->grad[last]) WK_TRY(wk_to_half(net, d_out, n_out, net->grad[last]));
  net->grad_begun[net->alias[last]] = true;
  net->last_train = false; /* one backward per forward, as on the CPU */
  net->xent_ready = false;
  if (net->comm) WK_TRY(wk_gpucomm_begin(net->comm));
  WK_TRY(wk_prof_mark(net, false, net->g.n_nodes));
  for (int i = net->g.n_nodes - 1; i >= 0; i--) {
    if (net->needs_grad[i + 1]) {
      wk_status s = wk_backward_node(net, i, seed_step);
      if (s != WK_OK) return wk_fail(s, "%s (backward): %s", net->nodes[i].name, wk_last_error());
    }
    WK_TRY(wk_prof_mark(net, false, i));
    if (net->comm) WK_TRY(wk_gpucomm_node_done(net->comm, &net->nodes[i], net->grads,
                                               net->stream));
  }
  return WK_OK;
}

/* Backward from dy or the loss (wk_backward_queue), waited for: with a
 * communicator the gradients are the ranks' mean when this returns. */
wk_status wk_backward_from(wk_gpu_net *net, const float *dy, float dloss) {
  /* the gradients' buckets (and synchronised batchnorm's sums) go out as backward
   * is queued: should it fail part-way, the next wait still has the deadline */
  if (net->comm) net->collectives = "the gradient all-reduce";
  WK_TRY(wk_backward_queue(net, dy, dloss, NULL, NULL));
  if (!net->comm) {
    WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
    return wk_prof_collect(net);
  }
  WK_TRY(wk_gpucomm_finish(net->comm, net->grads, net->stream));
  WK_TRY(wk_collectives_wait(net)); /* the forward's ran before */
  return wk_prof_collect(net);
}

wk_status wk_cudanet_backward(wk_gpu_net *net, const float *dy) {
  if (!net->last_train || !dy)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU backward needs a training forward first");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  return wk_backward_from(net, dy, 0.0f);
}
