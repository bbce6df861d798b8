/* cuda_net.c - a network's graph on one GPU (cuda.h's wk_gpu_net_*, reached
 * through the plugin table, cuda_plugin.h).
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
 * batchnorm, or whisker's kernels where cuDNN refuses it); whisker's kernels (kernels/storage.cuh) load 16 bits, compute
 * in float32 and round once on the store. Convolutions' weight gradients
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
 * the warnings are silenced for this file only. */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/bn_fuse_plan.h"
#include "cuda/cuda_backend.h"
#include "cuda/graph_table.h"
#include "cuda/mem_plan.h"
#include "wk_kernels.h"

/* $WHISKER_CUDNN_ALGO (cuda.h) */
typedef enum { WK_ALGO_AUTO, WK_ALGO_HEURISTIC, WK_ALGO_FIND } wk_algo_mode;
/* $WHISKER_BN_FUSE (cuda.h): groups fuses the batchnorm + relu groups in every
 * precision; all (unset, auto, 1 or all: the default) also runs the
 * batchnorms no group takes alone through the Ex calls; off (0) neither */
typedef enum { WK_FUSE_GROUPS, WK_FUSE_OFF, WK_FUSE_ALL } wk_fuse_mode;

typedef struct wk_gnode {
  /* x, y: the input and output values (float32, or 16 bits with bf16 and
   * fp16), w the convolution's weights likewise; bias: float32 per channel,
   * also batchnorm's scale, bias and statistics */
  cudnnTensorDescriptor_t x, y, bias;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  cudnnPoolingDescriptor_t pool;
  cudnnConvolutionFwdAlgo_t fwd_algo;
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo;
  cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math; /* of the chosen algorithms */
  uint32_t refused[3]; /* per direction, algorithms cuDNN refused when called (bit 1 << algo):
                        * the heuristics pass them over from then on (wk_conv_refused) */
  /* $WHISKER_CUDNN_API=graph (conv_graph.c): the plans of the forward, backward-data,
   * backward-filter and backward-data adding into its output (beta 1, made where the
   * input has more than one reader; without it such a contribution goes through the
   * scratch), and per slot the engines cuDNN refused when run */
  wk_cplan *plan[4];
  wk_engine_set plan_refused[4];
  float *save_mean, *save_invvar; /* batchnorm (C) */
  bool bn_trained;                /* the last forward used batch statistics */
  bool bn_own;     /* whisker's kernels (syncbn.cu) for it: cuDNN refused it (16 bits) or
                    * $WHISKER_GPU_OWN_BN asked (synchronised ones run them too) */
  bool bn_ran_own; /* the last training forward ran them (wk_own_bn_forward) */
  /* batchnorm fused with relu, or with the residual add and relu (cuDNN's
   * cudnnBatchNormalizationForwardTrainingEx), kept on the relu node that
   * heads the group: fuse_bn and fuse_add the nodes it runs (-1: none),
   * fuse_z the add's other input; fuse_skip while cuDNN's sizes refuse it for
   * the batch, fuse_off for good once a call has refused it (then the nodes
   * run one by one); fused: the last forward ran the group fused; reserve:
   * cuDNN's reserve space, from that forward to its backward. On the
   * batchnorm and add nodes, fused_into names the relu node (-1: none); while
   * the group runs fused their backward does nothing, not even zero their
   * gradients, which nothing reads.
   * fuse_solo ($WHISKER_BN_FUSE unset or all): a batchnorm no group takes is a group
   * of its own, on its own node (fuse_bn and fused_into name it), run by the
   * Ex calls with CUDNN_BATCHNORM_OPS_BN and no activation, for their NHWC
   * kernels (the plain calls run NCHW ones on NHWC data). */
  int fuse_bn, fuse_add, fuse_z, fused_into;
  bool fuse_skip, fuse_off, fused, fuse_solo;
  void *reserve;
  size_t reserve_bytes;
} wk_gnode;

struct wk_gpu_net {
  int device;
  wk_gpu_graph g;        /* nodes, params and buffers copied: the net owns them */
  wk_node *nodes;
  wk_param *params, *buffers;
  cudaStream_t stream;
  cudnnHandle_t cudnn;
  cublasHandle_t cublas;
  float *weights, *grads, *buf_data; /* device arenas */
  int n_values;
  int *alias;            /* per value: the value whose buffer it uses */
  int *vroot;            /* per value: the value whose buffer its data uses: alias, but a
                          * fused group's batchnorm and add write into their relu's */
  int *consumers;        /* per alias root: nodes reading it */
  bool *needs_grad;      /* per value: something trainable upstream */
  int64_t *numel;        /* per value, per sample */
  void **val, **grad;    /* per value, device, for batch cap (grad_cap): float32, or 16
                          * bits with bf16 and fp16 (wk_esize); a value's its vroot's
                          * (val) or its alias's (grad); values in val_arena may share;
                          * grad NULL where no gradient is needed */
  void *val_arena;       /* an inference-only network's values, placed by mem_plan.h's
                          * forward steps for cap (vals_shared); else each root's own */
  size_t val_arena_bytes;
  bool vals_shared;
  void *grad_arena;      /* the gradients, placed by mem_plan.h for grad_cap */
  size_t grad_arena_bytes;
  bool *grad_begun;      /* per alias root: backward has written its gradient this time */
  int64_t batch, cap;    /* batch of the last forward; batch the buffers hold */
  int64_t grad_cap;      /* batch the gradients hold (<= cap): 0 until a training forward
                          * (an inference-only network never makes them) */
  bool last_train;
  bool out_ready;        /* the last forward completed: the output value holds its result */
  wk_gpu_dropout drop;   /* the last training forward's dropout masks */
  wk_gpucomm *comm;      /* data parallelism (cuda_comm.c), or NULL */
  /* whisker's batchnorm (synchronised with comm, or alone): the sums of a
   * channel (2 x the widest batchnorm's doubles) and their chunks'
   * (WK_BN_SUM_CHUNKS times) */
  bool sync_bn;
  const char *collectives; /* what queued collectives on the compute stream that no
                            * wait has seen run yet (a forward with synchronised
                            * batchnorm, a backward, a step in one call), the name
                            * wk_collectives_wait's error gives it; NULL: none */
  int64_t own_runs;     /* batchnorms run by syncbn.cu's kernels, over all training forwards */
  bool own_bn;          /* $WHISKER_GPU_OWN_BN=1: every batchnorm by them */
  bool infer_own;       /* $WHISKER_GPU_INFER_BN (own, the default): every batchnorm on
                         * the running statistics by them, a fused group whole at its
                         * relu (wk_infer_group) */
  int64_t infer_fused_runs; /* groups run whole so far */
  bool pool_own;        /* $WHISKER_GPU_POOL (own, the default): max pooling on whisker's
                         * NHWC kernels (train.cu), the CPU's semantics bit for bit */
  char own_note[256];   /* why a batchnorm runs them (cuDNN's refusal), the first */
  double *sync_sums, *sync_partial;
  int widest_bn;
  wk_gnode *gn;
  void *workspace;
  size_t workspace_bytes, workspace_limit;
  wk_algo_mode algo_mode;
  bool conv_graph;    /* $WHISKER_CUDNN_API=graph: convolutions through conv_graph.c */
  bool deterministic; /* $WHISKER_CUDNN_DETERMINISTIC=1 */
  wk_fuse_mode fuse_mode;
  cudnnActivationDescriptor_t relu; /* the fused groups' */
  int fuse_groups;                  /* groups planned */
  int fuse_solos;                   /* of which batchnorms alone (not $WHISKER_BN_FUSE=groups) */
  int64_t fusion_batch;             /* the batch the groups were sized for (0: none) */
  int64_t fused_runs;               /* groups queued fused (a graph's replays not counted) */
  char fuse_note[256];              /* the first refusal's reason */
  wk_gpu_algos *algos;   /* the context's (wk_gpu_graph.algos), or own_algos */
  wk_gpu_algos *own_algos;
  bool trains;           /* a training forward has run: AUTO times */
  bool algos_timed;      /* the batch's algorithms were chosen by timing */
  bool algos_backward;   /* and its backward ones too (a training forward's) */
  int64_t widest_w;      /* elements of the largest convolution weight */
  float *find_dw;        /* float32 timing: a filter gradient to overwrite (widest_w) */
  float *scratch, *ones; /* scratch: the largest value in float32 (twice, with fused
                          * groups in float32); ones: cap floats of 1 */
  size_t scratch_elems;
  float *bn_discard;     /* 2 x the widest batchnorm: a frozen one's unused gradients */
  float *state[2];       /* the optimizer's state arrays, made on first use */
  wk_optim_segment *segs_host, *segs_dev; /* one step's segments (n_params at most) */
  int *flag;             /* one device int: the non-finite check */
  uint8_t *u8_in;        /* 8-bit input batches, before normalisation */
  size_t u8_cap;
  /* the loss on the device (wk_cudanet_xent_*), for xent_cap rows: the labels,
   * the probabilities (rows x the output's width), the rows' losses, the
   * predicted classes, and the loss sum (one double); xent_ready when they
   * belong to the last training forward, which backward has not consumed */
  int32_t *xent_labels, *xent_pred;
  float *xent_probs, *xent_rows;
  double *xent_sum;
  int64_t xent_cap;
  double xent_smoothing;
  bool xent_ready;
  /* the input's way up (wk_upload): pinned staging memory, its stream, and
   * events: up_clear (the compute stream is done with the destination),
   * up_done (the copy is done: the compute stream may read the destination) */
  void *staging;
  size_t staging_bytes;
  cudaStream_t up_stream;
  cudaEvent_t up_clear, up_done;
  /* the next batch, staged while this one computes (wk_cudanet_stage): pinned
   * host and device buffers, events next_done (on up_stream: next_dev holds
   * the batch) and next_free (on stream: next_dev has been read); next_valid
   * while a staged batch of next_n rows (next_u8) waits for its forward */
  void *next_host, *next_dev;
  size_t next_host_bytes, next_dev_bytes;
  cudaEvent_t next_done, next_free;
  bool next_valid, next_u8;
  int64_t next_n;
  int64_t staged_used; /* batches taken from a staged copy */
  /* bf16, fp16: the weights in 16 bits (stale after every change of the
   * weights), and a 16-bit convolution weight gradient (widest_w) */
  uint16_t *wh, *bdw;
  bool wh_stale;
  /* cuBLAS's workspace (wk_handles): ours, so that it never allocates one */
  void *blas_ws;
  size_t blas_ws_bytes;
  /* the fused step (wk_cudanet_train_step): its CUDA graphs; the step's
   * changing values (wk_step_vals, then the update's segments) written into
   * pinned memory and copied up before the step, and what comes back
   * (wk_step_back) behind them there; vals_read: that copy has read the
   * pinned memory, which may be written again; graph_note: why capturing
   * or launching a graph failed, for the caller's warning */
  wk_graph_table graphs;
  void *vals_host, *vals_dev;
  cudaEvent_t vals_read;
  char graph_note[512];
  /* per-node times (wk_cudanet_profile; NULL until asked for): events on the
   * compute stream, the forward's before node i (prof_fwd[i]) and after the
   * last (prof_fwd[n_nodes]), the backward's before node i's backward
   * (prof_bwd[i + 1]) and after node 0's (prof_bwd[0]); *_pending while a set
   * holds a run whose times are not added to prof yet */
  cudaEvent_t *prof_fwd, *prof_bwd;
  bool prof_fwd_pending, prof_bwd_pending;
  bool prof_train; /* the last forward profiled was a training one (for the notes) */
  wk_gpu_node_time *prof;
};

/* ------------------------------------------------------------------ helpers */

/* The graph table's way to free an executable graph (graph_table.h). One
 * still running is freed when it completes. */
static void wk_graph_exec_free(void *exec) { (void)cudaGraphExecDestroy((cudaGraphExec_t)exec); }

