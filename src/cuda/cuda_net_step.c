/* cuda_net_step.c - a GPU network's loss and update (cuda_net.c has the
 * design): the softmax cross-entropy on the device, data parallelism's
 * communicator, the optimizer's step over the arenas, and the whole training
 * step in one call, captured as a CUDA graph once its shapes have warmed up. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_net_impl.h"

/* ------------------------------------------------------------------ the loss on the device */

/* The loss's buffers for n rows of k (grown, never shrunk). */
static wk_status wk_xent_buffers(wk_gpu_net *net, int64_t n, int64_t k) {
  if (!net->xent_sum) WK_TRY(wk_cuda_malloc((void **)&net->xent_sum, sizeof(double)));
  if (n <= net->xent_cap) return WK_OK;
  wk_graph_table_invalidate(&net->graphs); /* captured steps use the old buffers */
  void *old[4] = {net->xent_labels, net->xent_pred, net->xent_probs, net->xent_rows};
  net->xent_labels = net->xent_pred = NULL; /* gone even if a free below reports a fault */
  net->xent_probs = net->xent_rows = NULL;
  net->xent_cap = 0;
  wk_status s = WK_OK;
  for (int i = 0; i < 4; i++) {
    const wk_status f = wk_cuda_free(old[i]);
    if (s == WK_OK) s = f;
  }
  WK_TRY(s);
  s = wk_cuda_malloc((void **)&net->xent_labels, (size_t)n * sizeof(int32_t));
  if (s == WK_OK) s = wk_cuda_malloc((void **)&net->xent_pred, (size_t)n * sizeof(int32_t));
  if (s == WK_OK) s = wk_cuda_malloc((void **)&net->xent_probs, (size_t)(n * k) * sizeof(float));
  if (s == WK_OK) s = wk_cuda_malloc((void **)&net->xent_rows, (size_t)n * sizeof(float));
  if (s != WK_OK)
    return wk_no_room(s, wk_smaller_batch, "the loss of a batch of %lld", (long long)n);
  net->xent_cap = n;
  return WK_OK;
}

/* Queues the loss of the output value for the labels in xent_labels: the
 * probabilities, the rows' losses, their sum and, with `predicted`, the
 * predicted classes, all on the device. */
static wk_status wk_xent_queue(wk_gpu_net *net, double smoothing, bool predicted) {
  const int last = net->n_values - 1;
  const int64_t n = net->batch, k = net->numel[last];
  const float *logits = NULL;
  WK_TRY(wk_output_f32(net, &logits));
  WK_TRY(wk_kernel_try(wk_launch_softmax_xent_forward_f32(n, k, smoothing, logits,
                                                          net->xent_labels, net->xent_probs,
                                                          net->xent_rows, net->stream),
                       "softmax cross-entropy forward"));
  WK_TRY(wk_kernel_try(wk_launch_sum_f32(n, net->xent_rows, net->xent_sum, net->stream),
                       "loss sum"));
  if (predicted)
    WK_TRY(wk_kernel_try(wk_launch_argmax_rows_f32(n, k, net->xent_probs, net->xent_pred,
                                                   net->stream),
                         "predicted classes"));
  return WK_OK;
}

wk_status wk_cudanet_xent_forward(wk_gpu_net *net, const wk_gpu_xent *x, double *loss_sum) {
  if (!x || !x->labels || !loss_sum || !(x->smoothing >= 0.0 && x->smoothing <= 1.0))
    return wk_fail(WK_ERR_INVALID_ARG, "GPU loss: malformed request");
  if (!net->out_ready) return wk_fail(WK_ERR_INVALID_ARG, "GPU loss: no forward output to read");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  const int last = net->n_values - 1;
  const int64_t n = net->batch, k = net->numel[last];
  net->xent_ready = false;
  WK_TRY(wk_collectives_wait(net)); /* the copies below, with pageable memory, block */
  WK_TRY(wk_xent_buffers(net, n, k));
  /* pageable memory: staged by the driver before the call returns */
  WK_CUDA_TRY(cudaMemcpyAsync(net->xent_labels, x->labels, (size_t)n * sizeof(int32_t),
                              cudaMemcpyHostToDevice, net->stream));
  WK_TRY(wk_xent_queue(net, x->smoothing, x->predicted != NULL));
  if (x->predicted)
    WK_CUDA_TRY(cudaMemcpyAsync(x->predicted, net->xent_pred, (size_t)n * sizeof(int32_t),
                                cudaMemcpyDeviceToHost, net->stream));
  double sum = 0.0;
  WK_CUDA_TRY(cudaMemcpyAsync(&sum, net->xent_sum, sizeof sum, cudaMemcpyDeviceToHost,
                              net->stream));
  WK_TRY(wk_stream_wait(net));
  *loss_sum = sum;
  net->xent_smoothing = x->smoothing;
  net->xent_ready = net->last_train; /* backward needs a training forward */
  return WK_OK;
}

