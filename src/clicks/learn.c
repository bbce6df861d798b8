/* learn.c - rendered clickstream windows in memory, a training loop over
 * them on the trainer, and session scoring (see learn.h). */
#include "clicks/learn.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hostres.h"
#include "core/json_field.h"
#include "core/log.h"
#include "core/rng.h"
#include "nn/zoo.h"
#include "train/predict.h"
#include "train/trainer.h"

wk_clicks_cfg wk_clicks_cfg_default(void) {
  wk_clicks_cfg c = {.window = wk_click_window_cfg_default(), .score_stride = 0.5,
                     .render = wk_click_render_cfg_default()};
  return c;
}

char *wk_clicks_cfg_to_json(const wk_clicks_cfg *c) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  const int screen[2] = {c->render.screen_w_px, c->render.screen_h_px};
  cJSON_AddNumberToObject(o, "size", c->render.size_px);
  cJSON_AddStringToObject(o, "scale", c->render.scale == WK_CLICK_SCALE_BBOX ? "bbox" : "screen");
  cJSON_AddItemToObject(o, "screen", cJSON_CreateIntArray(screen, 2));
  cJSON_AddNumberToObject(o, "pause_s", c->render.pause_s);
  cJSON_AddNumberToObject(o, "window_events", c->window.events);
  cJSON_AddNumberToObject(o, "window_s", c->window.time_s);
  cJSON_AddNumberToObject(o, "stride", c->window.stride);
  cJSON_AddNumberToObject(o, "score_stride", c->score_stride);
  cJSON_AddNumberToObject(o, "min_events", c->window.min_events);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

wk_status wk_clicks_cfg_from_meta(const wk_model_meta *meta, wk_clicks_cfg *c) {
  *c = wk_clicks_cfg_default();
  cJSON *p = meta->provenance ? cJSON_Parse(meta->provenance) : NULL;
  const cJSON *o = p ? cJSON_GetObjectItemCaseSensitive(p, "clicks") : NULL;
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(p);
    return wk_fail(WK_ERR_FORMAT, "the model has no clickstream settings (provenance "
                   "\"clicks\")");
  }
  double size = 0, sw = 0, sh = 0, pause = 0, ev = 0, ts = 0, stride = 0, sstride = 0, mine = 0;
  const cJSON *scr = cJSON_GetObjectItemCaseSensitive(o, "screen");
  const cJSON *scale = cJSON_GetObjectItemCaseSensitive(o, "scale");
  bool ok = wk_json_double(o, "size", &size) && wk_json_double(o, "pause_s", &pause) &&
            wk_json_double(o, "window_events", &ev) && wk_json_double(o, "window_s", &ts) &&
            wk_json_double(o, "stride", &stride) && wk_json_double(o, "score_stride", &sstride) &&
            wk_json_double(o, "min_events", &mine) && cJSON_IsArray(scr) &&
            cJSON_GetArraySize(scr) == 2 && cJSON_IsString(scale);
  if (ok) {
    sw = cJSON_GetArrayItem(scr, 0)->valuedouble;
    sh = cJSON_GetArrayItem(scr, 1)->valuedouble;
    c->render.scale = !strcmp(scale->valuestring, "bbox") ? WK_CLICK_SCALE_BBOX
                                                          : WK_CLICK_SCALE_SCREEN;
  }
  cJSON_Delete(p);
  if (!ok) return wk_fail(WK_ERR_FORMAT, "the model's clickstream settings are incomplete");
  c->render.size_px = (int)size;
  c->render.screen_w_px = (int)sw;
  c->render.screen_h_px = (int)sh;
  c->render.pause_s = pause;
  c->window.events = (int)ev;
  c->window.time_s = ts;
  c->window.stride = stride;
  c->score_stride = sstride;
  c->window.min_events = (int)mine;
  WK_TRY(wk_click_render_cfg_check(&c->render));
  return wk_click_window_cfg_check(&c->window);
}

/* ---------------------------------------------------------------- image sets */

