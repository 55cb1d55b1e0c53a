/* Golden tests: the C forward pass against float64 PyTorch references written by
 * tests/gen_reference.py (see docs/TESTING.md). For every config in tests/data/:
 *   - the model loads (mae_model_load) and holds exactly the file's tensors;
 *   - mae_forward with the stored noise gives the stored mask exactly and latent, pred and loss
 *     within a relative L2 error of 1e-5 (NaN loss for mask ratio 0);
 *   - the masker gives the stored ids_shuffle / ids_restore exactly (stable argsort, with ties);
 *   - the parts run one by one give bitwise the pipeline's results; 1 and 2 threads agree bitwise;
 *   - noise == NULL with mae_ctx_set_seed(s) gives the masks of torch.manual_seed(s); torch.rand.
 * Configs whose io file names a run_height x run_width (rect_*) hold weights made for img_size
 * and run at that non-square size: mae_model_resize regenerates sin-cos tables or resamples
 * learned ones (checked against the reference's tables), then everything above runs on the copy.
 * All of it for every kernel table the CPU supports (scalar, avx2, avx512, neon).
 * The per-tensor errors are printed: they are the numbers quoted in reports. */
#include "../src/model/model.h"
#include "../src/io/safetensors.h"
#include "testutil.h"

#define TOL 1e-5

static const char *const CONFIGS[] = { "tiny", "odd", "gray", "ratio0", "vitb1", "ties", "rect_sc", "rect_lp" };
/* Every kernel table this CPU runs is checked against the references, not only the best one. */
static const char *const TIERS[] = { "scalar", "avx2", "avx512", "neon" };

/* ---- reading the reference files ------------------------------------------------------------ */

static double meta_num(const mae_st_file *f, const char *key)
{
    const char *v = mae_st_meta_get(f, key);
    CHECK(v != NULL, "metadata key %s is missing", key);
    return v ? strtod(v, NULL) : 0.0;
}

static int meta_int(const mae_st_file *f, const char *key)
{
    return (int)meta_num(f, key);
}

static int meta_bool(const mae_st_file *f, const char *key)
{
    const char *v = mae_st_meta_get(f, key);
    return v && strcmp(v, "true") == 0;
}

static int same_bits(const void *a, const void *b, size_t bytes)
{
    return memcmp(a, b, bytes) == 0;
}

/* ---- the model ------------------------------------------------------------------------------- */

static void config_from_meta(const mae_st_file *f, mae_config *cfg)
{
    mae_config_init(cfg, sizeof *cfg, "base");
    cfg->img_size = meta_int(f, "img_size");
    cfg->patch_size = meta_int(f, "patch_size");
    cfg->in_chans = meta_int(f, "in_chans");
    cfg->embed_dim = meta_int(f, "embed_dim");
    cfg->depth = meta_int(f, "depth");
    cfg->num_heads = meta_int(f, "num_heads");
    cfg->decoder_embed_dim = meta_int(f, "decoder_embed_dim");
    cfg->decoder_depth = meta_int(f, "decoder_depth");
    cfg->decoder_num_heads = meta_int(f, "decoder_num_heads");
    cfg->mlp_ratio = (float)meta_num(f, "mlp_ratio");
    cfg->norm_pix_loss = meta_bool(f, "norm_pix_loss");
    cfg->mask_ratio = (float)meta_num(f, "mask_ratio");
    cfg->layer_norm_eps = (float)meta_num(f, "layer_norm_eps");
}

/* The "torch_rand" weights: torch.manual_seed(seed), then per tensor in state_dict order
 * u = torch.rand(numel), x = 2u - 1 (exact in float32) and, each product rounded to float32 on
 * its own (separate statements, so no fused multiply-add):
 *   cls_token, mask_token, pos tables, biases: x * 0.02; LayerNorm weights: 1 + x * 0.1;
 *   every other weight: x * 0.05. */
