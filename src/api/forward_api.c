/* Public forward calls (mae.h sections 4 and 5): the five parts one at a time, and mae_forward,
 * which runs them in order through mae_pipeline_run (src/model/forward.c, shared with the trainer). */
#include <string.h>
#include "../model/model.h"

static mae_status check_ctx(const char *fn, const void *part, const mae_model *pm, const mae_ctx *c, int batch)
{
    if (!part || !c)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %s is NULL", fn, !part ? "part" : "context");
    if (pm && c->m != pm)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the context was created for another model", fn);
    if (batch <= 0 || batch > c->max_batch)
        return mae_fail(MAE_ERR_SHAPE, "%s: batch %d is outside [1, %d] (the context's max_batch)", fn, batch, c->max_batch);
    return MAE_OK;
}

MAE_API mae_status mae_patch_embed_forward(const mae_patch_embed *pe, mae_ctx *c, const float *imgs,
                                           int batch, float *tokens)
{
    mae_status s = check_ctx("mae_patch_embed_forward", pe, pe ? pe->m : NULL, c, batch);
    if (s != MAE_OK)
        return s;
    if (!imgs || !tokens)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_patch_embed_forward: %s is NULL", !imgs ? "imgs" : "tokens");
    mae_patch_embed_run(c->m, &c->ex, imgs, batch, c->patches, c->tokens);
    memcpy(tokens, c->tokens, (size_t)batch * c->m->cfg.L * c->m->cfg.D * sizeof *tokens);
    return MAE_OK;
}

MAE_API mae_status mae_masker_forward(const mae_masker *mk, mae_ctx *c, int batch, const float *noise,
                                      int32_t *ids_shuffle, int32_t *ids_restore, float *mask, int *keep)
{
    mae_status s = check_ctx("mae_masker_forward", mk, mk ? mk->m : NULL, c, batch);
    if (s != MAE_OK)
        return s;
    int L = c->m->cfg.L;
    noise = mae_noise_or_draw(&c->rng, noise, c->noise, (size_t)batch * L);
    mae_masker_run(L, mae_keep_count(L, c->ratio), noise, batch, c->ids_shuffle, c->ids_restore, c->mask);
    size_t n = (size_t)batch * L;
    if (ids_shuffle)
        memcpy(ids_shuffle, c->ids_shuffle, n * sizeof *ids_shuffle);
    if (ids_restore)
        memcpy(ids_restore, c->ids_restore, n * sizeof *ids_restore);
    if (mask)
        memcpy(mask, c->mask, n * sizeof *mask);
    if (keep)
        *keep = mae_keep_count(L, c->ratio);
    return MAE_OK;
}

static mae_status check_ids(const char *fn, const int32_t *ids, int batch, int L, int count)
{
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < count; i++) {
            int32_t v = ids[(size_t)b * L + i];
            if (v < 0 || v >= L)
                return mae_fail(MAE_ERR_INVALID_ARG, "%s: index %d at [%d,%d] is outside [0, %d)", fn, (int)v, b, i, L);
        }
    return MAE_OK;
}

MAE_API mae_status mae_encoder_forward(const mae_encoder *e, mae_ctx *c, const float *tokens, int batch,
                                       const int32_t *ids_shuffle, int keep, float *latent)
{
    mae_status s = check_ctx("mae_encoder_forward", e, e ? e->m : NULL, c, batch);
    if (s != MAE_OK)
        return s;
    int L = c->m->cfg.L;
    if (!tokens || !latent)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_encoder_forward: %s is NULL", !tokens ? "tokens" : "latent");
    if (keep < 0 || keep > L || (!ids_shuffle && keep != L))
        return mae_fail(MAE_ERR_SHAPE, "mae_encoder_forward: keep %d is outside [0, %d] (or not %d without ids_shuffle)", keep, L, L);
    if (ids_shuffle && (s = check_ids("mae_encoder_forward", ids_shuffle, batch, L, keep)) != MAE_OK)
        return s;
    return mae_encoder_run(c->m, &c->ex, &c->acts, tokens, ids_shuffle, keep, batch, latent,
                           mae_hooks_active(&c->hooks));
}

MAE_API mae_status mae_decoder_forward(const mae_decoder *d, mae_ctx *c, const float *latent, int batch,
                                       const int32_t *ids_restore, int keep, float *pred)
{
    mae_status s = check_ctx("mae_decoder_forward", d, d ? d->m : NULL, c, batch);
    if (s != MAE_OK)
        return s;
    if (!c->m->cfg.has_decoder)
        return mae_fail(MAE_ERR_UNSUPPORTED, "mae_decoder_forward: the model has no decoder");
    int L = c->m->cfg.L;
    if (!latent || !pred)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_decoder_forward: %s is NULL", !latent ? "latent" : "pred");
    if (keep < 0 || keep > L || (!ids_restore && keep != L))
        return mae_fail(MAE_ERR_SHAPE, "mae_decoder_forward: keep %d is outside [0, %d] (or not %d without ids_restore)", keep, L, L);
    if (ids_restore && (s = check_ids("mae_decoder_forward", ids_restore, batch, L, L)) != MAE_OK)
        return s;
    return mae_decoder_run(c->m, &c->ex, &c->acts, latent, ids_restore, keep, batch, c->demb, c->dnorm,
                           pred, mae_hooks_active(&c->hooks));
}

MAE_API mae_status mae_loss_forward(const mae_loss *l, mae_ctx *c, const float *imgs, int batch,
                                    const float *pred, const float *mask, float *loss)
{
    mae_status s = check_ctx("mae_loss_forward", l, l ? l->m : NULL, c, batch);
    if (s != MAE_OK)
        return s;
    if (!imgs || !pred || !mask || !loss)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_loss_forward: imgs, pred, mask and loss must not be NULL");
    *loss = mae_loss_run(c->m, imgs, pred, mask, batch, c->patches);
    return MAE_OK;
}

MAE_API mae_status mae_forward(mae_ctx *c, const float *imgs, int batch, const float *noise,
                               float *loss, float *pred, float *mask, float *latent)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_forward: context is NULL");
    const mae_model *m = c->m;
    mae_status s = check_ctx("mae_forward", m, m, c, batch);
    if (s != MAE_OK)
        return s;
    if (!imgs)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_forward: imgs is NULL");
    if ((loss || pred) && !m->cfg.has_decoder)
        return mae_fail(MAE_ERR_UNSUPPORTED, "mae_forward: this checkpoint holds only the encoder; loss and pred need a decoder (ask for latent only)");
    int L = m->cfg.L, keep = mae_keep_count(L, c->ratio);
    /* the loss's target overwrites the patches, which nothing reads after the embedding */
    mae_pass p = { &c->acts, &c->acts, c->noise, c->ids_shuffle, c->ids_restore, c->mask, c->patches, c->tokens,
                   c->latent, c->demb, c->dnorm, pred ? pred : c->pred, c->patches };
    float l = 0.0f;
    s = mae_pipeline_run(m, &c->ex, &c->rng, &p, imgs, batch, keep, noise, loss || pred, loss ? &l : NULL,
                         mae_hooks_active(&c->hooks));
    if (s != MAE_OK)
        return mae_fail_wrap(s, "mae_forward");
    if (latent)
        memcpy(latent, c->latent, (size_t)batch * (1 + keep) * m->cfg.D * sizeof *latent);
    if (mask)
        memcpy(mask, c->mask, (size_t)batch * L * sizeof *mask);
    if (loss)
        *loss = l;
    return MAE_OK;
}
