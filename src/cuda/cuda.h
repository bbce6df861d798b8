/* cuda.h - what the rest of whisker may ask about the GPU backend, whether or not
 * it was built. No CUDA types: any C file can include this.
 *
 * Built with the toolkit, cuDNN and NCCL, these are implemented by
 * cuda_backend.c; otherwise by cuda_none.c, which reports no backend and no
 * devices. None of these functions aborts or exits when there is no driver or no
 * device: that is an answer (0 devices), not an error. */
#ifndef WK_CUDA_H
#define WK_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "cuda/dev_cache.h"
#include "nn/net.h"

/* True when this build contains the CUDA backend. */
bool wk_cuda_compiled(void);

/* Number of usable CUDA devices; 0 when the backend is not built, when there is
 * no driver (or one too old for the runtime), or when there is no device. */
int wk_cuda_device_count(void);

/* Writes a human-readable, multi-line description of the backend into buf (n
 * bytes, always NUL-terminated when n > 0): whether it is built, the CUDA runtime
 * and driver versions, the cuDNN, cuBLAS and NCCL versions, and one line per
 * device (name, compute capability, memory) or a "no CUDA device" line. A failing
 * version or device query is described in the text, not returned.
 * Returns WK_ERR_INVALID_ARG for a NULL or empty buffer and WK_ERR_LIMIT when the
 * text did not fit (buf then holds as much as fitted). */
wk_status wk_cuda_describe(char *buf, size_t n);

/* ------------------------------------------------------------------ convolution algorithms
 * Which cuDNN algorithm runs each direction of a convolution (forward,
 * backward-data, backward-filter) is chosen per shape, either by cuDNN's
 * heuristics or by timing every candidate once (cudnnFind*AlgorithmEx) and
 * taking the fastest; cuda_algo.c in the plugin has the details. Timed
 * choices are kept in a wk_gpu_algos that the networks of one context share
 * (core/context.h: wk_ctx.gpu_algos, made by wk_net_use_gpu), so a second
 * network, or a batch size seen before, does not time again.
 *
 * $WHISKER_CUDNN_ALGO: unset (or empty), networks that train time and those
 * that only infer take the heuristics; "find" times for every network;
 * "heuristic" never times. Timing can choose differently from one process to
 * the next between algorithms of about the same speed, and different
 * algorithms round differently: runs that must agree across processes (to the
 * last bits) want "heuristic".
 *
 * $WHISKER_CUDNN_API: "legacy" (unset or empty: the default) runs the
 * convolutions through cuDNN's legacy calls as above; "graph" through its
 * backend (graph) API, engine configurations instead of algorithms, chosen
 * and timed the same way (conv_graph.c in the plugin; the timed choices are
 * kept in the same wk_gpu_algos). Not yet run on a GPU. */
typedef struct wk_gpu_algos wk_gpu_algos;

typedef struct wk_gpu_algo_stats {
  int64_t timed;     /* (shape, direction) pairs timed and kept */
  int64_t reused;    /* choices taken from the cache instead of timing again */
  int64_t fell_back; /* timings that could not run (unsupported, no device memory for
                      * their workspace): the heuristics' choice was used, and kept
                      * for the shape (counted in reused when it comes back) */
  int64_t refused;   /* heuristic entries passed over: cuDNN's workspace query refused
                      * the algorithm, or asked for more than the limit */
  int64_t exec_refused; /* chosen algorithms cuDNN refused when called although the query
                         * accepted them: passed over from then on for that convolution
                         * and direction, the heuristics' next choice taken instead */
} wk_gpu_algo_stats;

/* An empty cache (host memory only: no device is touched). */
wk_status wk_gpu_algos_create(wk_gpu_algos **out);
/* Frees it; NULL is a no-op. The networks that use it must be gone. */
void wk_gpu_algos_destroy(wk_gpu_algos *a);
/* What the cache has done so far. */
wk_status wk_gpu_algos_stats(wk_gpu_algos *a, wk_gpu_algo_stats *out);

