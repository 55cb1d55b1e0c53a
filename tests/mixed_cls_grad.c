/* tests/check_mixed.sh's helper for the finetuner: the gradients of one forward_backward of a
 * classifier file, as a float32 classifier or as a bf16 one (mixed precision).
 *
 *   mixed_cls_grad CLASSIFIER f32|bf16 B IMGS LABELS DROP_PATH SEED OUT
 *
 * IMGS: raw little-endian float32 [B,C,H,W]; LABELS: int32 [B]. The finetuner runs with label
 * smoothing 0.1, drop path DROP_PATH and drop path seed SEED. Writes OUT.txt (the loss, then one
 * line "name count" per trained tensor) and OUT.bin (those gradients, float32, in that order).
 * A bf16 classifier with the file's weights has no public constructor (a classifier computes in
 * bf16 when made from a bf16 model, with a new head), so this helper builds one from the
 * library's parts: the file's encoder copied and made bf16, the file's head copied in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mae.h"
#include "model/classifier.h"

static int fail(const char *what, mae_status s)
{
    fprintf(stderr, "mixed_cls_grad: %s: %s (%d)\n", what, mae_last_error(), (int)s);
    return 1;
}

static void *read_all(const char *path, size_t bytes)
{
    FILE *f = fopen(path, "rb");
    void *x = malloc(bytes);
    int ok = f && x && fread(x, 1, bytes, f) == bytes;
    if (f)
        fclose(f);
    if (!ok) {
        fprintf(stderr, "mixed_cls_grad: cannot read %zu bytes from %s\n", bytes, path);
        free(x);
        return NULL;
    }
    return x;
}

/* c's encoder made bf16, with c's head: the bf16 classifier of the same weights. */
static mae_status to_bf16(const mae_classifier *c, mae_classifier **out)
{
    mae_model *enc;
    mae_classifier *b;
    mae_status s = mae_classifier_encoder_copy(c->m, &enc);
    if (s == MAE_OK && (s = mae_model_to_bf16(enc)) != MAE_OK)
        mae_model_free(enc);
    if (s == MAE_OK && (s = mae_classifier_alloc(enc, c->classes, c->global_pool, &b)) == MAE_OK) {
        size_t D = (size_t)c->m->cfg.D;
        memcpy(b->head, c->head, (2 * D + (size_t)c->classes * (D + 1)) * sizeof *b->head);
        if ((s = mae_classifier_pack_head(b)) == MAE_OK)
            *out = b;
        else
            mae_classifier_free(b);
    }
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: mixed_cls_grad CLASSIFIER f32|bf16 B IMGS LABELS DROP_PATH SEED OUT\n");
        return 2;
    }
    int bf16 = strcmp(argv[2], "bf16") == 0, B = atoi(argv[3]);
    mae_classifier *c = NULL, *b = NULL;
    mae_finetuner *f = NULL;
    mae_status s = mae_classifier_load(argv[1], 0, &c);
    if (s != MAE_OK)
        return fail(argv[1], s);
    if (bf16) {
        if ((s = to_bf16(c, &b)) != MAE_OK)
            return fail("bf16 classifier", s);
        mae_classifier_free(c);
        c = b;
    }
    const mae_cfg *g = &c->m->cfg;
    float *imgs = read_all(argv[4], (size_t)B * g->C * g->gh * g->p * g->gw * g->p * sizeof(float));
    int32_t *labels = read_all(argv[5], (size_t)B * sizeof(int32_t));
    if (!imgs || !labels)
        return 1;
    mae_finetune_config fc;
    mae_finetune_config_init(&fc, sizeof fc);
    fc.drop_path = (float)atof(argv[6]);
    if ((s = mae_finetuner_create(c, B, &f)) != MAE_OK || (s = mae_finetuner_set_config(f, &fc)) != MAE_OK ||
        (s = mae_finetuner_set_seed(f, strtoull(argv[7], NULL, 10))) != MAE_OK)
        return fail("finetuner", s);
    float loss;
    if ((s = mae_finetuner_forward_backward(f, imgs, B, labels, NULL, &loss, NULL)) != MAE_OK)
        return fail("forward_backward", s);
    char path[4096];
    snprintf(path, sizeof path, "%s.txt", argv[8]);
    FILE *txt = fopen(path, "w");
    snprintf(path, sizeof path, "%s.bin", argv[8]);
    FILE *bin = fopen(path, "wb");
    if (!txt || !bin) {
        fprintf(stderr, "mixed_cls_grad: cannot write %s.*\n", argv[8]);
        return 1;
    }
    fprintf(txt, "loss %.9g\n", (double)loss);
    static const char *const head[4] = { "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias" };
    for (int i = 0; i < c->m->n_tensors + 4; i++) {
        const char *name = i < c->m->n_tensors ? c->m->tensors[i].name : head[i - c->m->n_tensors];
        const float *gr;
        size_t count;
        if (mae_finetuner_grad(f, name, &gr, &count) != MAE_OK)
            continue;   /* not trained (norm.* with global pooling) */
        fprintf(txt, "%s %zu\n", name, count);
        fwrite(gr, sizeof *gr, count, bin);
    }
    int bad = fclose(txt) != 0;
    bad |= fclose(bin) != 0;
    mae_finetuner_free(f);
    mae_classifier_free(c);
    free(imgs);
    free(labels);
    return bad;
}
