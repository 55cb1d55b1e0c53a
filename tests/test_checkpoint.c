/* Model checkpoints (src/io/checkpoint.c): save -> load gives bitwise the same tensors, config and
 * forward outputs; F16/BF16 files against values decoded here; Hugging Face files (written here
 * with the names of docs/FORMAT.md's table and q/k/v split) load to the same model; encoder-only
 * files; the config inferred without metadata; malformed files each with the right status and
 * message; a model file cut at every length.
 *
 *   test_checkpoint --write-corpus DIR   writes the fuzz seed corpus (tests/fuzz_corpus/safetensors) */
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"
#include "../src/io/checkpoint.h"

static char dir[64];

/* ---- a safetensors writer of the test's own, for files the library would not write ------------- */

typedef struct tfile {
    char *meta, *tensors;            /* JSON fragments */
    size_t meta_len, tensors_len;
    unsigned char *data;
    size_t data_len;
} tfile;

typedef struct bytes {
    unsigned char *p;
    size_t n;
} bytes;

static void append(char **s, size_t *len, const char *text)
{
    size_t n = strlen(text);
    *s = realloc(*s, *len + n + 1);
    if (!*s)
        exit(2);
    memcpy(*s + *len, text, n + 1);
    *len += n;
}

static void tf_meta(tfile *t, const char *key, const char *value)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s\"%s\":\"%s\"", t->meta_len ? "," : "", key, value);
    append(&t->meta, &t->meta_len, buf);
}

static void tf_add(tfile *t, const char *name, const char *dtype, int ndim, const int64_t *shape, const void *raw, size_t n)
{
    char buf[512];
    size_t k = (size_t)snprintf(buf, sizeof buf, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->tensors_len ? "," : "", name, dtype);
    for (int d = 0; d < ndim; d++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%lld", d ? "," : "", (long long)shape[d]);
    snprintf(buf + k, sizeof buf - k, "],\"data_offsets\":[%zu,%zu]}", t->data_len, t->data_len + n);
    append(&t->tensors, &t->tensors_len, buf);
    t->data = realloc(t->data, t->data_len + n + 1);
    if (!t->data)
        exit(2);
    if (n)
        memcpy(t->data + t->data_len, raw, n);
    t->data_len += n;
}

static void tf_add_f32(tfile *t, const char *name, int ndim, const int64_t *shape, const float *x)
{
    size_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= (size_t)shape[d];
    tf_add(t, name, "F32", ndim, shape, x, count * 4);   /* the test hosts are little-endian */
}

static bytes tf_finish(tfile *t)
{
    char *h = NULL;
    size_t hl = 0;
    append(&h, &hl, "{");
    if (t->meta_len) {
        append(&h, &hl, "\"__metadata__\":{");
        append(&h, &hl, t->meta);
        append(&h, &hl, t->tensors_len ? "}," : "}");
    }
    if (t->tensors_len)
        append(&h, &hl, t->tensors);
    append(&h, &hl, "}");
    bytes b = { tu_malloc(8 + hl + t->data_len), 8 + hl + t->data_len };
    for (int i = 0; i < 8; i++)
        b.p[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b.p + 8, h, hl);
    if (t->data_len)
        memcpy(b.p + 8 + hl, t->data, t->data_len);
    free(h);
    free(t->meta);
    free(t->tensors);
    free(t->data);
    memset(t, 0, sizeof *t);
    return b;
}

static void write_bytes(const char *path, bytes b)
{
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(b.p, 1, b.n, fp) != b.n)
        exit(2);
    fclose(fp);
}

/* ---- models -------------------------------------------------------------------------------------- */

typedef struct arch {
    int img, p, C, D, depth, H, Dd, ddepth, dH;
    float mlp, ratio, eps;
    int norm_pix;
} arch;

static mae_model *create(const arch *a, uint64_t seed)
{
    mae_config cfg;
    mae_config_init(&cfg, sizeof cfg, "tiny");
    cfg.img_size = a->img; cfg.patch_size = a->p; cfg.in_chans = a->C;
    cfg.embed_dim = a->D; cfg.depth = a->depth; cfg.num_heads = a->H;
    cfg.decoder_embed_dim = a->Dd; cfg.decoder_depth = a->ddepth; cfg.decoder_num_heads = a->dH;
    cfg.mlp_ratio = a->mlp; cfg.mask_ratio = a->ratio; cfg.layer_norm_eps = a->eps; cfg.norm_pix_loss = a->norm_pix;
    mae_model *m = NULL;
    CHECK_OK(mae_model_create(&cfg, seed, &m));
    if (!m)
        exit(1);
    /* the created model has zero biases and unit norms: give every tensor distinct values, so
     * that a tensor read into the wrong slot shows */
    for (size_t i = 0; i < m->lay.total; i++)
        m->data[i] += (float)(0.01 * (tu_uniform() - 0.5));
    mae_model_repack(m);
    return m;
}

