/* segment.c - a session's events cut into windows of N events or T seconds,
 * overlapping by a stride (see clicks.h). */
#include <math.h>
#include <stdlib.h>

#include "clicks/clicks.h"

wk_click_window_cfg wk_click_window_cfg_default(void) {
  return (wk_click_window_cfg){.events = 128, .time_s = 0, .stride = 1.0, .min_events = 16};
}

wk_status wk_click_window_cfg_check(const wk_click_window_cfg *c) {
  if ((c->events > 0) == (c->time_s > 0))
    return wk_fail(WK_ERR_INVALID_ARG, "window: give either a number of events or seconds");
  if (c->events < 0 || c->events == 1 || c->events > 10000000)
    return wk_fail(WK_ERR_INVALID_ARG, "window: %d events is out of range [2, 10000000]",
                   c->events);
  if (c->time_s < 0 || !isfinite(c->time_s) || c->time_s > 1e6 ||
      (c->time_s > 0 && c->time_s < WK_CLICK_MIN_WINDOW_S))
    return wk_fail(WK_ERR_INVALID_ARG, "window: %g seconds is out of range [%g, 1e6]", c->time_s,
                   WK_CLICK_MIN_WINDOW_S);
  if (!(c->stride > 0 && c->stride <= 1))
    return wk_fail(WK_ERR_INVALID_ARG, "window stride %g is out of range (0, 1]", c->stride);
  if (c->time_s > 0 && c->time_s * c->stride < WK_CLICK_MIN_WINDOW_S)
    return wk_fail(WK_ERR_INVALID_ARG, "window: a step of %g seconds (%g s x stride %g) is "
                   "under %g s", c->time_s * c->stride, c->time_s, c->stride,
                   WK_CLICK_MIN_WINDOW_S);
  if (c->min_events < 2)
    return wk_fail(WK_ERR_INVALID_ARG, "window: min_events %d is under 2", c->min_events);
  return WK_OK;
}

typedef struct wk_win_list {
  wk_click_window *w;
  int64_t n, cap;
} wk_win_list;

/* Adds window [b, e) unless it is too short or the same as the last one. */
static wk_status wk_win_add(wk_win_list *l, int64_t b, int64_t e, int min_events) {
  if (e - b < min_events) return WK_OK;
  if (l->n && l->w[l->n - 1].begin == b && l->w[l->n - 1].end == e) return WK_OK;
  if (l->n == l->cap) {
    int64_t cap = l->cap ? l->cap * 2 : 64;
    wk_click_window *w = realloc(l->w, (size_t)cap * sizeof *w);
    if (!w) return wk_fail(WK_ERR_NOMEM, "out of memory for %lld windows", (long long)cap);
    l->w = w;
    l->cap = cap;
  }
  l->w[l->n++] = (wk_click_window){b, e};
  return WK_OK;
}

static wk_status wk_segment_events(const wk_click_session *s, const wk_click_window_cfg *c,
                                   wk_win_list *l) {
  const int64_t n = s->n_events, len = c->events;
  int64_t step = (int64_t)llround((double)len * c->stride);
  if (step < 1) step = 1;
  const int min_events = c->min_events < len ? c->min_events : (int)len;
  if (n <= len) return wk_win_add(l, 0, n, min_events);
  for (int64_t b = 0; b + len <= n; b += step) WK_TRY(wk_win_add(l, b, b + len, min_events));
  return WK_OK;
}

static wk_status wk_segment_time(const wk_click_session *s, const wk_click_window_cfg *c,
                                 wk_win_list *l) {
  const int64_t n = s->n_events;
  if (n == 0) return WK_OK;
  const wk_click_event *e = s->events;
  const double step = c->time_s * c->stride;
  const double t0 = e[0].t_s, t_end = e[n - 1].t_s;
  int64_t b = 0, end = 0;
  /* Window k is [t0 + k step, + time_s). Only the windows where its events
   * change are visited: the next is the first k whose start passes event b
   * (b moves on) or whose end passes event `end` (end moves on); the windows
   * between hold the same events, as do those across a long pause, which were
   * empty or repeats. So the loop runs at most 2n + 2 times whatever the
   * step. k is a double: it can pass what an int64 holds (the step is at
   * least WK_CLICK_MIN_WINDOW_S, times at most WK_CLICK_MAX_TIME_S, but that
   * bound is not assumed here). */
  for (double k = 0;;) {
    const double lo = t0 + k * step, hi = lo + c->time_s;
    if (lo > t_end) break;
    while (b < n && e[b].t_s < lo) b++;
    if (end < b) end = b;
    while (end < n && e[end].t_s < hi) end++;
    WK_TRY(wk_win_add(l, b, end, c->min_events));
    if (end == n) break;
    double next = floor((e[end].t_s - c->time_s - t0) / step) + 1; /* hi passes e[end] */
    if (b < n) {
      const double kb = floor((e[b].t_s - t0) / step) + 1; /* lo passes e[b] */
      if (kb < next) next = kb;
    }
    if (!(next > k)) next = k + 1; /* rounding: always forward */
    if (!isfinite(next) || next == k) break; /* beyond a double's integers */
    k = next;
  }
  return WK_OK;
}

wk_status wk_click_segment(const wk_click_session *s, const wk_click_window_cfg *c,
                           wk_click_window **out, int64_t *n) {
  *out = NULL;
  *n = 0;
  WK_TRY(wk_click_window_cfg_check(c));
  wk_win_list l = {0};
  wk_status st = c->events > 0 ? wk_segment_events(s, c, &l) : wk_segment_time(s, c, &l);
  if (st != WK_OK) {
    free(l.w);
    return st;
  }
  *out = l.w;
  *n = l.n;
  return WK_OK;
}