static void fill_torch_rand(mae_model *m, uint64_t seed)
{
    CHECK_OK(mae_model_keep_masters(m));   /* written below in PyTorch's layout */
    mae_rng r;
    mae_rng_seed(&r, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        const char *n = t->name;
        size_t len = strlen(n);
        int small = strcmp(n, "cls_token") == 0 || strcmp(n, "mask_token") == 0 ||
                    strcmp(n, "pos_embed") == 0 || strcmp(n, "decoder_pos_embed") == 0 ||
                    (len >= 5 && strcmp(n + len - 5, ".bias") == 0);
        int norm = !small && t->ndim == 1;
        float scale = small ? 0.02f : norm ? 0.1f : 0.05f;
        float *w = m->data + t->offset;
        for (size_t j = 0; j < t->count; j++) {
            float x = 2.0f * mae_rng_uniform(&r) - 1.0f;
            float v = x * scale;
            if (norm)
                v = 1.0f + v;
            w[j] = v;
        }
    }
}

/* Checks the regenerated weights against the generator's fingerprints (first value exact, sum
 * close), so that a divergence names the tensor. */
static void check_fingerprints(const mae_model *m, const mae_st_file *io)
{
    CHECK(meta_int(io, "num_tensors") == m->n_tensors, "torch_rand: %d tensors here, %d in the generator",
          m->n_tensors, meta_int(io, "num_tensors"));
    if (meta_int(io, "num_tensors") != m->n_tensors)
        return;
    size_t n = (size_t)m->n_tensors;
    float *first = tu_st_tensor(io, "param_first", n), *sum = tu_st_tensor(io, "param_sum", n);
    for (size_t i = 0; first && sum && i < n; i++) {
        const mae_tensor *t = &m->tensors[i];
        const float *w = m->data + t->offset;
        double s = 0.0;
        for (size_t j = 0; j < t->count; j++)
            s += w[j];
        CHECK(w[0] == first[i] && fabs(s - sum[i]) <= 1e-5 * (fabs(sum[i]) + 1.0),
              "torch_rand: tensor %zu (%s) differs: first %.9g vs %.9g, sum %.9g vs %.9g",
              i, t->name, (double)w[0], (double)first[i], s, (double)sum[i]);
    }
    free(first);
    free(sum);
}

/* Every tensor of the model file is in the loaded model, bit for bit. */
static void check_loaded_tensors(const mae_model *m, const char *path)
{
    mae_st_file f;
    mae_status s = mae_st_open(path, &f);
    CHECK(s == MAE_OK, "mae_st_open(%s): %s", path, mae_last_error());
    if (s != MAE_OK)
        return;
    size_t total = 0;
    for (int i = 0; i < f.n; i++) {
        const mae_st_entry *e = &f.t[i];
        const float *data;
        size_t count;
        int ndim;
        int64_t shape[4];
        s = mae_model_tensor(m, e->name, &data, &count, &ndim, shape);
        CHECK(s == MAE_OK, "loaded model lacks %s: %s", e->name, mae_last_error());
        if (s != MAE_OK || count != e->count) {
            CHECK(s != MAE_OK, "%s: %zu values loaded, %zu in the file", e->name, count, e->count);
            continue;
        }
        float *x = tu_st_tensor(&f, e->name, count);
        CHECK(x && same_bits(x, data, count * sizeof *x), "%s: loaded values differ from the file", e->name);
        free(x);
        total += count;
    }
    size_t n = 0;
    CHECK_OK(mae_model_num_params(m, &n));
    CHECK(n == total, "model has %zu values, the file %zu", n, total);
    mae_st_close(&f);
}

