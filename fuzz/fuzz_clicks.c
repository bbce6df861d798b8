/* fuzz_clicks.c - a clickstream log (Balabit CSV, generic CSV or JSON lines,
 * detected) through the parser and the row cleaning, then segmented into
 * windows by events and by time, each rendered at a small size (both scalings):
 * what `whisker clicks render` does to a user's file. */
#include "fuzz_util.h"

#include <stdlib.h>

#include "clicks/clicks.h"

static void wk_fuzz_windows(const wk_click_session *s, const wk_click_window_cfg *wc,
                            wk_click_scale scale) {
  wk_click_window *w;
  int64_t n;
  if (wk_click_segment(s, wc, &w, &n) != WK_OK) return;
  wk_click_render_cfg rc = wk_click_render_cfg_default();
  rc.size_px = 16;
  rc.scale = scale;
  uint8_t rgb[16 * 16 * 3];
  for (int64_t i = 0; i < n && i < 8; i++) wk_click_render_into(s, w[i], &rc, rgb);
  free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)wk_fuzz_ctx();
  wk_click_session s = {0};
  const wk_click_parse_opts opts = {.max_rows = 100000};
  if (wk_click_parse((const char *)data, size, "fuzz", &opts, &s) == WK_OK) {
    wk_click_window_cfg by_events = wk_click_window_cfg_default();
    by_events.events = 32;
    wk_fuzz_windows(&s, &by_events, WK_CLICK_SCALE_SCREEN);
    wk_click_window_cfg by_time = wk_click_window_cfg_default();
    by_time.events = 0;
    by_time.time_s = 2.0;
    by_time.stride = 0.5;
    wk_fuzz_windows(&s, &by_time, WK_CLICK_SCALE_BBOX);
  }
  wk_click_session_free(&s);
  return 0;
}