static int same_config(const mae_model *a, const mae_model *b)
{
    mae_config x, y;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    x.struct_size = y.struct_size = sizeof x;
    mae_model_get_config(a, &x);
    mae_model_get_config(b, &y);
    return memcmp(&x, &y, sizeof x) == 0;
}

/* A tensor's values in PyTorch's layout (a loaded or created model holds its linears packed). */
static const float *tensor_data(const mae_model *m, const mae_tensor *t)
{
    const float *p = NULL;
    CHECK_OK(mae_model_tensor(m, t->name, &p, NULL, NULL, NULL));
    return p;
}

/* Same tensor table, bitwise the same values. */
static int same_tensors(const mae_model *a, const mae_model *b)
{
    if (a->n_tensors != b->n_tensors)
        return 0;
    for (int i = 0; i < a->n_tensors; i++) {
        const mae_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name) || x->count != y->count || x->ndim != y->ndim ||
            memcmp(tensor_data(a, x), tensor_data(b, y), x->count * sizeof(float)) != 0) {
            fprintf(stderr, "tensor %d '%s' differs\n", i, x->name);
            return 0;
        }
    }
    return 1;
}

/* The forward outputs of two models on the same images and noise are bitwise equal. */
static void check_same_forward(mae_model *a, mae_model *b, const char *what)
{
    const mae_cfg *c = &a->cfg;
    const int B = 2, dec = a->cfg.has_decoder && b->cfg.has_decoder;
    size_t ni = (size_t)B * c->C * c->ih * c->iw, nl = (size_t)B * c->L, np = nl * c->P;
    size_t nt = (size_t)B * (1 + c->L) * c->D;
    float *imgs = tu_malloc(ni * 4), *noise = tu_malloc(nl * 4), *out[2][3], loss[2];
    tu_fill(imgs, ni, -2, 2);
    tu_fill(noise, nl, 0, 1);
    mae_model *ms[2] = { a, b };
    for (int k = 0; k < 2; k++) {
        mae_ctx *ctx = NULL;
        out[k][0] = tu_malloc(np * 4);
        out[k][1] = tu_malloc(nl * 4);
        out[k][2] = tu_malloc(nt * 4);
        tu_poison(out[k][0], np);
        tu_poison(out[k][1], nl);
        tu_poison(out[k][2], nt);
        loss[k] = NAN;
        CHECK_OK(mae_ctx_create(ms[k], B, &ctx));
        if (dec)
            CHECK_OK(mae_forward(ctx, imgs, B, noise, &loss[k], out[k][0], out[k][1], out[k][2]));
        else
            CHECK_OK(mae_forward(ctx, imgs, B, noise, NULL, NULL, out[k][1], out[k][2]));
        mae_ctx_free(ctx);
    }
    int keep = mae_keep_count(c->L, c->mask_ratio);
    size_t nlat = (size_t)B * (1 + keep) * c->D;
    CHECK(memcmp(out[0][1], out[1][1], nl * 4) == 0 && tu_rel_l2(out[0][1], out[1][1], nl) == 0, "%s: masks differ", what);
    CHECK(memcmp(out[0][2], out[1][2], nlat * 4) == 0 && tu_rel_l2(out[0][2], out[1][2], nlat) == 0, "%s: latents differ", what);
    if (dec) {
        CHECK(memcmp(out[0][0], out[1][0], np * 4) == 0 && tu_rel_l2(out[0][0], out[1][0], np) == 0, "%s: predictions differ", what);
        CHECK(memcmp(&loss[0], &loss[1], 4) == 0 && isfinite(loss[0]), "%s: loss %g vs %g", what, (double)loss[0], (double)loss[1]);
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++)
            free(out[k][i]);
    free(imgs);
    free(noise);
}

/* ---- save -> load ---------------------------------------------------------------------------- */

