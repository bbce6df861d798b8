/* test_data.c - datasets (folder scan, CSV lists, bad files, splits), the
 * augmentations (against torchvision's geometry and by their properties) and
 * the loader (identical batches for 1, 2 and 4 workers, epochs, shutdown
 * mid-epoch, substitutes for files that break after the pre-scan).
 *
 * Every dataset is built in a temporary folder from pictures the test writes
 * with whisker's own writers, plus copies of bad fixtures. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "image/image.h"
#include "test_fs.h"
#include "test_util.h"

/* ---------------------------------------------------------------- helpers */
static void write_picture(const char *dir, const char *name, int w, int h, uint32_t seed) {
  char *path = wkt_join(dir, name, NULL);
  wk_image img = {0};
  wkt_make_image(&img, w, h, seed);
  size_t n = strlen(name);
  bool png = n > 4 && !strcasecmp(name + n - 4, ".png");
  wk_status s = png ? wk_image_write_png(&img, path) : wk_image_write_jpeg(&img, path, 90);
  ck_assert_msg(s == WK_OK, "%s", wk_last_error());
  wk_image_free(&img);
  free(path);
}

static void copy_fixture(const char *fixture, const char *dir, const char *name) {
  char *src = wkt_fixture(fixture), *dst = wkt_join(dir, name, NULL);
  wk_bytes b = {0};
  ck_assert_int_eq(wk_file_read(src, 0, &b), WK_OK);
  wkt_write_file(dst, b.data, b.n_bytes);
  wk_bytes_free(&b);
  free(src);
  free(dst);
}

static void write_text(const char *dir, const char *name, const char *text) {
  char *p = wkt_join(dir, name, NULL);
  wkt_write_file(p, text, strlen(text));
  free(p);
}

static char *mkdir_in(const char *parent, const char *name) {
  char *p = wkt_join(parent, name, NULL);
  wkt_mkdir(p);
  return p;
}

static bool ends_with(const char *s, const char *tail) {
  size_t a = strlen(s), b = strlen(tail);
  return a >= b && !strcmp(s + a - b, tail);
}

static wk_dataset_opts quiet_opts(bool prescan) {
  wk_dataset_opts o = wk_dataset_opts_default();
  o.prescan = prescan;
  o.n_threads = 2;
  return o;
}

/* ---------------------------------------------------------------- folder scan */
START_TEST(test_folder_scan_order_hidden_and_extensions) {
  char *root = wkt_tempdir();
  char *a = mkdir_in(root, "a"), *b = mkdir_in(root, "b"), *sub = mkdir_in(a, "sub");
  char *git = mkdir_in(root, ".git");
  write_picture(b, "b1.png", 20, 14, 1);
  write_picture(b, "B2.JPG", 17, 23, 2);   /* upper-case extension */
  write_picture(a, "a1.jpeg", 31, 9, 3);
  write_picture(sub, "a2.Png", 12, 12, 4); /* in a sub-folder of the class */
  write_picture(a, ".hidden.jpg", 12, 12, 5);
  write_picture(git, "x.jpg", 12, 12, 6);
  write_text(a, "notes.txt", "hi");
  write_text(root, "readme.md", "x");
  /* links back up (a loop): skipped, where each once listed the class's images
   * again at every level down to the depth limit (17 copies; a few such links
   * made the scan explode) */
  char *up = wkt_join(sub, "up", NULL), *self = wkt_join(b, "self", NULL);
  ck_assert_int_eq(symlink("..", up), 0);
  ck_assert_int_eq(symlink(".", self), 0);
  free(up);
  free(self);
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  ck_assert_msg(wk_dataset_open_folder(root, &o, &ds) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_dataset_n_classes(ds), 2);
  ck_assert_str_eq(wk_dataset_class_name(ds, 0), "a");
  ck_assert_str_eq(wk_dataset_class_name(ds, 1), "b");
  ck_assert_int_eq(wk_dataset_size(ds), 4);
  const char *want[4] = {"/a/a1.jpeg", "/a/sub/a2.Png", "/b/B2.JPG", "/b/b1.png"};
  const int labels[4] = {0, 0, 1, 1};
  for (int i = 0; i < 4; i++) {
    ck_assert_msg(ends_with(wk_dataset_path(ds, i), want[i]), "%d: %s", i,
                  wk_dataset_path(ds, i));
    ck_assert_int_eq(wk_dataset_label(ds, i), labels[i]);
  }
  ck_assert_int_eq(wk_dataset_n_bad(ds), 0);
  ck_assert_int_eq(wk_dataset_n_ignored(ds), 2); /* notes.txt, readme.md */
  ck_assert_int_eq(wk_dataset_class_size(ds, 0), 2);
  wk_dataset_free(ds);
  wkt_rmtree(root);
  free(git);
  free(sub);
  free(b);
  free(a);
  free(root);
}
END_TEST

START_TEST(test_bad_files_reported_once_and_skipped) {
  char *root = wkt_tempdir();
  char *x = mkdir_in(root, "x"), *y = mkdir_in(root, "y");
  write_picture(x, "good.png", 20, 14, 1);
  write_picture(y, "good2.jpg", 20, 14, 2);
  write_text(x, "empty.jpg", "");
  copy_fixture("bad_text.jpg", x, "text.jpg");
  copy_fixture("bad_truncated.jpg", x, "trunc.jpg");
  copy_fixture("bad_huge.png", x, "zhuge.png");
  copy_fixture("bad_gif.png", y, "anim.png");
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  ck_assert_msg(wk_dataset_open_folder(root, &o, &ds) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_dataset_size(ds), 2);
  ck_assert_int_eq(wk_dataset_n_bad(ds), 5);
  /* in scan order, each with its path and reason */
  const char *files[5] = {"/x/empty.jpg", "/x/text.jpg", "/x/trunc.jpg", "/x/zhuge.png",
                          "/y/anim.png"};
  const char *words[5] = {"empty", "not an image", "truncated", "pixel limit", "GIF"};
  for (int i = 0; i < 5; i++) {
    ck_assert_msg(ends_with(wk_dataset_bad_path(ds, i), files[i]), "%s",
                  wk_dataset_bad_path(ds, i));
    ck_assert_msg(strstr(wk_dataset_bad_reason(ds, i), words[i]) != NULL, "%s: %s",
                  files[i], wk_dataset_bad_reason(ds, i));
    /* the reason does not repeat the path */
    ck_assert_ptr_null(strstr(wk_dataset_bad_reason(ds, i), files[i]));
  }
  /* the same with the pre-scan on several threads: same verdicts, same order */
  wk_dataset *again = NULL;
  o.n_threads = 3;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &again), WK_OK);
  ck_assert_int_eq(wk_dataset_n_bad(again), 5);
  for (int i = 0; i < 5; i++)
    ck_assert_str_eq(wk_dataset_bad_path(again, i), wk_dataset_bad_path(ds, i));
  wk_dataset_free(again);
  /* a split keeps the list with the training part */
  wk_dataset *tr = NULL, *va = NULL;
  ck_assert_int_eq(wk_dataset_split(ds, 50, 1, &tr, &va), WK_OK);
  ck_assert_int_eq(wk_dataset_n_bad(tr), 5);
  ck_assert_str_eq(wk_dataset_bad_reason(tr, 4), wk_dataset_bad_reason(ds, 4));
  ck_assert_int_eq(wk_dataset_n_bad(va), 0);
  wk_dataset_free(tr);
  wk_dataset_free(va);
  wk_dataset_free(ds);
  wkt_rmtree(root);
  free(x);
  free(y);
  free(root);
}
END_TEST

