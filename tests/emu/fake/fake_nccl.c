/* fake_nccl.c - the NCCL calls of the GPU backend, on the host: one rank in
 * a process, and any number of ranks up to 64 in separate processes on one
 * machine, each with its own fake device (see fake.h).
 *
 * Implemented, under nccl.h's declarations: ncclGetVersion, ncclGetUniqueId,
 * ncclCommInitRankConfig, ncclAllReduce, ncclCommGetAsyncError,
 * ncclCommAbort, ncclGetErrorString, ncclGetLastError.
 *
 * - The unique id must come from ncclGetUniqueId (a marker in it is checked:
 *   a real rank given garbage would fail to bootstrap). It names a POSIX
 *   shared-memory segment (the process id, a serial and 64 random bits), which
 *   the ranks of a communicator of several map: ranks in separate processes
 *   that got the same id (the backend broadcasts it over MPI) meet there, as
 *   NCCL's bootstrap does over sockets. Rank must be in [0, nranks). A rank
 *   that comes to a segment whose rank is taken, or whose first rank was
 *   told another nranks, is refused with ncclInvalidUsage; the ranks already
 *   there wait for ranks that never come (below). The last rank to join
 *   unlinks the segment's name; a communicator aborted before every rank
 *   joined unlinks it too, so nothing stays in /dev/shm. A communicator of
 *   one rank makes no segment.
 * - ncclAllReduce over one rank leaves recvbuff = op(sendbuff), which for
 *   every built-in op and type is sendbuff itself (NCCL's one-rank path: a
 *   copy, or nothing in place, sendbuff == recvbuff). Over several, each rank
 *   puts its contribution in its slot of the segment, 1 MiB at a time, and
 *   every rank reduces all slots in rank order, so every rank gets the same
 *   bits (as from NCCL's ring, whose order differs). Each step rounds to the
 *   element type (sums of float32 in float32). ncclAvg on floating types is
 *   what NCCL makes of it (enqueue: PreMulSum with the scalar 1/nranks
 *   rounded to the type): each contribution times that scalar, then summed.
 *   Floating types (float32, float64, float16, bfloat16) with the ops sum,
 *   prod and avg, and int32 with sum (wrapping, as NCCL's integers do);
 *   anything else over several ranks stops the process as not implemented.
 *   Ranks whose calls do not match (count, type or op of the same
 *   collective) stop the process with both calls named: NCCL requires
 *   the same collectives in the same order on every rank and would hang or
 *   compute garbage. Where the work runs, both buffers are checked to lie
 *   inside live device allocations.
 * - Where the waiting for peers happens:
 *   - Non-blocking communicators (config->blocking = 0, the backend's), outside
 *     a graph capture: the polls do the all-reduce. ncclAllReduce returns
 *     ncclInProgress (as NCCL documents it may), and each
 *     ncclCommGetAsyncError advances it as far as the peers allow without
 *     waiting, answering ncclInProgress until it is complete, then ncclSuccess:
 *     a late peer is the caller's deadline to catch, as with NCCL. The send
 *     buffer is read then, after the stream's earlier work has run (with lazy
 *     streams, fake_cudart.c, the first poll runs it); the result is kept
 *     aside and written to recvbuff as work on the stream, in its turn, so
 *     that work which should wait for it and does not reads the old data.
 *   - Blocking communicators, and all-reduces captured in a CUDA graph: the
 *     work goes through wk_fake_enqueue on the call's stream (recorded in a
 *     capture, done at each replay), and waits there, on the calling thread,
 *     where the caller's own deadline cannot run. So that wait has one of its
 *     own: $WK_FAKE_NCCL_TIMEOUT seconds, else $WHISKER_DIST_TIMEOUT, else 300.
 *   In both, a peer whose process has exited or that aborted its
 *   communicator before reaching the collective (checked every 50 ms), and
 *   in the second a wait past the deadline, make the communicator's
 *   asynchronous error ncclRemoteError, with ncclGetLastError naming the
 *   rank; the all-reduce stops there, recvbuff holding whatever steps were
 *   done (NCCL leaves it undefined). Real NCCL reports a peer's death the
 *   same way (ncclRemoteError or ncclSystemError) and leaves a hang to the
 *   caller's watchdog.
 * - Non-blocking creation: ncclCommInitRankConfig returns ncclInProgress and
 *   completes at the first ncclCommGetAsyncError that finds every rank joined
 *   (a blocking one waits for them, with the fake's deadline). Any other
 *   call on a non-blocking communicator before its previous operation is seen
 *   to complete is refused with ncclInvalidArgument (NCCL: the previous
 *   operation must be seen to return ncclSuccess first), so a caller that
 *   forgets to poll is caught.
 * - After ncclCommAbort the communicator is gone: using it again (abort
 *   included) is ncclInvalidArgument, with a line on stderr, as callers often
 *   discard ncclCommAbort's result. Peers still waiting for its rank then
 *   fail as above. A pointer that never was a communicator dies (real NCCL:
 *   undefined behaviour).
 *
 * - Fault injection for tests: $WK_FAKE_NCCL_HANG=RANK:STEP makes rank RANK
 *   hang for good (until a signal ends its process) before it posts its
 *   contribution to the STEP-th step (counted from 1 per communicator), as a
 *   rank stuck in a collective would; its peers then wait as above.
 *   $WK_FAKE_NCCL_OOM=RANK:CALL makes rank RANK's CALL-th ncclAllReduce
 *   (from 1 per communicator) fail with ncclUnhandledCudaError and NCCL's
 *   message for a device allocation that found no room, as a lazily
 *   connecting NCCL's first collectives can on a full device.
 *
 * Not implemented: every other NCCL function (absent, so using one fails to
 * link), user-defined reduction ops (ncclRedOpCreatePreMulSum's handles are
 * refused as invalid ops), over several ranks the integer types other than
 * int32, int32 other than summed, fp8 and max/min, ranks on several machines, and the config fields other than
 * blocking (performance and sharing knobs, accepted and ignored), the NCCL_*
 * environment variables. */
