/* The finetuner's public entry points (mae.h section 9): argument checks, the schedule and the
 * step around src/model/finetune.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../model/finetune.h"
#include "../util/sized.h"
#include "../io/classifier_io.h"
#include "../io/config_meta.h"

static void defaults(mae_finetune_config *c)
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

MAE_API mae_status mae_finetune_config_init(mae_finetune_config *cfg, size_t struct_size)
{
    if (!cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetune_config_init: cfg is NULL");
    mae_finetune_config d;
    defaults(&d);
    return mae_sized_write("mae_finetune_config_init", cfg, struct_size, &d, sizeof d, sizeof d);
}

/* A caller's config, size-checked and range-checked, into out. */
static mae_status read_config(const char *fn, const mae_finetune_config *in, mae_finetune_config *out)
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

MAE_API void mae_finetuner_free(mae_finetuner *f)
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

MAE_API mae_status mae_finetuner_create(mae_classifier *c, int max_batch, mae_finetuner **out)
{
    if (!c || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_create: %s is NULL", !c ? "classifier" : "out");
    if (max_batch <= 0 || max_batch > 1 << 20)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_create: max_batch %d is outside [1, 2^20]", max_batch);
    mae_status s = mae_model_make_trainable(c->m, "mae_finetuner_create");
    if (s != MAE_OK)
        return s;
    mae_finetuner *f = mae_calloc(1, sizeof *f);
    if (!f)
        return mae_fail(MAE_ERR_NOMEM, "mae_finetuner_create: out of memory");
    mae_model *m = c->m;
    size_t total = m->lay.total, D = (size_t)m->cfg.D;
    f->c = c;
    f->max_batch = max_batch;
    defaults(&f->cfg);
    f->head_floats = 2 * D + (size_t)c->classes * (D + 1);
    f->grads = mae_calloc(total, sizeof(float));
    f->m1 = mae_calloc(total, sizeof(float));
    f->m2 = mae_calloc(total, sizeof(float));
    f->hgrad = mae_calloc(f->head_floats, sizeof(float));
    f->hm1 = mae_calloc(f->head_floats, sizeof(float));
    f->hm2 = mae_calloc(f->head_floats, sizeof(float));
    f->layer = mae_calloc((size_t)m->n_tensors, sizeof(int));
    if (!f->grads || !f->m1 || !f->m2 || !f->hgrad || !f->hm1 || !f->hm2 || !f->layer) {
        mae_finetuner_free(f);
        return mae_fail(MAE_ERR_NOMEM, "mae_finetuner_create: cannot allocate the gradients and AdamW moments");
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
        mae_finetuner_free(f);
        return s;
    }
    *out = f;
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_set_config(mae_finetuner *f, const mae_finetune_config *cfg)
{
    if (!f || !cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_set_config: %s is NULL", !f ? "finetuner" : "cfg");
    return read_config("mae_finetuner_set_config", cfg, &f->cfg);
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

static mae_train_config schedule(const mae_finetuner *f)
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

MAE_API mae_status mae_finetuner_zero_grad(mae_finetuner *f)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_zero_grad: finetuner is NULL");
    memset(f->grads, 0, f->c->m->lay.total * sizeof *f->grads);
    memset(f->hgrad, 0, f->head_floats * sizeof *f->hgrad);
    return MAE_OK;
}

MAE_API mae_status mae_finetuner_step(mae_finetuner *f)
{
    if (!f)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_step: finetuner is NULL");
    double norm = mae_finetune_grad_norm(f);
    if (!isfinite(norm))
        return mae_fail(MAE_ERR_STATE, "mae_finetuner_step: the gradients are not finite (norm %g); nothing was changed",
                        norm);
    mae_train_config t = schedule(f);
    double lr = mae_train_lr_at(&t, f->max_batch, f->step);
    double mul = f->cfg.clip_grad > 0 && norm > f->cfg.clip_grad ? f->cfg.clip_grad / (norm + 1e-6) : 1.0;
    mae_finetune_adamw(f, lr, mul);
    f->grad_norm = norm;
    mae_model_repack_threads(f->c->m, &f->tr.ex);
    mae_classifier_pack_head(f->c);   /* storage exists: cannot fail */
    f->step++;
    f->micro = 0;
    return mae_finetuner_zero_grad(f);
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
    mae_train_config t = schedule(f);
    *lr = mae_train_lr_at(&t, f->max_batch, f->step);
    return MAE_OK;
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

/* The config's fields as "finetune.<name>" metadata, written with 17 digits (doubles) so that a
 * reload gives the same bits. */
#define FT_FIELDS(X) X(accum_iter, 0) X(blr, 1) X(lr, 1) X(min_lr, 1) X(weight_decay, 1) X(layer_decay, 1) \
    X(beta1, 1) X(beta2, 1) X(eps, 1) X(warmup_epochs, 1) X(epochs, 1) X(iters_per_epoch, 0) X(batch_size, 0) \
    X(world_size, 0) X(smoothing, 2) X(clip_grad, 2) X(drop_path, 2)
#define FT_COUNT(name, kind) + 1
enum { N_FT_FIELDS = 0 FT_FIELDS(FT_COUNT), N_FT_META = N_FT_FIELDS + 2 };

static const char *const head_names[4] = { "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias" };

/* Name, count and shape of trained tensor i (mae_finetune_group's numbering). */
static const char *tensor_info(const mae_finetuner *f, int i, size_t *count, int *ndim, int64_t shape[4])
{
    const mae_model *m = f->c->m;
    if (i < m->n_tensors) {
        const mae_tensor *t = &m->tensors[i];
        *count = t->count;
        *ndim = t->ndim;
        memcpy(shape, t->shape, 4 * sizeof *shape);
        return t->name;
    }
    int part = i - m->n_tensors;
    int64_t D = m->cfg.D, K = f->c->classes;
    *ndim = part == 2 ? 2 : 1;
    shape[0] = part == 2 ? K : part == 3 ? K : D;
    shape[1] = D;
    *count = (size_t)shape[0] * (part == 2 ? (size_t)D : 1);
    return head_names[part];
}

/* Moment j (0: exp_avg, 1: exp_avg_sq) of trained tensor i. */
static float *moment(const mae_finetuner *f, int i, int j, float *m1, float *m2, float *h1, float *h2)
{
    const mae_model *m = f->c->m;
    if (i < m->n_tensors)
        return (j ? m2 : m1) + m->tensors[i].offset;
    size_t D = (size_t)m->cfg.D, K = (size_t)f->c->classes, offs[4] = { 0, D, 2 * D, 2 * D + K * D };
    return (j ? h2 : h1) + offs[i - m->n_tensors];
}

MAE_API mae_status mae_finetuner_save(const mae_finetuner *f, const char *path)
{
    if (!f || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_save: %s is NULL", !f ? "finetuner" : "path");
    int n = f->c->m->n_tensors + 4, k = 0;
    mae_st_out *extra = mae_calloc(2 * (size_t)n, sizeof *extra);
    char (*names)[200] = mae_calloc(2 * (size_t)n, sizeof *names);
    int64_t (*shapes)[4] = mae_calloc((size_t)n, sizeof *shapes);
    mae_st_meta meta[N_FT_META];
    if (!extra || !names || !shapes) {
        mae_free(extra); mae_free(names); mae_free(shapes);
        return mae_fail(MAE_ERR_NOMEM, "mae_finetuner_save: out of memory");
    }
    for (int i = 0; i < n; i++) {
        double scale, wd;
        size_t count;
        int ndim;
        if (!mae_finetune_group(f, i, &scale, &wd))
            continue;
        const char *name = tensor_info(f, i, &count, &ndim, shapes[i]);
        for (int j = 0; j < 2; j++) {
            snprintf(names[k], sizeof names[k], "optim.%s.%s", j ? "exp_avg_sq" : "exp_avg", name);
            extra[k] = (mae_st_out){ names[k], moment(f, i, j, f->m1, f->m2, f->hm1, f->hm2), ndim, shapes[i] };
            k++;
        }
    }
    int nm = 0;
    snprintf(meta[nm].key, sizeof meta[nm].key, "finetune.step");
    snprintf(meta[nm++].value, sizeof meta[0].value, "%lld", (long long)f->step);
    snprintf(meta[nm].key, sizeof meta[nm].key, "finetune.seed");
    snprintf(meta[nm++].value, sizeof meta[0].value, "%llu", (unsigned long long)f->seed);
#define FT_PUT(name, kind) \
    snprintf(meta[nm].key, sizeof meta[nm].key, "finetune." #name); \
    snprintf(meta[nm++].value, sizeof meta[0].value, "%.17g", (double)f->cfg.name);
    FT_FIELDS(FT_PUT)
#undef FT_PUT
    mae_status s = mae_classifier_write(f->c, path, MAE_DT_F32, extra, k, meta, nm);
    mae_free(extra); mae_free(names); mae_free(shapes);
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "mae_finetuner_save: %s", msg);
    }
    return MAE_OK;
}

/* "finetune.<key>" as a number (all of it), or MAE_ERR_FORMAT naming the key. */
static mae_status meta_number(const mae_st_file *file, const char *key, double *v)
{
    char full[64];
    snprintf(full, sizeof full, "finetune.%s", key);
    const char *s = mae_st_meta_get(file, full);
    if (!s)
        return mae_fail(MAE_ERR_FORMAT, "__metadata__ has no '%s': not a finetuner checkpoint", full);
    if (!mae_meta_parse_number(s, 0, v))
        return mae_fail(MAE_ERR_FORMAT, "__metadata__ '%s' is '%.40s', not a number", full, s);
    return MAE_OK;
}

static int same_arch(const mae_cfg *a, const mae_cfg *b)
{
    return a->D == b->D && a->depth == b->depth && a->H == b->H && a->p == b->p && a->C == b->C &&
           a->gh == b->gh && a->gw == b->gw && a->hidden == b->hidden && a->eps == b->eps;
}

static mae_status load_into(mae_finetuner *f, const mae_st_file *file)
{
    mae_classifier *tmp = NULL;
    mae_finetune_config cfg = f->cfg;
    double v, step;
    mae_status s = meta_number(file, "step", &step);
    if (s == MAE_OK && !(step >= 0 && step < 9e15 && step == floor(step)))
        s = mae_fail(MAE_ERR_FORMAT, "finetune.step %g is not a step count", step);
    const char *seed_text = mae_st_meta_get(file, "finetune.seed");
    char *end = NULL;
    unsigned long long seed = seed_text ? strtoull(seed_text, &end, 10) : 0;
    if (s == MAE_OK && (!seed_text || !*seed_text || *end || seed_text[0] == '-'))
        s = mae_fail(MAE_ERR_FORMAT, "__metadata__ finetune.seed is missing or not a decimal");
#define FT_GET(name, kind) \
    if (s == MAE_OK && (s = meta_number(file, #name, &v)) == MAE_OK) { \
        if ((kind) == 0 && !(v >= -2147483648.0 && v <= 2147483647.0 && v == floor(v))) \
            s = mae_fail(MAE_ERR_FORMAT, "finetune." #name " %g is not an integer", v); \
        else if ((kind) == 0) cfg.name = (int32_t)v; \
        else if ((kind) == 1) cfg.name = v; \
        else cfg.name = (float)v; \
    }
    FT_FIELDS(FT_GET)
#undef FT_GET
    if (s == MAE_OK) {
        cfg.struct_size = sizeof cfg;
        mae_finetune_config checked = f->cfg;
        s = read_config("finetune checkpoint", &cfg, &checked);
        if (s == MAE_OK && (s = mae_classifier_from_st(file, f->c->classes, &tmp)) == MAE_OK &&
            (!same_arch(&tmp->m->cfg, &f->c->m->cfg) || tmp->global_pool != f->c->global_pool))
            s = mae_fail(MAE_ERR_SHAPE, "the checkpoint's architecture or pooling differs from the finetuner's classifier");
        cfg = checked;
    }
    /* the moments into fresh buffers first: on any failure nothing has changed */
    size_t total = f->c->m->lay.total;
    float *m1 = NULL, *m2 = NULL, *h1 = NULL, *h2 = NULL;
    if (s == MAE_OK) {
        m1 = mae_calloc(total, sizeof *m1), m2 = mae_calloc(total, sizeof *m2);
        h1 = mae_calloc(f->head_floats, sizeof *h1), h2 = mae_calloc(f->head_floats, sizeof *h2);
        if (!m1 || !m2 || !h1 || !h2)
            s = mae_fail(MAE_ERR_NOMEM, "out of memory for the AdamW moments");
    }
    for (int i = 0; s == MAE_OK && i < f->c->m->n_tensors + 4; i++) {
        double scale, wd;
        size_t count;
        int ndim;
        int64_t shape[4];
        if (!mae_finetune_group(f, i, &scale, &wd))
            continue;
        const char *name = tensor_info(f, i, &count, &ndim, shape);
        for (int j = 0; s == MAE_OK && j < 2; j++) {
            char key[200];
            snprintf(key, sizeof key, "optim.%s.%s", j ? "exp_avg_sq" : "exp_avg", name);
            const mae_st_entry *e = mae_st_find(file, key);
            if (!e)
                s = mae_fail(MAE_ERR_FORMAT, "tensor '%s' is missing", key);
            else if (e->count != count)
                s = mae_fail(MAE_ERR_SHAPE, "tensor '%s' has %zu values, expected %zu", key, e->count, count);
            else
                s = mae_st_read_f32(file, e, moment(f, i, j, m1, m2, h1, h2), count);
        }
    }
    if (s == MAE_OK && tmp->labels)   /* the only step below that can fail; it changes nothing if it does */
        s = mae_classifier_labels_set(f->c, (const char *const *)tmp->labels);
    if (s == MAE_OK) {
        mae_model *m = f->c->m;
        for (int i = 0; i < m->n_tensors; i++)
            mae_model_tensor_read(tmp->m, &tmp->m->tensors[i], m->data + m->tensors[i].offset);
        memcpy(f->c->head, tmp->head, f->head_floats * sizeof *f->c->head);
        memcpy(f->m1, m1, total * sizeof *m1);
        memcpy(f->m2, m2, total * sizeof *m2);
        memcpy(f->hm1, h1, f->head_floats * sizeof *h1);
        memcpy(f->hm2, h2, f->head_floats * sizeof *h2);
        f->step = (int64_t)step;
        f->micro = 0;
        f->seed = seed;
        f->cfg = cfg;
        mae_model_repack_threads(m, &f->tr.ex);
        mae_classifier_pack_head(f->c);
        mae_finetuner_zero_grad(f);
    }
    mae_free(m1); mae_free(m2); mae_free(h1); mae_free(h2);
    mae_classifier_free(tmp);
    return s;
}

MAE_API mae_status mae_finetuner_load(mae_finetuner *f, const char *path)
{
    if (!f || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_finetuner_load: %s is NULL", !f ? "finetuner" : "path");
    mae_st_file file;
    mae_status s = mae_st_open(path, &file);
    if (s == MAE_OK) {
        s = load_into(f, &file);
        mae_st_close(&file);
    }
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "mae_finetuner_load: '%s': %s", path, msg);
    }
    return MAE_OK;
}
