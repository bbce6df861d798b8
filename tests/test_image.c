/* test_image.c - the image decoders against PIL's reference decodes of the
 * fixture corpus (tests/fixtures/images, written by
 * scripts/gen_image_fixtures.py), the refusal of every bad file, the EXIF
 * parser on hostile input, mutated files under the sanitizers, resizing and
 * the writers.
 *
 * The corpus is driven by MANIFEST.tsv: one loop test per row, so a failure
 * names its row (file, check). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "image/image.h"
#include "image/image_impl.h"
#include "image/resize.h"
#include "test_fs.h"
#include "test_util.h"

/* ---------------------------------------------------------------- manifest */
enum { ROW_FIELDS = 5, ROW_FIELD_BYTES = 160 };

typedef struct manifest_row {
  char f[ROW_FIELDS][ROW_FIELD_BYTES]; /* file, check, args, expect, max_diff */
} manifest_row;

/* Row `index` (0-based, comments skipped); false past the end. */
static bool manifest_get(int index, manifest_row *row) {
  char *path = wkt_fixture("MANIFEST.tsv");
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s (run scripts/gen_image_fixtures.py)", path);
  free(path);
  char line[1024];
  int seen = 0;
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    if (seen++ != index) continue;
    line[strcspn(line, "\r\n")] = '\0';
    char *save = NULL, *tok = strtok_r(line, "\t", &save);
    for (int i = 0; i < ROW_FIELDS; i++) {
      ck_assert_msg(tok != NULL, "MANIFEST.tsv row %d has too few fields", index);
      snprintf(row->f[i], ROW_FIELD_BYTES, "%s", tok);
      tok = strtok_r(NULL, "\t", &save);
    }
    found = true;
  }
  fclose(f);
  return found;
}

/* Called from main, outside any test, so without any ck_assert (Check's
 * asserts report even on success): counts the rows; a missing manifest gives
 * one row, whose test then fails saying so. */
static int manifest_rows(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/fixtures/images/MANIFEST.tsv", wkt_source_dir());
  FILE *f = fopen(path, "r");
  if (!f) return 1;
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (line[0] != '#' && line[0] != '\n') n++;
  fclose(f);
  return n > 0 ? n : 1;
}

static wk_status status_from_name(const char *name) {
  if (!strcmp(name, "format")) return WK_ERR_FORMAT;
  if (!strcmp(name, "limit")) return WK_ERR_LIMIT;
  if (!strcmp(name, "io")) return WK_ERR_IO;
  if (!strcmp(name, "unsupported")) return WK_ERR_UNSUPPORTED;
  ck_abort_msg("unknown status '%s' in MANIFEST.tsv", name);
  return WK_OK;
}

static void check_against_ref(const manifest_row *row, const wk_image *got) {
  char *ref_path = wkt_fixture(row->f[3]);
  wk_image ref = {0};
  wkt_read_ppm(ref_path, &ref);
  int diff = wkt_image_max_diff(got, &ref);
  int max_diff = atoi(row->f[4]);
  ck_assert_msg(diff >= 0, "%s (%s): size %d x %d, reference %s is %d x %d", row->f[0],
                row->f[1], got->width, got->height, row->f[3], ref.width, ref.height);
  ck_assert_msg(diff <= max_diff, "%s (%s %s): max difference %d from %s (allowed %d)",
                row->f[0], row->f[1], row->f[2], diff, row->f[3], max_diff);
  wk_image_free(&ref);
  free(ref_path);
}

