/* fake_cudnn.c - a host fake of the part of cuDNN 9's legacy (descriptor)
 * API that the GPU backend calls (the sources in src/cuda), under the real headers'
 * declarations. See fake.h for what the fakes can and cannot show.
 *
 * Implemented:
 *   handle:       cudnnCreate, cudnnDestroy, cudnnSetStream, cudnnGetVersion,
 *                 cudnnGetErrorString, cudnnGetLastErrorString
 *   tensor:       cudnnCreate/DestroyTensorDescriptor, cudnnSet/GetTensor4dDescriptor
 *   filter:       cudnnCreate/DestroyFilterDescriptor, cudnnSet/GetFilter4dDescriptor
 *   convolution:  cudnnCreate/DestroyConvolutionDescriptor, cudnnSet/GetConvolution2dDescriptor,
 *                 cudnnSet/GetConvolutionGroupCount, cudnnSet/GetConvolutionMathType,
 *                 cudnnGetConvolution2dForwardOutputDim
 *   pooling:      cudnnCreate/DestroyPoolingDescriptor, cudnnSetPooling2dDescriptor
 *   activation:   cudnnCreate/DestroyActivationDescriptor, cudnnSetActivationDescriptor
 *   algorithms:   cudnnGetConvolution{Forward,BackwardData,BackwardFilter}Algorithm_v7,
 *                 cudnnGetConvolution{Forward,BackwardData,BackwardFilter}WorkspaceSize,
 *                 cudnnFindConvolution{Forward,BackwardData,BackwardFilter}AlgorithmEx
 *                 ($WK_FAKE_CUDNN_HEURISTIC_LIES=1: the heuristics err, see wk_heuristic)
 *   compute:      cudnnConvolutionForward, cudnnConvolutionBackwardData,
 *                 cudnnConvolutionBackwardFilter, cudnnConvolutionBackwardBias,
 *                 cudnnAddTensor, cudnnPoolingForward, cudnnPoolingBackward
 *                 ($WK_FAKE_CUDNN_EXEC_REFUSES=1: the calls refuse what the queries
 *                 accept, see wk_conv_call)
 *   fake_cudnn.h: wk_fake_cudnn_dtype, wk_fake_tensor_bytes, wk_fake_cudnn_status,
 *                 wk_fake_cudnn_fail, and for fake_cudnn_graph.c's backend API
 *                 wk_fake_cudnn_conv_check and wk_fake_cudnn_conv_enqueue (this
 *                 file's convolution on descriptors it did not make)
 *
 * Supported: 4-D tensors in NCHW or NHWC, filters in NCHW (KCRS) or NHWC
 * (KRSC); data FLOAT, HALF and BFLOAT16 with a FLOAT compute type, DOUBLE with
 * DOUBLE; both convolution modes, padding, stride, dilation, groups; the four
 * pooling modes. All arithmetic is in double; results are rounded once into
 * the output's type (wk_fake_store). Every algorithm of a direction computes
 * the same reference loops; they differ only in the workspace they claim
 * (which they really use: they overwrite it) and in what they report.
 *
 * Not implemented (wk_fake_die says so): NCHW_VECT_C, data types other than
 * the four above, TRUE_HALF (HALF compute) convolutions. Not emulated: TF32
 * or fp16 rounding inside tensor-core algorithms (the math type is kept and
 * reported, results are always the exact reference), non-determinism.
 *
 * Execution: each call that touches device data validates its descriptors
 * now (returning cuDNN's status), then packages descriptors by value, device
 * pointers and the alpha/beta values into a context for wk_fake_enqueue; the
 * work checks every pointer's extent (wk_fake_check_device) when it runs, so
 * a graph replay after a buffer was freed is caught too. */
#if defined(__GNUC__)
/* cuDNN 9 deprecates this whole API; should CUDNN_WARN_DEPRECATED be defined */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_cudnn.h"

#define WK_LIB "cuDNN"

/* ================================================================== errors */

/* cudnnGetLastErrorString's message: per thread, as cuDNN 9 keeps it. */
static _Thread_local char wk_last_msg[512];

/* Keeps the formatted reason for cudnnGetLastErrorString (fake_cudnn.h). */
void wk_fake_cudnn_note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(wk_last_msg, sizeof wk_last_msg, fmt, ap);
  va_end(ap);
}

/* Returns s, keeping the formatted reason for cudnnGetLastErrorString. */
#define wk_fail(s, ...) wk_fake_cudnn_fail(s, __VA_ARGS__)

#define WK_BAD(...) wk_fail(CUDNN_STATUS_BAD_PARAM, __VA_ARGS__)
#define WK_TRY(x)                                                                           \
  do {                                                                                      \
    const cudnnStatus_t s_ = (x);                                                           \
    if (s_ != CUDNN_STATUS_SUCCESS) return s_;                                              \
  } while (0)

const char *cudnnGetErrorString(cudnnStatus_t status) {
  switch ((int)status) {
#define WK_S(x) \
  case x:       \
    return #x;
    WK_S(CUDNN_STATUS_SUCCESS)
    WK_S(CUDNN_STATUS_NOT_INITIALIZED)
    WK_S(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH)
    WK_S(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH)
    WK_S(CUDNN_STATUS_DEPRECATED)
    WK_S(CUDNN_STATUS_LICENSE_ERROR)
    WK_S(CUDNN_STATUS_RUNTIME_IN_PROGRESS)
    WK_S(CUDNN_STATUS_RUNTIME_FP_OVERFLOW)
    WK_S(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
    WK_S(CUDNN_STATUS_BAD_PARAM)
    WK_S(CUDNN_STATUS_BAD_PARAM_NULL_POINTER)
    WK_S(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER)
    WK_S(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED)
    WK_S(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND)
    WK_S(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT)
    WK_S(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH)
    WK_S(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH)
    WK_S(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES)
    WK_S(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE)
    WK_S(CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH)
    WK_S(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_SHAPE)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_PADDING)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API)
    WK_S(CUDNN_STATUS_NOT_SUPPORTED_INVALID_DYNAMIC_SHAPE)
    WK_S(CUDNN_STATUS_INTERNAL_ERROR)
    WK_S(CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED)
    WK_S(CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE)
    WK_S(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED)
    WK_S(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    WK_S(CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM)
    WK_S(CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED)
    WK_S(CUDNN_STATUS_EXECUTION_FAILED)
    WK_S(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER)
    WK_S(CUDNN_STATUS_EXECUTION_FAILED_CUBLAS)
    WK_S(CUDNN_STATUS_EXECUTION_FAILED_CUDART)
    WK_S(CUDNN_STATUS_EXECUTION_FAILED_CURAND)
    case 2001: /* the deprecated CUDNN_STATUS_INVALID_VALUE */
      return "CUDNN_STATUS_INVALID_VALUE";
#undef WK_S
  }
  return "CUDNN_UNKNOWN_STATUS";
}

void cudnnGetLastErrorString(char *message, size_t max_size) {
  if (message && max_size > 0) snprintf(message, max_size, "%s", wk_last_msg);
}

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

/* A failed wk_fake_enqueue: the runtime refused the work (during a capture, say). */
cudnnStatus_t wk_fake_cudnn_status(cudaError_t e) {
  if (e == cudaSuccess) return CUDNN_STATUS_SUCCESS;
  if (e == cudaErrorMemoryAllocation)
    return wk_fail(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED,
                   "the CUDA runtime could not allocate for the work (cudaError %d)", (int)e);
  return wk_fail(CUDNN_STATUS_EXECUTION_FAILED_CUDART,
                 "the CUDA runtime refused the work on the handle's stream (cudaError %d)",
                 (int)e);
}

/* ================================================================== handle */

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) {
  if (!handle) return WK_BAD("cudnnCreate: handle is NULL");
  struct cudnnContext *h = calloc(1, sizeof *h);
  if (!h)
    return wk_fail(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED,
                   "cudnnCreate: out of host memory");
  h->stream = 0;
  *handle = h;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (!handle) return WK_BAD("cudnnDestroy: handle is NULL");
  free(handle);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
  if (!handle) return WK_BAD("cudnnSetStream: handle is NULL");
  handle->stream = streamId;
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== types */

wk_fake_dtype wk_fake_cudnn_dtype(cudnnDataType_t t) {
  switch (t) {
  case CUDNN_DATA_FLOAT: return WK_FAKE_F32;
  case CUDNN_DATA_HALF: return WK_FAKE_F16;
  case CUDNN_DATA_BFLOAT16: return WK_FAKE_BF16;
  case CUDNN_DATA_DOUBLE: return WK_FAKE_F64;
  default: break;
  }
  wk_fake_die(WK_LIB, "data type %d not implemented (FLOAT, HALF, BFLOAT16, DOUBLE only)", (int)t);
}

static size_t wk_esize(cudnnDataType_t t) { return wk_fake_dtype_size(wk_fake_cudnn_dtype(t)); }

/* Whether t is one of cudnnDataType_t's enumerants at all (cuDNN 9.x). */
static int wk_dtype_valid(cudnnDataType_t t) {
  return (int)t >= CUDNN_DATA_FLOAT && (int)t <= CUDNN_DATA_COMPLEX_FP64;
}

static int wk_dtype_implemented(cudnnDataType_t t) {
  return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16 ||
         t == CUDNN_DATA_DOUBLE;
}

size_t wk_fake_tensor_bytes(const struct cudnnTensorStruct *d) {
  if (!d || !d->set) wk_fake_die(WK_LIB, "wk_fake_tensor_bytes: tensor descriptor not set");
  const size_t last = (size_t)(d->n - 1) * d->sn + (size_t)(d->c - 1) * d->sc +
                      (size_t)(d->h - 1) * d->sh + (size_t)(d->w - 1) * d->sw;
  return (last + 1) * wk_esize(d->dtype);
}

static size_t wk_filter_at(const struct cudnnFilterStruct *f, int k, int c, int r, int s) {
  return (size_t)k * f->sk + (size_t)c * f->sc + (size_t)r * f->sr + (size_t)s * f->ss;
}

/* Bytes a filter spans: (the largest offset + 1) * element size; k * c * r * s
 * elements in the packed KCRS and KRSC layouts cudnnSetFilter4dDescriptor
 * gives, more for the strided filters fake_cudnn_graph.c may pass. */
static size_t wk_filter_bytes(const struct cudnnFilterStruct *f) {
  return (wk_filter_at(f, f->k - 1, f->c - 1, f->r - 1, f->s - 1) + 1) * wk_esize(f->dtype);
}


/* alpha and beta: host pointers to float for FLOAT, HALF and BFLOAT16 data,
 * to double for DOUBLE data (cuDNN developer guide, "Scaling Parameters"). */
double wk_fake_cudnn_scalar(const void *p, cudnnDataType_t data) {
  return data == CUDNN_DATA_DOUBLE ? *(const double *)p : (double)*(const float *)p;
}

/* A device pointer must be aligned to its element (cuDNN 9's
 * CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER). */
static cudnnStatus_t wk_aligned(const char *fn, const char *what, const void *p,
                                cudnnDataType_t t) {
  if ((uintptr_t)p % wk_esize(t))
    return wk_fail(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER,
                   "%s: %s (%p) is not aligned to its %zu-byte elements", fn, what, p,
                   wk_esize(t));
  return CUDNN_STATUS_SUCCESS;
}

static int wk_overlap(const void *a, size_t na, const void *b, size_t nb) {
  const uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
  return na && nb && pa < pb + nb && pb < pa + na;
}

/* The operations below are not in place (the API reference documents in-place
 * use only for some others, such as activation): an output that shares bytes
 * with an input or with the workspace is the caller's bug. */
static void wk_no_overlap(const char *fn, const char *out_name, const void *out, size_t n_out,
                          const char *in_name, const void *in, size_t n_in) {
  if (wk_overlap(out, n_out, in, n_in))
    wk_fake_die(WK_LIB, "%s: %s [%p, +%zu) overlaps %s [%p, +%zu); the operation is not in "
                "place and its workspace is its own", fn, out_name, out, n_out, in_name, in, n_in);
}

/* ================================================================== tensors */

/* For cudnnCreate*Descriptor: a zeroed descriptor of n bytes into *out. */
static cudnnStatus_t wk_new_desc(const char *fn, size_t n, void **out) {
  *out = calloc(1, n);
  if (!*out)
    return wk_fail(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED, "%s: out of host memory",
                   fn);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *tensorDesc) {
  if (!tensorDesc) return WK_BAD("cudnnCreateTensorDescriptor: tensorDesc is NULL");
  struct cudnnTensorStruct *d;
  WK_TRY(wk_new_desc("cudnnCreateTensorDescriptor", sizeof *d, (void **)&d));
  *tensorDesc = d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t tensorDesc) {
  free(tensorDesc);
  return CUDNN_STATUS_SUCCESS;
}

/* Format and data type as cudnnSet{Tensor,Filter}4dDescriptor accept them:
 * an invalid enumerant is BAD_PARAM; a valid one these fakes lack dies. */
static cudnnStatus_t wk_check_format_type(const char *fn, cudnnTensorFormat_t format,
                                          cudnnDataType_t t) {
  if (format == CUDNN_TENSOR_NCHW_VECT_C)
    wk_fake_die(WK_LIB, "%s: CUDNN_TENSOR_NCHW_VECT_C not implemented", fn);
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC)
    return WK_BAD("%s: format %d is not a cudnnTensorFormat_t", fn, (int)format);
  if (!wk_dtype_valid(t)) return WK_BAD("%s: data type %d is not a cudnnDataType_t", fn, (int)t);
  if (!wk_dtype_implemented(t))
    wk_fake_die(WK_LIB, "%s: data type %d not implemented (FLOAT, HALF, BFLOAT16, DOUBLE only)",
                fn, (int)t);
  return CUDNN_STATUS_SUCCESS;
}