static wk_status wk_images_reserve(wk_clicks_images *set, int64_t more) {
  if (set->n + more <= set->cap) return WK_OK;
  int64_t cap = set->cap ? set->cap : 256;
  while (cap < set->n + more) cap *= 2;
  const size_t px = (size_t)set->size * (size_t)set->size * 3;
  /* realloc may hand out what the kernel then kills the process for (or
   * swaps minutes for) as the windows are drawn (core/hostres.h) */
  char what[96];
  snprintf(what, sizeof what, "%lld rendered windows of %d px", (long long)(set->n + more),
           set->size);
  WK_TRY(wk_host_half_room(set->host_root ? set->host_root : "",
                           (double)(cap - set->cap) * (double)(px + sizeof *set->labels), what,
                           "train on fewer sessions or a smaller --size"));
  uint8_t *rgb = realloc(set->rgb, (size_t)cap * px);
  if (!rgb) return wk_fail(WK_ERR_NOMEM, "out of memory for %lld rendered windows",
                           (long long)cap);
  set->rgb = rgb;
  int32_t *lab = realloc(set->labels, (size_t)cap * sizeof *lab);
  if (!lab) return wk_fail(WK_ERR_NOMEM, "out of memory for %lld labels", (long long)cap);
  set->labels = lab;
  set->cap = cap;
  return WK_OK;
}

wk_status wk_clicks_images_add(wk_clicks_images *set, const wk_click_session *s,
                               const wk_click_window_cfg *w, const wk_click_render_cfg *r,
                               int32_t label) {
  WK_TRY(wk_click_render_cfg_check(r));
  if (set->n > 0 && set->size != r->size_px)
    return wk_fail(WK_ERR_INVALID_ARG, "image set holds %d px images, not %d", set->size,
                   r->size_px);
  set->size = r->size_px;
  wk_click_window *win = NULL;
  int64_t nw = 0;
  WK_TRY(wk_click_segment(s, w, &win, &nw));
  wk_status st = wk_images_reserve(set, nw);
  const size_t px = (size_t)set->size * (size_t)set->size * 3;
  for (int64_t i = 0; st == WK_OK && i < nw; i++) {
    wk_click_render_into(s, win[i], r, set->rgb + (size_t)set->n * px);
    set->labels[set->n++] = label;
  }
  free(win);
  return st;
}

void wk_clicks_images_free(wk_clicks_images *set) {
  free(set->rgb);
  free(set->labels);
  *set = (wk_clicks_images){0};
}

/* ---------------------------------------------------------------- training */

wk_clicks_train_cfg wk_clicks_train_cfg_default(void) {
  return (wk_clicks_train_cfg){.arch = "smallcnn", .epochs = 8, .batch = 64, .lr = 3e-3,
                               .weight_decay = 0.05, .seed = 1, .n_models = 2};
}

/* u8 -> (v / 255 - mean) / std per channel. */
static void wk_make_lut(const wk_preprocess *pre, float lut[3][256]) {
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - pre->mean[c]) / pre->std[c];
}

static void wk_to_float(const uint8_t *rgb, size_t n_px, float lut[3][256], float *out) {
  for (size_t i = 0; i < n_px; i++)
    for (int c = 0; c < 3; c++) out[3 * i + c] = lut[c][rgb[3 * i + c]];
}

static wk_status wk_set_meta(const wk_clicks_train_cfg *tc, const wk_clicks_cfg *cfg,
                             const wk_clicks_images *set, int k, const char *const *names,
                             wk_model_meta *meta) {
  WK_TRY(wk_model_meta_init(meta, tc->arch, k, set->size));
  for (int i = 0; i < k; i++) WK_TRY(wk_model_meta_set_class(meta, i, names[i]));
  meta->pre = (wk_preprocess){.resize_px = set->size, .crop_px = set->size,
                              .mean = {0.5f, 0.5f, 0.5f}, .std = {0.25f, 0.25f, 0.25f}};
  char *cj = wk_clicks_cfg_to_json(cfg);
  if (!cj) return wk_fail(WK_ERR_NOMEM, "out of memory");
  size_t cap = strlen(cj) + 256;
  char *prov = malloc(cap);
  wk_status st = WK_ERR_NOMEM;
  if (prov) {
    snprintf(prov, cap, "{\"clicks\":%s,\"windows\":%lld,\"epochs\":%d,\"arch\":\"%s\"}", cj,
             (long long)set->n, tc->epochs, tc->arch);
    st = wk_model_meta_set_provenance(meta, prov);
  } else {
    wk_fail(st, "out of memory");
  }
  free(prov);
  free(cj);
  return st;
}

