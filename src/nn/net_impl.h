/* net_impl.h - the inside of a wk_net, shared by the builder (build.c), the
 * initialiser (init.c) and the executor (exec.c). Not a public header. */
#ifndef WK_NET_IMPL_H
#define WK_NET_IMPL_H

#include "nn/bufpool.h"
#include "nn/net.h"
#include "ops/plan.h"

/* Per-node run-time state: what forward saves for backward, and the fast-path
 * plans (primitives, cached weights) built for one batch size. */
typedef struct wk_node_state {
  float *save_mean;  /* batchnorm (C): the batch mean */
  float *save_stat;  /* batchnorm (C): 1/std (reference path) or biased variance (plan) */
  bool stat_is_var;
  bool stat_synced;  /* batchnorm: the last forward was synchronised (exec_syncbn.c) */
  int32_t *argmax;   /* maxpool, (N, OH, OW, C), from the pool */
  wk_conv2d_plan *conv_train, *conv_eval;
  wk_conv2d_pwdw_plan *pwdw_eval; /* a depthwise conv with its 1x1 (net->pwdw) */
  wk_batchnorm_plan *bn;
  wk_pool2d_plan *pool_train, *pool_eval;
  int64_t plan_n;    /* batch size of the plans */
  float *folded;     /* eval: conv weights then bias with the batchnorm folded in */
  bool sum_declined; /* eval: the conv plan cannot add into its output (net->sum_add) */
  char impl[96];     /* eval: the implementation's name when whisker composes it */
  uint64_t folded_wv, folded_bv, folded_version;
} wk_node_state;

struct wk_net {
  wk_ctx *ctx;
  int in_h, in_w, in_c;
  wk_status build_error; /* first builder failure, reported by finalize */
  char build_msg[256];
  bool finalized;

  wk_node *nodes;
  int n_nodes, cap_nodes;

  wk_param *params, *buffers;
  size_t n_params, cap_params, n_buffers, cap_buffers;
  /* indices sorted by name, ties by index (made at finalize; NULL before):
   * wk_net_find_param and wk_net_find_buffer bisect them */
  int *param_by_name, *buffer_by_name;
  size_t n_elems, n_buffer_elems;
  float *weights, *grads, *buffer_data;
  int64_t bn_batches;

  /* derived at finalize */
  int *n_consumers;   /* per value */
  int *alias;         /* per value: the value whose buffer it shares, or itself */
  bool *needs_grad;   /* per value: some trainable parameter lies upstream */
  /* fusions on the CPU fast path (-1 / false where none) */
  int *bn_relu;       /* per node: a batchnorm's ReLU or ReLU6 node, run inside it in training */
  int *fold_bn;       /* per node: a conv's batchnorm, folded into it in evaluation */
  int *fold_act;      /* per node: the activation after that, fused too */
  int *conv_act;      /* per node: a conv's in-place ReLU or ReLU6, its forward run by the
                       * conv in training (a oneDNN post-op); its backward stays its own */
  bool *skip_train, *skip_eval; /* nodes another node computes */
  bool *skip_train_fwd;         /* nodes whose training forward another node computes */
  int *pwdw;          /* per node: the 1x1 conv a depthwise conv runs with it in evaluation */
  int *sum_add;       /* per node: the residual add a conv adds its result into in evaluation */
  int *sum_act;       /* per node: the activation after that add, fused too */
  int *alias_eval;    /* alias in evaluation (the folded chain shares one buffer) */
  int *last_use_eval; /* per root of alias_eval: the node after which its buffer is dead */
  bool *blk_eval;     /* per root of alias_eval: held in nChw16c in evaluation (exec_plan.c) */