wk_status wk_cudanet_xent_backward(wk_gpu_net *net, float dloss) {
  if (!net->last_train || !net->xent_ready)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU backward from the loss needs a training forward "
                   "and its loss first");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  return wk_backward_from(net, NULL, dloss);
}

/* ------------------------------------------------------------------ data parallelism */

wk_status wk_cudanet_comm_unique_id(unsigned char *id) {
  return wk_gpucomm_unique_id(id, WK_GPU_COMM_ID_BYTES);
}

wk_status wk_cudanet_attach_comm(wk_gpu_net *net, const unsigned char *id, int rank, int world,
                                 const wk_gpu_buckets *b, double timeout_s, bool sync_bn) {
  if (net->comm) return wk_fail(WK_ERR_INVALID_ARG, "NCCL: a communicator is attached already");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  /* the sums' buffers before the communicator, whose creation is collective */
  if (sync_bn && net->widest_bn) WK_TRY(wk_own_bn_buffers(net));
  WK_TRY(wk_gpucomm_create(&net->g, net->device, id, rank, world, b, timeout_s, &net->comm));
  net->sync_bn = sync_bn && net->widest_bn;
  return WK_OK;
}

/* ------------------------------------------------------------------ the step on the device */

/* The device arena `which` and its length; state arrays are made (zeroed) here. */
static wk_status wk_arena(wk_gpu_net *net, wk_gpu_arena which, float **dev, size_t *n) {
  switch (which) {
  case WK_GPU_WEIGHTS: *dev = net->weights, *n = net->g.n_elems; return WK_OK;
  case WK_GPU_GRADS: *dev = net->grads, *n = net->g.n_elems; return WK_OK;
  case WK_GPU_BUFFERS: *dev = net->buf_data, *n = net->g.n_buffer_elems; return WK_OK;
  case WK_GPU_STATE0:
  case WK_GPU_STATE1: {
    float **s = &net->state[which - WK_GPU_STATE0];
    if (!*s && net->g.n_elems) {
      const wk_status a = wk_cuda_malloc((void **)s, net->g.n_elems * sizeof(float));
      /* with no batch's buffers held yet (the first step in one call makes the
       * state first), no batch size helps: the network alone is too large */
      if (a != WK_OK)
        return wk_no_room(a, net->cap > 0 ? wk_smaller_batch
                                          : "no batch size helps: a smaller model, an "
                                            "optimizer with less state, or another GPU",
                          "%zu MiB of optimizer state beside the network's weights and "
                          "gradients", (net->g.n_elems * 4) >> 20);
      WK_CUDA_TRY(cudaMemsetAsync(*s, 0, net->g.n_elems * sizeof(float), net->stream));
    }
    *dev = *s, *n = net->g.n_elems;
    return WK_OK;
  }
  }
  return wk_fail(WK_ERR_INVALID_ARG, "GPU: no arena %d", (int)which);
}

