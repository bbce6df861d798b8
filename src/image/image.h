/* image.h - 8-bit RGB images: decoding JPEG and PNG, reading files, writing.
 *
 * A wk_image holds pixels as (height, width, 3) u8, rows top to bottom, each pixel
 * (R, G, B); row y starts at data + y * stride_bytes. An image owns its buffer
 * when capacity_bytes > 0 (wk_image_free releases it) and decoders reuse that
 * buffer when it is large enough, so a worker decoding many files allocates
 * rarely.
 *
 * Decoding (the format comes from the first bytes, never from the file name):
 *   JPEG  libjpeg-turbo (TurboJPEG API): baseline and progressive, any chroma
 *         subsampling, grayscale, CMYK and YCCK. CMYK is converted to RGB as
 *         PIL does (Adobe-inverted samples, r = (255-k) - c(255-k)/255).
 *         DCT scaling by 1/2, 1/4 or 1/8 when the caller's minimum size allows
 *         (wk_decode_opts.min_width/min_height). A truncated file is an error;
 *         libjpeg's other recoverable warnings (extraneous bytes, a bad Huffman
 *         code) are tolerated, as PIL tolerates them.
 *   PNG   libpng: every colour type and bit depth. 16-bit samples keep their
 *         high byte (as PIL does for 16-bit RGB, RGBA and LA). Alpha (an alpha
 *         channel or tRNS) is dropped by default, which is what PIL's
 *         convert("RGB") and so torchvision's ImageFolder loader do; or it is
 *         composited over white (WK_ALPHA_WHITE).
 *   EXIF  the orientation tag (JPEG APP1 "Exif", PNG eXIf) is applied, so the
 *         image is upright as a viewer shows it; a malformed EXIF block is
 *         ignored (orientation 1), as PIL ignores it.
 * Bad input never crashes: every failure returns a status whose message starts
 * with the file's name and says what is wrong (empty, truncated, not an image,
 * unsupported format, over the pixel limit). width * height is checked against
 * max_pixels from the header, before any pixel buffer is allocated. */
#ifndef WK_IMAGE_H
#define WK_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Default pixel limit: 64 Mpx (8192 x 8192), far above any training photo and
 * small enough that a lying header cannot exhaust memory. The environment
 * variable WHISKER_MAX_PIXELS (a positive integer, at most 2^40) replaces it
 * wherever a caller leaves max_pixels at 0; see wk_image_max_pixels. */
#define WK_IMAGE_MAX_PIXELS ((int64_t)64 << 20)
#define WK_IMAGE_MAX_PIXELS_ENV "WHISKER_MAX_PIXELS"

/* Largest file wk_file_read accepts unless told otherwise: 256 MiB. */
#define WK_FILE_MAX_BYTES ((size_t)256 << 20)

typedef struct wk_image {
  uint8_t *data;         /* (height, width, 3) RGB */
  int width, height;     /* pixels */
  size_t stride_bytes;   /* from one row to the next, >= 3 * width */
  size_t capacity_bytes; /* size of the owned buffer; 0 for a view */
} wk_image;

typedef enum wk_image_format {
  WK_FORMAT_UNKNOWN = 0,
  WK_FORMAT_JPEG,
  WK_FORMAT_PNG,
} wk_image_format;

typedef enum wk_alpha_mode {
  WK_ALPHA_DROP = 0, /* keep the colour samples, ignore alpha (PIL's convert("RGB")) */
  WK_ALPHA_WHITE,    /* composite over white: round((c*a + 255*(255-a)) / 255) */
} wk_alpha_mode;

typedef struct wk_decode_opts {
  int64_t max_pixels;          /* <= 0: wk_image_max_pixels() */
  int min_width, min_height;   /* JPEG: decode at the smallest of 1, 1/2, 1/4, 1/8 scale
                                  whose displayed size is at least this; 0: full size */
  wk_alpha_mode alpha;
  bool ignore_orientation;     /* true: leave the pixels as stored */
} wk_decode_opts;

typedef struct wk_image_info {
  wk_image_format format;
  int width, height;  /* full-size image as displayed (after EXIF orientation) */
  int orientation;    /* EXIF orientation 1..8; 1 when absent or ignored */
  int scale_denom;    /* set by wk_image_decode: the DCT scale used, 1, 2, 4 or 8 */
} wk_image_info;

/* A growable byte buffer (file contents). */
typedef struct wk_bytes {
  uint8_t *data;
  size_t n_bytes;
  size_t capacity_bytes;
} wk_bytes;

/* Per-thread decoding state (the TurboJPEG handle and scratch buffers). Not
 * thread-safe: one decoder per thread. */
typedef struct wk_decoder wk_decoder;

wk_decode_opts wk_decode_opts_default(void);

/* The pixel limit in force: WHISKER_MAX_PIXELS when it is set to an integer in
 * [1, 2^40], else WK_IMAGE_MAX_PIXELS (a value that does not parse is reported
 * once, as a warning, and ignored). Read at every call, never cached. */
int64_t wk_image_max_pixels(void);

wk_status wk_decoder_create(wk_decoder **out);
void wk_decoder_destroy(wk_decoder *dec);

/* Reads the header only: format, displayed size, orientation. Checks the
 * pixel limit. `name` is used in messages (usually the path). */
wk_status wk_image_probe(const uint8_t *bytes, size_t n_bytes, const char *name,
                         const wk_decode_opts *opts, wk_image_info *info);

/* Decodes into *out, reusing its buffer when large enough (an empty image
 * {0} is fine). opts may be NULL (defaults); info may be NULL. On failure
 * *out keeps its buffer but holds no picture (width = height = 0). */
wk_status wk_image_decode(wk_decoder *dec, const uint8_t *bytes, size_t n_bytes,
                          const char *name, const wk_decode_opts *opts, wk_image *out,
                          wk_image_info *info);

/* Reads and decodes a file (a convenience for one-off use). */
wk_status wk_image_load(const char *path, const wk_decode_opts *opts, wk_image *out);

/* Makes *img an owned width x height image (contents undefined), reusing its
 * buffer when large enough. */
wk_status wk_image_alloc(wk_image *img, int width, int height);
void wk_image_free(wk_image *img);

/* Reads a whole regular file into *buf (reusing its buffer). max_bytes 0 means
 * WK_FILE_MAX_BYTES; a larger file is WK_ERR_LIMIT. The path "-" (exactly: a
 * folder scan or a CSV list never yields it, their paths have a folder) reads
 * standard input to its end, within the same limit; a terminal is refused. */
wk_status wk_file_read(const char *path, size_t max_bytes, wk_bytes *buf);
void wk_bytes_free(wk_bytes *buf);

/* Writers (stb_image_write). Both write a temporary file next to `path`, flush
 * it to disk and rename it over `path`, so a reader never sees half a file.
 * quality: 1..100. */
wk_status wk_image_write_png(const wk_image *img, const char *path);
wk_status wk_image_write_jpeg(const wk_image *img, const char *path, int quality);

/* Encodes img as JPEG in memory: *out (malloc'ed, the caller frees it) gets
 * *n_bytes bytes. On failure *out is NULL and *n_bytes 0. quality: 1..100. */
wk_status wk_image_encode_jpeg_mem(const wk_image *img, int quality, uint8_t **out,
                                   size_t *n_bytes);

/* "JPEG", "PNG" or "unknown". */
const char *wk_image_format_name(wk_image_format format);

#endif
