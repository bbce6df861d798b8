/* conv2d_pwdw.c - a 1x1 convolution and the depthwise 3x3 convolution after
 * it as one inference plan (ops/plan.h).
 *
 * oneDNN fuses the pair through a depthwise post-op on the 1x1 primitive: its
 * jit kernel computes a few rows of the 1x1's output into a buffer that stays
 * in cache and runs the depthwise kernel on them, so the expanded activations
 * never travel to memory and back. Measured on 2 AVX-512 cores at batch 32
 * (1x1 + depthwise, separate -> fused): 16->96 channels at 112x112 with the
 * depthwise at stride 2 14.5 -> 8.8 ms; 24->144 at 56x56 11.5 -> 9.0 ms;
 * 96->576 at 14x14 4.9 -> 4.0 ms; at batch 1 they are even. Fused only
 * between nChw16c activations (see wk_conv2d_pwdw_plan_create). Where oneDNN
 * declines (its heuristic: smaller shapes, batch 1 after the first block)
 * and the expanded channels come in whole 16-channel blocks, whisker's own
 * fused kernel runs the pair (pwdw_own.h, AVX-512; $WHISKER_PWDW_OWN=0: not
 * used). Otherwise, and for NHWC activations, the plan runs the two
 * convolutions' own plans in turn through the caller's scratch (the
 * network's buffer pool, whose reused buffers stay in cache; a buffer per
 * plan made batch 1 about 8% slower). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "ops/conv2d_dnnl_impl.h"
#include "ops/dnnl_util.h"
#include "ops/plan.h"
#include "ops/pwdw_own.h"

struct wk_conv2d_pwdw_plan {
  wk_dnnl *d;
  wk_conv2d_geom pw, dw;
  bool pw_bias, dw_bias;
  /* fused: one primitive; src and dst nChw16c, as the caller's */
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim;
  wk_conv_mds m_pw, m_dw; /* the user's weights layouts of each side */
  dnnl_memory_desc_t src, dst;
  wk_wei_cache w_pw, w_dw;
  float *zero_bias; /* (max(pw.o, dw.o)) for a side without bias: the fused kernel takes both */
  /* whisker's kernel (pwdw_own.h) where oneDNN declines to fuse */
  wk_pwdw_own *own;
  wk_ctx *ctx;
  /* split: the two plans; the expanded activations (nChw16c) in the caller's scratch */
  wk_conv2d_plan *first, *second;
  size_t mid_bytes;
  char impl[128];
};

bool wk_conv2d_pwdw_pair(const wk_conv2d_geom *pw, const wk_conv2d_geom *dw) {
  const bool pointwise = pw->kh == 1 && pw->kw == 1 && pw->sh == 1 && pw->sw == 1 &&
                         pw->pt == 0 && pw->pl == 0 && pw->pb == 0 && pw->pr == 0 &&
                         pw->dh == 1 && pw->dw == 1 && pw->groups == 1;
  const bool depthwise = dw->kh == 3 && dw->kw == 3 && dw->sh == dw->sw &&
                         (dw->sh == 1 || dw->sh == 2) && dw->pt == 1 && dw->pl == 1 &&
                         dw->pb == 1 && dw->pr == 1 && dw->dh == 1 && dw->dw == 1 &&
                         dw->groups == dw->c && dw->o == dw->c;
  return pointwise && depthwise && dw->n == pw->n && dw->c == pw->o && dw->h == pw->oh &&
         dw->w == pw->ow;
}

static dnnl_status_t wk_pwdw_eltwise(dnnl_post_ops_t po, wk_post_act a) {
  if (a == WK_POST_RELU) return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0, 0);
  if (a == WK_POST_RELU6)
    return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0.0f, 6.0f);
  return dnnl_success;
}

/* The fused primitive on nChw16c activations, or false (nothing kept) when
 * oneDNN has no jit kernel for it. */
