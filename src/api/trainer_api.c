/* Public training calls (mae.h section 7): argument checks, then the trainer (src/model/trainer.c)
 * or its checkpoint (src/io/trainer_ckpt.c); an inner error gets the public function's name once
 * (mae_fail_wrap). */
#include <string.h>
#include "../model/trainer.h"
#include "../io/trainer_ckpt.h"
#include "../util/sized.h"

/* ---- the training config -------------------------------------------------------------------- */

MAE_API mae_status mae_train_config_init(mae_train_config *cfg, size_t struct_size)
{
    if (!cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_train_config_init: cfg is NULL");
    if (struct_size < MAE_TRAIN_CONFIG_V1_SIZE)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_train_config_init: struct_size %zu is smaller than version 1 of mae_train_config (%zu)",
                        struct_size, (size_t)MAE_TRAIN_CONFIG_V1_SIZE);
    mae_train_config full;
    mae_train_config_defaults(&full);
    return mae_sized_write("mae_train_config_init", cfg, struct_size, &full, sizeof full, MAE_TRAIN_CONFIG_V1_SIZE);
}

/* ---- life cycle ----------------------------------------------------------------------------- */

MAE_API void mae_trainer_free(mae_trainer *t)
{
    mae_trainer_destroy(t);
}

MAE_API mae_status mae_trainer_create(mae_model *m, int max_batch, mae_trainer **out)
{
    if (!m || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_create: %s is NULL", !m ? "model" : "out");
    if (max_batch <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_create: max_batch %d must be positive", max_batch);
    if (!m->cfg.has_decoder)
        return mae_fail(MAE_ERR_UNSUPPORTED, "mae_trainer_create: the model has no decoder (an encoder-only checkpoint cannot be pretrained)");
    mae_status s = mae_model_make_trainable_mixed(m, "mae_trainer_create");   /* AdamW and the backward pass need master weights */
    if (s == MAE_OK)
        s = mae_trainer_new(m, max_batch, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_trainer_create");
}

/* ---- settings ------------------------------------------------------------------------------- */

MAE_API mae_status mae_trainer_set_config(mae_trainer *t, const mae_train_config *cfg)
{
    if (!t || !cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_config: %s is NULL", !t ? "trainer" : "cfg");
    mae_train_config c;
    mae_status s = mae_train_config_read("mae_trainer_set_config", cfg, t->max_batch, &c);
    if (s != MAE_OK)
        return s;
    if (c.train_pos != t->cfg.train_pos && (s = mae_trainer_resolve_flags(t, c.train_pos)) != MAE_OK)
        return mae_fail_wrap(s, "mae_trainer_set_config");
    t->cfg = c;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_get_config(const mae_trainer *t, mae_train_config *cfg)
{
    if (!t || !cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_get_config: %s is NULL", !t ? "trainer" : "cfg");
    return mae_sized_write("mae_trainer_get_config (set cfg->struct_size first)", cfg, cfg->struct_size, &t->cfg,
                           sizeof t->cfg, MAE_TRAIN_CONFIG_V1_SIZE);
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
            return mae_fail_wrap(s, "mae_trainer_set_mask_ratio");
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
    mae_status s = mae_trainer_set_scratch(t, n);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_trainer_set_threads");
}

MAE_API mae_status mae_trainer_set_thread_pool(mae_trainer *t, const mae_thread_pool *pool)
{
    if (!t)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_set_thread_pool: trainer is NULL");
    if (!pool) {
        t->ex.host = NULL;
        return MAE_OK;
    }
    mae_thread_pool p;
    mae_status s = mae_thread_pool_read("mae_trainer_set_thread_pool", pool, &p);
    if (s == MAE_OK && p.nthreads != t->ex.nthreads && (s = mae_trainer_set_scratch(t, p.nthreads)) != MAE_OK)
        return mae_fail_wrap(s, "mae_trainer_set_thread_pool");
    if (s != MAE_OK)
        return s;
    t->host = p;
    t->ex.host = &t->host;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_get_threads(const mae_trainer *t, int *nthreads)
{
    if (!t || !nthreads)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_get_threads: %s is NULL", !t ? "trainer" : "nthreads");
    *nthreads = mae_threads_effective(&t->ex);
    return MAE_OK;
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
    float l;
    if ((s = mae_trainer_run(t, imgs, batch, noise, NULL, &l)) != MAE_OK)
        return mae_fail_wrap(s, "mae_trainer_forward_backward");
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
    float l;
    if ((s = mae_trainer_run(t, imgs, batch, noise, dimgs, &l)) != MAE_OK)
        return mae_fail_wrap(s, "mae_trainer_forward_backward_input");
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
    mae_status s = mae_trainer_take_step(t);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_trainer_step");
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

MAE_API mae_status mae_trainer_save(const mae_trainer *t, const char *path)
{
    if (!t || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_save: %s is NULL", !t ? "trainer" : "path");
    mae_status s = mae_trainer_ckpt_save(t, path);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_trainer_save");
}

MAE_API mae_status mae_trainer_load(mae_trainer *t, const char *path)
{
    if (!t || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_load: %s is NULL", !t ? "trainer" : "path");
    mae_status s = mae_trainer_ckpt_load(t, path);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_trainer_load");
}
