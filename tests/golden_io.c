/* golden_io.c - reader for golden files (format in golden_io.h and
 * tests/golden/README.md). Parses from memory with a bounds-checked cursor, so a
 * truncated or corrupted file fails with a message instead of reading past the end. */
#include "golden_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cursor {
  const uint8_t *buf;
  size_t n_bytes, off;
  const char *path;
} cursor;

static wk_status read_u32(cursor *c, const char *what, uint32_t *v) {
  if (c->n_bytes - c->off < 4)
    return wk_fail(WK_ERR_FORMAT, "%s: truncated at byte %zu reading %s", c->path, c->off, what);
  const uint8_t *p = c->buf + c->off;
  *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  c->off += 4;
  return WK_OK;
}

/* Prefixes the current message with "path: " and "what: " when what is not NULL
 * (the message is copied first: it lives in the buffer wk_fail writes). */
static wk_status prefix_error(wk_status code, const char *path, const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", wk_last_error());
  return wk_fail(code, "%s: %s%s%s", path, what ? what : "", what ? ": " : "", msg);
}

static char *dup_str(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static wk_status read_name(cursor *c, int index, char **out) {
  uint32_t len = 0;
  WK_TRY(read_u32(c, "a name length", &len));
  if (len == 0 || len > WKG_MAX_NAME_BYTES)
    return wk_fail(WK_ERR_FORMAT, "%s: record %d: name length %u not in [1, %d]", c->path,
                   index, len, WKG_MAX_NAME_BYTES);
  if (c->n_bytes - c->off < len)
    return wk_fail(WK_ERR_FORMAT, "%s: record %d: name runs past the end of the file",
                   c->path, index);
  const char *s = (const char *)c->buf + c->off;
  for (uint32_t i = 0; i < len; i++)
    if (s[i] < 0x21 || s[i] > 0x7e)
      return wk_fail(WK_ERR_FORMAT, "%s: record %d: name byte %u is not printable ASCII",
                     c->path, index, i);
  c->off += len;
  *out = dup_str(s, len);
  return *out ? WK_OK : wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->path);
}

/* Reads dtype, ndim and dims of record `r` (named already) and allocates its tensor. */
static wk_status read_header(cursor *c, wkg_record *r) {
  uint32_t dtype = 0, ndim = 0;
  WK_TRY(read_u32(c, "a dtype", &dtype));
  if (dtype > 1)
    return wk_fail(WK_ERR_FORMAT, "%s: %s: unknown dtype %u (0 = f32, 1 = i32)", c->path,
                   r->name, dtype);
  WK_TRY(read_u32(c, "ndim", &ndim));
  if (ndim < 1 || ndim > WK_MAX_DIMS)
    return wk_fail(WK_ERR_FORMAT, "%s: %s: ndim %u not in [1, %d]", c->path, r->name, ndim,
                   WK_MAX_DIMS);
  int64_t shape[WK_MAX_DIMS];
  uint64_t numel = 1;
  const uint64_t max_numel = (c->n_bytes - c->off) / 4; /* an upper bound, before dims */
  for (uint32_t d = 0; d < ndim; d++) {
    uint32_t dim = 0;
    WK_TRY(read_u32(c, "a dim", &dim));
    if (dim == 0 || numel > max_numel / dim)
      return wk_fail(WK_ERR_FORMAT, "%s: %s: dim %u = %u is zero or larger than the file",
                     c->path, r->name, d, dim);
    numel *= dim;
    shape[d] = dim;
  }
  if ((c->n_bytes - c->off) / 4 < numel)
    return wk_fail(WK_ERR_FORMAT, "%s: %s: %llu elements run past the end of the file",
                   c->path, r->name, (unsigned long long)numel);
  wk_status s = wk_tensor_alloc(&r->t, dtype == 0 ? WK_F32 : WK_I32, (int)ndim, shape);
  return s == WK_OK ? WK_OK : prefix_error(s, c->path, r->name);
}

/* Decodes the little-endian 4-byte elements of r->t whatever the host's byte order. */
static void read_data(cursor *c, wkg_record *r) {
  const int64_t n = wk_tensor_numel(&r->t);
  uint32_t *dst = r->t.data;
  for (int64_t i = 0; i < n; i++) {
    uint32_t v = 0;
    WK_ASSERT(read_u32(c, "data", &v) == WK_OK); /* read_header checked the size */
    dst[i] = v;
  }
}

