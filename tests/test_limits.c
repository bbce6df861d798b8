/* test_limits.c - the limits that keep hostile input from exhausting memory:
 * the image pixel limit (and WHISKER_MAX_PIXELS), headers that declare huge
 * images, the CSV row and line-length limits, model files whose header or
 * architecture declares absurd sizes. Each must be refused with WK_ERR_LIMIT
 * (or WK_ERR_FORMAT) and a message naming the input, before any large
 * allocation: the suite runs under ASan in CI, whose allocator would abort on
 * a multi-gigabyte request. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "image/image.h"
#include "modelio/model.h"
#include "test_fs.h"
#include "test_util.h"

#define WKT_HAS(msg, part) ck_assert_msg(strstr((msg), (part)) != NULL, "'%s' lacks '%s'", (msg), (part))

/* ---------------------------------------------------------------- images */
START_TEST(test_pixel_limit_from_environment) {
  char *path = wkt_fixture("jpeg_large.jpg"); /* 96 x 72 */
  wk_image img = {0};
  char v[32];
  snprintf(v, sizeof v, "%d", 96 * 72 - 1);
  ck_assert_int_eq(setenv("WHISKER_MAX_PIXELS", v, 1), 0);
  ck_assert_int_eq(wk_image_max_pixels(), 96 * 72 - 1);
  WKT_FAILS(WK_ERR_LIMIT, wk_image_load(path, NULL, &img));
  WKT_HAS(wk_last_error(), "jpeg_large.jpg");
  WKT_HAS(wk_last_error(), "96 x 72");
  WKT_HAS(wk_last_error(), "WHISKER_MAX_PIXELS");
  /* max_pixels 0 in the options means the limit in force, too */
  wk_decode_opts o = wk_decode_opts_default();
  o.max_pixels = 0;
  WKT_FAILS(WK_ERR_LIMIT, wk_image_load(path, &o, &img));
  /* an explicit limit wins over the environment */
  o.max_pixels = 96 * 72;
  WKT_OK(wk_image_load(path, &o, &img));
  snprintf(v, sizeof v, "%d", 96 * 72);
  ck_assert_int_eq(setenv("WHISKER_MAX_PIXELS", v, 1), 0);
  WKT_OK(wk_image_load(path, NULL, &img));
  /* values that do not parse are ignored: the default applies */
  const char *bad[] = {"", "abc", "12x", "0", "-5", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_int_eq(setenv("WHISKER_MAX_PIXELS", bad[i], 1), 0);
    ck_assert_int_eq(wk_image_max_pixels(), WK_IMAGE_MAX_PIXELS);
  }
  ck_assert_int_eq(unsetenv("WHISKER_MAX_PIXELS"), 0);
  ck_assert_int_eq(wk_image_max_pixels(), WK_IMAGE_MAX_PIXELS);
  WKT_OK(wk_image_load(path, NULL, &img));
  wk_image_free(&img);
  free(path);
}
END_TEST

/* The pre-scan of a dataset applies the limit in force: a picture over it is
 * reported and left out, the others stay. */
START_TEST(test_pixel_limit_in_datasets) {
  char *root = wkt_tempdir(), *cls = wkt_join(root, "a", NULL);
  wkt_mkdir(cls);
  wk_image img = {0};
  wkt_make_image(&img, 40, 30, 1);
  char *small = wkt_join(cls, "small.png", NULL), *big = wkt_join(cls, "big.png", NULL);
  WKT_OK(wk_image_write_png(&img, small));
  wkt_make_image(&img, 80, 60, 2);
  WKT_OK(wk_image_write_png(&img, big));
  ck_assert_int_eq(setenv("WHISKER_MAX_PIXELS", "2000", 1), 0);
  wk_dataset *ds;
  WKT_OK(wk_dataset_open_folder(root, NULL, &ds));
  ck_assert_int_eq(unsetenv("WHISKER_MAX_PIXELS"), 0);
  ck_assert_int_eq(wk_dataset_size(ds), 1);
  ck_assert_int_eq(wk_dataset_n_bad(ds), 1);
  WKT_HAS(wk_dataset_bad_path(ds, 0), "big.png");
  WKT_HAS(wk_dataset_bad_reason(ds, 0), "pixel limit");
  wk_dataset_free(ds);
  wk_image_free(&img);
  free(small);
  free(big);
  free(cls);
  wkt_rmtree(root);
  free(root);
}
END_TEST

/* Headers that declare 60000 x 60000 pixels (10.8 GB of RGB) with nothing
 * behind them: refused from the header, before the decoder allocates. */
