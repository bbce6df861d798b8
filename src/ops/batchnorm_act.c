/* batchnorm_act.c - whisker's own training batchnorm over M rows of C channels
 * (NHWC flattened), with the activation after it fused: none, relu or relu6.
 *
 * Why: oneDNN 2.6 fuses a ReLU into its batchnorm and nothing else, so
 * MobileNetV2's batchnorm + ReLU6 pairs ran as oneDNN's batchnorm and then an
 * activation of their own, forward and backward: at least 5 passes over memory
 * forward (3 and more for the batchnorm, the ReLU6's read and write) and 8
 * backward (the ReLU6's 3, the batchnorm's 5). Here forward is 3 (one for the
 * statistics, one read and one write for the output, clipped on the way out)
 * and backward 5 (x and dy for the sums; x, dy and dx for the gradient), the
 * activation's mask being recomputed from x in backward, not read.
 *
 * The statistics are one pass of sums shifted by an estimate of the mean (the
 * first rows' mean, so that the variance E[d^2] - E[d]^2 cancels little),
 * accumulated in float over chunks of 32 rows and in double above that. Rows
 * go in blocks of a fixed size, each block's double sums into a slot of its
 * own, the slots added in block order on one thread: the result does not
 * depend on the number of threads.
 *
 * The mask: forward clips z = x * s + t (s = gamma / std, t = beta - mean * s);
 * backward recomputes z the same way from the same s and t, so it passes the
 * gradient exactly where forward's output was strictly inside (0, 6) (or above
 * 0), as the unfused activation's backward, reading that output, does. This
 * file is compiled without floating-point contraction (CMakeLists.txt) so that
 * z is rounded the same in every loop that computes it, AVX-512's included
 * (the same multiply, then the same add).
 *
 * Speed: the passes are memory-bound (some 45 GB/s on the 2-core build
 * machine). Where oneDNN sees AVX-512 the loops run on it, and the passes that
 * write (the output, dx) store past the caches when their output is larger
 * than a last-level cache (non-temporal stores need no read of the line they
 * replace: a pass reading one buffer and writing one took 5.6 ms instead of
 * 7.5 for 154 MB there); that needs channels a multiple of 16 and 64-byte
 * aligned rows, else the plain loops store. */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ops/bn_act.h"
#include "ops/dnnl_util.h"
#include "ops/parallel.h"

enum { WK_BNA_CHUNK = 32, WK_BNA_BLOCK = 1024 };
/* Outputs above this go past the caches (the build machine's L3: 32 MiB). */
#define WK_BNA_STREAM_BYTES ((int64_t)24 << 20)
#define WK_BNA_AVX512 __attribute__((target("avx512f")))
#define WK_BNA_INLINE static inline __attribute__((always_inline))

struct wk_bn_act {
  int64_t m, c, n_blocks;
  float eps;
  wk_post_act act;
  bool avx512;   /* oneDNN's ISA has AVX-512 */
  double *part;  /* n_blocks x 2C: each block's sums */
  float *fpart;  /* n_blocks x 2C: each block's chunk sums (both in the
                  * context's scratch, during a call) */
  float *chan;   /* 6C: shift, s, t, 1/std, then in backward mean and a */
};

wk_status wk_bn_act_create(int64_t m, int64_t c, float eps, wk_post_act act, wk_bn_act **out) {
  *out = NULL;
  if (m < 1 || c < 1) return wk_fail(WK_ERR_SHAPE, "batchnorm: %lld rows of %lld channels",
                                     (long long)m, (long long)c);
  wk_bn_act *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "batchnorm: out of memory");
  p->m = m;
  p->c = c;
  p->eps = eps;
  p->act = act;
  p->avx512 = wk_dnnl_avx512();
  p->n_blocks = (m + WK_BNA_BLOCK - 1) / WK_BNA_BLOCK;
  p->chan = malloc((size_t)(6 * c) * sizeof *p->chan);
  if (!p->chan) {
    wk_bn_act_destroy(p);
    return wk_fail(WK_ERR_NOMEM, "batchnorm: out of memory for %lld rows of %lld channels",
                   (long long)m, (long long)c);
  }
  *out = p;
  return WK_OK;
}

