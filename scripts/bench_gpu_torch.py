#!/usr/bin/env python3
"""PyTorch side of scripts/gpu_check.sh: training images/s on the GPU for a
torchvision model, channels_last, the same SGD step as `whisker bench`
(momentum 0.9, weight decay 5e-4, a fixed random batch), fp32 with TF32 off
(whisker's --precision fp32), fp32 with TF32 on (--precision tf32) or bf16
autocast. Prints the images/s alone."""
import argparse
import time

import torch
import torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    model = torchvision.models.__dict__[a.model](num_classes=1000).to(dev)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (a.batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    torch.cuda.synchronize()
    print(f"{a.batch * a.steps / (time.perf_counter() - t0):.1f}")


if __name__ == "__main__":
    main()
