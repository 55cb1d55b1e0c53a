/* mae — the libmae command-line tool. `mae <command> --help` describes each command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    { "info",        cmd_info,        "show a checkpoint's config, parameter count and tensors" },
    { "reconstruct", cmd_reconstruct, "mask images and write the reconstruction grid as a PNG" },
    { "features",    cmd_features,    "encode images into features (.npy or .safetensors)" },
    { "convert",     cmd_convert,     "rewrite a checkpoint with F16, BF16 or F32 weights" },
    { "train",       cmd_train,       "pretrain an MAE on Fashion-MNIST (or any IDX images)" },
    { "probe",       cmd_probe,       "linear-probe an encoder's frozen features on Fashion-MNIST" },
    { "finetune",    cmd_finetune,    "fine-tune an encoder as a classifier on Fashion-MNIST" },
    { "classify",    cmd_classify,    "classify images with a classifier (fine-tuned) model" },
    { "bench",       cmd_bench,       "time the forward pass and a training step of a model" },
    { "plot",        cmd_plot,        "draw several runs' loss.csv curves on one chart (PNG)" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: mae <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`mae <command> --help` for a command's options. libmae %s, kernels %s.\n",
            mae_version_string(), mae_kernels_name());
}

/* MAE_PROFILE set (and not "0"): the command's per-op profile on stderr when it ends, for an
 * owner to see where a slow machine spends its time. bench has --profile for its timed runs. */
static int profile_wanted(const char *cmd)
{
    const char *e = getenv("MAE_PROFILE");
    return e && *e && strcmp(e, "0") != 0 && strcmp(cmd, "bench") != 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        int profile = profile_wanted(argv[1]);
        if (profile)
            mae_measure_set(MAE_MEASURE_PROFILE);
        int rc = commands[i].run(argc - 1, argv + 1);
        if (profile) {
            char what[64];
            snprintf(what, sizeof what, "mae %s (all its calls)", argv[1]);
            cli_print_profile(stderr, what, 1);
            mae_measure_set(MAE_MEASURE_OFF);
        }
        return rc;
    }
    fprintf(stderr, "mae: unknown command '%s' (try mae --help)\n", argv[1]);
    return 2;
}
