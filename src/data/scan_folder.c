/* scan_folder.c - a folder per class: class folders sorted, their image files
 * (sub-folders included) sorted, hidden names skipped. See dataset.h. */
#include "data/dataset_impl.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/log.h"

/* Deeper than this inside a class folder is ignored (and guards against
 * symbolic-link loops). */
#define WK_SCAN_MAX_DEPTH 16

typedef struct wk_names {
  char **v;
  int64_t n, cap;
} wk_names;

static void wk_names_free(wk_names *l) {
  for (int64_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* Takes ownership of s. */
static wk_status wk_names_push(wk_names *l, char *s) {
  if (s && l->n == l->cap) {
    int64_t cap = l->cap ? l->cap * 2 : 32;
    char **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) {
      free(s);
      s = NULL;
    } else {
      l->v = v;
      l->cap = cap;
    }
  }
  if (!s) return wk_fail(WK_ERR_NOMEM, "folder scan: out of memory");
  l->v[l->n++] = s;
  return WK_OK;
}

bool wk_is_image_name(const char *name) {
  static const char *const exts[] = {"jpg", "jpeg", "jpe", "jfif", "png"};
  const char *dot = strrchr(name, '.');
  if (!dot || dot == name) return false;
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
    if (!strcasecmp(dot + 1, exts[i])) return true;
  return false;
}

/* The visible entries of dir: folders into *dirs (names), regular files into
 * *files (names). Links are followed. */
static wk_status wk_list_dir(const char *dir, wk_names *dirs, wk_names *files) {
  DIR *d = opendir(dir);
  if (!d) return wk_fail(WK_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
  wk_status s = WK_OK;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e) {
      if (errno) s = wk_fail(WK_ERR_IO, "%s: cannot read folder: %s", dir, strerror(errno));
      break;
    }
    if (e->d_name[0] == '.') continue; /* hidden, ".", ".." */
    char *full = wk_path_join(dir, e->d_name);
    struct stat st;
    if (!full) {
      s = wk_fail(WK_ERR_NOMEM, "folder scan: out of memory");
    } else if (stat(full, &st) != 0) {
      WK_LOG_W("skipping %s: %s", full, strerror(errno)); /* e.g. a dangling link */
    } else if (S_ISDIR(st.st_mode)) {
      s = wk_names_push(dirs, wk_strdup(e->d_name));
    } else if (S_ISREG(st.st_mode)) {
      s = wk_names_push(files, wk_strdup(e->d_name));
    }
    free(full);
    if (s != WK_OK) break;
  }
  closedir(d);
  return s;
}

bool wk_dir_link_loops(const wk_dir_link *up, const struct stat *st) {
  for (const wk_dir_link *l = up; l; l = l->up)
    if (l->dev == st->st_dev && l->ino == st->st_ino) return true;
  return false;
}

/* Appends every image file below dir (full paths) to *out. `up`: the folders
 * above it (NULL at a class folder). A folder that is one of them (a link
 * back up, such as class/self -> .) is skipped with a warning: it would list
 * its images again at every level, and a few such links made the scan
 * explode. */
