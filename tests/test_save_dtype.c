/* mae_model_save_as (src/io/checkpoint.c) and the writer's F16/BF16 output (src/io/safetensors.c)
 * against conversions of the test's own: a reference that finds the nearest half (bfloat16) by
 * searching the decoded values in double, ties to the even one, checked on every float around every
 * half's rounding boundaries, on random floats and on hand-made special values (signed zeros,
 * subnormals, ties, carries into the next binade, NaN, inf, the overflow threshold). A tiny
 * model saved as F16 / BF16 loads back to exactly the reference's values, with the same config
 * and metadata, a data section half the F32 one and a forward loss within 1e-2 of the F32
 * model's; a value beyond the range is refused with the file at the path left as it was. */
#include <dirent.h>
#include <float.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"
#include "../src/io/safetensors.h"

static char dir[64];

/* ---- the reference conversions ------------------------------------------------------------- */

static float from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static uint32_t to_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* The value of a non-negative finite half bit pattern by its definition; 0x7C00 stands for 2^16,
 * where rounding would go if the exponent were unbounded. */
static double half_value(uint32_t h)
{
    uint32_t e = h >> 10, m = h & 0x3FF;
    return e == 0 ? ldexp((double)m, -24) : ldexp((double)(1024 + m), (int)e - 25);
}

/* The half nearest to x (ties to the even bit pattern), by binary search over the 31744 finite
 * non-negative halves, which increase with their bits. 0x7C00 | sign means x rounds to infinity
 * (*overflow set when x is finite). NaN: 0xFFFF (the caller checks NaN separately). */
static uint32_t ref_half(float x, int *overflow)
{
    if (isnan(x))
        return 0xFFFF;
    uint32_t sign = signbit(x) ? 0x8000u : 0;
    double a = fabs((double)x);
    if (isinf(x))
        return sign | 0x7C00u;
    uint32_t lo = 0, hi = 0x7BFF;   /* the largest h with half_value(h) <= a */
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (half_value(mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    double down = a - half_value(lo), up = half_value(lo + 1) - a;   /* both exact in double */
    uint32_t h = up < down || (up == down && (lo & 1)) ? lo + 1 : lo;
    if (h == 0x7C00u)
        *overflow = 1;
    return sign | h;
}

/* The bfloat16 nearest to x, ties to even, from the two candidates around |x| compared in double. */
static uint32_t ref_bf16(float x, int *overflow)
{
    if (isnan(x))
        return 0xFFFF;
    uint32_t u = to_bits(x), sign = u >> 16 & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a == 0x7F800000u)
        return sign | 0x7F80u;
    uint32_t lo = a & 0xFFFF0000u, hi = lo + 0x10000u;
    double vx = (double)from_bits(a), vlo = (double)from_bits(lo);
    double vhi = hi == 0x7F800000u ? ldexp(1.0, 128) : (double)from_bits(hi);
    double down = vx - vlo, up = vhi - vx;
    uint32_t r = (up < down || (up == down && (lo >> 16 & 1)) ? hi : lo) >> 16;
    if (r == 0x7F80u)
        *overflow = 1;
    return sign | r;
}

/* ---- the writer on constructed values ----------------------------------------------------- */

static int same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* No "<name>.tmp.*" left behind in dir. */
static int no_temp_files(void)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int clean = 1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            clean = 0;
    closedir(d);
    return clean;
}

/* Writes x[0..n) as one tensor in dtype, reads the raw 16-bit patterns back and compares each
 * with the reference. */
/* A file's bytes in memory (*buf, to free after mae_st_close), parsed: f.data holds the stored
 * patterns (a file opened from its path has no f.data: its tensors are read from the file). */
static mae_status open_image(const char *path, mae_st_file *f, unsigned char **buf)
{
    size_t size;
    *buf = tu_read_file(path, &size);
    memset(f, 0, sizeof *f);
    return *buf ? mae_st_parse(*buf, size, f) : MAE_ERR_IO;
}

