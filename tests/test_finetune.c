/* Fine-tuning (mae.h section 9): the loss and every gradient against PyTorch float64 autograd of
 * models_vit.VisionTransformer with timm's label-smoothing / soft-target cross-entropy
 * (tests/gen_classifier.py), two AdamW steps against torch.optim.AdamW with
 * util/lr_decay.param_groups_lrd's groups, central finite differences of the C loss, the groups
 * against the official rule, thread-count determinism, a loss that falls, and misuse. */
#include <stdlib.h>
#include <unistd.h>
#include "../src/io/safetensors.h"
#include "testutil.h"

static const char *data_path(const char *name, const char *kind)
{
    static char path[1100];
    snprintf(path, sizeof path, "%s/tests/data/%s.%s.safetensors", tu_srcdir(), name, kind);
    return path;
}

typedef struct fixture {
    mae_st_file io, gr;
    mae_classifier *c;
    mae_finetuner *f;
    int B, K, n;
    float *imgs, *targets;
    int32_t *labels;
} fixture;

static int open_fixture(const char *name, fixture *x)
{
    memset(x, 0, sizeof *x);
    if (mae_st_open(data_path(name, "cio"), &x->io) != MAE_OK || mae_st_open(data_path(name, "cgrad"), &x->gr) != MAE_OK) {
        CHECK(0, "%s: %s", name, mae_last_error());
        return 0;
    }
    x->B = atoi(mae_st_meta_get(&x->io, "batch"));
    x->K = atoi(mae_st_meta_get(&x->io, "num_classes"));
    int side = atoi(mae_st_meta_get(&x->io, "img_size")), C = atoi(mae_st_meta_get(&x->io, "in_chans"));
    x->n = C * side * side;
    x->imgs = tu_st_tensor(&x->io, "imgs", (size_t)x->B * x->n);
    if (mae_st_find(&x->gr, "labels")) {
        float *l = tu_st_tensor(&x->gr, "labels", (size_t)x->B);
        x->labels = tu_malloc((size_t)x->B * sizeof *x->labels);
        for (int b = 0; l && b < x->B; b++)
            x->labels[b] = (int32_t)l[b];
        free(l);
    } else
        x->targets = tu_st_tensor(&x->gr, "targets", (size_t)x->B * x->K);
    CHECK_OK(mae_classifier_load(data_path(name, "classifier"), 0, &x->c));
    if (x->c)
        CHECK_OK(mae_finetuner_create(x->c, x->B, &x->f));
    if (!x->f)
        return 0;
    mae_finetune_config cfg;
    CHECK_OK(mae_finetune_config_init(&cfg, sizeof cfg));
    cfg.lr = 2e-3;              /* gen_classifier.py's FT */
    cfg.iters_per_epoch = 0;    /* constant lr */
    cfg.drop_path = mae_st_meta_get(&x->gr, "drop_path") ? (float)atof(mae_st_meta_get(&x->gr, "drop_path")) : 0.0f;
    CHECK_OK(mae_finetuner_set_config(x->f, &cfg));
    return x->imgs != NULL;
}

static void close_fixture(fixture *x)
{
    mae_finetuner_free(x->f);
    mae_classifier_free(x->c);
    free(x->imgs); free(x->targets); free(x->labels);
    mae_st_close(&x->io);
    mae_st_close(&x->gr);
}

