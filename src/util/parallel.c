/* The one place that runs loops in parallel. Tasks write disjoint outputs and each task's work
 * does not depend on which thread runs it, so results are identical for any thread count and
 * any pool.
 *
 * A loop of ntasks items runs as `lanes` = min(threads, ntasks) lanes: lane k owns scratch slot k
 * (mae_exec.scratch + k * scratch_per_thread) and claims items from a shared counter until none
 * are left. The lanes go to the context's host pool (mae_thread_pool: the host's job system runs
 * them as its tasks), else to the built-in pool (pool.c), or to OpenMP in an OPENMP=1 build. A
 * slot is never used by two lanes at once whichever threads run them, and a lane that runs late
 * or never just finds the items taken by the others. */
#include "util.h"
#include "sized.h"
#include "pool.h"
#include "../os/os.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* The same count with and without OpenMP: the CPUs of the process's affinity mask. */
int mae_max_threads(void)
{
    return mae_cpu_count();
}

/* ---- cancelling (util.h, mae_cancel) ------------------------------------------------------- */

/* The scope the work on this thread belongs to, and whether this thread opened it (only that
 * thread may call the host's callback). Set by mae_cancel_begin on the caller's thread and by
 * run_lane on the threads that run its lanes. */
static MAE_THREAD_LOCAL mae_cancel *cur_scope;
static MAE_THREAD_LOCAL int cur_owner;

void mae_cancel_begin(mae_cancel *c, int (*poll)(void *user), void *user)
{
    c->poll = poll;
    c->user = user;
    mae_atomic_long_init(&c->stop, 0);
    mae_atomic_long_init(&c->tiles, 0);
    c->tiles_at_stop = 0;
    c->prev = cur_scope;
    c->prev_owner = cur_owner;
    cur_scope = c;
    cur_owner = 1;
}

void mae_cancel_end(mae_cancel *c)
{
    cur_scope = c->prev;
    cur_owner = c->prev_owner;
}

int mae_cancel_stopped(mae_cancel *c)
{
    return mae_atomic_long_load(&c->stop) != 0;
}

/* 1 when the scope is stopped; on the owner's thread the callback is asked first. The stop is
 * set and the tiles counted with read-modify-writes (sequentially consistent), so that a lane
 * whose tile is not in tiles_at_stop sees the stop at its next check: after the stop, each lane
 * begins at most one more tile. */
static int asked_to_stop(mae_cancel *c)
{
    if (mae_atomic_long_load(&c->stop))
        return 1;
    if (!cur_owner || !c->poll(c->user))
        return 0;
    mae_atomic_long_add(&c->stop, 1);
    c->tiles_at_stop = mae_atomic_long_add(&c->tiles, 0);
    return 1;
}