static void test_round_trip(void)
{
    arch a = { 16, 4, 3, 32, 2, 4, 16, 1, 2, 2.5f, 0.6f, 1e-5f, 1 };
    mae_model *m = create(&a, 7), *r = NULL, *sentinel = (mae_model *)&a;
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(mae_model_save(m, path));
    r = sentinel;
    CHECK_OK(mae_model_load(path, &r));
    if (r == sentinel || !r)
        return;
    CHECK(same_config(m, r), "the config changed in the round trip");
    CHECK(same_tensors(m, r), "the tensors changed in the round trip");
    check_same_forward(m, r, "round trip");

    /* the metadata a user (or Python) sees */
    mae_st_file f;
    CHECK_OK(mae_st_open(path, &f));
    struct { const char *k, *v; } want[] = { { "img_size", "16" }, { "patch_size", "4" }, { "in_chans", "3" }, { "embed_dim", "32" },
        { "depth", "2" }, { "num_heads", "4" }, { "decoder_embed_dim", "16" }, { "decoder_depth", "1" }, { "decoder_num_heads", "2" },
        { "mlp_ratio", "2.5" }, { "norm_pix_loss", "true" }, { "mask_ratio", "0.600000024" }, { "layer_norm_eps", "9.99999975e-06" },
        { "format", "pt" } };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *v = mae_st_meta_get(&f, want[i].k);
        CHECK(v && strcmp(v, want[i].v) == 0, "metadata %s = '%s', expected '%s'", want[i].k, v ? v : "(none)", want[i].v);
    }
    /* official names and order */
    CHECK(f.n == m->n_tensors && strcmp(f.t[0].name, "cls_token") == 0 && strcmp(f.t[f.n - 1].name, "decoder_pred.bias") == 0,
          "tensor order");
    mae_st_close(&f);

    /* a resized model keeps its run size through the file */
    mae_model *rs = NULL, *rs2 = NULL;
    CHECK_OK(mae_model_resize(m, 12, 20, &rs));
    if (rs) {
        CHECK_OK(mae_model_save(rs, path));
        CHECK_OK(mae_model_load(path, &rs2));
        if (rs2) {
            CHECK(same_config(rs, rs2) && rs2->cfg.ih == 12 && rs2->cfg.iw == 20, "resized config %dx%d", rs2->cfg.ih, rs2->cfg.iw);
            CHECK(same_tensors(rs, rs2), "resized tensors");
            check_same_forward(rs, rs2, "resized round trip");
        }
    }
    /* saving over the file again, then a failed save leaves it */
    CHECK_OK(mae_model_save(m, path));
    CHECK(mae_model_save(m, dir) == MAE_ERR_IO, "save onto a directory");
    mae_model *again = NULL;
    CHECK_OK(mae_model_load(path, &again));
    CHECK(again && same_tensors(m, again), "the file after a failed save");
    CHECK(mae_model_save(NULL, path) == MAE_ERR_INVALID_ARG && mae_model_save(m, NULL) == MAE_ERR_INVALID_ARG, "save args");
    r->cfg.img = r->cfg.img;   /* r stays usable */
    mae_model_free(again);
    mae_model_free(rs);
    mae_model_free(rs2);
    mae_model_free(r);
    mae_model_free(m);
    unlink(path);
}

/* The generated reference models (tests/data) load, with the config of their metadata. */
static void test_reference_files(void)
{
    const char *names[] = { "tiny", "odd", "gray", "ratio0", "ties" };
    for (int i = 0; i < 5; i++) {
        char path[1100];
        snprintf(path, sizeof path, "%s/tests/data/%s.model.safetensors", tu_srcdir(), names[i]);
        if (access(path, R_OK) != 0)
            continue;
        mae_model *m = NULL;
        mae_st_file f;
        CHECK_OK(mae_model_load(path, &m));
        CHECK_OK(mae_st_open(path, &f));
        if (!m || f.n == 0) {
            mae_model_free(m);
            mae_st_close(&f);
            continue;
        }
        const char *D = mae_st_meta_get(&f, "embed_dim"), *H = mae_st_meta_get(&f, "num_heads");
        CHECK(D && H && m->cfg.D == atoi(D) && m->cfg.H == atoi(H), "%s: config", names[i]);
        for (int t = 0; t < m->n_tensors; t++) {
            const mae_tensor *tn = &m->tensors[t];
            const mae_st_entry *e = mae_st_find(&f, tn->name);
            float *x = tu_malloc(tn->count * 4);
            CHECK(e && mae_st_read_f32(&f, e, x, tn->count) == MAE_OK && memcmp(x, tensor_data(m, tn), tn->count * 4) == 0,
                  "%s: tensor %s", names[i], tn->name);
            free(x);
        }
        mae_st_close(&f);
        mae_model_free(m);
    }
}

/* ---- F16 / BF16 files ---------------------------------------------------------------------------- */

static double ref_half(unsigned h)
{
    unsigned e = h >> 10 & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, (int)e - 25);
    return h & 0x8000 ? -v : v;
}

static double ref_bf16(unsigned h)
{
    unsigned e = h >> 7 & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : ldexp(128 + m, (int)e - 134);
    return h & 0x8000 ? -v : v;
}

/* Random finite 16-bit patterns of the format (exponent field below its maximum). */
static unsigned random_bits(int bf16)
{
    for (;;) {
        unsigned h = (unsigned)(tu_uniform() * 65536.0);
        unsigned e = bf16 ? h >> 7 & 255 : h >> 10 & 31;
        if (e != (bf16 ? 255u : 31u))
            return h;
    }
}

