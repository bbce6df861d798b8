/* fit.c - the training run (see fit.h). */
#include "train/fit.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/clock.h"
#include "core/atomic_file.h"
#include "core/log.h"
#include "cuda/cuda.h"
#include "data/loader.h"
#include "modelio/model.h"
#include "nn/zoo.h"
#include "train/finetune.h"
#include "train/fit_run.h"
#include "train/lrfind.h"
#include "train/metrics.h"
#include "train/predict.h"
#include "train/report.h"
#include "train/report_impl.h"
#include "train/trainer.h"
#include "train/ddp.h"

/* The one piece of process state: a signal handler can reach nothing else. */
static volatile sig_atomic_t wk_stop_requested;

void wk_fit_request_stop(void) { wk_stop_requested = 1; }

wk_fit_config wk_fit_config_default(void) {
  return (wk_fit_config){.arch = "resnet18", .width = 1.0f, .epochs = 10, .batch = 32,
                         .size = 224, .workers = 2, .val_pct = 20.0, .seed = 1,
                         .optim = WK_OPTIM_SGD, .lr = 0.0, .weight_decay = -1.0,
                         .schedule = WK_SCHEDULE_ONE_CYCLE, .label_smoothing = 0.1f,
                         .crop_scale_min = 0.08f, .device = WK_DEVICE_CPU, .head_epochs = 1, .lr_min_scale = 0.01};
}

/* One line of metrics.csv and of the report's curves. */
typedef wk_report_epoch wk_epoch_row;

/* Above this share of an epoch spent waiting for the loader, say so. */
#define WK_DATA_WAIT_HINT 0.25

typedef struct wk_run {
  wk_fit_config *cfg;
  wk_ctx *ctx;
  wk_dataset *train_ds, *val_ds;
  wk_net *net;
  wk_trainer *trainer;
  wk_model_meta meta;
  wk_loader *loader;
  /* on a GPU the loader hands out 8-bit batches, normalised on the device
   * (a quarter of the bytes to move; the CPU keeps the float path) */
  bool u8;
  wk_epoch_row *rows;
  int n_rows;
  wk_ddp *ddp;
  int rank, world;  /* rank 0 of 1 without data parallelism */
  bool writer;      /* rank 0: the one that writes RUN_DIR's files */
  wk_run_state state; /* kept in the checkpoint with the run's settings (fit_run.h) */
  char *pretrained;   /* the checkpoint's --pretrained, adopted on resume (owned) */
  wk_net *base;       /* a new fine-tuning run's --from, until its network is built */
  wk_model_meta base_meta;
  char path_model[4096], path_ckpt[4096], path_csv[4096], path_report[4096], path_lrf[4096];
} wk_run;

static wk_status wk_run_paths(wk_run *r) {
  const char *d = r->cfg->out_dir;
  int a = snprintf(r->path_model, sizeof r->path_model, "%s/model.safetensors", d);
  int b = snprintf(r->path_ckpt, sizeof r->path_ckpt, "%s/checkpoint.safetensors", d);
  int c = snprintf(r->path_csv, sizeof r->path_csv, "%s/metrics.csv", d);
  int e = snprintf(r->path_report, sizeof r->path_report, "%s/report.html", d);
  int f = snprintf(r->path_lrf, sizeof r->path_lrf, "%s/lr_find.csv", d);
  if (a >= (int)sizeof r->path_model || b >= (int)sizeof r->path_ckpt ||
      c >= (int)sizeof r->path_csv || e >= (int)sizeof r->path_report ||
      f >= (int)sizeof r->path_lrf)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: run directory path too long", d);
  const bool ckpt = access(r->path_ckpt, F_OK) == 0;
  /* a resume needs a run to continue; nothing is made when there is none */
  if (r->cfg->resume && !ckpt && errno == ENOENT)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: no run to resume (no checkpoint.safetensors); "
                   "leave out --resume to start one", d);
  WK_TRY(wk_mkdir_p(d)); /* with its parents, as users expect of --out */
  /* a folder this process cannot write in fails now, not after the first
   * epoch's training, at its first save */
  if (access(d, W_OK | X_OK) != 0)
    return wk_fail(WK_ERR_IO, "%s: cannot write in the run folder: %s", d, strerror(errno));
  /* a new run does not replace an earlier one's model without being told */
  const char *held = ckpt                             ? "checkpoint.safetensors"
                     : access(r->path_model, F_OK) == 0 ? "model.safetensors"
                                                        : NULL;
  if (held && !r->cfg->resume && !r->cfg->overwrite)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: holds a run already (%s): --resume continues it, "
                   "--overwrite starts a new one in its place, or give another --out", d, held);
  return WK_OK;
}

static wk_status wk_run_data(wk_run *r) {
  const wk_fit_config *c = r->cfg;
  wk_dataset_opts o = wk_dataset_opts_default();
  o.val_pct = c->val_pct;
  o.seed = c->seed;
  if (c->val_dir) {
    WK_TRY(wk_dataset_open_folder(c->data_dir, &o, &r->train_ds));
    WK_TRY(wk_dataset_open_folder(c->val_dir, &o, &r->val_ds));
    if (wk_dataset_n_classes(r->val_ds) != wk_dataset_n_classes(r->train_ds))
      return wk_fail(WK_ERR_INVALID_ARG, "%s has %d classes but %s has %d", c->val_dir,
                     wk_dataset_n_classes(r->val_ds), c->data_dir,
                     wk_dataset_n_classes(r->train_ds));
    for (int i = 0; i < wk_dataset_n_classes(r->train_ds); i++)
      if (strcmp(wk_dataset_class_name(r->train_ds, i), wk_dataset_class_name(r->val_ds, i)))
        return wk_fail(WK_ERR_INVALID_ARG, "class %d is '%s' in %s but '%s' in %s", i,
                       wk_dataset_class_name(r->train_ds, i), c->data_dir,
                       wk_dataset_class_name(r->val_ds, i), c->val_dir);
  } else {
    WK_TRY(wk_dataset_open_split(c->data_dir, &o, &r->train_ds, &r->val_ds));
    /* no val/ folder beside train/ and no share to split off: nothing to
     * validate on (a wk_fit caller's val_pct 0, or a resumed checkpoint's) */
    if (!r->val_ds)
      return wk_fail(WK_ERR_INVALID_ARG, "%s: no validation images: it has no val/ folder and "
                     "the validation share is %g%% (--val DIR, or --val-pct from 1 to 90)",
                     c->data_dir, c->val_pct);
  }
  if (wk_dataset_n_classes(r->train_ds) < 2) /* one: a dataset with none is not opened */
    return wk_fail(WK_ERR_INVALID_ARG, "%s: 1 class ('%s'): a classifier needs a folder per "
                   "class, at least two", c->data_dir, wk_dataset_class_name(r->train_ds, 0));
  if (wk_dataset_size(r->train_ds) < c->batch)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: %lld training images, fewer than one batch of %d",
                   c->data_dir, (long long)wk_dataset_size(r->train_ds), c->batch);
  WK_LOG_I("data: %lld training and %lld validation images, %d classes",
           (long long)wk_dataset_size(r->train_ds), (long long)wk_dataset_size(r->val_ds),
           wk_dataset_n_classes(r->train_ds));
  return WK_OK;
}

