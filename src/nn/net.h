/* net.h - a network: a graph of op nodes over NHWC tensors, with its parameters
 * and gradients each in one contiguous arena.
 *
 * Values are numbered: value 0 is the network input (N, H, W, C), value i + 1
 * is the output of node i. Nodes are added in topological order by the builder
 * calls below (the model zoo, the model-file loader and the ONNX importer all
 * use them) and each returns its output value. A builder call that fails
 * records the error in the network and returns -1; wk_net_finalize reports the
 * first such error, so a zoo function can add nodes without checking each one.
 *
 * Naming follows PyTorch: a conv node "layer1.0.conv1" owns the parameters
 * "layer1.0.conv1.weight" (and ".bias"), a batchnorm node "bn1" owns
 * "bn1.weight", "bn1.bias" and the buffers "bn1.running_mean", "bn1.running_var".
 * Parameters are stored in whisker's layouts (conv OHWI, linear (O, I)); the
 * model file converts to and from PyTorch's.
 *
 * Execution: wk_net_forward runs the graph in training or evaluation mode;
 * wk_net_backward, after a training forward, fills the gradient arena
 * (overwriting it) from the gradient of the output. The forward output stays
 * valid until the next forward. */
#ifndef WK_NET_H
#define WK_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/context.h"
#include "core/tensor.h"
#include "nn/param.h"
#include "ops/ops.h"

#define WK_NODE_NAME_MAX 80

typedef enum wk_node_op {
  WK_NODE_CONV = 0,
  WK_NODE_BATCHNORM,
  WK_NODE_ACT,
  WK_NODE_MAXPOOL,
  WK_NODE_AVGPOOL,
  WK_NODE_GLOBAL_AVGPOOL, /* (N,H,W,C) -> (N,C) */
  WK_NODE_FLATTEN,        /* (N,H,W,C) -> (N,H*W*C), NHWC order */
  WK_NODE_LINEAR,
  WK_NODE_ADD,
  WK_NODE_DROPOUT,
  WK_NODE_OP_COUNT
} wk_node_op;

/* How a fresh network initialises a weight (biases start at 0 unless said). */
typedef enum wk_init {
  WK_INIT_KAIMING_FAN_OUT = 0, /* normal(0, sqrt(2 / fan_out)), torchvision's conv init */
  WK_INIT_TORCH_DEFAULT,       /* U(+-1/sqrt(fan_in)) for weight and bias, nn.Linear's */
  WK_INIT_NORMAL_001,          /* normal(0, 0.01), bias 0: torchvision MobileNetV2's head */
} wk_init;

typedef struct wk_node {
  wk_node_op op;
  char name[WK_NODE_NAME_MAX];
  int n_in;
  int in[2]; /* value ids */
  /* attributes (those of other ops are zero) */
  int out_ch;               /* conv, linear */
  int kh, kw;               /* conv */
  wk_conv2d_params conv;    /* conv */
  bool bias;                /* conv, linear */
  wk_init init;             /* conv, linear */
  wk_batchnorm_params bn;   /* batchnorm */
  wk_act act;               /* act */
  wk_pool2d_params pool;    /* max/avg pool */
  float drop_p;             /* dropout */
  /* derived by the builder */
  int out_ndim;             /* 3: (H, W, C) per sample, or 1: (F) */
  int64_t out_shape[3];
  int param[2];             /* weight/gamma and bias/beta param index, or -1 */
  int buffer[2];            /* batchnorm running mean and var buffer index, or -1 */
} wk_node;

typedef struct wk_net wk_net;

/* A network for inputs (N, in_h, in_w, in_c) of any batch size N. */
wk_status wk_net_create(wk_ctx *ctx, int in_h, int in_w, int in_c, wk_net **out);
void wk_net_destroy(wk_net *net);

/* ---- builders: each returns the output value id, or -1 after recording an error */
int wk_net_conv(wk_net *net, const char *name, int in, int out_ch, int kh, int kw,
                const wk_conv2d_params *p, bool bias);
