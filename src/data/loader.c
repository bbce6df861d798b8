/* loader.c - the worker threads and the ring of batches (see loader.h).
 *
 * One mutex guards the bookkeeping; pixels are written outside it. Epoch
 * positions are handed to workers one at a time (next_item); position p
 * belongs to batch p / batch_size, which lives in slot (batch % ring). A
 * worker may start on batch b only when b < released + ring, i.e. when the
 * slot's previous batch has been given back by the consumer; the batch the
 * consumer holds counts as not given back until its next call. A slot becomes
 * ready when all its samples are written, and the consumer takes slots
 * strictly in batch order. A new epoch bumps `generation`, waits until no
 * worker is mid-sample and resets the ring; work begun for the old epoch is
 * then recognised by its generation and dropped. */
#include "data/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hostres.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/stream.h"

#define WK_LOADER_MAX_RING 64

typedef struct wk_slot {
  wk_batch batch;
  int64_t *samples;  /* (batch_size) */
  int64_t index;     /* batch of the epoch held, -1: none */
  int n_expected, n_done;
  bool ready;
} wk_slot;

typedef struct wk_worker {
  struct wk_loader *ld;
  wk_augmenter *aug;
  pthread_t thread;
} wk_worker;

struct wk_loader {
  const wk_dataset *ds;
  wk_loader_cfg cfg;
  wk_decode_opts dec;
  int64_t n_samples, n_items, n_batches; /* per epoch */
  size_t image_elems;                    /* H * W * 3 */
  int64_t *order;                        /* (n_items) dataset index at each position */
  int64_t *full;                         /* (n_samples) the whole epoch's order, sharded */
  uint8_t *reported;                     /* (n_samples) load failure already logged */
  int ring;
  wk_slot *slots;                        /* (ring) */
  wk_worker *workers;                    /* (cfg.n_workers) */
  int n_started;

  pthread_mutex_t mu;
  pthread_cond_t work_cv;  /* workers: something to do or stop */
  pthread_cond_t ready_cv; /* consumer: a slot became ready or an error */
  pthread_cond_t idle_cv;  /* start_epoch: no worker mid-sample */
  bool stop, active;
  uint64_t generation;
  int64_t epoch, next_item, released, handed;
  int n_busy;
  wk_status error;
  char error_msg[1024];
  int64_t n_substituted;
};

wk_loader_cfg wk_loader_cfg_train(int size, int batch_size, int n_workers, uint64_t seed) {
  wk_loader_cfg c = {.batch_size = batch_size, .n_workers = n_workers, .seed = seed,
                     .shuffle = true, .drop_last = true, .want_f32 = true,
                     .aug = wk_augment_cfg_train(size)};
  return c;
}

wk_loader_cfg wk_loader_cfg_eval(int size, int batch_size, int n_workers) {
  wk_loader_cfg c = {.batch_size = batch_size, .n_workers = n_workers, .want_f32 = true,
                     .aug = wk_augment_cfg_eval(size)};
  return c;
}

/* ---------------------------------------------------------------- workers */
static void wk_report_once(wk_loader *ld, int64_t idx, const char *msg) {
  pthread_mutex_lock(&ld->mu);
  bool first = !ld->reported[idx];
  ld->reported[idx] = 1;
  pthread_mutex_unlock(&ld->mu);
  if (first) WK_LOG_W("cannot load %s; a substitute takes its place", msg);
}

/* Loads sample `sample` or, failing that, the next dataset index that loads,
 * always with the random stream of `sample`. */
static wk_status wk_load_sample(wk_worker *w, int64_t epoch, int64_t sample, float *f32,
                                uint8_t *u8, int64_t *used) {
  wk_loader *ld = w->ld;
  int64_t tries = ld->n_samples < WK_LOADER_MAX_SUBSTITUTES + 1 ? ld->n_samples
                                                                 : WK_LOADER_MAX_SUBSTITUTES + 1;
  wk_status s = WK_OK;
  for (int64_t t = 0; t < tries; t++) {
    int64_t idx = (sample + t) % ld->n_samples;
    s = wk_augment_file(w->aug, wk_dataset_path(ld->ds, idx), &ld->dec, ld->cfg.seed, epoch,
                        sample, f32, u8);
    if (s == WK_OK) {
      *used = idx;
      return WK_OK;
    }
    if (s == WK_ERR_NOMEM) return s;
    wk_report_once(ld, idx, wk_last_error());
  }
  char last[512];
  snprintf(last, sizeof last, "%s", wk_last_error());
  return wk_fail(s, "loader: %lld files in a row failed to load (from %s); the last: %s",
                 (long long)tries, wk_dataset_path(ld->ds, sample), last);
}

