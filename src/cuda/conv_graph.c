/* conv_graph.c - one direction of one convolution through cuDNN's backend
 * (graph) API ($WHISKER_CUDNN_API=graph, cuda_net.c), beside cuda_algo.c's
 * legacy calls.
 *
 * Why: cuDNN 9's legacy calls reach the engines its algorithm enums map to;
 * the graph API offers every engine cuDNN has for the graph, the ones
 * PyTorch's convolutions run (it builds these graphs through cudnn-frontend
 * and, with cudnn.benchmark, times the candidates as timing does here).
 *
 * A plan (wk_cplan) is built from the legacy descriptors cuda_net.c keeps
 * (read back: dimensions always N, C, H, W and K, C/groups, R, S, with
 * strides giving the layout): three tensors (unique ids 1, 2, 3 for x, w, y;
 * 16-byte alignment), the convolution, the one operation (alpha 1, beta 0
 * or 1), the operation graph. cuDNN's heuristics (mode A, then the fallback
 * list after it) list engine configurations; a usable one (cuda_backend.h,
 * wk_cplan_make) is finalized into an execution plan. Heuristics take the
 * first usable; timing finalizes every usable one (up to WK_CPLAN_TIMED),
 * runs each once to warm up and WK_CPLAN_RUNS times between CUDA events,
 * and takes the fastest by its best run. A timed choice is kept in the
 * context's cache (cuda_algo.c's, variant 1 + beta) as the engine's global
 * index and its place in the heuristics' list: the list is the same for the
 * same graph on the same device and cuDNN, so another network, or a batch
 * size seen before, rebuilds that plan without timing (and times again if
 * the place no longer holds that engine).
 *
 * Every descriptor a plan was built from lives as long as the plan. A
 * variant pack is built when the pointers change and kept for the next run
 * with the same ones (a network's pointers stay put between batches). */
#if defined(__GNUC__)
/* CUDNN_ATTR_OPERATIONGRAPH_HANDLE and _EXECUTION_PLAN_HANDLE are deprecated
 * in cuDNN 9.19 but required by earlier 9.x, so both are set; should
 * CUDNN_WARN_DEPRECATED be defined */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_backend.h"

#define WK_CPLAN_ALIGN 16  /* bytes: what the plans promise of every pointer */
#define WK_CPLAN_CFG_MAX 64 /* engine configurations read from each heuristics mode */
#define WK_CPLAN_TIMED 24   /* usable configurations timed at most */
#define WK_CPLAN_RUNS 3     /* timed runs of each, after one to warm up */

enum { WK_UID_X = 1, WK_UID_W = 2, WK_UID_Y = 3 };

static const char *const wk_cdir_names[] = {"forward", "backward-data", "backward-filter"};

/* The descriptors of one operation graph. */
typedef struct wk_cgraph {
  cudnnBackendDescriptor_t t[3]; /* x, w, y */
  cudnnBackendDescriptor_t conv, op, graph;
} wk_cgraph;

struct wk_cplan {
  wk_cgraph g;
  cudnnBackendDescriptor_t cfg, plan;
  cudnnBackendDescriptor_t pack; /* for pack_ptr (x, w, y, ws), or NULL */
  void *pack_ptr[4];
  cudnnHandle_t cudnn;
  int64_t engine;
  int rank;
  size_t ws_bytes;
};

/* A failed backend call: cuDNN's status and its own detail. */
static wk_status wk_graph_failed(cudnnStatus_t e, const char *what, wk_conv_dir d) {
  char msg[256];
  cudnnGetLastErrorString(msg, sizeof msg);
  return wk_fail(WK_ERR_BACKEND, "cuDNN graph API: %s (%s convolution): %s (%s)", what,
                 wk_cdir_names[d], cudnnGetErrorString(e), msg);
}

/* Keeps, in c->note when given and still empty, why a configuration was unusable (cuDNN's
 * status e and its message) for the caller's "no engine" error. */
static void wk_note(const wk_conv_choice *c, cudnnStatus_t e, const char *what) {
  if (!c->note || !c->note_n || c->note[0]) return;
  char msg[256];
  cudnnGetLastErrorString(msg, sizeof msg);
  snprintf(c->note, c->note_n, "%s: %s (%s)", what, cudnnGetErrorString(e), msg);
}

