/* mae train: pretrain a small MAE on Fashion-MNIST with the official recipe, with a progress
 * line, checkpoints that resume bitwise, a loss curve (CSV + PNG) and a reconstruction grid. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"
#ifdef _WIN32
#include <direct.h>
#define make_dir(path) _mkdir(path)          /* Windows' mkdir takes no mode */
#else
#define make_dir(path) mkdir(path, 0777)
#endif
#include "data.h"
#include "plot.h"

typedef struct train_opts {
    const char *data, *out, *resume;
    int epochs, warmup, batch, threads, max_images, log_every, max_steps, flip;
    int precision;           /* MAE_PRECISION_*: bf16 trains in mixed precision */
    double blr, lr, min_lr, weight_decay;
    uint64_t seed;
    mae_config cfg;
} train_opts;

static void usage(void)
{
    printf("usage: mae train [options]\n"
           "Pretrains an MAE on the IDX images of --data (Fashion-MNIST's train split) with AdamW,\n"
           "linear warmup and a half-cycle cosine, as the official main_pretrain.py. Writes into --out:\n"
           "  checkpoint.safetensors  model + optimizer state, after every epoch (--resume continues it)\n"
           "  model.safetensors       the final model (loads with mae_model_load)\n"
           "  loss.csv, loss.png      loss and lr per step, and the curve\n"
           "  reconstruction.png      8 test images: original | masked | reconstruction | + visible\n"
           "options (defaults in brackets):\n"
           "  --data DIR            IDX files [/usr/share/datasets/fashion-mnist]\n"
           "  --out DIR             output folder [mae-train]\n"
           "  --epochs N            [10]    --warmup N     warmup epochs [1]\n"
           "  --batch N             [128]   --blr X        base lr, lr = blr * batch / 256 [1.5e-3]\n"
           "  --lr X                absolute peak lr, overrides --blr\n"
           "  --min-lr X            [0]     --weight-decay X  [0.05]\n"
           "  --mask-ratio X        [0.75]  --patch N     [4]\n"
           "  --embed-dim N         [192]   --depth N      [6]   --heads N          [3]\n"
           "  --decoder-dim N       [128]   --decoder-depth N [2] --decoder-heads N [4]\n"
           "  --norm-pix            per-patch normalized targets (norm_pix_loss)\n"
           "  --no-flip             no random horizontal flips\n"
           "  --seed N              model init, data order, flips and masks [0]\n"
           "  --threads N           [all cores]\n"
           "  --precision P         f32 | bf16: bf16 trains in mixed precision (float32 master\n"
           "                        weights and AdamW state, the linears' products in bfloat16,\n"
           "                        docs/PRECISION.md); with --resume, the checkpoint's [f32]\n"
           "  --max-images N        use the first N training images only\n"
           "  --max-steps N         stop after N optimizer steps (the schedule stays the full one)\n"
           "  --log-every N         progress line every N steps [50]\n"
           "  --resume CKPT         continue from a checkpoint.safetensors (its model, optimizer,\n"
           "                        schedule and step; the model and schedule options are ignored)\n");
}

