/* file_kind.c - file_kind.h: magic numbers of the formats users mix up with
 * whisker's (images, archives, other frameworks' checkpoints, safetensors). */
#include "core/file_kind.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

wk_file_kind_id wk_file_kind(const unsigned char *b, size_t n) {
  if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return WK_FILE_JPEG;
  if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return WK_FILE_PNG;
  if (n >= 8 && !memcmp(b, "\x89HDF\r\n\x1a\n", 8)) return WK_FILE_HDF5;
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return WK_FILE_GZIP;
  if (n >= 4 && !memcmp(b, "PK\x03\x04", 4)) return WK_FILE_ZIP;
  if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return WK_FILE_PICKLE;
  if (n >= 10 && b[8] == '{' && b[9] == '"') {
    /* safetensors: a little-endian header length, then the JSON header */
    uint64_t len = 0;
    for (int i = 0; i < 8; i++) len |= (uint64_t)b[i] << (8 * i);
    if (len >= 2 && len < ((uint64_t)1 << 32)) return WK_FILE_SAFETENSORS;
  }
  return WK_FILE_UNKNOWN;
}

wk_file_kind_id wk_file_kind_at(const char *path) {
  unsigned char b[WK_FILE_KIND_BYTES];
  FILE *f = fopen(path, "rb");
  if (!f) return WK_FILE_UNKNOWN;
  const size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  return wk_file_kind(b, n);
}

const char *wk_file_kind_name(wk_file_kind_id k) {
  switch (k) {
  case WK_FILE_JPEG: return "a JPEG image";
  case WK_FILE_PNG: return "a PNG image";
  case WK_FILE_HDF5: return "an HDF5 file";
  case WK_FILE_GZIP: return "a gzip archive";
  case WK_FILE_ZIP: return "a zip archive";
  case WK_FILE_PICKLE: return "a Python pickle";
  case WK_FILE_SAFETENSORS: return "a whisker model (safetensors)";
  case WK_FILE_UNKNOWN: break;
  }
  return NULL;
}

const char *wk_file_kind_advice(wk_file_kind_id k) {
  return k == WK_FILE_ZIP || k == WK_FILE_PICKLE
             ? "a PyTorch checkpoint? export it to ONNX, then 'whisker import' it"
             : NULL;
}
