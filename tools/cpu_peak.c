/* cpu_peak.c - the single-precision arithmetic rate the cores reach in a loop
 * of nothing but fused multiply-adds: the ceiling that tools/bench_infer.c's
 * GFLOP/s are measured against (docs/benchmarks.md, "Inference speed vs ONNX Runtime").
 *
 *   wk_cpu_peak [--threads N] [--seconds S]
 *
 * Each of N threads (default: every core) runs 12 independent chains of
 * 16-wide (AVX-512) or 8-wide (AVX2) FMAs, enough to hide their latency; the
 * best of five timed repetitions is printed as GFLOP/s, 2 FLOP per lane and
 * FMA. x86-64 only; elsewhere it says so and exits 2. */
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define CHAINS 12

__attribute__((target("avx512f"))) static float fma_loop_512(long n) {
  __m512 a[CHAINS];
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int k = 0; k < CHAINS; k++) a[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < n; i++)
    for (int k = 0; k < CHAINS; k++) a[k] = _mm512_fmadd_ps(a[k], b, c);
  for (int k = 1; k < CHAINS; k++) a[0] = _mm512_add_ps(a[0], a[k]);
  return _mm512_reduce_add_ps(a[0]);
}

__attribute__((target("avx2,fma"))) static float fma_loop_256(long n) {
  __m256 a[CHAINS];
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int k = 0; k < CHAINS; k++) a[k] = _mm256_set1_ps((float)k);
  for (long i = 0; i < n; i++)
    for (int k = 0; k < CHAINS; k++) a[k] = _mm256_fmadd_ps(a[k], b, c);
  for (int k = 1; k < CHAINS; k++) a[0] = _mm256_add_ps(a[0], a[k]);
  float v[8];
  _mm256_storeu_ps(v, a[0]);
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

int main(int argc, char **argv) {
  int threads = omp_get_num_procs();
  double seconds = 0.5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: wk_cpu_peak [--threads N] [--seconds S]\n");
      return 2;
    }
  }
  if (threads < 1 || threads > 4096 || !(seconds > 0 && seconds <= 60)) {
    fprintf(stderr, "wk_cpu_peak: --threads 1..4096, --seconds (0, 60]\n");
    return 2;
  }
  const bool w512 = __builtin_cpu_supports("avx512f");
  if (!w512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
    fprintf(stderr, "wk_cpu_peak: this CPU has neither AVX-512 nor AVX2 with FMA\n");
    return 2;
  }
  const int lanes = w512 ? 16 : 8;
  /* calibrate: iterations of the loop for about `seconds` on one thread */
  long n = 1 << 16;
  for (;;) {
    const double t0 = omp_get_wtime();
    volatile float sink = w512 ? fma_loop_512(n) : fma_loop_256(n);
    (void)sink;
    const double t = omp_get_wtime() - t0;
    if (t >= seconds / 4 || n > (1L << 40)) {
      n = (long)((double)n * seconds / (t > 0 ? t : 1e-9));
      break;
    }
    n *= 4;
  }
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    float sink = 0;
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += w512 ? fma_loop_512(n) : fma_loop_256(n);
    const double t = omp_get_wtime() - t0;
    const double gflops = 2.0 * lanes * CHAINS * (double)n * threads / t / 1e9;
    if (gflops > best) best = gflops;
    if (sink == 12345.0f) printf(" "); /* keeps the work observable */
  }
  printf("# %d thread%s, %s FMA, best of 5\n", threads, threads == 1 ? "" : "s",
         w512 ? "AVX-512" : "AVX2");
  printf("peak\t%.1f GFLOP/s\n", best);
  return 0;
}

#else
int main(void) {
  fprintf(stderr, "wk_cpu_peak: x86-64 only\n");
  return 2;
}
#endif
