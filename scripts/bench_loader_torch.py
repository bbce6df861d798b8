#!/usr/bin/python3
"""bench_loader_torch.py - images per second of torchvision's ImageFolder +
DataLoader with the transforms tools/bench_loader.c runs in whisker:
RandomResizedCrop(size) + RandomHorizontalFlip() + ColorJitter(b, c, s, h) +
ToTensor() + Normalize(ImageNet mean, std), PIL decoding.

Same protocol as whisker's side: an untimed warm-up on the first --warmup
batches of an extra epoch, then --epochs timed epochs. The DataLoader gets
every advantage that is one flag away: persistent workers (no process start
per epoch), shuffle and drop_last as whisker's training loader.

Run with Debian's python (python3-torch, python3-torchvision):
    /usr/bin/python3 scripts/bench_loader_torch.py --data DIR
Prints one tab-separated line after a '#' header, like wk_bench_loader:
    name workers batch size images seconds images_per_s prescan_s n_files
(prescan_s is '-': ImageFolder checks nothing up front.)"""

import argparse
import sys
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--jitter", default="0.4,0.4,0.4,0.1")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    b, c, s, h = (float(x) for x in a.jitter.split(","))
    torch.manual_seed(a.seed)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(a.size),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(b, c, s, h),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    ds = datasets.ImageFolder(a.data, transform=tf)
    dl = DataLoader(ds, batch_size=a.batch, shuffle=True, drop_last=True,
                    num_workers=a.workers, persistent_workers=a.workers > 0)
    print("bench_loader_torch: %s: %d images, %d classes, torch %s, %d workers"
          % (a.data, len(ds), len(ds.classes), torch.__version__, a.workers), file=sys.stderr)

    it = iter(dl)
    for _ in range(min(a.warmup, len(dl))):
        next(it)
    del it

    images, seconds = 0, 0.0
    for e in range(1, a.epochs + 1):
        t = time.perf_counter()
        n = 0
        for x, _ in dl:
            n += x.shape[0]
        dt = time.perf_counter() - t
        print("bench_loader_torch: epoch %d: %d images in %.2f s, %.1f images/s"
              % (e, n, dt, n / dt), file=sys.stderr)
        images += n
        seconds += dt
    print("# name\tworkers\tbatch\tsize\timages\tseconds\timages_per_s\tprescan_s\tn_files")
    print("torchvision\t%d\t%d\t%d\t%d\t%.3f\t%.1f\t-\t%d"
          % (a.workers, a.batch, a.size, images, seconds, images / seconds, len(ds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