#define WK_GTRY(call, what)                                                                  \
  do {                                                                                       \
    const cudnnStatus_t wk_g_e_ = (call);                                                    \
    if (wk_g_e_ != CUDNN_STATUS_SUCCESS) return wk_graph_failed(wk_g_e_, what, d);            \
  } while (0)

static void wk_destroy(cudnnBackendDescriptor_t *p) {
  if (*p) (void)cudnnBackendDestroyDescriptor(*p);
  *p = NULL;
}

static void wk_cgraph_free(wk_cgraph *g) {
  for (int k = 0; k < 3; k++) wk_destroy(&g->t[k]);
  wk_destroy(&g->conv);
  wk_destroy(&g->op);
  wk_destroy(&g->graph);
}

/* A finalized tensor descriptor. */
static wk_status wk_gtensor(cudnnDataType_t t, const int64_t dims[4], const int64_t strides[4],
                           int64_t uid, wk_conv_dir d, cudnnBackendDescriptor_t *out) {
  const int64_t align = WK_CPLAN_ALIGN;
  WK_GTRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, out), "a tensor");
  WK_GTRY(cudnnBackendSetAttribute(*out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &t),
          "a tensor's data type");
  WK_GTRY(cudnnBackendSetAttribute(*out, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims),
          "a tensor's dimensions");
  WK_GTRY(cudnnBackendSetAttribute(*out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides),
          "a tensor's strides");
  WK_GTRY(cudnnBackendSetAttribute(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid),
          "a tensor's id");
  WK_GTRY(cudnnBackendSetAttribute(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1,
                                   &align), "a tensor's alignment");
  WK_GTRY(cudnnBackendFinalize(*out), "a tensor");
  return WK_OK;
}

/* The tensors of c's legacy descriptors, as the graph API describes them. */
static wk_status wk_gtensors(const wk_conv_choice *c, wk_conv_dir d, wk_cgraph *g,
                            cudnnDataType_t *data) {
  cudnnDataType_t xt, yt, wt;
  int n, ch, h, w, sn, sc, sh, sw;
  WK_CUDNN_TRY(cudnnGetTensor4dDescriptor(c->x, &xt, &n, &ch, &h, &w, &sn, &sc, &sh, &sw));
  const int64_t xd[4] = {n, ch, h, w}, xs[4] = {sn, sc, sh, sw};
  WK_CUDNN_TRY(cudnnGetTensor4dDescriptor(c->y, &yt, &n, &ch, &h, &w, &sn, &sc, &sh, &sw));
  const int64_t yd[4] = {n, ch, h, w}, ys[4] = {sn, sc, sh, sw};
  cudnnTensorFormat_t f;
  int k, kc, r, s;
  WK_CUDNN_TRY(cudnnGetFilter4dDescriptor(c->w, &wt, &f, &k, &kc, &r, &s));
  const int64_t wd[4] = {k, kc, r, s};
  /* KCRS, or KRSC for NHWC (channels innermost) */
  const int64_t wkcrs[4] = {(int64_t)kc * r * s, (int64_t)r * s, s, 1};
  const int64_t wkrsc[4] = {(int64_t)r * s * kc, 1, (int64_t)s * kc, kc};
  WK_TRY(wk_gtensor(xt, xd, xs, WK_UID_X, d, &g->t[0]));
  WK_TRY(wk_gtensor(wt, wd, f == CUDNN_TENSOR_NHWC ? wkrsc : wkcrs, WK_UID_W, d, &g->t[1]));
  WK_TRY(wk_gtensor(yt, yd, ys, WK_UID_Y, d, &g->t[2]));
  *data = xt;
  return WK_OK;
}