static wk_status wk_run_loader(wk_run *r) {
  const wk_fit_config *c = r->cfg;
  wk_loader_cfg lc = wk_loader_cfg_train(c->size, c->batch, c->workers, c->seed);
  lc.aug.brightness = lc.aug.contrast = lc.aug.saturation = 0.2f;
  lc.aug.scale_min = c->crop_scale_min;
  lc.shard_index = r->rank;
  lc.shard_count = r->world;
  /* the model's own normalisation, the one evaluation and classify use */
  memcpy(lc.aug.mean, r->meta.pre.mean, sizeof lc.aug.mean);
  memcpy(lc.aug.std, r->meta.pre.std, sizeof lc.aug.std);
  WK_TRY(wk_net_prefer_u8(r->net, lc.aug.mean, lc.aug.std, &r->u8));
  /* on a GPU the loop holds two batches (the step's and the next, staged while
   * it computes: wk_loader_peek_batch); one more slot keeps the workers a full
   * ring ahead */
  if (wk_net_on_gpu(r->net)) lc.prefetch = (lc.n_workers > 1 ? 2 * lc.n_workers : 2) + 1;
  lc.want_u8 = r->u8;
  lc.want_f32 = !r->u8;
  return wk_loader_create(r->train_ds, &lc, &r->loader);
}

/* A training batch as the network takes it. */
static const wk_tensor *wk_train_input(const wk_run *r, const wk_batch *bt) {
  return r->u8 ? &bt->images_u8 : &bt->images;
}

/* One-cycle rises for pct_start of a phase's steps and falls for the rest: a
 * phase of a few steps has no rise (schedule.c refuses it). This says so,
 * and what to change, before the run trains at all: `phase` names the phase
 * ("this run", "the head's phase", ...), `more` the option that lengthens it. */
static wk_status wk_one_cycle_fits(const wk_fit_config *c, double pct_start, int epochs,
                                   int64_t steps_per_epoch, const char *phase, const char *more) {
  const int64_t steps = (int64_t)epochs * steps_per_epoch;
  if (c->schedule != WK_SCHEDULE_ONE_CYCLE || pct_start * (double)steps > 1.0) return WK_OK;
  return wk_fail(WK_ERR_INVALID_ARG, "the one-cycle schedule needs at least %lld steps, and %s "
                 "has %lld (%d epoch%s of %lld batch%s): %s, a smaller --batch, or --schedule "
                 "cosine", (long long)floor(1.0 / pct_start) + 1, phase, (long long)steps, epochs,
                 epochs == 1 ? "" : "s", (long long)steps_per_epoch,
                 steps_per_epoch == 1 ? "" : "es", more);
}

/* The trainer for the phase that epoch e starts: from scratch, one schedule
 * over all epochs; fine-tuning, the head phase's or the whole network's. */
static wk_status wk_run_trainer(wk_run *r, int e, int64_t steps_per_epoch) {
  const wk_fit_config *c = r->cfg;
  const bool sgd = c->optim == WK_OPTIM_SGD;
  double lr = c->lr > 0 ? c->lr : c->pretrained ? (sgd ? 0.01 : 2e-3) : (sgd ? 0.1 : 2e-3);
  int end = c->epochs;
  const bool head = c->pretrained && e < c->head_epochs;
  if (head) {
    wk_finetune_freeze_body(r->net);
    end = c->head_epochs;
  } else if (c->pretrained) {
    wk_finetune_unfreeze(r->net, c->lr_min_scale);
    if (c->head_epochs > 0) lr *= 0.5;
  }
  wk_train_config tc = {.optim = wk_optim_config_default(c->optim), .seed = c->seed,
                        .label_smoothing = c->label_smoothing};
  tc.optim.weight_decay = c->weight_decay >= 0 ? c->weight_decay
                          : sgd ? 5e-4 : c->pretrained ? 0.01 : 0.05;
  tc.schedule = wk_schedule_default(c->schedule, lr, (int64_t)(end - e) * steps_per_epoch);
  const double pct = tc.schedule.pct_start;
  WK_TRY(wk_one_cycle_fits(c, pct, end - e, steps_per_epoch,
                           head ? "the head's phase"
                           : c->pretrained ? "the whole network's phase" : "this run",
                           head ? "more --head-epochs" : "more --epochs"));
  /* the head's phase comes first: the whole network's is checked then too,
   * so that a run is not refused after training its head */
  if (head && c->epochs > c->head_epochs)
    WK_TRY(wk_one_cycle_fits(c, pct, c->epochs - c->head_epochs, steps_per_epoch,
                             "the whole network's phase", "more --epochs"));
  wk_trainer_destroy(r->trainer);
  r->trainer = NULL;
  WK_TRY(wk_trainer_create(r->net, &tc, &r->trainer));
  wk_trainer_set_ddp(r->trainer, r->ddp);
  return WK_OK;
}

/* The network and meta of a new run (its trainer comes once the loader knows
 * the steps per epoch). */
