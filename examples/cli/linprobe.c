/* The official linear probe's parts (linprobe.h): BatchNorm1d without affine, LARS, the lr
 * schedule, and the frozen encoder's features. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "linprobe.h"

int lp_bn_init(lp_batchnorm *bn, int F, double eps, double momentum)
{
    memset(bn, 0, sizeof *bn);
    bn->F = F;
    bn->eps = eps;
    bn->momentum = momentum;
    bn->mean = calloc((size_t)F, sizeof *bn->mean);
    bn->var = malloc((size_t)F * sizeof *bn->var);
    if (!bn->mean || !bn->var) {
        lp_bn_free(bn);
        return -1;
    }
    for (int j = 0; j < F; j++)
        bn->var[j] = 1.0;
    return 0;
}

void lp_bn_free(lp_batchnorm *bn)
{
    free(bn->mean);
    free(bn->var);
    bn->mean = bn->var = NULL;
}

void lp_bn_train(lp_batchnorm *bn, const float *x, int b, float *y)
{
    int F = bn->F;
    for (int j = 0; j < F; j++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < b; i++)
            s += x[(size_t)i * F + j];
        double mean = s / b;
        for (int i = 0; i < b; i++) {   /* two passes: no cancellation for large means */
            double d = x[(size_t)i * F + j] - mean;
            s2 += d * d;
        }
        double var = s2 / b, inv = 1.0 / sqrt(var + bn->eps);
        for (int i = 0; i < b; i++)
            y[(size_t)i * F + j] = (float)((x[(size_t)i * F + j] - mean) * inv);
        bn->mean[j] = (1 - bn->momentum) * bn->mean[j] + bn->momentum * mean;
        bn->var[j] = (1 - bn->momentum) * bn->var[j] + bn->momentum * var * b / (b - 1);
    }
    bn->batches++;
}

void lp_bn_eval(const lp_batchnorm *bn, const float *x, int b, float *y)
{
    int F = bn->F;
    for (int j = 0; j < F; j++) {
        double inv = 1.0 / sqrt(bn->var[j] + bn->eps);
        for (int i = 0; i < b; i++)
            y[(size_t)i * F + j] = (float)((x[(size_t)i * F + j] - bn->mean[j]) * inv);
    }
}

void lp_lars_step(float *p, const float *g, float *mu, size_t n, int adapt, double lr, double wd,
                  double momentum, double trust)
{
    double q = 1;
    if (adapt) {
        double pn = 0, dn = 0;
        for (size_t i = 0; i < n; i++) {
            double d = (double)g[i] + wd * p[i];
            pn += (double)p[i] * p[i];
            dn += d * d;
        }
        if (pn > 0 && dn > 0)
            q = trust * sqrt(pn) / sqrt(dn);
    }
    for (size_t i = 0; i < n; i++) {
        double d = adapt ? ((double)g[i] + wd * p[i]) * q : g[i];
        mu[i] = (float)(momentum * mu[i] + d);
        p[i] = (float)(p[i] - lr * mu[i]);
    }
}

double lp_lr_at(double e, double lr, double min_lr, double warmup, double epochs)
{
    if (e < warmup)
        return lr * e / warmup;
    return min_lr + (lr - min_lr) * 0.5 * (1 + cos(3.14159265358979323846 * (e - warmup) / (epochs - warmup)));
}

/* a [D, D] -> its inverse in inv (Gauss-Jordan, partial pivoting); 0, or -1 if singular or out
 * of memory. */
static int invert(const double *a, int D, double *inv)
{
    size_t n = (size_t)D;
    double *m = malloc(n * n * sizeof *m);
    if (!m)
        return -1;
    memcpy(m, a, n * n * sizeof *m);
    for (size_t i = 0; i < n * n; i++)
        inv[i] = 0;
    for (size_t i = 0; i < n; i++)
        inv[i * n + i] = 1;
    for (size_t c = 0; c < n; c++) {
        size_t piv = c;
        for (size_t r = c + 1; r < n; r++)
            if (fabs(m[r * n + c]) > fabs(m[piv * n + c]))
                piv = r;
        if (m[piv * n + c] == 0) {
            free(m);
            return -1;
        }
        if (piv != c)
            for (size_t k = 0; k < n; k++) {
                double t = m[c * n + k];
                m[c * n + k] = m[piv * n + k], m[piv * n + k] = t;
                t = inv[c * n + k];
                inv[c * n + k] = inv[piv * n + k], inv[piv * n + k] = t;
            }
        double d = 1 / m[c * n + c];
        for (size_t k = 0; k < n; k++)
            m[c * n + k] *= d, inv[c * n + k] *= d;
        for (size_t r = 0; r < n; r++) {
            double f = m[r * n + c];
            if (r == c || f == 0)
                continue;
            for (size_t k = 0; k < n; k++)
                m[r * n + k] -= f * m[c * n + k], inv[r * n + k] -= f * inv[c * n + k];
        }
    }
    free(m);
    return 0;
}

