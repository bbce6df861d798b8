/* utf8.c - strict UTF-8 validation (contract in utf8.h). */
#include "core/utf8.h"

size_t wk_utf8_seq_bytes(const unsigned char *s, size_t n_bytes) {
  if (n_bytes == 0) return 0;
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;      /* overlong */
    if (c == 0xed) hi = 0x9f;      /* surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;      /* overlong */
    if (c == 0xf4) hi = 0x8f;      /* above U+10FFFF */
  } else {
    return 0; /* continuation byte, overlong 0xc0/0xc1, or 0xf5.. */
  }
  if (n_bytes < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return len;
}

bool wk_utf8_valid(const char *s, size_t n_bytes, size_t *bad_offset) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n_bytes) {
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    size_t len = wk_utf8_seq_bytes(u + i, n_bytes - i);
    if (len == 0) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}
