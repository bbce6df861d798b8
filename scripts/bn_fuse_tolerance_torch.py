#!/usr/bin/python3
"""bn_fuse_tolerance_torch.py - how far 16-bit storage moves a small residual
net from float32, with and without batchnorm fusion: the basis of the GPU
test's bounds for cuDNN's fused relu(bn(x)) and relu(bn(x) + z) under
--precision bf16|fp16.

whisker's GPU autocast stores every activation and every activation gradient
in 16 bits (each op computed in float32, rounded once on the store) and uses
conv/linear weights through a 16-bit copy; parameter gradients, batchnorm
statistics and scale/bias stay float32. Fusion removes stores: in relu(bn(x))
the batchnorm output is not rounded, in relu(bn(x) + z) neither the batchnorm
output nor the sum is (only the relu output, and the gradient arriving at it).
Emulated here in float64 with a rounding op R at every store, forward (the
value) and backward (its gradient); the reference is float64 with no rounding.

The net: batch 8 of 3x32x32 in [-1, 1]; stem conv 3->16 + bn + relu; block1
conv+bn+relu, conv+bn, + stem output, relu; block2 (stride 2, 16->32)
conv+bn+relu, conv+bn, + the 1x1 stride-2 shortcut's conv+bn (rounded: not
part of the fused op), relu; global average pool; linear 32->5. Batchnorm in
training mode (batch statistics), scale in [0.5, 1.5], bias in [-0.1, 0.1].
Backward from a random output gradient in [-1, 1].

Prints, for float16 and bfloat16, the worst over 8 seeds of the relative
error max |a - b| / max |b| of the output and of each parameter's gradient
(the worst parameter, the worst batchnorm scale/bias, and the median over
parameters of each one's worst seed): unfused vs reference, fused vs
reference, fused vs unfused.

Found: fusing relu(bn(x)) changes nothing here (rounding commutes with relu,
forward and back); relu(bn(x) + z) does, and fused vs unfused is as large as
either vs the reference. The gradients' error is far above 16-bit rounding
(fp16 only ~2x finer than bf16): it is relu units whose sign flips, each one
moving a sum over every pixel (with gelu for relu it drops ~20x).

  /usr/bin/python3 scripts/bn_fuse_tolerance_torch.py   (Debian's python3-torch)
"""
import statistics

import torch
import torch.nn.functional as F

CONVS = {"stem.conv": (16, 3, 3), "b1.conv1": (16, 16, 3), "b1.conv2": (16, 16, 3),
         "b2.conv1": (32, 16, 3), "b2.conv2": (32, 32, 3), "b2.short": (32, 16, 1)}
BNS = {"stem.bn": 16, "b1.bn1": 16, "b1.bn2": 16, "b2.bn1": 32, "b2.bn2": 32, "b2.shortbn": 32}
PAIRS = [("unfused", "ref"), ("fused", "ref"), ("fused", "unfused")]


class R(torch.autograd.Function):
    """A 16-bit store: the value rounded going forward, its gradient going back."""

    @staticmethod
    def forward(ctx, x, d):
        ctx.d = d
        return x.to(d).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g.to(ctx.d).to(g.dtype), None


def stores(d):
    """The 16-bit stores of dtype d (None: none): q rounds a value and its
    gradient (R); w is a weight used through a 16-bit copy, its gradient not
    rounded."""
    if not d:
        return (lambda t: t), (lambda t: t)
    return (lambda t: R.apply(t, d)), (lambda t: t + (t.to(d).to(t.dtype) - t).detach())


def params(seed):
    torch.manual_seed(seed)
    p = {}
    for k, (co, ci, ks) in CONVS.items():
        p[k] = torch.randn(co, ci, ks, ks, dtype=torch.float64) * (2 / (ci * ks * ks)) ** 0.5
    for k, c in BNS.items():
        p[k + ".weight"] = torch.empty(c, dtype=torch.float64).uniform_(0.5, 1.5)
        p[k + ".bias"] = torch.empty(c, dtype=torch.float64).uniform_(-0.1, 0.1)
    p["fc.weight"] = torch.empty(5, 32, dtype=torch.float64).uniform_(-32 ** -0.5, 32 ** -0.5)
    p["fc.bias"] = torch.empty(5, dtype=torch.float64).uniform_(-32 ** -0.5, 32 ** -0.5)
    x = torch.rand(8, 3, 32, 32, dtype=torch.float64) * 2 - 1
    dy = torch.rand(8, 5, dtype=torch.float64) * 2 - 1
    return {k: v.requires_grad_() for k, v in p.items()}, x, dy


