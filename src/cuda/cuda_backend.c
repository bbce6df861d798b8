/* cuda_backend.c - device queries and device-buffer helpers of the CUDA backend
 * (built into libwhisker-cuda.so, see cuda_plugin.h). Every foreign call is
 * checked (cuda_backend.h); "no driver" and "no device" are answers here, never
 * errors or aborts. */
#include "cuda/cuda_backend.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/dev_cache.h"

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

/* ------------------------------------------------------------------ device buffers
 * Through one caching allocator per device (dev_cache.h). Device memory, like
 * the CUDA context that owns it, belongs to the process, so the caches are the
 * process's too: a table indexed by device, made on first use, under a lock
 * (the loader's threads never allocate device memory, but the library's user
 * may run networks from several threads). */

#define WK_CACHE_DEVICES 64

static pthread_mutex_t wk_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static wk_dcache *wk_caches[WK_CACHE_DEVICES];

/* The ops run on the cache's device, whichever is current. */
typedef struct wk_on_device {
  int before;
  bool switched;
} wk_on_device;

static wk_status wk_device_enter(void *ctx, wk_on_device *g) {
  const int device = (int)(intptr_t)ctx;
  g->switched = false;
  WK_CUDA_TRY(cudaGetDevice(&g->before));
  if (g->before != device) {
    WK_CUDA_TRY(cudaSetDevice(device));
    g->switched = true;
  }
  return WK_OK;
}

/* Back to the device that was current; returns s, the op's own outcome. A
 * failed restore is consumed and otherwise let be: what the op did (memory
 * made or given back) stands and must be recorded as done, every entry point
 * of the GPU code makes its own device current before working (cudaSetDevice),
 * and a fault behind the failure is sticky, so the next call reports it. */
static wk_status wk_device_leave(const wk_on_device *g, wk_status s) {
  if (g->switched && cudaSetDevice(g->before) != cudaSuccess) (void)cudaGetLastError();
  return s;
}

static wk_status wk_dev_alloc(void *ctx, size_t n_bytes, void **out) {
  wk_on_device g;
  WK_TRY(wk_device_enter(ctx, &g));
  wk_status s = WK_OK;
  const cudaError_t e = cudaMalloc(out, n_bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *out = NULL;
    s = wk_fail(e == cudaErrorMemoryAllocation ? WK_ERR_NOMEM : WK_ERR_BACKEND,
                "CUDA: cudaMalloc(%zu) on GPU %d failed at %s:%d: %s (%s)", n_bytes,
                (int)(intptr_t)ctx, __FILE__, __LINE__, cudaGetErrorName(e),
                cudaGetErrorString(e));
  }
  return wk_device_leave(&g, s);
}

/* The checked calls the ops make on their device. */
static wk_status wk_dev_free_call(void *p) {
  WK_CUDA_TRY(cudaFree(p));
  return WK_OK;
}

static wk_status wk_mem_info(size_t *free_bytes, size_t *total_bytes) {
  WK_CUDA_TRY(cudaMemGetInfo(free_bytes, total_bytes));
  return WK_OK;
}

static wk_status wk_dev_free(void *ctx, void *p) {
  wk_on_device g;
  WK_TRY(wk_device_enter(ctx, &g));
  return wk_device_leave(&g, wk_dev_free_call(p));
}

static wk_status wk_dev_sync(void *ctx) {
  wk_on_device g;
  WK_TRY(wk_device_enter(ctx, &g));
  return wk_device_leave(&g, wk_cuda_sync());
}

/* The current device's cache (made on first use); the lock is held. */
static wk_status wk_current_cache(wk_dcache **out) {
  int device = -1;
  WK_CUDA_TRY(cudaGetDevice(&device));
  if (device < 0 || device >= WK_CACHE_DEVICES)
    return wk_fail(WK_ERR_UNSUPPORTED, "GPU %d: whisker handles GPUs 0 to %d", device,
                   WK_CACHE_DEVICES - 1);
  if (!wk_caches[device]) {
    const char *env = getenv("WHISKER_GPU_CACHE");
    const bool caching = !(env && strcmp(env, "0") == 0);
    const wk_dcache_ops ops = {.ctx = (void *)(intptr_t)device, .alloc = wk_dev_alloc,
                               .free = wk_dev_free, .sync = wk_dev_sync};
    WK_TRY(wk_dcache_create(&ops, caching, &wk_caches[device]));
  }
  *out = wk_caches[device];
  return WK_OK;
}

