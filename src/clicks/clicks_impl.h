/* clicks_impl.h - internals shared by the clickstream parsers: the row sink
 * that cleans and appends events, and small field parsers. */
#ifndef WK_CLICKS_IMPL_H
#define WK_CLICKS_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "clicks/clicks.h"

/* Parser state for one file. */
typedef struct wk_click_sink {
  wk_click_session *s;
  const char *name;
  double last_t_s;    /* time of the last kept event (before offset) + offset */
  double offset_s;    /* added to raw times after a clock reset */
  bool have_last;
  float last_x, last_y;
} wk_click_sink;

/* A row before cleaning. has_pos false: the row carries no position (a
 * generic scroll row without x/y). */
typedef struct wk_click_row {
  double t_s, x, y;
  wk_click_kind kind;
  wk_click_button button;
  bool has_pos;
} wk_click_row;

/* Cleans one row and appends it (or counts why it was dropped). Fails only
 * when memory runs out. */
wk_status wk_click_sink_row(wk_click_sink *k, const wk_click_row *r);
static inline void wk_click_sink_bad(wk_click_sink *k, wk_click_bad why) {
  k->s->stats.bad[why]++;
}

/* Parses the whole of [p, p + n) as a decimal number (optional sign, digits,
 * fraction, exponent; surrounding spaces allowed). */
bool wk_click_parse_number(const char *p, size_t n, double *out);
/* Case-insensitive comparison of [p, p + n) with a NUL-terminated word. */
bool wk_click_word_eq(const char *p, size_t n, const char *word);
/* Generic event/button names (see clicks.h); false when unknown. */
bool wk_click_event_from_name(const char *p, size_t n, wk_click_kind *out);
bool wk_click_button_from_name(const char *p, size_t n, wk_click_button *out);

/* The JSON-lines parser (parse_jsonl.c): one line, already length-checked. */
wk_status wk_click_jsonl_line(wk_click_sink *k, const char *line, size_t n);

#endif
