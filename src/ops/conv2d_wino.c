/* conv2d_wino.c - Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution for
 * inference at small batches: whisker's own, where oneDNN's Winograd (tuned
 * for large batches) or its direct convolution is slower.
 *
 * Why: at batch 1, ResNet's 14x14 and 7x7 3x3 convolutions run direct at
 * about the two cores' fp32 peak, and oneDNN's Winograd is 3x slower than
 * direct there (its tile and layout overheads dominate so few pixels). Winograd
 * F(m x m, 3 x 3) does the same convolution with (m + 2)^2 multiplications per
 * m x m output tile instead of 9 m^2: 2.25x fewer for m = 2, 4x for m = 4,
 * as (m + 2)^2 matrix products that run near peak.
 *
 * Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (2015):
 *   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
 * over (m + 2)^2 input tiles d (stride m) and 3x3 filters g, which is the
 * cross-correlation deep learning calls convolution; the matrices are the
 * paper's (points 0, 1, -1 for m = 2; 0, 1, -1, 2, -2 for m = 4). Layouts,
 * with P = (m + 2)^2 positions, T tiles (over the batch), C input and O
 * output channels:
 *   U [P][O/64][C][64]  transformed weights in blocks of 64 output channels,
 *                       cached until the weights change
 *   V [P][T][C]         transformed input tiles            (scratch)
 *   M [P][T][O]         V times U per position             (scratch)
 * Every transform runs along the contiguous channel axis of NHWC, so the
 * loops vectorise. The products are whisker's own AVX-512 kernel rather than
 * sgemm: with so few rows (T = 16 at 7x7) sgemm spends its time packing U,
 * which the kernel streams once from its blocked layout (a 64-wide block of
 * U, C x 64, stays in L2 while every row of V passes over it). Each output
 * element comes from a fixed sequence of operations whatever the thread
 * count. The path needs an x86-64 CPU with AVX-512 (checked at run time;
 * elsewhere, and on other architectures, oneDNN runs).
 *
 * Memory: U is (m + 2)^2 / 9 times the weights (16/9 for m = 2, 4x for
 * m = 4: 37.7 MB for a 512x512 layer), per plan, i.e. per batch size.
 * A plan and its context's scratch serve one thread at a time (plan.h).
 *
 * Error: the transforms add rounding on both sides, more for m = 4 (its
 * points reach 2 and its output transform 8); against the double-precision
 * reference the op tests bound it at 1e-5 for m = 2 and 5e-5 for m = 4
 * (measured up to 1e-6 and 8e-6; test_ops). */
#include "ops/wino.h"

#if defined(__x86_64__)

#include <dnnl.h>
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>

#include "ops/dnnl_util.h"
#include "ops/parallel.h"

#define WK_WINO_TARGET __attribute__((target("avx512f")))

struct wk_wino {
  wk_conv2d_geom g;
  wk_post_act post;
  bool sum;          /* y = post(y + conv): y's old values added in */
  int m, a;          /* output tile side, input tile side m + 2 */
  int64_t th, tw, t; /* tiles down, across, in all (over the batch) */
  int64_t chunk_tiles; /* tiles transformed and multiplied at a time */
  float *u;          /* [P][O/64][C][64] */
  float *zeros;      /* C zeros: the padding's row */
  uint64_t version;  /* of the weights in u; 0 = none */
};

/* G for F(2x2, 3x3) and F(4x4, 3x3); B^T and A^T are written out in the
 * one-dimensional transforms below:
 *   F(2x2): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1]
 *   F(4x4): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
 *                  0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 *           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */
