/* dist_mpi_prog.c - dist.h in a real MPI world, run by test_dist_mpi.sh under
 * `mpirun -np 2`.
 *
 *   dist_mpi_prog check    sizes and ranks, sums of f32/f64/i64 (none, a few,
 *                          many: several MPI requests each with a small
 *                          $WHISKER_MPI_CHUNK), a broadcast from rank 1, and
 *                          iallreduces in flight on the grads channel while
 *                          the main channel reduces; prints "rank R ok".
 *   dist_mpi_prog timeout  rank 1 sleeps 30 s before its collective; rank 0
 *                          must fail by the deadline and abort the world.
 *
 * A failed check prints why and aborts the world (exit code 2). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist/dist.h"

static wk_dist *g_dist; /* for wkp_fail's abort; this program only */

static void wkp_fail(const char *what) {
  fprintf(stderr, "dist_mpi_prog: rank %d: FAILED: %s: %s\n", wk_dist_rank(g_dist), what,
          wk_last_error());
  wk_dist_abort(g_dist, 2);
  exit(2);
}

#define WKP_OK(expr) \
  do { if ((expr) != WK_OK) wkp_fail(#expr); } while (0)
#define WKP_CHECK(cond) \
  do { if (!(cond)) wkp_fail(#cond); } while (0)

/* rank r's share of element i: sums over 2 ranks to 3 + 2 * (i % 7) */
static double wkp_share(int r, size_t i) { return (double)(r + 1) + (double)(i % 7); }

static void wkp_sums(wk_dist *d, size_t n) {
  const int r = wk_dist_rank(d);
  float *f = malloc((n ? n : 1) * sizeof *f);
  double *g = malloc((n ? n : 1) * sizeof *g);
  int64_t *k = malloc((n ? n : 1) * sizeof *k);
  WKP_CHECK(f && g && k);
  for (size_t i = 0; i < n; i++) {
    f[i] = (float)wkp_share(r, i);
    g[i] = wkp_share(r, i) * 0.125;
    k[i] = ((int64_t)1 << 40) * (r + 1) + (int64_t)(i % 1000);
  }
  WKP_OK(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_F32, f, n, "f32 sum"));
  WKP_OK(wk_dist_allreduce_sum(d, WK_DIST_GRADS, WK_DIST_F64, g, n, "f64 sum"));
  WKP_OK(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_I64, k, n, "i64 sum"));
  for (size_t i = 0; i < n; i++) {
    WKP_CHECK(f[i] == (float)(3 + 2 * (i % 7)));
    WKP_CHECK(g[i] == (double)(3 + 2 * (i % 7)) * 0.125);
    WKP_CHECK(k[i] == ((int64_t)3 << 40) + 2 * (int64_t)(i % 1000));
  }
  free(f);
  free(g);
  free(k);
}

/* Several gradient buckets in flight while the main channel sums a metric. */
static void wkp_overlap(wk_dist *d) {
  enum { BUCKETS = 8 };
  const int r = wk_dist_rank(d);
  float *bucket[BUCKETS];
  size_t n[BUCKETS];
  int req[BUCKETS];
  for (int b = 0; b < BUCKETS; b++) {
    n[b] = (size_t)(b + 1) * 250001;
    bucket[b] = malloc(n[b] * sizeof(float));
    WKP_CHECK(bucket[b]);
    for (size_t i = 0; i < n[b]; i++) bucket[b][i] = (float)wkp_share(r, i) * (float)(b + 1);
    WKP_OK(wk_dist_iallreduce_f32(d, WK_DIST_GRADS, bucket[b], n[b], &req[b]));
  }
  double metric[2] = {r + 1.0, 10.0 * r};
  WKP_OK(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_F64, metric, 2, "metric"));
  WKP_CHECK(metric[0] == 3 && metric[1] == 10);
  bool done = false;
  WKP_OK(wk_dist_test(d, req[0], &done));
  for (int b = done ? 1 : 0; b < BUCKETS; b++) WKP_OK(wk_dist_wait(d, req[b], "bucket"));
  for (int b = 0; b < BUCKETS; b++) {
    for (size_t i = 0; i < n[b]; i++)
      WKP_CHECK(bucket[b][i] == (float)(3 + 2 * (i % 7)) * (float)(b + 1));
    free(bucket[b]);
  }
}

static int wkp_check(wk_dist *d) {
  const int r = wk_dist_rank(d);
  WKP_CHECK(wk_dist_size(d) == 2);
  WKP_CHECK(r == 0 || r == 1);
  WKP_CHECK(wk_dist_local_size(d) == 2);
  WKP_CHECK(strcmp(wk_dist_backend(d), "mpi") == 0);
  WKP_OK(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_F32, NULL, 0, "nothing"));
  wkp_sums(d, 0);
  wkp_sums(d, 5);
  wkp_sums(d, 3000017); /* many requests of $WHISKER_MPI_CHUNK elements */

  unsigned char msg[100001];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = r == 1 ? (unsigned char)(i * 31 + 7) : 0;
  WKP_OK(wk_dist_bcast(d, msg, sizeof msg, 1, "bcast"));
  for (size_t i = 0; i < sizeof msg; i++) WKP_CHECK(msg[i] == (unsigned char)(i * 31 + 7));
  WKP_OK(wk_dist_bcast(d, NULL, 0, 0, "empty bcast"));

  wkp_overlap(d);
  WKP_OK(wk_dist_barrier(d, "barrier"));
  printf("dist_mpi_prog: rank %d ok\n", r);
  return 0;
}

static int wkp_timeout(wk_dist *d) {
  float x = 1;
  if (wk_dist_rank(d) == 1) sleep(30);
  if (wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_F32, &x, 1, "the timeout test's sum") ==
      WK_OK) {
    fprintf(stderr, "dist_mpi_prog: rank %d: the sum did not time out\n", wk_dist_rank(d));
    return 1;
  }
  fprintf(stderr, "whisker: %s\n", wk_last_error());
  wk_dist_abort(d, 3);
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "check") != 0 && strcmp(argv[1], "timeout") != 0 &&
                    strcmp(argv[1], "close") != 0)) {
    fprintf(stderr, "usage: dist_mpi_prog check|timeout|close\n");
    return 1;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  const wk_dist_opts o = wk_dist_opts_default();
  if (wk_dist_open(&o, &g_dist) != WK_OK) {
    fprintf(stderr, "dist_mpi_prog: %s\n", wk_last_error());
    return 1;
  }
  /* close: rank 1 reaches the end 30 s late (a hung last write); rank 0's
   * close must not wait in MPI_Finalize for ever */
  if (strcmp(argv[1], "close") == 0 && wk_dist_rank(g_dist) == 1) sleep(30);
  const int rc = strcmp(argv[1], "close") == 0   ? 0
                 : strcmp(argv[1], "check") == 0 ? wkp_check(g_dist)
                                                 : wkp_timeout(g_dist);
  wk_dist_close(g_dist);
  return rc;
}
