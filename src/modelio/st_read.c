/* st_read.c - wk_st_open: reads a safetensors file into memory in three
 * steps, each sized by what the previous one checked against the real file
 * size: the 8-byte header length, the header (checked whole by
 * st_header.c), then the data section. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modelio/st_impl.h"

/* Reads n bytes at offset off; a file that ends early was changed while being
 * read (its size was checked before). */
static wk_status read_at(const char *path, int fd, uint64_t off, void *buf, uint64_t n,
                         const char *what) {
  unsigned char *p = buf;
  while (n > 0) {
    size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
    ssize_t got = pread(fd, p, chunk, (off_t)off);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      int err = errno;
      return wk_fail(WK_ERR_IO, "%s: cannot read the %s: %s", path, what, strerror(err));
    }
    if (got == 0)
      return wk_fail(WK_ERR_IO, "%s: the file ended while reading the %s (changed meanwhile?)",
                     path, what);
    p += got, off += (uint64_t)got, n -= (uint64_t)got;
  }
  return WK_OK;
}

/* The header length from the first 8 bytes, checked against the file size and
 * the reference reader's limit. */
static wk_status read_header_len(const char *path, int fd, uint64_t file_bytes,
                                 uint64_t *header_bytes) {
  if (file_bytes < 8)
    return wk_fail(WK_ERR_FORMAT,
                   "%s: file holds %llu bytes, too short for the 8-byte header length", path,
                   (unsigned long long)file_bytes);
  unsigned char len_le[8];
  WK_TRY(read_at(path, fd, 0, len_le, 8, "header length"));
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= (uint64_t)len_le[i] << (8 * i);
  if (n > file_bytes - 8)
    return wk_fail(WK_ERR_FORMAT,
                   "%s: header length %llu runs past the end of the file (%llu bytes after "
                   "the length)",
                   path, (unsigned long long)n, (unsigned long long)(file_bytes - 8));
  if (n > WK_ST_MAX_HEADER_BYTES)
    return wk_fail(WK_ERR_LIMIT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                   (unsigned long long)n, (unsigned long long)WK_ST_MAX_HEADER_BYTES);
  *header_bytes = n;
  return WK_OK;
}

static wk_status read_header(wk_st_file *f, int fd, uint64_t header_bytes, uint64_t data_bytes) {
  char *h = malloc((size_t)header_bytes + 1);
  if (!h)
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory for a header of %llu bytes", f->path,
                   (unsigned long long)header_bytes);
  wk_status s = read_at(f->path, fd, 8, h, header_bytes, "header");
  h[header_bytes] = '\0';
  if (s == WK_OK) s = wk_st_parse_header(f, h, (size_t)header_bytes, data_bytes);
  free(h);
  return s;
}

static wk_status read_data(wk_st_file *f, int fd, uint64_t data_bytes) {
  if (data_bytes > WK_TENSOR_MAX_BYTES)
    return wk_fail(WK_ERR_LIMIT, "%s: data section of %llu bytes exceeds the limit of %zu",
                   f->path, (unsigned long long)data_bytes, (size_t)WK_TENSOR_MAX_BYTES);
  size_t rounded = ((size_t)data_bytes + 63) & ~(size_t)63;
  f->data = aligned_alloc(64, rounded ? rounded : 64);
  if (!f->data)
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory for %llu bytes of tensor data", f->path,
                   (unsigned long long)data_bytes);
  WK_TRY(read_at(f->path, fd, f->data_start, f->data, data_bytes, "tensor data"));
  for (size_t i = 0; i < f->n_entries; i++)
    f->entries[i].data = (const unsigned char *)f->data + f->offsets[i];
  return WK_OK;
}

static wk_status open_into(wk_st_file *f, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    return wk_fail(WK_ERR_IO, "%s: cannot stat: %s", f->path, strerror(err));
  }
  if (!S_ISREG(st.st_mode)) return wk_fail(WK_ERR_IO, "%s: not a regular file", f->path);
  uint64_t file_bytes = (uint64_t)st.st_size, header_bytes = 0;
  WK_TRY(read_header_len(f->path, fd, file_bytes, &header_bytes));
  f->data_start = 8 + header_bytes;
  uint64_t data_bytes = file_bytes - f->data_start;
  WK_TRY(read_header(f, fd, header_bytes, data_bytes));
  return read_data(f, fd, data_bytes);
}

wk_status wk_st_open(const char *path, wk_st_file **out) {
  WK_ASSERT(path && out);
  *out = NULL;
  wk_st_file *f = calloc(1, sizeof *f);
  size_t n_path = strlen(path) + 1;
  if (f) f->path = malloc(n_path);
  if (!f || !f->path) {
    wk_st_close(f);
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
  }
  memcpy(f->path, path, n_path);
  /* O_NONBLOCK: opening a FIFO must not hang; it is then refused as not a file */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    wk_st_close(f);
    return wk_fail(WK_ERR_IO, "%s: cannot open: %s", path, strerror(err));
  }
  wk_status s = open_into(f, fd);
  close(fd);
  if (s != WK_OK) {
    wk_st_close(f);
    return s;
  }
  *out = f;
  return WK_OK;
}
