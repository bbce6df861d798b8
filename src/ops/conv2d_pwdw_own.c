/* conv2d_pwdw_own.c - whisker's own kernel for a 1x1 convolution and the
 * depthwise 3x3 convolution after it (MobileNetV2's expansion), in
 * evaluation, between nChw16c activations, on AVX-512: used by
 * conv2d_pwdw.c where oneDNN declines to fuse the pair (it fuses only when
 * the expanded activations are larger than twice the L2 of its threads, so
 * at batch 1 never after the first block).
 *
 * The work is pieces of (image, output rows, 16-channel blocks): whole
 * images when they share out evenly over the threads (or are many), else
 * each image shared out by rows (at least 8 a thread) or by channel blocks
 * (small maps, where the rows at a share's edge would be computed twice too
 * often). Each thread
 * keeps a ring of three expanded rows of its piece's blocks (the 1x1's
 * output with its bias and activation) in its part of the caller's scratch:
 * an expanded row is computed when a depthwise output row first needs it
 * and read from cache by the up to three output rows that use it, so the
 * expanded activations never go to memory and back. The 1x1's inner loop
 * holds 2 x 14 accumulators (two 16-channel blocks by 14 pixels; a ragged
 * tile, and a lone last block, get their own copies of the loop), each input channel a broadcast times
 * a 16-channel weight vector; the depthwise one keeps the block's nine
 * weight vectors in registers.
 *
 * Arithmetic: float32 with fused multiply-adds, the 1x1's sum in input
 * channel order from the bias, the depthwise's in (kh, kw) order from the
 * bias: within float rounding of the reference (test_ops: relative error
 * 1e-5), not bit for bit with oneDNN. */
#include "ops/pwdw_own.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/conv2d_dnnl_impl.h"

#define WK_OWN_TARGET __attribute__((target("avx512f")))

enum { WK_OWN_TILE = 14 }; /* pixels per 1x1 step */

struct wk_pwdw_own {
  wk_conv2d_geom pw, dw;
  wk_post_act pw_post, dw_post;
  int64_t ob;          /* 16-channel blocks of the expanded activations */
  int64_t cib;         /* 16-channel blocks of the input (the last may be padding) */
  float *wpw;          /* [ob][c][16]; the other three follow it in its buffer */
  float *bpw;          /* [ob * 16] (zeros without a bias) */
  float *wdw;          /* [ob][9][16] */
  float *bdw;          /* [ob * 16] */
  uint64_t v_pw, v_dw; /* versions of the weights held; 0 = none */
};

bool wk_pwdw_own_usable(const wk_conv2d_geom *pw, const wk_conv2d_geom *dw, wk_post_act pw_post,
                        wk_post_act dw_post) {
  const char *env = getenv("WHISKER_PWDW_OWN");
  if (env && strcmp(env, "0") == 0) return false;
  const bool acts =
      (pw_post == WK_POST_NONE || pw_post == WK_POST_RELU || pw_post == WK_POST_RELU6) &&
      (dw_post == WK_POST_NONE || dw_post == WK_POST_RELU || dw_post == WK_POST_RELU6);
  /* wk_conv2d_pwdw_pair holds the rest of the shape */
  return acts && pw->o % 16 == 0 && pw->c >= 1 && pw->n >= 1 && dw->oh >= 1 && dw->ow >= 1 &&
         wk_dnnl_avx512();
}

wk_status wk_pwdw_own_create(const wk_conv2d_geom *pw, const wk_conv2d_geom *dw,
                             wk_post_act pw_post, wk_post_act dw_post, wk_pwdw_own **out) {
  *out = NULL;
  wk_pwdw_own *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "conv2d plan: out of memory");
  p->pw = *pw;
  p->dw = *dw;
  p->pw_post = pw_post;
  p->dw_post = dw_post;
  p->ob = pw->o / 16;
  p->cib = (pw->c + 15) / 16;
  /* one buffer; o is a multiple of 16, so each part starts 64-byte aligned */
  const size_t o = (size_t)pw->o;
  const wk_status s =
      wk_dnnl_buffer((o * (size_t)pw->c + o + o * 9 + o) * sizeof(float), (void **)&p->wpw);
  if (s != WK_OK) {
    free(p);
    return s;
  }
  p->bpw = p->wpw + o * (size_t)pw->c;
  p->wdw = p->bpw + o;
  p->bdw = p->wdw + o * 9;
  *out = p;
  return WK_OK;
}

void wk_pwdw_own_destroy(wk_pwdw_own *p) {
  if (!p) return;
  free(p->wpw);
  free(p);
}

