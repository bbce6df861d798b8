/* trainer.c - the training step and checkpoints (see trainer.h). */
#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_field.h"
#include "cuda/cuda.h"
#include "dist/dist.h"
#include "train/ddp.h"
#include "train/grad.h"
#include "train/metrics.h"

struct wk_trainer {
  wk_net *net;
  wk_optim *opt;
  wk_train_config cfg;
  int64_t step;
  double grad_norm;
  wk_tensor probs, dlogits; /* (N, K), the loss on the host; reallocated when N changes */
  int32_t *predicted;       /* (N): the last step's predicted classes */
  int64_t predicted_cap;
  wk_ddp *ddp;              /* data parallelism, or NULL */
  const wk_tensor *next;    /* the following step's input, staged on the GPU (or NULL) */
  /* the step on the device (a network on a GPU, no clipping): the optimizer's
   * state lives there from the first such step on, until it is read back */
  bool state_on_device;
  wk_gpu_optim_segment *segs; /* (n_params), made on the first device step */
  int64_t *steps_before;      /* (n_params): the fused step's optimizer step counts before it */
  /* fp16 (a network on a GPU with --precision fp16): dynamic loss scaling as
   * PyTorch's GradScaler does it, with its defaults: the loss gradient is
   * multiplied by loss_scale (2^16 to start); a step whose gradients are not
   * all finite is skipped and the scale halved; after WK_SCALE_GROWTH_STEPS
   * good steps in a row it doubles. Checkpoints keep both. */
  double loss_scale;
  int64_t good_steps, skipped_steps;
  int stuck; /* skips in a row at the smallest scale */
};

#define WK_SCALE_INIT 65536.0
#define WK_SCALE_MAX 1e30 /* also the most a checkpoint may hold */
#define WK_SCALE_GROWTH_STEPS 2000
/* Non-finite gradients this many steps in a row at scale 1 are no overflow
 * but a real NaN or infinity: the run stops as fp32's does. */
#define WK_SCALE_GIVE_UP 20

static wk_status wk_train_config_check(const wk_train_config *c) {
  WK_TRY(wk_optim_config_check(&c->optim));
  WK_TRY(wk_schedule_check(&c->schedule));
  if (!(c->label_smoothing >= 0.0f && c->label_smoothing < 1.0f))
    return wk_fail(WK_ERR_INVALID_ARG, "label smoothing %g not in [0, 1)",
                   (double)c->label_smoothing);
  if (!(c->clip_norm >= 0.0 && isfinite(c->clip_norm)))
    return wk_fail(WK_ERR_INVALID_ARG, "gradient clipping norm %g must be >= 0", c->clip_norm);
  return WK_OK;
}

wk_status wk_trainer_create(wk_net *net, const wk_train_config *cfg, wk_trainer **out) {
  *out = NULL;
  WK_TRY(wk_train_config_check(cfg));
  wk_trainer *t = calloc(1, sizeof *t);
  if (!t) return wk_fail(WK_ERR_NOMEM, "trainer: out of memory");
  t->net = net;
  t->cfg = *cfg;
  t->loss_scale = WK_SCALE_INIT;
  size_t np;
  const wk_param *params = wk_net_params(net, &np);
  wk_status s = wk_optim_create(&cfg->optim, params, np, wk_net_n_elems(net), &t->opt);
  if (s != WK_OK) {
    free(t);
    return s;
  }
  *out = t;
  return WK_OK;
}

void wk_trainer_destroy(wk_trainer *t) {
  if (!t) return;
  free(t->segs);
  free(t->steps_before);
  wk_optim_destroy(t->opt);
  wk_tensor_free(&t->probs);
  wk_tensor_free(&t->dlogits);
  free(t->predicted);
  free(t);
}

int64_t wk_trainer_steps(const wk_trainer *t) { return t->step; }
void wk_trainer_set_ddp(wk_trainer *t, wk_ddp *ddp) { t->ddp = ddp; }

wk_status wk_trainer_rescale_steps(wk_trainer *t, double f) {
  wk_schedule s = t->cfg.schedule;
  const double big = 9e15; /* beyond it llround overflows */
  if (!(f > 0) || (double)t->step * f > big || (double)s.total_steps * f > big ||
      (double)s.warmup_steps * f > big || (double)s.step_size * f > big)
    return wk_fail(WK_ERR_INVALID_ARG, "rescaling the schedule by %g leaves no valid step count",
                   f);
  const int64_t step = (int64_t)llround((double)t->step * f);
  s.total_steps = (int64_t)llround((double)s.total_steps * f);
  s.warmup_steps = (int64_t)llround((double)s.warmup_steps * f);
  s.step_size = s.step_size ? (int64_t)llround((double)s.step_size * f) : 0;
  if (s.step_size < 0 || (s.step_size == 0 && s.kind == WK_SCHEDULE_STEP)) s.step_size = 1;
  const wk_status st = wk_schedule_check(&s);
  if (st != WK_OK) {
    char why[256];
    snprintf(why, sizeof why, "%s", wk_last_error());
    return wk_fail(st, "the schedule rescaled to %lld steps in all no longer fits (%s): keep "
                   "closer to the run's own batch size", (long long)s.total_steps, why);
  }
  t->cfg.schedule = s;
  t->step = step;
  return WK_OK;
}
const wk_train_config *wk_trainer_config(const wk_trainer *t) { return &t->cfg; }
double wk_trainer_grad_norm(const wk_trainer *t) { return t->grad_norm; }
double wk_trainer_loss_scale(const wk_trainer *t) { return t->loss_scale; }
int64_t wk_trainer_skipped_steps(const wk_trainer *t) { return t->skipped_steps; }
void wk_trainer_set_loss_scale(wk_trainer *t, double s) {
  t->loss_scale = s >= 1.0 ? (s <= WK_SCALE_MAX ? s : WK_SCALE_MAX) : 1.0;
  t->good_steps = 0;
}
const int32_t *wk_trainer_predicted(const wk_trainer *t) { return t->predicted; }