/* cudnnSetTensor4dDescriptor (API reference): BAD_PARAM when a dimension is
 * not positive (the reference says "negative"; a zero-sized tensor has no
 * elements to address either) or an enumerant is invalid; NOT_SUPPORTED past
 * 2 Giga-elements. The strides follow the format: NCHW is row major, NHWC
 * interleaves the channels (cStride 1). */
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t tensorDesc,
                                         cudnnTensorFormat_t format, cudnnDataType_t dataType,
                                         int n, int c, int h, int w) {
  static const char fn[] = "cudnnSetTensor4dDescriptor";
  if (!tensorDesc) return WK_BAD("%s: tensorDesc is NULL", fn);
  WK_TRY(wk_check_format_type(fn, format, dataType));
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
    return WK_BAD("%s: dimensions n=%d c=%d h=%d w=%d must be positive", fn, n, c, h, w);
  if ((double)n * c * h * w > (double)INT32_MAX)
    return wk_fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: %dx%dx%dx%d exceeds 2 Giga-elements", fn, n,
                   c, h, w);
  struct cudnnTensorStruct *d = tensorDesc;
  d->dtype = dataType;
  d->n = n, d->c = c, d->h = h, d->w = w;
  if (format == CUDNN_TENSOR_NCHW) {
    d->sw = 1, d->sh = w, d->sc = h * w, d->sn = c * h * w;
  } else {
    d->sc = 1, d->sw = c, d->sh = w * c, d->sn = h * w * c;
  }
  d->set = 1;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t tensorDesc,
                                         cudnnDataType_t *dataType, int *n, int *c, int *h,
                                         int *w, int *nStride, int *cStride, int *hStride,
                                         int *wStride) {
  static const char fn[] = "cudnnGetTensor4dDescriptor";
  if (!tensorDesc || !tensorDesc->set) return WK_BAD("%s: tensorDesc is NULL or not set", fn);
  if (!dataType || !n || !c || !h || !w || !nStride || !cStride || !hStride || !wStride)
    return WK_BAD("%s: an output pointer is NULL", fn);
  const struct cudnnTensorStruct *d = tensorDesc;
  *dataType = d->dtype;
  *n = d->n, *c = d->c, *h = d->h, *w = d->w;
  *nStride = d->sn, *cStride = d->sc, *hStride = d->sh, *wStride = d->sw;
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== filters */

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *filterDesc) {
  if (!filterDesc) return WK_BAD("cudnnCreateFilterDescriptor: filterDesc is NULL");
  struct cudnnFilterStruct *f;
  WK_TRY(wk_new_desc("cudnnCreateFilterDescriptor", sizeof *f, (void **)&f));
  *filterDesc = f;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t filterDesc) {
  free(filterDesc);
  return CUDNN_STATUS_SUCCESS;
}

/* cudnnSetFilter4dDescriptor (API reference, cudnnTensorFormat_t): with
 * CUDNN_TENSOR_NCHW the filter is laid out KCRS, with CUDNN_TENSOR_NHWC it is
 * KRSC (the input channels innermost). */
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t filterDesc,
                                         cudnnDataType_t dataType, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
  static const char fn[] = "cudnnSetFilter4dDescriptor";
  if (!filterDesc) return WK_BAD("%s: filterDesc is NULL", fn);
  WK_TRY(wk_check_format_type(fn, format, dataType));
  if (k <= 0 || c <= 0 || h <= 0 || w <= 0)
    return WK_BAD("%s: dimensions k=%d c=%d h=%d w=%d must be positive", fn, k, c, h, w);
  if ((double)k * c * h * w > (double)INT32_MAX)
    return wk_fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: %dx%dx%dx%d exceeds 2 Giga-elements", fn, k,
                   c, h, w);
  struct cudnnFilterStruct *f = filterDesc;
  f->dtype = dataType;
  f->format = format;
  f->k = k, f->c = c, f->r = h, f->s = w;
  if (format == CUDNN_TENSOR_NCHW) { /* KCRS */
    f->ss = 1, f->sr = w, f->sc = h * w, f->sk = c * h * w;
  } else { /* KRSC */
    f->sc = 1, f->ss = c, f->sr = w * c, f->sk = h * w * c;
  }
  f->set = 1;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetFilter4dDescriptor(const cudnnFilterDescriptor_t filterDesc,
                                         cudnnDataType_t *dataType, cudnnTensorFormat_t *format,
                                         int *k, int *c, int *h, int *w) {
  static const char fn[] = "cudnnGetFilter4dDescriptor";
  if (!filterDesc || !filterDesc->set) return WK_BAD("%s: filterDesc is NULL or not set", fn);
  if (!dataType || !format || !k || !c || !h || !w)
    return WK_BAD("%s: an output pointer is NULL", fn);
  *dataType = filterDesc->dtype;
  *format = filterDesc->format;
  *k = filterDesc->k, *c = filterDesc->c, *h = filterDesc->r, *w = filterDesc->s;
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== convolution descriptor */

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *convDesc) {
  if (!convDesc) return WK_BAD("cudnnCreateConvolutionDescriptor: convDesc is NULL");
  struct cudnnConvolutionStruct *d;
  WK_TRY(wk_new_desc("cudnnCreateConvolutionDescriptor", sizeof *d, (void **)&d));
  /* a new descriptor: one group, the default math type */
  d->groups = 1;
  d->math = CUDNN_DEFAULT_MATH;
  *convDesc = d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t convDesc) {
  free(convDesc);
  return CUDNN_STATUS_SUCCESS;
}

