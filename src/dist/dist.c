/* dist.c - dist.h: the world of one rank, and under a launcher the MPI backend,
 * libwhisker-mpi.so (dist_plugin.h), loaded from, in order, $WHISKER_MPI_PLUGIN,
 * the program's own folder, ../lib beside it, and the dynamic linker's search
 * path. Waits poll the plugin until a deadline, yielding the core between polls
 * and sleeping after many fruitless ones, so a rank waiting for minutes does
 * not burn a core. WK_DIST_HAVE_MPI (set by CMake) says whether the plugin was
 * built with this library. */
#include "dist/dist.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/context.h"
#include "dist/dist_plugin.h"

#ifndef WK_DIST_HAVE_MPI
#define WK_DIST_HAVE_MPI 0
#endif

#define WK_DIST_TIMEOUT_MAX_S 1e7
enum { WK_DIST_SPIN_POLLS = 1000, WK_DIST_SLEEP_US = 100 };

struct wk_dist {
  int rank, size, local_rank, local_size;
  double timeout_s;
  const wk_mpi_plugin *mpi; /* NULL: a world of one rank */
  bool req_used[WK_DIST_MAX_PENDING];
  int req_handle[WK_DIST_MAX_PENDING]; /* the plugin's handle; -1 in a world of one */
};

wk_dist_opts wk_dist_opts_default(void) { return (wk_dist_opts){.timeout_s = 0}; }

/* $name as an integer > 1, else 0. */
static long wk_dist_env_gt1(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  const long n = strtol(v, &end, 10);
  return *end == '\0' && n > 1 ? n : 0;
}

/* The processes an MPI launcher says it started (> 1), else 0. Open MPI's
 * mpirun sets OMPI_COMM_WORLD_SIZE; MPICH's hydra PMI_SIZE; srun --mpi=pmix
 * sets PMIX_RANK and Slurm's task counts. */
static long wk_dist_launcher_size(void) {
  long n = wk_dist_env_gt1("OMPI_COMM_WORLD_SIZE");
  if (!n) n = wk_dist_env_gt1("PMI_SIZE");
  const char *pmix = getenv("PMIX_RANK");
  if (n || !pmix || !*pmix) return n;
  n = wk_dist_env_gt1("PMIX_SIZE");
  if (!n) n = wk_dist_env_gt1("SLURM_STEP_NUM_TASKS");
  return n ? n : wk_dist_env_gt1("SLURM_NTASKS");
}

bool wk_dist_launched(void) { return wk_dist_launcher_size() > 1; }

static wk_status wk_dist_timeout(const wk_dist_opts *o, double *timeout_s) {
  if (o && o->timeout_s > 0) {
    *timeout_s = o->timeout_s;
    return WK_OK;
  }
  *timeout_s = WK_DIST_TIMEOUT_DEFAULT_S;
  const char *env = getenv("WHISKER_DIST_TIMEOUT");
  if (!env || !*env) return WK_OK;
  char *end;
  errno = 0;
  const double v = strtod(env, &end);
  if (errno || end == env || *end != '\0' || !isfinite(v) || v <= 0 ||
      v > WK_DIST_TIMEOUT_MAX_S)
    return wk_fail(WK_ERR_INVALID_ARG,
                   "$WHISKER_DIST_TIMEOUT='%s': not a number of seconds in (0, %.0f]", env,
                   WK_DIST_TIMEOUT_MAX_S);
  *timeout_s = v;
  return WK_OK;
}

#if WK_DIST_HAVE_MPI
/* Opens one candidate; on failure appends why to tried (n bytes). */
static const wk_mpi_plugin *wk_dist_plugin_try(const char *path, char *tried, size_t n) {
  const size_t len = strlen(tried);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(tried + len, n - len, "%s%s", len ? "; " : "", e ? e : path);
    return NULL;
  }
  wk_mpi_plugin_get_fn get;
  *(void **)&get = dlsym(h, "wk_mpi_plugin_get"); /* POSIX's sanctioned cast */
  const wk_mpi_plugin *p = get ? get() : NULL;
  if (!p || p->abi != WK_MPI_PLUGIN_ABI) {
    snprintf(tried + len, n - len, "%s%s: not a whisker MPI plugin of ABI %d", len ? "; " : "",
             path, WK_MPI_PLUGIN_ABI);
    dlclose(h);
    return NULL;
  }
  return p; /* never closed: MPI lives as long as the process */
}

