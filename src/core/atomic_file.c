/* atomic_file.c - temp file, fsync, rename, directory fsync (contract in
 * atomic_file.h). */
#define _GNU_SOURCE /* O_TMPFILE */
#include "core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"

enum { WK_TMP_SUFFIX_CHARS = 6, WK_TMP_ATTEMPTS = 100 };

static char *dup_cstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Closes the stream (if any), removes the temporary file and frees af's strings.
 * Keeps errno, so a caller can still report the failure that led here. */
static void release(wk_atomic_file *af, int remove_tmp) {
  int saved = errno;
  if (af->fp) fclose(af->fp);
  if (remove_tmp && af->tmp_path) unlink(af->tmp_path);
  free(af->tmp_path);
  free(af->path);
  af->fp = NULL, af->tmp_path = NULL, af->path = NULL, af->unnamed = false;
  errno = saved;
}

/* Fails with the system's reason, after removing the temporary file. `what`
 * reads before the temporary file's name, when it has one ("cannot write",
 * "cannot open a stream on"). */
static wk_status fail_errno(wk_atomic_file *af, const char *what) {
  int err = errno;
  /* an unnamed temporary file (O_TMPFILE) has no name to give */
  wk_status s = wk_fail(WK_ERR_IO, "%s: %s%s%s: %s", af->path ? af->path : "?", what,
                        af->tmp_path ? " " : "", af->tmp_path ? af->tmp_path : "",
                        strerror(err));
  release(af, 1);
  return s;
}

/* "PATH.tmp.XXXXXX" into af->tmp_path (allocated here) with a random suffix
 * (Philox keyed by time, pid and the address of af) so that concurrent
 * writers rarely collide; O_EXCL or linkat's EEXIST makes collisions
 * harmless. */
static bool tmp_name(wk_atomic_file *af, wk_rng *rng) {
  static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const size_t n_path = strlen(af->path);
  if (!af->tmp_path && !(af->tmp_path = malloc(n_path + 5 + WK_TMP_SUFFIX_CHARS + 1)))
    return false;
  char *p = af->tmp_path;
  memcpy(p, af->path, n_path);
  memcpy(p + n_path, ".tmp.", 5);
  for (int i = 0; i < WK_TMP_SUFFIX_CHARS; i++)
    p[n_path + 5 + i] = alnum[wk_rng_below(rng, (uint32_t)(sizeof alnum - 1))];
  p[n_path + 5 + WK_TMP_SUFFIX_CHARS] = '\0';
  return true;
}

static wk_rng tmp_rng(const wk_atomic_file *af) {
  struct timespec ts = {0, 0};
  clock_gettime(CLOCK_REALTIME, &ts); /* only seeds the name; failure is harmless */
  const uint64_t seed = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  return wk_rng_make(seed ^ ((uint64_t)getpid() << 32), (uint64_t)(uintptr_t)af);
}

/* Opens the directory that holds path (".", "/" or the part before the last
 * slash) with flags, and mode 0666 for O_TMPFILE; -1 with errno set. */
static int open_dir_of(const char *path, int flags) {
  char *dir = dup_cstr(path);
  if (!dir) {
    errno = ENOMEM;
    return -1;
  }
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  const int fd = open(dir, flags, 0666);
  const int err = errno;
  free(dir);
  errno = err;
  return fd;
}

/* Fails with s after forgetting a temporary name that names no file (none
 * was created or linked under it). */
static wk_status drop_tmp_name(wk_atomic_file *af, wk_status s) {
  free(af->tmp_path), af->tmp_path = NULL;
  release(af, 0);
  return s;
}

/* The folder of af->path, for an unnamed file in it (O_TMPFILE): such a file
 * vanishes with the process if it is killed before the commit names it, so a
 * Ctrl-C or an MPI abort mid-checkpoint leaves no checkpoint-sized
 * PATH.tmp.XXXXXX behind. Needs a kernel and filesystem that have O_TMPFILE
 * and /proc (for linkat); -1 otherwise, and the named way is used. */
static int open_unnamed(const char *path) {
  if (access("/proc/self/fd", X_OK) != 0) return -1;
  return open_dir_of(path, O_TMPFILE | O_WRONLY | O_CLOEXEC);
}

