/* emu.cpp - a CUDA kernel emulator: runs the .cu files in kernels/ on the host, so their
 * indexing, their block reductions and their arithmetic are tested where
 * there is no GPU (docs/gpu/README.md, "GPU kernels without a GPU").
 *
 * What it does, for each launch (tests/emu/rewrite.pl turns `k<<<...>>>` into
 * wk_emu::launch, which calls run):
 * - checks the block and grid limits (at most 1024 threads a block, 1024 x
 *   1024 x 64, grid y and z at most 65535) and dynamic shared memory up to
 *   48 KiB; a bad one is cudaErrorInvalidConfiguration from cudaGetLastError
 *   and runs nothing. Not checked: static plus dynamic shared memory
 *   together, registers per block;
 * - runs the blocks one after the other, in a pseudo-random affine order
 *   (block a * i + c mod n at step i: a kernel whose blocks rely on running
 *   in index order is likely to fail). A block's threads are fibers on one
 *   OS thread: each runs until it returns or reaches __syncthreads(); when
 *   every thread is at the barrier they all go on (threads waiting at two
 *   different __syncthreads() sites count as one barrier). The order the
 *   threads run in between two barriers is shuffled (a fixed seed;
 *   $WK_EMU_SEED=N for others), so a thread that reads shared memory another
 *   writes without a barrier between may get a stale or poisoned value, and
 *   fails its comparison when the order puts it first and the NaN reaches a
 *   checked result. A thread that returns while others wait at a barrier is
 *   reported and the process aborts (divergent __syncthreads is undefined on
 *   a GPU);
 * - the first block run (not necessarily block 0) always runs as fibers.
 *   When no thread of it reached a barrier, the kernel is taken to have none
 *   and the other blocks run their threads as plain calls (fast: a
 *   grid-stride kernel over 2^24 elements takes a fraction of a second); a
 *   barrier reached there after all aborts with the kernel's name;
 * - the running kernel's shared memory is filled with NaN bytes before every
 *   block, so a read before any write shows as NaN: its static __shared__
 *   arrays (registered by rewrite.pl's code) and dynamic shared memory
 *   (`extern __shared__`, a fresh allocation per launch, so an access just
 *   past it shows under AddressSanitizer);
 * - device memory is host memory (wk_cuda_malloc below: malloc, NaN bytes with
 *   $WHISKER_GPU_POISON=1 as the real backend), so AddressSanitizer reports
 *   a kernel's access just past either end of a buffer. Streams are
 *   ignored: work runs when launched.
 *
 * What it cannot show: timing; races within a phase (between two barriers a
 * thread runs without interruption, so an unsynchronised read-modify-write
 * of shared memory by many threads loses no update here, where a GPU would
 * lose some); races through global memory; an overrun inside a static shared
 * array or inside one device allocation (ASan sees only its ends); warp-level
 * behaviour (whisker's kernels use none); the device's own exp/log (the
 * host's libm, within an ulp); and fused
 * multiply-adds nvcc forms from plain `a * b + c` (the emulator is built
 * without contraction; the kernels' bit-exact arithmetic uses the _rn
 * intrinsics, which no compiler fuses).
 *
 * Built with WK_EMU_FULL (the emulated plugin of tests/emu/fake), launches
 * go through the fake CUDA runtime's streams (fake.h: run now, or recorded
 * into a graph being captured), launch errors reach its cudaGetLastError,
 * and the runtime and device memory calls below are the fake's instead.
 *
 * Fibers switch with a few instructions on x86-64 (wk_emu_switch below) and
 * with ucontext elsewhere; under AddressSanitizer every switch is announced
 * (sanitizer/common_interface_defs.h), as its fiber support requires. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <numeric>
#include <vector>

#include "cuda_runtime.h"

extern "C" {
#include "core/status.h"
}
#ifdef WK_EMU_FULL
/* tests/emu/fake/fake.h's, declared with this file's stand-in types (the
 * real runtime header cannot be included beside the stand-ins) */