static wk_status wk_collect(wk_dataset *ds, const char *dir, int depth, wk_names *out,
                            const wk_dir_link *up) {
  struct stat st;
  if (stat(dir, &st) != 0)
    return wk_fail(WK_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
  const wk_dir_link here = {st.st_dev, st.st_ino, up};
  if (wk_dir_link_loops(up, &st)) {
    WK_LOG_W("skipping %s: a link back to a folder above it (a loop)", dir);
    return WK_OK;
  }
  wk_names dirs = {0}, files = {0};
  wk_status s = wk_list_dir(dir, &dirs, &files);
  for (int64_t i = 0; s == WK_OK && i < files.n; i++) {
    if (!wk_is_image_name(files.v[i])) {
      ds->n_ignored++;
      continue;
    }
    s = wk_names_push(out, wk_path_join(dir, files.v[i]));
  }
  for (int64_t i = 0; s == WK_OK && i < dirs.n; i++) {
    char *sub = wk_path_join(dir, dirs.v[i]);
    if (!sub) s = wk_fail(WK_ERR_NOMEM, "folder scan: out of memory");
    else if (depth >= WK_SCAN_MAX_DEPTH) WK_LOG_W("skipping %s: nested too deep", sub);
    else s = wk_collect(ds, sub, depth + 1, out, &here);
    free(sub);
  }
  wk_names_free(&dirs);
  wk_names_free(&files);
  return s;
}

static int wk_find_class(char *const *classes, int n, const char *name) {
  char *const *hit = bsearch(&name, classes, (size_t)n, sizeof *classes, wk_strcmp_ptr);
  return hit ? (int)(hit - classes) : -1;
}

static wk_status wk_scan_class(wk_dataset *ds, const char *root, const char *name, int label) {
  char *dir = wk_path_join(root, name);
  if (!dir) return wk_fail(WK_ERR_NOMEM, "folder scan: out of memory");
  wk_names files = {0};
  wk_status s = wk_collect(ds, dir, 0, &files, NULL);
  if (s == WK_OK && files.n > 1) qsort(files.v, (size_t)files.n, sizeof *files.v, wk_strcmp_ptr);
  for (int64_t i = 0; s == WK_OK && i < files.n; i++) {
    s = wk_dataset_push(ds, files.v[i], label);
    files.v[i] = NULL; /* owned by ds now, or freed */
  }
  wk_names_free(&files);
  free(dir);
  return s;
}

wk_status wk_folder_scan(wk_dataset *ds, const char *root, char *const *classes,
                         int n_classes) {
  wk_names dirs = {0}, files = {0};
  wk_status s = wk_list_dir(root, &dirs, &files);
  ds->n_ignored += files.n; /* files beside the class folders belong to no class */
  if (s == WK_OK && dirs.n == 0)
    s = wk_fail(WK_ERR_FORMAT, "%s: no class folders (a dataset is one folder per class)", root);
  if (s == WK_OK && dirs.n > INT32_MAX)
    s = wk_fail(WK_ERR_LIMIT, "%s: too many class folders", root);
  if (s == WK_OK) qsort(dirs.v, (size_t)dirs.n, sizeof *dirs.v, wk_strcmp_ptr);
  if (s == WK_OK && !classes) {
    char **names = calloc((size_t)dirs.n, sizeof *names);
    for (int64_t i = 0; names && i < dirs.n; i++) names[i] = wk_strdup(dirs.v[i]);
    bool ok = names != NULL;
    for (int64_t i = 0; ok && i < dirs.n; i++) ok = names[i] != NULL;
    if (!ok) {
      for (int64_t i = 0; names && i < dirs.n; i++) free(names[i]);
      free(names);
      s = wk_fail(WK_ERR_NOMEM, "folder scan: out of memory");
    } else {
      wk_dataset_set_classes(ds, names, (int)dirs.n);
    }
  }
  if (s == WK_OK && classes) {
    ds->absent = malloc((size_t)n_classes);
    if (!ds->absent) s = wk_fail(WK_ERR_NOMEM, "folder scan: out of memory");
    else memset(ds->absent, 1, (size_t)n_classes);
  }
  for (int64_t i = 0; s == WK_OK && i < dirs.n; i++) {
    int label = classes ? wk_find_class(classes, n_classes, dirs.v[i]) : (int)i;
    if (label < 0) {
      s = wk_fail(WK_ERR_FORMAT, "%s: class folder '%s' is not a class of the training set",
                  root, dirs.v[i]);
    } else {
      if (ds->absent) ds->absent[label] = 0;
      s = wk_scan_class(ds, root, dirs.v[i], label);
    }
  }
  for (int c = 0; s == WK_OK && ds->absent && c < n_classes; c++)
    if (ds->absent[c]) WK_LOG_W("%s: no folder for class '%s'", root, classes[c]);
  wk_names_free(&dirs);
  wk_names_free(&files);
  return s;
}

wk_status wk_dataset_open_folder(const char *root, const wk_dataset_opts *opts,
                                 wk_dataset **out) {
  wk_dataset_opts o = opts ? *opts : wk_dataset_opts_default();
  wk_dataset *ds = NULL;
  *out = NULL;
  WK_TRY(wk_dataset_new(root, &ds));
  wk_status s = wk_folder_scan(ds, root, NULL, 0);
  if (s != WK_OK) {
    wk_dataset_free(ds);
    return s;
  }
  return wk_dataset_finish(ds, &o, out);
}