static wk_status wk_run_new_model(wk_run *r) {
  const wk_fit_config *c = r->cfg;
  const int k = wk_dataset_n_classes(r->train_ds);
  if (c->pretrained) {
    WK_TRY(wk_finetune_from_net(r->ctx, r->base, &r->base_meta, c->pretrained, k, c->size,
                                c->seed, &r->net, &r->meta));
    wk_net_destroy(r->base);
    r->base = NULL;
    wk_model_meta_free(&r->base_meta);
  } else {
    wk_arch_opts ao = wk_arch_opts_default(k);
    ao.in_h = ao.in_w = c->size;
    ao.width = c->width;
    WK_TRY(wk_zoo_build(r->ctx, c->arch, &ao, c->seed, &r->net));
    WK_TRY(wk_model_meta_init(&r->meta, c->arch, k, c->size));
    r->meta.width = c->width;
  }
  /* a class name the model file cannot hold (a folder or CSV label of invalid UTF-8, a
   * label over 255 bytes) is refused here, before training, not at the first save */
  for (int i = 0; i < k; i++) {
    const char *name = wk_dataset_class_name(r->train_ds, i);
    WK_TRY(wk_model_check_class_name(c->data_dir, i, name));
    WK_TRY(wk_model_meta_set_class(&r->meta, i, name));
  }
  return WK_OK;
}

/* lr_find.csv: rate, loss and smoothed loss of every step of the sweep. */
static wk_status wk_write_lrfind_csv(const wk_run *r, const wk_lrfind *f) {
  const size_t n = wk_lrfind_n_points(f);
  const double *lr = wk_lrfind_lrs(f), *l = wk_lrfind_losses(f), *sm = wk_lrfind_smoothed(f);
  wk_rbuf b = {0};
  wk_rbuf_puts(&b, "lr,loss,smoothed_loss\n");
  for (size_t i = 0; i < n; i++) wk_rbuf_printf(&b, "%.6g,%.6f,%.6f\n", lr[i], l[i], sm[i]);
  wk_status s = b.failed ? wk_fail(WK_ERR_NOMEM, "%s: out of memory", r->path_lrf)
                         : wk_atomic_write_file(r->path_lrf, b.data, b.n_bytes);
  wk_rbuf_free(&b);
  return s;
}

/* Whether any rank was asked to stop: every rank must stop at the same step,
 * or the others would wait in a collective for it. */
static wk_status wk_stop_agreed(wk_run *r, bool *stop) {
  double flag = wk_stop_requested ? 1.0 : 0.0;
  if (r->world > 1)
    WK_TRY(wk_dist_allreduce_sum(r->cfg->dist, WK_DIST_MAIN, WK_DIST_F64, &flag, 1,
                                 "the stop flag"));
  *stop = flag > 0.0;
  return WK_OK;
}

/* The sweep's steps over the training data (epochs numbered apart from the
 * run's); *lr gets the suggestion, or no_descent (n bytes) says why there is
 * none (a curve with no clear descent: not an error). */
static wk_status wk_sweep(wk_run *r, wk_trainer *t, wk_lrfind *f, double *lr, char *no_descent,
                          size_t n_bytes) {
  bool stop = false;
  for (int64_t epoch = 1000000; wk_lrfind_running(f) && !stop; epoch++) {
    WK_TRY(wk_loader_start_epoch(r->loader, epoch));
    const wk_batch *bt;
    for (;;) {
      WK_TRY(wk_loader_next_batch(r->loader, &bt));
      if (!bt || !wk_lrfind_running(f)) break;
      WK_TRY(wk_stop_agreed(r, &stop));
      if (stop) break;
      const double rate = wk_lrfind_lr(f);
      float loss;
      WK_TRY(wk_trainer_step_at(t, wk_train_input(r, bt), &bt->labels, rate, &loss));
      const size_t k = wk_lrfind_n_points(f);
      if (k % 10 == 0 && r->writer)
        fprintf(stderr, "lr-find: step %zu, rate %.3g, loss %.4f\n", k + 1, rate, (double)loss);
      if (!wk_lrfind_observe(f, loss)) break;
    }
  }
  if (stop) return wk_fail(WK_ERR_INVALID_ARG, "lr-find interrupted");
  if (r->writer) WK_TRY(wk_write_lrfind_csv(r, f));
  double steepest;
  /* refuses a curve with no descent (WK_ERR_INVALID_ARG); any other failure stays one */
  const wk_status sg = wk_lrfind_suggest(f, &steepest, NULL);
  if (sg == WK_ERR_INVALID_ARG) {
    snprintf(no_descent, n_bytes, "%s", wk_last_error());
    return WK_OK;
  }
  WK_TRY(sg);
  /* The rate: a tenth of the one at the lowest smoothed loss (fastai's
   * "minimum / 10"); the steepest slope is noisier on short sweeps. */
  const size_t n = wk_lrfind_n_points(f), skip = n / 10;
  const double *sm = wk_lrfind_smoothed(f), *lrs = wk_lrfind_lrs(f);
  size_t best = skip;
  for (size_t i = skip; i < n; i++)
    if (sm[i] < sm[best]) best = i;
  char text[32]; /* three significant digits: a rate to write down and reuse */
  snprintf(text, sizeof text, "%.3g", lrs[best] / 10.0);
  *lr = strtod(text, NULL);
  WK_LOG_I("lr-find: lowest smoothed loss %.4f at rate %.3g; steepest descent at %.3g", sm[best],
           lrs[best], steepest);
  return WK_OK;
}

/* --lr-find: the range test from the fresh model, then the weights and
 * statistics put back and the run's trainer remade at the suggested rate. */
