#!/usr/bin/env python3
"""ddp_same.py [--cap C] [--metrics] ONE NOISE RUN

Whether the data-parallel run RUN ended where the single-process run ONE did
(tests/test_dist_train.sh, scripts/mpich_check.sh): the weights in their
checkpoints (the weights they ENDED with, optimizer state left out; not
model.safetensors, the best epoch by validation accuracy, which two runs
within float noise of each other can pick differently) within 3x the
engine's own noise floor and 1e-4 anyway, and below C (default 1e-3). The
noise floor is ONE against NOISE, the same single-process run with 2 threads
instead of 1: oneDNN sums a batch in another order than two halves of it, so
the runs cannot agree bit for bit. Distances are st_compare.py's global
relative L2. With --metrics, metrics.csv too: the same two epochs,
accuracies and rates, losses within 1e-3. Prints the figures; exits 1 naming
what differs. Needs numpy."""
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_compare  # noqa: E402


def weights(run):
    return st_compare.load(os.path.join(run, "checkpoint.safetensors"))


def main(argv):
    cap, metrics, runs = 1e-3, False, []
    i = 0
    while i < len(argv):
        if argv[i] == "--cap":
            cap = float(argv[i + 1]); i += 2
        elif argv[i] == "--metrics":
            metrics = True; i += 1
        else:
            runs.append(argv[i]); i += 1
    if len(runs) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    one = weights(runs[0])
    _, _, floor, p1 = st_compare.compare(one, weights(runs[1]), ("optim.",))
    worst, worst_name, d, p2 = st_compare.compare(one, weights(runs[2]), ("optim.",))
    for p in p1 + p2:
        print(p, file=sys.stderr)
    print(f"weights vs one process: relative L2 {d:.3g}, largest relative difference "
          f"{worst:.3g} ({worst_name}); noise floor (2 threads instead of 1) {floor:.3g}")
    if p1 or p2 or not (d <= max(3 * floor, 1e-4) and d < cap):
        print(f"the weights differ by {d:.3g} (noise floor {floor:.3g}, cap {cap:g})",
              file=sys.stderr)
        return 1
    if metrics:
        a, b = (list(csv.DictReader(open(os.path.join(r, "metrics.csv"))))
                for r in (runs[0], runs[2]))
        if not len(a) == len(b) == 2:
            print(f"metrics.csv: {len(a)} and {len(b)} epochs, expected 2", file=sys.stderr)
            return 1
        for x, y in zip(a, b):
            for k in ("epoch", "train_acc", "val_acc", "lr"):
                if x[k] != y[k]:
                    print(f"metrics.csv: {k} {x[k]} against {y[k]}", file=sys.stderr)
                    return 1
            for k in ("train_loss", "val_loss"):
                if not abs(float(x[k]) - float(y[k])) < 1e-3:
                    print(f"metrics.csv: {k} {x[k]} against {y[k]}", file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
