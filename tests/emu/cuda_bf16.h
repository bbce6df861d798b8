/* cuda_bf16.h (kernel emulator): bfloat16 as the .cu files in kernels/ use it, in software
 * on the host: float -> bfloat16 rounded to nearest even (NaN to CUDA's
 * canonical 0x7fff), bfloat16 -> float exact. */
#ifndef WK_EMU_CUDA_BF16_H
#define WK_EMU_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
  uint16_t bits;
};

inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short v) { return __nv_bfloat16{v}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.bits; }

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = (uint32_t)h.bits << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{0x7fff};
  u += 0x7fffu + ((u >> 16) & 1u); /* to nearest, ties to even; overflow carries to infinity */
  return __nv_bfloat16{(uint16_t)(u >> 16)};
}

#endif
