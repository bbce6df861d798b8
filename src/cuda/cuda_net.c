/* cuda_net.c - a network's graph on one GPU (cuda.h's wk_gpu_net_*, reached
 * through the plugin table, cuda_plugin.h).
 *
 * The network's code is in several files, over one private header
 * (cuda_net_impl.h: the structures and the functions they share): this one
 * creates and frees a network, and describes the design below;
 * cuda_net_batch.c prepares a batch size; cuda_net_ops.c calls the kernels;
 * cuda_net_fwd.c and cuda_net_bwd.c run forward and backward;
 * cuda_net_input.c moves the batches; cuda_net_prof.c times the nodes;
 * cuda_net_step.c runs the loss, the update and the step.
 *
 * Layout: NHWC activations and OHWI conv weights, as on the CPU, so the host's
 * arenas are uploaded as they are. One stream carries everything; cuDNN and
 * cuBLAS are bound to it. Per value a device buffer for the batch (kept from a
 * training forward until backward, as every value is read again there);
 * flatten shares its input's, and a fused group's batchnorm and add (below)
 * their relu's. From the first training forward on, the values
 * that need one have a gradient buffer (inference makes none, nor chooses
 * backward algorithms), all in one arena where gradients that backward never
 * needs at the same time share memory (mem_plan.h: a value's gradient lives
 * from the first node of backward that writes it to its producer's, a few
 * nodes; ResNet-50's take 8.5% of the memory they took held whole).
 * Backward zeroes the parameters' gradient arena and walks the nodes in
 * reverse; the first write into a value's gradient overwrites what the
 * shared memory held (beta = 0, or a kernel's plain store), later ones add
 * (cuDNN and cuBLAS with beta = 1, whisker's kernels through the scratch and
 * an add). A gradient that no node wrote (a dead end) is zeroed before its
 * producer reads it. A node with nothing trainable upstream of its output is
 * skipped, as on the CPU, and a batchnorm there runs in inference mode in
 * training too (a frozen body keeps its statistics).
 *
 * Float32 with CUDNN_FMA_MATH and cuBLAS's default (no TF32), so results match
 * the CPU path to float rounding; with tf32, cuDNN's default math and
 * cuBLAS's TF32 mode put convolutions and linear layers on tensor cores.
 *
 * bf16 and fp16 are autocast as PyTorch's channels_last autocast runs a CNN:
 * every value and every value's gradient is held in 16 bits (half the memory
 * and the memory traffic of float32). Convolutions and linear layers run on
 * tensor cores over 16-bit data and a 16-bit copy of the weights (made again
 * whenever the weights change), summing in float32; batchnorm reads and
 * writes 16 bits with float32 statistics, scale and bias (cuDNN's mixed
 * batchnorm, or whisker's kernels where cuDNN refuses it); whisker's
 * kernels (kernels/storage.cuh) load 16 bits, compute in float32 and round
 * once on the store. Convolutions' weight gradients
 * come out of cuDNN in 16 bits and are widened into the float32 gradient
 * arena (linear layers' go there directly); biases' gradients are summed in
 * float32; the master weights, the optimizer and the loss (softmax in double
 * over the logits widened to float32) stay float32. bfloat16's range needs
 * no loss scaling; float16's gradients do, and the trainer scales the loss
 * (train/trainer.c). The scratch is float32 and large enough for any value
 * (for a network that only infers, and chooses its algorithms without
 * timing, for the input and the output): it carries a float batch on its way
 * into 16 bits, the logits on their way to the loss or the host, and the
 * loss's gradient on its way back.
 *
 * Convolution algorithms are chosen once per batch size (cuda_algo.c), within
 * the workspace limit ($WHISKER_GPU_WORKSPACE_MB, 1024 by default): by timing
 * (cudnnFind*AlgorithmEx, kept in the context's cache, cuda.h's wk_gpu_algos)
 * for a network that trains, by cuDNN's heuristics for one that has only
 * inferred ($WHISKER_CUDNN_ALGO=find or heuristic says otherwise, cuda.h).
 * Timing runs while the batch's buffers hold nothing yet: it reads the
 * values and weights and overwrites only the scratch, and a weight-sized
 * scratch for the filter gradient (find_dw, or bdw in 16 bits).
 *
 * The input batch goes up through pinned host memory (grown on demand) on a
 * stream of its own (wk_upload), in slices so that the host's copy into the
 * pinned memory overlaps the DMA; the upload stream first waits for the
 * compute stream to be done with the destination's previous contents, the
 * compute stream waits for the copy, and the next batch is not written into
 * the pinned memory before the copy has read it. Every call that returns a
 * result ends in a synchronisation, so this upload does not overlap the
 * previous step's work: what it gains is the DMA from pinned memory.
 *
 * A trainer overlaps them (wk_cudanet_stage): once a step's work is queued,
 * the next batch goes into pinned memory of its own (the host's copy, while
 * the device computes) and up into a device buffer of its own on the upload
 * stream (the DMA, likewise), with two events: next_done (the copy has landed)
 * and next_free (the compute stream has read the buffer, so it may be written
 * again). The next forward or step given that batch (x->staged) only waits
 * for next_done and copies the buffer into value 0 (or the u8 buffer) on the
 * compute stream, device to device: a few microseconds, at a place that no
 * CUDA graph bakes in (the batch goes up before a captured step, as any
 * batch). Any forward drops what was staged, used or not.
 *
 * The loss can stay here too (wk_cudanet_xent_*): a training forward that
 * returns no output queues its work and returns; the softmax cross-entropy
 * kernels read the output value, keep the probabilities and the labels, and
 * only the loss sum and the predicted classes go back; backward then starts
 * from the loss's gradient written into the output's gradient buffer instead
 * of from a host copy.
 *
 * The trainer asks for the whole step in one call (wk_cudanet_train_step;
 * cuda.h has the contract, $WHISKER_GPU_FUSED_STEP=0 the stepwise calls
 * instead): batch, labels and
 * the step's changing values (wk_step_vals: dropout's step, the loss
 * gradient's factor, fp16's unscale, the update's segments) go up first, from
 * pinned memory for the values; then forward, loss, backward, the non-finite
 * check into the device flag, and the unscale and the update gated by that
 * flag (kernels/train.cu's *_at and *_unless launchers) are queued with no
 * synchronisation, with $WHISKER_CUDA_GRAPH=1 as a CUDA graph once the key
 * has warmed up (graph_table.h); the loss sum, the flag and the predicted
 * classes come back after it. With a communicator (data parallelism) the
 * gradients' all-reduce joins the compute stream before the check, the flag
 * is summed over the ranks (each checked its own loss; the update must run on
 * all or none) and the wait for the step polls with the communicator's
 * deadline; never captured. What a
 * graph bakes in must not move: every function that frees a buffer a step
 * uses (the batch's values, the convolution workspace, the loss's buffers)
 * or changes what backward runs (frozen flags) drops the graphs first.
 * cuBLAS gets a workspace of ours at creation, for every network, so it never
 * allocates one inside a capture and runs the same kernels either way.
 *
 * Batchnorm fused with relu ($WHISKER_BN_FUSE, cuda.h): where a batchnorm's
 * output is read only by a relu, or only by an add whose output is read only
 * by a relu (wk_plan_fusion), a training forward runs the group as one
 * cudnnBatchNormalizationForwardTrainingEx call at the relu node (x and z are
 * ready there whatever the nodes' order) and backward as one
 * cudnnBatchNormalizationBackwardEx there, from the relu's output and
 * gradient and a reserve space of the group's kept in between. The
 * batchnorm's and the add's values (and gradients) are then never written:
 * nothing else reads them. Their values live in the relu's buffer, which
 * the nodes one by one (inference, synchronised batchnorm, a refusal) write
 * in place, each an elementwise step; ResNet-50 keeps 6 of its 10 values
 * per bottleneck so. cuDNN writes the batchnorm input's gradient and
 * the addend's rather than adding them: into their buffers where it is the
 * first to, else into the scratch's two halves, added in after.
 * A batchnorm no group takes (ResNet's downsample ones) is a group of its own
 * (fuse_solo), run by the same Ex calls with CUDNN_BATCHNORM_OPS_BN and no
 * activation, as PyTorch runs channels_last batchnorms in fp32 and fp16 (it
 * sends none in bf16 to cuDNN; whisker's bf16 Ex calls rest on the first H100
 * run, where the groups ran fused in bf16 and matched the CPU): cuDNN's plain calls
 * run NCHW kernels on NHWC data, a third of a bf16 ResNet-18 step on the
 * first H100 run with only three such batchnorms ($WHISKER_BN_FUSE=groups
 * runs them plain, as before).
 * A group cuDNN refuses runs its nodes one by one: for the batch size when
 * the sizes' queries refuse it, for good when a call does.
 *
 * Whisker's batchnorm kernels (kernels/syncbn.cu, the CPU's arithmetic) run
 * a batchnorm where cuDNN refuses it in 16 bits (from then on, in training,
 * inference and backward; $WHISKER_GPU_OWN_BN=1 makes every batchnorm use
 * them), and synchronised batchnorm (a communicator attached with sync_bn),
 * whose per-channel sums go through wk_gpucomm_sum_f64 between the kernels.
 * Such a batchnorm never fuses; the sums' buffers are made with the network
 * where they may be needed, never inside a captured step; the waits of a
 * forward that holds collectives are polled with the communicator's deadline
 * (wk_collectives_wait, which every blocking entry point calls first).
 *
 * cuDNN 9 marks the descriptor API used here (convolution, batchnorm, pooling)
 * deprecated in favour of its graph API; it is supported throughout 9.x, and
 * the warnings are silenced for these files only (cuda_net_impl.h). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_net_impl.h"

/* ------------------------------------------------------------------ helpers */

