/* zoo.c - the built-in architectures. ResNet and MobileNetV2 follow
 * torchvision node for node, with the same parameter names, so weights move
 * between the two unchanged (up to layout, see modelio/). */
#include "nn/zoo.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const wk_zoo_arch_names[] = {"smallcnn", "resnet18", "resnet34", "resnet50",
                                                "mobilenetv2", NULL};

const char *const *wk_zoo_names(void) { return wk_zoo_arch_names; }

bool wk_zoo_has(const char *name) {
  for (const char *const *a = wk_zoo_arch_names; *a; a++)
    if (!strcmp(*a, name)) return true;
  return false;
}

const char *wk_zoo_names_text(void) {
  static _Thread_local char text[128]; /* made from the list, so the two cannot drift */
  size_t n = 0;
  for (const char *const *a = wk_zoo_arch_names; *a; a++)
    n += (size_t)snprintf(text + n, sizeof text - n, "%s%s", n ? ", " : "", *a);
  return text;
}

wk_arch_opts wk_arch_opts_default(int num_classes) {
  return (wk_arch_opts){.num_classes = num_classes, .in_h = 224, .in_w = 224, .width = 1.0f};
}

/* conv (no bias) -> batchnorm -> activation, named prefix.{conv,bn,act}; the
 * names of conv and batchnorm are given (torchvision's differ per model). */
static int wk_cba(wk_net *net, int x, const char *conv, const char *bn, const char *act_name,
                  int out, int k, int stride, int groups, int act) {
  wk_conv2d_params p = wk_conv2d_params_make(stride, (k - 1) / 2, groups);
  x = wk_net_conv(net, conv, x, out, k, k, &p, false);
  x = wk_net_batchnorm(net, bn, x, 1e-5f, 0.1f);
  if (act >= 0) x = wk_net_act(net, act_name, x, (wk_act)act);
  return x;
}

/* ------------------------------------------------------------------ smallcnn */

static int wk_build_smallcnn(wk_net *net, const wk_arch_opts *o) {
  int x = 0;
  const int widths[4] = {32, 64, 128, 256};
  char c[32], b[32], a[32];
  for (int i = 0; i < 4; i++) {
    snprintf(c, sizeof c, "conv%d", i + 1);
    snprintf(b, sizeof b, "bn%d", i + 1);
    snprintf(a, sizeof a, "relu%d", i + 1);
    x = wk_cba(net, x, c, b, a, widths[i], 3, 2, 1, WK_ACT_RELU);
  }
  x = wk_net_global_avgpool(net, "avgpool", x);
  return wk_net_linear(net, "fc", x, o->num_classes, true);
}

/* ------------------------------------------------------------------ resnet */

static int wk_resnet_block(wk_net *net, int x, const char *pfx, int inplanes, int planes,
                           int stride, bool bottleneck) {
  char n1[WK_NODE_NAME_MAX], n2[WK_NODE_NAME_MAX], n3[WK_NODE_NAME_MAX];
  const int expansion = bottleneck ? 4 : 1, out_ch = planes * expansion;
  int y = x, identity = x;
  if (bottleneck) {
    const char *convs[3] = {"conv1", "conv2", "conv3"}, *bns[3] = {"bn1", "bn2", "bn3"};
    const int outs[3] = {planes, planes, out_ch}, ks[3] = {1, 3, 1}, ss[3] = {1, stride, 1};
    for (int i = 0; i < 3; i++) {
      snprintf(n1, sizeof n1, "%s.%s", pfx, convs[i]);
      snprintf(n2, sizeof n2, "%s.%s", pfx, bns[i]);
      snprintf(n3, sizeof n3, "%s.relu%d", pfx, i + 1);
      y = wk_cba(net, y, n1, n2, n3, outs[i], ks[i], ss[i], 1, i < 2 ? WK_ACT_RELU : -1);
    }
  } else {
    snprintf(n1, sizeof n1, "%s.conv1", pfx);
    snprintf(n2, sizeof n2, "%s.bn1", pfx);
    snprintf(n3, sizeof n3, "%s.relu1", pfx);
    y = wk_cba(net, y, n1, n2, n3, planes, 3, stride, 1, WK_ACT_RELU);
    snprintf(n1, sizeof n1, "%s.conv2", pfx);
    snprintf(n2, sizeof n2, "%s.bn2", pfx);
    y = wk_cba(net, y, n1, n2, NULL, planes, 3, 1, 1, -1);
  }
  if (stride != 1 || inplanes != out_ch) {
    snprintf(n1, sizeof n1, "%s.downsample.0", pfx);
    snprintf(n2, sizeof n2, "%s.downsample.1", pfx);
    identity = wk_cba(net, x, n1, n2, NULL, out_ch, 1, stride, 1, -1);
  }
  snprintf(n1, sizeof n1, "%s.add", pfx);
  snprintf(n3, sizeof n3, "%s.relu", pfx);
  y = wk_net_add(net, n1, y, identity);
  return wk_net_act(net, n3, y, WK_ACT_RELU);
}

