/* report_confusion.c - the confusion matrix section of the training report:
 * an HTML table (rows = true class, columns = predicted) whose cells are
 * shaded by their share of the row, limited to WK_REPORT_MAX_MATRIX_CLASSES
 * classes, then precision, recall and F1 per class (all classes) and their
 * macro averages:
 *   precision_k = C[k][k] / sum_i C[i][k]   recall_k = C[k][k] / sum_j C[k][j]
 *   F1_k = 2 P R / (P + R)
 * A ratio whose denominator is 0 is shown as "n/a" and left out of the macro
 * averages. */
#include <math.h>
#include <stdlib.h>

#include "train/report.h"
#include "train/report_impl.h"

static void wk_put_ratio(wk_rbuf *b, double v) {
  if (isfinite(v)) wk_rbuf_printf(b, "<td>%.3f</td>", v);
  else wk_rbuf_puts(b, "<td class=\"na\">n/a</td>");
}

static void wk_confusion_table(wk_rbuf *b, const wk_report *r, const int64_t *row_sum) {
  int n = r->n_classes, shown = n < WK_REPORT_MAX_MATRIX_CLASSES ? n : WK_REPORT_MAX_MATRIX_CLASSES;
  if (shown < n)
    wk_rbuf_printf(b, "<p class=\"note\">%d classes: the matrix shows the first %d; the "
                      "metrics below cover all of them.</p>\n", n, shown);
  wk_rbuf_puts(b, "<div class=\"scroll\"><table class=\"confusion\">\n<tr><th class=\"corner\">"
                  "true \\ predicted</th>");
  for (int j = 0; j < shown; j++) {
    wk_rbuf_puts(b, "<th class=\"col\"><span>");
    wk_report_put_class(b, r, j);
    wk_rbuf_puts(b, "</span></th>");
  }
  wk_rbuf_puts(b, "<th>total</th></tr>\n");
  for (int i = 0; i < shown; i++) {
    wk_rbuf_puts(b, "<tr><th class=\"row\">");
    wk_report_put_class(b, r, i);
    wk_rbuf_puts(b, "</th>");
    for (int j = 0; j < shown; j++) {
      int64_t v = r->confusion[(size_t)i * (size_t)n + (size_t)j];
      double share = row_sum[i] > 0 ? (double)v / (double)row_sum[i] : 0.0;
      const char *hue = i == j ? "44,160,44" : "214,39,40"; /* right: green, wrong: red */
      wk_rbuf_printf(b, "<td style=\"background:rgba(%s,%.3f)%s\" title=\"%.1f%% of the row\">"
                        "%lld</td>", hue, share, share > 0.55 ? ";color:#fff" : "",
                     share * 100.0, (long long)v);
    }
    wk_rbuf_printf(b, "<td class=\"total\">%lld</td></tr>\n", (long long)row_sum[i]);
  }
  wk_rbuf_puts(b, "</table></div>\n");
}

static void wk_metrics_table(wk_rbuf *b, const wk_report *r, const int64_t *row_sum,
                             const int64_t *col_sum) {
  int n = r->n_classes;
  double sum_p = 0, sum_r = 0, sum_f = 0;
  int n_p = 0, n_r = 0, n_f = 0;
  int64_t total = 0, right = 0;
  wk_rbuf_puts(b, "<table class=\"metrics\">\n<tr><th>class</th><th>precision</th>"
                  "<th>recall</th><th>F1</th><th>support</th></tr>\n");
  for (int k = 0; k < n; k++) {
    int64_t tp = r->confusion[(size_t)k * (size_t)n + (size_t)k];
    double p = col_sum[k] > 0 ? (double)tp / (double)col_sum[k] : NAN;
    double rc = row_sum[k] > 0 ? (double)tp / (double)row_sum[k] : NAN;
    double f = isfinite(p) && isfinite(rc) ? (p + rc > 0 ? 2 * p * rc / (p + rc) : 0.0) : NAN;
    if (isfinite(p)) sum_p += p, n_p++;
    if (isfinite(rc)) sum_r += rc, n_r++;
    if (isfinite(f)) sum_f += f, n_f++;
    total += row_sum[k];
    right += tp;
    wk_rbuf_puts(b, "<tr><th class=\"row\">");
    wk_report_put_class(b, r, k);
    wk_rbuf_puts(b, "</th>");
    wk_put_ratio(b, p);
    wk_put_ratio(b, rc);
    wk_put_ratio(b, f);
    wk_rbuf_printf(b, "<td>%lld</td></tr>\n", (long long)row_sum[k]);
  }
  wk_rbuf_puts(b, "<tr class=\"avg\"><th>macro average</th>");
  wk_put_ratio(b, n_p ? sum_p / n_p : NAN);
  wk_put_ratio(b, n_r ? sum_r / n_r : NAN);
  wk_put_ratio(b, n_f ? sum_f / n_f : NAN);
  wk_rbuf_printf(b, "<td>%lld</td></tr>\n</table>\n", (long long)total);
  if (total > 0)
    wk_rbuf_printf(b, "<p>Accuracy from the matrix: %.2f%% (%lld of %lld).</p>\n",
                   100.0 * (double)right / (double)total, (long long)right, (long long)total);
}

void wk_report_confusion_html(wk_rbuf *b, const wk_report *r) {
  wk_rbuf_puts(b, "<section id=\"confusion\"><h2>Confusion matrix</h2>\n");
  if (!r->confusion || r->n_classes <= 0) {
    wk_rbuf_puts(b, "<p class=\"empty\">No confusion matrix was recorded.</p></section>\n");
    return;
  }
  int n = r->n_classes;
  int64_t *sums = calloc(2 * (size_t)n, sizeof *sums); /* row sums, then column sums */
  if (!sums) {
    b->failed = true;
    return;
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      int64_t v = r->confusion[(size_t)i * (size_t)n + (size_t)j];
      sums[i] += v;
      sums[n + j] += v;
    }
  wk_confusion_table(b, r, sums);
  wk_rbuf_puts(b, "<h3>Per-class precision, recall and F1</h3>\n");
  wk_metrics_table(b, r, sums, sums + n);
  wk_rbuf_puts(b, "</section>\n");
  free(sums);
}