/* The operation graph of direction d of c's convolution, beta 1 when accumulate. */
static wk_status wk_cgraph_make(const wk_conv_choice *c, wk_conv_dir d, bool accumulate,
                                wk_cgraph *g, cudnnDataType_t *data_type) {
  memset(g, 0, sizeof *g);
  cudnnDataType_t data = CUDNN_DATA_FLOAT;
  WK_TRY(wk_gtensors(c, d, g, &data));
  *data_type = data;
  int ph, pw, u, v, dh, dw;
  cudnnConvolutionMode_t mode;
  cudnnDataType_t comp;
  WK_CUDNN_TRY(cudnnGetConvolution2dDescriptor(c->conv, &ph, &pw, &u, &v, &dh, &dw, &mode, &comp));
  const int64_t dims = 2, pad[2] = {ph, pw}, stride[2] = {u, v}, dil[2] = {dh, dw};
  WK_GTRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &g->conv),
          "the convolution");
  WK_GTRY(cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE,
                                   1, &comp), "the compute type");
  WK_GTRY(cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE,
                                   CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode), "the mode");
  WK_GTRY(cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64,
                                   1, &dims), "the spatial dimensions");
  WK_GTRY(cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64,
                                   2, pad), "the padding");
  WK_GTRY(cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64,
                                   2, pad), "the padding");
  WK_GTRY(cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES,
                                   CUDNN_TYPE_INT64, 2, stride), "the stride");
  WK_GTRY(cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2,
                                   dil), "the dilation");
  WK_GTRY(cudnnBackendFinalize(g->conv), "the convolution");

  /* alpha and beta: float for a float computation (of float, half or bfloat16 data),
   * double for a double one (as cudnn-frontend decides it) */
  const bool dbl = comp == CUDNN_DATA_DOUBLE;
  const float alpha_f = 1.0f, beta_f = accumulate ? 1.0f : 0.0f;
  const double alpha_d = 1.0, beta_d = accumulate ? 1.0 : 0.0;
  const cudnnBackendAttributeType_t st = dbl ? CUDNN_TYPE_DOUBLE : CUDNN_TYPE_FLOAT;
  const void *alpha = dbl ? (const void *)&alpha_d : (const void *)&alpha_f;
  const void *beta = dbl ? (const void *)&beta_d : (const void *)&beta_f;
  static const cudnnBackendDescriptorType_t type[3] = {
      CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
      CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
      CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR};
  /* per direction: alpha, beta, the convolution, then the tensors x, w, y by their
   * role (forward: x, w, y; backward-data: dx, w, dy; backward-filter: x, dw, dy) */
  static const cudnnBackendAttributeName_t attr[3][6] = {
      {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y},
      {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY},
      {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY}};
  const cudnnBackendAttributeName_t *a = attr[d];
  WK_GTRY(cudnnBackendCreateDescriptor(type[d], &g->op), "the operation");
  WK_GTRY(cudnnBackendSetAttribute(g->op, a[0], st, 1, alpha), "alpha");
  WK_GTRY(cudnnBackendSetAttribute(g->op, a[1], st, 1, beta), "beta");
  WK_GTRY(cudnnBackendSetAttribute(g->op, a[2], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->conv),
          "the operation's convolution");
  for (int k = 0; k < 3; k++)
    WK_GTRY(cudnnBackendSetAttribute(g->op, a[3 + k], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->t[k]),
            "the operation's tensors");
  WK_GTRY(cudnnBackendFinalize(g->op), "the operation");

  WK_GTRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &g->graph),
          "the operation graph");
  WK_GTRY(cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->op),
          "the operation graph's operation");
  WK_GTRY(cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                   &c->cudnn), "the operation graph's handle");
  WK_GTRY(cudnnBackendFinalize(g->graph), "the operation graph");
  return WK_OK;
}

/* ------------------------------------------------------------------ engine configurations */

/* The configurations heuristics mode `mode` lists for g, appended to
 * cfg[*n..max) (descriptors the caller destroys); none when cuDNN says the mode
 * does not take the case (as cudnn-frontend, which goes on to the next mode). */
static wk_status wk_heuristics(const wk_conv_choice *c, const wk_cgraph *g,
                               cudnnBackendHeurMode_t mode, wk_conv_dir d,
                               cudnnBackendDescriptor_t *cfg, int *n, int max) {
  cudnnBackendDescriptor_t heur = NULL;
  wk_status st = WK_OK;
  cudnnStatus_t e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur);
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g->graph);
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  if (e == CUDNN_STATUS_SUCCESS) e = cudnnBackendFinalize(heur);
  int64_t count = 0;
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL);
  if (e != CUDNN_STATUS_SUCCESS) {
    const char *what = mode == CUDNN_HEUR_MODE_FALLBACK ? "the fallback list" : "the heuristics";
    if (CUDNN_STATUS_CATEGORY(e) == CUDNN_STATUS_NOT_SUPPORTED) wk_note(c, e, what);
    else st = wk_graph_failed(e, what, d);
    wk_destroy(&heur);
    return st;
  }
  if (count > max - *n) count = max - *n;
  int made = 0;
  for (; made < count; made++) {
    e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg[*n + made]);
    if (e != CUDNN_STATUS_SUCCESS) break;
  }
  int64_t got = 0;
  if (e == CUDNN_STATUS_SUCCESS && count > 0)
    e = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, &cfg[*n]);
  if (e != CUDNN_STATUS_SUCCESS) st = wk_graph_failed(e, "the heuristics' results", d);
  if (got > made) got = made;
  for (int k = (int)got; k < made; k++) wk_destroy(&cfg[*n + k]);
  if (st == WK_OK) *n += (int)got;
  wk_destroy(&heur);
  return st;
}

