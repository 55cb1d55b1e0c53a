/* The trainer: its training config, which tensors train, its life cycle, its memory plan, one
 * forward + backward pass and the optimizer step. The forward reuses forward.c with one set of
 * activations per block (every optional field set), so the backward pass finds what it needs;
 * the backward pass is backward.c, AdamW optim.c. The public calls (src/api/trainer_api.c) check
 * the arguments and add their name to the errors stated here. */
#include <math.h>
#include <string.h>
#include "trainer.h"
#include "config_fields.h"
#include "../util/arena.h"
#include "../util/sized.h"

/* ---- the training config -------------------------------------------------------------------- */

_Static_assert(offsetof(mae_train_config, blr) == 8 && offsetof(mae_train_config, iters_per_epoch) == 80 &&
               MAE_TRAIN_CONFIG_V1_SIZE == 100, "mae_train_config version 1: the layout callers were built with");

/* The fields, their defaults and ranges: config_fields.h. */
void mae_train_config_defaults(mae_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    mae_fields_default(mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, c);
}

static int finite_nonneg(double v) { return v >= 0.0 && isfinite(v); }

/* Each field's range (config_fields.h), then the rules between fields. */
mae_status mae_train_config_read(const char *fn, const mae_train_config *in, int max_batch, mae_train_config *c)
{
    mae_train_config_defaults(c);
    mae_status s = mae_sized_read(fn, in, c, sizeof *c, MAE_TRAIN_CONFIG_V1_SIZE);
    if (s != MAE_OK)
        return s;
    if ((s = mae_fields_check(fn, mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, c, 0)) != MAE_OK)
        return s;
    if (c->iters_per_epoch > 0 && !(finite_nonneg(c->warmup_epochs) && isfinite(c->epochs) && c->epochs > c->warmup_epochs))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the schedule needs 0 <= warmup_epochs (%g) < epochs (%g)",
                        fn, c->warmup_epochs, c->epochs);
    if (!isfinite(mae_train_peak_lr(c, max_batch)))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the peak learning rate overflows", fn);
    return MAE_OK;
}

/* ---- which tensors train -------------------------------------------------------------------- */

mae_status mae_trainer_decide_pos(const mae_model *m, const float *base, int train_pos, int *tp, int *tdp)
{
    const mae_cfg *c = &m->cfg;
    if (train_pos >= 0) {
        *tp = *tdp = train_pos;
        return MAE_OK;
    }
    size_t n = (size_t)(1 + c->L) * (size_t)(c->D > c->Dd ? c->D : c->Dd);
    float *tmp = mae_alloc(n * sizeof *tmp);
    if (!tmp)
        return mae_fail(MAE_ERR_NOMEM, "cannot allocate %zu bytes to test the position tables", n * sizeof *tmp);
    *tp = !mae_is_sincos_table(base + m->lay.pos, c->D, c->gh, c->gw, tmp);
    *tdp = !mae_is_sincos_table(base + m->lay.dpos, c->Dd, c->gh, c->gw, tmp);
    mae_free(tmp);
    return MAE_OK;
}

/* The per-tensor flags: trainable, and decayed by timm's add_weight_decay rule (ndim > 1 and not
 * *.bias; a trained position table is 3-D and decays, as it would there). */
void mae_trainer_apply_pos(mae_trainer *t, int tp, int tdp)
{
    const mae_model *m = t->m;
    t->train_pos = tp;
    t->train_dpos = tdp;
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *tn = &m->tensors[i];
        int f = tn->flags;
        if (tn->offset == m->lay.pos || tn->offset == m->lay.dpos) {
            int on = tn->offset == m->lay.pos ? tp : tdp;
            f = on ? MAE_T_TRAIN | MAE_T_DECAY : 0;
            if (!on)   /* a frozen table's gradient slot stays zero */
                memset(t->grads + tn->offset, 0, tn->count * sizeof(float));
        }
        t->tflags[i] = f;
    }
}

