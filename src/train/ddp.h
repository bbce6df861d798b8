/* ddp.h - data-parallel training over the ranks of a wk_dist (PyTorch DDP's
 * scheme, on the CPU with MPI).
 *
 * Every rank holds the whole network. Rank 0's weights and buffers are
 * broadcast at the start; each step every rank runs forward and backward on
 * its own part of the global batch (data/loader.h shards it), and the
 * gradients are summed over the ranks in buckets of about bucket_bytes while
 * backward is still running: the network calls back after each node
 * (wk_net_set_backward_hook), and a bucket whose parameters all have their
 * gradient goes out on the gradient channel at once. wk_ddp_finish_step waits
 * for the rest and divides by the number of ranks, so every rank applies the
 * same mean gradient of the global batch and the weights stay identical.
 *
 * Batchnorm keeps per-rank statistics by default (the running statistics are
 * averaged over the ranks before validation and saving); with sync_bn the
 * batch statistics are the whole global batch's (nn/exec_syncbn.c), and R
 * ranks of batch B then train exactly as one process of batch R * B.
 *
 * A network on a GPU (one per rank) averages its gradients with NCCL instead
 * (cuda/cuda.h: wk_gpu_net_attach_comm): the same buckets, sent by the GPU
 * backend on a stream of its own while backward runs; rank 0 makes NCCL's id
 * and broadcasts it over the wk_dist. Everything else (the broadcast of the
 * initial model, buffer averaging, metrics) stays on the host and the wk_dist,
 * as the host owns the weights. Synchronised batchnorm there sums its
 * statistics with NCCL inside the GPU backend (kernels/syncbn.cu), also over
 * a communicator of one GPU. */
#ifndef WK_TRAIN_DDP_H
#define WK_TRAIN_DDP_H

#include "dist/dist.h"
#include "nn/net.h"

#define WK_DDP_BUCKET_BYTES_DEFAULT ((size_t)25 << 20)

typedef struct wk_ddp wk_ddp;

typedef struct wk_ddp_opts {
  size_t bucket_bytes; /* 0: WK_DDP_BUCKET_BYTES_DEFAULT */
  bool sync_bn;
  /* a network on a GPU in a world of one rank: still go through NCCL (what
   * `--gpus N` with one GPU does, so the path's cost can be measured) */
  bool nccl_single;
} wk_ddp_opts;

/* Borrows d and net (both must outlive it) and installs the network's hooks
 * (on a GPU: attaches the NCCL communicator, collectively). */
wk_status wk_ddp_create(wk_dist *d, wk_net *net, const wk_ddp_opts *o, wk_ddp **out);
/* Removes the hooks. NULL is fine. */
void wk_ddp_destroy(wk_ddp *p);

wk_dist *wk_ddp_dist(const wk_ddp *p);
int wk_ddp_n_buckets(const wk_ddp *p);
/* Buckets are made larger than bucket_bytes where needed to keep at most
 * this many (every one may be in flight at once; dist.h's limit is 256). */
#define WK_DDP_MAX_BUCKETS 128
/* Whether batchnorm runs synchronised (asked for, and more than one rank or
 * a communicator of one GPU). */
bool wk_ddp_synced_bn(const wk_ddp *p);
/* "mpi", "nccl" (gradients; the rest over MPI when there are several ranks)
 * or "none". */
const char *wk_ddp_backend(const wk_ddp *p);
/* Whether the network's GPU backend reduces the gradients (NCCL): its steps
 * may then run in one call (train/trainer.c). */
bool wk_ddp_nccl(const wk_ddp *p);

/* Before a step's forward: local batch n (dropout masks count from rank * n). */
wk_status wk_ddp_begin_step(wk_ddp *p, int64_t n);
/* After backward: sends what is left, waits for every bucket and divides the
 * gradients by the number of ranks. */
wk_status wk_ddp_finish_step(wk_ddp *p);

/* Rank 0's weights, buffers and batchnorm batch count to every rank (NULL p:
 * nothing to do, as for the next function). */
wk_status wk_ddp_broadcast_model(wk_ddp *p);
/* Batchnorm running statistics: the mean over the ranks (a no-op with sync_bn,
 * where they are equal already). */
wk_status wk_ddp_average_buffers(wk_ddp *p);

#endif
