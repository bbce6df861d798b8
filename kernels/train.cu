// train.cu - the kernels of a training step around the layers: dropout, global
// average pooling, softmax cross-entropy and the predicted classes, the
// reductions that feed the loss and the bias gradients, the fused SGD and
// AdamW updates over the parameter arena, gradient scaling and the non-finite
// check. Launchers and their contract: wk_kernels.h. The *_at and *_unless
// launchers run the same kernels with a step's changing values (dropout's
// step, the loss scale) read from device memory and the update gated by a
// device flag, so that one captured CUDA graph serves every step.
//
// Each kernel states how it relates to its CPU reference (ref_template.inc,
// optim_step.c). Where the contract says "bit for bit", the kernel does the
// reference's IEEE operations in the reference's order with explicit _rn
// intrinsics, so nvcc cannot fuse a multiply and an add into an FMA (the C
// reference is built without contraction). Reductions are deterministic: a
// fixed assignment of elements to threads and a fixed tree, never atomics.
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "grid.cuh"
#include "storage.cuh"
#include "wk_kernels.h"

namespace {

// The sum kernel's single block.
constexpr int kSumThreads = 1024;
// Blocks per segment of the optimizer kernels (gridDim.x). The launcher cannot
// read the segments (device memory), so every segment gets the same number of
// blocks: blocks past a small segment's end exit at once, a large segment's
// blocks stride over it (256 threads x 64 blocks = 16384 elements a stride).
constexpr int kOptimBlocksPerSegment = 64;
constexpr int kOptimMaxSegmentBlocks = 65535;  // gridDim.y limit

// ------------------------------------------------------------------ Philox

// Philox4x32-10 exactly as src/core/rng.c: same constants, rounds and word order.
__device__ __forceinline__ uint32_t rng_at(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint64_t block = index >> 2;
  uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32);
  uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma unroll
  for (int round = 0; round < 10; round++) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  switch (index & 3) {
    case 0: return c0;
    case 1: return c1;
    case 2: return c2;
    default: return c3;
  }
}

// wk_u32_to_unit: the top 24 bits, exact in float.
__device__ __forceinline__ float u32_to_unit(uint32_t x) {
  return (float)(x >> 8) * (1.0f / 16777216.0f);
}

// ------------------------------------------------------------------ kernels

// x, y: (n). Element i uses counter offset + i of stream (seed, stream_id), or,
// with seed_step (device: the seed and the step), of stream
// (seed_step[0], (seed_step[1] << 16) ^ node).
template <class S>
__global__ void dropout_kernel(int64_t n, double p, float scale, uint64_t seed,
                               uint64_t stream_id, const uint64_t *seed_step, uint64_t node,
                               int64_t offset, const typename S::T *x, typename S::T *y) {
  if (seed_step) {
    seed = seed_step[0];
    stream_id = (seed_step[1] << 16) ^ node;
  }
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float u = u32_to_unit(rng_at(seed, stream_id, (uint64_t)(offset + i)));
    y[i] = S::store((double)u >= p ? __fmul_rn(S::load(x[i]), scale) : 0.0f);
  }
}

// x: (n, hw, c); y: (n, c). One thread per (i, ch), summing p in order.
template <class S>
__global__ void global_avgpool_forward_kernel(int64_t n_out, int64_t hw, int64_t c,
                                              const typename S::T *x, typename S::T *y) {
  for (int64_t o = first_index(); o < n_out; o += grid_stride()) {
    const int64_t i = o / c, ch = o - i * c;
    const typename S::T *xp = x + i * hw * c + ch;
    double acc = 0.0;
    for (int64_t p = 0; p < hw; p++) acc = __dadd_rn(acc, (double)S::load(xp[p * c]));
    y[o] = S::store((float)__ddiv_rn(acc, (double)hw));
  }
}

// dy: (n, c); dx: (n, hw, c); n_in = n * hw * c.
template <class S>
__global__ void global_avgpool_backward_kernel(int64_t n_in, int64_t hw, int64_t c,
                                               const typename S::T *dy, typename S::T *dx) {
  for (int64_t e = first_index(); e < n_in; e += grid_stride()) {
    const int64_t ch = e % c, i = e / (hw * c);
    dx[e] = S::store((float)__ddiv_rn((double)S::load(dy[i * c + ch]), (double)hw));
  }
}