wk_status wk_cudanet_copy(wk_gpu_net *net, wk_gpu_arena which, float *host, bool to_device) {
  WK_CUDA_TRY(cudaSetDevice(net->device));
  WK_TRY(wk_collectives_wait(net)); /* the pageable copy and the synchronisation block */
  float *dev = NULL;
  size_t n = 0;
  WK_TRY(wk_arena(net, which, &dev, &n));
  if (n && !host) return wk_fail(WK_ERR_INVALID_ARG, "GPU copy: no host arena");
  if (to_device && which == WK_GPU_WEIGHTS) net->wh_stale = true;
  if (n)
    WK_CUDA_TRY(cudaMemcpyAsync(to_device ? (void *)dev : (void *)host,
                                to_device ? (const void *)host : (const void *)dev,
                                n * sizeof(float),
                                to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                net->stream));
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  return WK_OK;
}

wk_status wk_cudanet_grads_finite(wk_gpu_net *net, bool *finite) {
  WK_CUDA_TRY(cudaSetDevice(net->device));
  WK_TRY(wk_collectives_wait(net)); /* the synchronisation below blocks */
  if (!net->flag) WK_TRY(wk_cuda_malloc((void **)&net->flag, sizeof(int)));
  int bad = 0;
  WK_CUDA_TRY(cudaMemsetAsync(net->flag, 0, sizeof(int), net->stream));
  WK_TRY(wk_kernel_try(wk_launch_nonfinite_f32((int64_t)net->g.n_elems, net->grads, net->flag,
                                               net->stream),
                       "non-finite check"));
  WK_CUDA_TRY(cudaMemcpyAsync(&bad, net->flag, sizeof bad, cudaMemcpyDeviceToHost, net->stream));
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  *finite = bad == 0;
  return WK_OK;
}

wk_status wk_cudanet_scale_grads(wk_gpu_net *net, float s) {
  WK_CUDA_TRY(cudaSetDevice(net->device));
  return wk_kernel_try(wk_launch_scale_f32((int64_t)net->g.n_elems, s, net->grads, net->stream),
                       "gradient unscale");
}

/* The update's request checked: its shape, and every segment inside the arena. */
static wk_status wk_optim_check(const wk_gpu_net *net, const wk_gpu_optim *o) {
  const size_t np = net->g.n_params;
  if (!o || o->n_segments < 0 || (size_t)o->n_segments > np || (o->n_segments && !o->segs) ||
      o->n_state < 0 || o->n_state > 2 || (o->adamw && o->n_state != 2))
    return wk_fail(WK_ERR_INVALID_ARG, "GPU optimizer step: malformed request");
  for (int i = 0; i < o->n_segments; i++) {
    const wk_gpu_optim_segment *s = &o->segs[i];
    if (s->offset < 0 || s->numel < 0 || (size_t)(s->offset + s->numel) > net->g.n_elems)
      return wk_fail(WK_ERR_INVALID_ARG, "GPU optimizer step: segment %d [%lld, +%lld) outside "
                     "the arena of %zu", i, (long long)s->offset, (long long)s->numel,
                     net->g.n_elems);
  }
  return WK_OK;
}

/* The kernels' segments (wk_kernels.h) of a checked request, into dst (host). */
static void wk_optim_segments(const wk_gpu_optim *o, wk_optim_segment *dst) {
  for (int i = 0; i < o->n_segments; i++) {
    const wk_gpu_optim_segment *s = &o->segs[i];
    dst[i] = (wk_optim_segment){
        .offset = s->offset, .numel = s->numel, .neg_lr = s->neg_lr, .wd = s->wd,
        .momentum = s->momentum, .first = s->first, .decay = s->decay, .b1 = s->b1,
        .c1 = s->c1, .b2 = s->b2, .c2 = s->c2, .bc2_sqrt = s->bc2_sqrt, .eps = s->eps,
        .neg_step = s->neg_step};
  }
}

