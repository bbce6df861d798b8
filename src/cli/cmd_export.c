/* cmd_export.c - `whisker export MODEL OUT.onnx`: a model file as a float ONNX
 * graph that ONNX Runtime (or any opset-13 runtime) runs. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "onnx/onnx.h"
#include "whisker.h"

static void wk_usage_export(FILE *f) {
  fprintf(f, "usage: whisker export MODEL OUT.onnx\n\n"
             "Writes a whisker model as a float ONNX graph (opset 13): input \"input\" float\n"
             "[batch, 3, H, W] (NCHW, preprocessed as the model says), output \"logits\"\n"
             "[batch, classes]. The file is written atomically.\n");
}

int wk_cmd_export(int argc, char **argv) {
  const char *pos[2] = {NULL, NULL};
  int n_pos = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      wk_usage_export(stdout);
      return WK_EXIT_OK;
    } else if (argv[i][0] == '-' || n_pos == 2) {
      return wk_arg_unknown("export", argv[i], wk_usage_export);
    } else {
      pos[n_pos++] = argv[i];
    }
  }
  if (n_pos != 2) {
    fprintf(stderr, "whisker export: %s\n\n",
            n_pos ? "OUT.onnx is missing" : "MODEL and OUT.onnx are required");
    wk_usage_export(stderr);
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx = NULL;
  wk_net *net = NULL;
  wk_model_meta meta = {0};
  wk_status s = wk_ctx_create(&ctx, 1);
  if (s == WK_OK) s = wk_model_load(ctx, pos[0], &net, &meta);
  if (s == WK_OK) s = wk_onnx_export(pos[1], net, &meta);
  if (s == WK_OK) {
    int h, w, c;
    wk_net_input_shape(net, &h, &w, &c);
    printf("exported %s -> %s: input [batch, %d, %d, %d], output [batch, %d]\n", pos[0], pos[1],
           c, h, w, meta.n_classes);
  } else {
    fprintf(stderr, "whisker export: %s\n", wk_last_error());
  }
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  return s == WK_OK ? WK_EXIT_OK : WK_EXIT_FAIL;
}
