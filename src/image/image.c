/* image.c - image buffers, the decoder object and the format dispatch: the
 * first bytes of a file (never its name) decide which decoder runs. */
#include "image/image_impl.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "core/file_kind.h"
#include "core/log.h"

int64_t wk_image_max_pixels(void) {
  static atomic_int warned;
  const char *env = getenv(WK_IMAGE_MAX_PIXELS_ENV);
  if (!env || !*env) return WK_IMAGE_MAX_PIXELS;
  char *end;
  errno = 0;
  long long v = strtoll(env, &end, 10);
  if (errno == 0 && *end == '\0' && v >= 1 && v <= ((long long)1 << 40)) return (int64_t)v;
  if (!atomic_exchange(&warned, 1))
    WK_LOG_W("%s=%s is not an integer in [1, 2^40]; using the default pixel limit %lld",
             WK_IMAGE_MAX_PIXELS_ENV, env, (long long)WK_IMAGE_MAX_PIXELS);
  return WK_IMAGE_MAX_PIXELS;
}

wk_decode_opts wk_decode_opts_default(void) {
  wk_decode_opts o = {.max_pixels = wk_image_max_pixels(), .alpha = WK_ALPHA_DROP};
  return o;
}

const char *wk_image_format_name(wk_image_format format) {
  switch (format) {
    case WK_FORMAT_JPEG: return "JPEG";
    case WK_FORMAT_PNG: return "PNG";
    case WK_FORMAT_UNKNOWN: break;
  }
  return "unknown";
}

wk_status wk_image_alloc(wk_image *img, int width, int height) {
  if (width <= 0 || height <= 0)
    return wk_fail(WK_ERR_INVALID_ARG, "image: invalid size %d x %d", width, height);
  size_t bytes = (size_t)width * (size_t)height * 3;
  if (bytes > img->capacity_bytes) {
    uint8_t *p = malloc(bytes);
    if (!p) return wk_fail(WK_ERR_NOMEM, "image: cannot allocate %d x %d pixels", width, height);
    if (img->capacity_bytes) free(img->data);
    img->data = p;
    img->capacity_bytes = bytes;
  }
  img->width = width;
  img->height = height;
  img->stride_bytes = (size_t)width * 3;
  return WK_OK;
}

void wk_image_free(wk_image *img) {
  if (img->capacity_bytes) free(img->data);
  memset(img, 0, sizeof *img);
}

wk_status wk_decoder_create(wk_decoder **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return wk_fail(WK_ERR_NOMEM, "decoder: out of memory");
  return WK_OK;
}

void wk_decoder_destroy(wk_decoder *dec) {
  if (!dec) return;
  if (dec->tj) tjDestroy(dec->tj); /* nothing useful to do with a failure here */
  free(dec->scratch);
  free(dec);
}

uint8_t *wk_decoder_scratch(wk_decoder *dec, size_t bytes) {
  if (bytes > dec->scratch_bytes) {
    uint8_t *p = malloc(bytes);
    if (!p) return NULL;
    free(dec->scratch);
    dec->scratch = p;
    dec->scratch_bytes = bytes;
  }
  return dec->scratch;
}

wk_status wk_check_pixels(const char *name, int64_t w, int64_t h, int64_t max_pixels) {
  if (w <= 0 || h <= 0)
    return wk_fail(WK_ERR_FORMAT, "%s: invalid image size %lld x %lld", name, (long long)w,
                   (long long)h);
  if (max_pixels <= 0) max_pixels = wk_image_max_pixels();
  /* w, h < 2^32 from any header, so the product cannot overflow */
  if (w * h > max_pixels)
    return wk_fail(WK_ERR_LIMIT,
                   "%s: %lld x %lld pixels exceeds the pixel limit of %lld (set %s to change it)",
                   name, (long long)w, (long long)h, (long long)max_pixels,
                   WK_IMAGE_MAX_PIXELS_ENV);
  return WK_OK;
}

/* Names the formats people try most often, so the message can say "GIF is not
 * supported" rather than "not an image". */