/* The names the reference has gradients for, one by one: "grad.<name>" entries. */
static void against_torch(const char *name)
{
    fixture x;
    if (!open_fixture(name, &x)) {
        close_fixture(&x);
        return;
    }
    float loss = NAN, *want_loss = tu_st_tensor(&x.gr, "loss", 1);
    CHECK_OK(mae_finetuner_forward_backward(x.f, x.imgs, x.B, x.labels, x.targets, &loss, NULL));
    CHECK(want_loss && fabs(loss - want_loss[0]) <= 2e-6 * fabs(want_loss[0]), "%s: loss %.9g, want %.9g", name, loss,
          want_loss ? want_loss[0] : NAN);
    double worst = 0;
    const char *worst_name = "";
    int ngrads = 0;
    for (int i = 0; i < x.gr.n; i++) {
        const mae_st_entry *e = &x.gr.t[i];
        if (strncmp(e->name, "grad.", 5) != 0)
            continue;
        const float *g = NULL;
        size_t count = 0;
        CHECK_OK(mae_finetuner_grad(x.f, e->name + 5, &g, &count));
        float *want = tu_st_tensor(&x.gr, e->name, count);
        if (g && want) {
            double err = tu_rel_l2(g, want, count);
            if (err > worst)
                worst = err, worst_name = e->name + 5;
            ngrads++;
        }
        free(want);
    }
    /* float32 through two blocks against float64: relative L2 errors ~1e-6 */
    CHECK(worst <= 2e-5, "%s: gradient of %s rel err %.3g", name, worst_name, worst);
    /* two AdamW steps on the same batch (the gradients above are step 1's) */
    CHECK_OK(mae_finetuner_step(x.f));
    CHECK_OK(mae_finetuner_forward_backward(x.f, x.imgs, x.B, x.labels, x.targets, NULL, NULL));
    CHECK_OK(mae_finetuner_step(x.f));
    double pworst = 0;
    const char *pname = "";
    for (int i = 0; i < x.gr.n; i++) {
        const mae_st_entry *e = &x.gr.t[i];
        if (strncmp(e->name, "step2.", 6) != 0)
            continue;
        const float *p = NULL;
        size_t count = 0;
        CHECK_OK(mae_classifier_tensor(x.c, e->name + 6, &p, &count));
        char gname[200];
        snprintf(gname, sizeof gname, "grad.%s", e->name + 6);
        float *want = tu_st_tensor(&x.gr, e->name, count), *g1 = tu_st_tensor(&x.gr, gname, count);
        double gmax = 0;
        for (size_t j = 0; g1 && j < count; j++)
            gmax = fmax(gmax, fabs(g1[j]));
        /* AdamW's first step is about lr * sign(g): an element whose gradient is within float32
         * noise of zero (below 1e-4 of its tensor's largest) may step either way; it is only
         * held to the size of two steps */
        for (size_t j = 0; p && want && g1 && j < count; j++) {
            double d = fabs((double)p[j] - want[j]);
            if (fabs(g1[j]) < 1e-4 * gmax) {
                CHECK(d <= 2 * 2 * 2e-3, "%s[%zu] moved %.3g", e->name + 6, j, d);
                continue;
            }
            if (d > pworst)
                pworst = d, pname = e->name + 6;
        }
        free(want);
        free(g1);
    }
    /* each step moves a weight by about lr * lr_scale = 2e-3 at most: the error is a small part
     * of one step */
    CHECK(pworst <= 2e-6, "%s: after 2 AdamW steps %s is off by %.3g", name, pname, pworst);
    printf("  %-7s loss %.7f, %d gradients: worst rel err %.2e (%s); 2 AdamW steps: max |dw| %.2e\n", name, loss,
           ngrads, worst, worst_name, pworst);
    free(want_loss);
    close_fixture(&x);
}

static void test_torch(void)
{
    against_torch("clsgp");
    against_torch("clstok");
    against_torch("clsdp");   /* drop path 0.5: masks drawn as timm's DropPath after torch.manual_seed */
}

/* Central differences of the C loss for weights the kernels read unpacked (LayerNorm weights,
 * biases, the position table, the cls token: changing them needs no repacking). */
static void test_finite_differences(void)
{
    fixture x;
    if (!open_fixture("clsgp", &x)) {
        close_fixture(&x);
        return;
    }
    static const char *const names[] = { "cls_token", "pos_embed", "fc_norm.weight", "fc_norm.bias", "head.bias",
                                         "blocks.0.norm1.weight", "blocks.1.norm2.bias", "blocks.1.mlp.fc1.bias",
                                         "blocks.0.attn.qkv.bias", "patch_embed.proj.bias" };
    float loss;
    int checked = 0;
    double worst = 0;
    for (size_t n = 0; n < sizeof names / sizeof *names; n++) {
        const float *g, *pc;
        size_t count, cg;
        CHECK_OK(mae_finetuner_grad(x.f, names[n], &g, &cg));
        CHECK_OK(mae_classifier_tensor(x.c, names[n], &pc, &count));
        float *p = (float *)pc;   /* test only: an unpacked weight, changed and put back */
        CHECK_OK(mae_finetuner_zero_grad(x.f));   /* forward_backward adds: this tensor's gradient afresh */
        CHECK_OK(mae_finetuner_forward_backward(x.f, x.imgs, x.B, x.labels, NULL, &loss, NULL));
        float *gcopy = tu_malloc(cg * sizeof *gcopy);
        memcpy(gcopy, g, cg * sizeof *g);
        double gmax = 0;
        for (size_t j = 0; j < cg; j++)
            gmax = fmax(gmax, fabs(gcopy[j]));
        for (int trial = 0; trial < 3; trial++) {
            size_t j = (size_t)(tu_uniform() * (double)count);
            float keep = p[j], lp, lm;
            const float h = 1e-2f;
            p[j] = keep + h;
            CHECK_OK(mae_finetuner_forward_backward(x.f, x.imgs, x.B, x.labels, NULL, &lp, NULL));
            p[j] = keep - h;
            CHECK_OK(mae_finetuner_forward_backward(x.f, x.imgs, x.B, x.labels, NULL, &lm, NULL));
            p[j] = keep;
            double fd = ((double)lp - lm) / (2.0 * h), err = fabs(fd - gcopy[j]);
            CHECK(err <= 2e-2 * gmax + 2e-5, "%s[%zu]: finite difference %.6g, gradient %.6g", names[n], j, fd, gcopy[j]);
            worst = fmax(worst, err / (gmax + 1e-12));
            checked++;
        }
        free(gcopy);
    }
    CHECK_OK(mae_finetuner_zero_grad(x.f));
    printf("  finite differences: %d elements, worst |fd - grad| / max|grad| %.2e\n", checked, worst);
    close_fixture(&x);
}

