/* fake_cudnn_graph.c - a host fake of the part of cuDNN 9's backend (graph)
 * API that the GPU backend calls to run single convolutions (forward,
 * backward data, backward filter), under the real headers' declarations
 * (cudnn_graph.h), on fake_cudnn.c's convolution. See fake.h for what the
 * fakes can and cannot show.
 *
 * Implemented: cudnnBackendCreateDescriptor, cudnnBackendDestroyDescriptor,
 * cudnnBackendSetAttribute, cudnnBackendGetAttribute, cudnnBackendFinalize
 * and cudnnBackendExecute, for these descriptors (CUDNN_BACKEND_..._DESCRIPTOR)
 * and attributes (CUDNN_ATTR_...; "get" marks the read-only ones):
 *   TENSOR            TENSOR_DATA_TYPE, _DIMENSIONS, _STRIDES, _UNIQUE_ID,
 *                     _BYTE_ALIGNMENT (all required), _IS_VIRTUAL and
 *                     _IS_BY_VALUE false. Four dimensions, always in the
 *                     order N, C, H, W (a filter's: K, C per group, R, S); the
 *                     strides give the layout (NHWC: C's stride is 1)
 *   CONVOLUTION       CONVOLUTION_COMP_TYPE, _CONV_MODE, _SPATIAL_DIMS (2),
 *                     _DILATIONS, _FILTER_STRIDES, _PRE_PADDINGS,
 *                     _POST_PADDINGS (all required; pre and post equal)
 *   OPERATION_CONVOLUTION_FORWARD, _BACKWARD_DATA, _BACKWARD_FILTER
 *                     OPERATION_CONVOLUTION_{FORWARD,BWD_DATA,BWD_FILTER}_
 *                     ALPHA, _BETA (FLOAT or DOUBLE), _CONV_DESC and the
 *                     three tensors: X, W, Y; W, DX, DY; DW, X, DY (all
 *                     required)
 *   OPERATIONGRAPH    OPERATIONGRAPH_OPS (one operation), _HANDLE (both
 *                     required); get _ENGINE_GLOBAL_COUNT
 *   ENGINEHEUR        ENGINEHEUR_OPERATION_GRAPH, _MODE (INSTANT, A, B or
 *                     FALLBACK; both required); get _RESULTS into ENGINECFG
 *                     descriptors the caller created
 *   ENGINE            ENGINE_OPERATION_GRAPH, _GLOBAL_INDEX (both required);
 *                     get _GLOBAL_INDEX, _NUMERICAL_NOTE, _BEHAVIOR_NOTE
 *   ENGINECFG         ENGINECFG_ENGINE (required; also a get, into an ENGINE
 *                     descriptor the caller created, which then reads as
 *                     finalized), _KNOB_CHOICES (none, set or get)
 *   EXECUTION_PLAN    EXECUTION_PLAN_HANDLE, _ENGINE_CONFIG (both required);
 *                     get _WORKSPACE_SIZE
 *   VARIANT_PACK      VARIANT_PACK_UNIQUE_IDS, _DATA_POINTERS (as many),
 *                     _WORKSPACE (NULL where the plan needs none; all
 *                     required)
 * cudnnBackendExecute(handle, plan, pack) enqueues the convolution on the
 * handle's stream: out = alpha * op + beta * out (beta 0: out not read).
 *
 * The engines, which tests rely on. Every operation graph has the five
 * below, global indices 0 to 4 (OPERATIONGRAPH_ENGINE_GLOBAL_COUNT 5). The
 * heuristics of modes INSTANT, A and B return 3, 0, 1, 2 in that rank order;
 * FALLBACK returns 4 alone. All compute fake_cudnn.c's exact reference (in
 * double, rounded once into the output), but for engine 3; they differ in
 * their notes, workspace and refusals. "Output": y forward, dx backward
 * data, dw backward filter; its bytes are wk_fake_tensor_bytes'.
 *   index  numerical notes              workspace                 refuses
 *   3      DOWN_CONVERT_INPUTS          0                         -
 *   0      none; NONDETERMINISTIC for   0                         -
 *          backward filter
 *   1      TENSOR_CORE                  the output's bytes,       -
 *                                       rounded up to 256
 *   2      none                         4 x the output's bytes,   grouped, or a 1x1 filter: the
 *                                       rounded up to 256         plan's Finalize returns
 *                                                                 NOT_SUPPORTED_SHAPE
 *   4      none (FALLBACK's only)       0                         -
 * Engine 3 reads its inputs (x, w, dy) rounded to fp16 (IEEE half, round to
 * nearest even, through float), on its copies, never in the caller's
 * buffers: float32 results visibly differ from the reference, so a caller
 * that keeps DOWN_CONVERT_INPUTS engines is seen to. No engine has
 * behaviour notes or knobs; engine 0 is not really non-deterministic.
 *   $WK_FAKE_CUDNN_GRAPH_NO_ENGINES=1: the heuristics return no results, in
 *     every mode (a caller's "nothing usable" path).
 *   $WK_FAKE_CUDNN_GRAPH_EXEC_REFUSES=1: cudnnBackendExecute of a plan of
 *     engine 0 returns CUDNN_STATUS_NOT_SUPPORTED_SHAPE and does nothing.
 *   $WK_FAKE_CUDNN_GRAPH_BETA1_REFUSES=1: cudnnBackendExecute of a backward-data
 *     plan with beta other than 0 returns CUDNN_STATUS_NOT_SUPPORTED_SHAPE and
 *     does nothing, on every engine (a caller's "no engine adds" path).
 *   $WK_FAKE_CUDNN_GRAPH_MODE_A_REFUSES=1: finalizing a heuristics descriptor
 *     of mode A returns CUDNN_STATUS_NOT_SUPPORTED (the fallback list answers).
 *   $WK_FAKE_CUDNN_GRAPH_PLAN_FAILS=1: finalizing an execution plan returns
 *     CUDNN_STATUS_INTERNAL_ERROR (a failure other than a refusal).
 *   $WK_FAKE_CUDNN_GRAPH_INDEX_BASE=N (0 to 1000): the engines' global indices
 *     as read (CUDNN_ATTR_ENGINE_GLOBAL_INDEX) and as set are the table's plus N,
 *     as a cuDNN with many engines numbers them (a caller's bookkeeping of
 *     indices of 64 and more).
 *
 * Checked, each refusal returning its status with the reason kept for
 * cudnnGetLastErrorString (fake_cudnn.h's wk_fake_cudnn_fail):
 *  - CUDNN_STATUS_BAD_PARAM: a NULL descriptor or pointer argument; an
 *    attribute name that is not one of the descriptor type's ("not an
 *    attribute of"); a wrong element type or count; a value out of range
 *    (dimensions and strides below 1, an alignment not a power of two,
 *    negative paddings, dilations and filter strides below 1, an invalid
 *    enumerant); setting an attribute of a finalized descriptor, finalizing
 *    twice, getting from a descriptor not finalized; a descriptor given as a
 *    value that is of the wrong type or not finalized; a required attribute
 *    not set at Finalize (named); an operation whose shapes disagree, as the
 *    legacy calls check them (wk_fake_cudnn_conv_check: output size from the
 *    convolution formula, data types equal, groups = x's C / the filter's C,
 *    which must divide, K a multiple of the groups), with their statuses; a
 *    graph whose tensors share a unique id; a variant pack whose id and
 *    pointer counts differ or whose ids repeat; at execute, a handle other
 *    than the plan's (the real library ties a plan to its handle), a tensor
 *    of the graph missing from the pack or with a NULL pointer or one not
 *    aligned to its element size and its BYTE_ALIGNMENT, an id in the pack
 *    the graph lacks, a NULL workspace where the plan needs one.
 *  - CUDNN_STATUS_NOT_SUPPORTED: creating a descriptor type not above;
 *    tensors of other than 4 dimensions, of more than 2 Giga-elements or
 *    with a dimension or stride past INT32_MAX (the legacy descriptors' int);
 *    convolutions of other than 2 spatial dimensions, or with pre-paddings
 *    other than the post-paddings (the legacy descriptor pads symmetrically);
 *    graphs of more than one operation; an ENGINE of an index other than 0
 *    to 4; engine 2's refusal (NOT_SUPPORTED_SHAPE) and the execute refusal
 *    above; the legacy checks' NOT_SUPPORTED (a compute type other than FLOAT
 *    for FLOAT, HALF and BFLOAT16 data, or than DOUBLE for DOUBLE data; a
 *    forward output of the wrong size).
 *  - aborts (wk_fake_die), for what the real library's behaviour is
 *    undefined or this fake does not implement: a pointer that is no live
 *    descriptor (never created, or destroyed); data types other than FLOAT,
 *    HALF, BFLOAT16 and DOUBLE; HALF compute for HALF data; virtual or
 *    by-value tensors; knob choices; any other attribute of the types above
 *    (the message names it). When the work runs, fake_cudnn.c's checks:
 *    every extent lies in one live allocation (wk_fake_check_device),
 *    the workspace's as [ws, ws + the plan's workspace size), so a workspace
 *    too small is caught, and the work overwrites that workspace, as the
 *    legacy algorithms do; the output shares no bytes with an input or the
 *    workspace.
 *
 * Execution: cudnnBackendExecute validates now, then enqueues fake_cudnn.c's
 * work on the handle's stream exactly as the legacy calls do
 * (wk_fake_cudnn_conv_enqueue): it is captured into CUDA graphs and runs
 * lazily as they are, and checks the device extents when it runs.
 *
 * Lifetimes: a descriptor given as an attribute value is copied, contents
 * and all, when it is set (its own references were copied when they were
 * set; a heuristics result or a get of ENGINECFG_ENGINE is a copy too), so
 * this fake lets a caller destroy descriptors in any order. The real
 * library's rule for descriptors that reference others is not emulated
 * beyond that: a caller keeps the ones it references alive anyway.
 *
 * Not emulated: cudnnBackendInitialize (deprecated; absent), the device
 * properties, SM count targets and kernel caches, JSON serialization,
 * cudnnBackendPopulateCudaGraph/UpdateCudaGraph, intermediates, dynamic
 * shapes, the real engines' numerics and speed (only engine 3's
 * down-conversion is), a workspace's alignment. */
