/* launch.c - see launch.h. */
#include "cli/launch.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/clock.h"
#include "cuda/cuda.h"
#include "dist/dist.h"
#include "nn/net.h"

int wk_gpus_parse(const char *cmd, const char *s, int *ids, int cap, int *n) {
  *n = 0;
  const char *p = s;
  while (*p) {
    char *end = NULL;
    errno = 0;
    const long v = strtol(p, &end, 10);
    if (errno || end == p || v < 0 || v >= 1024 || (*end != ',' && *end != '\0') || *p == '-' ||
        *p == '+' || *p == ' ') {
      fprintf(stderr, "whisker %s: --gpus needs GPU numbers separated by commas (e.g. 0,1,2,3), "
              "got '%s'\n", cmd, s);
      return -1;
    }
    for (int k = 0; k < *n; k++)
      if (ids[k] == (int)v) {
        fprintf(stderr, "whisker %s: --gpus '%s': GPU %ld is listed twice (one process per "
                "GPU)\n", cmd, s, v);
        return -1;
      }
    if (*n == cap) {
      fprintf(stderr, "whisker %s: --gpus '%s': more than %d GPUs\n", cmd, s, cap);
      return -1;
    }
    ids[(*n)++] = (int)v;
    p = *end == ',' ? end + 1 : end;
    if (*end == ',' && !*p) {
      fprintf(stderr, "whisker %s: --gpus '%s' ends with a comma\n", cmd, s);
      return -1;
    }
  }
  if (*n == 0) {
    fprintf(stderr, "whisker %s: --gpus needs at least one GPU number\n", cmd);
    return -1;
  }
  return 1;
}

/* The launcher: $WHISKER_MPIRUN, else mpirun on PATH. */
static const char *wk_mpirun(void) {
  const char *e = getenv("WHISKER_MPIRUN");
  return e && *e ? e : "mpirun";
}

typedef enum { WK_MPI_OTHER, WK_MPI_OPEN_MPI, WK_MPI_HYDRA } wk_mpi_launcher;

extern char **environ;

/* The launcher kind a `--version` answer names, or -1 for none yet. */
static int wk_launcher_in(const char *out) {
  if (strstr(out, "Open MPI") || strstr(out, "OpenRTE")) return WK_MPI_OPEN_MPI;
  if (strstr(out, "HYDRA")) return WK_MPI_HYDRA;
  return -1;
}

/* Which launcher `mpirun` is, from what `mpirun --version` prints: Open MPI's
 * "mpirun (Open MPI) 4.1.4", MPICH's Hydra "HYDRA build details:" (Intel
 * MPI's, not checked, may name itself otherwise: OTHER). Reading stops at a
 * known name, when the launcher has exited (what it wrote is drained, even if
 * a process it left behind keeps the pipe open), or after 10 s; the launcher
 * runs in a process group of its own, which is killed if anything of it is
 * still running then. Anything but a known name is OTHER. */
