/* fake_cudnn.h - the fake cuDNN's handle and descriptors (fake_cudnn.c:
 * handles, descriptors, convolution, pooling, tensor ops;
 * fake_cudnn_bn.c: batch normalisation). See fake.h. */
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

#endif
