/* args.h - helpers shared by the subcommands: option parsing, `--name VALUE` pairs
 * with range checks. Each returns 1 when argv[*i] is the option (and consumes
 * its value), 0 when it is another option, -1 after printing a usage error
 * naming the command, the option and the accepted range. */
#ifndef WK_CLI_ARGS_H
#define WK_CLI_ARGS_H

#include <stdbool.h>

int wk_arg_int(const char *cmd, int argc, char **argv, int *i, const char *name, long lo,
               long hi, int *out);
int wk_arg_double(const char *cmd, int argc, char **argv, int *i, const char *name, double lo,
                  double hi, double *out);
int wk_arg_str(const char *cmd, int argc, char **argv, int *i, const char *name,
               const char **out);
/* --device cpu|cuda|cuda:N|auto into *out: WK_DEVICE_CPU, N >= 0 (cuda is
 * cuda:0) or WK_DEVICE_AUTO (nn/net.h). */
int wk_arg_device(const char *cmd, int argc, char **argv, int *i, int *out);
/* Prints s to stdout as a JSON string literal (quotes, backslashes and
 * control characters escaped). */
void wk_print_json_string(const char *s);
/* True on a terminal (progress bars redraw there). */
bool wk_stderr_is_tty(void);

#endif
