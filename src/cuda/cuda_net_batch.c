/* cuda_net_batch.c - what a GPU network prepares for a batch size (cuda_net.c
 * has the design): the convolutions' algorithms (timed or from the heuristics,
 * cuda_algo.c; or the graph API's plans, conv_graph.c) and the answers to a
 * refusal, the fused batchnorm groups' sizes, and where the values and their
 * gradients live (mem_plan.h). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_net_impl.h"

/* ------------------------------------------------------------------ per batch size */

/* What timing may read and overwrite for convolution i (see the top of the
 * file): it reads the input value, the weights (16-bit ones with bf16 and
 * fp16) and the output value, and writes the scratch and a filter gradient
 * (find_dw, or bdw in 16 bits). */
static void wk_timing_buffers(wk_gpu_net *net, int i, wk_conv_choice *c) {
  const wk_node *n = &net->nodes[i];
  c->x_data = net->val[n->in[0]];
  c->dy_data = net->val[i + 1];
  c->y_data = c->dx_data = net->scratch;
  c->w_data = wk_cw(net, n->param[0]);
  c->dw_data = wk_half(net) ? (void *)net->bdw : (void *)net->find_dw;
}

static const char *const wk_conv_dir_names[3] = {"forward", "backward-data", "backward-filter"};

/* Convolution i's choice as cuda_algo.c and conv_graph.c take it, with the
 * descriptor's math type set to the one the rankings start from; `find`
 * times, on the buffers wk_timing_buffers names. */
static wk_status wk_choice_of(wk_gpu_net *net, int i, bool find, wk_conv_choice *c) {
  wk_gnode *s = &net->gn[i];
  /* the rankings follow the descriptor's math type, which the calls change */
  WK_CUDNN_TRY(cudnnSetConvolutionMathType(s->conv, wk_conv_math(net)));
  *c = (wk_conv_choice){.cudnn = net->cudnn, .stream = net->stream, .device = net->device,
                        .x = s->x, .y = s->y, .w = s->w, .conv = s->conv,
                        .tensor_math = net->g.precision != WK_PRECISION_FP32,
                        .ws_limit = net->workspace_limit, .find = find,
                        .deterministic = net->deterministic, .cache = net->algos,
                        .ws = &net->workspace, .ws_bytes = &net->workspace_bytes};
  if (find) wk_timing_buffers(net, i, c);
  return WK_OK;
}

/* The graph API's plan slot k (wk_gnode.plan) of convolution i for c, by
 * timing when c->find; skipped engines are the slot's refused ones. *need
 * grows to its workspace. The beta-1 slot may come out NULL (nothing usable:
 * the backward goes through the scratch); any other must be found, and the
 * error then says what else than an engine's refusal made configurations
 * unusable, if anything did. */
static wk_status wk_pick_plan(wk_gpu_net *net, int i, wk_conv_choice *c, int k, size_t *need,
                              bool *timed) {
  wk_gnode *s = &net->gn[i];
  const wk_conv_dir d = k == 3 ? WK_CONV_BWD_DATA : (wk_conv_dir)k;
  wk_cplan_destroy(s->plan[k]);
  s->plan[k] = NULL;
  char note[384] = "";
  c->skip_engines = &s->plan_refused[k];
  c->note = note;
  c->note_n = sizeof note;
  bool found = false, t = false;
  const wk_status st = wk_cplan_make(c, d, k == 3, &s->plan[k], &found, &t);
  c->note = NULL;
  c->note_n = 0;
  WK_TRY(st);
  *timed |= t;
  if (!found && k != 3)
    return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: no cuDNN engine for the %s convolution within "
                   "%zu MB of workspace%s%s%s ($WHISKER_CUDNN_API=legacy uses the legacy calls)",
                   net->nodes[i].name, wk_conv_dir_names[d], net->workspace_limit >> 20,
                   net->deterministic ? " among those cuDNN calls deterministic "
                                        "($WHISKER_CUDNN_DETERMINISTIC=1)" : "",
                   note[0] ? "; cuDNN also failed: " : "", note);
  if (found && wk_cplan_ws_bytes(s->plan[k]) > *need) *need = wk_cplan_ws_bytes(s->plan[k]);
  return WK_OK;
}