static wk_status wk_kernel_try(int e, const char *what) {
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
static void wk_gv_hwc(const wk_gpu_net *net, int v, int *h, int *w, int *c) {
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

static wk_status wk_nhwc_desc(cudnnTensorDescriptor_t d, cudnnDataType_t t, int64_t n, int h,
                              int w, int c) {
  WK_CUDNN_TRY(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NHWC, t, (int)n, c, h, w));
  return WK_OK;
}

static bool wk_trainable(const wk_gpu_net *net, int p) {
  return p >= 0 && !(net->params[p].flags & WK_PARAM_FROZEN);
}

static float *wk_pw(const wk_gpu_net *net, int p) {
  return p >= 0 ? net->weights + net->params[p].offset : NULL;
}
static float *wk_pg(const wk_gpu_net *net, int p) {
  return p >= 0 ? net->grads + net->params[p].offset : NULL;
}
static float *wk_bufp(const wk_gpu_net *net, int b) {
  return net->buf_data + net->buffers[b].offset;
}

/* bf16 and fp16: values and their gradients in 16 bits (see the top of the file). */
static bool wk_half(const wk_gpu_net *net) {
  return net->g.precision == WK_PRECISION_BF16 || net->g.precision == WK_PRECISION_FP16;
}
static wk_half_kind wk_hkind(const wk_gpu_net *net) {
  return net->g.precision == WK_PRECISION_FP16 ? WK_HALF_F16 : WK_HALF_BF16;
}
/* The values' type for cuDNN, and their bytes per element. */
static cudnnDataType_t wk_act_type(const wk_gpu_net *net) {
  if (!wk_half(net)) return CUDNN_DATA_FLOAT;
  return net->g.precision == WK_PRECISION_FP16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}
static size_t wk_esize(const wk_gpu_net *net) { return wk_half(net) ? 2 : sizeof(float); }
static cudaDataType_t wk_blas_type(const wk_gpu_net *net) {
  return net->g.precision == WK_PRECISION_FP16 ? CUDA_R_16F : CUDA_R_16BF;
}
/* A convolution's or linear layer's weights as it reads them: the 16-bit copy
 * with bf16 and fp16 (wk_half_weights makes it current). */
static void *wk_cw(const wk_gpu_net *net, int p) {
  if (!wk_half(net)) return wk_pw(net, p);
  return net->wh + net->params[p].offset;
}

/* The convolutions' math type before a ranking: FMA (no TF32) for fp32, the
 * default (TF32 tensor cores allowed) for tf32, tensor-op math for bf16 and
 * fp16. The default math does not let cuDNN 9's legacy API use tensor cores
 * on 16-bit data: on an H100 it ran bf16 convolutions as float32 FMA kernels
 * behind layout and type conversions, and backward-data as a direct kernel:
 * 71-83 times slower than PyTorch's bf16 step (docs/gpu/h100-2026-11-23.md). */
static cudnnMathType_t wk_conv_math(const wk_gpu_net *net) {
  if (net->g.precision == WK_PRECISION_FP32) return CUDNN_FMA_MATH;
  return wk_half(net) ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH;
}

/* A device allocation for `what` failed with s. No room says so, wrapping the
 * allocator's figures, with the advice; anything else (an earlier kernel
 * fault that the allocator's wait for the device surfaced, say) passes
 * through as it is, never disguised as a lack of memory. */
static wk_status wk_no_room(wk_status s, const char *advice, const char *fmt, ...)
    WK_PRINTF(3, 4);

static wk_status wk_no_room(wk_status s, const char *advice, const char *fmt, ...) {
  if (s != WK_ERR_NOMEM) return s;
  char what[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return wk_fail(s, "GPU: %s does not fit (%s); %s", what, wk_last_error(), advice);
}

static const char wk_smaller_batch[] = "try a smaller --batch";

/* A cuDNN call that answered e: the failure, named by what (a format) and
 * cuDNN's last message. */
static wk_status wk_cudnn_failed(cudnnStatus_t e, const char *fmt, ...) WK_PRINTF(2, 3);

static wk_status wk_cudnn_failed(cudnnStatus_t e, const char *fmt, ...) {
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
static wk_status wk_regrow(wk_gpu_net *net, void **buf, size_t *cap, size_t bytes) {
  if (bytes <= *cap) return WK_OK;
  wk_graph_table_invalidate(&net->graphs);
  WK_TRY(wk_cuda_free(*buf));
  *buf = NULL;
  *cap = 0;
  WK_TRY(wk_cuda_malloc(buf, bytes));
  *cap = bytes;
  return WK_OK;
}

static wk_status wk_workspace(wk_gpu_net *net, size_t bytes) {
  const wk_status s = wk_regrow(net, &net->workspace, &net->workspace_bytes, bytes);
  if (s != WK_OK)
    return wk_no_room(s, "try a smaller --batch or $WHISKER_GPU_WORKSPACE_MB",
                      "%zu MiB of convolution workspace", bytes >> 20);
  return WK_OK;
}

/* The workspace cut down to `bytes` (after timing grew it). */
static wk_status wk_workspace_trim(wk_gpu_net *net, size_t bytes) {
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
static wk_status wk_own_bn_buffers(wk_gpu_net *net) {
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

static void wk_free_grads(wk_gpu_net *net);

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

static void wk_free_grads(wk_gpu_net *net) {
  wk_graph_table_invalidate(&net->graphs); /* captured steps use these buffers */
  (void)wk_cuda_free(net->grad_arena);
  net->grad_arena = NULL;
  net->grad_arena_bytes = 0;
  for (int v = 0; v < net->n_values; v++) net->grad[v] = NULL;
  net->grad_cap = 0;
}

static void wk_free_values(wk_gpu_net *net) {
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

/* ------------------------------------------------------------------ per batch size */

/* What timing may read and overwrite for convolution i (see the top of the
 * file): it reads the input value, the weights (16-bit ones with bf16 and
 * fp16) and the output value, and writes the scratch and a filter gradient
 * (find_dw, or bdw in 16 bits). */
static void wk_timing_buffers(wk_gpu_net *net, int i, wk_conv_choice *c) {
  const wk_node *n = &net->nodes[i];
  c->x_data = net->val[n->in[0]];
  c->dy_data = net->val[i + 1];
  c->y_data = c->dx_data = net->scratch;
  c->w_data = wk_cw(net, n->param[0]);
  c->dw_data = wk_half(net) ? (void *)net->bdw : (void *)net->find_dw;
}

static const char *const wk_conv_dir_names[3] = {"forward", "backward-data", "backward-filter"};

/* Convolution i's choice as cuda_algo.c and conv_graph.c take it, with the
 * descriptor's math type set to the one the rankings start from; `find`
 * times, on the buffers wk_timing_buffers names. */
static wk_status wk_choice_of(wk_gpu_net *net, int i, bool find, wk_conv_choice *c) {
  wk_gnode *s = &net->gn[i];
  /* the rankings follow the descriptor's math type, which the calls change */
  WK_CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, wk_conv_math(net)));
  *c = (wk_conv_choice){.cudnn = net->cudnn, .stream = net->stream, .device = net->device,
                        .x = s->x, .y = s->y, .w = s->w, .conv = s->conv,
                        .tensor_math = net->g.precision != WK_PRECISION_FP32,
                        .ws_limit = net->workspace_limit, .find = find,
                        .deterministic = net->deterministic, .cache = net->algos,
                        .ws = &net->workspace, .ws_bytes = &net->workspace_bytes};
  if (find) wk_timing_buffers(net, i, c);
  return WK_OK;
}

/* The graph API's plan slot k (wk_gnode.plan) of convolution i for c, by
 * timing when c->find; skipped engines are the slot's refused ones. *need
 * grows to its workspace. The beta-1 slot may come out NULL (nothing usable:
 * the backward goes through the scratch); any other must be found, and the
 * error then says what else than an engine's refusal made configurations
 * unusable, if anything did. */
static wk_status wk_pick_plan(wk_gpu_net *net, int i, wk_conv_choice *c, int k, size_t *need,
                              bool *timed) {
  wk_gnode *s = &net->gn[i];
  const wk_conv_dir d = k == 3 ? WK_CONV_BWD_DATA : (wk_conv_dir)k;
  wk_cplan_destroy(s->plan[k]);
  s->plan[k] = NULL;
  char note[384] = "";
  c->skip_engines = &s->plan_refused[k];
  c->note = note;
  c->note_n = sizeof note;
  bool found = false, t = false;
  const wk_status st = wk_cplan_make(c, d, k == 3, &s->plan[k], &found, &t);
  c->note = NULL;
  c->note_n = 0;
  WK_TRY(st);
  *timed |= t;
  if (!found && k != 3)
    return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: no cuDNN engine for the %s convolution within "
                   "%zu MB of workspace%s%s%s ($WHISKER_CUDNN_API=legacy uses the legacy calls)",
                   net->nodes[i].name, wk_conv_dir_names[d], net->workspace_limit >> 20,
                   net->deterministic ? " among those cuDNN calls deterministic "
                                        "($WHISKER_CUDNN_DETERMINISTIC=1)" : "",
                   note[0] ? "; cuDNN also failed: " : "", note);
  if (found && wk_cplan_ws_bytes(s->plan[k]) > *need) *need = wk_cplan_ws_bytes(s->plan[k]);
  return WK_OK;
}

/* Convolution i's algorithms and their math types for the batch the
 * descriptors describe (cuda_algo.c): forward, and with `backward` the two
 * backward ones; by timing when `find`; *need grows to the largest
 * workspace, *timed says timing ran. */
static wk_status wk_pick_algos(wk_gpu_net *net, int i, bool find, bool backward, size_t *need,
                               bool *timed) {
  wk_gnode *s = &net->gn[i];
  const wk_node *n = &net->nodes[i];
  wk_conv_choice c;
  WK_TRY(wk_choice_of(net, i, find, &c));
  if (net->conv_graph) {
    for (int k = 0; k < 4; k++) { /* the last batch's */
      wk_cplan_destroy(s->plan[k]);
      s->plan[k] = NULL;
    }
    const bool dx = n->in[0] != 0, shared = dx && net->consumers[net->alias[n->in[0]]] > 1;
    for (int k = 0; k < (backward ? 4 : 1); k++)
      if ((k != 1 || dx) && (k != 3 || shared)) WK_TRY(wk_pick_plan(net, i, &c, k, need, timed));
    return WK_OK;
  }
  wk_conv_algo a[3] = {{0}};
  for (int d = 0; d < (backward ? 3 : 1); d++) {
    /* a convolution of the network's input never computes an input gradient
     * (wk_backward_node): nothing to choose, time or find room for */
    if (d == WK_CONV_BWD_DATA && n->in[0] == 0) continue;
    bool found = false, t = false;
    c.skip = s->refused[d];
    WK_TRY(wk_conv_choose(&c, (wk_conv_dir)d, &a[d], &found, &t));
    *timed |= t;
    if (!found)
      return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: no cuDNN %s algorithm within %zu MB of "
                     "workspace%s", n->name, wk_conv_dir_names[d], net->workspace_limit >> 20,
                     net->deterministic ? " among those cuDNN calls deterministic "
                                          "($WHISKER_CUDNN_DETERMINISTIC=1)" : "");
    if (a[d].ws_bytes > *need) *need = a[d].ws_bytes;
  }
  s->fwd_algo = (cudnnConvolutionFwdAlgo_t)a[WK_CONV_FWD].algo;
  s->fwd_math = a[WK_CONV_FWD].math;
  if (!backward) return WK_OK;
  s->bwd_data_algo = (cudnnConvolutionBwdDataAlgo_t)a[WK_CONV_BWD_DATA].algo;
  s->bwd_data_math = a[WK_CONV_BWD_DATA].math;
  s->bwd_filter_algo = (cudnnConvolutionBwdFilterAlgo_t)a[WK_CONV_BWD_FILTER].algo;
  s->bwd_filter_math = a[WK_CONV_BWD_FILTER].math;
  return WK_OK;
}

/* cuDNN refused direction d of convolution i when called (e, in the
 * NOT_SUPPORTED category) although its workspace query had accepted the
 * algorithm, which nothing in cuDNN's documentation rules out: the algorithm
 * is passed over for this convolution and direction from now on (also when
 * timing kept it for the shape: wk_conv_choose) and the heuristics' next
 * usable choice taken, with room for its workspace, for the caller to call
 * again (counted in wk_gpu_algo_stats.exec_refused). The replacement is never
 * one passed over, and each refusal of one not passed over yet adds one, so
 * the caller's loop ends. It fails with cuDNN's refusal when no choice is
 * left, or inside a capture when the next choice needs more workspace
 * (nothing can be allocated there; the step then runs uncaptured, and the
 * refusal is met and replaced there). */
static wk_status wk_conv_refused(wk_gpu_net *net, int i, wk_conv_dir d, cudnnStatus_t e) {
  wk_gnode *s = &net->gn[i];
  const int algo = d == WK_CONV_FWD        ? (int)s->fwd_algo
                   : d == WK_CONV_BWD_DATA ? (int)s->bwd_data_algo
                                           : (int)s->bwd_filter_algo;
  (void)wk_cudnn_failed(e, "the %s convolution with algorithm %d", wk_conv_dir_names[d], algo);
  char why[384];
  snprintf(why, sizeof why, "%s", wk_last_error());
  if (algo < 0 || algo >= 32) return wk_fail(WK_ERR_BACKEND, "%s", why);
  enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  WK_CUDA_TRY(cudaStreamIsCapturing(net->stream, &cs));
  wk_conv_choice c;
  WK_TRY(wk_choice_of(net, i, false, &c));
  c.skip = s->refused[d] | 1u << algo;
  wk_conv_algo a = {0};
  bool found = false, timed = false;
  WK_TRY(wk_conv_choose(&c, d, &a, &found, &timed));
  if (!found)
    return wk_fail(WK_ERR_BACKEND, "%s; no other algorithm is left within %zu MB of workspace",
                   why, net->workspace_limit >> 20);
  if (cs != cudaStreamCaptureStatusNone && a.ws_bytes > net->workspace_bytes)
    return wk_fail(WK_ERR_BACKEND, "%s; the next choice's workspace cannot be allocated in a "
                   "captured step", why);
  s->refused[d] |= 1u << algo;
  wk_cudaalgos_count(net->algos, WK_ALGO_EXEC_REFUSED);
  WK_TRY(wk_workspace(net, a.ws_bytes));
  switch (d) {
  case WK_CONV_FWD:
    s->fwd_algo = (cudnnConvolutionFwdAlgo_t)a.algo;
    s->fwd_math = a.math;
    break;
  case WK_CONV_BWD_DATA:
    s->bwd_data_algo = (cudnnConvolutionBwdDataAlgo_t)a.algo;
    s->bwd_data_math = a.math;
    break;
  case WK_CONV_BWD_FILTER:
    s->bwd_filter_algo = (cudnnConvolutionBwdFilterAlgo_t)a.algo;
    s->bwd_filter_math = a.math;
    break;
  }
  return WK_OK;
}

/* Convolution i's plan slot k answered e when run (the graph API's
 * counterpart of wk_conv_answered): *again when cuDNN refused the engine
 * (NOT_SUPPORTED) and the heuristics' next usable one took its place, for
 * the caller to run again; as wk_conv_refused, the refused engine is passed
 * over for this slot from now on, and inside a capture a replacement needing
 * more workspace fails. The beta-1 slot may come out empty instead (no engine
 * left adds into dx: the caller goes through the scratch). Anything else is
 * reported. */
static wk_status wk_plan_answered(wk_gpu_net *net, int i, int k, cudnnStatus_t e, bool *again) {
  *again = false;
  if (e == CUDNN_STATUS_SUCCESS) return WK_OK;
  wk_gnode *s = &net->gn[i];
  const wk_conv_dir d = k == 3 ? WK_CONV_BWD_DATA : (wk_conv_dir)k;
  const int64_t engine = wk_cplan_engine(s->plan[k]);
  (void)wk_cudnn_failed(e, "the %s convolution %s on engine %lld", wk_conv_dir_names[d],
                        net->nodes[i].name, (long long)engine);
  char why[384];
  snprintf(why, sizeof why, "%s", wk_last_error());
  if (e == CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER) /* wk_cplan_run's own check: its reason */
    return wk_fail(WK_ERR_BACKEND, "the %s convolution %s: %s", wk_conv_dir_names[d],
                   net->nodes[i].name, wk_last_error());
  if (CUDNN_STATUS_CATEGORY(e) != CUDNN_STATUS_NOT_SUPPORTED)
    return wk_fail(WK_ERR_BACKEND, "%s", why);
  if (!wk_engine_set_add(&s->plan_refused[k], engine)) /* it would be taken again */
    return wk_fail(WK_ERR_BACKEND, "%s (an engine index beyond the %d whisker keeps track of)",
                   why, (int)WK_ENGINE_SET_MAX);
  enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  WK_CUDA_TRY(cudaStreamIsCapturing(net->stream, &cs));
  wk_conv_choice c;
  WK_TRY(wk_choice_of(net, i, false, &c));
  wk_cudaalgos_count(net->algos, WK_ALGO_EXEC_REFUSED);
  size_t need = 0;
  bool timed = false;
  WK_TRY(wk_pick_plan(net, i, &c, k, &need, &timed));
  if (!s->plan[k] && k == 3) return WK_OK;
  if (!s->plan[k])
    return wk_fail(WK_ERR_BACKEND, "%s; no other engine is left within %zu MB of workspace", why,
                   net->workspace_limit >> 20);
  if (cs != cudaStreamCaptureStatusNone && need > net->workspace_bytes)
    return wk_fail(WK_ERR_BACKEND, "%s; the next engine's workspace cannot be allocated in a "
                   "captured step", why);
  WK_TRY(wk_workspace(net, need));
  *again = true;
  return WK_OK;
}

/* Runs convolution i's plan slot k (x, w, y as wk_cplan_run names them),
 * taking the next engine while cuDNN refuses one; the beta-1 slot returns
 * empty, and nothing ran, when no engine left adds into dx. */
static wk_status wk_plan_run(wk_gpu_net *net, int i, int k, void *x, void *w, void *y) {
  for (bool again = true; again && net->gn[i].plan[k];)
    WK_TRY(wk_plan_answered(net, i, k,
                            wk_cplan_run(net->gn[i].plan[k], x, w, y, net->workspace), &again));
  return WK_OK;
}

/* What convolution i's call of direction d answered (e): *again when cuDNN
 * refused the algorithm and another took its place (wk_conv_refused), for
 * the caller to call again with it; any other failure is reported. */
static wk_status wk_conv_answered(wk_gpu_net *net, int i, wk_conv_dir d, cudnnStatus_t e,
                                  bool *again) {
  *again = false;
  if (e == CUDNN_STATUS_SUCCESS) return WK_OK;
  if (CUDNN_STATUS_CATEGORY(e) != CUDNN_STATUS_NOT_SUPPORTED)
    return wk_cudnn_failed(e, "the %s convolution", wk_conv_dir_names[d]);
  WK_TRY(wk_conv_refused(net, i, d, e));
  *again = true;
  return WK_OK;
}

static cudnnBatchNormOps_t wk_fuse_ops(const wk_gnode *s) {
  if (s->fuse_solo) return CUDNN_BATCHNORM_OPS_BN;
  return s->fuse_add >= 0 ? CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION
                          : CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
}

/* The group's activation: relu, none for a batchnorm alone. */
static cudnnActivationDescriptor_t wk_fuse_act(const wk_gpu_net *net, const wk_gnode *s) {
  return s->fuse_solo ? NULL : net->relu;
}

/* Why group j (its relu node, or the batchnorm alone) runs unfused: the first
 * reason is kept for wk_cudanet_graph_stats. */
static void wk_fuse_note(wk_gpu_net *net, int j, const char *why) {
  const wk_gnode *s = &net->gn[j];
  if (net->fuse_note[0]) return;
  const int r =
      s->fuse_solo
          ? snprintf(net->fuse_note, sizeof net->fuse_note,
                     "%s: cuDNN does not run batchnorm %s alone through its Ex calls here (%s)",
                     net->nodes[j].name, net->nodes[j].name, why)
          : snprintf(net->fuse_note, sizeof net->fuse_note,
                     "%s: cuDNN does not fuse batchnorm %s with %srelu here (%s)",
                     net->nodes[j].name, net->nodes[s->fuse_bn].name,
                     s->fuse_add >= 0 ? "the add and " : "", why);
  if (r < 0) net->fuse_note[0] = '\0';
}

/* The most workspace a fused batchnorm may take: $WHISKER_GPU_WORKSPACE_MB,
 * which bounds the convolutions' algorithms, but never under 16 MiB. cuDNN's
 * Ex calls ask for kilobytes to a few megabytes, and need some (given none
 * they act as the plain batchnorm): a limit of 0, set to keep the
 * convolutions to the algorithms without workspace, turned every fusion off. */
static size_t wk_bn_workspace_limit(const wk_gpu_net *net) {
  const size_t floor = (size_t)16 << 20;
  return net->workspace_limit > floor ? net->workspace_limit : floor;
}

/* The fused groups for the batch the descriptors describe, before a
 * training forward: cuDNN's workspace and the reserve space each one keeps
 * from forward to backward (grown, never shrunk). A group cuDNN's sizes
 * refuse for this batch (CUDNN_STATUS_NOT_SUPPORTED and its detailed codes
 * for a type or shape its fused kernels do not take, or any other failure:
 * the fusion is optional) runs unfused at this batch size. */
static wk_status wk_fusion_batch(wk_gpu_net *net) {
  size_t need = 0;
  for (int j = 0; j < net->g.n_nodes; j++) {
    wk_gnode *s = &net->gn[j];
    if (s->fuse_bn < 0 || s->fuse_off) continue;
    const wk_gnode *sb = &net->gn[s->fuse_bn];
    const cudnnBatchNormOps_t ops = wk_fuse_ops(s);
    const cudnnTensorDescriptor_t z = s->fuse_add >= 0 ? sb->y : NULL;
    size_t fw = 0, bw = 0, rs = 0;
    const cudnnActivationDescriptor_t act = wk_fuse_act(net, s);
    cudnnStatus_t e = cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(
        net->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ops, sb->x, z, s->y, sb->bias, act, &fw);
    if (e == CUDNN_STATUS_SUCCESS)
      e = cudnnGetBatchNormalizationBackwardExWorkspaceSize(
          net->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ops, sb->x, s->y, s->y, z, sb->x,
          sb->bias, act, &bw);
    if (e == CUDNN_STATUS_SUCCESS)
      e = cudnnGetBatchNormalizationTrainingExReserveSpaceSize(
          net->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ops, act, sb->x, &rs);
    /* never no workspace: given none, cuDNN's Ex calls act as the plain
     * batchnorm (cuDNN's documentation); a reserve space even if cuDNN
     * asks for none */
    size_t ws = fw > bw ? fw : bw;
    ws = ws > 4096 ? ws : 4096;
    rs = rs > 256 ? rs : 256;
    s->fuse_skip = e != CUDNN_STATUS_SUCCESS || ws > wk_bn_workspace_limit(net);
    if (s->fuse_skip) {
      wk_fuse_note(net, j, e != CUDNN_STATUS_SUCCESS
                               ? cudnnGetErrorString(e)
                               : "its workspace exceeds $WHISKER_GPU_WORKSPACE_MB (16 at least)");
      continue;
    }
    if (ws > need) need = ws;
    const wk_status st = wk_regrow(net, &s->reserve, &s->reserve_bytes, rs);
    if (st != WK_OK)
      return wk_no_room(st, wk_smaller_batch, "%s: the fused batchnorm's %zu KiB",
                        net->nodes[j].name, rs >> 10);
  }
  WK_TRY(wk_workspace(net, need));
  net->fusion_batch = net->batch;
  return WK_OK;
}

/* Batchnorm i's rows per rank, channels, and rows over every rank (one
 * unless synchronised). */
static wk_status wk_bn_rows(const wk_gpu_net *net, int i, int64_t *rows, int *c,
                            double *total) {
  int h, w;
  wk_gv_hwc(net, i + 1, &h, &w, c);
  *rows = net->batch * h * w;
  *total = (double)*rows * (net->sync_bn ? wk_gpucomm_world(net->comm) : 1);
  if (*total < 2)
    return wk_fail(WK_ERR_SHAPE, "%s: training needs more than one value per channel",
                   net->nodes[i].name);
  return WK_OK;
}

/* The fused groups as mem_plan.h takes them (not the batchnorms alone), into
 * groups (n_nodes long); returns how many. */
static int wk_plan_groups(const wk_gpu_net *net, wk_bn_fuse_group *groups) {
  int n_groups = 0;
  for (int j = 0; j < net->g.n_nodes; j++) {
    const wk_gnode *g = &net->gn[j];
    if (g->fuse_bn >= 0 && !g->fuse_solo)
      groups[n_groups++] = (wk_bn_fuse_group){
          .relu = j, .bn = g->fuse_bn, .add = g->fuse_add, .z = g->fuse_z};
  }
  return n_groups;
}

/* Host scratch for placing a network's buffers (mem_plan.h): the groups (one
 * per node at most) and per value the steps, the bytes and the offsets. */
typedef struct wk_place_scratch {
  wk_bn_fuse_group *groups;
  int *first, *last;
  size_t *bytes, *offset; /* bytes zeroed */
} wk_place_scratch;

static void wk_place_scratch_free(wk_place_scratch *p) {
  free(p->groups);
  free(p->first);
  free(p->last);
  free(p->bytes);
  free(p->offset);
}

static wk_status wk_place_scratch_make(const wk_gpu_net *net, wk_place_scratch *p) {
  const size_t nv = (size_t)net->n_values;
  *p = (wk_place_scratch){
      .groups = malloc((size_t)(net->g.n_nodes ? net->g.n_nodes : 1) * sizeof *p->groups),
      .first = malloc(nv * sizeof *p->first), .last = malloc(nv * sizeof *p->last),
      .bytes = calloc(nv, sizeof *p->bytes), .offset = malloc(nv * sizeof *p->offset)};
  if (p->groups && p->first && p->last && p->bytes && p->offset) return WK_OK;
  wk_place_scratch_free(p);
  return wk_fail(WK_ERR_NOMEM, "GPU network: out of memory");
}

/* The values' gradients for a training batch of n, in one arena where those
 * whose steps of backward do not overlap share memory (mem_plan.h; the fused
 * groups as planned, whether they run fused or not). */
static wk_status wk_place_grads(wk_gpu_net *net, int64_t n) {
  wk_free_grads(net);
  const size_t nv = (size_t)net->n_values;
  wk_place_scratch p;
  WK_TRY(wk_place_scratch_make(net, &p));
  const int n_groups = wk_plan_groups(net, p.groups);
  wk_grad_steps(net->nodes, net->g.n_nodes, net->alias, net->needs_grad, p.groups, n_groups,
                p.first, p.last);
  for (size_t v = 0; v < nv; v++)
    if (p.first[v] >= 0) p.bytes[v] = (size_t)(n * net->numel[v]) * wk_esize(net);
  size_t total = 0;
  wk_status s = wk_place_buffers((int)nv, p.bytes, p.first, p.last, net->n_values, 256, p.offset,
                                 &total, NULL);
  if (s == WK_OK && total) {
    s = wk_cuda_malloc(&net->grad_arena, total);
    if (s != WK_OK)
      s = wk_no_room(s, wk_smaller_batch, "the gradients of a batch of %lld", (long long)n);
  }
  if (s == WK_OK) {
    net->grad_arena_bytes = total;
    for (size_t v = 1; v < nv; v++) {
      const int r = net->alias[v];
      net->grad[v] = p.first[r] >= 0 ? (char *)net->grad_arena + p.offset[r] : NULL;
    }
    net->grad_cap = n;
  }
  wk_place_scratch_free(&p);
  return s;
}

/* The values of a training network for a batch of n: one buffer per root
 * (vroot), held for backward. */
static wk_status wk_values_own(wk_gpu_net *net, int64_t n) {
  for (int v = 0; v < net->n_values; v++)
    if (net->vroot[v] == v)
      WK_TRY(wk_cuda_malloc(&net->val[v], (size_t)(n * net->numel[v]) * wk_esize(net)));
  for (int v = 0; v < net->n_values; v++)
    if (net->vroot[v] != v) net->val[v] = net->val[net->vroot[v]];
  return WK_OK;
}

/* The values of an inference-only network for a batch of n, in one arena
 * where those whose forward steps do not overlap share memory (mem_plan.h):
 * what a forward holds at once rather than every value. */
static wk_status wk_values_shared(wk_gpu_net *net, int64_t n) {
  const size_t nv = (size_t)net->n_values;
  wk_place_scratch p;
  WK_TRY(wk_place_scratch_make(net, &p));
  /* in inference the groups run whole (wk_infer_group), else node by node */
  const int n_groups = net->infer_own ? wk_plan_groups(net, p.groups) : 0;
  wk_status s =
      wk_value_steps(net->nodes, net->g.n_nodes, net->vroot, p.groups, n_groups, p.first, p.last);
  for (size_t v = 0; s == WK_OK && v < nv; v++) {
    const int r = net->vroot[v]; /* a root's buffer fits the largest value in it */
    const size_t b = (size_t)(n * net->numel[v]) * wk_esize(net);
    if (b > p.bytes[r]) p.bytes[r] = b;
  }
  const int n_steps = net->g.n_nodes > 0 ? net->g.n_nodes : 1;
  size_t total = 0;
  if (s == WK_OK)
    s = wk_place_buffers((int)nv, p.bytes, p.first, p.last, n_steps, 256, p.offset, &total, NULL);
  if (s == WK_OK) s = wk_cuda_malloc(&net->val_arena, total ? total : 256);
  if (s == WK_OK) {
    net->val_arena_bytes = total;
    net->vals_shared = true;
    for (size_t v = 0; v < nv; v++)
      net->val[v] = (char *)net->val_arena + p.offset[net->vroot[v]];
  }
  wk_place_scratch_free(&p);
  return s;
}

static wk_status wk_prepare_convs(wk_gpu_net *net, int64_t n, bool find, bool train);

/* Buffers for batch n (grown, never shrunk) and descriptors and algorithms
 * for it, timed when `find`; for a training forward (`train`) the
 * gradients, the backward algorithms and the fused groups' sizes too. */
static wk_status wk_prepare_batch(wk_gpu_net *net, int64_t n, bool find, bool train) {
  if (n != net->batch || n > net->cap || find != net->algos_timed ||
      (train && (!net->algos_backward || net->grad_cap < n))) {
    net->fusion_batch = 0; /* the workspace may be cut down to the convolutions' */
    WK_TRY(wk_prepare_convs(net, n, find, train));
  }
  if (train && net->fuse_groups && !net->sync_bn && net->fusion_batch != n)
    WK_TRY(wk_fusion_batch(net));
  /* as the CPU: a batchnorm that trains needs more than one value per channel (cuDNN's
   * unbiased variance would be inf), whichever path runs it */
  for (int i = 0; train && i < net->g.n_nodes; i++)
    if (net->nodes[i].op == WK_NODE_BATCHNORM && net->needs_grad[i + 1]) {
      int64_t rows;
      int c;
      double total;
      WK_TRY(wk_bn_rows(net, i, &rows, &c, &total));
    }
  return WK_OK;
}

/* wk_prepare_batch's buffers, descriptors and convolution algorithms (with
 * `train`, the gradients and the backward algorithms too). */
static wk_status wk_prepare_convs(wk_gpu_net *net, int64_t n, bool find, bool train) {
  for (int v = 0; v < net->n_values; v++) /* cuDNN's descriptors count in int */
    if (net->numel[v] > INT32_MAX / n)
      return wk_fail(WK_ERR_UNSUPPORTED, "GPU: a batch of %lld makes %s's output over 2^31 "
                     "values, more than cuDNN takes: try a smaller --batch", (long long)n,
                     v ? net->nodes[v - 1].name : "the input");
  /* a network that has trained holds every value for backward; one that has
   * only run inference shares its values' memory by the forward's steps */
  if (n > net->cap || (net->trains && net->vals_shared)) {
    wk_free_values(net);
    const wk_status vs = net->trains ? wk_values_own(net, n) : wk_values_shared(net, n);
    if (vs != WK_OK) return wk_no_room(vs, wk_smaller_batch, "a batch of %lld", (long long)n);
    /* a fused group's backward may want two values' gradients in the
     * scratch, the second 256-byte aligned (wk_fused_backward): 16-bit ones
     * fit twice in float32's room. Inference wants it only for the input and
     * the output in float32 (16 bits), and timing for any convolution's
     * output (wk_timing_buffers) */
    const bool any_value = net->trains || net->algo_mode == WK_ALGO_FIND;
    int64_t biggest = 1;
    for (int v = 0; v < net->n_values; v++)
      if (any_value || v == 0 || v == net->n_values - 1)
        biggest = net->numel[v] > biggest ? net->numel[v] : biggest;
    net->scratch_elems = (size_t)(n * biggest) *
                             (net->trains && net->fuse_groups && !wk_half(net) ? 2 : 1) +
                         (net->trains && net->fuse_groups ? 64 : 0);
    wk_status s = wk_cuda_malloc((void **)&net->scratch, net->scratch_elems * sizeof(float));
    if (s == WK_OK) s = wk_cuda_malloc((void **)&net->ones, (size_t)n * sizeof(float));
    if (s != WK_OK) return wk_no_room(s, wk_smaller_batch, "a batch of %lld", (long long)n);
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return wk_fail(WK_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < n; k++) h[k] = 1.0f;
    s = wk_cuda_copy_h2d(net->ones, h, (size_t)n * sizeof *h);
    free(h);
    WK_TRY(s);
    net->cap = n;
  }
  if (train && net->grad_cap < n) WK_TRY(wk_place_grads(net, n));
  if (find && !wk_half(net) && !net->find_dw && net->widest_w) {
    const wk_status s =
        wk_cuda_malloc((void **)&net->find_dw, (size_t)net->widest_w * sizeof(float));
    if (s != WK_OK)
      return wk_no_room(s, "try a smaller --batch or $WHISKER_CUDNN_ALGO=heuristic",
                        "%zu MiB of timing scratch", ((size_t)net->widest_w * 4) >> 20);
  }
  net->batch = 0; /* until the algorithms below are chosen */
  size_t need = 0;
  bool timed = false;
  const void *ws_before = net->workspace; /* timing (cuda_algo.c) may make it again */
  const size_t ws_bytes_before = net->workspace_bytes;
  for (int i = 0; i < net->g.n_nodes; i++) {
    const wk_node *nd = &net->nodes[i];
    wk_gnode *s = &net->gn[i];
    int h, w, c, ih, iw, ic;
    wk_gv_hwc(net, i + 1, &h, &w, &c);
    wk_gv_hwc(net, nd->in[0], &ih, &iw, &ic);
    WK_TRY(wk_nhwc_desc(s->x, wk_act_type(net), n, ih, iw, ic));
    WK_TRY(wk_nhwc_desc(s->y, wk_act_type(net), n, h, w, c));
    if (nd->op == WK_NODE_CONV) {
      int on, oc, oh, ow;
      WK_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(s->conv, s->x, s->w, &on, &oc, &oh, &ow));
      if (on != n || oc != c || oh != h || ow != w)
        return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: cuDNN's output %dx%dx%d differs from the "
                       "network's %dx%dx%d", nd->name, oh, ow, oc, h, w, c);
      const wk_status ps = wk_pick_algos(net, i, find, train, &need, &timed);
      if (net->workspace != ws_before || net->workspace_bytes != ws_bytes_before)
        wk_graph_table_invalidate(&net->graphs); /* timing made it again, even if it failed */
      WK_TRY(ps);
    }
  }
  /* timing grew the workspace to the largest candidate's: keep what the choices need */
  if (timed && net->workspace_bytes > need) WK_TRY(wk_workspace_trim(net, need));
  if (need) WK_TRY(wk_workspace(net, need));
  net->batch = n;
  net->algos_timed = find;
  net->algos_backward = train;
  return WK_OK;
}

