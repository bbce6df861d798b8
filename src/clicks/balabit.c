/* balabit.c - the Balabit protocol end to end: folder listing, labels, the
 * training set, scoring of labelled test sessions, AUC and EER (balabit.h). */
#include "clicks/balabit.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clicks/clicks_impl.h"
#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/log.h"
#include "train/metrics.h"

#define WK_BALABIT_MAX_NAMES 1000000
#define WK_PATH_MAX 4096

/* "a/b" into out; WK_ERR_LIMIT when it does not fit. */
static wk_status wk_join(char *out, size_t cap, const char *a, const char *b) {
  if (snprintf(out, cap, "%s/%s", a, b) >= (int)cap)
    return wk_fail(WK_ERR_LIMIT, "%s/%s: path too long", a, b);
  return WK_OK;
}

static int wk_cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void wk_balabit_names_free(char **names, int n) {
  if (!names) return;
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

wk_status wk_balabit_list(const char *dir, bool want_dirs, char ***names, int *n) {
  *names = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return wk_fail(WK_ERR_IO, "%s: cannot open the folder: %s", dir, strerror(errno));
  char **v = NULL;
  int cnt = 0, cap = 0;
  wk_status st = WK_OK;
  struct dirent *e;
  char path[WK_PATH_MAX];
  while (st == WK_OK && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
    struct stat sb;
    if (stat(path, &sb) != 0 || (want_dirs ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)))
      continue;
    if (cnt == WK_BALABIT_MAX_NAMES) {
      st = wk_fail(WK_ERR_LIMIT, "%s: more than %d entries", dir, WK_BALABIT_MAX_NAMES);
      break;
    }
    if (cnt + 1 >= cap) {
      cap = cap ? cap * 2 : 64;
      char **nv = realloc(v, (size_t)cap * sizeof *nv);
      if (!nv) {
        st = wk_fail(WK_ERR_NOMEM, "out of memory");
        break;
      }
      v = nv;
    }
    if (!(v[cnt] = strdup(e->d_name))) {
      st = wk_fail(WK_ERR_NOMEM, "out of memory");
      break;
    }
    v[++cnt] = NULL;
  }
  closedir(d);
  if (st != WK_OK) {
    wk_balabit_names_free(v, cnt);
    return st;
  }
  if (v) qsort(v, (size_t)cnt, sizeof *v, wk_cmp_str);
  *names = v;
  *n = cnt;
  return WK_OK;
}

typedef struct wk_file_list {
  char **v;
  int n, cap;
} wk_file_list;

static wk_status wk_list_push(wk_file_list *l, const char *path) {
  if (l->n == WK_BALABIT_MAX_NAMES)
    return wk_fail(WK_ERR_LIMIT, "more than %d input files", WK_BALABIT_MAX_NAMES);
  if (l->n + 1 >= l->cap) {
    int cap = l->cap ? l->cap * 2 : 64;
    char **nv = realloc(l->v, (size_t)cap * sizeof *nv);
    if (!nv) return wk_fail(WK_ERR_NOMEM, "out of memory");
    l->v = nv;
    l->cap = cap;
  }
  if (!(l->v[l->n] = strdup(path))) return wk_fail(WK_ERR_NOMEM, "out of memory");
  l->v[++l->n] = NULL;
  return WK_OK;
}

/* missing: see wk_clicks_collect; only a path given (depth 0) can be missing. */
static wk_status wk_walk(const char *path, int depth, wk_file_list *l, int *missing) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    if (depth > 0 || !missing) return wk_fail(WK_ERR_IO, "%s: %s", path, strerror(errno));
    WK_LOG_W("%s: %s; skipped", path, strerror(errno));
    (*missing)++;
    return WK_OK;
  }
  if (S_ISREG(sb.st_mode)) return wk_list_push(l, path);
  if (!S_ISDIR(sb.st_mode) || depth >= 8) return WK_OK;
  char **files = NULL, **dirs = NULL, sub[WK_PATH_MAX];
  int nf = 0, nd = 0;
  wk_status st = wk_balabit_list(path, false, &files, &nf);
  if (st == WK_OK) st = wk_balabit_list(path, true, &dirs, &nd);
  for (int i = 0; st == WK_OK && i < nf; i++)
    if ((st = wk_join(sub, sizeof sub, path, files[i])) == WK_OK) st = wk_list_push(l, sub);
  for (int i = 0; st == WK_OK && i < nd; i++)
    if ((st = wk_join(sub, sizeof sub, path, dirs[i])) == WK_OK) st = wk_walk(sub, depth + 1, l, NULL);
  wk_balabit_names_free(files, nf);
  wk_balabit_names_free(dirs, nd);
  return st;
}

