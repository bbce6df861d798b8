/* conv2d_dnnl.c - convolution forward, backward-data and backward-weights through
 * oneDNN's C API, as plans (ops/plan.h) and as the one-off calls of fast.h.
 *
 * Activations stay in whisker's NHWC layout (oneDNN's jit kernels run on it
 * directly, no reorder). Weights are declared with format `any` so oneDNN picks
 * its preferred blocked layout; whisker's OHWI weights are reordered into it
 * when their version changes, and weight gradients are reordered back to OHWI.
 * Algorithm: direct, except for 3x3 stride-1 dense convolutions, which use
 * oneDNN's Winograd kernels (2-3x faster here in all three passes) when
 * oneDNN has them for the shape; those need the blocked nChw16c layout, so
 * their plans reorder activations in and out through the context's scratch
 * buffer. Inference plans of those convolutions run whisker's own Winograd
 * instead where it applies (ops/wino.h: x86-64 with AVX-512; faster at small
 * batches, where oneDNN's Winograd does not pay, and at 32 too).
 * WHISKER_WINOGRAD=0 turns both Winograds off; WHISKER_WINO=0 only whisker's. */
#include <stdlib.h>
#include <string.h>

#include "ops/conv2d_dnnl_impl.h"
#include "ops/dnnl_util.h"
#include "ops/fast.h"
#include "ops/plan.h"
#include "ops/wino.h"

struct wk_conv2d_plan {
  wk_ctx *ctx;
  wk_dnnl *d;
  wk_conv2d_geom g;
  bool bias, inference;
  /* a training plan on oneDNN's Winograd, which fuses no ReLU6: the activation
   * as a pass over y after the convolution (NONE otherwise) */
  wk_post_act post_after;
  wk_conv_mds m; /* src/dst: the primitives' layouts (nChw16c for Winograd) */
  bool wino;
  wk_wino *own_wino; /* whisker's Winograd (inference plans), or NULL; no primitives then */
  dnnl_memory_desc_t src_user, dst_user; /* the caller's: NHWC, or nChw16c (inference) */
  /* user <-> primitive layouts where they differ (Winograd, mixed layouts);
   * NULL where they agree */
  dnnl_primitive_t src_in, src_out, dst_in, dst_out;
  size_t blk_bytes; /* the larger of the primitive's src and dst, when reordered */
  /* backward-weights on nChw16c copies of x and dy (wk_bwdw_blocked_wanted) */
  bool bwdw_blk;
  dnnl_memory_desc_t bw_src, bw_dst;
  dnnl_primitive_t bw_src_in, bw_dst_in;
  size_t bw_src_bytes, bw_dst_bytes;
  dnnl_primitive_desc_t fwd_pd, bwdd_pd, bwdw_pd;
  dnnl_primitive_t fwd, bwdd, bwdw;
  wk_wei_cache w_fwd, w_bwdd, dw; /* dw.buf: weight gradient in bwdw's layout */
};

dnnl_status_t wk_conv_mds_init(const wk_conv2d_geom *g, wk_conv_mds *m) {
  dnnl_status_t s;
  const dnnl_dims_t src = {g->n, g->c, g->h, g->w};
  const dnnl_dims_t dst = {g->n, g->o, g->oh, g->ow};
  if ((s = dnnl_memory_desc_init_by_tag(&m->src, 4, src, dnnl_f32, dnnl_nhwc))) return s;
  if ((s = dnnl_memory_desc_init_by_tag(&m->dst, 4, dst, dnnl_f32, dnnl_nhwc))) return s;
  if (g->groups == 1) {
    const dnnl_dims_t wd = {g->o, g->c, g->kh, g->kw};
    if ((s = dnnl_memory_desc_init_by_tag(&m->wei_user, 4, wd, dnnl_f32, dnnl_ohwi))) return s;
    if ((s = dnnl_memory_desc_init_by_tag(&m->wei_any, 4, wd, dnnl_f32, dnnl_format_tag_any)))
      return s;
  } else {
    const dnnl_dims_t wd = {g->groups, g->o / g->groups, g->c / g->groups, g->kh, g->kw};
    if ((s = dnnl_memory_desc_init_by_tag(&m->wei_user, 5, wd, dnnl_f32, dnnl_gohwi))) return s;
    if ((s = dnnl_memory_desc_init_by_tag(&m->wei_any, 5, wd, dnnl_f32, dnnl_format_tag_any)))
      return s;
  }
  const dnnl_dims_t bd = {g->o};
  if ((s = dnnl_memory_desc_init_by_tag(&m->bias, 1, bd, dnnl_f32, dnnl_a))) return s;
  m->strides[0] = g->sh;
  m->strides[1] = g->sw;
  m->dilates[0] = g->dh - 1; /* oneDNN counts dilation from 0 */
  m->dilates[1] = g->dw - 1;
  m->pad_l[0] = g->pt;
  m->pad_l[1] = g->pl;
  m->pad_r[0] = g->pb;
  m->pad_r[1] = g->pr;
  return dnnl_success;
}

