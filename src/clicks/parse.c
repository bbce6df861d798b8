/* parse.c - clickstream files into cleaned event lists: format detection, the
 * Balabit and generic CSV parsers, and the row sink that counts and drops bad
 * rows (see clicks.h for the rules). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clicks/clicks_impl.h"

static const char *const wk_click_bad_names[WK_CLICK_BAD_COUNT] = {
    "sentinel", "scroll_no_position", "not_a_number", "unknown_event",
    "time_backwards", "absurd_value", "line_too_long"};

const char *wk_click_bad_name(wk_click_bad kind) {
  return (unsigned)kind < WK_CLICK_BAD_COUNT ? wk_click_bad_names[kind] : "?";
}

const char *wk_click_format_name(wk_click_format f) {
  switch (f) {
    case WK_CLICK_FORMAT_BALABIT: return "balabit";
    case WK_CLICK_FORMAT_CSV: return "csv";
    case WK_CLICK_FORMAT_JSONL: return "jsonl";
    default: return "auto";
  }
}

void wk_click_stats_add(wk_click_stats *a, const wk_click_stats *b) {
  a->rows += b->rows;
  a->kept += b->kept;
  for (int i = 0; i < WK_CLICK_BAD_COUNT; i++) a->bad[i] += b->bad[i];
  a->scroll_repositioned += b->scroll_repositioned;
  a->clock_resets += b->clock_resets;
}

int64_t wk_click_stats_dropped(const wk_click_stats *s) {
  int64_t n = 0;
  for (int i = 0; i < WK_CLICK_BAD_COUNT; i++) n += s->bad[i];
  return n;
}

void wk_click_session_free(wk_click_session *s) {
  free(s->events);
  *s = (wk_click_session){0};
}

/* ---------------------------------------------------------------- fields */

static double wk_pow10(int e) {
  static const double p[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
                             1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18};
  return e <= 18 ? p[e] : pow(10.0, e);
}

bool wk_click_parse_number(const char *p, size_t n, double *out) {
  const char *e = p + n;
  while (p < e && (*p == ' ' || *p == '\t')) p++;
  while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
  if (p == e) return false;
  const char *start = p;
  bool neg = false;
  if (*p == '-' || *p == '+') neg = *p++ == '-';
  uint64_t mant = 0;
  int digits = 0, frac = 0;
  bool any = false, exact = true;
  for (; p < e && *p >= '0' && *p <= '9'; p++, any = true) {
    if (digits < 18) mant = mant * 10 + (uint64_t)(*p - '0'), digits += mant > 0;
    else exact = false, frac--; /* dropped integer digit: scale up below */
  }
  if (p < e && *p == '.') {
    for (p++; p < e && *p >= '0' && *p <= '9'; p++, any = true)
      if (digits < 18) mant = mant * 10 + (uint64_t)(*p - '0'), digits += mant > 0, frac++;
  }
  if (!any) return false;
  if (p < e || !exact) {
    /* An exponent or an over-long mantissa: let strtod decide, on a copy. */
    char buf[64];
    size_t len = (size_t)(e - start);
    if (len >= sizeof buf) return false;
    memcpy(buf, start, len);
    buf[len] = 0;
    if (strpbrk(buf, "xX")) return false; /* strtod would read hex ("0x10") */
    char *end;
    double v = strtod(buf, &end);
    if (end != buf + len) return false;
    *out = v;
    return true;
  }
  double v = (double)mant / wk_pow10(frac);
  *out = neg ? -v : v;
  return true;
}

bool wk_click_word_eq(const char *p, size_t n, const char *word) {
  size_t wn = strlen(word);
  return n == wn && strncasecmp(p, word, n) == 0;
}