/* The temporary file: unnamed where the system allows, else created
 * exclusively as "PATH.tmp.XXXXXX"; mode 0666 & ~umask either way. */
static wk_status create_tmp(wk_atomic_file *af) {
  const int ufd = open_unnamed(af->path);
  if (ufd >= 0) {
    af->unnamed = true;
    af->fp = fdopen(ufd, "wb");
    if (!af->fp) {
      close(ufd);
      return fail_errno(af, "cannot open a stream on a temporary file for");
    }
    return WK_OK;
  }
  wk_rng rng = tmp_rng(af);
  for (int attempt = 0; attempt < WK_TMP_ATTEMPTS; attempt++) {
    if (!tmp_name(af, &rng)) {
      release(af, 0);
      return wk_fail(WK_ERR_NOMEM, "out of memory for a temporary file name");
    }
    const char *p = af->tmp_path;
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0)
      return drop_tmp_name(af, wk_fail(WK_ERR_IO, "%s: cannot create the temporary file %s: %s",
                                       af->path, p, strerror(errno)));
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
      close(fd);
      return fail_errno(af, "cannot open a stream on");
    }
    return WK_OK;
  }
  return drop_tmp_name(af, wk_fail(WK_ERR_IO, "%s: %d temporary file names in a row already "
                                   "exist", af->path, WK_TMP_ATTEMPTS));
}

/* Gives the unnamed temporary file a name, "PATH.tmp.XXXXXX", for the
 * rename; af->tmp_path is set only once the name exists. */
static wk_status name_unnamed(wk_atomic_file *af) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fileno(af->fp));
  wk_rng rng = tmp_rng(af);
  for (int attempt = 0; attempt < WK_TMP_ATTEMPTS; attempt++) {
    if (!tmp_name(af, &rng)) {
      release(af, 0);
      return wk_fail(WK_ERR_NOMEM, "out of memory for a temporary file name");
    }
    if (linkat(AT_FDCWD, proc, AT_FDCWD, af->tmp_path, AT_SYMLINK_FOLLOW) == 0) return WK_OK;
    if (errno == EEXIST) continue;
    return drop_tmp_name(af, wk_fail(WK_ERR_IO, "%s: cannot name the temporary file %s: %s",
                                     af->path, af->tmp_path, strerror(errno)));
  }
  return drop_tmp_name(af, wk_fail(WK_ERR_IO, "%s: %d temporary file names in a row already "
                                   "exist", af->path, WK_TMP_ATTEMPTS));
}

/* path, or, when it is a symbolic link, the file the links lead to (a
 * relative link read from its own folder; at most 40 links, as the kernel's
 * own limit): a rename over the link itself would replace the link with a
 * regular file and leave its target, the file the user meant, as it was.
 * malloc'd; NULL with errno set. */
static char *resolve_links(const char *path) {
  char *cur = dup_cstr(path);
  for (int hops = 0; cur && hops <= 40; hops++) {
    struct stat st;
    if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur; /* missing: created */
    char target[4096];
    const ssize_t n = readlink(cur, target, sizeof target - 1);
    if (n < 0 || n >= (ssize_t)sizeof target - 1) {
      if (n >= 0) errno = ENAMETOOLONG;
      free(cur);
      return NULL;
    }
    target[n] = '\0';
    const char *slash = strrchr(cur, '/');
    const size_t dir_len = target[0] == '/' || !slash ? 0 : (size_t)(slash - cur) + 1;
    char *next = malloc(dir_len + (size_t)n + 1);
    if (next) {
      memcpy(next, cur, dir_len);
      memcpy(next + dir_len, target, (size_t)n + 1);
    }
    free(cur);
    cur = next;
  }
  if (cur) {
    free(cur);
    errno = ELOOP;
  }
  return NULL;
}

/* What a path that is not a regular file is, for the refusal's message. */
static const char *file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a pipe";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  return "a special file";
}

