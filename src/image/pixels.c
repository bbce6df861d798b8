/* pixels.c - pixel transforms shared by the decoders: EXIF orientation and
 * alpha removal. */
#include "image/image_impl.h"

#include <string.h>

void wk_oriented_size(int orientation, int stored_w, int stored_h, int *w, int *h) {
  bool swap = orientation >= 5 && orientation <= 8;
  *w = swap ? stored_h : stored_w;
  *h = swap ? stored_w : stored_h;
}

/* EXIF orientation says how the stored picture must be turned to be upright;
 * for each displayed pixel (x, y) the stored pixel is (x0 + x*dxx + y*dxy,
 * y0 + x*dyx + y*dyy), with the starting corner and steps below. The table
 * matches PIL's ImageOps.exif_transpose (2: mirror, 3: rotate 180, 4: flip,
 * 5: transpose, 6: rotate 90 clockwise, 7: transverse, 8: rotate 90
 * counter-clockwise). */
void wk_image_orient(const uint8_t *src, int sw, int sh, int orientation, wk_image *dst) {
  int dw, dh;
  wk_oriented_size(orientation, sw, sh, &dw, &dh);
  WK_ASSERT(dst->width == dw && dst->height == dh);
  int x0 = 0, y0 = 0, dxx = 1, dxy = 0, dyx = 0, dyy = 1;
  switch (orientation) {
    case 2: x0 = sw - 1; dxx = -1; break;
    case 3: x0 = sw - 1; y0 = sh - 1; dxx = -1; dyy = -1; break;
    case 4: y0 = sh - 1; dyy = -1; break;
    case 5: dxx = 0; dxy = 1; dyx = 1; dyy = 0; break;
    case 6: y0 = sh - 1; dxx = 0; dxy = 1; dyx = -1; dyy = 0; break;
    case 7: x0 = sw - 1; y0 = sh - 1; dxx = 0; dxy = -1; dyx = -1; dyy = 0; break;
    case 8: x0 = sw - 1; dxx = 0; dxy = -1; dyx = 1; dyy = 0; break;
    default: break;
  }
  const ptrdiff_t sstride = (ptrdiff_t)sw * 3;
  const ptrdiff_t step = (ptrdiff_t)dxx * 3 + (ptrdiff_t)dyx * sstride; /* one displayed x */
  for (int y = 0; y < dh; y++) {
    ptrdiff_t off = (ptrdiff_t)(y0 + y * dyy) * sstride + (ptrdiff_t)(x0 + y * dxy) * 3;
    uint8_t *d = dst->data + (size_t)y * dst->stride_bytes;
    for (int x = 0; x < dw; x++, off += step, d += 3) {
      d[0] = src[off];
      d[1] = src[off + 1];
      d[2] = src[off + 2];
    }
  }
}

void wk_rgba_to_rgb(uint8_t *px, size_t n_px, wk_alpha_mode mode) {
  /* Forward in place: pixel i is written at 3i <= 4i, after it was read. */
  for (size_t i = 0; i < n_px; i++) {
    const uint8_t *s = px + 4 * i;
    uint8_t r = s[0], g = s[1], b = s[2], a = s[3];
    if (mode == WK_ALPHA_WHITE) {
      /* round((c*a + 255*(255-a)) / 255), bit-exact with PIL's alpha_composite */
      uint32_t ta = a, tw = 255u * (255u - ta) + 128u;
      uint32_t tr = r * ta + tw, tg = g * ta + tw, tb = b * ta + tw;
      r = (uint8_t)((tr + (tr >> 8)) >> 8);
      g = (uint8_t)((tg + (tg >> 8)) >> 8);
      b = (uint8_t)((tb + (tb >> 8)) >> 8);
    }
    uint8_t *d = px + 3 * i;
    d[0] = r;
    d[1] = g;
    d[2] = b;
  }
}
