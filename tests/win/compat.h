/* Forced into every test built for Windows (tests/check_windows.sh: -include tests/win/compat.h)
 * so that the POSIX tests compile with MinGW unchanged: the two-argument mkdir, mkdtemp, and a
 * rename that replaces its target. Test code only; the library itself goes through src/os. */
#ifndef MAE_TEST_WIN_COMPAT_H
#define MAE_TEST_WIN_COMPAT_H
#include <direct.h>
#include <errno.h>
#include <io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int compat_mkdir(const char *path, int mode)
{
    (void)mode;
    return _mkdir(path);
}
#define mkdir(path, mode) compat_mkdir(path, mode)

/* mkdtemp: the XXXXXX replaced until a new directory is made. */
static inline char *compat_mkdtemp(char *tmpl)
{
    size_t n = strlen(tmpl);
    if (n < 6 || strcmp(tmpl + n - 6, "XXXXXX") != 0) {
        errno = EINVAL;
        return NULL;
    }
    static unsigned counter;
    for (int attempt = 0; attempt < 1000; attempt++) {
        snprintf(tmpl + n - 6, 7, "%06u", (unsigned)(_getpid() * 7919u + counter++) % 1000000u);
        if (_mkdir(tmpl) == 0)
            return tmpl;
        if (errno != EEXIST)
            return NULL;
    }
    return NULL;
}
#define mkdtemp compat_mkdtemp

/* rename over an existing file: POSIX replaces it, the C runtime's rename refuses (EEXIST). The
 * tests rename their own files, nobody else's: removing the target first is enough here (the
 * library replaces atomically through src/os). */
static inline int compat_rename(const char *from, const char *to)
{
    if (rename(from, to) == 0)
        return 0;
    if (errno != EEXIST && errno != EACCES)
        return -1;
    remove(to);
    return rename(from, to);
}
#define rename compat_rename

#endif
