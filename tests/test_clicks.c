/* test_clicks.c - clickstream parsing (every bad-row kind, empty and
 * header-only files, generic CSV and JSON lines, format detection, limits),
 * segmentation, the renderer against its golden PNG, AUC/EER, and `whisker
 * clicks render` writing a folder per label. Fixtures: tests/fixtures/clicks,
 * written by scripts/gen_clicks_fixtures.py. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "clicks/balabit.h"
#include "clicks/clicks.h"
#include "clicks/clicks_impl.h"
#include "clicks/learn.h"
#include "train/metrics.h"
#include "test_fs.h"
#include "test_util.h"

static char *fixture(const char *name) {
  char *dir = wkt_join(wkt_source_dir(), "tests/fixtures/clicks", NULL);
  char *p = wkt_join(dir, name, NULL);
  free(dir);
  return p;
}

static wk_status load(const char *name, const wk_click_parse_opts *o, wk_click_session *s) {
  char *p = fixture(name);
  wk_status st = wk_click_load(p, o, s);
  free(p);
  return st;
}

/* A parse's format and counts: want = {rows, kept, then the dropped rows of
 * each wk_click_bad kind in order, scroll_repositioned, clock_resets}. */
enum { N_COUNTS = WK_CLICK_BAD_COUNT + 4 };
static void expect_counts(const wk_click_session *s, wk_click_format f,
                          const int64_t want[N_COUNTS]) {
  const wk_click_stats *t = &s->stats;
  int64_t got[N_COUNTS] = {t->rows, t->kept};
  for (int i = 0; i < WK_CLICK_BAD_COUNT; i++) got[2 + i] = t->bad[i];
  got[N_COUNTS - 2] = t->scroll_repositioned;
  got[N_COUNTS - 1] = t->clock_resets;
  ck_assert_int_eq(s->format, f);
  for (int i = 0; i < N_COUNTS; i++) ck_assert_msg(got[i] == want[i], "count %d: %lld, want %lld",
                                                   i, (long long)got[i], (long long)want[i]);
  ck_assert_int_eq(s->n_events, t->kept);
  ck_assert_int_eq(t->kept + wk_click_stats_dropped(t), t->rows);
}

/* ---------------------------------------------------------------- parsing */

START_TEST(test_balabit_every_bad_kind) {
  wk_click_session s = {0};
  WKT_OK(load("balabit_bad.csv", NULL, &s));
  /* rows kept sentinel scroll number event backwards absurd long_line repositioned resets */
  expect_counts(&s, WK_CLICK_FORMAT_BALABIT, (const int64_t[]){20, 7, 1, 1, 3, 2, 2, 3, 1, 1, 0});
  const double times[7] = {0.0, 0.2, 0.4, 0.7, 0.8, 0.9, 1.0};
  const int kinds[7] = {WK_CLICK_MOVE, WK_CLICK_SCROLL_UP, WK_CLICK_MOVE, WK_CLICK_PRESS,
                        WK_CLICK_DRAG, WK_CLICK_RELEASE, WK_CLICK_MOVE};
  for (int i = 0; i < 7; i++) {
    ck_assert_double_eq_tol(s.events[i].t_s, times[i], 1e-12);
    ck_assert_int_eq(s.events[i].kind, kinds[i]);
  }
  /* The scroll took the previous position. */
  ck_assert_float_eq(s.events[1].x_px, 100);
  ck_assert_float_eq(s.events[1].y_px, 200);
  ck_assert_int_eq(s.events[3].button, WK_BUTTON_LEFT);
  wk_click_session_free(&s);
}
END_TEST

START_TEST(test_balabit_clock_reset) {
  wk_click_session s = {0};
  WKT_OK(load("clock_reset.csv", NULL, &s)); /* CRLF line ends */
  expect_counts(&s, WK_CLICK_FORMAT_BALABIT, (const int64_t[]){5, 4, 0, 0, 0, 0, 1, 0, 0, 0, 1});
  ck_assert_double_eq_tol(s.events[2].t_s, 10.7, 1e-9);
  ck_assert_double_eq_tol(s.events[3].t_s, 10.9, 1e-9);
  ck_assert_float_eq(s.events[3].x_px, 50);
  wk_click_session_free(&s);
}
END_TEST

