/* bench_loader.c - images per second of whisker's data loader on a folder per
 * class, with the training transforms torchvision users run:
 * RandomResizedCrop(size) + RandomHorizontalFlip + ColorJitter(b, c, s, h) +
 * normalisation, NHWC float batches.
 *
 * Steps: open the dataset (pre-scan timed on its own), warm up on the first
 * --warmup batches of an extra epoch, then time --epochs full epochs.
 * Output on stdout, one tab-separated line after a '#' header:
 *   name workers batch size images seconds images_per_s prescan_s n_files
 * scripts/bench_loader.sh puts it next to torchvision's. Progress and the
 * loader's warnings go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/dataset.h"
#include "data/loader.h"
#include "core/clock.h"
#include "whisker.h"

typedef struct bench_opts {
  const char *data;
  int workers, batch, size, epochs, warmup;
  float jitter[4];
  uint64_t seed;
  bool u8;
} bench_opts;

static void bench_usage(void) {
  fprintf(stderr,
          "usage: wk_bench_loader --data DIR [options]\n"
          "  --data DIR        folder per class (e.g. $WHISKER_DATA/dogs-vs-cats/train)\n"
          "  --workers N       loader threads (default 2)\n"
          "  --batch B         batch size (default 32)\n"
          "  --size S          output size S x S (default 224)\n"
          "  --epochs E        timed epochs (default 2)\n"
          "  --warmup W        untimed batches first (default 5)\n"
          "  --jitter B,C,S,H  ColorJitter strengths (default 0.4,0.4,0.4,0.1)\n"
          "  --seed N          (default 1)\n"
          "  --u8              also fill the u8 batches\n");
}

static bool bench_int(const char *opt, const char *v, int lo, int hi, int *out) {
  char *end = NULL;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || errno || *end || x < lo || x > hi) {
    fprintf(stderr, "wk_bench_loader: %s expects an integer in [%d, %d]\n", opt, lo, hi);
    return false;
  }
  *out = (int)x;
  return true;
}

static int bench_parse(int argc, char **argv, bench_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = true, takes = true;
    if (!strcmp(a, "--data")) ok = (o->data = v) != NULL;
    else if (!strcmp(a, "--workers")) ok = bench_int(a, v, 1, 256, &o->workers);
    else if (!strcmp(a, "--batch")) ok = bench_int(a, v, 1, 4096, &o->batch);
    else if (!strcmp(a, "--size")) ok = bench_int(a, v, 8, 4096, &o->size);
    else if (!strcmp(a, "--epochs")) ok = bench_int(a, v, 1, 1000, &o->epochs);
    else if (!strcmp(a, "--warmup")) ok = bench_int(a, v, 0, 100000, &o->warmup);
    else if (!strcmp(a, "--seed")) {
      int s = 0;
      ok = bench_int(a, v, 0, 1 << 30, &s);
      o->seed = (uint64_t)s;
    } else if (!strcmp(a, "--jitter")) {
      ok = v && sscanf(v, "%f,%f,%f,%f", &o->jitter[0], &o->jitter[1], &o->jitter[2],
                       &o->jitter[3]) == 4;
      if (!ok) fprintf(stderr, "wk_bench_loader: --jitter expects B,C,S,H\n");
    } else if (!strcmp(a, "--u8")) {
      o->u8 = true;
      takes = false;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      bench_usage();
      return -1;
    } else {
      fprintf(stderr, "wk_bench_loader: unknown option '%s'\n", a);
      ok = false;
    }
    if (!ok) {
      bench_usage();
      return 2;
    }
    if (takes) i++;
  }
  if (!o->data) {
    bench_usage();
    return 2;
  }
  return 0;
}

/* Runs batches until the epoch ends or `limit` batches (-1: no limit);
 * returns the images seen, or -1 on an error (printed). */
static int64_t bench_drain(wk_loader *ld, int64_t limit) {
  int64_t images = 0;
  for (int64_t b = 0; limit < 0 || b < limit; b++) {
    const wk_batch *batch = NULL;
    if (wk_loader_next_batch(ld, &batch) != WK_OK) {
      fprintf(stderr, "wk_bench_loader: %s\n", wk_last_error());
      return -1;
    }
    if (!batch) break;
    images += batch->n;
  }
  return images;
}

int main(int argc, char **argv) {
  bench_opts o = {.workers = 2, .batch = 32, .size = 224, .epochs = 2, .warmup = 5,
                  .jitter = {0.4f, 0.4f, 0.4f, 0.1f}, .seed = 1};
  int rc = bench_parse(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;

  double t0 = wk_now_s();
  wk_dataset_opts dopts = wk_dataset_opts_default();
  dopts.n_threads = o.workers;
  wk_dataset *ds = NULL;
  if (wk_dataset_open_folder(o.data, &dopts, &ds) != WK_OK) {
    fprintf(stderr, "wk_bench_loader: %s\n", wk_last_error());
    return 1;
  }
  double prescan_s = wk_now_s() - t0;
  fprintf(stderr, "wk_bench_loader: %s: %lld images, %d classes, %lld left out, pre-scan %.2f s\n",
          o.data, (long long)wk_dataset_size(ds), wk_dataset_n_classes(ds),
          (long long)wk_dataset_n_bad(ds), prescan_s);

  wk_loader_cfg cfg = wk_loader_cfg_train(o.size, o.batch, o.workers, o.seed);
  cfg.aug.brightness = o.jitter[0];
  cfg.aug.contrast = o.jitter[1];
  cfg.aug.saturation = o.jitter[2];
  cfg.aug.hue = o.jitter[3];
  cfg.want_u8 = o.u8;
  wk_loader *ld = NULL;
  if (wk_loader_create(ds, &cfg, &ld) != WK_OK) {
    fprintf(stderr, "wk_bench_loader: %s\n", wk_last_error());
    wk_dataset_free(ds);
    return 1;
  }
  int64_t images = 0;
  double seconds = 0;
  rc = 0;
  if (wk_loader_start_epoch(ld, 0) != WK_OK || bench_drain(ld, o.warmup) < 0) rc = 1;
  for (int e = 1; rc == 0 && e <= o.epochs; e++) {
    double t = wk_now_s();
    int64_t n = wk_loader_start_epoch(ld, e) == WK_OK ? bench_drain(ld, -1) : -1;
    double dt = wk_now_s() - t;
    if (n < 0) {
      rc = 1;
      break;
    }
    fprintf(stderr, "wk_bench_loader: epoch %d: %lld images in %.2f s, %.1f images/s\n", e,
            (long long)n, dt, (double)n / dt);
    images += n;
    seconds += dt;
  }
  if (rc == 0) {
    printf("# name\tworkers\tbatch\tsize\timages\tseconds\timages_per_s\tprescan_s\tn_files\n");
    printf("whisker\t%d\t%d\t%d\t%lld\t%.3f\t%.1f\t%.3f\t%lld\n", o.workers, o.batch, o.size,
           (long long)images, seconds, (double)images / seconds, prescan_s,
           (long long)wk_dataset_size(ds));
  }
  if (wk_loader_n_substituted(ld))
    fprintf(stderr, "wk_bench_loader: %lld samples substituted\n",
            (long long)wk_loader_n_substituted(ld));
  wk_loader_destroy(ld);
  wk_dataset_free(ds);
  return rc;
}
