/* fake_cudart.c - the CUDA runtime calls of the GPU backend, on the host, and
 * fake.h's shared services (see fake.h).
 *
 * - One device (WK_FAKE_DEVICES=N for more), compute capability 9.0, 80 GiB
 *   (WK_FAKE_DEVICE_MB caps it lower: cudaMalloc past the cap fails with
 *   cudaErrorMemoryAllocation, as on a full device).
 * - cudaMalloc is malloc (aligned to 256 bytes), filled with 0xff bytes (NaN as float, as garbage
 *   would be), each allocation recorded so that the libraries' fakes can check
 *   that a pointer and extent lie inside one (wk_fake_check_device); freeing a
 *   pointer that is not a live allocation dies.
 * - Streams run their work when it is issued; synchronising is a no-op, events
 *   complete when recorded. With $WK_FAKE_LAZY=1 they run it as late as
 *   CUDA's ordering allows instead ("lazy streams" below). A stream capturing a graph records its work
 *   (wk_fake_enqueue) instead; a stream that waits on an event recorded in a
 *   capture joins that capture, as in CUDA, and its work is recorded too, in
 *   issue order (one valid order of the captured graph). cudaGraphLaunch runs
 *   the recording. While a capture is under way (global or thread-local
 *   mode), calls CUDA forbids then (cudaMalloc, cudaFree, synchronous copies
 *   and memsets, synchronising a capturing stream or the device, querying a
 *   capturing stream) fail with cudaErrorStreamCaptureUnsupported and
 *   invalidate the capture (cudaStreamEndCapture then fails with
 *   cudaErrorStreamCaptureInvalidated), as the documentation describes.
 * - cudaGetLastError also reports the kernel emulator's launch errors.
 * - $WK_FAKE_GRAPH_LAUNCH_FAIL=N fails one cudaGraphLaunch (see there). */
#define _GNU_SOURCE /* dladdr: $WK_FAKE_TRACE_WAITS */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake.h"

/* ------------------------------------------------------------------ services */

void wk_fake_die(const char *lib, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fake %s: ", lib);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

static uint16_t wk_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
  if (abs < 0x33000001u) return (uint16_t)sign;             /* below half the smallest subnormal */
  const int e = (int)(abs >> 23) - 127;
  uint32_t m = (abs & 0x7fffffu) | 0x800000u;
  if (e < -14) { /* subnormal half: m >> (-e - 14 + 13) with round to nearest even */
    const int shift = -e - 14 + 13;
    const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    const uint32_t r = q + (rem > halfway || (rem == halfway && (q & 1)));
    return (uint16_t)(sign | r);
  }
  uint32_t h = ((uint32_t)(e + 15) << 10) | ((m >> 13) & 0x3ffu);
  const uint32_t rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent */
  return (uint16_t)(sign | h);
}

static float wk_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
  if (e == 0x1f) {
    x = sign | 0x7f800000u | (m << 13);
  } else if (e == 0) {
    if (m == 0) {
      x = sign;
    } else {
      int s = -1;
      do {
        s++;
        m <<= 1;
      } while (!(m & 0x400u));
      x = sign | ((uint32_t)(127 - 15 - s) << 23) | ((m & 0x3ffu) << 13);
    }
  } else {
    x = sign | ((e + 127 - 15) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &x, 4);
  return f;
}

static uint16_t wk_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

size_t wk_fake_dtype_size(wk_fake_dtype t) {
  switch (t) {
    case WK_FAKE_F32: return 4;
    case WK_FAKE_F16:
    case WK_FAKE_BF16: return 2;
    case WK_FAKE_F64: return 8;
  }
  return 0;
}

double wk_fake_load(const void *p, wk_fake_dtype t, size_t i) {
  switch (t) {
    case WK_FAKE_F32: return ((const float *)p)[i];
    case WK_FAKE_F64: return ((const double *)p)[i];
    case WK_FAKE_F16: return wk_f16_to_f32(((const uint16_t *)p)[i]);
    case WK_FAKE_BF16: {
      const uint32_t x = (uint32_t)((const uint16_t *)p)[i] << 16;
      float f;
      memcpy(&f, &x, 4);
      return f;
    }
  }
  return 0;
}

void wk_fake_store(void *p, wk_fake_dtype t, size_t i, double v) {
  switch (t) {
    case WK_FAKE_F32: ((float *)p)[i] = (float)v; return;
    case WK_FAKE_F64: ((double *)p)[i] = v; return;
    case WK_FAKE_F16: ((uint16_t *)p)[i] = wk_f32_to_f16((float)v); return;
    case WK_FAKE_BF16: ((uint16_t *)p)[i] = wk_f32_to_bf16((float)v); return;
  }
}

/* ------------------------------------------------------------------ state */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct wk_alloc {
  char *p;
  size_t n;
} wk_alloc;
static wk_alloc *g_allocs;
static size_t g_n_allocs, g_cap_allocs, g_allocated;

typedef struct wk_op {
  wk_fake_fn fn;
  void *ctx;
  struct wk_op *next;
} wk_op;

