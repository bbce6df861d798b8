/* cmd_clicks.c - `whisker clicks render|score|eval`: clickstream logs as
 * images (a folder per label that `whisker train` reads), scoring sessions
 * with a model, and the Balabit protocol end to end. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "clicks/balabit.h"
#include "core/clock.h"
#include "whisker.h"

static void wk_usage_clicks(FILE *f) {
  fprintf(f,
          "usage: whisker clicks render INPUT... --out DIR [--labels CSV] [options]\n"
          "       whisker clicks score SESSION... --model M [--user NAME] [--json]\n"
          "       whisker clicks eval BALABIT_DIR --labels CSV [--out DIR] [options] [--json]\n"
          "\n"
          "render  parses clickstream files (INPUT: files or folders; Balabit CSV, a CSV with\n"
          "        time,x,y[,button,event] columns, or JSON lines, detected from the content),\n"
          "        cuts each session into windows and writes one PNG per window to\n"
          "        DIR/<label>/<session>_<n>.png. The label is the session's row in --labels\n"
          "        (filename,label) or else the name of the folder holding the file.\n"
          "score   prints, for each session, the probability that it is not its claimed user\n"
          "        (--user, or the name of the folder holding the file).\n"
          "eval    the Balabit protocol: trains one model over the users of\n"
          "        BALABIT_DIR/training_files, scores the sessions of --labels found under\n"
          "        BALABIT_DIR/test_files and prints the session-level ROC AUC and EER.\n"
          "\n"
          "options (render, eval):\n"
          "  --size S          image side in pixels (48)\n"
          "  --window N|Ts     N events or T seconds per window (128)\n"
          "  --stride F        step between windows, a fraction of the window (1)\n"
          "  --score-stride F  eval: the stride of scoring windows (0.5)\n"
          "  --min-events N    windows of fewer events are dropped (16); with --window N,\n"
          "                    only a session shorter than N events gives such a window\n"
          "  --scale screen|bbox  map the screen or the window's bounding box (screen)\n"
          "  --screen WxH      screen size for --scale screen (1920x1080)\n"
          "  --pause S         gaps of at least S seconds get a pause mark (0.5)\n"
          "  --format auto|balabit|csv|jsonl (auto)\n"
          "  --max-rows N      more rows refuse the file (20000000; a file is at most 256 MiB)\n"
          "  --max-line BYTES  longer rows are dropped and counted (4096, at least 64)\n"
          "eval: --epochs N (8) --batch B (64) --lr X (0.003) --arch A (smallcnn) --seed N (1)\n"
          "      --models N (2: an ensemble of N models, seeds seed.., scores averaged)\n"
          "      --threads N\n");
}

/* ---------------------------------------------------------------- options */

typedef struct wk_clicks_opts {
  wk_clicks_cfg cfg;
  wk_clicks_train_cfg train;
  wk_click_parse_opts parse;
  const char *out, *labels, *model, *user;
  const char *window_opt; /* the first window or rendering option given, or NULL */
  bool min_events_given;
  bool json;
  int threads;
} wk_clicks_opts;

static int wk_parse_window(const char *cmd, const char *v, wk_click_window_cfg *w) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!errno && end != v && (*end == 's' && end[1] == 0) && x >= WK_CLICK_MIN_WINDOW_S &&
      x <= 1e6) {
    w->time_s = x;
    w->events = 0;
    return 1;
  }
  if (!errno && end != v && *end == 0 && x >= 2 && x <= 1e7 && x == floor(x)) {
    w->events = (int)x;
    w->time_s = 0;
    return 1;
  }
  fprintf(stderr, "whisker %s: --window needs N events (2..10000000) or T seconds, 0.001s to "
                  "1000000s (e.g. 2.5s), got '%s'\n", cmd, v);
  return -1;
}

