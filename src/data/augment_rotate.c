/* augment_rotate.c - a crop turned by a small angle about its centre.
 *
 * Two steps keep the antialiasing of the plain crop: the source region the
 * turned crop covers is first resampled (image/resize.h) to the output's
 * scale, then each output pixel is read from it bilinearly at the turned
 * position. Output pixels whose source position is outside the picture are
 * black. */
#include "data/augment_impl.h"

#include <math.h>
#include <stdlib.h>

static double wk_clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

wk_status wk_augment_rotate(wk_augmenter *a, const wk_image *img, const double box[4],
                            float angle_deg, bool flip, float *work) {
  const wk_augment_cfg *c = &a->cfg;
  const int ow = c->out_width, oh = c->out_height;
  const double cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
  /* output pixels per source pixel */
  const double sx = ow / (box[2] - box[0]), sy = oh / (box[3] - box[1]);
  const double th = angle_deg * (3.14159265358979323846 / 180.0), co = cos(th), si = sin(th);

  /* The source region under the turned output, with a pixel to spare, clipped. */
  double hx = (fabs(co) * ow + fabs(si) * oh) / 2 + 1, hy = (fabs(si) * ow + fabs(co) * oh) / 2 + 1;
  double x0 = wk_clampd(cx - hx / sx, 0, img->width), x1 = wk_clampd(cx + hx / sx, 0, img->width);
  double y0 = wk_clampd(cy - hy / sy, 0, img->height), y1 = wk_clampd(cy + hy / sy, 0, img->height);
  int iw = (int)ceil((x1 - x0) * sx), ih = (int)ceil((y1 - y0) * sy);
  if (iw < 1) iw = 1;
  if (ih < 1) ih = 1;
  size_t need = (size_t)iw * (size_t)ih * 3;
  if (need > a->rot_elems) {
    float *p = realloc(a->rot, need * sizeof *p);
    if (!p) return wk_fail(WK_ERR_NOMEM, "augment: out of memory for rotation");
    a->rot = p;
    a->rot_elems = need;
  }
  /* an exact output-pixel grid: the box may end a fraction past the picture */
  const double rbox[4] = {x0, y0, x0 + iw / sx, y0 + ih / sy};
  WK_TRY(wk_resize_f32(img, rbox, WK_BOX_RESIZE_THEN_CROP, iw, ih, c->filter, false, &a->rs,
                       a->rot));

  const float *r = a->rot;
  for (int v = 0; v < oh; v++) {
    for (int u = 0; u < ow; u++) {
      double du = u + 0.5 - ow / 2.0, dv = v + 0.5 - oh / 2.0;
      double ru = co * du - si * dv, rv = si * du + co * dv; /* output px, turned */
      double X = cx + ru / sx, Y = cy + rv / sy;              /* source px */
      float *d = work + ((size_t)v * (size_t)ow + (size_t)(flip ? ow - 1 - u : u)) * 3;
      if (X < 0 || X >= img->width || Y < 0 || Y >= img->height) {
        d[0] = d[1] = d[2] = 0.0f;
        continue;
      }
      double fx = (X - x0) * sx - 0.5, fy = (Y - y0) * sy - 0.5;
      double flx = floor(fx), fly = floor(fy);
      float ax = (float)(fx - flx), ay = (float)(fy - fly);
      int xa = (int)wk_clampd(flx, 0, iw - 1), xb = (int)wk_clampd(flx + 1, 0, iw - 1);
      int ya = (int)wk_clampd(fly, 0, ih - 1), yb = (int)wk_clampd(fly + 1, 0, ih - 1);
      const float *p00 = r + ((size_t)ya * (size_t)iw + (size_t)xa) * 3;
      const float *p01 = r + ((size_t)ya * (size_t)iw + (size_t)xb) * 3;
      const float *p10 = r + ((size_t)yb * (size_t)iw + (size_t)xa) * 3;
      const float *p11 = r + ((size_t)yb * (size_t)iw + (size_t)xb) * 3;
      for (int ch = 0; ch < 3; ch++) {
        float top = p00[ch] + ax * (p01[ch] - p00[ch]);
        float bot = p10[ch] + ax * (p11[ch] - p10[ch]);
        d[ch] = top + ay * (bot - top);
      }
    }
  }
  return WK_OK;
}
