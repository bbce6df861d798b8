/* dist_mpi.c - libwhisker-mpi.so: the MPI backend of dist.h (see dist_plugin.h).
 *
 * Every MPI call goes through WK_MPI, which turns a return code other than
 * MPI_SUCCESS into a wk_status whose message names the call, the file and line,
 * and MPI_Error_string. The communicators return errors (MPI_ERRORS_RETURN)
 * instead of aborting, so a failure reaches the caller as a message. */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "dist/dist_plugin.h"

enum { WK_MPI_CHANNELS = 2 };
#define WK_MPI_CHUNK_MAX ((size_t)1 << 30)

/* One operation: n MPI requests (chunks of one buffer), malloc'd. */
typedef struct wk_mpi_op {
  bool used;
  int n;
  MPI_Request *reqs; /* (n) */
} wk_mpi_op;

/* MPI is one per process, and so is this. */
static struct {
  bool open;
  MPI_Comm comm[WK_MPI_CHANNELS];
  size_t chunk; /* the most elements (or bytes) of one MPI request */
  wk_mpi_op ops[WK_MPI_PLUGIN_MAX_OPS];
} wk_mpi;

static wk_status wk_mpi_check(int rc, const char *call, const char *file, int line) {
  if (rc == MPI_SUCCESS) return WK_OK;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
    snprintf(msg, sizeof msg, "MPI error code %d", rc);
  return wk_fail(WK_ERR_BACKEND, "%s failed (%s:%d): %s", call, file, line, msg);
}

#define WK_MPI(fn, ...) wk_mpi_check(fn(__VA_ARGS__), #fn, __FILE__, __LINE__)

static wk_status wk_mpi_chunk_from_env(size_t *chunk) {
  *chunk = WK_MPI_CHUNK_MAX;
  const char *env = getenv("WHISKER_MPI_CHUNK");
  if (!env || !*env) return WK_OK;
  char *end;
  const long long v = strtoll(env, &end, 10);
  if (*end != '\0' || v < 1 || (unsigned long long)v > WK_MPI_CHUNK_MAX)
    return wk_fail(WK_ERR_INVALID_ARG, "$WHISKER_MPI_CHUNK='%s': not a count in 1..%zu", env,
                   WK_MPI_CHUNK_MAX);
  *chunk = (size_t)v;
  return WK_OK;
}