static wk_status parse_records(cursor *c, wkg_file *f) {
  for (int i = 0; i < f->n_records; i++) {
    wkg_record *r = &f->records[i];
    WK_TRY(read_name(c, i, &r->name));
    for (int j = 0; j < i; j++)
      if (strcmp(f->records[j].name, r->name) == 0)
        return wk_fail(WK_ERR_FORMAT, "%s: record %d: duplicate name %s", c->path, i, r->name);
    WK_TRY(read_header(c, r));
    read_data(c, r);
  }
  if (c->off != c->n_bytes)
    return wk_fail(WK_ERR_FORMAT, "%s: %zu trailing bytes after the last record", c->path,
                   c->n_bytes - c->off);
  return WK_OK;
}

static wk_status parse(cursor *c, wkg_file *f) {
  const size_t magic_bytes = strlen(WKG_MAGIC);
  if (c->n_bytes < magic_bytes || memcmp(c->buf, WKG_MAGIC, magic_bytes) != 0)
    return wk_fail(WK_ERR_FORMAT, "%s: not a golden file (magic is not %s)", c->path,
                   WKG_MAGIC);
  c->off = magic_bytes;
  uint32_t n = 0;
  WK_TRY(read_u32(c, "the record count", &n));
  if (n == 0 || n > WKG_MAX_RECORDS)
    return wk_fail(WK_ERR_FORMAT, "%s: record count %u not in [1, %d]", c->path, n,
                   WKG_MAX_RECORDS);
  f->records = calloc(n, sizeof *f->records);
  if (!f->records) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->path);
  f->n_records = (int)n;
  return parse_records(c, f);
}

wk_status wkg_parse(const void *buf, size_t n_bytes, const char *path, wkg_file *out) {
  memset(out, 0, sizeof *out);
  if (!path) path = "(memory)";
  if (!buf && n_bytes) return wk_fail(WK_ERR_INVALID_ARG, "%s: NULL buffer", path);
  out->path = dup_str(path, strlen(path));
  if (!out->path) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
  cursor c = {buf, n_bytes, 0, out->path};
  wk_status s = parse(&c, out);
  if (s != WK_OK) wkg_free(out);
  return s;
}

/* Reads a whole file of at most WKG_MAX_FILE_BYTES into a malloc'd buffer. */
static wk_status slurp(const char *path, uint8_t **out, size_t *n_out) {
  *out = NULL;
  *n_out = 0;
  FILE *fp = fopen(path, "rb");
  if (!fp) return wk_fail(WK_ERR_IO, "%s: %s", path, strerror(errno));
  size_t cap = 0, n = 0;
  uint8_t *buf = NULL;
  wk_status s = WK_OK;
  for (;;) {
    if (n == cap) {
      if (cap >= WKG_MAX_FILE_BYTES) {
        s = wk_fail(WK_ERR_FORMAT, "%s: larger than %zu bytes", path, WKG_MAX_FILE_BYTES);
        break;
      }
      cap = cap ? cap * 2 : 65536;
      uint8_t *nb = realloc(buf, cap);
      if (!nb) {
        s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
        break;
      }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n, fp);
    n += got;
    if (got == 0) {
      if (ferror(fp)) s = wk_fail(WK_ERR_IO, "%s: read error", path);
      break;
    }
  }
  fclose(fp);
  if (s != WK_OK) {
    free(buf);
    return s;
  }
  *out = buf;
  *n_out = n;
  return WK_OK;
}

wk_status wkg_load(const char *path, wkg_file *out) {
  memset(out, 0, sizeof *out);
  uint8_t *buf;
  size_t n;
  WK_TRY(slurp(path, &buf, &n));
  wk_status s = wkg_parse(buf, n, path, out);
  free(buf);
  return s;
}

const wk_tensor *wkg_find(const wkg_file *f, const char *name) {
  for (int i = 0; i < f->n_records; i++)
    if (strcmp(f->records[i].name, name) == 0) return &f->records[i].t;
  return NULL;
}

wk_status wkg_get(const wkg_file *f, const char *name, wk_dtype dtype, int ndim,
                  const int64_t *shape, const wk_tensor **out) {
  *out = NULL;
  const wk_tensor *t = wkg_find(f, name);
  if (!t) return wk_fail(WK_ERR_FORMAT, "%s: no record named %s", f->path, name);
  if (wk_tensor_expect(t, name, dtype, ndim, shape) != WK_OK)
    return prefix_error(WK_ERR_FORMAT, f->path, NULL);
  *out = t;
  return WK_OK;
}

void wkg_free(wkg_file *f) {
  for (int i = 0; f->records && i < f->n_records; i++) {
    free(f->records[i].name);
    wk_tensor_free(&f->records[i].t);
  }
  free(f->records);
  free(f->path);
  memset(f, 0, sizeof *f);
}
