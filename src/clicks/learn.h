/* learn.h - classifiers over rendered clickstream windows: a set of rendered
 * windows in memory, training a zoo network on it with the trainer
 * (train/trainer.h), and scoring a session as "not its claimed user".
 *
 * A model trained here is an ordinary whisker model file whose provenance
 * carries {"clicks": {...}}: the window and rendering settings, so scoring
 * renders exactly as training did. Its preprocessing is resize = crop = size,
 * mean 0.5, std 0.25 per channel. */
#ifndef WK_CLICKS_LEARN_H
#define WK_CLICKS_LEARN_H

#include "clicks/clicks.h"
#include "core/context.h"
#include "modelio/model.h"

typedef struct wk_clicks_cfg {
  wk_click_window_cfg window;  /* training windows */
  double score_stride;         /* stride of the scoring windows (same length) */
  wk_click_render_cfg render;
} wk_clicks_cfg;

/* 48 px screen-scaled windows of 128 events, stride 1, scored with stride 0.5:
 * the settings of the Balabit result in docs/clicks.md. */
wk_clicks_cfg wk_clicks_cfg_default(void);
/* {"size", "scale", "screen": [w, h], "pause_s", "window_events", "window_s",
 * "stride", "score_stride", "min_events"} (malloc'ed text). */
char *wk_clicks_cfg_to_json(const wk_clicks_cfg *c);
/* From a model's provenance; WK_ERR_FORMAT when it has no "clicks" object. */
wk_status wk_clicks_cfg_from_meta(const wk_model_meta *meta, wk_clicks_cfg *c);

/* Rendered windows: n images (size, size, 3) u8 and their labels. */
typedef struct wk_clicks_images {
  uint8_t *rgb;
  int32_t *labels;
  int64_t n, cap;
  int size;
  const char *host_root; /* NULL: the live system's /proc and /sys; tests point it at a tree
                          * of their own (core/hostres.h) */
} wk_clicks_images;

/* Segments s with `w` and renders every window, labelled `label`. The set
 * grows only within half the memory the host has available (the rest is for
 * training): past it, WK_ERR_NOMEM with the sizes, before the memory is
 * taken. */
wk_status wk_clicks_images_add(wk_clicks_images *set, const wk_click_session *s,
                               const wk_click_window_cfg *w, const wk_click_render_cfg *r,
                               int32_t label);
void wk_clicks_images_free(wk_clicks_images *set);

typedef struct wk_clicks_train_cfg {
  const char *arch; /* zoo name */
  int epochs, batch;
  double lr;        /* one-cycle peak, AdamW */
  double weight_decay;
  uint64_t seed;
  int n_models;     /* Balabit eval: an ensemble trained with seeds seed, seed + 1, ...;
                       a session's score is the mean over the models */
} wk_clicks_train_cfg;

/* smallcnn, 8 epochs, batch 64, AdamW (weight decay 0.05) with a one-cycle
 * peak of 3e-3, label smoothing 0.1, seed 1, an ensemble of 2 for eval. */
wk_clicks_train_cfg wk_clicks_train_cfg_default(void);

/* Trains a fresh network on set (labels in [0, n_classes)). *net and *meta
 * (class names copied, provenance set from cfg) belong to the caller. */
wk_status wk_clicks_train(wk_ctx *ctx, const wk_clicks_train_cfg *tc, const wk_clicks_cfg *cfg,
                          const wk_clicks_images *set, int n_classes,
                          const char *const *class_names, wk_net **net, wk_model_meta *meta);

/* Scores one session against class `claimed`: renders its scoring windows
 * (cfg->window with cfg->score_stride), classifies them in batches, and sets
 * *mean_logp to the mean over windows of log p(claimed) and *p_not to
 * 1 - exp(*mean_logp). A session with no window is WK_ERR_FORMAT.
 * class_logp (optional, n_classes) receives the mean log-probability of every
 * class. */
wk_status wk_clicks_score(wk_net *net, const wk_model_meta *meta, const wk_clicks_cfg *cfg,
                          const wk_click_session *s, int claimed, double *mean_logp,
                          double *p_not, int64_t *n_windows, double *class_logp);

#endif
