// eltwise.cu - elementwise kernels: relu and relu6 forward and backward, add,
// the uint8 NHWC -> normalised float conversion (with per-image horizontal flip)
// that feeds a batch to the network, the float <-> bfloat16 / float16
// conversions, and the per-channel bias add of the 16-bit path. Launchers and
// their contract: wk_kernels.h.
//
// Every kernel is a grid-stride loop, so any n works with a bounded grid. The
// activations use the same comparisons as the reference (ref_template.inc), so
// NaN, -0 and the kinks at 0 and 6 come out bit for bit as on the CPU. Each
// kernel is templated on its storage (storage.cuh): the float32 launchers
// instantiate it with F32, the *_h launchers (--precision bf16, fp16) with
// Bf16 or F16.
#include <cuda_runtime.h>

#include <stdint.h>

#include "grid.cuh"
#include "storage.cuh"
#include "wk_kernels.h"

namespace {

template <class S>
__global__ void relu_forward_kernel(int64_t n, const typename S::T *x, typename S::T *y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = S::load(x[i]);
    y[i] = S::store(v > 0.0f ? v : 0.0f);
  }
}

template <class S>
__global__ void relu6_forward_kernel(int64_t n, const typename S::T *x, typename S::T *y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float u = S::load(x[i]);
    const float v = u > 0.0f ? u : 0.0f;
    y[i] = S::store(v < 6.0f ? v : 6.0f);
  }
}

template <class S>
__global__ void relu_backward_kernel(int64_t n, const typename S::T *x, const typename S::T *dy,
                                     typename S::T *dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    dx[i] = S::store(S::load(x[i]) > 0.0f ? S::load(dy[i]) : 0.0f);
}

template <class S>
__global__ void relu6_backward_kernel(int64_t n, const typename S::T *x, const typename S::T *dy,
                                      typename S::T *dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = S::load(x[i]);
    dx[i] = S::store((v > 0.0f && v < 6.0f) ? S::load(dy[i]) : 0.0f);
  }
}

template <class S>
__global__ void add_forward_kernel(int64_t n, const typename S::T *a, const typename S::T *b,
                                   typename S::T *y) {
  // __fadd_rn: never contracted with a neighbouring multiply, like the C reference.
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = S::store(__fadd_rn(S::load(a[i]), S::load(b[i])));
}

// y: (rows, k), y[r, j] += bias[j] (float). One thread per element.
template <class S>
__global__ void bias_add_kernel(int64_t n, int64_t k, const float *bias, typename S::T *y) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = S::store(__fadd_rn(S::load(y[i]), bias[i % k]));
}

struct NormalizeParams {
  float scale[WK_NORMALIZE_MAX_CHANNELS]; // 1 / std
  float shift[WK_NORMALIZE_MAX_CHANNELS]; // -mean / std
};

// One thread per output pixel (all c channels), so the index arithmetic is paid
// once per pixel. x, y: (n, h, w, c); flip: (n) or NULL; n_px = n * h * w.
template <class S>
__global__ void normalize_u8_kernel(int64_t n_px, int64_t h, int64_t w, int c,
                                    const uint8_t *x, const uint8_t *flip, NormalizeParams p,
                                    typename S::T *y) {
  for (int64_t px = first_index(); px < n_px; px += grid_stride()) {
    const int64_t row = px / w;  // b * h + i
    const int64_t j = px - row * w;
    const int64_t b = row / h;
    const int64_t src_j = (flip && flip[b]) ? w - 1 - j : j;
    const uint8_t *xp = x + (row * w + src_j) * c;
    typename S::T *yp = y + px * c;
    for (int ch = 0; ch < c; ch++) // the loader's float path, each operation rounded alone
      yp[ch] = S::store(__fadd_rn(
          __fmul_rn(__fmul_rn((float)xp[ch], 1.0f / 255.0f), p.scale[ch]), p.shift[ch]));
  }
}

