/* log.c - leveled logging to stderr; one fprintf per message so lines from
 * different threads do not interleave. */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -1: not yet read from the environment. The process-wide threshold is the one
 * piece of global state in the library, as in every logger. */
static atomic_int wk_log_threshold = -1;

static wk_log_level wk_log_level_from_env(void) {
  const char *s = getenv("WHISKER_LOG");
  if (!s || !*s) return WK_LOG_INFO;
  if (!strcmp(s, "error")) return WK_LOG_ERROR;
  if (!strcmp(s, "warn")) return WK_LOG_WARN;
  if (!strcmp(s, "debug")) return WK_LOG_DEBUG;
  return WK_LOG_INFO;
}

void wk_log_set_level(wk_log_level level) { atomic_store(&wk_log_threshold, (int)level); }

wk_log_level wk_log_get_level(void) {
  int t = atomic_load(&wk_log_threshold);
  if (t < 0) {
    t = (int)wk_log_level_from_env();
    atomic_store(&wk_log_threshold, t);
  }
  return (wk_log_level)t;
}

void wk_log(wk_log_level level, const char *fmt, ...) {
  if ((int)level > (int)wk_log_get_level()) return;
  static const char *const names[] = {"error", "warning", "info", "debug"};
  char line[2048];
  int n = snprintf(line, sizeof line, "whisker: %s: ", names[level]);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}
