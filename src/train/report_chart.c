/* report_chart.c - inline SVG line charts for the training report: a plot
 * area with a frame, "nice" ticks (1, 2 or 5 times a power of ten) on both
 * axes, axis labels, a legend, one path per series that breaks at non-finite
 * values. Coordinates are in SVG user units of a fixed 560 x 320 viewBox. */
#include <math.h>
#include <stdio.h>

#include "train/report_impl.h"

enum { CH_W = 560, CH_H = 320, CH_L = 64, CH_R = 16, CH_T = 34, CH_B = 48 };

/* A tick step of 1, 2 or 5 times a power of ten giving about `target` steps. */
static double wk_nice_step(double range, int target) {
  double raw = range / target;
  double mag = pow(10.0, floor(log10(raw)));
  double f = raw / mag;
  return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * mag;
}

/* Decimals needed to print multiples of step (scaled by `scale`) exactly enough. */
static int wk_tick_decimals(double step, double scale) {
  double s = step * scale;
  int d = s >= 1.0 ? 0 : (int)ceil(-log10(s) - 1e-9);
  return d < 0 ? 0 : d > 6 ? 6 : d;
}

typedef struct wk_axes {
  double x_lo, x_hi, y_lo, y_hi, y_step, x_step;
} wk_axes;

static double wk_px(const wk_axes *a, double x) {
  return CH_L + (x - a->x_lo) / (a->x_hi - a->x_lo) * (CH_W - CH_L - CH_R);
}
static double wk_py(const wk_axes *a, double y) {
  return CH_T + (1.0 - (y - a->y_lo) / (a->y_hi - a->y_lo)) * (CH_H - CH_T - CH_B);
}

/* Axis ranges from the data; false when no series has a finite value. */
static bool wk_chart_axes(const wk_chart *c, wk_axes *a) {
  double lo = INFINITY, hi = -INFINITY;
  for (int s = 0; s < c->n_series; s++)
    for (int i = 0; i < c->n; i++)
      if (isfinite(c->y[s][i]) && isfinite(c->x[i])) {
        lo = fmin(lo, c->y[s][i]);
        hi = fmax(hi, c->y[s][i]);
      }
  if (!(lo <= hi)) return false;
  if (hi - lo <= 1e-12 * fmax(1.0, fabs(hi))) { /* a constant series */
    double pad = fabs(hi) > 0 ? fabs(hi) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  a->y_step = wk_nice_step(hi - lo, 5);
  a->y_lo = floor(lo / a->y_step) * a->y_step;
  a->y_hi = ceil(hi / a->y_step) * a->y_step;
  if (a->y_hi <= a->y_lo) a->y_hi = a->y_lo + a->y_step;

  a->x_lo = c->x[0];
  a->x_hi = c->x[c->n - 1];
  if (!(a->x_hi > a->x_lo)) { /* one epoch */
    a->x_lo -= 0.5;
    a->x_hi += 0.5;
  }
  a->x_step = fmax(1.0, wk_nice_step(a->x_hi - a->x_lo, 8));
  return true;
}

static void wk_chart_grid(wk_rbuf *b, const wk_chart *c, const wk_axes *a) {
  double scale = c->y_percent ? 100.0 : 1.0;
  int dec = wk_tick_decimals(a->y_step, scale);
  int n_y = (int)lround((a->y_hi - a->y_lo) / a->y_step);
  for (int k = 0; k <= n_y && k <= 50; k++) {
    double v = a->y_lo + k * a->y_step, y = wk_py(a, v);
    if (fabs(v) < 1e-9 * a->y_step) v = 0.0; /* no "-0" */
    wk_rbuf_printf(b, "<line class=\"grid\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>", CH_L,
                   CH_W - CH_R, y, y);
    wk_rbuf_printf(b, "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.*f%s</text>",
                   CH_L - 6, y + 4, dec, v * scale, c->y_percent ? "%" : "");
  }
  double first = ceil(a->x_lo / a->x_step - 1e-9) * a->x_step;
  for (int k = 0; k <= 200; k++) {
    double v = first + k * a->x_step;
    if (v > a->x_hi + 1e-9) break;
    double x = wk_px(a, v);
    wk_rbuf_printf(b, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>", x, x,
                   CH_H - CH_B, CH_H - CH_B + 5);
    wk_rbuf_printf(b, "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>",
                   x, CH_H - CH_B + 18, v);
  }
  wk_rbuf_printf(b, "<rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>", CH_L,
                 CH_T, CH_W - CH_L - CH_R, CH_H - CH_T - CH_B);
}

static void wk_chart_series(wk_rbuf *b, const wk_chart *c, const wk_axes *a, int s) {
  const double *y = c->y[s];
  wk_rbuf_printf(b, "<path class=\"series\" stroke=\"%s\" d=\"", c->colours[s]);
  bool pen_down = false;
  for (int i = 0; i < c->n; i++) {
    if (!isfinite(y[i]) || !isfinite(c->x[i])) {
      pen_down = false;
      continue;
    }
    wk_rbuf_printf(b, "%c%.1f %.1f ", pen_down ? 'L' : 'M', wk_px(a, c->x[i]), wk_py(a, y[i]));
    pen_down = true;
  }
  wk_rbuf_puts(b, "\"/>");
  for (int i = 0; i < c->n; i++) {
    if (!isfinite(y[i]) || !isfinite(c->x[i])) continue;
    bool alone = (i == 0 || !isfinite(y[i - 1])) && (i == c->n - 1 || !isfinite(y[i + 1]));
    if (c->n > 60 && !alone) continue;
    wk_rbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>",
                   wk_px(a, c->x[i]), wk_py(a, y[i]), c->colours[s]);
  }
}