START_TEST(test_empty_class_and_empty_dataset_are_errors) {
  char *root = wkt_tempdir();
  char *a = mkdir_in(root, "alpha"), *c = mkdir_in(root, "cobra");
  write_picture(a, "one.png", 8, 8, 1);
  copy_fixture("bad_text.jpg", c, "fake.jpg");
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  /* every file of 'cobra' is refused */
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_ERR_FORMAT);
  ck_assert_ptr_null(ds);
  ck_assert_msg(strstr(wk_last_error(), "class 'cobra' has no usable images"), "%s",
                wk_last_error());
  /* a class folder with nothing in it, even without a pre-scan */
  char *e = mkdir_in(root, "empty");
  char *fake = wkt_join(c, "fake.jpg", NULL);
  ck_assert_int_eq(remove(fake), 0);
  free(fake);
  o.prescan = false;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_ERR_FORMAT);
  ck_assert_msg(strstr(wk_last_error(), "class 'cobra'"), "%s", wk_last_error());
  /* class folders without one image file; then with only refused ones */
  char *one = wkt_join(a, "one.png", NULL);
  ck_assert_int_eq(remove(one), 0);
  free(one);
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_ERR_FORMAT);
  ck_assert_msg(strstr(wk_last_error(), ": no image files (.jpg, .jpeg, .jpe, .jfif, .png) in its "
                                        "3 class folders"), "%s", wk_last_error());
  copy_fixture("bad_text.jpg", c, "fake.jpg");
  o.prescan = true;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_ERR_FORMAT);
  ck_assert_msg(strstr(wk_last_error(), ": no usable images (1 file left out, see the warnings "
                                        "above)"), "%s", wk_last_error());
  o.prescan = false;
  /* no class folders; a folder that does not exist */
  ck_assert_int_eq(wk_dataset_open_folder(e, &o, &ds), WK_ERR_FORMAT);
  ck_assert_msg(strstr(wk_last_error(), "no class folders"), "%s", wk_last_error());
  char *missing = wkt_join(root, "nowhere", NULL);
  ck_assert_int_eq(wk_dataset_open_folder(missing, &o, &ds), WK_ERR_IO);
  ck_assert(strstr(wk_last_error(), missing) != NULL);
  free(missing);
  wkt_rmtree(root);
  free(a);
  free(c);
  free(e);
  free(root);
}
END_TEST

/* ---------------------------------------------------------------- CSV */
START_TEST(test_csv_list_quoting_and_bad_rows) {
  char *root = wkt_tempdir();
  char *img = mkdir_in(root, "img");
  write_picture(img, "a,1.png", 10, 10, 1);
  write_picture(img, "b.jpg", 10, 10, 2);
  write_picture(img, "c.png", 10, 10, 3);
  write_picture(img, "say \"hi\".png", 10, 10, 4);
  char *abs_c = wkt_join(img, "c.png", NULL);
  char csv[2048];
  snprintf(csv, sizeof csv,
           "\xEF\xBB\xBFpath,label\r\n"         /* BOM, header, CRLF */
           "\"img/a,1.png\",dog\r\n"           /* 2: a comma inside quotes */
           "img/b.jpg , cat \n"                /* 3: spaces trimmed */
           "\n"                                /* 4: blank */
           "img/b.jpg,cat,extra\n"             /* 5: three fields */
           "img/b.jpg,\n"                      /* 6: empty label */
           "\"img/b.jpg\"x,cat\n"              /* 7: text after a quote */
           "img/missing.png,dog\n"             /* 8: no such file (pre-scan) */
           "%s,\"dog\"\n"                      /* 9: absolute path */
           "\"img/say \"\"hi\"\".png\",cat\n"  /* 10: doubled quotes */
           "\"img/never closed,cat\n",         /* 11: unterminated */
           abs_c);
  char *list = wkt_join(root, "list.csv", NULL);
  wkt_write_file(list, csv, strlen(csv));
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  ck_assert_msg(wk_dataset_open_csv(list, &o, &ds) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_dataset_n_classes(ds), 2);
  ck_assert_str_eq(wk_dataset_class_name(ds, 0), "cat");
  ck_assert_str_eq(wk_dataset_class_name(ds, 1), "dog");
  ck_assert_int_eq(wk_dataset_size(ds), 4);
  ck_assert(ends_with(wk_dataset_path(ds, 0), "/img/a,1.png"));
  ck_assert_int_eq(wk_dataset_label(ds, 0), 1);
  ck_assert(ends_with(wk_dataset_path(ds, 1), "/img/b.jpg"));
  ck_assert_int_eq(wk_dataset_label(ds, 1), 0);
  ck_assert_str_eq(wk_dataset_path(ds, 2), abs_c);
  ck_assert(ends_with(wk_dataset_path(ds, 3), "/img/say \"hi\".png"));
  /* bad rows by line, then the missing file */
  ck_assert_int_eq(wk_dataset_n_bad(ds), 5);
  const char *where[5] = {":5", ":6", ":7", ":11", "/img/missing.png"};
  const char *why[5] = {"found 3", "empty label", "after a closing quote", "never closed",
                        "cannot open"};
  for (int i = 0; i < 5; i++) {
    ck_assert_msg(ends_with(wk_dataset_bad_path(ds, i), where[i]), "%s",
                  wk_dataset_bad_path(ds, i));
    ck_assert_msg(strstr(wk_dataset_bad_reason(ds, i), why[i]), "%s",
                  wk_dataset_bad_reason(ds, i));
  }
  wk_dataset_free(ds);
  /* numeric labels sort as numbers */
  const char *numeric = "img/b.jpg,10\nimg/c.png,2\nimg/b.jpg,1\n";
  wkt_write_file(list, numeric, strlen(numeric));
  o.prescan = false;
  ck_assert_int_eq(wk_dataset_open_csv(list, &o, &ds), WK_OK);
  ck_assert_int_eq(wk_dataset_n_classes(ds), 3);
  ck_assert_str_eq(wk_dataset_class_name(ds, 0), "1");
  ck_assert_str_eq(wk_dataset_class_name(ds, 2), "10");
  ck_assert_int_eq(wk_dataset_label(ds, 0), 2);
  wk_dataset_free(ds);
  /* nothing usable at all */
  wkt_write_file(list, "path,label\n", 11);
  ck_assert_int_eq(wk_dataset_open_csv(list, &o, &ds), WK_ERR_FORMAT);
  free(list);
  free(abs_c);
  wkt_rmtree(root);
  free(img);
  free(root);
}
END_TEST