/* cudnnSetConvolution2dDescriptor (API reference): BAD_PARAM when a padding
 * is negative, a stride or a dilation is not positive, or mode is invalid.
 * The group count and math type are kept (they have their own setters). */
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t convDesc, int pad_h,
                                              int pad_w, int u, int v, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType) {
  static const char fn[] = "cudnnSetConvolution2dDescriptor";
  if (!convDesc) return WK_BAD("%s: convDesc is NULL", fn);
  if (pad_h < 0 || pad_w < 0) return WK_BAD("%s: padding %d, %d is negative", fn, pad_h, pad_w);
  if (u <= 0 || v <= 0) return WK_BAD("%s: stride %d, %d must be positive", fn, u, v);
  if (dilation_h <= 0 || dilation_w <= 0)
    return WK_BAD("%s: dilation %d, %d must be positive", fn, dilation_h, dilation_w);
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)
    return WK_BAD("%s: mode %d is not a cudnnConvolutionMode_t", fn, (int)mode);
  if (!wk_dtype_valid(computeType))
    return WK_BAD("%s: compute type %d is not a cudnnDataType_t", fn, (int)computeType);
  struct cudnnConvolutionStruct *d = convDesc;
  d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v;
  d->dil_h = dilation_h, d->dil_w = dilation_w;
  d->mode = mode;
  d->compute = computeType;
  d->set = 1;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dDescriptor(const cudnnConvolutionDescriptor_t convDesc,
                                              int *pad_h, int *pad_w, int *u, int *v,
                                              int *dilation_h, int *dilation_w,
                                              cudnnConvolutionMode_t *mode,
                                              cudnnDataType_t *computeType) {
  static const char fn[] = "cudnnGetConvolution2dDescriptor";
  if (!convDesc || !convDesc->set) return WK_BAD("%s: convDesc is NULL or not set", fn);
  if (!pad_h || !pad_w || !u || !v || !dilation_h || !dilation_w || !mode || !computeType)
    return WK_BAD("%s: an output pointer is NULL", fn);
  const struct cudnnConvolutionStruct *d = convDesc;
  *pad_h = d->pad_h, *pad_w = d->pad_w, *u = d->u, *v = d->v;
  *dilation_h = d->dil_h, *dilation_w = d->dil_w;
  *mode = d->mode;
  *computeType = d->compute;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc,
                                            int groupCount) {
  if (!convDesc) return WK_BAD("cudnnSetConvolutionGroupCount: convDesc is NULL");
  if (groupCount < 1)
    return WK_BAD("cudnnSetConvolutionGroupCount: group count %d must be positive", groupCount);
  convDesc->groups = groupCount;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc,
                                            int *groupCount) {
  if (!convDesc || !groupCount)
    return WK_BAD("cudnnGetConvolutionGroupCount: convDesc or groupCount is NULL");
  *groupCount = convDesc->groups;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc,
                                          cudnnMathType_t mathType) {
  if (!convDesc) return WK_BAD("cudnnSetConvolutionMathType: convDesc is NULL");
  if ((int)mathType < CUDNN_DEFAULT_MATH || (int)mathType > CUDNN_FMA_MATH)
    return WK_BAD("cudnnSetConvolutionMathType: %d is not a cudnnMathType_t", (int)mathType);
  convDesc->math = mathType;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc,
                                          cudnnMathType_t *mathType) {
  if (!convDesc || !mathType)
    return WK_BAD("cudnnGetConvolutionMathType: convDesc or mathType is NULL");
  *mathType = convDesc->math;
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== convolution geometry */

/* One convolution's sizes. x-side: n, c, h, w; filter: k output channels,
 * cg input channels per group, r x s; y-side: oh x ow. */
typedef struct wk_geo {
  int n, c, h, w, k, cg, kg, groups, r, s, oh, ow;
  int ph, pw, u, v, dh, dw;
  int flip; /* CUDNN_CONVOLUTION: the filter is flipped spatially */
} wk_geo;

/* cudnnGetConvolution2dForwardOutputDim (API reference):
 *   outputDim = 1 + (inputDim + 2*pad - (((filterDim-1)*dilation)+1)) / convolutionStride
 * with the input's channels equal to the filter's per group times the groups. */
static cudnnStatus_t wk_out_dims(const char *fn, const struct cudnnConvolutionStruct *cv,
                                 const struct cudnnTensorStruct *x,
                                 const struct cudnnFilterStruct *w, int *oh, int *ow) {
  if (!cv || !cv->set) return WK_BAD("%s: convolution descriptor NULL or not set", fn);
  if (!x || !x->set) return WK_BAD("%s: input tensor descriptor NULL or not set", fn);
  if (!w || !w->set) return WK_BAD("%s: filter descriptor NULL or not set", fn);
  if (x->c != w->c * cv->groups)
    return WK_BAD("%s: the input has %d channels, the filter %d per group x %d groups", fn, x->c,
                  w->c, cv->groups);
  const long span_h = (long)x->h + 2L * cv->pad_h - ((long)(w->r - 1) * cv->dil_h + 1);
  const long span_w = (long)x->w + 2L * cv->pad_w - ((long)(w->s - 1) * cv->dil_w + 1);
  if (span_h < 0 || span_w < 0)
    return WK_BAD("%s: the %dx%d filter (dilation %d, %d) is larger than the %dx%d input padded "
                  "by %d, %d",
                  fn, w->r, w->s, cv->dil_h, cv->dil_w, x->h, x->w, cv->pad_h, cv->pad_w);
  *oh = (int)(1 + span_h / cv->u);
  *ow = (int)(1 + span_w / cv->v);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t convDesc,
                                                    const cudnnTensorDescriptor_t inputTensorDesc,
                                                    const cudnnFilterDescriptor_t filterDesc,
                                                    int *n, int *c, int *h, int *w) {
  static const char fn[] = "cudnnGetConvolution2dForwardOutputDim";
  if (!n || !c || !h || !w) return WK_BAD("%s: an output pointer is NULL", fn);
  int oh = 0, ow = 0;
  WK_TRY(wk_out_dims(fn, convDesc, inputTensorDesc, filterDesc, &oh, &ow));
  *n = inputTensorDesc->n;
  *c = filterDesc->k;
  *h = oh;
  *w = ow;
  return CUDNN_STATUS_SUCCESS;
}

/* The three directions, and the checks they share: xd is the input-side
 * tensor (x or dx), yd the output-side one (y or dy). From the
 * cudnnConvolutionForward / BackwardData / BackwardFilter API reference:
 * BAD_PARAM when x, w and y differ in data type, the channels per group do
 * not match, the output channels are not a multiple of the groups, or the
 * filter is larger than the padded input; an output whose spatial size is not
 * cudnnGetConvolutionNdForwardOutputDim's is NOT_SUPPORTED (forward). The
 * supported type configurations (cudnnConvolutionForward's table): FLOAT,
 * PSEUDO_HALF and PSEUDO_BFLOAT16 (FLOAT compute), DOUBLE (DOUBLE compute). */
typedef enum { WK_FWD, WK_BWD_DATA, WK_BWD_FILTER } wk_dir;
_Static_assert((int)WK_FWD == (int)WK_FAKE_CONV_FWD &&
                   (int)WK_BWD_DATA == (int)WK_FAKE_CONV_BWD_DATA &&
                   (int)WK_BWD_FILTER == (int)WK_FAKE_CONV_BWD_FILTER,
               "fake_cudnn.h's wk_fake_conv_dir names the same directions");

static const char *const wk_dir_fn[3] = {"cudnnConvolutionForward", "cudnnConvolutionBackwardData",
                                         "cudnnConvolutionBackwardFilter"};

static cudnnStatus_t wk_conv_check(const char *fn, wk_dir dir,
                                   const struct cudnnTensorStruct *xd,
                                   const struct cudnnFilterStruct *wd,
                                   const struct cudnnConvolutionStruct *cv,
                                   const struct cudnnTensorStruct *yd, wk_geo *g) {
  if (!yd || !yd->set) return WK_BAD("%s: output-side tensor descriptor NULL or not set", fn);
  int oh = 0, ow = 0;
  WK_TRY(wk_out_dims(fn, cv, xd, wd, &oh, &ow));
  if (xd->dtype != wd->dtype || yd->dtype != wd->dtype)
    return WK_BAD("%s: data types differ (input-side %d, filter %d, output-side %d)", fn,
                  (int)xd->dtype, (int)wd->dtype, (int)yd->dtype);
  const cudnnDataType_t t = wd->dtype;
  if (t == CUDNN_DATA_HALF && cv->compute == CUDNN_DATA_HALF)
    wk_fake_die(WK_LIB, "%s: TRUE_HALF_CONFIG (HALF compute type) not implemented", fn);
  const int ok_type = (t == CUDNN_DATA_DOUBLE) ? cv->compute == CUDNN_DATA_DOUBLE
                                                : cv->compute == CUDNN_DATA_FLOAT;
  if (!ok_type)
    return wk_fail(CUDNN_STATUS_NOT_SUPPORTED,
                   "%s: data type %d with compute type %d is no supported configuration", fn,
                   (int)t, (int)cv->compute);
  if (wd->k % cv->groups)
    return WK_BAD("%s: %d output channels are not a multiple of %d groups", fn, wd->k,
                  cv->groups);
  if (yd->n != xd->n || yd->c != wd->k)
    return WK_BAD("%s: the output-side tensor is %dx%d (n x c), expected %dx%d", fn, yd->n, yd->c,
                  xd->n, wd->k);
  if (yd->h != oh || yd->w != ow)
    return wk_fail(dir == WK_FWD ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_BAD_PARAM,
                   "%s: the output-side tensor is %dx%d (h x w), the convolution gives %dx%d", fn,
                   yd->h, yd->w, oh, ow);
  *g = (wk_geo){.n = xd->n, .c = xd->c, .h = xd->h, .w = xd->w, .k = wd->k, .cg = wd->c,
                .kg = wd->k / cv->groups, .groups = cv->groups, .r = wd->r, .s = wd->s,
                .oh = oh, .ow = ow, .ph = cv->pad_h, .pw = cv->pad_w, .u = cv->u, .v = cv->v,
                .dh = cv->dil_h, .dw = cv->dil_w, .flip = cv->mode == CUDNN_CONVOLUTION};
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== algorithms */

/* The algorithms this fake offers per direction, in the heuristics' order
 * (the first needs a workspace, so callers' workspace limits matter), then
 * the rest of each enum as NOT_SUPPORTED. Determinism as the API reference's
 * enums say (BWD_DATA_ALGO_0, BWD_FILTER_ALGO_0 and _3 are non-deterministic).
 * `speed` scales the modelled time: the fastest needs workspace, and for
 * backward-filter it is non-deterministic, so a deterministic choice differs. */
typedef enum { WK_WS_NONE, WK_WS_TAPS, WK_WS_IM2COL, WK_WS_DX_IMAGE, WK_WS_DW_F32 } wk_ws_kind;

typedef struct wk_algo {
  int algo;
  int supported;
  wk_ws_kind ws;
  int deterministic;
  double speed;
} wk_algo;

#define WK_ALGOS_MAX 8

static const wk_algo wk_fwd_algos[] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, 1, WK_WS_TAPS, 1, 0.70},
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, 1, WK_WS_IM2COL, 1, 0.85},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 1, WK_WS_NONE, 1, 1.00},
    {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, 0, WK_WS_NONE, 1, 0},
};
static const wk_algo wk_bwd_data_algos[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, 1, WK_WS_DX_IMAGE, 1, 0.80},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, 1, WK_WS_NONE, 0, 0.90},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, 0, WK_WS_NONE, 1, 0},
};
static const wk_algo wk_bwd_filter_algos[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, 1, WK_WS_TAPS, 0, 0.60},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, 1, WK_WS_DW_F32, 1, 0.80},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, 1, WK_WS_NONE, 0, 1.00},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, 0, WK_WS_NONE, 1, 0},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, 0, WK_WS_NONE, 1, 0},
};

static const wk_algo *wk_algos(wk_dir d, int *count) {
  switch (d) {
  case WK_FWD: *count = (int)(sizeof wk_fwd_algos / sizeof *wk_fwd_algos); return wk_fwd_algos;
  case WK_BWD_DATA:
    *count = (int)(sizeof wk_bwd_data_algos / sizeof *wk_bwd_data_algos);
    return wk_bwd_data_algos;
  case WK_BWD_FILTER:
    *count = (int)(sizeof wk_bwd_filter_algos / sizeof *wk_bwd_filter_algos);
    return wk_bwd_filter_algos;
  }
  *count = 0;
  return NULL;
}

static const int wk_algo_count[3] = {CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                     CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};

/* Workspace bytes an algorithm uses for geometry g and element size es. */
static size_t wk_ws_bytes(wk_ws_kind kind, const wk_geo *g, size_t es) {
  switch (kind) {
  case WK_WS_NONE: return 0;
  case WK_WS_TAPS: return (size_t)g->cg * g->r * g->s * 2 * sizeof(int32_t) + 256;
  case WK_WS_IM2COL: return (size_t)g->c * g->r * g->s * g->oh * g->ow * es;
  case WK_WS_DX_IMAGE: return (size_t)g->c * g->h * g->w * sizeof(float);
  case WK_WS_DW_F32: return (size_t)g->k * g->cg * g->r * g->s * sizeof(float);
  }
  return 0;
}

/* A modelled run time in ms: the multiply-adds at 2 TFLOP/s, plus a launch. */
static float wk_model_ms(const wk_algo *a, const wk_geo *g) {
  const double flops = 2.0 * g->n * g->k * g->oh * g->ow * (double)g->cg * g->r * g->s;
  return (float)((0.005 + flops / 2e9) * a->speed);
}

/* The algorithm `algo` of direction d, or NULL (with *status) when cuDNN
 * would refuse it: an invalid enumerant is BAD_PARAM, one this fake reports
 * as unsupported NOT_SUPPORTED. */
static const wk_algo *wk_algo_find(wk_dir d, int algo, cudnnStatus_t *status) {
  if (algo < 0 || algo >= wk_algo_count[d]) {
    *status = WK_BAD("%s: algorithm %d is not one of the direction's enum", wk_dir_fn[d], algo);
    return NULL;
  }
  int count;
  const wk_algo *t = wk_algos(d, &count);
  for (int i = 0; i < count; i++)
    if (t[i].algo == algo) {
      if (t[i].supported) return &t[i];
      break;
    }
  *status = wk_fail(CUDNN_STATUS_NOT_SUPPORTED,
                    "%s: algorithm %d does not support these parameters (this fake offers it "
                    "for none)",
                    wk_dir_fn[d], algo);
  return NULL;
}

/* One perf result, whichever of the three perf structs it goes into (they
 * share these fields). */
typedef struct wk_perf {
  int algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
} wk_perf;

/* The perf results of direction d: heuristics (ws_given NULL: all supported
 * ones succeed, in the heuristics' order, times modelled) or a timing within
 * *ws_given bytes (sorted by time, fastest first; those needing more
 * workspace fail with ALLOC_FAILED, as the perf struct's reference says; the
 * unsupported ones last). The math type reported is the descriptor's: the
 * one the algorithm ran or would run with. */
static int wk_perf_list(wk_dir d, const wk_geo *g, size_t es, cudnnMathType_t math,
                        const size_t *ws_given, wk_perf *out) {
  int count;
  const wk_algo *t = wk_algos(d, &count);
  int n = 0;
  for (int pass = 0; pass < 3; pass++)
    for (int i = 0; i < count; i++) {
      const wk_algo *a = &t[i];
      const size_t need = a->supported ? wk_ws_bytes(a->ws, g, es) : 0;
      const int fits = !ws_given || need <= *ws_given;
      /* pass 0: those that run; 1: those without room; 2: the unsupported */
      const int p = !a->supported ? 2 : fits ? 0 : 1;
      if (p != pass) continue;
      wk_perf *o = &out[n++];
      o->algo = a->algo;
      o->memory = need;
      o->determinism = a->deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
      o->math = math;
      if (p == 0) {
        o->status = CUDNN_STATUS_SUCCESS;
        o->time = wk_model_ms(a, g);
      } else {
        /* CUDNN_STATUS_ALLOC_FAILED, deprecated in cuDNN 9, is this value */
        o->status = p == 1 ? CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED
                           : CUDNN_STATUS_NOT_SUPPORTED;
        o->time = -1.0f;
      }
    }
  if (ws_given) { /* a timing: the runs that succeeded, fastest first (stable) */
    for (int i = 1; i < n && out[i].status == CUDNN_STATUS_SUCCESS; i++)
      for (int j = i; j > 0 && out[j].time < out[j - 1].time; j--) {
        const wk_perf tmp = out[j];
        out[j] = out[j - 1];
        out[j - 1] = tmp;
      }
  }
  return n;
}

