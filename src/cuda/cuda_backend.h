/* cuda_backend.h - internal glue of the CUDA backend: checked foreign calls and
 * device buffers. Only backend glue (src/cuda/, the CUDA paths of src/ops/) and
 * GPU tests include this; everything else uses cuda/cuda.h.
 *
 * Every CUDA, cuDNN, cuBLAS and NCCL call goes through one of the WK_*_TRY
 * macros. On failure the macro records, with wk_fail(), the statement text, file,
 * line and the foreign library's own error name and string, and returns
 * WK_ERR_BACKEND from the enclosing function (which must return wk_status).
 *
 * WK_CUDA_TRY also consumes the failed call's entry in the runtime's per-thread
 * "last error" (cudaGetLastError()), so a later kernel launcher, which reports
 * cudaGetLastError(), does not report an error that was already returned here.
 * Sticky errors (a kernel fault) cannot be consumed; every later call keeps
 * reporting them, which is what we want. */
#ifndef WK_CUDA_BACKEND_H
#define WK_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

/* cuDNN's and NCCL's headers reach us through -I, not -isystem, when they live
 * outside the toolkit's include folder (CMake passes them as plain include
 * directories); our warning flags then apply to them, and nccl.h declares
 * `ncclGroupStart()` without `void`. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#endif
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <nccl.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "core/status.h"
#include "cuda/cuda.h"

#define WK_CUDA_TRY(call)                                                                    \
  do {                                                                                       \
    const cudaError_t wk_cuda_e_ = (cudaError_t)(call);                                      \
    if (wk_cuda_e_ != cudaSuccess) {                                                         \
      (void)cudaGetLastError();                                                              \
      return wk_fail(WK_ERR_BACKEND, "CUDA: %s failed at %s:%d: %s (%s)", #call, __FILE__,   \
                     __LINE__, cudaGetErrorName(wk_cuda_e_), cudaGetErrorString(wk_cuda_e_)); \
    }                                                                                        \
  } while (0)

/* cudnnGetLastErrorString() adds cuDNN's own detail to the status name. */
#define WK_CUDNN_TRY(call)                                                                   \
  do {                                                                                       \
    const cudnnStatus_t wk_cudnn_e_ = (call);                                                \
    if (wk_cudnn_e_ != CUDNN_STATUS_SUCCESS) {                                               \
      char wk_cudnn_msg_[256];                                                               \
      cudnnGetLastErrorString(wk_cudnn_msg_, sizeof wk_cudnn_msg_);                          \
      return wk_fail(WK_ERR_BACKEND, "cuDNN: %s failed at %s:%d: %s (%s)", #call, __FILE__,   \
                     __LINE__, cudnnGetErrorString(wk_cudnn_e_), wk_cudnn_msg_);             \
    }                                                                                        \
  } while (0)

#define WK_CUBLAS_TRY(call)                                                                  \
  do {                                                                                       \
    const cublasStatus_t wk_cublas_e_ = (call);                                              \
    if (wk_cublas_e_ != CUBLAS_STATUS_SUCCESS)                                               \
      return wk_fail(WK_ERR_BACKEND, "cuBLAS: %s failed at %s:%d: %s (%s)", #call, __FILE__, \
                     __LINE__, cublasGetStatusName(wk_cublas_e_),                            \
                     cublasGetStatusString(wk_cublas_e_));                                   \
  } while (0)

/* ncclGetLastError() adds NCCL's own detail (which peer, which transport) to the
 * generic string of the result code. */
#define WK_NCCL_TRY(call)                                                                  \
  do {                                                                                     \
    const ncclResult_t wk_nccl_e_ = (call);                                                \
    if (wk_nccl_e_ != ncclSuccess)                                                         \
      return wk_fail(WK_ERR_BACKEND, "NCCL: %s failed at %s:%d: %s (%s)", #call, __FILE__, \
                     __LINE__, ncclGetErrorString(wk_nccl_e_), ncclGetLastError(NULL));    \
  } while (0)

/* ------------------------------------------------------------------ queries
 * The backend's side of cuda.h's wk_cuda_device_count and wk_cuda_describe
 * (which reach these through the plugin, cuda_plugin.h). */
int wk_gpu_device_count(void);
wk_status wk_gpu_describe(char *buf, size_t n);

/* ------------------------------------------------------------------ device buffers
 * Device memory on the current device, through its caching allocator
 * (dev_cache.h; $WHISKER_GPU_CACHE=0: plain cudaMalloc and cudaFree). Sizes are
 * in bytes. A size of 0 is valid and gives (or moves) nothing. The copies are
 * synchronous with the host and ordered after all work already queued on the
 * legacy default stream.
 *
 * Unlike cudaFree, wk_cuda_free does not wait for the device: the memory goes
 * back to the cache, which waits for the device before handing it out again. */

