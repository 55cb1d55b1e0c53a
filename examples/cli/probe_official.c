/* The official linear probe's training loop (main_linprobe.py / engine_finetune.py's
 * train_one_epoch on a frozen encoder): BatchNorm1d + Linear head, LARS, warmup + cosine per
 * iteration, plain cross-entropy. The features are computed once beforehand (linprobe.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "linprobe.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s)   /* (0, 1) */
{
    return ((double)(splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
}

/* timm's trunc_normal_(std=0.01): normal, redrawn outside the absolute bounds +-2 (200 std away
 * here, so in effect never). */
static float trunc_normal(uint64_t *s, double std)
{
    for (;;) {
        double v = std * sqrt(-2 * log(uniform(s))) * cos(2 * 3.14159265358979323846 * uniform(s));
        if (v >= -2 && v <= 2)
            return (float)v;
    }
}

/* Logits of the normalized rows x [b, F] into z [b, K] (double). */
static void head(const float *W, const float *bias, const float *x, int b, int F, int K, double *z)
{
    for (int i = 0; i < b; i++)
        for (int k = 0; k < K; k++) {
            const float *w = W + (size_t)k * F, *xi = x + (size_t)i * F;
            double s = bias[k];
            for (int j = 0; j < F; j++)
                s += (double)w[j] * xi[j];
            z[(size_t)i * K + k] = s;
        }
}

/* Accuracy in percent with the BatchNorm in eval mode, in chunks of rows. */
static double accuracy(const lp_batchnorm *bn, const float *W, const float *bias, const float *X,
                       const uint8_t *y, int n, int F, int K, float *xh, double *z, int chunk)
{
    int right = 0;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int b = n - i0 < chunk ? n - i0 : chunk;
        lp_bn_eval(bn, X + (size_t)i0 * F, b, xh);
        head(W, bias, xh, b, F, K, z);
        for (int i = 0; i < b; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                best = z[(size_t)i * K + k] > z[(size_t)i * K + best] ? k : best;
            right += best == y[i0 + i];
        }
    }
    return n ? 100.0 * right / n : 0;
}

int lp_fit(const lp_fit_opts *o, const float *ftr, const uint8_t *ytr, int ntr, const float *fte,
           const uint8_t *yte, int nte, int F, lp_fit_result *res)
{
    int B = o->batch, K = o->classes;
    if (B < 2 || ntr < B)
        return -2;
    size_t wn = (size_t)K * F;
    lp_batchnorm bn;
    if (lp_bn_init(&bn, F, 1e-6, 0.1))
        return -1;
    float *W = malloc(wn * sizeof *W), *gW = malloc(wn * sizeof *gW), *muW = calloc(wn, sizeof *muW);
    float *bias = calloc((size_t)K, sizeof *bias), *gb = malloc((size_t)K * sizeof *gb),
          *mub = calloc((size_t)K, sizeof *mub);
    float *xb = malloc((size_t)B * F * sizeof *xb), *xh = malloc((size_t)B * F * sizeof *xh);
    double *z = malloc((size_t)B * K * sizeof *z);
    int *order = malloc((size_t)ntr * sizeof *order);
    int rc = W && gW && muW && bias && gb && mub && xb && xh && z && order ? 0 : -1;
    uint64_t rng = o->seed ^ 0x6A09E667F3BCC908ull;
    for (size_t i = 0; !rc && i < wn; i++)
        W[i] = trunc_normal(&rng, 0.01);
    int spe = ntr / B;   /* drop_last */
    double last_loss = 0;
    for (int ep = 0; !rc && ep < o->epochs; ep++) {
        for (int i = 0; i < ntr; i++)
            order[i] = i;
        for (int i = ntr - 1; i > 0; i--) {
            int j = (int)(splitmix(&rng) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        double loss_sum = 0;
        for (int it = 0; it < spe; it++) {
            double lr = lp_lr_at(ep + (double)it / spe, o->lr, 0, o->warmup, o->epochs);
            for (int r = 0; r < B; r++)
                memcpy(xb + (size_t)r * F, ftr + (size_t)order[it * B + r] * F, (size_t)F * sizeof *xb);
            lp_bn_train(&bn, xb, B, xh);
            head(W, bias, xh, B, F, K, z);
            memset(gW, 0, wn * sizeof *gW);
            memset(gb, 0, (size_t)K * sizeof *gb);
            for (int r = 0; r < B; r++) {
                double *zr = z + (size_t)r * K, mx = zr[0], sum = 0;
                int label = ytr[order[it * B + r]];
                for (int k = 1; k < K; k++)
                    mx = zr[k] > mx ? zr[k] : mx;
                for (int k = 0; k < K; k++)
                    sum += exp(zr[k] - mx);
                loss_sum += log(sum) + mx - zr[label];
                for (int k = 0; k < K; k++) {
                    float g = (float)((exp(zr[k] - mx) / sum - (k == label)) / B);
                    float *gw = gW + (size_t)k * F;
                    const float *x = xh + (size_t)r * F;
                    for (int j = 0; j < F; j++)
                        gw[j] += g * x[j];
                    gb[k] += g;
                }
            }
            lp_lars_step(W, gW, muW, wn, 1, lr, o->wd, 0.9, 0.001);
            lp_lars_step(bias, gb, mub, (size_t)K, 0, lr, o->wd, 0.9, 0.001);
        }
        last_loss = loss_sum / ((double)spe * B);
        if (!isfinite(last_loss))
            rc = -3;
        int every = o->epochs >= 10 ? o->epochs / 10 : 1;
        if (o->progress && ((ep + 1) % every == 0 || ep + 1 == o->epochs))
            fprintf(o->progress, "epoch %d/%d  loss %.4f\n", ep + 1, o->epochs, last_loss);
    }
    if (!rc) {
        res->loss = last_loss;
        res->train_acc = accuracy(&bn, W, bias, ftr, ytr, ntr, F, K, xh, z, B);
        res->test_acc = accuracy(&bn, W, bias, fte, yte, nte, F, K, xh, z, B);
    }
    lp_bn_free(&bn);
    free(W); free(gW); free(muW); free(bias); free(gb); free(mub);
    free(xb); free(xh); free(z); free(order);
    return rc;
}
