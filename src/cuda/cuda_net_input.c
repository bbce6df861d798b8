/* cuda_net_input.c - a GPU network's input and output (cuda_net.c has the
 * design): the batch's way up through pinned memory on a stream of its own,
 * the next batch staged while this one computes, the waits that poll a
 * communicator's deadline, and the output read back in float32. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_net_impl.h"

/* *buf (capacity *cap) grown to n_bytes if smaller: pinned host memory or
 * device memory. Memory that cannot be had is no error here: *got false (and
 * no buffer) for the caller to do without; any other failure is one. Growing
 * frees first: pinned memory waits for the device there, device memory goes
 * back to the cache, which waits before handing it out again. */
static wk_status wk_grow_optional(void **buf, size_t *cap, size_t n_bytes, bool host,
                                  bool *got) {
  *got = true;
  if (n_bytes <= *cap) return WK_OK;
  if (!host) {
    WK_TRY(wk_cuda_free(*buf));
    *buf = NULL;
    *cap = 0;
    WK_TRY(wk_cuda_malloc_optional(buf, n_bytes, got));
    if (*got) *cap = n_bytes;
    return WK_OK;
  }
  if (*buf) WK_CUDA_TRY(cudaFreeHost(*buf));
  *buf = NULL;
  *cap = 0;
  void *p = NULL;
  const cudaError_t e = cudaHostAlloc(&p, n_bytes, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (e != cudaErrorMemoryAllocation)
      return wk_fail(WK_ERR_BACKEND, "CUDA: cudaHostAlloc(%zu) failed at %s:%d: %s (%s)",
                     n_bytes, __FILE__, __LINE__, cudaGetErrorName(e), cudaGetErrorString(e));
    *got = false;
    return WK_OK;
  }
  *buf = p;
  *cap = n_bytes;
  return WK_OK;
}

/* Slices of the upload: the DMA of one overlaps the host's copy of the next
 * into the staging memory, as the driver does for pageable memory. */
#define WK_UPLOAD_SLICE ((size_t)8 << 20)

/* n_bytes from host src to device dst, ahead of the work queued next on the
 * compute stream: through the pinned staging memory on the upload stream (see
 * cuda_net.c's top); straight from src on the compute stream, as pageable
 * memory, when the host cannot pin the staging memory (slower, the same bytes). */
static wk_status wk_upload(wk_gpu_net *net, void *dst, const void *src, size_t n_bytes) {
  /* every upload queued so far (a failed one's slices too) has read the
   * staging memory before it is written again */
  WK_CUDA_TRY(cudaStreamSynchronize(net->up_stream));
  bool pinned = false;
  WK_TRY(wk_grow_optional(&net->staging, &net->staging_bytes, n_bytes, true, &pinned));
  if (!pinned) {
    WK_CUDA_TRY(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyHostToDevice, net->stream));
    return WK_OK;
  }
  /* dst's previous contents may still be read by work queued on the compute stream */
  WK_CUDA_TRY(cudaEventRecord(net->up_clear, net->stream));
  WK_CUDA_TRY(cudaStreamWaitEvent(net->up_stream, net->up_clear, 0));
  for (size_t off = 0; off < n_bytes; off += WK_UPLOAD_SLICE) {
    const size_t k = n_bytes - off < WK_UPLOAD_SLICE ? n_bytes - off : WK_UPLOAD_SLICE;
    char *stage = (char *)net->staging + off;
    memcpy(stage, (const char *)src + off, k);
    WK_CUDA_TRY(cudaMemcpyAsync((char *)dst + off, stage, k, cudaMemcpyHostToDevice,
                                net->up_stream));
  }
  WK_CUDA_TRY(cudaEventRecord(net->up_done, net->up_stream));
  WK_CUDA_TRY(cudaStreamWaitEvent(net->stream, net->up_done, 0));
  return WK_OK;
}

/* Bytes of a batch of n rows as the host holds it. */
static size_t wk_input_bytes(const wk_gpu_net *net, bool u8, int64_t n) {
  return (size_t)(n * net->numel[0]) * (u8 ? 1 : sizeof(float));
}

/* Where a forward (synchronised batchnorm), a backward or a step in one call
 * queued collectives that no wait has seen run, waits for the compute stream
 * by polling with the communicator's deadline: a peer that died must not hang
 * this rank in a call that waits for the device (a copy to or from pageable
 * memory, a free, a pinning). Else nothing. Every entry point that blocks
 * calls it first. */
wk_status wk_collectives_wait(wk_gpu_net *net) {
  if (!net->comm || !net->collectives) return WK_OK;
  WK_TRY(wk_gpucomm_wait(net->comm, net->stream, net->collectives));
  net->collectives = NULL; /* seen run: later waits need no deadline until more are queued */
  return WK_OK;
}

/* Waits for the compute stream: polled after collectives, else
 * cudaStreamSynchronize. */
wk_status wk_stream_wait(wk_gpu_net *net) {
  if (net->comm && net->collectives) return wk_collectives_wait(net);
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  return WK_OK;
}

