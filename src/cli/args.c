/* args.c - see args.h. */
#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/utf8.h"
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

void wk_seen_add(wk_opts_seen *s, const char *name) {
  if (wk_seen_has(s, name)) return;
  if (s->n < (int)(sizeof s->name / sizeof s->name[0])) s->name[s->n++] = name;
}

bool wk_seen_has(const wk_opts_seen *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (!strcmp(s->name[i], name)) return true;
  return false;
}

bool wk_seen_clash(const char *cmd, const wk_opts_seen *s, const char *const *names) {
  const char *first = NULL;
  for (; *names; names++) {
    if (!wk_seen_has(s, *names)) continue;
    if (first) {
      fprintf(stderr, "whisker %s: %s and %s are alternatives: give one\n", cmd, first, *names);
      return true;
    }
    first = *names;
  }
  return false;
}

/* Edit distance between a and b (insert, delete, replace, swap of neighbours),
 * for names up to 63 bytes; longer ones are far from everything. */
static int wk_edit_distance(const char *a, const char *b) {
  const size_t n = strlen(a), m = strlen(b);
  if (n > 63 || m > 63) return 1 << 20;
  int d[64][64];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[n][m];
}

/* What `usage` prints, as a malloc'ed string (NULL without memory for it). */
static char *wk_usage_text(void (*usage)(FILE *)) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return NULL;
  usage(f);
  if (fclose(f) == 0) return text;
  free(text);
  return NULL;
}

/* A character of an option's name after its "--". */
static bool wk_opt_char(char c) {
  return c == '-' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* The option of a usage text nearest to `name` (the whole name when `exact`)
 * that `fits` accepts (every one when NULL), copied into out (n bytes); false
 * when none is near. */
static bool wk_usage_option_near(const char *text, const char *name, bool exact,
                                 bool (*fits)(const char *opt, const void *ctx),
                                 const void *ctx, char *out, size_t n) {
  /* near: within a third of the name's length, at most 3 edits */
  int limit = exact ? 0 : (int)strlen(name) / 3;
  if (limit > 3) limit = 3;
  int best = limit + 1;
  for (const char *p = strstr(text, "--"); p; p = strstr(p, "--")) {
    size_t k = 2;
    while (wk_opt_char(p[k])) k++;
    char opt[64];
    if (k > 2 && k < sizeof opt && (p == text || p[-1] != '-')) {
      memcpy(opt, p, k);
      opt[k] = '\0';
      const int dist = wk_edit_distance(name, opt);
      if (dist < best && (!fits || fits(opt, ctx))) {
        best = dist;
        snprintf(out, n, "%s", opt);
      }
    }
    p += k;
  }
  return best <= limit;
}

/* How one mention of an option (at p, k bytes long) in a usage text shows it:
 * 1 taking a value, 0 as a flag, -1 neither. Only a synopsis or an option
 * list says: "[--top 1]" and "  --size S    text" take one; "[--json]",
 * "[--resume | --overwrite]" and "  --json      text" do not. A mention in
 * running text ("with --json also ...") says nothing. */
static int wk_usage_mention(const char *text, const char *p, size_t k) {
  const char *b = p;
  while (b > text && b[-1] == ' ') b--;
  const bool in_list = b > text && (b[-1] == '[' || b[-1] == '|');
  const bool in_table = b < p && (b == text || b[-1] == '\n'); /* an indented line's start */
  if (!in_list && !in_table) return -1;
  const char *a = p + k;
  if (*a == ']' || *a == '\n' || *a == '\0') return 0;
  if (*a != ' ') return -1;
  if (a[1] == ' ' || a[1] == '|' || a[1] == '\n') return 0;
  return 1;
}

/* Whether the usage text shows opt as a flag: some mention says so and none
 * shows it with a value. */
static bool wk_usage_is_flag(const char *text, const char *opt) {
  const size_t k = strlen(opt);
  bool flag = false;
  for (const char *p = strstr(text, opt); p; p = strstr(p + k, opt)) {
    if ((p > text && p[-1] == '-') || wk_opt_char(p[k])) continue; /* part of a longer name */
    const int m = wk_usage_mention(text, p, k);
    if (m == 1) return false;
    flag |= m == 0;
  }
  return flag;
}

void wk_usage_synopsis(const char *cmd, void (*usage)(FILE *)) {
  char *text = wk_usage_text(usage);
  if (!text) { /* no memory for the text: all of it, then */
    usage(stderr);
    return;
  }
  char *blank = strstr(text, "\n\n");
  if (blank) blank[1] = '\0';
  fprintf(stderr, "%s\n'whisker %s --help' describes every option.\n", text, cmd);
  free(text);
}

int wk_arg_unknown_fit(const char *cmd, const char *arg, void (*usage)(FILE *),
                       bool (*fits)(const char *opt, const void *ctx), const void *ctx) {
  char safe[WK_SAFE_TEXT_MAX(256)], near[64];
  wk_safe_text(arg, safe, sizeof safe);
  const size_t cmd_word = strcspn(cmd, " ");
  if (arg[0] != '-' || !arg[1]) {
    fprintf(stderr, "whisker %s: unexpected argument '%s' ('whisker %.*s --help' shows the "
            "usage)\n", cmd, safe, (int)cmd_word, cmd);
    return WK_EXIT_USAGE;
  }
  char *text = wk_usage_text(usage); /* NULL without memory: no suggestion then */
  const char *eq = strchr(arg, '=');
  char name[64];
  if (text && eq && (size_t)(eq - arg) < sizeof name) { /* --epochs=5: GNU style, not whisker's */
    memcpy(name, arg, (size_t)(eq - arg));
    name[eq - arg] = '\0';
    if (wk_usage_option_near(text, name, true, fits, ctx, near, sizeof near)) {
      char value[WK_SAFE_TEXT_MAX(256)];
      if (wk_usage_is_flag(text, near))
        fprintf(stderr, "whisker %s: unknown option '%s': %s takes no value; give '%s' alone\n",
                cmd, safe, near, near);
      else
        fprintf(stderr, "whisker %s: unknown option '%s': give the value after a space, "
                "'%s %s'\n", cmd, safe, near, wk_safe_text(eq + 1, value, sizeof value));
      free(text);
      return WK_EXIT_USAGE;
    }
  }
  if (text && wk_usage_option_near(text, arg, false, fits, ctx, near, sizeof near))
    fprintf(stderr, "whisker %s: unknown option '%s'; did you mean %s?\n", cmd, safe, near);
  else
    fprintf(stderr, "whisker %s: unknown option '%s' ('whisker %.*s --help' lists the options)\n",
            cmd, safe, (int)cmd_word, cmd);
  free(text);
  return WK_EXIT_USAGE;
}

int wk_arg_unknown(const char *cmd, const char *arg, void (*usage)(FILE *)) {
  return wk_arg_unknown_fit(cmd, arg, usage, NULL, NULL);
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
  const unsigned char *u = (const unsigned char *)s;
  size_t left = strlen(s);
  while (left) {
    const unsigned char ch = *u;
    size_t len = wk_utf8_seq_bytes(u, left);
    if (len == 0) { /* not UTF-8 (a file name in another encoding): JSON cannot carry the byte */
      fputs("\\ufffd", stdout);
      len = 1;
    } else if (ch == '"' || ch == '\\') {
      printf("\\%c", ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      printf("\\u%04x", ch);
    } else {
      fwrite(u, 1, len, stdout);
    }
    u += len, left -= len;
  }
  putchar('"');
}
