/* DEFLATE encoder (RFC 1951) for PNG writing and the tests' gzip files.
 *
 * LZ77 with hash chains over the 32 KiB window and one step of lazy matching produces tokens;
 * every 16384 tokens become one block, sent stored, with the fixed codes or with its own dynamic
 * Huffman codes, whichever is smallest. Code lengths are limited (15 bits, 7 for the code-length
 * code) by halving the frequencies until the Huffman tree is shallow enough: simple, and within a
 * fraction of a percent of optimal on image data. */
#include <string.h>
#include "codec.h"
#include "../util/util.h"

#define WINDOW 32768
#define HASH_BITS 15
#define HASH_SIZE (1 << HASH_BITS)
#define MAX_CHAIN 64
#define NICE_LEN 128
#define MIN_MATCH 3
#define MAX_MATCH 258
#define BLOCK_TOKENS 16384
#define NLIT 286
#define NDIST 30
#define NCLEN 19

static const uint8_t clen_order[NCLEN] = { 16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15 };

/* A literal (dist 0) or a match of len bytes dist back. */
typedef struct token {
    uint16_t len;    /* the literal byte, or the match length */
    uint16_t dist;
} token;

/* A symbol with its extra bits: the length and distance codes of a match. */
typedef struct sym_extra {
    int sym, nextra;
    unsigned extra;
} sym_extra;

typedef struct bitout {
    mae_bytes *out;
    uint64_t buf;
    int n;
    mae_status err;
} bitout;

typedef struct work {
    int32_t head[HASH_SIZE];
    int32_t prev[WINDOW];
    token tok[BLOCK_TOKENS];
} work;

static int floor_log2(unsigned v)
{
    int k = 0;
    while (v >>= 1)
        k++;
    return k;
}

/* Length 3..258 -> symbol 257..285 and extra bits. */
static sym_extra length_code(unsigned len)
{
    sym_extra r = { 0, 0, 0 };
    unsigned l = len - 3;
    if (l < 8) {
        r.sym = 257 + (int)l;
    } else if (len == 258) {
        r.sym = 285;
    } else {
        int k = floor_log2(l);
        r.sym = 257 + 4 * (k - 1) + (int)((l >> (k - 2)) & 3);
        r.nextra = k - 2;
        r.extra = l & ((1u << (k - 2)) - 1);
    }
    return r;
}

/* Distance 1..32768 -> code 0..29 and extra bits. */
static sym_extra dist_code(unsigned dist)
{
    sym_extra r = { 0, 0, 0 };
    unsigned d = dist - 1;
    if (d < 4) {
        r.sym = (int)d;
    } else {
        int k = floor_log2(d);
        r.sym = 2 * k + (int)((d >> (k - 1)) & 1);
        r.nextra = k - 1;
        r.extra = d & ((1u << (k - 1)) - 1);
    }
    return r;
}

/* ---- bit output ------------------------------------------------------------------------------ */

static void flush_bytes(bitout *w)
{
    while (w->n >= 8) {
        if (w->err == MAE_OK) {
            uint8_t byte = (uint8_t)w->buf;
            w->err = mae_bytes_put(w->out, &byte, 1, "deflate");
        }
        w->buf >>= 8;
        w->n -= 8;
    }
}

static void putbits(bitout *w, unsigned v, int n)
{
    w->buf |= (uint64_t)v << w->n;
    w->n += n;
    if (w->n >= 32)
        flush_bytes(w);
}

static void align_byte(bitout *w)
{
    w->n = (w->n + 7) & ~7;
    flush_bytes(w);
}

/* ---- Huffman codes --------------------------------------------------------------------------- */

/* Code lengths of an optimal prefix code for freq[0..n), each at most limit bits. Symbols with
 * frequency 0 get length 0; if fewer than two symbols occur, each that does gets length 1. */
