/* The official linear probe's parts of `mae probe --official` (examples/cli/linprobe.h): LARS
 * against a direct implementation of util/lars.py's formula (2-D: weight decay and trust ratio,
 * the zero-norm cases; 1-D: neither), BatchNorm1d without affine in training and eval mode
 * against the direct formulas, the lr schedule's corners, the features (the global-pool ones,
 * from mae_classifier_features, reproduce a second head's logits; the cls ones a cls classifier's),
 * and the whole head training on separable data. With --torch FILE (tests/check_linprobe.sh,
 * FILE from tests/gen_linprobe.py) BatchNorm and LARS are checked against PyTorch float64. */
#include "../examples/cli/linprobe.c"
#include "../examples/cli/probe_official.c"
#include "testutil.h"

/* max |a - b| / max(1, |b|) over n */
static double max_err(const float *a, const double *b, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        e = isnan(d) ? INFINITY : fmax(e, d);
    }
    return e;
}

/* util/lars.py's step, written out in double on its own copy of the state. */
static void lars_direct(double *p, const double *g, double *mu, size_t n, int matrix, double lr,
                        double wd, double momentum, double trust)
{
    double *d = tu_malloc(n * sizeof *d), pn = 0, dn = 0;
    for (size_t i = 0; i < n; i++)
        d[i] = matrix ? g[i] + wd * p[i] : g[i];
    for (size_t i = 0; i < n; i++)
        pn += p[i] * p[i], dn += d[i] * d[i];
    double q = matrix && pn > 0 && dn > 0 ? trust * sqrt(pn) / sqrt(dn) : 1;
    for (size_t i = 0; i < n; i++) {
        mu[i] = momentum * mu[i] + q * d[i];
        p[i] -= lr * mu[i];
    }
    free(d);
}

static void test_lars(void)
{
    enum { N = 37, STEPS = 5 };
    for (int matrix = 0; matrix <= 1; matrix++)
        for (int zero_p = 0; zero_p <= 1; zero_p++) {
            float p[N], g[N], mu[N] = { 0 };
            double pd[N], gd[N], mud[N] = { 0 };
            tu_fill(p, N, -0.05, 0.05);
            if (zero_p)   /* |p| = 0: the trust ratio is 1 */
                memset(p, 0, sizeof p);
            for (int i = 0; i < N; i++)
                pd[i] = p[i];
            for (int s = 0; s < STEPS; s++) {
                tu_fill(g, N, -1, 1);
                if (s == 3 && !zero_p)   /* g = 0 with wd = 0: |d| = 0, the ratio 1, only momentum */
                    memset(g, 0, sizeof g);
                double wd = s == 3 ? 0 : 0.1;
                for (int i = 0; i < N; i++)
                    gd[i] = g[i];
                lp_lars_step(p, g, mu, N, matrix, 2.5, wd, 0.9, 0.001);
                lars_direct(pd, gd, mud, N, matrix, 2.5, wd, 0.9, 0.001);
                double e = max_err(p, pd, N);
                CHECK(e < 1e-6, "matrix %d, p %s, step %d: LARS differs from the formula by %.3g", matrix,
                      zero_p ? "zero" : "random", s, e);
            }
        }
    /* the trust ratio at work: a 2-D step moves p by lr * trust * |p| (momentum buffer fresh) */
    float p[4] = { 3, 0, 4, 0 }, g[4] = { 100, -7, 1, 2 }, mu[4] = { 0 };
    lp_lars_step(p, g, mu, 4, 1, 1.0, 0, 0.9, 0.001);
    double moved = sqrt(pow(p[0] - 3, 2) + pow(p[1], 2) + pow(p[2] - 4, 2) + pow(p[3], 2));
    CHECK(fabs(moved - 0.005) < 1e-7, "a 2-D step moved p by %.9g, not 0.001 * |p| = 0.005", moved);
}

static void bn_direct(const float *x, int b, int F, int j, double *mean, double *var)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < b; i++)
        s += x[i * F + j];
    *mean = s / b;
    for (int i = 0; i < b; i++)
        s2 += pow(x[i * F + j] - *mean, 2);
    *var = s2 / b;
}

