/* finetune.c - a new head on a trained body (see finetune.h). */
#include "train/finetune.h"

#include <math.h>
#include <string.h>

/* Copies every parameter and buffer of dst that src has under the same name
 * and size; the head (node `skip`) keeps its fresh initialisation. */
static wk_status wk_copy_by_name(wk_net *dst, wk_net *src, int skip, const char *path) {
  size_t n;
  const wk_param *dp = wk_net_params(dst, &n);
  const wk_param *sp = wk_net_params(src, &(size_t){0});
  const wk_node *head = wk_net_node(dst, skip);
  for (size_t i = 0; i < n; i++) {
    if ((int)i == head->param[0] || (int)i == head->param[1]) continue;
    const int j = wk_net_find_param(src, dp[i].name);
    if (j < 0 || sp[j].numel != dp[i].numel)
      return wk_fail(WK_ERR_FORMAT, "%s: parameter %s does not fit the rebuilt network", path,
                     dp[i].name);
    memcpy(wk_net_weights(dst) + dp[i].offset, wk_net_weights(src) + sp[j].offset,
           dp[i].numel * sizeof(float));
  }
  const wk_param *db = wk_net_buffers(dst, &n);
  const wk_param *sb = wk_net_buffers(src, &(size_t){0});
  for (size_t i = 0; i < n; i++) {
    const int j = wk_net_find_buffer(src, db[i].name);
    if (j < 0 || sb[j].numel != db[i].numel)
      return wk_fail(WK_ERR_FORMAT, "%s: buffer %s does not fit the rebuilt network", path,
                     db[i].name);
    memcpy(wk_net_buffer_data(dst) + db[i].offset, wk_net_buffer_data(src) + sb[j].offset,
           db[i].numel * sizeof(float));
  }
  wk_net_set_bn_batches(dst, wk_net_bn_batches(src));
  wk_net_weights_changed(dst);
  return WK_OK;
}

static wk_status wk_rebuild(wk_ctx *ctx, wk_net *src, int n_classes, int size, uint64_t seed,
                            const char *path, wk_net **out) {
  const int nn = wk_net_n_nodes(src);
  const wk_node *last = wk_net_node(src, nn - 1);
  if (last->op != WK_NODE_LINEAR)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: the last layer '%s' is a %s, not a linear "
                   "classifier; fine-tuning replaces a linear head", path, last->name,
                   wk_node_op_name(last->op));
  int h, w, c;
  wk_net_input_shape(src, &h, &w, &c);
  wk_net *net;
  WK_TRY(wk_net_create(ctx, size > 0 ? size : h, size > 0 ? size : w, c, &net));
  for (int i = 0; i < nn; i++) {
    wk_node nd = *wk_net_node(src, i);
    if (i == nn - 1) {
      /* normal(0, 0.01), bias 0: small logits at the start whatever the body's
       * feature scale (the node's own init may be a conv's, e.g. from ONNX) */
      nd.out_ch = n_classes;
      nd.init = WK_INIT_NORMAL_001;
    }
    wk_net_add_node(net, &nd);
  }
  wk_status s = wk_net_finalize(net, seed);
  if (s == WK_OK) s = wk_copy_by_name(net, src, nn - 1, path);
  if (s != WK_OK) {
    wk_net_destroy(net);
    return s;
  }
  *out = net;
  return WK_OK;
}

wk_status wk_finetune_from_net(wk_ctx *ctx, wk_net *src, const wk_model_meta *sm,
                               const char *path, int n_classes, int size, uint64_t seed,
                               wk_net **net, wk_model_meta *meta) {
  if (n_classes < 2 || n_classes > WK_MODEL_MAX_CLASSES)
    return wk_fail(WK_ERR_INVALID_ARG, "fine-tuning needs 2 to %d classes, not %d",
                   WK_MODEL_MAX_CLASSES, n_classes);
  WK_TRY(wk_rebuild(ctx, src, n_classes, size, seed, path, net));
  int h, w, c;
  wk_net_input_shape(*net, &h, &w, &c);
  const wk_status s = wk_model_meta_init(meta, sm->arch, n_classes, h);
  if (s != WK_OK) {
    wk_net_destroy(*net);
    *net = NULL;
    return s;
  }
  meta->width = sm->width;
  /* the model's normalisation; its resize/crop ratio at the new size */
  const int crop = meta->pre.crop_px;
  meta->pre = sm->pre;
  meta->pre.crop_px = crop;
  if (sm->pre.crop_px > 0)
    meta->pre.resize_px = (int)lround((double)sm->pre.resize_px * h / sm->pre.crop_px);
  return WK_OK;
}

wk_status wk_finetune_from(wk_ctx *ctx, const char *path, int n_classes, int size,
                           uint64_t seed, wk_net **net, wk_model_meta *meta) {
  if (n_classes < 2 || n_classes > WK_MODEL_MAX_CLASSES)
    return wk_fail(WK_ERR_INVALID_ARG, "fine-tuning needs 2 to %d classes, not %d",
                   WK_MODEL_MAX_CLASSES, n_classes);
  wk_net *src;
  wk_model_meta sm;
  WK_TRY(wk_model_load(ctx, path, &src, &sm));
  const wk_status s = wk_finetune_from_net(ctx, src, &sm, path, n_classes, size, seed, net, meta);
  wk_net_destroy(src);
  wk_model_meta_free(&sm);
  return s;
}

/* Every parameter belongs to a node, so freezing by the empty prefix is every
 * node's; one call re-derives which values need gradients once, where a call
 * per node re-derived it per node (quadratic in the node count). */
void wk_finetune_freeze_body(wk_net *net) {
  const int nn = wk_net_n_nodes(net);
  wk_net_set_frozen(net, "", true);
  if (nn > 0) wk_net_set_node_frozen(net, nn - 1, false);
}

void wk_finetune_unfreeze(wk_net *net, double min_scale) {
  const int nn = wk_net_n_nodes(net);
  int n_layers = 0, k = 0;
  for (int i = 0; i < nn; i++) n_layers += wk_net_node(net, i)->param[0] >= 0;
  wk_net_set_frozen(net, "", false);
  for (int i = 0; i < nn; i++) {
    if (wk_net_node(net, i)->param[0] < 0) continue;
    const double t = n_layers > 1 ? (double)k / (n_layers - 1) : 1.0;
    wk_net_set_node_lr_scale(net, i, (float)pow(min_scale, 1.0 - t));
    k++;
  }
}
