/* bench_ops.c - times the conv2d op on every convolution shape of torchvision's
 * ResNet-18, each direction separately: forward, backward-data (dx) and
 * backward-weights (dw).
 *
 * Before a shape is timed, the selected implementation is checked against the
 * plain-loop reference on a small batch (the reference is slow): the normalised
 * error max|a - ref| / max|ref| of y, dx and dw must be <= 1e-4, otherwise the
 * program exits 1 (after timing the remaining shapes).
 *
 * Output on stdout, one tab-separated line per shape after a '#' header:
 *   name N H W C O K stride fwd_ms bwd_data_ms bwd_weights_ms
 * each time the median of --reps runs after one warm-up run. The runs are
 * interleaved: each pass runs every (shape, direction) once, so a transient
 * slowdown of the machine costs one run of many shapes, which the median drops,
 * rather than every run of one shape. All shapes' tensors are therefore live at
 * once (about 0.7 GB at batch 32). Check results go to stderr.
 * scripts/bench_ops.sh puts these lines next to PyTorch's.
 *
 * Like torchvision's ResNet convs: no bias, padding k / 2, dilation 1, groups 1.
 * Layouts are whisker's: x (N,H,W,C), w (O,K,K,C), y (N,OH,OW,O). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/plan.h"
#include "whisker.h"

#define BENCH_CHECK_TOL 1e-4
#define BENCH_MAX_REPS 1000

typedef struct bench_shape {
  const char *name;
  int64_t c, o;   /* input and output channels */
  int64_t hw_px;  /* input height = width */
  int64_t k;      /* kernel height = width */
  int64_t stride;
} bench_shape;

/* Every distinct conv of ResNet-18 (BasicBlock, 224x224 input). */
static const bench_shape bench_shapes[] = {
    {"conv1", 3, 64, 224, 7, 2},
    {"layer1.conv3x3", 64, 64, 56, 3, 1},
    {"layer2.conv3x3s2", 64, 128, 56, 3, 2},
    {"layer2.conv3x3", 128, 128, 28, 3, 1},
    {"layer2.down1x1s2", 64, 128, 56, 1, 2},
    {"layer3.conv3x3s2", 128, 256, 28, 3, 2},
    {"layer3.conv3x3", 256, 256, 14, 3, 1},
    {"layer3.down1x1s2", 128, 256, 28, 1, 2},
    {"layer4.conv3x3s2", 256, 512, 14, 3, 2},
    {"layer4.conv3x3", 512, 512, 7, 3, 1},
    {"layer4.down1x1s2", 256, 512, 14, 1, 2},
};
#define BENCH_N_SHAPES ((int)(sizeof bench_shapes / sizeof bench_shapes[0]))

typedef enum bench_dir { BENCH_FWD = 0, BENCH_BWD_DATA, BENCH_BWD_WEIGHTS, BENCH_N_DIRS } bench_dir;

static const char *const bench_dir_names[BENCH_N_DIRS] = {"fwd", "bwd_data", "bwd_weights"};

typedef struct bench_opts {
  int n_threads;      /* 0 = WHISKER_THREADS, else every online core */
  int batch;
  int reps;
  int check_batch;    /* batch of the check against the reference */
  bool check;
  bool impl_given;
  wk_impl impl;
  const char *shape;  /* NULL = all */
} bench_opts;

/* The tensors of one conv at one batch size; all owned. */
typedef struct bench_bufs {
  wk_conv2d_params p;
  wk_tensor x;   /* (N,H,W,C) */
  wk_tensor w;   /* (O,K,K,C) */
  wk_tensor y;   /* (N,OH,OW,O) */
  wk_tensor dy;  /* (N,OH,OW,O) */
  wk_tensor dx;  /* (N,H,W,C) */
  wk_tensor dw;  /* (O,K,K,C) */
  wk_conv2d_plan *plan; /* fast path: made on first use */
} bench_bufs;

