/* The safetensors reader and writer (src/io/safetensors.c): round trips, every dtype's
 * conversion against values computed here from the format definitions, a table of malformed
 * headers built in memory, truncation at every length, random corruption, and the writer's
 * atomicity under failures (bad arguments, rename onto a directory, a file size limit, failed
 * allocations). */
#include <dirent.h>
#include <float.h>
#include <locale.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"
#include "../src/io/safetensors.h"
#include "../src/io/json.h"
#include "../src/io/decimal.h"

static char dir[64];

/* ---- files in memory ------------------------------------------------------------------------- */

typedef struct bytes {
    unsigned char *p;
    size_t n;
} bytes;

/* [u64 little-endian header length][header][data] */
static bytes make_file(const char *header, const void *data, size_t data_len)
{
    size_t h = strlen(header);
    bytes b = { tu_malloc(8 + h + data_len), 8 + h + data_len };
    for (int i = 0; i < 8; i++)
        b.p[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b.p + 8, header, h);
    if (data_len)
        memcpy(b.p + 8 + h, data, data_len);
    return b;
}

static bytes read_whole(const char *path)
{
    bytes b = { NULL, 0 };
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return b;
    fseek(fp, 0, SEEK_END);
    b.n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    b.p = tu_malloc(b.n);
    if (fread(b.p, 1, b.n, fp) != b.n)
        b.n = 0;
    fclose(fp);
    return b;
}

static void write_whole(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(fp);
}