static wk_status wk_predicted_buffer(wk_trainer *t, int64_t n) {
  if (n <= t->predicted_cap) return WK_OK;
  int32_t *p = realloc(t->predicted, (size_t)n * sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "trainer: out of memory");
  t->predicted = p;
  t->predicted_cap = n;
  return WK_OK;
}

static wk_status wk_loss_buffers(wk_trainer *t, const wk_tensor *out) {
  WK_TRY(wk_predicted_buffer(t, out->shape[0]));
  if (t->probs.data && wk_tensor_same_shape(&t->probs, out)) return WK_OK;
  wk_tensor_free(&t->probs);
  wk_tensor_free(&t->dlogits);
  WK_TRY(wk_tensor_alloc(&t->probs, WK_F32, 2, out->shape));
  return wk_tensor_alloc(&t->dlogits, WK_F32, 2, out->shape);
}

static bool wk_env_is_1(const char *name) {
  const char *e = getenv(name);
  return e && strcmp(e, "1") == 0;
}

/* Whether this step runs on the device: the network is on a GPU and nothing
 * needs the host's view of the gradients (clipping does; $WHISKER_GPU_HOST_STEP=1
 * forces the host optimizer, for comparison). */
static bool wk_step_on_device(const wk_trainer *t) {
  if (!wk_net_on_gpu(t->net) || t->cfg.clip_norm > 0.0) return false;
  return !wk_env_is_1("WHISKER_GPU_HOST_STEP");
}

/* Whether the loss runs on the device (the logits never cross to the host):
 * the network is on a GPU, and neither $WHISKER_GPU_HOST_STEP=1 (the whole
 * step on the host, as before either moved) nor $WHISKER_GPU_HOST_LOSS=1
 * (only the loss, for comparison) asks for the host's. Clipping does not
 * matter: it needs the parameters' gradients, not the logits'. */
static bool wk_loss_on_device(const wk_trainer *t) {
  return wk_net_on_gpu(t->net) && !wk_env_is_1("WHISKER_GPU_HOST_STEP") &&
         !wk_env_is_1("WHISKER_GPU_HOST_LOSS");
}

/* A training forward of x and the loss of labels into *l, with each sample's
 * predicted class in t->predicted: on the device, or on the host (the logits
 * come down, the probabilities stay in t->probs for the backward). */
static wk_status wk_loss_forward(wk_trainer *t, bool on_device, const wk_xent_params *xp,
                                 const wk_tensor *x, const wk_tensor *labels, float *l) {
  wk_net *net = t->net;
  if (on_device) {
    WK_TRY(wk_net_forward(net, x, true, NULL)); /* queued: the device computes... */
    WK_TRY(wk_net_gpu_stage(net, t->next));     /* ...while the next batch goes up */
    WK_TRY(wk_predicted_buffer(t, x->shape[0]));
    return wk_net_gpu_xent_forward(net, xp, labels, l, t->predicted);
  }
  wk_tensor out;
  WK_TRY(wk_net_forward(net, x, true, &out));
  WK_TRY(wk_loss_buffers(t, &out));
  WK_TRY(wk_softmax_xent_forward(wk_net_ctx(net), xp, &out, labels, &t->probs, l));
  const int64_t n = out.shape[0], k = out.shape[1];
  const float *p = t->probs.data;
  for (int64_t i = 0; i < n; i++) t->predicted[i] = wk_argmax(p + i * k, (int)k);
  return WK_OK;
}

/* The loss's gradient times dloss (1, or fp16's scale) and backward from it. */
static wk_status wk_loss_backward(wk_trainer *t, bool on_device, const wk_xent_params *xp,
                                  const wk_tensor *labels, float dloss) {
  if (on_device) return wk_net_gpu_xent_backward(t->net, dloss);
  WK_TRY(wk_softmax_xent_backward(wk_net_ctx(t->net), xp, &t->probs, labels, dloss,
                                  &t->dlogits));
  return wk_net_backward(t->net, &t->dlogits);
}

/* The optimizer's state to the device (its first step there: zeros, or a
 * resumed run's) or back to the host (a checkpoint, the host's turn). */
static wk_status wk_state_move(wk_trainer *t, bool to_device) {
  if (t->state_on_device == to_device) return WK_OK;
  for (size_t i = 0; i < wk_optim_state_count(t->opt); i++)
    WK_TRY(wk_net_gpu_state(t->net, (int)i, wk_optim_state_data(t->opt, i), to_device));
  t->state_on_device = to_device;
  return WK_OK;
}

static bool wk_scaled(const wk_trainer *t) {
  return wk_net_on_gpu(t->net) && wk_net_precision(t->net) == WK_PRECISION_FP16;
}