static void bench_fill(wk_tensor *t, uint64_t stream) {
  float *p = t->data; /* f32 */
  wk_rng r = wk_rng_make(0xbe5c, stream);
  int64_t n = wk_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) p[i] = 2.0f * wk_rng_uniform(&r) - 1.0f;
}

static void bench_bufs_free(bench_bufs *b) {
  wk_tensor_free(&b->x);
  wk_tensor_free(&b->w);
  wk_tensor_free(&b->y);
  wk_tensor_free(&b->dy);
  wk_tensor_free(&b->dx);
  wk_tensor_free(&b->dw);
  wk_conv2d_plan_destroy(b->plan);
  b->plan = NULL;
}

/* Allocates and fills (x, w, dy) with values in [-1, 1) that depend only on the
 * shape's index and the batch. */
static wk_status bench_bufs_make(const bench_shape *s, int shape_index, int64_t n,
                                 bench_bufs *b) {
  memset(b, 0, sizeof *b);
  b->p = wk_conv2d_params_make((int)s->stride, (int)(s->k / 2), 1);
  wk_conv2d_geom g;
  WK_TRY(wk_conv2d_geom_make(&b->p, n, s->hw_px, s->hw_px, s->c, s->o, s->k, s->k, &g));
  const int64_t x_shape[4] = {n, s->hw_px, s->hw_px, s->c};
  const int64_t w_shape[4] = {s->o, s->k, s->k, s->c};
  const int64_t y_shape[4] = {n, g.oh, g.ow, s->o};
  wk_status st = wk_tensor_alloc(&b->x, WK_F32, 4, x_shape);
  if (st == WK_OK) st = wk_tensor_alloc(&b->w, WK_F32, 4, w_shape);
  if (st == WK_OK) st = wk_tensor_alloc(&b->y, WK_F32, 4, y_shape);
  if (st == WK_OK) st = wk_tensor_alloc(&b->dy, WK_F32, 4, y_shape);
  if (st == WK_OK) st = wk_tensor_alloc(&b->dx, WK_F32, 4, x_shape);
  if (st == WK_OK) st = wk_tensor_alloc(&b->dw, WK_F32, 4, w_shape);
  if (st != WK_OK) {
    bench_bufs_free(b);
    return st;
  }
  uint64_t stream = (uint64_t)shape_index << 32 | (uint64_t)n << 8;
  bench_fill(&b->x, stream | 1);
  bench_fill(&b->w, stream | 2);
  bench_fill(&b->dy, stream | 3);
  return WK_OK;
}

/* One direction; backward computes only the gradient being timed. On the
 * fast path it runs through a training plan made once per shape, as the
 * network executor does (primitives created once; weights reordered on every
 * call, as in training where they change every step). */
static wk_status bench_run(wk_ctx *ctx, bench_bufs *b, bench_dir dir) {
  if (ctx->impl == WK_IMPL_CPU) {
    if (!b->plan) {
      wk_conv2d_geom g;
      WK_TRY(wk_conv2d_geom_make(&b->p, b->x.shape[0], b->x.shape[1], b->x.shape[2],
                                 b->x.shape[3], b->w.shape[0], b->w.shape[1], b->w.shape[2], &g));
      WK_TRY(wk_conv2d_plan_create(ctx, &g, false, false, WK_POST_NONE, &b->plan));
    }
    switch (dir) {
      case BENCH_FWD:
        return wk_conv2d_plan_forward(b->plan, b->x.data, b->w.data, 0, NULL, b->y.data);
      case BENCH_BWD_DATA:
        return wk_conv2d_plan_backward(b->plan, b->x.data, b->w.data, 0, b->dy.data, b->dx.data,
                                       NULL, NULL);
      case BENCH_BWD_WEIGHTS:
        return wk_conv2d_plan_backward(b->plan, b->x.data, b->w.data, 0, b->dy.data, NULL,
                                       b->dw.data, NULL);
      case BENCH_N_DIRS:
        break;
    }
  }
  switch (dir) {
    case BENCH_FWD:
      return wk_conv2d_forward(ctx, &b->p, &b->x, &b->w, NULL, &b->y);
    case BENCH_BWD_DATA:
      return wk_conv2d_backward(ctx, &b->p, &b->x, &b->w, &b->dy, &b->dx, NULL, NULL);
    case BENCH_BWD_WEIGHTS:
      return wk_conv2d_backward(ctx, &b->p, &b->x, &b->w, &b->dy, NULL, &b->dw, NULL);
    case BENCH_N_DIRS:
      break;
  }
  WK_ASSERT(0 && "bad direction");
  return WK_ERR_INVALID_ARG;
}