static wk_status wk_dist_plugin_load(const wk_mpi_plugin **out) {
  char tried[1536] = "";
  const wk_mpi_plugin *p = NULL;
  const char *env = getenv("WHISKER_MPI_PLUGIN");
  if (env && *env) {
    p = wk_dist_plugin_try(env, tried, sizeof tried);
  } else {
    char exe[1024], path[1100];
    if (wk_exe_dir(exe, sizeof exe)) {
      static const char *const dirs[] = {"", "/../lib"};
      for (size_t i = 0; i < sizeof dirs / sizeof *dirs && !p; i++) {
        snprintf(path, sizeof path, "%s%s/%s", exe, dirs[i], WK_MPI_PLUGIN_FILE);
        if (access(path, R_OK) == 0) {
          p = wk_dist_plugin_try(path, tried, sizeof tried);
        } else {
          const size_t len = strlen(tried);
          snprintf(tried + len, sizeof tried - len, "%s%s: not there", len ? "; " : "", path);
        }
      }
    }
    if (!p) p = wk_dist_plugin_try(WK_MPI_PLUGIN_FILE, tried, sizeof tried);
  }
  if (!p)
    return wk_fail(WK_ERR_UNSUPPORTED,
                   "started by an MPI launcher, but the MPI backend %s could not be loaded "
                   "(%s); install libopenmpi-dev and rebuild, or set $WHISKER_MPI_PLUGIN",
                   WK_MPI_PLUGIN_FILE, tried);
  *out = p;
  return WK_OK;
}
#endif

wk_status wk_dist_open(const wk_dist_opts *o, wk_dist **out) {
  if (!out) return wk_fail(WK_ERR_INVALID_ARG, "wk_dist_open: no output");
  *out = NULL;
  double timeout_s;
  WK_TRY(wk_dist_timeout(o, &timeout_s));
  wk_dist *d = calloc(1, sizeof *d);
  if (!d) return wk_fail(WK_ERR_NOMEM, "wk_dist_open");
  *d = (wk_dist){.rank = 0, .size = 1, .local_size = 1, .timeout_s = timeout_s};
  const long launched = wk_dist_launcher_size();
  if (launched > 1) {
#if WK_DIST_HAVE_MPI
    const wk_mpi_plugin *p = NULL;
    wk_status s = wk_dist_plugin_load(&p);
    if (s == WK_OK) {
      s = p->init(&d->rank, &d->size, &d->local_rank, &d->local_size);
      if (s != WK_OK) s = wk_fail(s, "MPI: %s", p->last_error());
    }
    /* a launcher of another MPI than the plugin's: each process would train
     * alone, every one of them writing the same outputs */
    if (s == WK_OK && d->size == 1) {
      (void)p->finalize();
      s = wk_fail(WK_ERR_UNSUPPORTED,
                  "the MPI launcher started %ld processes, but MPI sees each as a world of "
                  "one: the MPI backend %s was built against another MPI than the "
                  "launcher's (Open MPI's mpirun and MPICH's mpiexec do not mix); start "
                  "whisker with the launcher of the MPI it was built with",
                  launched, WK_MPI_PLUGIN_FILE);
    }
    if (s != WK_OK) {
      free(d);
      return s;
    }
    d->mpi = p;
#else
    free(d);
    return wk_fail(WK_ERR_UNSUPPORTED, "started by an MPI launcher, but this whisker was built "
                   "without MPI; install libopenmpi-dev and rebuild");
#endif
  }
  *out = d;
  return WK_OK;
}

void wk_dist_close(wk_dist *d) {
  if (!d) return;
  /* MPI_Finalize waits for every rank with no deadline: the ranks meet first
   * in a barrier that has one, so a rank that hangs at the end (rank 0
   * writing the last checkpoint to a stalled disk) stops the run with a
   * message instead of holding every rank for ever */
  if (d->mpi && d->size > 1 && wk_dist_barrier(d, "the end of the run") != WK_OK) {
    fprintf(stderr, "whisker: %s\n", wk_last_error());
    wk_dist_abort(d, 1);
  }
  if (d->mpi && d->mpi->finalize() != WK_OK)
    fprintf(stderr, "whisker: rank %d: %s\n", d->rank, d->mpi->last_error());
  free(d);
}

