/* Checkpoints as Hugging Face transformers writes them (issue 13): fixture files built here from
 * the naming table of the issue (transformers 4 and 5 decoder namings, with and without "vit.")
 * and a config.json, each loaded and compared bitwise (forward outputs, config) with the same
 * random weights written under official names with every setting in __metadata__; config.json's
 * settings (heads, norm_pix_loss, mask ratio, eps, decoder MLP width, qkv_bias); its precedence
 * against __metadata__; sharded directories; every error; save as Hugging Face -> load. */
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"
#include "../src/io/safetensors.h"
#include "../src/io/config_meta.h"

static char dir[64];

/* ---- the naming table of the issue (independent of src/io/names.c) ---------------------------- */

/* The Hugging Face name of an official tensor; part picks q/k/v; dec: the decoder layer prefix. */
static int hf_name(const char *off, int part, const char *vit, const char *dec, char *out, size_t cap)
{
    static const char *const qkv[3] = { "query", "key", "value" };
    static const char *const sub[][2] = {
        { "norm1.", "layernorm_before." }, { "attn.proj.", "attention.output.dense." }, { "norm2.", "layernorm_after." },
        { "mlp.fc1.", "intermediate.dense." }, { "mlp.fc2.", "output.dense." },
    };
    static const char *const top[][3] = {
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
    char rest[64], pre[96];
    if (sscanf(off, "blocks.%d.%63s", &layer, rest) == 2)
        snprintf(pre, sizeof pre, "%sencoder.layer.%d.", vit, layer);
    else if (sscanf(off, "decoder_blocks.%d.%63s", &layer, rest) == 2)
        snprintf(pre, sizeof pre, "%.60s%d.", dec, layer);
    else {
        for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
            if (strcmp(off, top[i][0]) == 0) {
                snprintf(out, cap, "%s%s", top[i][2][0] ? vit : "", top[i][1]);
                return 1;
            }
        return 0;
    }
    if (strncmp(rest, "attn.qkv.", 9) == 0) {
        int n = snprintf(out, cap, "%sattention.attention.%s.%s", pre, qkv[part], rest + 9);
        return n >= 0 && (size_t)n < cap ? 3 : 0;
    }
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++)
        if (strncmp(rest, sub[i][0], strlen(sub[i][0])) == 0) {
            int n = snprintf(out, cap, "%s%s%s", pre, sub[i][1], rest + strlen(sub[i][0]));
            return n >= 0 && (size_t)n < cap;
        }
    return 0;
}

#define V4 "decoder.decoder_layers."
#define V5 "decoder.decoder_encoder.layer."

/* ---- weights ---------------------------------------------------------------------------------- */

/* A config's tensor table (from a model made with it) with fresh random values in every tensor,
 * biases and LayerNorm shifts included (a zero bias would hide a bias that is not applied). */
typedef struct weights {
    mae_model *m;       /* for the table and the config */
    float *w;           /* lay.total floats */
} weights;

static weights make_weights(const mae_config *cfg)
{
    weights r = { NULL, NULL };
    CHECK_OK(mae_model_create(cfg, 1, &r.m));
    if (!r.m)
        return r;
    r.w = tu_malloc(r.m->lay.total * sizeof(float));
    tu_fill(r.w, r.m->lay.total, -0.3, 0.3);
    for (int i = 0; i < r.m->n_tensors; i++) {   /* LayerNorm scales near 1 */
        const mae_tensor *t = &r.m->tensors[i];
        if (strstr(t->name, "norm") && strstr(t->name, ".weight"))
            for (size_t j = 0; j < t->count; j++)
                r.w[t->offset + j] += 1.0f;
    }
    return r;
}

static void free_weights(weights *r)
{
    mae_model_free(r->m);
    free(r->w);
}

/* The official file: official names, every setting in __metadata__ (the reference). */
static void write_official(const weights *r, const char *path)
{
    const mae_model *m = r->m;
    mae_st_out *out = tu_malloc((size_t)m->n_tensors * sizeof *out);
    mae_st_meta meta[64];
    for (int i = 0; i < m->n_tensors; i++)
        out[i] = (mae_st_out){ m->tensors[i].name, r->w + m->tensors[i].offset, m->tensors[i].ndim, m->tensors[i].shape };
    int nm = mae_meta_put_config(meta, mae_meta_put(meta, 0, "format", "pt"), &m->cfg);
    CHECK_OK(mae_st_write(path, out, m->n_tensors, meta, nm));
    free(out);
}

/* The Hugging Face file: names of the table above, q/k/v split, no config in __metadata__ (as
 * transformers writes it), plus an unused classifier. skip: a name left out; zero_qkv_bias:
 * q/k/v biases of zeros added (for a config without them). with_decoder 0: encoder only. */
typedef struct hf_opts {
    const char *vit, *dec, *skip, *extra;
    int with_decoder, zero_qkv_bias;
} hf_opts;

static void write_hf(const weights *r, const char *path, hf_opts o)
{
    const mae_model *m = r->m;
    int cap = 4 * m->n_tensors + 8, n = 0;
    mae_st_out *out = tu_malloc((size_t)cap * sizeof *out);
    char (*names)[160] = tu_malloc((size_t)cap * sizeof *names);
    int64_t (*shapes)[4] = tu_malloc((size_t)cap * sizeof *shapes);
    float *zeros = calloc(4096, sizeof(float)), junk[6] = { 1, 2, 3, 4, 5, 6 };
    static const int64_t js[2] = { 2, 3 };
    out[n++] = (mae_st_out){ "classifier.weight", junk, 2, js };
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        int parts = hf_name(t->name, 0, o.vit, o.dec, names[n], sizeof names[n]);
        CHECK(parts > 0, "no Hugging Face name for %s", t->name);
        if (!o.with_decoder && strncmp(names[n], "decoder.", 8) == 0)
            continue;
        size_t count = t->count / (size_t)parts;
        for (int p = 0; p < parts; p++) {
            hf_name(t->name, p, o.vit, o.dec, names[n], sizeof names[n]);
            if (o.skip && strcmp(o.skip, names[n]) == 0)
                continue;
            memcpy(shapes[n], t->shape, sizeof shapes[n]);
            shapes[n][0] /= parts;
            out[n] = (mae_st_out){ names[n], r->w + t->offset + (size_t)p * count, t->ndim, shapes[n] };
            n++;
            if (o.zero_qkv_bias && strstr(t->name, "attn.qkv.weight")) {   /* its bias, as zeros */
                char bias[160];
                hf_name(t->name, p, o.vit, o.dec, bias, sizeof bias);
                snprintf(names[n], sizeof names[n], "%.*sbias", (int)(strlen(bias) - 6), bias);
                shapes[n][0] = t->shape[0] / 3;
                out[n] = (mae_st_out){ names[n], zeros, 1, shapes[n] };
                n++;
            }
        }
    }
    if (o.extra) {
        snprintf(names[n], sizeof names[n], "%s", o.extra);
        shapes[n][0] = 2;
        out[n] = (mae_st_out){ names[n], junk, 1, shapes[n] };
        n++;
    }
    mae_st_meta meta = { "format", "pt" };
    CHECK_OK(mae_st_write(path, out, n, &meta, 1));
    free(out);
    free(names);
    free(shapes);
    free(zeros);
}

