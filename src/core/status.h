/* status.h - the two error channels.
 *
 * 1. Input-dependent failures: a function returns a wk_status other than WK_OK and
 *    records a message with wk_fail(); the caller reads it with wk_last_error().
 *    The message lives in thread-local storage, so threads do not clobber each other.
 * 2. Broken invariants (a bug, not bad input): WK_ASSERT aborts with file and line. */
#ifndef WK_STATUS_H
#define WK_STATUS_H

typedef enum wk_status {
  WK_OK = 0,
  WK_ERR_INVALID_ARG,  /* a parameter out of its range */
  WK_ERR_SHAPE,        /* tensor shapes or dtypes that do not fit together */
  WK_ERR_NOMEM,        /* an allocation failed */
  WK_ERR_IO,           /* a file could not be opened, read or written */
  WK_ERR_FORMAT,       /* a file's content is malformed */
  WK_ERR_UNSUPPORTED,  /* valid, but not handled by this build or backend */
  WK_ERR_LIMIT,        /* a size limit was exceeded */
  WK_ERR_BACKEND,      /* a foreign library (oneDNN, CUDA, ...) reported an error */
} wk_status;

#if defined(__GNUC__)
#define WK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define WK_NORETURN __attribute__((noreturn))
#define WK_NODISCARD __attribute__((warn_unused_result))
#else
#define WK_PRINTF(a, b)
#define WK_NORETURN
#define WK_NODISCARD
#endif

/* Records a formatted message for this thread and returns `code`, so a failing
 * function can end with `return wk_fail(WK_ERR_IO, "%s: %s", path, strerror(errno));` */
wk_status wk_fail(wk_status code, const char *fmt, ...) WK_PRINTF(2, 3);
#ifdef __clang_analyzer__
/* The static analyzer sees one file at a time: spell out that wk_fail returns
 * its code, or it follows "failed" paths as though they had succeeded. Every
 * caller's code is free of side effects, so evaluating it twice is harmless. */
#define wk_fail(code, ...) ((void)(wk_fail)((code), __VA_ARGS__), (code))
#endif

/* The message of the last wk_fail() on this thread ("" if none). */
const char *wk_last_error(void);

/* Forgets the last message on this thread. */
void wk_clear_error(void);

/* msg without a leading "PATH: " (a wk_fail message about path), for lists
 * that show the path beside it; msg itself where it does not start so. */
const char *wk_error_after_path(const char *msg, const char *path);

/* A short stable name for a status code, e.g. "format error". */
const char *wk_status_name(wk_status code);

/* Aborts with file and line; for broken invariants only. */
WK_NORETURN void wk_assert_fail(const char *expr, const char *file, int line);

#define WK_ASSERT(cond) \
  do { if (!(cond)) wk_assert_fail(#cond, __FILE__, __LINE__); } while (0)

/* Returns from the calling function when `expr` is not WK_OK. */
#define WK_TRY(expr) \
  do { wk_status wk_try_s_ = (expr); if (wk_try_s_ != WK_OK) return wk_try_s_; } while (0)

#endif
