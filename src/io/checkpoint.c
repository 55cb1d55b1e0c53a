/* What mae_model_load / mae_model_save do: models as safetensors files with official MAE or Hugging Face
 * ViTMAE tensor names. The config comes from __metadata__ and a Hugging Face config.json where
 * they give it (they must agree) and is inferred from the tensor shapes and the presets where
 * they do not (docs/FORMAT.md). */
#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "checkpoint.h"
#include "names.h"
#include "config_meta.h"
#include "hf_config.h"

/* ---- the config from __metadata__ ----------------------------------------------------------- */

/* Reads every key that is present into c (keys and kinds: config_fields.h); have[k] says which
 * were. */
static mae_status read_meta(const mae_st_file *f, mae_cfg *c, int have[MAE_N_CONFIG_FIELDS])
{
    return mae_meta_get_fields(f, "", mae_config_fields, MAE_N_CONFIG_FIELDS, c, have, 0);
}

/* ---- the config from the shapes ------------------------------------------------------------- */

int mae_ckpt_default_heads(int dim, int decoder)
{
    if (decoder && dim == 512)
        return 16;
    if (!decoder && dim == 768)
        return 12;
    if (!decoder && (dim == 1024 || dim == 1280))
        return 16;
    return dim > 0 && dim % 64 == 0 ? dim / 64 : 0;
}

static int to_int(int64_t v)
{
    return v > INT_MAX ? INT_MAX : (int)v;
}

/* The shape without leading 1s (the official files keep [1, 1+L, D] for pos_embed). */
static int squeeze(int ndim, const int64_t *shape, int64_t *out)
{
    int first = 0;
    while (first < ndim && shape[first] == 1)
        first++;
    for (int i = first; i < ndim; i++)
        out[i - first] = shape[i];
    return ndim - first;
}

static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

/* A tensor the inference needs: its entry, squeezed to want_ndim dimensions, or a message. */
static mae_status need(const mae_names *nm, const char *official, int want_ndim, int64_t *dims)
{
    char name[160];
    mae_names_map(nm, official, 0, name, sizeof name);
    const mae_st_entry *e = mae_st_find(nm->f, name);
    if (!e)
        return mae_fail(MAE_ERR_FORMAT, "tensor '%s' is missing", name);
    if (squeeze(e->ndim, e->shape, dims) != want_ndim)
        return mae_fail(MAE_ERR_SHAPE, "tensor '%s' has %d dimensions, expected %d", name, e->ndim, want_ndim);
    return MAE_OK;
}

static int64_t isqrt(int64_t n)
{
    int64_t r = (int64_t)sqrt((double)n);
    while (r > 0 && r * r > n)
        r--;
    while ((r + 1) * (r + 1) <= n)
        r++;
    return r;
}

/* Image side from the position table's patch count, when the metadata does not say. */
static mae_status infer_image(const mae_names *nm, mae_cfg *c)
{
    int64_t d[MAE_ST_MAX_DIMS];
    mae_status s = need(nm, "pos_embed", 2, d);
    if (s != MAE_OK)
        return s;
    int64_t L = d[0] - 1, g = L > 0 && L < ((int64_t)1 << 40) ? isqrt(L) : 0;
    if (g == 0 || g * g != L)
        return mae_fail(MAE_ERR_FORMAT, "pos_embed holds %lld patch rows, not a square grid: give img_size (or img_height "
                        "and img_width) in __metadata__", (long long)L);
    c->img = to_int(g * c->p);
    return MAE_OK;
}

/* The float ratio whose product with the width the config truncates back to exactly hidden. */
static void ratio_for(mae_cfg *c, int hidden)
{
    if (c->D <= 0 || hidden <= 0)
        return;   /* the config check reports it */
    float r = (float)hidden / (float)c->D;
    while ((int)((double)c->D * r) < hidden)
        r = nextafterf(r, INFINITY);
    c->mlp_ratio = r;
}

/* MLP width from the first encoder block's fc1 weight. */
static mae_status infer_mlp_ratio(const mae_names *nm, mae_cfg *c)
{
    int64_t d[MAE_ST_MAX_DIMS];
    mae_status s = need(nm, "blocks.0.mlp.fc1.weight", 2, d);
    if (s == MAE_OK)
        ratio_for(c, to_int(d[0]));
    return s;
}

