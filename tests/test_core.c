/* test_core.c - status messages, tensors, the counter-based RNG, the thread
 * pool and the context. */
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/atomic_file.h"

#include "core/strmap.h"
#include "test_util.h"

START_TEST(test_status_messages) {
  wk_clear_error();
  ck_assert_str_eq(wk_last_error(), "");
  wk_status s = wk_fail(WK_ERR_IO, "%s: %s", "photo.jpg", "truncated");
  ck_assert_int_eq(s, WK_ERR_IO);
  ck_assert_str_eq(wk_last_error(), "photo.jpg: truncated");
  ck_assert_str_eq(wk_status_name(WK_ERR_FORMAT), "format error");
  ck_assert_str_eq(wk_status_name(WK_OK), "ok");
}
END_TEST

START_TEST(test_tensor_alloc_and_limits) {
  const int64_t shape[3] = {2, 3, 5};
  wk_tensor t;
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 3, shape), WK_OK);
  ck_assert_int_eq(wk_tensor_numel(&t), 30);
  ck_assert_uint_eq(wk_tensor_nbytes(&t), 120);
  ck_assert_uint_eq((uintptr_t)t.data % 64, 0);
  for (int i = 0; i < 30; i++) ck_assert_float_eq(((float *)t.data)[i], 0.0f);
  char buf[64];
  ck_assert_str_eq(wk_shape_str(&t, buf, sizeof buf), "(2, 3, 5)");
  wk_tensor_free(&t);
  ck_assert_ptr_null(t.data);
  wk_tensor_free(&t); /* safe twice */
  /* sizes from an untrusted header: overflow and the byte limit are errors */
  const int64_t huge[4] = {1 << 20, 1 << 20, 1 << 20, 1 << 20};
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 4, huge), WK_ERR_LIMIT);
  ck_assert_ptr_null(t.data);
  const int64_t neg[2] = {3, -1};
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 2, neg), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 7, shape), WK_ERR_INVALID_ARG);
  /* expect() names the tensor and both shapes */
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 3, shape), WK_OK);
  const int64_t other[3] = {2, 3, 4};
  ck_assert_int_eq(wk_tensor_expect(&t, "weights", WK_F32, 3, other), WK_ERR_SHAPE);
  ck_assert_str_eq(wk_last_error(), "weights: shape (2, 3, 5), expected (2, 3, 4)");
  ck_assert_int_eq(wk_tensor_expect(&t, "weights", WK_F32, 3, shape), WK_OK);
  wk_tensor_free(&t);
}
END_TEST

