/* safetensors.h - reading and writing model files in the safetensors layout
 * (https://github.com/huggingface/safetensors), so PyTorch and other tools read
 * whisker's models as they are and whisker reads theirs.
 *
 * Layout: an 8-byte little-endian u64 N; N bytes of UTF-8 JSON, an object
 * mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end)}
 * plus an optional "__metadata__" object of string values; then the data
 * section: the tensors back to back, little-endian, row-major, begin/end
 * counted from the start of the data section.
 *
 * Writing (wk_st_write) is atomic (core/atomic_file.h) and pads the header
 * with spaces so that the data section starts at a multiple of
 * WK_ST_DATA_ALIGN bytes in the file.
 *
 * Reading (wk_st_open) checks the whole header before it reads any tensor
 * data, as strictly as the reference implementation: every entry has a known
 * dtype and a shape whose byte size equals its data_offsets, and the tensors
 * cover the data section exactly, without holes, overlaps or trailing bytes.
 * Every refusal names the file and the problem. The file is read into memory
 * (not mapped): a mapped file that another process truncates raises SIGBUS at
 * some later access, which no status can report, and a buffer of our own puts
 * the data section at a 64-byte boundary whatever the header length.
 *
 * Tensor data pointers of an open file are aligned only as far as the file's
 * data_offsets are (whisker's writer keeps them aligned when entries are
 * ordered by decreasing dtype size; foreign files make no promise): read
 * elements with memcpy, or use wk_st_read_f32. Host byte order must be little
 * endian (checked at compile time). */
#ifndef WK_SAFETENSORS_H
#define WK_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* The reference implementation refuses larger headers. */
#define WK_ST_MAX_HEADER_BYTES ((uint64_t)100000000)
/* cJSON spends about 80 bytes per JSON value, so a 100 MB header of "[0,0,..."
 * would cost gigabytes; headers with more values are refused before parsing.
 * That leaves room for about 250 000 tensors. */
#define WK_ST_MAX_JSON_VALUES ((size_t)1 << 21)
/* Whisker's writer starts the data section at a multiple of this. */
#define WK_ST_DATA_ALIGN 64

/* The safetensors dtypes with whole-byte elements. */
typedef enum wk_st_dtype {
  WK_ST_BOOL = 0,
  WK_ST_U8,
  WK_ST_I8,
  WK_ST_I16,
  WK_ST_U16,
  WK_ST_F16,
  WK_ST_BF16,
  WK_ST_I32,
  WK_ST_U32,
  WK_ST_F32,
  WK_ST_F64,
  WK_ST_I64,
  WK_ST_U64,
  WK_ST_F8_E4M3,
  WK_ST_F8_E5M2,
  WK_ST_N_DTYPES
} wk_st_dtype;

/* The name used in headers ("F32"), or "?" for a value out of range. */
const char *wk_st_dtype_name(wk_st_dtype dtype);
/* Bytes per element, 0 for a value out of range. */
size_t wk_st_dtype_size(wk_st_dtype dtype);
/* Parses a header dtype name; false for an unknown one. */
bool wk_st_dtype_parse(const char *name, wk_st_dtype *out);
/* The safetensors dtype that stores a whisker dtype. */
wk_st_dtype wk_st_dtype_of(wk_dtype dtype);

/* One tensor. For the writer, the caller's description of data to store; for
 * the reader, a view into the open file (valid until wk_st_close). */
typedef struct wk_st_entry {
  const char *name;             /* UTF-8, NUL-terminated */
  wk_st_dtype dtype;
  int ndim;                     /* 0 (a scalar) .. WK_MAX_DIMS */
  int64_t shape[WK_MAX_DIMS];
  const void *data;             /* n_bytes bytes, little-endian, row-major; may be
                                   unaligned when read; may be NULL when n_bytes is 0 */
  size_t n_bytes;               /* product(shape) * wk_st_dtype_size(dtype) */
} wk_st_entry;

/* One __metadata__ pair; both strings UTF-8 and NUL-terminated. Whisker puts
 * structured values (architecture, preprocessing, ...) in as JSON text. */
typedef struct wk_st_meta {
  const char *key;
  const char *value;
} wk_st_meta;

/* Writes n_entries tensors, in the given order, and n_meta metadata pairs
 * (__metadata__ is left out when n_meta is 0) to `path`, atomically. Refuses,
 * with WK_ERR_INVALID_ARG and nothing written: empty or duplicate tensor names,
 * the name "__metadata__", duplicate metadata keys, names, keys or values that
 * are not valid UTF-8, an unknown dtype, ndim outside [0, WK_MAX_DIMS], a
 * negative dimension, n_bytes that does not match the shape, NULL data with
 * n_bytes > 0. WK_ERR_LIMIT when the header would exceed
 * WK_ST_MAX_HEADER_BYTES or the tensors WK_TENSOR_MAX_BYTES in all (what
 * wk_st_open accepts); WK_ERR_IO / WK_ERR_NOMEM as wk_atomic_*. */
wk_status wk_st_write(const char *path, const wk_st_entry *entries, size_t n_entries,
                      const wk_st_meta *meta, size_t n_meta);

/* An open, validated file: header and data in memory. */
typedef struct wk_st_file wk_st_file;

/* Reads and validates `path`. On success *out owns everything; free it with
 * wk_st_close. Fails with WK_ERR_IO (cannot open or read, not a regular file),
 * WK_ERR_FORMAT (anything malformed), WK_ERR_LIMIT (header longer than
 * WK_ST_MAX_HEADER_BYTES or with more than WK_ST_MAX_JSON_VALUES values, a
 * tensor of more than WK_MAX_DIMS dimensions, data section larger than
 * WK_TENSOR_MAX_BYTES) or WK_ERR_NOMEM; *out is then NULL. */
wk_status wk_st_open(const char *path, wk_st_file **out);

/* Frees the file and everything handed out from it. Safe on NULL. */
void wk_st_close(wk_st_file *f);

/* The path the file was opened with. */
const char *wk_st_path(const wk_st_file *f);
/* Byte offset of the data section in the file (8 + header length). */
uint64_t wk_st_data_start(const wk_st_file *f);

/* Tensors, ordered by their position in the data section. */
size_t wk_st_count(const wk_st_file *f);
/* Entry i < wk_st_count(f). */
const wk_st_entry *wk_st_entry_at(const wk_st_file *f, size_t i);
/* Entry i's begin offset within the data section. */
uint64_t wk_st_data_offset(const wk_st_file *f, size_t i);
/* The entry with this name, or NULL. O(log n). */
const wk_st_entry *wk_st_find(const wk_st_file *f, const char *name);

/* Metadata pairs, in header order. */
size_t wk_st_meta_count(const wk_st_file *f);
const wk_st_meta *wk_st_meta_at(const wk_st_file *f, size_t i);
/* The value for key, or NULL when absent. O(log n). */
const char *wk_st_meta_get(const wk_st_file *f, const char *key);

/* Copies tensor `name` into dst as float32, converting F16, BF16 and F64
 * (F64 beyond float range becomes +-inf). dst holds product(shape) floats (may
 * be NULL when that is 0); the tensor's shape must equal (ndim, shape).
 * WK_ERR_FORMAT when the file has no such tensor; WK_ERR_SHAPE when the shape
 * differs (the message names the tensor and both shapes) or the dtype is not
 * a floating-point one. */
wk_status wk_st_read_f32(const wk_st_file *f, const char *name, float *dst, int ndim,
                         const int64_t *shape);

#endif
