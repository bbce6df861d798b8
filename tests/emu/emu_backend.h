/* emu_backend.h - what test_gpu_ops.c needs of cuda/cuda_backend.h and the
 * CUDA runtime when its kernels run under the host emulator (tests/emu/emu.cpp
 * defines these; built with WK_GPU_EMU, no CUDA toolkit involved). Same
 * signatures and numbers as the real declarations. */
#ifndef WK_EMU_BACKEND_H
#define WK_EMU_BACKEND_H

#include <stddef.h>

#include "core/status.h"

typedef enum cudaError { cudaSuccess = 0, cudaErrorInvalidValue = 1 } cudaError_t;
const char *cudaGetErrorString(cudaError_t error);

wk_status wk_cuda_malloc(void **dptr, size_t n_bytes) WK_NODISCARD;
wk_status wk_cuda_free(void *dptr);
wk_status wk_cuda_copy_h2d(void *dst, const void *src, size_t n_bytes) WK_NODISCARD;
wk_status wk_cuda_copy_d2h(void *dst, const void *src, size_t n_bytes) WK_NODISCARD;
wk_status wk_cuda_sync(void) WK_NODISCARD;

#endif
