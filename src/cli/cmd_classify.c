/* cmd_classify.c - `whisker classify FILE|DIR... [--model M]`: one line per
 * image with its most likely classes, or JSON lines. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/log.h"
#include "data/dataset.h"
#include "train/predict.h"
#include "whisker.h"

#define WK_DEFAULT_MODEL "pretrained/default.safetensors"

static void wk_usage_classify(FILE *f) {
  fprintf(f, "usage: whisker classify FILE|DIR|-... [--model MODEL] [--top 1] [--json]\n"
             "                        [--threads N] [--device cpu|cuda[:N]|auto]\n\n"
             "Prints the most likely classes of each image (a directory: every image in it and\n"
             "its subdirectories, sorted by path; -: a photo on standard input, e.g.\n"
             "curl -s URL | whisker classify -).\n"
             "Without --model, the default model is used: $WHISKER_MODEL, else\n"
             "%s next to the program's source tree or install prefix.\n"
             "An image that cannot be read is reported on stderr (with --json also as a line\n"
             "{\"file\": ..., \"error\": ...}) and skipped; the others are still classified,\n"
             "and the exit status is then 1.\n", WK_DEFAULT_MODEL);
}

typedef struct wk_paths {
  char **v;
  int64_t n, cap;
} wk_paths;

static int wk_paths_add(wk_paths *p, const char *s) {
  if (p->n == p->cap) {
    int64_t cap = p->cap ? 2 * p->cap : 64;
    char **v = realloc(p->v, (size_t)cap * sizeof *v);
    if (!v) return -1;
    p->v = v;
    p->cap = cap;
  }
  if (!(p->v[p->n] = strdup(s))) return -1;
  p->n++;
  return 0;
}

static int wk_cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory's image files, sorted, then those of its subdirectories (hidden
 * entries skipped, at most `depth` levels down). A subfolder that cannot be
 * read, lies too deep, or is a link back to a folder above it (which would
 * list the same photos again at every level) is skipped with a warning naming
 * it; only the folder given failing to open is an error (-1). */
static int wk_add_dir(wk_paths *p, const char *dir, int depth, const wk_dir_link *up) {
  struct stat st;
  DIR *d = stat(dir, &st) == 0 ? opendir(dir) : NULL;
  if (!d) {
    if (!up) return -1;
    WK_LOG_W("skipping %s: %s", dir, strerror(errno));
    return 0;
  }
  if (wk_dir_link_loops(up, &st)) {
    WK_LOG_W("skipping %s: a link back to a folder above it (a loop)", dir);
    closedir(d);
    return 0;
  }
  const wk_dir_link here = {st.st_dev, st.st_ino, up};
  const int64_t first = p->n;
  wk_paths subdirs = {0};
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
      WK_LOG_W("skipping %s/%s: path too long", dir, e->d_name);
      continue;
    }
    struct stat est;
    if (stat(path, &est) != 0) continue; /* a dangling link */
    if (S_ISDIR(est.st_mode)) {
      if (depth > 0) rc = wk_paths_add(&subdirs, path);
      else WK_LOG_W("skipping %s: nested too deep", path);
    } else if (wk_is_image_name(e->d_name)) {
      rc = wk_paths_add(p, path);
    }
  }
  closedir(d);
  if (p->n > first) qsort(p->v + first, (size_t)(p->n - first), sizeof *p->v, wk_cmp_str);
  if (subdirs.n) qsort(subdirs.v, (size_t)subdirs.n, sizeof *subdirs.v, wk_cmp_str);
  for (int64_t i = 0; i < subdirs.n; i++) {
    if (rc == 0) rc = wk_add_dir(p, subdirs.v[i], depth - 1, &here);
    free(subdirs.v[i]);
  }
  free(subdirs.v);
  return rc;
}

