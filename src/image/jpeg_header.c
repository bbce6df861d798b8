/* jpeg_header.c - walks a JPEG's marker segments up to the first scan: the
 * frame size (SOFn) and the EXIF orientation (APP1 "Exif"). Needs no foreign
 * library, so probing a file is cheap; every length is checked against the
 * buffer. */
#include "image/image_impl.h"

#include <string.h>

enum {
  WK_JPEG_SOI = 0xD8,
  WK_JPEG_EOI = 0xD9,
  WK_JPEG_SOS = 0xDA,
  WK_JPEG_APP1 = 0xE1,
  WK_JPEG_TEM = 0x01,
};

static bool wk_jpeg_is_sof(int m) {
  return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* Processes libjpeg-turbo 2.1 cannot decode: lossless (SOF3, SOF7, SOF11,
 * SOF15) and hierarchical (SOF5..7, SOF13..15). */
static const char *wk_jpeg_unsupported_process(int m) {
  switch (m) {
    case 0xC3: case 0xCB: return "lossless";
    case 0xC5: case 0xC6: case 0xC7: case 0xCD: case 0xCE: case 0xCF: return "hierarchical";
    default: return NULL;
  }
}

wk_status wk_jpeg_read_header(const uint8_t *p, size_t n, const char *name, wk_header *h) {
  memset(h, 0, sizeof *h);
  h->format = WK_FORMAT_JPEG;
  h->orientation = 1;
  bool have_sof = false, have_exif = false;
  size_t pos = 2; /* after SOI */
  for (;;) {
    /* Like libjpeg, skip junk before a marker and any 0xFF fill bytes. */
    while (pos < n && p[pos] != 0xFF) pos++;
    while (pos < n && p[pos] == 0xFF) pos++;
    if (pos >= n)
      return wk_fail(WK_ERR_FORMAT, "%s: truncated JPEG: the file ends in its header", name);
    int m = p[pos++];
    if (m == 0x00) continue; /* FF 00 outside a scan: junk, as libjpeg skips it */
    if (m == WK_JPEG_SOI || m == WK_JPEG_TEM || (m >= 0xD0 && m <= 0xD7)) continue;
    if (m == WK_JPEG_EOI)
      return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: end of image before any scan", name);
    if (n - pos < 2)
      return wk_fail(WK_ERR_FORMAT, "%s: truncated JPEG: the file ends in its header", name);
    size_t len = (size_t)p[pos] << 8 | p[pos + 1];
    if (len < 2)
      return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: marker 0x%02X has length %zu", name, m,
                     len);
    if (m == WK_JPEG_SOS) {
      if (!have_sof)
        return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: a scan before the frame header", name);
      return WK_OK;
    }
    if (n - pos < len)
      return wk_fail(WK_ERR_FORMAT, "%s: truncated JPEG: the file ends in its header", name);
    const uint8_t *seg = p + pos + 2;
    size_t seg_len = len - 2;
    if (wk_jpeg_is_sof(m) && !have_sof) {
      const char *process = wk_jpeg_unsupported_process(m);
      if (process)
        return wk_fail(WK_ERR_UNSUPPORTED, "%s: %s JPEG is not supported", name, process);
      if (seg_len < 6)
        return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: short frame header", name);
      if (seg[0] != 8)
        return wk_fail(WK_ERR_UNSUPPORTED, "%s: %d-bit JPEG is not supported (8-bit is)", name,
                       seg[0]);
      h->stored_height = seg[1] << 8 | seg[2];
      h->stored_width = seg[3] << 8 | seg[4];
      if (h->stored_height == 0)
        return wk_fail(WK_ERR_UNSUPPORTED, "%s: JPEG with its height in a DNL marker is not "
                       "supported", name);
      have_sof = true;
    } else if (m == WK_JPEG_APP1 && !have_exif && seg_len >= 6 && !memcmp(seg, "Exif\0\0", 6)) {
      h->orientation = wk_exif_orientation(seg + 6, seg_len - 6);
      have_exif = true;
    }
    pos += len;
  }
}
