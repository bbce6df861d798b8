/* test_fake_lazy.c - the fake runtime's lazy streams ($WK_FAKE_LAZY=1,
 * fake_cudart.c) defer work as CUDA's ordering allows, and the eager default
 * does not: were lazy mode to run work at once, the emulated suites that run
 * with it would stop showing a missing stream dependency, and this fails.
 * Each case prints what it saw. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void expect(const char *what, unsigned got, unsigned want) {
  printf("%-58s %08x (want %08x)\n", what, got, want);
  if (got != want) failures++;
}

static void ok(cudaError_t e, const char *call) {
  if (e != cudaSuccess && e != cudaErrorNotReady) {
    printf("%s: %s\n", call, cudaGetErrorName(e));
    exit(1);
  }
}

static unsigned read_back(const unsigned *d) { /* synchronous: the legacy stream */
  unsigned h = 0;
  ok(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy");
  return h;
}

int main(void) {
  const char *e = getenv("WK_FAKE_LAZY");
  const int lazy = e && strcmp(e, "1") == 0;
  const unsigned fill = 0xffffffffu, ones = 0x01010101u, twos = 0x02020202u;
  cudaStream_t s, s2, blocking;
  cudaEvent_t ev;
  unsigned *d, *d2, h = 0;
  ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  ok(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  ok(cudaStreamCreateWithFlags(&blocking, cudaStreamDefault), "cudaStreamCreateWithFlags");
  ok(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  ok(cudaMalloc((void **)&d, sizeof *d), "cudaMalloc");
  ok(cudaMalloc((void **)&d2, sizeof *d2), "cudaMalloc");

  /* a non-blocking stream's work is not waited for by the legacy stream */
  ok(cudaMemsetAsync(d, 1, sizeof *d, s), "cudaMemsetAsync");
  expect("non-blocking stream, read on the legacy stream", read_back(d), lazy ? fill : ones);
  /* an event orders a second stream after it, and after no more than it */
  ok(cudaEventRecord(ev, s), "cudaEventRecord");
  unsigned *d3;
  ok(cudaMalloc((void **)&d3, sizeof *d3), "cudaMalloc");
  ok(cudaMemsetAsync(d3, 2, sizeof *d3, s), "cudaMemsetAsync"); /* after the event */
  ok(cudaStreamWaitEvent(s2, ev, 0), "cudaStreamWaitEvent");
  ok(cudaMemcpyAsync(d2, d, sizeof *d, cudaMemcpyDeviceToDevice, s2), "cudaMemcpyAsync");
  /* a copy to pageable memory returns done, after its stream's earlier work */
  ok(cudaMemcpyAsync(&h, d2, sizeof h, cudaMemcpyDeviceToHost, s2), "cudaMemcpyAsync");
  expect("through the event, to pageable memory", h, ones);
  expect("work issued after the event, not waited for", read_back(d3), lazy ? fill : twos);
  ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  expect("after cudaDeviceSynchronize", read_back(d3), twos);
  /* a query of a stream with work queued says not ready, the work still
   * queued; polling until ready gets it done */
  ok(cudaMemsetAsync(d, 2, sizeof *d, s), "cudaMemsetAsync");
  const cudaError_t q = cudaStreamQuery(s);
  (void)cudaGetLastError();
  expect("cudaStreamQuery with work queued", (unsigned)q,
         (unsigned)(lazy ? cudaErrorNotReady : cudaSuccess));
  expect("read after a 'not ready'", read_back(d), lazy ? ones : twos);
  int polls = 1;
  while (cudaStreamQuery(s) == cudaErrorNotReady && polls < 10) polls++;
  (void)cudaGetLastError();
  expect("polled until ready", read_back(d), twos);
  /* an event recorded on the legacy stream follows blocking streams' work */
  ok(cudaMemsetAsync(d3, 1, sizeof *d3, blocking), "cudaMemsetAsync");
  ok(cudaEventRecord(ev, NULL), "cudaEventRecord");
  ok(cudaStreamWaitEvent(s2, ev, 0), "cudaStreamWaitEvent");
  ok(cudaMemcpyAsync(&h, d3, sizeof h, cudaMemcpyDeviceToHost, s2), "cudaMemcpyAsync");
  expect("through an event on the legacy stream", h, ones);
  /* cudaFree synchronises the device */
  ok(cudaMemsetAsync(d3, 2, sizeof *d3, s), "cudaMemsetAsync");
  unsigned *spare;
  ok(cudaMalloc((void **)&spare, sizeof *spare), "cudaMalloc");
  ok(cudaFree(spare), "cudaFree");
  expect("after cudaFree", read_back(d3), twos);
  /* a blocking stream's work is waited for by the legacy stream */
  ok(cudaMemsetAsync(d, 1, sizeof *d, blocking), "cudaMemsetAsync");
  expect("blocking stream, read on the legacy stream", read_back(d), ones);
  /* a copy from pageable memory takes its source when issued */
  unsigned src = twos;
  ok(cudaMemcpyAsync(d2, &src, sizeof src, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  src = 0;
  ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  expect("from pageable memory, changed after the call", read_back(d2), twos);
  /* from pinned memory it reads the source when it runs; an event's
   * synchronisation runs its stream up to it */
  unsigned *pinned;
  ok(cudaHostAlloc((void **)&pinned, sizeof *pinned, cudaHostAllocDefault), "cudaHostAlloc");
  ok(cudaMemset(d2, 0, sizeof *d2), "cudaMemset");
  *pinned = ones;
  ok(cudaMemcpyAsync(d2, pinned, sizeof *pinned, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync");
  *pinned = twos;
  ok(cudaEventRecord(ev, s), "cudaEventRecord");
  expect("from pinned memory, before the event's synchronisation", read_back(d2),
         lazy ? 0u : ones);
  ok(cudaEventSynchronize(ev), "cudaEventSynchronize");
  expect("from pinned memory, changed after the call", read_back(d2), lazy ? twos : ones);
  /* timing events: no time before both are recorded, none before the work
   * ahead of them has run (a lazy stream has not run it), a time of zero or
   * more after; recorded again, the event is not complete until the new
   * record's work has run; an event made without timing has none */
  cudaEvent_t t0, t1;
  float ms = -1.0f;
  ok(cudaEventCreateWithFlags(&t0, cudaEventDefault), "cudaEventCreateWithFlags");
  ok(cudaEventCreateWithFlags(&t1, cudaEventDefault), "cudaEventCreateWithFlags");
  expect("elapsed time, events never recorded", (unsigned)cudaEventElapsedTime(&ms, t0, t1),
         (unsigned)cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
  ok(cudaEventRecord(t0, s), "cudaEventRecord");
  ok(cudaMemsetAsync(d2, 1, sizeof *d2, s), "cudaMemsetAsync");
  ok(cudaEventRecord(t1, s), "cudaEventRecord");
  expect("elapsed time, work queued", (unsigned)cudaEventElapsedTime(&ms, t0, t1),
         (unsigned)(lazy ? cudaErrorNotReady : cudaSuccess));
  (void)cudaGetLastError();
  ok(cudaEventSynchronize(t1), "cudaEventSynchronize");
  ms = -1.0f;
  expect("elapsed time, after the work", (unsigned)cudaEventElapsedTime(&ms, t0, t1),
         (unsigned)cudaSuccess);
  expect("elapsed time is zero or more", ms >= 0.0f, 1);
  ok(cudaMemsetAsync(d2, 2, sizeof *d2, s), "cudaMemsetAsync");
  ok(cudaEventRecord(t1, s), "cudaEventRecord");
  expect("elapsed time, recorded again, work queued", (unsigned)cudaEventElapsedTime(&ms, t0, t1),
         (unsigned)(lazy ? cudaErrorNotReady : cudaSuccess));
  (void)cudaGetLastError();
  ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  expect("elapsed time, recorded again, after the work", (unsigned)cudaEventElapsedTime(&ms, t0, t1),
         (unsigned)cudaSuccess);
  expect("elapsed time, an event without timing", (unsigned)cudaEventElapsedTime(&ms, ev, t1),
         (unsigned)cudaErrorInvalidResourceHandle);
  (void)cudaGetLastError();
  ok(cudaEventRecord(t0, s), "cudaEventRecord");
  ok(cudaEventDestroy(t0), "cudaEventDestroy"); /* its stamp still queued (lazy) */
  ok(cudaEventDestroy(t1), "cudaEventDestroy");
  /* a destroyed stream's queued work still runs */
  ok(cudaMemsetAsync(d3, 1, sizeof *d3, s), "cudaMemsetAsync");
  ok(cudaStreamDestroy(s), "cudaStreamDestroy");
  expect("after destroying the stream", read_back(d3), ones);
  ok(cudaFree(d3), "cudaFree");
  ok(cudaFreeHost(pinned), "cudaFreeHost");
  ok(cudaFree(d), "cudaFree");
  ok(cudaFree(d2), "cudaFree");
  printf("test_fake_lazy (%s): %s\n", lazy ? "lazy" : "eager", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
