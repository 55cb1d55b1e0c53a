/* libFuzzer target for mae_trainer_load: a trainer checkpoint (safetensors with the model's
 * tensors, both AdamW moments, the RNG state, the step and the training config in __metadata__)
 * restored into a trainer of a small fixed model. mae_trainer_load reads a path, so each input is
 * written to a file of this process first. A checkpoint that loads must leave a trainer that
 * still steps. Seeds in tests/fuzz_corpus/trainer/: checkpoints of this model (one with libmae's
 * checksum, the others with it blanked out so that mutations reach the checks behind it), made
 * by tests/gen_fuzz_seeds.c. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "mae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The model of the seeds: 16 x 16 gray images, patch 4, width 8, one block each side. */
void fuzz_trainer_config(mae_config *c);
void fuzz_trainer_config(mae_config *c)
{
    mae_config_init(c, sizeof *c, "tiny");
    c->img_size = 16;
    c->patch_size = 4;
    c->in_chans = 1;
    c->embed_dim = 8;
    c->depth = 1;
    c->num_heads = 1;
    c->decoder_embed_dim = 8;
    c->decoder_depth = 1;
    c->decoder_num_heads = 1;
    c->mlp_ratio = 2.0f;
}

#ifndef FUZZ_TRAINER_NO_MAIN
static mae_model *model;
static mae_trainer *trainer;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!trainer) {
        mae_config c;
        fuzz_trainer_config(&c);
        if (mae_model_create(&c, 1, &model) != MAE_OK || mae_trainer_create(model, 1, &trainer) != MAE_OK)
            abort();
        mae_trainer_set_threads(trainer, 1);
        snprintf(path, sizeof path, "/tmp/libmae_fuzz_trainer.%ld", (long)getpid());
    }
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0)
        abort();
    if (mae_trainer_load(trainer, path) == MAE_OK) {
        static float imgs[16 * 16];
        for (int i = 0; i < 16 * 16; i++)
            imgs[i] = (float)(i % 7) / 3.0f - 1.0f;
        float loss;
        int64_t step = -1;
        if (mae_trainer_get_step(trainer, &step) != MAE_OK || step < 0)
            abort();   /* a loaded checkpoint has a step count */
        /* a weird but accepted config may refuse to step (e.g. non-finite values); that is a
         * status, never a crash */
        if (mae_trainer_forward_backward(trainer, imgs, 1, NULL, &loss) == MAE_OK)
            mae_trainer_step(trainer);
    }
    unlink(path);
    return 0;
}
#endif
