/* Configuration checks, the parameter layout and tensor table (official state_dict order and
 * names), the official initialization, and packing of the linear weights. */
#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "model.h"

/* ---- layout and tensor table ---------------------------------------------------------------- */

typedef struct builder {
    mae_tensor *t;      /* NULL while counting */
    int n;
    size_t off;
    int overflow;
    int weight;                     /* the tensor being added is a linear weight */
    const mae_kernels *packed_by;   /* non-NULL: a linear weight gets only the floats of its
                                     * packed form in this table (a bf16 model, mae_model_pack_bf16) */
} builder;

static size_t add(builder *b, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t dims[4] = { d0, d1, d2, d3 };
    size_t count = 1;
    for (int i = 0; i < ndim; i++)
        if (!mae_mul_size(count, (size_t)dims[i], &count))
            b->overflow = 1;
    size_t at = b->off, reserve = count;
    if (b->packed_by && b->weight && count > 0)
        reserve = b->packed_by->pack_floats((int)d0, (int)(count / (size_t)d0));
    if (!mae_add_size(b->off, reserve, &b->off))
        b->overflow = 1;
    if (b->t) {
        mae_tensor *t = &b->t[b->n];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->offset = at;
        t->count = count;
        t->ndim = ndim;
        for (int i = 0; i < 4; i++)
            t->shape[i] = i < ndim ? dims[i] : 1;
        int is_pos = strcmp(name, "pos_embed") == 0 || strcmp(name, "decoder_pos_embed") == 0;
        size_t len = strlen(name);
        int is_bias = len >= 5 && strcmp(name + len - 5, ".bias") == 0;
        t->flags = is_pos ? 0 : MAE_T_TRAIN | (ndim > 1 && !is_bias ? MAE_T_DECAY : 0);
        t->in_place = b->packed_by && b->weight;   /* held packed in its own storage */
    }
    b->n++;
    return at;
}

/* Room in the layout for a tensor the model does not have (a q/k/v bias with qkv_bias 0): the
 * block offsets stay those of every config, the floats stay zero, and with no table entry the
 * slot is never read from or written to a file, trained or decayed. */
static size_t reserve(builder *b, int64_t n)
{
    size_t at = b->off;
    if (!mae_add_size(b->off, (size_t)n, &b->off))
        b->overflow = 1;
    return at;
}

static void add_block(builder *b, const char *prefix, int l, int C, int hidden, int qkv_bias, size_t *start,
                      mae_block_off *o)
{
    char nm[48];
    size_t s = b->off;
#define T1(field, suffix, n0) (snprintf(nm, sizeof nm, "%s.%d.%s", prefix, l, suffix), o->field = add(b, nm, 1, n0, 0, 0, 0) - s)
#define T2(field, suffix, n0, n1) (snprintf(nm, sizeof nm, "%s.%d.%s", prefix, l, suffix), b->weight = 1, \
    o->field = add(b, nm, 2, n0, n1, 0, 0) - s, b->weight = 0)
    T1(ln1_w, "norm1.weight", C);
    T1(ln1_b, "norm1.bias", C);
    T2(qkv_w, "attn.qkv.weight", 3 * (int64_t)C, C);
    if (qkv_bias)
        T1(qkv_b, "attn.qkv.bias", 3 * (int64_t)C);
    else
        o->qkv_b = reserve(b, 3 * (int64_t)C) - s;
    T2(proj_w, "attn.proj.weight", C, C);
    T1(proj_b, "attn.proj.bias", C);
    T1(ln2_w, "norm2.weight", C);
    T1(ln2_b, "norm2.bias", C);
    T2(fc1_w, "mlp.fc1.weight", hidden, C);
    T1(fc1_b, "mlp.fc1.bias", hidden);
    T2(fc2_w, "mlp.fc2.weight", C, hidden);
    T1(fc2_b, "mlp.fc2.bias", C);
#undef T1
#undef T2
    o->size = b->off - s;
    if (l == 0)
        *start = s;
}

