/* The finetuner checkpoint: what mae_finetuner_save writes and mae_finetuner_load reads (the
 * classifier file plus the AdamW moments and the config in __metadata__). Errors state the
 * problem; the public calls add their name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "finetune_ckpt.h"
#include "classifier_io.h"
#include "config_meta.h"

/* The config's fields as "finetune.<name>" metadata, written with 17 digits (doubles) so that a
 * reload gives the same bits. */
#define FT_FIELDS(X) X(accum_iter, 0) X(blr, 1) X(lr, 1) X(min_lr, 1) X(weight_decay, 1) X(layer_decay, 1) \
    X(beta1, 1) X(beta2, 1) X(eps, 1) X(warmup_epochs, 1) X(epochs, 1) X(iters_per_epoch, 0) X(batch_size, 0) \
    X(world_size, 0) X(smoothing, 2) X(clip_grad, 2) X(drop_path, 2)
#define FT_COUNT(name, kind) + 1
enum { N_FT_FIELDS = 0 FT_FIELDS(FT_COUNT), N_FT_META = N_FT_FIELDS + 3 };

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

mae_status mae_finetune_ckpt_save(const mae_finetuner *f, const char *path)
{
    int n = f->c->m->n_tensors + 4, k = 0;
    mae_st_out *extra = mae_calloc(2 * (size_t)n, sizeof *extra);
    char (*names)[200] = mae_calloc(2 * (size_t)n, sizeof *names);
    int64_t (*shapes)[4] = mae_calloc((size_t)n, sizeof *shapes);
    mae_st_meta meta[N_FT_META];
    if (!extra || !names || !shapes) {
        mae_free(extra); mae_free(names); mae_free(shapes);
        return mae_fail(MAE_ERR_NOMEM, "out of memory");
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
    snprintf(meta[nm].key, sizeof meta[nm].key, "finetune.precision");   /* the tensors are float32 either way */
    snprintf(meta[nm++].value, sizeof meta[0].value, "%s", f->c->m->precision == MAE_PRECISION_BF16 ? "bf16" : "f32");
#define FT_PUT(name, kind) \
    snprintf(meta[nm].key, sizeof meta[nm].key, "finetune." #name); \
    snprintf(meta[nm++].value, sizeof meta[0].value, "%.17g", (double)f->cfg.name);
    FT_FIELDS(FT_PUT)
#undef FT_PUT
    mae_status s = mae_classifier_write(f->c, path, MAE_DT_F32, extra, k, meta, nm);
    mae_free(extra); mae_free(names); mae_free(shapes);
    return s;
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

/* The precision of the run that wrote the checkpoint ("finetune.precision"; files written before
 * it was recorded were float32 runs) must be the finetuner's: its masters and moments would fit
 * either, but the run would not continue as it was (bf16 products, rounded packs). */
static mae_status check_precision(const mae_finetuner *f, const mae_st_file *file)
{
    const char *v = mae_st_meta_get(file, "finetune.precision");
    int p = !v || !strcmp(v, "f32") ? MAE_PRECISION_F32 : !strcmp(v, "bf16") ? MAE_PRECISION_BF16 : -1;
    if (p < 0)
        return mae_fail(MAE_ERR_FORMAT, "__metadata__ finetune.precision is '%.40s', not f32 or bf16", v);
    if (p != f->c->m->precision)
        return mae_fail(MAE_ERR_INVALID_ARG, "the checkpoint is of a %s run, the finetuner's classifier computes in "
                        "%s (make the model %s with mae_model_set_precision before mae_classifier_create)",
                        p ? "bf16" : "f32", p ? "f32" : "bf16", p ? "bf16" : "f32 (load it again)");
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
    mae_status s = check_precision(f, file);
    if (s == MAE_OK)
        s = meta_number(file, "step", &step);
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
        s = mae_finetune_read_config("finetune checkpoint", &cfg, &checked);
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
        for (int i = 0; i < m->n_tensors; i++)   /* not the frozen norm.* of global pooling: the file lacks it */
            if (f->layer[i] >= 0)
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
        mae_finetune_zero(f);
    }
    mae_free(m1); mae_free(m2); mae_free(h1); mae_free(h2);
    mae_classifier_free(tmp);
    return s;
}

mae_status mae_finetune_ckpt_load(mae_finetuner *f, const char *path)
{
    mae_st_file file;
    mae_status s = mae_st_open(path, &file);
    if (s == MAE_OK) {
        s = load_into(f, &file);
        mae_st_close(&file);
    }
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "'%s': %s", path, msg);
    }
    return MAE_OK;
}
