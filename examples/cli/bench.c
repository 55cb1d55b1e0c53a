/* mae bench: how long a forward pass (and a training step) takes for a model or a preset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"
#ifdef _WIN32
#include <windows.h>
/* the number of online processors (sysconf's _SC_NPROCESSORS_ONLN) */
static long online_cpus(void)
{
    return (long)GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
}
#else
#include <unistd.h>
static long online_cpus(void)
{
    return sysconf(_SC_NPROCESSORS_ONLN);
}
#endif

#define CMD "bench"

typedef struct bench_opts {
    const char *model, *preset;
    int batch, threads, iters, train;
    int precision;           /* MAE_PRECISION_* */
    int simulate;            /* --simulate-threads N, or 0 */
    int profile;             /* --profile */
    double ratio;            /* < 0: the model's */
} bench_opts;

static void usage(void)
{
    printf("usage: mae bench [MODEL.safetensors | --preset tiny|base|large] [options]\n"
           "Times mae_forward on random images (one warm-up run, then --iters timed runs) and\n"
           "prints the median and minimum latency, images/s, the kernel table and the threads.\n"
           "A checkpoint without a decoder times the encoder alone (the latent output).\n"
           "options:\n"
           "  --preset NAME      a freshly initialized tiny (default), base or large model\n"
           "  --batch N          images per call, 1..4096 (default 8)\n"
           "  --threads N        1..256 (default: the number of online CPUs)\n"
           "  --iters N          timed runs, 1..100000 (default 5)\n"
           "  --mask-ratio R     in [0, 1) (default: the model's)\n"
           "  --precision P      f32 | bf16: the linear layers in bfloat16 with float32 sums,\n"
           "                     weights held in half the memory (default f32; docs/PRECISION.md)\n"
           "  --train            also time a training step: mae_trainer_forward_backward +\n"
           "                     mae_trainer_step (the model needs a decoder)\n"
           "  --profile          per op kind: time, share and GFLOP/s of the timed runs\n"
           "                     (mae_measure_set(MAE_MEASURE_PROFILE))\n"
           "  --simulate-threads N  time nothing: the schedule simulation (mae.h section 3) of\n"
           "                     the forward at --batch, the training step at --batch and the\n"
           "                     forward at batch 1, for T = 1, 2, 4, ... and N threads (1..256):\n"
           "                     parallel efficiency W(1) / (T * span(T)) per op kind and in\n"
           "                     all, and barriers; the last line gives the three at N\n");
}

static int parse(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch = 8;
    o->iters = 5;
    o->ratio = -1;
    long ncpu = online_cpus();
    o->threads = ncpu < 1 ? 1 : ncpu > 256 ? 256 : (int)ncpu;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (strcmp(a, "--preset") == 0) {
            if (!(o->preset = cli_arg_value(CMD, argc, argv, &i)))
                return 2;
            if (strcmp(o->preset, "tiny") && strcmp(o->preset, "base") && strcmp(o->preset, "large"))
                return cli_usage_errorf(CMD, "--preset: '%s' is not tiny, base or large", o->preset);
        } else if (strcmp(a, "--batch") == 0) {
            r = cli_arg_int(CMD, argc, argv, &i, 1, 4096, &o->batch);
        } else if (strcmp(a, "--threads") == 0) {
            r = cli_arg_int(CMD, argc, argv, &i, 1, 256, &o->threads);
        } else if (strcmp(a, "--iters") == 0) {
            r = cli_arg_int(CMD, argc, argv, &i, 1, 100000, &o->iters);
        } else if (strcmp(a, "--mask-ratio") == 0) {
            r = cli_arg_double(CMD, argc, argv, &i, 0, 1, 1, &o->ratio);
        } else if (strcmp(a, "--precision") == 0) {
            r = cli_arg_precision(CMD, argc, argv, &i, &o->precision);
        } else if (strcmp(a, "--train") == 0) {
            o->train = 1;
        } else if (strcmp(a, "--profile") == 0) {
            o->profile = 1;
        } else if (strcmp(a, "--simulate-threads") == 0) {
            r = cli_arg_int(CMD, argc, argv, &i, 1, 256, &o->simulate);
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_errorf(CMD, "unknown option '%s'", a);
        } else if (!o->model) {
            o->model = a;
        } else {
            return cli_usage_errorf(CMD, "unexpected argument '%s' (one model at most)", a);
        }
        if (r)
            return r;
    }
    if (o->model && o->preset)
        return cli_usage_error(CMD, "give a model file or --preset, not both");
    if (!o->model && !o->preset)
        o->preset = "tiny";
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and minimum of t[0..n) (sorts t). */
static void summarize(double *t, int n, double *median, double *min)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *min = t[0];
    *median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static void print_times(const char *what, double *t, int n, int batch)
{
    double med, min;
    summarize(t, n, &med, &min);
    printf("%-12s median %.3f ms, min %.3f ms, %.1f images/s (median; %d run%s after 1 warm-up)\n",
           what, med * 1e3, min * 1e3, batch / med, n, n == 1 ? "" : "s");
}