static void test_half_files(void)
{
    arch a = { 8, 4, 2, 16, 1, 2, 8, 1, 2, 2.0f, 0.5f, 1e-6f, 0 };
    mae_model *m = create(&a, 3);
    for (int bf = 0; bf < 2; bf++) {
        tfile t;
        memset(&t, 0, sizeof t);
        tf_meta(&t, "num_heads", "2");
        tf_meta(&t, "decoder_num_heads", "2");
        float *want = tu_malloc(m->lay.total * 4);
        for (int i = 0; i < m->n_tensors; i++) {
            const mae_tensor *tn = &m->tensors[i];
            unsigned char *raw = tu_malloc(tn->count * 2);
            for (size_t k = 0; k < tn->count; k++) {
                unsigned h = random_bits(bf);
                raw[2 * k] = (unsigned char)h;
                raw[2 * k + 1] = (unsigned char)(h >> 8);
                want[tn->offset + k] = (float)(bf ? ref_bf16(h) : ref_half(h));
            }
            tf_add(&t, tn->name, bf ? "BF16" : "F16", tn->ndim, tn->shape, raw, tn->count * 2);
            free(raw);
        }
        bytes b = tf_finish(&t);
        mae_model *r = NULL;
        CHECK_OK(mae_model_load_memory(b.p, b.n, &r));
        if (r) {
            int same = r->lay.total == m->lay.total;
            for (int i = 0; same && i < r->n_tensors; i++)
                same = memcmp(tensor_data(r, &r->tensors[i]), want + r->tensors[i].offset, r->tensors[i].count * 4) == 0;
            CHECK(same, "%s weights differ from the decoded values", bf ? "BF16" : "F16");
            CHECK(r->cfg.D == 16 && r->cfg.depth == 1 && r->cfg.mlp_ratio == 2.0f && r->cfg.img == 8 && r->cfg.C == 2,
                  "config inferred from a half file");
        }
        mae_model_free(r);
        free(want);
        free(b.p);
    }
    mae_model_free(m);
}

/* ---- Hugging Face names ----------------------------------------------------------------------- */

/* The Hugging Face name of an official tensor (docs/FORMAT.md, "Tensor names"); part picks q/k/v. */
static int hf_name(const char *off, int part, const char *vit, char *out, size_t cap)
{
    static const char *const qkv[3] = { "query", "key", "value" };
    static const char *const sub[][2] = {
        { "norm1.", "layernorm_before." }, { "attn.proj.", "attention.output.dense." }, { "norm2.", "layernorm_after." },
        { "mlp.fc1.", "intermediate.dense." }, { "mlp.fc2.", "output.dense." },
    };
    static const char *const top[][3] = {   /* official, HF, under the encoder prefix? */
        { "cls_token", "embeddings.cls_token", "y" }, { "pos_embed", "embeddings.position_embeddings", "y" },
        { "patch_embed.proj.weight", "embeddings.patch_embeddings.projection.weight", "y" },
        { "patch_embed.proj.bias", "embeddings.patch_embeddings.projection.bias", "y" },
        { "norm.weight", "layernorm.weight", "y" }, { "norm.bias", "layernorm.bias", "y" },
        { "mask_token", "decoder.mask_token", "" }, { "decoder_pos_embed", "decoder.decoder_pos_embed", "" },
        { "decoder_embed.weight", "decoder.decoder_embed.weight", "" }, { "decoder_embed.bias", "decoder.decoder_embed.bias", "" },
        { "decoder_norm.weight", "decoder.decoder_norm.weight", "" }, { "decoder_norm.bias", "decoder.decoder_norm.bias", "" },
        { "decoder_pred.weight", "decoder.decoder_pred.weight", "" }, { "decoder_pred.bias", "decoder.decoder_pred.bias", "" },
    };
    int layer;
    char rest[64], pre[64];
    if (sscanf(off, "blocks.%d.%63s", &layer, rest) == 2)
        snprintf(pre, sizeof pre, "%sencoder.layer.%d.", vit, layer);
    else if (sscanf(off, "decoder_blocks.%d.%63s", &layer, rest) == 2)
        snprintf(pre, sizeof pre, "decoder.decoder_layers.%d.", layer);
    else {
        for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
            if (strcmp(off, top[i][0]) == 0) {
                snprintf(out, cap, "%s%s", top[i][2][0] ? vit : "", top[i][1]);
                return 1;
            }
        return 0;
    }
    if (strncmp(rest, "attn.qkv.", 9) == 0) {
        snprintf(out, cap, "%sattention.attention.%s.%s", pre, qkv[part], rest + 9);
        return 3;
    }
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++)
        if (strncmp(rest, sub[i][0], strlen(sub[i][0])) == 0) {
            snprintf(out, cap, "%s%s%s", pre, sub[i][1], rest + strlen(sub[i][0]));
            return 1;
        }
    return 0;
}

/* m's tensors under Hugging Face names (qkv split), with an unused classifier, without metadata
 * unless given; skip: an HF name left out. decoder 0 leaves the decoder out. */