/* One option at argv[*i]: 1 consumed, 0 not an option of ours, -1 usage error. */
static int wk_clicks_option(const char *cmd, int argc, char **argv, int *i, wk_clicks_opts *o) {
  const char *v = NULL;
  int r;
  if (!strcmp(argv[*i], "--json")) return o->json = true, 1;
  if ((r = wk_arg_str(cmd, argc, argv, i, "--window", &v)))
    return r < 0 ? r : wk_parse_window(cmd, v, &o->cfg.window);
  if ((r = wk_arg_str(cmd, argc, argv, i, "--scale", &v))) {
    if (r < 0) return r;
    if (!strcmp(v, "screen")) o->cfg.render.scale = WK_CLICK_SCALE_SCREEN;
    else if (!strcmp(v, "bbox")) o->cfg.render.scale = WK_CLICK_SCALE_BBOX;
    else return fprintf(stderr, "whisker %s: --scale is screen or bbox, got '%s'\n", cmd, v), -1;
    return 1;
  }
  if ((r = wk_arg_str(cmd, argc, argv, i, "--screen", &v))) {
    int w = 0, h = 0;
    char tail;
    if (r < 0) return r;
    if (sscanf(v, "%dx%d%c", &w, &h, &tail) != 2 || w < 1 || h < 1 || w > WK_CLICK_MAX_COORD ||
        h > WK_CLICK_MAX_COORD)
      return fprintf(stderr, "whisker %s: --screen needs WxH, e.g. 1920x1080, got '%s'\n", cmd,
                     v), -1;
    o->cfg.render.screen_w_px = w;
    o->cfg.render.screen_h_px = h;
    return 1;
  }
  if ((r = wk_arg_str(cmd, argc, argv, i, "--format", &v))) {
    if (r < 0) return r;
    const char *names[] = {"auto", "balabit", "csv", "jsonl"};
    for (int k = 0; k < 4; k++)
      if (!strcmp(v, names[k])) return o->parse.format = (wk_click_format)k, 1;
    return fprintf(stderr, "whisker %s: --format is auto, balabit, csv or jsonl\n", cmd), -1;
  }
  if ((r = wk_arg_double(cmd, argc, argv, i, "--stride", 1e-3, 1, &o->cfg.window.stride)))
    return r;
  int max_line = 0, seed = 0;
  if ((r = wk_arg_int(cmd, argc, argv, i, "--max-line", 64, 1 << 24, &max_line)))
    return r < 0 ? r : (o->parse.max_line_bytes = (size_t)max_line, 1);
  if ((r = wk_arg_int(cmd, argc, argv, i, "--seed", 0, 2147483647, &seed)))
    return r < 0 ? r : (o->train.seed = (uint64_t)seed, 1);
  double max_rows = 0;
  if ((r = wk_arg_double(cmd, argc, argv, i, "--max-rows", 1, 1e12, &max_rows))) {
    if (r > 0 && max_rows != floor(max_rows))
      return fprintf(stderr, "whisker %s: --max-rows needs a whole number of rows, got '%s'\n",
                     cmd, argv[*i]), -1;
    return r < 0 ? r : (o->parse.max_rows = (int64_t)max_rows, 1);
  }
  if ((r = wk_arg_int(cmd, argc, argv, i, "--size", 8, 1024, &o->cfg.render.size_px)) ||
      (r = wk_arg_int(cmd, argc, argv, i, "--min-events", 2, 1000000,
                      &o->cfg.window.min_events)) ||
      (r = wk_arg_double(cmd, argc, argv, i, "--pause", 1e-3, 1e6, &o->cfg.render.pause_s)) ||
      (r = wk_arg_double(cmd, argc, argv, i, "--score-stride", 1e-3, 1, &o->cfg.score_stride)) ||
      (r = wk_arg_str(cmd, argc, argv, i, "--out", &o->out)) ||
      (r = wk_arg_str(cmd, argc, argv, i, "--labels", &o->labels)) ||
      (r = wk_arg_str(cmd, argc, argv, i, "--model", &o->model)) ||
      (r = wk_arg_str(cmd, argc, argv, i, "--user", &o->user)) ||
      (r = wk_arg_str(cmd, argc, argv, i, "--arch", &o->train.arch)) ||
      (r = wk_arg_int(cmd, argc, argv, i, "--epochs", 1, 10000, &o->train.epochs)) ||
      (r = wk_arg_int(cmd, argc, argv, i, "--models", 1, 100, &o->train.n_models)) ||
      (r = wk_arg_int(cmd, argc, argv, i, "--batch", 2, 4096, &o->train.batch)) ||
      (r = wk_arg_double(cmd, argc, argv, i, "--lr", 1e-7, 10, &o->train.lr)) ||
      (r = wk_arg_int(cmd, argc, argv, i, "--threads", 1, 1024, &o->threads)))
    return r;
  return 0;
}

