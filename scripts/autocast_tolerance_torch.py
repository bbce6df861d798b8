#!/usr/bin/python3
"""autocast_tolerance_torch.py - how far PyTorch's own bfloat16 autocast moves
networks from float32, on the shapes of tests/test_gpu_net.c's precision tests:
the basis of that test's bf16/fp16 bounds, which whisker's GPU autocast (every
value and gradient in 16 bits) must meet against the CPU's float32.

Default: a random resnet18 and mobilenet_v2 at width 0.5 (the test's; 3
images of 64x64, 5 classes), 8 seeds: the eval output's relative error
(max |a - b| / max |b|, batchnorm statistics randomised so eval is not the
identity) and the relative error of the first training step's loss (batch
statistics; the same dropout masks on both sides, as whisker's CPU and GPU
draw the same ones).

--test-perturb: the statistics and 1-D parameters drawn as test_gpu_net.c's
wkt_perturb draws them (every 1-D parameter, batchnorm scales and biases and
the linear bias, uniform in [0.5, 1.5]; running means and variances uniform in
[0.2, 1]) instead of near their defaults: the eval activations grow through
the layers (the running statistics do not match the batch's), so this is the
test's own case.

--storage: the same with every module's output (and each block's, its
residual add) and the convolution and linear weights rounded to 16 bits,
float16 and bfloat16, against float64: whisker's 16-bit storage, forward.

--plain: test_gpu_net's wkt_plain (no batchnorm: convolutions with bias, relu,
relu6, a residual add, max pooling, a strided convolution, global average
pooling, a linear layer; 4 images of 32x32), 8 seeds: the output's relative
error and each parameter's gradient's, backward from a random output
gradient, by the test's measure max |a - b| / max |b| (the worst parameter).

--plain --storage: the same net, seeds, input and output gradient, with
whisker's 16-bit storage emulated as scripts/bn_fuse_tolerance_torch.py does
(its rounding op R), for float16 and bfloat16 against a float64 reference:
the input, every value (each convolution's output with its bias, the relu and
relu6 outputs, the add, the max pool, the strided convolution, the global
average pool, the linear output) and every value's gradient rounded; conv and
linear weights used through a 16-bit copy (their gradient not rounded);
biases not rounded. Autocast rounds fewer values (PyTorch 1.13's CPU has no
float16 autocast at all), so this is what the test's float16 bound rests on.

Prints the worst of each over the seeds. CPU autocast: PyTorch 1.13 has no
float16 on the CPU, so only bfloat16.

  /usr/bin/python3 scripts/autocast_tolerance_torch.py [--plain] [--storage] [--test-perturb]
  (Debian's python3-torch)
"""
import copy
import sys

import torch
import torch.nn.functional as F
import torchvision

from bn_fuse_tolerance_torch import stores


def perturb_like_test(m):
    """test_gpu_net.c's wkt_perturb."""
    for p in m.parameters():
        if p.dim() == 1:
            p.data.uniform_(0.5, 1.5)
    for b in m.buffers():
        if b.is_floating_point():
            b.uniform_(0.2, 1.0)


def randomise_bn(m):
    if "--test-perturb" in sys.argv[1:]:
        return perturb_like_test(m)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)


def rel(a, b):
    return ((a.to(b.dtype) - b).abs().max() / max(b.abs().max().item(), 1e-6)).item()


def zoo_model(name):
    """The test's shapes: mobilenetv2 at width 0.5, as wkt_mobilenet."""
    if name == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(num_classes=5, width_mult=0.5)
    return getattr(torchvision.models, name)(num_classes=5)


STORED = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Linear,
          torch.nn.MaxPool2d, torch.nn.AdaptiveAvgPool2d, torch.nn.Dropout)


def store_16(m, d):
    """--storage: every module's output rounded to d (blocks too: their
    residual add), convolution and linear weights likewise; forward only."""
    def hook(mod, inputs, out):
        return out.to(d).to(out.dtype)
    for mod in m.modules():
        if isinstance(mod, STORED) or type(mod).__name__ in ("BasicBlock", "InvertedResidual"):
            mod.register_forward_hook(hook)
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            mod.weight.data = mod.weight.data.to(d).to(mod.weight.dtype)


def zoo(d=None):
    """bf16 autocast (d None) or d's storage emulated, against float32 (float64 for storage)."""
    how = f"{d}".replace("torch.", "") + " storage (emulated) vs float64" if d else \
        "bf16 autocast vs float32"
    how += ", wkt_perturb's statistics" if "--test-perturb" in sys.argv[1:] else ""
    for name in ["resnet18", "mobilenet_v2"]:
        worst_out = worst_loss = 0.0
        for seed in range(8):
            torch.manual_seed(seed)
            m = zoo_model(name)
            randomise_bn(m)
            x = torch.rand(3, 3, 64, 64) * 2 - 1
            labels = torch.tensor([0, 1, 2])
            if d:
                m, x = m.double(), x.double()
                m16 = copy.deepcopy(m)
                store_16(m16, d)
            def run16(train):
                """The 16-bit forward: the stored copy, or autocast."""
                if d:
                    m16.train(train)
                    return m16(x.to(d).to(x.dtype))
                m.train(train)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return m(x)

            with torch.no_grad():
                ref = m.eval()(x)
                worst_out = max(worst_out, rel(run16(False), ref))
                torch.manual_seed(100 + seed)  # mobilenet_v2's dropout: the same masks
                l32 = F.cross_entropy(m.train()(x), labels)
                torch.manual_seed(100 + seed)
                l16 = F.cross_entropy(run16(True).to(l32.dtype), labels)
            worst_loss = max(worst_loss, abs(l16.item() - l32.item()) / abs(l32.item()))
        print(f"{name}: {how}, worst of 8 seeds: eval output "
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

    def forward(self, x, d=None):
        """d: a 16-bit dtype whose storage to emulate (--storage), None for none."""
        q, w = stores(d)

        def conv(c, t):
            return q(F.conv2d(t, w(c.weight), c.bias, c.stride, c.padding))

        a = q(F.relu(conv(self.conv1, q(x))))
        b = q(torch.clamp(conv(self.conv2, a), 0, 6))
        y = q(F.max_pool2d(q(a + b), 2))
        y = q(q(F.relu(conv(self.conv3, y))).mean((2, 3)))
        return q(F.linear(y, w(self.fc.weight), self.fc.bias))


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


def storage():
    for d, dname in [(torch.float16, "fp16"), (torch.bfloat16, "bf16")]:
        worst_out = worst_grad = 0.0
        worst_name = ""
        for seed in range(8):
            torch.manual_seed(seed)  # the same draws as plain()'s, widened
            m = Plain().double()
            x = (torch.rand(4, 3, 32, 32) * 2 - 1).double()
            dy = (torch.rand(4, 5) * 2 - 1).double()
            ps = dict(m.named_parameters())
            y64 = m(x)
            g64 = torch.autograd.grad(y64, list(ps.values()), dy)
            y = m(x, d)
            g = torch.autograd.grad(y, list(ps.values()), dy)
            worst_out = max(worst_out, rel(y.detach(), y64.detach()))
            for k, a, b in zip(ps, g, g64):
                e = rel(a, b)
                if e > worst_grad:
                    worst_grad, worst_name = e, k
        print(f"plain: {dname} storage (emulated) vs float64, worst of 8 seeds: output "
              f"{worst_out:.3g}, a parameter's gradient {worst_grad:.3g} ({worst_name})")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--plain" in args:
        storage() if "--storage" in args else plain()
    elif "--storage" in args:
        zoo(torch.float16)
        zoo(torch.bfloat16)
    else:
        zoo()