static bytes hf_file(const mae_model *m, const char *vit, int decoder, const char *skip)
{
    tfile t;
    memset(&t, 0, sizeof t);
    float junk[6] = { 1, 2, 3, 4, 5, 6 };
    int64_t js[2] = { 2, 3 };
    tf_add_f32(&t, "classifier.weight", 2, js, junk);
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *tn = &m->tensors[i];
        char name[160];
        int parts = hf_name(tn->name, 0, vit, name, sizeof name);
        CHECK(parts > 0, "no Hugging Face name for %s", tn->name);
        if (!decoder && strncmp(name, "decoder.", 8) == 0)
            continue;
        int64_t shape[4];
        memcpy(shape, tn->shape, sizeof shape);
        shape[0] /= parts;
        size_t count = tn->count / (size_t)parts;
        for (int p = 0; p < parts; p++) {
            hf_name(tn->name, p, vit, name, sizeof name);
            if (!skip || strcmp(skip, name) != 0)
                tf_add_f32(&t, name, tn->ndim, shape, tensor_data(m, tn) + (size_t)p * count);
        }
    }
    return tf_finish(&t);
}

static void test_hf_names(void)
{
    /* widths whose heads follow from the 64-wide rule: no metadata needed */
    arch a = { 8, 4, 3, 128, 2, 2, 64, 1, 1, 4.0f, 0.75f, 1e-12f, 0 };
    mae_model *m = create(&a, 5);
    bytes b = hf_file(m, "vit.", 1, NULL);
    mae_model *r = NULL;
    CHECK_OK(mae_model_load_memory(b.p, b.n, &r));
    if (r) {
        CHECK(same_config(m, r), "HF config: H %d dH %d eps %g mlp %g img %d", r->cfg.H, r->cfg.dH, (double)r->cfg.eps,
              (double)r->cfg.mlp_ratio, r->cfg.img);
        CHECK(r->cfg.eps == 1e-12f && r->cfg.mask_ratio == 0.75f && r->cfg.norm_pix == 0, "HF defaults");
        CHECK(same_tensors(m, r), "HF tensors (qkv concatenated q|k|v)");
        check_same_forward(m, r, "HF names");
    }
    mae_model_free(r);
    free(b.p);

    /* ViTMAEModel: no "vit." prefix, no decoder */
    b = hf_file(m, "", 0, NULL);
    r = NULL;
    CHECK_OK(mae_model_load_memory(b.p, b.n, &r));
    CHECK(r && r->cfg.has_decoder == 0 && r->cfg.D == 128 && r->cfg.depth == 2, "ViTMAEModel file");
    mae_model_free(r);
    free(b.p);

    /* a missing value projection is named by its file name and its official name */
    b = hf_file(m, "vit.", 1, "vit.encoder.layer.1.attention.attention.value.bias");
    r = (mae_model *)&a;
    mae_status s = mae_model_load_memory(b.p, b.n, &r);
    CHECK(s == MAE_ERR_FORMAT && strstr(mae_last_error(), "vit.encoder.layer.1.attention.attention.value.bias") &&
          strstr(mae_last_error(), "blocks.1.attn.qkv.bias"), "missing HF value bias: %s", mae_last_error());
    CHECK(r == (mae_model *)&a, "a failed load wrote *out");
    free(b.p);
    mae_model_free(m);
}

/* ---- encoder-only files --------------------------------------------------------------------- */

/* m's tensors under official names; skip_decoder leaves out every decoder tensor; meta adds the
 * config keys given as "key=value" strings; skip leaves one tensor out; squeeze writes the
 * token tensors without their leading 1s. */
static bytes official_file(const mae_model *m, int skip_decoder, const char *const *meta, const char *skip, int squeeze)
{
    tfile t;
    memset(&t, 0, sizeof t);
    for (int i = 0; meta && meta[i]; i++) {
        char k[64];
        const char *eq = strchr(meta[i], '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - meta[i]), meta[i]);
        tf_meta(&t, k, eq + 1);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *tn = &m->tensors[i];
        int dec = strncmp(tn->name, "decoder", 7) == 0 || strcmp(tn->name, "mask_token") == 0;
        if ((skip_decoder && dec) || (skip && strcmp(skip, tn->name) == 0))
            continue;
        int lead = squeeze && tn->ndim == 3 ? 1 + (tn->shape[1] == 1) : 0;
        tf_add_f32(&t, tn->name, tn->ndim - lead, tn->shape + lead, tensor_data(m, tn));
    }
    return tf_finish(&t);
}

static void test_encoder_only(void)
{
    arch a = { 16, 4, 3, 32, 2, 4, 16, 1, 2, 4.0f, 0.75f, 1e-6f, 0 };
    mae_model *m = create(&a, 9);
    const char *meta[] = { "num_heads=4", "decoder_num_heads=2", "decoder_embed_dim=16", NULL };
    bytes b = official_file(m, 1, meta, NULL, 0);
    mae_model *r = NULL;
    CHECK_OK(mae_model_load_memory(b.p, b.n, &r));
    free(b.p);
    if (!r) {
        mae_model_free(m);
        return;
    }
    int has = -1;
    CHECK_OK(mae_model_has_decoder(r, &has));
    CHECK(has == 0, "an encoder-only file has a decoder");
    const mae_decoder *dec = NULL;
    CHECK(mae_model_decoder(r, &dec) == MAE_ERR_UNSUPPORTED, "mae_model_decoder on an encoder-only model");
    check_same_forward(m, r, "encoder only");   /* with has_decoder 0 only latent and mask are compared */
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(r, 1, &c));
    float *imgs = tu_malloc(3 * 16 * 16 * 4), *pred = tu_malloc(16 * 48 * 4), loss = 0;
    tu_fill(imgs, 3 * 16 * 16, -1, 1);
    CHECK(c && mae_forward(c, imgs, 1, NULL, NULL, pred, NULL, NULL) == MAE_ERR_UNSUPPORTED, "pred from an encoder-only model");
    CHECK(c && mae_forward(c, imgs, 1, NULL, &loss, NULL, NULL, NULL) == MAE_ERR_UNSUPPORTED, "loss from an encoder-only model");
    mae_ctx_free(c);
    free(imgs);
    free(pred);
    /* and it saves and loads as encoder-only */
    char path[128];
    snprintf(path, sizeof path, "%s/enc.safetensors", dir);
    CHECK_OK(mae_model_save(r, path));
    mae_model *r2 = NULL;
    CHECK_OK(mae_model_load(path, &r2));
    CHECK(r2 && r2->cfg.has_decoder == 0 && same_tensors(r, r2), "encoder-only round trip");
    mae_st_file f;
    CHECK_OK(mae_st_open(path, &f));
    CHECK(mae_st_meta_get(&f, "decoder_embed_dim") == NULL, "decoder metadata in an encoder-only file");
    mae_st_close(&f);
    unlink(path);
    mae_model_free(r2);
    mae_model_free(r);
    mae_model_free(m);
}