/* A capture under way, or a captured graph. */
struct CUgraph_st {
  wk_op *head, *tail;
  int invalidated;
  int relaxed;                  /* cudaStreamCaptureModeRelaxed */
  struct CUstream_st *joined[16]; /* streams that joined through an event */
  int n_joined;
};
struct CUgraphExec_st {
  struct CUgraph_st g; /* its own copy of the recording */
};
struct CUstream_st {
  struct CUgraph_st *capture; /* the capture this stream records into, or NULL */
  int origin;                 /* this stream began it */
  /* lazy streams ($WK_FAKE_LAZY=1): the work issued and not yet run, how
   * much has been issued and run, and whether the stream was created
   * non-blocking (else it synchronises with the legacy stream) */
  wk_op *q_head, *q_tail;
  uint64_t issued, done;
  int non_blocking, dead;
  int queried; /* cudaStreamQuery answered "not ready" without running the work */
  struct CUstream_st *next_all; /* every stream ever made (g_streams) */
};
struct CUevent_st {
  struct CUgraph_st *capture; /* recorded during this capture */
  struct CUstream_st *stream; /* lazy streams: recorded on this stream (NULL: legacy) */
  uint64_t pos;               /* ... after its first pos operations */
  int queried;                /* cudaEventQuery answered "not ready" without running the work */
  /* timing (created without cudaEventDisableTiming): the host's clock when the
   * work before the last record had run (a lazy stream stamps it as queued
   * work, wk_stamp_run), `records` its records so far, `stamped` the record
   * that set at_ms (a record whose stamp has not run yet is not complete) */
  int timing;
  uint64_t records, stamped;
  double at_ms;
};

static int g_device;
static int g_strict_captures; /* captures under way in global or thread-local mode */
/* Every capture under way (for invalidation and for events recorded in one). */
static struct CUgraph_st *g_live[16];
static int g_n_live;

static int wk_live(const struct CUgraph_st *g) {
  for (int i = 0; i < g_n_live; i++)
    if (g_live[i] == g) return 1;
  return 0;
}
static __thread cudaError_t g_last_error = cudaSuccess;

void wk_fake_set_last_error(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
}

static cudaError_t wk_fail_rt(cudaError_t e) {
  g_last_error = e;
  return e;
}

static int wk_n_devices(void) {
  const char *s = getenv("WK_FAKE_DEVICES");
  return s ? atoi(s) : 1;
}

static size_t wk_device_bytes(void) {
  const char *s = getenv("WK_FAKE_DEVICE_MB");
  return s ? (size_t)atoll(s) << 20 : (size_t)80 << 30;
}

/* Whether a call CUDA calls "potentially unsafe" is forbidden now: while a
 * capture in global or thread-local mode is under way (the backend captures
 * from one thread). */
static int wk_capture_forbids(void) { return g_strict_captures > 0; }

/* A forbidden call fails and invalidates the captures under way that forbid
 * it (their cudaStreamEndCapture then fails), as CUDA documents. */
static cudaError_t wk_forbidden(void) {
  for (int i = 0; i < g_n_live; i++)
    if (!g_live[i]->relaxed) g_live[i]->invalidated = 1;
  return wk_fail_rt(cudaErrorStreamCaptureUnsupported);
}

/* ------------------------------------------------------------------ counters
 * fake.h's wk_fake_stats. g_ran counts the queued pieces of computation
 * (kernels, library calls, graph launches; not copies, memsets or waits)
 * lazy streams have run: a host wait that moved it found computation still
 * queued. */
static wk_fake_stats_t g_stats;
static long long g_ran;

#define WK_COUNT(field) __atomic_fetch_add(&g_stats.field, 1, __ATOMIC_RELAXED)

static long long wk_ran(void) { return __atomic_load_n(&g_ran, __ATOMIC_RELAXED); }

static int wk_lazy(void);
static struct CUstream_st *g_streams;
static pthread_mutex_t g_q;

/* A host wait ends: `ran_before` is wk_ran() from before it forced the work,
 * `s` the stream it waited on (NULL: the device, every stream). A stall if it
 * ran queued work; a drain if that left s (every stream) with none queued.
 * $WK_FAKE_TRACE_WAITS=1 prints each wait with its caller, as an offset into
 * its library (addr2line -f -e LIB OFFSET names the function). */
#define wk_waited(ran_before, s) wk_waited_at(ran_before, s, __func__, __builtin_return_address(0))
static void wk_waited_at(long long ran_before, const struct CUstream_st *s, const char *fn,
                         void *caller) {
  WK_COUNT(host_waits);
  const int stall = wk_ran() != ran_before;
  int drain = 0;
  if (stall) {
    WK_COUNT(stalls);
    drain = 1;
    pthread_mutex_lock(&g_q);
    for (const struct CUstream_st *t = g_streams; t; t = t->next_all)
      if ((!s || t == s) && t->done < t->issued) drain = 0;
    pthread_mutex_unlock(&g_q);
    if (drain) WK_COUNT(drains);
  }
  const char *trace = getenv("WK_FAKE_TRACE_WAITS");
  if (trace && strcmp(trace, "1") == 0) {
    Dl_info di;
    if (dladdr(caller, &di) && di.dli_fname)
      fprintf(stderr, "fake CUDA runtime: host wait in %s from %s+%#lx%s\n", fn, di.dli_fname,
              (unsigned long)((char *)caller - (char *)di.dli_fbase - 1),
              drain ? " (stall, drain)" : stall ? " (stall)" : "");
  }
}

