/* pool.c - max, average and global average pooling (NHWC), forward and
 * backward. The fast path runs the reference kernel over slices of the batch. */
#include <string.h>

#include "ops/parallel.h"
#include "ops/ref.h"

wk_pool2d_params wk_pool2d_params_make(int kernel, int stride, int pad) {
  wk_pool2d_params p = {.kernel_h = kernel, .kernel_w = kernel, .stride_h = stride,
                        .stride_w = stride, .pad_top = pad, .pad_left = pad, .pad_bottom = pad,
                        .pad_right = pad, .count_include_pad = true};
  return p;
}

wk_status wk_pool2d_geom_make(const wk_pool2d_params *p, int64_t n, int64_t h, int64_t w,
                              int64_t c, wk_pool2d_geom *g) {
  if (p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1)
    return wk_fail(WK_ERR_INVALID_ARG, "pool2d: kernel %dx%d and stride %dx%d must be >= 1",
                   p->kernel_h, p->kernel_w, p->stride_h, p->stride_w);
  if (p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0 ||
      p->pad_top > p->kernel_h / 2 || p->pad_bottom > p->kernel_h / 2 ||
      p->pad_left > p->kernel_w / 2 || p->pad_right > p->kernel_w / 2)
    return wk_fail(WK_ERR_INVALID_ARG, "pool2d: padding must be between 0 and half the kernel");
  if (n < 1 || h < 1 || w < 1 || c < 1) return wk_fail(WK_ERR_SHAPE, "pool2d: empty input");
  *g = (wk_pool2d_geom){.n = n, .h = h, .w = w, .c = c, .kh = p->kernel_h, .kw = p->kernel_w,
                        .sh = p->stride_h, .sw = p->stride_w, .pt = p->pad_top,
                        .pl = p->pad_left, .pb = p->pad_bottom, .pr = p->pad_right,
                        .count_include_pad = p->count_include_pad};
  const int64_t span_h = h + g->pt + g->pb - g->kh, span_w = w + g->pl + g->pr - g->kw;
  if (span_h < 0 || span_w < 0)
    return wk_fail(WK_ERR_SHAPE, "pool2d: a %lldx%lld window does not fit the %lldx%lld input",
                   (long long)g->kh, (long long)g->kw, (long long)h, (long long)w);
  g->oh = span_h / g->sh + 1;
  g->ow = span_w / g->sw + 1;
  return WK_OK;
}

/* Validates the input-side tensor `in` (N,H,W,C) and the output-side `out`
 * (N,OH,OW,C). */
static wk_status wk_pool_check(const wk_pool2d_params *p, const wk_tensor *in, const char *in_name,
                               const wk_tensor *out, const char *out_name, wk_pool2d_geom *g) {
  if (!p || !in || !out) return wk_fail(WK_ERR_INVALID_ARG, "pool2d: missing tensor");
  if (in->ndim != 4) return wk_fail(WK_ERR_SHAPE, "%s: expected (N,H,W,C)", in_name);
  WK_TRY(wk_tensor_expect(in, in_name, WK_F32, 4, in->shape));
  WK_TRY(wk_pool2d_geom_make(p, in->shape[0], in->shape[1], in->shape[2], in->shape[3], g));
  const int64_t os[4] = {g->n, g->oh, g->ow, g->c};
  return wk_tensor_expect(out, out_name, WK_F32, 4, os);
}

typedef struct {
  wk_pool2d_geom g;
  const float *in;
  float *out;
  int32_t *argmax;
  const int32_t *argmax_in;
  int kind; /* 0 max fwd, 1 max bwd, 2 avg fwd, 3 avg bwd */
} wk_pool_job;

static void wk_pool_slice(const void *arg, int64_t b, int64_t e) {
  const wk_pool_job *j = arg;
  wk_pool2d_geom g = j->g;
  g.n = e - b;
  const int64_t in_img = g.h * g.w * g.c, out_img = g.oh * g.ow * g.c;
  switch (j->kind) {
    case 0:
      wk_maxpool2d_forward_ref_f32(&g, j->in + b * in_img, j->out + b * out_img,
                                   j->argmax ? j->argmax + b * out_img : NULL);
      break;
    case 1:
      wk_maxpool2d_backward_ref_f32(&g, j->argmax_in + b * out_img, j->in + b * out_img,
                                    j->out + b * in_img);
      break;
    case 2: wk_avgpool2d_forward_ref_f32(&g, j->in + b * in_img, j->out + b * out_img); break;
    default: wk_avgpool2d_backward_ref_f32(&g, j->in + b * out_img, j->out + b * in_img); break;
  }
}

static void wk_pool_run(wk_ctx *ctx, wk_pool_job *j) {
  const int64_t cost = j->g.oh * j->g.ow * j->g.c * j->g.kh * j->g.kw;
  wk_parallel_slices(ctx, j->g.n, cost, wk_pool_slice, j);
}

