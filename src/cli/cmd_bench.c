/* cmd_bench.c - `whisker bench`: training throughput and batch-1 latency of a
 * zoo model, or of a model file, on synthetic data, the same measurement as
 * scripts/bench_train_torch.py makes for PyTorch (scripts/bench_train.sh runs
 * both side by side). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/launch.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "cuda/cuda.h"
#include "dist/dist.h"
#include "modelio/model.h"
#include "nn/zoo.h"
#include "train/ddp.h"
#include "train/trainer.h"
#include "whisker.h"

typedef struct wk_bench_opts {
  const char *model;
  int batch, size, classes, threads, steps, warmup, latency_runs, infer_runs;
  double bucket_mb;
  int device, procs;
  const char *gpus, *precision;
  bool json, profile;
  bool size_set, classes_set; /* given on the command line */
} wk_bench_opts;

static void wk_usage_bench(FILE *f) {
  fprintf(f,
          "usage: whisker bench [--model resnet18|FILE] [--batch 32] [--size 224] [--classes 1000]\n"
          "                     [--threads N] [--steps 5] [--warmup 2] [--latency-runs 30]\n"
          "                     [--infer-runs 3]\n"
          "                     [--profile] [--json] [--bucket-mb 25]\n"
          "                     [--device cpu|cuda[:N]|auto] [--precision auto|fp32|tf32|bf16|fp16]\n"
          "                     [--gpus 0,1,.. | --procs N]\n\n"
          "Measures training images/s (forward + backward + SGD step with momentum 0.9 and\n"
          "weight decay 5e-4 on a fixed random batch, after warm-up steps), batch-1 inference\n"
          "latency (median of eval-mode forwards), inference images/s at --batch (median of\n"
          "--infer-runs eval-mode forwards after one warm-up; 0 skips it) and peak resident\n"
          "memory. --model is a built-in architecture (smallcnn, resnet18, resnet34,\n"
          "resnet50, mobilenetv2; random weights) or a model file (e.g. one 'whisker\n"
          "import' or 'whisker finetune' wrote; its input size and classes, every layer\n"
          "trained). --steps 0 skips training (and its warm-up): the network only runs\n"
          "inference, as classify's does (on a GPU its values then share memory by when\n"
          "the forward needs them). --profile adds the training step's time per op type and\n"
          "its slowest nodes (on a GPU: the device's time per node, CUDA graphs off, with\n"
          "each convolution's cuDNN algorithms); with --steps 0, the inference forwards'.\n"
          "Under an MPI launcher (mpirun -np R whisker bench ...) the\n"
          "steps are data-parallel (train/ddp.h): --batch per rank, gradients averaged\n"
          "over the ranks in --bucket-mb buckets, images/s counted over all ranks.\n"
          "--gpus and --procs start those ranks as 'whisker train' does; --gpus N with\n"
          "one GPU runs the NCCL path in one process, for its cost against --device cuda:N.\n");
}

