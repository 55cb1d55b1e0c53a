/* The trainer's memory plan and one forward + backward pass. The forward reuses forward.c with
 * one set of activations per block (every optional field set), so the backward pass finds what
 * it needs; the backward pass is backward.c. */
#include <string.h>
#include "model.h"
#include "../util/arena.h"

typedef mae_arena planner;

/* Room for a*b*c elements of elem bytes (the arena's take, for the trainer's 3-d shapes). */
static void *take(planner *p, size_t a, size_t b, size_t c, size_t elem)
{
    size_t n;
    if (!mae_mul_size(a, b, &n) || !mae_mul_size(n, c, &n)) {
        p->overflow = 1;
        return NULL;
    }
    return mae_arena_take(p, n, elem);
}

/* One block's saved activations for B sequences of T tokens. */
static void plan_block(planner *p, mae_block_acts *a, size_t B, size_t T, size_t C, size_t H,
                       size_t hidden)
{
    mae_block_acts x;
    size_t BT = B * T;
    x.ln1 = take(p, BT, C, 1, sizeof(float));
    x.ln1_mean = take(p, BT, 1, 1, sizeof(float));
    x.ln1_rstd = take(p, BT, 1, 1, sizeof(float));
    x.qkv = take(p, BT, 3 * C, 1, sizeof(float));
    x.probs = take(p, B * H, T, T, sizeof(float));
    x.atty = take(p, BT, C, 1, sizeof(float));
    x.xmid = take(p, BT, C, 1, sizeof(float));
    x.ln2 = take(p, BT, C, 1, sizeof(float));
    x.ln2_mean = take(p, BT, 1, 1, sizeof(float));
    x.ln2_rstd = take(p, BT, 1, 1, sizeof(float));
    x.fch = take(p, BT, hidden, 1, sizeof(float));
    x.fch_gelu = take(p, BT, hidden, 1, sizeof(float));
    if (a)
        *a = x;
}

static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

/* Every activation and backward buffer of a trainer, counted then carved (arena.h). */
static void plan(void *obj, planner *p)
{
    mae_trainer *t = obj;
    const mae_cfg *c = &t->m->cfg;
    size_t B = (size_t)t->max_batch, L = (size_t)c->L, Te = 1 + (size_t)t->keep_cap, Td = 1 + L;
    size_t D = (size_t)c->D, Dd = (size_t)c->Dd, P = (size_t)c->P, K = (size_t)c->C * c->p * c->p;
    t->ids_shuffle = take(p, B, L, 1, sizeof(int32_t));
    t->ids_restore = take(p, B, L, 1, sizeof(int32_t));
    t->noise = take(p, B, L, 1, sizeof(float));
    t->mask = take(p, B, L, 1, sizeof(float));
    t->patches = take(p, B, L, K, sizeof(float));
    t->tokens = take(p, B, L, D, sizeof(float));
    t->latent = take(p, B, Te, D, sizeof(float));
    t->enc_mean = take(p, B, Te, 1, sizeof(float));
    t->enc_rstd = take(p, B, Te, 1, sizeof(float));
    t->demb = take(p, B, Te, Dd, sizeof(float));
    t->dnorm = take(p, B, L, Dd, sizeof(float));
    t->dec_mean = take(p, B, L, 1, sizeof(float));
    t->dec_rstd = take(p, B, L, 1, sizeof(float));
    t->pred = take(p, B, L, P, sizeof(float));
    t->target = take(p, B, L, P, sizeof(float));
    t->dpred = take(p, B, L, P, sizeof(float));
    t->pkept = take(p, B, maxz(t->keep_cap, 1), K, sizeof(float));
    t->dpkept = take(p, B, maxz(t->keep_cap, 1), K, sizeof(float));
    t->eblk = take(p, (size_t)c->depth, 1, 1, sizeof(mae_block_acts));
    t->dblk = take(p, (size_t)c->ddepth, 1, 1, sizeof(mae_block_acts));
    for (int l = 0; l < c->depth; l++)
        plan_block(p, p->base ? &t->eblk[l] : NULL, B, Te, D, (size_t)c->H, (size_t)c->hidden);
    for (int l = 0; l < c->ddepth; l++)
        plan_block(p, p->base ? &t->dblk[l] : NULL, B, Td, Dd, (size_t)c->dH, (size_t)c->dhidden);
    t->enc.blk = t->eblk;
    t->enc.per_layer = 1;
    t->enc.x = take(p, (size_t)c->depth + 1, B * Te, D, sizeof(float));
    t->enc.norm_mean = t->enc_mean;
    t->enc.norm_rstd = t->enc_rstd;
    t->dec.blk = t->dblk;
    t->dec.per_layer = 1;
    t->dec.x = take(p, (size_t)c->ddepth + 1, B * Td, Dd, sizeof(float));
    t->dec.norm_mean = t->dec_mean;
    t->dec.norm_rstd = t->dec_rstd;
    /* backward scratch: the widest of the two stacks */
    size_t btc = maxz(B * Te * D, B * Td * Dd);
    t->gb.dres = take(p, btc, 1, 1, sizeof(float));
    t->gb.dc = take(p, btc, 1, 1, sizeof(float));
    t->gb.dqkv = take(p, btc, 3, 1, sizeof(float));
    t->gb.dh = take(p, maxz(B * Te * (size_t)c->hidden, B * Td * (size_t)c->dhidden), 1, 1, sizeof(float));
    mae_mixed_plan(p, t);   /* a bf16 model's rounded operands */
}