/* The groups against param_groups_lrd, stated directly: layer ids 0 / i+1 / depth+1, scale
 * 0.75^(depth+1-id), no decay for 1-D, pos_embed and cls_token. */
static void test_groups(void)
{
    fixture x;
    if (!open_fixture("clsgp", &x)) {
        close_fixture(&x);
        return;
    }
    const mae_model *m;
    int n = 0;
    CHECK_OK(mae_classifier_model(x.c, &m));
    CHECK_OK(mae_model_tensor_count(m, &n));
    const int depth = 2;
    for (int i = 0; i < n + 4; i++) {
        static const char *const head[4] = { "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias" };
        const char *name;
        int ndim = 1;
        if (i < n) {
            CHECK_OK(mae_model_tensor_name(m, i, &name));
            CHECK_OK(mae_model_tensor(m, name, NULL, NULL, &ndim, NULL));
        } else {
            name = head[i - n];
            ndim = i - n == 2 ? 2 : 1;
        }
        double scale = -1, wd = -1;
        mae_status s = mae_finetuner_param_group(x.f, name, &scale, &wd);
        if (!strncmp(name, "norm.", 5)) {   /* global pooling: the encoder's norm is not used */
            CHECK(s == MAE_ERR_INVALID_ARG, "%s has a group", name);
            continue;
        }
        int id = !strcmp(name, "cls_token") || !strcmp(name, "pos_embed") || !strncmp(name, "patch_embed", 11) ? 0
               : !strncmp(name, "blocks.", 7) ? name[7] - '0' + 1 : depth + 1;
        double want_wd = ndim == 1 || !strcmp(name, "pos_embed") || !strcmp(name, "cls_token") ? 0.0 : 0.05;
        CHECK(s == MAE_OK && fabs(scale - pow(0.75, depth + 1 - id)) < 1e-15 && wd == want_wd,
              "%s: scale %g wd %g, want %g %g", name, scale, wd, pow(0.75, depth + 1 - id), want_wd);
    }
    close_fixture(&x);
}

static void test_threads_and_descent(void)
{
    fixture a, b;
    if (!open_fixture("clsgp", &a) || !open_fixture("clsgp", &b)) {
        close_fixture(&a);
        close_fixture(&b);
        return;
    }
    CHECK_OK(mae_finetuner_set_threads(a.f, 1));
    CHECK_OK(mae_finetuner_set_threads(b.f, 3));
    float first = 0, last = 0;
    for (int it = 0; it < 12; it++) {
        float la, lb;
        CHECK_OK(mae_finetuner_forward_backward(a.f, a.imgs, a.B, a.labels, NULL, &la, NULL));
        CHECK_OK(mae_finetuner_forward_backward(b.f, b.imgs, b.B, b.labels, NULL, &lb, NULL));
        if (it == 0) {
            const float *ga, *gb;
            size_t na, nb;
            CHECK_OK(mae_finetuner_grad(a.f, "blocks.0.attn.qkv.weight", &ga, &na));
            CHECK_OK(mae_finetuner_grad(b.f, "blocks.0.attn.qkv.weight", &gb, &nb));
            CHECK(memcmp(ga, gb, na * sizeof *ga) == 0, "gradients differ between 1 and 3 threads");
            first = la;
        }
        CHECK(memcmp(&la, &lb, sizeof la) == 0, "step %d: loss %.9g with 1 thread, %.9g with 3", it, la, lb);
        CHECK_OK(mae_finetuner_step(a.f));
        CHECK_OK(mae_finetuner_step(b.f));
        last = la;
    }
    /* one fixed batch, lr 2e-3: the loss must fall well below its start (smoothing 0.1 keeps a
     * floor of about 0.1 * log K above zero) */
    CHECK(last < 0.5 * first, "the loss went %.4f -> %.4f in 12 steps on one batch", first, last);
    printf("  12 steps on one batch: loss %.4f -> %.4f, bitwise equal with 1 and 3 threads\n", first, last);
    close_fixture(&a);
    close_fixture(&b);
}