static const char *wk_default_model(char *buf, size_t n) {
  const char *env = getenv("WHISKER_MODEL");
  if (env && *env) return env;
  char exe[2048];
  if (wk_exe_dir(exe, sizeof exe)) {
    /* build/whisker -> ../pretrained; prefix/bin/whisker -> ../share/whisker/pretrained */
    const char *rel[] = {"../" WK_DEFAULT_MODEL, "../share/whisker/" WK_DEFAULT_MODEL};
    for (int i = 0; i < 2; i++) {
      if (snprintf(buf, n, "%s/%s", exe, rel[i]) >= (int)n) continue;
      if (access(buf, R_OK) == 0) return buf;
    }
  }
  return NULL;
}

typedef struct wk_ranked {
  float p;
  int cls;
} wk_ranked;

/* Higher probability first; equal ones by class index, as eval's top-k. */
static int wk_cmp_ranked(const void *a, const void *b) {
  const wk_ranked *x = a, *y = b;
  return x->p > y->p ? -1 : x->p < y->p ? 1 : (x->cls > y->cls) - (x->cls < y->cls);
}

/* rank: room for meta->n_classes entries */
static void wk_print_one(const char *path, const float *row, const wk_model_meta *meta, int top,
                         bool json, wk_ranked *rank) {
  const int k = meta->n_classes;
  if (top > k) top = k;
  for (int j = 0; j < k; j++) rank[j] = (wk_ranked){row[j], j};
  qsort(rank, (size_t)k, sizeof *rank, wk_cmp_ranked);
  if (json) {
    printf("{\"file\": ");
    wk_print_json_string(path);
    printf(", \"top\": [");
    for (int t = 0; t < top; t++) {
      printf("%s{\"class\": ", t ? ", " : "");
      wk_print_json_string(meta->class_names[rank[t].cls]);
      printf(", \"probability\": %.6f}", rank[t].p);
    }
    printf("]}\n");
    return;
  }
  char safe[WK_SAFE_TEXT_MAX(4096)];
  printf("%s\t", wk_safe_text(path, safe, sizeof safe));
  for (int t = 0; t < top; t++)
    printf("%s%s %.4f", t ? ", " : "",
           wk_safe_text(meta->class_names[rank[t].cls], safe, sizeof safe), rank[t].p);
  printf("\n");
}

