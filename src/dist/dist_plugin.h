/* dist_plugin.h - the MPI backend of dist.h as a plugin.
 *
 * MPI lives in its own shared library, libwhisker-mpi.so, which libwhisker
 * loads with dlopen only when a launcher started the process (dist.c), so a
 * whisker binary runs on a machine without MPI unless it is run under mpirun.
 *
 * The plugin exports one symbol, wk_mpi_plugin_get, returning this table. It
 * carries its own copy of the error-message store (core/status.c, symbols
 * hidden): after a call fails, last_error gives its message (naming the MPI
 * call and MPI_Error_string), which the loader passes on. MPI is one per
 * process, so the plugin's state is too: init once, finalize once.
 *
 * Operations are non-blocking and identified by a handle (0 <= handle <
 * WK_MPI_PLUGIN_MAX_OPS) until test reports them done; one operation may span
 * several MPI requests, since an MPI count is an int (at most 1 << 30 elements
 * per request; $WHISKER_MPI_CHUNK, read by init, makes that smaller for tests).
 * Channel 0 and 1 are two duplicates of MPI_COMM_WORLD (dist.h's WK_DIST_MAIN
 * and WK_DIST_GRADS). After any failure the world is unusable: abort.
 * WK_MPI_PLUGIN_ABI changes whenever the table does. */
#ifndef WK_DIST_PLUGIN_H
#define WK_DIST_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "dist/dist.h"

#define WK_MPI_PLUGIN_ABI 2
#define WK_MPI_PLUGIN_FILE "libwhisker-mpi.so"
/* dist.h's pending requests and the one blocking collective at a time */
#define WK_MPI_PLUGIN_MAX_OPS (WK_DIST_MAX_PENDING + 8)

typedef struct wk_mpi_plugin {
  int abi; /* WK_MPI_PLUGIN_ABI */
  /* MPI_Init_thread (funneled), the two channels, this rank's place among the
   * ranks on its machine and their number */
  wk_status (*init)(int *rank, int *size, int *local_rank, int *local_size);
  wk_status (*finalize)(void);
  /* in-place sum of count elements */
  wk_status (*iallreduce)(int channel, void *buf, size_t count, wk_dist_dtype dtype,
                          int *handle);
  wk_status (*ibcast)(int channel, void *buf, size_t n_bytes, int root, int *handle);
  wk_status (*ibarrier)(int channel, int *handle);
  /* drives progress; when *done, the handle is free again */
  wk_status (*test)(int handle, bool *done);
  void (*abort)(int code); /* MPI_Abort on MPI_COMM_WORLD; returns only if that fails */
  const char *(*last_error)(void);
} wk_mpi_plugin;

typedef const wk_mpi_plugin *(*wk_mpi_plugin_get_fn)(void);

#endif