static const float wk_g2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
/* F(4x4, 3x3) */
static const float wk_g4[6][3] = {{1.0f / 4, 0, 0},
                                  {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                                  {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                                  {1.0f / 24, 1.0f / 12, 1.0f / 6},
                                  {1.0f / 24, -1.0f / 12, 1.0f / 6},
                                  {0, 0, 1}};

static bool wk_wino_geom_fits(const wk_conv2d_geom *g) {
  return g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
         g->pt == 1 && g->pl == 1 && g->pb == 1 && g->pr == 1 && g->groups == 1 &&
         g->oh == g->h && g->ow == g->w && g->c >= 16 && g->o % 64 == 0 && wk_dnnl_avx512();
}

int wk_wino_pick(const wk_conv2d_geom *g) {
  if (!wk_wino_geom_fits(g)) return 0;
  /* Per layer of ResNet-18 at batch 1 on 2 AVX-512 cores, ms (each row from
   * one run of wk_bench_infer --profile; the machine's speed drifts by up to
   * a third between runs, so the 56x56 and 14x14 choices, a few percent
   * apart, are within noise):
   *              oneDNN  (its kernel)    F(2x2)  F(4x4)
   *   56x56x64    0.58   (Winograd)       0.94    0.56
   *   28x28x128   0.62   (Winograd)       0.60    0.51
   *   14x14x256   0.97   (direct)         0.55    0.53
   *   7x7x512     1.10   (direct)         0.75    0.85
   * and the whole network 13.9 -> 9.7 ms in one run each (more than these
   * rows add up to: the profile's per-layer times come from other runs).
   * F(4x4) transforms the weights to
   * 4x their size (36/9; 37.7 MB for a 512x512 layer), which at 7x7 (4
   * tiles an image) costs more memory traffic than it saves; F(2x2) (16/9)
   * wins there. At batch 32 F(4x4) takes every layer (271 vs 314 ms). */
  const int64_t tiles4 = g->n * ((g->oh + 3) / 4) * ((g->ow + 3) / 4);
  return tiles4 >= 16 ? 4 : 2;
}

wk_status wk_wino_create(const wk_conv2d_geom *g, wk_post_act post, bool sum, int m,
                         int64_t chunk_tiles, wk_wino **out) {
  *out = NULL;
  if (!wk_wino_geom_fits(g) || (m != 2 && m != 4)) return WK_ERR_UNSUPPORTED;
  wk_wino *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "winograd conv: out of memory");
  p->g = *g;
  p->post = post;
  p->sum = sum;
  p->m = m;
  p->a = m + 2;
  p->th = (g->oh + m - 1) / m;
  p->tw = (g->ow + m - 1) / m;
  p->t = g->n * p->th * p->tw;
  /* V and M for a chunk of at least 64 tiles, about 8 MB where that allows,
   * so large batches neither take scratch in proportion nor leave the
   * caches between the steps */
  const int64_t per_tile_bytes =
      (int64_t)(p->a * p->a) * (g->c + g->o) * (int64_t)sizeof(float);
  p->chunk_tiles = chunk_tiles > 0 ? chunk_tiles : ((int64_t)8 << 20) / per_tile_bytes;
  if (chunk_tiles <= 0 && p->chunk_tiles < 64) p->chunk_tiles = 64;
  if (p->chunk_tiles > p->t) p->chunk_tiles = p->t;
  const size_t u_bytes = (size_t)(p->a * p->a) * (size_t)(g->c * g->o) * sizeof(float);
  p->u = aligned_alloc(64, (u_bytes + 63) & ~(size_t)63);
  p->zeros = calloc((size_t)g->c, sizeof(float));
  if (!p->u || !p->zeros) {
    wk_wino_destroy(p);
    return wk_fail(WK_ERR_NOMEM, "winograd conv: cannot allocate %zu bytes of transformed weights",
                   u_bytes);
  }
  *out = p;
  return WK_OK;
}

void wk_wino_destroy(wk_wino *p) {
  if (!p) return;
  free(p->u);
  free(p->zeros);
  free(p);
}

int wk_wino_tile(const wk_wino *p) { return p->m; }

/* V and M of one chunk, M starting 64 bytes (16 floats) aligned after V. */
static size_t wk_wino_scratch_bytes(const wk_wino *p) {
  const size_t per = (size_t)(p->a * p->a) * (size_t)p->chunk_tiles;
  return per * (size_t)(p->g.c + p->g.o) * sizeof(float) + 64;
}

/* ------------------------------------------------------------ transforms
 * Each is written once for a tile side A and instantiated for A = 4 and 6,
 * so the loops over the tile unroll and the zero coefficients fold away. */

typedef struct {
  const wk_wino *p;
  const float *w; /* (O, 3, 3, C) */
  float *u;       /* p->u, written */
} wk_wino_wt_job;

/* The steps of one chunk work on tiles [at, at + tn) of the whole batch,
 * tile at + i being row i of V and M. */
typedef struct {
  const wk_wino *p;
  int64_t at, tn;
  const float *x; /* (N, H, W, C) */
  float *v;       /* [P][tn][C] */
} wk_wino_in_job;

typedef struct {
  const wk_wino *p;
  int64_t at, tn;
  const float *m; /* [P][tn][O] */
  const float *b; /* (O) or NULL */
  float *y;       /* (N, H, W, O) */
} wk_wino_out_job;

/* U = G g G^T for output channels [o0, o1): g is OHWI, so one filter tap of
 * output o is w[o][kh][kw][:], contiguous in c. */
#define WK_WINO_WEIGHTS(A, GM)                                                               \
  WK_WINO_TARGET static void wk_wino_weights##A(const void *arg, int64_t o0, int64_t o1) {   \
    const wk_wino_wt_job *j = arg;                                                                \
    const int64_t C = j->p->g.c, O = j->p->g.o, nb = O / 64;                                 \
    float *u = j->u;                                                                         \
    for (int64_t o = o0; o < o1; o++) {                                                      \
      const float *wo = j->w + o * 9 * C;                                                    \
      for (int64_t c = 0; c < C; c++) {                                                      \
        float s[A][3];                                                                       \
        for (int i = 0; i < A; i++)                                                          \
          for (int k = 0; k < 3; k++)                                                        \
            s[i][k] = GM[i][0] * wo[(0 * 3 + k) * C + c] + GM[i][1] * wo[(1 * 3 + k) * C + c] + \
                      GM[i][2] * wo[(2 * 3 + k) * C + c];                                    \
        for (int i = 0; i < A; i++)                                                          \
          for (int k = 0; k < A; k++)                                                        \
            u[(((int64_t)(i * A + k) * nb + o / 64) * C + c) * 64 + o % 64] =                \
                s[i][0] * GM[k][0] + s[i][1] * GM[k][1] + s[i][2] * GM[k][2];                \
      }                                                                                      \
    }                                                                                        \
  }

