/* loader.h - batches for the trainer: worker threads decode and augment
 * samples into a ring of batch buffers ahead of the consumer.
 *
 * Determinism: epoch e visits the dataset in the order of a shuffle drawn from
 * (seed, e) (or in dataset order when shuffle is off); batch b holds positions
 * [b * batch_size, (b + 1) * batch_size) of that order; each sample is
 * augmented from its own random stream (seed, e, dataset index). Workers take
 * single samples, in any order, and write each to its fixed place in its
 * batch, and batches are handed out strictly in order, so the bytes of every
 * batch are the same for any number of workers.
 *
 * A file that fails at load time (changed or removed since the pre-scan) is
 * reported once, and the sample is replaced by the next dataset index that
 * loads (wrapping around), augmented with the failed sample's random stream:
 * a deterministic substitute, counted in the batch and in the totals. Only if
 * WK_LOADER_MAX_SUBSTITUTES files in a row fail, or memory runs out, does
 * wk_loader_next_batch return an error.
 *
 * Use from one consumer thread:
 *   wk_loader_create(ds, &cfg, &ld);
 *   for (epoch...) { wk_loader_start_epoch(ld, epoch);
 *                    while (wk_loader_next_batch(ld, &b) == WK_OK && b) train(b); }
 *   (wk_loader_peek_batch inside the loop: the following batch, too)
 *   wk_loader_destroy(ld);   (at any point, also mid-epoch) */
#ifndef WK_LOADER_H
#define WK_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"
#include "data/augment.h"
#include "data/dataset.h"

#define WK_LOADER_MAX_SUBSTITUTES 64

typedef struct wk_loader_cfg {
  int batch_size;       /* samples per batch */
  int n_workers;        /* decoding threads, >= 1 */
  int prefetch;         /* batches in the ring; <= 0: 2 * n_workers (at least 2) */
  uint64_t seed;
  bool shuffle;         /* a new order every epoch (training) or dataset order */
  bool drop_last;       /* leave out a last batch shorter than batch_size */
  bool want_f32;        /* fill wk_batch.images */
  bool want_u8;         /* fill wk_batch.images_u8 */
  wk_augment_cfg aug;
  int64_t max_pixels;   /* <= 0: wk_image_max_pixels() (WHISKER_MAX_PIXELS or 64 Mpx) */
  wk_alpha_mode alpha;
  /* Data parallelism: with shard_count R > 1 this loader serves rank
   * shard_index's part of the epoch. The epoch's order is cut into chunks of
   * batch_size; batch b of rank r is chunk b * R + r, so one step of R ranks
   * covers the same samples, augmented the same, as one batch of R *
   * batch_size of a single process. With drop_last every rank gets
   * floor(n / (R * batch_size)) full batches; without, the ranks share the
   * chunks round-robin (the last may be short, and ranks may differ by one). */
  int shard_index, shard_count; /* count 0 means 1 */
} wk_loader_cfg;

/* Training: augment = wk_augment_cfg_train(size), shuffle, drop_last, f32.
 * Evaluation: wk_augment_cfg_eval(size), dataset order, every sample, f32. */
wk_loader_cfg wk_loader_cfg_train(int size, int batch_size, int n_workers, uint64_t seed);
wk_loader_cfg wk_loader_cfg_eval(int size, int batch_size, int n_workers);

typedef struct wk_batch {
  wk_tensor images;      /* (n, H, W, 3) f32, normalised; empty without want_f32 */
  wk_tensor images_u8;   /* (n, H, W, 3) u8 before normalisation; empty without want_u8 */
  wk_tensor labels;      /* (n) i32 */
  const int64_t *samples; /* (n) the dataset index each image came from */
  int64_t n;              /* samples in this batch (the last one may be short) */
  int64_t epoch, index;   /* batch `index` of `epoch` */
  int n_substituted;      /* samples replaced because their file failed to load */
} wk_batch;

typedef struct wk_loader wk_loader;

/* ds must outlive the loader. Starts the workers (idle until an epoch starts). */
wk_status wk_loader_create(const wk_dataset *ds, const wk_loader_cfg *cfg, wk_loader **out);

/* Starts (or restarts) an epoch; work still in flight for the previous one is
 * discarded. epoch in [0, 2^31). */
wk_status wk_loader_start_epoch(wk_loader *ld, int64_t epoch);

/* The next batch of the current epoch, waiting for it if needed; *out is NULL
 * after the last one. The batch's memory belongs to the loader and stays
 * valid until the next call to wk_loader_next_batch, wk_loader_start_epoch or
 * wk_loader_destroy. */
wk_status wk_loader_next_batch(wk_loader *ld, const wk_batch **out);

/* The batch the next wk_loader_next_batch will return, waiting for it if
 * needed, while the one handed out last stays valid: a GPU trainer copies the
 * next batch up while the current one computes. *out is NULL after the last
 * batch of the epoch. The peeked batch is the same memory the next call
 * returns, unchanged until the call after that (the ring has at least two
 * slots, so peeking never waits on the consumer itself). */
wk_status wk_loader_peek_batch(wk_loader *ld, const wk_batch **out);

int64_t wk_loader_batches_per_epoch(const wk_loader *ld);

/* Samples replaced since the loader was created. */
int64_t wk_loader_n_substituted(wk_loader *ld);

/* Stops the workers (mid-epoch too) and frees everything. NULL is fine. */
void wk_loader_destroy(wk_loader *ld);

#endif
