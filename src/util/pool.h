/* The built-in thread pool (pool.c, on the platform layer's threads: src/os/os.h).
 * One pool per process, shared by every context and trainer that has no host pool; its workers
 * are created on first need, and a worker the OS refuses is not an error: the work then runs on
 * the workers that exist (the calling thread always takes part). Nothing here exits or prints. */
#ifndef MAE_POOL_H
#define MAE_POOL_H

/* One lane of a parallel run: lanes claim the run's items themselves, so a lane that never
 * starts leaves no item undone as long as one lane runs (the caller's lane 0 always does). */
typedef void (*mae_lane_fn)(void *job, int lane);

/* Makes sure up to `workers` workers exist (at most MAE_POOL_MAX_WORKERS); returns how many
 * do, capped at `workers`. If the OS refuses a thread the pool keeps what it has and does not
 * ask again (until mae_pool_shutdown). */
#define MAE_POOL_MAX_WORKERS 255
int mae_pool_reserve(int workers);

/* Runs fn(job, 0) on the calling thread and offers lanes 1..nlanes-1 to the workers; returns
 * once the caller's lane and every lane a worker started have returned. Lanes no worker took by
 * then are dropped (their items were claimed by the lanes that ran). The job's writes are
 * visible to the caller on return. */
void mae_pool_run(int nlanes, mae_lane_fn fn, void *job);

/* CPUs this process may run on (its affinity mask, else the online CPUs), in [1, 256]. */
int mae_cpu_count(void);

/* Stops and joins every worker (the pool starts again on next need). At library unload, and for
 * tests; no run may be in progress. */
void mae_pool_shutdown(void);

/* Test hook: the next n thread creations succeed and the ones after fail, as when the OS is out
 * of memory or threads; n < 0 turns it off. */
void mae_pool_test_fail_after(int n);

#endif