void wk_wei_cache_free(wk_wei_cache *c) {
  if (c->reorder) dnnl_primitive_destroy(c->reorder);
  free(c->buf);
  memset(c, 0, sizeof *c);
}

wk_status wk_wei_cache_init(wk_dnnl *d, const wk_conv_mds *m, const dnnl_memory_desc_t *md,
                            bool to_user, bool own, wk_wei_cache *c) {
  wk_status st = WK_OK;
  if (dnnl_memory_desc_equal(md, &m->wei_user)) return WK_OK;
  c->bytes = (dnnl_memory_desc_get_size(md) + 63) & ~(size_t)63;
  if (own) WK_TRY(wk_dnnl_buffer(c->bytes, &c->buf));
  WK_DNNL_CHECK(to_user ? wk_dnnl_reorder_prim(d, md, &m->wei_user, &c->reorder)
                        : wk_dnnl_reorder_prim(d, &m->wei_user, md, &c->reorder));
done:
  return st;
}

wk_status wk_wei_get(wk_dnnl *d, const wk_conv_mds *m, const dnnl_memory_desc_t *md,
                     wk_wei_cache *c, const float *w, uint64_t version, void *scratch,
                     const void **out) {
  if (!c->reorder) {
    *out = w;
    return WK_OK;
  }
  void *dst = c->buf ? c->buf : scratch;
  *out = dst;
  if (c->buf && version != 0 && c->version == version) return WK_OK;
  WK_TRY(wk_dnnl_reorder_run(d, c->reorder, &m->wei_user, w, md, dst));
  c->version = version;
  return WK_OK;
}

/* The post-ops: with sum, dst += the convolution's result first, then the
 * activation. */
static wk_status wk_post_ops_attr(wk_post_act post, bool sum, dnnl_primitive_attr_t *attr) {
  wk_status st = WK_OK;
  dnnl_post_ops_t po = NULL;
  *attr = NULL;
  if (post == WK_POST_NONE && !sum) return WK_OK;
  WK_DNNL_CHECK(dnnl_primitive_attr_create(attr));
  WK_DNNL_CHECK(dnnl_post_ops_create(&po));
  if (sum) WK_DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
  if (post == WK_POST_RELU)
    WK_DNNL_CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
  else if (post == WK_POST_RELU6)
    WK_DNNL_CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0.0f, 6.0f));
  WK_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(*attr, po));
done:
  if (po) dnnl_post_ops_destroy(po);
  if (st != WK_OK && *attr) {
    dnnl_primitive_attr_destroy(*attr);
    *attr = NULL;
  }
  return st;
}

/* WHISKER_WINOGRAD=0: neither oneDNN's Winograd nor whisker's. */
static bool wk_winograd_off(void) {
  const char *env = getenv("WHISKER_WINOGRAD");
  return env && strcmp(env, "0") == 0;
}

static bool wk_winograd_enabled(const wk_conv2d_geom *g) {
  if (wk_winograd_off()) return false;
  /* Winograd works in 4x4 output tiles: with fewer than ~800 output pixels
   * per image batch (resnet18's last stages at batch 1) the tile overhead
   * makes it slower than direct (3.7 ms vs 1.1 ms at 7x7, measured). */
  return g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
         g->groups == 1 && g->n * g->oh * g->ow >= 784;
}

/* The output tile side of whisker's own Winograd for an inference plan into
 * *m, 0 for oneDNN. WHISKER_WINO=0 turns it off, 2 or 4 forces that tile for
 * every shape that fits (for measuring); otherwise wk_wino_pick decides
 * (which also follows oneDNN's ISA limit). WHISKER_WINOGRAD=0 turns it off
 * too. */
