/* mae probe: a linear probe (softmax regression trained here, in C) on frozen features of the
 * Fashion-MNIST training images, evaluated on the test images. Features: an encoder's cls token
 * and mean-pooled patch tokens at mask ratio 0, standardized with the training set's statistics
 * (the official linear probe's BatchNorm without affine); or the raw pixels, for comparison.
 * --official: the paper's protocol instead (linprobe.h: cls token or global pooling, BatchNorm1d
 * + Linear head, LARS). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "data.h"
#include "linprobe.h"

typedef struct probe_opts {
    const char *model, *data;
    int pixels, random, epochs, batch, threads, max_train, max_test;
    double lr, wd;
    int official, global_pool;   /* --official, --global-pool */
    double blr, warmup;          /* --official only */
    int seed;
    int precision;          /* MAE_PRECISION_* of the encoder */
} probe_opts;

static void usage(void)
{
    printf("usage: mae probe MODEL.safetensors [options]\n"
           "       mae probe --pixels [options]\n"
           "Trains a softmax classifier on frozen features of the training images of --data and\n"
           "prints its accuracy on the test images. Features: the encoder's cls token and the mean\n"
           "of its patch tokens (mask ratio 0), standardized with the training set's mean and std.\n"
           "options (defaults in brackets):\n"
           "  --data DIR      IDX files with labels [/usr/share/datasets/fashion-mnist]\n"
           "  --pixels        probe the raw (normalized) pixels instead of an encoder\n"
           "  --random        probe a randomly initialized encoder of MODEL's shape (seed --seed)\n"
           "  --epochs N      SGD epochs [30]     --batch N  [256]\n"
           "  --lr X          peak SGD lr (momentum 0.9, cosine decay) [0.05]\n"
           "  --wd X          L2 weight decay [1e-4]\n"
           "  --seed N        data order (and the random encoder) [0]\n"
           "  --threads N     encoder threads [all cores]\n"
           "  --max-train N   use the first N training images only\n"
           "  --max-test N    evaluate on the first N test images only\n"
           "  --precision P   f32 | bf16: the encoder's linear layers (docs/PRECISION.md) [f32]\n"
           "  --official      the paper's protocol (main_linprobe.py): features = the cls token after\n"
           "                  the final norm, head = BatchNorm1d without affine + Linear, LARS (momentum\n"
           "                  0.9, trust 0.001), warmup + cosine per iteration; its defaults:\n"
           "                  --epochs 90 --batch 16384 --blr 0.1 (lr = blr * batch / 256) --warmup 10\n"
           "                  --wd 0 (LARS weight decay); --lr X sets the peak lr itself\n"
           "  --global-pool   (--official) the mean of the patch tokens before the final norm, through a\n"
           "                  LayerNorm without affine (the official --global_pool)\n");
}

