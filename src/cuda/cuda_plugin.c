/* cuda_plugin.c - the entry point of libwhisker-cuda.so (see cuda_plugin.h). */
#include "cuda/cuda_backend.h"
#include "cuda/cuda_plugin.h"

__attribute__((visibility("default"))) const wk_cuda_plugin *wk_cuda_plugin_get(void);

const wk_cuda_plugin *wk_cuda_plugin_get(void) {
  static const wk_cuda_plugin plugin = {.abi = WK_CUDA_PLUGIN_ABI,
                                        .device_count = wk_gpu_device_count,
                                        .describe = wk_gpu_describe,
                                        .last_error = wk_last_error};
  return &plugin;
}
