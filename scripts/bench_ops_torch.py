#!/usr/bin/python3
"""bench_ops_torch.py - PyTorch's side of the conv benchmark (tools/bench_ops.c).

Times F.conv2d forward, backward-data and backward-weights separately on every
conv shape of torchvision's ResNet-18 (no bias, padding k // 2), float32, in
the default NCHW memory format and in channels_last. Backward runs through
torch.ops.aten.convolution_backward with output_mask [True, False, False]
(data) or [False, True, False] (weights), so each direction computes only its
own gradient, as whisker's timing does.

Run with Debian's python3 (python3-torch, 1.13): /usr/bin/python3 scripts/bench_ops_torch.py

Output on stdout, one tab-separated line per shape and layout after a '#' header,
the columns of wk_bench_ops plus the layout:
  name N H W C O K stride fwd_ms bwd_data_ms bwd_weights_ms layout
each time the median of --reps runs after one warm-up run, the runs interleaved
across shapes and layouts as in wk_bench_ops.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# (name, C, O, H = W, K, stride); the same table as bench_shapes in tools/bench_ops.c.
SHAPES = [
    ("conv1", 3, 64, 224, 7, 2),
    ("layer1.conv3x3", 64, 64, 56, 3, 1),
    ("layer2.conv3x3s2", 64, 128, 56, 3, 2),
    ("layer2.conv3x3", 128, 128, 28, 3, 1),
    ("layer2.down1x1s2", 64, 128, 56, 1, 2),
    ("layer3.conv3x3s2", 128, 256, 28, 3, 2),
    ("layer3.conv3x3", 256, 256, 14, 3, 1),
    ("layer3.down1x1s2", 128, 256, 28, 1, 2),
    ("layer4.conv3x3s2", 256, 512, 14, 3, 2),
    ("layer4.conv3x3", 512, 512, 7, 3, 1),
    ("layer4.down1x1s2", 256, 512, 14, 1, 2),
]

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def make_runs(shape, batch, layout):
    """The three timed calls (fwd, bwd_data, bwd_weights) of one shape in one memory format."""
    _, c, o, hw_px, k, stride = shape
    fmt = LAYOUTS[layout]
    pad = k // 2
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, c, hw_px, hw_px, generator=gen) * 2 - 1).to(memory_format=fmt)
    w = (torch.rand(o, c, k, k, generator=gen) * 2 - 1).to(memory_format=fmt)
    with torch.no_grad():
        y = F.conv2d(x, w, None, stride, pad)
    # A real backward pass receives dy in the layout forward produced.
    dy = (torch.rand(y.shape, generator=gen) * 2 - 1).to(memory_format=fmt)
    assert x.is_contiguous(memory_format=fmt) and dy.is_contiguous(memory_format=fmt)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, w, None, stride, pad)

    def bwd(mask):
        def run():
            torch.ops.aten.convolution_backward(dy, x, w, None, [stride, stride], [pad, pad],
                                                [1, 1], False, [0, 0], 1, mask)
        return run

    return [fwd, bwd([True, False, False]), bwd([False, True, False])]


def time_all(runs, reps):
    """Median ms of every call in `runs`: one warm-up pass, then `reps` passes that
    each run every call once, so a transient slowdown of the machine costs one run
    of many calls (which the median drops) rather than every run of one call."""
    times_ms = [[] for _ in runs]
    for rep in range(-1, reps):
        for i, fn in enumerate(runs):
            t0 = time.monotonic()
            fn()
            if rep >= 0:
                times_ms[i].append((time.monotonic() - t0) * 1e3)
    return [statistics.median(t) for t in times_ms]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="default: all cores")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=10, help="timed runs per direction (median)")
    ap.add_argument("--shape", help="run one shape")
    ap.add_argument("--layout", choices=["nchw", "channels_last", "both"], default="both")
    args = ap.parse_args()
    if args.threads < 1 or args.batch < 1 or args.reps < 1:
        ap.error("--threads, --batch and --reps must be >= 1")
    shapes = [s for s in SHAPES if args.shape in (None, s[0])]
    if not shapes:
        ap.error("unknown shape '%s' (one of: %s)" % (args.shape, ", ".join(s[0] for s in SHAPES)))
    layouts = list(LAYOUTS) if args.layout == "both" else [args.layout]

    torch.set_num_threads(args.threads)
    print("bench_ops_torch: torch %s, %d threads, batch %d, %d reps (median), mkldnn %s"
          % (torch.__version__, torch.get_num_threads(), args.batch, args.reps,
             torch.backends.mkldnn.is_available()), file=sys.stderr)
    print("#name\tN\tH\tW\tC\tO\tK\tstride\tfwd_ms\tbwd_data_ms\tbwd_weights_ms\tlayout")
    cases = [(shape, layout) for shape in shapes for layout in layouts]
    runs = [fn for shape, layout in cases for fn in make_runs(shape, args.batch, layout)]
    ms = time_all(runs, args.reps)
    for i, (shape, layout) in enumerate(cases):
        name, c, o, hw_px, k, stride = shape
        print("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\t%s"
              % (name, args.batch, hw_px, hw_px, c, o, k, stride, *ms[3 * i:3 * i + 3], layout))

if __name__ == "__main__":
    main()