static void build(builder *b, const mae_cfg *c, mae_layout *lay)
{
    int64_t T = 1 + (int64_t)c->L;
    lay->cls = add(b, "cls_token", 3, 1, 1, c->D, 0);
    lay->pos = add(b, "pos_embed", 3, 1, T, c->D, 0);
    if (c->has_decoder) {
        lay->mask_tok = add(b, "mask_token", 3, 1, 1, c->Dd, 0);
        lay->dpos = add(b, "decoder_pos_embed", 3, 1, T, c->Dd, 0);
    }
    b->weight = 1;
    lay->pe_w = add(b, "patch_embed.proj.weight", 4, c->D, c->C, c->p, c->p);
    b->weight = 0;
    lay->pe_b = add(b, "patch_embed.proj.bias", 1, c->D, 0, 0, 0);
    for (int l = 0; l < c->depth; l++)
        add_block(b, "blocks", l, c->D, c->hidden, c->qkv_bias, &lay->blocks, &lay->blk);
    lay->norm_w = add(b, "norm.weight", 1, c->D, 0, 0, 0);
    lay->norm_b = add(b, "norm.bias", 1, c->D, 0, 0, 0);
    if (c->has_decoder) {
        b->weight = 1;
        lay->demb_w = add(b, "decoder_embed.weight", 2, c->Dd, c->D, 0, 0);
        b->weight = 0;
        lay->demb_b = add(b, "decoder_embed.bias", 1, c->Dd, 0, 0, 0);
        for (int l = 0; l < c->ddepth; l++)
            add_block(b, "decoder_blocks", l, c->Dd, c->dhidden, c->qkv_bias, &lay->dblocks, &lay->dblk);
        lay->dnorm_w = add(b, "decoder_norm.weight", 1, c->Dd, 0, 0, 0);
        lay->dnorm_b = add(b, "decoder_norm.bias", 1, c->Dd, 0, 0, 0);
        b->weight = 1;
        lay->pred_w = add(b, "decoder_pred.weight", 2, c->P, c->Dd, 0, 0);
        b->weight = 0;
        lay->pred_b = add(b, "decoder_pred.bias", 1, c->P, 0, 0, 0);
    }
    lay->total = b->off;
}

void mae_params_view(const mae_layout *lay, float *base, int has_decoder, mae_params *p)
{
    memset(p, 0, sizeof *p);
    p->base = base;
    p->cls = base + lay->cls; p->pos = base + lay->pos;
    p->pe_w = base + lay->pe_w; p->pe_b = base + lay->pe_b;
    p->norm_w = base + lay->norm_w; p->norm_b = base + lay->norm_b;
    if (has_decoder) {
        p->mask_tok = base + lay->mask_tok; p->dpos = base + lay->dpos;
        p->demb_w = base + lay->demb_w; p->demb_b = base + lay->demb_b;
        p->dnorm_w = base + lay->dnorm_w; p->dnorm_b = base + lay->dnorm_b;
        p->pred_w = base + lay->pred_w; p->pred_b = base + lay->pred_b;
    }
}

void mae_block_view(const mae_layout *lay, float *base, int decoder, int layer, mae_block_w *w)
{
    const mae_block_off *o = decoder ? &lay->dblk : &lay->blk;
    float *s = base + (decoder ? lay->dblocks : lay->blocks) + (size_t)layer * o->size;
    w->ln1_w = s + o->ln1_w; w->ln1_b = s + o->ln1_b;
    w->qkv_w = s + o->qkv_w; w->qkv_b = s + o->qkv_b;
    w->proj_w = s + o->proj_w; w->proj_b = s + o->proj_b;
    w->ln2_w = s + o->ln2_w; w->ln2_b = s + o->ln2_b;
    w->fc1_w = s + o->fc1_w; w->fc1_b = s + o->fc1_b;
    w->fc2_w = s + o->fc2_w; w->fc2_b = s + o->fc2_b;
}

/* The model's storage and table; packed_by non-NULL: each linear weight gets only the floats of
 * its packed form in that table (a bf16 model). */
static mae_status alloc_layout(const mae_cfg *cfg, const mae_kernels *packed_by, mae_model **out)
{
    mae_layout lay;
    memset(&lay, 0, sizeof lay);
    builder count = { NULL, 0, 0, 0, 0, packed_by };
    build(&count, cfg, &lay);
    size_t bytes;
    if (count.overflow || !mae_mul_size(lay.total, sizeof(float), &bytes))
        return mae_fail(MAE_ERR_NOMEM, "model: parameter count overflows");
    mae_model *m = mae_calloc(1, sizeof *m);
    mae_tensor *t = mae_calloc((size_t)count.n, sizeof *t);
    float *data = mae_alloc(bytes);
    if (!m || !t || !data) {
        mae_free(m); mae_free(t); mae_free(data);
        return mae_fail(MAE_ERR_NOMEM, "model: cannot allocate %zu bytes of parameters", bytes);
    }
    memset(data, 0, bytes);
    builder fill = { t, 0, 0, 0, 0, packed_by };
    build(&fill, cfg, &lay);
    m->cfg = *cfg;
    m->lay = lay;
    m->data = data;
    m->tensors = t;
    m->n_tensors = fill.n;
    mae_params_view(&m->lay, data, cfg->has_decoder, &m->w);
    m->part_pe.m = m; m->part_mk.m = m; m->part_enc.m = m; m->part_dec.m = m; m->part_loss.m = m;
    *out = m;
    return MAE_OK;
}

mae_status mae_model_alloc(const mae_cfg *cfg, mae_model **out)
{
    return alloc_layout(cfg, NULL, out);
}

