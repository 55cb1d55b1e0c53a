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

int cmd_info(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: mae info MODEL.safetensors [--tensors]\n"
               "Prints the config, the parameter count, whether the checkpoint has a decoder,\n"
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
    mae_model *m;
    mae_status s = mae_model_load(path, &m);
    if (s != MAE_OK)
        return cli_fail("info", path, s);
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
    if (dec)
        printf("decoder:     width %d, depth %d, heads %d\n", c.decoder_embed_dim, c.decoder_depth,
               c.decoder_num_heads);
    else
        printf("decoder:     none (encoder-only checkpoint: features, no reconstruction)\n");
    printf("loss:        %s, mask ratio %g, layer_norm_eps %g\n",
           c.norm_pix_loss ? "norm_pix" : "pixels", (double)c.mask_ratio, (double)c.layer_norm_eps);
    printf("parameters:  %zu (%.1f MB as float32)\n", n, n * 4.0 / 1e6);
    print_checksum(argv[1]);
    if (list)
        print_tensors(m);
    mae_model_free(m);
    return 0;
}
