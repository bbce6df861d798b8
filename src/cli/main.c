/* main.c - the whisker program: global options and subcommand dispatch. Results
 * go to stdout, logs and errors to stderr. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "whisker.h"

typedef struct {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} wk_command;

static const wk_command wk_commands[] = {
    {"train", "train a classifier on a folder of images (a folder per class)", wk_cmd_train},
    {"finetune", "fine-tune a trained model (e.g. an imported ImageNet one) on a new folder",
     wk_cmd_finetune},
    {"eval", "accuracy, confusion matrix and per-class scores of a model on a folder",
     wk_cmd_eval},
    {"classify", "classify photos with a trained model", wk_cmd_classify},
    {"clicks", "clickstream logs to images; score sessions; the Balabit protocol", wk_cmd_clicks},
    {"info", "describe a model file: architecture, parameters, classes, preprocessing",
     wk_cmd_info},
    {"convert", "rewrite a model file with half- (f16) or single-precision weights",
     wk_cmd_convert},
    {"import", "convert an ONNX classifier (float or int8-quantized) into a model file",
     wk_cmd_import},
    {"export", "write a model file as a float ONNX graph (opset 13) for ONNX Runtime",
     wk_cmd_export},
    {"bench", "measure training throughput and inference latency of a model",
     wk_cmd_bench},
    {"system", "show the version, the CPU and GPU backends and the thread count", wk_cmd_system},
};

enum { WK_N_COMMANDS = sizeof wk_commands / sizeof wk_commands[0] };

static void wk_usage(FILE *f) {
  fprintf(f,
          "usage: whisker [--version] [--help] COMMAND [ARGS]\n"
          "\n"
          "whisker trains and runs convolutional image classifiers.\n"
          "\n"
          "commands:\n");
  for (int i = 0; i < WK_N_COMMANDS; i++)
    fprintf(f, "  %-10s %s\n", wk_commands[i].name, wk_commands[i].summary);
  fprintf(f,
          "\n"
          "'whisker COMMAND --help' (or 'whisker help COMMAND') describes a command.\n"
          "\n"
          "environment:\n"
          "  WHISKER_MODEL=FILE       classify's model when --model is not given\n"
          "  WHISKER_THREADS=N        CPU threads (the CPUs the process may use)\n"
          "  WHISKER_LOG=error|warn|info|debug   how much goes to stderr (info)\n"
          "  WHISKER_MEM_LIMIT_MB=N   refuse to hold more activations than this\n"
          "  WHISKER_IMPL=ref|cpu     the CPU ops: oneDNN and whisker's kernels (cpu), or\n"
          "                           the plain reference loops (ref); a GPU is --device's\n"
          "  WHISKER_DIST_TIMEOUT=S   several processes: stop all when one hangs (300)\n"
          "  WHISKER_MPIRUN=PATH      the launcher --gpus and --procs start (mpirun)\n"
          "  OMP_WAIT_POLICY, GOMP_SPINCOUNT   how OpenMP's idle threads wait; unset,\n"
          "                           whisker spins them briefly (GOMP_SPINCOUNT=3000)\n"
          "GPU tuning, described in 'whisker train --help' and docs/gpu/README.md:\n"
          "  WHISKER_CUDNN_ALGO=find|heuristic, WHISKER_CUDNN_API=legacy|graph,\n"
          "  WHISKER_GPU_WORKSPACE_MB=N, WHISKER_CUDA_GRAPH=1, WHISKER_GPU_FUSED_STEP=0,\n"
          "  WHISKER_GPU_CACHE=0, WHISKER_BN_FUSE=auto|all|groups|0, WHISKER_GPU_OWN_BN=1|0,\n"
          "  WHISKER_GPU_INFER_BN=own|cudnn, WHISKER_GPU_POOL=own|cudnn,\n"
          "  WHISKER_GPU_PREFETCH=0, WHISKER_CUDNN_DETERMINISTIC=1, WHISKER_INPUT_U8=1|0\n"
          "CPU kernel switches (for measuring them): docs/networks.md.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    wk_usage(stderr);
    return WK_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") && argc > 2) { /* whisker help COMMAND: COMMAND --help */
    for (int i = 0; i < WK_N_COMMANDS; i++)
      if (!strcmp(argv[2], wk_commands[i].name)) {
        char help[] = "--help";
        char *args[] = {help, NULL};
        return wk_commands[i].run(1, args);
      }
    fprintf(stderr, "whisker help: '%s' is not a whisker command; see 'whisker --help'\n",
            argv[2]);
    return WK_EXIT_USAGE;
  }
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    wk_usage(stdout);
    return WK_EXIT_OK;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
    printf("whisker %s\n", wk_version());
    return WK_EXIT_OK;
  }
  for (int i = 0; i < WK_N_COMMANDS; i++)
    if (!strcmp(cmd, wk_commands[i].name)) return wk_commands[i].run(argc - 2, argv + 2);
  fprintf(stderr, "whisker: '%s' is not a whisker command; see 'whisker --help'\n", cmd);
  return WK_EXIT_USAGE;
}