static void test_batchnorm(void)
{
    enum { F = 6, B = 9, BATCHES = 4 };
    lp_batchnorm bn;
    CHECK(lp_bn_init(&bn, F, 1e-6, 0.1) == 0, "init");
    if (!bn.mean)
        return;
    double rm[F], rv[F];
    for (int j = 0; j < F; j++)
        rm[j] = 0, rv[j] = 1;
    float x[B * F], y[B * F];
    for (int t = 0; t < BATCHES; t++) {
        tu_fill(x, B * F, -2, 5);
        for (int i = 0; i < B; i++)
            x[i * F + 5] = 0.25f;   /* a constant feature: variance 0, output 0 */
        lp_bn_train(&bn, x, B, y);
        for (int j = 0; j < F; j++) {
            double mean, var;
            bn_direct(x, B, F, j, &mean, &var);
            double want[B];
            for (int i = 0; i < B; i++)
                want[i] = (x[i * F + j] - mean) / sqrt(var + 1e-6);
            float got[B];
            for (int i = 0; i < B; i++)
                got[i] = y[i * F + j];
            CHECK(max_err(got, want, B) < 1e-6, "batch %d feature %d: train output off", t, j);
            rm[j] = 0.9 * rm[j] + 0.1 * mean;
            rv[j] = 0.9 * rv[j] + 0.1 * var * B / (B - 1);
            CHECK(fabs(bn.mean[j] - rm[j]) < 1e-12 && fabs(bn.var[j] - rv[j]) < 1e-12,
                  "batch %d feature %d: running stats %g %g, want %g %g", t, j, bn.mean[j], bn.var[j], rm[j], rv[j]);
        }
    }
    CHECK(bn.batches == BATCHES, "num_batches_tracked %lld", bn.batches);
    tu_fill(x, B * F, -2, 5);
    lp_bn_eval(&bn, x, B, y);
    for (int i = 0; i < B * F; i++) {
        int j = i % F;
        double want = (x[i] - rm[j]) / sqrt(rv[j] + 1e-6);
        CHECK(fabs(y[i] - want) <= 1e-6 * fmax(1, fabs(want)), "eval [%d]: %g, want %g", i, y[i], want);
    }
    lp_bn_free(&bn);
}

static void test_schedule(void)
{
    CHECK(lp_lr_at(0, 6.4, 0, 10, 90) == 0, "the first step's lr is not 0");
    CHECK(fabs(lp_lr_at(5, 6.4, 0, 10, 90) - 3.2) < 1e-12, "half the warmup");
    CHECK(fabs(lp_lr_at(10, 6.4, 0, 10, 90) - 6.4) < 1e-12, "the end of the warmup");
    CHECK(fabs(lp_lr_at(50, 6.4, 0, 10, 90) - 3.2) < 1e-12, "half the cosine");
    CHECK(fabs(lp_lr_at(90, 6.4, 0.1, 10, 90) - 0.1) < 1e-12, "the end: min_lr");
}