/* fp16, after the finite check: a skipped step halves the scale; a good one
 * counts towards doubling it. Returns 1 to apply the update, 0 to skip the
 * step, -1 when the gradients stay non-finite at the smallest scale (the
 * caller then fails as for fp32, naming the parameter). */
static int wk_scale_update(wk_trainer *t, bool finite) {
  if (!finite) {
    if (t->loss_scale <= 1.0 && ++t->stuck >= WK_SCALE_GIVE_UP) return -1;
    t->loss_scale = fmax(1.0, t->loss_scale * 0.5);
    t->good_steps = 0;
    t->skipped_steps++;
    return 0;
  }
  t->stuck = 0;
  if (++t->good_steps >= WK_SCALE_GROWTH_STEPS && t->loss_scale * 2.0 <= WK_SCALE_MAX) {
    t->loss_scale *= 2.0;
    t->good_steps = 0;
  }
  return 1;
}

/* A device step's gradients are not all finite: the host's check names the
 * parameter and element. */
static wk_status wk_device_nonfinite(wk_trainer *t, float loss) {
  wk_net *net = t->net;
  size_t np;
  const wk_param *params = wk_net_params(net, &np);
  WK_TRY(wk_net_sync_host(net));
  wk_status s = wk_grad_check_finite(wk_net_ctx(net), params, np, wk_net_grads(net));
  if (s == WK_OK) s = wk_fail(WK_ERR_INVALID_ARG, "a gradient is not finite");
  return wk_fail(s, "step %lld (loss %g): %s", (long long)t->step, (double)loss,
                 wk_last_error());
}

/* The device update's description for this step at rate lr: the optimizer's
 * state on the device, each parameter's factors (advancing its step count). */
static wk_status wk_device_optim(wk_trainer *t, double lr, wk_gpu_optim *o) {
  size_t np;
  wk_net_params(t->net, &np);
  if (!t->segs && !(t->segs = malloc((np ? np : 1) * sizeof *t->segs)))
    return wk_fail(WK_ERR_NOMEM, "trainer: out of memory");
  WK_TRY(wk_state_move(t, true));
  const wk_optim_config *oc = wk_optim_get_config(t->opt);
  *o = (wk_gpu_optim){.adamw = oc->kind == WK_OPTIM_ADAMW, .nesterov = oc->nesterov,
                      .n_state = (int)wk_optim_state_count(t->opt), .segs = t->segs};
  return wk_optim_step_segments(t->opt, lr, t->segs, &o->n_segments);
}

/* After backward on the device: the non-finite check and the update there.
 * A gradient not finite is an error, or with `probe` sets *nonfinite and
 * changes nothing (a learning-rate sweep ends there). */
static wk_status wk_device_update(wk_trainer *t, double lr, float loss, bool probe,
                                  bool *nonfinite) {
  *nonfinite = false;
  wk_net *net = t->net;
  bool finite = false;
  WK_TRY(wk_net_gpu_grads_finite(net, &finite));
  if (wk_scaled(t)) { /* undo the loss scale, or skip the step */
    const double scale = t->loss_scale;
    const int u = wk_scale_update(t, finite);
    if (u == 0) return WK_OK;
    if (u > 0) WK_TRY(wk_net_gpu_scale_grads(net, (float)(1.0 / scale)));
  }
  if (!finite && probe) {
    *nonfinite = true;
    return WK_OK;
  }
  if (!finite) return wk_device_nonfinite(t, loss);
  wk_gpu_optim o;
  WK_TRY(wk_device_optim(t, lr, &o));
  return wk_net_gpu_optim_step(net, &o);
}

/* $WHISKER_CUDA_GRAPH=1, which graphs honour on one GPU only. */
static bool wk_graphs_asked(const wk_trainer *t) {
  return !t->ddp && wk_env_is_1("WHISKER_CUDA_GRAPH");
}

/* Whether the step on the device runs as one call (cuda/cuda.h), so the
 * device runs dry once per step (the host waiting for the loss) rather than
 * four times (the loss after the forward, the end of backward, the
 * gradients' check, the update: tests/test_gpu_net.c's test_step_budget): the
 * loss on the device too, and with data parallelism the gradients reduced by
 * NCCL there (the ranks' losses are averaged over MPI after the step).
 * $WHISKER_GPU_FUSED_STEP=0 asks for the stepwise calls anyway (to compare),
 * unless $WHISKER_CUDA_GRAPH=1, whose graphs capture the one call (one GPU,
 * no data parallelism). */
static bool wk_fused_wanted(const wk_trainer *t, bool on_device) {
  if (!on_device || !wk_loss_on_device(t) || (t->ddp && !wk_ddp_nccl(t->ddp))) return false;
  const bool stepwise = (wk_trainer_gpu_mode() & WK_GPU_MODE_STEPWISE) != 0;
  return !stepwise || wk_graphs_asked(t);
}

unsigned wk_trainer_gpu_mode(void) {
  const char *e = getenv("WHISKER_GPU_FUSED_STEP");
  return (wk_env_is_1("WHISKER_GPU_HOST_STEP") ? WK_GPU_MODE_HOST_STEP : 0u) |
         (wk_env_is_1("WHISKER_GPU_HOST_LOSS") ? WK_GPU_MODE_HOST_LOSS : 0u) |
         (e && strcmp(e, "0") == 0 ? WK_GPU_MODE_STEPWISE : 0u);
}

