/* cuda_backend.c - device queries and device-buffer helpers of the CUDA backend
 * (built into libwhisker-cuda.so, see cuda_plugin.h). Every foreign call is
 * checked (cuda_backend.h); "no driver" and "no device" are answers here, never
 * errors or aborts. */
#include "cuda/cuda_backend.h"

#include <stdarg.h>
#include <stdio.h>

int wk_gpu_device_count(void) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    /* cudaErrorNoDevice, cudaErrorInsufficientDriver, a driver that failed to
     * initialise, ...: all mean no usable device. Consume the error so it does
     * not surface in a later cudaGetLastError(). */
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

/* ------------------------------------------------------------------ device buffers */

wk_status wk_cuda_malloc(void **dptr, size_t n_bytes) {
  WK_ASSERT(dptr);
  *dptr = NULL;
  if (n_bytes == 0) return WK_OK;
  void *p = NULL;
  WK_CUDA_TRY(cudaMalloc(&p, n_bytes));
  *dptr = p;
  return WK_OK;
}

wk_status wk_cuda_free(void *dptr) {
  if (!dptr) return WK_OK;
  WK_CUDA_TRY(cudaFree(dptr));
  return WK_OK;
}

wk_status wk_cuda_copy_h2d(void *dst, const void *src, size_t n_bytes) {
  if (n_bytes == 0) return WK_OK;
  WK_ASSERT(dst && src);
  WK_CUDA_TRY(cudaMemcpy(dst, src, n_bytes, cudaMemcpyHostToDevice));
  /* from pageable memory cudaMemcpy may return before the DMA lands, and the
   * networks' non-blocking streams do not wait for the legacy stream it used */
  WK_CUDA_TRY(cudaDeviceSynchronize());
  return WK_OK;
}

wk_status wk_cuda_copy_d2h(void *dst, const void *src, size_t n_bytes) {
  if (n_bytes == 0) return WK_OK;
  WK_ASSERT(dst && src);
  WK_CUDA_TRY(cudaMemcpy(dst, src, n_bytes, cudaMemcpyDeviceToHost));
  return WK_OK;
}

wk_status wk_cuda_sync(void) {
  WK_CUDA_TRY(cudaDeviceSynchronize());
  return WK_OK;
}

/* ------------------------------------------------------------------ description */

/* Text appended into a fixed buffer; `truncated` remembers that something did
 * not fit, the buffer stays NUL-terminated. */
typedef struct wk_text {
  char *buf;
  size_t cap, len;
  bool truncated;
} wk_text;

static void wk_text_add(wk_text *t, const char *fmt, ...) WK_PRINTF(2, 3);

static void wk_text_add(wk_text *t, const char *fmt, ...) {
  if (t->truncated) return;
  va_list ap;
  va_start(ap, fmt);
  const int k = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= t->cap - t->len) {
    t->truncated = true;
    t->len = t->cap - 1;
  } else {
    t->len += (size_t)k;
  }
}

/* "M.m" from CUDA's 1000 * major + 10 * minor; 0 means no driver is installed. */
static void wk_text_cuda_version(wk_text *t, const char *what, int v) {
  if (v == 0) wk_text_add(t, "%s: none installed\n", what);
  else wk_text_add(t, "%s: %d.%d\n", what, v / 1000, (v % 1000) / 10);
}

static void wk_describe_versions(wk_text *t) {
  int v = 0;
  cudaError_t e = cudaRuntimeGetVersion(&v);
  if (e == cudaSuccess) wk_text_cuda_version(t, "CUDA runtime", v);
  else wk_text_add(t, "CUDA runtime: unknown (%s)\n", cudaGetErrorString(e));
  v = 0;
  e = cudaDriverGetVersion(&v);
  if (e == cudaSuccess) wk_text_cuda_version(t, "CUDA driver", v);
  else wk_text_add(t, "CUDA driver: unknown (%s)\n", cudaGetErrorString(e));
  (void)cudaGetLastError();

  /* cuDNN 9: major * 10000 + minor * 100 + patch. */
  const size_t dnn = cudnnGetVersion();
  wk_text_add(t, "cuDNN: %zu.%zu.%zu (built against %d.%d.%d)\n", dnn / 10000,
              (dnn % 10000) / 100, dnn % 100, CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);

  static const libraryPropertyType parts[3] = {MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL};
  int blas[3] = {0, 0, 0};
  cublasStatus_t be = CUBLAS_STATUS_SUCCESS;
  for (int i = 0; i < 3 && be == CUBLAS_STATUS_SUCCESS; i++)
    be = cublasGetProperty(parts[i], &blas[i]);
  if (be == CUBLAS_STATUS_SUCCESS)
    wk_text_add(t, "cuBLAS: %d.%d.%d\n", blas[0], blas[1], blas[2]);
  else
    wk_text_add(t, "cuBLAS: unknown (%s)\n", cublasGetStatusString(be));

  /* NCCL >= 2.9: major * 10000 + minor * 100 + patch. */
  int nccl = 0;
  const ncclResult_t ne = ncclGetVersion(&nccl);
  if (ne == ncclSuccess)
    wk_text_add(t, "NCCL: %d.%d.%d (built against %d.%d.%d)\n", nccl / 10000,
                (nccl % 10000) / 100, nccl % 100, NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
  else
    wk_text_add(t, "NCCL: unknown (%s)\n", ncclGetErrorString(ne));
}

static void wk_describe_devices(wk_text *t) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    wk_text_add(t, "no CUDA device (%s: %s)\n", cudaGetErrorName(e), cudaGetErrorString(e));
    return;
  }
  if (count == 0) {
    wk_text_add(t, "no CUDA device\n");
    return;
  }
  for (int d = 0; d < count; d++) {
    struct cudaDeviceProp prop;
    const cudaError_t pe = cudaGetDeviceProperties(&prop, d);
    if (pe != cudaSuccess) {
      (void)cudaGetLastError();
      wk_text_add(t, "device %d: properties unavailable (%s)\n", d, cudaGetErrorString(pe));
      continue;
    }
    wk_text_add(t, "device %d: %s, compute capability %d.%d, %.1f GiB, %d SMs\n", d, prop.name,
                prop.major, prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
                prop.multiProcessorCount);
  }
}

wk_status wk_gpu_describe(char *buf, size_t n) {
  if (!buf || n == 0) return wk_fail(WK_ERR_INVALID_ARG, "wk_cuda_describe: empty buffer");
  wk_text t = {buf, n, 0, false};
  buf[0] = '\0';
  wk_text_add(&t, "CUDA backend: built (CUDA %d.%d, cuDNN %d.%d.%d, NCCL %d.%d.%d)\n",
              CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10, CUDNN_MAJOR, CUDNN_MINOR,
              CUDNN_PATCHLEVEL, NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
  wk_describe_versions(&t);
  wk_describe_devices(&t);
  if (t.truncated)
    return wk_fail(WK_ERR_LIMIT, "wk_cuda_describe: description truncated to %zu bytes", n);
  return WK_OK;
}