bool wk_click_event_from_name(const char *p, size_t n, wk_click_kind *out) {
  static const struct { const char *name; wk_click_kind kind; } names[] = {
      {"move", WK_CLICK_MOVE}, {"drag", WK_CLICK_DRAG}, {"down", WK_CLICK_PRESS},
      {"press", WK_CLICK_PRESS}, {"pressed", WK_CLICK_PRESS}, {"up", WK_CLICK_RELEASE},
      {"release", WK_CLICK_RELEASE}, {"released", WK_CLICK_RELEASE},
      {"scroll_up", WK_CLICK_SCROLL_UP}, {"scroll-up", WK_CLICK_SCROLL_UP},
      {"wheel_up", WK_CLICK_SCROLL_UP}, {"scroll_down", WK_CLICK_SCROLL_DOWN},
      {"scroll-down", WK_CLICK_SCROLL_DOWN}, {"wheel_down", WK_CLICK_SCROLL_DOWN}};
  while (n && (p[n - 1] == '\r' || p[n - 1] == ' ')) n--;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (wk_click_word_eq(p, n, names[i].name)) return *out = names[i].kind, true;
  return false;
}

bool wk_click_button_from_name(const char *p, size_t n, wk_click_button *out) {
  static const struct { const char *name; wk_click_button b; } names[] = {
      {"none", WK_BUTTON_NONE}, {"nobutton", WK_BUTTON_NONE}, {"", WK_BUTTON_NONE},
      {"left", WK_BUTTON_LEFT}, {"right", WK_BUTTON_RIGHT}, {"middle", WK_BUTTON_MIDDLE},
      {"other", WK_BUTTON_OTHER}, {"xbutton", WK_BUTTON_OTHER}, {"scroll", WK_BUTTON_NONE}};
  while (n && (p[n - 1] == '\r' || p[n - 1] == ' ')) n--;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (wk_click_word_eq(p, n, names[i].name)) return *out = names[i].b, true;
  return false;
}

/* ---------------------------------------------------------------- the sink */

static wk_status wk_click_push(wk_click_session *s, const wk_click_event *ev, const char *name) {
  if (s->n_events == s->capacity) {
    int64_t cap = s->capacity ? s->capacity * 2 : 4096;
    wk_click_event *e = realloc(s->events, (size_t)cap * sizeof *e);
    if (!e) return wk_fail(WK_ERR_NOMEM, "%s: out of memory for %lld events", name,
                           (long long)cap);
    s->events = e;
    s->capacity = cap;
  }
  s->events[s->n_events++] = *ev;
  s->stats.kept++;
  return WK_OK;
}

wk_status wk_click_sink_row(wk_click_sink *k, const wk_click_row *r) {
  double x = r->x, y = r->y, t = r->t_s;
  if (!isfinite(t) || t < 0 || t > WK_CLICK_MAX_TIME_S) {
    wk_click_sink_bad(k, WK_CLICK_BAD_ABSURD);
    return WK_OK;
  }
  const bool scroll = r->kind == WK_CLICK_SCROLL_UP || r->kind == WK_CLICK_SCROLL_DOWN;
  if (r->has_pos && x == WK_CLICK_SENTINEL && y == WK_CLICK_SENTINEL) {
    wk_click_sink_bad(k, WK_CLICK_BAD_SENTINEL);
    return WK_OK;
  }
  if (scroll && (!r->has_pos || (x == 0 && y == 0))) {
    if (!k->have_last) {
      wk_click_sink_bad(k, WK_CLICK_BAD_SCROLL_NO_POS);
      return WK_OK;
    }
    x = k->last_x;
    y = k->last_y;
    k->s->stats.scroll_repositioned++;
  } else if (!r->has_pos) {
    wk_click_sink_bad(k, WK_CLICK_BAD_NUMBER);
    return WK_OK;
  }
  if (!isfinite(x) || !isfinite(y) || fabs(x) > WK_CLICK_MAX_COORD ||
      fabs(y) > WK_CLICK_MAX_COORD) {
    wk_click_sink_bad(k, WK_CLICK_BAD_ABSURD);
    return WK_OK;
  }
  t += k->offset_s;
  if (t > WK_CLICK_MAX_TIME_S) { /* after clock resets, too */
    wk_click_sink_bad(k, WK_CLICK_BAD_ABSURD);
    return WK_OK;
  }
  if (k->have_last && t < k->last_t_s) {
    wk_click_sink_bad(k, WK_CLICK_BAD_TIME_BACKWARDS);
    if (k->last_t_s - t > WK_CLICK_CLOCK_RESET_S) {
      /* A clock reset: later rows continue from the last kept time. */
      k->offset_s += k->last_t_s - t;
      k->s->stats.clock_resets++;
    }
    return WK_OK;
  }
  wk_click_event ev = {.t_s = t, .x_px = (float)x, .y_px = (float)y, .kind = (uint8_t)r->kind,
                       .button = (uint8_t)r->button};
  WK_TRY(wk_click_push(k->s, &ev, k->name));
  k->have_last = true;
  k->last_t_s = t;
  k->last_x = (float)x;
  k->last_y = (float)y;
  return WK_OK;
}