START_TEST(test_empty_header_only_and_unknown) {
  wk_click_session s = {0};
  WKT_FAILS(WK_ERR_FORMAT, load("empty.csv", NULL, &s));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "empty.csv: empty"));
  WKT_FAILS(WK_ERR_FORMAT, load("blank_lines.csv", NULL, &s));
  WKT_FAILS(WK_ERR_FORMAT, load("not_clicks.txt", NULL, &s));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "not_clicks.txt: not a clickstream file"));
  WKT_OK(load("header_only.csv", NULL, &s));
  ck_assert_int_eq(s.format, WK_CLICK_FORMAT_BALABIT);
  ck_assert_int_eq(s.n_events, 0);
  ck_assert_int_eq(s.stats.rows, 0);
  WKT_FAILS(WK_ERR_IO, load("no_such_file.csv", NULL, &s));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "no_such_file.csv"));
  wk_click_session_free(&s);
}
END_TEST

START_TEST(test_generic_csv) {
  wk_click_session s = {0};
  WKT_OK(load("generic.csv", NULL, &s));
  expect_counts(&s, WK_CLICK_FORMAT_CSV, (const int64_t[]){8, 6, 0, 0, 1, 1, 0, 0, 0, 1, 0});
  const int kinds[6] = {WK_CLICK_MOVE, WK_CLICK_PRESS, WK_CLICK_DRAG, WK_CLICK_RELEASE,
                        WK_CLICK_SCROLL_DOWN, WK_CLICK_MOVE};
  for (int i = 0; i < 6; i++) ck_assert_int_eq(s.events[i].kind, kinds[i]);
  ck_assert_float_eq(s.events[4].x_px, 20);
  ck_assert_float_eq(s.events[4].y_px, 30);
  WKT_OK(load("generic_reordered.csv", NULL, &s));
  ck_assert_int_eq(s.format, WK_CLICK_FORMAT_CSV);
  ck_assert_int_eq(s.n_events, 3);
  ck_assert_float_eq(s.events[0].x_px, 1);
  ck_assert_float_eq(s.events[0].y_px, 2);
  ck_assert_double_eq_tol(s.events[0].t_s, 0.5, 1e-12);
  wk_click_session_free(&s);
}
END_TEST

START_TEST(test_generic_jsonl) {
  wk_click_session s = {0};
  WKT_OK(load("generic.jsonl", NULL, &s));
  expect_counts(&s, WK_CLICK_FORMAT_JSONL, (const int64_t[]){9, 5, 1, 0, 1, 1, 1, 0, 0, 1, 0});
  ck_assert_int_eq(s.events[1].kind, WK_CLICK_PRESS);
  ck_assert_int_eq(s.events[1].button, WK_BUTTON_LEFT);
  ck_assert_int_eq(s.events[3].kind, WK_CLICK_SCROLL_UP);
  ck_assert_float_eq(s.events[3].x_px, 12);
  ck_assert_float_eq(s.events[4].x_px, 15);
  wk_click_session_free(&s);
}
END_TEST

START_TEST(test_detection_and_forced_format) {
  static const struct { const char *text; wk_click_format f; } cases[] = {
      {"record timestamp,client timestamp,button,state,x,y\n0,0,NoButton,Move,1,1\n",
       WK_CLICK_FORMAT_BALABIT},
      {"\xEF\xBB\xBFRecord Timestamp,Client Timestamp,Button,State,X,Y\r\n",
       WK_CLICK_FORMAT_BALABIT},
      {"\n\nTime,X,Y\n0,1,1\n", WK_CLICK_FORMAT_CSV},
      {"timestamp,event,y,x,button\n0,move,1,1,none\n", WK_CLICK_FORMAT_CSV},
      {"{\"time\":0,\"x\":1,\"y\":1}\n", WK_CLICK_FORMAT_JSONL},
  };
  wk_click_session s = {0};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    WKT_OK(wk_click_parse(cases[i].text, strlen(cases[i].text), "case", NULL, &s));
    ck_assert_msg(s.format == cases[i].f, "case %zu: %s", i, wk_click_format_name(s.format));
  }
  const char *csv = "time,x,y\n0,1,1\n";
  wk_click_parse_opts o = {.format = WK_CLICK_FORMAT_BALABIT};
  WKT_FAILS(WK_ERR_FORMAT, wk_click_parse(csv, strlen(csv), "g.csv", &o, &s));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "g.csv: looks like csv, not balabit"));
  const char *no_xy = "time,a,b\n0,1,1\n";
  WKT_FAILS(WK_ERR_FORMAT, wk_click_parse(no_xy, strlen(no_xy), "n.csv", NULL, &s));
  wk_click_session_free(&s);
}
END_TEST

