/* test_cli.c - the whisker program as a user meets it: exit codes, where output
 * goes, and messages for mistakes. Runs the built binary (WHISKER_BIN). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test_util.h"

typedef struct {
  int code;
  char out[8192];
  char err[8192];
} run_result;

static void slurp(const char *path, char *buf, size_t n) {
  FILE *f = fopen(path, "r");
  ck_assert_msg(f != NULL, "cannot read %s", path);
  size_t got = fread(buf, 1, n - 1, f);
  buf[got] = '\0';
  fclose(f);
}

static run_result run(const char *args) {
  const char *bin = getenv("WHISKER_BIN");
  ck_assert_msg(bin && *bin, "WHISKER_BIN is not set (run through ctest)");
  char out_path[] = "/tmp/wk_cli_out_XXXXXX", err_path[] = "/tmp/wk_cli_err_XXXXXX";
  int fo = mkstemp(out_path), fe = mkstemp(err_path);
  ck_assert(fo >= 0 && fe >= 0);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' %s >%s 2>%s </dev/null", bin, args, out_path, err_path);
  int st = system(cmd);
  run_result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  slurp(out_path, r.out, sizeof r.out);
  slurp(err_path, r.err, sizeof r.err);
  remove(out_path), remove(err_path);
  return r;
}

START_TEST(test_version_and_help) {
  run_result r = run("--version");
  ck_assert_int_eq(r.code, 0);
  ck_assert_msg(!strncmp(r.out, "whisker ", 8), "stdout: %s", r.out);
  r = run("--help");
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: whisker"));
  ck_assert_ptr_nonnull(strstr(r.out, "system"));
  ck_assert_str_eq(r.err, "");
}
END_TEST

START_TEST(test_usage_errors_exit_2) {
  run_result r = run("");
  ck_assert_int_eq(r.code, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "usage: whisker"));
  r = run("frobnicate");
  ck_assert_int_eq(r.code, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "'frobnicate' is not a whisker command"));
  ck_assert_str_eq(r.out, "");
  r = run("system --bogus");
  ck_assert_int_eq(r.code, 2);
}
END_TEST

START_TEST(test_system_reports_backends) {
  run_result r = run("system");
  ck_assert_int_eq(r.code, 0);
  ck_assert_msg(strstr(r.out, "cpu: oneDNN") != NULL, "stdout: %s", r.out);
  ck_assert_msg(strstr(r.out, "CUDA") != NULL, "stdout: %s", r.out);
  r = run("system --help");
  ck_assert_int_eq(r.code, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: whisker system"));
}
END_TEST

START_TEST(test_bad_environment_is_a_failure_not_a_crash) {
  run_result r = run("system");
  setenv("WHISKER_IMPL", "turbo", 1);
  r = run("system");
  unsetenv("WHISKER_IMPL");
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "WHISKER_IMPL") != NULL, "stderr: %s", r.err);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("cli");
  tcase_add_test(tc, test_version_and_help);
  tcase_add_test(tc, test_usage_errors_exit_2);
  tcase_add_test(tc, test_system_reports_backends);
  tcase_add_test(tc, test_bad_environment_is_a_failure_not_a_crash);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