static void check_writer(int dtype, const float *x, size_t n, const char *what)
{
    char path[128];
    snprintf(path, sizeof path, "%s/values.safetensors", dir);
    int64_t shape[1] = { (int64_t)n };
    mae_st_out t = { "values", x, 1, shape };
    mae_status s = mae_st_write_as(path, &t, 1, NULL, 0, dtype, NULL, NULL);
    CHECK(s == MAE_OK, "%s: writing %zu values: %s", what, n, mae_last_error());
    if (s != MAE_OK)
        return;
    mae_st_file f;
    unsigned char *image = NULL;
    CHECK_OK(open_image(path, &f, &image));
    const mae_st_entry *e = f.n == 1 ? &f.t[0] : NULL;
    CHECK(e && e->dtype == dtype && e->count == n && e->end - e->begin == 2 * n, "%s: the file's entry", what);
    if (!e || e->dtype != dtype || e->count != n) {
        mae_st_close(&f);
        free(image);
        return;
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = f.data + e->begin + 2 * i;
        uint32_t got = (uint32_t)p[0] | (uint32_t)p[1] << 8, want;
        int overflow = 0, ok;
        if (isnan(x[i])) {   /* a NaN of the same sign */
            uint32_t exp_all = dtype == MAE_DT_F16 ? 0x7C00u : 0x7F80u;
            ok = (got & exp_all) == exp_all && (got & ~(exp_all | 0x8000u)) != 0 && (got >> 15) == (to_bits(x[i]) >> 31);
            want = 0;
        } else {
            want = dtype == MAE_DT_F16 ? ref_half(x[i], &overflow) : ref_bf16(x[i], &overflow);
            ok = got == want;
        }
        if (!ok && bad++ < 5)
            CHECK(0, "%s: %a (0x%08x) -> 0x%04x, the reference 0x%04x", what, (double)x[i], to_bits(x[i]), got, want);
    }
    CHECK(bad == 0, "%s: %zu of %zu values differ from the reference", what, bad, n);
    /* and the reader gives back the values the patterns mean */
    float *y = tu_malloc(n * sizeof *y);
    tu_poison(y, n);
    CHECK_OK(mae_st_read_f32(&f, e, y, n));
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = f.data + e->begin + 2 * i;
        uint32_t got = (uint32_t)p[0] | (uint32_t)p[1] << 8;
        if (isnan(x[i])) {
            wrong += !isnan(y[i]);
            continue;
        }
        double v;
        if (dtype == MAE_DT_F16)
            v = (got & 0x7C00u) == 0x7C00u ? INFINITY : half_value(got & 0x7FFFu);
        else
            v = (double)from_bits(got << 16 & 0x7FFFFFFFu);
        if (got & 0x8000u)
            v = -v;
        wrong += !((double)y[i] == v && !signbit(y[i]) == !signbit(v));
    }
    CHECK(wrong == 0, "%s: %zu values read back differently", what, wrong);
    free(y);
    mae_st_close(&f);
    free(image);
}

/* Three floats around every rounding boundary (the midpoints between neighbouring finite
 * non-negative halves, and the last one's upper limit 65520): one ulp below, on it, one above;
 * each with both signs. The halves themselves too. */
static void test_f16_boundaries(void)
{
    size_t cap = 0x7C00u * 8, n = 0;
    float *x = tu_malloc(cap * sizeof *x);
    for (uint32_t h = 0; h < 0x7C00u; h++) {
        double mid = (half_value(h) + half_value(h + 1)) / 2;   /* exact: one more bit */
        float m = (float)mid;
        CHECK((double)m == mid, "midpoint after 0x%04x is not a float", h);
        float c[4] = { nextafterf(m, 0), m, nextafterf(m, INFINITY), (float)half_value(h) };
        for (int k = 0; k < 4; k++) {
            if (h == 0x7BFF && k > 0 && k < 3)
                continue;   /* 65520 and above overflow: refused, tested below */
            x[n++] = c[k];
            x[n++] = -c[k];
        }
    }
    check_writer(MAE_DT_F16, x, n, "F16 boundaries");

    /* every float exponent, random mantissas, below the overflow threshold */
    n = 0;
    tu_seed(11);
    while (n < 200000) {
        uint32_t u = (uint32_t)(tu_uniform() * 4294967296.0);
        float v = from_bits(u);
        int of = 0;
        if (isfinite(v) && (ref_half(v, &of), !of))
            x[n++] = v;
    }
    check_writer(MAE_DT_F16, x, n, "F16 random bits");
    n = 0;
    for (int i = 0; i < 100000; i++)   /* the range weights live in, and the subnormal halves */
        x[n++] = (float)((tu_uniform() * 2 - 1) * ldexp(1.0, (int)(tu_uniform() * 40) - 30));
    check_writer(MAE_DT_F16, x, n, "F16 random values");
    free(x);
}

