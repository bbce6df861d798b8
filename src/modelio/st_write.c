/* st_write.c - wk_st_write: checks the caller's tensors and metadata, builds
 * the JSON header and writes header and data atomically.
 *
 * The header is written by hand rather than through cJSON: offsets are u64
 * and cJSON holds numbers as doubles, the keys must keep the caller's order,
 * and a model of 100 000 tensors should not cost a tree of 700 000 nodes.
 * Strings are escaped per RFC 8259 (quote, backslash, control characters);
 * everything else is copied, which is valid JSON because names, keys and
 * values are checked to be UTF-8 first. */
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/utf8.h"
#include "modelio/st_impl.h"

/* A growing text buffer; an allocation failure sets oom and stops growth. */
typedef struct st_text {
  char *buf;
  size_t len, cap;
  bool oom;
} st_text;

static void text_put(st_text *t, const char *s, size_t n) {
  if (t->oom) return;
  if (t->cap - t->len < n) {
    size_t cap = t->cap ? t->cap : 4096;
    while (cap - t->len < n) {
      if (cap > SIZE_MAX / 2) {
        t->oom = true;
        return;
      }
      cap *= 2;
    }
    char *p = realloc(t->buf, cap);
    if (!p) {
      t->oom = true;
      return;
    }
    t->buf = p, t->cap = cap;
  }
  memcpy(t->buf + t->len, s, n);
  t->len += n;
}

static void text_puts(st_text *t, const char *s) { text_put(t, s, strlen(s)); }

static void text_put_u64(st_text *t, uint64_t v) {
  char digits[24];
  size_t i = sizeof digits;
  do {
    digits[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  text_put(t, digits + i, sizeof digits - i);
}

/* s as a JSON string literal. */
static void text_put_json_string(st_text *t, const char *s) {
  static const char hex[] = "0123456789abcdef";
  text_put(t, "\"", 1);
  const char *run = s; /* start of the bytes not yet copied */
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    text_put(t, run, (size_t)(s - run));
    run = s + 1;
    switch (c) {
      case '"': text_put(t, "\\\"", 2); break;
      case '\\': text_put(t, "\\\\", 2); break;
      case '\n': text_put(t, "\\n", 2); break;
      case '\r': text_put(t, "\\r", 2); break;
      case '\t': text_put(t, "\\t", 2); break;
      default: {
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        text_put(t, esc, sizeof esc);
      }
    }
  }
  text_put(t, run, (size_t)(s - run));
  text_put(t, "\"", 1);
}

static wk_status check_text(const char *path, const char *what, size_t index, const char *s) {
  if (!s) return wk_fail(WK_ERR_INVALID_ARG, "%s: %s %zu is NULL", path, what, index);
  size_t bad = 0;
  if (!wk_utf8_valid(s, strlen(s), &bad))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: %s %zu is not valid UTF-8 (byte %zu)", path, what,
                   index, bad);
  return WK_OK;
}

static wk_status check_entry(const char *path, size_t i, const wk_st_entry *e) {
  WK_TRY(check_text(path, "the name of tensor", i, e->name));
  if (!e->name[0]) return wk_fail(WK_ERR_INVALID_ARG, "%s: tensor %zu has an empty name", path, i);
  if (!strcmp(e->name, "__metadata__"))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: tensor %zu: the name __metadata__ is reserved", path,
                   i);
  if ((unsigned)e->dtype >= WK_ST_N_DTYPES)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: tensor '%s': unknown dtype %d", path, e->name,
                   (int)e->dtype);
  if (e->ndim < 0 || e->ndim > WK_MAX_DIMS)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: tensor '%s': %d dimensions (at most %d)", path,
                   e->name, e->ndim, WK_MAX_DIMS);
  for (int d = 0; d < e->ndim; d++) {
    if (e->shape[d] < 0)
      return wk_fail(WK_ERR_INVALID_ARG, "%s: tensor '%s': negative dimension %lld", path,
                     e->name, (long long)e->shape[d]);
    if ((uint64_t)e->shape[d] > WK_ST_MAX_JSON_INT) /* readers hold JSON numbers as doubles */
      return wk_fail(WK_ERR_LIMIT, "%s: tensor '%s': dimension %lld is above 2^53", path,
                     e->name, (long long)e->shape[d]);
  }
  char shape[128];
  uint64_t need = 0;
  if (!wk_st_shape_bytes(e->dtype, e->ndim, e->shape, WK_TENSOR_MAX_BYTES, &need))
    return wk_fail(WK_ERR_LIMIT, "%s: tensor '%s': shape %s of %s is too large", path, e->name,
                   wk_st_shape_str(e->ndim, e->shape, shape, sizeof shape),
                   wk_st_dtype_name(e->dtype));
  if (need != e->n_bytes)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: tensor '%s': n_bytes %zu but shape %s of %s needs %llu",
                   path, e->name, e->n_bytes,
                   wk_st_shape_str(e->ndim, e->shape, shape, sizeof shape),
                   wk_st_dtype_name(e->dtype), (unsigned long long)need);
  if (e->n_bytes && !e->data)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: tensor '%s': no data", path, e->name);
  return WK_OK;
}