/* Threads: the context's, at most one per image and 16-channel block or output row. */
static int wk_own_threads(const wk_ctx *ctx, const wk_pwdw_own *p) {
  const int64_t most = p->dw.n * (p->ob > p->dw.oh ? p->ob : p->dw.oh);
  const int nt = ctx->n_threads > 0 ? ctx->n_threads : 1;
  return most < nt ? (int)most : nt;
}

/* How an image is shared out when whole images do not share out evenly over
 * the threads: by output rows where each thread gets at least 8 (a share
 * computes at most two expanded rows of the 1x1 beyond its own: one in four
 * more at worst), else by 16-channel blocks (nothing computed twice; uneven
 * when the blocks do not divide). *row_chunks x *block_chunks pieces per
 * image; 1 x 1 when the images divide evenly, or are 4 a thread or more. */
static void wk_own_split(const wk_pwdw_own *p, int nt, int64_t *row_chunks, int64_t *block_chunks) {
  *row_chunks = *block_chunks = 1;
  if (p->dw.n % nt == 0 || p->dw.n >= 4 * (int64_t)nt) return;
  if (p->dw.oh >= 8 * (int64_t)nt)
    *row_chunks = nt;
  else
    *block_chunks = nt < p->ob ? nt : p->ob;
}

/* Floats of one expanded row of the widest piece. */
static size_t wk_own_chunk_floats(const wk_pwdw_own *p, int64_t block_chunks) {
  const int64_t widest = (p->ob + block_chunks - 1) / block_chunks;
  return (size_t)widest * 16 * (size_t)p->pw.w;
}

size_t wk_pwdw_own_scratch_bytes(const wk_pwdw_own *p, const wk_ctx *ctx) {
  const int nt = wk_own_threads(ctx, p);
  int64_t rc, bc;
  wk_own_split(p, nt, &rc, &bc);
  return (size_t)nt * 3 * wk_own_chunk_floats(p, bc) * sizeof(float);
}

/* Weights in the kernels' layouts: the 1x1's [O][1][1][C] (OHWI) as
 * [O/16][C][16], the depthwise's [O][3][3][1] as [O/16][9][16]. */
static void wk_own_pack(wk_pwdw_own *p, const wk_conv2d_weights *pw, const wk_conv2d_weights *dw) {
  const int64_t O = p->pw.o, C = p->pw.c;
  if (pw->version == 0 || pw->version != p->v_pw) {
    for (int64_t o = 0; o < O; o++) {
      for (int64_t c = 0; c < C; c++) p->wpw[((o / 16) * C + c) * 16 + o % 16] = pw->w[o * C + c];
      p->bpw[o] = pw->b ? pw->b[o] : 0.0f;
    }
    p->v_pw = pw->version;
  }
  if (dw->version == 0 || dw->version != p->v_dw) {
    for (int64_t o = 0; o < O; o++) {
      for (int k = 0; k < 9; k++) p->wdw[((o / 16) * 9 + k) * 16 + o % 16] = dw->w[o * 9 + k];
      p->bdw[o] = dw->b ? dw->b[o] : 0.0f;
    }
    p->v_dw = dw->version;
  }
}

WK_OWN_TARGET static inline __m512 wk_own_act(__m512 v, wk_post_act a) {
  if (a == WK_POST_NONE) return v;
  /* max(v, 0): a NaN v gives the second operand, 0, as the reference's
   * `v > 0 ? v : 0` */
  v = _mm512_max_ps(v, _mm512_setzero_ps());
  return a == WK_POST_RELU6 ? _mm512_min_ps(v, _mm512_set1_ps(6.0f)) : v;
}

/* The 1x1 for N pixels (N <= WK_OWN_TILE, a constant where it is inlined)
 * from s (the input row at the tile's first pixel, channel 0), into two
 * blocks (or one: w1 NULL) of out. */
WK_OWN_TARGET static inline __attribute__((always_inline)) void wk_own_pw_tile(
    const wk_pwdw_own *p, const float *s, size_t plane, const float *w0, const float *w1,
    const float *b0, const float *b1, const int N, const bool TWO, float *d0, float *d1) {
  __m512 a0[WK_OWN_TILE], a1[WK_OWN_TILE];
  const __m512 bias0 = _mm512_loadu_ps(b0);
  const __m512 bias1 = TWO ? _mm512_loadu_ps(b1) : _mm512_setzero_ps();
  for (int t = 0; t < N; t++) a0[t] = bias0, a1[t] = bias1;
  const int64_t C = p->pw.c;
  for (int64_t c = 0; c < C; c++) {
    const float *sc = s + (size_t)(c >> 4) * plane + (c & 15);
    const __m512 v0 = _mm512_loadu_ps(w0 + 16 * c);
    const __m512 v1 = TWO ? _mm512_loadu_ps(w1 + 16 * c) : _mm512_setzero_ps();
#pragma GCC unroll 14
    for (int t = 0; t < N; t++) {
      const __m512 x = _mm512_set1_ps(sc[16 * t]);
      a0[t] = _mm512_fmadd_ps(x, v0, a0[t]);
      if (TWO) a1[t] = _mm512_fmadd_ps(x, v1, a1[t]);
    }
  }
  for (int t = 0; t < N; t++) {
    _mm512_storeu_ps(d0 + 16 * t, wk_own_act(a0[t], p->pw_post));
    if (TWO) _mm512_storeu_ps(d1 + 16 * t, wk_own_act(a1[t], p->pw_post));
  }
}

