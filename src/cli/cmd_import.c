/* cmd_import.c - `whisker import MODEL.onnx OUT.safetensors [--labels FILE]`:
 * an ONNX classifier as a whisker model file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "onnx/onnx.h"
#include "whisker.h"

static void wk_usage_import(FILE *f) {
  fprintf(f, "usage: whisker import MODEL.onnx OUT.safetensors [--labels FILE]\n\n"
             "Converts an ONNX image classifier (NCHW float input, logits output; float or\n"
             "QLinear-quantized, which is dequantized) into a whisker model file.\n"
             "--labels FILE  class names, one per line (e.g. synset.txt): UTF-8, 1 to 255\n"
             "               bytes each; blank lines, a byte order mark, CRLF or CR line\n"
             "               ends are fine. Default: the names a whisker export keeps in\n"
             "               the file, else class0..\n");
}

int wk_cmd_import(int argc, char **argv) {
  const char *pos[2] = {NULL, NULL}, *labels = NULL;
  int n_pos = 0;
  for (int i = 0; i < argc; i++) {
    int r;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      wk_usage_import(stdout);
      return WK_EXIT_OK;
    } else if ((r = wk_arg_str("import", argc, argv, &i, "--labels", &labels)) != 0) {
      if (r < 0) return WK_EXIT_USAGE;
    } else if (argv[i][0] == '-' || n_pos == 2) {
      return wk_arg_unknown("import", argv[i], wk_usage_import);
    } else {
      pos[n_pos++] = argv[i];
    }
  }
  if (n_pos != 2) {
    fprintf(stderr, "whisker import: %s\n\n", n_pos ? "OUT.safetensors is missing"
                                                   : "MODEL.onnx and OUT.safetensors are required");
    wk_usage_import(stderr);
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx = NULL;
  wk_net *net = NULL;
  wk_model_meta meta = {0};
  wk_status s = wk_ctx_create(&ctx, 1);
  if (s == WK_OK) s = wk_onnx_import(ctx, pos[0], &net, &meta);
  if (s == WK_OK && labels) s = wk_model_meta_read_labels(&meta, labels);
  if (s == WK_OK) s = wk_model_save(pos[1], net, &meta, NULL, 0, NULL, 0);
  if (s == WK_OK) {
    int h, w, c;
    wk_net_input_shape(net, &h, &w, &c);
    printf("imported %s -> %s: %d nodes, %lld parameters, input %dx%dx%d, %d classes\n", pos[0],
           pos[1], wk_net_n_nodes(net), (long long)wk_net_param_count(net), h, w, c,
           meta.n_classes);
  } else {
    fprintf(stderr, "whisker import: %s\n", wk_last_error());
  }
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  return s == WK_OK ? WK_EXIT_OK : WK_EXIT_FAIL;
}