/* ---------------------------------------------------------------- splits */
/* A CSV dataset with class sizes 10, 7, 1 (paths repeat; no pre-scan). */
static wk_dataset *split_fixture(char *root) {
  char *img = mkdir_in(root, "img");
  write_picture(img, "p.png", 8, 8, 1);
  char csv[4096] = "";
  const char *cls[3] = {"ant", "bee", "cow"};
  const int count[3] = {10, 7, 1};
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < count[c]; i++)
      snprintf(csv + strlen(csv), sizeof csv - strlen(csv), "img/p.png,%s\n", cls[c]);
  char *list = wkt_join(root, "l.csv", NULL);
  wkt_write_file(list, csv, strlen(csv));
  wk_dataset_opts o = quiet_opts(false);
  wk_dataset *ds = NULL;
  ck_assert_int_eq(wk_dataset_open_csv(list, &o, &ds), WK_OK);
  free(list);
  free(img);
  return ds;
}

START_TEST(test_split_is_stratified) {
  char *root = wkt_tempdir();
  wk_dataset *ds = split_fixture(root);
  wk_dataset *tr = NULL, *va = NULL;
  ck_assert_int_eq(wk_dataset_split(ds, 30.0, 5, &tr, &va), WK_OK);
  /* round(10 * 0.3) = 3, round(7 * 0.3) = 2, a single sample stays in train */
  ck_assert_int_eq(wk_dataset_class_size(va, 0), 3);
  ck_assert_int_eq(wk_dataset_class_size(va, 1), 2);
  ck_assert_int_eq(wk_dataset_class_size(va, 2), 0);
  ck_assert_int_eq(wk_dataset_class_size(tr, 0), 7);
  ck_assert_int_eq(wk_dataset_class_size(tr, 2), 1);
  ck_assert_int_eq(wk_dataset_n_classes(va), 3);
  wk_dataset_free(tr);
  wk_dataset_free(va);
  /* 1%: every class of two or more still gives one sample to each side */
  ck_assert_int_eq(wk_dataset_split(ds, 1.0, 5, &tr, &va), WK_OK);
  ck_assert_int_eq(wk_dataset_class_size(va, 0), 1);
  ck_assert_int_eq(wk_dataset_class_size(va, 1), 1);
  wk_dataset_free(tr);
  wk_dataset_free(va);
  /* 60%: the single sample still stays in train (it rounded to validation,
   * leaving its class nothing to learn from) */
  ck_assert_int_eq(wk_dataset_split(ds, 60.0, 5, &tr, &va), WK_OK);
  ck_assert_int_eq(wk_dataset_class_size(va, 2), 0);
  ck_assert_int_eq(wk_dataset_class_size(tr, 2), 1);
  wk_dataset_free(tr);
  wk_dataset_free(va);
  ck_assert_int_eq(wk_dataset_split(ds, 100.0, 5, &tr, &va), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_dataset_split(ds, -1.0, 5, &tr, &va), WK_ERR_INVALID_ARG);
  wk_dataset_free(ds);
  wkt_rmtree(root);
  free(root);
}
END_TEST

/* Distinct files per class, so membership can be compared by path. */
START_TEST(test_split_membership_depends_on_seed_only) {
  char *root = wkt_tempdir();
  char *a = mkdir_in(root, "a"), *b = mkdir_in(root, "b");
  char name[32];
  for (int i = 0; i < 12; i++) {
    snprintf(name, sizeof name, "a%02d.png", i);
    write_picture(a, name, 8, 8, (uint32_t)i);
    snprintf(name, sizeof name, "b%02d.png", i);
    if (i < 6) write_picture(b, name, 8, 8, (uint32_t)i);
  }
  wk_dataset_opts o = quiet_opts(false);
  o.val_pct = 25;
  o.seed = 11;
  wk_dataset *tr[3], *va[3];
  for (int k = 0; k < 3; k++) {
    o.seed = k < 2 ? 11 : 12;
    ck_assert_int_eq(wk_dataset_open_split(root, &o, &tr[k], &va[k]), WK_OK);
    ck_assert_int_eq(wk_dataset_size(va[k]), 3 + 2); /* round(3), round(1.5) = 2 */
  }
  bool same_seed_same = true, other_seed_same = true;
  for (int64_t i = 0; i < wk_dataset_size(va[0]); i++) {
    same_seed_same &= !strcmp(wk_dataset_path(va[0], i), wk_dataset_path(va[1], i));
    other_seed_same &= !strcmp(wk_dataset_path(va[0], i), wk_dataset_path(va[2], i));
  }
  ck_assert(same_seed_same);
  ck_assert(!other_seed_same);
  /* train and val are disjoint and cover everything */
  for (int64_t i = 0; i < wk_dataset_size(va[0]); i++)
    for (int64_t j = 0; j < wk_dataset_size(tr[0]); j++)
      ck_assert_str_ne(wk_dataset_path(va[0], i), wk_dataset_path(tr[0], j));
  ck_assert_int_eq(wk_dataset_size(tr[0]) + wk_dataset_size(va[0]), 18);
  for (int k = 0; k < 3; k++) {
    wk_dataset_free(tr[k]);
    wk_dataset_free(va[k]);
  }
  wkt_rmtree(root);
  free(a);
  free(b);
  free(root);
}
END_TEST

START_TEST(test_split_from_train_and_val_folders) {
  char *root = wkt_tempdir();
  char *train = mkdir_in(root, "train");
  char *ta = mkdir_in(train, "ant"), *tb = mkdir_in(train, "bee");
  write_picture(ta, "1.png", 8, 8, 1);
  write_picture(ta, "1b.png", 8, 8, 5);
  write_picture(tb, "2.png", 8, 8, 2);
  write_picture(tb, "2b.png", 8, 8, 6);
  wk_dataset_opts o = quiet_opts(true);
  o.val_pct = 50;
  wk_dataset *tr = NULL, *va = NULL;
  /* train/ without val/: train/ holds the classes, split by percentage */
  ck_assert_msg(wk_dataset_open_split(root, &o, &tr, &va) == WK_OK, "%s", wk_last_error());
  ck_assert_str_eq(wk_dataset_class_name(tr, 0), "ant");
  ck_assert_int_eq(wk_dataset_size(tr), 2);
  ck_assert_int_eq(wk_dataset_size(va), 2);
  wk_dataset_free(tr);
  wk_dataset_free(va);
  /* with val/: the percentage is ignored */
  char *val = mkdir_in(root, "val"), *vb = mkdir_in(val, "bee");
  write_picture(vb, "3.png", 8, 8, 3);
  ck_assert_msg(wk_dataset_open_split(root, &o, &tr, &va) == WK_OK, "%s", wk_last_error());
  ck_assert_int_eq(wk_dataset_size(tr), 4);
  ck_assert_int_eq(wk_dataset_size(va), 1);
  ck_assert_int_eq(wk_dataset_n_classes(va), 2); /* train's classes, 'ant' absent */
  ck_assert_int_eq(wk_dataset_label(va, 0), 1);  /* bee is class 1 of train */
  wk_dataset_free(tr);
  wk_dataset_free(va);
  /* a class that only val/ has */
  char *vc = mkdir_in(val, "cat");
  write_picture(vc, "4.png", 8, 8, 4);
  ck_assert_int_eq(wk_dataset_open_split(root, &o, &tr, &va), WK_ERR_FORMAT);
  ck_assert_msg(strstr(wk_last_error(), "'cat' is not a class of the training set"), "%s",
                wk_last_error());
  ck_assert_ptr_null(tr);
  ck_assert_ptr_null(va);
  wkt_rmtree(root);
  free(vc);
  free(ta);
  free(tb);
  free(vb);
  free(train);
  free(val);
  free(root);
}
END_TEST

