/* write.c - PNG and JPEG writing through stb_image_write (Debian libstb-dev).
 *
 * The encoder writes into memory; the bytes then go to a temporary file in the
 * target's folder, which is flushed (fsync) and renamed over the target, so a
 * reader sees the old file or the new one, never a part (wk_image_encode_jpeg_mem
 * hands the bytes to the caller instead). This is the only file
 * that compiles stb_image_write's implementation, and it does so with static
 * linkage so another file that includes stb_image_write.h cannot clash. */
#include "image/image.h"

#include "core/atomic_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

typedef struct wk_membuf {
  uint8_t *data;
  size_t n_bytes, capacity_bytes;
  bool failed;
} wk_membuf;

static void wk_membuf_put(void *ctx, void *data, int size) {
  wk_membuf *m = ctx;
  if (m->failed || size <= 0) return;
  size_t need = m->n_bytes + (size_t)size;
  if (need > m->capacity_bytes) {
    size_t cap = m->capacity_bytes ? m->capacity_bytes * 2 : 65536;
    while (cap < need) cap *= 2;
    uint8_t *p = realloc(m->data, cap);
    if (!p) {
      m->failed = true;
      return;
    }
    m->data = p;
    m->capacity_bytes = cap;
  }
  memcpy(m->data + m->n_bytes, data, (size_t)size);
  m->n_bytes = need;
}

/* Writes bytes to `path` through a temporary file and a rename
 * (core/atomic_file.h: created 0666 less the umask, as a plain create would
 * be; mkstemp's 0600, which the rename kept, hid images from viewers and
 * servers). */
static wk_status wk_write_atomic(const char *path, const uint8_t *data, size_t n) {
  return wk_atomic_write_file(path, data, n);
}

static wk_status wk_check_writable(const wk_image *img, const char *path) {
  if (!img || !img->data || img->width <= 0 || img->height <= 0 ||
      img->stride_bytes < (size_t)img->width * 3)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: no image to write", path);
  if (img->stride_bytes > 0x7fffffff || img->width > 0xffff || img->height > 0xffff)
    return wk_fail(WK_ERR_LIMIT, "%s: %d x %d is too large to write (65535 x 65535 at most)",
                   path, img->width, img->height);
  return WK_OK;
}

static wk_status wk_finish(const char *path, const char *format, int ok, wk_membuf *m) {
  wk_status s;
  if (m->failed) s = wk_fail(WK_ERR_NOMEM, "%s: out of memory encoding %s", path, format);
  else if (!ok) s = wk_fail(WK_ERR_BACKEND, "%s: stb_image_write could not encode %s", path,
                             format);
  else s = wk_write_atomic(path, m->data, m->n_bytes);
  free(m->data);
  return s;
}

wk_status wk_image_write_png(const wk_image *img, const char *path) {
  WK_TRY(wk_check_writable(img, path));
  wk_membuf m = {0};
  int ok = stbi_write_png_to_func(wk_membuf_put, &m, img->width, img->height, 3, img->data,
                                  (int)img->stride_bytes);
  return wk_finish(path, "PNG", ok, &m);
}

/* Encodes img as JPEG into *m (packing the rows first when they are padded:
 * stb's JPEG writer takes packed rows only). `name` is used in messages. */
static wk_status wk_encode_jpeg(const wk_image *img, const char *name, int quality,
                                wk_membuf *m, int *ok) {
  if (quality < 1 || quality > 100)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: JPEG quality %d (1..100)", name, quality);
  const uint8_t *px = img->data;
  uint8_t *packed = NULL;
  size_t row = (size_t)img->width * 3;
  if (img->stride_bytes != row) {
    packed = malloc(row * (size_t)img->height);
    if (!packed) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", name);
    for (int y = 0; y < img->height; y++)
      memcpy(packed + row * (size_t)y, img->data + img->stride_bytes * (size_t)y, row);
    px = packed;
  }
  *ok = stbi_write_jpg_to_func(wk_membuf_put, m, img->width, img->height, 3, px, quality);
  free(packed);
  return WK_OK;
}

wk_status wk_image_write_jpeg(const wk_image *img, const char *path, int quality) {
  WK_TRY(wk_check_writable(img, path));
  wk_membuf m = {0};
  int ok = 0;
  WK_TRY(wk_encode_jpeg(img, path, quality, &m, &ok));
  return wk_finish(path, "JPEG", ok, &m);
}

wk_status wk_image_encode_jpeg_mem(const wk_image *img, int quality, uint8_t **out,
                                   size_t *n_bytes) {
  *out = NULL;
  *n_bytes = 0;
  const char *name = "JPEG encoding";
  WK_TRY(wk_check_writable(img, name));
  wk_membuf m = {0};
  int ok = 0;
  WK_TRY(wk_encode_jpeg(img, name, quality, &m, &ok));
  if (m.failed || !ok) {
    free(m.data);
    return m.failed ? wk_fail(WK_ERR_NOMEM, "%s: out of memory", name)
                    : wk_fail(WK_ERR_BACKEND, "%s: stb_image_write could not encode JPEG", name);
  }
  *out = m.data;
  *n_bytes = m.n_bytes;
  return WK_OK;
}
