/* trainer.h - one training step, and checkpoints that resume it exactly.
 *
 * A step: learning rate (and one-cycle momentum) from the schedule at the
 * current step; dropout masks from (seed, step); training forward; softmax
 * cross-entropy with label smoothing; backward; a non-finite gradient check;
 * optional clipping by global norm; the optimizer update. For a network on a
 * GPU the loss is computed there (the logits stay on the device) and, without
 * clipping, the update too; $WHISKER_GPU_HOST_LOSS=1 brings the loss back to
 * the host, $WHISKER_GPU_HOST_STEP=1 the loss and the update (both for
 * comparison). Everything random is
 * a function of (seed, step), so a checkpoint needs only the weights, the
 * batchnorm statistics, the optimizer state and the step counter to continue
 * bit for bit.
 *
 * A checkpoint is a model file (modelio/model.h) plus the tensors
 * "optim.<state>" (the optimizer's arena-shaped state) and "optim.steps" (I64,
 * per parameter) and the metadata "whisker.checkpoint": {"step", "seed",
 * "label_smoothing", "clip_norm", "optimizer": {...}, "schedule": {...},
 * "epoch", "batch"}. The trainer's caller keeps its data position in "epoch"
 * and "batch". */
#ifndef WK_TRAIN_TRAINER_H
#define WK_TRAIN_TRAINER_H

#include "modelio/model.h"
#include "nn/net.h"
#include "train/optim.h"
#include "train/schedule.h"

typedef struct wk_train_config {
  wk_optim_config optim;
  wk_schedule schedule;
  uint64_t seed;
  float label_smoothing; /* [0, 1) */
  double clip_norm;      /* > 0: clip gradients to this global norm; 0: off */
} wk_train_config;

typedef struct wk_trainer wk_trainer;

/* The trainer borrows net (it must outlive the trainer). */
wk_status wk_trainer_create(wk_net *net, const wk_train_config *cfg, wk_trainer **out);
void wk_trainer_destroy(wk_trainer *t);

/* The input of the step after the coming wk_trainer_step call (or NULL), for
 * a network on a GPU: that call copies it up once its own work is queued, so
 * that the copy overlaps the device's work (nn/net.h's wk_net_gpu_stage), and
 * the step after it, given the same tensor, takes the device copy. Its memory
 * must stay unchanged until then. Holds for the coming call only; nothing
 * happens on the CPU. */
void wk_trainer_set_next(wk_trainer *t, const wk_tensor *next);
/* Whether that is worth doing: the loss runs on the GPU (the steps that
 * stage), and $WHISKER_GPU_PREFETCH=0 (to measure what it gains) does not
 * turn it off. */
bool wk_trainer_stage_wanted(const wk_trainer *t);
/* Whether the steps run on the device as CUDA graphs ($WHISKER_CUDA_GRAPH=1,
 * the loss on the device, no data parallelism). */
bool wk_trainer_graphs_wanted(const wk_trainer *t);
/* The environment's say in how a GPU step runs, as bits: $WHISKER_GPU_HOST_STEP=1,
 * $WHISKER_GPU_HOST_LOSS=1, $WHISKER_GPU_FUSED_STEP=0. Ranks that differ in
 * them would issue different collectives (train/fit.c refuses that). */
enum {
  WK_GPU_MODE_HOST_STEP = 1u,
  WK_GPU_MODE_HOST_LOSS = 2u,
  WK_GPU_MODE_STEPWISE = 4u,
  WK_TRAINER_GPU_MODE_BITS = 3
};
unsigned wk_trainer_gpu_mode(void);
struct wk_dist;
/* With world > 1 ranks in dist: that every rank runs net alike, as their
 * collectives need: all on GPUs (NCCL) or all on CPUs (MPI), all in bf16 or
 * none (--precision auto on GPUs of different generations), the same
 * wk_trainer_gpu_mode. Collective: every rank calls it. The error says what
 * differs, and on how many ranks. */