void wk_bn_act_destroy(wk_bn_act *p) {
  if (!p) return;
  free(p->chan);
  free(p);
}

void wk_bn_act_use_avx512(wk_bn_act *p, bool on) { p->avx512 = on && wk_dnnl_avx512(); }

/* The blocks' sums in the context's scratch (under 1 MB for MobileNetV2's
 * largest batchnorm at batch 32: 392 blocks of 96 channels). */
static wk_status wk_bna_scratch(wk_bn_act *p, wk_ctx *ctx) {
  const size_t n = (size_t)(p->n_blocks * 2 * p->c);
  void *s;
  WK_TRY(wk_ctx_scratch(ctx, n * (sizeof(double) + sizeof(float)), &s));
  p->part = s;
  p->fpart = (float *)(p->part + n);
  return WK_OK;
}

typedef struct {
  const wk_bn_act *p;
  const float *x, *dy;
  float *y;    /* forward: the output; backward: dx */
  bool stream; /* AVX-512 rows with non-temporal stores */
} wk_bna_job;

/* Each slice's body is inlined twice: plain, and compiled for AVX-512. */
#define WK_BNA_SLICES(name)                                                                  \
  static void name##_slice(const void *arg, int64_t b, int64_t e) { name##_body(arg, b, e); } \
  WK_BNA_AVX512 static void name##_slice512(const void *arg, int64_t b, int64_t e) {          \
    name##_body(arg, b, e);                                                                  \
  }

/* ------------------------------------------------------------ helpers */

/* z = x * s + t, the one expression forward and backward both round. */
static inline float wk_bna_z(float x, float s, float t) { return x * s + t; }

/* The gradient reaching the batchnorm's output: dy where the activation
 * passed z through. */
static inline float wk_bna_dz(wk_post_act act, float z, float g) {
  if (act == WK_POST_RELU6) return (z > 0.0f) & (z < 6.0f) ? g : 0.0f;
  if (act == WK_POST_RELU) return z > 0.0f ? g : 0.0f;
  return g;
}

/* The same on 16 lanes: where the activation passes the gradient at z. */
WK_BNA_AVX512 static inline __mmask16 wk_bna_pass512(wk_post_act act, __m512 z) {
  if (act == WK_POST_NONE) return (__mmask16)0xffff;
  const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ);
  if (act == WK_POST_RELU) return pos;
  return _mm512_mask_cmp_ps_mask(pos, z, _mm512_set1_ps(6.0f), _CMP_LT_OQ);
}

/* d[0..16) += f, in double. */
WK_BNA_AVX512 static inline void wk_bna_flush(double *d, __m512 f) {
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
  const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
  _mm512_storeu_pd(d, _mm512_add_pd(_mm512_loadu_pd(d), lo));
  _mm512_storeu_pd(d + 8, _mm512_add_pd(_mm512_loadu_pd(d + 8), hi));
}

/* ----------------------------------------------------------- the sums */

/* Blocks [b, e): per channel, the sums over each block's rows of v and w
 * (forward, dy NULL: v = x - shift, w = v * v; backward: v = dz, w = dz *
 * xhat), in float over chunks of rows and in double over the block. */
