/* zero_shot.c - accuracy of a model trained on other classes (ImageNet) on a
 * folder-per-class dataset, by mapping ranges of the model's classes onto the
 * dataset's: no training at all.
 *
 *   wk_zero_shot MODEL DATA_DIR NAME=LO-HI[,LO-HI...] ... [--batch 32] [--workers 2]
 *   wk_zero_shot mnv2.safetensors dogs-vs-cats/val cat=281-285 dog=151-268
 *
 * Each NAME must be a class folder of DATA_DIR. Two rules are reported:
 *   argmax: the model's top class, mapped to the group holding it (a top class
 *           in no group counts as wrong) - the headline number;
 *   sum:    the group with the largest total probability (never abstains);
 *   within: the top class among the groups' classes only, mapped (never
 *           abstains).
 * --dump FILE writes the dataset's labels (int32, one per image) then every
 * image's probabilities (float32, n x classes), native byte order, for
 * averaging several views (scripts/zero_shot_tencrop.py).
 * Uses the model's evaluation preprocessing (wk_predict_dataset). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelio/model.h"
#include "train/predict.h"
#include "whisker.h"

#define WK_ZS_MAX_GROUPS 16
#define WK_ZS_MAX_RANGES 16

typedef struct wk_zs_group {
  const char *name;
  int label; /* the dataset's label of the folder NAME */
  int n_ranges;
  int lo[WK_ZS_MAX_RANGES], hi[WK_ZS_MAX_RANGES];
} wk_zs_group;

static int wk_zs_parse(char *arg, wk_zs_group *g) {
  char *eq = strchr(arg, '=');
  if (!eq || eq == arg) return -1;
  *eq = '\0';
  g->name = arg;
  g->n_ranges = 0;
  for (char *r = strtok(eq + 1, ","); r; r = strtok(NULL, ",")) {
    int lo, hi;
    if (g->n_ranges == WK_ZS_MAX_RANGES) return -1;
    if (sscanf(r, "%d-%d", &lo, &hi) != 2) {
      if (sscanf(r, "%d", &lo) != 1) return -1;
      hi = lo;
    }
    if (lo < 0 || hi < lo) return -1;
    g->lo[g->n_ranges] = lo;
    g->hi[g->n_ranges++] = hi;
  }
  return g->n_ranges ? 0 : -1;
}

static bool wk_zs_in(const wk_zs_group *g, int k) {
  for (int r = 0; r < g->n_ranges; r++)
    if (k >= g->lo[r] && k <= g->hi[r]) return true;
  return false;
}

static void wk_zs_usage(void) {
  fprintf(stderr, "usage: wk_zero_shot MODEL DATA_DIR NAME=LO-HI[,LO-HI...] ... "
                  "[--batch 32] [--workers 2]\n"
                  "  [--dump FILE]: labels (int32) then probabilities (float32, n x classes)\n"
                  "  [--resize N]: shorter side to N before the centre crop (default: the model's)\n");
}

