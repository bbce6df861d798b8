/* augment.c - configuration, the random decisions of a sample and the
 * geometry (see augment.h). */
#include "data/augment_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/stream.h"

/* Word indices within a sample's stream: fixed words for the single draws;
 * the crop, whose draws vary in number, reads from a block far beyond them. */
enum {
  WK_AUG_WORD_FLIP = 0,
  WK_AUG_WORD_ANGLE = 1,
  WK_AUG_WORD_FACTOR = 2, /* 4 words */
  WK_AUG_WORD_ORDER = 6,  /* 3 words */
};
#define WK_AUG_CROP_BLOCK ((uint64_t)1 << 20)
#define WK_AUG_CROP_ATTEMPTS 10

static const float wk_imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float wk_imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static wk_augment_cfg wk_augment_cfg_base(int size) {
  wk_augment_cfg c = {.out_width = size, .out_height = size, .scale_min = 0.08f,
                      .scale_max = 1.0f, .ratio_min = 3.0f / 4.0f, .ratio_max = 4.0f / 3.0f,
                      .eval_resize = (size * 8 + 6) / 7, .filter = WK_RESAMPLE_BILINEAR};
  memcpy(c.mean, wk_imagenet_mean, sizeof c.mean);
  memcpy(c.std, wk_imagenet_std, sizeof c.std);
  return c;
}

wk_augment_cfg wk_augment_cfg_train(int size) {
  wk_augment_cfg c = wk_augment_cfg_base(size);
  c.random = true;
  c.flip_prob = 0.5f;
  return c;
}

wk_augment_cfg wk_augment_cfg_eval(int size) { return wk_augment_cfg_base(size); }

wk_status wk_augment_cfg_check(const wk_augment_cfg *c) {
  const int max_side = 1 << 14;
  if (c->out_width < 1 || c->out_height < 1 || c->out_width > max_side ||
      c->out_height > max_side)
    return wk_fail(WK_ERR_INVALID_ARG, "augment: output size %d x %d (1..%d)", c->out_width,
                   c->out_height, max_side);
  if (!(c->scale_min > 0 && c->scale_min <= c->scale_max && c->scale_max <= 1))
    return wk_fail(WK_ERR_INVALID_ARG, "augment: crop scale range [%g, %g] (0 < min <= max <= 1)",
                   c->scale_min, c->scale_max);
  if (!(c->ratio_min > 0 && c->ratio_min <= c->ratio_max))
    return wk_fail(WK_ERR_INVALID_ARG, "augment: aspect ratio range [%g, %g]", c->ratio_min,
                   c->ratio_max);
  if (!(c->flip_prob >= 0 && c->flip_prob <= 1) || !(c->rotate_deg >= 0 && c->rotate_deg <= 180))
    return wk_fail(WK_ERR_INVALID_ARG, "augment: flip probability %g or rotation %g degrees",
                   c->flip_prob, c->rotate_deg);
  if (!(c->brightness >= 0) || !(c->contrast >= 0) || !(c->saturation >= 0) ||
      !(c->hue >= 0 && c->hue <= 0.5f))
    return wk_fail(WK_ERR_INVALID_ARG, "augment: colour jitter %g %g %g %g (hue <= 0.5)",
                   c->brightness, c->contrast, c->saturation, c->hue);
  if (!c->random && c->eval_resize < (c->out_width > c->out_height ? c->out_width : c->out_height))
    return wk_fail(WK_ERR_INVALID_ARG,
                   "augment: evaluation resize %d is smaller than the %d x %d crop",
                   c->eval_resize, c->out_width, c->out_height);
  for (int i = 0; i < 3; i++)
    if (!(c->std[i] > 0) || !isfinite(c->mean[i]))
      return wk_fail(WK_ERR_INVALID_ARG, "augment: normalisation mean %g std %g", c->mean[i],
                     c->std[i]);
  return WK_OK;
}

/* 32 random bits as a double in [0, 1). */
static double wk_unit(uint32_t bits) { return bits * (1.0 / 4294967296.0); }

/* torchvision's RandomResizedCrop.get_params, with Philox draws. Python's
 * round() is round-half-even: nearbyint in the default rounding mode. */
