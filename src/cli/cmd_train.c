/* cmd_train.c - `whisker train DATA_DIR --out RUN_DIR ...`. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/launch.h"
#include "core/log.h"
#include "dist/dist.h"
#include "nn/zoo.h"
#include "train/fit.h"
#include "whisker.h"

static void wk_usage_train(FILE *f) {
  fprintf(f,
          "usage: whisker train DATA_DIR --out RUN_DIR [--model resnet18] [--epochs 10]\n"
          "                     [--batch 32] [--size 224] [--val DIR | --val-pct 20]\n"
          "                     [--lr X | --lr-find] [--optimizer sgd|adamw]\n"
          "                     [--schedule onecycle|cosine|step|constant]\n"
          "                     [--weight-decay X] [--label-smoothing 0.1] [--width 1.0]\n"
          "                     [--crop-scale 0.08] [--seed 1] [--workers 2] [--threads N]\n"
          "                     [--resume | --overwrite]\n"
          "                     [--pretrained MODEL [--head-epochs 1] [--lr-min-scale 0.01]]\n"
          "                     [--device cpu|cuda[:N]|auto]\n"
          "                     [--precision auto|fp32|tf32|bf16|fp16]\n"
          "                     [--gpus 0,1,.. | --procs N] [--sync-bn] [--bucket-mb 25]\n\n"
          "Trains a classifier on DATA_DIR (a folder per class; with train/ and val/ or\n"
          "validation/ inside, those are used). RUN_DIR receives model.safetensors (best by\n"
          "validation accuracy), checkpoint.safetensors (after every epoch), metrics.csv and\n"
          "report.html. --resume continues the run in RUN_DIR exactly where its checkpoint\n"
          "left it; a RUN_DIR that holds a run is refused unless --resume or --overwrite\n"
          "(a new run in its place) is given. Ctrl-C (SIGINT) or SIGTERM saves a\n"
          "checkpoint and exits 1; a second one exits at once (the last checkpoint stays\n"
          "whole). A NaN or infinite loss stops the run. --lr-find first sweeps the\n"
          "learning rate from 1e-7 to 10 over 100 steps (fastai's range test), keeps the\n"
          "curve in RUN_DIR/lr_find.csv, undoes the sweep's updates and trains at a tenth\n"
          "of the rate with the lowest smoothed loss.\n"
          "--crop-scale is the least share of a photo the random crop keeps (0.08, as for\n"
          "ImageNet; 0.3 or more suits a small dataset trained from scratch).\n"
          "Models: smallcnn, resnet18, resnet34, resnet50, mobilenetv2.\n"
          "--pretrained MODEL fine-tunes a trained model instead: see 'whisker finetune --help'.\n"
          "\n"
          "Several processes can train one model: --gpus 0,1,2,3 starts one per GPU and\n"
          "--procs N starts N on the CPU (both through Open MPI's mpirun, on this\n"
          "machine); across machines start whisker under an MPI launcher yourself,\n"
          "e.g. 'mpirun -np 8 whisker train ... --device cuda' (rank r of a machine takes\n"
          "its GPU r, or the r-th of --gpus). --batch is then per process; each step\n"
          "covers batch x processes images, gradients are averaged over the processes in\n"
          "buckets of --bucket-mb while backward runs, and only the first process writes\n"
          "RUN_DIR. --sync-bn computes batchnorm statistics over all processes' batches\n"
          "(the same training as one process with the whole batch); by default each\n"
          "process keeps its own. A process that fails or hangs stops all of them within\n"
          "$WHISKER_DIST_TIMEOUT seconds (300). --threads defaults to the cores divided\n"
          "among the processes on each machine. On GPUs the gradients are averaged with\n"
          "NCCL (--sync-bn too); --gpus with one GPU runs that path in one process (to\n"
          "measure its cost against plain --device cuda:N).\n"
          "\n"
          "--device cuda[:N] trains on a GPU (cuDNN; fails clearly when there is none),\n"
          "--device auto on the first GPU that works, else the CPU with a warning. The\n"
          "default is the CPU: the GPU path has not yet been verified on a GPU.\n"
          "--precision auto (the default) is bf16 on a GPU that has it (Ampere or newer),\n"
          "else fp32; fp32 computes in float32 on the GPU as on the CPU (the CPU's only);\n"
          "tf32 runs convolutions and linear layers on TF32 tensor cores (faster, 10-bit\n"
          "mantissas in the products); bf16 and fp16 are autocast: activations and\n"
          "their gradients stored in 16 bits (half the memory), convolutions and linear\n"
          "layers on 16-bit tensor cores, batchnorm statistics, master weights, the\n"
          "optimizer and the loss in float32; fp16 with dynamic loss scaling. On the\n"
          "GPU a batchnorm followed by relu (or by the residual add and relu) runs as\n"
          "one cuDNN call where cuDNN takes it, any other batchnorm alone through the\n"
          "same call; $WHISKER_BN_FUSE=groups runs those others plain, =0 fuses\n"
          "nothing. A batchnorm cuDNN refuses in 16 bits runs on whisker's own\n"
          "kernels ($WHISKER_GPU_OWN_BN=1 makes every batchnorm use them).\n"
          "cuDNN's convolution algorithms are timed once per layer shape and the fastest\n"
          "kept (the first steps take longer); $WHISKER_CUDNN_ALGO=heuristic takes cuDNN's\n"
          "heuristics instead, which choose alike in every run (timing may choose\n"
          "differently between algorithms of about the same speed, which round\n"
          "differently); =find times for eval and classify too (they take the heuristics\n"
          "by default). The algorithms' workspace is at most $WHISKER_GPU_WORKSPACE_MB\n"
          "(1024). $WHISKER_CUDNN_DETERMINISTIC=1 keeps to the algorithms cuDNN calls\n"
          "deterministic (no atomics): every run of a step computes the same bits.\n"
          "A training step on a GPU is one call: the host waits for the GPU once per\n"
          "step, for the loss; $WHISKER_GPU_FUSED_STEP=0 takes stepwise calls instead\n"
          "(four waits; the same numbers). $WHISKER_CUDA_GRAPH=1 (experimental, not yet\n"
          "verified on a GPU) runs that call as one CUDA graph once its batch size has\n"
          "run twice (not with --gpus), computing what the uncaptured step computes.\n"
          "Device memory is cached (freed buffers serve later ones; the first epoch\n"
          "logs the peak); $WHISKER_GPU_CACHE=0 makes every buffer its own cudaMalloc.\n"
          "Batches go to a GPU as 8-bit images (the augmented image rounded to whole\n"
          "levels, normalised on the GPU) and stay float on the CPU, so the two devices\n"
          "train on slightly different inputs; $WHISKER_INPUT_U8=1 gives the CPU the\n"
          "8-bit batches too, =0 gives a GPU float batches.\n");
}

static void wk_usage_finetune(FILE *f) {
  fprintf(f,
          "usage: whisker finetune DATA_DIR --from MODEL --out RUN_DIR [--epochs 4]\n"
          "                        [--head-epochs 1] [--lr 0.002] [--lr-min-scale 0.01]\n"
          "                        [--optimizer adamw|sgd] [--size N] [--batch 32] [...]\n\n"
          "Fine-tunes MODEL (e.g. an ImageNet network from 'whisker import') on DATA_DIR: a\n"
          "new head for DATA_DIR's classes is trained for --head-epochs with the body frozen\n"
          "(its batchnorms keep their statistics), then the whole network with one-cycle\n"
          "and discriminative learning rates: the head at half of --lr, earlier layers\n"
          "geometrically lower, the first at --lr-min-scale of the head's. The input size\n"
          "and normalisation are MODEL's unless --size is given. Every option of\n"
          "'whisker train' applies (progress, report.html, checkpoints, --resume).\n");
}

/* finetune takes train's options too: the options a mistyped one is matched to */
static void wk_usage_finetune_all(FILE *f) {
  wk_usage_finetune(f);
  wk_usage_train(f);
}

