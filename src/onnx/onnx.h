/* onnx.h - ONNX import and export.
 *
 * Import turns a classifier graph (NCHW float input [1 or N, 3, H, W], one
 * output of logits) into a whisker network: float graphs (Conv, BatchNormalization,
 * Relu, Clip 0..6, Add, pooling, Gemm/MatMul, Flatten/Reshape) and quantized ones
 * (QuantizeLinear/DequantizeLinear, QLinearConv, QLinearAdd, QLinearMatMul,
 * QLinearGlobalAveragePool), whose weights are dequantized to float and whose
 * folded ReLU/ReLU6 is restored from each output's quantization range (see
 * onnx_quant.c). Anything else fails with a message naming the node and its op.
 *
 * Export writes any whisker network as a float ONNX graph (opset 13): input
 * "input" float [N, C, H, W] with N dynamic, output "logits" [N, classes]. */
#ifndef WK_ONNX_H
#define WK_ONNX_H

#include <stdint.h>

#include "modelio/model.h"
#include "nn/net.h"

/* Reads an .onnx file into a finalized network with its weights and a meta:
 * arch "onnx", class names from a whisker export's metadata (refused, naming
 * the file and the class, where the model loader would refuse them) or
 * "class0".. (replace them after), the ImageNet preprocessing for the graph's input
 * size, provenance naming the file. */
wk_status wk_onnx_import(wk_ctx *ctx, const char *path, wk_net **net, wk_model_meta *meta);

/* Writes net as path (atomically). meta (may be NULL) gives the class names,
 * kept in the file's metadata; a name the model loader would refuse
 * (wk_model_check_class_name) fails the export, naming path and the class,
 * and nothing is written. */
wk_status wk_onnx_export(const char *path, wk_net *net, const wk_model_meta *meta);

/* Reads a serialized onnx.TensorProto file (the ONNX test-data layout) of any
 * numeric type as float: *data (malloc'ed, row-major) with its dims. */
#define WK_ONNX_MAX_DIMS 8
wk_status wk_onnx_read_tensor_file(const char *path, float **data, int64_t dims[WK_ONNX_MAX_DIMS],
                                   int *ndim);

#endif
