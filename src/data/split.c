/* split.c - training and validation sets: a stratified, seeded split of one
 * set, or the train/ and val/ folders of a root. */
#include "data/dataset_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "data/stream.h"

/* A deep copy of ds's classes into dst. */
static wk_status wk_copy_classes(wk_dataset *dst, const wk_dataset *src) {
  char **names = calloc((size_t)(src->n_classes ? src->n_classes : 1), sizeof *names);
  bool ok = names != NULL;
  for (int c = 0; ok && c < src->n_classes; c++) ok = (names[c] = wk_strdup(src->classes[c]));
  if (!ok) {
    for (int c = 0; names && c < src->n_classes; c++) free(names[c]);
    free(names);
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory", src->source);
  }
  wk_dataset_set_classes(dst, names, src->n_classes);
  return WK_OK;
}

/* Marks which samples go to validation: per class, a Fisher-Yates shuffle of
 * the class's samples from stream (seed, class), the first n_val of it. */
static wk_status wk_choose_val(const wk_dataset *ds, double val_pct, uint64_t seed,
                               uint8_t *to_val) {
  int64_t *idx = malloc((size_t)(ds->n_samples ? ds->n_samples : 1) * sizeof *idx);
  if (!idx) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
  for (int c = 0; c < ds->n_classes; c++) {
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n_samples; i++)
      if (ds->samples[i].label == c) idx[n++] = i;
    int64_t n_val = (int64_t)(n * val_pct / 100.0 + 0.5);
    if (val_pct > 0 && n >= 2) n_val = n_val < 1 ? 1 : n_val > n - 1 ? n - 1 : n_val;
    if (n < 2) n_val = 0; /* a class of one image trains on it (none left to learn from else) */
    wk_rng r = wk_rng_make(seed, wk_stream_split((uint32_t)c));
    for (int64_t i = 0; i < n_val; i++) {
      /* partial Fisher-Yates: position i takes a random one of [i, n) */
      int64_t j = i + (int64_t)wk_rng_below(&r, (uint32_t)(n - i));
      int64_t t = idx[i];
      idx[i] = idx[j];
      idx[j] = t;
      to_val[idx[i]] = 1;
    }
  }
  free(idx);
  return WK_OK;
}

static wk_status wk_subset(const wk_dataset *ds, const uint8_t *to_val, uint8_t want,
                           const char *suffix, bool with_bad, wk_dataset **out) {
  *out = NULL;
  size_t n = strlen(ds->source) + strlen(suffix) + 1;
  char *name = malloc(n);
  if (!name) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
  snprintf(name, n, "%s%s", ds->source, suffix);
  wk_dataset *sub = NULL;
  wk_status s = wk_dataset_new(name, &sub);
  free(name);
  if (s == WK_OK) s = wk_copy_classes(sub, ds);
  for (int64_t i = 0; s == WK_OK && i < ds->n_samples; i++)
    if (to_val[i] == want) s = wk_dataset_push(sub, wk_strdup(ds->samples[i].path),
                                               ds->samples[i].label);
  if (s == WK_OK && with_bad && ds->n_bad > 0) {
    /* copied without logging again: it was reported when ds was opened */
    sub->bad = calloc((size_t)ds->n_bad, sizeof *sub->bad);
    if (!sub->bad) s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
    else sub->cap_bad = ds->n_bad;
  }
  for (int64_t i = 0; s == WK_OK && with_bad && i < ds->n_bad; i++) {
    wk_bad_file *b = &sub->bad[sub->n_bad++];
    b->path = wk_strdup(ds->bad[i].path);
    b->reason = wk_strdup(ds->bad[i].reason);
    if (!b->path || !b->reason) s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
  }
  if (s == WK_OK) sub->n_ignored = with_bad ? ds->n_ignored : 0;
  if (s != WK_OK) wk_dataset_free(sub);
  else *out = sub;
  return s;
}

wk_status wk_dataset_split(const wk_dataset *ds, double val_pct, uint64_t seed,
                           wk_dataset **train, wk_dataset **val) {
  *train = *val = NULL;
  if (!(val_pct >= 0.0 && val_pct < 100.0))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: validation percentage %g (0 <= pct < 100)",
                   ds->source, val_pct);
  uint8_t *to_val = calloc((size_t)(ds->n_samples ? ds->n_samples : 1), 1);
  if (!to_val) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
  wk_status s = wk_choose_val(ds, val_pct, seed, to_val);
  if (s == WK_OK) s = wk_subset(ds, to_val, 0, " (train split)", true, train);
  if (s == WK_OK) s = wk_subset(ds, to_val, 1, " (validation split)", false, val);
  free(to_val);
  if (s != WK_OK) {
    wk_dataset_free(*train);
    *train = NULL;
  }
  return s;
}

static bool wk_is_dir(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The folder of root's validation set, root/val or root/validation, when
 * root/train exists too; else NULL. *train_dir is root/train when that is a
 * folder, else NULL. */
static char *wk_val_folder(const char *root, char **train_dir) {
  *train_dir = wk_path_join(root, "train");
  if (!wk_is_dir(*train_dir)) {
    free(*train_dir);
    *train_dir = NULL;
    return NULL;
  }
  const char *names[] = {"val", "validation"};
  for (int i = 0; i < 2; i++) {
    char *v = wk_path_join(root, names[i]);
    if (wk_is_dir(v)) return v;
    free(v);
  }
  return NULL;
}

char *wk_dataset_val_folder(const char *root) {
  char *train_dir = NULL;
  char *val = wk_val_folder(root, &train_dir);
  free(train_dir);
  return val;
}

wk_status wk_dataset_open_split(const char *root, const wk_dataset_opts *opts,
                                wk_dataset **train, wk_dataset **val) {
  wk_dataset_opts o = opts ? *opts : wk_dataset_opts_default();
  *train = *val = NULL;
  char *train_dir = NULL;
  char *val_dir = wk_val_folder(root, &train_dir);
  wk_status s;
  if (val_dir) {
    s = wk_dataset_open_folder(train_dir, &o, train);
    wk_dataset *v = NULL;
    if (s == WK_OK) s = wk_dataset_new(val_dir, &v);
    if (s == WK_OK) s = wk_copy_classes(v, *train);
    if (s == WK_OK) s = wk_folder_scan(v, val_dir, (*train)->classes, (*train)->n_classes);
    if (s == WK_OK) {
      s = wk_dataset_finish(v, &o, val); /* frees v on failure */
    } else {
      wk_dataset_free(v);
    }
  } else {
    /* root/train alone, or root itself, is the folder per class */
    wk_dataset *all = NULL;
    s = wk_dataset_open_folder(train_dir ? train_dir : root, &o, &all);
    if (s == WK_OK && o.val_pct > 0) s = wk_dataset_split(all, o.val_pct, o.seed, train, val);
    else if (s == WK_OK) *train = all, all = NULL;
    wk_dataset_free(all);
  }
  if (s != WK_OK) {
    wk_dataset_free(*train);
    *train = NULL;
  }
  free(train_dir);
  free(val_dir);
  return s;
}