wk_status wk_clicks_collect(const char *const *paths, int n_paths, char ***files, int *n,
                            int *missing) {
  wk_file_list l = {*files, *n, *n + 1};
  for (int i = 0; i < n_paths; i++) {
    wk_status st = wk_walk(paths[i], 0, &l, missing);
    if (st != WK_OK) {
      *files = l.v;
      *n = l.n;
      return st;
    }
  }
  *files = l.v;
  *n = l.n;
  return WK_OK;
}

/* ---------------------------------------------------------------- labels */

typedef struct wk_label_row {
  char name[256];
  int illegal;
} wk_label_row;

static wk_status wk_read_labels(const char *path, wk_label_row **rows, int64_t *n) {
  *rows = NULL;
  *n = 0;
  wk_bytes buf = {0};
  WK_TRY(wk_file_read(path, 64u << 20, &buf));
  const char *p = (const char *)buf.data, *end = p + buf.n_bytes;
  wk_label_row *v = NULL;
  int64_t cnt = 0, cap = 0, line = 0;
  wk_status st = WK_OK;
  while (st == WK_OK && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
    line++;
    const char *comma = memchr(p, ',', (size_t)(le - p));
    const char *q = p;
    p = nl ? nl + 1 : end;
    if (le == q || (le - q == 1 && *q == '\r')) continue;
    if (line == 1 && le - q >= 9 && !memcmp(q, "filename,", 9)) continue;
    double lab;
    size_t nn = comma ? (size_t)(comma - q) : 0;
    if (!comma || nn == 0 || nn >= sizeof v->name ||
        !wk_click_parse_number(comma + 1, (size_t)(le - comma - 1), &lab) ||
        (lab != 0 && lab != 1) || memchr(q, '/', nn)) {
      WK_LOG_W("%s:%lld: not a 'filename,is_illegal' row with is_illegal 0 or 1; skipped", path,
               (long long)line);
      continue;
    }
    if (cnt == cap) {
      cap = cap ? cap * 2 : 512;
      wk_label_row *nv = realloc(v, (size_t)cap * sizeof *nv);
      if (!nv) {
        st = wk_fail(WK_ERR_NOMEM, "out of memory");
        break;
      }
      v = nv;
    }
    memcpy(v[cnt].name, q, nn);
    v[cnt].name[nn] = 0;
    v[cnt++].illegal = (int)lab;
  }
  wk_bytes_free(&buf);
  if (st == WK_OK && cnt == 0) st = wk_fail(WK_ERR_FORMAT, "%s: no label rows", path);
  if (st != WK_OK) {
    free(v);
    return st;
  }
  *rows = v;
  *n = cnt;
  return WK_OK;
}

/* ---------------------------------------------------------------- the protocol */

static void wk_log_stats(const char *what, const wk_click_stats *s) {
  char buf[512];
  int len = 0;
  for (int i = 0; i < WK_CLICK_BAD_COUNT; i++)
    if (s->bad[i] && len < (int)sizeof buf - 64)
      len += snprintf(buf + len, sizeof buf - (size_t)len, " %s=%lld",
                      wk_click_bad_name((wk_click_bad)i), (long long)s->bad[i]);
  buf[len] = 0;
  WK_LOG_I("clicks %s: %lld rows, %lld kept, %lld dropped%s%s; %lld scrolls placed at the "
           "previous position, %lld clock resets", what, (long long)s->rows,
           (long long)s->kept, (long long)wk_click_stats_dropped(s), len ? ":" : "", buf,
           (long long)s->scroll_repositioned, (long long)s->clock_resets);
}