/* The graph table's way to free an executable graph (graph_table.h). One
 * still running is freed when it completes. */
static void wk_graph_exec_free(void *exec) { (void)cudaGraphExecDestroy((cudaGraphExec_t)exec); }

wk_status wk_kernel_try(int e, const char *what) {
  if (e == 0) return WK_OK;
  return wk_fail(WK_ERR_BACKEND, "CUDA: kernel %s: %s", what,
                 cudaGetErrorString((cudaError_t)e));
}

static int64_t wk_gv_numel(const wk_gpu_graph *g, const wk_node *nodes, int v) {
  if (v == 0) return (int64_t)g->in_h * g->in_w * g->in_c;
  const wk_node *n = &nodes[v - 1];
  return n->out_ndim == 3 ? n->out_shape[0] * n->out_shape[1] * n->out_shape[2]
                          : n->out_shape[0];
}

/* (H, W, C) of value v per sample; (1, 1, F) for a flat one. */
void wk_gv_hwc(const wk_gpu_net *net, int v, int *h, int *w, int *c) {
  if (v == 0) {
    *h = net->g.in_h, *w = net->g.in_w, *c = net->g.in_c;
    return;
  }
  const wk_node *n = &net->nodes[v - 1];
  if (n->out_ndim == 3) {
    *h = (int)n->out_shape[0], *w = (int)n->out_shape[1], *c = (int)n->out_shape[2];
  } else {
    *h = 1, *w = 1, *c = (int)n->out_shape[0];
  }
}