enum { CHUNK = 250, SEEDS = 6 };

/* The API gives the global-pool feature (fc_norm of the mean of the pre-norm patch tokens) only
 * through a classifier's head. A classifier with a square head W [D, D] computes z = W f + bias;
 * f = W^-1 (z - bias), with W inverted once in double. W is Gaussian, invertible with
 * probability 1, and f's error is z's float32 rounding times W's condition number: of a few
 * seeds' heads the best conditioned (|W| |W^-1|, Frobenius) is used, about 2 D in practice,
 * which leaves f within about 1e-5 relative (tests/test_linprobe.c checks it through a second
 * head). */
static mae_status global_pool_features(const mae_model *m, int threads, const float *imgs, int n,
                                       int D, size_t img_floats, float *out)
{
    size_t dd = (size_t)D * (size_t)D;
    double *w = malloc(dd * sizeof *w), *winv = malloc(dd * sizeof *winv),
           *best = malloc(dd * sizeof *best);
    float *z = malloc((size_t)CHUNK * (size_t)D * sizeof *z);
    mae_classifier *cl = NULL;
    uint64_t best_seed = 0;
    double best_cond = INFINITY;
    mae_status s = w && winv && best && z ? MAE_OK : MAE_ERR_NOMEM;
    for (uint64_t seed = 1; s == MAE_OK && seed <= SEEDS; seed++) {
        const float *hw;
        mae_classifier_free(cl);
        cl = NULL;
        if ((s = mae_classifier_create(m, D, 1, seed, &cl)) != MAE_OK ||
            (s = mae_classifier_tensor(cl, "head.weight", &hw, NULL)) != MAE_OK)
            break;
        double nw = 0, ni = 0;
        for (size_t i = 0; i < dd; i++)
            w[i] = hw[i], nw += w[i] * w[i];
        if (invert(w, D, winv))
            continue;
        for (size_t i = 0; i < dd; i++)
            ni += winv[i] * winv[i];
        if (sqrt(nw * ni) < best_cond) {
            best_cond = sqrt(nw * ni);
            best_seed = seed;
            memcpy(best, winv, dd * sizeof *best);
        }
    }
    mae_classifier_free(cl);
    cl = NULL;
    if (s == MAE_OK && !best_seed)
        s = MAE_ERR_NOMEM;   /* every head singular cannot happen; invert ran out of memory */
    const float *bias = NULL;
    const mae_model *cm = NULL;
    mae_ctx *c = NULL;
    if (s == MAE_OK && (s = mae_classifier_create(m, D, 1, best_seed, &cl)) == MAE_OK &&
        (s = mae_classifier_tensor(cl, "head.bias", &bias, NULL)) == MAE_OK &&
        (s = mae_classifier_model(cl, &cm)) == MAE_OK && (s = mae_ctx_create(cm, CHUNK, &c)) == MAE_OK &&
        threads)
        s = mae_ctx_set_threads(c, threads);
    for (int i0 = 0; s == MAE_OK && i0 < n; i0 += CHUNK) {
        int b = n - i0 < CHUNK ? n - i0 : CHUNK;
        s = mae_classifier_forward(cl, c, imgs + (size_t)i0 * img_floats, b, z);
        for (int i = 0; s == MAE_OK && i < b; i++) {
            const float *zi = z + (size_t)i * (size_t)D;
            float *f = out + (size_t)(i0 + i) * (size_t)D;
            for (int r = 0; r < D; r++) {
                const double *row = best + (size_t)r * (size_t)D;
                double acc = 0;
                for (int k = 0; k < D; k++)
                    acc += row[k] * ((double)zi[k] - bias[k]);
                f[r] = (float)acc;
            }
        }
    }
    mae_ctx_free(c);
    mae_classifier_free(cl);
    free(w);
    free(winv);
    free(best);
    free(z);
    return s;
}

mae_status lp_features(const mae_model *m, int global_pool, int threads, const float *imgs, int n,
                       float *out)
{
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_status s = mae_model_get_config(m, &cfg);
    if (s != MAE_OK)
        return s;
    int h = cfg.img_height ? cfg.img_height : cfg.img_size, w = cfg.img_width ? cfg.img_width : cfg.img_size;
    size_t img_floats = (size_t)cfg.in_chans * (size_t)h * (size_t)w;
    if (global_pool)
        return global_pool_features(m, threads, imgs, n, cfg.embed_dim, img_floats, out);
    mae_ctx *c = NULL;
    if ((s = mae_ctx_create(m, CHUNK, &c)) == MAE_OK && threads)
        s = mae_ctx_set_threads(c, threads);
    for (int i0 = 0; s == MAE_OK && i0 < n; i0 += CHUNK) {
        int b = n - i0 < CHUNK ? n - i0 : CHUNK;
        s = mae_embed(c, imgs + (size_t)i0 * img_floats, b, MAE_POOL_CLS, out + (size_t)i0 * (size_t)cfg.embed_dim);
    }
    mae_ctx_free(c);
    return s;
}