/* The decoder's MLP width, when the first decoder block's fc1 weight says it is not the one the
 * ratio gives (Hugging Face's decoder_intermediate_size). */
static void infer_decoder_mlp(const mae_names *nm, mae_cfg *c)
{
    const mae_st_entry *e = mae_names_find(nm, "decoder_blocks.0.mlp.fc1.weight", 0);
    int64_t d[MAE_ST_MAX_DIMS];
    if (e && squeeze(e->ndim, e->shape, d) == 2 && d[0] != (int64_t)((double)c->Dd * c->mlp_ratio))
        c->dmlp = to_int(d[0] > MAE_CFG_LIMIT ? MAE_CFG_LIMIT + 1 : d[0]);   /* too wide: the range check says so */
}

static mae_status infer_heads(int dim, int decoder, int *heads)
{
    *heads = mae_ckpt_default_heads(dim, decoder);
    if (*heads == 0)
        return mae_fail(MAE_ERR_FORMAT, "cannot infer %s for width %d (no preset, 64 does not divide it): give it in __metadata__",
                        decoder ? "decoder_num_heads" : "num_heads", dim);
    return MAE_OK;
}

/* Every field the metadata and config.json left open, from the shapes (have[] says which they
 * gave; hidden: config.json's intermediate_size, 0 if none). */
static mae_status infer_config(const mae_names *nm, const int have[MAE_N_CONFIG_FIELDS], int hidden, mae_cfg *c)
{
#define HAVE(key) have[MAE_CFI_##key]
    int64_t d[MAE_ST_MAX_DIMS];
    mae_status s = need(nm, "patch_embed.proj.weight", 4, d);
    if (s != MAE_OK)
        return s;
    if (d[2] != d[3])
        return mae_fail(MAE_ERR_FORMAT, "the patch embedding weight is not square: %lld x %lld", (long long)d[2], (long long)d[3]);
    if (!HAVE(D)) c->D = to_int(d[0]);
    if (!HAVE(C)) c->C = to_int(d[1]);
    if (!HAVE(p)) c->p = to_int(d[2]);
    if (!HAVE(img) && HAVE(ih) && HAVE(iw))
        c->img = c->ih;
    else if (!HAVE(img) && (s = infer_image(nm, c)) != MAE_OK)
        return s;
    if (!HAVE(depth)) c->depth = mae_names_count_blocks(nm, 0);
    if (!HAVE(H) && (s = infer_heads(c->D, 0, &c->H)) != MAE_OK)
        return s;
    c->has_decoder = mae_names_has_decoder(nm);
    if (c->has_decoder) {
        if (!HAVE(Dd)) {
            if ((s = need(nm, "decoder_embed.weight", 2, d)) != MAE_OK)
                return s;
            c->Dd = to_int(d[0]);
        }
        if (!HAVE(ddepth)) c->ddepth = mae_names_count_blocks(nm, 1);
        if (!HAVE(dH) && (s = infer_heads(c->Dd, 1, &c->dH)) != MAE_OK)
            return s;
    }
    if (hidden > 0 && HAVE(mlp_ratio) && (int)((double)c->D * c->mlp_ratio) != hidden)
        return mae_fail(MAE_ERR_FORMAT, "config.json: intermediate_size = %d contradicts the file's __metadata__ mlp_ratio = "
                        "%.9g (MLP width %d)", hidden, (double)c->mlp_ratio, (int)((double)c->D * c->mlp_ratio));
    if (hidden > 0 && !HAVE(mlp_ratio))
        ratio_for(c, hidden);
    else if (!HAVE(mlp_ratio) && c->depth > 0 && (s = infer_mlp_ratio(nm, c)) != MAE_OK)
        return s;
    if (!HAVE(qkv_bias))   /* files without the key: the bias is there or it is not */
        c->qkv_bias = c->depth <= 0 || mae_names_find(nm, "blocks.0.attn.qkv.bias", 0) != NULL;
    if (c->has_decoder && !HAVE(dmlp))
        infer_decoder_mlp(nm, c);
    return MAE_OK;
#undef HAVE
}

