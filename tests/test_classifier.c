/* The classifier (mae.h section 9): logits against PyTorch float64 references of
 * models_vit.VisionTransformer (tests/gen_classifier.py: global pooling with official names and
 * labels, cls pooling with Hugging Face names), thread-count determinism, save / load round
 * trips, creation from a pretrained model (head init, encoder copied, cls path against mae_embed),
 * misuse, hostile files and failed allocations. */
#include <float.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../src/io/safetensors.h"
#include "testutil.h"

static char tmpdir[64];

static double meta_num(const mae_st_file *f, const char *key)
{
    const char *v = mae_st_meta_get(f, key);
    CHECK(v != NULL, "reference metadata '%s' is missing", key);
    return v ? atof(v) : 0;
}

static const char *data_path(const char *name, const char *kind)
{
    static char path[1100];
    snprintf(path, sizeof path, "%s/tests/data/%s.%s.safetensors", tu_srcdir(), name, kind);
    return path;
}

/* logits of c on n images, with the given thread count */
static int run(const mae_classifier *c, const float *imgs, int B, int threads, float *logits)
{
    const mae_model *m;
    mae_ctx *ctx = NULL;
    CHECK_OK(mae_classifier_model(c, &m));
    CHECK_OK(mae_ctx_create(m, B, &ctx));
    if (!ctx)
        return 0;
    CHECK_OK(mae_ctx_set_threads(ctx, threads));
    mae_status s = mae_classifier_forward(c, ctx, imgs, B, logits);
    CHECK(s == MAE_OK, "forward: %s", mae_last_error());
    mae_ctx_free(ctx);
    return s == MAE_OK;
}

static void golden(const char *name, int want_gp, const char *const *labels)
{
    mae_st_file io;
    mae_status s = mae_st_open(data_path(name, "cio"), &io);
    CHECK(s == MAE_OK, "%s: %s", name, mae_last_error());
    if (s != MAE_OK)
        return;
    int B = (int)meta_num(&io, "batch"), K = (int)meta_num(&io, "num_classes");
    int side = (int)meta_num(&io, "img_size"), C = (int)meta_num(&io, "in_chans");
    double err32 = meta_num(&io, "torch_f32_err");
    float *imgs = tu_st_tensor(&io, "imgs", (size_t)B * C * side * side);
    float *want = tu_st_tensor(&io, "logits", (size_t)B * K);
    mae_classifier *c = NULL;
    CHECK_OK(mae_classifier_load(data_path(name, "classifier"), 0, &c));
    if (c && imgs && want) {
        int k = 0, gp = -1, has = -1;
        CHECK_OK(mae_classifier_num_classes(c, &k));
        CHECK_OK(mae_classifier_global_pool(c, &gp));
        CHECK_OK(mae_classifier_has_labels(c, &has));
        CHECK(k == K && gp == want_gp && has == (labels != NULL), "%s: classes %d pool %d labels %d", name, k, gp, has);
        for (int i = 0; i < K; i++) {
            const char *lab = NULL;
            char idx[16];
            snprintf(idx, sizeof idx, "%d", i);
            CHECK_OK(mae_classifier_label(c, i, &lab));
            CHECK(lab && strcmp(lab, labels ? labels[i] : idx) == 0, "%s: label %d is '%s'", name, i, lab ? lab : "(null)");
        }
        float *got = tu_malloc((size_t)B * K * sizeof *got), *got3 = tu_malloc((size_t)B * K * sizeof *got);
        tu_poison(got, (size_t)B * K);
        if (run(c, imgs, B, 1, got) && run(c, imgs, B, 3, got3)) {
            double err = 0;
            for (int i = 0; i < B * K; i++)
                err = isnan(got[i]) ? INFINITY : fmax(err, fabs((double)got[i] - want[i]));
            /* float32 against float64: the C error may be a few times PyTorch's own float32 one
             * (different summation orders), plus the reference's rounding to float32 */
            double tol = 8 * err32 + 4e-7;
            CHECK(err <= tol, "%s: max |logit error| %.3g > %.3g (PyTorch float32: %.3g)", name, err, tol, err32);
            CHECK(memcmp(got, got3, (size_t)B * K * sizeof *got) == 0, "%s: 1 and 3 threads differ", name);
            printf("  %-7s max |logit err| %.2e (PyTorch float32 %.2e), threads bitwise\n", name, err, err32);
        }
        /* save, load again: the same logits bitwise, the same labels and pooling */
        char path[128];
        snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, name);
        CHECK_OK(mae_classifier_save(c, path));
        mae_classifier *r = NULL;
        CHECK_OK(mae_classifier_load(path, K, &r));
        if (r) {
            int gp2 = -1, has2 = -1;
            CHECK_OK(mae_classifier_global_pool(r, &gp2));
            CHECK_OK(mae_classifier_has_labels(r, &has2));
            CHECK(gp2 == gp && has2 == has, "%s: round trip changed pool %d->%d labels %d->%d", name, gp, gp2, has, has2);
            for (int i = 0; labels && i < K; i++) {
                const char *lab = NULL;
                CHECK_OK(mae_classifier_label(r, i, &lab));
                CHECK(lab && strcmp(lab, labels[i]) == 0, "%s: reloaded label %d", name, i);
            }
            if (run(r, imgs, B, 2, got3))
                CHECK(memcmp(got, got3, (size_t)B * K * sizeof *got) == 0, "%s: reloaded logits differ", name);
            const float *nw;
            EXPECT(mae_classifier_tensor(r, gp ? "norm.weight" : "fc_norm.weight", &nw, NULL), MAE_ERR_INVALID_ARG);
        }
        mae_classifier_free(r);
        remove(path);
        free(got);
        free(got3);
    }
    mae_classifier_free(c);
    free(imgs);
    free(want);
    mae_st_close(&io);
}