void wk_fake_stats(wk_fake_stats_t *out) {
  if (!out) return;
  *out = (wk_fake_stats_t){0};
  out->work = __atomic_load_n(&g_stats.work, __ATOMIC_RELAXED);
  out->graph_launches = __atomic_load_n(&g_stats.graph_launches, __ATOMIC_RELAXED);
  out->allocs = __atomic_load_n(&g_stats.allocs, __ATOMIC_RELAXED);
  out->host_allocs = __atomic_load_n(&g_stats.host_allocs, __ATOMIC_RELAXED);
  out->frees = __atomic_load_n(&g_stats.frees, __ATOMIC_RELAXED);
  out->host_waits = __atomic_load_n(&g_stats.host_waits, __ATOMIC_RELAXED);
  out->stalls = __atomic_load_n(&g_stats.stalls, __ATOMIC_RELAXED);
  out->drains = __atomic_load_n(&g_stats.drains, __ATOMIC_RELAXED);
  out->lazy = wk_lazy();
}

/* ------------------------------------------------------------------ lazy streams
 * With $WK_FAKE_LAZY=1 a stream's work does not run when it is issued: it
 * waits in the stream's queue until something forces it, in issue order:
 * cudaStreamSynchronize or cudaStreamQuery of the stream, cudaEventSynchronize,
 * cudaEventQuery or a cudaStreamWaitEvent's work on an event recorded after it,
 * cudaDeviceSynchronize, cudaFree and cudaFreeHost (which synchronise the
 * device), destroying the stream, and the legacy stream: work issued there
 * (synchronous copies and memsets included) runs at once, after the work of
 * every blocking stream (created without cudaStreamNonBlocking), as CUDA's
 * legacy stream waits for them; non-blocking streams' work stays queued. So
 * every piece of work runs as late as CUDA's ordering allows, and work whose
 * ordering the program forgot (a copy read before its stream was
 * synchronised, a buffer reused while another stream's queued work still
 * reads it, a stream that should have waited on an event) sees the data of
 * the wrong moment, where the eager default hides it. Queues are guarded by
 * one recursive lock; running work holds it. Earlier than CUDA needs (so
 * these orders are not checked): work on the legacy stream runs at once
 * (cudaMemset and device-to-device cudaMemcpy included, which CUDA lets run
 * after the call returns); destroying a stream or a graph exec runs the
 * queued work first. A blocking NCCL collective (fake_nccl.c), which waits
 * for its peers inside its work, would wait while its peer's stream is not
 * forced yet: lazy mode suits non-blocking communicators (the backend's). */
static pthread_once_t g_q_once = PTHREAD_ONCE_INIT;
static int g_lazy = -1;

static void wk_q_init(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&g_q, &a);
  pthread_mutexattr_destroy(&a);
  const char *e = getenv("WK_FAKE_LAZY");
  g_lazy = e && strcmp(e, "1") == 0;
}

static int wk_lazy(void) {
  pthread_once(&g_q_once, wk_q_init);
  return g_lazy;
}

static int wk_is_compute(wk_fake_fn fn);