static int parse(int argc, char **argv, train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->precision = -1;   /* not given: f32, or the checkpoint's with --resume */
    o->data = "/usr/share/datasets/fashion-mnist";
    o->out = "mae-train";
    o->epochs = 10;
    o->warmup = 1;
    o->batch = 128;
    o->blr = 1.5e-3;
    o->weight_decay = 0.05;
    o->log_every = 50;
    o->flip = 1;
    mae_config_init(&o->cfg, sizeof o->cfg, "tiny");
    mae_config *c = &o->cfg;
    c->img_size = 28;
    c->patch_size = 4;
    c->in_chans = 1;
    c->embed_dim = 192;
    c->depth = 6;
    c->num_heads = 3;
    c->decoder_embed_dim = 128;
    c->decoder_depth = 2;
    c->decoder_num_heads = 4;
    c->mlp_ratio = 4.0f;
    c->norm_pix_loss = 0;
    c->mask_ratio = 0.75f;
    c->layer_norm_eps = 1e-6f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double d = 0;
        int r = 0, seed = 0;
        if (!strcmp(a, "--data")) r = cli_arg_str("train", argc, argv, &i, &o->data);
        else if (!strcmp(a, "--out")) r = cli_arg_str("train", argc, argv, &i, &o->out);
        else if (!strcmp(a, "--resume")) r = cli_arg_str("train", argc, argv, &i, &o->resume);
        else if (!strcmp(a, "--epochs")) r = cli_arg_int("train", argc, argv, &i, 1, 100000, &o->epochs);
        else if (!strcmp(a, "--warmup")) r = cli_arg_int("train", argc, argv, &i, 0, 100000, &o->warmup);
        else if (!strcmp(a, "--batch")) r = cli_arg_int("train", argc, argv, &i, 1, 65536, &o->batch);
        else if (!strcmp(a, "--threads")) r = cli_arg_int("train", argc, argv, &i, 1, 256, &o->threads);
        else if (!strcmp(a, "--max-images")) r = cli_arg_int("train", argc, argv, &i, 1, 1 << 30, &o->max_images);
        else if (!strcmp(a, "--max-steps")) r = cli_arg_int("train", argc, argv, &i, 1, 1 << 30, &o->max_steps);
        else if (!strcmp(a, "--log-every")) r = cli_arg_int("train", argc, argv, &i, 1, 1 << 30, &o->log_every);
        else if (!strcmp(a, "--seed")) { r = cli_arg_int("train", argc, argv, &i, 0, 2147483647, &seed); o->seed = (uint64_t)seed; }
        else if (!strcmp(a, "--blr")) r = cli_arg_double("train", argc, argv, &i, 1e-12, 10, 0, &o->blr);
        else if (!strcmp(a, "--lr")) r = cli_arg_double("train", argc, argv, &i, 1e-12, 10, 0, &o->lr);
        else if (!strcmp(a, "--min-lr")) r = cli_arg_double("train", argc, argv, &i, 0, 10, 0, &o->min_lr);
        else if (!strcmp(a, "--weight-decay")) r = cli_arg_double("train", argc, argv, &i, 0, 10, 0, &o->weight_decay);
        else if (!strcmp(a, "--mask-ratio")) { r = cli_arg_double("train", argc, argv, &i, 0.01, 0.99, 0, &d); c->mask_ratio = (float)d; }
        else if (!strcmp(a, "--patch")) r = cli_arg_int("train", argc, argv, &i, 1, 4096, &c->patch_size);
        else if (!strcmp(a, "--embed-dim")) r = cli_arg_int("train", argc, argv, &i, 1, 65536, &c->embed_dim);
        else if (!strcmp(a, "--depth")) r = cli_arg_int("train", argc, argv, &i, 1, 1024, &c->depth);
        else if (!strcmp(a, "--heads")) r = cli_arg_int("train", argc, argv, &i, 1, 1024, &c->num_heads);
        else if (!strcmp(a, "--decoder-dim")) r = cli_arg_int("train", argc, argv, &i, 1, 65536, &c->decoder_embed_dim);
        else if (!strcmp(a, "--decoder-depth")) r = cli_arg_int("train", argc, argv, &i, 1, 1024, &c->decoder_depth);
        else if (!strcmp(a, "--decoder-heads")) r = cli_arg_int("train", argc, argv, &i, 1, 1024, &c->decoder_num_heads);
        else if (!strcmp(a, "--norm-pix")) c->norm_pix_loss = 1;
        else if (!strcmp(a, "--no-flip")) o->flip = 0;
        else if (!strcmp(a, "--precision")) r = cli_arg_precision("train", argc, argv, &i, &o->precision);
        else {
            return cli_usage_errorf("train", "unknown option '%s'", a);
        }
        if (r)
            return r;
    }
    if (o->warmup >= o->epochs)
        return cli_usage_error("train", "--warmup must be smaller than --epochs");
    if (o->precision < 0 && o->resume)
        return cli_checkpoint_precision("train", o->resume, "trainer.precision", &o->precision) ? 1 : 0;
    if (o->precision < 0)
        o->precision = MAE_PRECISION_F32;
    return 0;
}

/* splitmix64: the data order and flips, seeded per epoch / per step so a resumed run sees the
 * same batches as an uninterrupted one. */
