/* decode_png.c - PNG through libpng 1.6: every colour type and bit depth to 8-bit
 * RGB, alpha dropped or composited (see image.h), EXIF orientation from an
 * eXIf chunk before the image data.
 *
 * libpng reports errors by longjmp: all state that must survive one lives in a
 * wk_png_job reached through a pointer, so nothing the error path reads is a
 * local variable modified after setjmp. Its error handler records libpng's
 * message; a read past the end of the buffer is reported as truncation. */
#include "image/image_impl.h"

#include <png.h>
#include <stdio.h>
#include <string.h>

/* Ancillary chunks may not need more memory than this (libpng's own default
 * is 8 MB); eXIf, iCCP and text chunks are far smaller in practice. */
#define WK_PNG_CHUNK_MAX_BYTES ((png_alloc_size_t)16 << 20)

static uint32_t wk_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

wk_status wk_png_read_header(const uint8_t *p, size_t n, const char *name, wk_header *h) {
  memset(h, 0, sizeof *h);
  h->format = WK_FORMAT_PNG;
  h->orientation = 1;
  /* signature, then IHDR: length 13, "IHDR", width, height, depth, type, ... */
  if (n < 8 + 8 + 13)
    return wk_fail(WK_ERR_FORMAT, "%s: truncated PNG: the file ends before its IHDR chunk", name);
  if (wk_be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4))
    return wk_fail(WK_ERR_FORMAT, "%s: corrupt PNG: the first chunk is not IHDR", name);
  uint32_t w = wk_be32(p + 16), hgt = wk_be32(p + 20);
  if (w == 0 || hgt == 0 || w > 0x7fffffffu || hgt > 0x7fffffffu)
    return wk_fail(WK_ERR_FORMAT, "%s: corrupt PNG: invalid size %u x %u", name, w, hgt);
  h->stored_width = (int)w;
  h->stored_height = (int)hgt;
  /* Walk the chunks before the image data for eXIf (lengths checked, CRCs
   * left to libpng). */
  size_t pos = 8 + 12 + 13; /* past IHDR's CRC, which a short file may lack */
  while (pos + 12 <= n) {
    uint32_t len = wk_be32(p + pos);
    const uint8_t *type = p + pos + 4;
    if (!memcmp(type, "IDAT", 4) || len > n - pos - 12) break;
    if (!memcmp(type, "eXIf", 4)) {
      h->orientation = wk_exif_orientation(p + pos + 8, len);
      break;
    }
    pos += (size_t)len + 12;
  }
  return WK_OK;
}

typedef struct wk_png_job {
  const uint8_t *data;
  size_t n_bytes, pos;
  bool short_read, no_memory;
  int passes; /* 7 for Adam7, else 1 */
  char msg[160];
  png_structp png;
  png_infop info;
} wk_png_job;

static void wk_png_read_fn(png_structp png, png_bytep out, size_t n) {
  wk_png_job *job = png_get_io_ptr(png);
  if (n > job->n_bytes - job->pos) {
    job->short_read = true;
    png_error(png, "the file ends early");
  }
  memcpy(out, job->data + job->pos, n);
  job->pos += n;
}

