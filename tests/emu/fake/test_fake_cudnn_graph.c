/* test_fake_cudnn_graph.c - the fake backend (graph) API of
 * fake_cudnn_graph.c against the fake legacy calls of fake_cudnn.c: each
 * engine's convolution, in the three directions, is the legacy call's result
 * bit for bit (engine 3's on inputs rounded to fp16, the caller's buffers
 * untouched); the engine table (ranks, notes, workspace, refusals) is as
 * fake_cudnn_graph.c documents it; and a sample of the refusals return their
 * statuses. Each case prints what it saw. */
#include <cudnn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

static int failures;

static void expect(const char *what, long long got, long long want) {
  printf("%-74s %lld (want %lld)\n", what, got, want);
  if (got != want) failures++;
}

#define CK(x) ck((x), #x, __LINE__)
static void ck(cudnnStatus_t s, const char *what, int line) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  char m[512];
  cudnnGetLastErrorString(m, sizeof m);
  printf("line %d: %s: %s (%s)\n", line, what, cudnnGetErrorString(s), m);
  exit(1);
}

static void rt(cudaError_t e) {
  if (e != cudaSuccess) {
    printf("CUDA runtime: %s\n", cudaGetErrorName(e));
    exit(1);
  }
}

static cudnnHandle_t handle;

/* ------------------------------------------------------------------ builders */

typedef cudnnBackendDescriptor_t bd;

static bd make(cudnnBackendDescriptorType_t t) {
  bd d = NULL;
  CK(cudnnBackendCreateDescriptor(t, &d));
  return d;
}

static void set(bd d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t, int64_t n,
                const void *v) {
  CK(cudnnBackendSetAttribute(d, a, t, n, v));
}

/* An NHWC float tensor (dims N, C, H, W), finalized. */
static bd tensor(int64_t uid, const int64_t *dims) {
  const int64_t strides[4] = {dims[1] * dims[2] * dims[3], 1, dims[3] * dims[1], dims[1]};
  const cudnnDataType_t f = CUDNN_DATA_FLOAT;
  const int64_t align = 4;
  bd t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f);
  set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
  set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
  set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
  CK(cudnnBackendFinalize(t));
  return t;
}

/* One convolution's shapes: x N, C, H, W; w K, C / groups, R, S; pad 1,
 * stride 1, cross-correlation. */
typedef struct shape {
  int64_t x[4], w[4], y[4];
} shape;

static shape shape_of(int64_t n, int64_t c, int64_t hw, int64_t k, int64_t rs, int64_t groups) {
  const int64_t o = hw + 2 - rs + 1;
  return (shape){{n, c, hw, hw}, {k, c / groups, rs, rs}, {n, k, o, o}};
}

static const cudnnBackendDescriptorType_t op_type[3] = {
    CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
    CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
    CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR};
/* alpha, beta, conv, then x-side, w, y-side */
static const cudnnBackendAttributeName_t op_attr[3][6] = {
    {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY}};

static const float alpha = 1.5f, beta = 0.5f;

/* A finalized graph of direction d on shape s (tensor ids 1 x, 2 w, 3 y).
 * Every source descriptor is destroyed before returning: the fake copies. */