static int bench_forward(const bench_opts *o, const mae_model *m, const float *imgs, double *t)
{
    mae_ctx *c;
    float loss;
    mae_status s = mae_ctx_create(m, o->batch, &c);
    if (s != MAE_OK)
        return cli_fail(CMD, "context", s);
    int dec = 0, L = 0, keep = 0, P = 0;
    mae_model_has_decoder(m, &dec);
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    mae_model_get_config(m, &cfg);
    s = mae_ctx_set_threads(c, o->threads);
    if (s == MAE_OK && o->ratio >= 0)
        s = mae_ctx_set_mask_ratio(c, (float)o->ratio);
    if (s == MAE_OK)
        s = mae_ctx_get_dims(c, &L, &keep, &P);
    /* with a decoder: the whole pipeline up to the loss; encoder-only checkpoints: the latent */
    float *latent = NULL;
    if (s == MAE_OK && !dec) {
        latent = malloc((size_t)o->batch * (size_t)(1 + keep) * (size_t)cfg.embed_dim * sizeof(float));
        if (!latent) {
            mae_ctx_free(c);
            return cli_errorf(CMD, "out of memory for the latent");
        }
    }
    for (int i = 0; s == MAE_OK && i <= o->iters; i++) {
        double t0 = now();
        s = mae_forward(c, imgs, o->batch, NULL, dec ? &loss : NULL, NULL, NULL, latent);
        if (i > 0)   /* run 0 is the warm-up */
            t[i - 1] = now() - t0;
    }
    free(latent);
    mae_ctx_free(c);
    return s == MAE_OK ? 0 : cli_fail(CMD, "forward", s);
}

static int bench_train(const bench_opts *o, mae_model *m, const float *imgs, double *t)
{
    mae_trainer *tr;
    float loss;
    mae_status s = mae_trainer_create(m, o->batch, &tr);
    if (s != MAE_OK)
        return cli_fail(CMD, "trainer", s);
    s = mae_trainer_set_threads(tr, o->threads);
    if (s == MAE_OK && o->ratio >= 0)
        s = mae_trainer_set_mask_ratio(tr, (float)o->ratio);
    for (int i = 0; s == MAE_OK && i <= o->iters; i++) {
        double t0 = now();
        s = mae_trainer_forward_backward(tr, imgs, o->batch, NULL, &loss);
        if (s == MAE_OK)
            s = mae_trainer_step(tr);
        if (i > 0)
            t[i - 1] = now() - t0;
    }
    mae_trainer_free(tr);
    return s == MAE_OK ? 0 : cli_fail(CMD, "training step", s);
}

static int get_model(const bench_opts *o, mae_model **m)
{
    mae_status s;
    if (o->model)
        return cli_load_model(CMD, o->model, o->precision, m);
    mae_config cfg;
    s = mae_config_init(&cfg, sizeof cfg, o->preset);
    if (s == MAE_OK)
        s = mae_model_create(&cfg, 0, m);
    if (s != MAE_OK)
        return cli_fail(CMD, o->preset, s);
    return cli_set_precision(CMD, *m, o->precision);
}

