/* cuda_plugin.h - the GPU backend as a plugin.
 *
 * The CUDA backend and everything it links (the CUDA runtime, cuBLAS, cuDNN,
 * NCCL: about 200 MB mapped and 0.1-0.5 s of loading) live in their own shared
 * library, libwhisker-cuda.so, which libwhisker loads with dlopen the first time
 * something asks for the GPU (cuda_loader.c). A CPU-only run never maps them, so
 * `whisker classify` starts in milliseconds and uses no memory for CUDA.
 *
 * The plugin exports one symbol, wk_cuda_plugin_get, returning this table. It
 * carries its own copy of the error-message store (core/status.c, symbols
 * hidden): after a call fails, last_error gives its message, which the loader
 * passes on. WK_CUDA_PLUGIN_ABI changes whenever the table, or a struct it
 * passes, does. */
#ifndef WK_CUDA_PLUGIN_H
#define WK_CUDA_PLUGIN_H

#include <stddef.h>

#include "core/status.h"
#include "cuda/cuda.h"

#define WK_CUDA_PLUGIN_ABI 20
#define WK_CUDA_PLUGIN_FILE "libwhisker-cuda.so"

typedef struct wk_cuda_plugin {
  int abi; /* WK_CUDA_PLUGIN_ABI */
  int (*device_count)(void);
  wk_status (*describe)(char *buf, size_t n);
  const char *(*last_error)(void);
  /* networks (cuda.h's wk_gpu_net_*, implemented by cuda_net.c) */
  wk_status (*net_create)(const wk_gpu_graph *g, int device, wk_gpu_net **out);
  void (*net_destroy)(wk_gpu_net *net);
  wk_status (*net_forward)(wk_gpu_net *net, const wk_gpu_input *x, int64_t n, bool train,
                           const wk_gpu_dropout *drop, float *out);
  wk_status (*net_backward)(wk_gpu_net *net, const float *dy);
  wk_status (*net_set_params)(wk_gpu_net *net, const wk_param *params);
  wk_status (*net_stage)(wk_gpu_net *net, const wk_gpu_input *x, int64_t n);
  /* the step on the device */
  wk_status (*net_copy)(wk_gpu_net *net, wk_gpu_arena which, float *host, bool to_device);
  wk_status (*net_grads_finite)(wk_gpu_net *net, bool *finite);
  wk_status (*net_scale_grads)(wk_gpu_net *net, float s);
  wk_status (*net_optim_step)(wk_gpu_net *net, const wk_gpu_optim *o);
  /* the loss on the device */
  wk_status (*net_xent_forward)(wk_gpu_net *net, const wk_gpu_xent *x, double *loss_sum);
  wk_status (*net_xent_backward)(wk_gpu_net *net, float dloss);
  /* the whole step, in CUDA graphs */
  wk_status (*net_train_step)(wk_gpu_net *net, const wk_gpu_step *s, wk_gpu_step_result *r);
  wk_status (*net_graph_stats)(wk_gpu_net *net, wk_gpu_graph_stats *out);
  /* per-node device times (bench --profile) */
  wk_status (*net_profile)(wk_gpu_net *net);
  wk_status (*net_profile_read)(wk_gpu_net *net, wk_gpu_node_time *out);
  /* data parallelism (cuda_comm.c) */
  wk_status (*comm_unique_id)(unsigned char *id);
  wk_status (*net_attach_comm)(wk_gpu_net *net, const unsigned char *id, int rank, int world,
                               const wk_gpu_buckets *b, double timeout_s, bool sync_bn);
  /* the cache of timed convolution algorithms (cuda_algo.c) */
  wk_status (*algos_create)(wk_gpu_algos **out);
  void (*algos_destroy)(wk_gpu_algos *a);
  wk_status (*algos_stats)(wk_gpu_algos *a, wk_gpu_algo_stats *out);
  /* the device memory's caching allocator (cuda_backend.c) */
  wk_status (*memory_stats)(int device, wk_gpu_memory *out);
} wk_cuda_plugin;

typedef const wk_cuda_plugin *(*wk_cuda_plugin_get_fn)(void);

#endif