wk_status wk_nhwc_desc(cudnnTensorDescriptor_t d, cudnnDataType_t t, int64_t n, int h,
                       int w, int c) {
  WK_CUDNN_TRY(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NHWC, t, (int)n, c, h, w));
  return WK_OK;
}

/* A device allocation for `what` failed with s. No room says so, wrapping the
 * allocator's figures, with the advice; anything else (an earlier kernel
 * fault that the allocator's wait for the device surfaced, say) passes
 * through as it is, never disguised as a lack of memory. */

wk_status wk_no_room(wk_status s, const char *advice, const char *fmt, ...) {
  if (s != WK_ERR_NOMEM) return s;
  char what[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return wk_fail(s, "GPU: %s does not fit (%s); %s", what, wk_last_error(), advice);
}

const char wk_smaller_batch[] = "try a smaller --batch";

/* A cuDNN call that answered e: the failure, named by what (a format) and
 * cuDNN's last message. */

wk_status wk_cudnn_failed(cudnnStatus_t e, const char *fmt, ...) {
  char what[256], msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  cudnnGetLastErrorString(msg, sizeof msg);
  return wk_fail(WK_ERR_BACKEND, "cuDNN: %s: %s (%s)", what, cudnnGetErrorString(e), msg);
}

/* *buf regrown to `bytes` on the device when smaller (*cap its size): the
 * captured steps that used the old buffer are dropped first. The status is
 * the allocation's, for the caller to word a lack of room. */
wk_status wk_regrow(wk_gpu_net *net, void **buf, size_t *cap, size_t bytes) {
  if (bytes <= *cap) return WK_OK;
  wk_graph_table_invalidate(&net->graphs);
  WK_TRY(wk_cuda_free(*buf));
  *buf = NULL;
  *cap = 0;
  WK_TRY(wk_cuda_malloc(buf, bytes));
  *cap = bytes;
  return WK_OK;
}

wk_status wk_workspace(wk_gpu_net *net, size_t bytes) {
  const wk_status s = wk_regrow(net, &net->workspace, &net->workspace_bytes, bytes);
  if (s != WK_OK)
    return wk_no_room(s, "try a smaller --batch or $WHISKER_GPU_WORKSPACE_MB",
                      "%zu MiB of convolution workspace", bytes >> 20);
  return WK_OK;
}

/* The workspace cut down to `bytes` (after timing grew it). */
wk_status wk_workspace_trim(wk_gpu_net *net, size_t bytes) {
  if (bytes >= net->workspace_bytes) return WK_OK;
  wk_graph_table_invalidate(&net->graphs);
  WK_TRY(wk_cuda_free(net->workspace));
  net->workspace = NULL;
  net->workspace_bytes = 0;
  /* the device gets the timing's workspace back: cached, the smaller one
   * would be split off it and pin the whole segment */
  WK_TRY(wk_cuda_cache_release());
  return wk_workspace(net, bytes);
}

/* The sums' buffers of whisker's batchnorm (syncbn.cu): made with the network
 * where it may run (16 bits, where cuDNN may refuse a batchnorm, or
 * $WHISKER_GPU_OWN_BN), else when a communicator with synchronised batchnorm
 * is attached, so they exist wherever wk_own_bn_forward can run, and are
 * never made inside a captured step. */
wk_status wk_own_bn_buffers(wk_gpu_net *net) {
  if (net->sync_sums) return WK_OK;
  const size_t w = 2 * (size_t)net->widest_bn;
  wk_status s = wk_cuda_malloc((void **)&net->sync_sums, w * sizeof(double));
  if (s == WK_OK)
    s = wk_cuda_malloc((void **)&net->sync_partial, WK_BN_SUM_CHUNKS * w * sizeof(double));
  if (s == WK_OK) return WK_OK;
  (void)wk_cuda_free(net->sync_sums);
  net->sync_sums = NULL;
  return wk_no_room(s, wk_smaller_batch, "batchnorm's sums");
}

/* ------------------------------------------------------------------ creation */

static wk_status wk_check_graph(const wk_gpu_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    const wk_node *n = &g->nodes[i];
    if (n->op == WK_NODE_CONV &&
        (n->conv.pad_top != n->conv.pad_bottom || n->conv.pad_left != n->conv.pad_right))
      return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: asymmetric padding (cuDNN pads evenly)",
                     n->name);
    if ((n->op == WK_NODE_MAXPOOL || n->op == WK_NODE_AVGPOOL) &&
        (n->pool.pad_top != n->pool.pad_bottom || n->pool.pad_left != n->pool.pad_right))
      return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: asymmetric padding (cuDNN pads evenly)",
                     n->name);
    if (n->op >= WK_NODE_OP_COUNT)
      return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: unknown op %d", n->name, (int)n->op);
    for (int k = 0; k < 2; k++)
      if (n->param[k] < -1 || (n->param[k] >= 0 && (size_t)n->param[k] >= g->n_params) ||
          n->buffer[k] < -1 || (n->buffer[k] >= 0 && (size_t)n->buffer[k] >= g->n_buffers))
        return wk_fail(WK_ERR_INVALID_ARG, "GPU: %s: a parameter or buffer index out of range",
                       n->name);
  }
  return WK_OK;
}

