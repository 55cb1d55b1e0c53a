/* mae finetune: fine-tune a pretrained MAE encoder (or the same architecture from random
 * initialization) as a classifier on Fashion-MNIST, with the official recipe's optimizer
 * (layer-decay AdamW, warmup + cosine, label smoothing): a progress line, a CSV of the loss and
 * lr per logged step and the test accuracy per epoch, a PNG of both curves (--png), the classifier
 * saved after every epoch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "augment.h"
#include "data.h"
#include "plot.h"

static const char *const fmnist_labels[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
};

typedef struct ft_opts {
    const char *model, *data, *out, *csv, *png, *checkpoint, *aa;
    int resume, stop_after, scratch, cls, epochs, batch, threads, max_train, max_test, log_every;
    double blr, layer_decay, wd, warmup, min_lr, smoothing, minutes, mixup, cutmix, drop_path, reprob;
    int aa_layers;
    int precision;   /* MAE_PRECISION_*; -1 until decided (--precision, or the checkpoint's) */
    double aa_magnitude, aa_mstd;
    uint64_t seed;
} ft_opts;

static void usage(void)
{
    printf("usage: mae finetune MODEL.safetensors [options]\n"
           "Fine-tunes MODEL's encoder with a new head (global pooling + fc_norm, as main_finetune.py)\n"
           "on the training images of --data, evaluating on the test images after every epoch.\n"
           "options (defaults in brackets):\n"
           "  --data DIR        IDX files with labels [/usr/share/datasets/fashion-mnist]\n"
           "  --scratch         start from a random encoder of MODEL's architecture (official init)\n"
           "  --cls             pool the cls token after norm instead of the mean of the patches\n"
           "  --epochs N [10]   --batch N [64]   --warmup E (epochs) [1]\n"
           "  --blr X           base lr: peak = blr * batch / 256 [1e-3]\n"
           "  --layer-decay X   [0.75]   --wd X [0.05]   --min-lr X [1e-6]   --smoothing X [0.1]\n"
           "  --drop-path X     stochastic depth rate of the last block [0.1]\n"
           "  --mixup A         mixup with Beta(A, A) [0: off; the official recipe: 0.8]\n"
           "  --cutmix A        cutmix with Beta(A, A) [0: off; recipe: 1.0]; both on: half each\n"
           "  --aa POLICY       RandAugment-lite, timm's rand-m<M>[-mstd<S>][-n<N>]-inc1 policies\n"
           "                    [off; the official recipe: rand-m9-mstd0.5-inc1]\n"
           "  --reprob P        random erasing (timm's RandomErasing, 'pixel' mode) of each training\n"
           "                    image with probability P [0: off; the official recipe: 0.25]\n"
           "  --minutes X       stop after X minutes of training (then evaluate and save)\n"
           "  --out FILE        the classifier, saved after every epoch [finetuned.safetensors]\n"
           "  --csv FILE        step,epoch,loss,lr,test_acc,seconds per logged step and epoch\n"
           "  --png FILE        the loss (per logged step) and test accuracy (per epoch) curves of this\n"
           "                    run, redrawn after every epoch\n"
           "  --checkpoint FILE the finetuner (weights, AdamW moments, step) after every epoch\n"
           "  --stop-after E    stop after epoch E (the schedule stays --epochs'; resume later)\n"
           "  --resume          continue from --checkpoint where it stopped (exactly: the data order\n"
           "                    and flips of each epoch come from --seed and the epoch)\n"
           "  --log-every N     progress line every N steps [20]\n"
           "  --precision P     f32 | bf16: bf16 fine-tunes in mixed precision (float32 master\n"
           "                    weights and AdamW state, the linears' products in bfloat16,\n"
           "                    docs/PRECISION.md); with --resume, the checkpoint's [f32]\n"
           "  --seed N          data order and head init [0]   --threads N [all cores]\n"
           "  --max-train N     use the first N training images   --max-test N  the first N test images\n");
}