/* The one-dimensional transforms on 16 channels at a time: B^T x (input)
 * and A^T x (output), the rows of the matrices above written out. */
WK_WINO_TARGET static inline void wk_bt4v(const __m512 *d, __m512 *r) {
  r[0] = _mm512_sub_ps(d[0], d[2]);
  r[1] = _mm512_add_ps(d[1], d[2]);
  r[2] = _mm512_sub_ps(d[2], d[1]);
  r[3] = _mm512_sub_ps(d[1], d[3]);
}

WK_WINO_TARGET static inline void wk_bt6v(const __m512 *d, __m512 *r) {
  const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
  const __m512 two = _mm512_set1_ps(2.0f);
  /* r0 = 4 d0 - 5 d2 + d4; r5 = 4 d1 - 5 d3 + d5 */
  r[0] = _mm512_fnmadd_ps(five, d[2], _mm512_fmadd_ps(four, d[0], d[4]));
  r[5] = _mm512_fnmadd_ps(five, d[3], _mm512_fmadd_ps(four, d[1], d[5]));
  /* r1,2 = d4 - 4 d2 -/+ (4 d1 - d3) */
  const __m512 a = _mm512_fnmadd_ps(four, d[2], d[4]);
  const __m512 b = _mm512_fmsub_ps(four, d[1], d[3]);
  r[1] = _mm512_sub_ps(a, b);
  r[2] = _mm512_add_ps(a, b);
  /* r3,4 = d4 - d2 -/+ 2 (d1 - d3) */
  const __m512 c = _mm512_sub_ps(d[4], d[2]);
  const __m512 e = _mm512_mul_ps(two, _mm512_sub_ps(d[1], d[3]));
  r[3] = _mm512_sub_ps(c, e);
  r[4] = _mm512_add_ps(c, e);
}

