/* fake_cudnn.h - the fake cuDNN's handle and descriptors (fake_cudnn.c:
 * handles, descriptors, convolution, pooling, tensor ops;
 * fake_cudnn_bn.c: batch normalisation; fake_cudnn_graph.c: the backend
 * (graph) API's single convolutions, on fake_cudnn.c's). See fake.h. */
#ifndef WK_FAKE_CUDNN_H
#define WK_FAKE_CUDNN_H

#include <cudnn.h>

#include "fake.h"

struct cudnnContext {
  cudaStream_t stream; /* cudnnSetStream; 0 = the default stream */
};

/* A 4-D tensor: dims n, c, h, w and the element strides of each (from
 * cudnnSetTensor4dDescriptor's format: NCHW or NHWC). Element (n, c, h, w)
 * is at n * sn + c * sc + h * sh + w * sw. */
struct cudnnTensorStruct {
  int set;
  cudnnDataType_t dtype;
  int n, c, h, w;
  int sn, sc, sh, sw;
};

/* A filter: k output channels, c input channels per group, r x s. Element
 * (k, c, r, s) at k * sk + c * sc + r * sr + s * ss (NCHW: KCRS; NHWC: KRSC). */
struct cudnnFilterStruct {
  int set;
  cudnnDataType_t dtype;
  cudnnTensorFormat_t format;
  int k, c, r, s;
  int sk, sc, sr, ss;
};

struct cudnnConvolutionStruct {
  int set;
  int pad_h, pad_w, u, v, dil_h, dil_w;
  cudnnConvolutionMode_t mode;
  cudnnDataType_t compute;
  int groups;
  cudnnMathType_t math;
};

struct cudnnPoolingStruct {
  int set;
  cudnnPoolingMode_t mode;
  cudnnNanPropagation_t nan;
  int win_h, win_w, pad_h, pad_w, stride_h, stride_w;
};

struct cudnnActivationStruct {
  int set;
  cudnnActivationMode_t mode;
  cudnnNanPropagation_t nan;
  double coef;
};

/* The fake dtype of a cuDNN one (FLOAT, HALF, BFLOAT16, DOUBLE); dies on others. */
wk_fake_dtype wk_fake_cudnn_dtype(cudnnDataType_t t);
/* Bytes a tensor spans: (the largest offset + 1) * element size. */
size_t wk_fake_tensor_bytes(const struct cudnnTensorStruct *d);
/* Offset of element (n, c, h, w). */
static inline size_t wk_fake_at(const struct cudnnTensorStruct *d, int n, int c, int h, int w) {
  return (size_t)n * d->sn + (size_t)c * d->sc + (size_t)h * d->sh + (size_t)w * d->sw;
}
/* A host scalar (alpha, beta): float for FLOAT, HALF and BFLOAT16 data,
 * double for DOUBLE data (developer guide, "Scaling Parameters"). */
double wk_fake_cudnn_scalar(const void *p, cudnnDataType_t data);
/* cudnnStatus_t from a cudaError_t of wk_fake_enqueue. */
cudnnStatus_t wk_fake_cudnn_status(cudaError_t e);
/* Keeps the formatted reason for cudnnGetLastErrorString (per thread). */
void wk_fake_cudnn_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Returns s, keeping the formatted reason for cudnnGetLastErrorString (per
 * thread): how every cuDNN fake reports a refusal. A macro, so that the
 * status returned is plain where it is returned: the clang static analyzer
 * (scripts/static_check.sh) does not enter a variadic function, and would
 * otherwise follow a refusal as if it were CUDNN_STATUS_SUCCESS. */
#define wk_fake_cudnn_fail(s, ...) (wk_fake_cudnn_note(__VA_ARGS__), (cudnnStatus_t)(s))

/* fake_cudnn.c's convolution for fake_cudnn_graph.c. The descriptors are the
 * legacy ones, filled in by the caller (set = 1; a filter's format is not
 * read, its strides are); xd/x is the input-side tensor (x, or dx backward
 * data), wd/w the filter (w, or dw backward filter), yd/y the output-side
 * tensor (y, or dy backward), the direction's output among them. */
typedef enum wk_fake_conv_dir {
  WK_FAKE_CONV_FWD,
  WK_FAKE_CONV_BWD_DATA,
  WK_FAKE_CONV_BWD_FILTER
} wk_fake_conv_dir;
/* The checks cudnnConvolution{Forward,BackwardData,BackwardFilter} make of
 * the descriptors (the shapes, groups, data and compute types), with their
 * statuses and reasons, fn naming the caller. */
cudnnStatus_t wk_fake_cudnn_conv_check(const char *fn, wk_fake_conv_dir dir,
                                       const struct cudnnTensorStruct *xd,
                                       const struct cudnnFilterStruct *wd,
                                       const struct cudnnConvolutionStruct *cv,
                                       const struct cudnnTensorStruct *yd);
/* Checks as the legacy calls do (the descriptors, NULL and misaligned
 * pointers), then enqueues on the handle's stream the legacy calls' work,
 * copying the descriptors: out = alpha * op + beta * out (beta 0: out not
 * read). The work checks every extent with wk_fake_check_device, the
 * workspace's as [ws, ws + ws_bytes), and overwrites those ws_bytes; with
 * f16_inputs it reads the inputs rounded to fp16. fn (static storage: the
 * work may run later) names the call in the work's messages. */
cudnnStatus_t wk_fake_cudnn_conv_enqueue(const char *fn, wk_fake_conv_dir dir,
                                         cudnnHandle_t handle,
                                         const struct cudnnTensorStruct *xd, const void *x,
                                         const struct cudnnFilterStruct *wd, const void *w,
                                         const struct cudnnConvolutionStruct *cv,
                                         const struct cudnnTensorStruct *yd, const void *y,
                                         double alpha, double beta, void *ws, size_t ws_bytes,
                                         int f16_inputs);

#endif