/* ---- the config without metadata, and malformed files --------------------------------------- */

static void test_inference(void)
{
    struct { int dim, dec, heads; } presets[] = { { 768, 0, 12 }, { 1024, 0, 16 }, { 1280, 0, 16 }, { 512, 1, 16 },
        { 512, 0, 8 }, { 128, 0, 2 }, { 64, 1, 1 }, { 96, 0, 0 }, { 32, 1, 0 }, { 0, 0, 0 } };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        CHECK(mae_ckpt_default_heads(presets[i].dim, presets[i].dec) == presets[i].heads, "heads for %d (%s)", presets[i].dim,
              presets[i].dec ? "decoder" : "encoder");

    /* official names, no metadata: every field from the shapes; 1 channel, mlp 3, 3x3 grid */
    arch a = { 12, 4, 1, 128, 3, 2, 64, 2, 1, 3.0f, 0.75f, 1e-6f, 0 };
    mae_model *m = create(&a, 13);
    for (int sq = 0; sq < 2; sq++) {
        bytes b = official_file(m, 0, NULL, NULL, sq);
        mae_model *r = NULL;
        CHECK_OK(mae_model_load_memory(b.p, b.n, &r));
        CHECK(r && same_config(m, r), "inferred config (squeezed %d)", sq);
        CHECK(r && same_tensors(m, r), "tensors (squeezed %d)", sq);
        mae_model_free(r);
        free(b.p);
    }
    mae_model_free(m);

    /* an MLP width whose ratio is not exact in float: 7 = (int)(20 * r) needs r just above 0.35f */
    arch c = { 8, 4, 1, 20, 1, 4, 20, 1, 4, nextafterf(0.35f, 1.0f), 0.75f, 1e-6f, 0 };
    m = create(&c, 15);
    CHECK(m->cfg.hidden == 7, "hidden %d", m->cfg.hidden);
    const char *heads[] = { "num_heads=4", "decoder_num_heads=4", NULL };
    bytes b = official_file(m, 0, heads, NULL, 0);
    mae_model *r = NULL;
    CHECK_OK(mae_model_load_memory(b.p, b.n, &r));
    CHECK(r && r->cfg.hidden == 7 && same_config(m, r) && same_tensors(m, r), "inexact mlp_ratio inferred");
    mae_model_free(r);
    free(b.p);
    mae_model_free(m);
}

typedef struct bad_file {
    const char *what;
    const char *meta[4];
    const char *skip;          /* a tensor left out */
    mae_status status;
    const char *message[3];    /* each expected in the message */
} bad_file;

