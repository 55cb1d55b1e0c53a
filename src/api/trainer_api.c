/* Public training calls: argument checks, the trainer's life cycle, settings and the step. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../model/model.h"
#include "../io/json.h"
#include "../io/safetensors.h"
#include "../io/config_meta.h"
#include "../util/sized.h"

/* ---- the training config -------------------------------------------------------------------- */

/* The size of mae_train_config's first version (through train_pos); a caller built against that
 * header passes exactly these bytes, so they may never move. */
#define CONFIG_V1_SIZE (offsetof(mae_train_config, train_pos) + sizeof(int32_t))
_Static_assert(offsetof(mae_train_config, blr) == 8 && offsetof(mae_train_config, iters_per_epoch) == 80 &&
               CONFIG_V1_SIZE == 100, "mae_train_config version 1: the layout callers were built with");

/* The fields, their defaults and ranges: config_fields.h. */
static void config_defaults(mae_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    mae_fields_default(mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, c);
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
    return mae_sized_write("mae_train_config_init", cfg, struct_size, &full, sizeof full, CONFIG_V1_SIZE);
}

static int finite_nonneg(double v) { return v >= 0.0 && isfinite(v); }

/* Reads a caller's config of any size (missing fields keep the defaults) and checks it: each
 * field's range (config_fields.h), then the rules between fields. */