typedef struct wk_protocol {
  const wk_click_parse_opts *parse; /* the sessions' (NULL: defaults) */
  char **users;
  int n_users;
  wk_clicks_images set;
  wk_click_session sess;
  wk_net *net;
  wk_model_meta meta;
  wk_label_row *labels;
  int64_t n_labels;
  double *score;
  int32_t *label;
  double *class_logp; /* n_users: one session, one model */
  /* per label row, summed over the ensemble's models */
  double *row_logp, *row_class; /* n_labels, n_labels x n_users */
  int64_t *row_windows;
  int *row_user;                /* index into users, -1: not found */
  char *row_ok;                 /* scored by every model so far */
  FILE *scores_fp;
  wk_atomic_file scores_af;
} wk_protocol;

static wk_status wk_build_training_set(const char *root, const wk_clicks_cfg *cfg, wk_protocol *p,
                                       wk_balabit_result *res) {
  char dir[WK_PATH_MAX], path[WK_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/training_files", root);
  WK_TRY(wk_balabit_list(dir, true, &p->users, &p->n_users));
  if (p->n_users < 2)
    return wk_fail(WK_ERR_FORMAT, "%s: %d user folders; the protocol needs at least 2", dir,
                   p->n_users);
  for (int u = 0; u < p->n_users; u++) {
    char udir[WK_PATH_MAX], **files = NULL;
    int nf = 0;
    WK_TRY(wk_join(udir, sizeof udir, dir, p->users[u]));
    WK_TRY(wk_balabit_list(udir, false, &files, &nf));
    for (int f = 0; f < nf; f++) {
      if (wk_join(path, sizeof path, udir, files[f]) != WK_OK) {
        WK_LOG_W("%s; skipped", wk_last_error());
        continue;
      }
      wk_status st = wk_click_load(path, p->parse, &p->sess);
      if (st == WK_ERR_NOMEM) {
        wk_balabit_names_free(files, nf);
        return st;
      }
      if (st != WK_OK) {
        WK_LOG_W("%s; session skipped", wk_last_error());
        continue;
      }
      wk_click_stats_add(&res->train_rows, &p->sess.stats);
      st = wk_clicks_images_add(&p->set, &p->sess, &cfg->window, &cfg->render, u);
      if (st != WK_OK) {
        wk_balabit_names_free(files, nf);
        return st;
      }
      res->train_sessions++;
    }
    wk_balabit_names_free(files, nf);
  }
  res->train_windows = p->set.n;
  return WK_OK;
}

/* The folder under test_files that holds a session, or -1. */
static int wk_find_test_user(const char *root, const wk_protocol *p, const char *name,
                             char *path, size_t cap) {
  struct stat sb;
  for (int u = 0; u < p->n_users; u++) {
    snprintf(path, cap, "%s/test_files/%s/%s", root, p->users[u], name);
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) return u;
  }
  return -1;
}

/* Scores every labelled session with the current model (model number m of
 * the ensemble), adding its mean log-probabilities to the session's row. A
 * session that cannot be found or scored is left out (counted once). */
static wk_status wk_score_tests(const char *root, const wk_clicks_cfg *cfg, wk_protocol *p,
                                int m, wk_balabit_result *res) {
  char path[WK_PATH_MAX];
  const int k = p->n_users;
  for (int64_t i = 0; i < p->n_labels; i++) {
    const wk_label_row *l = &p->labels[i];
    if (m == 0) {
      p->row_user[i] = wk_find_test_user(root, p, l->name, path, sizeof path);
      p->row_ok[i] = p->row_user[i] >= 0;
      if (!p->row_ok[i]) {
        WK_LOG_W("%s: not found under %s/test_files/<user>/; skipped", l->name, root);
        res->n_skipped++;
      }
    }
    if (!p->row_ok[i]) continue;
    const int u = p->row_user[i];
    snprintf(path, sizeof path, "%s/test_files/%s/%s", root, p->users[u], l->name);
    double mean_logp = 0, p_not = 0;
    int64_t nw = 0;
    wk_status st = wk_click_load(path, p->parse, &p->sess);
    if (st == WK_OK) {
      if (m == 0) wk_click_stats_add(&res->test_rows, &p->sess.stats);
      st = wk_clicks_score(p->net, &p->meta, cfg, &p->sess, u, &mean_logp, &p_not, &nw,
                           p->class_logp);
    }
    if (st == WK_ERR_NOMEM || st == WK_ERR_BACKEND) return st;
    if (st != WK_OK) {
      WK_LOG_W("%s: %s; skipped", path, wk_last_error());
      p->row_ok[i] = 0;
      res->n_skipped++;
      continue;
    }
    p->row_windows[i] = nw;
    p->row_logp[i] += mean_logp;
    for (int c = 0; c < k; c++) p->row_class[(size_t)i * (size_t)k + c] += p->class_logp[c];
  }
  return WK_OK;
}

