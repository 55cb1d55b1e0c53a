/* Threads: several threads create models at the same time (the one-time kernel selection), then
 * many contexts run forward passes on one shared model at once, each result bitwise equal to a
 * single-threaded run of the same job; error messages stay per thread. Then the pools: a host
 * pool on its own pthreads that reorders and delays tasks, and one that runs everything on the
 * calling thread, give bitwise the results of the built-in pool and of one thread (forward and a
 * training step); the built-in pool, when the OS refuses threads (a test hook), runs on fewer
 * threads with the same results. The partitions of 16-64-core machines (many_threads): every entry
 * point at 5, 16 and 64 threads bitwise the one-thread result; 256 threads run.
 * tests/check_tsan.sh runs this under ThreadSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <sys/resource.h>
#ifndef _WIN32
#include <sys/wait.h>   /* the address-space test forks; Windows skips it */
#endif
#include <unistd.h>
#include "testutil.h"
#include "util/pool.h"

#if defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#    define MAE_TEST_SANITIZED 1
#  endif
#endif

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

/* ---- host pools ------------------------------------------------------------------------------ */

/* A host job system as a test sees one: each run hands its tasks to fresh pthreads in a shuffled
 * order, each task after a random delay; run returns when all are joined. */
typedef struct test_pool {
    atomic_int runs, tasks_run, off_thread;   /* counters the checks read */
    atomic_uint seed;
} test_pool;

typedef struct test_run {
    test_pool *tp;
    mae_pool_task fn;
    void *arg;
    int order[256], ntasks;
    atomic_int next;
    pthread_t caller;
} test_run;

static void *test_pool_worker(void *p)
{
    test_run *r = p;
    unsigned st = atomic_fetch_add(&r->tp->seed, 0x9E3779B9u);
    for (;;) {
        int k = atomic_fetch_add(&r->next, 1);
        if (k >= r->ntasks)
            return NULL;
        st = st * 1103515245u + 12345u;
        struct timespec d = { 0, (long)((st >> 16) % 4) * 25000 };   /* 0-75 us */
        nanosleep(&d, NULL);
        r->fn(r->arg, r->order[k]);
        atomic_fetch_add(&r->tp->tasks_run, 1);
        if (!pthread_equal(pthread_self(), r->caller))
            atomic_fetch_add(&r->tp->off_thread, 1);
    }
}

static void test_pool_run(void *user, int ntasks, mae_pool_task fn, void *arg)
{
    test_pool *tp = user;
    test_run r;
    r.tp = tp;
    r.fn = fn;
    r.arg = arg;
    r.ntasks = ntasks;
    r.caller = pthread_self();
    atomic_init(&r.next, 0);
    unsigned st = atomic_fetch_add(&tp->seed, 7u);
    for (int i = 0; i < ntasks; i++)
        r.order[i] = i;
    for (int i = ntasks - 1; i > 0; i--) {   /* Fisher-Yates */
        st = st * 1103515245u + 12345u;
        int j = (int)((st >> 8) % (unsigned)(i + 1)), t = r.order[i];
        r.order[i] = r.order[j];
        r.order[j] = t;
    }
    atomic_fetch_add(&tp->runs, 1);
    pthread_t th[3];
    int n = ntasks < 3 ? ntasks : 3, started = 0;
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, test_pool_worker, &r) == 0)
            started++;
        else
            break;
    if (!started)
        test_pool_worker(&r);   /* the test's own thread creation failed: run them here */
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

/* A pool that runs every task on the calling thread, last first. */
static atomic_int inline_runs;
static void inline_run(void *user, int ntasks, mae_pool_task fn, void *arg)
{
    (void)user;
    atomic_fetch_add(&inline_runs, 1);
    for (int i = ntasks - 1; i >= 0; i--)
        fn(arg, i);
}

typedef struct outputs { float loss, *pred, *mask, *latent; } outputs;

static void outputs_alloc(outputs *o)
{
    o->pred = tu_malloc(sizeof(float) * B * L * P);
    o->mask = tu_malloc(sizeof(float) * B * L);
    o->latent = tu_malloc(sizeof(float) * B * (1 + keep) * D);
    tu_poison(o->pred, (size_t)B * L * P);
    o->loss = NAN;
}

static void outputs_free(outputs *o) { free(o->pred); free(o->mask); free(o->latent); }

static int outputs_equal(const outputs *a, const outputs *b)
{
    return !memcmp(&a->loss, &b->loss, sizeof a->loss) && !memcmp(a->pred, b->pred, sizeof(float) * B * L * P) &&
           !memcmp(a->mask, b->mask, sizeof(float) * B * L) &&
           !memcmp(a->latent, b->latent, sizeof(float) * B * (1 + keep) * D);
}

static mae_status forward_seeded(mae_ctx *c, const float *imgs, outputs *o)
{
    mae_status s = mae_ctx_set_seed(c, 77);
    return s != MAE_OK ? s : mae_forward(c, imgs, B, NULL, &o->loss, o->pred, o->mask, o->latent);
}

/* One training step on a fresh model with the given pool (NULL: built-in) and thread count:
 * the gradients of the forward-backward, then every weight after the step. */
typedef struct step_result { float loss; float *grads, *weights; size_t n; } step_result;