template <class H>
__global__ void to_half_kernel(int64_t n, const float *x, uint16_t *y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = H::store(x[i]);
}

template <class H>
__global__ void from_half_kernel(int64_t n, const uint16_t *x, float *y, bool accumulate) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = H::load(x[i]);
    y[i] = accumulate ? __fadd_rn(y[i], v) : v;
  }
}

template <class H>
int launch_to_half(int64_t n, const float *x, uint16_t *y, void *stream) {
  if (n < 0 || (n > 0 && (!x || !y))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  to_half_kernel<H><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  return (int)cudaGetLastError();
}

template <class H>
int launch_from_half(int64_t n, const uint16_t *x, float *y, bool accumulate, void *stream) {
  if (n < 0 || (n > 0 && (!x || !y))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  from_half_kernel<H><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y, accumulate);
  return (int)cudaGetLastError();
}

template <class S>
int launch_relu_forward(int64_t n, const typename S::T *x, typename S::T *y, bool six,
                        void *stream) {
  if (n < 0 || (n > 0 && (!x || !y))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  if (six)
    relu6_forward_kernel<S><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  else
    relu_forward_kernel<S><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  return (int)cudaGetLastError();
}

template <class S>
int launch_relu_backward(int64_t n, const typename S::T *x, const typename S::T *dy,
                         typename S::T *dx, bool six, void *stream) {
  if (n < 0 || (n > 0 && (!x || !dy || !dx))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  if (six)
    relu6_backward_kernel<S><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, dy, dx);
  else
    relu_backward_kernel<S><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, dy, dx);
  return (int)cudaGetLastError();
}

template <class S>
int launch_add(int64_t n, const typename S::T *a, const typename S::T *b, typename S::T *y,
               void *stream) {
  if (n < 0 || (n > 0 && (!a || !b || !y))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  add_forward_kernel<S><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, a, b, y);
  return (int)cudaGetLastError();
}

template <class S>
int launch_normalize_u8(int64_t n, int64_t h, int64_t w, int64_t c, const uint8_t *x,
                        const uint8_t *flip, const float *mean, const float *std,
                        typename S::T *y, void *stream) {
  if (n < 0 || h < 0 || w < 0 || c < 1 || c > WK_NORMALIZE_MAX_CHANNELS || !mean || !std)
    return (int)cudaErrorInvalidValue;
  // n * h * w * c must fit in int64_t for the kernel's index arithmetic.
  int64_t n_px = 0, n_elems = 0;
  if (__builtin_mul_overflow(n, h, &n_px) || __builtin_mul_overflow(n_px, w, &n_px) ||
      __builtin_mul_overflow(n_px, c, &n_elems))
    return (int)cudaErrorInvalidValue;
  if (n_px == 0) return (int)cudaSuccess;
  if (!x || !y) return (int)cudaErrorInvalidValue;
  NormalizeParams p = {};
  for (int64_t ch = 0; ch < c; ch++) {
    if (std[ch] == 0.0f) return (int)cudaErrorInvalidValue;
    p.scale[ch] = 1.0f / std[ch];
    p.shift[ch] = -mean[ch] * p.scale[ch];
  }
  normalize_u8_kernel<S><<<blocks_for(n_px), kThreads, 0, as_stream(stream)>>>(
      n_px, h, w, (int)c, x, flip, p, y);
  return (int)cudaGetLastError();
}

}  // namespace

extern "C" int wk_launch_relu_forward_f32(int64_t n, const float *x, float *y, void *stream) {
  return launch_relu_forward<F32>(n, x, y, false, stream);
}

extern "C" int wk_launch_relu6_forward_f32(int64_t n, const float *x, float *y, void *stream) {
  return launch_relu_forward<F32>(n, x, y, true, stream);
}

extern "C" int wk_launch_relu_backward_f32(int64_t n, const float *x, const float *dy,
                                           float *dx, void *stream) {
  return launch_relu_backward<F32>(n, x, dy, dx, false, stream);
}

