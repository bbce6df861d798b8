/* cuda_fp16.h (kernel emulator): IEEE float16 as the .cu files in kernels/ use it, in
 * software on the host: float -> half rounded to nearest even (overflow to
 * infinity, NaN to CUDA's canonical 0x7fff), half -> float exact. */
#ifndef WK_EMU_CUDA_FP16_H
#define WK_EMU_CUDA_FP16_H

#include <math.h>
#include <stdint.h>
#include <string.h>

struct __half {
  uint16_t bits;
};

inline __half __ushort_as_half(unsigned short v) { return __half{v}; }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }

inline float __half2float(__half h) {
  const uint32_t sign = (uint32_t)(h.bits & 0x8000u) << 16;
  const uint32_t e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu;
  if (e == 0) { /* zero or subnormal: m * 2^-24, exact in float */
    const float f = ldexpf((float)m, -24);
    return sign ? -f : f;
  }
  const uint32_t u = e == 31 ? sign | 0x7f800000u | (m << 13) : sign | ((e + 112u) << 23) | (m << 13);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

inline __half __float2half_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return __half{0x7fff};               /* NaN */
  if (a >= 0x477ff000u) return __half{(uint16_t)(sign | 0x7c00u)}; /* >= 65520: infinity */
  if (a >= 0x38800000u) {                                   /* a normal half: >= 2^-14 */
    uint32_t m = a - 0x38000000u;                           /* exponent rebiased 127 -> 15 */
    m += 0xfffu + ((m >> 13) & 1u);                         /* to nearest, ties to even */
    return __half{(uint16_t)(sign | (m >> 13))};
  }
  float mag;
  memcpy(&mag, &a, sizeof mag);
  /* subnormal or zero: the multiple of 2^-24 nearest (ties to even; the
   * product is exact), 1024 being the smallest normal's encoding */
  return __half{(uint16_t)(sign | (uint16_t)nearbyintf(mag * 16777216.0f))};
}

#endif
