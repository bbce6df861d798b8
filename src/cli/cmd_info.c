/* cmd_info.c - `whisker info MODEL`: what a model file holds. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "modelio/model.h"
#include "whisker.h"

static void wk_usage_info(FILE *f) {
  fprintf(f, "usage: whisker info MODEL [--layers]\n\n"
             "Prints a model file's architecture, parameter count, classes, preprocessing and\n"
             "provenance (and, for a checkpoint, its training position). --layers lists every\n"
             "node with its output shape and parameter count.\n");
}

/* "1234567" -> "1,234,567" */
static const char *wk_thousands(int64_t v, char *buf, size_t n) {
  char raw[32];
  snprintf(raw, sizeof raw, "%lld", (long long)v);
  size_t len = strlen(raw), o = 0;
  for (size_t i = 0; i < len && o + 2 < n; i++) {
    if (i > 0 && raw[i - 1] != '-' && (len - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = raw[i];
  }
  buf[o] = '\0';
  return buf;
}

static int64_t wk_node_params(const wk_net *net, const wk_node *nd) {
  size_t np;
  const wk_param *p = wk_net_params(net, &np);
  int64_t n = 0;
  for (int k = 0; k < 2; k++)
    if (nd->param[k] >= 0) n += (int64_t)p[nd->param[k]].numel;
  return n;
}

static void wk_print_layers(const wk_net *net) {
  char num[32];
  printf("\n  %-4s %-34s %-15s %-20s %12s\n", "#", "node", "op", "output", "params");
  for (int i = 0; i < wk_net_n_nodes(net); i++) {
    const wk_node *nd = wk_net_node(net, i);
    char shape[48];
    wk_node_shape_str(nd, shape, sizeof shape);
    printf("  %-4d %-34s %-15s %-20s %12s\n", i, nd->name, wk_node_op_name(nd->op), shape,
           wk_thousands(wk_node_params(net, nd), num, sizeof num));
  }
}

int wk_cmd_info(int argc, char **argv) {
  const char *path = NULL;
  bool layers = false;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      wk_usage_info(stdout);
      return WK_EXIT_OK;
    } else if (!strcmp(argv[i], "--layers")) {
      layers = true;
    } else if (argv[i][0] == '-' || path) {
      return wk_arg_unknown("info", argv[i], wk_usage_info);
    } else {
      path = argv[i];
    }
  }
  if (!path) {
    fprintf(stderr, "whisker info: MODEL is required\n\n");
    wk_usage_info(stderr);
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx = NULL;
  wk_st_file *f = NULL;
  wk_net *net = NULL;
  wk_model_meta meta;
  if (wk_ctx_create(&ctx, 1) != WK_OK || wk_model_open(path, &f) != WK_OK ||
      wk_model_load_file(ctx, f, &net, &meta) != WK_OK) {
    fprintf(stderr, "whisker info: %s\n", wk_last_error());
    wk_st_close(f);
    wk_ctx_destroy(ctx);
    return WK_EXIT_FAIL;
  }
  int h, w, c;
  wk_net_input_shape(net, &h, &w, &c);
  size_t np, nb;
  wk_net_params(net, &np);
  wk_net_buffers(net, &nb);
  char num[32];
  int n_by_op[WK_NODE_OP_COUNT] = {0};
  for (int i = 0; i < wk_net_n_nodes(net); i++) n_by_op[wk_net_node(net, i)->op]++;
  printf("model       %s\n", path);
  printf("arch        %s", meta.arch);
  if (strcmp(meta.arch, "mobilenetv2") == 0) printf(" (width %g)", (double)meta.width);
  printf(", input %dx%dx%d, %d nodes (", h, w, c, wk_net_n_nodes(net));
  for (int op = 0, first = 1; op < WK_NODE_OP_COUNT; op++) {
    if (!n_by_op[op]) continue;
    printf("%s%d %s", first ? "" : ", ", n_by_op[op], wk_node_op_name((wk_node_op)op));
    first = 0;
  }
  printf(")\n");
  printf("parameters  %s in %zu tensors (%.1f MB), %zu buffers\n",
         wk_thousands(wk_net_param_count(net), num, sizeof num), np,
         (double)wk_net_param_count(net) * 4.0 / 1e6, nb);
  printf("classes     %d:", meta.n_classes);
  char safe[WK_SAFE_TEXT_MAX(WK_MODEL_CLASS_NAME_MAX)];
  for (int i = 0; i < meta.n_classes && i < 20; i++)
    printf("%s %s", i ? "," : "", wk_safe_text(meta.class_names[i], safe, sizeof safe));
  if (meta.n_classes > 20) printf(", ... (%d more)", meta.n_classes - 20);
  printf("\n");
  printf("preprocess  resize shorter side to %d, centre crop %d, mean (%.3f, %.3f, %.3f), "
         "std (%.3f, %.3f, %.3f)\n", meta.pre.resize_px, meta.pre.crop_px,
         (double)meta.pre.mean[0], (double)meta.pre.mean[1], (double)meta.pre.mean[2],
         (double)meta.pre.std[0], (double)meta.pre.std[1], (double)meta.pre.std[2]);
  printf("provenance  %s\n", meta.provenance ? meta.provenance : "(none)");
  const char *ck = wk_st_meta_get(f, "whisker.checkpoint");
  if (ck) printf("checkpoint  %s\n", ck);
  const char *ver = wk_st_meta_get(f, "whisker.version");
  printf("written by  whisker %s\n", ver ? ver : "(unknown: not written by whisker)");
  if (layers) wk_print_layers(net);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_st_close(f);
  wk_ctx_destroy(ctx);
  return WK_EXIT_OK;
}