int mae_cancel_tile(void)
{
    mae_cancel *c = cur_scope;
    if (!c)
        return 0;
    if (asked_to_stop(c))
        return 1;
    mae_atomic_long_add(&c->tiles, 1);
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------------ */

typedef struct lane_job {
    mae_task_fn fn;
    void *arg;
    int ntasks;
    mae_atomic_long next;   /* the next unclaimed item */
    mae_cancel *scope;      /* the caller's scope, or NULL */
} lane_job;

static void run_lane(void *p, int lane)
{
    lane_job *j = p;
    mae_cancel *was = cur_scope;
    int was_owner = cur_owner;
    if (was != j->scope) {   /* another thread (the caller's keeps its scope and ownership) */
        cur_scope = j->scope;
        cur_owner = 0;
    }
    for (;;) {
        if (j->scope && asked_to_stop(j->scope))
            break;
        long i = mae_atomic_long_add(&j->next, 1);
        if (i >= j->ntasks)
            break;
        j->fn(j->arg, (int)i, lane);
    }
    cur_scope = was;
    cur_owner = was_owner;
}

void mae_parallel_run(const mae_exec *ex, int ntasks, mae_task_fn fn, void *arg)
{
    if (ntasks <= 0)
        return;
    int lanes = ex && ex->nthreads > 1 ? ex->nthreads : 1;
    if (lanes > ntasks)
        lanes = ntasks;
    if (lanes == 1) {
        for (int i = 0; i < ntasks && !(cur_scope && asked_to_stop(cur_scope)); i++)
            fn(arg, i, 0);
        return;
    }
    lane_job j = { fn, arg, ntasks, { 0 }, cur_scope };
    mae_atomic_long_init(&j.next, 0);
    if (ex->host) {
        ex->host->run(ex->host->user, lanes, run_lane, &j);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(lanes)
    run_lane(&j, omp_get_thread_num());
#else
    mae_pool_run(1 + mae_pool_reserve(lanes - 1), run_lane, &j);
#endif
}

void mae_parallel_for_op(const mae_exec *ex, const char *op, int ntasks, mae_task_fn fn, void *arg)
{
    if (mae_measure_mode) {   /* the profile or the schedule simulation (profile.c) */
        if (ntasks > 0)
            mae_measure_loop(ex, ex && ex->nthreads > 1 ? ex->nthreads : 1, op, ntasks, fn, arg);
        return;
    }
    mae_parallel_run(ex, ntasks, fn, arg);
}

void mae_parallel_for(const mae_exec *ex, int ntasks, mae_task_fn fn, void *arg)
{
    mae_parallel_for_op(ex, "other", ntasks, fn, arg);
}

mae_status mae_exec_set_scratch(mae_exec *ex, size_t per, int n)
{
    size_t total;
    if (!mae_mul_size(per, (size_t)n, &total) || !mae_mul_size(total, sizeof(float), &total))
        return mae_fail(MAE_ERR_NOMEM, "the scratch for %d threads overflows", n);
    float *s = total ? mae_alloc(total) : NULL;
    if (total && !s)
        return mae_fail(MAE_ERR_NOMEM, "cannot allocate %zu bytes of scratch for %d threads", total, n);
    mae_free(ex->scratch);
    ex->scratch = s;
    ex->scratch_per_thread = per;
    ex->nthreads = n;
    return MAE_OK;
}

int mae_threads_effective(const mae_exec *ex)
{
    int n = ex->nthreads > 1 ? ex->nthreads : 1;
#ifndef _OPENMP
    if (!ex->host)
        n = 1 + mae_pool_reserve(n - 1);
#endif
    return n;
}

/* ---- host pools ---------------------------------------------------------------------------- */

#define POOL_V1_SIZE (offsetof(mae_thread_pool, user) + sizeof(void *))

static mae_thread_pool default_pool;   /* struct_size 0: none (the built-in pool) */

MAE_API mae_status mae_thread_pool_init(mae_thread_pool *pool, size_t struct_size)
{
    if (!pool)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_thread_pool_init: pool is NULL");
    mae_thread_pool full = { sizeof full, 1, NULL, NULL };
    return mae_sized_write("mae_thread_pool_init", pool, struct_size, &full, sizeof full, POOL_V1_SIZE);
}

mae_status mae_thread_pool_read(const char *fn, const mae_thread_pool *in, mae_thread_pool *out)
{
    mae_thread_pool full = { sizeof full, 1, NULL, NULL };
    mae_status s = mae_sized_read(fn, in, &full, sizeof full, POOL_V1_SIZE);
    if (s != MAE_OK)
        return s;
    if (!full.run)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the pool's run function is NULL", fn);
    if (full.nthreads < 1 || full.nthreads > 256)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the pool's nthreads %d is outside [1, 256]", fn, (int)full.nthreads);
    *out = full;
    return MAE_OK;
}

MAE_API mae_status mae_set_thread_pool(const mae_thread_pool *pool)
{
    if (!pool) {
        default_pool.struct_size = 0;
        return MAE_OK;
    }
    mae_thread_pool p;
    mae_status s = mae_thread_pool_read("mae_set_thread_pool", pool, &p);
    if (s == MAE_OK)
        default_pool = p;
    return s;
}

const mae_thread_pool *mae_thread_pool_default(void)
{
    return default_pool.struct_size ? &default_pool : NULL;
}