wk_status wk_cudanet_optim_step(wk_gpu_net *net, const wk_gpu_optim *o) {
  const size_t np = net->g.n_params;
  WK_TRY(wk_optim_check(net, o));
  WK_CUDA_TRY(cudaSetDevice(net->device));
  if (o->n_segments == 0) return WK_OK; /* everything frozen */
  WK_TRY(wk_collectives_wait(net)); /* the pageable copy and the synchronisation block */
  if (!net->segs_dev) /* the device's first: a failure leaves neither made */
    WK_TRY(wk_cuda_malloc((void **)&net->segs_dev, np * sizeof *net->segs_dev));
  if (!net->segs_host) {
    net->segs_host = malloc(np * sizeof *net->segs_host);
    if (!net->segs_host) return wk_fail(WK_ERR_NOMEM, "GPU optimizer step: out of memory");
  }
  wk_optim_segments(o, net->segs_host);
  WK_CUDA_TRY(cudaMemcpyAsync(net->segs_dev, net->segs_host,
                              (size_t)o->n_segments * sizeof *net->segs_dev,
                              cudaMemcpyHostToDevice, net->stream));
  float *st[2] = {NULL, NULL};
  size_t n = 0;
  for (int k = 0; k < o->n_state; k++)
    WK_TRY(wk_arena(net, (wk_gpu_arena)(WK_GPU_STATE0 + k), &st[k], &n));
  int e = o->adamw ? wk_launch_adamw_f32(o->n_segments, net->segs_dev, net->weights, net->grads,
                                         st[0], st[1], net->stream)
                   : wk_launch_sgd_f32(o->n_segments, net->segs_dev, o->nesterov, net->weights,
                                       net->grads, st[0], net->stream);
  WK_TRY(wk_kernel_try(e, o->adamw ? "AdamW step" : "SGD step"));
  net->wh_stale = true;
  /* segs_host is rewritten by the next step: the copy must be done by then */
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  return WK_OK;
}

/* ------------------------------------------------------------------ the fused step and its graphs */

/* The values a step changes, copied up before it: a captured graph's kernels
 * read them from device memory, so one graph serves every step. In the
 * pinned and the device memory the update's segments follow (n_params at
 * most); in the pinned memory the readback (wk_step_back) follows those. */
typedef struct wk_step_vals {
  uint64_t seed_step[2]; /* dropout: the seed and the step */
  double xent_scale;     /* the loss gradient's factor, dloss / batch (as wk_backward_queue) */
  float inv_scale;       /* fp16: 1 / the loss scale */
  int32_t unused;
} wk_step_vals;

typedef struct wk_step_back {
  double loss_sum;
  int32_t flag; /* nonzero: a row's loss or a gradient is NaN or infinite */
  int32_t unused;
} wk_step_back;

_Static_assert(sizeof(wk_step_vals) % 8 == 0 && sizeof(wk_optim_segment) % 8 == 0,
               "the step's values and segments are laid out back to back");

static size_t wk_vals_bytes(const wk_gpu_net *net) {
  return sizeof(wk_step_vals) + net->g.n_params * sizeof(wk_optim_segment);
}

/* Device addresses inside vals_dev. */
static const uint64_t *wk_dev_seed_step(const wk_gpu_net *net) {
  return (const uint64_t *)((const char *)net->vals_dev + offsetof(wk_step_vals, seed_step));
}
static const double *wk_dev_xent_scale(const wk_gpu_net *net) {
  return (const double *)((const char *)net->vals_dev + offsetof(wk_step_vals, xent_scale));
}
static const float *wk_dev_inv_scale(const wk_gpu_net *net) {
  return (const float *)((const char *)net->vals_dev + offsetof(wk_step_vals, inv_scale));
}
static const wk_optim_segment *wk_dev_segs(const wk_gpu_net *net) {
  return (const wk_optim_segment *)((const char *)net->vals_dev + sizeof(wk_step_vals));
}
static wk_step_back *wk_host_back(const wk_gpu_net *net) {
  return (wk_step_back *)((char *)net->vals_host + wk_vals_bytes(net));
}

/* The fused step's own memory, made at its first use (before any capture):
 * the flag, the pinned and the device copies of the step's values, and the
 * event of the copy. */
static wk_status wk_step_memory(wk_gpu_net *net) {
  if (!net->flag) WK_TRY(wk_cuda_malloc((void **)&net->flag, sizeof(int)));
  if (!net->vals_read)
    WK_CUDA_TRY(cudaEventCreateWithFlags(&net->vals_read, cudaEventDisableTiming));
  if (!net->vals_host)
    WK_CUDA_TRY(cudaHostAlloc(&net->vals_host, wk_vals_bytes(net) + sizeof(wk_step_back),
                              cudaHostAllocDefault));
  if (!net->vals_dev) WK_TRY(wk_cuda_malloc(&net->vals_dev, wk_vals_bytes(net)));
  return WK_OK;
}

