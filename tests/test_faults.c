/* test_faults.c - failures from the system rather than the input:
 *   - a checkpoint write that fails half-way (the file size limit, so write()
 *     returns EFBIG) is reported naming the file, and the previous checkpoint
 *     stays whole and loadable, with no temporary file left behind;
 *   - an allocation the system refuses (an address-space limit) is a status
 *     with a message, never a crash.
 * Each fault is set up in a forked child, so the limits never touch the test
 * process; the child reports its status and message through a pipe. */
#define _GNU_SOURCE /* the ASan check below; nothing else */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image/image.h"
#include "modelio/model.h"
#include "nn/zoo.h"
#include "test_fs.h"
#include "test_util.h"
#include "train/trainer.h"

#if defined(__SANITIZE_ADDRESS__)
#define WKT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WKT_ASAN 1
#endif
#endif

/* What a child reports: its status and wk_last_error(). */
typedef struct wkt_report {
  wk_status status;
  char message[512];
} wkt_report;

/* Runs fn(arg) in a child and returns its report; fails the test if the
 * child dies (a crash is exactly what must not happen). */
static wkt_report wkt_in_child(wk_status (*fn)(void *), void *arg) {
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    wkt_report r = {.status = fn(arg)};
    snprintf(r.message, sizeof r.message, "%s", wk_last_error());
    ssize_t n = write(fds[1], &r, sizeof r);
    _exit(n == (ssize_t)sizeof r ? 0 : 3);
  }
  close(fds[1]);
  wkt_report r;
  memset(&r, 0, sizeof r);
  ssize_t n = read(fds[0], &r, sizeof r);
  close(fds[0]);
  int st = 0;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child died (status 0x%x)", st);
  ck_assert_int_eq(n, (ssize_t)sizeof r);
  return r;
}

static int wkt_count_temps(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
  closedir(d);
  return n;
}

/* ---------------------------------------------------------------- checkpoints */
typedef struct wkt_ckpt_job {
  const char *path;
  int64_t epoch;      /* the data position saved */
  rlim_t fsize_limit; /* 0: none */
} wkt_ckpt_job;

/* Builds a small trainer (smallcnn, 3 classes, 16 px, one SGD step) and saves
 * a checkpoint, under the file size limit when one is given. SIGXFSZ is
 * ignored, so a write past the limit fails with EFBIG instead of killing. */
static wk_status wkt_save_checkpoint(void *arg) {
  const wkt_ckpt_job *job = arg;
  wk_ctx *ctx;
  WK_TRY(wk_ctx_create(&ctx, 1));
  wk_arch_opts ao = wk_arch_opts_default(3);
  ao.in_h = ao.in_w = 16;
  wk_net *net = NULL;
  wk_trainer *t = NULL;
  wk_model_meta meta = {0};
  wk_train_config cfg = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                         .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 4),
                         .seed = 5};
  wk_status s = wk_zoo_build(ctx, "smallcnn", &ao, 1, &net);
  if (s == WK_OK) s = wk_model_meta_init(&meta, "smallcnn", 3, 16);
  if (s == WK_OK) s = wk_trainer_create(net, &cfg, &t);
  if (s == WK_OK && job->fsize_limit) {
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = job->fsize_limit;
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) s = wk_fail(WK_ERR_IO, "setrlimit failed");
  }
  const wk_data_pos pos = {.epoch = job->epoch, .batch = 0};
  if (s == WK_OK) s = wk_checkpoint_save(job->path, t, &meta, &pos);
  wk_trainer_destroy(t);
  wk_net_destroy(net);
  wk_model_meta_free(&meta);
  wk_ctx_destroy(ctx);
  return s;
}