WK_WINO_TARGET static inline void wk_at4v(const __m512 *m, __m512 *r) {
  r[0] = _mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]);
  r[1] = _mm512_sub_ps(_mm512_sub_ps(m[1], m[2]), m[3]);
}

WK_WINO_TARGET static inline void wk_at6v(const __m512 *m, __m512 *r) {
  const __m512 p12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
  const __m512 p34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
  r[0] = _mm512_add_ps(_mm512_add_ps(m[0], p12), p34);
  r[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);
  r[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), p34, p12);
  r[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), m[5]);
}

/* V = B^T d B for tiles [t0, t1), all channels (the last 16 masked). */
#define WK_WINO_INPUT(A, M, BT1)                                                             \
  WK_WINO_TARGET static void wk_wino_input##A(const void *arg, int64_t t0, int64_t t1) {     \
    const wk_wino_in_job *j = arg;                                                                \
    const wk_conv2d_geom *g = &j->p->g;                                                      \
    const int64_t C = g->c, T = j->tn, per_img = j->p->th * j->p->tw;                        \
    for (int64_t t = t0; t < t1; t++) {                                                      \
      const int64_t n = (j->at + t) / per_img, r = (j->at + t) % per_img;                    \
      const int64_t y0 = (r / j->p->tw) * M - 1, x0 = (r % j->p->tw) * M - 1;                \
      const float *row[A][A];                                                                \
      for (int i = 0; i < A; i++)                                                            \
        for (int k = 0; k < A; k++) {                                                        \
          const int64_t yy = y0 + i, xx = x0 + k;                                            \
          row[i][k] = (yy >= 0 && yy < g->h && xx >= 0 && xx < g->w)                         \
                          ? j->x + ((n * g->h + yy) * g->w + xx) * C                         \
                          : j->p->zeros;                                                     \
        }                                                                                    \
      float *v = j->v + t * C;                                                               \
      const int64_t step = T * C; /* from one position to the next */                       \
      for (int64_t c = 0; c < C; c += 16) {                                                  \
        const __mmask16 mk = C - c >= 16 ? (__mmask16)0xffff                                 \
                                         : (__mmask16)((1u << (C - c)) - 1);                 \
        __m512 col[A], s[A][A], q[A];                                                        \
        for (int k = 0; k < A; k++) {                                                        \
          for (int i = 0; i < A; i++) col[i] = _mm512_maskz_loadu_ps(mk, row[i][k] + c);     \
          BT1(col, q);                                                                       \
          for (int i = 0; i < A; i++) s[i][k] = q[i];                                        \
        }                                                                                    \
        for (int i = 0; i < A; i++) {                                                        \
          BT1(s[i], q);                                                                      \
          for (int k = 0; k < A; k++) _mm512_mask_storeu_ps(v + (i * A + k) * step + c, mk, q[k]); \
        }                                                                                    \
      }                                                                                      \
    }                                                                                        \
  }

/* Y = A^T M A, plus bias and the fused activation, for tiles [t0, t1)
 * (O is a multiple of 64, so no mask). */