extern "C" int wk_launch_relu6_backward_f32(int64_t n, const float *x, const float *dy,
                                            float *dx, void *stream) {
  return launch_relu_backward<F32>(n, x, dy, dx, true, stream);
}

extern "C" int wk_launch_add_forward_f32(int64_t n, const float *a, const float *b, float *y,
                                         void *stream) {
  return launch_add<F32>(n, a, b, y, stream);
}

extern "C" int wk_launch_normalize_u8_f32(int64_t n, int64_t h, int64_t w, int64_t c,
                                          const uint8_t *x, const uint8_t *flip,
                                          const float *mean, const float *std, float *y,
                                          void *stream) {
  return launch_normalize_u8<F32>(n, h, w, c, x, flip, mean, std, y, stream);
}

extern "C" int wk_launch_act_forward_h(wk_half_kind kind, int64_t n, bool relu6, const uint16_t *x,
                                       uint16_t *y, void *stream) {
  return by_half(kind, [&](auto s) {
    return launch_relu_forward<decltype(s)>(n, x, y, relu6, stream);
  });
}

extern "C" int wk_launch_act_backward_h(wk_half_kind kind, int64_t n, bool relu6, const uint16_t *x,
                                        const uint16_t *dy, uint16_t *dx, void *stream) {
  return by_half(kind, [&](auto s) {
    return launch_relu_backward<decltype(s)>(n, x, dy, dx, relu6, stream);
  });
}

extern "C" int wk_launch_add_h(wk_half_kind kind, int64_t n, const uint16_t *a, const uint16_t *b,
                               uint16_t *y, void *stream) {
  return by_half(kind, [&](auto s) { return launch_add<decltype(s)>(n, a, b, y, stream); });
}

extern "C" int wk_launch_normalize_u8_h(wk_half_kind kind, int64_t n, int64_t h, int64_t w,
                                        int64_t c, const uint8_t *x, const uint8_t *flip,
                                        const float *mean, const float *std, uint16_t *y,
                                        void *stream) {
  return by_half(kind, [&](auto s) {
    return launch_normalize_u8<decltype(s)>(n, h, w, c, x, flip, mean, std, y, stream);
  });
}

extern "C" int wk_launch_bias_add_h(wk_half_kind kind, int64_t rows, int64_t k, const float *bias,
                                    uint16_t *y, void *stream) {
  int64_t n = 0;
  if (!half_kind_ok(kind) || rows < 0 || k < 0 || __builtin_mul_overflow(rows, k, &n))
    return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  if (!bias || !y) return (int)cudaErrorInvalidValue;
  return by_half(kind, [&](auto s) {
    bias_add_kernel<decltype(s)><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, k, bias,
                                                                                   y);
    return (int)cudaGetLastError();
  });
}

extern "C" int wk_launch_f32_to_bf16(int64_t n, const float *x, uint16_t *y, void *stream) {
  return launch_to_half<Bf16>(n, x, y, stream);
}

extern "C" int wk_launch_bf16_to_f32(int64_t n, const uint16_t *x, float *y, bool accumulate,
                                     void *stream) {
  return launch_from_half<Bf16>(n, x, y, accumulate, stream);
}

extern "C" int wk_launch_f32_to_f16(int64_t n, const float *x, uint16_t *y, void *stream) {
  return launch_to_half<F16>(n, x, y, stream);
}

extern "C" int wk_launch_f16_to_f32(int64_t n, const uint16_t *x, float *y, bool accumulate,
                                    void *stream) {
  return launch_from_half<F16>(n, x, y, accumulate, stream);
}

extern "C" int wk_kernels_runnable(void) {
  cudaFuncAttributes a;
  const cudaError_t e = cudaFuncGetAttributes(&a, relu_forward_kernel<F32>);
  (void)cudaGetLastError(); /* not sticky: leave no error for the next launch check */
  return (int)e;
}