static mae_model *open_model(const mae_st_file *io)
{
    mae_model *m = NULL;
    const char *weights = mae_st_meta_get(io, "weights");
    CHECK(weights != NULL, "io file names no weights");
    if (!weights)
        return NULL;
    if (strcmp(weights, "torch_rand") == 0) {
        mae_config cfg;
        config_from_meta(io, &cfg);
        CHECK_OK(mae_model_create(&cfg, 0, &m));
        if (!m)
            return NULL;
        fill_torch_rand(m, (uint64_t)meta_num(io, "weight_seed"));
        CHECK_OK(mae_model_pack(m));
        check_fingerprints(m, io);
        return m;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/tests/data/%s", tu_srcdir(), weights);
    mae_status s = mae_model_load(path, &m);
    CHECK(s == MAE_OK, "mae_model_load(%s) -> %s: %s", path, mae_status_str(s), mae_last_error());
    if (s != MAE_OK)
        return NULL;
    check_loaded_tensors(m, path);
    /* the config came from __metadata__ */
    mae_config got, want;
    got.struct_size = sizeof got;
    CHECK_OK(mae_model_get_config(m, &got));
    config_from_meta(io, &want);
    CHECK(got.img_size == want.img_size && got.patch_size == want.patch_size &&
          got.in_chans == want.in_chans && got.embed_dim == want.embed_dim && got.depth == want.depth &&
          got.num_heads == want.num_heads && got.decoder_embed_dim == want.decoder_embed_dim &&
          got.decoder_depth == want.decoder_depth && got.decoder_num_heads == want.decoder_num_heads &&
          got.mlp_ratio == want.mlp_ratio && got.norm_pix_loss == want.norm_pix_loss &&
          got.mask_ratio == want.mask_ratio && got.layer_norm_eps == want.layer_norm_eps,
          "%s: the loaded config differs from the file's __metadata__", path);
    return m;
}

/* The model at the io file's run size (the weights' own size if it names none): m itself, or a
 * resized copy that replaces it (m freed). The copy's position tables must match the
 * reference's (sin-cos regenerated, or learned ones resampled as Hugging Face does). */
static mae_model *at_run_size(const char *name, const mae_st_file *io, mae_model *m, int *H, int *W)
{
    *H = *W = meta_int(io, "img_size");
    if (!mae_st_meta_get(io, "run_height"))
        return m;
    *H = meta_int(io, "run_height");
    *W = meta_int(io, "run_width");
    mae_model *r = NULL;
    mae_status s = mae_model_resize(m, *H, *W, &r);
    CHECK(s == MAE_OK, "%s: mae_model_resize(%d, %d) -> %s: %s", name, *H, *W, mae_status_str(s), mae_last_error());
    mae_model_free(m);
    if (s != MAE_OK)
        return NULL;
    static const char *const tables[] = { "pos_embed", "decoder_pos_embed" };
    for (int i = 0; i < 2; i++) {
        const float *got = NULL;
        size_t n = 0;
        char key[64];
        snprintf(key, sizeof key, "run.%s", tables[i]);
        CHECK_OK(mae_model_tensor(r, tables[i], &got, &n, NULL, NULL));
        float *want = got ? tu_st_tensor(io, key, n) : NULL;
        double e = want ? tu_rel_l2(got, want, n) : INFINITY;
        CHECK(e <= TOL, "%s: %s at %dx%d: rel err %.3g against the reference", name, tables[i], *H, *W, e);
        printf("  %-7s %s at %dx%d: rel err %.2e\n", name, tables[i], *H, *W, e);
        free(want);
    }
    return r;
}

/* ---- one config ------------------------------------------------------------------------------ */

/* What the pipeline produced, kept to compare the parts and the thread counts against. */
typedef struct outputs {
    float loss, *pred, *mask, *latent;
} outputs;

static void outputs_alloc(outputs *o, size_t npred, size_t nmask, size_t nlat)
{
    o->pred = tu_malloc(npred * sizeof(float));
    o->mask = tu_malloc(nmask * sizeof(float));
    o->latent = tu_malloc(nlat * sizeof(float));
    tu_poison(o->pred, npred);
    tu_poison(o->mask, nmask);
    tu_poison(o->latent, nlat);
    o->loss = NAN;
}

static void outputs_free(outputs *o)
{
    free(o->pred);
    free(o->mask);
    free(o->latent);
}

/* Seeded masks: the first and the following draw of torch.manual_seed(s); torch.rand(B, L), through
 * the pipeline and through the masker. */
static void check_seed_masks(const char *name, const mae_st_file *io, mae_ctx *c, const float *imgs,
                             int B, int L)
{
    const mae_masker *mk = NULL;
    CHECK_OK(mae_model_masker(c->m, &mk));
    size_t n = (size_t)B * L;
    float *mask = tu_malloc(n * sizeof *mask);
    const char *seeds = mae_st_meta_get(io, "seeds");
    CHECK(seeds != NULL, "%s: no seeds in the metadata", name);
    for (const char *p = seeds; p && *p;) {
        char *end;
        unsigned long long s = strtoull(p, &end, 10);
        char key[64];
        snprintf(key, sizeof key, "seed_mask.%llu", s);
        float *want = tu_st_tensor(io, key, n);
        snprintf(key, sizeof key, "seed_mask_next.%llu", s);
        float *want_next = tu_st_tensor(io, key, n);
        if (want && want_next) {
            CHECK_OK(mae_ctx_set_seed(c, s));
            tu_poison(mask, n);
            CHECK_OK(mae_forward(c, imgs, B, NULL, NULL, NULL, mask, NULL));
            CHECK(same_bits(mask, want, n * sizeof *mask), "%s: seed %llu: mask differs from torch's", name, s);
            tu_poison(mask, n);
            CHECK_OK(mae_forward(c, imgs, B, NULL, NULL, NULL, mask, NULL));
            CHECK(same_bits(mask, want_next, n * sizeof *mask), "%s: seed %llu: second draw's mask differs", name, s);
            CHECK_OK(mae_ctx_set_seed(c, s));
            tu_poison(mask, n);
            CHECK_OK(mae_masker_forward(mk, c, B, NULL, NULL, NULL, mask, NULL));
            CHECK(same_bits(mask, want, n * sizeof *mask), "%s: seed %llu: masker's mask differs", name, s);
        }
        free(want);
        free(want_next);
        p = *end == ',' ? end + 1 : end;
    }
    free(mask);
}

/* Patch embed -> masker -> encoder -> decoder -> loss, one by one, must give bitwise the
 * pipeline's outputs. Also checks the tokens, ids and the loss target against the reference. */
static void check_parts(const char *name, const mae_st_file *io, mae_ctx *c, const float *imgs,
                        const float *noise, const outputs *ref, int B, int L, int keep, int P, int D)
{
    const mae_model *m = c->m;
    const mae_patch_embed *pe = NULL;
    const mae_masker *mk = NULL;
    const mae_encoder *enc = NULL;
    const mae_decoder *dec = NULL;
    const mae_loss *lo = NULL;
    CHECK_OK(mae_model_patch_embed(m, &pe));
    CHECK_OK(mae_model_masker(m, &mk));
    CHECK_OK(mae_model_encoder(m, &enc));
    CHECK_OK(mae_model_decoder(m, &dec));
    CHECK_OK(mae_model_loss(m, &lo));
    size_t nl = (size_t)B * L, ntok = nl * D, nlat = (size_t)B * (1 + keep) * D, npred = nl * P;
    float *tokens = tu_malloc(ntok * sizeof *tokens), *mask = tu_malloc(nl * sizeof *mask);
    float *latent = tu_malloc(nlat * sizeof *latent), *pred = tu_malloc(npred * sizeof *pred);
    float *target = tu_malloc(npred * sizeof *target);
    int32_t *sh = tu_malloc(nl * sizeof *sh), *re = tu_malloc(nl * sizeof *re);
    tu_poison(tokens, ntok); tu_poison(mask, nl); tu_poison(latent, nlat); tu_poison(pred, npred);
    tu_poison(target, npred);
    for (size_t i = 0; i < nl; i++)
        sh[i] = re[i] = -1;
    float loss = NAN;
    int k = -1;

    CHECK_OK(mae_patch_embed_forward(pe, c, imgs, B, tokens));
    CHECK_OK(mae_masker_forward(mk, c, B, noise, sh, re, mask, &k));
    CHECK(k == keep, "%s: masker keeps %d, expected %d", name, k, keep);
    CHECK_OK(mae_encoder_forward(enc, c, tokens, B, sh, keep, latent));
    CHECK_OK(mae_decoder_forward(dec, c, latent, B, re, keep, pred));
    CHECK_OK(mae_loss_forward(lo, c, imgs, B, pred, mask, &loss));
    CHECK(same_bits(mask, ref->mask, nl * sizeof *mask), "%s: parts: mask differs from the pipeline", name);
    CHECK(same_bits(latent, ref->latent, nlat * sizeof *latent), "%s: parts: latent differs from the pipeline", name);
    CHECK(same_bits(pred, ref->pred, npred * sizeof *pred), "%s: parts: pred differs from the pipeline", name);
    CHECK(same_bits(&loss, &ref->loss, sizeof loss), "%s: parts: loss %.9g differs from the pipeline's %.9g",
          name, (double)loss, (double)ref->loss);

    /* ids exactly (stored as integers, converted to float by the reader) */
    float *want_sh = tu_st_tensor(io, "ids_shuffle", nl), *want_re = tu_st_tensor(io, "ids_restore", nl);
    int bad = 0;
    for (size_t i = 0; want_sh && want_re && i < nl; i++)
        bad += (float)sh[i] != want_sh[i] || (float)re[i] != want_re[i];
    CHECK(want_sh && want_re && bad == 0, "%s: %d ids differ from torch's stable argsort", name, bad);

    /* tokens and the loss target: not outputs of the pipeline, but they locate an error */
    float *want_tok = tu_st_tensor(io, "tokens", ntok), *want_tgt = tu_st_tensor(io, "target", npred);
    mae_loss_run(m, imgs, pred, mask, B, target);
    double e_tok = want_tok ? tu_rel_l2(tokens, want_tok, ntok) : INFINITY;
    double e_tgt = want_tgt ? tu_rel_l2(target, want_tgt, npred) : INFINITY;
    CHECK(e_tok <= TOL, "%s: tokens rel err %.3g", name, e_tok);
    CHECK(e_tgt <= TOL, "%s: target rel err %.3g", name, e_tgt);
    printf("  %-7s tokens %.2e  target %.2e  (parts == pipeline, ids exact)\n", name, e_tok, e_tgt);

    free(want_sh); free(want_re); free(want_tok); free(want_tgt);
    free(tokens); free(mask); free(latent); free(pred); free(target); free(sh); free(re);
}

static void run_config(const char *name)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/tests/data/%s.io.safetensors", tu_srcdir(), name);
    mae_st_file io;
    mae_status s = mae_st_open(path, &io);
    CHECK(s == MAE_OK, "mae_st_open(%s) -> %s: %s", path, mae_status_str(s), mae_last_error());
    if (s != MAE_OK)
        return;
    int H = 0, W = 0;
    mae_model *m = open_model(&io);
    if (m)
        m = at_run_size(name, &io, m, &H, &W);
    mae_ctx *c = NULL;
    if (m)
        CHECK_OK(mae_ctx_create(m, meta_int(&io, "batch"), &c));
    if (!c) {
        mae_model_free(m);
        mae_st_close(&io);
        return;
    }
    int B = meta_int(&io, "batch"), L = meta_int(&io, "num_patches"), keep = meta_int(&io, "keep");
    int P = meta_int(&io, "patch_dim"), D = meta_int(&io, "embed_dim"), C = meta_int(&io, "in_chans");
    int gL = 0, gk = 0, gP = 0;
    CHECK_OK(mae_ctx_get_dims(c, &gL, &gk, &gP));
    CHECK(gL == L && gk == keep && gP == P, "%s: dims L %d keep %d P %d, expected %d %d %d", name, gL, gk, gP, L, keep, P);

    size_t nimg = (size_t)B * C * H * W, nl = (size_t)B * L;
    size_t nlat = (size_t)B * (1 + keep) * D, npred = nl * P;
    float *imgs = tu_st_tensor(&io, "imgs", nimg), *noise = tu_st_tensor(&io, "noise", nl);
    float *want_mask = tu_st_tensor(&io, "mask", nl), *want_lat = tu_st_tensor(&io, "latent", nlat);
    float *want_pred = tu_st_tensor(&io, "pred", npred), *want_loss = tu_st_tensor(&io, "loss", 1);
    if (imgs && noise && want_mask && want_lat && want_pred && want_loss && gk == keep) {
        outputs one, two;
        outputs_alloc(&one, npred, nl, nlat);
        CHECK_OK(mae_forward(c, imgs, B, noise, &one.loss, one.pred, one.mask, one.latent));
        CHECK(same_bits(one.mask, want_mask, nl * sizeof(float)), "%s: mask differs from torch's", name);
        double e_lat = tu_rel_l2(one.latent, want_lat, nlat), e_pred = tu_rel_l2(one.pred, want_pred, npred);
        double e_loss;
        if (isnan(want_loss[0])) {
            e_loss = isnan(one.loss) ? 0.0 : INFINITY;     /* ratio 0: nothing removed, NaN as torch */
            CHECK(isnan(one.loss), "%s: loss %.9g, expected NaN (nothing is masked)", name, (double)one.loss);
        } else {
            e_loss = fabs((double)one.loss - want_loss[0]) / fabs((double)want_loss[0]);
            if (isnan(one.loss))
                e_loss = INFINITY;
            CHECK(e_loss <= TOL, "%s: loss %.9g vs %.9g, rel err %.3g", name, (double)one.loss, (double)want_loss[0], e_loss);
        }
        CHECK(e_lat <= TOL, "%s: latent rel err %.3g", name, e_lat);
        CHECK(e_pred <= TOL, "%s: pred rel err %.3g", name, e_pred);
        printf("  %-7s latent %.2e  pred %.2e  loss %.2e  (B %d, L %d, keep %d, loss %.7g)\n",
               name, e_lat, e_pred, e_loss, B, L, keep, (double)one.loss);

        check_parts(name, &io, c, imgs, noise, &one, B, L, keep, P, D);

        /* two threads: bitwise the same */
        CHECK_OK(mae_ctx_set_threads(c, 2));
        outputs_alloc(&two, npred, nl, nlat);
        CHECK_OK(mae_forward(c, imgs, B, noise, &two.loss, two.pred, two.mask, two.latent));
        CHECK(same_bits(&one.loss, &two.loss, sizeof one.loss) && same_bits(one.pred, two.pred, npred * sizeof(float)) &&
              same_bits(one.mask, two.mask, nl * sizeof(float)) && same_bits(one.latent, two.latent, nlat * sizeof(float)),
              "%s: 1 and 2 threads differ", name);
        CHECK_OK(mae_ctx_set_threads(c, 1));
        outputs_free(&two);
        outputs_free(&one);

        check_seed_masks(name, &io, c, imgs, B, L);
    }
    free(imgs); free(noise); free(want_mask); free(want_lat); free(want_pred); free(want_loss);
    mae_ctx_free(c);
    mae_model_free(m);
    mae_st_close(&io);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    char best[16];
    snprintf(best, sizeof best, "%s", mae_kernels_name());
    for (size_t t = 0; t < sizeof TIERS / sizeof *TIERS; t++) {
        if (mae_kernels_force(TIERS[t]) != MAE_OK) {
            printf("kernels %s: not available here, skipped\n", TIERS[t]);
            continue;
        }
        printf("kernels %s:\n", TIERS[t]);
        for (size_t i = 0; i < sizeof CONFIGS / sizeof *CONFIGS; i++)
            TU_RUN(tu_name("%s/%s", TIERS[t], CONFIGS[i]), run_config(CONFIGS[i]));
    }
    CHECK_OK(mae_kernels_force(best));
    return tu_finish("test_golden");
}
