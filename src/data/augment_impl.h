/* augment_impl.h - the pieces of augment.c that live in their own files. */
#ifndef WK_AUGMENT_IMPL_H
#define WK_AUGMENT_IMPL_H

#include "data/augment.h"

struct wk_augmenter {
  wk_augment_cfg cfg;
  wk_decoder *dec;
  wk_bytes file;
  wk_image img;          /* the decoded picture */
  wk_resize_scratch rs;
  float *work;           /* (out_height, out_width, 3) resampled, [0, 255] */
  float *rot;            /* rotation: the resampled region around the crop */
  size_t rot_elems;
};

/* work -> outputs: jitter (an affine map fitted to this picture's mean),
 * clamp, normalise. work holds [0, 255] values; it is left holding the
 * clamped [0, 1] values. */
void wk_augment_colour(const wk_augment_cfg *cfg, const wk_augment_params *p, float *work,
                       float *out_f32, uint8_t *out_u8);

/* Resamples the box of img (in img's pixels) turned by angle_deg about its
 * centre into work (out_height, out_width, 3), flipped when asked. */
wk_status wk_augment_rotate(wk_augmenter *a, const wk_image *img, const double box[4],
                            float angle_deg, bool flip, float *work);

#endif
