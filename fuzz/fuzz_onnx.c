/* fuzz_onnx.c - an .onnx file through `whisker import`: the protobuf-c
 * unpacking, the graph walk, the op mapping (float and QLinear), the weight
 * dequantization and the network build. */
#include "fuzz_util.h"

#include "onnx/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wk_ctx *ctx = wk_fuzz_ctx();
  wk_fuzz_file file;
  if (wk_fuzz_file_open(&file, data, size) != 0) return 0;
  wk_net *net;
  wk_model_meta meta;
  if (wk_onnx_import(ctx, file.path, &net, &meta) == WK_OK) {
    wk_net_destroy(net);
    wk_model_meta_free(&meta);
  }
  wk_fuzz_file_close(&file);
  return 0;
}