static wk_status wk_wino_wanted(const wk_conv2d_geom *g, int *m) {
  *m = 0;
  const char *env = getenv("WHISKER_WINO");
  if (env && *env && strcmp(env, "0") != 0 && strcmp(env, "2") != 0 && strcmp(env, "4") != 0)
    return wk_fail(WK_ERR_INVALID_ARG, "WHISKER_WINO must be 0, 2 or 4, not '%s'", env);
  if (wk_winograd_off() || (env && strcmp(env, "0") == 0)) return WK_OK;
  *m = wk_wino_pick(g);
  if (*m && env && *env) *m = atoi(env);
  return WK_OK;
}

/* The forward primitive, and for training plans the two backward ones, with
 * the algorithm and activation layouts in p->m. Returns the first oneDNN
 * failure (the caller may retry another algorithm). */
static dnnl_status_t wk_conv_prims(wk_conv2d_plan *p, dnnl_alg_kind_t alg,
                                   const_dnnl_primitive_attr_t attr) {
  dnnl_convolution_desc_t cd;
  const wk_conv_mds *m = &p->m;
  /* Winograd's inference flavour wants weights in a format oneDNN cannot
   * reorder whisker's OHWI into; its training flavour computes the same. */
  const bool infer = p->inference && alg != dnnl_convolution_winograd;
  dnnl_status_t s = dnnl_dilated_convolution_forward_desc_init(
      &cd, infer ? dnnl_forward_inference : dnnl_forward_training, alg, &m->src,
      &m->wei_any, p->bias ? &m->bias : NULL, &m->dst, m->strides, m->dilates, m->pad_l,
      m->pad_r);
  if (!s) s = dnnl_primitive_desc_create(&p->fwd_pd, &cd, attr, p->d->engine, NULL);
  if (!s) s = dnnl_primitive_create(&p->fwd, p->fwd_pd);
  if (s || p->inference) return s;
  s = dnnl_dilated_convolution_backward_data_desc_init(&cd, alg, &m->src, &m->wei_any, &m->dst,
                                                       m->strides, m->dilates, m->pad_l, m->pad_r);
  if (!s) s = dnnl_primitive_desc_create(&p->bwdd_pd, &cd, NULL, p->d->engine, p->fwd_pd);
  if (!s) s = dnnl_primitive_create(&p->bwdd, p->bwdd_pd);
  if (!s)
    s = dnnl_dilated_convolution_backward_weights_desc_init(
        &cd, alg, &m->src, &m->wei_any, p->bias ? &m->bias : NULL, &m->dst, m->strides,
        m->dilates, m->pad_l, m->pad_r);
  if (!s) s = dnnl_primitive_desc_create(&p->bwdw_pd, &cd, NULL, p->d->engine, p->fwd_pd);
  if (!s) s = dnnl_primitive_create(&p->bwdw, p->bwdw_pd);
  return s;
}

static void wk_conv_prims_free(wk_conv2d_plan *p) {
  dnnl_primitive_t *prims[9] = {&p->fwd,    &p->bwdd,    &p->bwdw,      &p->src_in,   &p->src_out,
                                &p->dst_in, &p->dst_out, &p->bw_src_in, &p->bw_dst_in};
  dnnl_primitive_desc_t *pds[3] = {&p->fwd_pd, &p->bwdd_pd, &p->bwdw_pd};
  for (int i = 0; i < 9; i++)
    if (*prims[i]) dnnl_primitive_destroy(*prims[i]), *prims[i] = NULL;
  for (int i = 0; i < 3; i++)
    if (*pds[i]) dnnl_primitive_desc_destroy(*pds[i]), *pds[i] = NULL;
}

/* A reorder between two layouts, or none (*out NULL) when they are the same. */
static dnnl_status_t wk_reorder_if(wk_dnnl *d, const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, dnnl_primitive_t *out) {
  *out = NULL;
  if (dnnl_memory_desc_equal(from, to)) return dnnl_success;
  return wk_dnnl_reorder_prim(d, from, to, out);
}

/* The activation reorders between the caller's layouts and the primitive's,
 * and the scratch they need. */
static dnnl_status_t wk_conv_act_reorders(wk_conv2d_plan *p) {
  dnnl_status_t s = wk_reorder_if(p->d, &p->src_user, &p->m.src, &p->src_in);
  if (!s) s = wk_reorder_if(p->d, &p->m.dst, &p->dst_user, &p->dst_out);
  if (!s && !p->inference) s = wk_reorder_if(p->d, &p->dst_user, &p->m.dst, &p->dst_in);
  if (!s && !p->inference) s = wk_reorder_if(p->d, &p->m.src, &p->src_user, &p->src_out);
  if (!s && (p->src_in || p->dst_out || p->dst_in || p->src_out)) {
    const size_t a = dnnl_memory_desc_get_size(&p->m.src);
    const size_t b = dnnl_memory_desc_get_size(&p->m.dst);
    p->blk_bytes = ((a > b ? a : b) + 63) & ~(size_t)63;
  }
  return s;
}

