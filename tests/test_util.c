/* test_util.c - helpers shared by the Check suites. */
#define _GNU_SOURCE /* O_TMPFILE */
#include "test_util.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

wk_ctx *wkt_ctx(wk_impl impl, int n_threads) {
  wk_ctx *ctx = NULL;
  wk_status s = wk_ctx_create(&ctx, n_threads);
  ck_assert_msg(s == WK_OK, "wk_ctx_create: %s", wk_last_error());
  ctx->impl = impl;
  return ctx;
}

void wkt_fill_f32(float *p, int64_t n, uint64_t seed, float lo, float hi) {
  wk_rng r = wk_rng_make(seed, 0x7e57);
  for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * wk_rng_uniform(&r);
}

void wkt_fill_f64(double *p, int64_t n, uint64_t seed, double lo, double hi) {
  wk_rng r = wk_rng_make(seed, 0x7e57);
  for (int64_t i = 0; i < n; i++) {
    /* 53 random bits */
    uint64_t bits = ((uint64_t)wk_rng_u32(&r) << 21) ^ (uint64_t)wk_rng_u32(&r);
    p[i] = lo + (hi - lo) * ((double)(bits & ((1ull << 53) - 1)) / 9007199254740992.0);
  }
}

double wkt_rel_err(const float *a, const float *ref, int64_t n, double floor) {
  double max_diff = 0.0, max_ref = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)ref[i]);
    if (isnan(a[i]) != isnan(ref[i])) return INFINITY;
    if (d > max_diff) max_diff = d;
    if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
  }
  return max_diff / (max_ref > floor ? max_ref : floor);
}

wk_tensor wkt_tensor(wk_dtype dtype, int ndim, const int64_t *shape) {
  wk_tensor t;
  wk_status s = wk_tensor_alloc(&t, dtype, ndim, shape);
  ck_assert_msg(s == WK_OK, "wk_tensor_alloc: %s", wk_last_error());
  return t;
}

uint8_t *wkt_read_file(const char *path, size_t *n_bytes) {
  FILE *fp = fopen(path, "rb");
  ck_assert_msg(fp != NULL, "cannot open %s", path);
  ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
  long n = ftell(fp);
  ck_assert_int_ge(n, 0);
  rewind(fp);
  uint8_t *buf = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
  fclose(fp);
  *n_bytes = (size_t)n;
  return buf;
}

const char *wkt_source_dir(void) {
  const char *d = getenv("WHISKER_SOURCE_DIR");
  return d && *d ? d : ".";
}

int wkt_run_suite(Suite *suite) {
  SRunner *sr = srunner_create(suite);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int wkt_count_entries(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "opendir %s", dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

bool wkt_has_tmpfile(const char *dir) {
  const int fd = open(dir, O_TMPFILE | O_WRONLY, 0600);
  if (fd < 0) return false;
  close(fd);
  return true;
}

size_t wkt_mem_available(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  unsigned long long kb = 0;
  char line[128];
  while (f && fgets(line, sizeof line, f) && sscanf(line, "MemAvailable: %llu kB", &kb) != 1) {
  }
  if (f) fclose(f);
  return (size_t)kb * 1024;
}

void wkt_write_text(const char *dir, const char *rel, const char *text) {
  char path[1024];
  ck_assert_int_lt(snprintf(path, sizeof path, "%s/%s", dir, rel), (int)sizeof path);
  for (char *s = path + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
    *s = '\0';
    ck_assert_msg(mkdir(path, 0700) == 0 || errno == EEXIST, "mkdir %s", path);
    *s = '/';
  }
  FILE *f = fopen(path, "w");
  ck_assert_msg(f != NULL, "fopen %s", path);
  ck_assert_int_eq((int)fwrite(text, 1, strlen(text), f), (int)strlen(text));
  ck_assert_int_eq(fclose(f), 0);
}

void wkt_remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) wkt_remove_tree(path);
    else unlink(path);
  }
  closedir(d);
  rmdir(dir);
}