static int wk_build_resnet(wk_net *net, const wk_arch_opts *o, const int blocks[4],
                           bool bottleneck) {
  wk_conv2d_params p = wk_conv2d_params_make(2, 3, 1);
  int x = wk_net_conv(net, "conv1", 0, 64, 7, 7, &p, false);
  x = wk_net_batchnorm(net, "bn1", x, 1e-5f, 0.1f);
  x = wk_net_act(net, "relu", x, WK_ACT_RELU);
  wk_pool2d_params mp = wk_pool2d_params_make(3, 2, 1);
  x = wk_net_maxpool(net, "maxpool", x, &mp);
  int inplanes = 64;
  const int expansion = bottleneck ? 4 : 1;
  for (int l = 0; l < 4; l++) {
    const int planes = 64 << l;
    for (int b = 0; b < blocks[l]; b++) {
      char pfx[32];
      snprintf(pfx, sizeof pfx, "layer%d.%d", l + 1, b);
      x = wk_resnet_block(net, x, pfx, inplanes, planes, b == 0 && l > 0 ? 2 : 1, bottleneck);
      inplanes = planes * expansion;
    }
  }
  x = wk_net_global_avgpool(net, "avgpool", x);
  return wk_net_linear(net, "fc", x, o->num_classes, true);
}

/* ------------------------------------------------------------------ mobilenetv2 */

/* torchvision's _make_divisible: round to a multiple of `divisor`, never
 * dropping more than 10%. */
static int wk_make_divisible(double v, int divisor) {
  int nv = (int)(v + divisor / 2.0) / divisor * divisor;
  if (nv < divisor) nv = divisor;
  if (nv < 0.9 * v) nv += divisor;
  return nv;
}

