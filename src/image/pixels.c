/* Caller pixel buffers: argument checks and conversion between channel counts. */
#include <string.h>
#include "image.h"
#include "../util/util.h"

mae_status mae_pixels_check(const char *fn, const void *pixels, int w, int h, int channels,
                            ptrdiff_t *stride)
{
    if (!pixels)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: pixels is NULL", fn);
    if (w <= 0 || h <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: image size %d x %d is not positive", fn, w, h);
    if (channels < 1 || channels > 4)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %d channels (1..4 supported)", fn, channels);
    if ((uint64_t)w * (uint64_t)h > MAE_IMAGE_MAX_PIXELS)
        return mae_fail(MAE_ERR_UNSUPPORTED, "%s: %d x %d is more than 2^28 pixels", fn, w, h);
    /* w * channels < 2^31 here: w <= 2^28 and channels <= 4. */
    ptrdiff_t row = (ptrdiff_t)w * channels;
    if (*stride == 0)
        *stride = row;
    if (*stride < row && *stride > -row)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: |stride| %td is less than width * channels = %td",
                        fn, *stride, row);
    /* The rows must be addressable: (h - 1) * |stride| + row must fit in the address space. */
    uint64_t span = (uint64_t)(h - 1) * (uint64_t)(*stride < 0 ? -*stride : *stride) + (uint64_t)row;
    if (span > (uint64_t)PTRDIFF_MAX)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the buffer (%d rows of stride %td) is too large", fn, h, *stride);
    return MAE_OK;
}

static uint8_t luma(const uint8_t *p)
{
    return (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 32768u) >> 16);
}

void mae_pixels_convert(const uint8_t *src, ptrdiff_t src_stride, int sc, uint8_t *dst,
                        ptrdiff_t dst_stride, int dc, int w, int h)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *s = src + y * src_stride;
        uint8_t *d = dst + y * dst_stride;
        if (sc == dc) {
            memcpy(d, s, (size_t)w * (size_t)sc);
            continue;
        }
        for (int x = 0; x < w; x++, s += sc, d += dc) {
            int src_color = sc >= 3;
            uint8_t alpha = (sc == 2 || sc == 4) ? s[sc - 1] : 255;
            if (dc <= 2) {
                d[0] = src_color ? luma(s) : s[0];
            } else {
                d[0] = s[0];
                d[1] = src_color ? s[1] : s[0];
                d[2] = src_color ? s[2] : s[0];
            }
            if (dc == 2 || dc == 4)
                d[dc - 1] = alpha;
        }
    }
}

mae_status mae_pixels_copy(const uint8_t *src, ptrdiff_t src_stride, int sc, int w, int h, int dc,
                           uint8_t **out)
{
    size_t n = (size_t)w * (size_t)h * (size_t)dc;   /* w * h <= 2^28: no overflow */
    uint8_t *p = mae_alloc(n);
    if (!p)
        return mae_fail(MAE_ERR_NOMEM, "image: cannot allocate %zu bytes", n);
    mae_pixels_convert(src, src_stride, sc, p, (ptrdiff_t)w * dc, dc, w, h);
    *out = p;
    return MAE_OK;
}
