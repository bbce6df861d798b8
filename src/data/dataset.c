/* dataset.c - building and reading a dataset: samples, classes, the bad-file
 * list, and the checks every way of opening one ends with. */
#include "data/dataset_impl.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

wk_dataset_opts wk_dataset_opts_default(void) {
  wk_dataset_opts o = {.prescan = true, .n_threads = 0, .val_pct = 0.0, .seed = 0};
  return o;
}

char *wk_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

char *wk_path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t at = a;
  if (a > 0 && dir[a - 1] != '/') p[at++] = '/';
  memcpy(p + at, name, b + 1);
  return p;
}

int wk_strcmp_ptr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

wk_status wk_dataset_new(const char *source, wk_dataset **out) {
  *out = NULL;
  wk_dataset *ds = calloc(1, sizeof *ds);
  if (!ds || !(ds->source = wk_strdup(source))) {
    free(ds);
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory", source);
  }
  *out = ds;
  return WK_OK;
}

static bool wk_grow_array(void **p, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return true;
  int64_t c = *cap ? *cap * 2 : 64;
  while (c < need) c *= 2;
  void *q = realloc(*p, (size_t)c * elem);
  if (!q) return false;
  *p = q;
  *cap = c;
  return true;
}

wk_status wk_dataset_push(wk_dataset *ds, char *path, int32_t label) {
  void *arr = ds->samples;
  if (!path || !wk_grow_array(&arr, &ds->cap_samples, ds->n_samples + 1, sizeof(wk_sample))) {
    free(path);
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
  }
  ds->samples = arr;
  ds->samples[ds->n_samples++] = (wk_sample){.path = path, .label = label};
  return WK_OK;
}

wk_status wk_dataset_push_bad(wk_dataset *ds, const char *path, const char *reason) {
  reason = wk_error_after_path(reason, path);
  WK_LOG_W("skipping %s: %s", path, reason);
  void *arr = ds->bad;
  if (!wk_grow_array(&arr, &ds->cap_bad, ds->n_bad + 1, sizeof(wk_bad_file)))
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
  ds->bad = arr;
  wk_bad_file b = {.path = wk_strdup(path), .reason = wk_strdup(reason)};
  if (!b.path || !b.reason) {
    free(b.path);
    free(b.reason);
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
  }
  ds->bad[ds->n_bad++] = b;
  return WK_OK;
}

void wk_dataset_set_classes(wk_dataset *ds, char **names, int n) {
  for (int i = 0; i < ds->n_classes; i++) free(ds->classes[i]);
  free(ds->classes);
  ds->classes = names;
  ds->n_classes = n;
}

void wk_dataset_free(wk_dataset *ds) {
  if (!ds) return;
  for (int64_t i = 0; i < ds->n_samples; i++) free(ds->samples[i].path);
  for (int64_t i = 0; i < ds->n_bad; i++) {
    free(ds->bad[i].path);
    free(ds->bad[i].reason);
  }
  wk_dataset_set_classes(ds, NULL, 0);
  free(ds->absent);
  free(ds->samples);
  free(ds->bad);
  free(ds->source);
  free(ds);
}

/* Every class must keep at least one usable image. */
static wk_status wk_dataset_check_classes(const wk_dataset *ds) {
  if (ds->n_classes == 0) return wk_fail(WK_ERR_FORMAT, "%s: no classes found", ds->source);
  int64_t *count = calloc((size_t)ds->n_classes, sizeof *count);
  if (!count) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", ds->source);
  for (int64_t i = 0; i < ds->n_samples; i++) count[ds->samples[i].label]++;
  wk_status s = WK_OK;
  if (ds->n_samples == 0 && ds->n_bad == 0) {
    s = wk_fail(WK_ERR_FORMAT, "%s: no image files (" WK_IMAGE_EXTS ") in its %d class folder%s",
                ds->source, ds->n_classes, ds->n_classes == 1 ? "" : "s");
  } else if (ds->n_samples == 0) {
    s = wk_fail(WK_ERR_FORMAT, "%s: no usable images (%lld file%s left out, see the warnings "
                "above)", ds->source, (long long)ds->n_bad, ds->n_bad == 1 ? "" : "s");
  } else {
    for (int c = 0; c < ds->n_classes && s == WK_OK; c++)
      if (count[c] == 0 && !(ds->absent && ds->absent[c]))
        s = wk_fail(WK_ERR_FORMAT, "%s: class '%s' has no usable images%s", ds->source,
                    ds->classes[c], ds->n_bad ? " (files were left out, see the warnings above)"
                                              : "");
  }
  free(count);
  return s;
}

wk_status wk_dataset_finish(wk_dataset *ds, const wk_dataset_opts *o, wk_dataset **out) {
  wk_status s = WK_OK;
  if (o->prescan) s = wk_dataset_prescan(ds, o);
  if (s == WK_OK) s = wk_dataset_check_classes(ds);
  if (s != WK_OK) {
    wk_dataset_free(ds);
    return s;
  }
  if (ds->n_ignored)
    WK_LOG_I("%s: ignored %lld file%s that %s not " WK_IMAGE_EXTS, ds->source,
             (long long)ds->n_ignored, ds->n_ignored == 1 ? "" : "s",
             ds->n_ignored == 1 ? "is" : "are");
  *out = ds;
  return WK_OK;
}

int64_t wk_dataset_size(const wk_dataset *ds) { return ds->n_samples; }
int wk_dataset_n_classes(const wk_dataset *ds) { return ds->n_classes; }
const char *wk_dataset_source(const wk_dataset *ds) { return ds->source; }
int64_t wk_dataset_n_bad(const wk_dataset *ds) { return ds->n_bad; }
int64_t wk_dataset_n_ignored(const wk_dataset *ds) { return ds->n_ignored; }

const char *wk_dataset_class_name(const wk_dataset *ds, int label) {
  WK_ASSERT(label >= 0 && label < ds->n_classes);
  return ds->classes[label];
}

int64_t wk_dataset_class_size(const wk_dataset *ds, int label) {
  WK_ASSERT(label >= 0 && label < ds->n_classes);
  int64_t n = 0;
  for (int64_t i = 0; i < ds->n_samples; i++) n += ds->samples[i].label == label;
  return n;
}

const char *wk_dataset_path(const wk_dataset *ds, int64_t i) {
  WK_ASSERT(i >= 0 && i < ds->n_samples);
  return ds->samples[i].path;
}

int32_t wk_dataset_label(const wk_dataset *ds, int64_t i) {
  WK_ASSERT(i >= 0 && i < ds->n_samples);
  return ds->samples[i].label;
}

const char *wk_dataset_bad_path(const wk_dataset *ds, int64_t i) {
  WK_ASSERT(i >= 0 && i < ds->n_bad);
  return ds->bad[i].path;
}

const char *wk_dataset_bad_reason(const wk_dataset *ds, int64_t i) {
  WK_ASSERT(i >= 0 && i < ds->n_bad);
  return ds->bad[i].reason;
}
