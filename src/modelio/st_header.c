/* st_header.c - checks a safetensors JSON header and turns it into the entry
 * and metadata tables of a wk_st_file (contract in st_impl.h).
 *
 * Three stages, each before anything depends on it:
 *   1. a byte scan for what cJSON lets through but the reference reader
 *      (serde_json) refuses or C strings cannot hold: invalid UTF-8, raw
 *      control characters, "\u0000"; and a bound on the number of JSON values,
 *      which bounds what cJSON allocates;
 *   2. cJSON parses (its nesting limit, 1000, bounds the recursion);
 *   3. every entry is checked against the real size of the data section:
 *      known dtype, at most WK_MAX_DIMS non-negative integer dims, byte size
 *      equal to its data_offsets, and the tensors sorted by offset cover the
 *      data section exactly. Names and metadata keys must be unique. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "modelio/st_impl.h"

/* An entry while it is checked: its header position breaks ties in sorting. */
typedef struct st_raw {
  wk_st_entry e; /* e.name points into the cJSON tree */
  uint64_t begin, end;
  size_t header_index;
} st_raw;

static wk_status scan_header(const char *path, const unsigned char *h, size_t n) {
  if (n >= 3 && h[0] == 0xef && h[1] == 0xbb && h[2] == 0xbf)
    return wk_fail(WK_ERR_FORMAT, "%s: header starts with a byte order mark", path);
  bool in_str = false;
  size_t n_values = 1; /* each value but the first follows a ',', '[' or '{' */
  for (size_t i = 0; i < n; i++) {
    unsigned c = h[i];
    if (c >= 0x80) {
      size_t len = wk_utf8_seq_bytes(h + i, n - i);
      if (!len)
        return wk_fail(WK_ERR_FORMAT, "%s: header is not valid UTF-8 (byte %zu)", path, i);
      i += len - 1;
    } else if (in_str) {
      if (c == '"') {
        in_str = false;
      } else if (c == '\\') {
        if (n - i >= 6 && !memcmp(h + i + 1, "u0000", 5))
          return wk_fail(WK_ERR_FORMAT,
                         "%s: header: a string holds \\u0000 (byte %zu); NUL is not supported",
                         path, i);
        i++;
      } else if (c < 0x20) {
        return wk_fail(WK_ERR_FORMAT,
                       "%s: header: control character 0x%02x inside a string (byte %zu)", path,
                       c, i);
      }
    } else if (c == '"') {
      in_str = true;
    } else if (c == ',' || c == '[' || c == '{') {
      if (++n_values > WK_ST_MAX_JSON_VALUES)
        return wk_fail(WK_ERR_LIMIT, "%s: header holds more than %zu JSON values", path,
                       (size_t)WK_ST_MAX_JSON_VALUES);
    } else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      return wk_fail(WK_ERR_FORMAT, "%s: header: control character 0x%02x (byte %zu)", path, c,
                     i);
    }
  }
  return WK_OK;
}

/* A JSON number that must be an integer in [0, 2^53]: NULL on success, else
 * what is wrong with it. */
static const char *json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return "is not a number";
  double d = v->valuedouble;
  if (d < 0) return "is negative";
  if (!(d <= (double)WK_ST_MAX_JSON_INT)) return "is too large (above 2^53)";
  if ((double)(uint64_t)d != d) return "is not an integer";
  *out = (uint64_t)d;
  return NULL;
}

static wk_status parse_shape(const char *path, const char *name, const cJSON *shape, st_raw *r) {
  if (!cJSON_IsArray(shape))
    return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': shape is not a list", path, name);
  int ndim = 0;
  for (const cJSON *d = shape->child; d; d = d->next, ndim++) {
    if (ndim == WK_MAX_DIMS)
      return wk_fail(WK_ERR_LIMIT, "%s: tensor '%s': more than %d dimensions", path, name,
                     WK_MAX_DIMS);
    uint64_t v = 0;
    const char *bad = json_uint(d, &v);
    if (bad && cJSON_IsNumber(d))
      return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': dimension %d of the shape (%.17g) %s",
                     path, name, ndim, d->valuedouble, bad);
    if (bad)
      return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': dimension %d of the shape %s", path, name,
                     ndim, bad);
    r->e.shape[ndim] = (int64_t)v;
  }
  r->e.ndim = ndim;
  return WK_OK;
}