static void test_bad_models(void)
{
    static const bad_file cases[] = {
        { "missing tensor", { "num_heads=4", "decoder_num_heads=2" }, "blocks.1.norm2.bias", MAE_ERR_FORMAT, { "'blocks.1.norm2.bias'", "missing" } },
        { "missing decoder_embed", { "num_heads=4", "decoder_num_heads=2" }, "decoder_embed.weight", MAE_ERR_FORMAT, { "decoder_embed.weight" } },
        { "missing patch embedding", { "num_heads=4" }, "patch_embed.proj.weight", MAE_ERR_FORMAT, { "patch_embed.proj.weight" } },
        { "no heads for width 32", { NULL }, NULL, MAE_ERR_FORMAT, { "num_heads", "32" } },
        { "malformed integer", { "num_heads=4x", "decoder_num_heads=2" }, NULL, MAE_ERR_FORMAT, { "'num_heads'", "4x" } },
        { "fractional integer", { "num_heads=4.5", "decoder_num_heads=2" }, NULL, MAE_ERR_FORMAT, { "not an integer" } },
        { "malformed boolean", { "num_heads=4", "decoder_num_heads=2", "norm_pix_loss=yes" }, NULL, MAE_ERR_FORMAT, { "norm_pix_loss" } },
        { "infinite float", { "num_heads=4", "decoder_num_heads=2", "mlp_ratio=1e999" }, NULL, MAE_ERR_FORMAT, { "mlp_ratio" } },
        { "float beyond float32", { "num_heads=4", "decoder_num_heads=2", "layer_norm_eps=1e39" }, NULL, MAE_ERR_FORMAT, { "out of range" } },
        { "heads do not divide", { "num_heads=5", "decoder_num_heads=2" }, NULL, MAE_ERR_FORMAT, { "num_heads 5" } },
        { "mask ratio 1", { "num_heads=4", "decoder_num_heads=2", "mask_ratio=1" }, NULL, MAE_ERR_FORMAT, { "mask_ratio" } },
        { "width disagrees", { "num_heads=4", "decoder_num_heads=2", "embed_dim=64" }, NULL, MAE_ERR_SHAPE, { "cls_token", "[1, 1, 64]", "[1, 1, 32]" } },
        { "mlp disagrees", { "num_heads=4", "decoder_num_heads=2", "mlp_ratio=2" }, NULL, MAE_ERR_SHAPE, { "blocks.0.mlp.fc1.weight", "[64, 32]", "[128, 32]" } },
        { "image disagrees", { "num_heads=4", "decoder_num_heads=2", "img_size=20" }, NULL, MAE_ERR_SHAPE, { "pos_embed", "[1, 26, 32]" } },
        { "absurd depth", { "num_heads=4", "decoder_num_heads=2", "depth=60000" }, NULL, MAE_ERR_FORMAT, { "depth 60000", "missing" } },
        { "depth over the limit", { "num_heads=4", "decoder_num_heads=2", "depth=70000" }, NULL, MAE_ERR_FORMAT, { "depth" } },
    };
    arch a = { 16, 4, 3, 32, 2, 4, 16, 1, 2, 4.0f, 0.75f, 1e-6f, 0 };
    mae_model *m = create(&a, 17);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_file *c = &cases[i];
        const char *meta[5] = { c->meta[0], c->meta[1], c->meta[2], c->meta[3], NULL };
        bytes b = official_file(m, 0, meta, c->skip, 0);
        mae_model *r = (mae_model *)&a;
        mae_status s = mae_model_load_memory(b.p, b.n, &r);
        CHECK(s == c->status, "%s: %s, expected %s (%s)", c->what, mae_status_str(s), mae_status_str(c->status), mae_last_error());
        for (int k = 0; k < 3 && c->message[k]; k++)
            CHECK(strstr(mae_last_error(), c->message[k]) != NULL, "%s: '%s' lacks '%s'", c->what, mae_last_error(), c->message[k]);
        CHECK(r == (mae_model *)&a, "%s: a failed load wrote *out", c->what);
        if (getenv("MAE_TEST_VERBOSE"))
            printf("%-24s %s\n", c->what, mae_last_error());
        if (r != (mae_model *)&a)
            mae_model_free(r);
        free(b.p);
    }
    /* a non-square grid without metadata */
    tfile t;
    memset(&t, 0, sizeof t);
    float w[16 * 3 * 4 * 4] = { 0 }, pos[11 * 64] = { 0 };
    int64_t sw[4] = { 16, 3, 4, 4 }, sp[3] = { 1, 11, 64 };
    tf_add_f32(&t, "patch_embed.proj.weight", 4, sw, w);
    tf_add_f32(&t, "pos_embed", 3, sp, pos);
    bytes b = tf_finish(&t);
    mae_model *r = NULL;
    mae_status s = mae_model_load_memory(b.p, b.n, &r);
    CHECK(s == MAE_ERR_FORMAT && strstr(mae_last_error(), "square"), "non-square grid: %s", mae_last_error());
    /* the load arguments */
    CHECK(mae_model_load_memory(NULL, 0, &r) == MAE_ERR_FORMAT, "empty image");
    CHECK(mae_model_load_memory(b.p, 10, NULL) == MAE_ERR_INVALID_ARG, "NULL out");
    free(b.p);
    CHECK(mae_model_from_st(NULL, &r) == MAE_ERR_INVALID_ARG, "NULL file");
    CHECK(mae_model_load(NULL, &r) == MAE_ERR_INVALID_ARG, "NULL path");
    mae_model_free(m);
}

/* A small model file cut at every length: each load fails cleanly (a sanitizer build sees any
 * read past the exactly-sized buffer). */