static int parse(int argc, char **argv, probe_opts *o)
{
    memset(o, 0, sizeof *o);
    o->data = "/usr/share/datasets/fashion-mnist";
    o->wd = -1;   /* epochs, batch, lr and wd 0 / -1: not given, the mode's default below */
    o->warmup = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (!strcmp(a, "--data")) r = cli_arg_str("probe", argc, argv, &i, &o->data);
        else if (!strcmp(a, "--pixels")) o->pixels = 1;
        else if (!strcmp(a, "--random")) o->random = 1;
        else if (!strcmp(a, "--epochs")) r = cli_arg_int("probe", argc, argv, &i, 1, 100000, &o->epochs);
        else if (!strcmp(a, "--batch")) r = cli_arg_int("probe", argc, argv, &i, 1, 65536, &o->batch);
        else if (!strcmp(a, "--threads")) r = cli_arg_int("probe", argc, argv, &i, 1, 256, &o->threads);
        else if (!strcmp(a, "--max-train")) r = cli_arg_int("probe", argc, argv, &i, 1, 1 << 30, &o->max_train);
        else if (!strcmp(a, "--max-test")) r = cli_arg_int("probe", argc, argv, &i, 1, 1 << 30, &o->max_test);
        else if (!strcmp(a, "--seed")) r = cli_arg_int("probe", argc, argv, &i, 0, 2147483647, &o->seed);
        else if (!strcmp(a, "--lr")) r = cli_arg_double("probe", argc, argv, &i, 1e-9, 100, 0, &o->lr);
        else if (!strcmp(a, "--wd")) r = cli_arg_double("probe", argc, argv, &i, 0, 10, 0, &o->wd);
        else if (!strcmp(a, "--precision")) r = cli_arg_precision("probe", argc, argv, &i, &o->precision);
        else if (!strcmp(a, "--official")) o->official = 1;
        else if (!strcmp(a, "--global-pool")) o->global_pool = 1;
        else if (!strcmp(a, "--blr")) r = cli_arg_double("probe", argc, argv, &i, 1e-9, 100, 0, &o->blr);
        else if (!strcmp(a, "--warmup")) r = cli_arg_double("probe", argc, argv, &i, 0, 1e6, 0, &o->warmup);
        else if (a[0] == '-' && a[1]) {
            return cli_usage_errorf("probe", "unknown option '%s'", a);
        } else if (o->model)
            return cli_usage_error("probe", "expects one model");
        else
            o->model = a;
        if (r)
            return r;
    }
    if (!o->pixels && !o->model)
        return cli_usage_error("probe", "needs a model, or --pixels");
    if (o->pixels && (o->model || o->random))
        return cli_usage_error("probe", "--pixels takes no model");
    if (!o->official && (o->global_pool || o->warmup >= 0 || o->blr > 0))
        return cli_usage_error("probe", "--global-pool, --blr and --warmup belong to --official");
    if (o->global_pool && o->pixels)
        return cli_usage_error("probe", "--global-pool pools an encoder's tokens: not with --pixels");
    if (!o->epochs)
        o->epochs = o->official ? 90 : 30;
    if (!o->batch)
        o->batch = o->official ? 16384 : 256;
    if (o->wd < 0)
        o->wd = o->official ? 0 : 1e-4;
    if (o->warmup < 0)
        o->warmup = 10;
    if (o->blr == 0)
        o->blr = 0.1;
    if (o->lr == 0)
        o->lr = o->official ? o->blr * o->batch / 256 : 0.05;
    if (o->official && o->warmup >= o->epochs)
        return cli_usage_errorf("probe", "--warmup %g must be below --epochs %d", o->warmup, o->epochs);
    if (o->official && o->batch < 2)
        return cli_usage_error("probe", "--official needs --batch 2 or more (BatchNorm statistics)");
    return 0;
}

/* feats [n, 2D]: cls token, then the mean of the patch tokens. */
static int encode(const char *what, mae_model *m, const probe_opts *o, const cli_images *im,
                  int D, int L, float *feats)
{
    enum { CHUNK = 250 };
    mae_ctx *c = NULL;
    float *latent = malloc((size_t)CHUNK * (size_t)(L + 1) * (size_t)D * sizeof *latent);
    mae_status s = latent ? mae_ctx_create(m, CHUNK, &c) : MAE_ERR_NOMEM;
    if (s == MAE_OK)
        s = mae_ctx_set_mask_ratio(c, 0.0f);
    if (s == MAE_OK && o->threads)
        s = mae_ctx_set_threads(c, o->threads);
    size_t hw = (size_t)im->h * (size_t)im->w;
    for (int i0 = 0; s == MAE_OK && i0 < im->n; i0 += CHUNK) {
        int b = im->n - i0 < CHUNK ? im->n - i0 : CHUNK;
        s = mae_forward(c, im->x + (size_t)i0 * hw, b, NULL, NULL, NULL, NULL, latent);
        for (int i = 0; s == MAE_OK && i < b; i++) {
            const float *z = latent + (size_t)i * (size_t)(L + 1) * (size_t)D;
            float *f = feats + (size_t)(i0 + i) * 2 * (size_t)D;
            for (int d = 0; d < D; d++) {
                double sum = 0;
                for (int t = 1; t <= L; t++)
                    sum += z[(size_t)t * (size_t)D + (size_t)d];
                f[d] = z[d];
                f[D + d] = (float)(sum / L);
            }
        }
    }
    mae_ctx_free(c);
    free(latent);
    return s == MAE_OK ? 0 : cli_fail("probe", what, s);
}

/* Standardize every column with the training rows' mean and std (applied to both sets). */
static void standardize(float *tr, int ntr, float *te, int nte, int F)
{
    for (int j = 0; j < F; j++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < ntr; i++) {
            double v = tr[(size_t)i * F + j];
            s += v;
            s2 += v * v;
        }
        double mean = s / ntr, var = s2 / ntr - mean * mean;
        double inv = 1.0 / sqrt((var > 0 ? var : 0) + 1e-6);
        for (int i = 0; i < ntr; i++)
            tr[(size_t)i * F + j] = (float)((tr[(size_t)i * F + j] - mean) * inv);
        for (int i = 0; i < nte; i++)
            te[(size_t)i * F + j] = (float)((te[(size_t)i * F + j] - mean) * inv);
    }
}

enum { K = 10 };