static void wk_png_error_fn(png_structp png, png_const_charp msg) {
  wk_png_job *job = png_get_error_ptr(png);
  snprintf(job->msg, sizeof job->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void wk_png_warning_fn(png_structp png, png_const_charp msg) {
  /* Warnings (an unknown ancillary chunk, a bad iCCP profile) leave the
   * pixels intact. */
  (void)png;
  (void)msg;
}

/* Sets up the transforms to 8-bit RGB(A), returns the channels libpng will
 * deliver (3 or 4). Runs under the caller's setjmp. */
static int wk_png_setup(wk_png_job *job) {
  png_structp png = job->png;
  png_infop info = job->info;
  png_read_info(png, info);
  int depth = png_get_bit_depth(png, info);
  int type = png_get_color_type(png, info);
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_strip_16(png); /* the high byte, as PIL */
  if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  job->passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  return png_get_channels(png, info);
}

/* Decodes the pixels into buf (w * h * channels bytes). Returns false with
 * job->msg set on any libpng error. */
static bool wk_png_run(wk_png_job *job, uint8_t *(*alloc)(void *, size_t), void *alloc_arg,
                       int w, int h, uint8_t **pixels, int *channels) {
  if (setjmp(png_jmpbuf(job->png))) return false;
  png_set_read_fn(job->png, job, wk_png_read_fn);
  png_set_user_limits(job->png, (png_uint_32)w, (png_uint_32)h);
  png_set_chunk_malloc_max(job->png, WK_PNG_CHUNK_MAX_BYTES);
  /* text, ICC and palette-suggestion chunks are of no use here: skipped
   * unread, not inflated (a 1.5 MB file of 100 zTXt chunks of 15 MB each cost
   * 7 s per decode, and so per epoch) */
  static const png_byte skip[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT";
  png_set_keep_unknown_chunks(job->png, PNG_HANDLE_CHUNK_NEVER, skip, 5);
  *channels = wk_png_setup(job);
  size_t row_bytes = png_get_rowbytes(job->png, job->info);
  if ((*channels != 3 && *channels != 4) || row_bytes != (size_t)w * (size_t)*channels)
    png_error(job->png, "unexpected row layout after the transforms");
  *pixels = alloc(alloc_arg, (size_t)h * row_bytes);
  if (!*pixels) {
    job->no_memory = true;
    png_error(job->png, "out of memory");
  }
  for (int pass = 0; pass < job->passes; pass++)
    for (int y = 0; y < h; y++) png_read_row(job->png, *pixels + (size_t)y * row_bytes, NULL);
  /* not png_read_end: every row is decoded, and what follows the image data
   * (IEND, trailing text) changes no pixel; a file missing only its IEND,
   * which libpng's end read refused as cut short, decodes as PIL has it */
  return true;
}

typedef struct wk_png_dst {
  wk_decoder *dec;
  wk_image *out;
  bool direct; /* no alpha and no orientation: decode into out */
  int disp_w, disp_h;
} wk_png_dst;

static uint8_t *wk_png_alloc(void *arg, size_t bytes) {
  wk_png_dst *d = arg;
  if (d->direct && bytes == (size_t)d->disp_w * (size_t)d->disp_h * 3) return d->out->data;
  return wk_decoder_scratch(d->dec, bytes);
}

wk_status wk_png_decode(wk_decoder *dec, const uint8_t *p, size_t n, const char *name,
                        const wk_decode_opts *o, const wk_header *h, wk_image *out) {
  int w = h->stored_width, hgt = h->stored_height;
  WK_TRY(wk_check_pixels(name, w, hgt, o->max_pixels));
  wk_png_dst dst = {.dec = dec, .out = out, .direct = h->orientation == 1};
  wk_oriented_size(h->orientation, w, hgt, &dst.disp_w, &dst.disp_h);
  WK_TRY(wk_image_alloc(out, dst.disp_w, dst.disp_h));

  wk_png_job job = {.data = p, .n_bytes = n};
  job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, wk_png_error_fn,
                                   wk_png_warning_fn);
  if (!job.png) return wk_fail(WK_ERR_NOMEM, "%s: png_create_read_struct failed", name);
  job.info = png_create_info_struct(job.png);
  if (!job.info) {
    png_destroy_read_struct(&job.png, NULL, NULL);
    return wk_fail(WK_ERR_NOMEM, "%s: png_create_info_struct failed", name);
  }
  uint8_t *pixels = NULL;
  int channels = 0;
  bool ok = wk_png_run(&job, wk_png_alloc, &dst, w, hgt, &pixels, &channels);
  png_destroy_read_struct(&job.png, &job.info, NULL);
  if (!ok) {
    if (job.no_memory)
      return wk_fail(WK_ERR_NOMEM, "%s: cannot allocate %d x %d pixels", name, w, hgt);
    if (job.short_read)
      return wk_fail(WK_ERR_FORMAT, "%s: truncated PNG: the file ends inside its data", name);
    return wk_fail(WK_ERR_FORMAT, "%s: corrupt PNG: %s", name, job.msg);
  }
  if (channels == 4) wk_rgba_to_rgb(pixels, (size_t)w * (size_t)hgt, o->alpha);
  if (pixels != out->data) wk_image_orient(pixels, w, hgt, h->orientation, out);
  return WK_OK;
}