static wk_status wk_run_lr_find(wk_run *r, int64_t steps_per_epoch) {
  wk_net *net = r->net;
  const size_t ne = wk_net_n_elems(net), nb = wk_net_n_buffer_elems(net);
  float *w0 = malloc((ne ? ne : 1) * sizeof *w0), *b0 = malloc((nb ? nb : 1) * sizeof *b0);
  const int64_t bn0 = wk_net_bn_batches(net);
  wk_trainer *t = NULL;
  wk_lrfind *f = NULL;
  wk_status s = w0 && b0 ? WK_OK : wk_fail(WK_ERR_NOMEM, "lr-find: out of memory");
  if (s == WK_OK) {
    memcpy(w0, wk_net_weights(net), ne * sizeof *w0);
    memcpy(b0, wk_net_buffer_data(net), nb * sizeof *b0);
    s = wk_trainer_create(net, wk_trainer_config(r->trainer), &t);
    if (s == WK_OK) wk_trainer_set_ddp(t, r->ddp);
  }
  wk_lrfind_config lc = wk_lrfind_config_default();
  if (s == WK_OK) s = wk_lrfind_create(&lc, &f);
  double lr = 0;
  char no_descent[256] = "";
  if (s == WK_OK) s = wk_sweep(r, t, f, &lr, no_descent, sizeof no_descent);
  if (w0 && b0) {
    memcpy(wk_net_weights(net), w0, ne * sizeof *w0);
    memcpy(wk_net_buffer_data(net), b0, nb * sizeof *b0);
    wk_net_set_bn_batches(net, bn0);
    wk_net_weights_changed(net);
  }
  wk_lrfind_destroy(f);
  wk_trainer_destroy(t);
  free(w0);
  free(b0);
  if (s != WK_OK) return s;
  if (no_descent[0]) { /* say so and keep the default rate */
    WK_LOG_W("%s; training at the default rate %g", no_descent,
             wk_trainer_config(r->trainer)->schedule.lr);
    return WK_OK;
  }
  if (r->writer)
    fprintf(stderr, "lr-find: suggested learning rate %g (curve in %s)\n", lr, r->path_lrf);
  r->cfg->lr = lr;
  return wk_run_trainer(r, 0, steps_per_epoch);
}

/* metrics.csv, all rows, written atomically (any values: a row read back
 * from a damaged file may hold huge ones). */
static wk_status wk_write_csv(const wk_run *r) {
  wk_rbuf b = {0};
  wk_rbuf_puts(&b, "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s,"
                   "data_wait_s\n");
  for (int i = 0; i < r->n_rows; i++) {
    const wk_epoch_row *e = &r->rows[i];
    wk_rbuf_printf(&b, "%d,%.6f,%.6f,%.6f,%.6f,%.6g,%.2f,%.2f,%.2f\n", e->epoch, e->train_loss,
                   e->train_acc, e->val_loss, e->val_acc, e->lr, e->seconds, e->images_per_s,
                   e->data_wait_s);
  }
  wk_status s = b.failed ? wk_fail(WK_ERR_NOMEM, "%s: out of memory", r->path_csv)
                         : wk_atomic_write_file(r->path_csv, b.data, b.n_bytes);
  wk_rbuf_free(&b);
  return s;
}

/* On resume: the rows of metrics.csv up to `epochs` finished epochs (the
 * table has room for them: wk_fit_run). */
static wk_status wk_read_csv(wk_run *r, int epochs) {
  FILE *f = fopen(r->path_csv, "r");
  if (!f && errno == ENOENT) return WK_OK; /* no history: the curves start at the resume */
  if (!f) return wk_fail(WK_ERR_IO, "%s: %s", r->path_csv, strerror(errno));
  char line[512];
  while (fgets(line, sizeof line, f) && r->n_rows < epochs) {
    wk_epoch_row e = {.data_wait_s = NAN}; /* a run from before the column: unknown */
    const int got = sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &e.epoch, &e.train_loss,
                           &e.train_acc, &e.val_loss, &e.val_acc, &e.lr, &e.seconds,
                           &e.images_per_s, &e.data_wait_s);
    if (got != 8 && got != 9) continue; /* the header, or a damaged line */
    if (e.epoch >= 1 && e.epoch <= epochs) r->rows[r->n_rows++] = e;
  }
  fclose(f);
  return WK_OK;
}

static void wk_progress(const wk_run *r, int epoch, int64_t b, int64_t nb, double loss,
                        double acc, double ips, double elapsed, bool final) {
  if (!r->writer) return;
  const double eta = b > 0 ? elapsed / (double)b * (double)(nb - b) : 0.0;
  if (r->cfg->progress_bar) {
    char bar[21];
    int filled = (int)(20 * b / (nb ? nb : 1));
    for (int i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '.';
    bar[20] = '\0';
    fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.4f acc %.3f %.1f img/s ETA %d:%02d ",
            epoch + 1, r->cfg->epochs, bar, (long long)b, (long long)nb, loss, acc, ips,
            (int)eta / 60, (int)eta % 60);
    if (final) fputc('\n', stderr);
  } else if (final || b % 20 == 0) {
    fprintf(stderr, "epoch %d/%d batch %lld/%lld loss %.4f acc %.3f %.1f img/s ETA %ds\n",
            epoch + 1, r->cfg->epochs, (long long)b, (long long)nb, loss, acc, ips, (int)eta);
  }
}

/* The model's provenance: the data, the run's length and result, and for a
 * fine-tuned model its base. */
static wk_status wk_provenance(const wk_run *r, double val_acc, int epoch, char **out) {
  const wk_fit_config *c = r->cfg;
  cJSON *o = cJSON_CreateObject();
  bool ok = o && cJSON_AddStringToObject(o, "data", c->data_dir) &&
            cJSON_AddNumberToObject(o, "epochs", epoch) &&
            cJSON_AddNumberToObject(o, "val_accuracy", round(val_acc * 1e4) / 1e4) &&
            cJSON_AddNumberToObject(o, "seed", (double)c->seed) &&
            (!c->pretrained || (cJSON_AddStringToObject(o, "base_model", c->pretrained) &&
                                cJSON_AddNumberToObject(o, "head_epochs", c->head_epochs)));
  *out = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return *out ? WK_OK : wk_fail(WK_ERR_NOMEM, "out of memory");
}

static wk_status wk_save_best(wk_run *r, double val_acc, int epoch) {
  char *prov;
  WK_TRY(wk_provenance(r, val_acc, epoch, &prov));
  wk_status s = wk_model_meta_set_provenance(&r->meta, prov);
  cJSON_free(prov);
  if (s != WK_OK) return s;
  return wk_model_save(r->path_model, r->net, &r->meta, NULL, 0, NULL, 0);
}

typedef struct wk_worst {
  int64_t index;
  float prob_true;
  int predicted;
} wk_worst;

