/* The built-in thread pool (pool.h), on the platform layer's threads, locks and atomics
 * (src/os/os.h), so that it is the same code on POSIX and Windows.
 *
 * Jobs are posted on a list under one mutex; a worker takes one lane of the oldest job with lanes
 * left, runs it outside the lock and counts it done. The caller runs lane 0 itself, then takes its
 * job off the list and waits only for the lanes workers started: a pool without workers (none
 * could be created, or all are busy with other callers' jobs) never makes a caller wait for a lane
 * that will not come. Idle workers and a waiting caller spin briefly before they sleep, because
 * a forward pass posts a job every few hundred microseconds and a sleeping thread takes tens of
 * microseconds to wake. */
#include "pool.h"
#include "../os/os.h"

#define SPIN_ROUNDS 4000   /* about 20-100 us of pause instructions */

typedef struct pool_job {
    mae_lane_fn fn;
    void *arg;
    int nlanes;
    int next_lane;            /* the next lane to hand out (lane 0 is the caller's); under lock */
    int linked;               /* on the list; under lock */
    int waiting;              /* the caller sleeps on `finished`; under lock */
    mae_atomic_long done;     /* lanes run by workers that have returned */
    struct pool_job *next;
} pool_job;

static struct {
    mae_mutex lock;
    mae_cond work;            /* a job was posted, or stop */
    mae_cond finished;        /* a worker finished a lane of a job whose caller waits */
    pool_job *head, *tail;    /* jobs with lanes left, oldest first */
    int sleepers;             /* workers waiting on `work` */
    int stop;
    int fail_after;           /* test hook: creations left before they fail; -1 off */
    mae_atomic_long nworkers;
    mae_atomic_long refused;  /* the OS refused a thread: do not ask again */
    mae_atomic_long posted;   /* bumped on every post and on stop, for spinning workers */
    mae_thread threads[MAE_POOL_MAX_WORKERS];
} P = { MAE_MUTEX_INIT, MAE_COND_INIT, MAE_COND_INIT, NULL, NULL, 0, 0, -1, { 0 }, { 0 }, { 0 }, { { 0 } } };

static mae_once hooks_once = MAE_ONCE_INIT;

static void unlink_job(pool_job *j)
{
    pool_job **p = &P.head, *prev = NULL;
    while (*p && *p != j) {
        prev = *p;
        p = &(*p)->next;
    }
    if (*p) {
        *p = j->next;
        if (P.tail == j)
            P.tail = prev;
    }
    j->linked = 0;
}

static void worker_main(void *unused)
{
    (void)unused;
    mae_mutex_lock(&P.lock);
    for (;;) {
        pool_job *j = P.head;
        if (j) {
            int lane = j->next_lane++;
            if (j->next_lane == j->nlanes)
                unlink_job(j);   /* every lane handed out */
            mae_mutex_unlock(&P.lock);
            j->fn(j->arg, lane);
            mae_mutex_lock(&P.lock);
            /* the caller returns only after it took the lock once after this increment, so j
             * stays valid until the unlock below */
            mae_atomic_long_add(&j->done, 1);
            if (j->waiting)
                mae_cond_broadcast(&P.finished);
            continue;
        }
        if (P.stop)
            break;
        long seen = mae_atomic_long_load(&P.posted);
        mae_mutex_unlock(&P.lock);
        for (int i = 0; i < SPIN_ROUNDS && mae_atomic_long_load(&P.posted) == seen; i++)
            mae_cpu_pause();
        mae_mutex_lock(&P.lock);
        if (!P.head && !P.stop && mae_atomic_long_load(&P.posted) == seen) {
            P.sleepers++;
            mae_cond_wait(&P.work, &P.lock);
            P.sleepers--;
        }
    }
    mae_mutex_unlock(&P.lock);
}

/* After fork() the child has only the forking thread: forget the workers (they do not exist
 * there) and start over with fresh synchronization objects. */
static void after_fork_child(void)
{
    mae_mutex m = MAE_MUTEX_INIT;
    mae_cond c = MAE_COND_INIT;
    P.lock = m;
    P.work = c;
    P.finished = c;
    P.head = P.tail = NULL;
    P.sleepers = 0;
    P.stop = 0;
    mae_atomic_long_store(&P.nworkers, 0);
    mae_atomic_long_store(&P.refused, 0);
}