/* Tries primitives of algorithm `alg` on activations in the layouts src_tag
 * and dst_tag (the caller's reordered in and out); false, with nothing kept
 * and p->m's layouts as they were, when oneDNN has no kernel for them beyond
 * its reference. */
static bool wk_conv_try_layout(wk_conv2d_plan *p, dnnl_alg_kind_t alg, dnnl_format_tag_t src_tag,
                               dnnl_format_tag_t dst_tag, const_dnnl_primitive_attr_t attr) {
  const wk_conv2d_geom *g = &p->g;
  const dnnl_dims_t src = {g->n, g->c, g->h, g->w}, dst = {g->n, g->o, g->oh, g->ow};
  const wk_conv_mds kept = p->m;
  dnnl_status_t s = dnnl_memory_desc_init_by_tag(&p->m.src, 4, src, dnnl_f32, src_tag);
  if (!s) s = dnnl_memory_desc_init_by_tag(&p->m.dst, 4, dst, dnnl_f32, dst_tag);
  if (!s) s = wk_conv_prims(p, alg, attr);
  if (!s && wk_dnnl_is_ref(p->fwd_pd)) s = dnnl_unimplemented;
  if (!s) s = wk_conv_act_reorders(p);
  if (s) {
    wk_conv_prims_free(p);
    p->blk_bytes = 0;
    p->m = kept;
    return false;
  }
  return true;
}

/* Winograd on nChw16c activations (oneDNN's Winograd kernels want them). */
static bool wk_conv_try_winograd(wk_conv2d_plan *p, const_dnnl_primitive_attr_t attr) {
  p->wino = wk_conv_try_layout(p, dnnl_convolution_winograd, dnnl_nChw16c, dnnl_nChw16c, attr);
  return p->wino;
}

/* A convolution of a few input channels (an image's 3) whose output goes on
 * in nChw16c: oneDNN's first-layer kernel reads planar NCHW and writes the
 * blocked layout itself, where its NHWC kernel needs the output reordered
 * afterwards (MobileNetV2's stem at batch 32: 10 ms with the input
 * transposed to NCHW, against 14-15 ms; 0.16 against 0.21-0.30 ms at batch
 * 1). */
static bool wk_conv_try_stem(wk_conv2d_plan *p, const_dnnl_primitive_attr_t attr) {
  return wk_conv_try_layout(p, dnnl_convolution_direct, dnnl_nchw, dnnl_nChw16c, attr);
}

/* oneDNN's direct backward-weights kernel is about 15% faster on nChw16c than
 * on NHWC activations for the strided 3x3 convs (ResNet's downsampling:
 * 20.7 vs 17.7 ms for layer3's at batch 32 on 2 AVX-512 cores), more than the
 * two reorders cost: 3-7% faster in all for layers 2-4 (1x1 convs lose). A
 * fixed rule of the shape, not a timing, so that every run (and every resumed
 * run) computes the same bits.
 * WHISKER_BWDW_BLOCKED=0/1 overrides it (for measuring). */
static bool wk_bwdw_blocked_wanted(const wk_conv2d_geom *g) {
  const char *env = getenv("WHISKER_BWDW_BLOCKED");
  if (env && *env) return strcmp(env, "0") != 0 && g->groups == 1;
  return g->groups == 1 && g->kh == 3 && g->kw == 3 && (g->sh > 1 || g->sw > 1) &&
         g->c >= 64 && g->c % 16 == 0 && g->o % 16 == 0 && wk_conv2d_blocked_native();
}

bool wk_conv2d_blocked_native(void) { return wk_dnnl_avx512(); }

/* Replaces the NHWC backward-weights primitive by one on nChw16c copies, with
 * the reorders that make them; false (nothing changed) when oneDNN offers none
 * but its reference (on AVX2: 2 s a call for ResNet-18's at batch 16). */
