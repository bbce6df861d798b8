/* dataset_impl.h - the dataset's insides, shared by the files that build it
 * (scan_folder.c, csv.c, prescan.c, split.c). Not a public interface. */
#ifndef WK_DATASET_IMPL_H
#define WK_DATASET_IMPL_H

#include "data/dataset.h"

typedef struct wk_sample {
  char *path;    /* owned */
  int32_t label; /* index into classes */
} wk_sample;

typedef struct wk_bad_file {
  char *path;   /* owned; "list.csv:7" for a CSV row */
  char *reason; /* owned */
} wk_bad_file;

struct wk_dataset {
  char *source;    /* the folder or CSV file, for messages */
  int n_classes;
  char **classes;  /* (n_classes) owned names, sorted */
  uint8_t *absent; /* (n_classes) or NULL: 1 where a val/ folder has no folder for
                      the class, which may then be empty */
  int64_t n_samples, cap_samples;
  wk_sample *samples;
  int64_t n_bad, cap_bad;
  wk_bad_file *bad;
  int64_t n_ignored;
};

wk_status wk_dataset_new(const char *source, wk_dataset **out);

/* Takes ownership of `path` (freed on failure too). */
wk_status wk_dataset_push(wk_dataset *ds, char *path, int32_t label);

/* Records a file or row left out and logs it once as a warning. `reason` may
 * be a whole wk_fail message starting with "path: ", which is dropped. */
wk_status wk_dataset_push_bad(wk_dataset *ds, const char *path, const char *reason);

/* Takes ownership of the n names (already sorted and distinct). */
void wk_dataset_set_classes(wk_dataset *ds, char **names, int n);

/* Decodes every sample once (in parallel), moves the failures to the bad
 * list (in sample order) and keeps the rest in order. */
wk_status wk_dataset_prescan(wk_dataset *ds, const wk_dataset_opts *o);

/* The common ending of every open: optional pre-scan, then the rule that no
 * class and not the whole set may be empty. Frees ds on failure. */
wk_status wk_dataset_finish(wk_dataset *ds, const wk_dataset_opts *o, wk_dataset **out);

/* Scans root/<class>/... into ds. With `classes` (n_classes names, sorted)
 * the folder names must be among them; without, they become the classes. */
wk_status wk_folder_scan(wk_dataset *ds, const char *root, char *const *classes,
                         int n_classes);

char *wk_strdup(const char *s);
/* malloc'ed "dir/name" */
char *wk_path_join(const char *dir, const char *name);
int wk_strcmp_ptr(const void *a, const void *b); /* qsort on char* */

#endif
