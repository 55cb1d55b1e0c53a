/* Public training calls: argument checks, the trainer's life cycle, settings and the step. */
#include <math.h>
#include <string.h>
#include "../model/model.h"

/* ---- the training config -------------------------------------------------------------------- */

#define CONFIG_V1_SIZE (offsetof(mae_train_config, train_pos) + sizeof(int32_t))

static void config_defaults(mae_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    c->accum_iter = 1;
    c->blr = 1.5e-4;
    c->lr = 0.0;
    c->min_lr = 0.0;
    c->weight_decay = 0.05;
    c->beta1 = 0.9;
    c->beta2 = 0.95;
    c->eps = 1e-8;
    c->warmup_epochs = 40.0;
    c->epochs = 400.0;
    c->iters_per_epoch = 0;
    c->batch_size = 0;
    c->world_size = 1;
    c->clip_grad = 0.0f;
    c->train_pos = -1;
}

MAE_API mae_status mae_train_config_init(mae_train_config *cfg, size_t struct_size)
{
    if (!cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_train_config_init: cfg is NULL");
    if (struct_size < CONFIG_V1_SIZE)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_train_config_init: struct_size %zu is smaller than version 1 of mae_train_config (%zu)",
                        struct_size, (size_t)CONFIG_V1_SIZE);
    mae_train_config full;
    config_defaults(&full);
    full.struct_size = (uint32_t)(struct_size < sizeof full ? struct_size : sizeof full);
    memcpy(cfg, &full, full.struct_size);
    cfg->struct_size = (uint32_t)struct_size;
    return MAE_OK;
}

static int finite_nonneg(double v) { return v >= 0.0 && isfinite(v); }

/* Reads a caller's config of any size (missing fields keep the defaults) and checks it. */
static mae_status read_config(const char *fn, const mae_train_config *in, int max_batch, mae_train_config *c)
{
    if (in->struct_size < CONFIG_V1_SIZE)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: struct_size %u is too small (use mae_train_config_init)", fn, in->struct_size);
    config_defaults(c);
    memcpy(c, in, in->struct_size < sizeof *c ? in->struct_size : sizeof *c);
    c->struct_size = sizeof *c;
    if (c->accum_iter < 1)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: accum_iter %d must be at least 1", fn, c->accum_iter);
    if (!finite_nonneg(c->blr) || !finite_nonneg(c->lr) || !finite_nonneg(c->min_lr))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: blr, lr and min_lr must be finite and >= 0", fn);
    if (!finite_nonneg(c->weight_decay))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: weight_decay %g must be finite and >= 0", fn, c->weight_decay);
    if (!(c->beta1 >= 0.0 && c->beta1 < 1.0) || !(c->beta2 >= 0.0 && c->beta2 < 1.0))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: betas (%g, %g) must be in [0, 1)", fn, c->beta1, c->beta2);
    if (!(c->eps > 0.0) || !isfinite(c->eps))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: eps %g must be positive", fn, c->eps);
    if (c->iters_per_epoch < 0 || c->batch_size < 0 || c->world_size < 1)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: iters_per_epoch %d, batch_size %d must be >= 0 and world_size %d >= 1",
                        fn, c->iters_per_epoch, c->batch_size, c->world_size);
    if (c->iters_per_epoch > 0 && !(finite_nonneg(c->warmup_epochs) && isfinite(c->epochs) && c->epochs > c->warmup_epochs))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the schedule needs 0 <= warmup_epochs (%g) < epochs (%g)",
                        fn, c->warmup_epochs, c->epochs);
    if (!(c->clip_grad >= 0.0f) || !isfinite(c->clip_grad))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: clip_grad %g must be finite and >= 0", fn, (double)c->clip_grad);
    if (c->train_pos < -1 || c->train_pos > 1)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: train_pos %d is not -1, 0 or 1", fn, c->train_pos);
    if (!isfinite(mae_train_peak_lr(c, max_batch)))
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the peak learning rate overflows", fn);
    return MAE_OK;
}

/* ---- which tensors train -------------------------------------------------------------------- */