/* $WHISKER_GPU_POISON=1: every buffer handed out is filled with 0xff bytes
 * (NaN as floats) first, so that code reading a buffer before writing it
 * shows up instead of reading zeros or an earlier buffer's values. */
static wk_status wk_poison(void *p, size_t n_bytes) {
  const char *env = getenv("WHISKER_GPU_POISON");
  if (!env || strcmp(env, "1") != 0) return WK_OK;
  WK_CUDA_TRY(cudaMemset(p, 0xff, n_bytes));
  return wk_cuda_sync(); /* the networks' streams do not wait for the legacy one */
}

wk_status wk_cuda_malloc(void **dptr, size_t n_bytes) {
  WK_ASSERT(dptr);
  *dptr = NULL;
  if (n_bytes == 0) return WK_OK;
  /* One lock for every device: allocations are rare (never inside a step),
   * and whisker drives one GPU per process, so the wait for a device held
   * under it (dev_cache.h) blocks no other device's work. */
  pthread_mutex_lock(&wk_cache_lock);
  wk_dcache *c = NULL;
  wk_status s = wk_current_cache(&c);
  if (s == WK_OK) s = wk_dcache_alloc(c, n_bytes, dptr);
  pthread_mutex_unlock(&wk_cache_lock);
  if (s == WK_OK) {
    s = wk_poison(*dptr, n_bytes);
    if (s != WK_OK) {
      (void)wk_cuda_free(*dptr);
      *dptr = NULL;
    }
  }
  return s;
}

wk_status wk_cuda_malloc_optional(void **dptr, size_t n_bytes, bool *room) {
  *room = true;
  const wk_status s = wk_cuda_malloc(dptr, n_bytes);
  if (s != WK_ERR_NOMEM) return s;
  *room = false;
  return WK_OK;
}

wk_status wk_cuda_free(void *dptr) {
  if (!dptr) return WK_OK;
  pthread_mutex_lock(&wk_cache_lock);
  wk_status s = WK_ERR_INVALID_ARG;
  for (int d = 0; d < WK_CACHE_DEVICES && s == WK_ERR_INVALID_ARG; d++)
    if (wk_dcache_owns(wk_caches[d], dptr)) s = wk_dcache_free(wk_caches[d], dptr);
  pthread_mutex_unlock(&wk_cache_lock);
  if (s == WK_ERR_INVALID_ARG)
    return wk_fail(s, "wk_cuda_free(%p): not device memory from wk_cuda_malloc, or freed "
                   "already", dptr);
  return s;
}

wk_status wk_cuda_cache_release(void) {
  pthread_mutex_lock(&wk_cache_lock);
  wk_dcache *c = NULL;
  wk_status s = wk_current_cache(&c);
  if (s == WK_OK) s = wk_dcache_release(c);
  pthread_mutex_unlock(&wk_cache_lock);
  return s;
}

wk_status wk_cuda_memory(int device, wk_gpu_memory *out) {
  memset(out, 0, sizeof *out);
  if (device < 0 || device >= WK_CACHE_DEVICES)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU %d: no such device", device);
  pthread_mutex_lock(&wk_cache_lock);
  if (wk_caches[device]) wk_dcache_get_stats(wk_caches[device], &out->cache);
  pthread_mutex_unlock(&wk_cache_lock);
  wk_on_device g;
  WK_TRY(wk_device_enter((void *)(intptr_t)device, &g));
  return wk_device_leave(&g, wk_mem_info(&out->device_free_bytes, &out->device_total_bytes));
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