START_TEST(test_limits) {
  wk_click_session s = {0};
  wk_click_parse_opts o = {.max_rows = 5};
  WKT_FAILS(WK_ERR_LIMIT, load("balabit_bad.csv", &o, &s));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "more than 5 rows"));
  ck_assert_int_eq(s.n_events, 0);
  o = (wk_click_parse_opts){.max_line_bytes = 30};
  WKT_FAILS(WK_ERR_FORMAT, load("balabit_bad.csv", &o, &s)); /* the header is longer */
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "longer than 30 bytes"));
  o = (wk_click_parse_opts){.max_line_bytes = 60};
  WKT_OK(load("balabit_bad.csv", &o, &s));
  ck_assert_int_eq(s.stats.bad[WK_CLICK_BAD_LONG_LINE], 1);
  /* No terminating newline, a NUL byte inside a row: counted, not a crash. */
  const char text[] = "time,x,y\n0,1,1\n0.1,2\0,2\n0.2,3,3";
  WKT_OK(wk_click_parse(text, sizeof text - 1, "nul.csv", NULL, &s));
  ck_assert_int_eq(s.n_events, 2);
  ck_assert_int_eq(s.stats.bad[WK_CLICK_BAD_NUMBER], 1);
  wk_click_session_free(&s);
}
END_TEST

START_TEST(test_number_parser) {
  static const struct { const char *s; double v; bool ok; } c[] = {
      {"0", 0, true}, {"12", 12, true}, {"-3.25", -3.25, true}, {" 7.5 ", 7.5, true},
      {"0.0160000000615", 0.0160000000615, true}, {"1e3", 1000, true}, {"+2", 2, true},
      {"1234567890123456789012", 1234567890123456789012.0, true}, {".5", 0.5, true},
      {"", 0, false}, {"-", 0, false}, {"1.2.3", 0, false}, {"abc", 0, false},
      {"nan", 0, false}, {"1x", 0, false}, {".", 0, false}, {"inf", 0, false},
      /* hexadecimal, which strtod reads: not a number in a log */
      {"0x10", 0, false}, {"0X1p4", 0, false}, {"-0x1.8p1", 0, false}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    double v = -1;
    bool ok = wk_click_parse_number(c[i].s, strlen(c[i].s), &v);
    ck_assert_msg(ok == c[i].ok, "'%s': ok %d", c[i].s, ok);
    if (ok) ck_assert_msg(fabs(v - c[i].v) <= 1e-15 * fabs(c[i].v), "'%s' -> %.17g", c[i].s, v);
  }
}
END_TEST

/* Every fixture with bytes changed at random and cut at random lengths: each
 * parse returns (an error or some events), never crashes; kept events obey
 * the cleaning rules. */
START_TEST(test_parse_mutations) {
  const char *names[] = {"balabit_bad.csv", "generic.csv", "generic.jsonl", "clock_reset.csv"};
  wk_click_session s = {0};
  for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
    char *path = fixture(names[f]);
    size_t n = 0;
    uint8_t *orig = wkt_read_file(path, &n);
    free(path);
    char *buf = malloc(n + 1);
    ck_assert_ptr_nonnull(buf);
    for (uint32_t trial = 0; trial < 300; trial++) {
      memcpy(buf, orig, n);
      const uint32_t n_flips = 1 + wk_rng_at(7, f, 3 * trial) % 8;
      for (uint32_t k = 0; k < n_flips; k++) {
        const uint32_t r = wk_rng_at(7, f, 1000 + 16 * trial + k);
        buf[r % n] = (char)(r >> 24);
      }
      const size_t len = trial % 3 ? n : wk_rng_at(7, f, 3 * trial + 1) % (n + 1);
      wk_status st = wk_click_parse(buf, len, names[f], NULL, &s);
      if (st != WK_OK) continue;
      int64_t dropped = wk_click_stats_dropped(&s.stats);
      ck_assert_int_eq(s.stats.kept + dropped, s.stats.rows);
      for (int64_t i = 0; i < s.n_events; i++) {
        ck_assert(s.events[i].t_s >= 0 && s.events[i].t_s <= WK_CLICK_MAX_TIME_S);
        ck_assert(fabsf(s.events[i].x_px) <= WK_CLICK_MAX_COORD);
        if (i) ck_assert(s.events[i].t_s >= s.events[i - 1].t_s);
      }
    }
    free(buf);
    free(orig);
  }
  wk_click_session_free(&s);
}
END_TEST

/* ---------------------------------------------------------------- segmentation */

static wk_click_session session_at(const double *t, int n) {
  wk_click_session s = {.events = calloc((size_t)n, sizeof(wk_click_event)), .n_events = n};
  ck_assert_ptr_nonnull(s.events);
  for (int i = 0; i < n; i++)
    s.events[i] = (wk_click_event){.t_s = t[i], .x_px = (float)(10 * i), .y_px = 5};
  s.capacity = n;
  return s;
}