/* This step's values into the pinned memory and up, queued on the stream
 * ahead of the step (outside any graph). */
static wk_status wk_step_vals_upload(wk_gpu_net *net, const wk_gpu_step *s) {
  /* the previous step's copy has read the pinned memory (an event never
   * recorded counts as done) */
  WK_CUDA_TRY(cudaEventSynchronize(net->vals_read));
  wk_step_vals *v = net->vals_host;
  *v = (wk_step_vals){.seed_step = {s->drop.seed, s->drop.step},
                      .xent_scale = (double)s->dloss / (double)s->n,
                      .inv_scale = s->inv_scale};
  wk_optim_segments(&s->optim, (wk_optim_segment *)(v + 1));
  const size_t n_bytes = sizeof *v + (size_t)s->optim.n_segments * sizeof(wk_optim_segment);
  cudaError_t e =
      cudaMemcpyAsync(net->vals_dev, net->vals_host, n_bytes, cudaMemcpyHostToDevice, net->stream);
  if (e == cudaSuccess) e = cudaEventRecord(net->vals_read, net->stream);
  if (e != cudaSuccess) /* vals_read may not cover a queued copy: let it finish first */
    (void)cudaStreamSynchronize(net->stream);
  WK_CUDA_TRY(e);
  return WK_OK;
}

/* The step's work from the uploaded batch to the end of the update, queued on
 * the stream and waited for by nothing: what a graph captures. Every value
 * that changes from step to step is read on the device (wk_step_vals); nothing
 * here allocates, touches host memory or synchronises. st: the update's state
 * arrays (o->n_state of them). */
static wk_status wk_step_queue(wk_gpu_net *net, const wk_gpu_step *s, float *const st[2]) {
  const wk_gpu_optim *o = &s->optim;
  const uint64_t *seed_step = wk_dev_seed_step(net);
  const int64_t n_elems = (int64_t)net->g.n_elems;
  /* bf16, fp16: the 16-bit weights are made inside every step, as the
   * uncaptured steps make them after every update */
  net->wh_stale = true;
  WK_TRY(wk_forward_nodes(net, true, &s->drop, seed_step));
  WK_CUDA_TRY(cudaMemsetAsync(net->flag, 0, sizeof(int), net->stream));
  WK_TRY(wk_xent_queue(net, s->xent.smoothing, s->xent.predicted != NULL));
  WK_TRY(wk_kernel_try(wk_launch_nonfinite_f32(net->batch, net->xent_rows, net->flag,
                                               net->stream),
                       "non-finite check of the loss"));
  WK_TRY(wk_backward_queue(net, NULL, 0.0f, wk_dev_xent_scale(net), seed_step));
  /* data parallelism: the ranks' mean gradients are the ones checked and used */
  if (net->comm) WK_TRY(wk_gpucomm_finish(net->comm, net->grads, net->stream));
  WK_TRY(wk_kernel_try(wk_launch_nonfinite_f32(n_elems, net->grads, net->flag, net->stream),
                       "non-finite check"));
  /* each rank checked its own loss: the update runs on every rank or on none */
  if (net->comm) WK_TRY(wk_gpucomm_any(net->comm, net->flag, net->stream, "the step's check"));
  if (s->unscale)
    WK_TRY(wk_kernel_try(wk_launch_scale_unless_f32(n_elems, wk_dev_inv_scale(net), net->flag,
                                                    net->grads, net->stream),
                         "gradient unscale"));
  if (o->n_segments == 0) return WK_OK; /* everything frozen */
  const int e = o->adamw ? wk_launch_adamw_unless_f32(o->n_segments, wk_dev_segs(net),
                                                      net->weights, net->grads, st[0], st[1],
                                                      net->flag, net->stream)
                         : wk_launch_sgd_unless_f32(o->n_segments, wk_dev_segs(net),
                                                    o->nesterov, net->weights, net->grads,
                                                    st[0], net->flag, net->stream);
  return wk_kernel_try(e, o->adamw ? "AdamW step" : "SGD step");
}