static void test_truncated_model(void)
{
    arch a = { 4, 2, 1, 8, 1, 2, 8, 1, 2, 1.0f, 0.5f, 1e-6f, 0 };
    mae_model *m = create(&a, 21);
    char path[128];
    snprintf(path, sizeof path, "%s/small.safetensors", dir);
    CHECK_OK(mae_model_save(m, path));
    FILE *fp = fopen(path, "rb");
    unsigned char *full = tu_malloc(1 << 16);
    size_t n = fp ? fread(full, 1, 1 << 16, fp) : 0;
    if (fp)
        fclose(fp);
    unlink(path);
    CHECK(n > 1000 && n < (1 << 16), "the small model file has %zu bytes", n);
    int clean = 0;
    for (size_t len = 0; len < n; len++) {
        unsigned char *cut = tu_malloc(len ? len : 1);
        memcpy(cut, full, len);
        mae_model *r = NULL;
        mae_status s = mae_model_load_memory(cut, len, &r);
        clean += s == MAE_ERR_FORMAT && r == NULL;
        if (s == MAE_OK)
            mae_model_free(r);
        free(cut);
    }
    CHECK(clean == (int)n, "%d of %zu truncated files failed cleanly", clean, n);
    mae_model *r = NULL;
    CHECK_OK(mae_model_load_memory(full, n, &r));
    CHECK(r && same_tensors(m, r), "the whole file");
    mae_model_free(r);
    free(full);
    mae_model_free(m);
}

/* ---- the fuzz seed corpus ----------------------------------------------------------------------- */

static int write_corpus(const char *out)
{
    char path[512];
    arch a = { 4, 2, 1, 8, 1, 2, 8, 1, 2, 1.0f, 0.75f, 1e-6f, 0 };
    mae_model *m = create(&a, 1);
    const char *meta[] = { "num_heads=2", "decoder_num_heads=2", "norm_pix_loss=true", NULL };
    struct { const char *name; bytes b; } files[8];
    int n = 0;
    files[n].name = "official.safetensors";
    files[n++].b = official_file(m, 0, meta, NULL, 0);
    files[n].name = "encoder_only.safetensors";
    files[n++].b = official_file(m, 1, meta, NULL, 1);
    files[n].name = "missing_tensor.safetensors";
    files[n++].b = official_file(m, 0, meta, "blocks.0.mlp.fc2.bias", 0);
    files[n].name = "hf.safetensors";
    files[n++].b = hf_file(m, "vit.", 1, NULL);
    files[n].name = "hf_f16.safetensors";
    {
        tfile t;
        memset(&t, 0, sizeof t);
        tf_meta(&t, "num_heads", "2");
        tf_meta(&t, "decoder_num_heads", "2");
        for (int i = 0; i < m->n_tensors; i++) {
            const mae_tensor *tn = &m->tensors[i];
            unsigned char *raw = tu_malloc(tn->count * 2);
            for (size_t k = 0; k < tn->count * 2; k++)
                raw[k] = (unsigned char)(k % 2 ? 0x3c : k);
            tf_add(&t, tn->name, i % 2 ? "BF16" : "F16", tn->ndim, tn->shape, raw, tn->count * 2);
            free(raw);
        }
        files[n++].b = tf_finish(&t);
    }
    files[n].name = "small.safetensors";
    {
        tfile t;
        memset(&t, 0, sizeof t);
        tf_meta(&t, "img_size", "224");
        int64_t s2[2] = { 2, 2 };
        float x[4] = { 1, -2, 3, -4 };
        tf_add_f32(&t, "a", 2, s2, x);
        tf_add(&t, "b", "I64", 1, s2, x, 16);
        files[n++].b = tf_finish(&t);
    }
    files[n].name = "truncated.safetensors";   /* the official file cut in its data */
    files[n].b.n = files[0].b.n * 3 / 4;
    files[n].b.p = tu_malloc(files[n].b.n);
    memcpy(files[n].b.p, files[0].b.p, files[n].b.n);
    n++;
    files[n].name = "bad_json.safetensors";
    {
        const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}";
        size_t hl = strlen(h);
        files[n].b.n = 8 + hl + 4;
        files[n].b.p = calloc(1, files[n].b.n);
        files[n].b.p[0] = (unsigned char)hl;
        memcpy(files[n].b.p + 8, h, hl);
        n++;
    }
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", out, files[i].name);
        write_bytes(path, files[i].b);
        free(files[i].b.p);
    }
    mae_model_free(m);
    printf("wrote %d files to %s\n", n, out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);
    tu_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/mae_test_ckpt_%ld", (long)getpid());
    mkdir(dir, 0777);
    tu_seed(5);
    TU_RUN("round_trip", test_round_trip());
    TU_RUN("reference_files", test_reference_files());
    TU_RUN("half_files", test_half_files());
    TU_RUN("hf_names", test_hf_names());
    TU_RUN("encoder_only", test_encoder_only());
    TU_RUN("inference", test_inference());
    TU_RUN("bad_models", test_bad_models());
    TU_RUN("truncated_model", test_truncated_model());
    rmdir(dir);
    return tu_finish("test_checkpoint");
}