static int wk_cmp_worst(const void *a, const void *b) {
  float x = ((const wk_worst *)a)->prob_true, y = ((const wk_worst *)b)->prob_true;
  return (x > y) - (x < y);
}

#define WK_REPORT_WORST 12

/* report.html from the epochs so far and this validation's predictions. */
static wk_status wk_write_report(wk_run *r, const wk_metrics *m, const float *probs,
                                 const int32_t *labels) {
  const wk_fit_config *c = r->cfg;
  const int k = m->n_classes;
  const int64_t n = m->n;
  wk_worst *w = malloc((size_t)n * sizeof *w);
  if (!w) return wk_fail(WK_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++)
    w[i] = (wk_worst){.index = i, .prob_true = probs[i * k + labels[i]],
                      .predicted = wk_argmax(probs + i * k, k)};
  qsort(w, (size_t)n, sizeof *w, wk_cmp_worst);
  wk_report_example ex[WK_REPORT_WORST];
  int n_ex = 0;
  for (int64_t i = 0; i < n && n_ex < WK_REPORT_WORST; i++) {
    if (w[i].predicted == labels[w[i].index]) continue; /* only the misclassified */
    ex[n_ex++] = (wk_report_example){.path = wk_dataset_path(r->val_ds, w[i].index),
                                     .label = labels[w[i].index],
                                     .predicted = w[i].predicted, .prob_true = w[i].prob_true};
  }
  char v[8][64], title[256];
  snprintf(v[0], sizeof v[0], "%d", c->epochs);
  snprintf(v[1], sizeof v[1], "%d", c->batch * r->world); /* per step, over all ranks */
  snprintf(v[2], sizeof v[2], "%d x %d", c->size, c->size);
  snprintf(v[3], sizeof v[3], "%s, %s schedule", wk_optim_kind_name(c->optim),
           wk_schedule_kind_name(c->schedule));
  snprintf(v[4], sizeof v[4], "%g", wk_trainer_config(r->trainer)->schedule.lr);
  snprintf(v[5], sizeof v[5], "%llu", (unsigned long long)c->seed);
  snprintf(v[6], sizeof v[6], "%lld train, %lld validation",
           (long long)wk_dataset_size(r->train_ds), (long long)wk_dataset_size(r->val_ds));
  snprintf(v[7], sizeof v[7], "%g", (double)c->label_smoothing);
  const wk_report_setting set[] = {
      {"model", c->pretrained ? c->pretrained : c->arch}, {"data", c->data_dir},
      {"epochs", v[0]},
      {"batch", v[1]},            {"input", v[2]},        {"optimizer", v[3]},
      {"peak learning rate", v[4]}, {"seed", v[5]},       {"images", v[6]},
      {"label smoothing", v[7]}};
  snprintf(title, sizeof title, "%s%s on %s", c->pretrained ? "fine-tuned " : "",
           c->pretrained ? r->meta.arch : c->arch, c->data_dir);
  const wk_report rep = {.title = title, .settings = set,
                         .n_settings = (int)(sizeof set / sizeof set[0]), .epochs = r->rows,
                         .n_epochs = r->n_rows, .n_classes = k,
                         .class_names = (const char *const *)r->meta.class_names,
                         .confusion = m->confusion, .worst = ex, .n_worst = n_ex};
  wk_status s = wk_report_write_html(r->path_report, &rep);
  free(w);
  return s;
}

/* Data-parallel validation: each rank predicts its share of the batches
 * (wk_predict_dataset_part, in the batches one process would make, so the
 * numbers are the same) and a sum over the ranks gives every rank all rows. */
static wk_status wk_predict_shared(wk_run *r, float **probs_out, int32_t **labels_out) {
  const int64_t n = wk_dataset_size(r->val_ds), k = wk_net_output_features(r->net);
  float *buf = calloc((size_t)(n * (k + 1)), sizeof *buf); /* probs, then labels */
  int32_t *labels = calloc((size_t)n, sizeof *labels);
  float *probs = malloc((size_t)(n * k) * sizeof *probs);
  wk_status s = buf && labels && probs ? WK_OK : wk_fail(WK_ERR_NOMEM, "out of memory");
  if (s == WK_OK)
    s = wk_predict_dataset_part(r->net, &r->meta.pre, r->val_ds, r->cfg->batch, r->cfg->workers,
                                r->rank, r->world, buf, labels);
  if (s == WK_OK) {
    for (int64_t i = 0; i < n; i++) buf[n * k + i] = (float)labels[i]; /* exact below 2^24 */
    s = wk_dist_allreduce_sum(r->cfg->dist, WK_DIST_MAIN, WK_DIST_F32, buf, (size_t)(n * (k + 1)),
                              "the validation predictions");
  }
  if (s == WK_OK) {
    memcpy(probs, buf, (size_t)(n * k) * sizeof *probs);
    for (int64_t i = 0; i < n; i++) labels[i] = (int32_t)buf[n * k + i];
    *probs_out = probs;
    *labels_out = labels;
  } else {
    free(probs);
    free(labels);
  }
  free(buf);
  return s;
}

/* Validation after an epoch: loss and accuracy into row, and the report. */
static wk_status wk_validate(wk_run *r, wk_epoch_row *row) {
  float *probs;
  int32_t *labels;
  if (r->world > 1) WK_TRY(wk_predict_shared(r, &probs, &labels));
  else
    WK_TRY(wk_predict_dataset(r->net, &r->meta.pre, r->val_ds, r->cfg->batch, r->cfg->workers,
                              &probs, &labels));
  wk_metrics m;
  wk_status s = wk_metrics_compute(probs, labels, wk_dataset_size(r->val_ds),
                                   wk_dataset_n_classes(r->val_ds), 1, &m);
  if (s == WK_OK) {
    row->val_loss = m.loss;
    row->val_acc = m.accuracy;
    r->rows[r->n_rows++] = *row;
    if (r->writer) s = wk_write_report(r, &m, probs, labels);
    wk_metrics_free(&m);
  }
  free(probs);
  free(labels);
  return s;
}

/* The checkpoint at pos with the run's settings and state (fit_run.h), by
 * rank 0. partial: the epoch's training sums so far over every rank (NULL:
 * at an epoch's end). */