/* Captures wk_step_queue into *out. A failure ends the capture, leaves the
 * stream as it was before it (nothing queued by the capture runs) and clears
 * the runtime's error, which a capture's errors never make sticky; *fatal
 * says the stream could not be brought out of capture (then nothing more can
 * run on it). */
static wk_status wk_step_capture(wk_gpu_net *net, const wk_gpu_step *s, float *const st[2],
                                 cudaGraphExec_t *out, bool *fatal) {
  *out = NULL;
  *fatal = false;
  const cudaError_t b = cudaStreamBeginCapture(net->stream, cudaStreamCaptureModeThreadLocal);
  if (b != cudaSuccess) {
    (void)cudaGetLastError();
    return wk_fail(WK_ERR_BACKEND, "cudaStreamBeginCapture: %s (%s)", cudaGetErrorName(b),
                   cudaGetErrorString(b));
  }
  const wk_status q = wk_step_queue(net, s, st);
  char why[384] = "";
  if (q != WK_OK) snprintf(why, sizeof why, "%s", wk_last_error());
  cudaGraph_t graph = NULL;
  const cudaError_t e = cudaStreamEndCapture(net->stream, &graph);
  (void)cudaGetLastError();
  enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  const cudaError_t ce = cudaStreamIsCapturing(net->stream, &cs);
  if (ce != cudaSuccess || cs != cudaStreamCaptureStatusNone) {
    *fatal = true;
    if (graph) (void)cudaGraphDestroy(graph);
    return wk_fail(WK_ERR_BACKEND, "CUDA: the stream is still capturing after "
                   "cudaStreamEndCapture (%s)", cudaGetErrorString(ce));
  }
  if (q != WK_OK || e != cudaSuccess) {
    if (graph) (void)cudaGraphDestroy(graph);
    if (q != WK_OK) return wk_fail(WK_ERR_BACKEND, "capturing the step: %s", why);
    return wk_fail(WK_ERR_BACKEND, "cudaStreamEndCapture: %s (%s)", cudaGetErrorName(e),
                   cudaGetErrorString(e));
  }
  cudaGraphExec_t exec = NULL;
  const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
  const cudaError_t de = cudaGraphDestroy(graph); /* the executable keeps what it needs */
  if (ie != cudaSuccess || de != cudaSuccess) {
    (void)cudaGetLastError();
    if (ie == cudaSuccess) (void)cudaGraphExecDestroy(exec);
    const cudaError_t f = ie != cudaSuccess ? ie : de;
    return wk_fail(WK_ERR_BACKEND, "%s: %s (%s)", ie != cudaSuccess ? "cudaGraphInstantiate"
                   : "cudaGraphDestroy", cudaGetErrorName(f), cudaGetErrorString(f));
  }
  *out = exec;
  return WK_OK;
}

/* Turns the net's graphs off for good (freeing them), as a failed capture
 * does: `why` goes to the step's result, once, and the step runs uncaptured. */
static void wk_graphs_off(wk_gpu_net *net, wk_gpu_step_result *r, const char *why) {
  snprintf(net->graph_note, sizeof net->graph_note, "%s", why);
  r->graph_warning = net->graph_note;
  wk_graph_table_disable(&net->graphs);
}

/* Launches a captured step. A launch that fails is taken to have queued
 * nothing (CUDA's documentation implies it, not states it: were part of the
 * graph queued, the uncaptured step after it would update twice); if its
 * error is not sticky (a first cudaGetLastError clears it, a second finds
 * none: a launch short of resources, say) graphs go off and *plain asks the
 * caller to queue the step uncaptured; a sticky error (the device is lost,
 * the second call still answers it) fails the step. */