/* Every trained value of a finetuner's classifier, concatenated (for bitwise comparisons). */
static size_t snapshot(const fixture *x, float *out)
{
    const mae_model *m;
    int n = 0;
    size_t at = 0;
    mae_classifier_model(x->c, &m);
    mae_model_tensor_count(m, &n);
    for (int i = 0; i < n + 4; i++) {
        static const char *const head[4] = { "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias" };
        const char *name = head[0];
        const float *p;
        size_t count = 0;
        if (i < n)
            mae_model_tensor_name(m, i, &name);
        else
            name = head[i - n];
        if (mae_classifier_tensor(x->c, name, &p, &count) != MAE_OK)
            continue;
        if (out)
            memcpy(out + at, p, count * sizeof *p);
        at += count;
    }
    return at;
}

/* Save after 3 steps, 2 more steps; a fresh finetuner loads the checkpoint and takes the same 2
 * steps: bitwise the same parameters (with a warmup + cosine schedule, so the step count
 * matters). A checkpoint that cannot be used changes nothing. */
static void test_resume(void)
{
    fixture a, b;
    if (!open_fixture("clsgp", &a) || !open_fixture("clsgp", &b)) {
        close_fixture(&a);
        close_fixture(&b);
        return;
    }
    mae_finetune_config cfg;
    CHECK_OK(mae_finetune_config_init(&cfg, sizeof cfg));
    cfg.iters_per_epoch = 2, cfg.warmup_epochs = 1, cfg.epochs = 4, cfg.blr = 0.2, cfg.clip_grad = 5;
    CHECK_OK(mae_finetuner_set_config(a.f, &cfg));
    CHECK_OK(mae_finetuner_set_seed(a.f, 12345));   /* drop path 0.1 (the default) draws from it */
    char dir[] = "/tmp/mae_ft_XXXXXX", path[64], bad[80];
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    snprintf(path, sizeof path, "%s/ck.safetensors", dir);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(mae_finetuner_forward_backward(a.f, a.imgs, a.B, a.labels, NULL, NULL, NULL));
        CHECK_OK(mae_finetuner_step(a.f));
    }
    CHECK_OK(mae_finetuner_save(a.f, path));
    for (int i = 0; i < 2; i++) {
        CHECK_OK(mae_finetuner_forward_backward(a.f, a.imgs, a.B, a.labels, NULL, NULL, NULL));
        CHECK_OK(mae_finetuner_step(a.f));
    }
    size_t n = snapshot(&a, NULL);
    float *pa = tu_malloc(n * sizeof *pa), *pb = tu_malloc(n * sizeof *pb), *p0 = tu_malloc(n * sizeof *p0);
    snapshot(&a, pa);
    /* refused checkpoints first: b stays as it was */
    snapshot(&b, p0);
    EXPECT(mae_finetuner_load(b.f, data_path("clsgp", "classifier")), MAE_ERR_FORMAT);   /* no optimizer state */
    EXPECT(mae_finetuner_load(b.f, "/nonexistent/ck.safetensors"), MAE_ERR_IO);
    fixture other;
    if (open_fixture("clstok", &other)) {
        snprintf(bad, sizeof bad, "%s/other.safetensors", dir);
        CHECK_OK(mae_finetuner_save(other.f, bad));
        EXPECT(mae_finetuner_load(b.f, bad), MAE_ERR_SHAPE);   /* 3 classes, not 5 */
        remove(bad);
    }
    close_fixture(&other);
    size_t size;
    unsigned char *bytes = tu_read_file(path, &size);
    snprintf(bad, sizeof bad, "%s/cut.safetensors", dir);
    for (size_t cut = 0; bytes && cut < size; cut += size / 13 + 1) {
        FILE *fp = fopen(bad, "wb");
        if (fp) {
            fwrite(bytes, 1, cut, fp);
            fclose(fp);
        }
        CHECK(mae_finetuner_load(b.f, bad) != MAE_OK, "a checkpoint cut at %zu of %zu loaded", cut, size);
    }
    free(bytes);
    remove(bad);
    snapshot(&b, pb);
    int64_t step = -1;
    CHECK_OK(mae_finetuner_get_step(b.f, &step));
    CHECK(memcmp(p0, pb, n * sizeof *pb) == 0 && step == 0, "a refused checkpoint changed the finetuner");
    /* the real one */
    CHECK_OK(mae_finetuner_load(b.f, path));
    CHECK_OK(mae_finetuner_get_step(b.f, &step));
    mae_finetune_config got;
    got.struct_size = sizeof got;
    CHECK_OK(mae_finetuner_get_config(b.f, &got));
    CHECK(step == 3 && got.blr == 0.2 && got.iters_per_epoch == 2 && got.clip_grad == 5.0f, "step %lld, config not restored",
          (long long)step);
    for (int i = 0; i < 2; i++) {
        CHECK_OK(mae_finetuner_forward_backward(b.f, b.imgs, b.B, b.labels, NULL, NULL, NULL));
        CHECK_OK(mae_finetuner_step(b.f));
    }
    snapshot(&b, pb);
    CHECK(memcmp(pa, pb, n * sizeof *pa) == 0, "resumed run differs from the uninterrupted one");
    printf("  resume: %zu parameters bitwise equal after save at step 3 + 2 steps; refused checkpoints change nothing\n", n);
    free(pa); free(pb); free(p0);
    remove(path);
    rmdir(dir);
    close_fixture(&a);
    close_fixture(&b);
}