/* ---------------------------------------------------------------- augment */
typedef struct aug_row {
  char check[16], args[64], expect[96];
  int max_diff;
} aug_row;

static int read_aug_rows(aug_row *rows, int max) {
  char *path = wkt_fixture("AUGMENT.tsv");
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  free(path);
  char line[512], file[64];
  int n = 0;
  while (n < max && fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    aug_row *r = &rows[n];
    ck_assert_int_eq(sscanf(line, "%63s %15s %63s %95s %d", file, r->check, r->args, r->expect,
                            &r->max_diff),
                     5);
    n++;
  }
  fclose(f);
  return n;
}

static void u8_to_image(const uint8_t *px, int w, int h, wk_image *img) {
  ck_assert_int_eq(wk_image_alloc(img, w, h), WK_OK);
  memcpy(img->data, px, (size_t)w * (size_t)h * 3);
}

START_TEST(test_augment_geometry_matches_torchvision) {
  char *src_path = wkt_fixture("resize_src.png");
  wk_image src = {0};
  ck_assert_int_eq(wk_image_load(src_path, NULL, &src), WK_OK);
  aug_row rows[16];
  int n = read_aug_rows(rows, 16);
  ck_assert_int_ge(n, 6);
  for (int i = 0; i < n; i++) {
    aug_row *r = &rows[i];
    wk_augment_cfg cfg;
    wk_augment_params p;
    int ow, oh;
    if (!strcmp(r->check, "eval")) {
      int resize;
      ck_assert_int_eq(sscanf(r->args, "%d,%d,%d", &resize, &ow, &oh), 3);
      cfg = wk_augment_cfg_eval(ow);
      cfg.out_height = oh;
      cfg.eval_resize = resize;
      ck_assert_int_eq(wk_augment_plan(&cfg, src.width, src.height, 0, 0, 0, &p), WK_OK);
    } else {
      int top, left, h, w, flip;
      ck_assert_int_eq(sscanf(r->args, "%d,%d,%d,%d,%d,%d,%d", &top, &left, &h, &w, &ow, &oh,
                              &flip),
                       7);
      cfg = wk_augment_cfg_train(ow);
      cfg.out_height = oh;
      ck_assert_int_eq(wk_augment_plan(&cfg, src.width, src.height, 0, 0, 0, &p), WK_OK);
      p.box[0] = left, p.box[1] = top, p.box[2] = left + w, p.box[3] = top + h;
      p.flip = flip != 0;
    }
    wk_augmenter *a = NULL;
    ck_assert_int_eq(wk_augmenter_create(&cfg, &a), WK_OK);
    uint8_t *u8 = malloc((size_t)ow * (size_t)oh * 3);
    ck_assert_int_eq(wk_augment_apply(a, &src, src.width, src.height, &p, NULL, u8), WK_OK);
    wk_image got = {0}, ref = {0};
    u8_to_image(u8, ow, oh, &got);
    char *ref_path = wkt_fixture(r->expect);
    wkt_read_ppm(ref_path, &ref);
    int diff = wkt_image_max_diff(&got, &ref);
    ck_assert_msg(diff >= 0 && diff <= r->max_diff, "%s %s: max difference %d from %s",
                  r->check, r->args, diff, r->expect);
    free(ref_path);
    wk_image_free(&got);
    wk_image_free(&ref);
    free(u8);
    wk_augmenter_destroy(a);
  }
  wk_image_free(&src);
  free(src_path);
}
END_TEST

START_TEST(test_random_resized_crop_params) {
  wk_augment_cfg cfg = wk_augment_cfg_train(16);
  int flips = 0;
  for (int64_t s = 0; s < 2000; s++) {
    wk_augment_params p, q;
    ck_assert_int_eq(wk_augment_plan(&cfg, 120, 80, 7, 3, s, &p), WK_OK);
    ck_assert_int_eq(wk_augment_plan(&cfg, 120, 80, 7, 3, s, &q), WK_OK);
    ck_assert(!memcmp(&p, &q, sizeof p)); /* a function of (seed, epoch, sample) */
    double w = p.box[2] - p.box[0], h = p.box[3] - p.box[1];
    ck_assert(p.box[0] >= 0 && p.box[1] >= 0 && p.box[2] <= 120 && p.box[3] <= 80);
    ck_assert(w >= 1 && h >= 1 && w == floor(w) && h == floor(h));
    /* area and ratio within range, up to the rounding of w and h; or the
     * centre fallback (the whole 3:2 image clipped to ratio 4/3) */
    bool fallback = w == 107 && h == 80;
    ck_assert_msg(fallback || (w * h >= 0.08 * 9600 * 0.8 && w / h <= 4.0 / 3 * 1.15 &&
                               w / h >= 0.75 / 1.15),
                  "box %g x %g", w, h);
    flips += p.flip;
    ck_assert_float_eq(p.angle_deg, 0.0f);
  }
  ck_assert_int_gt(flips, 900);
  ck_assert_int_lt(flips, 1100);
  /* the fallback: no crop of the whole area can have ratio 1 on a 3:2 image */
  cfg.scale_min = cfg.scale_max = 1.0f;
  cfg.ratio_min = cfg.ratio_max = 1.0f;
  wk_augment_params p, q;
  ck_assert_int_eq(wk_augment_plan(&cfg, 120, 80, 7, 3, 0, &p), WK_OK);
  ck_assert_double_eq(p.box[0], 20);
  ck_assert_double_eq(p.box[2], 100);
  ck_assert_double_eq(p.box[3] - p.box[1], 80);
  /* epochs and samples give different crops */
  cfg = wk_augment_cfg_train(16);
  ck_assert_int_eq(wk_augment_plan(&cfg, 120, 80, 7, 3, 0, &p), WK_OK);
  ck_assert_int_eq(wk_augment_plan(&cfg, 120, 80, 7, 4, 0, &q), WK_OK);
  ck_assert(memcmp(p.box, q.box, sizeof p.box) != 0);
  cfg.scale_min = 0;
  ck_assert_int_eq(wk_augment_cfg_check(&cfg), WK_ERR_INVALID_ARG);
}
END_TEST

/* Runs one sample through apply with params p; returns u8 and f32 outputs. */
static void run_apply(const wk_augment_cfg *cfg, const wk_image *src, const wk_augment_params *p,
                      float *f32, uint8_t *u8) {
  wk_augmenter *a = NULL;
  ck_assert_int_eq(wk_augmenter_create(cfg, &a), WK_OK);
  ck_assert_msg(wk_augment_apply(a, src, src->width, src->height, p, f32, u8) == WK_OK, "%s",
                wk_last_error());
  wk_augmenter_destroy(a);
}

static float grey(const float *v) { return 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2]; }