static wk_status wk_train_loop(wk_trainer *t, const wk_clicks_train_cfg *tc,
                               const wk_clicks_images *set, float lut[3][256]) {
  const int S = set->size, B = tc->batch;
  WK_ASSERT(B >= 2 && set->n >= B && set->n >= 2); /* wk_clicks_train checked */
  const size_t px = (size_t)S * (size_t)S;
  const int64_t steps = set->n / B;
  float *x = malloc((size_t)B * px * 3 * sizeof *x);
  int32_t *lab = malloc((size_t)B * sizeof *lab);
  int64_t *perm = malloc((size_t)set->n * sizeof *perm);
  wk_status st = WK_OK;
  if (!x || !lab || !perm) st = wk_fail(WK_ERR_NOMEM, "out of memory for a training batch");
  const int64_t xs[4] = {B, S, S, 3}, ls[1] = {B};
  wk_tensor xt = wk_tensor_view(x, WK_F32, 4, xs), lt = wk_tensor_view(lab, WK_I32, 1, ls);
  for (int ep = 0; st == WK_OK && ep < tc->epochs; ep++) {
    const double t0 = wk_now_s();
    wk_rng rng = wk_rng_make(tc->seed, 0x636c69636bULL + (uint64_t)ep);
    for (int64_t i = 0; i < set->n; i++) perm[i] = i;
    for (int64_t i = set->n - 1; i > 0; i--) {
      int64_t j = (int64_t)wk_rng_below(&rng, (uint32_t)(i + 1));
      int64_t tmp = perm[i];
      perm[i] = perm[j];
      perm[j] = tmp;
    }
    double loss_sum = 0, lr = 0;
    int64_t correct = 0;
    for (int64_t b = 0; st == WK_OK && b < steps; b++) {
      for (int i = 0; i < B; i++) {
        const int64_t s = perm[b * B + i];
        wk_to_float(set->rgb + (size_t)s * px * 3, px, lut, x + (size_t)i * px * 3);
        lab[i] = set->labels[s];
      }
      float loss = 0;
      st = wk_trainer_step(t, &xt, &lt, &loss, &lr);
      if (st != WK_OK) break;
      loss_sum += loss;
      const int32_t *pred = wk_trainer_predicted(t);
      for (int i = 0; i < B; i++) correct += pred[i] == lab[i];
    }
    if (st == WK_OK)
      WK_LOG_I("clicks train: epoch %d/%d loss %.4f acc %.3f lr %.2e (%.1f s, %.0f windows/s)",
               ep + 1, tc->epochs, loss_sum / (double)steps,
               (double)correct / (double)(steps * B), lr, wk_now_s() - t0,
               (double)(steps * B) / (wk_now_s() - t0));
  }
  free(x);
  free(lab);
  free(perm);
  return st;
}

wk_status wk_clicks_train(wk_ctx *ctx, const wk_clicks_train_cfg *tc, const wk_clicks_cfg *cfg,
                          const wk_clicks_images *set, int n_classes,
                          const char *const *class_names, wk_net **net, wk_model_meta *meta) {
  *net = NULL;
  if (tc->epochs < 1 || tc->batch < 2)
    return wk_fail(WK_ERR_INVALID_ARG, "clicks train: epochs %d and batch %d must be >= 1, >= 2",
                   tc->epochs, tc->batch);
  if (set->n < tc->batch)
    return wk_fail(WK_ERR_INVALID_ARG, "clicks train: %lld windows, fewer than one batch of %d",
                   (long long)set->n, tc->batch);
  wk_arch_opts ao = wk_arch_opts_default(n_classes);
  ao.in_h = ao.in_w = set->size;
  WK_TRY(wk_zoo_build(ctx, tc->arch, &ao, tc->seed, net));
  wk_status st = wk_set_meta(tc, cfg, set, n_classes, class_names, meta);
  wk_trainer *t = NULL;
  if (st == WK_OK) {
    wk_train_config trc = {.optim = wk_optim_config_default(WK_OPTIM_ADAMW), .seed = tc->seed,
                           .label_smoothing = 0.1f};
    trc.optim.weight_decay = tc->weight_decay;
    trc.schedule = wk_schedule_default(WK_SCHEDULE_ONE_CYCLE, tc->lr,
                                       (int64_t)tc->epochs * (set->n / tc->batch));
    st = wk_trainer_create(*net, &trc, &t);
  }
  float lut[3][256];
  wk_make_lut(&meta->pre, lut);
  if (st == WK_OK) st = wk_train_loop(t, tc, set, lut);
  wk_trainer_destroy(t);
  if (st != WK_OK) {
    wk_net_destroy(*net);
    *net = NULL;
  }
  return st;
}

