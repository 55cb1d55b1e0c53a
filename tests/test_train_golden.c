/* The trainer against PyTorch float64 autograd and torch.optim.AdamW (tests/gen_reference.py,
 * docs/TESTING.md): for tiny, odd (learned position tables, norm_pix_loss) and gray (1 channel,
 * eps 1e-12), every parameter's gradient and the input gradient at the model file's weights
 * (rel L2 <= 1e-4), then 3 AdamW steps with the official schedule (parameters rel L2 <= 1e-5).
 *
 * The reference files are read by a small reader of its own (F32 tensors and string metadata of
 * these trusted files), and the model is built from their config with mae_model_create and the
 * file's tensors copied in: the test depends on neither the library's reader nor its loader. */
#include "testutil.h"
#include "../src/model/model.h"


/* ---- a minimal safetensors reader for the committed reference files ------------------------ */

typedef struct gt_tensor { char name[128]; int ndim; int64_t shape[8]; size_t count, begin; int f32; } gt_tensor;
typedef struct gt_file {
    unsigned char *buf; size_t size, data;
    gt_tensor t[512]; int n;
    char key[64][64], val[64][256]; int n_meta;
} gt_file;

static const char *gt_ws(const char *p) { while (*p == ' ' || *p == '\n' || *p == '\t') p++; return p; }

/* A JSON string at p (after spaces) into out; returns the position after it. */
static const char *gt_str(const char *p, char *out, size_t n)
{
    size_t k = 0;
    p = gt_ws(p);
    if (*p++ != '"') return NULL;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1]) p++;
        if (k + 1 < n) out[k++] = *p;
        p++;
    }
    out[k] = 0;
    return *p ? p + 1 : NULL;
}

/* An array of integers at p (after spaces) into v (at most 8); returns the position after it. */
static const char *gt_ints(const char *p, long long *v, int *n)
{
    char *end;
    *n = 0;
    p = gt_ws(p);
    if (*p++ != '[') return NULL;
    for (;;) {
        p = gt_ws(p);
        if (*p == ']') return p + 1;
        if (*p == ',') { p++; continue; }
        if (*n == 8) return NULL;
        v[(*n)++] = strtoll(p, &end, 10);
        if (end == p) return NULL;
        p = end;
    }
}

static int gt_parse(gt_file *f, const char *h)
{
    const char *p = gt_ws(h);
    if (*p++ != '{') return 0;
    for (;;) {
        char key[128], k2[32];
        p = gt_ws(p);
        if (*p == '}') return 1;
        if (*p == ',') { p++; continue; }
        if (!(p = gt_str(p, key, sizeof key))) return 0;
        p = gt_ws(p);
        if (*p++ != ':') return 0;
        p = gt_ws(p);
        if (*p++ != '{') return 0;
        int is_meta = strcmp(key, "__metadata__") == 0;
        gt_tensor *t = NULL;
        if (!is_meta) {
            if (f->n == 512) return 0;
            t = &f->t[f->n++];
            memset(t, 0, sizeof *t);
            snprintf(t->name, sizeof t->name, "%s", key);
        }
        for (;;) {
            p = gt_ws(p);
            if (*p == '}') { p++; break; }
            if (*p == ',') { p++; continue; }
            if (!(p = gt_str(p, k2, sizeof k2))) return 0;
            p = gt_ws(p);
            if (*p++ != ':') return 0;
            if (is_meta) {
                if (f->n_meta == 64) return 0;
                snprintf(f->key[f->n_meta], sizeof f->key[0], "%s", k2);
                if (!(p = gt_str(p, f->val[f->n_meta], sizeof f->val[0]))) return 0;
                f->n_meta++;
            } else if (strcmp(k2, "dtype") == 0) {
                char d[16];
                if (!(p = gt_str(p, d, sizeof d))) return 0;
                t->f32 = strcmp(d, "F32") == 0;
            } else {
                long long v[8];
                int n;
                if (!(p = gt_ints(p, v, &n))) return 0;
                if (strcmp(k2, "shape") == 0) {
                    t->ndim = n;
                    t->count = 1;
                    for (int i = 0; i < n; i++) { t->shape[i] = v[i]; t->count *= (size_t)v[i]; }
                } else if (n == 2) {
                    t->begin = (size_t)v[0];
                }
            }
        }
    }
}

static int gt_open(gt_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL, "cannot open %s", path);
    if (!fp) return 0;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = tu_malloc((size_t)sz + 1);
    f->size = fread(f->buf, 1, (size_t)sz, fp);
    fclose(fp);
    uint64_t hl = 0;
    for (int i = 7; i >= 0 && f->size >= 8; i--) hl = hl << 8 | f->buf[i];
    int ok = f->size >= 8 && hl <= f->size - 8;
    if (ok) {
        char *h = tu_malloc(hl + 1);
        memcpy(h, f->buf + 8, hl);
        h[hl] = 0;
        ok = gt_parse(f, h);
        free(h);
        f->data = 8 + hl;
    }
    CHECK(ok, "%s: cannot parse the header", path);
    return ok;
}

