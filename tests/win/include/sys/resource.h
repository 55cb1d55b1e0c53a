/* Windows has no resource limits: getrlimit fails, and the tests that shrink RLIMIT_FSIZE to
 * provoke a failed write skip that part (tests/check_windows.sh builds with this folder first on
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
#endif
