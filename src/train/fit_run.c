/* fit_run.c - a run's defining settings in its checkpoint (fit_run.h). */
#include "train/fit_run.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_field.h"
#include "core/log.h"

char *wk_run_settings_json(const wk_fit_config *c, const wk_run_state *s) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  bool ok = cJSON_AddNumberToObject(o, "seed", (double)c->seed) &&
            cJSON_AddNumberToObject(o, "val_pct", c->val_pct) &&
            cJSON_AddNumberToObject(o, "size", c->size) &&
            cJSON_AddNumberToObject(o, "crop_scale_min", c->crop_scale_min) &&
            cJSON_AddNumberToObject(o, "epochs", c->epochs) &&
            cJSON_AddNumberToObject(o, "lr", c->lr) &&
            cJSON_AddNumberToObject(o, "optim", (double)c->optim) &&
            cJSON_AddNumberToObject(o, "weight_decay", c->weight_decay) &&
            cJSON_AddNumberToObject(o, "schedule", (double)c->schedule) &&
            cJSON_AddNumberToObject(o, "label_smoothing", c->label_smoothing) &&
            (c->pretrained ? cJSON_AddStringToObject(o, "pretrained", c->pretrained) != NULL
                           : cJSON_AddNullToObject(o, "pretrained") != NULL) &&
            cJSON_AddNumberToObject(o, "head_epochs", c->head_epochs) &&
            cJSON_AddNumberToObject(o, "lr_min_scale", c->lr_min_scale) &&
            cJSON_AddNumberToObject(o, "best_val_acc", s->best_val_acc);
  cJSON *p = ok && s->seen > 0 ? cJSON_AddObjectToObject(o, "partial_epoch") : NULL;
  if (ok && s->seen > 0)
    ok = p && cJSON_AddNumberToObject(p, "loss_sum", s->loss_sum) &&
         cJSON_AddNumberToObject(p, "wait_s", s->wait_s) &&
         cJSON_AddNumberToObject(p, "correct", (double)s->correct) &&
         cJSON_AddNumberToObject(p, "seen", (double)s->seen);
  char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return text;
}

/* Appends "name value (not was)" to the list of differences. */
static void wk_run_note(char *buf, size_t cap, const char *name, const char *now,
                        const char *was) {
  const size_t len = strlen(buf);
  if (len + 8 < cap)
    snprintf(buf + len, cap - len, "%s%s %s (not %s)", len ? ", " : "", name, now, was);
}

wk_status wk_run_settings_adopt(const char *path, const char *text, wk_fit_config *c,
                                wk_run_state *s, char **pretrained, bool *found) {
  *found = false;
  *pretrained = NULL;
  if (!text) return WK_OK;
  cJSON *o = cJSON_Parse(text);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return wk_fail(WK_ERR_FORMAT, "%s: whisker.run is not a JSON object", path);
  }
  double seed, val_pct, size, crop, epochs, lr, optim, wd, sched, ls, head, lr_min, best;
  const bool ok =
      wk_json_number(o, "seed", 0, 9007199254740992.0, true, &seed) &&
      wk_json_number(o, "val_pct", 0, 100, false, &val_pct) &&
      wk_json_number(o, "size", 0, WK_FIT_MAX_SIZE, true, &size) &&
      wk_json_number(o, "crop_scale_min", 1e-6, 1, false, &crop) &&
      wk_json_number(o, "epochs", 1, WK_FIT_MAX_EPOCHS, true, &epochs) && wk_json_number(o, "lr", 0, 1e3, false, &lr) &&
      wk_json_number(o, "optim", WK_OPTIM_SGD, WK_OPTIM_ADAMW, true, &optim) &&
      wk_json_number(o, "weight_decay", -1, 1e3, false, &wd) &&
      wk_json_number(o, "schedule", WK_SCHEDULE_CONSTANT, WK_SCHEDULE_STEP, true, &sched) &&
      wk_json_number(o, "label_smoothing", 0, 1, false, &ls) &&
      wk_json_number(o, "head_epochs", 0, epochs, true, &head) &&
      wk_json_number(o, "lr_min_scale", 1e-12, 1, false, &lr_min) &&
      wk_json_number(o, "best_val_acc", -1, 1, false, &best);
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(o, "pretrained");
  const cJSON *part = cJSON_GetObjectItemCaseSensitive(o, "partial_epoch");
  double loss_sum = 0, wait_s = 0, correct = 0, seen = 0;
  const bool part_ok =
      !part || (wk_json_number(part, "loss_sum", 0, 1e300, false, &loss_sum) &&
                wk_json_number(part, "wait_s", 0, 1e12, false, &wait_s) &&
                wk_json_number(part, "seen", 1, 9e15, true, &seen) &&
                wk_json_number(part, "correct", 0, seen, true, &correct));
  if (!ok || !part_ok || !(cJSON_IsNull(pre) || (cJSON_IsString(pre) && pre->valuestring[0]))) {
    cJSON_Delete(o);
    return wk_fail(WK_ERR_FORMAT, "%s: whisker.run has a missing or out-of-range setting",
                   path);
  }
  if (cJSON_IsString(pre) && !(*pretrained = strdup(pre->valuestring))) {
    cJSON_Delete(o);
    return wk_fail(WK_ERR_NOMEM, "out of memory");
  }
  cJSON_Delete(o);
  char diff[1024] = "", now[96], was[96];
