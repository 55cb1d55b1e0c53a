/* Growable byte buffers (bytes.c) and the byte-order helpers of the file formats. */
#ifndef MAE_BYTES_H
#define MAE_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include "util.h"

/* ---- growable byte buffers (bytes.c) -------------------------------------------------------- */

/* Output of the compressors and decompressors. With fixed set, data is the caller's buffer of
 * cap bytes and may not grow; else it grows (mae_alloc) while the old and the new buffer together
 * stay within limit bytes (the peak while it grows). */
typedef struct mae_bytes {
    uint8_t *data;
    size_t size, cap, limit;
    int fixed;
} mae_bytes;

void       mae_bytes_init(mae_bytes *b, size_t limit);
void       mae_bytes_fixed(mae_bytes *b, uint8_t *buf, size_t cap);
/* Makes room for n more bytes: MAE_ERR_NOMEM on allocation failure, MAE_ERR_FORMAT when a fixed
 * buffer would overflow, MAE_ERR_UNSUPPORTED when the limit would be exceeded ("what" names the
 * data in the message). */
mae_status mae_bytes_reserve(mae_bytes *b, size_t n, const char *what);
mae_status mae_bytes_put(mae_bytes *b, const void *p, size_t n, const char *what);
void       mae_bytes_free(mae_bytes *b);             /* only a growable buffer's memory */

/* Big- and little-endian 32-bit values in file bytes. */
static inline uint32_t mae_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint32_t mae_get_le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static inline void mae_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

#endif