#if defined(__GNUC__)
/* CUDNN_ATTR_OPERATIONGRAPH_HANDLE and CUDNN_ATTR_EXECUTION_PLAN_HANDLE are
 * deprecated in cuDNN 9.19's headers, should CUDNN_WARN_DEPRECATED be defined */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_cudnn.h"

#define WK_LIB "cuDNN"
#define WK_BAD(...) wk_fake_cudnn_fail(CUDNN_STATUS_BAD_PARAM, __VA_ARGS__)
#define WK_UNSUP(...) wk_fake_cudnn_fail(CUDNN_STATUS_NOT_SUPPORTED, __VA_ARGS__)
#define WK_TRY(x)                                                                           \
  do {                                                                                      \
    const cudnnStatus_t s_ = (x);                                                           \
    if (s_ != CUDNN_STATUS_SUCCESS) return s_;                                              \
  } while (0)

enum { WK_ENGINE_COUNT = 5 }; /* global indices 0 to 4 */

/* ================================================================== names */

#define WK_N(x) \
  case x:       \
    return #x;

static const char *wk_type_name(int t) {
  switch (t) {
    WK_N(CUDNN_BACKEND_TENSOR_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_ENGINE_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)
    WK_N(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)
  }
  return "a descriptor type this fake does not create";
}

/* The attributes this fake reads or writes; others by number. */
static const char *wk_attr_name(int a) {
  switch (a) {
    WK_N(CUDNN_ATTR_TENSOR_DATA_TYPE)
    WK_N(CUDNN_ATTR_TENSOR_DIMENSIONS)
    WK_N(CUDNN_ATTR_TENSOR_STRIDES)
    WK_N(CUDNN_ATTR_TENSOR_UNIQUE_ID)
    WK_N(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT)
    WK_N(CUDNN_ATTR_TENSOR_IS_VIRTUAL)
    WK_N(CUDNN_ATTR_TENSOR_IS_BY_VALUE)
    WK_N(CUDNN_ATTR_CONVOLUTION_COMP_TYPE)
    WK_N(CUDNN_ATTR_CONVOLUTION_CONV_MODE)
    WK_N(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS)
    WK_N(CUDNN_ATTR_CONVOLUTION_DILATIONS)
    WK_N(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES)
    WK_N(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS)
    WK_N(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X)
    WK_N(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY)
    WK_N(CUDNN_ATTR_OPERATIONGRAPH_OPS)
    WK_N(CUDNN_ATTR_OPERATIONGRAPH_HANDLE)
    WK_N(CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT)
    WK_N(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH)
    WK_N(CUDNN_ATTR_ENGINEHEUR_MODE)
    WK_N(CUDNN_ATTR_ENGINEHEUR_RESULTS)
    WK_N(CUDNN_ATTR_ENGINE_OPERATION_GRAPH)
    WK_N(CUDNN_ATTR_ENGINE_GLOBAL_INDEX)
    WK_N(CUDNN_ATTR_ENGINE_NUMERICAL_NOTE)
    WK_N(CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE)
    WK_N(CUDNN_ATTR_ENGINECFG_ENGINE)
    WK_N(CUDNN_ATTR_ENGINECFG_KNOB_CHOICES)
    WK_N(CUDNN_ATTR_EXECUTION_PLAN_HANDLE)
    WK_N(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG)
    WK_N(CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)
    WK_N(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS)
    WK_N(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS)
    WK_N(CUDNN_ATTR_VARIANT_PACK_WORKSPACE)
  }
  return "the attribute";
}

static const char *wk_atype_name(int t) {
  switch (t) {
    WK_N(CUDNN_TYPE_HANDLE)
    WK_N(CUDNN_TYPE_DATA_TYPE)
    WK_N(CUDNN_TYPE_BOOLEAN)
    WK_N(CUDNN_TYPE_INT64)
    WK_N(CUDNN_TYPE_FLOAT)
    WK_N(CUDNN_TYPE_DOUBLE)
    WK_N(CUDNN_TYPE_VOID_PTR)
    WK_N(CUDNN_TYPE_CONVOLUTION_MODE)
    WK_N(CUDNN_TYPE_HEUR_MODE)
    WK_N(CUDNN_TYPE_NUMERICAL_NOTE)
    WK_N(CUDNN_TYPE_BACKEND_DESCRIPTOR)
    WK_N(CUDNN_TYPE_BEHAVIOR_NOTE)
  }
  return "another type";
}

#undef WK_N

/* Whether cudnn_graph.h lists attribute a under descriptor type t (each
 * type's attributes are a range of cudnnBackendAttributeName_t). */
static int wk_attr_of(int t, int a) {
  switch (t) {
  case CUDNN_BACKEND_TENSOR_DESCRIPTOR:
    return (a >= CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT && a <= CUDNN_ATTR_TENSOR_REORDERING_MODE) ||
           a == CUDNN_ATTR_TENSOR_RAGGED_OFFSET_DESC;
  case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR:
    return a >= CUDNN_ATTR_CONVOLUTION_COMP_TYPE && a <= CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS;
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
    return a >= CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA &&
           a <= CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y;
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
    return a >= CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA &&
           a <= CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY;
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
    return a >= CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA &&
           a <= CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY;
  case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR:
    return a >= CUDNN_ATTR_OPERATIONGRAPH_HANDLE && a <= CUDNN_ATTR_OPERATIONGRAPH_IS_SAME_TOPOLOGY;
  case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR:
    return a >= CUDNN_ATTR_ENGINEHEUR_MODE && a <= CUDNN_ATTR_ENGINEHEUR_DEVICEPROP;
  case CUDNN_BACKEND_ENGINE_DESCRIPTOR:
    return a >= CUDNN_ATTR_ENGINE_OPERATION_GRAPH &&
           a <= CUDNN_ATTR_ENGINE_DISABLE_CLUSTER_COOPERATIVE;
  case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
    return a >= CUDNN_ATTR_ENGINECFG_ENGINE && a <= CUDNN_ATTR_ENGINECFG_SHARED_MEMORY_USED;
  case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR:
    return a >= CUDNN_ATTR_EXECUTION_PLAN_HANDLE && a <= CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP;
  case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR:
    return (a >= CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS && a <= CUDNN_ATTR_VARIANT_PACK_WORKSPACE) ||
           (a >= CUDNN_ATTR_VARIANT_PACK_OVERRIDE_UNIQUE_IDS &&
            a <= CUDNN_ATTR_VARIANT_PACK_OVERRIDE_STRIDES);
  default: return 0;
  }
}

/* ================================================================== descriptors */

/* The descriptors' contents. A descriptor given as a value is copied in
 * whole (the nesting below), so none points at another. */

/* A 4-D tensor: dims N, C, H, W (a filter's K, C per group, R, S). */
typedef struct wk_tensor {
  cudnnDataType_t dtype;
  int64_t dims[4], strides[4];
  int64_t uid, align;
} wk_tensor;

typedef struct wk_conv {
  cudnnDataType_t comp;
  cudnnConvolutionMode_t mode;
  int64_t dil[2], stride[2], pre[2], post[2];
} wk_conv;

