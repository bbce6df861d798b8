#!/usr/bin/python3
"""Fidelity goldens: torchvision networks with random weights, written in
whisker's model format, and what PyTorch computes with them.

For each architecture this writes into OUT_DIR:
  <arch>.safetensors         the model: torchvision's state_dict as is (PyTorch
                             names and layouts) plus whisker's metadata
  <arch>_golden.safetensors  x (N,H,W,C) input, r (N,K) output weights,
                             eval (N,K) logits in eval mode,
                             train (N,K) logits in train mode (dropout off),
                             grad.<param> d sum(train * r) / d param,
                             after.<buffer> running statistics after that step

Batchnorm affine parameters and running statistics are randomised too, so that
evaluation (where whisker folds batchnorm into the convolution) is checked
with non-trivial values. Run with Debian's interpreter (/usr/bin/python3); the
pyenv python3 first on PATH has no torch. tests/test_fidelity.c runs it.
"""
import argparse
import json
import os
import struct

import torch
import torchvision

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata=None):
    """A minimal safetensors writer (the format is 8 bytes of header length,
    the JSON header, then the raw little-endian data)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def randomise(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
                m.running_mean.uniform_(-0.2, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
                m.num_batches_tracked.fill_(7)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--archs", default="resnet18,mobilenetv2")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--classes", type=int, default=10)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    torch.set_num_threads(1)
    for arch in a.archs.split(","):
        torch.manual_seed(1)
        gen = torch.Generator().manual_seed(2)
        tv = {"mobilenetv2": "mobilenet_v2"}.get(arch, arch)
        model = getattr(torchvision.models, tv)(num_classes=a.classes)
        randomise(model, gen)
        meta = {
            "format": "whisker",
            "whisker.arch": json.dumps({"name": arch, "width": 1.0, "num_classes": a.classes,
                                        "input": [a.size, a.size, 3]}),
            "whisker.classes": json.dumps(["class%d" % i for i in range(a.classes)]),
            "whisker.provenance": json.dumps({"source": "scripts/gen_net_golden.py",
                                              "torch": torch.__version__}),
        }
        write_safetensors(os.path.join(a.out_dir, arch + ".safetensors"), model.state_dict(),
                          meta)
        x = torch.randn(a.batch, 3, a.size, a.size, generator=gen)
        r = torch.randn(a.batch, a.classes, generator=gen)
        out = {"x": nhwc(x), "r": r}
        model.eval()
        with torch.no_grad():
            out["eval"] = model(x)
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()  # whisker's side sets p = 0
        y = model(x)
        (y * r).sum().backward()
        out["train"] = y.detach()
        for name, p in model.named_parameters():
            out["grad." + name] = p.grad
        for name, b in model.named_buffers():
            if b.dtype == torch.float32:
                out["after." + name] = b
        write_safetensors(os.path.join(a.out_dir, arch + "_golden.safetensors"), out)
        print("wrote", arch, "to", a.out_dir)


if __name__ == "__main__":
    main()