/* config.json's settings over the metadata's: where both give one, they must agree. */
static mae_status merge_hf(const mae_hf_config *hf, mae_cfg *c, int have[MAE_N_CONFIG_FIELDS])
{
    for (int i = 0; i < MAE_N_CONFIG_FIELDS; i++) {
        const mae_field *fd = &mae_config_fields[i];
        if (!hf->have[i] || i == MAE_CFI_dmlp)   /* a width, not the field: merge_decoder_mlp */
            continue;
        double a = mae_field_get(fd, &hf->c), b = mae_field_get(fd, c);
        if (have[i] && a != b)
            return mae_fail(MAE_ERR_FORMAT, "config.json: %s = %.9g contradicts the file's __metadata__ %s = %.9g",
                            hf->key[i], a, fd->name, b);
        mae_field_set(fd, c, a);
        have[i] = 1;
    }
    return MAE_OK;
}

/* decoder_intermediate_size is the decoder's MLP width, where the field decoder_mlp_hidden may
 * be 0 (= what mlp_ratio gives): the widths are compared, and a width equal to the ratio's is
 * kept as 0, as mae_model_create's configs have it. */
static mae_status merge_decoder_mlp(const mae_hf_config *hf, int meta_had, mae_cfg *c)
{
    if (!hf->have[MAE_CFI_dmlp] || !c->has_decoder)
        return MAE_OK;
    int given = hf->c.dmlp, from_ratio = (int)((double)c->Dd * c->mlp_ratio);
    int width = c->dmlp > 0 ? c->dmlp : from_ratio;
    if (meta_had && given != width)
        return mae_fail(MAE_ERR_FORMAT, "config.json: decoder_intermediate_size = %d contradicts the file's __metadata__ "
                        "(decoder MLP width %d)", given, width);
    c->dmlp = given == from_ratio ? 0 : given;
    return MAE_OK;
}

/* One size config.json gives against the tensor that shows it: MAE_ERR_SHAPE naming both. */
static mae_status agree(const mae_names *nm, const char *key, int64_t value, const char *official, int dim)
{
    char name[160], shape[96];
    int64_t d[MAE_ST_MAX_DIMS];
    mae_names_map(nm, official, 0, name, sizeof name);
    const mae_st_entry *e = mae_st_find(nm->f, name);
    if (!e || squeeze(e->ndim, e->shape, d) <= dim || d[dim] == value)
        return MAE_OK;   /* a missing or malformed tensor is reported when it is read */
    shape_text(shape, sizeof shape, e->ndim, e->shape);
    return mae_fail(MAE_ERR_SHAPE, "config.json: %s = %lld, but tensor '%s' has shape %s", key, (long long)value, name, shape);
}

static mae_status agree_depth(const mae_names *nm, const char *key, int value, int decoder)
{
    int n = mae_names_count_blocks(nm, decoder);
    if (n == value)
        return MAE_OK;
    return mae_fail(MAE_ERR_SHAPE, "config.json: %s = %d, but the file's %s layers are %d", key, value,
                    decoder ? "decoder" : "encoder", n);
}