static void test_golden(void)
{
    static const char *const labels[] = { "T-shirt/top", "trouser \"wide\"", "pull\xc3\xb6ver", "dress", "coat" };
    golden("clsgp", 1, labels);
    golden("clstok", 0, NULL);
}

/* From a pretrained model: the encoder's tensors copied, the head as main_finetune.py makes it,
 * and with cls pooling the logits are the head applied to mae_embed's cls embedding. */
static void test_create(void)
{
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(data_path("tiny", "model"), &m));
    if (!m)
        return;
    mae_classifier *c = NULL, *g = NULL;
    CHECK_OK(mae_classifier_create(m, 7, 0, 5, &c));
    CHECK_OK(mae_classifier_create(m, 7, 1, 6, &g));
    if (!c || !g) {
        mae_classifier_free(c); mae_classifier_free(g); mae_model_free(m);
        return;
    }
    const mae_model *cm;
    CHECK_OK(mae_classifier_model(c, &cm));
    int dec = 1, n = 0;
    CHECK_OK(mae_model_has_decoder(cm, &dec));
    CHECK(dec == 0, "the classifier's model kept the decoder");
    CHECK_OK(mae_model_tensor_count(cm, &n));
    for (int i = 0; i < n; i++) {
        const char *name;
        const float *a, *b;
        size_t na = 0, nb = 0;
        CHECK_OK(mae_model_tensor_name(cm, i, &name));
        CHECK_OK(mae_model_tensor(cm, name, &a, &na, NULL, NULL));
        CHECK_OK(mae_model_tensor(m, name, &b, &nb, NULL, NULL));
        CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0, "tensor %s not copied", name);
    }
    const float *w, *bias, *fw, *fb;
    size_t nw = 0, nbias = 0, nf = 0;
    CHECK_OK(mae_classifier_tensor(g, "head.weight", &w, &nw));
    CHECK_OK(mae_classifier_tensor(g, "head.bias", &bias, &nbias));
    CHECK_OK(mae_classifier_tensor(g, "fc_norm.weight", &fw, &nf));
    CHECK_OK(mae_classifier_tensor(g, "fc_norm.bias", &fb, NULL));
    double sum = 0, sq = 0;
    for (size_t i = 0; i < nw; i++)
        sum += w[i], sq += (double)w[i] * w[i];
    double mean = sum / nw, sd = sqrt(sq / nw - mean * mean);
    /* 7 x 32 = 224 draws of N(0, 2e-5): the sample std within 15%, the mean within 4 sigma/sqrt(n) */
    CHECK(nw == 7 * 32 && fabs(sd / 2e-5 - 1) < 0.15 && fabs(mean) < 4 * 2e-5 / sqrt((double)nw),
          "head init: %zu values, mean %.3g, std %.3g (want 2e-5)", nw, mean, sd);
    int zero = 1, unit = 1;
    for (size_t i = 0; i < nbias; i++)
        zero &= bias[i] == 0.0f;
    for (size_t i = 0; i < nf; i++)
        unit &= fw[i] == 1.0f && fb[i] == 0.0f;
    CHECK(zero && unit, "head bias zero %d, fc_norm 1/0 %d", zero, unit);

    /* cls pooling: logits = head.weight . mae_embed(cls) + bias, in double */
    int B = 3, K = 7, D = 32;
    float imgs[3 * 3 * 16 * 16], emb[3 * 32], logits[3 * 7];
    tu_fill(imgs, sizeof imgs / sizeof *imgs, -2, 2);
    const float *cw, *cb;
    CHECK_OK(mae_classifier_tensor(c, "head.weight", &cw, NULL));
    CHECK_OK(mae_classifier_tensor(c, "head.bias", &cb, NULL));
    mae_ctx *ctx = NULL;
    CHECK_OK(mae_ctx_create(cm, B, &ctx));
    if (ctx && run(c, imgs, B, 2, logits)) {
        CHECK_OK(mae_embed(ctx, imgs, B, MAE_POOL_CLS, emb));
        double err = 0, scale = 0;
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) {
                double want = cb[k];
                for (int d = 0; d < D; d++)
                    want += (double)cw[(size_t)k * D + d] * emb[b * D + d];
                err = fmax(err, fabs(logits[b * K + k] - want));
                scale = fmax(scale, fabs(want));
            }
        CHECK(err <= 1e-5 * scale + 1e-12, "cls logits vs head(mae_embed): err %.3g of %.3g", err, scale);
    }
    mae_ctx_free(ctx);
    /* a context of another model is refused */
    mae_ctx *other = NULL;
    CHECK_OK(mae_ctx_create(m, 1, &other));
    if (other)
        EXPECT(mae_classifier_forward(c, other, imgs, 1, logits), MAE_ERR_INVALID_ARG);
    mae_ctx_free(other);

    /* labels set, saved, loaded; a file whose head does not match what is asked is an error */
    const char *names[7] = { "a", "b", "c", "d", "e", "f", "g" };
    CHECK_OK(mae_classifier_set_labels(g, names));
    char path[128];
    snprintf(path, sizeof path, "%s/created.safetensors", tmpdir);
    CHECK_OK(mae_classifier_save(g, path));
    mae_classifier *r = NULL;
    EXPECT(mae_classifier_load(path, 10, &r), MAE_ERR_SHAPE);
    CHECK(r == NULL && strstr(mae_last_error(), "7 classes") && strstr(mae_last_error(), "10"),
          "mismatch message: %s", mae_last_error());
    CHECK_OK(mae_classifier_load(path, 7, &r));
    const char *lab = NULL;
    if (r)
        CHECK_OK(mae_classifier_label(r, 6, &lab));
    CHECK(lab && strcmp(lab, "g") == 0, "label 6 after reload: %s", lab ? lab : "(null)");
    mae_classifier_free(r);
    /* a cls-pooling file keeps norm.*: it also loads as a model (the encoder) */
    remove(path);
    CHECK_OK(mae_classifier_save(c, path));
    mae_model *enc = NULL;
    CHECK_OK(mae_model_load(path, &enc));
    mae_model_free(enc);
    remove(path);
    /* a pretrained model is not a classifier file */
    EXPECT(mae_classifier_load(data_path("tiny", "model"), 0, &r), MAE_ERR_FORMAT);
    CHECK(strstr(mae_last_error(), "not a classifier") != NULL, "message: %s", mae_last_error());

    mae_classifier_free(c);
    mae_classifier_free(g);
    mae_model_free(m);
}

