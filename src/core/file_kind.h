/* file_kind.h - what a file is by its first bytes, for refusals that can say
 * more than "does not parse": a photo given where a model goes, a whisker
 * model given to import, a PyTorch checkpoint. */
#ifndef WK_FILE_KIND_H
#define WK_FILE_KIND_H

#include <stddef.h>

/* How many of a file's first bytes wk_file_kind looks at. */
#define WK_FILE_KIND_BYTES 16

/* A description ("a JPEG image", "a whisker model (safetensors)", ...) of the
 * file that begins with b[0, n), or NULL when it is none of the kinds known;
 * *advice (when not NULL) gets a hint of what to do with such a file, or
 * NULL. */
const char *wk_file_kind(const unsigned char *b, size_t n, const char **advice);

/* The same for the file at path (NULL when it cannot be read). */
const char *wk_file_kind_at(const char *path, const char **advice);

#endif