// The 16-bit path's bias gradient, first pass: block (bx, by) sums the rows
// [by * chunk, (by + 1) * chunk) of columns [32 bx, 32 bx + 32) of x (rows,
// k) in float, its 8 row lanes combined in a fixed order, into
// partial[by, j]. Block: 32 x 8 threads; the second pass is sum_rows_kernel.
constexpr int kColLanes = 8;
template <class S>
__global__ void col_partial_kernel(int64_t rows, int64_t k, int64_t chunk,
                                   const typename S::T *x, float *partial) {
  __shared__ float sh[kColLanes][32];
  const int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = (int64_t)blockIdx.y * chunk;
  const int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
  float acc = 0.0f;
  if (j < k)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColLanes) acc += S::load(x[r * k + j]);
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < k) {
    float t = sh[0][threadIdx.x];
    for (int l = 1; l < kColLanes; l++) t += sh[l][threadIdx.x];
    partial[blockIdx.y * k + j] = t;
  }
}

// Sums v over the block (blockDim.x a power of two, sh of blockDim.x doubles);
// every thread gets the total. The tree is fixed, so the result is too.
__device__ double block_sum(double v, double *sh) {
  __syncthreads();  // sh may still be read from a previous call
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] = __dadd_rn(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  return sh[0];
}

// Max over the block, with the reference's `>` (NaN never wins a comparison;
// a NaN logit makes its row's sum, hence every output, NaN anyway).
__device__ double block_max(double v, double *sh) {
  __syncthreads();
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s && sh[threadIdx.x + s] > sh[threadIdx.x])
      sh[threadIdx.x] = sh[threadIdx.x + s];
    __syncthreads();
  }
  return sh[0];
}

// One block per row (grid-stride over rows). logits, probs: (n, k); labels,
// row_loss: (n). Dynamic shared memory: blockDim.x doubles.
__global__ void softmax_xent_forward_kernel(int64_t n, int64_t k, double smoothing,
                                            const float *logits, const int32_t *labels,
                                            float *probs, float *row_loss) {
  extern __shared__ double sh[];
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float *l = logits + i * k;
    double mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x)
      if ((double)l[j] > mx) mx = (double)l[j];
    mx = block_max(mx, sh);
    double sum = 0.0, sum_logits = 0.0;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
      sum = __dadd_rn(sum, exp(__dsub_rn((double)l[j], mx)));
      sum_logits = __dadd_rn(sum_logits, (double)l[j]);
    }
    sum = block_sum(sum, sh);
    sum_logits = block_sum(sum_logits, sh);
    if (probs)
      for (int64_t j = threadIdx.x; j < k; j += blockDim.x)
        probs[i * k + j] = (float)__ddiv_rn(exp(__dsub_rn((double)l[j], mx)), sum);
    if (threadIdx.x == 0) {
      const int32_t label = labels[i];
      double loss = nan("");
      if (label >= 0 && (int64_t)label < k) {
        const double lse = __dadd_rn(mx, log(sum));
        loss = __dsub_rn(__dsub_rn(lse, __dmul_rn(__dsub_rn(1.0, smoothing), (double)l[label])),
                         __dmul_rn(__ddiv_rn(smoothing, (double)k), sum_logits));
      }
      row_loss[i] = (float)loss;
    }
  }
}

// probs, dlogits: (n, k), n_elems = n * k; labels: (n). scale_dev, when not
// NULL, replaces scale (one device double).
__global__ void softmax_xent_backward_kernel(int64_t n_elems, int64_t k, double smoothing,
                                             double scale, const double *scale_dev,
                                             const float *probs, const int32_t *labels,
                                             float *dlogits) {
  if (scale_dev) scale = *scale_dev;
  const double off = __ddiv_rn(smoothing, (double)k), hit = __dsub_rn(1.0, smoothing);
  for (int64_t e = first_index(); e < n_elems; e += grid_stride()) {
    const int64_t i = e / k, j = e - i * k;
    const double q = __dadd_rn(j == (int64_t)labels[i] ? hit : 0.0, off);
    dlogits[e] = (float)__dmul_rn(scale, __dsub_rn((double)probs[e], q));
  }
}

// x: (n, k); out: (n). One thread per row, wk_argmax's loop (train/metrics.c).
__global__ void argmax_rows_kernel(int64_t n, int64_t k, const float *x, int32_t *out) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float *row = x + i * k;
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
      if (row[j] > row[best]) best = j;
    out[i] = (int32_t)best;
  }
}

// One block of kSumThreads (the bound keeps registers low enough for 1024 threads
// in any build): thread t sums elements t, t + kSumThreads, ...
__global__ void __launch_bounds__(kSumThreads) sum_kernel(int64_t n, const float *x, double *out) {
  __shared__ double sh[kSumThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc = __dadd_rn(acc, (double)x[i]);
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) *out = acc;
}