#define WK_WINO_OUTPUT(A, M, AT1)                                                            \
  WK_WINO_TARGET static void wk_wino_output##A(const void *arg, int64_t t0, int64_t t1) {    \
    const wk_wino_out_job *j = arg;                                                               \
    const wk_conv2d_geom *g = &j->p->g;                                                      \
    const int64_t O = g->o, T = j->tn, per_img = j->p->th * j->p->tw;                        \
    const wk_post_act post = j->p->post;                                                     \
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);                     \
    for (int64_t t = t0; t < t1; t++) {                                                      \
      const int64_t n = (j->at + t) / per_img, r = (j->at + t) % per_img;                    \
      const int64_t y0 = (r / j->p->tw) * M, x0 = (r % j->p->tw) * M;                        \
      const int rows = g->oh - y0 < M ? (int)(g->oh - y0) : M;                               \
      const int cols = g->ow - x0 < M ? (int)(g->ow - x0) : M;                               \
      float *out = j->y + ((n * g->oh + y0) * g->ow + x0) * O;                               \
      const float *src = j->m + t * O;                                                       \
      const int64_t step = T * O;                                                            \
      for (int64_t o = 0; o < O; o += 16) {                                                  \
        __m512 col[A], s[M][A], q[A];                                                        \
        for (int k = 0; k < A; k++) {                                                        \
          for (int i = 0; i < A; i++) col[i] = _mm512_loadu_ps(src + (i * A + k) * step + o); \
          AT1(col, q);                                                                       \
          for (int i = 0; i < M; i++) s[i][k] = q[i];                                        \
        }                                                                                    \
        const __m512 bias = j->b ? _mm512_loadu_ps(j->b + o) : zero;                         \
        for (int i = 0; i < rows; i++) {                                                     \
          __m512 res[M];                                                                     \
          AT1(s[i], res);                                                                    \
          for (int k = 0; k < cols; k++) {                                                   \
            float *at = out + (i * g->ow + k) * O + o;                                       \
            __m512 y = _mm512_add_ps(res[k], bias);                                          \
            if (j->p->sum) y = _mm512_add_ps(_mm512_loadu_ps(at), y);                        \
            if (post != WK_POST_NONE) y = _mm512_max_ps(y, zero);                            \
            if (post == WK_POST_RELU6) y = _mm512_min_ps(y, six);                            \
            _mm512_storeu_ps(at, y);                                                         \
          }                                                                                  \
        }                                                                                    \
      }                                                                                      \
    }                                                                                        \
  }

WK_WINO_WEIGHTS(4, wk_g2)
WK_WINO_WEIGHTS(6, wk_g4)
WK_WINO_INPUT(4, 2, wk_bt4v)
WK_WINO_INPUT(6, 4, wk_bt6v)
WK_WINO_OUTPUT(4, 2, wk_at4v)
WK_WINO_OUTPUT(6, 4, wk_at6v)

/* ------------------------------------------------------------ products */

/* M rows [t, t + RB) x columns [0, 64) of one block = V rows x U block, over
 * all C; RB accumulator rows of four 16-lane registers. */
#define WK_WINO_ROWS(RB)                                                                   \
  WK_WINO_TARGET static void wk_wino_rows##RB(const float *v, const float *u, float *m,    \
                                              int64_t C, int64_t O) {                      \
    __m512 acc[RB][4];                                                                     \
    for (int r = 0; r < RB; r++)                                                           \
      for (int k = 0; k < 4; k++) acc[r][k] = _mm512_setzero_ps();                         \
    for (int64_t c = 0; c < C; c++) {                                                      \
      const __m512 u0 = _mm512_loadu_ps(u + c * 64), u1 = _mm512_loadu_ps(u + c * 64 + 16); \
      const __m512 u2 = _mm512_loadu_ps(u + c * 64 + 32);                                  \
      const __m512 u3 = _mm512_loadu_ps(u + c * 64 + 48);                                  \
      for (int r = 0; r < RB; r++) {                                                       \
        const __m512 a = _mm512_set1_ps(v[r * C + c]);                                     \
        acc[r][0] = _mm512_fmadd_ps(a, u0, acc[r][0]);                                     \
        acc[r][1] = _mm512_fmadd_ps(a, u1, acc[r][1]);                                     \
        acc[r][2] = _mm512_fmadd_ps(a, u2, acc[r][2]);                                     \
        acc[r][3] = _mm512_fmadd_ps(a, u3, acc[r][3]);                                     \
      }                                                                                    \
    }                                                                                      \
    for (int r = 0; r < RB; r++)                                                           \
      for (int k = 0; k < 4; k++) _mm512_storeu_ps(m + r * O + k * 16, acc[r][k]);         \
  }
WK_WINO_ROWS(6)
WK_WINO_ROWS(4)
WK_WINO_ROWS(2)
WK_WINO_ROWS(1)

typedef struct {
  const wk_wino *p;
  int64_t tn;     /* rows of V and M */
  const float *v; /* [P][tn][C] */
  float *m;       /* [P][tn][O] */
} wk_wino_mm_job;

/* Items are (position, block of 64 output channels): M_pos[:, block] =
 * V_pos U_pos,block. */