wk_status wk_cudanet_stage(wk_gpu_net *net, const wk_gpu_input *x, int64_t n) {
  if (n < 1 || n > (1 << 24) || !x || !x->data)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU stage: batch %lld", (long long)n);
  if (x->u8 && net->g.in_c != 3)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU stage: 8-bit input needs RGB");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  net->next_valid = false;
  const size_t bytes = wk_input_bytes(net, x->u8, n);
  /* the last staged copy has read next_host, and the compute stream next_dev */
  WK_CUDA_TRY(cudaEventSynchronize(net->next_done));
  /* growing frees and allocates, which wait for the whole device */
  if (bytes > net->next_dev_bytes || bytes > net->next_host_bytes)
    WK_TRY(wk_collectives_wait(net));
  /* no room on either side costs only the overlap: the forward uploads it */
  bool dev = false, pinned = false;
  if (bytes > net->next_dev_bytes) /* the device buffer's last reader is done */
    WK_CUDA_TRY(cudaEventSynchronize(net->next_free));
  WK_TRY(wk_grow_optional(&net->next_dev, &net->next_dev_bytes, bytes, false, &dev));
  if (!dev) return WK_OK;
  WK_TRY(wk_grow_optional(&net->next_host, &net->next_host_bytes, bytes, true, &pinned));
  if (!pinned) return WK_OK;
  memcpy(net->next_host, x->data, bytes); /* the host's share, while the device computes */
  cudaError_t e = cudaStreamWaitEvent(net->up_stream, net->next_free, 0);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(net->next_dev, net->next_host, bytes, cudaMemcpyHostToDevice,
                        net->up_stream);
  if (e == cudaSuccess) e = cudaEventRecord(net->next_done, net->up_stream);
  if (e != cudaSuccess) /* next_done may not cover a queued copy: let it finish first */
    (void)cudaStreamSynchronize(net->up_stream);
  WK_CUDA_TRY(e);
  net->next_valid = true;
  net->next_u8 = x->u8;
  net->next_n = n;
  return WK_OK;
}

/* The next batch up (wk_cudanet_stage) after a forward or a step was queued; best effort: the
 * work is queued, so a failure here must not skip its results (the next call then uploads its
 * batch, and an error that sticks shows at the synchronisation). Fails only where staging gave
 * up on a peer (its growth polled the queued work): that is the error. */
wk_status wk_stage_queued(wk_gpu_net *net, const wk_gpu_input *next, int64_t n) {
  const wk_status staged = wk_cudanet_stage(net, next, n);
  if (staged == WK_OK) return WK_OK;
  net->next_valid = false;
  return net->comm && wk_gpucomm_broken(net->comm) ? staged : WK_OK;
}

/* n_bytes of the batch into dst on the compute stream: the staged device copy
 * when x is the batch staged last (device to device, after its DMA), else up
 * from the host. Either way nothing stays staged. */
static wk_status wk_input_to(wk_gpu_net *net, const wk_gpu_input *x, int64_t n, void *dst,
                             size_t n_bytes) {
  const bool staged = x->staged && net->next_valid && net->next_n == n && net->next_u8 == x->u8;
  net->next_valid = false;
  if (!staged) return wk_upload(net, dst, x->data, n_bytes);
  cudaError_t e = cudaStreamWaitEvent(net->stream, net->next_done, 0);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(dst, net->next_dev, n_bytes, cudaMemcpyDeviceToDevice, net->stream);
  if (e == cudaSuccess) e = cudaEventRecord(net->next_free, net->stream);
  if (e != cudaSuccess) /* next_free may not cover a queued copy: let it finish first */
    (void)cudaStreamSynchronize(net->stream);
  WK_CUDA_TRY(e);
  net->staged_used++;
  return WK_OK;
}

/* The batch into value 0: floats as they are (in 16 bits through the
 * scratch), 8-bit pixels through the u8 buffer and the normalisation kernel. */
wk_status wk_load_input(wk_gpu_net *net, const wk_gpu_input *x, int64_t n) {
  const size_t elems = (size_t)(n * net->numel[0]);
  if (!x->u8 && !wk_half(net)) return wk_input_to(net, x, n, net->val[0], elems * sizeof(float));
  if (!x->u8) {
    WK_TRY(wk_input_to(net, x, n, net->scratch, elems * sizeof(float)));
    return wk_to_half(net, net->scratch, (int64_t)elems, net->val[0]);
  }
  if (net->g.in_c != 3) return wk_fail(WK_ERR_INVALID_ARG, "GPU forward: 8-bit input needs RGB");
  if (elems > net->u8_cap) {
    WK_TRY(wk_cuda_free(net->u8_in));
    net->u8_in = NULL;
    net->u8_cap = 0;
    WK_TRY(wk_cuda_malloc((void **)&net->u8_in, elems));
    net->u8_cap = elems;
  }
  WK_TRY(wk_input_to(net, x, n, net->u8_in, elems));
  const int e =
      wk_half(net)
          ? wk_launch_normalize_u8_h(wk_hkind(net), n, net->g.in_h, net->g.in_w, 3, net->u8_in,
                                     NULL, x->mean, x->std, net->val[0], net->stream)
          : wk_launch_normalize_u8_f32(n, net->g.in_h, net->g.in_w, 3, net->u8_in, NULL,
                                       x->mean, x->std, net->val[0], net->stream);
  return wk_kernel_try(e, "input normalisation");
}

/* The output value as float32: itself, or widened into the scratch. */
wk_status wk_output_f32(wk_gpu_net *net, const float **out) {
  const int last = net->n_values - 1;
  *out = net->val[last];
  if (!wk_half(net)) return WK_OK;
  WK_TRY(wk_from_half(net, net->val[last], net->batch * net->numel[last], net->scratch, false));
  *out = net->scratch;
  return WK_OK;
}
