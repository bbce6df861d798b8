/* cmd_eval.c - `whisker eval DATA_DIR --model M`: accuracy, top-k, confusion
 * matrix, per-class precision/recall/F1 and (two classes) ROC AUC. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "train/metrics.h"
#include "train/predict.h"
#include "whisker.h"

static void wk_usage_eval(FILE *f) {
  fprintf(f, "usage: whisker eval DATA_DIR --model MODEL [--top K] [--batch 32] [--workers 2]\n"
             "                    [--threads N] [--device cpu|cuda[:N]|auto] [--json]\n\n"
             "Evaluates MODEL on every image of DATA_DIR (a folder per class, named as the\n"
             "model's classes) with the model's own preprocessing. An image that cannot be\n"
             "read is named on stderr and left out; the report counts those (skipped).\n");
}

/* skipped: the files of the folder that could not be read, so the report says
 * what its figures leave out: those the folder's scan decoded and refused, and
 * any that failed to decode afterwards (changed on disk since the scan). */
static void wk_print_metrics(const wk_metrics *m, const wk_model_meta *meta, int64_t skipped,
                             bool json) {
  const int k = m->n_classes;
  if (json) {
    printf("{\"n\": %lld, \"skipped\": %lld, \"loss\": %.6f, \"accuracy\": %.6f, "
           "\"top_k\": %d, \"top_k_accuracy\": %.6f, ", (long long)m->n, (long long)skipped,
           m->loss, m->accuracy, m->top_k, m->top_k_accuracy);
    if (isnan(m->auc)) printf("\"auc\": null, ");
    else printf("\"auc\": %.6f, ", m->auc);
    printf("\"classes\": [");
    for (int c = 0; c < k; c++) {
      printf("%s{\"name\": ", c ? ", " : "");
      wk_print_json_string(meta->class_names[c]);
      printf(", \"precision\": %.6f, \"recall\": %.6f, \"f1\": %.6f}", m->precision[c],
             m->recall[c], m->f1[c]);
    }
    printf("], \"confusion\": [");
    for (int r = 0; r < k; r++) {
      printf("%s[", r ? ", " : "");
      for (int c = 0; c < k; c++) printf("%s%lld", c ? ", " : "", (long long)m->confusion[r * k + c]);
      printf("]");
    }
    printf("]}\n");
    return;
  }
  printf("images     %lld\n", (long long)m->n);
  if (skipped)
    printf("skipped    %lld (could not be read: named on stderr; not in the figures)\n",
           (long long)skipped);
  printf("accuracy   %.4f\ntop-%d      %.4f\nloss       %.4f\n", m->accuracy, m->top_k,
         m->top_k_accuracy, m->loss);
  char safe[WK_SAFE_TEXT_MAX(WK_MODEL_CLASS_NAME_MAX)];
#define WK_SAFE(name) wk_safe_text((name), safe, sizeof safe)
  if (!isnan(m->auc))
    printf("ROC AUC    %.4f (class '%s' positive)\n", m->auc, WK_SAFE(meta->class_names[1]));
  printf("\n%-20s %9s %9s %9s\n", "class", "precision", "recall", "F1");
  for (int c = 0; c < k; c++)
    printf("%-20.20s %9.4f %9.4f %9.4f\n", WK_SAFE(meta->class_names[c]), m->precision[c],
           m->recall[c], m->f1[c]);
  if (k > 30) return;
  printf("\nconfusion (rows: true class, columns: predicted)\n%-20s", "");
  for (int c = 0; c < k; c++) printf(" %8.8s", WK_SAFE(meta->class_names[c]));
  printf("\n");
  for (int r = 0; r < k; r++) {
    printf("%-20.20s", WK_SAFE(meta->class_names[r]));
    for (int c = 0; c < k; c++) printf(" %8lld", (long long)m->confusion[r * k + c]);
    printf("\n");
  }
#undef WK_SAFE
}

/* A dataset root with train/ and val/ (as 'whisker train' takes it) given
 * whole would read the splits as classes: the error points at the held-out
 * split instead. True when it is one (the error set). */
