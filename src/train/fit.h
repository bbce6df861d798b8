/* fit.h - a whole training run, as `whisker train` starts it.
 *
 * Opens the data (a folder per class with a val/ or validation/ folder beside
 * train/, or a percentage split), builds the model, and trains for the given
 * epochs with validation after each. RUN_DIR receives:
 *   model.safetensors       the best model so far by validation accuracy
 *   checkpoint.safetensors  the run's state after the last finished epoch (or
 *                           at an interruption), enough to resume exactly
 *   metrics.csv             one line per epoch
 *   report.html             curves, confusion matrix, worst-classified images
 *                           (train/report.h), rewritten after every epoch
 * Every file is written atomically, so a run killed at any point leaves the
 * previous versions loadable. Resuming (cfg->resume) continues from the
 * checkpoint with nothing lost but the steps since it: every random draw
 * comes from (seed, epoch, sample) or (seed, step), so the resumed run ends
 * with the same weights as an uninterrupted one.
 *
 * With cfg->pretrained the run fine-tunes that model instead of building one
 * from the zoo (see the config fields below).
 *
 * A stop request (wk_fit_request_stop, e.g. from a SIGINT handler) makes the
 * run save a checkpoint at the current step and return WK_OK with
 * result->interrupted set. A loss or gradient that becomes NaN or infinite
 * ends the run with an error naming the step. */
#ifndef WK_TRAIN_FIT_H
#define WK_TRAIN_FIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/context.h"
#include "nn/net.h"
#include "train/optim.h"
#include "train/schedule.h"

/* The largest training image side (--size): a batch of 32 at 4096 px is 1.6 GB
 * of input alone. The most epochs (--epochs, --head-epochs). The CLI, the
 * checkpoint's run settings and wk_fit hold to both. */
enum { WK_FIT_MAX_SIZE = 4096, WK_FIT_MAX_EPOCHS = 100000 };

typedef struct wk_fit_config {
  const char *data_dir;   /* required */
  const char *val_dir;    /* NULL: val/ beside train/ or val_pct */
  const char *out_dir;    /* the run directory (created) */
  bool resume;            /* continue the run in out_dir */
  bool overwrite;         /* start over in an out_dir that holds a run (else refused) */
  const char *arch;       /* zoo name */
  float width;            /* mobilenetv2 width */
  int epochs, batch, size, workers;
  double val_pct;         /* when there is no validation folder */
  uint64_t seed;
  wk_optim_kind optim;
  double lr;              /* peak learning rate; <= 0: the optimizer's default */
  double weight_decay;
  wk_schedule_kind schedule;
  float label_smoothing;
  float crop_scale_min;   /* random-resized-crop: least share of the image kept */
  bool progress_bar;      /* redraw one line on a terminal; else periodic plain lines */
  /* Run the learning-rate range test (train/lrfind.h) on the fresh model
   * first and train at its suggestion (RUN_DIR/lr_find.csv keeps the curve);
   * the sweep's updates are undone. Ignored on resume. */
  bool lr_find;
  /* Fine-tuning (train/finetune.h): start from this model file with a new
   * head; the first head_epochs train the head alone, the rest everything with
   * learning rates from lr_min_scale (first layer) to 1 (head). lr is then the
   * head phase's peak rate and the second phase peaks at half of it. */
  const char *pretrained;
  int head_epochs;
  double lr_min_scale;
  /* Data parallelism (train/ddp.h): the ranks of `dist` (NULL: one process)
   * train one model; batch is per rank, so a step covers batch * ranks
   * samples. Only rank 0 writes RUN_DIR's files. */
  struct wk_dist *dist;
  int device;             /* WK_DEVICE_CPU, a GPU, or WK_DEVICE_AUTO (nn/net.h) */
  wk_precision precision; /* on a GPU (nn/net.h); fp32 by default */
  bool precision_auto;    /* instead: bf16 on a GPU that has it, else fp32 (nn/net.h) */
  bool sync_bn;           /* batch statistics over all ranks' batches */
  size_t bucket_bytes;    /* gradient all-reduce bucket; 0: 25 MB */
  bool nccl_single;       /* on a GPU in a world of one: still through NCCL (train/ddp.h) */
} wk_fit_config;

wk_fit_config wk_fit_config_default(void);

typedef struct wk_fit_result {
  int epochs_done;
  double best_val_acc, last_val_acc, last_val_loss;
  bool interrupted;
} wk_fit_result;

wk_status wk_fit(wk_ctx *ctx, const wk_fit_config *cfg, wk_fit_result *result);

/* Async-signal-safe: asks a running wk_fit to checkpoint and stop. */
void wk_fit_request_stop(void);

#endif
