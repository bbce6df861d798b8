/* fit_run.h - the settings that define a training run, kept in its checkpoint
 * (metadata "whisker.run") so that --resume trains on as the run began.
 *
 * Without them a resume took the data split, the shuffle and augmentation
 * seeds, the schedule's length, the fine-tuning phases and the learning rate
 * (lr-find's) from the command line of the resume, so that a different
 * --seed moved validation images into training, a shorter --epochs overran
 * the metrics table, and a fine-tune resumed without --pretrained never left
 * its head phase. Now a resume adopts the checkpoint's values and says which
 * ones differ from its command line's. The batch size and the number of
 * ranks may change (the schedule is rescaled: fit.c); the device, precision,
 * workers and the like are not part of a run. */
#ifndef WK_TRAIN_FIT_RUN_H
#define WK_TRAIN_FIT_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "train/fit.h"

/* What a run has done so far, beyond the trainer's own state. */
typedef struct wk_run_state {
  double best_val_acc; /* -1: no validation yet */
  /* a checkpoint taken inside an epoch: the epoch's training sums so far,
   * over every rank (fit.c restores them on rank 0) */
  double loss_sum, wait_s;
  int64_t correct, seen;
} wk_run_state;

/* The JSON object kept as "whisker.run" (cJSON_free it); NULL out of memory. */
char *wk_run_settings_json(const wk_fit_config *c, const wk_run_state *s);

/* Reads the checkpoint's "whisker.run" (text, may be NULL for a checkpoint
 * from before it was kept: *found false, nothing changed) into *c and *s.
 * c->pretrained then points into *pretrained (owned by the caller; free it).
 * Values that differ from c's are named in one warning. A value out of range
 * is WK_ERR_FORMAT naming `path`. */
wk_status wk_run_settings_adopt(const char *path, const char *text, wk_fit_config *c,
                                wk_run_state *s, char **pretrained, bool *found);

#endif