/* Configuration cfg's engine: its global index, and whether the caller may
 * use it (cuda_backend.h's rules; not when its notes cannot be read). */
static void wk_engine_of(const wk_conv_choice *c, bool float32, cudnnBackendDescriptor_t cfg,
                         int64_t *index, bool *usable) {
  *usable = false;
  *index = -1;
  cudnnBackendDescriptor_t eng = NULL;
  cudnnStatus_t e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng);
  int64_t got = 0;
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                 1, &got, &eng);
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &got,
                                 index);
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t n_notes = 0;
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                 CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n_notes, notes);
  if (e != CUDNN_STATUS_SUCCESS) { /* as cudnn-frontend: such a configuration is not taken */
    wk_note(c, e, "an engine's notes");
  } else {
    bool ok = !wk_engine_set_has(c->skip_engines, *index);
    if (n_notes > CUDNN_NUMERICAL_NOTE_TYPE_COUNT) n_notes = CUDNN_NUMERICAL_NOTE_TYPE_COUNT;
    for (int64_t k = 0; k < n_notes; k++) {
      switch (notes[k]) {
      case CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS:
      case CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION: ok = false; break;
      case CUDNN_NUMERICAL_NOTE_TENSOR_CORE: ok = ok && (!float32 || c->tensor_math); break;
      case CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC: ok = ok && !c->deterministic; break;
      default: break;
      }
    }
    *usable = ok;
  }
  wk_destroy(&eng);
}

/* Configuration cfg finalized into a plan over g: *plan NULL when cuDNN
 * refuses it (any failure to finalize: the engine does not take the case). */
static wk_status wk_plan_of(const wk_conv_choice *c, wk_conv_dir d, cudnnBackendDescriptor_t cfg,
                            cudnnBackendDescriptor_t *plan, size_t *ws_bytes) {
  *plan = NULL;
  *ws_bytes = 0;
  cudnnBackendDescriptor_t p = NULL;
  WK_GTRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &p),
          "an execution plan");
  cudnnStatus_t e = cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                             CUDNN_TYPE_HANDLE, 1, &c->cudnn);
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg);
  if (e != CUDNN_STATUS_SUCCESS) {
    wk_destroy(&p);
    return wk_graph_failed(e, "an execution plan's attributes", d);
  }
  e = cudnnBackendFinalize(p);
  if (e != CUDNN_STATUS_SUCCESS) { /* refused, or failed for a reason kept for the caller */
    if (CUDNN_STATUS_CATEGORY(e) != CUDNN_STATUS_NOT_SUPPORTED) wk_note(c, e, "a plan");
    wk_destroy(&p);
    return WK_OK;
  }
  int64_t ws = 0, got = 0;
  e = cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                               &got, &ws);
  if (e != CUDNN_STATUS_SUCCESS || ws < 0) {
    wk_destroy(&p);
    return e != CUDNN_STATUS_SUCCESS ? wk_graph_failed(e, "a plan's workspace", d)
                                     : wk_fail(WK_ERR_BACKEND, "cuDNN graph API: a plan asks "
                                               "for %lld bytes of workspace", (long long)ws);
  }
  *plan = p;
  *ws_bytes = (size_t)ws;
  return WK_OK;
}

/* ------------------------------------------------------------------ plans */

static cudnnStatus_t wk_pack(void *const ptr[4], cudnnBackendDescriptor_t *out);

void wk_cplan_destroy(wk_cplan *p) {
  if (!p) return;
  wk_destroy(&p->pack);
  wk_destroy(&p->plan);
  wk_destroy(&p->cfg);
  wk_cgraph_free(&p->g);
  free(p);
}

size_t wk_cplan_ws_bytes(const wk_cplan *p) { return p->ws_bytes; }
int64_t wk_cplan_engine(const wk_cplan *p) { return p->engine; }