static void expect_windows(const wk_click_session *s, wk_click_window_cfg c, const int *want,
                           int n_want) {
  wk_click_window *w = NULL;
  int64_t n = 0;
  WKT_OK(wk_click_segment(s, &c, &w, &n));
  ck_assert_int_eq(n, n_want);
  for (int i = 0; i < n_want; i++) {
    ck_assert_int_eq(w[i].begin, want[2 * i]);
    ck_assert_int_eq(w[i].end, want[2 * i + 1]);
  }
  free(w);
}

/* The rendered set grows only within half the memory the host has
 * available: on a host (a tree of /proc files, core/hostres.h) with 1 MB
 * left, a session's windows are refused with the sizes before the memory is
 * taken; on the live system the same windows are drawn. */
START_TEST(test_images_within_memory) {
  const double t[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  wk_click_session s = session_at(t, 10);
  const wk_click_window_cfg wc = {.events = 4, .stride = 1, .min_events = 2};
  const wk_click_render_cfg rc = wk_click_render_cfg_default();
  char dir[] = "/tmp/wk_test_clicks_mem_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  wkt_write_text(dir, "proc/meminfo", "MemAvailable:    1024 kB\n");
  wk_clicks_images set = {.host_root = dir};
  WKT_FAILS(WK_ERR_NOMEM, wk_clicks_images_add(&set, &s, &wc, &rc, 0));
  ck_assert_msg(strstr(wk_last_error(), "2 rendered windows of 48 px need") &&
                    strstr(wk_last_error(), "(1 MB available); train on fewer sessions"),
                "%s", wk_last_error());
  ck_assert_int_eq(set.n, 0);
  ck_assert_ptr_null(set.rgb);
  set.host_root = NULL;
  WKT_OK(wk_clicks_images_add(&set, &s, &wc, &rc, 3));
  ck_assert_int_eq(set.n, 2);
  ck_assert_int_eq(set.labels[1], 3);
  wk_clicks_images_free(&set);
  wk_click_session_free(&s);
  wkt_rmtree(dir);
}
END_TEST

START_TEST(test_segment) {
  const double t[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  wk_click_session s = session_at(t, 10);
  wk_click_window_cfg c = {.events = 4, .stride = 0.5, .min_events = 2};
  expect_windows(&s, c, (const int[]){0, 4, 2, 6, 4, 8, 6, 10}, 4);
  c.stride = 1;
  expect_windows(&s, c, (const int[]){0, 4, 4, 8}, 2);
  c.events = 20; /* longer than the session: one window of all */
  expect_windows(&s, c, (const int[]){0, 10}, 1);
  c.min_events = 11;
  expect_windows(&s, c, NULL, 0);
  c = (wk_click_window_cfg){.events = 4, .stride = 1, .min_events = 16}; /* min: 4 */
  expect_windows(&s, c, (const int[]){0, 4, 4, 8}, 2);
  c = (wk_click_window_cfg){.time_s = 3, .stride = 1, .min_events = 2};
  expect_windows(&s, c, (const int[]){0, 3, 3, 6, 6, 9}, 3); /* [9, 12) has 1 event */
  c.stride = 0.5;
  expect_windows(&s, c, (const int[]){0, 3, 2, 5, 3, 6, 5, 8, 6, 9, 8, 10}, 6);
  wk_click_session_free(&s);
  const double gap[5] = {0, 1, 2, 100, 101};
  s = session_at(gap, 5);
  c = (wk_click_window_cfg){.time_s = 2, .stride = 1, .min_events = 2};
  expect_windows(&s, c, (const int[]){0, 2, 3, 5}, 2);
  /* a step far below the events' spacing: each set of events once, not the
   * ~10^5 windows between changes (a window repeating the last is not kept) */
  c = (wk_click_window_cfg){.time_s = 1.5, .stride = 0.001, .min_events = 2};
  expect_windows(&s, c, (const int[]){0, 2, 1, 3, 3, 5}, 3);
  /* Bad configurations. */
  wk_click_window *w = NULL;
  int64_t n = 0;
  c = (wk_click_window_cfg){.events = 4, .time_s = 2, .stride = 1, .min_events = 2};
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_click_segment(&s, &c, &w, &n));
  c = (wk_click_window_cfg){.events = 4, .stride = 0, .min_events = 2};
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_click_segment(&s, &c, &w, &n));
  c = (wk_click_window_cfg){.events = 4, .stride = 1, .min_events = 1};
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_click_segment(&s, &c, &w, &n));
  c = (wk_click_window_cfg){.events = 1, .stride = 1, .min_events = 2};
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_click_segment(&s, &c, &w, &n));
  /* a time window, or its step, under 1 ms: once a hang (the window index
   * overflowed, or the start stood still) */
  c = (wk_click_window_cfg){.time_s = 1e-20, .stride = 1, .min_events = 2};
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_click_segment(&s, &c, &w, &n));
  c = (wk_click_window_cfg){.time_s = 1, .stride = 1e-9, .min_events = 2};
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_click_segment(&s, &c, &w, &n));
  wk_click_session_free(&s);
  wk_click_session empty = {0};
  c = (wk_click_window_cfg){.time_s = 2, .stride = 1, .min_events = 2};
  WKT_OK(wk_click_segment(&empty, &c, &w, &n));
  ck_assert_int_eq(n, 0);
  free(w);
}
END_TEST

