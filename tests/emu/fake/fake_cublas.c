/* fake_cublas.c - the cuBLAS calls of the GPU backend, on the host (see fake.h).
 *
 * Implemented, under cublas_v2.h's declarations (the _v2 symbols its macros
 * name):
 * - cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2,
 *   cublasSetWorkspace_v2, cublasSetMathMode, cublasGetProperty,
 *   cublasGetStatusName, cublasGetStatusString;
 * - cublasSgemm_v2, cublasGemmEx (A, B, C of CUDA_R_32F, CUDA_R_16F,
 *   CUDA_R_16BF in the combinations cuBLAS's cublasGemmEx table allows for
 *   CUBLAS_COMPUTE_32F, _32F_PEDANTIC, _32F_FAST_16F, _32F_FAST_16BF and
 *   _32F_FAST_TF32, float scale type), cublasSgemv_v2, cublasSger_v2.
 *
 * Semantics are those of NVIDIA's cuBLAS documentation (and, where it is
 * silent, of the reference BLAS it implements): column-major storage,
 * element (i, j) of a matrix with leading dimension ld at i + j * ld;
 * op(X) = X for CUBLAS_OP_N, X^T for CUBLAS_OP_T and CUBLAS_OP_C (the
 * conjugate transpose of a real matrix); arguments checked as the
 * documentation's error tables say, returning CUBLAS_STATUS_INVALID_VALUE
 * (with a line on stderr naming the reason, as the real library only says
 * with its logging on). Products are summed in double and rounded once on
 * the store (wk_fake_store): what every math mode and compute type allows,
 * since the "fast" ones (TF32, FAST_16F, FAST_16BF) only permit less
 * precision. beta == 0 never reads C (or y), so NaN there does not leak in.
 *
 * Execution: every routine copies its scalars (host pointer mode: read when
 * called, as the documentation says of CUDA graph capture) and its operands'
 * addresses into a job and hands it to wk_fake_enqueue on the handle's
 * stream; the job checks, each time it runs, that every operand it touches
 * (and the user workspace, for the GEMMs) lies inside one live device
 * allocation (wk_fake_check_device), and that the written operand does not
 * overlap one it reads (BLAS's rule that an output must not alias an input).
 *
 * Not implemented (wk_fake_die, never silently wrong): device pointer mode
 * (the backend never sets it, so cublasSetPointerMode_v2 is absent too),
 * negative vector increments, other compute types (16F, 32I, 64F, the
 * emulated ones) and data types (integer, complex, double, FP8) of
 * cublasGemmEx. Every other cuBLAS function is absent: linking the backend
 * against these fakes fails if it starts calling one. A handle that was never
 * created or was destroyed dies too (with the real library: undefined). */
#include <cublas_v2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fake.h"

#define WK_LIB "cuBLAS"

/* ------------------------------------------------------------------ handles */

struct cublasContext {
  struct cublasContext *next; /* every handle ever created (g_handles) */
  bool live;                  /* false once destroyed: kept, so a stale handle is recognised */
  cudaStream_t stream;        /* cublasSetStream; 0 = the default NULL stream */
  void *workspace;            /* cublasSetWorkspace's; NULL = the library's own pool */
  size_t workspace_bytes;
  cublasMath_t math;                /* cublasSetMathMode */
  cublasPointerMode_t pointer_mode; /* always CUBLAS_POINTER_MODE_HOST here */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* Destroyed handles stay on this list (they are small and few: one per
 * network), so using one after cublasDestroy is told apart from a handle that
 * was reused for a new context. */
static struct cublasContext *g_handles;

/* A copy of the handle's state, taken under the lock; NULL is the documented
 * CUBLAS_STATUS_NOT_INITIALIZED, anything not from cublasCreate dies. */
static cublasStatus_t wk_handle(cublasHandle_t h, const char *fn, struct cublasContext *out) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  pthread_mutex_lock(&g_lock);
  const struct cublasContext *c = g_handles;
  while (c && c != h) c = c->next;
  const bool known = c != NULL, live = known && c->live;
  if (live) *out = *c;
  pthread_mutex_unlock(&g_lock);
  if (!known) wk_fake_die(WK_LIB, "%s: handle %p was not made by cublasCreate", fn, (void *)h);
  if (!live) wk_fake_die(WK_LIB, "%s: handle %p was destroyed", fn, (void *)h);
  return CUBLAS_STATUS_SUCCESS;
}