/* Every setting config.json gives that the tensors also show must be what they show. */
static mae_status check_hf_shapes(const mae_names *nm, const mae_hf_config *hf, const mae_cfg *c)
{
#define GIVEN(f) hf->have[MAE_CFI_##f]
    mae_status s = MAE_OK;
    if (s == MAE_OK && GIVEN(D)) s = agree(nm, "hidden_size", c->D, "patch_embed.proj.weight", 0);
    if (s == MAE_OK && GIVEN(C)) s = agree(nm, "num_channels", c->C, "patch_embed.proj.weight", 1);
    if (s == MAE_OK && GIVEN(p)) s = agree(nm, "patch_size", c->p, "patch_embed.proj.weight", 2);
    if (s == MAE_OK && GIVEN(img) && c->p > 0 && c->img % c->p == 0)
        s = agree(nm, "image_size (position rows 1 + (image_size / patch_size)^2)",
                  1 + (int64_t)(c->img / c->p) * (c->img / c->p), "pos_embed", 0);
    if (s == MAE_OK && GIVEN(depth)) s = agree_depth(nm, "num_hidden_layers", c->depth, 0);
    if (s == MAE_OK && hf->intermediate) s = agree(nm, "intermediate_size", hf->intermediate, "blocks.0.mlp.fc1.weight", 0);
    if (s == MAE_OK && GIVEN(qkv_bias) && c->depth > 0) {
        char name[160];
        mae_names_map(nm, "blocks.0.attn.qkv.bias", 0, name, sizeof name);
        if ((mae_st_find(nm->f, name) != NULL) != (c->qkv_bias != 0))
            s = mae_fail(MAE_ERR_SHAPE, "config.json: qkv_bias = %s, but the file %s tensor '%s'", c->qkv_bias ? "true" : "false",
                         c->qkv_bias ? "lacks" : "has", name);
    }
    if (!c->has_decoder)
        return s;
    if (s == MAE_OK && GIVEN(Dd)) s = agree(nm, "decoder_hidden_size", c->Dd, "decoder_embed.weight", 0);
    if (s == MAE_OK && GIVEN(ddepth)) s = agree_depth(nm, "decoder_num_hidden_layers", c->ddepth, 1);
    if (s == MAE_OK && GIVEN(dmlp))
        s = agree(nm, "decoder_intermediate_size", hf->c.dmlp, "decoder_blocks.0.mlp.fc1.weight", 0);
    return s;
#undef GIVEN
}

/* The whole config: defaults, metadata, config.json (hf, may be NULL), inference, then the
 * library's own checks. */
static mae_status file_config(const mae_names *nm, const mae_hf_config *hf, mae_cfg *c)
{
    int have[MAE_N_CONFIG_FIELDS];
    mae_cfg_defaults(c);
    c->eps = nm->hf ? 1e-12f : 1e-6f;   /* Hugging Face configs vs the official presets */
    mae_status s = read_meta(nm->f, c, have);
    int meta_dmlp = have[MAE_CFI_dmlp];
    if (s == MAE_OK && hf)
        s = merge_hf(hf, c, have);
    if (s == MAE_OK)
        s = infer_config(nm, have, hf ? hf->intermediate : 0, c);
    if (s == MAE_OK && hf)
        s = merge_decoder_mlp(hf, meta_dmlp, c);
    if (s == MAE_OK && hf)
        s = check_hf_shapes(nm, hf, c);
    if (s != MAE_OK)
        return s;
    for (int i = 0; i < MAE_N_CONFIG_FIELDS; i++)   /* no decoder: its settings are what the file says, else 0 */
        if (!c->has_decoder && (mae_config_fields[i].flags & MAE_CF_DECODER) && !have[i])
            mae_field_set(&mae_config_fields[i], c, 0);
    if ((s = mae_cfg_finish(c)) != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(MAE_ERR_FORMAT, "%s (from the file's metadata and shapes)", msg);
    }
    return MAE_OK;
}

/* ---- the weights ---------------------------------------------------------------------------- */

/* Parameters of a config, in floats (mirrors the layout of params.c), to refuse a config that
 * asks for far more weights than the file can hold before anything is allocated for it. */
static double block_floats(double C, double hidden)
{
    return 4 * C + 3 * C * C + 3 * C + C * C + C + 2 * hidden * C + hidden + C;
}

static double config_floats(const mae_cfg *c)
{
    double D = c->D, T = 1.0 + c->L;
    double n = D + T * D + D * c->P + D + c->depth * block_floats(D, c->hidden) + 2 * D;
    if (c->has_decoder) {
        double Dd = c->Dd;
        n += Dd + T * Dd + Dd * D + Dd + c->ddepth * block_floats(Dd, c->dhidden) + 2 * Dd + c->P * Dd + c->P;
    }
    return n;
}