/* *dptr = n_bytes of device memory (NULL for 0 bytes); the caller frees it with
 * wk_cuda_free. On failure *dptr is NULL; WK_ERR_NOMEM when the device has no
 * room even after the cache gave back what it held. */
wk_status wk_cuda_malloc(void **dptr, size_t n_bytes) WK_NODISCARD;

/* The same, for memory the caller can do without: no room is *room false and
 * WK_OK (and *dptr NULL); any other failure is one. */
wk_status wk_cuda_malloc_optional(void **dptr, size_t n_bytes, bool *room) WK_NODISCARD;

/* Returns device memory from wk_cuda_malloc (on any device) to its cache; NULL
 * is a no-op. Memory it did not hand out is refused (WK_ERR_INVALID_ARG). */
wk_status wk_cuda_free(void *dptr);

/* Gives every cached segment of the current device with nothing in use back
 * to the device (after waiting for it, when something freed is pending). */
wk_status wk_cuda_cache_release(void);

/* The cache's figures for `device` (zero before its first allocation) and
 * the device's free and total memory (cudaMemGetInfo). */
wk_status wk_cuda_memory(int device, wk_gpu_memory *out);

/* Copies n_bytes from host src to device dst, and from device src to host dst. */
wk_status wk_cuda_copy_h2d(void *dst, const void *src, size_t n_bytes) WK_NODISCARD;
wk_status wk_cuda_copy_d2h(void *dst, const void *src, size_t n_bytes) WK_NODISCARD;

/* Waits for all work queued on the current device; reports asynchronous faults. */
wk_status wk_cuda_sync(void) WK_NODISCARD;

/* ------------------------------------------------------------------ networks
 * cuda_net*.c: the plugin's side of cuda.h's wk_gpu_net_* (same contracts). */
wk_status wk_cudanet_create(const wk_gpu_graph *g, int device, wk_gpu_net **out);
void wk_cudanet_destroy(wk_gpu_net *net);
wk_status wk_cudanet_stage(wk_gpu_net *net, const wk_gpu_input *x, int64_t n);
wk_status wk_cudanet_forward(wk_gpu_net *net, const wk_gpu_input *x, int64_t n, bool train,
                             const wk_gpu_dropout *drop, float *out);
wk_status wk_cudanet_backward(wk_gpu_net *net, const float *dy);
wk_status wk_cudanet_set_params(wk_gpu_net *net, const wk_param *params);
wk_status wk_cudanet_copy(wk_gpu_net *net, wk_gpu_arena which, float *host, bool to_device);
wk_status wk_cudanet_grads_finite(wk_gpu_net *net, bool *finite);
wk_status wk_cudanet_scale_grads(wk_gpu_net *net, float s);
wk_status wk_cudanet_optim_step(wk_gpu_net *net, const wk_gpu_optim *o);
wk_status wk_cudanet_xent_forward(wk_gpu_net *net, const wk_gpu_xent *x, double *loss_sum);
wk_status wk_cudanet_xent_backward(wk_gpu_net *net, float dloss);
wk_status wk_cudanet_train_step(wk_gpu_net *net, const wk_gpu_step *s, wk_gpu_step_result *r);
wk_status wk_cudanet_graph_stats(wk_gpu_net *net, wk_gpu_graph_stats *out);
wk_status wk_cudanet_profile(wk_gpu_net *net);
wk_status wk_cudanet_profile_read(wk_gpu_net *net, wk_gpu_node_time *out);
wk_status wk_cudanet_comm_unique_id(unsigned char *id);
wk_status wk_cudanet_attach_comm(wk_gpu_net *net, const unsigned char *id, int rank, int world,
                                 const wk_gpu_buckets *b, double timeout_s, bool sync_bn);

/* ------------------------------------------------------------------ convolution algorithms
 * cuda_algo.c: the plugin's side of cuda.h's wk_gpu_algos_* (same contracts),
 * and the choice of one convolution's algorithms for cuda_net.c. */
wk_status wk_cudaalgos_create(wk_gpu_algos **out);
void wk_cudaalgos_destroy(wk_gpu_algos *a);
wk_status wk_cudaalgos_stats(wk_gpu_algos *a, wk_gpu_algo_stats *out);

typedef enum { WK_CONV_FWD, WK_CONV_BWD_DATA, WK_CONV_BWD_FILTER } wk_conv_dir;

/* One direction's choice: cuDNN's algorithm (the direction's enum, as an
 * int), the math type to set on the descriptor before each call (the one
 * the algorithm was ranked or timed with), and the workspace it needs. */
