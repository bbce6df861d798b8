/* cuda_algo.c - which cuDNN algorithm runs each direction of a convolution
 * (cuda_net.c asks once per convolution and batch size), and the cache of
 * timed choices (cuda.h's wk_gpu_algos).
 *
 * Heuristics: cuDNN's ranking by its performance model
 * (cudnnGetConvolution*Algorithm_v7); the first entry that succeeded, fits the
 * workspace limit, has an allowed math type and passes the call's own check
 * (cudnnGetConvolution*WorkspaceSize accepts it, within the limit: the
 * ranking is a model, and may list an algorithm the call refuses or state too
 * little workspace). Instant, and the same in every process on the same GPU
 * and cuDNN.
 *
 * Timing: cudnnFindConvolution*AlgorithmEx runs every candidate on the
 * caller's buffers (their contents do not matter and the outputs are
 * overwritten) with a workspace as large as the largest candidate the
 * heuristics say fits the limit, and reports measured times; the fastest
 * that succeeded, fits and has an allowed math type is taken with its math
 * type. Timing costs a few runs of every algorithm, so choices are kept in a
 * wk_gpu_algos keyed by everything the descriptors say (input shape, strides
 * and data type; filter shape, layout and data type; padding, stride,
 * dilation, groups, compute and math type), the direction, the device and
 * the workspace limit. The networks of a context share one, so a second
 * network, or a batch size seen before, takes the kept choice.
 *
 * An algorithm a convolution's call refused (cuda_net_batch.c's wk_conv_refused)
 * is in the caller's skip set: the heuristics pass it over, and a kept
 * choice that is one gives way to them for that caller (untimed).
 *
 * A timing that cannot run falls back to the heuristics' choice and is
 * counted (wk_gpu_algo_stats.fell_back): cuDNN says the case is not
 * supported, or there is no device memory for the workspace or for cuDNN's
 * own. Anything else (a bad parameter is our bug, an execution failure a
 * broken device) is reported. Timings vary by a few percent from run to run,
 * so two processes may pick different algorithms of about the same speed;
 * their results then differ by float rounding (cuda.h: $WHISKER_CUDNN_ALGO).
 *
 * cuDNN 9 deprecates this descriptor API (see cuda_net.c); the warnings are
 * silenced for this file too. */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_backend.h"

/* More than any direction has (cuDNN 9: 8 forward, 6 backward-data, 7 backward-filter). */
#define WK_ALGO_MAX 16

/* Everything that decides a choice, as plain ints so that memcmp compares
 * keys (no padding: checked below). */
typedef struct wk_conv_key {
  int device, dir;
  int ws_limit_hi, ws_limit_lo; /* bytes, split */
  int x[9];                     /* data type, n, c, h, w, and the four strides */
  int w[6];                     /* data type, layout, k, c per group, h, w */
  int conv[10];                 /* padding, stride and dilation (h, w), mode, compute
                                 * type, groups, math type */
  int deterministic;            /* only algorithms cuDNN calls deterministic */
} wk_conv_key;
_Static_assert(sizeof(wk_conv_key) == 30 * sizeof(int), "wk_conv_key has padding");

struct wk_gpu_algos {
  pthread_mutex_t lock; /* networks of one context may run on several threads */
  wk_conv_key *keys;
  wk_conv_algo *algos;
  size_t n, cap;
  wk_gpu_algo_stats stats;
};

/* ------------------------------------------------------------------ the cache */

wk_status wk_cudaalgos_create(wk_gpu_algos **out) {
  *out = NULL;
  wk_gpu_algos *a = calloc(1, sizeof *a);
  if (!a) return wk_fail(WK_ERR_NOMEM, "GPU algorithm cache: out of memory");
  const int e = pthread_mutex_init(&a->lock, NULL);
  if (e != 0) {
    free(a);
    return wk_fail(WK_ERR_BACKEND, "GPU algorithm cache: pthread_mutex_init: %s", strerror(e));
  }
  *out = a;
  return WK_OK;
}

void wk_cudaalgos_destroy(wk_gpu_algos *a) {
  if (!a) return;
  pthread_mutex_destroy(&a->lock);
  free(a->keys);
  free(a->algos);
  free(a);
}

