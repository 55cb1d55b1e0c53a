/* The built-in thread pool on POSIX threads (pool.h). Every OS call of the library's threading is
 * in this file, so that another platform needs another copy of this file only.
 *
 * Jobs are posted on a list under one mutex; a worker takes one lane of the oldest job with lanes
 * left, runs it outside the lock and counts it done. The caller runs lane 0 itself, then takes its
 * job off the list and waits only for the lanes workers started: a pool without workers (none
 * could be created, or all are busy with other callers' jobs) never makes a caller wait for a lane
 * that will not come. Idle workers and a waiting caller spin briefly before they sleep, because
 * a forward pass posts a job every few hundred microseconds and a sleeping thread takes tens of
 * microseconds to wake. */
#define _GNU_SOURCE 1   /* sched_getaffinity, CPU_COUNT */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>
#include "pool.h"

#define SPIN_ROUNDS 4000   /* about 20-100 us of pause instructions */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct pool_job {
    mae_lane_fn fn;
    void *arg;
    int nlanes;
    int next_lane;            /* the next lane to hand out (lane 0 is the caller's); under lock */
    int linked;               /* on the list; under lock */
    int waiting;              /* the caller sleeps on `finished`; under lock */
    atomic_int done;          /* lanes run by workers that have returned */
    struct pool_job *next;
} pool_job;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;      /* a job was posted, or stop */
    pthread_cond_t finished;  /* a worker finished a lane of a job whose caller waits */
    pool_job *head, *tail;    /* jobs with lanes left, oldest first */
    int sleepers;             /* workers waiting on `work` */
    int stop;
    int fail_after;           /* test hook: creations left before they fail; -1 off */
    atomic_int nworkers;
    atomic_int refused;       /* the OS refused a thread: do not ask again */
    atomic_uint posted;       /* bumped on every post and on stop, for spinning workers */
    pthread_t threads[MAE_POOL_MAX_WORKERS];
} P = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
        NULL, NULL, 0, 0, -1, 0, 0, 0, { 0 } };

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

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

static void *worker_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&P.lock);
    for (;;) {
        pool_job *j = P.head;
        if (j) {
            int lane = j->next_lane++;
            if (j->next_lane == j->nlanes)
                unlink_job(j);   /* every lane handed out */
            pthread_mutex_unlock(&P.lock);
            j->fn(j->arg, lane);
            pthread_mutex_lock(&P.lock);
            /* the caller returns only after it took the lock once after this increment, so j
             * stays valid until the unlock below */
            atomic_fetch_add_explicit(&j->done, 1, memory_order_release);
            if (j->waiting)
                pthread_cond_broadcast(&P.finished);
            continue;
        }
        if (P.stop)
            break;
        unsigned seen = atomic_load_explicit(&P.posted, memory_order_relaxed);
        pthread_mutex_unlock(&P.lock);
        for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&P.posted, memory_order_relaxed) == seen; i++)
            cpu_relax();
        pthread_mutex_lock(&P.lock);
        if (!P.head && !P.stop && atomic_load_explicit(&P.posted, memory_order_relaxed) == seen) {
            P.sleepers++;
            pthread_cond_wait(&P.work, &P.lock);
            P.sleepers--;
        }
    }
    pthread_mutex_unlock(&P.lock);
    return NULL;
}

/* After fork() the child has only the forking thread: forget the workers (they do not exist
 * there) and start over with fresh synchronization objects. */
static void after_fork_child(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    P.lock = m;
    P.work = c;
    P.finished = c;
    P.head = P.tail = NULL;
    P.sleepers = 0;
    P.stop = 0;
    atomic_store(&P.nworkers, 0);
    atomic_store(&P.refused, 0);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* One more worker; 0 if the OS (or the test hook) refuses. Under lock. Workers block every
 * signal: the host's handlers run on the host's threads only. */
static int start_worker(void)
{
    if (P.fail_after == 0)
        return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int n = atomic_load(&P.nworkers);
    int ok = pthread_create(&P.threads[n], NULL, worker_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ok) {
        atomic_store(&P.nworkers, n + 1);
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
    int have = atomic_load_explicit(&P.nworkers, memory_order_acquire);
    if (have >= workers || atomic_load_explicit(&P.refused, memory_order_relaxed))
        return have < workers ? have : workers;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&P.lock);
    while (atomic_load(&P.nworkers) < workers && !atomic_load(&P.refused))
        if (!start_worker())
            atomic_store(&P.refused, 1);
    have = atomic_load(&P.nworkers);
    pthread_mutex_unlock(&P.lock);
    return have < workers ? have : workers;
}

void mae_pool_run(int nlanes, mae_lane_fn fn, void *job)
{
    if (nlanes <= 1 || atomic_load_explicit(&P.nworkers, memory_order_acquire) == 0) {
        fn(job, 0);
        return;
    }
    pool_job j = { fn, job, nlanes, 1, 1, 0, 0, NULL };
    pthread_mutex_lock(&P.lock);
    if (P.tail)
        P.tail->next = &j;
    else
        P.head = &j;
    P.tail = &j;
    atomic_fetch_add_explicit(&P.posted, 1, memory_order_relaxed);
    for (int i = 0; i < P.sleepers && i < nlanes - 1; i++)
        pthread_cond_signal(&P.work);
    pthread_mutex_unlock(&P.lock);

    fn(job, 0);

    pthread_mutex_lock(&P.lock);
    if (j.linked)
        unlink_job(&j);
    int started = j.next_lane - 1;   /* lanes workers took; no more can start now */
    pthread_mutex_unlock(&P.lock);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&j.done, memory_order_acquire) < started; i++)
        cpu_relax();
    pthread_mutex_lock(&P.lock);
    while (atomic_load_explicit(&j.done, memory_order_acquire) < started) {
        j.waiting = 1;
        pthread_cond_wait(&P.finished, &P.lock);
    }
    pthread_mutex_unlock(&P.lock);
}

int mae_cpu_count(void)
{
    int n = 0;
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
#endif
    if (n < 1) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c < 1 ? 1 : c > 256 ? 256 : (int)c;
    }
    return n > 256 ? 256 : n;
}

void mae_pool_shutdown(void)
{
    pthread_mutex_lock(&P.lock);
    int n = atomic_load(&P.nworkers);
    P.stop = 1;
    atomic_fetch_add(&P.posted, 1);
    pthread_cond_broadcast(&P.work);
    pthread_mutex_unlock(&P.lock);
    for (int i = 0; i < n; i++)
        pthread_join(P.threads[i], NULL);
    pthread_mutex_lock(&P.lock);
    atomic_store(&P.nworkers, 0);
    atomic_store(&P.refused, 0);
    P.stop = 0;
    pthread_mutex_unlock(&P.lock);
}

void mae_pool_test_fail_after(int n)
{
    pthread_mutex_lock(&P.lock);
    P.fail_after = n < 0 ? -1 : n;
    pthread_mutex_unlock(&P.lock);
}

/* Workers must be gone before the library's code is unmapped (dlclose) or the process's
 * statics are torn down. */
#if defined(__GNUC__)
__attribute__((destructor)) static void pool_unload(void)
{
    if (atomic_load(&P.nworkers) > 0)
        mae_pool_shutdown();
}
#endif