static mae_status check_size(const mae_st_file *f, const mae_cfg *c)
{
    double held = 0, needed = config_floats(c);
    for (int i = 0; i < f->n; i++)
        held += (double)f->t[i].count;
    if (needed > 2 * held + 1e6)
        return mae_fail(MAE_ERR_FORMAT, "the config (embed_dim %d, depth %d, %d patches) needs %.0f weights, the file holds "
                        "%.0f values: tensors are missing or the metadata disagrees with them", c->D, c->depth, c->L, needed, held);
    return MAE_OK;
}

/* One tensor of the model from the file: one entry, or three (q, k, v) stacked into qkv. A weight
 * held packed (in_place: a bf16 model) is read whole into tmp, then packed into its storage. */
static mae_status fill_tensor(const mae_names *nm, mae_model *m, const mae_tensor *t, float *tmp)
{
    float *dst = t->in_place ? tmp : m->data + t->offset;
    char name[160], want[96], found[96];
    int parts = mae_names_map(nm, t->name, 0, name, sizeof name);
    if (parts == 0)
        return mae_fail(MAE_ERR_FORMAT, "tensor '%s' has no name in this file", t->name);
    int64_t shape[4], sq_want[4], sq_found[MAE_ST_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] /= parts;
    size_t count = t->count / (size_t)parts;
    for (int part = 0; part < parts; part++) {
        mae_names_map(nm, t->name, part, name, sizeof name);
        const mae_st_entry *e = mae_st_find(nm->f, name);
        if (!e)
            return mae_fail(MAE_ERR_FORMAT, "tensor '%s' is missing%s%s%s", name, nm->hf ? " (official name '" : "",
                            nm->hf ? t->name : "", nm->hf ? "')" : "");
        int nw = squeeze(t->ndim, shape, sq_want), nf = squeeze(e->ndim, e->shape, sq_found);
        if (nw != nf || memcmp(sq_want, sq_found, (size_t)nw * sizeof *sq_want) != 0) {
            shape_text(want, sizeof want, t->ndim, shape);
            shape_text(found, sizeof found, e->ndim, e->shape);
            return mae_fail(MAE_ERR_SHAPE, "tensor '%s': the config needs shape %s, the file has %s", name, want, found);
        }
        mae_status s = mae_st_read_f32(nm->f, e, dst + (size_t)part * count, count);
        if (s != MAE_OK)
            return s;
    }
    if (t->in_place)
        mae_model_tensor_write(m, t, tmp);
    return MAE_OK;
}

/* The model's empty storage: float32 (packed after the tensors are read), or bf16 (each weight
 * packed as it is read, through *tmp: room for the widest of them as float32). */
static mae_status alloc_model(const mae_cfg *c, int precision, mae_model **m, float **tmp)
{
    *tmp = NULL;
    if (precision != MAE_PRECISION_BF16)
        return mae_model_alloc(c, m);
    const mae_kernels *view;
    mae_status s = mae_model_bf16_table(mae_kernels_active(), &view);
    if (s == MAE_OK)
        s = mae_model_alloc_bf16(c, view, m);
    if (s != MAE_OK)
        return s;
    size_t widest = 0;
    for (int i = 0; i < (*m)->n_tensors; i++)
        if ((*m)->tensors[i].in_place && (*m)->tensors[i].count > widest)
            widest = (*m)->tensors[i].count;
    if (widest && !(*tmp = mae_alloc(widest * sizeof **tmp))) {
        mae_model_destroy(*m);
        *m = NULL;
        return mae_fail(MAE_ERR_NOMEM, "model: cannot allocate %zu bytes to read a weight", widest * sizeof **tmp);
    }
    return MAE_OK;
}

mae_status mae_ckpt_file_config(const mae_st_file *f, mae_cfg *c)
{
    mae_names nm;
    mae_status s = mae_names_detect(f, &nm);
    return s == MAE_OK ? file_config(&nm, NULL, c) : s;
}

/* A load from a path that failed before the checksum was compared (mae_st_parse compares it
 * first): when the checksum does not match either, the damage is the better explanation (a
 * flipped bit in the header gives a shape error first). A cancelled load reads no further. */
