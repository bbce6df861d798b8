/* fuzz_util.c - see fuzz_util.h. */
#define _GNU_SOURCE /* memfd_create */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "image/image.h"

wk_ctx *wk_fuzz_ctx(void) {
  static wk_ctx *ctx;
  if (!ctx) {
    wk_log_set_level(WK_LOG_ERROR);
    if (wk_ctx_create(&ctx, 1) != WK_OK) {
      fprintf(stderr, "fuzz: cannot create a context: %s\n", wk_last_error());
      abort();
    }
  }
  return ctx;
}

int wk_fuzz_file_open(wk_fuzz_file *f, const uint8_t *data, size_t size) {
  f->fd = memfd_create("wk_fuzz", MFD_CLOEXEC);
  if (f->fd < 0) return -1;
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(f->fd, data + done, size - done);
    if (n <= 0) {
      close(f->fd);
      return -1;
    }
    done += (size_t)n;
  }
  snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
  return 0;
}

void wk_fuzz_file_close(wk_fuzz_file *f) { close(f->fd); }

void wk_fuzz_decode_image(const uint8_t *data, size_t size) {
  static wk_decoder *dec;
  if (!dec && wk_decoder_create(&dec) != WK_OK) abort();
  wk_log_set_level(WK_LOG_ERROR);
  wk_decode_opts o = wk_decode_opts_default();
  o.max_pixels = (int64_t)4 << 20;
  wk_image_info info;
  (void)wk_image_probe(data, size, "fuzz", &o, &info);
  wk_image img = {0};
  (void)wk_image_decode(dec, data, size, "fuzz", &o, &img, &info);
  o.min_width = o.min_height = 8;
  o.alpha = WK_ALPHA_WHITE;
  o.ignore_orientation = (size & 1) != 0;
  (void)wk_image_decode(dec, data, size, "fuzz", &o, &img, &info);
  wk_image_free(&img);
}