/* ---- config.json ------------------------------------------------------------------------------ */

/* config.json as transformers writes it for cfg, without the key `omit` (NULL: none), with the
 * text `extra` (",\n  \"key\": value" pairs) appended. */
static void config_json(const mae_config *c, const char *omit, const char *extra, char *buf, size_t cap)
{
    char pairs[32][96];
    int n = 0;
#define PAIR(...) snprintf(pairs[n++], sizeof pairs[0], __VA_ARGS__)
    PAIR("\"model_type\": \"vit_mae\"");
    PAIR("\"architectures\": [\"ViTMAEForPreTraining\"]");
    PAIR("\"transformers_version\": \"5.17.0\"");
    PAIR("\"image_size\": %d", c->img_size);
    PAIR("\"patch_size\": %d", c->patch_size);
    PAIR("\"num_channels\": %d", c->in_chans);
    PAIR("\"hidden_size\": %d", c->embed_dim);
    PAIR("\"num_hidden_layers\": %d", c->depth);
    PAIR("\"num_attention_heads\": %d", c->num_heads);
    PAIR("\"intermediate_size\": %d", (int)((double)c->embed_dim * c->mlp_ratio));
    PAIR("\"decoder_hidden_size\": %d", c->decoder_embed_dim);
    PAIR("\"decoder_num_hidden_layers\": %d", c->decoder_depth);
    PAIR("\"decoder_num_attention_heads\": %d", c->decoder_num_heads);
    PAIR("\"decoder_intermediate_size\": %d", c->decoder_mlp_hidden ? c->decoder_mlp_hidden
                                                                     : (int)((double)c->decoder_embed_dim * c->mlp_ratio));
    PAIR("\"hidden_act\": \"gelu\"");
    PAIR("\"layer_norm_eps\": %.9g", (double)c->layer_norm_eps);
    PAIR("\"qkv_bias\": %s", c->qkv_bias ? "true" : "false");
    PAIR("\"mask_ratio\": %.9g", (double)c->mask_ratio);
    PAIR("\"norm_pix_loss\": %s", c->norm_pix_loss ? "true" : "false");
    PAIR("\"hidden_dropout_prob\": 0.0");
    PAIR("\"attention_probs_dropout_prob\": 0.0");
    PAIR("\"initializer_range\": 0.02");
    PAIR("\"dtype\": \"float32\"");
    PAIR("\"id2label\": {\"0\": \"LABEL_0\", \"1\": \"LABEL_1\"}");
#undef PAIR
    size_t len = (size_t)snprintf(buf, cap, "{");
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (omit && strncmp(pairs[i] + 1, omit, strlen(omit)) == 0 && pairs[i][1 + strlen(omit)] == '"')
            continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s\n  %s", first ? "" : ",", pairs[i]);
        first = 0;
    }
    snprintf(buf + len, cap - len, "%s\n}\n", extra ? extra : "");
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fputs(text, fp) >= 0 && fclose(fp) == 0, "cannot write %s", path);
}

static const char *in_dir(const char *sub, const char *name)
{
    static char buf[8][512];   /* a call may take several; a path kept longer is copied */
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s%s%s", dir, sub, name ? "/" : "", name ? name : "");
    return b;
}

static void make_sub(const char *sub)
{
    mkdir(in_dir(sub, NULL), 0777);
}

static void clear_sub(const char *sub)
{
    static const char *const files[] = { "config.json", "model.safetensors", "model.safetensors.index.json",
                                         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "w.safetensors",
                                         "ref.safetensors", "other.safetensors" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(in_dir(sub, files[i]));
    rmdir(in_dir(sub, NULL));
}

/* ---- comparing models ------------------------------------------------------------------------- */

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

/* The forward outputs of two models on the same images and noise are bitwise equal. */
static int same_forward(mae_model *a, mae_model *b)
{
    const mae_cfg *c = &a->cfg;
    if (c->L != b->cfg.L || c->P != b->cfg.P || c->D != b->cfg.D || a->cfg.has_decoder != b->cfg.has_decoder)
        return 0;
    const int B = 2, dec = c->has_decoder;
    size_t ni = (size_t)B * c->C * c->ih * c->iw, nl = (size_t)B * c->L, np = nl * c->P, nt = (size_t)B * (1 + c->L) * c->D;
    float *imgs = tu_malloc(ni * 4), *noise = tu_malloc(nl * 4), *out[2][3], loss[2] = { 0, 0 };
    tu_fill(imgs, ni, -2, 2);
    tu_fill(noise, nl, 0, 1);
    mae_model *ms[2] = { a, b };
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        mae_ctx *ctx = NULL;
        for (int i = 0; i < 3; i++)
            out[k][i] = calloc(np + nl + nt, 4);
        ok &= mae_ctx_create(ms[k], B, &ctx) == MAE_OK;
        if (ctx)
            ok &= mae_forward(ctx, imgs, B, noise, dec ? &loss[k] : NULL, dec ? out[k][0] : NULL, out[k][1], out[k][2]) == MAE_OK;
        mae_ctx_free(ctx);
    }
    for (int i = 0; i < 3; i++)
        ok &= memcmp(out[0][i], out[1][i], (np + nl + nt) * 4) == 0;
    ok &= memcmp(&loss[0], &loss[1], 4) == 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++)
            free(out[k][i]);
    free(imgs);
    free(noise);
    return ok;
}

/* The config every fixture starts from: heads that the D/64 guess would get wrong (4 on 64; the
 * decoder's 2 on 32 cannot be guessed at all), a decoder MLP width of its own, norm_pix_loss, a
 * mask ratio and eps off the defaults, no q/k/v bias. */
static mae_config base_config(void)
{
    mae_config c;
    mae_config_init(&c, sizeof c, "tiny");
    c.img_size = 16; c.patch_size = 4; c.in_chans = 2;
    c.embed_dim = 64; c.depth = 2; c.num_heads = 4; c.mlp_ratio = 3.0f;
    c.decoder_embed_dim = 32; c.decoder_depth = 2; c.decoder_num_heads = 2; c.decoder_mlp_hidden = 80;
    c.norm_pix_loss = 1; c.mask_ratio = 0.5f; c.layer_norm_eps = 1e-5f; c.qkv_bias = 0;
    return c;
}