/* The options that only some subcommands take (the rest, the window,
 * rendering and parsing options and --json, all do); given to another, they
 * are refused rather than silently ignored. */
enum { WK_SUB_RENDER = 1, WK_SUB_SCORE = 2, WK_SUB_EVAL = 4 };
static const struct {
  const char *name;
  unsigned subs;
} wk_clicks_only[] = {
    {"--out", WK_SUB_RENDER | WK_SUB_EVAL},  {"--labels", WK_SUB_RENDER | WK_SUB_EVAL},
    {"--model", WK_SUB_SCORE},               {"--user", WK_SUB_SCORE},
    {"--threads", WK_SUB_SCORE | WK_SUB_EVAL}, {"--score-stride", WK_SUB_SCORE | WK_SUB_EVAL},
    {"--arch", WK_SUB_EVAL},                 {"--epochs", WK_SUB_EVAL},
    {"--models", WK_SUB_EVAL},               {"--batch", WK_SUB_EVAL},
    {"--lr", WK_SUB_EVAL},                   {"--seed", WK_SUB_EVAL},
};

/* The subcommands (WK_SUB_* bits) that take option opt, its name up to any '='
 * (--arch=3 names --arch). */
static unsigned wk_clicks_subs_of(const char *opt) {
  const size_t len = strcspn(opt, "=");
  for (size_t k = 0; k < sizeof wk_clicks_only / sizeof *wk_clicks_only; k++)
    if (strlen(wk_clicks_only[k].name) == len && !strncmp(opt, wk_clicks_only[k].name, len))
      return wk_clicks_only[k].subs;
  return WK_SUB_RENDER | WK_SUB_SCORE | WK_SUB_EVAL;
}

/* 0, or -1 after saying that opt is not an option of cmd (subcommand sub). */
static int wk_clicks_option_fits(const char *cmd, unsigned sub, const char *opt) {
  const char *names[] = {"", "render", "score", "", "eval"};
  const unsigned m = wk_clicks_subs_of(opt);
  if (m & sub) return 0;
  fprintf(stderr, "whisker %s: %.*s is an option of clicks %s%s%s only\n", cmd,
          (int)strcspn(opt, "="), opt, names[m & WK_SUB_RENDER ? 1 : m & WK_SUB_SCORE ? 2 : 4],
          (m & (m - 1)) ? " and " : "", (m & (m - 1)) ? names[m & WK_SUB_EVAL ? 4 : 2] : "");
  return -1;
}

/* Whether subcommand *sub (a const unsigned) takes option opt: what an unknown
 * option's suggestion may name. */
static bool wk_clicks_sub_takes(const char *opt, const void *sub) {
  return wk_clicks_subs_of(opt) & *(const unsigned *)sub;
}

/* Parses argv of subcommand sub (cmd, for messages) into o and the
 * positional arguments into pos (n_pos). */
static int wk_clicks_args(const char *cmd, unsigned sub, int argc, char **argv,
                          wk_clicks_opts *o, char ***pos, int *n_pos) {
  *pos = calloc((size_t)argc + 1, sizeof **pos);
  *n_pos = 0;
  if (!*pos) return fprintf(stderr, "whisker %s: out of memory\n", cmd), -1;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      wk_usage_clicks(stdout);
      return 1;
    }
    if (wk_clicks_option_fits(cmd, sub, argv[i]) < 0) return -1;
    const char *opt = argv[i];
    int r = wk_clicks_option(cmd, argc, argv, &i, o);
    if (r < 0) return -1;
    const char *window_opts[] = {"--size", "--window", "--stride", "--score-stride",
                                 "--min-events", "--scale", "--screen", "--pause"};
    for (size_t k = 0; r > 0 && !o->window_opt && k < sizeof window_opts / sizeof *window_opts; k++)
      if (!strcmp(opt, window_opts[k])) o->window_opt = window_opts[k];
    o->min_events_given |= r > 0 && !strcmp(opt, "--min-events");
    if (r > 0) continue;
    if (argv[i][0] == '-') {
      wk_arg_unknown_fit(cmd, argv[i], wk_usage_clicks, wk_clicks_sub_takes, &sub);
      return -1;
    }
    (*pos)[(*n_pos)++] = argv[i];
  }
  const wk_click_window_cfg *w = &o->cfg.window;
  if (o->min_events_given && w->events > 0 && w->min_events > w->events) {
    /* it would drop nothing: a window of N events is kept whatever it asks */
    fprintf(stderr, "whisker %s: --min-events %d is more than a window's %d events (--window); "
            "give at most %d\n", cmd, w->min_events, w->events, w->events);
    return -1;
  }
  return 0;
}