static bool wk_has_work(const wk_loader *ld) {
  return ld->active && ld->error == WK_OK && ld->next_item < ld->n_items &&
         ld->next_item / ld->cfg.batch_size < ld->released + ld->ring;
}

static void wk_slot_begin(wk_loader *ld, wk_slot *slot, int64_t b) {
  int64_t left = ld->n_items - b * ld->cfg.batch_size;
  slot->index = b;
  slot->n_done = 0;
  slot->n_expected = (int)(left < ld->cfg.batch_size ? left : ld->cfg.batch_size);
  slot->ready = false;
  slot->batch.n = slot->n_expected;
  slot->batch.epoch = ld->epoch;
  slot->batch.index = b;
  slot->batch.n_substituted = 0;
}

static void *wk_worker_main(void *arg) {
  wk_worker *w = arg;
  wk_loader *ld = w->ld;
  const int64_t bs = ld->cfg.batch_size;
  pthread_mutex_lock(&ld->mu);
  for (;;) {
    while (!ld->stop && !wk_has_work(ld)) pthread_cond_wait(&ld->work_cv, &ld->mu);
    if (ld->stop) break;
    int64_t pos = ld->next_item++, b = pos / bs, k = pos % bs;
    wk_slot *slot = &ld->slots[b % ld->ring];
    if (slot->index != b) wk_slot_begin(ld, slot, b);
    const uint64_t gen = ld->generation;
    const int64_t epoch = ld->epoch, sample = ld->order[pos];
    ld->n_busy++;
    pthread_mutex_unlock(&ld->mu);

    float *f32 = ld->cfg.want_f32 ? (float *)slot->batch.images.data + (size_t)k * ld->image_elems
                                  : NULL;
    uint8_t *u8 = ld->cfg.want_u8
                      ? (uint8_t *)slot->batch.images_u8.data + (size_t)k * ld->image_elems
                      : NULL;
    int64_t used = sample;
    wk_status s = wk_load_sample(w, epoch, sample, f32, u8, &used);
    char msg[sizeof ld->error_msg];
    if (s != WK_OK) snprintf(msg, sizeof msg, "%s", wk_last_error());

    pthread_mutex_lock(&ld->mu);
    if (--ld->n_busy == 0) pthread_cond_broadcast(&ld->idle_cv);
    if (gen != ld->generation) continue; /* the epoch was restarted: drop it */
    if (s != WK_OK) {
      if (ld->error == WK_OK) {
        ld->error = s;
        memcpy(ld->error_msg, msg, sizeof msg);
      }
      pthread_cond_broadcast(&ld->ready_cv);
      continue;
    }
    slot->samples[k] = used;
    ((int32_t *)slot->batch.labels.data)[k] = wk_dataset_label(ld->ds, used);
    if (used != sample) {
      slot->batch.n_substituted++;
      ld->n_substituted++;
    }
    if (++slot->n_done == slot->n_expected) {
      slot->ready = true;
      pthread_cond_broadcast(&ld->ready_cv);
    }
  }
  pthread_mutex_unlock(&ld->mu);
  return NULL;
}

