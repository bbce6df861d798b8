/* bench_clicks.c - clickstream throughput on one thread: parse + segment +
 * render every session under the given folders into memory (rows/s,
 * windows/s), then render + write PNG files (images/s).
 *
 *   wk_bench_clicks DIR... [--size 48] [--window 128] [--scale screen|bbox]
 *                   [--png-dir DIR] [--png-max 2000] [--repeat 3]
 *
 * Files are read into memory before the clock starts, so the first number is
 * parsing and rendering, not disk. PNG writing uses wk_image_write_png, which
 * writes atomically (temporary file, fsync, rename). Both wall time and the
 * process's CPU time are reported: on a shared machine the wall time
 * includes waiting for a core, the CPU time does not. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clicks/balabit.h"
#include "clicks/clicks.h"
#include "core/clock.h"
#include "image/image.h"

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A benchmark has nothing to save on failure: say why and stop. */
static _Noreturn void die(const char *why) {
  fprintf(stderr, "wk_bench_clicks: %s\n", why);
  exit(1);
}

static int usage(void) {
  fprintf(stderr, "usage: wk_bench_clicks DIR... [--size 48] [--window 128] [--scale screen|bbox]"
                  " [--png-dir DIR] [--png-max 2000] [--repeat 3]\n");
  return 2;
}

int main(int argc, char **argv) {
  wk_click_render_cfg rc = wk_click_render_cfg_default();
  wk_click_window_cfg wc = wk_click_window_cfg_default();
  const char *png_dir = NULL;
  int png_max = 2000, repeat = 3, n_dirs = 0;
  const char **dirs = calloc((size_t)argc, sizeof *dirs);
  if (!dirs) die("out of memory");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const bool v = i + 1 < argc; /* a value follows */
    if (!strcmp(a, "--size") && v) rc.size_px = atoi(argv[++i]);
    else if (!strcmp(a, "--window") && v) wc.events = atoi(argv[++i]);
    else if (!strcmp(a, "--scale") && v)
      rc.scale = !strcmp(argv[++i], "bbox") ? WK_CLICK_SCALE_BBOX : WK_CLICK_SCALE_SCREEN;
    else if (!strcmp(a, "--png-dir") && v) png_dir = argv[++i];
    else if (!strcmp(a, "--png-max") && v) png_max = atoi(argv[++i]);
    else if (!strcmp(a, "--repeat") && v) repeat = atoi(argv[++i]);
    else if (a[0] == '-') exit(usage());
    else dirs[n_dirs++] = a;
  }
  if (n_dirs == 0 || repeat < 1) exit(usage());
  if (wk_click_render_cfg_check(&rc) != WK_OK || wk_click_window_cfg_check(&wc) != WK_OK) {
    fprintf(stderr, "wk_bench_clicks: %s\n", wk_last_error());
    exit(2);
  }
  char **files = NULL;
  int nf = 0;
  if (wk_clicks_collect(dirs, n_dirs, &files, &nf, NULL) != WK_OK) die(wk_last_error());
  const size_t img_bytes = (size_t)rc.size_px * (size_t)rc.size_px * 3;
  wk_bytes *bufs = calloc((size_t)(nf > 0 ? nf : 1), sizeof *bufs);
  uint8_t *rgb = malloc(img_bytes);
  if (!bufs || !rgb) die("out of memory");
  size_t total_bytes = 0;
  for (int i = 0; i < nf; i++) {
    if (wk_file_read(files[i], 0, &bufs[i]) != WK_OK) die(wk_last_error());
    total_bytes += bufs[i].n_bytes;
  }
  wk_click_session s = {0};
  double best = 1e30, best_cpu = 1e30;
  int64_t rows = 0, windows = 0, failed = 0;
  unsigned checksum = 0;
  for (int r = 0; r < repeat; r++) {
    rows = windows = failed = 0;
    const double t0 = wk_now_s(), c0 = cpu_s();
    for (int i = 0; i < nf; i++) {
      if (wk_click_parse((const char *)bufs[i].data, bufs[i].n_bytes, files[i], NULL, &s) !=
          WK_OK) {
        failed++;
        continue;
      }
      rows += s.stats.rows;
      wk_click_window *w = NULL;
      int64_t nw = 0;
      if (wk_click_segment(&s, &wc, &w, &nw) != WK_OK) die(wk_last_error());
      for (int64_t k = 0; k < nw; k++) {
        wk_click_render_into(&s, w[k], &rc, rgb);
        checksum += rgb[(img_bytes / 2) & ~(size_t)1];
      }
      windows += nw;
      free(w);
    }
    const double dt = wk_now_s() - t0, dc = cpu_s() - c0;
    if (dt < best) best = dt;
    if (dc < best_cpu) best_cpu = dc;
  }
  printf("files %d (%d unparsable), %.1f MB, rows %lld, windows %lld (size %d, window %d "
         "events, %s scaling)\n", nf, (int)failed, (double)total_bytes / 1e6, (long long)rows,
         (long long)windows, rc.size_px, wc.events,
         rc.scale == WK_CLICK_SCALE_BBOX ? "bbox" : "screen");
  printf("parse+render into memory, 1 thread, best of %d: wall %.3f s = %.2f M rows/s, %.0f "
         "windows/s; CPU %.3f s = %.2f M rows/s (checksum %u)\n", repeat, best,
         (double)rows / best / 1e6, (double)windows / best, best_cpu,
         (double)rows / best_cpu / 1e6, checksum);
  if (png_dir) {
    wk_image img = {0};
    char path[4096];
    int written = 0;
    const double t0 = wk_now_s(), c0 = cpu_s();
    for (int i = 0; i < nf && written < png_max; i++) {
      if (wk_click_parse((const char *)bufs[i].data, bufs[i].n_bytes, files[i], NULL, &s) != WK_OK)
        continue;
      wk_click_window *w = NULL;
      int64_t nw = 0;
      if (wk_click_segment(&s, &wc, &w, &nw) != WK_OK) die(wk_last_error());
      for (int64_t k = 0; k < nw && written < png_max; k++) {
        snprintf(path, sizeof path, "%s/bench_%06d.png", png_dir, written);
        if (wk_click_render(&s, w[k], &rc, &img) != WK_OK || wk_image_write_png(&img, path) != WK_OK)
          die(wk_last_error());
        written++;
      }
      free(w);
    }
    const double dt = wk_now_s() - t0, dc = cpu_s() - c0;
    printf("render+write PNG (atomic, fsync), 1 thread: %d images, wall %.3f s = %.0f images/s; "
           "CPU %.3f s = %.0f images/s\n", written, dt, (double)written / dt, dc,
           (double)written / dc);
    wk_image_free(&img);
  }
  for (int i = 0; i < nf; i++) wk_bytes_free(&bufs[i]), free(files[i]);
  free(bufs);
  free(files);
  free(rgb);
  free(dirs);
  wk_click_session_free(&s);
  return 0;
}