static const wk_tensor *bench_result(const bench_bufs *b, bench_dir dir) {
  return dir == BENCH_FWD ? &b->y : dir == BENCH_BWD_DATA ? &b->dx : &b->dw;
}

/* max|a - ref| / max|ref|; infinite when NaNs disagree or ref is all zero but a is not. */
static double bench_rel_err(const wk_tensor *a, const wk_tensor *ref) {
  const float *pa = a->data, *pr = ref->data; /* f32, same shape */
  int64_t n = wk_tensor_numel(ref);
  double max_diff = 0.0, max_ref = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(pa[i]) || isnan(pr[i])) return INFINITY;
    double d = fabs((double)pa[i] - (double)pr[i]);
    if (d > max_diff) max_diff = d;
    if (fabs((double)pr[i]) > max_ref) max_ref = fabs((double)pr[i]);
  }
  if (max_ref == 0.0) return max_diff == 0.0 ? 0.0 : INFINITY;
  return max_diff / max_ref;
}

/* Runs every direction with ctx and with the reference on a small batch;
 * *ok is false when an error exceeds BENCH_CHECK_TOL. */
static wk_status bench_check(wk_ctx *ctx, wk_ctx *ref_ctx, const bench_shape *s, int shape_index,
                             int64_t n, bool *ok) {
  bench_bufs fast, ref;
  *ok = false;
  WK_TRY(bench_bufs_make(s, shape_index, n, &fast));
  wk_status st = bench_bufs_make(s, shape_index, n, &ref);
  if (st != WK_OK) {
    bench_bufs_free(&fast);
    return st;
  }
  double err[BENCH_N_DIRS] = {0};
  for (int d = 0; d < BENCH_N_DIRS && st == WK_OK; d++) {
    st = bench_run(ctx, &fast, (bench_dir)d);
    if (st == WK_OK) st = bench_run(ref_ctx, &ref, (bench_dir)d);
    if (st == WK_OK) err[d] = bench_rel_err(bench_result(&fast, d), bench_result(&ref, d));
  }
  if (st == WK_OK) {
    *ok = true;
    for (int d = 0; d < BENCH_N_DIRS; d++) *ok = *ok && err[d] <= BENCH_CHECK_TOL;
    fprintf(stderr,
            "check %-18s N=%lld  fwd %.2e  bwd_data %.2e  bwd_weights %.2e  %s (tol %.0e)\n",
            s->name, (long long)n, err[0], err[1], err[2], *ok ? "ok" : "FAILED", BENCH_CHECK_TOL);
  }
  bench_bufs_free(&fast);
  bench_bufs_free(&ref);
  return st;
}