/* ------------------------------------------------------------------ networks on a GPU
 * A network's graph executed on one device (cuda_net.c in the plugin): cuDNN
 * convolutions (forward, backward-data, backward-filter), batchnorm and
 * pooling in NHWC, cuBLAS for linear layers, whisker's kernels for the rest.
 * The device keeps the weights, gradients, batchnorm buffers and every value
 * of the last training forward. The host keeps the network (nn/net.h): upload
 * the weights after they change, download the gradients (and buffers) after
 * backward, or run the optimizer on the device too (below) and download only
 * when the host needs them. Float32 throughout unless the precision says
 * otherwise (nn/net.h: tf32, bf16, fp16). */
typedef struct wk_gpu_graph {
  int in_h, in_w, in_c;
  wk_precision precision;            /* fp32, tf32, bf16 or fp16 (nn/net.h) */
  int n_nodes;
  const wk_node *nodes;              /* value i + 1 is node i's output; value 0 the input */
  size_t n_params, n_elems;          /* parameter table and arena length */
  const wk_param *params;
  size_t n_buffers, n_buffer_elems;  /* batchnorm running statistics */
  const wk_param *buffers;
  wk_gpu_algos *algos;               /* timed convolution algorithms to share (above); NULL:
                                      * the network keeps its own */
} wk_gpu_graph;

typedef struct wk_gpu_net wk_gpu_net;

/* Builds the executor on `device`. Fails with WK_ERR_UNSUPPORTED (and why)
 * for a graph the GPU path cannot run (asymmetric padding, a dilated pool),
 * and with WK_ERR_INVALID_ARG for a malformed $WHISKER_GPU_WORKSPACE_MB,
 * $WHISKER_CUDNN_ALGO, $WHISKER_CUDNN_API, $WHISKER_CUDNN_DETERMINISTIC, $WHISKER_BN_FUSE,
 * $WHISKER_GPU_OWN_BN, $WHISKER_GPU_POOL or $WHISKER_GPU_INFER_BN (all read
 * here). g->algos,
 * when given, must outlive the network.
 *
 * $WHISKER_BN_FUSE: in a training forward, a batchnorm whose output only a
 * relu reads (or only an add, whose output only a relu reads) runs with it as
 * one cuDNN call (cudnnBatchNormalizationForwardTrainingEx, and its backward):
 * the batchnorm's and the add's outputs are never written nor read again.
 * "groups": in every precision (on an H100 a ResNet-18 fp32 step ran 2.5
 * times faster fused: cuDNN's plain batchnorm runs NCHW kernels on NHWC
 * data). Unset, "auto", "1" or "all" (the default): as "groups", and every
 * other training batchnorm (ResNet's downsample ones) alone through the same
 * Ex calls with CUDNN_BATCHNORM_OPS_BN, for their NHWC kernels (PyTorch's
 * channels_last batchnorm; the default since 2026-11-23, not yet run on a
 * GPU: on the first H100 run three such batchnorms on the plain calls took
 * a third of a bf16 ResNet-18 step; wk_gpu_graph_stats's bn_solo_groups
 * counts them among the groups). "0": never. A group cuDNN refuses runs
 * unfused (wk_gpu_net_graph_stats says which and why), and so does every
 * group when $WHISKER_GPU_WORKSPACE_MB is 0 (a fused call needs some
 * workspace: given none, cuDNN's Ex calls act as the plain batchnorm).
 *
 * $WHISKER_CUDNN_DETERMINISTIC=1: only convolution algorithms cuDNN calls
 * deterministic (PyTorch's cudnn.deterministic): a step computes the same bits
 * every time, also the backward ones that would add with atomics.
 *
 * $WHISKER_GPU_OWN_BN=1: every batchnorm runs on whisker's kernels
 * (kernels/syncbn.cu) instead of cuDNN's, as one does from the first time
 * cuDNN refuses it in 16 bits (CUDNN_STATUS_NOT_SUPPORTED).
 *
 * $WHISKER_GPU_POOL: "own" (unset: the default) runs max pooling on
 * whisker's NHWC kernels (kernels/train.cu: the CPU's semantics bit for bit,
 * a backward with no argmax kept); "cudnn": cuDNN's pooling calls (as
 * before; to compare: not yet timed on a GPU). Average pooling is cuDNN's.
 *
 * $WHISKER_GPU_INFER_BN: "own" (unset: the default) runs every batchnorm that
 * normalises with its running statistics (inference, a frozen one in
 * training) on whisker's NHWC kernel, and such a fused group's relu(bn(x) [+
 * z]) whole at its relu, in one pass over memory (the nodes one by one take
 * three); "cudnn": cuDNN's batchnorm inference, the nodes one by one (as
 * before; to compare: not yet timed on a GPU). */
