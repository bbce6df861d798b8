/* augment_colour.c - colour jitter as one affine map per sample, clamping and
 * normalisation, fused into the pass that writes the outputs.
 *
 * Each jitter op is affine on RGB in [0, 1]: brightness x -> f x; saturation
 * x -> f x + (1 - f) g(x) 1 with g the grey value (0.299, 0.587, 0.114) . x;
 * contrast x -> f x + (1 - f) m 1 with m the grey mean of the picture as it is
 * when contrast applies; hue a rotation of the (I, Q) chroma plane of YIQ,
 * which keeps the grey value. Composing them in the sample's order, with the
 * mean carried through each step, gives M x + c: what applying the ops one by
 * one without intermediate clamping would give. */
#include "data/augment_impl.h"

#include <math.h>
#include <string.h>

static const double wk_grey[3] = {0.299, 0.587, 0.114};

/* RGB -> YIQ (NTSC); its first row is the grey value. */
static const double wk_yiq[3][3] = {
    {0.299, 0.587, 0.114}, {0.596, -0.274, -0.322}, {0.211, -0.523, 0.312}};

typedef struct wk_affine {
  double m[3][3];
  double c[3];
} wk_affine;

static void wk_mat_mul(const double a[3][3], const double b[3][3], double out[3][3]) {
  double t[3][3];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) t[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
  memcpy(out, t, sizeof t);
}

static void wk_mat_vec(const double a[3][3], const double v[3], double out[3]) {
  double t[3];
  for (int i = 0; i < 3; i++) t[i] = a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2];
  memcpy(out, t, sizeof t);
}

static void wk_mat_inv(const double a[3][3], double out[3][3]) {
  double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
               a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
               a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      /* cofactor of a[j][i] */
      int r0 = (j + 1) % 3, r1 = (j + 2) % 3, c0 = (i + 1) % 3, c1 = (i + 2) % 3;
      out[i][j] = (a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0]) / det;
    }
}

/* Applies x -> L x + k after the current map (and to the running mean). */
static void wk_affine_then(wk_affine *t, const double l[3][3], const double k[3], double mean[3]) {
  wk_mat_mul(l, t->m, t->m);
  wk_mat_vec(l, t->c, t->c);
  wk_mat_vec(l, mean, mean);
  for (int i = 0; i < 3; i++) t->c[i] += k[i], mean[i] += k[i];
}

static void wk_jitter_step(wk_affine *t, wk_jitter_op op, float factor, double mean[3]) {
  double l[3][3] = {{0}}, k[3] = {0, 0, 0};
  double f = factor;
  switch (op) {
    case WK_JITTER_BRIGHTNESS:
      for (int i = 0; i < 3; i++) l[i][i] = f;
      break;
    case WK_JITTER_CONTRAST: {
      double m = wk_grey[0] * mean[0] + wk_grey[1] * mean[1] + wk_grey[2] * mean[2];
      for (int i = 0; i < 3; i++) l[i][i] = f, k[i] = (1.0 - f) * m;
      break;
    }
    case WK_JITTER_SATURATION:
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) l[i][j] = (i == j ? f : 0.0) + (1.0 - f) * wk_grey[j];
      break;
    case WK_JITTER_HUE: {
      /* A positive shift turns red towards yellow and green, as in HSV; in
       * (I, Q) that is a clockwise turn. */
      double th = -2.0 * 3.14159265358979323846 * f, co = cos(th), si = sin(th);
      double rot[3][3] = {{1, 0, 0}, {0, co, -si}, {0, si, co}}, inv[3][3];
      wk_mat_inv(wk_yiq, inv);
      wk_mat_mul(rot, wk_yiq, l);
      wk_mat_mul(inv, l, l);
      break;
    }
    case WK_JITTER_N: break;
  }
  wk_affine_then(t, l, k, mean);
}

/* Mean of each channel of n_px RGB pixels of [0, 255] values, as [0, 1].
 * Twelve partial sums (four pixels) per chunk of rows keep the additions
 * independent, so this vectorises; the order is fixed, so it is repeatable. */