/* ---------------------------------------------------------------- balabit */

static const char wk_balabit_header[] = "record timestamp,client timestamp,button,state,x,y";

/* Splits [p, e) at commas into at most max fields; returns the count. */
static int wk_split(const char *p, const char *e, const char **f, size_t *len, int max) {
  int n = 0;
  while (n < max) {
    const char *c = memchr(p, ',', (size_t)(e - p));
    const char *end = c ? c : e;
    f[n] = p;
    len[n++] = (size_t)(end - p);
    if (!c) return n;
    p = c + 1;
  }
  return n + 1; /* more fields than max */
}

static bool wk_balabit_kind(const char *b, size_t bn, const char *s, size_t sn,
                            wk_click_kind *kind, wk_click_button *button) {
  /* The common rows first, as Balabit spells them. */
  if (bn == 8 && !memcmp(b, "NoButton", 8)) {
    *button = WK_BUTTON_NONE;
    if (sn == 4 && !memcmp(s, "Move", 4)) return *kind = WK_CLICK_MOVE, true;
    if (sn == 4 && !memcmp(s, "Drag", 4)) return *kind = WK_CLICK_DRAG, true;
  }
  if (wk_click_word_eq(b, bn, "scroll")) {
    *button = WK_BUTTON_NONE;
    if (wk_click_word_eq(s, sn, "up")) return *kind = WK_CLICK_SCROLL_UP, true;
    if (wk_click_word_eq(s, sn, "down")) return *kind = WK_CLICK_SCROLL_DOWN, true;
    return false;
  }
  if (!wk_click_button_from_name(b, bn, button)) return false;
  if (wk_click_word_eq(s, sn, "move")) return *kind = WK_CLICK_MOVE, true;
  if (wk_click_word_eq(s, sn, "drag")) return *kind = WK_CLICK_DRAG, true;
  if (wk_click_word_eq(s, sn, "pressed") || wk_click_word_eq(s, sn, "down"))
    return *kind = WK_CLICK_PRESS, true;
  if (wk_click_word_eq(s, sn, "released") || wk_click_word_eq(s, sn, "up"))
    return *kind = WK_CLICK_RELEASE, true;
  return false;
}

static wk_status wk_balabit_line(wk_click_sink *k, const char *p, const char *e) {
  const char *f[6];
  size_t n[6];
  if (wk_split(p, e, f, n, 6) != 6) {
    wk_click_sink_bad(k, WK_CLICK_BAD_NUMBER);
    return WK_OK;
  }
  wk_click_row r = {.has_pos = true};
  if (!wk_click_parse_number(f[1], n[1], &r.t_s) || !wk_click_parse_number(f[4], n[4], &r.x) ||
      !wk_click_parse_number(f[5], n[5], &r.y)) {
    wk_click_sink_bad(k, WK_CLICK_BAD_NUMBER);
    return WK_OK;
  }
  if (!wk_balabit_kind(f[2], n[2], f[3], n[3], &r.kind, &r.button)) {
    wk_click_sink_bad(k, WK_CLICK_BAD_EVENT);
    return WK_OK;
  }
  return wk_click_sink_row(k, &r);
}

/* ---------------------------------------------------------------- generic CSV */

enum { WK_COL_T, WK_COL_X, WK_COL_Y, WK_COL_BUTTON, WK_COL_EVENT, WK_COL_N };
#define WK_CSV_MAX_COLS 32

typedef struct wk_csv_cols {
  int col[WK_COL_N]; /* column index of each field, -1 when absent */
  int n_cols;
} wk_csv_cols;