static void gt_close(gt_file *f) { free(f->buf); f->buf = NULL; }

static const gt_tensor *gt_find(const gt_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

static const char *gt_meta(const gt_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->key[i], key) == 0)
            return f->val[i];
    return NULL;
}

/* A F32 tensor as a fresh array, or NULL (and a failed check). */
static float *load(const gt_file *f, const char *name, size_t *count)
{
    const gt_tensor *t = gt_find(f, name);
    int ok = t && t->f32 && f->data + t->begin + t->count * 4 <= f->size;
    CHECK(ok, "reference tensor %s is missing or not F32", name);
    if (!ok)
        return NULL;
    float *x = tu_malloc(t->count * sizeof *x);
    memcpy(x, f->buf + f->data + t->begin, t->count * sizeof *x);   /* little-endian hosts */
    if (count)
        *count = t->count;
    return x;
}

static double meta(const gt_file *f, const char *key)
{
    const char *v = gt_meta(f, key);
    CHECK(v != NULL, "metadata %s is missing", key);
    return v ? strtod(v, NULL) : NAN;
}

/* The model of <cfg>.model.safetensors: its config from the metadata, its tensors copied in. */
static mae_model *load_model(const char *path)
{
    gt_file f;
    if (!gt_open(&f, path)) { gt_close(&f); return NULL; }
    mae_config c;
    mae_config_init(&c, sizeof c, "tiny");
    c.img_size = (int)meta(&f, "img_size"); c.patch_size = (int)meta(&f, "patch_size");
    c.in_chans = (int)meta(&f, "in_chans"); c.embed_dim = (int)meta(&f, "embed_dim");
    c.depth = (int)meta(&f, "depth"); c.num_heads = (int)meta(&f, "num_heads");
    c.decoder_embed_dim = (int)meta(&f, "decoder_embed_dim"); c.decoder_depth = (int)meta(&f, "decoder_depth");
    c.decoder_num_heads = (int)meta(&f, "decoder_num_heads"); c.mlp_ratio = (float)meta(&f, "mlp_ratio");
    c.mask_ratio = (float)meta(&f, "mask_ratio"); c.layer_norm_eps = (float)meta(&f, "layer_norm_eps");
    const char *np = gt_meta(&f, "norm_pix_loss");
    c.norm_pix_loss = np && strcmp(np, "true") == 0;
    mae_model *m = NULL;
    CHECK_OK(mae_model_create(&c, 0, &m));
    if (m)   /* written below in PyTorch's layout */
        CHECK_OK(mae_model_keep_masters(m));
    for (int i = 0; m && i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        size_t n = 0;
        float *x = load(&f, t->name, &n);
        CHECK(x && n == t->count, "%s: %s has %zu values, the model %zu", path, t->name, n, t->count);
        if (x && n == t->count)
            memcpy(m->data + t->offset, x, n * sizeof *x);
        free(x);
    }
    if (m)
        mae_model_repack(m);
    gt_close(&f);
    return m;
}

