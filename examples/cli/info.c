/* mae info: what a checkpoint holds. */
#include <stdio.h>
#include <string.h>
#include "cli.h"

static void print_tensors(const mae_model *m)
{
    int n = 0;
    mae_model_tensor_count(m, &n);
    for (int i = 0; i < n; i++) {
        const char *name;
        int nd;
        int64_t sh[4];
        mae_model_tensor_name(m, i, &name);
        mae_model_tensor(m, name, NULL, NULL, &nd, sh);
        printf("  %-44s [", name);
        for (int d = 0; d < nd; d++)
            printf("%lld%s", (long long)sh[d], d + 1 < nd ? ", " : "");
        printf("]\n");
    }
}

/* The checksum libmae writes first in __metadata__ (docs/FORMAT.md): found in the header's first
 * bytes; mae_model_load has verified it when it is there. */
static void print_checksum(const char *path)
{
    char head[256] = "", *at;
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(head, 1, sizeof head - 1, fp) : 0;
    if (fp)
        fclose(fp);
    for (size_t i = 8; i < n; i++)   /* the header's text after the 8-byte length */
        head[i - 8] = head[i] ? head[i] : ' ';
    head[n > 8 ? n - 8 : 0] = '\0';
    if ((at = strstr(head, "\"libmae.crc32c\":\"")) != NULL && strlen(at) >= 25)
        printf("checksum:    CRC-32C %.8s, verified\n", at + 17);
    else
        printf("checksum:    none (not written by libmae): not verified\n");
}

/* A classifier file's head: classes, pooling, and the labels when the file names them. */
static void print_classifier(const mae_classifier *cl)
{
    int K = 0, gp = 0, named = 0;
    mae_classifier_num_classes(cl, &K);
    mae_classifier_global_pool(cl, &gp);
    mae_classifier_has_labels(cl, &named);
    printf("classifier:  %d classes, %s\n", K, gp ? "global pooling + fc_norm" : "cls token after norm");
    if (!named)
        return;
    printf("labels:      ");
    for (int i = 0; i < K; i++) {
        const char *label = NULL;
        mae_classifier_label(cl, i, &label);
        if (i == 8 && K > 10) {
            printf(", ... (%d more)", K - 8);
            break;
        }
        printf("%s%s", i ? ", " : "", label ? label : "?");
    }
    printf("\n");
}

int cmd_info(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: mae info MODEL.safetensors [--tensors]\n"
               "Prints the config, the parameter count, whether the checkpoint has a decoder (or, for\n"
               "a classifier file, its classes, pooling and labels),\n"
               "and with --tensors every tensor's official name and shape.\n");
        return 0;
    }
    int list = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tensors") == 0)
            list = 1;
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_errorf("info", "unknown option '%s'", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return cli_usage_error("info", "expects one checkpoint path");
    }
    if (!path)
        return cli_usage_error("info", "expects one checkpoint path");
    mae_classifier *cl = NULL;
    mae_model *own = NULL;
    const mae_model *m = NULL;
    mae_status s = mae_classifier_load(path, 0, &cl);
    if (s == MAE_OK) {
        mae_classifier_model(cl, &m);
    } else if (s == MAE_ERR_FORMAT && strstr(mae_last_error(), "not a classifier")) {
        if ((s = mae_model_load(path, &own)) != MAE_OK)
            return cli_fail("info", path, s);
        m = own;
    } else {
        return cli_fail("info", path, s);
    }
    mae_config c;
    c.struct_size = sizeof c;
    mae_model_get_config(m, &c);
    size_t n = 0;
    mae_model_num_params(m, &n);
    int dec = 0;
    mae_model_has_decoder(m, &dec);
    printf("file:        %s\n", path);
    printf("image:       %dx%d, patch %d, %d channel%s\n", c.img_height, c.img_width, c.patch_size,
           c.in_chans, c.in_chans == 1 ? "" : "s");
    printf("encoder:     width %d, depth %d, heads %d, mlp_ratio %g\n", c.embed_dim, c.depth,
           c.num_heads, (double)c.mlp_ratio);
    if (cl)
        print_classifier(cl);
    else if (dec)
        printf("decoder:     width %d, depth %d, heads %d\n", c.decoder_embed_dim, c.decoder_depth,
               c.decoder_num_heads);
    else
        printf("decoder:     none (encoder-only checkpoint: features, no reconstruction)\n");
    if (!cl)
        printf("loss:        %s, mask ratio %g, layer_norm_eps %g\n",
               c.norm_pix_loss ? "norm_pix" : "pixels", (double)c.mask_ratio, (double)c.layer_norm_eps);
    printf("parameters:  %zu (%.1f MB as float32)%s\n", n, n * 4.0 / 1e6, cl ? " in the encoder" : "");
    print_checksum(path);
    if (list)
        print_tensors(m);
    mae_classifier_free(cl);
    mae_model_free(own);
    return 0;
}