int wk_net_batchnorm(wk_net *net, const char *name, int in, float eps, float momentum);
int wk_net_act(wk_net *net, const char *name, int in, wk_act act);
int wk_net_maxpool(wk_net *net, const char *name, int in, const wk_pool2d_params *p);
int wk_net_avgpool(wk_net *net, const char *name, int in, const wk_pool2d_params *p);
int wk_net_global_avgpool(wk_net *net, const char *name, int in);
int wk_net_flatten(wk_net *net, const char *name, int in);
int wk_net_linear(wk_net *net, const char *name, int in, int out_features, bool bias);
int wk_net_add(wk_net *net, const char *name, int a, int b);
int wk_net_dropout(wk_net *net, const char *name, int in, float p);
/* Adds a fully described node (used by the loaders); node->param/buffer/out_*
 * are derived, the rest taken as given. */
int wk_net_add_node(wk_net *net, const wk_node *node);
/* The weight initialisation of the last conv/linear node added. */
void wk_net_set_init(wk_net *net, wk_init init);

/* Lays out the arenas and initialises the parameters from `seed` (PyTorch's
 * schemes, see wk_init). The last node's output is the network output. */
wk_status wk_net_finalize(wk_net *net, uint64_t seed);

/* Finalizes without initialising: every parameter 0, running variance 0
 * (for a loader that overwrites them all). */
wk_status wk_net_finalize_empty(wk_net *net);
/* The first builder failure (WK_OK if none); its message is made current. */
wk_status wk_net_build_error(const wk_net *net);

/* ---- structure */
wk_ctx *wk_net_ctx(const wk_net *net);
int wk_net_n_nodes(const wk_net *net);
const wk_node *wk_net_node(const wk_net *net, int i);
void wk_net_input_shape(const wk_net *net, int *h, int *w, int *c);
/* Features of the output value (the number of classes for a classifier). */
int64_t wk_net_output_features(const wk_net *net);

/* ---- parameters: `numel` counts real elements; the arenas are n_elems long
 * (each tensor starts 64-byte aligned; the gaps are zero). */
const wk_param *wk_net_params(const wk_net *net, size_t *n_params);
const wk_param *wk_net_buffers(const wk_net *net, size_t *n_buffers);
float *wk_net_weights(wk_net *net);      /* the parameter arena */
float *wk_net_grads(wk_net *net);        /* the gradient arena, same layout */
float *wk_net_buffer_data(wk_net *net);  /* the buffer arena */
size_t wk_net_n_elems(const wk_net *net);
size_t wk_net_n_buffer_elems(const wk_net *net);
/* Total trainable elements (sum of numel), as PyTorch counts them. */
int64_t wk_net_param_count(const wk_net *net);
/* The index of a parameter or buffer by name, or -1. */
int wk_net_find_param(const wk_net *net, const char *name);
int wk_net_find_buffer(const wk_net *net, const char *name);
/* Freezes (or unfreezes) every parameter whose name starts with `prefix`
 * ("" = all); returns how many matched. */
int wk_net_set_frozen(wk_net *net, const char *prefix, bool frozen);
void wk_net_set_lr_scale(wk_net *net, const char *prefix, float scale);
/* The same for the parameters of node i (fine-tuning works layer by layer). */
void wk_net_set_node_frozen(wk_net *net, int i, bool frozen);
void wk_net_set_node_lr_scale(wk_net *net, int i, float scale);
/* Batches seen by each batchnorm in training (PyTorch's num_batches_tracked). */
int64_t wk_net_bn_batches(const wk_net *net);
void wk_net_set_bn_batches(wk_net *net, int64_t n);
/* Tells the network its weights or buffers changed outside forward/backward (an
 * optimizer step, a load), so cached derived weights are rebuilt. */
void wk_net_weights_changed(wk_net *net);

/* ---- execution
 * x (N, H, W, C) f32. In training mode batchnorm uses batch statistics and
 * updates its running ones, and dropout draws a mask from (seed, step); in
 * evaluation mode neither, and a frozen batchnorm with nothing trainable
 * upstream of it (a frozen body) uses and keeps its running statistics in
 * training too. *out views the output (N, F), owned by the net; out NULL
 * asks for no output (on a GPU it then stays on the device, where
 * wk_net_gpu_xent_forward reads it). */
