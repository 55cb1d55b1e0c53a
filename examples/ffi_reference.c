/* The computation every FFI example (examples/python, examples/rust, examples/go) repeats, done
 * through the C API, printed in the format they print, so that tests/check_ffi.sh can compare:
 *
 *   tiny model, seed 42 (saved to PATH and loaded back when PATH is given and checkpoints are
 *   available); a context for 2 images; images and noise from exact formulas;
 *   one forward pass with the fixed noise, one with noise drawn from seed 2.
 *
 *   build/examples/ffi_reference [PATH]
 *
 * Output lines: "loss", "pred_sum" (sum of pred in double), "pred_head" (first 4 values),
 * "mask" (the fixed-noise mask as 0/1 digits), "seed_loss", "seed_mask", then mae_embed's:
 * "embed_cls_head", "embed_mean_head" (first 4 values of image 1's), "embed_tokens_sumsq" (sum
 * of the squares of every token of the batch, in double). */
#include <stdio.h>
#include <stdlib.h>
#include "mae.h"

enum { B = 2 };

static int fail(const char *what, mae_status s)
{
    fprintf(stderr, "ffi_reference: %s: %s: %s\n", what, mae_status_str(s), mae_last_error());
    return 1;
}

static void print_mask(const char *label, const float *mask, int n)
{
    printf("%s ", label);
    for (int i = 0; i < n; i++)
        putchar(mask[i] != 0.0f ? '1' : '0');
    putchar('\n');
}

int main(int argc, char **argv)
{
    mae_config cfg;
    mae_model *m = NULL;
    mae_ctx *c = NULL;
    mae_status s;
    if ((s = mae_config_init(&cfg, sizeof cfg, "tiny")) != MAE_OK || (s = mae_model_create(&cfg, 42, &m)) != MAE_OK)
        return fail("create", s);
    if (argc > 1) {
        /* round trip through a checkpoint: the FFI examples load this file */
        s = mae_model_save(m, argv[1]);
        if (s == MAE_OK) {
            mae_model_free(m);
            m = NULL;
            if ((s = mae_model_load(argv[1], &m)) != MAE_OK)
                return fail("load", s);
        } else if (s != MAE_ERR_UNSUPPORTED) {
            return fail("save", s);
        }
    }
    if ((s = mae_ctx_create(m, B, &c)) != MAE_OK)
        return fail("context", s);
    int L, keep, P;
    mae_ctx_get_dims(c, &L, &keep, &P);
    size_t npix = (size_t)B * cfg.in_chans * cfg.img_size * cfg.img_size;
    float *imgs = malloc(npix * sizeof *imgs), *noise = malloc(sizeof(float) * B * L);
    float *pred = malloc(sizeof(float) * B * L * P), *mask = malloc(sizeof(float) * B * L);
    if (!imgs || !noise || !pred || !mask) {
        fprintf(stderr, "ffi_reference: out of memory\n");
        return 1;
    }
    /* exact in float and double alike: the bindings build the same arrays */
    for (size_t i = 0; i < npix; i++)
        imgs[i] = (float)((long)((i * 37) % 101) - 50) / 64.0f;
    for (int i = 0; i < B * L; i++)
        noise[i] = (float)((i * 53) % 97) / 128.0f;

    float loss;
    if ((s = mae_forward(c, imgs, B, noise, &loss, pred, mask, NULL)) != MAE_OK)
        return fail("forward", s);
    double sum = 0;
    for (int i = 0; i < B * L * P; i++)
        sum += pred[i];
    printf("loss %.9g\n", (double)loss);
    printf("pred_sum %.9g\n", sum);
    printf("pred_head %.9g %.9g %.9g %.9g\n", (double)pred[0], (double)pred[1], (double)pred[2], (double)pred[3]);
    print_mask("mask", mask, B * L);

    mae_ctx_set_seed(c, 2);
    if ((s = mae_forward(c, imgs, B, NULL, &loss, NULL, mask, NULL)) != MAE_OK)
        return fail("forward (seeded)", s);
    printf("seed_loss %.9g\n", (double)loss);
    print_mask("seed_mask", mask, B * L);


    int D, T;
    mae_model_embed_dims(m, &D, &T);
    float *emb = malloc(sizeof(float) * B * T * D);
    if (!emb)
        return fail("embed buffer", MAE_ERR_NOMEM);
    const char *pools[2] = { "embed_cls_head", "embed_mean_head" };
    for (int pool = MAE_POOL_CLS; pool <= MAE_POOL_MEAN; pool++) {
        if ((s = mae_embed(c, imgs, B, (mae_pool)pool, emb)) != MAE_OK)
            return fail("embed", s);
        const float *e = emb + D;   /* image 1 */
        printf("%s %.9g %.9g %.9g %.9g\n", pools[pool], (double)e[0], (double)e[1], (double)e[2], (double)e[3]);
    }
    if ((s = mae_embed(c, imgs, B, MAE_POOL_TOKENS, emb)) != MAE_OK)
        return fail("embed tokens", s);
    sum = 0;
    for (int i = 0; i < B * T * D; i++)
        sum += (double)emb[i] * emb[i];
    printf("embed_tokens_sumsq %.9g\n", sum);
    free(emb);

    free(imgs); free(noise); free(pred); free(mask);
    mae_ctx_free(c);
    mae_model_free(m);
    return 0;
}
