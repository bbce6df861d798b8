/* cli.h - the subcommands of the whisker program. Each takes the arguments after
 * its own name and returns the process exit code: 0 success, 1 failure, 2 usage. */
#ifndef WK_CLI_H
#define WK_CLI_H

enum { WK_EXIT_OK = 0, WK_EXIT_FAIL = 1, WK_EXIT_USAGE = 2 };

int wk_cmd_system(int argc, char **argv);
int wk_cmd_info(int argc, char **argv);
int wk_cmd_bench(int argc, char **argv);
int wk_cmd_train(int argc, char **argv);
int wk_cmd_finetune(int argc, char **argv);
int wk_cmd_eval(int argc, char **argv);
int wk_cmd_classify(int argc, char **argv);
int wk_cmd_convert(int argc, char **argv);
int wk_cmd_import(int argc, char **argv);
int wk_cmd_export(int argc, char **argv);
int wk_cmd_clicks(int argc, char **argv);

#endif
