/* PNG decoder: every colour type and bit depth of the PNG specification (gray 1/2/4/8/16, RGB
 * 8/16, palette 1/2/4/8 with tRNS, gray+alpha and RGBA 8/16), Adam7 interlacing, all five
 * filters; chunk CRCs, the zlib header and Adler-32 are checked. Output is 8-bit: 16-bit samples
 * are rounded, sub-byte gray is scaled to 0..255, palettes are expanded. */
#include <stdio.h>
#include <string.h>
#include "image.h"
#include "../util/util.h"

static const uint8_t signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

typedef struct png_info {
    uint32_t w, h;
    int depth, color, interlace;
    int samples;             /* per pixel in the file: 1 gray/palette, 2 gray+alpha, 3 RGB, 4 RGBA */
    int out_channels;
    uint8_t pal[256][4];     /* RGBA */
    int npal;
    int has_key;             /* tRNS colour key for gray or RGB */
    uint16_t key[3];
    int has_trns;
} png_info;

/* Adam7 passes: first column and row, column and row steps. A plain image is one pass (0,0,1,1). */
static const int adam7[7][4] = {
    { 0, 0, 8, 8 }, { 4, 0, 8, 8 }, { 0, 4, 4, 8 }, { 2, 0, 4, 4 },
    { 0, 2, 2, 4 }, { 1, 0, 2, 2 }, { 0, 1, 1, 2 } };

int mae_png_signature(const uint8_t *p, size_t n)
{
    return n >= 8 && memcmp(p, signature, 8) == 0;
}

static mae_status parse_ihdr(png_info *pi, const uint8_t *d, uint32_t len)
{
    if (len != 13)
        return mae_fail(MAE_ERR_FORMAT, "PNG: IHDR has %u bytes, not 13", (unsigned)len);
    pi->w = mae_get_be32(d);
    pi->h = mae_get_be32(d + 4);
    pi->depth = d[8];
    pi->color = d[9];
    pi->interlace = d[12];
    if (pi->w == 0 || pi->h == 0 || pi->w > 0x7fffffffu || pi->h > 0x7fffffffu)
        return mae_fail(MAE_ERR_FORMAT, "PNG: invalid size %u x %u", (unsigned)pi->w, (unsigned)pi->h);
    int dp = pi->depth, ok;
    switch (pi->color) {
    case 0: ok = dp == 1 || dp == 2 || dp == 4 || dp == 8 || dp == 16; pi->samples = 1; break;
    case 2: ok = dp == 8 || dp == 16; pi->samples = 3; break;
    case 3: ok = dp == 1 || dp == 2 || dp == 4 || dp == 8; pi->samples = 1; break;
    case 4: ok = dp == 8 || dp == 16; pi->samples = 2; break;
    case 6: ok = dp == 8 || dp == 16; pi->samples = 4; break;
    default: return mae_fail(MAE_ERR_FORMAT, "PNG: invalid colour type %d", pi->color);
    }
    if (!ok)
        return mae_fail(MAE_ERR_FORMAT, "PNG: bit depth %d is invalid for colour type %d", dp, pi->color);
    if (d[10] != 0 || d[11] != 0)
        return mae_fail(MAE_ERR_FORMAT, "PNG: unknown compression (%d) or filter method (%d)", d[10], d[11]);
    if (pi->interlace > 1)
        return mae_fail(MAE_ERR_FORMAT, "PNG: unknown interlace method %d", pi->interlace);
    if ((uint64_t)pi->w * pi->h > MAE_IMAGE_MAX_PIXELS)
        return mae_fail(MAE_ERR_UNSUPPORTED, "PNG: %u x %u is more than 2^28 pixels",
                        (unsigned)pi->w, (unsigned)pi->h);
    return MAE_OK;
}

static mae_status parse_plte(png_info *pi, const uint8_t *d, uint32_t len)
{
    if (pi->color == 0 || pi->color == 4)
        return mae_fail(MAE_ERR_FORMAT, "PNG: a gray image may not have a palette");
    if (pi->npal)
        return mae_fail(MAE_ERR_FORMAT, "PNG: more than one PLTE chunk");
    if (len % 3 != 0 || len == 0 || len > 768)
        return mae_fail(MAE_ERR_FORMAT, "PNG: PLTE has %u bytes (3 per entry, 1..256 entries)", (unsigned)len);
    pi->npal = (int)(len / 3);
    for (int i = 0; i < pi->npal; i++) {
        memcpy(pi->pal[i], d + 3 * i, 3);
        pi->pal[i][3] = 255;
    }
    return MAE_OK;
}

