/* Loads a checkpoint (or creates a small model when none is given), runs one MAE forward pass
 * on a synthetic image with a fixed seed, and prints the loss and the mask.
 *
 *   build/examples/forward [model.safetensors]
 */
#include <stdio.h>
#include <stdlib.h>
#include "mae.h"

static int fail(const char *what, mae_status s)
{
    fprintf(stderr, "forward: %s: %s: %s\n", what, mae_status_str(s), mae_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    mae_model *m = NULL;
    mae_ctx *c = NULL;
    mae_status s;
    if (argc > 1) {
        s = mae_model_load(argv[1], &m);
    } else {
        mae_config tiny;
        mae_config_init(&tiny, sizeof tiny, "tiny");
        s = mae_model_create(&tiny, 42, &m);
    }
    if (s != MAE_OK)
        return fail("model", s);

    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_model_get_config(m, &cfg);
    int C = cfg.in_chans, H = cfg.img_size, W = cfg.img_size;
    if ((s = mae_ctx_create(m, 1, &c)) != MAE_OK) {
        mae_model_free(m);
        return fail("context", s);
    }
    mae_ctx_set_seed(c, 2);   /* the official demo's torch.manual_seed(2) */

    int L, keep, P;
    mae_ctx_get_dims(c, &L, &keep, &P);
    float *img = malloc(sizeof(float) * C * H * W);
    float *pred = malloc(sizeof(float) * L * P);
    float *mask = malloc(sizeof(float) * L);
    if (!img || !pred || !mask) {
        fprintf(stderr, "forward: out of memory\n");
        return 1;
    }
    /* a smooth synthetic image: diagonal bands, different per channel */
    for (int ch = 0; ch < C; ch++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                img[(ch * H + y) * W + x] = (float)((x + 2 * y + 5 * ch) % 16) / 8.0f - 1.0f;

    int has_decoder = 0;
    mae_model_has_decoder(m, &has_decoder);
    float loss = 0.0f;
    s = mae_forward(c, img, 1, NULL, has_decoder ? &loss : NULL, has_decoder ? pred : NULL, mask, NULL);
    if (s != MAE_OK)
        return fail("forward", s);

    printf("model: %dx%d, patch %d, %d channels, D=%d depth=%d; kernels: %s\n",
           H, W, cfg.patch_size, C, cfg.embed_dim, cfg.depth, mae_kernels_name());
    printf("patches: %d, kept: %d\n", L, keep);
    if (has_decoder)
        printf("loss: %.6f\n", loss);
    printf("mask (1 = removed), one row per patch row:\n");
    int gw = W / cfg.patch_size;
    for (int l = 0; l < L; l++)
        printf("%d%s", (int)mask[l], (l + 1) % gw ? " " : "\n");

    free(img); free(pred); free(mask);
    mae_ctx_free(c);
    mae_model_free(m);
    return 0;
}