int wk_dist_rank(const wk_dist *d) { return d ? d->rank : 0; }
int wk_dist_size(const wk_dist *d) { return d ? d->size : 1; }
int wk_dist_local_size(const wk_dist *d) { return d ? d->local_size : 1; }
int wk_dist_local_rank(const wk_dist *d) { return d ? d->local_rank : 0; }
double wk_dist_timeout_s(const wk_dist *d) {
  if (d) return d->timeout_s;
  const wk_dist_opts o = wk_dist_opts_default();
  double t;
  return wk_dist_timeout(&o, &t) == WK_OK ? t : WK_DIST_TIMEOUT_DEFAULT_S;
}
const char *wk_dist_backend(const wk_dist *d) { return d && d->mpi ? "mpi" : "none"; }

int wk_dist_default_threads(const wk_dist *d) {
  if (!d || d->size <= 1 || getenv("WHISKER_THREADS")) return 0;
  const long share = wk_cpu_count() / (d->local_size > 0 ? d->local_size : 1);
  return share >= 1 ? (int)share : 1;
}

static double wk_dist_now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static wk_status wk_dist_plugin_error(const wk_dist *d, wk_status s, const char *what) {
  return wk_fail(s, "rank %d of %d: %s: %s", d->rank, d->size, what ? what : "a collective",
                 d->mpi->last_error());
}

/* Polls one plugin operation until it is done or the deadline passes. */
static wk_status wk_dist_wait_handle(wk_dist *d, int handle, const char *what) {
  const double t0 = wk_dist_now_s();
  for (long polls = 1;; polls++) {
    bool done = false;
    const wk_status s = d->mpi->test(handle, &done);
    if (s != WK_OK) return wk_dist_plugin_error(d, s, what);
    if (done) return WK_OK;
    if (wk_dist_now_s() - t0 > d->timeout_s)
      return wk_fail(WK_ERR_BACKEND,
                     "rank %d of %d: no answer from the other ranks for %g s in %s "
                     "(a rank stopped or hangs); rank 0 alone writes the checkpoints, so on "
                     "slow storage raise $WHISKER_DIST_TIMEOUT",
                     d->rank, d->size, d->timeout_s, what ? what : "a collective");
    if (polls < WK_DIST_SPIN_POLLS) {
      sched_yield();
    } else {
      const struct timespec nap = {.tv_sec = 0, .tv_nsec = WK_DIST_SLEEP_US * 1000L};
      nanosleep(&nap, NULL);
    }
  }
}

static size_t wk_dist_dtype_bytes(wk_dist_dtype t) { return t == WK_DIST_F32 ? 4 : 8; }

static wk_status wk_dist_check_args(const wk_dist *d, const void *buf, size_t n_bytes,
                                    const char *fn) {
  if (!d) return wk_fail(WK_ERR_INVALID_ARG, "%s: no world", fn);
  if (!buf && n_bytes > 0) return wk_fail(WK_ERR_INVALID_ARG, "%s: no buffer", fn);
  return WK_OK;
}

static wk_status wk_dist_check_reduce(const wk_dist *d, wk_dist_channel ch, wk_dist_dtype t,
                                      const void *buf, size_t n, const char *fn) {
  if (ch != WK_DIST_MAIN && ch != WK_DIST_GRADS)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: no channel %d", fn, (int)ch);
  if (t != WK_DIST_F32 && t != WK_DIST_F64 && t != WK_DIST_I64)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: unknown dtype %d", fn, (int)t);
  if (n > SIZE_MAX / 8) return wk_fail(WK_ERR_LIMIT, "%s: %zu elements", fn, n);
  return wk_dist_check_args(d, buf, n * wk_dist_dtype_bytes(t), fn);
}

wk_status wk_dist_allreduce_sum(wk_dist *d, wk_dist_channel ch, wk_dist_dtype t, void *buf,
                                size_t n, const char *what) {
  WK_TRY(wk_dist_check_reduce(d, ch, t, buf, n, "wk_dist_allreduce_sum"));
  if (!d->mpi) return WK_OK;
  int h;
  const wk_status s = d->mpi->iallreduce((int)ch, buf, n, t, &h);
  if (s != WK_OK) return wk_dist_plugin_error(d, s, what);
  return wk_dist_wait_handle(d, h, what);
}

