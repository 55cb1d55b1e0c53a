/* Embeddings: the encoder on whole images (no masking, tokens in image order), pooled as the
 * caller asks, plus the helpers a feature pipeline needs around it (sizes, batched pixels). */
#include <stdio.h>
#include <string.h>
#include "../model/model.h"

MAE_API mae_status mae_model_embed_dims(const mae_model *m, int *embed_dim, int *num_tokens)
{
    if (!m)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_embed_dims: model is NULL");
    if (embed_dim)
        *embed_dim = m->cfg.D;
    if (num_tokens)
        *num_tokens = 1 + m->cfg.L;
    return MAE_OK;
}

MAE_API mae_status mae_ctx_memory(const mae_model *m, int max_batch, int nthreads, size_t *bytes)
{
    if (!m || !bytes)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_memory: %s is NULL", !m ? "model" : "bytes");
    if (max_batch <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_memory: max_batch %d must be positive", max_batch);
    if (nthreads < 0 || nthreads > 256)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_memory: %d threads is outside [0, 256]", nthreads);
    if (nthreads == 0) {
        nthreads = mae_max_threads();   /* what mae_ctx_create starts with */
        if (nthreads < 1)
            nthreads = 1;
    }
    mae_status s = mae_ctx_plan_bytes(m, max_batch, nthreads, bytes);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_ctx_memory");
}

/* out[b] = mean over the L patch rows of tokens[b] [1+L,D], summed in double: the mean of
 * hundreds of rows in float would lose bits that a probe then sees as noise. Feature-major
 * order needs no buffer; its strided reads are negligible next to the encoder. */
static void mean_pool(const float *tokens, int B, int L, int D, float *out)
{
    for (int b = 0; b < B; b++) {
        const float *rows = tokens + ((size_t)b * (1 + L) + 1) * D;
        for (int d = 0; d < D; d++) {
            double sum = 0.0;
            for (int l = 0; l < L; l++)
                sum += rows[(size_t)l * D + d];
            out[(size_t)b * D + d] = (float)(sum / L);
        }
    }
}

MAE_API mae_status mae_embed(mae_ctx *c, const float *imgs, int batch, mae_pool pool, float *out)
{
    if (!c || !imgs || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_embed: %s is NULL", !c ? "context" : !imgs ? "imgs" : "out");
    if (batch <= 0 || batch > c->max_batch)
        return mae_fail(MAE_ERR_SHAPE, "mae_embed: batch %d is outside [1, %d] (the context's max_batch)", batch, c->max_batch);
    if (pool != MAE_POOL_CLS && pool != MAE_POOL_MEAN && pool != MAE_POOL_TOKENS)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_embed: pool %d is not a mae_pool (0 cls, 1 mean, 2 tokens)", (int)pool);
    const mae_model *m = c->m;
    int L = m->cfg.L, D = m->cfg.D;
    /* With ids_shuffle NULL the encoder keeps every token in image order: the context's own
     * buffers (patches, tokens, latent) hold the whole pass, so nothing is allocated. */
    float *tokens = pool == MAE_POOL_TOKENS ? out : c->latent;
    mae_patch_embed_run(m, &c->ex, imgs, batch, c->patches, c->tokens);
    mae_status s = mae_encoder_run(m, &c->ex, &c->acts, c->tokens, NULL, L, batch, tokens,
                                   mae_hooks_active(&c->hooks));
    if (s != MAE_OK)
        return s;
    if (pool == MAE_POOL_CLS)
        for (int b = 0; b < batch; b++)
            memcpy(out + (size_t)b * D, tokens + (size_t)b * (1 + L) * D, (size_t)D * sizeof *out);
    else if (pool == MAE_POOL_MEAN)
        mean_pool(tokens, batch, L, D, out);
    return MAE_OK;
}

MAE_API mae_status mae_images_to_input(const mae_model *m, int batch, const uint8_t *const *pixels,
                                       const int *widths, const int *heights, const int *channels,
                                       const ptrdiff_t *strides, mae_filter filter, int center_crop,
                                       const float *mean, const float *std, float *out)
{
    if (!m || !pixels || !widths || !heights || !channels || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_images_to_input: model, pixels, widths, heights, channels and out must not be NULL");
    if (batch <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_images_to_input: batch %d must be positive", batch);
    const mae_cfg *g = &m->cfg;
    int H = g->gh * g->p, W = g->gw * g->p;
    size_t per = (size_t)g->C * H * W;
    for (int b = 0; b < batch; b++) {
        mae_status s = mae_image_to_input(pixels[b], widths[b], heights[b], channels[b],
                                          strides ? strides[b] : 0, g->C, H, W, filter, center_crop,
                                          mean, std, out + (size_t)b * per);
        if (s != MAE_OK) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", mae_last_error());
            return mae_fail(s, "mae_images_to_input: image %d: %s", b, msg);
        }
    }
    return MAE_OK;
}