wk_status wk_gpu_net_create(const wk_gpu_graph *g, int device, wk_gpu_net **out);
void wk_gpu_net_destroy(wk_gpu_net *net);
/* The parameter table again (n_params entries, the same layout): takes the
 * frozen flags (fine-tuning freezes and unfreezes layers). */
wk_status wk_gpu_net_set_params(wk_gpu_net *net, const wk_param *params);
/* Where a training forward's dropout masks come from, as on the CPU (nn/exec.c):
 * the stream (seed, step) and, in data-parallel training, the batch's first
 * sample within the global batch. */
typedef struct wk_gpu_dropout {
  uint64_t seed, step;
  int64_t first;
} wk_gpu_dropout;

/* A batch for the network: (n, in_h, in_w, in_c) host floats, or 8-bit
 * pixels (in_c 3) normalised on the device with mean and std as ops/ops.h's
 * wk_normalize_u8_ref does (a quarter of the bytes to move). */
typedef struct wk_gpu_input {
  const void *data;
  bool u8;
  float mean[3], std[3]; /* u8 only */
  bool staged; /* this batch was given to wk_gpu_net_stage before: use its device copy */
  /* a forward's only: the batch after this one (next_n rows) or NULL, staged as by
   * wk_gpu_net_stage once this forward's work is queued, before its output comes back */
  const struct wk_gpu_input *next;
  int64_t next_n;
} wk_gpu_input;

/* The next batch up ahead (pinned host memory, a copy stream of its own) while
 * the work queued now computes: the host's copy into the pinned memory runs
 * here, the DMA behind it, and both overlap the device's work. The next
 * forward or step given the same batch (x->staged) takes the device copy
 * instead of uploading; any other forward drops it. x's memory must not change
 * in between (the caller's promise: the copy may be taken at any time). Where
 * the host cannot pin the memory, or the device has no room for the copy,
 * nothing is staged and the batch goes up as usual, at its forward. */
wk_status wk_gpu_net_stage(wk_gpu_net *net, const wk_gpu_input *x, int64_t n);

/* out (n, F) host floats, or NULL: the output stays on the device only (for
 * the loss there, below) and the call returns without waiting for the device
 * (a fault then shows at the next call that does). Training mode uses batch
 * statistics (updating the running ones on the device) and dropout masks as
 * the CPU does. */
wk_status wk_gpu_net_forward(wk_gpu_net *net, const wk_gpu_input *x, int64_t n, bool train,
                             const wk_gpu_dropout *drop, float *out);
/* dy (n, F) host floats for the last training forward; the gradients stay on
 * the device (wk_gpu_net_copy brings them). With a communicator attached (below) they
 * are the mean over the ranks when this returns. */
wk_status wk_gpu_net_backward(wk_gpu_net *net, const float *dy);

/* ------------------------------------------------------------------ the loss on the device
 * Softmax cross-entropy with label smoothing (kernels/train.cu; ops/ops.h's
 * wk_softmax_xent_forward and _backward on the host) over the output (n, k)
 * of the last forward, which then need not cross to the host (out NULL
 * above); its gradient is written straight into the output's gradient buffer
 * by backward. Per step the labels go up, and the loss sum and, when asked,
 * the predicted classes come back. */
typedef struct wk_gpu_xent {
  const int32_t *labels; /* (n) host, each in [0, k): the caller checks (a label
                          * outside makes its row's loss, hence the sum, NaN) */
  double smoothing;      /* [0, 1] */
  int32_t *predicted;    /* (n) host, or NULL: each row's most probable class
                          * (wk_launch_argmax_rows_f32 over the probabilities) */
} wk_gpu_xent;
/* *loss_sum: the rows' losses, each rounded to float, summed in double
 * (wk_launch_sum_f32's fixed tree); within ~1e-7 relative of the host's sum.
 * The probabilities and labels stay on the device for the next function. */