wk_status wk_trainer_ranks_agree(wk_dist *dist, int world, const wk_net *net) {
  if (world < 2) return WK_OK;
  int64_t n[2 + WK_TRAINER_GPU_MODE_BITS] = {wk_net_on_gpu(net),
                                             wk_net_precision(net) == WK_PRECISION_BF16};
  const unsigned mode = wk_trainer_gpu_mode();
  for (int b = 0; b < WK_TRAINER_GPU_MODE_BITS; b++) n[2 + b] = (mode >> b) & 1u;
  WK_TRY(wk_dist_allreduce_sum(dist, WK_DIST_MAIN, WK_DIST_I64, n,
                               2 + WK_TRAINER_GPU_MODE_BITS, "where the ranks run"));
  if (n[0] != 0 && n[0] != world)
    return wk_fail(WK_ERR_UNSUPPORTED, "%lld of %d ranks found a GPU, the others run on the "
                   "CPU: every rank must run on the same kind of device (--device cpu, or a "
                   "GPU for each)", (long long)n[0], world);
  /* --precision auto on GPUs of different generations */
  if (n[1] != 0 && n[1] != world)
    return wk_fail(WK_ERR_UNSUPPORTED, "%lld of %d ranks train in bf16, the others' GPUs do "
                   "not have it: every rank must train alike (--precision fp32, or GPUs of "
                   "Ampere or newer for each)", (long long)n[1], world);
  /* how a GPU step runs decides its collectives, which NCCL needs alike on every rank */
  static const char *const knobs[WK_TRAINER_GPU_MODE_BITS] = {
      "$WHISKER_GPU_HOST_STEP=1", "$WHISKER_GPU_HOST_LOSS=1", "$WHISKER_GPU_FUSED_STEP=0"};
  for (int b = 0; n[0] == world && b < WK_TRAINER_GPU_MODE_BITS; b++)
    if (n[2 + b] != 0 && n[2 + b] != world)
      return wk_fail(WK_ERR_UNSUPPORTED, "%lld of %d ranks have %s in their environment, the "
                     "others not: every rank must step alike (set it for all or none)",
                     (long long)n[2 + b], world, knobs[b]);
  return WK_OK;
}

bool wk_trainer_graphs_wanted(const wk_trainer *t) {
  return wk_graphs_asked(t) && wk_fused_wanted(t, wk_step_on_device(t));
}

/* Data parallelism: the global batch's mean loss from this rank's l (every
 * rank then takes the same decisions). */
static wk_status wk_global_loss(const wk_trainer *t, float *l) {
  wk_dist *d = wk_ddp_dist(t->ddp);
  double gl = *l;
  WK_TRY(wk_dist_allreduce_sum(d, WK_DIST_MAIN, WK_DIST_F64, &gl, 1, "the step's loss"));
  *l = (float)(gl / wk_dist_size(d));
  return WK_OK;
}

/* The non-finite loss of a step: an error, or with `probe` a success that
 * reports it. A probe's step whose gradient is not finite (the loss finite)
 * reports NaN the same way: the sweep has gone past what it can use. */
static wk_status wk_nonfinite_loss(const wk_trainer *t, bool probe, float l, float *loss) {
  if (probe) {
    *loss = l;
    return WK_OK;
  }
  return wk_fail(WK_ERR_INVALID_ARG, "step %lld: the loss is %s; stopping (lower the learning "
                 "rate, or check the data)", (long long)t->step, isnan(l) ? "NaN" : "infinite");
}

/* The step on the device in one call with no host decision inside (see
 * wk_fused_wanted). The update's factors go with it, so the optimizer's step
 * counts advance before it and are put back when the device did not apply
 * the update (a loss or a gradient not finite). Afterwards the decisions of
 * the uncaptured step (wk_trainer_step_impl, wk_device_update), in the same
 * order, on what came back: the loss, and whether the update was applied. */
static wk_status wk_fused_step(wk_trainer *t, const wk_tensor *x, const wk_tensor *labels,
                               double lr, bool probe, float *loss) {
  wk_net *net = t->net;
  size_t np;
  wk_net_params(net, &np);
  if (!t->steps_before && !(t->steps_before = malloc((np ? np : 1) * sizeof *t->steps_before)))
    return wk_fail(WK_ERR_NOMEM, "trainer: out of memory");
  WK_TRY(wk_predicted_buffer(t, x->shape[0]));
  WK_TRY(wk_optim_steps_get(t->opt, t->steps_before, np)); /* before the factors advance them */
  wk_gpu_optim o;
  WK_TRY(wk_device_optim(t, lr, &o));
  const bool scaled = wk_scaled(t);
  const double scale = scaled ? t->loss_scale : 1.0;
  const wk_xent_params xp = {.label_smoothing = t->cfg.label_smoothing};
  const wk_net_gpu_step s = {.xent = &xp, .labels = labels, .dloss = (float)scale,
                             .unscale = scaled, .inv_scale = (float)(1.0 / scale), .optim = &o,
                             .next = t->next, .graphs = wk_graphs_asked(t)};
  float l = NAN;
  bool applied = false;
  /* data parallelism: the device's check covers every rank's, so `applied` is
   * the same on all */
  if (t->ddp) WK_TRY(wk_ddp_begin_step(t->ddp, x->shape[0]));
  wk_status st = wk_net_gpu_fused_step(net, x, &s, &l, t->predicted, &applied);
  if (st != WK_OK || !applied) { /* no update on the device: none in the counts */
    char why[512];
    snprintf(why, sizeof why, "%s", wk_last_error());
    const wk_status r = wk_optim_steps_set(t->opt, t->steps_before, np);
    if (st != WK_OK) return wk_fail(st, "%s", why);
    WK_TRY(r);
  }
  if (t->ddp) WK_TRY(wk_global_loss(t, &l));
  if (!isfinite(l)) return wk_nonfinite_loss(t, probe, l, loss);
  if (scaled && wk_scale_update(t, applied) == 0) { /* skipped: the scale halves */
    t->step++;
    *loss = l;
    return WK_OK;
  }
  if (!applied && probe) return wk_nonfinite_loss(t, probe, NAN, loss);
  if (!applied) return wk_device_nonfinite(t, l);
  t->step++;
  *loss = l;
  return WK_OK;
}