/* Known-answer vectors from Random123's kat_vectors (philox4x32_10). */
START_TEST(test_philox_known_answers) {
  const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
  const uint32_t want0[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
  const uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
  const uint32_t k1[2] = {0xffffffffu, 0xffffffffu};
  const uint32_t want1[4] = {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu};
  const uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
  const uint32_t k2[2] = {0xa4093822u, 0x299f31d0u};
  const uint32_t want2[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
  uint32_t out[4];
  wk_philox4x32_10(c0, k0, out);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(out[i], want0[i]);
  wk_philox4x32_10(c1, k1, out);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(out[i], want1[i]);
  wk_philox4x32_10(c2, k2, out);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(out[i], want2[i]);
}
END_TEST

START_TEST(test_rng_streams) {
  /* the sequential reader and random access agree */
  wk_rng r = wk_rng_make(42, 9);
  for (uint64_t i = 0; i < 37; i++) ck_assert_uint_eq(wk_rng_u32(&r), wk_rng_at(42, 9, i));
  /* different streams and seeds differ */
  ck_assert_uint_ne(wk_rng_at(42, 9, 0), wk_rng_at(42, 10, 0));
  ck_assert_uint_ne(wk_rng_at(42, 9, 0), wk_rng_at(43, 9, 0));
  /* uniform in [0,1) with the right mean; normal with the right moments */
  r = wk_rng_make(1, 2);
  double s = 0, s2 = 0, smin = 1, smax = 0;
  const int n = 200000;
  for (int i = 0; i < n; i++) {
    double u = wk_rng_uniform(&r);
    ck_assert(u >= 0.0 && u < 1.0);
    s += u, smin = u < smin ? u : smin, smax = u > smax ? u : smax;
  }
  ck_assert_double_le(fabs(s / n - 0.5), 0.005);
  ck_assert(smin < 0.001 && smax > 0.999);
  s = 0;
  for (int i = 0; i < n; i++) {
    double z = wk_rng_normal(&r);
    s += z, s2 += z * z;
  }
  ck_assert_double_le(fabs(s / n), 0.01);
  ck_assert_double_le(fabs(s2 / n - 1.0), 0.02);
  /* below(): in range and covering every value */
  int seen[7] = {0};
  for (int i = 0; i < 7000; i++) {
    uint32_t v = wk_rng_below(&r, 7);
    ck_assert_uint_lt(v, 7);
    seen[v]++;
  }
  for (int i = 0; i < 7; i++) ck_assert_int_gt(seen[i], 800);
}
END_TEST

typedef struct {
  atomic_int *hits;
  atomic_int calls;
} pool_arg;

static void pool_body(void *arg, int64_t b, int64_t e) {
  pool_arg *a = arg;
  atomic_fetch_add(&a->calls, 1);
  for (int64_t i = b; i < e; i++) atomic_fetch_add(&a->hits[i], 1);
}

START_TEST(test_pool_covers_every_index_once) {
  for (int threads = 1; threads <= 4; threads++) {
    wk_pool *pool;
    ck_assert_int_eq(wk_pool_create(&pool, threads), WK_OK);
    ck_assert_int_eq(wk_pool_size(pool), threads);
    for (int64_t n = 0; n < 300; n += 37) {
      atomic_int *hits = calloc((size_t)n + 1, sizeof *hits);
      pool_arg a = {hits, 0};
      wk_pool_parallel_for(pool, n, 1, pool_body, &a);
      for (int64_t i = 0; i < n; i++) ck_assert_int_eq(atomic_load(&hits[i]), 1);
      ck_assert_int_le(atomic_load(&a.calls), threads);
      free(hits);
    }
    /* grain limits the number of chunks */
    atomic_int hits[10] = {0};
    pool_arg a = {hits, 0};
    wk_pool_parallel_for(pool, 10, 10, pool_body, &a);
    ck_assert_int_eq(atomic_load(&a.calls), 1);
    wk_pool_destroy(pool);
  }
  ck_assert_int_eq(wk_pool_create(&(wk_pool *){NULL}, 0), WK_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_ctx_from_environment) {
  wk_ctx *ctx;
  setenv("WHISKER_IMPL", "ref", 1);
  setenv("WHISKER_THREADS", "3", 1);
  ck_assert_int_eq(wk_ctx_create(&ctx, 0), WK_OK);
  ck_assert_int_eq(ctx->impl, WK_IMPL_REF);
  ck_assert_int_eq(ctx->n_threads, 3);
  wk_ctx_destroy(ctx);
  setenv("WHISKER_IMPL", "fast", 1);
  ck_assert_int_eq(wk_ctx_create(&ctx, 0), WK_ERR_INVALID_ARG);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(wk_last_error(), "WHISKER_IMPL") != NULL, "%s", wk_last_error());
  setenv("WHISKER_IMPL", "cuda", 1);
  ck_assert_int_eq(wk_ctx_create(&ctx, 0), WK_ERR_UNSUPPORTED);
  unsetenv("WHISKER_IMPL");
  setenv("WHISKER_THREADS", "lots", 1);
  ck_assert_int_eq(wk_ctx_create(&ctx, 0), WK_ERR_INVALID_ARG);
  unsetenv("WHISKER_THREADS");
  ck_assert_int_eq(wk_ctx_create(&ctx, 2), WK_OK);
  ck_assert_int_eq(ctx->impl, WK_IMPL_CPU);
  wk_ctx_destroy(ctx);
}
END_TEST

/* An atomic write to a symbolic link replaces the file the link leads to
 * (a relative link, through a second link) and keeps the link; a dangling
 * link creates its target; a loop of links is refused naming the path. */
START_TEST(test_atomic_write_through_links) {
  char dir[] = "/tmp/wk_test_links_XXXXXX", a[128], b[128], real[128], sub[128], loop[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(sub, sizeof sub, "%s/real", dir);
  snprintf(real, sizeof real, "%s/real/model", dir);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  snprintf(loop, sizeof loop, "%s/loop", dir);
  ck_assert_int_eq(mkdir(sub, 0700), 0);
  WKT_OK(wk_atomic_write_file(real, "old", 3));
  ck_assert_int_eq(symlink("real/model", b), 0); /* relative to dir */
  ck_assert_int_eq(symlink(b, a), 0);
  WKT_OK(wk_atomic_write_file(a, "new!", 4));
  struct stat st;
  ck_assert_int_eq(lstat(a, &st), 0);
  ck_assert(S_ISLNK(st.st_mode));
  ck_assert_int_eq(lstat(b, &st), 0);
  ck_assert(S_ISLNK(st.st_mode));
  ck_assert_int_eq(stat(real, &st), 0);
  ck_assert_int_eq((int)st.st_size, 4);
  unlink(real);
  WKT_OK(wk_atomic_write_file(a, "x", 1)); /* dangling: the target is made */
  ck_assert_int_eq(stat(real, &st), 0);
  ck_assert_int_eq((int)st.st_size, 1);
  ck_assert_int_eq(symlink("loop", loop), 0);
  ck_assert_int_eq(wk_atomic_write_file(loop, "x", 1), WK_ERR_IO);
  ck_assert_msg(strstr(wk_last_error(), loop), "%s", wk_last_error());
  unlink(a), unlink(b), unlink(loop), unlink(real), rmdir(sub);
  ck_assert_int_eq(rmdir(dir), 0); /* no temporary file left behind */
}
END_TEST

/* A writer killed before its commit leaves no temporary file behind (the
 * file is unnamed until the commit, on systems with O_TMPFILE: Linux on
 * ext4, xfs, btrfs, tmpfs), and a committed write leaves only its target. */
START_TEST(test_atomic_write_killed_leaves_nothing) {
  char dir[] = "/tmp/wk_test_killed_XXXXXX", path[96];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
  const pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    wk_atomic_file af;
    if (wk_atomic_open(&af, path) != WK_OK || wk_atomic_write(&af, "partial", 7) != WK_OK)
      _exit(2);
    fflush(wk_atomic_stream(&af));
    _exit(0); /* killed: no commit, no abort */
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const int left = wkt_count_entries(dir);
  if (wkt_has_tmpfile(dir))
    ck_assert_msg(left == 0, "%d file(s) left in %s by a writer that never committed", left,
                  dir);
  else
    fprintf(stderr, "test_atomic_write_killed_leaves_nothing: %s has no O_TMPFILE: the named "
            "temporary file stays (%d)\n", dir, left);
  DIR *d;
  if (left && (d = opendir(dir))) { /* the named file of a system without it */
    for (struct dirent *e; (e = readdir(d));) {
      char p[512];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      if (e->d_name[0] != '.') unlink(p);
    }
    closedir(d);
  }
  WKT_OK(wk_atomic_write_file(path, "whole", 5));
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_int_eq((int)st.st_size, 5);
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(rmdir(dir), 0); /* nothing else */
}
END_TEST

/* The importer's name index: get, replace, growth past many keys, a key that
 * is the prefix of another, the empty key; any seed. */
START_TEST(test_strmap) {
  for (uint64_t seed = 0; seed < 3; seed++) {
    wk_strmap m;
    wk_strmap_init(&m, seed * 0x9e3779b97f4a7c15u);
    ck_assert(!wk_strmap_get(&m, "a", NULL));
    char key[32];
    for (int i = 0; i < 5000; i++) {
      snprintf(key, sizeof key, "k%d", i);
      ck_assert(wk_strmap_put(&m, key, i));
    }
    ck_assert(wk_strmap_put(&m, "", -1));
    ck_assert(wk_strmap_put(&m, "k1", 77)); /* replaced, not added */
    ck_assert_uint_eq(m.n, 5001);
    for (int i = 0; i < 5000; i++) {
      snprintf(key, sizeof key, "k%d", i);
      int64_t v = -2;
      ck_assert(wk_strmap_get(&m, key, &v));
      ck_assert_int_eq(v, i == 1 ? 77 : i);
    }
    int64_t v;
    ck_assert(wk_strmap_get(&m, "", &v) && v == -1);
    ck_assert(!wk_strmap_get(&m, "k", NULL) && !wk_strmap_get(&m, "k50000", NULL));
    wk_strmap_free(&m);
    ck_assert(!wk_strmap_get(&m, "k1", NULL));
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("core");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_status_messages);
  tcase_add_test(tc, test_atomic_write_through_links);
  tcase_add_test(tc, test_atomic_write_killed_leaves_nothing);
  tcase_add_test(tc, test_tensor_alloc_and_limits);
  tcase_add_test(tc, test_philox_known_answers);
  tcase_add_test(tc, test_rng_streams);
  tcase_add_test(tc, test_pool_covers_every_index_once);
  tcase_add_test(tc, test_ctx_from_environment);
  tcase_add_test(tc, test_strmap);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