static int parse(int argc, char **argv, ft_opts *o)
{
    memset(o, 0, sizeof *o);
    o->precision = -1;
    o->data = "/usr/share/datasets/fashion-mnist";
    o->out = "finetuned.safetensors";
    o->epochs = 10;
    o->batch = 64;
    o->log_every = 20;
    o->blr = 1e-3;
    o->layer_decay = 0.75;
    o->wd = 0.05;
    o->warmup = 1;
    o->min_lr = 1e-6;
    o->smoothing = 0.1;
    o->drop_path = 0.1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (!strcmp(a, "--data")) r = cli_arg_str("finetune", argc, argv, &i, &o->data);
        else if (!strcmp(a, "--out")) r = cli_arg_str("finetune", argc, argv, &i, &o->out);
        else if (!strcmp(a, "--csv")) r = cli_arg_str("finetune", argc, argv, &i, &o->csv);
        else if (!strcmp(a, "--png")) r = cli_arg_str("finetune", argc, argv, &i, &o->png);
        else if (!strcmp(a, "--checkpoint")) r = cli_arg_str("finetune", argc, argv, &i, &o->checkpoint);
        else if (!strcmp(a, "--resume")) o->resume = 1;
        else if (!strcmp(a, "--stop-after")) r = cli_arg_int("finetune", argc, argv, &i, 1, 100000, &o->stop_after);
        else if (!strcmp(a, "--scratch")) o->scratch = 1;
        else if (!strcmp(a, "--cls")) o->cls = 1;
        else if (!strcmp(a, "--epochs")) r = cli_arg_int("finetune", argc, argv, &i, 1, 100000, &o->epochs);
        else if (!strcmp(a, "--batch")) r = cli_arg_int("finetune", argc, argv, &i, 1, 4096, &o->batch);
        else if (!strcmp(a, "--threads")) r = cli_arg_int("finetune", argc, argv, &i, 1, 256, &o->threads);
        else if (!strcmp(a, "--max-train")) r = cli_arg_int("finetune", argc, argv, &i, 1, 1 << 30, &o->max_train);
        else if (!strcmp(a, "--max-test")) r = cli_arg_int("finetune", argc, argv, &i, 1, 1 << 30, &o->max_test);
        else if (!strcmp(a, "--log-every")) r = cli_arg_int("finetune", argc, argv, &i, 1, 1 << 30, &o->log_every);
        else if (!strcmp(a, "--seed")) r = cli_arg_u64("finetune", argc, argv, &i, &o->seed);
        else if (!strcmp(a, "--blr")) r = cli_arg_double("finetune", argc, argv, &i, 0, 10, 0, &o->blr);
        else if (!strcmp(a, "--layer-decay")) r = cli_arg_double("finetune", argc, argv, &i, 1e-6, 1, 0, &o->layer_decay);
        else if (!strcmp(a, "--wd")) r = cli_arg_double("finetune", argc, argv, &i, 0, 10, 0, &o->wd);
        else if (!strcmp(a, "--warmup")) r = cli_arg_double("finetune", argc, argv, &i, 0, 1e6, 0, &o->warmup);
        else if (!strcmp(a, "--min-lr")) r = cli_arg_double("finetune", argc, argv, &i, 0, 10, 0, &o->min_lr);
        else if (!strcmp(a, "--smoothing")) r = cli_arg_double("finetune", argc, argv, &i, 0, 1, 1, &o->smoothing);
        else if (!strcmp(a, "--drop-path")) r = cli_arg_double("finetune", argc, argv, &i, 0, 1, 1, &o->drop_path);
        else if (!strcmp(a, "--mixup")) r = cli_arg_double("finetune", argc, argv, &i, 0, 100, 0, &o->mixup);
        else if (!strcmp(a, "--cutmix")) r = cli_arg_double("finetune", argc, argv, &i, 0, 100, 0, &o->cutmix);
        else if (!strcmp(a, "--aa")) {
            r = cli_arg_str("finetune", argc, argv, &i, &o->aa);
            if (!r && cli_randaug_parse(o->aa, &o->aa_layers, &o->aa_magnitude, &o->aa_mstd))
                r = cli_usage_errorf("finetune", "--aa '%s' is not rand-m<M>[-mstd<S>][-n<N>]-inc1", o->aa);
        } else if (!strcmp(a, "--reprob")) r = cli_arg_double("finetune", argc, argv, &i, 0, 1, 0, &o->reprob);
        else if (!strcmp(a, "--precision")) r = cli_arg_precision("finetune", argc, argv, &i, &o->precision);
        else if (!strcmp(a, "--minutes")) r = cli_arg_double("finetune", argc, argv, &i, 1e-3, 1e6, 0, &o->minutes);
        else if (a[0] == '-' && a[1])
            r = cli_usage_errorf("finetune", "unknown option '%s'", a);
        else if (o->model)
            r = cli_usage_error("finetune", "expects one model");
        else
            o->model = a;
        if (r)
            return r;
    }
    if (!o->model)
        return cli_usage_error("finetune", "needs a pretrained model");
    if ((o->mixup > 0 || o->cutmix > 0) && o->batch % 2)
        return cli_usage_errorf("finetune", "--mixup / --cutmix pair image b with image batch-1-b: --batch %d must be even",
                                o->batch);
    if (o->resume && !o->checkpoint)
        return cli_usage_error("finetune", "--resume needs --checkpoint FILE");
    if (o->warmup >= o->epochs)
        return cli_usage_errorf("finetune", "--warmup %g must be below --epochs %d", o->warmup, o->epochs);
    if (o->precision < 0 && o->resume)
        return cli_checkpoint_precision("finetune", o->checkpoint, "finetune.precision", &o->precision) ? 1 : 0;
    if (o->precision < 0)
        o->precision = MAE_PRECISION_F32;
    return 0;
}