/* One step at rate lr. A non-finite loss is an error, or with `probe` a
 * success that reports the loss and changes nothing but the batchnorm
 * statistics (a learning-rate sweep ends there). */
static wk_status wk_trainer_step_impl(wk_trainer *t, const wk_tensor *x, const wk_tensor *labels,
                                      double lr, bool probe, float *loss) {
  wk_net *net = t->net;
  wk_ctx *ctx = wk_net_ctx(net);
  double momentum;
  if (wk_schedule_momentum(&t->cfg.schedule, t->step, &momentum))
    WK_TRY(wk_optim_set_momentum(t->opt, momentum));
  wk_net_set_dropout_seed(net, t->cfg.seed, (uint64_t)t->step);
  const bool on_device = wk_step_on_device(t);
  if (!on_device) WK_TRY(wk_state_move(t, false)); /* the host's turn again */
  if (wk_net_on_gpu(net)) WK_TRY(wk_net_gpu_set_resident(net, on_device));
  if (wk_fused_wanted(t, on_device)) return wk_fused_step(t, x, labels, lr, probe, loss);
  if (t->ddp) WK_TRY(wk_ddp_begin_step(t->ddp, x->shape[0]));
  const bool loss_on_device = wk_loss_on_device(t);
  const wk_xent_params xp = {.label_smoothing = t->cfg.label_smoothing};
  float l;
  WK_TRY(wk_loss_forward(t, loss_on_device, &xp, x, labels, &l));
  if (t->ddp) WK_TRY(wk_global_loss(t, &l));
  if (!isfinite(l)) return wk_nonfinite_loss(t, probe, l, loss);
  const bool scaled = wk_scaled(t);
  const double scale = scaled ? t->loss_scale : 1.0;
  WK_TRY(wk_loss_backward(t, loss_on_device, &xp, labels, (float)scale));
  if (t->ddp) WK_TRY(wk_ddp_finish_step(t->ddp));
  if (on_device) {
    bool nonfinite = false;
    WK_TRY(wk_device_update(t, lr, l, probe, &nonfinite));
    if (nonfinite) return wk_nonfinite_loss(t, probe, NAN, loss);
    t->step++;
    *loss = l;
    return WK_OK;
  }
  size_t np;
  const wk_param *params = wk_net_params(net, &np);
  float *g = wk_net_grads(net);
  wk_status s = wk_grad_check_finite(ctx, params, np, g);
  const int u = scaled ? wk_scale_update(t, s == WK_OK) : 1;
  if (u == 0) { /* fp16 on the host's step (clipping): skipped */
    t->step++;
    *loss = l;
    return WK_OK;
  }
  if (s != WK_OK && probe) return wk_nonfinite_loss(t, probe, NAN, loss);
  if (s != WK_OK)
    return wk_fail(s, "step %lld (loss %g): %s", (long long)t->step, (double)l, wk_last_error());
  if (scaled) { /* unscale */
    const float inv = (float)(1.0 / scale);
    for (size_t i = 0; i < wk_net_n_elems(net); i++) g[i] *= inv;
  }
  t->grad_norm = 0.0;
  if (t->cfg.clip_norm > 0.0)
    WK_TRY(wk_grad_clip_global_norm(ctx, params, np, g, t->cfg.clip_norm, &t->grad_norm));
  WK_TRY(wk_optim_step(t->opt, ctx, wk_net_weights(net), g, lr));
  wk_net_weights_changed(net);
  t->step++;
  *loss = l;
  return WK_OK;
}

void wk_trainer_set_next(wk_trainer *t, const wk_tensor *next) { t->next = next; }

bool wk_trainer_stage_wanted(const wk_trainer *t) {
  const char *e = getenv("WHISKER_GPU_PREFETCH");
  return wk_loss_on_device(t) && !(e && strcmp(e, "0") == 0);
}

wk_status wk_trainer_step(wk_trainer *t, const wk_tensor *x, const wk_tensor *labels,
                          float *loss, double *lr_out) {
  const double lr = wk_schedule_lr(&t->cfg.schedule, t->step);
  float l = NAN;
  const wk_status s = wk_trainer_step_impl(t, x, labels, lr, false, &l);
  t->next = NULL;
  WK_TRY(s);
  if (loss) *loss = l;
  if (lr_out) *lr_out = lr;
  return WK_OK;
}