static step_result train_step(const mae_thread_pool *pool, int threads, const float *imgs)
{
    step_result r = { NAN, NULL, NULL, 0 };
    mae_model *m = create_tiny();
    mae_trainer *t = NULL;
    CHECK(m && mae_trainer_create(m, B, &t) == MAE_OK, "trainer: %s", mae_last_error());
    if (!t) {
        mae_model_free(m);
        return r;
    }
    if (pool)
        CHECK_OK(mae_trainer_set_thread_pool(t, pool));
    else
        CHECK_OK(mae_trainer_set_threads(t, threads));
    CHECK_OK(mae_trainer_set_seed(t, 9));
    float *g = NULL;
    CHECK_OK(mae_trainer_forward_backward(t, imgs, B, NULL, &r.loss));
    CHECK_OK(mae_trainer_grads(t, &g, &r.n));
    r.grads = tu_malloc(r.n * sizeof(float));
    r.weights = tu_malloc(r.n * sizeof(float));
    memcpy(r.grads, g, r.n * sizeof(float));
    CHECK_OK(mae_trainer_step(t));
    int nt = 0;
    size_t at = 0;
    CHECK_OK(mae_model_tensor_count(m, &nt));
    for (int i = 0; i < nt; i++) {
        const char *name = NULL;
        const float *w = NULL;
        size_t cnt = 0;
        CHECK_OK(mae_model_tensor_name(m, i, &name));
        CHECK_OK(mae_model_tensor(m, name, &w, &cnt, NULL, NULL));
        if (w && at + cnt <= r.n) {
            memcpy(r.weights + at, w, cnt * sizeof(float));
            at += cnt;
        }
    }
    CHECK(at == r.n, "the tensors hold %zu floats, the gradients %zu", at, r.n);
    mae_trainer_free(t);
    mae_model_free(m);
    return r;
}

static int steps_equal(const step_result *a, const step_result *b)
{
    return a->n == b->n && a->grads && b->grads && !memcmp(&a->loss, &b->loss, sizeof a->loss) &&
           !memcmp(a->grads, b->grads, a->n * sizeof(float)) && !memcmp(a->weights, b->weights, a->n * sizeof(float));
}

static void test_pools(void)
{
    mae_model *m = create_tiny();
    CHECK(m, "create: %s", mae_last_error());
    if (!m)
        return;
    float *imgs = tu_malloc(sizeof(float) * B * npix);
    tu_fill(imgs, (size_t)B * npix, -2, 2);
    test_pool tp;
    atomic_init(&tp.runs, 0);
    atomic_init(&tp.tasks_run, 0);
    atomic_init(&tp.off_thread, 0);
    atomic_init(&tp.seed, 12345u);
    mae_thread_pool host, inl;
    CHECK_OK(mae_thread_pool_init(&host, sizeof host));
    CHECK_OK(mae_thread_pool_init(&inl, sizeof inl));
    host.nthreads = 4;
    host.run = test_pool_run;
    host.user = &tp;
    inl.nthreads = 3;
    inl.run = inline_run;

    /* forward: one thread, the built-in pool on 2 and 3 threads, both host pools */
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c));
    if (!c) {
        free(imgs);
        mae_model_free(m);
        return;
    }
    outputs ref, o;
    outputs_alloc(&ref);
    outputs_alloc(&o);
    int n = 0;
    CHECK_OK(mae_ctx_set_threads(c, 1));
    CHECK_OK(mae_ctx_get_threads(c, &n));
    CHECK(n == 1, "get_threads %d after set_threads(1)", n);
    CHECK_OK(forward_seeded(c, imgs, &ref));
    CHECK(isfinite(ref.loss), "loss %g", (double)ref.loss);
    for (int threads = 2; threads <= 3; threads++) {
        CHECK_OK(mae_ctx_set_threads(c, threads));
        CHECK_OK(mae_ctx_get_threads(c, &n));
        CHECK(n >= 1 && n <= threads, "get_threads %d for %d threads", n, threads);
        tu_poison(o.pred, (size_t)B * L * P);
        CHECK_OK(forward_seeded(c, imgs, &o));
        CHECK(outputs_equal(&o, &ref), "built-in pool, %d threads: results differ from one thread", threads);
    }
    CHECK_OK(mae_ctx_set_thread_pool(c, &host));
    CHECK_OK(mae_ctx_get_threads(c, &n));
    CHECK(n == 4, "get_threads %d with a host pool of 4", n);
    for (int rep = 0; rep < 3; rep++) {
        tu_poison(o.pred, (size_t)B * L * P);
        CHECK_OK(forward_seeded(c, imgs, &o));
        CHECK(outputs_equal(&o, &ref), "host pool (reordered, delayed), run %d: results differ from one thread", rep);
    }
    CHECK(atomic_load(&tp.runs) > 0 && atomic_load(&tp.off_thread) > 0,
          "the host pool was not used (%d runs, %d tasks on its threads)", atomic_load(&tp.runs), atomic_load(&tp.off_thread));
    int before = atomic_load(&inline_runs);
    CHECK_OK(mae_ctx_set_thread_pool(c, &inl));
    tu_poison(o.pred, (size_t)B * L * P);
    CHECK_OK(forward_seeded(c, imgs, &o));
    CHECK(outputs_equal(&o, &ref), "calling-thread pool: results differ from one thread");
    CHECK(atomic_load(&inline_runs) > before, "the calling-thread pool was not used");
    CHECK_OK(mae_ctx_set_thread_pool(c, NULL));   /* back to the built-in pool, 3 threads kept */
    int runs = atomic_load(&tp.runs), iruns = atomic_load(&inline_runs);
    CHECK_OK(forward_seeded(c, imgs, &o));
    CHECK(outputs_equal(&o, &ref), "built-in pool again: results differ");
    CHECK(atomic_load(&tp.runs) == runs && atomic_load(&inline_runs) == iruns, "a host pool was used after it was unset");

    /* bad pools change nothing */
    mae_thread_pool bad = host;
    bad.run = NULL;
    CHECK(mae_ctx_set_thread_pool(c, &bad) == MAE_ERR_INVALID_ARG, "a pool without run accepted");
    bad = host;
    bad.nthreads = 0;
    CHECK(mae_ctx_set_thread_pool(c, &bad) == MAE_ERR_INVALID_ARG, "a pool of 0 threads accepted");
    bad.nthreads = 257;
    CHECK(mae_ctx_set_thread_pool(c, &bad) == MAE_ERR_INVALID_ARG, "a pool of 257 threads accepted");
    bad = host;
    bad.struct_size = 4;
    CHECK(mae_ctx_set_thread_pool(c, &bad) == MAE_ERR_INVALID_ARG, "a pool of struct_size 4 accepted");
    CHECK(mae_thread_pool_init(NULL, sizeof host) == MAE_ERR_INVALID_ARG, "init(NULL) accepted");
    CHECK(mae_ctx_get_threads(c, NULL) == MAE_ERR_INVALID_ARG, "get_threads(NULL) accepted");
    CHECK_OK(mae_ctx_get_threads(c, &n));
    CHECK(n >= 1 && n <= 3, "a refused pool changed the thread count to %d", n);

    /* the library-wide default: contexts created afterwards start on it */
    CHECK_OK(mae_set_thread_pool(&inl));
    mae_ctx *c2 = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c2));
    if (c2) {
        CHECK_OK(mae_ctx_get_threads(c2, &n));
        CHECK(n == 3, "a context on the default pool has %d threads, want its 3", n);
        iruns = atomic_load(&inline_runs);
        CHECK_OK(forward_seeded(c2, imgs, &o));
        CHECK(outputs_equal(&o, &ref) && atomic_load(&inline_runs) > iruns, "the default pool was not used, or differs");
        mae_ctx_free(c2);
    }
    CHECK_OK(mae_set_thread_pool(NULL));

