/* log.h - leveled logging to stderr.
 *
 * The threshold comes from WHISKER_LOG (error|warn|info|debug, default info) the
 * first time a message is logged, or from wk_log_set_level(). Results go to stdout
 * elsewhere; logs never do. */
#ifndef WK_LOG_H
#define WK_LOG_H

#include "core/status.h"

typedef enum wk_log_level {
  WK_LOG_ERROR = 0,
  WK_LOG_WARN = 1,
  WK_LOG_INFO = 2,
  WK_LOG_DEBUG = 3,
} wk_log_level;

void wk_log_set_level(wk_log_level level);
wk_log_level wk_log_get_level(void);
void wk_log(wk_log_level level, const char *fmt, ...) WK_PRINTF(2, 3);

#define WK_LOG_E(...) wk_log(WK_LOG_ERROR, __VA_ARGS__)
#define WK_LOG_W(...) wk_log(WK_LOG_WARN, __VA_ARGS__)
#define WK_LOG_I(...) wk_log(WK_LOG_INFO, __VA_ARGS__)
#define WK_LOG_D(...) wk_log(WK_LOG_DEBUG, __VA_ARGS__)

#endif
