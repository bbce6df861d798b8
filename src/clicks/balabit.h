/* balabit.h - the Balabit Mouse Dynamics Challenge protocol.
 *
 * Layout: ROOT/training_files/<user>/session_* (every session its user's own)
 * and ROOT/test_files/<user>/session_* (claimed to be <user>'s). A labels CSV
 * "filename,is_illegal" names test sessions.
 *
 * The protocol: one multi-class model over the users, trained on
 * training_files only (windows of every training session labelled with their
 * user); each labelled test session is scored as "not its claimed user" by
 * the mean log-probability of the claimed user over its windows (averaged
 * over the models of an ensemble, tc->n_models); ROC AUC and EER over
 * sessions. Test sessions are never trained on. */
#ifndef WK_CLICKS_BALABIT_H
#define WK_CLICKS_BALABIT_H

#include <stdio.h>

#include "clicks/learn.h"

typedef struct wk_balabit_result {
  double auc, eer;
  int64_t n_sessions, n_illegal, n_skipped; /* scored; labelled illegal; unusable */
  int64_t train_sessions, train_windows, score_windows;
  wk_click_stats train_rows, test_rows;
  double render_s, train_s, score_s, wall_s;
} wk_balabit_result;

/* The sorted names of the sub-folders of dir (NULL-terminated, malloc'ed;
 * free with wk_balabit_names_free). Hidden names are skipped. */
wk_status wk_balabit_list(const char *dir, bool want_dirs, char ***names, int *n);
void wk_balabit_names_free(char **names, int n);

/* Every regular file under each of paths (a file itself, or a folder walked
 * to 8 levels, hidden names skipped, sorted within a folder), appended to
 * *files (malloc'ed strings; *n counts them). A path that does not exist is
 * WK_ERR_IO naming it; with `missing`, it is instead named in a warning,
 * counted there and passed over. */
wk_status wk_clicks_collect(const char *const *paths, int n_paths, char ***files, int *n,
                            int *missing);

/* Runs the protocol; every session is read with `parse` (may be NULL: the
 * defaults). out_dir (may be NULL) receives model.safetensors
 * (model_1.safetensors, ... for further models of an ensemble) and
 * scores.csv (filename,user,is_illegal,mean_logp,p_not,windows, then the mean
 * log-probability of every user: logp_<user>,...). */
wk_status wk_balabit_eval(wk_ctx *ctx, const char *root, const char *labels_csv,
                          const wk_clicks_cfg *cfg, const wk_clicks_train_cfg *tc,
                          const wk_click_parse_opts *parse, const char *out_dir,
                          wk_balabit_result *res);

#endif