/* ---------------------------------------------------------------- consumer */
wk_status wk_loader_start_epoch(wk_loader *ld, int64_t epoch) {
  if (epoch < 0 || epoch > WK_STREAM_MAX_EPOCH)
    return wk_fail(WK_ERR_INVALID_ARG, "loader: epoch %lld out of range", (long long)epoch);
  pthread_mutex_lock(&ld->mu);
  ld->generation++;
  ld->active = false;
  while (ld->n_busy > 0) pthread_cond_wait(&ld->idle_cv, &ld->mu);
  int64_t *all = ld->full ? ld->full : ld->order;
  for (int64_t i = 0; i < ld->n_samples; i++) all[i] = i;
  if (ld->cfg.shuffle) {
    wk_rng r = wk_rng_make(ld->cfg.seed, wk_stream_shuffle(epoch));
    for (int64_t i = ld->n_samples - 1; i > 0; i--) {
      int64_t j = wk_rng_below(&r, (uint32_t)(i + 1));
      int64_t t = all[i];
      all[i] = all[j];
      all[j] = t;
    }
  }
  if (ld->full) { /* this rank's chunks: batch b is chunk b * R + r */
    const int64_t bs = ld->cfg.batch_size, nr = ld->cfg.shard_count, rank = ld->cfg.shard_index;
    for (int64_t p = 0; p < ld->n_items; p++)
      ld->order[p] = all[(p / bs * nr + rank) * bs + p % bs];
  }
  for (int i = 0; i < ld->ring; i++) {
    ld->slots[i].index = -1;
    ld->slots[i].ready = false;
  }
  ld->epoch = epoch;
  ld->next_item = ld->released = ld->handed = 0;
  ld->error = WK_OK;
  ld->active = true;
  pthread_cond_broadcast(&ld->work_cv);
  pthread_mutex_unlock(&ld->mu);
  return WK_OK;
}

static void wk_set_rows(wk_tensor *t, int64_t n) {
  if (t->data) t->shape[0] = n;
}

/* Batch `handed` (the next to hand out), waited for; with `take` the one
 * handed out before it is given back first and `handed` advances. */
static wk_status wk_loader_take(wk_loader *ld, bool take, const wk_batch **out) {
  *out = NULL;
  pthread_mutex_lock(&ld->mu);
  if (!ld->active) {
    pthread_mutex_unlock(&ld->mu);
    return wk_fail(WK_ERR_INVALID_ARG, "loader: wk_loader_start_epoch was not called");
  }
  if (take && ld->handed > ld->released) { /* give back the batch handed out last time */
    ld->released = ld->handed;
    pthread_cond_broadcast(&ld->work_cv);
  }
  if (ld->handed >= ld->n_batches) {
    pthread_mutex_unlock(&ld->mu);
    return WK_OK;
  }
  /* a peek waits for slot handed % ring while handed - 1 is held: a different
   * slot (ring >= 2), which workers may fill (handed < released + ring) */
  wk_slot *slot = &ld->slots[ld->handed % ld->ring];
  while (ld->error == WK_OK && !(slot->index == ld->handed && slot->ready))
    pthread_cond_wait(&ld->ready_cv, &ld->mu);
  if (ld->error != WK_OK) {
    wk_status s = wk_fail(ld->error, "%s", ld->error_msg);
    pthread_mutex_unlock(&ld->mu);
    return s;
  }
  wk_batch *b = &slot->batch;
  wk_set_rows(&b->images, b->n);
  wk_set_rows(&b->images_u8, b->n);
  wk_set_rows(&b->labels, b->n);
  if (take) ld->handed++;
  *out = b;
  pthread_mutex_unlock(&ld->mu);
  return WK_OK;
}

wk_status wk_loader_next_batch(wk_loader *ld, const wk_batch **out) {
  return wk_loader_take(ld, true, out);
}

wk_status wk_loader_peek_batch(wk_loader *ld, const wk_batch **out) {
  return wk_loader_take(ld, false, out);
}

int64_t wk_loader_batches_per_epoch(const wk_loader *ld) { return ld->n_batches; }

int64_t wk_loader_n_substituted(wk_loader *ld) {
  pthread_mutex_lock(&ld->mu);
  int64_t n = ld->n_substituted;
  pthread_mutex_unlock(&ld->mu);
  return n;
}

