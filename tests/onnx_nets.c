/* onnx_nets.c - see onnx_nets.h. */
#include "onnx_nets.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "nn/zoo.h"
#include "test_util.h"

const char *const wkt_onnx_archs[WKT_ONNX_N_ARCHS] = {"custom", "smallcnn", "resnet18",
                                                      "mobilenetv2"};

int wkt_onnx_px(const char *arch) { return strcmp(arch, "custom") == 0 ? 20 : 64; }

static wk_net *wkt_custom(wk_ctx *ctx, int px, int classes) {
  wk_net *net;
  ck_assert_int_eq(wk_net_create(ctx, px, px, 3, &net), WK_OK);
  wk_conv2d_params p = {.stride_h = 1, .stride_w = 1, .pad_top = 1, .pad_left = 1,
                        .pad_bottom = 1, .pad_right = 1, .dilation_h = 1, .dilation_w = 1,
                        .groups = 1};
  int x = wk_net_conv(net, "c1", 0, 8, 3, 3, &p, true);
  x = wk_net_batchnorm(net, "bn1", x, 1e-5f, 0.1f);
  x = wk_net_act(net, "a1", x, WK_ACT_RELU6);
  wk_pool2d_params mp = wk_pool2d_params_make(3, 2, 1);
  const int pooled = wk_net_maxpool(net, "mp", x, &mp);
  p.groups = 8;
  x = wk_net_conv(net, "dw", pooled, 8, 3, 3, &p, false);
  x = wk_net_act(net, "a2", x, WK_ACT_RELU);
  x = wk_net_add(net, "res", x, pooled);
  wk_pool2d_params ap = wk_pool2d_params_make(3, 2, 1);
  ap.count_include_pad = true;
  x = wk_net_avgpool(net, "ap", x, &ap);
  wk_conv2d_params q = {.stride_h = 1, .stride_w = 2, .pad_top = 0, .pad_left = 1,
                        .pad_bottom = 0, .pad_right = 1, .dilation_h = 1, .dilation_w = 1,
                        .groups = 1};
  x = wk_net_conv(net, "c2", x, 6, 1, 3, &q, true);
  x = wk_net_flatten(net, "flat", x);
  x = wk_net_dropout(net, "drop", x, 0.2f);
  x = wk_net_linear(net, "fc1", x, 16, true);
  x = wk_net_batchnorm(net, "bn2", x, 1e-3f, 0.1f);
  x = wk_net_act(net, "a3", x, WK_ACT_RELU);
  wk_net_linear(net, "fc2", x, classes, false);
  return net;
}

wk_net *wkt_onnx_net(wk_ctx *ctx, const char *arch, int px, int classes, uint64_t seed) {
  wk_net *net;
  if (strcmp(arch, "custom") == 0) {
    net = wkt_custom(ctx, px, classes);
    ck_assert_msg(wk_net_finalize(net, seed) == WK_OK, "%s", wk_last_error());
  } else {
    wk_arch_opts o = wk_arch_opts_default(classes);
    o.in_h = o.in_w = px;
    ck_assert_msg(wk_zoo_build(ctx, arch, &o, seed, &net) == WK_OK, "%s", wk_last_error());
  }
  size_t np, nb;
  const wk_param *params = wk_net_params(net, &np);
  const wk_param *bufs = wk_net_buffers(net, &nb);
  for (int i = 0; i < wk_net_n_nodes(net); i++) {
    const wk_node *nd = wk_net_node(net, i);
    if (nd->op != WK_NODE_BATCHNORM) continue;
    const size_t c = params[nd->param[0]].numel;
    wkt_fill_f32(wk_net_weights(net) + params[nd->param[0]].offset, (int64_t)c, seed + 4 * i, 0.5f,
                 1.5f);
    wkt_fill_f32(wk_net_weights(net) + params[nd->param[1]].offset, (int64_t)c, seed + 4 * i + 1,
                 -0.2f, 0.2f);
    wkt_fill_f32(wk_net_buffer_data(net) + bufs[nd->buffer[0]].offset, (int64_t)c,
                 seed + 4 * i + 2, -0.2f, 0.2f);
    wkt_fill_f32(wk_net_buffer_data(net) + bufs[nd->buffer[1]].offset, (int64_t)c,
                 seed + 4 * i + 3, 0.5f, 1.5f);
  }
  wk_net_weights_changed(net);
  return net;
}

wk_tensor wkt_onnx_batch(int64_t n, int px, uint64_t seed, float **nchw) {
  const int64_t shape[4] = {n, px, px, 3};
  wk_tensor x = wkt_tensor(WK_F32, 4, shape);
  wkt_fill_f32(x.data, wk_tensor_numel(&x), seed, -2.0f, 2.0f);
  float *d = malloc((size_t)wk_tensor_numel(&x) * sizeof *d);
  ck_assert_ptr_nonnull(d);
  const float *s = x.data;
  const int64_t hw = (int64_t)px * px;
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < hw; i++)
      for (int64_t c = 0; c < 3; c++) d[(b * 3 + c) * hw + i] = s[(b * hw + i) * 3 + c];
  *nchw = d;
  return x;
}