static void check_bad(const manifest_row *row, const char *path, const wk_bytes *file) {
  wk_image img = {0};
  wk_image_info info;
  wk_status want = status_from_name(row->f[2]);
  wk_status s = wk_image_decode(NULL, file->data, file->n_bytes, path, NULL, &img, &info);
  ck_assert_msg(s == want, "%s: status '%s', expected '%s' (%s)", row->f[0], wk_status_name(s),
                wk_status_name(want), wk_last_error());
  const char *msg = wk_last_error();
  ck_assert_msg(strstr(msg, path) == msg, "%s: message does not start with the path: %s",
                row->f[0], msg);
  ck_assert_msg(strstr(msg, row->f[3]) != NULL, "%s: message lacks '%s': %s", row->f[0],
                row->f[3], msg);
  ck_assert_int_eq(img.width, 0);
  wk_image_free(&img);
}

static void check_resize(const manifest_row *row, const wk_image *src) {
  char filter[32];
  int ow = 0, oh = 0;
  double box[4];
  ck_assert_int_eq(sscanf(row->f[2], "%31[a-z],%d,%d,%lf,%lf,%lf,%lf", filter, &ow, &oh, &box[0],
                          &box[1], &box[2], &box[3]),
                   7);
  wk_resample f = !strcmp(filter, "box") ? WK_RESAMPLE_AREA : WK_RESAMPLE_BILINEAR;
  wk_image out = {0};
  ck_assert_msg(wk_image_resize(src, box, ow, oh, f, &out) == WK_OK, "%s", wk_last_error());
  check_against_ref(row, &out);
  wk_image_free(&out);
}

START_TEST(test_fixture_row) {
  manifest_row row;
  ck_assert(manifest_get(_i, &row));
  char *path = wkt_fixture(row.f[0]);
  wk_bytes file = {0};
  ck_assert_msg(wk_file_read(path, 0, &file) == WK_OK, "%s", wk_last_error());
  const char *check = row.f[1];
  if (!strcmp(check, "bad")) {
    check_bad(&row, path, &file);
  } else {
    wk_decode_opts o = wk_decode_opts_default();
    if (!strcmp(check, "white")) o.alpha = WK_ALPHA_WHITE;
    if (!strcmp(check, "raw")) o.ignore_orientation = true;
    if (!strcmp(check, "scaled"))
      ck_assert_int_eq(sscanf(row.f[2], "%d,%d", &o.min_width, &o.min_height), 2);
    wk_decoder *dec = NULL;
    ck_assert_int_eq(wk_decoder_create(&dec), WK_OK);
    wk_image img = {0};
    wk_image_info info, probed;
    wk_status s = wk_image_decode(dec, file.data, file.n_bytes, path, &o, &img, &info);
    ck_assert_msg(s == WK_OK, "%s: %s", row.f[0], wk_last_error());
    /* the probe reports the full displayed size the decode is a scale of */
    ck_assert_int_eq(wk_image_probe(file.data, file.n_bytes, path, &o, &probed), WK_OK);
    ck_assert_int_eq(probed.width, info.width);
    ck_assert_int_eq(probed.height, info.height);
    ck_assert_int_eq((info.width + info.scale_denom - 1) / info.scale_denom, img.width);
    ck_assert_int_eq((info.height + info.scale_denom - 1) / info.scale_denom, img.height);
    if (!strcmp(check, "resize")) check_resize(&row, &img);
    else check_against_ref(&row, &img);
    wk_image_free(&img);
    wk_decoder_destroy(dec);
  }
  wk_bytes_free(&file);
  free(path);
}
END_TEST

/* ---------------------------------------------------------------- limits */
START_TEST(test_pixel_limit_is_configurable) {
  const char *names[] = {"jpeg_large.jpg", "resize_src.png"}; /* both 96 x 72 */
  for (int i = 0; i < 2; i++) {
    char *path = wkt_fixture(names[i]);
    wk_decode_opts o = wk_decode_opts_default();
    o.max_pixels = 96 * 72 - 1;
    wk_image img = {0};
    ck_assert_int_eq(wk_image_load(path, &o, &img), WK_ERR_LIMIT);
    ck_assert_msg(strstr(wk_last_error(), "96 x 72") != NULL, "%s", wk_last_error());
    o.max_pixels = 96 * 72;
    ck_assert_msg(wk_image_load(path, &o, &img) == WK_OK, "%s", wk_last_error());
    ck_assert_int_eq(img.width, 96);
    wk_image_free(&img);
    free(path);
  }
}
END_TEST

