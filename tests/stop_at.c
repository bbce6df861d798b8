/* stop_at.c - a test shim, loaded with LD_PRELOAD, that stops the process
 * (SIGSTOP) right after it first renames a file called $WKT_STOP_AT into
 * place. whisker writes checkpoints atomically (a temporary file renamed over
 * the old one), so with WKT_STOP_AT=checkpoint.safetensors a training run
 * halts at its first checkpoint, whole on disk, however fast the machine is.
 * The tests that kill or interrupt a run mid-way (tests/stop_lib.sh) do so
 * there instead of racing the run to it. Only rename() is wrapped; without
 * WKT_STOP_AT it passes every call through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*rename_fn)(const char *, const char *);

int rename(const char *from, const char *to) {
  static rename_fn real;
  static int stopped;
  if (!real) real = (rename_fn)dlsym(RTLD_NEXT, "rename");
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  int rc = real(from, to);
  const char *want = getenv("WKT_STOP_AT");
  if (rc != 0 || !want || !*want || !to) return rc;
  const char *base = strrchr(to, '/');
  base = base ? base + 1 : to;
  if (strcmp(base, want) == 0 && !__atomic_exchange_n(&stopped, 1, __ATOMIC_SEQ_CST))
    raise(SIGSTOP);
  return rc;
}
