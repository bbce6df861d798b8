/* args.c - see args.h. */
#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/net.h"

int wk_arg_str(const char *cmd, int argc, char **argv, int *i, const char *name,
               const char **out) {
  if (strcmp(argv[*i], name) != 0) return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "whisker %s: %s needs a value\n", cmd, name);
    return -1;
  }
  *out = argv[++*i];
  return 1;
}

int wk_arg_device(const char *cmd, int argc, char **argv, int *i, int *out) {
  const char *v;
  int r = wk_arg_str(cmd, argc, argv, i, "--device", &v);
  if (r <= 0) return r;
  char *end = NULL;
  long n = 0;
  if (!strcmp(v, "cpu")) {
    *out = WK_DEVICE_CPU;
  } else if (!strcmp(v, "auto")) {
    *out = WK_DEVICE_AUTO;
  } else if (!strcmp(v, "cuda")) {
    *out = 0;
  } else if (!strncmp(v, "cuda:", 5) && (errno = 0, n = strtol(v + 5, &end, 10), !errno) &&
             *end == '\0' && end != v + 5 && n >= 0 && n < 1024) {
    *out = (int)n;
  } else {
    fprintf(stderr, "whisker %s: --device needs cpu, cuda, cuda:N or auto, got '%s'\n", cmd, v);
    return -1;
  }
  return 1;
}

int wk_arg_int(const char *cmd, int argc, char **argv, int *i, const char *name, long lo,
               long hi, int *out) {
  const char *v;
  int r = wk_arg_str(cmd, argc, argv, i, name, &v);
  if (r <= 0) return r;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end || !*v || x < lo || x > hi) {
    fprintf(stderr, "whisker %s: %s needs an integer in [%ld, %ld], got '%s'\n", cmd, name, lo,
            hi, v);
    return -1;
  }
  *out = (int)x;
  return 1;
}

int wk_arg_double(const char *cmd, int argc, char **argv, int *i, const char *name, double lo,
                  double hi, double *out) {
  const char *v;
  int r = wk_arg_str(cmd, argc, argv, i, name, &v);
  if (r <= 0) return r;
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || *end || !*v || !(x >= lo && x <= hi)) {
    fprintf(stderr, "whisker %s: %s needs a number in [%g, %g], got '%s'\n", cmd, name, lo, hi,
            v);
    return -1;
  }
  *out = x;
  return 1;
}

bool wk_stderr_is_tty(void) { return isatty(2) == 1; }

const char *wk_safe_text(const char *s, char *buf, size_t n) {
  size_t o = 0;
  for (; *s; s++) {
    const unsigned char ch = (unsigned char)*s;
    const bool ctl = ch < 0x20 || ch == 0x7f;
    if (o + (ctl ? 4 : 1) >= n) break;
    if (ctl) o += (size_t)snprintf(buf + o, n - o, "\\x%02x", ch);
    else buf[o++] = (char)ch;
  }
  if (n) buf[o < n ? o : n - 1] = '\0';
  return buf;
}

void wk_print_json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      printf("\\%c", ch);
    else if (ch < 0x20)
      printf("\\u%04x", ch);
    else
      putchar(ch);
  }
  putchar('"');
}