/* One convolution: x, w, y as fake_cudnn.h's directions name them (x or dx,
 * w or dw, y or dy); from Finalize, the legacy descriptors of them. */
typedef struct wk_op {
  wk_fake_conv_dir dir;
  double alpha, beta;
  wk_conv conv;
  wk_tensor w, x, y;
  struct cudnnTensorStruct xd, yd;
  struct cudnnFilterStruct wd;
  struct cudnnConvolutionStruct cd;
} wk_op;

typedef struct wk_graph {
  wk_op op;
  cudnnHandle_t handle;
} wk_graph;

typedef struct wk_heur {
  wk_graph graph;
  cudnnBackendHeurMode_t mode;
} wk_heur;

typedef struct wk_engine {
  wk_graph graph;
  int64_t index;
} wk_engine;

typedef struct wk_cfg {
  wk_engine engine;
} wk_cfg;

typedef struct wk_plan {
  wk_cfg cfg;
  cudnnHandle_t handle;
  size_t ws; /* from Finalize */
} wk_plan;

typedef struct wk_pack {
  int64_t n_uids, n_ptrs;
  int64_t *uids; /* owned */
  void **ptrs;   /* owned */
  void *ws;
} wk_pack;

/* A backend descriptor. `set` has bit (a % 100) for each attribute a set:
 * each type's attributes differ in that (see wk_attr_of's ranges). */
typedef struct wk_bd {
  cudnnBackendDescriptorType_t type;
  int finalized;
  uint64_t set;
  union {
    wk_tensor t;
    wk_conv c;
    wk_op op;
    wk_graph g;
    wk_heur h;
    wk_engine e;
    wk_cfg cfg;
    wk_plan p;
    wk_pack vp;
  } u;
} wk_bd;

#define WK_BIT(a) (UINT64_C(1) << ((int)(a) % 100))

/* The live descriptors, so that a stray or destroyed one is caught. */
static pthread_mutex_t wk_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static wk_bd **wk_reg;
static size_t wk_reg_n, wk_reg_cap;

static int wk_reg_add(wk_bd *d) {
  pthread_mutex_lock(&wk_reg_lock);
  if (wk_reg_n == wk_reg_cap) {
    const size_t cap = wk_reg_cap ? 2 * wk_reg_cap : 64;
    wk_bd **r = realloc(wk_reg, cap * sizeof *r);
    if (!r) {
      pthread_mutex_unlock(&wk_reg_lock);
      return 0;
    }
    wk_reg = r;
    wk_reg_cap = cap;
  }
  wk_reg[wk_reg_n++] = d;
  pthread_mutex_unlock(&wk_reg_lock);
  return 1;
}

/* Whether p is a live descriptor; with `remove`, it no longer is. */
static int wk_reg_has(const void *p, int remove) {
  int found = 0;
  pthread_mutex_lock(&wk_reg_lock);
  for (size_t i = 0; i < wk_reg_n && !found; i++)
    if (wk_reg[i] == p) {
      found = 1;
      if (remove) wk_reg[i] = wk_reg[--wk_reg_n];
    }
  pthread_mutex_unlock(&wk_reg_lock);
  return found;
}

/* p as a live descriptor. NULL is BAD_PARAM (what names it); any other
 * pointer that is none (never created, or destroyed) aborts: the real
 * library's behaviour is undefined there. */
static cudnnStatus_t wk_desc(const char *fn, const char *what, const void *p, wk_bd **out) {
  *out = NULL;
  if (!p) return WK_BAD("%s: %s is NULL", fn, what);
  if (!wk_reg_has(p, 0))
    wk_fake_die(WK_LIB, "%s: %s %p is no live backend descriptor (never created by "
                "cudnnBackendCreateDescriptor, or destroyed)", fn, what, p);
  *out = (wk_bd *)(uintptr_t)p;
  return CUDNN_STATUS_SUCCESS;
}

/* A descriptor given as a value: a live one of type t, finalized. */
static cudnnStatus_t wk_ref(const char *fn, const char *what, const void *p, int t,
                            wk_bd **out) {
  WK_TRY(wk_desc(fn, what, p, out));
  if ((int)(*out)->type != t)
    return WK_BAD("%s: %s is a %s, not a %s", fn, what, wk_type_name((int)(*out)->type),
                  wk_type_name(t));
  if (!(*out)->finalized)
    return WK_BAD("%s: %s (a %s) is not finalized", fn, what, wk_type_name(t));
  return CUDNN_STATUS_SUCCESS;
}

/* BAD_PARAM naming the first of the required attributes req[0..n) not set. */
static cudnnStatus_t wk_required(const char *fn, const wk_bd *d, const int *req, int n) {
  for (int i = 0; i < n; i++)
    if (!(d->set & WK_BIT(req[i])))
      return WK_BAD("%s: the required attribute %s (%d) is not set", fn, wk_attr_name(req[i]),
                    req[i]);
  return CUDNN_STATUS_SUCCESS;
}

/* A set's element type and count: want_n elements of type want (want_n < 0:
 * any count from 0, which the caller checks further). */
static cudnnStatus_t wk_elems(const char *fn, int a, cudnnBackendAttributeType_t type, int64_t n,
                              const void *arr, cudnnBackendAttributeType_t want, int64_t want_n) {
  if (type != want)
    return WK_BAD("%s: %s takes %s elements, not %s (%d)", fn, wk_attr_name(a),
                  wk_atype_name((int)want), wk_atype_name((int)type), (int)type);
  if (n < 0 || (want_n >= 0 && n != want_n))
    return WK_BAD("%s: %s takes %lld element(s), %lld given", fn, wk_attr_name(a),
                  (long long)want_n, (long long)n);
  if (n > 0 && !arr) return WK_BAD("%s: %s: arrayOfElements is NULL", fn, wk_attr_name(a));
  return CUDNN_STATUS_SUCCESS;
}

/* A get's element type and room: want elements, requested >= 0 of them
 * (at least `least`), into arr (non-NULL when requested > 0). */
static cudnnStatus_t wk_room(const char *fn, int a, cudnnBackendAttributeType_t type,
                             int64_t requested, const void *arr,
                             cudnnBackendAttributeType_t want, int64_t least) {
  if (type != want)
    return WK_BAD("%s: %s is of %s elements, not %s (%d)", fn, wk_attr_name(a),
                  wk_atype_name((int)want), wk_atype_name((int)type), (int)type);
  if (requested < least)
    return WK_BAD("%s: %s: requestedElementCount %lld, at least %lld needed", fn,
                  wk_attr_name(a), (long long)requested, (long long)least);
  if (requested > 0 && !arr) return WK_BAD("%s: %s: arrayOfElements is NULL", fn, wk_attr_name(a));
  return CUDNN_STATUS_SUCCESS;
}

/* An attribute of the type's in cudnn_graph.h that this fake lacks. */
static cudnnStatus_t wk_not_implemented(const char *fn, int a) {
  wk_fake_die(WK_LIB, "%s: attribute %d not implemented by this fake (fake_cudnn_graph.c "
              "lists what is)", fn, a);
}

/* A cudnnDataType_t value: an invalid enumerant is BAD_PARAM; a valid one
 * these fakes lack aborts (with `implemented`). */