START_TEST(test_colour_jitter_properties) {
  enum { S = 24, N = S * S * 3 };
  wk_image src = {0};
  wkt_make_image(&src, 60, 40, 9);
  /* keep values away from 0 and 255 so that no clamping hides the maths */
  for (size_t i = 0; i < src.stride_bytes * 40; i++) src.data[i] = (uint8_t)(64 + src.data[i] / 2);
  wk_augment_cfg cfg = wk_augment_cfg_train(S);
  for (int i = 0; i < 3; i++) cfg.mean[i] = 0.0f, cfg.std[i] = 1.0f; /* f32 = v in [0, 1] */
  wk_augment_params base;
  ck_assert_int_eq(wk_augment_plan(&cfg, 60, 40, 1, 0, 5, &base), WK_OK);
  float *plain = malloc(N * sizeof *plain), *out = malloc(N * sizeof *out);
  uint8_t *u8 = malloc(N);
  run_apply(&cfg, &src, &base, plain, u8);
  for (int i = 0; i < N; i++) /* u8 and f32 outputs agree */
    ck_assert_float_eq_tol(plain[i], u8[i] / 255.0f, 0.5f / 255.0f + 1e-6f);

  wk_augment_params p = base;
  p.factor[WK_JITTER_BRIGHTNESS] = 1.3f;
  run_apply(&cfg, &src, &p, out, NULL);
  for (int i = 0; i < N; i++) ck_assert_float_eq_tol(out[i], fminf(1.0f, 1.3f * plain[i]), 1e-5f);

  p = base;
  p.factor[WK_JITTER_SATURATION] = 0.0f; /* fully grey */
  run_apply(&cfg, &src, &p, out, NULL);
  for (int i = 0; i < N; i += 3) {
    ck_assert_float_eq_tol(out[i], out[i + 1], 1e-5f);
    ck_assert_float_eq_tol(out[i], grey(plain + i), 1e-5f);
  }

  p = base;
  p.factor[WK_JITTER_CONTRAST] = 0.5f; /* halfway to the grey mean: the mean stays */
  run_apply(&cfg, &src, &p, out, NULL);
  double g_in = 0, g_out = 0;
  for (int i = 0; i < N; i += 3) g_in += grey(plain + i), g_out += grey(out + i);
  ck_assert_double_eq_tol(g_in, g_out, 1e-2);

  p = base;
  p.factor[WK_JITTER_HUE] = 0.2f; /* a hue turn keeps the grey value of unclamped pixels */
  run_apply(&cfg, &src, &p, out, NULL);
  int unclamped = 0;
  for (int i = 0; i < N; i += 3) {
    bool inside = true;
    for (int c = 0; c < 3; c++) inside &= out[i + c] > 0.0f && out[i + c] < 1.0f;
    if (!inside) continue;
    unclamped++;
    ck_assert_float_eq_tol(grey(out + i), grey(plain + i), 1e-4f);
  }
  ck_assert_int_gt(unclamped, N / 3 / 2);

  /* +1/6 turn moves pure red towards yellow, -1/6 towards magenta */
  wk_image red = {0};
  ck_assert_int_eq(wk_image_alloc(&red, 8, 8), WK_OK);
  for (int i = 0; i < 64; i++) {
    red.data[3 * i] = 200;
    red.data[3 * i + 1] = red.data[3 * i + 2] = 30;
  }
  wk_augment_cfg small = cfg;
  small.out_width = small.out_height = 4;
  wk_augment_params r = base;
  r.box[0] = r.box[1] = 0, r.box[2] = r.box[3] = 8;
  r.flip = false;
  float rgb[48];
  r.factor[WK_JITTER_HUE] = 1.0f / 6;
  run_apply(&small, &red, &r, rgb, NULL);
  ck_assert_float_gt(rgb[1], rgb[2] + 0.2f);
  r.factor[WK_JITTER_HUE] = -1.0f / 6;
  run_apply(&small, &red, &r, rgb, NULL);
  ck_assert_float_gt(rgb[2], rgb[1] + 0.2f);

  /* the normalisation */
  wk_augment_cfg norm = wk_augment_cfg_train(S);
  run_apply(&norm, &src, &base, out, NULL);
  for (int i = 0; i < N; i++)
    ck_assert_float_eq_tol(out[i], (plain[i] - norm.mean[i % 3]) / norm.std[i % 3], 1e-4f);
  wk_image_free(&red);
  wk_image_free(&src);
  free(plain);
  free(out);
  free(u8);
}
END_TEST

START_TEST(test_flip_and_rotation_geometry) {
  enum { S = 20, N = S * S * 3 };
  wk_image src = {0};
  wkt_make_image(&src, 50, 50, 2);
  wk_augment_cfg cfg = wk_augment_cfg_train(S);
  wk_augment_params p;
  ck_assert_int_eq(wk_augment_plan(&cfg, 50, 50, 1, 0, 0, &p), WK_OK);
  p.box[0] = 10, p.box[1] = 5, p.box[2] = 40, p.box[3] = 35; /* 30 x 30 inside the picture */
  p.flip = false;
  float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
  run_apply(&cfg, &src, &p, a, NULL);
  p.flip = true;
  run_apply(&cfg, &src, &p, b, NULL);
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      for (int c = 0; c < 3; c++)
        ck_assert_float_eq(a[(y * S + x) * 3 + c], b[(y * S + S - 1 - x) * 3 + c]);
  /* A negligible angle goes through the rotation path and changes nothing,
   * except on the 2-pixel border: the rotation's filters read beyond the
   * box, the plain crop's stop at its edges (crop then resize). */
  p.flip = false;
  p.angle_deg = 1e-4f;
  run_apply(&cfg, &src, &p, b, NULL);
  for (int y = 2; y < S - 2; y++)
    for (int i = 2 * 3; i < (S - 2) * 3; i++)
      ck_assert_float_eq_tol(a[y * S * 3 + i], b[y * S * 3 + i], 0.05f);
  /* a quarter turn of a square crop is the crop turned (bilinear reads at
   * pixel centres then hit pixels exactly) */
  p.angle_deg = 90.0f;
  run_apply(&cfg, &src, &p, b, NULL);
  for (int y = 2; y < S - 2; y++)
    for (int x = 2; x < S - 2; x++)
      for (int c = 0; c < 3; c++)
        ck_assert_float_eq_tol(b[(y * S + x) * 3 + c], a[(x * S + (S - 1 - y)) * 3 + c], 0.05f);
  /* turning the whole picture by 45 degrees leaves its corners black (0 ->
   * -mean/std after normalisation) */
  p.box[0] = p.box[1] = 0, p.box[2] = p.box[3] = 50;
  p.angle_deg = 45.0f;
  run_apply(&cfg, &src, &p, b, NULL);
  for (int c = 0; c < 3; c++)
    ck_assert_float_eq_tol(b[c], -cfg.mean[c] / cfg.std[c], 1e-5f);
  free(a);
  free(b);
  wk_image_free(&src);
}
END_TEST

/* ---------------------------------------------------------------- loader */
/* 23 pictures of assorted sizes and formats in 3 classes. */
static char *loader_fixture(void) {
  char *root = wkt_tempdir();
  const char *cls[3] = {"c0", "c1", "c2"};
  char name[32];
  for (int c = 0; c < 3; c++) {
    char *d = mkdir_in(root, cls[c]);
    for (int i = 0; i < 8 - (c == 2); i++) {
      snprintf(name, sizeof name, "%d.%s", i, (i + c) % 2 ? "png" : "jpg");
      write_picture(d, name, 24 + 7 * i + c, 18 + 5 * ((i * 3 + c) % 7), (uint32_t)(c * 10 + i));
    }
    free(d);
  }
  return root;
}

