/* mae — the libmae command-line tool. `mae <command> --help` describes each command. */
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
};

static void usage(FILE *f)
{
    fprintf(f, "usage: mae <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`mae <command> --help` for a command's options. libmae %s, kernels %s.\n",
            mae_version_string(), mae_kernels_name());
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "mae: unknown command '%s' (try mae --help)\n", argv[1]);
    return 2;
}
