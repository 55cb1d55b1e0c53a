/* PNG encoder: 8-bit gray, gray+alpha, RGB or RGBA; each row gets the filter whose output has
 * the smallest sum of absolute values (the usual heuristic), then zlib, then the chunks. */
#include <string.h>
#include "image.h"
#include "../util/util.h"

#define IDAT_CHUNK ((size_t)1 << 20)

static mae_status put_chunk(mae_bytes *out, const char *type, const uint8_t *data, size_t len)
{
    uint8_t head[8], tail[4];
    mae_put_be32(head, (uint32_t)len);
    memcpy(head + 4, type, 4);
    uint32_t crc = mae_crc32(mae_crc32(0, head + 4, 4), data, len);
    mae_put_be32(tail, crc);
    mae_status s = mae_bytes_put(out, head, 8, "PNG");
    if (s == MAE_OK)
        s = mae_bytes_put(out, data, len, "PNG");
    if (s == MAE_OK)
        s = mae_bytes_put(out, tail, 4, "PNG");
    return s;
}

/* Filters row (prior: the row above, or zeros) with type into dst; returns the sum of |byte| read
 * as signed, the cost the choice minimizes. */
static uint64_t filter_row(int type, const uint8_t *row, const uint8_t *prior, size_t len, int bpp,
                           uint8_t *dst)
{
    uint64_t cost = 0;
    for (size_t i = 0; i < len; i++) {
        int a = i >= (size_t)bpp ? row[i - (size_t)bpp] : 0;
        int b = prior[i];
        int c = i >= (size_t)bpp ? prior[i - (size_t)bpp] : 0;
        int pred = 0;
        switch (type) {
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) >> 1; break;
        case 4: pred = mae_png_paeth(a, b, c); break;
        default: break;
        }
        uint8_t v = (uint8_t)(row[i] - pred);
        dst[i] = v;
        cost += v < 128 ? v : 256 - v;
    }
    return cost;
}

mae_status mae_png_encode_bytes(const uint8_t *pixels, int w, int h, int channels, ptrdiff_t stride,
                          mae_bytes *out)
{
    static const uint8_t signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    static const uint8_t color_type[5] = { 0, 0, 4, 2, 6 };
    size_t rb = (size_t)w * (size_t)channels, rawn = (size_t)h * (rb + 1);
    /* filtered rows, then a zero row and one scratch row per filter type */
    uint8_t *raw = mae_alloc(rawn + 6 * rb);
    if (!raw)
        return mae_fail(MAE_ERR_NOMEM, "PNG: cannot allocate %zu bytes", rawn + 6 * rb);
    uint8_t *zero = raw + rawn, *trial = zero + rb;
    memset(zero, 0, rb);
    for (int y = 0; y < h; y++) {
        const uint8_t *row = pixels + y * stride;
        const uint8_t *prior = y ? pixels + (y - 1) * stride : zero;
        int best = 0;
        uint64_t best_cost = UINT64_MAX;
        for (int t = 0; t < 5; t++) {
            uint64_t c = filter_row(t, row, prior, rb, channels, trial + (size_t)t * rb);
            if (c < best_cost) {
                best_cost = c;
                best = t;
            }
        }
        uint8_t *dst = raw + (size_t)y * (rb + 1);
        dst[0] = (uint8_t)best;
        memcpy(dst + 1, trial + (size_t)best * rb, rb);
    }
    mae_bytes z;
    mae_bytes_init(&z, SIZE_MAX);
    mae_status s = mae_zlib_compress(raw, rawn, &z);
    mae_free(raw);

    uint8_t ihdr[13];
    mae_put_be32(ihdr, (uint32_t)w);
    mae_put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;
    ihdr[9] = color_type[channels];
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    if (s == MAE_OK)
        s = mae_bytes_put(out, signature, 8, "PNG");
    if (s == MAE_OK)
        s = put_chunk(out, "IHDR", ihdr, 13);
    for (size_t off = 0; s == MAE_OK && off < z.size; off += IDAT_CHUNK) {
        size_t len = z.size - off < IDAT_CHUNK ? z.size - off : IDAT_CHUNK;
        s = put_chunk(out, "IDAT", z.data + off, len);
    }
    if (s == MAE_OK)
        s = put_chunk(out, "IEND", NULL, 0);
    mae_bytes_free(&z);
    return s;
}
