/* golden_io.h - reader for the golden files written by scripts/gen_golden.py.
 *
 * Format (tests/golden/README.md), all integers u32 little-endian:
 *   "WKGOLD01", n_records, then per record:
 *   name_len, name (name_len bytes, no NUL), dtype (0 = f32, 1 = i32), ndim,
 *   ndim dims, numel * 4 bytes of little-endian data.
 * The reader trusts nothing in the file: every count and size is checked against
 * the limits below and against the bytes actually present, and a malformed file
 * yields WK_ERR_FORMAT with a message naming the file, never a crash. */
#ifndef WK_TESTS_GOLDEN_IO_H
#define WK_TESTS_GOLDEN_IO_H

#include <stddef.h>
#include <stdint.h>

#include "whisker.h"

#define WKG_MAGIC "WKGOLD01"
#define WKG_MAX_RECORDS 4096
#define WKG_MAX_NAME_BYTES 255
#define WKG_MAX_FILE_BYTES ((size_t)64 << 20)

typedef struct wkg_record {
  char *name;  /* NUL-terminated copy, owned */
  wk_tensor t; /* owned CPU tensor, WK_F32 or WK_I32 */
} wkg_record;

typedef struct wkg_file {
  char *path;  /* owned copy, for messages */
  int n_records;
  wkg_record *records; /* (n_records), in file order */
} wkg_file;

/* Reads and validates the whole file. On failure *out is left empty (safe to
 * wkg_free) and wk_last_error() names the file and what is wrong. */
wk_status wkg_load(const char *path, wkg_file *out);

/* Parses n_bytes of `buf` (the file's content); `path` is used in messages only. */
wk_status wkg_parse(const void *buf, size_t n_bytes, const char *path, wkg_file *out);

/* The record called `name`, or NULL. */
const wk_tensor *wkg_find(const wkg_file *f, const char *name);

/* The record called `name`, checked to be of `dtype` with exactly `shape`
 * (ndim dims); WK_ERR_FORMAT naming the file and record otherwise. */
wk_status wkg_get(const wkg_file *f, const char *name, wk_dtype dtype, int ndim,
                  const int64_t *shape, const wk_tensor **out);

/* Frees everything and leaves *f empty. Safe on an empty file. */
void wkg_free(wkg_file *f);

#endif
