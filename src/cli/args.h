/* args.h - helpers shared by the subcommands: option parsing, `--name VALUE` pairs
 * with range checks. Each returns 1 when argv[*i] is the option (and consumes
 * its value), 0 when it is another option, -1 after printing a usage error
 * naming the command, the option and the accepted range. */
#ifndef WK_CLI_ARGS_H
#define WK_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

int wk_arg_int(const char *cmd, int argc, char **argv, int *i, const char *name, long lo,
               long hi, int *out);
int wk_arg_double(const char *cmd, int argc, char **argv, int *i, const char *name, double lo,
                  double hi, double *out);
int wk_arg_str(const char *cmd, int argc, char **argv, int *i, const char *name,
               const char **out);
/* The options a command line gave, by name, for refusing alternatives given
 * together (--lr with --lr-find, say) instead of letting one silently win. */
typedef struct wk_opts_seen {
  const char *name[64]; /* distinct names; a command has fewer options than this */
  int n;
} wk_opts_seen;
void wk_seen_add(wk_opts_seen *s, const char *name);
bool wk_seen_has(const wk_opts_seen *s, const char *name);
/* When two of `names` (NULL-terminated) were given: prints "whisker CMD: A and B
 * are alternatives: give one" and returns true. */
bool wk_seen_clash(const char *cmd, const wk_opts_seen *s, const char *const *names);
/* The usage error for argv element `arg` that no option of cmd took: an unknown
 * option, with the nearest option in `usage`'s text when one is near ("did you
 * mean --epochs?") and the right spelling of --name=value; or a positional
 * argument too many. Prints a few lines, not the whole usage; returns
 * WK_EXIT_USAGE. */
int wk_arg_unknown(const char *cmd, const char *arg, void (*usage)(FILE *));
/* wk_arg_unknown, suggesting only the options that `fits` accepts (a command
 * whose usage text covers several subcommands). */
int wk_arg_unknown_fit(const char *cmd, const char *arg, void (*usage)(FILE *),
                       bool (*fits)(const char *opt, const void *ctx), const void *ctx);
/* The first paragraph of `usage`'s text (the synopsis) on stderr, and where the
 * rest is: for a usage error of a command whose help is long. */
void wk_usage_synopsis(const char *cmd, void (*usage)(FILE *));
/* --device cpu|cuda|cuda:N|auto into *out: WK_DEVICE_CPU, N >= 0 (cuda is
 * cuda:0) or WK_DEVICE_AUTO (nn/net.h). */
int wk_arg_device(const char *cmd, int argc, char **argv, int *i, int *out);
/* Prints s to stdout as a JSON string literal (quotes, backslashes and
 * control characters escaped). A byte that is not part of valid UTF-8 (a file
 * name in Latin-1, say) becomes U+FFFD, since JSON text is Unicode: the line
 * stays valid JSON, and the name is then not byte for byte the file's. */
void wk_print_json_string(const char *s);
/* s for a terminal, into buf (n bytes): each control character (below 0x20, and 0x7f) as
 * \xNN, so that a class name from a model file, or a file name, cannot move the cursor,
 * recolour or retitle the terminal, or break a line of output. Cut to fit n (4 bytes per
 * byte of s, and one, never cut); returns buf. */
#define WK_SAFE_TEXT_MAX(len) (4 * (size_t)(len) + 1)
const char *wk_safe_text(const char *s, char *buf, size_t n);
/* True on a terminal (progress bars redraw there). */
bool wk_stderr_is_tty(void);

#endif