static const char *wk_base(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* The name of the folder holding path; "unlabelled" when there is none (a
 * bare file name, "./x", "../x"), so a label never leaves the output folder. */
static void wk_parent_name(const char *path, char *out, size_t cap) {
  const char *s = strrchr(path, '/');
  const char *b = s;
  while (b && b > path && b[-1] != '/') b--;
  if (s) snprintf(out, cap, "%.*s", (int)(s - b), b);
  if (!s || !out[0] || !strcmp(out, ".") || !strcmp(out, "..")) snprintf(out, cap, "unlabelled");
}

static void wk_print_stats_json(const wk_click_stats *s) {
  printf("{\"rows\": %lld, \"kept\": %lld, \"dropped\": {", (long long)s->rows,
         (long long)s->kept);
  for (int i = 0; i < WK_CLICK_BAD_COUNT; i++)
    printf("%s\"%s\": %lld", i ? ", " : "", wk_click_bad_name((wk_click_bad)i),
           (long long)s->bad[i]);
  printf("}, \"scroll_repositioned\": %lld, \"clock_resets\": %lld}",
         (long long)s->scroll_repositioned, (long long)s->clock_resets);
}

static void wk_print_stats_text(const wk_click_stats *s) {
  printf("rows       %lld (kept %lld, dropped %lld)\n", (long long)s->rows, (long long)s->kept,
         (long long)wk_click_stats_dropped(s));
  for (int i = 0; i < WK_CLICK_BAD_COUNT; i++)
    printf("  %-22s %lld\n", wk_click_bad_name((wk_click_bad)i), (long long)s->bad[i]);
  printf("  %-22s %lld\n  %-22s %lld\n", "scroll_repositioned", (long long)s->scroll_repositioned,
         "clock_resets", (long long)s->clock_resets);
}

/* ---------------------------------------------------------------- render */

typedef struct wk_label_map {
  char **name, **label;
  int n;
} wk_label_map;

static void wk_label_map_free(wk_label_map *m) {
  for (int i = 0; i < m->n; i++) free(m->name[i]), free(m->label[i]);
  free(m->name);
  free(m->label);
}

/* filename,label rows; a header row starting "filename," is skipped. */
static wk_status wk_label_map_read(const char *path, wk_label_map *m) {
  FILE *f = fopen(path, "r");
  if (!f) return wk_fail(WK_ERR_IO, "%s: %s", path, strerror(errno));
  char line[1024];
  int ln = 0, cap = 0;
  wk_status st = WK_OK;
  while (st == WK_OK && fgets(line, sizeof line, f)) {
    ln++;
    line[strcspn(line, "\r\n")] = 0;
    char *c = strchr(line, ',');
    if (!line[0] || (ln == 1 && !strncmp(line, "filename,", 9))) continue;
    if (!c || c == line || !c[1] || strchr(c + 1, '/') || !strcmp(c + 1, ".") ||
        !strcmp(c + 1, "..")) {
      WK_LOG_W("%s:%d: not a 'filename,label' row; skipped", path, ln);
      continue;
    }
    *c = 0;
    if (m->n == cap) {
      cap = cap ? 2 * cap : 256;
      char **a = realloc(m->name, (size_t)cap * sizeof *a), **b = NULL;
      if (a) m->name = a;
      if (a) b = realloc(m->label, (size_t)cap * sizeof *b);
      if (b) m->label = b;
      if (!a || !b) st = wk_fail(WK_ERR_NOMEM, "out of memory");
    }
    if (st == WK_OK) {
      m->name[m->n] = strdup(line);
      m->label[m->n] = strdup(c + 1);
      if (!m->name[m->n] || !m->label[m->n]) st = wk_fail(WK_ERR_NOMEM, "out of memory");
      m->n++;
    }
  }
  fclose(f);
  return st;
}

static const char *wk_label_map_find(const wk_label_map *m, const char *name) {
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->name[i], name)) return m->label[i];
  return NULL;
}