/* needs_grad from the inputs' and the parameters' (frozen or not). */
static void wk_derive_needs_grad(wk_gpu_net *net) {
  memset(net->needs_grad, 0, (size_t)net->n_values * sizeof *net->needs_grad);
  for (int i = 0; i < net->g.n_nodes; i++) {
    const wk_node *n = &net->nodes[i];
    const int v = i + 1;
    for (int k = 0; k < n->n_in; k++) net->needs_grad[v] |= net->needs_grad[n->in[k]];
    net->needs_grad[v] |= wk_trainable(net, n->param[0]) || wk_trainable(net, n->param[1]);
  }
}

wk_status wk_cudanet_set_params(wk_gpu_net *net, const wk_param *params) {
  WK_CUDA_TRY(cudaSetDevice(net->device));
  wk_graph_table_invalidate(&net->graphs); /* what backward runs changes with the frozen flags */
  for (size_t i = 0; i < net->g.n_params; i++) {
    if (params[i].offset != net->params[i].offset || params[i].numel != net->params[i].numel)
      return wk_fail(WK_ERR_INVALID_ARG, "GPU network: parameter %s moved", params[i].name);
    net->params[i].flags = params[i].flags;
  }
  const size_t nv_bytes = (size_t)net->n_values * sizeof *net->needs_grad;
  bool *before = malloc(nv_bytes);
  if (!before) return wk_fail(WK_ERR_NOMEM, "GPU network: out of memory");
  memcpy(before, net->needs_grad, nv_bytes);
  wk_derive_needs_grad(net);
  /* which gradients backward makes, and when, changed: placed again at the
   * next training forward */
  if (memcmp(before, net->needs_grad, nv_bytes)) wk_free_grads(net);
  free(before);
  return WK_OK;
}

static wk_status wk_copy_graph(wk_gpu_net *net, const wk_gpu_graph *g) {
  net->g = *g;
  net->nodes = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *net->nodes);
  net->params = calloc(g->n_params ? g->n_params : 1, sizeof *net->params);
  net->buffers = malloc((g->n_buffers ? g->n_buffers : 1) * sizeof *net->buffers);
  net->n_values = g->n_nodes + 1;
  const size_t nv = (size_t)net->n_values;
  net->alias = malloc(nv * sizeof *net->alias);
  net->vroot = malloc(nv * sizeof *net->vroot);
  net->consumers = calloc(nv, sizeof *net->consumers);
  net->needs_grad = calloc(nv, sizeof *net->needs_grad);
  net->numel = malloc(nv * sizeof *net->numel);
  net->val = calloc(nv, sizeof *net->val);
  net->grad = calloc(nv, sizeof *net->grad);
  net->grad_begun = calloc(nv, sizeof *net->grad_begun);
  net->gn = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *net->gn);
  if (!net->nodes || !net->params || !net->buffers || !net->alias || !net->vroot ||
      !net->consumers ||
      !net->needs_grad || !net->numel || !net->val || !net->grad || !net->grad_begun ||
      !net->gn)
    return wk_fail(WK_ERR_NOMEM, "GPU network: out of memory");
  memcpy(net->nodes, g->nodes, (size_t)g->n_nodes * sizeof *net->nodes);
  memcpy(net->params, g->params, g->n_params * sizeof *net->params);
  memcpy(net->buffers, g->buffers, g->n_buffers * sizeof *net->buffers);
  net->g.nodes = net->nodes;
  net->g.params = net->params;
  net->g.buffers = net->buffers;
  for (int v = 0; v < net->n_values; v++) net->numel[v] = wk_gv_numel(g, net->nodes, v);
  const int bad = wk_value_readers(net->nodes, g->n_nodes, net->alias, net->consumers);
  if (bad >= 0)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU: %s: an input value out of order",
                   net->nodes[bad].name);
  memcpy(net->vroot, net->alias, nv * sizeof *net->vroot);
  wk_derive_needs_grad(net);
  return WK_OK;
}

/* The fused groups (bn_fuse_plan.h), kept on their relu nodes: a group runs
 * at its relu, where x and z are ready whatever the nodes' order; every other
 * batchnorm is a group on its own node (not with $WHISKER_BN_FUSE=groups). */
