/* report_impl.h - the pieces of report.c: a growable text buffer with HTML
 * escaping and base64, and the SVG line chart. Internal to src/train/report*.c. */
#ifndef WK_TRAIN_REPORT_IMPL_H
#define WK_TRAIN_REPORT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Text under construction. Appends never fail: an allocation failure sets
 * `failed` and later appends do nothing, so a writer checks once at the end. */
typedef struct wk_rbuf {
  char *data; /* NUL-terminated while n_bytes > 0 */
  size_t n_bytes, capacity_bytes;
  bool failed;
} wk_rbuf;

void wk_rbuf_free(wk_rbuf *b);
void wk_rbuf_put(wk_rbuf *b, const char *s, size_t n_bytes);
void wk_rbuf_puts(wk_rbuf *b, const char *s);
void wk_rbuf_printf(wk_rbuf *b, const char *fmt, ...) WK_PRINTF(2, 3);
/* s with & < > " ' escaped (safe in text and in quoted attributes); NULL is "". */
void wk_rbuf_put_html(wk_rbuf *b, const char *s);
/* Standard base64 (RFC 4648, with padding). */
void wk_rbuf_put_base64(wk_rbuf *b, const uint8_t *data, size_t n_bytes);

enum { WK_CHART_MAX_SERIES = 4 };

/* A line chart of up to WK_CHART_MAX_SERIES series over the same x values.
 * Non-finite y values are skipped (the line breaks there); a point with no
 * finite neighbour gets a marker so that it stays visible. */
typedef struct wk_chart {
  const char *title, *x_label, *y_label; /* plain text, escaped by the chart */
  const double *x;                       /* (n) increasing */
  int n;
  int n_series;
  const double *y[WK_CHART_MAX_SERIES];  /* each (n) */
  const char *names[WK_CHART_MAX_SERIES];
  const char *colours[WK_CHART_MAX_SERIES]; /* CSS colours (trusted constants) */
  bool y_percent;                        /* values in [0,1] shown as percent */
} wk_chart;

/* Appends <svg ...>...</svg> with axes, ticks, labels and a legend. */
void wk_chart_svg(wk_rbuf *b, const wk_chart *c);

/* The report's sections (report_confusion.c, report_examples.c); `r` has
 * been checked by wk_report_write_html. */
typedef struct wk_report wk_report;
void wk_report_confusion_html(wk_rbuf *b, const wk_report *r);
void wk_report_examples_html(wk_rbuf *b, const wk_report *r);
/* The escaped name of class k, or "class k" when there are no names or k is
 * out of range. */
void wk_report_put_class(wk_rbuf *b, const wk_report *r, int k);

#endif
