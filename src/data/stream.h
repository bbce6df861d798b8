/* stream.h - which Philox stream (see core/rng.h) each random decision of the
 * data pipeline reads, in one place so that no two decisions share one.
 *
 *   augment  (epoch, sample): bit 63 clear, epoch in bits 32..62, the
 *            dataset index of the sample in bits 0..31
 *   shuffle  epoch: bits 63..62 = 10
 *   split    class: bits 63..62 = 11
 * The key is always the run's seed. So a sample's augmentation depends on
 * (seed, epoch, sample index) only: not on the thread that makes it, the
 * batch it lands in or the order of the epoch. */
#ifndef WK_DATA_STREAM_H
#define WK_DATA_STREAM_H

#include <stdint.h>

#include "core/status.h"

#define WK_STREAM_MAX_EPOCH (((int64_t)1 << 31) - 1)
#define WK_STREAM_MAX_SAMPLE (((int64_t)1 << 32) - 1)

static inline uint64_t wk_stream_augment(int64_t epoch, int64_t sample) {
  WK_ASSERT(epoch >= 0 && epoch <= WK_STREAM_MAX_EPOCH);
  WK_ASSERT(sample >= 0 && sample <= WK_STREAM_MAX_SAMPLE);
  return (uint64_t)epoch << 32 | (uint64_t)sample;
}

static inline uint64_t wk_stream_shuffle(int64_t epoch) {
  WK_ASSERT(epoch >= 0 && epoch <= WK_STREAM_MAX_EPOCH);
  return (uint64_t)1 << 63 | (uint64_t)epoch;
}

static inline uint64_t wk_stream_split(uint32_t label) {
  return (uint64_t)3 << 62 | label;
}

#endif
