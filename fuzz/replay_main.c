/* replay_main.c - runs a fuzz target without libFuzzer: every file named on
 * the command line, and every file in every folder named, goes once through
 * LLVMFuzzerTestOneInput. ctest replays the committed corpus and regression
 * inputs this way in every build (under ASan+UBSan in the sanitizer build),
 * so a fixed bug stays fixed without clang. Exit status 0 when every input
 * ran; a crash is the process dying. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int wk_replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return 1;
  }
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      uint8_t *p = realloc(buf, cap *= 2);
      if (!p) free(buf);
      buf = p;
    }
  }
  fclose(f);
  if (!buf) {
    fprintf(stderr, "replay: out of memory reading %s\n", path);
    return 1;
  }
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

static int wk_cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a folder in name order (hidden names skipped). */
static int wk_replay_dir(const char *dir, int *count) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "replay: cannot open folder %s\n", dir);
    return 1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  int bad = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      char **p = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
      if (!p) {
        bad = 1;
        break;
      }
      names = p;
    }
    size_t len = strlen(dir) + strlen(e->d_name) + 2;
    if (!(names[n] = malloc(len))) {
      bad = 1;
      break;
    }
    snprintf(names[n++], len, "%s/%s", dir, e->d_name);
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, wk_cmp_str);
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (!bad && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
      bad |= wk_replay_file(names[i]);
      ++*count;
    }
    free(names[i]);
  }
  free(names);
  if (bad) fprintf(stderr, "replay: failed in %s\n", dir);
  return bad;
}

int main(int argc, char **argv) {
  int bad = 0, count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) continue; /* an absent regressions folder is fine */
    if (S_ISDIR(st.st_mode)) {
      bad |= wk_replay_dir(argv[i], &count);
    } else {
      bad |= wk_replay_file(argv[i]);
      count++;
    }
  }
  printf("replay: %d inputs ran%s\n", count, bad ? " (with errors)" : "");
  return bad ? EXIT_FAILURE : EXIT_SUCCESS;
}