/* Convolution i's algorithms and their math types for the batch the
 * descriptors describe (cuda_algo.c): forward, and with `backward` the two
 * backward ones; by timing when `find`; *need grows to the largest
 * workspace, *timed says timing ran. */
static wk_status wk_pick_algos(wk_gpu_net *net, int i, bool find, bool backward, size_t *need,
                               bool *timed) {
  wk_gnode *s = &net->gn[i];
  const wk_node *n = &net->nodes[i];
  wk_conv_choice c;
  WK_TRY(wk_choice_of(net, i, find, &c));
  if (net->conv_graph) {
    for (int k = 0; k < 4; k++) { /* the last batch's */
      wk_cplan_destroy(s->plan[k]);
      s->plan[k] = NULL;
    }
    const bool dx = n->in[0] != 0, shared = dx && net->consumers[net->alias[n->in[0]]] > 1;
    for (int k = 0; k < (backward ? 4 : 1); k++)
      if ((k != 1 || dx) && (k != 3 || shared)) WK_TRY(wk_pick_plan(net, i, &c, k, need, timed));
    return WK_OK;
  }
  wk_conv_algo a[3] = {{0}};
  for (int d = 0; d < (backward ? 3 : 1); d++) {
    /* a convolution of the network's input never computes an input gradient
     * (wk_backward_node): nothing to choose, time or find room for */
    if (d == WK_CONV_BWD_DATA && n->in[0] == 0) continue;
    bool found = false, t = false;
    c.skip = s->refused[d];
    WK_TRY(wk_conv_choose(&c, (wk_conv_dir)d, &a[d], &found, &t));
    *timed |= t;
    if (!found)
      return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: no cuDNN %s algorithm within %zu MB of "
                     "workspace%s", n->name, wk_conv_dir_names[d], net->workspace_limit >> 20,
                     net->deterministic ? " among those cuDNN calls deterministic "
                                          "($WHISKER_CUDNN_DETERMINISTIC=1)" : "");
    if (a[d].ws_bytes > *need) *need = a[d].ws_bytes;
  }
  s->fwd_algo = (cudnnConvolutionFwdAlgo_t)a[WK_CONV_FWD].algo;
  s->fwd_math = a[WK_CONV_FWD].math;
  if (!backward) return WK_OK;
  s->bwd_data_algo = (cudnnConvolutionBwdDataAlgo_t)a[WK_CONV_BWD_DATA].algo;
  s->bwd_data_math = a[WK_CONV_BWD_DATA].math;
  s->bwd_filter_algo = (cudnnConvolutionBwdFilterAlgo_t)a[WK_CONV_BWD_FILTER].algo;
  s->bwd_filter_math = a[WK_CONV_BWD_FILTER].math;
  return WK_OK;
}

/* cuDNN refused direction d of convolution i when called (e, in the
 * NOT_SUPPORTED category) although its workspace query had accepted the
 * algorithm, which nothing in cuDNN's documentation rules out: the algorithm
 * is passed over for this convolution and direction from now on (also when
 * timing kept it for the shape: wk_conv_choose) and the heuristics' next
 * usable choice taken, with room for its workspace, for the caller to call
 * again (counted in wk_gpu_algo_stats.exec_refused). The replacement is never
 * one passed over, and each refusal of one not passed over yet adds one, so
 * the caller's loop ends. It fails with cuDNN's refusal when no choice is
 * left, or inside a capture when the next choice needs more workspace
 * (nothing can be allocated there; the step then runs uncaptured, and the
 * refusal is met and replaced there). */
