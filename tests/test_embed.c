/* mae_embed against the parts API: the patch embedder, then the encoder with ids_shuffle NULL
 * (every token, image order), pooled here in double. Also: image order against mae_forward's
 * shuffled latent, an encoder-only file, misuse, the getters, mae_ctx_memory against what
 * mae_ctx_create really asks the allocator for, and mae_images_to_input against
 * mae_image_to_input. Outputs are NaN-poisoned, and a sentinel past the batch must survive. */
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"
#include "../src/io/safetensors.h"

enum { B = 3, MAXB = 4 };

static mae_model *tiny(uint64_t seed)
{
    mae_config cfg;
    mae_model *m = NULL;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    cfg.img_height = 24;   /* non-square: a 3x4 grid, so that rows and columns cannot be confused */
    cfg.img_width = cfg.img_size;
    CHECK_OK(mae_model_create(&cfg, seed, &m));
    if (!m)
        exit(tu_finish("test_embed"));
    return m;
}

/* reference tokens [b,1+L,D] through the parts */
static void parts_tokens(const mae_model *m, mae_ctx *c, const float *imgs, int b, float *tokens, float *latent)
{
    const mae_patch_embed *pe;
    const mae_encoder *en;
    CHECK_OK(mae_model_patch_embed(m, &pe));
    CHECK_OK(mae_model_encoder(m, &en));
    CHECK_OK(mae_patch_embed_forward(pe, c, imgs, b, tokens));
    CHECK_OK(mae_encoder_forward(en, c, tokens, b, NULL, m->cfg.L, latent));
}

static int same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