static wk_status parse_offsets(const char *path, const char *name, const cJSON *offs,
                               st_raw *r) {
  const cJSON *b = cJSON_IsArray(offs) ? offs->child : NULL;
  const cJSON *e = b ? b->next : NULL;
  if (!e || e->next)
    return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': data_offsets is not a list of two numbers",
                   path, name);
  const char *bad = json_uint(b, &r->begin);
  if (!bad) bad = json_uint(e, &r->end);
  if (bad)
    return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': an offset in data_offsets %s", path, name,
                   bad);
  return WK_OK;
}

/* One tensor's {"dtype", "shape", "data_offsets"}; other keys are ignored,
 * as the reference reader does, but none of these three may repeat. */
static wk_status parse_entry(const char *path, const cJSON *item, st_raw *r) {
  const char *name = item->string;
  r->e.name = name;
  if (!cJSON_IsObject(item))
    return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': not a JSON object", path, name);
  static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
  const cJSON *found[3] = {NULL, NULL, NULL};
  for (const cJSON *c = item->child; c; c = c->next)
    for (int k = 0; k < 3; k++)
      if (!strcmp(c->string, keys[k])) {
        if (found[k])
          return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': key '%s' appears twice", path, name,
                         keys[k]);
        found[k] = c;
      }
  for (int k = 0; k < 3; k++)
    if (!found[k])
      return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': no %s", path, name, keys[k]);
  if (!cJSON_IsString(found[0]))
    return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", path, name);
  if (!wk_st_dtype_parse(found[0]->valuestring, &r->e.dtype))
    return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                   found[0]->valuestring);
  WK_TRY(parse_shape(path, name, found[1], r));
  return parse_offsets(path, name, found[2], r);
}

/* One entry's offsets against the data section and its shape. */
static wk_status check_extent(const char *path, st_raw *r, uint64_t data_bytes) {
  const wk_st_entry *e = &r->e;
  unsigned long long b = r->begin, end = r->end;
  if (b > end)
    return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu) are reversed",
                   path, e->name, b, end);
  if (end > data_bytes)
    return wk_fail(WK_ERR_FORMAT,
                   "%s: tensor '%s': data_offsets [%llu, %llu) run past the end of the data "
                   "section (%llu bytes)",
                   path, e->name, b, end, (unsigned long long)data_bytes);
  char shape[160];
  uint64_t need = 0;
  if (!wk_st_shape_bytes(e->dtype, e->ndim, e->shape, UINT64_MAX, &need))
    return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s': the byte size of shape %s of %s overflows",
                   path, e->name, wk_st_shape_str(e->ndim, e->shape, shape, sizeof shape),
                   wk_st_dtype_name(e->dtype));
  if (need != end - b)
    return wk_fail(WK_ERR_FORMAT,
                   "%s: tensor '%s': data_offsets [%llu, %llu) hold %llu bytes but shape %s of "
                   "%s needs %llu",
                   path, e->name, b, end, end - b,
                   wk_st_shape_str(e->ndim, e->shape, shape, sizeof shape),
                   wk_st_dtype_name(e->dtype), (unsigned long long)need);
  r->e.n_bytes = (size_t)need;
  return WK_OK;
}

static int cmp_raw_offsets(const void *a, const void *b) {
  const st_raw *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->header_index < y->header_index ? -1 : x->header_index > y->header_index;
}