/* The classifier to train: MODEL's encoder (or its architecture, randomly initialized) with a
 * new 10-class head named by the Fashion-MNIST classes; in bf16 when the model is made bf16
 * first (the classifier takes its model's precision). */
static int make_classifier(const ft_opts *o, mae_classifier **out)
{
    mae_model *m = NULL, *fresh = NULL;
    mae_status s = mae_model_load(o->model, &m);
    if (s != MAE_OK)
        return cli_fail("finetune", o->model, s);
    if (o->scratch) {
        mae_config cfg;
        cfg.struct_size = sizeof cfg;
        if ((s = mae_model_get_config(m, &cfg)) == MAE_OK)
            s = mae_model_create(&cfg, o->seed, &fresh);
        mae_model_free(m);
        if (s != MAE_OK)
            return cli_fail("finetune", "random model", s);
        m = fresh;
    }
    if (cli_set_precision("finetune", m, o->precision)) {
        mae_model_free(m);
        return 1;
    }
    s = mae_classifier_create(m, 10, !o->cls, o->seed, out);
    mae_model_free(m);
    if (s == MAE_OK)
        s = mae_classifier_set_labels(*out, fmnist_labels);
    return s == MAE_OK ? 0 : cli_fail("finetune", "classifier", s);
}

/* Test accuracy in percent, in chunks through a context of the classifier's model. */
static int evaluate(const mae_classifier *cl, const cli_images *te, int threads, double *acc)
{
    enum { CHUNK = 200 };
    const mae_model *m;
    mae_ctx *c = NULL;
    float logits[CHUNK * 10];
    size_t hw = (size_t)te->h * te->w;
    int right = 0;
    mae_classifier_model(cl, &m);
    mae_status s = mae_ctx_create(m, CHUNK, &c);
    if (s == MAE_OK && threads)
        s = mae_ctx_set_threads(c, threads);
    for (int i0 = 0; s == MAE_OK && i0 < te->n; i0 += CHUNK) {
        int b = te->n - i0 < CHUNK ? te->n - i0 : CHUNK;
        s = mae_classifier_forward(cl, c, te->x + (size_t)i0 * hw, b, logits);
        for (int i = 0; s == MAE_OK && i < b; i++) {
            int best = 0;
            for (int k = 1; k < 10; k++)
                best = logits[i * 10 + k] > logits[i * 10 + best] ? k : best;
            right += best == te->labels[i0 + i];
        }
    }
    mae_ctx_free(c);
    if (s != MAE_OK)
        return cli_fail("finetune", "evaluation", s);
    *acc = 100.0 * right / te->n;
    return 0;
}

