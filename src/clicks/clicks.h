/* clicks.h - clickstream logs to images: parse, clean, segment, render.
 *
 * Formats (detected from the content, never from the file name):
 *   balabit  the Balabit Mouse Dynamics Challenge CSV: header
 *            "record timestamp,client timestamp,button,state,x,y"; the client
 *            timestamp is the event time. button NoButton|Left|Right|Middle|
 *            XButton|Scroll, state Move|Drag|Pressed|Released|Up|Down.
 *   csv      a header naming the columns time (or t, timestamp), x, y and
 *            optionally button and event (or state, type), any order.
 *   jsonl    one JSON object per line: {"time": s, "x": px, "y": px,
 *            "button": "left", "event": "move"}.
 *   Generic events: move, drag, down|press|pressed, up|release|released,
 *   scroll_up|scroll-up|wheel_up, scroll_down|scroll-down|wheel_down;
 *   buttons: none|left|right|middle|other (case does not matter).
 *
 * Cleaning: every row that cannot be used is counted by kind (wk_click_bad)
 * and dropped; parsing goes on. A time step backwards is dropped; one of more
 * than WK_CLICK_CLOCK_RESET_S seconds is taken as a clock reset and later rows
 * are shifted so time continues from the last kept event (Balabit has one).
 * A scroll row without a position (Balabit writes x = y = 0) is kept at the
 * previous event's position and counted in `scroll_repositioned`; with no
 * previous event it is dropped as WK_CLICK_BAD_SCROLL_NO_POS.
 *
 * Limits: a line longer than max_line_bytes is dropped (counted); a file over
 * max_rows data rows is refused (WK_ERR_LIMIT) before any event is kept. */
#ifndef WK_CLICKS_H
#define WK_CLICKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "image/image.h"

#define WK_CLICK_SENTINEL 65535           /* Balabit's "no position" coordinate */
#define WK_CLICK_MAX_COORD 16384          /* |x|, |y| beyond this is absurd */
#define WK_CLICK_MAX_TIME_S 1e9           /* event time beyond this (or < 0) is absurd */
#define WK_CLICK_MIN_WINDOW_S 1e-3        /* time windows, and their step, at least this */
#define WK_CLICK_CLOCK_RESET_S 1.0        /* a backward step larger than this is a reset */
#define WK_CLICK_DEFAULT_MAX_LINE 4096    /* bytes */
#define WK_CLICK_DEFAULT_MAX_ROWS 20000000

typedef enum wk_click_kind {
  WK_CLICK_MOVE = 0,
  WK_CLICK_DRAG,        /* move with a button held */
  WK_CLICK_PRESS,
  WK_CLICK_RELEASE,
  WK_CLICK_SCROLL_UP,
  WK_CLICK_SCROLL_DOWN,
} wk_click_kind;

typedef enum wk_click_button {
  WK_BUTTON_NONE = 0, WK_BUTTON_LEFT, WK_BUTTON_RIGHT, WK_BUTTON_MIDDLE, WK_BUTTON_OTHER
} wk_click_button;

typedef struct wk_click_event {
  double t_s;       /* seconds from the session start, non-decreasing */
  float x_px, y_px; /* screen pixels */
  uint8_t kind;     /* wk_click_kind */
  uint8_t button;   /* wk_click_button */
} wk_click_event;

typedef enum wk_click_bad {
  WK_CLICK_BAD_SENTINEL = 0,   /* x = y = 65535 */
  WK_CLICK_BAD_SCROLL_NO_POS,  /* a scroll at 0,0 with no earlier position */
  WK_CLICK_BAD_NUMBER,         /* a field that is not a number, or too few fields */
  WK_CLICK_BAD_EVENT,          /* an unknown button/state/event name */
  WK_CLICK_BAD_TIME_BACKWARDS, /* earlier than the previous event */
  WK_CLICK_BAD_ABSURD,         /* time or coordinates out of range, not finite */
  WK_CLICK_BAD_LONG_LINE,      /* over max_line_bytes */
  WK_CLICK_BAD_COUNT
} wk_click_bad;

typedef enum wk_click_format {
  WK_CLICK_FORMAT_AUTO = 0, WK_CLICK_FORMAT_BALABIT, WK_CLICK_FORMAT_CSV, WK_CLICK_FORMAT_JSONL
} wk_click_format;

typedef struct wk_click_stats {
  int64_t rows;                     /* data rows seen (header and blank lines excluded) */
  int64_t kept;                     /* events kept */
  int64_t bad[WK_CLICK_BAD_COUNT];  /* rows dropped, by kind */
  int64_t scroll_repositioned;      /* scrolls placed at the previous position */
  int64_t clock_resets;             /* backward steps taken as a reset */
} wk_click_stats;