// x: (n, k); out: (k). One thread per column, rows in order.
__global__ void sum_rows_kernel(int64_t n, int64_t k, const float *x, float *out) {
  for (int64_t j = first_index(); j < k; j += grid_stride()) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) acc = __dadd_rn(acc, (double)x[i * k + j]);
    out[j] = (float)acc;
  }
}

// Segments over gridDim.y (strided), elements of one segment over gridDim.x
// blocks. The element loops are optim_step.c's, operation for operation.
// skip (one device int, or NULL): nonzero leaves everything as it is.
__global__ void sgd_kernel(int n_segments, const wk_optim_segment *segs, bool nesterov,
                           float *w, const float *g, float *buf, const int *skip) {
  if (skip && *skip) return;
  for (int s = blockIdx.y; s < n_segments; s += gridDim.y) {
    const wk_optim_segment c = segs[s];
    float *ws = w + c.offset;
    const float *gs = g + c.offset;
    for (int64_t e = first_index(); e < c.numel; e += grid_stride()) {
      const float wi = ws[e];
      const float d = __fadd_rn(gs[e], __fmul_rn(c.wd, wi));
      if (!buf) {
        ws[e] = __fadd_rn(wi, __fmul_rn(c.neg_lr, d));
        continue;
      }
      float *bs = buf + c.offset;
      const float b = c.first ? d : __fadd_rn(__fmul_rn(bs[e], c.momentum), d);
      bs[e] = b;
      const float step = nesterov ? __fadd_rn(d, __fmul_rn(c.momentum, b)) : b;
      ws[e] = __fadd_rn(wi, __fmul_rn(c.neg_lr, step));
    }
  }
}

__global__ void adamw_kernel(int n_segments, const wk_optim_segment *segs, float *w,
                             const float *g, float *exp_avg, float *exp_avg_sq,
                             const int *skip) {
  if (skip && *skip) return;
  for (int s = blockIdx.y; s < n_segments; s += gridDim.y) {
    const wk_optim_segment c = segs[s];
    for (int64_t e = first_index(); e < c.numel; e += grid_stride()) {
      const int64_t i = c.offset + e;
      const float gi = g[i];
      const float p = __fmul_rn(w[i], c.decay);
      const float m = __fadd_rn(__fmul_rn(exp_avg[i], c.b1), __fmul_rn(c.c1, gi));
      const float v =
          __fadd_rn(__fmul_rn(exp_avg_sq[i], c.b2), __fmul_rn(__fmul_rn(c.c2, gi), gi));
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), c.bc2_sqrt), c.eps);
      w[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step, m), denom));
    }
  }
}

// s_dev (one device float, or NULL) replaces s; skip as the optimizer's.
__global__ void scale_kernel(int64_t n, float s, const float *s_dev, const int *skip, float *x) {
  if (skip && *skip) return;
  if (s_dev) s = *s_dev;
  for (int64_t i = first_index(); i < n; i += grid_stride()) x[i] = __fmul_rn(x[i], s);
}

// Exponent all ones = infinity or NaN. Racing stores all write 1.
__global__ void nonfinite_kernel(int64_t n, const float *x, int *flag) {
  bool bad = false;
  for (int64_t i = first_index(); i < n; i += grid_stride())
    bad |= (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u;
  if (bad) *flag = 1;
}

// Rows of the softmax: a power of two from a warp to kThreads, about k threads.
int xent_threads(int64_t k) {
  int t = 32;
  while (t < kThreads && t < k) t *= 2;
  return t;
}

bool overflows(int64_t a, int64_t b, int64_t *prod) { return __builtin_mul_overflow(a, b, prod); }

// ------------------------------------------------------------------ launchers

// seed_step: the step's (seed, step) in device memory (CUDA graphs), or
// nullptr for seed and stream_id as given
template <class S>
int dropout_launch(int64_t n, double p, uint64_t seed, uint64_t stream_id,
                   const uint64_t *seed_step, int64_t offset, const typename S::T *x,
                   typename S::T *y, void *stream) {
  if (n < 0 || offset < 0 || offset > INT64_MAX - n || !(p >= 0.0 && p < 1.0) ||
      (n > 0 && (!x || !y)))
    return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  const float scale = (float)(1.0 / (1.0 - p));  // as the reference: in double, then float
  dropout_kernel<S><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
      n, p, scale, seed_step ? 0 : seed, seed_step ? 0 : stream_id, seed_step,
      seed_step ? stream_id : 0, offset, x, y);
  return (int)cudaGetLastError();
}