static cudnnStatus_t wk_dtype(const char *fn, int a, cudnnDataType_t t, int implemented) {
  if ((int)t < CUDNN_DATA_FLOAT || (int)t > CUDNN_DATA_COMPLEX_FP64)
    return WK_BAD("%s: %s: %d is not a cudnnDataType_t", fn, wk_attr_name(a), (int)t);
  if (implemented && t != CUDNN_DATA_FLOAT && t != CUDNN_DATA_HALF && t != CUDNN_DATA_BFLOAT16 &&
      t != CUDNN_DATA_DOUBLE)
    wk_fake_die(WK_LIB, "%s: data type %d not implemented (FLOAT, HALF, BFLOAT16, DOUBLE only)",
                fn, (int)t);
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== tensors */

static cudnnStatus_t wk_set_tensor(const char *fn, wk_bd *d, int a,
                                   cudnnBackendAttributeType_t type, int64_t n, const void *arr) {
  wk_tensor *t = &d->u.t;
  switch (a) {
  case CUDNN_ATTR_TENSOR_DATA_TYPE: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_DATA_TYPE, 1));
    const cudnnDataType_t v = *(const cudnnDataType_t *)arr;
    WK_TRY(wk_dtype(fn, a, v, 1));
    t->dtype = v;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_TENSOR_DIMENSIONS:
  case CUDNN_ATTR_TENSOR_STRIDES: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_INT64, -1));
    if (n < 1 || n > CUDNN_DIM_MAX)
      return WK_BAD("%s: %s: %lld elements; a tensor has 1 to %d dimensions", fn,
                    wk_attr_name(a), (long long)n, CUDNN_DIM_MAX);
    if (n != 4)
      return WK_UNSUP("%s: %s: %lld dimensions; this fake's tensors have 4 (N, C, H, W)", fn,
                      wk_attr_name(a), (long long)n);
    const int64_t *v = arr;
    for (int i = 0; i < 4; i++) {
      if (v[i] < 1)
        return WK_BAD("%s: %s: element %d is %lld, not positive", fn, wk_attr_name(a), i,
                      (long long)v[i]);
      if (v[i] > INT32_MAX)
        return WK_UNSUP("%s: %s: element %d is %lld, past the legacy descriptors' int", fn,
                        wk_attr_name(a), i, (long long)v[i]);
    }
    memcpy(a == CUDNN_ATTR_TENSOR_DIMENSIONS ? t->dims : t->strides, v, sizeof t->dims);
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_TENSOR_UNIQUE_ID:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_INT64, 1));
    t->uid = *(const int64_t *)arr;
    return CUDNN_STATUS_SUCCESS;
  case CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_INT64, 1));
    const int64_t v = *(const int64_t *)arr;
    if (v < 1 || (v & (v - 1)))
      return WK_BAD("%s: %s: %lld is not a power of two", fn, wk_attr_name(a), (long long)v);
    t->align = v;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_TENSOR_IS_VIRTUAL:
  case CUDNN_ATTR_TENSOR_IS_BY_VALUE:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BOOLEAN, 1));
    if (*(const bool *)arr)
      wk_fake_die(WK_LIB, "%s: %s true not implemented (this fake's tensors are device data)",
                  fn, wk_attr_name(a));
    return CUDNN_STATUS_SUCCESS;
  default: return wk_not_implemented(fn, a);
  }
}

static cudnnStatus_t wk_finalize_tensor(const char *fn, wk_bd *d) {
  static const int req[] = {CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_ATTR_TENSOR_DIMENSIONS,
                            CUDNN_ATTR_TENSOR_STRIDES, CUDNN_ATTR_TENSOR_UNIQUE_ID,
                            CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT};
  WK_TRY(wk_required(fn, d, req, (int)(sizeof req / sizeof *req)));
  const int64_t *v = d->u.t.dims;
  if ((double)v[0] * v[1] * v[2] * v[3] > (double)INT32_MAX)
    return WK_UNSUP("%s: %lldx%lldx%lldx%lld exceeds 2 Giga-elements", fn, (long long)v[0],
                    (long long)v[1], (long long)v[2], (long long)v[3]);
  return CUDNN_STATUS_SUCCESS;
}

/* The legacy descriptor of a tensor (a filter's too: n = K, c = C per group,
 * h = R, w = S), for fake_cudnn.c. */
static struct cudnnTensorStruct wk_legacy_tensor(const wk_tensor *t) {
  return (struct cudnnTensorStruct){
      .set = 1, .dtype = t->dtype,
      .n = (int)t->dims[0], .c = (int)t->dims[1], .h = (int)t->dims[2], .w = (int)t->dims[3],
      .sn = (int)t->strides[0], .sc = (int)t->strides[1], .sh = (int)t->strides[2],
      .sw = (int)t->strides[3]};
}

/* The filter's format is only reported by the legacy getter; the strides
 * are what fake_cudnn.c reads. */
static struct cudnnFilterStruct wk_legacy_filter(const wk_tensor *t) {
  return (struct cudnnFilterStruct){
      .set = 1, .dtype = t->dtype,
      .format = t->strides[1] == 1 && t->dims[1] > 1 ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
      .k = (int)t->dims[0], .c = (int)t->dims[1], .r = (int)t->dims[2], .s = (int)t->dims[3],
      .sk = (int)t->strides[0], .sc = (int)t->strides[1], .sr = (int)t->strides[2],
      .ss = (int)t->strides[3]};
}

/* ================================================================== convolution */

static cudnnStatus_t wk_set_conv(const char *fn, wk_bd *d, int a,
                                 cudnnBackendAttributeType_t type, int64_t n, const void *arr) {
  wk_conv *c = &d->u.c;
  switch (a) {
  case CUDNN_ATTR_CONVOLUTION_COMP_TYPE: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_DATA_TYPE, 1));
    const cudnnDataType_t v = *(const cudnnDataType_t *)arr;
    WK_TRY(wk_dtype(fn, a, v, 0)); /* the operation's Finalize checks the pairing */
    c->comp = v;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_CONVOLUTION_CONV_MODE: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_CONVOLUTION_MODE, 1));
    const cudnnConvolutionMode_t v = *(const cudnnConvolutionMode_t *)arr;
    if (v != CUDNN_CONVOLUTION && v != CUDNN_CROSS_CORRELATION)
      return WK_BAD("%s: %s: %d is not a cudnnConvolutionMode_t", fn, wk_attr_name(a), (int)v);
    c->mode = v;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_INT64, 1));
    const int64_t v = *(const int64_t *)arr;
    if (v < 1 || v > CUDNN_DIM_MAX - 2)
      return WK_BAD("%s: %s: %lld spatial dimensions (1 to %d)", fn, wk_attr_name(a),
                    (long long)v, CUDNN_DIM_MAX - 2);
    if (v != 2)
      return WK_UNSUP("%s: %s: %lld; this fake's convolutions are 2-D", fn, wk_attr_name(a),
                      (long long)v);
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_CONVOLUTION_DILATIONS:
  case CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES:
  case CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS:
  case CUDNN_ATTR_CONVOLUTION_POST_PADDINGS: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_INT64, -1));
    if (n < 1 || n > CUDNN_DIM_MAX - 2)
      return WK_BAD("%s: %s: %lld elements, one per spatial dimension (1 to %d)", fn,
                    wk_attr_name(a), (long long)n, CUDNN_DIM_MAX - 2);
    if (n != 2)
      return WK_UNSUP("%s: %s: %lld elements; this fake's convolutions are 2-D", fn,
                      wk_attr_name(a), (long long)n);
    const int pad = a == CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS ||
                    a == CUDNN_ATTR_CONVOLUTION_POST_PADDINGS;
    const int64_t *v = arr;
    for (int i = 0; i < 2; i++) {
      if (v[i] < (pad ? 0 : 1))
        return WK_BAD("%s: %s: element %d is %lld, %s", fn, wk_attr_name(a), i, (long long)v[i],
                      pad ? "negative" : "not positive");
      if (v[i] > INT32_MAX)
        return WK_UNSUP("%s: %s: element %d is %lld, past the legacy descriptor's int", fn,
                        wk_attr_name(a), i, (long long)v[i]);
    }
    int64_t *dst = a == CUDNN_ATTR_CONVOLUTION_DILATIONS        ? c->dil
                   : a == CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES ? c->stride
                   : a == CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS   ? c->pre
                                                                : c->post;
    memcpy(dst, v, 2 * sizeof *v);
    return CUDNN_STATUS_SUCCESS;
  }
  default: return wk_not_implemented(fn, a);
  }
}