/* The header of a generic CSV: false when it does not name time, x and y. */
static bool wk_csv_header(const char *p, const char *e, wk_csv_cols *c) {
  const char *f[WK_CSV_MAX_COLS];
  size_t n[WK_CSV_MAX_COLS];
  int nf = wk_split(p, e, f, n, WK_CSV_MAX_COLS);
  if (nf > WK_CSV_MAX_COLS) return false;
  for (int i = 0; i < WK_COL_N; i++) c->col[i] = -1;
  c->n_cols = nf;
  static const struct { const char *name; int col; } names[] = {
      {"time", WK_COL_T}, {"t", WK_COL_T}, {"timestamp", WK_COL_T}, {"time_s", WK_COL_T},
      {"x", WK_COL_X}, {"y", WK_COL_Y}, {"button", WK_COL_BUTTON}, {"event", WK_COL_EVENT},
      {"state", WK_COL_EVENT}, {"type", WK_COL_EVENT}};
  for (int i = 0; i < nf; i++) {
    const char *s = f[i];
    size_t len = n[i];
    while (len && (s[len - 1] == '\r' || s[len - 1] == ' ')) len--;
    while (len && *s == ' ') s++, len--;
    for (size_t j = 0; j < sizeof names / sizeof names[0]; j++)
      if (wk_click_word_eq(s, len, names[j].name) && c->col[names[j].col] < 0)
        c->col[names[j].col] = i;
  }
  return c->col[WK_COL_T] >= 0 && c->col[WK_COL_X] >= 0 && c->col[WK_COL_Y] >= 0;
}

static bool wk_field_empty(const char *p, size_t n) {
  while (n && (*p == ' ' || *p == '\r')) p++, n--;
  return n == 0;
}

static wk_status wk_csv_line(wk_click_sink *k, const wk_csv_cols *c, const char *p,
                             const char *e) {
  const char *f[WK_CSV_MAX_COLS];
  size_t n[WK_CSV_MAX_COLS];
  if (wk_split(p, e, f, n, WK_CSV_MAX_COLS) != c->n_cols) {
    wk_click_sink_bad(k, WK_CLICK_BAD_NUMBER);
    return WK_OK;
  }
  wk_click_row r = {.kind = WK_CLICK_MOVE, .button = WK_BUTTON_NONE, .has_pos = true};
  if (c->col[WK_COL_EVENT] >= 0) {
    int i = c->col[WK_COL_EVENT];
    if (!wk_click_event_from_name(f[i], n[i], &r.kind)) {
      wk_click_sink_bad(k, WK_CLICK_BAD_EVENT);
      return WK_OK;
    }
  }
  if (c->col[WK_COL_BUTTON] >= 0) {
    int i = c->col[WK_COL_BUTTON];
    if (!wk_click_button_from_name(f[i], n[i], &r.button)) {
      wk_click_sink_bad(k, WK_CLICK_BAD_EVENT);
      return WK_OK;
    }
  }
  int ix = c->col[WK_COL_X], iy = c->col[WK_COL_Y], it = c->col[WK_COL_T];
  const bool scroll = r.kind == WK_CLICK_SCROLL_UP || r.kind == WK_CLICK_SCROLL_DOWN;
  if (scroll && wk_field_empty(f[ix], n[ix]) && wk_field_empty(f[iy], n[iy])) {
    r.has_pos = false;
  } else if (!wk_click_parse_number(f[ix], n[ix], &r.x) ||
             !wk_click_parse_number(f[iy], n[iy], &r.y)) {
    wk_click_sink_bad(k, WK_CLICK_BAD_NUMBER);
    return WK_OK;
  }
  if (!wk_click_parse_number(f[it], n[it], &r.t_s)) {
    wk_click_sink_bad(k, WK_CLICK_BAD_NUMBER);
    return WK_OK;
  }
  return wk_click_sink_row(k, &r);
}

/* ---------------------------------------------------------------- the file */

static bool wk_blank(const char *p, const char *e) {
  for (; p < e; p++)
    if (*p != ' ' && *p != '\t' && *p != '\r') return false;
  return true;
}

/* Finds the first non-blank line (after a UTF-8 byte order mark) and tells
 * the format from it. *data is where the data rows start (the first line
 * itself for JSON lines). */
