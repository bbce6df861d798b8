/* exif.c - the orientation tag of an EXIF block, read with every offset
 * checked against the block's size. Only IFD0 is read: that is where
 * Orientation (tag 0x0112) lives. */
#include "image/image_impl.h"

static uint32_t wk_exif_u16(const uint8_t *p, bool big_endian) {
  return big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t wk_exif_u32(const uint8_t *p, bool big_endian) {
  return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                    : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

enum {
  WK_EXIF_TAG_ORIENTATION = 0x0112,
  WK_EXIF_TYPE_SHORT = 3,
  WK_EXIF_ENTRY_BYTES = 12,
};

int wk_exif_orientation(const uint8_t *t, size_t n) {
  /* TIFF header: byte order "II" or "MM", 42, offset of IFD0 */
  if (!t || n < 8) return 1;
  bool be;
  if (t[0] == 'I' && t[1] == 'I') be = false;
  else if (t[0] == 'M' && t[1] == 'M') be = true;
  else return 1;
  if (wk_exif_u16(t + 2, be) != 42) return 1;
  uint32_t ifd = wk_exif_u32(t + 4, be);
  if (ifd < 8 || ifd > n - 2) return 1;
  uint32_t count = wk_exif_u16(t + ifd, be);
  if (count > (n - ifd - 2) / WK_EXIF_ENTRY_BYTES) return 1;
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *e = t + ifd + 2 + (size_t)i * WK_EXIF_ENTRY_BYTES;
    if (wk_exif_u16(e, be) != WK_EXIF_TAG_ORIENTATION) continue;
    /* a SHORT, count 1, stored in the first two bytes of the value field */
    if (wk_exif_u16(e + 2, be) != WK_EXIF_TYPE_SHORT || wk_exif_u32(e + 4, be) < 1) return 1;
    uint32_t v = wk_exif_u16(e + 8, be);
    return v >= 1 && v <= 8 ? (int)v : 1;
  }
  return 1;
}