/* ---------------------------------------------------------------- rendering */

/* The golden: golden_path.csv as one window, 48 px, bbox scaling. Tolerance:
 * every channel of every pixel within 2 levels (float rounding between
 * compilers or -march=native FMA contraction); any real change of the
 * encoding moves many pixels by far more. */
START_TEST(test_render_golden) {
  wk_click_session s = {0};
  WKT_OK(load("golden_path.csv", NULL, &s));
  ck_assert_int_eq(s.n_events, 39);
  wk_click_render_cfg c = wk_click_render_cfg_default();
  c.size_px = 48;
  c.scale = WK_CLICK_SCALE_BBOX;
  wk_image img = {0}, golden = {0};
  WKT_OK(wk_click_render(&s, (wk_click_window){0, s.n_events}, &c, &img));
  char *gp = fixture("golden_path.png");
  WKT_OK(wk_image_load(gp, NULL, &golden));
  free(gp);
  const int diff = wkt_image_max_diff(&img, &golden);
  ck_assert_msg(diff >= 0 && diff <= 2, "rendering differs from golden_path.png by %d levels "
                "(regenerate with scripts/gen_clicks_fixtures.py only if meant)", diff);
  /* The comparison can fail: another scaling or size gives another picture. */
  c.scale = WK_CLICK_SCALE_SCREEN;
  WKT_OK(wk_click_render(&s, (wk_click_window){0, s.n_events}, &c, &img));
  ck_assert_int_gt(wkt_image_max_diff(&img, &golden), 50);
  /* Distinct marks: a white left-click ring, magenta right-click ring, cyan
   * scroll-up, yellow scroll-down, purple pause and blue drag pixels. */
  c.scale = WK_CLICK_SCALE_BBOX;
  c.size_px = 128;
  WKT_OK(wk_click_render(&s, (wk_click_window){0, s.n_events}, &c, &img));
  int seen[6] = {0};
  for (int i = 0; i < 128 * 128; i++) {
    const uint8_t *p = img.data + 3 * i;
    seen[0] += p[0] == 255 && p[1] == 255 && p[2] == 255;
    seen[1] += p[0] == 255 && p[1] == 0 && p[2] == 255;
    seen[2] += p[0] == 0 && p[1] == 255 && p[2] == 255;
    seen[3] += p[0] == 255 && p[1] == 255 && p[2] == 0;
    seen[4] += p[0] == 160 && p[1] == 0 && p[2] == 255;
    seen[5] += p[2] == 255 && p[0] > 60 && p[0] < 255 && p[1] > 60 && p[1] < 255;
  }
  for (int k = 0; k < 6; k++) ck_assert_msg(seen[k] > 0, "mark %d not drawn", k);
  /* An empty window is black. */
  WKT_OK(wk_click_render(&s, (wk_click_window){3, 3}, &c, &img));
  for (int i = 0; i < 128 * 128 * 3; i++) ck_assert_int_eq(img.data[i], 0);
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_click_render(&s, (wk_click_window){0, 99}, &c, &img));
  c.size_px = 4;
  WKT_FAILS(WK_ERR_INVALID_ARG, wk_click_render(&s, (wk_click_window){0, 2}, &c, &img));
  wk_image_free(&img);
  wk_image_free(&golden);
  wk_click_session_free(&s);
}
END_TEST

/* Points far off the canvas, all at one spot, or one event: no crash, no
 * write outside the image (ASan builds check the latter). */
START_TEST(test_render_degenerate) {
  wk_click_event ev[4] = {{0, -16000, -16000, WK_CLICK_MOVE, 0},
                          {0.01, 16000, 16000, WK_CLICK_PRESS, WK_BUTTON_LEFT},
                          {5, 16000, 16000, WK_CLICK_SCROLL_UP, 0},
                          {5, 16000, 16000, WK_CLICK_MOVE, 0}};
  wk_click_session s = {.events = ev, .n_events = 4, .capacity = 4};
  wk_click_render_cfg c = wk_click_render_cfg_default();
  wk_image img = {0};
  for (int scale = 0; scale < 2; scale++) {
    c.scale = (wk_click_scale)scale;
    WKT_OK(wk_click_render(&s, (wk_click_window){0, 4}, &c, &img));
    WKT_OK(wk_click_render(&s, (wk_click_window){2, 4}, &c, &img));
    WKT_OK(wk_click_render(&s, (wk_click_window){3, 4}, &c, &img));
  }
  wk_image_free(&img);
}
END_TEST

