/* decode_jpeg.c - JPEG through libjpeg-turbo's TurboJPEG API (the tj v2 API of
 * Debian 12's libturbojpeg 2.1.5), with DCT scaling, CMYK/YCCK conversion and
 * EXIF orientation.
 *
 * Every tj call is checked. TurboJPEG reports libjpeg's recoverable warnings
 * as a -1 return with tjGetErrorCode() == TJERR_WARNING after decoding the
 * whole picture; a warning that means the data ended early ("Premature end of
 * JPEG file", "premature end of data segment") makes the file truncated, and
 * the others (extraneous bytes before a marker, a bad Huffman code) are
 * tolerated as PIL tolerates them. */
#include "image/image_impl.h"

#include <string.h>
#include <turbojpeg.h>

/* The scales whisker decodes at: powers of two, the fastest IDCT paths and
 * the ones PIL's draft() uses. */
static const int wk_jpeg_denoms[] = {8, 4, 2};

static int wk_scaled(int dim, int denom) { return (dim + denom - 1) / denom; }

static bool wk_tj_has_scale(int denom) {
  int n = 0;
  tjscalingfactor *sf = tjGetScalingFactors(&n);
  for (int i = 0; sf && i < n; i++)
    if (sf[i].num == 1 && sf[i].denom == denom) return true;
  return false;
}

/* The largest denominator whose displayed size still meets the minimum. */
static int wk_jpeg_pick_denom(const wk_decode_opts *o, int disp_w, int disp_h) {
  if (o->min_width <= 0 && o->min_height <= 0) return 1;
  for (size_t i = 0; i < sizeof wk_jpeg_denoms / sizeof wk_jpeg_denoms[0]; i++) {
    int d = wk_jpeg_denoms[i];
    if (wk_scaled(disp_w, d) >= o->min_width && wk_scaled(disp_h, d) >= o->min_height &&
        wk_tj_has_scale(d))
      return d;
  }
  return 1;
}

static bool wk_tj_truncation(const char *msg) {
  return strstr(msg, "Premature end") || strstr(msg, "premature end");
}

/* Whether the file has no end-of-image marker (FF D9) after its last
 * start-of-scan (FF DA): cut short. TurboJPEG keeps only its first warning's
 * text, so a truncation after an earlier warning ("extraneous bytes before
 * marker", common in scraped photos) is not in the message, and the missing
 * part would decode grey. (Trailing bytes after the EOI are fine.) */
static bool wk_no_eoi_after_scan(const uint8_t *p, size_t n) {
  size_t sos = 0;
  bool have_sos = false;
  for (size_t i = n; i-- > 1;)
    if (p[i - 1] == 0xFF && p[i] == 0xDA) {
      sos = i;
      have_sos = true;
      break;
    }
  if (!have_sos) return true;
  for (size_t i = sos + 1; i + 1 < n; i++)
    if (p[i] == 0xFF && p[i + 1] == 0xD9) return false;
  return true;
}

/* Adobe-style CMYK (samples stored inverted, as PIL assumes for every CMYK
 * JPEG) to RGB exactly as PIL 9's cmyk2rgb: with s the stored samples,
 * r = s3 - round(s3 * (255 - s0) / 255). In place, 4 bytes to 3. */
static void wk_cmyk_to_rgb(uint8_t *px, size_t n_px) {
  for (size_t i = 0; i < n_px; i++) {
    const uint8_t *s = px + 4 * i;
    uint32_t nk = s[3];
    uint32_t t0 = (255u - s[0]) * nk + 128u, t1 = (255u - s[1]) * nk + 128u,
             t2 = (255u - s[2]) * nk + 128u;
    uint8_t *d = px + 3 * i;
    d[0] = (uint8_t)(nk - ((t0 + (t0 >> 8)) >> 8));
    d[1] = (uint8_t)(nk - ((t1 + (t1 >> 8)) >> 8));
    d[2] = (uint8_t)(nk - ((t2 + (t2 >> 8)) >> 8));
  }
}

wk_status wk_jpeg_decode(wk_decoder *dec, const uint8_t *p, size_t n, const char *name,
                         const wk_decode_opts *o, const wk_header *h, wk_image *out,
                         int *scale_denom) {
  if (!dec->tj) {
    dec->tj = tjInitDecompress();
    if (!dec->tj)
      return wk_fail(WK_ERR_BACKEND, "%s: tjInitDecompress: %s", name, tjGetErrorStr2(NULL));
  }
  tjhandle tj = dec->tj;
  int w = 0, hgt = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, p, (unsigned long)n, &w, &hgt, &subsamp, &colorspace) != 0 &&
      (tjGetErrorCode(tj) != TJERR_WARNING || w <= 0 || hgt <= 0)) {
    const char *msg = tjGetErrorStr2(tj);
    /* TurboJPEG 2's header reader takes only its known chroma subsamplings:
     * a valid file with another (4:1:0, 3x1) is not corrupt */
    if (strstr(msg, "subsampling"))
      return wk_fail(WK_ERR_UNSUPPORTED, "%s: a JPEG with a chroma subsampling this decoder "
                     "does not take (%s)", name, msg);
    return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG header: %s", name, msg);
  }
  if (w != h->stored_width || hgt != h->stored_height)
    return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: frame header says %d x %d, libjpeg %d x %d",
                   name, h->stored_width, h->stored_height, w, hgt);
  WK_TRY(wk_check_pixels(name, w, hgt, o->max_pixels));

  int disp_w, disp_h;
  wk_oriented_size(h->orientation, w, hgt, &disp_w, &disp_h);
  int denom = wk_jpeg_pick_denom(o, disp_w, disp_h);
  int sw = wk_scaled(w, denom), sh = wk_scaled(hgt, denom);
  bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  int pf = cmyk ? TJPF_CMYK : TJPF_RGB;
  size_t px = (size_t)sw * (size_t)sh;

  /* Decode straight into out when nothing follows; else into scratch. */
  int ow, oh;
  wk_oriented_size(h->orientation, sw, sh, &ow, &oh);
  WK_TRY(wk_image_alloc(out, ow, oh));
  bool direct = !cmyk && h->orientation == 1;
  uint8_t *dst = direct ? out->data : wk_decoder_scratch(dec, px * (size_t)tjPixelSize[pf]);
  if (!dst) return wk_fail(WK_ERR_NOMEM, "%s: cannot allocate %d x %d pixels", name, sw, sh);

  if (tjDecompress2(tj, p, (unsigned long)n, dst, sw, 0, sh, pf, TJFLAG_LIMITSCANS) != 0) {
    const char *msg = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) != TJERR_WARNING)
      return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: %s", name, msg);
    if (wk_tj_truncation(msg))
      return wk_fail(WK_ERR_FORMAT, "%s: truncated JPEG (%s)", name, msg);
    if (wk_no_eoi_after_scan(p, n))
      return wk_fail(WK_ERR_FORMAT, "%s: truncated JPEG (no end-of-image marker after its last "
                     "scan; libjpeg warned: %s)", name, msg);
  }
  if (cmyk) wk_cmyk_to_rgb(dst, px);
  if (!direct) wk_image_orient(dst, sw, sh, h->orientation, out);
  *scale_denom = denom;
  return WK_OK;
}
