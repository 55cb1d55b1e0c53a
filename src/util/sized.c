/* Copies between a caller's size-versioned struct and the library's own (see sized.h). */
#include <stdint.h>
#include <string.h>
#include "sized.h"
#include "util.h"

uint32_t mae_sized_size(const void *s)
{
    uint32_t n;
    memcpy(&n, s, sizeof n);   /* struct_size is the first member of every such struct */
    return n;
}

mae_status mae_sized_read(const char *fn, const void *in, void *full, size_t full_size, size_t min_size)
{
    size_t n = mae_sized_size(in);
    if (n < min_size)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: struct_size %zu is smaller than the struct's first version "
                        "(%zu bytes; set it with the _init function)", fn, n, min_size);
    memcpy(full, in, n < full_size ? n : full_size);
    uint32_t size = (uint32_t)full_size;
    memcpy(full, &size, sizeof size);
    return MAE_OK;
}

mae_status mae_sized_write(const char *fn, void *out, size_t out_size, const void *full, size_t full_size,
                           size_t min_size)
{
    if (min_size < sizeof(uint32_t))
        min_size = sizeof(uint32_t);
    if (out_size < min_size)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: struct_size %zu is smaller than the struct's first version "
                        "(%zu bytes)", fn, out_size, min_size);
    memcpy(out, full, out_size < full_size ? out_size : full_size);
    uint32_t size = (uint32_t)(out_size > UINT32_MAX ? UINT32_MAX : out_size);
    memcpy(out, &size, sizeof size);
    return MAE_OK;
}