static const char *wk_other_format(const uint8_t *p, size_t n) {
  if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) return "GIF";
  if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return "WebP";
  if (n >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4))) return "TIFF";
  if (n >= 12 && !memcmp(p + 4, "ftyp", 4)) {
    if (!memcmp(p + 8, "avif", 4)) return "AVIF";
    if (!memcmp(p + 8, "heic", 4) || !memcmp(p + 8, "heix", 4) || !memcmp(p + 8, "mif1", 4))
      return "HEIF";
  }
  if (n >= 14 && p[0] == 'B' && p[1] == 'M') return "BMP";
  return NULL;
}

static wk_status wk_read_header(const uint8_t *p, size_t n, const char *name, wk_header *h) {
  memset(h, 0, sizeof *h);
  if (n == 0) return wk_fail(WK_ERR_FORMAT, "%s: empty file (0 bytes)", name);
  const wk_file_kind_id kind = wk_file_kind(p, n);
  if (kind == WK_FILE_JPEG) return wk_jpeg_read_header(p, n, name, h);
  if (kind == WK_FILE_PNG) return wk_png_read_header(p, n, name, h);
  const char *other = wk_other_format(p, n);
  if (other)
    return wk_fail(WK_ERR_UNSUPPORTED, "%s: %s images are not supported (JPEG and PNG are)",
                   name, other);
  return wk_fail(WK_ERR_FORMAT, "%s: not an image (neither a JPEG nor a PNG signature)", name);
}

static int64_t wk_max_pixels(const wk_decode_opts *o) {
  return o->max_pixels > 0 ? o->max_pixels : wk_image_max_pixels();
}

/* Header, pixel limit and displayed size: what probe reports and decode needs. */
static wk_status wk_probe(const uint8_t *p, size_t n, const char *name, const wk_decode_opts *o,
                          wk_header *h, wk_image_info *info) {
  memset(info, 0, sizeof *info);
  WK_TRY(wk_read_header(p, n, name, h));
  WK_TRY(wk_check_pixels(name, h->stored_width, h->stored_height, wk_max_pixels(o)));
  if (o->ignore_orientation) h->orientation = 1;
  info->format = h->format;
  info->orientation = h->orientation;
  info->scale_denom = 1;
  wk_oriented_size(h->orientation, h->stored_width, h->stored_height, &info->width,
                   &info->height);
  return WK_OK;
}

wk_status wk_image_probe(const uint8_t *bytes, size_t n_bytes, const char *name,
                         const wk_decode_opts *opts, wk_image_info *info) {
  wk_decode_opts defaults = wk_decode_opts_default();
  wk_header h;
  return wk_probe(bytes, n_bytes, name, opts ? opts : &defaults, &h, info);
}

wk_status wk_image_decode(wk_decoder *dec, const uint8_t *bytes, size_t n_bytes,
                          const char *name, const wk_decode_opts *opts, wk_image *out,
                          wk_image_info *info) {
  wk_decode_opts o = opts ? *opts : wk_decode_opts_default();
  o.max_pixels = wk_max_pixels(&o);
  wk_header h;
  wk_image_info local;
  if (!info) info = &local;
  out->width = out->height = 0;
  WK_TRY(wk_probe(bytes, n_bytes, name, &o, &h, info));

  wk_decoder *own = NULL;
  if (!dec) {
    WK_TRY(wk_decoder_create(&own));
    dec = own;
  }
  wk_status s;
  if (h.format == WK_FORMAT_JPEG) {
    s = wk_jpeg_decode(dec, bytes, n_bytes, name, &o, &h, out, &info->scale_denom);
  } else {
    s = wk_png_decode(dec, bytes, n_bytes, name, &o, &h, out);
    info->scale_denom = 1;
  }
  wk_decoder_destroy(own);
  if (s != WK_OK) out->width = out->height = 0;
  return s;
}

wk_status wk_image_load(const char *path, const wk_decode_opts *opts, wk_image *out) {
  wk_bytes file = {0};
  wk_status s = wk_file_read(path, 0, &file);
  if (s == WK_OK) s = wk_image_decode(NULL, file.data, file.n_bytes, path, opts, out, NULL);
  wk_bytes_free(&file);
  return s;
}