wk_status wk_cudaalgos_stats(wk_gpu_algos *a, wk_gpu_algo_stats *out) {
  if (!a || !out) return wk_fail(WK_ERR_INVALID_ARG, "GPU algorithm cache: none");
  pthread_mutex_lock(&a->lock);
  *out = a->stats;
  pthread_mutex_unlock(&a->lock);
  return WK_OK;
}

/* The kept choice for k into *out; false when there is none. */
static bool wk_cache_get(wk_gpu_algos *a, const wk_conv_key *k, wk_conv_algo *out) {
  bool hit = false;
  pthread_mutex_lock(&a->lock);
  for (size_t i = 0; i < a->n && !hit; i++)
    if (memcmp(&a->keys[i], k, sizeof *k) == 0) {
      *out = a->algos[i];
      hit = true;
    }
  pthread_mutex_unlock(&a->lock);
  return hit;
}

/* A kept choice was taken (one passed over is not counted). */
static void wk_cache_reused(wk_gpu_algos *a) {
  pthread_mutex_lock(&a->lock);
  a->stats.reused++;
  pthread_mutex_unlock(&a->lock);
}

/* Keeps *v for k (counted as timed when `timed`). When another thread kept
 * one meanwhile, that one wins and comes back in *v, so every network of the
 * context runs the same. Out of host memory the choice is used but not kept. */
static void wk_cache_put(wk_gpu_algos *a, const wk_conv_key *k, wk_conv_algo *v, bool timed) {
  pthread_mutex_lock(&a->lock);
  for (size_t i = 0; i < a->n; i++)
    if (memcmp(&a->keys[i], k, sizeof *k) == 0) {
      *v = a->algos[i];
      pthread_mutex_unlock(&a->lock);
      return;
    }
  if (a->n == a->cap) {
    const size_t cap = a->cap ? 2 * a->cap : 64;
    wk_conv_key *keys = realloc(a->keys, cap * sizeof *keys);
    if (keys) a->keys = keys;
    wk_conv_algo *algos = keys ? realloc(a->algos, cap * sizeof *algos) : NULL;
    if (algos) a->algos = algos;
    if (!keys || !algos) {
      pthread_mutex_unlock(&a->lock);
      return;
    }
    a->cap = cap;
  }
  a->keys[a->n] = *k;
  a->algos[a->n] = *v;
  a->n++;
  a->stats.timed += timed;
  pthread_mutex_unlock(&a->lock);
}

/* Counts one event in a->stats (*counter is one of its fields), under the lock. */
static void wk_cache_count(wk_gpu_algos *a, int64_t *counter) {
  pthread_mutex_lock(&a->lock);
  (*counter)++;
  pthread_mutex_unlock(&a->lock);
}

/* The key of direction d of c, read back from the descriptors; `variant`
 * tells the kinds of choice apart (wk_conv_kept). */
static wk_status wk_key_make(const wk_conv_choice *c, wk_conv_dir d, int variant,
                             wk_conv_key *k) {
  memset(k, 0, sizeof *k);
  k->device = c->device;
  k->dir = (int)d + 3 * variant;
  k->ws_limit_hi = (int)(uint32_t)((uint64_t)c->ws_limit >> 32);
  k->ws_limit_lo = (int)(uint32_t)c->ws_limit;
  k->deterministic = c->deterministic;
  cudnnDataType_t xt, wt, ct;
  cudnnTensorFormat_t wf;
  cudnnConvolutionMode_t mode;
  cudnnMathType_t math;
  int *x = k->x, *w = k->w, *v = k->conv;
  WK_CUDNN_TRY(cudnnGetTensor4dDescriptor(c->x, &xt, &x[1], &x[2], &x[3], &x[4], &x[5], &x[6],
                                          &x[7], &x[8]));
  WK_CUDNN_TRY(cudnnGetFilter4dDescriptor(c->w, &wt, &wf, &w[2], &w[3], &w[4], &w[5]));
  WK_CUDNN_TRY(cudnnGetConvolution2dDescriptor(c->conv, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                                               &mode, &ct));
  WK_CUDNN_TRY(cudnnGetConvolutionGroupCount(c->conv, &v[8]));
  WK_CUDNN_TRY(cudnnGetConvolutionMathType(c->conv, &math));
  x[0] = (int)xt;
  w[0] = (int)wt;
  w[1] = (int)wf;
  v[6] = (int)mode;
  v[7] = (int)ct;
  v[9] = (int)math;
  return WK_OK;
}