typedef struct wk_click_session {
  wk_click_event *events; /* n_events, owned */
  int64_t n_events, capacity;
  wk_click_format format; /* as detected */
  wk_click_stats stats;
} wk_click_session;

typedef struct wk_click_parse_opts {
  wk_click_format format; /* AUTO: detect */
  size_t max_line_bytes;  /* 0: WK_CLICK_DEFAULT_MAX_LINE */
  int64_t max_rows;       /* 0: WK_CLICK_DEFAULT_MAX_ROWS */
} wk_click_parse_opts;

/* "sentinel", "scroll_no_position", ... (JSON-friendly keys). */
const char *wk_click_bad_name(wk_click_bad kind);
const char *wk_click_format_name(wk_click_format f);
/* Adds b's counts to a. */
void wk_click_stats_add(wk_click_stats *a, const wk_click_stats *b);
int64_t wk_click_stats_dropped(const wk_click_stats *s);

/* Parses bytes (the whole file) into *out, reusing its buffer. `name` is used
 * in messages. An unrecognised format, a file over max_rows, or no header is
 * WK_ERR_FORMAT/WK_ERR_LIMIT with a message naming the file; bad rows are not
 * errors. opts may be NULL. An empty file is WK_ERR_FORMAT ("empty"); a
 * header-only file parses to zero events. */
wk_status wk_click_parse(const char *bytes, size_t n_bytes, const char *name,
                         const wk_click_parse_opts *opts, wk_click_session *out);
/* Reads and parses a file. */
wk_status wk_click_load(const char *path, const wk_click_parse_opts *opts,
                        wk_click_session *out);
void wk_click_session_free(wk_click_session *s);

/* ---------------------------------------------------------------- segmentation */

typedef struct wk_click_window_cfg {
  int events;       /* > 0: windows of this many events (time_s must be 0) */
  double time_s;    /* > 0: windows of this many seconds (1 ms to 1e6 s; the
                       step, time_s * stride, at least 1 ms too) */
  double stride;    /* step between window starts, as a fraction of the window
                       length, in (0, 1]; 1 = no overlap. A window holding
                       the same events as the one before is not repeated */
  int min_events;   /* shorter windows are dropped (>= 2; for windows of N
                       events, min(min_events, N)) */
} wk_click_window_cfg;

typedef struct wk_click_window {
  int64_t begin, end; /* event indices [begin, end) */
} wk_click_window;

/* 128 events, stride 1, at least 16 events. */
wk_click_window_cfg wk_click_window_cfg_default(void);
wk_status wk_click_window_cfg_check(const wk_click_window_cfg *c);
/* Windows of a session (malloc'ed array in *out, count in *n). By events: a
 * window starts every max(1, round(events * stride)) events while a full
 * window fits, and a session shorter than one window gives one window of all
 * its events; by time: windows [t0 + k*step, t0 + k*step + time_s). Windows
 * under min_events are left out. */
wk_status wk_click_segment(const wk_click_session *s, const wk_click_window_cfg *c,
                           wk_click_window **out, int64_t *n);

/* ---------------------------------------------------------------- rendering */

typedef enum wk_click_scale {
  WK_CLICK_SCALE_SCREEN = 0, /* x in [0, screen_w) -> [0, size), y likewise */
  WK_CLICK_SCALE_BBOX,       /* the window's bounding box, aspect kept, centred */
} wk_click_scale;

typedef struct wk_click_render_cfg {
  int size_px;               /* output is size x size RGB */
  wk_click_scale scale;
  int screen_w_px, screen_h_px;
  double pause_s;            /* a gap at least this long gets a pause mark */
} wk_click_render_cfg;

/* 48 px, screen scaling of 1920x1080, pauses from 0.5 s. */
wk_click_render_cfg wk_click_render_cfg_default(void);
wk_status wk_click_render_cfg_check(const wk_click_render_cfg *c);
/* Renders events [w.begin, w.end) of s into img (allocated or reused). The
 * encoding is described in render.c and docs/clicks.md. */
wk_status wk_click_render(const wk_click_session *s, wk_click_window w,
                          const wk_click_render_cfg *c, wk_image *img);
/* The same into caller memory: rgb (size, size, 3). */
void wk_click_render_into(const wk_click_session *s, wk_click_window w,
                          const wk_click_render_cfg *c, uint8_t *rgb);

#endif