/* logits of one row into z[K]; returns the argmax. */
static int predict(const float *W, const float *bias, const float *x, int F, double *z)
{
    int best = 0;
    for (int k = 0; k < K; k++) {
        double s = bias[k];
        const float *w = W + (size_t)k * F;
        for (int j = 0; j < F; j++)
            s += (double)w[j] * x[j];
        z[k] = s;
        if (s > z[best])
            best = k;
    }
    return best;
}

static double accuracy(const float *W, const float *bias, const float *X, const uint8_t *y, int n, int F)
{
    double z[K];
    int right = 0;
    for (int i = 0; i < n; i++)
        right += predict(W, bias, X + (size_t)i * F, F, z) == y[i];
    return 100.0 * right / n;
}

/* Softmax regression by minibatch SGD with momentum 0.9 and a cosine lr; returns the final
 * mean training loss of the last epoch. */
static double fit(const probe_opts *o, const float *X, const uint8_t *y, int n, int F, float *W,
                  float *bias)
{
    size_t wn = (size_t)K * F;
    float *gW = calloc(wn, sizeof *gW), *vW = calloc(wn, sizeof *vW);
    float gb[K], vb[K] = { 0 };
    int *order = malloc((size_t)n * sizeof *order);
    if (!gW || !vW || !order) {
        free(gW);
        free(vW);
        free(order);
        return NAN;
    }
    uint64_t rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)o->seed;
    int steps_per_epoch = (n + o->batch - 1) / o->batch, total = o->epochs * steps_per_epoch;
    double last_loss = 0;
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int ep = 0, step = 0; ep < o->epochs; ep++) {
        for (int i = n - 1; i > 0; i--) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int j = (int)(rng % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double loss_sum = 0;
        for (int i0 = 0; i0 < n; i0 += o->batch, step++) {
            int b = n - i0 < o->batch ? n - i0 : o->batch;
            memset(gW, 0, wn * sizeof *gW);
            memset(gb, 0, sizeof gb);
            for (int r = 0; r < b; r++) {
                const float *x = X + (size_t)order[i0 + r] * F;
                int label = y[order[i0 + r]];
                double z[K], mx, sum = 0;
                predict(W, bias, x, F, z);
                mx = z[0];
                for (int k = 1; k < K; k++)
                    mx = z[k] > mx ? z[k] : mx;
                for (int k = 0; k < K; k++)
                    sum += exp(z[k] - mx);
                loss_sum += log(sum) + mx - z[label];
                for (int k = 0; k < K; k++) {
                    float g = (float)((exp(z[k] - mx) / sum - (k == label)) / b);
                    float *gw = gW + (size_t)k * F;
                    for (int j = 0; j < F; j++)
                        gw[j] += g * x[j];
                    gb[k] += g;
                }
            }
            double lr = 0.5 * o->lr * (1 + cos(3.14159265358979323846 * step / total));
            for (size_t j = 0; j < wn; j++) {
                vW[j] = 0.9f * vW[j] + gW[j] + (float)o->wd * W[j];
                W[j] -= (float)lr * vW[j];
            }
            for (int k = 0; k < K; k++) {
                vb[k] = 0.9f * vb[k] + gb[k];
                bias[k] -= (float)lr * vb[k];
            }
        }
        last_loss = loss_sum / n;
    }
    free(gW);
    free(vW);
    free(order);
    return last_loss;
}

/* --official: the head trained and evaluated as main_linprobe.py does (probe_official.c). */
static int official(const probe_opts *o, const char *kind, const float *ftr, const cli_images *tr,
                    const float *fte, const cli_images *te, int F, double feature_secs)
{
    lp_fit_opts fo = { o->epochs, o->batch, 10, (uint64_t)o->seed, o->lr, o->wd, o->warmup, stderr };
    lp_fit_result res;
    double t0 = cli_now();
    int r = lp_fit(&fo, ftr, tr->labels, tr->n, fte, te->labels, te->n, F, &res);
    if (r == -2)
        return cli_errorf("probe", "%d training images are fewer than one --batch of %d", tr->n, o->batch);
    if (r == -3)
        return cli_errorf("probe", "the training loss is not finite (diverged; try a smaller --blr)");
    if (r)
        return cli_errorf("probe", "out of memory");
    printf("mae probe: official protocol, %s features (%s, %d dims), %d train / %d test images\n", kind,
           o->pixels ? "pixels" : o->global_pool ? "global pool" : "cls token", F, tr->n, te->n);
    printf("mae probe: features %.1f s, BatchNorm + linear head by LARS (lr %.4g, batch %d) %d epochs %.1f s, "
           "final train loss %.4f\n", feature_secs, o->lr, o->batch, o->epochs, cli_now() - t0, res.loss);
    printf("mae probe: train accuracy %.2f %%, test accuracy %.2f %%\n", res.train_acc, res.test_acc);
    return 0;
}

