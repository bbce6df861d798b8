/* report.c - wk_report_write_html: checks the report, builds the page in
 * memory (head and CSS, summary, settings, curves, per-epoch table, then the
 * sections of report_confusion.c and report_examples.c) and writes it
 * atomically. */
#include "train/report.h"

#include <math.h>
#include <stdlib.h>

#include "core/atomic_file.h"
#include "train/report_impl.h"
#include "whisker.h"

static const char wk_report_css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;"
    "max-width:1240px;padding:0 16px;color:#222;background:#fff}"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:"
    "1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}"
    ".meta,.note,.empty,.path{color:#666}.empty{font-style:italic}"
    "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;"
    "text-align:right}th{background:#f5f5f5;text-align:left}"
    "table.settings td{text-align:left;font-family:ui-monospace,monospace}"
    "table.confusion td{min-width:34px;text-align:center}table.confusion th.col{vertical-align:"
    "bottom;max-width:120px;overflow-wrap:anywhere}td.total{background:#fafafa}td.na{color:#999}"
    "tr.avg th,tr.avg td{font-weight:bold}.scroll{overflow-x:auto}"
    ".charts{display:flex;flex-wrap:wrap;gap:16px}svg.chart{border:1px solid #eee;"
    "background:#fff}svg .grid{stroke:#eee}svg .axis{stroke:#888}svg .frame{fill:none;"
    "stroke:#888}svg .series{fill:none;stroke-width:2;stroke-linejoin:round}"
    "svg text{font:12px system-ui,sans-serif;fill:#333}svg .title{font-size:14px;"
    "font-weight:bold}svg .label{fill:#555}"
    ".examples{display:flex;flex-wrap:wrap;gap:12px}figure.example{margin:0;width:150px;"
    "border:1px solid #ddd;padding:6px;background:#fafafa}figure.example img{display:block;"
    "margin:0 auto 4px;max-width:96px;max-height:96px}.nothumb{max-height:96px;color:#a00;margin-bottom:4px;"
    "font-size:11px;overflow-wrap:anywhere;overflow:hidden}figcaption{font-size:12px;"
    "overflow-wrap:anywhere}.path{font-size:10px}";

void wk_report_put_class(wk_rbuf *b, const wk_report *r, int k) {
  if (r->class_names && k >= 0 && k < r->n_classes && r->class_names[k])
    wk_rbuf_put_html(b, r->class_names[k]);
  else
    wk_rbuf_printf(b, "class %d", k);
}

static wk_status wk_report_check(const char *path, const wk_report *r) {
  if (!path || !r) return wk_fail(WK_ERR_INVALID_ARG, "report: no %s", path ? "report" : "path");
  if (r->n_settings < 0 || (r->n_settings > 0 && !r->settings) || r->n_epochs < 0 ||
      (r->n_epochs > 0 && !r->epochs) || r->n_worst < 0 || (r->n_worst > 0 && !r->worst) ||
      r->n_classes < 0)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: report with a negative count or a missing array",
                   path);
  if (r->confusion) {
    size_t n = (size_t)r->n_classes * (size_t)r->n_classes;
    for (size_t i = 0; i < n; i++)
      if (r->confusion[i] < 0)
        return wk_fail(WK_ERR_INVALID_ARG, "%s: confusion matrix entry %zu is negative (%lld)",
                       path, i, (long long)r->confusion[i]);
  }
  return WK_OK;
}

/* A table cell with v * scale to `decimals` places and `suffix`, or a dash for NaN. */
static void wk_put_num(wk_rbuf *b, double v, double scale, int decimals, const char *suffix) {
  if (isfinite(v)) wk_rbuf_printf(b, "<td>%.*f%s</td>", decimals, v * scale, suffix);
  else wk_rbuf_puts(b, "<td class=\"na\">&ndash;</td>");
}

static void wk_summary_html(wk_rbuf *b, const wk_report *r) {
  wk_rbuf_printf(b, "<p class=\"meta\">whisker %s &middot; %d epoch%s", wk_version(),
                 r->n_epochs, r->n_epochs == 1 ? "" : "s");
  int best = -1;
  double seconds = 0;
  for (int i = 0; i < r->n_epochs; i++) {
    if (isfinite(r->epochs[i].val_acc) && (best < 0 || r->epochs[i].val_acc > r->epochs[best].val_acc))
      best = i;
    if (isfinite(r->epochs[i].seconds)) seconds += r->epochs[i].seconds;
  }
  if (best >= 0)
    wk_rbuf_printf(b, " &middot; best validation accuracy %.2f%% (epoch %d)",
                   100.0 * r->epochs[best].val_acc, r->epochs[best].epoch);
  if (seconds > 0) wk_rbuf_printf(b, " &middot; %.1f min of training", seconds / 60.0);
  wk_rbuf_puts(b, "</p>\n");
}