static bool wk_eval_split_root(const char *data) {
  char *val = wk_dataset_val_folder(data);
  if (!val) return false;
  const char *name = strrchr(val, '/');
  wk_fail(WK_ERR_INVALID_ARG, "%s holds the splits train/ and %s/, not a folder per class: "
          "evaluate on the photos training did not see, %s", data, name ? name + 1 : val, val);
  free(val);
  return true;
}

int wk_cmd_eval(int argc, char **argv) {
  const char *data = NULL, *model = NULL;
  int top = 5, batch = 32, workers = 2, threads = 0, device = WK_DEVICE_CPU;
  bool json = false;
  for (int i = 0; i < argc; i++) {
    int r;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      wk_usage_eval(stdout);
      return WK_EXIT_OK;
    }
    if (!strcmp(argv[i], "--json")) {
      json = true;
      continue;
    }
    if ((r = wk_arg_str("eval", argc, argv, &i, "--model", &model)) ||
        (r = wk_arg_int("eval", argc, argv, &i, "--top", 1, 1000, &top)) ||
        (r = wk_arg_int("eval", argc, argv, &i, "--batch", 1, 4096, &batch)) ||
        (r = wk_arg_int("eval", argc, argv, &i, "--workers", 1, 256, &workers)) ||
        (r = wk_arg_int("eval", argc, argv, &i, "--threads", 1, 1024, &threads)) ||
        (r = wk_arg_device("eval", argc, argv, &i, &device))) {
      if (r < 0) return WK_EXIT_USAGE;
      continue;
    }
    if (argv[i][0] == '-' || data) {
      return wk_arg_unknown("eval", argv[i], wk_usage_eval);
    }
    data = argv[i];
  }
  if (!data || !model) {
    fprintf(stderr, "whisker eval: %s\n\n", data ? "--model MODEL is required"
                                                  : model ? "DATA_DIR is required"
                                                          : "DATA_DIR and --model MODEL are required");
    wk_usage_eval(stderr);
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx = NULL;
  wk_net *net = NULL;
  wk_dataset *ds = NULL;
  wk_model_meta meta = {0};
  float *probs = NULL;
  int32_t *labels = NULL;
  wk_metrics m = {0};
  int rc = WK_EXIT_FAIL;
  wk_dataset_opts o = wk_dataset_opts_default();
  if (wk_eval_split_root(data) || wk_ctx_create(&ctx, threads) != WK_OK ||
      wk_model_load(ctx, model, &net, &meta) != WK_OK ||
      wk_net_place(net, device) != WK_OK || wk_dataset_open_folder(data, &o, &ds) != WK_OK)
    goto done;
  if (wk_dataset_n_classes(ds) != meta.n_classes) {
    const int n = wk_dataset_n_classes(ds);
    wk_fail(WK_ERR_INVALID_ARG, "%s has %d class folder%s, the model %d classes", data, n,
            n == 1 ? "" : "s", meta.n_classes);
    goto done;
  }
  for (int c = 0; c < meta.n_classes; c++)
    if (strcmp(wk_dataset_class_name(ds, c), meta.class_names[c])) {
      char a[WK_SAFE_TEXT_MAX(WK_MODEL_CLASS_NAME_MAX)], b[sizeof a];
      wk_fail(WK_ERR_INVALID_ARG, "class %d is '%s' in %s but '%s' in the model", c,
              wk_safe_text(wk_dataset_class_name(ds, c), a, sizeof a), data,
              wk_safe_text(meta.class_names[c], b, sizeof b));
      goto done;
    }
  if (wk_predict_dataset(net, &meta.pre, ds, batch, workers, &probs, &labels) != WK_OK ||
      wk_metrics_compute(probs, labels, wk_dataset_size(ds), meta.n_classes, top, &m) != WK_OK)
    goto done;
  wk_print_metrics(&m, &meta, wk_dataset_n_bad(ds) + (wk_dataset_size(ds) - m.n), json);
  rc = WK_EXIT_OK;
done:
  if (rc != WK_EXIT_OK) fprintf(stderr, "whisker eval: %s\n", wk_last_error());
  wk_metrics_free(&m);
  free(probs);
  free(labels);
  wk_dataset_free(ds);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  return rc;
}
