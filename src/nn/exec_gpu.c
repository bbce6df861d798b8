/* exec_gpu.c - a network's forward and backward on a GPU (wk_net_use_gpu).
 *
 * The executor lives in the CUDA plugin (cuda/cuda.h, src/cuda/cuda_net.c);
 * this file keeps the host network and the device in step. The host stays the
 * owner of the weights and buffers: they go to the device before a forward
 * whenever wk_net_weights_changed was called since the last upload (an
 * optimizer step, a load), and the gradients and the batchnorm running
 * statistics (which a training forward updates on the device) come back after
 * backward, so the trainer, the optimizer, checkpoints and the report work
 * unchanged. The copies cost two transfers of the parameter arena per step.
 *
 * The trainer saves them by running the optimizer on the device
 * (wk_net_gpu_set_resident, wk_net_gpu_optim_step): the device's arenas are
 * then the newer ones, net->gpu_stale marks the host's that are behind, and
 * the arena accessors (wk_net_weights, ...) and wk_net_sync_host copy them
 * back when the host reads them (saving a model, a checkpoint, averaging
 * statistics over ranks).
 *
 * It keeps the loss there too (wk_net_gpu_xent_forward, _backward): a forward
 * with no output asked for leaves the logits on the device, and of the loss
 * only the labels go up and the mean loss and the predicted classes come
 * back, where the host's loss would move the logits down and their gradient
 * up.
 *
 * The trainer asks for the whole step in one call (wk_net_gpu_fused_step,
 * unless $WHISKER_GPU_FUSED_STEP=0): the plugin then runs forward, loss,
 * backward, check and update with no host decision in between, and with
 * $WHISKER_CUDA_GRAPH=1 captures that as a CUDA graph once the shapes have
 * settled (cuda/cuda.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "cuda/cuda.h"
#include "nn/net_impl.h"

static const char *const wk_precision_names[] = {"fp32", "tf32", "bf16", "fp16"};

wk_status wk_precision_parse(const char *name, wk_precision *out) {
  for (int i = 0; i < 4; i++)
    if (name && strcmp(name, wk_precision_names[i]) == 0) {
      *out = (wk_precision)i;
      return WK_OK;
    }
  return wk_fail(WK_ERR_INVALID_ARG, "precision '%s': expected fp32, tf32, bf16 or fp16",
                 name ? name : "");
}

const char *wk_precision_name(wk_precision p) {
  return (unsigned)p < 4 ? wk_precision_names[p] : "?";
}

wk_status wk_net_set_precision(wk_net *net, wk_precision p) {
  if ((unsigned)p > WK_PRECISION_FP16)
    return wk_fail(WK_ERR_INVALID_ARG, "precision %d", (int)p);
  if (net->gpu && p != net->precision)
    return wk_fail(WK_ERR_INVALID_ARG, "the precision is set before the network goes to the GPU");
  net->precision = p;
  net->precision_auto = false;
  return WK_OK;
}

void wk_net_set_precision_auto(wk_net *net) {
  if (net->gpu) return; /* placed already: it keeps what it has */
  net->precision = WK_PRECISION_FP32;
  net->precision_auto = true;
}

wk_status wk_precision_parse_auto(const char *name, wk_precision *out, bool *is_auto) {
  *is_auto = name && strcmp(name, "auto") == 0;
  *out = WK_PRECISION_FP32;
  if (*is_auto || wk_precision_parse(name, out) == WK_OK) return WK_OK;
  return wk_fail(WK_ERR_INVALID_ARG, "precision '%s': expected auto, fp32, tf32, bf16 or fp16",
                 name ? name : "(null)");
}

/* wk_net_use_gpu in the precision asked for, or with `--precision auto` in
 * bf16, else (a GPU older than Ampere refuses bf16) in fp32. */
