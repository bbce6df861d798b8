// storage.cuh - how the kernels hold a value in memory: a float as it is
// (F32), or the 16 bits of a bfloat16 (Bf16) or an IEEE float16 (F16), the
// activations' storage under --precision bf16 and fp16. Kernels templated on
// one of these load each element widened to float (exact), compute in float
// as the float32 kernel does, and store the result rounded once to nearest
// even (__float2bfloat16_rn, __float2half_rn: overflow to infinity, NaN stays
// a NaN). With F32 both are the identity, so the float32 kernels are the same
// code. Included by the .cu files only.
#ifndef WK_STORAGE_CUH
#define WK_STORAGE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>

#include "wk_kernels.h"

namespace {

struct F32 {
  using T = float;
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
struct Bf16 {
  using T = uint16_t;
  static __device__ __forceinline__ float load(uint16_t v) {
    return __bfloat162float(__ushort_as_bfloat16(v));
  }
  static __device__ __forceinline__ uint16_t store(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  }
};
struct F16 {
  using T = uint16_t;
  static __device__ __forceinline__ float load(uint16_t v) {
    return __half2float(__ushort_as_half(v));
  }
  static __device__ __forceinline__ uint16_t store(float x) {
    return __half_as_ushort(__float2half_rn(x));
  }
};

// V elements of one storage type, accessed as one (16 bytes: one 128-bit access).
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

inline bool half_kind_ok(wk_half_kind kind) { return kind == WK_HALF_BF16 || kind == WK_HALF_F16; }

// f(Bf16{}) or f(F16{}) for a launcher's wk_half_kind argument (f a generic
// lambda taking the storage type as a tag); an unknown kind is rejected.
template <class F>
int by_half(wk_half_kind kind, F f) {
  if (kind == WK_HALF_BF16) return f(Bf16{});
  if (kind == WK_HALF_F16) return f(F16{});
  return (int)cudaErrorInvalidValue;
}

inline bool store_ok(wk_store_kind kind) {
  return kind == WK_STORE_F32 || half_kind_ok((wk_half_kind)kind);
}

// f(F32{}), f(Bf16{}) or f(F16{}) for a wk_store_kind; an unknown kind is rejected.
template <class F>
int by_store(wk_store_kind kind, F f) {
  if (kind == WK_STORE_F32) return f(F32{});
  return by_half((wk_half_kind)kind, f);
}

}  // namespace

#endif