static void print_model(const bench_opts *o, const mae_model *m)
{
    mae_config c;
    c.struct_size = sizeof c;
    mae_model_get_config(m, &c);
    size_t n = 0;
    mae_model_num_params(m, &n);
    printf("model:       %s%s (%dx%d, patch %d, %d channel%s, width %d, depth %d; %zu parameters)\n",
           o->model ? o->model : o->preset, o->model ? "" : " preset", c.img_height, c.img_width,
           c.patch_size, c.in_chans, c.in_chans == 1 ? "" : "s", c.embed_dim, c.depth, n);
    char d[512];
    if (mae_kernels_describe(d, sizeof d) == MAE_OK)
        printf("kernels:     %s\n", d);
    printf("run:         kernels %s, precision %s, %d thread%s, batch %d, mask ratio %g\n",
           mae_kernels_name(), o->precision == MAE_PRECISION_BF16 ? "bf16" : "f32",
           o->threads, o->threads == 1 ? "" : "s", o->batch,
           o->ratio >= 0 ? o->ratio : (double)c.mask_ratio);
}

/* Random inputs in roughly the normalized range; the values do not change the work done. */
static float *random_images(const mae_model *m, int batch)
{
    mae_config c;
    c.struct_size = sizeof c;
    mae_model_get_config(m, &c);
    size_t n = (size_t)batch * (size_t)c.in_chans * (size_t)c.img_height * (size_t)c.img_width;
    float *x = malloc(n * sizeof *x);
    uint32_t r = 12345;
    for (size_t i = 0; x && i < n; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)(r >> 8) / 16777216.0f * 4.0f - 2.0f;
    }
    return x;
}

/* One simulated forward (train 0) or training step (train 1) at `batch` on T threads: the
 * totals, and with `table` a line per op kind (efficiency against w1, that op's work on one
 * thread, when given). */
typedef struct sim_total { double work, span; int loops; } sim_total;

enum { SIM_KINDS = 32 };
typedef struct sim_ops {
    int n;
    const char *name[SIM_KINDS];
    double work[SIM_KINDS], span[SIM_KINDS];
    int loops[SIM_KINDS];
} sim_ops;

static int simulate_once(mae_model *m, int batch, int T, int train, double ratio, sim_total *tot,
                         sim_ops *ops)
{
    float loss;
    mae_status s;
    tot->work = tot->span = 0.0;
    tot->loops = 0;
    if (train) {
        mae_trainer *tr;
        if ((s = mae_trainer_create(m, batch, &tr)) != MAE_OK)
            return cli_fail(CMD, "trainer", s);
        s = mae_trainer_set_threads(tr, T);
        if (s == MAE_OK && ratio >= 0)
            s = mae_trainer_set_mask_ratio(tr, (float)ratio);
        float *imgs = s == MAE_OK ? random_images(m, batch) : NULL;
        if (s == MAE_OK && imgs && (s = mae_measure_set(MAE_MEASURE_SIMULATE)) == MAE_OK) {
            s = mae_trainer_forward_backward(tr, imgs, batch, NULL, &loss);
            if (s == MAE_OK)
                s = mae_trainer_step(tr);
        }
        free(imgs);
        mae_trainer_free(tr);
    } else {
        mae_ctx *c;
        int dec = 0;
        mae_model_has_decoder(m, &dec);
        if ((s = mae_ctx_create(m, batch, &c)) != MAE_OK)
            return cli_fail(CMD, "context", s);
        s = mae_ctx_set_threads(c, T);
        if (s == MAE_OK && ratio >= 0)
            s = mae_ctx_set_mask_ratio(c, (float)ratio);
        float *imgs = s == MAE_OK ? random_images(m, batch) : NULL;
        if (s == MAE_OK && imgs && (s = mae_measure_set(MAE_MEASURE_SIMULATE)) == MAE_OK)
            s = mae_forward(c, imgs, batch, NULL, dec ? &loss : NULL, NULL, NULL, NULL);
        free(imgs);
        mae_ctx_free(c);
    }
    int n = 0;
    mae_measure_count(&n);
    if (ops)
        ops->n = n < SIM_KINDS ? n : SIM_KINDS;
    for (int i = 0; i < n; i++) {
        const char *name;
        int loops;
        double work, span;
        mae_measure_op(i, &name, &loops, NULL, NULL, &work, &span);
        tot->work += work;
        tot->span += span;
        tot->loops += loops;
        if (ops && i < SIM_KINDS) {
            ops->name[i] = name;
            ops->work[i] = work;
            ops->span[i] = span;
            ops->loops[i] = loops;
        }
    }
    mae_measure_set(MAE_MEASURE_OFF);
    return s == MAE_OK ? 0 : cli_fail(CMD, "simulated run", s);
}