static mae_status read_config(const char *fn, const mae_train_config *in, int max_batch, mae_train_config *c)
{
    config_defaults(c);
    mae_status s = mae_sized_read(fn, in, c, sizeof *c, CONFIG_V1_SIZE);
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
    *tp = !mae_is_sincos_table(base + m->lay.pos, c->D, c->gh, c->gw, tmp);
    *tdp = !mae_is_sincos_table(base + m->lay.dpos, c->Dd, c->gh, c->gw, tmp);
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
    mae_status s = mae_exec_set_scratch(&t->ex, scratch_need(t), n);
    return s == MAE_OK ? s : mae_fail_wrap(s, "trainer");
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
    mae_status ks = mae_model_make_trainable_mixed(m, "mae_trainer_create");   /* AdamW and the backward pass need master weights */
    if (ks != MAE_OK)
        return ks;
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
    const mae_thread_pool *host = mae_thread_pool_default();
    int n = host ? host->nthreads : mae_max_threads();
    if (host) {
        t->host = *host;
        t->ex.host = &t->host;
    }
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
    return mae_sized_write("mae_trainer_get_config (set cfg->struct_size first)", cfg, cfg->struct_size, &t->cfg,
                           sizeof t->cfg, CONFIG_V1_SIZE);
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
    if (s == MAE_OK && p.nthreads != t->ex.nthreads)
        s = set_scratch(t, p.nthreads);
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
        return s;
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
        return s;
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
    mae_model_repack_threads(t->m, &t->ex);
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


/* The RNG state as floats that hold it exactly: 16-bit halves of the 624 words, then the index. */
#define RNG_FLOATS (624 * 2 + 1)
#define NAME_MAX_LEN 96   /* "optim.exp_avg_sq." + a tensor name */

/* Metadata: the model config under the official constructor names (the writer model files use,
 * so mae_model_load reads the file as a model), then the trainer's state: "learned_pos" (whether
 * the encoder's position table trains, as decided when train_pos is -1), its counters and the
 * training config under "trainer.*". */
static int add_meta(mae_st_meta *meta, int n, const char *key, const char *fmt, ...) MAE_PRINTF(4, 5);

static int add_meta(mae_st_meta *meta, int n, const char *key, const char *fmt, ...)
{
    va_list ap;
    snprintf(meta[n].key, sizeof meta[n].key, "%s", key);
    va_start(ap, fmt);
    vsnprintf(meta[n].value, sizeof meta[n].value, fmt, ap);
    va_end(ap);
    return n + 1;
}

/* A number as mae_decimal_format writes it: '.' whatever the locale, digits 9 for a float and
 * 17 for a double, so that meta_double reads back the same value. */
static int add_meta_num(mae_st_meta *meta, int n, const char *key, double v, int digits)
{
    snprintf(meta[n].key, sizeof meta[n].key, "%s", key);
    mae_decimal_format(meta[n].value, sizeof meta[n].value, v, digits);
    return n + 1;
}

#define MAX_META (5 + MAE_N_CONFIG_FIELDS + MAE_N_TRAIN_CONFIG_FIELDS)

static int build_meta(const mae_trainer *t, mae_st_meta *meta)
{
    int n = mae_meta_put(meta, 0, "format", "libmae-trainer-1");
    n = mae_meta_put_config(meta, n, &t->m->cfg);
    n = add_meta(meta, n, "learned_pos", "%s", t->train_pos ? "true" : "false");
    n = add_meta(meta, n, "trainer.step", "%lld", (long long)t->step);
    n = add_meta_num(meta, n, "trainer.mask_ratio", (double)t->ratio, 9);
    n = add_meta_num(meta, n, "trainer.grad_norm", t->grad_norm, 17);
    n = mae_meta_put_fields(meta, n, "trainer.", mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, &t->cfg, 0);
    assert(n <= MAX_META);
    return n;
}

MAE_API mae_status mae_trainer_save(const mae_trainer *t, const char *path)
{
    if (!t || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_save: %s is NULL", !t ? "trainer" : "path");
    const mae_model *m = t->m;
    int nt = m->n_tensors, n = 0;
    /* names: up to two moment tensors per model tensor */
    size_t nbytes = (size_t)nt * 2 * NAME_MAX_LEN;
    mae_st_out *out = mae_calloc((size_t)nt * 3 + 1, sizeof *out);
    int64_t *shapes = mae_calloc((size_t)nt * 3 + 1, 4 * sizeof *shapes);
    char *names = mae_calloc(nbytes, 1);
    mae_st_meta *meta = mae_calloc(MAX_META, sizeof *meta);
    float *rng = mae_alloc(RNG_FLOATS * sizeof *rng);
    mae_status s = MAE_OK;
    if (!out || !shapes || !names || !meta || !rng) {
        s = mae_fail(MAE_ERR_NOMEM, "mae_trainer_save: out of memory");
        goto done;
    }
    for (int i = 0; i < nt; i++) {
        const mae_tensor *tn = &m->tensors[i];
        out[n++] = (mae_st_out){ tn->name, m->data + tn->offset, tn->ndim, tn->shape };
    }
    for (int i = 0, k = 0; i < nt; i++) {
        const mae_tensor *tn = &m->tensors[i];
        if (!(t->tflags[i] & MAE_T_TRAIN))
            continue;
        char *n1 = names + (size_t)k++ * NAME_MAX_LEN, *n2 = names + (size_t)k++ * NAME_MAX_LEN;
        snprintf(n1, NAME_MAX_LEN, "optim.exp_avg.%s", tn->name);
        snprintf(n2, NAME_MAX_LEN, "optim.exp_avg_sq.%s", tn->name);
        out[n++] = (mae_st_out){ n1, t->exp_avg + tn->offset, tn->ndim, tn->shape };
        out[n++] = (mae_st_out){ n2, t->exp_avg_sq + tn->offset, tn->ndim, tn->shape };
    }
    for (int i = 0; i < 624; i++) {
        rng[2 * i] = (float)(t->rng.mt[i] & 0xFFFFu);
        rng[2 * i + 1] = (float)(t->rng.mt[i] >> 16);
    }
    rng[RNG_FLOATS - 1] = (float)t->rng.idx;
    shapes[0] = RNG_FLOATS;
    out[n++] = (mae_st_out){ "trainer.rng", rng, 1, shapes };
    s = mae_st_write(path, out, n, meta, build_meta(t, meta));
done:
    mae_free(out); mae_free(shapes); mae_free(names); mae_free(meta); mae_free(rng);
    return s;
}

/* Metadata readers: 0 and a message when the key is missing or malformed. */
static mae_status meta_double(const mae_st_file *f, const char *key, double *v)
{
    const char *s = mae_st_meta_get(f, key);
    if (!s)
        return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: metadata '%s' is missing", key);
    /* a diverged run may have saved a non-finite gradient norm: printf's spellings come back */
    if (!mae_meta_parse_number(s, 1, v))
        return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: metadata '%s' = '%s' is not a number", key, s);
    return MAE_OK;
}

/* The inner error with the function's name in front, as MAE_ERR_FORMAT: a value a caller could
 * not set is a malformed file here. */
static mae_status load_error(void)
{
    char msg[400];
    snprintf(msg, sizeof msg, "%s", mae_last_error());
    return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: %s", msg);
}

/* The training config and counters from the metadata, checked like mae_trainer_set_config. */
static mae_status read_meta(const mae_trainer *t, const mae_st_file *f, mae_train_config *tc,
                            int64_t *step, float *ratio, double *grad_norm)
{
    mae_train_config c;
    config_defaults(&c);
    /* every key of the config's first version is in every checkpoint; later ones may be missing */
    mae_status s = mae_meta_get_fields(f, "trainer.", mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, &c,
                                       NULL, CONFIG_V1_SIZE);
    if (s != MAE_OK || (s = read_config("checkpoint", &c, t->max_batch, tc)) != MAE_OK)
        return load_error();
    double st, r, gn;
    if ((s = meta_double(f, "trainer.step", &st)) != MAE_OK ||
        (s = meta_double(f, "trainer.mask_ratio", &r)) != MAE_OK ||
        (s = meta_double(f, "trainer.grad_norm", &gn)) != MAE_OK)
        return s;
    if (!(st >= 0.0 && st <= (double)(INT64_MAX / 2)) || st != floor(st))
        return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: metadata 'trainer.step' = %g is not an integer in [0, %lld]",
                        st, (long long)(INT64_MAX / 2));
    int L = t->m->cfg.L;
    if (!(r >= 0.0 && r < 1.0) || mae_keep_count(L, (float)r) >= L)
        return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: trainer.mask_ratio %g is not usable", r);
    *step = (int64_t)st;
    *ratio = (float)r;
    *grad_norm = gn;
    return MAE_OK;
}

/* Every tensor of the model must be in the file with the same shape, and the file's model config
 * (read as mae_model_load reads it) must agree with the model's on every field marked MAE_CF_ARCH
 * in config_fields.h: those the shapes do not show (heads, layer_norm_eps, norm_pix_loss, the
 * run size) included. */
static mae_status check_arch(const mae_model *m, const mae_st_file *f)
{
    const mae_cfg *c = &m->cfg;
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *tn = &m->tensors[i];
        const mae_st_entry *e = mae_st_find(f, tn->name);
        if (!e)
            return mae_fail(MAE_ERR_SHAPE, "mae_trainer_load: tensor '%s' is missing", tn->name);
        int same = e->ndim == tn->ndim && e->count == tn->count;
        for (int d = 0; same && d < tn->ndim; d++)
            same = e->shape[d] == tn->shape[d];
        if (!same)
            return mae_fail(MAE_ERR_SHAPE, "mae_trainer_load: tensor '%s' has another shape than the model's", tn->name);
    }
    mae_cfg fc;
    if (mae_ckpt_file_config(f, &fc) != MAE_OK)
        return load_error();
    int i = mae_fields_first_diff(mae_config_fields, MAE_N_CONFIG_FIELDS, &fc, c, MAE_CF_ARCH,
                                  fc.has_decoder && c->has_decoder ? 0 : MAE_CF_DECODER);
    if (i >= 0)
        return mae_fail(MAE_ERR_SHAPE, "mae_trainer_load: the checkpoint's %s = %.9g differs from the model's %.9g",
                        mae_config_fields[i].name, mae_field_get(&mae_config_fields[i], &fc),
                        mae_field_get(&mae_config_fields[i], c));
    return MAE_OK;
}

