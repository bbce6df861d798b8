/* atomic_file.h - writing a file so that it is replaced whole or not at all.
 *
 * The content goes to a temporary file in the target's directory: unnamed
 * (O_TMPFILE) where the system allows, so a process killed before the commit
 * leaves nothing behind, else "PATH.tmp.XXXXXX", created exclusively. Commit
 * flushes it, fsyncs it, names it "PATH.tmp.XXXXXX" if it had no name,
 * renames it over PATH and fsyncs the directory. A reader of PATH therefore sees
 * either the old file or the complete new one, also after a crash or power loss
 * once commit has returned. On any failure the temporary file is removed and
 * the old PATH is left as it was.
 *
 * A PATH that is a symbolic link is followed: the file it leads to is
 * replaced (in that file's directory) and the link stays a link.
 *
 * The new file gets mode 0666 less the process umask, like fopen() would give
 * it (mkstemp's 0600 would make model files unreadable to other users); the
 * old file's mode and owner are not carried over.
 *
 *   wk_atomic_file af;
 *   WK_TRY(wk_atomic_open(&af, path));
 *   WK_TRY(wk_atomic_write(&af, buf, n_bytes));   // any number of times
 *   WK_TRY(wk_atomic_commit(&af));
 *
 * Every function that fails has already removed the temporary file and closed
 * af, so a caller may simply return its status. A caller that gives up for a
 * reason of its own calls wk_atomic_abort(). Abort is a no-op on a closed af. */
#ifndef WK_ATOMIC_FILE_H
#define WK_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/status.h"

/* Fields are private; the struct is public so that it can live on the stack. */
typedef struct wk_atomic_file {
  char *path;     /* the target, owned copy */
  char *tmp_path; /* the temporary file while open, else NULL */
  FILE *fp;       /* the temporary file while open, else NULL */
  bool unnamed;   /* fp is an O_TMPFILE file, named only at the commit */
} wk_atomic_file;

/* Creates the temporary file next to `path`. Fails with WK_ERR_IO (the message
 * names the file and the system's reason: a missing directory, no permission,
 * ...), WK_ERR_INVALID_ARG (`path` is a folder, a device, a pipe or a socket,
 * which the commit's rename would replace) or WK_ERR_NOMEM; af is then
 * closed. */
wk_status wk_atomic_open(wk_atomic_file *af, const char *path);

/* Appends n_bytes from data (may be NULL when n_bytes is 0). */
wk_status wk_atomic_write(wk_atomic_file *af, const void *data, size_t n_bytes);

/* The temporary file as a stdio stream, for fprintf and the like; errors on it
 * are caught by wk_atomic_commit (it checks ferror). Do not close it. */
FILE *wk_atomic_stream(wk_atomic_file *af);

/* Flushes, fsyncs, renames over the target and fsyncs the directory. Closes af
 * whatever the outcome. Should only the directory fsync fail, the new file is
 * in place but its rename may not survive a crash; that too is WK_ERR_IO. */
wk_status wk_atomic_commit(wk_atomic_file *af);

/* Closes af and removes the temporary file; PATH is untouched. */
void wk_atomic_abort(wk_atomic_file *af);

/* The three steps for content that is in memory already. */
wk_status wk_atomic_write_file(const char *path, const void *data, size_t n_bytes);

/* Creates the folder d and its missing parents (mkdir -p); an existing folder
 * is fine, a file of that name is not. Fails naming the first folder that
 * could not be made. */
wk_status wk_mkdir_p(const char *d);

/* This program's own path (/proc/self/exe), and the folder it is in, into buf
 * (n bytes); false when it cannot be read or does not fit. Plugins and the
 * shipped model are found beside it. */
bool wk_exe_path(char *buf, size_t n);
bool wk_exe_dir(char *buf, size_t n);

#endif
