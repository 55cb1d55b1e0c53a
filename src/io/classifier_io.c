/* Classifier files: the official fine-tuned names (models_vit.VisionTransformer's state_dict:
 * the encoder, fc_norm.* or norm.*, head.*) or Hugging Face ViTForImageClassification names
 * (vit.*, classifier.*), with the model config, num_classes, global_pool and the class names
 * (id2label.<i>) in __metadata__. The encoder's names and config come from the model loader's
 * code (names.c, mae_ckpt_file_config); this file adds the head and its settings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../model/classifier.h"
#include "safetensors.h"
#include "names.h"
#include "config_meta.h"
#include "checkpoint.h"
#include "classifier_io.h"

static const char *head_name(const mae_names *nm, int bias)
{
    if (nm->hf)
        return bias ? "classifier.bias" : "classifier.weight";
    return bias ? "head.bias" : "head.weight";
}

/* Shapes equal once leading 1s are dropped (the official files keep [1,1,D] for cls_token). */
static int same_shape(int na, const int64_t *a, int nb, const int64_t *b)
{
    while (na > 0 && a[0] == 1) a++, na--;
    while (nb > 0 && b[0] == 1) b++, nb--;
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

/* Reads entry `name` of shape [ndim]dims into dst. */
static mae_status read_exact(const mae_st_file *f, const char *name, int ndim, const int64_t *dims,
                             float *dst, size_t count)
{
    const mae_st_entry *e = mae_st_find(f, name);
    if (!e)
        return mae_fail(MAE_ERR_FORMAT, "tensor '%s' is missing", name);
    if (!same_shape(ndim, dims, e->ndim, e->shape) || e->count != count)
        return mae_fail(MAE_ERR_SHAPE, "tensor '%s' has %zu values in %d dimensions, the config needs %zu",
                        name, e->count, e->ndim, count);
    return mae_st_read_f32(f, e, dst, count);
}

/* One encoder tensor: one entry, or a Hugging Face file's query / key / value stacked into qkv. */
static mae_status fill_tensor(const mae_names *nm, mae_model *m, const mae_tensor *t)
{
    char name[160];
    int parts = mae_names_map(nm, t->name, 0, name, sizeof name);
    if (parts == 0)
        return mae_fail(MAE_ERR_FORMAT, "tensor '%s' has no name in this file", t->name);
    int64_t shape[4];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] /= parts;
    size_t count = t->count / (size_t)parts;
    for (int part = 0; part < parts; part++) {
        mae_names_map(nm, t->name, part, name, sizeof name);
        mae_status s = read_exact(nm->f, name, t->ndim, shape, m->data + t->offset + (size_t)part * count, count);
        if (s != MAE_OK)
            return s;
    }
    return MAE_OK;
}

/* A boolean metadata value: 1, 0, or -1 when absent. */
static mae_status meta_bool(const mae_st_file *f, const char *key, int *v)
{
    const char *s = mae_st_meta_get(f, key);
    *v = -1;
    if (!s)
        return MAE_OK;
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
        *v = 1;
    else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
        *v = 0;
    else
        return mae_fail(MAE_ERR_FORMAT, "__metadata__ '%s' is '%.40s', not true or false", key, s);
    return MAE_OK;
}

/* A decimal in [0, 10^6] spanning all of s, or -1. */
static long small_decimal(const char *s)
{
    long v = 0;
    if (!*s || (s[0] == '0' && s[1]))
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > MAE_CLASSIFIER_MAX_CLASSES)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* id2label.<i> keys: all classes or none. */
static mae_status read_labels(const mae_st_file *f, mae_classifier *c)
{
    int n = 0;
    for (int i = 0; i < f->n_meta; i++)
        if (strncmp(f->meta[i].key, "id2label.", 9) == 0)
            n++;
    if (n == 0)
        return MAE_OK;
    if (n != c->classes)
        return mae_fail(MAE_ERR_FORMAT, "__metadata__ names %d of the head's %d classes (id2label.<i>: all or none; a "
                        "name over %d bytes is not kept)", n, c->classes, MAE_CLASSIFIER_MAX_LABEL);
    const char **names = mae_calloc((size_t)n, sizeof *names);
    if (!names)
        return mae_fail(MAE_ERR_NOMEM, "out of memory for %d labels", n);
    mae_status s = MAE_OK;
    for (int i = 0; i < f->n_meta && s == MAE_OK; i++) {
        if (strncmp(f->meta[i].key, "id2label.", 9) != 0)
            continue;
        long k = small_decimal(f->meta[i].key + 9);
        if (k < 0 || k >= c->classes)
            s = mae_fail(MAE_ERR_FORMAT, "__metadata__ key '%s' is not id2label.<class index below %d>",
                         f->meta[i].key, c->classes);
        else
            names[k] = f->meta[i].value;   /* keys are unique (the parser checks): n distinct in [0, n) */
    }
    if (s == MAE_OK)
        s = mae_classifier_labels_set(c, names);
    mae_free((void *)names);
    return s;
}

