/* The config field lists (config_fields.h) as arrays, the generic per-field operations, and the
 * model config's conversion from and to mae_config and its checks. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "model.h"
#include "config_fields.h"

/* INT and BOOL fields are int in mae_cfg and int32_t in the public structs; the generic code
 * reads both through one int. */
_Static_assert(sizeof(int) == sizeof(int32_t), "config fields: int must be 32 bits");

#define KIND_SIZE(kind) ((kind) == MAE_CF_DOUBLE ? sizeof(double) : (kind) == MAE_CF_FLOAT ? sizeof(float) : sizeof(int))

/* Each field's type in both structs must be what its kind says. */
#define CHECK_CFG(pub, cfg, kind, ...) \
    _Static_assert(sizeof(((mae_config *)0)->pub) == KIND_SIZE(kind) && sizeof(((mae_cfg *)0)->cfg) == KIND_SIZE(kind), \
                   "config field " #pub ": its type does not match its kind");
#define CHECK_TRAIN(pub, kind, ...) \
    _Static_assert(sizeof(((mae_train_config *)0)->pub) == KIND_SIZE(kind), \
                   "training config field " #pub ": its type does not match its kind");
MAE_CONFIG_FIELDS(CHECK_CFG)
MAE_TRAIN_CONFIG_FIELDS(CHECK_TRAIN)
#undef CHECK_CFG
#undef CHECK_TRAIN

#define CFG_ENTRY(pub, cfg, kind, def, lo, hi, flags) \
    { #pub, kind, offsetof(mae_config, pub), offsetof(mae_cfg, cfg), def, lo, hi, flags },
#define TRAIN_ENTRY(pub, kind, def, lo, hi, flags) \
    { #pub, kind, offsetof(mae_train_config, pub), offsetof(mae_train_config, pub), def, lo, hi, flags },
const mae_field mae_config_fields[MAE_N_CONFIG_FIELDS] = { MAE_CONFIG_FIELDS(CFG_ENTRY) };
const mae_field mae_train_config_fields[MAE_N_TRAIN_CONFIG_FIELDS] = { MAE_TRAIN_CONFIG_FIELDS(TRAIN_ENTRY) };
#undef CFG_ENTRY
#undef TRAIN_ENTRY

/* ---- one field ------------------------------------------------------------------------------ */

double mae_field_get(const mae_field *f, const void *base)
{
    const char *p = (const char *)base + f->off;
    int i;
    float x;
    double d;
    switch (f->kind) {
    case MAE_CF_FLOAT: memcpy(&x, p, sizeof x); return x;
    case MAE_CF_DOUBLE: memcpy(&d, p, sizeof d); return d;
    default: memcpy(&i, p, sizeof i); return i;
    }
}

void mae_field_set(const mae_field *f, void *base, double v)
{
    char *p = (char *)base + f->off;
    if (f->kind == MAE_CF_FLOAT) {
        float x = (float)v;
        memcpy(p, &x, sizeof x);
    } else if (f->kind == MAE_CF_DOUBLE) {
        memcpy(p, &v, sizeof v);
    } else {
        assert(v >= INT32_MIN && v <= INT32_MAX);   /* callers range-check first */
        int i = (int)v;
        memcpy(p, &i, sizeof i);
    }
}

int mae_field_in_range(const mae_field *f, double v)
{
    if (f->flags & MAE_CF_ANY)
        return 1;
    int lo_ok = f->flags & MAE_CF_OPEN_LO ? v > f->lo : v >= f->lo;
    int hi_ok = f->flags & MAE_CF_OPEN_HI ? v < f->hi : v <= f->hi;
    return lo_ok && hi_ok;   /* NaN fails both */
}

void mae_fields_default(const mae_field *fields, int n, void *base)
{
    for (int i = 0; i < n; i++)
        mae_field_set(&fields[i], base, fields[i].def);
}

mae_status mae_fields_check(const char *fn, const mae_field *fields, int n, const void *base, int skip)
{
    for (int i = 0; i < n; i++) {
        const mae_field *f = &fields[i];
        if (f->flags & skip)
            continue;
        double v = mae_field_get(f, base);
        if (f->kind == MAE_CF_BOOL || mae_field_in_range(f, v))
            continue;   /* a bool is any int: nonzero is true */
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %s = %.9g is out of range %c%.10g, %.10g%c", fn, f->name, v,
                        f->flags & MAE_CF_OPEN_LO ? '(' : '[', f->lo, f->hi, f->flags & MAE_CF_OPEN_HI ? ')' : ']');
    }
    return MAE_OK;
}

int mae_fields_first_diff(const mae_field *fields, int n, const void *a, const void *b, int flags, int skip)
{
    for (int i = 0; i < n; i++)
        if ((fields[i].flags & flags) && !(fields[i].flags & skip) &&
            mae_field_get(&fields[i], a) != mae_field_get(&fields[i], b))
            return i;
    return -1;
}

/* ---- the model config ----------------------------------------------------------------------- */

mae_status mae_cfg_finish(mae_cfg *c)
{
    mae_status s = mae_fields_check("config", mae_config_fields, MAE_N_CONFIG_FIELDS, c,
                                    c->has_decoder ? 0 : MAE_CF_DECODER);
    if (s != MAE_OK)
        return s;
    if (c->ih == 0 && c->iw == 0)
        c->ih = c->iw = c->img;
    if (c->ih <= 0 || c->iw <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "config: image size %dx%d is out of range [1, %d]", c->ih, c->iw, MAE_CFG_LIMIT);
    if (c->ih % c->p || c->iw % c->p)
        return mae_fail(MAE_ERR_INVALID_ARG, "config: patch_size %d does not divide the image size %dx%d", c->p, c->ih, c->iw);
    if (c->D % c->H)
        return mae_fail(MAE_ERR_INVALID_ARG, "config: num_heads %d does not divide embed_dim %d", c->H, c->D);
    if (c->has_decoder && c->Dd % c->dH)
        return mae_fail(MAE_ERR_INVALID_ARG, "config: decoder_num_heads %d does not divide decoder_embed_dim %d", c->dH, c->Dd);
    c->hidden = (int)((double)c->D * c->mlp_ratio);
    c->dhidden = !c->has_decoder ? 0 : c->dmlp > 0 ? c->dmlp : (int)((double)c->Dd * c->mlp_ratio);
    if (c->hidden <= 0 || (c->has_decoder && c->dhidden <= 0))
        return mae_fail(MAE_ERR_INVALID_ARG, "config: mlp_ratio %g gives an empty MLP", (double)c->mlp_ratio);
    /* the derived widths obey the same bound as every given dimension (MAE_CFG_LIMIT), so that a
     * config.json written from any model reads back (its intermediate_size is range-checked) */
    if (c->hidden > MAE_CFG_LIMIT || c->dhidden > MAE_CFG_LIMIT)
        return mae_fail(MAE_ERR_INVALID_ARG, "config: the MLP width %d (mlp_ratio %g) is above %d",
                        c->hidden > MAE_CFG_LIMIT ? c->hidden : c->dhidden, (double)c->mlp_ratio, MAE_CFG_LIMIT);
    c->gh = c->ih / c->p;
    c->gw = c->iw / c->p;
    c->L = c->gh * c->gw;
    c->P = c->p * c->p * c->C;
    if ((size_t)c->L > (size_t)MAE_CFG_LIMIT || (size_t)c->P > (size_t)MAE_CFG_LIMIT * 16)
        return mae_fail(MAE_ERR_INVALID_ARG, "config: %d patches of %d values is too large", c->L, c->P);
    for (int i = 0; i < MAE_N_CONFIG_FIELDS; i++)   /* a bool is stored as 0 or 1 */
        if (mae_config_fields[i].kind == MAE_CF_BOOL)
            mae_field_set(&mae_config_fields[i], c, mae_field_get(&mae_config_fields[i], c) != 0);
    return MAE_OK;
}

int mae_cfg_preset(mae_cfg *c, const char *name)
{
    mae_cfg_defaults(c);   /* the "base" preset (config_fields.h); the others override it */
    if (strcmp(name, "base") == 0) {
        /* the defaults */
    } else if (strcmp(name, "large") == 0) {
        c->D = 1024; c->depth = 24; c->H = 16;
    } else if (strcmp(name, "huge") == 0) {
        c->p = 14; c->D = 1280; c->depth = 32; c->H = 16;
    } else if (strcmp(name, "tiny") == 0) {
        c->img = 32; c->p = 8; c->D = 64; c->depth = 2; c->H = 4;
        c->Dd = 32; c->ddepth = 1; c->dH = 4;
    } else {
        return 0;
    }
    return 1;
}

void mae_cfg_defaults(mae_cfg *c)
{
    memset(c, 0, sizeof *c);
    mae_fields_default(mae_config_fields, MAE_N_CONFIG_FIELDS, c);
    c->has_decoder = 1;
}

void mae_cfg_from_public(mae_cfg *d, const mae_config *s)
{
    memset(d, 0, sizeof *d);
#define FROM(pub, cfg, ...) d->cfg = s->pub;
    MAE_CONFIG_FIELDS(FROM)
#undef FROM
    d->has_decoder = 1;
}

void mae_cfg_to_public(mae_config *d, const mae_cfg *s, size_t struct_size)
{
    mae_config full;
    memset(&full, 0, sizeof full);
    full.struct_size = (uint32_t)struct_size;
    /* a model without a decoder reports 0 for the decoder's settings */
#define TO(pub, cfg, kind, def, lo, hi, flags) full.pub = ((flags) & MAE_CF_DECODER) && !s->has_decoder ? 0 : s->cfg;
    MAE_CONFIG_FIELDS(TO)
#undef TO
    memcpy(d, &full, struct_size < sizeof full ? struct_size : sizeof full);
}