typedef struct epoch_dump {
  uint8_t *bytes;
  size_t n;
} epoch_dump;

static void dump_put(epoch_dump *d, const void *p, size_t n) {
  d->bytes = realloc(d->bytes, d->n + n);
  ck_assert_ptr_nonnull(d->bytes);
  memcpy(d->bytes + d->n, p, n);
  d->n += n;
}

/* Every batch of `epochs` epochs, all bytes, in order. */
static epoch_dump run_loader(const wk_dataset *ds, wk_loader_cfg cfg, int workers, int epochs) {
  cfg.n_workers = workers;
  wk_loader *ld = NULL;
  ck_assert_msg(wk_loader_create(ds, &cfg, &ld) == WK_OK, "%s", wk_last_error());
  epoch_dump d = {0};
  int64_t n = wk_dataset_size(ds);
  for (int e = 0; e < epochs; e++) {
    ck_assert_int_eq(wk_loader_start_epoch(ld, e), WK_OK);
    int *seen = calloc((size_t)n, sizeof *seen);
    const wk_batch *b;
    int64_t batches = 0;
    while (wk_loader_next_batch(ld, &b) == WK_OK && b) {
      ck_assert_int_eq(b->index, batches++);
      ck_assert_int_eq(b->epoch, e);
      ck_assert_int_eq((b->images.data ? &b->images : &b->images_u8)->shape[0], b->n);
      if (b->images.data) dump_put(&d, b->images.data, wk_tensor_nbytes(&b->images));
      if (b->images_u8.data) dump_put(&d, b->images_u8.data, wk_tensor_nbytes(&b->images_u8));
      dump_put(&d, b->labels.data, wk_tensor_nbytes(&b->labels));
      dump_put(&d, b->samples, (size_t)b->n * sizeof *b->samples);
      for (int64_t i = 0; i < b->n; i++) {
        seen[b->samples[i]]++;
        ck_assert_int_eq(((int32_t *)b->labels.data)[i], wk_dataset_label(ds, b->samples[i]));
      }
    }
    ck_assert_int_eq(batches, wk_loader_batches_per_epoch(ld));
    for (int64_t i = 0; i < n && !cfg.drop_last; i++) ck_assert_int_eq(seen[i], 1);
    free(seen);
  }
  wk_loader_destroy(ld);
  return d;
}

START_TEST(test_loader_identical_for_1_2_4_workers) {
  char *root = loader_fixture();
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_OK);
  ck_assert_int_eq(wk_dataset_size(ds), 23);
  wk_loader_cfg cfg = wk_loader_cfg_train(16, 5, 1, 42);
  cfg.drop_last = false; /* 4 full batches and one of 3 */
  cfg.want_u8 = true;
  cfg.prefetch = 3;
  cfg.aug.brightness = cfg.aug.contrast = cfg.aug.saturation = 0.4f;
  cfg.aug.hue = 0.1f;
  cfg.aug.rotate_deg = 10.0f;
  epoch_dump one = run_loader(ds, cfg, 1, 2);
  epoch_dump two = run_loader(ds, cfg, 2, 2);
  epoch_dump four = run_loader(ds, cfg, 4, 2);
  ck_assert_uint_gt(one.n, 0);
  ck_assert_uint_eq(one.n, two.n);
  ck_assert_uint_eq(one.n, four.n);
  ck_assert(!memcmp(one.bytes, two.bytes, one.n));
  ck_assert(!memcmp(one.bytes, four.bytes, one.n));
  /* the two epochs differ (order and augmentation) */
  ck_assert(memcmp(one.bytes, one.bytes + one.n / 2, one.n / 2) != 0);
  /* evaluation order is the dataset's */
  wk_loader_cfg ev = wk_loader_cfg_eval(16, 4, 2);
  wk_loader *ld = NULL;
  ck_assert_int_eq(wk_loader_create(ds, &ev, &ld), WK_OK);
  ck_assert_int_eq(wk_loader_start_epoch(ld, 0), WK_OK);
  const wk_batch *b;
  int64_t next = 0;
  while (wk_loader_next_batch(ld, &b) == WK_OK && b)
    for (int64_t i = 0; i < b->n; i++) ck_assert_int_eq(b->samples[i], next++);
  ck_assert_int_eq(next, 23);
  wk_loader_destroy(ld);
  free(one.bytes);
  free(two.bytes);
  free(four.bytes);
  wk_dataset_free(ds);
  wkt_rmtree(root);
  free(root);
}
END_TEST

/* A ring of batches larger than half the memory the system has available
 * is refused when the loader is made, with a message, before its batches are
 * allocated and zeroed (Linux would hand them out and kill the process, or
 * swap, as the pages were touched). Two batches of 8192-px images, 4 GB past
 * MemAvailable so that other tests freeing memory cannot make room; skipped
 * where there is no /proc/meminfo or one batch would pass the tensor limit. */
START_TEST(test_loader_refuses_a_ring_past_memory) {
  const size_t avail = wkt_mem_available();
  const size_t image = (size_t)8192 * 8192 * 3 * sizeof(float);
  const size_t batch = (avail + ((size_t)4 << 30)) / (2 * image) + 1;
  if (!avail || batch * image > ((size_t)1 << 36)) return;
  char *root = loader_fixture();
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_OK);
  wk_loader_cfg cfg = wk_loader_cfg_eval(8192, (int)batch, 1);
  cfg.prefetch = 2;
  wk_loader *ld = NULL;
  ck_assert_int_eq(wk_loader_create(ds, &cfg, &ld), WK_ERR_NOMEM);
  ck_assert_ptr_null(ld);
  ck_assert_msg(strstr(wk_last_error(), "MB available); try a smaller --batch or --size") &&
                    strstr(wk_last_error(), "2 batches of"),
                "%s", wk_last_error());
  cfg = wk_loader_cfg_eval(16, 4, 1); /* and a loader that fits is made */
  ck_assert_int_eq(wk_loader_create(ds, &cfg, &ld), WK_OK);
  wk_loader_destroy(ld);
  wk_dataset_free(ds);
  wkt_rmtree(root);
  free(root);
}
END_TEST

/* Data parallelism: R shards of batch B together give, step by step, exactly
 * the batches of batch R * B in one loader (samples, pixels, labels), with
 * drop_last; without it the shards deal the batch-sized chunks round-robin
 * and cover every sample once. */
