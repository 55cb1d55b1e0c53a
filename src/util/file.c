/* The whole-file reader and the whole-buffer atomic writer (file.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "file.h"
#include "bytes.h"
#include "atomic_file.h"
#include "../os/os.h"

mae_status mae_file_read(const char *fn, const char *path, uint8_t **data, size_t *size)
{
    FILE *f = mae_os_fopen(path, "rb");
    char err[128];
    if (!f)
        return mae_fail(MAE_ERR_IO, "%s: cannot open '%s': %s", fn, path, mae_os_strerror(errno, err, sizeof err));
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

typedef struct bytes_out { const uint8_t *data; size_t n; } bytes_out;

static mae_status write_bytes(FILE *f, void *arg)
{
    const bytes_out *b = arg;
    return fwrite(b->data, 1, b->n, f) == b->n ? MAE_OK : MAE_ERR_IO;
}

mae_status mae_file_write_atomic(const char *fn, const char *path, const uint8_t *data, size_t n)
{
    bytes_out b = { data, n };
    return mae_atomic_write(fn, path, write_bytes, &b);
}
