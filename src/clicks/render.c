/* render.c - one window of events as an RGB picture.
 *
 * The encoding (k = size / 64, so marks scale with the picture; black ground):
 *   path     anti-aliased line segments between successive pointer positions
 *            (positions closer than half a pixel are merged, the speed then
 *            taken over the merged stretch). Speed v in screen px/s maps to
 *            s = log(1 + v/100) / log(101), clamped to [0, 1] (10,000 px/s = 1).
 *              red    64 + 191 s           (speed)
 *              green  64 + 191 f           (f: elapsed share of the window, 0..1)
 *              blue   0 for a move, 255 for a drag (a button held)
 *              width  k (0.75 + 1.75 s) px (faster = wider)
 *   pause    a gap of at least pause_s between two events: a purple disc
 *            (160, 0, 255) under the path at the position where the pointer
 *            waited, radius k (1 + log2(gap / pause_s)) px, at most 5k.
 *   click    a press: a ring of radius 3k, white for the left button,
 *            magenta (255, 0, 255) for the others.
 *   scroll   a vertical bar 4k long from the pointer: up and cyan (0, 255, 255)
 *            for scroll up, down and yellow (255, 255, 0) for scroll down.
 * Marks are drawn in that order (pauses, path, scrolls, clicks), each blended
 * over what is there by its coverage. Scaling: SCREEN maps the screen onto the
 * square (x by size/screen_w, y by size/screen_h; aspect not kept); BBOX maps
 * the window's bounding box with its aspect kept, centred, 4k px margin (room for marks). */
#include <math.h>
#include <string.h>

#include "clicks/clicks.h"

wk_click_render_cfg wk_click_render_cfg_default(void) {
  return (wk_click_render_cfg){.size_px = 48, .scale = WK_CLICK_SCALE_SCREEN,
                               .screen_w_px = 1920, .screen_h_px = 1080, .pause_s = 0.5};
}

wk_status wk_click_render_cfg_check(const wk_click_render_cfg *c) {
  if (c->size_px < 8 || c->size_px > 4096)
    return wk_fail(WK_ERR_INVALID_ARG, "image size %d is out of range [8, 4096]", c->size_px);
  if (c->screen_w_px < 1 || c->screen_h_px < 1 || c->screen_w_px > WK_CLICK_MAX_COORD ||
      c->screen_h_px > WK_CLICK_MAX_COORD)
    return wk_fail(WK_ERR_INVALID_ARG, "screen %dx%d is out of range [1, %d]", c->screen_w_px,
                   c->screen_h_px, WK_CLICK_MAX_COORD);
  if (!(c->pause_s > 0) || !isfinite(c->pause_s))
    return wk_fail(WK_ERR_INVALID_ARG, "pause threshold %g s must be positive", c->pause_s);
  if (c->scale != WK_CLICK_SCALE_SCREEN && c->scale != WK_CLICK_SCALE_BBOX)
    return wk_fail(WK_ERR_INVALID_ARG, "unknown scaling mode %d", (int)c->scale);
  return WK_OK;
}

typedef struct wk_canvas {
  uint8_t *rgb; /* (size, size, 3) */
  int size;
} wk_canvas;

static inline void wk_blend(uint8_t *p, const float col[3], float a) {
  for (int c = 0; c < 3; c++) {
    float v = (float)p[c] + a * (col[c] - (float)p[c]);
    p[c] = (uint8_t)(v + 0.5f);
  }
}

/* Pixel-box [x0, x1] x [y0, y1] of a shape, clipped to the canvas; false when empty. */
static inline bool wk_box(const wk_canvas *cv, float lx, float ly, float hx, float hy, int *x0,
                          int *y0, int *x1, int *y1) {
  *x0 = (int)floorf(lx);
  *y0 = (int)floorf(ly);
  *x1 = (int)floorf(hx);
  *y1 = (int)floorf(hy);
  if (*x0 < 0) *x0 = 0;
  if (*y0 < 0) *y0 = 0;
  if (*x1 > cv->size - 1) *x1 = cv->size - 1;
  if (*y1 > cv->size - 1) *y1 = cv->size - 1;
  return *x0 <= *x1 && *y0 <= *y1;
}