wk_status wk_trainer_step_at(wk_trainer *t, const wk_tensor *x, const wk_tensor *labels,
                             double lr, float *loss) {
  const wk_status s = wk_trainer_step_impl(t, x, labels, lr, true, loss);
  t->next = NULL;
  return s;
}

/* ------------------------------------------------------------------ checkpoints */

/* Each cJSON_Add* returns NULL when it cannot allocate: a field missing from
 * a checkpoint would only show at the resume, so any failure fails the save. */
static cJSON *wk_optim_json(const wk_optim_config *c) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  bool ok = cJSON_AddStringToObject(o, "kind", wk_optim_kind_name(c->kind)) &&
            cJSON_AddNumberToObject(o, "weight_decay", c->weight_decay) &&
            cJSON_AddBoolToObject(o, "decay_norm_and_bias", c->decay_norm_and_bias) &&
            cJSON_AddNumberToObject(o, "momentum", c->momentum) &&
            cJSON_AddBoolToObject(o, "nesterov", c->nesterov) &&
            cJSON_AddNumberToObject(o, "beta1", c->beta1) &&
            cJSON_AddNumberToObject(o, "beta2", c->beta2) &&
            cJSON_AddNumberToObject(o, "eps", c->eps);
  if (!ok) cJSON_Delete(o);
  return ok ? o : NULL;
}

static cJSON *wk_schedule_json(const wk_schedule *s) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  bool ok = cJSON_AddStringToObject(o, "kind", wk_schedule_kind_name(s->kind)) &&
            cJSON_AddNumberToObject(o, "lr", s->lr) &&
            cJSON_AddNumberToObject(o, "total_steps", (double)s->total_steps) &&
            cJSON_AddNumberToObject(o, "pct_start", s->pct_start) &&
            cJSON_AddNumberToObject(o, "div_factor", s->div_factor) &&
            cJSON_AddNumberToObject(o, "final_div_factor", s->final_div_factor) &&
            cJSON_AddBoolToObject(o, "cycle_momentum", s->cycle_momentum) &&
            cJSON_AddNumberToObject(o, "base_momentum", s->base_momentum) &&
            cJSON_AddNumberToObject(o, "max_momentum", s->max_momentum) &&
            cJSON_AddNumberToObject(o, "warmup_steps", (double)s->warmup_steps) &&
            cJSON_AddNumberToObject(o, "warmup_start_factor", s->warmup_start_factor) &&
            cJSON_AddNumberToObject(o, "eta_min", s->eta_min) &&
            cJSON_AddNumberToObject(o, "step_size", (double)s->step_size) &&
            cJSON_AddNumberToObject(o, "gamma", s->gamma);
  if (!ok) cJSON_Delete(o);
  return ok ? o : NULL;
}

static char *wk_checkpoint_json(const wk_trainer *t, const wk_data_pos *pos) {
  cJSON *o = cJSON_CreateObject();
  cJSON *opt = wk_optim_json(&t->cfg.optim), *sch = wk_schedule_json(&t->cfg.schedule);
  char seed[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->cfg.seed);
  char *text = NULL;
  if (o && opt && sch) {
    bool ok = cJSON_AddNumberToObject(o, "step", (double)t->step) &&
              cJSON_AddStringToObject(o, "seed", seed) && /* 64 bits do not fit a double */
              cJSON_AddNumberToObject(o, "label_smoothing", t->cfg.label_smoothing) &&
              cJSON_AddNumberToObject(o, "clip_norm", t->cfg.clip_norm) &&
              cJSON_AddNumberToObject(o, "loss_scale", t->loss_scale) &&
              cJSON_AddNumberToObject(o, "loss_scale_good_steps", (double)t->good_steps) &&
              cJSON_AddNumberToObject(o, "loss_scale_skipped_steps", (double)t->skipped_steps) &&
              cJSON_AddStringToObject(o, "precision", wk_precision_name(wk_net_precision(t->net)));
    if (ok && cJSON_AddItemToObject(o, "optimizer", opt)) opt = NULL;
    if (ok && !opt && cJSON_AddItemToObject(o, "schedule", sch)) sch = NULL;
    ok = ok && !opt && !sch &&
         cJSON_AddNumberToObject(o, "epoch", (double)(pos ? pos->epoch : 0)) &&
         cJSON_AddNumberToObject(o, "batch", (double)(pos ? pos->batch : 0)) &&
         cJSON_AddNumberToObject(o, "global_batch", (double)(pos ? pos->global_batch : 0));
    if (ok) text = cJSON_PrintUnformatted(o);
  }
  cJSON_Delete(opt);
  cJSON_Delete(sch);
  cJSON_Delete(o);
  return text;
}

wk_status wk_checkpoint_save(const char *path, wk_trainer *t, const wk_model_meta *meta,
                             const wk_data_pos *pos) {
  return wk_checkpoint_save_run(path, t, meta, pos, NULL);
}

