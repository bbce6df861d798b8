/* augment.h - one network input from one picture: the crop, flip, rotation and
 * colour changes of a training sample, or the resize and centre crop of an
 * evaluation sample, then normalisation.
 *
 * Training (cfg.random): torchvision's RandomResizedCrop (area fraction
 * uniform in [scale_min, scale_max], aspect ratio log-uniform in [ratio_min,
 * ratio_max], 10 attempts, then the centre crop fallback), a horizontal flip,
 * an optional small rotation about the crop's centre (what falls outside the
 * picture is black, as torchvision's RandomRotation fill=0), and colour jitter
 * with ColorJitter's parameters: brightness, contrast and saturation factors
 * uniform in [max(0, 1-x), 1+x], a hue shift uniform in [-hue, hue] turns,
 * applied in a random order. Unlike torchvision, the four are composed into
 * one affine colour map per sample (contrast's grey mean is carried through
 * exactly), values are clamped to [0, 1] once at the end instead of after each
 * step, and hue is a rotation of the chroma plane in YIQ space rather than a
 * shift of HSV hue: the same kind of change, much cheaper.
 * Evaluation: torchvision's Resize(eval_resize) + CenterCrop(out), as one
 * resampling of the crop box.
 *
 * Geometry is one pass: the crop box is resampled straight to the output size
 * with the antialiased filter of image/resize.h, and a JPEG is decoded with
 * the largest DCT reduction that still leaves the box at least as large as the
 * output. Outputs, either may be NULL:
 *   out_f32  (out_height, out_width, 3) f32: (v - mean) / std, v in [0, 1]
 *   out_u8   (out_height, out_width, 3) u8: round(255 v), for normalising later
 * Randomness comes from the Philox stream of (seed, epoch, sample) (see
 * data/stream.h), so a sample's result depends on nothing else. */
#ifndef WK_AUGMENT_H
#define WK_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "image/image.h"
#include "image/resize.h"

typedef struct wk_augment_cfg {
  int out_width, out_height;  /* pixels */
  bool random;                /* training transforms (true) or evaluation (false) */
  float scale_min, scale_max; /* crop area / image area: 0.08, 1 */
  float ratio_min, ratio_max; /* crop width / height: 3/4, 4/3 */
  float flip_prob;            /* 0.5 */
  float rotate_deg;           /* angle uniform in [-rotate_deg, rotate_deg]; 0: none */
  float brightness, contrast, saturation, hue; /* 0: off; hue <= 0.5 */
  int eval_resize;            /* evaluation: the shorter side before the centre crop */
  float mean[3], std[3];      /* per channel, on [0, 1] values (ImageNet's by default) */
  wk_resample filter;         /* bilinear (torchvision's default) or area */
} wk_augment_cfg;

/* Training: random-resized-crop to size x size, flip 0.5, no rotation or
 * jitter, ImageNet mean/std. Evaluation: resize to size * 8 / 7 (256 for
 * 224), centre crop size x size. */
wk_augment_cfg wk_augment_cfg_train(int size);
wk_augment_cfg wk_augment_cfg_eval(int size);
wk_status wk_augment_cfg_check(const wk_augment_cfg *cfg);

/* The random decisions for one sample. */
typedef enum wk_jitter_op { WK_JITTER_BRIGHTNESS = 0, WK_JITTER_CONTRAST, WK_JITTER_SATURATION,
                            WK_JITTER_HUE, WK_JITTER_N } wk_jitter_op;

typedef struct wk_augment_params {
  double box[4];             /* x0, y0, x1, y1 in the full-size displayed image */
  bool flip;
  float angle_deg;
  int order[WK_JITTER_N];    /* the order the jitter ops apply in */
  float factor[WK_JITTER_N]; /* brightness, contrast, saturation factors; hue shift in turns */
} wk_augment_params;

/* The decisions for sample `sample` of `epoch` on a width x height image. */
wk_status wk_augment_plan(const wk_augment_cfg *cfg, int width, int height, uint64_t seed,
                          int64_t epoch, int64_t sample, wk_augment_params *p);

/* Per-thread working state: a decoder and buffers reused from sample to sample. */
typedef struct wk_augmenter wk_augmenter;

wk_status wk_augmenter_create(const wk_augment_cfg *cfg, wk_augmenter **out);
void wk_augmenter_destroy(wk_augmenter *a);

/* Reads, decodes and transforms one file. dec may be NULL (defaults; its
 * min_width/min_height are ignored). */
wk_status wk_augment_file(wk_augmenter *a, const char *path, const wk_decode_opts *dec,
                          uint64_t seed, int64_t epoch, int64_t sample, float *out_f32,
                          uint8_t *out_u8);

/* Transforms a decoded image (at full size). */
wk_status wk_augment_image(wk_augmenter *a, const wk_image *img, uint64_t seed, int64_t epoch,
                           int64_t sample, float *out_f32, uint8_t *out_u8);

/* Transforms with given decisions; img may be a DCT-reduced decode of a
 * full_width x full_height picture (p->box is in full-size pixels). */
wk_status wk_augment_apply(wk_augmenter *a, const wk_image *img, int full_width,
                           int full_height, const wk_augment_params *p, float *out_f32,
                           uint8_t *out_u8);

#endif