cudnnStatus_t wk_cplan_run(wk_cplan *p, void *x, void *w, void *y, void *ws) {
  void *ptr[4] = {x, w, y, p->ws_bytes ? ws : NULL};
  static const char *const role[3] = {"x", "w", "y"};
  for (int k = 0; k < 3; k++)
    if ((uintptr_t)ptr[k] % WK_CPLAN_ALIGN != 0) {
      (void)wk_fail(WK_ERR_BACKEND, "cuDNN graph API: %s (%p) is not aligned to %d bytes, as the "
                    "plan promised cuDNN", role[k], ptr[k], WK_CPLAN_ALIGN);
      return CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER;
    }
  if (!p->pack || memcmp(ptr, p->pack_ptr, sizeof ptr) != 0) {
    wk_destroy(&p->pack);
    const cudnnStatus_t e = wk_pack(ptr, &p->pack);
    if (e != CUDNN_STATUS_SUCCESS) return e;
    memcpy(p->pack_ptr, ptr, sizeof ptr);
  }
  return cudnnBackendExecute(p->cudnn, p->plan, p->pack);
}

/* A variant pack of the pointers (x, w, y, workspace) into *out. */
static cudnnStatus_t wk_pack(void *const ptr[4], cudnnBackendDescriptor_t *out) {
  const int64_t uid[3] = {WK_UID_X, WK_UID_W, WK_UID_Y};
  cudnnBackendDescriptor_t v = NULL;
  cudnnStatus_t e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &v);
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendSetAttribute(v, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uid);
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendSetAttribute(v, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3,
                                 ptr);
  if (e == CUDNN_STATUS_SUCCESS)
    e = cudnnBackendSetAttribute(v, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                                 &ptr[3]);
  if (e == CUDNN_STATUS_SUCCESS) e = cudnnBackendFinalize(v);
  if (e != CUDNN_STATUS_SUCCESS) wk_destroy(&v);
  *out = v;
  return e;
}

/* ------------------------------------------------------------------ timing */

/* One usable configuration, finalized. */
typedef struct wk_cand {
  int rank;
  int64_t engine;
  cudnnBackendDescriptor_t plan;
  size_t ws_bytes;
  float ms; /* best timed run; < 0 when it could not run */
} wk_cand;

/* A candidate's run that failed in a way timing works around: the engine
 * does not take the case after all, or there is no memory for it. */
static bool wk_run_recoverable(cudnnStatus_t s) {
  return CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED ||
         s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
         s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
}

/* Times candidate k (k->ms: its best of WK_CPLAN_RUNS runs after a warm-up,
 * -1 when cuDNN would not run it) on the timing buffers of c. */
