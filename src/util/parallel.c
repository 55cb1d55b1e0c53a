/* The one place that runs loops in parallel. Tasks write disjoint outputs and each task's work
 * does not depend on which thread runs it, so results are identical for any thread count. */
#include "util.h"
#ifdef _OPENMP
#include <omp.h>
#endif

int mae_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

void mae_parallel_for(int nthreads, int ntasks, mae_task_fn fn, void *arg)
{
    if (ntasks <= 0)
        return;
    if (nthreads > ntasks)
        nthreads = ntasks;
#ifdef _OPENMP
    if (nthreads > 1) {
#pragma omp parallel num_threads(nthreads)
        {
            int t = omp_get_thread_num();
            int n = omp_get_num_threads();
#pragma omp for schedule(static)
            for (int i = 0; i < ntasks; i++)
                fn(arg, i, t < n ? t : 0);
        }
        return;
    }
#endif
    (void)nthreads;
    for (int i = 0; i < ntasks; i++)
        fn(arg, i, 0);
}