/* Folder d, made unless it exists (as a folder: a file of that name fails). */
static wk_status wk_mkdir(const char *d) {
  if (mkdir(d, 0777) == 0) return WK_OK;
  const int e = errno;
  struct stat st;
  if (e == EEXIST && stat(d, &st) == 0 && S_ISDIR(st.st_mode)) return WK_OK;
  return wk_fail(WK_ERR_IO, "%s: cannot create the folder: %s", d,
                 strerror(e == EEXIST ? ENOTDIR : e));
}

typedef struct wk_render_totals {
  wk_click_stats rows;
  int64_t files, files_failed, files_unlabelled, windows;
} wk_render_totals;

/* The reason most of a session's dropped rows share, for a session that kept none. */
static const char *wk_main_drop(const wk_click_stats *s) {
  int top = 0;
  for (int i = 1; i < WK_CLICK_BAD_COUNT; i++)
    if (s->bad[i] > s->bad[top]) top = i;
  return wk_click_bad_name((wk_click_bad)top);
}

/* One input file into DIR/<label>/<name>_<n>.png. A failure to read or parse
 * it skips the file (*output false); one to write (a folder, a PNG, a path
 * too long) is *output true, and ends the run: every later file would meet
 * it too, and a class would go missing unseen. */
static wk_status wk_render_one(const wk_clicks_opts *o, const char *path, const char *label,
                               wk_click_session *s, wk_image *img, wk_render_totals *t,
                               bool *output) {
  char dir[4096], out[4096];
  *output = false;
  wk_status st = wk_click_load(path, &o->parse, s);
  if (st != WK_OK) return st;
  wk_click_stats_add(&t->rows, &s->stats);
  if (s->stats.rows > 0 && s->stats.kept == 0)
    WK_LOG_W("%s: none of its %lld rows was kept (mostly %s%s)", path,
             (long long)s->stats.rows, wk_main_drop(&s->stats),
             s->stats.bad[WK_CLICK_BAD_ABSURD] == s->stats.rows
                 ? ": times over 1e9 s, such as Unix times, are refused; give seconds from the "
                   "session's start"
                 : "");
  wk_click_window *win = NULL;
  int64_t nw = 0;
  WK_TRY(wk_click_segment(s, &o->cfg.window, &win, &nw));
  if (snprintf(dir, sizeof dir, "%s/%s", o->out, label) >= (int)sizeof dir)
    st = wk_fail(WK_ERR_LIMIT, "%s/%s: path too long", o->out, label);
  if (st == WK_OK && nw > 0) st = wk_mkdir(dir);
  *output = st != WK_OK;
  for (int64_t i = 0; st == WK_OK && i < nw; i++) {
    st = wk_click_render(s, win[i], &o->cfg.render, img); /* a failure: the input's */
    if (st != WK_OK) break;
    if (snprintf(out, sizeof out, "%s/%s_%05lld.png", dir, wk_base(path), (long long)i) >=
        (int)sizeof out)
      st = wk_fail(WK_ERR_LIMIT, "%s: output path too long", path);
    if (st == WK_OK) st = wk_image_write_png(img, out);
    *output = st != WK_OK;
    if (st == WK_OK) t->windows++;
  }
  free(win);
  return st;
}

/* An input's output name: its label and file name (the images are
 * <label>/<name>_<n>.png). */
typedef struct wk_out_name {
  const char *label, *base, *path;
} wk_out_name;

static int wk_cmp_out_name(const void *a, const void *b) {
  const wk_out_name *x = a, *y = b;
  const int c = strcmp(x->label, y->label);
  return c ? c : strcmp(x->base, y->base);
}

/* Two inputs whose images would have the same names (the same label and file
 * name, e.g. a/u1/s and b/u1/s): the second would overwrite the first's. The
 * pair is named in the error. labels[i] is files[i]'s (NULL: not rendered).
 * Sorted, so a large tree is checked in n log n. */
static wk_status wk_render_clash(char **files, char **labels, int nf) {
  wk_out_name *v = malloc((nf ? (size_t)nf : 1) * sizeof *v);
  if (!v) return wk_fail(WK_ERR_NOMEM, "out of memory for %d file names", nf);
  int n = 0;
  for (int i = 0; i < nf; i++)
    if (labels[i]) v[n++] = (wk_out_name){labels[i], wk_base(files[i]), files[i]};
  qsort(v, (size_t)n, sizeof *v, wk_cmp_out_name);
  wk_status s = WK_OK;
  for (int i = 1; i < n && s == WK_OK; i++)
    if (!wk_cmp_out_name(&v[i - 1], &v[i]))
      s = wk_fail(WK_ERR_INVALID_ARG, "%s and %s would both be written as %s/%s_*.png: rename "
                  "one, or render them into different --out folders", v[i - 1].path, v[i].path,
                  v[i].label, v[i].base);
  free(v);
  return s;
}