mae_status mae_trainer_plan(mae_trainer *t, int keep_cap)
{
    mae_trainer next = *t;
    next.keep_cap = keep_cap;
    mae_status s = mae_arena_plan("the activations", plan, &next, &next.arena);
    if (s != MAE_OK)
        return mae_fail_wrap(s, "trainer: max_batch %d", t->max_batch);
    mae_free(t->arena);
    *t = next;
    return MAE_OK;
}

/* The forward pass of mae_forward, keeping every activation, then the backward pass. *loss gets
 * the loss; the gradients get d(loss)/d(param) / accum_iter added. The host's hooks are checked
 * before each forward block and before the backward pass, the last point at which nothing but
 * activations and the RNG has changed: a cancelled call puts the RNG back and returns. */
mae_status mae_trainer_run(mae_trainer *t, const float *imgs, int B, const float *noise,
                           float *dimgs, float *loss)
{
    const mae_model *m = t->m;
    const mae_exec *ex = &t->ex;
    int L = m->cfg.L, keep = mae_keep_count(L, t->ratio);
    mae_hooks *hk = mae_hooks_active(&t->hooks);
    if (hk) {
        hk->done = 0;
        hk->total = m->cfg.depth + m->cfg.ddepth + 1;
    }
    mae_rng rng_before = t->rng;   /* 2.5 KB, copied once per pass: negligible next to a block */
    if (!noise) {
        for (size_t i = 0; i < (size_t)B * L; i++)
            t->noise[i] = mae_rng_uniform(&t->rng);
        noise = t->noise;
    }
    mae_patch_embed_run(m, ex, imgs, B, t->patches, t->tokens);
    mae_masker_run(L, keep, noise, B, t->ids_shuffle, t->ids_restore, t->mask);
    mae_status s = mae_encoder_run(m, ex, &t->enc, t->tokens, t->ids_shuffle, keep, B, t->latent, hk);
    if (s == MAE_OK)
        s = mae_decoder_run(m, ex, &t->dec, t->latent, t->ids_restore, keep, B, t->demb, t->dnorm,
                            t->pred, hk);
    if (s == MAE_OK && hk && mae_hooks_stop(hk))
        s = mae_fail(MAE_ERR_ABORTED, "cancelled by the host's callback before the backward pass");
    if (s != MAE_OK) {
        t->rng = rng_before;
        return s;
    }
    *loss = mae_loss_run(m, imgs, t->pred, t->mask, B, t->target);

    mae_loss_backward(m, t->dpred, t->pred, t->target, t->mask, B, 1.0 / t->cfg.accum_iter);
    mae_decoder_backward(t, B, keep);
    mae_encoder_backward(t, B, keep);
    if (dimgs)
        mae_input_backward(t, imgs, B, keep, dimgs);
    if (hk && hk->progress)
        (void)hk->progress(hk->progress_user, hk->total, hk->total);   /* done; too late to cancel */
    return MAE_OK;
}
