/* test_insn.h - work counted, not timed: the instructions a test's code
 * retires in user space, from the CPU's counter (perf_event_open), a measure
 * that does not depend on the machine's load or speed. Where the kernel or
 * the virtual machine has no counter to give, the helpers say so on stderr
 * and the caller checks nothing. Failures fail the running test. */
#ifndef WK_TEST_INSN_H
#define WK_TEST_INSN_H

#include <stdbool.h>

/* A counter for this thread, or -1 (said so, naming `test`) where there is
 * none. Close it with close(). */
int wkt_insn_open_for(const char *test);
void wkt_insn_start(int fd);
/* The instructions retired since wkt_insn_start. */
long long wkt_insn_stop(int fd);

/* Whether the counter counts (a virtual machine may give one that never does);
 * says so when not. */
bool wkt_insn_counts(const char *test, long long n);

/* Fails `what` unless insn[1] (work at size sizes[1], 8 times sizes[0]) is
 * under 20 times insn[0]: 8 times the size should cost about 8 times the
 * instructions (n log n: 10 or 11), where a quadratic step costs 40-64 times.
 * False (nothing checked, said so) where the counter does not count. */
bool wkt_expect_linear(const char *test, const char *what, const int sizes[2],
                       const long long insn[2]);

#endif