static wk_mpi_launcher wk_launcher_kind(const char *mpirun) {
  int fd[2];
  if (pipe(fd) != 0) return WK_MPI_OTHER;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  bool fa_ok = posix_spawn_file_actions_init(&fa) == 0;
  bool at_ok = posix_spawnattr_init(&at) == 0;
  int rc = fa_ok && at_ok ? 0 : -1;
  if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
  if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, fd[1], STDERR_FILENO);
  if (!rc) rc = posix_spawn_file_actions_addclose(&fa, fd[0]);
  if (!rc) rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
  if (!rc) rc = posix_spawnattr_setpgroup(&at, 0); /* a group of its own, led by it */
  char *av[] = {(char *)mpirun, "--version", NULL};
  pid_t pid = -1;
  if (!rc) rc = posix_spawnp(&pid, mpirun, &fa, &at, av, environ);
  if (fa_ok) posix_spawn_file_actions_destroy(&fa);
  if (at_ok) posix_spawnattr_destroy(&at);
  close(fd[1]);
  if (rc != 0) {
    close(fd[0]);
    return WK_MPI_OTHER;
  }
  char out[4096];
  size_t n = 0;
  out[0] = '\0';
  bool exited = false;
  const double until = wk_now_s() + 10.0;
  while (wk_launcher_in(out) < 0 && n < sizeof out - 1) {
    const double left = until - wk_now_s();
    if (left <= 0) break;
    /* after the launcher exited, only what is already in the pipe */
    struct pollfd p = {.fd = fd[0], .events = POLLIN};
    const int ms = exited ? 0 : (left < 0.1 ? (int)(left * 1000) + 1 : 100);
    const int ready = poll(&p, 1, ms);
    if (ready < 0) break;
    if (ready == 0) {
      if (exited) break;
      exited = waitpid(pid, NULL, WNOHANG) == pid;
      continue;
    }
    const ssize_t got = read(fd[0], out + n, sizeof out - 1 - n);
    if (got <= 0) break;
    n += (size_t)got;
    out[n] = '\0';
  }
  close(fd[0]);
  if (!exited && waitpid(pid, NULL, WNOHANG) == 0) { /* still running: it had its chance */
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  const int kind = wk_launcher_in(out);
  return kind < 0 ? WK_MPI_OTHER : (wk_mpi_launcher)kind;
}

/* Replaces this process by mpirun starting n_ranks copies of `whisker CMD
 * ARGV...`; returns (an exit code) only when that cannot be done, after
 * saying why (no mpirun: what to install). The options beyond -np are each
 * launcher's own: Open MPI's --bind-to none (each rank runs its own thread
 * pool over its share of the cores), --oversubscribe (more ranks than cores)
 * and --allow-run-as-root (containers run as root); MPICH's Hydra's
 * -bind-to none (it oversubscribes and runs as root as it is); for a launcher
 * it does not know, -np alone. */
static int wk_launch_ranks(const char *cmd, int n_ranks, int argc, char **argv) {
  const char *mpirun = wk_mpirun();
  /* started by a launcher of ours that told this process nothing of its rank: starting
   * processes again would never end */
  const char *by = getenv("WHISKER_LAUNCHED_BY");
  if (by && *by) {
    fprintf(stderr, "whisker %s: started by %s, which set none of the variables that give a "
            "process its rank (Open MPI's OMPI_COMM_WORLD_SIZE, MPICH's PMI_SIZE, or PMIX_RANK "
            "with PMIx's or Slurm's sizes): not starting %d processes again; set "
            "$WHISKER_MPIRUN to Open MPI's mpirun or MPICH's mpiexec\n", cmd, by, n_ranks);
    return WK_EXIT_FAIL;
  }
  char exe[4096];
  if (!wk_exe_path(exe, sizeof exe)) {
    fprintf(stderr, "whisker %s: cannot find this program's own path (/proc/self/exe)\n", cmd);
    return WK_EXIT_FAIL;
  }
  char np[16];
  snprintf(np, sizeof np, "%d", n_ranks);
  char **av = calloc((size_t)argc + 10, sizeof *av);
  if (!av) {
    fprintf(stderr, "whisker %s: out of memory\n", cmd);
    return WK_EXIT_FAIL;
  }
  const wk_mpi_launcher kind = wk_launcher_kind(mpirun);
  int k = 0;
  av[k++] = (char *)mpirun;
  av[k++] = "-np";
  av[k++] = np;
  if (kind == WK_MPI_OPEN_MPI) {
    av[k++] = "--bind-to";
    av[k++] = "none";
    if (n_ranks > sysconf(_SC_NPROCESSORS_ONLN)) av[k++] = "--oversubscribe";
    if (geteuid() == 0) av[k++] = "--allow-run-as-root";
  } else if (kind == WK_MPI_HYDRA) {
    av[k++] = "-bind-to";
    av[k++] = "none";
  }
  av[k++] = exe;
  av[k++] = (char *)cmd;
  for (int i = 0; i < argc; i++) av[k++] = argv[i];
  av[k] = NULL;
  fflush(NULL);
  if (setenv("WHISKER_LAUNCHED_BY", mpirun, 1) != 0) {
    fprintf(stderr, "whisker %s: setenv: %s\n", cmd, strerror(errno));
    free(av);
    return WK_EXIT_FAIL;
  }
  execvp(mpirun, av);
  if (errno == ENOENT)
    fprintf(stderr, "whisker %s: %d processes are started with %s, which is not installed: "
            "apt-get install openmpi-bin (or set $WHISKER_MPIRUN to MPICH's mpiexec, say), or "
            "start the processes with your own MPI launcher\n", cmd, n_ranks, mpirun);
  else
    fprintf(stderr, "whisker %s: cannot start %s: %s\n", cmd, mpirun, strerror(errno));
  free(av);
  return WK_EXIT_FAIL;
}