  /* run time */
  wk_node_state *state;
  wk_bufpool pool;    /* activations, gradients, scratch */
  float **val;        /* per value: forward buffer */
  float **grad;       /* per value: gradient buffer (NULL until written) */
  int64_t batch;      /* N of the last forward */
  bool last_train;
  uint64_t weights_version; /* bumped by wk_net_weights_changed */
  uint64_t bn_version;      /* bumped by every training forward (running stats) */
  uint64_t plan_version;    /* a fresh weights version for the conv plans */
  uint64_t dropout_seed, dropout_step;
  int64_t dropout_first; /* the batch's first sample within a data-parallel global batch */
  /* data parallelism (wk_net_set_backward_hook, wk_net_set_sync_bn) */
  wk_net_node_done_fn bwd_hook;
  void *bwd_hook_user;
  wk_net_allreduce_fn sync_bn_fn;
  void *sync_bn_user;
  int sync_bn_world;
  double *sync_bn_buf;
  int64_t sync_bn_cap;
  double *prof_fwd_s, *prof_bwd_s; /* per node, when profiling is on */
  char *prof_notes; /* on a GPU: per node WK_NET_NOTE_BYTES, what ran it (wk_net_profile_note) */
  /* on a GPU (exec_gpu.c): the device executor, the weights version it holds,
   * and the host copy of its last output */
  struct wk_gpu_net *gpu;
  int gpu_device; /* its device, while gpu is set */
  uint64_t gpu_uploaded;
  uint64_t params_version, gpu_params_version; /* frozen flags changed / as the GPU has them */
  float *gpu_out;
  size_t gpu_out_elems;
  /* wk_net_gpu_stage's batch (a view: the caller keeps it unchanged; data
   * NULL when none), taken by the next forward or fused step given the same
   * memory and shape */
  wk_tensor gpu_staged_x;
  /* the training step runs on the device (wk_net_gpu_set_resident): backward
   * leaves the gradients and statistics there, the optimizer updates the
   * weights there, and gpu_stale says which host arenas are behind
   * (WK_STALE_*); the accessors bring them back on demand */
  wk_precision precision; /* for the GPU (wk_net_set_precision) */
  bool precision_auto;    /* wk_net_set_precision_auto: wk_net_place decides */
  bool gpu_resident;
  unsigned gpu_stale;
  /* 8-bit input (wk_net_set_input_norm): the normalisation, and on the CPU
   * the float batch it is turned into */
  bool in_norm;
  float in_mean[3], in_std[3], in_scale[3], in_shift[3];
  float *in_f32;
  size_t in_f32_elems;
};

/* Whether value v's buffer is nChw16c in evaluation (exec_plan.c, wk_plan_blocked). */
static inline bool wk_eval_blocked(const wk_net *net, int v) {
  return net->blk_eval && net->blk_eval[net->alias_eval[v]];
}

/* exec.c: x is a batch for the network (shape, dtype, 8-bit normalisation set) */
wk_status wk_net_check_input(const wk_net *net, const wk_tensor *x);

/* exec_gpu.c */
wk_status wk_net_forward_gpu(wk_net *net, const wk_tensor *x, bool train, const wk_tensor *next,
                             wk_tensor *out);
wk_status wk_net_backward_gpu(wk_net *net, const wk_tensor *dy);
void wk_net_release_gpu(wk_net *net);
/* Profiling on the GPU too, where the network is there (wk_net_profile_enable). */
wk_status wk_net_gpu_profile_start(wk_net *net);
enum { WK_STALE_WEIGHTS = 1u, WK_STALE_BUFFERS = 2u, WK_STALE_GRADS = 4u };
/* The accessors' sync: the host arenas up to date, or the process ends with
 * the reason (a device that cannot copy back has lost the run's state). */
void wk_net_sync_host_or_die(wk_net *net);

/* Elements per sample of value v's buffer in evaluation (channels padded to 16
 * when it is held in nChw16c). */
int64_t wk_net_eval_numel(const wk_net *net, int v);
/* Elements per sample of value v. */
int64_t wk_net_value_numel(const wk_net *net, int v);
/* The value's shape as a tensor over `data` for batch size n. */
wk_tensor wk_net_value_tensor(const wk_net *net, int v, int64_t n, float *data);

wk_status wk_net_init_params(wk_net *net, uint64_t seed);
void wk_net_release_runtime(wk_net *net);

#endif
