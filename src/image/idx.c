/* IDX files (the MNIST family's format): magic 00 00 <type> <ndim>, ndim big-endian uint32
 * sizes, then the values. Plain or gzip-compressed. */
#include <string.h>
#include "image.h"
#include "../util/util.h"

/* Parses a plain IDX image; on success *header gets the offset of the values, *count their number. */
static mae_status parse(const uint8_t *p, size_t n, int *ndim, int64_t dims[4], size_t *header,
                        size_t *count)
{
    if (n < 4)
        return mae_fail(MAE_ERR_FORMAT, "IDX: the header is truncated");
    if (p[0] != 0 || p[1] != 0)
        return mae_fail(MAE_ERR_FORMAT, "IDX: bad magic number %02x %02x %02x %02x", p[0], p[1], p[2], p[3]);
    if (p[2] != 0x08) {
        static const uint8_t known[] = { 0x09, 0x0b, 0x0c, 0x0d, 0x0e };
        if (memchr(known, p[2], sizeof known))
            return mae_fail(MAE_ERR_UNSUPPORTED, "IDX: element type 0x%02x (only unsigned bytes, 0x08, are read)", p[2]);
        return mae_fail(MAE_ERR_FORMAT, "IDX: unknown element type 0x%02x", p[2]);
    }
    int nd = p[3];
    if (nd < 1 || nd > 4)
        return mae_fail(nd ? MAE_ERR_UNSUPPORTED : MAE_ERR_FORMAT, "IDX: %d dimensions (1..4 are read)", nd);
    if (n - 4 < 4 * (size_t)nd)
        return mae_fail(MAE_ERR_FORMAT, "IDX: the header is truncated");
    size_t total = 1;
    for (int i = 0; i < nd; i++) {
        const uint8_t *d = p + 4 + 4 * i;
        uint32_t v = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        if (v == 0)
            return mae_fail(MAE_ERR_FORMAT, "IDX: dimension %d is 0", i);
        if (!mae_mul_size(total, v, &total) || total > MAE_IDX_MAX_BYTES)
            return mae_fail(MAE_ERR_UNSUPPORTED, "IDX: more than 2^30 values");
        dims[i] = v;
    }
    size_t head = 4 + 4 * (size_t)nd;
    if (n - head != total)
        return mae_fail(MAE_ERR_FORMAT, "IDX: %zu bytes of data where the dimensions need %zu", n - head, total);
    *ndim = nd;
    *header = head;
    *count = total;
    return MAE_OK;
}

mae_status mae_idx_decode(const uint8_t *p, size_t n, uint8_t **data, int *ndim, int64_t dims[4])
{
    int nd = 0;
    int64_t d[4] = { 0, 0, 0, 0 };
    size_t head = 0, count = 0;
    uint8_t *out;
    mae_status s;
    if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
        /* The output buffer: at most the largest IDX (values and a 4-dimensional header) and
         * at most the decode limit, the peak included (mae_bytes counts the old and the new
         * buffer while it grows). The last member's ISIZE, the whole output for the usual
         * single-member file, sizes it at once, as far as the input can expand (DEFLATE: at most
         * 1032-fold): no doubling, no copy. */
        size_t limit = mae_image_limit(), cap = MAE_IDX_MAX_BYTES + 4 + 16;
        mae_bytes b;
        mae_bytes_init(&b, limit < cap ? limit : cap);
        if (n >= 18) {
            size_t hint = (size_t)p[n - 4] | (size_t)p[n - 3] << 8 | (size_t)p[n - 2] << 16 | (size_t)p[n - 1] << 24;
            if (hint <= b.limit && hint / 1032 <= n && mae_bytes_reserve(&b, hint, "IDX") != MAE_OK) {
                mae_bytes_free(&b);
                return mae_fail(MAE_ERR_NOMEM, "IDX: cannot allocate %zu bytes for the decompressed file", hint);
            }
        }
        s = mae_gzip_decompress(p, n, &b);
        if (s == MAE_OK)
            s = parse(b.data, b.size, &nd, d, &head, &count);
        if (s != MAE_OK) {
            mae_bytes_free(&b);
            return s;
        }
        /* Keep the decompressed buffer: move the values to its start. */
        memmove(b.data, b.data + head, count);
        out = b.data;
    } else {
        s = parse(p, n, &nd, d, &head, &count);
        if (s == MAE_OK)
            s = mae_image_check_limit("IDX: the file", count);
        if (s != MAE_OK)
            return s;
        out = mae_alloc(count);
        if (!out)
            return mae_fail(MAE_ERR_NOMEM, "IDX: cannot allocate %zu bytes", count);
        memcpy(out, p + head, count);
    }
    *data = out;
    *ndim = nd;
    for (int i = 0; i < 4; i++)
        dims[i] = d[i];
    return MAE_OK;
}
