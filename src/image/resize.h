/* resize.h - antialiased resampling of a box of an image, separable, with the
 * filters and coefficient rule of PIL's Image.resize (so a whisker-trained
 * model sees the pixels a torchvision-trained one would):
 *   bilinear  triangle filter, support 1 pixel scaled by the shrink factor
 *             when shrinking (antialiasing), plain bilinear when enlarging;
 *   area      box filter, support 1/2 scaled likewise: the average of the
 *             source pixels each output pixel covers.
 * The arithmetic is in float without PIL's 8-bit intermediate rounding, so
 * results agree with PIL within one level. */
#ifndef WK_RESIZE_H
#define WK_RESIZE_H

#include <stdbool.h>

#include "image/image.h"

typedef enum wk_resample {
  WK_RESAMPLE_BILINEAR = 0,
  WK_RESAMPLE_AREA,
} wk_resample;

/* Reusable working memory (coefficients, the horizontally resampled rows);
 * start from {0}, release with wk_resize_scratch_free. */
typedef struct wk_resize_scratch {
  float *f; /* weights */
  size_t f_elems;
  float *t; /* vertically resampled rows */
  size_t t_elems;
  int *i;
  size_t i_elems;
} wk_resize_scratch;

void wk_resize_scratch_free(wk_resize_scratch *s);

/* How the box relates to the pixels around it. */
typedef enum wk_box_mode {
  WK_BOX_RESIZE_THEN_CROP = 0, /* the box of the resized whole picture: filters near the box's
                                  edges read pixels beyond it (PIL's resize(box=...),
                                  torchvision's Resize + CenterCrop) */
  WK_BOX_CROP_THEN_RESIZE,     /* the box cut out first: filters stop at its edges, rounded
                                  outwards to whole pixels (torchvision's resized_crop) */
} wk_box_mode;

/* Resamples the box (x0, y0, x1, y1) of src, in source pixels (fractions
 * allowed; x1 > x0, y1 > y0), to out_w x out_h pixels:
 *   out  (out_h, out_w, 3) f32, values in [0, 255] (not rounded)
 * flip_x mirrors the output left to right at no cost. */
wk_status wk_resize_f32(const wk_image *src, const double box[4], wk_box_mode mode, int out_w,
                        int out_h, wk_resample filter, bool flip_x, wk_resize_scratch *scratch,
                        float *out);

/* The same to an 8-bit image (rounded). box NULL means the whole image. */
wk_status wk_image_resize(const wk_image *src, const double *box, int out_w, int out_h,
                          wk_resample filter, wk_image *dst);

#endif