#ifndef _OPENMP
    /* the built-in pool when the OS refuses threads: fewer threads, same results, no exit */
    mae_pool_shutdown();
    mae_pool_test_fail_after(1);
    CHECK_OK(mae_ctx_set_threads(c, 4));
    CHECK_OK(mae_ctx_get_threads(c, &n));
    CHECK(n == 2, "one worker could be created: %d threads, want 2", n);
    tu_poison(o.pred, (size_t)B * L * P);
    CHECK_OK(forward_seeded(c, imgs, &o));
    CHECK(outputs_equal(&o, &ref), "2 of 4 threads: results differ from one thread");
    mae_pool_shutdown();
    mae_pool_test_fail_after(0);
    CHECK_OK(mae_ctx_get_threads(c, &n));
    CHECK(n == 1, "no worker could be created: %d threads, want 1", n);
    tu_poison(o.pred, (size_t)B * L * P);
    CHECK_OK(forward_seeded(c, imgs, &o));
    CHECK(outputs_equal(&o, &ref), "no worker: results differ from one thread");
    mae_pool_shutdown();
    mae_pool_test_fail_after(-1);
    CHECK_OK(mae_ctx_get_threads(c, &n));
    CHECK(n == 4, "the pool did not recover after the hook: %d threads", n);
#endif
    mae_ctx_free(c);

    /* a training step: gradients and updated weights bitwise equal on every pool */
    step_result s1 = train_step(NULL, 1, imgs);
    step_result s3 = train_step(NULL, 3, imgs);
    step_result sh = train_step(&host, 0, imgs);
    step_result si = train_step(&inl, 0, imgs);
    CHECK(isfinite(s1.loss), "training loss %g", (double)s1.loss);
    CHECK(steps_equal(&s3, &s1), "training step: built-in pool on 3 threads differs from one thread");
    CHECK(steps_equal(&sh, &s1), "training step: host pool differs from one thread");
    CHECK(steps_equal(&si, &s1), "training step: calling-thread pool differs from one thread");
    step_result all[] = { s1, s3, sh, si };
    for (int i = 0; i < 4; i++) {
        free(all[i].grads);
        free(all[i].weights);
    }
    printf("test_threads: forward and a training step bitwise equal on 1 thread, the built-in pool, a host pool "
           "(%d runs, %d tasks, %d on its own threads) and a calling-thread pool\n",
           atomic_load(&tp.runs), atomic_load(&tp.tasks_run), atomic_load(&tp.off_thread));
    outputs_free(&ref);
    outputs_free(&o);
    free(imgs);
    mae_model_free(m);
}

/* ---- many threads: the partitions of a 16-64-core machine ------------------------------------ */