static bd graph(int d, const shape *s, int64_t pad) {
  bd x = tensor(1, s->x), w = tensor(2, s->w), y = tensor(3, s->y);
  bd conv = make(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const int64_t dims = 2, pads[2] = {pad, pad}, ones[2] = {1, 1};
  set(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
  set(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  set(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
  set(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pads);
  set(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pads);
  set(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, ones);
  set(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, ones);
  CK(cudnnBackendFinalize(conv));
  bd op = make(op_type[d]);
  const bd ts[3] = {x, w, y};
  set(op, op_attr[d][0], CUDNN_TYPE_FLOAT, 1, &alpha);
  set(op, op_attr[d][1], CUDNN_TYPE_FLOAT, 1, &beta);
  set(op, op_attr[d][2], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv);
  for (int i = 0; i < 3; i++) set(op, op_attr[d][3 + i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &ts[i]);
  CK(cudnnBackendFinalize(op));
  bd g = make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  set(g, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op);
  set(g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  CK(cudnnBackendFinalize(g));
  const bd gone[6] = {x, w, y, conv, op, NULL};
  for (int i = 0; gone[i]; i++) CK(cudnnBackendDestroyDescriptor(gone[i]));
  return g;
}

/* The heuristics' engine indices (mode m) into idx; their count. */
static int heuristics(bd g, cudnnBackendHeurMode_t m, int64_t *idx) {
  bd h = make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  set(h, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g);
  set(h, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &m);
  CK(cudnnBackendFinalize(h));
  int64_t n = -1, got = -1;
  CK(cudnnBackendGetAttribute(h, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                              &n, NULL));
  bd cfg[8];
  for (int64_t i = 0; i < n; i++) cfg[i] = make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
  if (n > 0)
    CK(cudnnBackendGetAttribute(h, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                n, &got, cfg));
  CK(cudnnBackendDestroyDescriptor(h));
  for (int64_t i = 0; i < n; i++) {
    bd e = make(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    CK(cudnnBackendGetAttribute(cfg[i], CUDNN_ATTR_ENGINECFG_ENGINE,
                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &got, &e));
    CK(cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &got,
                                &idx[i]));
    CK(cudnnBackendDestroyDescriptor(e));
    CK(cudnnBackendDestroyDescriptor(cfg[i]));
  }
  return (int)n;
}

/* Engine `index`'s numerical notes as a bit set. */
static int notes(bd g, int64_t index) {
  bd e = make(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  set(e, CUDNN_ATTR_ENGINE_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g);
  set(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &index);
  CK(cudnnBackendFinalize(e));
  cudnnBackendNumericalNote_t v[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t n = -1, nb = -1;
  CK(cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                              CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n, v));
  CK(cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE, 0, &nb,
                              NULL));
  CK(cudnnBackendDestroyDescriptor(e));
  int bits = nb > 0 ? 1 << 30 : 0;
  for (int64_t i = 0; i < n; i++) bits |= 1 << v[i];
  return bits;
}

/* A plan of engine `index` (its Finalize's status in *st; NULL if it failed). */
static bd plan(bd g, int64_t index, cudnnStatus_t *st, int64_t *ws) {
  bd e = make(CUDNN_BACKEND_ENGINE_DESCRIPTOR), cfg = make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
  set(e, CUDNN_ATTR_ENGINE_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g);
  set(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &index);
  CK(cudnnBackendFinalize(e));
  set(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &e);
  CK(cudnnBackendFinalize(cfg));
  bd p = make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
  set(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  set(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg);
  CK(cudnnBackendDestroyDescriptor(e));
  CK(cudnnBackendDestroyDescriptor(cfg));
  *st = cudnnBackendFinalize(p);
  if (*st != CUDNN_STATUS_SUCCESS) {
    CK(cudnnBackendDestroyDescriptor(p));
    return NULL;
  }
  CK(cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                              NULL, ws));
  return p;
}

static bd pack(void *x, void *w, void *y, void *ws) {
  const int64_t uids[3] = {1, 2, 3};
  void *ptrs[3] = {x, w, y};
  bd v = make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  set(v, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids);
  set(v, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, ptrs);
  set(v, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
  CK(cudnnBackendFinalize(v));
  return v;
}

/* ------------------------------------------------------------------ data */

static size_t count(const int64_t *d) { return (size_t)(d[0] * d[1] * d[2] * d[3]); }

static float *dev_random(size_t n, unsigned seed) {
  float *h = malloc(n * sizeof *h), *d = NULL;
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    h[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f + 1.0f / 3.0f;
  }
  rt(cudaMalloc((void **)&d, n * sizeof *d));
  rt(cudaMemcpy(d, h, n * sizeof *h, cudaMemcpyHostToDevice));
  free(h);
  return d;
}

static float *dev_copy(const float *src, size_t n, int to_f16) {
  float *h = malloc(n * sizeof *h), *d = NULL;
  rt(cudaMemcpy(h, src, n * sizeof *h, cudaMemcpyDeviceToHost));
  for (size_t i = 0; to_f16 && i < n; i++) {
    uint16_t b;
    wk_fake_store(&b, WK_FAKE_F16, 0, h[i]);
    h[i] = (float)wk_fake_load(&b, WK_FAKE_F16, 0);
  }
  rt(cudaMalloc((void **)&d, n * sizeof *d));
  rt(cudaMemcpy(d, h, n * sizeof *h, cudaMemcpyHostToDevice));
  free(h);
  return d;
}

static int same(const float *a, const float *b, size_t n) {
  float *ha = malloc(n * sizeof *ha), *hb = malloc(n * sizeof *hb);
  rt(cudaMemcpy(ha, a, n * sizeof *ha, cudaMemcpyDeviceToHost));
  rt(cudaMemcpy(hb, b, n * sizeof *hb, cudaMemcpyDeviceToHost));
  const int r = memcmp(ha, hb, n * sizeof *ha) == 0;
  free(ha);
  free(hb);
  return r;
}

/* The legacy call of direction d on the same shape (NHWC), out = alpha op + beta out. */
static void legacy(int d, const shape *s, int64_t pad, const float *x, const float *w, float *y) {
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  CK(cudnnCreateTensorDescriptor(&xd));
  CK(cudnnCreateTensorDescriptor(&yd));
  CK(cudnnCreateFilterDescriptor(&wd));
  CK(cudnnCreateConvolutionDescriptor(&cd));
  CK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)s->x[0],
                                (int)s->x[1], (int)s->x[2], (int)s->x[3]));
  CK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, (int)s->y[0],
                                (int)s->y[1], (int)s->y[2], (int)s->y[3]));
  CK(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, (int)s->w[0],
                                (int)s->w[1], (int)s->w[2], (int)s->w[3]));
  CK(cudnnSetConvolution2dDescriptor(cd, (int)pad, (int)pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                     CUDNN_DATA_FLOAT));
  CK(cudnnSetConvolutionGroupCount(cd, (int)(s->x[1] / s->w[1])));
  if (d == 0)
    CK(cudnnConvolutionForward(handle, &alpha, xd, x, wd, w, cd,
                               CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &beta, yd, y));
  else if (d == 1)
    CK(cudnnConvolutionBackwardData(handle, &alpha, wd, w, yd, y, cd,
                                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, NULL, 0, &beta, xd,
                                    (void *)(uintptr_t)x));
  else
    CK(cudnnConvolutionBackwardFilter(handle, &alpha, xd, x, yd, y, cd,
                                      CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, NULL, 0, &beta, wd,
                                      (void *)(uintptr_t)w));
  CK(cudnnDestroyTensorDescriptor(xd));
  CK(cudnnDestroyTensorDescriptor(yd));
  CK(cudnnDestroyFilterDescriptor(wd));
  CK(cudnnDestroyConvolutionDescriptor(cd));
}

/* Every heuristics engine of direction d on shape s against the legacy
 * call: the output equals it bit for bit (engine 3: the legacy call on
 * inputs rounded to fp16), the inputs are unchanged. */
static void check_direction(int d, const shape *s, const char *name) {
  static const char *const dn[3] = {"forward", "backward data", "backward filter"};
  const size_t nx = count(s->x), nw = count(s->w), ny = count(s->y);
  const size_t n_out = d == 0 ? ny : d == 1 ? nx : nw;
  float *x = dev_random(nx, 1), *w = dev_random(nw, 2), *y = dev_random(ny, 3);
  float *out0 = d == 0 ? y : d == 1 ? x : w; /* the output's first contents */
  bd g = graph(d, s, 1);
  int64_t idx[8];
  const int n = heuristics(g, CUDNN_HEUR_MODE_INSTANT, idx);
  char what[160];
  for (int i = 0; i < n; i++) {
    cudnnStatus_t st;
    int64_t ws_bytes = -1;
    bd p = plan(g, idx[i], &st, &ws_bytes);
    const int refuses = idx[i] == 2 && (s->w[2] == 1 || s->x[1] != s->w[1]);
    snprintf(what, sizeof what, "%s %s: engine %lld's plan finalizes", dn[d], name,
             (long long)idx[i]);
    expect(what, st, refuses ? CUDNN_STATUS_NOT_SUPPORTED_SHAPE : CUDNN_STATUS_SUCCESS);
    if (!p) continue;
    const int f16 = idx[i] == 3;
    /* the graph's run and the legacy one, each on its own copies */
    float *gx = dev_copy(x, nx, 0), *gw = dev_copy(w, nw, 0), *gy = dev_copy(y, ny, 0);
    float *lx = dev_copy(x, nx, f16), *lw = dev_copy(w, nw, f16), *ly = dev_copy(y, ny, f16);
    float *g_out = d == 0 ? gy : d == 1 ? gx : gw, *l_out = d == 0 ? ly : d == 1 ? lx : lw;
    rt(cudaMemcpy(l_out, out0, n_out * sizeof(float), cudaMemcpyDeviceToDevice)); /* beta's */
    void *ws = NULL;
    if (ws_bytes) rt(cudaMalloc(&ws, (size_t)ws_bytes));
    bd v = pack(gx, gw, gy, ws);
    CK(cudnnBackendExecute(handle, p, v));
    legacy(d, s, 1, lx, lw, ly);
    rt(cudaDeviceSynchronize());
    snprintf(what, sizeof what, "%s %s: engine %lld equals the legacy call%s", dn[d], name,
             (long long)idx[i], f16 ? " on fp16 inputs" : "");
    expect(what, same(g_out, l_out, n_out), 1);
    const int inputs_kept = (d == 0 || same(gy, y, ny)) && (d == 1 || same(gx, x, nx)) &&
                            (d == 2 || same(gw, w, nw));
    snprintf(what, sizeof what, "%s %s: engine %lld leaves its inputs", dn[d], name,
             (long long)idx[i]);
    expect(what, inputs_kept, 1);
    if (f16) {
      float *rx = dev_copy(x, nx, 0), *rw = dev_copy(w, nw, 0), *ry = dev_copy(y, ny, 0);
      float *r_out = d == 0 ? ry : d == 1 ? rx : rw;
      legacy(d, s, 1, rx, rw, ry);
      rt(cudaDeviceSynchronize());
      snprintf(what, sizeof what, "%s %s: engine 3 differs from the exact reference", dn[d], name);
      expect(what, same(g_out, r_out, n_out), 0);
      rt(cudaFree(rx));
      rt(cudaFree(rw));
      rt(cudaFree(ry));
    }
    CK(cudnnBackendDestroyDescriptor(v));
    CK(cudnnBackendDestroyDescriptor(p));
    const float *fr[7] = {gx, gw, gy, lx, lw, ly, ws};
    for (int k = 0; k < 7; k++)
      if (fr[k]) rt(cudaFree((void *)(uintptr_t)fr[k]));
  }
  CK(cudnnBackendDestroyDescriptor(g));
  rt(cudaFree(x));
  rt(cudaFree(w));
  rt(cudaFree(y));
}

/* ------------------------------------------------------------------ main */

int main(void) {
  rt(cudaSetDevice(0));
  CK(cudnnCreate(&handle));
  const shape plain = shape_of(2, 4, 5, 6, 3, 1), grouped = shape_of(2, 4, 5, 6, 3, 2),
              pointwise = shape_of(2, 4, 5, 6, 1, 1);

  /* the engine table */
  for (int d = 0; d < 3; d++) {
    bd g = graph(d, &plain, 1);
    int64_t idx[8];
    int n = heuristics(g, CUDNN_HEUR_MODE_INSTANT, idx);
    char what[128];
    snprintf(what, sizeof what, "direction %d: INSTANT ranks 3, 0, 1, 2 (as digits)", d);
    expect(what, n == 4 ? idx[0] * 1000 + idx[1] * 100 + idx[2] * 10 + idx[3] : -1, 3012);
    n = heuristics(g, CUDNN_HEUR_MODE_B, idx);
    snprintf(what, sizeof what, "direction %d: B ranks 3, 0, 1, 2", d);
    expect(what, n == 4 ? idx[0] * 1000 + idx[1] * 100 + idx[2] * 10 + idx[3] : -1, 3012);
    n = heuristics(g, CUDNN_HEUR_MODE_FALLBACK, idx);
    snprintf(what, sizeof what, "direction %d: FALLBACK returns engine 4 alone", d);
    expect(what, n == 1 ? idx[0] : -1, 4);
    static const int want_notes[5] = {0, 1 << CUDNN_NUMERICAL_NOTE_TENSOR_CORE, 0,
                                      1 << CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS, 0};
    for (int e = 0; e < 5; e++) {
      snprintf(what, sizeof what, "direction %d: engine %d's notes", d, e);
      const int nondet = d == 2 && e == 0 ? 1 << CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC : 0;
      expect(what, notes(g, e), want_notes[e] | nondet);
    }
    const int64_t out = d == 0 ? 2 * 6 * 5 * 5 * 4 : d == 1 ? 2 * 4 * 5 * 5 * 4 : 6 * 4 * 9 * 4;
    const int64_t round = (out + 255) / 256 * 256;
    for (int e = 0; e < 5; e++) {
      cudnnStatus_t st;
      int64_t ws = -1;
      bd p = plan(g, e, &st, &ws);
      snprintf(what, sizeof what, "direction %d: engine %d's workspace", d, e);
      expect(what, ws, e == 1 ? round : e == 2 ? 4 * round : 0);
      if (p) CK(cudnnBackendDestroyDescriptor(p));
    }
    CK(cudnnBackendDestroyDescriptor(g));
  }

  /* results against the legacy calls */
  for (int d = 0; d < 3; d++) {
    check_direction(d, &plain, "3x3");
    check_direction(d, &grouped, "3x3 grouped");
    check_direction(d, &pointwise, "1x1");
  }

  /* refusals */
  bd g = graph(0, &plain, 1);
  cudnnStatus_t st;
  int64_t ws = 0;
  bd p0 = plan(g, 0, &st, &ws), p1 = plan(g, 1, &st, &ws);
  float *x = dev_random(count(plain.x), 4), *w = dev_random(count(plain.w), 5),
        *y = dev_random(count(plain.y), 6);
  bd v = pack(x, w, y, NULL);
  cudnnHandle_t other;
  CK(cudnnCreate(&other));
  expect("execute on another handle: BAD_PARAM", cudnnBackendExecute(other, p0, v),
         CUDNN_STATUS_BAD_PARAM);
  expect("execute engine 1 without its workspace: BAD_PARAM", cudnnBackendExecute(handle, p1, v),
         CUDNN_STATUS_BAD_PARAM);
  setenv("WK_FAKE_CUDNN_GRAPH_EXEC_REFUSES", "1", 1);
  expect("$WK_FAKE_CUDNN_GRAPH_EXEC_REFUSES: engine 0 refuses",
         cudnnBackendExecute(handle, p0, v), CUDNN_STATUS_NOT_SUPPORTED_SHAPE);
  unsetenv("WK_FAKE_CUDNN_GRAPH_EXEC_REFUSES");
  setenv("WK_FAKE_CUDNN_GRAPH_NO_ENGINES", "1", 1);
  int64_t idx[8];
  expect("$WK_FAKE_CUDNN_GRAPH_NO_ENGINES: INSTANT returns none",
         heuristics(g, CUDNN_HEUR_MODE_INSTANT, idx), 0);
  expect("$WK_FAKE_CUDNN_GRAPH_NO_ENGINES: FALLBACK returns none",
         heuristics(g, CUDNN_HEUR_MODE_FALLBACK, idx), 0);
  unsetenv("WK_FAKE_CUDNN_GRAPH_NO_ENGINES");
  {
    const int64_t uids[4] = {1, 2, 3, 9};
    void *ptrs[4] = {x, w, y, y};
    void *none = NULL;
    bd extra = make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    set(extra, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 4, uids);
    set(extra, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 4, ptrs);
    set(extra, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &none);
    CK(cudnnBackendFinalize(extra));
    expect("execute with an id the graph lacks: BAD_PARAM", cudnnBackendExecute(handle, p0, extra),
           CUDNN_STATUS_BAD_PARAM);
    CK(cudnnBackendDestroyDescriptor(extra));
    bd mis = pack((char *)x + 2, w, y, NULL);
    expect("execute with a misaligned pointer: BAD_PARAM", cudnnBackendExecute(handle, p0, mis),
           CUDNN_STATUS_BAD_PARAM);
    CK(cudnnBackendDestroyDescriptor(mis));
  }
  {
    bd t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t uid = 1, dims3[3] = {1, 2, 3};
    set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    expect("a tensor without its data type: BAD_PARAM", cudnnBackendFinalize(t),
           CUDNN_STATUS_BAD_PARAM);
    expect("a 3-D tensor: NOT_SUPPORTED",
           cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 3, dims3),
           CUDNN_STATUS_NOT_SUPPORTED);
    expect("an INT32 unique id: BAD_PARAM",
           cudnnBackendSetAttribute(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT32, 1, &uid),
           CUDNN_STATUS_BAD_PARAM);
    expect("a convolution's attribute on a tensor: BAD_PARAM",
           cudnnBackendSetAttribute(t, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1,
                                    &uid),
           CUDNN_STATUS_BAD_PARAM);
    CK(cudnnBackendDestroyDescriptor(t));
    expect("setting a finalized graph: BAD_PARAM",
           cudnnBackendSetAttribute(g, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                    &handle),
           CUDNN_STATUS_BAD_PARAM);
    expect("finalizing twice: BAD_PARAM", cudnnBackendFinalize(g), CUDNN_STATUS_BAD_PARAM);
    bd pw = NULL;
    expect("a pointwise descriptor: NOT_SUPPORTED",
           cudnnBackendCreateDescriptor(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw),
           CUDNN_STATUS_NOT_SUPPORTED);
    bd e = make(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    const int64_t nine = 9;
    set(e, CUDNN_ATTR_ENGINE_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g);
    set(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &nine);
    expect("engine 9: NOT_SUPPORTED", cudnnBackendFinalize(e), CUDNN_STATUS_NOT_SUPPORTED);
    bd cfg = make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    expect("an engine not finalized as a value: BAD_PARAM",
           cudnnBackendSetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE,
                                    CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &e),
           CUDNN_STATUS_BAD_PARAM);
    CK(cudnnBackendDestroyDescriptor(e));
    CK(cudnnBackendDestroyDescriptor(cfg));
  }
  CK(cudnnBackendDestroyDescriptor(v));
  CK(cudnnBackendDestroyDescriptor(p0));
  CK(cudnnBackendDestroyDescriptor(p1));
  CK(cudnnBackendDestroyDescriptor(g));
  CK(cudnnDestroy(other));
  CK(cudnnDestroy(handle));
  rt(cudaFree(x));
  rt(cudaFree(w));
  rt(cudaFree(y));
  printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
  return failures ? 1 : 0;
}