static void wk_settings_html(wk_rbuf *b, const wk_report *r) {
  wk_rbuf_puts(b, "<section id=\"settings\"><h2>Settings</h2>\n");
  if (r->n_settings == 0) {
    wk_rbuf_puts(b, "<p class=\"empty\">No settings were recorded.</p></section>\n");
    return;
  }
  wk_rbuf_puts(b, "<table class=\"settings\">\n");
  for (int i = 0; i < r->n_settings; i++) {
    wk_rbuf_puts(b, "<tr><th>");
    wk_rbuf_put_html(b, r->settings[i].key);
    wk_rbuf_puts(b, "</th><td>");
    wk_rbuf_put_html(b, r->settings[i].value);
    wk_rbuf_puts(b, "</td></tr>\n");
  }
  wk_rbuf_puts(b, "</table></section>\n");
}

static void wk_epoch_table_html(wk_rbuf *b, const wk_report *r) {
  wk_rbuf_puts(b, "<details><summary>Per-epoch numbers</summary><table class=\"epochs\">\n"
                  "<tr><th>epoch</th><th>train loss</th><th>train acc</th><th>val loss</th>"
                  "<th>val acc</th><th>lr</th><th>seconds</th><th>images/s</th>"
                  "<th>waiting for data</th></tr>\n");
  for (int i = 0; i < r->n_epochs; i++) {
    const wk_report_epoch *e = &r->epochs[i];
    wk_rbuf_printf(b, "<tr><td>%d</td>", e->epoch);
    wk_put_num(b, e->train_loss, 1.0, 4, "");
    wk_put_num(b, e->train_acc, 100.0, 2, "%");
    wk_put_num(b, e->val_loss, 1.0, 4, "");
    wk_put_num(b, e->val_acc, 100.0, 2, "%");
    if (isfinite(e->lr)) wk_rbuf_printf(b, "<td>%.3g</td>", e->lr);
    else wk_put_num(b, NAN, 1.0, 0, "");
    wk_put_num(b, e->seconds, 1.0, 1, "");
    wk_put_num(b, e->images_per_s, 1.0, 0, "");
    wk_put_num(b, e->seconds > 0 ? e->data_wait_s / e->seconds : NAN, 100.0, 0, "%");
    wk_rbuf_puts(b, "</tr>\n");
  }
  wk_rbuf_puts(b, "</table></details>\n");
}

static void wk_curves_html(wk_rbuf *b, const wk_report *r) {
  wk_rbuf_puts(b, "<section id=\"curves\"><h2>Training curves</h2>\n");
  int n = r->n_epochs;
  double *v = n > 0 ? malloc(5 * (size_t)n * sizeof *v) : NULL; /* x, 4 series */
  if (n == 0 || !v) {
    if (n > 0) b->failed = true;
    wk_rbuf_puts(b, "<p class=\"empty\">No epochs were recorded, so there are no curves."
                    "</p></section>\n");
    return;
  }
  for (int i = 0; i < n; i++) {
    const wk_report_epoch *e = &r->epochs[i];
    v[i] = e->epoch;
    v[n + i] = e->train_loss;
    v[2 * n + i] = e->val_loss;
    v[3 * n + i] = e->train_acc;
    v[4 * n + i] = e->val_acc;
  }
  wk_chart c = {.title = "Loss", .x_label = "epoch", .y_label = "loss", .x = v, .n = n,
                .n_series = 2, .y = {v + n, v + 2 * n}, .names = {"train", "validation"},
                .colours = {"#1f77b4", "#ff7f0e"}};
  wk_rbuf_puts(b, "<div class=\"charts\">\n");
  wk_chart_svg(b, &c);
  c.title = "Accuracy";
  c.y_label = "accuracy";
  c.y[0] = v + 3 * n;
  c.y[1] = v + 4 * n;
  c.y_percent = true;
  wk_chart_svg(b, &c);
  wk_rbuf_puts(b, "</div>\n");
  free(v);
  wk_epoch_table_html(b, r);
  wk_rbuf_puts(b, "</section>\n");
}

wk_status wk_report_write_html(const char *path, const wk_report *r) {
  WK_TRY(wk_report_check(path, r));
  const char *title = r->title ? r->title : "whisker training report";
  wk_rbuf b = {0};
  wk_rbuf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
                   "<title>");
  wk_rbuf_put_html(&b, title);
  wk_rbuf_printf(&b, "</title>\n<style>%s</style>\n</head><body>\n<h1>", wk_report_css);
  wk_rbuf_put_html(&b, title);
  wk_rbuf_puts(&b, "</h1>\n");
  wk_summary_html(&b, r);
  wk_settings_html(&b, r);
  wk_curves_html(&b, r);
  wk_report_confusion_html(&b, r);
  wk_report_examples_html(&b, r);
  wk_rbuf_puts(&b, "</body></html>\n");
  wk_status s = b.failed ? wk_fail(WK_ERR_NOMEM, "%s: out of memory building the report", path)
                         : wk_atomic_write_file(path, b.data, b.n_bytes);
  wk_rbuf_free(&b);
  return s;
}
