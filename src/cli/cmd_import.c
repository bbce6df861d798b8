/* cmd_import.c - `whisker import MODEL.onnx OUT.safetensors [--labels FILE]`:
 * an ONNX classifier as a whisker model file. */
#include <errno.h>
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
             "--labels FILE  class names, one per line (e.g. synset.txt); default class0..\n");
}

/* Reads one class name per line into meta (the count must match). */
static wk_status wk_read_labels(const char *path, wk_model_meta *meta) {
  FILE *f = fopen(path, "r");
  if (!f) return wk_fail(WK_ERR_IO, "%s: %s", path, strerror(errno));
  char line[1024];
  int n = 0;
  wk_status s = WK_OK;
  while (s == WK_OK && fgets(line, sizeof line, f)) {
    size_t len = strcspn(line, "\r\n");
    if (line[len] == '\0' && !feof(f)) {
      s = wk_fail(WK_ERR_FORMAT, "%s: line %d is longer than 1023 bytes", path, n + 1);
      break;
    }
    line[len] = '\0';
    if (len == 0) continue;
    if (len > 255) line[255] = '\0';
    if (n < meta->n_classes) s = wk_model_meta_set_class(meta, n, line);
    n++;
  }
  fclose(f);
  if (s == WK_OK && n != meta->n_classes)
    s = wk_fail(WK_ERR_FORMAT, "%s: %d labels for a model with %d classes", path, n,
                meta->n_classes);
  return s;
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
      fprintf(stderr, "whisker import: unexpected argument '%s'\n", argv[i]);
      wk_usage_import(stderr);
      return WK_EXIT_USAGE;
    } else {
      pos[n_pos++] = argv[i];
    }
  }
  if (n_pos != 2) {
    wk_usage_import(stderr);
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx = NULL;
  wk_net *net = NULL;
  wk_model_meta meta = {0};
  wk_status s = wk_ctx_create(&ctx, 1);
  if (s == WK_OK) s = wk_onnx_import(ctx, pos[0], &net, &meta);
  if (s == WK_OK && labels) s = wk_read_labels(labels, &meta);
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
