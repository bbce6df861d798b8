/* image_impl.h - what the image decoders share among themselves: the decoder
 * state, the header scanners, the format decoders and the pixel transforms.
 * Not part of the public interface (see image.h). */
#ifndef WK_IMAGE_IMPL_H
#define WK_IMAGE_IMPL_H

#include "image/image.h"

struct wk_decoder {
  void *tj;            /* tjhandle, created by the first JPEG decode */
  uint8_t *scratch;    /* pixels before orientation / CMYK conversion */
  size_t scratch_bytes;
};

/* What a file's own header says, read without any foreign library. */
typedef struct wk_header {
  wk_image_format format;
  int stored_width, stored_height; /* before orientation */
  int orientation;                 /* EXIF 1..8, 1 when absent or malformed */
} wk_header;

/* Both fail with WK_ERR_FORMAT (truncated, corrupt, impossible size) or
 * WK_ERR_UNSUPPORTED (e.g. lossless JPEG); messages start with `name`. */
wk_status wk_jpeg_read_header(const uint8_t *p, size_t n, const char *name, wk_header *h);
wk_status wk_png_read_header(const uint8_t *p, size_t n, const char *name, wk_header *h);

/* The orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block (the
 * bytes after "Exif\0\0" in a JPEG, the eXIf chunk in a PNG). Every offset is
 * bounds-checked; anything malformed or out of range gives 1. */
int wk_exif_orientation(const uint8_t *tiff, size_t n_bytes);

/* Fails with WK_ERR_LIMIT unless 0 < w, 0 < h and w * h <= max_pixels. */
wk_status wk_check_pixels(const char *name, int64_t w, int64_t h, int64_t max_pixels);

/* Decoders proper. `h` comes from the matching read_header; out receives the
 * displayed, oriented RGB picture. */
wk_status wk_jpeg_decode(wk_decoder *dec, const uint8_t *p, size_t n, const char *name,
                         const wk_decode_opts *o, const wk_header *h, wk_image *out,
                         int *scale_denom);
wk_status wk_png_decode(wk_decoder *dec, const uint8_t *p, size_t n, const char *name,
                        const wk_decode_opts *o, const wk_header *h, wk_image *out);

/* A buffer of at least `bytes` owned by the decoder, or NULL (out of memory). */
uint8_t *wk_decoder_scratch(wk_decoder *dec, size_t bytes);

/* The stored width x height of a picture with this orientation as displayed. */
void wk_oriented_size(int orientation, int stored_w, int stored_h, int *w, int *h);

/* Writes the packed RGB picture src (stored_w x stored_h, rows 3*stored_w
 * apart) into dst, turned upright for EXIF `orientation`. dst must already be
 * allocated at the oriented size and must not overlap src. */
void wk_image_orient(const uint8_t *src, int stored_w, int stored_h, int orientation,
                     wk_image *dst);

/* Drops or composites the alpha of n_px packed RGBA pixels into packed RGB, in
 * place (the output is a prefix of the buffer). */
void wk_rgba_to_rgb(uint8_t *px, size_t n_px, wk_alpha_mode mode);

#endif