static wk_status wk_graph_launch(wk_gpu_net *net, cudaGraphExec_t exec, wk_gpu_step_result *r,
                                 bool *plain) {
  *plain = false;
  const cudaError_t e = cudaGraphLaunch(exec, net->stream);
  if (e == cudaSuccess) return WK_OK;
  (void)cudaGetLastError();
  const cudaError_t sticky = cudaGetLastError();
  if (sticky != cudaSuccess)
    return wk_fail(WK_ERR_BACKEND, "cudaGraphLaunch: %s (%s)", cudaGetErrorName(sticky),
                   cudaGetErrorString(sticky));
  char why[256];
  snprintf(why, sizeof why, "cudaGraphLaunch: %s (%s)", cudaGetErrorName(e),
           cudaGetErrorString(e));
  wk_graphs_off(net, r, why);
  *plain = true;
  return WK_OK;
}

/* The step's work, replayed, captured and launched, or queued plainly (see
 * cuda.h). *ran_plain: queued plainly at a key that warms up. */
static wk_status wk_step_run(wk_gpu_net *net, const wk_gpu_step *s, float *const st[2],
                             wk_gpu_step_result *r, wk_graph_slot **warming) {
  *warming = NULL;
  /* profiling times each node with events: the step runs uncaptured */
  if (!s->graphs || net->prof) return wk_step_queue(net, s, st);
  const wk_graph_key key = {.batch = s->n, .drop_first = s->drop.first,
                            .smoothing = s->xent.smoothing, .n_segments = s->optim.n_segments,
                            .n_state = s->optim.n_state, .adamw = s->optim.adamw,
                            .nesterov = s->optim.nesterov, .unscale = s->unscale,
                            .predicted = s->xent.predicted != NULL};
  wk_graph_slot *slot = NULL;
  const wk_graph_action a = wk_graph_table_lookup(&net->graphs, &key, &slot);
  bool plain = false;
  if (a == WK_GRAPH_REPLAY) {
    WK_TRY(wk_graph_launch(net, (cudaGraphExec_t)slot->exec, r, &plain));
    if (!plain) {
      wk_graph_table_replayed(&net->graphs, slot);
      return WK_OK;
    }
  } else if (a == WK_GRAPH_CAPTURE) {
    cudaGraphExec_t exec = NULL;
    bool fatal = false;
    const wk_status c = wk_step_capture(net, s, st, &exec, &fatal);
    if (fatal) return c;
    if (c == WK_OK) {
      wk_graph_table_captured(&net->graphs, slot, exec);
      WK_TRY(wk_graph_launch(net, exec, r, &plain));
      if (!plain) return WK_OK;
    } else {
      wk_graphs_off(net, r, wk_last_error());
    }
  } else {
    *warming = slot;
  }
  return wk_step_queue(net, s, st);
}