wk_status wk_gpu_net_xent_forward(wk_gpu_net *net, const wk_gpu_xent *x, double *loss_sum);
/* wk_gpu_net_backward with the output gradient made on the device from the
 * loss of the last training forward (xent_forward must have run after it):
 * dy[i, j] = (float)((double)dloss / n * (probs[i, j] - q[i, j])), bit for bit
 * wk_softmax_xent_backward_ref_f32 with that dloss on the same probabilities. */
wk_status wk_gpu_net_xent_backward(wk_gpu_net *net, float dloss);

/* ------------------------------------------------------------------ the step on the device
 * The optimizer can run where the gradients are (train/trainer.c does so for a
 * network on a GPU): the weights, the gradients, the batchnorm statistics and
 * the optimizer's state then stay on the device between steps, and the host
 * copies them only when it needs them (a checkpoint, a saved model). */
typedef enum {
  WK_GPU_WEIGHTS, WK_GPU_BUFFERS, WK_GPU_GRADS,
  WK_GPU_STATE0, WK_GPU_STATE1 /* the optimizer's state arrays (n_elems each), made on first use */
} wk_gpu_arena;
/* One arena between host (n_elems or n_buffer_elems floats) and device:
 * uploads after the host changed weights or statistics, downloads of the
 * gradients and statistics after backward (or when the host reads them). */
wk_status wk_gpu_net_copy(wk_gpu_net *net, wk_gpu_arena which, float *host, bool to_device);
/* *finite: no NaN or infinity in the gradient arena. */
wk_status wk_gpu_net_grads_finite(wk_gpu_net *net, bool *finite);
/* The gradient arena times s (undoing fp16's loss scale), queued on the stream. */
wk_status wk_gpu_net_scale_grads(wk_gpu_net *net, float s);

/* One parameter's update at one step, as train/optim_step.c computes it on
 * the host (wk_optim_step_segments): elements [offset, offset + numel) of the
 * arenas, and the step's float factors. */
typedef struct wk_gpu_optim_segment {
  int64_t offset, numel;
  float neg_lr, wd, momentum; /* SGD */
  bool first;                 /* SGD: the momentum buffer starts as the update */
  float decay, b1, c1, b2, c2, bc2_sqrt, eps, neg_step; /* AdamW */
} wk_gpu_optim_segment;
typedef struct wk_gpu_optim {
  bool adamw, nesterov;
  int n_state; /* state arrays: 0 (SGD without momentum), 1 (SGD), 2 (AdamW) */
  int n_segments;
  const wk_gpu_optim_segment *segs;
} wk_gpu_optim;
/* The update on the device: weights and state from the gradient arena, bit for
 * bit the host's wk_optim_step (kernels/train.cu). */
wk_status wk_gpu_net_optim_step(wk_gpu_net *net, const wk_gpu_optim *o);

/* ------------------------------------------------------------------ the whole step in one call
 * The trainer's step on the device (the loss there, no clipping;
 * train/trainer.c, unless $WHISKER_GPU_FUSED_STEP=0 asks for the stepwise
 * calls above) is one call with no host synchronisation between the batch's
 * upload and the end of the update, so the device runs the whole step without
 * waiting for the host: a training forward, the loss, backward from its
 * gradient (with a communicator, all-reduced over the ranks), the non-finite
 * check of the rows' losses and of the gradients into a flag on the device
 * (with a communicator, summed over the ranks, so that every rank decides
 * alike), and, unless the flag is set, fp16's unscale and the update
 * (kernels gated by the flag: the host decides nothing in between). Only the
 * loss sum, the flag and the predicted classes come back, after the work.
 *
 * With `graphs` ($WHISKER_CUDA_GRAPH=1, read by the trainer at every step;
 * off by default until it has been verified on a GPU) that work is captured
 * as a CUDA graph (cudaStreamBeginCapture, thread-local
 * mode) once a key (batch size, label smoothing, dropout's first sample, the
 * update's kind and parameter count, fp16's unscale) has run WK_GRAPH_WARMUP
 * (2) steps uncaptured with no device buffer moving (graph_table.h; the
 * convolution algorithms are chosen, every buffer allocated, cuDNN and cuBLAS
 * set up), and replayed from then on; a few keys are kept (a run's full and
 * last batches). Each step's values reach the graph through device memory
 * written before the launch from pinned memory (dropout's seed and step, the
 * loss gradient's factor dloss / batch, fp16's 1 / scale, the update's
 * per-parameter factors); the batch and the labels go up before it as in any
 * step. The kernels are those of the uncaptured step, with the same
 * arguments: a replay computes the same bits as the same step uncaptured
 * (with algorithms that are deterministic run to run). A buffer that moves
 * (a larger batch, the convolution workspace resized) or a change of the
 * frozen parameters frees every graph; the key warms up again. A capture,
 * instantiation or launch that fails with an error that is not sticky ends
 * the capture, clears the error, and the network runs that step and every
 * later one uncaptured (the same kernels); wk_gpu_step_result.graph_warning
 * says why, once. A sticky error fails the step. */