/* Whether a stored table is the fixed sin-cos table of the model's grid. */
static int is_sincos(const float *table, int dim, int gh, int gw, float *tmp)
{
    if (dim % 4)
        return 0;
    mae_sincos_pos_embed(tmp, dim, gh, gw);
    size_t n = (size_t)(1 + gh * gw) * dim;
    for (size_t i = 0; i < n; i++)
        if (fabsf(tmp[i] - table[i]) > 1e-6f)
            return 0;
    return 1;
}

/* Whether the position tables of the parameters at base train: train_pos -1 means unless they
 * are the fixed sin-cos tables. No side effects, so a load can decide before it commits. */
static mae_status decide_pos(const mae_model *m, const float *base, int train_pos, int *tp, int *tdp)
{
    const mae_cfg *c = &m->cfg;
    if (train_pos >= 0) {
        *tp = *tdp = train_pos;
        return MAE_OK;
    }
    size_t n = (size_t)(1 + c->L) * (size_t)(c->D > c->Dd ? c->D : c->Dd);
    float *tmp = mae_alloc(n * sizeof *tmp);
    if (!tmp)
        return mae_fail(MAE_ERR_NOMEM, "trainer: out of memory");
    *tp = !is_sincos(base + m->lay.pos, c->D, c->gh, c->gw, tmp);
    *tdp = !is_sincos(base + m->lay.dpos, c->Dd, c->gh, c->gw, tmp);
    mae_free(tmp);
    return MAE_OK;
}

/* The per-tensor flags: trainable, and decayed by timm's add_weight_decay rule (ndim > 1 and not
 * *.bias; a trained position table is 3-D and decays, as it would there). */
static void apply_pos(mae_trainer *t, int tp, int tdp)
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

