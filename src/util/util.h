/* Internal helpers shared by every part of the library: errors, memory, threads, RNG. */
#ifndef MAE_UTIL_H
#define MAE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include "mae.h"
#include "../os/os.h"

/* Record a formatted message for mae_last_error() and return s, so that callers can write
 * `return mae_fail(MAE_ERR_SHAPE, "...", ...);`. */
mae_status mae_fail(mae_status s, const char *fmt, ...) MAE_PRINTF(2, 3);
/* The house rule for messages: the innermost layer states the problem, the public function puts
 * its name in front once. This records "<prefix>: <the current message>" and returns s, the
 * prefix formatted from fmt (e.g. "mae_ctx_create: max_batch %d"); a message that already
 * starts with "<prefix>:" is left as it is. */
mae_status mae_fail_wrap(mae_status s, const char *fmt, ...) MAE_PRINTF(2, 3);

/* All library memory goes through these: 64-byte aligned, through the user's allocator, and
 * freed by the allocator that made it. mae_alloc returns NULL on failure or size 0 overflow. */
void *mae_alloc(size_t size);
void *mae_calloc(size_t count, size_t size);   /* zeroed; NULL if count*size overflows */
void  mae_free(void *p);

/* a*b, a+b with overflow detection: return 0 and leave *out alone on overflow. */
int mae_mul_size(size_t a, size_t b, size_t *out);
int mae_add_size(size_t a, size_t b, size_t *out);

/* The smaller of two ints; n rounded up to a multiple of m; p rounded up to the next 64-byte
 * boundary (where the kernels lay their blocks out in a thread's scratch, so that each starts on
 * a cache line). */
static inline int mae_min_i(int a, int b) { return a < b ? a : b; }
static inline size_t mae_round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
static inline float *mae_align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* Where a kernel may run and the per-thread scratch it may use. Thread t of a parallel loop owns
 * scratch + t * scratch_per_thread (floats). */
typedef struct mae_exec {
    int    nthreads;
    float *scratch;
    size_t scratch_per_thread;
    const struct mae_thread_pool *host;   /* the host's pool, or NULL: the built-in one */
} mae_exec;

/* Run fn(arg, task, thread) for task in [0, ntasks) on up to ex->nthreads threads (the context's
 * host pool, else the built-in pool or OpenMP; parallel.c). Tasks must write disjoint outputs;
 * the result then does not depend on the thread count or the pool. thread is in
 * [0, ex->nthreads): no two tasks running at once get the same one (per-thread scratch). ex may
 * be NULL: one thread. The only parallel loop. */
typedef void (*mae_task_fn)(void *arg, int task, int thread);
void mae_parallel_for(const struct mae_exec *ex, int ntasks, mae_task_fn fn, void *arg);
/* The same, the loop named by its op kind ("linear", "attention", ...) for the per-op profile
 * and the schedule simulation (profile.c); mae_parallel_for names it "other". */
void mae_parallel_for_op(const struct mae_exec *ex, const char *op, int ntasks, mae_task_fn fn,
                         void *arg);

/* Cancelling inside the big products (the host's abort hook, mae_ctx_set_abort). A call that
 * has an abort callback opens a scope on its thread around the work it may cut short (the block
 * stacks of a forward pass, never a backward pass, which adds into gradients): from then on
 *   - every parallel loop started on that thread passes the scope to its lanes (parallel.c);
 *   - a lane checks the scope before each item it claims, and the matrix products (gemm.c)
 *     before each macro-tile (mae_cancel_tile);
 *   - a check on the thread that opened the scope asks the callback (so it is only ever called
 *     on the caller's thread, as mae.h promises); when it says stop, a flag is set that every
 *     lane reads (one atomic load per check) and the lanes stop at their next check: each lane
 *     finishes at most the tile it is in.
 * The outputs of a stopped loop are unspecified; the caller tests mae_cancel_stopped after its
 * unit of work and returns MAE_ERR_ABORTED. No scope open: a check is one thread-local load. */
typedef struct mae_cancel {
    int (*poll)(void *user);      /* the host's abort callback */
    void *user;
    mae_atomic_long stop;         /* the callback said stop */
    mae_atomic_long tiles;        /* macro-tiles begun in the scope (tests bound the latency) */
    long tiles_at_stop;           /* tiles begun when stop was set; owner thread only */
    struct mae_cancel *prev;      /* the scope this thread had before (restored by end) */
    int prev_owner;
} mae_cancel;
void mae_cancel_begin(mae_cancel *c, int (*poll)(void *user), void *user);
void mae_cancel_end(mae_cancel *c);   /* the thread's previous scope again */
int  mae_cancel_stopped(mae_cancel *c);
/* The check before a macro-tile of a product: 1 = stop (skip the rest of the task). */
int  mae_cancel_tile(void);

/* Per-op measurement (profile.c, mae.h section 3). mae_measure_mode is 0 normally, so a task
 * pays one branch: `if (mae_measure_mode) { mae_task_work(thread, flops, moved); if
 * (mae_measure_mode == MAE_MEASURE_SIMULATE) return; }` before its real work. flops: the
 * arithmetic the task does (a micro-kernel call counts its whole padded tile); moved: floats it
 * packs or streams once. */
extern int mae_measure_mode;
void mae_task_work(int thread, double flops, double moved);
/* Internal to parallel.c and profile.c: the loop itself, and a loop while a mode is on. */
void mae_parallel_run(const struct mae_exec *ex, int ntasks, mae_task_fn fn, void *arg);
void mae_measure_loop(const struct mae_exec *ex, int nthreads, const char *op, int ntasks,
                      mae_task_fn fn, void *arg);   /* nthreads: ex's, at least 1 */
int  mae_max_threads(void);   /* the CPUs this process may use: the default thread count */
/* The threads ex's loops will really use: its count, or fewer when the built-in pool could not
 * create its workers (it creates them now if they are missing). */
int  mae_threads_effective(const mae_exec *ex);
/* (Re)allocates ex's per-thread scratch: per floats for each of n threads, and sets nthreads to
 * n. On failure ex is unchanged (the old scratch stays) and the message says why. */
mae_status mae_exec_set_scratch(mae_exec *ex, size_t per, int n);
/* A caller's mae_thread_pool, size-checked and validated (run set, nthreads in [1, 256]). */
mae_status mae_thread_pool_read(const char *fn, const mae_thread_pool *in, mae_thread_pool *out);
/* The pool mae_set_thread_pool set for new contexts and trainers, or NULL (the built-in one). */
const mae_thread_pool *mae_thread_pool_default(void);

/* MT19937 exactly as PyTorch's CPU generator: seeded with (uint32)seed. */
typedef struct mae_rng {
    uint32_t mt[624];
    int idx;
} mae_rng;
void     mae_rng_seed(mae_rng *r, uint64_t seed);
uint32_t mae_rng_u32(mae_rng *r);
float    mae_rng_uniform(mae_rng *r);            /* torch.rand: (u32 & 0xFFFFFF) * 2^-24 */
double   mae_rng_uniform_double(mae_rng *r);     /* 53-bit uniform in [0,1), for initialization */
double   mae_rng_normal(mae_rng *r);             /* standard normal (Box-Muller) */

#endif