/* mae_max_threads is the core count, 16-64 on the machines libmae runs on, and the partitions
 * (matmul grids, attention's batch x head x query-chunk tasks, row loops, K-splits, column sums)
 * change with it. Here they run for real, oversubscribed: every result of every public entry
 * point (masker, forward at batch 1 and 3, embed, two clipped training steps, classifier logits
 * and features, two clipped fine-tuning steps) at 5, 16 and 64 threads, on the built-in pool and
 * on the reordering host pool at 16, is bitwise the one-thread result, on each kernel table the
 * CPU has, for the tiny model, for one of odd sizes (non-square 20 x 28 input, 35 patches, D 60
 * with 5 heads, decoder 36 with 3 heads, odd MLP widths) whose loops have more tasks than rows,
 * columns or heads, for that one in bf16, and for one of 577 tokens (flash attention). */

/* Everything one run computes, concatenated; each piece named for the failure message. Float
 * pieces must be finite (outputs are poisoned with NaN first, so an unwritten element shows). */
typedef struct piece { char name[64]; size_t at, n; int is_float; } piece;
typedef struct record {
    unsigned char *bytes;
    size_t n, cap;
    piece *pieces;
    int npieces, cap_pieces;
} record;

static void rec_add(record *r, const char *name, const void *p, size_t bytes, int is_float)
{
    if (r->n + bytes > r->cap) {
        r->cap = 2 * (r->n + bytes) + 4096;
        r->bytes = realloc(r->bytes, r->cap);
    }
    if (r->npieces == r->cap_pieces) {
        r->cap_pieces = 2 * r->cap_pieces + 64;
        r->pieces = realloc(r->pieces, (size_t)r->cap_pieces * sizeof *r->pieces);
    }
    if (!r->bytes || !r->pieces) {
        fprintf(stderr, "test_threads: out of memory\n");
        exit(2);
    }
    piece *pc = &r->pieces[r->npieces++];
    snprintf(pc->name, sizeof pc->name, "%s", name);
    pc->at = r->n;
    pc->n = bytes;
    pc->is_float = is_float;
    if (p)
        memcpy(r->bytes + r->n, p, bytes);
    else
        memset(r->bytes + r->n, 0xff, bytes);   /* a call that failed (its CHECK_OK reported it) */
    r->n += bytes;
}

static void rec_floats(record *r, const char *name, const float *x, size_t n)
{
    int finite = x != NULL;
    for (size_t i = 0; finite && i < n; i++)
        finite = isfinite(x[i]);
    CHECK(finite, "%s: not finite (an element left unwritten?)", name);
    rec_add(r, name, x, n * sizeof *x, 1);
}

static void rec_free(record *r) { free(r->bytes); free(r->pieces); memset(r, 0, sizeof *r); }

/* The first piece where got differs from want, or NULL; *at gets the element. */
static const piece *rec_diff(const record *got, const record *want, size_t *at)
{
    if (got->npieces != want->npieces || got->n != want->n)
        return got->npieces ? &got->pieces[0] : NULL;
    for (int i = 0; i < want->npieces; i++) {
        const piece *p = &want->pieces[i];
        if (strcmp(p->name, got->pieces[i].name) || p->n != got->pieces[i].n)
            return p;
        for (size_t k = 0; k < p->n; k += 4)
            if (memcmp(got->bytes + p->at + k, want->bytes + p->at + k, p->n - k < 4 ? p->n - k : 4)) {
                *at = k / 4;
                return p;
            }
    }
    return NULL;
}

/* Ends the built-in pool's workers (up to 255 here), so that the sub-tests after these start with
 * a fresh pool: the address-space test counts the threads its child can make. */
static void release_workers(void)
{
#ifndef _OPENMP
    mae_pool_shutdown();
#endif
}

/* How the work runs: a thread count on the built-in pool, or a host pool. */
typedef struct runner { int threads; const mae_thread_pool *host; } runner;

static void set_ctx_runner(mae_ctx *c, const runner *rn)
{
    if (rn->host)
        CHECK_OK(mae_ctx_set_thread_pool(c, rn->host));
    else
        CHECK_OK(mae_ctx_set_threads(c, rn->threads));
}

/* The models: the tiny preset; one of odd sizes (also in bf16); one whose 577 tokens take the
 * flash-attention path (T > 512) in the decoder, mae_embed and the backward. */
enum { MANY_TINY, MANY_ODD, MANY_ODD_BF16, MANY_LONG, MANY_CONFIGS };
static const char *const many_names[MANY_CONFIGS] = { "tiny", "odd", "odd bf16", "long" };

static int many_config(int which, mae_config *cfg)
{
    if (mae_config_init(cfg, sizeof *cfg, "tiny") != MAE_OK)
        return 0;
    if (which == MANY_ODD || which == MANY_ODD_BF16) {
        cfg->img_size = 28;
        cfg->img_height = 20;          /* 5 x 7 = 35 patches of 4 x 4 x 3 = 48 values */
        cfg->img_width = 28;
        cfg->patch_size = 4;
        cfg->embed_dim = 60;           /* 5 heads of 12 */
        cfg->num_heads = 5;
        cfg->decoder_embed_dim = 36;   /* 3 heads of 12 */
        cfg->decoder_num_heads = 3;
        cfg->decoder_depth = 2;
        cfg->mlp_ratio = 2.5f;         /* hidden 150 */
        cfg->decoder_mlp_hidden = 70;
        cfg->norm_pix_loss = 1;
    } else if (which == MANY_LONG) {
        cfg->img_size = 96;            /* 24 x 24 = 576 patches of 4 x 4 gray values */
        cfg->patch_size = 4;
        cfg->in_chans = 1;
        cfg->embed_dim = 24;           /* 2 heads of 12 */
        cfg->num_heads = 2;
        cfg->depth = 1;
        cfg->decoder_embed_dim = 16;   /* 2 heads of 8 */
        cfg->decoder_num_heads = 2;
        cfg->mlp_ratio = 2.0f;
    }
    return 1;
}