#define WK_PERF_PUT(dst, src, n, algo_t)                                                   \
  do {                                                                                     \
    for (int i_ = 0; i_ < (n); i_++) {                                                     \
      memset(&(dst)[i_], 0, sizeof (dst)[i_]);                                             \
      (dst)[i_].algo = (algo_t)(src)[i_].algo;                                             \
      (dst)[i_].status = (src)[i_].status;                                                 \
      (dst)[i_].time = (src)[i_].time;                                                     \
      (dst)[i_].memory = (src)[i_].memory;                                                 \
      (dst)[i_].determinism = (src)[i_].determinism;                                       \
      (dst)[i_].mathType = (src)[i_].math;                                                 \
    }                                                                                      \
  } while (0)

static cudnnStatus_t wk_perf_args(const char *fn, cudnnHandle_t handle, int requested,
                                  const int *returned, const void *perf) {
  if (!handle) return WK_BAD("%s: handle is NULL", fn);
  if (requested <= 0) return WK_BAD("%s: requestedAlgoCount %d must be positive", fn, requested);
  if (!returned || !perf) return WK_BAD("%s: returnedAlgoCount or perfResults is NULL", fn);
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== convolution work */

/* One direction's work: xd/x the input-side tensor (x or dx), wd/w the
 * filter (w or dw), yd/y the output-side tensor (y or dy). The output is
 * y (forward), x (backward data) or w (backward filter). `runs` times (a
 * timing runs every candidate), each run first overwriting ws_need[i] bytes
 * of the workspace, as a real algorithm's scratch would. fn: the call its
 * messages name (NULL: the direction's legacy function); f16_inputs: the
 * inputs are read rounded to fp16 (fake_cudnn_graph.c's down-converting
 * engine). */
typedef struct wk_conv_ctx {
  wk_dir dir;
  const char *fn;
  int f16_inputs;
  struct cudnnTensorStruct xd, yd;
  struct cudnnFilterStruct wd;
  wk_geo g;
  const void *x, *w, *y; /* the inputs (the output's slot unused) */
  void *out;
  double alpha, beta;
  void *ws;
  size_t ws_bytes;
  int runs;
  size_t ws_need[WK_ALGOS_MAX];
} wk_conv_ctx;

/* The filter's stored (r, s) for tap (r, s) of the sum: CUDNN_CONVOLUTION
 * flips the filter spatially, CUDNN_CROSS_CORRELATION does not (developer
 * guide, "Convolution Formulas"). */
static int wk_tap(int flip, int i, int n) { return flip ? n - 1 - i : i; }

/* Input element `at` of p as the work reads it: with cx->f16_inputs rounded
 * to IEEE half (round to nearest even, through float), in the copies below,
 * never in the caller's buffers. */
static double wk_input(const wk_conv_ctx *cx, const void *p, wk_fake_dtype t, size_t at) {
  const double v = wk_fake_load(p, t, at);
  if (!cx->f16_inputs) return v;
  uint16_t h;
  wk_fake_store(&h, WK_FAKE_F16, 0, v);
  return wk_fake_load(&h, WK_FAKE_F16, 0);
}

/* The loops below run on dense double copies of the inputs (wk_input's),
 * gathered once through the descriptors: X[n][c][h][w], W[k][ci][r][s] with
 * the flip of CUDNN_CONVOLUTION applied (so the sums read W at the tap index),
 * Y[n][k][oh][ow]; the result is scattered back through the output's
 * descriptor with alpha and beta. */
static double *wk_gather_tensor(const wk_conv_ctx *cx, const struct cudnnTensorStruct *d,
                                const void *p, wk_fake_dtype t) {
  double *a = malloc((size_t)d->n * d->c * d->h * d->w * sizeof *a);
  if (!a) wk_fake_die("cuDNN", "out of host memory");
  size_t i = 0;
  for (int n = 0; n < d->n; n++)
    for (int c = 0; c < d->c; c++)
      for (int h = 0; h < d->h; h++)
        for (int w = 0; w < d->w; w++) a[i++] = wk_input(cx, p, t, wk_fake_at(d, n, c, h, w));
  return a;
}

static double *wk_gather_filter(const wk_conv_ctx *cx, const struct cudnnFilterStruct *f,
                                const void *p, wk_fake_dtype t, int flip) {
  double *a = malloc((size_t)f->k * f->c * f->r * f->s * sizeof *a);
  if (!a) wk_fake_die("cuDNN", "out of host memory");
  size_t i = 0;
  for (int k = 0; k < f->k; k++)
    for (int c = 0; c < f->c; c++)
      for (int r = 0; r < f->r; r++)
        for (int s = 0; s < f->s; s++)
          a[i++] = wk_input(cx, p, t,
                            wk_filter_at(f, k, c, wk_tap(flip, r, f->r), wk_tap(flip, s, f->s)));
  return a;
}

/* out = alpha * acc + beta * out (beta 0: out not read, so it may hold NaN) */
static void wk_blend(const wk_conv_ctx *c, wk_fake_dtype t, size_t at, double acc) {
  double v = c->alpha * acc;
  if (c->beta != 0.0) v += c->beta * wk_fake_load(c->out, t, at);
  wk_fake_store(c->out, t, at, v);
}

/* The outputs o in [0, n_out) with 0 <= o*stride + off < n_in, as [*lo, *hi):
 * the loops below visit only those, rather than test every tap, and so add
 * each output's terms in the order the plain loops would. */
static void wk_span(int n_out, int stride, int off, int n_in, int *lo, int *hi) {
  *lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  *hi = n_in - off > 0 ? (n_in - off + stride - 1) / stride : 0;
  if (*hi > n_out) *hi = n_out;
  if (*lo > *hi) *lo = *hi;
}

/* y[n, k, oh, ow] = sum over ci in k's group, r, s (in that order) of
 *   x[n, g*cg + ci, oh*u - ph + r*dh, ow*v - pw + s*dw] * w[k, ci, tap(r), tap(s)],
 * accumulated for a whole output plane at a time (each output's terms still
 * in the order ci, r, s), then blended into y. */
static void wk_conv_forward(const wk_conv_ctx *c) {
  const wk_geo *g = &c->g;
  const wk_fake_dtype t = wk_fake_cudnn_dtype(c->wd.dtype);
  double *X = wk_gather_tensor(c, &c->xd, c->x, t);
  double *W = wk_gather_filter(c, &c->wd, c->w, t, g->flip);
  double *P = malloc((size_t)g->oh * g->ow * sizeof *P);
  if (!P) wk_fake_die("cuDNN", "out of host memory");
  for (int n = 0; n < g->n; n++)
    for (int k = 0; k < g->k; k++) {
      const int c0 = (k / g->kg) * g->cg;
      memset(P, 0, (size_t)g->oh * g->ow * sizeof *P);
      for (int ci = 0; ci < g->cg; ci++) {
        const double *xc = X + ((size_t)n * g->c + c0 + ci) * g->h * g->w;
        const double *wc = W + ((size_t)k * g->cg + ci) * g->r * g->s;
        for (int r = 0; r < g->r; r++) {
          int oh0, oh1;
          wk_span(g->oh, g->u, r * g->dh - g->ph, g->h, &oh0, &oh1);
          for (int s = 0; s < g->s; s++) {
            const double wv = wc[r * g->s + s];
            const int off = s * g->dw - g->pw;
            int ow0, ow1;
            wk_span(g->ow, g->v, off, g->w, &ow0, &ow1);
            for (int oh = oh0; oh < oh1; oh++) {
              /* the row's first tap may lie left of the image: an index, not a pointer */
              const ptrdiff_t xr = (ptrdiff_t)(oh * g->u - g->ph + r * g->dh) * g->w + off;
              double *pr = P + (size_t)oh * g->ow;
              for (int ow = ow0; ow < ow1; ow++) pr[ow] += xc[xr + (ptrdiff_t)ow * g->v] * wv;
            }
          }
        }
      }
      for (int oh = 0; oh < g->oh; oh++)
        for (int ow = 0; ow < g->ow; ow++)
          wk_blend(c, t, wk_fake_at(&c->yd, n, k, oh, ow), P[(size_t)oh * g->ow + ow]);
    }
  free(P);
  free(X);
  free(W);
}

/* dx[n, g*cg + ci, ih, iw] = sum over k in group g, r, s with
 * ih = oh*u - ph + r*dh and iw = ow*v - pw + s*dw for some output (oh, ow) of
 *   dy[n, k, oh, ow] * w[k, ci, tap(r), tap(s)]: the adjoint of the forward,
 * accumulated here by scattering each dy term (in the order n, k, oh, ow, ci,
 * r, s), then blended into dx. */
static void wk_conv_backward_data(const wk_conv_ctx *c) {
  const wk_geo *g = &c->g;
  const wk_fake_dtype t = wk_fake_cudnn_dtype(c->wd.dtype);
  double *Y = wk_gather_tensor(c, &c->yd, c->y, t);
  double *W = wk_gather_filter(c, &c->wd, c->w, t, g->flip);
  double *D = calloc((size_t)g->n * g->c * g->h * g->w, sizeof *D);
  if (!D) wk_fake_die("cuDNN", "out of host memory");
  for (int n = 0; n < g->n; n++)
    for (int k = 0; k < g->k; k++) {
      const int c0 = (k / g->kg) * g->cg;
      for (int oh = 0; oh < g->oh; oh++) {
        int r0, r1;
        wk_span(g->r, g->dh, oh * g->u - g->ph, g->h, &r0, &r1);
        for (int ow = 0; ow < g->ow; ow++) {
          const double dy = Y[(((size_t)n * g->k + k) * g->oh + oh) * g->ow + ow];
          int s0, s1;
          wk_span(g->s, g->dw, ow * g->v - g->pw, g->w, &s0, &s1);
          for (int ci = 0; ci < g->cg; ci++) {
            double *dc = D + ((size_t)n * g->c + c0 + ci) * g->h * g->w;
            const double *wc = W + ((size_t)k * g->cg + ci) * g->r * g->s;
            for (int r = r0; r < r1; r++) {
              const ptrdiff_t dr =
                  (ptrdiff_t)(oh * g->u - g->ph + r * g->dh) * g->w + ow * g->v - g->pw;
              for (int s = s0; s < s1; s++) dc[dr + (ptrdiff_t)s * g->dw] += dy * wc[r * g->s + s];
            }
          }
        }
      }
    }
  size_t i = 0;
  for (int n = 0; n < g->n; n++)
    for (int ch = 0; ch < g->c; ch++)
      for (int ih = 0; ih < g->h; ih++)
        for (int iw = 0; iw < g->w; iw++) wk_blend(c, t, wk_fake_at(&c->xd, n, ch, ih, iw), D[i++]);
  free(D);
  free(Y);
  free(W);
}

/* dw[k, ci, tap(r), tap(s)] = sum over n, oh, ow (in that order) of
 *   x[n, g*cg + ci, oh*u - ph + r*dh, ow*v - pw + s*dw] * dy[n, k, oh, ow] */
static void wk_conv_backward_filter(const wk_conv_ctx *c) {
  const wk_geo *g = &c->g;
  const wk_fake_dtype t = wk_fake_cudnn_dtype(c->wd.dtype);
  double *X = wk_gather_tensor(c, &c->xd, c->x, t), *Y = wk_gather_tensor(c, &c->yd, c->y, t);
  for (int k = 0; k < g->k; k++) {
    const int c0 = (k / g->kg) * g->cg;
    for (int ci = 0; ci < g->cg; ci++)
      for (int r = 0; r < g->r; r++) {
        int oh0, oh1;
        wk_span(g->oh, g->u, r * g->dh - g->ph, g->h, &oh0, &oh1);
        for (int s = 0; s < g->s; s++) {
          const int off = s * g->dw - g->pw;
          int ow0, ow1;
          wk_span(g->ow, g->v, off, g->w, &ow0, &ow1);
          double acc = 0.0;
          for (int n = 0; n < g->n; n++) {
            const double *xc = X + ((size_t)n * g->c + c0 + ci) * g->h * g->w;
            const double *yk = Y + ((size_t)n * g->k + k) * g->oh * g->ow;
            for (int oh = oh0; oh < oh1; oh++) {
              const ptrdiff_t xr = (ptrdiff_t)(oh * g->u - g->ph + r * g->dh) * g->w + off;
              const double *yr = yk + (size_t)oh * g->ow;
              for (int ow = ow0; ow < ow1; ow++) acc += xc[xr + (ptrdiff_t)ow * g->v] * yr[ow];
            }
          }
          wk_blend(c, t,
                   wk_filter_at(&c->wd, k, ci, wk_tap(g->flip, r, g->r), wk_tap(g->flip, s, g->s)),
                   acc);
        }
      }
  }
  free(X);
  free(Y);
}

/* The geometry is the descriptors' (wk_conv_prepare had wk_conv_check derive
 * it from them), so the dense copies, gathered through the descriptors, hold
 * every element the loops above read by the geometry. */
static void wk_conv_check_geo(const wk_conv_ctx *c, const char *fn) {
  const wk_geo *g = &c->g;
  if (c->xd.n != g->n || c->xd.c != g->c || c->xd.h != g->h || c->xd.w != g->w ||
      c->yd.n != g->n || c->yd.c != g->k || c->yd.h != g->oh || c->yd.w != g->ow ||
      c->wd.k != g->k || c->wd.c != g->cg || c->wd.r != g->r || c->wd.s != g->s)
    wk_fake_die(WK_LIB, "%s: the work's geometry is not its descriptors'", fn);
}

static void wk_conv_run(void *arg) {
  const wk_conv_ctx *c = arg;
  const char *fn = c->fn ? c->fn : wk_dir_fn[c->dir];
  wk_conv_check_geo(c, fn);
  const size_t xb = wk_fake_tensor_bytes(&c->xd), yb = wk_fake_tensor_bytes(&c->yd),
               wb = wk_filter_bytes(&c->wd);
  /* the inputs and the output, by direction, with their extents */
  const void *in1, *in2;
  size_t n1, n2, n_out;
  const char *name1, *name2, *name_out;
  switch (c->dir) {
  case WK_FWD:
    in1 = c->x, n1 = xb, name1 = "x", in2 = c->w, n2 = wb, name2 = "w";
    n_out = yb, name_out = "y";
    break;
  case WK_BWD_DATA:
    in1 = c->w, n1 = wb, name1 = "w", in2 = c->y, n2 = yb, name2 = "dy";
    n_out = xb, name_out = "dx";
    break;
  default:
    in1 = c->x, n1 = xb, name1 = "x", in2 = c->y, n2 = yb, name2 = "dy";
    n_out = wb, name_out = "dw";
    break;
  }
  char what[96];
  snprintf(what, sizeof what, "%s %s", fn, name1);
  wk_fake_check_device(in1, n1, what);
  snprintf(what, sizeof what, "%s %s", fn, name2);
  wk_fake_check_device(in2, n2, what);
  snprintf(what, sizeof what, "%s %s", fn, name_out);
  wk_fake_check_device(c->out, n_out, what);
  wk_no_overlap(fn, name_out, c->out, n_out, name1, in1, n1);
  wk_no_overlap(fn, name_out, c->out, n_out, name2, in2, n2);
  for (int i = 0; i < c->runs; i++) {
    if (c->ws_need[i]) {
      /* the caller said the workspace has ws_bytes: all of it must be device memory */
      snprintf(what, sizeof what, "%s workSpace", fn);
      wk_fake_check_device(c->ws, c->ws_bytes, what);
      wk_no_overlap(fn, "workSpace", c->ws, c->ws_need[i], name1, in1, n1);
      wk_no_overlap(fn, "workSpace", c->ws, c->ws_need[i], name2, in2, n2);
      wk_no_overlap(fn, "workSpace", c->ws, c->ws_need[i], name_out, c->out, n_out);
      memset(c->ws, 0xff, c->ws_need[i]); /* an algorithm's scratch: NaN bytes */
    }
    switch (c->dir) {
    case WK_FWD: wk_conv_forward(c); break;
    case WK_BWD_DATA: wk_conv_backward_data(c); break;
    case WK_BWD_FILTER: wk_conv_backward_filter(c); break;
    }
  }
}

/* The descriptors and pointers of one call, checked, into *c (runs 0). The
 * pointers: x, w, y as the direction names them (the output among them). */
static cudnnStatus_t wk_conv_prepare(wk_dir dir, cudnnHandle_t handle,
                                     const struct cudnnTensorStruct *xd, const void *x,
                                     const struct cudnnFilterStruct *wd, const void *w,
                                     const struct cudnnConvolutionStruct *cv,
                                     const struct cudnnTensorStruct *yd, const void *y,
                                     wk_conv_ctx *c) {
  const char *fn = wk_dir_fn[dir];
  if (!handle) return WK_BAD("%s: handle is NULL", fn);
  memset(c, 0, sizeof *c);
  WK_TRY(wk_conv_check(fn, dir, xd, wd, cv, yd, &c->g));
  if (!x || !w || !y) return WK_BAD("%s: a data pointer is NULL", fn);
  WK_TRY(wk_aligned(fn, "the input-side data", x, xd->dtype));
  WK_TRY(wk_aligned(fn, "the filter data", w, wd->dtype));
  WK_TRY(wk_aligned(fn, "the output-side data", y, yd->dtype));
  c->dir = dir;
  c->xd = *xd, c->yd = *yd, c->wd = *wd;
  c->x = x, c->w = w, c->y = y;
  switch (dir) {
  case WK_FWD: c->out = (void *)(uintptr_t)y, c->y = NULL; break;
  case WK_BWD_DATA: c->out = (void *)(uintptr_t)x, c->x = NULL; break;
  case WK_BWD_FILTER: c->out = (void *)(uintptr_t)w, c->w = NULL; break;
  }
  return CUDNN_STATUS_SUCCESS;
}

/* cudnnConvolution{Forward,BackwardData,BackwardFilter}: out = alpha * op + beta * out
 * (beta 0: out is not read, so it may hold NaN). An algorithm needing more
 * workspace than given is refused (BAD_PARAM, as cuDNN answers). */
static cudnnStatus_t wk_conv_call(wk_dir dir, cudnnHandle_t handle, const void *alpha,
                                  const struct cudnnTensorStruct *xd, const void *x,
                                  const struct cudnnFilterStruct *wd, const void *w,
                                  const struct cudnnConvolutionStruct *cv, int algo,
                                  void *workSpace, size_t workSpaceSizeInBytes, const void *beta,
                                  const struct cudnnTensorStruct *yd, const void *y) {
  const char *fn = wk_dir_fn[dir];
  wk_conv_ctx c;
  WK_TRY(wk_conv_prepare(dir, handle, xd, x, wd, w, cv, yd, y, &c));
  if (!alpha || !beta) return WK_BAD("%s: alpha or beta is NULL", fn);
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  const wk_algo *a = wk_algo_find(dir, algo, &st);
  if (!a) return st;
  /* $WK_FAKE_CUDNN_EXEC_REFUSES=1: the call refuses, with one of cuDNN 9's
   * detailed NOT_SUPPORTED codes, the algorithm the heuristics rank first for
   * these descriptors, which the ranking and the workspace query accept */
  const char *refuses = getenv("WK_FAKE_CUDNN_EXEC_REFUSES");
  if (refuses && strcmp(refuses, "1") == 0) {
    wk_perf list[WK_ALGOS_MAX];
    const int n = wk_perf_list(dir, &c.g, wk_esize(wd->dtype), cv->math, NULL, list);
    if (n > 0 && list[0].status == CUDNN_STATUS_SUCCESS && list[0].algo == algo)
      return wk_fail(CUDNN_STATUS_NOT_SUPPORTED_SHAPE,
                     "%s: algorithm %d does not support these descriptors "
                     "($WK_FAKE_CUDNN_EXEC_REFUSES)", fn, algo);
  }
  const size_t need = wk_ws_bytes(a->ws, &c.g, wk_esize(wd->dtype));
  if (need > workSpaceSizeInBytes)
    return WK_BAD("%s: algorithm %d needs %zu bytes of workspace, %zu given", fn, algo, need,
                  workSpaceSizeInBytes);
  if (need && !workSpace) return WK_BAD("%s: algorithm %d needs a workspace, none given", fn, algo);
  c.alpha = wk_fake_cudnn_scalar(alpha, wd->dtype);
  c.beta = wk_fake_cudnn_scalar(beta, wd->dtype);
  c.ws = workSpace;
  c.ws_bytes = workSpaceSizeInBytes;
  c.runs = 1;
  c.ws_need[0] = need;
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, wk_conv_run, &c, sizeof c));
}