START_TEST(test_huge_declared_images) {
  static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',
                                0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60, /* 60000 x 60000 */
                                8, 2, 0, 0, 0, 0, 0, 0, 0};
  static const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, 0xEA, 0x60, 0xEA, 0x60, 3,
                                 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, /* SOF0 */
                                 0xFF, 0xDA, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3F, 0,
                                 0xFF, 0xD9};
  const struct {
    const uint8_t *p;
    size_t n;
    const char *name;
  } cases[] = {{png, sizeof png, "huge.png"}, {jpeg, sizeof jpeg, "huge.jpg"}};
  wk_decoder *dec;
  WKT_OK(wk_decoder_create(&dec));
  for (int i = 0; i < 2; i++) {
    wk_image img = {0};
    wk_image_info info;
    WKT_FAILS(WK_ERR_LIMIT, wk_image_probe(cases[i].p, cases[i].n, cases[i].name, NULL, &info));
    WKT_FAILS(WK_ERR_LIMIT,
              wk_image_decode(dec, cases[i].p, cases[i].n, cases[i].name, NULL, &img, NULL));
    WKT_HAS(wk_last_error(), cases[i].name);
    WKT_HAS(wk_last_error(), "60000 x 60000");
    ck_assert_ptr_null(img.data);
    ck_assert_int_eq(img.width, 0);
    wk_image_free(&img);
  }
  wk_decoder_destroy(dec);
}
END_TEST

/* ---------------------------------------------------------------- CSV lists */
static char *write_csv(const char *dir, const char *text) {
  char *path = wkt_join(dir, "list.csv", NULL);
  wkt_write_file(path, text, strlen(text));
  return path;
}