static int run(const probe_opts *o)
{
    cli_images tr, te;
    if (cli_load_split("probe", o->data, "train", 1, o->max_train, &tr))
        return 1;
    if (cli_load_split("probe", o->data, "t10k", 1, o->max_test, &te)) {
        cli_images_free(&tr);
        return 1;
    }
    int rc = 1, F = tr.h * tr.w;
    if (o->official && tr.n < o->batch) {   /* before the slow part: the head needs a whole batch */
        cli_errorf("probe", "%d training images are fewer than one --batch of %d", tr.n, o->batch);
        cli_images_free(&tr);
        cli_images_free(&te);
        return 1;
    }
    float *ftr = NULL, *fte = NULL, *W = NULL, bias[K] = { 0 };
    mae_model *m = NULL, *rnd = NULL;
    const char *kind = "pixels";
    double t0 = cli_now();
    if (!o->pixels) {
        /* the encoder probed is read straight in its precision; with --random the file gives only
         * the config, and the random encoder is converted once made */
        if (cli_load_model("probe", o->model, o->random ? MAE_PRECISION_F32 : o->precision, &m))
            goto done;
        mae_status s;
        mae_config cfg;
        cfg.struct_size = sizeof cfg;
        mae_model_get_config(m, &cfg);
        if (o->random) {
            s = mae_model_create(&cfg, (uint64_t)o->seed, &rnd);
            if (s != MAE_OK) {
                cli_fail("probe", "creating a random encoder", s);
                goto done;
            }
            kind = "random encoder";
        } else {
            kind = "MAE encoder";
        }
        if (rnd && cli_set_precision("probe", rnd, o->precision))
            goto done;
        int gh = (cfg.img_height ? cfg.img_height : cfg.img_size) / cfg.patch_size;
        int gw = (cfg.img_width ? cfg.img_width : cfg.img_size) / cfg.patch_size;
        F = o->official ? cfg.embed_dim : 2 * cfg.embed_dim;
        ftr = malloc((size_t)tr.n * F * sizeof *ftr);
        fte = malloc((size_t)te.n * F * sizeof *fte);
        if (!ftr || !fte) {
            cli_errorf("probe", "out of memory");
            goto done;
        }
        if (o->official) {
            const mae_model *enc = rnd ? rnd : m;
            if ((s = lp_features(enc, o->global_pool, o->threads, tr.x, tr.n, ftr)) != MAE_OK ||
                (s = lp_features(enc, o->global_pool, o->threads, te.x, te.n, fte)) != MAE_OK) {
                cli_fail("probe", "encoding the images", s);
                goto done;
            }
        } else if (encode("encoding the training images", rnd ? rnd : m, o, &tr, cfg.embed_dim, gh * gw, ftr) ||
            encode("encoding the test images", rnd ? rnd : m, o, &te, cfg.embed_dim, gh * gw, fte))
            goto done;
    } else {
        ftr = tr.x;   /* the images are already normalized floats */
        fte = te.x;
        tr.x = te.x = NULL;
    }
    double t1 = cli_now();
    if (o->official) {
        rc = official(o, kind, ftr, &tr, fte, &te, F, t1 - t0);
        goto done;
    }
    standardize(ftr, tr.n, fte, te.n, F);
    W = calloc((size_t)K * F, sizeof *W);
    if (!W) {
        cli_errorf("probe", "out of memory");
        goto done;
    }
    double loss = fit(o, ftr, tr.labels, tr.n, F, W, bias);
    if (!isfinite(loss)) {
        cli_errorf("probe", "training the classifier failed (out of memory or diverged; try a smaller --lr)");
        goto done;
    }
    double t2 = cli_now();
    double acc_tr = accuracy(W, bias, ftr, tr.labels, tr.n, F);
    double acc_te = accuracy(W, bias, fte, te.labels, te.n, F);
    printf("mae probe: %s features (%d dims), %d train / %d test images\n", kind, F, tr.n, te.n);
    printf("mae probe: features %.1f s, classifier %d epochs %.1f s, final train loss %.4f\n",
           t1 - t0, o->epochs, t2 - t1, loss);
    printf("mae probe: train accuracy %.2f %%, test accuracy %.2f %%\n", acc_tr, acc_te);
    rc = 0;
done:
    free(W);
    free(ftr);
    free(fte);
    mae_model_free(m);
    mae_model_free(rnd);
    cli_images_free(&tr);
    cli_images_free(&te);
    return rc;
}

int cmd_probe(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    probe_opts o;
    int r = parse(argc, argv, &o);
    return r ? r : run(&o);
}
