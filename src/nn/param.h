/* param.h - named parameters laid out in one contiguous arena.
 *
 * A network keeps every trainable value in one float arena and every gradient
 * in a second arena of the same size and layout, so one call can clip, reduce
 * or save them all. A wk_param describes one tensor of the arena: its name
 * (PyTorch style, "layer1.0.conv1.weight"), shape and element offset.
 * Non-trainable state (batchnorm running statistics) lives in a separate
 * buffer arena described by the same struct. */
#ifndef WK_PARAM_H
#define WK_PARAM_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#define WK_PARAM_NAME_MAX 96

enum {
  WK_PARAM_FROZEN = 1u << 0,   /* receives no update (fine-tuning a body) */
  WK_PARAM_NO_DECAY = 1u << 1, /* a bias or normalisation parameter: optimizers
                                  may skip weight decay on it */
};

typedef struct wk_param {
  char name[WK_PARAM_NAME_MAX];
  int ndim;
  int64_t shape[WK_MAX_DIMS];
  size_t offset; /* first element, in elements from the start of the arena */
  size_t numel;
  uint32_t flags;  /* WK_PARAM_* */
  float lr_scale;  /* multiplies the learning rate (discriminative rates); 1 by default */
} wk_param;

#endif
