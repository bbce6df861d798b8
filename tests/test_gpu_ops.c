/* test_gpu_ops.c - the CUDA backend's kernels against the reference ops.
 *
 * Two suites:
 * - "gpu_host" needs the backend built but no device: wk_cuda_describe, the
 *   error text of the WK_*_TRY macros, launchers rejecting bad arguments, and
 *   device calls failing cleanly (not aborting) when there is no device.
 * - "gpu_kernels" runs every kernel on a device, on random inputs of odd sizes,
 *   and compares with the CPU reference: bit for bit for relu, relu6 and add,
 *   normalised error <= 1e-6 for the uint8 -> float normalisation; for the
 *   training kernels (train.cu) bit for bit for dropout, global average pool,
 *   the softmax cross-entropy backward, column sums, SGD, AdamW and scale,
 *   exactly for the rows' argmax (ties and NaNs included),
 *   1e-6 relative per element for the softmax forward (probabilities and row
 *   losses), 1e-10 relative for the double sum. The 16-bit (*_h: bfloat16,
 *   float16) kernels, both formats: bit for bit the float reference on the
 *   widened inputs rounded once (any NaN for a NaN), the column sums within
 *   a bound derived from their float accumulation (test_col_sum_h).
 *   Synchronised batchnorm (syncbn.cu) in float32, bfloat16 and float16
 *   storage against src/nn/exec_syncbn.c (one rank, no relu) and
 *   wk_batchnorm_running_update: bit for bit for the mean, the running
 *   statistics, invstd, the normalisation (also with an addend and the relu,
 *   inference's fused groups) and the parameters' and the input's gradients; the double sums within 1e-12 of the sum of their
 *   terms' magnitudes (a bound derived in test_bn_sums).
 * With no device the host suite still runs and the process then exits 77, which
 * ctest reports as skipped (SKIP_RETURN_CODE in tests/CMakeLists.txt).
 *
 * Built with WK_GPU_EMU (test_gpu_ops_emu, test_gpu_ops_emu_fma), the kernel
 * suite and the launchers' argument checks run on the host against the
 * kernel emulator (tests/emu/emu.cpp), which stands in for the device and for
 * cuda_backend.c's buffer calls; the checks of the backend itself
 * (describe, the TRY macros, device errors) are left out. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WK_GPU_EMU
#include "emu/emu_backend.h"
#else
#include "cuda/cuda_backend.h"
#endif
#include "ops/ops.h"
#include "ops/plan.h"
#include "ops/ref.h"
#include "test_util.h"
#include "train/metrics.h"
#include "train/optim_impl.h"
#include "wk_kernels.h"

/* The host references round every float operation on its own, as the kernels
 * do (no fused multiply-adds): ISO C11 mode already keeps GCC from
 * contracting (-std=c11: -ffp-contract=off); clang contracts within an
 * expression unless told not to. (GCC warns about this pragma, hence the
 * guard.) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

enum { WKT_SKIP = 77 };

/* Set in main before the suites run. */
static int n_devices;

#define CK_WK(expr)                                                           \
  do {                                                                        \
    const wk_status ck_s_ = (expr);                                           \
    ck_assert_msg(ck_s_ == WK_OK, "%s: %s", #expr, wk_last_error());          \
  } while (0)

#define CK_LAUNCH(expr)                                                       \
  do {                                                                        \
    const int ck_e_ = (expr);                                                 \
    ck_assert_msg(ck_e_ == 0, "%s: %s", #expr,                                \
                  cudaGetErrorString((cudaError_t)ck_e_));                    \
  } while (0)

#ifndef WK_GPU_EMU
static void ck_contains(const char *text, const char *part) {
  ck_assert_msg(strstr(text, part) != NULL, "'%s' not in '%s'", part, text);
}
#endif

/* Exact equality: same bits, or both NaN (CUDA returns its canonical NaN). */
static void ck_same_f32(const char *what, const float *got, const float *want, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t g, w;
    memcpy(&g, &got[i], sizeof g);
    memcpy(&w, &want[i], sizeof w);
    if (g == w || (isnan(got[i]) && isnan(want[i]))) continue;
    ck_abort_msg("%s: element %lld of %lld: got %a, want %a", what, (long long)i, (long long)n,
                 (double)got[i], (double)want[i]);
  }
}

static float *host_f32(int64_t n) { /* zeroed: no uninitialised bytes reach the device */
  float *p = calloc(n > 0 ? (size_t)n : 1, sizeof *p);
  ck_assert_ptr_nonnull(p);
  return p;
}

static float *device_f32(const float *host, int64_t n) {
  void *d = NULL;
  CK_WK(wk_cuda_malloc(&d, (size_t)n * sizeof(float)));
  if (host) CK_WK(wk_cuda_copy_h2d(d, host, (size_t)n * sizeof(float)));
  return d;
}

static void to_host(float *host, const float *dev, int64_t n) {
  CK_WK(wk_cuda_copy_d2h(host, dev, (size_t)n * sizeof(float)));
}

/* A device copy of n_bytes of host memory (n_bytes > 0). */
static void *device_copy(const void *host, size_t n_bytes) {
  void *d = NULL;
  CK_WK(wk_cuda_malloc(&d, n_bytes));
  CK_WK(wk_cuda_copy_h2d(d, host, n_bytes));
  return d;
}

/* ------------------------------------------------------------------ host suite */

#ifndef WK_GPU_EMU /* the backend's own calls; the emulator has only the kernels */
START_TEST(test_describe) {
  char buf[8192];
  ck_assert(wk_cuda_compiled());
  CK_WK(wk_cuda_describe(buf, sizeof buf));
  printf("%s", buf);
  ck_contains(buf, "CUDA backend: built");
  ck_contains(buf, "CUDA runtime: ");
  ck_contains(buf, "CUDA driver: ");
  ck_contains(buf, "cuDNN: ");
  ck_contains(buf, "cuBLAS: ");
  ck_contains(buf, "NCCL: ");
  if (n_devices == 0) ck_contains(buf, "no CUDA device");
  else ck_contains(buf, "device 0: ");

  char tiny[8];
  ck_assert_int_eq(wk_cuda_describe(tiny, sizeof tiny), WK_ERR_LIMIT);
  ck_assert_uint_eq(strlen(tiny), sizeof tiny - 1);
  ck_assert_int_eq(wk_cuda_describe(NULL, 0), WK_ERR_INVALID_ARG);
}
END_TEST

static wk_status fail_cuda(void) {
  WK_CUDA_TRY(cudaErrorInvalidValue);
  return WK_OK;
}
static wk_status fail_cudnn(void) {
  WK_CUDNN_TRY(CUDNN_STATUS_BAD_PARAM);
  return WK_OK;
}
static wk_status fail_cublas(void) {
  WK_CUBLAS_TRY(CUBLAS_STATUS_INVALID_VALUE);
  return WK_OK;
}
static wk_status fail_nccl(void) {
  WK_NCCL_TRY(ncclInvalidArgument);
  return WK_OK;
}
static wk_status pass_all(void) {
  WK_CUDA_TRY(cudaSuccess);
  WK_CUDNN_TRY(CUDNN_STATUS_SUCCESS);
  WK_CUBLAS_TRY(CUBLAS_STATUS_SUCCESS);
  WK_NCCL_TRY(ncclSuccess);
  return WK_OK;
}

/* Each macro names the library, the statement, this file and the library's own
 * name for the error. */
START_TEST(test_try_macros) {
  ck_assert_int_eq(fail_cuda(), WK_ERR_BACKEND);
  ck_contains(wk_last_error(), "CUDA: cudaErrorInvalidValue failed at ");
  ck_contains(wk_last_error(), "test_gpu_ops.c:");
  ck_contains(wk_last_error(), "invalid argument");
  ck_assert_int_eq(fail_cudnn(), WK_ERR_BACKEND);
  ck_contains(wk_last_error(), "cuDNN: CUDNN_STATUS_BAD_PARAM failed at ");
  ck_contains(wk_last_error(), "test_gpu_ops.c:");
  ck_assert_int_eq(fail_cublas(), WK_ERR_BACKEND);
  ck_contains(wk_last_error(), "cuBLAS: CUBLAS_STATUS_INVALID_VALUE failed at ");
  ck_contains(wk_last_error(), "test_gpu_ops.c:");
  ck_assert_int_eq(fail_nccl(), WK_ERR_BACKEND);
  ck_contains(wk_last_error(), "NCCL: ncclInvalidArgument failed at ");
  ck_contains(wk_last_error(), "test_gpu_ops.c:");
  ck_assert_int_eq(pass_all(), WK_OK);
}
END_TEST

#endif

