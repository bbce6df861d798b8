/* resize.c - separable antialiased resampling: coefficients per output pixel
 * (PIL's precompute_coeffs), a vertical pass over only the source columns the
 * horizontal filter reaches, then a horizontal pass. (PIL goes horizontal
 * first and rounds to 8 bits in between; in float the order changes nothing
 * but rounding, and vertical first is cheaper for the shrinking crops of
 * training: the long vectorised loops see the larger input.) */
#include "image/resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct wk_axis {
  int out_size;
  int ksize;        /* taps per output pixel (the row length of `w`) */
  int *first;       /* (out_size) first source index */
  int *count;       /* (out_size) taps used, <= ksize */
  float *w;         /* (out_size, ksize) normalised weights */
} wk_axis;

static double wk_filter_support(wk_resample f) { return f == WK_RESAMPLE_AREA ? 0.5 : 1.0; }

static double wk_filter(wk_resample f, double x) {
  if (f == WK_RESAMPLE_AREA) return x > -0.5 && x <= 0.5 ? 1.0 : 0.0;
  if (x < 0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

static int wk_axis_ksize(double in0, double in1, int out_size, wk_resample f) {
  double scale = (in1 - in0) / out_size;
  double support = wk_filter_support(f) * (scale < 1.0 ? 1.0 : scale);
  return (int)ceil(support) * 2 + 1;
}

/* PIL's precompute_coeffs: weights in double, normalised to sum 1, stored
 * as float (the filter is evaluated twice rather than kept in a buffer).
 * Taps are limited to source pixels [lo, hi). */
static void wk_axis_fill(wk_axis *a, int lo, int hi, double in0, double in1, wk_resample f) {
  double scale = (in1 - in0) / a->out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = wk_filter_support(f) * filterscale;
  double ss = 1.0 / filterscale;
  for (int o = 0; o < a->out_size; o++) {
    double center = in0 + (o + 0.5) * scale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < lo) xmin = lo;
    if (xmin > hi) xmin = hi; /* an output past the source's edge (a box reaching beyond
                               * it): no taps, and its first no further than the edge,
                               * which bounds the columns the passes read */
    int xmax = (int)(center + support + 0.5);
    if (xmax > hi) xmax = hi;
    int n = xmax - xmin;
    if (n < 0) n = 0;
    if (n > a->ksize) n = a->ksize;
    double ww = 0.0;
    for (int x = 0; x < n; x++) ww += wk_filter(f, (x + xmin - center + 0.5) * ss);
    float *w = a->w + (size_t)o * (size_t)a->ksize;
    for (int x = 0; x < a->ksize; x++) {
      double v = x < n ? wk_filter(f, (x + xmin - center + 0.5) * ss) : 0.0;
      w[x] = ww != 0.0 ? (float)(v / ww) : 0.0f;
    }
    a->first[o] = xmin;
    a->count[o] = n;
  }
}

/* Grows a scratch array (keeping the old one on failure); NULL when out of memory. */
static void *wk_reserve(void *p, size_t *have, size_t want, size_t elem) {
  if (want <= *have && p) return p;
  void *q = realloc(p, (want ? want : 1) * elem);
  if (!q) return NULL;
  *have = want;
  return q;
}

void wk_resize_scratch_free(wk_resize_scratch *s) {
  free(s->f);
  free(s->t);
  free(s->i);
  memset(s, 0, sizeof *s);
}

/* Vertical pass first, on the 8-bit rows: every output row is a weighted sum
 * of whole source rows (columns x0..x1 only), a loop the compiler
 * vectorises. tmp: (out_h, x1 - x0, 3). */
static void wk_vpass(const wk_image *src, const wk_axis *ay, int x0, int x1, float *tmp) {
  const size_t span = (size_t)(x1 - x0) * 3;
  for (int o = 0; o < ay->out_size; o++) {
    float *d = tmp + (size_t)o * span;
    const float *w = ay->w + (size_t)o * (size_t)ay->ksize;
    for (size_t i = 0; i < span; i++) d[i] = 0.0f;
    for (int k = 0; k < ay->count[o]; k++) {
      const uint8_t *s =
          src->data + (size_t)(ay->first[o] + k) * src->stride_bytes + (size_t)x0 * 3;
      const float wk = w[k];
      for (size_t i = 0; i < span; i++) d[i] += wk * (float)s[i];
    }
  }
}

/* Then the horizontal pass on the float rows, mirrored when asked. */
static void wk_hpass(const float *tmp, int x0, int x1, const wk_axis *ax, int out_h, bool flip,
                     float *out) {
  const int ow = ax->out_size;
  const size_t span = (size_t)(x1 - x0) * 3;
  for (int y = 0; y < out_h; y++) {
    const float *row = tmp + (size_t)y * span;
    float *t = out + (size_t)y * (size_t)ow * 3;
    for (int o = 0; o < ow; o++) {
      const float *s = row + (size_t)(ax->first[o] - x0) * 3;
      const float *w = ax->w + (size_t)o * (size_t)ax->ksize;
      float r = 0.0f, g = 0.0f, b = 0.0f;
      for (int k = 0; k < ax->count[o]; k++) {
        r += w[k] * s[3 * k];
        g += w[k] * s[3 * k + 1];
        b += w[k] * s[3 * k + 2];
      }
      float *d = t + (size_t)(flip ? ow - 1 - o : o) * 3;
      d[0] = r;
      d[1] = g;
      d[2] = b;
    }
  }
}

/* The source pixels the filters may read along one axis. */
static void wk_axis_bounds(wk_box_mode mode, double b0, double b1, int size, int *lo, int *hi) {
  *lo = 0;
  *hi = size;
  if (mode == WK_BOX_CROP_THEN_RESIZE) {
    double f = floor(b0), c = ceil(b1);
    if (f > 0) *lo = f < size ? (int)f : size;
    if (c < size) *hi = c > 0 ? (int)c : 0;
  }
}

wk_status wk_resize_f32(const wk_image *src, const double box[4], wk_box_mode mode, int out_w,
                        int out_h, wk_resample filter, bool flip_x, wk_resize_scratch *sc,
                        float *out) {
  const double w = src->width, h = src->height;
  if (out_w <= 0 || out_h <= 0 || src->width <= 0 || src->height <= 0 ||
      !(box[2] > box[0]) || !(box[3] > box[1]) || !(box[0] >= -w) || !(box[2] <= 2 * w) ||
      !(box[1] >= -h) || !(box[3] <= 2 * h))
    return wk_fail(WK_ERR_INVALID_ARG,
                   "resize: box (%g, %g, %g, %g) of a %d x %d image to %d x %d", box[0], box[1],
                   box[2], box[3], src->width, src->height, out_w, out_h);
  wk_axis ax = {.out_size = out_w, .ksize = wk_axis_ksize(box[0], box[2], out_w, filter)};
  wk_axis ay = {.out_size = out_h, .ksize = wk_axis_ksize(box[1], box[3], out_h, filter)};
  size_t n_int = 2 * ((size_t)out_w + (size_t)out_h);
  size_t n_w = (size_t)out_w * (size_t)ax.ksize + (size_t)out_h * (size_t)ay.ksize;
  int *ints = wk_reserve(sc->i, &sc->i_elems, n_int, sizeof *ints);
  if (ints) sc->i = ints;
  float *weights = wk_reserve(sc->f, &sc->f_elems, n_w, sizeof *weights);
  if (weights) sc->f = weights;
  if (!ints || !weights)
    return wk_fail(WK_ERR_NOMEM, "resize: out of memory for %d x %d", out_w, out_h);
  ax.first = sc->i;
  ax.count = ax.first + out_w;
  ay.first = ax.count + out_w;
  ay.count = ay.first + out_h;
  ax.w = sc->f;
  ay.w = ax.w + (size_t)out_w * (size_t)ax.ksize;
  int xlo, xhi, ylo, yhi;
  wk_axis_bounds(mode, box[0], box[2], src->width, &xlo, &xhi);
  wk_axis_bounds(mode, box[1], box[3], src->height, &ylo, &yhi);
  wk_axis_fill(&ax, xlo, xhi, box[0], box[2], filter);
  wk_axis_fill(&ay, ylo, yhi, box[1], box[3], filter);

  /* the source columns the horizontal filter reaches (first[] never decreases) */
  int x0 = ax.first[0];
  int x1 = ax.first[out_w - 1] + ax.count[out_w - 1];
  if (x1 < x0) x1 = x0;
  size_t n_tmp = (size_t)(x1 - x0) * (size_t)out_h * 3;
  float *tmp = wk_reserve(sc->t, &sc->t_elems, n_tmp, sizeof *tmp);
  if (!tmp) return wk_fail(WK_ERR_NOMEM, "resize: out of memory for %d x %d", out_w, out_h);
  sc->t = tmp;
  wk_vpass(src, &ay, x0, x1, tmp);
  wk_hpass(tmp, x0, x1, &ax, out_h, flip_x, out);
  return WK_OK;
}

wk_status wk_image_resize(const wk_image *src, const double *box, int out_w, int out_h,
                          wk_resample filter, wk_image *dst) {
  double whole[4] = {0.0, 0.0, src->width, src->height};
  if (!box) box = whole;
  if (out_w <= 0 || out_h <= 0 || (int64_t)out_w * out_h > WK_IMAGE_MAX_PIXELS)
    return wk_fail(WK_ERR_INVALID_ARG, "resize: invalid output size %d x %d", out_w, out_h);
  float *f = malloc((size_t)out_w * (size_t)out_h * 3 * sizeof *f);
  if (!f) return wk_fail(WK_ERR_NOMEM, "resize: out of memory for %d x %d", out_w, out_h);
  wk_resize_scratch sc = {0};
  wk_status s = wk_resize_f32(src, box, WK_BOX_RESIZE_THEN_CROP, out_w, out_h, filter, false,
                              &sc, f);
  if (s == WK_OK) s = wk_image_alloc(dst, out_w, out_h);
  if (s == WK_OK) {
    for (int y = 0; y < out_h; y++) {
      const float *r = f + (size_t)y * (size_t)out_w * 3;
      uint8_t *d = dst->data + (size_t)y * dst->stride_bytes;
      for (int i = 0; i < out_w * 3; i++) {
        float v = r[i] + 0.5f;
        d[i] = (uint8_t)(v <= 0.0f ? 0 : v >= 255.0f ? 255 : (int)v);
      }
    }
  }
  wk_resize_scratch_free(&sc);
  free(f);
  return s;
}
