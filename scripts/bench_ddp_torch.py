#!/usr/bin/python3
"""PyTorch side of scripts/bench_ddp.sh: data-parallel training throughput with
torch.nn.parallel.DistributedDataParallel on the CPU (gloo backend), R
processes on this machine, the same step as `whisker bench` (SGD, momentum
0.9, weight decay 5e-4, a fixed random batch per rank, warm-up steps first),
printed as one JSON object: images/s over all ranks. R = 1 runs the plain
model without DDP (the baseline the scaling efficiency is taken against).

Run with the Debian interpreter (/usr/bin/python3): it has torch 1.13.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision


def run(rank, a, port, out):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = torchvision.models.__dict__[a.model](num_classes=a.classes)
    model = model.to(memory_format=torch.channels_last)
    if a.ranks > 1:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
        model = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=a.bucket_mb)
    g = torch.Generator().manual_seed(rank + 1)
    x = torch.randn(a.batch, 3, a.size, a.size, generator=g).to(memory_format=torch.channels_last)
    y = torch.randint(0, a.classes, (a.batch,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    times = []
    for step in range(a.warmup + a.steps):
        if a.ranks > 1:
            dist.barrier()  # every rank starts the step together, as whisker's do
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        out.put(a.batch * a.ranks * len(times) / sum(times))
    if a.ranks > 1:
        dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=int, default=16, help="per rank")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="per rank")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bucket-mb", type=float, default=25)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=run, args=(r, a, port, q)) for r in range(a.ranks)]
    for p in procs:
        p.start()
    ips = q.get(timeout=3600)
    for p in procs:
        p.join()
    print(json.dumps({"impl": "pytorch " + torch.__version__ + " DDP gloo", "model": a.model,
                      "batch": a.batch, "size": a.size, "threads": a.threads, "ranks": a.ranks,
                      "train_images_per_s": round(ips, 3)}))


if __name__ == "__main__":
    main()