static void wk_plan_rrc(const wk_augment_cfg *c, int W, int H, wk_rng *r, double box[4]) {
  const double area = (double)W * H;
  const double lr0 = log(c->ratio_min), lr1 = log(c->ratio_max);
  for (int attempt = 0; attempt < WK_AUG_CROP_ATTEMPTS; attempt++) {
    double target = area * (c->scale_min + (c->scale_max - c->scale_min) * wk_unit(wk_rng_u32(r)));
    double ar = exp(lr0 + (lr1 - lr0) * wk_unit(wk_rng_u32(r)));
    double w = nearbyint(sqrt(target * ar)), h = nearbyint(sqrt(target / ar));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      double i = wk_rng_below(r, (uint32_t)(H - h + 1));
      double j = wk_rng_below(r, (uint32_t)(W - w + 1));
      box[0] = j, box[1] = i, box[2] = j + w, box[3] = i + h;
      return;
    }
  }
  double in_ratio = (double)W / H, w = W, h = H;
  if (in_ratio < c->ratio_min) h = nearbyint(w / c->ratio_min);
  else if (in_ratio > c->ratio_max) w = nearbyint(h * c->ratio_max);
  double i = floor((H - h) / 2), j = floor((W - w) / 2);
  box[0] = j, box[1] = i, box[2] = j + w, box[3] = i + h;
}

/* torchvision's Resize(eval_resize) (shorter side; the longer one truncated)
 * then CenterCrop: the crop's box in the original picture. */
static void wk_plan_eval(const wk_augment_cfg *c, int W, int H, double box[4]) {
  double rw, rh;
  if (W <= H) rw = c->eval_resize, rh = floor((double)c->eval_resize * H / W);
  else rh = c->eval_resize, rw = floor((double)c->eval_resize * W / H);
  double top = nearbyint((rh - c->out_height) / 2.0), left = nearbyint((rw - c->out_width) / 2.0);
  double sx = W / rw, sy = H / rh;
  box[0] = left * sx, box[1] = top * sy;
  box[2] = (left + c->out_width) * sx, box[3] = (top + c->out_height) * sy;
}

static float wk_jitter_factor(float strength, uint32_t bits) {
  float lo = 1.0f - strength < 0.0f ? 0.0f : 1.0f - strength;
  return lo + (1.0f + strength - lo) * (float)wk_unit(bits);
}

wk_status wk_augment_plan(const wk_augment_cfg *c, int W, int H, uint64_t seed, int64_t epoch,
                          int64_t sample, wk_augment_params *p) {
  memset(p, 0, sizeof *p);
  for (int k = 0; k < WK_JITTER_N; k++) p->order[k] = k;
  p->factor[WK_JITTER_BRIGHTNESS] = p->factor[WK_JITTER_CONTRAST] = 1.0f;
  p->factor[WK_JITTER_SATURATION] = 1.0f;
  if (W < 1 || H < 1) return wk_fail(WK_ERR_INVALID_ARG, "augment: image size %d x %d", W, H);
  if (epoch < 0 || epoch > WK_STREAM_MAX_EPOCH || sample < 0 || sample > WK_STREAM_MAX_SAMPLE)
    return wk_fail(WK_ERR_INVALID_ARG, "augment: epoch %lld or sample %lld out of range",
                   (long long)epoch, (long long)sample);
  if (!c->random) {
    wk_plan_eval(c, W, H, p->box);
    return WK_OK;
  }
  uint64_t stream = wk_stream_augment(epoch, sample);
  wk_rng crop = wk_rng_make(seed, stream);
  crop.block = WK_AUG_CROP_BLOCK;
  wk_plan_rrc(c, W, H, &crop, p->box);
  p->flip = wk_unit(wk_rng_at(seed, stream, WK_AUG_WORD_FLIP)) < c->flip_prob;
  p->angle_deg = c->rotate_deg *
                 (float)(2.0 * wk_unit(wk_rng_at(seed, stream, WK_AUG_WORD_ANGLE)) - 1.0);
  const float strength[3] = {c->brightness, c->contrast, c->saturation};
  for (int k = 0; k < 3; k++) {
    uint32_t bits = wk_rng_at(seed, stream, WK_AUG_WORD_FACTOR + (uint64_t)k);
    p->factor[k] = strength[k] > 0 ? wk_jitter_factor(strength[k], bits) : 1.0f;
  }
  p->factor[WK_JITTER_HUE] =
      c->hue * (float)(2.0 * wk_unit(wk_rng_at(seed, stream, WK_AUG_WORD_FACTOR + 3)) - 1.0);
  for (int k = 0; k < WK_JITTER_N - 1; k++) { /* Fisher-Yates */
    uint32_t bits = wk_rng_at(seed, stream, WK_AUG_WORD_ORDER + (uint64_t)k);
    int j = k + (int)(((uint64_t)bits * (uint64_t)(WK_JITTER_N - k)) >> 32);
    int t = p->order[k];
    p->order[k] = p->order[j];
    p->order[j] = t;
  }
  return WK_OK;
}

