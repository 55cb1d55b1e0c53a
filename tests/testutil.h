/* A few helpers every test uses: checks that count failures, random data, error measures. */
#ifndef MAE_TESTUTIL_H
#define MAE_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mae.h"

static int tu_failures = 0;
static int tu_checks = 0;

#define CHECK(cond, ...) do { \
    tu_checks++; \
    if (!(cond)) { tu_failures++; fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
                   fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } while (0)

#define CHECK_OK(expr) do { mae_status s_ = (expr); \
    CHECK(s_ == MAE_OK, "%s -> %s: %s", #expr, mae_status_str(s_), mae_last_error()); } while (0)

static inline int tu_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

/* xorshift for test data: independent of the library's RNG */
static uint64_t tu_state = 0x9E3779B97F4A7C15ull;
static inline void tu_seed(uint64_t s) { tu_state = s * 2654435761u + 0x9E3779B97F4A7C15ull; }
static inline double tu_uniform(void)
{
    tu_state ^= tu_state << 13; tu_state ^= tu_state >> 7; tu_state ^= tu_state << 17;
    return (double)(tu_state >> 11) * (1.0 / 9007199254740992.0);
}
static inline void tu_fill(float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * tu_uniform());
}
/* NaN poison so that an unwritten output element fails every comparison */
static inline void tu_poison(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

/* ||a - b|| / ||b|| in double; NaN anywhere gives +inf */
static inline double tu_rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i]))
            return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline void *tu_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "test: out of memory\n"); exit(2); }
    return p;
}

/* A whole file into memory (free it), *size its length; NULL if it cannot be read. */
static inline unsigned char *tu_read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    *size = 0;
    if (!fp)
        return NULL;
    long n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    unsigned char *b = n >= 0 && fseek(fp, 0, SEEK_SET) == 0 ? tu_malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    if (b)
        *size = (size_t)n;
    return b;
}

/* Reference files (the .safetensors files of tests/data), for tests that include
 * src/io/safetensors.h before this header. */
#ifdef MAE_SAFETENSORS_H
/* A tensor of the file as float32, checked to hold `count` values; NULL (and a failed check) if
 * it is missing or has another size. The caller frees it. */
static inline float *tu_st_tensor(const mae_st_file *f, const char *name, size_t count)
{
    const mae_st_entry *e = mae_st_find(f, name);
    CHECK(e != NULL, "reference tensor %s is missing", name);
    if (!e)
        return NULL;
    CHECK(e->count == count, "reference tensor %s has %zu values, expected %zu", name, e->count, count);
    if (e->count != count)
        return NULL;
    float *x = tu_malloc(count * sizeof *x);
    mae_status s = mae_st_read_f32(f, e, x, count);
    CHECK(s == MAE_OK, "reading reference tensor %s: %s", name, mae_last_error());
    if (s != MAE_OK) {
        free(x);
        return NULL;
    }
    return x;
}
#endif

#endif