WK_BNA_INLINE void wk_bna_sums_body(const void *arg, int64_t b, int64_t e) {
  const wk_bna_job *j = arg;
  const int64_t c = j->p->c, m = j->p->m;
  const float *restrict k = j->p->chan, *restrict s = k + c, *restrict t = k + 2 * c;
  const float *restrict invstd = k + 3 * c, *restrict mean = k + 4 * c;
  const wk_post_act act = j->p->act;
  for (int64_t blk = b; blk < e; blk++) {
    double *restrict d1 = j->p->part + blk * 2 * c, *restrict d2 = d1 + c;
    float *restrict f1 = j->p->fpart + blk * 2 * c, *restrict f2 = f1 + c;
    const int64_t r0 = blk * WK_BNA_BLOCK, r1 = r0 + WK_BNA_BLOCK < m ? r0 + WK_BNA_BLOCK : m;
    memset(d1, 0, (size_t)(2 * c) * sizeof *d1);
    for (int64_t r = r0; r < r1; r += WK_BNA_CHUNK) {
      const int64_t re = r + WK_BNA_CHUNK < r1 ? r + WK_BNA_CHUNK : r1;
      memset(f1, 0, (size_t)(2 * c) * sizeof *f1);
      for (int64_t rr = r; rr < re; rr++) {
        const float *restrict xr = j->x + rr * c;
        if (!j->dy) {
#pragma omp simd
          for (int64_t ch = 0; ch < c; ch++) {
            const float d = xr[ch] - k[ch];
            f1[ch] += d;
            f2[ch] += d * d;
          }
          continue;
        }
        const float *restrict gr = j->dy + rr * c;
#pragma omp simd
        for (int64_t ch = 0; ch < c; ch++) {
          const float dz = wk_bna_dz(act, wk_bna_z(xr[ch], s[ch], t[ch]), gr[ch]);
          f1[ch] += dz;
          f2[ch] += dz * ((xr[ch] - mean[ch]) * invstd[ch]);
        }
      }
#pragma omp simd
      for (int64_t ch = 0; ch < c; ch++) {
        d1[ch] += f1[ch];
        d2[ch] += f2[ch];
      }
    }
  }
}

WK_BNA_SLICES(wk_bna_sums)

/* The same with AVX-512 (C a multiple of 16): a chunk's rows 16 channels at a
 * time, the sums in registers; the same arithmetic as the plain loops (where
 * the activation stops the gradient, masked adds add nothing where those add
 * 0). */
WK_BNA_AVX512 static void wk_bna_sums_512(const void *arg, int64_t b, int64_t e) {
  const wk_bna_job *j = arg;
  const int64_t c = j->p->c, m = j->p->m;
  const float *k = j->p->chan, *s = k + c, *t = k + 2 * c, *invstd = k + 3 * c, *mean = k + 4 * c;
  const wk_post_act act = j->p->act;
  for (int64_t blk = b; blk < e; blk++) {
    double *d1 = j->p->part + blk * 2 * c, *d2 = d1 + c;
    const int64_t r0 = blk * WK_BNA_BLOCK, r1 = r0 + WK_BNA_BLOCK < m ? r0 + WK_BNA_BLOCK : m;
    memset(d1, 0, (size_t)(2 * c) * sizeof *d1);
    for (int64_t r = r0; r < r1; r += WK_BNA_CHUNK) {
      const int64_t re = r + WK_BNA_CHUNK < r1 ? r + WK_BNA_CHUNK : r1;
      for (int64_t ch = 0; ch < c; ch += 16) {
        __m512 f1 = _mm512_setzero_ps(), f2 = _mm512_setzero_ps();
        if (!j->dy) {
          const __m512 kv = _mm512_loadu_ps(k + ch);
          for (int64_t rr = r; rr < re; rr++) {
            const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(j->x + rr * c + ch), kv);
            f1 = _mm512_add_ps(f1, d);
            f2 = _mm512_add_ps(f2, _mm512_mul_ps(d, d));
          }
        } else {
          const __m512 sv = _mm512_loadu_ps(s + ch), tv = _mm512_loadu_ps(t + ch);
          const __m512 mv = _mm512_loadu_ps(mean + ch), iv = _mm512_loadu_ps(invstd + ch);
          for (int64_t rr = r; rr < re; rr++) {
            const __m512 x = _mm512_loadu_ps(j->x + rr * c + ch);
            const __m512 g = _mm512_loadu_ps(j->dy + rr * c + ch);
            const __mmask16 pass = wk_bna_pass512(act, _mm512_add_ps(_mm512_mul_ps(x, sv), tv));
            f1 = _mm512_mask_add_ps(f1, pass, f1, g);
            f2 = _mm512_mask_add_ps(f2, pass, f2,
                                    _mm512_mul_ps(g, _mm512_mul_ps(_mm512_sub_ps(x, mv), iv)));
          }
        }
        wk_bna_flush(d1 + ch, f1);
        wk_bna_flush(d2 + ch, f2);
      }
    }
  }
}

