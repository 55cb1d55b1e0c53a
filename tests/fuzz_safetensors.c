/* libFuzzer target for the safetensors reader and the model loader (run by tests/check_fuzz.sh;
 * seeds in tests/fuzz_corpus/safetensors/). Every input is parsed; a parsed file has each tensor
 * converted and is then loaded as a model, as float32 and straight into bf16 (which must accept
 * and refuse alike), and a small model runs a forward pass, so that odd but accepted configs
 * reach the whole pipeline. */
#include <stdint.h>
#include <string.h>
#include "mae.h"
#include "../src/io/safetensors.h"
#include "../src/model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static float buf[1 << 14];

static void run_model(const mae_model *m)
{
    const mae_cfg *c = &m->cfg;
    size_t pixels = (size_t)c->C * c->ih * c->iw;
    if (m->lay.total > (1 << 16) || c->L > 64 || pixels > 4096)
        return;   /* keep each input fast */
    static float imgs[4096], noise[64], latent[65 * 1024], pred[1 << 15];
    if ((size_t)(1 + c->L) * c->D > sizeof latent / sizeof latent[0] || (size_t)c->L * c->P > sizeof pred / sizeof pred[0])
        return;
    for (size_t i = 0; i < pixels; i++)
        imgs[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    for (int i = 0; i < c->L; i++)
        noise[i] = (float)((i * 7) % c->L) / (float)c->L;
    mae_ctx *ctx = NULL;
    if (mae_ctx_create(m, 1, &ctx) != MAE_OK)
        return;
    float loss;
    if (c->has_decoder)
        mae_forward(ctx, imgs, 1, noise, &loss, pred, NULL, latent);
    else
        mae_forward(ctx, imgs, 1, noise, NULL, NULL, NULL, latent);
    mae_ctx_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mae_st_file f;
    if (mae_st_parse(data, size, &f) != MAE_OK)
        return 0;
    for (int i = 0; i < f.n; i++)
        if (f.t[i].count <= sizeof buf / sizeof buf[0])
            mae_st_read_f32(&f, &f.t[i], buf, f.t[i].count);
    for (int i = 0; i < f.n_meta; i++)
        if (mae_st_meta_get(&f, f.meta[i].key) == NULL)
            __builtin_trap();   /* a stored key must be found again */
    mae_st_close(&f);

    mae_model *m = NULL;
    mae_status s32 = mae_model_load_memory(data, size, &m);
    if (s32 == MAE_OK) {
        run_model(m);
        mae_model_free(m);
    }
    /* straight into bf16 (mae_model_load_with's path): the same file is accepted or refused
     * alike, short of memory */
    mae_load_options o;
    mae_load_options_init(&o, sizeof o);
    o.precision = MAE_PRECISION_BF16;
    m = NULL;
    mae_status s16 = mae_model_load_memory_with(data, size, &o, &m);
    if (s16 != s32 && s16 != MAE_ERR_NOMEM && s32 != MAE_ERR_NOMEM)
        __builtin_trap();
    if (s16 == MAE_OK) {
        run_model(m);
        mae_model_free(m);
    }
    return 0;
}
