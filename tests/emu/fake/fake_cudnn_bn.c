/* fake_cudnn_bn.c - the fake cuDNN's batch normalisation (see fake.h and
 * fake_cudnn.h): host implementations, under cuDNN 9's own declarations
 * (cudnn_ops.h), of
 *
 *   cudnnBatchNormalizationForwardTraining     cudnnBatchNormalizationForwardTrainingEx
 *   cudnnBatchNormalizationForwardInference
 *   cudnnBatchNormalizationBackward            cudnnBatchNormalizationBackwardEx
 *   cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize
 *   cudnnGetBatchNormalizationBackwardExWorkspaceSize
 *   cudnnGetBatchNormalizationTrainingExReserveSpaceSize
 *
 * as NVIDIA's cuDNN API reference describes them (the rules each check
 * follows are cited where it is made). Arithmetic is in double; 16-bit
 * tensors are read and written through wk_fake_load / wk_fake_store.
 *
 * Implemented:
 *  - modes PER_ACTIVATION (statistics over n for each (c, h, w)), SPATIAL and
 *    SPATIAL_PERSISTENT (statistics over n, h, w for each c; the persistent
 *    mode is documented as the same computation, faster, with "some limits on
 *    the range of values", so it is the same math here);
 *  - the documented data type configurations: x, y (z, dy, dx, dz) FLOAT,
 *    HALF or BFLOAT16 with a FLOAT scale/bias/mean/variance descriptor and
 *    float alpha/beta, or DOUBLE throughout with double alpha/beta; any strides
 *    (4-D descriptors are all fake_cudnn.h holds);
 *  - the Ex functions' bnOps: BN anywhere; BN_ACTIVATION and
 *    BN_ADD_ACTIVATION with a RELU activation, under the documented conditions
 *    of the semi-persistent NHWC kernel that performs them (mode
 *    SPATIAL_PERSISTENT, x, y, z, dy, dx, dz HALF (and, as seen, BFLOAT16 or
 *    FLOAT) and NHWC fully packed, C a
 *    multiple of 4 with the add), CUDNN_STATUS_NOT_SUPPORTED otherwise, in the
 *    size queries as in the calls;
 *  - workspace and reserve sizes of this fake's choosing (zero for bnOps BN,
 *    otherwise more than 4 KiB and growing with the batch), which the Ex calls
 *    require (CUDNN_STATUS_BAD_PARAM when less is given).
 *
 * Not implemented (wk_fake_die says so): activation modes other than RELU;
 * a running variance from a single value per statistic (the unbiased
 * variance's N/(N-1) is undefined there and cuDNN does not document what it
 * does); BackwardEx with BN_ADD_ACTIVATION and data blend factors other than
 * alpha 1, beta 0 (whether dz is blended is not documented).
 *
 * Checks beyond the statuses (aborting through wk_fake_die, as these are
 * misuses the real library would not report but compute garbage from):
 *  - every device pointer's extent (wk_fake_check_device), when the call is
 *    issued and again when its work runs (a captured graph's launch);
 *  - the reserve space: the forward Ex stores a header and the activation
 *    mask in it; the backward Ex dies unless it finds that header for the
 *    same shape and bnOps ("the content in reserveSpace stored by
 *    cudnnBatchNormalizationForwardTrainingEx() must be preserved"), and, with
 *    savedMean/savedInvVariance given, unless x, bnScale, bnBias and the saved
 *    statistics are what the forward saw and wrote (the documentation of the
 *    saved cache: "the layer's x and bnScale, bnBias data has to remain
 *    unchanged until this backward function is called"), and unless yData
 *    still gives the forward's activation mask (yData is "the original
 *    forward output");
 *  - the workspace: the Ex calls overwrite the part they asked for with a
 *    pattern (the documentation allows it: it "does not have to remain
 *    unchanged between the forward and backward pass").
 *
 * Statuses: CUDNN_STATUS_BAD_PARAM for the documented BAD_PARAM conditions
 * (NULL required pointers, unset or mismatched descriptors, epsilon below
 * CUDNN_BN_MIN_EPSILON, exactly one of a pointer pair NULL) and for a
 * scale/bias descriptor of the wrong type or shape; each BAD_PARAM is also
 * explained on stderr ("fake cuDNN: ..."). CUDNN_STATUS_NOT_SUPPORTED for
 * data types outside the configurations above and for the fused ops outside
 * their documented conditions (silent: callers are expected to fall back). */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_cudnn.h"

typedef struct cudnnTensorStruct bn_tdesc;

/* ------------------------------------------------------------ small helpers */