static void test_misuse(void)
{
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(data_path("tiny", "model"), &m));
    if (!m)
        return;
    mae_classifier *c = NULL, *none = NULL;
    EXPECT(mae_classifier_create(NULL, 3, 1, 0, &c), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_create(m, 3, 1, 0, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_create(m, 0, 1, 0, &c), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_create(m, 1000001, 1, 0, &c), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_create(m, 3, 2, 0, &c), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_load(NULL, 0, &c), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_load(data_path("clsgp", "classifier"), -1, &c), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_load("/nonexistent/x.safetensors", 0, &c), MAE_ERR_IO);
    CHECK(c == NULL, "out written on failure");
    CHECK_OK(mae_classifier_create(m, 3, 1, 0, &c));
    if (!c) {
        mae_model_free(m);
        return;
    }
    const mae_model *cm;
    int k;
    const char *lab;
    EXPECT(mae_classifier_model(NULL, &cm), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_num_classes(c, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_global_pool(NULL, &k), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_label(c, 3, &lab), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_label(c, -1, &lab), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_has_labels(c, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_tensor(c, "nope", NULL, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_tensor(c, "decoder_embed.weight", NULL, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_save(c, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_save(c, "/nonexistent/dir/x.safetensors"), MAE_ERR_IO);
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    const char *bad1[3] = { "a", "", "c" }, *bad2[3] = { "a", longname, "c" }, *bad3[3] = { "a", NULL, "c" };
    const char *good[3] = { "a", "b", "c" };
    CHECK_OK(mae_classifier_set_labels(c, good));
    EXPECT(mae_classifier_set_labels(c, bad1), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_set_labels(c, bad2), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_set_labels(c, bad3), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_set_labels(NULL, good), MAE_ERR_INVALID_ARG);
    CHECK_OK(mae_classifier_label(c, 1, &lab));
    CHECK(strcmp(lab, "b") == 0, "a failed set_labels changed the labels: %s", lab);
    CHECK_OK(mae_classifier_set_labels(c, NULL));
    CHECK_OK(mae_classifier_label(c, 1, &lab));
    CHECK(strcmp(lab, "1") == 0, "cleared labels: %s", lab);
    CHECK_OK(mae_classifier_model(c, &cm));
    mae_ctx *ctx = NULL;
    CHECK_OK(mae_ctx_create(cm, 2, &ctx));
    float imgs[3 * 3 * 16 * 16] = { 0 }, logits[9];
    EXPECT(mae_classifier_forward(NULL, ctx, imgs, 1, logits), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_forward(c, NULL, imgs, 1, logits), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_forward(c, ctx, NULL, 1, logits), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_forward(c, ctx, imgs, 1, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_forward(c, ctx, imgs, 0, logits), MAE_ERR_SHAPE);
    EXPECT(mae_classifier_forward(c, ctx, imgs, 3, logits), MAE_ERR_SHAPE);
    mae_ctx_free(ctx);
    mae_classifier_free(c);
    mae_classifier_free(none);
    mae_classifier_free(NULL);
    mae_model_free(m);
}

/* ---- hostile files: the clsgp file rewritten with one thing wrong ---------------------------- */

typedef struct edit {
    const char *what;
    const char *drop;            /* a tensor left out */
    const char *reshape;         /* a tensor whose first dimension loses one */
    const char *key, *value;     /* a metadata pair set (value NULL: removed) */
    mae_status want;
} edit;

static void write_edited(const mae_st_file *f, const edit *e, const char *path)
{
    mae_st_out *out = tu_malloc((size_t)f->n * sizeof *out);
    float **bufs = tu_malloc((size_t)f->n * sizeof *bufs);
    int64_t (*shapes)[MAE_ST_MAX_DIMS] = tu_malloc((size_t)f->n * sizeof *shapes);
    mae_st_meta *meta = tu_malloc(((size_t)f->n_meta + 1) * sizeof *meta);
    int n = 0, nm = 0, set = 0;
    for (int i = 0; i < f->n; i++) {
        const mae_st_entry *t = &f->t[i];
        bufs[i] = tu_malloc(t->count * sizeof(float));
        mae_st_read_f32(f, t, bufs[i], t->count);
        if (e->drop && strcmp(t->name, e->drop) == 0)
            continue;
        memcpy(shapes[i], t->shape, sizeof shapes[i]);
        if (e->reshape && strcmp(t->name, e->reshape) == 0)
            shapes[i][t->ndim - 1] -= 1;   /* the data is read from the start: fewer values */
        out[n++] = (mae_st_out){ t->name, bufs[i], t->ndim, shapes[i] };
    }
    for (int i = 0; i < f->n_meta; i++) {
        if (e->key && strcmp(f->meta[i].key, e->key) == 0) {
            set = 1;
            if (!e->value)
                continue;
            snprintf(meta[nm].key, sizeof meta[nm].key, "%s", f->meta[i].key);
            snprintf(meta[nm].value, sizeof meta[nm].value, "%s", e->value);
            nm++;
            continue;
        }
        snprintf(meta[nm].key, sizeof meta[nm].key, "%s", f->meta[i].key);
        snprintf(meta[nm].value, sizeof meta[nm].value, "%s", f->meta[i].value);
        nm++;
    }
    if (e->key && e->value && !set) {
        snprintf(meta[nm].key, sizeof meta[nm].key, "%s", e->key);
        snprintf(meta[nm].value, sizeof meta[nm].value, "%s", e->value);
        nm++;
    }
    CHECK_OK(mae_st_write(path, out, n, meta, nm));
    for (int i = 0; i < f->n; i++)
        free(bufs[i]);
    free(bufs); free(out); free(shapes); free(meta);
}

static void test_hostile(void)
{
    static const edit edits[] = {
        { "head.bias missing", "head.bias", NULL, NULL, NULL, MAE_ERR_FORMAT },
        { "fc_norm.bias missing", "fc_norm.bias", NULL, NULL, NULL, MAE_ERR_FORMAT },
        { "global pool without fc_norm", "fc_norm.weight", NULL, "global_pool", "true", MAE_ERR_FORMAT },
        { "cls pool without norm", NULL, NULL, "global_pool", "false", MAE_ERR_FORMAT },
        { "head.weight narrower than D", NULL, "head.weight", NULL, NULL, MAE_ERR_SHAPE },
        { "head.bias shorter", NULL, "head.bias", NULL, NULL, MAE_ERR_SHAPE },
        { "fc_norm.weight shorter", NULL, "fc_norm.weight", NULL, NULL, MAE_ERR_SHAPE },
        { "a block tensor shorter", NULL, "blocks.1.mlp.fc2.bias", NULL, NULL, MAE_ERR_SHAPE },
        { "a label missing", NULL, NULL, "id2label.3", NULL, MAE_ERR_FORMAT },
        { "a label beyond the classes", NULL, NULL, "id2label.5", "extra", MAE_ERR_FORMAT },
        { "a label index with a sign", NULL, NULL, "id2label.-1", "neg", MAE_ERR_FORMAT },
        { "num_classes disagrees", NULL, NULL, "num_classes", "6", MAE_ERR_FORMAT },
        { "global_pool not a bool", NULL, NULL, "global_pool", "maybe", MAE_ERR_FORMAT },
        { "depth far beyond the file", NULL, NULL, "depth", "100000", MAE_ERR_FORMAT },
        { "embed_dim disagrees", NULL, NULL, "embed_dim", "48", MAE_ERR_SHAPE },
    };
    mae_st_file f;
    CHECK_OK(mae_st_open(data_path("clsgp", "classifier"), &f));
    char path[128];
    snprintf(path, sizeof path, "%s/edited.safetensors", tmpdir);
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        write_edited(&f, &edits[i], path);
        mae_classifier *c = NULL;
        const char *p = tu_primed_message();
        mae_status s = mae_classifier_load(path, 0, &c);
        CHECK(s == edits[i].want && c == NULL, "%s: %s (%s), want %s", edits[i].what, mae_status_str(s),
              mae_last_error(), mae_status_str(edits[i].want));
        CHECK(strcmp(mae_last_error(), p) != 0, "%s: no message", edits[i].what);
        mae_classifier_free(c);
    }
    /* an unedited copy loads (the edits above are what fails) */
    edit none = { "none", NULL, NULL, NULL, NULL, MAE_OK };
    write_edited(&f, &none, path);
    mae_classifier *c = NULL;
    CHECK_OK(mae_classifier_load(path, 0, &c));
    mae_classifier_free(c);
    /* every truncation of the file fails cleanly */
    size_t size;
    unsigned char *bytes = tu_read_file(path, &size);
    for (size_t cut = 0; bytes && cut < size; cut += size / 97 + 1) {
        FILE *fp = fopen(path, "wb");
        if (fp) {
            fwrite(bytes, 1, cut, fp);
            fclose(fp);
        }
        c = NULL;
        mae_status s = mae_classifier_load(path, 0, &c);
        CHECK(s != MAE_OK && c == NULL, "truncated at %zu of %zu loaded", cut, size);
    }
    free(bytes);
    remove(path);
    mae_st_close(&f);
}

/* Every allocation of load and create failing in turn: an error, nothing leaked. */
static void test_nomem(void)
{
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(data_path("tiny", "model"), &m));
    CHECK_OK(tu_alloc_install());
    for (long k = 1; k < 400; k++) {
        tu_alloc_reset();
        tu_alloc.fail_at = k;
        mae_classifier *c = NULL, *d = NULL;
        mae_status s1 = mae_classifier_load(data_path("clsgp", "classifier"), 0, &c);
        long calls1 = atomic_load(&tu_alloc.calls);
        mae_classifier_free(c);
        CHECK(atomic_load(&tu_alloc.live) == 0, "load failing at allocation %ld leaked", k);
        tu_alloc_reset();
        tu_alloc.fail_at = k;
        mae_status s2 = m ? mae_classifier_create(m, 4, 1, 0, &d) : MAE_OK;
        long calls2 = atomic_load(&tu_alloc.calls);
        mae_classifier_free(d);
        CHECK(atomic_load(&tu_alloc.live) == 0, "create failing at allocation %ld leaked", k);
        CHECK((s1 == MAE_OK) == (k > calls1) && (s2 == MAE_OK) == (k > calls2),
              "failing allocation %ld: load %s, create %s", k, mae_status_str(s1), mae_status_str(s2));
        if (k > calls1 && k > calls2)
            break;
    }
    mae_set_allocator(NULL);
    mae_model_free(m);
}

/* mae_classifier_save_as: every tensor within half a unit of its dtype's last place (F16: 2^-11
 * relative, 2^-25 absolute among subnormals; BF16: 2^-8 relative), pooling, classes and labels
 * kept, about half the F32 file; a bad dtype writes nothing. */
static void test_save_as(void)
{
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(data_path("tiny", "model"), &m));
    mae_classifier *c = NULL;
    if (m)
        CHECK_OK(mae_classifier_create(m, 5, 1, 11, &c));
    mae_model_free(m);
    if (!c)
        return;
    const char *names[5] = { "v", "w", "x", "y", "z" };
    CHECK_OK(mae_classifier_set_labels(c, names));
    float *hw = NULL;
    size_t nh = 0;
    CHECK_OK(mae_classifier_tensor(c, "head.weight", (const float **)&hw, &nh));
    if (hw)   /* a head that has moved away from its 2e-5 init (the classifier owns this memory) */
        tu_fill(hw, nh, -3, 3);
    char f32[160], half[160], bad[160];
    snprintf(f32, sizeof f32, "%s/sa32.safetensors", tmpdir);
    snprintf(half, sizeof half, "%s/sa16.safetensors", tmpdir);
    snprintf(bad, sizeof bad, "%s/sabad.safetensors", tmpdir);
    CHECK_OK(mae_classifier_save_as(c, f32, "f32"));
    static const char *const dtypes[] = { "F16", "bf16" };
    for (int d = 0; d < 2; d++) {
        int is_half = d == 0;
        CHECK_OK(mae_classifier_save_as(c, half, dtypes[d]));
        struct stat a, b;
        CHECK(stat(f32, &a) == 0 && stat(half, &b) == 0 && b.st_size < a.st_size * 0.55,
              "%s file is not about half the F32 one", dtypes[d]);
        mae_classifier *r = NULL;
        CHECK_OK(mae_classifier_load(half, 0, &r));
        if (!r)
            continue;
        int K = 0, gp = 0;
        const char *lab = NULL;
        CHECK_OK(mae_classifier_num_classes(r, &K));
        CHECK_OK(mae_classifier_global_pool(r, &gp));
        CHECK_OK(mae_classifier_label(r, 4, &lab));
        CHECK(K == 5 && gp == 1 && lab && strcmp(lab, "z") == 0, "%s: classes %d pool %d label %s", dtypes[d], K, gp,
              lab ? lab : "(null)");
        const mae_model *cm = NULL, *rm = NULL;
        CHECK_OK(mae_classifier_model(c, &cm));
        CHECK_OK(mae_classifier_model(r, &rm));
        int n = 0, worst_ok = 1;
        CHECK_OK(mae_model_tensor_count(cm, &n));
        for (int i = -4; i < n; i++) {   /* the four head tensors, then the encoder's */
            static const char *const head[] = { "head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias" };
            const char *name = NULL;
            const float *x = NULL, *y = NULL;
            size_t nx = 0, ny = 0;
            if (i < 0) {
                name = head[i + 4];
                CHECK_OK(mae_classifier_tensor(c, name, &x, &nx));
                CHECK_OK(mae_classifier_tensor(r, name, &y, &ny));
            } else {
                CHECK_OK(mae_model_tensor_name(cm, i, &name));
                if (name && strncmp(name, "norm.", 5) == 0)
                    continue;   /* global pooling: fc_norm replaces norm, which is not written */
                CHECK_OK(mae_model_tensor(cm, name, &x, &nx, NULL, NULL));
                CHECK_OK(mae_model_tensor(rm, name, &y, &ny, NULL, NULL));
            }
            CHECK(nx == ny && x && y, "%s: tensor %s: %zu vs %zu values", dtypes[d], name ? name : "?", nx, ny);
            for (size_t k = 0; x && y && k < nx && k < ny && worst_ok; k++) {
                double ax = fabs((double)x[k]), err = fabs((double)x[k] - y[k]);
                double bound = is_half ? (ax < 6.103515625e-05 ? 0x1p-25 : ax * 0x1p-11) : ax * 0x1p-8;
                if (!(err <= bound)) {
                    worst_ok = 0;
                    CHECK(0, "%s: %s[%zu] = %.9g came back %.9g", dtypes[d], name, k, x[k], y[k]);
                }
            }
        }
        mae_classifier_free(r);
    }
    struct stat st;
    EXPECT(mae_classifier_save_as(c, bad, "F64"), MAE_ERR_INVALID_ARG);
    CHECK(strstr(mae_last_error(), "F64") != NULL && stat(bad, &st) != 0, "bad dtype: %s", mae_last_error());
    EXPECT(mae_classifier_save_as(c, bad, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_save_as(NULL, bad, "F16"), MAE_ERR_INVALID_ARG);
    CHECK(stat(bad, &st) != 0, "a refused save wrote %s", bad);
    remove(f32);
    remove(half);
    mae_classifier_free(c);
}

/* mae_classifier_features: the head applied to them in double gives the logits (both poolings,
 * 1 and 3 threads bitwise), every element written (poisoned first), misuse refused. */
static void test_features(void)
{
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(data_path("tiny", "model"), &m));
    if (!m)
        return;
    enum { B = 3, K = 5, D = 32 };
    float imgs[B * 3 * 16 * 16], f1[B * D], f3[B * D], logits[B * K];
    tu_fill(imgs, sizeof imgs / sizeof *imgs, -2, 2);
    for (int gp = 0; gp < 2; gp++) {
        mae_classifier *c = NULL;
        const mae_model *cm = NULL;
        mae_ctx *ctx = NULL;
        CHECK_OK(mae_classifier_create(m, K, gp, 21 + gp, &c));
        if (c)
            CHECK_OK(mae_classifier_model(c, &cm));
        if (cm)
            CHECK_OK(mae_ctx_create(cm, B, &ctx));
        if (!ctx) {
            mae_classifier_free(c);
            continue;
        }
        const float *w = NULL;
        CHECK_OK(mae_classifier_tensor(c, "head.weight", &w, NULL));
        const float *bias = NULL;
        CHECK_OK(mae_classifier_tensor(c, "head.bias", &bias, NULL));
        tu_poison(f1, B * D);
        tu_poison(f3, B * D);
        CHECK_OK(mae_ctx_set_threads(ctx, 1));
        CHECK_OK(mae_classifier_features(c, ctx, imgs, B, f1));
        CHECK_OK(mae_ctx_set_threads(ctx, 3));
        CHECK_OK(mae_classifier_features(c, ctx, imgs, B, f3));
        CHECK(memcmp(f1, f3, sizeof f1) == 0, "pool %d: features differ between 1 and 3 threads", gp);
        CHECK_OK(mae_classifier_forward(c, ctx, imgs, B, logits));
        double err = 0, scale = 0;
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) {
                double z = bias ? bias[k] : 0;
                for (int d = 0; w && d < D; d++)
                    z += (double)w[k * D + d] * f1[b * D + d];
                err = fmax(err, fabs(z - logits[b * K + k]));
                scale = fmax(scale, fabs(z));
            }
        CHECK(err <= 1e-5 * scale && scale > 0, "pool %d: head(features) vs logits: err %.3g of %.3g", gp, err, scale);
        EXPECT(mae_classifier_features(c, ctx, imgs, B, NULL), MAE_ERR_INVALID_ARG);
        CHECK(strstr(mae_last_error(), "mae_classifier_features: features is NULL") != NULL, "%s", mae_last_error());
        EXPECT(mae_classifier_features(c, ctx, imgs, B + 1, f1), MAE_ERR_SHAPE);
        mae_ctx *other = NULL;
        CHECK_OK(mae_ctx_create(m, 1, &other));
        if (other)
            EXPECT(mae_classifier_features(c, other, imgs, 1, f1), MAE_ERR_INVALID_ARG);
        mae_ctx_free(other);
        mae_ctx_free(ctx);
        mae_classifier_free(c);
    }
    mae_model_free(m);
}

/* logits and features of c on imgs with the given thread count, into z [B,K] and f [B,D] */
static int outputs(const mae_classifier *c, const float *imgs, int B, int threads, float *z, float *f)
{
    const mae_model *m = NULL;
    mae_ctx *ctx = NULL;
    CHECK_OK(mae_classifier_model(c, &m));
    if (m)
        CHECK_OK(mae_ctx_create(m, B, &ctx));
    if (!ctx)
        return 0;
    CHECK_OK(mae_ctx_set_threads(ctx, threads));
    mae_status s1 = mae_classifier_forward(c, ctx, imgs, B, z);
    mae_status s2 = mae_classifier_features(c, ctx, imgs, B, f);
    CHECK(s1 == MAE_OK && s2 == MAE_OK, "forward: %s", mae_last_error());
    mae_ctx_free(ctx);
    return s1 == MAE_OK && s2 == MAE_OK;
}

/* the image floats per sample and D of c's model (0 on error) */
static void dims(const mae_classifier *c, size_t *img, size_t *D)
{
    const mae_model *m = NULL;
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    *img = *D = 0;
    CHECK_OK(mae_classifier_model(c, &m));
    if (m && mae_model_get_config(m, &cfg) == MAE_OK) {
        *img = (size_t)cfg.in_chans * cfg.img_size * cfg.img_size;
        *D = (size_t)cfg.embed_dim;
    }
}

static int precision_of(const mae_classifier *c)
{
    int p = -1;
    CHECK_OK(mae_classifier_get_precision(c, &p));
    return p;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* mae_classifier_set_precision (docs/PRECISION.md): a classifier created from a bf16 model, saved
 * as F32, loaded and set to bf16 is the same classifier (logits and features bitwise, 1 and 2
 * threads; mae_classifier_save of both writes the same BF16 bytes); a float32 classifier set to
 * bf16 computes in bf16 (its logits within test_bf16's whole-model bound of float32's and not
 * equal to them). */
static void test_precision(void)
{
    enum { B = 3, K = 5, D = 32 };
    float imgs[B * 3 * 16 * 16], z1[B * K], z2[B * K], f1[B * D], f2[B * D];
    tu_fill(imgs, sizeof imgs / sizeof *imgs, -2, 2);
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(data_path("tiny", "model"), &m));
    if (m)
        CHECK_OK(mae_model_set_precision(m, MAE_PRECISION_BF16));
    char p32[128], pa[128], pb[128];
    snprintf(p32, sizeof p32, "%s/prec_f32.safetensors", tmpdir);
    snprintf(pa, sizeof pa, "%s/prec_a.safetensors", tmpdir);
    snprintf(pb, sizeof pb, "%s/prec_b.safetensors", tmpdir);
    for (int gp = 0; m && gp < 2; gp++) {
        mae_classifier *c = NULL, *r = NULL;
        CHECK_OK(mae_classifier_create(m, K, gp, 40 + (uint64_t)tu_uniform() * 1000, &c));
        if (!c)
            continue;
        CHECK(precision_of(c) == MAE_PRECISION_BF16, "a classifier of a bf16 model is not bf16");
        CHECK_OK(mae_classifier_save_as(c, p32, "F32"));
        CHECK_OK(mae_classifier_load(p32, 0, &r));
        if (!r) {
            mae_classifier_free(c);
            continue;
        }
        CHECK(precision_of(r) == MAE_PRECISION_F32, "a loaded classifier is not F32");
        CHECK_OK(mae_classifier_set_precision(r, MAE_PRECISION_BF16));
        CHECK(precision_of(r) == MAE_PRECISION_BF16, "precision not BF16 after setting it");
        CHECK_OK(mae_classifier_set_precision(r, MAE_PRECISION_BF16));   /* again: nothing to do */
        for (int threads = 1; threads <= 2; threads++)
            if (outputs(c, imgs, B, threads, z1, f1) && outputs(r, imgs, B, threads, z2, f2))
                CHECK(memcmp(z1, z2, sizeof z1) == 0 && memcmp(f1, f2, sizeof f1) == 0,
                      "pool %d, %d threads: the loaded classifier set to bf16 differs from the created "
                      "one (logits rel L2 %.3g, features %.3g)", gp, threads, tu_rel_l2(z2, z1, B * K),
                      tu_rel_l2(f2, f1, B * D));
        /* save writes BF16, as mae_model_save of a bf16 model: the same bytes for both */
        CHECK_OK(mae_classifier_save(c, pa));
        CHECK_OK(mae_classifier_save(r, pb));
        size_t na = 0, nb = 0;
        unsigned char *a = tu_read_file(pa, &na), *b = tu_read_file(pb, &nb);
        CHECK(a && b && na == nb && memcmp(a, b, na) == 0, "pool %d: the two bf16 classifiers save differently", gp);
        CHECK((double)na < 0.6 * (double)file_size(p32), "pool %d: save of a bf16 classifier wrote %zu bytes, "
              "F32 %ld: not BF16", gp, na, file_size(p32));
        free(a); free(b);
        remove(p32); remove(pa); remove(pb);
        mae_classifier_free(r);
        mae_classifier_free(c);
    }
    mae_model_free(m);

    /* float32 files (both poolings) set to bf16 against themselves as float32: test_bf16 holds a
     * bf16 model's forward to relative L2 1e-2 of float32's (operands rounded to 2^-9 relative,
     * through every linear of every block); the classifier is that encoder plus one more linear */
    static const char *const files[] = { "clsgp", "clstok" };
    for (int i = 0; i < 2; i++) {
        mae_classifier *a = NULL, *b = NULL;
        CHECK_OK(mae_classifier_load(data_path(files[i], "classifier"), 0, &a));
        CHECK_OK(mae_classifier_load(data_path(files[i], "classifier"), 0, &b));
        int k = 0;
        size_t n = 0, dn = 0;
        if (a && b) {
            CHECK_OK(mae_classifier_num_classes(a, &k));
            dims(a, &n, &dn);
            n *= B, dn *= B;
            CHECK_OK(mae_classifier_set_precision(b, MAE_PRECISION_BF16));
        }
        float *x = n ? tu_malloc(n * sizeof *x) : NULL;
        float *za = tu_malloc((size_t)B * (k > 0 ? k : 1) * sizeof *za), *zb = tu_malloc((size_t)B * (k > 0 ? k : 1) * sizeof *zb);
        float *fa = tu_malloc((dn ? dn : 1) * sizeof *fa), *fb = tu_malloc((dn ? dn : 1) * sizeof *fb);
        if (x) {
            tu_fill(x, n, -2, 2);
            if (outputs(a, x, B, 2, za, fa) && outputs(b, x, B, 2, zb, fb)) {
                double ez = tu_rel_l2(zb, za, (size_t)B * k), ef = tu_rel_l2(fb, fa, dn);
                printf("%s: bf16 vs float32 rel L2 logits %.3g, features %.3g\n", files[i], ez, ef);
                CHECK(ez <= 1e-2 && ef <= 1e-2, "%s: bf16 logits rel L2 %.3g, features %.3g > 1e-2", files[i], ez, ef);
                CHECK(ez > 0 && ef > 0, "%s: bf16 logits equal float32's: not computed in bf16", files[i]);
            }
        }
        free(x); free(za); free(zb); free(fa); free(fb);
        mae_classifier_free(a);
        mae_classifier_free(b);
    }
}

/* set_precision's misuse: NULLs, an unknown precision, F32 of bf16, a live context, a finetuner */
static void test_precision_misuse(void)
{
    mae_classifier *c = NULL;
    CHECK_OK(mae_classifier_load(data_path("clsgp", "classifier"), 0, &c));
    if (!c)
        return;
    int p = 0;
    EXPECT(mae_classifier_set_precision(NULL, MAE_PRECISION_BF16), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_get_precision(NULL, &p), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_get_precision(c, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_set_precision(c, 2), MAE_ERR_INVALID_ARG);
    EXPECT(mae_classifier_set_precision(c, -1), MAE_ERR_INVALID_ARG);
    CHECK_OK(mae_classifier_set_precision(c, MAE_PRECISION_F32));   /* already: nothing to do */
    const mae_model *m = NULL;
    mae_ctx *ctx = NULL;
    CHECK_OK(mae_classifier_model(c, &m));
    CHECK_OK(mae_ctx_create(m, 1, &ctx));
    EXPECT(mae_classifier_set_precision(c, MAE_PRECISION_BF16), MAE_ERR_STATE);
    CHECK(strstr(mae_last_error(), "mae_classifier_set_precision") && strstr(mae_last_error(), "context"),
          "message: %s", mae_last_error());
    CHECK(precision_of(c) == MAE_PRECISION_F32, "a refused conversion changed the precision");
    mae_ctx_free(ctx);
    /* a finetuner (float32 masters): refused while it lives, and after (its training is in them) */
    mae_classifier *t = NULL;
    mae_finetuner *f = NULL;
    CHECK_OK(mae_classifier_load(data_path("clsgp", "classifier"), 0, &t));
    if (t)
        CHECK_OK(mae_finetuner_create(t, 1, &f));
    if (f) {
        EXPECT(mae_classifier_set_precision(t, MAE_PRECISION_BF16), MAE_ERR_STATE);
        CHECK(strstr(mae_last_error(), "finetuner") != NULL, "message: %s", mae_last_error());
        mae_finetuner_free(f);
        EXPECT(mae_classifier_set_precision(t, MAE_PRECISION_BF16), MAE_ERR_STATE);
    }
    mae_classifier_free(t);
    CHECK_OK(mae_classifier_set_precision(c, MAE_PRECISION_BF16));
    EXPECT(mae_classifier_set_precision(c, MAE_PRECISION_F32), MAE_ERR_UNSUPPORTED);
    CHECK(precision_of(c) == MAE_PRECISION_BF16, "F32 refused changed the precision");
    /* a bf16 classifier's finetuner (mixed precision): setting bf16 again does nothing */
    CHECK_OK(mae_finetuner_create(c, 1, &f));
    CHECK_OK(mae_classifier_set_precision(c, MAE_PRECISION_BF16));
    mae_finetuner_free(f);
    mae_classifier_free(c);
}

/* Every allocation of set_precision failing in turn: an error, nothing leaked, the classifier
 * still float32 and computing the same bits; past the last one it converts. */
static void test_precision_nomem(void)
{
    enum { B = 2 };
    mae_classifier *c = NULL;
    CHECK_OK(mae_classifier_load(data_path("clsgp", "classifier"), 0, &c));
    int k = 0;
    if (c)
        CHECK_OK(mae_classifier_num_classes(c, &k));
    if (!c || k < 1 || k > 64)
        return;
    float imgs[B * 3 * 16 * 16], z0[B * 64], f0[B * 32 * 8], z[B * 64], f[B * 32 * 8];
    size_t img = 0, D = 0;
    dims(c, &img, &D);
    if (img != 3 * 16 * 16 || D > 32 * 8) {
        CHECK(0, "clsgp is not the tiny 3x16x16 config");
        mae_classifier_free(c);
        return;
    }
    tu_fill(imgs, sizeof imgs / sizeof *imgs, -2, 2);
    int ok = outputs(c, imgs, B, 1, z0, f0);
    CHECK_OK(tu_alloc_install());
    for (long n = 1; ok && n < 200; n++) {
        tu_alloc_reset();
        tu_alloc.fail_at = n;
        mae_status s = mae_classifier_set_precision(c, MAE_PRECISION_BF16);
        long calls = atomic_load(&tu_alloc.calls);
        if (s == MAE_OK) {
            CHECK(n > calls, "allocation %ld of %ld failed, yet the conversion succeeded", n, calls);
            CHECK(precision_of(c) == MAE_PRECISION_BF16, "converted, but not bf16");
            break;
        }
        CHECK(s == MAE_ERR_NOMEM, "failing allocation %ld: %s", n, mae_status_str(s));
        CHECK(atomic_load(&tu_alloc.live) == 0, "set_precision failing at allocation %ld leaked", n);
        CHECK(precision_of(c) == MAE_PRECISION_F32, "failing allocation %ld changed the precision", n);
        tu_alloc.fail_at = 0;
        if (outputs(c, imgs, B, 1, z, f))
            CHECK(memcmp(z, z0, sizeof(float) * B * k) == 0 && memcmp(f, f0, sizeof(float) * B * D) == 0,
                  "failing allocation %ld changed the classifier's outputs", n);
    }
    CHECK(!ok || precision_of(c) == MAE_PRECISION_BF16, "not converted within 200 allocations");
    mae_classifier_free(c);
    mae_set_allocator(NULL);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mae_classifier_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    tu_seed(1919);
    TU_RUN("golden", test_golden());
    TU_RUN("create", test_create());
    TU_RUN("save_as", test_save_as());
    TU_RUN("features", test_features());
    TU_RUN("misuse", test_misuse());
    TU_RUN("hostile", test_hostile());
    TU_RUN("nomem", test_nomem());
    TU_RUN("precision", test_precision());
    TU_RUN("precision_misuse", test_precision_misuse());
    TU_RUN("precision_nomem", test_precision_nomem());
    rmdir(tmpdir);
    return tu_finish("test_classifier");
}