extern "C" {
cudaError_t wk_fake_enqueue(cudaStream_t stream, void (*fn)(void *), const void *ctx,
                            size_t ctx_bytes);
void wk_fake_set_last_error(cudaError_t e);
}
#endif

#if defined(__SANITIZE_ADDRESS__)
#define WK_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WK_EMU_ASAN 1
#endif
#endif
#ifdef WK_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

/* x86-64 switches with wk_emu_switch; elsewhere, or built with
 * -DWK_EMU_UCONTEXT (how the ucontext path is tested on x86-64), ucontext. */
#if defined(__x86_64__) && !defined(WK_EMU_UCONTEXT)
#define WK_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

[[noreturn]] void emu_die(const char *fmt, const char *kernel) {
  fprintf(stderr, "kernel emulator: ");
  fprintf(stderr, fmt, kernel);
  fprintf(stderr, "\n");
  fflush(stderr);
  abort();
}

#ifndef WK_EMU_FULL
cudaError_t last_error = cudaSuccess;
#endif

/* ------------------------------------------------------------------ fibers */

constexpr size_t kStackBytes = 256 * 1024; /* a guard page below each */
constexpr int kMaxThreads = 1024;

enum FiberState { kReady, kAtBarrier, kDone };

struct Fiber {
  unsigned char *stack = nullptr; /* lowest usable byte; the guard page is below */
#ifdef WK_EMU_ASM_SWITCH
  void *sp = nullptr;
#else
  ucontext_t ctx;
#endif
  void *fake_stack = nullptr; /* AddressSanitizer's, while switched out */
  uint3 tid{0, 0, 0};
  FiberState state = kReady;
};

#ifdef WK_EMU_ASM_SWITCH
/* Saves the callee-saved registers on the current stack, stores the stack
 * pointer in *from and resumes the context whose stack pointer is `to`. A new
 * fiber's stack is laid out as if it had called this (fiber_prepare). */
extern "C" void wk_emu_switch(void **from, void *to);
asm(R"(
  .text
  .globl wk_emu_switch
  .type wk_emu_switch, @function
wk_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size wk_emu_switch, .-wk_emu_switch
  .section .note.GNU-stack, "", @progbits
  .text
)");
void *sched_sp = nullptr;
#else
ucontext_t sched_ctx;
#endif

std::vector<Fiber> fibers;
int current = -1;              /* the fiber running, -1: the scheduler */
bool serial = false;           /* threads run as plain calls (no barrier allowed) */
bool saw_barrier = false;      /* in the block being run as fibers */
const char *kernel_name = "";
void (*body_fn)(void *) = nullptr;
void *body_ctx = nullptr;
#ifdef WK_EMU_ASAN
const void *sched_stack_bottom = nullptr;
size_t sched_stack_size = 0;
#endif

void *dyn_shared_mem = nullptr;
size_t dyn_shared_bytes = 0;

struct Region {
  void *p;
  size_t n;
  const char *kernel; /* the launch that declared it: its kernel's name */
};
std::vector<Region> shared_regions; /* every static __shared__ array declared so far */

/* The running kernel's shared memory (arrays of its other instantiations
 * too: they share its name, and are idle). */
void poison_shared() {
  for (const Region &r : shared_regions)
    if (strcmp(r.kernel, kernel_name) == 0) memset(r.p, 0xff, r.n);
  if (dyn_shared_mem) memset(dyn_shared_mem, 0xff, dyn_shared_bytes);
}