/* fake_cudnn_graph.c's backend API runs this file's convolution: the checks
 * of wk_conv_check on descriptors it converted from its own, and the work of
 * wk_conv_call with the workspace of its engine (ws_bytes, all of which the
 * work checks and overwrites). See fake_cudnn.h. */
cudnnStatus_t wk_fake_cudnn_conv_check(const char *fn, wk_fake_conv_dir dir,
                                       const struct cudnnTensorStruct *xd,
                                       const struct cudnnFilterStruct *wd,
                                       const struct cudnnConvolutionStruct *cv,
                                       const struct cudnnTensorStruct *yd) {
  wk_geo g;
  return wk_conv_check(fn, (wk_dir)dir, xd, wd, cv, yd, &g);
}

cudnnStatus_t wk_fake_cudnn_conv_enqueue(const char *fn, wk_fake_conv_dir dir,
                                         cudnnHandle_t handle,
                                         const struct cudnnTensorStruct *xd, const void *x,
                                         const struct cudnnFilterStruct *wd, const void *w,
                                         const struct cudnnConvolutionStruct *cv,
                                         const struct cudnnTensorStruct *yd, const void *y,
                                         double alpha, double beta, void *ws, size_t ws_bytes,
                                         int f16_inputs) {
  wk_conv_ctx c;
  WK_TRY(wk_conv_prepare((wk_dir)dir, handle, xd, x, wd, w, cv, yd, y, &c));
  if (ws_bytes && !ws) return WK_BAD("%s: %zu bytes of workspace needed, none given", fn, ws_bytes);
  c.fn = fn;
  c.f16_inputs = f16_inputs;
  c.alpha = alpha;
  c.beta = beta;
  c.ws = ws;
  c.ws_bytes = ws_bytes;
  c.runs = 1;
  c.ws_need[0] = ws_bytes;
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, wk_conv_run, &c, sizeof c));
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void *alpha,
                                      const cudnnTensorDescriptor_t xDesc, const void *x,
                                      const cudnnFilterDescriptor_t wDesc, const void *w,
                                      const cudnnConvolutionDescriptor_t convDesc,
                                      cudnnConvolutionFwdAlgo_t algo, void *workSpace,
                                      size_t workSpaceSizeInBytes, const void *beta,
                                      const cudnnTensorDescriptor_t yDesc, void *y) {
  return wk_conv_call(WK_FWD, handle, alpha, xDesc, x, wDesc, w, convDesc, (int)algo, workSpace,
                      workSpaceSizeInBytes, beta, yDesc, y);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void *alpha,
                                           const cudnnFilterDescriptor_t wDesc, const void *w,
                                           const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                           const cudnnConvolutionDescriptor_t convDesc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void *workSpace,
                                           size_t workSpaceSizeInBytes, const void *beta,
                                           const cudnnTensorDescriptor_t dxDesc, void *dx) {
  return wk_conv_call(WK_BWD_DATA, handle, alpha, dxDesc, dx, wDesc, w, convDesc, (int)algo,
                      workSpace, workSpaceSizeInBytes, beta, dyDesc, dy);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void *alpha,
                                             const cudnnTensorDescriptor_t xDesc, const void *x,
                                             const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo,
                                             void *workSpace, size_t workSpaceSizeInBytes,
                                             const void *beta,
                                             const cudnnFilterDescriptor_t dwDesc, void *dw) {
  return wk_conv_call(WK_BWD_FILTER, handle, alpha, xDesc, x, dwDesc, dw, convDesc, (int)algo,
                      workSpace, workSpaceSizeInBytes, beta, dyDesc, dy);
}