/* ---------------------------------------------------------------- EXIF */
/* A little- or big-endian TIFF block with `n` IFD0 entries, the last of them
 * Orientation = v; returns its length. */
static size_t make_tiff(uint8_t *t, bool be, int n, uint16_t type, uint32_t v) {
  size_t pos = 0;
#define PUT16(x) do { uint16_t x_ = (uint16_t)(x); \
    t[pos++] = be ? (uint8_t)(x_ >> 8) : (uint8_t)x_; \
    t[pos++] = be ? (uint8_t)x_ : (uint8_t)(x_ >> 8); } while (0)
#define PUT32(x) do { uint32_t y_ = (uint32_t)(x); \
    if (be) { PUT16(y_ >> 16); PUT16(y_); } else { PUT16(y_); PUT16(y_ >> 16); } } while (0)
  t[pos++] = be ? 'M' : 'I';
  t[pos++] = be ? 'M' : 'I';
  PUT16(42);
  PUT32(8);
  PUT16(n);
  for (int i = 0; i < n - 1; i++) {
    PUT16(0x0100 + i); /* other tags first */
    PUT16(4);
    PUT32(1);
    PUT32(1234);
  }
  PUT16(0x0112);
  PUT16(type);
  PUT32(1);
  PUT16(v);
  PUT16(0);
  PUT32(0);
#undef PUT16
#undef PUT32
  return pos;
}

START_TEST(test_exif_parser_hostile_input) {
  uint8_t t[256];
  for (int be = 0; be < 2; be++) {
    for (uint32_t v = 1; v <= 8; v++) {
      size_t n = make_tiff(t, be, 3, 3, v);
      ck_assert_int_eq(wk_exif_orientation(t, n), (int)v);
      /* every truncation is harmless and never invents a value */
      for (size_t cut = 0; cut < n; cut++) {
        int o = wk_exif_orientation(t, cut);
        ck_assert(o == 1 || o == (int)v);
      }
    }
    size_t n = make_tiff(t, be, 2, 3, 9); /* out of range */
    ck_assert_int_eq(wk_exif_orientation(t, n), 1);
    n = make_tiff(t, be, 2, 4, 6); /* LONG, not SHORT */
    ck_assert_int_eq(wk_exif_orientation(t, n), 1);
  }
  size_t n = make_tiff(t, false, 1, 3, 6);
  t[8] = 0xFF; /* an entry count far beyond the block */
  t[9] = 0xFF;
  ck_assert_int_eq(wk_exif_orientation(t, n), 1);
  n = make_tiff(t, false, 1, 3, 6);
  t[4] = 0xF0; /* IFD offset beyond the block */
  t[7] = 0x7F;
  ck_assert_int_eq(wk_exif_orientation(t, n), 1);
  t[4] = (uint8_t)(n - 1); /* IFD offset at the last byte */
  t[7] = 0;
  ck_assert_int_eq(wk_exif_orientation(t, n), 1);
  ck_assert_int_eq(wk_exif_orientation(NULL, 0), 1);
  ck_assert_int_eq(wk_exif_orientation((const uint8_t *)"XX*\0\0\0\0\0", 8), 1);
}
END_TEST

/* ---------------------------------------------------------------- mutation */
/* Every fixture with random bytes changed and random cuts must decode or be
 * refused with a message naming it; under ASan+UBSan this is the crash test. */