/* The shuffles' seed: fixed, so a run repeats; $WK_EMU_SEED picks others. */
uint64_t rng_state = 0;
uint64_t next_random() { /* xorshift64* */
  if (rng_state == 0) {
    const char *seed = getenv("WK_EMU_SEED");
    rng_state = seed ? strtoull(seed, nullptr, 0) * 0x9e3779b97f4a7c15ull : 0;
    if (rng_state == 0) rng_state = 0x9e3779b97f4a7c15ull;
  }
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

/* Into fiber i from the scheduler, and back. */
void switch_to_fiber(int i) {
  Fiber &f = fibers[(size_t)i];
  current = i;
  threadIdx = f.tid;
#ifdef WK_EMU_ASAN
  void *fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
#endif
#ifdef WK_EMU_ASM_SWITCH
  wk_emu_switch(&sched_sp, f.sp);
#else
  if (swapcontext(&sched_ctx, &f.ctx) != 0) emu_die("swapcontext failed in %s", kernel_name);
#endif
#ifdef WK_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  current = -1;
}

void switch_to_scheduler(bool finished) {
  Fiber &f = fibers[(size_t)current];
#ifdef WK_EMU_ASAN
  /* a finished fiber's stack is done with: no fake stack to keep */
  __sanitizer_start_switch_fiber(finished ? nullptr : &f.fake_stack, sched_stack_bottom,
                                 sched_stack_size);
#else
  (void)finished;
#endif
#ifdef WK_EMU_ASM_SWITCH
  wk_emu_switch(&f.sp, sched_sp);
#else
  if (swapcontext(&f.ctx, &sched_ctx) != 0) emu_die("swapcontext failed in %s", kernel_name);
#endif
#ifdef WK_EMU_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, nullptr, nullptr);
#endif
}

/* Where every fiber starts: one kernel thread, then back for good. */
extern "C" [[noreturn]] void wk_emu_fiber_main(void) {
#ifdef WK_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &sched_stack_bottom, &sched_stack_size);
#endif
  body_fn(body_ctx);
  fibers[(size_t)current].state = kDone;
  switch_to_scheduler(true);
  emu_die("a finished thread of %s was resumed", kernel_name);
}

#ifndef WK_EMU_ASM_SWITCH
void fiber_entry_ucontext(void) { wk_emu_fiber_main(); }
#endif

void fiber_stacks(size_t n) {
  while (fibers.size() < n) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) emu_die("cannot map a thread stack (%s)", strerror(errno));
    if (mprotect(m, page, PROT_NONE) != 0) emu_die("mprotect: %s", strerror(errno));
    Fiber f;
    f.stack = static_cast<unsigned char *>(m) + page;
    fibers.push_back(f);
  }
}

/* Fiber i, fresh: its first switch_to_fiber enters wk_emu_fiber_main. */
void fiber_prepare(int i, uint3 tid) {
  Fiber &f = fibers[(size_t)i];
  f.tid = tid;
  f.state = kReady;
  f.fake_stack = nullptr;
#ifdef WK_EMU_ASM_SWITCH
  /* From the top: a zero (the return address of wk_emu_fiber_main, which
   * never returns), the entry point that wk_emu_switch's ret takes, six
   * zeroed registers. After the ret, rsp is 8 below a 16-byte boundary, as on
   * entry to any function. */
  uintptr_t top = ((uintptr_t)(f.stack + kStackBytes)) & ~(uintptr_t)15;
  void **sp = reinterpret_cast<void **>(top);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void *>(&wk_emu_fiber_main);
  for (int r = 0; r < 6; r++) *--sp = nullptr;
  f.sp = sp;
#else
  if (getcontext(&f.ctx) != 0) emu_die("getcontext failed in %s", kernel_name);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, fiber_entry_ucontext, 0);
#endif
}

uint3 thread_of(unsigned t, dim3 block) {
  return uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
}

/* One block's threads as fibers, barrier by barrier. */
void run_block_fibers(unsigned n_threads, dim3 block) {
  fiber_stacks(n_threads);
  std::vector<int> order(n_threads);
  for (unsigned t = 0; t < n_threads; t++) {
    fiber_prepare((int)t, thread_of(t, block));
    order[t] = (int)t;
  }
  for (;;) {
    for (unsigned t = n_threads; t > 1; t--) { /* Fisher-Yates */
      const unsigned j = (unsigned)(next_random() % t);
      const int tmp = order[t - 1];
      order[t - 1] = order[j];
      order[j] = tmp;
    }
    unsigned done = 0;
    for (int i : order) {
      if (fibers[(size_t)i].state != kReady) continue;
      switch_to_fiber(i);
    }
    for (unsigned t = 0; t < n_threads; t++) {
      if (fibers[t].state == kDone) done++;
    }
    if (done == n_threads) return;
    if (done > 0)
      emu_die("%s: some threads of a block returned while others wait at __syncthreads() "
              "(a barrier not every thread reaches)", kernel_name);
    for (unsigned t = 0; t < n_threads; t++) fibers[t].state = kReady;
  }
}

}  // namespace

