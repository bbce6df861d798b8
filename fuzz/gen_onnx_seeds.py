#!/usr/bin/python3
"""gen_onnx_seeds.py - a tiny int8 classifier in the ONNX Model Zoo's QLinear
form (QuantizeLinear, QLinearConv with per-channel weights and a folded ReLU
range, com.microsoft QLinearAdd and QLinearGlobalAveragePool, QLinearMatMul,
DequantizeLinear), as a seed for fuzz/fuzz_onnx.c. Debian's python3-onnx:
    /usr/bin/python3 fuzz/gen_onnx_seeds.py fuzz/corpus/fuzz_onnx
"""
import os
import sys

import numpy as np
from onnx import TensorProto, checker, helper, numpy_helper

rng = np.random.default_rng(7)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def main(out):
    u8, i8 = np.uint8, np.int8
    inits = [
        init("x_scale", np.float32(0.02)), init("x_zp", u8(128)),
        init("w_q", rng.integers(-20, 20, (4, 3, 3, 3)).astype(i8)),
        init("w_scale", np.full(4, 0.01, np.float32)), init("w_zp", np.zeros(4, i8)),
        init("b_q", rng.integers(-50, 50, 4).astype(np.int32)),
        init("y_scale", np.float32(6.0 / 255)), init("y_zp", u8(0)),   # [0, 6]: ReLU6
        init("s_scale", np.float32(0.05)), init("s_zp", u8(0)),
        init("p_scale", np.float32(0.03)), init("p_zp", u8(0)),
        init("m_q", rng.integers(-30, 30, (4, 2)).astype(i8)),
        init("m_scale", np.float32(0.02)), init("m_zp", i8(0)),
        init("o_scale", np.float32(0.1)), init("o_zp", u8(128)),
        init("shape", np.array([1, -1], np.int64)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zp"], ["xq"], name="quant_in"),
        helper.make_node("QLinearConv", ["xq", "x_scale", "x_zp", "w_q", "w_scale", "w_zp",
                                         "y_scale", "y_zp", "b_q"], ["c1"], name="conv1",
                         pads=[1, 1, 1, 1], strides=[1, 1], kernel_shape=[3, 3]),
        helper.make_node("QLinearAdd", ["c1", "y_scale", "y_zp", "c1", "y_scale", "y_zp",
                                        "s_scale", "s_zp"], ["sum"], name="add1",
                         domain="com.microsoft"),
        helper.make_node("QLinearGlobalAveragePool", ["sum", "s_scale", "s_zp", "p_scale", "p_zp"],
                         ["pool"], name="pool", domain="com.microsoft", channels_last=0),
        helper.make_node("Reshape", ["pool", "shape"], ["flat"], name="flatten"),
        helper.make_node("QLinearMatMul", ["flat", "p_scale", "p_zp", "m_q", "m_scale", "m_zp",
                                           "o_scale", "o_zp"], ["logits_q"], name="fc"),
        helper.make_node("DequantizeLinear", ["logits_q", "o_scale", "o_zp"], ["output"],
                         name="dequant_out"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_qlinear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, producer_name="whisker fuzz seeds", opset_imports=[
        helper.make_opsetid("", 12), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 7
    checker.check_model(model)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tiny_qlinear.onnx"), "wb") as f:
        f.write(model.SerializeToString())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/fuzz_onnx")
