// syncbn.cu - whisker's batchnorm kernels (cuda_net.c): synchronised
// batchnorm's, with the sums all-reduced over the ranks in between, and the
// fallback where cuDNN refuses a 16-bit batchnorm (with an inference
// invstd from the running variance): the per-channel sums of a batch,
// the statistics from the sums, the normalisation, and backward's sums, the
// parameters' gradients and the input's. Operation for operation the CPU's
// src/nn/exec_syncbn.c (launchers and contract: wk_kernels.h), with explicit
// _rn intrinsics so nvcc fuses nothing: the elementwise kernels are bit for
// bit the CPU's arithmetic on the same inputs; the sums are in double, in a
// fixed order of their own (chunks of rows, 8 lanes, a fixed combination),
// never atomics.
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>

#include "grid.cuh"
#include "storage.cuh"
#include "wk_kernels.h"

namespace {

constexpr int kLanes = 8;  // rows per chunk interleaved over 8 lanes of 32 channels

// Channel c's x as the CPU's float: (x - mean) * invstd, one rounding each.
__device__ __forceinline__ float xhat(float x, float mean, float invstd) {
  return __fmul_rn(__fsub_rn(x, mean), invstd);
}

// partial[chunk, j] (width w = c or 2c doubles per chunk) for chunk blockIdx.y
// of `chunk` rows and channels blockIdx.x * 32 + threadIdx.x:
//   MODE 0: sum x;  MODE 1: sum (x - mean)^2 with the float mean, in double
//   MODE 2: sum dy in [0, c) and sum dy * xhat in [c, 2c)
template <class S, int MODE>
__global__ void sums_kernel(int64_t rows, int64_t c, int64_t chunk, const typename S::T *x,
                            const typename S::T *dy, const float *mean, const float *invstd,
                            double *partial) {
  __shared__ double sh[2][kLanes][32];
  const int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = (int64_t)blockIdx.y * chunk;
  const int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
  double a = 0.0, b = 0.0;
  if (j < c)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kLanes) {
      const float v = S::load(x[r * c + j]);
      if (MODE == 0) {
        a = __dadd_rn(a, (double)v);
      } else if (MODE == 1) {
        const double d = __dsub_rn((double)v, (double)mean[j]);
        a = __dadd_rn(a, __dmul_rn(d, d));
      } else {
        const float g = S::load(dy[r * c + j]);
        a = __dadd_rn(a, (double)g);
        b = __dadd_rn(b, __dmul_rn((double)g, (double)xhat(v, mean[j], invstd[j])));
      }
    }
  sh[0][threadIdx.y][threadIdx.x] = a;
  sh[1][threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y == 0 && j < c) {
    const int64_t w = MODE == 2 ? 2 * c : c;
    double ta = sh[0][0][threadIdx.x], tb = sh[1][0][threadIdx.x];
    for (int l = 1; l < kLanes; l++) {
      ta = __dadd_rn(ta, sh[0][l][threadIdx.x]);
      tb = __dadd_rn(tb, sh[1][l][threadIdx.x]);
    }
    partial[blockIdx.y * w + j] = ta;
    if (MODE == 2) partial[blockIdx.y * w + c + j] = tb;
  }
}

// out[j] = sum over the chunks of partial[chunk, j], in chunk order.
__global__ void chunks_kernel(int64_t chunks, int64_t w, const double *partial, double *out) {
  for (int64_t j = first_index(); j < w; j += grid_stride()) {
    double t = 0.0;
    for (int64_t k = 0; k < chunks; k++) t = __dadd_rn(t, partial[k * w + j]);
    out[j] = t;
  }
}

__global__ void mean_kernel(int64_t c, double total, const double *sum, float *mean) {
  for (int64_t j = first_index(); j < c; j += grid_stride())
    mean[j] = (float)__ddiv_rn(sum[j], total);
}