static cudnnStatus_t wk_finalize_conv(const char *fn, wk_bd *d) {
  static const int req[] = {CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_ATTR_CONVOLUTION_CONV_MODE,
                            CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS,
                            CUDNN_ATTR_CONVOLUTION_DILATIONS,
                            CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES,
                            CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS,
                            CUDNN_ATTR_CONVOLUTION_POST_PADDINGS};
  WK_TRY(wk_required(fn, d, req, (int)(sizeof req / sizeof *req)));
  const wk_conv *c = &d->u.c;
  if (c->pre[0] != c->post[0] || c->pre[1] != c->post[1])
    return WK_UNSUP("%s: pre-paddings %lld, %lld differ from post-paddings %lld, %lld (this "
                    "fake's convolution pads symmetrically)",
                    fn, (long long)c->pre[0], (long long)c->pre[1], (long long)c->post[0],
                    (long long)c->post[1]);
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== operations */

static int wk_is_op(int t) {
  return t == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR ||
         t == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR ||
         t == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR;
}

static wk_fake_conv_dir wk_op_dir(int t) {
  switch (t) {
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR: return WK_FAKE_CONV_FWD;
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR: return WK_FAKE_CONV_BWD_DATA;
  default: return WK_FAKE_CONV_BWD_FILTER;
  }
}

/* The first of a direction's six attributes; each direction's come in the
 * order ALPHA, BETA, CONV_DESC, then the filter, the x-side and the y-side
 * tensors (W, X, Y; W, DX, DY; DW, X, DY). */
static int wk_op_base(wk_fake_conv_dir dir) {
  switch (dir) {
  case WK_FAKE_CONV_FWD: return CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA;
  case WK_FAKE_CONV_BWD_DATA: return CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA;
  case WK_FAKE_CONV_BWD_FILTER: return CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA;
  }
  return 0;
}
_Static_assert(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y ==
                       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA + 5 &&
                   CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X ==
                       CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA + 4 &&
                   CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY ==
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA + 5 &&
                   CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX ==
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA + 4 &&
                   CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY ==
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA + 5 &&
                   CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X ==
                       CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA + 4,
               "cudnn_graph.h's order of the convolution operations' attributes");

enum { WK_OP_ALPHA, WK_OP_BETA, WK_OP_CONV, WK_OP_W, WK_OP_X, WK_OP_Y };

static cudnnStatus_t wk_set_op(const char *fn, wk_bd *d, int a, cudnnBackendAttributeType_t type,
                               int64_t n, const void *arr) {
  wk_op *op = &d->u.op;
  const int slot = a - wk_op_base(op->dir);
  wk_bd *src = NULL;
  switch (slot) {
  case WK_OP_ALPHA:
  case WK_OP_BETA: {
    /* host scalars: float for FLOAT, HALF and BFLOAT16 data, double for
     * DOUBLE data; either is taken (the data type may not be known yet) */
    if (type != CUDNN_TYPE_FLOAT && type != CUDNN_TYPE_DOUBLE)
      return WK_BAD("%s: %s takes CUDNN_TYPE_FLOAT or CUDNN_TYPE_DOUBLE, not %s (%d)", fn,
                    wk_attr_name(a), wk_atype_name((int)type), (int)type);
    WK_TRY(wk_elems(fn, a, type, n, arr, type, 1));
    const double v = type == CUDNN_TYPE_FLOAT ? (double)*(const float *)arr
                                              : *(const double *)arr;
    *(slot == WK_OP_ALPHA ? &op->alpha : &op->beta) = v;
    return CUDNN_STATUS_SUCCESS;
  }
  case WK_OP_CONV:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1));
    WK_TRY(wk_ref(fn, wk_attr_name(a), *(const cudnnBackendDescriptor_t *)arr,
                  CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &src));
    op->conv = src->u.c;
    return CUDNN_STATUS_SUCCESS;
  case WK_OP_W:
  case WK_OP_X:
  case WK_OP_Y: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1));
    WK_TRY(wk_ref(fn, wk_attr_name(a), *(const cudnnBackendDescriptor_t *)arr,
                  CUDNN_BACKEND_TENSOR_DESCRIPTOR, &src));
    *(slot == WK_OP_W ? &op->w : slot == WK_OP_X ? &op->x : &op->y) = src->u.t;
    return CUDNN_STATUS_SUCCESS;
  }
  default: return wk_not_implemented(fn, a);
  }
}

/* The operation as the legacy calls would take it: groups from the
 * channels, the legacy descriptors made and checked as they check theirs. */
static cudnnStatus_t wk_finalize_op(const char *fn, wk_bd *d) {
  wk_op *op = &d->u.op;
  const int base = wk_op_base(op->dir);
  const int req[] = {base + WK_OP_X, base + WK_OP_W, base + WK_OP_Y, base + WK_OP_CONV,
                     base + WK_OP_ALPHA, base + WK_OP_BETA};
  WK_TRY(wk_required(fn, d, req, (int)(sizeof req / sizeof *req)));
  if (op->x.dims[1] % op->w.dims[1])
    return WK_BAD("%s: the input-side tensor's %lld channels are not a multiple of the "
                  "filter's %lld per group", fn, (long long)op->x.dims[1],
                  (long long)op->w.dims[1]);
  const wk_conv *c = &op->conv;
  op->xd = wk_legacy_tensor(&op->x);
  op->yd = wk_legacy_tensor(&op->y);
  op->wd = wk_legacy_filter(&op->w);
  op->cd = (struct cudnnConvolutionStruct){
      .set = 1, .pad_h = (int)c->pre[0], .pad_w = (int)c->pre[1],
      .u = (int)c->stride[0], .v = (int)c->stride[1],
      .dil_h = (int)c->dil[0], .dil_w = (int)c->dil[1], .mode = c->mode, .compute = c->comp,
      .groups = (int)(op->x.dims[1] / op->w.dims[1]), .math = CUDNN_DEFAULT_MATH};
  return wk_fake_cudnn_conv_check(fn, op->dir, &op->xd, &op->wd, &op->cd, &op->yd);
}

/* ================================================================== operation graph */

static cudnnStatus_t wk_set_graph(const char *fn, wk_bd *d, int a,
                                  cudnnBackendAttributeType_t type, int64_t n, const void *arr) {
  switch (a) {
  case CUDNN_ATTR_OPERATIONGRAPH_OPS: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, -1));
    if (n < 1) return WK_BAD("%s: %s: no operations", fn, wk_attr_name(a));
    if (n > 1)
      return WK_UNSUP("%s: %s: %lld operations; this fake runs graphs of one convolution", fn,
                      wk_attr_name(a), (long long)n);
    wk_bd *src = NULL;
    WK_TRY(wk_desc(fn, wk_attr_name(a), *(const cudnnBackendDescriptor_t *)arr, &src));
    if (!wk_is_op((int)src->type))
      return WK_BAD("%s: %s: a %s is no operation", fn, wk_attr_name(a),
                    wk_type_name((int)src->type));
    if (!src->finalized)
      return WK_BAD("%s: %s: the %s is not finalized", fn, wk_attr_name(a),
                    wk_type_name((int)src->type));
    d->u.g.op = src->u.op;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_OPERATIONGRAPH_HANDLE: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_HANDLE, 1));
    const cudnnHandle_t h = *(const cudnnHandle_t *)arr;
    if (!h) return WK_BAD("%s: %s: the handle is NULL", fn, wk_attr_name(a));
    d->u.g.handle = h;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT:
    return WK_BAD("%s: %s is read-only", fn, wk_attr_name(a));
  default: return wk_not_implemented(fn, a);
  }
}