static int wk_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int wk_bench_parse(int argc, char **argv, wk_bench_opts *o) {
  *o = (wk_bench_opts){.model = "resnet18", .batch = 32, .size = 224, .classes = 1000,
                       .threads = 0, .steps = 5, .warmup = 2, .latency_runs = 30,
                       .infer_runs = 3,
                       .bucket_mb = 25, .device = WK_DEVICE_UNSET, .precision = "auto"};
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      wk_usage_bench(stdout);
      return -1;
    }
    if (!strcmp(argv[i], "--json")) {
      o->json = true;
      continue;
    }
    if (!strcmp(argv[i], "--profile")) {
      o->profile = true;
      continue;
    }
    int r;
    o->size_set |= !strcmp(argv[i], "--size");
    o->classes_set |= !strcmp(argv[i], "--classes");
    if ((r = wk_arg_str("bench", argc, argv, &i, "--model", &o->model)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--batch", 2, 4096, &o->batch)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--size", 16, 1024, &o->size)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--classes", 1, 100000, &o->classes)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--threads", 1, 1024, &o->threads)) ||
        (r = wk_arg_double("bench", argc, argv, &i, "--bucket-mb", 0.001, 4096, &o->bucket_mb)) ||
        (r = wk_arg_device("bench", argc, argv, &i, &o->device)) ||
        (r = wk_arg_str("bench", argc, argv, &i, "--gpus", &o->gpus)) ||
        (r = wk_arg_str("bench", argc, argv, &i, "--precision", &o->precision)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--procs", 1, 1024, &o->procs)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--steps", 0, 100000, &o->steps)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--warmup", 0, 100000, &o->warmup)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--latency-runs", 1, 100000,
                        &o->latency_runs)) ||
        (r = wk_arg_int("bench", argc, argv, &i, "--infer-runs", 0, 100000, &o->infer_runs))) {
      if (r < 0) return WK_EXIT_USAGE;
      continue;
    }
    return wk_arg_unknown("bench", argv[i], wk_usage_bench);
  }
  wk_precision p;
  bool is_auto;
  if (wk_precision_parse_auto(o->precision, &p, &is_auto) != WK_OK) {
    fprintf(stderr, "whisker bench: %s\n", wk_last_error());
    return WK_EXIT_USAGE;
  }
  return 0;
}

/* --profile: a training step's (train) or an inference forward's time by op,
 * what it spent outside the nodes (input, loss, optimizer, the host's waits),
 * and the slowest nodes with their output's shape and, on a GPU, what ran
 * them. `step_s`: the `runs` timed steps' (or forwards') wall time. */
#define WK_PROFILE_TOP 15
typedef struct wk_node_time {
  int node;
  double s;
} wk_node_time;

/* Slowest first; ties in node order. */
static int wk_cmp_node_time(const void *a, const void *b) {
  const wk_node_time *x = a, *y = b;
  if (x->s != y->s) return x->s < y->s ? 1 : -1;
  return (x->node > y->node) - (x->node < y->node);
}

static void wk_print_profile(const wk_net *net, int runs, bool train, bool gpu, double step_s) {
  double f[WK_NODE_OP_COUNT] = {0}, b[WK_NODE_OP_COUNT] = {0}, tot = 0;
  const int n = wk_net_n_nodes(net);
  wk_node_time *by = malloc((size_t)(n > 0 ? n : 1) * sizeof *by);
  if (!by) {
    fprintf(stderr, "whisker bench: --profile: out of memory\n");
    return;
  }
  for (int i = 0; i < n; i++) {
    double fs, bs;
    wk_net_profile_get(net, i, &fs, &bs);
    f[wk_net_node(net, i)->op] += fs;
    b[wk_net_node(net, i)->op] += bs;
    tot += fs + bs;
    by[i] = (wk_node_time){i, fs + bs};
  }
  qsort(by, (size_t)n, sizeof *by, wk_cmp_node_time);
  const int n_top = n < WK_PROFILE_TOP ? n : WK_PROFILE_TOP;
  const double ms = 1e3 / runs;
  const char *per = train ? "step" : "forward";
  fprintf(stderr, "time per %s by op (ms; %s):\n",
          train ? "training step" : "inference forward",
          gpu ? "the device's, between CUDA events around each node, no CUDA graphs"
              : "wall time of each node");
  for (int op = 0; op < WK_NODE_OP_COUNT; op++)
    if (f[op] + b[op] > 0 && train)
      fprintf(stderr, "  %-16s forward %8.2f  backward %8.2f  (%4.1f%%)\n",
              wk_node_op_name((wk_node_op)op), ms * f[op], ms * b[op],
              tot > 0 ? 100.0 * (f[op] + b[op]) / tot : 0.0);
    else if (f[op] > 0)
      fprintf(stderr, "  %-16s forward %8.2f  (%4.1f%%)\n", wk_node_op_name((wk_node_op)op),
              ms * f[op], tot > 0 ? 100.0 * f[op] / tot : 0.0);
  fprintf(stderr, "  %-16s %8.2f of the %s's %.2f (%s)\n", "outside nodes",
          ms * (step_s - tot > 0 ? step_s - tot : 0.0), per, ms * step_s,
          train ? "input, loss, optimizer, waits" : "input, output, waits");
  fprintf(stderr, "slowest nodes (ms per %s):\n  %-24s %-15s %-14s %8s %8s %6s%s\n", per,
          "node", "op", "output", "forward", train ? "backward" : "", "share",
          gpu ? "  what ran it" : "");
  for (int k = 0; k < n_top; k++) {
    const int i = by[k].node;
    const wk_node *nd = wk_net_node(net, i);
    double fs, bs;
    wk_net_profile_get(net, i, &fs, &bs);
    char shape[48];
    wk_node_shape_str(nd, shape, sizeof shape);
    char op[32];
    snprintf(op, sizeof op, "%s", wk_node_op_name(nd->op));
    if (nd->op == WK_NODE_CONV)
      snprintf(op, sizeof op, "conv %dx%d/%d", nd->kh, nd->kw, nd->conv.stride_h);
    char back[16] = "";
    if (train) snprintf(back, sizeof back, "%8.2f", ms * bs);
    fprintf(stderr, "  %-24s %-15s %-14s %8.2f %8s %5.1f%%%s%s\n", nd->name, op, shape, ms * fs,
            back, tot > 0 ? 100.0 * by[k].s / tot : 0.0, gpu ? "  " : "",
            gpu ? wk_net_profile_note(net, i) : "");
  }
  free(by);
}