/* ref: the official file's model; loads sub/<file> (or the directory) and compares. */
static void expect_same(mae_model *ref, const char *path, const char *what)
{
    mae_model *m = NULL;
    mae_status s = mae_model_load(path, &m);
    CHECK(s == MAE_OK, "%s: %s", what, mae_last_error());
    if (m) {
        CHECK(same_config(ref, m), "%s: the config differs from the official file's", what);
        CHECK(same_forward(ref, m), "%s: the forward outputs differ from the official file's", what);
    }
    mae_model_free(m);
}

static void expect_fail(const char *path, mae_status want, const char *msg1, const char *msg2, const char *what)
{
    mae_model *m = NULL;
    mae_status s = mae_model_load(path, &m);
    const char *e = mae_last_error();
    CHECK(s == want && !m && strstr(e, msg1) && (!msg2 || strstr(e, msg2)), "%s: %s (want %s): %s", what, mae_status_str(s),
          mae_status_str(want), e);
    mae_model_free(m);
}

/* ---- the tests -------------------------------------------------------------------------------- */

static void test_namings(void)
{
    mae_config c = base_config();
    char json[4096];
    weights r = make_weights(&c);
    mae_model *ref = NULL;
    make_sub("n");
    write_official(&r, in_dir("n", "ref.safetensors"));
    CHECK_OK(mae_model_load(in_dir("n", "ref.safetensors"), &ref));
    unlink(in_dir("n", "ref.safetensors"));
    config_json(&c, NULL, NULL, json, sizeof json);
    write_text(in_dir("n", "config.json"), json);
    const char *decs[2] = { V4, V5 };
    for (int d = 0; d < 2; d++) {
        write_hf(&r, in_dir("n", "model.safetensors"), (hf_opts){ "vit.", decs[d], NULL, NULL, 1, 0 });
        expect_same(ref, in_dir("n", NULL), d ? "transformers 5 names, directory" : "transformers 4 names, directory");
        expect_same(ref, in_dir("n", "model.safetensors"), d ? "transformers 5 names, file" : "transformers 4 names, file");
        /* the same file without config.json: the heads are guessed (64 / 64 = 1), the decoder's
         * cannot be (32): the file alone does not say, and it is an error, not a wrong model */
        rename(in_dir("n", "config.json"), in_dir("n", "config.off"));
        expect_fail(in_dir("n", NULL), MAE_ERR_FORMAT, "decoder_num_heads", NULL, "no config.json, decoder heads");
        rename(in_dir("n", "config.off"), in_dir("n", "config.json"));
    }
    /* ViTMAEModel: no "vit.", no decoder */
    write_hf(&r, in_dir("n", "model.safetensors"), (hf_opts){ "", V5, NULL, NULL, 0, 0 });
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(in_dir("n", NULL), &m));
    int has = 1;
    if (m) {
        mae_model_has_decoder(m, &has);
        CHECK(!has && m->cfg.H == 4 && m->cfg.D == 64 && m->cfg.qkv_bias == 0 && m->cfg.eps == 1e-5f, "encoder-only config");
        CHECK(same_forward(m, m), "encoder-only forward");
        /* its latent is the reference's latent */
        mae_model *enc = NULL;
        CHECK_OK(mae_model_load(in_dir("n", "model.safetensors"), &enc));
        mae_model_free(enc);
    }
    mae_model_free(m);
    /* a timm config.json (another model_type) is ignored: the file alone decides */
    write_text(in_dir("n", "config.json"), "{\"architecture\": \"vit_base_patch16_224\", \"num_classes\": 1000, "
                                          "\"model_type\": \"vit\", \"hidden_act\": \"relu\"}");
    write_hf(&r, in_dir("n", "model.safetensors"), (hf_opts){ "vit.", V5, NULL, NULL, 1, 0 });
    expect_fail(in_dir("n", "model.safetensors"), MAE_ERR_FORMAT, "decoder_num_heads", NULL, "timm config.json ignored");
    mae_model_free(ref);
    free_weights(&r);
    clear_sub("n");
}

/* Each setting of config.json changes the model as it says; without it the model differs. */
static void test_config_settings(void)
{
    mae_config c = base_config();
    c.decoder_embed_dim = 64;   /* so that the file alone loads too, with guessed heads (64 / 64 = 1) */
    c.decoder_num_heads = 4;
    weights r = make_weights(&c);
    char json[4096];
    mae_model *ref = NULL, *guess = NULL, *m = NULL;
    make_sub("c");
    write_official(&r, in_dir("c", "ref.safetensors"));
    CHECK_OK(mae_model_load(in_dir("c", "ref.safetensors"), &ref));
    unlink(in_dir("c", "ref.safetensors"));
    write_hf(&r, in_dir("c", "model.safetensors"), (hf_opts){ "vit.", V5, NULL, NULL, 1, 0 });
    CHECK_OK(mae_model_load(in_dir("c", NULL), &guess));   /* no config.json: guesses */
    config_json(&c, NULL, NULL, json, sizeof json);
    write_text(in_dir("c", "config.json"), json);
    CHECK_OK(mae_model_load(in_dir("c", NULL), &m));
    if (ref && guess && m) {
        CHECK(same_config(ref, m) && same_forward(ref, m), "config.json settings");
        CHECK(m->cfg.H == 4 && m->cfg.dH == 4 && m->cfg.norm_pix == 1 && m->cfg.mask_ratio == 0.5f && m->cfg.eps == 1e-5f &&
              m->cfg.dhidden == 80 && m->cfg.hidden == 192 && m->cfg.qkv_bias == 0, "config.json values");
        /* what the file alone gives: the other heads, no norm_pix, 0.75, 1e-12; widths and the
         * absent bias follow the shapes */
        CHECK(guess->cfg.H == 1 && guess->cfg.dH == 1 && guess->cfg.norm_pix == 0 && guess->cfg.mask_ratio == 0.75f &&
              guess->cfg.eps == 1e-12f && guess->cfg.dhidden == 80 && guess->cfg.qkv_bias == 0, "guessed values");
        CHECK(!same_forward(ref, guess), "the guessed model computes the same: the test cannot tell");
    }
    mae_model_free(m);
    mae_model_free(guess);
    /* qkv_bias false computes as a zero bias: the same weights with zero q/k/v biases and
     * qkv_bias true give bitwise the same outputs */
    write_hf(&r, in_dir("c", "model.safetensors"), (hf_opts){ "vit.", V5, NULL, NULL, 1, 1 });
    config_json(&c, "qkv_bias", ",\n  \"qkv_bias\": true", json, sizeof json);
    write_text(in_dir("c", "config.json"), json);
    m = NULL;
    CHECK_OK(mae_model_load(in_dir("c", NULL), &m));
    if (ref && m) {
        const float *b = NULL;
        CHECK(m->cfg.qkv_bias == 1 && mae_model_tensor(m, "blocks.0.attn.qkv.bias", &b, NULL, NULL, NULL) == MAE_OK,
              "zero bias loaded");
        CHECK(mae_model_tensor(ref, "blocks.0.attn.qkv.bias", &b, NULL, NULL, NULL) == MAE_ERR_INVALID_ARG,
              "a model without q/k/v bias lists the tensor");
        CHECK(same_forward(ref, m), "qkv_bias false differs from a zero bias");
    }
    mae_model_free(m);
    mae_model_free(ref);
    free_weights(&r);
    clear_sub("c");
}