static bool wk_pwdw_try_fused(wk_conv2d_pwdw_plan *p, wk_post_act pw_post, wk_post_act dw_post) {
  const dnnl_format_tag_t blk = dnnl_nChw16c;
  const wk_conv2d_geom *a = &p->pw, *b = &p->dw;
  const dnnl_dims_t src = {a->n, a->c, a->h, a->w}, mid = {a->n, a->o, a->oh, a->ow};
  const dnnl_dims_t dst = {b->n, b->o, b->oh, b->ow};
  dnnl_memory_desc_t mid_md;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_convolution_desc_t cd;
  dnnl_status_t s = dnnl_memory_desc_init_by_tag(&p->src, 4, src, dnnl_f32, blk);
  if (!s) s = dnnl_memory_desc_init_by_tag(&mid_md, 4, mid, dnnl_f32, blk);
  if (!s) s = dnnl_memory_desc_init_by_tag(&p->dst, 4, dst, dnnl_f32, blk);
  if (!s) s = dnnl_primitive_attr_create(&attr);
  if (!s) s = dnnl_post_ops_create(&po);
  if (!s) s = wk_pwdw_eltwise(po, pw_post);
  if (!s) s = dnnl_post_ops_append_dw(po, dnnl_f32, dnnl_f32, dnnl_f32, 3, b->sh, 1, 0, 0, NULL);
  if (!s) s = wk_pwdw_eltwise(po, dw_post);
  if (!s) s = dnnl_primitive_attr_set_post_ops(attr, po);
  if (!s)
    s = dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                           &p->src, &p->m_pw.wei_any, &p->m_pw.bias, &mid_md,
                                           p->m_pw.strides, p->m_pw.pad_l, p->m_pw.pad_r);
  if (!s) s = dnnl_primitive_desc_create(&p->pd, &cd, attr, p->d->engine, NULL);
  /* oneDNN derives the depthwise output's size itself: it must be dw's,
   * from a kernel better than its reference */
  if (!s && (!dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(p->pd, dnnl_query_dst_md, 0),
                                     &p->dst) ||
             wk_dnnl_is_ref(p->pd)))
    s = dnnl_unimplemented;
  if (!s) s = dnnl_primitive_create(&p->prim, p->pd);
  if (po) dnnl_post_ops_destroy(po);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (s) {
    if (p->pd) dnnl_primitive_desc_destroy(p->pd);
    p->pd = NULL;
  }
  return s == dnnl_success;
}

/* Drops the fused primitive and what it needs. */
static void wk_pwdw_fused_free(wk_conv2d_pwdw_plan *p) {
  if (p->prim) dnnl_primitive_destroy(p->prim);
  if (p->pd) dnnl_primitive_desc_destroy(p->pd);
  p->prim = NULL;
  p->pd = NULL;
  wk_wei_cache_free(&p->w_pw);
  wk_wei_cache_free(&p->w_dw);
  free(p->zero_bias);
  p->zero_bias = NULL;
}

static const dnnl_memory_desc_t *wk_pwdw_arg_md(const wk_conv2d_pwdw_plan *p, int arg) {
  return dnnl_primitive_desc_query_md(p->pd, dnnl_query_exec_arg_md, arg);
}

wk_status wk_conv2d_pwdw_plan_create(wk_ctx *ctx, const wk_conv2d_geom *pw, bool pw_bias,
                                     wk_post_act pw_post, const wk_conv2d_geom *dw, bool dw_bias,
                                     wk_post_act dw_post, bool src_blk, bool dst_blk, bool fuse,
                                     wk_conv2d_pwdw_plan **out) {
  wk_status st = WK_OK;
  *out = NULL;
  if (ctx->impl != WK_IMPL_CPU) return WK_ERR_UNSUPPORTED;
  if (!wk_conv2d_pwdw_pair(pw, dw))
    return wk_fail(WK_ERR_INVALID_ARG, "conv2d: not a 1x1 then depthwise 3x3 pair");
  wk_conv2d_pwdw_plan *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "conv2d plan: out of memory");
  p->d = ctx->dnnl;
  p->pw = *pw;
  p->dw = *dw;
  p->pw_bias = pw_bias;
  p->dw_bias = dw_bias;
  WK_DNNL_CHECK(wk_conv_mds_init(pw, &p->m_pw));
  WK_DNNL_CHECK(wk_conv_mds_init(dw, &p->m_dw));
  /* Only between nChw16c activations, and always with both biases: oneDNN
   * 2.6.3 builds its jit kernel for NHWC too, which then computes garbage
   * (found by review: 1e38 against the two convolutions run apart), and its
   * kernel without a 1x1 bias crashes. */
  if (fuse && src_blk && dst_blk && wk_pwdw_try_fused(p, pw_post, dw_post)) {
    const dnnl_memory_desc_t *w1 = dnnl_primitive_desc_query_md(p->pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *w2 = wk_pwdw_arg_md(p, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS);
    st = wk_wei_cache_init(p->d, &p->m_pw, w1, false, true, &p->w_pw);
    if (st == WK_OK) st = wk_wei_cache_init(p->d, &p->m_dw, w2, false, true, &p->w_dw);
    const size_t nz = (size_t)(pw->o > dw->o ? pw->o : dw->o);
    if (st == WK_OK && (!pw_bias || !dw_bias) && !(p->zero_bias = calloc(nz, sizeof(float))))
      st = wk_fail(WK_ERR_NOMEM, "conv2d plan: out of memory");
    if (st == WK_OK) {
      snprintf(p->impl, sizeof p->impl, "1x1+dw fused: %s", wk_dnnl_impl_name(p->pd));
      goto done;
    }
    if (st == WK_ERR_NOMEM) goto done;
    /* e.g. no reorder into the post-op's weight layout: run the two in turn */
    wk_clear_error();
    wk_pwdw_fused_free(p);
  }
  if (fuse && src_blk && dst_blk && wk_pwdw_own_usable(pw, dw, pw_post, dw_post)) {
    st = wk_pwdw_own_create(pw, dw, pw_post, dw_post, &p->own);
    if (st != WK_OK) goto done;
    p->ctx = ctx;
    p->mid_bytes = wk_pwdw_own_scratch_bytes(p->own, ctx);
    snprintf(p->impl, sizeof p->impl, "1x1+dw fused: whisker avx512");
    goto done;
  }
  st = wk_conv2d_plan_create_layout(ctx, pw, pw_bias, true, pw_post, src_blk, true, &p->first);
  if (st == WK_OK)
    st = wk_conv2d_plan_create_layout(ctx, dw, dw_bias, true, dw_post, true, dst_blk, &p->second);
  p->mid_bytes = (size_t)(pw->n * wk_blk16(pw->o) * pw->oh * pw->ow) * sizeof(float);
  if (st == WK_OK)
    snprintf(p->impl, sizeof p->impl, "1x1+dw in turn: %s, %s", wk_conv2d_plan_impl(p->first),
             wk_conv2d_plan_impl(p->second));
done:
  if (st != WK_OK) {
    wk_conv2d_pwdw_plan_destroy(p);
    return st;
  }
  *out = p;
  return WK_OK;
}

