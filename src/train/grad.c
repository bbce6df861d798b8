/* grad.c - gradient clipping and the NaN/Inf check (see grad.h). */
#include "train/grad.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "ops/parallel.h"
#include "train/arena.h"

typedef struct {
  const wk_arena_chunk *chunks;
  const float *g;
  double *partial; /* (n_chunks) sum of squares, or 0 / NaN for the finite check */
  bool squares;
} wk_grad_job;

/* Sum of squares in double; the simd reduction order is fixed at compile time. */
static double wk_sum_squares(const float *restrict x, size_t n) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (size_t i = 0; i < n; i++) acc += (double)x[i] * (double)x[i];
  return acc;
}

/* 0 when every element is finite, NaN otherwise: x - x is 0 for finite x and
 * NaN for NaN and +-Inf, so any summation order gives the same answer. */
static float wk_nonfinite_probe(const float *restrict x, size_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (size_t i = 0; i < n; i++) acc += x[i] - x[i];
  return acc;
}

static void wk_grad_slice(const void *arg, int64_t begin, int64_t end) {
  const wk_grad_job *j = arg;
  for (int64_t k = begin; k < end; k++) {
    const wk_arena_chunk *c = &j->chunks[k];
    const float *x = j->g + c->begin;
    const size_t n = c->end - c->begin;
    j->partial[k] = j->squares ? wk_sum_squares(x, n) : (double)wk_nonfinite_probe(x, n);
  }
}

/* Runs the job over the non-frozen chunks; *partial (malloc'd, n_chunks) gets the
 * per-chunk results. */
static wk_status wk_grad_run(wk_ctx *ctx, const wk_param *params, size_t n_params,
                             const float *g, bool squares, wk_arena_chunk **chunks,
                             double **partial, size_t *n_chunks) {
  *partial = NULL;
  *chunks = NULL;
  *n_chunks = 0;
  if (n_params && !g) return wk_fail(WK_ERR_INVALID_ARG, "gradients: NULL gradient arena");
  WK_TRY(wk_arena_chunks(params, n_params, true, chunks, n_chunks));
  if (*n_chunks == 0) return WK_OK;
  *partial = malloc(*n_chunks * sizeof **partial);
  if (!*partial) {
    free(*chunks);
    *chunks = NULL;
    return wk_fail(WK_ERR_NOMEM, "gradients: out of memory");
  }
  wk_grad_job job = {*chunks, g, *partial, squares};
  if (ctx)
    wk_parallel_slices(ctx, (int64_t)*n_chunks, (int64_t)WK_ARENA_CHUNK, wk_grad_slice, &job);
  else
    wk_grad_slice(&job, 0, (int64_t)*n_chunks);
  return WK_OK;
}

wk_status wk_grad_check_finite(wk_ctx *ctx, const wk_param *params, size_t n_params,
                               const float *g) {
  WK_TRY(wk_arena_check(params, n_params, SIZE_MAX, "gradient check"));
  wk_arena_chunk *chunks = NULL;
  double *partial = NULL;
  size_t n = 0;
  WK_TRY(wk_grad_run(ctx, params, n_params, g, false, &chunks, &partial, &n));
  wk_status s = WK_OK;
  for (size_t k = 0; k < n && s == WK_OK; k++) {
    if (partial[k] == 0.0) continue;
    const wk_arena_chunk *c = &chunks[k];
    const wk_param *p = &params[c->param];
    for (size_t i = c->begin; i < c->end; i++)
      if (!isfinite(g[i])) {
        s = wk_fail(WK_ERR_INVALID_ARG, "gradient of parameter %zu (%.*s) element %zu is %g",
                    c->param, WK_PARAM_NAME_MAX, p->name, i - p->offset, (double)g[i]);
        break;
      }
    WK_ASSERT(s != WK_OK); /* the probe saw a non-finite element in this chunk */
  }
  free(chunks);
  free(partial);
  return s;
}

typedef struct {
  const wk_arena_chunk *chunks;
  float *g;
  float scale;
} wk_scale_job;

static void wk_scale_slice(const void *arg, int64_t begin, int64_t end) {
  const wk_scale_job *j = arg;
  for (int64_t k = begin; k < end; k++) {
    float *restrict x = j->g + j->chunks[k].begin;
    const size_t n = j->chunks[k].end - j->chunks[k].begin;
    const float s = j->scale;
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] *= s;
  }
}

wk_status wk_grad_clip_global_norm(wk_ctx *ctx, const wk_param *params, size_t n_params,
                                   float *g, double max_norm, double *norm_before) {
  if (norm_before) *norm_before = 0.0;
  if (!(isfinite(max_norm) && max_norm > 0.0))
    return wk_fail(WK_ERR_INVALID_ARG, "grad clip: max_norm %g must be finite and > 0",
                   max_norm);
  WK_TRY(wk_arena_check(params, n_params, SIZE_MAX, "grad clip"));
  wk_arena_chunk *chunks = NULL;
  double *partial = NULL;
  size_t n = 0;
  WK_TRY(wk_grad_run(ctx, params, n_params, g, true, &chunks, &partial, &n));
  double sum = 0.0;
  for (size_t k = 0; k < n; k++) sum += partial[k];
  const double norm = sqrt(sum);
  if (norm_before) *norm_before = norm;
  wk_status s = WK_OK;
  if (!isfinite(norm)) {
    s = wk_grad_check_finite(ctx, params, n_params, g);
    WK_ASSERT(s != WK_OK); /* squares of finite floats cannot overflow a double sum */
  } else {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
      wk_scale_job job = {chunks, g, (float)coef};
      if (ctx)
        wk_parallel_slices(ctx, (int64_t)n, (int64_t)WK_ARENA_CHUNK, wk_scale_slice, &job);
      else
        wk_scale_slice(&job, 0, (int64_t)n);
    }
  }
  free(chunks);
  free(partial);
  return s;
}