/* ------------------------------------------------------------------ rankings */

static const char *const wk_dir_names[] = {"forward", "backward-data", "backward-filter"};

/* One entry of a ranking; the three perf types of cuDNN share these fields. */
typedef struct wk_algo_perf {
  int algo;
  cudnnStatus_t status;
  float time_ms; /* measured (timing); an estimate or -1 (heuristics) */
  size_t memory;
  cudnnMathType_t math;
  cudnnDeterminism_t determinism;
} wk_algo_perf;

#define WK_PERF_TAKE(dst, src, got)                                                       \
  for (int k_ = 0; k_ < (got); k_++)                                                    \
  (dst)[k_] = (wk_algo_perf){(int)(src)[k_].algo, (src)[k_].status, (src)[k_].time,      \
                             (src)[k_].memory, (src)[k_].mathType, (src)[k_].determinism}

/* Whether a math type is allowed: never ALLOW_CONVERSION (fp16 products from
 * other data); tensor cores (TF32 for float32 data) only with tensor_math;
 * FMA always. */
static bool wk_math_ok(const wk_conv_choice *c, cudnnMathType_t m) {
  return m == CUDNN_FMA_MATH ||
         (c->tensor_math && (m == CUDNN_DEFAULT_MATH || m == CUDNN_TENSOR_OP_MATH));
}

static bool wk_usable(const wk_conv_choice *c, const wk_algo_perf *p) {
  return p->status == CUDNN_STATUS_SUCCESS && p->memory <= c->ws_limit &&
         wk_math_ok(c, p->math) && (!c->deterministic || p->determinism == CUDNN_DETERMINISTIC);
}

/* Whether the caller passes over algorithm `algo` (wk_conv_choice.skip). */
static bool wk_skipped(const wk_conv_choice *c, int algo) {
  return algo >= 0 && algo < 32 && (c->skip >> algo & 1u);
}

static wk_conv_algo wk_algo_of(const wk_algo_perf *p) {
  return (wk_conv_algo){.algo = p->algo, .math = p->math, .ws_bytes = p->memory};
}

/* cuDNN's heuristic ranking of direction d, best first. */
static wk_status wk_rank_heuristic(const wk_conv_choice *c, wk_conv_dir d, wk_algo_perf *out,
                                   int *got) {
  *got = 0;
  switch (d) {
  case WK_CONV_FWD: {
    cudnnConvolutionFwdAlgoPerf_t p[WK_ALGO_MAX];
    WK_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(c->cudnn, c->x, c->w, c->conv, c->y,
                                                        WK_ALGO_MAX, got, p));
    WK_PERF_TAKE(out, p, *got);
    return WK_OK;
  }
  case WK_CONV_BWD_DATA: {
    cudnnConvolutionBwdDataAlgoPerf_t p[WK_ALGO_MAX];
    WK_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->cudnn, c->w, c->y, c->conv, c->x,
                                                             WK_ALGO_MAX, got, p));
    WK_PERF_TAKE(out, p, *got);
    return WK_OK;
  }
  case WK_CONV_BWD_FILTER: {
    cudnnConvolutionBwdFilterAlgoPerf_t p[WK_ALGO_MAX];
    WK_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->cudnn, c->x, c->y, c->conv,
                                                               c->w, WK_ALGO_MAX, got, p));
    WK_PERF_TAKE(out, p, *got);
    return WK_OK;
  }
  }
  return wk_fail(WK_ERR_INVALID_ARG, "GPU: no convolution direction %d", (int)d);
}

/* cuDNN's measured ranking of direction d within the workspace (ws, n_bytes).
 * Returns cuDNN's status: the caller decides which failures to work around. */