static void wk_on_sigint(int sig) {
  (void)sig;
  wk_fit_request_stop();
}

static int wk_train_main(const char *cmd, int argc, char **argv, bool finetune) {
  wk_fit_config c = wk_fit_config_default();
  const char *optim = NULL, *sched = "onecycle", *precision = "auto";
  int threads = 0, seed = 1, epochs = 0, size = 0, procs = 0;
  const char *gpus_arg = NULL;
  wk_opts_seen seen = {0};
  double width = 1.0, smoothing = 0.1, crop = 0.08, bucket_mb = 25;
  c.progress_bar = wk_stderr_is_tty();
  c.device = WK_DEVICE_UNSET; /* the CPU unless --device or --gpus says otherwise */
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      (finetune ? wk_usage_finetune : wk_usage_train)(stdout);
      return WK_EXIT_OK;
    }
    int r = 0;
    bool *flag = !strcmp(a, "--resume")      ? &c.resume
                 : !strcmp(a, "--overwrite") ? &c.overwrite
                 : !strcmp(a, "--lr-find")   ? &c.lr_find
                 : !strcmp(a, "--sync-bn")   ? &c.sync_bn
                                             : NULL;
    if (flag) {
      *flag = true;
      wk_seen_add(&seen, a);
      continue;
    }
    if ((r = wk_arg_str(cmd, argc, argv, &i, "--out", &c.out_dir)) ||
        (r = wk_arg_str(cmd, argc, argv, &i, "--model", &c.arch)) ||
        (r = wk_arg_str(cmd, argc, argv, &i, finetune ? "--from" : "--pretrained",
                        &c.pretrained)) ||
        (r = wk_arg_str(cmd, argc, argv, &i, "--val", &c.val_dir)) ||
        (r = wk_arg_str(cmd, argc, argv, &i, "--optimizer", &optim)) ||
        (r = wk_arg_str(cmd, argc, argv, &i, "--schedule", &sched)) ||
        (r = wk_arg_int(cmd, argc, argv, &i, "--epochs", 1, WK_FIT_MAX_EPOCHS, &epochs)) ||
        (r = wk_arg_int(cmd, argc, argv, &i, "--head-epochs", 0, WK_FIT_MAX_EPOCHS, &c.head_epochs)) ||
        (r = wk_arg_int(cmd, argc, argv, &i, "--batch", 2, 65536, &c.batch)) ||
        (r = wk_arg_int(cmd, argc, argv, &i, "--size", 16, WK_FIT_MAX_SIZE, &size)) ||
        (r = wk_arg_int(cmd, argc, argv, &i, "--workers", 1, 256, &c.workers)) ||
        (r = wk_arg_int(cmd, argc, argv, &i, "--threads", 1, 1024, &threads)) ||
        (r = wk_arg_int(cmd, argc, argv, &i, "--seed", 0, 2147483647, &seed)) ||
        (r = wk_arg_double(cmd, argc, argv, &i, "--val-pct", 1, 90, &c.val_pct)) ||
        (r = wk_arg_double(cmd, argc, argv, &i, "--lr", 1e-8, 100, &c.lr)) ||
        (r = wk_arg_double(cmd, argc, argv, &i, "--lr-min-scale", 1e-6, 1, &c.lr_min_scale)) ||
        (r = wk_arg_double(cmd, argc, argv, &i, "--weight-decay", 0, 10, &c.weight_decay)) ||
        (r = wk_arg_double(cmd, argc, argv, &i, "--label-smoothing", 0, 0.99, &smoothing)) ||
        (r = wk_arg_double(cmd, argc, argv, &i, "--crop-scale", 0.01, 1, &crop)) ||
        (r = wk_arg_double(cmd, argc, argv, &i, "--bucket-mb", 0.001, 4096, &bucket_mb)) ||
        (r = wk_arg_device(cmd, argc, argv, &i, &c.device)) ||
        (r = wk_arg_str(cmd, argc, argv, &i, "--gpus", &gpus_arg)) ||
        (r = wk_arg_str(cmd, argc, argv, &i, "--precision", &precision)) ||
        (r = wk_arg_int(cmd, argc, argv, &i, "--procs", 1, 1024, &procs)) ||
        (r = wk_arg_double(cmd, argc, argv, &i, "--width", 0.1, 4, &width))) {
      if (r < 0) return WK_EXIT_USAGE;
      wk_seen_add(&seen, a);
      continue;
    }
    if (a[0] == '-' || c.data_dir)
      return wk_arg_unknown(cmd, a, finetune ? wk_usage_finetune_all : wk_usage_train);
    c.data_dir = a;
  }
  /* options that are alternatives: one of each pair, never a silent winner */
  static const char *const alt[][3] = {{"--resume", "--overwrite", NULL},
                                       {"--lr", "--lr-find", NULL},
                                       {"--val", "--val-pct", NULL}};
  for (size_t g = 0; g < sizeof alt / sizeof alt[0]; g++)
    if (wk_seen_clash(cmd, &seen, alt[g])) return WK_EXIT_USAGE;
  if (finetune && wk_seen_has(&seen, "--model")) {
    fprintf(stderr, "whisker finetune: --model does not apply: the network is --from's (its "
            "head is replaced for DATA_DIR's classes)\n");
    return WK_EXIT_USAGE;
  }
  if (finetune && !c.pretrained) {
    fprintf(stderr, "whisker finetune: --from MODEL is required\n\n");
    wk_usage_synopsis(cmd, wk_usage_finetune);
    return WK_EXIT_USAGE;
  }
  /* fine-tuning defaults: a short AdamW run at the base model's input size */
  if (!optim) optim = c.pretrained ? "adamw" : "sgd";
  c.epochs = epochs ? epochs : c.pretrained ? 4 : c.epochs;
  c.size = size ? size : c.pretrained ? 0 : c.size;
  if (!c.data_dir || !c.out_dir) {
    fprintf(stderr, "whisker %s: %s\n\n", cmd,
            c.data_dir ? "--out RUN_DIR is required"
            : c.out_dir ? "DATA_DIR is required" : "DATA_DIR and --out RUN_DIR are required");
    wk_usage_synopsis(cmd, finetune ? wk_usage_finetune : wk_usage_train);
    return WK_EXIT_USAGE;
  }
  if (wk_optim_kind_parse(optim, &c.optim) != WK_OK ||
      wk_schedule_kind_parse(sched, &c.schedule) != WK_OK ||
      wk_precision_parse_auto(precision, &c.precision, &c.precision_auto) != WK_OK) {
    fprintf(stderr, "whisker %s: %s\n", cmd, wk_last_error());
    return WK_EXIT_USAGE;
  }
  /* a usage error, before any data is read or folder made */
  if (c.arch && !c.pretrained && !wk_zoo_has(c.arch)) {
    fprintf(stderr, "whisker %s: unknown --model '%s' (%s; 'whisker finetune --from MODEL' starts "
            "from a model file)\n", cmd, c.arch, wk_zoo_names_text());
    return WK_EXIT_USAGE;
  }
  c.seed = (uint64_t)seed;
  c.width = (float)width;
  c.label_smoothing = (float)smoothing;
  c.crop_scale_min = (float)crop;
  c.bucket_bytes = (size_t)(bucket_mb * 1048576.0);
  wk_dist *dist = NULL;
  const int lr = wk_launch_world(cmd, gpus_arg, procs, &c.device, &c.nccl_single, &threads, argc,
                                 argv, &dist);
  if (lr >= 0) return lr;
  c.dist = dist;
  if (wk_dist_rank(dist) != 0) { /* one voice: the others speak only of trouble */
    wk_log_set_level(WK_LOG_WARN);
    c.progress_bar = false;
  }
  wk_ctx *ctx;
  if (wk_ctx_create(&ctx, threads) != WK_OK) {
    fprintf(stderr, "whisker %s: %s\n", cmd, wk_last_error());
    wk_dist_abort(dist, WK_EXIT_FAIL);
    wk_dist_close(dist);
    return WK_EXIT_FAIL;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = wk_on_sigint;
  /* the first signal asks for a checkpoint; a second one, should saving hang,
   * gets the default action (checkpoints are written atomically, so the
   * previous one survives) */
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  wk_fit_result res;
  wk_status s = wk_fit(ctx, &c, &res);
  wk_ctx_destroy(ctx);
  if (s != WK_OK) {
    wk_launch_report(cmd, dist);
    wk_dist_abort(dist, WK_EXIT_FAIL); /* the other ranks must not wait for this one */
    wk_dist_close(dist);
    return WK_EXIT_FAIL;
  }
  const bool writer = wk_dist_rank(dist) == 0;
  wk_dist_close(dist);
  if (res.interrupted) return WK_EXIT_FAIL;
  if (!writer) return WK_EXIT_OK;
  printf("trained %d epochs: best validation accuracy %.4f, last %.4f (loss %.4f); model in "
         "%s/model.safetensors\n", res.epochs_done, res.best_val_acc, res.last_val_acc,
         res.last_val_loss, c.out_dir);
  return WK_EXIT_OK;
}

int wk_cmd_train(int argc, char **argv) { return wk_train_main("train", argc, argv, false); }
int wk_cmd_finetune(int argc, char **argv) { return wk_train_main("finetune", argc, argv, true); }