/* Rejected before any CUDA call, so this runs without a device. */
START_TEST(test_launch_arguments) {
  const float mean[5] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, sd[5] = {1, 1, 1, 1, 1};
  const float zero_sd[1] = {0.0f};
  const int bad = (int)cudaErrorInvalidValue;
  ck_assert_int_eq(wk_launch_relu_forward_f32(0, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_relu_forward_f32(-1, NULL, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_relu6_forward_f32(3, NULL, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_relu_backward_f32(0, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_relu6_backward_f32(2, NULL, NULL, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_add_forward_f32(0, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_add_forward_f32(5, NULL, NULL, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_normalize_u8_f32(0, 9, 9, 3, NULL, NULL, mean, sd, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_normalize_u8_f32(1, 1, 1, 5, NULL, NULL, mean, sd, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_normalize_u8_f32(1, 1, 1, 0, NULL, NULL, mean, sd, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_normalize_u8_f32(0, 1, 1, 1, NULL, NULL, mean, zero_sd, NULL, NULL),
                   0);
  ck_assert_int_eq(wk_launch_normalize_u8_f32(1, 1, 1, 3, NULL, NULL, NULL, sd, NULL, NULL), bad);
  ck_assert_int_eq(
      wk_launch_normalize_u8_f32(INT64_MAX, INT64_MAX, 1, 1, NULL, NULL, mean, sd, NULL, NULL),
      bad);
}
END_TEST

/* The training kernels' launchers (train.cu): empty work launches nothing,
 * bad arguments are rejected before any CUDA call. */
START_TEST(test_launch_arguments_train) {
  const int bad = (int)cudaErrorInvalidValue;
  float *fake = (float *)&n_devices; /* never dereferenced: rejected first */
  ck_assert_int_eq(wk_launch_dropout_forward_f32(0, 0.5, 1, 2, 3, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_dropout_forward_f32(-1, 0.5, 1, 2, 3, NULL, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_dropout_forward_f32(4, 1.0, 1, 2, 3, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_dropout_forward_f32(4, -0.1, 1, 2, 3, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_dropout_forward_f32(4, NAN, 1, 2, 3, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_dropout_forward_f32(4, 0.5, 1, 2, -1, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_dropout_forward_f32(4, 0.5, 1, 2, INT64_MAX - 2, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_dropout_backward_f32(4, 0.5, 1, 2, 3, NULL, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_global_avgpool_forward_f32(0, 5, 3, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_global_avgpool_forward_f32(2, 0, 3, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_global_avgpool_forward_f32(2, 5, -3, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_global_avgpool_forward_f32(INT64_MAX, 2, 2, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_global_avgpool_backward_f32(2, 0, 3, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_global_avgpool_backward_f32(2, 5, 3, NULL, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_softmax_xent_forward_f32(0, 10, 0.1, NULL, NULL, NULL, NULL, NULL),
                   0);
  ck_assert_int_eq(wk_launch_softmax_xent_forward_f32(1, 0, 0.1, fake, NULL, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_softmax_xent_forward_f32(1, 10, 1.5, fake, NULL, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_softmax_xent_forward_f32(1, 10, 0.1, fake, NULL, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(
      wk_launch_softmax_xent_backward_f32(0, 10, 0.1, 1.0, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(
      wk_launch_softmax_xent_backward_f32(2, 10, -0.1, 1.0, fake, NULL, fake, NULL), bad);
  ck_assert_int_eq(
      wk_launch_softmax_xent_backward_f32(2, 10, 0.1, 1.0, fake, NULL, fake, NULL), bad);
  int32_t *ifake = (int32_t *)&n_devices;
  ck_assert_int_eq(wk_launch_argmax_rows_f32(0, 5, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_argmax_rows_f32(-1, 5, fake, ifake, NULL), bad);
  ck_assert_int_eq(wk_launch_argmax_rows_f32(2, 0, fake, ifake, NULL), bad);
  ck_assert_int_eq(wk_launch_argmax_rows_f32(2, (int64_t)INT32_MAX + 1, fake, ifake, NULL), bad);
  ck_assert_int_eq(wk_launch_argmax_rows_f32(INT64_MAX, 3, fake, ifake, NULL), bad);
  ck_assert_int_eq(wk_launch_argmax_rows_f32(2, 5, fake, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_argmax_rows_f32(2, 5, NULL, ifake, NULL), bad);
  ck_assert_int_eq(wk_launch_sum_f32(-1, NULL, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_sum_f32(0, NULL, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_sum_rows_f32(5, 0, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_sum_rows_f32(5, 3, NULL, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_sum_rows_f32(INT64_MAX, 3, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_sgd_f32(0, NULL, true, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_sgd_f32(-1, NULL, true, NULL, NULL, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_sgd_f32(1, NULL, false, fake, fake, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_adamw_f32(0, NULL, NULL, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_adamw_f32(2, (const wk_optim_segment *)fake, fake, fake, fake, NULL,
                                       NULL),
                   bad);
  ck_assert_int_eq(wk_launch_scale_f32(0, 2.0f, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_scale_f32(3, 2.0f, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_nonfinite_f32(0, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_nonfinite_f32(3, fake, NULL, NULL), bad);
  /* the fused step's launchers (values read on the device, the update gated) */
  const uint64_t *ufake = (const uint64_t *)&n_devices;
  const double *dfake = (const double *)&n_devices;
  ck_assert_int_eq(wk_launch_dropout_at_f32(0, 0.5, NULL, 1, 0, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_dropout_at_f32(4, 0.5, NULL, 1, 0, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_dropout_at_f32(4, 1.0, ufake, 1, 0, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_dropout_at_f32(4, 0.5, ufake, 1, -1, fake, fake, NULL), bad);
  ck_assert_int_eq(
      wk_launch_softmax_xent_backward_at_f32(0, 10, 0.1, NULL, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(
      wk_launch_softmax_xent_backward_at_f32(2, 10, 0.1, NULL, fake, ifake, fake, NULL), bad);
  ck_assert_int_eq(
      wk_launch_softmax_xent_backward_at_f32(2, 10, 1.5, dfake, fake, ifake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_sgd_unless_f32(0, NULL, true, NULL, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_sgd_unless_f32(1, NULL, false, fake, fake, NULL, ifake, NULL), bad);
  ck_assert_int_eq(wk_launch_adamw_unless_f32(0, NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_adamw_unless_f32(2, (const wk_optim_segment *)fake, fake, fake, fake,
                                              NULL, ifake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_scale_unless_f32(0, NULL, NULL, NULL, NULL), 0);
  ck_assert_int_eq(wk_launch_scale_unless_f32(3, NULL, ifake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_scale_unless_f32(3, fake, ifake, NULL, NULL), bad);
}
END_TEST

/* The 16-bit launchers (*_h, wk_kernels.h): an unknown kind is rejected before
 * anything else, even with no work (which a known kind accepts); with a known
 * kind, negative sizes, sizes whose product overflows, missing pointers where
 * there is work and a dropout p outside [0, 1) are rejected, and no work
 * launches nothing and returns 0. Every call here is refused or returns before
 * a launch (a launch would need a device): wk_launch_col_sum_h with rows == 0
 * and k > 0 writes its zeros with a launch, so the kernel suite checks that. */
START_TEST(test_launch_arguments_half) {
  const int bad = (int)cudaErrorInvalidValue;
  const float mean[5] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, sd[5] = {1, 1, 1, 1, 1};
  const float zero_sd[1] = {0.0f};
  /* never dereferenced: every call passing them is rejected first */
  uint16_t *hfake = (uint16_t *)&n_devices;
  float *fake = (float *)&n_devices;
  const uint8_t *bfake = (const uint8_t *)&n_devices;
  const uint64_t *ufake = (const uint64_t *)&n_devices;

  const wk_half_kind unknown[] = {(wk_half_kind)2, (wk_half_kind)7};
  for (size_t u = 0; u < sizeof unknown / sizeof unknown[0]; u++) {
    const wk_half_kind k = unknown[u];
    for (int six = 0; six < 2; six++) {
      ck_assert_int_eq(wk_launch_act_forward_h(k, 0, six, NULL, NULL, NULL), bad);
      ck_assert_int_eq(wk_launch_act_backward_h(k, 0, six, NULL, NULL, NULL, NULL), bad);
    }
    ck_assert_int_eq(wk_launch_add_h(k, 0, NULL, NULL, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_bias_add_h(k, 0, 5, NULL, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_bias_add_h(k, 5, 0, NULL, NULL, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 0, 9, 9, 3, NULL, NULL, mean, sd, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_dropout_h(k, 0, 0.5, 1, 2, NULL, 3, NULL, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_dropout_h(k, 0, 0.5, 1, 2, ufake, 3, NULL, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_global_avgpool_h(k, true, 0, 5, 3, NULL, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_global_avgpool_h(k, false, 2, 0, 3, NULL, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_col_sum_h(k, 5, 0, NULL, NULL, NULL, NULL), bad);
    /* with work too (NULL pointers, so a kind check that was missing could
     * still not launch) */
    ck_assert_int_eq(wk_launch_act_forward_h(k, 3, false, NULL, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_add_h(k, 3, NULL, NULL, NULL, NULL), bad);
  }

  const wk_half_kind kinds[] = {WK_HALF_BF16, WK_HALF_F16};
  for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
    const wk_half_kind k = kinds[t];
    /* relu, relu6 forward and backward; add */
    for (int six = 0; six < 2; six++) {
      ck_assert_int_eq(wk_launch_act_forward_h(k, 0, six, NULL, NULL, NULL), 0);
      ck_assert_int_eq(wk_launch_act_forward_h(k, -1, six, hfake, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_act_forward_h(k, 3, six, NULL, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_act_forward_h(k, 3, six, hfake, NULL, NULL), bad);
      ck_assert_int_eq(wk_launch_act_backward_h(k, 0, six, NULL, NULL, NULL, NULL), 0);
      ck_assert_int_eq(wk_launch_act_backward_h(k, -1, six, hfake, hfake, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_act_backward_h(k, 3, six, NULL, hfake, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_act_backward_h(k, 3, six, hfake, NULL, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_act_backward_h(k, 3, six, hfake, hfake, NULL, NULL), bad);
    }
    ck_assert_int_eq(wk_launch_add_h(k, 0, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_add_h(k, -1, hfake, hfake, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_add_h(k, 5, NULL, hfake, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_add_h(k, 5, hfake, NULL, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_add_h(k, 5, hfake, hfake, NULL, NULL), bad);

    /* bias add: (rows, k); -1 x -1 is rejected for its signs, not its product */
    ck_assert_int_eq(wk_launch_bias_add_h(k, 0, 5, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_bias_add_h(k, 5, 0, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_bias_add_h(k, -1, 5, fake, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bias_add_h(k, 5, -1, fake, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bias_add_h(k, -1, -1, fake, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bias_add_h(k, INT64_MAX, 2, fake, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bias_add_h(k, 2, 3, NULL, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bias_add_h(k, 2, 3, fake, NULL, NULL), bad);

    /* normalize: as the float32 launcher (std is read only when there is work) */
    ck_assert_int_eq(wk_launch_normalize_u8_h(k, 0, 9, 9, 3, NULL, NULL, mean, sd, NULL, NULL),
                     0);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 0, 1, 1, 1, NULL, NULL, mean, zero_sd, NULL, NULL), 0);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, -1, 1, 1, 3, bfake, NULL, mean, sd, hfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, -1, 1, 3, bfake, NULL, mean, sd, hfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, 1, -1, 3, bfake, NULL, mean, sd, hfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, 1, 1, 0, bfake, NULL, mean, sd, hfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, 1, 1, 5, bfake, NULL, mean, sd, hfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, 1, 1, 3, NULL, NULL, mean, sd, hfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, 1, 1, 3, bfake, NULL, mean, sd, NULL, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, 1, 1, 3, bfake, NULL, NULL, sd, hfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, 1, 1, 3, bfake, NULL, mean, NULL, hfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_normalize_u8_h(k, 1, 1, 1, 1, bfake, NULL, mean, zero_sd, hfake, NULL), bad);
    ck_assert_int_eq(wk_launch_normalize_u8_h(k, INT64_MAX, INT64_MAX, 1, 1, bfake, NULL, mean,
                                              sd, hfake, NULL),
                     bad);

    /* dropout, the stream given (seed_step NULL) or read on the device */
    for (int at = 0; at < 2; at++) {
      const uint64_t *ss = at ? ufake : NULL;
      ck_assert_int_eq(wk_launch_dropout_h(k, 0, 0.5, 1, 2, ss, 3, NULL, NULL, NULL), 0);
      ck_assert_int_eq(wk_launch_dropout_h(k, -1, 0.5, 1, 2, ss, 3, hfake, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_dropout_h(k, 4, 0.5, 1, 2, ss, 3, NULL, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_dropout_h(k, 4, 0.5, 1, 2, ss, 3, hfake, NULL, NULL), bad);
      ck_assert_int_eq(wk_launch_dropout_h(k, 4, 0.5, 1, 2, ss, -1, hfake, hfake, NULL), bad);
      ck_assert_int_eq(
          wk_launch_dropout_h(k, 4, 0.5, 1, 2, ss, INT64_MAX - 2, hfake, hfake, NULL), bad);
      const double bad_p[] = {1.0, 1.5, -0.1, -1e-300, NAN, INFINITY, -INFINITY};
      for (size_t i = 0; i < sizeof bad_p / sizeof bad_p[0]; i++)
        ck_assert_msg(wk_launch_dropout_h(k, 4, bad_p[i], 1, 2, ss, 3, hfake, hfake, NULL) == bad,
                      "dropout_h with p = %g accepted", bad_p[i]);
    }

    /* global average pool: forward needs hw >= 1 when there is output */
    ck_assert_int_eq(wk_launch_global_avgpool_h(k, true, 0, 5, 3, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_global_avgpool_h(k, true, 2, 5, 0, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_global_avgpool_h(k, false, 2, 0, 3, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_global_avgpool_h(k, true, 2, 0, 3, hfake, hfake, NULL), bad);
    for (int fwd = 0; fwd < 2; fwd++) {
      ck_assert_int_eq(wk_launch_global_avgpool_h(k, fwd, -1, 5, 3, hfake, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_global_avgpool_h(k, fwd, 2, -5, 3, hfake, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_global_avgpool_h(k, fwd, 2, 5, -3, hfake, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_global_avgpool_h(k, fwd, -2, 5, -3, hfake, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_global_avgpool_h(k, fwd, INT64_MAX, 2, 2, hfake, hfake, NULL),
                       bad);
      ck_assert_int_eq(wk_launch_global_avgpool_h(k, fwd, 2, 5, 3, NULL, hfake, NULL), bad);
      ck_assert_int_eq(wk_launch_global_avgpool_h(k, fwd, 2, 5, 3, hfake, NULL, NULL), bad);
    }

    /* column sums: k == 0 launches nothing (rows == 0 launches: kernel suite) */
    ck_assert_int_eq(wk_launch_col_sum_h(k, 5, 0, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_col_sum_h(k, 0, 0, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_col_sum_h(k, -1, 5, hfake, fake, fake, NULL), bad);
    ck_assert_int_eq(wk_launch_col_sum_h(k, 5, -1, hfake, fake, fake, NULL), bad);
    ck_assert_int_eq(wk_launch_col_sum_h(k, -1, -1, hfake, fake, fake, NULL), bad);
    ck_assert_int_eq(wk_launch_col_sum_h(k, INT64_MAX, 2, hfake, fake, fake, NULL), bad);
    ck_assert_int_eq(wk_launch_col_sum_h(k, 5, 3, hfake, fake, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_col_sum_h(k, 5, 3, NULL, fake, fake, NULL), bad);
    ck_assert_int_eq(wk_launch_col_sum_h(k, 5, 3, hfake, NULL, fake, NULL), bad);
    ck_assert_int_eq(wk_launch_col_sum_h(k, 0, 3, hfake, fake, NULL, NULL), bad);
  }
}
END_TEST

/* Synchronised batchnorm's launchers (syncbn.cu): an unknown storage kind, c
 * < 1 or over INT32_MAX, rows < 0, rows x c overflowing, a missing pointer
 * the call needs, total < 1 (or NaN) for the mean and dx and total < 2 for
 * the finish are rejected before any CUDA call; norm and dx with no rows
 * launch nothing and return 0 (their pointers unread). Every call here is
 * refused or returns before a launch: the sums with no rows write their zeros
 * (cudaMemsetAsync) and every accepted mean, finish and param_grads call
 * launches, so those are the kernel suite's. An unknown kind is rejected
 * before anything else, with rows or without. */
START_TEST(test_launch_arguments_syncbn) {
  const int bad = (int)cudaErrorInvalidValue;
  /* never dereferenced: every call passing them is rejected first */
  void *vfake = &n_devices;
  float *fake = (float *)&n_devices;
  double *dfake = (double *)&n_devices;
  const int64_t big_c = (int64_t)INT32_MAX + 1;

  const wk_store_kind unknown[] = {(wk_store_kind)7, (wk_store_kind)2, (wk_store_kind)-2};
  for (size_t u = 0; u < sizeof unknown / sizeof unknown[0]; u++) {
    const wk_store_kind k = unknown[u];
    ck_assert_int_eq(wk_launch_bn_sums(k, 5, 3, vfake, NULL, dfake, dfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_sums(k, 5, 3, vfake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, 3, vfake, vfake, fake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, 3, vfake, fake, fake, fake, fake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 3, 5.0, vfake, vfake, fake, fake, fake, dfake, vfake, NULL), bad);
    /* rejected first, even with no work (as the *_h launchers) */
    ck_assert_int_eq(wk_launch_bn_sums(k, 0, 3, vfake, NULL, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 0, 3, vfake, vfake, fake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 0, 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 0, 3, 5.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), bad);
  }

  const wk_store_kind kinds[] = {WK_STORE_F32, WK_STORE_BF16, WK_STORE_F16};
  for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
    const wk_store_kind k = kinds[t];
    /* sums, plain (mean NULL) and centred (mean given) */
    for (int centred = 0; centred < 2; centred++) {
      const float *mn = centred ? fake : NULL;
      ck_assert_int_eq(wk_launch_bn_sums(k, -1, 3, vfake, mn, dfake, dfake, NULL), bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, 5, 0, vfake, mn, dfake, dfake, NULL), bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, 5, -3, vfake, mn, dfake, dfake, NULL), bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, 0, 0, vfake, mn, dfake, dfake, NULL), bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, 5, big_c, vfake, mn, dfake, dfake, NULL), bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, INT64_MAX, 2, vfake, mn, dfake, dfake, NULL), bad);
      ck_assert_int_eq(
          wk_launch_bn_sums(k, (int64_t)1 << 33, (int64_t)1 << 30, vfake, mn, dfake, dfake, NULL),
          bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, 5, 3, vfake, mn, dfake, NULL, NULL), bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, 0, 3, vfake, mn, dfake, NULL, NULL), bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, 5, 3, NULL, mn, dfake, dfake, NULL), bad);
      ck_assert_int_eq(wk_launch_bn_sums(k, 5, 3, vfake, mn, NULL, dfake, NULL), bad);
    }

    /* backward's sums */
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, -1, 3, vfake, vfake, fake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, 0, vfake, vfake, fake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 0, -1, vfake, vfake, fake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, big_c, vfake, vfake, fake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, INT64_MAX, 2, vfake, vfake, fake, fake, dfake, dfake, NULL),
        bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, 3, NULL, vfake, fake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, 3, vfake, NULL, fake, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, 3, vfake, vfake, NULL, fake, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, 3, vfake, vfake, fake, NULL, dfake, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, 3, vfake, vfake, fake, fake, NULL, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 5, 3, vfake, vfake, fake, fake, dfake, NULL, NULL), bad);
    /* with no rows the mean, invstd and out are still needed */
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 0, 3, NULL, NULL, NULL, fake, NULL, dfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_grad_sums(k, 0, 3, NULL, NULL, fake, NULL, NULL, dfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_grad_sums(k, 0, 3, NULL, NULL, fake, fake, NULL, NULL, NULL),
                     bad);

    /* normalisation: no rows launches nothing */
    ck_assert_int_eq(wk_launch_bn_norm(k, 0, 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(wk_launch_bn_norm(k, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, -1, 3, vfake, fake, fake, fake, fake, vfake, NULL),
                     bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, 0, vfake, fake, fake, fake, fake, vfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, -3, vfake, fake, fake, fake, fake, vfake, NULL),
                     bad);
    ck_assert_int_eq(
        wk_launch_bn_norm(k, 5, big_c, vfake, fake, fake, fake, fake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_norm(k, INT64_MAX, 2, vfake, fake, fake, fake, fake, vfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, 3, NULL, fake, fake, fake, fake, vfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, 3, vfake, NULL, fake, fake, fake, vfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, 3, vfake, fake, NULL, fake, fake, vfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, 3, vfake, fake, fake, NULL, fake, vfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, 3, vfake, fake, fake, fake, NULL, vfake, NULL), bad);
    ck_assert_int_eq(wk_launch_bn_norm(k, 5, 3, vfake, fake, fake, fake, fake, NULL, NULL), bad);

    /* input gradient: no rows launches nothing; total >= 1 */
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 0, 3, 1.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 0, 3, 64.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 0, 0, 1.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, -1, 3, 5.0, vfake, vfake, fake, fake, fake, dfake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 0, 5.0, vfake, vfake, fake, fake, fake, dfake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, big_c, 5.0, vfake, vfake, fake, fake, fake, dfake, vfake, NULL),
        bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, INT64_MAX, 2, 5.0, vfake, vfake, fake, fake, fake, dfake, vfake, NULL),
        bad);
    const double bad_total[] = {0.0, 0.5, -1.0, NAN, -INFINITY};
    for (size_t i = 0; i < sizeof bad_total / sizeof bad_total[0]; i++)
      ck_assert_msg(wk_launch_bn_dx(k, 5, 3, bad_total[i], vfake, vfake, fake, fake, fake, dfake,
                                    vfake, NULL) == bad,
                    "bn_dx with total = %g accepted", bad_total[i]);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 3, 5.0, NULL, vfake, fake, fake, fake, dfake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 3, 5.0, vfake, NULL, fake, fake, fake, dfake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 3, 5.0, vfake, vfake, NULL, fake, fake, dfake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 3, 5.0, vfake, vfake, fake, NULL, fake, dfake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 3, 5.0, vfake, vfake, fake, fake, NULL, dfake, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 3, 5.0, vfake, vfake, fake, fake, fake, NULL, vfake, NULL), bad);
    ck_assert_int_eq(
        wk_launch_bn_dx(k, 5, 3, 5.0, vfake, vfake, fake, fake, fake, dfake, NULL, NULL), bad);
  }

  /* the per-channel launchers (no storage kind) */
  const double bad_mean_total[] = {0.0, 0.5, -1.0, NAN, -INFINITY};
  for (size_t i = 0; i < sizeof bad_mean_total / sizeof bad_mean_total[0]; i++)
    ck_assert_msg(wk_launch_bn_mean(3, bad_mean_total[i], dfake, fake, NULL) == bad,
                  "bn_mean with total = %g accepted", bad_mean_total[i]);
  ck_assert_int_eq(wk_launch_bn_mean(0, 5.0, dfake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_mean(-1, 5.0, dfake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_mean(3, 5.0, NULL, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_mean(3, 5.0, dfake, NULL, NULL), bad);

  const double bad_finish_total[] = {1.0, 1.5, 0.0, -2.0, NAN, -INFINITY};
  for (size_t i = 0; i < sizeof bad_finish_total / sizeof bad_finish_total[0]; i++)
    ck_assert_msg(wk_launch_bn_finish(3, bad_finish_total[i], dfake, fake, 0.1, 1e-5, fake, fake,
                                      fake, NULL) == bad,
                  "bn_finish with total = %g accepted", bad_finish_total[i]);
  ck_assert_int_eq(wk_launch_bn_finish(0, 5.0, dfake, fake, 0.1, 1e-5, fake, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_bn_finish(-1, 5.0, dfake, fake, 0.1, 1e-5, fake, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_bn_finish(3, 5.0, NULL, fake, 0.1, 1e-5, fake, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_bn_finish(3, 5.0, dfake, NULL, 0.1, 1e-5, fake, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_bn_finish(3, 5.0, dfake, fake, 0.1, 1e-5, NULL, fake, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_bn_finish(3, 5.0, dfake, fake, 0.1, 1e-5, fake, NULL, fake, NULL),
                   bad);
  ck_assert_int_eq(wk_launch_bn_finish(3, 5.0, dfake, fake, 0.1, 1e-5, fake, fake, NULL, NULL),
                   bad);
  /* momentum outside [0, 1], eps not positive (as the CPU's batchnorm check) */
  const double bad_momentum[] = {-0.1, 1.5, NAN}, bad_eps[] = {0.0, -1e-5, NAN};
  for (size_t i = 0; i < 3; i++) {
    ck_assert_int_eq(
        wk_launch_bn_finish(3, 5.0, dfake, fake, bad_momentum[i], 1e-5, fake, fake, fake, NULL),
        bad);
    ck_assert_int_eq(
        wk_launch_bn_finish(3, 5.0, dfake, fake, 0.1, bad_eps[i], fake, fake, fake, NULL), bad);
  }

  ck_assert_int_eq(wk_launch_bn_invstd(0, fake, 1e-5, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_invstd(3, NULL, 1e-5, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_invstd(3, fake, 1e-5, NULL, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_invstd(3, fake, 0.0, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_invstd(3, fake, NAN, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_param_grads(0, dfake, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_param_grads(-1, dfake, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_param_grads(3, NULL, fake, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_param_grads(3, dfake, NULL, fake, NULL), bad);
  ck_assert_int_eq(wk_launch_bn_param_grads(3, dfake, fake, NULL, NULL), bad);
}
END_TEST

#ifndef WK_GPU_EMU
/* Without a device, device calls fail with a status and a message; with one,
 * an impossible allocation does, and the failure does not leak into the next
 * launch's cudaGetLastError(). */
START_TEST(test_device_errors) {
  void *p = (void *)&p;
  if (n_devices == 0) {
    ck_assert_int_eq(wk_cuda_malloc(&p, 16), WK_ERR_BACKEND);
    /* cudaGetDevice (the cache's device) fails first where the runtime finds no
     * driver; either way the message names the call, file and line */
    ck_contains(wk_last_error(), "CUDA: cuda");
    ck_contains(wk_last_error(), " failed at ");
    ck_contains(wk_last_error(), "cuda_backend.c:");
    ck_assert_ptr_null(p);
    char host[4] = {0};
    ck_assert_int_eq(wk_cuda_copy_h2d(host, host, sizeof host), WK_ERR_BACKEND);
    ck_contains(wk_last_error(), "cudaMemcpy");
    ck_assert_int_eq(wk_cuda_sync(), WK_ERR_BACKEND);
    return;
  }
  ck_assert_int_eq(wk_cuda_malloc(&p, SIZE_MAX / 2), WK_ERR_NOMEM);
  ck_contains(wk_last_error(), "out of device memory");
  ck_contains(wk_last_error(), "cudaMalloc");
  ck_assert_ptr_null(p);
  /* memory the cache did not hand out is refused, and freeing twice is too */
  ck_assert_int_eq(wk_cuda_free(&p), WK_ERR_INVALID_ARG);
  ck_contains(wk_last_error(), "not device memory from wk_cuda_malloc");
  const float one = -1.0f;
  float out = 7.0f;
  float *d = device_f32(&one, 1);
  CK_LAUNCH(wk_launch_relu_forward_f32(1, d, d, NULL));
  CK_WK(wk_cuda_copy_d2h(&out, d, sizeof out));
  ck_assert(out == 0.0f);
  CK_WK(wk_cuda_free(d));
  ck_assert_int_eq(wk_cuda_free(d), WK_ERR_INVALID_ARG);
  CK_WK(wk_cuda_malloc(&p, 0));
  ck_assert_ptr_null(p);
  CK_WK(wk_cuda_free(NULL));
}
END_TEST
#endif

/* ------------------------------------------------------------------ kernel suite */

/* Odd sizes: a single element, less than a warp, one block plus one, a prime
 * above a million (more blocks than one wave, a ragged last block), and one
 * past the grid's cap of 65535 x 256 threads (2^24 + 1: the grid-stride
 * loops' second pass, which a ResNet stem at batch 256 takes). */
static const int64_t sizes[] = {1, 7, 257, 1000003, 16777217};
enum { N_SIZES = sizeof sizes / sizeof sizes[0] };

/* Values where the activations' branches meet or misbehave, planted at the
 * start of the inputs: the kinks, both zeros, NaN, infinities, a denormal. */
static void plant_specials(float *x, int64_t n) {
  const float specials[] = {0.0f,     -0.0f,    6.0f,      NAN,   INFINITY, -INFINITY,
                            5.999999f, 6.000001f, 1e-45f, -1e-45f, 1e-30f, -6.0f};
  const int64_t k = (int64_t)(sizeof specials / sizeof specials[0]);
  for (int64_t i = 0; i < k && i < n; i++) x[i] = specials[i];
}

/* Forward (out of place and in place) and backward of one activation. */
static void check_act(wk_act act, int64_t n, uint64_t seed) {
  const char *name = act == WK_ACT_RELU ? "relu" : "relu6";
  float *x = host_f32(n), *dy = host_f32(n), *want = host_f32(n), *got = host_f32(n);
  wkt_fill_f32(x, n, seed, -8.0f, 8.0f);
  plant_specials(x, n);
  wkt_fill_f32(dy, n, seed + 1, -1.0f, 1.0f);
  float *d_x = device_f32(x, n), *d_dy = device_f32(dy, n), *d_out = device_f32(NULL, n);

  wk_act_forward_ref_f32(act, n, x, want);
  if (act == WK_ACT_RELU) CK_LAUNCH(wk_launch_relu_forward_f32(n, d_x, d_out, NULL));
  else CK_LAUNCH(wk_launch_relu6_forward_f32(n, d_x, d_out, NULL));
  to_host(got, d_out, n);
  ck_same_f32(name, got, want, n);

  if (act == WK_ACT_RELU) CK_LAUNCH(wk_launch_relu_forward_f32(n, d_out, d_out, NULL));
  else CK_LAUNCH(wk_launch_relu6_forward_f32(n, d_out, d_out, NULL));
  to_host(got, d_out, n);
  ck_same_f32(name, got, want, n);  /* idempotent, and y may alias x */

  wk_act_backward_ref_f32(act, n, x, dy, want);
  if (act == WK_ACT_RELU) CK_LAUNCH(wk_launch_relu_backward_f32(n, d_x, d_dy, d_out, NULL));
  else CK_LAUNCH(wk_launch_relu6_backward_f32(n, d_x, d_dy, d_out, NULL));
  to_host(got, d_out, n);
  ck_same_f32(name, got, want, n);

  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_dy));
  CK_WK(wk_cuda_free(d_out));
  free(x), free(dy), free(want), free(got);
}

START_TEST(test_relu) { check_act(WK_ACT_RELU, sizes[_i], 100 + (uint64_t)_i); }
END_TEST

START_TEST(test_relu6) { check_act(WK_ACT_RELU6, sizes[_i], 200 + (uint64_t)_i); }
END_TEST

START_TEST(test_add) {
  const int64_t n = sizes[_i];
  float *a = host_f32(n), *b = host_f32(n), *want = host_f32(n), *got = host_f32(n);
  /* Mixed magnitudes, so most sums round. */
  wkt_fill_f32(a, n, 300 + (uint64_t)_i, -1000.0f, 1000.0f);
  wkt_fill_f32(b, n, 400 + (uint64_t)_i, -1e-3f, 1e-3f);
  if (n > 2) a[1] = INFINITY, b[1] = -INFINITY, b[2] = -a[2];
  wk_add_forward_ref_f32(n, a, b, want);
  float *d_a = device_f32(a, n), *d_b = device_f32(b, n), *d_y = device_f32(NULL, n);
  CK_LAUNCH(wk_launch_add_forward_f32(n, d_a, d_b, d_y, NULL));
  to_host(got, d_y, n);
  ck_same_f32("add", got, want, n);
  CK_LAUNCH(wk_launch_add_forward_f32(n, d_a, d_b, d_a, NULL));
  to_host(got, d_a, n);
  ck_same_f32("add in place", got, want, n);
  CK_WK(wk_cuda_free(d_a));
  CK_WK(wk_cuda_free(d_b));
  CK_WK(wk_cuda_free(d_y));
  free(a), free(b), free(want), free(got);
}
END_TEST

/* flip: 0 = no flip array (NULL), 1 = every image flipped, 2 = odd images. */
typedef struct norm_case {
  int64_t n, h, w, c;
  int flip;
} norm_case;

static const norm_case norm_cases[] = {
    {1, 1, 1, 1, 0},       {1, 1, 1, 3, 1},     {1, 1, 7, 3, 1},   {2, 3, 7, 3, 2},
    {4, 13, 17, 4, 2},     {3, 31, 29, 1, 2},   {5, 7, 1, 3, 2},   {7, 65, 97, 3, 0},
    {1, 1, 1000003, 1, 1}, {3, 211, 317, 3, 2},
};
enum { N_NORM_CASES = sizeof norm_cases / sizeof norm_cases[0] };

/* The definition, the loader's float path in float operations each rounded
 * alone (C11 contracts nothing): y = (x * (1/255)) * (1 / std) + (-mean / std),
 * read from column w - 1 - j of a flipped image. x, y: (n, h, w, c). */
static void normalize_ref(const norm_case *k, const uint8_t *x, const uint8_t *flip,
                          const float *mean, const float *sd, float *y) {
  for (int64_t b = 0; b < k->n; b++)
    for (int64_t i = 0; i < k->h; i++)
      for (int64_t j = 0; j < k->w; j++) {
        const int64_t sj = flip && flip[b] ? k->w - 1 - j : j;
        for (int64_t ch = 0; ch < k->c; ch++) {
          const float s = 1.0f / sd[ch], t = -mean[ch] * s;
          const float v = (float)x[((b * k->h + i) * k->w + sj) * k->c + ch] * (1.0f / 255.0f);
          y[((b * k->h + i) * k->w + j) * k->c + ch] = v * s + t;
        }
      }
}

START_TEST(test_normalize) {
  const norm_case *k = &norm_cases[_i];
  const float mean[WK_NORMALIZE_MAX_CHANNELS] = {0.485f, 0.456f, 0.406f, 0.5f};
  const float sd[WK_NORMALIZE_MAX_CHANNELS] = {0.229f, 0.224f, 0.225f, 0.25f};
  const int64_t n_elems = k->n * k->h * k->w * k->c;

  uint8_t *x = malloc((size_t)n_elems), *flip = malloc((size_t)k->n);
  ck_assert(x && flip);
  wk_rng r = wk_rng_make(500 + (uint64_t)_i, 0);
  for (int64_t i = 0; i < n_elems; i++) x[i] = (uint8_t)wk_rng_u32(&r);
  x[0] = 0, x[n_elems - 1] = 255;
  for (int64_t b = 0; b < k->n; b++)
    flip[b] = (uint8_t)(k->flip == 1 ? 1 + b : (k->flip == 2 ? b % 2 * 7 : 0));
  float *want = host_f32(n_elems), *got = host_f32(n_elems);
  normalize_ref(k, x, k->flip ? flip : NULL, mean, sd, want);
  if (k->c == 3 && !k->flip) { /* the host's op (the CPU's 8-bit input) is the same */
    const float s[3] = {1.0f / sd[0], 1.0f / sd[1], 1.0f / sd[2]};
    const float t3[3] = {-mean[0] * s[0], -mean[1] * s[1], -mean[2] * s[2]};
    float *host = host_f32(n_elems);
    wk_normalize_u8_ref(n_elems / 3, x, s, t3, host);
    ck_assert_int_eq(memcmp(host, want, (size_t)n_elems * sizeof *host), 0);
    free(host);
  }

  void *d_x = NULL, *d_flip = NULL;
  CK_WK(wk_cuda_malloc(&d_x, (size_t)n_elems));
  CK_WK(wk_cuda_copy_h2d(d_x, x, (size_t)n_elems));
  CK_WK(wk_cuda_malloc(&d_flip, (size_t)k->n));
  CK_WK(wk_cuda_copy_h2d(d_flip, flip, (size_t)k->n));
  float *d_y = device_f32(NULL, n_elems);
  CK_LAUNCH(wk_launch_normalize_u8_f32(k->n, k->h, k->w, k->c, d_x, k->flip ? d_flip : NULL,
                                       mean, sd, d_y, NULL));
  to_host(got, d_y, n_elems);

  ck_assert_msg(memcmp(got, want, (size_t)n_elems * sizeof *got) == 0,
                "normalize (%lld, %lld, %lld, %lld) flip %d: not bit for bit the reference",
                (long long)k->n, (long long)k->h, (long long)k->w, (long long)k->c, k->flip);

  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_flip));
  CK_WK(wk_cuda_free(d_y));
  free(x), free(flip), free(want), free(got);
}
END_TEST

/* ------------------------------------------------------------------ training kernels */

/* Dropout forward and backward, out of place and in place: the mask of
 * wk_dropout_ref_f32 bit for bit, at an odd counter offset (Philox blocks of 4
 * words split across elements) and for p = 0, a typical p and a large one. */
START_TEST(test_dropout) {
  const int64_t n = sizes[_i];
  const double ps[] = {0.0, 0.1, 0.5, 0.9};
  float *x = host_f32(n), *want = host_f32(n), *got = host_f32(n);
  wkt_fill_f32(x, n, 600 + (uint64_t)_i, -4.0f, 4.0f);
  plant_specials(x, n);
  float *d_x = device_f32(x, n), *d_y = device_f32(NULL, n), *d_z = device_f32(NULL, n);
  for (size_t t = 0; t < sizeof ps / sizeof ps[0]; t++) {
    const uint64_t seed = 0x123456789abcdefull + t, stream_id = 0xfedcba987654321ull;
    const int64_t offset = 1000000007 + (int64_t)t;
    wk_dropout_ref_f32(ps[t], seed, stream_id, offset, n, x, want);
    CK_LAUNCH(wk_launch_dropout_forward_f32(n, ps[t], seed, stream_id, offset, d_x, d_y, NULL));
    to_host(got, d_y, n);
    ck_same_f32("dropout forward", got, want, n);
    CK_WK(wk_cuda_copy_h2d(d_z, x, (size_t)n * sizeof(float)));
    CK_LAUNCH(wk_launch_dropout_backward_f32(n, ps[t], seed, stream_id, offset, d_z, d_z, NULL));
    to_host(got, d_z, n);
    ck_same_f32("dropout backward in place", got, want, n);
    /* the stream read on the device: (seed, (step << 16) ^ node) */
    const uint64_t seed_step[2] = {seed, 0x1234567ull + t}, node = 37;
    uint64_t *d_ss = device_copy(seed_step, sizeof seed_step);
    wk_dropout_ref_f32(ps[t], seed, (seed_step[1] << 16) ^ node, offset, n, x, want);
    CK_LAUNCH(wk_launch_dropout_at_f32(n, ps[t], d_ss, node, offset, d_x, d_y, NULL));
    to_host(got, d_y, n);
    ck_same_f32("dropout, stream on the device", got, want, n);
    CK_WK(wk_cuda_free(d_ss));
  }
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_z));
  free(x), free(want), free(got);
}
END_TEST

typedef struct pool_case {
  int64_t n, hw, c;
} pool_case;

static const pool_case pool_cases[] = {{1, 1, 1},   {2, 49, 3},    {3, 7, 257},
                                       {5, 64, 2048}, {1, 1000003, 1}, {256, 49, 512}};
enum { N_POOL_CASES = sizeof pool_cases / sizeof pool_cases[0] };

/* Global average pool forward and backward: bit for bit the reference (the
 * same double sums in the same order). */
START_TEST(test_global_avgpool) {
  const pool_case *k = &pool_cases[_i];
  const int64_t n_in = k->n * k->hw * k->c, n_out = k->n * k->c;
  float *x = host_f32(n_in), *dy = host_f32(n_out);
  float *want_y = host_f32(n_out), *got_y = host_f32(n_out);
  float *want_dx = host_f32(n_in), *got_dx = host_f32(n_in);
  wkt_fill_f32(x, n_in, 700 + (uint64_t)_i, -3.0f, 5.0f);
  wkt_fill_f32(dy, n_out, 800 + (uint64_t)_i, -1.0f, 1.0f);
  wk_global_avgpool_forward_ref_f32(k->n, k->hw, k->c, x, want_y);
  wk_global_avgpool_backward_ref_f32(k->n, k->hw, k->c, dy, want_dx);
  float *d_x = device_f32(x, n_in), *d_y = device_f32(NULL, n_out);
  float *d_dy = device_f32(dy, n_out), *d_dx = device_f32(NULL, n_in);
  CK_LAUNCH(wk_launch_global_avgpool_forward_f32(k->n, k->hw, k->c, d_x, d_y, NULL));
  CK_LAUNCH(wk_launch_global_avgpool_backward_f32(k->n, k->hw, k->c, d_dy, d_dx, NULL));
  to_host(got_y, d_y, n_out);
  to_host(got_dx, d_dx, n_in);
  ck_same_f32("global avgpool forward", got_y, want_y, n_out);
  ck_same_f32("global avgpool backward", got_dx, want_dx, n_in);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_dy));
  CK_WK(wk_cuda_free(d_dx));
  free(x), free(dy), free(want_y), free(got_y), free(want_dx), free(got_dx);
}
END_TEST

typedef struct xent_case {
  int64_t n, k;
  double smoothing;
} xent_case;

/* The last: more rows than the grid's 65535 blocks, so a block reuses its
 * shared memory for a second row. */
static const xent_case xent_cases[] = {{1, 1, 0.0},   {3, 10, 0.1},     {64, 10, 0.1},
                                       {7, 1000, 0.0}, {5, 1001, 0.2},   {2, 100003, 0.1},
                                       {300, 33, 1.0}, {70001, 10, 0.1}};
enum { N_XENT_CASES = sizeof xent_cases / sizeof xent_cases[0] };

/* |got - want| <= 1e-6 |want| + floor element by element (a few float ulps),
 * NaN only where want is NaN. */
static void ck_close_f32(const char *what, const float *got, const float *want, int64_t n,
                         double floor) {
  for (int64_t i = 0; i < n; i++) {
    const double g = got[i], w = want[i];
    if (isnan(g) && isnan(w)) continue;
    if (!(fabs(g - w) <= 1e-6 * fabs(w) + floor))
      ck_abort_msg("%s: element %lld of %lld: got %a, want %a", what, (long long)i, (long long)n,
                  g, w);
  }
}

/* Softmax cross-entropy: probs and per-row losses within 1e-6 relative of the
 * reference (run row by row for the per-row loss; plus 1e-9 absolute for the
 * loss, a difference of terms of size ~10 that can cancel to near 0), their wk_launch_sum_f32 total
 * within 1e-6 of the reference's double total; rows with labels -1 and k give
 * NaN losses without disturbing the others; the backward bit for bit the
 * reference's on the same probabilities, with dloss 1 over the batch. */
START_TEST(test_softmax_xent) {
  const xent_case *c = &xent_cases[_i];
  const int64_t n = c->n, k = c->k, nk = n * k;
  float *logits = host_f32(nk), *want_p = host_f32(nk), *got_p = host_f32(nk);
  float *want_loss = host_f32(n), *got_loss = host_f32(n);
  float *want_d = host_f32(nk), *got_d = host_f32(nk);
  int32_t *labels = malloc((size_t)n * sizeof *labels);
  ck_assert_ptr_nonnull(labels);
  wkt_fill_f32(logits, nk, 900 + (uint64_t)_i, -12.0f, 12.0f);
  wk_rng r = wk_rng_make(950 + (uint64_t)_i, 0);
  for (int64_t i = 0; i < n; i++) labels[i] = (int32_t)wk_rng_below(&r, (uint32_t)k);
  double want_total = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double row = 0.0;
    wk_softmax_xent_forward_ref_f32(1, k, c->smoothing, logits + i * k, labels + i,
                                    want_p + i * k, &row);
    want_loss[i] = (float)row;
    want_total += row;
  }
  float *d_logits = device_f32(logits, nk), *d_p = device_f32(NULL, nk);
  float *d_loss = device_f32(NULL, n), *d_d = device_f32(NULL, nk);
  int32_t *d_labels = device_copy(labels, (size_t)n * sizeof *labels);
  double *d_total = NULL, got_total = 0.0;
  CK_WK(wk_cuda_malloc((void **)&d_total, sizeof *d_total));

  CK_LAUNCH(wk_launch_softmax_xent_forward_f32(n, k, c->smoothing, d_logits, d_labels, d_p,
                                               d_loss, NULL));
  CK_LAUNCH(wk_launch_sum_f32(n, d_loss, d_total, NULL));
  to_host(got_p, d_p, nk);
  to_host(got_loss, d_loss, n);
  CK_WK(wk_cuda_copy_d2h(&got_total, d_total, sizeof got_total));
  ck_close_f32("softmax probs", got_p, want_p, nk, 1e-38);
  ck_close_f32("softmax row loss", got_loss, want_loss, n, 1e-9);
  ck_assert_msg(fabs(got_total - want_total) <= 1e-6 * fabs(want_total) + 1e-9,
                "loss total %.17g, want %.17g", got_total, want_total);
  /* The loss alone (no probabilities, as evaluation asks): the same row losses. */
  for (int64_t i = 0; i < n; i++) got_loss[i] = NAN;
  CK_WK(wk_cuda_copy_h2d(d_loss, got_loss, (size_t)n * sizeof *got_loss));
  CK_LAUNCH(wk_launch_softmax_xent_forward_f32(n, k, c->smoothing, d_logits, d_labels, NULL,
                                               d_loss, NULL));
  to_host(got_loss, d_loss, n);
  ck_close_f32("softmax row loss without probs", got_loss, want_loss, n, 1e-9);

  /* Backward from the device's probabilities, so only the backward is tested. */
  wk_softmax_xent_backward_ref_f32(n, k, c->smoothing, n, got_p, labels, 1.0, want_d);
  CK_LAUNCH(wk_launch_softmax_xent_backward_f32(n, k, c->smoothing, 1.0 / (double)n, d_p,
                                                d_labels, d_d, NULL));
  to_host(got_d, d_d, nk);
  ck_same_f32("softmax xent backward", got_d, want_d, nk);
  const double scale = 1.0 / (double)n;
  double *d_scale = device_copy(&scale, sizeof scale);
  CK_LAUNCH(wk_launch_softmax_xent_backward_at_f32(n, k, c->smoothing, d_scale, d_p, d_labels,
                                                   d_d, NULL));
  to_host(got_d, d_d, nk);
  ck_same_f32("softmax xent backward, factor on the device", got_d, want_d, nk);
  CK_WK(wk_cuda_free(d_scale));
  CK_LAUNCH(wk_launch_softmax_xent_backward_f32(n, k, c->smoothing, 1.0 / (double)n, d_p,
                                                d_labels, d_p, NULL));
  to_host(got_d, d_p, nk);
  ck_same_f32("softmax xent backward in place", got_d, want_d, nk);

  if (n >= 3) { /* out-of-range labels: NaN loss for those rows only */
    labels[0] = -1, labels[n - 1] = (int32_t)k;
    CK_WK(wk_cuda_copy_h2d(d_labels, labels, (size_t)n * sizeof *labels));
    CK_LAUNCH(wk_launch_softmax_xent_forward_f32(n, k, c->smoothing, d_logits, d_labels, d_p,
                                                 d_loss, NULL));
    to_host(got_loss, d_loss, n);
    to_host(got_p, d_p, nk);
    ck_assert(isnan(got_loss[0]) && isnan(got_loss[n - 1]));
    ck_close_f32("softmax row loss, good rows", got_loss + 1, want_loss + 1, n - 2, 1e-9);
    ck_close_f32("softmax probs, bad labels", got_p, want_p, nk, 1e-38);
  }

  CK_WK(wk_cuda_free(d_logits));
  CK_WK(wk_cuda_free(d_p));
  CK_WK(wk_cuda_free(d_loss));
  CK_WK(wk_cuda_free(d_d));
  CK_WK(wk_cuda_free(d_labels));
  CK_WK(wk_cuda_free(d_total));
  free(logits), free(want_p), free(got_p), free(want_loss), free(got_loss), free(want_d),
      free(got_d), free(labels);
}
END_TEST

/* wk_launch_sum_f32: within 1e-10 relative of the sequential double sum of
 * positive values, the same bits on a second run, and 0 for n == 0. */
START_TEST(test_sum) {
  const int64_t n = sizes[_i];
  float *x = host_f32(n);
  wkt_fill_f32(x, n, 1000 + (uint64_t)_i, 0.0f, 3.0f);
  double want = 0.0, got = -1.0, again = -2.0;
  for (int64_t i = 0; i < n; i++) want += (double)x[i];
  float *d_x = device_f32(x, n);
  double *d_out = NULL;
  CK_WK(wk_cuda_malloc((void **)&d_out, sizeof *d_out));
  CK_LAUNCH(wk_launch_sum_f32(n, d_x, d_out, NULL));
  CK_WK(wk_cuda_copy_d2h(&got, d_out, sizeof got));
  CK_LAUNCH(wk_launch_sum_f32(n, d_x, d_out, NULL));
  CK_WK(wk_cuda_copy_d2h(&again, d_out, sizeof again));
  ck_assert_msg(fabs(got - want) <= 1e-10 * want, "sum %.17g, want %.17g", got, want);
  ck_assert(memcmp(&got, &again, sizeof got) == 0);
  CK_LAUNCH(wk_launch_sum_f32(0, d_x, d_out, NULL));
  CK_WK(wk_cuda_copy_d2h(&got, d_out, sizeof got));
  ck_assert(got == 0.0);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_out));
  free(x);
}
END_TEST

typedef struct rows_case {
  int64_t n, k;
} rows_case;

static const rows_case rows_cases[] = {{1, 1}, {0, 5}, {256, 10}, {7, 1000}, {1000, 3},
                                       {33, 70001}};
enum { N_ROWS_CASES = sizeof rows_cases / sizeof rows_cases[0] };

/* wk_launch_sum_rows_f32: bit for bit the bias gradient of
 * wk_linear_backward_ref_f32 (zeros for no rows). */
START_TEST(test_sum_rows) {
  const rows_case *c = &rows_cases[_i];
  const int64_t nk = c->n * c->k;
  float *x = host_f32(nk > 0 ? nk : 1), *want = host_f32(c->k), *got = host_f32(c->k);
  wkt_fill_f32(x, nk, 1100 + (uint64_t)_i, -2.0f, 2.0f);
  wk_linear_backward_ref_f32(c->n, 1, c->k, NULL, NULL, x, NULL, NULL, want);
  float *d_x = device_f32(x, nk > 0 ? nk : 1), *d_out = device_f32(NULL, c->k);
  for (int64_t j = 0; j < c->k; j++) got[j] = NAN;
  CK_WK(wk_cuda_copy_h2d(d_out, got, (size_t)c->k * sizeof(float)));
  CK_LAUNCH(wk_launch_sum_rows_f32(c->n, c->k, d_x, d_out, NULL));
  to_host(got, d_out, c->k);
  ck_same_f32("sum rows", got, want, c->k);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_out));
  free(x), free(want), free(got);
}
END_TEST

/* wk_launch_argmax_rows_f32: wk_argmax's class for every row, on values so
 * coarse (eight of them) that rows tie (the first of equal maxima wins), with
 * a NaN in column 0 of one row (which keeps 0), a NaN in the last column of
 * another (which never wins), and -0 before +0s (equal: -0's column wins). */
START_TEST(test_argmax_rows) {
  const rows_case *c = &rows_cases[_i];
  const int64_t n = c->n, k = c->k, nk = n * k;
  float *x = host_f32(nk > 0 ? nk : 1);
  wkt_fill_f32(x, nk, 1200 + (uint64_t)_i, -2.0f, 2.0f);
  for (int64_t e = 0; e < nk; e++) x[e] = floorf(x[e] * 2.0f) / 2.0f;
  if (n >= 3 && k >= 2) {
    x[0] = NAN;
    x[2 * k - 1] = NAN;
    for (int64_t j = 0; j < k; j++) x[2 * k + j] = 0.0f;
    x[2 * k] = -0.0f;
  }
  int32_t *want = malloc((size_t)(n > 0 ? n : 1) * sizeof *want);
  int32_t *got = malloc((size_t)(n > 0 ? n : 1) * sizeof *got);
  ck_assert(want && got);
  for (int64_t i = 0; i < n; i++) want[i] = wk_argmax(x + i * k, (int)k), got[i] = -1;
  float *d_x = device_f32(x, nk > 0 ? nk : 1);
  int32_t *d_out = device_copy(got, (size_t)(n > 0 ? n : 1) * sizeof *got);
  CK_LAUNCH(wk_launch_argmax_rows_f32(n, k, d_x, d_out, NULL));
  if (n > 0) CK_WK(wk_cuda_copy_d2h(got, d_out, (size_t)n * sizeof *got));
  for (int64_t i = 0; i < n; i++)
    if (got[i] != want[i])
      ck_abort_msg("argmax of row %lld of (%lld, %lld): got %d, want %d",
                  (long long)i, (long long)n, (long long)k, got[i], want[i]);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_out));
  free(x), free(want), free(got);
}
END_TEST

/* The optimizer test's arena: parameters of odd sizes with gaps between them
 * (never written), a no-decay bias, a frozen one and discriminative rates. */
enum { OPT_N_PARAMS = 6 };
static const size_t opt_offsets[OPT_N_PARAMS] = {0, 3, 20, 300, 1000400, 1000800};
static const size_t opt_numels[OPT_N_PARAMS] = {1, 7, 257, 1000003, 300, 33};
static const size_t opt_n_elems = 1000840;

static void opt_params(wk_param *p) {
  memset(p, 0, OPT_N_PARAMS * sizeof *p);
  for (int i = 0; i < OPT_N_PARAMS; i++) {
    snprintf(p[i].name, sizeof p[i].name, "p%d", i);
    p[i].ndim = 1;
    p[i].shape[0] = (int64_t)opt_numels[i];
    p[i].offset = opt_offsets[i];
    p[i].numel = opt_numels[i];
    p[i].lr_scale = i == 2 ? 0.1f : 1.0f;
  }
  p[1].flags = WK_PARAM_NO_DECAY;
  p[4].flags = WK_PARAM_FROZEN;
}

/* Segments of this step from the coefficients wk_optim_step just used. */
static int opt_segments(const wk_optim *o, wk_optim_segment *segs) {
  int n = 0;
  for (size_t i = 0; i < o->n_params; i++) {
    const wk_optim_coef *c = &o->coef[i];
    if (!c->active) continue;
    segs[n++] = (wk_optim_segment){
        .offset = (int64_t)o->params[i].offset, .numel = (int64_t)o->params[i].numel,
        .neg_lr = c->neg_lr, .wd = c->wd, .momentum = c->momentum, .first = c->first,
        .decay = c->decay, .b1 = c->b1, .c1 = c->c1, .b2 = c->b2, .c2 = c->c2,
        .bc2_sqrt = c->bc2_sqrt, .eps = c->eps, .neg_step = c->neg_step};
  }
  return n;
}

/* optim: 0 = SGD plain, 1 = SGD momentum, 2 = SGD nesterov, 3 = AdamW. Four
 * steps of wk_optim_step on the CPU and of the launcher on the device from the
 * same start and gradients: weights and every state array bit for bit after
 * each step (the parameter's first step included), the gaps and the frozen
 * parameter untouched on both. */
START_TEST(test_optim) {
  wk_optim_config cfg = wk_optim_config_default(_i == 3 ? WK_OPTIM_ADAMW : WK_OPTIM_SGD);
  cfg.weight_decay = _i == 3 ? 0.05 : 5e-4;
  if (_i == 0) cfg.momentum = 0.0;
  if (_i == 2) cfg.nesterov = true;
  wk_param params[OPT_N_PARAMS];
  opt_params(params);
  wk_optim *o = NULL;
  CK_WK(wk_optim_create(&cfg, params, OPT_N_PARAMS, opt_n_elems, &o));
  const int64_t n = (int64_t)opt_n_elems;
  float *w = host_f32(n), *g = host_f32(n), *got = host_f32(n), *want = host_f32(n);
  wkt_fill_f32(w, n, 1200 + (uint64_t)_i, -1.0f, 1.0f);
  float *d_w = device_f32(w, n), *d_g = device_f32(NULL, n);
  float *d_s[WK_OPTIM_MAX_STATE] = {NULL, NULL};
  const size_t n_state = wk_optim_state_count(o);
  for (size_t s = 0; s < n_state; s++) {
    CK_WK(wk_optim_state_get(o, wk_optim_state_name(o, s), want, opt_n_elems));
    d_s[s] = device_f32(want, n);
  }
  wk_optim_segment segs[OPT_N_PARAMS];
  wk_optim_segment *d_segs = NULL;
  CK_WK(wk_cuda_malloc((void **)&d_segs, sizeof segs));
  const int flags[2] = {0, 1}; /* the gated launchers' flag: go, skip */
  int *d_flags = device_copy(flags, sizeof flags);
  for (int step = 0; step < 4; step++) {
    wkt_fill_f32(g, n, 1300 + 10 * (uint64_t)_i + (uint64_t)step, -0.5f, 0.5f);
    if (step == 2) g[5] = 1e-30f, g[6] = 0.0f; /* tiny second moments */
    CK_WK(wk_cuda_copy_h2d(d_g, g, (size_t)n * sizeof(float)));
    CK_WK(wk_optim_step(o, NULL, w, g, 0.05 / (1 + step)));
    const int n_segs = opt_segments(o, segs);
    ck_assert_int_eq(n_segs, OPT_N_PARAMS - 1);
    CK_WK(wk_cuda_copy_h2d(d_segs, segs, (size_t)n_segs * sizeof segs[0]));
    /* a gated update with the flag set changes nothing (the comparison below
     * would show it); odd steps update through the gated launchers */
    if (_i == 3)
      CK_LAUNCH(wk_launch_adamw_unless_f32(n_segs, d_segs, d_w, d_g, d_s[0], d_s[1],
                                           d_flags + 1, NULL));
    else
      CK_LAUNCH(wk_launch_sgd_unless_f32(n_segs, d_segs, cfg.nesterov, d_w, d_g, d_s[0],
                                         d_flags + 1, NULL));
    if (_i == 3 && step % 2)
      CK_LAUNCH(wk_launch_adamw_unless_f32(n_segs, d_segs, d_w, d_g, d_s[0], d_s[1], d_flags,
                                           NULL));
    else if (_i == 3)
      CK_LAUNCH(wk_launch_adamw_f32(n_segs, d_segs, d_w, d_g, d_s[0], d_s[1], NULL));
    else if (step % 2)
      CK_LAUNCH(wk_launch_sgd_unless_f32(n_segs, d_segs, cfg.nesterov, d_w, d_g, d_s[0],
                                         d_flags, NULL));
    else
      CK_LAUNCH(wk_launch_sgd_f32(n_segs, d_segs, cfg.nesterov, d_w, d_g, d_s[0], NULL));
    to_host(got, d_w, n);
    ck_same_f32("optimizer weights", got, w, n);
    for (size_t s = 0; s < n_state; s++) {
      CK_WK(wk_optim_state_get(o, wk_optim_state_name(o, s), want, opt_n_elems));
      to_host(got, d_s[s], n);
      ck_same_f32(wk_optim_state_name(o, s), got, want, n);
    }
  }
  CK_WK(wk_cuda_free(d_w));
  CK_WK(wk_cuda_free(d_g));
  for (size_t s = 0; s < n_state; s++) CK_WK(wk_cuda_free(d_s[s]));
  CK_WK(wk_cuda_free(d_segs));
  CK_WK(wk_cuda_free(d_flags));
  wk_optim_destroy(o);
  free(w), free(g), free(got), free(want);
}
END_TEST

/* x *= s bit for bit the float product, in place, denormals included. */
START_TEST(test_scale) {
  const int64_t n = sizes[_i];
  const float s = 0.3f / 7.0f;
  float *x = host_f32(n), *want = host_f32(n), *got = host_f32(n);
  wkt_fill_f32(x, n, 1400 + (uint64_t)_i, -100.0f, 100.0f);
  plant_specials(x, n);
  for (int64_t i = 0; i < n; i++) want[i] = x[i] * s;
  float *d_x = device_f32(x, n);
  CK_LAUNCH(wk_launch_scale_f32(n, s, d_x, NULL));
  to_host(got, d_x, n);
  ck_same_f32("scale", got, want, n);
  /* the factor read on the device, gated: skipped, then applied */
  const int flags[2] = {0, 1};
  int *d_flags = device_copy(flags, sizeof flags);
  float *d_s = device_f32(&s, 1);
  CK_WK(wk_cuda_copy_h2d(d_x, x, (size_t)n * sizeof(float)));
  CK_LAUNCH(wk_launch_scale_unless_f32(n, d_s, d_flags + 1, d_x, NULL));
  to_host(got, d_x, n);
  ck_same_f32("scale, skipped", got, x, n);
  CK_LAUNCH(wk_launch_scale_unless_f32(n, d_s, d_flags, d_x, NULL));
  to_host(got, d_x, n);
  ck_same_f32("scale, factor on the device", got, want, n);
  CK_WK(wk_cuda_free(d_flags));
  CK_WK(wk_cuda_free(d_s));
  CK_WK(wk_cuda_free(d_x));
  free(x), free(want), free(got);
}
END_TEST

/* Round to nearest even into bfloat16's 16 bits (the reference for the
 * kernel), for every value but NaN. */
static uint16_t bf16_ref(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* IEEE float16 by the compiler's own conversion (GCC's _Float16: round to
 * nearest even, subnormals, overflow to infinity), as bits. The clang static
 * analyzer (scripts/static_check.sh: clang 14, no _Float16 on x86-64) reads
 * these with clang's __fp16, the same IEEE binary16 in storage, so that it
 * analyses this file at all; every build compiles _Float16. */
#if defined(__clang_analyzer__) && !defined(__FLT16_MANT_DIG__)
typedef __fp16 wkt_float16;
#else
__extension__ typedef _Float16 wkt_float16;
#endif

static uint16_t f16_ref(float f) {
  const wkt_float16 h = (wkt_float16)f;
  uint16_t b;
  memcpy(&b, &h, sizeof b);
  return b;
}

static float f16_value(uint16_t b) {
  wkt_float16 h;
  memcpy(&h, &b, sizeof b);
  return (float)h;
}

static float bf16_value(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* float -> 16 bits -> float for bfloat16 and float16: the rounding bit for
 * bit the reference's over random values in a range that reaches float16's
 * overflow and subnormals, ties (exactly half-way, both parities), the
 * largest finite floats (to infinity) and infinities; back to float exact;
 * with accumulate, one IEEE add onto what was there. */
static void check_half(int64_t n, int seed, bool fp16) {
  const char *name = fp16 ? "f16" : "bf16";
  float *x = host_f32(n), *back = host_f32(n), *acc = host_f32(n), *want = host_f32(n);
  uint16_t *b = malloc((size_t)n * sizeof *b);
  ck_assert_ptr_nonnull(b);
  wkt_fill_f32(x, n, 1600 + (uint64_t)seed, -70000.0f, 70000.0f);
  for (int64_t i = 0; i < n; i += 3) x[i] *= 1e-9f; /* float16 subnormals and underflow */
  static const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x00000001u, 0x807fffffu,
                                     0x7f7fffffu, 0x7f7f7fffu, 0xff800000u, 0x7f800000u,
                                     0x80000000u, 0x3f80ffffu, 0x477fe000u, 0x477ff000u,
                                     0x33800000u, 0x33000000u};
  const int64_t n_special = (int64_t)(sizeof special / sizeof special[0]);
  for (int64_t k = 0; k < n && k < n_special; k++)
    memcpy(&x[k * (n / n_special > 0 ? n / n_special : 1) % n], &special[k], sizeof(float));
  float *d_x = device_f32(x, n), *d_y = device_f32(NULL, n);
  uint16_t *d_b = NULL;
  CK_WK(wk_cuda_malloc((void **)&d_b, (size_t)n * sizeof *d_b));
  CK_LAUNCH(fp16 ? wk_launch_f32_to_f16(n, d_x, d_b, NULL) : wk_launch_f32_to_bf16(n, d_x, d_b, NULL));
  CK_WK(wk_cuda_copy_d2h(b, d_b, (size_t)n * sizeof *b));
  for (int64_t i = 0; i < n; i++) {
    const uint16_t r = fp16 ? f16_ref(x[i]) : bf16_ref(x[i]);
    if (b[i] != r) ck_abort_msg("%s of %a: 0x%04x, want 0x%04x", name, (double)x[i], b[i], r);
  }
  CK_LAUNCH(fp16 ? wk_launch_f16_to_f32(n, d_b, d_y, false, NULL)
                 : wk_launch_bf16_to_f32(n, d_b, d_y, false, NULL));
  to_host(back, d_y, n);
  for (int64_t i = 0; i < n; i++) want[i] = fp16 ? f16_value(b[i]) : bf16_value(b[i]);
  ck_same_f32(name, back, want, n);
  wkt_fill_f32(acc, n, 1700 + (uint64_t)seed, -1.0f, 1.0f);
  CK_WK(wk_cuda_copy_h2d(d_y, acc, (size_t)n * sizeof *acc));
  CK_LAUNCH(fp16 ? wk_launch_f16_to_f32(n, d_b, d_y, true, NULL)
                 : wk_launch_bf16_to_f32(n, d_b, d_y, true, NULL));
  to_host(back, d_y, n);
  for (int64_t i = 0; i < n; i++) want[i] = acc[i] + want[i];
  ck_same_f32(name, back, want, n);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_b));
  free(x), free(back), free(acc), free(want), free(b);
}

START_TEST(test_bf16) { check_half(sizes[_i], _i, false); }
END_TEST
START_TEST(test_f16) { check_half(sizes[_i], _i, true); }
END_TEST

/* The flag is set by a NaN, +Inf or -Inf anywhere (first, middle, last
 * element), not by finite extremes, and never cleared. */
START_TEST(test_nonfinite) {
  const int64_t n = sizes[_i];
  float *x = host_f32(n);
  wkt_fill_f32(x, n, 1500 + (uint64_t)_i, -1.0f, 1.0f);
  x[0] = 3.4028235e38f;
  if (n > 1) x[1] = -1e-45f;
  float *d_x = device_f32(x, n);
  int *d_flag = NULL, flag = -1;
  const int zero = 0;
  CK_WK(wk_cuda_malloc((void **)&d_flag, sizeof flag));
  CK_WK(wk_cuda_copy_h2d(d_flag, &zero, sizeof zero));
  CK_LAUNCH(wk_launch_nonfinite_f32(n, d_x, d_flag, NULL));
  CK_WK(wk_cuda_copy_d2h(&flag, d_flag, sizeof flag));
  ck_assert_int_eq(flag, 0);
  const float bads[] = {NAN, INFINITY, -INFINITY};
  const int64_t where[] = {0, n / 2, n - 1};
  for (int b = 0; b < 3; b++)
    for (int p = 0; p < 3; p++) {
      const float keep = x[where[p]];
      x[where[p]] = bads[b];
      CK_WK(wk_cuda_copy_h2d(d_x, x, (size_t)n * sizeof(float)));
      CK_WK(wk_cuda_copy_h2d(d_flag, &zero, sizeof zero));
      CK_LAUNCH(wk_launch_nonfinite_f32(n, d_x, d_flag, NULL));
      CK_WK(wk_cuda_copy_d2h(&flag, d_flag, sizeof flag));
      ck_assert_msg(flag == 1, "%g at %lld of %lld not flagged", (double)bads[b],
                    (long long)where[p], (long long)n);
      x[where[p]] = keep;
    }
  CK_WK(wk_cuda_copy_h2d(d_x, x, (size_t)n * sizeof(float)));
  CK_LAUNCH(wk_launch_nonfinite_f32(n, d_x, d_flag, NULL)); /* flag still 1: kept */
  CK_WK(wk_cuda_copy_d2h(&flag, d_flag, sizeof flag));
  ck_assert_int_eq(flag, 1);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_flag));
  free(x);
}
END_TEST

/* ------------------------------------------------------------------ 16-bit storage */

/* The *_h kernels (--precision bf16 and fp16) against the float32 references
 * of src/ops run on the widened inputs, each stored result rounded once
 * (wk_kernels.h): the inputs are random floats rounded to the format, so that
 * they are exactly what the kernel widens, and the results must match bit for
 * bit, with one exception: where the expected result is a NaN, any NaN will
 * do. The NaN a rounding gives is not part of the contract (the device stores
 * its canonical NaN; a payload may or may not survive a rounding, and
 * bf16_ref is not meant for NaNs: a payload can carry into the sign bit), so
 * "both NaN" is compared, never the bits. Each loop test runs both formats:
 * even _i bfloat16, odd _i float16, over the float32 tests' cases (_i / 2). */

static const wk_half_kind half_kinds[2] = {WK_HALF_BF16, WK_HALF_F16};

static const char *half_name(wk_half_kind kind) { return kind == WK_HALF_F16 ? "f16" : "bf16"; }

/* Exponent all ones and a nonzero fraction. */
static bool half_isnan(wk_half_kind kind, uint16_t b) {
  return kind == WK_HALF_F16 ? (b & 0x7c00u) == 0x7c00u && (b & 0x03ffu) != 0
                             : (b & 0x7f80u) == 0x7f80u && (b & 0x007fu) != 0;
}

/* f rounded to nearest even into the format's bits (overflow to infinity);
 * a NaN gives the quiet NaN. */
static uint16_t half_round(wk_half_kind kind, float f) {
  if (isnan(f)) return kind == WK_HALF_F16 ? 0x7e00u : 0x7fc0u;
  return kind == WK_HALF_F16 ? f16_ref(f) : bf16_ref(f);
}

static float half_widen(wk_half_kind kind, uint16_t b) {
  return kind == WK_HALF_F16 ? f16_value(b) : bf16_value(b);
}

/* The largest finite value's bits. */
static uint16_t half_max_bits(wk_half_kind kind) { return kind == WK_HALF_F16 ? 0x7bffu : 0x7f7fu; }

/* Rounds x to the format in place (so x holds exactly the stored values) and
 * puts the bits in b. */
static void to_half(wk_half_kind kind, float *x, uint16_t *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    b[i] = half_round(kind, x[i]);
    x[i] = half_widen(kind, b[i]);
  }
}

/* The expected bits: the float results rounded once. */
static void round_all(wk_half_kind kind, const float *y, uint16_t *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) b[i] = half_round(kind, y[i]);
}

/* Same 16 bits, or both NaN (see above). */
static void ck_same_half(const char *what, wk_half_kind kind, const uint16_t *got,
                         const uint16_t *want, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    if (got[i] == want[i] || (half_isnan(kind, got[i]) && half_isnan(kind, want[i]))) continue;
    ck_abort_msg("%s %s: element %lld of %lld: got 0x%04x (%a), want 0x%04x (%a)", half_name(kind),
                 what, (long long)i, (long long)n, got[i], (double)half_widen(kind, got[i]),
                 want[i], (double)half_widen(kind, want[i]));
  }
}

static uint16_t *host_u16(int64_t n) {
  uint16_t *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  ck_assert_ptr_nonnull(p);
  return p;
}

/* A device array of n 16-bit values (n > 0), a copy of host unless NULL. */
static uint16_t *device_u16(const uint16_t *host, int64_t n) {
  void *d = NULL;
  CK_WK(wk_cuda_malloc(&d, (size_t)n * sizeof(uint16_t)));
  if (host) CK_WK(wk_cuda_copy_h2d(d, host, (size_t)n * sizeof(uint16_t)));
  return d;
}

static void to_host_u16(uint16_t *host, const uint16_t *dev, int64_t n) {
  CK_WK(wk_cuda_copy_d2h(host, dev, (size_t)n * sizeof(uint16_t)));
}

static void to_device_u16(uint16_t *dev, const uint16_t *host, int64_t n) {
  CK_WK(wk_cuda_copy_h2d(dev, host, (size_t)n * sizeof(uint16_t)));
}

/* plant_specials for a 16-bit format, at the start of x (float values the
 * format holds): both zeros, 6, NaN and the infinities survive the rounding,
 * but 5.999999f and 6.000001f would round to 6, so 6's two neighbours in the
 * format take their place (bfloat16 6 -+ 2^-5, float16 6 -+ 2^-8); then the
 * smallest subnormals of both signs, the largest finite value and -6. */
static void plant_half_specials(wk_half_kind kind, float *x, int64_t n) {
  const uint16_t six = half_round(kind, 6.0f);
  const uint16_t bits[] = {0x0000u,
                           0x8000u,
                           six,
                           half_round(kind, NAN),
                           half_round(kind, INFINITY),
                           half_round(kind, -INFINITY),
                           (uint16_t)(six - 1u),
                           (uint16_t)(six + 1u),
                           0x0001u,
                           0x8001u,
                           half_max_bits(kind),
                           half_round(kind, -6.0f)};
  const int64_t k = (int64_t)(sizeof bits / sizeof bits[0]);
  for (int64_t i = 0; i < k && i < n; i++) x[i] = half_widen(kind, bits[i]);
}

/* Forward and backward of one activation in 16 bits, out of place and in
 * place (y aliasing x, dx aliasing dy). */
static void check_act_h(wk_half_kind kind, wk_act act, int64_t n, uint64_t seed) {
  const bool six = act == WK_ACT_RELU6;
  const char *name = six ? "relu6" : "relu";
  float *x = host_f32(n), *dy = host_f32(n), *y = host_f32(n);
  uint16_t *xb = host_u16(n), *dyb = host_u16(n), *want = host_u16(n), *got = host_u16(n);
  wkt_fill_f32(x, n, seed, -8.0f, 8.0f);
  plant_half_specials(kind, x, n);
  to_half(kind, x, xb, n);
  wkt_fill_f32(dy, n, seed + 1, -1.0f, 1.0f);
  if (n > 20) dy[2] = NAN, dy[6] = -INFINITY, dy[7] = INFINITY, dy[20] = NAN; /* x = 6, 6 -+ ulp */
  to_half(kind, dy, dyb, n);
  uint16_t *d_x = device_u16(xb, n), *d_dy = device_u16(dyb, n), *d_out = device_u16(NULL, n);

  wk_act_forward_ref_f32(act, n, x, y);
  round_all(kind, y, want, n);
  if (n > 11) { /* the kinks, as the reference has them */
    const uint16_t s = half_round(kind, 6.0f);
    ck_assert_uint_eq(want[1], 0x0000u); /* -0 -> +0 */
    ck_assert_uint_eq(want[3], 0x0000u); /* NaN -> 0 */
    ck_assert_uint_eq(want[6], (uint16_t)(s - 1u));
    ck_assert_uint_eq(want[7], six ? s : (uint16_t)(s + 1u));
  }
  CK_LAUNCH(wk_launch_act_forward_h(kind, n, six, d_x, d_out, NULL));
  to_host_u16(got, d_out, n);
  ck_same_half(name, kind, got, want, n);
  to_device_u16(d_out, xb, n);
  CK_LAUNCH(wk_launch_act_forward_h(kind, n, six, d_out, d_out, NULL));
  to_host_u16(got, d_out, n);
  ck_same_half(six ? "relu6 in place" : "relu in place", kind, got, want, n);

  wk_act_backward_ref_f32(act, n, x, dy, y);
  round_all(kind, y, want, n);
  CK_LAUNCH(wk_launch_act_backward_h(kind, n, six, d_x, d_dy, d_out, NULL));
  to_host_u16(got, d_out, n);
  ck_same_half(six ? "relu6 backward" : "relu backward", kind, got, want, n);
  to_device_u16(d_out, dyb, n);
  CK_LAUNCH(wk_launch_act_backward_h(kind, n, six, d_x, d_out, d_out, NULL));
  to_host_u16(got, d_out, n);
  ck_same_half(six ? "relu6 backward in place" : "relu backward in place", kind, got, want, n);

  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_dy));
  CK_WK(wk_cuda_free(d_out));
  free(x), free(dy), free(y), free(xb), free(dyb), free(want), free(got);
}

START_TEST(test_relu_h) {
  check_act_h(half_kinds[_i % 2], WK_ACT_RELU, sizes[_i / 2], 2000 + (uint64_t)_i);
}
END_TEST

START_TEST(test_relu6_h) {
  check_act_h(half_kinds[_i % 2], WK_ACT_RELU6, sizes[_i / 2], 2100 + (uint64_t)_i);
}
END_TEST

/* a + b rounded once, out of place and in place (y aliasing a, then b), with
 * inf + -inf = NaN, x + -x = +0 and the largest finite value doubled: float16
 * 65504 + 65504 overflows to +inf on rounding (bfloat16's in the float add). */
START_TEST(test_add_h) {
  const wk_half_kind kind = half_kinds[_i % 2];
  const int64_t n = sizes[_i / 2];
  float *a = host_f32(n), *b = host_f32(n), *y = host_f32(n);
  uint16_t *ab = host_u16(n), *bb = host_u16(n), *want = host_u16(n), *got = host_u16(n);
  /* mixed magnitudes, so most sums round */
  wkt_fill_f32(a, n, 2200 + (uint64_t)_i, -1000.0f, 1000.0f);
  wkt_fill_f32(b, n, 2300 + (uint64_t)_i, -4.0f, 4.0f);
  to_half(kind, a, ab, n);
  if (n > 3) {
    const float big = half_widen(kind, half_max_bits(kind));
    a[1] = INFINITY, b[1] = -INFINITY, b[2] = -a[2], a[3] = big, b[3] = big;
  }
  to_half(kind, a, ab, n);
  to_half(kind, b, bb, n);
  wk_add_forward_ref_f32(n, a, b, y);
  round_all(kind, y, want, n);
  if (n > 3) {
    const uint16_t inf = half_round(kind, INFINITY);
    ck_assert(half_isnan(kind, want[1]));
    ck_assert_uint_eq(want[2], 0x0000u);
    ck_assert_uint_eq(want[3], inf);
  }
  uint16_t *d_a = device_u16(ab, n), *d_b = device_u16(bb, n), *d_y = device_u16(NULL, n);
  CK_LAUNCH(wk_launch_add_h(kind, n, d_a, d_b, d_y, NULL));
  to_host_u16(got, d_y, n);
  ck_same_half("add", kind, got, want, n);
  CK_LAUNCH(wk_launch_add_h(kind, n, d_a, d_b, d_a, NULL));
  to_host_u16(got, d_a, n);
  ck_same_half("add in place (a)", kind, got, want, n);
  to_device_u16(d_a, ab, n);
  CK_LAUNCH(wk_launch_add_h(kind, n, d_a, d_b, d_b, NULL));
  to_host_u16(got, d_b, n);
  ck_same_half("add in place (b)", kind, got, want, n);
  CK_WK(wk_cuda_free(d_a));
  CK_WK(wk_cuda_free(d_b));
  CK_WK(wk_cuda_free(d_y));
  free(a), free(b), free(y), free(ab), free(bb), free(want), free(got);
}
END_TEST

typedef struct bias_case {
  int64_t rows, k;
} bias_case;

/* k = 1 (a million rows), k under, just over and well over a warp and not a
 * multiple of 32, a convolution's output (3 x 112 x 112 pixels of 64
 * channels), a classifier's 1000. */
static const bias_case bias_cases[] = {{1, 1},     {1000003, 1},       {7, 31},   {3, 33},
                                       {257, 100}, {3 * 112 * 112, 64}, {50, 1000}};
enum { N_BIAS_CASES = sizeof bias_cases / sizeof bias_cases[0] };

/* y[r, j] = round(y[r, j] + bias[j]) in place: one float add of the widened
 * value and the float bias, then the rounding, bit for bit. */
START_TEST(test_bias_add_h) {
  const wk_half_kind kind = half_kinds[_i % 2];
  const bias_case *c = &bias_cases[_i / 2];
  const int64_t n = c->rows * c->k;
  float *y = host_f32(n), *bias = host_f32(c->k), *sum = host_f32(n);
  uint16_t *yb = host_u16(n), *want = host_u16(n), *got = host_u16(n);
  wkt_fill_f32(y, n, 2400 + (uint64_t)_i, -8.0f, 8.0f);
  plant_half_specials(kind, y, n);
  to_half(kind, y, yb, n);
  wkt_fill_f32(bias, c->k, 2500 + (uint64_t)_i, -1.0f, 1.0f);
  for (int64_t r = 0; r < c->rows; r++)
    for (int64_t j = 0; j < c->k; j++) sum[r * c->k + j] = y[r * c->k + j] + bias[j];
  round_all(kind, sum, want, n);
  uint16_t *d_y = device_u16(yb, n);
  float *d_bias = device_f32(bias, c->k);
  CK_LAUNCH(wk_launch_bias_add_h(kind, c->rows, c->k, d_bias, d_y, NULL));
  to_host_u16(got, d_y, n);
  ck_same_half("bias add", kind, got, want, n);
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_bias));
  free(y), free(bias), free(sum), free(yb), free(want), free(got);
}
END_TEST

/* The uint8 -> normalised conversion into 16 bits: normalize_ref's floats
 * rounded once, bit for bit, flips included. */
START_TEST(test_normalize_h) {
  const wk_half_kind kind = half_kinds[_i % 2];
  const norm_case *k = &norm_cases[_i / 2];
  const float mean[WK_NORMALIZE_MAX_CHANNELS] = {0.485f, 0.456f, 0.406f, 0.5f};
  const float sd[WK_NORMALIZE_MAX_CHANNELS] = {0.229f, 0.224f, 0.225f, 0.25f};
  const int64_t n_elems = k->n * k->h * k->w * k->c;
  uint8_t *x = malloc((size_t)n_elems), *flip = malloc((size_t)k->n);
  ck_assert(x && flip);
  wk_rng r = wk_rng_make(2600 + (uint64_t)_i, 0);
  for (int64_t i = 0; i < n_elems; i++) x[i] = (uint8_t)wk_rng_u32(&r);
  x[0] = 0, x[n_elems - 1] = 255;
  for (int64_t b = 0; b < k->n; b++)
    flip[b] = (uint8_t)(k->flip == 1 ? 1 + b : (k->flip == 2 ? b % 2 * 7 : 0));
  float *y = host_f32(n_elems);
  uint16_t *want = host_u16(n_elems), *got = host_u16(n_elems);
  normalize_ref(k, x, k->flip ? flip : NULL, mean, sd, y);
  round_all(kind, y, want, n_elems);

  void *d_x = device_copy(x, (size_t)n_elems), *d_flip = device_copy(flip, (size_t)k->n);
  uint16_t *d_y = device_u16(NULL, n_elems);
  CK_LAUNCH(wk_launch_normalize_u8_h(kind, k->n, k->h, k->w, k->c, d_x, k->flip ? d_flip : NULL,
                                     mean, sd, d_y, NULL));
  to_host_u16(got, d_y, n_elems);
  ck_same_half("normalize", kind, got, want, n_elems);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_flip));
  CK_WK(wk_cuda_free(d_y));
  free(x), free(flip), free(y), free(want), free(got);
}
END_TEST

/* Dropout in 16 bits: wk_dropout_ref_f32 on the widened values, rounded (a
 * kept element is x * (float)(1 / (1 - p)), rounded once: the largest finite
 * value planted overflows to infinity when kept at p > 0), at p = 0, 0.1, 0.5, 0.9 and
 * an odd counter offset. With seed_step NULL, (seed, stream_id) as given, out
 * of place and in place (the backward: the same call on dy -> dx); with
 * seed_step on the device, the _at launcher's stream: seed_step[0] and
 * (seed_step[1] << 16) ^ node, stream_id being the node and the seed argument
 * ignored (a different one is passed). */
START_TEST(test_dropout_h) {
  const wk_half_kind kind = half_kinds[_i % 2];
  const int64_t n = sizes[_i / 2];
  const double ps[] = {0.0, 0.1, 0.5, 0.9};
  float *x = host_f32(n), *y = host_f32(n);
  uint16_t *xb = host_u16(n), *want = host_u16(n), *got = host_u16(n);
  wkt_fill_f32(x, n, 2700 + (uint64_t)_i, -4.0f, 4.0f);
  plant_half_specials(kind, x, n);
  to_half(kind, x, xb, n);
  uint16_t *d_x = device_u16(xb, n), *d_y = device_u16(NULL, n), *d_z = device_u16(NULL, n);
  for (size_t t = 0; t < sizeof ps / sizeof ps[0]; t++) {
    const uint64_t seed = 0x123456789abcdefull + t, stream_id = 0xfedcba987654321ull;
    const int64_t offset = 1000000007 + (int64_t)t;
    wk_dropout_ref_f32(ps[t], seed, stream_id, offset, n, x, y);
    round_all(kind, y, want, n);
    CK_LAUNCH(wk_launch_dropout_h(kind, n, ps[t], seed, stream_id, NULL, offset, d_x, d_y, NULL));
    to_host_u16(got, d_y, n);
    ck_same_half("dropout", kind, got, want, n);
    to_device_u16(d_z, xb, n);
    CK_LAUNCH(wk_launch_dropout_h(kind, n, ps[t], seed, stream_id, NULL, offset, d_z, d_z, NULL));
    to_host_u16(got, d_z, n);
    ck_same_half("dropout in place", kind, got, want, n);

    const uint64_t seed_step[2] = {seed ^ 0x5a5a5a5aull, 0x1234567ull + t}, node = 37;
    uint64_t *d_ss = device_copy(seed_step, sizeof seed_step);
    wk_dropout_ref_f32(ps[t], seed_step[0], (seed_step[1] << 16) ^ node, offset, n, x, y);
    round_all(kind, y, want, n);
    CK_LAUNCH(wk_launch_dropout_h(kind, n, ps[t], seed, node, d_ss, offset, d_x, d_y, NULL));
    to_host_u16(got, d_y, n);
    ck_same_half("dropout, stream on the device", kind, got, want, n);
    CK_WK(wk_cuda_free(d_ss));
  }
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_z));
  free(x), free(y), free(xb), free(want), free(got);
}
END_TEST

/* Global average pool forward and backward in 16 bits: the float references'
 * results (double sums in order, then float) rounded once, bit for bit. */
START_TEST(test_global_avgpool_h) {
  const wk_half_kind kind = half_kinds[_i % 2];
  const pool_case *k = &pool_cases[_i / 2];
  const int64_t n_in = k->n * k->hw * k->c, n_out = k->n * k->c;
  float *x = host_f32(n_in), *dy = host_f32(n_out), *y = host_f32(n_out), *dx = host_f32(n_in);
  uint16_t *xb = host_u16(n_in), *dyb = host_u16(n_out);
  uint16_t *want_y = host_u16(n_out), *got_y = host_u16(n_out);
  uint16_t *want_dx = host_u16(n_in), *got_dx = host_u16(n_in);
  wkt_fill_f32(x, n_in, 2800 + (uint64_t)_i, -3.0f, 5.0f);
  wkt_fill_f32(dy, n_out, 2900 + (uint64_t)_i, -1.0f, 1.0f);
  to_half(kind, x, xb, n_in);
  to_half(kind, dy, dyb, n_out);
  wk_global_avgpool_forward_ref_f32(k->n, k->hw, k->c, x, y);
  wk_global_avgpool_backward_ref_f32(k->n, k->hw, k->c, dy, dx);
  round_all(kind, y, want_y, n_out);
  round_all(kind, dx, want_dx, n_in);
  uint16_t *d_x = device_u16(xb, n_in), *d_y = device_u16(NULL, n_out);
  uint16_t *d_dy = device_u16(dyb, n_out), *d_dx = device_u16(NULL, n_in);
  CK_LAUNCH(wk_launch_global_avgpool_h(kind, true, k->n, k->hw, k->c, d_x, d_y, NULL));
  CK_LAUNCH(wk_launch_global_avgpool_h(kind, false, k->n, k->hw, k->c, d_dy, d_dx, NULL));
  to_host_u16(got_y, d_y, n_out);
  to_host_u16(got_dx, d_dx, n_in);
  ck_same_half("global avgpool forward", kind, got_y, want_y, n_out);
  ck_same_half("global avgpool backward", kind, got_dx, want_dx, n_in);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_dy));
  CK_WK(wk_cuda_free(d_dx));
  free(x), free(dy), free(y), free(dx), free(xb), free(dyb), free(want_y), free(got_y),
      free(want_dx), free(got_dx);
}
END_TEST

typedef struct col_case {
  int64_t rows, k;
} col_case;

/* No rows (zeros written), one row, fewer rows than chunks, exactly
 * WK_COL_SUM_CHUNKS, one more (half the chunks empty), 256 * 7 + 3 (ragged
 * chunks of 8 rows), a convolution's 3 x 112 x 112 pixels of 64 channels, a
 * million rows of one column, and k = 1, 31, 33, 1000 (column blocks of 32,
 * ragged). */
static const col_case col_cases[] = {
    {0, 5},    {1, 1},           {1, 1000},       {7, 31},            {200, 33},   {256, 64},
    {257, 31}, {256 * 7 + 3, 33}, {256 * 7 + 3, 1}, {3 * 112 * 112, 64}, {1000, 1000}, {1000003, 1}};
enum { N_COL_CASES = sizeof col_cases / sizeof col_cases[0] };

/* The 16-bit bias gradient: out[j] = sum_r x[r, j] against the sum of the
 * widened values in double (exact to ~rows * 2^-53, far below the bound).
 *
 * Tolerance. The kernel cuts the rows into chunks of m = ceil(rows / min(rows,
 * 256)) rows; each of 8 lanes adds its at most L = ceil(m / 8) rows one by one
 * in float from 0 (the first add exact, then L - 1 roundings), the 8 lane sums
 * are added in order (7 roundings), the chunk sums added in double (at most
 * 256 roundings of 2^-53: negligible) and the total rounded to float (one
 * more). Each float rounding errs by at most u = 2^-24 times a partial sum,
 * and every partial sum is at most S = sum_r |x[r, j]|, so to first order
 *   |out[j] - sum| <= (L - 1 + 7 + 1) u S = (L + 7) u S,
 * and (L + 8) u S covers the second-order terms and the double steps. This is
 * the worst case, not the typical sqrt(m) u of the header: the kernel is
 * deterministic, so an unlucky seed would fail every run, and a bound that
 * depends on cancellation (relative to |sum| rather than S) could not be met
 * by any float summation of signed values. It is relative to the sum for a
 * column of one sign; the values here, in [-1, 3), are mostly positive. It
 * still catches a row dropped or counted twice: one row is about S / rows,
 * and rows (L + 8) u < 1 for every case (3 x 112 x 112: 37632 x 27 x 2^-24
 * = 0.06; a million rows of k = 1: 1000003 x 497 x 2^-24 ~ 30, so there a
 * missing row hides; the chunk-sized cases check the indexing).
 *
 * With rows <= 256 every chunk is one row, its float sum exact (v + 0 + ...),
 * so the contract leaves only the double sum in row order, then float: bit
 * for bit (float)(that double). out and partial start as NaNs (a value not
 * written shows), and a second launch over the first's result gives the same
 * bits: written, not accumulated, and deterministic. */
START_TEST(test_col_sum_h) {
  const wk_half_kind kind = half_kinds[_i % 2];
  const col_case *c = &col_cases[_i / 2];
  const int64_t rows = c->rows, k = c->k, n = rows * k;
  const int64_t chunks = rows < WK_COL_SUM_CHUNKS ? rows : WK_COL_SUM_CHUNKS;
  const int64_t m = chunks > 0 ? (rows + chunks - 1) / chunks : 0, lane_rows = (m + 7) / 8;
  const double gamma = (double)(lane_rows + 8) * 0x1p-24;
  float *x = host_f32(n > 0 ? n : 1), *got = host_f32(k), *again = host_f32(k);
  uint16_t *xb = host_u16(n);
  xb[0] = 0; /* uploaded even with no rows */
  double *sum = malloc((size_t)k * sizeof *sum), *abs_sum = malloc((size_t)k * sizeof *abs_sum);
  ck_assert(sum && abs_sum);
  wkt_fill_f32(x, n, 3000 + (uint64_t)_i, -1.0f, 3.0f);
  to_half(kind, x, xb, n);
  for (int64_t j = 0; j < k; j++) sum[j] = 0.0, abs_sum[j] = 0.0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < k; j++) {
      sum[j] += (double)x[r * k + j];
      abs_sum[j] += fabs((double)x[r * k + j]);
    }

  const int64_t n_partial = chunks * k > 0 ? chunks * k : 1;
  float *nans = host_f32(n_partial > k ? n_partial : k);
  for (int64_t i = 0; i < (n_partial > k ? n_partial : k); i++) nans[i] = NAN;
  uint16_t *d_x = device_u16(xb, n > 0 ? n : 1);
  float *d_partial = device_f32(nans, n_partial), *d_out = device_f32(nans, k);
  CK_LAUNCH(wk_launch_col_sum_h(kind, rows, k, d_x, d_partial, d_out, NULL));
  to_host(got, d_out, k);
  CK_LAUNCH(wk_launch_col_sum_h(kind, rows, k, d_x, d_partial, d_out, NULL));
  to_host(again, d_out, k);
  for (int64_t j = 0; j < k; j++) {
    const double tol = gamma * abs_sum[j];
    if (!(fabs((double)got[j] - sum[j]) <= tol))
      ck_abort_msg("%s col sum (%lld, %lld): column %lld: got %.9g, want %.17g (tolerance %.3g)",
                  half_name(kind), (long long)rows, (long long)k, (long long)j, (double)got[j],
                  sum[j], tol);
    if (rows <= WK_COL_SUM_CHUNKS &&
        !(got[j] == (float)sum[j] && !signbit(got[j]) == !signbit((float)sum[j])))
      ck_abort_msg("%s col sum (%lld, %lld): column %lld: got %a, want %a", half_name(kind),
                    (long long)rows, (long long)k, (long long)j, (double)got[j],
                    (double)(float)sum[j]);
  }
  ck_same_f32("col sum, second launch", again, got, k);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_partial));
  CK_WK(wk_cuda_free(d_out));
  free(x), free(got), free(again), free(xb), free(sum), free(abs_sum), free(nans);
}
END_TEST

/* ------------------------------------------------------------------ synchronised batchnorm */

/* syncbn.cu's kernels (wk_kernels.h) against src/nn/exec_syncbn.c with one
 * rank (world 1, so total = rows) and no fused relu, and against
 * wk_batchnorm_running_update itself, in the three storages: float32, and
 * bfloat16 and float16 as the *_h tests above (random floats rounded to the
 * format, so that the host reads exactly the widened values; a 16-bit result
 * is the float result rounded once; any NaN for a NaN). Loop tests: storage
 * _i % 3 (float32, bfloat16, float16) over case _i / 3. The host references
 * are exec_syncbn.c's own expressions; this file is ISO C11 (-std=c11, where
 * GCC contracts nothing into a fused multiply-add; the pragma at the top for
 * clang), so they round each operation as the kernels' _rn intrinsics do. */

static const wk_store_kind store_kinds[3] = {WK_STORE_F32, WK_STORE_BF16, WK_STORE_F16};

static const char *store_name(wk_store_kind kind) {
  return kind == WK_STORE_F32 ? "f32" : half_name((wk_half_kind)kind);
}

/* A device array of n values in the storage, of at least one element (so that
 * a case with no rows still has a buffer). With x: x's n floats are first
 * rounded to the storage in place (so that x holds exactly what the kernel
 * widens), then copied; with x NULL the array is only allocated. */
static void *device_store(wk_store_kind kind, float *x, int64_t n) {
  const int64_t m = n > 0 ? n : 1;
  if (kind == WK_STORE_F32) return device_f32(n > 0 ? x : NULL, m);
  if (!x || n == 0) return device_u16(NULL, m);
  uint16_t *b = host_u16(n);
  to_half((wk_half_kind)kind, x, b, n);
  uint16_t *d = device_u16(b, n);
  free(b);
  return d;
}

/* The n results in the storage at dev against the float results want:
 * float32 bit for bit; 16 bits: want rounded once, bit for bit. */
static void ck_store_result(const char *what, wk_store_kind kind, const void *dev,
                            const float *want, int64_t n) {
  if (n == 0) return;
  if (kind == WK_STORE_F32) {
    char name[128];
    snprintf(name, sizeof name, "f32 %s", what);
    float *got = host_f32(n);
    to_host(got, dev, n);
    ck_same_f32(name, got, want, n);
    free(got);
    return;
  }
  const wk_half_kind h = (wk_half_kind)kind;
  uint16_t *got = host_u16(n), *wb = host_u16(n);
  to_host_u16(got, dev, n);
  round_all(h, want, wb, n);
  ck_same_half(what, h, got, wb, n);
  free(got), free(wb);
}

/* plant_specials or plant_half_specials, by storage. */
static void plant_store_specials(wk_store_kind kind, float *x, int64_t n) {
  if (kind == WK_STORE_F32) plant_specials(x, n);
  else plant_half_specials((wk_half_kind)kind, x, n);
}

static double *host_f64(int64_t n) {
  double *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  ck_assert_ptr_nonnull(p);
  return p;
}

/* A device array of n doubles (n > 0), a copy of host unless NULL. */
static double *device_f64(const double *host, int64_t n) {
  void *d = NULL;
  CK_WK(wk_cuda_malloc(&d, (size_t)n * sizeof(double)));
  if (host) CK_WK(wk_cuda_copy_h2d(d, host, (size_t)n * sizeof(double)));
  return d;
}

static void to_host_f64(double *host, const double *dev, int64_t n) {
  CK_WK(wk_cuda_copy_d2h(host, dev, (size_t)n * sizeof(double)));
}

typedef struct bn_case {
  int64_t rows, c;
} bn_case;

/* No rows (zeros written), one row, two (the smallest batch the finish
 * takes), fewer rows than WK_BN_SUM_CHUNKS, exactly as many, one more (chunks
 * of 2 rows, the last chunks empty), 256 x 7 + 3 (chunks of 8 rows, one per
 * lane, the last one ragged), 3000 rows (chunks of 12, lanes of 2 rows), and
 * c = 1, 5, 37 (channel blocks of 32, ragged), 32, 64 and 1000. */
static const bn_case bn_cases[] = {{0, 37},   {1, 1},           {2, 37},    {7, 37},
                                   {255, 5},  {256, 32},        {257, 37},  {256 * 7 + 3, 37},
                                   {3000, 37}, {3000, 1},       {3000, 64}, {1000, 1000}};
enum { N_BN_CASES = sizeof bn_cases / sizeof bn_cases[0] };
/* For the elementwise kernels only (too many rows for the sums' bound): more
 * than 65535 blocks of 256 elements, so the grid-stride loop takes a second
 * pass. */
static const bn_case bn_big_case = {454439, 37};

/* exec_syncbn.c's forward output with no relu. x, y: (rows, c). */
static void bn_norm_ref(int64_t rows, int64_t c, const float *x, const float *mean,
                        const float *invstd, const float *gamma, const float *beta, float *y) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t ch = 0; ch < c; ch++)
      y[r * c + ch] = (x[r * c + ch] - mean[ch]) * invstd[ch] * gamma[ch] + beta[ch];
}

/* exec_syncbn.c's backward sums with no relu (dz = dy), in its order: acc[ch]
 * = sum dy, acc[c + ch] = sum dy * xhat; abs_acc (unless NULL) the sums of the
 * terms' magnitudes. acc, abs_acc: (2c). */
static void bn_grad_sums_ref(int64_t rows, int64_t c, const float *x, const float *dy,
                             const float *mean, const float *invstd, double *acc,
                             double *abs_acc) {
  for (int64_t ch = 0; ch < c; ch++) {
    acc[ch] = acc[c + ch] = 0.0;
    if (abs_acc) abs_acc[ch] = abs_acc[c + ch] = 0.0;
  }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t ch = 0; ch < c; ch++) {
      const float xh = (x[r * c + ch] - mean[ch]) * invstd[ch];
      const float dz = dy[r * c + ch];
      acc[ch] += dz;
      acc[c + ch] += (double)dz * xh;
      if (abs_acc) {
        abs_acc[ch] += fabs((double)dz);
        abs_acc[c + ch] += fabs((double)dz * xh);
      }
    }
}

/* |got[j] - want[j]| <= 1e-12 abs_sum[j] for the n sums (see test_bn_sums). */
static void ck_bn_sums(const char *what, wk_store_kind kind, const bn_case *k, const double *got,
                       const double *want, const double *abs_sum, int64_t n) {
  for (int64_t j = 0; j < n; j++) {
    const double tol = 1e-12 * abs_sum[j];
    if (!(fabs(got[j] - want[j]) <= tol))
      ck_abort_msg("%s %s (%lld, %lld): sum %lld: got %.17g, want %.17g (tolerance %.3g)",
                  store_name(kind), what, (long long)k->rows, (long long)k->c, (long long)j,
                  got[j], want[j], tol);
  }
}

/* Forward's statistics and backward's sums as the network chains them: the
 * sums of x (wk_launch_bn_sums without a mean), the mean from them
 * (wk_launch_bn_mean), the centred sums of squares about that mean (with it),
 * the running statistics and invstd from those (wk_launch_bn_finish, rows >=
 * 2), backward's sums of dy and dy * xhat (wk_launch_bn_grad_sums) and the
 * parameters' gradients from them (wk_launch_bn_param_grads). Each sum
 * against exec_syncbn.c's sequential double sum within the bound below; the
 * mean, finish and parameter gradients bit for bit the host's expressions
 * (wk_batchnorm_running_update itself for the running statistics, eps and
 * momentum the float parameters widened, as the network passes them) on the
 * same inputs: the device's own sums, read back, and its mean and invstd,
 * which equal the host's. out and partial start as NaNs (a sum not written
 * shows); no rows writes zeros; a second launch of the backward's sums gives
 * the same bits (written, not accumulated; deterministic); and a NaN planted
 * in x makes its channel's sums NaN (the sum of dy excepted), leaving every
 * other channel's bits as they were.
 *
 * Tolerance. The terms are the same doubles on both sides: x widened (exact),
 * ((double)x - mean)^2 with the same two roundings, dy (exact) and (double)dy
 * * xhat (a product of two floats: exact in double), xhat the same float; so
 * only the order of the additions differs. The kernel cuts the rows into
 * chunks of m = ceil(rows / min(rows, WK_BN_SUM_CHUNKS)) rows; a lane adds
 * its at most L = ceil(m / 8) rows to 0 (the first add exact: L - 1
 * roundings), the 8 lanes are added in order (7) and the chunks in order
 * (chunks - 1); the host adds the rows in order (rows - 1). A sum in which no
 * term goes through more than D roundings of u = 2^-53 errs by at most
 * D u / (1 - D u) times S, the sum of the terms' magnitudes, so
 *   |got - want| <= (L + chunks + rows + 4) u S  (to first order).
 * For 3000 rows (chunks of 12, L = 2) that is 3262 u S = 3.6e-13 S, so 1e-12
 * S is ample for every case (asserted case by case), and still catches a row
 * lost or counted twice (a term is about S / rows, at least S / 3000).
 * Relative to S, not to the sum: a sum of signed terms can cancel. */
START_TEST(test_bn_sums) {
  const wk_store_kind kind = store_kinds[_i % 3];
  const bn_case *k = &bn_cases[_i / 3];
  const int64_t rows = k->rows, c = k->c, n = rows * c;
  const int64_t chunks = rows < WK_BN_SUM_CHUNKS ? rows : WK_BN_SUM_CHUNKS;
  const int64_t m = chunks > 0 ? (rows + chunks - 1) / chunks : 0, lane_rows = (m + 7) / 8;
  ck_assert_msg((double)(lane_rows + chunks + rows + 4) * 0x1p-53 < 1e-12,
                "(%lld, %lld): too many rows for the sums' bound", (long long)rows, (long long)c);
  const wk_batchnorm_params p = {.eps = 1e-5f, .momentum = 0.1f};
  float *x = host_f32(n > 0 ? n : 1), *dy = host_f32(n > 0 ? n : 1);
  float *mean = host_f32(c), *invstd = host_f32(c), *var = host_f32(c);
  float *rm = host_f32(c), *rv = host_f32(c), *got_f = host_f32(c), *want_f = host_f32(c);
  double *want = host_f64(2 * c), *abs_sum = host_f64(2 * c);
  double *first = host_f64(c), *got = host_f64(2 * c), *again = host_f64(2 * c);
  wkt_fill_f32(x, n, 3100 + (uint64_t)_i, -2.0f, 3.0f);
  wkt_fill_f32(dy, n, 3200 + (uint64_t)_i, -1.0f, 1.0f);
  void *d_x = device_store(kind, x, n), *d_dy = device_store(kind, dy, n);
  const int64_t n_partial = chunks > 0 ? chunks * 2 * c : 1;
  const int64_t n_nans = n_partial > 2 * c ? n_partial : 2 * c;
  double *nans = host_f64(n_nans);
  for (int64_t i = 0; i < n_nans; i++) nans[i] = NAN;
  double *d_partial = device_f64(nans, n_partial), *d_out = device_f64(nans, 2 * c);
  float *d_mean = device_f32(NULL, c), *d_invstd = device_f32(NULL, c);
  float *d_rm = device_f32(NULL, c), *d_rv = device_f32(NULL, c);
  float *d_dgamma = device_f32(NULL, c), *d_dbeta = device_f32(NULL, c);

  /* forward's first pass: sum x */
  for (int64_t j = 0; j < c; j++) want[j] = 0.0, abs_sum[j] = 0.0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t ch = 0; ch < c; ch++) {
      want[ch] += x[r * c + ch];
      abs_sum[ch] += fabs((double)x[r * c + ch]);
    }
  CK_LAUNCH(wk_launch_bn_sums(kind, rows, c, d_x, NULL, d_partial, d_out, NULL));
  to_host_f64(first, d_out, c);
  ck_bn_sums("sum", kind, k, first, want, abs_sum, c);

  /* the mean from the device's sums */
  if (rows > 0) {
    CK_LAUNCH(wk_launch_bn_mean(c, (double)rows, d_out, d_mean, NULL));
    for (int64_t ch = 0; ch < c; ch++) mean[ch] = (float)(first[ch] / (double)rows);
    to_host(got_f, d_mean, c);
    ck_same_f32("bn mean", got_f, mean, c);
  } else {
    wkt_fill_f32(mean, c, 3300 + (uint64_t)_i, -1.0f, 1.0f);
    CK_WK(wk_cuda_copy_h2d(d_mean, mean, (size_t)c * sizeof(float)));
  }

  /* second pass: sum (x - mean)^2 about the float mean */
  for (int64_t j = 0; j < c; j++) want[j] = 0.0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t ch = 0; ch < c; ch++) {
      const double d = (double)x[r * c + ch] - mean[ch];
      want[ch] += d * d;
    }
  CK_LAUNCH(wk_launch_bn_sums(kind, rows, c, d_x, d_mean, d_partial, d_out, NULL));
  to_host_f64(got, d_out, c);
  ck_bn_sums("centred sum of squares", kind, k, got, want, want, c);

  /* the running statistics and invstd from the device's sums */
  if (rows >= 2) {
    wkt_fill_f32(rm, c, 3400 + (uint64_t)_i, -1.0f, 1.0f);
    wkt_fill_f32(rv, c, 3500 + (uint64_t)_i, 0.5f, 2.0f);
    CK_WK(wk_cuda_copy_h2d(d_rm, rm, (size_t)c * sizeof(float)));
    CK_WK(wk_cuda_copy_h2d(d_rv, rv, (size_t)c * sizeof(float)));
    CK_LAUNCH(wk_launch_bn_finish(c, (double)rows, d_out, d_mean, (double)p.momentum,
                                  (double)p.eps, d_rm, d_rv, d_invstd, NULL));
    for (int64_t ch = 0; ch < c; ch++) var[ch] = (float)(got[ch] / (double)rows);
    wk_batchnorm_running_update(&p, rows, c, mean, var, rm, rv);
    for (int64_t ch = 0; ch < c; ch++) invstd[ch] = (float)(1.0 / sqrt((double)var[ch] + p.eps));
    to_host(got_f, d_rm, c);
    ck_same_f32("bn running mean", got_f, rm, c);
    to_host(got_f, d_rv, c);
    ck_same_f32("bn running variance", got_f, rv, c);
    to_host(got_f, d_invstd, c);
    ck_same_f32("bn invstd", got_f, invstd, c);
  } else {
    wkt_fill_f32(invstd, c, 3600 + (uint64_t)_i, 0.5f, 2.0f);
    CK_WK(wk_cuda_copy_h2d(d_invstd, invstd, (size_t)c * sizeof(float)));
  }

  /* backward's sums, twice, and the parameters' gradients from them */
  bn_grad_sums_ref(rows, c, x, dy, mean, invstd, want, abs_sum);
  CK_LAUNCH(wk_launch_bn_grad_sums(kind, rows, c, d_x, d_dy, d_mean, d_invstd, d_partial, d_out,
                                   NULL));
  to_host_f64(got, d_out, 2 * c);
  ck_bn_sums("grad sums", kind, k, got, want, abs_sum, 2 * c);
  CK_LAUNCH(wk_launch_bn_grad_sums(kind, rows, c, d_x, d_dy, d_mean, d_invstd, d_partial, d_out,
                                   NULL));
  to_host_f64(again, d_out, 2 * c);
  ck_assert_msg(memcmp(got, again, (size_t)(2 * c) * sizeof *got) == 0,
                "%s grad sums (%lld, %lld): a second launch differs", store_name(kind),
                (long long)rows, (long long)c);
  CK_LAUNCH(wk_launch_bn_param_grads(c, d_out, d_dgamma, d_dbeta, NULL));
  for (int64_t ch = 0; ch < c; ch++) want_f[ch] = (float)got[c + ch];
  to_host(got_f, d_dgamma, c);
  ck_same_f32("bn dgamma", got_f, want_f, c);
  for (int64_t ch = 0; ch < c; ch++) want_f[ch] = (float)got[ch];
  to_host(got_f, d_dbeta, c);
  ck_same_f32("bn dbeta", got_f, want_f, c);

  /* a NaN at row 1 of channel 0 */
  if (rows >= 2) {
    x[c] = NAN;
    CK_WK(wk_cuda_free(d_x));
    d_x = device_store(kind, x, n);
    CK_LAUNCH(wk_launch_bn_sums(kind, rows, c, d_x, NULL, d_partial, d_out, NULL));
    to_host_f64(again, d_out, c);
    ck_assert_msg(isnan(again[0]), "%s sum with a NaN: got %g", store_name(kind), again[0]);
    ck_assert(memcmp(again + 1, first + 1, (size_t)(c - 1) * sizeof *again) == 0);
    CK_LAUNCH(wk_launch_bn_grad_sums(kind, rows, c, d_x, d_dy, d_mean, d_invstd, d_partial,
                                     d_out, NULL));
    to_host_f64(again, d_out, 2 * c);
    ck_assert_msg(isnan(again[c]), "%s sum dy * xhat with a NaN: got %g", store_name(kind),
                  again[c]);
    ck_assert(memcmp(again, got, (size_t)c * sizeof *again) == 0); /* sum dy: no x */
    ck_assert(memcmp(again + c + 1, got + c + 1, (size_t)(c - 1) * sizeof *again) == 0);
  }

  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_dy));
  CK_WK(wk_cuda_free(d_partial));
  CK_WK(wk_cuda_free(d_out));
  CK_WK(wk_cuda_free(d_mean));
  CK_WK(wk_cuda_free(d_invstd));
  CK_WK(wk_cuda_free(d_rm));
  CK_WK(wk_cuda_free(d_rv));
  CK_WK(wk_cuda_free(d_dgamma));
  CK_WK(wk_cuda_free(d_dbeta));
  free(x), free(dy), free(mean), free(invstd), free(var), free(rm), free(rv), free(got_f),
      free(want_f), free(want), free(abs_sum), free(first), free(got), free(again), free(nans);
}
END_TEST

typedef struct bn_stats_case {
  int64_t c;
  double total;
  float momentum;
} bn_stats_case;

/* The smallest total (2: the running variance doubled by the unbiasing), a
 * few channels, more channels than one block, a synchronised batch of 24000
 * values per channel over 100003 channels, and momentum 0 (running
 * statistics kept) and 1 (replaced). */
static const bn_stats_case bn_stats_cases[] = {{1, 2.0, 0.1f},     {37, 3.0, 0.1f},
                                               {1000, 3000.0, 0.1f}, {100003, 24000.0, 0.1f},
                                               {37, 7.0, 0.0f},    {37, 7.0, 1.0f}};
enum { N_BN_STATS_CASES = sizeof bn_stats_cases / sizeof bn_stats_cases[0] };

/* wk_launch_bn_mean, wk_launch_bn_finish and wk_launch_bn_param_grads on
 * uploaded sums (random doubles: the same inputs on both sides), bit for bit
 * the host's expressions: mean = (float)(sum / total); var = (float)(sq /
 * total), wk_batchnorm_running_update itself for the running statistics,
 * invstd = (float)(1 / sqrt(var + eps)) in double, eps 1e-5f and the momentum
 * the float parameters widened (as the network passes them); a zero sum of
 * squares (invstd = 1 / sqrt(eps)) and a variance near eps. The gradients
 * (float) of each double, with the roundings that matter planted: ties to
 * even (1 + 2^-24, 1 + 3 x 2^-24), a tie at float's smallest subnormal
 * (2^-150 -> 0, 1.5 x 2^-149 -> 2^-148), overflow to infinity (1e39 and the
 * tie above FLT_MAX), -0 and NaN. */
START_TEST(test_bn_stats) {
  const bn_stats_case *k = &bn_stats_cases[_i];
  const int64_t c = k->c;
  const double total = k->total;
  const wk_batchnorm_params p = {.eps = 1e-5f, .momentum = k->momentum};
  double *sum = host_f64(c), *sq = host_f64(c), *sums = host_f64(2 * c);
  float *mean = host_f32(c), *var = host_f32(c), *rm = host_f32(c), *rv = host_f32(c);
  float *invstd = host_f32(c), *got = host_f32(c), *want = host_f32(c);
  wkt_fill_f64(sum, c, 3700 + (uint64_t)_i, -3.0 * total, 3.0 * total);
  wkt_fill_f64(sq, c, 3800 + (uint64_t)_i, 0.0, 4.0 * total);
  sq[0] = 0.0;
  if (c > 1) sq[1] = 1e-5 * total;
  wkt_fill_f32(rm, c, 3900 + (uint64_t)_i, -1.0f, 1.0f);
  wkt_fill_f32(rv, c, 4000 + (uint64_t)_i, 0.5f, 2.0f);
  double *d_sum = device_f64(sum, c), *d_sq = device_f64(sq, c);
  float *d_mean = device_f32(NULL, c), *d_rm = device_f32(rm, c), *d_rv = device_f32(rv, c);
  float *d_invstd = device_f32(NULL, c);

  CK_LAUNCH(wk_launch_bn_mean(c, total, d_sum, d_mean, NULL));
  for (int64_t ch = 0; ch < c; ch++) mean[ch] = (float)(sum[ch] / total);
  to_host(got, d_mean, c);
  ck_same_f32("bn mean", got, mean, c);

  CK_LAUNCH(wk_launch_bn_finish(c, total, d_sq, d_mean, (double)p.momentum, (double)p.eps, d_rm,
                                d_rv, d_invstd, NULL));
  for (int64_t ch = 0; ch < c; ch++) var[ch] = (float)(sq[ch] / total);
  wk_batchnorm_running_update(&p, (int64_t)total, c, mean, var, rm, rv);
  for (int64_t ch = 0; ch < c; ch++) invstd[ch] = (float)(1.0 / sqrt((double)var[ch] + p.eps));
  to_host(got, d_rm, c);
  ck_same_f32("bn running mean", got, rm, c);
  to_host(got, d_rv, c);
  ck_same_f32("bn running variance", got, rv, c);
  to_host(got, d_invstd, c);
  ck_same_f32("bn invstd", got, invstd, c);
  /* inference's invstd from the (updated) running variance */
  CK_LAUNCH(wk_launch_bn_invstd(c, d_rv, (double)p.eps, d_invstd, NULL));
  for (int64_t ch = 0; ch < c; ch++) invstd[ch] = (float)(1.0 / sqrt((double)rv[ch] + p.eps));
  to_host(got, d_invstd, c);
  ck_same_f32("bn invstd from the running variance", got, invstd, c);

  wkt_fill_f64(sums, 2 * c, 4100 + (uint64_t)_i, -1000.0, 1000.0);
  const double specials[] = {1.0 + 0x1p-24, 1.0 + 0x1.8p-23, 0x1p-150, 0x1.8p-149, 1e39, -1e39,
                             0x1.ffffffp127, -0.0, NAN, -(1.0 + 0x1p-24)};
  const int64_t n_special = (int64_t)(sizeof specials / sizeof specials[0]);
  for (int64_t i = 0; i < n_special && i < c; i++)
    sums[i] = specials[i], sums[c + i] = specials[n_special - 1 - i];
  double *d_sums = device_f64(sums, 2 * c);
  float *d_dgamma = device_f32(NULL, c), *d_dbeta = device_f32(NULL, c);
  CK_LAUNCH(wk_launch_bn_param_grads(c, d_sums, d_dgamma, d_dbeta, NULL));
  for (int64_t ch = 0; ch < c; ch++) want[ch] = (float)sums[c + ch];
  to_host(got, d_dgamma, c);
  ck_same_f32("bn dgamma", got, want, c);
  for (int64_t ch = 0; ch < c; ch++) want[ch] = (float)sums[ch];
  to_host(got, d_dbeta, c);
  ck_same_f32("bn dbeta", got, want, c);

  CK_WK(wk_cuda_free(d_sum));
  CK_WK(wk_cuda_free(d_sq));
  CK_WK(wk_cuda_free(d_mean));
  CK_WK(wk_cuda_free(d_rm));
  CK_WK(wk_cuda_free(d_rv));
  CK_WK(wk_cuda_free(d_invstd));
  CK_WK(wk_cuda_free(d_sums));
  CK_WK(wk_cuda_free(d_dgamma));
  CK_WK(wk_cuda_free(d_dbeta));
  free(sum), free(sq), free(sums), free(mean), free(var), free(rm), free(rv), free(invstd),
      free(got), free(want);
}
END_TEST

/* The case of loop index _i / 3 of the elementwise tests: bn_cases, then
 * bn_big_case. */
static const bn_case *bn_elementwise_case(int i) {
  return i / 3 < N_BN_CASES ? &bn_cases[i / 3] : &bn_big_case;
}

/* wk_launch_bn_norm: y = (x - mean) * invstd * gamma + beta in float in that
 * order (exec_syncbn.c with no relu), rounded once to the storage, bit for
 * bit, out of place and in place (y aliasing x); the specials planted in x
 * (NaN, infinities, zeros, subnormals, the format's largest value, which
 * overflows a 16-bit store) go through as the host's arithmetic takes them. */
START_TEST(test_bn_norm) {
  const wk_store_kind kind = store_kinds[_i % 3];
  const bn_case *k = bn_elementwise_case(_i);
  const int64_t rows = k->rows, c = k->c, n = rows * c;
  float *x = host_f32(n > 0 ? n : 1), *y = host_f32(n > 0 ? n : 1);
  float *mean = host_f32(c), *invstd = host_f32(c), *gamma = host_f32(c), *beta = host_f32(c);
  wkt_fill_f32(x, n, 4200 + (uint64_t)_i, -2.0f, 3.0f);
  plant_store_specials(kind, x, n);
  wkt_fill_f32(mean, c, 4300 + (uint64_t)_i, -0.5f, 1.0f);
  wkt_fill_f32(invstd, c, 4400 + (uint64_t)_i, 0.5f, 2.0f);
  wkt_fill_f32(gamma, c, 4500 + (uint64_t)_i, -2.0f, 2.0f);
  wkt_fill_f32(beta, c, 4600 + (uint64_t)_i, -1.0f, 1.0f);
  void *d_x = device_store(kind, x, n), *d_y = device_store(kind, NULL, n);
  float *d_mean = device_f32(mean, c), *d_invstd = device_f32(invstd, c);
  float *d_gamma = device_f32(gamma, c), *d_beta = device_f32(beta, c);
  bn_norm_ref(rows, c, x, mean, invstd, gamma, beta, y);
  CK_LAUNCH(wk_launch_bn_norm(kind, rows, c, d_x, d_mean, d_invstd, d_gamma, d_beta, d_y, NULL));
  ck_store_result("bn norm", kind, d_y, y, n);
  CK_LAUNCH(wk_launch_bn_norm(kind, rows, c, d_x, d_mean, d_invstd, d_gamma, d_beta, d_x, NULL));
  ck_store_result("bn norm in place", kind, d_x, y, n);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_mean));
  CK_WK(wk_cuda_free(d_invstd));
  CK_WK(wk_cuda_free(d_gamma));
  CK_WK(wk_cuda_free(d_beta));
  free(x), free(y), free(mean), free(invstd), free(gamma), free(beta);
}
END_TEST

/* wk_launch_bn_norm_act: wk_launch_bn_norm's y, then + z (widened, one float
 * addition) and the relu (t > 0 ? t : 0, as the relu kernels), rounded once
 * to the storage, bit for bit: without and with z and the relu, out of place
 * and in place over x and over z, the specials planted in x and z. The
 * channel counts 32, 64 and 1000 take the kernel's 16-byte path, the others
 * one element a thread. */
START_TEST(test_bn_norm_act) {
  const wk_store_kind kind = store_kinds[_i % 3];
  const bn_case *k = bn_elementwise_case(_i);
  const int64_t rows = k->rows, c = k->c, n = rows * c;
  float *x = host_f32(n > 0 ? n : 1), *z = host_f32(n > 0 ? n : 1), *y = host_f32(n > 0 ? n : 1);
  float *mean = host_f32(c), *invstd = host_f32(c), *gamma = host_f32(c), *beta = host_f32(c);
  wkt_fill_f32(x, n, 5200 + (uint64_t)_i, -2.0f, 3.0f);
  wkt_fill_f32(z, n, 5300 + (uint64_t)_i, -3.0f, 2.0f);
  plant_store_specials(kind, x, n);
  plant_store_specials(kind, z + (n > 40 ? 20 : 0), n > 40 ? n - 20 : n);
  wkt_fill_f32(mean, c, 5400 + (uint64_t)_i, -0.5f, 1.0f);
  wkt_fill_f32(invstd, c, 5500 + (uint64_t)_i, 0.5f, 2.0f);
  wkt_fill_f32(gamma, c, 5600 + (uint64_t)_i, -2.0f, 2.0f);
  wkt_fill_f32(beta, c, 5700 + (uint64_t)_i, -1.0f, 1.0f);
  void *d_x = device_store(kind, x, n), *d_z = device_store(kind, z, n);
  void *d_y = device_store(kind, NULL, n);
  float *d_mean = device_f32(mean, c), *d_invstd = device_f32(invstd, c);
  float *d_gamma = device_f32(gamma, c), *d_beta = device_f32(beta, c);
  for (int mode = 0; mode < 6; mode++) {
    const bool add = mode & 1, relu = mode & 2, in_place = mode >= 4;
    bn_norm_ref(rows, c, x, mean, invstd, gamma, beta, y);
    for (int64_t i = 0; i < n; i++) {
      if (add || in_place) y[i] = y[i] + z[i];
      if (relu || in_place) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    }
    char what[96];
    snprintf(what, sizeof what, "bn norm%s%s%s (%s, %lld x %lld)", add || in_place ? " + z" : "",
             relu || in_place ? ", relu" : "", in_place ? (add ? ", over z" : ", over x") : "",
             store_name(kind), (long long)rows, (long long)c);
    /* in place: over copies, so that x and z stay for the modes after */
    void *d_xi = in_place ? device_store(kind, x, n) : d_x;
    void *d_zi = in_place ? device_store(kind, z, n) : d_z;
    void *d_out = !in_place ? d_y : add ? d_zi : d_xi;
    CK_LAUNCH(wk_launch_bn_norm_act(kind, rows, c, d_xi, add || in_place ? d_zi : NULL, d_mean,
                                    d_invstd, d_gamma, d_beta, relu || in_place, d_out, NULL));
    ck_store_result(what, kind, d_out, y, n);
    if (in_place) {
      CK_WK(wk_cuda_free(d_xi));
      CK_WK(wk_cuda_free(d_zi));
    }
  }
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_z));
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_mean));
  CK_WK(wk_cuda_free(d_invstd));
  CK_WK(wk_cuda_free(d_gamma));
  CK_WK(wk_cuda_free(d_beta));
  free(x), free(z), free(y), free(mean), free(invstd), free(gamma), free(beta);
}
END_TEST

/* wk_launch_bn_dx: exec_syncbn.c's dx with no relu (dz = dy),
 *   xhat = (x - mean) * invstd in float,
 *   dx = gamma * invstd * (float)(dy - sums[j] / total - xhat * (sums[c + j] / total)),
 * the inner expression in double, rounded once to the storage, bit for bit,
 * with total = rows (one rank) and 4 x rows (the sums of a synchronised
 * batch of four ranks). The sums are the host's (exec_syncbn.c's order) on
 * the random inputs before the specials (NaN, infinities, zeros, subnormals,
 * the format's largest value) are planted in x and NaN and infinities in dy
 * (and before the rounding to the storage: any sums will do), so they stay
 * finite and the specials go through as the host's arithmetic takes them. */
START_TEST(test_bn_dx) {
  const wk_store_kind kind = store_kinds[_i % 3];
  const bn_case *k = bn_elementwise_case(_i);
  const int64_t rows = k->rows, c = k->c, n = rows * c;
  float *x = host_f32(n > 0 ? n : 1), *dy = host_f32(n > 0 ? n : 1), *dx = host_f32(n > 0 ? n : 1);
  float *mean = host_f32(c), *invstd = host_f32(c), *gamma = host_f32(c);
  double *sums = host_f64(2 * c);
  wkt_fill_f32(x, n, 4700 + (uint64_t)_i, -2.0f, 3.0f);
  wkt_fill_f32(dy, n, 4800 + (uint64_t)_i, -1.0f, 1.0f);
  wkt_fill_f32(mean, c, 4900 + (uint64_t)_i, -0.5f, 1.0f);
  wkt_fill_f32(invstd, c, 5000 + (uint64_t)_i, 0.5f, 2.0f);
  wkt_fill_f32(gamma, c, 5100 + (uint64_t)_i, -2.0f, 2.0f);
  bn_grad_sums_ref(rows, c, x, dy, mean, invstd, sums, NULL);
  plant_store_specials(kind, x, n);
  if (n > 20) dy[13] = NAN, dy[14] = INFINITY, dy[15] = -INFINITY;
  void *d_x = device_store(kind, x, n), *d_dy = device_store(kind, dy, n);
  void *d_dx = device_store(kind, NULL, n);
  float *d_mean = device_f32(mean, c), *d_invstd = device_f32(invstd, c);
  float *d_gamma = device_f32(gamma, c);
  double *d_sums = device_f64(sums, 2 * c);
  for (int world = 1; world <= 4; world += 3) {
    const double total = rows > 0 ? (double)rows * world : 1.0;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t ch = 0; ch < c; ch++) {
        const float xh = (x[r * c + ch] - mean[ch]) * invstd[ch];
        const float dz = dy[r * c + ch];
        dx[r * c + ch] = gamma[ch] * invstd[ch] *
                         (float)(dz - sums[ch] / total - xh * (sums[c + ch] / total));
      }
    CK_LAUNCH(wk_launch_bn_dx(kind, rows, c, total, d_x, d_dy, d_mean, d_invstd, d_gamma, d_sums,
                              d_dx, NULL));
    ck_store_result(world == 1 ? "bn dx" : "bn dx, four ranks", kind, d_dx, dx, n);
  }
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_dy));
  CK_WK(wk_cuda_free(d_dx));
  CK_WK(wk_cuda_free(d_mean));
  CK_WK(wk_cuda_free(d_invstd));
  CK_WK(wk_cuda_free(d_gamma));
  CK_WK(wk_cuda_free(d_sums));
  free(x), free(dy), free(dx), free(mean), free(invstd), free(gamma), free(sums);
}
END_TEST

/* ------------------------------------------------------------------ max pooling */

typedef struct maxpool_case {
  int64_t n, h, w, c;
  int kh, kw, sh, sw, pt, pl;
} maxpool_case;

/* ResNet's stem pool (3x3, stride 2, padding 1) with c = 5 (one element a
 * thread) and 16 (16-byte accesses in every storage), non-overlapping 2x2,
 * stride 1 (an input in up to 9 windows), stride above the window (inputs in
 * none: their gradient 0), a rectangular window and strides, a 1x1 input,
 * and no images. */
static const maxpool_case maxpool_cases[] = {
    {2, 7, 9, 5, 3, 3, 2, 2, 1, 1},  {2, 8, 8, 16, 3, 3, 2, 2, 1, 1}, {1, 6, 6, 8, 2, 2, 2, 2, 0, 0},
    {3, 6, 7, 4, 3, 3, 1, 1, 1, 1},  {1, 9, 9, 3, 2, 2, 3, 3, 0, 0},  {2, 7, 8, 24, 3, 2, 1, 2, 1, 0},
    {2, 1, 1, 8, 3, 3, 2, 2, 1, 1},  {0, 5, 5, 8, 3, 3, 2, 2, 1, 1}};
enum { N_MAXPOOL_CASES = sizeof maxpool_cases / sizeof maxpool_cases[0] };

static wk_maxpool_geom maxpool_geom_of(const maxpool_case *k) {
  wk_maxpool_geom g = {.n = k->n, .h = k->h, .w = k->w, .c = k->c, .kh = k->kh, .kw = k->kw,
                       .sh = k->sh, .sw = k->sw, .pt = k->pt, .pl = k->pl};
  g.oh = (k->h + 2 * k->pt - k->kh) / k->sh + 1;
  g.ow = (k->w + 2 * k->pl - k->kw) / k->sw + 1;
  return g;
}

/* wk_launch_maxpool_forward and _backward against the reference
 * (wk_maxpool2d_forward_ref_f32, then _backward_ref_f32 through its argmax)
 * on the values the storage holds, bit for bit: x on a grid of halves in [-2,
 * 2] so windows tie often (the first maximum wins), with the storage's
 * specials planted (a NaN wins and propagates, as the reference's); the
 * gradient written, and added to what dx held (accumulate). */
START_TEST(test_maxpool) {
  const wk_store_kind kind = store_kinds[_i % 3];
  const maxpool_case *k = &maxpool_cases[_i / 3];
  const wk_maxpool_geom g = maxpool_geom_of(k);
  const int64_t n_in = g.n * g.h * g.w * g.c, n_out = g.n * g.oh * g.ow * g.c;
  float *x = host_f32(n_in), *dy = host_f32(n_out), *y = host_f32(n_out);
  float *dx = host_f32(n_in), *old = host_f32(n_in), *sum = host_f32(n_in);
  int32_t *argmax = malloc((size_t)(n_out > 0 ? n_out : 1) * sizeof *argmax);
  ck_assert_ptr_nonnull(argmax);
  wkt_fill_f32(x, n_in, 6100 + (uint64_t)_i, -2.0f, 2.0f);
  for (int64_t e = 0; e < n_in; e++) x[e] = roundf(x[e] * 2.0f) / 2.0f;
  if (n_in > 40) plant_store_specials(kind, x + 17, n_in - 17);
  wkt_fill_f32(dy, n_out, 6200 + (uint64_t)_i, -1.0f, 1.0f);
  wkt_fill_f32(old, n_in, 6300 + (uint64_t)_i, -1.0f, 1.0f);
  void *d_x = device_store(kind, x, n_in), *d_dy = device_store(kind, dy, n_out);
  void *d_y = device_store(kind, NULL, n_out), *d_dx = device_store(kind, NULL, n_in);
  void *d_old = device_store(kind, old, n_in); /* x, dy and old now hold the storage's values */
  const wk_pool2d_geom rg = {.n = g.n, .h = g.h, .w = g.w, .c = g.c, .oh = g.oh, .ow = g.ow,
                             .kh = g.kh, .kw = g.kw, .sh = g.sh, .sw = g.sw, .pt = g.pt,
                             .pl = g.pl};
  wk_maxpool2d_forward_ref_f32(&rg, x, y, argmax);
  wk_maxpool2d_backward_ref_f32(&rg, argmax, dy, dx);
  for (int64_t e = 0; e < n_in; e++) sum[e] = old[e] + dx[e];
  CK_LAUNCH(wk_launch_maxpool_forward(kind, &g, d_x, d_y, NULL));
  ck_store_result("maxpool forward", kind, d_y, y, n_out);
  CK_LAUNCH(wk_launch_maxpool_backward(kind, &g, d_x, d_y, d_dy, 0, d_dx, NULL));
  ck_store_result("maxpool backward", kind, d_dx, dx, n_in);
  CK_LAUNCH(wk_launch_maxpool_backward(kind, &g, d_x, d_y, d_dy, 1, d_old, NULL));
  ck_store_result("maxpool backward, accumulated", kind, d_old, sum, n_in);
  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_dy));
  CK_WK(wk_cuda_free(d_y));
  CK_WK(wk_cuda_free(d_dx));
  CK_WK(wk_cuda_free(d_old));
  free(x), free(dy), free(y), free(dx), free(old), free(sum), free(argmax);
}
END_TEST

/* The pooling launchers refuse what wk_kernels.h says before any CUDA call
 * (cudaErrorInvalidValue, where a launch without a device would fail
 * otherwise): a window, stride or padding out of range, an output window that
 * sees no input, sizes whose products overflow, a missing pointer, an unknown
 * storage; an empty output launches nothing. The pointers are host memory:
 * nothing may reach them. */
START_TEST(test_launch_arguments_maxpool) {
  const int bad_arg = (int)cudaErrorInvalidValue;
  static float d[80];
  const wk_maxpool_geom ok = {.n = 1, .h = 4, .w = 4, .c = 2, .oh = 2, .ow = 2, .kh = 3,
                              .kw = 3, .sh = 2, .sw = 2, .pt = 1, .pl = 1};
  wk_maxpool_geom bad[10];
  for (int i = 0; i < 10; i++) bad[i] = ok;
  bad[0].kh = 0;
  bad[1].sw = 0;
  bad[2].pt = 3;                /* padding not under the window */
  bad[3].pl = -1;
  bad[4].oh = 4;                /* the last window starts past the input */
  bad[5].h = 0;                 /* windows over no input */
  bad[6].n = INT64_MAX / 2;     /* products overflow */
  bad[7].c = -1;
  bad[8].ow = 4;                /* likewise across */
  bad[9].w = 0;
  for (int i = 0; i < 10; i++) {
    ck_assert_msg(wk_launch_maxpool_forward(WK_STORE_F32, &bad[i], d, d + 32, NULL) == bad_arg,
                  "forward: case %d not refused", i);
    ck_assert_msg(wk_launch_maxpool_backward(WK_STORE_F32, &bad[i], d, d + 32, d + 40, 0, d + 48,
                                             NULL) == bad_arg,
                  "backward: case %d not refused", i);
  }
  ck_assert_int_eq(wk_launch_maxpool_forward(WK_STORE_F32, NULL, d, d + 32, NULL), bad_arg);
  ck_assert_int_eq(wk_launch_maxpool_forward(WK_STORE_F32, &ok, NULL, d + 32, NULL), bad_arg);
  ck_assert_int_eq(wk_launch_maxpool_forward(WK_STORE_F32, &ok, d, NULL, NULL), bad_arg);
  ck_assert_int_eq(wk_launch_maxpool_backward(WK_STORE_F32, &ok, d, NULL, d + 40, 0, d + 48, NULL),
                   bad_arg);
  ck_assert_int_eq(wk_launch_maxpool_backward(WK_STORE_F32, &ok, d, d + 32, NULL, 0, d + 48, NULL),
                   bad_arg);
  ck_assert_int_eq(
      wk_launch_maxpool_backward(WK_STORE_F32, &ok, NULL, d + 32, d + 40, 0, d + 48, NULL), bad_arg);
  ck_assert_int_eq(wk_launch_maxpool_backward(WK_STORE_F32, &ok, d, d + 32, d + 40, 0, NULL, NULL),
                   bad_arg);
  ck_assert_int_eq(wk_launch_maxpool_forward((wk_store_kind)7, &ok, d, d + 32, NULL), bad_arg);
  wk_maxpool_geom empty = ok;
  empty.n = 0;
  ck_assert_int_eq(wk_launch_maxpool_forward(WK_STORE_F32, &empty, NULL, NULL, NULL), 0);
  ck_assert_int_eq(
      wk_launch_maxpool_backward(WK_STORE_F32, &empty, NULL, NULL, NULL, 0, NULL, NULL), 0);
  for (int i = 0; i < 80; i++) ck_assert(d[i] == 0.0f); /* nothing wrote the host buffer */
}
END_TEST

/* ------------------------------------------------------------------ runner */

static Suite *host_suite(void) {
  Suite *s = suite_create("gpu_host");
  TCase *tc = tcase_create("backend");
#ifndef WK_GPU_EMU
  tcase_add_test(tc, test_describe);
  tcase_add_test(tc, test_try_macros);
  tcase_add_test(tc, test_device_errors);
#endif
  tcase_add_test(tc, test_launch_arguments);
  tcase_add_test(tc, test_launch_arguments_train);
  tcase_add_test(tc, test_launch_arguments_half);
  tcase_add_test(tc, test_launch_arguments_syncbn);
  tcase_add_test(tc, test_launch_arguments_maxpool);
  suite_add_tcase(s, tc);
  return s;
}

static Suite *kernel_suite(void) {
  Suite *s = suite_create("gpu_kernels");
  TCase *tc = tcase_create("eltwise");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, test_relu, 0, N_SIZES);
  tcase_add_loop_test(tc, test_relu6, 0, N_SIZES);
  tcase_add_loop_test(tc, test_add, 0, N_SIZES);
  tcase_add_loop_test(tc, test_normalize, 0, N_NORM_CASES);
  suite_add_tcase(s, tc);
  TCase *tt = tcase_create("train");
  tcase_set_timeout(tt, 120);
  tcase_add_loop_test(tt, test_dropout, 0, N_SIZES);
  tcase_add_loop_test(tt, test_global_avgpool, 0, N_POOL_CASES);
  tcase_add_loop_test(tt, test_softmax_xent, 0, N_XENT_CASES);
  tcase_add_loop_test(tt, test_sum, 0, N_SIZES);
  tcase_add_loop_test(tt, test_sum_rows, 0, N_ROWS_CASES);
  tcase_add_loop_test(tt, test_argmax_rows, 0, N_ROWS_CASES);
  tcase_add_loop_test(tt, test_optim, 0, 4);
  tcase_add_loop_test(tt, test_scale, 0, N_SIZES);
  tcase_add_loop_test(tt, test_bf16, 0, N_SIZES);
  tcase_add_loop_test(tt, test_f16, 0, N_SIZES);
  tcase_add_loop_test(tt, test_nonfinite, 0, N_SIZES);
  suite_add_tcase(s, tt);
  TCase *th = tcase_create("half");
  tcase_set_timeout(th, 120);
  tcase_add_loop_test(th, test_relu_h, 0, 2 * N_SIZES);
  tcase_add_loop_test(th, test_relu6_h, 0, 2 * N_SIZES);
  tcase_add_loop_test(th, test_add_h, 0, 2 * N_SIZES);
  tcase_add_loop_test(th, test_bias_add_h, 0, 2 * N_BIAS_CASES);
  tcase_add_loop_test(th, test_normalize_h, 0, 2 * N_NORM_CASES);
  tcase_add_loop_test(th, test_dropout_h, 0, 2 * N_SIZES);
  tcase_add_loop_test(th, test_global_avgpool_h, 0, 2 * N_POOL_CASES);
  tcase_add_loop_test(th, test_col_sum_h, 0, 2 * N_COL_CASES);
  suite_add_tcase(s, th);
  TCase *tb = tcase_create("syncbn");
  tcase_set_timeout(tb, 120);
  tcase_add_loop_test(tb, test_bn_sums, 0, 3 * N_BN_CASES);
  tcase_add_loop_test(tb, test_bn_stats, 0, N_BN_STATS_CASES);
  tcase_add_loop_test(tb, test_bn_norm, 0, 3 * (N_BN_CASES + 1));
  tcase_add_loop_test(tb, test_bn_norm_act, 0, 3 * (N_BN_CASES + 1));
  tcase_add_loop_test(tb, test_bn_dx, 0, 3 * (N_BN_CASES + 1));
  suite_add_tcase(s, tb);
  TCase *tp = tcase_create("maxpool");
  tcase_set_timeout(tp, 120);
  tcase_add_loop_test(tp, test_maxpool, 0, 3 * N_MAXPOOL_CASES);
  suite_add_tcase(s, tp);
  return s;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* results as they come ($CK_TAP_LOG_FILE_NAME=-) */
#ifdef WK_GPU_EMU
#ifdef WK_GPU_EMU_FMA
  if (!__builtin_cpu_supports("fma")) { /* its kernels were built with -mfma */
    printf("test_gpu_ops_emu_fma: this CPU has no FMA instructions: skipped\n");
    return WKT_SKIP;
  }
#endif
  n_devices = 1; /* the host emulator (tests/emu/emu.cpp) */
#else
  n_devices = wk_cuda_device_count();
#endif
  SRunner *sr = srunner_create(host_suite());
  if (n_devices > 0) srunner_add_suite(sr, kernel_suite());
  /* CUDA in a forked child is undefined: never fork, even when run by hand
   * without ctest's CK_FORK=no. */
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  const int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  if (failed) return EXIT_FAILURE;
  if (n_devices == 0) {
    printf("test_gpu_ops: no CUDA device (no GPU or no driver): GPU kernel tests skipped\n");
    return WKT_SKIP;
  }
  return EXIT_SUCCESS;
}