static bool wk_conv_try_bwdw_blocked(wk_conv2d_plan *p) {
  const wk_conv2d_geom *g = &p->g;
  const dnnl_dims_t src = {g->n, g->c, g->h, g->w}, dst = {g->n, g->o, g->oh, g->ow};
  wk_conv_mds *m = &p->m;
  dnnl_convolution_desc_t cd;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t prim = NULL, rs = NULL, rd = NULL;
  dnnl_status_t s = dnnl_memory_desc_init_by_tag(&p->bw_src, 4, src, dnnl_f32, dnnl_nChw16c);
  if (!s) s = dnnl_memory_desc_init_by_tag(&p->bw_dst, 4, dst, dnnl_f32, dnnl_nChw16c);
  if (!s)
    s = dnnl_dilated_convolution_backward_weights_desc_init(
        &cd, dnnl_convolution_direct, &p->bw_src, &m->wei_any, p->bias ? &m->bias : NULL,
        &p->bw_dst, m->strides, m->dilates, m->pad_l, m->pad_r);
  if (!s) s = dnnl_primitive_desc_create(&pd, &cd, NULL, p->d->engine, p->fwd_pd);
  if (!s && wk_dnnl_is_ref(pd)) s = dnnl_unimplemented;
  if (!s) s = dnnl_primitive_create(&prim, pd);
  if (!s) s = wk_dnnl_reorder_prim(p->d, &p->src_user, &p->bw_src, &rs);
  if (!s) s = wk_dnnl_reorder_prim(p->d, &p->dst_user, &p->bw_dst, &rd);
  if (s) {
    if (rs) dnnl_primitive_destroy(rs);
    if (rd) dnnl_primitive_destroy(rd);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return false;
  }
  dnnl_primitive_destroy(p->bwdw);
  dnnl_primitive_desc_destroy(p->bwdw_pd);
  p->bwdw = prim;
  p->bwdw_pd = pd;
  p->bw_src_in = rs;
  p->bw_dst_in = rd;
  p->bw_src_bytes = (dnnl_memory_desc_get_size(&p->bw_src) + 63) & ~(size_t)63;
  p->bw_dst_bytes = (dnnl_memory_desc_get_size(&p->bw_dst) + 63) & ~(size_t)63;
  p->bwdw_blk = true;
  return true;
}

static wk_status wk_conv_weight_caches(wk_conv2d_plan *p) {
  const bool own = p->inference;
  WK_TRY(wk_wei_cache_init(p->d, &p->m, dnnl_primitive_desc_query_md(p->fwd_pd,
                           dnnl_query_weights_md, 0), false, own, &p->w_fwd));
  if (p->inference) return WK_OK;
  WK_TRY(wk_wei_cache_init(p->d, &p->m, dnnl_primitive_desc_query_md(p->bwdd_pd,
                           dnnl_query_weights_md, 0), false, own, &p->w_bwdd));
  return wk_wei_cache_init(p->d, &p->m, dnnl_primitive_desc_query_md(p->bwdw_pd,
                           dnnl_query_diff_weights_md, 0), true, own, &p->dw);
}

/* The scratch a call needs: two blocked activations (Winograd) and then the
 * reordered weights or weight gradient of a training plan. */
static wk_status wk_plan_scratch(wk_conv2d_plan *p, char **acts, char **wei) {
  size_t wbytes = p->w_fwd.bytes;
  if (p->w_bwdd.bytes > wbytes) wbytes = p->w_bwdd.bytes;
  if (p->dw.bytes > wbytes) wbytes = p->dw.bytes;
  size_t abytes = 2 * p->blk_bytes; /* 0 unless activations are reordered */
  if (p->bwdw_blk && p->bw_src_bytes + p->bw_dst_bytes > abytes)
    abytes = p->bw_src_bytes + p->bw_dst_bytes;
  if (abytes + wbytes == 0) {
    *acts = *wei = NULL;
    return WK_OK;
  }
  void *s;
  WK_TRY(wk_ctx_scratch(p->ctx, abytes + wbytes, &s));
  *acts = s;
  *wei = (char *)s + abytes;
  return WK_OK;
}

/* sum: the plan adds its result into the caller's y (oneDNN's sum post-op,
 * or whisker's Winograd), which it can only do on y itself: whisker's
 * Winograd, or oneDNN's direct algorithm with the same layout on both sides;
 * else WK_ERR_UNSUPPORTED (no error recorded). */
