#!/usr/bin/env python3
"""ncu_summary.py - where a GPU run's time went, per kernel, from Nsight Compute's CSV.

    ncu --csv --metrics gpu__time_duration.sum [--launch-count N] PROGRAM ... > run.csv
    python3 scripts/ncu_summary.py run.csv [--top 25] [--title TEXT]

Reads the rows of the metric gpu__time_duration.sum (ncu prints the program's own output
first; lines that are not CSV rows of that header are skipped), sums the durations per
kernel (its name up to the argument list, so template instances stay apart and overloads
by argument do not), and prints a Markdown table: milliseconds, share of the total, calls,
name, biggest first. scripts/gpu_check.sh's profile phase runs it on the device; its own
test is tests/test_ncu_summary.sh. Exit 1 with a message when the file has no such rows.
Standard library only: it runs under whatever python3 the GPU machine has.
"""
import argparse
import collections
import csv
import sys


def kernel_key(name):
    """The kernel's name without its parameter list ("f<T>(int, float)" -> "f<T>")."""
    depth = 0
    for i, ch in enumerate(name):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(depth - 1, 0)
        elif ch == "(" and depth == 0 and i > 0:
            return name[:i]
    return name


def read_durations(path):
    """(kernel key, nanoseconds) for every gpu__time_duration.sum row of the CSV."""
    rows = []
    header = None
    with open(path, newline="", errors="replace") as f:
        for rec in csv.reader(f):
            if header is None:
                if "Kernel Name" in rec and "Metric Value" in rec:
                    header = rec
                continue
            if len(rec) != len(header):
                continue  # the program's own output after the header, or a cut line
            r = dict(zip(header, rec))
            if r.get("Metric Name") != "gpu__time_duration.sum":
                continue
            unit = r.get("Metric Unit", "ns")
            try:
                v = float(r["Metric Value"].replace(",", ""))
            except ValueError:
                continue
            scale = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6,
                     "msecond": 1e6, "s": 1e9, "second": 1e9}.get(unit)
            if scale is None:
                raise SystemExit(f"ncu_summary: {path}: unknown time unit '{unit}'")
            rows.append((kernel_key(r["Kernel Name"]), v * scale))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    rows = read_durations(a.csv)
    if not rows:
        sys.exit(f"ncu_summary: {a.csv}: no gpu__time_duration.sum rows (was ncu run with "
                 "--csv --metrics gpu__time_duration.sum?)")
    total = collections.defaultdict(float)
    calls = collections.Counter()
    for k, v in rows:
        total[k] += v
        calls[k] += 1
    t = sum(total.values())
    title = f"{a.title}: " if a.title else ""
    print(f"{title}{len(rows)} kernels, {t / 1e6:.1f} ms of GPU time\n")
    print("| ms | share | calls | kernel |")
    print("|---:|---:|---:|---|")
    for k, v in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:a.top]:
        print(f"| {v / 1e6:.2f} | {100 * v / t:.1f}% | {calls[k]} | `{k}` |")


if __name__ == "__main__":
    main()