static wk_status wk_save_checkpoint(wk_run *r, const wk_data_pos *pos,
                                    const wk_run_state *partial) {
  if (!r->writer) return WK_OK;
  wk_run_state s = partial ? *partial : (wk_run_state){0};
  s.best_val_acc = r->state.best_val_acc;
  char *json = wk_run_settings_json(r->cfg, &s);
  if (!json) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", r->path_ckpt);
  const wk_status st = wk_checkpoint_save_run(r->path_ckpt, r->trainer, &r->meta, pos, json);
  cJSON_free(json);
  return st;
}

/* Trains epoch e from batch `skip`; *stopped when a stop was requested (the
 * checkpoint is then written here). Resumed inside the epoch, rank 0 starts
 * from the sums the checkpoint kept (over every rank), so that the epoch's
 * row covers all of it. */
static wk_status wk_train_epoch(wk_run *r, int e, int64_t skip, wk_epoch_row *row,
                                bool *stopped) {
  const int64_t nb = wk_loader_batches_per_epoch(r->loader);
  /* on a GPU each step copies the next batch up while it computes */
  const bool stage = wk_trainer_stage_wanted(r->trainer);
  double loss_sum = 0, t0 = wk_now_s(), lr = 0, wait = 0; /* wait: for the loader */
  int64_t seen = 0, correct = 0, b = 0, seen_before = 0; /* before: by the kept sums */
  if (skip > 0 && r->rank == 0) {
    loss_sum = r->state.loss_sum;
    correct = r->state.correct;
    seen = seen_before = r->state.seen;
    wait = r->state.wait_s;
  }
  WK_TRY(wk_loader_start_epoch(r->loader, e));
  for (;;) {
    const wk_batch *bt, *next = NULL;
    double w0 = wk_now_s();
    WK_TRY(wk_loader_next_batch(r->loader, &bt));
    if (!bt) break;
    if (b++ < skip) continue; /* done before the interruption */
    if (stage) { /* held, unchanged, until the next step takes it */
      WK_TRY(wk_loader_peek_batch(r->loader, &next));
      wk_trainer_set_next(r->trainer, next ? wk_train_input(r, next) : NULL);
    }
    wait += wk_now_s() - w0;
    float loss;
    WK_TRY(wk_trainer_step(r->trainer, wk_train_input(r, bt), &bt->labels, &loss, &lr));
    const int32_t *pred = wk_trainer_predicted(r->trainer);
    for (int64_t i = 0; i < bt->n; i++)
      correct += pred[i] == ((const int32_t *)bt->labels.data)[i];
    seen += bt->n;
    loss_sum += (double)loss * (double)bt->n;
    const double el = wk_now_s() - t0;
    wk_progress(r, e, b, nb, loss_sum / (double)seen, (double)correct / (double)seen,
                (double)seen / el, el, b == nb);
    bool stop;
    WK_TRY(wk_stop_agreed(r, &stop));
    if (stop) {
      if (r->cfg->progress_bar && r->writer) fputc('\n', stderr);
      const wk_data_pos pos = {.epoch = e, .batch = b,
                               .global_batch = (int64_t)r->cfg->batch * r->world};
      double tot[4] = {loss_sum, (double)correct, (double)seen, wait};
      if (r->world > 1)
        WK_TRY(wk_dist_allreduce_sum(r->cfg->dist, WK_DIST_MAIN, WK_DIST_F64, tot, 4,
                                     "the epoch's training metrics so far"));
      const wk_run_state part = {.loss_sum = tot[0], .correct = (int64_t)tot[1],
                                 .seen = (int64_t)tot[2], .wait_s = tot[3]};
      WK_TRY(wk_ddp_average_buffers(r->ddp));
      WK_TRY(wk_save_checkpoint(r, &pos, &part));
      *stopped = true;
      return WK_OK;
    }
  }
  if (r->world > 1) { /* the epoch's totals over every rank; the ranks' mean wait */
    double tot[5] = {loss_sum, (double)correct, (double)seen, wait, (double)seen_before};
    WK_TRY(wk_dist_allreduce_sum(r->cfg->dist, WK_DIST_MAIN, WK_DIST_F64, tot, 5,
                                 "the epoch's training metrics"));
    loss_sum = tot[0];
    correct = (int64_t)tot[1];
    seen = (int64_t)tot[2];
    wait = tot[3] / r->world;
    seen_before = (int64_t)tot[4];
  }
  const double secs = wk_now_s() - t0;
  *row = (wk_epoch_row){.epoch = e + 1, .train_loss = seen ? loss_sum / (double)seen : NAN,
                        .train_acc = seen ? (double)correct / (double)seen : NAN, .lr = lr,
                        .seconds = secs,
                        .images_per_s = (double)(seen - seen_before) / (secs > 0 ? secs : 1),
                        .data_wait_s = wait};
  return WK_OK;
}