/* Reads the RNG state tensor, checking that every value is what save wrote. */
static mae_status read_rng(const mae_st_file *f, float *buf, mae_rng *r)
{
    const mae_st_entry *e = mae_st_find(f, "trainer.rng");
    if (!e || e->count != RNG_FLOATS)
        return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: tensor 'trainer.rng' [%d] is missing", RNG_FLOATS);
    mae_status s = mae_st_read_f32(f, e, buf, RNG_FLOATS);
    if (s != MAE_OK)
        return s;
    for (int i = 0; i < RNG_FLOATS; i++) {
        float hi = i == RNG_FLOATS - 1 ? 624.0f : 65535.0f;
        if (!(buf[i] >= 0.0f && buf[i] <= hi) || buf[i] != floorf(buf[i]))
            return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: 'trainer.rng' value %d is out of range", i);
    }
    for (int i = 0; i < 624; i++)
        r->mt[i] = (uint32_t)buf[2 * i] | (uint32_t)buf[2 * i + 1] << 16;
    r->idx = (int)buf[RNG_FLOATS - 1];
    return MAE_OK;
}

/* The fractional epoch of optimizer step s, exactly as mae_train_lr_at computes it. */
static double schedule_epoch(const mae_train_config *c, int64_t s)
{
    int64_t it = s * c->accum_iter;
    return (double)(it / c->iters_per_epoch) + (double)(it % c->iters_per_epoch) / c->iters_per_epoch;
}