/* A window whose events are 1e-50 s apart (found by fuzz_clicks: the
 * float reciprocal of the span was infinite, and 0 * inf a NaN colour): the
 * segment gets the middle of the time ramp, green 64 + 191 * 0.5, like any
 * other window. */
START_TEST(test_render_tiny_span) {
  wk_click_event ev[2] = {{0, 100, 100, WK_CLICK_MOVE, 0}, {1e-50, 1800, 1000, WK_CLICK_MOVE, 0}};
  wk_click_session s = {.events = ev, .n_events = 2, .capacity = 2};
  wk_click_render_cfg c = wk_click_render_cfg_default();
  wk_image img = {0};
  WKT_OK(wk_click_render(&s, (wk_click_window){0, 2}, &c, &img));
  int solid = 0;
  for (int64_t i = 0; i < (int64_t)img.width * img.height; i++) {
    const uint8_t *p = img.data + 3 * i;
    if (p[0] != 255) continue; /* full speed: the segment's solid core */
    solid++;
    ck_assert_msg(p[1] == 160 && p[2] == 0, "pixel %lld: %d %d %d", (long long)i, p[0], p[1], p[2]);
  }
  ck_assert_int_gt(solid, 0);
  wk_image_free(&img);
}
END_TEST

START_TEST(test_auc_eer) {
  const double sc[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
  const int32_t perfect[6] = {0, 0, 0, 1, 1, 1}, inverse[6] = {1, 1, 1, 0, 0, 0};
  const int32_t mixed[6] = {0, 0, 1, 0, 1, 1};
  double auc, eer;
  wk_roc_auc_eer(sc, perfect, 6, &auc, &eer);
  ck_assert_double_eq_tol(auc, 1.0, 1e-12);
  ck_assert_double_eq_tol(eer, 0.0, 1e-12);
  wk_roc_auc_eer(sc, inverse, 6, &auc, &eer);
  ck_assert_double_eq_tol(auc, 0.0, 1e-12);
  ck_assert_double_eq_tol(eer, 1.0, 1e-12);
  wk_roc_auc_eer(sc, mixed, 6, &auc, &eer);
  ck_assert_double_eq_tol(auc, 8.0 / 9.0, 1e-12);
  ck_assert_double_eq_tol(eer, 1.0 / 3.0, 1e-12);
  const double ties[4] = {0.5, 0.5, 0.5, 0.5};
  wk_roc_auc_eer(ties, mixed, 4, &auc, &eer);
  ck_assert_double_eq_tol(auc, 0.5, 1e-12);
  wk_roc_auc_eer(sc, perfect, 3, &auc, &eer); /* one class only */
  ck_assert(isnan(auc));
  /* a NaN score (a model computing NaN): no AUC, and no hang (its tie group
   * never advanced: NaN == NaN is false) */
  const double with_nan[6] = {0.1, NAN, 0.3, NAN, 0.5, 0.6};
  wk_roc_auc_eer(with_nan, mixed, 6, &auc, &eer);
  ck_assert(isnan(auc) && isnan(eer));
  /* wk_metrics_compute refuses non-finite probabilities, naming the sample */
  const float probs[4] = {0.2f, 0.8f, NAN, NAN};
  const int32_t labels[2] = {1, 0};
  wk_metrics m;
  ck_assert_int_eq(wk_metrics_compute(probs, labels, 2, 2, 1, &m), WK_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "sample 1"));
}
END_TEST

/* ---------------------------------------------------------------- the CLI */

static int run_cli(const char *args, const char *out_path) {
  const char *bin = getenv("WHISKER_BIN");
  ck_assert_msg(bin && *bin, "WHISKER_BIN is not set (run through ctest)");
  char cmd[16384];
  int len = snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>/dev/null </dev/null", bin, args,
                     out_path);
  ck_assert(len > 0 && len < (int)sizeof cmd);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