/* A segment (ax, ay)-(bx, by) of half-width hw with round caps. */
static void wk_draw_segment(wk_canvas *cv, float ax, float ay, float bx, float by, float hw,
                            const float col[3]) {
  const float r = hw + 0.5f;
  int x0, y0, x1, y1;
  if (!wk_box(cv, fminf(ax, bx) - r, fminf(ay, by) - r, fmaxf(ax, bx) + r, fmaxf(ay, by) + r,
              &x0, &y0, &x1, &y1))
    return;
  const float dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
  const float inv = len2 > 1e-12f ? 1.0f / len2 : 0.0f;
  /* Coverage r - d: none beyond r, full within r - 1 (no square root there). */
  const float r2 = r * r, full2 = r > 1 ? (r - 1) * (r - 1) : -1.0f;
  const uint8_t solid[3] = {(uint8_t)(col[0] + 0.5f), (uint8_t)(col[1] + 0.5f),
                            (uint8_t)(col[2] + 0.5f)};
  for (int y = y0; y <= y1; y++) {
    uint8_t *row = cv->rgb + (size_t)y * (size_t)cv->size * 3;
    const float py = (float)y + 0.5f - ay;
    for (int x = x0; x <= x1; x++) {
      const float px = (float)x + 0.5f - ax;
      float t = (px * dx + py * dy) * inv;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const float ex = px - t * dx, ey = py - t * dy, d2 = ex * ex + ey * ey;
      if (d2 >= r2) continue;
      uint8_t *p = row + 3 * x;
      if (d2 <= full2) {
        p[0] = solid[0], p[1] = solid[1], p[2] = solid[2];
        continue;
      }
      const float a = r - sqrtf(d2);
      if (a > 0) wk_blend(p, col, a > 1 ? 1 : a);
    }
  }
}

/* A disc (ring_hw <= 0) or a ring of half-thickness ring_hw, centre (cx, cy), radius rad. */
static void wk_draw_circle(wk_canvas *cv, float cx, float cy, float rad, float ring_hw,
                           const float col[3]) {
  const float out = rad + (ring_hw > 0 ? ring_hw : 0) + 0.5f;
  int x0, y0, x1, y1;
  if (!wk_box(cv, cx - out, cy - out, cx + out, cy + out, &x0, &y0, &x1, &y1)) return;
  for (int y = y0; y <= y1; y++) {
    uint8_t *row = cv->rgb + (size_t)y * (size_t)cv->size * 3;
    const float py = (float)y + 0.5f - cy;
    for (int x = x0; x <= x1; x++) {
      const float px = (float)x + 0.5f - cx, d = sqrtf(px * px + py * py);
      const float a = ring_hw > 0 ? ring_hw + 0.5f - fabsf(d - rad) : rad + 0.5f - d;
      if (a > 0) wk_blend(row + 3 * x, col, a > 1 ? 1 : a);
    }
  }
}

typedef struct wk_xform {
  float sx, sy, ox, oy;
} wk_xform;

static wk_xform wk_make_xform(const wk_click_session *s, wk_click_window w,
                              const wk_click_render_cfg *c, float k) {
  const float S = (float)c->size_px;
  if (c->scale == WK_CLICK_SCALE_SCREEN)
    return (wk_xform){S / (float)c->screen_w_px, S / (float)c->screen_h_px, 0, 0};
  float lx = INFINITY, ly = INFINITY, hx = -INFINITY, hy = -INFINITY;
  for (int64_t i = w.begin; i < w.end; i++) {
    const wk_click_event *e = &s->events[i];
    lx = fminf(lx, e->x_px), hx = fmaxf(hx, e->x_px);
    ly = fminf(ly, e->y_px), hy = fmaxf(hy, e->y_px);
  }
  const float margin = 4 * k, avail = S - 2 * margin;
  const float ext = fmaxf(fmaxf(hx - lx, hy - ly), 1.0f), sc = avail / ext;
  return (wk_xform){sc, sc, S * 0.5f - sc * 0.5f * (lx + hx), S * 0.5f - sc * 0.5f * (ly + hy)};
}