static void wk_chart_legend(wk_rbuf *b, const wk_chart *c) {
  for (int s = 0; s < c->n_series; s++) {
    int x = CH_W - CH_R - 110 * (c->n_series - s), y = 20;
    wk_rbuf_printf(b, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" "
                      "stroke-width=\"3\"/>", x, x + 20, y - 4, y - 4, c->colours[s]);
    wk_rbuf_printf(b, "<text class=\"legend\" x=\"%d\" y=\"%d\">", x + 25, y);
    wk_rbuf_put_html(b, c->names[s]);
    wk_rbuf_puts(b, "</text>");
  }
}

void wk_chart_svg(wk_rbuf *b, const wk_chart *c) {
  wk_rbuf_printf(b, "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
                    "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"",
                 CH_W, CH_H, CH_W, CH_H);
  wk_rbuf_put_html(b, c->title);
  wk_rbuf_puts(b, "\">");
  wk_rbuf_puts(b, "<text class=\"title\" x=\"8\" y=\"20\">");
  wk_rbuf_put_html(b, c->title);
  wk_rbuf_puts(b, "</text>");
  wk_axes a;
  if (c->n <= 0 || !wk_chart_axes(c, &a)) {
    wk_rbuf_printf(b, "<text class=\"empty\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">"
                      "no finite values to plot</text></svg>", CH_W / 2, CH_H / 2);
    return;
  }
  wk_chart_grid(b, c, &a);
  for (int s = 0; s < c->n_series; s++) wk_chart_series(b, c, &a, s);
  wk_chart_legend(b, c);
  wk_rbuf_printf(b, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
                 (CH_L + CH_W - CH_R) / 2, CH_H - 10);
  wk_rbuf_put_html(b, c->x_label);
  wk_rbuf_printf(b, "</text><text class=\"label\" transform=\"translate(16 %d) rotate(-90)\" "
                    "text-anchor=\"middle\">", (CH_T + CH_H - CH_B) / 2);
  wk_rbuf_put_html(b, c->y_label);
  wk_rbuf_puts(b, "</text></svg>\n");
}
