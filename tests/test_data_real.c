/* test_data_real.c - the data pipeline on the shared dogs-vs-cats set
 * ($WHISKER_DATA/dogs-vs-cats, default ../shared/data next to the source
 * tree): the train/ and val/ folders open with every file usable, and the
 * training and evaluation loaders produce well-formed batches. Exits 77
 * (skipped) where the data is not present. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "core/log.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "test_util.h"

static void data_root(char *buf, size_t n) {
  const char *env = getenv("WHISKER_DATA");
  if (env && *env) snprintf(buf, n, "%s/dogs-vs-cats", env);
  else snprintf(buf, n, "%s/../shared/data/dogs-vs-cats", wkt_source_dir());
}

static void check_batch(const wk_batch *b, int64_t n, const wk_dataset *ds) {
  ck_assert_int_eq(b->n, n);
  ck_assert_int_eq(b->images.shape[1], 224);
  ck_assert_int_eq(b->images.shape[3], 3);
  const float *x = b->images.data;
  double sum = 0;
  int64_t outside = 0; /* a check per value would be slow: count, then check */
  for (int64_t i = 0; i < wk_tensor_numel(&b->images); i++) {
    /* ImageNet normalisation maps [0, 1] into [-2.12, 2.64] */
    outside += !(isfinite(x[i]) && x[i] >= -2.2f && x[i] <= 2.7f);
    sum += x[i];
  }
  ck_assert_int_eq(outside, 0);
  ck_assert(fabs(sum / (double)wk_tensor_numel(&b->images)) < 1.0);
  for (int64_t i = 0; i < n; i++)
    ck_assert_int_eq(((int32_t *)b->labels.data)[i], wk_dataset_label(ds, b->samples[i]));
}

START_TEST(test_dogs_vs_cats) {
  char root[4096];
  data_root(root, sizeof root);
  wk_dataset_opts o = wk_dataset_opts_default();
  o.n_threads = 2;
  wk_dataset *train = NULL, *val = NULL;
  ck_assert_msg(wk_dataset_open_split(root, &o, &train, &val) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_dataset_size(train), 2000);
  ck_assert_int_eq(wk_dataset_size(val), 1000);
  ck_assert_int_eq(wk_dataset_n_bad(train) + wk_dataset_n_bad(val), 0);
  ck_assert_str_eq(wk_dataset_class_name(train, 0), "cat");
  ck_assert_str_eq(wk_dataset_class_name(train, 1), "dog");
  ck_assert_int_eq(wk_dataset_class_size(train, 0), 1000);
  ck_assert_int_eq(wk_dataset_class_size(val, 1), 500);

  wk_loader_cfg cfg = wk_loader_cfg_train(224, 32, 2, 7);
  cfg.aug.brightness = cfg.aug.contrast = cfg.aug.saturation = 0.4f;
  cfg.aug.hue = 0.1f;
  wk_loader *ld = NULL;
  ck_assert_int_eq(wk_loader_create(train, &cfg, &ld), WK_OK);
  ck_assert_int_eq(wk_loader_batches_per_epoch(ld), 62);
  ck_assert_int_eq(wk_loader_start_epoch(ld, 0), WK_OK);
  for (int i = 0; i < 3; i++) {
    const wk_batch *b = NULL;
    ck_assert_int_eq(wk_loader_next_batch(ld, &b), WK_OK);
    check_batch(b, 32, train);
  }
  wk_loader_destroy(ld);

  wk_loader_cfg ev = wk_loader_cfg_eval(224, 50, 2);
  ck_assert_int_eq(wk_loader_create(val, &ev, &ld), WK_OK);
  ck_assert_int_eq(wk_loader_start_epoch(ld, 0), WK_OK);
  const wk_batch *b = NULL;
  ck_assert_int_eq(wk_loader_next_batch(ld, &b), WK_OK);
  check_batch(b, 50, val);
  ck_assert_int_eq(b->samples[49], 49);
  wk_loader_destroy(ld);
  wk_dataset_free(train);
  wk_dataset_free(val);
}
END_TEST

int main(void) {
  char root[4096];
  data_root(root, sizeof root);
  struct stat st;
  if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "test_data_real: %s not found, skipping\n", root);
    return 77;
  }
  wk_log_set_level(WK_LOG_ERROR);
  Suite *s = suite_create("data_real");
  TCase *tc = tcase_create("data_real");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_dogs_vs_cats);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