int wk_cmd_bench(int argc, char **argv) {
  wk_bench_opts o;
  int rc = wk_bench_parse(argc, argv, &o);
  if (rc) return rc < 0 ? WK_EXIT_OK : rc;
  wk_ctx *ctx = NULL;
  wk_net *net = NULL;
  wk_trainer *t = NULL;
  wk_dist *dist = NULL;
  wk_ddp *ddp = NULL;
  bool nccl_single = false; /* data-parallel steps (batch per rank) when dist opens */
  rc = wk_launch_world("bench", o.gpus, o.procs, &o.device, &nccl_single, &o.threads, argc, argv,
                       &dist);
  if (rc >= 0) return rc;
  const int world = wk_dist_size(dist);
  wk_tensor x = {0}, labels = {0}, x1 = {0};
  double *times = NULL;
  rc = WK_EXIT_FAIL;
  wk_arch_opts ao = wk_arch_opts_default(o.classes);
  ao.in_h = ao.in_w = o.size;
  wk_model_meta meta = {0};
  wk_train_config cfg = {.optim = wk_optim_config_default(WK_OPTIM_SGD),
                         .schedule = wk_schedule_default(WK_SCHEDULE_CONSTANT, 0.01, 1),
                         .seed = 1};
  cfg.optim.weight_decay = 5e-4;
  cfg.optim.decay_norm_and_bias = true; /* as torch.optim.SGD with one group */
  const int total = o.steps ? o.warmup + o.steps : 0; /* --steps 0: inference only */
  if (wk_ctx_create(&ctx, o.threads) != WK_OK) goto fail;
  /* a built-in architecture's name, else a model file's path */
  const bool arch = wk_zoo_has(o.model);
  const bool from_file =
      !arch && (strchr(o.model, '/') || strchr(o.model, '.') || !access(o.model, F_OK));
  if (!arch && !from_file) {
    wk_fail(WK_ERR_INVALID_ARG, "--model '%s': not a built-in architecture (%s) nor a model file",
            o.model, wk_zoo_names_text());
    goto fail;
  }
  if (!from_file) {
    if (wk_zoo_build(ctx, o.model, &ao, 1, &net) != WK_OK) goto fail;
  } else {
    if (wk_model_load(ctx, o.model, &net, &meta) != WK_OK) goto fail;
  }
  /* a file's network takes its own input (any size and channels) and gives its own classes */
  int in_h, in_w, in_c;
  wk_net_input_shape(net, &in_h, &in_w, &in_c);
  if (from_file && ((o.size_set && (o.size != in_h || o.size != in_w)) ||
                    (o.classes_set && o.classes != meta.n_classes))) {
    wk_fail(WK_ERR_INVALID_ARG, "%s: its input is %dx%d with %d classes; --size and "
            "--classes apply to the built-in architectures", o.model, in_h, in_w,
            meta.n_classes);
    goto fail;
  }
  if (from_file) o.classes = meta.n_classes;
  const int64_t xs[4] = {o.batch, in_h, in_w, in_c}, ls[1] = {o.batch};
  const int64_t x1s[4] = {1, in_h, in_w, in_c};
  if (wk_trainer_create(net, &cfg, &t) != WK_OK || wk_tensor_alloc(&labels, WK_I32, 1, ls) != WK_OK)
    goto fail;
  wk_precision prec = WK_PRECISION_FP32;
  bool prec_auto = false;
  if (wk_precision_parse_auto(o.precision, &prec, &prec_auto) != WK_OK) goto fail;
  if (prec_auto) wk_net_set_precision_auto(net);
  else if (wk_net_set_precision(net, prec) != WK_OK) goto fail;
  if (wk_net_place(net, o.device) != WK_OK) goto fail;
  /* every rank alike (device, bf16, how a GPU step runs), as train checks */
  if (wk_trainer_ranks_agree(dist, world, net) != WK_OK) goto fail;
  if (world > 1 || (nccl_single && wk_net_on_gpu(net))) {
    const wk_ddp_opts dd = {.bucket_bytes = (size_t)(o.bucket_mb * 1048576.0),
                            .nccl_single = nccl_single};
    if (wk_ddp_create(dist, net, &dd, &ddp) != WK_OK || wk_ddp_broadcast_model(ddp) != WK_OK)
      goto fail;
    wk_trainer_set_ddp(t, ddp);
  }
  /* the batches as training and classify feed them: 8-bit RGB normalised on the GPU where
   * the network runs there (a quarter of the bytes to move), else float */
  const wk_preprocess pre = from_file ? meta.pre : wk_preprocess_default(224);
  bool u8 = false;
  if (wk_net_prefer_u8(net, pre.mean, pre.std, &u8) != WK_OK ||
      wk_tensor_alloc(&x, u8 ? WK_U8 : WK_F32, 4, xs) != WK_OK ||
      wk_tensor_alloc(&x1, u8 ? WK_U8 : WK_F32, 4, x1s) != WK_OK)
    goto fail;
  const int n_times = total + o.latency_runs + 3 + o.infer_runs + 1;
  if (!(times = malloc((size_t)n_times * sizeof *times))) goto fail;
  wk_rng r = wk_rng_make(1, 0);
  wk_tensor *xx[2] = {&x, &x1};
  for (int k = 0; k < 2; k++)
    for (int64_t i = 0; i < wk_tensor_numel(xx[k]); i++) {
      if (u8) ((uint8_t *)xx[k]->data)[i] = (uint8_t)wk_rng_below(&r, 256);
      else ((float *)xx[k]->data)[i] = wk_rng_normal(&r);
    }
  for (int i = 0; i < o.batch; i++) ((int32_t *)labels.data)[i] = (int32_t)wk_rng_below(&r, (uint32_t)o.classes);
  const bool stage = wk_trainer_stage_wanted(t);
  for (int s = 0; s < total; s++) {
    if (s == o.warmup && o.profile && wk_net_profile_enable(net) != WK_OK) goto fail;
    double t0 = wk_now_s();
    float loss;
    /* as training does on a GPU: the next step's batch (here the same, unchanged) goes up
     * while this one computes */
    if (s + 1 < total && stage) wk_trainer_set_next(t, &x);
    if (wk_trainer_step(t, &x, &labels, &loss, NULL) != WK_OK) goto fail;
    times[s] = wk_now_s() - t0;
    if (!o.json && wk_dist_rank(dist) == 0)
      fprintf(stderr, "step %d: %.3f s, loss %.4f%s\n", s, times[s], (double)loss,
              s < o.warmup ? " (warm-up)" : "");
  }
  double sum = 0;
  for (int s = o.warmup; s < total; s++) sum += times[s];
  double ips = 0, step_med = 0; /* over all ranks */
  if (o.steps) {
    ips = (double)o.batch * world * o.steps / sum;
    qsort(times + o.warmup, (size_t)o.steps, sizeof *times, wk_cmp_double);
    step_med = times[o.warmup + o.steps / 2];
  }
  if (o.profile && o.steps) {
    if (wk_net_profile_collect(net) != WK_OK) goto fail;
    wk_print_profile(net, o.steps, true, wk_net_on_gpu(net), sum);
  }
  wk_tensor out;
  for (int i = 0; i < o.latency_runs + 3; i++) {
    double t0 = wk_now_s();
    if (wk_net_forward(net, &x1, false, &out) != WK_OK) goto fail;
    times[i] = wk_now_s() - t0;
  }
  qsort(times + 3, (size_t)o.latency_runs, sizeof *times, wk_cmp_double);
  const double lat_ms = 1e3 * times[3 + o.latency_runs / 2];
  /* inference at the training batch: one warm-up, then the median; on a GPU each forward
   * stages the next one's batch (here the same, unchanged) while it computes, as eval does */
  double infer_ips = 0.0;
  /* --steps 0 --profile: the timed forwards (after the warm-up) are profiled */
  const bool infer_profile = o.profile && !o.steps && o.infer_runs > 0;
  double infer_sum = 0;
  for (int i = 0; o.infer_runs > 0 && i < o.infer_runs + 1; i++) {
    if (i == 1 && infer_profile && wk_net_profile_enable(net) != WK_OK) goto fail;
    double t0 = wk_now_s();
    if (wk_net_forward_next(net, &x, false, i < o.infer_runs ? &x : NULL, &out) != WK_OK)
      goto fail;
    times[i] = wk_now_s() - t0;
    if (i >= 1) infer_sum += times[i];
  }
  if (infer_profile) {
    if (wk_net_profile_collect(net) != WK_OK) goto fail;
    wk_print_profile(net, o.infer_runs, false, wk_net_on_gpu(net), infer_sum);
  }
  if (o.infer_runs > 0) {
    qsort(times + 1, (size_t)o.infer_runs, sizeof *times, wk_cmp_double);
    infer_ips = (double)o.batch / times[1 + o.infer_runs / 2];
  }
  /* the process's peak resident memory over the whole run */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mb = (double)ru.ru_maxrss / 1024.0;
  /* the device memory the run took: the caching allocator's peaks */
  wk_gpu_memory mem = {0};
  if (wk_net_on_gpu(net) && wk_net_gpu_memory(net, &mem) != WK_OK) goto fail;
  const double gpu_peak_mb = wk_mib(mem.cache.peak_allocated_bytes);
  const double gpu_held_mb = wk_mib(mem.cache.peak_reserved_bytes);
  /* batchnorm groups fused with their relu (cuda.h's $WHISKER_BN_FUSE) */
  wk_gpu_graph_stats gs = {0};
  if (wk_net_on_gpu(net) && wk_net_gpu_graph_stats(net, &gs) != WK_OK) goto fail;
  const int bn_fused = gs.bn_fuse_groups - gs.bn_fuse_refused;
  if (wk_dist_rank(dist) != 0) {
    /* rank 0 speaks for the run */
  } else if (o.json) {
    printf("{\"impl\": \"whisker %s %s\", \"model\": \"%s\", \"batch\": %d, \"size\": %d, "
           "\"threads\": %d, \"ranks\": %d, \"data_parallel\": \"%s\", \"precision\": \"%s\", \"input\": \"%s\", "
           "\"fp16_skipped_steps\": %lld, \"train_images_per_s\": %.3f, "
           "\"train_step_s\": %.4f, \"infer_b1_latency_ms\": %.3f, \"infer_images_per_s\": %.3f, "
           "\"peak_rss_mb\": %.1f, \"gpu_peak_in_use_mb\": %.1f, \"gpu_peak_held_mb\": %.1f, "
           "\"bn_fused\": %d, \"bn_unfused\": %d, \"bn_alone\": %d, \"bn_own_runs\": %lld}\n",
           wk_version(), wk_net_on_gpu(net) ? "cuda" : wk_impl_name(ctx->impl), o.model, o.batch,
           in_h, ctx->n_threads, world, wk_ddp_backend(ddp),
           wk_precision_name(wk_net_precision(net)), u8 ? "u8" : "f32",
           (long long)wk_trainer_skipped_steps(t), ips, step_med, lat_ms, infer_ips, rss_mb,
           gpu_peak_mb, gpu_held_mb, bn_fused, gs.bn_fuse_refused, gs.bn_solo_groups,
           (long long)gs.bn_own_runs);
  } else {
    printf("%s, batch %d, %dx%d, %d threads (%s)\n", o.model, o.batch, in_h, in_w,
           ctx->n_threads, wk_net_on_gpu(net) ? "cuda" : wk_impl_name(ctx->impl));
    if (o.steps) printf("training   %.2f images/s (median step %.3f s)\n", ips, step_med);
    else printf("training   skipped (--steps 0)\n");
    printf("inference  %.2f ms at batch 1 (median of %d)\n", lat_ms, o.latency_runs);
    if (o.infer_runs > 0)
      printf("inference  %.2f images/s at batch %d (median of %d)\n", infer_ips, o.batch,
             o.infer_runs);
    if (wk_net_on_gpu(net)) /* values and gradients live on the device: the next line */
      printf("peak RSS   %.0f MB (host)\n", rss_mb);
    else
      printf("peak RSS   %.0f MB (activations and gradients %.0f MB, parameters %.0f MB)\n",
             rss_mb, (double)wk_net_activation_bytes(net) / 1e6,
             (double)wk_net_n_elems(net) * 4.0 / 1e6);
    if (wk_net_on_gpu(net))
      printf("GPU memory %.0f MiB at most in use, %.0f MiB at most held (caching allocator: "
             "%lld device allocations for %lld requests), of %.0f MiB on the device\n",
             gpu_peak_mb, gpu_held_mb, (long long)mem.cache.n_segments,
             (long long)mem.cache.n_allocs, wk_mib(mem.device_total_bytes));
    if (gs.bn_fuse_groups) {
      char solo[64] = "";
      if (gs.bn_solo_groups)
        snprintf(solo, sizeof solo, " (%d of them a batchnorm alone)", gs.bn_solo_groups);
      printf("fused      %d of %d batchnorm + relu groups%s%s%s\n", bn_fused, gs.bn_fuse_groups,
             solo, gs.bn_fuse_note[0] ? ": " : "", gs.bn_fuse_note);
    }
    if (gs.bn_own_note[0]) printf("batchnorm  on whisker's kernels: %s\n", gs.bn_own_note);
  }
  rc = WK_EXIT_OK;
fail:
  if (rc != WK_EXIT_OK) {
    wk_launch_report("bench", dist);
    wk_dist_abort(dist, WK_EXIT_FAIL);
  }
  free(times);
  wk_model_meta_free(&meta);
  wk_tensor_free(&x);
  wk_tensor_free(&x1);
  wk_tensor_free(&labels);
  wk_trainer_destroy(t);
  wk_ddp_destroy(ddp);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
  wk_dist_close(dist);
  return rc;
}