enum { MB = 3, TB = 2, CLASSES = 7 };

typedef struct many_inputs {
    int L, P, D, keep, npix;
    float *imgs, *imgs2;   /* [MB, npix] each: the forward's and a second training batch */
    int32_t labels[TB];
} many_inputs;

/* Every tensor of the model, by name, into r. */
static void rec_model(record *r, const char *what, const mae_model *m)
{
    int nt = 0;
    CHECK_OK(mae_model_tensor_count(m, &nt));
    for (int i = 0; i < nt; i++) {
        const char *name = NULL;
        const float *w = NULL;
        size_t cnt = 0;
        char label[64];
        CHECK_OK(mae_model_tensor_name(m, i, &name));
        CHECK_OK(mae_model_tensor(m, name, &w, &cnt, NULL, NULL));
        snprintf(label, sizeof label, "%s %s", what, name ? name : "?");
        rec_floats(r, label, w, cnt);
    }
}

/* Forward passes on m: the masker, mae_forward at batch 1 and MB, mae_embed. */
static void run_forward(const mae_model *m, const runner *rn, const many_inputs *in, record *r)
{
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, MB, &c));
    if (!c)
        return;
    set_ctx_runner(c, rn);
    CHECK_OK(mae_ctx_set_seed(c, 77));
    size_t nl = (size_t)in->L, np = (size_t)in->P, nd = (size_t)in->D;
    int32_t *ids = tu_malloc(2 * MB * nl * sizeof *ids);
    float *pred = tu_malloc(MB * nl * np * sizeof *pred), *mask = tu_malloc(MB * nl * sizeof *mask);
    float *latent = tu_malloc(MB * (1 + nl) * nd * sizeof *latent);
    memset(ids, 0xff, 2 * MB * nl * sizeof *ids);
    int kept = -1;
    const mae_masker *mk = NULL;
    CHECK_OK(mae_model_masker(m, &mk));
    tu_poison(mask, MB * nl);
    CHECK_OK(mae_masker_forward(mk, c, MB, NULL, ids, ids + MB * nl, mask, &kept));
    rec_add(r, "masker ids_shuffle, ids_restore", ids, 2 * MB * nl * sizeof *ids, 0);
    rec_floats(r, "masker mask", mask, MB * nl);
    CHECK(kept == in->keep, "masker kept %d, want %d", kept, in->keep);
    for (int b = 1; b <= MB; b += MB - 1) {
        float loss = NAN;
        char name[64];
        tu_poison(pred, (size_t)b * nl * np);
        tu_poison(mask, (size_t)b * nl);
        tu_poison(latent, (size_t)b * (1 + (size_t)kept) * nd);
        CHECK_OK(mae_forward(c, in->imgs, b, NULL, &loss, pred, mask, latent));
        snprintf(name, sizeof name, "forward batch %d loss", b);
        rec_floats(r, name, &loss, 1);
        snprintf(name, sizeof name, "forward batch %d pred", b);
        rec_floats(r, name, pred, (size_t)b * nl * np);
        snprintf(name, sizeof name, "forward batch %d mask", b);
        rec_floats(r, name, mask, (size_t)b * nl);
        snprintf(name, sizeof name, "forward batch %d latent", b);
        rec_floats(r, name, latent, (size_t)b * (1 + (size_t)kept) * nd);
    }
    tu_poison(latent, MB * (1 + nl) * nd);
    CHECK_OK(mae_embed(c, in->imgs, MB, MAE_POOL_TOKENS, latent));
    rec_floats(r, "embed tokens", latent, MB * (1 + nl) * nd);
    tu_poison(latent, MB * nd);
    CHECK_OK(mae_embed(c, in->imgs, MB, MAE_POOL_MEAN, latent));
    rec_floats(r, "embed mean", latent, MB * nd);
    free(ids); free(pred); free(mask); free(latent);
    mae_ctx_free(c);
}

/* Two training steps at batch TB on a fresh model (bf16: in mixed precision): the losses, the gradients of the second
 * forward-backward, then every weight. */
static void run_trainer(const mae_config *cfg, int bf16, const runner *rn, const many_inputs *in, record *r)
{
    mae_model *m = NULL;
    mae_trainer *t = NULL;
    CHECK_OK(mae_model_create(cfg, 11, &m));
    if (m && bf16)
        CHECK_OK(mae_model_set_precision(m, MAE_PRECISION_BF16));   /* mixed-precision training */
    if (m)
        CHECK_OK(mae_trainer_create(m, TB, &t));
    if (!t) {
        mae_model_free(m);
        return;
    }
    if (rn->host)
        CHECK_OK(mae_trainer_set_thread_pool(t, rn->host));
    else
        CHECK_OK(mae_trainer_set_threads(t, rn->threads));
    CHECK_OK(mae_trainer_set_seed(t, 9));
    mae_train_config tc;
    CHECK_OK(mae_train_config_init(&tc, sizeof tc));
    CHECK_OK(mae_trainer_get_config(t, &tc));
    tc.clip_grad = 0.05f;   /* the global norm (summed in chunks) then scales every update */
    CHECK_OK(mae_trainer_set_config(t, &tc));
    for (int step = 0; step < 2; step++) {
        float loss = NAN, *g = NULL;
        size_t n = 0;
        double norm = NAN;
        char name[64];
        CHECK_OK(mae_trainer_forward_backward(t, step ? in->imgs2 : in->imgs, TB, NULL, &loss));
        snprintf(name, sizeof name, "trainer step %d loss", step + 1);
        rec_floats(r, name, &loss, 1);
        if (step) {
            CHECK_OK(mae_trainer_grads(t, &g, &n));
            rec_floats(r, "trainer step 2 gradients", g, n);
        }
        CHECK_OK(mae_trainer_step(t));
        CHECK_OK(mae_trainer_grad_norm(t, &norm));   /* the norm that step clipped with */
        CHECK(isfinite(norm) && norm > 0, "trainer gradient norm %g", norm);
        snprintf(name, sizeof name, "trainer step %d gradient norm", step + 1);
        rec_add(r, name, &norm, sizeof norm, 0);
    }
    mae_trainer_free(t);
    rec_model(r, "trained", m);
    mae_model_free(m);
}