template <class S>
int global_avgpool_launch(bool forward, int64_t n, int64_t hw, int64_t c,
                          const typename S::T *x, typename S::T *y, void *stream) {
  int64_t n_out = 0, n_in = 0;
  if (n < 0 || hw < 0 || c < 0 || overflows(n, c, &n_out) || overflows(n_out, hw, &n_in))
    return (int)cudaErrorInvalidValue;
  if ((forward ? n_out : n_in) == 0) return (int)cudaSuccess;
  if ((forward && hw < 1) || !x || !y) return (int)cudaErrorInvalidValue;
  if (forward)
    global_avgpool_forward_kernel<S><<<blocks_for(n_out), kThreads, 0, as_stream(stream)>>>(
        n_out, hw, c, x, y);
  else
    global_avgpool_backward_kernel<S><<<blocks_for(n_in), kThreads, 0, as_stream(stream)>>>(
        n_in, hw, c, x, y);
  return (int)cudaGetLastError();
}

// Max pooling, NHWC (wk_maxpool_geom), over slots of V channels (one 16-byte
// access where c and the addresses allow it, else V = 1); the index type I is
// signed (window rows and columns start above the input) and 32 bits where
// every element index, plus the grid's stride, fits.
template <class I>
struct PoolGeom {
  I n, h, w, cv, oh, ow;  // cv: c / V
  int kh, kw, sh, sw, pt, pl;
};

// The maximum of window (oy, ox) of image b for each of slot cs's V lanes, as
// the reference takes it (the first position, then any greater or any NaN),
// and its position ky * kw + kx (-1 if the window sees no input: not for a
// geometry the launcher accepts).
template <class S, int V, class I>
__device__ __forceinline__ void window_max(const PoolGeom<I> &g, const Pack<typename S::T, V> *xp,
                                           I b, I oy, I ox, I cs, float best[V], int at[V]) {
  bool any = false;
  for (int l = 0; l < V; l++) best[l] = 0.0f, at[l] = -1;
  for (int ky = 0; ky < g.kh; ky++) {
    const I iy = oy * (I)g.sh - (I)g.pt + (I)ky;
    if (iy < 0 || iy >= g.h) continue;
    for (int kx = 0; kx < g.kw; kx++) {
      const I ix = ox * (I)g.sw - (I)g.pl + (I)kx;
      if (ix < 0 || ix >= g.w) continue;
      const Pack<typename S::T, V> a = xp[((b * g.h + iy) * g.w + ix) * g.cv + cs];
      for (int l = 0; l < V; l++) {
        const float v = S::load(a.v[l]);
        if (!any || v > best[l] || isnan(v)) best[l] = v, at[l] = ky * g.kw + kx;
      }
      any = true;
    }
  }
}

// Slot k of an (n, h, w, cv) tensor as its image b, row y, column x and
// channel slot cs.
template <class I>
__device__ __forceinline__ void split_slot(I k, I cv, I w, I h, I &b, I &y, I &x, I &cs) {
  I r = k / cv;
  cs = k - r * cv;
  x = r % w;
  r /= w;
  y = r % h;
  b = r / h;
}

template <class S, int V, class I>
__global__ void maxpool_forward_kernel(PoolGeom<I> g, I slots, const typename S::T *x,
                                       typename S::T *y) {
  using P = Pack<typename S::T, V>;
  const P *xp = reinterpret_cast<const P *>(x);
  P *yp = reinterpret_cast<P *>(y);
  for (I k = (I)first_index(); k < slots; k += (I)grid_stride()) {
    I b, oy, ox, cs;
    split_slot(k, g.cv, g.ow, g.oh, b, oy, ox, cs);
    float best[V];
    int at[V];
    window_max<S, V, I>(g, xp, b, oy, ox, cs, best, at);
    P out;
    for (int l = 0; l < V; l++) out.v[l] = S::store(best[l]);
    yp[k] = out;
  }
}