static wk_status wk_conv2d_plan_make(wk_ctx *ctx, const wk_conv2d_geom *g, bool bias,
                                     bool inference, wk_post_act post, bool sum, bool src_blk,
                                     bool dst_blk, wk_conv2d_plan **out) {
  wk_status st = WK_OK;
  *out = NULL;
  if (ctx->impl != WK_IMPL_CPU) return WK_ERR_UNSUPPORTED;
  WK_ASSERT(inference || !sum);
  WK_ASSERT(inference || (!src_blk && !dst_blk));
  if (sum && src_blk != dst_blk) return WK_ERR_UNSUPPORTED;
  const dnnl_dims_t src_dims = {g->n, g->c, g->h, g->w}, dst_dims = {g->n, g->o, g->oh, g->ow};
  wk_conv2d_plan *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "conv2d plan: out of memory");
  dnnl_primitive_attr_t attr = NULL;
  p->ctx = ctx;
  p->d = ctx->dnnl;
  p->g = *g;
  p->bias = bias;
  p->inference = inference;
  WK_DNNL_CHECK(wk_conv_mds_init(g, &p->m));
  p->src_user = p->m.src;
  p->dst_user = p->m.dst;
  if (src_blk)
    WK_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&p->src_user, 4, src_dims, dnnl_f32, dnnl_nChw16c));
  if (dst_blk)
    WK_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&p->dst_user, 4, dst_dims, dnnl_f32, dnnl_nChw16c));
  int wino_m = 0;
  if (inference && !src_blk && !dst_blk && (st = wk_wino_wanted(g, &wino_m)) != WK_OK) goto done;
  if (wino_m) {
    st = wk_wino_create(g, post, sum, wino_m, 0, &p->own_wino);
    if (st != WK_ERR_UNSUPPORTED) goto done;
    /* it declined the shape: oneDNN's */
  }
  /* oneDNN's Winograd runs on nChw16c copies, so it cannot add into y; where
   * it has a kernel for the shape, it and an add beat direct with the sum */
  if (sum && wk_winograd_enabled(g) && wk_conv_try_winograd(p, NULL)) {
    st = WK_ERR_UNSUPPORTED;
    goto done;
  }
  if ((st = wk_post_ops_attr(post, sum, &attr)) != WK_OK) goto done;
  /* a training plan whose activation Winograd cannot take keeps Winograd, the
   * algorithm it has without the activation, and clips in a second pass */
  bool wino = !sum && wk_winograd_enabled(g) && wk_conv_try_winograd(p, attr);
  if (!wino && !inference && post != WK_POST_NONE && wk_winograd_enabled(g) &&
      wk_conv_try_winograd(p, NULL)) {
    wino = true;
    p->post_after = post;
  }
  if (wino) {
    if (wk_conv_weight_caches(p) == WK_OK) goto done;
    /* e.g. no reorder into the inference Winograd weight format: go direct */
    wk_clear_error();
    wk_conv_prims_free(p);
    wk_wei_cache_free(&p->w_fwd);
    wk_wei_cache_free(&p->w_bwdd);
    wk_wei_cache_free(&p->dw);
    p->wino = false;
    p->blk_bytes = 0;
    p->post_after = WK_POST_NONE;
  }
  /* direct: the primitive in the source's layout (oneDNN's fast kernels want
   * the same layout on both sides) */
  if (src_blk) {
    p->m.src = p->src_user;
    WK_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&p->m.dst, 4, dst_dims, dnnl_f32, dnnl_nChw16c));
  } else {
    WK_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&p->m.src, 4, src_dims, dnnl_f32, dnnl_nhwc));
    WK_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&p->m.dst, 4, dst_dims, dnnl_f32, dnnl_nhwc));
    if (inference && !sum && dst_blk && g->c < 16 && wk_conv_try_stem(p, attr)) {
      st = wk_conv_weight_caches(p);
      goto done;
    }
  }
  WK_DNNL_CHECK(wk_conv_prims(p, dnnl_convolution_direct, attr));
  WK_DNNL_CHECK(wk_conv_act_reorders(p));
  WK_ASSERT(!sum || (!p->src_in && !p->dst_out)); /* the same layout on both sides */
  if (!inference && wk_bwdw_blocked_wanted(g)) (void)wk_conv_try_bwdw_blocked(p);
  st = wk_conv_weight_caches(p);
done:
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (st != WK_OK) {
    wk_conv2d_plan_destroy(p);
    return st;
  }
  *out = p;
  return WK_OK;
}

wk_status wk_conv2d_plan_create(wk_ctx *ctx, const wk_conv2d_geom *g, bool bias, bool inference,
                                wk_post_act post, wk_conv2d_plan **out) {
  return wk_conv2d_plan_make(ctx, g, bias, inference, post, false, false, false, out);
}