void wk_launch_report(const char *cmd, const wk_dist *dist) {
  if (dist && strncmp(wk_last_error(), "rank ", 5) != 0) /* say which rank, once */
    fprintf(stderr, "whisker %s: rank %d of %d: %s\n", cmd, wk_dist_rank(dist),
            wk_dist_size(dist), wk_last_error());
  else
    fprintf(stderr, "whisker %s: %s\n", cmd, wk_last_error());
}

/* Whether this process was given a GPU of its own by a scheduler (Slurm's
 * --gpus-per-task=1, a per-rank CUDA_VISIBLE_DEVICES): the variable names one
 * device and it is the only one visible, so device 0 is this rank's, not one
 * the machine's ranks would share. */
static bool wk_own_visible_gpu(void) {
  const char *v = getenv("CUDA_VISIBLE_DEVICES");
  return v && *v && !strchr(v, ',') && wk_cuda_device_count() == 1;
}

/* The GPU of this rank: gpus[local_rank] with --gpus (n_gpus > 0; the ranks on
 * this machine must be as many as the GPUs listed), else, with several ranks
 * on this machine, GPU local_rank for --device cuda (cuda:0), and for --device
 * auto the same when there are enough GPUs and the CPU otherwise (cuda:K, K >
 * 0, is a usage error: every rank on one GPU), both GPU 0 where a scheduler
 * gave each process its own (wk_own_visible_gpu); else *device stays. Checks
 * the GPU exists. -1 to go on, else an exit code after a message. */
static int wk_rank_device(const char *cmd, const int *gpus, int n_gpus, int local_rank, int local_size,
                   int world, int *device) {
  if (n_gpus > 0) {
    if (local_size != n_gpus && world > 1) {
      fprintf(stderr, "whisker %s: --gpus lists %d GPU%s but %d processes run on this machine: "
              "one process per GPU\n", cmd, n_gpus, n_gpus == 1 ? "" : "s", local_size);
      return WK_EXIT_USAGE;
    }
    *device = gpus[local_rank < n_gpus ? local_rank : 0];
  } else if (world > 1 && local_size > 1 && *device > 0) {
    fprintf(stderr, "whisker %s: --device cuda:%d with %d processes on this machine would put "
            "them all on one GPU: use --device cuda (process r takes GPU r) or --gpus LIST\n",
            cmd, *device, local_size);
    return WK_EXIT_USAGE;
  } else if (world > 1 && local_size > 1 && *device == WK_DEVICE_AUTO) {
    /* every rank its own GPU when there are enough, else all on the CPU (the
     * ranks must agree: train/fit.c checks) */
    if (wk_own_visible_gpu()) *device = 0;
    else *device = wk_cuda_device_count() >= local_size ? local_rank : WK_DEVICE_CPU;
    return -1;
  } else if (world > 1 && local_size > 1 && *device == 0) {
    /* rank r of a machine takes its GPU r, or the one GPU a scheduler gave it */
    *device = wk_own_visible_gpu() ? 0 : local_rank;
  } else {
    return -1;
  }
  const int count = wk_cuda_device_count();
  if (*device >= count) {
    if (count == 0)
      fprintf(stderr, "whisker %s: GPU %d was asked for, but there is no usable GPU here (see "
              "'whisker system')\n", cmd, *device);
    else
      fprintf(stderr, "whisker %s: GPU %d was asked for, but there %s only %d (0%s)\n", cmd,
              *device, count == 1 ? "is" : "are", count, count > 1 ? " and up" : "");
    return WK_EXIT_FAIL;
  }
  return -1;
}

