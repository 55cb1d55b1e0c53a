/* The trainer checkpoint: a safetensors file that is also a model file (the model's tensors and
 * config under the names mae_model_load reads), plus the AdamW moments of the trained tensors,
 * the RNG state, the counters and the training config. The format: docs/FORMAT.md. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "trainer_ckpt.h"
#include "../model/trainer.h"
#include "decimal.h"
#include "safetensors.h"
#include "config_meta.h"
#include "checkpoint.h"

/* The RNG state as floats that hold it exactly: 16-bit halves of the 624 words, then the index. */
#define RNG_FLOATS (624 * 2 + 1)
#define NAME_MAX_LEN 96   /* "optim.exp_avg_sq." + a tensor name */

/* Metadata: the model config under the official constructor names (the writer model files use,
 * so mae_model_load reads the file as a model), then the trainer's state: "learned_pos" (whether
 * the encoder's position table trains, as decided when train_pos is -1), its counters, the
 * precision of the run ("trainer.precision": f32, or bf16 for mixed precision; the tensors are
 * float32 either way) and the training config under "trainer.*". */
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

#define MAX_META (6 + MAE_N_CONFIG_FIELDS + MAE_N_TRAIN_CONFIG_FIELDS)

static int build_meta(const mae_trainer *t, mae_st_meta *meta)
{
    int n = mae_meta_put(meta, 0, "format", "libmae-trainer-1");
    n = mae_meta_put_config(meta, n, &t->m->cfg);
    n = add_meta(meta, n, "learned_pos", "%s", t->train_pos ? "true" : "false");
    n = add_meta(meta, n, "trainer.step", "%lld", (long long)t->step);
    n = add_meta_num(meta, n, "trainer.mask_ratio", (double)t->ratio, 9);
    n = add_meta_num(meta, n, "trainer.grad_norm", t->grad_norm, 17);
    n = add_meta(meta, n, "trainer.precision", "%s", t->m->precision == MAE_PRECISION_BF16 ? "bf16" : "f32");
    n = mae_meta_put_fields(meta, n, "trainer.", mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, &t->cfg, 0);
    assert(n <= MAX_META);
    return n;
}

mae_status mae_trainer_ckpt_save(const mae_trainer *t, const char *path)
{
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
        s = mae_fail(MAE_ERR_NOMEM, "out of memory");
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
        return mae_fail(MAE_ERR_FORMAT, "metadata '%s' is missing", key);
    /* a diverged run may have saved a non-finite gradient norm: printf's spellings come back */
    if (!mae_meta_parse_number(s, 1, v))
        return mae_fail(MAE_ERR_FORMAT, "metadata '%s' = '%s' is not a number", key, s);
    return MAE_OK;
}

/* The inner error (its message kept) as MAE_ERR_FORMAT: a value a caller could not set is a
 * malformed file here. */
static mae_status load_error(void)
{
    return MAE_ERR_FORMAT;
}

/* The training config and counters from the metadata, checked like mae_trainer_set_config. */
static mae_status read_meta(const mae_trainer *t, const mae_st_file *f, mae_train_config *tc,
                            int64_t *step, float *ratio, double *grad_norm)
{
    mae_train_config c;
    mae_train_config_defaults(&c);
    /* every key of the config's first version is in every checkpoint; later ones may be missing */
    mae_status s = mae_meta_get_fields(f, "trainer.", mae_train_config_fields, MAE_N_TRAIN_CONFIG_FIELDS, &c,
                                       NULL, MAE_TRAIN_CONFIG_V1_SIZE);
    if (s != MAE_OK || (s = mae_train_config_read("checkpoint", &c, t->max_batch, tc)) != MAE_OK)
        return load_error();
    double st, r, gn;
    if ((s = meta_double(f, "trainer.step", &st)) != MAE_OK ||
        (s = meta_double(f, "trainer.mask_ratio", &r)) != MAE_OK ||
        (s = meta_double(f, "trainer.grad_norm", &gn)) != MAE_OK)
        return s;
    if (!(st >= 0.0 && st <= (double)(INT64_MAX / 2)) || st != floor(st))
        return mae_fail(MAE_ERR_FORMAT, "metadata 'trainer.step' = %g is not an integer in [0, %lld]",
                        st, (long long)(INT64_MAX / 2));
    int L = t->m->cfg.L;
    if (!(r >= 0.0 && r < 1.0) || mae_keep_count(L, (float)r) >= L)
        return mae_fail(MAE_ERR_FORMAT, "trainer.mask_ratio %g is not usable", r);
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
            return mae_fail(MAE_ERR_SHAPE, "tensor '%s' is missing", tn->name);
        int same = e->ndim == tn->ndim && e->count == tn->count;
        for (int d = 0; same && d < tn->ndim; d++)
            same = e->shape[d] == tn->shape[d];
        if (!same)
            return mae_fail(MAE_ERR_SHAPE, "tensor '%s' has another shape than the model's", tn->name);
    }
    mae_cfg fc;
    if (mae_ckpt_file_config(f, &fc) != MAE_OK)
        return load_error();
    int i = mae_fields_first_diff(mae_config_fields, MAE_N_CONFIG_FIELDS, &fc, c, MAE_CF_ARCH,
                                  fc.has_decoder && c->has_decoder ? 0 : MAE_CF_DECODER);
    if (i >= 0)
        return mae_fail(MAE_ERR_SHAPE, "the checkpoint's %s = %.9g differs from the model's %.9g",
                        mae_config_fields[i].name, mae_field_get(&mae_config_fields[i], &fc),
                        mae_field_get(&mae_config_fields[i], c));
    return MAE_OK;
}