// One slot of dx per thread: the windows holding input (iy, ix) are rows
// ceil((iy + pt - kh + 1) / sh) .. floor((iy + pt) / sh) of the output, and
// columns likewise, visited in ascending output order. A position can be a
// window's maximum only where its x equals the window's y (or both are NaN):
// only then is the window scanned again, for the position the forward took.
template <class S, int V, class I>
__global__ void maxpool_backward_kernel(PoolGeom<I> g, I slots, const typename S::T *x,
                                        const typename S::T *y, const typename S::T *dy,
                                        bool accumulate, typename S::T *dx) {
  using P = Pack<typename S::T, V>;
  const P *xp = reinterpret_cast<const P *>(x), *yp = reinterpret_cast<const P *>(y);
  const P *dyp = reinterpret_cast<const P *>(dy);
  P *dxp = reinterpret_cast<P *>(dx);
  for (I k = (I)first_index(); k < slots; k += (I)grid_stride()) {
    I b, iy, ix, cs;
    split_slot(k, g.cv, g.w, g.h, b, iy, ix, cs);
    const I ty = iy + (I)g.pt - (I)g.kh + 1, tx = ix + (I)g.pl - (I)g.kw + 1;
    const I oy0 = ty <= 0 ? 0 : (ty + (I)g.sh - 1) / (I)g.sh;
    const I ox0 = tx <= 0 ? 0 : (tx + (I)g.sw - 1) / (I)g.sw;
    I oy1 = (iy + (I)g.pt) / (I)g.sh, ox1 = (ix + (I)g.pl) / (I)g.sw;
    oy1 = oy1 < g.oh - 1 ? oy1 : g.oh - 1;
    ox1 = ox1 < g.ow - 1 ? ox1 : g.ow - 1;
    const P here = xp[k];
    float acc[V];
    for (int l = 0; l < V; l++) acc[l] = 0.0f;
    for (I oy = oy0; oy <= oy1; oy++)
      for (I ox = ox0; ox <= ox1; ox++) {
        const I o = ((b * g.oh + oy) * g.ow + ox) * g.cv + cs;
        const P m = yp[o];
        bool any = false;  // (a lane whose x is not y cannot match below)
        for (int l = 0; l < V; l++) {
          const float xv = S::load(here.v[l]), mv = S::load(m.v[l]);
          any = any || xv == mv || (isnan(xv) && isnan(mv));
        }
        if (!any) continue;
        float best[V];
        int at[V];
        window_max<S, V, I>(g, xp, b, oy, ox, cs, best, at);
        const int mine = (int)(iy - (oy * (I)g.sh - (I)g.pt)) * g.kw +
                         (int)(ix - (ox * (I)g.sw - (I)g.pl));
        const P d = dyp[o];
        for (int l = 0; l < V; l++)
          if (at[l] == mine) acc[l] = __fadd_rn(acc[l], S::load(d.v[l]));
      }
    P out;
    if (accumulate) {
      const P old = dxp[k];
      for (int l = 0; l < V; l++) out.v[l] = S::store(__fadd_rn(S::load(old.v[l]), acc[l]));
    } else {
      for (int l = 0; l < V; l++) out.v[l] = S::store(acc[l]);
    }
    dxp[k] = out;
  }
}

// The geometry checked (wk_kernels.h), and the element counts of x and y.
bool maxpool_geom_ok(const wk_maxpool_geom *g, int64_t *n_in, int64_t *n_out) {
  if (!g || g->n < 0 || g->h < 0 || g->w < 0 || g->c < 0 || g->oh < 0 || g->ow < 0 ||
      g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->pt < 0 || g->pt >= g->kh ||
      g->pl < 0 || g->pl >= g->kw)
    return false;
  int64_t a = 0, b = 0, last = 0;
  if (overflows(g->n, g->h, &a) || overflows(a, g->w, &a) || overflows(a, g->c, n_in) ||
      overflows(g->n, g->oh, &b) || overflows(b, g->ow, &b) || overflows(b, g->c, n_out))
    return false;
  // every window sees a position of x: x has one, the last window starts
  // inside it, and the first ends inside it (pt < kh and pl < kw)
  if (g->oh > 0 && (g->h == 0 || overflows(g->oh - 1, g->sh, &last) || last - g->pt >= g->h))
    return false;
  if (g->ow > 0 && (g->w == 0 || overflows(g->ow - 1, g->sw, &last) || last - g->pl >= g->w))
    return false;
  return true;
}

template <class I>
PoolGeom<I> pool_geom(const wk_maxpool_geom *g, int v) {
  return PoolGeom<I>{(I)g->n, (I)g->h, (I)g->w, (I)(g->c / v), (I)g->oh, (I)g->ow,
                     g->kh,   g->kw,   g->sh,   g->sw,          g->pt,      g->pl};
}

