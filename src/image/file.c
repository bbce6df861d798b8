/* file.c - reading a whole file into a growable buffer, with a size limit so
 * that a huge or endless file (a FIFO, /dev/zero) cannot exhaust memory. */
#include "image/image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static wk_status wk_bytes_reserve(wk_bytes *buf, size_t bytes, const char *path) {
  if (bytes <= buf->capacity_bytes && buf->data) return WK_OK;
  uint8_t *p = malloc(bytes ? bytes : 1);
  if (!p) return wk_fail(WK_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, bytes);
  free(buf->data);
  buf->data = p;
  buf->capacity_bytes = bytes ? bytes : 1;
  return WK_OK;
}

/* "-": standard input read to its end (a pipe or a redirected file), growing
 * the buffer as it comes; more than max_bytes is WK_ERR_LIMIT. A terminal is
 * refused rather than waited on. */
static wk_status wk_stdin_read(size_t max_bytes, wk_bytes *buf) {
  if (isatty(STDIN_FILENO))
    return wk_fail(WK_ERR_INVALID_ARG, "-: standard input is a terminal; pipe or redirect a "
                   "photo into it (whisker classify - < photo.jpg)");
  while (buf->n_bytes <= max_bytes) { /* one byte past the limit ends it */
    if (buf->n_bytes == buf->capacity_bytes || !buf->data) {
      size_t cap = buf->capacity_bytes && buf->data ? 2 * buf->capacity_bytes : (size_t)1 << 16;
      if (cap > max_bytes + 1) cap = max_bytes + 1;
      uint8_t *p = realloc(buf->data, cap);
      if (!p) return wk_fail(WK_ERR_NOMEM, "-: cannot allocate %zu bytes", cap);
      buf->data = p;
      buf->capacity_bytes = cap;
    }
    ssize_t got = read(STDIN_FILENO, buf->data + buf->n_bytes, buf->capacity_bytes - buf->n_bytes);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return wk_fail(WK_ERR_IO, "-: read error on standard input: %s", strerror(errno));
    if (got == 0) break;
    buf->n_bytes += (size_t)got;
  }
  if (buf->n_bytes > max_bytes)
    return wk_fail(WK_ERR_LIMIT, "-: more than %zu bytes on standard input (the file size limit)",
                   max_bytes);
  return WK_OK;
}

wk_status wk_file_read(const char *path, size_t max_bytes, wk_bytes *buf) {
  if (max_bytes == 0) max_bytes = WK_FILE_MAX_BYTES;
  buf->n_bytes = 0;
  if (!strcmp(path, "-")) {
    wk_status s = wk_stdin_read(max_bytes, buf);
    if (s != WK_OK) buf->n_bytes = 0;
    return s;
  }
  /* O_NONBLOCK: a FIFO with no writer would block the open itself, before
   * the check below refuses it (no effect on a regular file's reads) */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return wk_fail(WK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  wk_status s = WK_OK;
  if (fstat(fd, &st) != 0) {
    s = wk_fail(WK_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    s = wk_fail(WK_ERR_IO, "%s: not a regular file", path);
  } else if ((uint64_t)st.st_size > max_bytes) {
    s = wk_fail(WK_ERR_LIMIT, "%s: %lld bytes exceeds the file size limit of %zu bytes", path,
                (long long)st.st_size, max_bytes);
  } else {
    s = wk_bytes_reserve(buf, (size_t)st.st_size, path);
  }
  /* The size may change while we read: read at most what was reserved and
   * notice a file that grew. */
  size_t want = s == WK_OK ? (size_t)st.st_size : 0;
  while (s == WK_OK && buf->n_bytes < want) {
    ssize_t got = read(fd, buf->data + buf->n_bytes, want - buf->n_bytes);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      s = wk_fail(WK_ERR_IO, "%s: read error: %s", path, strerror(errno));
    } else if (got == 0) {
      break; /* shrank since fstat: what we have is the file */
    } else {
      buf->n_bytes += (size_t)got;
    }
  }
  close(fd);
  if (s != WK_OK) buf->n_bytes = 0;
  return s;
}

void wk_bytes_free(wk_bytes *buf) {
  free(buf->data);
  memset(buf, 0, sizeof *buf);
}