static cudnnStatus_t wk_finalize_graph(const char *fn, wk_bd *d) {
  static const int req[] = {CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_ATTR_OPERATIONGRAPH_HANDLE};
  WK_TRY(wk_required(fn, d, req, 2));
  const wk_op *op = &d->u.g.op;
  const int64_t x = op->x.uid, w = op->w.uid, y = op->y.uid;
  if (x == w || x == y || w == y)
    return WK_BAD("%s: the operation's tensors share a unique id (%lld, %lld, %lld)", fn,
                  (long long)x, (long long)w, (long long)y);
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== engines */

static int wk_env_on(const char *name) {
  const char *v = getenv(name);
  return v && strcmp(v, "1") == 0;
}

/* $WK_FAKE_CUDNN_GRAPH_INDEX_BASE: what the engines' global indices are offset by. */
static int64_t wk_index_base(void) {
  const char *v = getenv("WK_FAKE_CUDNN_GRAPH_INDEX_BASE");
  const long b = v ? strtol(v, NULL, 10) : 0;
  return b > 0 && b <= 1000 ? b : 0;
}

/* The engines a heuristics mode ranks, into out[4]; their count. */
static int wk_heur_list(const wk_heur *h, int64_t *out) {
  static const int64_t ranked[] = {3, 0, 1, 2};
  if (wk_env_on("WK_FAKE_CUDNN_GRAPH_NO_ENGINES")) return 0;
  if (h->mode == CUDNN_HEUR_MODE_FALLBACK) {
    out[0] = 4;
    return 1;
  }
  memcpy(out, ranked, sizeof ranked);
  return 4;
}

/* An engine's numerical notes, into out[1]; their count. */
static int wk_engine_notes(const wk_engine *e, cudnnBackendNumericalNote_t *out) {
  switch (e->index) {
  case 3: out[0] = CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS; return 1;
  case 0:
    if (e->graph.op.dir != WK_FAKE_CONV_BWD_FILTER) return 0;
    out[0] = CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC;
    return 1;
  case 1: out[0] = CUDNN_NUMERICAL_NOTE_TENSOR_CORE; return 1;
  default: return 0;
  }
}

/* The operation's output bytes: y, dx or dw's. */
static size_t wk_out_bytes(const wk_op *op) {
  switch (op->dir) {
  case WK_FAKE_CONV_FWD: return wk_fake_tensor_bytes(&op->yd);
  case WK_FAKE_CONV_BWD_DATA: return wk_fake_tensor_bytes(&op->xd);
  case WK_FAKE_CONV_BWD_FILTER: break;
  }
  const struct cudnnTensorStruct w = wk_legacy_tensor(&op->w);
  return wk_fake_tensor_bytes(&w);
}

/* An engine's workspace for its graph, or its refusal (engine 2's). */
static cudnnStatus_t wk_engine_ws(const char *fn, const wk_engine *e, size_t *ws) {
  const wk_op *op = &e->graph.op;
  const size_t out = (wk_out_bytes(op) + 255) & ~(size_t)255;
  switch (e->index) {
  case 1: *ws = out; return CUDNN_STATUS_SUCCESS;
  case 2:
    if (op->cd.groups > 1 || (op->wd.r == 1 && op->wd.s == 1))
      return wk_fake_cudnn_fail(CUDNN_STATUS_NOT_SUPPORTED_SHAPE,
                                "%s: engine 2 does not support %s (this fake's engine 2 refuses "
                                "grouped convolutions and 1x1 filters)",
                                fn, op->cd.groups > 1 ? "grouped convolutions" : "1x1 filters");
    *ws = 4 * out;
    return CUDNN_STATUS_SUCCESS;
  default: *ws = 0; return CUDNN_STATUS_SUCCESS;
  }
}

static cudnnStatus_t wk_set_heur(const char *fn, wk_bd *d, int a,
                                 cudnnBackendAttributeType_t type, int64_t n, const void *arr) {
  wk_bd *src = NULL;
  switch (a) {
  case CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1));
    WK_TRY(wk_ref(fn, wk_attr_name(a), *(const cudnnBackendDescriptor_t *)arr,
                  CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &src));
    d->u.h.graph = src->u.g;
    return CUDNN_STATUS_SUCCESS;
  case CUDNN_ATTR_ENGINEHEUR_MODE: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_HEUR_MODE, 1));
    const cudnnBackendHeurMode_t v = *(const cudnnBackendHeurMode_t *)arr;
    if (v != CUDNN_HEUR_MODE_INSTANT && v != CUDNN_HEUR_MODE_A && v != CUDNN_HEUR_MODE_B &&
        v != CUDNN_HEUR_MODE_FALLBACK)
      return WK_BAD("%s: %s: %d is not a heuristics mode", fn, wk_attr_name(a), (int)v);
    d->u.h.mode = v;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_ENGINEHEUR_RESULTS: return WK_BAD("%s: %s is read-only", fn, wk_attr_name(a));
  default: return wk_not_implemented(fn, a);
  }
}

/* CUDNN_ATTR_ENGINEHEUR_RESULTS: with requested 0, the count in *count;
 * else the first min(requested, count) results into the caller's ENGINECFG
 * descriptors, finalized, and *count how many. */
static cudnnStatus_t wk_get_heur(const char *fn, const wk_bd *d, int a,
                                 cudnnBackendAttributeType_t type, int64_t requested,
                                 int64_t *count, void *arr) {
  if (a != CUDNN_ATTR_ENGINEHEUR_RESULTS) return wk_not_implemented(fn, a);
  WK_TRY(wk_room(fn, a, type, requested, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0));
  if (!count) return WK_BAD("%s: %s: elementCount is NULL", fn, wk_attr_name(a));
  int64_t list[4];
  const int64_t n = wk_heur_list(&d->u.h, list), m = requested < n ? requested : n;
  cudnnBackendDescriptor_t *out = arr;
  wk_bd *cfg[4] = {NULL};
  for (int64_t i = 0; i < m; i++) {
    char what[64];
    snprintf(what, sizeof what, "arrayOfElements[%lld]", (long long)i);
    WK_TRY(wk_desc(fn, what, out[i], &cfg[i]));
    if (cfg[i]->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)
      return WK_BAD("%s: %s: %s is a %s, not a CUDNN_BACKEND_ENGINECFG_DESCRIPTOR", fn,
                    wk_attr_name(a), what, wk_type_name((int)cfg[i]->type));
  }
  for (int64_t i = 0; i < m; i++) {
    cfg[i]->u.cfg.engine = (wk_engine){.graph = d->u.h.graph, .index = list[i]};
    cfg[i]->set = WK_BIT(CUDNN_ATTR_ENGINECFG_ENGINE);
    cfg[i]->finalized = 1;
  }
  *count = requested == 0 ? n : m;
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t wk_set_engine(const char *fn, wk_bd *d, int a,
                                   cudnnBackendAttributeType_t type, int64_t n, const void *arr) {
  wk_bd *src = NULL;
  switch (a) {
  case CUDNN_ATTR_ENGINE_OPERATION_GRAPH:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1));
    WK_TRY(wk_ref(fn, wk_attr_name(a), *(const cudnnBackendDescriptor_t *)arr,
                  CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &src));
    d->u.e.graph = src->u.g;
    return CUDNN_STATUS_SUCCESS;
  case CUDNN_ATTR_ENGINE_GLOBAL_INDEX:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_INT64, 1));
    d->u.e.index = *(const int64_t *)arr - wk_index_base();
    return CUDNN_STATUS_SUCCESS;
  case CUDNN_ATTR_ENGINE_NUMERICAL_NOTE:
  case CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE:
    return WK_BAD("%s: %s is read-only", fn, wk_attr_name(a));
  default: return wk_not_implemented(fn, a);
  }
}

static cudnnStatus_t wk_finalize_engine(const char *fn, wk_bd *d) {
  static const int req[] = {CUDNN_ATTR_ENGINE_OPERATION_GRAPH, CUDNN_ATTR_ENGINE_GLOBAL_INDEX};
  WK_TRY(wk_required(fn, d, req, 2));
  if (d->u.e.index < 0 || d->u.e.index >= WK_ENGINE_COUNT)
    return WK_UNSUP("%s: the graph has no engine of global index %lld (this fake's are %lld to "
                    "%lld)", fn, (long long)(d->u.e.index + wk_index_base()),
                    (long long)wk_index_base(), (long long)(wk_index_base() + WK_ENGINE_COUNT - 1));
  return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t wk_get_engine(const char *fn, const wk_bd *d, int a,
                                   cudnnBackendAttributeType_t type, int64_t requested,
                                   int64_t *count, void *arr) {
  const wk_engine *e = &d->u.e;
  switch (a) {
  case CUDNN_ATTR_ENGINE_GLOBAL_INDEX:
    WK_TRY(wk_room(fn, a, type, requested, arr, CUDNN_TYPE_INT64, 1));
    *(int64_t *)arr = e->index + wk_index_base();
    if (count) *count = 1;
    return CUDNN_STATUS_SUCCESS;
  case CUDNN_ATTR_ENGINE_NUMERICAL_NOTE: {
    WK_TRY(wk_room(fn, a, type, requested, arr, CUDNN_TYPE_NUMERICAL_NOTE, 0));
    cudnnBackendNumericalNote_t notes[1];
    const int n = wk_engine_notes(e, notes);
    for (int i = 0; i < n && i < requested; i++) ((cudnnBackendNumericalNote_t *)arr)[i] = notes[i];
    if (count) *count = n;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE:
    WK_TRY(wk_room(fn, a, type, requested, arr, CUDNN_TYPE_BEHAVIOR_NOTE, 0));
    if (count) *count = 0;
    return CUDNN_STATUS_SUCCESS;
  default: return wk_not_implemented(fn, a);
  }
}

/* ================================================================== engine configs */

static cudnnStatus_t wk_set_cfg(const char *fn, wk_bd *d, int a,
                                cudnnBackendAttributeType_t type, int64_t n, const void *arr) {
  wk_bd *src = NULL;
  switch (a) {
  case CUDNN_ATTR_ENGINECFG_ENGINE:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1));
    WK_TRY(wk_ref(fn, wk_attr_name(a), *(const cudnnBackendDescriptor_t *)arr,
                  CUDNN_BACKEND_ENGINE_DESCRIPTOR, &src));
    d->u.cfg.engine = src->u.e;
    return CUDNN_STATUS_SUCCESS;
  case CUDNN_ATTR_ENGINECFG_KNOB_CHOICES:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, -1));
    if (n > 0) wk_fake_die(WK_LIB, "%s: %s: knob choices not implemented", fn, wk_attr_name(a));
    return CUDNN_STATUS_SUCCESS;
  default: return wk_not_implemented(fn, a);
  }
}