/* A scheduled run (iters_per_epoch > 0) takes the steps whose epoch is below epochs, so a
 * checkpoint of it holds at most that many: the first step at or past the end, searched from
 * ceil(epochs * iters_per_epoch / accum_iter) because rounding can put it one off. A larger step
 * contradicts the file's own schedule (and a caller sizing per-step arrays by the schedule, as
 * mae train does, would overrun them): MAE_ERR_FORMAT, like the other inconsistent metadata. */
static mae_status check_step(const mae_train_config *c, int64_t step)
{
    if (c->iters_per_epoch <= 0)
        return MAE_OK;   /* a constant lr has no end */
    double approx = ceil(c->epochs * c->iters_per_epoch / c->accum_iter);
    if (!(approx * c->accum_iter < 0x1p61))
        return MAE_OK;   /* beyond any step the metadata allows (INT64_MAX / 2) */
    int64_t end = approx > 1.0 ? (int64_t)approx : 1;
    while (end > 1 && schedule_epoch(c, end - 1) >= c->epochs)
        end--;
    while (schedule_epoch(c, end) < c->epochs)
        end++;
    if (step > end)
        return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: trainer.step %lld is beyond the checkpoint's schedule "
                        "(%g epochs of %d iterations, accum_iter %d: %lld steps)", (long long)step, c->epochs,
                        c->iters_per_epoch, c->accum_iter, (long long)end);
    return MAE_OK;
}

/* With train_pos -1 whether the encoder's position table trains was decided from the weights
 * when the run started; "learned_pos" holds that decision, so a resumed run keeps it (and the
 * table's AdamW moments) even where deciding again from the saved weights could differ, e.g. a
 * trained table that has come within the sin-cos test's tolerance. Files without the key keep
 * the decision made from the weights. */
static mae_status saved_pos_decision(const mae_st_file *f, int train_pos, int *tp)
{
    const char *v = mae_st_meta_get(f, "learned_pos");
    if (train_pos >= 0 || !v)
        return MAE_OK;
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
        return mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: metadata 'learned_pos' = '%s' is not true or false", v);
    *tp = strcmp(v, "true") == 0;
    return MAE_OK;
}