// The CPU's wk_batchnorm_running_update on the float mean and biased
// variance, then invstd = 1 / sqrt(var + eps) in double.
__global__ void finish_kernel(int64_t c, double total, const double *sq, const float *mean,
                              double momentum, double eps, float *rm, float *rv, float *invstd) {
  const double unbias = __ddiv_rn(total, __dsub_rn(total, 1.0));
  const double keep = __dsub_rn(1.0, momentum);
  for (int64_t j = first_index(); j < c; j += grid_stride()) {
    const float var = (float)__ddiv_rn(sq[j], total);
    rm[j] = (float)__dadd_rn(__dmul_rn(keep, (double)rm[j]), __dmul_rn(momentum, (double)mean[j]));
    rv[j] = (float)__dadd_rn(__dmul_rn(keep, (double)rv[j]),
                             __dmul_rn(__dmul_rn(momentum, (double)var), unbias));
    invstd[j] = (float)__ddiv_rn(1.0, __dsqrt_rn(__dadd_rn((double)var, eps)));
  }
}

// y = xhat * gamma + beta (the CPU's float operations in its order), then
// with z the addend (widened, one float addition) and with relu t > 0 ? t :
// 0 (the relu kernels' and the CPU's), rounded once to the storage: a
// batchnorm, or a fused group's relu(bn(x) [+ z]) in inference. Over (rows,
// c) as slots of V channels (one 16-byte access of x, z and y each where c
// and the addresses allow it, else V = 1), slot k at channels (k % cv) * V:
// the index type I 32 bits where the elements fit in 2^31 (no 64-bit
// division per slot, and k + the grid's stride cannot wrap). y may alias x
// or z.
template <class S, int V, class I>
__global__ void norm_act_kernel(I slots, I cv, const typename S::T *x, const typename S::T *z,
                                const float *mean, const float *invstd, const float *gamma,
                                const float *beta, bool relu, typename S::T *y) {
  using P = Pack<typename S::T, V>;
  const P *xp = reinterpret_cast<const P *>(x), *zp = reinterpret_cast<const P *>(z);
  P *yp = reinterpret_cast<P *>(y);
  for (I k = (I)first_index(); k < slots; k += (I)grid_stride()) {
    const I j0 = (k % cv) * V;
    const P a = xp[k];
    P b, out;
    if (z) b = zp[k];
    for (int l = 0; l < V; l++) {
      const I j = j0 + l;
      float t = __fadd_rn(__fmul_rn(xhat(S::load(a.v[l]), mean[j], invstd[j]), gamma[j]), beta[j]);
      if (z) t = __fadd_rn(t, S::load(b.v[l]));
      if (relu) t = t > 0.0f ? t : 0.0f;
      out.v[l] = S::store(t);
    }
    yp[k] = out;
  }
}

template <class S, int V, class I>
int launch_norm_act(int64_t n, int64_t c, const void *x, const void *z, const float *mean,
                    const float *invstd, const float *gamma, const float *beta, bool relu,
                    void *y, cudaStream_t stream) {
  using T = typename S::T;
  norm_act_kernel<S, V, I><<<blocks_for(n / V), kThreads, 0, stream>>>(
      (I)(n / V), (I)(c / V), static_cast<const T *>(x), static_cast<const T *>(z), mean,
      invstd, gamma, beta, relu, static_cast<T *>(y));
  return (int)cudaGetLastError();
}

__global__ void invstd_kernel(int64_t c, const float *var, double eps, float *invstd) {
  for (int64_t j = first_index(); j < c; j += grid_stride())
    invstd[j] = (float)__ddiv_rn(1.0, __dsqrt_rn(__dadd_rn((double)var[j], eps)));
}

__global__ void param_grads_kernel(int64_t c, const double *sums, float *dgamma, float *dbeta) {
  for (int64_t j = first_index(); j < c; j += grid_stride()) {
    dbeta[j] = (float)sums[j];
    dgamma[j] = (float)sums[c + j];
  }
}