void wk_conv2d_pwdw_plan_destroy(wk_conv2d_pwdw_plan *p) {
  if (!p) return;
  wk_pwdw_fused_free(p);
  wk_pwdw_own_destroy(p->own);
  wk_conv2d_plan_destroy(p->first);
  wk_conv2d_plan_destroy(p->second);
  free(p);
}

bool wk_conv2d_pwdw_plan_fused(const wk_conv2d_pwdw_plan *p) { return p->prim || p->own; }

const char *wk_conv2d_pwdw_plan_impl(const wk_conv2d_pwdw_plan *p) { return p->impl; }

size_t wk_conv2d_pwdw_plan_scratch_bytes(const wk_conv2d_pwdw_plan *p) { return p->mid_bytes; }

wk_status wk_conv2d_pwdw_plan_forward(wk_conv2d_pwdw_plan *p, const float *x,
                                      const wk_conv2d_weights *pw, const wk_conv2d_weights *dw,
                                      float *scratch, float *y) {
  WK_ASSERT((pw->b != NULL) == p->pw_bias && (dw->b != NULL) == p->dw_bias);
  if (p->own) return wk_pwdw_own_forward(p->own, p->ctx, x, pw, dw, scratch, y);
  if (!p->prim) {
    WK_ASSERT(scratch != NULL);
    WK_TRY(wk_conv2d_plan_forward(p->first, x, pw->w, pw->version, pw->b, scratch));
    return wk_conv2d_plan_forward(p->second, scratch, dw->w, dw->version, dw->b, y);
  }
  const dnnl_memory_desc_t *w1 = dnnl_primitive_desc_query_md(p->pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *w2 = wk_pwdw_arg_md(p, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS);
  const dnnl_memory_desc_t *b2 = wk_pwdw_arg_md(p, DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS);
  const void *w1_data, *w2_data;
  WK_TRY(wk_wei_get(p->d, &p->m_pw, w1, &p->w_pw, pw->w, pw->version, NULL, &w1_data));
  WK_TRY(wk_wei_get(p->d, &p->m_dw, w2, &p->w_dw, dw->w, dw->version, NULL, &w2_data));
  const int kinds[6] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST,
                        DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS,
                        DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS, DNNL_ARG_BIAS};
  const dnnl_memory_desc_t *mds[6] = {&p->src, w1, &p->dst, w2, b2, &p->m_pw.bias};
  const void *ptrs[6] = {x, w1_data, y, w2_data, dw->b ? dw->b : p->zero_bias,
                         pw->b ? pw->b : p->zero_bias};
  return wk_dnnl_exec(p->d, p->prim, 6, kinds, mds, ptrs);
}