static void bn_bad_say(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bn_bad_say(const char *fn, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fake cuDNN: %s: CUDNN_STATUS_BAD_PARAM: ", fn);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Says why on stderr and returns CUDNN_STATUS_BAD_PARAM; a macro, so that the
 * status is plain where it is returned (the clang static analyzer does not
 * enter a variadic function: fake_cudnn.h's wk_fake_cudnn_fail). */
#define bn_bad(fn, ...) (bn_bad_say(fn, __VA_ARGS__), CUDNN_STATUS_BAD_PARAM)

/* The workspace and reserve space an Ex call was given, against what the
 * size queries asked for (ws_need, rs_need). */
static cudnnStatus_t bn_check_spaces(const char *fn, const void *ws, size_t ws_bytes,
                                     size_t ws_need, const void *rs, size_t rs_bytes,
                                     size_t rs_need) {
  if (!ws || ws_bytes < ws_need)
    return bn_bad(fn, "workspace %p of %zu bytes, the size query asked for %zu", ws, ws_bytes,
                  ws_need);
  if (!rs || rs_bytes < rs_need)
    return bn_bad(fn, "reserveSpace %p of %zu bytes, the size query asked for %zu", rs,
                  rs_bytes, rs_need);
  return CUDNN_STATUS_SUCCESS;
}

/* dst = alpha * result + beta * prior dst (the documented blend). With beta
 * zero the prior value is not read (cuDNN's scaling parameters: "when beta is
 * zero, the output is not read and may contain uninitialized data", NaN
 * included). */
static double bn_blend(double alpha, double beta, double result, const void *dst,
                       wk_fake_dtype t, size_t i) {
  return beta == 0.0 ? alpha * result : alpha * result + beta * wk_fake_load(dst, t, i);
}

static int bn_desc_set(cudnnTensorDescriptor_t d) {
  return d && d->set && d->n > 0 && d->c > 0 && d->h > 0 && d->w > 0;
}
static int bn_same_dims(const bn_tdesc *a, const bn_tdesc *b) {
  return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}
static int bn_data_type_ok(cudnnDataType_t t) {
  return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16 ||
         t == CUDNN_DATA_DOUBLE;
}
/* NHWC fully packed: c innermost, no gaps. */
static int bn_nhwc_packed(const bn_tdesc *d) {
  return d->sc == 1 && d->sw == d->c && d->sh == d->w * d->c && d->sn == d->h * d->w * d->c;
}
static int bn_mode_ok(cudnnBatchNormMode_t m) {
  return m == CUDNN_BATCHNORM_PER_ACTIVATION || m == CUDNN_BATCHNORM_SPATIAL ||
         m == CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
}
static int bn_ops_ok(cudnnBatchNormOps_t o) {
  return o == CUDNN_BATCHNORM_OPS_BN || o == CUDNN_BATCHNORM_OPS_BN_ACTIVATION ||
         o == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
}
static size_t bn_elems(const bn_tdesc *d) {
  return (size_t)d->n * (size_t)d->c * (size_t)d->h * (size_t)d->w;
}
static size_t bn_align256(size_t v) { return (v + 255) & ~(size_t)255; }

static void bn_check_ptr(const void *p, const bn_tdesc *d, const char *what) {
  if (p) wk_fake_check_device(p, wk_fake_tensor_bytes(d), what);
}

/* ------------------------------------------------- the groups of statistics */

/* One statistic's elements: channel c, rows [h0, h1), columns [w0, w1), all
 * n. SPATIAL (and SPATIAL_PERSISTENT): one group per channel, over n, h, w
 * (cudnn_ops.h: "one value per C-dim normalized over Nx1xHxW subtensors");
 * PER_ACTIVATION: one per (c, h, w), over n ("one value per CHW...-slice,
 * normalized over N slice"). */
typedef struct {
  int c, h0, h1, w0, w1;
} bn_box;

static int bn_spatial(cudnnBatchNormMode_t m) { return m != CUDNN_BATCHNORM_PER_ACTIVATION; }

static int bn_groups(const bn_tdesc *x, int spatial) {
  return spatial ? x->c : x->c * x->h * x->w;
}

static bn_box bn_group(const bn_tdesc *x, int spatial, int g) {
  bn_box b;
  if (spatial) {
    b.c = g, b.h0 = 0, b.h1 = x->h, b.w0 = 0, b.w1 = x->w;
  } else {
    const int r = g % (x->h * x->w);
    b.c = g / (x->h * x->w);
    b.h0 = r / x->w, b.h1 = b.h0 + 1;
    b.w0 = r % x->w, b.w1 = b.w0 + 1;
  }
  return b;
}

static size_t bn_count(const bn_tdesc *x, const bn_box *b) {
  return (size_t)x->n * (size_t)(b->h1 - b->h0) * (size_t)(b->w1 - b->w0);
}

/* The group's element of the scale/bias/mean/variance tensors (1xCx1x1 or
 * 1xCxHxW, by that descriptor's own strides). */
static size_t bn_param_at(const bn_tdesc *bnd, int spatial, const bn_box *b) {
  return spatial ? wk_fake_at(bnd, 0, b->c, 0, 0) : wk_fake_at(bnd, 0, b->c, b->h0, b->w0);
}

#define BN_EACH(xd, b, in, ih, iw)                 \
  for (int in = 0; in < (xd)->n; in++)             \
    for (int ih = (b).h0; ih < (b).h1; ih++)       \
      for (int iw = (b).w0; iw < (b).w1; iw++)

/* Element (n, c, h, w)'s index in the activation mask (logical NCHW order). */
static size_t bn_mask_bit(const bn_tdesc *x, int n, int c, int h, int w) {
  return (((size_t)n * (size_t)x->c + (size_t)c) * (size_t)x->h + (size_t)h) * (size_t)x->w +
         (size_t)w;
}

/* Mean and biased variance of group b of x (two passes in double). */
static void bn_stats(const bn_tdesc *xd, const void *x, const bn_box *b, double *mean,
                     double *var) {
  const wk_fake_dtype xt = wk_fake_cudnn_dtype(xd->dtype);
  const double m = (double)bn_count(xd, b);
  double s = 0.0, q = 0.0;
  BN_EACH(xd, *b, in, ih, iw) s += wk_fake_load(x, xt, wk_fake_at(xd, in, b->c, ih, iw));
  *mean = s / m;
  BN_EACH(xd, *b, in, ih, iw) {
    const double d = wk_fake_load(x, xt, wk_fake_at(xd, in, b->c, ih, iw)) - *mean;
    q += d * d;
  }
  *var = q / m;
}

/* ------------------------------------------------------------- activation */

typedef struct {
  int on; /* bnOps BN_ACTIVATION or BN_ADD_ACTIVATION */
  cudnnNanPropagation_t nan;
} bn_act;

/* RELU: max(0, v); a NaN stays NaN with CUDNN_PROPAGATE_NAN and gives 0 with
 * CUDNN_NOT_PROPAGATE_NAN (cudnnNanPropagation_t). RELU's coef is unused
 * (cudnnSetActivationDescriptor: coef is CLIPPED_RELU's clip, ELU's alpha,
 * SWISH's beta). */
static double bn_relu(const bn_act *a, double v) {
  if (isnan(v)) return a->nan == CUDNN_PROPAGATE_NAN ? v : 0.0;
  return v > 0.0 ? v : 0.0;
}

/* The activation descriptor of a fused bnOps: required ("when the bnOps input
 * is set to either CUDNN_BATCHNORM_OPS_BN_ACTIVATION or
 * CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION then this activation is used"), and
 * only RELU is implemented here. */
static cudnnStatus_t bn_check_act(const char *fn, cudnnActivationDescriptor_t a) {
  if (!a || !a->set) return bn_bad(fn, "bnOps with an activation needs a set activationDesc");
  if (a->mode != CUDNN_ACTIVATION_RELU)
    wk_fake_die("cuDNN", "%s: batchnorm fused with activation mode %d not implemented "
                "(only CUDNN_ACTIVATION_RELU)", fn, (int)a->mode);
  return CUDNN_STATUS_SUCCESS;
}

/* ----------------------------------------------------------- descriptor checks */

/* x's descriptor: set (BAD_PARAM) and of a supported data type (the
 * configuration tables: FLOAT, HALF, BFLOAT16, DOUBLE; NOT_SUPPORTED). */
static cudnnStatus_t bn_check_x(const char *fn, const char *name, cudnnTensorDescriptor_t xd) {
  if (!bn_desc_set(xd)) return bn_bad(fn, "%s is NULL or not set", name);
  if (!bn_data_type_ok(xd->dtype)) return CUDNN_STATUS_NOT_SUPPORTED;
  return CUDNN_STATUS_SUCCESS;
}

/* A tensor that must match x in dimensions and data type (BAD_PARAM:
 * "Dimensions or data types mismatch for xDesc, yDesc" and, in backward, "for
 * any pair of xDesc, dyDesc, dxDesc"; z "should have exactly the same
 * dimension as x and the final output y"). */
static cudnnStatus_t bn_check_like(const char *fn, const char *name, cudnnTensorDescriptor_t d,
                                   cudnnTensorDescriptor_t xd) {
  if (!bn_desc_set(d)) return bn_bad(fn, "%s is NULL or not set", name);
  if (!bn_same_dims(d, xd) || d->dtype != xd->dtype)
    return bn_bad(fn, "%s is %dx%dx%dx%d of type %d, x is %dx%dx%dx%d of type %d", name, d->n,
                  d->c, d->h, d->w, (int)d->dtype, xd->n, xd->c, xd->h, xd->w, (int)xd->dtype);
  return CUDNN_STATUS_SUCCESS;
}

/* The scale/bias/mean/variance descriptor: 1xCx1x1 for the spatial modes,
 * 1xCxHxW per activation (BAD_PARAM: "bnScaleBiasMeanVarDesc dimensions are
 * not 1xCx1x1 ... for spatial, and are not 1xCxHxW ... for per-activation
 * mode"), and "type = (typeOf(x) == double) ? double : float" (cudnn_ops.h),
 * as every configuration table has it; a wrong type is BAD_PARAM here. */
static cudnnStatus_t bn_check_param_desc(const char *fn, const char *name,
                                         cudnnTensorDescriptor_t bd, cudnnTensorDescriptor_t xd,
                                         cudnnBatchNormMode_t mode) {
  if (!bn_desc_set(bd)) return bn_bad(fn, "%s is NULL or not set", name);
  const int spatial = bn_spatial(mode);
  if (bd->n != 1 || bd->c != xd->c || bd->h != (spatial ? 1 : xd->h) ||
      bd->w != (spatial ? 1 : xd->w))
    return bn_bad(fn, "%s is %dx%dx%dx%d, mode %d wants 1x%dx%dx%d", name, bd->n, bd->c, bd->h,
                  bd->w, (int)mode, xd->c, spatial ? 1 : xd->h, spatial ? 1 : xd->w);
  const cudnnDataType_t want = xd->dtype == CUDNN_DATA_DOUBLE ? CUDNN_DATA_DOUBLE
                                                              : CUDNN_DATA_FLOAT;
  if (bd->dtype != want)
    return bn_bad(fn, "%s is of type %d, x of type %d wants %s", name, (int)bd->dtype,
                  (int)xd->dtype, want == CUDNN_DATA_DOUBLE ? "DOUBLE" : "FLOAT");
  return CUDNN_STATUS_SUCCESS;
}

/* The fused ops' documented conditions (cudnnBatchNormalizationForwardTrainingEx
 * and ...BackwardEx: the semi-persistent NHWC kernel runs when "all tensors,
 * namely, x, y, dz, dy, dx must be NHWC-fully packed and must be of the type
 * CUDNN_DATA_HALF", "the input parameter mode must be set to
 * CUDNN_BATCHNORM_SPATIAL_PERSISTENT", and, after 8.2.0, "the tensor C
 * dimension should be a multiple of 4 only when bnOps is
 * CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION"); only that kernel applies an
 * activation (without it the Ex calls are the plain ones), so a fused bnOps
 * outside them is CUDNN_STATUS_NOT_SUPPORTED. The documentation names HALF
 * only, but cuDNN 9.19 on an H100 fused BFLOAT16 and FLOAT too (whisker's
 * resnet18 tests, 2026-11-23: all 17 groups in fp32 and bf16), and whisker
 * fuses by default in every precision, so this fake takes all three. t: the
 * tensors, already checked to match t[0] (x). */
static cudnnStatus_t bn_fused_supported(cudnnBatchNormMode_t mode, cudnnBatchNormOps_t ops,
                                        const cudnnTensorDescriptor_t *t, int nt) {
  if (mode != CUDNN_BATCHNORM_SPATIAL_PERSISTENT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (t[0]->dtype != CUDNN_DATA_HALF && t[0]->dtype != CUDNN_DATA_BFLOAT16 &&
      t[0]->dtype != CUDNN_DATA_FLOAT)
    return CUDNN_STATUS_NOT_SUPPORTED;
  for (int i = 0; i < nt; i++)
    if (!bn_nhwc_packed(t[i])) return CUDNN_STATUS_NOT_SUPPORTED;
  if (ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION && t[0]->c % 4 != 0)
    return CUDNN_STATUS_NOT_SUPPORTED;
  return CUDNN_STATUS_SUCCESS;
}

/* ------------------------------------------- sizes (this fake's own choice) */

/* Non-zero for the fused ops (the caller must allocate them), above 4 KiB and
 * growing with the batch, so that a caller who does not ask again when the
 * batch grows is caught by the Ex calls' size checks. bnOps BN: none (the
 * documentation: with no workspace, the Ex calls act as the plain ones). */
#define BN_RS_HEADER 128
static size_t bn_fwd_ws_need(const bn_tdesc *x) {
  return bn_align256(8192 + 16 * (size_t)x->c + bn_elems(x) / 8);
}
static size_t bn_bwd_ws_need(const bn_tdesc *x) {
  return bn_align256(8192 + 32 * (size_t)x->c + bn_elems(x) / 8);
}
/* a header and one bit per element (the activation mask) */
static size_t bn_rs_need(const bn_tdesc *x) {
  return bn_align256(BN_RS_HEADER + (bn_elems(x) + 7) / 8);
}

/* What the forward Ex leaves in the reserve space for the backward Ex. */
#define BN_RS_MAGIC 0x77686b2d626e7273ull
typedef struct {
  uint64_t magic;
  int32_t n, c, h, w, dtype, ops, mode;
  int32_t mask_valid; /* the forward's blend was y = act(...) (alpha 1, beta 0) */
  int32_t has_saved;  /* the forward wrote saveMean / saveInvVariance */
  uint64_t x_hash, param_hash, saved_hash;
} bn_rs_header;
_Static_assert(sizeof(bn_rs_header) <= BN_RS_HEADER, "reserve space header too large");

/* FNV-1a over the bytes of a tensor's elements in logical order. */
static uint64_t bn_hash(uint64_t h, const bn_tdesc *d, const void *p) {
  const size_t es = wk_fake_dtype_size(wk_fake_cudnn_dtype(d->dtype));
  for (int n = 0; n < d->n; n++)
    for (int c = 0; c < d->c; c++)
      for (int y = 0; y < d->h; y++)
        for (int x = 0; x < d->w; x++) {
          const unsigned char *b = (const unsigned char *)p + wk_fake_at(d, n, c, y, x) * es;
          for (size_t i = 0; i < es; i++) h = (h ^ b[i]) * 0x100000001b3ull;
        }
  return h;
}
#define BN_HASH0 0xcbf29ce484222325ull

/* The workspace "is not required to be clean" and "does not have to remain
 * unchanged between the forward and backward pass": the part this fake asked
 * for is scribbled on, so a workspace that overlaps live data shows. */
static void bn_scribble(void *ws, size_t need) {
  if (ws && need) memset(ws, 0xA5, need);
}

/* ------------------------------------------------------------- training forward */

typedef struct {
  const char *fn; /* a string literal */
  cudnnBatchNormMode_t mode;
  cudnnBatchNormOps_t ops; /* BN for the plain function */
  double alpha, beta, factor, eps;
  bn_tdesc xd, zd, yd, bnd;
  const void *x, *z;
  void *y;
  const void *scale, *bias;
  void *rmean, *rvar, *smean, *sinv;
  bn_act act;
  void *ws, *rs;
  size_t ws_bytes, ws_need, rs_bytes, rs_need;
} bn_fwd_ctx;

static void bn_fwd_check_ptrs(const bn_fwd_ctx *k) {
  bn_check_ptr(k->x, &k->xd, "batchnorm forward x");
  bn_check_ptr(k->y, &k->yd, "batchnorm forward y");
  if (k->ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION)
    bn_check_ptr(k->z, &k->zd, "batchnorm forward z");
  bn_check_ptr(k->scale, &k->bnd, "batchnorm bnScale");
  bn_check_ptr(k->bias, &k->bnd, "batchnorm bnBias");
  bn_check_ptr(k->rmean, &k->bnd, "batchnorm resultRunningMean");
  bn_check_ptr(k->rvar, &k->bnd, "batchnorm resultRunningVariance");
  bn_check_ptr(k->smean, &k->bnd, "batchnorm resultSaveMean");
  bn_check_ptr(k->sinv, &k->bnd, "batchnorm resultSaveInvVariance");
  if (k->ws && k->ws_bytes) wk_fake_check_device(k->ws, k->ws_bytes, "batchnorm workspace");
  if (k->rs && k->rs_bytes) wk_fake_check_device(k->rs, k->rs_bytes, "batchnorm reserveSpace");
}

/* Per group: the batch mean and biased variance;
 *   y = alpha * act(scale * (x - mean) / sqrt(var + eps) + bias [+ z]) + beta * y;
 *   runningMean = (1 - factor) * runningMean + factor * mean, and
 *   runningVariance likewise from the unbiased variance var * M / (M - 1)
 *   (cudnn_ops.h: "runningMean = newMean*factor + runningMean*(1-factor)",
 *   the variance's "factor is applied in the same way"; the reference says
 *   the value "is the moving average of variance[x]" without naming the
 *   estimator: the unbiased one is cuDNN's known behaviour, which PyTorch's
 *   running_var relies on);
 *   saveMean = mean, saveInvVariance = 1 / sqrt(var + eps) (the biased
 *   variance: what the normalisation divided by). */
static void bn_fwd_run(void *p) {
  const bn_fwd_ctx *k = p;
  bn_fwd_check_ptrs(k);
  const bn_tdesc *xd = &k->xd;
  const wk_fake_dtype xt = wk_fake_cudnn_dtype(xd->dtype);
  const wk_fake_dtype bt = wk_fake_cudnn_dtype(k->bnd.dtype);
  const int spatial = bn_spatial(k->mode);
  const int add = k->ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
  bn_scribble(k->ws, k->ws_need);
  /* x and the parameters as this forward sees them (before y is written: y
   * may be x), for the backward's checks */
  uint64_t x_hash = 0, param_hash = 0;
  if (k->act.on) {
    x_hash = bn_hash(BN_HASH0, xd, k->x);
    param_hash = bn_hash(bn_hash(BN_HASH0, &k->bnd, k->scale), &k->bnd, k->bias);
  }
  const int groups = bn_groups(xd, spatial);
  for (int g = 0; g < groups; g++) {
    const bn_box b = bn_group(xd, spatial, g);
    const size_t m = bn_count(xd, &b), pi = bn_param_at(&k->bnd, spatial, &b);
    double mean, var;
    bn_stats(xd, k->x, &b, &mean, &var);
    const double invstd = 1.0 / sqrt(var + k->eps);
    const double gamma = wk_fake_load(k->scale, bt, pi), beta = wk_fake_load(k->bias, bt, pi);
    BN_EACH(xd, b, in, ih, iw) {
      double v = gamma * (wk_fake_load(k->x, xt, wk_fake_at(xd, in, b.c, ih, iw)) - mean) * invstd + beta;
      if (add) v += wk_fake_load(k->z, xt, wk_fake_at(&k->zd, in, b.c, ih, iw));
      if (k->act.on) v = bn_relu(&k->act, v);
      const size_t yi = wk_fake_at(&k->yd, in, b.c, ih, iw);
      wk_fake_store(k->y, xt, yi, bn_blend(k->alpha, k->beta, v, k->y, xt, yi));
    }
    if (k->rmean) {
      if (m < 2)
        wk_fake_die("cuDNN", "%s: a running variance from %zu value(s) per statistic: the "
                    "unbiased variance's N/(N-1) is undefined there (not implemented)",
                    k->fn, m);
      const double f = k->factor;
      wk_fake_store(k->rmean, bt, pi, (1.0 - f) * wk_fake_load(k->rmean, bt, pi) + f * mean);
      wk_fake_store(k->rvar, bt, pi,
            (1.0 - f) * wk_fake_load(k->rvar, bt, pi) + f * var * (double)m / (double)(m - 1));
    }
    if (k->smean) {
      wk_fake_store(k->smean, bt, pi, mean);
      wk_fake_store(k->sinv, bt, pi, invstd);
    }
  }
  if (!k->act.on) return;
  /* the reserve space: header, then the activation mask, from y as stored */
  bn_rs_header h;
  memset(&h, 0, sizeof h);
  h.magic = BN_RS_MAGIC;
  h.n = xd->n, h.c = xd->c, h.h = xd->h, h.w = xd->w;
  h.dtype = (int32_t)xd->dtype, h.ops = (int32_t)k->ops, h.mode = (int32_t)k->mode;
  h.mask_valid = k->alpha == 1.0 && k->beta == 0.0;
  h.has_saved = k->smean != NULL;
  h.x_hash = x_hash;
  h.param_hash = param_hash;
  if (k->smean) h.saved_hash = bn_hash(bn_hash(BN_HASH0, &k->bnd, k->smean), &k->bnd, k->sinv);
  unsigned char *mask = (unsigned char *)k->rs + BN_RS_HEADER;
  memset(mask, 0, (bn_elems(xd) + 7) / 8);
  for (int n = 0; n < xd->n; n++)
    for (int c = 0; c < xd->c; c++)
      for (int y = 0; y < xd->h; y++)
        for (int x = 0; x < xd->w; x++)
          if (wk_fake_load(k->y, xt, wk_fake_at(&k->yd, n, c, y, x)) > 0.0) {
            const size_t bit = bn_mask_bit(xd, n, c, y, x);
            mask[bit / 8] |= (unsigned char)(1u << (bit % 8));
          }
  memcpy(k->rs, &h, sizeof h);
}

/* The forward's checks and its work queued on the handle's stream; ex: the Ex
 * function (workspace, reserve space and bnOps apply). */
static cudnnStatus_t bn_forward_training(
    const char *fn, int ex, cudnnHandle_t handle, cudnnBatchNormMode_t mode,
    cudnnBatchNormOps_t ops, const void *alpha, const void *beta, cudnnTensorDescriptor_t xDesc,
    const void *x, cudnnTensorDescriptor_t zDesc, const void *z, cudnnTensorDescriptor_t yDesc,
    void *y, cudnnTensorDescriptor_t bnDesc, const void *scale, const void *bias, double factor,
    void *rmean, void *rvar, double eps, void *smean, void *sinv,
    cudnnActivationDescriptor_t act, void *ws, size_t wsBytes, void *rs, size_t rsBytes) {
  cudnnStatus_t e;
  if (!handle) return bn_bad(fn, "handle is NULL");
  if (!bn_mode_ok(mode)) return bn_bad(fn, "mode %d is no cudnnBatchNormMode_t", (int)mode);
  if (!bn_ops_ok(ops)) return bn_bad(fn, "bnOps %d is no cudnnBatchNormOps_t", (int)ops);
  /* BAD_PARAM: "One of the pointers alpha, beta, x, y, bnScale, bnBias is NULL" */
  if (!alpha || !beta) return bn_bad(fn, "alpha or beta is NULL");
  if ((e = bn_check_x(fn, "xDesc", xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_like(fn, "yDesc", yDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_param_desc(fn, "bnScaleBiasMeanVarDesc", bnDesc, xDesc, mode)) !=
      CUDNN_STATUS_SUCCESS)
    return e;
  if (!x || !y || !scale || !bias) return bn_bad(fn, "x, y, bnScale or bnBias is NULL");
  /* "Both of these pointers can be NULL but only at the same time" (running
   * mean and variance; the saved mean and inverse variance likewise) */
  if (!rmean != !rvar)
    return bn_bad(fn, "exactly one of resultRunningMean, resultRunningVariance is NULL");
  if (!smean != !sinv)
    return bn_bad(fn, "exactly one of resultSaveMean, resultSaveInvVariance is NULL");
  /* "Has to be >= CUDNN_BN_MIN_EPSILON" (cudnn_ops.h) */
  if (!(eps >= CUDNN_BN_MIN_EPSILON))
    return bn_bad(fn, "epsilon %g is below CUDNN_BN_MIN_EPSILON (%g)", eps,
                  (double)CUDNN_BN_MIN_EPSILON);
  const int fused = ex && ops != CUDNN_BATCHNORM_OPS_BN;
  const int add = fused && ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
  size_t ws_need = 0, rs_need = 0;
  if (fused) {
    if ((e = bn_check_act(fn, act)) != CUDNN_STATUS_SUCCESS) return e;
    /* z: "only used when bnOps is CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION,
     * otherwise users may pass NULL" */
    if (add) {
      if ((e = bn_check_like(fn, "zDesc", zDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
      if (!z) return bn_bad(fn, "zData is NULL with CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION");
    }
    const cudnnTensorDescriptor_t t[3] = {xDesc, yDesc, zDesc};
    if ((e = bn_fused_supported(mode, ops, t, add ? 3 : 2)) != CUDNN_STATUS_SUCCESS) return e;
    /* "workSpaceSizeInBytes is equal to or larger than the amount required by
     * cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize()",
     * "reserveSpaceSizeInBytes ... Must be equal or larger than the amount
     * required by cudnnGetBatchNormalizationTrainingExReserveSpaceSize()" */
    ws_need = bn_fwd_ws_need(xDesc);
    rs_need = bn_rs_need(xDesc);
    if ((e = bn_check_spaces(fn, ws, wsBytes, ws_need, rs, rsBytes, rs_need)) !=
        CUDNN_STATUS_SUCCESS)
      return e;
  }
  bn_fwd_ctx k;
  memset(&k, 0, sizeof k);
  k.fn = fn;
  k.mode = mode;
  k.ops = fused ? ops : CUDNN_BATCHNORM_OPS_BN;
  k.alpha = wk_fake_cudnn_scalar(alpha, xDesc->dtype);
  k.beta = wk_fake_cudnn_scalar(beta, xDesc->dtype);
  k.factor = factor;
  k.eps = eps;
  k.xd = *xDesc;
  k.yd = *yDesc;
  if (add) k.zd = *zDesc;
  k.bnd = *bnDesc;
  k.x = x, k.z = add ? z : NULL, k.y = y;
  k.scale = scale, k.bias = bias;
  k.rmean = rmean, k.rvar = rvar, k.smean = smean, k.sinv = sinv;
  k.act.on = fused;
  k.act.nan = fused ? act->nan : CUDNN_NOT_PROPAGATE_NAN;
  if (ex) {
    k.ws = ws, k.ws_bytes = ws ? wsBytes : 0, k.ws_need = ws_need;
    k.rs = rs, k.rs_bytes = rs ? rsBytes : 0, k.rs_need = rs_need;
  }
  bn_fwd_check_ptrs(&k);
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, bn_fwd_run, &k, sizeof k));
}

cudnnStatus_t CUDNNWINAPI cudnnBatchNormalizationForwardTraining(
    cudnnHandle_t handle, cudnnBatchNormMode_t mode, const void *alpha, const void *beta,
    const cudnnTensorDescriptor_t xDesc, const void *x, const cudnnTensorDescriptor_t yDesc,
    void *y, const cudnnTensorDescriptor_t bnScaleBiasMeanVarDesc, const void *bnScale,
    const void *bnBias, double exponentialAverageFactor, void *resultRunningMean,
    void *resultRunningVariance, double epsilon, void *resultSaveMean,
    void *resultSaveInvVariance) {
  return bn_forward_training("cudnnBatchNormalizationForwardTraining", 0, handle, mode,
                             CUDNN_BATCHNORM_OPS_BN, alpha, beta, xDesc, x, NULL, NULL, yDesc, y,
                             bnScaleBiasMeanVarDesc, bnScale, bnBias, exponentialAverageFactor,
                             resultRunningMean, resultRunningVariance, epsilon, resultSaveMean,
                             resultSaveInvVariance, NULL, NULL, 0, NULL, 0);
}

/* "If workspace is NULL and workSpaceSizeInBytes of zero is passed in, this
 * API will function exactly like the non-extended function"; with bnOps BN
 * that is what it computes whatever the workspace (a given workspace and
 * reserve space are checked for their extent). */
cudnnStatus_t CUDNNWINAPI cudnnBatchNormalizationForwardTrainingEx(
    cudnnHandle_t handle, cudnnBatchNormMode_t mode, cudnnBatchNormOps_t bnOps,
    const void *alpha, const void *beta, const cudnnTensorDescriptor_t xDesc, const void *xData,
    const cudnnTensorDescriptor_t zDesc, const void *zData, const cudnnTensorDescriptor_t yDesc,
    void *yData, const cudnnTensorDescriptor_t bnScaleBiasMeanVarDesc, const void *bnScale,
    const void *bnBias, double exponentialAverageFactor, void *resultRunningMean,
    void *resultRunningVariance, double epsilon, void *resultSaveMean,
    void *resultSaveInvVariance, cudnnActivationDescriptor_t activationDesc, void *workspace,
    size_t workSpaceSizeInBytes, void *reserveSpace, size_t reserveSpaceSizeInBytes) {
  return bn_forward_training("cudnnBatchNormalizationForwardTrainingEx", 1, handle, mode, bnOps,
                             alpha, beta, xDesc, xData, zDesc, zData, yDesc, yData,
                             bnScaleBiasMeanVarDesc, bnScale, bnBias, exponentialAverageFactor,
                             resultRunningMean, resultRunningVariance, epsilon, resultSaveMean,
                             resultSaveInvVariance, activationDesc, workspace,
                             workSpaceSizeInBytes, reserveSpace, reserveSpaceSizeInBytes);
}

/* ------------------------------------------------------------------ inference */

typedef struct {
  cudnnBatchNormMode_t mode;
  double alpha, beta, eps;
  bn_tdesc xd, yd, bnd;
  const void *x;
  void *y;
  const void *scale, *bias, *mean, *var;
} bn_inf_ctx;

static void bn_inf_check_ptrs(const bn_inf_ctx *k) {
  bn_check_ptr(k->x, &k->xd, "batchnorm inference x");
  bn_check_ptr(k->y, &k->yd, "batchnorm inference y");
  bn_check_ptr(k->scale, &k->bnd, "batchnorm inference bnScale");
  bn_check_ptr(k->bias, &k->bnd, "batchnorm inference bnBias");
  bn_check_ptr(k->mean, &k->bnd, "batchnorm inference estimatedMean");
  bn_check_ptr(k->var, &k->bnd, "batchnorm inference estimatedVariance");
}

/* y = alpha * (scale * (x - estimatedMean) / sqrt(epsilon + estimatedVariance)
 * + bias) + beta * y (cudnn_ops.h's formula, the documented blend). */
static void bn_inf_run(void *p) {
  const bn_inf_ctx *k = p;
  bn_inf_check_ptrs(k);
  const bn_tdesc *xd = &k->xd;
  const wk_fake_dtype xt = wk_fake_cudnn_dtype(xd->dtype);
  const wk_fake_dtype bt = wk_fake_cudnn_dtype(k->bnd.dtype);
  const int spatial = bn_spatial(k->mode);
  const int groups = bn_groups(xd, spatial);
  for (int g = 0; g < groups; g++) {
    const bn_box b = bn_group(xd, spatial, g);
    const size_t pi = bn_param_at(&k->bnd, spatial, &b);
    const double mean = wk_fake_load(k->mean, bt, pi);
    const double invstd = 1.0 / sqrt(k->eps + wk_fake_load(k->var, bt, pi));
    const double gamma = wk_fake_load(k->scale, bt, pi), beta = wk_fake_load(k->bias, bt, pi);
    BN_EACH(xd, b, in, ih, iw) {
      const double v =
          gamma * (wk_fake_load(k->x, xt, wk_fake_at(xd, in, b.c, ih, iw)) - mean) * invstd + beta;
      const size_t yi = wk_fake_at(&k->yd, in, b.c, ih, iw);
      wk_fake_store(k->y, xt, yi, bn_blend(k->alpha, k->beta, v, k->y, xt, yi));
    }
  }
}

cudnnStatus_t CUDNNWINAPI cudnnBatchNormalizationForwardInference(
    cudnnHandle_t handle, cudnnBatchNormMode_t mode, const void *alpha, const void *beta,
    const cudnnTensorDescriptor_t xDesc, const void *x, const cudnnTensorDescriptor_t yDesc,
    void *y, const cudnnTensorDescriptor_t bnScaleBiasMeanVarDesc, const void *bnScale,
    const void *bnBias, const void *estimatedMean, const void *estimatedVariance,
    double epsilon) {
  static const char fn[] = "cudnnBatchNormalizationForwardInference";
  cudnnStatus_t e;
  if (!handle) return bn_bad(fn, "handle is NULL");
  if (!bn_mode_ok(mode)) return bn_bad(fn, "mode %d is no cudnnBatchNormMode_t", (int)mode);
  if (!alpha || !beta) return bn_bad(fn, "alpha or beta is NULL");
  if ((e = bn_check_x(fn, "xDesc", xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_like(fn, "yDesc", yDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_param_desc(fn, "bnScaleBiasMeanVarDesc", bnScaleBiasMeanVarDesc, xDesc,
                               mode)) != CUDNN_STATUS_SUCCESS)
    return e;
  /* BAD_PARAM: "One of the pointers alpha, beta, x, y, bnScaleData,
   * bnBiasData, estimatedMean, estimatedInvVariance is NULL" */
  if (!x || !y || !bnScale || !bnBias || !estimatedMean || !estimatedVariance)
    return bn_bad(fn, "x, y, bnScale, bnBias, estimatedMean or estimatedVariance is NULL");
  if (!(epsilon >= CUDNN_BN_MIN_EPSILON))
    return bn_bad(fn, "epsilon %g is below CUDNN_BN_MIN_EPSILON (%g)", epsilon,
                  (double)CUDNN_BN_MIN_EPSILON);
  bn_inf_ctx k;
  memset(&k, 0, sizeof k);
  k.mode = mode;
  k.alpha = wk_fake_cudnn_scalar(alpha, xDesc->dtype);
  k.beta = wk_fake_cudnn_scalar(beta, xDesc->dtype);
  k.eps = epsilon;
  k.xd = *xDesc, k.yd = *yDesc, k.bnd = *bnScaleBiasMeanVarDesc;
  k.x = x, k.y = y;
  k.scale = bnScale, k.bias = bnBias, k.mean = estimatedMean, k.var = estimatedVariance;
  bn_inf_check_ptrs(&k);
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, bn_inf_run, &k, sizeof k));
}

/* ------------------------------------------------------------------- backward */

typedef struct {
  const char *fn; /* a string literal */
  cudnnBatchNormMode_t mode;
  cudnnBatchNormOps_t ops; /* BN for the plain function */
  double a_data, b_data, a_param, b_param, eps;
  bn_tdesc xd, yd, dyd, dzd, dxd, bnd;
  const void *x, *y, *dy;
  void *dz, *dx;
  const void *scale, *bias;
  void *dscale, *dbias;
  const void *smean, *sinv;
  int act; /* bnOps with an activation (RELU) */
  void *ws, *rs;
  size_t ws_bytes, ws_need, rs_bytes, rs_need;
} bn_bwd_ctx;

static void bn_bwd_check_ptrs(const bn_bwd_ctx *k) {
  bn_check_ptr(k->x, &k->xd, "batchnorm backward x");
  bn_check_ptr(k->dy, &k->dyd, "batchnorm backward dy");
  bn_check_ptr(k->dx, &k->dxd, "batchnorm backward dx");
  if (k->act) {
    bn_check_ptr(k->y, &k->yd, "batchnorm backward y");
    bn_check_ptr(k->bias, &k->bnd, "batchnorm backward bnBias");
  }
  if (k->ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION)
    bn_check_ptr(k->dz, &k->dzd, "batchnorm backward dz");
  bn_check_ptr(k->scale, &k->bnd, "batchnorm backward bnScale");
  bn_check_ptr(k->dscale, &k->bnd, "batchnorm backward dBnScaleResult");
  bn_check_ptr(k->dbias, &k->bnd, "batchnorm backward dBnBiasResult");
  bn_check_ptr(k->smean, &k->bnd, "batchnorm backward savedMean");
  bn_check_ptr(k->sinv, &k->bnd, "batchnorm backward savedInvVariance");
  if (k->ws && k->ws_bytes) wk_fake_check_device(k->ws, k->ws_bytes, "batchnorm workspace");
  if (k->rs && k->rs_bytes) wk_fake_check_device(k->rs, k->rs_bytes, "batchnorm reserveSpace");
}

/* The backward Ex's reserve space must hold what its forward Ex stored
 * ("must be preserved"); with the saved statistics given, x, bnScale, bnBias
 * and the statistics must be the forward's ("has to remain unchanged until
 * this backward function is called"); and y, "the original forward output",
 * must still give the activation mask the forward produced. */
static void bn_bwd_check_reserve(const bn_bwd_ctx *k) {
  bn_rs_header h;
  memcpy(&h, k->rs, sizeof h);
  const bn_tdesc *xd = &k->xd;
  if (h.magic != BN_RS_MAGIC || h.n != xd->n || h.c != xd->c || h.h != xd->h || h.w != xd->w ||
      h.dtype != (int32_t)xd->dtype || h.ops != (int32_t)k->ops)
    wk_fake_die("cuDNN", "%s: reserveSpace %p does not hold what "
                "cudnnBatchNormalizationForwardTrainingEx stored for this %dx%dx%dx%d x and "
                "bnOps %d (not preserved since, or not that forward's)", k->fn, k->rs, xd->n,
                xd->c, xd->h, xd->w, (int)k->ops);
  if (k->smean) {
    if (!h.has_saved)
      wk_fake_die("cuDNN", "%s: savedMean/savedInvVariance given, but the forward saved none",
                  k->fn);
    if (bn_hash(bn_hash(BN_HASH0, &k->bnd, k->smean), &k->bnd, k->sinv) != h.saved_hash)
      wk_fake_die("cuDNN", "%s: savedMean/savedInvVariance are not what the forward saved",
                  k->fn);
    if (bn_hash(BN_HASH0, xd, k->x) != h.x_hash)
      wk_fake_die("cuDNN", "%s: x changed since the forward (cuDNN: it has to remain "
                  "unchanged until the backward function is called)", k->fn);
    if (bn_hash(bn_hash(BN_HASH0, &k->bnd, k->scale), &k->bnd, k->bias) != h.param_hash)
      wk_fake_die("cuDNN", "%s: bnScale or bnBias changed since the forward (cuDNN: they have "
                  "to remain unchanged until the backward function is called)", k->fn);
  }
  if (!h.mask_valid) return; /* a blended forward output gives no mask to compare */
  const wk_fake_dtype xt = wk_fake_cudnn_dtype(xd->dtype);
  const unsigned char *mask = (const unsigned char *)k->rs + BN_RS_HEADER;
  for (int n = 0; n < xd->n; n++)
    for (int c = 0; c < xd->c; c++)
      for (int y = 0; y < xd->h; y++)
        for (int x = 0; x < xd->w; x++) {
          const size_t bit = bn_mask_bit(xd, n, c, y, x);
          const int fwd = (mask[bit / 8] >> (bit % 8)) & 1;
          const int now = wk_fake_load(k->y, xt, wk_fake_at(&k->yd, n, c, y, x)) > 0.0;
          if (fwd != now)
            wk_fake_die("cuDNN", "%s: yData at (%d, %d, %d, %d) is %s where the forward's "
                        "output was %s: yData is not the original forward output", k->fn, n, c,
                        y, x, now ? "positive" : "not positive",
                        fwd ? "positive" : "not positive");
        }
}

/* Per group, with the statistics saved by the forward (or, both NULL,
 * recomputed from x: the batch mean and 1 / sqrt(biased variance + epsilon)),
 * g = dy (with an activation: dy where y > 0, else 0, the mask from yData,
 * "the original forward output"), xhat = (x - mean) * invstd, M the group's
 * size:
 *   dBias = sum g, dScale = sum g * xhat, blended by alphaParamDiff/betaParamDiff;
 *   dx = scale * invstd * (g - sum g / M - xhat * sum(g * xhat) / M), blended by
 *   alphaDataDiff/betaDataDiff; with the add, dz = g (written). */
static void bn_bwd_run(void *p) {
  const bn_bwd_ctx *k = p;
  bn_bwd_check_ptrs(k);
  bn_scribble(k->ws, k->ws_need);
  if (k->act) bn_bwd_check_reserve(k);
  const bn_tdesc *xd = &k->xd;
  const wk_fake_dtype xt = wk_fake_cudnn_dtype(xd->dtype);
  const wk_fake_dtype bt = wk_fake_cudnn_dtype(k->bnd.dtype);
  const int spatial = bn_spatial(k->mode);
  const int add = k->ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
  const int groups = bn_groups(xd, spatial);
  for (int gi = 0; gi < groups; gi++) {
    const bn_box b = bn_group(xd, spatial, gi);
    const size_t pi = bn_param_at(&k->bnd, spatial, &b);
    const double m = (double)bn_count(xd, &b);
    double mean, invstd;
    if (k->smean) {
      mean = wk_fake_load(k->smean, bt, pi);
      invstd = wk_fake_load(k->sinv, bt, pi);
    } else {
      double var;
      bn_stats(xd, k->x, &b, &mean, &var);
      invstd = 1.0 / sqrt(var + k->eps);
    }
    double sg = 0.0, sgx = 0.0;
    BN_EACH(xd, b, in, ih, iw) {
      double g = wk_fake_load(k->dy, xt, wk_fake_at(&k->dyd, in, b.c, ih, iw));
      if (k->act && !(wk_fake_load(k->y, xt, wk_fake_at(&k->yd, in, b.c, ih, iw)) > 0.0)) g = 0.0;
      const double xhat = (wk_fake_load(k->x, xt, wk_fake_at(xd, in, b.c, ih, iw)) - mean) * invstd;
      sg += g;
      sgx += g * xhat;
    }
    wk_fake_store(k->dscale, bt, pi, bn_blend(k->a_param, k->b_param, sgx, k->dscale, bt, pi));
    wk_fake_store(k->dbias, bt, pi, bn_blend(k->a_param, k->b_param, sg, k->dbias, bt, pi));
    const double scale = wk_fake_load(k->scale, bt, pi) * invstd;
    BN_EACH(xd, b, in, ih, iw) {
      double g = wk_fake_load(k->dy, xt, wk_fake_at(&k->dyd, in, b.c, ih, iw));
      if (k->act && !(wk_fake_load(k->y, xt, wk_fake_at(&k->yd, in, b.c, ih, iw)) > 0.0)) g = 0.0;
      const double xhat = (wk_fake_load(k->x, xt, wk_fake_at(xd, in, b.c, ih, iw)) - mean) * invstd;
      const double dxv = scale * (g - sg / m - xhat * sgx / m);
      const size_t di = wk_fake_at(&k->dxd, in, b.c, ih, iw);
      /* dz before dx: dy may be dz's or dx's buffer, read above for this element */
      if (add) wk_fake_store(k->dz, xt, wk_fake_at(&k->dzd, in, b.c, ih, iw), g);
      wk_fake_store(k->dx, xt, di, bn_blend(k->a_data, k->b_data, dxv, k->dx, xt, di));
    }
  }
}

static cudnnStatus_t bn_backward(
    const char *fn, int ex, cudnnHandle_t handle, cudnnBatchNormMode_t mode,
    cudnnBatchNormOps_t ops, const void *alphaDataDiff, const void *betaDataDiff,
    const void *alphaParamDiff, const void *betaParamDiff, cudnnTensorDescriptor_t xDesc,
    const void *x, cudnnTensorDescriptor_t yDesc, const void *y, cudnnTensorDescriptor_t dyDesc,
    const void *dy, cudnnTensorDescriptor_t dzDesc, void *dz, cudnnTensorDescriptor_t dxDesc,
    void *dx, cudnnTensorDescriptor_t bnDesc, const void *scale, const void *bias, void *dscale,
    void *dbias, double eps, const void *smean, const void *sinv,
    cudnnActivationDescriptor_t act, void *ws, size_t wsBytes, void *rs, size_t rsBytes) {
  cudnnStatus_t e;
  if (!handle) return bn_bad(fn, "handle is NULL");
  if (!bn_mode_ok(mode)) return bn_bad(fn, "mode %d is no cudnnBatchNormMode_t", (int)mode);
  if (!bn_ops_ok(ops)) return bn_bad(fn, "bnOps %d is no cudnnBatchNormOps_t", (int)ops);
  /* BAD_PARAM: "Any of the pointers alpha, beta, x, dy, dx, bnScale,
   * resultBnScaleDiff, resultBnBiasDiff is NULL" (the four blend factors) */
  if (!alphaDataDiff || !betaDataDiff || !alphaParamDiff || !betaParamDiff)
    return bn_bad(fn, "one of alphaDataDiff, betaDataDiff, alphaParamDiff, betaParamDiff is "
                  "NULL");
  if ((e = bn_check_x(fn, "xDesc", xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_like(fn, "dyDesc", dyDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_like(fn, "dxDesc", dxDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_param_desc(fn, "dBnScaleBiasDesc", bnDesc, xDesc, mode)) !=
      CUDNN_STATUS_SUCCESS)
    return e;
  if (!x || !dy || !dx || !scale || !dscale || !dbias)
    return bn_bad(fn, "x, dy, dx, bnScale, dBnScaleResult or dBnBiasResult is NULL");
  /* "both of these parameters can be NULL but only at the same time" */
  if (!smean != !sinv) return bn_bad(fn, "exactly one of savedMean, savedInvVariance is NULL");
  if (!(eps >= CUDNN_BN_MIN_EPSILON))
    return bn_bad(fn, "epsilon %g is below CUDNN_BN_MIN_EPSILON (%g)", eps,
                  (double)CUDNN_BN_MIN_EPSILON);
  const int fused = ex && ops != CUDNN_BATCHNORM_OPS_BN;
  const int add = fused && ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
  size_t ws_need = 0, rs_need = 0;
  const double a_data = wk_fake_cudnn_scalar(alphaDataDiff, xDesc->dtype);
  const double b_data = wk_fake_cudnn_scalar(betaDataDiff, xDesc->dtype);
  if (fused) {
    if ((e = bn_check_act(fn, act)) != CUDNN_STATUS_SUCCESS) return e;
    /* y: "not needed if bnOps is set to CUDNN_BATCHNORM_OPS_BN"; bnBias:
     * "needed if there is activation" (cudnn_ops.h) */
    if ((e = bn_check_like(fn, "yDesc", yDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
    if (!y) return bn_bad(fn, "yData is NULL with an activation in bnOps");
    if (!bias) return bn_bad(fn, "bnBiasData is NULL with an activation in bnOps");
    /* dz: "not needed when bnOps is CUDNN_BATCHNORM_OPS_BN or
     * CUDNN_BATCHNORM_OPS_BN_ACTIVATION" */
    if (add) {
      if ((e = bn_check_like(fn, "dzDesc", dzDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
      if (!dz) return bn_bad(fn, "dzData is NULL with CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION");
      /* alphaDataDiff/betaDataDiff are documented to blend dx; whether dz is
       * blended too is not documented */
      if (a_data != 1.0 || b_data != 0.0)
        wk_fake_die("cuDNN", "%s: BN_ADD_ACTIVATION with alphaDataDiff %g, betaDataDiff %g: "
                    "whether dz is blended is not documented (not implemented)", fn, a_data,
                    b_data);
    }
    const cudnnTensorDescriptor_t t[5] = {xDesc, yDesc, dyDesc, dxDesc, dzDesc};
    if ((e = bn_fused_supported(mode, ops, t, add ? 5 : 4)) != CUDNN_STATUS_SUCCESS) return e;
    /* workSpaceSizeInBytes "must be large enough to trigger the fast NHWC
     * semi-persistent kernel"; reserveSpaceSizeInBytes "must be equal or
     * larger than the amount required by
     * cudnnGetBatchNormalizationTrainingExReserveSpaceSize()" */
    ws_need = bn_bwd_ws_need(xDesc);
    rs_need = bn_rs_need(xDesc);
    if ((e = bn_check_spaces(fn, ws, wsBytes, ws_need, rs, rsBytes, rs_need)) !=
        CUDNN_STATUS_SUCCESS)
      return e;
  }
  bn_bwd_ctx k;
  memset(&k, 0, sizeof k);
  k.fn = fn;
  k.mode = mode;
  k.ops = fused ? ops : CUDNN_BATCHNORM_OPS_BN;
  k.a_data = a_data;
  k.b_data = b_data;
  k.a_param = wk_fake_cudnn_scalar(alphaParamDiff, xDesc->dtype);
  k.b_param = wk_fake_cudnn_scalar(betaParamDiff, xDesc->dtype);
  k.eps = eps;
  k.xd = *xDesc, k.dyd = *dyDesc, k.dxd = *dxDesc, k.bnd = *bnDesc;
  if (fused) k.yd = *yDesc;
  if (add) k.dzd = *dzDesc;
  k.x = x, k.dy = dy, k.dx = dx;
  k.y = fused ? y : NULL;
  k.dz = add ? dz : NULL;
  k.scale = scale, k.bias = fused ? bias : NULL;
  k.dscale = dscale, k.dbias = dbias;
  k.smean = smean, k.sinv = sinv;
  k.act = fused;
  if (ex) {
    k.ws = ws, k.ws_bytes = ws ? wsBytes : 0, k.ws_need = ws_need;
    k.rs = rs, k.rs_bytes = rs ? rsBytes : 0, k.rs_need = rs_need;
  }
  bn_bwd_check_ptrs(&k);
  return wk_fake_cudnn_status(wk_fake_enqueue(handle->stream, bn_bwd_run, &k, sizeof k));
}

cudnnStatus_t CUDNNWINAPI cudnnBatchNormalizationBackward(
    cudnnHandle_t handle, cudnnBatchNormMode_t mode, const void *alphaDataDiff,
    const void *betaDataDiff, const void *alphaParamDiff, const void *betaParamDiff,
    const cudnnTensorDescriptor_t xDesc, const void *x, const cudnnTensorDescriptor_t dyDesc,
    const void *dy, const cudnnTensorDescriptor_t dxDesc, void *dx,
    const cudnnTensorDescriptor_t dBnScaleBiasDesc, const void *bnScale, void *dBnScaleResult,
    void *dBnBiasResult, double epsilon, const void *savedMean, const void *savedInvVariance) {
  return bn_backward("cudnnBatchNormalizationBackward", 0, handle, mode, CUDNN_BATCHNORM_OPS_BN,
                     alphaDataDiff, betaDataDiff, alphaParamDiff, betaParamDiff, xDesc, x, NULL,
                     NULL, dyDesc, dy, NULL, NULL, dxDesc, dx, dBnScaleBiasDesc, bnScale, NULL,
                     dBnScaleResult, dBnBiasResult, epsilon, savedMean, savedInvVariance, NULL,
                     NULL, 0, NULL, 0);
}

cudnnStatus_t CUDNNWINAPI cudnnBatchNormalizationBackwardEx(
    cudnnHandle_t handle, cudnnBatchNormMode_t mode, cudnnBatchNormOps_t bnOps,
    const void *alphaDataDiff, const void *betaDataDiff, const void *alphaParamDiff,
    const void *betaParamDiff, const cudnnTensorDescriptor_t xDesc, const void *xData,
    const cudnnTensorDescriptor_t yDesc, const void *yData, const cudnnTensorDescriptor_t dyDesc,
    const void *dyData, const cudnnTensorDescriptor_t dzDesc, void *dzData,
    const cudnnTensorDescriptor_t dxDesc, void *dxData,
    const cudnnTensorDescriptor_t dBnScaleBiasDesc, const void *bnScaleData,
    const void *bnBiasData, void *dBnScaleData, void *dBnBiasData, double epsilon,
    const void *savedMean, const void *savedInvVariance,
    cudnnActivationDescriptor_t activationDesc, void *workSpace, size_t workSpaceSizeInBytes,
    void *reserveSpace, size_t reserveSpaceSizeInBytes) {
  return bn_backward("cudnnBatchNormalizationBackwardEx", 1, handle, mode, bnOps, alphaDataDiff,
                     betaDataDiff, alphaParamDiff, betaParamDiff, xDesc, xData, yDesc, yData,
                     dyDesc, dyData, dzDesc, dzData, dxDesc, dxData, dBnScaleBiasDesc,
                     bnScaleData, bnBiasData, dBnScaleData, dBnBiasData, epsilon, savedMean,
                     savedInvVariance, activationDesc, workSpace, workSpaceSizeInBytes,
                     reserveSpace, reserveSpaceSizeInBytes);
}

/* ---------------------------------------------------------------- size queries */

/* The queries check what the calls would (descriptors: BAD_PARAM; the fused
 * ops' configuration: NOT_SUPPORTED), so a caller learns of a refusal before
 * allocating. */
cudnnStatus_t CUDNNWINAPI cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(
    cudnnHandle_t handle, cudnnBatchNormMode_t mode, cudnnBatchNormOps_t bnOps,
    const cudnnTensorDescriptor_t xDesc, const cudnnTensorDescriptor_t zDesc,
    const cudnnTensorDescriptor_t yDesc, const cudnnTensorDescriptor_t bnScaleBiasMeanVarDesc,
    const cudnnActivationDescriptor_t activationDesc, size_t *sizeInBytes) {
  static const char fn[] = "cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize";
  cudnnStatus_t e;
  if (!handle || !sizeInBytes) return bn_bad(fn, "handle or sizeInBytes is NULL");
  if (!bn_mode_ok(mode)) return bn_bad(fn, "mode %d is no cudnnBatchNormMode_t", (int)mode);
  if (!bn_ops_ok(bnOps)) return bn_bad(fn, "bnOps %d is no cudnnBatchNormOps_t", (int)bnOps);
  if ((e = bn_check_x(fn, "xDesc", xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_like(fn, "yDesc", yDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_param_desc(fn, "bnScaleBiasMeanVarDesc", bnScaleBiasMeanVarDesc, xDesc,
                               mode)) != CUDNN_STATUS_SUCCESS)
    return e;
  if (bnOps == CUDNN_BATCHNORM_OPS_BN) {
    *sizeInBytes = 0;
    return CUDNN_STATUS_SUCCESS;
  }
  if ((e = bn_check_act(fn, activationDesc)) != CUDNN_STATUS_SUCCESS) return e;
  const int add = bnOps == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
  if (add && (e = bn_check_like(fn, "zDesc", zDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  const cudnnTensorDescriptor_t t[3] = {xDesc, yDesc, zDesc};
  if ((e = bn_fused_supported(mode, bnOps, t, add ? 3 : 2)) != CUDNN_STATUS_SUCCESS) return e;
  *sizeInBytes = bn_fwd_ws_need(xDesc);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetBatchNormalizationBackwardExWorkspaceSize(
    cudnnHandle_t handle, cudnnBatchNormMode_t mode, cudnnBatchNormOps_t bnOps,
    const cudnnTensorDescriptor_t xDesc, const cudnnTensorDescriptor_t yDesc,
    const cudnnTensorDescriptor_t dyDesc, const cudnnTensorDescriptor_t dzDesc,
    const cudnnTensorDescriptor_t dxDesc, const cudnnTensorDescriptor_t dBnScaleBiasDesc,
    const cudnnActivationDescriptor_t activationDesc, size_t *sizeInBytes) {
  static const char fn[] = "cudnnGetBatchNormalizationBackwardExWorkspaceSize";
  cudnnStatus_t e;
  if (!handle || !sizeInBytes) return bn_bad(fn, "handle or sizeInBytes is NULL");
  if (!bn_mode_ok(mode)) return bn_bad(fn, "mode %d is no cudnnBatchNormMode_t", (int)mode);
  if (!bn_ops_ok(bnOps)) return bn_bad(fn, "bnOps %d is no cudnnBatchNormOps_t", (int)bnOps);
  if ((e = bn_check_x(fn, "xDesc", xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_like(fn, "dyDesc", dyDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_like(fn, "dxDesc", dxDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_param_desc(fn, "dBnScaleBiasDesc", dBnScaleBiasDesc, xDesc, mode)) !=
      CUDNN_STATUS_SUCCESS)
    return e;
  if (bnOps == CUDNN_BATCHNORM_OPS_BN) {
    *sizeInBytes = 0;
    return CUDNN_STATUS_SUCCESS;
  }
  if ((e = bn_check_act(fn, activationDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if ((e = bn_check_like(fn, "yDesc", yDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  const int add = bnOps == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
  if (add && (e = bn_check_like(fn, "dzDesc", dzDesc, xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  const cudnnTensorDescriptor_t t[5] = {xDesc, yDesc, dyDesc, dxDesc, dzDesc};
  if ((e = bn_fused_supported(mode, bnOps, t, add ? 5 : 4)) != CUDNN_STATUS_SUCCESS) return e;
  *sizeInBytes = bn_bwd_ws_need(xDesc);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t CUDNNWINAPI cudnnGetBatchNormalizationTrainingExReserveSpaceSize(
    cudnnHandle_t handle, cudnnBatchNormMode_t mode, cudnnBatchNormOps_t bnOps,
    const cudnnActivationDescriptor_t activationDesc, const cudnnTensorDescriptor_t xDesc,
    size_t *sizeInBytes) {
  static const char fn[] = "cudnnGetBatchNormalizationTrainingExReserveSpaceSize";
  cudnnStatus_t e;
  if (!handle || !sizeInBytes) return bn_bad(fn, "handle or sizeInBytes is NULL");
  if (!bn_mode_ok(mode)) return bn_bad(fn, "mode %d is no cudnnBatchNormMode_t", (int)mode);
  if (!bn_ops_ok(bnOps)) return bn_bad(fn, "bnOps %d is no cudnnBatchNormOps_t", (int)bnOps);
  if ((e = bn_check_x(fn, "xDesc", xDesc)) != CUDNN_STATUS_SUCCESS) return e;
  if (bnOps == CUDNN_BATCHNORM_OPS_BN) {
    *sizeInBytes = 0;
    return CUDNN_STATUS_SUCCESS;
  }
  if ((e = bn_check_act(fn, activationDesc)) != CUDNN_STATUS_SUCCESS) return e;
  /* only x is known here: its own type, layout and mode (y, z, dy, dx, dz
   * are checked by the workspace queries and the calls) */
  const cudnnTensorDescriptor_t t[1] = {xDesc};
  if ((e = bn_fused_supported(mode, bnOps, t, 1)) != CUDNN_STATUS_SUCCESS) return e;
  *sizeInBytes = bn_rs_need(xDesc);
  return CUDNN_STATUS_SUCCESS;
}