#include <errno.h>
#include <fcntl.h>
#include <nccl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fake.h"

#define WK_LIB "NCCL"
#define WK_MAX_RANKS 64
/* bytes of one rank's contribution per step of a collective */
#define WK_SLOT_BYTES ((size_t)1 << 20)

/* ------------------------------------------------------------------ state */

/* One collective call as a rank issued it: its peers must issue the same. */
typedef struct wk_call {
  uint64_t count;
  int32_t type, op;
} wk_call;

/* The segment several ranks share; all zero when made (ftruncate), which is
 * its initial state. The slots (nranks x WK_SLOT_BYTES) follow the header. */
typedef struct wk_shared {
  _Atomic int32_t nranks;  /* set by the first rank to join */
  _Atomic int32_t joined;  /* ranks that mapped the segment */
  _Atomic int32_t pid[WK_MAX_RANKS];       /* each rank's process */
  _Atomic int32_t aborted[WK_MAX_RANKS];   /* 1 once the rank called ncclCommAbort */
  _Atomic uint64_t posted[WK_MAX_RANKS];   /* the last step whose slot it filled */
  _Atomic uint64_t done[WK_MAX_RANKS];     /* the last step it finished reading */
  wk_call call[WK_MAX_RANKS];              /* written before posted */
} wk_shared;
#define WK_SHARED_HDR ((sizeof(wk_shared) + 4095) / 4096 * 4096)

/* A collective to run on a stream: everything copied, as a graph replays it. */
typedef struct wk_reduce_job {
  struct ncclComm *comm;
  const void *send;
  void *recv;
  size_t count;
  ncclDataType_t type;
  ncclRedOp_t op;
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
  /* several ranks: the shared segment, its size and name, whether this
   * communicator holds its rank there, and the steps taken */
  wk_shared *shm;
  size_t shm_bytes;
  char shm_name[96];
  bool owns_rank;
  uint64_t step;
  uint64_t calls; /* ncclAllReduce calls that got past the argument checks */
  double timeout_s;
  /* a non-blocking all-reduce advanced by the polls (see ncclCommGetAsyncError):
   * the element it has reached, whether that step's slot is posted, and when
   * the peers' processes were last checked */
  size_t prog_off;
  bool prog_posted;
  double prog_checked;
  /* the result, kept here until complete: then written to recvbuff in its
   * stream's turn (so that with lazy streams work that should wait for it,
   * and does not, reads recvbuff before it) */
  void *prog_out;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* Aborted communicators stay on this list (a few small structs per process),
 * so that one used after ncclCommAbort is recognised as such. */
static struct ncclComm *g_comms;
/* ncclGetLastError's text: documented as the last error that occurred in
 * NCCL, not cleared by reading it. */
static char g_last_error[256];

/* 17 bytes at the start of every id from ncclGetUniqueId, then the maker's
 * process id, a serial and 64 random bits */
static const char wk_id_magic[] = "whisker-fake-nccl";
typedef struct wk_id_tail {
  int32_t pid;
  uint32_t serial;
  uint64_t nonce;
} wk_id_tail;
_Static_assert(sizeof wk_id_magic - 1 + sizeof(wk_id_tail) <= sizeof(ncclUniqueId), "id");

/* Records the last error ("fake NCCL: ..."). */
static void wk_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wk_note(const char *fmt, ...) {
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&g_lock);
  snprintf(g_last_error, sizeof g_last_error, "fake %s: %s", WK_LIB, msg);
  pthread_mutex_unlock(&g_lock);
}