typedef struct wk_conv_algo {
  int algo;
  cudnnMathType_t math;
  size_t ws_bytes;
  int rank; /* the graph API's (conv_graph.c): algo is the engine's global index, rank
             * its configuration's place in the heuristics' list; math is unused */
} wk_conv_algo;

/* One convolution at one batch size, as the choice needs it. */
typedef struct wk_conv_choice {
  cudnnHandle_t cudnn;
  cudaStream_t stream; /* the handle's */
  int device;
  /* the descriptors of the calls (16-bit ones with bf16 and fp16); conv's
   * math type is the one the ranking starts from */
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  bool tensor_math;    /* tensor-core math types allowed (tf32, bf16, fp16) */
  size_t ws_limit;     /* bytes; no algorithm needing more is chosen */
  bool find;           /* time, through the cache, rather than take the heuristics' choice */
  bool deterministic;  /* only algorithms cuDNN calls deterministic (no atomics) */
  uint32_t skip;       /* heuristics: algorithms to pass over (bit 1 << algo), those
                        * cuDNN refused when called; a timed or kept choice ignores it */
  const struct wk_engine_set *skip_engines; /* the graph API's likewise, by engine global
                                             * index, or NULL; a kept choice of one is not
                                             * taken */
  /* the graph API, where given (note_n bytes): the first failure that made a configuration
   * unusable other than cuDNN saying the engine does not take the case (a heuristics mode,
   * an engine's notes, a plan cuDNN would not finalize for another reason), with cuDNN's
   * status and message, for the caller's "no engine" error; empty when none */
  char *note;
  size_t note_n;
  wk_gpu_algos *cache;
  /* timing only: device buffers of the descriptors' sizes that the timed
   * calls read (x, w, dy: any contents) and overwrite (y, dx, dw), and the
   * caller's workspace (wk_cuda_malloc'd, *ws_bytes long), which timing grows */
  const void *x_data, *w_data, *dy_data;
  void *y_data, *dx_data, *dw_data;
  void **ws;
  size_t *ws_bytes;
} wk_conv_choice;

/* Chooses direction d's algorithm into *out. *found is false when no
 * algorithm fits the limit with an allowed math type (the caller reports
 * it); *timed is true when cudnnFind*AlgorithmEx ran (the workspace may then
 * be larger than the choice needs). Errors: cuDNN or CUDA failures other
 * than a timing that cannot run (which falls back to the heuristics). */
wk_status wk_conv_choose(const wk_conv_choice *c, wk_conv_dir d, wk_conv_algo *out, bool *found,
                         bool *timed);

/* The cache for other kinds of choice (variant 1 and 2: the graph API's with
 * beta 0 and 1, conv_graph.c), keyed as wk_conv_choose keys its own (variant
 * 0). wk_conv_kept: *hit and the kept choice in *out (counted as reused);
 * wk_conv_keep keeps *v (counted as timed when `timed`), or puts the choice
 * another thread kept meanwhile in *v. A NULL c->cache keeps nothing. */
wk_status wk_conv_kept(const wk_conv_choice *c, wk_conv_dir d, int variant, wk_conv_algo *out,
                       bool *hit);
wk_status wk_conv_keep(const wk_conv_choice *c, wk_conv_dir d, int variant, wk_conv_algo *v,
                       bool timed);
typedef enum { WK_ALGO_FELL_BACK, WK_ALGO_REFUSED, WK_ALGO_EXEC_REFUSED } wk_algo_event;
/* Counts e in a's stats (wk_gpu_algo_stats' field of that name). */
void wk_cudaalgos_count(wk_gpu_algos *a, wk_algo_event e);
/* c's workspace (*c->ws, *c->ws_bytes) grown to n_bytes for timing; *room
 * false (and no workspace left) when the device has no memory for it. */
wk_status wk_conv_timing_workspace(const wk_conv_choice *c, size_t n_bytes, bool *room);

/* ------------------------------------------------------------------ the graph API's plans
 * conv_graph.c: one direction of one convolution through cuDNN's backend
 * (graph) API: an operation graph of the one convolution, the engine
 * configurations cuDNN's heuristics offer for it (mode A, then the fallback
 * list), the first usable one or, timing, the fastest, finalized into an
 * execution plan that runs with the caller's pointers. */
typedef struct wk_cplan wk_cplan;

/* A set of cuDNN engine global indices, those below WK_ENGINE_SET_MAX (cuDNN 8 already
 * numbered a direction's engines up to 62). */
