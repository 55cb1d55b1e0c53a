/* The JSON pull parser of json.h. Strict RFC 8259 syntax; nothing beyond the given length is
 * ever read. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "json.h"
#include "../util/util.h"

#define MAX_DEPTH 64   /* nesting that mae_json_skip follows before it gives up */

void mae_json_init(mae_json *j, const char *s, size_t n, size_t base)
{
    j->s = s;
    j->n = n;
    j->pos = 0;
    j->base = base;
    j->unit = "header byte";
}

void mae_json_init_text(mae_json *j, const char *s, size_t n)
{
    mae_json_init(j, s, n, 0);
    j->unit = "byte";
}

static void skip_ws(mae_json *j)
{
    while (j->pos < j->n) {
        char c = j->s[j->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        j->pos++;
    }
}

int mae_json_peek(mae_json *j)
{
    skip_ws(j);
    return j->pos < j->n ? (unsigned char)j->s[j->pos] : -1;
}

size_t mae_json_where(mae_json *j)
{
    skip_ws(j);
    return j->base + j->pos;
}

static mae_status expected(mae_json *j, const char *what)
{
    int c = mae_json_peek(j);
    if (c < 0)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: unexpected end of the %s, expected %s", j->unit,
                        j->base + j->pos, strcmp(j->unit, "byte") == 0 ? "text" : "header", what);
    if (c >= 0x20 && c < 0x7f)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: expected %s, found '%c'", j->unit, j->base + j->pos, what, c);
    return mae_fail(MAE_ERR_FORMAT, "%s %zu: expected %s, found byte 0x%02x", j->unit, j->base + j->pos, what, c);
}

static mae_status expect_char(mae_json *j, char c, const char *what)
{
    if (mae_json_peek(j) != (unsigned char)c)
        return expected(j, what);
    j->pos++;
    return MAE_OK;
}

mae_status mae_json_open(mae_json *j, char bracket)
{
    return expect_char(j, bracket, bracket == '{' ? "'{'" : "'['");
}

mae_status mae_json_colon(mae_json *j)
{
    return expect_char(j, ':', "':'");
}

mae_status mae_json_next(mae_json *j, char close, int index, int *more)
{
    int c = mae_json_peek(j);
    if (c == (unsigned char)close) {
        j->pos++;
        *more = 0;
        return MAE_OK;
    }
    if (index > 0) {
        mae_status s = expect_char(j, ',', close == '}' ? "',' or '}'" : "',' or ']'");
        if (s != MAE_OK)
            return s;
    }
    *more = 1;
    return MAE_OK;
}

/* ---- strings -------------------------------------------------------------------------------- */

static int hex4(const char *p, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return 0;
        x = x * 16 + d;
    }
    *v = x;
    return 1;
}

/* Appends one byte to the decoded string, as far as it fits. */
static void put(char *out, size_t cap, size_t *len, unsigned char b)
{
    if (out && *len + 1 < cap)
        out[*len] = (char)b;
    (*len)++;
}

