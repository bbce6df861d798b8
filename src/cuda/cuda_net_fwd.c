/* cuda_net_fwd.c - a GPU network's forward (cuda_net.c has the design): one
 * node at a time on the compute stream, batchnorm fused with its relu where a
 * group was planned, whisker's kernels where cuDNN refuses or is not asked,
 * and cuda.h's wk_gpu_net_forward. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_net_impl.h"

/* ------------------------------------------------------------------ forward */

double wk_bn_eps(const wk_node *nd) {
  return nd->bn.eps < CUDNN_BN_MIN_EPSILON ? CUDNN_BN_MIN_EPSILON : nd->bn.eps;
}

/* Whether the group headed by relu node j runs fused in this forward: in
 * training, with batch statistics (a batchnorm with nothing trainable
 * upstream normalises with its running statistics, unfused). */
static bool wk_fuse_now(const wk_gpu_net *net, int j, bool train) {
  const wk_gnode *s = &net->gn[j];
  return train && s->fuse_bn >= 0 && !s->fuse_off && !s->fuse_skip && !net->sync_bn &&
         !net->gn[s->fuse_bn].bn_own && net->needs_grad[s->fuse_bn + 1];
}

static wk_status wk_forward_node(wk_gpu_net *net, int i, bool train, const wk_gpu_dropout *drop,
                                 const uint64_t *seed_step);

/* Group j's forward, at its relu: y = relu(bn(x) [+ z]) in one cuDNN call
 * that writes neither the batchnorm's output nor the add's (16 bits: rounded
 * once, on y). Should cuDNN refuse it after all, the group's nodes run one by
 * one, here and from now on. */
static wk_status wk_fused_forward(wk_gpu_net *net, int j, const wk_gpu_dropout *drop,
                                  const uint64_t *seed_step) {
  wk_gnode *s = &net->gn[j];
  const wk_node *bn = &net->nodes[s->fuse_bn];
  wk_gnode *sb = &net->gn[s->fuse_bn];
  const bool add = s->fuse_add >= 0;
  const float one = 1.0f, zero = 0.0f;
  const cudnnStatus_t e = cudnnBatchNormalizationForwardTrainingEx(
      net->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, wk_fuse_ops(s), &one, &zero, sb->x,
      net->val[bn->in[0]], add ? sb->y : NULL, add ? net->val[s->fuse_z] : NULL, s->y,
      net->val[j + 1], sb->bias, wk_pw(net, bn->param[0]), wk_pw(net, bn->param[1]),
      bn->bn.momentum, wk_bufp(net, bn->buffer[0]), wk_bufp(net, bn->buffer[1]), wk_bn_eps(bn),
      sb->save_mean, sb->save_invvar, wk_fuse_act(net, s), net->workspace, net->workspace_bytes,
      s->reserve, s->reserve_bytes);
  if (CUDNN_STATUS_CATEGORY(e) == CUDNN_STATUS_NOT_SUPPORTED) {
    s->fuse_off = true;
    wk_fuse_note(net, j, cudnnGetErrorString(e));
    if (s->fuse_solo) return wk_forward_node(net, j, true, drop, seed_step);
    WK_TRY(wk_forward_node(net, s->fuse_bn, true, drop, seed_step));
    if (add) WK_TRY(wk_forward_node(net, s->fuse_add, true, drop, seed_step));
    return wk_forward_node(net, j, true, drop, seed_step);
  }
  if (e != CUDNN_STATUS_SUCCESS && s->fuse_solo)
    return wk_cudnn_failed(e, "batchnorm %s through the Ex call ($WHISKER_BN_FUSE=groups "
                           "runs it plain)", bn->name);
  if (e != CUDNN_STATUS_SUCCESS)
    return wk_cudnn_failed(e, "fused batchnorm %s%s with relu ($WHISKER_BN_FUSE=0 runs them one "
                           "by one)", bn->name, add ? " and the add" : "");
  sb->bn_trained = true;
  sb->bn_ran_own = false;
  s->fused = true;
  net->fused_runs++;
  return WK_OK;
}

/* Whisker's batchnorm (kernels/syncbn.cu, as the CPU's src/nn/exec_syncbn.c
 * computes it): synchronised over the ranks (cuda.h's wk_gpu_net_attach_comm),
 * its sums all-reduced on the communication stream between the kernels, or
 * on this GPU alone where cuDNN refuses a batchnorm in 16 bits (PyTorch runs
 * its own kernels for bfloat16 batchnorm too) or $WHISKER_GPU_OWN_BN=1 asks. */