static wk_status wk_conv_refused(wk_gpu_net *net, int i, wk_conv_dir d, cudnnStatus_t e) {
  wk_gnode *s = &net->gn[i];
  const int algo = d == WK_CONV_FWD        ? (int)s->fwd_algo
                   : d == WK_CONV_BWD_DATA ? (int)s->bwd_data_algo
                                           : (int)s->bwd_filter_algo;
  (void)wk_cudnn_failed(e, "the %s convolution with algorithm %d", wk_conv_dir_names[d], algo);
  char why[384];
  snprintf(why, sizeof why, "%s", wk_last_error());
  if (algo < 0 || algo >= 32) return wk_fail(WK_ERR_BACKEND, "%s", why);
  enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  WK_CUDA_TRY(cudaStreamIsCapturing(net->stream, &cs));
  wk_conv_choice c;
  WK_TRY(wk_choice_of(net, i, false, &c));
  c.skip = s->refused[d] | 1u << algo;
  wk_conv_algo a = {0};
  bool found = false, timed = false;
  WK_TRY(wk_conv_choose(&c, d, &a, &found, &timed));
  if (!found)
    return wk_fail(WK_ERR_BACKEND, "%s; no other algorithm is left within %zu MB of workspace",
                   why, net->workspace_limit >> 20);
  if (cs != cudaStreamCaptureStatusNone && a.ws_bytes > net->workspace_bytes)
    return wk_fail(WK_ERR_BACKEND, "%s; the next choice's workspace cannot be allocated in a "
                   "captured step", why);
  s->refused[d] |= 1u << algo;
  wk_cudaalgos_count(net->algos, WK_ALGO_EXEC_REFUSED);
  WK_TRY(wk_workspace(net, a.ws_bytes));
  switch (d) {
  case WK_CONV_FWD:
    s->fwd_algo = (cudnnConvolutionFwdAlgo_t)a.algo;
    s->fwd_math = a.math;
    break;
  case WK_CONV_BWD_DATA:
    s->bwd_data_algo = (cudnnConvolutionBwdDataAlgo_t)a.algo;
    s->bwd_data_math = a.math;
    break;
  case WK_CONV_BWD_FILTER:
    s->bwd_filter_algo = (cudnnConvolutionBwdFilterAlgo_t)a.algo;
    s->bwd_filter_math = a.math;
    break;
  }
  return WK_OK;
}

/* Convolution i's plan slot k answered e when run (the graph API's
 * counterpart of wk_conv_answered): *again when cuDNN refused the engine
 * (NOT_SUPPORTED) and the heuristics' next usable one took its place, for
 * the caller to run again; as wk_conv_refused, the refused engine is passed
 * over for this slot from now on, and inside a capture a replacement needing
 * more workspace fails. The beta-1 slot may come out empty instead (no engine
 * left adds into dx: the caller goes through the scratch). Anything else is
 * reported. */
static wk_status wk_plan_answered(wk_gpu_net *net, int i, int k, cudnnStatus_t e, bool *again) {
  *again = false;
  if (e == CUDNN_STATUS_SUCCESS) return WK_OK;
  wk_gnode *s = &net->gn[i];
  const wk_conv_dir d = k == 3 ? WK_CONV_BWD_DATA : (wk_conv_dir)k;
  const int64_t engine = wk_cplan_engine(s->plan[k]);
  (void)wk_cudnn_failed(e, "the %s convolution %s on engine %lld", wk_conv_dir_names[d],
                        net->nodes[i].name, (long long)engine);
  char why[384];
  snprintf(why, sizeof why, "%s", wk_last_error());
  if (e == CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER) /* wk_cplan_run's own check: its reason */
    return wk_fail(WK_ERR_BACKEND, "the %s convolution %s: %s", wk_conv_dir_names[d],
                   net->nodes[i].name, wk_last_error());
  if (CUDNN_STATUS_CATEGORY(e) != CUDNN_STATUS_NOT_SUPPORTED)
    return wk_fail(WK_ERR_BACKEND, "%s", why);
  if (!wk_engine_set_add(&s->plan_refused[k], engine)) /* it would be taken again */
    return wk_fail(WK_ERR_BACKEND, "%s (an engine index beyond the %d whisker keeps track of)",
                   why, (int)WK_ENGINE_SET_MAX);
  enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  WK_CUDA_TRY(cudaStreamIsCapturing(net->stream, &cs));
  wk_conv_choice c;
  WK_TRY(wk_choice_of(net, i, false, &c));
  wk_cudaalgos_count(net->algos, WK_ALGO_EXEC_REFUSED);
  size_t need = 0;
  bool timed = false;
  WK_TRY(wk_pick_plan(net, i, &c, k, &need, &timed));
  if (!s->plan[k] && k == 3) return WK_OK;
  if (!s->plan[k])
    return wk_fail(WK_ERR_BACKEND, "%s; no other engine is left within %zu MB of workspace", why,
                   net->workspace_limit >> 20);
  if (cs != cudaStreamCaptureStatusNone && need > net->workspace_bytes)
    return wk_fail(WK_ERR_BACKEND, "%s; the next engine's workspace cannot be allocated in a "
                   "captured step", why);
  WK_TRY(wk_workspace(net, need));
  *again = true;
  return WK_OK;
}