/* ------------------------------------------------------------------ heuristics */

static cudnnStatus_t wk_heuristic(wk_dir dir, const char *fn, cudnnHandle_t handle,
                                  const struct cudnnTensorStruct *xd,
                                  const struct cudnnFilterStruct *wd,
                                  const struct cudnnConvolutionStruct *cv,
                                  const struct cudnnTensorStruct *yd, int requested,
                                  int *returned, wk_perf *list) {
  WK_TRY(wk_perf_args(fn, handle, requested, returned, list));
  wk_geo g;
  WK_TRY(wk_conv_check(fn, dir, xd, wd, cv, yd, &g));
  int n = wk_perf_list(dir, &g, wk_esize(wd->dtype), cv->math, NULL, list);
  /* $WK_FAKE_CUDNN_HEURISTIC_LIES=1: the ranking errs as a performance model
   * can, and the calls then hold the caller to the truth: ranked first, an
   * algorithm this fake does not offer, said to succeed; the first offered
   * one's workspace stated as none */
  const char *lies = getenv("WK_FAKE_CUDNN_HEURISTIC_LIES");
  if (lies && strcmp(lies, "1") == 0) {
    int bad = -1; /* the first unsupported entry, moved to the front */
    for (int i = 0; i < n && bad < 0; i++)
      if (list[i].status == CUDNN_STATUS_NOT_SUPPORTED) bad = i;
    if (bad > 0) {
      wk_perf lie = list[bad];
      lie.status = CUDNN_STATUS_SUCCESS;
      lie.time = 0.001f;
      lie.memory = 0;
      memmove(&list[1], &list[0], (size_t)bad * sizeof *list);
      list[0] = lie;
      list[1].memory = 0;
    }
  }
  *returned = n < requested ? n : requested;
  return CUDNN_STATUS_SUCCESS;
}

/* cudnnGetConvolution*WorkspaceSize: the workspace the call with `algo`
 * asks for (wk_conv_call checks it), NOT_SUPPORTED for an algorithm this
 * fake does not offer, as cuDNN answers one that does not support the
 * descriptors. */
static cudnnStatus_t wk_ws_size(wk_dir dir, const char *fn, cudnnHandle_t handle,
                                const struct cudnnTensorStruct *xd,
                                const struct cudnnFilterStruct *wd,
                                const struct cudnnConvolutionStruct *cv,
                                const struct cudnnTensorStruct *yd, int algo, size_t *bytes) {
  if (!handle) return WK_BAD("%s: handle is NULL", fn);
  if (!bytes) return WK_BAD("%s: sizeInBytes is NULL", fn);
  wk_geo g;
  WK_TRY(wk_conv_check(fn, dir, xd, wd, cv, yd, &g));
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  const wk_algo *a = wk_algo_find(dir, algo, &st);
  if (!a) return st;
  *bytes = wk_ws_bytes(a->ws, &g, wk_esize(wd->dtype));
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnFilterDescriptor_t wDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc,
    cudnnConvolutionFwdAlgo_t algo, size_t *sizeInBytes) {
  return wk_ws_size(WK_FWD, "cudnnGetConvolutionForwardWorkspaceSize", handle, xDesc, wDesc,
                    convDesc, yDesc, (int)algo, sizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc,
    const cudnnTensorDescriptor_t dyDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t dxDesc, cudnnConvolutionBwdDataAlgo_t algo,
    size_t *sizeInBytes) {
  return wk_ws_size(WK_BWD_DATA, "cudnnGetConvolutionBackwardDataWorkspaceSize", handle, dxDesc,
                    wDesc, convDesc, dyDesc, (int)algo, sizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
    const cudnnTensorDescriptor_t dyDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnFilterDescriptor_t gradDesc, cudnnConvolutionBwdFilterAlgo_t algo,
    size_t *sizeInBytes) {
  return wk_ws_size(WK_BWD_FILTER, "cudnnGetConvolutionBackwardFilterWorkspaceSize", handle, xDesc,
                    gradDesc, convDesc, dyDesc, (int)algo, sizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnFilterDescriptor_t filterDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t destDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionFwdAlgoPerf_t *perfResults) {
  wk_perf p[WK_ALGOS_MAX];
  int got = 0;
  WK_TRY(wk_heuristic(WK_FWD, "cudnnGetConvolutionForwardAlgorithm_v7", handle, srcDesc,
                      filterDesc, convDesc, destDesc, requestedAlgoCount,
                      returnedAlgoCount ? &got : NULL, perfResults ? p : NULL));
  WK_PERF_PUT(perfResults, p, got, cudnnConvolutionFwdAlgo_t);
  *returnedAlgoCount = got;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t filterDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t gradDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdDataAlgoPerf_t *perfResults) {
  wk_perf p[WK_ALGOS_MAX];
  int got = 0;
  WK_TRY(wk_heuristic(WK_BWD_DATA, "cudnnGetConvolutionBackwardDataAlgorithm_v7", handle,
                      gradDesc, filterDesc, convDesc, diffDesc, requestedAlgoCount,
                      returnedAlgoCount ? &got : NULL, perfResults ? p : NULL));
  WK_PERF_PUT(perfResults, p, got, cudnnConvolutionBwdDataAlgo_t);
  *returnedAlgoCount = got;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnFilterDescriptor_t gradDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdFilterAlgoPerf_t *perfResults) {
  wk_perf p[WK_ALGOS_MAX];
  int got = 0;
  WK_TRY(wk_heuristic(WK_BWD_FILTER, "cudnnGetConvolutionBackwardFilterAlgorithm_v7", handle,
                      srcDesc, gradDesc, convDesc, diffDesc, requestedAlgoCount,
                      returnedAlgoCount ? &got : NULL, perfResults ? p : NULL));
  WK_PERF_PUT(perfResults, p, got, cudnnConvolutionBwdFilterAlgo_t);
  *returnedAlgoCount = got;
  return CUDNN_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------ timing */

/* cudnnFind*AlgorithmEx: runs every supported algorithm that fits the given
 * workspace on the caller's buffers (the output is overwritten, alpha 1 and
 * beta 0), and reports the modelled times, fastest first. Timing synchronises
 * with the device, which a stream capture forbids: the backend must never
 * time while capturing. */
static cudnnStatus_t wk_timed(wk_dir dir, const char *fn, cudnnHandle_t handle,
                              const struct cudnnTensorStruct *xd, const void *x,
                              const struct cudnnFilterStruct *wd, const void *w,
                              const struct cudnnConvolutionStruct *cv,
                              const struct cudnnTensorStruct *yd, const void *y, int requested,
                              int *returned, wk_perf *list, void *workSpace,
                              size_t workSpaceSizeInBytes) {
  WK_TRY(wk_perf_args(fn, handle, requested, returned, list));
  wk_conv_ctx c;
  WK_TRY(wk_conv_prepare(dir, handle, xd, x, wd, w, cv, yd, y, &c));
  if (workSpaceSizeInBytes && !workSpace)
    return WK_BAD("%s: workSpace is NULL with workSpaceSizeInBytes %zu", fn, workSpaceSizeInBytes);
  if (wk_fake_capturing(handle->stream))
    wk_fake_die(WK_LIB, "%s called while the handle's stream captures a graph (timing "
                "synchronises with the device)", fn);
  const int n = wk_perf_list(dir, &c.g, wk_esize(wd->dtype), cv->math, &workSpaceSizeInBytes, list);
  c.alpha = 1.0;
  c.beta = 0.0;
  c.ws = workSpace;
  c.ws_bytes = workSpaceSizeInBytes;
  c.runs = 0;
  for (int i = 0; i < n; i++)
    if (list[i].status == CUDNN_STATUS_SUCCESS) c.ws_need[c.runs++] = list[i].memory;
  if (c.runs) WK_TRY(wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, wk_conv_run, &c, sizeof c)));
  *returned = n < requested ? n : requested;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void *x,
    const cudnnFilterDescriptor_t wDesc, const void *w,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc, void *y,
    const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionFwdAlgoPerf_t *perfResults, void *workSpace, size_t workSpaceSizeInBytes) {
  wk_perf p[WK_ALGOS_MAX];
  int got = 0;
  WK_TRY(wk_timed(WK_FWD, "cudnnFindConvolutionForwardAlgorithmEx", handle, xDesc, x, wDesc, w,
                  convDesc, yDesc, y, requestedAlgoCount, returnedAlgoCount ? &got : NULL,
                  perfResults ? p : NULL, workSpace, workSpaceSizeInBytes));
  WK_PERF_PUT(perfResults, p, got, cudnnConvolutionFwdAlgo_t);
  *returnedAlgoCount = got;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const void *w,
    const cudnnTensorDescriptor_t dyDesc, const void *dy,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc, void *dx,
    const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdDataAlgoPerf_t *perfResults, void *workSpace,
    size_t workSpaceSizeInBytes) {
  wk_perf p[WK_ALGOS_MAX];
  int got = 0;
  WK_TRY(wk_timed(WK_BWD_DATA, "cudnnFindConvolutionBackwardDataAlgorithmEx", handle, dxDesc, dx,
                  wDesc, w, convDesc, dyDesc, dy, requestedAlgoCount,
                  returnedAlgoCount ? &got : NULL, perfResults ? p : NULL, workSpace,
                  workSpaceSizeInBytes));
  WK_PERF_PUT(perfResults, p, got, cudnnConvolutionBwdDataAlgo_t);
  *returnedAlgoCount = got;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void *x,
    const cudnnTensorDescriptor_t dyDesc, const void *y,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t dwDesc, void *dw,
    const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdFilterAlgoPerf_t *perfResults, void *workSpace,
    size_t workSpaceSizeInBytes) {
  wk_perf p[WK_ALGOS_MAX];
  int got = 0;
  WK_TRY(wk_timed(WK_BWD_FILTER, "cudnnFindConvolutionBackwardFilterAlgorithmEx", handle, xDesc,
                  x, dwDesc, dw, convDesc, dyDesc, y, requestedAlgoCount,
                  returnedAlgoCount ? &got : NULL, perfResults ? p : NULL, workSpace,
                  workSpaceSizeInBytes));
  WK_PERF_PUT(perfResults, p, got, cudnnConvolutionBwdFilterAlgo_t);
  *returnedAlgoCount = got;
  return CUDNN_STATUS_SUCCESS;
}

/* ================================================================== bias */

/* cudnnConvolutionBackwardBias (API reference): db = alpha * sum over n, h, w
 * of dy + beta * db, db being 1 x C x 1 x 1; NOT_SUPPORTED when db's n, h or
 * w is not 1, the channels differ, or the data types differ. */
typedef struct wk_bias_ctx {
  struct cudnnTensorStruct dyd, dbd;
  const void *dy;
  void *db;
  double alpha, beta;
} wk_bias_ctx;

static void wk_bias_run(void *arg) {
  const wk_bias_ctx *c = arg;
  const size_t nb_dy = wk_fake_tensor_bytes(&c->dyd), nb_db = wk_fake_tensor_bytes(&c->dbd);
  wk_fake_check_device(c->dy, nb_dy, "cudnnConvolutionBackwardBias dy");
  wk_fake_check_device(c->db, nb_db, "cudnnConvolutionBackwardBias db");
  wk_no_overlap("cudnnConvolutionBackwardBias", "db", c->db, nb_db, "dy", c->dy, nb_dy);
  const wk_fake_dtype t = wk_fake_cudnn_dtype(c->dyd.dtype);
  const struct cudnnTensorStruct *d = &c->dyd;
  for (int ch = 0; ch < d->c; ch++) {
    double acc = 0.0;
    for (int n = 0; n < d->n; n++)
      for (int h = 0; h < d->h; h++)
        for (int w = 0; w < d->w; w++) acc += wk_fake_load(c->dy, t, wk_fake_at(d, n, ch, h, w));
    const size_t at = wk_fake_at(&c->dbd, 0, ch, 0, 0);
    double v = c->alpha * acc;
    if (c->beta != 0.0) v += c->beta * wk_fake_load(c->db, t, at);
    wk_fake_store(c->db, t, at, v);
  }
}

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t handle, const void *alpha,
                                           const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                           const void *beta, const cudnnTensorDescriptor_t dbDesc,
                                           void *db) {
  static const char fn[] = "cudnnConvolutionBackwardBias";
  if (!handle) return WK_BAD("%s: handle is NULL", fn);
  if (!dyDesc || !dyDesc->set || !dbDesc || !dbDesc->set)
    return WK_BAD("%s: a tensor descriptor is NULL or not set", fn);
  if (!alpha || !beta || !dy || !db) return WK_BAD("%s: a pointer is NULL", fn);
  if (dbDesc->n != 1 || dbDesc->h != 1 || dbDesc->w != 1 || dbDesc->c != dyDesc->c)
    return wk_fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: db is %dx%dx%dx%d, expected 1x%dx1x1", fn,
                   dbDesc->n, dbDesc->c, dbDesc->h, dbDesc->w, dyDesc->c);
  if (dbDesc->dtype != dyDesc->dtype)
    return wk_fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: dy's data type %d differs from db's %d", fn,
                   (int)dyDesc->dtype, (int)dbDesc->dtype);
  WK_TRY(wk_aligned(fn, "dy", dy, dyDesc->dtype));
  WK_TRY(wk_aligned(fn, "db", db, dbDesc->dtype));
  wk_bias_ctx c = {.dyd = *dyDesc, .dbd = *dbDesc, .dy = dy, .db = db,
                   .alpha = wk_fake_cudnn_scalar(alpha, dbDesc->dtype), .beta = wk_fake_cudnn_scalar(beta, dbDesc->dtype)};
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, wk_bias_run, &c, sizeof c));
}

