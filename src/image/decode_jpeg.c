/* decode_jpeg.c - JPEG through libjpeg-turbo's TurboJPEG API (the tj v2 API of
 * Debian 12's libturbojpeg 2.1.5), with DCT scaling, CMYK/YCCK conversion and
 * EXIF orientation.
 *
 * Every tj call is checked. TurboJPEG reports libjpeg's recoverable warnings
 * as a -1 return with tjGetErrorCode() == TJERR_WARNING after decoding the
 * whole picture; a warning that means the data ended early ("Premature end of
 * JPEG file", "premature end of data segment") makes the file truncated, and
 * the others (extraneous bytes before a marker, a bad Huffman code) are
 * tolerated as PIL tolerates them.
 *
 * TurboJPEG 2's header reader refuses chroma subsamplings outside its list
 * (4:1:0, 3x1, components sampled unlike each other): valid files that PIL
 * opens. Those go through libjpeg's own API (the same library underneath),
 * with the same scaling, colour handling, scan limit and truncation rules. */
#include "image/image_impl.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>
#include <turbojpeg.h>

#include <jpeglib.h>

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

/* After a decode that libjpeg warned of (msg, its first warning): the
 * file's truncation, when a warning said the data ended early (`truncated`)
 * or no end-of-image marker follows its last scan; else WK_OK (other
 * warnings are tolerated, as PIL tolerates them). */
static wk_status wk_jpeg_warned(const char *name, const uint8_t *p, size_t n, const char *msg,
                                bool truncated) {
  if (truncated) return wk_fail(WK_ERR_FORMAT, "%s: truncated JPEG (%s)", name, msg);
  if (wk_no_eoi_after_scan(p, n))
    return wk_fail(WK_ERR_FORMAT, "%s: truncated JPEG (no end-of-image marker after its last "
                   "scan; libjpeg warned: %s)", name, msg);
  return WK_OK;
}

/* The decode's geometry and destination, once the frame's size w x hgt is
 * checked against the header's and the pixel limit: denom, the scaled stored size
 * (*sw, *sh), and where the decoder writes (out itself when nothing follows,
 * else the decoder's scratch, bpp bytes a pixel). */
static wk_status wk_jpeg_target(wk_decoder *dec, const char *name, const wk_decode_opts *o,
                                const wk_header *h, int w, int hgt, int bpp, bool cmyk,
                                wk_image *out, int *denom, int *sw, int *sh, uint8_t **dst) {
  if (w != h->stored_width || hgt != h->stored_height)
    return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: frame header says %d x %d, libjpeg %d x %d",
                   name, h->stored_width, h->stored_height, w, hgt);
  WK_TRY(wk_check_pixels(name, w, hgt, o->max_pixels));
  int disp_w, disp_h;
  wk_oriented_size(h->orientation, w, hgt, &disp_w, &disp_h);
  *denom = wk_jpeg_pick_denom(o, disp_w, disp_h);
  *sw = wk_scaled(w, *denom);
  *sh = wk_scaled(hgt, *denom);
  int ow, oh;
  wk_oriented_size(h->orientation, *sw, *sh, &ow, &oh);
  WK_TRY(wk_image_alloc(out, ow, oh));
  const bool direct = !cmyk && h->orientation == 1;
  *dst = direct ? out->data : wk_decoder_scratch(dec, (size_t)*sw * (size_t)*sh * (size_t)bpp);
  if (!*dst) return wk_fail(WK_ERR_NOMEM, "%s: cannot allocate %d x %d pixels", name, *sw, *sh);
  return WK_OK;
}

/* After the decode into dst: CMYK to RGB, then the orientation into out. */
static void wk_jpeg_finish(uint8_t *dst, int sw, int sh, bool cmyk, const wk_header *h,
                           wk_image *out) {
  if (cmyk) wk_cmyk_to_rgb(dst, (size_t)sw * (size_t)sh);
  if (cmyk || h->orientation != 1) wk_image_orient(dst, sw, sh, h->orientation, out);
}

/* ------------------------------------------------ libjpeg, for the rest */

/* TurboJPEG's TJFLAG_LIMITSCANS: a progressive file of more scans than this
 * is refused (each scan costs a pass over the coefficients: a denial of
 * service with a few bytes per scan). */
#define WK_JPEG_MAX_SCANS 500

typedef struct wk_jerr {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
  int warnings;
  char first[JMSG_LENGTH_MAX]; /* the first warning's text */
  bool truncated;              /* a warning that the data ended early */
  bool too_many_scans;
} wk_jerr;

static void wk_jerr_exit(j_common_ptr c) { longjmp(((wk_jerr *)c->err)->jump, 1); }

