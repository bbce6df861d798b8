// grid.cuh - the launch geometry every whisker kernel shares: 256-thread
// blocks, a bounded grid and grid-stride loops, so any n works. Included by the
// .cu files only; internal to each (an anonymous namespace).
#ifndef WK_GRID_CUH
#define WK_GRID_CUH

#include <cuda_runtime.h>

#include <stdint.h>

namespace {

constexpr int kThreads = 256;
// Enough blocks to fill any current GPU several times over (an H100 holds
// 132 SMs x 8 blocks of 256); the grid-stride loop covers the rest.
constexpr int64_t kMaxBlocks = 65535;

inline int blocks_for(int64_t n) {
  const int64_t b = n / kThreads + (n % kThreads != 0);  // no n + 255 overflow near INT64_MAX
  return (int)(b < kMaxBlocks ? b : kMaxBlocks);
}

inline cudaStream_t as_stream(void *s) { return static_cast<cudaStream_t>(s); }

__device__ __forceinline__ int64_t first_index() {
  return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return (int64_t)gridDim.x * blockDim.x; }

}  // namespace

#endif