static wk_status wk_time_one(const wk_conv_choice *c, wk_conv_dir d, wk_cand *k,
                             cudaEvent_t ev[2]) {
  k->ms = -1.0f;
  void *ptr[4] = {NULL, NULL, NULL, k->ws_bytes ? *c->ws : NULL};
  switch (d) {
  case WK_CONV_FWD:
    ptr[0] = (void *)(uintptr_t)c->x_data, ptr[1] = (void *)(uintptr_t)c->w_data;
    ptr[2] = c->y_data;
    break;
  case WK_CONV_BWD_DATA:
    ptr[0] = c->dx_data, ptr[1] = (void *)(uintptr_t)c->w_data;
    ptr[2] = (void *)(uintptr_t)c->dy_data;
    break;
  case WK_CONV_BWD_FILTER:
    ptr[0] = (void *)(uintptr_t)c->x_data, ptr[1] = c->dw_data;
    ptr[2] = (void *)(uintptr_t)c->dy_data;
    break;
  }
  for (int j = 0; j < 3; j++)
    if ((uintptr_t)ptr[j] % WK_CPLAN_ALIGN != 0)
      return wk_fail(WK_ERR_INVALID_ARG, "cuDNN graph API: a timing buffer of the %s "
                     "convolution is not aligned to %d bytes", wk_cdir_names[d], WK_CPLAN_ALIGN);
  cudnnBackendDescriptor_t pack = NULL;
  cudnnStatus_t e = wk_pack(ptr, &pack);
  if (e != CUDNN_STATUS_SUCCESS) return wk_graph_failed(e, "a timing's variant pack", d);
  wk_status st = WK_OK;
  float best = -1.0f;
  for (int r = 0; r <= WK_CPLAN_RUNS && st == WK_OK; r++) {
    cudaError_t ce = r > 0 ? cudaEventRecord(ev[0], c->stream) : cudaSuccess;
    e = cudnnBackendExecute(c->cudnn, k->plan, pack);
    if (e != CUDNN_STATUS_SUCCESS) {
      /* a candidate that could not launch leaves its error in the runtime, where
       * the next launcher would report it: consume it (a fault is sticky, and the
       * synchronisation below reports it) */
      (void)cudaGetLastError();
      if (!wk_run_recoverable(e)) st = wk_graph_failed(e, "timing an engine", d);
      break;
    }
    if (r == 0) continue;
    if (ce == cudaSuccess) ce = cudaEventRecord(ev[1], c->stream);
    if (ce == cudaSuccess) ce = cudaEventSynchronize(ev[1]);
    float ms = 0.0f;
    if (ce == cudaSuccess) ce = cudaEventElapsedTime(&ms, ev[0], ev[1]);
    if (ce != cudaSuccess) {
      (void)cudaGetLastError();
      st = wk_fail(WK_ERR_BACKEND, "CUDA: timing the %s convolution's engine %lld: %s",
                   wk_cdir_names[d], (long long)k->engine, cudaGetErrorString(ce));
      break;
    }
    if (best < 0.0f || ms < best) best = ms;
  }
  wk_destroy(&pack);
  if (st != WK_OK) return st;
  WK_CUDA_TRY(cudaStreamSynchronize(c->stream));
  k->ms = best;
  return WK_OK;
}

/* Times the candidates into their ms; *ran false when there is no device
 * memory for the largest workspace. */
static wk_status wk_time_all(const wk_conv_choice *c, wk_conv_dir d, wk_cand *k, int n,
                             bool *ran) {
  *ran = false;
  size_t need = 0;
  for (int j = 0; j < n; j++)
    if (k[j].ws_bytes > need) need = k[j].ws_bytes;
  bool room = false;
  WK_TRY(wk_conv_timing_workspace(c, need, &room));
  if (!room) return WK_OK;
  cudaEvent_t ev[2] = {NULL, NULL};
  WK_CUDA_TRY(cudaEventCreateWithFlags(&ev[0], cudaEventDefault));
  const cudaError_t ce = cudaEventCreateWithFlags(&ev[1], cudaEventDefault);
  if (ce != cudaSuccess) {
    (void)cudaEventDestroy(ev[0]);
    WK_CUDA_TRY(ce);
  }
  wk_status st = WK_OK;
  for (int j = 0; j < n && st == WK_OK; j++) st = wk_time_one(c, d, &k[j], ev);
  (void)cudaEventDestroy(ev[0]);
  (void)cudaEventDestroy(ev[1]);
  *ran = st == WK_OK;
  return st;
}

/* ------------------------------------------------------------------ the choice */

/* Configuration cfg as a plan the caller may take: its engine's index and,
 * when the engine is usable, cuDNN finalizes its plan and it fits the
 * limit, the plan and its workspace in *q (q->plan NULL otherwise; *refused
 * when cuDNN refused it or it needs more than the limit). */
static wk_status wk_candidate(const wk_conv_choice *c, wk_conv_dir d, bool float32,
                              cudnnBackendDescriptor_t cfg, wk_cand *q, bool *refused) {
  q->plan = NULL;
  *refused = false;
  bool usable = false;
  wk_engine_of(c, float32, cfg, &q->engine, &usable);
  if (!usable) return WK_OK;
  WK_TRY(wk_plan_of(c, d, cfg, &q->plan, &q->ws_bytes));
  if (q->plan && q->ws_bytes <= c->ws_limit) return WK_OK;
  wk_destroy(&q->plan);
  *refused = true;
  return WK_OK;
}