/* Refuses a config that needs far more weights than the file holds, before allocating them. */
static mae_status check_size(const mae_st_file *f, const mae_cfg *c)
{
    double held = 0, D = c->D, hid = c->hidden;
    for (int i = 0; i < f->n; i++)
        held += (double)f->t[i].count;
    double needed = (2.0 + c->L) * D + D * c->P + c->depth * (4 * D * D + 2 * hid * D);
    if (needed > 2 * held + 1e6)
        return mae_fail(MAE_ERR_FORMAT, "the config (embed_dim %d, depth %d, %d patches) needs %.0f weights, the file "
                        "holds %.0f values", c->D, c->depth, c->L, needed, held);
    return MAE_OK;
}

mae_status mae_classifier_from_st(const mae_st_file *f, int want, mae_classifier **out)
{
    mae_names nm;
    mae_status s = mae_names_detect(f, &nm);
    if (s != MAE_OK)
        return s;
    const mae_st_entry *hw = mae_st_find(f, head_name(&nm, 0));
    if (!hw)
        return mae_fail(MAE_ERR_FORMAT, "no '%s': not a classifier (a pretrained model: mae_model_load, then "
                        "mae_classifier_create)", head_name(&nm, 0));
    if (hw->ndim != 2 || hw->shape[0] < 1 || hw->shape[0] > MAE_CLASSIFIER_MAX_CLASSES)
        return mae_fail(MAE_ERR_SHAPE, "'%s' must be [num_classes, embed_dim] with num_classes in [1, %d]",
                        hw->name, MAE_CLASSIFIER_MAX_CLASSES);
    int K = (int)hw->shape[0], gp;
    const char *mk = mae_st_meta_get(f, "num_classes");
    if (mk && small_decimal(mk) != K)
        return mae_fail(MAE_ERR_FORMAT, "__metadata__ num_classes '%.40s' disagrees with '%s' (%d rows)", mk, hw->name, K);
    if (want != 0 && want != K)
        return mae_fail(MAE_ERR_SHAPE, "the file's head has %d classes, %d were asked for", K, want);
    if ((s = meta_bool(f, "global_pool", &gp)) != MAE_OK)
        return s;
    if (gp < 0)
        gp = !nm.hf && mae_st_find(f, "fc_norm.weight") != NULL;
    mae_cfg cfg;
    if ((s = mae_ckpt_file_config(f, &cfg)) != MAE_OK)
        return s;
    cfg.has_decoder = 0;   /* a decoder in the file is not used */
    if ((s = mae_cfg_finish(&cfg)) != MAE_OK || (s = check_size(f, &cfg)) != MAE_OK)
        return s;
    if (hw->shape[1] != cfg.D)
        return mae_fail(MAE_ERR_SHAPE, "'%s' is [%d, %lld], the encoder's width is %d", hw->name, K,
                        (long long)hw->shape[1], cfg.D);
    mae_model *m;
    if ((s = mae_model_alloc(&cfg, &m)) != MAE_OK)
        return s;
    for (int i = 0; s == MAE_OK && i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        if (gp && strncmp(t->name, "norm.", 5) == 0)   /* deleted with global pooling; unused */
            continue;
        s = fill_tensor(&nm, m, t);
    }
    if (s == MAE_OK)
        s = mae_model_pack_slim(m);
    if (s != MAE_OK) {
        mae_model_destroy(m);
        return s;
    }
    mae_classifier *c;
    if ((s = mae_classifier_alloc(m, K, gp, &c)) != MAE_OK)
        return s;
    int64_t D = cfg.D, hd[2] = { K, D };
    s = read_exact(f, head_name(&nm, 0), 2, hd, c->head_w, (size_t)K * (size_t)D);
    if (s == MAE_OK)
        s = read_exact(f, head_name(&nm, 1), 1, hd, c->head_b, (size_t)K);
    if (s == MAE_OK && gp)
        s = read_exact(f, "fc_norm.weight", 1, &D, c->fc_norm_w, (size_t)D);
    if (s == MAE_OK && gp)
        s = read_exact(f, "fc_norm.bias", 1, &D, c->fc_norm_b, (size_t)D);
    if (s == MAE_OK)
        s = read_labels(f, c);
    if (s == MAE_OK)
        s = mae_classifier_pack_head(c);
    if (s != MAE_OK) {
        mae_classifier_destroy(c);
        return s;
    }
    *out = c;
    return MAE_OK;
}

