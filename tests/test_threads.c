/* Threads: several threads create models at the same time (the one-time kernel selection), then
 * many contexts run forward passes on one shared model at once, each result bitwise equal to a
 * single-threaded run of the same job; error messages stay per thread. tests/check_tsan.sh runs
 * this under ThreadSanitizer. */
#include <pthread.h>
#include "testutil.h"

enum { NTHREADS = 4, NJOBS = 8, B = 2, ROUNDS = 2 };

typedef struct job {
    float *imgs, *noise;        /* noise NULL: drawn from the context's RNG seeded with seed */
    uint64_t seed;
    int threads;                /* the context's own thread count for this job */
    float loss, *pred, *mask, *latent;
} job;

static mae_model *shared;
static job jobs[NJOBS];
static int L, keep, P, D, npix;

static mae_model *create_tiny(void)
{
    mae_config cfg;
    mae_model *m = NULL;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK || mae_model_create(&cfg, 7, &m) != MAE_OK)
        return NULL;
    return m;
}

/* Runs job j in context c into the given outputs. */
static mae_status run_job(mae_ctx *c, const job *jb, float *loss, float *pred, float *mask, float *latent)
{
    mae_status s = mae_ctx_set_threads(c, jb->threads);
    if (s == MAE_OK && !jb->noise)
        s = mae_ctx_set_seed(c, jb->seed);
    if (s == MAE_OK)
        s = mae_forward(c, jb->imgs, B, jb->noise, loss, pred, mask, latent);
    return s;
}

/* ---- phase 1: models created concurrently ---------------------------------------------------- */

static mae_model *created[NTHREADS];

static void *create_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    created[t] = create_tiny();
    return NULL;
}

static void test_concurrent_create(void)
{
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++)
        CHECK(pthread_create(&th[t], NULL, create_thread, (void *)(intptr_t)t) == 0, "pthread_create");
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    size_t n0 = 0;
    const float *w0 = NULL;
    int ok = created[0] && mae_model_tensor(created[0], "blocks.1.mlp.fc2.weight", &w0, &n0, NULL, NULL) == MAE_OK;
    CHECK(ok, "thread 0 could not create a model: %s", mae_last_error());
    for (int t = 1; t < NTHREADS && ok; t++) {
        const float *w = NULL;
        size_t n = 0;
        CHECK(created[t] && mae_model_tensor(created[t], "blocks.1.mlp.fc2.weight", &w, &n, NULL, NULL) == MAE_OK,
              "thread %d could not create a model", t);
        CHECK(w && n == n0 && memcmp(w, w0, n * sizeof *w) == 0, "models created concurrently differ (thread %d)", t);
    }
    for (int t = 1; t < NTHREADS; t++)
        mae_model_free(created[t]);
    shared = created[0];
}

/* ---- phase 2: many contexts on one model ----------------------------------------------------- */

typedef struct worker {
    int id;
    int mismatches, failures;
    char error[160];
} worker;