const mae_tensor *mae_model_find(const mae_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

void mae_model_destroy(mae_model *m)
{
    if (!m)
        return;
    if (m->cache) {
        for (int i = 0; i < m->n_tensors; i++)
            mae_free(mae_atomic_ptr_load(&m->cache[i]));
        mae_free((void *)m->cache);
    }
    mae_free(m->packed);
    mae_free(m->pk_blocks);
    mae_free(m->pk_dblocks);
    mae_free(m->tensors);
    mae_free(m->data);
    mae_free(m);
}

/* ---- initialization ------------------------------------------------------------------------- */

void mae_sincos_pos_embed(float *out, int dim, int gh, int gw)
{
    int q = dim / 4;
    memset(out, 0, (size_t)dim * sizeof *out);   /* the cls row */
    for (int i = 0; i < gh; i++) {
        for (int j = 0; j < gw; j++) {
            float *row = out + (size_t)(1 + i * gw + j) * dim;
            for (int k = 0; k < q; k++) {
                double omega = 1.0 / pow(10000.0, (double)k / q);
                double x = (double)j * omega, y = (double)i * omega;
                row[k] = (float)sin(x);
                row[q + k] = (float)cos(x);
                row[2 * q + k] = (float)sin(y);
                row[3 * q + k] = (float)cos(y);
            }
        }
    }
}

int mae_is_sincos_table(const float *table, int dim, int gh, int gw, float *tmp)
{
    if (dim % 4)
        return 0;
    mae_sincos_pos_embed(tmp, dim, gh, gw);
    size_t n = (size_t)(1 + gh * gw) * dim;
    for (size_t i = 0; i < n; i++)
        if (fabsf(tmp[i] - table[i]) > 1e-6f)
            return 0;
    return 1;
}

static void uniform_fill(mae_rng *r, float *w, size_t n, double bound)
{
    for (size_t i = 0; i < n; i++)
        w[i] = (float)((2.0 * mae_rng_uniform_double(r) - 1.0) * bound);
}

static void xavier(mae_rng *r, float *w, int fan_out, int fan_in)
{
    uniform_fill(r, w, (size_t)fan_out * fan_in, sqrt(6.0 / ((double)fan_in + fan_out)));
}

static void init_block(mae_rng *r, const mae_block_w *w, int C, int hidden)
{
    for (int i = 0; i < C; i++) {
        w->ln1_w[i] = 1.0f; w->ln2_w[i] = 1.0f;
    }
    xavier(r, w->qkv_w, 3 * C, C);
    xavier(r, w->proj_w, C, C);
    xavier(r, w->fc1_w, hidden, C);
    xavier(r, w->fc2_w, C, hidden);
    /* biases and LayerNorm shifts stay zero (the buffer starts zeroed) */
}

mae_status mae_model_new(const mae_cfg *cfg, uint64_t seed, mae_model **out)
{
    mae_cfg c = *cfg;
    mae_status s = mae_cfg_finish(&c);
    if (s != MAE_OK)
        return s;
    if (c.D % 4 || c.Dd % 4)
        return mae_fail(MAE_ERR_INVALID_ARG, "the sin-cos position tables need embed_dim (%d) and decoder_embed_dim (%d) "
                        "divisible by 4", c.D, c.Dd);
    mae_model *m;
    if ((s = mae_model_alloc(&c, &m)) != MAE_OK)
        return s;
    mae_model_init_weights(m, seed);
    if ((s = mae_model_pack_slim(m)) != MAE_OK) {
        mae_model_destroy(m);
        return s;
    }
    *out = m;
    return MAE_OK;
}

void mae_model_init_weights(mae_model *m, uint64_t seed)
{
    const mae_cfg *c = &m->cfg;
    mae_rng r;
    mae_rng_seed(&r, seed);
    memset(m->data, 0, m->lay.total * sizeof(float));
    mae_sincos_pos_embed(m->w.pos, c->D, c->gh, c->gw);
    int fan_in = c->C * c->p * c->p;
    xavier(&r, m->w.pe_w, c->D, fan_in);
    uniform_fill(&r, m->w.pe_b, (size_t)c->D, 1.0 / sqrt((double)fan_in));
    for (int i = 0; i < c->D; i++)
        m->w.cls[i] = (float)(0.02 * mae_rng_normal(&r));
    for (int l = 0; l < c->depth; l++) {
        mae_block_w w;
        mae_block_view(&m->lay, m->data, 0, l, &w);
        init_block(&r, &w, c->D, c->hidden);
    }
    for (int i = 0; i < c->D; i++)
        m->w.norm_w[i] = 1.0f;
    if (!c->has_decoder)
        return;
    mae_sincos_pos_embed(m->w.dpos, c->Dd, c->gh, c->gw);
    for (int i = 0; i < c->Dd; i++)
        m->w.mask_tok[i] = (float)(0.02 * mae_rng_normal(&r));
    xavier(&r, m->w.demb_w, c->Dd, c->D);
    for (int l = 0; l < c->ddepth; l++) {
        mae_block_w w;
        mae_block_view(&m->lay, m->data, 1, l, &w);
        init_block(&r, &w, c->Dd, c->dhidden);
    }
    for (int i = 0; i < c->Dd; i++)
        m->w.dnorm_w[i] = 1.0f;
    xavier(&r, m->w.pred_w, c->P, c->Dd);
}

/* ---- packing -------------------------------------------------------------------------------- */

/* Visits every linear of the model in a fixed order with its weight, shape and the slot where
 * its packed pointer goes. */
typedef void (*linear_visit)(void *arg, const float *w, int N, int K, const float **slot);

static void each_linear(mae_model *m, linear_visit fn, void *arg)
{
    const mae_cfg *c = &m->cfg;
    mae_block_pk none;   /* the slots while a new model has no tables yet (a counting pass) */
    fn(arg, m->w.pe_w, c->D, c->C * c->p * c->p, &m->pk_pe);
    for (int l = 0; l < c->depth; l++) {
        mae_block_w w;
        mae_block_view(&m->lay, m->data, 0, l, &w);
        mae_block_pk *pk = m->pk_blocks ? &m->pk_blocks[l] : &none;
        fn(arg, w.qkv_w, 3 * c->D, c->D, &pk->qkv);
        fn(arg, w.proj_w, c->D, c->D, &pk->proj);
        fn(arg, w.fc1_w, c->hidden, c->D, &pk->fc1);
        fn(arg, w.fc2_w, c->D, c->hidden, &pk->fc2);
    }
    if (!c->has_decoder)
        return;
    fn(arg, m->w.demb_w, c->Dd, c->D, &m->pk_demb);
    for (int l = 0; l < c->ddepth; l++) {
        mae_block_w w;
        mae_block_view(&m->lay, m->data, 1, l, &w);
        mae_block_pk *pk = m->pk_dblocks ? &m->pk_dblocks[l] : &none;
        fn(arg, w.qkv_w, 3 * c->Dd, c->Dd, &pk->qkv);
        fn(arg, w.proj_w, c->Dd, c->Dd, &pk->proj);
        fn(arg, w.fc1_w, c->dhidden, c->Dd, &pk->fc1);
        fn(arg, w.fc2_w, c->Dd, c->dhidden, &pk->fc2);
    }
    fn(arg, m->w.pred_w, c->P, c->Dd, &m->pk_pred);
}

enum { PACK_COUNT, PACK_FILL, PACK_REFRESH };

typedef struct pack_state {
    mae_model *m;
    const mae_kernels *k;
    int phase;         /* PACK_COUNT: sizes only, the model untouched */
    int slim;          /* pack in place where the packed form fits the weight's own floats */
    float *dst;        /* the packed storage of the linears not packed in place */
    float *tmp;        /* one block of panel rows, for packing in place */
    size_t total;      /* floats of dst used */
    int max_k;         /* widest weight packed in place */
    int in_place;      /* some weight is (or would be) packed in place */
    int overflow;
} pack_state;

/* The tensor whose data starts at w: a binary search, as the table is in offset order (a linear
 * scan per weight made loading a model of many blocks quadratic). */
static mae_tensor *tensor_at(mae_model *m, const float *w)
{
    size_t off = (size_t)(w - m->data);
    int lo = 0, hi = m->n_tensors;
    while (lo < hi) {   /* the first tensor at or after off */
        int mid = lo + (hi - lo) / 2;
        if (m->tensors[mid].offset < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < m->n_tensors && m->tensors[lo].offset == off; lo++)
        if (m->tensors[lo].count > 0)   /* an empty tensor shares its offset with the next */
            return &m->tensors[lo];
    return NULL;   /* not reached: every linear weight is a tensor */
}

/* Rows [r, r+pw) of W pack into the floats they occupy (see mae_kernels.unpack), so the weight
 * is packed one block of panel rows at a time through tmp. */
static void pack_in_place(const mae_kernels *k, float *w, int N, int K, float *tmp)
{
    int pw = (int)k->pack_floats(1, 1);
    size_t block = (size_t)pw * K;
    for (int r = 0; r < N; r += pw) {
        k->pack(tmp, w + (size_t)r * K, pw, K);
        memcpy(w + (size_t)r * K, tmp, block * sizeof *tmp);
    }
}

static void pack_one(void *arg, const float *w, int N, int K, const float **slot)
{
    pack_state *s = arg;
    size_t n = s->k->pack_floats(N, K);
    if (n == 0) {
        if (s->phase != PACK_COUNT)
            *slot = w;
        return;
    }
    if (s->slim && n == (size_t)N * K) {
        s->in_place = 1;
        s->max_k = K > s->max_k ? K : s->max_k;
        if (s->phase == PACK_FILL) {
            float *wd = s->m->data + (w - s->m->data);
            pack_in_place(s->k, wd, N, K, s->tmp);
            tensor_at(s->m, w)->in_place = 1;
            *slot = wd;
        }
        return;   /* PACK_REFRESH: the weight is its packed form already */
    }
    if (s->phase != PACK_COUNT) {
        s->k->pack(s->dst + s->total, w, N, K);
        *slot = s->dst + s->total;
    }
    if (!mae_add_size(s->total, n, &s->total))
        s->overflow = 1;
}

/* Packs the linears of a model whose data is in PyTorch's layout for table k. All storage is
 * allocated before anything changes, so on failure the model is as it was. */
static mae_status pack_with(mae_model *m, const mae_kernels *k, int slim)
{
    pack_state s = { m, k, PACK_COUNT, slim, NULL, NULL, 0, 0, 0, 0 };
    each_linear(m, pack_one, &s);
    size_t bytes, tmp_floats = s.in_place ? k->pack_floats(1, 1) * (size_t)s.max_k : 0;
    if (s.overflow || !mae_mul_size(s.total, sizeof(float), &bytes))
        return mae_fail(MAE_ERR_NOMEM, "model: packed weights overflow");
    mae_block_pk *pb = mae_calloc((size_t)m->cfg.depth, sizeof *pb);
    mae_block_pk *pd = m->cfg.has_decoder ? mae_calloc((size_t)m->cfg.ddepth, sizeof *pd) : NULL;
    float *packed = s.total ? mae_alloc(bytes) : NULL;
    float *tmp = tmp_floats ? mae_alloc(tmp_floats * sizeof *tmp) : NULL;
    mae_atomic_ptr *cache = m->cache;
    if (s.in_place && !cache && (cache = mae_calloc((size_t)m->n_tensors, sizeof *cache)) != NULL)
        for (int i = 0; i < m->n_tensors; i++)
            mae_atomic_ptr_init(&cache[i], NULL);
    if (!pb || (m->cfg.has_decoder && !pd) || (s.total && !packed) || (tmp_floats && !tmp) ||
        (s.in_place && !cache)) {
        mae_free(pb); mae_free(pd); mae_free(packed); mae_free(tmp);
        if (cache != m->cache)
            mae_free((void *)cache);
        return mae_fail(MAE_ERR_NOMEM, "model: cannot allocate %zu bytes of packed weights", bytes);
    }
    mae_free(m->pk_blocks); mae_free(m->pk_dblocks); mae_free(m->packed);
    m->pk_blocks = pb; m->pk_dblocks = pd; m->packed = packed;
    m->k = k;
    m->cache = cache;
    s = (pack_state){ m, k, PACK_FILL, slim, packed, tmp, 0, 0, 0, 0 };
    each_linear(m, pack_one, &s);
    m->slim = s.in_place;
    mae_free(tmp);
    return MAE_OK;
}

static mae_status keep_masters(mae_model *m)
{
    if (!m->slim)
        return MAE_OK;
    size_t bytes = m->lay.total * sizeof(float);   /* allocated once already: no overflow */
    float *full = mae_calloc(m->lay.total, sizeof(float)), *old = m->data;   /* zeroed: a slot that is no tensor
                                                                                * (qkv_bias 0) stays zero */
    if (!full)
        return mae_fail(MAE_ERR_NOMEM, "model: cannot allocate %zu bytes of master weights", bytes);
    for (int i = 0; i < m->n_tensors; i++)
        mae_model_tensor_read(m, &m->tensors[i], full + m->tensors[i].offset);
    /* switch to the unpacked copy; the packed slots still point into old until pack_with */
    unsigned char *was = mae_alloc((size_t)m->n_tensors);
    if (!was) {
        mae_free(full);
        return mae_fail(MAE_ERR_NOMEM, "model: out of memory");
    }
    for (int i = 0; i < m->n_tensors; i++) {
        was[i] = (unsigned char)m->tensors[i].in_place;
        m->tensors[i].in_place = 0;
    }
    m->data = full;
    mae_params_view(&m->lay, full, m->cfg.has_decoder, &m->w);
    mae_status s = pack_with(m, m->k, 0);
    if (s != MAE_OK) {   /* back to the slim model as it was */
        m->data = old;
        mae_params_view(&m->lay, old, m->cfg.has_decoder, &m->w);
        for (int i = 0; i < m->n_tensors; i++)
            m->tensors[i].in_place = was[i];
        old = full;
    }
    mae_free(was);
    mae_free(old);
    return s;
}

/* Float32 training only: a bf16 model has no float32 weights to train here; the trainer and the
 * finetuner train one in mixed precision (mae_model_make_trainable_mixed). */
mae_status mae_model_keep_masters(mae_model *m)
{
    if (m->precision == MAE_PRECISION_BF16)
        return mae_fail(MAE_ERR_UNSUPPORTED, "model: it computes in bf16 and holds its weights only as "
                        "bf16; it trains in mixed precision (mae_model_make_trainable_mixed, "
                        "docs/PRECISION.md)");
    m->had_masters = 1;
    return keep_masters(m);
}

/* A bf16 model for mixed-precision training: float32 master weights in PyTorch's layout (the bf16
 * weights widened, exact) in a new data buffer, and the bf16 packs of the linears beside them in
 * m->packed (pack_with with the model's bf16 view), refreshed from the masters after every
 * optimizer step (mae_model_repack_threads). All storage is allocated before the model changes,
 * so on failure it is as it was. Nothing to do for a model that has its masters already. */
static mae_status bf16_masters(mae_model *m)
{
    if (!m->slim)
        return MAE_OK;
    mae_layout lay;
    memset(&lay, 0, sizeof lay);
    builder count = { NULL, 0, 0, 0, 0, NULL };
    build(&count, &m->cfg, &lay);   /* the float32 layout: it fitted when the model was made */
    mae_tensor *t = mae_calloc((size_t)count.n, sizeof *t);
    float *data = mae_calloc(lay.total, sizeof(float));   /* zeroed: a slot that is no tensor stays zero */
    if (!t || !data) {
        mae_free(t); mae_free(data);
        return mae_fail(MAE_ERR_NOMEM, "model: cannot allocate %zu bytes of master weights",
                        lay.total * sizeof(float));
    }
    builder fill = { t, 0, 0, 0, 0, NULL };
    build(&fill, &m->cfg, &lay);
    assert(fill.n == m->n_tensors);
    for (int i = 0; i < m->n_tensors; i++)
        mae_model_tensor_read(m, &m->tensors[i], data + t[i].offset);   /* bf16 unpacked: exact */
    mae_tensor *old_t = m->tensors;
    float *old_data = m->data;
    mae_layout old_lay = m->lay;
    m->tensors = t;
    m->data = data;
    m->lay = lay;
    mae_params_view(&m->lay, data, m->cfg.has_decoder, &m->w);
    mae_status s = pack_with(m, m->k, 0);
    if (s != MAE_OK) {   /* back to the slim bf16 model (its slots still point into old_data) */
        m->tensors = old_t;
        m->data = old_data;
        m->lay = old_lay;
        mae_params_view(&m->lay, old_data, m->cfg.has_decoder, &m->w);
        mae_free(t); mae_free(data);
        return s;
    }
    for (int i = 0; i < m->n_tensors; i++) {   /* unpacked copies of the in-place tensors: stale */
        mae_free(mae_atomic_ptr_load(&m->cache[i]));
        mae_atomic_ptr_init(&m->cache[i], NULL);
    }
    mae_free(old_t);
    mae_free(old_data);
    return MAE_OK;
}

/* Gives a slim model master weights (convert), holding it exclusively: the conversion replaces
 * the weights and frees the packed buffers, so no context may read them meanwhile (and none can
 * be created: mae_ctx_create sees MAE_MODEL_CONVERTING). A model that has master weights already
 * is not changed here, so live contexts do not matter; a model never becomes slim again. */
static mae_status convert_held(mae_model *m, const char *fn, const char *kind, mae_status (*convert)(mae_model *))
{
    long v = mae_atomic_long_cas(&m->live_ctx, 0, MAE_MODEL_CONVERTING);
    if (v != 0) {
        if (v == MAE_MODEL_CONVERTING)
            return mae_fail(MAE_ERR_STATE, "%s: another thread is converting this model for training right now", fn);
        if (!m->slim)
            return MAE_OK;
        return mae_fail(MAE_ERR_STATE, "%s: the model has %d live context%s; create the trainer before any "
                        "context, or free them (the trainer rewrites the weights of %s, which the contexts read)",
                        fn, (int)v, v == 1 ? "" : "s", kind);
    }
    mae_status s = convert(m);
    mae_atomic_long_store(&m->live_ctx, 0);
    return s;
}

mae_status mae_model_make_trainable(mae_model *m, const char *fn)
{
    return convert_held(m, fn, "a model made for inference", mae_model_keep_masters);
}

static mae_status bf16_masters_kept(mae_model *m)
{
    mae_status s = bf16_masters(m);
    if (s == MAE_OK)
        m->had_masters = 1;
    return s;
}

mae_status mae_model_make_trainable_mixed(mae_model *m, const char *fn)
{
    if (m->precision != MAE_PRECISION_BF16)
        return mae_model_make_trainable(m, fn);
    return convert_held(m, fn, "a bf16 model", bf16_masters_kept);
}

mae_status mae_model_pack(mae_model *m)
{
    mae_status s = keep_masters(m);
    return s != MAE_OK ? s : pack_with(m, mae_kernels_active(), 0);
}

mae_status mae_model_pack_slim(mae_model *m)
{
    mae_status s = keep_masters(m);
    return s != MAE_OK ? s : pack_with(m, mae_kernels_active(), 1);
}

void mae_model_repack(mae_model *m)
{
    mae_model_repack_threads(m, NULL);
}

/* Repacking in parallel: the packed copies (not the in-place ones) split into blocks of whole
 * panels of about REPACK_FLOATS floats; task i packs block i (found by walking the linears). */
#define REPACK_FLOATS 65536

typedef struct repack_task {
    mae_model *m;
    int task;          /* the block to pack; INT_MAX while counting */
    int next;          /* blocks of the linears visited so far */
    size_t total;      /* their packed floats */
} repack_task;

static void repack_visit(void *arg, const float *w, int N, int K, const float **slot)
{
    repack_task *r = arg;
    const mae_kernels *k = r->m->k;
    size_t n = k->pack_floats(N, K);
    (void)slot;
    if (r->next > r->task || n == 0 || (r->m->slim && n == (size_t)N * K))
        return;   /* done, not packed, or packed in place */
    int pw = (int)k->pack_floats(1, 1);
    int rb = REPACK_FLOATS / K / pw * pw;
    rb = rb < pw ? pw : rb;
    int blocks = (N + rb - 1) / rb;
    if (r->task < r->next + blocks) {
        int r0 = (r->task - r->next) * rb, rows = N - r0 < rb ? N - r0 : rb;
        k->pack(r->m->packed + r->total + (size_t)r0 * K, w + (size_t)r0 * K, rows, K);
    }
    r->next += blocks;
    r->total += n;
}

static void repack_task_fn(void *arg, int task, int thread)
{
    repack_task r = { arg, task, 0, 0 };
    (void)thread;
    each_linear(r.m, repack_visit, &r);
}

/* A bf16 model with master weights: each linear's bf16 pack rewritten whole from its master, one
 * linear per task (the bf16 layouts are not row blocks of the weight, and the packing rounds). */
typedef struct bf16_task { mae_model *m; int task, next; } bf16_task;

static void bf16_visit(void *arg, const float *w, int N, int K, const float **slot)
{
    bf16_task *r = arg;
    if (r->next++ == r->task)
        r->m->k->pack(r->m->packed + (*slot - r->m->packed), w, N, K);
}

static void bf16_task_fn(void *arg, int task, int thread)
{
    bf16_task r = { arg, task, 0 };
    (void)thread;
    each_linear(r.m, bf16_visit, &r);
}

void mae_model_repack_threads(mae_model *m, const mae_exec *ex)
{
    if (!m->packed)
        return;
    if (m->precision == MAE_PRECISION_BF16) {
        bf16_task count = { m, -1, 0 };
        each_linear(m, bf16_visit, &count);
        mae_parallel_for(ex, count.next, bf16_task_fn, m);
        return;
    }
    repack_task count = { m, INT_MAX, 0, 0 };
    each_linear(m, repack_visit, &count);
    mae_parallel_for(ex, count.next, repack_task_fn, m);
}

/* A weight's [N, K] view: its first dimension by all the others (patch_embed.proj.weight is
 * [D, C, p, p]). */
static void weight_dims(const mae_tensor *t, int *N, int *K)
{
    *N = (int)t->shape[0];
    *K = (int)(t->count / (size_t)t->shape[0]);
}

void mae_model_tensor_read(const mae_model *m, const mae_tensor *t, float *dst)
{
    const float *src = m->data + t->offset;
    if (!t->in_place) {
        memcpy(dst, src, t->count * sizeof *dst);
        return;
    }
    int N, K;
    weight_dims(t, &N, &K);
    m->k->unpack(dst, src, N, K);
}

mae_status mae_model_tensor_view(const mae_model *m, const mae_tensor *t, const float **out)
{
    if (!t->in_place) {
        *out = m->data + t->offset;
        return MAE_OK;
    }
    /* first request: unpack into a copy of our own and publish it; a thread that loses the race
     * frees its copy and takes the winner's */
    mae_atomic_ptr *slot = &m->cache[t - m->tensors];
    float *have = mae_atomic_ptr_load(slot);
    if (!have) {
        float *mine = mae_alloc(t->count * sizeof *mine);
        if (!mine)
            return mae_fail(MAE_ERR_NOMEM, "model: cannot allocate %zu bytes to unpack '%s'",
                            t->count * sizeof *mine, t->name);
        mae_model_tensor_read(m, t, mine);
        have = mae_atomic_ptr_cas(slot, NULL, mine);
        if (!have)
            have = mine;
        else
            mae_free(mine);
    }
    *out = have;
    return MAE_OK;
}

void mae_model_tensor_write(mae_model *m, const mae_tensor *t, const float *src)
{
    float *dst = m->data + t->offset;
    if (!t->in_place) {
        memcpy(dst, src, t->count * sizeof *dst);
        return;
    }
    int N, K;
    weight_dims(t, &N, &K);
    m->k->pack(dst, src, N, K);
}

void mae_model_tensor_fetch(const void *model, int i, float *dst)
{
    const mae_model *m = model;
    mae_model_tensor_read(m, &m->tensors[i], dst);
}

/* ---- bf16 weights (docs/PRECISION.md) ------------------------------------------------------- */

/* Slots of the packed linears: every weight is in place, so its slot is its own storage. */
static void slot_in_place(void *arg, const float *w, int N, int K, const float **slot)
{
    (void)arg; (void)N; (void)K;
    *slot = w;
}

mae_status mae_model_pack_bf16(mae_model *m, const mae_kernels *v)
{
    /* the new layout: every tensor as before, each linear weight in only the floats of its
     * packed bf16 form (about half) */
    mae_layout lay;
    memset(&lay, 0, sizeof lay);
    builder count = { NULL, 0, 0, 0, 0, v };
    build(&count, &m->cfg, &lay);
    size_t bytes, widest = 0;
    if (count.overflow || !mae_mul_size(lay.total, sizeof(float), &bytes))
        return mae_fail(MAE_ERR_NOMEM, "model: parameter count overflows");
    for (int i = 0; i < m->n_tensors; i++)
        widest = m->tensors[i].count > widest ? m->tensors[i].count : widest;
    mae_tensor *t = mae_calloc((size_t)count.n, sizeof *t);
    float *data = mae_alloc(bytes ? bytes : 1), *tmp = mae_alloc(widest * sizeof *tmp);
    mae_block_pk *pb = mae_calloc((size_t)m->cfg.depth, sizeof *pb);
    mae_block_pk *pd = m->cfg.has_decoder ? mae_calloc((size_t)m->cfg.ddepth, sizeof *pd) : NULL;
    mae_atomic_ptr *cache = mae_calloc((size_t)m->n_tensors, sizeof *cache);
    if (!t || !data || !tmp || !pb || (m->cfg.has_decoder && !pd) || !cache) {
        mae_free(t); mae_free(data); mae_free(tmp); mae_free(pb); mae_free(pd); mae_free((void *)cache);
        return mae_fail(MAE_ERR_NOMEM, "model: cannot allocate %zu bytes of bf16 weights", bytes);
    }
    memset(data, 0, bytes);   /* the reserved slots (a q/k/v bias the model lacks) read as zero */
    for (int i = 0; i < m->n_tensors; i++)
        mae_atomic_ptr_init(&cache[i], NULL);
    builder fill = { t, 0, 0, 0, 0, v };
    build(&fill, &m->cfg, &lay);
    assert(fill.n == m->n_tensors);
    /* each tensor from the old storage (unpacked if it was packed) into the new one */
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *old = &m->tensors[i];
        if (!t[i].in_place) {
            mae_model_tensor_read(m, old, data + t[i].offset);
            continue;
        }
        mae_model_tensor_read(m, old, tmp);
        int N, K;
        weight_dims(old, &N, &K);
        v->pack(data + t[i].offset, tmp, N, K);
    }
    mae_free(tmp);
    if (m->cache)
        for (int i = 0; i < m->n_tensors; i++)
            mae_free(mae_atomic_ptr_load(&m->cache[i]));
    mae_free((void *)m->cache);
    mae_free(m->packed); mae_free(m->pk_blocks); mae_free(m->pk_dblocks);
    mae_free(m->tensors); mae_free(m->data);
    m->tensors = t;
    m->lay = lay;
    m->data = data;
    mae_params_view(&m->lay, data, m->cfg.has_decoder, &m->w);
    m->packed = NULL;
    m->pk_blocks = pb; m->pk_dblocks = pd;
    m->cache = cache;
    m->k = v;
    m->slim = 1;
    m->precision = MAE_PRECISION_BF16;
    each_linear(m, slot_in_place, NULL);
    return MAE_OK;
}

mae_status mae_model_alloc_bf16(const mae_cfg *cfg, const mae_kernels *v, mae_model **out)
{
    mae_model *m;
    mae_status s = alloc_layout(cfg, v, &m);
    if (s != MAE_OK)
        return s;
    m->pk_blocks = mae_calloc((size_t)cfg->depth, sizeof *m->pk_blocks);
    m->pk_dblocks = cfg->has_decoder ? mae_calloc((size_t)cfg->ddepth, sizeof *m->pk_dblocks) : NULL;
    m->cache = mae_calloc((size_t)m->n_tensors, sizeof *m->cache);
    for (int i = 0; m->cache && i < m->n_tensors; i++)
        mae_atomic_ptr_init(&m->cache[i], NULL);
    if (!m->pk_blocks || (cfg->has_decoder && !m->pk_dblocks) || !m->cache) {
        mae_model_destroy(m);   /* frees what was allocated */
        return mae_fail(MAE_ERR_NOMEM, "model: cannot allocate the tables of the bf16 weights");
    }
    m->k = v;
    m->slim = 1;
    m->precision = MAE_PRECISION_BF16;
    each_linear(m, slot_in_place, NULL);
    *out = m;
    return MAE_OK;
}