START_TEST(test_csv_row_limit) {
  char *dir = wkt_tempdir();
  /* 4 rows, one of them bad: bad rows count too, blank lines and the header do not */
  char *csv = write_csv(dir, "path,label\na.jpg,x\n\nb.jpg\nc.jpg,y\nd.jpg,x\n");
  wk_dataset_opts o = wk_dataset_opts_default();
  o.prescan = false;
  o.csv_max_rows = 4;
  wk_dataset *ds;
  WKT_OK(wk_dataset_open_csv(csv, &o, &ds));
  ck_assert_int_eq(wk_dataset_size(ds), 3);
  ck_assert_int_eq(wk_dataset_n_bad(ds), 1);
  wk_dataset_free(ds);
  o.csv_max_rows = 3;
  WKT_FAILS(WK_ERR_LIMIT, wk_dataset_open_csv(csv, &o, &ds));
  ck_assert_ptr_null(ds);
  WKT_HAS(wk_last_error(), "list.csv:6");
  WKT_HAS(wk_last_error(), "more than 3 rows");
  WKT_HAS(wk_last_error(), "row limit");
  free(csv);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

START_TEST(test_csv_line_length_limit) {
  char *dir = wkt_tempdir();
  /* the default limit: a 70 000-byte path is reported and skipped, the rest kept */
  const size_t long_bytes = 70000;
  char *text = malloc(long_bytes + 64);
  ck_assert_ptr_nonnull(text);
  strcpy(text, "a.jpg,x\n\"");
  size_t n = strlen(text);
  memset(text + n, 'p', long_bytes);
  strcpy(text + n + long_bytes, ".jpg\",y\nb.jpg,y\n");
  char *csv = write_csv(dir, text);
  wk_dataset_opts o = wk_dataset_opts_default();
  o.prescan = false;
  wk_dataset *ds;
  WKT_OK(wk_dataset_open_csv(csv, &o, &ds));
  ck_assert_int_eq(wk_dataset_size(ds), 2);
  ck_assert_int_eq(wk_dataset_n_bad(ds), 1);
  WKT_HAS(wk_dataset_bad_path(ds, 0), "list.csv:2");
  WKT_HAS(wk_dataset_bad_reason(ds, 0), "longer than 65536 bytes");
  WKT_HAS(wk_dataset_bad_reason(ds, 0), "line-length limit");
  wk_dataset_free(ds);
  free(csv);
  /* a lower limit; a quoted field over several lines counts as one row */
  csv = write_csv(dir, "short.jpg,x\n\"a\nb\nc.jpg\",y\nabcdefghijklmnopqrstuvwxyz.jpg,x\n"
                       "d.jpg,y\r\nabcdefghij.jpg,x\r\nabcdefghij.jpg,x");
  o.csv_max_row_bytes = 16; /* the last two rows have exactly 16 bytes: kept */
  WKT_OK(wk_dataset_open_csv(csv, &o, &ds));
  ck_assert_int_eq(wk_dataset_size(ds), 5);
  ck_assert_int_eq(wk_dataset_n_bad(ds), 1);
  WKT_HAS(wk_dataset_bad_path(ds, 0), "list.csv:5");
  WKT_HAS(wk_dataset_bad_reason(ds, 0), "longer than 16 bytes");
  ck_assert_int_eq(strcmp(wk_dataset_path(ds, 1) + strlen(dir) + 1, "a\nb\nc.jpg"), 0);
  wk_dataset_free(ds);
  free(csv);
  free(text);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

/* ---------------------------------------------------------------- model files */
static void write_bytes(const char *path, const char *header) {
  size_t n = strlen(header);
  uint8_t *buf = malloc(8 + n + 8);
  ck_assert_ptr_nonnull(buf);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
  memcpy(buf + 8, header, n);
  memset(buf + 8 + n, 0, 8);
  wkt_write_file(path, buf, 8 + n + 8);
  free(buf);
}

/* Headers that declare tensors far larger than the file: refused from the
 * header, nothing sized from the declaration. */
START_TEST(test_model_header_absurd_sizes) {
  char *dir = wkt_tempdir(), *path = wkt_join(dir, "m.safetensors", NULL);
  const char *headers[] = {
      /* 10^22 elements: the byte size overflows 64 bits */
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[100000000000,100000000000],\"data_offsets\":[0,8]}}",
      /* 2^40 bytes declared, 8 present */
      "{\"w\":{\"dtype\":\"U8\",\"shape\":[1099511627776],"
      "\"data_offsets\":[0,1099511627776]}}",
      /* offsets beyond what a double holds exactly */
      "{\"w\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,1e300]}}",
  };
  wk_st_file *f;
  for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
    write_bytes(path, headers[i]);
    wk_clear_error();
    wk_status s = wk_st_open(path, &f);
    ck_assert_msg(s == WK_ERR_FORMAT || s == WK_ERR_LIMIT, "header %zu: %s: %s", i,
                  wk_status_name(s), wk_last_error());
    ck_assert_ptr_null(f);
    WKT_HAS(wk_last_error(), "m.safetensors");
    WKT_HAS(wk_last_error(), "'w'");
  }
  /* a header length of 2^63: past the end of the file */
  uint8_t len[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
  wkt_write_file(path, len, sizeof len);
  WKT_FAILS(WK_ERR_FORMAT, wk_st_open(path, &f));
  WKT_HAS(wk_last_error(), "runs past the end of the file");
  free(path);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

/* A model whose architecture declares a huge network (a 64x64 convolution
 * from 64 to 65536 channels on a 4096x4096 input: 17 G parameters, 68 GB)
 * but whose file holds no such tensor: refused while checking the tensors,
 * before the parameter arena is allocated. */
START_TEST(test_model_arch_absurd_network) {
  char *dir = wkt_tempdir(), *path = wkt_join(dir, "huge.safetensors", NULL);
  const char *arch =
      "{\"name\":\"custom\",\"width\":1,\"num_classes\":2,\"input\":[4096,4096,64],\"nodes\":["
      "{\"op\":\"conv\",\"name\":\"c\",\"in\":[0],\"out\":65536,\"k\":[64,64],\"stride\":[1,1],"
      "\"pad\":[0,0,0,0],\"dilation\":[1,1],\"groups\":1,\"bias\":false},"
      "{\"op\":\"global_avgpool\",\"name\":\"g\",\"in\":[1]},"
      "{\"op\":\"linear\",\"name\":\"fc\",\"in\":[2],\"out\":2,\"bias\":true}]}";
  const float w = 1.0f;
  const wk_st_entry e = {.name = "fc.bias", .dtype = WK_ST_F32, .ndim = 1, .shape = {1},
                         .data = &w, .n_bytes = sizeof w};
  const wk_st_meta meta[] = {{"format", "whisker"}, {"whisker.arch", arch},
                             {"whisker.classes", "[\"a\",\"b\"]"}};
  WKT_OK(wk_st_write(path, &e, 1, meta, 3));
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = NULL;
  wk_model_meta mm;
  wk_clear_error();
  wk_status s = wk_model_load(ctx, path, &net, &mm);
  ck_assert_msg(s == WK_ERR_FORMAT || s == WK_ERR_SHAPE || s == WK_ERR_LIMIT, "%s: %s",
                wk_status_name(s), wk_last_error());
  ck_assert_ptr_null(net);
  WKT_HAS(wk_last_error(), "huge.safetensors");
  WKT_HAS(wk_last_error(), "c.weight");
  wk_ctx_destroy(ctx);
  free(path);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("limits");
  TCase *tc = tcase_create("limits");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_pixel_limit_from_environment);
  tcase_add_test(tc, test_pixel_limit_in_datasets);
  tcase_add_test(tc, test_huge_declared_images);
  tcase_add_test(tc, test_csv_row_limit);
  tcase_add_test(tc, test_csv_line_length_limit);
  tcase_add_test(tc, test_model_header_absurd_sizes);
  tcase_add_test(tc, test_model_arch_absurd_network);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