WK_WINO_TARGET static void wk_wino_products(const void *arg, int64_t i0, int64_t i1) {
  const wk_wino_mm_job *j = arg;
  const int64_t C = j->p->g.c, O = j->p->g.o, T = j->tn, nb = O / 64;
  for (int64_t i = i0; i < i1; i++) {
    const int64_t pos = i / nb, ob = i % nb;
    const float *v = j->v + pos * T * C;
    const float *u = j->p->u + (pos * nb + ob) * C * 64;
    float *m = j->m + pos * T * O + ob * 64;
    int64_t t = 0;
    for (; t + 6 <= T; t += 6) wk_wino_rows6(v + t * C, u, m + t * O, C, O);
    if (T - t >= 4) wk_wino_rows4(v + t * C, u, m + t * O, C, O), t += 4;
    if (T - t >= 2) wk_wino_rows2(v + t * C, u, m + t * O, C, O), t += 2;
    if (T - t >= 1) wk_wino_rows1(v + t * C, u, m + t * O, C, O);
  }
}

/* ------------------------------------------------------------ forward */

/* fn over [0, n) in one contiguous share per OpenMP thread, threads as the
 * context says: the threads oneDNN's primitives run on (and that spin
 * between them) take these steps too, where waking the context's pool beside
 * them costs more than a step at batch 1. Items never share outputs, so any
 * split gives the same bits. */
static void wk_wino_par(int threads, int64_t n, wk_slice_fn fn, const void *arg) {
#pragma omp parallel num_threads(threads)
  {
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    fn(arg, n * id / nt, n * (id + 1) / nt);
  }
}

wk_status wk_wino_forward(wk_wino *p, wk_ctx *ctx, const float *x, const float *w,
                          uint64_t w_version, const float *b, float *y) {
  const wk_conv2d_geom *g = &p->g;
  const int64_t C = g->c, O = g->o, T = p->t, P = p->a * p->a;
  const bool four = p->m == 4;
  const int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
  if (w_version == 0 || p->version != w_version) {
    const wk_wino_wt_job wj = {p, w, p->u};
    wk_wino_par(nt, O, four ? wk_wino_weights6 : wk_wino_weights4, &wj);
    p->version = w_version;
  }
  void *scratch;
  WK_TRY(wk_ctx_scratch(ctx, wk_wino_scratch_bytes(p), &scratch));
  float *v = scratch;
  float *m = v + ((P * p->chunk_tiles * C + 15) & ~(int64_t)15); /* as aligned as v */
  for (int64_t at = 0; at < T; at += p->chunk_tiles) {
    const int64_t tn = T - at < p->chunk_tiles ? T - at : p->chunk_tiles;
    const wk_wino_in_job ij = {p, at, tn, x, v};
    wk_wino_par(nt, tn, four ? wk_wino_input6 : wk_wino_input4, &ij);
    const wk_wino_mm_job mj = {p, tn, v, m};
    wk_wino_par(nt, P * (O / 64), wk_wino_products, &mj);
    const wk_wino_out_job oj = {p, at, tn, m, b, y};
    wk_wino_par(nt, tn, four ? wk_wino_output6 : wk_wino_output4, &oj);
  }
  return WK_OK;
}

#else /* not x86-64: no AVX-512, oneDNN runs every convolution */

int wk_wino_pick(const wk_conv2d_geom *g) {
  (void)g;
  return 0;
}

wk_status wk_wino_create(const wk_conv2d_geom *g, wk_post_act post, bool sum, int m,
                         int64_t chunk_tiles, wk_wino **out) {
  (void)g, (void)post, (void)sum, (void)m, (void)chunk_tiles;
  *out = NULL;
  return WK_ERR_UNSUPPORTED;
}

void wk_wino_destroy(wk_wino *p) { (void)p; }

int wk_wino_tile(const wk_wino *p) {
  (void)p;
  return 0;
}

wk_status wk_wino_forward(wk_wino *p, wk_ctx *ctx, const float *x, const float *w,
                          uint64_t w_version, const float *b, float *y) {
  (void)p, (void)ctx, (void)x, (void)w, (void)w_version, (void)b, (void)y;
  return WK_ERR_UNSUPPORTED;
}

#endif