wk_status wk_net_forward(wk_net *net, const wk_tensor *x, bool train, wk_tensor *out);
/* wk_net_forward, and on a GPU next (or NULL) staged as by wk_net_gpu_stage once
 * this forward is queued, before its output comes back: a loop over batches that
 * hands each forward the batch after it moves that one up while this one
 * computes. next must stay unchanged until the next forward takes it. Off the
 * GPU, and with $WHISKER_GPU_PREFETCH=0 (as training's), next is not used. */
wk_status wk_net_forward_next(wk_net *net, const wk_tensor *x, bool train, const wk_tensor *next,
                              wk_tensor *out);
/* dy (N, F): the gradient of the loss w.r.t. the output of the last training
 * forward. Fills the gradient arena (frozen parameters get 0). */
wk_status wk_net_backward(wk_net *net, const wk_tensor *dy);
/* Sets the drop probability of every dropout node (0 disables them); returns
 * how many there are. Before the network is placed on a GPU (which copies the
 * graph then). */
int wk_net_set_dropout(wk_net *net, float p);
/* Dropout masks are a function of (seed, step, node): set before forward. */
void wk_net_set_dropout_seed(wk_net *net, uint64_t seed, uint64_t step);
/* ---- data parallelism (dist/): what the network calls out to; NULL turns off.
 * After node i's backward has written its parameters' gradients: */
typedef wk_status (*wk_net_node_done_fn)(void *user, int node);
void wk_net_set_backward_hook(wk_net *net, wk_net_node_done_fn fn, void *user);
/* Synchronised batchnorm: training statistics over the batches of `world`
 * ranks (of equal batch size); fn sums n doubles over the ranks in place and
 * is called in the same order on every rank. */
typedef wk_status (*wk_net_allreduce_fn)(void *user, double *buf, size_t n);
void wk_net_set_sync_bn(wk_net *net, wk_net_allreduce_fn fn, void *user, int world);
/* Lets forward take 8-bit RGB batches ((N, H, W, 3) WK_U8, as the loader's
 * images_u8): they are normalised with this mean and std (per channel, on
 * [0, 1] values) exactly as the loader's float path would (ops/ops.h:
 * wk_normalize_u8_ref), on the GPU when the network runs there (a quarter of
 * the bytes to move), else into a float batch on the host. */
wk_status wk_net_set_input_norm(wk_net *net, const float mean[3], const float std[3]);
/* Whether the batches for this network should come as 8 bits: on a GPU with
 * RGB input (a quarter of the bytes to move), in which case the input
 * normalisation is set to mean/std here; *u8 false otherwise (float
 * batches, nothing set). The two differ by more than rounding: an 8-bit
 * batch holds the augmented image (resized, cropped, jittered) rounded to
 * whole levels, a float batch keeps the fractions. $WHISKER_INPUT_U8=1 asks
 * for 8 bits on the CPU too, =0 for float batches on a GPU (RGB input only),
 * so that the two devices can be given the same batches. */
wk_status wk_net_prefer_u8(wk_net *net, const float mean[3], const float std[3], bool *u8);
/* Dropout masks count from sample `first` of the global batch (rank r of a
 * data-parallel step: r * the per-rank batch), so that every rank draws the
 * masks one process with the whole global batch would. */
void wk_net_set_dropout_first(wk_net *net, int64_t first);
/* Runs the network on CUDA device `device` from now on (cuda/cuda.h): forward
 * and backward execute there, the weights are uploaded whenever they changed,
 * and backward brings the gradients and the batchnorm statistics back to the
 * host arenas, so training and evaluation code needs no change. Fails
 * (leaving the network on the CPU) without a usable GPU or backend. */
wk_status wk_net_use_gpu(wk_net *net, int device);
bool wk_net_on_gpu(const wk_net *net);
/* Where a command runs a network: the CPU, GPU N, or the first GPU when one
 * works (else the CPU, with a warning saying why). */
#define WK_DEVICE_CPU (-1)
#define WK_DEVICE_AUTO (-2)
/* How a GPU computes: fp32 (float32 throughout, no TF32: results compare
 * with the CPU's to float rounding; the library's default, the commands'
 * is auto: wk_net_set_precision_auto), tf32 (float32 storage,
 * convolutions and linear layers on TF32 tensor cores: 10-bit mantissas in
 * the products, float32 sums), bf16 and fp16 (autocast: every activation and
 * its gradient stored in 16 bits, convolutions and linear layers on 16-bit
 * tensor cores with float32 sums, batchnorm's statistics, the master weights,
 * the optimizer and the loss in float32; cuda/cuda_net.c). fp16's small range
 * needs the trainer's dynamic loss scaling (train/trainer.h). */
