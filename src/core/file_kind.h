/* file_kind.h - what a file is by its first bytes: the image decoder's choice
 * between JPEG and PNG, and refusals that can say more than "does not parse"
 * (a photo given where a model goes, a whisker model given to import, a
 * PyTorch checkpoint). */
#ifndef WK_FILE_KIND_H
#define WK_FILE_KIND_H

#include <stddef.h>

/* How many of a file's first bytes wk_file_kind looks at. */
#define WK_FILE_KIND_BYTES 16

typedef enum wk_file_kind_id {
  WK_FILE_UNKNOWN = 0, /* none of the kinds below */
  WK_FILE_JPEG,
  WK_FILE_PNG,
  WK_FILE_HDF5,
  WK_FILE_GZIP,
  WK_FILE_ZIP,
  WK_FILE_PICKLE,
  WK_FILE_SAFETENSORS, /* a plausible header length, then '{"' */
} wk_file_kind_id;

/* The kind of the file that begins with b[0, n). */
wk_file_kind_id wk_file_kind(const unsigned char *b, size_t n);

/* The same for the file at path (WK_FILE_UNKNOWN when it cannot be read). */
wk_file_kind_id wk_file_kind_at(const char *path);

/* "a JPEG image", ..., for a message; NULL for WK_FILE_UNKNOWN. */
const char *wk_file_kind_name(wk_file_kind_id k);

/* What to do with such a file instead, or NULL: for a zip archive or a pickle
 * (a PyTorch checkpoint, most likely), the way to an importable ONNX file. */
const char *wk_file_kind_advice(wk_file_kind_id k);

#endif