/* Runs stream s's queued work up to its first `upto` operations. */
static void wk_flush(struct CUstream_st *s, uint64_t upto) {
  pthread_mutex_lock(&g_q);
  while (s->done < upto && s->q_head) {
    wk_op *op = s->q_head;
    const int compute = wk_is_compute(op->fn);
    s->q_head = op->next;
    if (!s->q_head) s->q_tail = NULL;
    op->fn(op->ctx);
    free(op->ctx);
    free(op);
    s->done++;
    if (compute) __atomic_fetch_add(&g_ran, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&g_q);
}

static void wk_flush_all(int blocking_only) {
  if (!wk_lazy()) return;
  pthread_mutex_lock(&g_q);
  for (struct CUstream_st *s = g_streams; s; s = s->next_all)
    if (!blocking_only || !s->non_blocking) wk_flush(s, s->issued);
  pthread_mutex_unlock(&g_q);
}

/* A destroyed stream used again: lazy mode keeps its struct (queued waits may
 * name it), so this is caught here rather than as a use after free. */
static void wk_alive(cudaStream_t stream, const char *fn) {
  if (stream && stream->dead) wk_fake_die("CUDA runtime", "%s: a destroyed stream", fn);
}

void wk_fake_flush(cudaStream_t stream) {
  if (!wk_lazy()) return;
  if (!stream) {
    wk_flush_all(1);
    return;
  }
  pthread_mutex_lock(&g_q);
  wk_flush(stream, stream->issued);
  pthread_mutex_unlock(&g_q);
}

/* A cudaStreamWaitEvent's work: the event's stream runs up to the event. */
typedef struct wk_wait_job {
  struct CUstream_st *stream;
  uint64_t pos;
} wk_wait_job;

static void wk_wait_run(void *ctx) {
  const wk_wait_job *j = ctx;
  wk_flush(j->stream, j->pos);
}

static void wk_free_ops(wk_op *op) {
  while (op) {
    wk_op *next = op->next;
    free(op->ctx);
    free(op);
    op = next;
  }
}

/* ------------------------------------------------------------------ enqueue */

static void wk_graph_run(void *ctx); /* a cudaGraphLaunch's work (graphs below) */

typedef struct wk_rec {
  wk_op op;
  size_t bytes;
} wk_rec;

static void wk_copy_run(void *ctx);
static void wk_staged_run(void *ctx);
static void wk_set_run(void *ctx);

/* Whether a piece of work computes (a kernel, a library call's work, a graph
 * launch), as opposed to moving or setting bytes or waiting. */
static void wk_stamp_run(void *ctx);

static int wk_is_compute(wk_fake_fn fn) {
  return fn != wk_copy_run && fn != wk_staged_run && fn != wk_set_run && fn != wk_wait_run &&
         fn != wk_stamp_run;
}

cudaError_t wk_fake_enqueue(cudaStream_t stream, wk_fake_fn fn, const void *ctx, size_t ctx_bytes) {
  void *copy = malloc(ctx_bytes ? ctx_bytes : 1);
  if (!copy) wk_fake_die("CUDA runtime", "out of host memory");
  if (ctx_bytes) memcpy(copy, ctx, ctx_bytes);
  wk_alive(stream, "work issued");
  if ((!stream || !stream->capture) && fn != wk_wait_run && fn != wk_stamp_run) {
    WK_COUNT(work);
    if (fn == wk_graph_run) WK_COUNT(graph_launches);
  }
  if (wk_lazy() && stream && !stream->capture) { /* queued until forced */
    wk_op *op = malloc(sizeof *op);
    if (!op) wk_fake_die("CUDA runtime", "out of host memory");
    *op = (wk_op){fn, copy, NULL};
    pthread_mutex_lock(&g_q);
    if (stream->q_tail)
      stream->q_tail->next = op;
    else
      stream->q_head = op;
    stream->q_tail = op;
    stream->issued++;
    pthread_mutex_unlock(&g_q);
    return cudaSuccess;
  }
  if (wk_lazy() && !stream) wk_flush_all(1); /* the legacy stream waits for blocking streams */
  if (!stream || !stream->capture) {
    /* run now, on a copy as a recording would (work must not depend on the
     * caller's ctx staying alive) */
    fn(copy);
    free(copy);
    return cudaSuccess;
  }
  struct CUgraph_st *g = stream->capture;
  if (g->invalidated) {
    free(copy);
    return cudaErrorStreamCaptureInvalidated;
  }
  wk_rec *rec = malloc(sizeof *rec);
  if (!rec) wk_fake_die("CUDA runtime", "out of host memory recording a graph");
  rec->op = (wk_op){fn, copy, NULL};
  rec->bytes = ctx_bytes;
  if (g->tail)
    g->tail->next = &rec->op;
  else
    g->head = &rec->op;
  g->tail = &rec->op;
  return cudaSuccess;
}

int wk_fake_capturing(cudaStream_t stream) { return stream && stream->capture != NULL; }

/* ------------------------------------------------------------------ memory */

void wk_fake_check_device(const void *p, size_t n_bytes, const char *what) {
  if (n_bytes == 0) return;
  if (!p) wk_fake_die("check", "%s: NULL device pointer for %zu bytes", what, n_bytes);
  const char *c = p;
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < g_n_allocs; i++) {
    const wk_alloc *a = &g_allocs[i];
    if (c >= a->p && c < a->p + a->n) {
      const size_t off = (size_t)(c - a->p), size = a->n;
      pthread_mutex_unlock(&g_lock);
      if (n_bytes > size - off)
        wk_fake_die("check", "%s: %zu bytes at offset %zu of a %zu-byte device allocation "
                    "(%zu past its end)", what, n_bytes, off, size, n_bytes - (size - off));
      return;
    }
  }
  pthread_mutex_unlock(&g_lock);
  wk_fake_die("check", "%s: %p (%zu bytes) is not device memory", what, p, n_bytes);
}

cudaError_t cudaMalloc(void **dev, size_t size) {
  if (!dev) return wk_fail_rt(cudaErrorInvalidValue);
  *dev = NULL;
  if (wk_capture_forbids()) return wk_forbidden();
  if (size == 0) return cudaSuccess;
  pthread_mutex_lock(&g_lock);
  if (size > wk_device_bytes() - g_allocated || g_allocated > wk_device_bytes()) {
    pthread_mutex_unlock(&g_lock);
    return wk_fail_rt(cudaErrorMemoryAllocation);
  }
  /* aligned as the device's (at least 256 bytes, which cuBLAS and cuDNN
   * expect of workspaces), the exact size (so ASan sees an access past it) */
  char *p = NULL;
  if (posix_memalign((void **)&p, 256, size) != 0) p = NULL;
  if (p && g_n_allocs == g_cap_allocs) {
    wk_alloc *grown = realloc(g_allocs, (g_cap_allocs * 2 + 64) * sizeof *g_allocs);
    if (grown) {
      g_allocs = grown;
      g_cap_allocs = g_cap_allocs * 2 + 64;
    } else {
      free(p);
      p = NULL;
    }
  }
  if (!p) {
    pthread_mutex_unlock(&g_lock);
    return wk_fail_rt(cudaErrorMemoryAllocation);
  }
  memset(p, 0xff, size);
  WK_COUNT(allocs);
  g_allocs[g_n_allocs++] = (wk_alloc){p, size};
  g_allocated += size;
  pthread_mutex_unlock(&g_lock);
  *dev = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void *dev) {
  if (!dev) return cudaSuccess;
  if (wk_capture_forbids()) return wk_forbidden();
  const long long ran = wk_ran();
  wk_flush_all(0); /* cudaFree synchronises the device */
  WK_COUNT(frees);
  wk_waited(ran, NULL);
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < g_n_allocs; i++)
    if (g_allocs[i].p == dev) {
      g_allocated -= g_allocs[i].n;
      g_allocs[i] = g_allocs[--g_n_allocs];
      pthread_mutex_unlock(&g_lock);
      free(dev);
      return cudaSuccess;
    }
  pthread_mutex_unlock(&g_lock);
  wk_fake_die("CUDA runtime", "cudaFree(%p): not a live device allocation", dev);
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
  if (!free_bytes || !total) return wk_fail_rt(cudaErrorInvalidValue);
  pthread_mutex_lock(&g_lock);
  *total = wk_device_bytes();
  *free_bytes = *total > g_allocated ? *total - g_allocated : 0;
  pthread_mutex_unlock(&g_lock);
  return cudaSuccess;
}

