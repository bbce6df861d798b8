/* cmd_convert.c - `whisker convert MODEL OUT [--f16 | --f32]`: rewrites a model
 * file with its weights stored in half or single precision. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "modelio/model.h"
#include "whisker.h"

static void wk_usage_convert(FILE *f) {
  fprintf(f, "usage: whisker convert MODEL OUT [--f16 | --f32]\n\n"
             "Writes MODEL's network, classes, preprocessing and provenance to OUT with the\n"
             "weights stored as IEEE half precision (--f16, the default: half the size, for\n"
             "shipping a trained model) or single precision (--f32). whisker computes in f32\n"
             "either way. OUT is written atomically.\n");
}

int wk_cmd_convert(int argc, char **argv) {
  const char *in = NULL, *out = NULL;
  bool f16 = true;
  wk_opts_seen seen = {0};
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      wk_usage_convert(stdout);
      return WK_EXIT_OK;
    } else if (!strcmp(a, "--f16") || !strcmp(a, "--f32")) {
      f16 = !strcmp(a, "--f16");
      wk_seen_add(&seen, a);
    } else if (a[0] != '-' && !in) {
      in = a;
    } else if (a[0] != '-' && !out) {
      out = a;
    } else {
      return wk_arg_unknown("convert", a, wk_usage_convert);
    }
  }
  static const char *const alt[] = {"--f16", "--f32", NULL};
  if (wk_seen_clash("convert", &seen, alt)) return WK_EXIT_USAGE;
  if (!in || !out) {
    fprintf(stderr, "whisker convert: %s\n\n",
            in ? "OUT is missing" : "MODEL and OUT are required");
    wk_usage_convert(stderr);
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx;
  wk_net *net = NULL;
  wk_model_meta meta;
  wk_status s = wk_ctx_create(&ctx, 1);
  if (s == WK_OK) {
    s = wk_model_load(ctx, in, &net, &meta);
    if (s == WK_OK) {
      s = f16 ? wk_model_save_f16(out, net, &meta) : wk_model_save(out, net, &meta, NULL, 0,
                                                                   NULL, 0);
      wk_net_destroy(net);
      wk_model_meta_free(&meta);
    }
    wk_ctx_destroy(ctx);
  }
  if (s != WK_OK) {
    fprintf(stderr, "whisker convert: %s\n", wk_last_error());
    return WK_EXIT_FAIL;
  }
  struct stat sa, sb;
  if (stat(in, &sa) == 0 && stat(out, &sb) == 0)
    printf("%s: %.1f MB -> %s: %.1f MB (%s)\n", in, sa.st_size / 1e6, out, sb.st_size / 1e6,
           f16 ? "f16" : "f32");
  return WK_EXIT_OK;
}
