/* cuda_comm.c - the gradient all-reduce of data-parallel training on GPUs:
 * NCCL, on a stream of its own, while backward is still running (PyTorch
 * DDP's scheme, as train/ddp.c does it on the CPU with MPI).
 *
 * Buckets are contiguous ranges of the device gradient arena, as train/ddp.c
 * makes them (the parameters in reverse arena order, the order backward
 * finishes them in, a bucket closed once it holds --bucket-mb). Each
 * bucket counts the parameters still without a gradient; after backward has
 * run node i (cuda_net.c calls wk_gpucomm_node_done for every node, skipped or
 * not), the counts of node i's parameters go down, and every complete bucket,
 * in index order, goes out: an event on the compute stream, the
 * communication stream waits for it, ncclAllReduce(ncclAvg) in place. The
 * order depends on the graph alone, so it is the same on every rank, as NCCL
 * requires. wk_gpucomm_finish sends whatever is left and makes the compute
 * stream wait for the communication stream, so everything queued after it
 * (the download of the gradients) sees the mean over the ranks.
 *
 * Nothing here waits without a deadline. The communicator is non-blocking
 * (config.blocking = 0): its creation and every call that answers
 * ncclInProgress are polled with ncclCommGetAsyncError until done, and the
 * end of a step (wk_gpucomm_wait) polls the compute stream instead of
 * synchronising with it. A peer that died or hangs therefore shows as a
 * timeout (or NCCL's own asynchronous error) naming what was waited for; the
 * communicator is then aborted (ncclCommAbort frees the GPU from the stuck
 * kernels) and the error goes up, where the caller stops every rank
 * (dist/dist.h: wk_dist_abort). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "cuda/cuda_backend.h"
#include "dist/dist.h"

_Static_assert(sizeof(ncclUniqueId) == WK_GPU_COMM_ID_BYTES, "cuda.h: WK_GPU_COMM_ID_BYTES");

/* Synchronised batchnorm's sums the host may post ahead of the device (see
 * wk_comm_sum). Between two sums the compute stream gets a few dozen commands
 * (a layer's convolution, batchnorm kernels, events), so this keeps the host
 * a few hundred commands ahead: below the driver's launch queue (of the order
 * of a thousand), with several layers of work still queued for the device. */
enum { WK_SUM_WINDOW = 16 };

typedef struct wk_gbucket {
  size_t lo, hi; /* arena elements [lo, hi) */
  int n_params, pending;
} wk_gbucket;

struct wk_gpucomm {
  ncclComm_t comm;
  cudaStream_t stream; /* communication */
  cudaEvent_t ready;   /* compute stream -> communication stream, reused per bucket */
  cudaEvent_t done;    /* communication stream -> compute stream */
  cudaEvent_t sum_done[WK_SUM_WINDOW]; /* the last sums' ends, a ring (wk_comm_sum) */
  unsigned long long n_sums;           /* sums posted so far */
  int rank, world;
  double timeout_s;
  bool broken;         /* aborted: no more NCCL calls */
  bool open;           /* a backward's all-reduce begun and not finished */
  wk_gbucket *buckets;
  int n_buckets, next_launch;
  int *param_bucket;   /* per parameter */
};

static void wk_nap(void) {
  const struct timespec ts = {0, 50 * 1000}; /* 50 us */
  nanosleep(&ts, NULL);
}

/* Aborts the communicator (after a failure: its kernels may be stuck) and
 * returns WK_ERR_BACKEND with the message already recorded. */
static wk_status wk_comm_broken(wk_gpucomm *c) {
  if (!c->broken) {
    c->broken = true;
    (void)ncclCommAbort(c->comm); /* best effort: the error that led here is the one to report */
    c->comm = NULL;
  }
  return WK_ERR_BACKEND;
}