mae_status mae_trainer_resolve_flags(mae_trainer *t, int train_pos)
{
    int tp = 0, tdp = 0;
    mae_status s = mae_trainer_decide_pos(t->m, t->m->data, train_pos, &tp, &tdp);
    if (s == MAE_OK)
        mae_trainer_apply_pos(t, tp, tdp);
    return s;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static size_t scratch_need(const mae_trainer *t)
{
    const mae_cfg *c = &t->m->cfg;
    size_t w = (size_t)(c->D > c->Dd ? c->D : c->Dd) * 3;
    size_t dims[] = { (size_t)c->P, (size_t)c->hidden, (size_t)c->dhidden, (size_t)c->C * c->p * c->p };
    for (int i = 0; i < 4; i++)
        if (dims[i] > w)
            w = dims[i];
    size_t f = t->m->k->scratch_floats(1 + c->L, (int)w);
    size_t b = t->m->k->backward_scratch_floats(1 + c->L, (int)w);
    return f > b ? f : b;
}

mae_status mae_trainer_set_scratch(mae_trainer *t, int n)
{
    return mae_exec_set_scratch(&t->ex, scratch_need(t), n);
}

void mae_trainer_destroy(mae_trainer *t)
{
    if (!t)
        return;
    mae_free(t->arena);
    mae_free(t->ex.scratch);
    mae_free(t->grads);
    mae_free(t->exp_avg);
    mae_free(t->exp_avg_sq);
    mae_free(t->tflags);
    mae_free(t->norm_parts);
    mae_free(t);
}

/* The trainer's state for m (which has master weights already: mae_model_make_trainable). */
mae_status mae_trainer_new(mae_model *m, int max_batch, mae_trainer **out)
{
    mae_trainer *t = mae_calloc(1, sizeof *t);
    if (!t)
        return mae_fail(MAE_ERR_NOMEM, "out of memory");
    size_t total = m->lay.total;
    t->m = m;
    t->max_batch = max_batch;
    t->ratio = m->cfg.mask_ratio;
    mae_rng_seed(&t->rng, 0);
    mae_train_config_defaults(&t->cfg);
    t->grads = mae_calloc(total, sizeof(float));
    t->exp_avg = mae_calloc(total, sizeof(float));
    t->exp_avg_sq = mae_calloc(total, sizeof(float));
    t->tflags = mae_calloc((size_t)m->n_tensors, sizeof(int));
    t->norm_parts = mae_calloc((total + MAE_TRAIN_CHUNK - 1) / MAE_TRAIN_CHUNK, sizeof(double));
    if (!t->grads || !t->exp_avg || !t->exp_avg_sq || !t->tflags || !t->norm_parts) {
        mae_trainer_destroy(t);
        return mae_fail(MAE_ERR_NOMEM, "cannot allocate the gradients and AdamW moments (3 x %zu floats)", total);
    }
    mae_params_view(&m->lay, t->grads, 1, &t->g);
    const mae_thread_pool *host = mae_thread_pool_default();
    int n = host ? host->nthreads : mae_max_threads();
    if (host) {
        t->host = *host;
        t->ex.host = &t->host;
    }
    mae_status s;
    if ((s = mae_trainer_resolve_flags(t, t->cfg.train_pos)) != MAE_OK ||
        (s = mae_trainer_set_scratch(t, n < 1 ? 1 : n)) != MAE_OK ||
        (s = mae_trainer_plan(t, mae_keep_count(m->cfg.L, t->ratio))) != MAE_OK) {
        mae_trainer_destroy(t);
        return s;
    }
    *out = t;
    return MAE_OK;
}

/* ---- the memory plan ------------------------------------------------------------------------ */

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
        return mae_fail_wrap(s, "max_batch %d", t->max_batch);
    mae_free(t->arena);
    *t = next;
    return MAE_OK;
}

/* The pipeline of mae_forward (mae_pipeline_run), keeping every activation, then the backward
 * pass. *loss gets the loss; the gradients get d(loss)/d(param) / accum_iter added. The host's
 * hooks are checked before each forward block and before the backward pass, the last point at
 * which nothing but activations, *loss and the RNG has changed: a cancelled call puts the RNG
 * back and returns. */
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
    mae_pass p = { &t->enc, &t->dec, t->noise, t->ids_shuffle, t->ids_restore, t->mask, t->patches, t->tokens,
                   t->latent, t->demb, t->dnorm, t->pred, t->target };
    mae_status s = mae_pipeline_run(m, ex, &t->rng, &p, imgs, B, keep, noise, 1, loss, hk);
    if (s == MAE_OK && hk && mae_hooks_stop(hk))
        s = mae_fail(MAE_ERR_ABORTED, "cancelled by the host's callback before the backward pass");
    if (s != MAE_OK) {
        t->rng = rng_before;
        return s;
    }

    mae_loss_backward(m, t->dpred, t->pred, t->target, t->mask, B, 1.0 / t->cfg.accum_iter);
    mae_decoder_backward(t, B, keep);
    mae_encoder_backward(t, B, keep);
    if (dimgs)
        mae_input_backward(t, imgs, B, keep, dimgs);
    if (hk && hk->progress)
        (void)hk->progress(hk->progress_user, hk->total, hk->total);   /* done; too late to cancel */
    return MAE_OK;
}

/* ---- the step ------------------------------------------------------------------------------- */

mae_status mae_trainer_take_step(mae_trainer *t)
{
    double norm = mae_train_grad_norm(t);
    if (!isfinite(norm))
        return mae_fail(MAE_ERR_STATE, "the gradients are not finite (norm %g); nothing was updated", norm);
    double mul = 1.0;
    if (t->cfg.clip_grad > 0.0f && norm > t->cfg.clip_grad)
        mul = t->cfg.clip_grad / (norm + 1e-6);   /* torch.nn.utils.clip_grad_norm_ */
    mae_train_adamw(t, mae_train_lr_at(&t->cfg, t->max_batch, t->step), mul);
    memset(t->grads, 0, t->m->lay.total * sizeof(float));
    mae_model_repack_threads(t->m, &t->ex);
    t->grad_norm = norm;
    t->step++;
    return MAE_OK;
}
