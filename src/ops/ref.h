/* ref.h - the plain-loop reference implementation of every op: the oracle that
 * every fast path is tested against, and the fallback for shapes a fast path
 * does not handle.
 *
 * Written once (ref_template.inc) and compiled for float (suffix _f32, what the
 * library runs) and double (suffix _f64, for finite-difference gradient checks).
 * Sums accumulate in double in both. Inputs are trusted here: the tensor-level
 * functions in ops.h validate shapes first. Backward functions overwrite; any
 * gradient output may be NULL. */
#ifndef WK_OPS_REF_H
#define WK_OPS_REF_H

#include <stdbool.h>
#include <stdint.h>

#include "ops/ops.h"

typedef struct wk_pool2d_geom {
  int64_t n, h, w, c;  /* input (N, H, W, C) */
  int64_t oh, ow;      /* output (N, OH, OW, C) */
  int64_t kh, kw, sh, sw, pt, pl, pb, pr;
  bool count_include_pad;
} wk_pool2d_geom;

#define WK_REF_DECLARE(T, SFX)                                                                  \
  void wk_conv2d_forward_ref_##SFX(const wk_conv2d_geom *g, const T *x, const T *w,             \
                                   const T *b, T *y);                                           \
  void wk_conv2d_backward_ref_##SFX(const wk_conv2d_geom *g, const T *x, const T *w,            \
                                    const T *dy, T *dx, T *dw, T *db);                          \
  void wk_batchnorm_forward_train_ref_##SFX(int64_t m, int64_t c, double eps, double momentum,  \
                                            const T *x, const T *gamma, const T *beta,          \
                                            T *running_mean, T *running_var, T *save_mean,      \
                                            T *save_invstd, T *y);                              \
  void wk_batchnorm_forward_infer_ref_##SFX(int64_t m, int64_t c, double eps, const T *x,       \
                                            const T *gamma, const T *beta, const T *mean,       \
                                            const T *var, T *y);                                \
  void wk_batchnorm_backward_ref_##SFX(int64_t m, int64_t c, bool frozen_stats, const T *x,     \
                                       const T *gamma, const T *mean, const T *invstd,          \
                                       const T *dy, T *dx, T *dgamma, T *dbeta);                \
  void wk_act_forward_ref_##SFX(wk_act act, int64_t n, const T *x, T *y);                      \
  void wk_act_backward_ref_##SFX(wk_act act, int64_t n, const T *x, const T *dy, T *dx);       \
  void wk_maxpool2d_forward_ref_##SFX(const wk_pool2d_geom *g, const T *x, T *y,                \
                                      int32_t *argmax);                                         \
  void wk_maxpool2d_backward_ref_##SFX(const wk_pool2d_geom *g, const int32_t *argmax,          \
                                       const T *dy, T *dx);                                     \
  void wk_avgpool2d_forward_ref_##SFX(const wk_pool2d_geom *g, const T *x, T *y);               \
  void wk_avgpool2d_backward_ref_##SFX(const wk_pool2d_geom *g, const T *dy, T *dx);            \
  void wk_global_avgpool_forward_ref_##SFX(int64_t n, int64_t hw, int64_t c, const T *x, T *y); \
  void wk_global_avgpool_backward_ref_##SFX(int64_t n, int64_t hw, int64_t c, const T *dy,      \
                                            T *dx);                                             \
  void wk_linear_forward_ref_##SFX(int64_t n, int64_t in, int64_t out, const T *x, const T *w,  \
                                   const T *b, T *y);                                           \
  void wk_linear_backward_ref_##SFX(int64_t n, int64_t in, int64_t out, const T *x,             \
                                    const T *w, const T *dy, T *dx, T *dw, T *db);              \
  void wk_add_forward_ref_##SFX(int64_t n, const T *a, const T *b, T *y);                       \
  void wk_dropout_ref_##SFX(double p, uint64_t seed, uint64_t stream, int64_t offset,           \
                            int64_t n, const T *x, T *y);                                       \
  void wk_softmax_xent_forward_ref_##SFX(int64_t n, int64_t k, double smoothing,                \
                                         const T *logits, const int32_t *labels, T *probs,      \
                                         double *loss_sum);                                     \
  void wk_softmax_xent_backward_ref_##SFX(int64_t n, int64_t k, double smoothing,               \
                                          int64_t batch, const T *probs,                        \
                                          const int32_t *labels, double dloss, T *dlogits);

WK_REF_DECLARE(float, f32)
WK_REF_DECLARE(double, f64)

/* Geometry of a pooling op from its params and input shape (validated). */
wk_status wk_pool2d_geom_make(const wk_pool2d_params *p, int64_t n, int64_t h, int64_t w,
                              int64_t c, wk_pool2d_geom *out);

#endif
