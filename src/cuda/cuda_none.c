/* cuda_none.c - the cuda.h API of a build without the CUDA backend: nothing is
 * compiled, there are no devices, and the description says so. */
#include "cuda/cuda.h"

#include <stdio.h>

bool wk_cuda_compiled(void) { return false; }

int wk_cuda_device_count(void) { return 0; }

wk_status wk_cuda_describe(char *buf, size_t n) {
  if (!buf || n == 0) return wk_fail(WK_ERR_INVALID_ARG, "wk_cuda_describe: empty buffer");
  const int len = snprintf(buf, n,
                           "CUDA backend not built (configure with the CUDA toolkit, cuDNN "
                           "and NCCL installed and -DWHISKER_CUDA=ON)\n");
  if (len < 0 || (size_t)len >= n)
    return wk_fail(WK_ERR_LIMIT, "wk_cuda_describe: description truncated to %zu bytes", n);
  return WK_OK;
}