// f(V, I) for the widest access the channels and the addresses allow, and
// 32-bit indices where the larger tensor's element count (plus the grid's
// stride, which a slot index may step past it by) fits.
template <class S, class F>
int by_pool_shape(const wk_maxpool_geom *g, int64_t n_max, uintptr_t at, F f) {
  constexpr int kV = 16 / (int)sizeof(typename S::T);
  const bool packed = g->c % kV == 0 && at % 16 == 0;
  const bool narrow = n_max <= (int64_t)INT32_MAX - kMaxBlocks * kThreads;
  if (packed && narrow) return f(std::integral_constant<int, kV>{}, int32_t{});
  if (packed) return f(std::integral_constant<int, kV>{}, int64_t{});
  if (narrow) return f(std::integral_constant<int, 1>{}, int32_t{});
  return f(std::integral_constant<int, 1>{}, int64_t{});
}

// Forward: y from x (dy, accumulate and out unused but out == y); backward:
// out = dx from x, y and dy. Over the output's slots or the input's.
int maxpool_launch(bool forward, wk_store_kind kind, const wk_maxpool_geom *g, const void *x,
                   const void *y, const void *dy, bool accumulate, void *out, void *stream) {
  int64_t n_in = 0, n_out = 0;
  if (!store_ok(kind) || !maxpool_geom_ok(g, &n_in, &n_out)) return (int)cudaErrorInvalidValue;
  const int64_t n = forward ? n_out : n_in;
  if (n == 0) return (int)cudaSuccess;
  if (!x || !out || (!forward && n_out > 0 && (!y || !dy))) return (int)cudaErrorInvalidValue;
  return by_store(kind, [&](auto s) {
    using S = decltype(s);
    using T = typename S::T;
    const int64_t n_max = n_in > n_out ? n_in : n_out;
    const uintptr_t at = (uintptr_t)x | (uintptr_t)y | (uintptr_t)dy | (uintptr_t)out;
    return by_pool_shape<S>(g, n_max, at, [&](auto v, auto i) {
      constexpr int V = decltype(v)::value;
      using I = decltype(i);
      const cudaStream_t st = as_stream(stream);
      if (forward)
        maxpool_forward_kernel<S, V, I><<<blocks_for(n / V), kThreads, 0, st>>>(
            pool_geom<I>(g, V), (I)(n / V), static_cast<const T *>(x), static_cast<T *>(out));
      else
        maxpool_backward_kernel<S, V, I><<<blocks_for(n / V), kThreads, 0, st>>>(
            pool_geom<I>(g, V), (I)(n / V), static_cast<const T *>(x),
            static_cast<const T *>(y), static_cast<const T *>(dy), accumulate,
            static_cast<T *>(out));
      return (int)cudaGetLastError();
    });
  });
}

}  // namespace

extern "C" int wk_launch_dropout_at_f32(int64_t n, double p, const uint64_t *seed_step,
                                        uint64_t node, int64_t offset, const float *x, float *y,
                                        void *stream) {
  if (n > 0 && !seed_step) return (int)cudaErrorInvalidValue;
  return dropout_launch<F32>(n, p, 0, node, seed_step, offset, x, y, stream);
}

extern "C" int wk_launch_dropout_forward_f32(int64_t n, double p, uint64_t seed,
                                             uint64_t stream_id, int64_t offset, const float *x,
                                             float *y, void *stream) {
  return dropout_launch<F32>(n, p, seed, stream_id, nullptr, offset, x, y, stream);
}

extern "C" int wk_launch_dropout_backward_f32(int64_t n, double p, uint64_t seed,
                                              uint64_t stream_id, int64_t offset,
                                              const float *dy, float *dx, void *stream) {
  return dropout_launch<F32>(n, p, seed, stream_id, nullptr, offset, dy, dx, stream);
}

extern "C" int wk_launch_dropout_h(wk_half_kind kind, int64_t n, double p, uint64_t seed,
                                   uint64_t stream_id, const uint64_t *seed_step,
                                   int64_t offset, const uint16_t *x, uint16_t *y,
                                   void *stream) {
  return by_half(kind, [&](auto s) {
    return dropout_launch<decltype(s)>(n, p, seed, stream_id, seed_step, offset, x, y, stream);
  });
}

extern "C" int wk_launch_global_avgpool_forward_f32(int64_t n, int64_t hw, int64_t c,
                                                    const float *x, float *y, void *stream) {
  return global_avgpool_launch<F32>(true, n, hw, c, x, y, stream);
}