/* Every block's sums (j->dy NULL: forward's), then channel ch's totals over
 * the blocks, added in block order. */
static void wk_bna_sum(wk_bn_act *p, wk_ctx *ctx, const wk_bna_job *j) {
  wk_parallel_slices(ctx, p->n_blocks, (j->dy ? 2 : 1) * WK_BNA_BLOCK * p->c,
                     !p->avx512      ? wk_bna_sums_slice
                     : p->c % 16 == 0 ? wk_bna_sums_512
                                      : wk_bna_sums_slice512,
                     j);
}

static void wk_bna_totals(const wk_bn_act *p, int64_t ch, double *s1, double *s2) {
  const int64_t c = p->c;
  *s1 = *s2 = 0.0;
  for (int64_t blk = 0; blk < p->n_blocks; blk++) {
    *s1 += p->part[blk * 2 * c + ch];
    *s2 += p->part[blk * 2 * c + c + ch];
  }
}

/* ---------------------------------------------------------------- forward */

/* Rows [b, e): y = act(x * s + t). */
WK_BNA_INLINE void wk_bna_norm_body(const void *arg, int64_t b, int64_t e) {
  const wk_bna_job *j = arg;
  const int64_t c = j->p->c;
  const float *restrict s = j->p->chan + c, *restrict t = j->p->chan + 2 * c;
  const wk_post_act act = j->p->act;
  for (int64_t r = b; r < e; r++) {
    const float *restrict xr = j->x + r * c;
    float *restrict yr = j->y + r * c;
    if (act == WK_POST_RELU6) {
#pragma omp simd
      for (int64_t ch = 0; ch < c; ch++) {
        const float z = wk_bna_z(xr[ch], s[ch], t[ch]);
        const float v = z > 0.0f ? z : 0.0f;
        yr[ch] = v < 6.0f ? v : 6.0f;
      }
    } else if (act == WK_POST_RELU) {
#pragma omp simd
      for (int64_t ch = 0; ch < c; ch++) {
        const float z = wk_bna_z(xr[ch], s[ch], t[ch]);
        yr[ch] = z > 0.0f ? z : 0.0f;
      }
    } else {
#pragma omp simd
      for (int64_t ch = 0; ch < c; ch++) yr[ch] = wk_bna_z(xr[ch], s[ch], t[ch]);
    }
  }
}

WK_BNA_SLICES(wk_bna_norm)

/* The same with AVX-512 and non-temporal stores (C a multiple of 16, rows
 * 64-byte aligned). max(z, 0) is z > 0 ? z : 0 for a NaN and for -0 too (the
 * instruction returns its second operand then). */
WK_BNA_AVX512 static void wk_bna_norm_stream(const void *arg, int64_t b, int64_t e) {
  const wk_bna_job *j = arg;
  const int64_t c = j->p->c;
  const float *s = j->p->chan + c, *t = j->p->chan + 2 * c;
  const wk_post_act act = j->p->act;
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
  for (int64_t r = b; r < e; r++) {
    const float *xr = j->x + r * c;
    float *yr = j->y + r * c;
    for (int64_t ch = 0; ch < c; ch += 16) {
      __m512 z = _mm512_add_ps(_mm512_mul_ps(_mm512_load_ps(xr + ch), _mm512_loadu_ps(s + ch)),
                               _mm512_loadu_ps(t + ch));
      if (act != WK_POST_NONE) z = _mm512_max_ps(z, zero);
      if (act == WK_POST_RELU6) z = _mm512_min_ps(z, six);
      _mm512_stream_ps(yr + ch, z);
    }
  }
  _mm_sfence();
}

