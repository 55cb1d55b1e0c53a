/* Binary Netpbm images: PGM (P5) and PPM (P6) with any maxval, read; maxval 255 written. */
#include <stdio.h>
#include <string.h>
#include "image.h"
#include "../util/util.h"

int mae_pnm_signature(const uint8_t *p, size_t n)
{
    return n >= 2 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7';
}

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Reads one decimal header field, skipping whitespace and # comments before it. */
static mae_status header_number(const uint8_t *p, size_t n, size_t *pos, const char *what,
                                uint32_t lo, uint32_t hi, uint32_t *value)
{
    for (;;) {
        while (*pos < n && is_space(p[*pos]))
            (*pos)++;
        if (*pos < n && p[*pos] == '#') {
            while (*pos < n && p[*pos] != '\n' && p[*pos] != '\r')
                (*pos)++;
            continue;
        }
        break;
    }
    if (*pos >= n)
        return mae_fail(MAE_ERR_FORMAT, "PNM: the header is truncated before the %s", what);
    if (p[*pos] < '0' || p[*pos] > '9')
        return mae_fail(MAE_ERR_FORMAT, "PNM: the %s is not a number", what);
    uint64_t v = 0;
    while (*pos < n && p[*pos] >= '0' && p[*pos] <= '9') {
        v = v * 10 + (uint64_t)(p[*pos] - '0');
        if (v > hi)
            return mae_fail(MAE_ERR_FORMAT, "PNM: the %s is larger than %u", what, (unsigned)hi);
        (*pos)++;
    }
    if (v < lo)
        return mae_fail(MAE_ERR_FORMAT, "PNM: the %s is smaller than %u", what, (unsigned)lo);
    *value = (uint32_t)v;
    return MAE_OK;
}

mae_status mae_pnm_decode(const uint8_t *p, size_t n, mae_raw_image *out)
{
    if (!mae_pnm_signature(p, n))
        return mae_fail(MAE_ERR_FORMAT, "PNM: bad signature");
    if (p[1] != '5' && p[1] != '6')
        return mae_fail(MAE_ERR_UNSUPPORTED, "PNM: P%c images are not supported (binary P5 and P6 are)", p[1]);
    int channels = p[1] == '5' ? 1 : 3;
    size_t pos = 2;
    uint32_t w, h, maxval;
    mae_status s;
    if (n > 2 && !is_space(p[2]) && p[2] != '#')
        return mae_fail(MAE_ERR_FORMAT, "PNM: no whitespace after the magic number");
    if ((s = header_number(p, n, &pos, "width", 1, 0x7fffffff, &w)) != MAE_OK ||
        (s = header_number(p, n, &pos, "height", 1, 0x7fffffff, &h)) != MAE_OK ||
        (s = header_number(p, n, &pos, "maxval", 1, 65535, &maxval)) != MAE_OK)
        return s;
    /* Exactly one whitespace character separates the header from the raster. */
    if (pos >= n || !is_space(p[pos]))
        return mae_fail(MAE_ERR_FORMAT, "PNM: no whitespace after maxval");
    pos++;
    if ((uint64_t)w * h > MAE_IMAGE_MAX_PIXELS)
        return mae_fail(MAE_ERR_UNSUPPORTED, "PNM: %u x %u is more than 2^28 pixels", (unsigned)w, (unsigned)h);
    size_t bytes = maxval > 255 ? 2 : 1;
    size_t count = (size_t)w * h * (size_t)channels;
    if ((n - pos) / bytes < count)
        return mae_fail(MAE_ERR_FORMAT, "PNM: the raster is truncated (%zu of %zu bytes)", n - pos, count * bytes);
    char what[64];
    snprintf(what, sizeof what, "PNM: a %u x %u image", (unsigned)w, (unsigned)h);
    if ((s = mae_image_check_limit(what, count)) != MAE_OK)
        return s;
    uint8_t *px = mae_alloc(count);
    if (!px)
        return mae_fail(MAE_ERR_NOMEM, "PNM: cannot allocate %zu bytes", count);
    const uint8_t *r = p + pos;
    for (size_t i = 0; i < count; i++) {
        uint32_t v = bytes == 2 ? (uint32_t)r[2 * i] << 8 | r[2 * i + 1] : r[i];
        if (v > maxval) {
            mae_free(px);
            return mae_fail(MAE_ERR_FORMAT, "PNM: sample %u exceeds maxval %u", (unsigned)v, (unsigned)maxval);
        }
        px[i] = (uint8_t)(maxval == 255 ? v : (v * 255 + maxval / 2) / maxval);
    }
    out->pixels = px;
    out->w = (int)w;
    out->h = (int)h;
    out->channels = channels;
    return MAE_OK;
}

mae_status mae_pnm_encode(const uint8_t *pixels, int w, int h, int channels, ptrdiff_t stride,
                          mae_bytes *out)
{
    char head[64];
    int len = snprintf(head, sizeof head, "P%c\n%d %d\n255\n", channels == 1 ? '5' : '6', w, h);
    mae_status s = mae_bytes_put(out, head, (size_t)len, "PNM");
    for (int y = 0; y < h && s == MAE_OK; y++)
        s = mae_bytes_put(out, pixels + y * stride, (size_t)w * (size_t)channels, "PNM");
    return s;
}