START_TEST(test_cli_render_tree) {
  char *dir = wkt_tempdir(), *users = fixture("users"), *bad = fixture("not_clicks.txt");
  char *out = wkt_join(dir, "out", NULL), *log = wkt_join(dir, "stdout.json", NULL);
  char args[4096];
  /* a file that is no click log and one that is not there: both reported and
   * counted, the others rendered, and the exit status 1 so a script sees the loss */
  char *missing = wkt_join(dir, "missing.csv", NULL);
  snprintf(args, sizeof args,
           "clicks render '%s' '%s' '%s' --out '%s' --window 10 --size 32 --json", users, bad,
           missing, out);
  ck_assert_int_eq(run_cli(args, log), 1);
  size_t n = 0;
  char *js = (char *)wkt_read_file(log, &n);
  ck_assert_msg(strstr(js, "\"files\": 5, \"files_failed\": 2") != NULL, "%s", js);
  ck_assert_msg(strstr(js, "\"images\": 12") != NULL, "%s", js);
  free(js);
  free(missing);
  /* the good ones alone: 0 */
  snprintf(args, sizeof args, "clicks render '%s' --out '%s' --window 10 --size 32 --json", users,
           out);
  ck_assert_int_eq(run_cli(args, log), 0);
  /* alice: 2 sessions x 4 windows, bob: 1 x 4, each a 32 x 32 PNG. */
  const char *want[] = {"alice/session_0.csv_00000.png", "alice/session_0.csv_00003.png",
                        "alice/session_1.csv_00003.png", "bob/session_0.csv_00003.png"};
  for (int i = 0; i < 4; i++) {
    char *p = wkt_join(out, want[i], NULL);
    ck_assert_msg(is_file(p), "%s missing", p);
    wk_image img = {0};
    WKT_OK(wk_image_load(p, NULL, &img));
    ck_assert_int_eq(img.width, 32);
    wk_image_free(&img);
    free(p);
  }
  char *p = wkt_join(out, "bob/session_0.csv_00004.png", NULL);
  ck_assert(!is_file(p));
  free(p);
  /* A dataset whisker train can open: two classes, twelve images. */
  wk_dataset *ds = NULL;
  wk_dataset_opts o = wk_dataset_opts_default();
  o.n_threads = 1;
  WKT_OK(wk_dataset_open_folder(out, &o, &ds));
  ck_assert_int_eq(wk_dataset_n_classes(ds), 2);
  ck_assert_int_eq(wk_dataset_size(ds), 12);
  wk_dataset_free(ds);
  /* Usage errors exit 2; input that cannot be used at all exits 1. */
  snprintf(args, sizeof args, "clicks render '%s' --out '%s' --window 0", users, out);
  ck_assert_int_eq(run_cli(args, log), 2);
  /* an option of another subcommand is refused, not silently ignored, and
   * so is a fraction of a row */
  snprintf(args, sizeof args, "clicks render '%s' --out '%s' --epochs 3", users, out);
  ck_assert_int_eq(run_cli(args, log), 2);
  snprintf(args, sizeof args, "clicks score '%s' --model m --out '%s'", users, out);
  ck_assert_int_eq(run_cli(args, log), 2);
  snprintf(args, sizeof args, "clicks eval '%s' --labels x --user alice", users);
  ck_assert_int_eq(run_cli(args, log), 2);
  snprintf(args, sizeof args, "clicks render '%s' --out '%s' --max-rows 2.5", users, out);
  ck_assert_int_eq(run_cli(args, log), 2);
  /* a least window size above the window's own events would drop nothing */
  snprintf(args, sizeof args, "clicks render '%s' --out '%s' --window 10 --min-events 20", users,
           out);
  ck_assert_int_eq(run_cli(args, log), 2);
  snprintf(args, sizeof args, "clicks render '%s' --out '%s'", bad, out);
  ck_assert_int_eq(run_cli(args, log), 1);
  ck_assert_int_eq(run_cli("clicks frobnicate", log), 2);
  ck_assert_int_eq(run_cli("clicks frobnicate --help", log), 2);
  /* Two inputs whose images would share names (label alice, session_0.csv):
   * refused before anything is written, not the first overwritten. */
  char *elsewhere = wkt_join(dir, "elsewhere", NULL), *out2 = wkt_join(dir, "out2", NULL);
  char *twin_dir = wkt_join(elsewhere, "alice", NULL);
  char *twin = wkt_join(twin_dir, "session_0.csv", NULL);
  char *src = wkt_join(users, "alice", "session_0.csv");
  wkt_mkdir(elsewhere);
  wkt_mkdir(twin_dir);
  size_t len = 0;
  uint8_t *bytes = wkt_read_file(src, &len);
  wkt_write_file(twin, bytes, len);
  free(bytes);
  snprintf(args, sizeof args, "clicks render '%s' '%s' --out '%s' --window 10", users, twin, out2);
  ck_assert_int_eq(run_cli(args, log), 1);
  struct stat sb;
  ck_assert_msg(stat(out2, &sb) != 0, "%s was made", out2);
  /* A class folder that cannot be made (a file has its name): the run stops,
   * exit 1, rather than skipping the class as if its inputs were bad. */
  wkt_mkdir(out2);
  char *blocker = wkt_join(out2, "alice", NULL);
  wkt_write_file(blocker, "x", 1);
  snprintf(args, sizeof args, "clicks render '%s' --out '%s' --window 10", users, out2);
  ck_assert_int_eq(run_cli(args, log), 1);
  /* Sessions that all give no window: nothing written is a failure. */
  snprintf(args, sizeof args, "clicks render '%s' --out '%s' --window 1000000 --min-events 1000",
           users, out);
  ck_assert_int_eq(run_cli(args, log), 1);
  free(elsewhere), free(twin_dir), free(out2), free(twin), free(src), free(blocker);
  wkt_rmtree(dir);
  free(dir), free(users), free(bad), free(out), free(log);
}
END_TEST