static wk_status wk_plan_fusion(wk_gpu_net *net) {
  for (int i = 0; i < net->g.n_nodes; i++) {
    wk_gnode *s = &net->gn[i];
    s->fuse_bn = s->fuse_add = s->fuse_z = s->fused_into = -1;
    s->fuse_solo = false;
  }
  net->fuse_groups = net->fuse_solos = 0;
  if (net->fuse_mode == WK_FUSE_OFF) return WK_OK;
  wk_bn_fuse_group *groups = malloc((size_t)net->g.n_nodes * sizeof *groups);
  if (!groups) return wk_fail(WK_ERR_NOMEM, "GPU network: out of memory");
  net->fuse_groups = wk_bn_fuse_plan(net->nodes, net->g.n_nodes, net->consumers, groups);
  for (int k = 0; k < net->fuse_groups; k++) {
    const wk_bn_fuse_group *f = &groups[k];
    wk_gnode *s = &net->gn[f->relu];
    s->fuse_bn = f->bn;
    s->fuse_add = f->add;
    s->fuse_z = f->z;
    net->gn[f->bn].fused_into = f->relu;
    if (f->add >= 0) net->gn[f->add].fused_into = f->relu;
    /* the batchnorm's and the add's values in the relu's buffer: fused, they
     * are never written; one by one, each node writes it in place (an
     * elementwise step on a value nobody else reads), the relu last, and
     * backward reads none of the two (the relu's mask comes from its output,
     * the batchnorm's gradient from its input) */
    net->vroot[f->bn + 1] = f->relu + 1;
    if (f->add >= 0) net->vroot[f->add + 1] = f->relu + 1;
  }
  free(groups);
  for (int i = 0; net->fuse_mode == WK_FUSE_ALL && i < net->g.n_nodes; i++) {
    wk_gnode *s = &net->gn[i];
    if (net->nodes[i].op != WK_NODE_BATCHNORM || s->fused_into >= 0) continue;
    s->fuse_bn = s->fused_into = i;
    s->fuse_solo = true;
    net->fuse_groups++;
    net->fuse_solos++;
  }
  return WK_OK;
}

static wk_status wk_make_descriptors(wk_gpu_net *net) {
  int widest_bn = 0;
  int64_t widest_w = 0; /* the largest convolution weight */
  for (int i = 0; i < net->g.n_nodes; i++) {
    const wk_node *n = &net->nodes[i];
    wk_gnode *s = &net->gn[i];
    WK_CUDNN_TRY(cudnnCreateTensorDescriptor(&s->x));
    WK_CUDNN_TRY(cudnnCreateTensorDescriptor(&s->y));
    WK_CUDNN_TRY(cudnnCreateTensorDescriptor(&s->bias));
    int h, w, c;
    wk_gv_hwc(net, i + 1, &h, &w, &c);
    if (n->op == WK_NODE_CONV) {
      int ih, iw, ic;
      wk_gv_hwc(net, n->in[0], &ih, &iw, &ic);
      const int groups = n->conv.groups > 0 ? n->conv.groups : 1;
      WK_CUDNN_TRY(cudnnCreateFilterDescriptor(&s->w));
      WK_CUDNN_TRY(cudnnSetFilter4dDescriptor(s->w, wk_act_type(net), CUDNN_TENSOR_NHWC,
                                              n->out_ch, ic / groups, n->kh, n->kw));
      WK_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&s->conv));
      WK_CUDNN_TRY(cudnnSetConvolution2dDescriptor(
          s->conv, n->conv.pad_top, n->conv.pad_left, n->conv.stride_h, n->conv.stride_w,
          n->conv.dilation_h > 0 ? n->conv.dilation_h : 1,
          n->conv.dilation_w > 0 ? n->conv.dilation_w : 1, CUDNN_CROSS_CORRELATION,
          CUDNN_DATA_FLOAT));
      WK_CUDNN_TRY(cudnnSetConvolutionGroupCount(s->conv, groups));
      /* as PyTorch: FMA math keeps TF32 out; the default math lets cuDNN use it */
      WK_CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, wk_conv_math(net)));
      WK_TRY(wk_nhwc_desc(s->bias, CUDNN_DATA_FLOAT, 1, 1, 1, n->out_ch));
      const int64_t wn = (int64_t)n->out_ch * (ic / groups) * n->kh * n->kw;
      widest_w = wn > widest_w ? wn : widest_w;
    } else if (n->op == WK_NODE_BATCHNORM) {
      widest_bn = c > widest_bn ? c : widest_bn;
      s->bn_own = net->own_bn;
      WK_TRY(wk_nhwc_desc(s->bias, CUDNN_DATA_FLOAT, 1, 1, 1, c));
      WK_TRY(wk_cuda_malloc((void **)&s->save_mean, (size_t)c * sizeof(float)));
      WK_TRY(wk_cuda_malloc((void **)&s->save_invvar, (size_t)c * sizeof(float)));
    } else if (n->op == WK_NODE_MAXPOOL || n->op == WK_NODE_AVGPOOL) {
      const cudnnPoolingMode_t mode =
          n->op == WK_NODE_MAXPOOL           ? CUDNN_POOLING_MAX_DETERMINISTIC
          : n->pool.count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                             : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
      WK_CUDNN_TRY(cudnnCreatePoolingDescriptor(&s->pool));
      WK_CUDNN_TRY(cudnnSetPooling2dDescriptor(s->pool, mode, CUDNN_NOT_PROPAGATE_NAN,
                                               n->pool.kernel_h, n->pool.kernel_w,
                                               n->pool.pad_top, n->pool.pad_left,
                                               n->pool.stride_h, n->pool.stride_w));
    }
  }
  if (widest_bn) WK_TRY(wk_cuda_malloc((void **)&net->bn_discard, 2 * (size_t)widest_bn * 4));
  net->widest_bn = widest_bn;
  /* where whisker's batchnorm may run (cuDNN may refuse 16 bits), its sums'
   * buffers now: never made inside a captured step */
  if (widest_bn && (wk_half(net) || net->own_bn)) WK_TRY(wk_own_bn_buffers(net));
  net->widest_w = widest_w;
  if (wk_half(net)) {
    WK_TRY(wk_cuda_malloc((void **)&net->wh, net->g.n_elems * sizeof(uint16_t)));
    WK_TRY(wk_cuda_malloc((void **)&net->bdw, (size_t)widest_w * sizeof(uint16_t)));
    net->wh_stale = true;
  }
  return WK_OK;
}