static wk_status wk_fit_run(wk_run *r, wk_fit_result *res) {
  wk_fit_config *c = r->cfg;
  wk_data_pos pos = {0, 0, 0};
  /* a wrong --from is told before a run folder is made and the data scanned */
  if (!c->resume && c->pretrained)
    WK_TRY(wk_model_load(r->ctx, c->pretrained, &r->base, &r->base_meta));
  WK_TRY(wk_run_paths(r));
  bool settings = false; /* the checkpoint kept the run's settings */
  if (c->resume) { /* before the data: its split and order follow the run's seed */
    char *run_json = NULL;
    WK_TRY(wk_checkpoint_load_run(r->ctx, r->path_ckpt, &r->net, &r->trainer, &r->meta, &pos,
                                  &run_json));
    const wk_status s = wk_run_settings_adopt(r->path_ckpt, run_json, c, &r->state,
                                              &r->pretrained, &settings);
    free(run_json);
    WK_TRY(s);
  }
  WK_TRY(wk_run_data(r));
  if (!c->resume) WK_TRY(wk_run_new_model(r));
  if (pos.epoch > c->epochs)
    return settings ? wk_fail(WK_ERR_FORMAT, "%s: at epoch %lld of a run of %d epochs: damaged",
                              r->path_ckpt, (long long)pos.epoch, c->epochs)
                    : wk_fail(WK_ERR_INVALID_ARG, "%s: the run has trained %lld epochs, more "
                              "than --epochs %d", r->path_ckpt, (long long)pos.epoch, c->epochs);
  r->rows = calloc((size_t)c->epochs + 1, sizeof *r->rows);
  if (!r->rows) return wk_fail(WK_ERR_NOMEM, "out of memory");
  if (c->size == 0) { /* fine-tuning at the base model's own input size */
    int h, w, ch;
    wk_net_input_shape(r->net, &h, &w, &ch);
    c->size = h;
  }
  /* auto: a new run decides by the device; a resumed one keeps what its
   * checkpoint trained in (fp32 for one from before checkpoints kept it),
   * bf16 as auto again (fp32 where the device has no bf16: the CPU) */
  if (c->precision_auto && (!c->resume || wk_net_precision(r->net) == WK_PRECISION_BF16))
    wk_net_set_precision_auto(r->net);
  else if (!c->precision_auto)
    WK_TRY(wk_net_set_precision(r->net, c->precision));
  const wk_status placed = wk_net_place(r->net, c->device);
  /* the CPU refusing the checkpoint's 16-bit or tf32 precision (not any other failure) */
  const bool cpu = c->device == WK_DEVICE_CPU ||
                   (c->device == WK_DEVICE_AUTO && wk_cuda_device_count() < 1);
  if (placed != WK_OK && cpu && c->precision_auto && c->resume &&
      wk_net_precision(r->net) != WK_PRECISION_FP32)
    return wk_fail(placed, "the checkpoint trained in %s, which it keeps under --precision auto: "
                   "%s (resume where that precision runs, or pass --precision fp32)",
                   wk_precision_name(wk_net_precision(r->net)), wk_last_error());
  WK_TRY(placed);
  /* --device auto may differ between ranks */
  if (r->world > 1) WK_TRY(wk_trainer_ranks_agree(c->dist, r->world, r->net));
  WK_TRY(wk_run_loader(r));
  if (r->world > 1 || (c->nccl_single && wk_net_on_gpu(r->net))) {
    const wk_ddp_opts o = {.bucket_bytes = c->bucket_bytes, .sync_bn = c->sync_bn,
                           .nccl_single = c->nccl_single};
    WK_TRY(wk_ddp_create(c->dist, r->net, &o, &r->ddp));
  }
  WK_TRY(wk_ddp_broadcast_model(r->ddp));
  if (r->ddp && r->writer)
    WK_LOG_I("data parallel: %d rank%s (%s), %d images per rank and step, %d gradient bucket%s%s",
             r->world, r->world == 1 ? "" : "s", wk_ddp_backend(r->ddp), c->batch,
             wk_ddp_n_buckets(r->ddp), wk_ddp_n_buckets(r->ddp) == 1 ? "" : "s",
             wk_ddp_synced_bn(r->ddp) ? ", synchronised batchnorm" : "");
  if (c->resume) {
    wk_trainer_set_ddp(r->trainer, r->ddp);
    const int64_t gb = (int64_t)c->batch * r->world;
    if (pos.global_batch > 0 && pos.global_batch != gb) {
      /* another number of ranks (or batch): the same point of the schedule,
       * and of the epoch to within a step */
      const double f = (double)pos.global_batch / (double)gb;
      WK_TRY(wk_trainer_rescale_steps(r->trainer, f));
      pos.batch = (int64_t)((double)pos.batch * f);
      WK_LOG_W("resuming with %lld images per step instead of %lld: the step count and "
               "schedule are rescaled by %g", (long long)gb, (long long)pos.global_batch, f);
    }
    if (wk_net_output_features(r->net) != wk_dataset_n_classes(r->train_ds))
      return wk_fail(WK_ERR_INVALID_ARG, "%s: the checkpoint has %lld classes, the data %d",
                     r->path_ckpt, (long long)wk_net_output_features(r->net),
                     wk_dataset_n_classes(r->train_ds));
    for (int k = 0; k < r->meta.n_classes; k++)
      if (strcmp(r->meta.class_names[k], wk_dataset_class_name(r->train_ds, k)))
        return wk_fail(WK_ERR_INVALID_ARG, "%s: class %d is '%s' in the checkpoint but '%s' in "
                       "%s: resume on the run's own data", r->path_ckpt, k,
                       r->meta.class_names[k], wk_dataset_class_name(r->train_ds, k),
                       c->data_dir);
    if (c->pretrained && pos.epoch < c->head_epochs)
      wk_finetune_freeze_body(r->net);
    else if (c->pretrained)
      wk_finetune_unfreeze(r->net, c->lr_min_scale);
    WK_TRY(wk_read_csv(r, (int)pos.epoch));
    WK_LOG_I("resuming %s at epoch %lld, batch %lld", c->out_dir, (long long)pos.epoch + 1,
             (long long)pos.batch);
  } else {
    WK_TRY(wk_run_trainer(r, 0, wk_loader_batches_per_epoch(r->loader)));
    if (c->lr_find) WK_TRY(wk_run_lr_find(r, wk_loader_batches_per_epoch(r->loader)));
  }
  /* the best so far: kept in the checkpoint, and (one from before it was)
   * in metrics.csv */
  for (int i = 0; i < r->n_rows; i++)
    if (r->rows[i].val_acc > r->state.best_val_acc) r->state.best_val_acc = r->rows[i].val_acc;
  for (int e = (int)pos.epoch; e < c->epochs; e++) {
    wk_epoch_row row;
    bool stopped = false;
    const int64_t skip = e == pos.epoch ? pos.batch : 0;
    if (c->pretrained && e > 0 && e == c->head_epochs && skip == 0) {
      WK_LOG_I("fine-tuning: head trained; now the whole network (learning rates x%g to x1)",
               c->lr_min_scale);
      WK_TRY(wk_run_trainer(r, e, wk_loader_batches_per_epoch(r->loader)));
    }
    WK_TRY(wk_train_epoch(r, e, skip, &row, &stopped));
    if (stopped) {
      res->interrupted = true;
      WK_LOG_W("interrupted: checkpoint saved in %s; continue with --resume", r->path_ckpt);
      return WK_OK;
    }
    WK_TRY(wk_ddp_average_buffers(r->ddp));
    WK_TRY(wk_validate(r, &row));
    if (r->writer) WK_TRY(wk_write_csv(r));
    if (row.val_acc > r->state.best_val_acc) {
      r->state.best_val_acc = row.val_acc;
      if (r->writer) WK_TRY(wk_save_best(r, row.val_acc, e + 1));
    }
    const wk_data_pos next = {.epoch = e + 1, .batch = 0,
                              .global_batch = (int64_t)c->batch * r->world};
    WK_TRY(wk_save_checkpoint(r, &next, NULL));
    res->epochs_done = e + 1;
    res->last_val_acc = row.val_acc;
    res->last_val_loss = row.val_loss;
    if (r->writer) {
      const double share = row.seconds > 0 ? row.data_wait_s / row.seconds : 0.0;
      fprintf(stderr, "epoch %d/%d: train loss %.4f acc %.4f, val loss %.4f acc %.4f, %.0f s "
              "(%.0f%% waiting for data)\n", e + 1, c->epochs, row.train_loss, row.train_acc,
              row.val_loss, row.val_acc, row.seconds, 100.0 * share);
      if (share > WK_DATA_WAIT_HINT)
        WK_LOG_W("training waited for images %.0f%% of the epoch: decoding is the bottleneck "
                 "(--workers %d; more workers, or smaller stored images, would help)",
                 100.0 * share, c->workers);
    }
    wk_gpu_memory mem;
    if (r->writer && e == (int)pos.epoch && wk_net_on_gpu(r->net) &&
        wk_net_gpu_memory(r->net, &mem) == WK_OK) /* a figure to size --batch by */
      WK_LOG_I("GPU memory: at most %.0f MiB in use, %.0f MiB held, of %.0f MiB on the device",
               wk_mib(mem.cache.peak_allocated_bytes), wk_mib(mem.cache.peak_reserved_bytes),
               wk_mib(mem.device_total_bytes));
    wk_gpu_graph_stats gs; /* what cuDNN took of the batchnorms, once */
    if (r->writer && e == (int)pos.epoch && wk_net_on_gpu(r->net) &&
        wk_net_gpu_graph_stats(r->net, &gs) == WK_OK) {
      if (gs.bn_fuse_groups)
        WK_LOG_I("batchnorm fused with relu: %d of %d groups%s%s",
                 gs.bn_fuse_groups - gs.bn_fuse_refused, gs.bn_fuse_groups,
                 gs.bn_fuse_note[0] ? "; " : "", gs.bn_fuse_note);
      if (gs.bn_own_note[0]) WK_LOG_I("batchnorm on whisker's kernels: %s", gs.bn_own_note);
    }
    /* whether $WHISKER_CUDA_GRAPH's graphs run, every epoch (they may stop:
     * a failed capture, buffers that moved) */
    if (r->writer && wk_trainer_graphs_wanted(r->trainer) &&
        wk_net_gpu_graph_stats(r->net, &gs) == WK_OK)
      WK_LOG_I("CUDA graphs: %lld captured, %lld steps replayed, %lld invalidated%s",
               (long long)gs.captured, (long long)gs.replayed, (long long)gs.invalidations,
               gs.off ? "; a capture failed: the steps run uncaptured" : "");
    if (r->writer && wk_net_precision(r->net) == WK_PRECISION_FP16 && wk_net_on_gpu(r->net))
      WK_LOG_I("fp16: loss scale %g, %lld step%s skipped so far (a gradient overflowed)",
               wk_trainer_loss_scale(r->trainer),
               (long long)wk_trainer_skipped_steps(r->trainer),
               wk_trainer_skipped_steps(r->trainer) == 1 ? "" : "s");
  }
  if (r->n_rows) {
    res->last_val_acc = r->rows[r->n_rows - 1].val_acc;
    res->last_val_loss = r->rows[r->n_rows - 1].val_loss;
  }
  res->epochs_done = r->n_rows;
  return WK_OK;
}