/* mae_mixup against timm's Mixup stated as properties: Beta(a, a) moments, the switch
 * probability, mixup's blend, cutmix's box and its corrected lam, the targets, determinism. */
static void test_mixup(void)
{
    enum { B = 4, C = 2, H = 7, W = 9, K = 3 };
    float imgs[B * C * H * W], orig[B * C * H * W], targets[B * K], lam;
    int32_t labels[B] = { 0, 2, 1, 2 };
    mae_mixup_config cfg;
    CHECK_OK(mae_mixup_config_init(&cfg, sizeof cfg));
    CHECK(cfg.mixup_alpha == 0.8f && cfg.cutmix_alpha == 1.0f && cfg.switch_prob == 0.5f && cfg.prob == 1.0f &&
          cfg.smoothing == 0.1f, "mixup defaults are not main_finetune.py's recipe");
    /* image b is the constant b + 1: cutmix leaves only the values b + 1 and B - b, mixup a blend */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < C * H * W; i++)
            orig[b * C * H * W + i] = (float)(b + 1);
    int n = 2000, cutmixes = 0;
    double sum = 0, sq = 0;
    for (int seed = 0; seed < n; seed++) {
        memcpy(imgs, orig, sizeof imgs);
        CHECK_OK(mae_mixup(&cfg, (uint64_t)seed, imgs, B, C, H, W, labels, K, targets, &lam));
        int swapped = 0, blended = 0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < C * H * W; i++) {
                float v = imgs[b * C * H * W + i], a = (float)(b + 1), z = (float)(B - b);
                if (v == z && v != a)
                    swapped++;
                else if (v != a)
                    blended++;
            }
        int is_cut = blended == 0;
        cutmixes += is_cut;
        if (is_cut)   /* corrected lam = 1 - box area / image area, the box in every image and channel */
            CHECK(fabs((1.0 - lam) * H * W * C * B - swapped) < 1e-3, "seed %d: %d pixels swapped, lam %g", seed, swapped, lam);
        else {
            for (int b = 0; b < B; b++) {
                float want = (float)(b + 1) * lam + (float)(B - b) * (float)(1.0 - (double)lam);
                CHECK(fabs(imgs[b * C * H * W] - want) <= 1e-6f * B, "seed %d: mixup pixel %g, want %g", seed,
                      imgs[b * C * H * W], want);
            }
            sum += lam, sq += (double)lam * lam;
        }
        for (int b = 0; b < B; b++) {
            double row = 0;
            for (int k = 0; k < K; k++) {
                double off = 0.1 / K, on = 1 - 0.1 + off;
                double want = lam * (k == labels[b] ? on : off) + (1 - lam) * (k == labels[B - 1 - b] ? on : off);
                CHECK(fabs(targets[b * K + k] - want) < 1e-6, "seed %d: target[%d][%d] %g, want %g", seed, b, k,
                      targets[b * K + k], want);
                row += targets[b * K + k];
            }
            CHECK(fabs(row - 1) < 1e-6, "a target row sums to %g", row);
        }
    }
    int nm = n - cutmixes;
    double mean = sum / nm, var = sq / nm - mean * mean, want_var = 1.0 / (4 * (2 * 0.8 + 1));
    /* 5 sigma: the switch is binomial(2000, 0.5); lam's mean has std sqrt(var / ~1000) */
    CHECK(fabs(cutmixes - n / 2.0) < 5 * sqrt(n * 0.25), "cutmix in %d of %d batches, want half", cutmixes, n);
    CHECK(fabs(mean - 0.5) < 5 * sqrt(want_var / nm) && fabs(var / want_var - 1) < 0.15,
          "mixup lam mean %.4f var %.4f, Beta(0.8, 0.8) has 0.5, %.4f", mean, var, want_var);
    /* the same seed mixes the same way; prob 0 mixes nothing */
    float again[B * C * H * W], t2[B * K], lam2;
    memcpy(imgs, orig, sizeof imgs);
    memcpy(again, orig, sizeof again);
    CHECK_OK(mae_mixup(&cfg, 77, imgs, B, C, H, W, labels, K, targets, &lam));
    CHECK_OK(mae_mixup(&cfg, 77, again, B, C, H, W, labels, K, t2, &lam2));
    CHECK(!memcmp(imgs, again, sizeof imgs) && !memcmp(targets, t2, sizeof t2) && lam == lam2, "seed 77 mixed twice differs");
    cfg.prob = 0;
    memcpy(imgs, orig, sizeof imgs);
    CHECK_OK(mae_mixup(&cfg, 5, imgs, B, C, H, W, labels, K, targets, &lam));
    CHECK(lam == 1.0f && !memcmp(imgs, orig, sizeof imgs) && fabs(targets[1 * K + 2] - (0.9 + 0.1 / 3)) < 1e-7,
          "prob 0 mixed (lam %g)", lam);
    printf("  mixup: %d of %d batches cutmix, mixup lam mean %.4f var %.4f (Beta(0.8,0.8): 0.5, %.4f)\n", cutmixes, n,
           mean, var, want_var);
    int32_t bad[B] = { 0, 3, 1, 2 };
    EXPECT(mae_mixup(&cfg, 1, imgs, 3, C, H, W, labels, K, targets, &lam), MAE_ERR_INVALID_ARG);
    EXPECT(mae_mixup(&cfg, 1, imgs, B, C, H, W, bad, K, targets, &lam), MAE_ERR_INVALID_ARG);
    EXPECT(mae_mixup(NULL, 1, imgs, B, C, H, W, labels, K, targets, &lam), MAE_ERR_INVALID_ARG);
    cfg.switch_prob = 2;
    EXPECT(mae_mixup(&cfg, 1, imgs, B, C, H, W, labels, K, targets, &lam), MAE_ERR_INVALID_ARG);
}

