/* cuda_net_impl.h - the private parts of a GPU network, shared by its files
 * (cuda_net.c, which describes the design, and cuda_net_*.c): the network's
 * and its nodes' structures, small accessors, and the functions one file
 * gives the others. Nothing outside src/cuda/cuda_net*.c includes it; the
 * plugin's table (cuda_plugin.c) reaches a network through cuda_backend.h.
 *
 * cuDNN 9 marks the descriptor API these files use deprecated in favour of
 * its graph API; it is supported throughout 9.x, and the warnings are
 * silenced for the files that include this header. */
#ifndef WK_CUDA_NET_IMPL_H
#define WK_CUDA_NET_IMPL_H

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* ------------------------------------------------------------------ accessors */

static inline bool wk_trainable(const wk_gpu_net *net, int p) {
  return p >= 0 && !(net->params[p].flags & WK_PARAM_FROZEN);
}
static inline float *wk_pw(const wk_gpu_net *net, int p) {
  return p >= 0 ? net->weights + net->params[p].offset : NULL;
}
static inline float *wk_pg(const wk_gpu_net *net, int p) {
  return p >= 0 ? net->grads + net->params[p].offset : NULL;
}
static inline float *wk_bufp(const wk_gpu_net *net, int b) {
  return net->buf_data + net->buffers[b].offset;
}
/* bf16 and fp16: values and their gradients in 16 bits (cuda_net.c's top). */
static inline bool wk_half(const wk_gpu_net *net) {
  return net->g.precision == WK_PRECISION_BF16 || net->g.precision == WK_PRECISION_FP16;
}
static inline wk_half_kind wk_hkind(const wk_gpu_net *net) {
  return net->g.precision == WK_PRECISION_FP16 ? WK_HALF_F16 : WK_HALF_BF16;
}
/* The values' type for cuDNN, and their bytes per element. */
static inline cudnnDataType_t wk_act_type(const wk_gpu_net *net) {
  if (!wk_half(net)) return CUDNN_DATA_FLOAT;
  return net->g.precision == WK_PRECISION_FP16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}
static inline size_t wk_esize(const wk_gpu_net *net) { return wk_half(net) ? 2 : sizeof(float); }
static inline cudaDataType_t wk_blas_type(const wk_gpu_net *net) {
  return net->g.precision == WK_PRECISION_FP16 ? CUDA_R_16F : CUDA_R_16BF;
}
/* A convolution's or linear layer's weights as it reads them: the 16-bit copy
 * with bf16 and fp16 (wk_half_weights makes it current). */
static inline void *wk_cw(const wk_gpu_net *net, int p) {
  if (!wk_half(net)) return wk_pw(net, p);
  return net->wh + net->params[p].offset;
}
/* The convolutions' math type before a ranking: FMA (no TF32) for fp32, the
 * default (TF32 tensor cores allowed) for tf32, tensor-op math for bf16 and
 * fp16. The default math does not let cuDNN 9's legacy API use tensor cores
 * on 16-bit data: on an H100 it ran bf16 convolutions as float32 FMA kernels
 * behind layout and type conversions, and backward-data as a direct kernel:
 * 71-83 times slower than PyTorch's bf16 step (docs/gpu/h100-2026-11-23.md). */
static inline cudnnMathType_t wk_conv_math(const wk_gpu_net *net) {
  if (net->g.precision == WK_PRECISION_FP32) return CUDNN_FMA_MATH;
  return wk_half(net) ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH;
}

/* ---- cuda_net.c: creation and shared helpers */
wk_status wk_kernel_try(int e, const char *what);
void wk_gv_hwc(const wk_gpu_net *net, int v, int *h, int *w, int *c);
wk_status wk_nhwc_desc(cudnnTensorDescriptor_t d, cudnnDataType_t t, int64_t n, int h, int w,
                       int c);
wk_status wk_no_room(wk_status s, const char *advice, const char *fmt, ...) WK_PRINTF(3, 4);
extern const char wk_smaller_batch[];
wk_status wk_cudnn_failed(cudnnStatus_t e, const char *fmt, ...) WK_PRINTF(2, 3);
wk_status wk_regrow(wk_gpu_net *net, void **buf, size_t *cap, size_t bytes);
wk_status wk_workspace(wk_gpu_net *net, size_t bytes);
wk_status wk_workspace_trim(wk_gpu_net *net, size_t bytes);
wk_status wk_own_bn_buffers(wk_gpu_net *net);
void wk_free_grads(wk_gpu_net *net);
void wk_free_values(wk_gpu_net *net);