/* The stream, and cuDNN and cuBLAS bound to it; the input's stream and events. */
static wk_status wk_handles(wk_gpu_net *net) {
  WK_CUDA_TRY(cudaStreamCreateWithFlags(&net->stream, cudaStreamNonBlocking));
  WK_CUDA_TRY(cudaStreamCreateWithFlags(&net->up_stream, cudaStreamNonBlocking));
  WK_CUDA_TRY(cudaEventCreateWithFlags(&net->up_clear, cudaEventDisableTiming));
  WK_CUDA_TRY(cudaEventCreateWithFlags(&net->up_done, cudaEventDisableTiming));
  WK_CUDA_TRY(cudaEventCreateWithFlags(&net->next_done, cudaEventDisableTiming));
  WK_CUDA_TRY(cudaEventCreateWithFlags(&net->next_free, cudaEventDisableTiming));
  WK_CUDNN_TRY(cudnnCreate(&net->cudnn));
  WK_CUDNN_TRY(cudnnSetStream(net->cudnn, net->stream));
  /* the fused groups' relu: NaN gives 0, as whisker's relu kernel */
  WK_CUDNN_TRY(cudnnCreateActivationDescriptor(&net->relu));
  WK_CUDNN_TRY(cudnnSetActivationDescriptor(net->relu, CUDNN_ACTIVATION_RELU,
                                            CUDNN_NOT_PROPAGATE_NAN, 0.0));
  WK_CUBLAS_TRY(cublasCreate(&net->cublas));
  WK_CUBLAS_TRY(cublasSetStream(net->cublas, net->stream));
  /* 16 bits: split-K partial sums in float32 too, not in the output's type */
  const cublasMath_t math =
      net->g.precision == WK_PRECISION_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH
      : wk_half(net) ? (cublasMath_t)(CUBLAS_DEFAULT_MATH |
                                      CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)
                     : CUBLAS_DEFAULT_MATH;
  WK_CUBLAS_TRY(cublasSetMathMode(net->cublas, math));
  /* cuBLAS's workspace, ours (after cublasSetStream, which resets it): a
   * captured step must not make cuBLAS allocate one, and every network,
   * captured or not, then runs cuBLAS with the same workspace, hence the
   * same kernels. The sizes cuBLAS's documentation recommends (32 MiB from
   * Hopper on, 4 MiB before). */
  int major = 0;
  WK_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, net->device));
  net->blas_ws_bytes = (size_t)(major >= 9 ? 32 : 4) << 20;
  WK_TRY(wk_cuda_malloc(&net->blas_ws, net->blas_ws_bytes));
  WK_CUBLAS_TRY(cublasSetWorkspace(net->cublas, net->blas_ws, net->blas_ws_bytes));
  return WK_OK;
}

/* $WHISKER_GPU_WORKSPACE_MB, $WHISKER_CUDNN_ALGO, $WHISKER_CUDNN_DETERMINISTIC,
 * $WHISKER_GPU_OWN_BN, $WHISKER_GPU_POOL, $WHISKER_GPU_INFER_BN and
 * $WHISKER_BN_FUSE (cuda.h). */
