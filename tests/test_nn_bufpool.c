/* test_nn_bufpool.c - the executor's buffer pool (src/nn/bufpool.c): the
 * buffer each request gets against a plain linear best fit (the reference:
 * the smallest free buffer large enough, the one made first among equals),
 * the accounting, the aborts on a buffer not from the pool or released twice,
 * failed allocations leaving a pool that still works, and work that grows
 * with the number of buffers as n log n, not n^2 (counted, not timed: the
 * pool's own count of nodes and slots visited, and the CPU's instruction
 * counter where there is one; the linear scan it replaced took 59 times the
 * instructions for 8 times the buffers).
 *
 * The suite is linked with -Wl,--wrap=realloc,--wrap=calloc,--wrap=aligned_alloc
 * (tests/CMakeLists.txt) so that each allocation can be made to fail. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/bufpool.h"
#include "test_insn.h"
#include "test_util.h"

/* ------------------------------------------------------------------ failures */

void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

/* Which allocations fail while set. */
static bool wkt_fail_realloc, wkt_fail_calloc, wkt_fail_aligned;

void *__wrap_realloc(void *p, size_t n) { return wkt_fail_realloc ? NULL : __real_realloc(p, n); }
void *__wrap_calloc(size_t n, size_t size) {
  return wkt_fail_calloc ? NULL : __real_calloc(n, size);
}
void *__wrap_aligned_alloc(size_t align, size_t n) {
  return wkt_fail_aligned ? NULL : __real_aligned_alloc(align, n);
}

/* ------------------------------------------------------------------ reference */

#define WKT_MAX_BUFS 4096

/* The pool's buffers as the reference sees them, in the order they were made. */
typedef struct wkt_shadow {
  float *data[WKT_MAX_BUFS];
  size_t n_elems[WKT_MAX_BUFS];
  bool in_use[WKT_MAX_BUFS];
  int n;
  size_t held, in_use_bytes, peak; /* the accounting the pool should keep */
} wkt_shadow;

/* The linear best fit: the buffer a request of n_elems gets, or -1 when a
 * new one is made. */
static int wkt_ref_best_fit(const wkt_shadow *s, size_t n_elems) {
  int best = -1;
  for (int i = 0; i < s->n; i++)
    if (!s->in_use[i] && s->n_elems[i] >= n_elems && (best < 0 || s->n_elems[i] < s->n_elems[best]))
      best = i;
  return best;
}

static void wkt_expect_accounting(const wk_bufpool *p, const wkt_shadow *s) {
  ck_assert_uint_eq(p->bytes_held, s->held);
  ck_assert_uint_eq(p->bytes_in_use, s->in_use_bytes);
  ck_assert_uint_eq(p->peak_bytes_in_use, s->peak);
}

/* Acquires n_elems from p, checks the buffer against the reference's choice,
 * its alignment and the accounting; returns its index in the reference. */
static int wkt_acquire(wk_bufpool *p, wkt_shadow *s, size_t n_elems) {
  const size_t n = n_elems ? n_elems : 1;
  int i = wkt_ref_best_fit(s, n);
  float *data;
  WKT_OK(wk_bufpool_acquire(p, n_elems, &data));
  ck_assert_uint_eq((uintptr_t)data % 64, 0);
  if (i >= 0) {
    ck_assert_msg(data == s->data[i], "%zu floats: not buffer %d (%zu floats)", n, i,
                  s->n_elems[i]);
  } else {
    ck_assert_int_lt(s->n, WKT_MAX_BUFS);
    i = s->n++;
    s->data[i] = data;
    s->n_elems[i] = n;
    s->held += (n * sizeof(float) + 63) & ~(size_t)63;
  }
  s->in_use[i] = true;
  s->in_use_bytes += s->n_elems[i] * sizeof(float);
  if (s->in_use_bytes > s->peak) s->peak = s->in_use_bytes;
  wkt_expect_accounting(p, s);
  memset(data, 0xab, s->n_elems[i] * sizeof(float)); /* all of it is there */
  return i;
}