static cudnnStatus_t wk_rank_timed(const wk_conv_choice *c, wk_conv_dir d, void *ws,
                                   size_t n_bytes, wk_algo_perf *out, int *got) {
  *got = 0;
  cudnnStatus_t s = CUDNN_STATUS_BAD_PARAM;
  switch (d) {
  case WK_CONV_FWD: {
    cudnnConvolutionFwdAlgoPerf_t p[WK_ALGO_MAX];
    s = cudnnFindConvolutionForwardAlgorithmEx(c->cudnn, c->x, c->x_data, c->w, c->w_data,
                                               c->conv, c->y, c->y_data, WK_ALGO_MAX, got, p, ws,
                                               n_bytes);
    if (s == CUDNN_STATUS_SUCCESS) WK_PERF_TAKE(out, p, *got);
    break;
  }
  case WK_CONV_BWD_DATA: {
    cudnnConvolutionBwdDataAlgoPerf_t p[WK_ALGO_MAX];
    s = cudnnFindConvolutionBackwardDataAlgorithmEx(c->cudnn, c->w, c->w_data, c->y, c->dy_data,
                                                    c->conv, c->x, c->dx_data, WK_ALGO_MAX, got,
                                                    p, ws, n_bytes);
    if (s == CUDNN_STATUS_SUCCESS) WK_PERF_TAKE(out, p, *got);
    break;
  }
  case WK_CONV_BWD_FILTER: {
    cudnnConvolutionBwdFilterAlgoPerf_t p[WK_ALGO_MAX];
    s = cudnnFindConvolutionBackwardFilterAlgorithmEx(c->cudnn, c->x, c->x_data, c->y, c->dy_data,
                                                      c->conv, c->w, c->dw_data, WK_ALGO_MAX, got,
                                                      p, ws, n_bytes);
    if (s == CUDNN_STATUS_SUCCESS) WK_PERF_TAKE(out, p, *got);
    break;
  }
  }
  if (s != CUDNN_STATUS_SUCCESS) *got = 0;
  return s;
}

/* cuDNN's workspace for algorithm p of direction d with p's math type, into
 * *bytes; *ok false when cuDNN refuses that algorithm for these descriptors.
 * The descriptor's math type is put back. The heuristics rank by a model: an
 * entry can say SUCCESS for an algorithm the call then refuses, or state less
 * workspace than the call asks for, and the workspace query is the call's own
 * check (a timed entry ran, so it needs none). */
static wk_status wk_ws_query(const wk_conv_choice *c, wk_conv_dir d, const wk_algo_perf *p,
                             size_t *bytes, bool *ok) {
  *bytes = 0;
  *ok = false;
  cudnnMathType_t was;
  WK_CUDNN_TRY(cudnnGetConvolutionMathType(c->conv, &was));
  WK_CUDNN_TRY(cudnnSetConvolutionMathType(c->conv, p->math));
  cudnnStatus_t s = CUDNN_STATUS_BAD_PARAM;
  switch (d) {
  case WK_CONV_FWD:
    s = cudnnGetConvolutionForwardWorkspaceSize(c->cudnn, c->x, c->w, c->conv, c->y,
                                                (cudnnConvolutionFwdAlgo_t)p->algo, bytes);
    break;
  case WK_CONV_BWD_DATA:
    s = cudnnGetConvolutionBackwardDataWorkspaceSize(c->cudnn, c->w, c->y, c->conv, c->x,
                                                     (cudnnConvolutionBwdDataAlgo_t)p->algo,
                                                     bytes);
    break;
  case WK_CONV_BWD_FILTER:
    s = cudnnGetConvolutionBackwardFilterWorkspaceSize(c->cudnn, c->x, c->y, c->conv, c->w,
                                                       (cudnnConvolutionBwdFilterAlgo_t)p->algo,
                                                       bytes);
    break;
  }
  char detail[256] = "";
  if (s != CUDNN_STATUS_SUCCESS) cudnnGetLastErrorString(detail, sizeof detail);
  WK_CUDNN_TRY(cudnnSetConvolutionMathType(c->conv, was));
  if (CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED) return WK_OK;
  if (s != CUDNN_STATUS_SUCCESS)
    return wk_fail(WK_ERR_BACKEND, "cuDNN: the workspace of %s convolution algorithm %d "
                   "(cudnnGetConvolution*WorkspaceSize) failed at %s:%d: %s (%s)",
                   wk_dir_names[d], p->algo, __FILE__, __LINE__, cudnnGetErrorString(s), detail);
  *ok = true;
  return WK_OK;
}