static void huff_lengths(const uint32_t *freq, int n, int limit, uint8_t *len)
{
    uint32_t f[NLIT];
    uint32_t w[2 * NLIT];
    int parent[2 * NLIT], alive[2 * NLIT];
    memcpy(f, freq, (size_t)n * sizeof *f);
    for (;;) {
        int nodes = 0, used = 0;
        for (int s = 0; s < n; s++) {
            w[s] = f[s];
            alive[s] = f[s] > 0;
            parent[s] = -1;
            used += alive[s];
        }
        nodes = n;
        memset(len, 0, (size_t)n);
        if (used <= 1) {
            for (int s = 0; s < n; s++)
                len[s] = (uint8_t)(f[s] > 0);
            return;
        }
        /* Merge the two lightest live nodes until one is left: O(n^2), n <= 286. */
        for (int merges = 0; merges < used - 1; merges++) {
            int a = -1, b = -1;
            for (int i = 0; i < nodes; i++) {
                if (!alive[i])
                    continue;
                if (a < 0 || w[i] < w[a]) {
                    b = a;
                    a = i;
                } else if (b < 0 || w[i] < w[b]) {
                    b = i;
                }
            }
            w[nodes] = w[a] + w[b];
            alive[nodes] = 1;
            parent[nodes] = -1;
            alive[a] = alive[b] = 0;
            parent[a] = parent[b] = nodes;
            nodes++;
        }
        int maxlen = 0;
        for (int s = 0; s < n; s++) {
            if (!f[s])
                continue;
            int d = 0;
            for (int i = s; parent[i] >= 0; i = parent[i])
                d++;
            len[s] = (uint8_t)d;
            if (d > maxlen)
                maxlen = d;
        }
        if (maxlen <= limit)
            return;
        /* Too deep: flatten the distribution (nonzero stays nonzero) and try again. */
        for (int s = 0; s < n; s++)
            if (f[s])
                f[s] = (f[s] + 1) / 2;
    }
}

/* Canonical codes for the lengths, bit-reversed for LSB-first output. */
static void huff_codes(const uint8_t *len, int n, uint16_t *code)
{
    int count[16] = { 0 }, next[16];
    for (int s = 0; s < n; s++)
        count[len[s]]++;
    count[0] = 0;
    int c = 0;
    for (int l = 1; l < 16; l++) {
        c = (c + count[l - 1]) << 1;
        next[l] = c;
    }
    for (int s = 0; s < n; s++) {
        int l = len[s];
        if (!l) {
            code[s] = 0;
            continue;
        }
        int v = next[l]++, r = 0;
        for (int i = 0; i < l; i++)
            r |= ((v >> i) & 1) << (l - 1 - i);
        code[s] = (uint16_t)r;
    }
}

/* ---- one block ------------------------------------------------------------------------------- */

typedef struct codes {
    uint8_t lit_len[NLIT + 2], dist_len[NDIST];
    uint16_t lit_code[NLIT + 2], dist_code[NDIST];
} codes;

/* The code-length sequence of a dynamic header, run-length coded with symbols 16, 17, 18. */
typedef struct header_rle {
    uint8_t sym[NLIT + NDIST], extra[NLIT + NDIST];
    int n, hlit, hdist, hclen;
    uint8_t clen_len[NCLEN];
    uint16_t clen_code[NCLEN];
} header_rle;

static void rle_lengths(const codes *c, header_rle *h)
{
    uint8_t all[NLIT + NDIST];
    h->hlit = NLIT;
    while (h->hlit > 257 && c->lit_len[h->hlit - 1] == 0)
        h->hlit--;
    h->hdist = NDIST;
    while (h->hdist > 1 && c->dist_len[h->hdist - 1] == 0)
        h->hdist--;
    memcpy(all, c->lit_len, (size_t)h->hlit);
    memcpy(all + h->hlit, c->dist_len, (size_t)h->hdist);
    int total = h->hlit + h->hdist;
    h->n = 0;
    for (int i = 0; i < total;) {
        int v = all[i], run = 1;
        while (i + run < total && all[i + run] == v)
            run++;
        i += run;
        if (v == 0) {
            while (run >= 11) {
                int r = run < 138 ? run : 138;
                h->sym[h->n] = 18; h->extra[h->n++] = (uint8_t)(r - 11);
                run -= r;
            }
            if (run >= 3) {
                h->sym[h->n] = 17; h->extra[h->n++] = (uint8_t)(run - 3);
                run = 0;
            }
        } else {
            h->sym[h->n] = (uint8_t)v; h->extra[h->n++] = 0;
            run--;
            while (run >= 3) {
                int r = run < 6 ? run : 6;
                h->sym[h->n] = 16; h->extra[h->n++] = (uint8_t)(r - 3);
                run -= r;
            }
        }
        while (run-- > 0) {
            h->sym[h->n] = (uint8_t)v; h->extra[h->n++] = 0;
        }
    }
    uint32_t freq[NCLEN] = { 0 };
    for (int i = 0; i < h->n; i++)
        freq[h->sym[i]]++;
    huff_lengths(freq, NCLEN, 7, h->clen_len);
    huff_codes(h->clen_len, NCLEN, h->clen_code);
    h->hclen = NCLEN;
    while (h->hclen > 4 && h->clen_len[clen_order[h->hclen - 1]] == 0)
        h->hclen--;
}