/* Pinned host memory (cudaHostAlloc): copies to and from it are
 * asynchronous; CUDA copies from pageable memory before an asynchronous
 * copy returns, and to pageable memory synchronously (lazy streams model
 * both). */
static wk_alloc *g_pinned;
static size_t g_n_pinned, g_cap_pinned;

static int wk_is_pinned(const void *p, size_t n) {
  const char *c = p;
  pthread_mutex_lock(&g_lock);
  int found = 0;
  for (size_t i = 0; i < g_n_pinned && !found; i++)
    found = c >= g_pinned[i].p && c < g_pinned[i].p + g_pinned[i].n &&
            n <= (size_t)(g_pinned[i].p + g_pinned[i].n - c);
  pthread_mutex_unlock(&g_lock);
  return found;
}

cudaError_t cudaHostAlloc(void **host, size_t size, unsigned int flags) {
  (void)flags;
  if (!host) return wk_fail_rt(cudaErrorInvalidValue);
  if (wk_capture_forbids()) return wk_forbidden();
  *host = malloc(size ? size : 1);
  if (!*host) return wk_fail_rt(cudaErrorMemoryAllocation);
  pthread_mutex_lock(&g_lock);
  if (g_n_pinned == g_cap_pinned) {
    wk_alloc *grown = realloc(g_pinned, (g_cap_pinned * 2 + 16) * sizeof *g_pinned);
    if (!grown) wk_fake_die("CUDA runtime", "out of host memory");
    g_pinned = grown;
    g_cap_pinned = g_cap_pinned * 2 + 16;
  }
  g_pinned[g_n_pinned++] = (wk_alloc){*host, size ? size : 1};
  pthread_mutex_unlock(&g_lock);
  WK_COUNT(host_allocs);
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void *host) {
  if (wk_capture_forbids()) return wk_forbidden();
  if (host) {
    const long long ran = wk_ran();
    wk_flush_all(0);
    WK_COUNT(frees);
    wk_waited(ran, NULL);
  }
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < g_n_pinned; i++)
    if (g_pinned[i].p == host) {
      g_pinned[i] = g_pinned[--g_n_pinned];
      break;
    }
  pthread_mutex_unlock(&g_lock);
  free(host);
  return cudaSuccess;
}

typedef struct wk_copy_job {
  void *dst;
  const void *src;
  size_t n;
  enum cudaMemcpyKind kind;
} wk_copy_job;

static void wk_check_copy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
  if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice)
    wk_fake_check_device(dst, n, "cudaMemcpy destination");
  if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice)
    wk_fake_check_device(src, n, "cudaMemcpy source");
}

/* checked again when it runs: a graph replays it later, perhaps after a free */
static void wk_copy_run(void *ctx) {
  const wk_copy_job *j = ctx;
  wk_check_copy(j->dst, j->src, j->n, j->kind);
  memmove(j->dst, j->src, j->n);
}

/* Lazy streams: a copy from pageable host memory, taken when issued. */
typedef struct wk_staged_job {
  void *dst;
  size_t n;
  unsigned char bytes[];
} wk_staged_job;

static void wk_staged_run(void *ctx) {
  const wk_staged_job *j = ctx;
  wk_fake_check_device(j->dst, j->n, "cudaMemcpy destination");
  memcpy(j->dst, j->bytes, j->n);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!dst || !src) return wk_fail_rt(cudaErrorInvalidValue);
  wk_check_copy(dst, src, count, kind);
  const wk_copy_job j = {dst, src, count, kind};
  /* to pageable memory: done when the call returns, after the stream's
   * earlier work (a host wait; cudaMemcpy counts its own) */
  const int to_pageable = stream && !stream->capture && kind == cudaMemcpyDeviceToHost &&
                          !wk_is_pinned(dst, count);
  if (to_pageable && !wk_lazy()) wk_waited(wk_ran(), stream); /* eager: the work has run */
  if (wk_lazy() && stream && !stream->capture) {
    if (to_pageable) {
      const long long ran = wk_ran();
      wk_flush(stream, stream->issued);
      wk_waited(ran, stream);
      WK_COUNT(work);
      wk_copy_run((void *)&j);
      return cudaSuccess;
    }
    if (kind == cudaMemcpyHostToDevice && !wk_is_pinned(src, count)) {
      /* from pageable memory: the source is taken now (the caller may reuse
       * it at once), written to the device in the stream's turn */
      wk_staged_job *sj = malloc(sizeof *sj + count);
      if (!sj) wk_fake_die("CUDA runtime", "out of host memory");
      sj->dst = dst;
      sj->n = count;
      memcpy(sj->bytes, src, count);
      const cudaError_t e = wk_fake_enqueue(stream, wk_staged_run, sj, sizeof *sj + count);
      free(sj);
      return e;
    }
  }
  return wk_fake_enqueue(stream, wk_copy_run, &j, sizeof j);
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
  if (wk_capture_forbids()) return wk_forbidden();
  const long long ran = wk_ran();
  const cudaError_t e = cudaMemcpyAsync(dst, src, count, kind, NULL);
  wk_waited(ran, NULL);
  return e;
}

typedef struct wk_set_job {
  void *dst;
  int value;
  size_t n;
} wk_set_job;

static void wk_set_run(void *ctx) {
  const wk_set_job *j = ctx;
  wk_fake_check_device(j->dst, j->n, "cudaMemset"); /* again: a graph replays it later */
  memset(j->dst, j->value, j->n);
}