void wk_click_render_into(const wk_click_session *s, wk_click_window w,
                          const wk_click_render_cfg *c, uint8_t *rgb) {
  const int S = c->size_px;
  memset(rgb, 0, (size_t)S * (size_t)S * 3);
  if (w.end <= w.begin) return;
  wk_canvas cv = {rgb, S};
  const float k = (float)S / 64.0f;
  const wk_xform xf = wk_make_xform(s, w, c, k);
  const wk_click_event *ev = s->events;
  const double t0 = ev[w.begin].t_s, span = ev[w.end - 1].t_s - t0;
#define WK_PX(e) ((e)->x_px * xf.sx + xf.ox)
#define WK_PY(e) ((e)->y_px * xf.sy + xf.oy)
  /* pauses */
  static const float pause_col[3] = {160, 0, 255};
  for (int64_t i = w.begin + 1; i < w.end; i++) {
    const double gap = ev[i].t_s - ev[i - 1].t_s;
    if (gap < c->pause_s) continue;
    float rad = k * (1.0f + (float)log2(gap / c->pause_s));
    if (rad > 5 * k) rad = 5 * k;
    wk_draw_circle(&cv, WK_PX(&ev[i - 1]), WK_PY(&ev[i - 1]), rad, 0, pause_col);
  }
  /* path */
  const float inv_log = 1.0f / logf(101.0f);
  int64_t a = w.begin;
  for (int64_t i = w.begin + 1; i < w.end; i++) {
    const wk_click_event *ea = &ev[a], *eb = &ev[i];
    const float ax = WK_PX(ea), ay = WK_PY(ea), bx = WK_PX(eb), by = WK_PY(eb);
    const float ddx = bx - ax, ddy = by - ay;
    if (ddx * ddx + ddy * ddy < 0.25f && i + 1 < w.end) continue;
    const float dxs = eb->x_px - ea->x_px, dys = eb->y_px - ea->y_px;
    double dt = eb->t_s - ea->t_s;
    if (dt < 0.008) dt = 0.008;
    const float v = sqrtf(dxs * dxs + dys * dys) / (float)dt;
    float sp = logf(1.0f + v * 0.01f) * inv_log;
    sp = sp > 1 ? 1 : sp;
    /* in double: a span of 1e-50 s has no float reciprocal (0 * inf = NaN,
     * and NaN has no colour) */
    const float f = span > 0 ? (float)((0.5 * (ea->t_s + eb->t_s) - t0) / span) : 0.0f;
    const bool drag = eb->kind == WK_CLICK_DRAG;
    const float col[3] = {64 + 191 * sp, 64 + 191 * f, drag ? 255.0f : 0.0f};
    wk_draw_segment(&cv, ax, ay, bx, by, 0.5f * k * (0.75f + 1.75f * sp), col);
    a = i;
  }
  /* scrolls, then clicks */
  static const float up_col[3] = {0, 255, 255}, down_col[3] = {255, 255, 0};
  static const float left_col[3] = {255, 255, 255}, other_col[3] = {255, 0, 255};
  for (int pass = 0; pass < 2; pass++) {
    for (int64_t i = w.begin; i < w.end; i++) {
      const wk_click_event *e = &ev[i];
      const float x = WK_PX(e), y = WK_PY(e);
      if (pass == 0 && e->kind == WK_CLICK_SCROLL_UP)
        wk_draw_segment(&cv, x, y, x, y - 4 * k, 0.5f * k, up_col);
      else if (pass == 0 && e->kind == WK_CLICK_SCROLL_DOWN)
        wk_draw_segment(&cv, x, y, x, y + 4 * k, 0.5f * k, down_col);
      else if (pass == 1 && e->kind == WK_CLICK_PRESS)
        wk_draw_circle(&cv, x, y, 3 * k, 0.5f * k,
                       e->button == WK_BUTTON_LEFT ? left_col : other_col);
    }
  }
#undef WK_PX
#undef WK_PY
}

wk_status wk_click_render(const wk_click_session *s, wk_click_window w,
                          const wk_click_render_cfg *c, wk_image *img) {
  WK_TRY(wk_click_render_cfg_check(c));
  if (w.begin < 0 || w.end > s->n_events || w.begin > w.end)
    return wk_fail(WK_ERR_INVALID_ARG, "window [%lld, %lld) is outside the session's %lld events",
                   (long long)w.begin, (long long)w.end, (long long)s->n_events);
  WK_TRY(wk_image_alloc(img, c->size_px, c->size_px));
  if (img->stride_bytes == (size_t)c->size_px * 3) {
    wk_click_render_into(s, w, c, img->data);
    return WK_OK;
  }
  return wk_fail(WK_ERR_INVALID_ARG, "render: image rows are padded");
}