/* The protocol end to end (an ensemble of two) on a two-user Balabit-shaped
 * fixture, then the first trained model scoring sessions. */
START_TEST(test_cli_eval_and_score) {
  char *dir = wkt_tempdir(), *mini = fixture("mini_balabit");
  char *labels = wkt_join(mini, "labels.csv", NULL), *log = wkt_join(dir, "stdout.txt", NULL);
  char args[8192];
  /* A labels file of one line, a prefix of its header and no newline: no
   * rows, exit 1 (its header check once read past the end: ASan's build) */
  char *prefix = wkt_join(dir, "prefix_labels.csv", NULL);
  wkt_write_file(prefix, "filename", 8);
  snprintf(args, sizeof args, "clicks eval '%s' --labels '%s' --epochs 1 --models 1", mini, prefix);
  ck_assert_int_eq(run_cli(args, log), 1);
  free(prefix);
  snprintf(args, sizeof args, "clicks eval '%s' --labels '%s' --out '%s' --window 32 --size 16 "
           "--epochs 3 --batch 8 --threads 1 --models 2 --json", mini, labels, dir);
  ck_assert_int_eq(run_cli(args, log), 0);
  size_t n = 0;
  char *out = (char *)wkt_read_file(log, &n);
  ck_assert_msg(strstr(out, "\"sessions\": 4, \"illegal\": 2, \"skipped\": 0") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\"train_windows\": 28") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\"auc\": ") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\"models\": 2") != NULL, "%s", out);
  free(out);
  char *second = wkt_join(dir, "model_1.safetensors", NULL);
  ck_assert(is_file(second));
  free(second);
  char *model = wkt_join(dir, "model.safetensors", NULL), *scores = wkt_join(dir, "scores.csv", NULL);
  ck_assert(is_file(model));
  char *csv = (char *)wkt_read_file(scores, &n);
  ck_assert_msg(!strncmp(csv, "filename,user,is_illegal,mean_logp,p_not,windows,logp_alice,logp_bob\n",
                         68), "%s", csv);
  free(csv);
  snprintf(args, sizeof args, "clicks score '%s/test_files/alice/session_0010' "
           "'%s/test_files/bob/session_1011' --model '%s' --json", mini, mini, model);
  ck_assert_int_eq(run_cli(args, log), 0);
  out = (char *)wkt_read_file(log, &n);
  ck_assert_msg(strstr(out, "\"claimed\": \"alice\", \"p_not\": ") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\"claimed\": \"bob\", \"p_not\": ") != NULL, "%s", out);
  free(out);
  /* A user the model does not know: the session fails, the command exits 1. */
  snprintf(args, sizeof args, "clicks score '%s/test_files/alice/session_0010' --model '%s' "
           "--user carol", mini, model);
  ck_assert_int_eq(run_cli(args, log), 1);
  wkt_rmtree(dir);
  free(dir), free(mini), free(labels), free(log), free(model), free(scores);
}
END_TEST

static Suite *clicks_suite(void) {
  Suite *s = suite_create("clicks");
  TCase *tc = tcase_create("clicks");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_balabit_every_bad_kind);
  tcase_add_test(tc, test_balabit_clock_reset);
  tcase_add_test(tc, test_empty_header_only_and_unknown);
  tcase_add_test(tc, test_generic_csv);
  tcase_add_test(tc, test_generic_jsonl);
  tcase_add_test(tc, test_detection_and_forced_format);
  tcase_add_test(tc, test_limits);
  tcase_add_test(tc, test_number_parser);
  tcase_add_test(tc, test_parse_mutations);
  tcase_add_test(tc, test_segment);
  tcase_add_test(tc, test_images_within_memory);
  tcase_add_test(tc, test_render_golden);
  tcase_add_test(tc, test_render_degenerate);
  tcase_add_test(tc, test_render_tiny_span);
  tcase_add_test(tc, test_auc_eer);
  tcase_add_test(tc, test_cli_render_tree);
  tcase_add_test(tc, test_cli_eval_and_score);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return wkt_run_suite(clicks_suite()); }