/* ------------------------------------------------------------------ 16-bit conversions */

static wk_status wk_to_half(const wk_gpu_net *net, const float *x, int64_t n, uint16_t *y) {
  if (net->g.precision == WK_PRECISION_FP16)
    return wk_kernel_try(wk_launch_f32_to_f16(n, x, y, net->stream), "to float16");
  return wk_kernel_try(wk_launch_f32_to_bf16(n, x, y, net->stream), "to bfloat16");
}

static wk_status wk_from_half(const wk_gpu_net *net, const uint16_t *x, int64_t n, float *y,
                              bool accumulate) {
  if (net->g.precision == WK_PRECISION_FP16)
    return wk_kernel_try(wk_launch_f16_to_f32(n, x, y, accumulate, net->stream), "from float16");
  return wk_kernel_try(wk_launch_bf16_to_f32(n, x, y, accumulate, net->stream), "from bfloat16");
}

/* The 16-bit copy of the weights, made again after they changed. */
static wk_status wk_half_weights(wk_gpu_net *net) {
  if (!net->wh_stale) return WK_OK;
  WK_TRY(wk_to_half(net, net->weights, (int64_t)net->g.n_elems, net->wh));
  net->wh_stale = false;
  return WK_OK;
}

/* ------------------------------------------------------------------ own kernels, either storage */

