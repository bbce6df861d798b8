/* fake_nccl.c - the NCCL calls of the GPU backend, on the host, for ONE rank
 * (see fake.h).
 *
 * Implemented, under nccl.h's declarations: ncclGetVersion, ncclGetUniqueId,
 * ncclCommInitRankConfig, ncclAllReduce, ncclCommGetAsyncError,
 * ncclCommAbort, ncclGetErrorString, ncclGetLastError.
 *
 * - One process, one rank: a communicator of nranks != 1 is refused with
 *   ncclInvalidUsage and the last error "fake NCCL: one rank only"; rank
 *   must be 0. The unique id must come from ncclGetUniqueId (a marker in it
 *   is checked: a real rank given garbage would fail to bootstrap).
 * - ncclAllReduce over one rank leaves recvbuff = op(sendbuff) elementwise,
 *   which for every built-in op (sum, prod, max, min, and avg: the sum
 *   divided by 1) and every built-in type is sendbuff itself: a copy, or
 *   nothing in place (sendbuff == recvbuff, as NCCL's in-place rule says).
 *   The work goes through wk_fake_enqueue on the call's stream; when it runs
 *   it checks that both buffers lie inside live device allocations.
 * - Non-blocking communicators (config->blocking = 0) behave as NCCL
 *   documents they may: ncclCommInitRankConfig and ncclAllReduce return
 *   ncclInProgress, and the operation completes (the all-reduce is only then
 *   put on its stream) at the next ncclCommGetAsyncError, which then reports
 *   ncclSuccess. Any other call on the communicator before that is refused
 *   with ncclInvalidArgument (NCCL: the previous operation must be seen to
 *   return ncclSuccess first), so a caller that forgets to poll is caught.
 * - After ncclCommAbort the communicator is gone: using it again (abort
 *   included) is ncclInvalidArgument, with a line on stderr, as callers often
 *   discard ncclCommAbort's result. A pointer that never was a communicator
 *   dies (real NCCL: undefined behaviour).
 * - ncclCommGetAsyncError reports ncclSuccess (nothing here fails
 *   asynchronously) unless completing a deferred all-reduce failed to
 *   enqueue (then ncclUnhandledCudaError).
 *
 * Not implemented: every other NCCL function (absent, so using one fails to
 * link), user-defined reduction ops (ncclRedOpCreatePreMulSum's handles are
 * refused as invalid ops), more than one rank, and the config fields other
 * than blocking (performance and sharing knobs, accepted and ignored), the
 * NCCL_* environment variables. */
#include <nccl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

#define WK_LIB "NCCL"

/* ------------------------------------------------------------------ state */

/* A pending all-reduce: sendbuff, recvbuff and their length in bytes. */
typedef struct wk_reduce_job {
  const void *send;
  void *recv;
  size_t bytes;
} wk_reduce_job;