static mae_status parse_trns(png_info *pi, const uint8_t *d, uint32_t len)
{
    if (pi->has_trns)
        return mae_fail(MAE_ERR_FORMAT, "PNG: more than one tRNS chunk");
    switch (pi->color) {
    case 3:
        if (!pi->npal)
            return mae_fail(MAE_ERR_FORMAT, "PNG: tRNS before PLTE");
        if (len > (uint32_t)pi->npal)
            return mae_fail(MAE_ERR_FORMAT, "PNG: tRNS has %u entries for a %d-colour palette", (unsigned)len, pi->npal);
        for (uint32_t i = 0; i < len; i++)
            pi->pal[i][3] = d[i];
        break;
    case 0:
    case 2:
        if (len != (pi->color == 0 ? 2u : 6u))
            return mae_fail(MAE_ERR_FORMAT, "PNG: tRNS has %u bytes", (unsigned)len);
        for (uint32_t i = 0; i < len / 2; i++)
            pi->key[i] = (uint16_t)(d[2 * i] << 8 | d[2 * i + 1]);
        pi->has_key = 1;
        break;
    default:
        return mae_fail(MAE_ERR_FORMAT, "PNG: tRNS in an image that already has alpha");
    }
    pi->has_trns = 1;
    return MAE_OK;
}

/* Walks the chunks: checks order and CRCs, fills pi, and gathers the IDAT data into idat. */
static mae_status read_chunks(const uint8_t *p, size_t n, png_info *pi, mae_bytes *idat)
{
    size_t pos = 8;
    int seen_ihdr = 0, idat_state = 0;   /* 0 none yet, 1 in the IDAT run, 2 after it */
    for (;;) {
        if (n - pos < 12)
            return mae_fail(MAE_ERR_FORMAT, "PNG: the file is truncated (no IEND chunk)");
        uint32_t len = mae_get_be32(p + pos);
        const uint8_t *type = p + pos + 4, *data = p + pos + 8;
        char name[5] = { 0 };
        for (int i = 0; i < 4; i++) {
            if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z')))
                return mae_fail(MAE_ERR_FORMAT, "PNG: invalid chunk type at offset %zu", pos);
            name[i] = (char)type[i];
        }
        if (len > 0x7fffffffu || n - pos - 12 < len)
            return mae_fail(MAE_ERR_FORMAT, "PNG: chunk %s (%u bytes) is truncated", name, (unsigned)len);
        uint32_t crc = mae_crc32(0, type, (size_t)len + 4);
        if (crc != mae_get_be32(data + len))
            return mae_fail(MAE_ERR_FORMAT, "PNG: CRC mismatch in chunk %s at offset %zu", name, pos);
        pos += 12 + (size_t)len;

        if (!seen_ihdr && strcmp(name, "IHDR") != 0)
            return mae_fail(MAE_ERR_FORMAT, "PNG: the first chunk is %s, not IHDR", name);
        if (idat_state == 1 && strcmp(name, "IDAT") != 0)
            idat_state = 2;
        mae_status s = MAE_OK;
        if (!strcmp(name, "IHDR")) {
            if (seen_ihdr)
                return mae_fail(MAE_ERR_FORMAT, "PNG: more than one IHDR chunk");
            seen_ihdr = 1;
            s = parse_ihdr(pi, data, len);
        } else if (!strcmp(name, "PLTE")) {
            if (idat_state)
                return mae_fail(MAE_ERR_FORMAT, "PNG: PLTE after IDAT");
            s = parse_plte(pi, data, len);
        } else if (!strcmp(name, "tRNS")) {
            if (idat_state)
                return mae_fail(MAE_ERR_FORMAT, "PNG: tRNS after IDAT");
            s = parse_trns(pi, data, len);
        } else if (!strcmp(name, "IDAT")) {
            if (idat_state == 2)
                return mae_fail(MAE_ERR_FORMAT, "PNG: IDAT chunks are not consecutive");
            if (pi->color == 3 && !pi->npal)
                return mae_fail(MAE_ERR_FORMAT, "PNG: palette image without PLTE before IDAT");
            idat_state = 1;
            s = mae_bytes_put(idat, data, len, "PNG");
        } else if (!strcmp(name, "IEND")) {
            if (!idat_state)
                return mae_fail(MAE_ERR_FORMAT, "PNG: no IDAT chunk");
            return MAE_OK;   /* anything after IEND is ignored */
        } else if (!(type[0] & 0x20)) {
            return mae_fail(MAE_ERR_UNSUPPORTED, "PNG: unknown critical chunk %s", name);
        }
        if (s != MAE_OK)
            return s;
    }
}

/* Pixels of pass k along one axis of size n (first at o, step st). */
static uint32_t pass_size(uint32_t n, int o, int st)
{
    return n > (uint32_t)o ? (n - (uint32_t)o + (uint32_t)st - 1) / (uint32_t)st : 0;
}

