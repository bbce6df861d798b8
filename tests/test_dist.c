/* test_dist.c - dist.h without a launcher: the world of one rank, the
 * detection of a launcher's environment, $WHISKER_DIST_TIMEOUT, and the
 * failures of opening an MPI world that cannot be (no MPI is ever started
 * here: a forked Check test must not). The MPI world itself is tested by
 * test_dist_mpi.sh under mpirun. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist/dist.h"
#include "nn/zoo.h"
#include "train/ddp.h"
#include "test_util.h"

static const char *const wkt_launcher_vars[] = {
    "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS",
    "SLURM_NTASKS"};

static void wkt_unset_launcher(void) {
  for (size_t i = 0; i < sizeof wkt_launcher_vars / sizeof *wkt_launcher_vars; i++)
    unsetenv(wkt_launcher_vars[i]);
}

static wk_dist *wkt_world_of_one(void) {
  wkt_unset_launcher();
  unsetenv("WHISKER_DIST_TIMEOUT");
  const wk_dist_opts o = wk_dist_opts_default();
  wk_dist *d = NULL;
  WKT_OK(wk_dist_open(&o, &d));
  ck_assert_ptr_nonnull(d);
  return d;
}

START_TEST(test_world_of_one) {
  wk_dist *d = wkt_world_of_one();
  ck_assert_int_eq(wk_dist_rank(d), 0);
  ck_assert_int_eq(wk_dist_size(d), 1);
  ck_assert_int_eq(wk_dist_local_size(d), 1);
  ck_assert_str_eq(wk_dist_backend(d), "none");
  ck_assert_int_eq(wk_dist_rank(NULL), 0);
  ck_assert_int_eq(wk_dist_size(NULL), 1);
  ck_assert_int_eq(wk_dist_local_size(NULL), 1);
  ck_assert_str_eq(wk_dist_backend(NULL), "none");

  float f[5] = {1.5f, -2, 3, 0, 7};
  double g[3] = {1e300, -1, 0.25};
  int64_t k[2] = {INT64_MAX, -7};
  WKT_OK(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_F32, f, 5, "f32"));
  WKT_OK(wk_dist_allreduce_sum(d, WK_DIST_GRADS, WK_DIST_F64, g, 3, "f64"));
  WKT_OK(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_I64, k, 2, "i64"));
  WKT_OK(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_F32, NULL, 0, "empty"));
  ck_assert(f[0] == 1.5f && f[1] == -2 && f[4] == 7);
  ck_assert(g[0] == 1e300 && g[2] == 0.25);
  ck_assert(k[0] == INT64_MAX && k[1] == -7);

  unsigned char bytes[4] = {1, 2, 3, 4};
  WKT_OK(wk_dist_bcast(d, bytes, sizeof bytes, 0, "bcast"));
  ck_assert(bytes[0] == 1 && bytes[3] == 4);
  ck_assert_int_eq(wk_dist_bcast(d, bytes, sizeof bytes, 1, "bcast"), WK_ERR_INVALID_ARG);
  WKT_OK(wk_dist_barrier(d, "barrier"));

  int req[WK_DIST_MAX_PENDING];
  for (int i = 0; i < WK_DIST_MAX_PENDING; i++)
    WKT_OK(wk_dist_iallreduce_f32(d, WK_DIST_GRADS, f, 5, &req[i]));
  int extra;
  ck_assert_int_eq(wk_dist_iallreduce_f32(d, WK_DIST_GRADS, f, 5, &extra), WK_ERR_LIMIT);
  bool done = false;
  WKT_OK(wk_dist_test(d, req[0], &done));
  ck_assert(done);
  ck_assert_int_eq(wk_dist_wait(d, req[0], "freed"), WK_ERR_INVALID_ARG);
  for (int i = 1; i < WK_DIST_MAX_PENDING; i++) WKT_OK(wk_dist_wait(d, req[i], "grads"));
  ck_assert(f[0] == 1.5f && f[1] == -2 && f[2] == 3 && f[3] == 0 && f[4] == 7);
  ck_assert_int_eq(wk_dist_wait(d, -1, "x"), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_dist_wait(d, WK_DIST_MAX_PENDING, "x"), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_dist_allreduce_sum(d, (wk_dist_channel)2, WK_DIST_F32, f, 5, "x"),
                   WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_F32, NULL, 5, "x"),
                   WK_ERR_INVALID_ARG);

  wk_dist_abort(d, 3); /* returns in a world of one */
  wk_dist_close(d);
  wk_dist_close(NULL);
}
END_TEST

/* Gradient buckets: about bucket_bytes each, but never more than
 * WK_DDP_MAX_BUCKETS (resnet18's 62 parameters in 1-byte buckets would be 62
 * requests; mobilenetv2's 158 would pass the cap), so a tiny --bucket-mb
 * cannot put more requests in flight than dist.h allows. */
