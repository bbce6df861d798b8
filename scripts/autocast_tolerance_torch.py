#!/usr/bin/python3
"""autocast_tolerance_torch.py - how far PyTorch's own bfloat16 autocast moves
networks from float32, on the shapes of tests/test_gpu_net.c's precision tests:
the basis of that test's bf16/fp16 bounds, which whisker's GPU autocast (every
value and gradient in 16 bits) must meet against the CPU's float32.

Default: a random resnet18 and mobilenet_v2 (3 images of 64x64, 5 classes),
8 seeds: the eval output's relative error (max |a - b| / max |b|, batchnorm
statistics randomised so eval is not the identity) and the relative error of
the first training step's loss (batch statistics).

--plain: test_gpu_net's wkt_plain (no batchnorm: convolutions with bias, relu,
relu6, a residual add, max pooling, a strided convolution, global average
pooling, a linear layer; 4 images of 32x32), 8 seeds: the output's relative
error and each parameter's gradient's, backward from a random output
gradient, by the test's measure max |a - b| / max |b| (the worst parameter).

Prints the worst of each over the seeds. CPU autocast: PyTorch 1.13 has no
float16 on the CPU, so only bfloat16.

  /usr/bin/python3 scripts/autocast_tolerance_torch.py [--plain]   (Debian's python3-torch)
"""
import sys

import torch
import torch.nn.functional as F
import torchvision


def randomise_bn(m):
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)


def rel(a, b):
    return ((a.float() - b).abs().max() / max(b.abs().max().item(), 1e-6)).item()


def zoo():
    for name in ["resnet18", "mobilenet_v2"]:
        worst_out = worst_loss = 0.0
        for seed in range(8):
            torch.manual_seed(seed)
            m = getattr(torchvision.models, name)(num_classes=5)
            randomise_bn(m)
            x = torch.rand(3, 3, 64, 64) * 2 - 1
            labels = torch.tensor([0, 1, 2])
            m.eval()
            with torch.no_grad():
                ref = m(x)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    y = m(x)
            worst_out = max(worst_out, rel(y, ref))
            m.train()
            with torch.no_grad():
                l32 = F.cross_entropy(m(x), labels)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = m(x)
                l16 = F.cross_entropy(out.float(), labels)
            worst_loss = max(worst_loss, abs(l16.item() - l32.item()) / abs(l32.item()))
        print(f"{name}: bf16 autocast vs float32, worst of 8 seeds: eval output "
              f"{worst_out:.3g}, first training loss {worst_loss:.3g}")


class Plain(torch.nn.Module):
    """test_gpu_net.c's wkt_plain (relu6 as a clamp: PyTorch 1.13's CPU has no
    bfloat16 hardtanh backward)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(32, 5)

    def forward(self, x):
        a = F.relu(self.conv1(x))
        b = torch.clamp(self.conv2(a), 0, 6)
        y = F.max_pool2d(a + b, 2)
        y = F.relu(self.conv3(y)).mean((2, 3))
        return self.fc(y)


def plain():
    worst_out = worst_grad = 0.0
    worst_name = ""
    for seed in range(8):
        torch.manual_seed(seed)
        m = Plain()
        x = torch.rand(4, 3, 32, 32) * 2 - 1
        dy = torch.rand(4, 5) * 2 - 1
        y32 = m(x)
        y32.backward(dy)
        g32 = {k: p.grad.clone() for k, p in m.named_parameters()}
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        worst_out = max(worst_out, rel(y, y32.detach()))
        y.float().backward(dy)
        for k, p in m.named_parameters():
            e = rel(p.grad, g32[k])
            if e > worst_grad:
                worst_grad, worst_name = e, k
    print(f"plain: bf16 autocast vs float32, worst of 8 seeds: output {worst_out:.3g}, "
          f"a parameter's gradient {worst_grad:.3g} ({worst_name})")


if __name__ == "__main__":
    plain() if "--plain" in sys.argv[1:] else zoo()