extern "C" int wk_launch_global_avgpool_backward_f32(int64_t n, int64_t hw, int64_t c,
                                                     const float *dy, float *dx,
                                                     void *stream) {
  return global_avgpool_launch<F32>(false, n, hw, c, dy, dx, stream);
}

extern "C" int wk_launch_global_avgpool_h(wk_half_kind kind, bool forward, int64_t n, int64_t hw,
                                          int64_t c, const uint16_t *x, uint16_t *y,
                                          void *stream) {
  return by_half(kind, [&](auto s) {
    return global_avgpool_launch<decltype(s)>(forward, n, hw, c, x, y, stream);
  });
}

extern "C" int wk_launch_softmax_xent_forward_f32(int64_t n, int64_t k, double smoothing,
                                                  const float *logits, const int32_t *labels,
                                                  float *probs, float *row_loss,
                                                  void *stream) {
  int64_t n_elems = 0;
  if (n < 0 || k < 1 || !(smoothing >= 0.0 && smoothing <= 1.0) || overflows(n, k, &n_elems))
    return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  if (!logits || !labels || !row_loss) return (int)cudaErrorInvalidValue;
  const int threads = xent_threads(k);
  const int blocks = (int)(n < kMaxBlocks ? n : kMaxBlocks);
  softmax_xent_forward_kernel<<<blocks, threads, threads * sizeof(double), as_stream(stream)>>>(
      n, k, smoothing, logits, labels, probs, row_loss);
  return (int)cudaGetLastError();
}

