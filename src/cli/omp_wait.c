/* omp_wait.c - libwhisker-omp-wait.so: how long OpenMP's idle threads spin
 * before they sleep, set for the programs that link it, before libgomp starts.
 *
 * oneDNN's primitives and whisker's CPU kernels run on libgomp's threads.
 * After each parallel region libgomp's default keeps them spinning some
 * 300,000 rounds (milliseconds) in case another region comes. On a machine
 * where another program keeps a core busy, those spinning threads take the
 * time slices the thread still working needs, and every region waits for
 * that straggler. On 2 cores beside one busy process, 3,000 rounds instead
 * made `whisker classify` of 1,000 photos 1.9x as fast, training 1.4x and
 * batch-1 latency 3.7x lower; on the idle machine all three stayed within
 * 2% (scripts/bench_omp_wait.sh, docs/benchmarks.md). A short spin keeps
 * what spinning gains between back-to-back regions (passive waiting, none,
 * doubled the idle latency) and gives a busy machine's cores back at once.
 *
 * libgomp reads its environment once, in its constructor. This library's
 * constructor must run before that one, and after glibc's own (which resets
 * the environment to the one the kernel gave: a program's .preinit_array is
 * too early). glibc runs the constructors of libraries that do not depend on
 * each other in the reverse of the order it loaded them, so a program names
 * this library after libgomp and after oneDNN, which depends on libgomp
 * (CMakeLists.txt: wk_omp_wait()); test_cli checks
 * through OMP_DISPLAY_ENV that libgomp saw the setting. A user's own
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone. Child processes inherit
 * the setting, as they would the user's. */
#include "cli/omp_wait.h"

#include <stdlib.h>

static const char *wk_omp_wait_set; /* what this library set, or NULL */

__attribute__((constructor)) static void wk_omp_wait_init(void) {
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", WK_GOMP_SPINCOUNT, 0) == 0)
    wk_omp_wait_set = "GOMP_SPINCOUNT=" WK_GOMP_SPINCOUNT;
}

const char *wk_omp_wait_policy(void) { return wk_omp_wait_set; }
