#!/usr/bin/env python3
"""st_compare.py A.safetensors B.safetensors [--tol T] [--skip PREFIX] [--l2]

Compares the tensors of two safetensors files (whisker models or checkpoints):
prints the largest relative difference max|a-b| / max(max|a|, 1e-6) and which
tensor has it, and the global relative L2 difference ||a-b|| / ||a|| over all
tensors together. Exits 1 when a tensor is missing or has another shape, or
(without --l2) when a tensor differs by more than --tol (default 1e-4); with
--l2 only the global figure is reported, for the caller to judge. Tensors whose
name starts with --skip (repeatable) are left out. Needs numpy."""
import json, struct, sys
import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}

def load(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in head.items():
        if name == "__metadata__" or e["dtype"] not in DT:
            continue
        lo, hi = e["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype=DT[e["dtype"]]).reshape(e["shape"])
    return out

def compare(a, b, skip=(), tol=None):
    """Tensors a and b (load's dicts) side by side, leaving out names starting
    with a prefix in skip: (largest relative difference, its tensor, global
    relative L2 difference, problems) where problems lists tensors missing or
    of another shape and, with tol, those differing by more than tol."""
    worst, worst_name, problems, num, den = 0.0, "", [], 0.0, 0.0
    for name in sorted(set(a) | set(b)):
        if any(name.startswith(s) for s in skip):
            continue
        if name not in a or name not in b or a[name].shape != b[name].shape:
            problems.append(f"{name}: missing or of another shape")
            continue
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        if x.size == 0:
            continue
        num += float(np.sum((x - y) ** 2))
        den += float(np.sum(x ** 2))
        d = float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-6))
        if d > worst:
            worst, worst_name = d, name
        if tol is not None and d > tol:
            problems.append(f"{name}: relative difference {d:.3g} > {tol:g}")
    g = (num / den) ** 0.5 if den > 0 else 0.0
    return worst, worst_name, g, problems

def main(argv):
    tol, skip, files, l2 = 1e-4, [], [], False
    i = 0
    while i < len(argv):
        if argv[i] == "--tol":
            tol = float(argv[i + 1]); i += 2
        elif argv[i] == "--l2":
            l2 = True; i += 1
        elif argv[i] == "--skip":
            skip.append(argv[i + 1]); i += 2
        else:
            files.append(argv[i]); i += 1
    if len(files) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = load(files[0]), load(files[1])
    worst, worst_name, g, problems = compare(a, b, skip, None if l2 else tol)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(a)} tensors; largest relative difference {worst:.3g} ({worst_name}); "
          f"global relative L2 difference {g:.3g}")
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
