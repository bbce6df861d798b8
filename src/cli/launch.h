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

#define WK_MAX_GPUS 64

/* "0,2,3" into ids (at most cap, no repeats); 1, or -1 after a usage message. */
int wk_gpus_parse(const char *cmd, const char *s, int *ids, int cap, int *n);

/* Replaces this process by mpirun starting n_ranks copies of `whisker CMD
 * ARGV...`; returns (an exit code) only when that cannot be done, after
 * saying why (no mpirun: what to install). */
int wk_launch_ranks(const char *cmd, int n_ranks, int argc, char **argv);

/* --device's value before parsing: not given. */
#define WK_DEVICE_UNSET (-3)

/* Before the world is opened: checks --gpus (parsed into gpus, *n_gpus) and
 * --procs (0: not given) against *device (WK_DEVICE_UNSET becomes the CPU, or
 * a GPU with --gpus) and the GPUs here; started by hand
 * with several GPUs or processes, replaces this process by the launcher (see
 * wk_launch_ranks); with one GPU sets *nccl_single. -1 to go on, else an exit
 * code after a message. */
int wk_launch_setup(const char *cmd, const char *gpus_arg, int procs, int *device, int *gpus,
                    int *n_gpus, bool *nccl_single, int argc, char **argv);

/* The GPU of this rank: gpus[local_rank] with --gpus (n_gpus > 0; the ranks on
 * this machine must be as many as the GPUs listed), else, with several ranks
 * on this machine, GPU local_rank for --device cuda (cuda:0), and for --device
 * auto the same when there are enough GPUs and the CPU otherwise (cuda:K, K >
 * 0, is a usage error: every rank on one GPU); else *device stays. Checks the
 * GPU exists. -1 to go on, else an exit code after a message. */
int wk_rank_device(const char *cmd, const int *gpus, int n_gpus, int local_rank, int local_size,
                   int world, int *device);

#endif