static wk_status wk_net_use_gpu_auto(wk_net *net, int device) {
  if (net->gpu || !net->precision_auto) return wk_net_use_gpu(net, device);
  net->precision = WK_PRECISION_BF16;
  if (wk_net_use_gpu(net, device) == WK_OK) return WK_OK;
  char why[512];
  snprintf(why, sizeof why, "%s", wk_last_error());
  net->precision = WK_PRECISION_FP32; /* any other refusal repeats itself here */
  WK_TRY(wk_net_use_gpu(net, device));
  WK_LOG_I("--precision auto: fp32, not bf16 (%s)", why);
  return WK_OK;
}

wk_status wk_net_use_gpu(wk_net *net, int device) {
  if (!net->finalized) return wk_fail(WK_ERR_INVALID_ARG, "network used before finalize");
  if (net->gpu) return WK_OK;
  /* one cache of timed convolution algorithms for the context's networks */
  if (!net->ctx->gpu_algos) WK_TRY(wk_gpu_algos_create(&net->ctx->gpu_algos));
  const wk_gpu_graph g = {.in_h = net->in_h, .in_w = net->in_w, .in_c = net->in_c,
                          .precision = net->precision,
                          .n_nodes = net->n_nodes, .nodes = net->nodes,
                          .n_params = net->n_params, .n_elems = net->n_elems,
                          .params = net->params, .n_buffers = net->n_buffers,
                          .n_buffer_elems = net->n_buffer_elems, .buffers = net->buffers,
                          .algos = net->ctx->gpu_algos};
  WK_TRY(wk_gpu_net_create(&g, device, &net->gpu));
  net->gpu_device = device;
  if (net->prof_fwd_s) { /* profiling was on before the network moved */
    const wk_status s = wk_net_gpu_profile_start(net);
    if (s != WK_OK) {
      wk_gpu_net_destroy(net->gpu);
      net->gpu = NULL;
      return s;
    }
  }
  net->gpu_uploaded = net->weights_version - 1; /* upload before the first forward */
  net->gpu_params_version = net->params_version;
  return WK_OK;
}

bool wk_net_on_gpu(const wk_net *net) { return net->gpu != NULL; }

_Static_assert(WK_NET_NOTE_BYTES == WK_GPU_NOTE_BYTES, "one note size for net.h and cuda.h");

wk_status wk_net_gpu_profile_start(wk_net *net) {
  return net->gpu ? wk_gpu_net_profile(net->gpu) : WK_OK;
}

wk_status wk_net_profile_collect(wk_net *net) {
  if (!net->gpu || !net->prof_fwd_s) return WK_OK;
  const size_t n = (size_t)net->n_nodes;
  wk_gpu_node_time *t = calloc(n ? n : 1, sizeof *t);
  if (!t) return wk_fail(WK_ERR_NOMEM, "profile: out of memory");
  if (!net->prof_notes && !(net->prof_notes = calloc(n ? n : 1, WK_NET_NOTE_BYTES))) {
    free(t);
    return wk_fail(WK_ERR_NOMEM, "profile: out of memory");
  }
  const wk_status s = wk_gpu_net_profile_read(net->gpu, t);
  for (size_t i = 0; s == WK_OK && i < n; i++) {
    net->prof_fwd_s[i] = t[i].fwd_s;
    net->prof_bwd_s[i] = t[i].bwd_s;
    memcpy(net->prof_notes + i * WK_NET_NOTE_BYTES, t[i].note, WK_NET_NOTE_BYTES);
    net->prof_notes[(i + 1) * WK_NET_NOTE_BYTES - 1] = '\0';
  }
  free(t);
  return s;
}

const char *wk_net_profile_note(const wk_net *net, int i) {
  if (!net->prof_notes || i < 0 || i >= net->n_nodes) return "";
  return net->prof_notes + (size_t)i * WK_NET_NOTE_BYTES;
}

/* Why there is no GPU, in a line: the "no CUDA device (...)" line of the
 * backend's description, or its first line ("not built", "could not be loaded"). */
static void wk_no_gpu_reason(char *out, size_t n) {
  char text[2048];
  if (wk_cuda_describe(text, sizeof text) != WK_OK) {
    snprintf(out, n, "%s", wk_last_error());
    return;
  }
  const char *line = strstr(text, "no CUDA device");
  if (!line) line = text;
  const size_t len = strcspn(line, "\n");
  snprintf(out, n, "%.*s", (int)len, line);
}