static void wkt_release(wk_bufpool *p, wkt_shadow *s, int i) {
  wk_bufpool_release(p, s->data[i]);
  s->in_use[i] = false;
  s->in_use_bytes -= s->n_elems[i] * sizeof(float);
  wkt_expect_accounting(p, s);
}

static void wkt_release_all(wk_bufpool *p, wkt_shadow *s) {
  wk_bufpool_release_all(p);
  memset(s->in_use, 0, sizeof s->in_use);
  s->in_use_bytes = 0;
  wkt_expect_accounting(p, s);
}

/* xorshift64: the random tests' sequence, a function of the seed only. */
static uint64_t wkt_next(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* ------------------------------------------------------------------ answers */

/* The smallest free buffer that is large enough; of two equal, the one made first. */
START_TEST(test_best_fit) {
  wk_bufpool p = {0};
  static wkt_shadow s;
  memset(&s, 0, sizeof s);
  const size_t sizes[5] = {100, 50, 200, 50, 16};
  int id[5];
  for (int i = 0; i < 5; i++) ck_assert_int_eq(id[i] = wkt_acquire(&p, &s, sizes[i]), i);
  for (int i = 4; i >= 0; i--) wkt_release(&p, &s, id[i]);
  ck_assert_int_eq(wkt_acquire(&p, &s, 40), 1); /* 50, made before the other 50 */
  ck_assert_int_eq(wkt_acquire(&p, &s, 17), 3); /* 16 is too small */
  ck_assert_int_eq(wkt_acquire(&p, &s, 51), 0);
  ck_assert_int_eq(wkt_acquire(&p, &s, 0), 4); /* a request of 0 takes one float */
  ck_assert_int_eq(wkt_acquire(&p, &s, 201), 5); /* none fits: a new one */
  ck_assert_int_eq(wkt_acquire(&p, &s, 150), 2);
  ck_assert_int_eq(wkt_acquire(&p, &s, 1), 6);
  wk_bufpool_release(&p, NULL); /* ignored */
  wkt_expect_accounting(&p, &s);
  wk_bufpool_free(&p);
  ck_assert_ptr_null(p.entries);
  ck_assert_uint_eq(p.bytes_held, 0);
}
END_TEST

/* Random requests among few sizes (many ties), releases in random order and
 * whole steps released: every answer the reference's. */
START_TEST(test_matches_linear_best_fit) {
  static const size_t sizes[9] = {1, 15, 16, 17, 64, 64 * 3, 1000, 1001, 4096};
  wk_bufpool p = {0};
  static wkt_shadow s;
  memset(&s, 0, sizeof s);
  int held[WKT_MAX_BUFS], n_held = 0;
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (int step = 0; step < 20000; step++) {
    const uint64_t r = wkt_next(&x);
    if (r % 500 == 0) {
      wkt_release_all(&p, &s);
      n_held = 0;
    } else if (n_held > 0 && (r >> 8) % 16 < 7 + (n_held > 200) * 8) {
      const int k = (int)((r >> 16) % (uint64_t)n_held);
      wkt_release(&p, &s, held[k]);
      held[k] = held[--n_held];
    } else {
      held[n_held++] = wkt_acquire(&p, &s, sizes[(r >> 16) % 9] + (r >> 32) % 3 * (r % 7 == 0));
    }
  }
  ck_assert_int_gt(s.n, 50);
  wk_bufpool_free(&p);
}
END_TEST

/* release_all frees every buffer: the next step gets the same ones (nothing
 * new is held) and the peak stays that of one step. */
START_TEST(test_release_all) {
  wk_bufpool p = {0};
  static wkt_shadow s;
  memset(&s, 0, sizeof s);
  size_t held = 0;
  for (int step = 0; step < 3; step++) {
    for (size_t n = 1; n <= 300; n += 7) wkt_acquire(&p, &s, n);
    ck_assert_int_eq(s.n, 43);
    if (step == 0) held = p.bytes_held;
    ck_assert_uint_eq(p.bytes_held, held);
    wkt_release_all(&p, &s);
    ck_assert_uint_eq(p.peak_bytes_in_use, (43 + 7 * 903) * sizeof(float)); /* 1 + 8 + ... + 295 */
  }
  wk_bufpool_release_all(&p); /* none in use: nothing changes */
  wkt_expect_accounting(&p, &s);
  wk_bufpool_free(&p);
  wk_bufpool_release_all(&p); /* an empty pool */
  wk_bufpool_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ misuse */

/* Each aborts (WK_ASSERT: a caller's bug, not bad input). */
START_TEST(test_release_foreign_aborts) {
  wk_bufpool p = {0};
  float *a, other[16];
  WKT_OK(wk_bufpool_acquire(&p, 16, &a));
  wk_bufpool_release(&p, other);
}
END_TEST

START_TEST(test_release_to_empty_pool_aborts) {
  wk_bufpool p = {0};
  float other[16];
  wk_bufpool_release(&p, other);
}
END_TEST

START_TEST(test_release_twice_aborts) {
  wk_bufpool p = {0};
  float *a, *b;
  WKT_OK(wk_bufpool_acquire(&p, 16, &a));
  WKT_OK(wk_bufpool_acquire(&p, 16, &b));
  wk_bufpool_release(&p, a);
  wk_bufpool_release(&p, a);
}
END_TEST

/* A request past the tensor limit fails with WK_ERR_LIMIT and holds nothing. */
START_TEST(test_limit) {
  wk_bufpool p = {0};
  float *a = NULL;
  WKT_FAILS(WK_ERR_LIMIT, wk_bufpool_acquire(&p, SIZE_MAX / 2, &a));
  ck_assert_ptr_null(a);
  ck_assert_uint_eq(p.bytes_held, 0);
  ck_assert_uint_eq(p.bytes_in_use, 0);
  wk_bufpool_free(&p);
}
END_TEST

/* Each allocation failing in turn (the entry list, the address map, the
 * buffer), on an empty pool and on one that must grow: WK_ERR_NOMEM with a
 * message, the accounting unchanged, and the pool still works. */
START_TEST(test_out_of_memory) {
  bool *fail[3] = {&wkt_fail_realloc, &wkt_fail_calloc, &wkt_fail_aligned};
  for (int f = 0; f < 3; f++) {
    for (int before = 0; before <= 64; before += 64) { /* 64: the first growth of both */
      wk_bufpool p = {0};
      static wkt_shadow s;
      memset(&s, 0, sizeof s);
      for (int i = 0; i < before; i++) wkt_acquire(&p, &s, 8);
      float *a = NULL;
      *fail[f] = true;
      wk_clear_error();
      const wk_status st = wk_bufpool_acquire(&p, 8, &a);
      *fail[f] = false;
      ck_assert_msg(st == WK_ERR_NOMEM, "allocation %d failing after %d buffers: %s", f, before,
                    wk_status_name(st));
      ck_assert(wk_last_error()[0] != '\0');
      ck_assert_ptr_null(a);
      wkt_expect_accounting(&p, &s);
      for (int i = 0; i < 100; i++) wkt_acquire(&p, &s, 8);
      for (int i = 0; i < s.n; i++) wkt_release(&p, &s, i);
      for (int i = 0; i < 10; i++) wkt_acquire(&p, &s, 8);
      wk_bufpool_free(&p);
    }
  }
}
END_TEST

/* $WHISKER_MEM_LIMIT_MB bounds what the pool holds: a new buffer past it is
 * refused (WK_ERR_NOMEM, a message naming the limit and suggesting a smaller
 * batch), nothing held changes, a free buffer is still handed out again, and
 * a limit that is not a number of megabytes above 0 is refused by name. */
START_TEST(test_mem_limit) {
  wk_bufpool p = {0};
  float *a = NULL, *b = NULL, *c = NULL;
  setenv("WHISKER_MEM_LIMIT_MB", "1", 1);
  WKT_OK(wk_bufpool_acquire(&p, 128 * 1024, &a)); /* 512 KiB */
  WKT_OK(wk_bufpool_acquire(&p, 128 * 1024, &b)); /* 1 MiB held: at the limit, allowed */
  WKT_FAILS(WK_ERR_NOMEM, wk_bufpool_acquire(&p, 16, &c));
  ck_assert_ptr_null(c);
  ck_assert_msg(strstr(wk_last_error(), "$WHISKER_MEM_LIMIT_MB=1 MB (1 MB held, 1 MB more asked "
                       "for); try a smaller --batch") != NULL, "%s", wk_last_error());
  ck_assert_uint_eq(p.bytes_held, 1 << 20);
  wk_bufpool_release(&p, a);
  WKT_OK(wk_bufpool_acquire(&p, 16, &c)); /* the free 512 KiB: no new memory */
  ck_assert_ptr_eq(c, a);
  ck_assert_uint_eq(p.bytes_held, 1 << 20);
  const char *bad[3] = {"0", "x", "-5"};
  for (int k = 0; k < 3; k++) {
    setenv("WHISKER_MEM_LIMIT_MB", bad[k], 1);
    float *d = NULL;
    WKT_FAILS(WK_ERR_INVALID_ARG, wk_bufpool_acquire(&p, 16, &d));
    ck_assert_msg(strstr(wk_last_error(), "$WHISKER_MEM_LIMIT_MB=") != NULL, "%s",
                  wk_last_error());
  }
  unsetenv("WHISKER_MEM_LIMIT_MB");
  wk_bufpool_free(&p);
}
END_TEST

/* A new buffer larger than the memory the system has available is refused
 * before it is allocated (Linux would hand it out and kill the process when
 * its pages were touched). 4 GB past MemAvailable, so that other tests
 * freeing memory meanwhile cannot make room; skipped where there is no
 * /proc/meminfo or the request would pass the tensor limit. */
START_TEST(test_mem_available) {
  const size_t avail = wkt_mem_available();
  const size_t bytes = avail + ((size_t)4 << 30);
  if (!avail || bytes > ((size_t)1 << 36)) return;
  wk_bufpool p = {0};
  float *a = NULL;
  WKT_FAILS(WK_ERR_NOMEM, wk_bufpool_acquire(&p, bytes / sizeof(float), &a));
  ck_assert_ptr_null(a);
  ck_assert_msg(strstr(wk_last_error(), "MB available, 256 of them kept free (0 MB held "
                                        "already); try a smaller --batch"),
                "%s", wk_last_error());
  ck_assert_uint_eq(p.bytes_held, 0);
  WKT_OK(wk_bufpool_acquire(&p, 16, &a)); /* and it still works */
  wk_bufpool_free(&p);
}
END_TEST

/* In a container or a batch job the memory cgroup's limit is the one the
 * kernel enforces (by killing the process), not the machine's MemAvailable:
 * a new buffer past what the cgroup leaves (less the pool's 256 MB reserve)
 * is refused with a message naming the limit; one within it is made. The
 * host is a tree of /proc and /sys files (core/hostres.h). */
START_TEST(test_mem_cgroup) {
  char dir[] = "/tmp/wk_test_bp_cg_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  wkt_write_text(dir, "proc/meminfo", "MemAvailable:   67108864 kB\n"); /* 64 GB */
  wkt_write_text(dir, "proc/self/cgroup", "0::/job\n");
  wkt_write_text(dir, "proc/self/mountinfo",
                 "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
  wkt_write_text(dir, "sys/fs/cgroup/job/memory.max", "283115520\n"); /* 270 MB */
  wkt_write_text(dir, "sys/fs/cgroup/job/memory.current", "4194304\n");
  wk_bufpool p = {.host_root = dir};
  float *a = NULL, *b = NULL;
  WKT_OK(wk_bufpool_acquire(&p, (size_t)1 << 20, &a)); /* 4 MB: 266 left, 262 asked */
  WKT_FAILS(WK_ERR_NOMEM, wk_bufpool_acquire(&p, (size_t)4 << 20, &b)); /* 16 MB */
  ck_assert_ptr_null(b);
  ck_assert_msg(strstr(wk_last_error(), "need 16 MB more, the process's control group (a "
                       "container's or job's memory limit, 270 MB) leaves 266 MB, 256 of them "
                       "kept free (4 MB held already); try a smaller --batch"), "%s", wk_last_error());
  wkt_write_text(dir, "sys/fs/cgroup/job/memory.max", "max\n");
  WKT_OK(wk_bufpool_acquire(&p, (size_t)4 << 20, &b)); /* no limit: the system's 64 GB */
  wk_bufpool_free(&p);
  wkt_remove_tree(dir);
}
END_TEST

/* ------------------------------------------------------------------ scale */

/* Two steps of n buffers: each made (nothing free fits), released in a
 * scrambled order, acquired again in another order (each one a best fit among
 * all those free), then a release_all and a third round released one by one.
 * The sizes are 16 to 1039 floats. */
static void wkt_steps(wk_bufpool *p, int n, float **bufs) {
  for (int i = 0; i < n; i++)
    WKT_OK(wk_bufpool_acquire(p, 16 + (size_t)i * 2654435761u % 1024, &bufs[i]));
  for (int i = 0; i < n; i++) wk_bufpool_release(p, bufs[(size_t)i * 7919 % (size_t)n]);
  for (int i = 0; i < n; i++)
    WKT_OK(wk_bufpool_acquire(p, 16 + (size_t)(n - 1 - i) * 2654435761u % 1024, &bufs[i]));
  wk_bufpool_release_all(p);
  for (int i = 0; i < n; i++)
    WKT_OK(wk_bufpool_acquire(p, 16 + (size_t)i * 40503u % 1024, &bufs[i]));
  for (int i = n - 1; i >= 0; i--) wk_bufpool_release(p, bufs[i]);
}

/* The buffer counts the work is compared on: 8 times the buffers. */
static const int wkt_scale_bufs[2] = {2000, 16000};

/* 8 times the buffers cost about 8 times the work (n log n: ~10), where the
 * linear scan cost about 60. Counted by the CPU's instruction counter where
 * there is one (everything the calls do), and by the pool on every machine
 * (nodes and slots visited: about 2 log2(n) per call, at most 8 log2(n)). */
START_TEST(test_work_grows_linearly) {
  const int fd = wkt_insn_open_for("test_work_grows_linearly");
  long long insn[2];
  uint64_t visits[2];
  for (int k = 0; k < 2; k++) {
    const int n = wkt_scale_bufs[k];
    float **bufs = malloc((size_t)n * sizeof *bufs);
    ck_assert_ptr_nonnull(bufs);
    wk_bufpool p = {0};
    if (fd >= 0) wkt_insn_start(fd);
    wkt_steps(&p, n, bufs);
    insn[k] = fd >= 0 ? wkt_insn_stop(fd) : -1;
    visits[k] = p.n_visits;
    ck_assert_uint_eq(p.bytes_in_use, 0);
    wk_bufpool_free(&p);
    free(bufs);
  }
  if (fd >= 0) {
    close(fd);
    wkt_expect_linear("test_work_grows_linearly", "acquire and release", wkt_scale_bufs, insn);
  }
  for (int k = 0; k < 2; k++) {
    const double calls = 5.0 * wkt_scale_bufs[k];
    ck_assert_msg(visits[k] > 0 && (double)visits[k] <= 8.0 * calls * log2(wkt_scale_bufs[k]),
                  "%d buffers: %llu nodes and slots visited in %.0f calls", wkt_scale_bufs[k],
                  (unsigned long long)visits[k], calls);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("nn_bufpool");
  TCase *tc = tcase_create("nn_bufpool");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_best_fit);
  tcase_add_test(tc, test_matches_linear_best_fit);
  tcase_add_test(tc, test_release_all);
  tcase_add_test_raise_signal(tc, test_release_foreign_aborts, SIGABRT);
  tcase_add_test_raise_signal(tc, test_release_to_empty_pool_aborts, SIGABRT);
  tcase_add_test_raise_signal(tc, test_release_twice_aborts, SIGABRT);
  tcase_add_test(tc, test_limit);
  tcase_add_test(tc, test_out_of_memory);
  tcase_add_test(tc, test_mem_limit);
  tcase_add_test(tc, test_mem_available);
  tcase_add_test(tc, test_mem_cgroup);
  tcase_add_test(tc, test_work_grows_linearly);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