enum { WK_ENGINE_SET_MAX = 1024 };
typedef struct wk_engine_set {
  uint64_t w[WK_ENGINE_SET_MAX / 64];
} wk_engine_set;
static inline bool wk_engine_set_has(const wk_engine_set *s, int64_t e) {
  return s && e >= 0 && e < WK_ENGINE_SET_MAX && (s->w[e >> 6] >> (e & 63) & 1u);
}
/* Adds e; false (nothing added) when it is outside the set's range. */
static inline bool wk_engine_set_add(wk_engine_set *s, int64_t e) {
  if (e < 0 || e >= WK_ENGINE_SET_MAX) return false;
  s->w[e >> 6] |= (uint64_t)1 << (e & 63);
  return true;
}

/* Direction d of c's convolution, out = alpha * op + beta * out with alpha 1
 * and beta 1 when `accumulate`, else 0. Usable engines: none whose numerical
 * notes say it converts inputs down or reduces in less than float32; none
 * with tensor cores for float32 data unless c->tensor_math (TF32); with
 * c->deterministic none noted nondeterministic; none in c->skip_engines; a
 * plan cuDNN finalizes within c->ws_limit. A heuristics mode that cuDNN says
 * does not take the case, or an engine whose notes cannot be read, only has
 * no usable configurations (c->note says why). c->find times every usable one
 * (through the cache, on the timing buffers) and takes the fastest; else
 * the first. *out NULL with *found false when none is usable; *timed says
 * timing ran. c->skip is not read. */
wk_status wk_cplan_make(const wk_conv_choice *c, wk_conv_dir d, bool accumulate, wk_cplan **out,
                        bool *found, bool *timed);
void wk_cplan_destroy(wk_cplan *p);
size_t wk_cplan_ws_bytes(const wk_cplan *p);
int64_t wk_cplan_engine(const wk_cplan *p);
/* Runs p on its handle's stream: x, w, y as the direction names them (the
 * forward writes y, backward-data x (dx, from y = dy), backward-filter w
 * (dw)); ws at least wk_cplan_ws_bytes long. Returns cuDNN's status (the
 * caller decides what a refusal means); a pointer not aligned to 16 bytes
 * (the plans promise cuDNN that) is BAD_PARAM, with the reason kept in
 * wk_last_error(). */
cudnnStatus_t wk_cplan_run(wk_cplan *p, void *x, void *w, void *y, void *ws);

/* ------------------------------------------------------------------ gradient all-reduce
 * cuda_comm.c: NCCL for cuda_net_bwd.c's backward (cuda.h's data-parallel API). */
typedef struct wk_gpucomm wk_gpucomm;
/* id: n = sizeof(ncclUniqueId) bytes. */
wk_status wk_gpucomm_unique_id(void *id, size_t n);
/* The communicator of rank `rank` of `world` on `device`, with buckets b over
 * g's parameter arena (checked against it, copied). */
wk_status wk_gpucomm_create(const wk_gpu_graph *g, int device, const void *id, int rank,
                            int world, const wk_gpu_buckets *b, double timeout_s,
                            wk_gpucomm **out);
void wk_gpucomm_destroy(wk_gpucomm *c);
/* Per backward: begin before the first node; node_done after each node (in
 * backward's order, every node, run or skipped), which sends the buckets that
 * are complete; finish after the last, which sends the rest and makes
 * `compute` wait for them; wait then polls `compute` with the deadline. */
wk_status wk_gpucomm_begin(wk_gpucomm *c);
wk_status wk_gpucomm_node_done(wk_gpucomm *c, const wk_node *nd, float *grads,
                               cudaStream_t compute);
wk_status wk_gpucomm_finish(wk_gpucomm *c, float *grads, cudaStream_t compute);
wk_status wk_gpucomm_wait(wk_gpucomm *c, cudaStream_t compute, const char *what);
/* Sums n doubles at buf over the ranks, in place, between the compute
 * stream's work queued so far and what it queues next (synchronised
 * batchnorm): on the communication stream, in issue order with the gradient
 * buckets, so every rank's collectives keep one order. Waits for nothing. */
wk_status wk_gpucomm_sum_f64(wk_gpucomm *c, double *buf, size_t n, cudaStream_t compute,
                             const char *what);
/* The step in one call (cuda_net.c): the int at flag summed over the ranks,
 * in place, in the same order, so it is non-zero on every rank when it was on
 * any (each rank's loss is checked on that rank alone; the gated update must
 * run on all or none). Waits for nothing. */
wk_status wk_gpucomm_any(wk_gpucomm *c, int *flag, cudaStream_t compute, const char *what);
int wk_gpucomm_world(const wk_gpucomm *c);
/* Whether the communicator was aborted (a timeout or an NCCL error). */
bool wk_gpucomm_broken(const wk_gpucomm *c);

#endif
