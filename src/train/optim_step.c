/* optim_step.c - one SGD or AdamW update over the arena (see optim.h).
 *
 * Per parameter, the float factors of the update are derived in double first
 * (wk_optim_coef); the element loops then run over fixed chunks of parameters,
 * in parallel on the context's pool. Each loop does, element by element, the
 * float operations of torch's single-tensor kernels in the same order, so the
 * results differ from torch only by the rounding of fused multiply-adds. */
#include <math.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cuda/cuda.h"
#include "ops/parallel.h"
#include "train/optim_impl.h"

/* SGD without momentum: w += -lr * (g + wd * w). */
static void wk_sgd_plain(const wk_optim_coef *c, size_t n, float *restrict w,
                         const float *restrict g) {
  const float wd = c->wd, neg_lr = c->neg_lr;
#pragma omp simd
  for (size_t i = 0; i < n; i++) {
    const float d = g[i] + wd * w[i];
    w[i] = w[i] + neg_lr * d;
  }
}

/* SGD with momentum; buf starts as d on the parameter's first update. */
static void wk_sgd_momentum(const wk_optim_coef *c, bool nesterov, size_t n, float *restrict w,
                            const float *restrict g, float *restrict buf) {
  const float wd = c->wd, neg_lr = c->neg_lr, m = c->momentum;
  const bool first = c->first;
#pragma omp simd
  for (size_t i = 0; i < n; i++) {
    const float d = g[i] + wd * w[i];
    const float b = first ? d : buf[i] * m + d;
    buf[i] = b;
    w[i] = w[i] + neg_lr * (nesterov ? d + m * b : b);
  }
}

#if defined(__SSE2__)
/* The loop below four elements at a time: the same IEEE float operations in the
 * same order, so every element gets the bits the scalar loop would give it
 * (project code is built in ISO C mode, which does not fuse multiply-adds).
 * Explicit because GCC does not vectorise sqrtf while it may set errno.
 * Returns the number of elements done (a multiple of 4). */
static size_t wk_adamw_sse2(const wk_optim_coef *c, size_t n, float *restrict w,
                            const float *restrict g, float *restrict exp_avg,
                            float *restrict exp_avg_sq) {
  const __m128 decay = _mm_set1_ps(c->decay), b1 = _mm_set1_ps(c->b1), c1 = _mm_set1_ps(c->c1);
  const __m128 b2 = _mm_set1_ps(c->b2), c2 = _mm_set1_ps(c->c2);
  const __m128 bc2_sqrt = _mm_set1_ps(c->bc2_sqrt), eps = _mm_set1_ps(c->eps);
  const __m128 neg_step = _mm_set1_ps(c->neg_step);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m128 gi = _mm_loadu_ps(g + i);
    const __m128 p = _mm_mul_ps(_mm_loadu_ps(w + i), decay);
    const __m128 m = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(exp_avg + i), b1), _mm_mul_ps(c1, gi));
    const __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(exp_avg_sq + i), b2),
                                _mm_mul_ps(_mm_mul_ps(c2, gi), gi));
    _mm_storeu_ps(exp_avg + i, m);
    _mm_storeu_ps(exp_avg_sq + i, v);
    const __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(v), bc2_sqrt), eps);
    _mm_storeu_ps(w + i, _mm_add_ps(p, _mm_div_ps(_mm_mul_ps(neg_step, m), denom)));
  }
  return i;
}
#endif

/* AdamW: decoupled decay, then the moments, then addcdiv as torch orders it. */
static void wk_adamw(const wk_optim_coef *c, size_t n, float *restrict w,
                     const float *restrict g, float *restrict exp_avg,
                     float *restrict exp_avg_sq) {
  const float decay = c->decay, b1 = c->b1, c1 = c->c1, b2 = c->b2, c2 = c->c2;
  const float bc2_sqrt = c->bc2_sqrt, eps = c->eps, neg_step = c->neg_step;
  size_t i = 0;
#if defined(__SSE2__)
  i = wk_adamw_sse2(c, n, w, g, exp_avg, exp_avg_sq);
#endif
  for (; i < n; i++) {
    const float p = w[i] * decay;
    const float m = exp_avg[i] * b1 + c1 * g[i];
    const float v = exp_avg_sq[i] * b2 + (c2 * g[i]) * g[i];
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    const float denom = sqrtf(v) / bc2_sqrt + eps;
    w[i] = p + (neg_step * m) / denom;
  }
}

typedef struct {
  const wk_optim *o;
  float *w;
  const float *g;
} wk_optim_job;