// dx = gamma * invstd * (float)(dy - s1 / total - xhat * (s2 / total))
template <class S>
__global__ void dx_kernel(int64_t n, int64_t c, double total, const typename S::T *x,
                          const typename S::T *dy, const float *mean, const float *invstd,
                          const float *gamma, const double *sums, typename S::T *dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t j = i % c;
    const float xh = xhat(S::load(x[i]), mean[j], invstd[j]);
    const double inner =
        __dsub_rn(__dsub_rn((double)S::load(dy[i]), __ddiv_rn(sums[j], total)),
                  __dmul_rn((double)xh, __ddiv_rn(sums[c + j], total)));
    dx[i] = S::store(__fmul_rn(__fmul_rn(gamma[j], invstd[j]), (float)inner));
  }
}

// a known storage, rows x c with c >= 1, rows >= 0, and their product in range
bool shape_ok(wk_store_kind kind, int64_t rows, int64_t c, int64_t *n) {
  if (!store_ok(kind) || rows < 0 || c < 1 || c > INT32_MAX) return false;
  if (rows > 0 && c > INT64_MAX / rows) return false;
  *n = rows * c;
  return true;
}

template <int MODE>
int launch_sums(wk_store_kind kind, int64_t rows, int64_t c, const void *x, const void *dy,
                const float *mean, const float *invstd, double *partial, double *out,
                void *stream) {
  int64_t n = 0;
  if (!shape_ok(kind, rows, c, &n) || !out || (rows > 0 && (!x || !partial)) ||
      (MODE >= 1 && !mean) || (MODE == 2 && (!invstd || (rows > 0 && !dy))))
    return (int)cudaErrorInvalidValue;
  const int64_t w = MODE == 2 ? 2 * c : c;
  if (rows == 0) return (int)cudaMemsetAsync(out, 0, (size_t)w * sizeof(double), as_stream(stream));
  const int64_t chunks = rows < WK_BN_SUM_CHUNKS ? rows : WK_BN_SUM_CHUNKS;
  const int64_t chunk = (rows + chunks - 1) / chunks;
  const dim3 grid((unsigned)((c + 31) / 32), (unsigned)chunks), block(32, kLanes);
  const int e = by_store(kind, [&](auto s) {
    using S = decltype(s);
    sums_kernel<S, MODE><<<grid, block, 0, as_stream(stream)>>>(
        rows, c, chunk, static_cast<const typename S::T *>(x),
        static_cast<const typename S::T *>(dy), mean, invstd, partial);
    return (int)cudaGetLastError();
  });
  if (e != 0) return e;
  chunks_kernel<<<blocks_for(w), kThreads, 0, as_stream(stream)>>>(chunks, w, partial, out);
  return (int)cudaGetLastError();
}

}  // namespace

extern "C" int wk_launch_bn_sums(wk_store_kind kind, int64_t rows, int64_t c, const void *x,
                                 const float *mean, double *partial, double *out, void *stream) {
  return mean ? launch_sums<1>(kind, rows, c, x, nullptr, mean, nullptr, partial, out, stream)
              : launch_sums<0>(kind, rows, c, x, nullptr, nullptr, nullptr, partial, out, stream);
}

extern "C" int wk_launch_bn_grad_sums(wk_store_kind kind, int64_t rows, int64_t c, const void *x,
                                      const void *dy, const float *mean, const float *invstd,
                                      double *partial, double *out, void *stream) {
  return launch_sums<2>(kind, rows, c, x, dy, mean, invstd, partial, out, stream);
}