static uint64_t next(uint64_t *r)
{
    *r ^= *r << 13, *r ^= *r >> 7, *r ^= *r << 17;
    return *r;
}

/* What --png draws: (fractional epoch, value) pairs, grown as the run logs them. */
typedef struct curve {
    float *x, *v;
    int n, cap;
} curve;

static int curve_add(curve *c, double x, double v)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        float *nx = realloc(c->x, (size_t)cap * sizeof *nx);
        if (nx)
            c->x = nx;
        float *nv = nx ? realloc(c->v, (size_t)cap * sizeof *nv) : NULL;
        if (!nv)
            return cli_errorf("finetune", "out of memory for the curves");
        c->v = nv;
        c->cap = cap;
    }
    c->x[c->n] = (float)x;
    c->v[c->n++] = (float)v;
    return 0;
}

/* RandAugment-lite on one normalized image: back to its bytes (exact: they were bytes), the
 * policy with timm's fill (the normalization mean's value), normalized again as the loader does.
 * px: 2 h w bytes of scratch. */
static void randaugment(const ft_opts *o, float *img, int h, int w, uint8_t *px, uint64_t *rng)
{
    const float mean[1] = MAE_FASHION_MNIST_MEAN, stdv[1] = MAE_FASHION_MNIST_STD;
    size_t n = (size_t)h * w;
    for (size_t i = 0; i < n; i++) {
        long v = lround(((double)img[i] * stdv[0] + mean[0]) * 255);
        px[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    cli_randaugment(px, px + n, h, w, o->aa_layers, o->aa_magnitude, o->aa_mstd, (uint8_t)lround(mean[0] * 255.0), rng);
    for (size_t i = 0; i < n; i++)
        img[i] = (float)((px[i] / 255.0 - mean[0]) / stdv[0]);   /* as mae_image_to_input */
}

static int train(const ft_opts *o, mae_classifier *cl, const cli_images *tr, const cli_images *te, FILE *csv)
{
    curve losses = { 0 }, accs = { 0 };
    mae_finetuner *f = NULL;
    mae_status s = mae_finetuner_create(cl, o->batch, &f);
    if (s != MAE_OK)
        return cli_fail("finetune", "finetuner", s);
    int steps_per_epoch = tr->n / o->batch;   /* drop_last, as the official loader */
    mae_finetune_config cfg;
    mae_finetune_config_init(&cfg, sizeof cfg);
    cfg.blr = o->blr;
    cfg.layer_decay = o->layer_decay;
    cfg.weight_decay = o->wd;
    cfg.min_lr = o->min_lr;
    cfg.smoothing = (float)o->smoothing;
    cfg.drop_path = (float)o->drop_path;
    cfg.warmup_epochs = o->warmup;
    cfg.epochs = o->epochs;
    cfg.iters_per_epoch = steps_per_epoch;
    if ((s = mae_finetuner_set_config(f, &cfg)) != MAE_OK || (s = mae_finetuner_set_seed(f, o->seed)) != MAE_OK || (o->threads && (s = mae_finetuner_set_threads(f, o->threads)) != MAE_OK)) {
        mae_finetuner_free(f);
        return cli_fail("finetune", "config", s);
    }
    int first_epoch = 0;
    fprintf(stderr, "precision %s\n", o->precision == MAE_PRECISION_BF16 ? "bf16 (mixed: float32 masters)" : "f32");
    if (o->resume) {
        int64_t step = 0;
        if ((s = mae_finetuner_load(f, o->checkpoint)) != MAE_OK) {
            mae_finetuner_free(f);
            return cli_fail("finetune", o->checkpoint, s);
        }
        mae_finetuner_get_step(f, &step);
        first_epoch = (int)(step / steps_per_epoch);
        if (step % steps_per_epoch != 0 || first_epoch >= o->epochs) {
            mae_finetuner_free(f);
            return cli_errorf("finetune", "%s: step %lld is not the end of an epoch below --epochs %d of this run", o->checkpoint,
                              (long long)step, o->epochs);
        }
        fprintf(stderr, "resuming at epoch %d (step %lld)\n", first_epoch + 1, (long long)step);
    }
    size_t hw = (size_t)tr->h * tr->w;
    float *x = malloc((size_t)o->batch * hw * sizeof *x);
    int32_t *y = malloc((size_t)o->batch * sizeof *y);
    float *soft = malloc((size_t)o->batch * 10 * sizeof *soft);
    uint8_t *px = malloc(2 * hw);
    int mix = o->mixup > 0 || o->cutmix > 0;
    mae_mixup_config mcfg;
    mae_mixup_config_init(&mcfg, sizeof mcfg);
    mcfg.mixup_alpha = (float)o->mixup;
    mcfg.cutmix_alpha = (float)o->cutmix;
    mcfg.smoothing = (float)o->smoothing;
    int *order = malloc((size_t)tr->n * sizeof *order);
    int rc = 0;
    if (!x || !y || !order || !soft || !px)
        rc = cli_errorf("finetune", "out of memory");
    double t0 = cli_now(), smooth = 0;
    int stop = 0;
    int last_epoch = o->stop_after && o->stop_after < o->epochs ? o->stop_after : o->epochs;
    for (int ep = first_epoch; ep < last_epoch && !rc && !stop; ep++) {
        /* each epoch's order and flips from (seed, epoch) alone: a resumed run sees the same */
        uint64_t rng = (0x9E3779B97F4A7C15ull ^ o->seed) + 0xD1B54A32D192ED03ull * (uint64_t)(ep + 1);
        for (int i = 0; i < tr->n; i++)
            order[i] = i;
        for (int i = tr->n - 1; i > 0; i--) {
            int j = (int)(next(&rng) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        for (int st = 0; st < steps_per_epoch && !rc; st++) {
            double lr = 0;
            mae_finetuner_get_lr(f, &lr);
            long gstep = (long)ep * steps_per_epoch + st;   /* the mix depends on (seed, step) only */
            /* RandAugment and erasing draw from their own stream of (seed, step): without them
             * the order and flips are what they were, and a resumed run augments alike */
            uint64_t aug_rng = (o->seed ^ 0x5851F42D4C957F2Dull) + 0x2545F4914F6CDD1Dull * (uint64_t)(gstep + 1);
            for (int b = 0; b < o->batch; b++) {
                int k = order[st * o->batch + b];
                const float *src = tr->x + (size_t)k * hw;
                float *dst = x + (size_t)b * hw;
                /* random horizontal flip, the augmentation the pretraining used */
                int flip = next(&rng) & 1;
                for (int r = 0; r < tr->h; r++)
                    for (int c = 0; c < tr->w; c++)
                        dst[r * tr->w + c] = src[r * tr->w + (flip ? tr->w - 1 - c : c)];
                y[b] = tr->labels[k];
                int box[4];
                if (o->aa)
                    randaugment(o, dst, tr->h, tr->w, px, &aug_rng);
                cli_random_erase(dst, 1, tr->h, tr->w, o->reprob, &aug_rng, box);
            }
            float loss = 0;
            if (mix && (s = mae_mixup(&mcfg, o->seed * 1000003u + (uint64_t)gstep, x, o->batch, 1, tr->h, tr->w, y, 10,
                                      soft, NULL)) != MAE_OK) {
                rc = cli_fail("finetune", "mixup", s);
                break;
            }
            if ((s = mae_finetuner_forward_backward(f, x, o->batch, mix ? NULL : y, mix ? soft : NULL, &loss, NULL)) != MAE_OK ||
                (s = mae_finetuner_step(f)) != MAE_OK) {
                rc = cli_fail("finetune", "step", s);
                break;
            }
            smooth = ep == first_epoch && st == 0 ? loss : 0.95 * smooth + 0.05 * loss;
            double secs = cli_now() - t0;
            long done = (long)ep * steps_per_epoch + st + 1;
            if ((st + 1) % o->log_every == 0 || st + 1 == steps_per_epoch) {
                fprintf(stderr, "\repoch %d/%d  step %d/%d  loss %.4f  lr %.3g  %.0f img/s  %.0f s   ", ep + 1, o->epochs,
                        st + 1, steps_per_epoch, smooth, lr, done * o->batch / secs, secs);
                if (csv)
                    fprintf(csv, "%ld,%.4f,%.6f,%.6g,,%.1f\n", done, (double)done / steps_per_epoch, loss, lr, secs);
                if (o->png && (rc = curve_add(&losses, (double)done / steps_per_epoch, loss)) != 0)
                    break;
            }
            if (o->minutes > 0 && secs > 60 * o->minutes) {
                stop = 1;
                break;
            }
        }
        double acc = 0;
        if (!rc && (rc = evaluate(cl, te, o->threads, &acc)) == 0) {
            int64_t step = 0;
            mae_finetuner_get_step(f, &step);
            fprintf(stderr, "\nepoch %d: test accuracy %.2f %% (%d images)%s\n", ep + 1, acc, te->n,
                    stop ? " (time budget reached)" : "");
            if (csv)
                fprintf(csv, "%lld,%.4f,,,%.2f,%.1f\n", (long long)step, (double)step / steps_per_epoch, acc, cli_now() - t0);
            if ((s = mae_classifier_save(cl, o->out)) != MAE_OK)
                rc = cli_fail("finetune", o->out, s);
            else if (o->checkpoint && !stop && (s = mae_finetuner_save(f, o->checkpoint)) != MAE_OK)
                rc = cli_fail("finetune", o->checkpoint, s);
            /* the curves last: a plot that cannot be written stops the run with the epoch saved */
            if (!rc && o->png && !(rc = curve_add(&accs, (double)step / steps_per_epoch, acc)))
                rc = cli_plot_finetune("finetune", o->png, losses.x, losses.v, losses.n, accs.x, accs.v, accs.n);
        }
    }
    if (!rc)
        printf("%s: %.1f s of training and evaluation\n", o->out, cli_now() - t0);
    free(x); free(y); free(order); free(soft); free(px);
    free(losses.x); free(losses.v); free(accs.x); free(accs.v);
    mae_finetuner_free(f);
    return rc;
}

int cmd_finetune(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    ft_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    cli_images tr, te;
    mae_classifier *cl = NULL;
    FILE *csv = NULL;
    if ((rc = cli_load_split("finetune", o.data, "train", 1, o.max_train, &tr)) != 0)
        return rc;
    if ((rc = cli_load_split("finetune", o.data, "t10k", 1, o.max_test, &te)) != 0) {
        cli_images_free(&tr);
        return rc;
    }
    if (tr.n < o.batch)
        rc = cli_errorf("finetune", "%d training images are fewer than one batch of %d", tr.n, o.batch);
    if (!rc)
        rc = make_classifier(&o, &cl);
    if (!rc && o.csv && !(csv = fopen(o.csv, "w")))
        rc = cli_errorf("finetune", "%s: cannot write", o.csv);
    if (csv)
        fprintf(csv, "step,epoch,loss,lr,test_acc,seconds\n");
    if (!rc)
        rc = train(&o, cl, &tr, &te, csv);
    if (csv && fclose(csv) != 0 && !rc)
        rc = cli_errorf("finetune", "%s: write failed", o.csv);
    mae_classifier_free(cl);
    cli_images_free(&tr);
    cli_images_free(&te);
    return rc;
}
