#!/usr/bin/python3
"""PyTorch side of scripts/bench_train.sh: the same measurement as
`whisker bench`, on Debian's python3-torch, printed as one JSON object.

  training images/s: forward + backward + SGD step (momentum 0.9, weight decay
                     5e-4) on a fixed random batch, after warm-up steps
  batch-1 latency:   eval-mode forward of one image, the median of N runs
  peak memory:       the process's maximum resident set size (ru_maxrss)

Run with the Debian interpreter (/usr/bin/python3): the pyenv python3 first on
PATH has no torch.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument("--channels-last", action="store_true",
                    help="NHWC memory format (PyTorch's default is NCHW)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    name = {"mobilenetv2": "mobilenet_v2"}.get(a.model, a.model)
    model = getattr(torchvision.models, name)(num_classes=a.classes)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(a.batch, 3, a.size, a.size).to(memory_format=fmt)
    y = torch.randint(0, a.classes, (a.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    train_ips = a.batch * len(times) / sum(times)
    train_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    model.eval()
    x1 = torch.randn(1, 3, a.size, a.size).to(memory_format=fmt)
    lat = []
    with torch.no_grad():
        for i in range(a.latency_runs + 3):
            t0 = time.perf_counter()
            model(x1)
            if i >= 3:
                lat.append(time.perf_counter() - t0)
    print(json.dumps({
        "impl": "pytorch " + torch.__version__ + (" channels_last" if a.channels_last else ""),
        "model": a.model, "batch": a.batch, "size": a.size, "threads": a.threads,
        "train_images_per_s": round(train_ips, 3),
        "train_step_s": round(statistics.median(times), 4),
        "infer_b1_latency_ms": round(statistics.median(lat) * 1e3, 3),
        "peak_rss_mb": round(train_rss, 1),
    }))


if __name__ == "__main__":
    main()