/* Returns `status` after saying why on stderr: these are the documented
 * refusals, which the backend must never provoke, and the bare status would
 * not say which argument was at fault. */
static cublasStatus_t wk_refuse(cublasStatus_t status, const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static cublasStatus_t wk_refuse(cublasStatus_t status, const char *fn, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fake %s: %s: ", WK_LIB, fn);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (%s)\n", cublasGetStatusName(status));
  va_end(ap);
  return status;
}

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
  /* documented: CUBLAS_STATUS_INVALID_VALUE for handle == NULL */
  if (!handle) return wk_refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasCreate", "handle == NULL");
  struct cublasContext *c = calloc(1, sizeof *c);
  if (!c) return CUBLAS_STATUS_ALLOC_FAILED;
  /* defaults: the NULL stream, the library's workspace pool, default math,
   * host pointer mode */
  c->live = true;
  c->stream = 0;
  c->math = CUBLAS_DEFAULT_MATH;
  c->pointer_mode = CUBLAS_POINTER_MODE_HOST;
  pthread_mutex_lock(&g_lock);
  c->next = g_handles;
  g_handles = c;
  pthread_mutex_unlock(&g_lock);
  *handle = c;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  struct cublasContext s;
  const cublasStatus_t e = wk_handle(handle, "cublasDestroy", &s);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  /* the real one synchronises the device first; work here has already run
   * (or was recorded into a graph with everything it needs copied) */
  pthread_mutex_lock(&g_lock);
  handle->live = false;
  pthread_mutex_unlock(&g_lock);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
  struct cublasContext s;
  const cublasStatus_t e = wk_handle(handle, "cublasSetStream", &s);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  pthread_mutex_lock(&g_lock);
  handle->stream = streamId;
  /* documented: "this function unconditionally resets the cuBLAS library
   * workspace back to the default workspace pool" */
  handle->workspace = NULL;
  handle->workspace_bytes = 0;
  pthread_mutex_unlock(&g_lock);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace,
                                     size_t workspaceSizeInBytes) {
  struct cublasContext s;
  const cublasStatus_t e = wk_handle(handle, "cublasSetWorkspace", &s);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  /* documented: "The workspace pointer has to be aligned to at least 256
   * bytes, otherwise CUBLAS_STATUS_INVALID_VALUE error is returned."
   * (cudaMalloc's pointers are.) */
  if ((uintptr_t)workspace % 256 != 0)
    return wk_refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasSetWorkspace",
                     "workspace %p is not aligned to 256 bytes", workspace);
  /* The workspace is device memory the library's kernels write: checked now
   * and again by every GEMM that runs with it (it must outlive its use). */
  wk_fake_check_device(workspace, workspaceSizeInBytes, "cublasSetWorkspace: the workspace");
  pthread_mutex_lock(&g_lock);
  handle->workspace = workspace;
  handle->workspace_bytes = workspaceSizeInBytes;
  pthread_mutex_unlock(&g_lock);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  struct cublasContext s;
  const cublasStatus_t e = wk_handle(handle, "cublasSetMathMode", &s);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  /* One of cublasMath_t's modes, optionally OR'ed with
   * CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION; anything else is the
   * documented CUBLAS_STATUS_INVALID_VALUE ("mode had an invalid value").
   * None changes the results here: each only permits less precision than
   * the exact sums computed below (TF32 inputs, reduced-precision split-K). */
  const unsigned base = (unsigned)mode & ~(unsigned)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
  switch (base) {
  case CUBLAS_DEFAULT_MATH:
  case CUBLAS_TENSOR_OP_MATH:
  case CUBLAS_PEDANTIC_MATH:
  case CUBLAS_TF32_TENSOR_OP_MATH:
  case CUBLAS_FP32_EMULATED_BF16X9_MATH:
  case CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH:
    break;
  default:
    return wk_refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasSetMathMode", "mode %d", (int)mode);
  }
  pthread_mutex_lock(&g_lock);
  handle->math = mode;
  pthread_mutex_unlock(&g_lock);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetProperty(libraryPropertyType type, int *value) {
  /* documented: CUBLAS_STATUS_INVALID_VALUE for an invalid type or value == NULL.
   * The version is that of the headers these fakes are built against. */
  if (!value) return wk_refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasGetProperty", "value == NULL");
  switch (type) {
  case MAJOR_VERSION: *value = CUBLAS_VER_MAJOR; return CUBLAS_STATUS_SUCCESS;
  case MINOR_VERSION: *value = CUBLAS_VER_MINOR; return CUBLAS_STATUS_SUCCESS;
  case PATCH_LEVEL: *value = CUBLAS_VER_PATCH; return CUBLAS_STATUS_SUCCESS;
  default:
    return wk_refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasGetProperty", "type %d", (int)type);
  }
}