wk_store_kind wk_store(const wk_gpu_net *net) {
  return wk_half(net) ? (wk_store_kind)wk_hkind(net) : WK_STORE_F32;
}

/* Max pooling node i's geometry for the batch, for whisker's kernels
 * (train.cu: a window's first maximum wins, a NaN propagates, as on the CPU;
 * backward finds each window's maximum again from x and y, no argmax kept). */
wk_maxpool_geom wk_maxpool_geom_of(const wk_gpu_net *net, int i) {
  const wk_node *nd = &net->nodes[i];
  int h, w, c, oh, ow, oc;
  wk_gv_hwc(net, nd->in[0], &h, &w, &c);
  wk_gv_hwc(net, i + 1, &oh, &ow, &oc);
  return (wk_maxpool_geom){.n = net->batch, .h = h, .w = w, .c = c, .oh = oh, .ow = ow,
                           .kh = nd->pool.kernel_h, .kw = nd->pool.kernel_w,
                           .sh = nd->pool.stride_h, .sw = nd->pool.stride_w,
                           .pt = nd->pool.pad_top, .pl = nd->pool.pad_left};
}

/* Training forward: the mean from the (ranks') sums, the biased variance
 * from the centred sums of squares (two passes in double), the running
 * statistics, then y = xhat * gamma + beta; save_mean and save_invvar for
 * backward. */
static wk_status wk_own_bn_forward(wk_gpu_net *net, int i, const void *x, void *y) {
  const wk_node *nd = &net->nodes[i];
  wk_gnode *s = &net->gn[i];
  int64_t rows;
  int c;
  double total;
  WK_TRY(wk_bn_rows(net, i, &rows, &c, &total));
  const wk_store_kind k = wk_store(net);
  static const char what[] = "batchnorm statistics (whisker's kernels)";
  if (net->sync_bn && !net->collectives)
    net->collectives = "a forward with synchronised batchnorm";
  net->own_runs++;
  s->bn_ran_own = true;
  WK_TRY(wk_kernel_try(wk_launch_bn_sums(k, rows, c, x, NULL, net->sync_partial, net->sync_sums,
                                         net->stream), what));
  if (net->sync_bn)
    WK_TRY(wk_gpucomm_sum_f64(net->comm, net->sync_sums, (size_t)c, net->stream, what));
  WK_TRY(wk_kernel_try(wk_launch_bn_mean(c, total, net->sync_sums, s->save_mean, net->stream),
                       what));
  WK_TRY(wk_kernel_try(wk_launch_bn_sums(k, rows, c, x, s->save_mean, net->sync_partial,
                                         net->sync_sums, net->stream), what));
  if (net->sync_bn)
    WK_TRY(wk_gpucomm_sum_f64(net->comm, net->sync_sums, (size_t)c, net->stream, what));
  WK_TRY(wk_kernel_try(wk_launch_bn_finish(c, total, net->sync_sums, s->save_mean,
                                           (double)nd->bn.momentum, (double)nd->bn.eps,
                                           wk_bufp(net, nd->buffer[0]),
                                           wk_bufp(net, nd->buffer[1]), s->save_invvar,
                                           net->stream), what));
  return wk_kernel_try(wk_launch_bn_norm(k, rows, c, x, s->save_mean, s->save_invvar,
                                         wk_pw(net, nd->param[0]), wk_pw(net, nd->param[1]), y,
                                         net->stream),
                       "batchnorm forward (whisker's kernels)");
}

/* Batchnorm node i with the running statistics: invstd from the running
 * variance into save_invvar (a training forward's is consumed by then:
 * backward follows the training forward it belongs to), then y = xhat *
 * gamma + beta, and for a group run whole (wk_infer_group) + z (NULL: none)
 * and the relu, in one pass. */
static wk_status wk_own_bn_infer(wk_gpu_net *net, int i, const void *x, const void *z,
                                 bool relu, void *y) {
  const wk_node *nd = &net->nodes[i];
  wk_gnode *s = &net->gn[i];
  int h, w, c;
  wk_gv_hwc(net, i + 1, &h, &w, &c);
  const float *rm = wk_bufp(net, nd->buffer[0]), *rv = wk_bufp(net, nd->buffer[1]);
  static const char what[] = "batchnorm inference (whisker's kernels)";
  WK_TRY(wk_kernel_try(wk_launch_bn_invstd(c, rv, (double)nd->bn.eps, s->save_invvar,
                                           net->stream), what));
  return wk_kernel_try(wk_launch_bn_norm_act(wk_store(net), net->batch * h * w, c, x, z, rm,
                                             s->save_invvar, wk_pw(net, nd->param[0]),
                                             wk_pw(net, nd->param[1]), relu, y, net->stream),
                       what);
}