/* Before the world is opened: checks --gpus (parsed into gpus, *n_gpus) and
 * --procs against *device (WK_DEVICE_UNSET becomes the CPU, or a GPU with
 * --gpus) and the GPUs here; started by hand with several GPUs or processes,
 * replaces this process by the launcher; with one GPU sets *nccl_single. -1
 * to go on, else an exit code after a message. */
static int wk_launch_setup(const char *cmd, const char *gpus_arg, int procs, int *device,
                           int *gpus, int *n_gpus, bool *nccl_single, int argc, char **argv) {
  *n_gpus = 0;
  *nccl_single = false;
  if (gpus_arg && procs > 0) {
    fprintf(stderr, "whisker %s: --gpus starts one process per GPU; leave out --procs\n", cmd);
    return WK_EXIT_USAGE;
  }
  if (gpus_arg && wk_gpus_parse(cmd, gpus_arg, gpus, WK_MAX_GPUS, n_gpus) < 0)
    return WK_EXIT_USAGE;
  if (*n_gpus > 0 && *device == WK_DEVICE_CPU) {
    fprintf(stderr, "whisker %s: --gpus and --device cpu contradict each other\n", cmd);
    return WK_EXIT_USAGE;
  }
  if (*n_gpus > 0 && *device > 0) {
    fprintf(stderr, "whisker %s: --gpus picks the GPUs; leave out --device cuda:%d\n", cmd,
            *device);
    return WK_EXIT_USAGE;
  }
  if (*device == WK_DEVICE_UNSET) *device = *n_gpus > 0 ? gpus[0] : WK_DEVICE_CPU;
  if (wk_dist_launched()) return -1; /* a rank: the launcher has done its part */
  if (*n_gpus > 0) {
    const int count = wk_cuda_device_count();
    for (int k = 0; k < *n_gpus; k++)
      if (gpus[k] >= count) {
        if (count == 0)
          fprintf(stderr, "whisker %s: --gpus %s: there is no usable GPU here (see 'whisker "
                  "system')\n", cmd, gpus_arg);
        else
          fprintf(stderr, "whisker %s: --gpus %s: there %s only %d GPU%s (0%s)\n", cmd, gpus_arg,
                  count == 1 ? "is" : "are", count, count == 1 ? "" : "s",
                  count > 1 ? " and up" : "");
        return WK_EXIT_FAIL;
      }
    if (*n_gpus > 1) return wk_launch_ranks(cmd, *n_gpus, argc, argv);
    *nccl_single = true; /* one GPU: the data-parallel path in this process */
    return -1;
  }
  if (procs > 1) return wk_launch_ranks(cmd, procs, argc, argv);
  return -1;
}

int wk_launch_world(const char *cmd, const char *gpus_arg, int procs, int *device,
                    bool *nccl_single, int *threads, int argc, char **argv, wk_dist **dist) {
  *dist = NULL;
  int gpus[WK_MAX_GPUS], n_gpus = 0;
  const int rc = wk_launch_setup(cmd, gpus_arg, procs, device, gpus, &n_gpus, nccl_single, argc,
                                 argv);
  if (rc >= 0 || !(wk_dist_launched() || *nccl_single)) return rc;
  const wk_dist_opts o = wk_dist_opts_default();
  if (wk_dist_open(&o, dist) != WK_OK) {
    fprintf(stderr, "whisker %s: %s\n", cmd, wk_last_error());
    return WK_EXIT_FAIL;
  }
  if (*threads == 0) *threads = wk_dist_default_threads(*dist); /* share the cores */
  const int dr = wk_rank_device(cmd, gpus, n_gpus, wk_dist_local_rank(*dist),
                                wk_dist_local_size(*dist), wk_dist_size(*dist), device);
  if (dr >= 0) {
    wk_dist_abort(*dist, dr);
    wk_dist_close(*dist);
    *dist = NULL;
  }
  return dr;
}
