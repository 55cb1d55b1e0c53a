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

enum { CHUNK = 250 };

/* The global-pool feature (fc_norm of the mean of the pre-norm patch tokens, fc_norm fresh:
 * weight 1, bias 0, as the official probe keeps it) is what a new global-pooling classifier's
 * head reads: mae_classifier_features. */
static mae_status global_pool_features(const mae_model *m, int threads, const float *imgs, int n,
                                       int D, size_t img_floats, float *out)
{
    mae_classifier *cl = NULL;
    const mae_model *cm = NULL;
    mae_ctx *c = NULL;
    mae_status s = mae_classifier_create(m, 1, 1, 0, &cl);
    if (s == MAE_OK && (s = mae_classifier_model(cl, &cm)) == MAE_OK && (s = mae_ctx_create(cm, CHUNK, &c)) == MAE_OK &&
        threads)
        s = mae_ctx_set_threads(c, threads);
    for (int i0 = 0; s == MAE_OK && i0 < n; i0 += CHUNK) {
        int b = n - i0 < CHUNK ? n - i0 : CHUNK;
        s = mae_classifier_features(cl, c, imgs + (size_t)i0 * img_floats, b, out + (size_t)i0 * (size_t)D);
    }
    mae_ctx_free(c);
    mae_classifier_free(cl);
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
