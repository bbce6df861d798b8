/* test_fs.h - file helpers for the image and data suites: temporary folders
 * (removed with everything in them), small files, PPM references. Failures
 * fail the running test. */
#ifndef WK_TEST_FS_H
#define WK_TEST_FS_H

#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

/* A new empty folder under $TMPDIR (default /tmp); free the returned path. */
char *wkt_tempdir(void);

/* Removes `path` and everything below it (no links are followed). */
void wkt_rmtree(const char *path);

/* malloc'ed "a/b" (or "a/b/c" when c is not NULL). */
char *wkt_join(const char *a, const char *b, const char *c);

/* Creates a file with these bytes; folders along the way must exist. */
void wkt_write_file(const char *path, const void *data, size_t n_bytes);
void wkt_mkdir(const char *path);

/* Reads a binary PPM (P6, maxval 255) into an owned image. */
void wkt_read_ppm(const char *path, wk_image *img);

/* Largest absolute difference of two images of the same size (-1 when the
 * sizes differ). */
int wkt_image_max_diff(const wk_image *a, const wk_image *b);

/* tests/fixtures/images/<name> under the source directory; free the result. */
char *wkt_fixture(const char *name);

/* A deterministic test picture: smooth gradients plus a mark that makes every
 * orientation distinguishable, varied by `seed`. */
void wkt_make_image(wk_image *img, int width, int height, uint32_t seed);

#endif