static double bench_now_ms(void) {
  struct timespec ts;
  WK_ASSERT(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Times every direction of n_bufs shapes: one warm-up pass, then `reps` passes,
 * each running every (shape, direction) once, so that a transient slowdown of
 * the machine touches one run of many shapes instead of every run of one shape.
 * ms (n_bufs, BENCH_N_DIRS) receives the medians. */
static wk_status bench_time(wk_ctx *ctx, bench_bufs *bufs, int n_bufs, int reps, double *ms) {
  const int n_slots = n_bufs * BENCH_N_DIRS;
  double *t_ms = malloc((size_t)n_slots * (size_t)reps * sizeof *t_ms); /* (slot, rep) */
  if (!t_ms) return wk_fail(WK_ERR_NOMEM, "bench: out of memory for %d timings", n_slots * reps);
  wk_status st = WK_OK;
  for (int r = -1; r < reps && st == WK_OK; r++) {
    for (int slot = 0; slot < n_slots && st == WK_OK; slot++) {
      double t0 = bench_now_ms();
      st = bench_run(ctx, &bufs[slot / BENCH_N_DIRS], (bench_dir)(slot % BENCH_N_DIRS));
      if (r >= 0) t_ms[slot * reps + r] = bench_now_ms() - t0;
    }
  }
  for (int slot = 0; slot < n_slots && st == WK_OK; slot++)
    ms[slot] = bench_median(t_ms + slot * reps, reps);
  free(t_ms);
  return st;
}

static void bench_usage(FILE *f) {
  fprintf(f,
          "usage: wk_bench_ops [options]\n"
          "  --threads N       threads (default: WHISKER_THREADS, else all cores)\n"
          "  --batch B         batch size (default 32)\n"
          "  --reps R          timed runs per direction, median reported (default 10)\n"
          "  --shape NAME      run one shape (--list prints the names)\n"
          "  --impl cpu|ref    implementation to time (default: cpu, or WHISKER_IMPL)\n"
          "  --check-batch B   batch of the check against the reference (default 2)\n"
          "  --check           check against the reference first (default)\n"
          "  --no-check        skip the check\n"
          "  --list            print the shape names and exit\n");
}

/* Parses a positive int option value; false (with a message) when invalid. */
static bool bench_parse_int(const char *opt, const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || errno || *end || v < lo || v > hi) {
    fprintf(stderr, "wk_bench_ops: %s expects an integer in [%d, %d], got '%s'\n", opt, lo, hi,
            s ? s : "");
    return false;
  }
  *out = (int)v;
  return true;
}

/* Returns 0 to go on, -1 to exit with 0 (--help, --list), else the exit code. */
static int bench_parse_args(int argc, char **argv, bench_opts *o) {
  *o = (bench_opts){.batch = 32, .reps = 10, .check_batch = 2, .check = true};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = true;
    if (!strcmp(a, "--threads")) {
      ok = bench_parse_int(a, v, 1, 1024, &o->n_threads);
      i++;
    } else if (!strcmp(a, "--batch")) {
      ok = bench_parse_int(a, v, 1, 4096, &o->batch);
      i++;
    } else if (!strcmp(a, "--reps")) {
      ok = bench_parse_int(a, v, 1, BENCH_MAX_REPS, &o->reps);
      i++;
    } else if (!strcmp(a, "--check-batch")) {
      ok = bench_parse_int(a, v, 1, 64, &o->check_batch);
      i++;
    } else if (!strcmp(a, "--shape")) {
      o->shape = v;
      ok = v != NULL;
      i++;
    } else if (!strcmp(a, "--check")) {
      o->check = true;
    } else if (!strcmp(a, "--no-check")) {
      o->check = false;
    } else if (!strcmp(a, "--impl")) {
      ok = v && wk_impl_parse(v, &o->impl) == WK_OK && o->impl != WK_IMPL_CUDA;
      if (!ok) fprintf(stderr, "wk_bench_ops: --impl expects cpu or ref\n");
      o->impl_given = true;
      i++;
    } else if (!strcmp(a, "--list")) {
      for (int s = 0; s < BENCH_N_SHAPES; s++) printf("%s\n", bench_shapes[s].name);
      return -1;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      bench_usage(stdout);
      return -1;
    } else {
      fprintf(stderr, "wk_bench_ops: unknown option '%s'\n", a);
      ok = false;
    }
    if (!ok) {
      bench_usage(stderr);
      return 2;
    }
  }
  if (o->shape) {
    int found = 0;
    for (int s = 0; s < BENCH_N_SHAPES; s++) found |= !strcmp(bench_shapes[s].name, o->shape);
    if (!found) {
      fprintf(stderr, "wk_bench_ops: unknown shape '%s' (--list prints the names)\n", o->shape);
      return 2;
    }
  }
  return 0;
}