wk_status wk_atomic_open(wk_atomic_file *af, const char *path) {
  WK_ASSERT(af && path);
  memset(af, 0, sizeof *af);
  if (!*path) return wk_fail(WK_ERR_INVALID_ARG, "atomic write: empty path");
  af->path = resolve_links(path);
  if (!af->path)
    return wk_fail(errno == ENOMEM ? WK_ERR_NOMEM : WK_ERR_IO, "%s: cannot follow the link: %s",
                   path, strerror(errno));
  /* The rename would put a regular file in the place of a device, a pipe or
   * a socket (/dev/null given as the output: root would lose the device
   * node), or fail late on a folder: refused before anything is written. */
  struct stat st;
  if (stat(af->path, &st) == 0 && !S_ISREG(st.st_mode)) {
    const wk_status s =
        wk_fail(WK_ERR_INVALID_ARG, "%s: not a regular file (%s); give the path of a file to write",
                af->path, file_kind(st.st_mode));
    release(af, 0);
    return s;
  }
  return create_tmp(af);
}

wk_status wk_atomic_write(wk_atomic_file *af, const void *data, size_t n_bytes) {
  WK_ASSERT(af->fp);
  if (n_bytes == 0) return WK_OK;
  WK_ASSERT(data);
  if (fwrite(data, 1, n_bytes, af->fp) != n_bytes) return fail_errno(af, "cannot write");
  return WK_OK;
}

FILE *wk_atomic_stream(wk_atomic_file *af) {
  WK_ASSERT(af->fp);
  return af->fp;
}

/* fsyncs the directory that holds path. Filesystems that cannot sync a
 * directory (EINVAL) have nothing to sync. */
static int sync_dir_of(const char *path) {
  const int fd = open_dir_of(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  if (rc != 0 && errno == EINVAL) rc = 0;
  int err = errno;
  close(fd);
  errno = err;
  return rc;
}

wk_status wk_atomic_commit(wk_atomic_file *af) {
  WK_ASSERT(af->fp);
  if (ferror(af->fp)) {
    errno = EIO;
    return fail_errno(af, "a write failed on");
  }
  if (fflush(af->fp) != 0) return fail_errno(af, "cannot flush");
  if (fsync(fileno(af->fp)) != 0) return fail_errno(af, "cannot fsync");
  if (af->unnamed) WK_TRY(name_unnamed(af));
  FILE *fp = af->fp;
  af->fp = NULL;
  if (fclose(fp) != 0) return fail_errno(af, "cannot close");
  if (rename(af->tmp_path, af->path) != 0) return fail_errno(af, "cannot rename");
  free(af->tmp_path), af->tmp_path = NULL; /* it is the target now */
  if (sync_dir_of(af->path) != 0) {
    int err = errno;
    wk_status s = wk_fail(WK_ERR_IO, "%s: written, but its directory cannot be fsynced: %s",
                          af->path, strerror(err));
    release(af, 0);
    return s;
  }
  release(af, 0);
  return WK_OK;
}

void wk_atomic_abort(wk_atomic_file *af) { release(af, 1); }

wk_status wk_atomic_write_file(const char *path, const void *data, size_t n_bytes) {
  wk_atomic_file af;
  WK_TRY(wk_atomic_open(&af, path));
  WK_TRY(wk_atomic_write(&af, data, n_bytes));
  return wk_atomic_commit(&af);
}

wk_status wk_mkdir_p(const char *d) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", d) >= (int)sizeof buf)
    return wk_fail(WK_ERR_LIMIT, "%s: path too long", d);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return wk_fail(WK_ERR_IO, "%s: cannot create the folder: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST)
    return wk_fail(WK_ERR_IO, "%s: cannot create the folder: %s", buf, strerror(errno));
  struct stat st; /* EEXIST: a file of that name may be there instead */
  if (stat(buf, &st) != 0)
    return wk_fail(WK_ERR_IO, "%s: cannot read the folder: %s", buf, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return wk_fail(WK_ERR_IO, "%s: not a folder: a file of that name exists", buf);
  return WK_OK;
}

bool wk_exe_path(char *buf, size_t n) {
  if (n < 2) return false;
  const ssize_t len = readlink("/proc/self/exe", buf, n - 1);
  if (len <= 0 || (size_t)len >= n - 1) return false; /* n - 1 bytes read: maybe cut short */
  buf[len] = '\0';
  return true;
}

bool wk_exe_dir(char *buf, size_t n) {
  if (!wk_exe_path(buf, n)) return false;
  char *slash = strrchr(buf, '/');
  if (slash) *slash = '\0';
  return true;
}
