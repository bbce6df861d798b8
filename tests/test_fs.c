/* test_fs.c - file helpers for the image and data suites. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "test_fs.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

char *wkt_tempdir(void) {
  const char *base = getenv("TMPDIR");
  char *t = wkt_join(base && *base ? base : "/tmp", "wk_test_XXXXXX", NULL);
  ck_assert_msg(mkdtemp(t) != NULL, "mkdtemp %s: %s", t, strerror(errno));
  return t;
}

static int wkt_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path) == 0 ? 0 : -1;
}

void wkt_rmtree(const char *path) {
  if (path) nftw(path, wkt_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *wkt_join(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + (c ? strlen(c) : 0) + 3;
  char *p = malloc(n);
  ck_assert_ptr_nonnull(p);
  if (c) snprintf(p, n, "%s/%s/%s", a, b, c);
  else snprintf(p, n, "%s/%s", a, b);
  return p;
}

void wkt_write_file(const char *path, const void *data, size_t n_bytes) {
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot create %s: %s", path, strerror(errno));
  ck_assert_uint_eq(fwrite(data, 1, n_bytes, f), n_bytes);
  ck_assert_int_eq(fclose(f), 0);
}

void wkt_mkdir(const char *path) {
  ck_assert_msg(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
}

void wkt_read_ppm(const char *path, wk_image *img) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  int w = 0, h = 0, maxval = 0;
  ck_assert_msg(fscanf(f, "P6 %d %d %d", &w, &h, &maxval) == 3 && maxval == 255,
                "%s: not a P6 PPM", path);
  ck_assert_int_eq(fgetc(f), '\n');
  ck_assert_int_eq(wk_image_alloc(img, w, h), WK_OK);
  size_t n = (size_t)w * (size_t)h * 3;
  ck_assert_msg(fread(img->data, 1, n, f) == n, "%s: short PPM", path);
  fclose(f);
}

int wkt_image_max_diff(const wk_image *a, const wk_image *b) {
  if (a->width != b->width || a->height != b->height) return -1;
  int worst = 0;
  for (int y = 0; y < a->height; y++) {
    const uint8_t *p = a->data + (size_t)y * a->stride_bytes;
    const uint8_t *q = b->data + (size_t)y * b->stride_bytes;
    for (int i = 0; i < a->width * 3; i++) {
      int d = abs((int)p[i] - (int)q[i]);
      if (d > worst) worst = d;
    }
  }
  return worst;
}

char *wkt_fixture(const char *name) {
  char *dir = wkt_join(wkt_source_dir(), "tests/fixtures/images", NULL);
  char *p = wkt_join(dir, name, NULL);
  free(dir);
  return p;
}

void wkt_make_image(wk_image *img, int width, int height, uint32_t seed) {
  ck_assert_int_eq(wk_image_alloc(img, width, height), WK_OK);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++) {
      uint8_t *p = img->data + (size_t)y * img->stride_bytes + (size_t)x * 3;
      p[0] = (uint8_t)((x * 255) / (width > 1 ? width - 1 : 1) + seed * 31);
      p[1] = (uint8_t)((y * 255) / (height > 1 ? height - 1 : 1) + seed * 17);
      p[2] = (uint8_t)(((x / 4 + y / 4) % 2) * 160 + seed * 7);
      if (x < width / 4 && y < height / 3) p[0] = p[1] = p[2] = (uint8_t)(250 - seed);
    }
}
