/* csv.c - a dataset from a CSV list of `path,label` rows (see dataset.h for
 * the accepted syntax). Each malformed row is reported once with its line and
 * skipped; the parse itself never fails on content, only on I/O or memory. */
#include "data/dataset_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image/image.h"

/* A CSV list larger than this is refused rather than read into memory. */
#define WK_CSV_MAX_BYTES ((size_t)1 << 30)

typedef struct wk_csv_field {
  char *s;
  size_t n, cap;
  bool quoted;
} wk_csv_field;

typedef struct wk_csv_row {
  wk_csv_field f[2]; /* path, label: later fields are only counted */
  int n_fields;
  size_t line;        /* where the row starts */
  const char *error;  /* malformed: why */
} wk_csv_row;

typedef struct wk_csv_entry {
  char *path;  /* as written in the file */
  char *label;
} wk_csv_entry;

typedef struct wk_csv {
  const char *csv_path;
  wk_dataset *ds;
  wk_csv_entry *rows;
  int64_t n_rows, cap_rows;
  int64_t n_seen;           /* rows so far, good or bad (blank lines not counted) */
  int64_t max_rows;         /* the row limit */
  size_t max_row_bytes;     /* the line-length limit */
  char too_long[96];        /* the message for a row over it */
  bool seen_row; /* a header is only possible before the first row */
} wk_csv;

static bool wk_field_put(wk_csv_field *f, char c) {
  if (f->n + 1 >= f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 64;
    char *p = realloc(f->s, cap);
    if (!p) return false;
    f->s = p;
    f->cap = cap;
  }
  f->s[f->n++] = c;
  f->s[f->n] = '\0';
  return true;
}

/* The field's text: unquoted fields lose surrounding spaces and tabs. */
static const char *wk_field_text(wk_csv_field *f) {
  if (!f->s) return "";
  char *s = f->s;
  if (!f->quoted) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
  }
  return s;
}

static wk_status wk_csv_bad_row(wk_csv *c, size_t line, const char *why) {
  char where[64];
  size_t n = strlen(c->csv_path) + sizeof where;
  char *path = malloc(n);
  if (!path) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
  snprintf(path, n, "%s:%zu", c->csv_path, line);
  wk_status s = wk_dataset_push_bad(c->ds, path, why);
  free(path);
  return s;
}

static wk_status wk_csv_row_done(wk_csv *c, wk_csv_row *r) {
  const char *path = r->n_fields >= 1 ? wk_field_text(&r->f[0]) : "";
  const char *label = r->n_fields >= 2 ? wk_field_text(&r->f[1]) : "";
  if (!r->error && r->n_fields == 1 && !*path && !r->f[0].quoted) return WK_OK; /* blank */
  if (!r->error && !c->seen_row && r->n_fields == 2 && !strcasecmp(path, "path") &&
      !strcasecmp(label, "label")) {
    c->seen_row = true;
    return WK_OK; /* header */
  }
  /* bad rows count too: each costs a bad-list entry */
  if (++c->n_seen > c->max_rows)
    return wk_fail(WK_ERR_LIMIT, "%s:%zu: more than %lld rows (the CSV row limit)", c->csv_path,
                   r->line, (long long)c->max_rows);
  if (r->error) return wk_csv_bad_row(c, r->line, r->error);
  c->seen_row = true;
  char why[96];
  if (r->n_fields != 2) {
    snprintf(why, sizeof why, "expected 2 fields (path,label), found %d", r->n_fields);
    return wk_csv_bad_row(c, r->line, why);
  }
  if (!*path) return wk_csv_bad_row(c, r->line, "empty path");
  if (!*label) return wk_csv_bad_row(c, r->line, "empty label");
  if (c->n_rows == c->cap_rows) {
    int64_t cap = c->cap_rows ? c->cap_rows * 2 : 256;
    wk_csv_entry *p = realloc(c->rows, (size_t)cap * sizeof *p);
    if (!p) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
    c->rows = p;
    c->cap_rows = cap;
  }
  wk_csv_entry e = {wk_strdup(path), wk_strdup(label)};
  if (!e.path || !e.label) {
    free(e.path);
    free(e.label);
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
  }
  c->rows[c->n_rows++] = e;
  return WK_OK;
}

static void wk_row_reset(wk_csv_row *r, size_t line) {
  for (int i = 0; i < 2; i++) {
    r->f[i].n = 0;
    r->f[i].quoted = false;
    if (r->f[i].s) r->f[i].s[0] = '\0';
  }
  r->n_fields = 1;
  r->line = line;
  r->error = NULL;
}

/* The state machine over the file's bytes. A row longer than max_row_bytes
 * is read to its end but keeps none of its text past the limit. */