/* Sorts raw by offsets and checks that it tiles [0, data_bytes) exactly, as the
 * reference reader requires (empty tensors may sit anywhere on a boundary). */
static wk_status check_coverage(const char *path, st_raw *raw, size_t n, uint64_t data_bytes) {
  qsort(raw, n, sizeof *raw, cmp_raw_offsets);
  uint64_t pos = 0;
  for (size_t i = 0; i < n; i++) {
    if (raw[i].begin > pos)
      return wk_fail(WK_ERR_FORMAT,
                     "%s: hole in the data section: bytes [%llu, %llu) before tensor '%s' "
                     "belong to no tensor",
                     path, (unsigned long long)pos, (unsigned long long)raw[i].begin,
                     raw[i].e.name);
    if (raw[i].begin < pos)
      return wk_fail(WK_ERR_FORMAT,
                     "%s: tensor '%s' at [%llu, %llu) overlaps tensor '%s' at [%llu, %llu)",
                     path, raw[i].e.name, (unsigned long long)raw[i].begin,
                     (unsigned long long)raw[i].end, raw[i - 1].e.name,
                     (unsigned long long)raw[i - 1].begin, (unsigned long long)raw[i - 1].end);
    pos = raw[i].end;
  }
  if (pos != data_bytes)
    return wk_fail(WK_ERR_FORMAT,
                   "%s: %llu trailing bytes: [%llu, %llu) of the data section belong to no "
                   "tensor",
                   path, (unsigned long long)(data_bytes - pos), (unsigned long long)pos,
                   (unsigned long long)data_bytes);
  return WK_OK;
}

/* Copies s into the string arena at *cursor and returns the copy. */
static const char *arena_copy(char **cursor, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = *cursor;
  memcpy(d, s, n);
  *cursor += n;
  return d;
}

static wk_status check_unique(wk_st_file *f) {
  for (size_t i = 0; i < f->n_entries; i++) f->by_name[i] = &f->entries[i];
  qsort(f->by_name, f->n_entries, sizeof *f->by_name, wk_st_cmp_entry_name);
  for (size_t i = 1; i < f->n_entries; i++)
    if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name))
      return wk_fail(WK_ERR_FORMAT, "%s: two tensors are named '%s'", f->path,
                     f->by_name[i]->name);
  for (size_t i = 0; i < f->n_meta; i++) f->meta_by_key[i] = &f->meta[i];
  qsort(f->meta_by_key, f->n_meta, sizeof *f->meta_by_key, wk_st_cmp_meta_key);
  for (size_t i = 1; i < f->n_meta; i++)
    if (!strcmp(f->meta_by_key[i - 1]->key, f->meta_by_key[i]->key))
      return wk_fail(WK_ERR_FORMAT, "%s: metadata key '%s' appears twice", f->path,
                     f->meta_by_key[i]->key);
  return WK_OK;
}

/* Fills raw (n_entries) from the tree, checks it, then moves everything into
 * f in data-section order with strings copied to the arena. */
static wk_status fill(wk_st_file *f, const cJSON *root, const cJSON *meta, st_raw *raw,
                      uint64_t data_bytes) {
  size_t n = 0;
  for (const cJSON *c = root->child; c; c = c->next) {
    if (c == meta) continue;
    raw[n].header_index = n;
    WK_TRY(parse_entry(f->path, c, &raw[n]));
    WK_TRY(check_extent(f->path, &raw[n], data_bytes));
    n++;
  }
  WK_ASSERT(n == f->n_entries);
  WK_TRY(check_coverage(f->path, raw, n, data_bytes));
  char *cursor = f->strings;
  for (size_t i = 0; i < n; i++) {
    f->entries[i] = raw[i].e;
    f->entries[i].name = arena_copy(&cursor, raw[i].e.name);
    f->offsets[i] = raw[i].begin;
  }
  size_t m = 0;
  for (const cJSON *c = meta ? meta->child : NULL; c; c = c->next, m++) {
    f->meta[m].key = arena_copy(&cursor, c->string);
    f->meta[m].value = arena_copy(&cursor, c->valuestring);
  }
  return check_unique(f);
}