static mae_status resolve_flags(mae_trainer *t, int train_pos)
{
    int tp = 0, tdp = 0;
    mae_status s = decide_pos(t->m, t->m->data, train_pos, &tp, &tdp);
    if (s == MAE_OK)
        apply_pos(t, tp, tdp);
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

/* (Re)allocates the per-thread scratch for n threads; the old one stays on failure. */
static mae_status set_scratch(mae_trainer *t, int n)
{
    size_t per = scratch_need(t), total;
    if (!mae_mul_size(per, (size_t)n, &total) || !mae_mul_size(total, sizeof(float), &total))
        return mae_fail(MAE_ERR_NOMEM, "trainer: scratch size overflows");
    float *s = total ? mae_alloc(total) : NULL;
    if (total && !s)
        return mae_fail(MAE_ERR_NOMEM, "trainer: cannot allocate %zu bytes of scratch", total);
    mae_free(t->ex.scratch);
    t->ex.scratch = s;
    t->ex.scratch_per_thread = per;
    t->ex.nthreads = n;
    return MAE_OK;
}

MAE_API void mae_trainer_free(mae_trainer *t)
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

MAE_API mae_status mae_trainer_create(mae_model *m, int max_batch, mae_trainer **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_create: %s is NULL", !m ? "model" : "out");
    if (max_batch <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_create: max_batch %d must be positive", max_batch);
    if (!m->cfg.has_decoder)
        return mae_fail(MAE_ERR_UNSUPPORTED, "mae_trainer_create: the model has no decoder (an encoder-only checkpoint cannot be pretrained)");
    mae_trainer *t = mae_calloc(1, sizeof *t);
    if (!t)
        return mae_fail(MAE_ERR_NOMEM, "mae_trainer_create: out of memory");
    size_t total = m->lay.total;
    t->m = m;
    t->max_batch = max_batch;
    t->ratio = m->cfg.mask_ratio;
    mae_rng_seed(&t->rng, 0);
    config_defaults(&t->cfg);
    t->grads = mae_calloc(total, sizeof(float));
    t->exp_avg = mae_calloc(total, sizeof(float));
    t->exp_avg_sq = mae_calloc(total, sizeof(float));
    t->tflags = mae_calloc((size_t)m->n_tensors, sizeof(int));
    t->norm_parts = mae_calloc((total + MAE_TRAIN_CHUNK - 1) / MAE_TRAIN_CHUNK, sizeof(double));
    if (!t->grads || !t->exp_avg || !t->exp_avg_sq || !t->tflags || !t->norm_parts) {
        mae_trainer_free(t);
        return mae_fail(MAE_ERR_NOMEM, "mae_trainer_create: cannot allocate the gradients and AdamW moments (3 x %zu floats)", total);
    }
    mae_params_view(&m->lay, t->grads, 1, &t->g);
    int n = mae_max_threads();
    mae_status s;
    if ((s = resolve_flags(t, t->cfg.train_pos)) != MAE_OK ||
        (s = set_scratch(t, n < 1 ? 1 : n)) != MAE_OK ||
        (s = mae_trainer_plan(t, mae_keep_count(m->cfg.L, t->ratio))) != MAE_OK) {
        mae_trainer_free(t);
        return s;
    }
    *out = t;
    return MAE_OK;
}

/* ---- settings ------------------------------------------------------------------------------- */

MAE_API mae_status mae_trainer_set_config(mae_trainer *t, const mae_train_config *cfg)
{
    if (!t || !cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_config: %s is NULL", !t ? "trainer" : "cfg");
    mae_train_config c;
    mae_status s = read_config("mae_trainer_set_config", cfg, t->max_batch, &c);
    if (s != MAE_OK)
        return s;
    if (c.train_pos != t->cfg.train_pos && (s = resolve_flags(t, c.train_pos)) != MAE_OK)
        return s;
    t->cfg = c;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_get_config(const mae_trainer *t, mae_train_config *cfg)
{
    if (!t || !cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_get_config: %s is NULL", !t ? "trainer" : "cfg");
    if (cfg->struct_size < CONFIG_V1_SIZE)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_get_config: set cfg->struct_size first (at least %zu)", (size_t)CONFIG_V1_SIZE);
    size_t n = cfg->struct_size < sizeof t->cfg ? cfg->struct_size : sizeof t->cfg;
    uint32_t size = cfg->struct_size;
    memcpy(cfg, &t->cfg, n);
    cfg->struct_size = size;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_set_mask_ratio(mae_trainer *t, float ratio)
{
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_mask_ratio: trainer is NULL");
    if (!(ratio >= 0.0f && ratio < 1.0f))
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_mask_ratio: ratio %g is outside [0, 1)", (double)ratio);
    int L = t->m->cfg.L, keep = mae_keep_count(L, ratio);
    if (keep >= L)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_mask_ratio: ratio %g removes no patch of %d (the loss would be undefined)", (double)ratio, L);
    if (keep > t->keep_cap) {
        mae_status s = mae_trainer_plan(t, keep);
        if (s != MAE_OK)
            return s;
    }
    t->ratio = ratio;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_set_seed(mae_trainer *t, uint64_t seed)
{
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_seed: trainer is NULL");
    mae_rng_seed(&t->rng, seed);
    return MAE_OK;
}

MAE_API mae_status mae_trainer_set_threads(mae_trainer *t, int n)
{
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_threads: trainer is NULL");
    if (n < 1 || n > 256)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_threads: %d threads is outside [1, 256]", n);
    if (n == t->ex.nthreads)
        return MAE_OK;
    return set_scratch(t, n);
}

/* ---- forward + backward --------------------------------------------------------------------- */

static mae_status check_pass(const char *fn, const mae_trainer *t, const float *imgs, int batch)
{
    if (!t || !imgs)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %s is NULL", fn, !t ? "trainer" : "imgs");
    if (batch <= 0 || batch > t->max_batch)
        return mae_fail(MAE_ERR_SHAPE, "%s: batch %d is outside [1, %d] (the trainer's max_batch)", fn, batch, t->max_batch);
    int L = t->m->cfg.L;
    if (mae_keep_count(L, t->ratio) >= L)
        return mae_fail(MAE_ERR_STATE, "%s: mask ratio %g removes no patch: the loss is undefined", fn, (double)t->ratio);
    return MAE_OK;
}

MAE_API mae_status mae_trainer_forward_backward(mae_trainer *t, const float *imgs, int batch,
                                                const float *noise, float *loss)
{
    mae_status s = check_pass("mae_trainer_forward_backward", t, imgs, batch);
    if (s != MAE_OK)
        return s;
    float l = mae_trainer_run(t, imgs, batch, noise, NULL);
    if (loss)
        *loss = l;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_forward_backward_input(mae_trainer *t, const float *imgs, int batch,
                                                      const float *noise, float *loss, float *dimgs)
{
    mae_status s = check_pass("mae_trainer_forward_backward_input", t, imgs, batch);
    if (s != MAE_OK)
        return s;
    if (!dimgs)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_forward_backward_input: dimgs is NULL");
    float l = mae_trainer_run(t, imgs, batch, noise, dimgs);
    if (loss)
        *loss = l;
    return MAE_OK;
}

/* ---- gradients and the step ----------------------------------------------------------------- */

MAE_API mae_status mae_trainer_grad(const mae_trainer *t, const char *name, const float **grad,
                                    size_t *count)
{
    if (!t || !name || !grad || !count)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_grad: trainer, name, grad and count must not be NULL");
    const mae_tensor *tn = mae_model_find(t->m, name);
    if (!tn)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_grad: the model has no tensor '%s'", name);
    if (!(t->tflags[tn - t->m->tensors] & MAE_T_TRAIN))
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_grad: '%s' is frozen and has no gradient", name);
    *grad = t->grads + tn->offset;
    *count = tn->count;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_grads(mae_trainer *t, float **grads, size_t *count)
{
    if (!t || !grads || !count)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_grads: trainer, grads and count must not be NULL");
    *grads = t->grads;
    *count = t->m->lay.total;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_zero_grad(mae_trainer *t)
{
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_zero_grad: trainer is NULL");
    memset(t->grads, 0, t->m->lay.total * sizeof(float));
    return MAE_OK;
}

MAE_API mae_status mae_trainer_step(mae_trainer *t)
{
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_step: trainer is NULL");
    double norm = mae_train_grad_norm(t);
    if (!isfinite(norm))
        return mae_fail(MAE_ERR_STATE, "mae_trainer_step: the gradients are not finite (norm %g); nothing was updated", norm);
    double mul = 1.0;
    if (t->cfg.clip_grad > 0.0f && norm > t->cfg.clip_grad)
        mul = t->cfg.clip_grad / (norm + 1e-6);   /* torch.nn.utils.clip_grad_norm_ */
    mae_train_adamw(t, mae_train_lr_at(&t->cfg, t->max_batch, t->step), mul);
    memset(t->grads, 0, t->m->lay.total * sizeof(float));
    mae_model_repack(t->m);
    t->grad_norm = norm;
    t->step++;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_grad_norm(const mae_trainer *t, double *norm)
{
    if (!t || !norm)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_grad_norm: %s is NULL", !t ? "trainer" : "norm");
    *norm = t->grad_norm;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_get_step(const mae_trainer *t, int64_t *step)
{
    if (!t || !step)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_get_step: %s is NULL", !t ? "trainer" : "step");
    *step = t->step;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_get_lr(const mae_trainer *t, double *lr)
{
    if (!t || !lr)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_get_lr: %s is NULL", !t ? "trainer" : "lr");
    *lr = mae_train_lr_at(&t->cfg, t->max_batch, t->step);
    return MAE_OK;
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

/* Placeholders until the safetensors reader/writer (src/io) lands; the implementation waits. */
MAE_API mae_status mae_trainer_save(const mae_trainer *t, const char *path)
{
    if (!t || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_save: %s is NULL", !t ? "trainer" : "path");
    return mae_fail(MAE_ERR_UNSUPPORTED, "mae_trainer_save: not implemented yet (needs the safetensors writer)");
}

MAE_API mae_status mae_trainer_load(mae_trainer *t, const char *path)
{
    if (!t || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_load: %s is NULL", !t ? "trainer" : "path");
    return mae_fail(MAE_ERR_UNSUPPORTED, "mae_trainer_load: not implemented yet (needs the safetensors reader)");
}