/* cudnnAddTensor (API reference): C = alpha * A + beta * C, where each
 * dimension of A equals C's or is 1, A's value then being used across that
 * dimension (broadcast). NOT_SUPPORTED when A's dimensions are incompatible
 * with C's or the data types differ. */
typedef struct wk_add_ctx {
  struct cudnnTensorStruct ad, cd;
  const void *a;
  void *cp;
  double alpha, beta;
} wk_add_ctx;

static void wk_add_run(void *arg) {
  const wk_add_ctx *c = arg;
  const size_t na = wk_fake_tensor_bytes(&c->ad), nc = wk_fake_tensor_bytes(&c->cd);
  wk_fake_check_device(c->a, na, "cudnnAddTensor A");
  wk_fake_check_device(c->cp, nc, "cudnnAddTensor C");
  /* elementwise in place (A the very tensor C) is well defined; any other overlap is not */
  const int same = c->a == c->cp && memcmp(&c->ad, &c->cd, sizeof c->ad) == 0;
  if (!same) wk_no_overlap("cudnnAddTensor", "C", c->cp, nc, "A", c->a, na);
  const wk_fake_dtype t = wk_fake_cudnn_dtype(c->cd.dtype);
  const struct cudnnTensorStruct *ad = &c->ad, *cd = &c->cd;
  for (int n = 0; n < cd->n; n++)
    for (int ch = 0; ch < cd->c; ch++)
      for (int h = 0; h < cd->h; h++)
        for (int w = 0; w < cd->w; w++) {
          const size_t ia = wk_fake_at(ad, ad->n == 1 ? 0 : n, ad->c == 1 ? 0 : ch,
                                       ad->h == 1 ? 0 : h, ad->w == 1 ? 0 : w);
          const size_t ic = wk_fake_at(cd, n, ch, h, w);
          double v = c->alpha * wk_fake_load(c->a, t, ia);
          if (c->beta != 0.0) v += c->beta * wk_fake_load(c->cp, t, ic);
          wk_fake_store(c->cp, t, ic, v);
        }
}

cudnnStatus_t cudnnAddTensor(cudnnHandle_t handle, const void *alpha,
                             const cudnnTensorDescriptor_t aDesc, const void *A, const void *beta,
                             const cudnnTensorDescriptor_t cDesc, void *C) {
  static const char fn[] = "cudnnAddTensor";
  if (!handle) return WK_BAD("%s: handle is NULL", fn);
  if (!aDesc || !aDesc->set || !cDesc || !cDesc->set)
    return WK_BAD("%s: a tensor descriptor is NULL or not set", fn);
  if (!alpha || !beta || !A || !C) return WK_BAD("%s: a pointer is NULL", fn);
  const struct cudnnTensorStruct *a = aDesc, *cc = cDesc;
  if ((a->n != cc->n && a->n != 1) || (a->c != cc->c && a->c != 1) ||
      (a->h != cc->h && a->h != 1) || (a->w != cc->w && a->w != 1))
    return wk_fail(CUDNN_STATUS_NOT_SUPPORTED,
                   "%s: A (%dx%dx%dx%d) does not broadcast to C (%dx%dx%dx%d)", fn, a->n, a->c,
                   a->h, a->w, cc->n, cc->c, cc->h, cc->w);
  if (a->dtype != cc->dtype)
    return wk_fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: A's data type %d differs from C's %d", fn,
                   (int)a->dtype, (int)cc->dtype);
  WK_TRY(wk_aligned(fn, "A", A, a->dtype));
  WK_TRY(wk_aligned(fn, "C", C, cc->dtype));
  wk_add_ctx c = {.ad = *a, .cd = *cc, .a = A, .cp = C, .alpha = wk_fake_cudnn_scalar(alpha, cc->dtype),
                  .beta = wk_fake_cudnn_scalar(beta, cc->dtype)};
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, wk_add_run, &c, sizeof c));
}

/* ================================================================== pooling */

cudnnStatus_t cudnnCreatePoolingDescriptor(cudnnPoolingDescriptor_t *poolingDesc) {
  if (!poolingDesc) return WK_BAD("cudnnCreatePoolingDescriptor: poolingDesc is NULL");
  struct cudnnPoolingStruct *p;
  WK_TRY(wk_new_desc("cudnnCreatePoolingDescriptor", sizeof *p, (void **)&p));
  *poolingDesc = p;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyPoolingDescriptor(cudnnPoolingDescriptor_t poolingDesc) {
  free(poolingDesc);
  return CUDNN_STATUS_SUCCESS;
}

/* cudnnSetPooling2dDescriptor (API reference): BAD_PARAM for a window or
 * stride that is not positive (a zero stride has no output formula), a
 * negative padding, or an invalid mode or NaN option. */
cudnnStatus_t cudnnSetPooling2dDescriptor(cudnnPoolingDescriptor_t poolingDesc,
                                          cudnnPoolingMode_t mode,
                                          cudnnNanPropagation_t maxpoolingNanOpt,
                                          int windowHeight, int windowWidth, int verticalPadding,
                                          int horizontalPadding, int verticalStride,
                                          int horizontalStride) {
  static const char fn[] = "cudnnSetPooling2dDescriptor";
  if (!poolingDesc) return WK_BAD("%s: poolingDesc is NULL", fn);
  if ((int)mode < CUDNN_POOLING_MAX || (int)mode > CUDNN_POOLING_MAX_DETERMINISTIC)
    return WK_BAD("%s: mode %d is not a cudnnPoolingMode_t", fn, (int)mode);
  if ((int)maxpoolingNanOpt != CUDNN_NOT_PROPAGATE_NAN &&
      (int)maxpoolingNanOpt != CUDNN_PROPAGATE_NAN)
    return WK_BAD("%s: NaN option %d is not a cudnnNanPropagation_t", fn, (int)maxpoolingNanOpt);
  if (windowHeight <= 0 || windowWidth <= 0 || verticalStride <= 0 || horizontalStride <= 0)
    return WK_BAD("%s: window %dx%d and stride %dx%d must be positive", fn, windowHeight,
                  windowWidth, verticalStride, horizontalStride);
  if (verticalPadding < 0 || horizontalPadding < 0)
    return WK_BAD("%s: padding %d, %d is negative", fn, verticalPadding, horizontalPadding);
  struct cudnnPoolingStruct *p = poolingDesc;
  p->mode = mode;
  p->nan = maxpoolingNanOpt;
  p->win_h = windowHeight, p->win_w = windowWidth;
  p->pad_h = verticalPadding, p->pad_w = horizontalPadding;
  p->stride_h = verticalStride, p->stride_w = horizontalStride;
  p->set = 1;
  return CUDNN_STATUS_SUCCESS;
}

/* The pooled output's size (cudnnGetPooling2dForwardOutputDim):
 *   outputDim = 1 + (inputDim + 2*padding - windowDim) / poolingStride
 * xd and yd must agree in n, c and data type (cudnnPoolingForward's
 * BAD_PARAM); an output of another size is BAD_PARAM here too (the reference
 * leaves it unsaid; a mismatch is the caller's bug). */
static cudnnStatus_t wk_pool_check(const char *fn, const struct cudnnPoolingStruct *p,
                                   const struct cudnnTensorStruct *xd,
                                   const struct cudnnTensorStruct *yd) {
  if (!p || !p->set) return WK_BAD("%s: pooling descriptor NULL or not set", fn);
  if (!xd || !xd->set || !yd || !yd->set)
    return WK_BAD("%s: a tensor descriptor is NULL or not set", fn);
  if (xd->n != yd->n || xd->c != yd->c)
    return WK_BAD("%s: input n x c %dx%d differs from the output's %dx%d", fn, xd->n, xd->c,
                  yd->n, yd->c);
  if (xd->dtype != yd->dtype)
    return WK_BAD("%s: input data type %d differs from the output's %d", fn, (int)xd->dtype,
                  (int)yd->dtype);
  const long span_h = (long)xd->h + 2L * p->pad_h - p->win_h;
  const long span_w = (long)xd->w + 2L * p->pad_w - p->win_w;
  if (span_h < 0 || span_w < 0)
    return WK_BAD("%s: the %dx%d window is larger than the %dx%d input padded by %d, %d", fn,
                  p->win_h, p->win_w, xd->h, xd->w, p->pad_h, p->pad_w);
  const long oh = 1 + span_h / p->stride_h, ow = 1 + span_w / p->stride_w;
  if (yd->h != oh || yd->w != ow)
    return WK_BAD("%s: the output is %dx%d (h x w), the pooling gives %ldx%ld", fn, yd->h, yd->w,
                  oh, ow);
  return CUDNN_STATUS_SUCCESS;
}

/* Output (n, c, oh, ow)'s window: rows [*h0, *h1) and columns [*w0, *w1) of
 * the input, clipped to it; *area is the unclipped window's (the padded
 * positions included). */
static void wk_window(const struct cudnnPoolingStruct *p, const struct cudnnTensorStruct *xd,
                      int oh, int ow, int *h0, int *h1, int *w0, int *w1, int *area) {
  const int hs = oh * p->stride_h - p->pad_h, ws = ow * p->stride_w - p->pad_w;
  *h0 = hs < 0 ? 0 : hs;
  *w0 = ws < 0 ? 0 : ws;
  *h1 = hs + p->win_h > xd->h ? xd->h : hs + p->win_h;
  *w1 = ws + p->win_w > xd->w ? xd->w : ws + p->win_w;
  *area = p->win_h * p->win_w;
}

static int wk_is_max(cudnnPoolingMode_t m) {
  return m == CUDNN_POOLING_MAX || m == CUDNN_POOLING_MAX_DETERMINISTIC;
}

typedef struct wk_pool_ctx {
  struct cudnnPoolingStruct p;
  struct cudnnTensorStruct xd, yd, dyd, dxd; /* dyd, dxd: backward only */
  const void *x, *y, *dy;
  void *out; /* y (forward) or dx (backward) */
  double alpha, beta;
} wk_pool_ctx;

/* cudnnPoolingForward: y = alpha * pool(x) + beta * y. MAX takes the window's
 * largest element (the padding never wins); with CUDNN_NOT_PROPAGATE_NAN a
 * NaN is passed over, with CUDNN_PROPAGATE_NAN it is the result. AVERAGE
 * divides the sum by the whole window (COUNT_INCLUDE_PADDING) or by its
 * elements inside the input (COUNT_EXCLUDE_PADDING). */
static void wk_pool_forward_run(void *arg) {
  const wk_pool_ctx *c = arg;
  const size_t nx = wk_fake_tensor_bytes(&c->xd), ny = wk_fake_tensor_bytes(&c->yd);
  wk_fake_check_device(c->x, nx, "cudnnPoolingForward x");
  wk_fake_check_device(c->out, ny, "cudnnPoolingForward y");
  wk_no_overlap("cudnnPoolingForward", "y", c->out, ny, "x", c->x, nx);
  const wk_fake_dtype t = wk_fake_cudnn_dtype(c->xd.dtype);
  const struct cudnnPoolingStruct *p = &c->p;
  for (int n = 0; n < c->yd.n; n++)
    for (int ch = 0; ch < c->yd.c; ch++)
      for (int oh = 0; oh < c->yd.h; oh++)
        for (int ow = 0; ow < c->yd.w; ow++) {
          int h0, h1, w0, w1, area;
          wk_window(p, &c->xd, oh, ow, &h0, &h1, &w0, &w1, &area);
          if (h0 >= h1 || w0 >= w1)
            wk_fake_die(WK_LIB, "cudnnPoolingForward: output (%d, %d)'s window lies wholly in "
                        "the padding; the reference documents no result for it", oh, ow);
          double acc = 0.0, best = -INFINITY;
          int count = 0, nan_seen = 0;
          for (int h = h0; h < h1; h++)
            for (int w = w0; w < w1; w++) {
              const double v = wk_fake_load(c->x, t, wk_fake_at(&c->xd, n, ch, h, w));
              acc += v;
              count++;
              if (isnan(v))
                nan_seen = 1;
              else if (v > best)
                best = v;
            }
          double r;
          if (wk_is_max(p->mode))
            r = (nan_seen && (p->nan == CUDNN_PROPAGATE_NAN || best == -INFINITY)) ? (double)NAN
                                                                                  : best;
          else
            r = acc / (p->mode == CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING ? area : count);
          const size_t at = wk_fake_at(&c->yd, n, ch, oh, ow);
          double v = c->alpha * r;
          if (c->beta != 0.0) v += c->beta * wk_fake_load(c->out, t, at);
          wk_fake_store(c->out, t, at, v);
        }
}

cudnnStatus_t cudnnPoolingForward(cudnnHandle_t handle, const cudnnPoolingDescriptor_t poolingDesc,
                                  const void *alpha, const cudnnTensorDescriptor_t xDesc,
                                  const void *x, const void *beta,
                                  const cudnnTensorDescriptor_t yDesc, void *y) {
  static const char fn[] = "cudnnPoolingForward";
  if (!handle) return WK_BAD("%s: handle is NULL", fn);
  WK_TRY(wk_pool_check(fn, poolingDesc, xDesc, yDesc));
  if (!alpha || !beta || !x || !y) return WK_BAD("%s: a pointer is NULL", fn);
  WK_TRY(wk_aligned(fn, "x", x, xDesc->dtype));
  WK_TRY(wk_aligned(fn, "y", y, yDesc->dtype));
  wk_pool_ctx c;
  memset(&c, 0, sizeof c);
  c.p = *poolingDesc;
  c.xd = *xDesc, c.yd = *yDesc;
  c.x = x, c.out = y;
  c.alpha = wk_fake_cudnn_scalar(alpha, yDesc->dtype);
  c.beta = wk_fake_cudnn_scalar(beta, yDesc->dtype);
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, wk_pool_forward_run, &c, sizeof c));
}