mae_status mae_classifier_load_file(const char *path, int num_classes, mae_classifier **out)
{
    mae_st_file f;
    mae_status s = mae_st_open(path, &f);
    if (s == MAE_OK) {
        s = mae_classifier_from_st(&f, num_classes, out);
        mae_st_close(&f);
    }
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "'%s': %s", path, msg);
    }
    return MAE_OK;
}

/* ---- saving --------------------------------------------------------------------------------- */

typedef struct save_src { const mae_classifier *c; const int *model_index; } save_src;

/* Tensor i of the file from the model (an in_place weight, unpacked). */
static void fetch(const void *arg, int i, float *dst)
{
    const save_src *s = arg;
    const mae_model *m = s->c->m;
    mae_model_tensor_read(m, &m->tensors[s->model_index[i]], dst);
}

mae_status mae_classifier_write(const mae_classifier *c, const char *path, int dtype, const mae_st_out *extra,
                                int n_extra, const mae_st_meta *extra_meta, int n_extra_meta)
{
    const mae_model *m = c->m;
    int n_max = m->n_tensors + 4 + n_extra, n = 0, n_meta = 0;
    size_t meta_cap = 4 + (size_t)MAE_N_CONFIG_FIELDS + (size_t)c->classes + (size_t)n_extra_meta;
    mae_st_out *out = mae_calloc((size_t)n_max, sizeof *out);
    int *index = mae_calloc((size_t)n_max, sizeof *index);
    mae_st_meta *meta = mae_calloc(meta_cap, sizeof *meta);
    if (!out || !index || !meta) {
        mae_free(out); mae_free(index); mae_free(meta);
        return mae_fail(MAE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        if (c->global_pool && strncmp(t->name, "norm.", 5) == 0)
            continue;
        index[n] = i;
        out[n++] = (mae_st_out){ t->name, t->in_place ? NULL : m->data + t->offset, t->ndim, t->shape };
    }
    int64_t D = m->cfg.D, hw[2] = { c->classes, D };
    if (c->global_pool) {
        out[n++] = (mae_st_out){ "fc_norm.weight", c->fc_norm_w, 1, &hw[1] };
        out[n++] = (mae_st_out){ "fc_norm.bias", c->fc_norm_b, 1, &hw[1] };
    }
    out[n++] = (mae_st_out){ "head.weight", c->head_w, 2, hw };
    out[n++] = (mae_st_out){ "head.bias", c->head_b, 1, hw };
    for (int i = 0; i < n_extra; i++)
        out[n++] = extra[i];   /* with data: never fetched */
    char num[24];
    snprintf(num, sizeof num, "%d", c->classes);
    n_meta = mae_meta_put(meta, n_meta, "format", "pt");
    n_meta = mae_meta_put_config(meta, n_meta, &m->cfg);
    n_meta = mae_meta_put(meta, n_meta, "num_classes", num);
    n_meta = mae_meta_put(meta, n_meta, "global_pool", c->global_pool ? "true" : "false");
    for (int i = 0; c->labels && i < c->classes; i++) {
        char key[32];
        snprintf(key, sizeof key, "id2label.%d", i);
        n_meta = mae_meta_put(meta, n_meta, key, c->labels[i]);
    }
    for (int i = 0; i < n_extra_meta; i++)
        meta[n_meta++] = extra_meta[i];
    save_src src = { c, index };
    mae_status s = mae_st_write_as(path, out, n, meta, n_meta, dtype, fetch, &src);
    mae_free(out); mae_free(index); mae_free(meta);
    return s;
}