/* wk_own_pw_tile with the width and whether there are two blocks as
 * constants, so each width gets its registers and a lone block only its own
 * work (two false: one block, and w1, b1, d1 unused). */
WK_OWN_TARGET static void wk_own_pw_tile_n(const wk_pwdw_own *p, const float *s, size_t plane,
                                           const float *w0, const float *w1, const float *b0,
                                           const float *b1, bool two, int n, float *d0,
                                           float *d1) {
  switch (n) {
    case 1:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 1, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 1, false, d0, d1);
    case 2:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 2, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 2, false, d0, d1);
    case 3:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 3, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 3, false, d0, d1);
    case 4:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 4, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 4, false, d0, d1);
    case 5:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 5, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 5, false, d0, d1);
    case 6:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 6, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 6, false, d0, d1);
    case 7:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 7, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 7, false, d0, d1);
    case 8:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 8, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 8, false, d0, d1);
    case 9:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 9, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 9, false, d0, d1);
    case 10:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 10, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 10, false, d0, d1);
    case 11:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 11, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 11, false, d0, d1);
    case 12:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 12, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 12, false, d0, d1);
    case 13:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 13, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 13, false, d0, d1);
    case 14:
      return two ? wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 14, true, d0, d1)
                 : wk_own_pw_tile(p, s, plane, w0, w1, b0, b1, 14, false, d0, d1);
    default:
      WK_ASSERT(!"wk_own_pw_tile_n: width out of range");
  }
}

/* Blocks [k0, k1) of expanded row ih of image x (nChw16c) into row:
 * [k1 - k0][w][16]. */
WK_OWN_TARGET static void wk_own_pw_row(const wk_pwdw_own *p, const float *x, int64_t ih,
                                        int64_t k0, int64_t k1, float *row) {
  const int64_t W = p->pw.w, C = p->pw.c;
  const size_t plane = (size_t)p->pw.h * (size_t)W * 16;
  const float *src = x + (size_t)ih * (size_t)W * 16;
  for (int64_t ob = k0; ob < k1; ob += 2) {
    const bool two = ob + 1 < k1;
    const float *w0 = p->wpw + (size_t)ob * (size_t)C * 16;
    const float *w1 = two ? w0 + (size_t)C * 16 : NULL;
    float *d0 = row + (size_t)(ob - k0) * (size_t)W * 16;
    float *d1 = two ? d0 + (size_t)W * 16 : d0;
    for (int64_t x0 = 0; x0 < W; x0 += WK_OWN_TILE) {
      const int n = W - x0 < WK_OWN_TILE ? (int)(W - x0) : WK_OWN_TILE;
      wk_own_pw_tile_n(p, src + (size_t)x0 * 16, plane, w0, w1, p->bpw + 16 * ob,
                       p->bpw + 16 * (two ? ob + 1 : ob), two, n, d0 + (size_t)x0 * 16,
                       d1 + (size_t)x0 * 16);
    }
  }
}

/* Blocks [k0, k1) of depthwise output row oh into y (one image, nChw16c)
 * from the three expanded rows it reads (NULL: padding), each holding those
 * blocks. */
WK_OWN_TARGET static void wk_own_dw_row(const wk_pwdw_own *p, float *const rows[3], int64_t oh,
                                        int64_t k0, int64_t k1, float *y) {
  const int64_t W = p->pw.w, OW = p->dw.ow, OH = p->dw.oh, s = p->dw.sh;
  for (int64_t ob = k0; ob < k1; ob++) {
    __m512 k[9];
    for (int i = 0; i < 9; i++) k[i] = _mm512_loadu_ps(p->wdw + ((size_t)ob * 9 + (size_t)i) * 16);
    const __m512 bias = _mm512_loadu_ps(p->bdw + 16 * ob);
    float *d = y + ((size_t)ob * (size_t)OH + (size_t)oh) * (size_t)OW * 16;
    const float *r[3];
    for (int kh = 0; kh < 3; kh++)
      r[kh] = rows[kh] ? rows[kh] + (size_t)(ob - k0) * (size_t)W * 16 : NULL;
    for (int64_t ow = 0; ow < OW; ow++) {
      const int64_t iw = ow * s - 1;
      __m512 acc = bias;
      for (int kh = 0; kh < 3; kh++) {
        if (!r[kh]) continue;
        if (iw >= 0) acc = _mm512_fmadd_ps(_mm512_loadu_ps(r[kh] + 16 * iw), k[3 * kh], acc);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(r[kh] + 16 * (iw + 1)), k[3 * kh + 1], acc);
        if (iw + 2 < W)
          acc = _mm512_fmadd_ps(_mm512_loadu_ps(r[kh] + 16 * (iw + 2)), k[3 * kh + 2], acc);
      }
      _mm512_storeu_ps(d + 16 * ow, wk_own_act(acc, p->dw_post));
    }
  }
}

