/* report.h - the training report: one self-contained HTML page (report.html)
 * that a browser shows without any network: inline CSS, inline SVG line charts,
 * thumbnails as data: URIs.
 *
 * The page holds the title, a summary, the run's settings, loss and accuracy
 * curves per epoch (NaN values are left out of the curves), a per-epoch table,
 * the confusion matrix (cells shaded by their share of the row; at most
 * WK_REPORT_MAX_MATRIX_CLASSES classes, with a note when there are more) with
 * per-class precision, recall and F1, and the worst-classified validation
 * images as thumbnails (WK_REPORT_THUMB_PX on the long side).
 *
 * Every string from the caller (title, settings, class names, paths) is
 * escaped for HTML. Missing parts (no epochs, no confusion matrix, no
 * examples) are rendered as a sentence saying so; an image that cannot be
 * read is listed with the reason instead of a thumbnail. The caller keeps
 * ownership of everything in wk_report. */
#ifndef WK_TRAIN_REPORT_H
#define WK_TRAIN_REPORT_H

#include <stdint.h>

#include "core/status.h"

#define WK_REPORT_MAX_MATRIX_CLASSES 50
#define WK_REPORT_THUMB_PX 96

typedef struct wk_report_epoch {
  int epoch;                                       /* 1-based */
  double train_loss, train_acc, val_loss, val_acc; /* acc in [0,1]; NAN when unknown */
  double lr, seconds, images_per_s;                /* NAN when unknown */
  double data_wait_s; /* of `seconds`, the training loop waiting for the loader; NAN unknown */
} wk_report_epoch;

typedef struct wk_report_example { /* a worst-classified validation image */
  const char *path;                /* image file; thumbnail made from it */
  int label, predicted;            /* class indices */
  float prob_true;                 /* probability the model gave the true class */
} wk_report_example;

typedef struct wk_report_setting {
  const char *key, *value;
} wk_report_setting;

typedef struct wk_report {
  const char *title;                 /* e.g. "resnet18 on data/pets"; NULL: a default */
  const wk_report_setting *settings; /* n_settings of them, shown as a table */
  int n_settings;
  const wk_report_epoch *epochs;     /* n_epochs, in order */
  int n_epochs;
  int n_classes;
  const char *const *class_names;    /* n_classes, or NULL: "class 0", "class 1", ... */
  const int64_t *confusion;          /* (n_classes, n_classes): row = true class,
                                        column = predicted; may be NULL */
  const wk_report_example *worst;    /* n_worst, shown in this order */
  int n_worst;
} wk_report;

/* Writes the page to `path` atomically (wk_atomic_write_file: the old file
 * stays whole on failure). Fails with WK_ERR_INVALID_ARG for inconsistent
 * counts (a negative count, a count without its array, a negative confusion
 * entry), WK_ERR_IO naming the path when it cannot be written, WK_ERR_NOMEM. */
wk_status wk_report_write_html(const char *path, const wk_report *r);

#endif
