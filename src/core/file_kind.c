/* file_kind.c - file_kind.h: magic numbers of the formats users mix up with
 * whisker's (images, archives, other frameworks' checkpoints, safetensors). */
#include "core/file_kind.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char wk_torch_advice[] =
    "a PyTorch checkpoint? export it to ONNX, then 'whisker import' it";

const char *wk_file_kind(const unsigned char *b, size_t n, const char **advice) {
  const char *hint = NULL, *what = NULL;
  if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) what = "a JPEG image";
  else if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) what = "a PNG image";
  else if (n >= 8 && !memcmp(b, "\x89HDF\r\n\x1a\n", 8)) what = "an HDF5 file";
  else if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) what = "a gzip archive";
  else if (n >= 4 && !memcmp(b, "PK\x03\x04", 4)) what = "a zip archive", hint = wk_torch_advice;
  else if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
    what = "a Python pickle", hint = wk_torch_advice;
  else if (n >= 10 && b[8] == '{' && b[9] == '"') {
    /* safetensors: a little-endian header length, then the JSON header */
    uint64_t len = 0;
    for (int i = 0; i < 8; i++) len |= (uint64_t)b[i] << (8 * i);
    if (len >= 2 && len < ((uint64_t)1 << 32)) what = "a whisker model (safetensors)";
  }
  if (advice) *advice = hint;
  return what;
}

const char *wk_file_kind_at(const char *path, const char **advice) {
  if (advice) *advice = NULL;
  unsigned char b[WK_FILE_KIND_BYTES];
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  const size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  return wk_file_kind(b, n, advice);
}