static void test_bf16_boundaries(void)
{
    size_t cap = 0x7F80u * 8, n = 0;
    float *x = tu_malloc(cap * sizeof *x);
    for (uint32_t b = 0; b < 0x7F80u; b++) {
        uint32_t mid = b << 16 | 0x8000u;
        float c[4] = { from_bits(mid - 1), from_bits(mid), from_bits(mid + 1), from_bits(b << 16) };
        for (int k = 0; k < 4; k++) {
            if (b == 0x7F7F && k > 0 && k < 3)
                continue;
            x[n++] = c[k];
            x[n++] = -c[k];
        }
    }
    check_writer(MAE_DT_BF16, x, n, "BF16 boundaries");
    n = 0;
    tu_seed(12);
    while (n < 200000) {
        float v = from_bits((uint32_t)(tu_uniform() * 4294967296.0));
        int of = 0;
        if (!isinf(v) && (isnan(v) || (ref_bf16(v, &of), !of)))
            x[n++] = v;
    }
    check_writer(MAE_DT_BF16, x, n, "BF16 random bits (NaNs included)");
    free(x);
}

static void test_special_writer(void)
{
    /* hand-made: what each must become, independent of both the library and the references */
    struct { uint32_t x; uint16_t f16, bf16; const char *what; } v[] = {
        { 0x00000000u, 0x0000, 0x0000, "+0" },
        { 0x80000000u, 0x8000, 0x8000, "-0" },
        { 0x3F800000u, 0x3C00, 0x3F80, "1" },
        { 0x33800000u, 0x0001, 0x3380, "2^-24, the smallest subnormal half" },
        { 0x33000000u, 0x0000, 0x3300, "2^-25: a tie, to the even zero" },
        { 0x33000001u, 0x0001, 0x3300, "just above 2^-25: up to 2^-24" },
        { 0x33C00000u, 0x0002, 0x33C0, "1.5 * 2^-24: a tie, to the even 2 * 2^-24" },
        { 0xB4400000u, 0x8003, 0xB440, "-3 * 2^-24: exact" },
        { 0x387FE000u, 0x0400, 0x3880, "2^-14 - 2^-25: a tie between the largest subnormal and the smallest normal (even)" },
        { 0x387FC000u, 0x03FF, 0x3880, "1023 * 2^-24, the largest subnormal half" },
        { 0x387FA000u, 0x03FE, 0x3880, "1022.5 * 2^-24: a subnormal tie, to the even 1022" },
        { 0x3FFFF000u, 0x4000, 0x4000, "2 - 2^-11: a tie, up into the next binade" },
        { 0x3FFFEFFFu, 0x3FFF, 0x4000, "just below that tie" },
        { 0x3F801000u, 0x3C00, 0x3F80, "1 + 2^-11: a tie, to the even 1" },
        { 0x3F803000u, 0x3C02, 0x3F80, "1 + 3 * 2^-11: a tie, to the even 1 + 2^-9" },
        { 0x3F808000u, 0x3C04, 0x3F80, "1 + 2^-8: bf16 tie to even 1" },
        { 0x3F818000u, 0x3C0C, 0x3F82, "1 + 3 * 2^-8: bf16 tie to even" },
        { 0x477FE000u, 0x7BFF, 0x4780, "65504, the largest half" },
        { 0x477FEFFFu, 0x7BFF, 0x4780, "65519.998: still 65504" },
        { 0xC77FEFFFu, 0xFBFF, 0xC780, "-65519.998" },
        { 0x7F800000u, 0x7C00, 0x7F80, "+inf" },
        { 0xFF800000u, 0xFC00, 0xFF80, "-inf" },
        { 0x00000001u, 0x0000, 0x0000, "the smallest float subnormal" },
        { 0x807FFFFFu, 0x8000, 0x8080, "the largest negative float subnormal (bf16: up to 2^-126)" },
        { 0x7F7F7FFFu, 0x7C00, 0x7F7F, "just below bf16's overflow threshold (F16: refused, not here)" },
    };
    size_t n = sizeof v / sizeof v[0];
    float x[32];
    for (size_t i = 0; i < n; i++)
        x[i] = from_bits(v[i].x);
    char path[128];
    snprintf(path, sizeof path, "%s/special.safetensors", dir);
    int64_t shape[1] = { (int64_t)n };
    for (int pass = 0; pass < 2; pass++) {
        int dtype = pass ? MAE_DT_BF16 : MAE_DT_F16;
        size_t count = pass ? n : n - 1;   /* the last is beyond F16's range */
        shape[0] = (int64_t)count;
        mae_st_out t = { "special", x, 1, shape };
        CHECK_OK(mae_st_write_as(path, &t, 1, NULL, 0, dtype, NULL, NULL));
        mae_st_file f;
        unsigned char *image = NULL;
        if (open_image(path, &f, &image) != MAE_OK || f.n != 1) {
            CHECK(0, "special values: the file does not open");
            mae_st_close(&f);
            free(image);
            continue;
        }
        for (size_t i = 0; i < count; i++) {
            const unsigned char *p = f.data + f.t[0].begin + 2 * i;
            unsigned got = (unsigned)p[0] | (unsigned)p[1] << 8, want = pass ? v[i].bf16 : v[i].f16;
            CHECK(got == want, "%s %s: 0x%04x, want 0x%04x", pass ? "BF16" : "F16", v[i].what, got, want);
            int of = 0;
            unsigned ref = pass ? ref_bf16(x[i], &of) : ref_half(x[i], &of);
            CHECK(ref == want, "the test's own reference disagrees on %s: 0x%04x", v[i].what, ref);
        }
        mae_st_close(&f);
        free(image);
    }

    /* NaN stays NaN, with its sign, whatever its payload (a signalling one with only low bits too) */
    uint32_t nans[] = { 0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x7FA00000u };
    size_t nn = sizeof nans / sizeof nans[0];
    float xn[6];
    for (size_t i = 0; i < nn; i++)
        xn[i] = from_bits(nans[i]);
    check_writer(MAE_DT_F16, xn, nn, "F16 NaNs");
    check_writer(MAE_DT_BF16, xn, nn, "BF16 NaNs");

    /* the overflow threshold: refused, naming the tensor, and the file at the path kept */
    float keep[2] = { 1.0f, 2.0f };
    int64_t two[1] = { 2 };
    mae_st_out good = { "good", keep, 1, two };
    CHECK_OK(mae_st_write_as(path, &good, 1, NULL, 0, MAE_DT_F32, NULL, NULL));
    size_t before_size = 0;
    unsigned char *before = tu_read_file(path, &before_size);
    struct { uint32_t x; int dtype; } over[] = {
        { 0x477FF000u, MAE_DT_F16 },   /* 65520: the tie rounds to 65536 = inf */
        { 0xC77FF000u, MAE_DT_F16 },
        { 0x47800000u, MAE_DT_F16 },   /* 65536 */
        { 0x7F7FFFFFu, MAE_DT_F16 },   /* FLT_MAX */
        { 0x7F7F8000u, MAE_DT_BF16 },  /* the bf16 tie past its largest finite value */
        { 0xFF7FFFFFu, MAE_DT_BF16 },
    };
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        float big[3] = { 0.5f, from_bits(over[i].x), 0.25f };
        int64_t three[1] = { 3 };
        mae_st_out t[2] = { { "fine", keep, 1, two }, { "too.big", big, 1, three } };
        mae_status s = mae_st_write_as(path, t, 2, NULL, 0, over[i].dtype, NULL, NULL);
        CHECK(s == MAE_ERR_UNSUPPORTED && strstr(mae_last_error(), "'too.big'") && strstr(mae_last_error(), "element 1"),
              "%a as %s -> %s (%s)", (double)big[1], mae_st_dtype_name(over[i].dtype), mae_status_str(s), mae_last_error());
        size_t after_size = 0;
        unsigned char *after = tu_read_file(path, &after_size);
        CHECK(before && after && after_size == before_size && memcmp(before, after, before_size) == 0,
              "a refused write changed the file at the path");
        free(after);
        CHECK(no_temp_files(), "a refused write left its temporary file");
    }
    free(before);
    /* unknown output dtypes */
    CHECK(mae_st_write_as(path, &good, 1, NULL, 0, MAE_DT_F64, NULL, NULL) == MAE_ERR_INVALID_ARG, "F64 output");
    CHECK(mae_st_write_as(path, &good, 1, NULL, 0, -1, NULL, NULL) == MAE_ERR_INVALID_ARG, "dtype -1");
}

