/* Config fields <-> __metadata__ (config_meta.h). */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "config_meta.h"
#include "decimal.h"

int mae_meta_put_fields(mae_st_meta *meta, int n, const char *prefix, const mae_field *fields, int nf,
                        const void *base, int skip)
{
    for (int i = 0; i < nf; i++) {
        const mae_field *fd = &fields[i];
        if (fd->flags & skip)
            continue;
        double v = mae_field_get(fd, base);
        mae_st_meta *m = &meta[n++];
        snprintf(m->key, sizeof m->key, "%s%s", prefix, fd->name);
        if (fd->kind == MAE_CF_BOOL)
            snprintf(m->value, sizeof m->value, "%s", v != 0 ? "true" : "false");
        else if (fd->kind == MAE_CF_INT)
            snprintf(m->value, sizeof m->value, "%d", (int)v);
        else   /* 9 digits give a float back exactly, 17 a double */
            mae_decimal_format(m->value, sizeof m->value, v, fd->kind == MAE_CF_FLOAT ? 9 : 17);
    }
    return n;
}

int mae_meta_put(mae_st_meta *meta, int n, const char *key, const char *value)
{
    snprintf(meta[n].key, sizeof meta[n].key, "%s", key);
    snprintf(meta[n].value, sizeof meta[n].value, "%s", value);
    return n + 1;
}

int mae_meta_put_config(mae_st_meta *meta, int n, const mae_cfg *c)
{
    return mae_meta_put_fields(meta, n, "", mae_config_fields, MAE_N_CONFIG_FIELDS, c,
                               c->has_decoder ? 0 : MAE_CF_DECODER);
}

int mae_meta_parse_number(const char *s, int allow_nonfinite, double *v)
{
    if (allow_nonfinite && (strcmp(s, "nan") == 0 || strcmp(s, "-nan") == 0)) {
        *v = NAN;
        return 1;
    }
    if (allow_nonfinite && (strcmp(s, "inf") == 0 || strcmp(s, "-inf") == 0)) {
        *v = s[0] == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    return mae_decimal_parse(s, v);
}

/* One value: the field's kind decides what is well-formed. */
static mae_status parse_value(const mae_field *fd, const char *key, const char *v, double *out)
{
    if (fd->kind == MAE_CF_BOOL) {
        int t = strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "1") == 0;
        int fl = strcmp(v, "false") == 0 || strcmp(v, "False") == 0 || strcmp(v, "0") == 0;
        if (!t && !fl)
            return mae_fail(MAE_ERR_FORMAT, "metadata '%s' = '%s' is not true or false", key, v);
        *out = t;
        return MAE_OK;
    }
    double d;
    if (fd->kind == MAE_CF_DOUBLE) {
        if (!mae_meta_parse_number(v, 1, &d))
            return mae_fail(MAE_ERR_FORMAT, "metadata '%s' = '%s' is not a number", key, v);
    } else if (!mae_decimal_parse(v, &d) || !isfinite(d)) {
        return mae_fail(MAE_ERR_FORMAT, "metadata '%s' = '%s' is not a finite decimal number", key, v);
    }
    if (fd->kind == MAE_CF_INT && (d != floor(d) || d < INT_MIN || d > INT_MAX))
        return mae_fail(MAE_ERR_FORMAT, "metadata '%s' = '%s' is not an integer", key, v);
    if (fd->kind == MAE_CF_FLOAT && fabs(d) > FLT_MAX)
        return mae_fail(MAE_ERR_FORMAT, "metadata '%s' = '%s' is out of range", key, v);
    *out = d;
    return MAE_OK;
}

mae_status mae_meta_get_fields(const mae_st_file *f, const char *prefix, const mae_field *fields, int nf,
                               void *base, int *have, size_t required_below)
{
    for (int i = 0; i < nf; i++) {
        const mae_field *fd = &fields[i];
        char key[sizeof ((mae_st_meta *)0)->key];
        snprintf(key, sizeof key, "%s%s", prefix, fd->name);
        const char *v = mae_st_meta_get(f, key);
        if (have)
            have[i] = v != NULL;
        if (!v && fd->pub_off < required_below)
            return mae_fail(MAE_ERR_FORMAT, "metadata '%s' is missing", key);
        if (!v)
            continue;   /* a field newer than the file: its default stands */
        double d = 0.0;
        mae_status s = parse_value(fd, key, v, &d);
        if (s != MAE_OK)
            return s;
        mae_field_set(fd, base, d);
    }
    return MAE_OK;
}
