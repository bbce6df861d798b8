/* status.c - thread-local error messages and the assert handler. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

enum { WK_ERROR_MSG_BYTES = 1024 };

static _Thread_local char wk_error_msg[WK_ERROR_MSG_BYTES];

wk_status (wk_fail)(wk_status code, const char *fmt, ...) {
  /* Format into a scratch buffer first: callers often wrap the current
   * message (wk_fail(s, "%s: %s", what, wk_last_error())), and vsnprintf
   * into a buffer that is also an argument is undefined. */
  char msg[sizeof wk_error_msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  memcpy(wk_error_msg, msg, sizeof msg);
  return code;
}

const char *wk_last_error(void) { return wk_error_msg; }

void wk_clear_error(void) { wk_error_msg[0] = '\0'; }

const char *wk_error_after_path(const char *msg, const char *path) {
  const size_t plen = strlen(path);
  return !strncmp(msg, path, plen) && !strncmp(msg + plen, ": ", 2) ? msg + plen + 2 : msg;
}

const char *wk_status_name(wk_status code) {
  switch (code) {
    case WK_OK: return "ok";
    case WK_ERR_INVALID_ARG: return "invalid argument";
    case WK_ERR_SHAPE: return "shape mismatch";
    case WK_ERR_NOMEM: return "out of memory";
    case WK_ERR_IO: return "i/o error";
    case WK_ERR_FORMAT: return "format error";
    case WK_ERR_UNSUPPORTED: return "unsupported";
    case WK_ERR_LIMIT: return "limit exceeded";
    case WK_ERR_BACKEND: return "backend error";
  }
  return "unknown status";
}

void wk_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "whisker: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
  fflush(stderr);
  abort();
}
