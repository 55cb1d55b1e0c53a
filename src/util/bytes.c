/* Growable byte buffers for the codecs' output. */
#include <string.h>
#include "bytes.h"

void mae_bytes_init(mae_bytes *b, size_t limit)
{
    b->data = NULL;
    b->size = b->cap = 0;
    b->limit = limit;
    b->fixed = 0;
}

void mae_bytes_fixed(mae_bytes *b, uint8_t *buf, size_t cap)
{
    b->data = buf;
    b->size = 0;
    b->cap = b->limit = cap;
    b->fixed = 1;
}

mae_status mae_bytes_reserve(mae_bytes *b, size_t n, const char *what)
{
    size_t need;
    if (!mae_add_size(b->size, n, &need) || need > b->limit) {
        if (b->fixed)
            return mae_fail(MAE_ERR_FORMAT, "%s: more data than expected (%zu bytes)", what, b->limit);
        return mae_fail(MAE_ERR_UNSUPPORTED, "%s: more than the limit of %zu bytes", what, b->limit);
    }
    if (need <= b->cap)
        return MAE_OK;
    /* The old buffer and the new one are both held while the bytes move: their sum, the peak,
     * stays within the limit. Below it the capacity doubles, so that appending n bytes one at a
     * time costs O(n) copies in all. */
    size_t room = b->limit - b->cap;
    if (need > room)
        return mae_fail(MAE_ERR_UNSUPPORTED, "%s: growing a %zu-byte buffer to %zu bytes would hold more than the limit "
                        "of %zu bytes at once", what, b->cap, need, b->limit);
    size_t cap = b->cap < 4096 ? 4096 : b->cap > room / 2 ? room : b->cap * 2;
    if (cap > room)
        cap = room;
    if (cap < need)
        cap = need;
    uint8_t *p = mae_alloc(cap);
    if (!p)
        return mae_fail(MAE_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, cap);
    if (b->size)
        memcpy(p, b->data, b->size);
    mae_free(b->data);
    b->data = p;
    b->cap = cap;
    return MAE_OK;
}

mae_status mae_bytes_put(mae_bytes *b, const void *p, size_t n, const char *what)
{
    mae_status s = mae_bytes_reserve(b, n, what);
    if (s != MAE_OK)
        return s;
    if (n)
        memcpy(b->data + b->size, p, n);
    b->size += n;
    return MAE_OK;
}

void mae_bytes_free(mae_bytes *b)
{
    if (!b->fixed)
        mae_free(b->data);
    b->data = NULL;
    b->size = b->cap = 0;
}
