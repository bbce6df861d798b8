/* fuzz_model.c - a model file: the safetensors reader (header JSON, offsets,
 * dtypes) and, when that accepts the file, the model loader (architecture
 * metadata, parameter names and shapes, classes, preprocessing). */
#include "fuzz_util.h"

#include "modelio/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wk_ctx *ctx = wk_fuzz_ctx();
  wk_fuzz_file file;
  if (wk_fuzz_file_open(&file, data, size) != 0) return 0;
  wk_st_file *f;
  if (wk_st_open(file.path, &f) == WK_OK) {
    for (size_t i = 0; i < wk_st_count(f); i++) (void)wk_st_entry_at(f, i)->n_bytes;
    wk_net *net;
    wk_model_meta meta;
    if (wk_model_load_file(ctx, f, &net, &meta) == WK_OK) {
      wk_net_destroy(net);
      wk_model_meta_free(&meta);
    }
    wk_st_close(f);
  }
  wk_fuzz_file_close(&file);
  return 0;
}