START_TEST(test_loader_shards_equal_one_big_batch) {
  char *root = loader_fixture();
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_OK);
  const int64_t n = wk_dataset_size(ds); /* 23 */
  for (int ranks = 2; ranks <= 3; ranks++) {
    const int b = 3;
    wk_loader_cfg big = wk_loader_cfg_train(16, b * ranks, 2, 7);
    big.aug.brightness = 0.3f;
    wk_loader *whole = NULL, *part[3] = {NULL, NULL, NULL};
    ck_assert_int_eq(wk_loader_create(ds, &big, &whole), WK_OK);
    for (int r = 0; r < ranks; r++) {
      wk_loader_cfg c = wk_loader_cfg_train(16, b, 1, 7);
      c.aug.brightness = 0.3f;
      c.shard_index = r;
      c.shard_count = ranks;
      ck_assert_msg(wk_loader_create(ds, &c, &part[r]) == WK_OK, "%s", wk_last_error());
      ck_assert_int_eq(wk_loader_batches_per_epoch(part[r]), n / (b * ranks));
    }
    for (int e = 0; e < 2; e++) {
      ck_assert_int_eq(wk_loader_start_epoch(whole, e), WK_OK);
      for (int r = 0; r < ranks; r++) ck_assert_int_eq(wk_loader_start_epoch(part[r], e), WK_OK);
      const wk_batch *w, *p;
      int64_t steps = 0;
      while (wk_loader_next_batch(whole, &w) == WK_OK && w) {
        const size_t img = wk_tensor_nbytes(&w->images) / (size_t)w->n;
        for (int r = 0; r < ranks; r++) {
          ck_assert_int_eq(wk_loader_next_batch(part[r], &p), WK_OK);
          ck_assert_ptr_nonnull(p);
          ck_assert_int_eq(p->n, b);
          for (int i = 0; i < b; i++) ck_assert_int_eq(p->samples[i], w->samples[r * b + i]);
          ck_assert(!memcmp(p->images.data, (const char *)w->images.data + (size_t)(r * b) * img,
                            (size_t)b * img));
        }
        steps++;
      }
      ck_assert_int_eq(steps, n / (b * ranks));
      for (int r = 0; r < ranks; r++) {
        ck_assert_int_eq(wk_loader_next_batch(part[r], &p), WK_OK);
        ck_assert_ptr_null(p);
      }
    }
    wk_loader_destroy(whole);
    for (int r = 0; r < ranks; r++) wk_loader_destroy(part[r]);
    /* evaluation: chunk c goes to rank c % R; together every sample once, in order */
    int64_t next_chunk[3] = {0, 1, 2}, covered = 0;
    for (int r = 0; r < ranks; r++) {
      wk_loader_cfg ev = wk_loader_cfg_eval(16, 4, 1);
      ev.shard_index = r;
      ev.shard_count = ranks;
      wk_loader *ld = NULL;
      ck_assert_int_eq(wk_loader_create(ds, &ev, &ld), WK_OK);
      ck_assert_int_eq(wk_loader_start_epoch(ld, 0), WK_OK);
      const wk_batch *bt;
      while (wk_loader_next_batch(ld, &bt) == WK_OK && bt) {
        for (int64_t i = 0; i < bt->n; i++)
          ck_assert_int_eq(bt->samples[i], next_chunk[r] * 4 + i);
        covered += bt->n;
        next_chunk[r] += ranks;
      }
      wk_loader_destroy(ld);
    }
    ck_assert_int_eq(covered, n);
  }
  /* a shard outside the world, and too few samples for one global batch */
  wk_loader_cfg bad = wk_loader_cfg_train(16, 4, 1, 7);
  bad.shard_index = 2;
  bad.shard_count = 2;
  wk_loader *ld = NULL;
  ck_assert_int_eq(wk_loader_create(ds, &bad, &ld), WK_ERR_INVALID_ARG);
  bad.shard_index = 0;
  bad.shard_count = 8; /* 8 x 4 > 23 */
  ck_assert_int_eq(wk_loader_create(ds, &bad, &ld), WK_ERR_INVALID_ARG);
  ck_assert_msg(strstr(wk_last_error(), "over all ranks") != NULL, "%s", wk_last_error());
  wk_dataset_free(ds);
  wkt_rmtree(root);
  free(root);
}
END_TEST

START_TEST(test_loader_restart_and_shutdown_mid_epoch) {
  char *root = loader_fixture();
  wk_dataset_opts o = quiet_opts(false);
  wk_dataset *ds = NULL;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_OK);
  wk_loader_cfg cfg = wk_loader_cfg_train(16, 4, 2, 3);
  wk_loader *ld = NULL;
  /* destroyed before any epoch */
  ck_assert_int_eq(wk_loader_create(ds, &cfg, &ld), WK_OK);
  const wk_batch *b = NULL;
  ck_assert_int_eq(wk_loader_next_batch(ld, &b), WK_ERR_INVALID_ARG);
  wk_loader_destroy(ld);
  /* one batch of epoch 0, then epoch 1 restarted over it: epoch 1 is what a
   * fresh loader gives */
  epoch_dump fresh = run_loader(ds, cfg, 2, 2);
  ck_assert_int_eq(wk_loader_create(ds, &cfg, &ld), WK_OK);
  ck_assert_int_eq(wk_loader_start_epoch(ld, 1), WK_OK);
  ck_assert_int_eq(wk_loader_next_batch(ld, &b), WK_OK);
  ck_assert_int_eq(wk_loader_start_epoch(ld, 1), WK_OK);
  epoch_dump again = {0};
  while (wk_loader_next_batch(ld, &b) == WK_OK && b) {
    dump_put(&again, b->images.data, wk_tensor_nbytes(&b->images));
    dump_put(&again, b->labels.data, wk_tensor_nbytes(&b->labels));
    dump_put(&again, b->samples, (size_t)b->n * sizeof *b->samples);
  }
  ck_assert_uint_eq(again.n, fresh.n / 2);
  ck_assert_ptr_nonnull(again.bytes); /* epoch 1 gave batches: memcmp of nothing would pass */
  ck_assert(!memcmp(again.bytes, fresh.bytes + fresh.n / 2, again.n));
  /* after the end, NULL again */
  ck_assert_int_eq(wk_loader_next_batch(ld, &b), WK_OK);
  ck_assert_ptr_null(b);
  /* destroyed mid-epoch with the ring full */
  ck_assert_int_eq(wk_loader_start_epoch(ld, 2), WK_OK);
  ck_assert_int_eq(wk_loader_next_batch(ld, &b), WK_OK);
  ck_assert_ptr_nonnull(b);
  nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL); /* let the ring fill */
  wk_loader_destroy(ld);
  /* a dataset smaller than one batch with drop_last */
  cfg.batch_size = 64;
  ck_assert_int_eq(wk_loader_create(ds, &cfg, &ld), WK_ERR_INVALID_ARG);
  free(fresh.bytes);
  free(again.bytes);
  wk_dataset_free(ds);
  wkt_rmtree(root);
  free(root);
}
END_TEST

/* Peeking (a GPU trainer uploads the next batch while the current one
 * computes): with the smallest ring, the batch held stays as it was, the peeked
 * one is what the next call returns, unchanged, and the epoch's bytes are
 * those of a loader nobody peeks into. */