/* The first usable entry of the heuristics' ranking p[0..got) that cuDNN's
 * workspace query accepts within the limit, with the larger of the two
 * workspaces, into *out; *found false when none is. Each entry skipped is
 * counted (wk_gpu_algo_stats.refused). */
static wk_status wk_heuristic_pick(const wk_conv_choice *c, wk_conv_dir d, const wk_algo_perf *p,
                                   int got, wk_conv_algo *out, bool *found) {
  *found = false;
  for (int k = 0; k < got; k++) {
    if (!wk_usable(c, &p[k])) continue;
    if (wk_skipped(c, p[k].algo)) continue;
    size_t bytes = 0;
    bool ok = false;
    WK_TRY(wk_ws_query(c, d, &p[k], &bytes, &ok));
    if (!ok || bytes > c->ws_limit) {
      if (c->cache) wk_cache_count(c->cache, &c->cache->stats.refused);
      continue;
    }
    *out = wk_algo_of(&p[k]);
    if (bytes > out->ws_bytes) out->ws_bytes = bytes;
    *found = true;
    return WK_OK;
  }
  return WK_OK;
}

/* A failed timing to work around with the heuristics' choice: cuDNN cannot
 * time this case, or ran out of memory trying. */
static bool wk_timing_recoverable(cudnnStatus_t s) {
  return CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED ||
         s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
         s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
}

wk_status wk_conv_timing_workspace(const wk_conv_choice *c, size_t n_bytes, bool *room) {
  *room = true;
  if (n_bytes <= *c->ws_bytes) return WK_OK;
  WK_TRY(wk_cuda_free(*c->ws));
  *c->ws = NULL;
  *c->ws_bytes = 0;
  void *p = NULL;
  WK_TRY(wk_cuda_malloc_optional(&p, n_bytes, room));
  if (!*room) return WK_OK;
  *c->ws = p;
  *c->ws_bytes = n_bytes;
  return WK_OK;
}

/* Times direction d with a workspace of ws_need bytes: *ok and the fastest
 * usable algorithm in *out, or *ok false when the timing could not run or
 * found nothing usable; *for_good then says whether that holds for the shape
 * (cuDNN cannot time it, or nothing timed is usable) rather than for now (no
 * memory for the timing). */
static wk_status wk_time(const wk_conv_choice *c, wk_conv_dir d, size_t ws_need,
                         wk_conv_algo *out, bool *ok, bool *for_good) {
  *ok = false;
  *for_good = false; /* no room for the timing now: another time may have it */
  bool room = false;
  WK_TRY(wk_conv_timing_workspace(c, ws_need, &room));
  if (!room) return WK_OK;
  wk_algo_perf p[WK_ALGO_MAX];
  int got = 0;
  cudnnStatus_t s = wk_rank_timed(c, d, *c->ws, *c->ws_bytes, p, &got);
  if (s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED) {
    /* cuDNN's own allocations do not go through the cache, which may hold the
     * room they need: give back what nothing uses and time once more */
    (void)cudaGetLastError();
    WK_CUDA_TRY(cudaStreamSynchronize(c->stream));
    WK_TRY(wk_cuda_cache_release());
    s = wk_rank_timed(c, d, *c->ws, *c->ws_bytes, p, &got);
  }
  char detail[256] = "";
  if (s != CUDNN_STATUS_SUCCESS) cudnnGetLastErrorString(detail, sizeof detail);
  /* a candidate that could not launch (out of resources) leaves its error in
   * the runtime, where the next kernel launcher would report it: consume it;
   * a fault (sticky) is not consumed, and the synchronisation reports it */
  (void)cudaGetLastError();
  WK_CUDA_TRY(cudaStreamSynchronize(c->stream));
  if (s != CUDNN_STATUS_SUCCESS) {
    *for_good = CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED;
    if (wk_timing_recoverable(s)) return WK_OK;
    return wk_fail(WK_ERR_BACKEND, "cuDNN: timing the %s convolution (cudnnFind*AlgorithmEx) "
                   "failed at %s:%d: %s (%s)", wk_dir_names[d], __FILE__, __LINE__,
                   cudnnGetErrorString(s), detail);
  }
  int best = -1;
  for (int k = 0; k < got; k++)
    if (wk_usable(c, &p[k]) && p[k].time_ms >= 0.0f && (best < 0 || p[k].time_ms < p[best].time_ms))
      best = k;
  if (best < 0) {
    *for_good = true; /* timed, and nothing usable */
    return WK_OK;
  }
  *out = wk_algo_of(&p[best]);
  *ok = true;
  return WK_OK;
}

