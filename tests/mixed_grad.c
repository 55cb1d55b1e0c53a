/* tests/check_mixed.sh's helper, through the public API only: the gradients of one
 * forward_backward of a model file at a precision.
 *
 *   mixed_grad MODEL f32|bf16 B IMGS NOISE OUT
 *
 * IMGS and NOISE hold raw little-endian float32 ([B,C,H,W] and [B,L]). Writes OUT.txt (the loss,
 * then one line "name count" per trained tensor) and OUT.bin (those gradients, float32, in that
 * order). Exit 0, or 1 with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mae.h"

static int fail(const char *what, mae_status s)
{
    fprintf(stderr, "mixed_grad: %s: %s (%d)\n", what, mae_last_error(), (int)s);
    return 1;
}

static float *read_floats(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    float *x = malloc(n * sizeof *x);
    int ok = f && x && fread(x, sizeof *x, n, f) == n;
    if (f)
        fclose(f);
    if (!ok) {
        fprintf(stderr, "mixed_grad: cannot read %zu floats from %s\n", n, path);
        free(x);
        return NULL;
    }
    return x;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: mixed_grad MODEL f32|bf16 B IMGS NOISE OUT\n");
        return 2;
    }
    int bf16 = strcmp(argv[2], "bf16") == 0, B = atoi(argv[3]);
    mae_model *m = NULL;
    mae_trainer *t = NULL;
    mae_status s = mae_model_load(argv[1], &m);
    if (s != MAE_OK)
        return fail(argv[1], s);
    if (bf16 && (s = mae_model_set_precision(m, MAE_PRECISION_BF16)) != MAE_OK)
        return fail("set_precision", s);
    mae_config c;
    c.struct_size = sizeof c;
    mae_model_get_config(m, &c);
    int L = (c.img_size / c.patch_size) * (c.img_size / c.patch_size);
    float *imgs = read_floats(argv[4], (size_t)B * c.in_chans * c.img_size * c.img_size);
    float *noise = read_floats(argv[5], (size_t)B * L);
    if (!imgs || !noise)
        return 1;
    if ((s = mae_trainer_create(m, B, &t)) != MAE_OK)
        return fail("trainer_create", s);
    float loss;
    if ((s = mae_trainer_forward_backward(t, imgs, B, noise, &loss)) != MAE_OK)
        return fail("forward_backward", s);
    char path[4096];
    snprintf(path, sizeof path, "%s.txt", argv[6]);
    FILE *txt = fopen(path, "w");
    snprintf(path, sizeof path, "%s.bin", argv[6]);
    FILE *bin = fopen(path, "wb");
    if (!txt || !bin) {
        fprintf(stderr, "mixed_grad: cannot write %s.*\n", argv[6]);
        return 1;
    }
    fprintf(txt, "loss %.9g\n", (double)loss);
    int n = 0;
    mae_model_tensor_count(m, &n);
    for (int i = 0; i < n; i++) {
        const char *name;
        const float *g;
        size_t count;
        mae_model_tensor_name(m, i, &name);
        if (mae_trainer_grad(t, name, &g, &count) != MAE_OK)
            continue;   /* frozen */
        fprintf(txt, "%s %zu\n", name, count);
        fwrite(g, sizeof *g, count, bin);
    }
    int bad = fclose(txt) != 0;
    bad |= fclose(bin) != 0;
    mae_trainer_free(t);
    mae_model_free(m);
    free(imgs);
    free(noise);
    return bad;
}