MAE_API mae_status mae_trainer_load(mae_trainer *t, const char *path)
{
    if (!t || !path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_trainer_load: %s is NULL", !t ? "trainer" : "path");
    mae_model *m = t->m;
    size_t total = m->lay.total;
    mae_st_file f;
    mae_status s = mae_st_open(path, &f);
    if (s != MAE_OK)
        return s;
    float *p = NULL, *m1 = NULL, *m2 = NULL, *rbuf = NULL;
    mae_train_config tc;
    int64_t step = 0;
    float ratio = 0.0f;
    double gn = 0.0;
    mae_rng rng;
    int tp = 0, tdp = 0, keep;
    const char *fmt = mae_st_meta_get(&f, "format");
    if (!fmt || strcmp(fmt, "libmae-trainer-1") != 0) {
        s = mae_fail(MAE_ERR_FORMAT, "mae_trainer_load: '%s' is not a libmae trainer checkpoint (format '%s')", path, fmt ? fmt : "");
        goto done;
    }
    if ((s = check_arch(m, &f)) != MAE_OK || (s = read_meta(t, &f, &tc, &step, &ratio, &gn)) != MAE_OK ||
        (s = check_step(&tc, step)) != MAE_OK)
        goto done;
    p = mae_calloc(total, sizeof *p);   /* zeroed: a slot that is no tensor (qkv_bias 0) stays zero */
    m1 = mae_calloc(total, sizeof *m1);
    m2 = mae_calloc(total, sizeof *m2);
    rbuf = mae_alloc(RNG_FLOATS * sizeof *rbuf);
    if (!p || !m1 || !m2 || !rbuf) {
        s = mae_fail(MAE_ERR_NOMEM, "mae_trainer_load: out of memory");
        goto done;
    }
    if ((s = read_rng(&f, rbuf, &rng)) != MAE_OK)
        goto done;
    for (int i = 0; i < m->n_tensors && s == MAE_OK; i++) {
        const mae_tensor *tn = &m->tensors[i];
        char nm[2][NAME_MAX_LEN];
        float *dst[2] = { m1 + tn->offset, m2 + tn->offset };
        s = mae_st_read_f32(&f, mae_st_find(&f, tn->name), p + tn->offset, tn->count);
        snprintf(nm[0], sizeof nm[0], "optim.exp_avg.%s", tn->name);
        snprintf(nm[1], sizeof nm[1], "optim.exp_avg_sq.%s", tn->name);
        for (int k = 0; k < 2 && s == MAE_OK; k++) {
            const mae_st_entry *e = mae_st_find(&f, nm[k]);   /* absent: a tensor that was frozen */
            if (e && e->count != tn->count)
                s = mae_fail(MAE_ERR_SHAPE, "mae_trainer_load: '%s' has %zu values, not %zu", nm[k], e->count, tn->count);
            else if (e)
                s = mae_st_read_f32(&f, e, dst[k], tn->count);
        }
    }
    if (s != MAE_OK || (s = decide_pos(m, p, tc.train_pos, &tp, &tdp)) != MAE_OK ||
        (s = saved_pos_decision(&f, tc.train_pos, &tp)) != MAE_OK)
        goto done;
    keep = mae_keep_count(m->cfg.L, ratio);
    if (keep > t->keep_cap && (s = mae_trainer_plan(t, keep)) != MAE_OK)
        goto done;
    assert(keep <= t->keep_cap);   /* the activations hold what the restored ratio keeps */
    /* nothing fails from here on */
    memcpy(m->data, p, total * sizeof *p);
    memcpy(t->exp_avg, m1, total * sizeof *m1);
    memcpy(t->exp_avg_sq, m2, total * sizeof *m2);
    memset(t->grads, 0, total * sizeof *t->grads);
    mae_model_repack(m);
    apply_pos(t, tp, tdp);
    t->cfg = tc;
    t->step = step;
    t->ratio = ratio;
    t->grad_norm = gn;
    t->rng = rng;
done:
    mae_free(p); mae_free(m1); mae_free(m2); mae_free(rbuf);
    mae_st_close(&f);
    return s;
}