typedef struct wk_gpu_step {
  wk_gpu_input in;    /* the batch, (n, in_h, in_w, in_c) */
  int64_t n;
  wk_gpu_dropout drop;
  wk_gpu_xent xent;   /* labels (checked by the caller), smoothing, predicted (or NULL) */
  float dloss;        /* the loss gradient's factor: 1, or fp16's loss scale */
  bool unscale;       /* fp16: the gradients times inv_scale after the check */
  float inv_scale;
  wk_gpu_optim optim; /* the update (the request of wk_gpu_net_optim_step) */
  const wk_gpu_input *next; /* or NULL: staged (wk_gpu_net_stage) once the step is queued */
  int64_t next_n;
  bool graphs;        /* captured and replayed as CUDA graphs (above); else queued plainly */
} wk_gpu_step;

typedef struct wk_gpu_step_result {
  double loss_sum;            /* as wk_gpu_net_xent_forward's */
  bool applied;               /* every row's loss and every gradient finite: unscaled, updated;
                               * else the weights and the optimizer's state are as they were */
  const char *graph_warning;  /* not NULL (the net's text) at the step whose capture failed */
} wk_gpu_step_result;

/* One training step as above (with a communicator, graphs are refused). The
 * weights must be on the device (uploaded after any change, as a forward
 * does), the optimizer's state arrays too. The batchnorm statistics move as
 * in a training forward; the gradient arena holds the step's gradients (the
 * scaled ones when the update was skipped), as after backward. */
wk_status wk_gpu_net_train_step(wk_gpu_net *net, const wk_gpu_step *s, wk_gpu_step_result *r);

typedef struct wk_gpu_graph_stats {
  int64_t captured, replayed; /* graphs captured, steps replayed */
  int64_t invalidations;      /* times the graphs (or warm steps) were dropped: buffers moved */
  bool off;                   /* a capture or launch failed: the network runs uncaptured */
  int64_t staged;             /* batches a forward or step took from wk_gpu_net_stage's copy */
  /* batchnorm fused with relu (and the residual add) in training
   * ($WHISKER_BN_FUSE): the groups found, those that run unfused (cuDNN
   * refused them, the first one's reason in the note, or their batchnorm
   * runs synchronised or on whisker's kernels: bn_own_note), and the groups
   * queued fused so far (a CUDA graph's replays not counted) */
  int bn_fuse_groups, bn_fuse_refused;
  int bn_solo_groups; /* of the groups, batchnorms alone ($WHISKER_BN_FUSE=all) */
  int64_t bn_fused_runs;
  char bn_fuse_note[256];
  /* batchnorms run by whisker's kernels (kernels/syncbn.cu) in training so
   * far: synchronised over the ranks, $WHISKER_GPU_OWN_BN=1, or where cuDNN
   * refused one in 16 bits (the first refusal in the note) */
  int64_t bn_own_runs;
  char bn_own_note[256];
  /* groups run whole at their relu so far, on whisker's kernel (in
   * inference, and in training where nothing upstream of the group trains;
   * $WHISKER_GPU_INFER_BN=own, the default) */
  int64_t bn_infer_fused_runs;
  /* the values of the batch the buffers hold: the bytes they take, and
   * whether they share memory by the forward's steps (a network that has
   * only run inference, mem_plan.h) rather than each being held for backward */
  size_t value_bytes;
  bool values_shared;
} wk_gpu_graph_stats;
wk_status wk_gpu_net_graph_stats(wk_gpu_net *net, wk_gpu_graph_stats *out);