/* AUC and EER of the sessions scored so far (the sum over the models so far
 * ranks as their mean does); fills p->score and p->label, returns the count. */
static int64_t wk_ensemble_auc(wk_protocol *p, double *auc, double *eer) {
  int64_t n = 0;
  for (int64_t i = 0; i < p->n_labels; i++) {
    if (!p->row_ok[i]) continue;
    p->score[n] = -p->row_logp[i];
    p->label[n++] = p->labels[i].illegal;
  }
  wk_roc_auc_eer(p->score, p->label, n, auc, eer);
  return n;
}

/* The ensemble's session scores (the mean over models of the mean
 * log-probability of the claimed user), scores.csv when asked, AUC and EER. */
static wk_status wk_finish_scores(const char *labels_csv, int n_models, wk_protocol *p,
                                  wk_balabit_result *res) {
  const int k = p->n_users;
  for (int64_t i = 0; i < p->n_labels; i++) {
    if (!p->row_ok[i]) continue;
    const wk_label_row *l = &p->labels[i];
    const double mean_logp = p->row_logp[i] / n_models;
    res->score_windows += p->row_windows[i];
    p->score[res->n_sessions] = -mean_logp;
    p->label[res->n_sessions] = l->illegal;
    res->n_illegal += l->illegal;
    res->n_sessions++;
    if (!p->scores_fp) continue;
    fprintf(p->scores_fp, "%s,%s,%d,%.6f,%.6f,%lld", l->name, p->users[p->row_user[i]],
            l->illegal, mean_logp, 1.0 - exp(mean_logp), (long long)p->row_windows[i]);
    for (int c = 0; c < k; c++)
      fprintf(p->scores_fp, ",%.6f", p->row_class[(size_t)i * (size_t)k + c] / n_models);
    fprintf(p->scores_fp, "\n");
  }
  if (p->scores_fp) {
    p->scores_fp = NULL;
    WK_TRY(wk_atomic_commit(&p->scores_af));
  }
  if (res->n_illegal == 0 || res->n_illegal == res->n_sessions)
    return wk_fail(WK_ERR_FORMAT, "%s: the %lld scored sessions are all of one label; no AUC",
                   labels_csv, (long long)res->n_sessions);
  wk_roc_auc_eer(p->score, p->label, res->n_sessions, &res->auc, &res->eer);
  return WK_OK;
}

static void wk_protocol_free(wk_protocol *p) {
  wk_balabit_names_free(p->users, p->n_users);
  wk_clicks_images_free(&p->set);
  wk_click_session_free(&p->sess);
  wk_net_destroy(p->net);
  wk_model_meta_free(&p->meta);
  free(p->labels);
  free(p->score);
  free(p->label);
  free(p->class_logp);
  free(p->row_logp);
  free(p->row_class);
  free(p->row_windows);
  free(p->row_user);
  free(p->row_ok);
  if (p->scores_fp) wk_atomic_abort(&p->scores_af);
}

static wk_status wk_protocol_alloc(wk_protocol *p) {
  const size_t n = (size_t)p->n_labels, k = (size_t)p->n_users;
  p->score = malloc(n * sizeof *p->score);
  p->label = malloc(n * sizeof *p->label);
  p->class_logp = malloc(k * sizeof *p->class_logp);
  p->row_logp = calloc(n, sizeof *p->row_logp);
  p->row_class = calloc(n * k, sizeof *p->row_class);
  p->row_windows = calloc(n, sizeof *p->row_windows);
  p->row_user = calloc(n, sizeof *p->row_user);
  p->row_ok = calloc(n, sizeof *p->row_ok);
  if (!p->score || !p->label || !p->class_logp || !p->row_logp || !p->row_class ||
      !p->row_windows || !p->row_user || !p->row_ok)
    return wk_fail(WK_ERR_NOMEM, "out of memory");
  return WK_OK;
}