START_TEST(test_mutated_files_never_crash) {
  const char *names[] = {"jpeg_420.jpg", "jpeg_progressive.jpg", "jpeg_cmyk.jpg",
                         "jpeg_exif6_be.jpg", "png_rgba16.png", "png_pal4.png",
                         "png_rgb8_adam7.png", "png_exif8.png"};
  wk_decoder *dec = NULL;
  ck_assert_int_eq(wk_decoder_create(&dec), WK_OK);
  wk_image img = {0};
  int refused = 0, decoded = 0;
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    char *path = wkt_fixture(names[k]);
    wk_bytes file = {0};
    ck_assert_int_eq(wk_file_read(path, 0, &file), WK_OK);
    uint8_t *buf = malloc(file.n_bytes);
    ck_assert_ptr_nonnull(buf);
    wk_rng r = wk_rng_make(20240611, k);
    for (int it = 0; it < 60; it++) {
      memcpy(buf, file.data, file.n_bytes);
      size_t n = file.n_bytes;
      int edits = 1 + (int)wk_rng_below(&r, 8);
      for (int e = 0; e < edits; e++) {
        /* bias towards the header, where the dangerous lengths live */
        size_t span = wk_rng_below(&r, 2) ? n : (n < 200 ? n : 200);
        buf[wk_rng_below(&r, (uint32_t)span)] = (uint8_t)wk_rng_u32(&r);
      }
      if (it % 3 == 0) n = 1 + wk_rng_below(&r, (uint32_t)n);
      wk_clear_error();
      wk_status s = wk_image_decode(dec, buf, n, names[k], NULL, &img, NULL);
      if (s == WK_OK) {
        decoded++;
        ck_assert(img.width > 0 && img.height > 0);
      } else {
        refused++;
        ck_assert_msg(strstr(wk_last_error(), names[k]) == wk_last_error(), "%s",
                      wk_last_error());
      }
    }
    free(buf);
    wk_bytes_free(&file);
    free(path);
  }
  ck_assert_int_gt(refused, 0);
  ck_assert_int_gt(decoded, 0);
  wk_image_free(&img);
  wk_decoder_destroy(dec);
}
END_TEST

/* ---------------------------------------------------------------- decoder reuse */
START_TEST(test_decoder_reuse_matches_fresh_decodes) {
  const char *names[] = {"jpeg_large.jpg", "png_gray1.png", "jpeg_ycck.jpg", "jpeg_exif7.jpg",
                         "png_rgba8_adam7.png", "jpeg_large.jpg"};
  wk_decoder *dec = NULL;
  ck_assert_int_eq(wk_decoder_create(&dec), WK_OK);
  wk_image reused = {0};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    char *path = wkt_fixture(names[k]);
    wk_bytes file = {0};
    ck_assert_int_eq(wk_file_read(path, 0, &file), WK_OK);
    wk_image fresh = {0};
    ck_assert_int_eq(wk_image_decode(NULL, file.data, file.n_bytes, path, NULL, &fresh, NULL),
                     WK_OK);
    ck_assert_int_eq(wk_image_decode(dec, file.data, file.n_bytes, path, NULL, &reused, NULL),
                     WK_OK);
    ck_assert_int_eq(wkt_image_max_diff(&fresh, &reused), 0);
    wk_image_free(&fresh);
    wk_bytes_free(&file);
    free(path);
  }
  wk_image_free(&reused);
  wk_decoder_destroy(dec);
}
END_TEST