int main(int argc, char **argv) {
  int resize = 0;
  const char *dump = NULL;
  wk_zs_group groups[WK_ZS_MAX_GROUPS];
  int n_groups = 0, batch = 32, workers = 2;
  const char *pos[2] = {NULL, NULL};
  int n_pos = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
      batch = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--resize") && i + 1 < argc) {
      resize = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--dump") && i + 1 < argc) {
      dump = argv[++i];
    } else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
      workers = atoi(argv[++i]);
    } else if (strchr(argv[i], '=') && n_groups < WK_ZS_MAX_GROUPS) {
      if (wk_zs_parse(argv[i], &groups[n_groups++]) != 0) {
        fprintf(stderr, "wk_zero_shot: bad group '%s'\n", argv[i]);
        return 2;
      }
    } else if (argv[i][0] != '-' && n_pos < 2) {
      pos[n_pos++] = argv[i];
    } else {
      wk_zs_usage();
      return 2;
    }
  }
  if (n_pos != 2 || n_groups < 2 || batch < 1 || workers < 1) {
    wk_zs_usage();
    return 2;
  }
  wk_ctx *ctx = NULL;
  wk_net *net = NULL;
  wk_dataset *ds = NULL;
  wk_model_meta meta = {0};
  float *probs = NULL;
  int32_t *labels = NULL;
  wk_dataset_opts o = wk_dataset_opts_default();
  wk_status s = wk_ctx_create(&ctx, 0);
  if (s == WK_OK) s = wk_model_load(ctx, pos[0], &net, &meta);
  if (s == WK_OK) s = wk_dataset_open_folder(pos[1], &o, &ds);
  for (int g = 0; s == WK_OK && g < n_groups; g++) {
    groups[g].label = -1;
    for (int c = 0; c < wk_dataset_n_classes(ds); c++)
      if (!strcmp(wk_dataset_class_name(ds, c), groups[g].name)) groups[g].label = c;
    if (groups[g].label < 0)
      s = wk_fail(WK_ERR_INVALID_ARG, "%s has no class folder '%s'", pos[1], groups[g].name);
    for (int r = 0; s == WK_OK && r < groups[g].n_ranges; r++)
      if (groups[g].hi[r] >= meta.n_classes)
        s = wk_fail(WK_ERR_INVALID_ARG, "class %d is beyond the model's %d", groups[g].hi[r],
                    meta.n_classes);
  }
  if (s == WK_OK && resize > 0) meta.pre.resize_px = resize; /* shorter side, before the crop */
  if (s == WK_OK) s = wk_predict_dataset(net, &meta.pre, ds, batch, workers, &probs, &labels);
  if (s != WK_OK) {
    fprintf(stderr, "wk_zero_shot: %s\n", wk_last_error());
  } else {
    const int64_t n = wk_dataset_size(ds);
    const int k = meta.n_classes;
    if (dump) {
      FILE *df = fopen(dump, "wb");
      bool ok = df && fwrite(labels, sizeof *labels, (size_t)n, df) == (size_t)n &&
                fwrite(probs, sizeof *probs, (size_t)(n * k), df) == (size_t)(n * k);
      if (df && fclose(df) != 0) ok = false;
      if (!ok) {
        fprintf(stderr, "wk_zero_shot: cannot write %s\n", dump);
        s = WK_ERR_IO;
      }
    }
    int64_t ok_argmax = 0, ok_sum = 0, ok_within = 0, outside = 0, counted = 0;
    for (int64_t i = 0; i < n; i++) {
      const float *p = probs + i * k;
      int top = 0;
      for (int c = 1; c < k; c++)
        if (p[c] > p[top]) top = c;
      int want = -1, by_argmax = -1, by_sum = -1, by_within = -1;
      double best_sum = -1, best_p = -1;
      for (int g = 0; g < n_groups; g++) {
        if (groups[g].label == labels[i]) want = g;
        if (wk_zs_in(&groups[g], top)) by_argmax = g;
        double sum = 0;
        for (int c = 0; c < k; c++) {
          if (!wk_zs_in(&groups[g], c)) continue;
          sum += p[c];
          if (p[c] > best_p) best_p = p[c], by_within = g;
        }
        if (sum > best_sum) best_sum = sum, by_sum = g;
      }
      if (want < 0) continue; /* a class folder no group names */
      counted++;
      outside += by_argmax < 0;
      ok_argmax += by_argmax == want;
      ok_sum += by_sum == want;
      ok_within += by_within == want;
    }
    printf("images      %lld of %s\n", (long long)counted, pos[1]);
    printf("argmax      %.2f%% (%lld correct; %lld with a top class in no group)\n",
           counted ? 100.0 * (double)ok_argmax / (double)counted : 0.0, (long long)ok_argmax,
           (long long)outside);
    printf("group sum   %.2f%% (%lld correct)\n",
           counted ? 100.0 * (double)ok_sum / (double)counted : 0.0, (long long)ok_sum);
    printf("within      %.2f%% (%lld correct)\n",
           counted ? 100.0 * (double)ok_within / (double)counted : 0.0, (long long)ok_within);
  }
  free(probs);
  free(labels);
  wk_dataset_free(ds);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  return s == WK_OK ? 0 : 1;
}