wk_status wk_augmenter_create(const wk_augment_cfg *cfg, wk_augmenter **out) {
  *out = NULL;
  WK_TRY(wk_augment_cfg_check(cfg));
  wk_augmenter *a = calloc(1, sizeof *a);
  if (!a) return wk_fail(WK_ERR_NOMEM, "augment: out of memory");
  a->cfg = *cfg;
  a->work = malloc((size_t)cfg->out_width * (size_t)cfg->out_height * 3 * sizeof *a->work);
  wk_status s = a->work ? wk_decoder_create(&a->dec)
                        : wk_fail(WK_ERR_NOMEM, "augment: out of memory");
  if (s != WK_OK) {
    wk_augmenter_destroy(a);
    return s;
  }
  *out = a;
  return WK_OK;
}

void wk_augmenter_destroy(wk_augmenter *a) {
  if (!a) return;
  wk_decoder_destroy(a->dec);
  wk_bytes_free(&a->file);
  wk_image_free(&a->img);
  wk_resize_scratch_free(&a->rs);
  free(a->work);
  free(a->rot);
  free(a);
}

wk_status wk_augment_apply(wk_augmenter *a, const wk_image *img, int full_w, int full_h,
                           const wk_augment_params *p, float *out_f32, uint8_t *out_u8) {
  const wk_augment_cfg *c = &a->cfg;
  double sx = (double)img->width / full_w, sy = (double)img->height / full_h;
  double box[4] = {p->box[0] * sx, p->box[1] * sy, p->box[2] * sx, p->box[3] * sy};
  if (p->angle_deg != 0.0f) {
    WK_TRY(wk_augment_rotate(a, img, box, p->angle_deg, p->flip, a->work));
  } else {
    /* training crops are cut out first (torchvision's resized_crop); the
     * evaluation crop is a window of the resized picture (Resize + CenterCrop) */
    wk_box_mode mode = c->random ? WK_BOX_CROP_THEN_RESIZE : WK_BOX_RESIZE_THEN_CROP;
    WK_TRY(wk_resize_f32(img, box, mode, c->out_width, c->out_height, c->filter, p->flip, &a->rs,
                         a->work));
  }
  wk_augment_colour(c, p, a->work, out_f32, out_u8);
  return WK_OK;
}

wk_status wk_augment_image(wk_augmenter *a, const wk_image *img, uint64_t seed, int64_t epoch,
                           int64_t sample, float *out_f32, uint8_t *out_u8) {
  wk_augment_params p;
  WK_TRY(wk_augment_plan(&a->cfg, img->width, img->height, seed, epoch, sample, &p));
  return wk_augment_apply(a, img, img->width, img->height, &p, out_f32, out_u8);
}

wk_status wk_augment_file(wk_augmenter *a, const char *path, const wk_decode_opts *dec,
                          uint64_t seed, int64_t epoch, int64_t sample, float *out_f32,
                          uint8_t *out_u8) {
  wk_decode_opts o = dec ? *dec : wk_decode_opts_default();
  wk_image_info info;
  WK_TRY(wk_file_read(path, 0, &a->file));
  WK_TRY(wk_image_probe(a->file.data, a->file.n_bytes, path, &o, &info));
  wk_augment_params p;
  WK_TRY(wk_augment_plan(&a->cfg, info.width, info.height, seed, epoch, sample, &p));
  /* the smallest decode that keeps the box at least as large as the output */
  double bw = p.box[2] - p.box[0], bh = p.box[3] - p.box[1];
  double mw = ceil(a->cfg.out_width * (double)info.width / bw);
  double mh = ceil(a->cfg.out_height * (double)info.height / bh);
  o.min_width = mw < info.width ? (int)mw : info.width;
  o.min_height = mh < info.height ? (int)mh : info.height;
  WK_TRY(wk_image_decode(a->dec, a->file.data, a->file.n_bytes, path, &o, &a->img, NULL));
  return wk_augment_apply(a, &a->img, info.width, info.height, &p, out_f32, out_u8);
}
