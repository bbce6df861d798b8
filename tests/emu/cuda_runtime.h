/* cuda_runtime.h (kernel emulator) - the CUDA runtime and device built-ins
 * that the .cu files in kernels/ use, for compiling those files as plain C++ and running
 * them on the host (tests/emu/emu.cpp; docs/gpu/README.md, "GPU kernels without a GPU").
 *
 * Found before any real CUDA header only by the emulator's targets
 * (tests/CMakeLists.txt). Kernel launches (`k<<<grid, block, shmem,
 * stream>>>(args)`) are rewritten to wk_emu::launch by tests/emu/rewrite.pl;
 * everything else in the .cu files compiles unchanged against this header:
 * - __global__/__device__ functions are ordinary functions; rewrite.pl makes
 *   __shared__ arrays static (one copy: the emulator runs one block at a
 *   time) and registers them (wk_emu::shared_region), `extern __shared__`
 *   ones wk_emu::dyn_shared() (the launch's dynamic shared memory); both are
 *   filled with NaN bytes before every block;
 * - threadIdx, blockIdx, blockDim and gridDim are globals the emulator sets
 *   for the thread it is running; __syncthreads() switches to the next thread
 *   of the block (emu.cpp runs a block's threads as fibers);
 * - the _rn intrinsics are the host's IEEE operations, correctly rounded as
 *   the GPU's (the kernels' bit-exact arithmetic uses them). */
#ifndef WK_EMU_CUDA_RUNTIME_H
#define WK_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)

struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
};

/* The real runtime's numbers (driver_types.h), as launchers return them. */
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoKernelImageForDevice = 209
};
typedef enum cudaError cudaError_t;
typedef struct CUstream_st *cudaStream_t;
struct cudaFuncAttributes {
  size_t sharedSizeBytes, constSizeBytes, localSizeBytes;
  int maxThreadsPerBlock, numRegs, ptxVersion, binaryVersion;
};

extern "C" {
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
cudaError_t cudaMemsetAsync(void *dev, int value, size_t n_bytes, cudaStream_t stream);
}

/* Every kernel of this build runs here. */
template <class F>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, F *) {
  if (!attr) return cudaErrorInvalidValue;
  memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

namespace wk_emu {
void syncthreads();
void *dyn_shared();
/* A static __shared__ array, registered the first time a thread declares it;
 * filled with NaN bytes then and before every block after. */
bool shared_region(void *p, size_t n_bytes);
/* Runs body(ctx) once for every thread of grid x block (emu.cpp). */
void run(const char *kernel, dim3 grid, dim3 block, size_t shmem, void (*body)(void *), void *ctx);
/* The same, issued on a stream: now, or (the emulated plugin, WK_EMU_FULL)
 * recorded with a copy of the ctx_bytes at ctx while the stream captures a
 * graph. */
void run_on(cudaStream_t stream, const char *kernel, dim3 grid, dim3 block, size_t shmem,
            void (*body)(void *), void *ctx, size_t ctx_bytes);

template <class... P>
struct Launch {
  const char *name;
  void (*kernel)(P...);
  dim3 grid, block;
  size_t shmem;
  cudaStream_t stream;
  template <class... A>
  void operator()(A &&...args) const {
    struct Call {
      void (*kernel)(P...);
      std::tuple<P...> args;
    } call{kernel, std::tuple<P...>(std::forward<A>(args)...)};
    static_assert((std::is_trivially_copyable<P>::value && ...), "kernel arguments are copied as bytes");
    static_assert(alignof(Call) <= 16, "the copies are 16-byte aligned (emu.cpp, run_on)");
    run_on(stream, name, grid, block, shmem,
           [](void *p) {
             Call *c = static_cast<Call *>(p);
             std::apply(c->kernel, c->args);
           },
           &call, sizeof call);
  }
};

template <class... P>
Launch<P...> launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block,
                    size_t shmem = 0, cudaStream_t stream = nullptr) {
  return Launch<P...>{name, kernel, grid, block, shmem, stream};
}
}  // namespace wk_emu

inline void __syncthreads() { wk_emu::syncthreads(); }

/* The _rn operations are never merged into a fused multiply-add by nvcc,
 * whatever surrounds them; here an empty asm makes each operand and result
 * opaque, so a host compiler contracting plain expressions (the emulator's
 * fma build) cannot merge them either. */
#if defined(__x86_64__)
#define WK_EMU_OPAQUE(v) __asm__("" : "+x"(v))
#else
#define WK_EMU_OPAQUE(v) __asm__("" : "+m"(v))
#endif
#define WK_EMU_RN(name, T, expr)             \
  inline T name(T a, T b) {                  \
    WK_EMU_OPAQUE(a);                        \
    WK_EMU_OPAQUE(b);                        \
    T r = expr;                              \
    WK_EMU_OPAQUE(r);                        \
    return r;                                \
  }
WK_EMU_RN(__fadd_rn, float, a + b)
WK_EMU_RN(__fsub_rn, float, a - b)
WK_EMU_RN(__fmul_rn, float, a * b)
WK_EMU_RN(__fdiv_rn, float, a / b)
WK_EMU_RN(__dadd_rn, double, a + b)
WK_EMU_RN(__dsub_rn, double, a - b)
WK_EMU_RN(__dmul_rn, double, a * b)
WK_EMU_RN(__ddiv_rn, double, a / b)
#undef WK_EMU_RN
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __dsqrt_rn(double a) { return sqrt(a); }
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return (unsigned int)(((uint64_t)a * b) >> 32);
}
inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  memcpy(&u, &f, sizeof u);
  return u;
}

#endif