static cudnnStatus_t wk_get_cfg(const char *fn, const wk_bd *d, int a,
                                cudnnBackendAttributeType_t type, int64_t requested,
                                int64_t *count, void *arr) {
  switch (a) {
  case CUDNN_ATTR_ENGINECFG_ENGINE: {
    WK_TRY(wk_room(fn, a, type, requested, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0));
    if (requested == 0) {
      if (!count) return WK_BAD("%s: %s: elementCount is NULL", fn, wk_attr_name(a));
      *count = 1;
      return CUDNN_STATUS_SUCCESS;
    }
    wk_bd *e = NULL;
    WK_TRY(wk_desc(fn, "arrayOfElements[0]", *(const cudnnBackendDescriptor_t *)arr, &e));
    if (e->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR)
      return WK_BAD("%s: %s: arrayOfElements[0] is a %s, not a CUDNN_BACKEND_ENGINE_DESCRIPTOR",
                    fn, wk_attr_name(a), wk_type_name((int)e->type));
    e->u.e = d->u.cfg.engine;
    e->set = WK_BIT(CUDNN_ATTR_ENGINE_OPERATION_GRAPH) | WK_BIT(CUDNN_ATTR_ENGINE_GLOBAL_INDEX);
    e->finalized = 1;
    if (count) *count = 1;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_ENGINECFG_KNOB_CHOICES:
    WK_TRY(wk_room(fn, a, type, requested, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0));
    if (count) *count = 0;
    return CUDNN_STATUS_SUCCESS;
  default: return wk_not_implemented(fn, a);
  }
}

/* ================================================================== execution plans */

static cudnnStatus_t wk_set_plan(const char *fn, wk_bd *d, int a,
                                 cudnnBackendAttributeType_t type, int64_t n, const void *arr) {
  wk_bd *src = NULL;
  switch (a) {
  case CUDNN_ATTR_EXECUTION_PLAN_HANDLE: {
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_HANDLE, 1));
    const cudnnHandle_t h = *(const cudnnHandle_t *)arr;
    if (!h) return WK_BAD("%s: %s: the handle is NULL", fn, wk_attr_name(a));
    d->u.p.handle = h;
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1));
    WK_TRY(wk_ref(fn, wk_attr_name(a), *(const cudnnBackendDescriptor_t *)arr,
                  CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &src));
    d->u.p.cfg = src->u.cfg;
    return CUDNN_STATUS_SUCCESS;
  case CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE:
    return WK_BAD("%s: %s is read-only", fn, wk_attr_name(a));
  default: return wk_not_implemented(fn, a);
  }
}

static cudnnStatus_t wk_finalize_plan(const char *fn, wk_bd *d) {
  static const int req[] = {CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                            CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG};
  WK_TRY(wk_required(fn, d, req, 2));
  if (wk_env_on("WK_FAKE_CUDNN_GRAPH_PLAN_FAILS"))
    return wk_fake_cudnn_fail(CUDNN_STATUS_INTERNAL_ERROR, "%s: cannot compile the engine's "
                              "kernel ($WK_FAKE_CUDNN_GRAPH_PLAN_FAILS)", fn);
  return wk_engine_ws(fn, &d->u.p.cfg.engine, &d->u.p.ws);
}

static cudnnStatus_t wk_get_plan(const char *fn, const wk_bd *d, int a,
                                 cudnnBackendAttributeType_t type, int64_t requested,
                                 int64_t *count, void *arr) {
  if (a != CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE) return wk_not_implemented(fn, a);
  WK_TRY(wk_room(fn, a, type, requested, arr, CUDNN_TYPE_INT64, 1));
  *(int64_t *)arr = (int64_t)d->u.p.ws;
  if (count) *count = 1;
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== variant packs */

static cudnnStatus_t wk_set_pack(const char *fn, wk_bd *d, int a,
                                 cudnnBackendAttributeType_t type, int64_t n, const void *arr) {
  wk_pack *vp = &d->u.vp;
  switch (a) {
  case CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS:
  case CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS: {
    const int ids = a == CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS;
    WK_TRY(wk_elems(fn, a, type, n, arr, ids ? CUDNN_TYPE_INT64 : CUDNN_TYPE_VOID_PTR, -1));
    const size_t bytes = (size_t)n * (ids ? sizeof(int64_t) : sizeof(void *));
    void *copy = NULL;
    if (n > 0) {
      copy = malloc(bytes);
      if (!copy)
        return wk_fake_cudnn_fail(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED,
                                  "%s: out of host memory", fn);
      memcpy(copy, arr, bytes);
    }
    if (ids) {
      free(vp->uids);
      vp->uids = copy;
      vp->n_uids = n;
    } else {
      free(vp->ptrs);
      vp->ptrs = copy;
      vp->n_ptrs = n;
    }
    return CUDNN_STATUS_SUCCESS;
  }
  case CUDNN_ATTR_VARIANT_PACK_WORKSPACE:
    WK_TRY(wk_elems(fn, a, type, n, arr, CUDNN_TYPE_VOID_PTR, 1));
    vp->ws = *(void *const *)arr;
    return CUDNN_STATUS_SUCCESS;
  default: return wk_not_implemented(fn, a);
  }
}

static cudnnStatus_t wk_finalize_pack(const char *fn, wk_bd *d) {
  static const int req[] = {CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                            CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                            CUDNN_ATTR_VARIANT_PACK_WORKSPACE};
  WK_TRY(wk_required(fn, d, req, 3));
  const wk_pack *vp = &d->u.vp;
  if (vp->n_uids != vp->n_ptrs)
    return WK_BAD("%s: %lld unique ids but %lld data pointers", fn, (long long)vp->n_uids,
                  (long long)vp->n_ptrs);
  for (int64_t i = 0; i < vp->n_uids; i++)
    for (int64_t j = 0; j < i; j++)
      if (vp->uids[i] == vp->uids[j])
        return WK_BAD("%s: unique id %lld appears twice", fn, (long long)vp->uids[i]);
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== the API */

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t descriptorType,
                                           cudnnBackendDescriptor_t *descriptor) {
  static const char fn[] = "cudnnBackendCreateDescriptor";
  if (!descriptor) return WK_BAD("%s: descriptor is NULL", fn);
  const int t = (int)descriptorType;
  if (t < CUDNN_BACKEND_POINTWISE_DESCRIPTOR || t > CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR)
    return WK_BAD("%s: %d is not a cudnnBackendDescriptorType_t", fn, t);
  switch (t) {
  case CUDNN_BACKEND_TENSOR_DESCRIPTOR:
  case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR:
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
  case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
  case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR:
  case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR:
  case CUDNN_BACKEND_ENGINE_DESCRIPTOR:
  case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
  case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR:
  case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: break;
  default:
    return WK_UNSUP("%s: descriptor type %d is not one this fake implements (tensors, "
                    "convolutions and their operations, graphs, heuristics, engines, engine "
                    "configs, plans and variant packs)", fn, t);
  }
  wk_bd *d = calloc(1, sizeof *d);
  if (!d || !wk_reg_add(d)) {
    free(d);
    return wk_fake_cudnn_fail(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED,
                              "%s: out of host memory", fn);
  }
  d->type = descriptorType;
  if (wk_is_op(t)) d->u.op.dir = wk_op_dir(t);
  *descriptor = d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t descriptor) {
  static const char fn[] = "cudnnBackendDestroyDescriptor";
  if (!descriptor) return WK_BAD("%s: descriptor is NULL", fn);
  if (!wk_reg_has(descriptor, 1))
    wk_fake_die(WK_LIB, "%s: %p is no live backend descriptor (never created, or destroyed "
                "already)", fn, descriptor);
  wk_bd *d = descriptor;
  if (d->type == CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR) {
    free(d->u.vp.uids);
    free(d->u.vp.ptrs);
  }
  free(d);
  return CUDNN_STATUS_SUCCESS;
}

/* The SetAttribute of a descriptor type (the three operations share one). */
typedef cudnnStatus_t (*wk_set_fn)(const char *fn, wk_bd *d, int a,
                                   cudnnBackendAttributeType_t type, int64_t n, const void *arr);
static wk_set_fn wk_setter(int type) {
  switch (type) {
  case CUDNN_BACKEND_TENSOR_DESCRIPTOR: return wk_set_tensor;
  case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: return wk_set_conv;
  case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: return wk_set_graph;
  case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: return wk_set_heur;
  case CUDNN_BACKEND_ENGINE_DESCRIPTOR: return wk_set_engine;
  case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR: return wk_set_cfg;
  case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: return wk_set_plan;
  case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: return wk_set_pack;
  default: return wk_set_op;
  }
}

cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t descriptor,
                                       cudnnBackendAttributeName_t attributeName,
                                       cudnnBackendAttributeType_t attributeType,
                                       int64_t elementCount, const void *arrayOfElements) {
  wk_bd *d = NULL;
  WK_TRY(wk_desc("cudnnBackendSetAttribute", "descriptor", descriptor, &d));
  char fn[128];
  snprintf(fn, sizeof fn, "cudnnBackendSetAttribute(%s)", wk_type_name((int)d->type));
  const int a = (int)attributeName;
  if (!wk_attr_of((int)d->type, a))
    return WK_BAD("%s: %d is not an attribute of a %s", fn, a, wk_type_name((int)d->type));
  if (d->finalized)
    return WK_BAD("%s: %s: the descriptor is finalized", fn, wk_attr_name(a));
  const cudnnStatus_t s =
      wk_setter((int)d->type)(fn, d, a, attributeType, elementCount, arrayOfElements);
  if (s == CUDNN_STATUS_SUCCESS) d->set |= WK_BIT(a);
  return s;
}

cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const descriptor,
                                       cudnnBackendAttributeName_t attributeName,
                                       cudnnBackendAttributeType_t attributeType,
                                       int64_t requestedElementCount, int64_t *elementCount,
                                       void *arrayOfElements) {
  wk_bd *d = NULL;
  WK_TRY(wk_desc("cudnnBackendGetAttribute", "descriptor", descriptor, &d));
  char fn[128];
  snprintf(fn, sizeof fn, "cudnnBackendGetAttribute(%s)", wk_type_name((int)d->type));
  const int a = (int)attributeName;
  if (!wk_attr_of((int)d->type, a))
    return WK_BAD("%s: %d is not an attribute of a %s", fn, a, wk_type_name((int)d->type));
  if (!d->finalized)
    return WK_BAD("%s: %s: the descriptor is not finalized", fn, wk_attr_name(a));
  const cudnnBackendAttributeType_t t = attributeType;
  const int64_t r = requestedElementCount;
  switch ((int)d->type) {
  case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR:
    if (a != CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT) return wk_not_implemented(fn, a);
    WK_TRY(wk_room(fn, a, t, r, arrayOfElements, CUDNN_TYPE_INT64, 1));
    *(int64_t *)arrayOfElements = WK_ENGINE_COUNT;
    if (elementCount) *elementCount = 1;
    return CUDNN_STATUS_SUCCESS;
  case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR:
    return wk_get_heur(fn, d, a, t, r, elementCount, arrayOfElements);
  case CUDNN_BACKEND_ENGINE_DESCRIPTOR:
    return wk_get_engine(fn, d, a, t, r, elementCount, arrayOfElements);
  case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
    return wk_get_cfg(fn, d, a, t, r, elementCount, arrayOfElements);
  case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR:
    return wk_get_plan(fn, d, a, t, r, elementCount, arrayOfElements);
  default: return wk_not_implemented(fn, a);
  }
}

cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t descriptor) {
  wk_bd *d = NULL;
  WK_TRY(wk_desc("cudnnBackendFinalize", "descriptor", descriptor, &d));
  char fn[128];
  snprintf(fn, sizeof fn, "cudnnBackendFinalize(%s)", wk_type_name((int)d->type));
  if (d->finalized) return WK_BAD("%s: the descriptor is finalized already", fn);
  cudnnStatus_t s;
  switch ((int)d->type) {
  case CUDNN_BACKEND_TENSOR_DESCRIPTOR: s = wk_finalize_tensor(fn, d); break;
  case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: s = wk_finalize_conv(fn, d); break;
  case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: s = wk_finalize_graph(fn, d); break;
  case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
    static const int req[] = {CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_ATTR_ENGINEHEUR_MODE};
    s = wk_required(fn, d, req, 2);
    if (s == CUDNN_STATUS_SUCCESS && d->u.h.mode == CUDNN_HEUR_MODE_A &&
        wk_env_on("WK_FAKE_CUDNN_GRAPH_MODE_A_REFUSES"))
      s = wk_fake_cudnn_fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: heuristics mode A does not take "
                             "this graph ($WK_FAKE_CUDNN_GRAPH_MODE_A_REFUSES)", fn);
    break;
  }
  case CUDNN_BACKEND_ENGINE_DESCRIPTOR: s = wk_finalize_engine(fn, d); break;
  case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR: {
    static const int req[] = {CUDNN_ATTR_ENGINECFG_ENGINE};
    s = wk_required(fn, d, req, 1);
    break;
  }
  case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: s = wk_finalize_plan(fn, d); break;
  case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: s = wk_finalize_pack(fn, d); break;
  default: s = wk_finalize_op(fn, d); break;
  }
  if (s == CUDNN_STATUS_SUCCESS) d->finalized = 1;
  return s;
}

/* The names the work's messages carry (static: the work may run later). */
static const char *const wk_exec_fn[3] = {"cudnnBackendExecute (convolution forward)",
                                          "cudnnBackendExecute (convolution backward data)",
                                          "cudnnBackendExecute (convolution backward filter)"};

cudnnStatus_t cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t executionPlan,
                                  cudnnBackendDescriptor_t variantPack) {
  static const char fn[] = "cudnnBackendExecute";
  if (!handle) return WK_BAD("%s: handle is NULL", fn);
  wk_bd *pd = NULL, *vd = NULL;
  WK_TRY(wk_ref(fn, "executionPlan", executionPlan, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &pd));
  WK_TRY(wk_ref(fn, "variantPack", variantPack, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vd));
  const wk_plan *p = &pd->u.p;
  const wk_pack *vp = &vd->u.vp;
  if (handle != p->handle)
    return WK_BAD("%s: handle %p is not the plan's (%p): a plan runs on the handle it was made "
                  "with", fn, (void *)handle, (void *)p->handle);
  if (p->cfg.engine.index == 0 && wk_env_on("WK_FAKE_CUDNN_GRAPH_EXEC_REFUSES"))
    return wk_fake_cudnn_fail(CUDNN_STATUS_NOT_SUPPORTED_SHAPE,
                              "%s: engine 0 does not support these tensors "
                              "($WK_FAKE_CUDNN_GRAPH_EXEC_REFUSES)", fn);
  const wk_op *op = &p->cfg.engine.graph.op;
  if (op->dir == WK_FAKE_CONV_BWD_DATA && op->beta != 0.0 &&
      wk_env_on("WK_FAKE_CUDNN_GRAPH_BETA1_REFUSES"))
    return wk_fake_cudnn_fail(CUDNN_STATUS_NOT_SUPPORTED_SHAPE,
                              "%s: engine %lld does not add into dx (beta %g) "
                              "($WK_FAKE_CUDNN_GRAPH_BETA1_REFUSES)", fn,
                              (long long)(p->cfg.engine.index + wk_index_base()), op->beta);
  const wk_tensor *ts[3] = {&op->x, &op->w, &op->y};
  void *ptr[3];
  for (int i = 0; i < 3; i++) {
    const wk_tensor *t = ts[i];
    int64_t at = -1;
    for (int64_t j = 0; j < vp->n_uids && at < 0; j++)
      if (vp->uids[j] == t->uid) at = j;
    if (at < 0)
      return WK_BAD("%s: the variant pack has no pointer for the graph's tensor of unique id "
                    "%lld", fn, (long long)t->uid);
    ptr[i] = vp->ptrs[at];
    const uintptr_t u = (uintptr_t)ptr[i];
    const size_t es = wk_fake_dtype_size(wk_fake_cudnn_dtype(t->dtype));
    if (!ptr[i]) return WK_BAD("%s: the pointer of unique id %lld is NULL", fn, (long long)t->uid);
    if (u % es)
      return WK_BAD("%s: the pointer of unique id %lld (%p) is not aligned to its %zu-byte "
                    "elements", fn, (long long)t->uid, ptr[i], es);
    if (u % (uintptr_t)t->align)
      return WK_BAD("%s: the pointer of unique id %lld (%p) is not aligned to the tensor's "
                    "CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, %lld", fn, (long long)t->uid, ptr[i],
                    (long long)t->align);
  }
  for (int64_t j = 0; j < vp->n_uids; j++)
    if (vp->uids[j] != op->x.uid && vp->uids[j] != op->w.uid && vp->uids[j] != op->y.uid)
      return WK_BAD("%s: the variant pack's unique id %lld is none of the graph's tensors'", fn,
                    (long long)vp->uids[j]);
  if (p->ws && !vp->ws)
    return WK_BAD("%s: the plan needs %zu bytes of workspace; the variant pack's is NULL", fn,
                  p->ws);
  return wk_fake_cudnn_conv_enqueue(wk_exec_fn[op->dir], op->dir, handle, &op->xd, ptr[0], &op->wd,
                                    ptr[1], &op->cd, &op->yd, ptr[2], op->alpha, op->beta, vp->ws,
                                    p->ws, p->cfg.engine.index == 3);
}