static wk_status wk_k_act(const wk_gpu_net *net, bool relu6, int64_t len, const void *x, void *y) {
  int e;
  if (wk_half(net))
    e = wk_launch_act_forward_h(wk_hkind(net), len, relu6, x, y, net->stream);
  else
    e = relu6 ? wk_launch_relu6_forward_f32(len, x, y, net->stream)
              : wk_launch_relu_forward_f32(len, x, y, net->stream);
  return wk_kernel_try(e, "activation forward");
}

/* m: relu's output or relu6's input (the mask's source, see wk_backward_node) */
static wk_status wk_k_act_back(const wk_gpu_net *net, bool relu6, int64_t len, const void *m,
                               const void *dy, void *dx) {
  int e;
  if (wk_half(net))
    e = wk_launch_act_backward_h(wk_hkind(net), len, relu6, m, dy, dx, net->stream);
  else
    e = relu6 ? wk_launch_relu6_backward_f32(len, m, dy, dx, net->stream)
              : wk_launch_relu_backward_f32(len, m, dy, dx, net->stream);
  return wk_kernel_try(e, "activation backward");
}

static wk_status wk_k_add(const wk_gpu_net *net, int64_t len, const void *a, const void *b,
                          void *y, const char *what) {
  const int e = wk_half(net) ? wk_launch_add_h(wk_hkind(net), len, a, b, y, net->stream)
                             : wk_launch_add_forward_f32(len, a, b, y, net->stream);
  return wk_kernel_try(e, what);
}

/* Dropout forward or backward (the same mask) of node i over len elements
 * from drop's first row: the stream (seed, step) of drop, or read at
 * seed_step. */
static wk_status wk_k_dropout(const wk_gpu_net *net, int i, int64_t len,
                              const wk_gpu_dropout *drop, const uint64_t *seed_step,
                              const void *x, void *y, const char *what) {
  const wk_node *nd = &net->nodes[i];
  const int64_t offset = drop->first * net->numel[i + 1];
  const uint64_t stream_id = seed_step ? (uint64_t)i : (drop->step << 16) ^ (uint64_t)i;
  int e;
  if (wk_half(net))
    e = wk_launch_dropout_h(wk_hkind(net), len, nd->drop_p, seed_step ? 0 : drop->seed,
                            stream_id, seed_step, offset, x, y, net->stream);
  else if (seed_step)
    e = wk_launch_dropout_at_f32(len, nd->drop_p, seed_step, stream_id, offset, x, y,
                                 net->stream);
  else
    e = wk_launch_dropout_forward_f32(len, nd->drop_p, drop->seed, stream_id, offset, x, y,
                                      net->stream);
  return wk_kernel_try(e, what);
}

/* Global average pooling of node i's input (forward: x -> y) or its gradient
 * (backward: dy -> dx). */
static wk_status wk_k_gap(const wk_gpu_net *net, int i, bool forward, const void *x, void *y) {
  int ih, iw, ic;
  wk_gv_hwc(net, net->nodes[i].in[0], &ih, &iw, &ic);
  const int64_t n = net->batch, hw = (int64_t)ih * iw;
  int e;
  if (wk_half(net))
    e = wk_launch_global_avgpool_h(wk_hkind(net), forward, n, hw, ic, x, y, net->stream);
  else if (forward)
    e = wk_launch_global_avgpool_forward_f32(n, hw, ic, x, y, net->stream);
  else
    e = wk_launch_global_avgpool_backward_f32(n, hw, ic, x, y, net->stream);
  return wk_kernel_try(e, forward ? "global average pool forward"
                                  : "global average pool backward");
}

/* 16 bits: y (rows, k) += bias (float), and a bias's gradient, the column
 * sums of dy (rows, k), into db (float; the scratch holds the partial sums). */
static wk_status wk_k_bias_add(const wk_gpu_net *net, int64_t rows, int64_t k, const float *bias,
                               void *y) {
  return wk_kernel_try(wk_launch_bias_add_h(wk_hkind(net), rows, k, bias, y, net->stream),
                       "bias add");
}
static wk_status wk_k_bias_grad(const wk_gpu_net *net, int64_t rows, int64_t k, const void *dy,
                                float *db) {
  return wk_kernel_try(wk_launch_col_sum_h(wk_hkind(net), rows, k, dy, net->scratch, db,
                                           net->stream),
                       "bias gradient");
}