/* Runs convolution i's plan slot k (x, w, y as wk_cplan_run names them),
 * taking the next engine while cuDNN refuses one; the beta-1 slot returns
 * empty, and nothing ran, when no engine left adds into dx. */
wk_status wk_plan_run(wk_gpu_net *net, int i, int k, void *x, void *w, void *y) {
  for (bool again = true; again && net->gn[i].plan[k];)
    WK_TRY(wk_plan_answered(net, i, k,
                            wk_cplan_run(net->gn[i].plan[k], x, w, y, net->workspace), &again));
  return WK_OK;
}

/* What convolution i's call of direction d answered (e): *again when cuDNN
 * refused the algorithm and another took its place (wk_conv_refused), for
 * the caller to call again with it; any other failure is reported. */
wk_status wk_conv_answered(wk_gpu_net *net, int i, wk_conv_dir d, cudnnStatus_t e,
                           bool *again) {
  *again = false;
  if (e == CUDNN_STATUS_SUCCESS) return WK_OK;
  if (CUDNN_STATUS_CATEGORY(e) != CUDNN_STATUS_NOT_SUPPORTED)
    return wk_cudnn_failed(e, "the %s convolution", wk_conv_dir_names[d]);
  WK_TRY(wk_conv_refused(net, i, d, e));
  *again = true;
  return WK_OK;
}

cudnnBatchNormOps_t wk_fuse_ops(const wk_gnode *s) {
  if (s->fuse_solo) return CUDNN_BATCHNORM_OPS_BN;
  return s->fuse_add >= 0 ? CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION
                          : CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
}

/* The group's activation: relu, none for a batchnorm alone. */
cudnnActivationDescriptor_t wk_fuse_act(const wk_gpu_net *net, const wk_gnode *s) {
  return s->fuse_solo ? NULL : net->relu;
}

/* Why group j (its relu node, or the batchnorm alone) runs unfused: the first
 * reason is kept for wk_cudanet_graph_stats. */
void wk_fuse_note(wk_gpu_net *net, int j, const char *why) {
  const wk_gnode *s = &net->gn[j];
  if (net->fuse_note[0]) return;
  const int r =
      s->fuse_solo
          ? snprintf(net->fuse_note, sizeof net->fuse_note,
                     "%s: cuDNN does not run batchnorm %s alone through its Ex calls here (%s)",
                     net->nodes[j].name, net->nodes[j].name, why)
          : snprintf(net->fuse_note, sizeof net->fuse_note,
                     "%s: cuDNN does not fuse batchnorm %s with %srelu here (%s)",
                     net->nodes[j].name, net->nodes[s->fuse_bn].name,
                     s->fuse_add >= 0 ? "the add and " : "", why);
  if (r < 0) net->fuse_note[0] = '\0';
}