wk_status wk_conv2d_plan_create_layout(wk_ctx *ctx, const wk_conv2d_geom *g, bool bias,
                                       bool inference, wk_post_act post, bool src_blk,
                                       bool dst_blk, wk_conv2d_plan **out) {
  return wk_conv2d_plan_make(ctx, g, bias, inference, post, false, src_blk, dst_blk, out);
}

wk_status wk_conv2d_plan_create_sum(wk_ctx *ctx, const wk_conv2d_geom *g, bool bias,
                                    wk_post_act post, bool blk, wk_conv2d_plan **out) {
  return wk_conv2d_plan_make(ctx, g, bias, true, post, true, blk, blk, out);
}

void wk_conv2d_plan_destroy(wk_conv2d_plan *p) {
  if (!p) return;
  wk_wino_destroy(p->own_wino);
  wk_wei_cache_free(&p->w_fwd);
  wk_wei_cache_free(&p->w_bwdd);
  wk_wei_cache_free(&p->dw);
  wk_conv_prims_free(p);
  free(p);
}

const char *wk_conv2d_plan_impl(const wk_conv2d_plan *p) {
  if (p->own_wino) return wk_wino_tile(p->own_wino) == 4 ? "wino_f4x4:whisker" : "wino_f2x2:whisker";
  return wk_dnnl_impl_name(p->fwd_pd);
}

wk_status wk_conv2d_plan_forward(wk_conv2d_plan *p, const float *x, const float *w,
                                 uint64_t w_version, const float *b, float *y) {
  if (p->own_wino) {
    WK_ASSERT((b != NULL) == p->bias);
    return wk_wino_forward(p->own_wino, p->ctx, x, w, w_version, b, y);
  }
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(p->fwd_pd, dnnl_query_weights_md, 0);
  const void *wdata;
  WK_ASSERT((b != NULL) == p->bias);
  char *scratch, *wscratch;
  WK_TRY(wk_plan_scratch(p, &scratch, &wscratch));
  WK_TRY(wk_wei_get(p->d, &p->m, wmd, &p->w_fwd, w, w_version, wscratch, &wdata));
  const void *src = x;
  void *dst = y;
  if (p->src_in) {
    WK_TRY(wk_dnnl_reorder_run(p->d, p->src_in, &p->src_user, x, &p->m.src, scratch));
    src = scratch;
  }
  if (p->dst_out) dst = scratch + p->blk_bytes;
  const int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
  const dnnl_memory_desc_t *mds[4] = {&p->m.src, wmd, &p->m.dst, &p->m.bias};
  const void *ptrs[4] = {src, wdata, dst, b};
  WK_TRY(wk_dnnl_exec(p->d, p->fwd, b ? 4 : 3, kinds, mds, ptrs));
  if (p->dst_out) WK_TRY(wk_dnnl_reorder_run(p->d, p->dst_out, &p->m.dst, dst, &p->dst_user, y));
  if (p->post_after != WK_POST_NONE) {
    const int64_t n = p->g.n * p->g.oh * p->g.ow * p->g.o;
    wk_tensor t = wk_tensor_view(y, WK_F32, 1, &n);
    return wk_act_forward(p->ctx, p->post_after == WK_POST_RELU ? WK_ACT_RELU : WK_ACT_RELU6, &t,
                          &t);
  }
  return WK_OK;
}