/* ---------------------------------------------------------------- resize */
START_TEST(test_resize_properties) {
  wk_image src = {0}, out = {0};
  wkt_make_image(&src, 37, 23, 3);
  /* whole image to its own size: the identity, for both filters */
  for (int f = 0; f < 2; f++) {
    ck_assert_int_eq(wk_image_resize(&src, NULL, 37, 23, (wk_resample)f, &out), WK_OK);
    ck_assert_int_eq(wkt_image_max_diff(&src, &out), 0);
  }
  /* flip_x mirrors the output exactly */
  float *a = malloc(20 * 11 * 3 * sizeof *a), *b = malloc(20 * 11 * 3 * sizeof *b);
  wk_resize_scratch sc = {0};
  const double box[4] = {1.5, 2.0, 30.25, 21.0};
  const wk_box_mode m = WK_BOX_RESIZE_THEN_CROP;
  ck_assert_int_eq(wk_resize_f32(&src, box, m, 20, 11, WK_RESAMPLE_BILINEAR, false, &sc, a), WK_OK);
  ck_assert_int_eq(wk_resize_f32(&src, box, m, 20, 11, WK_RESAMPLE_BILINEAR, true, &sc, b), WK_OK);
  for (int y = 0; y < 11; y++)
    for (int x = 0; x < 20; x++)
      for (int c = 0; c < 3; c++)
        ck_assert_float_eq(a[(y * 20 + x) * 3 + c], b[(y * 20 + 19 - x) * 3 + c]);
  /* a constant picture stays constant: the weights are normalised */
  memset(src.data, 77, src.stride_bytes * (size_t)src.height);
  ck_assert_int_eq(wk_resize_f32(&src, box, m, 20, 11, WK_RESAMPLE_AREA, false, &sc, a), WK_OK);
  for (int i = 0; i < 20 * 11 * 3; i++) ck_assert_float_eq_tol(a[i], 77.0f, 1e-3f);
  /* invalid boxes are refused */
  const double empty[4] = {5, 5, 5, 9}, far[4] = {0, 0, 1e9, 10};
  ck_assert_int_eq(wk_resize_f32(&src, empty, m, 4, 4, WK_RESAMPLE_AREA, false, &sc, a),
                   WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_resize_f32(&src, far, m, 4, 4, WK_RESAMPLE_AREA, false, &sc, a),
                   WK_ERR_INVALID_ARG);
  /* a box reaching past the right edge (accepted up to twice the width): the
   * outputs beyond it have no taps and are 0, and no column past the image is
   * read (it once was: ASan's build of this suite catches a regression) */
  const double beyond[4] = {0, 20, 70, 23};
  for (int f = 0; f < 2; f++) {
    ck_assert_int_eq(wk_resize_f32(&src, beyond, WK_BOX_CROP_THEN_RESIZE, 4, 4,
                                   (wk_resample)f, false, &sc, a), WK_OK);
    for (int i = 0; i < 4 * 4 * 3; i++) ck_assert(isfinite(a[i]));
    ck_assert_float_eq(a[3 * 3], 0.0f); /* row 0, column 3: x from 52.5, past 37 */
  }
  wk_resize_scratch_free(&sc);
  free(a);
  free(b);
  wk_image_free(&src);
  wk_image_free(&out);
}
END_TEST

/* ---------------------------------------------------------------- writers */

