/* test_util.h - helpers shared by the Check suites: contexts, deterministic
 * random fills, error measures. */
#ifndef WK_TEST_UTIL_H
#define WK_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "whisker.h"

/* A context with the given implementation and thread count; aborts the test on
 * failure. Free with wk_ctx_destroy. */
wk_ctx *wkt_ctx(wk_impl impl, int n_threads);

/* Uniform values in [lo, hi) from the counter-based RNG, a function of seed only. */
void wkt_fill_f32(float *p, int64_t n, uint64_t seed, float lo, float hi);
void wkt_fill_f64(double *p, int64_t n, uint64_t seed, double lo, double hi);

/* Normalised error: max |a - ref| / max(max |ref|, floor). The floor keeps an
 * all-zero reference from dividing by zero; 1e-6 unless the caller knows more. */
double wkt_rel_err(const float *a, const float *ref, int64_t n, double floor);

/* Allocates a tensor or fails the test. */
wk_tensor wkt_tensor(wk_dtype dtype, int ndim, const int64_t *shape);

/* The whole content of a file (malloc'd, at least 1 byte even when the file is
 * empty); *n_bytes gets its size. Fails the test when it cannot be read. */
uint8_t *wkt_read_file(const char *path, size_t *n_bytes);

/* Whether the filesystem of dir takes unnamed files (O_TMPFILE), which
 * core/atomic_file writes through where it can. */
bool wkt_has_tmpfile(const char *dir);

/* The entries of folder dir, "." and ".." aside (fails the test when it cannot be read). */
int wkt_count_entries(const char *dir);

/* /proc/meminfo's MemAvailable in bytes; 0 where it cannot be read. */
size_t wkt_mem_available(void);

/* Writes `text` to dir/rel, making rel's folders (fails the test on error). */
void wkt_write_text(const char *dir, const char *rel, const char *text);

/* Removes dir and everything below it (symbolic links are not followed). */
void wkt_remove_tree(const char *dir);

/* The project's source directory (WHISKER_SOURCE_DIR, set by ctest). */
const char *wkt_source_dir(void);

/* Fails the test, naming the call, the status and whisker's message, unless
 * `expr` returns WK_OK. */
#define WKT_OK(expr)                                                               \
  do {                                                                             \
    wk_status wkt_ok_s_ = (expr);                                                  \
    ck_assert_msg(wkt_ok_s_ == WK_OK, "%s: %s: %s", #expr,                         \
                  wk_status_name(wkt_ok_s_), wk_last_error());                     \
  } while (0)

/* Fails the test unless `expr` returns `code` and leaves a message. */
#define WKT_FAILS(code, expr)                                                      \
  do {                                                                             \
    wk_clear_error();                                                              \
    wk_status wkt_fails_s_ = (expr);                                               \
    ck_assert_msg(wkt_fails_s_ == (code), "%s: got %s, expected %s", #expr,        \
                  wk_status_name(wkt_fails_s_), wk_status_name(code));             \
    ck_assert_msg(wk_last_error()[0] != '\0', "%s: no message", #expr);            \
  } while (0)

/* Runs a suite with Check's defaults and returns the process exit status
 * (EXIT_FAILURE when any test failed). */
#include <check.h>
int wkt_run_suite(Suite *suite);

#endif