typedef enum { WK_PRECISION_FP32 = 0, WK_PRECISION_TF32, WK_PRECISION_BF16, WK_PRECISION_FP16 }
wk_precision;
wk_status wk_precision_parse(const char *name, wk_precision *out);
const char *wk_precision_name(wk_precision p);
/* Before wk_net_place / wk_net_use_gpu; the CPU computes in fp32 only. */
wk_status wk_net_set_precision(wk_net *net, wk_precision p);
/* `--precision auto` (the commands' default): wk_net_place takes bf16 on a
 * GPU that has it (compute capability 8.0 or newer), else fp32; the CPU
 * computes in fp32. wk_net_set_precision undoes it. */
void wk_net_set_precision_auto(wk_net *net);
/* "auto" (*is_auto, *out fp32) or a precision's name, as wk_precision_parse. */
wk_status wk_precision_parse_auto(const char *name, wk_precision *out, bool *is_auto);
wk_status wk_net_place(wk_net *net, int device);
/* Data parallelism on GPUs: attaches an NCCL communicator (cuda/cuda.h's
 * wk_gpu_net_attach_comm) to a network on a GPU, after which every backward
 * leaves the mean gradient over the ranks in the host arena. */
/* The training step on the device (train/trainer.c): with `on`, backward
 * leaves the gradients and batchnorm statistics on the GPU and
 * wk_net_gpu_optim_step updates the weights there; the host arenas are
 * brought back when read (wk_net_weights, wk_net_grads, wk_net_buffer_data,
 * or wk_net_sync_host, which reports a failure instead of ending the
 * process). Turning it off brings everything back. */
wk_status wk_net_gpu_set_resident(wk_net *net, bool on);
wk_status wk_net_sync_host(wk_net *net);
/* The loss on the device (train/trainer.c, a network on a GPU): softmax
 * cross-entropy with label smoothing as ops/ops.h's wk_softmax_xent_forward
 * and _backward compute it, over the output of the last forward, which never
 * crosses to the host (kernels/train.cu; the same loss up to float rounding,
 * see cuda/cuda.h). forward: labels (N) i32, checked as the host checks them
 * (same message); *loss the batch mean; predicted, when not NULL, receives
 * each sample's most probable class (N values, wk_argmax's rule on the
 * probabilities). backward, after a training forward and its loss: as
 * wk_net_backward with the output gradient the host's
 * wk_softmax_xent_backward(p, dloss) would give (dloss: 1, or fp16's loss
 * scale). */
wk_status wk_net_gpu_xent_forward(wk_net *net, const wk_xent_params *p, const wk_tensor *labels,
                                  float *loss, int32_t *predicted);
wk_status wk_net_gpu_xent_backward(wk_net *net, float dloss);
/* *finite: no NaN or infinity among the device's gradients. */
wk_status wk_net_gpu_grads_finite(wk_net *net, bool *finite);
/* The device's gradients times s. */
wk_status wk_net_gpu_scale_grads(wk_net *net, float s);
wk_precision wk_net_precision(const wk_net *net);
struct wk_gpu_optim;
wk_status wk_net_gpu_optim_step(wk_net *net, const struct wk_gpu_optim *o);
/* The whole training step on the device in one call (train/trainer.c's
 * default there; cuda/cuda.h's wk_gpu_net_train_step has the details, CUDA
 * graphs included): a training forward of x, the loss of the
 * labels (checked and computed as wk_net_gpu_xent_forward), backward from its
 * gradient times dloss, and, only when every row's loss and every gradient
 * is finite, the gradients times inv_scale (with unscale: fp16) and the
 * update; nothing comes back to the host in between. *loss and predicted as
 * wk_net_gpu_xent_forward's; *applied: the update ran (else the weights and
 * the optimizer's state are as they were; the host's step counts are the
 * caller's to put back). Needs the step on the device
 * (wk_net_gpu_set_resident) and no communicator. */
