/* DEFLATE decoder (RFC 1951): stored, fixed-Huffman and dynamic-Huffman blocks.
 *
 * Huffman codes decode through a 10-bit lookup table; the few longer codes fall back to the
 * canonical bit-by-bit walk. The bit reader feeds zero bytes past the end of the input and
 * counts them, so decoding never reads out of bounds and a truncated stream is detected as soon
 * as a padding bit is consumed. Code sets follow zlib's acceptance rules: over-subscribed sets are
 * rejected, incomplete ones only allowed for a single one-bit code (or no code at all). */
#include <string.h>
#include "codec.h"
#include "../util/util.h"

#define MAX_BITS 15
#define FAST_BITS 10
#define MAX_LIT 288
#define MAX_DIST 30

typedef struct huff {
    uint16_t count[MAX_BITS + 1];    /* codes of each length */
    uint16_t symbol[MAX_LIT];        /* symbols in canonical code order */
    uint16_t fast[1 << FAST_BITS];   /* (length << 9) | symbol, by the next FAST_BITS input bits;
                                      * 0 when the code is longer (or unused) */
} huff;

typedef struct bitin {
    const uint8_t *p, *end;
    uint64_t buf;    /* next bits, least significant first */
    int n;           /* valid bits in buf */
    size_t pad;      /* zero bytes fed after the end of the input */
} bitin;

static const uint16_t len_base[29] = {
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
    35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258 };
static const uint8_t len_extra[29] = {
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0 };
static const uint16_t dist_base[30] = {
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
    257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577 };
static const uint8_t dist_extra[30] = {
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13 };
/* The order in which a dynamic block sends the code-length code's lengths. */
static const uint8_t clen_order[19] = { 16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15 };

static void refill(bitin *b)
{
    while (b->n <= 56) {
        uint64_t v = 0;
        if (b->p < b->end)
            v = *b->p++;
        else
            b->pad++;
        b->buf |= v << b->n;
        b->n += 8;
    }
}

/* Whether a padding bit (past the end of the input) has been consumed. */
static int overrun(const bitin *b)
{
    return b->pad * 8 > (size_t)b->n;
}

static uint32_t getbits(bitin *b, int k)
{
    if (b->n < k)
        refill(b);
    uint32_t v = (uint32_t)(b->buf & (((uint64_t)1 << k) - 1));
    b->buf >>= k;
    b->n -= k;
    return v;
}

/* Builds the decoding tables from code lengths. Returns -1 for an over-subscribed set, 0 for a
 * complete one, 1 for an incomplete one of at most one one-bit code (allowed for literal/length
 * and distance codes), 2 for any other incomplete set. */
static int huff_build(huff *h, const uint8_t *len, int n)
{
    uint16_t offs[MAX_BITS + 2], next[MAX_BITS + 1];
    memset(h->count, 0, sizeof h->count);
    for (int s = 0; s < n; s++)
        h->count[len[s]]++;
    h->count[0] = 0;
    int left = 1, maxlen = 0;
    for (int l = 1; l <= MAX_BITS; l++) {
        left = 2 * left - h->count[l];
        if (left < 0)
            return -1;
        if (h->count[l])
            maxlen = l;
    }
    offs[1] = 0;
    for (int l = 1; l <= MAX_BITS; l++)
        offs[l + 1] = (uint16_t)(offs[l] + h->count[l]);
    for (int s = 0; s < n; s++)
        if (len[s])
            h->symbol[offs[len[s]]++] = (uint16_t)s;

    /* Canonical codes: the first code of each length follows the last of the previous length. */
    int code = 0;
    next[0] = 0;
    for (int l = 1; l <= MAX_BITS; l++) {
        code = (code + h->count[l - 1]) << 1;
        next[l] = (uint16_t)code;
    }
    memset(h->fast, 0, sizeof h->fast);
    for (int s = 0; s < n; s++) {
        int l = len[s];
        if (!l)
            continue;
        int c = next[l]++;
        if (l > FAST_BITS)
            continue;
        /* Codes are sent most significant bit first, the table is indexed by arrival order. */
        int r = 0;
        for (int i = 0; i < l; i++)
            r |= ((c >> i) & 1) << (l - 1 - i);
        for (int j = r; j < (1 << FAST_BITS); j += 1 << l)
            h->fast[j] = (uint16_t)((l << 9) | s);
    }
    if (left == 0)
        return 0;
    return maxlen > 1 ? 2 : 1;
}