/* Whether a pass writing `out` (and reading `a`, `b`) streams its output. */
static bool wk_bna_streams(const wk_bn_act *p, const float *out, const float *a, const float *b) {
  const uintptr_t mis = (uintptr_t)out | (uintptr_t)a | (uintptr_t)b;
  return p->avx512 && p->c % 16 == 0 && (mis & 63) == 0 &&
         p->m * p->c * (int64_t)sizeof(float) > WK_BNA_STREAM_BYTES;
}

/* s and t from gamma, beta, mean and the biased variance: the same floats in
 * forward and in backward. Also 1/std. */
static void wk_bna_affine(wk_bn_act *p, const float *gamma, const float *beta, const float *mean,
                          const float *var) {
  const int64_t c = p->c;
  float *s = p->chan + c, *t = p->chan + 2 * c, *invstd = p->chan + 3 * c;
  for (int64_t ch = 0; ch < c; ch++) {
    invstd[ch] = 1.0f / sqrtf(var[ch] + p->eps);
    s[ch] = gamma[ch] * invstd[ch];
    t[ch] = beta[ch] - mean[ch] * s[ch];
  }
}

wk_status wk_bn_act_forward(wk_bn_act *p, wk_ctx *ctx, const float *x, const float *gamma,
                            const float *beta, float *mean, float *var, float *y) {
  const int64_t c = p->c, m = p->m;
  WK_TRY(wk_bna_scratch(p, ctx));
  float *shift = p->chan;
  /* the shift: the mean of the first rows */
  const int64_t r0 = m < WK_BNA_CHUNK ? m : WK_BNA_CHUNK;
  for (int64_t ch = 0; ch < c; ch++) {
    double acc = 0.0;
    for (int64_t r = 0; r < r0; r++) acc += x[r * c + ch];
    shift[ch] = (float)(acc / (double)r0);
  }
  wk_bna_job j = {p, x, NULL, y, wk_bna_streams(p, y, x, x)};
  wk_bna_sum(p, ctx, &j);
  for (int64_t ch = 0; ch < c; ch++) {
    double s1, s2;
    wk_bna_totals(p, ch, &s1, &s2);
    const double e1 = s1 / (double)m, v = s2 / (double)m - e1 * e1;
    mean[ch] = (float)((double)shift[ch] + e1);
    var[ch] = v > 0.0 ? (float)v : 0.0f;
  }
  wk_bna_affine(p, gamma, beta, mean, var);
  wk_parallel_slices(ctx, m, c,
                     j.stream   ? wk_bna_norm_stream
                     : p->avx512 ? wk_bna_norm_slice512
                                 : wk_bna_norm_slice,
                     &j);
  return WK_OK;
}

/* --------------------------------------------------------------- backward */

/* Rows [b, e): dx = gamma / std * (dz - mean(dz) - xhat * mean(dz * xhat)),
 * as s * (dz - a - (x - mean) * q) with q = mean(dz * xhat) / std. dx may be
 * dy: each element is read before it is written. */