static void check_model(const mae_model *m, const char *what)
{
    int D, T;
    CHECK_OK(mae_model_embed_dims(m, &D, &T));
    int L = T - 1;
    CHECK(D == m->cfg.D && L == m->cfg.L, "%s: embed dims %d x %d, want %d x %d", what, D, T, m->cfg.D, 1 + m->cfg.L);
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, MAXB, &c));
    if (!c)
        return;
    size_t npix = (size_t)m->cfg.C * m->cfg.gh * m->cfg.p * m->cfg.gw * m->cfg.p;
    float *imgs = tu_malloc(MAXB * npix * sizeof(float));
    float *tok = tu_malloc((size_t)MAXB * L * D * sizeof(float));
    float *ref = tu_malloc((size_t)MAXB * T * D * sizeof(float));
    float *out = tu_malloc(((size_t)MAXB * T * D + 1) * sizeof(float));
    tu_fill(imgs, MAXB * npix, -2, 2);
    parts_tokens(m, c, imgs, B, tok, ref);

    /* all tokens: what the encoder gives with ids_shuffle NULL, bit for bit */
    size_t n = (size_t)B * T * D;
    tu_poison(out, n);
    out[n] = 12345.0f;
    CHECK_OK(mae_embed(c, imgs, B, MAE_POOL_TOKENS, out));
    CHECK(same_bits(out, ref, n), "%s: tokens differ from the parts API", what);
    CHECK(out[n] == 12345.0f, "%s: tokens wrote past batch %d", what, B);

    /* cls */
    tu_poison(out, (size_t)B * D);
    out[(size_t)B * D] = 12345.0f;
    CHECK_OK(mae_embed(c, imgs, B, MAE_POOL_CLS, out));
    for (int b = 0; b < B; b++)
        CHECK(same_bits(out + (size_t)b * D, ref + (size_t)b * T * D, (size_t)D), "%s: cls of image %d", what, b);
    CHECK(out[(size_t)B * D] == 12345.0f, "%s: cls wrote past the batch", what);

    /* mean of the patch tokens, in double here */
    tu_poison(out, (size_t)B * D);
    out[(size_t)B * D] = 12345.0f;
    CHECK_OK(mae_embed(c, imgs, B, MAE_POOL_MEAN, out));
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            double s = 0;
            for (int l = 1; l < T; l++)
                s += ref[((size_t)b * T + l) * D + d];
            double want = s / L, got = out[(size_t)b * D + d];
            double e = fabs(got - want) / (fabs(want) + 1e-30);
            if (!(e <= worst))
                worst = isnan(e) ? INFINITY : e;
        }
    CHECK(worst <= 6e-8, "%s: mean pool relative error %.3g (float rounding of a double mean)", what, worst);
    CHECK(out[(size_t)B * D] == 12345.0f, "%s: mean wrote past the batch", what);

    /* image order: mae_forward at ratio 0 gives the same tokens permuted by its ids_shuffle */
    float *noise = tu_malloc((size_t)B * L * sizeof(float));
    int32_t *ids = tu_malloc((size_t)B * L * sizeof(int32_t));
    float *lat = tu_malloc(n * sizeof(float));
    tu_fill(noise, (size_t)B * L, 0, 1);
    CHECK_OK(mae_ctx_set_mask_ratio(c, 0.0f));
    CHECK_OK(mae_forward(c, imgs, B, noise, NULL, NULL, NULL, lat));
    const mae_masker *mk;
    int keep = -1;
    CHECK_OK(mae_model_masker(m, &mk));
    CHECK_OK(mae_masker_forward(mk, c, B, noise, ids, NULL, NULL, &keep));
    CHECK(keep == L, "%s: keep %d at ratio 0", what, keep);
    CHECK_OK(mae_embed(c, imgs, B, MAE_POOL_TOKENS, out));
    int moved = 0;
    double perm_err = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L; i++) {
            int l = ids[(size_t)b * L + i];
            moved += l != i;
            double e = tu_rel_l2(lat + ((size_t)b * T + 1 + i) * D, out + ((size_t)b * T + 1 + l) * D, (size_t)D);
            perm_err = e > perm_err ? e : perm_err;
        }
    /* attention sums over the tokens in another order: equal to float rounding, not bitwise */
    CHECK(perm_err < 1e-5, "%s: mae_forward's token i is not embed's token ids_shuffle[i] (%.3g)", what, perm_err);
    CHECK(moved > 0, "%s: the random noise did not permute anything (the check could not fail)", what);

    /* the context's RNG is not touched: two drawn forwards around an embed equal two in a row */
    mae_ctx *c2 = NULL;
    CHECK_OK(mae_ctx_create(m, MAXB, &c2));
    if (c2) {
        CHECK_OK(mae_ctx_set_mask_ratio(c2, 0.0f));
        CHECK_OK(mae_forward(c, imgs, 1, NULL, NULL, NULL, NULL, lat));
        CHECK_OK(mae_embed(c, imgs, 1, MAE_POOL_CLS, out));
        CHECK_OK(mae_forward(c, imgs, 1, NULL, NULL, NULL, NULL, lat));
        CHECK_OK(mae_forward(c2, imgs, 1, NULL, NULL, NULL, NULL, ref));
        CHECK_OK(mae_forward(c2, imgs, 1, NULL, NULL, NULL, NULL, ref));
        CHECK(same_bits(lat, ref, (size_t)T * D), "%s: mae_embed moved the context's RNG", what);
        mae_ctx_free(c2);
    }
    free(noise); free(ids); free(lat);
    free(imgs); free(tok); free(ref); free(out);
    mae_ctx_free(c);
}

static void test_misuse(void)
{
    mae_model *m = tiny(3);
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, 2, &c));
    if (!c)
        return;
    size_t npix = (size_t)m->cfg.C * 24 * 32;
    float *imgs = tu_malloc(3 * npix * sizeof(float)), out[4] = { 7, 7, 7, 7 };
    tu_fill(imgs, 3 * npix, -1, 1);
    CHECK(mae_embed(NULL, imgs, 1, MAE_POOL_CLS, out) == MAE_ERR_INVALID_ARG, "NULL context");
    CHECK(mae_embed(c, NULL, 1, MAE_POOL_CLS, out) == MAE_ERR_INVALID_ARG, "NULL imgs");
    CHECK(mae_embed(c, imgs, 1, MAE_POOL_CLS, NULL) == MAE_ERR_INVALID_ARG, "NULL out");
    CHECK(mae_embed(c, imgs, 0, MAE_POOL_CLS, out) == MAE_ERR_SHAPE, "batch 0");
    CHECK(mae_embed(c, imgs, 3, MAE_POOL_CLS, out) == MAE_ERR_SHAPE, "batch over max_batch");
    CHECK(mae_embed(c, imgs, -1, MAE_POOL_CLS, out) == MAE_ERR_SHAPE, "negative batch");
    CHECK(mae_embed(c, imgs, 1, (mae_pool)3, out) == MAE_ERR_INVALID_ARG, "pool 3");
    CHECK(mae_embed(c, imgs, 1, (mae_pool)-1, out) == MAE_ERR_INVALID_ARG, "pool -1");
    CHECK(strstr(mae_last_error(), "pool") != NULL, "the error names the pool: %s", mae_last_error());
    CHECK(out[0] == 7 && out[3] == 7, "a refused call wrote its output");
    CHECK(mae_model_embed_dims(NULL, NULL, NULL) == MAE_ERR_INVALID_ARG, "embed_dims NULL model");
    CHECK_OK(mae_model_embed_dims(m, NULL, NULL));
    size_t bytes;
    CHECK(mae_ctx_memory(NULL, 1, 0, &bytes) == MAE_ERR_INVALID_ARG, "ctx_memory NULL model");
    CHECK(mae_ctx_memory(m, 1, 0, NULL) == MAE_ERR_INVALID_ARG, "ctx_memory NULL bytes");
    CHECK(mae_ctx_memory(m, 0, 0, &bytes) == MAE_ERR_INVALID_ARG, "ctx_memory max_batch 0");
    CHECK(mae_ctx_memory(m, 1, 257, &bytes) == MAE_ERR_INVALID_ARG, "ctx_memory 257 threads");
    CHECK(mae_ctx_memory(m, 0x7fffffff, 1, &bytes) != MAE_OK || bytes > ((size_t)1 << 40), "ctx_memory huge batch");
    /* the context still works after all that */
    CHECK_OK(mae_embed(c, imgs, 2, MAE_POOL_CLS, imgs + 2 * npix));
    free(imgs);
    mae_ctx_free(c);
    mae_model_free(m);
}