/* ---------------------------------------------------------------- lifetime */
void wk_loader_destroy(wk_loader *ld) {
  if (!ld) return;
  pthread_mutex_lock(&ld->mu);
  ld->stop = true;
  pthread_cond_broadcast(&ld->work_cv);
  pthread_mutex_unlock(&ld->mu);
  for (int i = 0; i < ld->n_started; i++) pthread_join(ld->workers[i].thread, NULL);
  for (int i = 0; ld->workers && i < ld->cfg.n_workers; i++)
    wk_augmenter_destroy(ld->workers[i].aug);
  for (int i = 0; ld->slots && i < ld->ring; i++) {
    wk_tensor_free(&ld->slots[i].batch.images);
    wk_tensor_free(&ld->slots[i].batch.images_u8);
    wk_tensor_free(&ld->slots[i].batch.labels);
    free(ld->slots[i].samples);
  }
  pthread_mutex_destroy(&ld->mu);
  pthread_cond_destroy(&ld->work_cv);
  pthread_cond_destroy(&ld->ready_cv);
  pthread_cond_destroy(&ld->idle_cv);
  free(ld->slots);
  free(ld->workers);
  free(ld->order);
  free(ld->full);
  free(ld->reported);
  free(ld);
}

static wk_status wk_loader_check_cfg(const wk_dataset *ds, const wk_loader_cfg *c) {
  if (c->batch_size < 1 || c->batch_size > (1 << 20))
    return wk_fail(WK_ERR_INVALID_ARG, "loader: batch size %d", c->batch_size);
  if (c->n_workers < 1 || c->n_workers > 256)
    return wk_fail(WK_ERR_INVALID_ARG, "loader: %d workers (1..256)", c->n_workers);
  if (!c->want_f32 && !c->want_u8)
    return wk_fail(WK_ERR_INVALID_ARG, "loader: neither f32 nor u8 images wanted");
  int64_t n = wk_dataset_size(ds);
  if (n < 1 || n > WK_STREAM_MAX_SAMPLE)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: %lld samples", wk_dataset_source(ds), (long long)n);
  const int nr = c->shard_count > 1 ? c->shard_count : 1;
  if (c->shard_count < 0 || c->shard_count > 65536 || c->shard_index < 0 ||
      c->shard_index >= nr)
    return wk_fail(WK_ERR_INVALID_ARG, "loader: shard %d of %d", c->shard_index,
                   c->shard_count);
  if (c->drop_last && n < (int64_t)c->batch_size * nr)
    return wk_fail(WK_ERR_INVALID_ARG,
                   "%s: %lld samples make no full batch of %d%s (drop_last is on)",
                   wk_dataset_source(ds), (long long)n, c->batch_size * nr,
                   nr > 1 ? " over all ranks" : "");
  return wk_augment_cfg_check(&c->aug);
}

static wk_status wk_slot_alloc(wk_loader *ld, wk_slot *slot) {
  const wk_loader_cfg *c = &ld->cfg;
  const int64_t shape[4] = {c->batch_size, c->aug.out_height, c->aug.out_width, 3};
  const int64_t rows[1] = {c->batch_size};
  slot->index = -1;
  if (c->want_f32) WK_TRY(wk_tensor_alloc(&slot->batch.images, WK_F32, 4, shape));
  if (c->want_u8) WK_TRY(wk_tensor_alloc(&slot->batch.images_u8, WK_U8, 4, shape));
  WK_TRY(wk_tensor_alloc(&slot->batch.labels, WK_I32, 1, rows));
  slot->samples = calloc((size_t)c->batch_size, sizeof *slot->samples);
  if (!slot->samples) return wk_fail(WK_ERR_NOMEM, "loader: out of memory");
  slot->batch.samples = slot->samples;
  return WK_OK;
}

/* The ring's batches are zeroed (their pages touched) when made: refused
 * past half of what the host has available, rather than killed by the
 * kernel or swapping for minutes (core/hostres.h). */
static wk_status wk_loader_room(const wk_loader *ld) {
  const wk_loader_cfg *c = &ld->cfg;
  const double bytes = (double)ld->ring * (double)c->batch_size * (double)ld->image_elems *
                       (double)((c->want_f32 ? sizeof(float) : 0) + (c->want_u8 ? 1 : 0));
  char what[128];
  snprintf(what, sizeof what, "loader: %d batches of %d images of %dx%d px in flight", ld->ring,
           c->batch_size, c->aug.out_width, c->aug.out_height);
  return wk_host_half_room("", bytes, what, "try a smaller --batch or --size");
}