/* A classifier made from m (global pooling or cls): its logits and features at batch MB, then
 * two finetuner steps at batch TB (loss, logits, every encoder and head tensor after). */
static void run_classifier(const mae_model *m, int global_pool, const runner *rn, const many_inputs *in,
                           record *r)
{
    mae_classifier *cl = NULL;
    const mae_model *cm = NULL;
    mae_ctx *c = NULL;
    CHECK_OK(mae_classifier_create(m, CLASSES, global_pool, 5, &cl));
    if (cl)
        CHECK_OK(mae_classifier_model(cl, &cm));
    if (cm)
        CHECK_OK(mae_ctx_create(cm, MB, &c));
    if (!c) {
        mae_classifier_free(cl);
        return;
    }
    set_ctx_runner(c, rn);
    float logits[MB * CLASSES], *feat = tu_malloc((size_t)MB * in->D * sizeof *feat);
    tu_poison(logits, MB * CLASSES);
    CHECK_OK(mae_classifier_forward(cl, c, in->imgs, MB, logits));
    rec_floats(r, "classifier logits", logits, MB * CLASSES);
    tu_poison(feat, (size_t)MB * in->D);
    CHECK_OK(mae_classifier_features(cl, c, in->imgs, MB, feat));
    rec_floats(r, "classifier features", feat, (size_t)MB * in->D);
    free(feat);
    mae_ctx_free(c);

    /* the finetuner takes the library-wide default pool when it is created */
    mae_finetuner *f = NULL;
    if (rn->host)
        CHECK_OK(mae_set_thread_pool(rn->host));
    CHECK_OK(mae_finetuner_create(cl, TB, &f));
    CHECK_OK(mae_set_thread_pool(NULL));
    if (!f) {
        mae_classifier_free(cl);
        return;
    }
    if (!rn->host)
        CHECK_OK(mae_finetuner_set_threads(f, rn->threads));
    CHECK_OK(mae_finetuner_set_seed(f, 3));   /* drop path 0.1 (the default) draws masks */
    mae_finetune_config fc;
    CHECK_OK(mae_finetune_config_init(&fc, sizeof fc));
    CHECK_OK(mae_finetuner_get_config(f, &fc));
    fc.clip_grad = 0.05f;
    CHECK_OK(mae_finetuner_set_config(f, &fc));
    for (int step = 0; step < 2; step++) {
        float loss = NAN;
        char name[64];
        tu_poison(logits, TB * CLASSES);
        CHECK_OK(mae_finetuner_forward_backward(f, step ? in->imgs2 : in->imgs, TB, in->labels, NULL, &loss, logits));
        snprintf(name, sizeof name, "finetuner step %d loss", step + 1);
        rec_floats(r, name, &loss, 1);
        snprintf(name, sizeof name, "finetuner step %d logits", step + 1);
        rec_floats(r, name, logits, TB * CLASSES);
        CHECK_OK(mae_finetuner_step(f));
    }
    mae_finetuner_free(f);
    rec_model(r, "finetuned", cm);
    static const char *head[] = { "head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias" };
    for (int i = 0; i < (global_pool ? 4 : 2); i++) {
        const float *w = NULL;
        size_t cnt = 0;
        char label[64];
        CHECK_OK(mae_classifier_tensor(cl, head[i], &w, &cnt));
        snprintf(label, sizeof label, "finetuned %s", head[i]);
        rec_floats(r, label, w, cnt);
    }
    mae_classifier_free(cl);
}

/* The thread counts compared with one thread. Under ThreadSanitizer (tests/check_tsan.sh), where
 * every access is instrumented and 64 spinning threads crawl, 16 threads and the host pool on the
 * best kernel table only: the races it looks for are in the lanes, not in the partition sizes. */
#if defined(__SANITIZE_THREAD__)
#  define MANY_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define MANY_TSAN 1
#  endif
#endif
#ifdef MANY_TSAN
static const int many_threads[] = { 16 };
#else
static const int many_threads[] = { 5, 16, 64 };
#endif
enum { HOST_THREADS = 16 };