/* Every allocation of mae_finetuner_create and mae_finetuner_load failing in turn: an error,
 * nothing leaked, the finetuner unchanged by a failed load. */
static void test_nomem(void)
{
    fixture x;
    if (!open_fixture("clsgp", &x)) {
        close_fixture(&x);
        return;
    }
    char dir[] = "/tmp/mae_ftm_XXXXXX", path[64];
    if (!mkdtemp(dir)) {
        close_fixture(&x);
        return;
    }
    snprintf(path, sizeof path, "%s/ck.safetensors", dir);
    CHECK_OK(mae_finetuner_forward_backward(x.f, x.imgs, x.B, x.labels, NULL, NULL, NULL));
    CHECK_OK(mae_finetuner_step(x.f));
    CHECK_OK(mae_finetuner_save(x.f, path));
    CHECK_OK(tu_alloc_install());
    for (long k = 1; k < 300; k++) {
        tu_alloc_reset();
        tu_alloc.fail_at = k;
        mae_finetuner *f = NULL;
        mae_status s1 = mae_finetuner_create(x.c, 2, &f);
        long calls1 = atomic_load(&tu_alloc.calls);
        mae_finetuner_free(f);
        CHECK(atomic_load(&tu_alloc.live) == 0, "create failing at allocation %ld leaked", k);
        tu_alloc_reset();
        tu_alloc.fail_at = k;
        mae_status s2 = mae_finetuner_load(x.f, path);
        long calls2 = atomic_load(&tu_alloc.calls);
        /* a load that succeeds hands the classifier its new labels (2 blocks); one that fails keeps nothing */
        CHECK(atomic_load(&tu_alloc.live) == (s2 == MAE_OK ? 2 : 0), "load at failing allocation %ld: %s, %ld blocks live", k,
              mae_status_str(s2), (long)atomic_load(&tu_alloc.live));
        CHECK((s1 == MAE_OK) == (k > calls1) && (s2 == MAE_OK) == (k > calls2), "failing allocation %ld: create %s, load %s", k,
              mae_status_str(s1), mae_status_str(s2));
        if (k > calls1 && k > calls2)
            break;
    }
    mae_set_allocator(NULL);
    int64_t step = 0;
    CHECK_OK(mae_finetuner_get_step(x.f, &step));
    CHECK(step == 1, "step %lld after the loads", (long long)step);
    remove(path);
    rmdir(dir);
    close_fixture(&x);
}