wk_status wk_net_place(wk_net *net, int device) {
  if (device == WK_DEVICE_CPU && net->precision != WK_PRECISION_FP32)
    return wk_fail(WK_ERR_INVALID_ARG, "--precision %s needs a GPU (--device cuda); the CPU "
                   "computes in fp32", wk_precision_name(net->precision));
  if (device == WK_DEVICE_CPU) return WK_OK;
  const int count = wk_cuda_device_count();
  char why[512];
  if (device != WK_DEVICE_AUTO) {
    if (count < 1) {
      wk_no_gpu_reason(why, sizeof why);
      return wk_fail(WK_ERR_UNSUPPORTED, "--device cuda:%d: no usable GPU: %s (see 'whisker "
                     "system'; --device cpu or auto run without one)", device, why);
    }
    if (device >= count)
      return wk_fail(WK_ERR_INVALID_ARG, "--device cuda:%d: there %s only %d GPU%s (cuda:0%s)",
                     device, count == 1 ? "is" : "are", count, count == 1 ? "" : "s",
                     count > 1 ? " and up" : "");
    wk_status s = wk_net_use_gpu_auto(net, device);
    if (s != WK_OK) return wk_fail(s, "--device cuda:%d: %s", device, wk_last_error());
    WK_LOG_I("running on GPU %d in %s", device, wk_precision_name(net->precision));
    return WK_OK;
  }
  if (count < 1) {
    wk_no_gpu_reason(why, sizeof why);
    WK_LOG_W("--device auto: no usable GPU (%s); running on the CPU%s", why,
             net->precision != WK_PRECISION_FP32 ? " in fp32" : "");
    net->precision = WK_PRECISION_FP32;
    return WK_OK;
  }
  if (wk_net_use_gpu_auto(net, 0) != WK_OK) {
    WK_LOG_W("--device auto: GPU 0 cannot run this network (%s); running on the CPU%s",
             wk_last_error(),
             net->precision != WK_PRECISION_FP32 && !net->precision_auto ? " in fp32" : "");
    net->precision = WK_PRECISION_FP32;
    return WK_OK;
  }
  WK_LOG_I("running on GPU 0 in %s", wk_precision_name(net->precision));
  return WK_OK;
}

wk_status wk_net_sync_host(wk_net *net) {
  if (!net->gpu || !net->gpu_stale) return WK_OK;
  if (net->gpu_stale & WK_STALE_WEIGHTS)
    WK_TRY(wk_gpu_net_copy(net->gpu, WK_GPU_WEIGHTS, net->weights, false));
  if (net->gpu_stale & WK_STALE_BUFFERS)
    WK_TRY(wk_gpu_net_copy(net->gpu, WK_GPU_BUFFERS, net->buffer_data, false));
  if (net->gpu_stale & WK_STALE_GRADS)
    WK_TRY(wk_gpu_net_copy(net->gpu, WK_GPU_GRADS, net->grads, false));
  net->gpu_stale = 0;
  return WK_OK;
}

void wk_net_sync_host_or_die(wk_net *net) {
  if (wk_net_sync_host(net) == WK_OK) return;
  WK_LOG_E("GPU: the weights cannot be copied back to the host: %s", wk_last_error());
  abort();
}

wk_status wk_net_gpu_set_resident(wk_net *net, bool on) {
  if (on && !net->gpu) return wk_fail(WK_ERR_INVALID_ARG, "the step on the device needs a GPU");
  if (!on) WK_TRY(wk_net_sync_host(net));
  net->gpu_resident = on;
  return WK_OK;
}

wk_status wk_net_gpu_grads_finite(wk_net *net, bool *finite) {
  if (!net->gpu) return wk_fail(WK_ERR_INVALID_ARG, "not on a GPU");
  return wk_gpu_net_grads_finite(net->gpu, finite);
}

