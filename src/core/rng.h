/* rng.h - a counter-based random number generator (Philox4x32-10, Salmon et al.
 * 2011, "Parallel random numbers: as easy as 1, 2, 3").
 *
 * A random value is a pure function of (key, counter): any thread can produce the
 * values of any sample without sharing state, so results never depend on the
 * number of threads or on the order work is scheduled in. Convention: key = the
 * run's seed; the 128-bit counter = (stream, index), where stream names what is
 * being randomised (e.g. epoch and sample) and index counts values within it. */
#ifndef WK_RNG_H
#define WK_RNG_H

#include <stdint.h>

/* One Philox4x32-10 block: 4 random words for counter (c0..c3) under key (k0,k1). */
void wk_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A sequential reader over the stream (seed, stream): each call consumes one word. */
typedef struct wk_rng {
  uint64_t seed;
  uint64_t stream;
  uint64_t block;  /* next counter block to generate */
  uint32_t buf[4];
  int pos;         /* next unused word in buf; 4 = empty */
} wk_rng;

wk_rng wk_rng_make(uint64_t seed, uint64_t stream);
uint32_t wk_rng_u32(wk_rng *r);
/* Uniform in [0, 1), 24 random bits. */
float wk_rng_uniform(wk_rng *r);
/* Standard normal (Box-Muller). */
float wk_rng_normal(wk_rng *r);
/* Uniform integer in [0, n), without modulo bias; n > 0. */
uint32_t wk_rng_below(wk_rng *r, uint32_t n);

/* Random-access form: word `index` of stream (seed, stream). */
uint32_t wk_rng_at(uint64_t seed, uint64_t stream, uint64_t index);

/* Maps 32 random bits to a float uniform in [0, 1). */
static inline float wk_u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

#endif