static const int rle_extra_bits[3] = { 2, 3, 7 };   /* for symbols 16, 17, 18 */

static size_t header_bits(const header_rle *h)
{
    size_t bits = 5 + 5 + 4 + 3 * (size_t)h->hclen;
    for (int i = 0; i < h->n; i++)
        bits += h->clen_len[h->sym[i]] + (h->sym[i] >= 16 ? rle_extra_bits[h->sym[i] - 16] : 0);
    return bits;
}

/* Bits of the tokens and the end-of-block code under c. */
static size_t token_bits(const codes *c, const token *t, int nt)
{
    size_t bits = c->lit_len[256];
    for (int i = 0; i < nt; i++) {
        if (!t[i].dist) {
            bits += c->lit_len[t[i].len];
        } else {
            sym_extra l = length_code(t[i].len), d = dist_code(t[i].dist);
            bits += (size_t)c->lit_len[l.sym] + (size_t)l.nextra + c->dist_len[d.sym] + (size_t)d.nextra;
        }
    }
    return bits;
}

static void put_tokens(bitout *w, const codes *c, const token *t, int nt)
{
    for (int i = 0; i < nt; i++) {
        if (!t[i].dist) {
            putbits(w, c->lit_code[t[i].len], c->lit_len[t[i].len]);
        } else {
            sym_extra l = length_code(t[i].len), d = dist_code(t[i].dist);
            putbits(w, c->lit_code[l.sym], c->lit_len[l.sym]);
            putbits(w, l.extra, l.nextra);
            putbits(w, c->dist_code[d.sym], c->dist_len[d.sym]);
            putbits(w, d.extra, d.nextra);
        }
    }
    putbits(w, c->lit_code[256], c->lit_len[256]);
}

static void fixed_codes(codes *c)
{
    for (int s = 0; s < NLIT + 2; s++)
        c->lit_len[s] = (uint8_t)(s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8);
    memset(c->dist_len, 5, NDIST);
    huff_codes(c->lit_len, NLIT + 2, c->lit_code);
    huff_codes(c->dist_len, NDIST, c->dist_code);
}

/* Sends tokens t[0..nt), which encode in[0..n), as the smallest of the three block kinds. */
static void put_block(bitout *w, const token *t, int nt, const uint8_t *in, size_t n, int last)
{
    uint32_t lf[NLIT] = { 0 }, df[NDIST] = { 0 };
    for (int i = 0; i < nt; i++) {
        if (!t[i].dist) {
            lf[t[i].len]++;
        } else {
            lf[length_code(t[i].len).sym]++;
            df[dist_code(t[i].dist).sym]++;
        }
    }
    lf[256] = 1;
    /* Without matches, still send one distance code: some decoders reject an empty set. */
    int any_dist = 0;
    for (int i = 0; i < NDIST; i++)
        any_dist |= df[i] != 0;
    if (!any_dist)
        df[0] = 1;
    codes dyn, fix;
    huff_lengths(lf, NLIT, 15, dyn.lit_len);
    dyn.lit_len[NLIT] = dyn.lit_len[NLIT + 1] = 0;
    huff_lengths(df, NDIST, 15, dyn.dist_len);
    huff_codes(dyn.lit_len, NLIT, dyn.lit_code);
    huff_codes(dyn.dist_len, NDIST, dyn.dist_code);
    fixed_codes(&fix);
    header_rle h;
    rle_lengths(&dyn, &h);

    size_t dyn_bits = 3 + header_bits(&h) + token_bits(&dyn, t, nt);
    size_t fix_bits = 3 + token_bits(&fix, t, nt);
    /* Stored: up to 65535 bytes per block, each with its header, alignment and LEN/NLEN. */
    size_t pieces = n ? (n + 65534) / 65535 : 1;
    size_t stored_bits = pieces * (3 + 7 + 32) + 8 * n;

    if (stored_bits < dyn_bits && stored_bits < fix_bits) {
        size_t off = 0;
        do {
            size_t len = n - off < 65535 ? n - off : 65535;
            putbits(w, (last && off + len == n) ? 1u : 0u, 1);
            putbits(w, 0, 2);
            align_byte(w);
            putbits(w, (unsigned)len, 16);
            putbits(w, (unsigned)len ^ 0xffffu, 16);
            flush_bytes(w);
            if (w->err == MAE_OK)
                w->err = mae_bytes_put(w->out, in + off, len, "deflate");
            off += len;
        } while (off < n);
    } else if (fix_bits <= dyn_bits) {
        putbits(w, (unsigned)last, 1);
        putbits(w, 1, 2);
        put_tokens(w, &fix, t, nt);
    } else {
        putbits(w, (unsigned)last, 1);
        putbits(w, 2, 2);
        putbits(w, (unsigned)(h.hlit - 257), 5);
        putbits(w, (unsigned)(h.hdist - 1), 5);
        putbits(w, (unsigned)(h.hclen - 4), 4);
        for (int i = 0; i < h.hclen; i++)
            putbits(w, h.clen_len[clen_order[i]], 3);
        for (int i = 0; i < h.n; i++) {
            int s = h.sym[i];
            putbits(w, h.clen_code[s], h.clen_len[s]);
            if (s >= 16)
                putbits(w, h.extra[i], rle_extra_bits[s - 16]);
        }
        put_tokens(w, &dyn, t, nt);
    }
}

