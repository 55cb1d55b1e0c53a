/* The `mae` command-line tool: one file per subcommand, this header for what they share. */
#ifndef MAE_CLI_H
#define MAE_CLI_H

#include <stdio.h>
#include "mae.h"

/* Prints "mae <cmd>: <what>: <status>: <detail>" to stderr and returns 1. */
int cli_fail(const char *cmd, const char *what, mae_status s);
/* Prints "mae <cmd>: <message>" to stderr and returns 1 (usage errors). */
int cli_usage_error(const char *cmd, const char *msg);
/* True if argv has -h or --help. */
int cli_wants_help(int argc, char **argv);
/* Writes a float32 array as a .npy file (little-endian '<f4', C order). */
int cli_write_npy(const char *path, const float *data, const long long *shape, int ndim);

int cmd_info(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