extern "C" int wk_launch_bn_mean(int64_t c, double total, const double *sum, float *mean,
                                 void *stream) {
  if (c < 1 || !(total >= 1.0) || !sum || !mean) return (int)cudaErrorInvalidValue;
  mean_kernel<<<blocks_for(c), kThreads, 0, as_stream(stream)>>>(c, total, sum, mean);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_bn_finish(int64_t c, double total, const double *sq, const float *mean,
                                   double momentum, double eps, float *rm, float *rv,
                                   float *invstd, void *stream) {
  if (c < 1 || !(total >= 2.0) || !(momentum >= 0.0 && momentum <= 1.0) || !(eps > 0.0) ||
      !sq || !mean || !rm || !rv || !invstd)
    return (int)cudaErrorInvalidValue;
  finish_kernel<<<blocks_for(c), kThreads, 0, as_stream(stream)>>>(c, total, sq, mean, momentum,
                                                                     eps, rm, rv, invstd);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_bn_norm_act(wk_store_kind kind, int64_t rows, int64_t c, const void *x,
                                     const void *z, const float *mean, const float *invstd,
                                     const float *gamma, const float *beta, int relu, void *y,
                                     void *stream) {
  int64_t n = 0;
  if (!shape_ok(kind, rows, c, &n)) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  if (!x || !mean || !invstd || !gamma || !beta || !y) return (int)cudaErrorInvalidValue;
  return by_store(kind, [&](auto s) {
    using S = decltype(s);
    constexpr int kV = 16 / (int)sizeof(typename S::T);
    const uintptr_t at = (uintptr_t)x | (uintptr_t)y | (uintptr_t)z;
    const bool packed = c % kV == 0 && at % 16 == 0;
    const bool narrow = n <= (int64_t)INT32_MAX;
    const cudaStream_t st = as_stream(stream);
    if (packed && narrow)
      return launch_norm_act<S, kV, uint32_t>(n, c, x, z, mean, invstd, gamma, beta, relu, y, st);
    if (packed)
      return launch_norm_act<S, kV, int64_t>(n, c, x, z, mean, invstd, gamma, beta, relu, y, st);
    if (narrow)
      return launch_norm_act<S, 1, uint32_t>(n, c, x, z, mean, invstd, gamma, beta, relu, y, st);
    return launch_norm_act<S, 1, int64_t>(n, c, x, z, mean, invstd, gamma, beta, relu, y, st);
  });
}

extern "C" int wk_launch_bn_norm(wk_store_kind kind, int64_t rows, int64_t c, const void *x,
                                 const float *mean, const float *invstd, const float *gamma,
                                 const float *beta, void *y, void *stream) {
  return wk_launch_bn_norm_act(kind, rows, c, x, NULL, mean, invstd, gamma, beta, 0, y, stream);
}

extern "C" int wk_launch_bn_invstd(int64_t c, const float *var, double eps, float *invstd,
                                   void *stream) {
  if (c < 1 || !(eps > 0.0) || !var || !invstd) return (int)cudaErrorInvalidValue;
  invstd_kernel<<<blocks_for(c), kThreads, 0, as_stream(stream)>>>(c, var, eps, invstd);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_bn_param_grads(int64_t c, const double *sums, float *dgamma,
                                        float *dbeta, void *stream) {
  if (c < 1 || !sums || !dgamma || !dbeta) return (int)cudaErrorInvalidValue;
  param_grads_kernel<<<blocks_for(c), kThreads, 0, as_stream(stream)>>>(c, sums, dgamma, dbeta);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_bn_dx(wk_store_kind kind, int64_t rows, int64_t c, double total,
                               const void *x, const void *dy, const float *mean,
                               const float *invstd, const float *gamma, const double *sums,
                               void *dx, void *stream) {
  int64_t n = 0;
  if (!shape_ok(kind, rows, c, &n) || !(total >= 1.0)) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  if (!x || !dy || !mean || !invstd || !gamma || !sums || !dx) return (int)cudaErrorInvalidValue;
  return by_store(kind, [&](auto s) {
    using S = decltype(s);
    dx_kernel<S><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        n, c, total, static_cast<const typename S::T *>(x),
        static_cast<const typename S::T *>(dy), mean, invstd, gamma, sums,
        static_cast<typename S::T *>(dx));
    return (int)cudaGetLastError();
  });
}