/* Whether the group headed by relu node j runs whole at its relu in this
 * forward, on whisker's kernel: y = relu(bn(x) [+ z]) in one pass over
 * memory, where the nodes one by one make three. Where its batchnorm uses the
 * running statistics ($WHISKER_GPU_INFER_BN=own, the default): in inference,
 * and in training where nothing upstream of it trains (a frozen backbone;
 * backward then runs the relu and the add node by node, reading only the
 * relu's output, and skips the batchnorm). */
bool wk_infer_group(const wk_gpu_net *net, int j, bool train) {
  const wk_gnode *s = &net->gn[j];
  return net->infer_own && s->fuse_bn >= 0 && !s->fuse_solo &&
         (!train || !net->needs_grad[s->fuse_bn + 1]);
}

/* cuDNN refused batchnorm i (status e, in 16 bits): whisker's kernels run it
 * from now on, and the first such refusal is noted for the graph stats. */
void wk_bn_refused(wk_gpu_net *net, int i, cudnnStatus_t e) {
  wk_graph_table_invalidate(&net->graphs); /* captured steps run cuDNN's */
  net->gn[i].bn_own = true;
  if (!net->own_note[0] &&
      snprintf(net->own_note, sizeof net->own_note, "%s: cuDNN's batchnorm: %s",
               net->nodes[i].name, cudnnGetErrorString(e)) < 0)
    net->own_note[0] = '\0';
}

/* Convolution i's forward, y = conv(x) [+ bias]. */
static wk_status wk_fwd_conv(wk_gpu_net *net, int i, const void *x, void *y) {
  const wk_node *nd = &net->nodes[i];
  wk_gnode *s = &net->gn[i];
  const int64_t len = net->batch * net->numel[i + 1];
  const float one = 1.0f, zero = 0.0f;
  if (wk_half(net)) WK_TRY(wk_half_weights(net));
  if (net->conv_graph)
    WK_TRY(wk_plan_run(net, i, 0, (void *)(uintptr_t)x, wk_cw(net, nd->param[0]), y));
  else for (bool again = true; again;) {
    WK_CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, s->fwd_math));
    WK_TRY(wk_conv_answered(net, i, WK_CONV_FWD,
                            cudnnConvolutionForward(net->cudnn, &one, s->x, x, s->w,
                                                    wk_cw(net, nd->param[0]), s->conv,
                                                    s->fwd_algo, net->workspace,
                                                    net->workspace_bytes, &zero, s->y, y),
                            &again));
  }
  if (nd->param[1] < 0) return WK_OK;
  if (wk_half(net)) return wk_k_bias_add(net, len / nd->out_ch, nd->out_ch,
                                         wk_pw(net, nd->param[1]), y);
  WK_CUDNN_TRY(cudnnAddTensor(net->cudnn, &one, s->bias, wk_pw(net, nd->param[1]), &one, s->y,
                              y));
  return WK_OK;
}

/* Batchnorm i's forward where it runs on its own: with batch statistics in
 * training (cuDNN, or whisker's kernels: synchronised, refused or asked for),
 * on the running ones otherwise; a group's batchnorm returns at once (its relu
 * runs the group) and one alone in a group of its own runs the Ex call. */