/* The most workspace a fused batchnorm may take: $WHISKER_GPU_WORKSPACE_MB,
 * which bounds the convolutions' algorithms, but never under 16 MiB. cuDNN's
 * Ex calls ask for kilobytes to a few megabytes, and need some (given none
 * they act as the plain batchnorm): a limit of 0, set to keep the
 * convolutions to the algorithms without workspace, turned every fusion off. */
static size_t wk_bn_workspace_limit(const wk_gpu_net *net) {
  const size_t floor = (size_t)16 << 20;
  return net->workspace_limit > floor ? net->workspace_limit : floor;
}

/* The fused groups for the batch the descriptors describe, before a
 * training forward: cuDNN's workspace and the reserve space each one keeps
 * from forward to backward (grown, never shrunk). A group cuDNN's sizes
 * refuse for this batch (CUDNN_STATUS_NOT_SUPPORTED and its detailed codes
 * for a type or shape its fused kernels do not take, or any other failure:
 * the fusion is optional) runs unfused at this batch size. */
static wk_status wk_fusion_batch(wk_gpu_net *net) {
  size_t need = 0;
  for (int j = 0; j < net->g.n_nodes; j++) {
    wk_gnode *s = &net->gn[j];
    if (s->fuse_bn < 0 || s->fuse_off) continue;
    const wk_gnode *sb = &net->gn[s->fuse_bn];
    const cudnnBatchNormOps_t ops = wk_fuse_ops(s);
    const cudnnTensorDescriptor_t z = s->fuse_add >= 0 ? sb->y : NULL;
    size_t fw = 0, bw = 0, rs = 0;
    const cudnnActivationDescriptor_t act = wk_fuse_act(net, s);
    cudnnStatus_t e = cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(
        net->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ops, sb->x, z, s->y, sb->bias, act, &fw);
    if (e == CUDNN_STATUS_SUCCESS)
      e = cudnnGetBatchNormalizationBackwardExWorkspaceSize(
          net->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ops, sb->x, s->y, s->y, z, sb->x,
          sb->bias, act, &bw);
    if (e == CUDNN_STATUS_SUCCESS)
      e = cudnnGetBatchNormalizationTrainingExReserveSpaceSize(
          net->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ops, act, sb->x, &rs);
    /* never no workspace: given none, cuDNN's Ex calls act as the plain
     * batchnorm (cuDNN's documentation); a reserve space even if cuDNN
     * asks for none */
    size_t ws = fw > bw ? fw : bw;
    ws = ws > 4096 ? ws : 4096;
    rs = rs > 256 ? rs : 256;
    s->fuse_skip = e != CUDNN_STATUS_SUCCESS || ws > wk_bn_workspace_limit(net);
    if (s->fuse_skip) {
      wk_fuse_note(net, j, e != CUDNN_STATUS_SUCCESS
                               ? cudnnGetErrorString(e)
                               : "its workspace exceeds $WHISKER_GPU_WORKSPACE_MB (16 at least)");
      continue;
    }
    if (ws > need) need = ws;
    const wk_status st = wk_regrow(net, &s->reserve, &s->reserve_bytes, rs);
    if (st != WK_OK)
      return wk_no_room(st, wk_smaller_batch, "%s: the fused batchnorm's %zu KiB",
                        net->nodes[j].name, rs >> 10);
  }
  WK_TRY(wk_workspace(net, need));
  net->fusion_batch = net->batch;
  return WK_OK;
}

/* Batchnorm i's rows per rank, channels, and rows over every rank (one
 * unless synchronised). */
wk_status wk_bn_rows(const wk_gpu_net *net, int i, int64_t *rows, int *c,
                     double *total) {
  int h, w;
  wk_gv_hwc(net, i + 1, &h, &w, c);
  *rows = net->batch * h * w;
  *total = (double)*rows * (net->sync_bn ? wk_gpucomm_world(net->comm) : 1);
  if (*total < 2)
    return wk_fail(WK_ERR_SHAPE, "%s: training needs more than one value per channel",
                   net->nodes[i].name);
  return WK_OK;
}

/* The fused groups as mem_plan.h takes them (not the batchnorms alone), into
 * groups (n_nodes long); returns how many. */
