/* fuzz_model.c - a model file or checkpoint: the safetensors reader (header
 * JSON, offsets, dtypes) and, when that accepts the file, the model loader
 * (architecture metadata, parameter names and shapes, classes,
 * preprocessing), or for a file with "whisker.checkpoint" metadata the
 * checkpoint loader (training configuration, optimizer state), as --resume
 * reads it. */
#include "fuzz_util.h"

#include "modelio/model.h"
#include "train/trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wk_ctx *ctx = wk_fuzz_ctx();
  wk_fuzz_file file;
  if (wk_fuzz_file_open(&file, data, size) != 0) return 0;
  wk_st_file *f;
  wk_net *net;
  wk_model_meta meta;
  if (wk_st_open(file.path, &f) == WK_OK) {
    bool checkpoint = wk_st_meta_get(f, "whisker.checkpoint") != NULL;
    if (!checkpoint && wk_model_load_file(ctx, f, &net, &meta) == WK_OK) {
      wk_net_destroy(net);
      wk_model_meta_free(&meta);
    }
    wk_st_close(f);
    wk_trainer *t;
    wk_data_pos pos;
    if (checkpoint && wk_checkpoint_load(ctx, file.path, &net, &t, &meta, &pos) == WK_OK) {
      wk_trainer_destroy(t);
      wk_net_destroy(net);
      wk_model_meta_free(&meta);
    }
  }
  wk_fuzz_file_close(&file);
  return 0;
}