static size_t row_bytes(const png_info *pi, uint32_t pw)
{
    return ((size_t)pw * (size_t)pi->samples * (size_t)pi->depth + 7) / 8;
}

/* Undoes the filter of one row in place; prior is the previous unfiltered row (or zeros). */
static mae_status unfilter(uint8_t *row, const uint8_t *prior, size_t len, int bpp, int type)
{
    size_t b = (size_t)bpp;
    switch (type) {
    case 0:
        break;
    case 1:
        for (size_t i = b; i < len; i++)
            row[i] = (uint8_t)(row[i] + row[i - b]);
        break;
    case 2:
        for (size_t i = 0; i < len; i++)
            row[i] = (uint8_t)(row[i] + prior[i]);
        break;
    case 3:
        for (size_t i = 0; i < len; i++)
            row[i] = (uint8_t)(row[i] + (((i >= b ? row[i - b] : 0) + prior[i]) >> 1));
        break;
    case 4:
        for (size_t i = 0; i < len; i++)
            row[i] = (uint8_t)(row[i] + mae_png_paeth(i >= b ? row[i - b] : 0, prior[i], i >= b ? prior[i - b] : 0));
        break;
    default:
        return mae_fail(MAE_ERR_FORMAT, "PNG: invalid filter type %d", type);
    }
    return MAE_OK;
}

/* Sample k of a row, at the file's bit depth. */
static unsigned sample(const uint8_t *row, size_t k, int depth)
{
    switch (depth) {
    case 8: return row[k];
    case 16: return (unsigned)row[2 * k] << 8 | row[2 * k + 1];
    default: {
        size_t bit = k * (size_t)depth;
        int shift = 8 - depth - (int)(bit & 7);
        return (row[bit >> 3] >> shift) & ((1u << depth) - 1);
    }
    }
}

static uint8_t to8(unsigned v, int depth)
{
    switch (depth) {
    case 1: return (uint8_t)(v * 255);
    case 2: return (uint8_t)(v * 85);
    case 4: return (uint8_t)(v * 17);
    case 16: return (uint8_t)((v * 255 + 32767) / 65535);
    default: return (uint8_t)v;
    }
}

/* Writes one unfiltered row of pw pixels to the output, starting at (x0, y), every dx columns. */
static mae_status expand_row(const png_info *pi, const uint8_t *row, uint32_t pw, uint8_t *out,
                             uint32_t y, int x0, int dx)
{
    int oc = pi->out_channels, dp = pi->depth;
    uint8_t *o = out + ((size_t)y * pi->w + (size_t)x0) * (size_t)oc;
    size_t step = (size_t)dx * (size_t)oc;
    for (uint32_t k = 0; k < pw; k++, o += step) {
        if (pi->color == 3) {
            unsigned idx = sample(row, k, dp);
            if (idx >= (unsigned)pi->npal)
                return mae_fail(MAE_ERR_FORMAT, "PNG: palette index %u is outside the %d-colour palette", idx, pi->npal);
            memcpy(o, pi->pal[idx], (size_t)oc);
            continue;
        }
        unsigned v[4];
        int ns = pi->samples;
        for (int c = 0; c < ns; c++)
            v[c] = sample(row, k * (size_t)ns + (size_t)c, dp);
        for (int c = 0; c < ns; c++)
            o[c] = to8(v[c], dp);
        if (pi->has_key) {
            int transparent = pi->color == 0 ? v[0] == pi->key[0]
                            : v[0] == pi->key[0] && v[1] == pi->key[1] && v[2] == pi->key[2];
            o[ns] = transparent ? 0 : 255;
        }
    }
    return MAE_OK;
}

/* Unfilters and expands every pass of the decompressed data raw into out. zero is a row of
 * zeros as long as the longest row: what the first row of each pass sees above itself. */
static mae_status decode_passes(const png_info *pi, uint8_t *raw, const uint8_t *zero, uint8_t *out)
{
    int npass = pi->interlace ? 7 : 1;
    int bpp = (pi->samples * pi->depth + 7) / 8;
    static const int plain[4] = { 0, 0, 1, 1 };
    size_t pos = 0;
    for (int pass = 0; pass < npass; pass++) {
        const int *g = pi->interlace ? adam7[pass] : plain;
        uint32_t pw = pass_size(pi->w, g[0], g[2]), ph = pass_size(pi->h, g[1], g[3]);
        if (!pw || !ph)
            continue;
        size_t rb = row_bytes(pi, pw);
        const uint8_t *prior = zero;
        for (uint32_t r = 0; r < ph; r++) {
            uint8_t *row = raw + pos + 1;
            mae_status s = unfilter(row, prior, rb, bpp, raw[pos]);
            if (s == MAE_OK)
                s = expand_row(pi, row, pw, out, (uint32_t)g[1] + r * (uint32_t)g[3], g[0], g[2]);
            if (s != MAE_OK)
                return s;
            prior = row;
            pos += 1 + rb;
        }
    }
    return MAE_OK;
}