static wk_status wk_fwd_bn(wk_gpu_net *net, int i, bool train, const void *x, void *y,
                           const wk_gpu_dropout *drop, const uint64_t *seed_step) {
  const wk_node *nd = &net->nodes[i];
  wk_gnode *s = &net->gn[i];
  const int v = i + 1;
  const float one = 1.0f, zero = 0.0f;
  if (s->fused_into >= 0 && wk_infer_group(net, s->fused_into, train)) {
    s->bn_trained = s->bn_ran_own = false; /* the group runs at its relu */
    return WK_OK;
  }
  if (s->fuse_solo) s->fused = false;
  if (s->fused_into >= 0 && wk_fuse_now(net, s->fused_into, train))
    return s->fuse_solo ? wk_fused_forward(net, i, drop, seed_step) : WK_OK;
  /* 16-bit x and y with float32 statistics, scale and bias: cuDNN's own mix */
  float *g = wk_pw(net, nd->param[0]), *b = wk_pw(net, nd->param[1]);
  float *rm = wk_bufp(net, nd->buffer[0]), *rv = wk_bufp(net, nd->buffer[1]);
  const double eps = wk_bn_eps(nd);
  s->bn_trained = train && net->needs_grad[v];
  s->bn_ran_own = false;
  if (s->bn_trained && (net->sync_bn || s->bn_own)) return wk_own_bn_forward(net, i, x, y);
  if (s->bn_own || (net->infer_own && !s->bn_trained))
    return wk_own_bn_infer(net, i, x, NULL, false, y);
  const cudnnStatus_t e =
      s->bn_trained
          ? cudnnBatchNormalizationForwardTraining(
                net->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, s->x, x, s->y, y, s->bias, g,
                b, nd->bn.momentum, rm, rv, eps, s->save_mean, s->save_invvar)
          : cudnnBatchNormalizationForwardInference(net->cudnn, CUDNN_BATCHNORM_SPATIAL, &one,
                                                    &zero, s->x, x, s->y, y, s->bias, g, b, rm,
                                                    rv, eps);
  if (wk_half(net) && CUDNN_STATUS_CATEGORY(e) == CUDNN_STATUS_NOT_SUPPORTED) {
    wk_bn_refused(net, i, e);
    return wk_forward_node(net, i, train, drop, seed_step);
  }
  return e == CUDNN_STATUS_SUCCESS ? WK_OK : wk_cudnn_failed(e, "batchnorm %s forward", nd->name);
}

/* Linear layer i's forward through cuBLAS, y = x W^T + b. */
static wk_status wk_fwd_linear(wk_gpu_net *net, int i, const void *x, void *y) {
  const wk_node *nd = &net->nodes[i];
  const int64_t n = net->batch;
  const float one = 1.0f, zero = 0.0f;
  const int in_f = (int)net->numel[nd->in[0]], out_f = nd->out_ch;
  /* row-major y (n, O) = x (n, I) W^T: column-major y^T = W^T' x^T (wk_gemm_h) */
  if (wk_half(net)) {
    WK_TRY(wk_half_weights(net));
    WK_TRY(wk_gemm_h(net, CUBLAS_OP_T, CUBLAS_OP_N, out_f, (int)n, in_f,
                     wk_cw(net, nd->param[0]), in_f, x, in_f, 0.0f, y, false, out_f));
    if (nd->param[1] < 0) return WK_OK;
    return wk_k_bias_add(net, n, out_f, wk_pw(net, nd->param[1]), y);
  }
  WK_CUBLAS_TRY(cublasSgemm(net->cublas, CUBLAS_OP_T, CUBLAS_OP_N, out_f, (int)n, in_f, &one,
                            wk_pw(net, nd->param[0]), in_f, x, in_f, &zero, y, out_f));
  if (nd->param[1] >= 0)
    WK_CUBLAS_TRY(cublasSger(net->cublas, out_f, (int)n, &one, wk_pw(net, nd->param[1]), 1,
                             net->ones, 1, y, out_f));
  return WK_OK;
}

/* Node i's forward; dropout's stream is drop's, or with seed_step (device:
 * the seed and the step, the fused step's) read on the device. A batchnorm
 * or an add in a fused group waits for its relu (wk_fused_forward). */
