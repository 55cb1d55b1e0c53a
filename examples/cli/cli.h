/* The `mae` command-line tool: one file per subcommand, this header for what they share. */
#ifndef MAE_CLI_H
#define MAE_CLI_H

#include <stdint.h>
#include <stdio.h>
#include "mae.h"

/* Prints "mae <cmd>: <what>: <status>: <detail>" to stderr and returns 1. */
int cli_fail(const char *cmd, const char *what, mae_status s);
/* The per-op profile recorded since mae_measure_set(MAE_MEASURE_PROFILE), per run of runs: a line
 * per op kind with its loops, time, share and GFLOP/s (mae bench --profile, MAE_PROFILE=1). */
void cli_print_profile(FILE *f, const char *what, int runs);
/* Prints "mae <cmd>: <message>" to stderr and returns 1 (usage errors). */
int cli_usage_error(const char *cmd, const char *msg);
/* True if argv has -h or --help. */
int cli_wants_help(int argc, char **argv);
/* Writes a float32 array as a .npy file (little-endian '<f4', C order), atomically through
 * mae_file_write (a failed write leaves the previous file whole). 0, or 1 after the error line
 * (with the system's reason). */
int cli_write_npy(const char *cmd, const char *path, const float *data, const long long *shape,
                  int ndim);

/* ---- number parsing, more error lines, .safetensors (util.c) ---- */

#if defined(__MINGW32__) && defined(__GNUC__) && !defined(__clang__)   /* C99 printf */
#  define CLI_PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#elif defined(__GNUC__)
#  define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define CLI_PRINTF(a, b)
#endif
/* "mae <cmd>: <formatted>" on stderr; returns 1 (runtime errors). */
int cli_errorf(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);
/* cli_usage_error with a formatted message; returns 2. */
int cli_usage_errorf(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);
/* The value of option argv[*i] (advances *i), or NULL after the usage error "needs a value". */
const char *cli_arg_value(const char *cmd, int argc, char **argv, int *i);
/* The same as a status: *out = the value and 0, or the usage error and 2. */
int cli_arg_str(const char *cmd, int argc, char **argv, int *i, const char **out);
/* Option argv[*i]'s value parsed whole as a number in [lo, hi] (hi_open: [lo, hi)); advances
 * *i. 0 on success, else the usage error is printed and 2 returned. */
int cli_arg_long(const char *cmd, int argc, char **argv, int *i, long lo, long hi, long *out);
int cli_arg_int(const char *cmd, int argc, char **argv, int *i, int lo, int hi, int *out);
int cli_arg_u64(const char *cmd, int argc, char **argv, int *i, uint64_t *out);
int cli_arg_double(const char *cmd, int argc, char **argv, int *i, double lo, double hi,
                   int hi_open, double *out);
/* Writes one float32 tensor named name as a .safetensors file, as cli_write_npy does. */
int cli_write_safetensors(const char *cmd, const char *path, const char *name, const float *data,
                          const long long *shape, int ndim);

/* --precision f32|bf16 (reconstruct, features, bench): option argv[*i]'s value as a
 * MAE_PRECISION_* in *out; 0, or 2 after the usage error. */
int cli_arg_precision(const char *cmd, int argc, char **argv, int *i, int *out);
/* Loads the model at path computing in precision (mae_model_load_with: a bf16 model is read
 * straight into bf16, never held as float32): 0, or 1 after the error line. */
int cli_load_model(const char *cmd, const char *path, int precision, mae_model **m);
/* Makes a freshly created model compute in precision (mae_model_set_precision): 0, or 1 after
 * the error line. */
int cli_set_precision(const char *cmd, mae_model *m, int precision);
/* The precision a checkpoint's run had (its __metadata__ key, e.g. "trainer.precision";
 * absent: f32, as every checkpoint written before it was recorded); nonzero after a message. */
int cli_checkpoint_precision(const char *cmd, const char *path, const char *key, int *out);

/* ---- images in, for reconstruct and features (inputs.c) ---- */

/* The input options both commands take: --idx FILE --first K --count N --norm --filter. */
typedef struct cli_input_opts {
    const char *idx;       /* IDX file, or NULL: image files */
    long first, count;     /* count -1: the command's default */
    const char *norm;      /* "imagenet", "fashion-mnist", "none"; NULL: by channel count */
    mae_filter filter;
} cli_input_opts;
void cli_input_opts_init(cli_input_opts *o);
/* If argv[*i] is one of the input options, parses it (advancing *i) and returns 0, or 2 after a
 * usage error; returns -1 if it is not one of them. */
int cli_input_option(const char *cmd, int argc, char **argv, int *i, cli_input_opts *o);

/* Images that become model inputs [C,H,W], a batch at a time. */
typedef struct cli_inputs {
    char *const *paths;    /* image files (when idx is NULL) */
    const char *idx_path;
    uint8_t *idx;          /* the IDX file's pixels [n, h, w, c] */
    int idx_h, idx_w, idx_c;
    long first;
    int count;             /* images in all */
    int channels, height, width;
    mae_filter filter;
    const char *norm_name;
    float mean[4], std[4];
    int normalize;         /* 0: mean/std are NULL (v / 255) */
} cli_inputs;
/* Checks the options against the model (channels, norm) and, for --idx, loads the file; count
 * defaults to default_count images (clipped to what the file has; <= 0: all of them), at most
 * max_count. Prints the error and returns 1 or 2 on failure. */
int cli_inputs_open(const char *cmd, const mae_model *m, const cli_input_opts *o,
                    char *const *paths, int npaths, int default_count, int max_count,
                    cli_inputs *in);
/* Images [start, start + n) as model inputs into out [n, C, H, W]. Prints the error and returns
 * 1 on failure. */
int cli_inputs_fill(const char *cmd, const cli_inputs *in, int start, int n, float *out);
/* A name for image i ("photo.png", "t10k-images-idx3-ubyte.gz[17]"). */
void cli_inputs_label(const cli_inputs *in, int i, char *buf, size_t size);
/* mean/std for the library calls: NULL when not normalizing. */
const float *cli_inputs_mean(const cli_inputs *in);
const float *cli_inputs_std(const cli_inputs *in);
void cli_inputs_close(cli_inputs *in);

int cmd_info(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_plot(int argc, char **argv);

#endif
