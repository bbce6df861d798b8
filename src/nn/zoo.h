/* zoo.h - built-in architectures, each for any number of classes:
 *   smallcnn     four conv-bn-relu stages (stride 2), global pool, linear: fast,
 *                for small images and tests
 *   resnet18/34  torchvision's ResNet with basic blocks
 *   resnet50     torchvision's ResNet with bottleneck blocks (V1.5: stride in the 3x3)
 *   mobilenetv2  torchvision's MobileNetV2 with a width multiplier
 * Parameter names, counts and initialisation schemes match torchvision's. */
#ifndef WK_ZOO_H
#define WK_ZOO_H

#include "nn/net.h"

typedef struct wk_arch_opts {
  int num_classes;
  int in_h, in_w; /* input size in pixels (224 x 224 by default) */
  float width;    /* mobilenetv2 width multiplier (1.0 by default; ignored by the others) */
} wk_arch_opts;

wk_arch_opts wk_arch_opts_default(int num_classes);

/* NULL-terminated list of the names wk_zoo_build accepts. */
const char *const *wk_zoo_names(void);
/* Whether name is one of them. */
bool wk_zoo_has(const char *name);
/* The names as "smallcnn, resnet18, ...", for messages (per thread; valid
 * until the thread's next call). */
const char *wk_zoo_names_text(void);

/* Builds the graph only (not finalized: no parameter memory yet). */
wk_status wk_zoo_build_graph(wk_ctx *ctx, const char *arch, const wk_arch_opts *opts,
                             wk_net **out);
/* Builds, finalizes and initialises (from `seed`) a network. */
wk_status wk_zoo_build(wk_ctx *ctx, const char *arch, const wk_arch_opts *opts, uint64_t seed,
                       wk_net **out);

#endif