static void wk_jerr_emit(j_common_ptr c, int level) {
  wk_jerr *e = (wk_jerr *)c->err;
  if (level >= 0) return; /* trace messages */
  char msg[JMSG_LENGTH_MAX];
  c->err->format_message(c, msg);
  if (e->warnings++ == 0) snprintf(e->first, sizeof e->first, "%s", msg);
  if (wk_tj_truncation(msg)) e->truncated = true;
}

static void wk_jscan_limit(j_common_ptr c) {
  j_decompress_ptr d = (j_decompress_ptr)c;
  if (d->input_scan_number > WK_JPEG_MAX_SCANS) {
    ((wk_jerr *)c->err)->too_many_scans = true;
    longjmp(((wk_jerr *)c->err)->jump, 1);
  }
}

/* The libjpeg decode. Everything that must outlive a longjmp lives in *d and
 * *e (not in locals set after setjmp). */
static wk_status wk_jpeglib_decode(wk_decoder *dec, const uint8_t *p, size_t n, const char *name,
                                   const wk_decode_opts *o, const wk_header *h, wk_image *out,
                                   int *scale_denom) {
  struct jpeg_decompress_struct d;
  struct jpeg_progress_mgr prog = {.progress_monitor = wk_jscan_limit};
  wk_jerr e = {0};
  d.err = jpeg_std_error(&e.mgr);
  e.mgr.error_exit = wk_jerr_exit;
  e.mgr.emit_message = wk_jerr_emit;
  if (setjmp(e.jump)) {
    char msg[JMSG_LENGTH_MAX];
    if (e.too_many_scans) snprintf(msg, sizeof msg, "more than %d scans", WK_JPEG_MAX_SCANS);
    else e.mgr.format_message((j_common_ptr)&d, msg);
    jpeg_destroy_decompress(&d);
    return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: %s", name, msg);
  }
  jpeg_create_decompress(&d);
  d.progress = &prog;
  jpeg_mem_src(&d, p, (unsigned long)n);
  jpeg_read_header(&d, TRUE);
  const int w = (int)d.image_width, hgt = (int)d.image_height;
  const bool cmyk = d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK;
  int denom = 1, sw = 0, sh = 0;
  uint8_t *dst = NULL;
  wk_status st = wk_jpeg_target(dec, name, o, h, w, hgt, cmyk ? 4 : 3, cmyk, out, &denom, &sw,
                                &sh, &dst);
  if (st == WK_OK) {
    d.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    d.scale_num = 1;
    d.scale_denom = (unsigned)denom;
    jpeg_start_decompress(&d);
    if ((int)d.output_width != sw || (int)d.output_height != sh ||
        d.output_components != (cmyk ? 4 : 3))
      st = wk_fail(WK_ERR_BACKEND, "%s: libjpeg scaled %d x %d to %u x %u (%d components), not "
                   "%d x %d", name, w, hgt, d.output_width, d.output_height,
                   d.output_components, sw, sh);
  }
  const size_t row = (size_t)sw * (cmyk ? 4 : 3);
  while (st == WK_OK && d.output_scanline < d.output_height) {
    JSAMPROW r = dst + (size_t)d.output_scanline * row;
    jpeg_read_scanlines(&d, &r, 1);
  }
  if (st == WK_OK) jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  if (st == WK_OK && e.warnings > 0) st = wk_jpeg_warned(name, p, n, e.first, e.truncated);
  if (st != WK_OK) return st;
  wk_jpeg_finish(dst, sw, sh, cmyk, h, out);
  *scale_denom = denom;
  return WK_OK;
}

/* ------------------------------------------------ TurboJPEG */

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
     * a valid file with another (4:1:0, 3x1) goes to libjpeg itself */
    if (strstr(msg, "subsampling")) return wk_jpeglib_decode(dec, p, n, name, o, h, out,
                                                             scale_denom);
    return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG header: %s", name, msg);
  }
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  const int pf = cmyk ? TJPF_CMYK : TJPF_RGB;
  int denom, sw, sh;
  uint8_t *dst;
  WK_TRY(wk_jpeg_target(dec, name, o, h, w, hgt, tjPixelSize[pf], cmyk, out, &denom, &sw, &sh,
                        &dst));

  if (tjDecompress2(tj, p, (unsigned long)n, dst, sw, 0, sh, pf, TJFLAG_LIMITSCANS) != 0) {
    const char *msg = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) != TJERR_WARNING)
      return wk_fail(WK_ERR_FORMAT, "%s: corrupt JPEG: %s", name, msg);
    WK_TRY(wk_jpeg_warned(name, p, n, msg, wk_tj_truncation(msg)));
  }
  wk_jpeg_finish(dst, sw, sh, cmyk, h, out);
  *scale_denom = denom;
  return WK_OK;
}
