/* The zlib (RFC 1950) and gzip (RFC 1952) containers around DEFLATE. */
#include <string.h>
#include "codec.h"
#include "../util/util.h"

mae_status mae_zlib_decompress(const uint8_t *in, size_t n, mae_bytes *out)
{
    if (n < 2 + 4)
        return mae_fail(MAE_ERR_FORMAT, "zlib: the stream is truncated (%zu bytes)", n);
    unsigned cmf = in[0], flg = in[1];
    if ((cmf & 15) != 8)
        return mae_fail(MAE_ERR_FORMAT, "zlib: compression method %u is not deflate", cmf & 15);
    if ((cmf >> 4) > 7)
        return mae_fail(MAE_ERR_FORMAT, "zlib: window size 2^%u is too large", (cmf >> 4) + 8);
    if ((cmf * 256 + flg) % 31 != 0)
        return mae_fail(MAE_ERR_FORMAT, "zlib: header check (FCHECK) failed");
    if (flg & 0x20)
        return mae_fail(MAE_ERR_FORMAT, "zlib: a preset dictionary is not allowed here");
    size_t start = out->size, used = 0;
    mae_status s = mae_inflate(in + 2, n - 2, &used, out);
    if (s != MAE_OK)
        return s;
    if (n - 2 - used < 4)
        return mae_fail(MAE_ERR_FORMAT, "zlib: the Adler-32 checksum is missing");
    if (n - 2 - used > 4)
        return mae_fail(MAE_ERR_FORMAT, "zlib: %zu bytes follow the stream", n - 2 - used - 4);
    uint32_t want = mae_get_be32(in + 2 + used);
    uint32_t got = out->size > start ? mae_adler32(1, out->data + start, out->size - start) : 1;
    if (want != got)
        return mae_fail(MAE_ERR_FORMAT, "zlib: Adler-32 mismatch (stored %08x, data %08x)",
                        (unsigned)want, (unsigned)got);
    return MAE_OK;
}

mae_status mae_zlib_compress(const uint8_t *in, size_t n, mae_bytes *out)
{
    /* CMF 0x78: deflate, 32 KiB window; FLG 0x9c: default level, FCHECK making it a multiple of 31. */
    static const uint8_t header[2] = { 0x78, 0x9c };
    mae_status s = mae_bytes_put(out, header, 2, "zlib");
    if (s == MAE_OK)
        s = mae_deflate(in, n, out);
    if (s != MAE_OK)
        return s;
    uint32_t a = mae_adler32(1, in, n);
    uint8_t tail[4] = { (uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a };
    return mae_bytes_put(out, tail, 4, "zlib");
}

/* Skips a zero-terminated header field; 0 if it runs past the end. */
static int skip_string(const uint8_t *in, size_t n, size_t *pos)
{
    while (*pos < n && in[*pos] != 0)
        (*pos)++;
    if (*pos >= n)
        return 0;
    (*pos)++;
    return 1;
}

/* One member starting at in[0]; *used gets its length. */
static mae_status gzip_member(const uint8_t *in, size_t n, mae_bytes *out, size_t *used)
{
    enum { FTEXT = 1, FHCRC = 2, FEXTRA = 4, FNAME = 8, FCOMMENT = 16 };
    if (n < 10)
        return mae_fail(MAE_ERR_FORMAT, "gzip: the header is truncated");
    if (in[0] != 0x1f || in[1] != 0x8b)
        return mae_fail(MAE_ERR_FORMAT, "gzip: bad magic number %02x %02x", in[0], in[1]);
    if (in[2] != 8)
        return mae_fail(MAE_ERR_FORMAT, "gzip: compression method %u is not deflate", in[2]);
    unsigned flg = in[3];
    if (flg & 0xe0)
        return mae_fail(MAE_ERR_FORMAT, "gzip: reserved flag bits are set (%02x)", flg);
    size_t pos = 10;
    if (flg & FEXTRA) {
        if (n - pos < 2)
            return mae_fail(MAE_ERR_FORMAT, "gzip: the extra field is truncated");
        size_t xlen = in[pos] | (size_t)in[pos + 1] << 8;
        pos += 2;
        if (n - pos < xlen)
            return mae_fail(MAE_ERR_FORMAT, "gzip: the extra field is truncated");
        pos += xlen;
    }
    if ((flg & FNAME) && !skip_string(in, n, &pos))
        return mae_fail(MAE_ERR_FORMAT, "gzip: the file name field is truncated");
    if ((flg & FCOMMENT) && !skip_string(in, n, &pos))
        return mae_fail(MAE_ERR_FORMAT, "gzip: the comment field is truncated");
    if (flg & FHCRC) {
        if (n - pos < 2)
            return mae_fail(MAE_ERR_FORMAT, "gzip: the header CRC is truncated");
        unsigned want = in[pos] | (unsigned)in[pos + 1] << 8;
        unsigned got = mae_crc32(0, in, pos) & 0xffff;
        if (want != got)
            return mae_fail(MAE_ERR_FORMAT, "gzip: header CRC mismatch (stored %04x, header %04x)", want, got);
        pos += 2;
    }
    size_t start = out->size, dlen = 0;
    mae_status s = mae_inflate(in + pos, n - pos, &dlen, out);
    if (s != MAE_OK)
        return s;
    pos += dlen;
    if (n - pos < 8)
        return mae_fail(MAE_ERR_FORMAT, "gzip: the CRC-32/ISIZE trailer is truncated");
    /* an empty member leaves a growable buffer unallocated (NULL) */
    uint32_t crc = out->size > start ? mae_crc32(0, out->data + start, out->size - start) : 0;
    if (mae_get_le32(in + pos) != crc)
        return mae_fail(MAE_ERR_FORMAT, "gzip: CRC-32 mismatch (stored %08x, data %08x)",
                        (unsigned)mae_get_le32(in + pos), (unsigned)crc);
    if (mae_get_le32(in + pos + 4) != (uint32_t)(out->size - start))
        return mae_fail(MAE_ERR_FORMAT, "gzip: ISIZE %u does not match the %zu bytes decoded",
                        (unsigned)mae_get_le32(in + pos + 4), out->size - start);
    *used = pos + 8;
    return MAE_OK;
}

mae_status mae_gzip_decompress(const uint8_t *in, size_t n, mae_bytes *out)
{
    size_t pos = 0;
    do {
        size_t used = 0;
        mae_status s = gzip_member(in + pos, n - pos, out, &used);
        if (s != MAE_OK)
            return s;
        pos += used;
    } while (pos < n);
    return MAE_OK;
}

mae_status mae_gzip_compress(const uint8_t *in, size_t n, mae_bytes *out)
{
    /* No name, no time stamp (MTIME 0), XFL 0, OS 255 (unknown): reproducible output. */
    static const uint8_t header[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255 };
    mae_status s = mae_bytes_put(out, header, 10, "gzip");
    if (s == MAE_OK)
        s = mae_deflate(in, n, out);
    if (s != MAE_OK)
        return s;
    uint32_t crc = mae_crc32(0, in, n), size = (uint32_t)n;
    uint8_t tail[8] = { (uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24),
                        (uint8_t)size, (uint8_t)(size >> 8), (uint8_t)(size >> 16), (uint8_t)(size >> 24) };
    return mae_bytes_put(out, tail, 8, "gzip");
}
