/* mae convert: a checkpoint rewritten with its weights stored as F32, F16 or BF16, or as a Hugging
 * Face directory (--hf). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"

#define CMD "convert"

static void usage(void)
{
    printf("usage: mae convert IN OUT [--dtype f32|f16|bf16 | --hf]\n"
           "Loads a checkpoint (official or Hugging Face names, F32/F16/BF16) and saves it with\n"
           "mae_model_save_as: official names, the config in __metadata__, every weight stored\n"
           "as --dtype (default f16: half the size of f32), rounded to nearest even. A weight\n"
           "beyond the F16 range (|x| >= 65520) is an error, not an infinity. Prints one line:\n"
           "the tensor count and the sizes of both files. OUT may be IN (the write is atomic).\n"
           "IN may be a Hugging Face directory (config.json, model.safetensors or shards).\n"
           "--hf: OUT is written as a Hugging Face directory with mae_model_save_hf (config.json\n"
           "and model.safetensors, F32, transformers 5 names) that from_pretrained loads.\n"
           "A classifier file (head.* tensors: mae finetune's, a converted fine-tuned checkpoint)\n"
           "is saved as a classifier with mae_classifier_save_as, head and labels kept.\n");
}


static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* IN as a classifier: 1 converted (or failed, reported), 0 not a classifier (no head). */
static int convert_classifier(const char *in, const char *out, const char *dtype, int hf, long long in_bytes, int *rc)
{
    mae_classifier *c = NULL;
    mae_status s = mae_classifier_load(in, 0, &c);
    if (s == MAE_ERR_FORMAT && strstr(mae_last_error(), "not a classifier"))
        return 0;   /* a pretrained model: mae_model_load's turn */
    if (s != MAE_OK) {
        *rc = cli_fail(CMD, in, s);
        return 1;
    }
    if (hf) {
        mae_classifier_free(c);
        *rc = cli_usage_error(CMD, "--hf writes pretrained models; IN is a classifier");
        return 1;
    }
    const mae_model *m = NULL;
    int n = 0, classes = 0;
    mae_classifier_model(c, &m);
    mae_model_tensor_count(m, &n);
    mae_classifier_num_classes(c, &classes);
    s = mae_classifier_save_as(c, out, dtype);
    mae_classifier_free(c);
    if (s != MAE_OK) {
        *rc = cli_fail(CMD, out, s);
        return 1;
    }
    printf("classifier (%d classes, %d encoder tensors + head) as %s: %s %lld bytes -> %s %lld bytes\n", classes, n,
           dtype, in, in_bytes, out, file_size(out));
    *rc = 0;
    return 1;
}

/* --dtype's value (lower or upper case) as the name mae_model_save_as takes, or NULL. */
static const char *dtype_name(const char *v)
{
    static const char *const names[][2] = { { "f32", "F32" }, { "f16", "F16" }, { "bf16", "BF16" } };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(v, names[i][0]) == 0 || strcmp(v, names[i][1]) == 0)
            return names[i][1];
    return NULL;
}

int cmd_convert(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *in = NULL, *out = NULL, *dtype = "F16", *v;
    int hf = 0, dtype_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--hf") == 0) {
            hf = 1;
        } else if (strcmp(a, "--dtype") == 0) {
            dtype_given = 1;
            int r = cli_arg_str(CMD, argc, argv, &i, &v);
            if (r)
                return r;
            if (!(dtype = dtype_name(v)))
                return cli_usage_errorf(CMD, "--dtype: '%s' is not f32, f16 or bf16", v);
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_errorf(CMD, "unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            return cli_usage_errorf(CMD, "unexpected argument '%s' (an input and an output file)", a);
        }
    }
    if (!out)
        return cli_usage_error(CMD, "expects an input and an output checkpoint path");
    if (hf && dtype_given)
        return cli_usage_error(CMD, "--hf writes F32 (as transformers does): it takes no --dtype");
    long long in_bytes = file_size(in);
    int rc = 0;
    if (convert_classifier(in, out, dtype, hf, in_bytes, &rc))
        return rc;
    mae_model *m = NULL;
    mae_status s = mae_model_load(in, &m);
    if (s != MAE_OK)
        return cli_fail(CMD, in, s);
    int n = 0;
    mae_model_tensor_count(m, &n);
    s = hf ? mae_model_save_hf(m, out) : mae_model_save_as(m, out, dtype);
    mae_model_free(m);
    if (s != MAE_OK)
        return cli_fail(CMD, out, s);
    if (hf) {
        char weights[4200];
        snprintf(weights, sizeof weights, "%s/model.safetensors", out);
        printf("%d tensors as a Hugging Face directory: %s %lld bytes -> %s (model.safetensors %lld bytes, config.json)\n",
               n, in, in_bytes, out, file_size(weights));
        return 0;
    }
    printf("%d tensors as %s: %s %lld bytes -> %s %lld bytes\n", n, dtype, in, in_bytes, out, file_size(out));
    return 0;
}
