/* parse_jsonl.c - one line of the JSON-lines clickstream format:
 * {"time": s, "x": px, "y": px, "button": "left", "event": "move"}. "t" and
 * "timestamp" are accepted for "time", "state" and "type" for "event"; a
 * scroll may leave out x and y. Anything else in the object is ignored. */
#include <cjson/cJSON.h>
#include <string.h>

#include "clicks/clicks_impl.h"

static const cJSON *wk_json_get(const cJSON *o, const char *const *keys) {
  for (; *keys; keys++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, *keys);
    if (v) return v;
  }
  return NULL;
}

/* A number, or a string holding one. */
static bool wk_json_number(const cJSON *v, double *out) {
  if (cJSON_IsNumber(v)) return *out = v->valuedouble, true;
  if (cJSON_IsString(v) && v->valuestring)
    return wk_click_parse_number(v->valuestring, strlen(v->valuestring), out);
  return false;
}

wk_status wk_click_jsonl_line(wk_click_sink *k, const char *line, size_t n) {
  static const char *const k_time[] = {"time", "t", "timestamp", NULL};
  static const char *const k_event[] = {"event", "state", "type", NULL};
  static const char *const k_button[] = {"button", NULL};
  static const char *const k_x[] = {"x", NULL};
  static const char *const k_y[] = {"y", NULL};
  cJSON *o = cJSON_ParseWithLength(line, n);
  if (!o || !cJSON_IsObject(o)) {
    cJSON_Delete(o);
    wk_click_sink_bad(k, WK_CLICK_BAD_NUMBER);
    return WK_OK;
  }
  wk_click_row r = {.kind = WK_CLICK_MOVE, .button = WK_BUTTON_NONE, .has_pos = true};
  wk_click_bad why = WK_CLICK_BAD_COUNT;
  const cJSON *ev = wk_json_get(o, k_event), *bt = wk_json_get(o, k_button);
  if (ev && (!cJSON_IsString(ev) ||
             !wk_click_event_from_name(ev->valuestring, strlen(ev->valuestring), &r.kind)))
    why = WK_CLICK_BAD_EVENT;
  if (bt && !cJSON_IsNull(bt) &&
      (!cJSON_IsString(bt) ||
       !wk_click_button_from_name(bt->valuestring, strlen(bt->valuestring), &r.button)))
    why = WK_CLICK_BAD_EVENT;
  const cJSON *x = wk_json_get(o, k_x), *y = wk_json_get(o, k_y);
  const bool scroll = r.kind == WK_CLICK_SCROLL_UP || r.kind == WK_CLICK_SCROLL_DOWN;
  if (why == WK_CLICK_BAD_COUNT) {
    if (!wk_json_number(wk_json_get(o, k_time), &r.t_s)) {
      why = WK_CLICK_BAD_NUMBER;
    } else if (scroll && (!x || cJSON_IsNull(x)) && (!y || cJSON_IsNull(y))) {
      r.has_pos = false;
    } else if (!wk_json_number(x, &r.x) || !wk_json_number(y, &r.y)) {
      why = WK_CLICK_BAD_NUMBER;
    }
  }
  cJSON_Delete(o);
  if (why != WK_CLICK_BAD_COUNT) {
    wk_click_sink_bad(k, why);
    return WK_OK;
  }
  return wk_click_sink_row(k, &r);
}