cudaError_t cudaMemsetAsync(void *dev, int value, size_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  wk_fake_check_device(dev, count, "cudaMemset");
  const wk_set_job j = {dev, value, count};
  return wk_fake_enqueue(stream, wk_set_run, &j, sizeof j);
}

cudaError_t cudaMemset(void *dev, int value, size_t count) {
  if (wk_capture_forbids()) return wk_forbidden();
  const long long ran = wk_ran();
  const cudaError_t e = cudaMemsetAsync(dev, value, count, NULL);
  wk_waited(ran, NULL);
  return e;
}

/* ------------------------------------------------------------------ devices */

cudaError_t cudaGetDeviceCount(int *count) {
  if (!count) return wk_fail_rt(cudaErrorInvalidValue);
  *count = wk_n_devices();
  if (*count < 1) {
    *count = 0;
    return wk_fail_rt(cudaErrorNoDevice);
  }
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= wk_n_devices()) return wk_fail_rt(cudaErrorInvalidDevice);
  g_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
  if (!device) return wk_fail_rt(cudaErrorInvalidValue);
  *device = g_device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
  if (!prop) return wk_fail_rt(cudaErrorInvalidValue);
  if (device < 0 || device >= wk_n_devices()) return wk_fail_rt(cudaErrorInvalidDevice);
  memset(prop, 0, sizeof *prop);
  snprintf(prop->name, sizeof prop->name, "whisker fake device (host emulation)");
  prop->major = 9;
  prop->minor = 0;
  prop->totalGlobalMem = wk_device_bytes();
  prop->multiProcessorCount = 132;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->maxThreadsPerBlock = 1024;
  prop->warpSize = 32;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
  if (!value) return wk_fail_rt(cudaErrorInvalidValue);
  if (device < 0 || device >= wk_n_devices()) return wk_fail_rt(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    default: wk_fake_die("CUDA runtime", "cudaDeviceGetAttribute(%d): not implemented", (int)attr);
  }
}

cudaError_t cudaDriverGetVersion(int *version) {
  if (!version) return wk_fail_rt(cudaErrorInvalidValue);
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *version) {
  if (!version) return wk_fail_rt(cudaErrorInvalidValue);
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  if (wk_capture_forbids()) return wk_forbidden();
  const long long ran = wk_ran();
  wk_flush_all(0);
  wk_waited(ran, NULL);
  return cudaSuccess;
}

/* ------------------------------------------------------------------ errors */

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last_error; }

const char *cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorCapturedEvent: return "cudaErrorCapturedEvent";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    default: return "cudaErrorUnknown";
  }
}

const char *cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
    case cudaErrorNotReady: return "device not ready";
    default: return "unknown error";
  }
}

/* ------------------------------------------------------------------ streams, events */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
  if (!stream) return wk_fail_rt(cudaErrorInvalidValue);
  *stream = calloc(1, sizeof **stream);
  if (!*stream) return wk_fail_rt(cudaErrorMemoryAllocation);
  (*stream)->non_blocking = (flags & cudaStreamNonBlocking) != 0;
  if (wk_lazy()) {
    pthread_mutex_lock(&g_q);
    (*stream)->next_all = g_streams;
    g_streams = *stream;
    pthread_mutex_unlock(&g_q);
  }
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return wk_fail_rt(cudaErrorInvalidResourceHandle);
  if (stream->capture) wk_fake_die("CUDA runtime", "cudaStreamDestroy of a capturing stream");
  wk_alive(stream, "cudaStreamDestroy");
  if (wk_lazy()) {
    /* its queued work still runs (CUDA: the device completes it); the struct
     * stays on g_streams, dead, as queued waits may still name it */
    wk_flush(stream, stream->issued);
    stream->dead = 1;
    return cudaSuccess;
  }
  free(stream);
  return cudaSuccess;
}

/* Synchronising or querying a capturing stream fails and invalidates its
 * capture (CUDA). */
static cudaError_t wk_refuse_capturing(cudaStream_t stream) {
  stream->capture->invalidated = 1;
  return wk_fail_rt(cudaErrorStreamCaptureUnsupported);
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream && stream->capture) return wk_refuse_capturing(stream);
  if (wk_capture_forbids() && !stream) return wk_forbidden(); /* the legacy stream */
  wk_alive(stream, "cudaStreamSynchronize");
  const long long ran = wk_ran();
  wk_fake_flush(stream);
  wk_waited(ran, stream);
  return cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  if (stream && stream->capture) return wk_refuse_capturing(stream);
  wk_alive(stream, "cudaStreamQuery");
  if (wk_lazy() && stream) {
    /* work still queued: not ready, and the work stays queued (a caller
     * that reads the results anyway sees the old data); at the next query
     * the device has got on with it (it runs, still "not ready" then) */
    pthread_mutex_lock(&g_q);
    const int pending = stream->done < stream->issued;
    const int runs = pending && stream->queried;
    const long long ran = wk_ran();
    if (runs) wk_flush(stream, stream->issued);
    stream->queried = pending && !stream->queried;
    pthread_mutex_unlock(&g_q);
    /* a host polling the stream (cuda_comm.c's wait with a deadline) waits
     * for it as a synchronisation would: counted once, when the work runs */
    if (runs) wk_waited(ran, stream);
    if (pending) return wk_fail_rt(cudaErrorNotReady);
  }
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
  if (!event) return wk_fail_rt(cudaErrorInvalidValue);
  *event = calloc(1, sizeof **event);
  if (!*event) return wk_fail_rt(cudaErrorMemoryAllocation);
  (*event)->timing = !(flags & cudaEventDisableTiming);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return wk_fail_rt(cudaErrorInvalidResourceHandle);
  /* a timing stamp still queued writes into the event: it runs first */
  if (event->timing && event->stream) wk_flush(event->stream, event->pos);
  free(event);
  return cudaSuccess;
}