const char *cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
  case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
  case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
  case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
  case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
  case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
  case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
  case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
  case CUBLAS_STATUS_LICENSE_ERROR: return "an error was detected when checking the current licensing";
  }
  return "an unknown internal error has occurred";
}

/* ------------------------------------------------------------------ helpers */

/* Bytes a column-major rows x cols matrix with leading dimension ld spans:
 * (ld * (cols - 1) + rows) elements; 0 when it has no element. */
static size_t wk_matrix_bytes(int rows, int cols, int ld, wk_fake_dtype t) {
  if (rows <= 0 || cols <= 0) return 0;
  return ((size_t)ld * (size_t)(cols - 1) + (size_t)rows) * wk_fake_dtype_size(t);
}

/* Bytes a vector of len elements with a positive increment spans:
 * (1 + (len - 1) * inc) elements, as the documentation sizes x and y. */
static size_t wk_vector_bytes(int len, int inc) {
  if (len <= 0) return 0;
  return ((size_t)(len - 1) * (size_t)inc + 1) * sizeof(float);
}

static void wk_check(const char *fn, const char *operand, const void *p, size_t bytes) {
  if (bytes == 0) return;
  char what[96];
  snprintf(what, sizeof what, "%s: %s", fn, operand);
  wk_fake_check_device(p, bytes, what);
}

/* BLAS's arguments that are written must not alias ones that are read
 * (Fortran's rule, under which the reference BLAS is defined; cuBLAS's
 * kernels read and write in no specified order): the output's span
 * overlapping an input's dies. Spans, not elements: two interleaved
 * submatrices of one array count as overlapping (the backend makes none). */
static void wk_check_disjoint(const char *fn, const char *out, const void *o, size_t o_bytes,
                              const char *in, const void *i, size_t i_bytes) {
  if (o_bytes == 0 || i_bytes == 0) return;
  const uintptr_t a = (uintptr_t)o, b = (uintptr_t)i;
  if (a < b + i_bytes && b < a + o_bytes)
    wk_fake_die(WK_LIB, "%s: output %s [%p, +%zu) overlaps input %s [%p, +%zu)", fn, out, o,
                o_bytes, in, i, i_bytes);
}

static const char *wk_op_name(cublasOperation_t op) {
  return op == CUBLAS_OP_N ? "N" : op == CUBLAS_OP_T ? "T" : op == CUBLAS_OP_C ? "C" : "?";
}

