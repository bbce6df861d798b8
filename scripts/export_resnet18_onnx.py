#!/usr/bin/python3
"""ONNX import fixtures: PyTorch networks with random weights exported to ONNX,
with an input and PyTorch's logits for it, for tests/test_onnx.c.

Writes into OUT_DIR (each NAME.onnx with NAME_input.pb and NAME_logits.pb,
serialized onnx.TensorProto, input NCHW float32):
  resnet18     torchvision resnet18 (seed 0, random batchnorm statistics), eval
               export: batchnorm folded into Conv, Relu, MaxPool, Add,
               GlobalAveragePool, Flatten, Gemm; 224x224, opset 13
  mobilenetv2  torchvision mobilenet_v2 exported with its BatchNormalization
               nodes kept (TrainingMode.PRESERVE on an eval model): Conv with
               groups, BatchNormalization, Clip(0, 6), Add, Reshape; 96x96
  small        a hand-made net for the rest: dilation, asymmetric stride,
               AveragePool, a Flatten of a 3x3 map (NCHW order), MatMul + Add,
               Relu; 32x32
  gemm         written with onnx.helper: Conv (no bias) -> Relu ->
               GlobalAveragePool -> Reshape to a Constant [-1, 6] -> Gemm with
               transB 0, alpha 0.5, beta 2 and a broadcast scalar C; logits by torch
  unsupported  Conv -> Sigmoid (node "the_sigmoid") -> ...: must be refused
Run with Debian's interpreter (/usr/bin/python3: torch 1.13, onnx 1.12).
"""
import argparse
import os

import numpy as np
import onnx
import torch
import torchvision
from onnx import TensorProto, helper, numpy_helper


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) + 0.5
            m.bias.data = torch.randn(c, generator=gen) * 0.1
            m.running_mean = torch.randn(c, generator=gen) * 0.1
            m.running_var = torch.rand(c, generator=gen) + 0.5


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, stride=(2, 1), padding=2, dilation=2)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pool = torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.mpool = torch.nn.MaxPool2d(2, stride=2)
        self.w = torch.nn.Parameter(torch.randn(8 * 4 * 8, 10) * 0.1)
        self.b = torch.nn.Parameter(torch.randn(10))

    def forward(self, x):
        x = torch.clamp(self.bn1(self.conv1(x)), 0, 6)
        x = torch.relu(self.dw(x)) + x
        x = self.mpool(self.pool(x))
        x = torch.flatten(x, 1)
        return x @ self.w + self.b


class Unsupported(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        x = torch.sigmoid(self.conv(x))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def save_pb(path, array, name):
    t = numpy_helper.from_array(array, name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def export(out, name, model, size, preserve=False):
    model.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, size, size, generator=gen)
    path = os.path.join(out, name + ".onnx")
    mode = torch.onnx.TrainingMode.PRESERVE if preserve else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(model, x, path, opset_version=13, input_names=["input"],
                      output_names=["logits"], training=mode, do_constant_folding=True,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(path))
    with torch.no_grad():
        y = model(x)
    save_pb(os.path.join(out, name + "_input.pb"), x.numpy(), "input")
    save_pb(os.path.join(out, name + "_logits.pb"), y.numpy(), "logits")


def export_gemm(out):
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(6, 3, 3, 3, generator=gen)
    b = torch.randn(6, 4, generator=gen)
    x = torch.randn(1, 3, 10, 10, generator=gen)
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Constant", [], ["shape"], name="shape",
                         value=numpy_helper.from_array(np.array([-1, 6], np.int64))),
        helper.make_node("Reshape", ["g", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "b", "c0"], ["logits"], name="fc", alpha=0.5, beta=2.0),
    ]
    inits = [numpy_helper.from_array(w.numpy(), "w"), numpy_helper.from_array(b.numpy(), "b"),
             numpy_helper.from_array(np.array([0.25], np.float32), "c0")]
    graph = helper.make_graph(
        nodes, "gemm", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 10, 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, "gemm.onnx"))
    f = torch.relu(torch.nn.functional.conv2d(x, w, padding=1)).mean((2, 3))
    y = 0.5 * f @ b + 2.0 * 0.25
    save_pb(os.path.join(out, "gemm_input.pb"), x.numpy(), "input")
    save_pb(os.path.join(out, "gemm_logits.pb"), y.numpy(), "logits")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    r18 = torchvision.models.resnet18(num_classes=1000)
    randomize_bn(r18, gen)
    export(args.out_dir, "resnet18", r18, 224)
    mnv2 = torchvision.models.mobilenet_v2(num_classes=10)
    randomize_bn(mnv2, gen)
    export(args.out_dir, "mobilenetv2", mnv2, 96, preserve=True)
    small = Small()
    randomize_bn(small, gen)
    export(args.out_dir, "small", small, 32, preserve=True)
    export_gemm(args.out_dir)
    export(args.out_dir, "unsupported", Unsupported(), 8)
    m = onnx.load(os.path.join(args.out_dir, "unsupported.onnx"))
    for n in m.graph.node:
        if n.op_type == "Sigmoid":
            n.name = "the_sigmoid"
    onnx.save(m, os.path.join(args.out_dir, "unsupported.onnx"))


if __name__ == "__main__":
    main()