int wk_cmd_classify(int argc, char **argv) {
  const char *model = NULL;
  int top = 1, threads = 0, device = WK_DEVICE_CPU;
  bool json = false;
  wk_paths paths = {0};
  int rc = WK_EXIT_USAGE, n_dirs = 0, n_empty = 0, stdin_taken = 0;
  wk_ctx *ctx = NULL;
  wk_net *net = NULL;
  wk_model_meta meta = {0};
  float *probs = NULL;
  wk_ranked *rank = NULL; /* classes by probability, for one image at a time */
  char **why = NULL; /* (paths.n) why an image has no answer, from wk_predict_files */
  const char **empty = calloc((size_t)argc + 1, sizeof *empty); /* folders with no photo */
  if (!empty) {
    fprintf(stderr, "whisker classify: out of memory\n");
    return WK_EXIT_FAIL;
  }
  for (int i = 0; i < argc; i++) {
    int r;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      wk_usage_classify(stdout);
      rc = WK_EXIT_OK;
      goto done;
    }
    if (!strcmp(argv[i], "--json")) {
      json = true;
      continue;
    }
    if ((r = wk_arg_str("classify", argc, argv, &i, "--model", &model)) ||
        (r = wk_arg_int("classify", argc, argv, &i, "--top", 1, 1000, &top)) ||
        (r = wk_arg_int("classify", argc, argv, &i, "--threads", 1, 1024, &threads)) ||
        (r = wk_arg_device("classify", argc, argv, &i, &device))) {
      if (r < 0) goto done;
      continue;
    }
    if (!strcmp(argv[i], "-")) { /* a photo on standard input */
      if (stdin_taken++) {
        fprintf(stderr, "whisker classify: '-' (standard input) given twice\n");
        goto done;
      }
      if (wk_paths_add(&paths, "-")) {
        fprintf(stderr, "whisker classify: out of memory\n");
        rc = WK_EXIT_FAIL;
        goto done;
      }
      continue;
    }
    if (argv[i][0] == '-') {
      rc = wk_arg_unknown("classify", argv[i], wk_usage_classify);
      goto done;
    }
    struct stat st;
    const bool is_dir = stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode);
    const int64_t before = paths.n;
    n_dirs += is_dir;
    if (is_dir ? wk_add_dir(&paths, argv[i], 8, NULL) : wk_paths_add(&paths, argv[i])) {
      fprintf(stderr, "whisker classify: %s: cannot read the directory\n", argv[i]);
      rc = WK_EXIT_FAIL;
      goto done;
    }
    if (is_dir && paths.n == before) empty[n_empty++] = argv[i];
  }
  for (int e = 0; e < n_empty; e++) { /* a folder with no photo is named, never passed over */
    char safe[WK_SAFE_TEXT_MAX(512)];
    wk_safe_text(empty[e], safe, sizeof safe);
    if (paths.n == 0)
      fprintf(stderr, "whisker classify: %s: no image files (" WK_IMAGE_EXTS ") in this folder\n",
              safe);
    else
      WK_LOG_W("%s: no image files (" WK_IMAGE_EXTS ") in this folder", safe);
  }
  if (paths.n == 0 && n_dirs > 0) {
    rc = WK_EXIT_FAIL;
    goto done;
  }
  if (paths.n == 0) {
    fprintf(stderr, "whisker classify: no images given\n");
    wk_usage_classify(stderr);
    goto done;
  }
  rc = WK_EXIT_FAIL;
  char buf[4096];
  if (!model && !(model = wk_default_model(buf, sizeof buf))) {
    fprintf(stderr, "whisker classify: no default model is installed (looked for $WHISKER_MODEL "
                    "and %s); train one with 'whisker train' and pass --model\n",
            WK_DEFAULT_MODEL);
    goto done;
  }
  if (wk_ctx_create(&ctx, threads) != WK_OK || wk_model_load(ctx, model, &net, &meta) != WK_OK ||
      wk_net_place(net, device) != WK_OK) {
    fprintf(stderr, "whisker classify: %s\n", wk_last_error());
    goto done;
  }
  probs = malloc((size_t)(paths.n * meta.n_classes) * sizeof *probs);
  why = calloc((size_t)paths.n, sizeof *why);
  rank = malloc((size_t)meta.n_classes * sizeof *rank);
  int64_t bad = 0;
  if (!probs || !why || !rank) {
    fprintf(stderr, "whisker classify: out of memory for %lld images\n", (long long)paths.n);
    goto done;
  }
  if (wk_predict_files(net, &meta.pre, (const char *const *)paths.v, paths.n, 16, probs, &bad,
                       why) != WK_OK) {
    fprintf(stderr, "whisker classify: %s\n", wk_last_error());
    goto done;
  }
  for (int64_t i = 0; i < paths.n; i++) {
    if (!isnan(probs[i * meta.n_classes]))
      wk_print_one(paths.v[i], probs + i * meta.n_classes, &meta, top, json, rank);
    else if (json) { /* the line a script reads says why this file has no answer */
      printf("{\"file\": ");
      wk_print_json_string(paths.v[i]);
      printf(", \"error\": ");
      wk_print_json_string(why[i] ? why[i] : "could not be classified");
      printf("}\n");
    }
  }
  if (bad) fprintf(stderr, "whisker classify: %lld of %lld images could not be classified\n",
                   (long long)bad, (long long)paths.n);
  /* any image lost is a failure a script must be able to see; the rest are printed */
  rc = bad ? WK_EXIT_FAIL : WK_EXIT_OK;
done:
  for (int64_t i = 0; i < paths.n; i++) {
    free(paths.v[i]);
    if (why) free(why[i]);
  }
  free(why);
  free(empty);
  free(paths.v);
  free(probs);
  free(rank);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  return rc;
}