/* A timing event's stamp: the record `record` of `event` completes now. */
typedef struct wk_stamp_job {
  struct CUevent_st *event;
  uint64_t record;
} wk_stamp_job;

static double wk_clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void wk_stamp_run(void *ctx) {
  const wk_stamp_job *j = ctx;
  if (j->event->records != j->record) return; /* recorded again since */
  j->event->at_ms = wk_clock_ms();
  j->event->stamped = j->record;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return wk_fail_rt(cudaErrorInvalidResourceHandle);
  wk_alive(stream, "cudaEventRecord");
  event->capture = stream ? stream->capture : NULL;
  event->stream = NULL;
  event->queried = 0;
  /* on the legacy stream: after every blocking stream's work (which the
   * legacy stream's own work, run at once, already follows) */
  if (wk_lazy() && !stream) wk_flush_all(1);
  if (event->timing && !(stream && stream->capture)) {
    pthread_mutex_lock(&g_q);
    const wk_stamp_job j = {event, ++event->records};
    pthread_mutex_unlock(&g_q);
    if (wk_lazy() && stream) {
      /* when the work before it runs (after the stream's queued work) */
      const cudaError_t e = wk_fake_enqueue(stream, wk_stamp_run, &j, sizeof j);
      if (e != cudaSuccess) return e;
    } else {
      wk_stamp_run((void *)&j); /* that work has run */
    }
  }
  if (wk_lazy() && stream && !stream->capture) {
    pthread_mutex_lock(&g_q);
    event->stream = stream;
    event->pos = stream->issued;
    pthread_mutex_unlock(&g_q);
  }
  return cudaSuccess;
}

static cudaError_t wk_event_waitable(cudaEvent_t event);

/* CUDA: both events timing ones, recorded (else an invalid handle), and
 * complete (else not ready); never forces queued work. */
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return wk_fail_rt(cudaErrorInvalidValue);
  const cudaEvent_t ev[2] = {start, end};
  for (int k = 0; k < 2; k++) {
    const cudaError_t e = wk_event_waitable(ev[k]);
    if (e != cudaSuccess) return e;
    if (!ev[k]->timing || ev[k]->records == 0) return wk_fail_rt(cudaErrorInvalidResourceHandle);
  }
  pthread_mutex_lock(&g_q);
  const int done = start->stamped == start->records && end->stamped == end->records;
  const double d = end->at_ms - start->at_ms;
  pthread_mutex_unlock(&g_q);
  if (!done) return wk_fail_rt(cudaErrorNotReady);
  *ms = (float)d;
  return cudaSuccess;
}

/* An event last recorded in a capture that has ended may not be waited on or
 * synchronised (CUDA: cudaErrorCapturedEvent) until it is recorded again. */
static cudaError_t wk_event_usable(cudaEvent_t event) {
  if (event->capture && !wk_live(event->capture)) return wk_fail_rt(cudaErrorCapturedEvent);
  return cudaSuccess;
}

/* Whether the host may wait for the event (synchronise with it or query it):
 * a real event, usable, not recorded in a capture under way. */
static cudaError_t wk_event_waitable(cudaEvent_t event) {
  if (!event) return wk_fail_rt(cudaErrorInvalidResourceHandle);
  const cudaError_t e = wk_event_usable(event);
  if (e != cudaSuccess) return e;
  if (event->capture) return wk_fail_rt(cudaErrorStreamCaptureUnsupported);
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  const cudaError_t e = wk_event_waitable(event);
  if (e != cudaSuccess) return e;
  const long long ran = wk_ran();
  if (event->stream) wk_flush(event->stream, event->pos);
  wk_waited(ran, event->stream);
  return cudaSuccess;
}

/* Lazy streams: the work up to the event still queued is "not ready" at the
 * first query; at the next the device has got on with it (it runs: a host
 * wait, as cudaEventSynchronize's) and the event is complete. */
cudaError_t cudaEventQuery(cudaEvent_t event) {
  const cudaError_t e = wk_event_waitable(event);
  if (e != cudaSuccess) return e;
  if (!event->stream) return cudaSuccess;
  pthread_mutex_lock(&g_q);
  const int pending = event->stream->done < event->pos;
  const int runs = pending && event->queried;
  event->queried = pending && !event->queried;
  pthread_mutex_unlock(&g_q);
  if (!pending) return cudaSuccess;
  if (!runs) return wk_fail_rt(cudaErrorNotReady);
  const long long ran = wk_ran();
  wk_flush(event->stream, event->pos);
  wk_waited(ran, event->stream);
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  (void)flags;
  wk_alive(stream, "cudaStreamWaitEvent");
  if (!event) return wk_fail_rt(cudaErrorInvalidResourceHandle);
  const cudaError_t e = wk_event_usable(event);
  if (e != cudaSuccess) return e;
  if (event->capture && stream && !stream->capture) {
    /* joins the capture (a cross-stream dependency) until it ends */
    struct CUgraph_st *g = event->capture;
    if (g->n_joined == (int)(sizeof g->joined / sizeof g->joined[0]))
      wk_fake_die("CUDA runtime", "more than 16 streams joined one capture: not implemented");
    g->joined[g->n_joined++] = stream;
    stream->capture = g;
    stream->origin = 0;
  } else if (event->capture && !stream) {
    return wk_fail_rt(cudaErrorStreamCaptureUnsupported);
  } else if (event->stream && event->stream != stream) {
    /* lazy streams: the waiting stream's later work runs after the event's
     * stream has run up to it (a wait issued on the legacy stream runs now) */
    const wk_wait_job j = {event->stream, event->pos};
    return wk_fake_enqueue(stream, wk_wait_run, &j, sizeof j);
  }
  return cudaSuccess;
}

