/* launch.h - one command, several processes: `--gpus 0,1,2,3` and `--procs N`.
 *
 * Data-parallel training runs one process per GPU (or per share of the CPU);
 * they find each other through MPI (dist/dist.h). Started by hand, whisker
 * re-executes itself under Open MPI's launcher, `mpirun -np N --bind-to none
 * /proc/self/exe CMD ARGS...` (`$WHISKER_MPIRUN` names another), on this
 * machine; each process then sees the launcher's environment, opens the MPI
 * world and takes its GPU from its place among the ranks on its machine.
 * Across machines, start whisker under mpirun or srun yourself: the same
 * options apply per machine. */
#ifndef WK_CLI_LAUNCH_H
#define WK_CLI_LAUNCH_H

#include <stdbool.h>

#include "cli/cli.h"
#include "dist/dist.h"

#define WK_MAX_GPUS 64

/* "0,2,3" into ids (at most cap, no repeats); 1, or -1 after a usage message. */
int wk_gpus_parse(const char *cmd, const char *s, int *ids, int cap, int *n);

/* --device's value before parsing: not given. */
#define WK_DEVICE_UNSET (-3)

/* The start of a command that may run as several ranks. First --gpus (the
 * GPU list) and --procs (0: not given) are checked against *device
 * (WK_DEVICE_UNSET becomes the CPU, or a GPU with --gpus) and the GPUs here;
 * started by hand with several GPUs or processes, this process is replaced by
 * the launcher. Then, under a launcher, or for --gpus with one GPU (which sets
 * *nccl_single: the NCCL path in one process), the world is opened into *dist
 * (NULL otherwise), *threads (when 0) becomes this rank's share of the cores,
 * and *device this rank's GPU: gpus[local rank] with --gpus (as many ranks on
 * the machine as GPUs listed), else with several ranks on a machine GPU
 * local rank for --device cuda (cuda:0), for auto the same when there are
 * enough GPUs and the CPU otherwise (cuda:K, K > 0, is a usage error: every
 * rank on one GPU). -1 to go on, else an exit code after a message. */
int wk_launch_world(const char *cmd, const char *gpus_arg, int procs, int *device,
                    bool *nccl_single, int *threads, int argc, char **argv, wk_dist **dist);
/* "whisker CMD: " and the last error on stderr, with "rank R of W: " before it
 * where dist is given (once: not when the message already starts so). */
void wk_launch_report(const char *cmd, const wk_dist *dist);

#endif