static wk_status wk_comm_timeout(wk_gpucomm *c, const char *what) {
  /* NCCL connects at the first collectives: ranks that cannot reach each other
   * look like a dead peer there */
  wk_fail(WK_ERR_BACKEND, "NCCL: %s: no answer from the other ranks for %g s "
          "($WHISKER_DIST_TIMEOUT); rank %d of %d gives up (a rank that died, or ranks that "
          "cannot connect: NCCL_DEBUG=INFO says which; NCCL_P2P_DISABLE=1 where GPUs cannot "
          "reach each other directly, NCCL_SOCKET_IFNAME across machines)",
          what, c->timeout_s, c->rank, c->world);
  return wk_comm_broken(c);
}

/* Whether NCCL's last message says a device allocation failed: its own
 * ("Failed to CUDA calloc N bytes", "... calloc async") or CUDA's ("Cuda
 * failure 2 'out of memory'"). NCCL allocates its buffers as it connects,
 * which recent versions do at a communicator's first collectives (after the
 * network took its memory), so a batch that fits whisker's own allocations
 * can still leave NCCL without room at the first step. */
static bool wk_nccl_out_of_memory(const char *detail) {
  static const char *const marks[] = {"out of memory", "CUDA calloc", "CUDA malloc"};
  if (!detail) return false;
  for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
    if (strstr(detail, marks[i])) return true;
  return false;
}

static wk_status wk_comm_error(wk_gpucomm *c, ncclResult_t r, const char *what) {
  const char *detail = ncclGetLastError(c->comm);
  wk_fail(WK_ERR_BACKEND, "NCCL: %s failed on rank %d of %d: %s (%s)%s", what, c->rank, c->world,
          ncclGetErrorString(r), detail ? detail : "",
          wk_nccl_out_of_memory(detail) ? "; the device has no room left for NCCL's buffers, "
                                          "which it allocates at the first collectives: try a "
                                          "smaller --batch" : "");
  return wk_comm_broken(c);
}

/* Polls a non-blocking communicator until the call that answered r is done:
 * at once and then WK_SPIN_POLLS times more before napping between polls.
 * With several ranks NCCL launches each collective from a thread of its own and
 * answers ncclInProgress; the launch is done within microseconds, and a nap
 * first (50 us asked, more given) would cost that much per collective, some 165
 * per ResNet-50 step with synchronised batchnorm (a review's estimate, from
 * NCCL's source; not measured). */
enum { WK_SPIN_POLLS = 2000 };
static wk_status wk_comm_settle(wk_gpucomm *c, ncclResult_t r, const char *what) {
  const double deadline = wk_now_s() + c->timeout_s;
  for (int polls = 0; r == ncclInProgress; polls++) {
    if (wk_now_s() > deadline) return wk_comm_timeout(c, what);
    if (polls > WK_SPIN_POLLS) wk_nap();
    /* the poll's own failure is the one to report (ncclGetLastError says more) */
    const ncclResult_t q = ncclCommGetAsyncError(c->comm, &r);
    if (q != ncclSuccess) r = q;
  }
  return r == ncclSuccess ? WK_OK : wk_comm_error(c, r, what);
}

static wk_status wk_comm_streams(wk_gpucomm *c, int device) {
  WK_CUDA_TRY(cudaSetDevice(device));
  WK_CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  WK_CUDA_TRY(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming));
  WK_CUDA_TRY(cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming));
  for (int i = 0; i < WK_SUM_WINDOW; i++)
    WK_CUDA_TRY(cudaEventCreateWithFlags(&c->sum_done[i], cudaEventDisableTiming));
  return WK_OK;
}

