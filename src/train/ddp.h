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
 * ranks of batch B then train exactly as one process of batch R * B. */
#ifndef WK_TRAIN_DDP_H
#define WK_TRAIN_DDP_H

#include "dist/dist.h"
#include "nn/net.h"

#define WK_DDP_BUCKET_BYTES_DEFAULT ((size_t)25 << 20)

typedef struct wk_ddp wk_ddp;

/* Borrows d and net (both must outlive it) and installs the network's hooks. */
wk_status wk_ddp_create(wk_dist *d, wk_net *net, size_t bucket_bytes, bool sync_bn,
                        wk_ddp **out);
/* Removes the hooks. NULL is fine. */
void wk_ddp_destroy(wk_ddp *p);

wk_dist *wk_ddp_dist(const wk_ddp *p);
int wk_ddp_n_buckets(const wk_ddp *p);

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
