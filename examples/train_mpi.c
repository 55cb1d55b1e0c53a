/* Data-parallel MAE pretraining with MPI: every rank holds the same model, runs forward and
 * backward on its slice of the global batch, the ranks average the flat gradient buffer with
 * MPI_Allreduce, and each rank takes the same AdamW step. The library itself knows nothing of
 * MPI: mae_trainer_grads() is the whole interface.
 *
 * Why averaging is exact: the MAE loss is a mean over the removed patches, and every image has
 * the same number of removed patches (L - keep). With equal slices, the global loss is the mean
 * of the ranks' losses, so its gradient is the mean of the ranks' gradients. (With unequal slices
 * rank r would have to weight its gradient by world * B_r / B; this example requires equal ones.)
 * The schedule sees the global batch through batch_size (per rank) and world_size.
 *
 * The images are synthetic and the same on every rank count (made from the global image index),
 * and so is the mask noise, so 2 ranks with half the batch each follow the 1-rank run to float32
 * rounding. tests/check_mpi.sh checks exactly that.
 *
 *   mpicc -std=c11 -O2 -Iinclude examples/train_mpi.c lib/libmae.a -fopenmp -lm -o train_mpi
 *   mpiexec -n 2 ./train_mpi --batch 8 --steps 5 [--save params.bin] [--compare params.bin --tol 1e-5]
 *
 * Built by `make` without MPI (mpi.h not found), it only says so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mae.h"

#if defined(__has_include)
#if __has_include(<mpi.h>)
#define HAVE_MPI 1
#endif
#endif

#ifndef HAVE_MPI
int main(void)
{
    fprintf(stderr, "train_mpi: built without MPI; build it with mpicc (see the top of examples/train_mpi.c)\n");
    return 0;
}
#else
#include <mpi.h>

#define IMG 16
#define CHANS 3

/* A smooth pattern that depends only on the global image index and the step. */
static void make_image(float *img, int index, int step)
{
    double fx = 0.2 + 0.05 * (index % 7), fy = 0.15 + 0.04 * (index % 5), ph = 0.3 * step;
    for (int c = 0; c < CHANS; c++)
        for (int y = 0; y < IMG; y++)
            for (int x = 0; x < IMG; x++)
                img[(c * IMG + y) * IMG + x] = (float)sin(fx * x + fy * y * (c + 1) + ph + index);
}