/* ------------------------------------------------------------------ graphs */

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
  if (!stream) return wk_fail_rt(cudaErrorStreamCaptureUnsupported); /* the legacy stream */
  if (stream->capture) return wk_fail_rt(cudaErrorIllegalState);
  stream->capture = calloc(1, sizeof *stream->capture);
  if (!stream->capture) return wk_fail_rt(cudaErrorMemoryAllocation);
  if (g_n_live == (int)(sizeof g_live / sizeof g_live[0]))
    wk_fake_die("CUDA runtime", "more than 16 captures at once: not implemented");
  g_live[g_n_live++] = stream->capture;
  stream->origin = 1;
  stream->capture->relaxed = mode == cudaStreamCaptureModeRelaxed;
  if (!stream->capture->relaxed) g_strict_captures++;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus *status) {
  if (!status) return wk_fail_rt(cudaErrorInvalidValue);
  *status = !stream || !stream->capture ? cudaStreamCaptureStatusNone
            : stream->capture->invalidated ? cudaStreamCaptureStatusInvalidated
                                           : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

/* Streams that joined the capture leave it when it ends (their work was
 * recorded into it; CUDA requires them to have rejoined the origin stream,
 * which the fakes do not check). */
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
  if (!stream || !graph) return wk_fail_rt(cudaErrorInvalidValue);
  if (!stream->capture || !stream->origin) return wk_fail_rt(cudaErrorIllegalState);
  struct CUgraph_st *g = stream->capture;
  stream->capture = NULL;
  stream->origin = 0;
  for (int i = 0; i < g->n_joined; i++) g->joined[i]->capture = NULL;
  g->n_joined = 0;
  if (!g->relaxed) g_strict_captures--;
  for (int i = 0; i < g_n_live; i++)
    if (g_live[i] == g) g_live[i] = g_live[--g_n_live];
  *graph = NULL;
  if (g->invalidated) {
    wk_free_ops(g->head);
    free(g);
    return wk_fail_rt(cudaErrorStreamCaptureInvalidated);
  }
  *graph = g;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags) {
  (void)flags;
  if (!exec || !graph) return wk_fail_rt(cudaErrorInvalidValue);
  *exec = calloc(1, sizeof **exec);
  if (!*exec) return wk_fail_rt(cudaErrorMemoryAllocation);
  /* the exec keeps its own copy, so the graph may be destroyed first */
  wk_op *head = NULL, **tail = &head, *last = NULL;
  for (const wk_op *op = graph->head; op; op = op->next) {
    const wk_rec *rec = (const wk_rec *)op;
    wk_rec *c = malloc(sizeof *c);
    void *ctx = malloc(rec->bytes ? rec->bytes : 1);
    if (!c || !ctx) wk_fake_die("CUDA runtime", "out of host memory instantiating a graph");
    memcpy(ctx, op->ctx, rec->bytes);
    c->op = (wk_op){op->fn, ctx, NULL};
    c->bytes = rec->bytes;
    *tail = &c->op;
    tail = &c->op.next;
    last = &c->op;
  }
  (*exec)->g.head = head;
  (*exec)->g.tail = last;
  return cudaSuccess;
}

typedef struct wk_graph_job {
  const struct CUgraphExec_st *exec;
} wk_graph_job;

static void wk_graph_run(void *ctx) {
  const wk_graph_job *j = ctx;
  for (const wk_op *op = j->exec->g.head; op; op = op->next) {
    /* each run gets a fresh copy: work may not keep state between runs */
    const wk_rec *rec = (const wk_rec *)op;
    void *copy = malloc(rec->bytes ? rec->bytes : 1);
    if (!copy) wk_fake_die("CUDA runtime", "out of host memory");
    memcpy(copy, op->ctx, rec->bytes);
    op->fn(copy);
    free(copy);
  }
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return wk_fail_rt(cudaErrorInvalidValue);
  if (stream && stream->capture)
    wk_fake_die("CUDA runtime", "cudaGraphLaunch into a capturing stream: not implemented");
  /* $WK_FAKE_GRAPH_LAUNCH_FAIL=N: the launch that would make graph_launches N
   * (wk_fake_stats) fails, as a launch short of resources does (not sticky),
   * and queues nothing */
  const char *fail = getenv("WK_FAKE_GRAPH_LAUNCH_FAIL");
  if (fail && atoll(fail) == __atomic_load_n(&g_stats.graph_launches, __ATOMIC_RELAXED) + 1)
    return wk_fail_rt(cudaErrorLaunchOutOfResources);
  const wk_graph_job j = {exec};
  return wk_fake_enqueue(stream, wk_graph_run, &j, sizeof j);
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (!exec) return cudaSuccess;
  wk_flush_all(0); /* lazy streams: a queued launch of it runs first */
  wk_free_ops(exec->g.head);
  free(exec);
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (!graph) return cudaSuccess;
  wk_free_ops(graph->head);
  free(graph);
  return cudaSuccess;
}
