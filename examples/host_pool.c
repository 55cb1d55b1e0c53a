/* Running libmae on the host's own threads: a game engine (or any tool) that already has a job
 * system gives libmae a mae_thread_pool, and every parallel loop of the library then runs as jobs
 * of that system instead of on a second pool of threads competing with the engine's.
 *
 * The "engine" here is a small fixed pool of worker threads with a job counter, standing in for
 * your job system: all libmae needs is run(user, ntasks, fn, arg) = "run fn(arg, i) for every i
 * in [0, ntasks), on any threads, and return when all are done". The calling thread helps, as
 * most job systems' wait calls do, so run can also be called from inside one of the engine's
 * jobs without deadlocking.
 *
 *   cc -std=c11 -O2 -Iinclude examples/host_pool.c lib/libmae.a -lm -lpthread -o host_pool
 *   ./host_pool
 *
 * It prints the loss of one forward pass on the engine's threads and on the built-in pool (the
 * same bits: results never depend on the pool or the thread count). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mae.h"

/* ---- a minimal job system ---------------------------------------------------------------------- */

/* One batch of tasks, on the stack of the thread that runs it. */
typedef struct batch {
    mae_pool_task fn;
    void *arg;
    int ntasks;
    atomic_int next;   /* the next task nobody took yet */
    int helpers;       /* workers inside help() for this batch; under the engine's lock */
} batch;

typedef struct engine {
    pthread_mutex_t lock, busy;
    pthread_cond_t wake, done;
    pthread_t workers[8];
    int nworkers, stop;
    batch *current;            /* the batch workers may join, or NULL */
    unsigned generation;       /* bumped per batch, so that a worker joins each batch once */
} engine;

/* Takes tasks of b until none are left. */
static void help(batch *b)
{
    for (;;) {
        int i = atomic_fetch_add(&b->next, 1);
        if (i >= b->ntasks)
            return;
        b->fn(b->arg, i);
    }
}

static void *worker(void *p)
{
    engine *e = p;
    unsigned seen = 0;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        while (!e->stop && (!e->current || e->generation == seen))
            pthread_cond_wait(&e->wake, &e->lock);
        if (e->stop)
            break;
        batch *b = e->current;
        seen = e->generation;
        b->helpers++;
        pthread_mutex_unlock(&e->lock);
        help(b);
        pthread_mutex_lock(&e->lock);
        if (--b->helpers == 0)
            pthread_cond_broadcast(&e->done);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* libmae's entry point into the engine. Batches from several threads run one after another here
 * for brevity; a real job system runs them side by side. */
static void engine_run(void *user, int ntasks, mae_pool_task fn, void *arg)
{
    engine *e = user;
    batch b;
    b.fn = fn;
    b.arg = arg;
    b.ntasks = ntasks;
    b.helpers = 0;
    atomic_init(&b.next, 0);
    pthread_mutex_lock(&e->busy);
    pthread_mutex_lock(&e->lock);
    e->current = &b;
    e->generation++;
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->lock);
    help(&b);   /* the caller works too; when it returns every task has been taken */
    pthread_mutex_lock(&e->lock);
    e->current = NULL;   /* no worker joins any more; wait for those inside */
    while (b.helpers > 0)
        pthread_cond_wait(&e->done, &e->lock);
    pthread_mutex_unlock(&e->lock);
    pthread_mutex_unlock(&e->busy);
}

static int engine_start(engine *e, int nworkers)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->busy, NULL);
    pthread_cond_init(&e->wake, NULL);
    pthread_cond_init(&e->done, NULL);
    for (; e->nworkers < nworkers; e->nworkers++)
        if (pthread_create(&e->workers[e->nworkers], NULL, worker, e) != 0)
            break;   /* fewer workers is fine: the caller helps */
    return e->nworkers;
}

static void engine_stop(engine *e)
{
    pthread_mutex_lock(&e->lock);
    e->stop = 1;
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->lock);
    for (int i = 0; i < e->nworkers; i++)
        pthread_join(e->workers[i], NULL);
}

/* ---- libmae on the engine's threads ----------------------------------------------------------- */

static int fail(const char *what)
{
    fprintf(stderr, "host_pool: %s: %s\n", what, mae_last_error());
    return 1;
}

int main(void)
{
    mae_config cfg;
    mae_model *m = NULL;
    mae_ctx *c = NULL;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK || mae_model_create(&cfg, 0, &m) != MAE_OK)
        return fail("model");
    enum { B = 4 };
    size_t n = (size_t)B * cfg.in_chans * cfg.img_size * cfg.img_size;
    float *imgs = malloc(n * sizeof *imgs);
    if (!imgs)
        return 1;
    for (size_t i = 0; i < n; i++)
        imgs[i] = (float)((i * 7919) % 255) / 127.5f - 1.0f;

    engine e;
    int workers = engine_start(&e, 3);
    mae_thread_pool pool;
    mae_thread_pool_init(&pool, sizeof pool);
    pool.nthreads = workers + 1;   /* the workers and the calling thread */
    pool.run = engine_run;
    pool.user = &e;

    float on_engine = 0, built_in = 0;
    int threads = 0;
    if (mae_ctx_create(m, B, &c) != MAE_OK)
        return fail("context");
    if (mae_ctx_set_thread_pool(c, &pool) != MAE_OK || mae_ctx_get_threads(c, &threads) != MAE_OK)
        return fail("thread pool");
    if (mae_ctx_set_seed(c, 1) != MAE_OK || mae_forward(c, imgs, B, NULL, &on_engine, NULL, NULL, NULL) != MAE_OK)
        return fail("forward on the engine");
    printf("engine's job system, %d threads: loss %.9g\n", threads, (double)on_engine);

    /* the same on the library's own pool */
    if (mae_ctx_set_thread_pool(c, NULL) != MAE_OK || mae_ctx_get_threads(c, &threads) != MAE_OK)
        return fail("built-in pool");
    if (mae_ctx_set_seed(c, 1) != MAE_OK || mae_forward(c, imgs, B, NULL, &built_in, NULL, NULL, NULL) != MAE_OK)
        return fail("forward on the built-in pool");
    printf("built-in pool, %d threads:        loss %.9g (%s)\n", threads, (double)built_in,
           memcmp(&on_engine, &built_in, sizeof built_in) ? "DIFFERS" : "the same bits");

    mae_ctx_free(c);
    engine_stop(&e);
    mae_model_free(m);
    free(imgs);
    return memcmp(&on_engine, &built_in, sizeof built_in) != 0;
}