static void pool_unload(void);

static void register_hooks(void)
{
    (void)mae_os_atfork_child(after_fork_child);   /* refused: a forked child must not use the pool */
    mae_os_at_unload(pool_unload);
}

/* One more worker; 0 if the OS (or the test hook) refuses. Under lock. Workers block every
 * signal: the host's handlers run on the host's threads only. */
static int start_worker(void)
{
    if (P.fail_after == 0)
        return 0;
    int n = (int)mae_atomic_long_load(&P.nworkers);
    int ok = mae_thread_create_nosig(&P.threads[n], worker_main, NULL) == 0;
    if (ok) {
        mae_atomic_long_store(&P.nworkers, n + 1);
        if (P.fail_after > 0)
            P.fail_after--;
    }
    return ok;
}

int mae_pool_reserve(int workers)
{
    if (workers > MAE_POOL_MAX_WORKERS)
        workers = MAE_POOL_MAX_WORKERS;
    if (workers <= 0)
        return 0;
    int have = (int)mae_atomic_long_load(&P.nworkers);
    if (have >= workers || mae_atomic_long_load(&P.refused))
        return have < workers ? have : workers;
    mae_os_once(&hooks_once, register_hooks);
    mae_mutex_lock(&P.lock);
    while (mae_atomic_long_load(&P.nworkers) < workers && !mae_atomic_long_load(&P.refused))
        if (!start_worker())
            mae_atomic_long_store(&P.refused, 1);
    have = (int)mae_atomic_long_load(&P.nworkers);
    mae_mutex_unlock(&P.lock);
    return have < workers ? have : workers;
}

void mae_pool_run(int nlanes, mae_lane_fn fn, void *job)
{
    if (nlanes <= 1 || mae_atomic_long_load(&P.nworkers) == 0) {
        fn(job, 0);
        return;
    }
    pool_job j = { fn, job, nlanes, 1, 1, 0, { 0 }, NULL };
    mae_atomic_long_init(&j.done, 0);
    mae_mutex_lock(&P.lock);
    if (P.tail)
        P.tail->next = &j;
    else
        P.head = &j;
    P.tail = &j;
    mae_atomic_long_add(&P.posted, 1);
    for (int i = 0; i < P.sleepers && i < nlanes - 1; i++)
        mae_cond_signal(&P.work);
    mae_mutex_unlock(&P.lock);

    fn(job, 0);

    mae_mutex_lock(&P.lock);
    if (j.linked)
        unlink_job(&j);
    int started = j.next_lane - 1;   /* lanes workers took; no more can start now */
    mae_mutex_unlock(&P.lock);
    for (int i = 0; i < SPIN_ROUNDS && mae_atomic_long_load(&j.done) < started; i++)
        mae_cpu_pause();
    mae_mutex_lock(&P.lock);
    while (mae_atomic_long_load(&j.done) < started) {
        j.waiting = 1;
        mae_cond_wait(&P.finished, &P.lock);
    }
    mae_mutex_unlock(&P.lock);
}

int mae_cpu_count(void)
{
    int n = mae_os_ncpus_usable();
    return n < 1 ? 1 : n > 256 ? 256 : n;
}

void mae_pool_shutdown(void)
{
    mae_mutex_lock(&P.lock);
    int n = (int)mae_atomic_long_load(&P.nworkers);
    P.stop = 1;
    mae_atomic_long_add(&P.posted, 1);
    mae_cond_broadcast(&P.work);
    mae_mutex_unlock(&P.lock);
    for (int i = 0; i < n; i++)
        mae_thread_join(&P.threads[i]);
    mae_mutex_lock(&P.lock);
    mae_atomic_long_store(&P.nworkers, 0);
    mae_atomic_long_store(&P.refused, 0);
    P.stop = 0;
    mae_mutex_unlock(&P.lock);
}

void mae_pool_test_fail_after(int n)
{
    mae_mutex_lock(&P.lock);
    P.fail_after = n < 0 ? -1 : n;
    mae_mutex_unlock(&P.lock);
}

/* Workers must be gone before the library's code is unmapped (dlclose) or the process's
 * statics are torn down: registered with mae_os_at_unload when the first worker is asked for. */
static void pool_unload(void)
{
    if (mae_atomic_long_load(&P.nworkers) > 0)
        mae_pool_shutdown();
}
