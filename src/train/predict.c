/* predict.c - see predict.h. */
#include "train/predict.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/log.h"
#include "data/loader.h"
#include "ops/parallel.h"

void wk_softmax_rows(float *x, int64_t n, int k) {
  for (int64_t i = 0; i < n; i++) {
    float *r = x + i * k, mx = r[0];
    for (int j = 1; j < k; j++) mx = r[j] > mx ? r[j] : mx;
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += (r[j] = expf(r[j] - mx));
    for (int j = 0; j < k; j++) r[j] = (float)(r[j] / sum);
  }
}

wk_augment_cfg wk_augment_cfg_from_preprocess(const wk_preprocess *pre) {
  wk_augment_cfg a = wk_augment_cfg_eval(pre->crop_px);
  a.eval_resize = pre->resize_px;
  memcpy(a.mean, pre->mean, sizeof a.mean);
  memcpy(a.std, pre->std, sizeof a.std);
  return a;
}

wk_status wk_predict_dataset_part(wk_net *net, const wk_preprocess *pre, const wk_dataset *ds,
                                  int batch, int workers, int part, int parts, float *probs,
                                  int32_t *labels) {
  const int64_t k = wk_net_output_features(net);
  wk_loader_cfg cfg = wk_loader_cfg_eval(pre->crop_px, batch, workers);
  cfg.aug = wk_augment_cfg_from_preprocess(pre);
  cfg.shard_index = part;
  cfg.shard_count = parts;
  /* on a GPU: 8-bit batches, normalised there */
  bool u8 = false;
  wk_loader *ld = NULL;
  wk_status st = wk_net_prefer_u8(net, pre->mean, pre->std, &u8);
  cfg.want_u8 = u8;
  cfg.want_f32 = !u8;
  /* on a GPU the loop holds two batches (the forward's and the next, staged while it
   * computes: wk_loader_peek_batch); one more slot keeps the workers a full ring ahead,
   * as training's (fit.c) */
  const bool gpu = wk_net_on_gpu(net);
  if (gpu) cfg.prefetch = (cfg.n_workers > 1 ? 2 * cfg.n_workers : 2) + 1;
  if (st == WK_OK) st = wk_loader_create(ds, &cfg, &ld);
  if (st == WK_OK) st = wk_loader_start_epoch(ld, 0);
  while (st == WK_OK) {
    const wk_batch *b, *next = NULL;
    if ((st = wk_loader_next_batch(ld, &b)) != WK_OK || !b) break;
    /* held, unchanged, until the next forward takes it */
    if (gpu && (st = wk_loader_peek_batch(ld, &next)) != WK_OK) break;
    wk_tensor out;
    const wk_tensor *x = u8 ? &b->images_u8 : &b->images;
    const wk_tensor *nx = next ? (u8 ? &next->images_u8 : &next->images) : NULL;
    if ((st = wk_net_forward_next(net, x, false, nx, &out)) != WK_OK) break;
    /* batch i of part p is the dataset's chunk i * parts + p (data/loader.h) */
    const int64_t row = (b->index * (parts > 1 ? parts : 1) + part) * (int64_t)batch;
    memcpy(probs + row * k, out.data, (size_t)(b->n * k) * sizeof *probs);
    wk_softmax_rows(probs + row * k, b->n, (int)k);
    for (int64_t i = 0; i < b->n; i++) labels[row + i] = ((const int32_t *)b->labels.data)[i];
  }
  wk_loader_destroy(ld);
  return st;
}

wk_status wk_predict_dataset(wk_net *net, const wk_preprocess *pre, const wk_dataset *ds,
                             int batch, int workers, float **probs_out, int32_t **labels_out) {
  *probs_out = NULL;
  *labels_out = NULL;
  const int64_t n = wk_dataset_size(ds), k = wk_net_output_features(net);
  float *probs = malloc((size_t)(n * k) * sizeof *probs);
  int32_t *labels = malloc((size_t)n * sizeof *labels);
  wk_status st = WK_OK;
  if (!probs || !labels) st = wk_fail(WK_ERR_NOMEM, "out of memory for %lld predictions",
                                      (long long)n);
  if (st == WK_OK)
    st = wk_predict_dataset_part(net, pre, ds, batch, workers, 0, 1, probs, labels);
  if (st != WK_OK) {
    free(probs);
    free(labels);
    return st;
  }
  *probs_out = probs;
  *labels_out = labels;
  return WK_OK;
}

/* why[i] = msg without a leading "PATH: ", where why is given */
static void wk_keep_reason(char **why, int64_t i, const char *path, const char *msg) {
  if (!why) return;
  msg = wk_error_after_path(msg, path);
  const size_t len = strlen(msg) + 1;
  free(why[i]);
  why[i] = malloc(len);
  if (why[i]) memcpy(why[i], msg, len);
}

