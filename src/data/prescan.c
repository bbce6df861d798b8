/* prescan.c - every file of a dataset read and decoded once, in parallel, so
 * that bad files are found and reported before training rather than in the
 * middle of it. JPEGs decode at 1/8 scale (the entropy decoding, which is what
 * finds truncation and corruption, still covers the whole file, but the IDCT
 * and colour conversion nearly vanish); PNGs decode fully. The verdicts land
 * in an array by sample index, so the result does not depend on the thread
 * count. */
#include "core/context.h"
#include "data/dataset_impl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/threadpool.h"
#include "image/image.h"

typedef struct wk_prescan {
  const wk_dataset *ds;
  int64_t max_pixels;
  wk_status *status; /* (n_samples) */
  char **message;    /* (n_samples) malloc'ed wk_fail message where status != WK_OK */
} wk_prescan;

static void wk_prescan_range(void *arg, int64_t begin, int64_t end) {
  wk_prescan *job = arg;
  wk_decoder *dec = NULL;
  wk_bytes file = {0};
  wk_image img = {0};
  wk_decode_opts o = wk_decode_opts_default();
  o.max_pixels = job->max_pixels;
  o.min_width = o.min_height = 1; /* the smallest DCT scale */
  wk_status made = wk_decoder_create(&dec);
  for (int64_t i = begin; i < end; i++) {
    const char *path = job->ds->samples[i].path;
    wk_status s = made;
    if (s == WK_OK) s = wk_file_read(path, 0, &file);
    if (s == WK_OK) s = wk_image_decode(dec, file.data, file.n_bytes, path, &o, &img, NULL);
    job->status[i] = s;
    if (s != WK_OK) job->message[i] = wk_strdup(wk_last_error());
  }
  wk_image_free(&img);
  wk_bytes_free(&file);
  wk_decoder_destroy(dec);
}

static int wk_online_cores(void) {
  const int n = wk_cpu_count();
  return n > 64 ? 64 : n;
}

wk_status wk_dataset_prescan(wk_dataset *ds, const wk_dataset_opts *o) {
  int64_t n = ds->n_samples;
  if (n == 0) return WK_OK;
  wk_prescan job = {.ds = ds, .max_pixels = o->max_pixels};
  job.status = calloc((size_t)n, sizeof *job.status);
  job.message = calloc((size_t)n, sizeof *job.message);
  wk_pool *pool = NULL;
  wk_status s = job.status && job.message ? WK_OK : wk_fail(WK_ERR_NOMEM, "%s: out of memory",
                                                             ds->source);
  int threads = o->n_threads > 0 ? o->n_threads : wk_online_cores();
  if (threads > n) threads = (int)n;
  if (s == WK_OK) s = wk_pool_create(&pool, threads);
  if (s == WK_OK) wk_pool_parallel_for(pool, n, 1, wk_prescan_range, &job);
  wk_pool_destroy(pool);

  /* Keep the good samples in order; report the others in order. Running
   * out of memory is no verdict on a file: it fails the scan. */
  int64_t kept = 0;
  for (int64_t i = 0; s == WK_OK && i < n; i++) {
    if (job.status[i] == WK_ERR_NOMEM || (job.status[i] != WK_OK && !job.message[i])) {
      s = wk_fail(WK_ERR_NOMEM, "%s: out of memory while checking %s", ds->source,
                  ds->samples[i].path);
    } else if (job.status[i] != WK_OK) {
      s = wk_dataset_push_bad(ds, ds->samples[i].path, job.message[i]);
    }
  }
  for (int64_t i = 0; s == WK_OK && i < n; i++) {
    if (job.status[i] == WK_OK) ds->samples[kept++] = ds->samples[i];
    else free(ds->samples[i].path);
  }
  if (s == WK_OK) ds->n_samples = kept;
  for (int64_t i = 0; job.message && i < n; i++) free(job.message[i]);
  free(job.message);
  free(job.status);
  return s;
}
