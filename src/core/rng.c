/* rng.c - Philox4x32-10 and a buffered reader over it. */
#include "core/rng.h"

#include <math.h>

#define WK_PHILOX_M0 0xD2511F53u
#define WK_PHILOX_M1 0xCD9E8D57u
#define WK_PHILOX_W0 0x9E3779B9u
#define WK_PHILOX_W1 0xBB67AE85u

void wk_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)WK_PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)WK_PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += WK_PHILOX_W0;
    k1 += WK_PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

static void wk_rng_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
  const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                           (uint32_t)(stream >> 32)};
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  wk_philox4x32_10(ctr, key, out);
}

wk_rng wk_rng_make(uint64_t seed, uint64_t stream) {
  wk_rng r = {.seed = seed, .stream = stream, .block = 0, .pos = 4};
  return r;
}

uint32_t wk_rng_u32(wk_rng *r) {
  if (r->pos >= 4) {
    wk_rng_block(r->seed, r->stream, r->block++, r->buf);
    r->pos = 0;
  }
  return r->buf[r->pos++];
}

float wk_rng_uniform(wk_rng *r) { return wk_u32_to_unit(wk_rng_u32(r)); }

float wk_rng_normal(wk_rng *r) {
  /* u1 in (0, 1] so the log is finite. */
  float u1 = 1.0f - wk_rng_uniform(r);
  float u2 = wk_rng_uniform(r);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

uint32_t wk_rng_below(wk_rng *r, uint32_t n) {
  /* Lemire's multiply-and-reject. */
  uint64_t m = (uint64_t)wk_rng_u32(r) * n;
  uint32_t low = (uint32_t)m;
  if (low < n) {
    uint32_t threshold = (uint32_t)(-n) % n;
    while (low < threshold) {
      m = (uint64_t)wk_rng_u32(r) * n;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

uint32_t wk_rng_at(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t out[4];
  wk_rng_block(seed, stream, index >> 2, out);
  return out[index & 3];
}