static mae_status explain_failure(const mae_st_file *f, mae_status s)
{
    if (s == MAE_ERR_ABORTED || !f->has_crc || !f->stream)
        return s;
    char msg[400];
    snprintf(msg, sizeof msg, "%s", mae_last_error());
    if (mae_st_verify(f) == MAE_ERR_FORMAT)
        return MAE_ERR_FORMAT;   /* its message: checksum mismatch */
    return mae_fail(s, "%s", msg);
}

mae_status mae_model_from_st(const mae_st_file *f, mae_model **out)
{
    return mae_model_from_st_hf(f, NULL, out);
}

mae_status mae_model_from_st_hf(const mae_st_file *f, const mae_hf_config *hf, mae_model **out)
{
    return mae_model_from_st_how(f, hf, NULL, out);
}

static int progress_tick(const mae_load_how *how, int done, int total)
{
    if (how && how->progress)
        return how->progress(how->user, done, total);
    return mae_load_progress_tick(done, total);
}

mae_status mae_model_from_st_how(const mae_st_file *f, const mae_hf_config *hf, const mae_load_how *how,
                                 mae_model **out)
{
    if (!f || !out)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_model_from_st: %s is NULL", !f ? "f" : "out");
    mae_names nm;
    mae_cfg c;
    mae_model *m = NULL;
    float *tmp = NULL;
    int bf16 = how && how->precision == MAE_PRECISION_BF16;
    mae_status s = mae_names_detect(f, &nm);
    if (s == MAE_OK)
        s = file_config(&nm, hf, &c);
    if (s == MAE_OK)
        s = check_size(f, &c);
    if (s == MAE_OK)
        s = alloc_model(&c, bf16 ? MAE_PRECISION_BF16 : MAE_PRECISION_F32, &m, &tmp);
    for (int i = 0; s == MAE_OK && i < m->n_tensors; i++) {
        s = fill_tensor(&nm, m, &m->tensors[i], tmp);
        if (s == MAE_OK && progress_tick(how, i + 1, m->n_tensors))
            s = mae_fail(MAE_ERR_ABORTED, "load cancelled by the progress callback after tensor %d of %d", i + 1, m->n_tensors);
    }
    mae_free(tmp);
    if (s == MAE_OK)   /* a file read from its path: the checksum covers what was just read */
        s = mae_st_verify(f);
    else
        s = explain_failure(f, s);
    if (s == MAE_OK && !bf16)   /* a bf16 model was packed as it was read */
        s = mae_model_pack_slim(m);
    if (s != MAE_OK) {
        mae_model_destroy(m);
        return s;
    }
    *out = m;
    return MAE_OK;
}

mae_status mae_model_load_file(const char *path, mae_model **out)
{
    return mae_model_load_file_how(path, NULL, out);
}

mae_status mae_model_load_file_how(const char *path, const mae_load_how *how, mae_model **out)
{
    mae_st_file f;
    mae_hf_config hf;
    int have_hf = 0;
    mae_status s = mae_hf_open(path, &f, &hf, &have_hf);   /* a file, a directory, shards; config.json */
    if (s != MAE_OK)
        return s;
    s = mae_model_from_st_how(&f, have_hf ? &hf : NULL, how, out);
    mae_st_close(&f);
    if (s != MAE_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        return mae_fail(s, "'%s': %s", path, msg);
    }
    return MAE_OK;
}

/* ---- saving --------------------------------------------------------------------------------- */

enum { MAX_META = 1 + MAE_N_CONFIG_FIELDS };

/* A weight held only packed (data NULL) is unpacked by the writer one at a time. */
mae_status mae_model_write(const mae_model *m, const char *path, int dtype)
{
    mae_st_meta meta[MAX_META];
    mae_st_out *out = mae_alloc((size_t)m->n_tensors * sizeof *out);
    if (!out)
        return mae_fail(MAE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        out[i] = (mae_st_out){ t->name, t->in_place ? NULL : m->data + t->offset, t->ndim, t->shape };
    }
    int n_meta = mae_meta_put_config(meta, mae_meta_put(meta, 0, "format", "pt"), &m->cfg);
    assert(n_meta <= MAX_META);
    mae_status s = mae_st_write_as(path, out, m->n_tensors, meta, n_meta, dtype,
                                   mae_model_tensor_fetch, m);
    mae_free(out);
    return s;
}