static int wk_plan_groups(const wk_gpu_net *net, wk_bn_fuse_group *groups) {
  int n_groups = 0;
  for (int j = 0; j < net->g.n_nodes; j++) {
    const wk_gnode *g = &net->gn[j];
    if (g->fuse_bn >= 0 && !g->fuse_solo)
      groups[n_groups++] = (wk_bn_fuse_group){
          .relu = j, .bn = g->fuse_bn, .add = g->fuse_add, .z = g->fuse_z};
  }
  return n_groups;
}

/* Host scratch for placing a network's buffers (mem_plan.h): the groups (one
 * per node at most) and per value the steps, the bytes and the offsets. */
typedef struct wk_place_scratch {
  wk_bn_fuse_group *groups;
  int *first, *last;
  size_t *bytes, *offset; /* bytes zeroed */
} wk_place_scratch;

static void wk_place_scratch_free(wk_place_scratch *p) {
  free(p->groups);
  free(p->first);
  free(p->last);
  free(p->bytes);
  free(p->offset);
}

static wk_status wk_place_scratch_make(const wk_gpu_net *net, wk_place_scratch *p) {
  const size_t nv = (size_t)net->n_values;
  *p = (wk_place_scratch){
      .groups = malloc((size_t)(net->g.n_nodes ? net->g.n_nodes : 1) * sizeof *p->groups),
      .first = malloc(nv * sizeof *p->first), .last = malloc(nv * sizeof *p->last),
      .bytes = calloc(nv, sizeof *p->bytes), .offset = malloc(nv * sizeof *p->offset)};
  if (p->groups && p->first && p->last && p->bytes && p->offset) return WK_OK;
  wk_place_scratch_free(p);
  return wk_fail(WK_ERR_NOMEM, "GPU network: out of memory");
}

/* The values' gradients for a training batch of n, in one arena where those
 * whose steps of backward do not overlap share memory (mem_plan.h; the fused
 * groups as planned, whether they run fused or not). */
static wk_status wk_place_grads(wk_gpu_net *net, int64_t n) {
  wk_free_grads(net);
  const size_t nv = (size_t)net->n_values;
  wk_place_scratch p;
  WK_TRY(wk_place_scratch_make(net, &p));
  const int n_groups = wk_plan_groups(net, p.groups);
  wk_grad_steps(net->nodes, net->g.n_nodes, net->alias, net->needs_grad, p.groups, n_groups,
                p.first, p.last);
  for (size_t v = 0; v < nv; v++)
    if (p.first[v] >= 0) p.bytes[v] = (size_t)(n * net->numel[v]) * wk_esize(net);
  size_t total = 0;
  wk_status s = wk_place_buffers((int)nv, p.bytes, p.first, p.last, net->n_values, 256, p.offset,
                                 &total, NULL);
  if (s == WK_OK && total) {
    s = wk_cuda_malloc(&net->grad_arena, total);
    if (s != WK_OK)
      s = wk_no_room(s, wk_smaller_batch, "the gradients of a batch of %lld", (long long)n);
  }
  if (s == WK_OK) {
    net->grad_arena_bytes = total;
    for (size_t v = 1; v < nv; v++) {
      const int r = net->alias[v];
      net->grad[v] = p.first[r] >= 0 ? (char *)net->grad_arena + p.offset[r] : NULL;
    }
    net->grad_cap = n;
  }
  wk_place_scratch_free(&p);
  return s;
}

/* The values of a training network for a batch of n: one buffer per root
 * (vroot), held for backward. */
static wk_status wk_values_own(wk_gpu_net *net, int64_t n) {
  for (int v = 0; v < net->n_values; v++)
    if (net->vroot[v] == v)
      WK_TRY(wk_cuda_malloc(&net->val[v], (size_t)(n * net->numel[v]) * wk_esize(net)));
  for (int v = 0; v < net->n_values; v++)
    if (net->vroot[v] != v) net->val[v] = net->val[net->vroot[v]];
  return WK_OK;
}

