/* dist.h - the ranks of a data-parallel run and the collectives between them.
 *
 * One process per rank. A run started by an MPI launcher (mpirun, srun with
 * PMIx) is detected from the launcher's environment; wk_dist_open then loads
 * the MPI backend, libwhisker-mpi.so (dist_plugin.h), so a whisker binary
 * needs no MPI library unless it is run under one. A process started any
 * other way is a world of one rank, and every collective is a no-op.
 *
 * Collectives are issued in the same order on every rank (MPI's rule). Every
 * wait has a deadline (wk_dist_opts.timeout_s): a rank that stopped or hangs
 * makes the others fail with a message naming the collective, and
 * wk_dist_abort then stops every rank (MPI_Abort) instead of leaving them
 * hanging. A rank that fails on its own (a file error, a NaN) must call
 * wk_dist_abort after reporting its error for the same reason.
 *
 * Two channels: WK_DIST_MAIN for the training loop's own collectives
 * (broadcasts, metrics, synchronised batchnorm) and WK_DIST_GRADS for the
 * gradient buckets, which are in flight while backward (and with it
 * synchronised batchnorm) goes on. Each channel is its own communicator, so
 * the two never interleave. Only the thread that opened the world calls
 * these functions. */
#ifndef WK_DIST_H
#define WK_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct wk_dist wk_dist;

typedef enum { WK_DIST_MAIN = 0, WK_DIST_GRADS = 1 } wk_dist_channel;
typedef enum { WK_DIST_F32, WK_DIST_F64, WK_DIST_I64 } wk_dist_dtype;

/* The longest wait for the other ranks unless $WHISKER_DIST_TIMEOUT or the
 * options say otherwise (also NCCL's, cuda_comm.c). */
#define WK_DIST_TIMEOUT_DEFAULT_S 300.0

typedef struct wk_dist_opts {
  double timeout_s; /* the longest wait for the other ranks; <= 0: 300 s
                       ($WHISKER_DIST_TIMEOUT overrides the default) */
} wk_dist_opts;

wk_dist_opts wk_dist_opts_default(void);

/* Whether the environment says this process is one rank of several (an MPI
 * launcher's variables: OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK with a size). */
bool wk_dist_launched(void);

/* The world: under a launcher, MPI's (an error when the backend cannot be
 * loaded, with what to install); otherwise a world of one rank. */
wk_status wk_dist_open(const wk_dist_opts *o, wk_dist **out);
/* Finalises MPI after a barrier-free shutdown. NULL is fine. */
void wk_dist_close(wk_dist *d);

int wk_dist_rank(const wk_dist *d);       /* 0 for NULL */
int wk_dist_size(const wk_dist *d);       /* 1 for NULL */
int wk_dist_local_size(const wk_dist *d); /* ranks on this machine; 1 for NULL */
int wk_dist_local_rank(const wk_dist *d); /* this rank's place among them; 0 for NULL */
/* The deadline of every wait, in seconds (for NULL: the default, with
 * $WHISKER_DIST_TIMEOUT applied; 300 when that is malformed). */
double wk_dist_timeout_s(const wk_dist *d);
const char *wk_dist_backend(const wk_dist *d); /* "none" or "mpi" */
/* A rank's default thread count: the machine's cores shared among the ranks
 * on it (at least 1); 0 (the usual default) in a world of one or when
 * $WHISKER_THREADS is set. */
int wk_dist_default_threads(const wk_dist *d);

/* Blocking (with the deadline): in-place sum over the ranks of n elements;
 * `what` names the collective in a timeout message. */
wk_status wk_dist_allreduce_sum(wk_dist *d, wk_dist_channel ch, wk_dist_dtype t, void *buf,
                                size_t n, const char *what);
/* Root's bytes to every rank. */
wk_status wk_dist_bcast(wk_dist *d, void *buf, size_t bytes, int root, const char *what);
wk_status wk_dist_barrier(wk_dist *d, const char *what);

/* Non-blocking sum (of f32) on a channel: *req identifies it until it is
 * waited for. Up to WK_DIST_MAX_PENDING in flight. */
#define WK_DIST_MAX_PENDING 256
wk_status wk_dist_iallreduce_f32(wk_dist *d, wk_dist_channel ch, float *buf, size_t n, int *req);
/* Drives progress; *done when that request finished (it is then freed). */
wk_status wk_dist_test(wk_dist *d, int req, bool *done);
/* Waits (with the deadline) for one request. */
wk_status wk_dist_wait(wk_dist *d, int req, const char *what);

/* Stops every rank with exit code `code` (MPI_Abort); returns only in a world
 * of one rank. */
void wk_dist_abort(wk_dist *d, int code);

#endif
