/* Writes the seed checkpoints of tests/fuzz_trainer.c into tests/fuzz_corpus/trainer/ (run once
 * by hand after a change of the checkpoint format; the results are committed):
 *
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude tests/gen_fuzz_seeds.c lib/libmae.a -lm -fopenmp \
 *      -o /tmp/gen_fuzz_seeds && /tmp/gen_fuzz_seeds tests/fuzz_corpus/trainer
 *
 * step0: a fresh trainer, with libmae's checksum. step1, frozen: after one step (the second with
 * the position tables trained and then frozen), the checksum pair blanked out with spaces (the
 * header keeps its length), so that mutated copies reach the checks behind the checksum.
 *
 * With --classifier DIR: the seeds of tests/fuzz_classifier.c from the same model's encoder:
 * gp_labels (global pooling, 3 classes with labels, with the checksum) and cls (cls pooling, 4
 * classes without labels, the checksum blanked out). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define FUZZ_TRAINER_NO_MAIN
#include "fuzz_trainer.c"

static void blank_checksum(const char *path)
{
    FILE *fp = fopen(path, "r+b");
    char head[512];
    size_t n = fp ? fread(head, 1, sizeof head, fp) : 0;
    char *at = n > 8 ? memchr(head + 8, '{', n - 8) : NULL;
    const char *key = "\"libmae.crc32c\":\"";
    char *k = at ? strstr(at + 1, key) : NULL;
    if (!k || fseek(fp, (long)(k - head), SEEK_SET) != 0) {
        fprintf(stderr, "%s: no checksum pair\n", path);
        exit(1);
    }
    size_t len = strlen(key) + 8 + 2;   /* the digits, the closing quote and the comma */
    for (size_t i = 0; i < len; i++)
        fputc(' ', fp);
    fclose(fp);
}

static int classifier_seeds(const char *dir)
{
    static const char *const labels[] = { "cat", "dog \"x\"", "\xc3\xbcn\xc3\xaf" };
    mae_config c;
    fuzz_trainer_config(&c);
    mae_model *m = NULL;
    mae_classifier *gp = NULL, *cls = NULL;
    char path[512];
    if (mae_model_create(&c, 5, &m) != MAE_OK || mae_classifier_create(m, 3, 1, 7, &gp) != MAE_OK ||
        mae_classifier_set_labels(gp, labels) != MAE_OK || mae_classifier_create(m, 4, 0, 8, &cls) != MAE_OK)
        return 1;
    snprintf(path, sizeof path, "%s/gp_labels.safetensors", dir);
    if (mae_classifier_save(gp, path) != MAE_OK)
        return 1;
    snprintf(path, sizeof path, "%s/cls.safetensors", dir);
    if (mae_classifier_save(cls, path) != MAE_OK)
        return 1;
    blank_checksum(path);
    mae_classifier_free(gp);
    mae_classifier_free(cls);
    mae_model_free(m);
    printf("gen_fuzz_seeds: 2 classifiers in %s\n", dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--classifier") == 0)
        return classifier_seeds(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: gen_fuzz_seeds [--classifier] DIR\n");
        return 2;
    }
    mae_config c;
    fuzz_trainer_config(&c);
    mae_model *m;
    mae_trainer *t;
    char path[512];
    float imgs[2 * 16 * 16], loss;
    for (int i = 0; i < 2 * 16 * 16; i++)
        imgs[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    if (mae_model_create(&c, 3, &m) != MAE_OK || mae_trainer_create(m, 2, &t) != MAE_OK)
        return 1;
    snprintf(path, sizeof path, "%s/step0.safetensors", argv[1]);
    if (mae_trainer_save(t, path) != MAE_OK)
        return 1;
    mae_trainer_forward_backward(t, imgs, 2, NULL, &loss);
    mae_trainer_step(t);
    snprintf(path, sizeof path, "%s/step1.safetensors", argv[1]);
    if (mae_trainer_save(t, path) != MAE_OK)
        return 1;
    blank_checksum(path);
    mae_train_config tc;
    tc.struct_size = sizeof tc;
    mae_trainer_get_config(t, &tc);
    tc.train_pos = 0;
    tc.iters_per_epoch = 10;
    tc.epochs = 3;
    tc.warmup_epochs = 1;
    mae_trainer_set_config(t, &tc);
    mae_trainer_forward_backward(t, imgs, 2, NULL, &loss);
    mae_trainer_step(t);
    snprintf(path, sizeof path, "%s/frozen.safetensors", argv[1]);
    if (mae_trainer_save(t, path) != MAE_OK)
        return 1;
    blank_checksum(path);
    mae_trainer_free(t);
    mae_model_free(m);
    printf("gen_fuzz_seeds: 3 checkpoints in %s\n", argv[1]);
    return 0;
}