/* Trains model m of the ensemble (seed + m), saves it (model.safetensors,
 * then model_1.safetensors, ...) and scores the test sessions with it. */
static wk_status wk_protocol_model(wk_ctx *ctx, const char *root, const wk_clicks_cfg *cfg,
                                   const wk_clicks_train_cfg *tc, const char *out_dir, int m,
                                   wk_protocol *p, wk_balabit_result *res) {
  char path[WK_PATH_MAX];
  wk_clicks_train_cfg tm = *tc;
  tm.seed = tc->seed + (uint64_t)m;
  wk_net_destroy(p->net);
  p->net = NULL;
  wk_model_meta_free(&p->meta);
  double t = wk_now_s();
  WK_TRY(wk_clicks_train(ctx, &tm, cfg, &p->set, p->n_users, (const char *const *)p->users,
                         &p->net, &p->meta));
  res->train_s += wk_now_s() - t;
  if (out_dir) {
    if (m == 0) snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    else snprintf(path, sizeof path, "%s/model_%d.safetensors", out_dir, m);
    WK_TRY(wk_model_save(path, p->net, &p->meta, NULL, 0, NULL, 0));
  }
  t = wk_now_s();
  WK_TRY(wk_score_tests(root, cfg, p, m, res));
  res->score_s += wk_now_s() - t;
  return WK_OK;
}

static wk_status wk_protocol_run(wk_ctx *ctx, const char *root, const char *labels_csv,
                                 const wk_clicks_cfg *cfg, const wk_clicks_train_cfg *tc,
                                 const char *out_dir, wk_protocol *p, wk_balabit_result *res) {
  char path[WK_PATH_MAX];
  const int n_models = tc->n_models > 0 ? tc->n_models : 1;
  if (out_dir && mkdir(out_dir, 0777) != 0 && errno != EEXIST)
    return wk_fail(WK_ERR_IO, "%s: cannot create the folder: %s", out_dir, strerror(errno));
  WK_TRY(wk_read_labels(labels_csv, &p->labels, &p->n_labels));
  double t = wk_now_s();
  WK_TRY(wk_build_training_set(root, cfg, p, res));
  res->render_s = wk_now_s() - t;
  wk_log_stats("training rows", &res->train_rows);
  WK_LOG_I("clicks: %lld training windows from %lld sessions of %d users in %.1f s",
           (long long)res->train_windows, (long long)res->train_sessions, p->n_users,
           res->render_s);
  WK_TRY(wk_protocol_alloc(p));
  for (int m = 0; m < n_models; m++) {
    WK_TRY(wk_protocol_model(ctx, root, cfg, tc, out_dir, m, p, res));
    double auc, eer;
    const int64_t n = wk_ensemble_auc(p, &auc, &eer);
    WK_LOG_I("clicks: %d model%s (seed %llu..): AUC %.4f, EER %.4f over %lld sessions", m + 1,
             m ? "s" : "", (unsigned long long)tc->seed, auc, eer, (long long)n);
  }
  wk_log_stats("test rows", &res->test_rows);
  if (out_dir) {
    snprintf(path, sizeof path, "%s/scores.csv", out_dir);
    WK_TRY(wk_atomic_open(&p->scores_af, path));
    p->scores_fp = wk_atomic_stream(&p->scores_af);
    fprintf(p->scores_fp, "filename,user,is_illegal,mean_logp,p_not,windows");
    for (int c = 0; c < p->n_users; c++) fprintf(p->scores_fp, ",logp_%s", p->users[c]);
    fprintf(p->scores_fp, "\n");
  }
  return wk_finish_scores(labels_csv, n_models, p, res);
}

wk_status wk_balabit_eval(wk_ctx *ctx, const char *root, const char *labels_csv,
                          const wk_clicks_cfg *cfg, const wk_clicks_train_cfg *tc,
                          const wk_click_parse_opts *parse, const char *out_dir,
                          wk_balabit_result *res) {
  *res = (wk_balabit_result){.auc = NAN, .eer = NAN};
  const double t0 = wk_now_s();
  wk_protocol p = {.parse = parse};
  wk_status st = wk_protocol_run(ctx, root, labels_csv, cfg, tc, out_dir, &p, res);
  wk_protocol_free(&p);
  res->wall_s = wk_now_s() - t0;
  return st;
}
