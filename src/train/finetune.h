/* finetune.h - starting a training run from a trained model.
 *
 * Fine-tuning keeps a trained network's body and gives it a new head for the
 * new classes: the model's last node must be a linear classifier, which is
 * replaced by a freshly initialised one with `n_classes` outputs. Training
 * then runs in two phases (train/fit.c drives them):
 *   1. the head alone, the body frozen (its batchnorms keep their running
 *      statistics, see nn/net.h), for a few epochs;
 *   2. everything, with discriminative learning rates: the head at the full
 *      rate, earlier layers geometrically lower down to `min_scale` of it for
 *      the first layer (fast.ai's slice(lr/100, lr) with min_scale 0.01).
 * The input size may differ from the model's (the body is convolutional);
 * preprocessing (mean, std, resize/crop ratio) is kept from the model. The new
 * head starts at normal(0, 0.01) with zero bias (torchvision MobileNetV2's). */
#ifndef WK_TRAIN_FINETUNE_H
#define WK_TRAIN_FINETUNE_H

#include "modelio/model.h"
#include "nn/net.h"

/* Loads `path` and builds the network with a new head for n_classes at input
 * size `size` (0: the model's own). meta gets the model's architecture and
 * preprocessing with class names "0".."k-1" (the caller names them). */
wk_status wk_finetune_from(wk_ctx *ctx, const char *path, int n_classes, int size,
                           uint64_t seed, wk_net **net, wk_model_meta *meta);

/* The same from a model loaded already (src and sm stay the caller's; path
 * names it in messages): a run loads its base model before it reads the
 * data, to refuse a wrong --from first. */
wk_status wk_finetune_from_net(wk_ctx *ctx, wk_net *src, const wk_model_meta *sm,
                               const char *path, int n_classes, int size, uint64_t seed,
                               wk_net **net, wk_model_meta *meta);

/* Phase 1: every node but the last frozen. */
void wk_finetune_freeze_body(wk_net *net);
/* Phase 2: all trainable, learning-rate scales from min_scale (first layer
 * with parameters) up to 1 (the head), geometric in layer order. */
void wk_finetune_unfreeze(wk_net *net, double min_scale);

#endif