/* documented: transa, transb must be CUBLAS_OP_N, CUBLAS_OP_T or CUBLAS_OP_C
 * (CUBLAS_OP_CONJG is a placeholder "not supported in the current release") */
static bool wk_op_valid(cublasOperation_t op) {
  return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

/* Host pointer mode only: device pointer mode would read the scalars when
 * the work runs, which this fake does not do (the backend never sets it). */
static void wk_host_scalars(const struct cublasContext *h, const char *fn) {
  if (h->pointer_mode != CUBLAS_POINTER_MODE_HOST)
    wk_fake_die(WK_LIB, "%s: CUBLAS_POINTER_MODE_DEVICE: not implemented", fn);
}

static cublasStatus_t wk_enqueued(cudaError_t e, const char *fn) {
  if (e == cudaSuccess) return CUBLAS_STATUS_SUCCESS;
  /* the work could not be issued (e.g. an invalidated capture): the
   * documented "the function failed to launch on the GPU" */
  return wk_refuse(CUBLAS_STATUS_EXECUTION_FAILED, fn, "enqueue failed: %s", cudaGetErrorName(e));
}

/* ------------------------------------------------------------------ GEMM */

/* C (m x n) = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n. */
typedef struct wk_gemm_job {
  const char *fn;
  cublasOperation_t ta, tb;
  int m, n, k;
  double alpha, beta;
  const void *a, *b;
  void *c;
  int lda, ldb, ldc;
  wk_fake_dtype at, bt, ct;
  const void *ws; /* the user workspace, or NULL (the library's pool) */
  size_t ws_bytes;
} wk_gemm_job;

static void wk_gemm_run(void *ctx) {
  const wk_gemm_job *j = ctx;
  const bool an = j->ta == CUBLAS_OP_N, bn = j->tb == CUBLAS_OP_N;
  /* A as stored: m x k for N, k x m otherwise; B: k x n for N, n x k otherwise */
  const size_t a_bytes = wk_matrix_bytes(an ? j->m : j->k, an ? j->k : j->m, j->lda, j->at);
  const size_t b_bytes = wk_matrix_bytes(bn ? j->k : j->n, bn ? j->n : j->k, j->ldb, j->bt);
  const size_t c_bytes = wk_matrix_bytes(j->m, j->n, j->ldc, j->ct);
  /* As the reference BLAS: with alpha == 0 (or k == 0) A and B are not
   * referenced and C = beta C */
  const bool product = j->alpha != 0.0 && j->k > 0;
  wk_check(j->fn, "C", j->c, c_bytes);
  if (product) {
    wk_check(j->fn, "A", j->a, a_bytes);
    wk_check(j->fn, "B", j->b, b_bytes);
    wk_check_disjoint(j->fn, "C", j->c, c_bytes, "A", j->a, a_bytes);
    wk_check_disjoint(j->fn, "C", j->c, c_bytes, "B", j->b, b_bytes);
  }
  wk_check(j->fn, "the workspace", j->ws, j->ws_bytes);
  const size_t lda = (size_t)j->lda, ldb = (size_t)j->ldb, ldc = (size_t)j->ldc;
  for (int col = 0; col < j->n; col++)
    for (int row = 0; row < j->m; row++) {
      double v = 0.0;
      if (product) {
        double s = 0.0;
        for (int l = 0; l < j->k; l++) {
          /* op(A)(row, l) and op(B)(l, col) in column-major storage */
          const size_t ai = an ? (size_t)row + (size_t)l * lda : (size_t)l + (size_t)row * lda;
          const size_t bi = bn ? (size_t)l + (size_t)col * ldb : (size_t)col + (size_t)l * ldb;
          s += wk_fake_load(j->a, j->at, ai) * wk_fake_load(j->b, j->bt, bi);
        }
        v = j->alpha * s;
      }
      const size_t ci = (size_t)row + (size_t)col * ldc;
      /* documented: "if beta == 0 then C does not have to be a valid input" */
      if (j->beta != 0.0) v += j->beta * wk_fake_load(j->c, j->ct, ci);
      wk_fake_store(j->c, j->ct, ci, v);
    }
}

/* The argument checks of cublas<t>gemm's error table, shared by
 * cublasGemmEx: CUBLAS_STATUS_INVALID_VALUE "If m, n, k < 0 or if transa,
 * transb != CUBLAS_OP_N, CUBLAS_OP_C, CUBLAS_OP_T or if lda < max(1, m) if
 * transa == CUBLAS_OP_N and lda < max(1, k) otherwise or if ldb < max(1, k)
 * if transb == CUBLAS_OP_N and ldb < max(1, n) otherwise or if ldc <
 * max(1, m) or if alpha, beta == NULL or C == NULL if C needs to be scaled". */
static cublasStatus_t wk_gemm_args(const char *fn, cublasOperation_t ta, cublasOperation_t tb,
                                   int m, int n, int k, const void *alpha, int lda, int ldb,
                                   const void *beta, const void *c, int ldc) {
  const cublasStatus_t bad = CUBLAS_STATUS_INVALID_VALUE;
  if (m < 0 || n < 0 || k < 0) return wk_refuse(bad, fn, "m %d, n %d, k %d", m, n, k);
  if (!wk_op_valid(ta) || !wk_op_valid(tb))
    return wk_refuse(bad, fn, "transa %d, transb %d", (int)ta, (int)tb);
  const int a_rows = ta == CUBLAS_OP_N ? m : k, b_rows = tb == CUBLAS_OP_N ? k : n;
  if (lda < (a_rows > 1 ? a_rows : 1))
    return wk_refuse(bad, fn, "lda %d < max(1, %d) (transa %s)", lda, a_rows, wk_op_name(ta));
  if (ldb < (b_rows > 1 ? b_rows : 1))
    return wk_refuse(bad, fn, "ldb %d < max(1, %d) (transb %s)", ldb, b_rows, wk_op_name(tb));
  if (ldc < (m > 1 ? m : 1)) return wk_refuse(bad, fn, "ldc %d < max(1, %d)", ldc, m);
  if (!alpha || !beta) return wk_refuse(bad, fn, "alpha or beta is NULL");
  if (!c && m > 0 && n > 0) return wk_refuse(bad, fn, "C is NULL");
  return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t wk_gemm_issue(const struct cublasContext *h, wk_gemm_job *j) {
  /* m == 0 or n == 0: nothing to compute or write */
  if (j->m == 0 || j->n == 0) return CUBLAS_STATUS_SUCCESS;
  j->ws = h->workspace;
  j->ws_bytes = h->workspace ? h->workspace_bytes : 0;
  return wk_enqueued(wk_fake_enqueue(h->stream, wk_gemm_run, j, sizeof *j), j->fn);
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float *alpha,
                              const float *A, int lda, const float *B, int ldb, const float *beta,
                              float *C, int ldc) {
  static const char fn[] = "cublasSgemm";
  struct cublasContext h;
  cublasStatus_t e = wk_handle(handle, fn, &h);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  e = wk_gemm_args(fn, transa, transb, m, n, k, alpha, lda, ldb, beta, C, ldc);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  wk_host_scalars(&h, fn);
  wk_gemm_job j = {.fn = fn, .ta = transa, .tb = transb, .m = m, .n = n, .k = k,
                   .alpha = *alpha, .beta = *beta, .a = A, .b = B, .c = C,
                   .lda = lda, .ldb = ldb, .ldc = ldc,
                   .at = WK_FAKE_F32, .bt = WK_FAKE_F32, .ct = WK_FAKE_F32};
  return wk_gemm_issue(&h, &j);
}

/* The data types implemented, as fake dtypes; false for any other. */
static bool wk_ex_dtype(cudaDataType t, wk_fake_dtype *out) {
  switch (t) {
  case CUDA_R_32F: *out = WK_FAKE_F32; return true;
  case CUDA_R_16F: *out = WK_FAKE_F16; return true;
  case CUDA_R_16BF: *out = WK_FAKE_BF16; return true;
  default: return false;
  }
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void *alpha,
                            const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  static const char fn[] = "cublasGemmEx";
  struct cublasContext h;
  cublasStatus_t e = wk_handle(handle, fn, &h);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  e = wk_gemm_args(fn, transa, transb, m, n, k, alpha, lda, ldb, beta, C, ldc);
  if (e != CUBLAS_STATUS_SUCCESS) return e;

  /* The compute types implemented; all take float alpha and beta (the
   * table's scale type CUDA_R_32F). The FAST ones may down-convert inputs
   * (to TF32, half or bfloat16): computing exactly is one permitted result. */
  bool fast;
  switch (computeType) {
  case CUBLAS_COMPUTE_32F:
  case CUBLAS_COMPUTE_32F_PEDANTIC:
    fast = false;
    break;
  case CUBLAS_COMPUTE_32F_FAST_16F:
  case CUBLAS_COMPUTE_32F_FAST_16BF:
  case CUBLAS_COMPUTE_32F_FAST_TF32:
    fast = true;
    break;
  default:
    wk_fake_die(WK_LIB, "%s: computeType %d: not implemented", fn, (int)computeType);
  }
  wk_fake_dtype at, bt, ct;
  if (!wk_ex_dtype(Atype, &at) || !wk_ex_dtype(Btype, &bt) || !wk_ex_dtype(Ctype, &ct))
    wk_fake_die(WK_LIB, "%s: Atype %d, Btype %d, Ctype %d: not implemented", fn, (int)Atype,
                (int)Btype, (int)Ctype);
  /* cublasGemmEx's table of supported combinations, for these types: with
   * CUBLAS_COMPUTE_32F(_PEDANTIC), A and B of one type (32F, 16F or 16BF) and
   * C of that type or CUDA_R_32F; with the FAST compute types, all three
   * CUDA_R_32F. Any other is the documented CUBLAS_STATUS_NOT_SUPPORTED ("the
   * combination of the parameters Atype, Btype and Ctype ... is not
   * supported"). */
  const bool combo = Atype == Btype && (Ctype == Atype || Ctype == CUDA_R_32F) &&
                     (!fast || (Atype == CUDA_R_32F && Ctype == CUDA_R_32F));
  if (!combo)
    return wk_refuse(CUBLAS_STATUS_NOT_SUPPORTED, fn,
                     "Atype %d, Btype %d, Ctype %d with computeType %d", (int)Atype, (int)Btype,
                     (int)Ctype, (int)computeType);
  /* cublasGemmAlgo_t: the algorithm changes speed, not the (exact) result
   * here; a value outside the enumeration is the documented NOT_SUPPORTED */
  const int al = (int)algo;
  if (!(al == CUBLAS_GEMM_DEFAULT || (al >= CUBLAS_GEMM_ALGO0 && al <= CUBLAS_GEMM_ALGO23) ||
        al == CUBLAS_GEMM_DEFAULT_TENSOR_OP ||
        (al >= CUBLAS_GEMM_ALGO0_TENSOR_OP && al <= CUBLAS_GEMM_ALGO15_TENSOR_OP) ||
        al == CUBLAS_GEMM_AUTOTUNE))
    return wk_refuse(CUBLAS_STATUS_NOT_SUPPORTED, fn, "algo %d", al);
  wk_host_scalars(&h, fn);
  wk_gemm_job j = {.fn = fn, .ta = transa, .tb = transb, .m = m, .n = n, .k = k,
                   .alpha = *(const float *)alpha, .beta = *(const float *)beta,
                   .a = A, .b = B, .c = C, .lda = lda, .ldb = ldb, .ldc = ldc,
                   .at = at, .bt = bt, .ct = ct};
  return wk_gemm_issue(&h, &j);
}

/* ------------------------------------------------------------------ GEMV */

/* y = alpha op(A) x + beta y, A m x n as stored. */
typedef struct wk_gemv_job {
  cublasOperation_t trans;
  int m, n;
  double alpha, beta;
  const float *a;
  int lda;
  const float *x;
  int incx;
  float *y;
  int incy;
} wk_gemv_job;

static void wk_gemv_run(void *ctx) {
  static const char fn[] = "cublasSgemv";
  const wk_gemv_job *j = ctx;
  const bool tn = j->trans == CUBLAS_OP_N;
  /* x has n elements and y m for CUBLAS_OP_N; the other way round otherwise */
  const int len_x = tn ? j->n : j->m, len_y = tn ? j->m : j->n;
  const size_t a_bytes = wk_matrix_bytes(j->m, j->n, j->lda, WK_FAKE_F32);
  const size_t x_bytes = wk_vector_bytes(len_x, j->incx), y_bytes = wk_vector_bytes(len_y, j->incy);
  /* as the reference BLAS: alpha == 0 references neither A nor x */
  const bool product = j->alpha != 0.0;
  wk_check(fn, "y", j->y, y_bytes);
  if (product) {
    wk_check(fn, "A", j->a, a_bytes);
    wk_check(fn, "x", j->x, x_bytes);
    wk_check_disjoint(fn, "y", j->y, y_bytes, "A", j->a, a_bytes);
    wk_check_disjoint(fn, "y", j->y, y_bytes, "x", j->x, x_bytes);
  }
  const size_t lda = (size_t)j->lda;
  for (int i = 0; i < len_y; i++) {
    double v = 0.0;
    if (product) {
      double s = 0.0;
      for (int l = 0; l < len_x; l++) {
        /* op(A)(i, l): A(i, l) for N, A(l, i) otherwise */
        const size_t ai = tn ? (size_t)i + (size_t)l * lda : (size_t)l + (size_t)i * lda;
        s += (double)j->a[ai] * (double)j->x[(size_t)l * (size_t)j->incx];
      }
      v = j->alpha * s;
    }
    const size_t yi = (size_t)i * (size_t)j->incy;
    /* reference BLAS: "When BETA is supplied as zero then Y need not be set on input" */
    if (j->beta != 0.0) v += j->beta * (double)j->y[yi];
    j->y[yi] = (float)v;
  }
}

cublasStatus_t cublasSgemv_v2(cublasHandle_t handle, cublasOperation_t trans, int m, int n,
                              const float *alpha, const float *A, int lda, const float *x,
                              int incx, const float *beta, float *y, int incy) {
  static const char fn[] = "cublasSgemv";
  struct cublasContext h;
  const cublasStatus_t e = wk_handle(handle, fn, &h);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  const cublasStatus_t bad = CUBLAS_STATUS_INVALID_VALUE;
  /* documented: INVALID_VALUE if m, n < 0 or incx, incy == 0, trans not
   * N/T/C, alpha or beta NULL; lda < max(1, m) as the reference BLAS (and
   * recent cuBLAS documentation) rejects it too */
  if (m < 0 || n < 0) return wk_refuse(bad, fn, "m %d, n %d", m, n);
  if (incx == 0 || incy == 0) return wk_refuse(bad, fn, "incx %d, incy %d", incx, incy);
  if (!wk_op_valid(trans)) return wk_refuse(bad, fn, "trans %d", (int)trans);
  if (lda < (m > 1 ? m : 1)) return wk_refuse(bad, fn, "lda %d < max(1, %d)", lda, m);
  if (!alpha || !beta) return wk_refuse(bad, fn, "alpha or beta is NULL");
  if (incx < 0 || incy < 0)
    wk_fake_die(WK_LIB, "%s: negative increments (incx %d, incy %d): not implemented", fn, incx,
                incy);
  wk_host_scalars(&h, fn);
  /* as the reference BLAS: m == 0 or n == 0 returns at once (y, of length n
   * or m, is then left as it is, not scaled by beta) */
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const wk_gemv_job j = {.trans = trans, .m = m, .n = n, .alpha = *alpha, .beta = *beta,
                         .a = A, .lda = lda, .x = x, .incx = incx, .y = y, .incy = incy};
  return wk_enqueued(wk_fake_enqueue(h.stream, wk_gemv_run, &j, sizeof j), fn);
}

/* ------------------------------------------------------------------ GER */

/* A (m x n) = alpha x y^T + A. */
typedef struct wk_ger_job {
  int m, n;
  double alpha;
  const float *x;
  int incx;
  const float *y;
  int incy;
  float *a;
  int lda;
} wk_ger_job;

static void wk_ger_run(void *ctx) {
  static const char fn[] = "cublasSger";
  const wk_ger_job *j = ctx;
  const size_t a_bytes = wk_matrix_bytes(j->m, j->n, j->lda, WK_FAKE_F32);
  const size_t x_bytes = wk_vector_bytes(j->m, j->incx), y_bytes = wk_vector_bytes(j->n, j->incy);
  wk_check(fn, "A", j->a, a_bytes);
  wk_check(fn, "x", j->x, x_bytes);
  wk_check(fn, "y", j->y, y_bytes);
  wk_check_disjoint(fn, "A", j->a, a_bytes, "x", j->x, x_bytes);
  wk_check_disjoint(fn, "A", j->a, a_bytes, "y", j->y, y_bytes);
  for (int col = 0; col < j->n; col++) {
    const double ay = j->alpha * (double)j->y[(size_t)col * (size_t)j->incy];
    for (int row = 0; row < j->m; row++) {
      const size_t ai = (size_t)row + (size_t)col * (size_t)j->lda;
      j->a[ai] = (float)((double)j->a[ai] + (double)j->x[(size_t)row * (size_t)j->incx] * ay);
    }
  }
}

cublasStatus_t cublasSger_v2(cublasHandle_t handle, int m, int n, const float *alpha,
                             const float *x, int incx, const float *y, int incy, float *A,
                             int lda) {
  static const char fn[] = "cublasSger";
  struct cublasContext h;
  const cublasStatus_t e = wk_handle(handle, fn, &h);
  if (e != CUBLAS_STATUS_SUCCESS) return e;
  const cublasStatus_t bad = CUBLAS_STATUS_INVALID_VALUE;
  /* documented: INVALID_VALUE if m, n < 0 or incx, incy == 0, alpha NULL;
   * lda < max(1, m) as the reference BLAS (and recent cuBLAS documentation) */
  if (m < 0 || n < 0) return wk_refuse(bad, fn, "m %d, n %d", m, n);
  if (incx == 0 || incy == 0) return wk_refuse(bad, fn, "incx %d, incy %d", incx, incy);
  if (lda < (m > 1 ? m : 1)) return wk_refuse(bad, fn, "lda %d < max(1, %d)", lda, m);
  if (!alpha) return wk_refuse(bad, fn, "alpha is NULL");
  if (incx < 0 || incy < 0)
    wk_fake_die(WK_LIB, "%s: negative increments (incx %d, incy %d): not implemented", fn, incx,
                incy);
  wk_host_scalars(&h, fn);
  /* as the reference BLAS: nothing to do when m == 0, n == 0 or alpha == 0 */
  if (m == 0 || n == 0 || *alpha == 0.0f) return CUBLAS_STATUS_SUCCESS;
  const wk_ger_job j = {.m = m, .n = n, .alpha = *alpha, .x = x, .incx = incx, .y = y,
                        .incy = incy, .a = A, .lda = lda};
  return wk_enqueued(wk_fake_enqueue(h.stream, wk_ger_run, &j, sizeof j), fn);
}
