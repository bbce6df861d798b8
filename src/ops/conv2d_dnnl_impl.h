/* conv2d_dnnl_impl.h - what the oneDNN convolution plans share: memory
 * descriptors of one convolution and the cache of its reordered weights
 * (conv2d_dnnl.c, conv2d_pwdw.c). Not part of the ops API. */
#ifndef WK_OPS_CONV2D_DNNL_IMPL_H
#define WK_OPS_CONV2D_DNNL_IMPL_H

#include "ops/dnnl_util.h"
#include "ops/ops.h"

typedef struct wk_conv_mds {
  dnnl_memory_desc_t src, dst, wei_user, wei_any, bias;
  dnnl_dims_t strides, dilates, pad_l, pad_r;
} wk_conv_mds;

/* A cached reorder from or to the user's OHWI weights. Inference plans keep
 * the reordered weights in their own buffer until the version changes;
 * training plans (whose weights change every step) reorder into the
 * context's scratch on every call, so no plan holds a copy of its weights. */
typedef struct wk_wei_cache {
  dnnl_primitive_t reorder; /* NULL when the layouts are the same */
  void *buf;                /* the weights in the primitive's layout; NULL = scratch */
  size_t bytes;
  uint64_t version;         /* of the weights in buf; 0 = none */
} wk_wei_cache;

/* NHWC activations, the user's OHWI (GOHWI when grouped) weights and `any`,
 * bias, strides, dilations and padding of geometry g. */
dnnl_status_t wk_conv_mds_init(const wk_conv2d_geom *g, wk_conv_mds *m);

/* Prepares a cache converting between the user layout m->wei_user and `md`
 * (to_user: from md to the user's layout, for gradients); own: the cache
 * keeps the converted weights in its own buffer. */
wk_status wk_wei_cache_init(wk_dnnl *d, const wk_conv_mds *m, const dnnl_memory_desc_t *md,
                            bool to_user, bool own, wk_wei_cache *c);
void wk_wei_cache_free(wk_wei_cache *c);

/* The user's weights w in the layout `md` of cache c, reordered if `version`
 * differs from the cached one (a scratch-backed cache, buf NULL, reorders into
 * `scratch` every time). */
wk_status wk_wei_get(wk_dnnl *d, const wk_conv_mds *m, const dnnl_memory_desc_t *md,
                     wk_wei_cache *c, const float *w, uint64_t version, void *scratch,
                     const void **out);

#endif
