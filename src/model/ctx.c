/* The context: all memory one caller's forward passes need, planned once for a maximum batch.
 * The public calls (src/api/ctx_api.c) check the arguments and add their name to the errors
 * stated here. */
#include <string.h>
#include "model.h"
#include "../util/arena.h"

static size_t max3(size_t a, size_t b, size_t c)
{
    size_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* Every buffer of a context, counted then carved (arena.h). */
static void plan(void *obj, mae_arena *p)
{
    mae_ctx *c = obj;
    const mae_cfg *g = &c->m->cfg;
    size_t B = (size_t)c->max_batch, L = (size_t)g->L, T = L + 1;
    size_t maxC = g->D > g->Dd ? (size_t)g->D : (size_t)g->Dd;
    size_t maxH = g->hidden > g->dhidden ? (size_t)g->hidden : (size_t)g->dhidden;
    size_t BL = B * L, BT = B * T;   /* B <= 2^31, L <= 2^16: no overflow in 64 bits */
    c->ids_shuffle = mae_arena_take(p, BL, sizeof(int32_t));
    c->ids_restore = mae_arena_take(p, BL, sizeof(int32_t));
    c->noise = mae_arena_take(p, BL, sizeof(float));
    c->mask = mae_arena_take(p, BL, sizeof(float));
    c->patches = mae_arena_take(p, BL * (size_t)g->P, sizeof(float));
    c->tokens = mae_arena_take(p, BL * (size_t)g->D, sizeof(float));
    c->latent = mae_arena_take(p, BT * (size_t)g->D, sizeof(float));
    c->demb = mae_arena_take(p, BT * (size_t)g->Dd, sizeof(float));
    c->dnorm = mae_arena_take(p, BL * (size_t)g->Dd, sizeof(float));
    c->pred = mae_arena_take(p, BL * (size_t)g->P, sizeof(float));
    c->stream = mae_arena_take(p, BT * maxC, sizeof(float));
    memset(&c->blk, 0, sizeof c->blk);
    /* ln1, the attention output and ln2 are never live at the same time */
    c->blk.ln1 = mae_arena_take(p, BT * maxC, sizeof(float));
    c->blk.atty = c->blk.ln1;
    c->blk.ln2 = c->blk.ln1;
    c->blk.qkv = mae_arena_take(p, BT * 3 * maxC, sizeof(float));
    c->blk.xmid = mae_arena_take(p, BT * maxC, sizeof(float));
    c->blk.fch_gelu = mae_arena_take(p, BT * maxH, sizeof(float));
    c->acts.blk = &c->blk;
    c->acts.per_layer = 0;
    c->acts.x = c->stream;
    c->acts.norm_mean = c->acts.norm_rstd = NULL;
}

static size_t scratch_need(const mae_ctx *c)
{
    const mae_cfg *g = &c->m->cfg;
    size_t widest = max3((size_t)g->D, (size_t)g->Dd, (size_t)g->P);
    widest = max3(widest, (size_t)g->hidden * 1, (size_t)g->dhidden);
    widest = max3(widest, 3 * (size_t)(g->D > g->Dd ? g->D : g->Dd), 1);
    return c->m->k->scratch_floats(1 + g->L, (int)widest);
}

mae_status mae_ctx_set_scratch(mae_ctx *c, int n)
{
    return mae_exec_set_scratch(&c->ex, scratch_need(c), n);
}

/* What mae_ctx_create allocates for m and max_batch with n threads (mae_ctx_memory). */
mae_status mae_ctx_plan_bytes(const mae_model *m, int max_batch, int n, size_t *bytes)
{
    mae_ctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.max_batch = max_batch;
    size_t used = 0, scratch, total;
    if (mae_arena_count("the context's buffers", plan, &c, &used) != MAE_OK ||
        !mae_mul_size(scratch_need(&c), (size_t)n, &scratch) ||
        !mae_mul_size(scratch, sizeof(float), &scratch) || !mae_add_size(used, scratch, &total) ||
        !mae_add_size(total, sizeof c, &total))
        return mae_fail(MAE_ERR_NOMEM, "buffers for max_batch %d overflow", max_batch);
    *bytes = total;
    return MAE_OK;
}

/* The model counts its live contexts (model.h, live_ctx): mae_trainer_create may rewrite a slim
 * model's weights only while none exists. The count is the only thing a context changes in its
 * model, which is otherwise read-only to it (allocated, never a const object: the cast is sound). */
static int claim_context(const mae_model *m)
{
    mae_atomic_long *n = &((mae_model *)m)->live_ctx;
    long v = mae_atomic_long_load(n);
    for (;;) {
        if (v == MAE_MODEL_CONVERTING)
            return 0;
        long found = mae_atomic_long_cas(n, v, v + 1);
        if (found == v)
            return 1;
        v = found;
    }
}

static void release_context(const mae_model *m)
{
    mae_atomic_long_add(&((mae_model *)m)->live_ctx, -1);
}

mae_status mae_ctx_new(const mae_model *m, int max_batch, mae_ctx **out)
{
    /* Counted before anything else, so that a trainer creation that starts now sees it; the
     * count is only dropped again on failure. */
    if (!claim_context(m))
        return mae_fail(MAE_ERR_STATE, "mae_trainer_create is converting the model right now; create contexts after it returns");
    mae_ctx *c = mae_calloc(1, sizeof *c);
    if (!c) {
        release_context(m);
        return mae_fail(MAE_ERR_NOMEM, "out of memory");
    }
    c->m = m;
    c->max_batch = max_batch;
    c->ratio = m->cfg.mask_ratio;
    mae_rng_seed(&c->rng, 0);
    void *arena;
    mae_status s = mae_arena_plan("the context's buffers", plan, c, &arena);
    if (s != MAE_OK) {
        mae_free(c);
        release_context(m);
        return mae_fail_wrap(s, "max_batch %d", max_batch);
    }
    c->arena = arena;
    const mae_thread_pool *host = mae_thread_pool_default();
    int n = host ? host->nthreads : mae_max_threads();
    s = mae_ctx_set_scratch(c, n < 1 ? 1 : n);
    if (host) {
        c->host = *host;
        c->ex.host = &c->host;
    }
    if (s != MAE_OK) {
        mae_free(c->arena);
        mae_free(c);
        release_context(m);
        return s;
    }
    *out = c;
    return MAE_OK;
}

void mae_ctx_destroy(mae_ctx *c)
{
    if (!c)
        return;
    const mae_model *m = c->m;
    mae_free(c->ex.scratch);
    mae_free(c->arena);
    mae_free(c);
    release_context(m);
}