/* Copies the caller's buckets, checking every range and index against g. */
static wk_status wk_comm_buckets(wk_gpucomm *c, const wk_gpu_graph *g, const wk_gpu_buckets *in) {
  const size_t np = g->n_params;
  if (!in || in->n < 0 || (size_t)in->n > (np ? np : 1) || (np && !in->param_bucket) ||
      (in->n && (!in->lo || !in->hi)))
    return wk_fail(WK_ERR_INVALID_ARG, "NCCL: malformed bucket table");
  c->param_bucket = malloc((np ? np : 1) * sizeof *c->param_bucket);
  c->buckets = calloc((size_t)in->n + 1, sizeof *c->buckets);
  if (!c->param_bucket || !c->buckets) return wk_fail(WK_ERR_NOMEM, "NCCL: out of memory");
  c->n_buckets = in->n;
  for (int i = 0; i < in->n; i++) {
    if (in->lo[i] > in->hi[i] || in->hi[i] > g->n_elems)
      return wk_fail(WK_ERR_INVALID_ARG, "NCCL: bucket %d [%zu, %zu) outside the arena of %zu",
                     i, in->lo[i], in->hi[i], g->n_elems);
    c->buckets[i] = (wk_gbucket){.lo = in->lo[i], .hi = in->hi[i]};
  }
  for (size_t k = 0; k < np; k++) {
    const int b = in->param_bucket[k];
    if (b < 0 || b >= in->n)
      return wk_fail(WK_ERR_INVALID_ARG, "NCCL: parameter %zu in bucket %d of %d", k, b, in->n);
    /* a parameter outside its bucket would be sent before its gradient is written, or
     * never averaged */
    const wk_param *p = &g->params[k];
    if (p->offset < in->lo[b] || p->offset + p->numel > in->hi[b])
      return wk_fail(WK_ERR_INVALID_ARG, "NCCL: parameter %s [%zu, %zu) is not inside its "
                     "bucket %d [%zu, %zu)", p->name, (size_t)p->offset,
                     (size_t)(p->offset + p->numel), b, in->lo[b], in->hi[b]);
    c->param_bucket[k] = b;
    c->buckets[b].n_params++;
  }
  return WK_OK;
}

wk_status wk_gpucomm_unique_id(void *id, size_t n) {
  if (n != sizeof(ncclUniqueId))
    return wk_fail(WK_ERR_INVALID_ARG, "NCCL: an id is %zu bytes, not %zu", sizeof(ncclUniqueId),
                   n);
  ncclUniqueId u;
  WK_NCCL_TRY(ncclGetUniqueId(&u));
  memcpy(id, &u, sizeof u);
  return WK_OK;
}

wk_status wk_gpucomm_create(const wk_gpu_graph *g, int device, const void *id, int rank,
                            int world, const wk_gpu_buckets *b, double timeout_s,
                            wk_gpucomm **out) {
  *out = NULL;
  if (world < 1 || rank < 0 || rank >= world || !id)
    return wk_fail(WK_ERR_INVALID_ARG, "NCCL: rank %d of %d", rank, world);
  wk_gpucomm *c = calloc(1, sizeof *c);
  if (!c) return wk_fail(WK_ERR_NOMEM, "NCCL: out of memory");
  c->rank = rank;
  c->world = world;
  c->timeout_s = timeout_s > 0 ? timeout_s : WK_DIST_TIMEOUT_DEFAULT_S;
  c->broken = true; /* until the communicator exists */
  wk_status s = wk_comm_buckets(c, g, b);
  if (s != WK_OK) goto fail;
#define WK_COMM_TRY(call)          \
  do {                             \
    s = (call);                    \
    if (s != WK_OK) goto fail;     \
  } while (0)
  WK_COMM_TRY(wk_comm_streams(c, device));
  /* NCCL's buffers do not come from the caching allocator: give it back what
   * nothing uses first */
  WK_COMM_TRY(wk_cuda_cache_release());
  ncclUniqueId u;
  memcpy(&u, id, sizeof u);
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&c->comm, world, u, rank, &cfg);
  if (r != ncclSuccess && r != ncclInProgress) {
    s = wk_fail(WK_ERR_BACKEND, "NCCL: creating the communicator of %d rank%s failed on rank "
                "%d: %s (%s)", world, world == 1 ? "" : "s", rank, ncclGetErrorString(r),
                ncclGetLastError(NULL));
    goto fail; /* destroy aborts whatever was made */
  }
  c->broken = false;
  WK_COMM_TRY(wk_comm_settle(c, r, "creating the communicator"));
