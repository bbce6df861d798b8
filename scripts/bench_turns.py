#!/usr/bin/python3
"""bench_turns.py - two forward-pass programs timed in turns on the same machine.

  bench_turns.py TURNS RUNS A_CMD... -- B_CMD...

Both programs are started at once and warmed up; then they take the machine in
turns, RUNS timed forwards each (after 2 untimed ones), TURNS times each, the
first of a pair alternating, so the two see the same machine: this 2-core one's
speed swings by half over seconds, which timing one whole program after the
other turns into a bias either way. Each program speaks the protocol of
`wk_bench_infer --turns` (tools/bench_infer.c) and `tools/ort/bench.js ...
turns`: "ready BATCH" when warm, then for each line N from stdin the N times in
ms on one line; EOF ends it.

Prints for each program a line "NAME BATCH MEDIAN_MS MIN_MS IMAGES_PER_S" over
all its timed forwards (the format of wk_bench_infer), then

  ratio R (turns: LO-HI, quartiles Q1-Q3, A faster in K of TURNS)

where R is the median over the turn pairs of B's median over A's, paired by
the moment they ran (> 1: A is faster). A program that stops answering for
TIMEOUT seconds (default 120; $BENCH_TURNS_TIMEOUT) ends the run with an error.

Before each turn the machine is left idle for GAP seconds (default 0.1;
$BENCH_TURNS_GAP): a thread pool spins for a while after its work (ONNX
Runtime's used 40 ms of CPU in the 50 ms after a turn, whisker's under 10), and
that spinning would slow the other program's turn.
"""
import os
import select
import statistics
import subprocess
import sys
import time


PROGS = []


def die(msg):
    """Ends the run: the programs are killed (one may hang), the message printed."""
    for prog in PROGS:
        if prog.p.poll() is None:
            prog.p.kill()
            prog.p.wait()
    sys.exit("bench_turns: " + msg)


class Prog:
    """One program of the pair: a child with pipes and a line reader with a deadline."""

    def __init__(self, cmd, timeout):
        self.cmd, self.timeout, self.buf = cmd, timeout, b""
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.times = []
        PROGS.append(self)

    def line(self):
        deadline = time.monotonic() + self.timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                die(f"{self.cmd[0]} gave no answer for {self.timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                rc = self.p.wait()
                die(f"{self.cmd[0]} ended (exit {rc}) before answering")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def ready(self):
        words = self.line().split()
        if len(words) != 2 or words[0] != "ready":
            die(f"{self.cmd[0]}: expected 'ready BATCH', got {' '.join(words)!r}")
        self.batch = int(words[1])

    def turn(self, runs, gap):
        time.sleep(gap)
        try:
            self.p.stdin.write(b"%d\n" % runs)
            self.p.stdin.flush()
        except BrokenPipeError:
            die(f"{self.cmd[0]} ended (exit {self.p.wait()}) before its turn")
        try:
            t = [float(x) for x in self.line().split()]
        except ValueError:
            die(f"{self.cmd[0]}: a turn's answer is not a list of times")
        if len(t) != runs:
            die(f"{self.cmd[0]}: asked for {runs} times, got {len(t)}")
        self.times += t
        return statistics.median(t)

    def close(self):
        self.p.stdin.close()
        try:
            rc = self.p.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            die(f"{self.cmd[0]} did not end within {self.timeout} s of its input's end")
        if rc != 0:
            die(f"{self.cmd[0]} exited {rc}")


def quartiles(v):
    v = sorted(v)
    q = lambda f: v[min(len(v) - 1, int(f * (len(v) - 1) + 0.5))]
    return q(0.25), q(0.75)


def main(argv):
    if len(argv) < 6 or "--" not in argv[3:]:
        sys.exit(__doc__.split("\n\n")[1])
    turns, runs = int(argv[1]), int(argv[2])
    if turns < 1 or runs < 1:
        sys.exit("bench_turns: TURNS and RUNS must be at least 1")
    cut = argv.index("--", 3)
    timeout = float(os.environ.get("BENCH_TURNS_TIMEOUT", "120"))
    gap = float(os.environ.get("BENCH_TURNS_GAP", "0.1"))
    a, b = Prog(argv[3:cut], timeout), Prog(argv[cut + 1:], timeout)
    # warm up one at a time: both at once would time nothing but would share the cores
    a.ready()
    b.ready()
    if a.batch != b.batch:
        die(f"batch {a.batch} against {b.batch}")
    ratios = []
    for k in range(turns):
        if k % 2 == 0:
            ma = a.turn(runs, gap)
            mb = b.turn(runs, gap)
        else:
            mb = b.turn(runs, gap)
            ma = a.turn(runs, gap)
        ratios.append(mb / ma)
    a.close()
    b.close()
    for prog, name in ((a, os.path.basename(a.cmd[0])), (b, os.path.basename(b.cmd[0]))):
        med = statistics.median(prog.times)
        print(f"{name}\t{prog.batch}\t{med:.3f}\t{min(prog.times):.3f}\t{prog.batch * 1e3 / med:.1f}")
    q1, q3 = quartiles(ratios)
    print(f"ratio {statistics.median(ratios):.3f} (turns: {min(ratios):.2f}-{max(ratios):.2f}, "
          f"quartiles {q1:.2f}-{q3:.2f}, A faster in {sum(r > 1 for r in ratios)} of {turns})")


if __name__ == "__main__":
    main(sys.argv)