START_TEST(test_loader_peek_keeps_the_current_batch) {
  char *root = loader_fixture();
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_OK);
  wk_loader_cfg cfg = wk_loader_cfg_train(16, 5, 1, 9);
  cfg.drop_last = false;
  cfg.want_u8 = true;
  cfg.want_f32 = false;
  cfg.prefetch = 2;
  for (int workers = 1; workers <= 3; workers += 2) {
    epoch_dump plain = run_loader(ds, cfg, workers, 2);
    cfg.n_workers = workers;
    wk_loader *ld = NULL;
    ck_assert_int_eq(wk_loader_create(ds, &cfg, &ld), WK_OK);
    const wk_batch *b = NULL, *p = NULL;
    ck_assert_int_eq(wk_loader_peek_batch(ld, &p), WK_ERR_INVALID_ARG); /* no epoch yet */
    epoch_dump peeked = {0};
    for (int e = 0; e < 2; e++) {
      ck_assert_int_eq(wk_loader_start_epoch(ld, e), WK_OK);
      ck_assert_int_eq(wk_loader_peek_batch(ld, &p), WK_OK); /* before the first */
      ck_assert_ptr_nonnull(p);
      ck_assert_int_eq(p->index, 0);
      int64_t batches = 0;
      while (wk_loader_next_batch(ld, &b) == WK_OK && b) {
        ck_assert_ptr_eq(b, p); /* what the peek showed */
        ck_assert_int_eq(b->index, batches++);
        const size_t nb = wk_tensor_nbytes(&b->images_u8);
        unsigned char *held = malloc(nb);
        memcpy(held, b->images_u8.data, nb);
        const int64_t first = b->samples[0];
        ck_assert_int_eq(wk_loader_peek_batch(ld, &p), WK_OK);
        const wk_batch *again = NULL;
        ck_assert_int_eq(wk_loader_peek_batch(ld, &again), WK_OK); /* idempotent */
        ck_assert_ptr_eq(again, p);
        if (batches < wk_loader_batches_per_epoch(ld)) {
          ck_assert_ptr_nonnull(p);
          ck_assert_ptr_ne(p, b);
          ck_assert_int_eq(p->index, b->index + 1);
        } else {
          ck_assert_ptr_null(p); /* the epoch's end */
        }
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL); /* workers run ahead */
        ck_assert(!memcmp(held, b->images_u8.data, nb)); /* still this batch's pixels */
        ck_assert_int_eq(b->samples[0], first);
        free(held);
        dump_put(&peeked, b->images_u8.data, nb);
        dump_put(&peeked, b->labels.data, wk_tensor_nbytes(&b->labels));
        dump_put(&peeked, b->samples, (size_t)b->n * sizeof *b->samples);
      }
      ck_assert_int_eq(batches, wk_loader_batches_per_epoch(ld));
    }
    wk_loader_destroy(ld);
    ck_assert_uint_gt(peeked.n, 0);
    ck_assert_uint_eq(peeked.n, plain.n);
    ck_assert(!memcmp(peeked.bytes, plain.bytes, plain.n));
    free(peeked.bytes);
    free(plain.bytes);
  }
  wk_dataset_free(ds);
  wkt_rmtree(root);
  free(root);
}
END_TEST

START_TEST(test_loader_substitutes_files_broken_after_the_scan) {
  char *root = wkt_tempdir();
  char *a = mkdir_in(root, "a"), *b = mkdir_in(root, "b");
  write_picture(a, "0.png", 20, 20, 0);
  write_picture(a, "1.png", 20, 20, 1);
  write_picture(a, "2.png", 20, 20, 2);
  write_picture(b, "3.png", 20, 20, 3);
  write_picture(b, "4.png", 20, 20, 4);
  write_picture(b, "5.png", 20, 20, 5);
  wk_dataset_opts o = quiet_opts(true);
  wk_dataset *ds = NULL;
  ck_assert_int_eq(wk_dataset_open_folder(root, &o, &ds), WK_OK);
  /* after the scan: sample 1 is garbage, sample 2 is gone */
  char *p1 = wkt_join(a, "1.png", NULL), *p2 = wkt_join(a, "2.png", NULL);
  wkt_write_file(p1, "garbage", 7);
  ck_assert_int_eq(remove(p2), 0);
  wk_loader_cfg cfg = wk_loader_cfg_eval(8, 6, 2);
  wk_loader *ld = NULL;
  ck_assert_int_eq(wk_loader_create(ds, &cfg, &ld), WK_OK);
  for (int e = 0; e < 2; e++) {
    ck_assert_int_eq(wk_loader_start_epoch(ld, e), WK_OK);
    const wk_batch *bt = NULL;
    ck_assert_msg(wk_loader_next_batch(ld, &bt) == WK_OK && bt, "%s", wk_last_error());
    ck_assert_int_eq(bt->n, 6);
    ck_assert_int_eq(bt->n_substituted, 2);
    /* samples 1 and 2 are replaced by the next one that loads: 3 */
    const int64_t want[6] = {0, 3, 3, 3, 4, 5};
    for (int i = 0; i < 6; i++) {
      ck_assert_int_eq(bt->samples[i], want[i]);
      ck_assert_int_eq(((int32_t *)bt->labels.data)[i], wk_dataset_label(ds, want[i]));
    }
  }
  ck_assert_int_eq(wk_loader_n_substituted(ld), 4);
  wk_loader_destroy(ld);
  /* when every file is broken, the loader says so instead of spinning */
  for (int64_t i = 0; i < wk_dataset_size(ds); i++) wkt_write_file(wk_dataset_path(ds, i), "x", 1);
  ck_assert_int_eq(wk_loader_create(ds, &cfg, &ld), WK_OK);
  ck_assert_int_eq(wk_loader_start_epoch(ld, 0), WK_OK);
  const wk_batch *bt = NULL;
  ck_assert_int_eq(wk_loader_next_batch(ld, &bt), WK_ERR_FORMAT);
  ck_assert_msg(strstr(wk_last_error(), "failed to load"), "%s", wk_last_error());
  wk_loader_destroy(ld);
  wk_dataset_free(ds);
  free(p1);
  free(p2);
  wkt_rmtree(root);
  free(a);
  free(b);
  free(root);
}
END_TEST

int main(void) {
  wk_log_set_level(WK_LOG_ERROR); /* the bad files' warnings are expected */
  Suite *s = suite_create("data");
  TCase *tc = tcase_create("data");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_folder_scan_order_hidden_and_extensions);
  tcase_add_test(tc, test_bad_files_reported_once_and_skipped);
  tcase_add_test(tc, test_empty_class_and_empty_dataset_are_errors);
  tcase_add_test(tc, test_csv_list_quoting_and_bad_rows);
  tcase_add_test(tc, test_split_is_stratified);
  tcase_add_test(tc, test_split_membership_depends_on_seed_only);
  tcase_add_test(tc, test_split_from_train_and_val_folders);
  tcase_add_test(tc, test_augment_geometry_matches_torchvision);
  tcase_add_test(tc, test_random_resized_crop_params);
  tcase_add_test(tc, test_colour_jitter_properties);
  tcase_add_test(tc, test_flip_and_rotation_geometry);
  tcase_add_test(tc, test_loader_identical_for_1_2_4_workers);
  tcase_add_test(tc, test_loader_refuses_a_ring_past_memory);
  tcase_add_test(tc, test_loader_shards_equal_one_big_batch);
  tcase_add_test(tc, test_loader_restart_and_shutdown_mid_epoch);
  tcase_add_test(tc, test_loader_substitutes_files_broken_after_the_scan);
  tcase_add_test(tc, test_loader_peek_keeps_the_current_batch);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