/* The values of an inference-only network for a batch of n, in one arena
 * where those whose forward steps do not overlap share memory (mem_plan.h):
 * what a forward holds at once rather than every value. */
static wk_status wk_values_shared(wk_gpu_net *net, int64_t n) {
  const size_t nv = (size_t)net->n_values;
  wk_place_scratch p;
  WK_TRY(wk_place_scratch_make(net, &p));
  /* in inference the groups run whole (wk_infer_group), else node by node */
  const int n_groups = net->infer_own ? wk_plan_groups(net, p.groups) : 0;
  wk_status s =
      wk_value_steps(net->nodes, net->g.n_nodes, net->vroot, p.groups, n_groups, p.first, p.last);
  for (size_t v = 0; s == WK_OK && v < nv; v++) {
    const int r = net->vroot[v]; /* a root's buffer fits the largest value in it */
    const size_t b = (size_t)(n * net->numel[v]) * wk_esize(net);
    if (b > p.bytes[r]) p.bytes[r] = b;
  }
  const int n_steps = net->g.n_nodes > 0 ? net->g.n_nodes : 1;
  size_t total = 0;
  if (s == WK_OK)
    s = wk_place_buffers((int)nv, p.bytes, p.first, p.last, n_steps, 256, p.offset, &total, NULL);
  if (s == WK_OK) s = wk_cuda_malloc(&net->val_arena, total ? total : 256);
  if (s == WK_OK) {
    net->val_arena_bytes = total;
    net->vals_shared = true;
    for (size_t v = 0; v < nv; v++)
      net->val[v] = (char *)net->val_arena + p.offset[net->vroot[v]];
  }
  wk_place_scratch_free(&p);
  return s;
}

static wk_status wk_prepare_convs(wk_gpu_net *net, int64_t n, bool find, bool train);

/* Buffers for batch n (grown, never shrunk) and descriptors and algorithms
 * for it, timed when `find`; for a training forward (`train`) the
 * gradients, the backward algorithms and the fused groups' sizes too. */
wk_status wk_prepare_batch(wk_gpu_net *net, int64_t n, bool find, bool train) {
  if (n != net->batch || n > net->cap || find != net->algos_timed ||
      (train && (!net->algos_backward || net->grad_cap < n))) {
    net->fusion_batch = 0; /* the workspace may be cut down to the convolutions' */
    WK_TRY(wk_prepare_convs(net, n, find, train));
  }
  if (train && net->fuse_groups && !net->sync_bn && net->fusion_batch != n)
    WK_TRY(wk_fusion_batch(net));
  /* as the CPU: a batchnorm that trains needs more than one value per channel (cuDNN's
   * unbiased variance would be inf), whichever path runs it */
  for (int i = 0; train && i < net->g.n_nodes; i++)
    if (net->nodes[i].op == WK_NODE_BATCHNORM && net->needs_grad[i + 1]) {
      int64_t rows;
      int c;
      double total;
      WK_TRY(wk_bn_rows(net, i, &rows, &c, &total));
    }
  return WK_OK;
}

/* wk_prepare_batch's buffers, descriptors and convolution algorithms (with
 * `train`, the gradients and the backward algorithms too). */
