/* cuda_net_ops.c - the GPU network's conversions to and from 16 bits and its
 * calls of whisker's own kernels (kernels/wk_kernels.h) and of cuBLAS, in the
 * network's storage (float32, or 16 bits with bf16 and fp16; cuda_net.c). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_net_impl.h"

/* ------------------------------------------------------------------ 16-bit conversions */

wk_status wk_to_half(const wk_gpu_net *net, const float *x, int64_t n, uint16_t *y) {
  if (net->g.precision == WK_PRECISION_FP16)
    return wk_kernel_try(wk_launch_f32_to_f16(n, x, y, net->stream), "to float16");
  return wk_kernel_try(wk_launch_f32_to_bf16(n, x, y, net->stream), "to bfloat16");
}

wk_status wk_from_half(const wk_gpu_net *net, const uint16_t *x, int64_t n, float *y,
                       bool accumulate) {
  if (net->g.precision == WK_PRECISION_FP16)
    return wk_kernel_try(wk_launch_f16_to_f32(n, x, y, accumulate, net->stream), "from float16");
  return wk_kernel_try(wk_launch_bf16_to_f32(n, x, y, accumulate, net->stream), "from bfloat16");
}

/* The 16-bit copy of the weights, made again after they changed. */
wk_status wk_half_weights(wk_gpu_net *net) {
  if (!net->wh_stale) return WK_OK;
  WK_TRY(wk_to_half(net, net->weights, (int64_t)net->g.n_elems, net->wh));
  net->wh_stale = false;
  return WK_OK;
}

/* ------------------------------------------------------------------ own kernels, either storage */

wk_status wk_k_act(const wk_gpu_net *net, bool relu6, int64_t len, const void *x, void *y) {
  int e;
  if (wk_half(net))
    e = wk_launch_act_forward_h(wk_hkind(net), len, relu6, x, y, net->stream);
  else
    e = relu6 ? wk_launch_relu6_forward_f32(len, x, y, net->stream)
              : wk_launch_relu_forward_f32(len, x, y, net->stream);
  return wk_kernel_try(e, "activation forward");
}

/* m: relu's output or relu6's input (the mask's source, see wk_backward_node) */
wk_status wk_k_act_back(const wk_gpu_net *net, bool relu6, int64_t len, const void *m,
                        const void *dy, void *dx) {
  int e;
  if (wk_half(net))
    e = wk_launch_act_backward_h(wk_hkind(net), len, relu6, m, dy, dx, net->stream);
  else
    e = relu6 ? wk_launch_relu6_backward_f32(len, m, dy, dx, net->stream)
              : wk_launch_relu_backward_f32(len, m, dy, dx, net->stream);
  return wk_kernel_try(e, "activation backward");
}

wk_status wk_k_add(const wk_gpu_net *net, int64_t len, const void *a, const void *b,
                   void *y, const char *what) {
  const int e = wk_half(net) ? wk_launch_add_h(wk_hkind(net), len, a, b, y, net->stream)
                             : wk_launch_add_forward_f32(len, a, b, y, net->stream);
  return wk_kernel_try(e, what);
}

/* Dropout forward or backward (the same mask) of node i over len elements
 * from drop's first row: the stream (seed, step) of drop, or read at
 * seed_step. */
wk_status wk_k_dropout(const wk_gpu_net *net, int i, int64_t len,
                       const wk_gpu_dropout *drop, const uint64_t *seed_step,
                       const void *x, void *y, const char *what) {
  const wk_node *nd = &net->nodes[i];
  const int64_t offset = drop->first * net->numel[i + 1];
  const uint64_t stream_id = seed_step ? (uint64_t)i : (drop->step << 16) ^ (uint64_t)i;
  int e;
  if (wk_half(net))
    e = wk_launch_dropout_h(wk_hkind(net), len, nd->drop_p, seed_step ? 0 : drop->seed,
                            stream_id, seed_step, offset, x, y, net->stream);
  else if (seed_step)
    e = wk_launch_dropout_at_f32(len, nd->drop_p, seed_step, stream_id, offset, x, y,
                                 net->stream);
  else
    e = wk_launch_dropout_forward_f32(len, nd->drop_p, drop->seed, stream_id, offset, x, y,
                                      net->stream);
  return wk_kernel_try(e, what);
}

/* Global average pooling of node i's input (forward: x -> y) or its gradient
 * (backward: dy -> dx). */
wk_status wk_k_gap(const wk_gpu_net *net, int i, bool forward, const void *x, void *y) {
  int ih, iw, ic;
  wk_gv_hwc(net, net->nodes[i].in[0], &ih, &iw, &ic);
  const int64_t n = net->batch, hw = (int64_t)ih * iw;
  int e;
  if (wk_half(net))
    e = wk_launch_global_avgpool_h(wk_hkind(net), forward, n, hw, ic, x, y, net->stream);
  else if (forward)
    e = wk_launch_global_avgpool_forward_f32(n, hw, ic, x, y, net->stream);
  else
    e = wk_launch_global_avgpool_backward_f32(n, hw, ic, x, y, net->stream);
  return wk_kernel_try(e, forward ? "global average pool forward"
                                  : "global average pool backward");
}

/* 16 bits: y (rows, k) += bias (float), and a bias's gradient, the column
 * sums of dy (rows, k), into db (float; the scratch holds the partial sums). */
wk_status wk_k_bias_add(const wk_gpu_net *net, int64_t rows, int64_t k, const float *bias,
                        void *y) {
  return wk_kernel_try(wk_launch_bias_add_h(wk_hkind(net), rows, k, bias, y, net->stream),
                       "bias add");
}
wk_status wk_k_bias_grad(const wk_gpu_net *net, int64_t rows, int64_t k, const void *dy,
                         float *db) {
  return wk_kernel_try(wk_launch_col_sum_h(wk_hkind(net), rows, k, dy, net->scratch, db,
                                           net->stream),
                       "bias gradient");
}

/* The product C (m, n) = op(A) op(B) + beta C of cuBLAS's column-major view
 * over 16-bit A and B, float32 sums (split-K's too: wk_handles' math mode);
 * C in 16 bits, or float32 with c_f32 (a weight gradient straight into the
 * arena). */
wk_status wk_gemm_h(const wk_gpu_net *net, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, const void *a, int lda, const void *b, int ldb,
                    float beta, void *c, bool c_f32, int ldc) {
  const float one = 1.0f;
  const cudaDataType_t t = wk_blas_type(net);
  WK_CUBLAS_TRY(cublasGemmEx(net->cublas, ta, tb, m, n, k, &one, a, t, lda, b, t, ldb, &beta, c,
                             c_f32 ? CUDA_R_32F : t, ldc, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
  return WK_OK;
}
