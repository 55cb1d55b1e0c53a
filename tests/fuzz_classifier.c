/* libFuzzer target for mae_classifier_load (run by tests/check_fuzz.sh): a classifier file
 * (official names with fc_norm.* or norm.*, or Hugging Face ViTForImageClassification names; the
 * config, num_classes, global_pool and id2label.<i> in __metadata__). mae_classifier_load reads a
 * path, so each input is written to a file of this process first. A classifier that loads must
 * answer every query, name every class, classify an image when small enough, and save to a file
 * that loads again with the same classes, pooling and labels. Seeds in
 * tests/fuzz_corpus/classifier/: tiny classifiers saved by the library (tests/gen_fuzz_seeds.c
 * --classifier; one with libmae's checksum, one with it blanked out so that mutations reach the
 * checks behind it) and tests/data's PyTorch-written ones (official names with labels, Hugging
 * Face names). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "mae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64], path2[64];

static void write_file(const char *p, const uint8_t *data, size_t size)
{
    FILE *fp = fopen(p, "wb");
    if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0)
        abort();
}

/* One forward pass on a fixed image, when the model is small enough to keep each input fast. */
static void classify(const mae_classifier *c, int classes)
{
    const mae_model *m = NULL;
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    size_t params = 0;
    if (mae_classifier_model(c, &m) != MAE_OK || mae_model_get_config(m, &cfg) != MAE_OK ||
        mae_model_num_params(m, &params) != MAE_OK)
        abort();
    int h = cfg.img_height ? cfg.img_height : cfg.img_size, w = cfg.img_width ? cfg.img_width : cfg.img_size;
    size_t pixels = (size_t)cfg.in_chans * (size_t)h * (size_t)w;
    static float imgs[4096], logits[4096];
    if (params > (1 << 17) || pixels > 4096 || classes > 4096 || (h / cfg.patch_size) * (w / cfg.patch_size) > 64)
        return;
    for (size_t i = 0; i < pixels; i++)
        imgs[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    mae_ctx *ctx = NULL;
    if (mae_ctx_create(m, 1, &ctx) != MAE_OK)
        return;   /* e.g. the context's memory limit: a status, not a crash */
    mae_ctx_set_threads(ctx, 1);
    mae_classifier_forward(c, ctx, imgs, 1, logits);
    mae_ctx_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/libmae_fuzz_classifier.%ld", (long)getpid());
        snprintf(path2, sizeof path2, "/tmp/libmae_fuzz_classifier2.%ld", (long)getpid());
    }
    write_file(path, data, size);
    mae_classifier *c = NULL;
    if (mae_classifier_load(path, 0, &c) == MAE_OK) {
        int classes = 0, gp = -1, has_labels = -1;
        if (mae_classifier_num_classes(c, &classes) != MAE_OK || classes < 1 ||
            mae_classifier_global_pool(c, &gp) != MAE_OK || (gp != 0 && gp != 1) ||
            mae_classifier_has_labels(c, &has_labels) != MAE_OK)
            abort();
        for (int k = 0; k < classes && k < 4096; k++) {
            const char *label = NULL;
            if (mae_classifier_label(c, k, &label) != MAE_OK || !label || !label[0])
                abort();   /* every class has a name, its index at least */
        }
        classify(c, classes);
        /* what loads saves, and the saved file loads back the same */
        if (classes <= 4096 && mae_classifier_save(c, path2) == MAE_OK) {
            mae_classifier *d = NULL;
            int classes2 = 0, gp2 = -1;
            if (mae_classifier_load(path2, classes, &d) != MAE_OK)
                abort();
            if (mae_classifier_num_classes(d, &classes2) != MAE_OK || classes2 != classes ||
                mae_classifier_global_pool(d, &gp2) != MAE_OK || gp2 != gp)
                abort();
            for (int k = 0; k < classes; k++) {
                const char *a = NULL, *b = NULL;
                if (mae_classifier_label(c, k, &a) != MAE_OK || mae_classifier_label(d, k, &b) != MAE_OK ||
                    strcmp(a, b) != 0)
                    abort();
            }
            mae_classifier_free(d);
            unlink(path2);
        }
        mae_classifier_free(c);
    }
    unlink(path);
    return 0;
}