/* ---- mae_ctx_memory against the allocator ------------------------------------------------- */

static size_t asked;
static void *sum_alloc(void *user, size_t n) { (void)user; asked += n; return malloc(n); }
static void sum_free(void *user, void *p) { (void)user; free(p); }

static void test_memory(void)
{
    mae_model *m = tiny(4);
    mae_allocator a = { sum_alloc, sum_free, NULL };
    for (int maxb = 1; maxb <= 9; maxb += 4) {
        size_t want = 0;
        CHECK_OK(mae_ctx_memory(m, maxb, 0, &want));
        CHECK_OK(mae_set_allocator(&a));
        asked = 0;
        mae_ctx *c = NULL;
        CHECK_OK(mae_ctx_create(m, maxb, &c));
        size_t got = asked;
        CHECK_OK(mae_set_allocator(NULL));
        /* each of the three blocks carries the aligned allocator's header and padding */
        CHECK(got >= want && got - want <= 3 * 256, "max_batch %d: mae_ctx_memory %zu, mae_ctx_create asked %zu", maxb, want, got);
        size_t w3 = 0, w1 = 0;
        CHECK_OK(mae_ctx_memory(m, maxb, 3, &w3));
        CHECK_OK(mae_ctx_memory(m, maxb, 1, &w1));
        CHECK(w3 > w1, "more threads need more scratch (%zu vs %zu)", w3, w1);
        mae_ctx_free(c);
    }
    mae_model_free(m);
}

/* ---- an encoder-only file ----------------------------------------------------------------- */

typedef struct { const mae_model *m; int idx[64]; } subset;
static void fetch_subset(const void *arg, int i, float *dst)
{
    const subset *s = arg;
    mae_model_tensor_fetch(s->m, s->idx[i], dst);
}

static void test_encoder_only(void)
{
    mae_model *m = tiny(5);
    mae_st_out outs[64];
    subset sub = { m, { 0 } };
    int n = 0;
    for (int i = 0; i < m->n_tensors && n < 64; i++) {
        const mae_tensor *t = &m->tensors[i];
        if (strncmp(t->name, "decoder", 7) == 0 || strcmp(t->name, "mask_token") == 0)
            continue;
        outs[n] = (mae_st_out){ t->name, NULL, t->ndim, t->shape };
        sub.idx[n++] = i;
    }
    mae_st_meta meta[3] = { { "num_heads", "4" }, { "img_height", "24" }, { "img_width", "32" } };
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_embed_%d.safetensors", (int)getpid());
    CHECK_OK(mae_st_write_as(path, outs, n, meta, 3, MAE_DT_F32, fetch_subset, &sub));
    mae_model *e = NULL;
    CHECK_OK(mae_model_load(path, &e));
    unlink(path);
    if (e) {
        int has = 1;
        CHECK_OK(mae_model_has_decoder(e, &has));
        CHECK(has == 0, "the file has no decoder, the model says it has one");
        check_model(e, "encoder-only");
        /* and its features equal the full model's */
        mae_ctx *ce = NULL, *cm = NULL;
        CHECK_OK(mae_ctx_create(e, 1, &ce));
        CHECK_OK(mae_ctx_create(m, 1, &cm));
        size_t npix = (size_t)m->cfg.C * 24 * 32;
        float *img = tu_malloc(npix * sizeof(float)), fe[64], fm[64];
        tu_fill(img, npix, -1, 1);
        if (ce && cm) {
            CHECK_OK(mae_embed(ce, img, 1, MAE_POOL_MEAN, fe));
            CHECK_OK(mae_embed(cm, img, 1, MAE_POOL_MEAN, fm));
            CHECK(tu_rel_l2(fe, fm, 64) < 1e-6, "encoder-only features differ from the full model's");
        }
        free(img);
        mae_ctx_free(ce);
        mae_ctx_free(cm);
    }
    mae_model_free(e);
    mae_model_free(m);
}