wk_status wk_net_gpu_scale_grads(wk_net *net, float s) {
  if (!net->gpu_resident) return wk_fail(WK_ERR_INVALID_ARG, "the step is not on the device");
  return wk_gpu_net_scale_grads(net->gpu, s);
}

wk_precision wk_net_precision(const wk_net *net) { return net->precision; }

wk_status wk_net_gpu_optim_step(wk_net *net, const wk_gpu_optim *o) {
  if (!net->gpu_resident) return wk_fail(WK_ERR_INVALID_ARG, "the step is not on the device");
  WK_TRY(wk_gpu_net_optim_step(net->gpu, o));
  net->gpu_stale |= WK_STALE_WEIGHTS;
  return WK_OK;
}

wk_status wk_net_gpu_state(wk_net *net, int i, float *host, bool to_device) {
  if (!net->gpu || i < 0 || i > 1) return wk_fail(WK_ERR_INVALID_ARG, "no device state %d", i);
  return wk_gpu_net_copy(net->gpu, (wk_gpu_arena)(WK_GPU_STATE0 + i), host, to_device);
}

void wk_net_release_gpu(wk_net *net) {
  wk_gpu_net_destroy(net->gpu);
  net->gpu = NULL;
  free(net->gpu_out);
  net->gpu_out = NULL;
  net->gpu_out_elems = 0;
}

/* The device's parameter table and weights as the host's, before a forward. */
static wk_status wk_gpu_catch_up(wk_net *net) {
  if (net->gpu_params_version != net->params_version) { /* frozen or unfrozen since */
    WK_TRY(wk_gpu_net_set_params(net->gpu, net->params));
    net->gpu_params_version = net->params_version;
  }
  if (net->gpu_uploaded != net->weights_version) {
    /* the host changed the weights (through the accessors, which brought any
     * newer device values back first): the device takes the host's */
    WK_TRY(wk_net_sync_host(net));
    WK_TRY(wk_gpu_net_copy(net->gpu, WK_GPU_WEIGHTS, net->weights, true));
    WK_TRY(wk_gpu_net_copy(net->gpu, WK_GPU_BUFFERS, net->buffer_data, true));
    net->gpu_uploaded = net->weights_version;
  }
  return WK_OK;
}

/* x as the device takes it (8-bit pixels normalised there). */
static wk_gpu_input wk_gpu_in(const wk_net *net, const wk_tensor *x) {
  wk_gpu_input in = {.data = x->data, .u8 = x->dtype == WK_U8};
  memcpy(in.mean, net->in_mean, sizeof in.mean);
  memcpy(in.std, net->in_std, sizeof in.std);
  return in;
}

/* Whether x is the batch staged last (same memory, type and shape); a forward
 * takes or drops it either way. */
static bool wk_take_staged(wk_net *net, const wk_tensor *x) {
  const wk_tensor *s = &net->gpu_staged_x;
  const bool same = s->data && x->data == s->data && x->dtype == s->dtype &&
                    wk_tensor_same_shape(x, s);
  net->gpu_staged_x.data = NULL;
  return same;
}

wk_status wk_net_gpu_stage(wk_net *net, const wk_tensor *x) {
  if (!net->gpu || !x) return WK_OK;
  net->gpu_staged_x.data = NULL;
  WK_TRY(wk_net_check_input(net, x));
  const wk_gpu_input in = wk_gpu_in(net, x);
  WK_TRY(wk_gpu_net_stage(net->gpu, &in, x->shape[0]));
  net->gpu_staged_x = *x;
  return WK_OK;
}