namespace wk_emu {

void syncthreads() {
  if (serial)
    emu_die("%s reached __syncthreads() in a later block but not in the first one run (the "
            "emulator runs a kernel's blocks as plain calls when that one met no barrier)",
            kernel_name);
  if (current < 0) emu_die("__syncthreads() outside a kernel (%s)", kernel_name);
  saw_barrier = true;
  fibers[(size_t)current].state = kAtBarrier;
  switch_to_scheduler(false);
}

void *dyn_shared() { return dyn_shared_mem; }

/* Called once per array (a function-local static's initialiser), by the
 * first thread to reach its declaration, before any thread can write it. */
bool shared_region(void *p, size_t n_bytes) {
  shared_regions.push_back(Region{p, n_bytes, kernel_name});
  memset(p, 0xff, n_bytes);
  return true;
}

/* Whether the launch configuration is one the device accepts; if not, says
 * so and records cudaErrorInvalidConfiguration for cudaGetLastError. */
static bool launch_ok(const char *kernel, dim3 grid, dim3 block, size_t shmem) {
  const uint64_t n_threads = (uint64_t)block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
      block.z > 64 || n_threads > (uint64_t)kMaxThreads || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 ||
      shmem > 48 * 1024) {
    fprintf(stderr, "kernel emulator: %s: invalid launch: grid %u x %u x %u, block %u x %u x %u, "
            "%zu bytes of shared memory\n", kernel, grid.x, grid.y, grid.z, block.x, block.y,
            block.z, shmem);
#ifdef WK_EMU_FULL
    wk_fake_set_last_error(cudaErrorInvalidConfiguration);
#else
    last_error = cudaErrorInvalidConfiguration;
#endif
    return false;
  }
  return true;
}

#ifdef WK_EMU_FULL
/* A launch as the fake runtime records it: the header, then the arguments. */
struct Job {
  const char *kernel;
  dim3 grid, block;
  size_t shmem;
  void (*body)(void *);
};
static const size_t kJobArgs = (sizeof(Job) + 15) & ~(size_t)15;

static void job_run(void *p) {
  const Job *j = static_cast<const Job *>(p);
  run(j->kernel, j->grid, j->block, j->shmem, j->body, static_cast<char *>(p) + kJobArgs);
}
#endif

void run_on(cudaStream_t stream, const char *kernel, dim3 grid, dim3 block, size_t shmem,
            void (*body)(void *), void *ctx, size_t ctx_bytes) {
#ifdef WK_EMU_FULL
  if (!launch_ok(kernel, grid, block, shmem)) return;
  char *buf = static_cast<char *>(malloc(kJobArgs + ctx_bytes));
  if (!buf) emu_die("out of memory launching %s", kernel);
  *reinterpret_cast<Job *>(buf) = Job{kernel, grid, block, shmem, body};
  memcpy(buf + kJobArgs, ctx, ctx_bytes);
  const cudaError_t e = wk_fake_enqueue(stream, job_run, buf, kJobArgs + ctx_bytes);
  free(buf);
  if (e != cudaSuccess) wk_fake_set_last_error(e);
#else
  (void)stream;
  (void)ctx_bytes;
  run(kernel, grid, block, shmem, body, ctx);
#endif
}