/* Checks every entry and meta pair, names and keys unique. */
static wk_status check_input(const char *path, const wk_st_entry *entries, size_t n_entries,
                             const wk_st_meta *meta, size_t n_meta) {
  uint64_t total = 0;
  for (size_t i = 0; i < n_entries; i++) {
    WK_TRY(check_entry(path, i, &entries[i]));
    total += entries[i].n_bytes;
    if (total > WK_TENSOR_MAX_BYTES) /* the reader's limit on a data section */
      return wk_fail(WK_ERR_LIMIT, "%s: the tensors hold more than %zu bytes", path,
                     (size_t)WK_TENSOR_MAX_BYTES);
  }
  for (size_t i = 0; i < n_meta; i++) {
    WK_TRY(check_text(path, "metadata key", i, meta[i].key));
    WK_TRY(check_text(path, "metadata value", i, meta[i].value));
  }
  size_t n_ptrs = n_entries > n_meta ? n_entries : n_meta;
  void *ptrs = malloc((n_ptrs ? n_ptrs : 1) * sizeof(const void *));
  if (!ptrs) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
  const wk_st_entry **by_name = (const wk_st_entry **)ptrs;
  for (size_t i = 0; i < n_entries; i++) by_name[i] = &entries[i];
  qsort(by_name, n_entries, sizeof *by_name, wk_st_cmp_entry_name);
  for (size_t i = 1; i < n_entries; i++)
    if (!strcmp(by_name[i - 1]->name, by_name[i]->name)) {
      wk_status s = wk_fail(WK_ERR_INVALID_ARG, "%s: two tensors are named '%s'", path,
                            by_name[i]->name);
      free(ptrs);
      return s;
    }
  const wk_st_meta **by_key = (const wk_st_meta **)ptrs;
  for (size_t i = 0; i < n_meta; i++) by_key[i] = &meta[i];
  qsort(by_key, n_meta, sizeof *by_key, wk_st_cmp_meta_key);
  for (size_t i = 1; i < n_meta; i++)
    if (!strcmp(by_key[i - 1]->key, by_key[i]->key)) {
      wk_status s = wk_fail(WK_ERR_INVALID_ARG, "%s: metadata key '%s' appears twice", path,
                            by_key[i]->key);
      free(ptrs);
      return s;
    }
  free(ptrs);
  return WK_OK;
}

/* The header JSON, padded with spaces so that 8 + its length is a multiple of
 * WK_ST_DATA_ALIGN. */
static wk_status build_header(const char *path, const wk_st_entry *entries, size_t n_entries,
                              const wk_st_meta *meta, size_t n_meta, st_text *t) {
  text_put(t, "{", 1);
  if (n_meta) {
    text_puts(t, "\"__metadata__\":{");
    for (size_t i = 0; i < n_meta; i++) {
      if (i) text_put(t, ",", 1);
      text_put_json_string(t, meta[i].key);
      text_put(t, ":", 1);
      text_put_json_string(t, meta[i].value);
    }
    text_put(t, "}", 1);
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < n_entries; i++) {
    const wk_st_entry *e = &entries[i];
    if (i || n_meta) text_put(t, ",", 1);
    text_put_json_string(t, e->name);
    text_puts(t, ":{\"dtype\":\"");
    text_puts(t, wk_st_dtype_name(e->dtype));
    text_puts(t, "\",\"shape\":[");
    for (int d = 0; d < e->ndim; d++) {
      if (d) text_put(t, ",", 1);
      text_put_u64(t, (uint64_t)e->shape[d]);
    }
    text_puts(t, "],\"data_offsets\":[");
    text_put_u64(t, offset);
    text_put(t, ",", 1);
    offset += e->n_bytes;
    text_put_u64(t, offset);
    text_puts(t, "]}");
  }
  text_put(t, "}", 1);
  while (!t->oom && (8 + t->len) % WK_ST_DATA_ALIGN) text_put(t, " ", 1);
  if (t->oom) return wk_fail(WK_ERR_NOMEM, "%s: out of memory for the header", path);
  if (t->len > WK_ST_MAX_HEADER_BYTES)
    return wk_fail(WK_ERR_LIMIT, "%s: the header would take %zu bytes (at most %llu)", path,
                   t->len, (unsigned long long)WK_ST_MAX_HEADER_BYTES);
  return WK_OK;
}

wk_status wk_st_write(const char *path, const wk_st_entry *entries, size_t n_entries,
                      const wk_st_meta *meta, size_t n_meta) {
  WK_ASSERT(path && (entries || !n_entries) && (meta || !n_meta));
  WK_TRY(check_input(path, entries, n_entries, meta, n_meta));
  st_text header = {0};
  wk_status s = build_header(path, entries, n_entries, meta, n_meta, &header);
  if (s != WK_OK) {
    free(header.buf);
    return s;
  }
  unsigned char len_le[8];
  for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)header.len >> (8 * i));
  wk_atomic_file af;
  s = wk_atomic_open(&af, path);
  if (s == WK_OK) s = wk_atomic_write(&af, len_le, sizeof len_le);
  if (s == WK_OK) s = wk_atomic_write(&af, header.buf, header.len);
  for (size_t i = 0; i < n_entries && s == WK_OK; i++)
    s = wk_atomic_write(&af, entries[i].data, entries[i].n_bytes);
  if (s == WK_OK) s = wk_atomic_commit(&af);
  free(header.buf);
  return s;
}
