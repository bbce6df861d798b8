/* report_buf.c - the report's text buffer: appending, printf, HTML escaping,
 * base64. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/report_impl.h"

void wk_rbuf_free(wk_rbuf *b) {
  free(b->data);
  *b = (wk_rbuf){0};
}

/* Makes room for n_bytes more plus the terminating NUL. */
static bool wk_rbuf_reserve(wk_rbuf *b, size_t n_bytes) {
  if (b->failed) return false;
  size_t need = b->n_bytes + n_bytes + 1;
  if (need < n_bytes) {
    b->failed = true;
    return false;
  }
  if (need <= b->capacity_bytes) return true;
  size_t cap = b->capacity_bytes ? b->capacity_bytes : 4096;
  while (cap < need) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->failed = true;
    return false;
  }
  b->data = p;
  b->capacity_bytes = cap;
  return true;
}

void wk_rbuf_put(wk_rbuf *b, const char *s, size_t n_bytes) {
  if (!wk_rbuf_reserve(b, n_bytes)) return;
  memcpy(b->data + b->n_bytes, s, n_bytes);
  b->n_bytes += n_bytes;
  b->data[b->n_bytes] = '\0';
}

void wk_rbuf_puts(wk_rbuf *b, const char *s) { wk_rbuf_put(b, s, strlen(s)); }

void wk_rbuf_printf(wk_rbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->failed = true;
  } else if (wk_rbuf_reserve(b, (size_t)n)) {
    vsnprintf(b->data + b->n_bytes, (size_t)n + 1, fmt, ap2);
    b->n_bytes += (size_t)n;
  }
  va_end(ap2);
}

void wk_rbuf_put_html(wk_rbuf *b, const char *s) {
  if (!s) return;
  const char *run = s; /* start of the bytes not yet copied */
  for (; *s; s++) {
    const char *rep = NULL;
    switch (*s) {
      case '&': rep = "&amp;"; break;
      case '<': rep = "&lt;"; break;
      case '>': rep = "&gt;"; break;
      case '"': rep = "&quot;"; break;
      case '\'': rep = "&#39;"; break;
      default: continue;
    }
    wk_rbuf_put(b, run, (size_t)(s - run));
    wk_rbuf_puts(b, rep);
    run = s + 1;
  }
  wk_rbuf_put(b, run, (size_t)(s - run));
}

void wk_rbuf_put_base64(wk_rbuf *b, const uint8_t *data, size_t n_bytes) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (!wk_rbuf_reserve(b, (n_bytes + 2) / 3 * 4)) return;
  char *o = b->data + b->n_bytes;
  size_t i = 0;
  for (; i + 3 <= n_bytes; i += 3) {
    uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = abc[(v >> 6) & 63];
    *o++ = abc[v & 63];
  }
  if (i < n_bytes) {
    uint32_t v = (uint32_t)data[i] << 16;
    if (i + 1 < n_bytes) v |= (uint32_t)data[i + 1] << 8;
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = i + 1 < n_bytes ? abc[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  b->n_bytes = (size_t)(o - b->data);
  b->data[b->n_bytes] = '\0';
}