static void put_utf8(char *out, size_t cap, size_t *len, unsigned cp)
{
    if (cp < 0x80) {
        put(out, cap, len, (unsigned char)cp);
    } else if (cp < 0x800) {
        put(out, cap, len, (unsigned char)(0xC0 | cp >> 6));
        put(out, cap, len, (unsigned char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        put(out, cap, len, (unsigned char)(0xE0 | cp >> 12));
        put(out, cap, len, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        put(out, cap, len, (unsigned char)(0x80 | (cp & 0x3F)));
    } else {
        put(out, cap, len, (unsigned char)(0xF0 | cp >> 18));
        put(out, cap, len, (unsigned char)(0x80 | (cp >> 12 & 0x3F)));
        put(out, cap, len, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
        put(out, cap, len, (unsigned char)(0x80 | (cp & 0x3F)));
    }
}

/* A \u escape at j->pos (after the backslash and 'u'), with its low surrogate if it is a high
 * one: the code point, or a format error. */
static mae_status unicode_escape(mae_json *j, unsigned *cp)
{
    size_t at = j->base + j->pos - 2;
    unsigned hi, lo;
    if (j->n - j->pos < 4 || !hex4(j->s + j->pos, &hi))
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad \\u escape", j->unit, at);
    j->pos += 4;
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: lone low surrogate in \\u escape", j->unit, at);
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = hi;
        return MAE_OK;
    }
    if (j->n - j->pos < 6 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u' ||
        !hex4(j->s + j->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: high surrogate without its low half", j->unit, at);
    j->pos += 6;
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return MAE_OK;
}

mae_status mae_json_string(mae_json *j, char *out, size_t cap, size_t *len)
{
    size_t start = mae_json_where(j), n = 0;
    mae_status s = expect_char(j, '"', "a string");
    if (s != MAE_OK)
        return s;
    for (;;) {
        if (j->pos >= j->n)
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: string not terminated", j->unit, start);
        unsigned char c = (unsigned char)j->s[j->pos++];
        if (c == '"')
            break;
        if (c < 0x20)
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: control character 0x%02x in a string", j->unit,
                            j->base + j->pos - 1, c);
        if (c != '\\') {
            put(out, cap, &n, c);
            continue;
        }
        if (j->pos >= j->n)
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: string not terminated", j->unit, start);
        char e = j->s[j->pos++];
        unsigned cp = 0;
        switch (e) {
        case '"': case '\\': case '/': put(out, cap, &n, (unsigned char)e); break;
        case 'b': put(out, cap, &n, '\b'); break;
        case 'f': put(out, cap, &n, '\f'); break;
        case 'n': put(out, cap, &n, '\n'); break;
        case 'r': put(out, cap, &n, '\r'); break;
        case 't': put(out, cap, &n, '\t'); break;
        case 'u':
            if ((s = unicode_escape(j, &cp)) != MAE_OK)
                return s;
            put_utf8(out, cap, &n, cp);
            break;
        default:
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad escape in a string", j->unit, j->base + j->pos - 2);
        }
    }
    if (out && cap > 0)
        out[n < cap ? n : cap - 1] = '\0';
    if (len)
        *len = n;
    return MAE_OK;
}

/* ---- numbers and other values --------------------------------------------------------------- */

static int is_digit(mae_json *j)
{
    return j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9';
}

mae_status mae_json_uint(mae_json *j, uint64_t max, uint64_t *v)
{
    size_t at = mae_json_where(j), start = j->pos;
    if (!is_digit(j))
        return expected(j, "a non-negative integer");
    uint64_t x = 0;
    while (is_digit(j)) {
        unsigned d = (unsigned)(j->s[j->pos++] - '0');
        if (d > max || x > (max - d) / 10)
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: integer larger than %llu", j->unit, at,
                            (unsigned long long)max);
        x = x * 10 + d;
    }
    if (j->s[start] == '0' && j->pos - start > 1)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: integer with a leading zero", j->unit, at);
    if (j->pos < j->n && (j->s[j->pos] == '.' || j->s[j->pos] == 'e' || j->s[j->pos] == 'E'))
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: expected an integer, found a fraction", j->unit, at);
    *v = x;
    return MAE_OK;
}

/* Any JSON number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static mae_status skip_number(mae_json *j)
{
    size_t at = j->base + j->pos;
    if (j->pos < j->n && j->s[j->pos] == '-')
        j->pos++;
    if (!is_digit(j))
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad number", j->unit, at);
    if (j->s[j->pos] == '0')
        j->pos++;
    else
        while (is_digit(j))
            j->pos++;
    if (j->pos < j->n && j->s[j->pos] == '.') {
        j->pos++;
        if (!is_digit(j))
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad number", j->unit, at);
        while (is_digit(j))
            j->pos++;
    }
    if (j->pos < j->n && (j->s[j->pos] == 'e' || j->s[j->pos] == 'E')) {
        j->pos++;
        if (j->pos < j->n && (j->s[j->pos] == '+' || j->s[j->pos] == '-'))
            j->pos++;
        if (!is_digit(j))
            return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad number", j->unit, at);
        while (is_digit(j))
            j->pos++;
    }
    return MAE_OK;
}

mae_status mae_json_number(mae_json *j, double *v)
{
    size_t at = mae_json_where(j), start = j->pos;
    mae_status s = skip_number(j);
    if (s != MAE_OK)
        return s;
    char buf[64];
    size_t len = j->pos - start;
    if (len >= sizeof buf)   /* more digits than any double needs: refused, not silently cut */
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: number longer than %zu characters", j->unit, at, sizeof buf - 1);
    memcpy(buf, j->s + start, len);
    buf[len] = '\0';
    if (!mae_decimal_parse(buf, v))
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: bad number", j->unit, at);   /* cannot happen after skip_number */
    return MAE_OK;
}

static mae_status skip_literal(mae_json *j, const char *word);

mae_status mae_json_bool(mae_json *j, int *v)
{
    int c = mae_json_peek(j);
    if (c == 't' && skip_literal(j, "true") == MAE_OK) {
        *v = 1;
        return MAE_OK;
    }
    if (c == 'f' && skip_literal(j, "false") == MAE_OK) {
        *v = 0;
        return MAE_OK;
    }
    return expected(j, "true or false");
}

static mae_status skip_literal(mae_json *j, const char *word)
{
    size_t len = strlen(word);
    if (j->n - j->pos < len || memcmp(j->s + j->pos, word, len) != 0)
        return expected(j, "a JSON value");
    j->pos += len;
    return MAE_OK;
}

static mae_status skip_value(mae_json *j, int depth)
{
    int c = mae_json_peek(j);
    if (c == '"')
        return mae_json_string(j, NULL, 0, NULL);
    if (c == '-' || (c >= '0' && c <= '9'))
        return skip_number(j);
    if (c == 't')
        return skip_literal(j, "true");
    if (c == 'f')
        return skip_literal(j, "false");
    if (c == 'n')
        return skip_literal(j, "null");
    if (c != '{' && c != '[')
        return expected(j, "a JSON value");
    if (depth >= MAX_DEPTH)
        return mae_fail(MAE_ERR_FORMAT, "%s %zu: values nested deeper than %d", j->unit, j->base + j->pos, MAX_DEPTH);
    char close = c == '{' ? '}' : ']';
    j->pos++;
    int more = 1;
    mae_status s;
    for (int i = 0;; i++) {
        if ((s = mae_json_next(j, close, i, &more)) != MAE_OK || !more)
            return s;
        if (close == '}' && ((s = mae_json_string(j, NULL, 0, NULL)) != MAE_OK || (s = mae_json_colon(j)) != MAE_OK))
            return s;
        if ((s = skip_value(j, depth + 1)) != MAE_OK)
            return s;
    }
}

mae_status mae_json_skip(mae_json *j)
{
    return skip_value(j, 0);
}

/* ---- decimal text outside JSON (metadata values) -------------------------------------------- */

/* An unsigned big integer, little-endian 32-bit words: enough for m * 10^e and (2M+1) * 2^k
 * over the exponents mae_decimal_parse lets through (about 2200 bits at most). */
enum { BIG_WORDS = 96 };
typedef struct big {
    uint32_t w[BIG_WORDS];
    int n;
} big;

static void big_set(big *b, uint64_t v)
{
    b->w[0] = (uint32_t)v;
    b->w[1] = (uint32_t)(v >> 32);
    b->n = b->w[1] ? 2 : b->w[0] ? 1 : 0;
}

static void big_mul(big *b, uint32_t f)
{
    uint64_t carry = 0;
    for (int i = 0; i < b->n; i++) {
        uint64_t t = (uint64_t)b->w[i] * f + carry;
        b->w[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry && b->n < BIG_WORDS)
        b->w[b->n++] = (uint32_t)carry;
}

static void big_pow5(big *b, int e)
{
    for (; e >= 13; e -= 13)
        big_mul(b, 1220703125u);   /* 5^13 */
    uint32_t f = 1;
    while (e-- > 0)
        f *= 5;
    big_mul(b, f);
}

static void big_shl(big *b, int bits)
{
    int words = bits / 32, r = bits % 32;
    if (b->n == 0)
        return;
    if (r) {
        uint32_t carry = 0;
        for (int i = 0; i < b->n; i++) {
            uint32_t v = b->w[i];
            b->w[i] = (v << r) | carry;
            carry = v >> (32 - r);
        }
        if (carry && b->n < BIG_WORDS)
            b->w[b->n++] = carry;
    }
    if (words && b->n + words <= BIG_WORDS) {
        memmove(b->w + words, b->w, (size_t)b->n * sizeof *b->w);
        memset(b->w, 0, (size_t)words * sizeof *b->w);
        b->n += words;
    }
}

static int big_cmp(const big *a, const big *b)
{
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (int i = a->n - 1; i >= 0; i--)
        if (a->w[i] != b->w[i])
            return a->w[i] < b->w[i] ? -1 : 1;
    return 0;
}

/* Sign of m * 10^e - n * 2^k, exactly. */
static int cmp_dec_bin(uint64_t m, long e, uint64_t n, int k)
{
    big l, r;
    big_set(&l, m);
    big_set(&r, n);
    if (e >= 0)
        big_pow5(&l, (int)e);
    else
        big_pow5(&r, (int)-e);
    long d = e - k;   /* the powers of two: 2^e on the left, 2^k on the right */
    if (d > 0)
        big_shl(&l, (int)d);
    else
        big_shl(&r, (int)-d);
    return big_cmp(&l, &r);
}

/* x = M * 2^E with M an integer of at most 53 bits (x finite, > 0). */
static void split(double x, uint64_t *M, int *E)
{
    int ex;
    double fr = frexp(x, &ex);
    *M = (uint64_t)ldexp(fr, 53);
    *E = ex - 53;
    if (*E < -1074) {   /* subnormal: the low bits are zero */
        *M >>= -1074 - *E;
        *E = -1074;
    }
}

/* The double nearest to m * 10^e (ties to even), from an estimate x a few ulps away: step to the
 * neighbour while the value lies beyond the midpoint between x and it (exact comparisons). */
static double round_exact(uint64_t m, long e, double x)
{
    if (x == 0.0)
        x = nextafter(0.0, 1.0);
    if (isinf(x))
        x = DBL_MAX;
    for (int it = 0; it < 200 && x != 0.0 && !isinf(x); it++) {
        uint64_t M;
        int E;
        split(x, &M, &E);
        int c = cmp_dec_bin(m, e, 2 * M + 1, E - 1);            /* against the midpoint above */
        if (c > 0 || (c == 0 && (M & 1))) {
            x = nextafter(x, INFINITY);
            continue;
        }
        int pow2 = M == (1ull << 52) && E > -1074;              /* the gap below is half as wide */
        c = pow2 ? cmp_dec_bin(m, e, 4 * M - 1, E - 2) : cmp_dec_bin(m, e, 2 * M - 1, E - 1);
        if (c < 0 || (c == 0 && (M & 1))) {
            x = nextafter(x, 0.0);
            continue;
        }
        break;
    }
    return x;
}

/* Decimal digits to a double without strtod, whose decimal point follows the caller's locale.
 * Up to 19 significant digits are kept (further ones are dropped); the result is the double
 * nearest to them: m * 10^e is one correctly rounded operation when m < 2^53 and |e| <= 22
 * (10^e is exact in a double), and otherwise an estimate corrected by exact big-integer
 * comparisons, so every %.17g double and %.9g float reads back exactly. */
int mae_decimal_parse(const char *s, double *v)
{
    static const double p10[23] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
    const char *p = s;
    int neg = 0, digits = 0, kept = 0;
    long exp10 = 0;
    uint64_t m = 0;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    for (int frac = 0;; p++) {
        if (*p == '.' && !frac) {
            frac = 1;
            continue;
        }
        if (*p < '0' || *p > '9')
            break;
        digits++;
        if (kept < 19) {
            if (m != 0 || *p != '0')
                kept++;
            m = m * 10 + (uint64_t)(*p - '0');
            exp10 -= frac;
        } else {
            exp10 += !frac;   /* a dropped integer digit scales; a dropped fraction digit does not */
        }
    }
    if (digits == 0)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        int eneg = 0;
        long e = 0;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        if (*p < '0' || *p > '9')
            return 0;
        for (; *p >= '0' && *p <= '9'; p++)
            if (e < 100000)
                e = e * 10 + (*p - '0');
        exp10 += eneg ? -e : e;
    }
    if (*p != '\0')
        return 0;
    double x;
    if (m == 0 || exp10 < -343) {            /* below 10^19 * 10^-344, under half the least subnormal */
        x = 0.0;
    } else if (exp10 > 309) {                /* at least 10^310 */
        x = INFINITY;
    } else if (m < (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
        x = exp10 >= 0 ? (double)m * p10[exp10] : (double)m / p10[-exp10];
    } else {
        x = (double)m;
        for (long e = exp10; e > 0; e -= 22)
            x *= p10[e > 22 ? 22 : e];
        for (long e = -exp10; e > 0; e -= 22)
            x /= p10[e > 22 ? 22 : e];
        x = round_exact(m, exp10, x);
    }
    *v = neg ? -x : x;
    return 1;
}

void mae_decimal_format(char *buf, size_t cap, double v, int digits)
{
    snprintf(buf, cap, "%.*g", digits, v);
    for (char *p = buf; *p; p++)   /* a locale may have printed a decimal comma */
        if (*p == ',')
            *p = '.';
}
