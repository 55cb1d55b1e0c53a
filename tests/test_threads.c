/* Threads: several threads create models at the same time (the one-time kernel selection), then
 * many contexts run forward passes on one shared model at once, each result bitwise equal to a
 * single-threaded run of the same job; error messages stay per thread. Then the pools: a host
 * pool on its own pthreads that reorders and delays tasks, and one that runs everything on the
 * calling thread, give bitwise the results of the built-in pool and of one thread (forward and a
 * training step); the built-in pool, when the OS refuses threads (a test hook), runs on fewer
 * threads with the same results. tests/check_tsan.sh runs this under ThreadSanitizer. */
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

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(5);
    TU_RUN("concurrent_create", test_concurrent_create());
    if (shared)
        TU_RUN("shared_model", test_shared_model());
    mae_model_free(shared);
    if (npix) {
        TU_RUN("pools", test_pools());
        TU_RUN("address_space_limit", test_address_space_limit());
    }
    return tu_finish("test_threads");
}