START_TEST(test_write_roundtrip) {
  char *dir = wkt_tempdir();
  wk_image img = {0}, back = {0};
  wkt_make_image(&img, 41, 27, 5);
  char *png = wkt_join(dir, "out.png", NULL), *jpg = wkt_join(dir, "out.jpg", NULL);
  ck_assert_msg(wk_image_write_png(&img, png) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_image_load(png, NULL, &back), WK_OK);
  ck_assert_int_eq(wkt_image_max_diff(&img, &back), 0);
  /* overwriting goes through a rename: no temporary file is left behind */
  ck_assert_int_eq(wk_image_write_png(&img, png), WK_OK);
  ck_assert_int_eq(wk_image_write_jpeg(&img, jpg, 95), WK_OK);
  ck_assert_int_eq(wkt_count_entries(dir), 2);
  ck_assert_int_eq(wk_image_load(jpg, NULL, &back), WK_OK);
  ck_assert_int_eq(back.width, 41);
  ck_assert_int_eq(back.height, 27);
  double sum = 0;
  for (size_t i = 0; i < 41 * 27 * 3; i++) sum += abs((int)img.data[i] - (int)back.data[i]);
  ck_assert_double_lt(sum / (41 * 27 * 3), 4.0);
  /* a view (the left 20 columns, rows 41 pixels apart) writes correctly */
  wk_image view = img;
  view.width = 20;
  view.capacity_bytes = 0;
  ck_assert_int_eq(wk_image_write_jpeg(&view, jpg, 90), WK_OK);
  ck_assert_int_eq(wk_image_write_png(&view, png), WK_OK);
  ck_assert_int_eq(wk_image_load(png, NULL, &back), WK_OK);
  ck_assert_int_eq(wkt_image_max_diff(&view, &back), 0);
  /* errors name the path */
  char *missing = wkt_join(dir, "no/such/dir.png", NULL);
  ck_assert_int_eq(wk_image_write_png(&img, missing), WK_ERR_IO);
  ck_assert(strstr(wk_last_error(), missing) != NULL);
  ck_assert_int_eq(wk_image_write_jpeg(&img, jpg, 0), WK_ERR_INVALID_ARG);
  free(missing);
  free(png);
  free(jpg);
  wk_image_free(&img);
  wk_image_free(&back);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

/* tests/fixtures/images/<name>'s bytes into *f. */
static void read_fixture(const char *name, wk_bytes *f) {
  char *path = wkt_fixture(name);
  ck_assert_msg(wk_file_read(path, 0, f) == WK_OK, "%s", wk_last_error());
  free(path);
}

/* A JPEG with junk bytes before its scan (libjpeg warns "extraneous bytes
 * before marker", and TurboJPEG keeps only that first warning's text) and
 * then cut short: refused as truncated, where its missing part once decoded
 * grey. Not cut, it decodes; junk FF 00 right after SOI is skipped as libjpeg
 * skips it. */
START_TEST(test_jpeg_junk_then_truncated) {
  wk_bytes f = {0};
  read_fixture("jpeg_420.jpg", &f);
  size_t sos = 0;
  for (size_t i = 2; i + 1 < f.n_bytes && !sos; i++)
    if (f.data[i] == 0xFF && f.data[i + 1] == 0xDA) sos = i;
  ck_assert(sos > 0);
  uint8_t *junk = malloc(f.n_bytes + 4);
  memcpy(junk, f.data, sos);
  memcpy(junk + sos, "\x12\x34\x56", 3);
  memcpy(junk + sos + 3, f.data + sos, f.n_bytes - sos);
  wk_image img = {0};
  ck_assert_msg(wk_image_decode(NULL, junk, f.n_bytes + 3, "junk.jpg", NULL, &img, NULL) == WK_OK,
                "%s", wk_last_error());
  const size_t cut = sos + 3 + (f.n_bytes - sos) * 6 / 10;
  ck_assert_int_eq(wk_image_decode(NULL, junk, cut, "cut.jpg", NULL, &img, NULL), WK_ERR_FORMAT);
  ck_assert_msg(strstr(wk_last_error(), "cut.jpg: truncated JPEG"), "%s", wk_last_error());
  /* FF 00 7F 00 after SOI */
  memcpy(junk, f.data, 2);
  memcpy(junk + 2, "\xff\x00\x7f\x00", 4);
  memcpy(junk + 6, f.data + 2, f.n_bytes - 2);
  ck_assert_msg(wk_image_decode(NULL, junk, f.n_bytes + 4, "ff00.jpg", NULL, &img, NULL) == WK_OK,
                "%s", wk_last_error());
  wk_image_free(&img);
  free(junk);
  wk_bytes_free(&f);
}
END_TEST

/* A PNG whose every row is there but whose IEND chunk is missing decodes to
 * the same pixels (it was refused as "ends inside its data"); cut inside its
 * image data it is still refused. */
START_TEST(test_png_without_iend) {
  wk_bytes f = {0};
  read_fixture("png_rgb8.png", &f);
  ck_assert(f.n_bytes > 12 && !memcmp(f.data + f.n_bytes - 8, "IEND", 4));
  wk_image whole = {0}, cut = {0};
  ck_assert_int_eq(wk_image_decode(NULL, f.data, f.n_bytes, "whole.png", NULL, &whole, NULL),
                   WK_OK);
  ck_assert_msg(wk_image_decode(NULL, f.data, f.n_bytes - 12, "noiend.png", NULL, &cut, NULL) ==
                    WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wkt_image_max_diff(&whole, &cut), 0);
  ck_assert_int_eq(wk_image_decode(NULL, f.data, f.n_bytes / 2, "half.png", NULL, &cut, NULL),
                   WK_ERR_FORMAT);
  wk_image_free(&whole);
  wk_image_free(&cut);
  wk_bytes_free(&f);
}
END_TEST

/* ---------------------------------------------------------------- files */
START_TEST(test_file_read_and_sniffing) {
  char *dir = wkt_tempdir();
  wk_bytes buf = {0};
  char *missing = wkt_join(dir, "missing.jpg", NULL);
  ck_assert_int_eq(wk_file_read(missing, 0, &buf), WK_ERR_IO);
  ck_assert(strstr(wk_last_error(), missing) != NULL);
  ck_assert_int_eq(wk_file_read(dir, 0, &buf), WK_ERR_IO);
  ck_assert(strstr(wk_last_error(), "not a regular file") != NULL);
  /* a FIFO with no writer (a dataset CSV can name one): refused, where the
   * open itself once blocked for ever (the suite's timeout fails it) */
  char *fifo = wkt_join(dir, "pipe.jpg", NULL);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  ck_assert_int_eq(wk_file_read(fifo, 0, &buf), WK_ERR_IO);
  ck_assert(strstr(wk_last_error(), "not a regular file") != NULL);
  free(fifo);
  /* a PNG named .jpg decodes as the PNG it is */
  char *src = wkt_fixture("png_rgb8.png"), *ref = wkt_fixture("png_rgb8.ppm");
  ck_assert_int_eq(wk_file_read(src, 0, &buf), WK_OK);
  ck_assert_int_eq(wk_file_read(src, buf.n_bytes - 1, &buf), WK_ERR_LIMIT);
  ck_assert_int_eq(wk_file_read(src, 0, &buf), WK_OK);
  char *renamed = wkt_join(dir, "photo.JPG", NULL);
  wkt_write_file(renamed, buf.data, buf.n_bytes);
  wk_image a = {0}, b = {0};
  ck_assert_int_eq(wk_image_load(renamed, NULL, &a), WK_OK);
  wkt_read_ppm(ref, &b);
  ck_assert_int_eq(wkt_image_max_diff(&a, &b), 0);
  wk_image_info info;
  ck_assert_int_eq(wk_image_probe(buf.data, buf.n_bytes, renamed, NULL, &info), WK_OK);
  ck_assert_int_eq(info.format, WK_FORMAT_PNG);
  ck_assert_str_eq(wk_image_format_name(info.format), "PNG");
  wk_image_free(&a);
  wk_image_free(&b);
  wk_bytes_free(&buf);
  free(src);
  free(ref);
  free(renamed);
  free(missing);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("image");
  TCase *tc = tcase_create("image");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_fixture_row, 0, manifest_rows());
  tcase_add_test(tc, test_pixel_limit_is_configurable);
  tcase_add_test(tc, test_exif_parser_hostile_input);
  tcase_add_test(tc, test_mutated_files_never_crash);
  tcase_add_test(tc, test_decoder_reuse_matches_fresh_decodes);
  tcase_add_test(tc, test_resize_properties);
  tcase_add_test(tc, test_write_roundtrip);
  tcase_add_test(tc, test_file_read_and_sniffing);
  tcase_add_test(tc, test_jpeg_junk_then_truncated);
  tcase_add_test(tc, test_png_without_iend);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