static wk_status wk_mpi_init(int *rank, int *size, int *local_rank, int *local_size) {
  int done = 0;
  WK_TRY(WK_MPI(MPI_Finalized, &done));
  if (done) return wk_fail(WK_ERR_UNSUPPORTED, "MPI was finalised: it cannot start twice");
  if (wk_mpi.open) return wk_fail(WK_ERR_UNSUPPORTED, "the MPI world is already open");
  WK_TRY(wk_mpi_chunk_from_env(&wk_mpi.chunk));
  int provided = 0;
  WK_TRY(WK_MPI(MPI_Init_thread, NULL, NULL, MPI_THREAD_FUNNELED, &provided));
  WK_TRY(WK_MPI(MPI_Comm_set_errhandler, MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  if (provided < MPI_THREAD_FUNNELED)
    return wk_fail(WK_ERR_UNSUPPORTED, "MPI_Init_thread: this MPI gives thread level %d, "
                   "whisker needs MPI_THREAD_FUNNELED", provided);
  WK_TRY(WK_MPI(MPI_Comm_rank, MPI_COMM_WORLD, rank));
  WK_TRY(WK_MPI(MPI_Comm_size, MPI_COMM_WORLD, size));
  for (int c = 0; c < WK_MPI_CHANNELS; c++) {
    WK_TRY(WK_MPI(MPI_Comm_dup, MPI_COMM_WORLD, &wk_mpi.comm[c]));
    WK_TRY(WK_MPI(MPI_Comm_set_errhandler, wk_mpi.comm[c], MPI_ERRORS_RETURN));
  }
  MPI_Comm local;
  WK_TRY(WK_MPI(MPI_Comm_split_type, MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, *rank, MPI_INFO_NULL,
                &local));
  wk_status s = WK_MPI(MPI_Comm_size, local, local_size);
  if (s == WK_OK) s = WK_MPI(MPI_Comm_rank, local, local_rank);
  WK_TRY(WK_MPI(MPI_Comm_free, &local));
  WK_TRY(s);
  wk_mpi.open = true;
  return WK_OK;
}

static wk_status wk_mpi_finalize(void) {
  if (!wk_mpi.open) return WK_OK;
  wk_mpi.open = false;
  for (int i = 0; i < WK_MPI_PLUGIN_MAX_OPS; i++) {
    free(wk_mpi.ops[i].reqs); /* requests still in flight are MPI_Finalize's to drop */
    wk_mpi.ops[i] = (wk_mpi_op){0};
  }
  for (int c = 0; c < WK_MPI_CHANNELS; c++) WK_TRY(WK_MPI(MPI_Comm_free, &wk_mpi.comm[c]));
  return WK_MPI(MPI_Finalize);
}

/* A free operation slot with room for n requests. */
static wk_status wk_mpi_op_new(int n, int *handle) {
  for (int i = 0; i < WK_MPI_PLUGIN_MAX_OPS; i++) {
    if (wk_mpi.ops[i].used) continue;
    MPI_Request *reqs = malloc((size_t)n * sizeof *reqs);
    if (!reqs) return wk_fail(WK_ERR_NOMEM, "MPI: %d requests", n);
    for (int k = 0; k < n; k++) reqs[k] = MPI_REQUEST_NULL;
    wk_mpi.ops[i] = (wk_mpi_op){.used = true, .n = n, .reqs = reqs};
    *handle = i;
    return WK_OK;
  }
  return wk_fail(WK_ERR_LIMIT, "MPI: more than %d operations in flight", WK_MPI_PLUGIN_MAX_OPS);
}

static wk_status wk_mpi_comm(int channel, MPI_Comm *comm) {
  if (!wk_mpi.open) return wk_fail(WK_ERR_INVALID_ARG, "MPI: the world is not open");
  if (channel < 0 || channel >= WK_MPI_CHANNELS)
    return wk_fail(WK_ERR_INVALID_ARG, "MPI: no channel %d", channel);
  *comm = wk_mpi.comm[channel];
  return WK_OK;
}

/* The number of requests that count elements take (one even for none);
 * WK_ERR_LIMIT past INT_MAX of them (part of the buffer would be left out). */
static wk_status wk_mpi_chunks(size_t count, int *n) {
  const size_t k = count == 0 ? 1 : (count - 1) / wk_mpi.chunk + 1;
  if (k > INT_MAX)
    return wk_fail(WK_ERR_LIMIT, "MPI: %zu elements in chunks of %zu are more than %d requests",
                   count, (size_t)wk_mpi.chunk, INT_MAX);
  *n = (int)k;
  return WK_OK;
}

static wk_status wk_mpi_iallreduce(int channel, void *buf, size_t count, wk_dist_dtype dtype,
                                   int *handle) {
  MPI_Comm comm = MPI_COMM_NULL;
  WK_TRY(wk_mpi_comm(channel, &comm));
  MPI_Datatype t;
  size_t elem_bytes;
  switch (dtype) {
    case WK_DIST_F32: t = MPI_FLOAT; elem_bytes = 4; break;
    case WK_DIST_F64: t = MPI_DOUBLE; elem_bytes = 8; break;
    case WK_DIST_I64: t = MPI_INT64_T; elem_bytes = 8; break;
    default: return wk_fail(WK_ERR_INVALID_ARG, "MPI: unknown dtype %d", (int)dtype);
  }
  int n = 0;
  WK_TRY(wk_mpi_chunks(count, &n));
  WK_TRY(wk_mpi_op_new(n, handle));
  wk_mpi_op *op = &wk_mpi.ops[*handle];
  for (int k = 0; k < n; k++) {
    const size_t first = (size_t)k * wk_mpi.chunk;
    const size_t m = count - first < wk_mpi.chunk ? count - first : wk_mpi.chunk;
    WK_TRY(WK_MPI(MPI_Iallreduce, MPI_IN_PLACE, (char *)buf + first * elem_bytes, (int)m, t,
                  MPI_SUM, comm, &op->reqs[k]));
  }
  return WK_OK;
}

static wk_status wk_mpi_ibcast(int channel, void *buf, size_t n_bytes, int root, int *handle) {
  MPI_Comm comm = MPI_COMM_NULL;
  WK_TRY(wk_mpi_comm(channel, &comm));
  int n = 0;
  WK_TRY(wk_mpi_chunks(n_bytes, &n));
  WK_TRY(wk_mpi_op_new(n, handle));
  wk_mpi_op *op = &wk_mpi.ops[*handle];
  for (int k = 0; k < n; k++) {
    const size_t first = (size_t)k * wk_mpi.chunk;
    const size_t m = n_bytes - first < wk_mpi.chunk ? n_bytes - first : wk_mpi.chunk;
    WK_TRY(WK_MPI(MPI_Ibcast, (char *)buf + first, (int)m, MPI_BYTE, root, comm, &op->reqs[k]));
  }
  return WK_OK;
}

static wk_status wk_mpi_ibarrier(int channel, int *handle) {
  MPI_Comm comm = MPI_COMM_NULL;
  WK_TRY(wk_mpi_comm(channel, &comm));
  WK_TRY(wk_mpi_op_new(1, handle));
  return WK_MPI(MPI_Ibarrier, comm, &wk_mpi.ops[*handle].reqs[0]);
}

static wk_status wk_mpi_test(int handle, bool *done) {
  *done = false;
  if (handle < 0 || handle >= WK_MPI_PLUGIN_MAX_OPS || !wk_mpi.ops[handle].used)
    return wk_fail(WK_ERR_INVALID_ARG, "MPI: no operation %d in flight", handle);
  wk_mpi_op *op = &wk_mpi.ops[handle];
  /* request by request, not MPI_Testall: MPICH's MPI_STATUSES_IGNORE, a
   * pointer cast from 1 passed as an array, fails GCC 12's -Wstringop-overflow.
   * A completed request becomes MPI_REQUEST_NULL, which tests as done. */
  bool all = true;
  for (int k = 0; k < op->n; k++) {
    int flag = 0;
    WK_TRY(WK_MPI(MPI_Test, &op->reqs[k], &flag, MPI_STATUS_IGNORE));
    all &= flag != 0;
  }
  if (!all) return WK_OK;
  free(op->reqs);
  *op = (wk_mpi_op){0};
  *done = true;
  return WK_OK;
}

static void wk_mpi_abort(int code) {
  fflush(stdout);
  fflush(stderr);
  const wk_status s = WK_MPI(MPI_Abort, MPI_COMM_WORLD, code);
  (void)s; /* MPI_Abort returned: the caller falls back on its own */
}

__attribute__((visibility("default"))) const wk_mpi_plugin *wk_mpi_plugin_get(void);

const wk_mpi_plugin *wk_mpi_plugin_get(void) {
  static const wk_mpi_plugin plugin = {.abi = WK_MPI_PLUGIN_ABI,
                                       .init = wk_mpi_init,
                                       .finalize = wk_mpi_finalize,
                                       .iallreduce = wk_mpi_iallreduce,
                                       .ibcast = wk_mpi_ibcast,
                                       .ibarrier = wk_mpi_ibarrier,
                                       .test = wk_mpi_test,
                                       .abort = wk_mpi_abort,
                                       .last_error = wk_last_error};
  return &plugin;
}