/* __metadata__ (libmae's files) and config.json: where both give a setting they must agree. */
static void test_precedence(void)
{
    mae_config c = base_config();
    weights r = make_weights(&c);
    char json[4096];
    mae_model *ref = NULL;
    make_sub("p");
    write_official(&r, in_dir("p", "model.safetensors"));
    CHECK_OK(mae_model_load(in_dir("p", "model.safetensors"), &ref));
    config_json(&c, NULL, NULL, json, sizeof json);
    write_text(in_dir("p", "config.json"), json);
    expect_same(ref, in_dir("p", NULL), "metadata and an agreeing config.json");
    config_json(&c, "num_attention_heads", ",\n  \"num_attention_heads\": 2", json, sizeof json);
    write_text(in_dir("p", "config.json"), json);
    expect_fail(in_dir("p", NULL), MAE_ERR_FORMAT, "num_attention_heads = 2", "__metadata__ num_heads = 4", "heads disagree");
    config_json(&c, "mask_ratio", ",\n  \"mask_ratio\": 0.75", json, sizeof json);
    write_text(in_dir("p", "config.json"), json);
    expect_fail(in_dir("p", NULL), MAE_ERR_FORMAT, "mask_ratio = 0.75", "__metadata__ mask_ratio = 0.5", "mask ratio disagrees");
    config_json(&c, "intermediate_size", ",\n  \"intermediate_size\": 128", json, sizeof json);
    write_text(in_dir("p", "config.json"), json);
    expect_fail(in_dir("p", NULL), MAE_ERR_FORMAT, "intermediate_size = 128", "mlp_ratio", "MLP width disagrees");
    /* a config.json that gives fewer keys: the metadata gives the rest */
    write_text(in_dir("p", "config.json"), "{\"model_type\": \"vit_mae\", \"num_attention_heads\": 4}");
    expect_same(ref, in_dir("p", NULL), "metadata with a partial config.json");
    mae_model_free(ref);
    free_weights(&r);
    clear_sub("p");
}