/* Features through lp_features against what a second classifier's head makes of them. */
static void test_features(void)
{
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(tu_path("tests/data/tiny.model.safetensors"), &m));
    if (!m)
        return;
    enum { N = 5, K = 7 };
    int D = 0, T = 0;
    CHECK_OK(mae_model_embed_dims(m, &D, &T));
    size_t img = 3 * 16 * 16;
    float *imgs = tu_malloc(N * img * sizeof *imgs), *f = tu_malloc((size_t)N * D * sizeof *f);
    tu_fill(imgs, N * img, -2, 2);
    for (int gp = 0; gp <= 1; gp++) {
        mae_classifier *c = NULL;
        const mae_model *cm = NULL;
        mae_ctx *ctx = NULL;
        const float *W = NULL, *b = NULL;
        float logits[N * K];
        tu_poison(f, (size_t)N * D);
        CHECK_OK(lp_features(m, gp, 1, imgs, N, f));
        CHECK_OK(mae_classifier_create(m, K, gp, 99, &c));
        if (!c)
            break;
        CHECK_OK(mae_classifier_tensor(c, "head.weight", &W, NULL));
        CHECK_OK(mae_classifier_tensor(c, "head.bias", &b, NULL));
        CHECK_OK(mae_classifier_model(c, &cm));
        CHECK_OK(mae_ctx_create(cm, N, &ctx));
        CHECK_OK(mae_classifier_forward(c, ctx, imgs, N, logits));
        double err = 0, scale = 0;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < K; k++) {
                double z = b[k];
                for (int j = 0; j < D; j++)
                    z += (double)W[k * D + j] * f[i * D + j];
                err = fmax(err, fabs(z - logits[i * K + k]));
                scale = fmax(scale, fabs(logits[i * K + k]));
            }
        CHECK(err <= 1e-5 * scale, "%s: head(features) differs from the classifier's logits by %.3g (scale %.3g)",
              gp ? "global pool" : "cls", err, scale);
        if (gp) {   /* the LayerNorm without affine: every row has mean 0 and variance ~1 */
            double mean = 0, var = 0;
            for (int j = 0; j < D; j++)
                mean += f[j];
            mean /= D;
            for (int j = 0; j < D; j++)
                var += pow(f[j] - mean, 2);
            var /= D;
            CHECK(fabs(mean) < 1e-4 && fabs(var - 1) < 1e-3, "global-pool row: mean %g, variance %g", mean, var);
        }
        mae_ctx_free(ctx);
        mae_classifier_free(c);
    }
    free(imgs);
    free(f);
    mae_model_free(m);
}

/* Separable data: three classes around distant centres are learned; bad sizes are refused. */
static void test_fit(void)
{
    enum { F = 5, NTR = 600, NTE = 150, K = 3 };
    float *xtr = tu_malloc(NTR * F * sizeof *xtr), *xte = tu_malloc(NTE * F * sizeof *xte);
    uint8_t ytr[NTR], yte[NTE];
    for (int i = 0; i < NTR + NTE; i++) {
        float *x = i < NTR ? xtr + i * F : xte + (i - NTR) * F;
        int label = (int)(tu_uniform() * K);
        tu_fill(x, F, -1, 1);
        x[label] += 4;   /* class k: feature k far out */
        x[4] = x[4] * 100 + 50;   /* a badly scaled feature, which the BatchNorm tames */
        if (i < NTR)
            ytr[i] = (uint8_t)label;
        else
            yte[i - NTR] = (uint8_t)label;
    }
    lp_fit_opts o = { 20, 64, K, 5, 6.4, 0, 2, NULL };
    lp_fit_result r = { 0 };
    CHECK(lp_fit(&o, xtr, ytr, NTR, xte, yte, NTE, F, &r) == 0, "fit failed");
    CHECK(r.test_acc >= 99 && r.train_acc >= 99 && r.loss < 0.5, "separable data: train %.1f %%, test %.1f %%, loss %.3f",
          r.train_acc, r.test_acc, r.loss);
    o.batch = NTR + 1;
    CHECK(lp_fit(&o, xtr, ytr, NTR, xte, yte, NTE, F, &r) == -2, "a batch above the rows was accepted");
    o.batch = 1;
    CHECK(lp_fit(&o, xtr, ytr, NTR, xte, yte, NTE, F, &r) == -2, "batch 1 (no BatchNorm statistics) was accepted");
    free(xtr);
    free(xte);
}

/* ---- against PyTorch float64 (tests/gen_linprobe.py) ---- */

static FILE *ref;
static double num(void)
{
    double v = NAN;
    if (fscanf(ref, "%lf", &v) != 1)
        CHECK(0, "the reference file ends early");
    return v;
}
static void nums(double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = num();
}
static void to_float(float *out, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)v[i];
}

