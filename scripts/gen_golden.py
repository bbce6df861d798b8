#!/usr/bin/python3
"""gen_golden.py - writes tests/golden/small_net.bin, the PyTorch golden run that
tests/test_golden.c replays with whisker's ops.

Run with Debian's python (python3-torch):  /usr/bin/python3 scripts/gen_golden.py
The format and every record are documented in tests/golden/README.md.

The net (NCHW in torch; the file stores NHWC activations, OHWI conv weights):
  stem  conv3x3(3->8, pad 1, no bias) -> BN -> ReLU
  res   conv3x3(8->8) -> BN -> ReLU -> conv3x3(8->8) -> BN, + identity -> ReLU
  dw    conv3x3(8->8, groups 8, stride 2, pad 1, bias) -> BN -> ReLU6
  pw    conv1x1(8->16, no bias) -> BN -> ReLU
  head  MaxPool2d(3, 2, 1) -> AvgPool2d(2, 2) -> global average -> Linear(16->5)
  loss  CrossEntropyLoss(label_smoothing=0.1)
Every BN trains on batch statistics (eps 1e-5, momentum 0.1).

The run: forward 1 (records logits, loss, gradients), then SGD step 1; forwards
2..5 each followed by backward and SGD steps 2..5, all on the same batch. So
there are exactly 5 forwards (each updates the BN running statistics once) and
5 optimizer steps; `losses` holds the loss of forwards 1..5."""

import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 20240611
BATCH, IN_C, IN_HW, CLASSES = 4, 3, 16, 5
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4
LABEL_SMOOTHING, BN_EPS, BN_MOMENTUM = 0.1, 1e-5, 0.1
STEPS = 5

DTYPE_F32, DTYPE_I32 = 0, 1
MAGIC = b"WKGOLD01"


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        bn = lambda c: nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.stem_conv = nn.Conv2d(3, 8, 3, stride=1, padding=1, bias=False)
        self.stem_bn = bn(8)
        self.res_conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.res_bn1 = bn(8)
        self.res_conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.res_bn2 = bn(8)
        self.dw_conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=True)
        self.dw_bn = bn(8)
        self.pw_conv = nn.Conv2d(8, 16, 1, bias=False)
        self.pw_bn = bn(16)
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x):
        a1 = F.relu(self.stem_bn(self.stem_conv(x)))
        r = F.relu(self.res_bn1(self.res_conv1(a1)))
        a3 = F.relu(self.res_bn2(self.res_conv2(r)) + a1)
        a4 = F.relu6(self.dw_bn(self.dw_conv(a3)))
        a5 = F.relu(self.pw_bn(self.pw_conv(a4)))
        p = F.max_pool2d(a5, 3, stride=2, padding=1)
        p = F.avg_pool2d(p, 2, stride=2)
        g = F.adaptive_avg_pool2d(p, 1).flatten(1)
        return self.fc(g)


# (file name, module attribute path); the order is the order of the records.
PARAMS = [
    ("stem.conv.w", "stem_conv.weight"),
    ("stem.bn.gamma", "stem_bn.weight"),
    ("stem.bn.beta", "stem_bn.bias"),
    ("res.conv1.w", "res_conv1.weight"),
    ("res.bn1.gamma", "res_bn1.weight"),
    ("res.bn1.beta", "res_bn1.bias"),
    ("res.conv2.w", "res_conv2.weight"),
    ("res.bn2.gamma", "res_bn2.weight"),
    ("res.bn2.beta", "res_bn2.bias"),
    ("dw.conv.w", "dw_conv.weight"),
    ("dw.conv.b", "dw_conv.bias"),
    ("dw.bn.gamma", "dw_bn.weight"),
    ("dw.bn.beta", "dw_bn.bias"),
    ("pw.conv.w", "pw_conv.weight"),
    ("pw.bn.gamma", "pw_bn.weight"),
    ("pw.bn.beta", "pw_bn.bias"),
    ("fc.w", "fc.weight"),
    ("fc.b", "fc.bias"),
]
BNS = [("stem.bn", "stem_bn"), ("res.bn1", "res_bn1"), ("res.bn2", "res_bn2"),
       ("dw.bn", "dw_bn"), ("pw.bn", "pw_bn")]


def to_whisker(t):
    """NCHW activations -> NHWC, OIHW conv weights -> OHWI; others unchanged."""
    t = t.detach()
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return t.contiguous()


class Writer:
    def __init__(self):
        self.records = []
        self.names = set()

    def add(self, name, t):
        assert name not in self.names, name
        self.names.add(name)
        t = to_whisker(t) if isinstance(t, torch.Tensor) else torch.tensor(t)
        if t.dtype == torch.float32:
            dtype, fmt = DTYPE_F32, "<f4"
        elif t.dtype in (torch.int64, torch.int32):
            dtype, fmt = DTYPE_I32, "<i4"
        else:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        data = t.cpu().numpy().astype(fmt).tobytes()
        self.records.append((name, dtype, list(t.shape), data))

    def write(self, path):
        out = bytearray(MAGIC)
        out += struct.pack("<I", len(self.records))
        for name, dtype, dims, data in self.records:
            nb = name.encode("ascii")
            out += struct.pack("<I", len(nb)) + nb
            out += struct.pack("<II", dtype, len(dims))
            out += struct.pack(f"<{len(dims)}I", *dims)
            out += data
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(out)
        return len(out)


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    net = SmallNet()
    with torch.no_grad():
        for _, mod in BNS:
            bn = getattr(net, mod)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    net.train()
    x = torch.randn(BATCH, IN_C, IN_HW, IN_HW)
    labels = torch.randint(0, CLASSES, (BATCH,))
    params = dict(net.named_parameters())
    assert sorted(params) == sorted(p for _, p in PARAMS), "PARAMS table is stale"

    w = Writer()
    w.add("hparams", torch.tensor([LR, MOMENTUM, WEIGHT_DECAY, LABEL_SMOOTHING,
                                   BN_EPS, BN_MOMENTUM], dtype=torch.float32))
    w.add("input", x)
    w.add("labels", labels.to(torch.int32))
    for name, attr in PARAMS:
        w.add("init." + name, params[attr])

    crit = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        logits = net(x)
        loss = crit(logits, labels)
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            w.add("logits", logits)
            w.add("loss", loss.detach().reshape(1))
            for name, attr in PARAMS:
                w.add("grad." + name, params[attr].grad)
        opt.step()

    w.add("losses", torch.tensor(losses, dtype=torch.float32))
    for name, mod in BNS:
        bn = getattr(net, mod)
        assert bn.num_batches_tracked.item() == STEPS
        w.add("running_mean." + name, bn.running_mean)
        w.add("running_var." + name, bn.running_var)
    for name, attr in PARAMS:
        w.add("final." + name, params[attr])

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "golden", "small_net.bin")
    n_bytes = w.write(path)
    print(f"{path}: {len(w.records)} records, {n_bytes} bytes; losses "
          + " ".join(f"{v:.6f}" for v in losses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