wk_status wk_maxpool2d_forward(wk_ctx *ctx, const wk_pool2d_params *p, const wk_tensor *x,
                               wk_tensor *y, wk_tensor *argmax) {
  wk_pool_job j = {.kind = 0};
  WK_TRY(wk_pool_check(p, x, "max pool input", y, "max pool output", &j.g));
  if (argmax) {
    const int64_t os[4] = {j.g.n, j.g.oh, j.g.ow, j.g.c};
    WK_TRY(wk_tensor_expect(argmax, "max pool argmax", WK_I32, 4, os));
    if (j.g.h * j.g.w > INT32_MAX)
      return wk_fail(WK_ERR_LIMIT, "max pool: image plane too large for 32-bit indices");
  }
  j.in = x->data;
  j.out = y->data;
  j.argmax = argmax ? argmax->data : NULL;
  wk_pool_run(ctx, &j);
  return WK_OK;
}

wk_status wk_maxpool2d_backward(wk_ctx *ctx, const wk_pool2d_params *p, const wk_tensor *argmax,
                                const wk_tensor *dy, wk_tensor *dx) {
  wk_pool_job j = {.kind = 1};
  WK_TRY(wk_pool_check(p, dx, "max pool input gradient", dy, "max pool output gradient", &j.g));
  if (!argmax) return wk_fail(WK_ERR_INVALID_ARG, "max pool backward: missing argmax");
  WK_TRY(wk_tensor_expect(argmax, "max pool argmax", WK_I32, 4, dy->shape));
  const int32_t *am = argmax->data;
  const int64_t plane = j.g.h * j.g.w, n_out = wk_tensor_numel(dy);
  for (int64_t i = 0; i < n_out; i++)
    if (am[i] < 0 || am[i] >= plane)
      return wk_fail(WK_ERR_INVALID_ARG, "max pool backward: argmax %d out of range at %lld",
                     am[i], (long long)i);
  j.in = dy->data;
  j.out = dx->data;
  j.argmax_in = am;
  wk_pool_run(ctx, &j);
  return WK_OK;
}

wk_status wk_avgpool2d_forward(wk_ctx *ctx, const wk_pool2d_params *p, const wk_tensor *x,
                               wk_tensor *y) {
  wk_pool_job j = {.kind = 2};
  WK_TRY(wk_pool_check(p, x, "average pool input", y, "average pool output", &j.g));
  j.in = x->data;
  j.out = y->data;
  wk_pool_run(ctx, &j);
  return WK_OK;
}

wk_status wk_avgpool2d_backward(wk_ctx *ctx, const wk_pool2d_params *p, const wk_tensor *dy,
                                wk_tensor *dx) {
  wk_pool_job j = {.kind = 3};
  WK_TRY(wk_pool_check(p, dx, "average pool input gradient", dy, "average pool output gradient",
                       &j.g));
  j.in = dy->data;
  j.out = dx->data;
  wk_pool_run(ctx, &j);
  return WK_OK;
}

typedef struct {
  int64_t hw, c;
  const float *in;
  float *out;
  bool backward;
} wk_gap_job;

static void wk_gap_slice(const void *arg, int64_t b, int64_t e) {
  const wk_gap_job *j = arg;
  if (j->backward)
    wk_global_avgpool_backward_ref_f32(e - b, j->hw, j->c, j->in + b * j->c,
                                       j->out + b * j->hw * j->c);
  else
    wk_global_avgpool_forward_ref_f32(e - b, j->hw, j->c, j->in + b * j->hw * j->c,
                                      j->out + b * j->c);
}

static wk_status wk_gap_check(const wk_tensor *img, const char *img_name, const wk_tensor *vec,
                              const char *vec_name) {
  if (!img || !vec) return wk_fail(WK_ERR_INVALID_ARG, "global average pool: missing tensor");
  if (img->ndim != 4) return wk_fail(WK_ERR_SHAPE, "%s: expected (N,H,W,C)", img_name);
  WK_TRY(wk_tensor_expect(img, img_name, WK_F32, 4, img->shape));
  if (wk_tensor_numel(img) == 0) return wk_fail(WK_ERR_SHAPE, "%s: empty", img_name);
  const int64_t vs[2] = {img->shape[0], img->shape[3]};
  return wk_tensor_expect(vec, vec_name, WK_F32, 2, vs);
}

wk_status wk_global_avgpool_forward(wk_ctx *ctx, const wk_tensor *x, wk_tensor *y) {
  WK_TRY(wk_gap_check(x, "global average pool input", y, "global average pool output"));
  wk_gap_job j = {x->shape[1] * x->shape[2], x->shape[3], x->data, y->data, false};
  wk_parallel_slices(ctx, x->shape[0], j.hw * j.c, wk_gap_slice, &j);
  return WK_OK;
}

wk_status wk_global_avgpool_backward(wk_ctx *ctx, const wk_tensor *dy, wk_tensor *dx) {
  WK_TRY(wk_gap_check(dx, "global average pool input gradient", dy,
                      "global average pool output gradient"));
  wk_gap_job j = {dx->shape[1] * dx->shape[2], dx->shape[3], dy->data, dx->data, true};
  wk_parallel_slices(ctx, dx->shape[0], j.hw * j.c, wk_gap_slice, &j);
  return WK_OK;
}