static wk_status wk_read_env(wk_gpu_net *net) {
  net->workspace_limit = (size_t)1024 << 20;
  const char *env = getenv("WHISKER_GPU_WORKSPACE_MB");
  if (env && *env) {
    char *end;
    const long mb = strtol(env, &end, 10);
    if (*end || mb < 0 || mb > (1L << 20))
      return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_GPU_WORKSPACE_MB='%s': expected 0..%ld", env,
                     1L << 20);
    net->workspace_limit = (size_t)mb << 20;
  }
  net->algo_mode = WK_ALGO_AUTO;
  env = getenv("WHISKER_CUDNN_ALGO");
  if (env && *env) {
    if (!strcmp(env, "find")) net->algo_mode = WK_ALGO_FIND;
    else if (!strcmp(env, "heuristic")) net->algo_mode = WK_ALGO_HEURISTIC;
    else return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_CUDNN_ALGO='%s': expected heuristic or find",
                        env);
  }
  env = getenv("WHISKER_CUDNN_API");
  net->conv_graph = env && !strcmp(env, "graph");
  if (env && *env && strcmp(env, "graph") && strcmp(env, "legacy"))
    return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_CUDNN_API='%s': expected legacy or graph", env);
  env = getenv("WHISKER_CUDNN_DETERMINISTIC");
  net->deterministic = env && !strcmp(env, "1");
  if (env && *env && strcmp(env, "1") && strcmp(env, "0"))
    return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_CUDNN_DETERMINISTIC='%s': expected 1 or 0", env);
  env = getenv("WHISKER_GPU_OWN_BN");
  net->own_bn = env && !strcmp(env, "1");
  if (env && *env && strcmp(env, "1") && strcmp(env, "0"))
    return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_GPU_OWN_BN='%s': expected 1 or 0", env);
  env = getenv("WHISKER_GPU_POOL");
  net->pool_own = !env || !*env || !strcmp(env, "own");
  if (env && *env && strcmp(env, "own") && strcmp(env, "cudnn"))
    return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_GPU_POOL='%s': expected own or cudnn", env);
  env = getenv("WHISKER_GPU_INFER_BN");
  net->infer_own = !env || !*env || !strcmp(env, "own");
  if (env && *env && strcmp(env, "own") && strcmp(env, "cudnn"))
    return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_GPU_INFER_BN='%s': expected own or cudnn", env);
  net->fuse_mode = WK_FUSE_ALL;
  env = getenv("WHISKER_BN_FUSE");
  if (env && *env) {
    if (!strcmp(env, "0")) net->fuse_mode = WK_FUSE_OFF;
    else if (!strcmp(env, "groups")) net->fuse_mode = WK_FUSE_GROUPS;
    else if (strcmp(env, "auto") && strcmp(env, "1") && strcmp(env, "all"))
      return wk_fail(WK_ERR_INVALID_ARG,
                     "$WHISKER_BN_FUSE='%s': expected auto, 1, all, groups or 0", env);
  }
  return WK_OK;
}