static size_t raw_size(const png_info *pi)
{
    int npass = pi->interlace ? 7 : 1;
    size_t total = 0;
    for (int pass = 0; pass < npass; pass++) {
        int o0 = pi->interlace ? adam7[pass][0] : 0, o1 = pi->interlace ? adam7[pass][1] : 0;
        int s0 = pi->interlace ? adam7[pass][2] : 1, s1 = pi->interlace ? adam7[pass][3] : 1;
        uint32_t pw = pass_size(pi->w, o0, s0), ph = pass_size(pi->h, o1, s1);
        if (pw && ph)
            total += (size_t)ph * (1 + row_bytes(pi, pw));
    }
    return total;
}

/* Inflates the IDAT data and decodes it into a new pixel buffer. */
static mae_status decode_image(const png_info *pi, const mae_bytes *idat, uint8_t **pixels)
{
    /* At most 8 bytes per pixel plus a filter byte per row, and a DEFLATE stream expands at most
     * 1032-fold: refuse before allocating what the data cannot fill. */
    size_t need = raw_size(pi), longest = row_bytes(pi, pi->w);
    if (need / 1032 > idat->size + 1)
        return mae_fail(MAE_ERR_FORMAT, "PNG: %zu bytes of image data cannot hold a %u x %u image",
                        idat->size, (unsigned)pi->w, (unsigned)pi->h);
    size_t npix = (size_t)pi->w * pi->h * (size_t)pi->out_channels;
    /* held at once: the IDAT bytes, the inflated rows (+ a zero row) and the pixels; each is
     * below 2^31 * 8 + 2^31, so the sum does not overflow a 64-bit size_t (checked otherwise) */
    size_t peak;
    char what[64];
    snprintf(what, sizeof what, "PNG: a %u x %u image", (unsigned)pi->w, (unsigned)pi->h);
    mae_status s = !mae_add_size(need, longest, &peak) || !mae_add_size(peak, npix, &peak) ||
                   !mae_add_size(peak, idat->cap, &peak) ? mae_image_check_limit(what, SIZE_MAX)
                                                          : mae_image_check_limit(what, peak);
    if (s != MAE_OK)
        return s;
    uint8_t *raw = mae_alloc(need + longest);
    uint8_t *out = mae_alloc(npix);
    if (!raw || !out) {
        mae_free(raw);
        mae_free(out);
        return mae_fail(MAE_ERR_NOMEM, "PNG: cannot allocate %zu + %zu bytes for a %u x %u image",
                        need + longest, npix, (unsigned)pi->w, (unsigned)pi->h);
    }
    uint8_t *zero = raw + need;
    memset(zero, 0, longest);
    mae_bytes buf;
    mae_bytes_fixed(&buf, raw, need);
    s = mae_zlib_decompress(idat->data, idat->size, &buf);
    if (s != MAE_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", mae_last_error());
        s = mae_fail(s, "PNG: %s", msg);
    } else if (buf.size != need) {
        s = mae_fail(MAE_ERR_FORMAT, "PNG: the image data has %zu bytes, the header needs %zu", buf.size, need);
    }
    if (s == MAE_OK)
        s = decode_passes(pi, raw, zero, out);
    mae_free(raw);
    if (s != MAE_OK) {
        mae_free(out);
        return s;
    }
    *pixels = out;
    return MAE_OK;
}

mae_status mae_png_decode(const uint8_t *p, size_t n, mae_raw_image *out)
{
    if (!mae_png_signature(p, n))
        return mae_fail(MAE_ERR_FORMAT, "PNG: bad signature");
    png_info pi;
    memset(&pi, 0, sizeof pi);
    mae_bytes idat;
    mae_bytes_init(&idat, mae_image_limit());   /* its growth counts against the limit too */
    uint8_t *pixels = NULL;
    mae_status s = read_chunks(p, n, &pi, &idat);
    if (s == MAE_OK) {
        pi.out_channels = pi.color == 3 ? (pi.has_trns ? 4 : 3) : pi.samples + pi.has_key;
        s = decode_image(&pi, &idat, &pixels);
    }
    mae_bytes_free(&idat);
    if (s != MAE_OK)
        return s;
    out->pixels = pixels;
    out->w = (int)pi.w;
    out->h = (int)pi.h;
    out->channels = pi.out_channels;
    return MAE_OK;
}