wk_status wk_net_forward_gpu(wk_net *net, const wk_tensor *x, bool train, const wk_tensor *next,
                             wk_tensor *out) {
  const int64_t n = x->shape[0], f = wk_net_output_features(net);
  const char *pf = getenv("WHISKER_GPU_PREFETCH"); /* 0: none, to measure what it gains */
  if (pf && strcmp(pf, "0") == 0) next = NULL;
  if (next) WK_TRY(wk_net_check_input(net, next));
  if (out && (size_t)(n * f) > net->gpu_out_elems) {
    float *p = realloc(net->gpu_out, (size_t)(n * f) * sizeof *p);
    if (!p) return wk_fail(WK_ERR_NOMEM, "out of memory for the GPU's output");
    net->gpu_out = p;
    net->gpu_out_elems = (size_t)(n * f);
  }
  WK_TRY(wk_gpu_catch_up(net));
  const wk_gpu_dropout drop = {.seed = net->dropout_seed, .step = net->dropout_step,
                               .first = net->dropout_first};
  wk_gpu_input in = wk_gpu_in(net, x);
  in.staged = wk_take_staged(net, x);
  const wk_gpu_input up = next ? wk_gpu_in(net, next) : (wk_gpu_input){0};
  if (next) {
    in.next = &up;
    in.next_n = next->shape[0];
  }
  WK_TRY(wk_gpu_net_forward(net->gpu, &in, n, train, &drop, out ? net->gpu_out : NULL));
  if (next) net->gpu_staged_x = *next;
  net->batch = n;
  net->last_train = train;
  if (train) {
    net->bn_batches++;
    net->bn_version++;
    /* the running statistics moved there (a backward brings them back, unless resident;
     * a training forward with none after it must not leave the host's copy looking
     * current) */
    net->gpu_stale |= WK_STALE_BUFFERS;
  }
  const int64_t shape[2] = {n, f};
  if (out) *out = wk_tensor_view(net->gpu_out, WK_F32, 2, shape);
  return WK_OK;
}

/* After a backward on the device: the gradients, and the running statistics
 * the forward moved, are newer there; with the step there they stay (the
 * host copies them if it asks), else they come back now. */
static wk_status wk_after_backward(wk_net *net) {
  net->gpu_stale |= WK_STALE_GRADS | WK_STALE_BUFFERS;
  return net->gpu_resident ? WK_OK : wk_net_sync_host(net);
}

wk_status wk_net_backward_gpu(wk_net *net, const wk_tensor *dy) {
  if (!net->last_train) return wk_fail(WK_ERR_INVALID_ARG, "backward needs a training forward first");
  const int64_t s[2] = {net->batch, wk_net_output_features(net)};
  WK_TRY(wk_tensor_expect(dy, "output gradient", WK_F32, 2, s));
  net->last_train = false;
  WK_TRY(wk_gpu_net_backward(net->gpu, dy->data));
  return wk_after_backward(net);
}

/* The host's checks of ops/softmax_xent.c, with its messages: the device's
 * kernels would only turn a bad label into a NaN loss. */
static wk_status wk_xent_check(const wk_xent_params *p, const wk_tensor *labels, int64_t n,
                               int64_t k) {
  if (!p || !(p->label_smoothing >= 0.0f && p->label_smoothing <= 1.0f))
    return wk_fail(WK_ERR_INVALID_ARG, "cross-entropy: label smoothing must be in [0, 1]");
  WK_TRY(wk_tensor_expect(labels, "cross-entropy labels", WK_I32, 1, &n));
  const int32_t *l = labels->data;
  for (int64_t i = 0; i < n; i++)
    if (l[i] < 0 || l[i] >= k)
      return wk_fail(WK_ERR_INVALID_ARG,
                     "cross-entropy: label %d of sample %lld is not in [0, %lld)", l[i],
                     (long long)i, (long long)k);
  return WK_OK;
}

wk_status wk_net_gpu_xent_forward(wk_net *net, const wk_xent_params *p, const wk_tensor *labels,
                                  float *loss, int32_t *predicted) {
  if (!net->gpu || net->batch < 1 || !loss)
    return wk_fail(WK_ERR_INVALID_ARG, "the loss on the device needs a forward on a GPU first");
  const int64_t n = net->batch;
  WK_TRY(wk_xent_check(p, labels, n, wk_net_output_features(net)));
  const wk_gpu_xent x = {.labels = labels->data, .smoothing = p->label_smoothing,
                         .predicted = predicted};
  double sum = 0.0;
  WK_TRY(wk_gpu_net_xent_forward(net->gpu, &x, &sum));
  *loss = (float)(sum / (double)n); /* as wk_softmax_xent_forward */
  return WK_OK;
}