/* ---- whole models ---------------------------------------------------------------------------- */

/* Every tensor of loaded against the reference conversion of m's. */
static void check_model_values(const mae_model *m, const mae_model *loaded, int dtype, const char *what)
{
    int n = 0, nl = 0;
    CHECK_OK(mae_model_tensor_count(m, &n));
    CHECK_OK(mae_model_tensor_count(loaded, &nl));
    CHECK(n == nl && n > 0, "%s: %d tensors, loaded %d", what, n, nl);
    size_t total = 0, bad = 0, not_representable = 0, too_far = 0;
    for (int i = 0; i < n && i < nl; i++) {
        const char *name = NULL, *lname = NULL;
        const float *x = NULL, *y = NULL;
        size_t cx = 0, cy = 0;
        CHECK_OK(mae_model_tensor_name(m, i, &name));
        CHECK_OK(mae_model_tensor_name(loaded, i, &lname));
        CHECK(name && lname && strcmp(name, lname) == 0, "%s: tensor %d is %s, loaded %s", what, i, name, lname);
        if (!name)
            continue;
        CHECK_OK(mae_model_tensor(m, name, &x, &cx, NULL, NULL));
        CHECK_OK(mae_model_tensor(loaded, name, &y, &cy, NULL, NULL));
        CHECK(x && y && cx == cy, "%s: %s has %zu values, loaded %zu", what, name, cx, cy);
        if (!x || !y || cx != cy)
            continue;
        for (size_t k = 0; k < cx; k++, total++) {
            if (isnan(x[k])) {
                bad += !isnan(y[k]);
                continue;
            }
            int of = 0;
            uint32_t r = dtype == MAE_DT_F16 ? ref_half(x[k], &of) : ref_bf16(x[k], &of);
            double want;
            if (dtype == MAE_DT_F16)
                want = (r & 0x7C00u) == 0x7C00u ? INFINITY : half_value(r & 0x7FFFu);
            else
                want = (double)from_bits(r << 16 & 0x7FFFFFFFu);
            if (r & 0x8000u)
                want = -want;
            if (!((double)y[k] == want && !signbit(y[k]) == !signbit(want)) && bad++ < 5)
                CHECK(0, "%s: %s[%zu] = %a loaded as %a, the reference %a", what, name, k, (double)x[k], (double)y[k], want);
            if (!isfinite(y[k]))
                continue;
            /* the same in another form: y is representable, and within half the spacing of the
             * representable values on x's side of y (below a power of two it is half that above) */
            double ay = fabs((double)y[k]), min_normal = dtype == MAE_DT_F16 ? 0x1p-14 : 0x1p-126;
            double spacing = ay < min_normal ? (dtype == MAE_DT_F16 ? 0x1p-24 : 0x1p-133)
                                             : ldexp(1.0, ilogb(ay) - (dtype == MAE_DT_F16 ? 10 : 7));
            double units = ay / spacing;
            not_representable += units != floor(units) || (dtype == MAE_DT_F16 && ay > 65504);
            if (dtype == MAE_DT_BF16)
                not_representable += (to_bits(y[k]) & 0xFFFFu) != 0;
            if (ay > min_normal && ay == ldexp(1.0, ilogb(ay)) && fabs((double)x[k]) < ay)
                spacing /= 2;
            too_far += fabs((double)x[k] - (double)y[k]) > spacing / 2;
        }
    }
    CHECK(bad == 0, "%s: %zu of %zu values differ from the reference conversion", what, bad, total);
    CHECK(not_representable == 0, "%s: %zu loaded values are not %s values", what, not_representable, dtype == MAE_DT_F16 ? "half" : "bfloat16");
    CHECK(too_far == 0, "%s: %zu values moved by more than half an ulp", what, too_far);
}