/* Every malformed, hostile, unsupported or contradicting config.json, and mixed names. */
static void test_errors(void)
{
    mae_config c = base_config();
    weights r = make_weights(&c);
    char json[4096];
    make_sub("e");
    char d[512];
    snprintf(d, sizeof d, "%s", in_dir("e", NULL));
    write_hf(&r, in_dir("e", "model.safetensors"), (hf_opts){ "vit.", V5, NULL, NULL, 1, 0 });
    static const struct { const char *omit, *extra; mae_status want; const char *m1, *m2; } cases[] = {
        { "hidden_act", ",\n  \"hidden_act\": \"relu\"", MAE_ERR_UNSUPPORTED, "hidden_act", "relu" },
        { "hidden_act", ",\n  \"hidden_act\": \"gelu_new\"", MAE_ERR_UNSUPPORTED, "hidden_act", "gelu_new" },
        { "hidden_dropout_prob", ",\n  \"hidden_dropout_prob\": 0.1", MAE_ERR_UNSUPPORTED, "hidden_dropout_prob", "dropout" },
        { "image_size", ",\n  \"image_size\": [16, 32]", MAE_ERR_UNSUPPORTED, "image_size", "square" },
        { "hidden_size", ",\n  \"hidden_size\": 128", MAE_ERR_SHAPE, "hidden_size = 128", "[64, 2, 4, 4]" },
        { "num_channels", ",\n  \"num_channels\": 3", MAE_ERR_SHAPE, "num_channels = 3", "patch_embeddings" },
        { "num_hidden_layers", ",\n  \"num_hidden_layers\": 3", MAE_ERR_SHAPE, "num_hidden_layers = 3", "encoder layers are 2" },
        { "decoder_num_hidden_layers", ",\n  \"decoder_num_hidden_layers\": 1", MAE_ERR_SHAPE, "decoder_num_hidden_layers = 1", "decoder layers are 2" },
        { "intermediate_size", ",\n  \"intermediate_size\": 256", MAE_ERR_SHAPE, "intermediate_size = 256", "intermediate.dense.weight" },
        { "decoder_intermediate_size", ",\n  \"decoder_intermediate_size\": 96", MAE_ERR_SHAPE, "decoder_intermediate_size = 96", "[80, 32]" },
        { "decoder_hidden_size", ",\n  \"decoder_hidden_size\": 64", MAE_ERR_SHAPE, "decoder_hidden_size = 64", "decoder_embed.weight" },
        { "image_size", ",\n  \"image_size\": 32", MAE_ERR_SHAPE, "image_size", "position_embeddings" },
        { "qkv_bias", ",\n  \"qkv_bias\": true", MAE_ERR_SHAPE, "qkv_bias = true", "query.bias" },
        { "hidden_size", ",\n  \"hidden_size\": \"64\"", MAE_ERR_FORMAT, "hidden_size", "not a number" },
        { "hidden_size", ",\n  \"hidden_size\": 64.5", MAE_ERR_FORMAT, "hidden_size", "not an integer" },
        { "hidden_size", ",\n  \"hidden_size\": 1e400", MAE_ERR_FORMAT, "hidden_size", "not an integer" },
        { "hidden_size", ",\n  \"hidden_size\": -64", MAE_ERR_FORMAT, "hidden_size", "not an integer" },
        { "num_hidden_layers", ",\n  \"num_hidden_layers\": 100000000000000000000", MAE_ERR_FORMAT, "num_hidden_layers", "not an integer" },
        { "mask_ratio", ",\n  \"mask_ratio\": 1.5", MAE_ERR_FORMAT, "mask_ratio", "out of range" },
        { "layer_norm_eps", ",\n  \"layer_norm_eps\": 0", MAE_ERR_FORMAT, "layer_norm_eps", "out of range" },
        { "qkv_bias", ",\n  \"qkv_bias\": 1", MAE_ERR_FORMAT, "qkv_bias", "true or false" },
        { "norm_pix_loss", ",\n  \"norm_pix_loss\": null", MAE_ERR_FORMAT, "norm_pix_loss", "true or false" },
        { NULL, ",\n  \"num_attention_heads\": 4", MAE_ERR_FORMAT, "num_attention_heads", "twice" },
        { NULL, ",\n  \"model_type\": \"vit_mae\"", MAE_ERR_FORMAT, "model_type", "twice" },
        { NULL, ",\n  \"x\": 1,", MAE_ERR_FORMAT, "config.json", "byte" },
        { NULL, "}{", MAE_ERR_FORMAT, "config.json", "after the object" },
        { "num_attention_heads", ",\n  \"num_attention_heads\": 5", MAE_ERR_FORMAT, "num_heads 5", "divide" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_json(&c, cases[i].omit, cases[i].extra, json, sizeof json);
        write_text(in_dir("e", "config.json"), json);
        expect_fail(d, cases[i].want, cases[i].m1, cases[i].m2, tu_name("config.json case %zu (%s)", i, cases[i].m1));
    }
    /* hostile: deep nesting, a huge file, not an object */
    size_t deep = 200000;
    char *text = tu_malloc(2 * deep + 64);
    size_t n = (size_t)sprintf(text, "{\"model_type\": \"vit_mae\", \"x\": ");
    memset(text + n, '[', deep);
    memset(text + n + deep, ']', deep);
    strcpy(text + n + 2 * deep, "}");
    write_text(in_dir("e", "config.json"), text);
    free(text);
    expect_fail(d, MAE_ERR_FORMAT, "config.json", "nested deeper", "deep nesting");
    FILE *fp = fopen(in_dir("e", "config.json"), "wb");
    CHECK(fp && fputs("{\"model_type\": \"vit_mae\"", fp) >= 0 && ftruncate(fileno(fp), 100000000) == 0 && fclose(fp) == 0,
          "100 MB config.json");
    expect_fail(d, MAE_ERR_FORMAT, "config.json", "more than", "100 MB config.json");
    write_text(in_dir("e", "config.json"), "[\"model_type\", \"vit_mae\"]");
    expect_fail(d, MAE_ERR_FORMAT, "config.json", "not a JSON object", "not an object");
    write_text(in_dir("e", "config.json"), "{\"model_type\": \"vit_mae\", \"hidden_size\": 64");
    expect_fail(d, MAE_ERR_FORMAT, "config.json", "end of the", "truncated");
    unlink(in_dir("e", "config.json"));
    /* mixed naming schemes */
    write_hf(&r, in_dir("e", "model.safetensors"), (hf_opts){ "vit.", V5, NULL, V4 "0.layernorm_before.weight", 1, 0 });
    expect_fail(d, MAE_ERR_FORMAT, "mixes the two Hugging Face decoder layer namings", V4 "0.layernorm_before.weight", "v4 + v5");
    write_hf(&r, in_dir("e", "model.safetensors"), (hf_opts){ "vit.", V5, NULL, "encoder.layer.0.layernorm_before.weight", 1, 0 });
    expect_fail(d, MAE_ERR_FORMAT, "with and without the 'vit.' prefix", NULL, "vit. + bare");
    write_hf(&r, in_dir("e", "model.safetensors"), (hf_opts){ "vit.", V5, NULL, "blocks.0.norm1.weight", 1, 0 });
    expect_fail(d, MAE_ERR_FORMAT, "official MAE and Hugging Face", "blocks.0.norm1.weight", "official + hf");
    /* a directory without weights */
    unlink(in_dir("e", "model.safetensors"));
    expect_fail(d, MAE_ERR_IO, "neither model.safetensors nor", NULL, "empty directory");
    free_weights(&r);
    clear_sub("e");
}

/* ---- shards ----------------------------------------------------------------------------------- */

/* Splits sub/model.safetensors' tensors over two shard files (alternating) and writes the index;
 * then removes model.safetensors. */
static void shard(const char *sub, const char *index_extra_name, const char *index_extra_shard)
{
    mae_st_file f;
    CHECK_OK(mae_st_open(in_dir(sub, "model.safetensors"), &f));
    static const char *const shard_names[2] = { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" };
    mae_st_out *out[2];
    int n[2] = { 0, 0 };
    float *vals = tu_malloc((f.data_size + 4) * 2);
    size_t at = 0;
    char *index = tu_malloc((size_t)f.n * 256 + 1024);
    size_t len = (size_t)sprintf(index, "{\"metadata\": {\"total_size\": %zu}, \"weight_map\": {", f.data_size);
    for (int k = 0; k < 2; k++)
        out[k] = tu_malloc((size_t)f.n * sizeof *out[k]);
    for (int i = 0; i < f.n; i++) {
        int k = i % 2;
        mae_st_read_f32(&f, &f.t[i], vals + at, f.t[i].count);
        out[k][n[k]++] = (mae_st_out){ f.t[i].name, vals + at, f.t[i].ndim, f.t[i].shape };
        at += f.t[i].count;
        len += (size_t)sprintf(index + len, "%s\"%s\": \"%s\"", i ? ", " : "", f.t[i].name, shard_names[k]);
    }
    if (index_extra_name)
        len += (size_t)sprintf(index + len, ", \"%s\": \"%s\"", index_extra_name, index_extra_shard);
    sprintf(index + len, "}}");
    mae_st_meta meta = { "format", "pt" };
    for (int k = 0; k < 2; k++)
        CHECK_OK(mae_st_write(in_dir(sub, shard_names[k]), out[k], n[k], &meta, 1));
    write_text(in_dir(sub, "model.safetensors.index.json"), index);
    unlink(in_dir(sub, "model.safetensors"));
    for (int k = 0; k < 2; k++)
        free(out[k]);
    free(vals);
    free(index);
    mae_st_close(&f);
}

static void test_shards(void)
{
    mae_config c = base_config();
    weights r = make_weights(&c);
    char json[4096];
    mae_model *ref = NULL;
    make_sub("s");
    char d[512];
    snprintf(d, sizeof d, "%s", in_dir("s", NULL));
    write_official(&r, in_dir("s", "ref.safetensors"));
    CHECK_OK(mae_model_load(in_dir("s", "ref.safetensors"), &ref));
    unlink(in_dir("s", "ref.safetensors"));
    config_json(&c, NULL, NULL, json, sizeof json);
    write_text(in_dir("s", "config.json"), json);
    hf_opts o = { "vit.", V5, NULL, NULL, 1, 0 };
    write_hf(&r, in_dir("s", "model.safetensors"), o);
    shard("s", NULL, NULL);
    expect_same(ref, d, "sharded directory");
    expect_same(ref, in_dir("s", "model.safetensors.index.json"), "the index file itself");
    /* a shard missing */
    rename(in_dir("s", "model-00002-of-00002.safetensors"), in_dir("s", "other.safetensors"));
    expect_fail(d, MAE_ERR_IO, "model-00002-of-00002.safetensors", "missing", "a shard missing");
    rename(in_dir("s", "other.safetensors"), in_dir("s", "model-00002-of-00002.safetensors"));
    /* a name in the map that its shard does not have */
    clear_sub("s");
    make_sub("s");
    write_text(in_dir("s", "config.json"), json);
    write_hf(&r, in_dir("s", "model.safetensors"), o);
    shard("s", "vit.extra.weight", "model-00001-of-00002.safetensors");
    expect_fail(d, MAE_ERR_FORMAT, "vit.extra.weight", "not in its shard", "a name absent from its shard");
    /* a path escaping the directory */
    clear_sub("s");
    make_sub("s");
    write_text(in_dir("s", "config.json"), json);
    write_hf(&r, in_dir("s", "model.safetensors"), o);
    shard("s", "vit.extra.weight", "../model-00001-of-00002.safetensors");
    expect_fail(d, MAE_ERR_FORMAT, "../model-00001-of-00002.safetensors", "not a file name", "a path escaping the directory");
    /* a tensor in two shards: both shards hold the classifier, the map names one of them; then
     * shards whose __metadata__ disagree */
    for (int variant = 0; variant < 2; variant++) {
        clear_sub("s");
        make_sub("s");
        write_text(in_dir("s", "config.json"), json);
        write_hf(&r, in_dir("s", "model.safetensors"), o);
        shard("s", NULL, NULL);
        mae_st_file f;
        CHECK_OK(mae_st_open(in_dir("s", "model-00002-of-00002.safetensors"), &f));
        mae_st_out *out = tu_malloc((size_t)(f.n + 1) * sizeof *out);
        float *vals = tu_malloc(f.data_size * 2 + 64), junk[6] = { 1, 2, 3, 4, 5, 6 };
        static const int64_t js[2] = { 2, 3 };
        size_t at = 0;
        for (int i = 0; i < f.n; i++) {
            mae_st_read_f32(&f, &f.t[i], vals + at, f.t[i].count);
            out[i] = (mae_st_out){ f.t[i].name, vals + at, f.t[i].ndim, f.t[i].shape };
            at += f.t[i].count;
        }
        out[f.n] = (mae_st_out){ "classifier.weight", junk, 2, js };   /* shard 1 has it (index 0) */
        mae_st_meta meta = { "format", "pt" }, other = { "format", "np" };
        CHECK_OK(mae_st_write(in_dir("s", "model-00002-of-00002.safetensors"), out, f.n + 1 - variant,
                              variant ? &other : &meta, 1));
        mae_st_close(&f);
        free(out);
        free(vals);
        if (variant == 0)
            expect_fail(d, MAE_ERR_FORMAT, "classifier.weight", "weight_map puts it in", "a tensor in two shards");
        else
            expect_fail(d, MAE_ERR_FORMAT, "__metadata__ disagree on 'format'", "'np'", "shards' metadata disagree");
    }
    /* malformed indexes */
    static const char *const bad_index[][2] = {
        { "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"a\": \"model-00001-of-00002.safetensors\"}}", "twice" },
        { "{\"metadata\": {}}", "no weight_map" },
        { "{\"weight_map\": {}}", "empty" },
        { "{\"weight_map\": {\"a\": 3}}", "not a string" },
        { "{\"weight_map\": {\"a\": \"/etc/passwd\"}}", "not a file name" },
        { "{\"weight_map\": {\"a\": \"..\"}}", "not a file name" },
        { "[1]", "not a JSON object" },
    };
    for (size_t i = 0; i < sizeof bad_index / sizeof bad_index[0]; i++) {
        write_text(in_dir("s", "model.safetensors.index.json"), bad_index[i][0]);
        expect_fail(d, MAE_ERR_FORMAT, "index.json", bad_index[i][1], tu_name("bad index %zu", i));
    }
    mae_model_free(ref);
    free_weights(&r);
    clear_sub("s");
}

/* ---- writing Hugging Face directories --------------------------------------------------------- */

static int file_has(const char *path, const char *text)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    if (b)
        b[n] = '\0';   /* tu_read_file leaves room for it */
    int ok = b && strstr((const char *)b, text) != NULL;
    free(b);
    return ok;
}

static void test_save_hf(void)
{
    mae_config c = base_config();
    weights r = make_weights(&c);
    mae_model *ref = NULL, *back = NULL;
    make_sub("w");
    write_official(&r, in_dir("w", "ref.safetensors"));
    CHECK_OK(mae_model_load(in_dir("w", "ref.safetensors"), &ref));
    unlink(in_dir("w", "ref.safetensors"));
    char out[512];
    snprintf(out, sizeof out, "%s", in_dir("w", "hf"));
    if (!ref)
        return;
    CHECK_OK(mae_model_save_hf(ref, out));
    expect_same(ref, out, "save as Hugging Face -> load");
    /* the names and keys of the table, the config as transformers writes it */
    mae_st_file f;
    char *cfgpath = strdup(in_dir("w", "hf/config.json"));
    CHECK_OK(mae_st_open(in_dir("w", "hf/model.safetensors"), &f));
    int n_expected = 0;
    for (int i = 0; i < ref->n_tensors; i++) {
        char name[160];
        int parts = hf_name(ref->tensors[i].name, 0, "vit.", V5, name, sizeof name);
        for (int p = 0; p < parts; p++, n_expected++) {
            hf_name(ref->tensors[i].name, p, "vit.", V5, name, sizeof name);
            CHECK(mae_st_find(&f, name) != NULL, "saved file lacks '%s'", name);
        }
    }
    CHECK(f.n == n_expected && f.n_meta == 1 && strcmp(mae_st_meta_get(&f, "format"), "pt") == 0 &&
          !mae_st_find(&f, "vit.encoder.layer.0.attention.attention.query.bias"), "saved file: %d tensors, %d metadata", f.n, f.n_meta);
    mae_st_close(&f);
    static const char *const keys[] = {
        "\"architectures\": [\"ViTMAEForPreTraining\"]", "\"model_type\": \"vit_mae\"", "\"image_size\": 16", "\"patch_size\": 4",
        "\"num_channels\": 2", "\"hidden_size\": 64", "\"num_hidden_layers\": 2", "\"num_attention_heads\": 4",
        "\"intermediate_size\": 192", "\"decoder_hidden_size\": 32", "\"decoder_num_hidden_layers\": 2",
        "\"decoder_num_attention_heads\": 2", "\"decoder_intermediate_size\": 80", "\"hidden_act\": \"gelu\"",
        "\"layer_norm_eps\": 1e-05", "\"qkv_bias\": false", "\"mask_ratio\": 0.5", "\"norm_pix_loss\": true",
        "\"hidden_dropout_prob\": 0.0", "\"attention_probs_dropout_prob\": 0.0",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK(file_has(cfgpath, keys[i]), "config.json lacks %s", keys[i]);
    /* saving over it again replaces it; a directory with other files in it is refused, untouched */
    CHECK_OK(mae_model_save_hf(ref, out));
    expect_same(ref, out, "saved twice");
    write_text(in_dir("w", "hf/README.md"), "mine");
    CHECK(mae_model_save_hf(ref, out) == MAE_ERR_IO && strstr(mae_last_error(), "README.md"), "foreign file: %s", mae_last_error());
    CHECK(file_has(in_dir("w", "hf/README.md"), "mine"), "the foreign file survived");
    expect_same(ref, out, "the refused save left the directory");
    unlink(in_dir("w", "hf/README.md"));
    /* nothing is left beside it */
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld.0", out, (long)getpid());
    struct stat st;
    CHECK(stat(tmpname, &st) != 0, "a temporary directory was left");
    /* encoder only: ViTMAEModel, no "vit." */
    mae_model *enc = NULL;
    write_hf(&r, in_dir("w", "w.safetensors"), (hf_opts){ "", V5, NULL, NULL, 0, 0 });
    write_text(in_dir("w", "config.json"), "{\"model_type\": \"vit_mae\", \"num_attention_heads\": 4, \"layer_norm_eps\": 1e-05}");
    CHECK_OK(mae_model_load(in_dir("w", "w.safetensors"), &enc));
    if (enc) {
        CHECK_OK(mae_model_save_hf(enc, out));
        CHECK(file_has(cfgpath, "\"architectures\": [\"ViTMAEModel\"]") && !file_has(cfgpath, "decoder_hidden_size"),
              "encoder-only config.json");
        CHECK_OK(mae_st_open(in_dir("w", "hf/model.safetensors"), &f));
        CHECK(mae_st_find(&f, "embeddings.cls_token") && mae_st_find(&f, "encoder.layer.1.output.dense.weight") &&
              !mae_st_find(&f, "vit.embeddings.cls_token") && !mae_st_find(&f, "decoder.mask_token"), "encoder-only names");
        mae_st_close(&f);
        CHECK_OK(mae_model_load(out, &back));
        CHECK(back && same_config(enc, back) && same_forward(enc, back), "encoder-only round trip");
        mae_model_free(back);
    }
    mae_model_free(enc);
    /* with a q/k/v bias (and the default decoder width), through the CLI's path too */
    mae_config c2 = base_config();
    c2.qkv_bias = 1;
    c2.decoder_mlp_hidden = 0;
    weights r2 = make_weights(&c2);
    mae_model *ref2 = NULL;
    write_official(&r2, in_dir("w", "ref.safetensors"));
    CHECK_OK(mae_model_load(in_dir("w", "ref.safetensors"), &ref2));
    if (ref2) {
        CHECK_OK(mae_model_save_hf(ref2, out));
        CHECK(file_has(cfgpath, "\"qkv_bias\": true") && file_has(cfgpath, "\"decoder_intermediate_size\": 96"), "qkv_bias true");
        expect_same(ref2, out, "round trip with q/k/v bias");
    }
    mae_model_free(ref2);
    free_weights(&r2);
    unlink(in_dir("w", "ref.safetensors"));
    unlink(in_dir("w", "w.safetensors"));
    clear_sub("w/hf");
    free(cfgpath);
    mae_model_free(ref);
    free_weights(&r);
    clear_sub("w");
}

/* Every block the library allocates starts as NaNs: memory it reads without writing shows. */
static void *poison_alloc(void *user, size_t size)
{
    (void)user;
    void *p = malloc(size);
    if (p)
        memset(p, 0xFF, size);
    return p;
}

static void poison_free(void *user, void *p)
{
    (void)user;
    free(p);
}

/* qkv_bias 0 in training: no gradient, no step, no file entry for the absent bias, its slot zero
 * through trainer creation and a trainer checkpoint's load; a decoder MLP width of its own trains
 * and saves. */
static void test_train(void)
{
    static const mae_allocator poison = { poison_alloc, poison_free, NULL };
    CHECK_OK(mae_set_allocator(&poison));
    mae_config c = base_config();
    mae_model *m = NULL;
    mae_trainer *t = NULL;
    CHECK_OK(mae_model_create(&c, 3, &m));
    if (!m) {
        mae_set_allocator(NULL);
        return;
    }
    CHECK_OK(mae_trainer_create(m, 2, &t));
    size_t ni = (size_t)2 * c.in_chans * c.img_size * c.img_size;
    float *imgs = tu_malloc(ni * 4), loss = 0;
    const float *g;
    size_t count;
    tu_fill(imgs, ni, -1, 1);
    for (int step = 0; t && step < 3; step++) {
        CHECK_OK(mae_trainer_forward_backward(t, imgs, 2, NULL, &loss));
        CHECK_OK(mae_trainer_step(t));
    }
    CHECK(isfinite(loss), "loss %g", (double)loss);
    CHECK(t && mae_trainer_grad(t, "blocks.0.attn.qkv.bias", &g, &count) == MAE_ERR_INVALID_ARG, "a gradient for the absent bias");
    int zero = 1;
    for (int l = 0; l < m->cfg.depth; l++) {
        mae_block_w w;
        mae_block_view(&m->lay, m->data, 0, l, &w);
        for (int i = 0; i < 3 * m->cfg.D; i++)
            zero &= w.qkv_b[i] == 0.0f;
    }
    CHECK(zero, "the absent bias's slot changed in training");
    CHECK(m->cfg.dhidden == 80 && m->tensors[0].count > 0, "decoder width");
    /* a trainer checkpoint resumes into a fresh model with the slot still zero: the next step's
     * loss is bitwise the one the first trainer gets */
    mae_model *m2 = NULL;
    mae_trainer *t2 = NULL;
    float l1 = 0, l2 = 1;
    CHECK_OK(mae_trainer_save(t, in_dir("t.safetensors", NULL)));
    CHECK_OK(mae_model_create(&c, 4, &m2));
    if (m2)
        CHECK_OK(mae_trainer_create(m2, 2, &t2));
    if (t2) {
        CHECK_OK(mae_trainer_load(t2, in_dir("t.safetensors", NULL)));
        for (int l = 0; l < m2->cfg.depth; l++) {
            mae_block_w w;
            mae_block_view(&m2->lay, m2->data, 0, l, &w);
            for (int i = 0; i < 3 * m2->cfg.D; i++)
                zero &= w.qkv_b[i] == 0.0f;
        }
        CHECK(zero, "the absent bias's slot is not zero after mae_trainer_load");
        CHECK_OK(mae_trainer_forward_backward(t, imgs, 2, NULL, &l1));
        CHECK_OK(mae_trainer_forward_backward(t2, imgs, 2, NULL, &l2));
        CHECK(memcmp(&l1, &l2, sizeof l1) == 0, "resumed loss %.9g vs %.9g", (double)l2, (double)l1);
    }
    mae_trainer_free(t2);
    mae_model_free(m2);
    unlink(in_dir("t.safetensors", NULL));
    mae_trainer_free(t);
    CHECK_OK(mae_model_save(m, in_dir("m.safetensors", NULL)));
    mae_model *back = NULL;
    CHECK_OK(mae_model_load(in_dir("m.safetensors", NULL), &back));
    CHECK(back && same_config(m, back) && same_forward(m, back), "trained model round trip");
    mae_model_free(back);
    unlink(in_dir("m.safetensors", NULL));
    free(imgs);
    mae_model_free(m);
    mae_set_allocator(NULL);
}

/* The float64 PyTorch reference of tests/data/hf4 (gen_reference.py: 4 heads on a 128-wide
 * encoder, 4 on the 64-wide decoder, decoder MLP 96, no q/k/v bias, norm_pix_loss, mask ratio
 * 0.5, eps 1e-12), loaded as a Hugging Face directory; the same weights run with 2 heads (what the
 * D/64 guess gave before config.json was read) are far off it. */
static double golden_run(const char *path, const mae_st_file *io, int check, double *e_pred)
{
    mae_model *m = NULL;
    mae_ctx *ctx = NULL;
    mae_status s = mae_model_load(path, &m);
    CHECK(s == MAE_OK, "%s: %s", path, mae_last_error());
    if (!m)
        return INFINITY;
    const mae_st_entry *ei = mae_st_find(io, "imgs"), *en = mae_st_find(io, "noise"), *el = mae_st_find(io, "latent"),
                       *ep = mae_st_find(io, "pred"), *elo = mae_st_find(io, "loss");
    CHECK(ei && en && el && ep && elo, "hf4.io: tensors missing");
    if (!ei || !en || !el || !ep || !elo) {
        mae_model_free(m);
        return INFINITY;
    }
    float *imgs = tu_malloc(ei->count * 4), *noise = tu_malloc(en->count * 4), *lat = tu_malloc(el->count * 4),
          *pred = tu_malloc(ep->count * 4), *wl = tu_malloc(el->count * 4), *wp = tu_malloc(ep->count * 4), wloss, loss = 0;
    mae_st_read_f32(io, ei, imgs, ei->count);
    mae_st_read_f32(io, en, noise, en->count);
    mae_st_read_f32(io, el, wl, el->count);
    mae_st_read_f32(io, ep, wp, ep->count);
    mae_st_read_f32(io, elo, &wloss, 1);
    int B = (int)ei->shape[0];
    CHECK_OK(mae_ctx_create(m, B, &ctx));
    if (ctx)
        CHECK_OK(mae_ctx_set_mask_ratio(ctx, 0.5f));   /* the reference's keep count, whatever the model's default */
    if (ctx)
        CHECK_OK(mae_forward(ctx, imgs, B, noise, &loss, pred, NULL, lat));
    double e_lat = tu_rel_l2(lat, wl, el->count);
    *e_pred = tu_rel_l2(pred, wp, ep->count);
    if (check) {
        CHECK(m->cfg.H == 4 && m->cfg.dH == 4 && m->cfg.dhidden == 96 && !m->cfg.qkv_bias && m->cfg.norm_pix &&
              m->cfg.mask_ratio == 0.5f && m->cfg.eps == 1e-12f, "hf4: config");
        CHECK(e_lat <= 1e-5 && *e_pred <= 1e-5 && fabs(loss - wloss) <= 1e-5 * fabs(wloss),
              "hf4: latent %.3g, pred %.3g, loss %.9g vs %.9g", e_lat, *e_pred, (double)loss, (double)wloss);
        printf("hf4 against PyTorch float64: latent rel err %.3g, pred %.3g, loss %.9g vs %.9g\n", e_lat, *e_pred, (double)loss,
               (double)wloss);
    }
    mae_ctx_free(ctx);
    mae_model_free(m);
    free(imgs); free(noise); free(lat); free(pred); free(wl); free(wp);
    return e_lat;
}

static void test_golden(void)
{
    mae_st_file io;
    double e_pred = 0;
    CHECK_OK(mae_st_open(tu_path("tests/data/hf4.io.safetensors"), &io));
    golden_run(tu_path("tests/data/hf4"), &io, 1, &e_pred);
    /* the same weights with 2 heads */
    make_sub("g");
    size_t nw, nc;
    unsigned char *w = tu_read_file(tu_path("tests/data/hf4/model.safetensors"), &nw);
    char *cfg = (char *)tu_read_file(tu_path("tests/data/hf4/config.json"), &nc);
    if (cfg)
        cfg[nc] = '\0';   /* tu_read_file leaves room for it */
    char *heads = cfg ? strstr(cfg, "\"num_attention_heads\": 4") : NULL;
    CHECK(w && heads, "hf4 files");
    if (w && heads) {
        FILE *fp = fopen(in_dir("g", "model.safetensors"), "wb");
        CHECK(fp && fwrite(w, 1, nw, fp) == nw && fclose(fp) == 0, "copy");
        heads[strlen("\"num_attention_heads\": ")] = '2';
        write_text(in_dir("g", "config.json"), cfg);
        double e2 = golden_run(in_dir("g", NULL), &io, 0, &e_pred);
        CHECK(e2 > 1e-2 && e_pred > 1e-2, "2 heads are as close as 4: the reference cannot tell (latent %.3g)", e2);
        printf("hf4 with 2 heads instead of 4: latent rel err %.3g, pred %.3g\n", e2, e_pred);
    }
    free(w);
    free(cfg);
    mae_st_close(&io);
    clear_sub("g");
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/mae_test_hf_%ld", (long)getpid());
    mkdir(dir, 0777);
    tu_seed(13);
    TU_RUN("namings", test_namings());
    TU_RUN("config_settings", test_config_settings());
    TU_RUN("precedence", test_precedence());
    TU_RUN("errors", test_errors());
    TU_RUN("shards", test_shards());
    TU_RUN("save_hf", test_save_hf());
    TU_RUN("train", test_train());
    TU_RUN("golden", test_golden());
    rmdir(dir);
    return tu_finish("test_hf");
}