struct ncclComm {
  struct ncclComm *next; /* every communicator ever made (g_comms) */
  bool live;             /* false after ncclCommAbort */
  bool blocking;         /* config->blocking (1 when unset, NCCL's default) */
  int rank, nranks;
  /* ncclSuccess, or ncclInProgress from a non-blocking call until the
   * ncclCommGetAsyncError that completes it, or an asynchronous error */
  ncclResult_t state;
  bool has_pending; /* a non-blocking all-reduce not yet put on its stream */
  wk_reduce_job pending;
  cudaStream_t pending_stream;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* Aborted communicators stay on this list (a few small structs per process),
 * so that one used after ncclCommAbort is recognised as such. */
static struct ncclComm *g_comms;
/* ncclGetLastError's text: documented as the last error that occurred in
 * NCCL, not cleared by reading it. */
static char g_last_error[256];

/* 17 bytes at the start of every id from ncclGetUniqueId */
static const char wk_id_magic[] = "whisker-fake-nccl";

/* Records the last error ("fake NCCL: ...") and returns r. */
static ncclResult_t wk_fail(ncclResult_t r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ncclResult_t wk_fail(ncclResult_t r, const char *fmt, ...) {
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&g_lock);
  snprintf(g_last_error, sizeof g_last_error, "fake %s: %s", WK_LIB, msg);
  pthread_mutex_unlock(&g_lock);
  return r;
}

/* The live communicator behind `comm`, or the error to return. */
static ncclResult_t wk_comm(ncclComm_t comm, const char *fn, struct ncclComm **out) {
  *out = NULL;
  /* NCCL checks the handle first: NULL is ncclInvalidArgument */
  if (!comm) return wk_fail(ncclInvalidArgument, "%s: comm is NULL", fn);
  pthread_mutex_lock(&g_lock);
  struct ncclComm *c = g_comms;
  while (c && c != comm) c = c->next;
  const bool known = c != NULL, live = known && c->live;
  pthread_mutex_unlock(&g_lock);
  if (!known) wk_fake_die(WK_LIB, "%s: %p is not a communicator", fn, (void *)comm);
  if (!live) {
    fprintf(stderr, "fake %s: %s: communicator %p used after ncclCommAbort\n", WK_LIB, fn,
            (void *)comm);
    return wk_fail(ncclInvalidArgument, "%s: communicator used after ncclCommAbort", fn);
  }
  *out = c;
  return ncclSuccess;
}

/* A communicator ready for a new operation: a non-blocking one's previous
 * call must have been seen to complete (ncclCommGetAsyncError answering
 * ncclSuccess) first; NCCL refuses one still in progress with
 * ncclInvalidArgument, and one with an asynchronous error keeps reporting it. */
static ncclResult_t wk_ready(struct ncclComm *c, const char *fn) {
  pthread_mutex_lock(&g_lock);
  const ncclResult_t st = c->state;
  pthread_mutex_unlock(&g_lock);
  if (st == ncclInProgress)
    return wk_fail(ncclInvalidArgument, "%s: communicator used before its previous operation "
                   "returned ncclSuccess (poll ncclCommGetAsyncError)", fn);
  if (st != ncclSuccess)
    return wk_fail(st, "%s: the communicator has an asynchronous error (%s)", fn,
                   ncclGetErrorString(st));
  return ncclSuccess;
}

/* ------------------------------------------------------------------ calls */

ncclResult_t ncclGetVersion(int *version) {
  if (!version) return wk_fail(ncclInvalidArgument, "ncclGetVersion: version is NULL");
  /* documented: the same as NCCL_VERSION_CODE in nccl.h (the headers built against) */
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t result) {
  switch (result) {
  case ncclSuccess: return "no error";
  case ncclUnhandledCudaError: return "unhandled cuda error";
  case ncclSystemError: return "unhandled system error";
  case ncclInternalError: return "internal error";
  case ncclInvalidArgument: return "invalid argument";
  case ncclInvalidUsage: return "invalid usage";
  case ncclRemoteError: return "remote process exited or there was a network error";
  case ncclInProgress: return "NCCL operation in progress";
  case ncclNumResults: break;
  }
  return "unknown result code";
}

const char *ncclGetLastError(ncclComm_t comm) {
  /* documented: "The comm argument is currently unused and can be set to NULL" */
  return g_last_error;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId) {
  if (!uniqueId) return wk_fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
  static unsigned counter;
  pthread_mutex_lock(&g_lock);
  const unsigned serial = ++counter;
  pthread_mutex_unlock(&g_lock);
  memset(uniqueId, 0, sizeof *uniqueId);
  memcpy(uniqueId->internal, wk_id_magic, sizeof wk_id_magic - 1);
  memcpy(uniqueId->internal + sizeof wk_id_magic - 1, &serial, sizeof serial);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank,
                                    ncclConfig_t *config) {
  static const char fn[] = "ncclCommInitRankConfig";
  if (!comm) return wk_fail(ncclInvalidArgument, "%s: comm is NULL", fn);
  /* nothing is returned in *comm unless a communicator is made */
  *comm = NULL;
  bool blocking = true; /* NCCL's default when config is NULL or blocking unset */
  if (config) {
    /* a config must be initialised with NCCL_CONFIG_INITIALIZER (nccl.h:
     * "Not initialized config will result in NCCL error"); NCCL checks the
     * magic and that the version is at least 2.14, the first with configs */
    if (config->magic != 0xcafebeef || config->version < NCCL_VERSION(2, 14, 0))
      return wk_fail(ncclInvalidArgument, "%s: config was not initialised with "
                     "NCCL_CONFIG_INITIALIZER", fn);
    if (config->blocking != NCCL_CONFIG_UNDEF_INT && config->blocking != 0 &&
        config->blocking != 1)
      return wk_fail(ncclInvalidArgument, "%s: config->blocking %d is neither 0 nor 1", fn,
                     config->blocking);
    if (config->blocking == 0) blocking = false;
  }
  /* documented: "rank must be between 0 and nranks-1" */
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return wk_fail(ncclInvalidArgument, "%s: rank %d of %d", fn, rank, nranks);
  if (nranks != 1) return wk_fail(ncclInvalidUsage, "one rank only");
  if (memcmp(commId.internal, wk_id_magic, sizeof wk_id_magic - 1) != 0)
    return wk_fail(ncclInvalidArgument, "%s: the unique id was not made by ncclGetUniqueId", fn);
  struct ncclComm *c = calloc(1, sizeof *c);
  if (!c) return wk_fail(ncclSystemError, "%s: out of host memory", fn);
  c->live = true;
  c->blocking = blocking;
  c->rank = rank;
  c->nranks = nranks;
  /* non-blocking: NCCL may return before the communicator is ready, with
   * ncclInProgress; it is ready once ncclCommGetAsyncError says ncclSuccess */
  c->state = blocking ? ncclSuccess : ncclInProgress;
  pthread_mutex_lock(&g_lock);
  c->next = g_comms;
  g_comms = c;
  pthread_mutex_unlock(&g_lock);
  *comm = c;
  return blocking ? ncclSuccess : ncclInProgress;
}

static void wk_reduce_run(void *ctx) {
  const wk_reduce_job *j = ctx;
  wk_fake_check_device(j->send, j->bytes, "ncclAllReduce: sendbuff");
  wk_fake_check_device(j->recv, j->bytes, "ncclAllReduce: recvbuff");
  if (j->recv != j->send) memcpy(j->recv, j->send, j->bytes); /* disjoint: checked at the call */
}

/* Element size of a built-in datatype; 0 for anything else. */
static size_t wk_type_bytes(ncclDataType_t t) {
  switch (t) {
  case ncclInt8:
  case ncclUint8:
  case ncclFloat8e4m3:
  case ncclFloat8e5m2:
    return 1;
  case ncclFloat16:
  case ncclBfloat16:
    return 2;
  case ncclInt32:
  case ncclUint32:
  case ncclFloat32:
    return 4;
  case ncclInt64:
  case ncclUint64:
  case ncclFloat64:
    return 8;
  case ncclNumTypes:
    break;
  }
  return 0;
}

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  static const char fn[] = "ncclAllReduce";
  struct ncclComm *c;
  ncclResult_t r = wk_comm(comm, fn, &c);
  if (r != ncclSuccess) return r;
  r = wk_ready(c, fn);
  if (r != ncclSuccess) return r;
  const size_t size = wk_type_bytes(datatype);
  if (size == 0) return wk_fail(ncclInvalidArgument, "%s: datatype %d", fn, (int)datatype);
  /* the built-in ops; values from ncclNumOps up are ncclRedOpCreatePreMulSum
   * handles, which this fake never hands out */
  if ((int)op < (int)ncclSum || (int)op > (int)ncclAvg)
    return wk_fail(ncclInvalidArgument, "%s: op %d", fn, (int)op);
  if (count == 0) return ncclSuccess; /* nothing to reduce */
  if (!sendbuff || !recvbuff)
    return wk_fail(ncclInvalidArgument, "%s: sendbuff %p, recvbuff %p", fn, sendbuff,
                   (void *)recvbuff);
  if (count > SIZE_MAX / size) return wk_fail(ncclInvalidArgument, "%s: count %zu", fn, count);
  const size_t bytes = count * size;
  /* documented: "In-place operation will happen if sendbuff == recvbuff";
   * buffers that overlap otherwise are not an operation NCCL defines */
  const uintptr_t s = (uintptr_t)sendbuff, d = (uintptr_t)recvbuff;
  if (s != d && s < d + bytes && d < s + bytes)
    wk_fake_die(WK_LIB, "%s: sendbuff %p and recvbuff %p overlap (%zu bytes) without being the "
                "same (in place)", fn, sendbuff, (void *)recvbuff, bytes);
  /* One rank: op over one contribution is the contribution itself, for every
   * built-in op (ncclAvg divides the sum by nranks = 1) and type. */
  const wk_reduce_job j = {sendbuff, recvbuff, bytes};
  if (!c->blocking) {
    /* deferred until ncclCommGetAsyncError sees it complete (a non-blocking
     * call may return ncclInProgress before its work is on the stream) */
    pthread_mutex_lock(&g_lock);
    c->pending = j;
    c->pending_stream = stream;
    c->has_pending = true;
    c->state = ncclInProgress;
    pthread_mutex_unlock(&g_lock);
    return ncclInProgress;
  }
  const cudaError_t e = wk_fake_enqueue(stream, wk_reduce_run, &j, sizeof j);
  if (e != cudaSuccess)
    return wk_fail(ncclUnhandledCudaError, "%s: enqueueing on the stream: %s", fn,
                   cudaGetErrorName(e));
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError) {
  static const char fn[] = "ncclCommGetAsyncError";
  struct ncclComm *c;
  const ncclResult_t r = wk_comm(comm, fn, &c);
  if (r != ncclSuccess) return r;
  if (!asyncError) return wk_fail(ncclInvalidArgument, "%s: asyncError is NULL", fn);
  pthread_mutex_lock(&g_lock);
  ncclResult_t st = c->state;
  const bool run = st == ncclInProgress && c->has_pending;
  const wk_reduce_job j = c->pending;
  const cudaStream_t stream = c->pending_stream;
  c->has_pending = false;
  pthread_mutex_unlock(&g_lock);
  if (st == ncclInProgress) {
    /* the operation in progress completes now: a deferred all-reduce goes
     * on its stream (an enqueue failure is the communicator's asynchronous
     * error from then on) */
    st = ncclSuccess;
    if (run) {
      const cudaError_t e = wk_fake_enqueue(stream, wk_reduce_run, &j, sizeof j);
      if (e != cudaSuccess)
        st = wk_fail(ncclUnhandledCudaError, "ncclAllReduce: enqueueing on the stream: %s",
                     cudaGetErrorName(e));
    }
    pthread_mutex_lock(&g_lock);
    c->state = st;
    pthread_mutex_unlock(&g_lock);
  }
  *asyncError = st;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  /* NCCL: aborting NULL is a no-op that succeeds */
  if (!comm) return ncclSuccess;
  struct ncclComm *c;
  const ncclResult_t r = wk_comm(comm, "ncclCommAbort", &c);
  if (r != ncclSuccess) return r;
  /* "Frees resources associated with communicator object and aborts any
   * operations that might still be running": a deferred all-reduce is
   * dropped. The struct stays on g_comms, marked dead. */
  pthread_mutex_lock(&g_lock);
  c->live = false;
  c->has_pending = false;
  pthread_mutex_unlock(&g_lock);
  return ncclSuccess;
}