/* Records the last error and returns r; a macro, so that the result is plain
 * where it is returned: the clang static analyzer (scripts/static_check.sh)
 * does not enter a variadic function, and would otherwise follow a refusal as
 * if it were ncclSuccess. */
#define wk_fail(r, ...) (wk_note(__VA_ARGS__), (ncclResult_t)(r))

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

static ncclResult_t wk_state(struct ncclComm *c) {
  pthread_mutex_lock(&g_lock);
  const ncclResult_t st = c->state;
  pthread_mutex_unlock(&g_lock);
  return st;
}

static void wk_set_state(struct ncclComm *c, ncclResult_t st) {
  pthread_mutex_lock(&g_lock);
  c->state = st;
  pthread_mutex_unlock(&g_lock);
}

/* A communicator ready for a new operation: a non-blocking one's previous
 * call must have been seen to complete (ncclCommGetAsyncError answering
 * ncclSuccess) first; NCCL refuses one still in progress with
 * ncclInvalidArgument, and one with an asynchronous error keeps reporting it. */
static ncclResult_t wk_ready(struct ncclComm *c, const char *fn) {
  const ncclResult_t st = wk_state(c);
  if (st == ncclInProgress)
    return wk_fail(ncclInvalidArgument, "%s: communicator used before its previous operation "
                   "returned ncclSuccess (poll ncclCommGetAsyncError)", fn);
  if (st != ncclSuccess)
    return wk_fail(st, "%s: the communicator has an asynchronous error (%s)", fn,
                   ncclGetErrorString(st));
  return ncclSuccess;
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

/* ------------------------------------------------------------------ several ranks */

static double wk_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The wait for peers: $WK_FAKE_NCCL_TIMEOUT, else $WHISKER_DIST_TIMEOUT, else 300 s. */
static double wk_timeout_s(void) {
  const char *names[] = {"WK_FAKE_NCCL_TIMEOUT", "WHISKER_DIST_TIMEOUT"};
  for (int k = 0; k < 2; k++) {
    const char *e = getenv(names[k]);
    char *end = NULL;
    const double v = e ? strtod(e, &end) : 0;
    if (e && end != e && *end == '\0' && v > 0) return v;
  }
  return 300.0;
}

/* Whether process `pid` has exited (gone, or a zombie not yet reaped). */
static bool wk_pid_gone(int32_t pid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return true;
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* "pid (comm) S ...": the state follows the last ')' */
  const char *p = strrchr(buf, ')');
  return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

static void wk_segment_name(const ncclUniqueId *id, char *name, size_t cap) {
  wk_id_tail t;
  memcpy(&t, id->internal + sizeof wk_id_magic - 1, sizeof t);
  snprintf(name, cap, "/wk-fake-nccl-%d-%u-%016llx", (int)t.pid, t.serial,
           (unsigned long long)t.nonce);
}

/* Maps the segment of id (made by the first rank to come) and takes `rank`. */
static ncclResult_t wk_join(struct ncclComm *c, const ncclUniqueId *id) {
  static const char fn[] = "ncclCommInitRankConfig";
  char *name = c->shm_name;
  wk_segment_name(id, name, sizeof c->shm_name);
  const int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
  if (fd < 0) return wk_fail(ncclSystemError, "%s: shm_open %s: %s", fn, name, strerror(errno));
  const size_t bytes = WK_SHARED_HDR + (size_t)c->nranks * WK_SLOT_BYTES;
  struct stat st;
  /* ranks come in any order: each grows the segment to what it needs (only
   * grows: one told more ranks may have come first; the counts are compared
   * below) */
  if (fstat(fd, &st) != 0 || ((size_t)st.st_size < bytes && ftruncate(fd, (off_t)bytes) != 0)) {
    const int e = errno;
    close(fd);
    return wk_fail(ncclSystemError, "%s: sizing %s: %s", fn, name, strerror(e));
  }
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  close(fd);
  if (m == MAP_FAILED) return wk_fail(ncclSystemError, "%s: mmap %s: %s", fn, name, strerror(e));
  wk_shared *sh = m;
  c->shm = sh;
  c->shm_bytes = bytes;
  int32_t want = 0;
  if (!atomic_compare_exchange_strong(&sh->nranks, &want, c->nranks) && want != c->nranks)
    return wk_fail(ncclInvalidUsage, "%s: rank %d was given nranks %d, another rank %d", fn,
                   c->rank, c->nranks, (int)want);
  int32_t none = 0;
  if (!atomic_compare_exchange_strong(&sh->pid[c->rank], &none, (int32_t)getpid()))
    return wk_fail(ncclInvalidUsage, "%s: rank %d of %d is taken by process %d already", fn,
                   c->rank, c->nranks, (int)none);
  c->owns_rank = true;
  /* the last to come unlinks the name: every rank has the segment mapped */
  if (atomic_fetch_add(&sh->joined, 1) + 1 == c->nranks) (void)shm_unlink(name);
  return ncclSuccess;
}

static bool wk_all_joined(const struct ncclComm *c) {
  return atomic_load(&c->shm->joined) == c->nranks;
}

/* Why rank j cannot come: it aborted or its process exited; NULL if neither. */
static const char *wk_peer_lost(const struct ncclComm *c, int j) {
  if (atomic_load(&c->shm->aborted[j])) return "aborted its communicator";
  const int32_t pid = atomic_load(&c->shm->pid[j]);
  if (pid && wk_pid_gone(pid)) return "has exited";
  return NULL;
}

/* Waits until every rank's counter (posted or done) has reached step, with
 * the deadline; false (the communicator's state ncclRemoteError, the reason
 * recorded) when a peer is lost or late. */
/* Whether every rank's counter (posted or done) has reached step. */
static bool wk_all_reached(const struct ncclComm *c, _Atomic uint64_t *ctr, uint64_t step) {
  for (int r = 0; r < c->nranks; r++)
    if (atomic_load_explicit(&ctr[r], memory_order_acquire) < step) return false;
  return true;
}

/* A rank whose counter has not reached step (a peer that has may have
 * finished and left): the first one that is lost, with *why saying how; else
 * the first late one, *why NULL; -1 when none is late. */
static int wk_late_peer(const struct ncclComm *c, _Atomic uint64_t *ctr, uint64_t step,
                        const char **why) {
  int late = -1;
  *why = NULL;
  for (int r = 0; r < c->nranks; r++) {
    if (atomic_load_explicit(&ctr[r], memory_order_acquire) >= step) continue;
    if (late < 0) late = r;
    if ((*why = wk_peer_lost(c, r)) != NULL) return r;
  }
  return late;
}

static bool wk_wait_all(struct ncclComm *c, _Atomic uint64_t *ctr, uint64_t step,
                        const char *what) {
  const double start = wk_now();
  double next_check = start + 0.05;
  for (unsigned spins = 0; !wk_all_reached(c, ctr, step); spins++) {
    if (spins > 64) {
      const struct timespec ts = {0, 100 * 1000}; /* 100 us */
      nanosleep(&ts, NULL);
    }
    const double now = wk_now();
    if (now < next_check) continue;
    next_check = now + 0.05;
    const char *why;
    const int late = wk_late_peer(c, ctr, step, &why);
    if (late < 0) return true;
    if (why || now - start > c->timeout_s) {
      if (why)
        wk_note("%s: rank %d %s (rank %d of %d waiting)", what, late, why, c->rank, c->nranks);
      else
        wk_note("%s: no word from rank %d for %g s ($WK_FAKE_NCCL_TIMEOUT; rank %d of %d "
                "waiting)", what, late, c->timeout_s, c->rank, c->nranks);
      wk_set_state(c, ncclRemoteError);
      return false;
    }
  }
  return true;
}

/* The fakes' element types for NCCL's floating types; -1 for the others. */
static int wk_float_type(ncclDataType_t t) {
  switch (t) {
  case ncclFloat32: return WK_FAKE_F32;
  case ncclFloat64: return WK_FAKE_F64;
  case ncclFloat16: return WK_FAKE_F16;
  case ncclBfloat16: return WK_FAKE_BF16;
  default: return -1;
  }
}

/* v rounded to the element type, as a value of it would hold it. */
static double wk_round(wk_fake_dtype t, double v) {
  unsigned char tmp[8];
  wk_fake_store(tmp, t, 0, v);
  return wk_fake_load(tmp, t, 0);
}


static unsigned char *wk_slot(const struct ncclComm *c, int r) {
  return (unsigned char *)c->shm + WK_SHARED_HDR + (size_t)r * WK_SLOT_BYTES;
}

/* Elements of job j in the step that starts at element off. */
static size_t wk_step_elems(const wk_reduce_job *j, size_t off) {
  const size_t size = wk_type_bytes(j->type);
  /* a job's datatype is a built-in one: ncclAllReduce refuses any other */
  if (size == 0) wk_fake_die(WK_LIB, "ncclAllReduce: a job of datatype %d", (int)j->type);
  const size_t per_step = WK_SLOT_BYTES / size;
  return j->count - off < per_step ? j->count - off : per_step;
}

/* Puts this rank's contribution to step c->step + 1 (elements [off, off +
 * n)) in its slot, which must be free (every rank done with the step
 * before), and posts it. */
static void wk_post(struct ncclComm *c, const wk_reduce_job *j, size_t off) {
  const size_t size = wk_type_bytes(j->type), n = wk_step_elems(j, off);
  const uint64_t step = ++c->step;
  /* fault injection: $WK_FAKE_NCCL_HANG=RANK:STEP makes that rank hang for
   * good (until a signal ends the process) before posting that step, as a
   * rank stuck in a collective would */
  const char *h = getenv("WK_FAKE_NCCL_HANG");
  int hang_rank = -1;
  unsigned long long hang_step = 0;
  if (h && sscanf(h, "%d:%llu", &hang_rank, &hang_step) == 2 && hang_rank == c->rank &&
      hang_step == step) {
    fprintf(stderr, "fake %s: rank %d hangs before collective step %llu (WK_FAKE_NCCL_HANG)\n",
            WK_LIB, c->rank, hang_step);
    for (;;) pause();
  }
  memcpy(wk_slot(c, c->rank), (const unsigned char *)j->send + off * size, n * size);
  c->shm->call[c->rank] = (wk_call){j->count, (int32_t)j->type, (int32_t)j->op};
  atomic_store_explicit(&c->shm->posted[c->rank], step, memory_order_release);
}

/* Once every rank has posted step c->step: checks that their calls match,
 * writes the reduction of the slots to out (recvbuff, or where the result
 * waits to be written to it) at element off and marks the step done on this
 * rank. */
static void wk_combine(struct ncclComm *c, const wk_reduce_job *j, size_t off, void *out) {
  const wk_fake_dtype t = (wk_fake_dtype)wk_float_type(j->type);
  const size_t size = wk_type_bytes(j->type), n = wk_step_elems(j, off);
  const wk_shared *sh = c->shm;
  for (int r = 0; r < c->nranks; r++) {
    const wk_call *a = &sh->call[r], *b = &sh->call[c->rank];
    if (a->count != b->count || a->type != b->type || a->op != b->op)
      wk_fake_die(WK_LIB, "ncclAllReduce: the ranks' calls differ (collective step %llu): rank "
                  "%d %llu elements of type %d, op %d; rank %d %llu elements of type %d, op %d "
                  "(NCCL needs the same collectives in the same order on every rank)",
                  (unsigned long long)c->step, r, (unsigned long long)a->count, (int)a->type,
                  (int)a->op, c->rank, (unsigned long long)b->count, (int)b->type, (int)b->op);
  }
  if (j->type == ncclInt32) { /* ncclSum (checked at the call), wrapping */
    for (size_t i = 0; i < n; i++) {
      uint32_t acc = 0;
      for (int r = 0; r < c->nranks; r++) {
        int32_t v;
        memcpy(&v, wk_slot(c, r) + i * sizeof v, sizeof v);
        acc += (uint32_t)v;
      }
      memcpy((unsigned char *)out + (off + i) * size, &acc, sizeof acc);
    }
    atomic_store_explicit(&c->shm->done[c->rank], c->step, memory_order_release);
    return;
  }
  /* NCCL's ncclAvg on floating types: PreMulSum, the scalar 1/nranks in the type */
  const double scale = j->op == ncclAvg ? wk_round(t, 1.0 / c->nranks) : 1.0;
  for (size_t i = 0; i < n; i++) {
    double acc = 0;
    for (int r = 0; r < c->nranks; r++) {
      double v = wk_fake_load(wk_slot(c, r), t, i);
      if (j->op == ncclAvg) v = wk_round(t, v * scale);
      if (r == 0) acc = v;
      else acc = wk_round(t, j->op == ncclProd ? acc * v : acc + v);
    }
    wk_fake_store((unsigned char *)out + off * size, t, i, acc);
  }
  atomic_store_explicit(&c->shm->done[c->rank], c->step, memory_order_release);
}

/* One step of a collective over several ranks, waiting for the peers (with
 * the fake's deadline): false when a peer was lost or late. */
static bool wk_reduce_step(struct ncclComm *c, const wk_reduce_job *j, size_t off) {
  /* this rank's slot is free once every rank has read the previous step */
  if (!wk_wait_all(c, c->shm->done, c->step, "ncclAllReduce")) return false;
  wk_post(c, j, off);
  if (!wk_wait_all(c, c->shm->posted, c->step, "ncclAllReduce")) return false;
  wk_combine(c, j, off, j->recv);
  return true;
}

/* Advances a non-blocking all-reduce as far as the peers allow, without
 * waiting: ncclSuccess when it is complete, ncclInProgress while a peer has
 * not come yet, ncclRemoteError (recorded) when a peer is lost. No deadline
 * here: a late peer is the caller's to time out, as with NCCL. */
/* The result of a non-blocking all-reduce, written to recvbuff when its
 * stream gets to it. */
typedef struct wk_result_job {
  void *dst, *src; /* src: the comm's prog_out, handed over (freed here) */
  size_t n;
} wk_result_job;

static void wk_result_run(void *ctx) {
  const wk_result_job *j = ctx;
  wk_fake_check_device(j->dst, j->n, "ncclAllReduce: recvbuff");
  memcpy(j->dst, j->src, j->n);
  free(j->src);
}

static ncclResult_t wk_reduce_advance(struct ncclComm *c, const wk_reduce_job *j,
                                      cudaStream_t stream) {
  wk_shared *sh = c->shm;
  /* a live communicator of several ranks (the only kind that gets here) has
   * joined the shared segment (ncclCommInitRank*; ncclCommAbort unmaps it) */
  if (!sh) wk_fake_die(WK_LIB, "ncclAllReduce: rank %d of %d without its shared segment", c->rank,
                       c->nranks);
  const size_t bytes = j->count * wk_type_bytes(j->type);
  if (!c->prog_out) {
    c->prog_out = malloc(bytes ? bytes : 1);
    if (!c->prog_out) return wk_fail(ncclSystemError, "ncclAllReduce: out of host memory");
  }
  _Atomic uint64_t *ctr = NULL; /* the counter a peer has yet to advance */
  while (c->prog_off < j->count) {
    if (!c->prog_posted) {
      if (!wk_all_reached(c, sh->done, c->step)) {
        ctr = sh->done;
        break;
      }
      wk_post(c, j, c->prog_off);
      c->prog_posted = true;
    }
    if (!wk_all_reached(c, sh->posted, c->step)) {
      ctr = sh->posted;
      break;
    }
    wk_combine(c, j, c->prog_off, c->prog_out);
    c->prog_off += wk_step_elems(j, c->prog_off);
    c->prog_posted = false;
  }
  if (!ctr) {
    const wk_result_job rj = {j->recv, c->prog_out, bytes};
    c->prog_out = NULL;
    const cudaError_t e = wk_fake_enqueue(stream, wk_result_run, &rj, sizeof rj);
    return e == cudaSuccess ? ncclSuccess
           : wk_fail(ncclUnhandledCudaError, "ncclAllReduce: enqueueing on the stream: %s",
                     cudaGetErrorName(e));
  }
  /* a late peer that is lost: looked for every 50 ms (the backend polls
   * every 50 us) */
  const double now = wk_now();
  if (now - c->prog_checked < 0.05) return ncclInProgress;
  c->prog_checked = now;
  const char *why;
  const int late = wk_late_peer(c, ctr, c->step, &why);
  if (why)
    return wk_fail(ncclRemoteError, "ncclAllReduce: rank %d %s (rank %d of %d waiting)", late,
                   why, c->rank, c->nranks);
  return ncclInProgress;
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
  wk_id_tail t = {.pid = (int32_t)getpid(), .serial = serial};
  FILE *f = fopen("/dev/urandom", "rb");
  const bool random = f && fread(&t.nonce, sizeof t.nonce, 1, f) == 1;
  if (f) fclose(f);
  if (!random) /* NCCL makes its id from a socket address: a failure there is a system error */
    return wk_fail(ncclSystemError, "ncclGetUniqueId: reading /dev/urandom failed");
  memset(uniqueId, 0, sizeof *uniqueId);
  memcpy(uniqueId->internal, wk_id_magic, sizeof wk_id_magic - 1);
  memcpy(uniqueId->internal + sizeof wk_id_magic - 1, &t, sizeof t);
  return ncclSuccess;
}

/* Unmaps the segment; marks the rank aborted first (when it holds the rank)
 * so that waiting peers stop. */
static void wk_leave(struct ncclComm *c) {
  if (!c->shm) return;
  if (c->owns_rank) atomic_store(&c->shm->aborted[c->rank], 1);
  /* the last rank to join unlinks the name; if some never came (a refused
   * or lost rank, a creation given up), this one does, so that nothing is
   * left in /dev/shm (a rank still to come would then wait in vain: it is
   * too late for it anyway) */
  if (atomic_load(&c->shm->joined) < c->nranks) (void)shm_unlink(c->shm_name);
  munmap(c->shm, c->shm_bytes);
  c->shm = NULL;
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
  if (nranks > WK_MAX_RANKS)
    wk_fake_die(WK_LIB, "%s: %d ranks: not implemented (at most %d)", fn, nranks, WK_MAX_RANKS);
  if (memcmp(commId.internal, wk_id_magic, sizeof wk_id_magic - 1) != 0)
    return wk_fail(ncclInvalidArgument, "%s: the unique id was not made by ncclGetUniqueId", fn);
  struct ncclComm *c = calloc(1, sizeof *c);
  if (!c) return wk_fail(ncclSystemError, "%s: out of host memory", fn);
  c->live = true;
  c->blocking = blocking;
  c->rank = rank;
  c->nranks = nranks;
  c->timeout_s = wk_timeout_s();
  c->state = ncclSuccess;
  if (nranks > 1) {
    const ncclResult_t r = wk_join(c, &commId);
    if (r != ncclSuccess) {
      wk_leave(c);
      free(c);
      return r;
    }
    /* blocking: the bootstrap waits for every rank (with the deadline);
     * non-blocking: the polls complete it once every rank has joined */
    if (blocking && !wk_all_joined(c)) {
      const double deadline = wk_now() + c->timeout_s;
      while (!wk_all_joined(c)) {
        if (wk_now() > deadline) {
          const int joined = (int)atomic_load(&c->shm->joined);
          const double waited = c->timeout_s;
          wk_leave(c);
          free(c);
          return wk_fail(ncclRemoteError, "%s: only %d of %d ranks came in %g s", fn, joined,
                         nranks, waited);
        }
        const struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
      }
    }
  }
  /* non-blocking: NCCL may return before the communicator is ready, with
   * ncclInProgress; it is ready once ncclCommGetAsyncError says ncclSuccess */
  if (!blocking) c->state = ncclInProgress;
  pthread_mutex_lock(&g_lock);
  c->next = g_comms;
  g_comms = c;
  pthread_mutex_unlock(&g_lock);
  *comm = c;
  return blocking ? ncclSuccess : ncclInProgress;
}

static void wk_reduce_run(void *ctx) {
  const wk_reduce_job *j = ctx;
  struct ncclComm *c = j->comm;
  const size_t size = wk_type_bytes(j->type);
  wk_fake_check_device(j->send, j->count * size, "ncclAllReduce: sendbuff");
  wk_fake_check_device(j->recv, j->count * size, "ncclAllReduce: recvbuff");
  pthread_mutex_lock(&g_lock);
  /* an aborted communicator or one with an asynchronous error runs nothing
   * more (a graph replayed after the abort, a later operation of a broken
   * one) */
  const bool go = c->live && (c->state == ncclSuccess || c->state == ncclInProgress);
  pthread_mutex_unlock(&g_lock);
  if (!go) return;
  if (c->nranks == 1) {
    /* disjoint: checked at the call */
    if (j->recv != j->send) memcpy(j->recv, j->send, j->count * size);
    return;
  }
  for (size_t off = 0; off < j->count; off += wk_step_elems(j, off))
    if (!wk_reduce_step(c, j, off)) return;
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
  const bool int_sum = datatype == ncclInt32 && op == ncclSum;
  if (c->nranks > 1 && !int_sum &&
      (wk_float_type(datatype) < 0 || op == ncclMax || op == ncclMin))
    wk_fake_die(WK_LIB, "%s: type %d, op %d over %d ranks: not implemented (floating types "
                "with sum, prod or avg, int32 with sum)", fn, (int)datatype, (int)op, c->nranks);
  /* fault injection: $WK_FAKE_NCCL_OOM=RANK:CALL makes that rank's CALL-th
   * all-reduce (counted from 1 per communicator) fail as NCCL does when the
   * buffers it allocates on connecting find no device memory: the call
   * answers ncclUnhandledCudaError, which becomes the communicator's error */
  c->calls++;
  const char *oom = getenv("WK_FAKE_NCCL_OOM");
  int oom_rank = -1;
  unsigned long long oom_call = 0;
  if (oom && sscanf(oom, "%d:%llu", &oom_rank, &oom_call) == 2 && oom_rank == c->rank &&
      oom_call == (unsigned long long)c->calls) {
    pthread_mutex_lock(&g_lock);
    c->state = ncclUnhandledCudaError;
    pthread_mutex_unlock(&g_lock);
    return wk_fail(ncclUnhandledCudaError, "Failed to CUDA calloc 6291456 bytes (rank %d, "
                   "all-reduce %llu: WK_FAKE_NCCL_OOM)", c->rank, oom_call);
  }
  const wk_reduce_job j = {c, sendbuff, recvbuff, count, datatype, op};
  if (!c->blocking) {
    /* deferred until ncclCommGetAsyncError sees it complete (a non-blocking
     * call may return ncclInProgress before its work is on the stream) */
    pthread_mutex_lock(&g_lock);
    c->pending = j;
    c->pending_stream = stream;
    c->has_pending = true;
    c->prog_off = 0;
    c->prog_posted = false;
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
  /* a non-blocking creation completes once every rank has joined (no
   * all-reduce can be pending before: wk_ready refuses it) */
  if (c->shm && !wk_all_joined(c)) {
    *asyncError = ncclInProgress;
    return ncclSuccess;
  }
  pthread_mutex_lock(&g_lock);
  ncclResult_t st = c->state;
  const bool run = st == ncclInProgress && c->has_pending;
  const wk_reduce_job j = c->pending;
  const cudaStream_t stream = c->pending_stream;
  pthread_mutex_unlock(&g_lock);
  if (st == ncclInProgress) {
    /* the operation in progress completes now, or makes progress */
    st = ncclSuccess;
    if (run && c->nranks > 1 && !wk_fake_capturing(stream)) {
      /* lazy streams: the work issued before it on its stream runs first */
      if (!c->prog_off && !c->prog_posted) wk_fake_flush(stream);
      /* over several ranks, outside a capture: the all-reduce advances here
       * as far as the peers allow and answers ncclInProgress until it is
       * complete, so a late peer is the caller's deadline to catch (this
       * runtime's streams have done all earlier work: the send buffer is
       * ready) */
      st = wk_reduce_advance(c, &j, stream);
    } else if (run) {
      /* one rank, or a capture: the all-reduce goes on its stream (where a
       * capture records it, and each replay waits for the peers) */
      const cudaError_t e = wk_fake_enqueue(stream, wk_reduce_run, &j, sizeof j);
      if (e != cudaSuccess)
        st = wk_fail(ncclUnhandledCudaError, "ncclAllReduce: enqueueing on the stream: %s",
                     cudaGetErrorName(e));
    }
    pthread_mutex_lock(&g_lock);
    if (st != ncclInProgress) c->has_pending = false;
    /* an asynchronous error raised while the work ran stays */
    if (c->state == ncclInProgress) c->state = st;
    st = c->state;
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
  free(c->prog_out); /* an all-reduce left unfinished */
  c->prog_out = NULL;
  wk_leave(c);
  return ncclSuccess;
}