static void wk_channel_means(const float *work, size_t n_px, double mean[3]) {
  enum { LANES = 12, CHUNK = 4096 };
  double total[3] = {0, 0, 0};
  size_t n = 3 * n_px, i = 0;
  while (i < n) {
    float acc[LANES] = {0};
    size_t end = i + CHUNK * LANES < n ? i + CHUNK * LANES : n;
    for (; i + LANES <= end; i += LANES)
      for (int l = 0; l < LANES; l++) acc[l] += work[i + (size_t)l];
    for (; i < end; i++) acc[i % 3] += work[i]; /* the tail: i % 3 is the channel here */
    for (int l = 0; l < LANES; l++) total[l % 3] += acc[l];
  }
  for (int ch = 0; ch < 3; ch++) mean[ch] = total[ch] / (255.0 * (double)n_px);
}

static bool wk_jitter_is_identity(const wk_augment_params *p) {
  return p->factor[WK_JITTER_BRIGHTNESS] == 1.0f && p->factor[WK_JITTER_CONTRAST] == 1.0f &&
         p->factor[WK_JITTER_SATURATION] == 1.0f && p->factor[WK_JITTER_HUE] == 0.0f;
}

void wk_augment_colour(const wk_augment_cfg *cfg, const wk_augment_params *p, float *work,
                       float *out_f32, uint8_t *out_u8) {
  const size_t n_px = (size_t)cfg->out_width * (size_t)cfg->out_height;
  /* The map on [0, 255] values, output in [0, 1]. */
  wk_affine t = {.m = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}, .c = {0, 0, 0}};
  if (!wk_jitter_is_identity(p)) {
    double mean[3] = {0, 0, 0};
    if (p->factor[WK_JITTER_CONTRAST] != 1.0f) wk_channel_means(work, n_px, mean);
    for (int k = 0; k < WK_JITTER_N; k++) {
      wk_jitter_op op = (wk_jitter_op)p->order[k];
      bool off = op == WK_JITTER_HUE ? p->factor[op] == 0.0f : p->factor[op] == 1.0f;
      if (!off) wk_jitter_step(&t, op, p->factor[op], mean);
    }
  }
  /* Three plain passes the compiler can vectorise: the colour map and clamp
   * in place, then each requested output. */
  const float m00 = (float)(t.m[0][0] / 255), m01 = (float)(t.m[0][1] / 255),
              m02 = (float)(t.m[0][2] / 255), m10 = (float)(t.m[1][0] / 255),
              m11 = (float)(t.m[1][1] / 255), m12 = (float)(t.m[1][2] / 255),
              m20 = (float)(t.m[2][0] / 255), m21 = (float)(t.m[2][1] / 255),
              m22 = (float)(t.m[2][2] / 255);
  const float c0 = (float)t.c[0], c1 = (float)t.c[1], c2 = (float)t.c[2];
  for (size_t i = 0; i < n_px; i++) {
    float *x = work + 3 * i;
    float r = m00 * x[0] + m01 * x[1] + m02 * x[2] + c0;
    float g = m10 * x[0] + m11 * x[1] + m12 * x[2] + c1;
    float b = m20 * x[0] + m21 * x[1] + m22 * x[2] + c2;
    x[0] = r < 0.0f ? 0.0f : r > 1.0f ? 1.0f : r;
    x[1] = g < 0.0f ? 0.0f : g > 1.0f ? 1.0f : g;
    x[2] = b < 0.0f ? 0.0f : b > 1.0f ? 1.0f : b;
  }
  if (out_f32) {
    const float s0 = 1.0f / cfg->std[0], s1 = 1.0f / cfg->std[1], s2 = 1.0f / cfg->std[2];
    const float h0 = -cfg->mean[0] * s0, h1 = -cfg->mean[1] * s1, h2 = -cfg->mean[2] * s2;
    for (size_t i = 0; i < n_px; i++) {
      out_f32[3 * i] = work[3 * i] * s0 + h0;
      out_f32[3 * i + 1] = work[3 * i + 1] * s1 + h1;
      out_f32[3 * i + 2] = work[3 * i + 2] * s2 + h2;
    }
  }
  if (out_u8)
    for (size_t i = 0; i < 3 * n_px; i++) out_u8[i] = (uint8_t)(work[i] * 255.0f + 0.5f);
}