static void test_many_threads_config(int which, test_pool *tp, const mae_thread_pool *host)
{
    mae_config cfg;
    mae_model *m = NULL;
    CHECK(many_config(which, &cfg), "config %d", which);
    CHECK_OK(mae_model_create(&cfg, 7, &m));
    int bf16 = which == MANY_ODD_BF16;
    if (m && bf16)
        CHECK_OK(mae_model_set_precision(m, MAE_PRECISION_BF16));
    if (!m)
        return;
    many_inputs in;
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, MB, &c));
    if (!c) {
        mae_model_free(m);
        return;
    }
    CHECK_OK(mae_ctx_get_dims(c, &in.L, &in.keep, &in.P));
    mae_ctx_free(c);
    in.D = cfg.embed_dim;
    in.npix = cfg.in_chans * (cfg.img_height ? cfg.img_height : cfg.img_size) *
              (cfg.img_width ? cfg.img_width : cfg.img_size);
    in.imgs = tu_malloc((size_t)MB * in.npix * sizeof(float));
    in.imgs2 = tu_malloc((size_t)MB * in.npix * sizeof(float));
    tu_fill(in.imgs, (size_t)MB * in.npix, -2, 2);
    tu_fill(in.imgs2, (size_t)MB * in.npix, -2, 2);
    for (int b = 0; b < TB; b++)
        in.labels[b] = (int32_t)(tu_uniform() * CLASSES);

    enum { NRUN = sizeof many_threads / sizeof many_threads[0] + 2 };
    runner runs[NRUN];
    runs[0].threads = 1;
    runs[0].host = NULL;
    for (int i = 1; i < NRUN - 1; i++) {
        runs[i].threads = many_threads[i - 1];
        runs[i].host = NULL;
    }
    runs[NRUN - 1].threads = HOST_THREADS;
    runs[NRUN - 1].host = host;
    record ref;
    memset(&ref, 0, sizeof ref);
    int failures = tu_failures;
    for (int i = 0; i < NRUN; i++) {
        record got;
        memset(&got, 0, sizeof got);
        int tasks_before = atomic_load(&tp->off_thread);
        run_forward(m, &runs[i], &in, &got);
        run_trainer(&cfg, bf16, &runs[i], &in, &got);
        run_classifier(m, which == MANY_TINY, &runs[i], &in, &got);   /* bf16: mixed precision */
        if (runs[i].host)
            CHECK(atomic_load(&tp->off_thread) > tasks_before, "the host pool ran no task on its threads");
        if (i == 0) {
            ref = got;
            continue;
        }
        size_t at = 0;
        const piece *p = rec_diff(&got, &ref, &at);
        CHECK(!p, "%s, %d threads%s: %s differs from one thread at element %zu", mae_kernels_name(),
              runs[i].threads, runs[i].host ? " (reordering host pool)" : "", p ? p->name : "", at);
        rec_free(&got);
    }
    printf("test_threads: %s, %s model (%d patches, D %d, keep %d): forward, embed, 2 training%s steps: "
           "%zu bytes %s at 1", mae_kernels_name(), many_names[which], in.L, in.D, in.keep,
           " and 2 fine-tuning", ref.n, tu_failures == failures ? "bitwise equal" : "compared");
    for (int i = 1; i < NRUN; i++)
        printf(", %d%s", runs[i].threads, runs[i].host ? " (host pool)" : "");
    printf(" threads\n");
    rec_free(&ref);
    free(in.imgs);
    free(in.imgs2);
    mae_model_free(m);
}

static void test_many_threads(void)
{
    static const char *tiers[] = { "scalar", "avx2", "avx512", "neon" };
    char best[16];
    snprintf(best, sizeof best, "%s", mae_kernels_name());
    test_pool tp;
    atomic_init(&tp.runs, 0);
    atomic_init(&tp.tasks_run, 0);
    atomic_init(&tp.off_thread, 0);
    atomic_init(&tp.seed, 4242u);
    mae_thread_pool host;
    CHECK_OK(mae_thread_pool_init(&host, sizeof host));
    host.nthreads = HOST_THREADS;
    host.run = test_pool_run;
    host.user = &tp;
    for (size_t t = 0; t < sizeof tiers / sizeof *tiers; t++) {
#ifdef MANY_TSAN
        if (strcmp(tiers[t], best) != 0) {
            printf("test_threads: kernels %s skipped under ThreadSanitizer (the best, %s, runs)\n", tiers[t], best);
            continue;
        }
#endif
        if (mae_kernels_force(tiers[t]) != MAE_OK) {
            printf("test_threads: kernels %s not available here, skipped\n", tiers[t]);
            continue;
        }
        for (int which = 0; which < MANY_CONFIGS; which++)
            test_many_threads_config(which, &tp, &host);
    }
    CHECK_OK(mae_kernels_force(best));
    release_workers();
}

/* The documented maximum, 256 threads, runs a forward pass (the built-in pool's 255 workers plus
 * the caller) with the one-thread result; 257 is refused (test_misuse checks the context's and
 * test_trainer the trainer's; here the finetuner's, which says the range). */
