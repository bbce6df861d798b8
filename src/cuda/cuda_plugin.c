/* cuda_plugin.c - the entry point of libwhisker-cuda.so (see cuda_plugin.h). */
#include "cuda/cuda_backend.h"
#include "cuda/cuda_plugin.h"

__attribute__((visibility("default"))) const wk_cuda_plugin *wk_cuda_plugin_get(void);

const wk_cuda_plugin *wk_cuda_plugin_get(void) {
  static const wk_cuda_plugin plugin = {.abi = WK_CUDA_PLUGIN_ABI,
                                        .device_count = wk_gpu_device_count,
                                        .describe = wk_gpu_describe,
                                        .last_error = wk_last_error,
                                        .net_create = wk_cudanet_create,
                                        .net_destroy = wk_cudanet_destroy,
                                        .net_forward = wk_cudanet_forward,
                                        .net_backward = wk_cudanet_backward,
                                        .net_set_params = wk_cudanet_set_params,
                                        .net_stage = wk_cudanet_stage,
                                        .net_copy = wk_cudanet_copy,
                                        .net_grads_finite = wk_cudanet_grads_finite,
                                        .net_scale_grads = wk_cudanet_scale_grads,
                                        .net_optim_step = wk_cudanet_optim_step,
                                        .net_xent_forward = wk_cudanet_xent_forward,
                                        .net_xent_backward = wk_cudanet_xent_backward,
                                        .net_train_step = wk_cudanet_train_step,
                                        .net_graph_stats = wk_cudanet_graph_stats,
                                        .net_profile = wk_cudanet_profile,
                                        .net_profile_read = wk_cudanet_profile_read,
                                        .comm_unique_id = wk_cudanet_comm_unique_id,
                                        .net_attach_comm = wk_cudanet_attach_comm,
                                        .algos_create = wk_cudaalgos_create,
                                        .algos_destroy = wk_cudaalgos_destroy,
                                        .algos_stats = wk_cudaalgos_stats,
                                        .memory_stats = wk_cuda_memory};
  return &plugin;
}