/* Counts entries and metadata pairs and the bytes of their strings; checks
 * that __metadata__ is unique, an object, and holds strings only. */
static wk_status count(wk_st_file *f, const cJSON *root, const cJSON **meta,
                       size_t *string_bytes) {
  *meta = NULL;
  for (const cJSON *c = root->child; c; c = c->next) {
    if (!strcmp(c->string, "__metadata__")) {
      if (*meta) return wk_fail(WK_ERR_FORMAT, "%s: __metadata__ appears twice", f->path);
      *meta = c;
      continue;
    }
    f->n_entries++;
    *string_bytes += strlen(c->string) + 1;
  }
  if (!*meta) return WK_OK;
  if (!cJSON_IsObject(*meta))
    return wk_fail(WK_ERR_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
  for (const cJSON *c = (*meta)->child; c; c = c->next) {
    if (!cJSON_IsString(c))
      return wk_fail(WK_ERR_FORMAT,
                     "%s: metadata '%s' is not a string (the format allows strings only)",
                     f->path, c->string);
    f->n_meta++;
    *string_bytes += strlen(c->string) + strlen(c->valuestring) + 2;
  }
  return WK_OK;
}

static wk_status from_tree(wk_st_file *f, const cJSON *root, uint64_t data_bytes) {
  const cJSON *meta = NULL;
  size_t string_bytes = 1;
  WK_TRY(count(f, root, &meta, &string_bytes));
  /* Counts are bounded by the header's value count (scan_header), so by its
   * real size: these allocations are not sizes the header merely claims. */
  size_t n = f->n_entries ? f->n_entries : 1, m = f->n_meta ? f->n_meta : 1;
  f->entries = calloc(n, sizeof *f->entries);
  f->offsets = calloc(n, sizeof *f->offsets);
  f->by_name = calloc(n, sizeof *f->by_name);
  f->meta = calloc(m, sizeof *f->meta);
  f->meta_by_key = calloc(m, sizeof *f->meta_by_key);
  f->strings = malloc(string_bytes);
  st_raw *raw = calloc(n, sizeof *raw);
  wk_status s = WK_OK;
  if (!f->entries || !f->offsets || !f->by_name || !f->meta || !f->meta_by_key || !f->strings ||
      !raw)
    s = wk_fail(WK_ERR_NOMEM, "%s: out of memory for %zu tensors", f->path, f->n_entries);
  if (s == WK_OK) s = fill(f, root, meta, raw, data_bytes);
  free(raw);
  return s;
}

wk_status wk_st_parse_header(wk_st_file *f, const char *h, size_t n_bytes, uint64_t data_bytes) {
  WK_TRY(scan_header(f->path, (const unsigned char *)h, n_bytes));
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(h, n_bytes, &end, 0);
  if (!root)
    return wk_fail(WK_ERR_FORMAT,
                   "%s: header is not valid JSON or nests deeper than %d levels (error at byte "
                   "%zu of %zu)",
                   f->path, CJSON_NESTING_LIMIT, end ? (size_t)(end - h) : (size_t)0, n_bytes);
  wk_status s = WK_OK;
  for (size_t i = (size_t)(end - h); i < n_bytes && s == WK_OK; i++)
    if (!strchr(" \t\n\r", h[i]) || !h[i])
      s = wk_fail(WK_ERR_FORMAT, "%s: header: junk after the JSON object (byte %zu)", f->path, i);
  if (s == WK_OK && !cJSON_IsObject(root))
    s = wk_fail(WK_ERR_FORMAT, "%s: header is JSON but not an object", f->path);
  if (s == WK_OK) s = from_tree(f, root, data_bytes);
  cJSON_Delete(root);
  return s;
}