#undef WK_COMM_TRY
  *out = c;
  return WK_OK;
fail:
  wk_gpucomm_destroy(c);
  return s;
}

/* Always ncclCommAbort: after a clean run nothing is in flight and it frees
 * the same as finalize + destroy, and after a failure (this rank's or a
 * peer's) finalize would wait for every rank to become quiescent, up to the
 * whole timeout, before the error could even be printed. */
void wk_gpucomm_destroy(wk_gpucomm *c) {
  if (!c) return;
  if (c->comm) (void)ncclCommAbort(c->comm);
  if (c->ready) (void)cudaEventDestroy(c->ready);
  if (c->done) (void)cudaEventDestroy(c->done);
  for (int i = 0; i < WK_SUM_WINDOW; i++)
    if (c->sum_done[i]) (void)cudaEventDestroy(c->sum_done[i]);
  if (c->stream) (void)cudaStreamDestroy(c->stream);
  free(c->buckets);
  free(c->param_bucket);
  free(c);
}

static wk_status wk_comm_check(const wk_gpucomm *c) {
  return c->broken ? wk_fail(WK_ERR_BACKEND, "NCCL: the communicator was aborted") : WK_OK;
}

wk_status wk_gpucomm_begin(wk_gpucomm *c) {
  WK_TRY(wk_comm_check(c));
  /* a backward that failed part-way left buckets in flight that nothing joined back to the
   * compute stream: the next one's gradients would race them. The ranks stop after a
   * failed step; a caller that goes on is refused. */
  if (c->open)
    return wk_fail(WK_ERR_BACKEND, "NCCL: the last gradient all-reduce was left unfinished "
                   "(a failed backward); the communicator cannot go on");
  c->open = true;
  for (int i = 0; i < c->n_buckets; i++) c->buckets[i].pending = c->buckets[i].n_params;
  c->next_launch = 0;
  return WK_OK;
}

/* Sends buckets in index order while the next one is complete; `all` sends
 * the rest regardless. */
static wk_status wk_comm_launch(wk_gpucomm *c, float *grads, cudaStream_t compute, bool all) {
  for (; c->next_launch < c->n_buckets; c->next_launch++) {
    const wk_gbucket *b = &c->buckets[c->next_launch];
    if (!all && b->pending > 0) break;
    WK_CUDA_TRY(cudaEventRecord(c->ready, compute));
    WK_CUDA_TRY(cudaStreamWaitEvent(c->stream, c->ready, 0));
    float *p = grads + b->lo;
    const ncclResult_t r = ncclAllReduce(p, p, b->hi - b->lo, ncclFloat32, ncclAvg, c->comm,
                                         c->stream);
    WK_TRY(wk_comm_settle(c, r, "the gradient all-reduce"));
  }
  return WK_OK;
}

wk_status wk_gpucomm_node_done(wk_gpucomm *c, const wk_node *nd, float *grads,
                               cudaStream_t compute) {
  WK_TRY(wk_comm_check(c));
  for (int k = 0; k < 2; k++)
    if (nd->param[k] >= 0) c->buckets[c->param_bucket[nd->param[k]]].pending--;
  return wk_comm_launch(c, grads, compute, false);
}

wk_status wk_gpucomm_finish(wk_gpucomm *c, float *grads, cudaStream_t compute) {
  WK_TRY(wk_comm_check(c));
  WK_TRY(wk_comm_launch(c, grads, compute, true));
  WK_CUDA_TRY(cudaEventRecord(c->done, c->stream));
  WK_CUDA_TRY(cudaStreamWaitEvent(compute, c->done, 0));
  c->open = false;
  return WK_OK;
}

/* pre then what, into buf: a failed poll's name, made only then. */
static const char *wk_poll_name(char *buf, size_t n, const char *pre, const char *what) {
  snprintf(buf, n, "%s%s", pre, what);
  return buf;
}