static int wk_clicks_render(wk_clicks_opts *o, char **pos, int n_pos) {
  if (!o->out || n_pos == 0) {
    fprintf(stderr, "whisker clicks render: needs INPUT... and --out DIR\n");
    return WK_EXIT_USAGE;
  }
  if (wk_click_window_cfg_check(&o->cfg.window) != WK_OK ||
      wk_click_render_cfg_check(&o->cfg.render) != WK_OK) {
    fprintf(stderr, "whisker clicks render: %s\n", wk_last_error());
    return WK_EXIT_USAGE;
  }
  const double t0 = wk_now_s();
  char **files = NULL, **file_label = NULL;
  int nf = 0, rc = WK_EXIT_FAIL;
  wk_label_map labels = {0};
  wk_click_session s = {0};
  wk_image img = {0};
  wk_render_totals t = {0};
  int missing = 0; /* an input that is not there is reported and counted, as a bad file is */
  const wk_status collected = wk_clicks_collect((const char *const *)pos, n_pos, &files, &nf,
                                                &missing);
  t.files += missing;
  t.files_failed += missing;
  if (collected != WK_OK || (o->labels && wk_label_map_read(o->labels, &labels) != WK_OK))
    goto done;
  file_label = calloc(nf ? (size_t)nf : 1, sizeof *file_label);
  if (!file_label) {
    wk_fail(WK_ERR_NOMEM, "out of memory for %d file names", nf);
    goto done;
  }
  for (int i = 0; i < nf; i++) {
    char parent[256];
    const char *label = parent;
    if (o->labels) label = wk_label_map_find(&labels, wk_base(files[i]));
    else wk_parent_name(files[i], parent, sizeof parent);
    if (label && !(file_label[i] = strdup(label))) {
      wk_fail(WK_ERR_NOMEM, "out of memory for %d file names", nf);
      goto done;
    }
  }
  if (wk_render_clash(files, file_label, nf) != WK_OK || wk_mkdir_p(o->out) != WK_OK) goto done;
  for (int i = 0; i < nf; i++) {
    if (!file_label[i]) {
      t.files_unlabelled++;
      continue;
    }
    t.files++;
    bool output = false;
    wk_status st = wk_render_one(o, files[i], file_label[i], &s, &img, &t, &output);
    if (st == WK_ERR_NOMEM || output) goto done;
    if (st != WK_OK) {
      WK_LOG_W("%s; file skipped", wk_last_error());
      t.files_failed++;
    }
  }
  const double secs = wk_now_s() - t0;
  if (o->json) {
    printf("{\"files\": %lld, \"files_failed\": %lld, \"files_unlabelled\": %lld, "
           "\"images\": %lld, \"seconds\": %.3f, \"rows\": ", (long long)t.files,
           (long long)t.files_failed, (long long)t.files_unlabelled, (long long)t.windows, secs);
    wk_print_stats_json(&t.rows);
    printf("}\n");
  } else {
    printf("files      %lld (%lld failed, %lld without a label)\nimages     %lld in %s\n"
           "seconds    %.2f\n", (long long)t.files, (long long)t.files_failed,
           (long long)t.files_unlabelled, (long long)t.windows, o->out, secs);
    wk_print_stats_text(&t.rows);
  }
  /* any input lost is a failure a script must be able to see; the rest are written */
  rc = t.windows > 0 && t.files_failed == 0 ? WK_EXIT_OK : WK_EXIT_FAIL;
  if (t.files == t.files_failed) wk_fail(WK_ERR_FORMAT, "no input file could be rendered");
  else if (t.windows == 0)
    wk_fail(WK_ERR_FORMAT, "no image was written: no session gave a window of at least "
            "--min-events events (%d)", o->cfg.window.min_events);
  else if (t.files_failed)
    wk_fail(WK_ERR_FORMAT, "%lld of %lld input files could not be rendered (named above); the "
            "others' images are written", (long long)t.files_failed, (long long)t.files);
done:
  if (rc != WK_EXIT_OK) fprintf(stderr, "whisker clicks render: %s\n", wk_last_error());
  for (int i = 0; i < nf; i++) free(files[i]), free(file_label ? file_label[i] : NULL);
  free(files);
  free(file_label);
  wk_label_map_free(&labels);
  wk_click_session_free(&s);
  wk_image_free(&img);
  return rc;
}