static int same_bytes(bytes a, bytes b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* Files in the test directory whose name contains ".tmp." (leftovers of the writer). */
static int temp_files(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

static int is_empty(const mae_st_file *f)
{
    return f->n == 0 && f->t == NULL && f->meta == NULL && f->n_meta == 0 && f->stream == NULL && f->data == NULL;
}

/* ---- the writer and reader round trip ------------------------------------------------------ */

static void test_round_trip(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    float a[15], b[1], w[2];
    tu_fill(a, 15, -3, 3);
    b[0] = -0.0f;
    w[0] = NAN;
    w[1] = -INFINITY;
    int64_t sa[2] = { 3, 5 }, se[2] = { 0, 4 }, sw[1] = { 2 };
    const char *weird = "w \"q\" \\ \x01 \xc3\xa9";
    mae_st_out t[4] = { { "a", a, 2, sa }, { "b", b, 0, NULL }, { "empty", NULL, 2, se }, { weird, w, 1, sw } };
    mae_st_meta meta[3] = { { "k1", "v\"1\\" }, { "unicode", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" }, { "ctrl", "a\nb\tc" } };
    CHECK_OK(mae_st_write(path, t, 4, meta, 3));
    CHECK(temp_files() == 0, "the writer left a temporary file");

    mae_st_file f;
    CHECK_OK(mae_st_open(path, &f));
    CHECK(f.n == 4 && f.n_meta == 3, "%d tensors, %d metadata pairs", f.n, f.n_meta);
    for (int i = 0; i < 4 && f.n == 4; i++) {
        const mae_st_entry *e = mae_st_find(&f, t[i].name);
        CHECK(e != NULL, "tensor '%s' not found", t[i].name);
        if (!e)
            continue;
        CHECK(e->dtype == MAE_DT_F32 && e->ndim == t[i].ndim, "'%s': dtype %d ndim %d", t[i].name, e->dtype, e->ndim);
        size_t count = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            CHECK(e->shape[d] == t[i].shape[d], "'%s' dim %d", t[i].name, d);
            count *= (size_t)t[i].shape[d];
        }
        CHECK(e->count == count, "'%s': count %zu", t[i].name, e->count);
        float got[16];
        tu_poison(got, 16);
        CHECK_OK(mae_st_read_f32(&f, e, got, count));
        CHECK(count == 0 || memcmp(got, t[i].data, count * sizeof *got) == 0, "'%s' is not bitwise the same", t[i].name);
        /* contiguous, in the order given */
        CHECK(i == 0 || e->begin == mae_st_find(&f, t[i - 1].name)->end, "'%s' does not follow its predecessor", t[i].name);
    }
    for (int i = 0; i < 3; i++) {
        const char *v = mae_st_meta_get(&f, meta[i].key);
        CHECK(v && strcmp(v, meta[i].value) == 0, "metadata '%s' = '%s'", meta[i].key, v ? v : "(null)");
    }
    CHECK(mae_st_meta_get(&f, "absent") == NULL && mae_st_find(&f, "absent") == NULL, "found an absent name");
    CHECK(mae_st_find(NULL, "a") == NULL && mae_st_meta_get(NULL, "a") == NULL, "NULL file");
    mae_st_close(&f);
    CHECK(is_empty(&f), "close did not empty the struct");
    mae_st_close(&f);   /* twice is fine */

    /* the header is padded with spaces to a multiple of 8, the data fills the rest exactly */
    bytes raw = read_whole(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0 && raw.n >= 8; i--)
        n = n << 8 | raw.p[i];
    CHECK(n % 8 == 0 && raw.n == 8 + n + (15 + 1 + 0 + 2) * 4, "header length %llu, file %zu bytes", (unsigned long long)n, raw.n);
    size_t end = 8 + (size_t)n;
    while (end > 8 && raw.p[end - 1] == ' ')
        end--;
    CHECK(end > 8 && raw.p[end - 1] == '}' && 8 + n - end < 8, "the header padding is not spaces");
    /* the same image parses from memory */
    CHECK_OK(mae_st_parse(raw.p, raw.n, &f));
    CHECK(f.n == 4 && f.stream == NULL && f.data == raw.p + 8 + n, "parse from memory");
    mae_st_close(&f);
    free(raw.p);

    /* overwriting replaces the old file */
    CHECK_OK(mae_st_write(path, t, 1, NULL, 0));
    CHECK_OK(mae_st_open(path, &f));
    CHECK(f.n == 1 && f.n_meta == 0, "the rewritten file has %d tensors", f.n);
    mae_st_close(&f);
    /* no tensors at all is a valid file */
    CHECK_OK(mae_st_write(path, NULL, 0, NULL, 0));
    CHECK_OK(mae_st_open(path, &f));
    CHECK(f.n == 0, "empty file has %d tensors", f.n);
    mae_st_close(&f);
    unlink(path);
}

/* ---- conversions: reference values from the format definitions ------------------------------ */

static double ref_half(unsigned h)
{
    unsigned e = h >> 10 & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, (int)e - 25);
    return h & 0x8000 ? -v : v;
}

static double ref_bf16(unsigned h)
{
    unsigned e = h >> 7 & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, (int)e - 134);
    return h & 0x8000 ? -v : v;
}

static double ref_e5m2(unsigned b)
{
    unsigned e = b >> 2 & 31, m = b & 3;
    double v = e == 0 ? ldexp(m, -16) : e == 31 ? (m ? NAN : INFINITY) : ldexp(4 + m, (int)e - 17);
    return b & 0x80 ? -v : v;
}

static double ref_e4m3(unsigned b)
{
    unsigned e = b >> 3 & 15, m = b & 7;
    double v = e == 0 ? ldexp(m, -9) : (e == 15 && m == 7) ? NAN : ldexp(8 + m, (int)e - 10);
    return b & 0x80 ? -v : v;
}

/* got equals want exactly (NaN matches NaN, the sign of zero counts). */
static int same_value(float got, double want)
{
    if (isnan(want))
        return isnan(got);
    return got == (float)want && !signbit(got) == !signbit(want);
}

/* One tensor [count] of dtype name with the given little-endian bytes; read back as float. */
static mae_status read_one(const char *dtype, const void *data, size_t count, size_t elsize, float *out)
{
    char header[256];
    snprintf(header, sizeof header, "{\"x\":{\"dtype\":\"%s\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}",
             dtype, count, count * elsize);
    bytes b = make_file(header, data, count * elsize);
    mae_st_file f;
    mae_status s = mae_st_parse(b.p, b.n, &f);
    if (s == MAE_OK) {
        tu_poison(out, count);
        s = mae_st_read_f32(&f, mae_st_find(&f, "x"), out, count);
    }
    mae_st_close(&f);
    free(b.p);
    return s;
}

static void test_small_floats(void)
{
    unsigned char *raw = tu_malloc(65536 * 2);
    float *got = tu_malloc(65536 * sizeof *got);
    for (unsigned i = 0; i < 65536; i++) {
        raw[2 * i] = (unsigned char)i;
        raw[2 * i + 1] = (unsigned char)(i >> 8);
    }
    const char *names[2] = { "F16", "BF16" };
    for (int k = 0; k < 2; k++) {
        CHECK_OK(read_one(names[k], raw, 65536, 2, got));
        int bad = 0;
        for (unsigned i = 0; i < 65536; i++)
            if (!same_value(got[i], k == 0 ? ref_half(i) : ref_bf16(i)) && bad++ < 3)
                CHECK(0, "%s 0x%04x -> %.9g, expected %.9g", names[k], i, (double)got[i], k == 0 ? ref_half(i) : ref_bf16(i));
        CHECK(bad == 0, "%s: %d of 65536 values wrong", names[k], bad);
    }
    for (unsigned i = 0; i < 256; i++)
        raw[i] = (unsigned char)i;
    CHECK_OK(read_one("F8_E5M2", raw, 256, 1, got));
    for (unsigned i = 0; i < 256; i++)
        CHECK(same_value(got[i], ref_e5m2(i)), "F8_E5M2 0x%02x -> %g, expected %g", i, (double)got[i], ref_e5m2(i));
    CHECK_OK(read_one("F8_E4M3", raw, 256, 1, got));
    for (unsigned i = 0; i < 256; i++)
        CHECK(same_value(got[i], ref_e4m3(i)), "F8_E4M3 0x%02x -> %g, expected %g", i, (double)got[i], ref_e4m3(i));
    /* a few hand-checked anchors, in case the reference formulas share a mistake */
    CHECK(got[0x38] == 1.0f && got[0x7e] == 448.0f && got[0x01] == 0x1p-9f, "E4M3 anchors");
    CHECK(ref_half(0x3c00) == 1.0 && ref_half(0x7bff) == 65504.0 && ref_half(0x0001) == 0x1p-24 && ref_half(0xc000) == -2.0,
          "F16 anchors");
    CHECK(ref_bf16(0x3f80) == 1.0 && ref_bf16(0x0001) == 0x1p-133, "BF16 anchors");
    free(raw);
    free(got);
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void test_wide_types(void)
{
    unsigned char raw[16 * 8];
    float got[16];
    /* F64: rounding to nearest float, overflow to infinity exactly from FLT_MAX + half an ulp */
    const double fmax = FLT_MAX;
    double d[] = { 1.5, -0.0, 0.1, 1e-50, -1e-50, 1e-40, 1e300, -1e300, fmax, fmax + 0x1p102, fmax + 0x1p103, -(fmax + 0x1p103),
                   INFINITY, NAN, 16777217.0, 3.0000001192092896 };
    float want[] = { 1.5f, -0.0f, 0.1f, 0.0f, -0.0f, 1e-40f, INFINITY, -INFINITY, FLT_MAX, FLT_MAX, INFINITY, -INFINITY,
                     INFINITY, NAN, 16777216.0f, 3.0f /* a tie goes to even */ };
    int nd = (int)(sizeof d / sizeof d[0]);
    for (int i = 0; i < nd; i++) {
        uint64_t u;
        memcpy(&u, &d[i], 8);
        put_le(raw + 8 * i, u, 8);
    }
    CHECK_OK(read_one("F64", raw, (size_t)nd, 8, got));
    for (int i = 0; i < nd; i++)
        CHECK(same_value(got[i], want[i]), "F64 %.17g -> %.9g, expected %.9g", d[i], (double)got[i], (double)want[i]);

    int64_t iv[] = { INT64_MIN, -1, 0, 16777217, INT64_MAX };
    for (int i = 0; i < 5; i++)
        put_le(raw + 8 * i, (uint64_t)iv[i], 8);
    CHECK_OK(read_one("I64", raw, 5, 8, got));
    CHECK(got[0] == -0x1p63f && got[1] == -1.0f && got[2] == 0.0f && got[3] == 16777216.0f && got[4] == 0x1p63f, "I64");
    int32_t i32[] = { INT32_MIN, -7, 16777217, INT32_MAX };
    for (int i = 0; i < 4; i++)
        put_le(raw + 4 * i, (uint32_t)i32[i], 4);
    CHECK_OK(read_one("I32", raw, 4, 4, got));
    CHECK(got[0] == -0x1p31f && got[1] == -7.0f && got[2] == 16777216.0f && got[3] == 0x1p31f, "I32");
    put_le(raw, 0xFFFFFFFFFFFFFFFFull, 8);
    CHECK_OK(read_one("U64", raw, 1, 8, got));
    CHECK(got[0] == 0x1p64f, "U64 max -> %g", (double)got[0]);
    put_le(raw, 0xFFFFFFFFu, 4);
    CHECK_OK(read_one("U32", raw, 1, 4, got));
    CHECK(got[0] == 0x1p32f, "U32");
    put_le(raw, 0x8000, 2);
    put_le(raw + 2, 0xFFFF, 2);
    CHECK_OK(read_one("I16", raw, 2, 2, got));
    CHECK(got[0] == -32768.0f && got[1] == -1.0f, "I16");
    CHECK_OK(read_one("U16", raw, 2, 2, got));
    CHECK(got[0] == 32768.0f && got[1] == 65535.0f, "U16");
    unsigned char b8[3] = { 0x80, 0xFF, 0x01 };
    CHECK_OK(read_one("I8", b8, 3, 1, got));
    CHECK(got[0] == -128.0f && got[1] == -1.0f && got[2] == 1.0f, "I8");
    CHECK_OK(read_one("U8", b8, 3, 1, got));
    CHECK(got[0] == 128.0f && got[1] == 255.0f && got[2] == 1.0f, "U8");
    unsigned char bools[2] = { 0, 1 };
    CHECK_OK(read_one("BOOL", bools, 2, 1, got));
    CHECK(got[0] == 0.0f && got[1] == 1.0f, "BOOL");
    CHECK(mae_st_dtype_size(MAE_DT_BF16) == 2 && mae_st_dtype_size(-1) == 0 && mae_st_dtype_size(MAE_DT_COUNT) == 0 &&
          strcmp(mae_st_dtype_name(MAE_DT_F8_E4M3), "F8_E4M3") == 0 && mae_st_dtype_name(99) == NULL, "dtype table");
}

static void test_read_misuse(void)
{
    float x[4] = { 1, 2, 3, 4 }, got[4];
    char header[128];
    snprintf(header, sizeof header, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}");
    bytes b = make_file(header, x, 16);
    mae_st_file f;
    CHECK_OK(mae_st_parse(b.p, b.n, &f));
    const mae_st_entry *e = mae_st_find(&f, "x");
    tu_poison(got, 4);
    CHECK(mae_st_read_f32(&f, e, got, 3) == MAE_ERR_SHAPE && strstr(mae_last_error(), "'x'"), "count mismatch: %s", mae_last_error());
    CHECK(mae_st_read_f32(&f, NULL, got, 4) == MAE_ERR_INVALID_ARG, "NULL entry");
    CHECK(mae_st_read_f32(NULL, e, got, 4) == MAE_ERR_INVALID_ARG, "NULL file");
    CHECK(mae_st_read_f32(&f, e, NULL, 4) == MAE_ERR_INVALID_ARG, "NULL dst");
    CHECK(isnan(got[0]) && isnan(got[3]), "a failed read wrote its output");
    /* an entry from another, larger file cannot read past this one's data */
    mae_st_entry stray = *e;
    stray.begin = 8;
    stray.end = 24;
    CHECK(mae_st_read_f32(&f, &stray, got, 4) == MAE_ERR_INVALID_ARG, "a stray entry read outside the data");
    mae_st_file g;
    CHECK(mae_st_parse(b.p, b.n, NULL) == MAE_ERR_INVALID_ARG && mae_st_parse(NULL, 5, &g) == MAE_ERR_INVALID_ARG, "parse args");
    CHECK(mae_st_open(NULL, &g) == MAE_ERR_INVALID_ARG && mae_st_open("x", NULL) == MAE_ERR_INVALID_ARG, "open args");
    mae_st_close(NULL);
    mae_st_close(&f);
    free(b.p);
}

/* ---- malformed headers ------------------------------------------------------------------------ */

typedef struct bad_case {
    const char *what;
    const char *header;
    size_t data_len;          /* zero bytes of data after the header */
    const char *message;      /* expected in the error message */
} bad_case;

static const bad_case bad_cases[] = {
    { "not an object", "[1,2]", 0, "does not start with '{'" },
    { "empty header", "", 0, "does not start with '{'" },
    { "unterminated object", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "byte" },
    { "unterminated string", "{\"a", 0, "not terminated" },
    { "missing colon", "{\"a\" {}}", 0, "expected ':'" },
    { "trailing comma", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "expected a string" },
    { "text after the object", "{} x", 0, "text after" },
    { "two objects", "{}{}", 0, "text after" },
    { "bare word", "{\"a\":{\"junk\":nul}}", 0, "expected a JSON value" },
    { "space before the object", " {}", 0, "does not start with '{'" },
    { "control character in a name", "{\"a\tb\":{}}", 0, "control character" },
    { "bad escape", "{\"a\\qb\":{}}", 0, "bad escape" },
    { "bad \\u escape", "{\"a\\u12g4\":{}}", 0, "bad \\u" },
    { "lone high surrogate", "{\"a\\ud800\":{}}", 0, "surrogate" },
    { "lone low surrogate", "{\"a\\udc00\":{}}", 0, "surrogate" },
    { "NUL in a name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL" },
    { "tensor not an object", "{\"w\":[1,2]}", 0, "'w' is not an object" },
    { "dtype a number", "{\"w\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w'" },
    { "dtype unknown", "{\"w\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'F12'" },
    { "dtype lowercase", "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype" },
    { "dtype long", "{\"w\":{\"dtype\":\"F32F32F32F32F32F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype" },
    { "shape a string", "{\"w\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 4, "tensor 'w'" },
    { "negative dimension", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative integer" },
    { "fractional dimension", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "fraction" },
    { "leading zero", "{\"w\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "leading zero" },
    { "huge dimension", "{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999999],\"data_offsets\":[0,4]}}", 4, "larger than" },
    { "nine dimensions", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "more than 8" },
    { "shape overflow", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflows" },
    { "byte size overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4, "overflows" },
    { "offsets one number", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4, "not 2" },
    { "offsets three numbers", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "more than 2" },
    { "offsets reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 8, "reversed" },
    { "offsets past the data", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "reach past" },
    { "offsets far past the data", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,18446744073709551615]}}", 4, "tensor 'w'" },
    { "size disagrees with shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "need 8" },
    { "size disagrees with dtype", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "need 4" },
    { "overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlaps" },
    { "same bytes twice", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlaps" },
    { "no dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no dtype" },
    { "no shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no shape" },
    { "no data_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "no data_offsets" },
    { "dtype twice", "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "twice" },
    { "duplicate names", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "'w' appears twice" },
    { "metadata not an object", "{\"__metadata__\":\"x\"}", 0, "__metadata__" },
    { "metadata value a number", "{\"__metadata__\":{\"a\":1}}", 0, "not a string" },
    { "metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "twice" },
    { "metadata key twice", "{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "'a' appears twice" },
    { "deep nesting", NULL, 0, "nested deeper" },
    { "too-long name", NULL, 4, "a tensor name of 200 bytes" },
};

/* headers too long to write inline */
static void special_header(int which, char *out, size_t cap)
{
    if (which == 0) {   /* 1000 nested arrays under an unknown key */
        size_t n = (size_t)snprintf(out, cap, "{\"w\":{\"junk\":");
        for (int i = 0; i < 1000; i++)
            out[n++] = '[';
        for (int i = 0; i < 1000; i++)
            out[n++] = ']';
        snprintf(out + n, cap - n, ",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
    } else {
        char name[201];
        memset(name, 'n', 200);
        name[200] = '\0';
        snprintf(out, cap, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", name);
    }
}

static void test_bad_headers(void)
{
    static char special[4096];
    static unsigned char zeros[64];
    int n = (int)(sizeof bad_cases / sizeof bad_cases[0]);
    for (int i = 0; i < n; i++) {
        const bad_case *c = &bad_cases[i];
        const char *h = c->header;
        if (!h) {
            special_header(strstr(c->what, "nesting") ? 0 : 1, special, sizeof special);
            h = special;
        }
        bytes b = make_file(h, zeros, c->data_len);
        mae_st_file f;
        memset(&f, 0x5A, sizeof f);
        mae_status s = mae_st_parse(b.p, b.n, &f);
        CHECK(s == MAE_ERR_FORMAT, "%s: %s (%s)", c->what, mae_status_str(s), mae_last_error());
        if (getenv("MAE_TEST_VERBOSE"))
            printf("%-28s %s\n", c->what, mae_last_error());
        CHECK(strstr(mae_last_error(), c->message) != NULL, "%s: message '%s' lacks '%s'", c->what, mae_last_error(), c->message);
        CHECK(is_empty(&f), "%s: a failed parse left the struct filled", c->what);
        mae_st_close(&f);
        free(b.p);
    }
    /* the 8-byte length itself */
    unsigned char raw[32] = { 0 };
    mae_st_file f;
    CHECK(mae_st_parse(raw, 7, &f) == MAE_ERR_FORMAT && strstr(mae_last_error(), "too short"), "7 bytes: %s", mae_last_error());
    raw[0] = 30;   /* 30 bytes of header in a 32-byte file */
    CHECK(mae_st_parse(raw, 32, &f) == MAE_ERR_FORMAT && strstr(mae_last_error(), "reaches past"), "length > file: %s", mae_last_error());
    memset(raw, 0xFF, 8);   /* 2^64 - 1 */
    CHECK(mae_st_parse(raw, 32, &f) == MAE_ERR_FORMAT && strstr(mae_last_error(), "byte 0"), "absurd length: %s", mae_last_error());
    CHECK(mae_st_parse(raw, 0, &f) == MAE_ERR_FORMAT, "empty file");
}

/* Headers that are unusual but valid. */
static void test_good_headers(void)
{
    static const unsigned char data[16] = { 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40 };   /* 1.0f, 2.0f */
    const char *good[] = {
        /* whitespace everywhere, keys in another order, unknown keys of every kind */
        "{\n \"b\" : { \"data_offsets\" : [ 4 , 8 ] , \"junk\" : [ {\"x\": [true, false, null, -1.5e+3, \"s\"]} ] ,"
        " \"shape\" : [ ] , \"dtype\" : \"F32\" } , \"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}  }   ",
        /* escapes in names: \u00e9 and a surrogate pair decode to UTF-8 */
        "{\"\\u00e9\\ud83d\\ude00\\/\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"__metadata__\":{\"long\":\"" /* a value too long to keep is skipped */
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"short\":\"ok\"}}",
        /* empty tensors may sit anywhere, even inside another's bytes; holes are allowed */
        "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[2,2]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
    };
    for (int i = 0; i < 3; i++) {
        bytes b = make_file(good[i], data, 8);
        mae_st_file f;
        mae_status s = mae_st_parse(b.p, b.n, &f);
        CHECK(s == MAE_OK, "good header %d: %s", i, mae_last_error());
        float x[1] = { NAN };
        if (s == MAE_OK && i == 0) {
            const mae_st_entry *e = mae_st_find(&f, "b");
            CHECK(e && e->ndim == 0 && e->count == 1, "scalar 'b'");
            CHECK(e && mae_st_read_f32(&f, e, x, 1) == MAE_OK && x[0] == 2.0f, "'b' = %g", (double)x[0]);
        }
        if (s == MAE_OK && i == 1) {
            CHECK(mae_st_find(&f, "\xc3\xa9\xf0\x9f\x98\x80/") != NULL, "unicode escapes not decoded");
            CHECK(mae_st_meta_get(&f, "long") == NULL && f.n_meta == 1, "an overlong metadata value was kept");
            const char *v = mae_st_meta_get(&f, "short");
            CHECK(v && strcmp(v, "ok") == 0, "metadata after a skipped pair");
        }
        if (s == MAE_OK && i == 2)
            CHECK(f.n == 2 && mae_st_find(&f, "e")->count == 0, "empty tensor");
        mae_st_close(&f);
        free(b.p);
    }
}

/* A valid file cut at every length fails cleanly; random corruption never crashes. Each image is
 * in a buffer of exactly its size, so that a sanitizer sees any read past it. */
static void test_truncation_and_corruption(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/cut.safetensors", dir);
    float a[40], c[3];
    tu_fill(a, 40, -1, 1);
    tu_fill(c, 3, -1, 1);
    int64_t sa[3] = { 2, 4, 5 }, sc[1] = { 3 };
    mae_st_out t[2] = { { "blocks.0.attn.qkv.weight", a, 3, sa }, { "c", c, 1, sc } };
    mae_st_meta meta[1] = { { "img_size", "224" } };
    CHECK_OK(mae_st_write(path, t, 2, meta, 1));
    bytes full = read_whole(path);
    unlink(path);
    int failures = 0;
    for (size_t len = 0; len < full.n; len++) {
        unsigned char *cut = tu_malloc(len);
        memcpy(cut, full.p, len);
        mae_st_file f;
        mae_status s = mae_st_parse(len ? cut : NULL, len, &f);
        failures += s == MAE_ERR_FORMAT;
        if (s != MAE_ERR_FORMAT)
            CHECK(0, "truncated to %zu of %zu bytes: %s", len, full.n, mae_status_str(s));
        mae_st_close(&f);
        free(cut);
    }
    CHECK(failures == (int)full.n, "%d of %zu truncations failed cleanly", failures, full.n);

    /* random corruption: parse, and read every tensor when the parse succeeds */
    int parsed = 0;
    float *buf = tu_malloc(4096 * sizeof *buf);
    for (int iter = 0; iter < 3000; iter++) {
        unsigned char *m = tu_malloc(full.n);
        memcpy(m, full.p, full.n);
        int flips = 1 + (int)(tu_uniform() * 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(tu_uniform() * (double)full.n);
            if (at < 8 && tu_uniform() < 0.7)
                at += 8;   /* mostly the header text */
            m[at] = tu_uniform() < 0.5 ? (unsigned char)(tu_uniform() * 256) : (unsigned char)"{}[]\",:0919e-"[(int)(tu_uniform() * 14)];
        }
        mae_st_file f;
        if (mae_st_parse(m, full.n, &f) == MAE_OK) {
            parsed++;
            for (int i = 0; i < f.n; i++)
                if (f.t[i].count <= 4096)
                    CHECK_OK(mae_st_read_f32(&f, &f.t[i], buf, f.t[i].count));
        }
        mae_st_close(&f);
        free(m);
    }
    CHECK(parsed > 0, "no corrupted image parsed (the corruption is too coarse to test reading)");
    free(buf);
    free(full.p);
}

/* ---- opening files ----------------------------------------------------------------------------- */

static void test_open(void)
{
    char path[128];
    mae_st_file f;
    memset(&f, 0x5A, sizeof f);
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    CHECK(mae_st_open(path, &f) == MAE_ERR_IO && strstr(mae_last_error(), path), "missing file: %s", mae_last_error());
    CHECK(is_empty(&f), "a failed open left the struct filled");
    CHECK(mae_st_open(dir, &f) == MAE_ERR_IO, "a directory: %s", mae_last_error());
    write_whole(path, "", 0);
    CHECK(mae_st_open(path, &f) == MAE_ERR_FORMAT && strstr(mae_last_error(), path), "empty file: %s", mae_last_error());
    write_whole(path, "hello, world", 12);
    CHECK(mae_st_open(path, &f) == MAE_ERR_FORMAT, "text file: %s", mae_last_error());
    unlink(path);
}

/* ---- the writer's failures --------------------------------------------------------------------- */

static void test_write_failures(void)
{
    char path[128], sub[128];
    snprintf(path, sizeof path, "%s/keep.safetensors", dir);
    float big[16384], one[1] = { 1.0f };
    tu_fill(big, 16384, -1, 1);
    int64_t sbig[1] = { 16384 }, s1[1] = { 1 }, sneg[1] = { -1 };
    mae_st_out good[1] = { { "x", one, 1, s1 } };
    CHECK_OK(mae_st_write(path, good, 1, NULL, 0));
    bytes old = read_whole(path);

    /* bad arguments: nothing is touched */
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    mae_st_out dup[2] = { { "x", one, 1, s1 }, { "x", one, 1, s1 } };
    mae_st_out bad_name[1] = { { longname, one, 1, s1 } }, meta_name[1] = { { "__metadata__", one, 1, s1 } };
    mae_st_out no_name[1] = { { NULL, one, 1, s1 } }, neg[1] = { { "x", one, 1, sneg } }, no_data[1] = { { "x", NULL, 1, s1 } };
    mae_st_out many_dims[1] = { { "x", one, 9, s1 } };
    mae_st_meta dup_meta[2] = { { "k", "1" }, { "k", "2" } }, empty_key[1] = { { "", "1" } };
    CHECK(mae_st_write(NULL, good, 1, NULL, 0) == MAE_ERR_INVALID_ARG, "NULL path");
    CHECK(mae_st_write(path, NULL, 1, NULL, 0) == MAE_ERR_INVALID_ARG, "NULL tensors");
    CHECK(mae_st_write(path, good, -1, NULL, 0) == MAE_ERR_INVALID_ARG, "n < 0");
    CHECK(mae_st_write(path, good, 1, NULL, 1) == MAE_ERR_INVALID_ARG, "NULL meta");
    CHECK(mae_st_write(path, dup, 2, NULL, 0) == MAE_ERR_INVALID_ARG && strstr(mae_last_error(), "twice"), "duplicate names");
    CHECK(mae_st_write(path, bad_name, 1, NULL, 0) == MAE_ERR_INVALID_ARG, "long name");
    CHECK(mae_st_write(path, meta_name, 1, NULL, 0) == MAE_ERR_INVALID_ARG, "tensor named __metadata__");
    CHECK(mae_st_write(path, no_name, 1, NULL, 0) == MAE_ERR_INVALID_ARG, "NULL name");
    CHECK(mae_st_write(path, neg, 1, NULL, 0) == MAE_ERR_INVALID_ARG, "negative dim");
    CHECK(mae_st_write(path, no_data, 1, NULL, 0) == MAE_ERR_INVALID_ARG, "NULL data");
    CHECK(mae_st_write(path, many_dims, 1, NULL, 0) == MAE_ERR_INVALID_ARG, "9 dims");
    CHECK(mae_st_write(path, good, 1, dup_meta, 2) == MAE_ERR_INVALID_ARG, "duplicate metadata keys");
    CHECK(mae_st_write(path, good, 1, empty_key, 1) == MAE_ERR_INVALID_ARG, "empty metadata key");
    bytes now = read_whole(path);
    CHECK(same_bytes(old, now), "a refused write changed the file");
    free(now.p);

    mae_st_out bigt[1] = { { "big", big, 1, sbig } };
    /* a missing directory */
    snprintf(sub, sizeof sub, "%s/no/such/dir.safetensors", dir);
    CHECK(mae_st_write(sub, bigt, 1, NULL, 0) == MAE_ERR_IO && strstr(mae_last_error(), sub), "missing dir: %s", mae_last_error());
    /* rename onto a directory fails after everything was written: the temp file goes away */
    snprintf(sub, sizeof sub, "%s/adir", dir);
    mkdir(sub, 0777);
    CHECK(mae_st_write(sub, bigt, 1, NULL, 0) == MAE_ERR_IO, "rename onto a directory: %s", mae_last_error());
    struct stat st;
    CHECK(stat(sub, &st) == 0 && S_ISDIR(st.st_mode), "the directory was replaced");
    CHECK(temp_files() == 0, "a failed rename left its temporary file");
    rmdir(sub);

    /* a write that fails half-way (file size limit): the old file stays, the temp file goes */
    struct rlimit lim, small;
    if (getrlimit(RLIMIT_FSIZE, &lim) == 0) {
        signal(SIGXFSZ, SIG_IGN);
        small = lim;
        small.rlim_cur = 4096;
        if (setrlimit(RLIMIT_FSIZE, &small) == 0) {
            mae_status s = mae_st_write(path, bigt, 1, NULL, 0);
            setrlimit(RLIMIT_FSIZE, &lim);
            CHECK(s == MAE_ERR_IO, "a write past the size limit -> %s", mae_status_str(s));
            now = read_whole(path);
            CHECK(same_bytes(old, now), "a failed write changed the old file");
            free(now.p);
            CHECK(temp_files() == 0, "a failed write left its temporary file");
        }
        signal(SIGXFSZ, SIG_DFL);
    }

    /* failed allocations: testutil.h's hook fails from the k-th call on */
    long alloc_fail_at;
    for (alloc_fail_at = 1; alloc_fail_at <= 4; alloc_fail_at++) {
        tu_alloc_reset();
        tu_alloc.fail_at = alloc_fail_at;
        tu_alloc.fail_after = 1;
        tu_alloc_install();
        mae_status s = mae_st_write(path, bigt, 1, NULL, 0);
        mae_set_allocator(NULL);
        if (s == MAE_OK)
            break;   /* past the writer's last allocation */
        CHECK(s == MAE_ERR_NOMEM, "allocation %ld failing -> %s", alloc_fail_at, mae_status_str(s));
        now = read_whole(path);
        CHECK(same_bytes(old, now), "a failed allocation changed the old file");
        free(now.p);
        CHECK(temp_files() == 0, "a failed allocation left a temporary file");
    }
    CHECK(alloc_fail_at > 1 && alloc_fail_at <= 4, "the writer allocates %ld times", alloc_fail_at - 1);
    free(old.p);
    unlink(path);
}

/* ---- decimal metadata values ------------------------------------------------------------------- */

static void test_decimals(void)
{
    struct { const char *s; double v; } ok[] = {
        { "0.75", 0.75 }, { "1e-06", 1e-6 }, { "1e-12", 1e-12 }, { "4.0", 4.0 }, { "-2.5E+3", -2500.0 }, { ".5", 0.5 },
        { "5.", 5.0 }, { "+7", 7.0 }, { "224", 224.0 }, { "0", 0.0 }, { "00012", 12.0 },
        { "123456789012345678901234", 1.2345678901234568e23 }, { "0.000000000000000000000000000001", 1e-30 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double v = NAN;
        int r = mae_decimal_parse(ok[i].s, &v);
        CHECK(r && fabs(v - ok[i].v) <= 1e-15 * fabs(ok[i].v), "'%s' -> %d %.17g", ok[i].s, r, v);
    }
    const char *bad[] = { "", "-", ".", "e5", "1e", "1e+", "1,5", "0x10", "nan", "inf", "1 ", " 1", "1.2.3", "--1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 42;
        CHECK(!mae_decimal_parse(bad[i], &v) && v == 42, "'%s' parsed", bad[i]);
    }
    /* %.9g round-trips every float exactly, whatever the magnitude */
    int wrong = 0;
    for (int i = 0; i < 20000; i++) {
        uint32_t u = (uint32_t)(tu_uniform() * 4294967296.0);
        float x;
        memcpy(&x, &u, 4);
        if (!isfinite(x))
            continue;
        char buf[32];
        double v;
        mae_decimal_format(buf, sizeof buf, (double)x, 9);
        if (!mae_decimal_parse(buf, &v) || (float)v != x)
            wrong++;
    }
    CHECK(wrong == 0, "%d floats did not round-trip through 9 digits", wrong);
    /* under a locale with a decimal comma, if one is installed */
    if (setlocale(LC_NUMERIC, "de_DE.UTF-8") || setlocale(LC_NUMERIC, "fr_FR.UTF-8")) {
        char buf[32];
        double v = 0;
        mae_decimal_format(buf, sizeof buf, 0.75, 9);
        CHECK(strcmp(buf, "0.75") == 0 && mae_decimal_parse("0.75", &v) && v == 0.75, "decimal comma locale: '%s'", buf);
        setlocale(LC_NUMERIC, "C");
    }
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/mae_test_st_%ld", (long)getpid());
    mkdir(dir, 0777);
    tu_seed(11);
    TU_RUN("round_trip", test_round_trip());
    TU_RUN("small_floats", test_small_floats());
    TU_RUN("wide_types", test_wide_types());
    TU_RUN("read_misuse", test_read_misuse());
    TU_RUN("bad_headers", test_bad_headers());
    TU_RUN("good_headers", test_good_headers());
    TU_RUN("truncation_and_corruption", test_truncation_and_corruption());
    TU_RUN("open", test_open());
    TU_RUN("write_failures", test_write_failures());
    TU_RUN("decimals", test_decimals());
    rmdir(dir);
    return tu_finish("test_safetensors");
}
