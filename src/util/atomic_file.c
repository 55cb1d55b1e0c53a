/* The atomic writer (atomic_file.h); the platform layer does the replace-on-rename and the
 * flushes, which differ between POSIX and Windows. */
#include <errno.h>
#include <string.h>
#include "atomic_file.h"
#include "util.h"
#include "../os/os.h"

/* A new file next to path, created exclusively so that concurrent writers never share one;
 * NULL with errno set on failure. */
static FILE *create_temp(const char *path, char *tmp, size_t cap)
{
    long pid = mae_os_getpid();
    for (int attempt = 0; attempt < 1000; attempt++) {
        snprintf(tmp, cap, "%s.tmp.%ld.%d", path, pid, attempt);
        FILE *f = mae_os_create_excl(tmp);
        if (f || errno != EEXIST)
            return f;
    }
    return NULL;
}

mae_status mae_atomic_write(const char *fn, const char *path, mae_write_fn write, void *arg)
{
    const char *sep = fn ? ": " : "";
    fn = fn ? fn : "";
    if (!path || !path[0] || !write)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s%s%s", fn, sep, !write ? "no writer" : "the path is NULL or empty");
    size_t cap = strlen(path) + 48;
    char *tmp = mae_alloc(cap), err[128];
    if (!tmp)
        return mae_fail(MAE_ERR_NOMEM, "%s%sout of memory for writing '%s'", fn, sep, path);
    FILE *f = create_temp(path, tmp, cap);
    if (!f) {
        mae_status s = mae_fail(MAE_ERR_IO, "%s%s'%s': cannot create a temporary file next to it: %s", fn, sep, path,
                                mae_os_strerror(errno, err, sizeof err));
        mae_free(tmp);
        return s;
    }
    errno = 0;
    mae_status s = write(f, arg);
    int e = errno;
    if (s == MAE_OK && (ferror(f) || fflush(f) != 0 || mae_os_fsync(f) != 0)) {
        s = MAE_ERR_IO;
        e = errno;
    }
    if (fclose(f) != 0 && s == MAE_OK) {
        s = MAE_ERR_IO;
        e = errno;
    }
    if (s == MAE_OK && mae_os_replace(tmp, path) != 0) {
        s = mae_fail(MAE_ERR_IO, "%s%s'%s': cannot replace it with the new file: %s", fn, sep, path,
                     mae_os_strerror(errno, err, sizeof err));
    } else if (s == MAE_ERR_IO) {
        s = mae_fail(MAE_ERR_IO, "%s%s'%s': writing failed: %s", fn, sep, path,
                     e ? mae_os_strerror(e, err, sizeof err) : "stream error");
    }
    if (s != MAE_OK)
        mae_os_remove(tmp);   /* the old file at path is untouched */
    else
        mae_os_sync_dir(path);
    mae_free(tmp);
    return s;
}