/* Checks the selected shapes (unless disabled), then times them all together
 * and prints their lines. *n_failed counts the shapes that failed the check. */
static wk_status bench_all(wk_ctx *ctx, wk_ctx *ref_ctx, const bench_opts *o, int *n_failed) {
  int sel[BENCH_N_SHAPES], n_sel = 0;
  for (int si = 0; si < BENCH_N_SHAPES; si++)
    if (!o->shape || !strcmp(o->shape, bench_shapes[si].name)) sel[n_sel++] = si;

  *n_failed = 0;
  for (int i = 0; i < n_sel && o->check && ctx->impl != WK_IMPL_REF; i++) {
    bool ok;
    WK_TRY(bench_check(ctx, ref_ctx, &bench_shapes[sel[i]], sel[i], o->check_batch, &ok));
    *n_failed += !ok;
  }

  bench_bufs bufs[BENCH_N_SHAPES];
  double ms[BENCH_N_SHAPES * BENCH_N_DIRS];
  int n_made = 0;
  wk_status st = WK_OK;
  for (int i = 0; i < n_sel && st == WK_OK; i++) {
    st = bench_bufs_make(&bench_shapes[sel[i]], sel[i], o->batch, &bufs[i]);
    n_made += st == WK_OK;
  }
  if (st == WK_OK) st = bench_time(ctx, bufs, n_sel, o->reps, ms);
  for (int i = 0; i < n_sel && st == WK_OK; i++) {
    const bench_shape *s = &bench_shapes[sel[i]];
    const double *m = ms + i * BENCH_N_DIRS;
    printf("%s\t%d\t%lld\t%lld\t%lld\t%lld\t%lld\t%lld\t%.3f\t%.3f\t%.3f\n", s->name, o->batch,
           (long long)s->hw_px, (long long)s->hw_px, (long long)s->c, (long long)s->o,
           (long long)s->k, (long long)s->stride, m[BENCH_FWD], m[BENCH_BWD_DATA],
           m[BENCH_BWD_WEIGHTS]);
  }
  for (int i = 0; i < n_made; i++) bench_bufs_free(&bufs[i]);
  return st;
}

int main(int argc, char **argv) {
  bench_opts o;
  int rc = bench_parse_args(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;

  /* The reference context first: oneDNN's OpenMP thread count is process-wide
   * and the last context created sets it (both use the same count anyway). */
  wk_ctx *ref_ctx = NULL, *ctx = NULL;
  wk_status st = wk_ctx_create(&ref_ctx, o.n_threads);
  if (st == WK_OK) st = wk_ctx_create(&ctx, o.n_threads);
  if (st != WK_OK) {
    fprintf(stderr, "wk_bench_ops: context: %s\n", wk_last_error());
    wk_ctx_destroy(ref_ctx);
    return 1;
  }
  ref_ctx->impl = WK_IMPL_REF;
  if (o.impl_given) ctx->impl = o.impl;

  fprintf(stderr, "wk_bench_ops: impl %s, %d threads, batch %d, %d reps (median), check %s\n",
          wk_impl_name(ctx->impl), ctx->n_threads, o.batch, o.reps,
          !o.check ? "off" : ctx->impl == WK_IMPL_REF ? "skipped (impl is ref)" : "on");
  printf("#name\tN\tH\tW\tC\tO\tK\tstride\t%s_ms\t%s_ms\t%s_ms\n", bench_dir_names[0],
         bench_dir_names[1], bench_dir_names[2]);

  int n_failed = 0;
  st = bench_all(ctx, ref_ctx, &o, &n_failed);
  if (st != WK_OK) fprintf(stderr, "wk_bench_ops: %s: %s\n", wk_status_name(st), wk_last_error());
  if (n_failed) fprintf(stderr, "wk_bench_ops: %d shape(s) FAILED the check\n", n_failed);
  wk_ctx_destroy(ctx);
  wk_ctx_destroy(ref_ctx);
  return st != WK_OK || n_failed ? 1 : 0;
}