static void run(const char *cfg)
{
    char path[1100];
    gt_file *io = tu_malloc(sizeof *io), *gr = tu_malloc(sizeof *gr);
    snprintf(path, sizeof path, "%s/tests/data/%s.model.safetensors", tu_srcdir(), cfg);
    mae_model *m = load_model(path);
    snprintf(path, sizeof path, "%s/tests/data/%s.io.safetensors", tu_srcdir(), cfg);
    int ok = gt_open(io, path);
    snprintf(path, sizeof path, "%s/tests/data/%s.grad.safetensors", tu_srcdir(), cfg);
    ok &= gt_open(gr, path);
    if (!m || !ok) {
        mae_model_free(m); gt_close(io); gt_close(gr); free(io); free(gr);
        return;
    }
    size_t nimg = 0;
    float *imgs = load(io, "imgs", &nimg), *noise[3];
    const gt_tensor *ie = gt_find(io, "imgs");
    int B = ie ? (int)ie->shape[0] : 1;
    for (int s = 0; s < 3; s++) {
        char nm[32];
        snprintf(nm, sizeof nm, "noise.step%d", s);
        noise[s] = load(gr, nm, NULL);
    }
    mae_trainer *t = NULL;
    CHECK_OK(mae_trainer_create(m, B, &t));
    if (!t || !imgs || !noise[0] || !noise[1] || !noise[2])
        exit(tu_finish("test_train_golden"));
    /* the file's recipe */
    mae_train_config tc;
    mae_train_config_init(&tc, sizeof tc);
    tc.lr = meta(gr, "peak_lr");
    tc.min_lr = meta(gr, "min_lr");
    tc.warmup_epochs = meta(gr, "warmup_epochs");
    tc.epochs = meta(gr, "epochs");
    tc.iters_per_epoch = (int32_t)meta(gr, "steps_per_epoch");
    tc.weight_decay = meta(gr, "weight_decay");
    tc.beta1 = meta(gr, "beta1");
    tc.beta2 = meta(gr, "beta2");
    tc.eps = meta(gr, "eps");
    CHECK_OK(mae_trainer_set_config(t, &tc));

    /* gradients at the file's parameters */
    float loss = NAN, *dimgs = tu_malloc(nimg * sizeof *dimgs);
    tu_poison(dimgs, nimg);
    CHECK_OK(mae_trainer_forward_backward_input(t, imgs, B, noise[0], &loss, dimgs));
    float *ref_loss = load(gr, "loss.step0", NULL);
    CHECK(ref_loss && fabs(loss - ref_loss[0]) <= 1e-5 * fabs(ref_loss[0]), "%s: loss %.9g vs %.9g", cfg, (double)loss, ref_loss ? (double)ref_loss[0] : NAN);
    free(ref_loss);
    double worst = 0;
    const char *worst_name = "";
    int n = 0;
    mae_model_tensor_count(m, &n);
    for (int i = 0; i < n; i++) {
        const char *name;
        const float *g;
        size_t cnt, rc;
        char key[96];
        mae_model_tensor_name(m, i, &name);
        snprintf(key, sizeof key, "grad.%s", name);
        int in_file = gt_find(gr, key) != NULL;
        mae_status st = mae_trainer_grad(t, name, &g, &cnt);
        CHECK((st == MAE_OK) == in_file, "%s: %s is %s here but %s in PyTorch", cfg, name,
              st == MAE_OK ? "trainable" : "frozen", in_file ? "trainable" : "frozen");
        if (st != MAE_OK || !in_file)
            continue;
        float *ref = load(gr, key, &rc);
        CHECK(rc == cnt, "%s: %s has %zu values, reference %zu", cfg, key, cnt, rc);
        double e = rc == cnt ? tu_rel_l2(g, ref, cnt) : INFINITY;
        CHECK(e <= 1e-4, "%s: %s rel L2 %.3g", cfg, key, e);
        if (e > worst) { worst = e; worst_name = name; }
        free(ref);
    }
    size_t rn = 0;
    float *rdimgs = load(gr, "grad.imgs", &rn);
    double ein = rdimgs && rn == nimg ? tu_rel_l2(dimgs, rdimgs, nimg) : INFINITY;
    CHECK(ein <= 1e-4, "%s: grad.imgs rel L2 %.3g", cfg, ein);
    free(rdimgs);

    /* 3 AdamW steps, each on its own noise */
    CHECK_OK(mae_trainer_zero_grad(t));
    for (int s = 0; s < 3; s++) {
        char key[32];
        double lr = NAN;
        snprintf(key, sizeof key, "lr.step%d", s);
        CHECK_OK(mae_trainer_get_lr(t, &lr));
        double want = meta(gr, key);
        CHECK(fabs(lr - want) <= 1e-15, "%s: lr at step %d is %.17g, reference %.17g", cfg, s, lr, want);
        CHECK_OK(mae_trainer_forward_backward(t, imgs, B, noise[s], &loss));
        snprintf(key, sizeof key, "loss.step%d", s);
        float *rl = load(gr, key, NULL);
        CHECK(rl && fabs(loss - rl[0]) <= 1e-5 * fabs(rl[0]), "%s: loss at step %d %.9g vs %.9g", cfg, s, (double)loss, rl ? (double)rl[0] : NAN);
        free(rl);
        CHECK_OK(mae_trainer_step(t));
    }
    double worst_p = 0;
    const char *worst_pname = "";
    for (int i = 0; i < n; i++) {
        const char *name;
        const float *data;
        size_t cnt, rc;
        int ndim;
        int64_t shape[4];
        char key[96];
        mae_model_tensor_name(m, i, &name);
        mae_model_tensor(m, name, &data, &cnt, &ndim, shape);
        snprintf(key, sizeof key, "step3.%s", name);
        float *ref = load(gr, key, &rc);
        double e = ref && rc == cnt ? tu_rel_l2(data, ref, cnt) : INFINITY;
        CHECK(e <= 1e-5, "%s: %s rel L2 %.3g", cfg, key, e);
        if (e > worst_p) { worst_p = e; worst_pname = name; }
        free(ref);
    }
    printf("%s: worst gradient rel L2 %.2e (%s), input %.2e; after 3 steps worst %.2e (%s)\n",
           cfg, worst, worst_name, ein, worst_p, worst_pname);
    mae_trainer_free(t);
    mae_model_free(m);
    gt_close(io);
    gt_close(gr);
    free(io);
    free(gr);
    free(imgs); free(dimgs);
    for (int s = 0; s < 3; s++) free(noise[s]);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    TU_RUN("tiny", run("tiny"));
    TU_RUN("odd", run("odd"));
    TU_RUN("gray", run("gray"));
    return tu_finish("test_train_golden");
}