static void wk_optim_slice(const void *arg, int64_t begin, int64_t end) {
  const wk_optim_job *j = arg;
  const wk_optim *o = j->o;
  for (int64_t k = begin; k < end; k++) {
    const wk_arena_chunk *ch = &o->chunks[k];
    const wk_optim_coef *c = &o->coef[ch->param];
    if (!c->active) continue;
    const size_t b = ch->begin, n = ch->end - ch->begin;
    if (o->cfg.kind == WK_OPTIM_ADAMW)
      wk_adamw(c, n, j->w + b, j->g + b, o->state[0] + b, o->state[1] + b);
    else if (o->n_state)
      wk_sgd_momentum(c, o->cfg.nesterov, n, j->w + b, j->g + b, o->state[0] + b);
    else
      wk_sgd_plain(c, n, j->w + b, j->g + b);
  }
}

/* Fills o->coef for this step and advances the step counts of active parameters. */
static void wk_optim_prepare(wk_optim *o, double lr) {
  const wk_optim_config *cfg = &o->cfg;
  for (size_t i = 0; i < o->n_params; i++) {
    const wk_param *p = &o->params[i];
    wk_optim_coef *c = &o->coef[i];
    *c = (wk_optim_coef){.active = !wk_param_frozen(p)};
    if (!c->active) continue;
    const double plr = lr * (double)p->lr_scale;
    const bool decays = cfg->decay_norm_and_bias || !(p->flags & WK_PARAM_NO_DECAY);
    const double wd = decays ? cfg->weight_decay : 0.0;
    if (cfg->kind == WK_OPTIM_SGD) {
      c->first = o->steps[i] == 0;
      c->neg_lr = (float)-plr;
      c->wd = (float)wd;
      c->momentum = (float)cfg->momentum;
    } else {
      const double t = (double)(o->steps[i] + 1);
      const double bc1 = 1.0 - pow(cfg->beta1, t), bc2 = 1.0 - pow(cfg->beta2, t);
      c->decay = (float)(1.0 - plr * wd);
      c->b1 = (float)cfg->beta1;
      c->c1 = (float)(1.0 - cfg->beta1);
      c->b2 = (float)cfg->beta2;
      c->c2 = (float)(1.0 - cfg->beta2);
      c->bc2_sqrt = (float)sqrt(bc2);
      c->eps = (float)cfg->eps;
      c->neg_step = (float)-(plr / bc1);
    }
    o->steps[i]++;
  }
}

/* The checks of a step at rate lr. */
static wk_status wk_optim_check(const wk_optim *o, double lr) {
  const char *k = wk_optim_kind_name(o->cfg.kind);
  if (!(isfinite(lr) && lr >= 0.0))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: learning rate %g must be finite and >= 0", k, lr);
  for (size_t i = 0; i < o->n_params; i++) {
    const wk_param *p = &o->params[i];
    WK_ASSERT(p->offset == o->layout[2 * i] && p->numel == o->layout[2 * i + 1]);
    if (!(isfinite(p->lr_scale) && p->lr_scale >= 0.0f))
      return wk_fail(WK_ERR_INVALID_ARG, "%s: parameter %zu (%.*s): lr_scale %g must be >= 0",
                     k, i, WK_PARAM_NAME_MAX, p->name, (double)p->lr_scale);
  }
  return WK_OK;
}

wk_status wk_optim_step(wk_optim *o, wk_ctx *ctx, float *w, const float *g, double lr) {
  WK_TRY(wk_optim_check(o, lr));
  if (o->n_elems && (!w || !g))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: NULL weights or gradients",
                   wk_optim_kind_name(o->cfg.kind));
  wk_optim_prepare(o, lr);
  wk_optim_job job = {o, w, g};
  if (ctx)
    wk_parallel_slices(ctx, (int64_t)o->n_chunks, (int64_t)WK_ARENA_CHUNK, wk_optim_slice, &job);
  else
    wk_optim_slice(&job, 0, (int64_t)o->n_chunks);
  return WK_OK;
}

wk_status wk_optim_step_segments(wk_optim *o, double lr, wk_gpu_optim_segment *segs, int *n) {
  *n = 0;
  WK_TRY(wk_optim_check(o, lr));
  wk_optim_prepare(o, lr);
  for (size_t i = 0; i < o->n_params; i++) {
    const wk_optim_coef *c = &o->coef[i];
    if (!c->active || o->params[i].numel == 0) continue;
    segs[(*n)++] = (wk_gpu_optim_segment){
        .offset = (int64_t)o->params[i].offset, .numel = (int64_t)o->params[i].numel,
        .neg_lr = c->neg_lr, .wd = c->wd, .momentum = c->momentum, .first = c->first,
        .decay = c->decay, .b1 = c->b1, .c1 = c->c1, .b2 = c->b2, .c2 = c->c2,
        .bc2_sqrt = c->bc2_sqrt, .eps = c->eps, .neg_step = c->neg_step};
  }
  return WK_OK;
}

float *wk_optim_state_data(wk_optim *o, size_t i) { return i < o->n_state ? o->state[i] : NULL; }
