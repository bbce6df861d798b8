/* dataset.h - a list of labelled image files: from a folder per class or a CSV
 * list, checked once up front, split into training and validation.
 *
 * Folder per class: root/<class>/[sub/...]name.{jpg,jpeg,jpe,jfif,png} (extensions in
 * any case; sub-folders of a class are walked, 16 levels at most). Class
 * names are the folder names sorted bytewise (as Python's sorted(), so labels
 * match torchvision's ImageFolder); files within a class are sorted too, so a
 * dataset never depends on the order the file system lists things in. Names
 * starting with '.' (files and folders) are skipped; so are files with other
 * extensions (counted, not reported one by one).
 *
 * CSV list: rows `path,label` (RFC 4180 quoting: "a,b.jpg" and "" inside
 * quotes; CRLF or LF; an optional header row `path,label`; blank lines
 * ignored). Relative paths are relative to the CSV file's folder. Labels are
 * class names; classes are the distinct labels sorted bytewise, or
 * numerically when every label is a non-negative integer. A malformed row is
 * reported (file:line and why) and skipped; so is a row longer than the
 * line-length limit (WK_CSV_MAX_ROW_BYTES). A list of more rows than the row
 * limit (WK_CSV_MAX_ROWS, good and bad rows counted) or of more than 1 GiB is
 * refused with WK_ERR_LIMIT.
 *
 * Pre-scan (on by default): every file is read and decoded once, JPEGs at
 * 1/8 scale, in parallel. A file that cannot be used (missing, empty,
 * truncated, not an image, unsupported, over the pixel limit) is logged once
 * as a warning with its path and reason, recorded in the bad-file list and
 * left out; the scan goes on. A class left with no usable image, or a dataset
 * with none at all, is an error (WK_ERR_FORMAT) naming it.
 *
 * A dataset is immutable after it is opened and may be read from any number
 * of threads. */
#ifndef WK_DATASET_H
#define WK_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/status.h"

typedef struct wk_dataset wk_dataset;

/* Whether a file name has an extension whisker reads as an image (.jpg,
 * .jpeg, .jpe, .jfif, .png, in any case; ".png" alone is no name). The
 * folder scan and `whisker classify` take the same files. */
bool wk_is_image_name(const char *name);
#define WK_IMAGE_EXTS ".jpg, .jpeg, .jpe, .jfif, .png" /* for messages */

/* A folder on the path from where a walk of folders began down to the one
 * being listed (NULL above the first). */
typedef struct wk_dir_link {
  dev_t dev;
  ino_t ino;
  const struct wk_dir_link *up;
} wk_dir_link;

/* Whether folder st is one of those above it (a link back up, such as
 * sub/loop -> ..): walking it would list the same files again at every
 * level. */
bool wk_dir_link_loops(const wk_dir_link *up, const struct stat *st);

/* CSV list limits (defaults; wk_dataset_opts can lower or raise them). */
#define WK_CSV_MAX_ROWS ((int64_t)10000000)
#define WK_CSV_MAX_ROW_BYTES ((size_t)64 << 10)

typedef struct wk_dataset_opts {
  bool prescan;       /* decode every file once and leave out the bad ones (default true) */
  int n_threads;      /* pre-scan threads; <= 0: every online core */
  int64_t max_pixels; /* <= 0: wk_image_max_pixels() (WHISKER_MAX_PIXELS or 64 Mpx) */
  double val_pct;     /* wk_dataset_open_split without a val/ folder: percent held out */
  uint64_t seed;      /* for that split */
  int64_t csv_max_rows;     /* CSV lists: <= 0: WK_CSV_MAX_ROWS */
  size_t csv_max_row_bytes; /* CSV lists: 0: WK_CSV_MAX_ROW_BYTES */
} wk_dataset_opts;

wk_dataset_opts wk_dataset_opts_default(void);

/* root/<class>/... as described above. opts may be NULL. */
wk_status wk_dataset_open_folder(const char *root, const wk_dataset_opts *opts,
                                 wk_dataset **out);

/* A CSV list `path,label`. opts may be NULL. */
wk_status wk_dataset_open_csv(const char *csv_path, const wk_dataset_opts *opts,
                              wk_dataset **out);

/* Training and validation sets from one folder. When root has both train/
 * and val/ (or validation/) sub-folders, those are the two sets, val/'s
 * classes mapped by name onto train/'s (a class only in val/ is an error; a
 * class val/ lacks is a warning). Otherwise root/train, or root itself when
 * there is no train/, is the folder per class and opts->val_pct percent of
 * each class (stratified, chosen by opts->seed) is held out; with val_pct 0,
 * *val is NULL. */
wk_status wk_dataset_open_split(const char *root, const wk_dataset_opts *opts,
                                wk_dataset **train, wk_dataset **val);

/* The validation folder wk_dataset_open_split takes from root, root/val or
 * root/validation when root/train is a folder too (malloc'ed); else NULL. */
char *wk_dataset_val_folder(const char *root);

/* Splits ds by class: round(n_c * val_pct / 100) samples of each class c go
 * to *val (at least 1 and at most n_c - 1 when n_c >= 2 and val_pct > 0),
 * chosen by a shuffle that depends on (seed, class) only; both keep ds's
 * order. The bad-file list goes with *train. ds is left unchanged. */
wk_status wk_dataset_split(const wk_dataset *ds, double val_pct, uint64_t seed,
                           wk_dataset **train, wk_dataset **val);

void wk_dataset_free(wk_dataset *ds);

int64_t wk_dataset_size(const wk_dataset *ds);
int wk_dataset_n_classes(const wk_dataset *ds);
const char *wk_dataset_class_name(const wk_dataset *ds, int label);
/* Samples of one class. */
int64_t wk_dataset_class_size(const wk_dataset *ds, int label);
const char *wk_dataset_path(const wk_dataset *ds, int64_t i);
int32_t wk_dataset_label(const wk_dataset *ds, int64_t i);
/* Where the dataset came from (the folder or the CSV file). */
const char *wk_dataset_source(const wk_dataset *ds);

/* Files and rows left out, in scan order: the path (for a CSV row,
 * "list.csv:7") and why. */
int64_t wk_dataset_n_bad(const wk_dataset *ds);
const char *wk_dataset_bad_path(const wk_dataset *ds, int64_t i);
const char *wk_dataset_bad_reason(const wk_dataset *ds, int64_t i);
/* Files skipped for their extension. */
int64_t wk_dataset_n_ignored(const wk_dataset *ds);

#endif