typedef struct wk_net_gpu_step {
  const wk_xent_params *xent;
  const wk_tensor *labels;
  float dloss;
  bool unscale;
  float inv_scale;
  const struct wk_gpu_optim *optim;
  const wk_tensor *next; /* or NULL: staged as by wk_net_gpu_stage once the step is queued */
  bool graphs;           /* as CUDA graphs once the shapes have settled ($WHISKER_CUDA_GRAPH=1) */
} wk_net_gpu_step;
wk_status wk_net_gpu_fused_step(wk_net *net, const wk_tensor *x, const wk_net_gpu_step *s,
                                float *loss, int32_t *predicted, bool *applied);
/* The next training batch, copied up while the work queued now computes
 * (cuda/cuda.h's wk_gpu_net_stage): the next forward or fused step given the
 * same memory and shape takes the device copy; any other forward drops it.
 * x must stay unchanged until then (train/fit.c holds it with
 * wk_loader_peek_batch). Nothing to do, and no error, off the GPU. */
wk_status wk_net_gpu_stage(wk_net *net, const wk_tensor *x);
struct wk_gpu_graph_stats;
/* What the network's CUDA graphs have done so far (cuda/cuda.h). */
wk_status wk_net_gpu_graph_stats(wk_net *net, struct wk_gpu_graph_stats *out);
struct wk_gpu_memory;
/* The device memory of the network's GPU: the process's caching allocator
 * there (in use, held, peaks) and the device's free and total bytes. */
wk_status wk_net_gpu_memory(const wk_net *net, struct wk_gpu_memory *out);
/* The optimizer's state array i (0 or 1; n_elems floats) to or from the device. */
wk_status wk_net_gpu_state(wk_net *net, int i, float *host, bool to_device);
struct wk_gpu_buckets;
wk_status wk_net_gpu_attach_comm(wk_net *net, const unsigned char *id, int rank, int world,
                                 const struct wk_gpu_buckets *b, double timeout_s, bool sync_bn);
/* Bytes of activation memory held by the last forward/backward. */
size_t wk_net_activation_bytes(const wk_net *net);
/* What node i ran on in the last evaluation forward on the CPU fast path
 * (a convolution plan's implementation, e.g. "jit_1x1:avx512_core", or
 * "1x1+dw fused: ..." for a depthwise conv that ran the 1x1 conv before it
 * too; "... + add" or "... + add + act" for a conv that added its result into
 * the residual add after it, and the activation after that, itself; "..., add
 * after" or "..., add + act after" where it did so in a second pass); NULL
 * for nodes without a plan and nodes run inside another. */
const char *wk_net_node_eval_impl(const wk_net *net, int i);
/* In training, the node node i runs inside, on the CPU fast path, or -1: an
 * activation inside the batchnorm before it (forward and backward; ReLU on
 * oneDNN's kernels, ReLU6 on whisker's), or inside the conv before it
 * (forward only, a post-op: no batchnorm between the two). */
int wk_net_node_train_host(const wk_net *net, int i);

/* Per-node time: once enabled, every forward and backward adds to it. On the
 * CPU the wall time of each node's call; on a GPU the device's time between
 * CUDA events around each node (cuda/cuda.h: wk_gpu_net_profile; a fused
 * batchnorm group's time falls on its relu, and training steps run without
 * CUDA graphs meanwhile), brought over by wk_net_profile_collect. */
wk_status wk_net_profile_enable(wk_net *net);
/* On a GPU, the device's times so far into what wk_net_profile_get returns
 * (waits for queued work), and what ran each node (wk_net_profile_note). */
wk_status wk_net_profile_collect(wk_net *net);
/* Seconds spent in node i's forward and backward so far (0 when disabled). */
void wk_net_profile_get(const wk_net *net, int i, double *fwd_s, double *bwd_s);
/* What ran node i on the GPU, as of the last wk_net_profile_collect (the
 * convolution's cuDNN algorithms, "fused: its time is ...'s", the batchnorm's
 * kernels); "" where there is nothing to say or the network is on the CPU. */
#define WK_NET_NOTE_BYTES 120
const char *wk_net_profile_note(const wk_net *net, int i);

const char *wk_node_op_name(wk_node_op op);
/* A node's output per sample: "HxWxC", or "F". */
void wk_node_shape_str(const wk_node *nd, char *buf, size_t n);
wk_status wk_node_op_parse(const char *name, wk_node_op *out);

#endif