wk_status wk_trainer_ranks_agree(struct wk_dist *dist, int world, const wk_net *net);

/* x (N,H,W,C) f32, labels (N) i32. *loss receives the batch mean loss (before
 * the update); *lr the rate used. */
wk_status wk_trainer_step(wk_trainer *t, const wk_tensor *x, const wk_tensor *labels,
                          float *loss, double *lr);
/* A step at rate lr instead of the schedule's (a learning-rate sweep): a NaN
 * or infinite loss is reported in *loss, not as an error, and then nothing is
 * updated but the batchnorm statistics of the forward; so is a gradient that
 * is not finite (fp32 and bf16; fp16 skips the step as always), as a NaN
 * loss. */
wk_status wk_trainer_step_at(wk_trainer *t, const wk_tensor *x, const wk_tensor *labels,
                             double lr, float *loss);
int64_t wk_trainer_steps(const wk_trainer *t);
/* Data parallelism (train/ddp.h): every step's gradients and loss become the
 * mean over the ranks. NULL turns it off. */
struct wk_ddp;
void wk_trainer_set_ddp(wk_trainer *t, struct wk_ddp *ddp);
/* Resuming with another global batch: the step counter and the schedule's
 * lengths scaled by f (old global batch / new), so the run goes on at the same
 * point of its schedule. A schedule the rescaling leaves invalid (a one-cycle
 * too short to rise, say) is WK_ERR_INVALID_ARG, the trainer unchanged. */
wk_status wk_trainer_rescale_steps(wk_trainer *t, double f);
const wk_train_config *wk_trainer_config(const wk_trainer *t);
/* The class each sample of the last step's batch was predicted as (N
 * values): its most probable one, the first of equal maxima (train/metrics.h's
 * wk_argmax on the softmax probabilities), computed where the loss was (on
 * the GPU the probabilities never come to the host). For training accuracy;
 * valid until the next step. */
const int32_t *wk_trainer_predicted(const wk_trainer *t);
/* The gradient norm of the last step (before clipping). */
double wk_trainer_grad_norm(const wk_trainer *t);
/* fp16 on a GPU (nn/net.h): the dynamic loss scale (2^16 to start, halved at
 * a step with a non-finite gradient, which is skipped, doubled after 2000
 * good steps; kept in checkpoints) and the steps skipped so far (kept too). set: for
 * tests and for a resumed run that wants another start (s >= 1). */
double wk_trainer_loss_scale(const wk_trainer *t);
int64_t wk_trainer_skipped_steps(const wk_trainer *t);
void wk_trainer_set_loss_scale(wk_trainer *t, double s);

/* Data position kept with a checkpoint. */
typedef struct wk_data_pos {
  int64_t epoch, batch;
  int64_t global_batch; /* samples per step over all ranks; 0: not recorded */
} wk_data_pos;

wk_status wk_checkpoint_save(const char *path, wk_trainer *t, const wk_model_meta *meta,
                             const wk_data_pos *pos);
/* The same with run_json (may be NULL: none) kept as the "whisker.run"
 * metadata: the training run's own settings (train/fit_run.h). */
wk_status wk_checkpoint_save_run(const char *path, wk_trainer *t, const wk_model_meta *meta,
                                 const wk_data_pos *pos, const char *run_json);
/* Loads model, trainer (optimizer state, step, config) and data position. The
 * caller owns *net and *t (destroy t first) and frees meta. */
wk_status wk_checkpoint_load(wk_ctx *ctx, const char *path, wk_net **net, wk_trainer **t,
                             wk_model_meta *meta, wk_data_pos *pos);
/* The same, and the "whisker.run" metadata into *run_json (malloc'd; NULL
 * when the checkpoint has none), read in the same pass over the file. */
wk_status wk_checkpoint_load_run(wk_ctx *ctx, const char *path, wk_net **net, wk_trainer **t,
                                 wk_model_meta *meta, wk_data_pos *pos, char **run_json);

#endif