wk_status wk_cudanet_train_step(wk_gpu_net *net, const wk_gpu_step *s, wk_gpu_step_result *r) {
  if (!s || !r || s->n < 1 || s->n > (1 << 24) || !s->in.data || !s->xent.labels ||
      !(s->xent.smoothing >= 0.0 && s->xent.smoothing <= 1.0))
    return wk_fail(WK_ERR_INVALID_ARG, "GPU step: malformed request");
  *r = (wk_gpu_step_result){0};
  WK_TRY(wk_optim_check(net, &s->optim));
  if (net->comm && s->graphs)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU step: no CUDA graphs with data parallelism (NCCL)");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  const int last = net->n_values - 1;
  const int64_t n = s->n;
  net->out_ready = false;
  net->xent_ready = false;
  net->last_train = false; /* an earlier forward's values are overwritten below */
  net->trains = true;
  WK_TRY(wk_collectives_wait(net)); /* an earlier forward's, not waited for yet */
  /* what the work needs, made or grown outside any capture (moving a buffer
   * frees the graphs that used it) */
  WK_TRY(wk_prepare_batch(net, n, net->algo_mode != WK_ALGO_HEURISTIC, true));
  WK_TRY(wk_xent_buffers(net, n, net->numel[last]));
  WK_TRY(wk_step_memory(net));
  float *st[2] = {NULL, NULL};
  size_t n_state_elems = 0;
  for (int k = 0; k < s->optim.n_state; k++)
    WK_TRY(wk_arena(net, (wk_gpu_arena)(WK_GPU_STATE0 + k), &st[k], &n_state_elems));
  /* what it reads, up before it */
  WK_TRY(wk_load_input(net, &s->in, n));
  /* pageable memory: staged by the driver before the call returns */
  WK_CUDA_TRY(cudaMemcpyAsync(net->xent_labels, s->xent.labels, (size_t)n * sizeof(int32_t),
                              cudaMemcpyHostToDevice, net->stream));
  WK_TRY(wk_step_vals_upload(net, s));
  net->drop = s->drop; /* backward's dropout reads its first sample */
  net->xent_smoothing = s->xent.smoothing;
  wk_graph_slot *warming = NULL;
  net->collectives = NULL;
  const wk_status run = wk_step_run(net, s, st, r, &warming);
  /* the gradients' all-reduce and the check's, after synchronised batchnorm's */
  if (net->comm) net->collectives = "the training step";
  /* the captured conversion marked the 16-bit weights current, but the step
   * may have failed after the update changed the weights: make them again */
  net->wh_stale = true;
  WK_TRY(run);
  /* the next batch up while the step computes (its update included) */
  if (s->next) WK_TRY(wk_stage_queued(net, s->next, s->next_n));
  /* with peers, the wait for the step polls with the communicator's deadline,
   * before the copies below wait without one */
  if (net->comm) {
    WK_TRY(wk_gpucomm_wait(net->comm, net->stream, "the training step"));
    net->collectives = NULL;
  }
  /* what comes back, after it */
  wk_step_back *back = wk_host_back(net);
  if (s->xent.predicted)
    WK_CUDA_TRY(cudaMemcpyAsync(s->xent.predicted, net->xent_pred, (size_t)n * sizeof(int32_t),
                                cudaMemcpyDeviceToHost, net->stream));
  WK_CUDA_TRY(cudaMemcpyAsync(&back->loss_sum, net->xent_sum, sizeof back->loss_sum,
                              cudaMemcpyDeviceToHost, net->stream));
  WK_CUDA_TRY(cudaMemcpyAsync(&back->flag, net->flag, sizeof back->flag,
                              cudaMemcpyDeviceToHost, net->stream));
  WK_CUDA_TRY(cudaStreamSynchronize(net->stream));
  if (warming) wk_graph_table_ran_plain(&net->graphs, warming);
  WK_TRY(wk_prof_collect(net));
  r->loss_sum = back->loss_sum;
  r->applied = back->flag == 0;
  net->last_train = false; /* backward has consumed the forward */
  net->out_ready = true;
  return WK_OK;
}

wk_status wk_cudanet_graph_stats(wk_gpu_net *net, wk_gpu_graph_stats *out) {
  if (!out) return wk_fail(WK_ERR_INVALID_ARG, "GPU graph stats: no output");
  *out = (wk_gpu_graph_stats){.captured = net->graphs.captured,
                              .replayed = net->graphs.replayed,
                              .invalidations = net->graphs.invalidations,
                              .off = net->graphs.off, .staged = net->staged_used,
                              .bn_fuse_groups = net->fuse_groups,
                              .bn_solo_groups = net->fuse_solos,
                              .bn_fused_runs = net->fused_runs,
                              .bn_own_runs = net->own_runs,
                              .bn_infer_fused_runs = net->infer_fused_runs};
  for (int j = 0; j < net->g.n_nodes; j++) {
    const wk_gnode *s = &net->gn[j];
    out->bn_fuse_refused += s->fuse_bn >= 0 && (s->fuse_off || s->fuse_skip || net->sync_bn ||
                                                net->gn[s->fuse_bn].bn_own);
  }
  out->values_shared = net->vals_shared;
  out->value_bytes = net->val_arena_bytes;
  for (int v = 0; !net->vals_shared && net->cap > 0 && v < net->n_values; v++)
    if (net->vroot[v] == v) out->value_bytes += (size_t)(net->cap * net->numel[v]) * wk_esize(net);
  snprintf(out->bn_fuse_note, sizeof out->bn_fuse_note, "%s", net->fuse_note);
  snprintf(out->bn_own_note, sizeof out->bn_own_note, "%s", net->own_note);
  return WK_OK;
}