/* ------------------------------------------------------------------ the choice */

wk_status wk_conv_choose(const wk_conv_choice *c, wk_conv_dir d, wk_conv_algo *out, bool *found,
                         bool *timed) {
  *found = false;
  *timed = false;
  wk_conv_key key;
  bool kept = false; /* a kept choice the caller passes over: the heuristics', untimed */
  if (c->find) {
    WK_TRY(wk_key_make(c, d, 0, &key));
    kept = wk_cache_get(c->cache, &key, out);
    if (kept && !wk_skipped(c, out->algo)) {
      wk_cache_reused(c->cache);
      *found = true;
      return WK_OK;
    }
  }
  wk_algo_perf p[WK_ALGO_MAX];
  int got = 0;
  WK_TRY(wk_rank_heuristic(c, d, p, &got));
  size_t ws_need = 0; /* timing's workspace: the largest usable candidate's */
  for (int k = 0; k < got; k++)
    if (wk_usable(c, &p[k]) && p[k].memory > ws_need) ws_need = p[k].memory;
  bool for_good = false;
  if (c->find && !kept) {
    bool ok = false;
    wk_conv_algo t;
    *timed = true;
    WK_TRY(wk_time(c, d, ws_need, &t, &ok, &for_good));
    if (ok) {
      wk_cache_put(c->cache, &key, &t, true);
      *out = t;
      *found = true;
      return WK_OK;
    }
    wk_cache_count(c->cache, &c->cache->stats.fell_back);
  }
  WK_TRY(wk_heuristic_pick(c, d, p, got, out, found));
  if (*found) {
    /* a shape cuDNN cannot time, or whose timing found nothing usable, keeps the
     * heuristic's choice: not timed (and the workspace grown and trimmed, the graphs
     * dropped) again at every change of batch. No room for the timing now is no reason:
     * the next time may have it */
    if (c->find && for_good) wk_cache_put(c->cache, &key, out, false);
  }
  return WK_OK;
}

/* ------------------------------------------------------------------ other kinds of choice */

wk_status wk_conv_kept(const wk_conv_choice *c, wk_conv_dir d, int variant, wk_conv_algo *out,
                       bool *hit) {
  *hit = false;
  if (!c->cache) return WK_OK;
  wk_conv_key key;
  WK_TRY(wk_key_make(c, d, variant, &key));
  *hit = wk_cache_get(c->cache, &key, out);
  if (*hit) wk_cache_reused(c->cache);
  return WK_OK;
}

wk_status wk_conv_keep(const wk_conv_choice *c, wk_conv_dir d, int variant, wk_conv_algo *v,
                       bool timed) {
  if (!c->cache) return WK_OK;
  wk_conv_key key;
  WK_TRY(wk_key_make(c, d, variant, &key));
  wk_cache_put(c->cache, &key, v, timed);
  return WK_OK;
}

void wk_cudaalgos_count(wk_gpu_algos *a, wk_algo_event e) {
  if (!a) return;
  switch (e) {
  case WK_ALGO_FELL_BACK: wk_cache_count(a, &a->stats.fell_back); break;
  case WK_ALGO_REFUSED: wk_cache_count(a, &a->stats.refused); break;
  case WK_ALGO_EXEC_REFUSED: wk_cache_count(a, &a->stats.exec_refused); break;
  }
}