static int same_config(const mae_model *a, const mae_model *b)
{
    mae_config x, y;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    x.struct_size = y.struct_size = sizeof x;
    return mae_model_get_config(a, &x) == MAE_OK && mae_model_get_config(b, &y) == MAE_OK && memcmp(&x, &y, sizeof x) == 0;
}

/* The same __metadata__ pairs, in the same order. */
static void check_same_meta(const char *a, const char *b)
{
    mae_st_file fa, fb;
    CHECK_OK(mae_st_open(a, &fa));
    CHECK_OK(mae_st_open(b, &fb));
    int same = fa.n_meta == fb.n_meta && fa.n_meta > 10;
    for (int i = 0; same && i < fa.n_meta; i++)
        same = strcmp(fa.meta[i].key, fb.meta[i].key) == 0 && strcmp(fa.meta[i].value, fb.meta[i].value) == 0;
    CHECK(same, "%s and %s have different metadata (%d and %d pairs)", a, b, fa.n_meta, fb.n_meta);
    mae_st_close(&fa);
    mae_st_close(&fb);
}

static size_t data_bytes(const char *path, size_t *file_size)
{
    mae_st_file f;
    size_t n = 0;
    if (mae_st_open(path, &f) == MAE_OK) {
        n = f.data_size;
        mae_st_close(&f);
    }
    struct stat st;
    *file_size = stat(path, &st) == 0 ? (size_t)st.st_size : 0;
    return n;
}