void run(const char *kernel, dim3 grid, dim3 block, size_t shmem, void (*body)(void *),
         void *ctx) {
  const uint64_t n_threads = (uint64_t)block.x * block.y * block.z;
  if (!launch_ok(kernel, grid, block, shmem)) return;
  if (current >= 0) emu_die("%s launched from inside a kernel", kernel);
  kernel_name = kernel;
  body_fn = body;
  body_ctx = ctx;
  gridDim = grid;
  blockDim = block;
  dyn_shared_bytes = shmem;
  dyn_shared_mem = shmem ? malloc(shmem) : nullptr;
  if (shmem && !dyn_shared_mem) emu_die("out of memory for the shared memory of %s", kernel);
  /* the blocks in the order b = (a i + c) mod n_blocks, a coprime to n_blocks */
  const uint64_t n_blocks = (uint64_t)grid.x * grid.y * grid.z;
  uint64_t a = 1 + next_random() % n_blocks;
  while (std::gcd(a, n_blocks) != 1) a = a % n_blocks + 1;
  const uint64_t c = next_random() % n_blocks;
  bool barriers = true;
  for (uint64_t i = 0; i < n_blocks; i++) {
    const uint64_t b = (unsigned __int128)a * i % n_blocks + c;
    const uint64_t lin = b >= n_blocks ? b - n_blocks : b;
    blockIdx = uint3{(unsigned)(lin % grid.x), (unsigned)(lin / grid.x % grid.y),
                     (unsigned)(lin / ((uint64_t)grid.x * grid.y))};
    poison_shared();
    if (i == 0 || barriers) {
      saw_barrier = false;
      serial = false;
      run_block_fibers((unsigned)n_threads, block);
      if (i == 0) barriers = saw_barrier;
      continue;
    }
    serial = true;
    for (unsigned t = 0; t < n_threads; t++) {
      threadIdx = thread_of(t, block);
      body(ctx);
    }
    serial = false;
  }
  free(dyn_shared_mem);
  dyn_shared_mem = nullptr;
  dyn_shared_bytes = 0;
}

}  // namespace wk_emu

#ifndef WK_EMU_FULL /* the fake runtime's (tests/emu/fake/fake_cudart.c) */
/* ------------------------------------------------------------------ the runtime */

extern "C" cudaError_t cudaGetLastError(void) {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

extern "C" cudaError_t cudaPeekAtLastError(void) { return last_error; }

extern "C" const char *cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
  }
  return "unrecognized error code";
}

extern "C" cudaError_t cudaMemsetAsync(void *dev, int value, size_t n_bytes, cudaStream_t) {
  if (n_bytes && !dev) return last_error = cudaErrorInvalidValue;
  if (n_bytes) memset(dev, value, n_bytes);
  return cudaSuccess;
}

/* ------------------------------------------------------------------ device memory
 * cuda_backend.h's buffer calls, as the emulated tests use them. */

extern "C" wk_status wk_cuda_malloc(void **dptr, size_t n_bytes) {
  if (!dptr) return wk_fail(WK_ERR_INVALID_ARG, "wk_cuda_malloc: no pointer");
  *dptr = nullptr;
  if (n_bytes == 0) return WK_OK;
  void *p = malloc(n_bytes);
  if (!p) return wk_fail(WK_ERR_NOMEM, "out of device memory (emulated: %zu bytes)", n_bytes);
  const char *poison = getenv("WHISKER_GPU_POISON");
  memset(p, poison && strcmp(poison, "1") == 0 ? 0xff : 0, n_bytes);
  *dptr = p;
  return WK_OK;
}

extern "C" wk_status wk_cuda_free(void *dptr) {
  free(dptr);
  return WK_OK;
}

extern "C" wk_status wk_cuda_copy_h2d(void *dst, const void *src, size_t n_bytes) {
  if (n_bytes && (!dst || !src)) return wk_fail(WK_ERR_INVALID_ARG, "wk_cuda_copy_h2d: NULL");
  if (n_bytes) memcpy(dst, src, n_bytes);
  return WK_OK;
}

extern "C" wk_status wk_cuda_copy_d2h(void *dst, const void *src, size_t n_bytes) {
  if (n_bytes && (!dst || !src)) return wk_fail(WK_ERR_INVALID_ARG, "wk_cuda_copy_d2h: NULL");
  if (n_bytes) memcpy(dst, src, n_bytes);
  return WK_OK;
}

/* Work runs when launched: nothing is pending. (A launch's configuration
 * error is not sticky and reaches the caller through cudaGetLastError, as on
 * a device.) */
extern "C" wk_status wk_cuda_sync(void) { return WK_OK; }
#endif