static wk_status wk_prepare_convs(wk_gpu_net *net, int64_t n, bool find, bool train) {
  for (int v = 0; v < net->n_values; v++) /* cuDNN's descriptors count in int */
    if (net->numel[v] > INT32_MAX / n)
      return wk_fail(WK_ERR_UNSUPPORTED, "GPU: a batch of %lld makes %s's output over 2^31 "
                     "values, more than cuDNN takes: try a smaller --batch", (long long)n,
                     v ? net->nodes[v - 1].name : "the input");
  /* a network that has trained holds every value for backward; one that has
   * only run inference shares its values' memory by the forward's steps */
  if (n > net->cap || (net->trains && net->vals_shared)) {
    wk_free_values(net);
    const wk_status vs = net->trains ? wk_values_own(net, n) : wk_values_shared(net, n);
    if (vs != WK_OK) return wk_no_room(vs, wk_smaller_batch, "a batch of %lld", (long long)n);
    /* a fused group's backward may want two values' gradients in the
     * scratch, the second 256-byte aligned (wk_fused_backward): 16-bit ones
     * fit twice in float32's room. Inference wants it only for the input and
     * the output in float32 (16 bits), and timing for any convolution's
     * output (wk_timing_buffers) */
    const bool any_value = net->trains || net->algo_mode == WK_ALGO_FIND;
    int64_t biggest = 1;
    for (int v = 0; v < net->n_values; v++)
      if (any_value || v == 0 || v == net->n_values - 1)
        biggest = net->numel[v] > biggest ? net->numel[v] : biggest;
    net->scratch_elems = (size_t)(n * biggest) *
                             (net->trains && net->fuse_groups && !wk_half(net) ? 2 : 1) +
                         (net->trains && net->fuse_groups ? 64 : 0);
    wk_status s = wk_cuda_malloc((void **)&net->scratch, net->scratch_elems * sizeof(float));
    if (s == WK_OK) s = wk_cuda_malloc((void **)&net->ones, (size_t)n * sizeof(float));
    if (s != WK_OK) return wk_no_room(s, wk_smaller_batch, "a batch of %lld", (long long)n);
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return wk_fail(WK_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < n; k++) h[k] = 1.0f;
    s = wk_cuda_copy_h2d(net->ones, h, (size_t)n * sizeof *h);
    free(h);
    WK_TRY(s);
    net->cap = n;
  }
  if (train && net->grad_cap < n) WK_TRY(wk_place_grads(net, n));
  if (find && !wk_half(net) && !net->find_dw && net->widest_w) {
    const wk_status s =
        wk_cuda_malloc((void **)&net->find_dw, (size_t)net->widest_w * sizeof(float));
    if (s != WK_OK)
      return wk_no_room(s, "try a smaller --batch or $WHISKER_CUDNN_ALGO=heuristic",
                        "%zu MiB of timing scratch", ((size_t)net->widest_w * 4) >> 20);
  }
  net->batch = 0; /* until the algorithms below are chosen */
  size_t need = 0;
  bool timed = false;
  const void *ws_before = net->workspace; /* timing (cuda_algo.c) may make it again */
  const size_t ws_bytes_before = net->workspace_bytes;
  for (int i = 0; i < net->g.n_nodes; i++) {
    const wk_node *nd = &net->nodes[i];
    wk_gnode *s = &net->gn[i];
    int h, w, c, ih, iw, ic;
    wk_gv_hwc(net, i + 1, &h, &w, &c);
    wk_gv_hwc(net, nd->in[0], &ih, &iw, &ic);
    WK_TRY(wk_nhwc_desc(s->x, wk_act_type(net), n, ih, iw, ic));
    WK_TRY(wk_nhwc_desc(s->y, wk_act_type(net), n, h, w, c));
    if (nd->op == WK_NODE_CONV) {
      int on, oc, oh, ow;
      WK_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(s->conv, s->x, s->w, &on, &oc, &oh, &ow));
      if (on != n || oc != c || oh != h || ow != w)
        return wk_fail(WK_ERR_UNSUPPORTED, "GPU: %s: cuDNN's output %dx%dx%d differs from the "
                       "network's %dx%dx%d", nd->name, oh, ow, oc, h, w, c);
      const wk_status ps = wk_pick_algos(net, i, find, train, &need, &timed);
      if (net->workspace != ws_before || net->workspace_bytes != ws_bytes_before)
        wk_graph_table_invalidate(&net->graphs); /* timing made it again, even if it failed */
      WK_TRY(ps);
    }
  }
  /* timing grew the workspace to the largest candidate's: keep what the choices need */
  if (timed && net->workspace_bytes > need) WK_TRY(wk_workspace_trim(net, need));
  if (need) WK_TRY(wk_workspace(net, need));
  net->batch = n;
  net->algos_timed = find;
  net->algos_backward = train;
  return WK_OK;
}