static void test_max_threads(void)
{
    mae_model *m = create_tiny();
    mae_ctx *c = NULL;
    CHECK(m && mae_ctx_create(m, B, &c) == MAE_OK, "ctx: %s", mae_last_error());
    if (!c) {
        mae_model_free(m);
        return;
    }
    float *imgs = tu_malloc(sizeof(float) * B * npix);
    tu_fill(imgs, (size_t)B * npix, -2, 2);
    outputs ref, o;
    outputs_alloc(&ref);
    outputs_alloc(&o);
    CHECK_OK(mae_ctx_set_threads(c, 1));
    CHECK_OK(forward_seeded(c, imgs, &ref));
    CHECK_OK(mae_ctx_set_threads(c, 256));
    int n = 0;
    CHECK_OK(mae_ctx_get_threads(c, &n));
    CHECK(n >= 1 && n <= 256, "get_threads %d after set_threads(256)", n);
    tu_poison(o.pred, (size_t)B * L * P);
    tu_poison(o.latent, (size_t)B * (1 + keep) * D);
    CHECK_OK(forward_seeded(c, imgs, &o));
    CHECK(outputs_equal(&o, &ref), "256 threads (%d running): results differ from one thread", n);
    mae_ctx_free(c);

    mae_classifier *cl = NULL;
    mae_finetuner *f = NULL;
    CHECK_OK(mae_classifier_create(m, 3, 1, 1, &cl));
    if (cl)
        CHECK_OK(mae_finetuner_create(cl, B, &f));
    if (f) {
        CHECK_OK(mae_finetuner_set_threads(f, 256));
        EXPECT(mae_finetuner_set_threads(f, 257), MAE_ERR_INVALID_ARG);
        CHECK(strstr(mae_last_error(), "257") && strstr(mae_last_error(), "256"),
              "the refusal of 257 threads does not say the range: '%s'", mae_last_error());
    }
    mae_finetuner_free(f);
    mae_classifier_free(cl);
    printf("test_threads: 256 threads (%d running) give the one-thread forward; 257 refused\n", n);
    outputs_free(&ref);
    outputs_free(&o);
    free(imgs);
    mae_model_free(m);
    release_workers();
}

/* ---- the real thing: a process whose address space leaves room for few threads ---------------- */

/* A child process limits its address space to what it uses plus 64 MiB (room for a few thread
 * stacks) and asks for 64 threads: before the built-in pool, libgomp printed "Thread creation
 * failed" and exited the process from inside mae_forward. Now the forward pass runs on the
 * threads that could be created and gives the one-thread result. Not under sanitizers (their
 * shadow memory needs terabytes of address space), nor in an OPENMP=1 build (which still exits). */
static void test_address_space_limit(void)
{
#if defined(_OPENMP)
    printf("test_threads: address-space limit test skipped: OpenMP build (libgomp exits the process)\n");
#elif defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(MAE_TEST_SANITIZED)
    printf("test_threads: address-space limit test skipped under a sanitizer\n");
#elif defined(_WIN32)
    /* no fork and no RLIMIT_AS; refused thread creation is still tested through the pool's hook */
    printf("test_threads: address-space limit test skipped on Windows (no fork, no address-space limit)\n");
#else
    mae_model *m = create_tiny();
    mae_ctx *c = NULL;
    CHECK(m && mae_ctx_create(m, B, &c) == MAE_OK, "ctx: %s", mae_last_error());
    if (!c) {
        mae_model_free(m);
        return;
    }
    float *imgs = tu_malloc(sizeof(float) * B * npix);
    tu_fill(imgs, (size_t)B * npix, -2, 2);
    outputs ref, o;
    outputs_alloc(&ref);
    outputs_alloc(&o);
    CHECK_OK(mae_ctx_set_threads(c, 1));
    CHECK_OK(forward_seeded(c, imgs, &ref));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1)
            _exit(77);
        fclose(f);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)64 << 20);
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(77);
        int n = 0;
        if (mae_ctx_set_threads(c, 64) != MAE_OK || forward_seeded(c, imgs, &o) != MAE_OK ||
            mae_ctx_get_threads(c, &n) != MAE_OK)
            _exit(3);
        printf("test_threads: 64 threads asked under a 64 MiB address-space margin: ran on %d, same result\n", n);
        fflush(stdout);
        _exit(outputs_equal(&o, &ref) && n < 64 ? 0 : 4);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/waitpid failed");
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        printf("test_threads: address-space limit test skipped (no /proc or setrlimit)\n");
    else
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "under an address-space limit the forward pass %s %d (0: ran; 3: failed; 4: differs or all 64 threads made)",
              WIFEXITED(status) ? "exited with" : "was killed by signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    outputs_free(&ref);
    outputs_free(&o);
    free(imgs);
    mae_ctx_free(c);
    mae_model_free(m);
#endif
}

/* L, keep, P, D and npix of the tiny model (set by shared_model when it runs). */
static void tiny_dims(void)
{
    mae_model *m = create_tiny();
    mae_ctx *c = NULL;
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    if (m && mae_ctx_create(m, B, &c) == MAE_OK && mae_ctx_get_dims(c, &L, &keep, &P) == MAE_OK &&
        mae_model_get_config(m, &cfg) == MAE_OK) {
        D = cfg.embed_dim;
        npix = cfg.in_chans * cfg.img_size * cfg.img_size;
    }
    mae_ctx_free(c);
    mae_model_free(m);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(5);
    TU_RUN("concurrent_create", test_concurrent_create());
    if (shared)
        TU_RUN("shared_model", test_shared_model());
    mae_model_free(shared);
    if (!npix)
        tiny_dims();   /* --only skipped shared_model, which sets them */
    if (npix) {
        TU_RUN("pools", test_pools());
        TU_RUN("many_threads", test_many_threads());
        TU_RUN("max_threads", test_max_threads());
        TU_RUN("address_space_limit", test_address_space_limit());
    }
    return tu_finish("test_threads");
}