wk_status wk_fit(wk_ctx *ctx, const wk_fit_config *cfg_in, wk_fit_result *res) {
  memset(res, 0, sizeof *res);
  res->best_val_acc = -1.0; /* none yet; wk_fit_run keeps it in r.state */
  wk_fit_config cfg = *cfg_in; /* size 0 (fine-tuning) becomes the model's */
  if (!cfg.data_dir || !cfg.out_dir || cfg.epochs < 1 || cfg.epochs > WK_FIT_MAX_EPOCHS ||
      cfg.batch < 2 ||
      (cfg.size < 16 && !(cfg.size == 0 && cfg.pretrained)) || cfg.size > WK_FIT_MAX_SIZE ||
      cfg.workers < 1 || cfg.head_epochs < 0 || !(cfg.lr_min_scale > 0 && cfg.lr_min_scale <= 1))
    return wk_fail(WK_ERR_INVALID_ARG, "train: data, output directory, epochs 1 to %d, batch >= "
                   "2, size 16 to %d (or 0 to fine-tune at the model's), workers >= 1, head "
                   "epochs >= 0 and a learning-rate scale in (0, 1] are required",
                   WK_FIT_MAX_EPOCHS, WK_FIT_MAX_SIZE);
  if (cfg.pretrained && cfg.head_epochs >= cfg.epochs)
    WK_LOG_W("fine-tuning: all %d epochs train the head alone (--head-epochs %d)", cfg.epochs,
             cfg.head_epochs);
  wk_stop_requested = 0;
  wk_run r = {.cfg = &cfg, .ctx = ctx, .rank = wk_dist_rank(cfg.dist),
              .world = wk_dist_size(cfg.dist), .state = {.best_val_acc = -1.0}};
  r.writer = r.rank == 0;
  wk_status s = wk_fit_run(&r, res);
  res->best_val_acc = r.state.best_val_acc;
  wk_loader_destroy(r.loader);
  wk_trainer_destroy(r.trainer);
  wk_ddp_destroy(r.ddp);
  wk_net_destroy(r.net);
  wk_model_meta_free(&r.meta);
  wk_net_destroy(r.base);
  wk_model_meta_free(&r.base_meta);
  wk_dataset_free(r.train_ds);
  wk_dataset_free(r.val_ds);
  free(r.rows);
  free(r.pretrained);
  return s;
}