static wk_status wk_loader_init(wk_loader *ld) {
  const wk_loader_cfg *c = &ld->cfg;
  const int64_t bs = c->batch_size, nr = c->shard_count > 1 ? c->shard_count : 1;
  ld->n_samples = wk_dataset_size(ld->ds);
  if (c->drop_last) {
    ld->n_batches = ld->n_samples / (bs * nr);
    ld->n_items = ld->n_batches * bs;
  } else { /* chunks c = b * nr + shard_index below ceil(n / bs); the last may be short */
    const int64_t chunks = (ld->n_samples + bs - 1) / bs;
    ld->n_batches = chunks > c->shard_index ? (chunks - c->shard_index + nr - 1) / nr : 0;
    const int64_t last = ld->n_batches ? (ld->n_batches - 1) * nr + c->shard_index : -1;
    ld->n_items = ld->n_batches * bs -
                  (last == chunks - 1 ? chunks * bs - ld->n_samples : 0);
  }
  ld->image_elems = (size_t)c->aug.out_height * (size_t)c->aug.out_width * 3;
  ld->dec = wk_decode_opts_default();
  ld->dec.max_pixels = c->max_pixels;
  ld->dec.alpha = c->alpha;
  ld->ring = c->prefetch > 0 ? c->prefetch : 2 * c->n_workers;
  ld->ring = ld->ring < 2 ? 2 : ld->ring > WK_LOADER_MAX_RING ? WK_LOADER_MAX_RING : ld->ring;
  ld->order = calloc((size_t)ld->n_samples, sizeof *ld->order);
  if (nr > 1 && !(ld->full = calloc((size_t)ld->n_samples, sizeof *ld->full)))
    return wk_fail(WK_ERR_NOMEM, "loader: out of memory");
  ld->reported = calloc((size_t)ld->n_samples, 1);
  ld->slots = calloc((size_t)ld->ring, sizeof *ld->slots);
  ld->workers = calloc((size_t)c->n_workers, sizeof *ld->workers);
  if (!ld->order || !ld->reported || !ld->slots || !ld->workers)
    return wk_fail(WK_ERR_NOMEM, "loader: out of memory");
  WK_TRY(wk_loader_room(ld));
  for (int i = 0; i < ld->ring; i++) WK_TRY(wk_slot_alloc(ld, &ld->slots[i]));
  for (int i = 0; i < c->n_workers; i++) {
    ld->workers[i].ld = ld;
    WK_TRY(wk_augmenter_create(&c->aug, &ld->workers[i].aug));
  }
  for (int i = 0; i < c->n_workers; i++) {
    if (pthread_create(&ld->workers[i].thread, NULL, wk_worker_main, &ld->workers[i]) != 0)
      return wk_fail(WK_ERR_BACKEND, "loader: cannot start worker thread %d", i + 1);
    ld->n_started++;
  }
  return WK_OK;
}

wk_status wk_loader_create(const wk_dataset *ds, const wk_loader_cfg *cfg, wk_loader **out) {
  *out = NULL;
  WK_TRY(wk_loader_check_cfg(ds, cfg));
  wk_loader *ld = calloc(1, sizeof *ld);
  if (!ld) return wk_fail(WK_ERR_NOMEM, "loader: out of memory");
  ld->ds = ds;
  ld->cfg = *cfg;
  if (pthread_mutex_init(&ld->mu, NULL) != 0 || pthread_cond_init(&ld->work_cv, NULL) != 0 ||
      pthread_cond_init(&ld->ready_cv, NULL) != 0 || pthread_cond_init(&ld->idle_cv, NULL) != 0) {
    free(ld); /* glibc's init cannot fail with default attributes; nothing to undo */
    return wk_fail(WK_ERR_BACKEND, "loader: cannot initialise its mutex");
  }
  wk_status s = wk_loader_init(ld);
  if (s != WK_OK) {
    wk_loader_destroy(ld);
    return s;
  }
  *out = ld;
  return WK_OK;
}