/* The product C (m, n) = op(A) op(B) + beta C of cuBLAS's column-major view
 * over 16-bit A and B, float32 sums (split-K's too: wk_handles' math mode);
 * C in 16 bits, or float32 with c_f32 (a weight gradient straight into the
 * arena). */
static wk_status wk_gemm_h(const wk_gpu_net *net, cublasOperation_t ta, cublasOperation_t tb,
                           int m, int n, int k, const void *a, int lda, const void *b, int ldb,
                           float beta, void *c, bool c_f32, int ldc) {
  const float one = 1.0f;
  const cudaDataType_t t = wk_blas_type(net);
  WK_CUBLAS_TRY(cublasGemmEx(net->cublas, ta, tb, m, n, k, &one, a, t, lda, b, t, ldb, &beta, c,
                             c_f32 ? CUDA_R_32F : t, ldc, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
  return WK_OK;
}

/* ------------------------------------------------------------------ forward */

static double wk_bn_eps(const wk_node *nd) {
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
static wk_store_kind wk_store(const wk_gpu_net *net) {
  return wk_half(net) ? (wk_store_kind)wk_hkind(net) : WK_STORE_F32;
}

/* Max pooling node i's geometry for the batch, for whisker's kernels
 * (train.cu: a window's first maximum wins, a NaN propagates, as on the CPU;
 * backward finds each window's maximum again from x and y, no argmax kept). */
static wk_maxpool_geom wk_maxpool_geom_of(const wk_gpu_net *net, int i) {
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
static bool wk_infer_group(const wk_gpu_net *net, int j, bool train) {
  const wk_gnode *s = &net->gn[j];
  return net->infer_own && s->fuse_bn >= 0 && !s->fuse_solo &&
         (!train || !net->needs_grad[s->fuse_bn + 1]);
}

/* cuDNN refused batchnorm i (status e, in 16 bits): whisker's kernels run it
 * from now on, and the first such refusal is noted for the graph stats. */
static void wk_bn_refused(wk_gpu_net *net, int i, cudnnStatus_t e) {
  wk_graph_table_invalidate(&net->graphs); /* captured steps run cuDNN's */
  net->gn[i].bn_own = true;
  if (!net->own_note[0] &&
      snprintf(net->own_note, sizeof net->own_note, "%s: cuDNN's batchnorm: %s",
               net->nodes[i].name, cudnnGetErrorString(e)) < 0)
    net->own_note[0] = '\0';
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
  case WK_NODE_BATCHNORM: {
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
  case WK_NODE_LINEAR: {
    const int in_f = (int)net->numel[nd->in[0]], out_f = nd->out_ch;
    /* row-major y (n, O) = x (n, I) W^T: column-major y^T = W^T' x^T (see the file head) */
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

/* *buf (capacity *cap) grown to n_bytes if smaller: pinned host memory or
 * device memory. Memory that cannot be had is no error here: *got false (and
 * no buffer) for the caller to do without; any other failure is one. Growing
 * frees first: pinned memory waits for the device there, device memory goes
 * back to the cache, which waits before handing it out again. */
static wk_status wk_grow_optional(void **buf, size_t *cap, size_t n_bytes, bool host,
                                  bool *got) {
  *got = true;
  if (n_bytes <= *cap) return WK_OK;
  if (!host) {
    WK_TRY(wk_cuda_free(*buf));
    *buf = NULL;
    *cap = 0;
    WK_TRY(wk_cuda_malloc_optional(buf, n_bytes, got));
    if (*got) *cap = n_bytes;
    return WK_OK;
  }
  if (*buf) WK_CUDA_TRY(cudaFreeHost(*buf));
  *buf = NULL;
  *cap = 0;
  void *p = NULL;
  const cudaError_t e = cudaHostAlloc(&p, n_bytes, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (e != cudaErrorMemoryAllocation)
      return wk_fail(WK_ERR_BACKEND, "CUDA: cudaHostAlloc(%zu) failed at %s:%d: %s (%s)",
                     n_bytes, __FILE__, __LINE__, cudaGetErrorName(e), cudaGetErrorString(e));
    *got = false;
    return WK_OK;
  }
  *buf = p;
  *cap = n_bytes;
  return WK_OK;
}

/* Slices of the upload: the DMA of one overlaps the host's copy of the next
 * into the staging memory, as the driver does for pageable memory. */
#define WK_UPLOAD_SLICE ((size_t)8 << 20)

/* n_bytes from host src to device dst, ahead of the work queued next on the
 * compute stream: through the pinned staging memory on the upload stream (see
 * the top of the file); straight from src on the compute stream, as pageable
 * memory, when the host cannot pin the staging memory (slower, the same bytes). */
static wk_status wk_upload(wk_gpu_net *net, void *dst, const void *src, size_t n_bytes) {
  /* every upload queued so far (a failed one's slices too) has read the
   * staging memory before it is written again */
  WK_CUDA_TRY(cudaStreamSynchronize(net->up_stream));
  bool pinned = false;
  WK_TRY(wk_grow_optional(&net->staging, &net->staging_bytes, n_bytes, true, &pinned));
  if (!pinned) {
    WK_CUDA_TRY(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyHostToDevice, net->stream));
    return WK_OK;
  }
  /* dst's previous contents may still be read by work queued on the compute stream */
  WK_CUDA_TRY(cudaEventRecord(net->up_clear, net->stream));
  WK_CUDA_TRY(cudaStreamWaitEvent(net->up_stream, net->up_clear, 0));
  for (size_t off = 0; off < n_bytes; off += WK_UPLOAD_SLICE) {
    const size_t k = n_bytes - off < WK_UPLOAD_SLICE ? n_bytes - off : WK_UPLOAD_SLICE;
    char *stage = (char *)net->staging + off;
    memcpy(stage, (const char *)src + off, k);
    WK_CUDA_TRY(cudaMemcpyAsync((char *)dst + off, stage, k, cudaMemcpyHostToDevice,
                                net->up_stream));
  }
  WK_CUDA_TRY(cudaEventRecord(net->up_done, net->up_stream));
  WK_CUDA_TRY(cudaStreamWaitEvent(net->stream, net->up_done, 0));
  return WK_OK;
}

/* Bytes of a batch of n rows as the host holds it. */
static size_t wk_input_bytes(const wk_gpu_net *net, bool u8, int64_t n) {
  return (size_t)(n * net->numel[0]) * (u8 ? 1 : sizeof(float));
}

/* Where a forward (synchronised batchnorm), a backward or a step in one call
 * queued collectives that no wait has seen run, waits for the compute stream
 * by polling with the communicator's deadline: a peer that died must not hang
 * this rank in a call that waits for the device (a copy to or from pageable
 * memory, a free, a pinning). Else nothing. Every entry point that blocks
 * calls it first. */
static wk_status wk_collectives_wait(wk_gpu_net *net) {
  if (!net->comm || !net->collectives) return WK_OK;
  WK_TRY(wk_gpucomm_wait(net->comm, net->stream, net->collectives));
  net->collectives = NULL; /* seen run: later waits need no deadline until more are queued */
  return WK_OK;
}

/* Waits for the compute stream: polled after collectives, else
 * cudaStreamSynchronize. */
static wk_status wk_stream_wait(wk_gpu_net *net) {
  if (net->comm && net->collectives) return wk_collectives_wait(net);
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  return WK_OK;
}

wk_status wk_cudanet_stage(wk_gpu_net *net, const wk_gpu_input *x, int64_t n) {
  if (n < 1 || n > (1 << 24) || !x || !x->data)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU stage: batch %lld", (long long)n);
  if (x->u8 && net->g.in_c != 3)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU stage: 8-bit input needs RGB");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  net->next_valid = false;
  const size_t bytes = wk_input_bytes(net, x->u8, n);
  /* the last staged copy has read next_host, and the compute stream next_dev */
  WK_CUDA_TRY(cudaEventSynchronize(net->next_done));
  /* growing frees and allocates, which wait for the whole device */
  if (bytes > net->next_dev_bytes || bytes > net->next_host_bytes)
    WK_TRY(wk_collectives_wait(net));
  /* no room on either side costs only the overlap: the forward uploads it */
  bool dev = false, pinned = false;
  if (bytes > net->next_dev_bytes) /* the device buffer's last reader is done */
    WK_CUDA_TRY(cudaEventSynchronize(net->next_free));
  WK_TRY(wk_grow_optional(&net->next_dev, &net->next_dev_bytes, bytes, false, &dev));
  if (!dev) return WK_OK;
  WK_TRY(wk_grow_optional(&net->next_host, &net->next_host_bytes, bytes, true, &pinned));
  if (!pinned) return WK_OK;
  memcpy(net->next_host, x->data, bytes); /* the host's share, while the device computes */
  cudaError_t e = cudaStreamWaitEvent(net->up_stream, net->next_free, 0);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(net->next_dev, net->next_host, bytes, cudaMemcpyHostToDevice,
                        net->up_stream);
  if (e == cudaSuccess) e = cudaEventRecord(net->next_done, net->up_stream);
  if (e != cudaSuccess) /* next_done may not cover a queued copy: let it finish first */
    (void)cudaStreamSynchronize(net->up_stream);
  WK_CUDA_TRY(e);
  net->next_valid = true;
  net->next_u8 = x->u8;
  net->next_n = n;
  return WK_OK;
}

/* The next batch up (wk_cudanet_stage) after a forward or a step was queued; best effort: the
 * work is queued, so a failure here must not skip its results (the next call then uploads its
 * batch, and an error that sticks shows at the synchronisation). Fails only where staging gave
 * up on a peer (its growth polled the queued work): that is the error. */
static wk_status wk_stage_queued(wk_gpu_net *net, const wk_gpu_input *next, int64_t n) {
  const wk_status staged = wk_cudanet_stage(net, next, n);
  if (staged == WK_OK) return WK_OK;
  net->next_valid = false;
  return net->comm && wk_gpucomm_broken(net->comm) ? staged : WK_OK;
}

/* n_bytes of the batch into dst on the compute stream: the staged device copy
 * when x is the batch staged last (device to device, after its DMA), else up
 * from the host. Either way nothing stays staged. */
static wk_status wk_input_to(wk_gpu_net *net, const wk_gpu_input *x, int64_t n, void *dst,
                             size_t n_bytes) {
  const bool staged = x->staged && net->next_valid && net->next_n == n && net->next_u8 == x->u8;
  net->next_valid = false;
  if (!staged) return wk_upload(net, dst, x->data, n_bytes);
  cudaError_t e = cudaStreamWaitEvent(net->stream, net->next_done, 0);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(dst, net->next_dev, n_bytes, cudaMemcpyDeviceToDevice, net->stream);
  if (e == cudaSuccess) e = cudaEventRecord(net->next_free, net->stream);
  if (e != cudaSuccess) /* next_free may not cover a queued copy: let it finish first */
    (void)cudaStreamSynchronize(net->stream);
  WK_CUDA_TRY(e);
  net->staged_used++;
  return WK_OK;
}

/* The batch into value 0: floats as they are (in 16 bits through the
 * scratch), 8-bit pixels through the u8 buffer and the normalisation kernel. */
static wk_status wk_load_input(wk_gpu_net *net, const wk_gpu_input *x, int64_t n) {
  const size_t elems = (size_t)(n * net->numel[0]);
  if (!x->u8 && !wk_half(net)) return wk_input_to(net, x, n, net->val[0], elems * sizeof(float));
  if (!x->u8) {
    WK_TRY(wk_input_to(net, x, n, net->scratch, elems * sizeof(float)));
    return wk_to_half(net, net->scratch, (int64_t)elems, net->val[0]);
  }
  if (net->g.in_c != 3) return wk_fail(WK_ERR_INVALID_ARG, "GPU forward: 8-bit input needs RGB");
  if (elems > net->u8_cap) {
    WK_TRY(wk_cuda_free(net->u8_in));
    net->u8_in = NULL;
    net->u8_cap = 0;
    WK_TRY(wk_cuda_malloc((void **)&net->u8_in, elems));
    net->u8_cap = elems;
  }
  WK_TRY(wk_input_to(net, x, n, net->u8_in, elems));
  const int e =
      wk_half(net)
          ? wk_launch_normalize_u8_h(wk_hkind(net), n, net->g.in_h, net->g.in_w, 3, net->u8_in,
                                     NULL, x->mean, x->std, net->val[0], net->stream)
          : wk_launch_normalize_u8_f32(n, net->g.in_h, net->g.in_w, 3, net->u8_in, NULL,
                                       x->mean, x->std, net->val[0], net->stream);
  return wk_kernel_try(e, "input normalisation");
}

/* The output value as float32: itself, or widened into the scratch. */
static wk_status wk_output_f32(wk_gpu_net *net, const float **out) {
  const int last = net->n_values - 1;
  *out = net->val[last];
  if (!wk_half(net)) return WK_OK;
  WK_TRY(wk_from_half(net, net->val[last], net->batch * net->numel[last], net->scratch, false));
  *out = net->scratch;
  return WK_OK;
}


/* ------------------------------------------------------------------ per-node times */

/* Adds the forward's (or backward's) run that the events hold, if any, to the
 * nodes' times: waits for its last event. */
static wk_status wk_prof_add(wk_gpu_net *net, bool fwd) {
  bool *pending = fwd ? &net->prof_fwd_pending : &net->prof_bwd_pending;
  if (!net->prof || !*pending) return WK_OK;
  *pending = false;
  cudaEvent_t *ev = fwd ? net->prof_fwd : net->prof_bwd;
  const int n = net->g.n_nodes;
  WK_CUDA_TRY(cudaEventSynchronize(ev[fwd ? n : 0]));
  for (int i = 0; i < n; i++) {
    float ms = 0.0f;
    WK_CUDA_TRY(cudaEventElapsedTime(&ms, fwd ? ev[i] : ev[i + 1], fwd ? ev[i + 1] : ev[i]));
    *(fwd ? &net->prof[i].fwd_s : &net->prof[i].bwd_s) += 1e-3 * (double)ms;
  }
  return WK_OK;
}

/* Both sets, after a wait for the stream (then the events are complete). */
static wk_status wk_prof_collect(wk_gpu_net *net) {
  WK_TRY(wk_prof_add(net, true));
  return wk_prof_add(net, false);
}

/* Records event k of the forward's (fwd) or backward's set. The first of a
 * run (forward 0, backward n_nodes) adds a run still pending there first;
 * the last (forward n_nodes, backward 0) ends it. */
static wk_status wk_prof_mark(wk_gpu_net *net, bool fwd, int k) {
  if (!net->prof) return WK_OK;
  const int n = net->g.n_nodes;
  const bool first = k == (fwd ? 0 : n), last = k == (fwd ? n : 0);
  if (first) WK_TRY(wk_prof_add(net, fwd));
  WK_CUDA_TRY(cudaEventRecord((fwd ? net->prof_fwd : net->prof_bwd)[k], net->stream));
  if (last) *(fwd ? &net->prof_fwd_pending : &net->prof_bwd_pending) = true;
  return WK_OK;
}

wk_status wk_cudanet_profile(wk_gpu_net *net) {
  if (net->prof) return WK_OK;
  WK_CUDA_TRY(cudaSetDevice(net->device));
  const size_t n = (size_t)net->g.n_nodes + 1;
  cudaEvent_t *f = calloc(n, sizeof *f), *b = calloc(n, sizeof *b);
  wk_gpu_node_time *t = calloc(n, sizeof *t);
  wk_status s = f && b && t ? WK_OK : wk_fail(WK_ERR_NOMEM, "GPU profile: out of memory");
  for (size_t i = 0; s == WK_OK && i < n; i++) {
    cudaError_t e = cudaEventCreateWithFlags(&f[i], cudaEventDefault);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&b[i], cudaEventDefault);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      s = wk_fail(WK_ERR_BACKEND, "GPU profile: cudaEventCreateWithFlags failed: %s",
                  cudaGetErrorString(e));
    }
  }
  if (s != WK_OK) {
    for (size_t i = 0; i < n; i++) {
      if (f && f[i]) (void)cudaEventDestroy(f[i]);
      if (b && b[i]) (void)cudaEventDestroy(b[i]);
    }
    free(f);
    free(b);
    free(t);
    return s;
  }
  net->prof_fwd = f;
  net->prof_bwd = b;
  net->prof = t;
  net->prof_fwd_pending = net->prof_bwd_pending = false;
  return WK_OK;
}

static const char *wk_math_tag(cudnnMathType_t m) {
  switch (m) {
  case CUDNN_TENSOR_OP_MATH: return " (tensor op)";
  case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return " (tensor op, converting)";
  case CUDNN_FMA_MATH: return " (fma)";
  default: return "";
  }
}

/* How the group headed by relu node j ran in the last profiled forward: on
 * whisker's kernel in one pass, fused by cuDNN, or node by node (NULL). */
static const char *wk_group_ran(const wk_gpu_net *net, int j) {
  if (wk_infer_group(net, j, net->prof_train)) return "whisker's kernel, one pass";
  if (net->prof_train && net->gn[j].fused) return "cuDNN fused";
  return NULL;
}

/* What ran node i in the last forward (and backward), for the profile. */
static void wk_node_note(const wk_gpu_net *net, int i, char *buf, size_t n) {
  static const char *const fwd[] = {"implicit_gemm", "implicit_precomp_gemm", "gemm", "direct",
                                    "fft", "fft_tiling", "winograd", "winograd_nonfused"};
  static const char *const bwd_data[] = {"algo_0", "algo_1", "fft", "fft_tiling", "winograd",
                                         "winograd_nonfused"};
  static const char *const bwd_filter[] = {"algo_0", "algo_1", "fft", "algo_3", "winograd",
                                           "winograd_nonfused", "fft_tiling"};
  const wk_gnode *s = &net->gn[i];
  const wk_node *nd = &net->nodes[i];
  buf[0] = '\0';
  if (nd->op == WK_NODE_CONV && net->cap > 0 && net->conv_graph) {
    int k = 0;
    static const char *const dir[4] = {"fwd", "dgrad", "wgrad", "dgrad adding"};
    for (int j = 0; j < 4 && k >= 0 && (size_t)k < n; j++)
      if (s->plan[j])
        k += snprintf(buf + k, n - (size_t)k, "%s%s engine %lld", k ? "; " : "", dir[j],
                      (long long)wk_cplan_engine(s->plan[j]));
  } else if (nd->op == WK_NODE_CONV && net->cap > 0) {
    const unsigned f = (unsigned)s->fwd_algo, d = (unsigned)s->bwd_data_algo,
                   w = (unsigned)s->bwd_filter_algo;
    int k = snprintf(buf, n, "fwd %s%s", f < 8 ? fwd[f] : "?", wk_math_tag(s->fwd_math));
    if (net->algos_backward && k > 0 && (size_t)k < n)
      snprintf(buf + k, n - (size_t)k, "; dgrad %s%s; wgrad %s%s", d < 6 ? bwd_data[d] : "?",
               wk_math_tag(s->bwd_data_math), w < 7 ? bwd_filter[w] : "?",
               wk_math_tag(s->bwd_filter_math));
  } else if ((nd->op == WK_NODE_BATCHNORM || nd->op == WK_NODE_ADD) && s->fused_into >= 0 &&
             s->fused_into != i && wk_group_ran(net, s->fused_into)) {
    snprintf(buf, n, "fused: its time is %s's", net->nodes[s->fused_into].name);
  } else if (nd->op == WK_NODE_BATCHNORM) {
    snprintf(buf, n, "%s", !net->prof_train  ? "on the running statistics"
                           : s->bn_ran_own   ? "whisker's kernels"
                           : s->fuse_solo && s->fused ? "cuDNN Ex call, NHWC"
                                                      : "cuDNN");
  } else if (nd->op == WK_NODE_MAXPOOL) {
    snprintf(buf, n, "%s", net->pool_own ? "whisker's kernels" : "cuDNN");
  } else if (nd->op == WK_NODE_ACT && s->fuse_bn >= 0 && !s->fuse_solo) {
    const char *ran = wk_group_ran(net, i);
    snprintf(buf, n, "%s%s%s", s->fuse_add >= 0 ? "batchnorm + add + relu" : "batchnorm + relu",
             ran ? ", " : ": node by node", ran ? ran : "");
  }
}

wk_status wk_cudanet_profile_read(wk_gpu_net *net, wk_gpu_node_time *out) {
  if (!out) return wk_fail(WK_ERR_INVALID_ARG, "GPU profile: no output");
  if (!net->prof) return wk_fail(WK_ERR_INVALID_ARG, "GPU profile: not turned on");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  WK_TRY(wk_collectives_wait(net)); /* with peers, the deadline first */
  WK_TRY(wk_prof_collect(net));
  for (int i = 0; i < net->g.n_nodes; i++) {
    out[i] = net->prof[i];
    wk_node_note(net, i, out[i].note, sizeof out[i].note);
  }
  return WK_OK;
}

/* Every node's forward, queued (the profile's events around each). */
static wk_status wk_forward_nodes(wk_gpu_net *net, bool train, const wk_gpu_dropout *drop,
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
  const bool half = wk_half(net);
  const float one = 1.0f, zero = 0.0f;
  /* a fused group's batchnorm and add: the group's relu did their backward
   * (wk_fused_backward), and their own gradients are neither written nor read */
  if ((nd->op == WK_NODE_BATCHNORM || nd->op == WK_NODE_ADD) && s->fused_into >= 0 &&
      !s->fuse_solo && net->gn[s->fused_into].fused)
    return WK_OK;
  if (nd->op != WK_NODE_FLATTEN && !wk_grad_add(net, v)) /* nothing reached it: zero */
    WK_CUDA_TRY(cudaMemsetAsync(net->grad[v], 0, (size_t)len * wk_esize(net), net->stream));
  switch (nd->op) {
  case WK_NODE_CONV: {
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
  case WK_NODE_BATCHNORM: {
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
  case WK_NODE_LINEAR: {
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
static wk_status wk_backward_queue(wk_gpu_net *net, const float *dy, float dloss,
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
static wk_status wk_backward_from(wk_gpu_net *net, const float *dy, float dloss) {
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

/* ------------------------------------------------------------------ the loss on the device */

/* The loss's buffers for n rows of k (grown, never shrunk). */
static wk_status wk_xent_buffers(wk_gpu_net *net, int64_t n, int64_t k) {
  if (!net->xent_sum) WK_TRY(wk_cuda_malloc((void **)&net->xent_sum, sizeof(double)));
  if (n <= net->xent_cap) return WK_OK;
  wk_graph_table_invalidate(&net->graphs); /* captured steps use the old buffers */
  void *old[4] = {net->xent_labels, net->xent_pred, net->xent_probs, net->xent_rows};
  net->xent_labels = net->xent_pred = NULL; /* gone even if a free below reports a fault */
  net->xent_probs = net->xent_rows = NULL;
  net->xent_cap = 0;
  wk_status s = WK_OK;
  for (int i = 0; i < 4; i++) {
    const wk_status f = wk_cuda_free(old[i]);
    if (s == WK_OK) s = f;
  }
  WK_TRY(s);
  s = wk_cuda_malloc((void **)&net->xent_labels, (size_t)n * sizeof(int32_t));
  if (s == WK_OK) s = wk_cuda_malloc((void **)&net->xent_pred, (size_t)n * sizeof(int32_t));
  if (s == WK_OK) s = wk_cuda_malloc((void **)&net->xent_probs, (size_t)(n * k) * sizeof(float));
  if (s == WK_OK) s = wk_cuda_malloc((void **)&net->xent_rows, (size_t)n * sizeof(float));
  if (s != WK_OK)
    return wk_no_room(s, wk_smaller_batch, "the loss of a batch of %lld", (long long)n);
  net->xent_cap = n;
  return WK_OK;
}

/* Queues the loss of the output value for the labels in xent_labels: the
 * probabilities, the rows' losses, their sum and, with `predicted`, the
 * predicted classes, all on the device. */
static wk_status wk_xent_queue(wk_gpu_net *net, double smoothing, bool predicted) {
  const int last = net->n_values - 1;
  const int64_t n = net->batch, k = net->numel[last];
  const float *logits = NULL;
  WK_TRY(wk_output_f32(net, &logits));
  WK_TRY(wk_kernel_try(wk_launch_softmax_xent_forward_f32(n, k, smoothing, logits,
                                                          net->xent_labels, net->xent_probs,
                                                          net->xent_rows, net->stream),
                       "softmax cross-entropy forward"));
  WK_TRY(wk_kernel_try(wk_launch_sum_f32(n, net->xent_rows, net->xent_sum, net->stream),
                       "loss sum"));
  if (predicted)
    WK_TRY(wk_kernel_try(wk_launch_argmax_rows_f32(n, k, net->xent_probs, net->xent_pred,
                                                   net->stream),
                         "predicted classes"));
  return WK_OK;
}

wk_status wk_cudanet_xent_forward(wk_gpu_net *net, const wk_gpu_xent *x, double *loss_sum) {
  if (!x || !x->labels || !loss_sum || !(x->smoothing >= 0.0 && x->smoothing <= 1.0))
    return wk_fail(WK_ERR_INVALID_ARG, "GPU loss: malformed request");
  if (!net->out_ready) return wk_fail(WK_ERR_INVALID_ARG, "GPU loss: no forward output to read");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  const int last = net->n_values - 1;
  const int64_t n = net->batch, k = net->numel[last];
  net->xent_ready = false;
  WK_TRY(wk_collectives_wait(net)); /* the copies below, with pageable memory, block */
  WK_TRY(wk_xent_buffers(net, n, k));
  /* pageable memory: staged by the driver before the call returns */
  WK_CUDA_TRY(cudaMemcpyAsync(net->xent_labels, x->labels, (size_t)n * sizeof(int32_t),
                              cudaMemcpyHostToDevice, net->stream));
  WK_TRY(wk_xent_queue(net, x->smoothing, x->predicted != NULL));
  if (x->predicted)
    WK_CUDA_TRY(cudaMemcpyAsync(x->predicted, net->xent_pred, (size_t)n * sizeof(int32_t),
                                cudaMemcpyDeviceToHost, net->stream));
  double sum = 0.0;
  WK_CUDA_TRY(cudaMemcpyAsync(&sum, net->xent_sum, sizeof sum, cudaMemcpyDeviceToHost,
                              net->stream));
  WK_TRY(wk_stream_wait(net));
  *loss_sum = sum;
  net->xent_smoothing = x->smoothing;
  net->xent_ready = net->last_train; /* backward needs a training forward */
  return WK_OK;
}

wk_status wk_cudanet_xent_backward(wk_gpu_net *net, float dloss) {
  if (!net->last_train || !net->xent_ready)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU backward from the loss needs a training forward "
                   "and its loss first");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  return wk_backward_from(net, NULL, dloss);
}

/* ------------------------------------------------------------------ data parallelism */

wk_status wk_cudanet_comm_unique_id(unsigned char *id) {
  return wk_gpucomm_unique_id(id, WK_GPU_COMM_ID_BYTES);
}

wk_status wk_cudanet_attach_comm(wk_gpu_net *net, const unsigned char *id, int rank, int world,
                                 const wk_gpu_buckets *b, double timeout_s, bool sync_bn) {
  if (net->comm) return wk_fail(WK_ERR_INVALID_ARG, "NCCL: a communicator is attached already");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  /* the sums' buffers before the communicator, whose creation is collective */
  if (sync_bn && net->widest_bn) WK_TRY(wk_own_bn_buffers(net));
  WK_TRY(wk_gpucomm_create(&net->g, net->device, id, rank, world, b, timeout_s, &net->comm));
  net->sync_bn = sync_bn && net->widest_bn;
  return WK_OK;
}

/* ------------------------------------------------------------------ the step on the device */

/* The device arena `which` and its length; state arrays are made (zeroed) here. */
static wk_status wk_arena(wk_gpu_net *net, wk_gpu_arena which, float **dev, size_t *n) {
  switch (which) {
  case WK_GPU_WEIGHTS: *dev = net->weights, *n = net->g.n_elems; return WK_OK;
  case WK_GPU_GRADS: *dev = net->grads, *n = net->g.n_elems; return WK_OK;
  case WK_GPU_BUFFERS: *dev = net->buf_data, *n = net->g.n_buffer_elems; return WK_OK;
  case WK_GPU_STATE0:
  case WK_GPU_STATE1: {
    float **s = &net->state[which - WK_GPU_STATE0];
    if (!*s && net->g.n_elems) {
      const wk_status a = wk_cuda_malloc((void **)s, net->g.n_elems * sizeof(float));
      /* with no batch's buffers held yet (the first step in one call makes the
       * state first), no batch size helps: the network alone is too large */
      if (a != WK_OK)
        return wk_no_room(a, net->cap > 0 ? wk_smaller_batch
                                          : "no batch size helps: a smaller model, an "
                                            "optimizer with less state, or another GPU",
                          "%zu MiB of optimizer state beside the network's weights and "
                          "gradients", (net->g.n_elems * 4) >> 20);
      WK_CUDA_TRY(cudaMemsetAsync(*s, 0, net->g.n_elems * sizeof(float), net->stream));
    }
    *dev = *s, *n = net->g.n_elems;
    return WK_OK;
  }
  }
  return wk_fail(WK_ERR_INVALID_ARG, "GPU: no arena %d", (int)which);
}

wk_status wk_cudanet_copy(wk_gpu_net *net, wk_gpu_arena which, float *host, bool to_device) {
  WK_CUDA_TRY(cudaSetDevice(net->device));
  WK_TRY(wk_collectives_wait(net)); /* the pageable copy and the synchronisation block */
  float *dev = NULL;
  size_t n = 0;
  WK_TRY(wk_arena(net, which, &dev, &n));
  if (n && !host) return wk_fail(WK_ERR_INVALID_ARG, "GPU copy: no host arena");
  if (to_device && which == WK_GPU_WEIGHTS) net->wh_stale = true;
  if (n)
    WK_CUDA_TRY(cudaMemcpyAsync(to_device ? (void *)dev : (void *)host,
                                to_device ? (const void *)host : (const void *)dev,
                                n * sizeof(float),
                                to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                net->stream));
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  return WK_OK;
}

wk_status wk_cudanet_grads_finite(wk_gpu_net *net, bool *finite) {
  WK_CUDA_TRY(cudaSetDevice(net->device));
  WK_TRY(wk_collectives_wait(net)); /* the synchronisation below blocks */
  if (!net->flag) WK_TRY(wk_cuda_malloc((void **)&net->flag, sizeof(int)));
  int bad = 0;
  WK_CUDA_TRY(cudaMemsetAsync(net->flag, 0, sizeof(int), net->stream));
  WK_TRY(wk_kernel_try(wk_launch_nonfinite_f32((int64_t)net->g.n_elems, net->grads, net->flag,
                                               net->stream),
                       "non-finite check"));
  WK_CUDA_TRY(cudaMemcpyAsync(&bad, net->flag, sizeof bad, cudaMemcpyDeviceToHost, net->stream));
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  *finite = bad == 0;
  return WK_OK;
}

wk_status wk_cudanet_scale_grads(wk_gpu_net *net, float s) {
  WK_CUDA_TRY(cudaSetDevice(net->device));
  return wk_kernel_try(wk_launch_scale_f32((int64_t)net->g.n_elems, s, net->grads, net->stream),
                       "gradient unscale");
}

/* The update's request checked: its shape, and every segment inside the arena. */
static wk_status wk_optim_check(const wk_gpu_net *net, const wk_gpu_optim *o) {
  const size_t np = net->g.n_params;
  if (!o || o->n_segments < 0 || (size_t)o->n_segments > np || (o->n_segments && !o->segs) ||
      o->n_state < 0 || o->n_state > 2 || (o->adamw && o->n_state != 2))
    return wk_fail(WK_ERR_INVALID_ARG, "GPU optimizer step: malformed request");
  for (int i = 0; i < o->n_segments; i++) {
    const wk_gpu_optim_segment *s = &o->segs[i];
    if (s->offset < 0 || s->numel < 0 || (size_t)(s->offset + s->numel) > net->g.n_elems)
      return wk_fail(WK_ERR_INVALID_ARG, "GPU optimizer step: segment %d [%lld, +%lld) outside "
                     "the arena of %zu", i, (long long)s->offset, (long long)s->numel,
                     net->g.n_elems);
  }
  return WK_OK;
}

/* The kernels' segments (wk_kernels.h) of a checked request, into dst (host). */
static void wk_optim_segments(const wk_gpu_optim *o, wk_optim_segment *dst) {
  for (int i = 0; i < o->n_segments; i++) {
    const wk_gpu_optim_segment *s = &o->segs[i];
    dst[i] = (wk_optim_segment){
        .offset = s->offset, .numel = s->numel, .neg_lr = s->neg_lr, .wd = s->wd,
        .momentum = s->momentum, .first = s->first, .decay = s->decay, .b1 = s->b1,
        .c1 = s->c1, .b2 = s->b2, .c2 = s->c2, .bc2_sqrt = s->bc2_sqrt, .eps = s->eps,
        .neg_step = s->neg_step};
  }
}

wk_status wk_cudanet_optim_step(wk_gpu_net *net, const wk_gpu_optim *o) {
  const size_t np = net->g.n_params;
  WK_TRY(wk_optim_check(net, o));
  WK_CUDA_TRY(cudaSetDevice(net->device));
  if (o->n_segments == 0) return WK_OK; /* everything frozen */
  WK_TRY(wk_collectives_wait(net)); /* the pageable copy and the synchronisation block */
  if (!net->segs_dev) /* the device's first: a failure leaves neither made */
    WK_TRY(wk_cuda_malloc((void **)&net->segs_dev, np * sizeof *net->segs_dev));
  if (!net->segs_host) {
    net->segs_host = malloc(np * sizeof *net->segs_host);
    if (!net->segs_host) return wk_fail(WK_ERR_NOMEM, "GPU optimizer step: out of memory");
  }
  wk_optim_segments(o, net->segs_host);
  WK_CUDA_TRY(cudaMemcpyAsync(net->segs_dev, net->segs_host,
                              (size_t)o->n_segments * sizeof *net->segs_dev,
                              cudaMemcpyHostToDevice, net->stream));
  float *st[2] = {NULL, NULL};
  size_t n = 0;
  for (int k = 0; k < o->n_state; k++)
    WK_TRY(wk_arena(net, (wk_gpu_arena)(WK_GPU_STATE0 + k), &st[k], &n));
  int e = o->adamw ? wk_launch_adamw_f32(o->n_segments, net->segs_dev, net->weights, net->grads,
                                         st[0], st[1], net->stream)
                   : wk_launch_sgd_f32(o->n_segments, net->segs_dev, o->nesterov, net->weights,
                                       net->grads, st[0], net->stream);
  WK_TRY(wk_kernel_try(e, o->adamw ? "AdamW step" : "SGD step"));
  net->wh_stale = true;
  /* segs_host is rewritten by the next step: the copy must be done by then */
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  return WK_OK;
}

/* ------------------------------------------------------------------ the fused step and its graphs */

/* The values a step changes, copied up before it: a captured graph's kernels
 * read them from device memory, so one graph serves every step. In the
 * pinned and the device memory the update's segments follow (n_params at
 * most); in the pinned memory the readback (wk_step_back) follows those. */
typedef struct wk_step_vals {
  uint64_t seed_step[2]; /* dropout: the seed and the step */
  double xent_scale;     /* the loss gradient's factor, dloss / batch (as wk_backward_queue) */
  float inv_scale;       /* fp16: 1 / the loss scale */
  int32_t unused;
} wk_step_vals;

typedef struct wk_step_back {
  double loss_sum;
  int32_t flag; /* nonzero: a row's loss or a gradient is NaN or infinite */
  int32_t unused;
} wk_step_back;

_Static_assert(sizeof(wk_step_vals) % 8 == 0 && sizeof(wk_optim_segment) % 8 == 0,
               "the step's values and segments are laid out back to back");

static size_t wk_vals_bytes(const wk_gpu_net *net) {
  return sizeof(wk_step_vals) + net->g.n_params * sizeof(wk_optim_segment);
}

/* Device addresses inside vals_dev. */
static const uint64_t *wk_dev_seed_step(const wk_gpu_net *net) {
  return (const uint64_t *)((const char *)net->vals_dev + offsetof(wk_step_vals, seed_step));
}
static const double *wk_dev_xent_scale(const wk_gpu_net *net) {
  return (const double *)((const char *)net->vals_dev + offsetof(wk_step_vals, xent_scale));
}
static const float *wk_dev_inv_scale(const wk_gpu_net *net) {
  return (const float *)((const char *)net->vals_dev + offsetof(wk_step_vals, inv_scale));
}
static const wk_optim_segment *wk_dev_segs(const wk_gpu_net *net) {
  return (const wk_optim_segment *)((const char *)net->vals_dev + sizeof(wk_step_vals));
}
static wk_step_back *wk_host_back(const wk_gpu_net *net) {
  return (wk_step_back *)((char *)net->vals_host + wk_vals_bytes(net));
}

/* The fused step's own memory, made at its first use (before any capture):
 * the flag, the pinned and the device copies of the step's values, and the
 * event of the copy. */
static wk_status wk_step_memory(wk_gpu_net *net) {
  if (!net->flag) WK_TRY(wk_cuda_malloc((void **)&net->flag, sizeof(int)));
  if (!net->vals_read)
    WK_CUDA_TRY(cudaEventCreateWithFlags(&net->vals_read, cudaEventDisableTiming));
  if (!net->vals_host)
    WK_CUDA_TRY(cudaHostAlloc(&net->vals_host, wk_vals_bytes(net) + sizeof(wk_step_back),
                              cudaHostAllocDefault));
  if (!net->vals_dev) WK_TRY(wk_cuda_malloc(&net->vals_dev, wk_vals_bytes(net)));
  return WK_OK;
}

/* This step's values into the pinned memory and up, queued on the stream
 * ahead of the step (outside any graph). */
static wk_status wk_step_vals_upload(wk_gpu_net *net, const wk_gpu_step *s) {
  /* the previous step's copy has read the pinned memory (an event never
   * recorded counts as done) */
  WK_CUDA_TRY(cudaEventSynchronize(net->vals_read));
  wk_step_vals *v = net->vals_host;
  *v = (wk_step_vals){.seed_step = {s->drop.seed, s->drop.step},
                      .xent_scale = (double)s->dloss / (double)s->n,
                      .inv_scale = s->inv_scale};
  wk_optim_segments(&s->optim, (wk_optim_segment *)(v + 1));
  const size_t n_bytes = sizeof *v + (size_t)s->optim.n_segments * sizeof(wk_optim_segment);
  cudaError_t e =
      cudaMemcpyAsync(net->vals_dev, net->vals_host, n_bytes, cudaMemcpyHostToDevice, net->stream);
  if (e == cudaSuccess) e = cudaEventRecord(net->vals_read, net->stream);
  if (e != cudaSuccess) /* vals_read may not cover a queued copy: let it finish first */
    (void)cudaStreamSynchronize(net->stream);
  WK_CUDA_TRY(e);
  return WK_OK;
}

/* The step's work from the uploaded batch to the end of the update, queued on
 * the stream and waited for by nothing: what a graph captures. Every value
 * that changes from step to step is read on the device (wk_step_vals); nothing
 * here allocates, touches host memory or synchronises. st: the update's state
 * arrays (o->n_state of them). */
static wk_status wk_step_queue(wk_gpu_net *net, const wk_gpu_step *s, float *const st[2]) {
  const wk_gpu_optim *o = &s->optim;
  const uint64_t *seed_step = wk_dev_seed_step(net);
  const int64_t n_elems = (int64_t)net->g.n_elems;
  /* bf16, fp16: the 16-bit weights are made inside every step, as the
   * uncaptured steps make them after every update */
  net->wh_stale = true;
  WK_TRY(wk_forward_nodes(net, true, &s->drop, seed_step));
  WK_CUDA_TRY(cudaMemsetAsync(net->flag, 0, sizeof(int), net->stream));
  WK_TRY(wk_xent_queue(net, s->xent.smoothing, s->xent.predicted != NULL));
  WK_TRY(wk_kernel_try(wk_launch_nonfinite_f32(net->batch, net->xent_rows, net->flag,
                                               net->stream),
                       "non-finite check of the loss"));
  WK_TRY(wk_backward_queue(net, NULL, 0.0f, wk_dev_xent_scale(net), seed_step));
  /* data parallelism: the ranks' mean gradients are the ones checked and used */
  if (net->comm) WK_TRY(wk_gpucomm_finish(net->comm, net->grads, net->stream));
  WK_TRY(wk_kernel_try(wk_launch_nonfinite_f32(n_elems, net->grads, net->flag, net->stream),
                       "non-finite check"));
  /* each rank checked its own loss: the update runs on every rank or on none */
  if (net->comm) WK_TRY(wk_gpucomm_any(net->comm, net->flag, net->stream, "the step's check"));
  if (s->unscale)
    WK_TRY(wk_kernel_try(wk_launch_scale_unless_f32(n_elems, wk_dev_inv_scale(net), net->flag,
                                                    net->grads, net->stream),
                         "gradient unscale"));
  if (o->n_segments == 0) return WK_OK; /* everything frozen */
  const int e = o->adamw ? wk_launch_adamw_unless_f32(o->n_segments, wk_dev_segs(net),
                                                      net->weights, net->grads, st[0], st[1],
                                                      net->flag, net->stream)
                         : wk_launch_sgd_unless_f32(o->n_segments, wk_dev_segs(net),
                                                    o->nesterov, net->weights, net->grads,
                                                    st[0], net->flag, net->stream);
  return wk_kernel_try(e, o->adamw ? "AdamW step" : "SGD step");
}

/* Captures wk_step_queue into *out. A failure ends the capture, leaves the
 * stream as it was before it (nothing queued by the capture runs) and clears
 * the runtime's error, which a capture's errors never make sticky; *fatal
 * says the stream could not be brought out of capture (then nothing more can
 * run on it). */
static wk_status wk_step_capture(wk_gpu_net *net, const wk_gpu_step *s, float *const st[2],
                                 cudaGraphExec_t *out, bool *fatal) {
  *out = NULL;
  *fatal = false;
  const cudaError_t b = cudaStreamBeginCapture(net->stream, cudaStreamCaptureModeThreadLocal);
  if (b != cudaSuccess) {
    (void)cudaGetLastError();
    return wk_fail(WK_ERR_BACKEND, "cudaStreamBeginCapture: %s (%s)", cudaGetErrorName(b),
                   cudaGetErrorString(b));
  }
  const wk_status q = wk_step_queue(net, s, st);
  char why[384] = "";
  if (q != WK_OK) snprintf(why, sizeof why, "%s", wk_last_error());
  cudaGraph_t graph = NULL;
  const cudaError_t e = cudaStreamEndCapture(net->stream, &graph);
  (void)cudaGetLastError();
  enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  const cudaError_t ce = cudaStreamIsCapturing(net->stream, &cs);
  if (ce != cudaSuccess || cs != cudaStreamCaptureStatusNone) {
    *fatal = true;
    if (graph) (void)cudaGraphDestroy(graph);
    return wk_fail(WK_ERR_BACKEND, "CUDA: the stream is still capturing after "
                   "cudaStreamEndCapture (%s)", cudaGetErrorString(ce));
  }
  if (q != WK_OK || e != cudaSuccess) {
    if (graph) (void)cudaGraphDestroy(graph);
    if (q != WK_OK) return wk_fail(WK_ERR_BACKEND, "capturing the step: %s", why);
    return wk_fail(WK_ERR_BACKEND, "cudaStreamEndCapture: %s (%s)", cudaGetErrorName(e),
                   cudaGetErrorString(e));
  }
  cudaGraphExec_t exec = NULL;
  const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
  const cudaError_t de = cudaGraphDestroy(graph); /* the executable keeps what it needs */
  if (ie != cudaSuccess || de != cudaSuccess) {
    (void)cudaGetLastError();
    if (ie == cudaSuccess) (void)cudaGraphExecDestroy(exec);
    const cudaError_t f = ie != cudaSuccess ? ie : de;
    return wk_fail(WK_ERR_BACKEND, "%s: %s (%s)", ie != cudaSuccess ? "cudaGraphInstantiate"
                   : "cudaGraphDestroy", cudaGetErrorName(f), cudaGetErrorString(f));
  }
  *out = exec;
  return WK_OK;
}

/* Turns the net's graphs off for good (freeing them), as a failed capture
 * does: `why` goes to the step's result, once, and the step runs uncaptured. */
static void wk_graphs_off(wk_gpu_net *net, wk_gpu_step_result *r, const char *why) {
  snprintf(net->graph_note, sizeof net->graph_note, "%s", why);
  r->graph_warning = net->graph_note;
  wk_graph_table_disable(&net->graphs);
}

/* Launches a captured step. A launch that fails is taken to have queued
 * nothing (CUDA's documentation implies it, not states it: were part of the
 * graph queued, the uncaptured step after it would update twice); if its
 * error is not sticky (a first cudaGetLastError clears it, a second finds
 * none: a launch short of resources, say) graphs go off and *plain asks the
 * caller to queue the step uncaptured; a sticky error (the device is lost,
 * the second call still answers it) fails the step. */
static wk_status wk_graph_launch(wk_gpu_net *net, cudaGraphExec_t exec, wk_gpu_step_result *r,
                                 bool *plain) {
  *plain = false;
  const cudaError_t e = cudaGraphLaunch(exec, net->stream);
  if (e == cudaSuccess) return WK_OK;
  (void)cudaGetLastError();
  const cudaError_t sticky = cudaGetLastError();
  if (sticky != cudaSuccess)
    return wk_fail(WK_ERR_BACKEND, "cudaGraphLaunch: %s (%s)", cudaGetErrorName(sticky),
                   cudaGetErrorString(sticky));
  char why[256];
  snprintf(why, sizeof why, "cudaGraphLaunch: %s (%s)", cudaGetErrorName(e),
           cudaGetErrorString(e));
  wk_graphs_off(net, r, why);
  *plain = true;
  return WK_OK;
}

/* The step's work, replayed, captured and launched, or queued plainly (see
 * cuda.h). *ran_plain: queued plainly at a key that warms up. */
static wk_status wk_step_run(wk_gpu_net *net, const wk_gpu_step *s, float *const st[2],
                             wk_gpu_step_result *r, wk_graph_slot **warming) {
  *warming = NULL;
  /* profiling times each node with events: the step runs uncaptured */
  if (!s->graphs || net->prof) return wk_step_queue(net, s, st);
  const wk_graph_key key = {.batch = s->n, .drop_first = s->drop.first,
                            .smoothing = s->xent.smoothing, .n_segments = s->optim.n_segments,
                            .n_state = s->optim.n_state, .adamw = s->optim.adamw,
                            .nesterov = s->optim.nesterov, .unscale = s->unscale,
                            .predicted = s->xent.predicted != NULL};
  wk_graph_slot *slot = NULL;
  const wk_graph_action a = wk_graph_table_lookup(&net->graphs, &key, &slot);
  bool plain = false;
  if (a == WK_GRAPH_REPLAY) {
    WK_TRY(wk_graph_launch(net, (cudaGraphExec_t)slot->exec, r, &plain));
    if (!plain) {
      wk_graph_table_replayed(&net->graphs, slot);
      return WK_OK;
    }
  } else if (a == WK_GRAPH_CAPTURE) {
    cudaGraphExec_t exec = NULL;
    bool fatal = false;
    const wk_status c = wk_step_capture(net, s, st, &exec, &fatal);
    if (fatal) return c;
    if (c == WK_OK) {
      wk_graph_table_captured(&net->graphs, slot, exec);
      WK_TRY(wk_graph_launch(net, exec, r, &plain));
      if (!plain) return WK_OK;
    } else {
      wk_graphs_off(net, r, wk_last_error());
    }
  } else {
    *warming = slot;
  }
  return wk_step_queue(net, s, st);
}

wk_status wk_cudanet_train_step(wk_gpu_net *net, const wk_gpu_step *s, wk_gpu_step_result *r) {
  if (!s || !r || s->n < 1 || s->n > (1 << 24) || !s->in.data || !s->xent.labels ||
      !(s->xent.smoothing >= 0.0 && s->xent.smoothing <= 1.0))
    return wk_fail(WK_ERR_INVALID_ARG, "GPU step: malformed request");
  *r = (wk_gpu_step_result){0};
  WK_TRY(wk_optim_check(net, &s->optim));
  if (net->comm && s->graphs)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU step: no CUDA graphs with data parallelism (NCCL)");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  const int last = net->n_values - 1;
  const int64_t n = s->n;
  net->out_ready = false;
  net->xent_ready = false;
  net->last_train = false; /* an earlier forward's values are overwritten below */
  net->trains = true;
  WK_TRY(wk_collectives_wait(net)); /* an earlier forward's, not waited for yet */
  /* what the work needs, made or grown outside any capture (moving a buffer
   * frees the graphs that used it) */
  WK_TRY(wk_prepare_batch(net, n, net->algo_mode != WK_ALGO_HEURISTIC, true));
  WK_TRY(wk_xent_buffers(net, n, net->numel[last]));
  WK_TRY(wk_step_memory(net));
  float *st[2] = {NULL, NULL};
  size_t n_state_elems = 0;
  for (int k = 0; k < s->optim.n_state; k++)
    WK_TRY(wk_arena(net, (wk_gpu_arena)(WK_GPU_STATE0 + k), &st[k], &n_state_elems));
  /* what it reads, up before it */
  WK_TRY(wk_load_input(net, &s->in, n));
  /* pageable memory: staged by the driver before the call returns */
  WK_CUDA_TRY(cudaMemcpyAsync(net->xent_labels, s->xent.labels, (size_t)n * sizeof(int32_t),
                              cudaMemcpyHostToDevice, net->stream));
  WK_TRY(wk_step_vals_upload(net, s));
  net->drop = s->drop; /* backward's dropout reads its first sample */
  net->xent_smoothing = s->xent.smoothing;
  wk_graph_slot *warming = NULL;
  net->collectives = NULL;
  const wk_status run = wk_step_run(net, s, st, r, &warming);
  /* the gradients' all-reduce and the check's, after synchronised batchnorm's */
  if (net->comm) net->collectives = "the training step";
  /* the captured conversion marked the 16-bit weights current, but the step
   * may have failed after the update changed the weights: make them again */
  net->wh_stale = true;
  WK_TRY(run);
  /* the next batch up while the step computes (its update included) */
  if (s->next) WK_TRY(wk_stage_queued(net, s->next, s->next_n));
  /* with peers, the wait for the step polls with the communicator's deadline,
   * before the copies below wait without one */
  if (net->comm) {
    WK_TRY(wk_gpucomm_wait(net->comm, net->stream, "the training step"));
    net->collectives = NULL;
  }
  /* what comes back, after it */
  wk_step_back *back = wk_host_back(net);
  if (s->xent.predicted)
    WK_CUDA_TRY(cudaMemcpyAsync(s->xent.predicted, net->xent_pred, (size_t)n * sizeof(int32_t),
                                cudaMemcpyDeviceToHost, net->stream));
  WK_CUDA_TRY(cudaMemcpyAsync(&back->loss_sum, net->xent_sum, sizeof back->loss_sum,
                              cudaMemcpyDeviceToHost, net->stream));
  WK_CUDA_TRY(cudaMemcpyAsync(&back->flag, net->flag, sizeof back->flag,
                              cudaMemcpyDeviceToHost, net->stream));
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  if (warming) wk_graph_table_ran_plain(&net->graphs, warming);
  WK_TRY(wk_prof_collect(net));
  r->loss_sum = back->loss_sum;
  r->applied = back->flag == 0;
  net->last_train = false; /* backward has consumed the forward */
  net->out_ready = true;
  return WK_OK;
}

wk_status wk_cudanet_graph_stats(wk_gpu_net *net, wk_gpu_graph_stats *out) {
  if (!out) return wk_fail(WK_ERR_INVALID_ARG, "GPU graph stats: no output");
  *out = (wk_gpu_graph_stats){.captured = net->graphs.captured,
                              .replayed = net->graphs.replayed,
                              .invalidations = net->graphs.invalidations,
                              .off = net->graphs.off, .staged = net->staged_used,
                              .bn_fuse_groups = net->fuse_groups,
                              .bn_solo_groups = net->fuse_solos,
                              .bn_fused_runs = net->fused_runs,
                              .bn_own_runs = net->own_runs,
                              .bn_infer_fused_runs = net->infer_fused_runs};
  for (int j = 0; j < net->g.n_nodes; j++) {
    const wk_gnode *s = &net->gn[j];
    out->bn_fuse_refused += s->fuse_bn >= 0 && (s->fuse_off || s->fuse_skip || net->sync_bn ||
                                                net->gn[s->fuse_bn].bn_own);
  }
  out->values_shared = net->vals_shared;
  out->value_bytes = net->val_arena_bytes;
  for (int v = 0; !net->vals_shared && net->cap > 0 && v < net->n_values; v++)
    if (net->vroot[v] == v) out->value_bytes += (size_t)(net->cap * net->numel[v]) * wk_esize(net);
  snprintf(out->bn_fuse_note, sizeof out->bn_fuse_note, "%s", net->fuse_note);
  snprintf(out->bn_own_note, sizeof out->bn_own_note, "%s", net->own_note);
  return WK_OK;
}