static wk_status wk_detect(const char *bytes, const char *end, const char *name, size_t max_line,
                           wk_click_format *f, wk_csv_cols *cols, const char **data) {
  const char *p = bytes, *first = NULL, *first_end = NULL;
  if (end - p >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
  while (p < end && !first) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    if (!wk_blank(p, le)) first = p, first_end = le;
    p = nl ? nl + 1 : end;
  }
  if (!first) return wk_fail(WK_ERR_FORMAT, "%s: empty (no header and no rows)", name);
  if ((size_t)(first_end - first) > max_line)
    return wk_fail(WK_ERR_FORMAT, "%s: the first line is longer than %zu bytes: not a "
                   "clickstream file", name, max_line);
  const char *fe = first_end;
  while (fe > first && (fe[-1] == '\r' || fe[-1] == ' ')) fe--;
  *data = p;
  if (*first == '{') {
    *f = WK_CLICK_FORMAT_JSONL;
    *data = first;
  } else if ((size_t)(fe - first) == sizeof wk_balabit_header - 1 &&
             !strncasecmp(first, wk_balabit_header, sizeof wk_balabit_header - 1)) {
    *f = WK_CLICK_FORMAT_BALABIT;
  } else if (wk_csv_header(first, fe, cols)) {
    *f = WK_CLICK_FORMAT_CSV;
  } else {
    return wk_fail(WK_ERR_FORMAT,
                   "%s: not a clickstream file: the first line is neither the Balabit header, "
                   "a CSV header naming time,x,y, nor a JSON object", name);
  }
  return WK_OK;
}

wk_status wk_click_parse(const char *bytes, size_t n_bytes, const char *name,
                         const wk_click_parse_opts *opts, wk_click_session *out) {
  const size_t max_line = opts && opts->max_line_bytes ? opts->max_line_bytes
                                                       : WK_CLICK_DEFAULT_MAX_LINE;
  const int64_t max_rows = opts && opts->max_rows > 0 ? opts->max_rows
                                                      : WK_CLICK_DEFAULT_MAX_ROWS;
  const wk_click_format want = opts ? opts->format : WK_CLICK_FORMAT_AUTO;
  out->n_events = 0;
  out->stats = (wk_click_stats){0};
  out->format = WK_CLICK_FORMAT_AUTO;
  wk_click_sink k = {.s = out, .name = name};
  const char *p = NULL, *end = bytes + n_bytes;
  wk_csv_cols cols = {.n_cols = 0};
  wk_click_format f = WK_CLICK_FORMAT_AUTO;
  WK_TRY(wk_detect(bytes, end, name, max_line, &f, &cols, &p));
  if (want != WK_CLICK_FORMAT_AUTO && want != f)
    return wk_fail(WK_ERR_FORMAT, "%s: looks like %s, not %s", name, wk_click_format_name(f),
                   wk_click_format_name(want));
  out->format = f;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    const char *next = nl ? nl + 1 : end;
    if (wk_blank(p, le)) {
      p = next;
      continue;
    }
    if (++out->stats.rows > max_rows) {
      out->n_events = 0;
      return wk_fail(WK_ERR_LIMIT, "%s: more than %lld rows (the row limit); file refused",
                     name, (long long)max_rows);
    }
    wk_status s = WK_OK;
    if ((size_t)(le - p) > max_line) {
      wk_click_sink_bad(&k, WK_CLICK_BAD_LONG_LINE);
    } else if (f == WK_CLICK_FORMAT_BALABIT) {
      s = wk_balabit_line(&k, p, le);
    } else if (f == WK_CLICK_FORMAT_CSV) {
      s = wk_csv_line(&k, &cols, p, le);
    } else {
      s = wk_click_jsonl_line(&k, p, (size_t)(le - p));
    }
    if (s != WK_OK) return s;
    p = next;
  }
  return WK_OK;
}

wk_status wk_click_load(const char *path, const wk_click_parse_opts *opts,
                        wk_click_session *out) {
  wk_bytes buf = {0};
  wk_status s = wk_file_read(path, 0, &buf);
  if (s == WK_OK) s = wk_click_parse((const char *)buf.data, buf.n_bytes, path, opts, out);
  wk_bytes_free(&buf);
  return s;
}
