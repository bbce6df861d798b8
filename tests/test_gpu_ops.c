/* test_gpu_ops.c - the CUDA backend's kernels against the reference ops.
 *
 * Two suites:
 * - "gpu_host" needs the backend built but no device: wk_cuda_describe, the
 *   error text of the WK_*_TRY macros, launchers rejecting bad arguments, and
 *   device calls failing cleanly (not aborting) when there is no device.
 * - "gpu_kernels" runs every kernel on a device, on random inputs of odd sizes,
 *   and compares with the CPU reference: bit for bit for relu, relu6 and add,
 *   normalised error <= 1e-6 for the uint8 -> float normalisation.
 * With no device the host suite still runs and the process then exits 77, which
 * ctest reports as skipped (SKIP_RETURN_CODE in tests/CMakeLists.txt). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_backend.h"
#include "ops/ref.h"
#include "test_util.h"
#include "wk_kernels.h"

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

static void ck_contains(const char *text, const char *part) {
  ck_assert_msg(strstr(text, part) != NULL, "'%s' not in '%s'", part, text);
}

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

static float *host_f32(int64_t n) {
  float *p = malloc((size_t)n * sizeof *p);
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

/* ------------------------------------------------------------------ host suite */

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

/* Without a device, device calls fail with a status and a message; with one,
 * an impossible allocation does, and the failure does not leak into the next
 * launch's cudaGetLastError(). */
START_TEST(test_device_errors) {
  void *p = (void *)&p;
  if (n_devices == 0) {
    ck_assert_int_eq(wk_cuda_malloc(&p, 16), WK_ERR_BACKEND);
    ck_contains(wk_last_error(), "cudaMalloc(&p, n_bytes) failed at ");
    ck_contains(wk_last_error(), "cuda_backend.c:");
    ck_assert_ptr_null(p);
    char host[4] = {0};
    ck_assert_int_eq(wk_cuda_copy_h2d(host, host, sizeof host), WK_ERR_BACKEND);
    ck_contains(wk_last_error(), "cudaMemcpy");
    ck_assert_int_eq(wk_cuda_sync(), WK_ERR_BACKEND);
    return;
  }
  ck_assert_int_eq(wk_cuda_malloc(&p, SIZE_MAX / 2), WK_ERR_BACKEND);
  ck_contains(wk_last_error(), "cudaMalloc");
  ck_assert_ptr_null(p);
  const float one = -1.0f;
  float out = 7.0f;
  float *d = device_f32(&one, 1);
  CK_LAUNCH(wk_launch_relu_forward_f32(1, d, d, NULL));
  CK_WK(wk_cuda_copy_d2h(&out, d, sizeof out));
  ck_assert(out == 0.0f);
  CK_WK(wk_cuda_free(d));
  CK_WK(wk_cuda_malloc(&p, 0));
  ck_assert_ptr_null(p);
  CK_WK(wk_cuda_free(NULL));
}
END_TEST

/* ------------------------------------------------------------------ kernel suite */

/* Odd sizes: a single element, less than a warp, one block plus one, and a
 * prime above a million (more blocks than one wave, a ragged last block). */
static const int64_t sizes[] = {1, 7, 257, 1000003};
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

/* The definition, in double: y = (x / 255 - mean) / std, read from column
 * w - 1 - j of a flipped image. x, y: (n, h, w, c). */
static void normalize_ref(const norm_case *k, const uint8_t *x, const uint8_t *flip,
                          const float *mean, const float *sd, float *y) {
  for (int64_t b = 0; b < k->n; b++)
    for (int64_t i = 0; i < k->h; i++)
      for (int64_t j = 0; j < k->w; j++) {
        const int64_t sj = flip && flip[b] ? k->w - 1 - j : j;
        for (int64_t ch = 0; ch < k->c; ch++) {
          const double v = x[((b * k->h + i) * k->w + sj) * k->c + ch];
          y[((b * k->h + i) * k->w + j) * k->c + ch] =
              (float)((v / 255.0 - (double)mean[ch]) / (double)sd[ch]);
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

  void *d_x = NULL, *d_flip = NULL;
  CK_WK(wk_cuda_malloc(&d_x, (size_t)n_elems));
  CK_WK(wk_cuda_copy_h2d(d_x, x, (size_t)n_elems));
  CK_WK(wk_cuda_malloc(&d_flip, (size_t)k->n));
  CK_WK(wk_cuda_copy_h2d(d_flip, flip, (size_t)k->n));
  float *d_y = device_f32(NULL, n_elems);
  CK_LAUNCH(wk_launch_normalize_u8_f32(k->n, k->h, k->w, k->c, d_x, k->flip ? d_flip : NULL,
                                       mean, sd, d_y, NULL));
  to_host(got, d_y, n_elems);

  const double err = wkt_rel_err(got, want, n_elems, 1e-6);
  ck_assert_msg(err <= 1e-6, "normalize (%lld, %lld, %lld, %lld) flip %d: error %g > 1e-6",
                (long long)k->n, (long long)k->h, (long long)k->w, (long long)k->c, k->flip,
                err);

  CK_WK(wk_cuda_free(d_x));
  CK_WK(wk_cuda_free(d_flip));
  CK_WK(wk_cuda_free(d_y));
  free(x), free(flip), free(want), free(got);
}
END_TEST

/* ------------------------------------------------------------------ runner */

static Suite *host_suite(void) {
  Suite *s = suite_create("gpu_host");
  TCase *tc = tcase_create("backend");
  tcase_add_test(tc, test_describe);
  tcase_add_test(tc, test_try_macros);
  tcase_add_test(tc, test_launch_arguments);
  tcase_add_test(tc, test_device_errors);
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
  return s;
}

int main(void) {
  n_devices = wk_cuda_device_count();
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