wk_status wk_cplan_make(const wk_conv_choice *c, wk_conv_dir d, bool accumulate, wk_cplan **out,
                        bool *found, bool *timed) {
  *out = NULL;
  *found = false;
  *timed = false;
  wk_cplan *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "cuDNN graph API: out of host memory");
  p->cudnn = c->cudnn;
  cudnnBackendDescriptor_t cfg[2 * WK_CPLAN_CFG_MAX] = {NULL};
  int n_cfg = 0;
  wk_cand cand[WK_CPLAN_TIMED];
  int n_cand = 0;
  cudnnDataType_t data = CUDNN_DATA_FLOAT;
  const int variant = 1 + accumulate;
  wk_cand take = {.rank = -1}; /* the chosen configuration (its place in cfg) and plan */
  bool refused = false;
  wk_status st = wk_cgraph_make(c, d, accumulate, &p->g, &data);
  if (st == WK_OK)
    st = wk_heuristics(c, &p->g, CUDNN_HEUR_MODE_A, d, cfg, &n_cfg, WK_CPLAN_CFG_MAX);
  if (st == WK_OK)
    st = wk_heuristics(c, &p->g, CUDNN_HEUR_MODE_FALLBACK, d, cfg, &n_cfg,
                       2 * WK_CPLAN_CFG_MAX);
  const bool float32 = data == CUDNN_DATA_FLOAT;

  /* a kept choice: the same engine at the same place rebuilds it untimed */
  wk_conv_algo kept = {0};
  bool hit = false;
  if (st == WK_OK && c->find) st = wk_conv_kept(c, d, variant, &kept, &hit);
  if (st == WK_OK && hit && kept.rank >= 0 && kept.rank < n_cfg) {
    wk_cand q = {.rank = kept.rank};
    st = wk_candidate(c, d, float32, cfg[kept.rank], &q, &refused);
    if (q.plan && q.engine == kept.algo) take = q;
    else wk_destroy(&q.plan);
  }
  bool timed_ok = false, for_good = false;
  if (st == WK_OK && take.rank < 0 && c->find) {
    /* every usable configuration cuDNN finalizes within the limit, timed */
    for (int k = 0; k < n_cfg && n_cand < WK_CPLAN_TIMED && st == WK_OK; k++) {
      cand[n_cand] = (wk_cand){.rank = k, .ms = -1.0f};
      st = wk_candidate(c, d, float32, cfg[k], &cand[n_cand], &refused);
      if (refused) wk_cudaalgos_count(c->cache, WK_ALGO_REFUSED);
      if (cand[n_cand].plan) n_cand++;
    }
    bool ran = false;
    if (st == WK_OK && n_cand > 0) {
      *timed = true;
      st = wk_time_all(c, d, cand, n_cand, &ran);
    }
    int best = -1;
    for (int k = 0; k < n_cand && ran; k++)
      if (cand[k].ms >= 0.0f && (best < 0 || cand[k].ms < cand[best].ms)) best = k;
    if (st == WK_OK && best >= 0) {
      take = cand[best];
      cand[best].plan = NULL;
      timed_ok = true;
    } else if (st == WK_OK) {
      wk_cudaalgos_count(c->cache, WK_ALGO_FELL_BACK);
      for_good = ran || n_cand == 0; /* nothing usable ran; not: no room now */
    }
  }
  /* the heuristics: the first usable configuration cuDNN finalizes within the limit */
  for (int k = 0; st == WK_OK && take.rank < 0 && k < n_cfg; k++) {
    wk_cand q = {.rank = k};
    st = wk_candidate(c, d, float32, cfg[k], &q, &refused);
    if (refused) wk_cudaalgos_count(c->cache, WK_ALGO_REFUSED);
    if (q.plan) take = q;
  }
  if (st == WK_OK && take.rank >= 0) {
    p->cfg = cfg[take.rank];
    cfg[take.rank] = NULL;
    p->plan = take.plan;
    take.plan = NULL;
    p->ws_bytes = take.ws_bytes;
    p->rank = take.rank;
    p->engine = take.engine;
    wk_conv_algo v = {.algo = (int)p->engine, .ws_bytes = p->ws_bytes, .rank = p->rank};
    /* kept when timed, or when timing found nothing usable to run (not when there
     * was no room for it: another time may have it) */
    if (c->find && (timed_ok || for_good) && !hit)
      st = wk_conv_keep(c, d, variant, &v, timed_ok);
  }
  for (int k = 0; k < n_cand; k++) wk_destroy(&cand[k].plan);
  for (int k = 0; k < n_cfg; k++) wk_destroy(&cfg[k]);
  wk_destroy(&take.plan);
  if (st != WK_OK || take.rank < 0) {
    wk_cplan_destroy(p);
    return st;
  }
  *out = p;
  *found = true;
  return WK_OK;
}
