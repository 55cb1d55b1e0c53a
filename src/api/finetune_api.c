/* The finetuner's public entry points (mae.h section 9): argument checks, then the finetuner's
 * code (model/finetuner.c, model/finetune.c) or its checkpoint format (io/finetune_ckpt.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../model/finetune.h"
#include "../util/sized.h"
#include "../io/finetune_ckpt.h"

MAE_API mae_status mae_finetune_config_init(mae_finetune_config *cfg, size_t struct_size)
{
    if (!cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetune_config_init: cfg is NULL");
    mae_finetune_config d;
    mae_finetune_defaults(&d);
    return mae_sized_write("mae_finetune_config_init", cfg, struct_size, &d, sizeof d, sizeof d);
}

MAE_API void mae_finetuner_free(mae_finetuner *f)
{
    mae_finetuner_destroy(f);
}

MAE_API mae_status mae_finetuner_create(mae_classifier *c, int max_batch, mae_finetuner **out)
{
    if (!c || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_create: %s is NULL", !c ? "classifier" : "out");
    if (max_batch <= 0 || max_batch > 1 << 20)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_create: max_batch %d is outside [1, 2^20]", max_batch);
    mae_status s = mae_finetuner_new(c, max_batch, out);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_finetuner_create");
}

MAE_API mae_status mae_finetuner_set_config(mae_finetuner *f, const mae_finetune_config *cfg)
{
    if (!f || !cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_set_config: %s is NULL", !f ? "finetuner" : "cfg");
    return mae_finetune_read_config("mae_finetuner_set_config", cfg, &f->cfg);
}

MAE_API mae_status mae_finetuner_get_config(const mae_finetuner *f, mae_finetune_config *cfg)
{
    if (!f || !cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_get_config: %s is NULL", !f ? "finetuner" : "cfg");
    return mae_sized_write("mae_finetuner_get_config (set cfg->struct_size first)", cfg, cfg->struct_size, &f->cfg,
                           sizeof f->cfg, sizeof f->cfg);
}

MAE_API mae_status mae_finetuner_set_threads(mae_finetuner *f, int n)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_set_threads: finetuner is NULL");
    if (n < 1 || n > 256)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_set_threads: %d threads is outside [1, 256]", n);
    return n == f->tr.ex.nthreads ? MAE_OK : mae_finetune_set_scratch(f, n);
}

MAE_API mae_status mae_finetuner_set_seed(mae_finetuner *f, uint64_t seed)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_set_seed: finetuner is NULL");
    f->seed = seed;
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_forward_backward(mae_finetuner *f, const float *imgs, int batch,
                                                  const int32_t *labels, const float *targets,
                                                  float *loss, float *logits)
{
    if (!f || !imgs)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_forward_backward: %s is NULL", !f ? "finetuner" : "imgs");
    if (!labels == !targets)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_forward_backward: give exactly one of labels and targets");
    if (batch <= 0 || batch > f->max_batch)
        return mae_fail(MAE_ERR_SHAPE, "mae_finetuner_forward_backward: batch %d is outside [1, %d] (max_batch)", batch,
                        f->max_batch);
    for (int b = 0; labels && b < batch; b++)
        if (labels[b] < 0 || labels[b] >= f->c->classes)
            return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_forward_backward: label %d of image %d is outside [0, %d)",
                            (int)labels[b], b, f->c->classes);
    mae_status s = mae_finetune_run(f, imgs, batch, labels, targets, loss);
    if (s != MAE_OK)
        return mae_fail_wrap(s, "mae_finetuner_forward_backward");
    if (logits)
        memcpy(logits, f->logits, (size_t)batch * f->c->classes * sizeof *logits);
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_zero_grad(mae_finetuner *f)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_zero_grad: finetuner is NULL");
    mae_finetune_zero(f);
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_step(mae_finetuner *f)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_step: finetuner is NULL");
    mae_status s = mae_finetune_take_step(f);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_finetuner_step");
}

MAE_API mae_status mae_finetuner_grad(const mae_finetuner *f, const char *name, const float **grad,
                                      size_t *count)
{
    if (!f || !name)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_grad: %s is NULL", !f ? "finetuner" : "name");
    const mae_model *m = f->c->m;
    static const char *const head[4] = { "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias" };
    for (int i = 0; i < m->n_tensors + 4; i++) {
        const char *n = i < m->n_tensors ? m->tensors[i].name : head[i - m->n_tensors];
        double scale, wd;
        if (strcmp(n, name) != 0)
            continue;
        if (!mae_finetune_group(f, i, &scale, &wd))
            break;
        size_t D = (size_t)m->cfg.D, K = (size_t)f->c->classes, offs[4] = { 0, D, 2 * D, 2 * D + K * D };
        size_t counts[4] = { D, D, K * D, K };
        if (grad)
            *grad = i < m->n_tensors ? f->grads + m->tensors[i].offset : f->hgrad + offs[i - m->n_tensors];
        if (count)
            *count = i < m->n_tensors ? m->tensors[i].count : counts[i - m->n_tensors];
        return MAE_OK;
    }
    return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_grad: no trained tensor '%s'", name);
}

MAE_API mae_status mae_finetuner_param_group(const mae_finetuner *f, const char *name,
                                             double *lr_scale, double *weight_decay)
{
    if (!f || !name || !lr_scale || !weight_decay)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_param_group: an argument is NULL");
    const mae_model *m = f->c->m;
    static const char *const head[4] = { "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias" };
    for (int i = 0; i < m->n_tensors + 4; i++) {
        const char *n = i < m->n_tensors ? m->tensors[i].name : head[i - m->n_tensors];
        if (strcmp(n, name) == 0 && mae_finetune_group(f, i, lr_scale, weight_decay))
            return MAE_OK;
    }
    return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_param_group: no trained tensor '%s'", name);
}

MAE_API mae_status mae_finetuner_get_step(const mae_finetuner *f, int64_t *step)
{
    if (!f || !step)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_get_step: %s is NULL", !f ? "finetuner" : "step");
    *step = f->step;
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_get_lr(const mae_finetuner *f, double *lr)
{
    if (!f || !lr)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_get_lr: %s is NULL", !f ? "finetuner" : "lr");
    mae_train_config t = mae_finetune_schedule(f);
    *lr = mae_train_lr_at(&t, f->max_batch, f->step);
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_save(const mae_finetuner *f, const char *path)
{
    if (!f || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_save: %s is NULL", !f ? "finetuner" : "path");
    mae_status s = mae_finetune_ckpt_save(f, path);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_finetuner_save");
}

MAE_API mae_status mae_finetuner_load(mae_finetuner *f, const char *path)
{
    if (!f || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_load: %s is NULL", !f ? "finetuner" : "path");
    mae_status s = mae_finetune_ckpt_load(f, path);
    return s == MAE_OK ? s : mae_fail_wrap(s, "mae_finetuner_load");
}