static int wk_build_mobilenetv2(wk_net *net, const wk_arch_opts *o) {
  static const int settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                     {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  const double width = o->width;
  int in_ch = wk_make_divisible(32 * width, 8);
  const int last_ch = wk_make_divisible(1280 * (width > 1.0 ? width : 1.0), 8);
  int x = wk_cba(net, 0, "features.0.0", "features.0.1", "features.0.2", in_ch, 3, 2, 1,
                 WK_ACT_RELU6);
  int f = 1;
  char c[WK_NODE_NAME_MAX], b[WK_NODE_NAME_MAX], a[WK_NODE_NAME_MAX];
  for (int s = 0; s < 7; s++) {
    const int t = settings[s][0], out_ch = wk_make_divisible(settings[s][1] * width, 8);
    for (int i = 0; i < settings[s][2]; i++, f++) {
      const int stride = i == 0 ? settings[s][3] : 1;
      const int hidden = (int)lround(in_ch * (double)t);
      int y = x, li = 0;
      if (t != 1) {
        snprintf(c, sizeof c, "features.%d.conv.0.0", f);
        snprintf(b, sizeof b, "features.%d.conv.0.1", f);
        snprintf(a, sizeof a, "features.%d.conv.0.2", f);
        y = wk_cba(net, y, c, b, a, hidden, 1, 1, 1, WK_ACT_RELU6);
        li = 1;
      }
      snprintf(c, sizeof c, "features.%d.conv.%d.0", f, li);
      snprintf(b, sizeof b, "features.%d.conv.%d.1", f, li);
      snprintf(a, sizeof a, "features.%d.conv.%d.2", f, li);
      y = wk_cba(net, y, c, b, a, hidden, 3, stride, hidden, WK_ACT_RELU6);
      snprintf(c, sizeof c, "features.%d.conv.%d", f, li + 1);
      snprintf(b, sizeof b, "features.%d.conv.%d", f, li + 2);
      y = wk_cba(net, y, c, b, NULL, out_ch, 1, 1, 1, -1);
      if (stride == 1 && in_ch == out_ch) {
        snprintf(a, sizeof a, "features.%d.add", f);
        y = wk_net_add(net, a, x, y);
      }
      x = y;
      in_ch = out_ch;
    }
  }
  snprintf(c, sizeof c, "features.%d.0", f);
  snprintf(b, sizeof b, "features.%d.1", f);
  snprintf(a, sizeof a, "features.%d.2", f);
  x = wk_cba(net, x, c, b, a, last_ch, 1, 1, 1, WK_ACT_RELU6);
  x = wk_net_global_avgpool(net, "avgpool", x);
  x = wk_net_dropout(net, "classifier.0", x, 0.2f);
  x = wk_net_linear(net, "classifier.1", x, o->num_classes, true);
  wk_net_set_init(net, WK_INIT_NORMAL_001);
  return x;
}

wk_status wk_zoo_build_graph(wk_ctx *ctx, const char *arch, const wk_arch_opts *o,
                             wk_net **out) {
  *out = NULL;
  if (o->num_classes < 1 || o->num_classes > 1000000)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: %d classes (need 1 to 1000000)", arch,
                   o->num_classes);
  if (!(o->width > 0.0f && o->width <= 4.0f))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: width multiplier %g out of (0, 4]", arch,
                   (double)o->width);
  wk_net *net;
  WK_TRY(wk_net_create(ctx, o->in_h, o->in_w, 3, &net));
  if (strcmp(arch, "smallcnn") == 0) {
    wk_build_smallcnn(net, o);
  } else if (strcmp(arch, "resnet18") == 0) {
    wk_build_resnet(net, o, (const int[4]){2, 2, 2, 2}, false);
  } else if (strcmp(arch, "resnet34") == 0) {
    wk_build_resnet(net, o, (const int[4]){3, 4, 6, 3}, false);
  } else if (strcmp(arch, "resnet50") == 0) {
    wk_build_resnet(net, o, (const int[4]){3, 4, 6, 3}, true);
  } else if (strcmp(arch, "mobilenetv2") == 0) {
    wk_build_mobilenetv2(net, o);
  } else {
    wk_net_destroy(net);
    return wk_fail(WK_ERR_INVALID_ARG, "unknown architecture '%s' (%s)", arch,
                   wk_zoo_names_text());
  }
  wk_status s = wk_net_build_error(net);
  if (s != WK_OK) {
    wk_net_destroy(net);
    return wk_fail(s, "%s: %s", arch, wk_last_error());
  }
  *out = net;
  return WK_OK;
}

wk_status wk_zoo_build(wk_ctx *ctx, const char *arch, const wk_arch_opts *o, uint64_t seed,
                       wk_net **out) {
  wk_net *net;
  WK_TRY(wk_zoo_build_graph(ctx, arch, o, &net));
  wk_status s = wk_net_finalize(net, seed);
  if (s != WK_OK) {
    wk_net_destroy(net);
    return wk_fail(s, "%s: %s", arch, wk_last_error());
  }
  *out = net;
  return WK_OK;
}