wk_status wk_cudanet_create(const wk_gpu_graph *g, int device, wk_gpu_net **out) {
  *out = NULL;
  if (!g || g->n_nodes < 1 || !g->nodes || (g->n_params && !g->params) ||
      (g->n_buffers && !g->buffers))
    return wk_fail(WK_ERR_INVALID_ARG, "GPU network: empty graph");
  WK_TRY(wk_check_graph(g));
  int count = 0;
  WK_CUDA_TRY(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU network: device %d of %d", device, count);
  WK_CUDA_TRY(cudaSetDevice(device));
  int major = 0, minor = 0;
  WK_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  WK_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  /* a build for newer GPUs only (sm_90 when built where there is none) has no kernels for
   * an older one: refuse here, where --device auto falls back to the CPU, not at the
   * first step */
  const int ke = wk_kernels_runnable();
  if (ke != 0)
    return wk_fail(WK_ERR_UNSUPPORTED, "GPU %d: compute capability %d.%d: this build has no "
                   "kernels it can run (%s); rebuild on this machine (its GPU's architecture "
                   "is added) or set -DWHISKER_CUDA_ARCHS", device, major, minor,
                   cudaGetErrorString((cudaError_t)ke));
  if (g->precision == WK_PRECISION_BF16) { /* bfloat16 tensor cores: Ampere (8.0) on */
    if (major < 8)
      return wk_fail(WK_ERR_UNSUPPORTED, "GPU %d: --precision bf16 needs compute capability "
                     "8.0 or newer, this GPU has %d.%d (fp16 or fp32 work)", device, major,
                     minor);
  }
  wk_gpu_net *net = calloc(1, sizeof *net);
  if (!net) return wk_fail(WK_ERR_NOMEM, "GPU network: out of memory");
  net->device = device;
  wk_graph_table_init(&net->graphs, wk_graph_exec_free);
  wk_status s = wk_read_env(net);
  if (s == WK_OK && !g->algos) s = wk_cudaalgos_create(&net->own_algos);
  net->algos = g->algos ? g->algos : net->own_algos;
  if (s == WK_OK) s = wk_copy_graph(net, g);
  if (s == WK_OK) s = wk_plan_fusion(net);
  if (s == WK_OK) s = wk_handles(net);
  if (s == WK_OK) s = wk_cuda_malloc((void **)&net->weights, g->n_elems * sizeof(float));
  if (s == WK_OK) s = wk_cuda_malloc((void **)&net->grads, g->n_elems * sizeof(float));
  if (s == WK_OK)
    s = wk_cuda_malloc((void **)&net->buf_data, g->n_buffer_elems * sizeof(float));
  if (s != WK_OK)
    s = wk_no_room(s, "a smaller model, or another GPU", "GPU %d: the network's %zu MiB of "
                   "weights and gradients", device, (g->n_elems * 8) >> 20);
  if (s == WK_OK) s = wk_make_descriptors(net);
  if (s != WK_OK) {
    wk_cudanet_destroy(net);
    return s;
  }
  *out = net;
  return WK_OK;
}

void wk_free_grads(wk_gpu_net *net) {
  wk_graph_table_invalidate(&net->graphs); /* captured steps use these buffers */
  (void)wk_cuda_free(net->grad_arena);
  net->grad_arena = NULL;
  net->grad_arena_bytes = 0;
  for (int v = 0; v < net->n_values; v++) net->grad[v] = NULL;
  net->grad_cap = 0;
}

void wk_free_values(wk_gpu_net *net) {
  wk_graph_table_invalidate(&net->graphs); /* captured steps use these buffers */
  for (int v = 0; v < net->n_values; v++) {
    if (!net->vals_shared && net->vroot[v] == v) (void)wk_cuda_free(net->val[v]);
    net->val[v] = NULL;
  }
  (void)wk_cuda_free(net->val_arena);
  net->val_arena = NULL;
  net->val_arena_bytes = 0;
  net->vals_shared = false;
  wk_free_grads(net);
  (void)wk_cuda_free(net->scratch);
  (void)wk_cuda_free(net->ones);
  net->scratch = net->ones = NULL;
  net->cap = 0;
}

void wk_cudanet_destroy(wk_gpu_net *net) {
  if (!net) return;
  (void)cudaSetDevice(net->device); /* everything below belongs to it */
  wk_gpucomm_destroy(net->comm); /* first: its stream waits on work of the net's */
  if (net->stream) (void)cudaStreamSynchronize(net->stream); /* a replay, the copies of vals_host */
  wk_graph_table_free(&net->graphs);
  if (net->vals_read) (void)cudaEventDestroy(net->vals_read);
  if (net->vals_host) (void)cudaFreeHost(net->vals_host);
  (void)wk_cuda_free(net->vals_dev);
  if (net->val && net->vroot && net->grad) wk_free_values(net);
  for (int i = 0; net->gn && i < net->g.n_nodes; i++) {
    wk_gnode *s = &net->gn[i];
    if (s->x) cudnnDestroyTensorDescriptor(s->x);
    if (s->y) cudnnDestroyTensorDescriptor(s->y);
    if (s->bias) cudnnDestroyTensorDescriptor(s->bias);
    if (s->w) cudnnDestroyFilterDescriptor(s->w);
    if (s->conv) cudnnDestroyConvolutionDescriptor(s->conv);
    if (s->pool) cudnnDestroyPoolingDescriptor(s->pool);
    for (int k = 0; k < 4; k++) wk_cplan_destroy(s->plan[k]);
    (void)wk_cuda_free(s->save_mean);
    (void)wk_cuda_free(s->save_invvar);
    (void)wk_cuda_free(s->reserve);
  }
  if (net->relu) cudnnDestroyActivationDescriptor(net->relu);
  (void)wk_cuda_free(net->weights);
  (void)wk_cuda_free(net->grads);
  (void)wk_cuda_free(net->buf_data);
  (void)wk_cuda_free(net->workspace);
  (void)wk_cuda_free(net->bn_discard);
  (void)wk_cuda_free(net->sync_sums);
  (void)wk_cuda_free(net->sync_partial);
  (void)wk_cuda_free(net->state[0]);
  (void)wk_cuda_free(net->state[1]);
  (void)wk_cuda_free(net->segs_dev);
  (void)wk_cuda_free(net->flag);
  (void)wk_cuda_free(net->u8_in);
  (void)wk_cuda_free(net->xent_labels);
  (void)wk_cuda_free(net->xent_pred);
  (void)wk_cuda_free(net->xent_probs);
  (void)wk_cuda_free(net->xent_rows);
  (void)wk_cuda_free(net->xent_sum);
  (void)wk_cuda_free(net->wh);
  (void)wk_cuda_free(net->bdw);
  (void)wk_cuda_free(net->find_dw);
  free(net->segs_host);
  if (net->up_stream) (void)cudaStreamSynchronize(net->up_stream); /* the copy out of staging */
  if (net->stream) (void)cudaStreamSynchronize(net->stream); /* a read of next_dev */
  if (net->staging) (void)cudaFreeHost(net->staging);
  if (net->next_host) (void)cudaFreeHost(net->next_host);
  (void)wk_cuda_free(net->next_dev);
  if (net->next_done) (void)cudaEventDestroy(net->next_done);
  if (net->next_free) (void)cudaEventDestroy(net->next_free);
  if (net->up_clear) (void)cudaEventDestroy(net->up_clear);
  if (net->up_done) (void)cudaEventDestroy(net->up_done);
  if (net->up_stream) (void)cudaStreamDestroy(net->up_stream);
  if (net->cublas) cublasDestroy(net->cublas);
  (void)wk_cuda_free(net->blas_ws); /* after the handle that uses it */
  if (net->cudnn) cudnnDestroy(net->cudnn);
  if (net->stream) cudaStreamDestroy(net->stream);
  wk_cudaalgos_destroy(net->own_algos);
  for (int i = 0; net->prof && i <= net->g.n_nodes; i++) {
    if (net->prof_fwd[i]) (void)cudaEventDestroy(net->prof_fwd[i]);
    if (net->prof_bwd[i]) (void)cudaEventDestroy(net->prof_bwd[i]);
  }
  free(net->prof_fwd);
  free(net->prof_bwd);
  free(net->prof);
  free(net->nodes);
  free(net->params);
  free(net->buffers);
  free(net->alias);
  free(net->vroot);
  free(net->consumers);
  free(net->needs_grad);
  free(net->numel);
  free(net->val);
  free(net->grad);
  free(net->grad_begun);
  free(net->gn);
  free(net);
}