/* ---------------------------------------------------------------- scoring */

wk_status wk_clicks_score(wk_net *net, const wk_model_meta *meta, const wk_clicks_cfg *cfg,
                          const wk_click_session *s, int claimed, double *mean_logp,
                          double *p_not, int64_t *n_windows, double *class_logp) {
  const int k = meta->n_classes, crop = meta->pre.crop_px;
  if (claimed < 0 || claimed >= k)
    return wk_fail(WK_ERR_INVALID_ARG, "claimed class %d is not one of the model's %d", claimed,
                   k);
  wk_click_render_cfg rc = cfg->render;
  /* Render at the preprocessing's resize and take the centre crop, as the
   * evaluation transform of a model trained on rendered PNGs would. */
  rc.size_px = meta->pre.resize_px > crop ? meta->pre.resize_px : crop;
  const int R = rc.size_px, off = (R - crop) / 2;
  wk_click_window_cfg wc = cfg->window;
  wc.stride = cfg->score_stride;
  wk_click_window *win = NULL;
  int64_t nw = 0;
  WK_TRY(wk_click_segment(s, &wc, &win, &nw));
  *n_windows = nw;
  if (nw == 0) {
    free(win);
    return wk_fail(WK_ERR_FORMAT, "no window of at least %d events", wc.min_events);
  }
  enum { B = 64 };
  const size_t cpx = (size_t)crop * (size_t)crop;
  float *x = malloc((size_t)B * cpx * 3 * sizeof *x);
  uint8_t *rgb = malloc((size_t)R * (size_t)R * 3);
  float lut[3][256];
  wk_make_lut(&meta->pre, lut);
  wk_status st = x && rgb ? WK_OK : wk_fail(WK_ERR_NOMEM, "out of memory");
  double sum = 0;
  if (class_logp)
    for (int c = 0; c < k; c++) class_logp[c] = 0;
  for (int64_t b0 = 0; st == WK_OK && b0 < nw; b0 += B) {
    const int m = (int)(nw - b0 < B ? nw - b0 : B);
    for (int i = 0; i < m; i++) {
      wk_click_render_into(s, win[b0 + i], &rc, rgb);
      for (int y = 0; y < crop; y++)
        wk_to_float(rgb + ((size_t)(y + off) * (size_t)R + (size_t)off) * 3, (size_t)crop, lut,
                    x + (size_t)i * cpx * 3 + (size_t)y * (size_t)crop * 3);
    }
    const int64_t shape[4] = {m, crop, crop, 3};
    wk_tensor xt = wk_tensor_view(x, WK_F32, 4, shape), out;
    if ((st = wk_net_forward(net, &xt, false, &out)) != WK_OK) break;
    float *p = out.data;
    wk_softmax_rows(p, m, k);
    for (int i = 0; i < m; i++) {
      sum += log(fmax((double)p[(size_t)i * k + claimed], 1e-7));
      if (class_logp)
        for (int c = 0; c < k; c++) class_logp[c] += log(fmax((double)p[(size_t)i * k + c], 1e-7));
    }
  }
  free(x);
  free(rgb);
  free(win);
  if (st != WK_OK) return st;
  *mean_logp = sum / (double)nw;
  if (class_logp)
    for (int c = 0; c < k; c++) class_logp[c] /= (double)nw;
  *p_not = 1.0 - exp(*mean_logp);
  return WK_OK;
}
