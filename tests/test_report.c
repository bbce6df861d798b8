/* test_report.c - the HTML training report (src/train/report.h): the page
 * holds two SVG charts, escaped strings only, JPEG thumbnails as data URIs,
 * the confusion table and per-class F1 values worked out by hand; degenerate
 * reports (no epochs, no matrix, one epoch, hundreds of epochs, constant and
 * NaN series) write cleanly; an unwritable path fails naming the path. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_fs.h"
#include "test_util.h"
#include "train/report.h"

/* Writes r to a fresh temporary folder and returns the page (free it). */
static char *write_and_read(const wk_report *r) {
  char *dir = wkt_tempdir();
  char *path = wkt_join(dir, "report.html", NULL);
  WKT_OK(wk_report_write_html(path, r));
  size_t n = 0;
  char *html = (char *)wkt_read_file(path, &n);
  char *text = malloc(n + 1);
  ck_assert_ptr_nonnull(text);
  memcpy(text, html, n);
  text[n] = '\0';
  free(html);
  wkt_rmtree(dir);
  free(path);
  free(dir);
  return text;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

/* No "nan" or "inf" printed inside any <svg>...</svg>. */
static void assert_svg_numbers_finite(const char *html) {
  for (const char *p = strstr(html, "<svg"); p; p = strstr(p + 1, "<svg")) {
    const char *end = strstr(p, "</svg>");
    ck_assert_ptr_nonnull(end);
    for (const char *q = p; q < end; q++)
      ck_assert_msg(strncmp(q, "nan", 3) != 0 && strncmp(q, "inf", 3) != 0,
                    "non-finite number in a chart: %.40s", q);
  }
}

static const char *const names[3] = {"<cat & \"dog\">", "bird's", "fish"};
/* row = true, column = predicted. Row sums 6, 6, 4; column sums 7, 4, 5.
 * F1_k = 2 C[k][k] / (row_k + col_k): 10/13 = 0.769, 6/10 = 0.600, 8/9 = 0.889;
 * macro F1 0.753. Precision 5/7 = 0.714, recall of class 1 3/6 = 0.500. */
static const int64_t confusion[9] = {5, 1, 0, 2, 3, 1, 0, 0, 4};

START_TEST(test_full_report) {
  wk_report_epoch ep[4] = {
      {1, 1.20, 0.40, 1.10, 0.45, 0.1, 12.5, 800, 0.25},
      {2, 0.90, 0.60, NAN, NAN, 0.1, 12.0, 820, 6.0},
      {3, 0.70, 0.70, 0.80, 0.68, 0.01, 11.9, 830, NAN},
      {4, 0.60, 0.75, 0.75, 0.71, 0.001, 12.1, 815, 0.0},
  };
  wk_report_setting set[2] = {{"arch", "resnet18"}, {"data", "pets/<all> & 'more'"}};
  char *img1 = wkt_fixture("jpeg_large.jpg"), *img2 = wkt_fixture("png_rgb8.png");
  wk_report_example worst[3] = {
      {img1, 0, 1, 0.12f}, {img2, 1, 2, 0.05f}, {"/nonexistent/missing.jpg", 2, 0, 0.2f}};
  wk_report r = {.title = "resnet18 on <pets>", .settings = set, .n_settings = 2,
                 .epochs = ep, .n_epochs = 4, .n_classes = 3, .class_names = names,
                 .confusion = confusion, .worst = worst, .n_worst = 3};
  char *html = write_and_read(&r);

  ck_assert_int_eq(count(html, "<svg"), 2);
  ck_assert_int_eq(count(html, "</svg>"), 2);
  assert_svg_numbers_finite(html);
  ck_assert_ptr_nonnull(strstr(html, "&lt;cat &amp; &quot;dog&quot;&gt;"));
  ck_assert_ptr_null(strstr(html, "<cat"));
  ck_assert_ptr_nonnull(strstr(html, "bird&#39;s"));
  ck_assert_ptr_nonnull(strstr(html, "pets/&lt;all&gt; &amp; &#39;more&#39;"));
  ck_assert_ptr_nonnull(strstr(html, "<title>resnet18 on &lt;pets&gt;</title>"));
  ck_assert_int_eq(count(html, "data:image/jpeg;base64,"), 2);
  ck_assert_ptr_nonnull(strstr(html, "no thumbnail: /nonexistent/missing.jpg"));
  ck_assert_ptr_nonnull(strstr(html, "(p=0.12)"));
  ck_assert_ptr_nonnull(strstr(html, "<table class=\"confusion\">"));
  ck_assert_ptr_nonnull(strstr(html, "<td>0.769</td>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>0.600</td>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>0.889</td>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>0.753</td>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>0.714</td>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>0.500</td>"));
  ck_assert_ptr_nonnull(strstr(html, "Accuracy from the matrix: 75.00%"));
  ck_assert_ptr_nonnull(strstr(html, "best validation accuracy 71.00% (epoch 4)"));
  /* the share of each epoch spent waiting for the loader: 0.25 of 12.5 s, 6 of 12 s */
  ck_assert_ptr_nonnull(strstr(html, "<th>waiting for data</th>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>800</td><td>2%</td></tr>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>820</td><td>50%</td></tr>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>830</td><td class=\"na\">&ndash;</td></tr>"));
  ck_assert_ptr_nonnull(strstr(html, "<td>815</td><td>0%</td></tr>"));
  /* self-contained: no URL but the SVG namespace */
  ck_assert_int_eq(count(html, "http"), count(html, "http://www.w3.org/2000/svg"));
  free(html);
  free(img1);
  free(img2);
}
END_TEST

START_TEST(test_thumbnail_is_a_small_jpeg) {
  char *img = wkt_fixture("jpeg_large.jpg"); /* 96 x 72 */
  wk_report_example worst[1] = {{img, 0, 1, 0.3f}};
  wk_report r = {.n_classes = 2, .worst = worst, .n_worst = 1};
  char *html = write_and_read(&r);
  const char *p = strstr(html, "data:image/jpeg;base64,");
  ck_assert_ptr_nonnull(p);
  p += strlen("data:image/jpeg;base64,");
  ck_assert_msg(strncmp(p, "/9j/", 4) == 0, "not a JPEG: %.8s", p); /* FF D8 FF */
  const char *end = strchr(p, '"');
  ck_assert_ptr_nonnull(end);
  ck_assert_int_lt((int)(end - p), 20000);
  ck_assert_ptr_nonnull(strstr(html, "true: class 0, predicted: class 1 (p=0.30)"));
  free(html);
  free(img);
}
END_TEST

START_TEST(test_empty_report) {
  wk_report r = {0};
  char *html = write_and_read(&r);
  ck_assert_ptr_nonnull(strstr(html, "No epochs were recorded"));
  ck_assert_ptr_nonnull(strstr(html, "No confusion matrix was recorded"));
  ck_assert_ptr_nonnull(strstr(html, "No settings were recorded"));
  ck_assert_ptr_nonnull(strstr(html, "No examples were recorded"));
  ck_assert_ptr_null(strstr(html, "<svg"));
  ck_assert_ptr_nonnull(strstr(html, "</html>"));
  free(html);
  /* classes named but no matrix, examples with out-of-range labels and no path */
  wk_report_example worst[1] = {{NULL, 7, -1, NAN}};
  wk_report r2 = {.n_classes = 3, .class_names = names, .worst = worst, .n_worst = 1};
  html = write_and_read(&r2);
  ck_assert_ptr_nonnull(strstr(html, "true: class 7, predicted: class -1"));
  free(html);
}
END_TEST

START_TEST(test_degenerate_series) {
  /* one epoch */
  wk_report_epoch one = {1, 0.5, 0.8, 0.6, 0.7, 0.1, 1, 1, 0.1};
  wk_report r = {.epochs = &one, .n_epochs = 1};
  char *html = write_and_read(&r);
  ck_assert_int_eq(count(html, "<svg"), 2);
  ck_assert_int_ge(count(html, "<circle"), 4); /* lone points stay visible */
  assert_svg_numbers_finite(html);
  free(html);

  /* 500 epochs, constant losses, accuracy all NaN, an infinite loss */
  enum { N = 500 };
  wk_report_epoch *many = calloc(N, sizeof *many);
  ck_assert_ptr_nonnull(many);
  for (int i = 0; i < N; i++)
    many[i] = (wk_report_epoch){i + 1, 2.0, NAN, 2.0, NAN, 0.1, NAN, NAN, NAN};
  many[10].train_loss = INFINITY;
  r.epochs = many;
  r.n_epochs = N;
  html = write_and_read(&r);
  ck_assert_int_eq(count(html, "<svg"), 2);
  ck_assert_ptr_nonnull(strstr(html, "no finite values to plot"));
  assert_svg_numbers_finite(html);
  free(html);
  free(many);
}
END_TEST

START_TEST(test_many_classes) {
  enum { K = 120 };
  int64_t *m = calloc((size_t)K * K, sizeof *m);
  ck_assert_ptr_nonnull(m);
  for (int k = 0; k < K; k++) m[(size_t)k * K + k] = k + 1;
  wk_report r = {.n_classes = K, .confusion = m};
  char *html = write_and_read(&r);
  ck_assert_ptr_nonnull(strstr(html, "120 classes: the matrix shows the first 50"));
  ck_assert_ptr_nonnull(strstr(html, "class 119"));
  free(html);
  free(m);
}
END_TEST

START_TEST(test_errors) {
  wk_report r = {0};
  WKT_FAILS(WK_ERR_IO, wk_report_write_html("/nonexistent-wk-dir/sub/report.html", &r));
  ck_assert_msg(strstr(wk_last_error(), "/nonexistent-wk-dir/sub/report.html") != NULL,
                "message does not name the path: %s", wk_last_error());
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_report_write_html("x.html", NULL));
  r.n_epochs = 3; /* no array */
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_report_write_html("x.html", &r));
  int64_t bad[1] = {-1};
  wk_report r2 = {.n_classes = 1, .confusion = bad};
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_report_write_html("x.html", &r2));
}
END_TEST

int main(void) {
  Suite *s = suite_create("report");
  TCase *tc = tcase_create("report");
  tcase_add_test(tc, test_full_report);
  tcase_add_test(tc, test_thumbnail_is_a_small_jpeg);
  tcase_add_test(tc, test_empty_report);
  tcase_add_test(tc, test_degenerate_series);
  tcase_add_test(tc, test_many_classes);
  tcase_add_test(tc, test_errors);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
