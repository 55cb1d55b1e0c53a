/* Whole-file reads and atomic whole-file writes for the image codecs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "image.h"
#include "../util/util.h"

mae_status mae_file_read(const char *fn, const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return mae_fail(MAE_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    /* Read in growing chunks rather than trusting ftell: works for pipes and special files. */
    mae_bytes b;
    mae_bytes_init(&b, SIZE_MAX);
    mae_status s = MAE_OK;
    for (;;) {
        s = mae_bytes_reserve(&b, 1 << 16, fn);
        if (s != MAE_OK)
            break;
        size_t got = fread(b.data + b.size, 1, b.cap - b.size, f);
        b.size += got;
        if (got == 0) {
            if (ferror(f))
                s = mae_fail(MAE_ERR_IO, "%s: cannot read '%s'", fn, path);
            break;
        }
    }
    fclose(f);
    if (s != MAE_OK) {
        mae_bytes_free(&b);
        return s;
    }
    *data = b.data;
    *size = b.size;
    return MAE_OK;
}

mae_status mae_file_write_atomic(const char *fn, const char *path, const uint8_t *data, size_t n)
{
    char tmp[4096];
    FILE *f = NULL;
    /* A name no other writer uses: the pid and an attempt counter; "x" refuses existing files. */
    for (int attempt = 0; attempt < 100 && !f; attempt++) {
        int len = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%d", path, (long)getpid(), attempt);
        if (len < 0 || (size_t)len >= sizeof tmp)
            return mae_fail(MAE_ERR_INVALID_ARG, "%s: the path is too long", fn);
        f = fopen(tmp, "wbx");
        if (!f && errno != EEXIST)
            return mae_fail(MAE_ERR_IO, "%s: cannot create '%s': %s", fn, tmp, strerror(errno));
    }
    if (!f)
        return mae_fail(MAE_ERR_IO, "%s: cannot create a temporary file next to '%s'", fn, path);
    int ok = fwrite(data, 1, n, f) == n;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        int e = errno;
        remove(tmp);
        return mae_fail(MAE_ERR_IO, "%s: cannot write '%s': %s", fn, tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return mae_fail(MAE_ERR_IO, "%s: cannot rename '%s' to '%s': %s", fn, tmp, path, strerror(e));
    }
    return MAE_OK;
}