wk_status wk_checkpoint_save_run(const char *path, wk_trainer *t, const wk_model_meta *meta,
                                 const wk_data_pos *pos, const char *run_json) {
  /* what the device holds: the optimizer's state, the weights and statistics */
  WK_TRY(wk_state_move(t, false));
  WK_TRY(wk_net_sync_host(t->net));
  const size_t n = wk_net_n_elems(t->net), n_states = wk_optim_state_count(t->opt);
  size_t np;
  wk_net_params(t->net, &np);
  wk_st_entry extra[4];
  char names[3][48];
  float *state[3] = {NULL, NULL, NULL};
  int64_t *steps = malloc((np ? np : 1) * sizeof *steps);
  char *json = wk_checkpoint_json(t, pos);
  wk_status st = WK_OK;
  WK_ASSERT(n_states <= 3);
  if (!steps || !json) {
    st = wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  for (size_t i = 0; i < n_states; i++) {
    const char *sn = wk_optim_state_name(t->opt, i);
    snprintf(names[i], sizeof names[i], "optim.%s", sn);
    if (!(state[i] = malloc((n ? n : 1) * sizeof(float)))) {
      st = wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
      goto done;
    }
    if ((st = wk_optim_state_get(t->opt, sn, state[i], n)) != WK_OK) goto done;
    extra[i] = (wk_st_entry){.name = names[i], .dtype = WK_ST_F32, .ndim = 1,
                             .shape = {(int64_t)n}, .data = state[i],
                             .n_bytes = n * sizeof(float)};
  }
  if ((st = wk_optim_steps_get(t->opt, steps, np)) != WK_OK) goto done;
  extra[n_states] = (wk_st_entry){.name = "optim.steps", .dtype = WK_ST_I64, .ndim = 1,
                                  .shape = {(int64_t)np}, .data = steps,
                                  .n_bytes = np * sizeof(int64_t)};
  const wk_st_meta m[2] = {{"whisker.checkpoint", json}, {"whisker.run", run_json}};
  st = wk_model_save(path, t->net, meta, extra, n_states + 1, m, run_json ? 2 : 1);
done:
  for (int i = 0; i < 3; i++) free(state[i]);
  free(steps);
  cJSON_free(json);
  return st;
}

/* *scale, *good_steps and *skipped: fp16's loss scale, optional (older
 * checkpoints start at the default, and older still count no skipped steps);
 * a value out of range is a broken file. *prec: the precision
 * the run trained in, optional (older checkpoints trained in fp32). */
static wk_status wk_parse_checkpoint(const char *path, const char *text, wk_train_config *c,
                                     int64_t *step, wk_data_pos *pos, double *scale,
                                     int64_t *good_steps, int64_t *skipped, wk_precision *prec) {
  cJSON *o = cJSON_Parse(text);
  const cJSON *opt = cJSON_GetObjectItemCaseSensitive(o, "optimizer");
  const cJSON *sch = cJSON_GetObjectItemCaseSensitive(o, "schedule");
  const cJSON *ok = cJSON_GetObjectItemCaseSensitive(opt, "kind");
  const cJSON *sk = cJSON_GetObjectItemCaseSensitive(sch, "kind");
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
  double ls = 0;
  memset(c, 0, sizeof *c);
  bool good = cJSON_IsObject(o) && cJSON_IsString(ok) && cJSON_IsString(sk) &&
              cJSON_IsString(seed) &&
              wk_optim_kind_parse(ok->valuestring, &c->optim.kind) == WK_OK &&
              wk_schedule_kind_parse(sk->valuestring, &c->schedule.kind) == WK_OK;
  if (good) {
    char *end;
    c->seed = strtoull(seed->valuestring, &end, 10);
    good = *seed->valuestring && !*end;
  }
  good = good && wk_json_count(o, "step", step) && wk_json_double(o, "label_smoothing", &ls) &&
         wk_json_double(o, "clip_norm", &c->clip_norm) && wk_json_count(o, "epoch", &pos->epoch) &&
         wk_json_count(o, "batch", &pos->batch) &&
         wk_json_double(opt, "weight_decay", &c->optim.weight_decay) &&
         wk_json_bool(opt, "decay_norm_and_bias", &c->optim.decay_norm_and_bias) &&
         wk_json_double(opt, "momentum", &c->optim.momentum) &&
         wk_json_bool(opt, "nesterov", &c->optim.nesterov) && wk_json_double(opt, "beta1", &c->optim.beta1) &&
         wk_json_double(opt, "beta2", &c->optim.beta2) && wk_json_double(opt, "eps", &c->optim.eps) &&
         wk_json_double(sch, "lr", &c->schedule.lr) &&
         wk_json_count(sch, "total_steps", &c->schedule.total_steps) &&
         wk_json_double(sch, "pct_start", &c->schedule.pct_start) &&
         wk_json_double(sch, "div_factor", &c->schedule.div_factor) &&
         wk_json_double(sch, "final_div_factor", &c->schedule.final_div_factor) &&
         wk_json_bool(sch, "cycle_momentum", &c->schedule.cycle_momentum) &&
         wk_json_double(sch, "base_momentum", &c->schedule.base_momentum) &&
         wk_json_double(sch, "max_momentum", &c->schedule.max_momentum) &&
         wk_json_count(sch, "warmup_steps", &c->schedule.warmup_steps) &&
         wk_json_double(sch, "warmup_start_factor", &c->schedule.warmup_start_factor) &&
         wk_json_double(sch, "eta_min", &c->schedule.eta_min) &&
         wk_json_count(sch, "step_size", &c->schedule.step_size) &&
         wk_json_double(sch, "gamma", &c->schedule.gamma);
  c->label_smoothing = (float)ls;
  pos->global_batch = 0; /* absent from checkpoints before data parallelism */
  if (good && cJSON_GetObjectItemCaseSensitive(o, "global_batch"))
    good = wk_json_count(o, "global_batch", &pos->global_batch);
  *scale = WK_SCALE_INIT;
  *good_steps = *skipped = 0;
  if (good && cJSON_GetObjectItemCaseSensitive(o, "loss_scale"))
    good = wk_json_double(o, "loss_scale", scale) && *scale >= 1.0 && *scale <= WK_SCALE_MAX &&
           wk_json_count(o, "loss_scale_good_steps", good_steps);
  if (good && cJSON_GetObjectItemCaseSensitive(o, "loss_scale_skipped_steps"))
    good = wk_json_count(o, "loss_scale_skipped_steps", skipped);
  *prec = WK_PRECISION_FP32;
  const cJSON *pj = cJSON_GetObjectItemCaseSensitive(o, "precision");
  if (good && pj)
    good = cJSON_IsString(pj) && wk_precision_parse(pj->valuestring, prec) == WK_OK;
  cJSON_Delete(o);
  if (!good)
    return wk_fail(WK_ERR_FORMAT, "%s: whisker.checkpoint metadata is missing a field or has "
                   "one of the wrong type", path);
  wk_status s = wk_train_config_check(c);
  if (s != WK_OK) return wk_fail(s, "%s: checkpoint: %s", path, wk_last_error());
  return WK_OK;
}

static wk_status wk_restore_optim(const wk_st_file *f, wk_trainer *t) {
  const size_t n = wk_net_n_elems(t->net);
  size_t np;
  wk_net_params(t->net, &np);
  float *buf = malloc((n ? n : 1) * sizeof *buf);
  int64_t *steps = malloc((np ? np : 1) * sizeof *steps);
  wk_status st = WK_OK;
  if (!buf || !steps) st = wk_fail(WK_ERR_NOMEM, "out of memory");
  for (size_t i = 0; st == WK_OK && i < wk_optim_state_count(t->opt); i++) {
    char name[48];
    const char *sn = wk_optim_state_name(t->opt, i);
    snprintf(name, sizeof name, "optim.%s", sn);
    const int64_t shape[1] = {(int64_t)n};
    st = wk_st_read_f32(f, name, buf, 1, shape);
    if (st == WK_OK) st = wk_optim_state_set(t->opt, sn, buf, n);
    if (st != WK_OK) st = wk_fail(st, "%s: %s", wk_st_path(f), wk_last_error());
  }
  const wk_st_entry *e = st == WK_OK ? wk_st_find(f, "optim.steps") : NULL;
  if (st == WK_OK && (!e || e->dtype != WK_ST_I64 || e->n_bytes != np * sizeof(int64_t)))
    st = wk_fail(WK_ERR_FORMAT, "%s: optim.steps missing or not %zu I64 values", wk_st_path(f),
                 np);
  if (st == WK_OK) {
    memcpy(steps, e->data, np * sizeof *steps);
    st = wk_optim_steps_set(t->opt, steps, np);
  }
  free(buf);
  free(steps);
  return st;
}

wk_status wk_checkpoint_load(wk_ctx *ctx, const char *path, wk_net **net, wk_trainer **t,
                             wk_model_meta *meta, wk_data_pos *pos) {
  return wk_checkpoint_load_run(ctx, path, net, t, meta, pos, NULL);
}

wk_status wk_checkpoint_load_run(wk_ctx *ctx, const char *path, wk_net **net, wk_trainer **t,
                                 wk_model_meta *meta, wk_data_pos *pos, char **run_json) {
  *net = NULL;
  *t = NULL;
  if (run_json) *run_json = NULL;
  wk_st_file *f;
  WK_TRY(wk_st_open(path, &f));
  wk_train_config cfg;
  int64_t step = 0;
  wk_data_pos p = {0, 0, 0};
  const char *text = wk_st_meta_get(f, "whisker.checkpoint");
  wk_status st = text ? WK_OK
                      : wk_fail(WK_ERR_FORMAT, "%s: a model, not a checkpoint (no "
                                "whisker.checkpoint metadata)", path);
  double scale = WK_SCALE_INIT;
  int64_t good_steps = 0, skipped = 0;
  wk_precision prec = WK_PRECISION_FP32;
  if (st == WK_OK)
    st = wk_parse_checkpoint(path, text, &cfg, &step, &p, &scale, &good_steps, &skipped, &prec);
  if (st == WK_OK) st = wk_model_load_file(ctx, f, net, meta);
  if (st == WK_OK) st = wk_net_set_precision(*net, prec);
  if (st == WK_OK) st = wk_trainer_create(*net, &cfg, t);
  if (st == WK_OK) st = wk_restore_optim(f, *t);
  const char *run = run_json ? wk_st_meta_get(f, "whisker.run") : NULL;
  if (st == WK_OK && run && !(*run_json = strdup(run)))
    st = wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
  wk_st_close(f);
  if (st != WK_OK) {
    wk_trainer_destroy(*t);
    wk_net_destroy(*net);
    if (*net) wk_model_meta_free(meta);
    *t = NULL;
    *net = NULL;
    return st;
  }
  (*t)->step = step;
  (*t)->loss_scale = scale;
  (*t)->good_steps = good_steps;
  (*t)->skipped_steps = skipped;
  if (pos) *pos = p;
  return WK_OK;
}