def net(p, x, d, fused, stats):
    """d: the 16-bit dtype, None for the reference. fused: the batchnorm output
    (and the sum) inside relu(bn(.)) and relu(bn(.) + z) are not rounded.
    stats gets each batchnorm's batch mean and unbiased variance - 1: what one
    step moves the running statistics by (times the momentum), from 0 and 1."""
    q, w = stores(d)
    fq = (lambda t: t) if fused else q

    def conv(t, k, stride=1):
        return q(F.conv2d(t, w(p[k]), stride=stride, padding=p[k].shape[-1] // 2))

    def bn(t, k):
        stats.append(torch.cat([t.mean((0, 2, 3)), t.var((0, 2, 3), unbiased=True) - 1]).detach())
        return F.batch_norm(t, None, None, p[k + ".weight"], p[k + ".bias"], training=True, eps=1e-5)

    def bn_relu(t, k):
        return q(F.relu(fq(bn(t, k))))

    def bn_add_relu(t, k, z):
        return q(F.relu(fq(fq(bn(t, k)) + z)))

    s = bn_relu(conv(q(x), "stem.conv"), "stem.bn")
    y1 = bn_add_relu(conv(bn_relu(conv(s, "b1.conv1"), "b1.bn1"), "b1.conv2"), "b1.bn2", s)
    h = bn_relu(conv(y1, "b2.conv1", 2), "b2.bn1")
    z2 = q(bn(conv(y1, "b2.short", 2), "b2.shortbn"))
    y2 = bn_add_relu(conv(h, "b2.conv2"), "b2.bn2", z2)
    return q(F.linear(q(y2.mean((2, 3))), w(p["fc.weight"]), p["fc.bias"]))


def rel(a, b):
    return ((a - b).abs().max() / max(b.abs().max().item(), 1e-30)).item()


def run(p, x, dy, d, fused):
    stats = []
    y = net(p, x, d, fused, stats)
    return y.detach(), dict(zip(p, torch.autograd.grad(y, list(p.values()), dy))), torch.cat(stats)


def main():
    for d, dname in [(torch.float16, "fp16"), (torch.bfloat16, "bf16")]:
        out = {pair: 0.0 for pair in PAIRS}
        st = {pair: 0.0 for pair in PAIRS}
        grad = {pair: {} for pair in PAIRS}  # pair -> parameter -> worst over seeds
        for seed in range(8):
            p, x, dy = params(seed)
            res = {"ref": run(p, x, dy, None, False), "unfused": run(p, x, dy, d, False),
                   "fused": run(p, x, dy, d, True)}
            for a, b in PAIRS:
                out[a, b] = max(out[a, b], rel(res[a][0], res[b][0]))
                st[a, b] = max(st[a, b], rel(res[a][2], res[b][2]))
                for k in p:
                    e = rel(res[a][1][k], res[b][1][k])
                    grad[a, b][k] = max(grad[a, b].get(k, 0.0), e)
        print(f"{dname} storage, float64 reference, worst of 8 seeds (max |a - b| / max |b|):")
        for a, b in PAIRS:
            g = grad[a, b]
            worst = max(g, key=g.get)
            worst_bn = max((k + s for k in BNS for s in (".weight", ".bias")), key=g.get)
            print(f"  {a:>7} vs {b:<7}: output {out[a, b]:.3g}; running statistics' step "
                  f"{st[a, b]:.3g}; gradient: worst {g[worst]:.3g} "
                  f"({worst}), worst bn scale/bias {g[worst_bn]:.3g} ({worst_bn}), "
                  f"median over parameters {statistics.median(g.values()):.3g}")


if __name__ == "__main__":
    main()