static int simulate(const bench_opts *o, mae_model *m)
{
    int Ts[16], nT = 0;
    for (int T = 1; T < o->simulate; T *= 2)
        Ts[nT++] = T;
    Ts[nT++] = o->simulate;
    const char *what[3] = { "forward", "training step", "batch-1 forward" };
    int batch[3] = { o->batch, o->batch, 1 }, train[3] = { 0, 1, 0 };
    double eff_last[3] = { 0, 0, 0 };
    int dec = 0;
    mae_model_has_decoder(m, &dec);
    printf("schedule simulation (the partitions the library makes for T threads, dealt to T lanes;\n"
           "efficiency = work on 1 thread / (T * the sum over loops of the busiest lane's share)):\n");
    for (int w = 0; w < 3; w++) {
        if (train[w] && !dec)
            continue;
        sim_total one, tot;
        sim_ops base, at;
        int r = simulate_once(m, batch[w], 1, train[w], o->ratio, &one, &base);
        if (r)
            return r;
        printf("%s, batch %d:\n  %8s %10s %10s\n", what[w], batch[w], "threads", "efficiency", "barriers");
        for (int k = 0; k < nT; k++) {
            if ((r = simulate_once(m, batch[w], Ts[k], train[w], o->ratio, &tot, k == nT - 1 ? &at : NULL)))
                return r;
            double eff = tot.span > 0 ? one.work / (Ts[k] * tot.span) : 1.0;
            printf("  %8d %10.3f %10d\n", Ts[k], eff > 1.0 ? 1.0 : eff, tot.loops);
            eff_last[w] = eff > 1.0 ? 1.0 : eff;
        }
        /* per op kind at N: the op's efficiency, its loops and its share of the work */
        printf("  per op at %d threads:\n  %-20s %6s %7s %10s\n", o->simulate, "op", "loops", "work", "efficiency");
        for (int i = 0; i < at.n; i++) {
            double w1 = 0.0;
            for (int q = 0; q < base.n; q++)
                if (strcmp(base.name[q], at.name[i]) == 0)
                    w1 = base.work[q];
            double e = at.span[i] > 0 ? w1 / (o->simulate * at.span[i]) : 1.0;
            printf("  %-20s %6d %6.1f%% %10.3f\n", at.name[i], at.loops[i], 100.0 * w1 / one.work,
                   e > 1.0 ? 1.0 : e);
        }
    }
    printf("simulated parallel efficiency at %d threads: forward %.3f, training step %.3f, batch-1 forward %.3f\n",
           o->simulate, eff_last[0], eff_last[1], eff_last[2]);
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    bench_opts o;
    int r = parse(argc, argv, &o);
    mae_model *m = NULL;
    if (!r)
        r = get_model(&o, &m);
    float *imgs = NULL;
    double *t = NULL;
    if (!r) {
        imgs = random_images(m, o.batch);
        t = malloc((size_t)o.iters * sizeof *t);
        if (!imgs || !t)
            r = cli_errorf(CMD, "out of memory for a batch of %d", o.batch);
    }
    if (!r && o.simulate) {
        print_model(&o, m);
        r = simulate(&o, m);
        free(imgs);
        free(t);
        mae_model_free(m);
        return r;
    }
    if (!r && o.profile)
        mae_measure_set(MAE_MEASURE_PROFILE);
    if (!r) {
        print_model(&o, m);
        fflush(stdout);
        int dec = 0;
        mae_model_has_decoder(m, &dec);
        r = bench_forward(&o, m, imgs, t);
        if (!r)   /* an encoder-only model's forward pass stops at the latent */
            print_times(dec ? "forward:" : "encoder:", t, o.iters, o.batch);
        if (!r && o.profile)
            cli_print_profile(stdout, "the forward", o.iters + 1);
    }
    if (!r && o.train) {
        fflush(stdout);
        if (o.profile)
            mae_measure_set(MAE_MEASURE_PROFILE);
        r = bench_train(&o, m, imgs, t);
        if (!r)
            print_times("train step:", t, o.iters, o.batch);
        if (!r && o.profile)
            cli_print_profile(stdout, "the training step", o.iters + 1);
    }
    mae_measure_set(MAE_MEASURE_OFF);
    free(imgs);
    free(t);
    mae_model_free(m);
    return r;
}