/* Polls, with the deadline, until the compute stream (ev NULL) or the event
 * ev has completed, or NCCL reports an error, which names pre and what. */
static wk_status wk_comm_poll(wk_gpucomm *c, cudaStream_t compute, cudaEvent_t ev,
                              const char *pre, const char *what) {
  char name[320];
  const double deadline = wk_now_s() + c->timeout_s;
  for (;;) {
    const cudaError_t e = ev ? cudaEventQuery(ev) : cudaStreamQuery(compute);
    /* "not ready" is no error, but the runtime keeps it as the last one, and
     * the next launch check (cudaGetLastError) would report it: clear it */
    if (e == cudaErrorNotReady) (void)cudaGetLastError();
    if (e != cudaSuccess && e != cudaErrorNotReady) WK_CUDA_TRY(e);
    /* NCCL's own error, also once more when the work has just finished */
    ncclResult_t r = ncclSuccess;
    const ncclResult_t q = ncclCommGetAsyncError(c->comm, &r);
    const ncclResult_t bad = q != ncclSuccess ? q : r != ncclInProgress ? r : ncclSuccess;
    if (bad != ncclSuccess)
      return wk_comm_error(c, bad, wk_poll_name(name, sizeof name, pre, what));
    if (e == cudaSuccess) return WK_OK;
    if (wk_now_s() > deadline)
      return wk_comm_timeout(c, wk_poll_name(name, sizeof name, pre, what));
    wk_nap();
  }
}

/* n elements of type t at buf summed over the ranks in place, between the
 * compute stream's work queued so far and what it queues next.
 * NCCL posts the sum and returns. Were a peer to hang, the sum's kernel would
 * spin, the compute stream would wait behind it, and the host would go on
 * queueing the step until the driver's launch queue filled, where a launch
 * blocks with no deadline and the rank hangs for good. So before posting a
 * sum the host waits, polling with the deadline, for the one WK_SUM_WINDOW
 * sums back to have finished. */
static wk_status wk_comm_sum(wk_gpucomm *c, void *buf, size_t n, ncclDataType_t t,
                             cudaStream_t compute, const char *what) {
  WK_TRY(wk_comm_check(c));
  cudaEvent_t end = c->sum_done[c->n_sums % WK_SUM_WINDOW];
  if (c->n_sums >= WK_SUM_WINDOW) WK_TRY(wk_comm_poll(c, NULL, end, "the sums before ", what));
  WK_CUDA_TRY(cudaEventRecord(c->ready, compute));
  WK_CUDA_TRY(cudaStreamWaitEvent(c->stream, c->ready, 0));
  const ncclResult_t r = ncclAllReduce(buf, buf, n, t, ncclSum, c->comm, c->stream);
  WK_TRY(wk_comm_settle(c, r, what));
  WK_CUDA_TRY(cudaEventRecord(end, c->stream));
  c->n_sums++;
  WK_CUDA_TRY(cudaStreamWaitEvent(compute, end, 0));
  return WK_OK;
}

wk_status wk_gpucomm_sum_f64(wk_gpucomm *c, double *buf, size_t n, cudaStream_t compute,
                             const char *what) {
  return wk_comm_sum(c, buf, n, ncclFloat64, compute, what);
}

wk_status wk_gpucomm_any(wk_gpucomm *c, int *flag, cudaStream_t compute, const char *what) {
  _Static_assert(sizeof(int) == 4, "ncclInt32 is the flag's type");
  return wk_comm_sum(c, flag, 1, ncclInt32, compute, what);
}

int wk_gpucomm_world(const wk_gpucomm *c) { return c->world; }

bool wk_gpucomm_broken(const wk_gpucomm *c) { return c->broken; }

wk_status wk_gpucomm_wait(wk_gpucomm *c, cudaStream_t compute, const char *what) {
  WK_TRY(wk_comm_check(c));
  return wk_comm_poll(c, compute, NULL, "", what);
}
