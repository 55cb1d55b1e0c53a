/* Public context calls (mae.h section 3): argument checks, then the context (src/model/ctx.c); an
 * inner error gets the public function's name once (mae_fail_wrap). */
#include "../model/model.h"

MAE_API mae_status mae_ctx_create(const mae_model *m, int max_batch, mae_ctx **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_create: %s is NULL", !m ? "model" : "out");
    if (max_batch <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_create: max_batch %d must be positive", max_batch);
    mae_status s = mae_ctx_new(m, max_batch, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_ctx_create");
}

MAE_API void mae_ctx_free(mae_ctx *c)
{
    mae_ctx_destroy(c);
}

MAE_API mae_status mae_ctx_set_mask_ratio(mae_ctx *c, float ratio)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_set_mask_ratio: context is NULL");
    if (!(ratio >= 0.0f && ratio < 1.0f))
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_set_mask_ratio: ratio %g is outside [0, 1)", (double)ratio);
    c->ratio = ratio;
    return MAE_OK;
}

MAE_API mae_status mae_ctx_set_seed(mae_ctx *c, uint64_t seed)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_set_seed: context is NULL");
    mae_rng_seed(&c->rng, seed);
    return MAE_OK;
}

MAE_API mae_status mae_ctx_set_threads(mae_ctx *c, int n)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_set_threads: context is NULL");
    if (n < 1 || n > 256)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_set_threads: %d threads is outside [1, 256]", n);
    if (n == c->ex.nthreads)
        return MAE_OK;
    mae_status s = mae_ctx_set_scratch(c, n);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_ctx_set_threads");
}

MAE_API mae_status mae_ctx_set_thread_pool(mae_ctx *c, const mae_thread_pool *pool)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_set_thread_pool: context is NULL");
    if (!pool) {
        c->ex.host = NULL;
        return MAE_OK;
    }
    mae_thread_pool p;
    mae_status s = mae_thread_pool_read("mae_ctx_set_thread_pool", pool, &p);
    if (s == MAE_OK && p.nthreads != c->ex.nthreads && (s = mae_ctx_set_scratch(c, p.nthreads)) != MAE_OK)
        return mae_fail_wrap(s, "mae_ctx_set_thread_pool");
    if (s != MAE_OK)
        return s;
    c->host = p;
    c->ex.host = &c->host;
    return MAE_OK;
}

MAE_API mae_status mae_ctx_get_threads(const mae_ctx *c, int *nthreads)
{
    if (!c || !nthreads)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_get_threads: %s is NULL", !c ? "context" : "nthreads");
    *nthreads = mae_threads_effective(&c->ex);
    return MAE_OK;
}

MAE_API mae_status mae_ctx_get_dims(const mae_ctx *c, int *num_patches, int *keep, int *patch_dim)
{
    if (!c)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_ctx_get_dims: context is NULL");
    if (num_patches)
        *num_patches = c->m->cfg.L;
    if (keep)
        *keep = mae_keep_count(c->m->cfg.L, c->ratio);
    if (patch_dim)
        *patch_dim = c->m->cfg.P;
    return MAE_OK;
}
