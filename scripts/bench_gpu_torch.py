#!/usr/bin/env python3
"""PyTorch side of scripts/gpu_check.sh: images/s on the GPU for torchvision
models in channels_last, training with the same SGD step as `whisker bench`
(momentum 0.9, weight decay 5e-4, a fixed random batch) or inference
(eval-mode forwards under no_grad), in fp32 with TF32 off (whisker's
--precision fp32), fp32 with TF32 on (--precision tf32) or bf16 autocast.

  bench_gpu_torch.py --model resnet50 --batch 256 --precision bf16 [--infer]
      prints the images/s alone;
  bench_gpu_torch.py --all --batch 256
      runs resnet18 and resnet50 x fp32, tf32, bf16 x train, infer in one
      process (torch loads once) and prints "model precision mode images/s"
      lines, and after each one "model precision trainmem A R" (training) or
      "model precision infermem A R" (inference): the peak MiB the caching
      allocator had allocated and reserved (torch.cuda.max_memory_allocated /
      max_memory_reserved).
  --device cpu (gpu_check.sh's dry run, WK_GPU_CHECK_EMU=1, where there is no GPU)
      runs the same on the CPU, the memory lines then giving the process's peak
      resident set (ru_maxrss) for both: the script's flow, not a GPU figure."""
import argparse
import resource
import time

import torch
import torchvision


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def measure(model_name, batch, size, precision, infer, steps, warmup, device="cuda"):
    tf32 = precision == "tf32"
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        # PyTorch 2.9 and later: the fp32_precision settings (the allow_tf32 flags are
        # deprecated there, and the two must not be mixed)
        torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
        conv.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model = torchvision.models.__dict__[model_name](num_classes=1000).to(dev)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    bf16 = precision == "bf16"

    def infer_step():
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            model(x)

    def train_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    model.train(not infer)
    run = infer_step if infer else train_step
    for _ in range(warmup):
        run()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    sync(dev)
    ips = batch * steps / (time.perf_counter() - t0)
    mib = 1 << 20
    if dev.type != "cuda":
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return ips, rss, rss
    return ips, torch.cuda.max_memory_allocated() / mib, torch.cuda.max_memory_reserved() / mib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    ap.add_argument("--infer", action="store_true")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    a = ap.parse_args()
    if not a.all:
        ips = measure(a.model, a.batch, a.size, a.precision, a.infer, a.steps, a.warmup,
                      a.device)[0]
        print(f"{ips:.1f}")
        return
    for m in ("resnet18", "resnet50"):
        for p in ("fp32", "tf32", "bf16"):
            for infer in (False, True):
                ips, alloc, held = measure(m, a.batch, a.size, p, infer, a.steps, a.warmup,
                                         a.device)
                print(f"{m} {p} {'infer' if infer else 'train'} {ips:.1f}", flush=True)
                kind = "infermem" if infer else "trainmem"
                print(f"{m} {p} {kind} {alloc:.0f} {held:.0f}", flush=True)
                if a.device == "cuda":
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