static void test_misuse(void)
{
    fixture x;
    if (!open_fixture("clsgp", &x)) {
        close_fixture(&x);
        return;
    }
    int32_t bad[3] = { 0, 5, 1 }, neg[3] = { 0, -1, 1 };
    float t[15] = { 0 };
    EXPECT(mae_finetuner_forward_backward(x.f, x.imgs, x.B, bad, NULL, NULL, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_forward_backward(x.f, x.imgs, x.B, neg, NULL, NULL, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_forward_backward(x.f, x.imgs, x.B, x.labels, t, NULL, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_forward_backward(x.f, x.imgs, x.B, NULL, NULL, NULL, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_forward_backward(x.f, x.imgs, x.B + 1, x.labels, NULL, NULL, NULL), MAE_ERR_SHAPE);
    EXPECT(mae_finetuner_forward_backward(x.f, NULL, x.B, x.labels, NULL, NULL, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_forward_backward(NULL, x.imgs, x.B, x.labels, NULL, NULL, NULL), MAE_ERR_INVALID_ARG);
    /* the rejected calls added nothing */
    const float *g;
    size_t n;
    CHECK_OK(mae_finetuner_grad(x.f, "head.weight", &g, &n));
    int zero = 1;
    for (size_t i = 0; i < n; i++)
        zero &= g[i] == 0.0f;
    CHECK(zero, "a rejected call changed the gradients");
    EXPECT(mae_finetuner_grad(x.f, "norm.weight", &g, &n), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_grad(x.f, "nope", &g, &n), MAE_ERR_INVALID_ARG);
    mae_finetune_config cfg;
    CHECK_OK(mae_finetune_config_init(&cfg, sizeof cfg));
    CHECK(cfg.blr == 1e-3 && cfg.layer_decay == 0.75 && cfg.beta2 == 0.999 && cfg.smoothing == 0.1f && cfg.epochs == 50,
          "defaults are not main_finetune.py's");
    mae_finetune_config c2 = cfg;
    c2.layer_decay = 0;
    EXPECT(mae_finetuner_set_config(x.f, &c2), MAE_ERR_INVALID_ARG);
    c2 = cfg, c2.smoothing = 1;
    EXPECT(mae_finetuner_set_config(x.f, &c2), MAE_ERR_INVALID_ARG);
    c2 = cfg, c2.iters_per_epoch = 10, c2.epochs = 5;
    EXPECT(mae_finetuner_set_config(x.f, &c2), MAE_ERR_INVALID_ARG);
    c2 = cfg, c2.struct_size = 8;
    EXPECT(mae_finetuner_set_config(x.f, &c2), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_set_threads(x.f, 0), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_create(x.c, 0, NULL), MAE_ERR_INVALID_ARG);
    mae_finetuner_free(NULL);
    close_fixture(&x);
}

/* mae_finetuner_set_abort / _set_progress: progress runs 0..depth then depth + 1 = total; a
 * cancel at any check (before each block, before the backward pass) returns MAE_ERR_ABORTED and
 * leaves the finetuner as it was: after it, finetuner a (with the cancelled calls) and b (without)
 * give bitwise the same loss, gradients and parameters, drop path masks included. */
typedef struct hook_log {
    int calls, stop_at, done[64], total, n;
} hook_log;

static int count_abort(void *user)
{
    hook_log *h = user;
    return h->calls++ == h->stop_at;
}

static int log_progress(void *user, int done, int total)
{
    hook_log *h = user;
    if (h->n < 64)
        h->done[h->n++] = done;
    h->total = total;
    return 0;
}

static void test_hooks(void)
{
    fixture a, b;
    if (!open_fixture("clsdp", &a) || !open_fixture("clsdp", &b)) {
        close_fixture(&a);
        close_fixture(&b);
        return;
    }
    const mae_model *m;
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_classifier_model(a.c, &m);
    CHECK_OK(mae_model_get_config(m, &cfg));
    int depth = cfg.depth;
    hook_log p = { 0 };
    CHECK_OK(mae_finetuner_set_progress(a.f, log_progress, &p));
    float la = 0, lb = 0;
    CHECK_OK(mae_finetuner_forward_backward(a.f, a.imgs, a.B, a.labels, a.targets, &la, NULL));
    CHECK_OK(mae_finetuner_forward_backward(b.f, b.imgs, b.B, b.labels, b.targets, &lb, NULL));
    int ok = p.n == depth + 2 && p.total == depth + 1 && p.done[depth + 1] == depth + 1;
    for (int i = 0; ok && i <= depth; i++)
        ok = p.done[i] == i;
    CHECK(ok, "progress: %d calls (want %d), total %d (want %d)", p.n, depth + 2, p.total, depth + 1);
    CHECK_OK(mae_finetuner_set_progress(a.f, NULL, NULL));
    CHECK_OK(mae_finetuner_step(a.f));
    CHECK_OK(mae_finetuner_step(b.f));

    size_t n = snapshot(&a, NULL);
    float *wa = tu_malloc(n * sizeof *wa), *wb = tu_malloc(n * sizeof *wb);
    for (int at = 0; at <= depth; at++) {
        hook_log h = { 0, at, { 0 }, 0, 0 };
        CHECK_OK(mae_finetuner_set_abort(a.f, count_abort, &h));
        EXPECT(mae_finetuner_forward_backward(a.f, a.imgs, a.B, a.labels, a.targets, &la, NULL), MAE_ERR_ABORTED);
        CHECK(h.calls == at + 1 && strstr(mae_last_error(), "mae_finetuner_forward_backward"),
              "cancel at check %d: abort called %d times; %s", at, h.calls, mae_last_error());
        CHECK_OK(mae_finetuner_set_abort(a.f, NULL, NULL));
        CHECK_OK(mae_finetuner_forward_backward(a.f, a.imgs, a.B, a.labels, a.targets, &la, NULL));
        CHECK_OK(mae_finetuner_forward_backward(b.f, b.imgs, b.B, b.labels, b.targets, &lb, NULL));
        const float *ga, *gb;
        size_t na = 0, nb = 0;
        CHECK_OK(mae_finetuner_grad(a.f, "blocks.0.mlp.fc1.weight", &ga, &na));
        CHECK_OK(mae_finetuner_grad(b.f, "blocks.0.mlp.fc1.weight", &gb, &nb));
        CHECK(memcmp(&la, &lb, sizeof la) == 0 && na == nb && memcmp(ga, gb, na * sizeof *ga) == 0,
              "after a cancel at check %d: loss %.9g vs %.9g, or the gradients differ", at, la, lb);
        CHECK_OK(mae_finetuner_step(a.f));
        CHECK_OK(mae_finetuner_step(b.f));
        snapshot(&a, wa);
        snapshot(&b, wb);
        CHECK(memcmp(wa, wb, n * sizeof *wa) == 0, "after a cancel at check %d the parameters differ", at);
    }
    EXPECT(mae_finetuner_set_abort(NULL, count_abort, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_finetuner_set_progress(NULL, log_progress, NULL), MAE_ERR_INVALID_ARG);
    free(wa);
    free(wb);
    close_fixture(&a);
    close_fixture(&b);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(1920);
    TU_RUN("torch", test_torch());
    TU_RUN("finite_differences", test_finite_differences());
    TU_RUN("groups", test_groups());
    TU_RUN("threads_descent", test_threads_and_descent());
    TU_RUN("resume", test_resume());
    TU_RUN("mixup", test_mixup());
    TU_RUN("hooks", test_hooks());
    TU_RUN("nomem", test_nomem());
    TU_RUN("misuse", test_misuse());
    return tu_finish("test_finetune");
}