START_TEST(test_checkpoint_write_fails_half_way) {
  char *dir = wkt_tempdir(), *path = wkt_join(dir, "checkpoint.safetensors", NULL);
  wkt_ckpt_job job = {.path = path, .epoch = 1};
  wkt_report r = wkt_in_child(wkt_save_checkpoint, &job);
  ck_assert_msg(r.status == WK_OK, "%s", r.message);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  size_t n_old;
  uint8_t *old = wkt_read_file(path, &n_old);
  ck_assert_int_gt(n_old, 8192);

  /* the second save stops at half the file's size */
  job.epoch = 2;
  job.fsize_limit = (rlim_t)n_old / 2;
  r = wkt_in_child(wkt_save_checkpoint, &job);
  ck_assert_int_eq(r.status, WK_ERR_IO);
  ck_assert_msg(strstr(r.message, path) != NULL, "the message does not name %s: %s", path,
                r.message);
  ck_assert_msg(strstr(r.message, "File too large") != NULL, "%s", r.message);

  /* the previous checkpoint is intact, loads, and is the epoch-1 one */
  size_t n_now;
  uint8_t *now = wkt_read_file(path, &n_now);
  ck_assert_int_eq(n_now, n_old);
  ck_assert_mem_eq(now, old, n_old);
  ck_assert_int_eq(wkt_count_temps(dir), 0);
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net;
  wk_trainer *t;
  wk_model_meta meta;
  wk_data_pos pos;
  WKT_OK(wk_checkpoint_load(ctx, path, &net, &t, &meta, &pos));
  ck_assert_int_eq(pos.epoch, 1);
  wk_trainer_destroy(t);
  wk_net_destroy(net);
  wk_model_meta_free(&meta);
  wk_ctx_destroy(ctx);

  /* without the limit the save goes through */
  job.fsize_limit = 0;
  r = wkt_in_child(wkt_save_checkpoint, &job);
  ck_assert_msg(r.status == WK_OK, "%s", r.message);
  free(old);
  free(now);
  free(path);
  wkt_rmtree(dir);
  free(dir);
}
END_TEST

/* ---------------------------------------------------------------- allocations */
/* Under a 1 GiB address-space limit, allocations of several GB fail; each
 * must come back as WK_ERR_NOMEM with a message. */
static wk_status wkt_alloc_under_limit(void *arg) {
  (void)arg;
  struct rlimit rl = {.rlim_cur = (rlim_t)1 << 30, .rlim_max = (rlim_t)1 << 30};
  struct rlimit cur;
  getrlimit(RLIMIT_AS, &cur);
  if (cur.rlim_max != RLIM_INFINITY && cur.rlim_max < rl.rlim_max) rl = cur;
  if (setrlimit(RLIMIT_AS, &rl) != 0) return wk_fail(WK_ERR_IO, "setrlimit failed");
  wk_image img = {0};
  wk_status s = wk_image_alloc(&img, 40000, 40000); /* 4.8 GB */
  if (s != WK_ERR_NOMEM) return s == WK_OK ? wk_fail(WK_ERR_IO, "image: allocated") : s;
  if (!strstr(wk_last_error(), "40000 x 40000")) return wk_fail(WK_ERR_IO, "image: no size");
  wk_tensor t;
  const int64_t shape[2] = {40000, 40000}; /* 6.4 GB of floats */
  s = wk_tensor_alloc(&t, WK_F32, 2, shape);
  if (s == WK_OK) {
    wk_tensor_free(&t);
    return wk_fail(WK_ERR_IO, "tensor: allocated");
  }
  return s;
}

START_TEST(test_failed_allocations_are_errors) {
#ifdef WKT_ASAN
  /* ASan reserves terabytes of shadow memory: an address-space limit breaks it */
  fprintf(stderr, "test_failed_allocations_are_errors: skipped under AddressSanitizer\n");
  return;
#endif
  wkt_report r = wkt_in_child(wkt_alloc_under_limit, NULL);
  ck_assert_msg(r.status == WK_ERR_NOMEM, "%s: %s", wk_status_name(r.status), r.message);
  ck_assert_msg(r.message[0] != '\0', "no message");
}
END_TEST

int main(void) {
  Suite *s = suite_create("faults");
  TCase *tc = tcase_create("faults");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_checkpoint_write_fails_half_way);
  tcase_add_test(tc, test_failed_allocations_are_errors);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
