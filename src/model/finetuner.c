/* The finetuner's life: its config (defaults and checks), creation with the gradients, AdamW
 * moments and activations it owns, the schedule and the optimizer step. The public calls
 * (api/finetune_api.c) check their arguments and come here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "finetune.h"
#include "../util/sized.h"

void mae_finetune_defaults(mae_finetune_config *c)
{
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    c->accum_iter = 1;
    c->blr = 1e-3;
    c->min_lr = 1e-6;
    c->weight_decay = 0.05;
    c->layer_decay = 0.75;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->warmup_epochs = 5;
    c->epochs = 50;
    c->world_size = 1;
    c->smoothing = 0.1f;
    c->drop_path = 0.1f;
}

/* A caller's config, size-checked and range-checked, into out. */
mae_status mae_finetune_read_config(const char *fn, const mae_finetune_config *in, mae_finetune_config *out)
{
    mae_finetune_config full = *out;
    mae_status s = mae_sized_read(fn, in, &full, sizeof full, sizeof full);
    if (s != MAE_OK)
        return s;
    const mae_finetune_config *c = &full;
    const char *bad = c->accum_iter < 1 ? "accum_iter must be >= 1"
        : !(c->blr >= 0) || !(c->lr >= 0) || !(c->min_lr >= 0) ? "blr, lr and min_lr must be >= 0"
        : !(c->weight_decay >= 0) ? "weight_decay must be >= 0"
        : !(c->layer_decay > 0 && c->layer_decay <= 1) ? "layer_decay must be in (0, 1]"
        : !(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1) ? "betas must be in [0, 1)"
        : !(c->eps > 0) ? "eps must be > 0"
        : c->iters_per_epoch < 0 ? "iters_per_epoch must be >= 0"
        : c->iters_per_epoch > 0 && !(c->warmup_epochs >= 0 && c->epochs > c->warmup_epochs)
          ? "epochs must exceed warmup_epochs >= 0" : c->batch_size < 0 ? "batch_size must be >= 0"
        : c->world_size < 1 ? "world_size must be >= 1"
        : !(c->smoothing >= 0 && c->smoothing < 1) ? "smoothing must be in [0, 1)"
        : !(c->clip_grad >= 0) || isinf(c->clip_grad) ? "clip_grad must be finite and >= 0"
        : !(c->drop_path >= 0 && c->drop_path < 1) ? "drop_path must be in [0, 1)" : NULL;
    if (bad)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %s", fn, bad);
    *out = full;
    return MAE_OK;
}

void mae_finetuner_destroy(mae_finetuner *f)
{
    if (!f)
        return;
    mae_free(f->arena);
    mae_free(f->tr.ex.scratch);
    mae_free(f->grads); mae_free(f->m1); mae_free(f->m2);
    mae_free(f->hgrad); mae_free(f->hm1); mae_free(f->hm2);
    mae_free(f->layer);
    mae_free(f);
}


/* Layer ids of param_groups_lrd; -1 for tensors the classifier does not use (norm.* with global
 * pooling). */
static void layer_ids(mae_finetuner *f)
{
    const mae_model *m = f->c->m;
    for (int i = 0; i < m->n_tensors; i++) {
        const char *n = m->tensors[i].name;
        int id = m->cfg.depth + 1;
        if (!strcmp(n, "cls_token") || !strcmp(n, "pos_embed") || !strncmp(n, "patch_embed.", 12))
            id = 0;
        else if (!strncmp(n, "blocks.", 7))
            id = 1 + (int)strtol(n + 7, NULL, 10);
        else if (!strncmp(n, "norm.", 5) && f->c->global_pool)
            id = -1;
        f->layer[i] = id;
    }
}

mae_status mae_finetuner_new(mae_classifier *c, int max_batch, mae_finetuner **out)
{
    mae_status s = mae_model_make_trainable_mixed(c->m, "mae_finetuner_create");
    if (s != MAE_OK)
        return s;
    mae_finetuner *f = mae_calloc(1, sizeof *f);
    if (!f)
        return mae_fail(MAE_ERR_NOMEM, "out of memory");
    mae_model *m = c->m;
    size_t total = m->lay.total, D = (size_t)m->cfg.D;
    f->c = c;
    f->max_batch = max_batch;
    mae_finetune_defaults(&f->cfg);
    f->head_floats = 2 * D + (size_t)c->classes * (D + 1);
    f->grads = mae_calloc(total, sizeof(float));
    f->m1 = mae_calloc(total, sizeof(float));
    f->m2 = mae_calloc(total, sizeof(float));
    f->hgrad = mae_calloc(f->head_floats, sizeof(float));
    f->hm1 = mae_calloc(f->head_floats, sizeof(float));
    f->hm2 = mae_calloc(f->head_floats, sizeof(float));
    f->layer = mae_calloc((size_t)m->n_tensors, sizeof(int));
    if (!f->grads || !f->m1 || !f->m2 || !f->hgrad || !f->hm1 || !f->hm2 || !f->layer) {
        mae_finetuner_destroy(f);
        return mae_fail(MAE_ERR_NOMEM, "cannot allocate the gradients and AdamW moments");
    }
    mae_params_view(&m->lay, f->grads, 0, &f->g);
    f->tr.m = m;
    f->tr.max_batch = max_batch;
    f->tr.grads = f->grads;
    f->tr.g = f->g;
    layer_ids(f);
    const mae_thread_pool *host = mae_thread_pool_default();
    int n = host ? host->nthreads : mae_max_threads();
    if (host) {
        f->tr.host = *host;
        f->tr.ex.host = &f->tr.host;
    }
    if ((s = mae_finetune_set_scratch(f, n < 1 ? 1 : n)) != MAE_OK || (s = mae_finetune_plan(f)) != MAE_OK) {
        mae_finetuner_destroy(f);
        return s;
    }
    *out = f;
    return MAE_OK;
}

mae_train_config mae_finetune_schedule(const mae_finetuner *f)
{
    const mae_finetune_config *c = &f->cfg;
    mae_train_config t;
    memset(&t, 0, sizeof t);
    t.accum_iter = c->accum_iter;
    t.blr = c->blr;
    t.lr = c->lr;
    t.min_lr = c->min_lr;
    t.warmup_epochs = c->warmup_epochs;
    t.epochs = c->epochs;
    t.iters_per_epoch = c->iters_per_epoch;
    t.batch_size = c->batch_size;
    t.world_size = c->world_size;
    return t;
}

void mae_finetune_zero(mae_finetuner *f)
{
    memset(f->grads, 0, f->c->m->lay.total * sizeof *f->grads);
    memset(f->hgrad, 0, f->head_floats * sizeof *f->hgrad);
}

mae_status mae_finetune_take_step(mae_finetuner *f)
{
    double norm = mae_finetune_grad_norm(f);
    if (!isfinite(norm))
        return mae_fail(MAE_ERR_STATE, "the gradients are not finite (norm %g); nothing was changed", norm);
    mae_train_config t = mae_finetune_schedule(f);
    double lr = mae_train_lr_at(&t, f->max_batch, f->step);
    double mul = f->cfg.clip_grad > 0 && norm > f->cfg.clip_grad ? f->cfg.clip_grad / (norm + 1e-6) : 1.0;
    mae_finetune_adamw(f, lr, mul);
    f->grad_norm = norm;
    mae_model_repack_threads(f->c->m, &f->tr.ex);
    mae_classifier_pack_head(f->c);   /* storage exists: cannot fail */
    f->step++;
    f->micro = 0;
    mae_finetune_zero(f);
    return MAE_OK;
}
