/* bench_infer.c - forward-pass latency of a model file, for the side-by-side
 * with ONNX Runtime (scripts/bench_infer.sh runs tools/ort/bench.js on the same
 * network exported to ONNX).
 *
 *   wk_bench_infer MODEL [--batch 1,32] [--warmup 10] [--runs 50] [--threads N] [--profile]
 *   wk_bench_infer MODEL --batch 1 --turns [--warmup 10] [--threads N]
 *
 * For each batch size: --warmup untimed evaluation forwards, then --runs timed
 * ones on the same deterministic input; prints one tab-separated line per batch
 * size after a '#' header: name batch median_ms min_ms images_per_s, and a '#'
 * line with the network's arithmetic (the multiply-adds of its convolutions
 * and linear layers, counted as 2 FLOP each) and the rate that median makes
 * (tools/cpu_peak.c measures what the cores can do).
 *
 * --turns (one batch size): after the warm-up, prints "ready", then for each
 * line N read from stdin runs 2 untimed forwards (the caches and threads of
 * the program that ran before it are cold or still spinning) and N timed ones
 * and prints their times in ms on one line; ends at EOF or "0".
 * scripts/bench_turns.py runs it and tools/ort/bench.js this way, at once, and
 * hands the machine to each in turns of a fraction of a second, so the two see
 * the same machine: this one's speed swings by half over seconds. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "modelio/model.h"
#include "whisker.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* --profile: time per node of the timed runs, in network order (nodes above
 * 0.5% of the total), with the implementation each ran on. */
static void print_profile(const wk_net *net, int runs) {
  const int n = wk_net_n_nodes(net);
  double total = 0;
  for (int i = 0; i < n; i++) {
    double f, b;
    wk_net_profile_get(net, i, &f, &b);
    total += f;
  }
  for (int i = 0; i < n; i++) {
    double f, b;
    wk_net_profile_get(net, i, &f, &b);
    const char *impl = wk_net_node_eval_impl(net, i);
    if (f > 0.005 * total)
      fprintf(stderr, "  %-32s %-8s %7.3f ms  %4.1f%%  %s\n", wk_net_node(net, i)->name,
              wk_node_op_name(wk_net_node(net, i)->op), f * 1e3 / runs, 100 * f / total,
              impl ? impl : "");
  }
}

/* FLOP per image of the convolutions and linear layers (2 per multiply-add). */
static double net_flop(const wk_net *net) {
  int h, w, c;
  wk_net_input_shape(net, &h, &w, &c);
  double flop = 0;
  for (int i = 0; i < wk_net_n_nodes(net); i++) {
    const wk_node *nd = wk_net_node(net, i);
    const wk_node *src = nd->in[0] > 0 ? wk_net_node(net, nd->in[0] - 1) : NULL;
    double in = src ? 1.0 : (double)h * w * c; /* the input value's elements per image */
    for (int k = 0; src && k < src->out_ndim; k++) in *= (double)src->out_shape[k];
    const double cin = src ? (double)src->out_shape[src->out_ndim - 1] : c;
    if (nd->op == WK_NODE_CONV)
      flop += 2.0 * (double)nd->out_shape[0] * (double)nd->out_shape[1] * nd->out_ch * nd->kh *
              nd->kw * (cin / (nd->conv.groups > 0 ? nd->conv.groups : 1));
    else if (nd->op == WK_NODE_LINEAR)
      flop += 2.0 * in * nd->out_ch;
  }
  return flop;
}

/* One evaluation forward of x; 1 (the error printed) on failure. */
static int forward(wk_net *net, const wk_tensor *x) {
  wk_tensor out;
  if (wk_net_forward(net, x, false, &out) == WK_OK) return 0;
  fprintf(stderr, "wk_bench_infer: %s\n", wk_last_error());
  return 1;
}

/* --turns: warmup forwards, then the loop of the header's protocol on input x;
 * 0 at EOF or "0". */
