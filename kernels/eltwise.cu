// eltwise.cu - elementwise kernels: relu and relu6 forward and backward, add,
// the uint8 NHWC -> normalised float conversion (with per-image horizontal flip)
// that feeds a batch to the network, and the float <-> bfloat16 conversions of
// --precision bf16. Launchers and their contract: wk_kernels.h.
//
// Every kernel is a grid-stride loop, so any n works with a bounded grid. The
// activations use the same comparisons as the reference (ref_template.inc), so
// NaN, -0 and the kinks at 0 and 6 come out bit for bit as on the CPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>

#include "grid.cuh"
#include "wk_kernels.h"

namespace {

__global__ void relu_forward_kernel(int64_t n, const float *x, float *y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : 0.0f;
  }
}

__global__ void relu6_forward_kernel(int64_t n, const float *x, float *y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = x[i] > 0.0f ? x[i] : 0.0f;
    y[i] = v < 6.0f ? v : 6.0f;
  }
}

__global__ void relu_backward_kernel(int64_t n, const float *x, const float *dy, float *dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

__global__ void relu6_backward_kernel(int64_t n, const float *x, const float *dy, float *dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = x[i];
    dx[i] = (v > 0.0f && v < 6.0f) ? dy[i] : 0.0f;
  }
}

__global__ void add_forward_kernel(int64_t n, const float *a, const float *b, float *y) {
  // __fadd_rn: never contracted with a neighbouring multiply, like the C reference.
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = __fadd_rn(a[i], b[i]);
}

struct NormalizeParams {
  float scale[WK_NORMALIZE_MAX_CHANNELS]; // 1 / std
  float shift[WK_NORMALIZE_MAX_CHANNELS]; // -mean / std
};

// One thread per output pixel (all c channels), so the index arithmetic is paid
// once per pixel. x, y: (n, h, w, c); flip: (n) or NULL; n_px = n * h * w.
__global__ void normalize_u8_kernel(int64_t n_px, int64_t h, int64_t w, int c,
                                    const uint8_t *x, const uint8_t *flip, NormalizeParams p,
                                    float *y) {
  for (int64_t px = first_index(); px < n_px; px += grid_stride()) {
    const int64_t row = px / w;  // b * h + i
    const int64_t j = px - row * w;
    const int64_t b = row / h;
    const int64_t src_j = (flip && flip[b]) ? w - 1 - j : j;
    const uint8_t *xp = x + (row * w + src_j) * c;
    float *yp = y + px * c;
    for (int ch = 0; ch < c; ch++) // the loader's float path, each operation rounded alone
      yp[ch] = __fadd_rn(__fmul_rn(__fmul_rn((float)xp[ch], 1.0f / 255.0f), p.scale[ch]),
                         p.shift[ch]);
  }
}

// The two 16-bit formats, as their bits: rounding to nearest even, and back.
struct Bf16 {
  static __device__ uint16_t to(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
  static __device__ float from(uint16_t v) { return __bfloat162float(__ushort_as_bfloat16(v)); }
};
struct F16 {
  static __device__ uint16_t to(float x) { return __half_as_ushort(__float2half_rn(x)); }
  static __device__ float from(uint16_t v) { return __half2float(__ushort_as_half(v)); }
};

template <class H>
__global__ void to_half_kernel(int64_t n, const float *x, uint16_t *y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = H::to(x[i]);
}

template <class H>
__global__ void from_half_kernel(int64_t n, const uint16_t *x, float *y, bool accumulate) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = H::from(x[i]);
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

}  // namespace

extern "C" int wk_launch_relu_forward_f32(int64_t n, const float *x, float *y, void *stream) {
  if (n < 0 || (n > 0 && (!x || !y))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  relu_forward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_relu6_forward_f32(int64_t n, const float *x, float *y, void *stream) {
  if (n < 0 || (n > 0 && (!x || !y))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  relu6_forward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_relu_backward_f32(int64_t n, const float *x, const float *dy,
                                           float *dx, void *stream) {
  if (n < 0 || (n > 0 && (!x || !dy || !dx))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  relu_backward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, dy, dx);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_relu6_backward_f32(int64_t n, const float *x, const float *dy,
                                            float *dx, void *stream) {
  if (n < 0 || (n > 0 && (!x || !dy || !dx))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  relu6_backward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, dy, dx);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_add_forward_f32(int64_t n, const float *a, const float *b, float *y,
                                         void *stream) {
  if (n < 0 || (n > 0 && (!a || !b || !y))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  add_forward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, a, b, y);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_normalize_u8_f32(int64_t n, int64_t h, int64_t w, int64_t c,
                                          const uint8_t *x, const uint8_t *flip,
                                          const float *mean, const float *std, float *y,
                                          void *stream) {
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
  normalize_u8_kernel<<<blocks_for(n_px), kThreads, 0, as_stream(stream)>>>(
      n_px, h, w, (int)c, x, flip, p, y);
  return (int)cudaGetLastError();
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
