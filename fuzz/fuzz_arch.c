/* fuzz_arch.c - the "whisker.arch" JSON of a model file on its own (the graph
 * builder's checks of every node), without the safetensors framing around it. */
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>

#include "modelio/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wk_ctx *ctx = wk_fuzz_ctx();
  char *json = malloc(size + 1);
  if (!json) return 0;
  memcpy(json, data, size);
  json[size] = '\0';
  wk_net *net;
  wk_model_meta meta = {0};
  if (wk_arch_from_json(ctx, json, "fuzz", &net, &meta) == WK_OK) wk_net_destroy(net);
  free(json);
  return 0;
}