/* One batch's decoding, split over the context's thread count: worker w decodes files
 * first + w, first + w + n_workers, ... of the n into slots of buf with augmenter a[w];
 * a file that fails keeps its status and message (the message is the worker thread's) for
 * the caller, which reports them in order. The workers run as wk_parallel_slices' items,
 * one each, on OpenMP's threads, the ones oneDNN's primitives and whisker's own CPU
 * kernels run on: the context's pool of threads of its own measured no faster than one
 * thread decoding (2 cores, OpenMP's threads still spinning from the forward), OpenMP's
 * 12% faster over 1,000 photos. */
enum { WK_FILE_MSG_BYTES = 1024 }; /* as core/status.c's message store */
typedef struct wk_decode_job {
  wk_augmenter **a;
  int n_workers;
  const char *const *paths;
  int64_t first, n, px;
  float *buf;
  wk_status *st;
  char (*msg)[WK_FILE_MSG_BYTES];
} wk_decode_job;

static void wk_decode_range(const void *arg, int64_t w0, int64_t w1) {
  const wk_decode_job *j = arg;
  for (int64_t w = w0; w < w1; w++)
    for (int64_t m = w; m < j->n; m += j->n_workers) {
      j->st[m] = wk_augment_file(j->a[w], j->paths[j->first + m], NULL, 0, 0, 0,
                                 j->buf + m * j->px, NULL);
      if (j->st[m] != WK_OK) snprintf(j->msg[m], sizeof j->msg[m], "%s", wk_last_error());
    }
}

wk_status wk_predict_files(wk_net *net, const wk_preprocess *pre, const char *const *paths,
                           int64_t n, int batch, float *probs, int64_t *bad, char **why) {
  const int64_t k = wk_net_output_features(net), px = (int64_t)pre->crop_px * pre->crop_px * 3;
  const wk_augment_cfg acfg = wk_augment_cfg_from_preprocess(pre);
  const int threads = wk_net_ctx(net)->n_threads;
  const int nw = threads < 1 ? 1 : threads < batch ? threads : batch;
  wk_augmenter **aug = calloc((size_t)nw, sizeof *aug);
  float *buf = malloc((size_t)(batch * px) * sizeof *buf);
  int64_t *rows = malloc((size_t)batch * sizeof *rows);
  wk_status *fst = malloc((size_t)batch * sizeof *fst);
  char(*msg)[WK_FILE_MSG_BYTES] = malloc((size_t)batch * sizeof *msg);
  wk_status st = aug && buf && rows && fst && msg
                     ? WK_OK
                     : wk_fail(WK_ERR_NOMEM, "out of memory for a batch of %d", batch);
  for (int w = 0; st == WK_OK && w < nw; w++) st = wk_augmenter_create(&acfg, &aug[w]);
  *bad = 0;
  for (int64_t i = 0; st == WK_OK && i < n;) {
    const int64_t nb = n - i < batch ? n - i : batch;
    wk_decode_job job = {.a = aug, .n_workers = nw, .paths = paths, .first = i, .n = nb,
                         .px = px, .buf = buf, .st = fst, .msg = msg};
    /* a file's decoding is worth a thread of its own */
    wk_parallel_slices(wk_net_ctx(net), nw < nb ? nw : nb, WK_PARALLEL_MIN_WORK,
                       wk_decode_range, &job);
    int m = 0; /* the files that decoded, packed to the front of buf in order */
    for (int64_t f = 0; f < nb; f++, i++) {
      if (fst[f] != WK_OK) {
        wk_log(WK_LOG_ERROR, "%s", msg[f]);
        wk_keep_reason(why, i, paths[i], msg[f]);
        for (int64_t j = 0; j < k; j++) probs[i * k + j] = NAN;
        (*bad)++;
        continue;
      }
      if (m != f) memmove(buf + m * px, buf + f * px, (size_t)px * sizeof *buf);
      rows[m++] = i;
    }
    if (m == 0) continue;
    const int64_t shape[4] = {m, pre->crop_px, pre->crop_px, 3};
    wk_tensor x = wk_tensor_view(buf, WK_F32, 4, shape), out;
    if ((st = wk_net_forward(net, &x, false, &out)) != WK_OK) break;
    for (int r = 0; r < m; r++) {
      const float *logit = (const float *)out.data + r * k;
      bool finite = true;
      for (int64_t j = 0; j < k && finite; j++) finite = isfinite(logit[j]);
      if (finite) {
        memcpy(probs + rows[r] * k, logit, (size_t)k * sizeof *probs);
        wk_softmax_rows(probs + rows[r] * k, 1, (int)k);
        continue;
      }
      /* finite weights can still overflow on some input: say so, never print NaN */
      static const char nonfinite[] = "the model's output is not a number (NaN or infinity); "
                                      "the model may be damaged or overflow on this image";
      wk_log(WK_LOG_ERROR, "%s: %s", paths[rows[r]], nonfinite);
      wk_keep_reason(why, rows[r], paths[rows[r]], nonfinite);
      for (int64_t j = 0; j < k; j++) probs[rows[r] * k + j] = NAN;
      (*bad)++;
    }
  }
  for (int w = 0; aug && w < nw; w++) wk_augmenter_destroy(aug[w]);
  free(aug);
  free(buf);
  free(rows);
  free(fst);
  free(msg);
  return st;
}