/* ---- mae_images_to_input ------------------------------------------------------------------ */

static void test_images_to_input(void)
{
    mae_model *m = tiny(6);
    const int w[3] = { 40, 32, 17 }, h[3] = { 30, 24, 50 }, ch[3] = { 3, 1, 4 };
    uint8_t *px[3];
    for (int b = 0; b < 3; b++) {
        px[b] = tu_malloc((size_t)w[b] * h[b] * ch[b]);
        for (int i = 0; i < w[b] * h[b] * ch[b]; i++)
            px[b][i] = (uint8_t)(tu_uniform() * 256);
    }
    const float mean[3] = MAE_IMAGENET_MEAN, std[3] = MAE_IMAGENET_STD;
    size_t per = 3 * 24 * 32;
    float *out = tu_malloc((3 * per + 1) * sizeof(float)), *one = tu_malloc(per * sizeof(float));
    tu_poison(out, 3 * per);
    out[3 * per] = 12345.0f;
    const uint8_t *const *cpx = (const uint8_t *const *)px;
    CHECK_OK(mae_images_to_input(m, 3, cpx, w, h, ch, NULL, MAE_FILTER_BICUBIC, 1, mean, std, out));
    for (int b = 0; b < 3; b++) {
        CHECK_OK(mae_image_to_input(px[b], w[b], h[b], ch[b], 0, 3, 24, 32, MAE_FILTER_BICUBIC, 1, mean, std, one));
        CHECK(same_bits(out + b * per, one, per), "image %d differs from mae_image_to_input", b);
    }
    CHECK(out[3 * per] == 12345.0f, "mae_images_to_input wrote past the batch");
    const ptrdiff_t strides[3] = { 0, 32, -1 };   /* a negative stride that does not fit a row */
    CHECK(mae_images_to_input(m, 3, cpx, w, h, ch, strides, MAE_FILTER_BILINEAR, 0, NULL, NULL, out) != MAE_OK, "bad stride accepted");
    CHECK(strstr(mae_last_error(), "image 2") != NULL, "the error names the image: %s", mae_last_error());
    const int badch[3] = { 3, 5, 3 };
    CHECK(mae_images_to_input(m, 3, cpx, w, h, badch, NULL, MAE_FILTER_BILINEAR, 0, NULL, NULL, out) == MAE_ERR_INVALID_ARG, "5 channels accepted");
    CHECK(strstr(mae_last_error(), "image 1") != NULL, "the error names the image: %s", mae_last_error());
    CHECK(mae_images_to_input(NULL, 3, cpx, w, h, ch, NULL, MAE_FILTER_BILINEAR, 0, NULL, NULL, out) == MAE_ERR_INVALID_ARG, "NULL model");
    CHECK(mae_images_to_input(m, 0, cpx, w, h, ch, NULL, MAE_FILTER_BILINEAR, 0, NULL, NULL, out) == MAE_ERR_INVALID_ARG, "batch 0");
    for (int b = 0; b < 3; b++)
        free(px[b]);
    free(out); free(one);
    mae_model_free(m);
}

int main(void)
{
    tu_seed(15);
    mae_model *m = tiny(2);
    if (m)
        check_model(m, "tiny");
    mae_model_free(m);
    test_misuse();
    test_memory();
    test_encoder_only();
    test_images_to_input();
    return tu_finish("test_embed");
}