static int softmax_xent_backward_launch(int64_t n, int64_t k, double smoothing, double scale,
                                        const double *scale_dev, const float *probs,
                                        const int32_t *labels, float *dlogits, void *stream) {
  int64_t n_elems = 0;
  if (n < 0 || k < 1 || !(smoothing >= 0.0 && smoothing <= 1.0) || overflows(n, k, &n_elems))
    return (int)cudaErrorInvalidValue;
  if (n_elems == 0) return (int)cudaSuccess;
  if (!probs || !labels || !dlogits) return (int)cudaErrorInvalidValue;
  softmax_xent_backward_kernel<<<blocks_for(n_elems), kThreads, 0, as_stream(stream)>>>(
      n_elems, k, smoothing, scale, scale_dev, probs, labels, dlogits);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_softmax_xent_backward_f32(int64_t n, int64_t k, double smoothing,
                                                   double scale, const float *probs,
                                                   const int32_t *labels, float *dlogits,
                                                   void *stream) {
  return softmax_xent_backward_launch(n, k, smoothing, scale, nullptr, probs, labels, dlogits,
                                      stream);
}

extern "C" int wk_launch_softmax_xent_backward_at_f32(int64_t n, int64_t k, double smoothing,
                                                      const double *scale, const float *probs,
                                                      const int32_t *labels, float *dlogits,
                                                      void *stream) {
  if (n > 0 && !scale) return (int)cudaErrorInvalidValue;
  return softmax_xent_backward_launch(n, k, smoothing, 0.0, scale, probs, labels, dlogits,
                                      stream);
}

extern "C" int wk_launch_argmax_rows_f32(int64_t n, int64_t k, const float *x, int32_t *out,
                                         void *stream) {
  int64_t n_elems = 0;
  if (n < 0 || k < 1 || k > INT32_MAX || overflows(n, k, &n_elems))
    return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  if (!x || !out) return (int)cudaErrorInvalidValue;
  argmax_rows_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, k, x, out);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_sum_f32(int64_t n, const float *x, double *out, void *stream) {
  if (n < 0 || !out || (n > 0 && !x)) return (int)cudaErrorInvalidValue;
  sum_kernel<<<1, kSumThreads, 0, as_stream(stream)>>>(n, x, out);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_sum_rows_f32(int64_t n, int64_t k, const float *x, float *out,
                                      void *stream) {
  int64_t n_elems = 0;
  if (n < 0 || k < 0 || overflows(n, k, &n_elems)) return (int)cudaErrorInvalidValue;
  if (k == 0) return (int)cudaSuccess;
  if (!out || (n > 0 && !x)) return (int)cudaErrorInvalidValue;
  sum_rows_kernel<<<blocks_for(k), kThreads, 0, as_stream(stream)>>>(n, k, x, out);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_col_sum_h(wk_half_kind kind, int64_t rows, int64_t k, const uint16_t *x,
                                   float *partial, float *out, void *stream) {
  int64_t n_elems = 0;
  if (!half_kind_ok(kind) || rows < 0 || k < 0 || overflows(rows, k, &n_elems))
    return (int)cudaErrorInvalidValue;
  if (k == 0) return (int)cudaSuccess;
  if (!out || (rows > 0 && (!x || !partial))) return (int)cudaErrorInvalidValue;
  if (rows == 0) return wk_launch_sum_rows_f32(0, k, nullptr, out, stream);
  const int64_t chunks = rows < WK_COL_SUM_CHUNKS ? rows : WK_COL_SUM_CHUNKS;
  const int64_t chunk = (rows + chunks - 1) / chunks;
  const int64_t col_blocks = (k + 31) / 32;
  if (col_blocks > INT32_MAX) return (int)cudaErrorInvalidValue;
  const dim3 grid((unsigned)col_blocks, (unsigned)chunks), block(32, kColLanes);
  const int e = by_half(kind, [&](auto s) {
    col_partial_kernel<decltype(s)><<<grid, block, 0, as_stream(stream)>>>(rows, k, chunk, x,
                                                                           partial);
    return (int)cudaGetLastError();
  });
  if (e != 0) return e;
  return wk_launch_sum_rows_f32(chunks, k, partial, out, stream);
}

static dim3 optim_grid(int n_segments) {
  return dim3(kOptimBlocksPerSegment,
              n_segments < kOptimMaxSegmentBlocks ? n_segments : kOptimMaxSegmentBlocks);
}

extern "C" int wk_launch_sgd_unless_f32(int n_segments, const wk_optim_segment *segs,
                                        bool nesterov, float *w, const float *g, float *buf,
                                        const int *skip, void *stream) {
  if (n_segments < 0 || (n_segments > 0 && (!segs || !w || !g)))
    return (int)cudaErrorInvalidValue;
  if (n_segments == 0) return (int)cudaSuccess;
  sgd_kernel<<<optim_grid(n_segments), kThreads, 0, as_stream(stream)>>>(n_segments, segs,
                                                                          nesterov, w, g, buf,
                                                                          skip);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_sgd_f32(int n_segments, const wk_optim_segment *segs, bool nesterov,
                                 float *w, const float *g, float *buf, void *stream) {
  return wk_launch_sgd_unless_f32(n_segments, segs, nesterov, w, g, buf, nullptr, stream);
}

extern "C" int wk_launch_adamw_unless_f32(int n_segments, const wk_optim_segment *segs, float *w,
                                          const float *g, float *exp_avg, float *exp_avg_sq,
                                          const int *skip, void *stream) {
  if (n_segments < 0 || (n_segments > 0 && (!segs || !w || !g || !exp_avg || !exp_avg_sq)))
    return (int)cudaErrorInvalidValue;
  if (n_segments == 0) return (int)cudaSuccess;
  adamw_kernel<<<optim_grid(n_segments), kThreads, 0, as_stream(stream)>>>(
      n_segments, segs, w, g, exp_avg, exp_avg_sq, skip);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_adamw_f32(int n_segments, const wk_optim_segment *segs, float *w,
                                   const float *g, float *exp_avg, float *exp_avg_sq,
                                   void *stream) {
  return wk_launch_adamw_unless_f32(n_segments, segs, w, g, exp_avg, exp_avg_sq, nullptr, stream);
}

extern "C" int wk_launch_scale_f32(int64_t n, float s, float *x, void *stream) {
  if (n < 0 || (n > 0 && !x)) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  scale_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, s, nullptr, nullptr, x);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_scale_unless_f32(int64_t n, const float *s, const int *skip, float *x,
                                          void *stream) {
  if (n < 0 || (n > 0 && (!x || !s))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  scale_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, 0.0f, s, skip, x);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_nonfinite_f32(int64_t n, const float *x, int *flag, void *stream) {
  if (n < 0 || (n > 0 && (!x || !flag))) return (int)cudaErrorInvalidValue;
  if (n == 0) return (int)cudaSuccess;
  nonfinite_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, flag);
  return (int)cudaGetLastError();
}

extern "C" int wk_launch_maxpool_forward(wk_store_kind kind, const wk_maxpool_geom *g,
                                         const void *x, void *y, void *stream) {
  return maxpool_launch(true, kind, g, x, y, nullptr, false, y, stream);
}

extern "C" int wk_launch_maxpool_backward(wk_store_kind kind, const wk_maxpool_geom *g,
                                          const void *x, const void *y, const void *dy,
                                          int accumulate, void *dx, void *stream) {
  return maxpool_launch(false, kind, g, x, y, dy, accumulate != 0, dx, stream);
}