/* Next symbol, or -1 for a bit pattern that is no code. */
static int decode(bitin *b, const huff *h)
{
    if (b->n < MAX_BITS)
        refill(b);
    unsigned e = h->fast[b->buf & ((1u << FAST_BITS) - 1)];
    if (e) {
        b->buf >>= e >> 9;
        b->n -= (int)(e >> 9);
        return (int)(e & 511);
    }
    int code = 0, first = 0, index = 0;
    for (int l = 1; l <= MAX_BITS; l++) {
        code |= (int)(b->buf & 1);
        b->buf >>= 1;
        b->n--;
        int count = h->count[l];
        if (code - first < count)
            return h->symbol[index + code - first];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return -1;
}

static mae_status truncated(void)
{
    return mae_fail(MAE_ERR_FORMAT, "deflate: the compressed data is truncated");
}

/* Literal/length and distance codes until the end-of-block code. */
static mae_status codes(bitin *b, mae_bytes *out, size_t start, const huff *lit, const huff *dist)
{
    for (;;) {
        refill(b);   /* 57+ bits: one symbol with all its extra bits needs at most 48 */
        int sym = decode(b, lit);
        if (sym < 0)
            return mae_fail(MAE_ERR_FORMAT, "deflate: invalid literal/length code");
        if (sym < 256) {
            if (out->size == out->cap) {
                mae_status s = mae_bytes_reserve(out, 1, "deflate");
                if (s != MAE_OK)
                    return s;
            }
            out->data[out->size++] = (uint8_t)sym;
        } else if (sym == 256) {
            return overrun(b) ? truncated() : MAE_OK;
        } else {
            sym -= 257;
            if (sym >= 29)
                return mae_fail(MAE_ERR_FORMAT, "deflate: invalid length symbol %d", sym + 257);
            size_t len = len_base[sym] + getbits(b, len_extra[sym]);
            int ds = decode(b, dist);
            if (ds < 0 || ds >= MAX_DIST)
                return mae_fail(MAE_ERR_FORMAT, "deflate: invalid distance code");
            size_t d = dist_base[ds] + getbits(b, dist_extra[ds]);
            if (overrun(b))
                return truncated();
            if (d > out->size - start)
                return mae_fail(MAE_ERR_FORMAT, "deflate: distance %zu reaches before the start of the data", d);
            if (out->cap - out->size < len) {
                mae_status s = mae_bytes_reserve(out, len, "deflate");
                if (s != MAE_OK)
                    return s;
            }
            /* Byte by byte: the source may overlap what this copy writes (runs). */
            uint8_t *dst = out->data + out->size;
            const uint8_t *src = dst - d;
            for (size_t i = 0; i < len; i++)
                dst[i] = src[i];
            out->size += len;
        }
        if (overrun(b))
            return truncated();
    }
}

static mae_status stored(bitin *b, mae_bytes *out)
{
    /* Skip to a byte boundary, then give the whole bytes still buffered back to the input. */
    int drop = b->n & 7;
    b->buf >>= drop;
    b->n -= drop;
    size_t buffered = (size_t)b->n / 8;
    if (b->pad > buffered)
        return truncated();
    b->p -= buffered - b->pad;
    b->buf = 0;
    b->n = 0;
    b->pad = 0;
    if (b->end - b->p < 4)
        return truncated();
    unsigned len = b->p[0] | (unsigned)b->p[1] << 8;
    unsigned nlen = b->p[2] | (unsigned)b->p[3] << 8;
    b->p += 4;
    if (len != (~nlen & 0xffffu))
        return mae_fail(MAE_ERR_FORMAT, "deflate: stored block length %u does not match its complement", len);
    if ((size_t)(b->end - b->p) < len)
        return truncated();
    mae_status s = mae_bytes_put(out, b->p, len, "deflate");
    b->p += len;
    return s;
}

static mae_status fixed(bitin *b, mae_bytes *out, size_t start)
{
    huff lit, dist;
    uint8_t len[MAX_LIT];
    for (int s = 0; s < MAX_LIT; s++)
        len[s] = (uint8_t)(s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8);
    huff_build(&lit, len, MAX_LIT);
    /* 30 five-bit codes: the set is incomplete, and codes 30 and 31 decode as invalid. */
    memset(len, 5, MAX_DIST);
    huff_build(&dist, len, MAX_DIST);
    return codes(b, out, start, &lit, &dist);
}

static mae_status dynamic(bitin *b, mae_bytes *out, size_t start)
{
    huff clen, lit, dist;
    uint8_t len[MAX_LIT + MAX_DIST];
    int hlit = (int)getbits(b, 5) + 257;
    int hdist = (int)getbits(b, 5) + 1;
    int hclen = (int)getbits(b, 4) + 4;
    if (hlit > 286 || hdist > MAX_DIST)
        return mae_fail(MAE_ERR_FORMAT, "deflate: %d literal/length or %d distance codes is too many", hlit, hdist);
    memset(len, 0, 19);
    for (int i = 0; i < hclen; i++)
        len[clen_order[i]] = (uint8_t)getbits(b, 3);
    if (huff_build(&clen, len, 19) != 0)
        return mae_fail(MAE_ERR_FORMAT, "deflate: invalid code-length code");

    int n = hlit + hdist;
    for (int i = 0; i < n;) {
        refill(b);
        int sym = decode(b, &clen);
        if (sym < 0)
            return mae_fail(MAE_ERR_FORMAT, "deflate: invalid code-length symbol");
        if (sym < 16) {
            len[i++] = (uint8_t)sym;
        } else {
            int rep, val = 0;
            if (sym == 16) {
                if (i == 0)
                    return mae_fail(MAE_ERR_FORMAT, "deflate: repeat of a code length before the first");
                val = len[i - 1];
                rep = 3 + (int)getbits(b, 2);
            } else if (sym == 17) {
                rep = 3 + (int)getbits(b, 3);
            } else {
                rep = 11 + (int)getbits(b, 7);
            }
            if (i + rep > n)
                return mae_fail(MAE_ERR_FORMAT, "deflate: code lengths run past the %d codes", n);
            memset(len + i, val, (size_t)rep);
            i += rep;
        }
        if (overrun(b))
            return truncated();
    }
    if (len[256] == 0)
        return mae_fail(MAE_ERR_FORMAT, "deflate: the block has no end-of-block code");
    int rl = huff_build(&lit, len, hlit);
    if (rl < 0 || rl > 1)
        return mae_fail(MAE_ERR_FORMAT, "deflate: invalid literal/length code lengths");
    int rd = huff_build(&dist, len + hlit, hdist);
    if (rd < 0 || rd > 1)
        return mae_fail(MAE_ERR_FORMAT, "deflate: invalid distance code lengths");
    return codes(b, out, start, &lit, &dist);
}

mae_status mae_inflate(const uint8_t *in, size_t n, size_t *used, mae_bytes *out)
{
    bitin b = { in, in + n, 0, 0, 0 };
    size_t start = out->size;
    int last;
    do {
        last = (int)getbits(&b, 1);
        int type = (int)getbits(&b, 2);
        if (overrun(&b))
            return truncated();
        mae_status s;
        switch (type) {
        case 0: s = stored(&b, out); break;
        case 1: s = fixed(&b, out, start); break;
        case 2: s = dynamic(&b, out, start); break;
        default: return mae_fail(MAE_ERR_FORMAT, "deflate: invalid block type 3");
        }
        if (s != MAE_OK)
            return s;
    } while (!last);
    if (overrun(&b))
        return truncated();
    /* The stream ends at the byte holding its last bit: return the whole unread bytes. */
    size_t buffered = (size_t)b.n / 8;
    *used = (size_t)(b.p - in) - (buffered - b.pad);
    return MAE_OK;
}