START_TEST(test_bucket_count_capped) {
  wk_dist *d = wkt_world_of_one();
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts ao = wk_arch_opts_default(2);
  ao.in_h = ao.in_w = 32;
  wk_net *net;
  WKT_OK(wk_zoo_build(ctx, "mobilenetv2", &ao, 1, &net));
  size_t np;
  wk_net_params(net, &np);
  ck_assert_int_gt((int)np, WK_DDP_MAX_BUCKETS);
  const size_t sizes[3] = {1, (size_t)25 << 20, 0};
  for (int k = 0; k < 3; k++) {
    const wk_ddp_opts o = {.bucket_bytes = sizes[k]};
    wk_ddp *p = NULL;
    WKT_OK(wk_ddp_create(d, net, &o, &p));
    const int n = wk_ddp_n_buckets(p);
    ck_assert_msg(n >= 1 && n <= WK_DDP_MAX_BUCKETS, "%zu bytes: %d buckets", sizes[k], n);
    if (k == 0) ck_assert_int_ge(n, 8); /* still several: the floor of size n / cap, not 1 */
    if (k > 0) ck_assert_int_eq(n, 1); /* 2.3M parameters in one 25 MB bucket */
    wk_ddp_destroy(p);
  }
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  wk_dist_close(d);
}
END_TEST

START_TEST(test_launcher_detection) {
  wkt_unset_launcher();
  ck_assert(!wk_dist_launched());
  setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
  ck_assert(!wk_dist_launched());
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  ck_assert(wk_dist_launched());
  setenv("OMPI_COMM_WORLD_SIZE", "two", 1);
  ck_assert(!wk_dist_launched());
  wkt_unset_launcher();
  setenv("PMI_SIZE", "4", 1);
  ck_assert(wk_dist_launched());
  setenv("PMI_SIZE", "1", 1);
  ck_assert(!wk_dist_launched());
  wkt_unset_launcher();
  setenv("PMIX_RANK", "0", 1);
  ck_assert(!wk_dist_launched()); /* a rank, but no size */
  setenv("SLURM_NTASKS", "1", 1);
  ck_assert(!wk_dist_launched());
  setenv("SLURM_NTASKS", "8", 1);
  ck_assert(wk_dist_launched());
  unsetenv("SLURM_NTASKS");
  setenv("SLURM_STEP_NUM_TASKS", "2", 1);
  ck_assert(wk_dist_launched());
  unsetenv("SLURM_STEP_NUM_TASKS");
  setenv("PMIX_SIZE", "3", 1);
  ck_assert(wk_dist_launched());
  wkt_unset_launcher();
  ck_assert(!wk_dist_launched());
}
END_TEST

START_TEST(test_timeout_from_environment) {
  wkt_unset_launcher();
  const char *bad[] = {"", "abc", "0", "-5", "1e400", "nan", "inf", "3s", "1e9"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    setenv("WHISKER_DIST_TIMEOUT", bad[i], 1);
    wk_dist *d = (wk_dist *)1;
    const wk_status s = wk_dist_open(NULL, &d);
    if (bad[i][0] == '\0') { /* empty: the default */
      ck_assert_int_eq(s, WK_OK);
      wk_dist_close(d);
      continue;
    }
    ck_assert_msg(s == WK_ERR_INVALID_ARG, "'%s' accepted", bad[i]);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(wk_last_error(), "WHISKER_DIST_TIMEOUT") != NULL, "%s", wk_last_error());
  }
  setenv("WHISKER_DIST_TIMEOUT", "2.5", 1);
  wk_dist *d = NULL;
  WKT_OK(wk_dist_open(NULL, &d));
  wk_dist_close(d);
  /* an explicit timeout wins, and the variable is not even read */
  setenv("WHISKER_DIST_TIMEOUT", "abc", 1);
  const wk_dist_opts o = {.timeout_s = 10};
  WKT_OK(wk_dist_open(&o, &d));
  wk_dist_close(d);
  unsetenv("WHISKER_DIST_TIMEOUT");
}
END_TEST

/* Under a (faked) launcher, a plugin that cannot be loaded is an error that
 * says which and why; a build without MPI says so. */
START_TEST(test_launched_without_a_plugin) {
  wkt_unset_launcher();
  unsetenv("WHISKER_DIST_TIMEOUT");
  char path[] = "/tmp/wk_test_dist_XXXXXX";
  const int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, "not a library\n", 14), 14);
  close(fd);
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  setenv("WHISKER_MPI_PLUGIN", path, 1);
  wk_dist *d = (wk_dist *)1;
  wk_status s = wk_dist_open(NULL, &d);
  ck_assert_int_eq(s, WK_ERR_UNSUPPORTED);
  ck_assert_ptr_null(d);
#if WK_DIST_HAVE_MPI
  ck_assert_msg(strstr(wk_last_error(), "libwhisker-mpi.so could not be loaded") != NULL &&
                    strstr(wk_last_error(), path) != NULL,
                "%s", wk_last_error());
  /* a real library, but not the plugin */
  setenv("WHISKER_MPI_PLUGIN", "libm.so.6", 1);
  s = wk_dist_open(NULL, &d);
  ck_assert_int_eq(s, WK_ERR_UNSUPPORTED);
  ck_assert_msg(strstr(wk_last_error(), "libm.so.6: not a whisker MPI plugin") != NULL, "%s",
                wk_last_error());
#else
  ck_assert_msg(strstr(wk_last_error(), "built without MPI") != NULL, "%s", wk_last_error());
#endif
  unlink(path);
  unsetenv("WHISKER_MPI_PLUGIN");
  wkt_unset_launcher();
}
END_TEST

int main(void) {
  Suite *s = suite_create("dist");
  TCase *tc = tcase_create("dist");
  tcase_add_test(tc, test_world_of_one);
  tcase_add_test(tc, test_bucket_count_capped);
  tcase_add_test(tc, test_launcher_detection);
  tcase_add_test(tc, test_timeout_from_environment);
  tcase_add_test(tc, test_launched_without_a_plugin);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