/* Reads the RNG state tensor, checking that every value is what save wrote. */
static mae_status read_rng(const mae_st_file *f, float *buf, mae_rng *r)
{
    const mae_st_entry *e = mae_st_find(f, "trainer.rng");
    if (!e || e->count != RNG_FLOATS)
        return mae_fail(MAE_ERR_FORMAT, "tensor 'trainer.rng' [%d] is missing", RNG_FLOATS);
    mae_status s = mae_st_read_f32(f, e, buf, RNG_FLOATS);
    if (s != MAE_OK)
        return s;
    for (int i = 0; i < RNG_FLOATS; i++) {
        float hi = i == RNG_FLOATS - 1 ? 624.0f : 65535.0f;
        if (!(buf[i] >= 0.0f && buf[i] <= hi) || buf[i] != floorf(buf[i]))
            return mae_fail(MAE_ERR_FORMAT, "'trainer.rng' value %d is out of range", i);
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
        return mae_fail(MAE_ERR_FORMAT, "trainer.step %lld is beyond the checkpoint's schedule "
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
        return mae_fail(MAE_ERR_FORMAT, "metadata 'learned_pos' = '%s' is not true or false", v);
    *tp = strcmp(v, "true") == 0;
    return MAE_OK;
}

/* The run's precision must be the trainer's model's (files without the key: float32 runs). */
static mae_status check_precision(const mae_model *m, const mae_st_file *f)
{
    const char *v = mae_st_meta_get(f, "trainer.precision");
    int p = !v || !strcmp(v, "f32") ? MAE_PRECISION_F32 : !strcmp(v, "bf16") ? MAE_PRECISION_BF16 : -1;
    if (p < 0)
        return mae_fail(MAE_ERR_FORMAT, "metadata 'trainer.precision' = '%.40s' is not f32 or bf16", v);
    if (p != m->precision)
        return mae_fail(MAE_ERR_INVALID_ARG, "the checkpoint is of a %s run, the trainer's model computes in %s "
                        "(%s)", p ? "bf16" : "f32", p ? "f32" : "bf16",
                        p ? "mae_model_set_precision(m, MAE_PRECISION_BF16) before mae_trainer_create"
                          : "load the model without making it bf16");
    return MAE_OK;
}

mae_status mae_trainer_ckpt_load(mae_trainer *t, const char *path)
{
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
        s = mae_fail(MAE_ERR_FORMAT, "'%s' is not a libmae trainer checkpoint (format '%s')", path, fmt ? fmt : "");
        goto done;
    }
    if ((s = check_precision(m, &f)) != MAE_OK || (s = check_arch(m, &f)) != MAE_OK || (s = read_meta(t, &f, &tc, &step, &ratio, &gn)) != MAE_OK ||
        (s = check_step(&tc, step)) != MAE_OK)
        goto done;
    p = mae_calloc(total, sizeof *p);   /* zeroed: a slot that is no tensor (qkv_bias 0) stays zero */
    m1 = mae_calloc(total, sizeof *m1);
    m2 = mae_calloc(total, sizeof *m2);
    rbuf = mae_alloc(RNG_FLOATS * sizeof *rbuf);
    if (!p || !m1 || !m2 || !rbuf) {
        s = mae_fail(MAE_ERR_NOMEM, "out of memory");
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
                s = mae_fail(MAE_ERR_SHAPE, "'%s' has %zu values, not %zu", nm[k], e->count, tn->count);
            else if (e)
                s = mae_st_read_f32(&f, e, dst[k], tn->count);
        }
    }
    if (s != MAE_OK || (s = mae_trainer_decide_pos(m, p, tc.train_pos, &tp, &tdp)) != MAE_OK ||
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
    mae_trainer_apply_pos(t, tp, tdp);
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