wk_status wk_dist_bcast(wk_dist *d, void *buf, size_t bytes, int root, const char *what) {
  WK_TRY(wk_dist_check_args(d, buf, bytes, "wk_dist_bcast"));
  if (root < 0 || root >= d->size)
    return wk_fail(WK_ERR_INVALID_ARG, "wk_dist_bcast: root %d of %d ranks", root, d->size);
  if (!d->mpi) return WK_OK;
  int h;
  const wk_status s = d->mpi->ibcast(WK_DIST_MAIN, buf, bytes, root, &h);
  if (s != WK_OK) return wk_dist_plugin_error(d, s, what);
  return wk_dist_wait_handle(d, h, what);
}

wk_status wk_dist_barrier(wk_dist *d, const char *what) {
  WK_TRY(wk_dist_check_args(d, NULL, 0, "wk_dist_barrier"));
  if (!d->mpi) return WK_OK;
  int h;
  const wk_status s = d->mpi->ibarrier(WK_DIST_MAIN, &h);
  if (s != WK_OK) return wk_dist_plugin_error(d, s, what);
  return wk_dist_wait_handle(d, h, what);
}

wk_status wk_dist_iallreduce_f32(wk_dist *d, wk_dist_channel ch, float *buf, size_t n, int *req) {
  if (!req) return wk_fail(WK_ERR_INVALID_ARG, "wk_dist_iallreduce_f32: no request");
  *req = -1;
  WK_TRY(wk_dist_check_reduce(d, ch, WK_DIST_F32, buf, n, "wk_dist_iallreduce_f32"));
  int r = 0;
  while (r < WK_DIST_MAX_PENDING && d->req_used[r]) r++;
  if (r == WK_DIST_MAX_PENDING)
    return wk_fail(WK_ERR_LIMIT, "wk_dist_iallreduce_f32: more than %d requests in flight",
                   WK_DIST_MAX_PENDING);
  int h = -1;
  if (d->mpi) {
    const wk_status s = d->mpi->iallreduce((int)ch, buf, n, WK_DIST_F32, &h);
    if (s != WK_OK) return wk_dist_plugin_error(d, s, "wk_dist_iallreduce_f32");
  }
  d->req_used[r] = true;
  d->req_handle[r] = h;
  *req = r;
  return WK_OK;
}

static wk_status wk_dist_check_req(const wk_dist *d, int req, const char *fn) {
  if (!d) return wk_fail(WK_ERR_INVALID_ARG, "%s: no world", fn);
  if (req < 0 || req >= WK_DIST_MAX_PENDING || !d->req_used[req])
    return wk_fail(WK_ERR_INVALID_ARG, "%s: no request %d in flight", fn, req);
  return WK_OK;
}

wk_status wk_dist_test(wk_dist *d, int req, bool *done) {
  if (!done) return wk_fail(WK_ERR_INVALID_ARG, "wk_dist_test: no output");
  *done = false;
  WK_TRY(wk_dist_check_req(d, req, "wk_dist_test"));
  if (d->mpi) {
    const wk_status s = d->mpi->test(d->req_handle[req], done);
    if (s != WK_OK) return wk_dist_plugin_error(d, s, "wk_dist_test");
  } else {
    *done = true;
  }
  if (*done) d->req_used[req] = false;
  return WK_OK;
}

wk_status wk_dist_wait(wk_dist *d, int req, const char *what) {
  WK_TRY(wk_dist_check_req(d, req, "wk_dist_wait"));
  if (d->mpi) WK_TRY(wk_dist_wait_handle(d, d->req_handle[req], what));
  d->req_used[req] = false;
  return WK_OK;
}

void wk_dist_abort(wk_dist *d, int code) {
  if (!d || !d->mpi) return;
  d->mpi->abort(code);
  /* MPI_Abort returned: the other ranks cannot be stopped from here */
  fprintf(stderr, "whisker: rank %d of %d: MPI_Abort failed (%s); aborting this rank\n",
          d->rank, d->size, d->mpi->last_error());
  abort();
}