/* ---------------------------------------------------------------- score */

static int wk_clicks_score_cmd(wk_clicks_opts *o, char **pos, int n_pos) {
  if (!o->model || n_pos == 0) {
    fprintf(stderr, "whisker clicks score: needs SESSION... and --model M\n");
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx = NULL;
  wk_net *net = NULL;
  wk_model_meta meta = {0};
  wk_clicks_cfg cfg;
  wk_click_session s = {0};
  int rc = WK_EXIT_FAIL, failed = 0;
  if (wk_ctx_create(&ctx, o->threads) != WK_OK ||
      wk_model_load(ctx, o->model, &net, &meta) != WK_OK)
    goto done;
  if (wk_clicks_cfg_from_meta(&meta, &cfg) != WK_OK) {
    /* A model trained by `whisker train` on rendered PNGs: the options say
     * how its windows were rendered (the size comes from the model). */
    WK_LOG_W("%s: %s; using the command line's window and rendering options", o->model,
             wk_last_error());
    cfg = o->cfg;
    if (wk_click_window_cfg_check(&cfg.window) != WK_OK ||
        wk_click_render_cfg_check(&cfg.render) != WK_OK)
      goto done;
  } else if (o->window_opt) {
    WK_LOG_W("%s: the model keeps the window and rendering options it was trained with; %s "
             "and the others given are not used", o->model, o->window_opt);
  }
  if (o->json) printf("[");
  else printf("%-40s %-12s %8s %10s %8s\n", "session", "claimed", "p_not", "mean_logp",
              "windows");
  for (int i = 0; i < n_pos; i++) {
    char user[256];
    if (o->user) snprintf(user, sizeof user, "%s", o->user);
    else wk_parent_name(pos[i], user, sizeof user);
    int claimed = -1;
    for (int c = 0; c < meta.n_classes; c++)
      if (!strcmp(meta.class_names[c], user)) claimed = c;
    double logp = 0, p_not = NAN;
    int64_t nw = 0;
    wk_status st = claimed < 0 ? wk_fail(WK_ERR_INVALID_ARG, "%s: claimed user '%s' is not one "
                                         "of the model's classes", pos[i], user)
                               : wk_click_load(pos[i], &o->parse, &s);
    if (st == WK_OK) {
      st = wk_clicks_score(net, &meta, &cfg, &s, claimed, &logp, &p_not, &nw, NULL);
      if (st != WK_OK) { /* the scorer's messages do not name the session */
        char why[512];
        snprintf(why, sizeof why, "%s", wk_last_error());
        st = wk_fail(st, "%s: %s", pos[i], why);
      }
    }
    if (st != WK_OK) {
      WK_LOG_E("%s", wk_last_error());
      failed++;
    }
    if (o->json) {
      printf("%s{\"session\": ", i ? ", " : "");
      wk_print_json_string(pos[i]);
      printf(", \"claimed\": ");
      wk_print_json_string(user);
      if (st == WK_OK) {
        printf(", \"p_not\": %.6f, \"mean_logp\": %.6f, \"windows\": %lld}", p_not, logp,
               (long long)nw);
      } else {
        printf(", \"error\": ");
        wk_print_json_string(wk_last_error());
        printf("}");
      }
    } else if (st == WK_OK) {
      printf("%-40s %-12s %8.4f %10.4f %8lld\n", pos[i], user, p_not, logp, (long long)nw);
    } else {
      printf("%-40s %-12s %8s\n", pos[i], user, "error");
    }
  }
  if (o->json) printf("]\n");
  rc = failed ? WK_EXIT_FAIL : WK_EXIT_OK;
  if (failed) wk_fail(WK_ERR_FORMAT, "%d of %d sessions could not be scored", failed, n_pos);
done:
  if (rc != WK_EXIT_OK) fprintf(stderr, "whisker clicks score: %s\n", wk_last_error());
  wk_click_session_free(&s);
  wk_model_meta_free(&meta);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  return rc;
}

/* ---------------------------------------------------------------- eval */

static int wk_clicks_eval(wk_clicks_opts *o, char **pos, int n_pos) {
  if (n_pos != 1 || !o->labels) {
    fprintf(stderr, "whisker clicks eval: needs BALABIT_DIR and --labels CSV\n");
    return WK_EXIT_USAGE;
  }
  wk_ctx *ctx = NULL;
  wk_balabit_result r;
  int rc = WK_EXIT_FAIL;
  if ((o->out && wk_mkdir_p(o->out) != WK_OK) || wk_ctx_create(&ctx, o->threads) != WK_OK ||
      wk_balabit_eval(ctx, pos[0], o->labels, &o->cfg, &o->train, &o->parse, o->out, &r) != WK_OK)
    goto done;
  if (o->json) {
    printf("{\"auc\": %.6f, \"eer\": %.6f, \"sessions\": %lld, \"illegal\": %lld, "
           "\"skipped\": %lld, \"train_sessions\": %lld, \"train_windows\": %lld, "
           "\"score_windows\": %lld, \"render_s\": %.2f, \"train_s\": %.2f, \"score_s\": %.2f, "
           "\"wall_s\": %.2f, \"settings\": ", r.auc, r.eer, (long long)r.n_sessions,
           (long long)r.n_illegal, (long long)r.n_skipped, (long long)r.train_sessions,
           (long long)r.train_windows, (long long)r.score_windows, r.render_s, r.train_s,
           r.score_s, r.wall_s);
    char *cj = wk_clicks_cfg_to_json(&o->cfg);
    printf("%s, \"epochs\": %d, \"models\": %d, \"seed\": %llu, \"arch\": ", cj ? cj : "null",
           o->train.epochs, o->train.n_models, (unsigned long long)o->train.seed);
    free(cj);
    wk_print_json_string(o->train.arch);
    printf(", \"train_rows\": ");
    wk_print_stats_json(&r.train_rows);
    printf(", \"test_rows\": ");
    wk_print_stats_json(&r.test_rows);
    printf("}\n");
  } else {
    printf("ROC AUC    %.4f\nEER        %.4f\nsessions   %lld (%lld illegal, %lld skipped)\n"
           "training   %lld sessions, %lld windows\nseconds    %.1f (render %.1f, train %.1f, "
           "score %.1f)\n", r.auc, r.eer, (long long)r.n_sessions, (long long)r.n_illegal,
           (long long)r.n_skipped, (long long)r.train_sessions, (long long)r.train_windows,
           r.wall_s, r.render_s, r.train_s, r.score_s);
  }
  rc = WK_EXIT_OK;
done:
  if (rc != WK_EXIT_OK) fprintf(stderr, "whisker clicks eval: %s\n", wk_last_error());
  wk_ctx_destroy(ctx);
  return rc;
}

int wk_cmd_clicks(int argc, char **argv) {
  if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
    wk_usage_clicks(argc < 1 ? stderr : stdout);
    return argc < 1 ? WK_EXIT_USAGE : WK_EXIT_OK;
  }
  const char *name = argv[0];
  const unsigned sub = !strcmp(name, "render") ? WK_SUB_RENDER
                       : !strcmp(name, "score") ? WK_SUB_SCORE
                       : !strcmp(name, "eval")  ? WK_SUB_EVAL
                                                : 0;
  if (!sub) {
    fprintf(stderr, "whisker clicks: '%s' is not render, score or eval\n", name);
    wk_usage_clicks(stderr);
    return WK_EXIT_USAGE;
  }
  wk_clicks_opts o = {.cfg = wk_clicks_cfg_default(), .train = wk_clicks_train_cfg_default()};
  char **pos = NULL;
  int n_pos = 0, rc;
  char cmd[64];
  snprintf(cmd, sizeof cmd, "clicks %s", name);
  int r = wk_clicks_args(cmd, sub, argc - 1, argv + 1, &o, &pos, &n_pos);
  if (r != 0) {
    free(pos);
    return r > 0 ? WK_EXIT_OK : WK_EXIT_USAGE;
  }
  if (sub == WK_SUB_RENDER) {
    rc = wk_clicks_render(&o, pos, n_pos);
  } else if (sub == WK_SUB_SCORE) {
    rc = wk_clicks_score_cmd(&o, pos, n_pos);
  } else {
    rc = wk_clicks_eval(&o, pos, n_pos);
  }
  free(pos);
  return rc;
}