static wk_status wk_forward_node(wk_gpu_net *net, int i, bool train, const wk_gpu_dropout *drop,
                                 const uint64_t *seed_step) {
  const wk_node *nd = &net->nodes[i];
  wk_gnode *s = &net->gn[i];
  const int v = i + 1;
  const int64_t n = net->batch, len = n * net->numel[v];
  const void *x = net->val[nd->in[0]];
  void *y = net->val[v];
  const float one = 1.0f, zero = 0.0f;
  switch (nd->op) {
  case WK_NODE_CONV:
    return wk_fwd_conv(net, i, x, y);
  case WK_NODE_BATCHNORM:
    return wk_fwd_bn(net, i, train, x, y, drop, seed_step);
  case WK_NODE_ACT:
    s->fused = false;
    if (wk_fuse_now(net, i, train)) return wk_fused_forward(net, i, drop, seed_step);
    if (wk_infer_group(net, i, train)) {
      net->infer_fused_runs++;
      return wk_own_bn_infer(net, s->fuse_bn, net->val[net->nodes[s->fuse_bn].in[0]],
                             s->fuse_add >= 0 ? net->val[s->fuse_z] : NULL, true, y);
    }
    return wk_k_act(net, nd->act == WK_ACT_RELU6, len, x, y);
  case WK_NODE_MAXPOOL:
  case WK_NODE_AVGPOOL:
    if (nd->op == WK_NODE_MAXPOOL && net->pool_own) {
      const wk_maxpool_geom g = wk_maxpool_geom_of(net, i);
      return wk_kernel_try(wk_launch_maxpool_forward(wk_store(net), &g, x, y, net->stream),
                           "max pooling");
    }
    WK_CUDNN_TRY(cudnnPoolingForward(net->cudnn, s->pool, &one, s->x, x, &zero, s->y, y));
    return WK_OK;
  case WK_NODE_GLOBAL_AVGPOOL:
    return wk_k_gap(net, i, true, x, y);
  case WK_NODE_FLATTEN:
    return WK_OK; /* shares its input's buffer */
  case WK_NODE_LINEAR:
    return wk_fwd_linear(net, i, x, y);
  case WK_NODE_ADD:
    if (s->fused_into >= 0 &&
        (wk_fuse_now(net, s->fused_into, train) || wk_infer_group(net, s->fused_into, train)))
      return WK_OK;
    return wk_k_add(net, len, x, net->val[nd->in[1]], y, "add forward");
  case WK_NODE_DROPOUT:
    if (!train || nd->drop_p == 0.0f) {
      WK_CUDA_TRY(cudaMemcpyAsync(y, x, (size_t)len * wk_esize(net), cudaMemcpyDeviceToDevice,
                                  net->stream));
      return WK_OK;
    }
    return wk_k_dropout(net, i, len, drop, seed_step, x, y, "dropout forward");
  default:
    return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: op %d", nd->name, (int)nd->op);
  }
}

/* Every node's forward, queued (the profile's events around each). */
wk_status wk_forward_nodes(wk_gpu_net *net, bool train, const wk_gpu_dropout *drop,
                           const uint64_t *seed_step) {
  WK_TRY(wk_prof_mark(net, true, 0));
  net->prof_train = train;
  for (int i = 0; i < net->g.n_nodes; i++) {
    wk_status s = wk_forward_node(net, i, train, drop, seed_step);
    if (s != WK_OK) return wk_fail(s, "%s (forward): %s", net->nodes[i].name, wk_last_error());
    WK_TRY(wk_prof_mark(net, true, i + 1));
  }
  return WK_OK;
}

wk_status wk_cudanet_forward(wk_gpu_net *net, const wk_gpu_input *x, int64_t n, bool train,
                             const wk_gpu_dropout *drop, float *out) {
  if (n < 1 || n > (1 << 24) || !x || !x->data || !drop)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU forward: batch %lld", (long long)n);
  WK_CUDA_TRY(cudaSetDevice(net->device));
  net->out_ready = false; /* the output value, and a loss of it, are overwritten below */
  net->xent_ready = false;
  net->last_train = false; /* until this forward has run whole: backward needs one */
  /* collectives an earlier forward queued and nothing waited for yet (a training
   * forward with synchronised batchnorm, then another forward with no loss or
   * backward between): waited for with the deadline before the blocking calls below */
  WK_TRY(wk_collectives_wait(net));
  net->trains |= train;
  const bool find =
      net->algo_mode == WK_ALGO_FIND || (net->algo_mode == WK_ALGO_AUTO && net->trains);
  WK_TRY(wk_prepare_batch(net, n, find, train));
  WK_TRY(wk_load_input(net, x, n));
  WK_TRY(wk_forward_nodes(net, train, drop, NULL));
  /* the next batch goes up while the device computes this one (an evaluation loop's
   * counterpart of a training step's next) */
  if (x->next) WK_TRY(wk_stage_queued(net, x->next, x->next_n));
  const int last = net->n_values - 1;
  if (out) {
    WK_TRY(wk_collectives_wait(net)); /* the copy below, to pageable memory, blocks */
    const float *y = NULL;
    WK_TRY(wk_output_f32(net, &y));
    WK_CUDA_TRY(cudaMemcpyAsync(out, y, (size_t)(n * net->numel[last]) * sizeof(float),
                                cudaMemcpyDeviceToHost, net->stream));
    WK_TRY(wk_stream_wait(net));
    WK_TRY(wk_prof_collect(net));
  }
  net->last_train = train;
  net->drop = *drop;
  net->out_ready = true;
  return WK_OK;
}