/* cudnnPoolingBackward: dx = alpha * (the gradient of the pooling) + beta * dx.
 * MAX routes each dy to the first element (row-major in its window) of x
 * that equals y, the forward's result there; y must therefore be this
 * pooling's output of x (alpha 1, beta 0). AVERAGE spreads dy / divisor over
 * the window's elements inside the input (the divisor as forward's). */
static void wk_pool_backward_run(void *arg) {
  static const char fn[] = "cudnnPoolingBackward";
  const wk_pool_ctx *c = arg;
  const size_t nx = wk_fake_tensor_bytes(&c->xd), ny = wk_fake_tensor_bytes(&c->yd),
               ndy = wk_fake_tensor_bytes(&c->dyd), ndx = wk_fake_tensor_bytes(&c->dxd);
  wk_fake_check_device(c->y, ny, "cudnnPoolingBackward y");
  wk_fake_check_device(c->dy, ndy, "cudnnPoolingBackward dy");
  wk_fake_check_device(c->x, nx, "cudnnPoolingBackward x");
  wk_fake_check_device(c->out, ndx, "cudnnPoolingBackward dx");
  wk_no_overlap(fn, "dx", c->out, ndx, "y", c->y, ny);
  wk_no_overlap(fn, "dx", c->out, ndx, "dy", c->dy, ndy);
  wk_no_overlap(fn, "dx", c->out, ndx, "x", c->x, nx);
  const wk_fake_dtype t = wk_fake_cudnn_dtype(c->xd.dtype);
  const struct cudnnPoolingStruct *p = &c->p;
  const struct cudnnTensorStruct *xd = &c->xd;
  const size_t n_grad = (size_t)xd->n * xd->c * xd->h * xd->w;
  double *grad = calloc(n_grad, sizeof *grad); /* logical NCHW order */
  if (!grad) wk_fake_die(WK_LIB, "%s: out of host memory", fn);
#define WK_G(n, ch, h, w) grad[(((size_t)(n) * xd->c + (ch)) * xd->h + (h)) * xd->w + (w)]
  for (int n = 0; n < c->yd.n; n++)
    for (int ch = 0; ch < c->yd.c; ch++)
      for (int oh = 0; oh < c->yd.h; oh++)
        for (int ow = 0; ow < c->yd.w; ow++) {
          int h0, h1, w0, w1, area;
          wk_window(p, xd, oh, ow, &h0, &h1, &w0, &w1, &area);
          if (h0 >= h1 || w0 >= w1)
            wk_fake_die(WK_LIB, "%s: output (%d, %d)'s window lies wholly in the padding", fn, oh,
                        ow);
          const double d = wk_fake_load(c->dy, t, wk_fake_at(&c->dyd, n, ch, oh, ow));
          if (wk_is_max(p->mode)) {
            const double yv = wk_fake_load(c->y, t, wk_fake_at(&c->yd, n, ch, oh, ow));
            int found = 0;
            for (int h = h0; h < h1 && !found; h++)
              for (int w = w0; w < w1 && !found; w++) {
                const double xv = wk_fake_load(c->x, t, wk_fake_at(xd, n, ch, h, w));
                if (xv == yv || (isnan(xv) && isnan(yv))) {
                  WK_G(n, ch, h, w) += d;
                  found = 1;
                }
              }
            if (!found)
              wk_fake_die(WK_LIB, "%s: y[n=%d, c=%d, h=%d, w=%d] = %g equals no element of x in "
                          "its window: y is not the max pooling of this x (this fake routes the "
                          "gradient to the x equal to y)", fn, n, ch, oh, ow, yv);
          } else {
            const int count = (h1 - h0) * (w1 - w0);
            const double share =
                d / (p->mode == CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING ? area : count);
            for (int h = h0; h < h1; h++)
              for (int w = w0; w < w1; w++) WK_G(n, ch, h, w) += share;
          }
        }
  for (int n = 0; n < xd->n; n++)
    for (int ch = 0; ch < xd->c; ch++)
      for (int h = 0; h < xd->h; h++)
        for (int w = 0; w < xd->w; w++) {
          const size_t at = wk_fake_at(&c->dxd, n, ch, h, w);
          double v = c->alpha * WK_G(n, ch, h, w);
          if (c->beta != 0.0) v += c->beta * wk_fake_load(c->out, t, at);
          wk_fake_store(c->out, t, at, v);
        }
#undef WK_G
  free(grad);
}

static int wk_same_layout(const struct cudnnTensorStruct *a, const struct cudnnTensorStruct *b) {
  return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->sn == b->sn &&
         a->sc == b->sc && a->sh == b->sh && a->sw == b->sw && a->dtype == b->dtype;
}

/* BAD_PARAM (API reference) when y and dy, or x and dx, differ in
 * dimensions or strides, or the four data types differ. */
cudnnStatus_t cudnnPoolingBackward(cudnnHandle_t handle, const cudnnPoolingDescriptor_t poolingDesc,
                                   const void *alpha, const cudnnTensorDescriptor_t yDesc,
                                   const void *y, const cudnnTensorDescriptor_t dyDesc,
                                   const void *dy, const cudnnTensorDescriptor_t xDesc,
                                   const void *x, const void *beta,
                                   const cudnnTensorDescriptor_t dxDesc, void *dx) {
  static const char fn[] = "cudnnPoolingBackward";
  if (!handle) return WK_BAD("%s: handle is NULL", fn);
  WK_TRY(wk_pool_check(fn, poolingDesc, xDesc, yDesc));
  if (!dyDesc || !dyDesc->set || !dxDesc || !dxDesc->set)
    return WK_BAD("%s: dyDesc or dxDesc is NULL or not set", fn);
  if (!wk_same_layout(yDesc, dyDesc))
    return WK_BAD("%s: yDesc and dyDesc differ in dimensions, strides or data type", fn);
  if (!wk_same_layout(xDesc, dxDesc))
    return WK_BAD("%s: xDesc and dxDesc differ in dimensions, strides or data type", fn);
  if (!alpha || !beta || !y || !dy || !x || !dx) return WK_BAD("%s: a pointer is NULL", fn);
  WK_TRY(wk_aligned(fn, "y", y, yDesc->dtype));
  WK_TRY(wk_aligned(fn, "dy", dy, dyDesc->dtype));
  WK_TRY(wk_aligned(fn, "x", x, xDesc->dtype));
  WK_TRY(wk_aligned(fn, "dx", dx, dxDesc->dtype));
  wk_pool_ctx c;
  memset(&c, 0, sizeof c);
  c.p = *poolingDesc;
  c.xd = *xDesc, c.yd = *yDesc, c.dyd = *dyDesc, c.dxd = *dxDesc;
  c.x = x, c.y = y, c.dy = dy, c.out = dx;
  c.alpha = wk_fake_cudnn_scalar(alpha, dxDesc->dtype);
  c.beta = wk_fake_cudnn_scalar(beta, dxDesc->dtype);
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, wk_pool_backward_run, &c, sizeof c));
}

/* ================================================================== activation */

cudnnStatus_t cudnnCreateActivationDescriptor(cudnnActivationDescriptor_t *activationDesc) {
  if (!activationDesc) return WK_BAD("cudnnCreateActivationDescriptor: activationDesc is NULL");
  struct cudnnActivationStruct *a;
  WK_TRY(wk_new_desc("cudnnCreateActivationDescriptor", sizeof *a, (void **)&a));
  *activationDesc = a;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyActivationDescriptor(cudnnActivationDescriptor_t activationDesc) {
  free(activationDesc);
  return CUDNN_STATUS_SUCCESS;
}

/* cudnnSetActivationDescriptor (API reference): BAD_PARAM for an invalid
 * mode or NaN option; coef is the clipped relu's ceiling or the elu's alpha. */
cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t activationDesc,
                                           cudnnActivationMode_t mode,
                                           cudnnNanPropagation_t reluNanOpt, double coef) {
  static const char fn[] = "cudnnSetActivationDescriptor";
  if (!activationDesc) return WK_BAD("%s: activationDesc is NULL", fn);
  if ((int)mode < CUDNN_ACTIVATION_SIGMOID || (int)mode > CUDNN_ACTIVATION_SWISH)
    return WK_BAD("%s: mode %d is not a cudnnActivationMode_t", fn, (int)mode);
  if ((int)reluNanOpt != CUDNN_NOT_PROPAGATE_NAN && (int)reluNanOpt != CUDNN_PROPAGATE_NAN)
    return WK_BAD("%s: NaN option %d is not a cudnnNanPropagation_t", fn, (int)reluNanOpt);
  activationDesc->mode = mode;
  activationDesc->nan = reluNanOpt;
  activationDesc->coef = coef;
  activationDesc->set = 1;
  return CUDNN_STATUS_SUCCESS;
}