wk_status wk_net_gpu_xent_backward(wk_net *net, float dloss) {
  if (!net->gpu || !net->last_train)
    return wk_fail(WK_ERR_INVALID_ARG, "backward needs a training forward first");
  net->last_train = false;
  WK_TRY(wk_gpu_net_xent_backward(net->gpu, dloss));
  return wk_after_backward(net);
}

wk_status wk_net_gpu_fused_step(wk_net *net, const wk_tensor *x, const wk_net_gpu_step *s,
                                float *loss, int32_t *predicted, bool *applied) {
  if (!net->gpu || !net->gpu_resident)
    return wk_fail(WK_ERR_INVALID_ARG, "the fused step needs the step on the device");
  if (!s || !s->xent || !s->labels || !s->optim || !loss || !applied)
    return wk_fail(WK_ERR_INVALID_ARG, "the fused step: malformed request");
  WK_TRY(wk_net_check_input(net, x));
  const int64_t n = x->shape[0];
  WK_TRY(wk_xent_check(s->xent, s->labels, n, wk_net_output_features(net)));
  if (s->next) WK_TRY(wk_net_check_input(net, s->next));
  WK_TRY(wk_gpu_catch_up(net));
  wk_gpu_input next = {0};
  if (s->next) next = wk_gpu_in(net, s->next);
  wk_gpu_step st = {.in = wk_gpu_in(net, x), .n = n,
                    .drop = {.seed = net->dropout_seed, .step = net->dropout_step,
                             .first = net->dropout_first},
                    .xent = {.labels = s->labels->data, .smoothing = s->xent->label_smoothing,
                             .predicted = predicted},
                    .dloss = s->dloss, .unscale = s->unscale, .inv_scale = s->inv_scale,
                    .optim = *s->optim, .next = s->next ? &next : NULL,
                    .next_n = s->next ? s->next->shape[0] : 0, .graphs = s->graphs};
  st.in.staged = wk_take_staged(net, x);
  wk_gpu_step_result r;
  net->last_train = false; /* an earlier forward's values are overwritten, failure or not */
  WK_TRY(wk_gpu_net_train_step(net->gpu, &st, &r));
  if (s->next) net->gpu_staged_x = *s->next; /* staged (or, unpinned, to be uploaded) */
  if (r.graph_warning)
    WK_LOG_W("CUDA graphs: %s; this network's training steps run uncaptured from now on",
             r.graph_warning);
  net->batch = n;
  net->bn_batches++;
  net->bn_version++;
  net->gpu_stale |= WK_STALE_BUFFERS | WK_STALE_GRADS | (r.applied ? WK_STALE_WEIGHTS : 0u);
  *loss = (float)(r.loss_sum / (double)n); /* as wk_net_gpu_xent_forward */
  *applied = r.applied;
  return WK_OK;
}

wk_status wk_net_gpu_memory(const wk_net *net, struct wk_gpu_memory *out) {
  if (!net->gpu) return wk_fail(WK_ERR_INVALID_ARG, "the network is not on a GPU");
  return wk_gpu_memory_stats(net->gpu_device, out);
}

wk_status wk_net_gpu_graph_stats(wk_net *net, struct wk_gpu_graph_stats *out) {
  if (!net->gpu) return wk_fail(WK_ERR_INVALID_ARG, "not on a GPU");
  return wk_gpu_net_graph_stats(net->gpu, out);
}

wk_status wk_net_gpu_attach_comm(wk_net *net, const unsigned char *id, int rank, int world,
                                 const wk_gpu_buckets *b, double timeout_s, bool sync_bn) {
  if (!net->gpu) return wk_fail(WK_ERR_INVALID_ARG, "NCCL needs the network on a GPU");
  return wk_gpu_net_attach_comm(net->gpu, id, rank, world, b, timeout_s, sync_bn);
}