static float forward_loss(const mae_model *m, const float *imgs, const float *noise, int batch)
{
    mae_ctx *c = NULL;
    float loss = NAN;
    CHECK_OK(mae_ctx_create(m, batch, &c));
    if (c)
        CHECK_OK(mae_forward(c, imgs, batch, noise, &loss, NULL, NULL, NULL));
    mae_ctx_free(c);
    return loss;
}

static void test_model(void)
{
    mae_config cfg;
    mae_model *m = NULL;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    CHECK_OK(mae_model_create(&cfg, 5, &m));
    if (!m)
        return;
    char p32[128], p16[128], pbf[128], pagain[128], pf32[128];
    snprintf(p32, sizeof p32, "%s/m32.safetensors", dir);
    snprintf(p16, sizeof p16, "%s/m16.safetensors", dir);
    snprintf(pbf, sizeof pbf, "%s/mbf16.safetensors", dir);
    snprintf(pagain, sizeof pagain, "%s/again.safetensors", dir);
    snprintf(pf32, sizeof pf32, "%s/f32.safetensors", dir);
    CHECK_OK(mae_model_save(m, p32));
    CHECK_OK(mae_model_save_as(m, p16, "F16"));
    CHECK_OK(mae_model_save_as(m, pbf, "bf16"));   /* any case */
    CHECK_OK(mae_model_save_as(m, pf32, "f32"));
    CHECK(same_file(p32, pf32), "save_as F32 differs from mae_model_save");

    /* sizes: the data section exactly half, the file about half */
    size_t f32_size, f16_size, bf_size;
    size_t d32 = data_bytes(p32, &f32_size), d16 = data_bytes(p16, &f16_size), dbf = data_bytes(pbf, &bf_size);
    size_t nparams = 0;
    CHECK_OK(mae_model_num_params(m, &nparams));
    CHECK(d32 == 4 * nparams && d16 == 2 * nparams && dbf == 2 * nparams, "data sections %zu / %zu / %zu for %zu parameters",
          d32, d16, dbf, nparams);
    CHECK(f16_size < f32_size * 0.55 && f16_size > f32_size * 0.45 && bf_size < f32_size * 0.55 && bf_size > f32_size * 0.45,
          "file sizes: F32 %zu, F16 %zu, BF16 %zu", f32_size, f16_size, bf_size);
    check_same_meta(p32, p16);
    check_same_meta(p32, pbf);

    mae_model *l16 = NULL, *lbf = NULL;
    CHECK_OK(mae_model_load(p16, &l16));
    CHECK_OK(mae_model_load(pbf, &lbf));
    if (l16) {
        CHECK(same_config(m, l16), "F16: the config changed");
        check_model_values(m, l16, MAE_DT_F16, "F16 model");
        /* a model of half values saves to the same file again */
        CHECK_OK(mae_model_save_as(l16, pagain, "F16"));
        CHECK(same_file(p16, pagain), "F16 -> load -> F16 is not the same file");
    }
    if (lbf) {
        CHECK(same_config(m, lbf), "BF16: the config changed");
        check_model_values(m, lbf, MAE_DT_BF16, "BF16 model");
        CHECK_OK(mae_model_save_as(lbf, pagain, "BF16"));
        CHECK(same_file(pbf, pagain), "BF16 -> load -> BF16 is not the same file");
    }

    /* the forward pass of the loaded models, with the same images and noise */
    enum { B = 4 };
    size_t ni = (size_t)B * 3 * 32 * 32;
    float *imgs = tu_malloc(ni * sizeof *imgs), noise[B * 16];
    tu_seed(3);
    tu_fill(imgs, ni, -2, 2);
    tu_fill(noise, B * 16, 0, 1);
    float l32 = forward_loss(m, imgs, noise, B);
    if (l16) {
        float l = forward_loss(l16, imgs, noise, B);
        double rel = fabs((double)l - l32) / fabs((double)l32);
        CHECK(rel < 1e-2, "F16 loss %.7g vs F32 %.7g: relative difference %.3g", (double)l, (double)l32, rel);
        printf("test_save_dtype: loss F32 %.7g, F16 %.7g (relative difference %.2e)", (double)l32, (double)l, rel);
    }
    if (lbf) {
        float l = forward_loss(lbf, imgs, noise, B);
        double rel = fabs((double)l - l32) / fabs((double)l32);
        CHECK(rel < 3e-2, "BF16 loss %.7g vs F32 %.7g: relative difference %.3g", (double)l, (double)l32, rel);
        printf(", BF16 %.7g (%.2e)\n", (double)l, rel);
    }
    free(imgs);

    /* special values in a tensor the model holds in PyTorch's layout (a LayerNorm weight) */
    const mae_tensor *t = mae_model_find(m, "norm.weight");
    CHECK(t && !t->in_place && t->count >= 16, "norm.weight");
    if (t && !t->in_place && t->count >= 16) {
        float *w = m->data + t->offset;
        const float special[] = { 0.0f, -0.0f, 0x1p-24f, -0x1p-25f, 0x1.8p-24f, 0x1.ffcp-15f /* 2^-14 - 2^-25 */,
                                  0x1.ffep0f /* 2 - 2^-11 */, -0x1.ffcp15f /* -65504 */, 0x1.ffdfp15f /* 65519.5 */,
                                  INFINITY, -INFINITY, NAN, -NAN, 3e-8f, 1.0009765625f, 0.1f };
        const float want16[] = { 0.0f, -0.0f, 0x1p-24f, -0.0f, 0x1p-23f, 0x1p-14f, 2.0f, -65504.0f, 65504.0f,
                                 INFINITY, -INFINITY, NAN, -NAN, 0x1p-24f, 1.0009765625f, 0x1.998p-4f };
        size_t ns = sizeof special / sizeof special[0];
        memcpy(w, special, sizeof special);
        mae_model *ls = NULL;
        CHECK_OK(mae_model_save_as(m, p16, "F16"));
        CHECK_OK(mae_model_load(p16, &ls));
        const float *y = NULL;
        if (ls && mae_model_tensor(ls, "norm.weight", &y, NULL, NULL, NULL) == MAE_OK)
            for (size_t i = 0; i < ns; i++) {
                int ok = isnan(want16[i]) ? isnan(y[i]) && !signbit(y[i]) == !signbit(want16[i])
                                          : y[i] == want16[i] && !signbit(y[i]) == !signbit(want16[i]);
                CHECK(ok, "F16 special value %zu: %a -> %a, want %a", i, (double)special[i], (double)y[i], (double)want16[i]);
            }
        if (ls)
            check_model_values(m, ls, MAE_DT_F16, "F16 model with special values");
        mae_model_free(ls);
        ls = NULL;
        CHECK_OK(mae_model_save_as(m, pbf, "BF16"));
        CHECK_OK(mae_model_load(pbf, &ls));
        if (ls)
            check_model_values(m, ls, MAE_DT_BF16, "BF16 model with special values");
        mae_model_free(ls);

        /* beyond F16's range: refused, the tensor named, the F16 file there kept; BF16 takes it */
        CHECK_OK(mae_model_save_as(m, p16, "F16"));   /* known content */
        size_t n_before = 0;
        unsigned char *before = tu_read_file(p16, &n_before);
        w[7] = 70000.0f;
        mae_status s = mae_model_save_as(m, p16, "F16");
        CHECK(s == MAE_ERR_UNSUPPORTED && strstr(mae_last_error(), "norm.weight"), "70000 as F16 -> %s (%s)",
              mae_status_str(s), mae_last_error());
        size_t n_after = 0;
        unsigned char *after = tu_read_file(p16, &n_after);
        CHECK(before && after && n_before == n_after && memcmp(before, after, n_before) == 0,
              "the refused F16 save changed the file");
        CHECK(no_temp_files(), "the refused F16 save left a temporary file");
        free(before);
        free(after);
        w[7] = 65520.0f;
        CHECK(mae_model_save_as(m, p16, "f16") == MAE_ERR_UNSUPPORTED, "65520 as F16");
        CHECK_OK(mae_model_save_as(m, pbf, "BF16"));
        w[7] = FLT_MAX;
        CHECK(mae_model_save_as(m, pbf, "BF16") == MAE_ERR_UNSUPPORTED && strstr(mae_last_error(), "norm.weight"),
              "FLT_MAX as BF16: %s", mae_last_error());
        CHECK_OK(mae_model_save_as(m, pf32, "F32"));   /* F32 holds anything */
    }

    /* arguments */
    const char *bad[] = { "F8", "", "f16 ", "FP16", "float16", "F64", "BF16x", "B" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mae_status s = mae_model_save_as(m, p16, bad[i]);
        CHECK(s == MAE_ERR_INVALID_ARG && strstr(mae_last_error(), "dtype"), "dtype '%s' -> %s (%s)", bad[i], mae_status_str(s),
              mae_last_error());
    }
    CHECK(mae_model_save_as(NULL, p16, "F16") == MAE_ERR_INVALID_ARG, "NULL model");
    CHECK(mae_model_save_as(m, NULL, "F16") == MAE_ERR_INVALID_ARG, "NULL path");
    CHECK(mae_model_save_as(m, p16, NULL) == MAE_ERR_INVALID_ARG, "NULL dtype");
    char missing[128];
    snprintf(missing, sizeof missing, "%s/no/such/dir.safetensors", dir);
    CHECK(mae_model_save_as(m, missing, "BF16") == MAE_ERR_IO, "a missing directory");
    CHECK(mae_model_save_as(m, dir, "F32") == MAE_ERR_IO, "onto a directory");

    mae_model_free(l16);
    mae_model_free(lbf);
    mae_model_free(m);
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[384];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            remove(path);
        }
    closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/mae_test_save_dtype_XXXXXX");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "test_save_dtype: cannot create a temporary directory\n");
        return 2;
    }
    TU_RUN("special_writer", test_special_writer());
    TU_RUN("f16_boundaries", test_f16_boundaries());
    TU_RUN("bf16_boundaries", test_bf16_boundaries());
    TU_RUN("model", test_model());
    remove_dir();
    return tu_finish("test_save_dtype");
}