static void *forward_thread(void *arg)
{
    worker *w = arg;
    mae_ctx *c = NULL;
    if (mae_ctx_create(shared, B, &c) != MAE_OK) {
        w->failures++;
        snprintf(w->error, sizeof w->error, "ctx_create: %s", mae_last_error());
        return NULL;
    }
    float *pred = malloc(sizeof(float) * B * L * P), *mask = malloc(sizeof(float) * B * L);
    float *latent = malloc(sizeof(float) * B * (1 + keep) * D);
    char name[32];
    snprintf(name, sizeof name, "no.such.tensor.%d", w->id);
    for (int r = 0; r < ROUNDS && pred && mask && latent; r++)
        for (int j = (w->id + r) % NTHREADS; j < NJOBS; j += NTHREADS) {
            /* a failure of this thread's own, to check below that the message stays ours */
            mae_model_tensor(shared, name, NULL, NULL, NULL, NULL);
            tu_poison(pred, (size_t)B * L * P);
            tu_poison(mask, (size_t)B * L);
            tu_poison(latent, (size_t)B * (1 + keep) * D);
            float loss = NAN;
            if (run_job(c, &jobs[j], &loss, pred, mask, latent) != MAE_OK) {
                w->failures++;
                snprintf(w->error, sizeof w->error, "job %d: %s", j, mae_last_error());
                continue;
            }
            if (memcmp(&loss, &jobs[j].loss, sizeof loss) || memcmp(pred, jobs[j].pred, sizeof(float) * B * L * P) ||
                memcmp(mask, jobs[j].mask, sizeof(float) * B * L) ||
                memcmp(latent, jobs[j].latent, sizeof(float) * B * (1 + keep) * D))
                w->mismatches++;
            if (!strstr(mae_last_error(), name)) {
                w->failures++;
                snprintf(w->error, sizeof w->error, "error message is not this thread's: '%s'", mae_last_error());
            }
        }
    free(pred); free(mask); free(latent);
    mae_ctx_free(c);
    return NULL;
}

static void test_shared_model(void)
{
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(shared, B, &c));
    if (!c)
        return;
    CHECK_OK(mae_ctx_get_dims(c, &L, &keep, &P));
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    CHECK_OK(mae_model_get_config(shared, &cfg));
    D = cfg.embed_dim;
    npix = cfg.in_chans * cfg.img_size * cfg.img_size;
    /* the single-threaded reference of every job */
    for (int j = 0; j < NJOBS; j++) {
        job *jb = &jobs[j];
        jb->imgs = tu_malloc(sizeof(float) * B * npix);
        tu_fill(jb->imgs, (size_t)B * npix, -2, 2);
        jb->noise = NULL;
        if (j % 2) {
            jb->noise = tu_malloc(sizeof(float) * B * L);
            tu_fill(jb->noise, (size_t)B * L, 0, 1);
        }
        jb->seed = 1000 + (uint64_t)j;
        jb->threads = 1;
        jb->pred = tu_malloc(sizeof(float) * B * L * P);
        jb->mask = tu_malloc(sizeof(float) * B * L);
        jb->latent = tu_malloc(sizeof(float) * B * (1 + keep) * D);
        CHECK_OK(run_job(c, jb, &jb->loss, jb->pred, jb->mask, jb->latent));
        CHECK(isfinite(jb->loss), "job %d: loss %g", j, (double)jb->loss);
        jb->threads = 1 + j % 3;   /* the threaded runs use 1..3 threads inside each context */
    }
    mae_ctx_free(c);

    pthread_t th[NTHREADS];
    worker w[NTHREADS];
    memset(w, 0, sizeof w);
    for (int t = 0; t < NTHREADS; t++) {
        w[t].id = t;
        CHECK(pthread_create(&th[t], NULL, forward_thread, &w[t]) == 0, "pthread_create");
    }
    int runs = 0;
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK(w[t].failures == 0, "thread %d: %d failures, last: %s", t, w[t].failures, w[t].error);
        CHECK(w[t].mismatches == 0, "thread %d: %d results differ from the single-threaded run", t, w[t].mismatches);
    }
    for (int t = 0; t < NTHREADS; t++)
        for (int r = 0; r < ROUNDS; r++)
            for (int j = (t + r) % NTHREADS; j < NJOBS; j += NTHREADS)
                runs++;
    printf("test_threads: %d threads ran %d forward passes on one model, each equal to the single-threaded run\n",
           NTHREADS, runs);
    for (int j = 0; j < NJOBS; j++) {
        free(jobs[j].imgs); free(jobs[j].noise); free(jobs[j].pred); free(jobs[j].mask); free(jobs[j].latent);
    }
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(5);
    TU_RUN("concurrent_create", test_concurrent_create());
    if (shared)
        TU_RUN("shared_model", test_shared_model());
    mae_model_free(shared);
    return tu_finish("test_threads");
}