WK_BNA_INLINE void wk_bna_dx_body(const void *arg, int64_t b, int64_t e) {
  const wk_bna_job *j = arg;
  const int64_t c = j->p->c;
  const float *restrict s = j->p->chan + c, *restrict t = j->p->chan + 2 * c;
  const float *restrict mean = j->p->chan + 4 * c;
  const float *restrict a = j->p->chan + 5 * c, *restrict q = j->p->fpart; /* C */
  const wk_post_act act = j->p->act;
  for (int64_t r = b; r < e; r++) {
    const float *xr = j->x + r * c, *gr = j->dy + r * c;
    float *dxr = j->y + r * c;
#pragma omp simd
    for (int64_t ch = 0; ch < c; ch++) {
      const float dz = wk_bna_dz(act, wk_bna_z(xr[ch], s[ch], t[ch]), gr[ch]);
      dxr[ch] = s[ch] * (dz - a[ch] - (xr[ch] - mean[ch]) * q[ch]);
    }
  }
}

WK_BNA_SLICES(wk_bna_dx)

/* The same with AVX-512 and non-temporal stores: the same arithmetic. */
WK_BNA_AVX512 static void wk_bna_dx_stream(const void *arg, int64_t b, int64_t e) {
  const wk_bna_job *j = arg;
  const int64_t c = j->p->c;
  const float *s = j->p->chan + c, *t = j->p->chan + 2 * c;
  const float *mean = j->p->chan + 4 * c;
  const float *a = j->p->chan + 5 * c, *q = j->p->fpart;
  const wk_post_act act = j->p->act;
  for (int64_t r = b; r < e; r++) {
    const float *xr = j->x + r * c, *gr = j->dy + r * c;
    float *dxr = j->y + r * c;
    for (int64_t ch = 0; ch < c; ch += 16) {
      const __m512 x = _mm512_load_ps(xr + ch), sv = _mm512_loadu_ps(s + ch);
      const __m512 z = _mm512_add_ps(_mm512_mul_ps(x, sv), _mm512_loadu_ps(t + ch));
      const __m512 dz = _mm512_maskz_mov_ps(wk_bna_pass512(act, z), _mm512_load_ps(gr + ch));
      const __m512 in =
          _mm512_sub_ps(_mm512_sub_ps(dz, _mm512_loadu_ps(a + ch)),
                        _mm512_mul_ps(_mm512_sub_ps(x, _mm512_loadu_ps(mean + ch)),
                                      _mm512_loadu_ps(q + ch)));
      _mm512_stream_ps(dxr + ch, _mm512_mul_ps(sv, in));
    }
  }
  _mm_sfence();
}

wk_status wk_bn_act_backward(wk_bn_act *p, wk_ctx *ctx, const float *x, const float *gamma,
                             const float *beta, const float *mean, const float *var,
                             const float *dy, float *dx, float *dgamma, float *dbeta) {
  const int64_t c = p->c, m = p->m;
  WK_TRY(wk_bna_scratch(p, ctx));
  wk_bna_affine(p, gamma, beta, mean, var);
  memcpy(p->chan + 4 * c, mean, (size_t)c * sizeof *mean);
  wk_bna_job j = {p, x, dy, dx, dx && wk_bna_streams(p, dx, x, dy)};
  wk_bna_sum(p, ctx, &j);
  /* a = mean(dz) into chan's sixth row; q = mean(dz * xhat) / std into
   * fpart's first C (the sums' slots are read here for the last time) */
  float *a = p->chan + 5 * c, *q = p->fpart;
  const float *invstd = p->chan + 3 * c;
  for (int64_t ch = 0; ch < c; ch++) {
    double s1, s2;
    wk_bna_totals(p, ch, &s1, &s2);
    if (dbeta) dbeta[ch] = (float)s1;
    if (dgamma) dgamma[ch] = (float)s2;
    a[ch] = (float)(s1 / (double)m);
    q[ch] = (float)(s2 / (double)m * invstd[ch]);
  }
  if (dx)
    wk_parallel_slices(ctx, m, 2 * c,
                       j.stream   ? wk_bna_dx_stream
                       : p->avx512 ? wk_bna_dx_slice512
                                   : wk_bna_dx_slice,
                       &j);
  return WK_OK;
}