/* ---- cuda_net_batch.c: per batch size */
wk_status wk_plan_run(wk_gpu_net *net, int i, int k, void *x, void *w, void *y);
wk_status wk_conv_answered(wk_gpu_net *net, int i, wk_conv_dir d, cudnnStatus_t e, bool *again);
cudnnBatchNormOps_t wk_fuse_ops(const wk_gnode *s);
cudnnActivationDescriptor_t wk_fuse_act(const wk_gpu_net *net, const wk_gnode *s);
void wk_fuse_note(wk_gpu_net *net, int j, const char *why);
wk_status wk_bn_rows(const wk_gpu_net *net, int i, int64_t *rows, int *c, double *total);
wk_status wk_prepare_batch(wk_gpu_net *net, int64_t n, bool find, bool train);

/* ---- cuda_net_ops.c: 16-bit conversions, own kernels, cuBLAS */
wk_status wk_to_half(const wk_gpu_net *net, const float *x, int64_t n, uint16_t *y);
wk_status wk_from_half(const wk_gpu_net *net, const uint16_t *x, int64_t n, float *y,
                       bool accumulate);
wk_status wk_half_weights(wk_gpu_net *net);
wk_status wk_k_act(const wk_gpu_net *net, bool relu6, int64_t len, const void *x, void *y);
wk_status wk_k_act_back(const wk_gpu_net *net, bool relu6, int64_t len, const void *m,
                        const void *dy, void *dx);
wk_status wk_k_add(const wk_gpu_net *net, int64_t len, const void *a, const void *b, void *y,
                   const char *what);
wk_status wk_k_dropout(const wk_gpu_net *net, int i, int64_t len, const wk_gpu_dropout *drop,
                       const uint64_t *seed_step, const void *x, void *y, const char *what);
wk_status wk_k_gap(const wk_gpu_net *net, int i, bool forward, const void *x, void *y);
wk_status wk_k_bias_add(const wk_gpu_net *net, int64_t rows, int64_t k, const float *bias, void *y);
wk_status wk_k_bias_grad(const wk_gpu_net *net, int64_t rows, int64_t k, const void *dy, float *db);
wk_status wk_gemm_h(const wk_gpu_net *net, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, const void *a, int lda, const void *b, int ldb, float beta, void *c,
                    bool c_f32, int ldc);

/* ---- cuda_net_fwd.c: forward */
double wk_bn_eps(const wk_node *nd);
wk_store_kind wk_store(const wk_gpu_net *net);
wk_maxpool_geom wk_maxpool_geom_of(const wk_gpu_net *net, int i);
bool wk_infer_group(const wk_gpu_net *net, int j, bool train);
void wk_bn_refused(wk_gpu_net *net, int i, cudnnStatus_t e);
wk_status wk_forward_nodes(wk_gpu_net *net, bool train, const wk_gpu_dropout *drop,
                           const uint64_t *seed_step);

/* ---- cuda_net_input.c: input and output */
wk_status wk_collectives_wait(wk_gpu_net *net);
wk_status wk_stream_wait(wk_gpu_net *net);
wk_status wk_stage_queued(wk_gpu_net *net, const wk_gpu_input *next, int64_t n);
wk_status wk_load_input(wk_gpu_net *net, const wk_gpu_input *x, int64_t n);
wk_status wk_output_f32(wk_gpu_net *net, const float **out);

/* ---- cuda_net_prof.c: per-node times */
wk_status wk_prof_collect(wk_gpu_net *net);
wk_status wk_prof_mark(wk_gpu_net *net, bool fwd, int k);

/* ---- cuda_net_bwd.c: backward */
wk_status wk_backward_queue(wk_gpu_net *net, const float *dy, float dloss, const double *scale_dev,
                            const uint64_t *seed_step);
wk_status wk_backward_from(wk_gpu_net *net, const float *dy, float dloss);

#endif /* WK_CUDA_NET_IMPL_H */