/* Noise for one image: a tiny LCG on the global index and step, values in [0, 1). */
static void make_noise(float *noise, int L, int index, int step)
{
    uint64_t s = (uint64_t)(index + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(step + 1) * 0xD1B54A32D192ED03ull;
    for (int l = 0; l < L; l++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        noise[l] = (float)((s >> 40) * (1.0 / 16777216.0));
    }
}

/* Sum over the ranks, then divide: the mean gradient. MPI counts are ints, hence the chunks. */
static void allreduce_mean(float *x, size_t n, int world)
{
    const size_t chunk = (size_t)1 << 30;
    for (size_t at = 0; at < n; at += chunk) {
        int k = (int)(n - at < chunk ? n - at : chunk);
        MPI_Allreduce(MPI_IN_PLACE, x + at, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    for (size_t i = 0; i < n; i++)
        x[i] /= (float)world;
}

static int fail(const char *what)
{
    fprintf(stderr, "train_mpi: %s: %s\n", what, mae_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
}

/* All parameters in the model's tensor order, then the last step's averaged gradients (so that a
 * wrong average shows even where AdamW's scale invariance would hide it), as one array for
 * --save / --compare. */
static float *gather_state(const mae_model *m, const float *grads, size_t *total)
{
    int n = 0;
    size_t count = 0;
    mae_model_num_params(m, &count);
    mae_model_tensor_count(m, &n);
    float *all = malloc(2 * count * sizeof *all);
    size_t at = 0;
    for (int i = 0; all && i < n; i++) {
        const char *name;
        const float *data;
        size_t c;
        int ndim;
        int64_t shape[4];
        mae_model_tensor_name(m, i, &name);
        mae_model_tensor(m, name, &data, &c, &ndim, shape);
        memcpy(all + at, data, c * sizeof *all);
        at += c;
    }
    if (all)
        memcpy(all + at, grads, count * sizeof *all);
    *total = 2 * count;
    return all;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    int batch = 8, steps = 5;
    const char *save = NULL, *compare = NULL;
    double tol = INFINITY;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--save") && i + 1 < argc) save = argv[++i];
        else if (!strcmp(argv[i], "--compare") && i + 1 < argc) compare = argv[++i];
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc) tol = atof(argv[++i]);
        else {
            if (rank == 0)
                fprintf(stderr, "usage: train_mpi [--batch N] [--steps N] [--save FILE] [--compare FILE [--tol X]]\n");
            MPI_Finalize();
            return 2;
        }
    }
    if (batch <= 0 || steps <= 0 || batch % world) {
        if (rank == 0)
            fprintf(stderr, "train_mpi: the global batch %d must be positive and divisible by the %d ranks\n", batch, world);
        MPI_Finalize();
        return 2;
    }
    int local = batch / world, first = rank * local;

    /* the same model on every rank: the initialization is deterministic in the seed */
    mae_config cfg;
    mae_model *m;
    mae_trainer *t;
    mae_config_init(&cfg, sizeof cfg, "tiny");
    cfg.img_size = IMG; cfg.patch_size = 4; cfg.in_chans = CHANS;
    cfg.embed_dim = 32; cfg.depth = 2; cfg.num_heads = 4;
    cfg.decoder_embed_dim = 16; cfg.decoder_depth = 1; cfg.decoder_num_heads = 2;
    if (mae_model_create(&cfg, 11, &m) != MAE_OK) return fail("mae_model_create");
    if (mae_trainer_create(m, local, &t) != MAE_OK) return fail("mae_trainer_create");
    mae_trainer_set_threads(t, 1);
    mae_train_config tc;
    mae_train_config_init(&tc, sizeof tc);
    tc.blr = 1e-2;                       /* large, so that a few steps move the weights visibly */
    tc.batch_size = local;               /* eff_batch = local * accum_iter * world = the global batch */
    tc.world_size = world;
    tc.warmup_epochs = 1; tc.epochs = 4; tc.iters_per_epoch = 2;
    if (mae_trainer_set_config(t, &tc) != MAE_OK) return fail("mae_trainer_set_config");

    int L = 0;
    mae_ctx *c;
    if (mae_ctx_create(m, 1, &c) != MAE_OK) return fail("mae_ctx_create");
    mae_ctx_get_dims(c, &L, NULL, NULL);
    mae_ctx_free(c);
    size_t isz = (size_t)CHANS * IMG * IMG;
    size_t nparams;
    mae_model_num_params(m, &nparams);
    float *imgs = malloc((size_t)local * isz * sizeof *imgs), *noise = malloc((size_t)local * L * sizeof *noise);
    float *last = malloc(nparams * sizeof *last);
    if (!imgs || !noise || !last) return fail("out of memory");

    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < local; i++) {
            make_image(imgs + i * isz, first + i, s);
            make_noise(noise + (size_t)i * L, L, first + i, s);
        }
        float loss;
        double lr;
        mae_trainer_get_lr(t, &lr);
        if (mae_trainer_forward_backward(t, imgs, local, noise, &loss) != MAE_OK) return fail("forward_backward");
        float *grads;
        size_t count;
        mae_trainer_grads(t, &grads, &count);
        /* sum over the ranks, then the mean; the loss likewise, for the log */
        allreduce_mean(grads, count, world);
        memcpy(last, grads, count * sizeof *last);
        double gl = loss;
        MPI_Allreduce(MPI_IN_PLACE, &gl, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (mae_trainer_step(t) != MAE_OK) return fail("mae_trainer_step");
        double norm;
        mae_trainer_grad_norm(t, &norm);
        if (rank == 0)
            printf("step %d  loss %.6f  lr %.3e  grad-norm %.4f  (%d ranks x %d images)\n",
                   s, gl / world, lr, norm, world, local);
    }

    int status = 0;
    if (rank == 0 && (save || compare)) {
        size_t n;
        float *p = gather_state(m, last, &n);
        if (!p) return fail("out of memory");
        if (save) {
            FILE *f = fopen(save, "wb");
            if (!f || fwrite(p, sizeof *p, n, f) != n || fclose(f)) {
                fprintf(stderr, "train_mpi: cannot write %s\n", save);
                status = 1;
            }
        }
        if (compare) {
            float *q = malloc(n * sizeof *q);
            FILE *f = fopen(compare, "rb");
            if (!q || !f || fread(q, sizeof *q, n, f) != n) {
                fprintf(stderr, "train_mpi: cannot read %zu floats from %s\n", n, compare);
                status = 1;
            } else {
                /* parameters and gradients, each on its own */
                double rel = 0;
                for (int part = 0; part < 2; part++) {
                    double num = 0, den = 0;
                    for (size_t i = part * n / 2; i < (part + 1) * n / 2; i++) {
                        num += ((double)p[i] - q[i]) * ((double)p[i] - q[i]);
                        den += (double)q[i] * q[i];
                    }
                    double r = sqrt(num / den);
                    printf("%s vs %s: rel L2 %.3e\n", part ? "last gradients" : "parameters", compare, r);
                    rel = r > rel || isnan(r) ? r : rel;
                }
                if (!(rel <= tol))
                    status = 1;   /* also for NaN */
            }
            if (f) fclose(f);
            free(q);
        }
        free(p);
    }
    free(imgs);
    free(noise);
    free(last);
    mae_trainer_free(t);
    mae_model_free(m);
    MPI_Finalize();
    return status;
}
#endif