/* ------------------------------------------------------------------ per-node times
 * `whisker bench --profile` on a GPU: once on, every forward and backward
 * records a CUDA event on the compute stream before each node and after the
 * last, and the times between them add up per node when the work is waited
 * for (the end of a step in one call, of a forward that returns its output,
 * of a backward; a forward queued with no output is added before the next
 * one starts). A fused group's time (batchnorm, add, relu: $WHISKER_BN_FUSE)
 * falls on its relu node. Steps in one call run uncaptured (no CUDA graphs)
 * meanwhile. A node's time is the device's from its first piece of work to
 * the next node's, idle gaps included: where the host cannot queue work as
 * fast as the device runs it, those gaps show as time of the node that
 * waited. Profiling cannot be turned off again (the events stay recorded). */
#define WK_GPU_NOTE_BYTES 120
typedef struct wk_gpu_node_time {
  double fwd_s, bwd_s;           /* summed over every forward and backward since it began */
  char note[WK_GPU_NOTE_BYTES];  /* what ran it: the convolution's algorithms, "fused into"
                                  * a group, the batchnorm's kernels ("" where nothing to say) */
} wk_gpu_node_time;
wk_status wk_gpu_net_profile(wk_gpu_net *net);
/* out: one per node, in the graph's order (waits for queued work first). */
wk_status wk_gpu_net_profile_read(wk_gpu_net *net, wk_gpu_node_time *out);

/* ------------------------------------------------------------------ device memory
 * Every device buffer comes from a caching allocator, one per GPU for the
 * process (src/cuda/dev_cache.h; $WHISKER_GPU_CACHE=0 turns the cache off). */
typedef struct wk_gpu_memory {
  wk_dcache_stats cache;     /* in use, held, their peaks, device allocations, ... */
  size_t device_free_bytes;  /* cudaMemGetInfo: free on the device (all processes) */
  size_t device_total_bytes;
} wk_gpu_memory;
/* The figures of GPU `device`; fails where the backend cannot load. */
wk_status wk_gpu_memory_stats(int device, wk_gpu_memory *out);

/* ------------------------------------------------------------------ data parallelism
 * NCCL between the ranks of a data-parallel run, one GPU each (cuda_comm.c in
 * the plugin). Rank 0 makes the id (WK_GPU_COMM_ID_BYTES opaque bytes), every
 * other rank gets it from rank 0 (dist/dist.h: wk_dist_bcast) and all attach it
 * to their network: from then on each backward averages the gradients over the
 * ranks with ncclAllReduce in buckets (below), on a stream of
 * its own, while backward is still running (train/ddp.h has the scheme). Every
 * wait has a deadline of timeout_s; a rank that died or hangs makes the others
 * fail with a message naming what they waited for. A world of one rank works
 * (the path's own cost can be measured so). */
#define WK_GPU_COMM_ID_BYTES 128
wk_status wk_gpu_comm_unique_id(unsigned char id[WK_GPU_COMM_ID_BYTES]);
/* The buckets (train/ddp.c makes them): n contiguous ranges [lo[i], hi[i]) of
 * the parameter arena, and per parameter its bucket. A bucket is sent once
 * backward has run the nodes of all its parameters, in index order. */
typedef struct wk_gpu_buckets {
  int n;
  const size_t *lo, *hi;
  const int *param_bucket;
} wk_gpu_buckets;
/* Collective: every rank calls it with the same id, world, buckets and
 * sync_bn. sync_bn: batchnorm in training normalises with the statistics of
 * every rank's batch together (as the CPU's wk_net_set_sync_bn; each rank's
 * batch must have the same size), its sums all-reduced on the communication
 * stream in order with the gradient buckets. */
wk_status wk_gpu_net_attach_comm(wk_gpu_net *net, const unsigned char id[WK_GPU_COMM_ID_BYTES],
                                 int rank, int world, const wk_gpu_buckets *b, double timeout_s,
                                 bool sync_bn);

#endif
