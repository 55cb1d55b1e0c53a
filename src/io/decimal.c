/* Decimal numbers as text, independent of the caller's locale (LC_NUMERIC): the numbers of JSON
 * (json.c) and of __metadata__ values (config_meta.c, trainer_ckpt.c, hf_config.c). strtod and
 * printf follow the locale, which a host application may have set to a decimal comma. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "decimal.h"

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