/* ---- LZ77 ------------------------------------------------------------------------------------ */

static unsigned hash3(const uint8_t *p)
{
    return ((unsigned)p[0] << 10 ^ (unsigned)p[1] << 5 ^ p[2]) & (HASH_SIZE - 1);
}

static void insert(work *wk, const uint8_t *in, size_t i)
{
    unsigned h = hash3(in + i);
    wk->prev[i & (WINDOW - 1)] = wk->head[h];
    wk->head[h] = (int32_t)i;
}

/* Longest match for position i among earlier positions in the window (i not yet inserted). */
static int longest(const work *wk, const uint8_t *in, size_t n, size_t i, int *dist)
{
    size_t maxlen = n - i < MAX_MATCH ? n - i : MAX_MATCH;
    int best = 0;
    if (maxlen < MIN_MATCH)
        return 0;
    int32_t cand = wk->head[hash3(in + i)];
    for (int chain = 0; chain < MAX_CHAIN && cand >= 0 && i - (size_t)cand <= WINDOW; chain++) {
        const uint8_t *a = in + cand, *b = in + i;
        if (a[best] == b[best]) {
            size_t l = 0;
            while (l < maxlen && a[l] == b[l])
                l++;
            if ((int)l > best) {
                best = (int)l;
                *dist = (int)(i - (size_t)cand);
                if (l == maxlen || best >= NICE_LEN)
                    break;
            }
        }
        int32_t next = wk->prev[cand & (WINDOW - 1)];
        if (next >= cand)   /* a slot reused by a newer position: the chain ends here */
            break;
        cand = next;
    }
    return best >= MIN_MATCH ? best : 0;
}

mae_status mae_deflate(const uint8_t *in, size_t n, mae_bytes *out)
{
    if (n > (size_t)INT32_MAX)
        return mae_fail(MAE_ERR_UNSUPPORTED, "deflate: %zu bytes is more than this encoder takes", n);
    work *wk = mae_alloc(sizeof *wk);
    if (!wk)
        return mae_fail(MAE_ERR_NOMEM, "deflate: cannot allocate the match finder");
    for (int i = 0; i < HASH_SIZE; i++)
        wk->head[i] = -1;
    bitout w = { out, 0, 0, MAE_OK };
    int nt = 0;
    size_t block_start = 0, i = 0;
    while (i < n) {
        int dist = 0, len = longest(wk, in, n, i, &dist);
        if (n - i >= MIN_MATCH)
            insert(wk, in, i);
        /* Lazy matching: a longer match one byte later wins over this one. */
        if (len && len < NICE_LEN && i + 1 < n) {
            int dist2 = 0, len2 = longest(wk, in, n, i + 1, &dist2);
            if (len2 > len)
                len = 0;
        }
        if (len) {
            wk->tok[nt].len = (uint16_t)len;
            wk->tok[nt].dist = (uint16_t)dist;
            for (size_t j = i + 1; j < i + (size_t)len && n - j >= MIN_MATCH; j++)
                insert(wk, in, j);
            i += (size_t)len;
        } else {
            wk->tok[nt].len = in[i];
            wk->tok[nt].dist = 0;
            i++;
        }
        if (++nt == BLOCK_TOKENS) {
            put_block(&w, wk->tok, nt, in + block_start, i - block_start, i == n);
            block_start = i;
            nt = 0;
        }
    }
    if (nt > 0 || n == 0)
        put_block(&w, wk->tok, nt, in + block_start, i - block_start, 1);
    align_byte(&w);
    mae_free(wk);
    return w.err;
}
