/* test_insn.c - see test_insn.h. */
#define _GNU_SOURCE /* syscall: perf_event_open has no wrapper in glibc */
#include "test_insn.h"

#include <check.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int wkt_insn_open_for(const char *test) {
  struct perf_event_attr a;
  memset(&a, 0, sizeof a);
  a.size = sizeof a;
  a.type = PERF_TYPE_HARDWARE;
  a.config = PERF_COUNT_HW_INSTRUCTIONS;
  a.disabled = 1;
  a.exclude_kernel = 1;
  a.exclude_hv = 1;
  const int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
  if (fd < 0)
    fprintf(stderr, "%s: no instruction counter (%s): not checked\n", test, strerror(errno));
  return fd;
}

void wkt_insn_start(int fd) {
  ioctl(fd, PERF_EVENT_IOC_RESET, 0);
  ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
}

long long wkt_insn_stop(int fd) {
  long long n = -1;
  ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
  ck_assert_int_eq(read(fd, &n, sizeof n), (ssize_t)sizeof n);
  return n;
}

bool wkt_insn_counts(const char *test, long long n) {
  if (n > 0) return true;
  fprintf(stderr, "%s: the instruction counter reads %lld: not checked\n", test, n);
  return false;
}

bool wkt_expect_linear(const char *test, const char *what, const int sizes[2],
                       const long long insn[2]) {
  if (!wkt_insn_counts(test, insn[0])) return false;
  const double ratio = (double)insn[1] / (double)insn[0];
  ck_assert_msg(ratio < 20.0, "%s: %lld instructions at size %d, %lld at size %d (%.1f times)",
                what, insn[0], sizes[0], insn[1], sizes[1], ratio);
  return true;
}