/* One image's blocks [k0, k1) of output rows [r0, r1), with a ring of
 * three expanded rows of those blocks. */
static void wk_own_item(const wk_pwdw_own *p, const float *x, float *y, float *ring, int64_t k0,
                        int64_t k1, int64_t r0, int64_t r1) {
  const int64_t H = p->pw.h, s = p->dw.sh;
  const size_t row = (size_t)(k1 - k0) * 16 * (size_t)p->pw.w;
  int64_t have[3] = {-1, -1, -1};
  for (int64_t oh = r0; oh < r1; oh++) {
    float *rows[3];
    for (int kh = 0; kh < 3; kh++) {
      const int64_t ih = oh * s - 1 + kh;
      rows[kh] = NULL;
      if (ih < 0 || ih >= H) continue;
      float *slot = ring + (size_t)(ih % 3) * row;
      if (have[ih % 3] != ih) {
        wk_own_pw_row(p, x, ih, k0, k1, slot);
        have[ih % 3] = ih;
      }
      rows[kh] = slot;
    }
    wk_own_dw_row(p, rows, oh, k0, k1, y);
  }
}

wk_status wk_pwdw_own_forward(wk_pwdw_own *p, wk_ctx *ctx, const float *x,
                              const wk_conv2d_weights *pw, const wk_conv2d_weights *dw,
                              float *scratch, float *y) {
  WK_ASSERT(scratch != NULL);
  wk_own_pack(p, pw, dw);
  const int nt = wk_own_threads(ctx, p);
  int64_t rc, bc;
  wk_own_split(p, nt, &rc, &bc);
  const int64_t per_image = rc * bc, items = p->dw.n * per_image, OH = p->dw.oh;
  const size_t in_img = (size_t)p->cib * 16 * (size_t)p->pw.h * (size_t)p->pw.w;
  const size_t out_img = (size_t)p->ob * 16 * (size_t)p->dw.oh * (size_t)p->dw.ow;
  /* the items in one contiguous share per OpenMP thread: the threads
   * oneDNN's primitives run on (as conv2d_wino.c's steps); items never
   * share outputs, so any split gives the same bits */
#pragma omp parallel num_threads(nt)
  {
    const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
    float *ring = scratch + (size_t)id * 3 * wk_own_chunk_floats(p, bc);
    for (int64_t it = items * id / n; it < items * (id + 1) / n; it++) {
      const int64_t b = it / per_image, r = it % per_image / bc, c = it % bc;
      wk_own_item(p, x + (size_t)b * in_img, y + (size_t)b * out_img, ring, p->ob * c / bc,
                  p->ob * (c + 1) / bc, OH * r / rc, OH * (r + 1) / rc);
    }
  }
  return WK_OK;
}

#else /* not x86-64: no AVX-512; the pair runs as oneDNN's two plans */

bool wk_pwdw_own_usable(const wk_conv2d_geom *pw, const wk_conv2d_geom *dw, wk_post_act pw_post,
                        wk_post_act dw_post) {
  (void)pw, (void)dw, (void)pw_post, (void)dw_post;
  return false;
}

wk_status wk_pwdw_own_create(const wk_conv2d_geom *pw, const wk_conv2d_geom *dw,
                             wk_post_act pw_post, wk_post_act dw_post, wk_pwdw_own **out) {
  (void)pw, (void)dw, (void)pw_post, (void)dw_post;
  *out = NULL;
  return WK_ERR_UNSUPPORTED;
}

void wk_pwdw_own_destroy(wk_pwdw_own *p) { (void)p; }

size_t wk_pwdw_own_scratch_bytes(const wk_pwdw_own *p, const wk_ctx *ctx) {
  (void)p, (void)ctx;
  return 0;
}

wk_status wk_pwdw_own_forward(wk_pwdw_own *p, wk_ctx *ctx, const float *x,
                              const wk_conv2d_weights *pw, const wk_conv2d_weights *dw,
                              float *scratch, float *y) {
  (void)p, (void)ctx, (void)x, (void)pw, (void)dw, (void)scratch, (void)y;
  return WK_ERR_UNSUPPORTED;
}

#endif