static int serve_turns(wk_net *net, const wk_tensor *x, int batch, int warmup) {
  char line[64];
  for (int i = 0; i < warmup; i++)
    if (forward(net, x)) return 1;
  printf("ready %d\n", batch);
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
    char *end;
    const long n = strtol(line, &end, 10);
    if (n == 0 && end != line) return 0;
    if (end == line || n < 0 || n > 100000) {
      fprintf(stderr, "wk_bench_infer: --turns: bad request '%s'\n", line);
      return 2;
    }
    for (long i = 0; i < 2 + n; i++) {
      const double t0 = wk_now_s();
      if (forward(net, x)) return 1;
      if (i >= 2) printf("%s%.4f", i > 2 ? " " : "", (wk_now_s() - t0) * 1e3);
    }
    printf("\n");
    fflush(stdout);
  }
  return 0;
}

static int run_batch(wk_net *net, int batch, int warmup, int runs, bool profile, bool turns) {
  int h, w, c;
  wk_net_input_shape(net, &h, &w, &c);
  const int64_t shape[4] = {batch, h, w, c};
  wk_tensor x;
  if (wk_tensor_alloc(&x, WK_F32, 4, shape) != WK_OK) return 1;
  float *p = x.data;
  for (int64_t i = 0; i < wk_tensor_numel(&x); i++) p[i] = (float)((i * 7919) % 2001) / 1000.0f - 1.0f;
  if (turns) {
    const int rc = serve_turns(net, &x, batch, warmup);
    wk_tensor_free(&x);
    return rc;
  }
  double *t = malloc((size_t)runs * sizeof *t);
  int rc = t ? 0 : 1;
  for (int i = 0; rc == 0 && i < warmup + runs; i++) {
    if (profile && i == warmup && wk_net_profile_enable(net) != WK_OK) rc = 1;
    const double t0 = wk_now_s();
    if (forward(net, &x)) rc = 1;
    if (i >= warmup) t[i - warmup] = (wk_now_s() - t0) * 1e3;
  }
  if (rc == 0) {
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    const double med = t[runs / 2];
    printf("whisker\t%d\t%.3f\t%.3f\t%.1f\n", batch, med, t[0], batch * 1e3 / med);
    const double flop = net_flop(net);
    printf("# batch %d: %.3f GFLOP per image, %.1f GFLOP/s at the median\n", batch, flop / 1e9,
           flop * batch / (med * 1e-3) / 1e9);
    if (profile) print_profile(net, runs);
  }
  free(t);
  wk_tensor_free(&x);
  return rc;
}

int main(int argc, char **argv) {
  const char *model = NULL, *batches = "1,32";
  int warmup = 10, runs = 50, threads = 0;
  bool profile = false, turns = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--batch") && i + 1 < argc) batches = argv[++i];
    else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--profile")) profile = true;
    else if (!strcmp(argv[i], "--turns")) turns = true;
    else if (argv[i][0] != '-' && !model) model = argv[i];
    else {
      fprintf(stderr, "usage: wk_bench_infer MODEL [--batch 1,32] [--warmup 10] [--runs 50] "
                      "[--threads N] [--profile | --turns]\n");
      return 2;
    }
  }
  if (turns && (profile || strchr(batches, ','))) {
    fprintf(stderr, "wk_bench_infer: --turns takes one batch size and no --profile\n");
    return 2;
  }
  if (!model || runs < 1 || warmup < 0 || threads < 0) {
    fprintf(stderr, "usage: wk_bench_infer MODEL [--batch 1,32] [--warmup 10] [--runs 50]\n");
    return 2;
  }
  wk_ctx *ctx;
  wk_net *net;
  wk_model_meta meta;
  if (wk_ctx_create(&ctx, threads) != WK_OK || wk_model_load(ctx, model, &net, &meta) != WK_OK) {
    fprintf(stderr, "wk_bench_infer: %s\n", wk_last_error());
    return 1;
  }
  if (!turns) printf("# name\tbatch\tmedian_ms\tmin_ms\timages_per_s\n");
  int rc = 0;
  for (const char *b = batches; rc == 0 && *b;) {
    char *end;
    const long n = strtol(b, &end, 10);
    if (end == b || n < 1 || n > 4096) {
      fprintf(stderr, "wk_bench_infer: bad batch list '%s'\n", batches);
      rc = 2;
      break;
    }
    rc = run_batch(net, (int)n, warmup, runs, profile, turns);
    b = *end == ',' ? end + 1 : end;
  }
  wk_net_destroy(net);
  wk_model_meta_free(&meta);
  wk_ctx_destroy(ctx);
  return rc;
}
