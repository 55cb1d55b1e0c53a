/* Per-op measurement (mae.h section 3, issue 17): the per-op profile and the schedule
 * simulation. Both hang off the one parallel loop: mae_parallel_for_op hands each loop here while
 * a mode is on, with its op kind; the tasks report their work through mae_task_work.
 *
 * The simulation does not model the partitions: it runs the library's own task functions, which
 * make their partition for the context's thread count exactly as in a real run and then, instead
 * of computing, report what they would do. The tasks are then dealt to T lanes as the built-in
 * pool deals them: lanes claim the next item from a shared counter, so with lanes of equal speed
 * the next task goes to the lane that is free first (the lowest such lane on a tie). */
#include <string.h>
#include "util.h"
#include "../os/os.h"

int mae_measure_mode;

enum { MAX_KINDS = 32, MAX_LANES = 256, PAD = 8 };   /* PAD: one 64-byte line per lane */

typedef struct kind {
    const char *name;
    int loops;
    double seconds, flops, work, span;
} kind;

static kind kinds[MAX_KINDS];
static int nkinds;
/* per lane: [0] flops, [1] floats moved, [2] whether the task reported */
static double lanes[MAX_LANES * PAD];

void mae_task_work(int thread, double flops, double moved)
{
    double *l = &lanes[(size_t)thread * PAD];
    l[0] += flops;
    l[1] += moved;
    l[2] = 1.0;
}

static kind *find(const char *op)
{
    for (int i = 0; i < nkinds; i++)
        if (strcmp(kinds[i].name, op) == 0)
            return &kinds[i];
    if (nkinds == MAX_KINDS)
        return &kinds[MAX_KINDS - 1];   /* never with the library's own names */
    kinds[nkinds].name = op;
    return &kinds[nkinds++];
}

static double now(void)
{
    return mae_os_seconds();
}

/* Runs the loop for real and adds its time and the flops its tasks reported. */
static void profile_loop(const struct mae_exec *ex, int nt, kind *k, int ntasks, mae_task_fn fn, void *arg)
{
    memset(lanes, 0, (size_t)(nt < MAX_LANES ? nt : MAX_LANES) * PAD * sizeof *lanes);
    double t0 = now();
    mae_parallel_run(ex, ntasks, fn, arg);
    k->seconds += now() - t0;
    for (int i = 0; i < nt && i < MAX_LANES; i++)
        k->flops += lanes[(size_t)i * PAD];
}

/* Packing or streaming a float costs about as much as 8 flops of the micro-kernel (a packed
 * float is a load and a store, often a transpose; the AVX-512 kernel does 64 flops a cycle). */
#define MOVE_COST 8.0

static void simulate_loop(int T, kind *k, int ntasks, mae_task_fn fn, void *arg)
{
    int nl = T < ntasks ? T : ntasks;
    double finish[MAX_LANES] = { 0 }, total = 0.0, span = 0.0;
    for (int i = 0; i < ntasks; i++) {
        memset(lanes, 0, PAD * sizeof *lanes);
        fn(arg, i, 0);
        double w = lanes[0] + MOVE_COST * lanes[1];
        int best = 0;
        for (int l = 1; l < nl; l++)
            if (finish[l] < finish[best])
                best = l;
        finish[best] += w;
        total += w;
    }
    for (int l = 0; l < nl; l++)
        span = finish[l] > span ? finish[l] : span;
    k->work += total;
    k->span += span;
    k->flops += total;
}

void mae_measure_loop(const struct mae_exec *ex, int nthreads, const char *op, int ntasks,
                      mae_task_fn fn, void *arg)
{
    kind *k = find(op);
    k->loops++;
    if (mae_measure_mode == MAE_MEASURE_SIMULATE)
        simulate_loop(nthreads, k, ntasks, fn, arg);
    else
        profile_loop(ex, nthreads, k, ntasks, fn, arg);
}

MAE_API mae_status mae_measure_set(int mode)
{
    if (mode != MAE_MEASURE_OFF && mode != MAE_MEASURE_PROFILE && mode != MAE_MEASURE_SIMULATE)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_measure_set: mode %d is not MAE_MEASURE_OFF, _PROFILE or _SIMULATE", mode);
    memset(kinds, 0, sizeof kinds);
    nkinds = 0;
    mae_measure_mode = mode;
    return MAE_OK;
}

MAE_API mae_status mae_measure_count(int *count)
{
    if (!count)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_measure_count: count is NULL");
    *count = nkinds;
    return MAE_OK;
}

MAE_API mae_status mae_measure_op(int i, const char **name, int *loops, double *seconds,
                                  double *flops, double *work, double *span)
{
    if (i < 0 || i >= nkinds)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_measure_op: kind %d is outside [0, %d)", i, nkinds);
    const kind *k = &kinds[i];
    if (name) *name = k->name;
    if (loops) *loops = k->loops;
    if (seconds) *seconds = k->seconds;
    if (flops) *flops = k->flops;
    if (work) *work = k->work;
    if (span) *span = k->span;
    return MAE_OK;
}