static void test_torch(const char *path)
{
    ref = fopen(path, "r");
    CHECK(ref != NULL, "cannot read %s", path);
    if (!ref)
        return;
    long seed = (long)num();
    int F = (int)num(), b = (int)num(), nb = (int)num();
    CHECK(F > 0 && F < 100 && b > 1 && b < 100 && nb > 0 && nb < 100, "bad sizes in %s", path);
    if (tu_failures) {
        fclose(ref);
        return;
    }
    size_t n = (size_t)b * F;
    double *xd = tu_malloc(n * sizeof *xd), *want = tu_malloc(n * sizeof *want), *stat = tu_malloc(2 * (size_t)F * sizeof *stat);
    float *x = tu_malloc(n * sizeof *x), *y = tu_malloc(n * sizeof *y);
    lp_batchnorm bn;
    CHECK(lp_bn_init(&bn, F, 1e-6, 0.1) == 0, "init");
    for (int t = 0; t < nb; t++) {
        nums(xd, n);
        nums(want, n);
        to_float(x, xd, n);
        lp_bn_train(&bn, x, b, y);
        double e = max_err(y, want, n);
        CHECK(e < 1e-6, "seed %ld: BatchNorm train batch %d differs from torch by %.3g", seed, t, e);
    }
    nums(stat, 2 * (size_t)F);
    for (int j = 0; j < F; j++)
        CHECK(fabs(bn.mean[j] - stat[j]) < 1e-6 && fabs(bn.var[j] - stat[F + j]) < 1e-6 * fmax(1, stat[F + j]),
              "seed %ld: running stats of feature %d: %g %g, torch %g %g", seed, j, bn.mean[j], bn.var[j], stat[j], stat[F + j]);
    nums(xd, n);
    nums(want, n);
    to_float(x, xd, n);
    lp_bn_eval(&bn, x, b, y);
    double e = max_err(y, want, n);
    CHECK(e < 1e-6, "seed %ld: BatchNorm eval differs from torch by %.3g", seed, e);
    lp_bn_free(&bn);

    int K = (int)num(), F2 = (int)num(), steps = (int)num();
    double lr = num(), wd = num(), momentum = num(), trust = num();
    size_t wn = (size_t)K * F2;
    double *wd_ = tu_malloc(wn * sizeof *wd_), *bd = tu_malloc((size_t)K * sizeof *bd);
    float *w = tu_malloc(wn * sizeof *w), *bias = tu_malloc((size_t)K * sizeof *bias), *gw = tu_malloc(wn * sizeof *gw),
          *gb = tu_malloc((size_t)K * sizeof *gb);
    float *muw = calloc(wn, sizeof *muw), *mub = calloc((size_t)K, sizeof *mub);
    nums(wd_, wn);
    nums(bd, (size_t)K);
    to_float(w, wd_, wn);
    to_float(bias, bd, (size_t)K);
    for (int s = 0; s < steps; s++) {
        nums(wd_, wn);
        to_float(gw, wd_, wn);
        nums(bd, (size_t)K);
        to_float(gb, bd, (size_t)K);
        lp_lars_step(w, gw, muw, wn, 1, lr, wd, momentum, trust);
        lp_lars_step(bias, gb, mub, (size_t)K, 0, lr, wd, momentum, trust);
        nums(wd_, wn);
        nums(bd, (size_t)K);
        double ew = max_err(w, wd_, wn), eb = max_err(bias, bd, (size_t)K);
        CHECK(ew < 1e-5 && eb < 1e-5, "seed %ld: LARS step %d differs from torch by %.3g (weight), %.3g (bias)", seed, s, ew, eb);
    }
    double extra;
    CHECK(fscanf(ref, "%lf", &extra) != 1, "the reference file has more numbers than read");
    printf("against torch float64 (seed %ld): BatchNorm %d batches + eval, LARS %d steps\n", seed, nb, steps);
    fclose(ref);
    free(xd); free(want); free(stat); free(x); free(y);
    free(wd_); free(bd); free(w); free(bias); free(gw); free(gb); free(muw); free(mub);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(1919);
    const char *torch_ref = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--torch") == 0)
            torch_ref = argv[i + 1];
    if (torch_ref) {
        TU_RUN("torch", test_torch(torch_ref));
        return tu_finish("test_linprobe --torch");
    }
    TU_RUN("lars", test_lars());
    TU_RUN("batchnorm", test_batchnorm());
    TU_RUN("schedule", test_schedule());
    TU_RUN("features", test_features());
    TU_RUN("fit", test_fit());
    return tu_finish("test_linprobe");
}