static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void epoch_order(uint64_t seed, int epoch, int n, int *order)
{
    uint64_t s = mix(seed ^ mix((uint64_t)epoch + 1));
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        s = mix(s);
        int j = (int)(s % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void fill_batch(const cli_images *im, const int *idx, int b, uint64_t flip_seed, int flip,
                       float *out)
{
    size_t hw = (size_t)im->h * (size_t)im->w;
    uint64_t s = mix(flip_seed);
    for (int i = 0; i < b; i++) {
        const float *src = im->x + (size_t)idx[i] * hw;
        float *dst = out + (size_t)i * hw;
        s = mix(s);
        if (flip && (s & 1)) {
            for (int y = 0; y < im->h; y++)
                for (int x = 0; x < im->w; x++)
                    dst[y * im->w + x] = src[y * im->w + (im->w - 1 - x)];
        } else {
            memcpy(dst, src, hw * sizeof *dst);
        }
    }
}

static void format_eta(double sec, char *buf, size_t size)
{
    long s = (long)(sec + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else
        snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
}

/* The official demo's figure for the first 8 test images, with the trainer's own model. */
static int write_reconstruction(const train_opts *o, mae_model *m, const char *path)
{
    cli_images test;
    if (cli_load_split("train", o->data, "t10k", 0, 8, &test))
        return 1;
    mae_ctx *c = NULL;
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_model_get_config(m, &cfg);
    int L = (cfg.img_size / cfg.patch_size) * (cfg.img_size / cfg.patch_size);
    int P = cfg.patch_size * cfg.patch_size * cfg.in_chans;
    float *pred = malloc((size_t)test.n * (size_t)L * (size_t)P * sizeof *pred);
    float *mask = malloc((size_t)test.n * (size_t)L * sizeof *mask);
    const float mean[1] = MAE_FASHION_MNIST_MEAN, stdv[1] = MAE_FASHION_MNIST_STD;
    mae_status s = pred && mask ? mae_ctx_create(m, test.n, &c) : MAE_ERR_NOMEM;
    if (s == MAE_OK)
        s = mae_ctx_set_seed(c, 1);
    if (s == MAE_OK)
        s = mae_forward(c, test.x, test.n, NULL, NULL, pred, mask, NULL);
    if (s == MAE_OK)
        s = mae_visualize_png(m, test.x, pred, mask, test.n,
                              cfg.norm_pix_loss ? MAE_PRED_NORM_VISIBLE : MAE_PRED_PIXELS, mean,
                              stdv, 4, path);
    mae_ctx_free(c);
    free(pred);
    free(mask);
    cli_images_free(&test);
    return s == MAE_OK ? 0 : cli_fail("train", path, s);
}

typedef struct train_log {
    FILE *csv;     /* loss.csv, appended to after its kept part was written atomically */
    float *loss;   /* per step, for the plot: cap entries */
    float *lr;
    int64_t n, cap;
} train_log;

#define CSV_HEADER "step,epoch,loss,lr,grad_norm,seconds\n"

/* Whether line[0, len) (no newline) is the row this program writes for step want: six
 * comma-separated fields, the step then five numbers, nothing else. */
static int parse_row(const char *line, size_t len, int64_t want, double *loss, double *lr)
{
    char buf[512];
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *p = buf, *end;
    errno = 0;
    long long step = strtoll(p, &end, 10);
    if (end == p || *end != ',' || errno == ERANGE || step != want)
        return 0;
    double v[5];
    for (int k = 0; k < 5; k++) {
        p = end + 1;
        v[k] = strtod(p, &end);
        if (end == p || *end != (k < 4 ? ',' : '\0'))
            return 0;
    }
    *loss = v[1];
    *lr = v[2];
    return 1;
}

/* Reads the whole file into *data (NUL-terminated; NULL for a missing file). 0, or 1 after the
 * error line (and *data NULL). */
static int read_all(const char *path, char **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? 0 : cli_errorf("train", "cannot read %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, used = 0;
    int bad = 0;
    for (;;) {
        if (cap - used < 4096) {   /* room for a 4 KiB read and the NUL */
            char *d = realloc(buf, cap * 2 + 4097);
            if (!d) {
                bad = cli_errorf("train", "out of memory reading %s", path);
                break;
            }
            buf = d;
            cap = cap * 2 + 4096;
        }
        size_t got = fread(buf + used, 1, cap - used, f);
        used += got;
        if (got == 0) {
            if (ferror(f))
                bad = cli_errorf("train", "cannot read %s", path);
            break;
        }
    }
    fclose(f);
    if (bad) {
        free(buf);
        return 1;
    }
    buf[used] = '\0';
    *data = buf;
    *size = used;
    return 0;
}

/* Opens loss.csv for a run that starts at step upto. Resuming, the earlier run's log is cut back
 * to the checkpoint: the header and the rows of steps 0, 1, ..., upto - 1 stay, in order (at most
 * cap of them: the plot's arrays); the rows a killed run logged after its checkpoint (the resumed
 * run logs those steps again) and a partial last line (a kill mid-write) go. The kept part is
 * rewritten atomically, then the run appends: a kill or a full disk while appending loses at most
 * the rows after the checkpoint, which the next --resume cuts away anyway. When the rows do not
 * reach the checkpoint (no log, another run's), the log starts anew. 0, or 1 after the error. */
static int log_open(train_log *lg, const char *path, int64_t upto)
{
    char *old = NULL;
    size_t size = 0, kept = 0, hl = strlen(CSV_HEADER);
    lg->n = 0;
    if (upto > 0 && read_all(path, &old, &size))
        return 1;
    if (old && size >= hl && memcmp(old, CSV_HEADER, hl) == 0) {
        kept = hl;
        while (lg->n < upto && lg->n < lg->cap) {
            const char *line = old + kept, *nl = memchr(line, '\n', size - kept);
            double loss, lr;
            if (!nl || !parse_row(line, (size_t)(nl - line), lg->n, &loss, &lr))
                break;
            lg->loss[lg->n] = (float)loss;
            lg->lr[lg->n] = (float)lr;
            lg->n++;
            kept = (size_t)(nl - old) + 1;
        }
    }
    if (lg->n != upto) {   /* nothing to continue: a new log */
        if (upto > 0)
            printf("mae train: %s does not hold steps 0 to %lld; starting it anew\n", path,
                   (long long)upto - 1);
        lg->n = 0;
        kept = 0;
    }
    mae_status s = kept ? mae_file_write(path, old, kept) : mae_file_write(path, CSV_HEADER, hl);
    free(old);
    if (s != MAE_OK)
        return cli_fail("train", path, s);
    lg->csv = fopen(path, "a");
    if (!lg->csv)
        return cli_errorf("train", "cannot append to %s: %s", path, strerror(errno));
    return 0;
}

/* Hands the rows buffered so far to the system, so that they are in the file before a
 * checkpoint that covers them. 0, or 1 after the error (with the reason). */
static int log_flush(train_log *lg, const char *path)
{
    if (fflush(lg->csv) == 0 && !ferror(lg->csv))
        return 0;
    return cli_errorf("train", "cannot write %s: %s", path, strerror(errno));
}

static int run(train_opts *o)
{
    char path[4096], ckpt[4096], csv_path[4096];
    if (make_dir(o->out) != 0) {
        struct stat st;
        if (stat(o->out, &st) != 0 || !S_ISDIR(st.st_mode)) {
            cli_errorf("train", "cannot create folder %s", o->out);
            return 1;
        }
    }
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", o->out);
    snprintf(csv_path, sizeof csv_path, "%s/loss.csv", o->out);

    cli_images tr;
    if (cli_load_split("train", o->data, "train", 0, o->max_images, &tr))
        return 1;
    mae_model *m = NULL;
    mae_trainer *t = NULL;
    float *batch = NULL;
    int *order = NULL;
    train_log lg = { 0 };
    int rc = 1;
    mae_status s;
    if (o->resume)
        s = mae_model_load(o->resume, &m);
    else {
        o->cfg.img_size = tr.h;   /* square IDX images; the config check refuses others */
        s = mae_model_create(&o->cfg, o->seed, &m);
    }
    if (s != MAE_OK) {
        cli_fail("train", o->resume ? o->resume : "creating the model", s);
        goto done;
    }
    /* bf16: the weights rounded once; the trainer keeps float32 masters from there (a resumed
     * run's masters come exact from the checkpoint) */
    if (cli_set_precision("train", m, o->precision))
        goto done;
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_model_get_config(m, &cfg);
    if (cfg.in_chans != 1 || cfg.img_size != tr.h || tr.h != tr.w) {
        cli_errorf("train", "the model takes %dx%d x%d images, the data has %dx%d x1",
                cfg.img_size, cfg.img_size, cfg.in_chans, tr.h, tr.w);
        goto done;
    }
    s = mae_trainer_create(m, o->batch, &t);
    mae_train_config tc;
    mae_train_config_init(&tc, sizeof tc);
    int ipe = tr.n / o->batch;
    if (ipe < 1) {
        cli_errorf("train", "%d images are fewer than one batch of %d", tr.n, o->batch);
        goto done;
    }
    tc.blr = o->blr;
    tc.lr = o->lr;
    tc.min_lr = o->min_lr;
    tc.weight_decay = o->weight_decay;
    tc.epochs = o->epochs;
    tc.warmup_epochs = o->warmup;
    tc.iters_per_epoch = ipe;
    if (s == MAE_OK && !o->resume)
        s = mae_trainer_set_config(t, &tc);
    if (s == MAE_OK && !o->resume)
        s = mae_trainer_set_seed(t, o->seed);
    if (s == MAE_OK && o->threads)
        s = mae_trainer_set_threads(t, o->threads);
    if (s == MAE_OK && o->resume)
        s = mae_trainer_load(t, o->resume);
    if (s == MAE_OK)
        s = mae_trainer_get_config(t, &tc);
    if (s != MAE_OK) {
        cli_fail("train", o->resume ? o->resume : "setting up the trainer", s);
        goto done;
    }
    if (o->resume && tc.iters_per_epoch != ipe) {
        cli_errorf("train", "the checkpoint's schedule has %d steps per epoch, this data "
                "and batch give %d", tc.iters_per_epoch, ipe);
        goto done;
    }
    if (tc.accum_iter != 1) {   /* a library user's checkpoint: this loop steps every batch */
        cli_errorf("train", "the checkpoint accumulates %d batches per step; mae train steps "
                   "after every batch", tc.accum_iter);
        goto done;
    }
    if (!(tc.epochs * ipe <= 1e12)) {
        cli_errorf("train", "the checkpoint's schedule (%g epochs of %d steps) is too long",
                   tc.epochs, ipe);
        goto done;
    }
    int64_t step0;
    mae_trainer_get_step(t, &step0);
    int64_t total = (int64_t)tc.epochs * ipe;
    if (tc.epochs != floor(tc.epochs))
        total = (int64_t)ceil(tc.epochs * ipe);
    if (step0 > total) {   /* mae_trainer_load refuses these; the arrays below rely on it */
        cli_errorf("train", "the checkpoint is at step %lld, beyond its schedule's %lld steps",
                   (long long)step0, (long long)total);
        goto done;
    }
    int64_t stop = total;
    if (o->max_steps && step0 + o->max_steps < stop)
        stop = step0 + o->max_steps;
    size_t hw = (size_t)tr.h * (size_t)tr.w;
    batch = malloc((size_t)o->batch * hw * sizeof *batch);
    order = malloc((size_t)tr.n * sizeof *order);
    lg.cap = total + 1;
    lg.loss = malloc((size_t)lg.cap * sizeof *lg.loss);
    lg.lr = malloc((size_t)lg.cap * sizeof *lg.lr);
    if (!batch || !order || !lg.loss || !lg.lr) {
        cli_errorf("train", "out of memory");
        goto done;
    }
    if (log_open(&lg, csv_path, step0))
        goto done;
    size_t nparams = 0;
    mae_model_num_params(m, &nparams);
    printf("mae train: %d images %dx%d, patch %d, encoder %dx%d (%d heads), decoder %dx%d, "
           "%.2fM parameters, mask %.2f, %s loss\n", tr.n, tr.h, tr.w, cfg.patch_size,
           cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.decoder_embed_dim, cfg.decoder_depth,
           (double)nparams / 1e6, (double)cfg.mask_ratio, cfg.norm_pix_loss ? "norm-pix" : "pixel");
    printf("mae train: batch %d, %d steps per epoch, %g epochs (%g warmup), step %lld of %lld, "
           "kernels %s, precision %s\n", o->batch, ipe, tc.epochs, tc.warmup_epochs, (long long)step0,
           (long long)total, mae_kernels_name(), o->precision == MAE_PRECISION_BF16 ? "bf16" : "f32");
    fflush(stdout);

    double t0 = cli_now(), last = t0, smooth = 0;
    int cur_epoch = -1, since = 0;
    for (int64_t st = step0; st < stop; st++) {
        int epoch = (int)(st / ipe), it = (int)(st % ipe);
        if (epoch != cur_epoch) {
            epoch_order(o->seed, epoch, tr.n, order);
            cur_epoch = epoch;
        }
        fill_batch(&tr, order + (size_t)it * (size_t)o->batch, o->batch,
                   o->seed * 1000003u + (uint64_t)st, o->flip, batch);
        double lr;
        float loss;
        mae_trainer_get_lr(t, &lr);
        s = mae_trainer_forward_backward(t, batch, o->batch, NULL, &loss);
        if (s == MAE_OK)
            s = mae_trainer_step(t);
        if (s != MAE_OK) {
            cli_fail("train", "training step", s);
            goto done;
        }
        if (!isfinite(loss)) {
            cli_errorf("train", "the loss diverged at step %lld (lr %g); try a smaller --blr",
                    (long long)st, lr);
            goto done;
        }
        double gn;
        mae_trainer_grad_norm(t, &gn);
        double now = cli_now();
        fprintf(lg.csv, "%lld,%.6f,%.6f,%.6g,%.6g,%.2f\n", (long long)st,
                (double)st / ipe, (double)loss, lr, gn, now - t0);
        if (lg.n < lg.cap) {
            lg.loss[lg.n] = loss;
            lg.lr[lg.n] = (float)lr;
            lg.n++;
        }
        smooth = since == 0 && st == step0 ? loss : 0.98 * smooth + 0.02 * loss;
        since++;
        if ((st + 1) % o->log_every == 0 || st + 1 == stop) {
            double rate = (double)since * o->batch / (now - last);
            char eta[32];
            format_eta((double)(stop - st - 1) * o->batch / rate, eta, sizeof eta);
            printf("step %6lld/%lld  epoch %6.2f  loss %.4f (avg %.4f)  lr %.3e  |g| %.3f  "
                   "%6.0f img/s  eta %s\n", (long long)st + 1, (long long)total,
                   (double)(st + 1) / ipe, (double)loss, smooth, lr, gn, rate, eta);
            fflush(stdout);
            if (log_flush(&lg, csv_path))
                goto done;
            last = now;
            since = 0;
        }
        if ((st + 1) % ipe == 0 || st + 1 == stop) {
            if (log_flush(&lg, csv_path))   /* the log reaches the checkpoint's step first */
                goto done;
            s = mae_trainer_save(t, ckpt);
            if (s != MAE_OK) {
                cli_fail("train", ckpt, s);
                goto done;
            }
        }
    }
    double secs = cli_now() - t0;
    int closed = fclose(lg.csv);
    lg.csv = NULL;
    if (closed != 0) {
        cli_errorf("train", "cannot write %s: %s", csv_path, strerror(errno));
        goto done;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", o->out);
    s = mae_model_save_as(m, path, "F32");   /* a bf16 run's float32 masters, not their bf16 */
    if (s != MAE_OK) {
        cli_fail("train", path, s);
        goto done;
    }
    printf("mae train: %lld steps in %.1f s (%.0f img/s)\n", (long long)(stop - step0), secs,
           (double)(stop - step0) * o->batch / (secs > 0 ? secs : 1));
    printf("  model       %s\n  checkpoint  %s\n  loss        %s\n", path, ckpt, csv_path);
    snprintf(path, sizeof path, "%s/loss.png", o->out);
    if (cli_plot_loss("train", path, lg.loss, lg.lr, (int)lg.n) != 0)
        goto done;
    printf("  loss plot   %s\n", path);
    snprintf(path, sizeof path, "%s/reconstruction.png", o->out);
    if (write_reconstruction(o, m, path))
        goto done;
    printf("  test images %s (original | masked | reconstruction | + visible)\n", path);
    rc = 0;
done:
    if (lg.csv)
        fclose(lg.csv);
    free(lg.loss);
    free(lg.lr);
    free(batch);
    free(order);
    mae_trainer_free(t);
    mae_model_free(m);
    cli_images_free(&tr);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    train_opts o;
    int r = parse(argc, argv, &o);
    return r ? r : run(&o);
}