wk_status wk_conv2d_plan_backward(wk_conv2d_plan *p, const float *x, const float *w,
                                  uint64_t w_version, const float *dy, float *dx, float *dw,
                                  float *db) {
  WK_ASSERT(!p->inference);
  /* Winograd: dy and dx/x go through the two halves of the scratch */
  char *scratch, *wscratch;
  WK_TRY(wk_plan_scratch(p, &scratch, &wscratch));
  const void *dy_p = dy, *x_p = x;
  void *dx_p = dx;
  if (p->wino && (dx || dw)) {
    WK_TRY(wk_dnnl_reorder_run(p->d, p->dst_in, &p->dst_user, dy, &p->m.dst,
                               scratch + p->blk_bytes));
    dy_p = scratch + p->blk_bytes;
    dx_p = scratch;
  }
  if (dx) {
    const dnnl_memory_desc_t *wmd =
        dnnl_primitive_desc_query_md(p->bwdd_pd, dnnl_query_weights_md, 0);
    const void *wdata;
    WK_TRY(wk_wei_get(p->d, &p->m, wmd, &p->w_bwdd, w, w_version, wscratch, &wdata));
    const int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
    const dnnl_memory_desc_t *mds[3] = {&p->m.dst, wmd, &p->m.src};
    const void *ptrs[3] = {dy_p, wdata, dx_p};
    WK_TRY(wk_dnnl_exec(p->d, p->bwdd, 3, kinds, mds, ptrs));
    if (p->wino) WK_TRY(wk_dnnl_reorder_run(p->d, p->src_out, &p->m.src, dx_p, &p->src_user, dx));
  }
  if (dw) {
    const dnnl_memory_desc_t *src_md = &p->m.src, *dst_md = &p->m.dst;
    if (p->wino) {
      WK_TRY(wk_dnnl_reorder_run(p->d, p->src_in, &p->src_user, x, &p->m.src, scratch));
      x_p = scratch;
    } else if (p->bwdw_blk) {
      WK_TRY(wk_dnnl_reorder_run(p->d, p->bw_src_in, &p->src_user, x, &p->bw_src, scratch));
      WK_TRY(wk_dnnl_reorder_run(p->d, p->bw_dst_in, &p->dst_user, dy, &p->bw_dst,
                                 scratch + p->bw_src_bytes));
      x_p = scratch;
      dy_p = scratch + p->bw_src_bytes;
      src_md = &p->bw_src;
      dst_md = &p->bw_dst;
    }
    /* the bias gradient needs a bias-enabled primitive; a plan without bias
     * has none to give */
    const dnnl_memory_desc_t *wmd =
        dnnl_primitive_desc_query_md(p->bwdw_pd, dnnl_query_diff_weights_md, 0);
    float *db_here = p->bias ? db : NULL;
    float *db_tmp = NULL;
    if (p->bias && !db) {
      db_tmp = malloc((size_t)p->g.o * sizeof *db_tmp);
      if (!db_tmp) return wk_fail(WK_ERR_NOMEM, "conv2d backward: out of memory");
      db_here = db_tmp;
    }
    const int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS,
                          DNNL_ARG_DIFF_BIAS};
    const dnnl_memory_desc_t *mds[4] = {src_md, dst_md, wmd, &p->m.bias};
    void *dw_buf = p->dw.buf ? p->dw.buf : wscratch;
    const void *ptrs[4] = {x_p, dy_p, p->dw.reorder ? dw_buf : (void *)dw, db_here};
    wk_status s = wk_dnnl_exec(p->d, p->bwdw, p->bias ? 4 : 3, kinds, mds, ptrs);
    free(db_tmp);
    WK_TRY(s);
    if (p->dw.reorder) {
      WK_TRY(wk_dnnl_reorder_run(p->d, p->dw.reorder, wmd, dw_buf, &p->m.wei_user, dw));
    }
    db = p->bias ? NULL : db; /* done, unless the plan had no bias */
  }
  if (db) {
    /* only the bias gradient (or a plan without bias): a column sum */
    wk_conv2d_backward_ref_f32(&p->g, x, w, dy, NULL, NULL, db);
  }
  return WK_OK;
}

/* ---------------------------------------------------------------- one-off calls */

wk_status wk_conv2d_forward_dnnl(wk_ctx *ctx, const wk_conv2d_geom *g, const float *x,
                                 const float *w, const float *b, float *y) {
  wk_conv2d_plan *p;
  WK_TRY(wk_conv2d_plan_create(ctx, g, b != NULL, false, WK_POST_NONE, &p));
  wk_status st = wk_conv2d_plan_forward(p, x, w, 0, b, y);
  wk_conv2d_plan_destroy(p);
  return st;
}

wk_status wk_conv2d_backward_dnnl(wk_ctx *ctx, const wk_conv2d_geom *g, const float *x,
                                  const float *w, const float *dy, float *dx, float *dw,
                                  float *db) {
  if (!dx && !dw) {
    if (db) wk_conv2d_backward_ref_f32(g, x, w, dy, NULL, NULL, db);
    return WK_OK;
  }
  wk_conv2d_plan *p;
  WK_TRY(wk_conv2d_plan_create(ctx, g, db != NULL, false, WK_POST_NONE, &p));
  wk_status st = wk_conv2d_plan_backward(p, x, w, 0, dy, dx, dw, db);
  wk_conv2d_plan_destroy(p);
  return st;
}