#define WK_RUN_ADOPT(field, name, type, value, fmt)                                 \
  do {                                                                              \
    const type v_ = (type)(value);                                                  \
    if (c->field != v_) {                                                           \
      snprintf(now, sizeof now, fmt, v_);                                           \
      snprintf(was, sizeof was, fmt, c->field);                                     \
      wk_run_note(diff, sizeof diff, name, now, was);                               \
      c->field = v_;                                                                \
    }                                                                               \
  } while (0)
  WK_RUN_ADOPT(seed, "--seed", uint64_t, seed, "%" PRIu64);
  WK_RUN_ADOPT(val_pct, "--val-pct", double, val_pct, "%g");
  /* size 0 (a fine-tune at the base model's size) was resolved before the checkpoint */
  if (size >= 16) WK_RUN_ADOPT(size, "--size", int, size, "%d");
  WK_RUN_ADOPT(crop_scale_min, "--crop-scale", float, crop, "%g");
  WK_RUN_ADOPT(epochs, "--epochs", int, epochs, "%d");
  WK_RUN_ADOPT(lr, "--lr", double, lr, "%g");
  static const char *const optims[] = {"sgd", "adamw"};
  static const char *const scheds[] = {"constant", "onecycle", "cosine", "step"};
  if (c->optim != (wk_optim_kind)optim) {
    wk_run_note(diff, sizeof diff, "--optimizer", optims[(int)optim], optims[c->optim]);
    c->optim = (wk_optim_kind)optim;
  }
  WK_RUN_ADOPT(weight_decay, "--weight-decay", double, wd, "%g");
  if (c->schedule != (wk_schedule_kind)sched) {
    wk_run_note(diff, sizeof diff, "--schedule", scheds[(int)sched], scheds[c->schedule]);
    c->schedule = (wk_schedule_kind)sched;
  }
  WK_RUN_ADOPT(label_smoothing, "--label-smoothing", float, ls, "%g");
  WK_RUN_ADOPT(head_epochs, "--head-epochs", int, head, "%d");
  WK_RUN_ADOPT(lr_min_scale, "--lr-min-scale", double, lr_min, "%g");
#undef WK_RUN_ADOPT
  if ((c->pretrained != NULL) != (*pretrained != NULL) ||
      (c->pretrained && strcmp(c->pretrained, *pretrained)))
    wk_run_note(diff, sizeof diff, "--pretrained", *pretrained ? *pretrained : "none",
                c->pretrained ? c->pretrained : "none");
  c->pretrained = *pretrained;
  *s = (wk_run_state){.best_val_acc = best, .loss_sum = loss_sum, .wait_s = wait_s,
                      .correct = (int64_t)correct, .seen = (int64_t)seen};
  if (diff[0])
    WK_LOG_W("resuming with the run's own settings, kept in %s: %s (the command line's or the "
             "defaults are ignored; to train longer or otherwise, start a new run from its "
             "model)", path, diff);
  *found = true;
  return WK_OK;
}
