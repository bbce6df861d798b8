/* fake.h - what the host fakes of the CUDA runtime, cuDNN, cuBLAS and NCCL
 * share (tests/emu/fake/fake_*.c). They implement the functions the GPU backend
 * (src/cuda) calls, under the real headers' declarations, on the host:
 * the whole backend, built into an emulated plugin with its kernels under the
 * kernel emulator (tests/emu/emu.cpp), runs tests/test_gpu_net.c's suite
 * without a GPU. "Device" memory is host memory; every stream runs its work
 * when it is issued (eager, the default) or as late as CUDA's ordering
 * allows ($WK_FAKE_LAZY=1, the emulated suites' setting: fake_cudart.c),
 * except while a stream captures a CUDA graph: then the work is recorded and
 * runs at each cudaGraphLaunch.
 *
 * What this can show: the backend's host logic (descriptors, sizes, layouts,
 * the order of work, error paths) against the libraries' documented
 * semantics, as these fakes read the documentation, and with lazy streams a
 * missing order between streams or between a stream and the host. What it
 * cannot: the real libraries' behaviour where it differs from that reading,
 * races within one moment (work never runs concurrently), timing, and device
 * limits. */
#ifndef WK_FAKE_H
#define WK_FAKE_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A unit of device work: fn(ctx). */
typedef void (*wk_fake_fn)(void *ctx);

/* Runs fn(ctx) now, or, while `stream` captures a graph, records fn and a
 * copy of the ctx_bytes at ctx (so ctx may live on the caller's stack; host
 * scalars such as alpha and beta must be copied into ctx, as the real
 * libraries read them when the work is issued) to run at each launch of the
 * graph. stream 0 is the legacy default stream, which never captures. Returns
 * cudaSuccess, or an error the caller returns (an illegal call during
 * capture: cudaErrorStreamCaptureUnsupported). */
cudaError_t wk_fake_enqueue(cudaStream_t stream, wk_fake_fn fn, const void *ctx, size_t ctx_bytes);

/* Lazy streams ($WK_FAKE_LAZY=1, fake_cudart.c): runs the work queued on
 * `stream` so far (0: every blocking stream's, as the legacy stream would
 * wait for); nothing otherwise. */
void wk_fake_flush(cudaStream_t stream);

/* Whether `stream` is capturing a graph now. */
int wk_fake_capturing(cudaStream_t stream);

/* Aborts with a message naming `what` unless [p, p + n_bytes) lies inside one
 * live cudaMalloc allocation (device memory the libraries may touch). */
void wk_fake_check_device(const void *p, size_t n_bytes, const char *what);

/* Prints "fake <lib>: <message>" to stderr and aborts: a call the real
 * library would reject in a way the backend must never provoke, or one these
 * fakes do not implement (the message says which). */
void wk_fake_die(const char *lib, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Element i of an array of the given type, as double (exact), and back:
 * double stored as is, float rounded once, half and bfloat16 rounded to
 * float and then to nearest even. */
typedef enum wk_fake_dtype { WK_FAKE_F32, WK_FAKE_F16, WK_FAKE_BF16, WK_FAKE_F64 } wk_fake_dtype;
double wk_fake_load(const void *p, wk_fake_dtype t, size_t i);
void wk_fake_store(void *p, wk_fake_dtype t, size_t i, double v);
size_t wk_fake_dtype_size(wk_fake_dtype t);

/* What the program asked of the device, counted since the library loaded:
 * the host-side cost of its work, which the GPU's speed depends on and
 * which the fakes can see without a GPU. A test reads it through dlsym
 * ("wk_fake_stats"), so it is exported from the hidden-by-default plugin.
 *   work:        pieces of device work issued outside a capture (a kernel,
 *                a library call's work, a copy, a memset, a graph launch;
 *                not a stream's wait on an event);
 *   graph_launches: of those, cudaGraphLaunch calls;
 *   allocs, host_allocs, frees: cudaMalloc, cudaHostAlloc, and cudaFree or
 *                cudaFreeHost of a real pointer (each of these synchronises
 *                the device, or may);
 *   host_waits:  calls in which the host waits for the device (stream, event
 *                and device synchronisation, a synchronous copy or memset, an
 *                asynchronous copy to pageable memory, a free, and a poll of
 *                a stream or an event, cudaStreamQuery or cudaEventQuery,
 *                that makes its work run);
 *   stalls:      lazy streams only: host waits that found computation (a
 *                kernel, a library call's work, a graph launch; not a copy,
 *                which on a GPU has long finished when it was issued a step
 *                before) still queued: the host sat waiting for the device;
 *   drains:      of those, the waits that left the stream waited on (the
 *                device, for a device-wide wait) with no work queued: it
 *                sits idle until the host issues more;
 *   lazy:        whether streams are lazy (else stalls and drains stay 0). */
typedef struct wk_fake_stats_t {
  long long work, graph_launches, allocs, host_allocs, frees, host_waits, stalls, drains;
  int lazy;
} wk_fake_stats_t;
__attribute__((visibility("default"))) void wk_fake_stats(wk_fake_stats_t *out);

/* The kernel emulator's last launch error, for cudaGetLastError. */
void wk_fake_set_last_error(cudaError_t e);

#ifdef __cplusplus
}
#endif

#endif
