/* st_dump.c - prints what a safetensors file holds: its tensors (name, dtype,
 * shape, byte range in the data section) and its __metadata__, after the same
 * checks as any whisker load (wk_st_open).
 *
 *   wk_st_dump FILE
 *
 * Output on stdout:
 *   file FILE: N tensors, M metadata, data at byte D
 *   tensor NAME DTYPE (d0, d1, ...) [begin, end)        (one line each, data order)
 *   meta KEY = VALUE                                    (one line each, header order)
 * Newlines, tabs and other control characters in names and values are printed
 * as \n, \t and \xHH so that each item stays on one line.
 * Exit status: 0 when the file is valid, 1 with the reason on stderr when it is
 * not, 2 for a usage error. */
#include <stdio.h>
#include <string.h>

#include "modelio/safetensors.h"

static void put_escaped(const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\n') fputs("\\n", stdout);
    else if (c == '\t') fputs("\\t", stdout);
    else if (c == '\\') fputs("\\\\", stdout);
    else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
    else putchar(c);
  }
}

int main(int argc, char **argv) {
  if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    fprintf(argc == 2 ? stdout : stderr, "usage: wk_st_dump FILE\n");
    return argc == 2 ? 0 : 2;
  }
  wk_st_file *f = NULL;
  wk_status s = wk_st_open(argv[1], &f);
  if (s != WK_OK) {
    fprintf(stderr, "wk_st_dump: %s\n", wk_last_error());
    return 1;
  }
  printf("file %s: %zu tensors, %zu metadata, data at byte %llu\n", argv[1], wk_st_count(f),
         wk_st_meta_count(f), (unsigned long long)wk_st_data_start(f));
  for (size_t i = 0; i < wk_st_count(f); i++) {
    const wk_st_entry *e = wk_st_entry_at(f, i);
    unsigned long long begin = wk_st_data_offset(f, i);
    fputs("tensor ", stdout);
    put_escaped(e->name);
    printf(" %s (", wk_st_dtype_name(e->dtype));
    for (int d = 0; d < e->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)e->shape[d]);
    printf(") [%llu, %llu)\n", begin, begin + (unsigned long long)e->n_bytes);
  }
  for (size_t i = 0; i < wk_st_meta_count(f); i++) {
    const wk_st_meta *m = wk_st_meta_at(f, i);
    fputs("meta ", stdout);
    put_escaped(m->key);
    fputs(" = ", stdout);
    put_escaped(m->value);
    putchar('\n');
  }
  wk_st_close(f);
  if (fflush(stdout) != 0) {
    perror("wk_st_dump: stdout");
    return 1;
  }
  return 0;
}