static wk_status wk_csv_parse(wk_csv *c, const char *p, size_t n) {
  if (n >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3, n -= 3; /* UTF-8 BOM */
  snprintf(c->too_long, sizeof c->too_long, "row longer than %zu bytes (the line-length limit)",
           c->max_row_bytes);
  wk_csv_row r = {0};
  size_t line = 1, row_start = 0;
  wk_row_reset(&r, line);
  bool in_quotes = false, after_quote = false, field_started = false;
  wk_status s = WK_OK;
  for (size_t i = 0; i < n && s == WK_OK; i++) {
    char ch = p[i];
    wk_csv_field *f = r.n_fields <= 2 ? &r.f[r.n_fields - 1] : NULL;
    if (i - row_start >= c->max_row_bytes && ch != '\n' && ch != '\r') {
      r.error = c->too_long;
      f = NULL;
    }
    if (ch == '\n') line++;
    if (in_quotes) {
      if (ch == '"' && i + 1 < n && p[i + 1] == '"') {
        i++;
        if (f && !wk_field_put(f, '"')) s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
      } else if (ch == '"') {
        in_quotes = false;
        after_quote = true;
      } else if (f && !wk_field_put(f, ch)) {
        s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
      }
      continue;
    }
    if (ch == ',') {
      r.n_fields++;
      after_quote = field_started = false;
    } else if (ch == '\n' || ch == '\r') {
      if (ch == '\r' && i + 1 < n && p[i + 1] == '\n') continue; /* the \n ends the row */
      s = wk_csv_row_done(c, &r);
      wk_row_reset(&r, line);
      row_start = i + 1;
      after_quote = field_started = false;
    } else if (ch == '"' && !field_started) {
      in_quotes = true;
      field_started = true;
      if (f) {
        f->quoted = true;
        f->n = 0; /* spaces before the opening quote are not part of the field */
      }
    } else if (after_quote) {
      if (ch != ' ' && ch != '\t') r.error = "text after a closing quote";
    } else if (ch == '"') {
      r.error = "a quote inside an unquoted field";
    } else if (ch == '\0') {
      r.error = "a NUL byte";
    } else {
      if (ch != ' ' && ch != '\t') field_started = true;
      if (f && !wk_field_put(f, ch)) s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
    }
  }
  if (s == WK_OK && in_quotes) r.error = "a quoted field never closed";
  if (s == WK_OK) s = wk_csv_row_done(c, &r); /* the last row may lack a newline */
  free(r.f[0].s);
  free(r.f[1].s);
  return s;
}

/* Labels sort numerically when every one is a non-negative integer. */
static bool wk_all_numeric(char *const *labels, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const char *s = labels[i];
    size_t len = strlen(s);
    if (len == 0 || len > 9) return false;
    for (size_t k = 0; k < len; k++)
      if (!isdigit((unsigned char)s[k])) return false;
  }
  return true;
}

static int wk_numeric_cmp(const void *a, const void *b) {
  const char *x = *(char *const *)a, *y = *(char *const *)b;
  long u = strtol(x, NULL, 10), v = strtol(y, NULL, 10);
  return u < v ? -1 : u > v ? 1 : strcmp(x, y);
}

/* Classes from the labels, then the samples with their paths resolved. */
static wk_status wk_csv_build(wk_csv *c) {
  wk_dataset *ds = c->ds;
  int64_t n = c->n_rows;
  char **labels = malloc((size_t)(n ? n : 1) * sizeof *labels);
  if (!labels) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
  for (int64_t i = 0; i < n; i++) labels[i] = c->rows[i].label;
  int (*cmp)(const void *, const void *) = wk_all_numeric(labels, n) ? wk_numeric_cmp
                                                                      : wk_strcmp_ptr;
  qsort(labels, (size_t)n, sizeof *labels, cmp);
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++)
    if (k == 0 || strcmp(labels[k - 1], labels[i])) labels[k++] = labels[i];
  wk_status s = WK_OK;
  if (k > INT32_MAX) s = wk_fail(WK_ERR_LIMIT, "%s: too many classes", c->csv_path);
  char **names = s == WK_OK ? calloc((size_t)(k ? k : 1), sizeof *names) : NULL;
  if (s == WK_OK && !names) s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
  for (int64_t i = 0; s == WK_OK && i < k; i++)
    if (!(names[i] = wk_strdup(labels[i]))) s = wk_fail(WK_ERR_NOMEM, "out of memory");
  if (s == WK_OK) {
    wk_dataset_set_classes(ds, names, (int)k);
    names = NULL;
  } else if (names) {
    for (int64_t i = 0; i < k; i++) free(names[i]);
    free(names);
  }
  /* the folder the paths are relative to */
  char *dir = wk_strdup(c->csv_path);
  if (s == WK_OK && !dir) s = wk_fail(WK_ERR_NOMEM, "%s: out of memory", c->csv_path);
  if (dir) {
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir ? 1 : 0] = '\0';
    else strcpy(dir, ".");
  }
  for (int64_t i = 0; s == WK_OK && i < n; i++) {
    const char *key = c->rows[i].label;
    char **hit = bsearch(&key, labels, (size_t)k, sizeof *labels, cmp);
    WK_ASSERT(hit != NULL);
    const char *p = c->rows[i].path;
    s = wk_dataset_push(ds, p[0] == '/' ? wk_strdup(p) : wk_path_join(dir, p),
                        (int32_t)(hit - labels));
  }
  free(dir);
  free(labels);
  return s;
}

wk_status wk_dataset_open_csv(const char *csv_path, const wk_dataset_opts *opts,
                              wk_dataset **out) {
  wk_dataset_opts o = opts ? *opts : wk_dataset_opts_default();
  *out = NULL;
  wk_dataset *ds = NULL;
  WK_TRY(wk_dataset_new(csv_path, &ds));
  wk_bytes file = {0};
  wk_csv c = {.csv_path = csv_path, .ds = ds,
              .max_rows = o.csv_max_rows > 0 ? o.csv_max_rows : WK_CSV_MAX_ROWS,
              .max_row_bytes = o.csv_max_row_bytes > 0 ? o.csv_max_row_bytes
                                                       : WK_CSV_MAX_ROW_BYTES};
  wk_status s = wk_file_read(csv_path, WK_CSV_MAX_BYTES, &file);
  if (s == WK_OK) s = wk_csv_parse(&c, (const char *)file.data, file.n_bytes);
  if (s == WK_OK) s = wk_csv_build(&c);
  for (int64_t i = 0; i < c.n_rows; i++) {
    free(c.rows[i].path);
    free(c.rows[i].label);
  }
  free(c.rows);
  wk_bytes_free(&file);
  if (s != WK_OK) {
    wk_dataset_free(ds);
    return s;
  }
  return wk_dataset_finish(ds, &o, out);
}
