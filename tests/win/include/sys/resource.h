/* Windows has no resource limits: getrlimit fails, and the tests that shrink RLIMIT_FSIZE to
 * provoke a failed write skip that part; getrusage reports clock() as user time (tests/check_windows.sh builds with this folder first on
 * the include path). */
#ifndef MAE_TEST_WIN_RESOURCE_H
#define MAE_TEST_WIN_RESOURCE_H
#include <errno.h>
#define RLIMIT_FSIZE 1
#define SIGXFSZ 25
typedef unsigned long long rlim_t;
struct rlimit { rlim_t rlim_cur, rlim_max; };
static inline int getrlimit(int r, struct rlimit *l) { (void)r; (void)l; errno = ENOSYS; return -1; }
static inline int setrlimit(int r, const struct rlimit *l) { (void)r; (void)l; errno = ENOSYS; return -1; }

/* getrusage for the tests that time themselves: the process's CPU time as clock() counts it
 * (the C runtime's clock() on Windows is the time since the process started, an upper bound). */
#include <time.h>
#define RUSAGE_SELF 0
struct rusage { struct { long tv_sec, tv_usec; } ru_utime, ru_stime; };
static inline int getrusage(int who, struct rusage *r)
{
    (void)who;
    double t = (double)clock() / CLOCKS_PER_SEC;
    r->ru_utime.tv_sec = (long)t;
    r->ru_utime.tv_usec = (long)((t - (double)(long)t) * 1e6);
    r->ru_stime.tv_sec = r->ru_stime.tv_usec = 0;
    return 0;
}
#endif
