/* Loading a model from a path without holding the file (issue 15): the tensors are read from the
 * file into the model and the checksum is hashed as the data streams in.
 *  - a path and the same bytes in memory give the same model, bitwise, for F32, F16 and BF16
 *    files, equal to the saved model (F16/BF16: to its values rounded by a reference here);
 *  - a file cut anywhere, or cut while it is being read, fails cleanly (MAE_ERR_FORMAT or
 *    MAE_ERR_IO, naming the tensor once the header is whole) with nothing leaked, as the same
 *    bytes in memory do;
 *  - a flipped bit anywhere is refused as from memory, a data byte as a checksum mismatch, also
 *    when the reader takes the tensors out of order or skips some (gaps included);
 *  - the most memory a load holds is the final model + one tensor + the header + a little, which
 *    the old whole-file read (file + model) exceeds. */
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../src/io/safetensors.h"
#include "../src/io/crc32c.h"
#include "testutil.h"

static char dir[64];

/* ---- helpers ------------------------------------------------------------------------------- */

static mae_model *make_model(int dim, int depth, int img, uint64_t seed)
{
    mae_config c;
    mae_config_init(&c, sizeof c, "tiny");
    c.img_size = img;
    c.embed_dim = dim;
    c.num_heads = dim / 16;
    c.depth = depth;
    c.decoder_embed_dim = dim / 2;
    c.decoder_num_heads = dim / 32 > 0 ? dim / 32 : 1;
    c.decoder_depth = 2;
    mae_model *m = NULL;
    CHECK_OK(mae_model_create(&c, seed, &m));
    return m;
}

static int write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    int ok = fp && fwrite(b, 1, n, fp) == n;
    if (fp && fclose(fp) != 0)
        ok = 0;
    CHECK(ok, "cannot write %s", path);
    return ok;
}

static size_t header_end(const unsigned char *b)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | b[i];
    return 8 + (size_t)n;
}

/* x rounded to nearest, ties to even, at the spacing of a float format with `mant` stored
 * mantissa bits and smallest normal exponent emin: done in double (exact here), independent of
 * the library's bit manipulation. */
static float round_to(float x, int mant, int emin)
{
    if (x == 0.0f || !isfinite(x))
        return x;
    int ex;
    frexp((double)x, &ex);               /* |x| in [2^(ex-1), 2^ex) */
    int e = ex - 1 < emin ? emin : ex - 1;
    double q = ldexp(1.0, e - mant);
    return (float)(nearbyint((double)x / q) * q);
}

/* What a value of the saved model reads back as from a file of dtype. */
static float stored(float x, const char *dtype)
{
    if (strcmp(dtype, "F16") == 0)
        return round_to(x, 10, -14);
    if (strcmp(dtype, "BF16") == 0)
        return round_to(x, 7, -126);
    return x;
}

/* Every tensor of a and b the same, bitwise (with want_dtype: b's values as a's stored in it). */
static int same_models(const mae_model *a, const mae_model *b, const char *dtype, const char *what)
{
    int na = 0, nb = 0, bad = 0;
    CHECK_OK(mae_model_tensor_count(a, &na));
    CHECK_OK(mae_model_tensor_count(b, &nb));
    CHECK(na == nb && na > 0, "%s: %d tensors vs %d", what, na, nb);
    for (int i = 0; i < na && na == nb; i++) {
        const char *name = NULL;
        const float *x = NULL, *y = NULL;
        size_t cx = 0, cy = 0;
        CHECK_OK(mae_model_tensor_name(a, i, &name));
        CHECK_OK(mae_model_tensor(a, name, &x, &cx, NULL, NULL));
        CHECK_OK(mae_model_tensor(b, name, &y, &cy, NULL, NULL));
        if (!x || !y || cx != cy) {
            bad++;
            continue;
        }
        for (size_t k = 0; k < cx; k++) {
            float want = stored(x[k], dtype);
            if (memcmp(&want, &y[k], sizeof want) != 0) {
                if (bad++ < 3)
                    fprintf(stderr, "%s: '%s'[%zu] is %.9g, expected %.9g\n", what, name, k, (double)y[k], (double)want);
                break;
            }
        }
    }
    CHECK(bad == 0, "%s: %d tensors differ", what, bad);
    return bad == 0;
}

/* ---- path == memory == the saved model ----------------------------------------------------- */

static void test_same(const char *dtype)
{
    char path[128];
    snprintf(path, sizeof path, "%s/same_%s.safetensors", dir, dtype);
    mae_model *m = make_model(64, 3, 32, 11);
    CHECK_OK(mae_model_save_as(m, path, dtype));
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    CHECK(b != NULL, "cannot read %s", path);
    mae_model *fp = NULL, *mem = NULL;
    CHECK_OK(mae_model_load(path, &fp));
    CHECK_OK(mae_model_load_memory(b, n, &mem));
    if (fp && mem) {
        same_models(m, fp, dtype, "from the path vs the saved model");
        same_models(mem, fp, "F32", "from the path vs from memory");
    }
    /* the buffer is not kept: changing it afterwards changes nothing in the model */
    if (b && mem) {
        memset(b, 0x7F, n);
        same_models(m, mem, dtype, "from memory, after the buffer was overwritten");
    }
    mae_model_free(fp);
    mae_model_free(mem);
    mae_model_free(m);
    free(b);
    unlink(path);
}

/* A foreign file (official names, no checksum) loads the same both ways. */
static void test_same_foreign(void)
{
    const char *path = tu_path("tests/data/tiny.model.safetensors");
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    CHECK(b != NULL, "cannot read %s", path);
    mae_model *fp = NULL, *mem = NULL;
    CHECK_OK(mae_model_load(path, &fp));
    CHECK_OK(mae_model_load_memory(b, n, &mem));
    if (fp && mem)
        same_models(mem, fp, "F32", "foreign: from the path vs from memory");
    mae_model_free(fp);
    mae_model_free(mem);
    free(b);
    mae_model *r = NULL;
    CHECK(mae_model_load_memory(NULL, 0, &r) == MAE_ERR_FORMAT && r == NULL, "no bytes: %s", mae_last_error());
    CHECK(mae_model_load_memory("x", 1, NULL) == MAE_ERR_INVALID_ARG, "NULL out");
    CHECK(mae_model_load_memory(NULL, 16, &r) == MAE_ERR_INVALID_ARG, "NULL buffer of 16 bytes");
}

/* ---- truncation ---------------------------------------------------------------------------- */

/* Loads b cut to len bytes from a file and from memory: both fail with the same status, FORMAT
 * or IO, naming a tensor once the header is whole, and leave no block behind. 1 when so. */
static int cut_refused(const unsigned char *b, size_t len, size_t hend, const char *path)
{
    if (!write_bytes(path, b, len))
        return 0;
    mae_model *r = NULL, *q = NULL;
    tu_alloc_reset();
    CHECK_OK(tu_alloc_install());
    mae_status s = mae_model_load(path, &r);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mae_last_error());
    long live = atomic_load(&tu_alloc.live), bad_frees = atomic_load(&tu_alloc.bad_frees);
    mae_status sm = mae_model_load_memory(len ? b : NULL, len, &q);
    long live_m = atomic_load(&tu_alloc.live);
    mae_set_allocator(NULL);
    int ok = (s == MAE_ERR_FORMAT || s == MAE_ERR_IO) && r == NULL && q == NULL && sm == s && live == 0 &&
             live_m == 0 && bad_frees == 0 && (len < hend || strstr(msg, "tensor '") != NULL) && strstr(msg, path);
    CHECK(ok, "cut at %zu of the file: %s (%s), from memory %s, %ld/%ld blocks left", len, mae_status_str(s), msg,
          mae_status_str(sm), live, live_m);
    mae_model_free(r);
    mae_model_free(q);
    return ok;
}

static void test_truncated(void)
{
    char path[128], cut[128];
    snprintf(path, sizeof path, "%s/whole.safetensors", dir);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    mae_model *m = make_model(32, 2, 32, 5);
    CHECK_OK(mae_model_save(m, path));
    mae_model_free(m);
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    CHECK(b != NULL && n > 64, "cannot read %s", path);
    if (!b)
        return;
    size_t hend = header_end(b), tried = 0, failed = 0;
    /* every length through the header's first bytes and around its end, then spread over the rest */
    for (size_t len = 0; len < n; ) {
        failed += !cut_refused(b, len, hend, cut);
        tried++;
        if (len < 64 || (len + 16 >= hend && len < hend + 16) || len + 16 >= n)
            len++;
        else
            len += 1 + (size_t)(tu_uniform() * (double)(n / 150));
    }
    CHECK(failed == 0 && tried > 150, "%zu of %zu cut points not refused cleanly", failed, tried);
    free(b);
    unlink(path);
    unlink(cut);
}

/* The file shrinks after its header was read (another process truncating it): the tensor read
 * next fails with MAE_ERR_IO naming it, and nothing is leaked. */
static int shrink_at = 0;
static char shrink_path[128];
static off_t shrink_to = 0;
static int shrink(void *user, int done, int total)
{
    (void)user;
    (void)total;
    if (done == shrink_at && truncate(shrink_path, shrink_to) != 0)
        fprintf(stderr, "truncate failed\n");
    return 0;
}

static void test_shrinking(void)
{
    snprintf(shrink_path, sizeof shrink_path, "%s/shrinking.safetensors", dir);
    mae_model *m = make_model(64, 2, 32, 6);
    struct stat st;
    for (int k = 0; k < 2; k++) {
        CHECK_OK(k == 0 ? mae_model_save(m, shrink_path) : mae_model_save_as(m, shrink_path, "BF16"));
        CHECK(stat(shrink_path, &st) == 0, "stat");
        shrink_at = 2;
        shrink_to = st.st_size / 2;
        mae_model *r = NULL;
        tu_alloc_reset();
        CHECK_OK(tu_alloc_install());
        mae_status s = mae_model_load_progress(shrink_path, shrink, NULL, &r);
        long live = atomic_load(&tu_alloc.live);
        mae_set_allocator(NULL);
        CHECK(s == MAE_ERR_IO && r == NULL && strstr(mae_last_error(), "tensor '") &&
              strstr(mae_last_error(), "shorter than when it was opened"), "%s: %s", mae_status_str(s), mae_last_error());
        CHECK(live == 0, "%ld blocks left after a failed read", live);
        mae_model_free(r);
    }
    mae_model_free(m);
    unlink(shrink_path);
}

/* ---- damage -------------------------------------------------------------------------------- */

/* Flipped bits: a data bit is a checksum mismatch from the path as from memory; a header bit is
 * refused from the path with the status memory gives (a checksum mismatch whenever memory says
 * so, though a header that still parses fails on its shapes first). Nothing is leaked. */
static void test_flips(void)
{
    char path[128], bad[128];
    snprintf(path, sizeof path, "%s/good.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/flipped.safetensors", dir);
    mae_model *m = make_model(32, 2, 32, 9);
    CHECK_OK(mae_model_save_as(m, path, "F16"));
    mae_model_free(m);
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    CHECK(b != NULL, "cannot read %s", path);
    if (!b)
        return;
    size_t hend = header_end(b);
    int missed = 0, differ = 0, not_mismatch = 0, leaks = 0;
    for (int i = 0; i < 160; i++) {
        /* the last data byte, the first one, then random bytes of the header and of the data */
        size_t byte = i == 0 ? n - 1 : i == 1 ? hend : i % 2 ? 8 + (size_t)(tu_uniform() * (double)(hend - 8))
                                                              : hend + (size_t)(tu_uniform() * (double)(n - hend));
        unsigned char mask = (unsigned char)(1u << (int)(tu_uniform() * 8));
        b[byte] ^= mask;
        int wrote = write_bytes(bad, b, n);
        mae_model *r = NULL, *q = NULL;
        tu_alloc_reset();
        CHECK_OK(tu_alloc_install());
        mae_status s = wrote ? mae_model_load(bad, &r) : MAE_ERR_IO;
        int mm = strstr(mae_last_error(), "checksum mismatch") != NULL;
        mae_status sm = mae_model_load_memory(b, n, &q);
        int mm_mem = strstr(mae_last_error(), "checksum mismatch") != NULL;
        long live = atomic_load(&tu_alloc.live);
        mae_set_allocator(NULL);
        b[byte] ^= mask;
        missed += s == MAE_OK;
        differ += s != sm || mm != mm_mem;
        not_mismatch += byte >= hend && !mm;
        leaks += live != 0;
        mae_model_free(r);
        mae_model_free(q);
    }
    CHECK(missed == 0 && differ == 0 && not_mismatch == 0 && leaks == 0,
          "160 flips: %d loaded, %d differ from memory, %d data flips not a mismatch, %d leaked", missed, differ,
          not_mismatch, leaks);
    /* the intact file still loads */
    mae_model *r = NULL;
    CHECK_OK(mae_model_load(path, &r));
    mae_model_free(r);
    free(b);
    unlink(path);
    unlink(bad);
}

/* The reader on its own: tensors read out of order, some skipped, with gaps between them and
 * bytes after the last: mae_st_verify hashes exactly the file's bytes, wherever one is flipped. */
static void test_stream_order(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/gaps.safetensors", dir);
    /* a: 3 floats at 4..16, b: 2 floats at 20..28, c: 2 halves at 28..32, 36 bytes of data */
    const char *hdr = "{\"__metadata__\":{\"" MAE_ST_CRC_KEY "\":\"00000000\"},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[20,28]},"
                      "\"c\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[28,32]}}";
    size_t hl = strlen(hdr), n = 8 + hl + 36;
    unsigned char *b = tu_malloc(n);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    unsigned char *d = b + 8 + hl;
    for (int i = 0; i < 36; i++)
        d[i] = (unsigned char)(0xA0 + i);   /* the gaps and the tail */
    const float a[3] = { 1.5f, -2.0f, 3.25f }, bv[2] = { 7.0f, -0.5f };
    memcpy(d + 4, a, sizeof a);              /* little-endian hosts */
    memcpy(d + 20, bv, sizeof bv);
    d[28] = 0x00; d[29] = 0x3C; d[30] = 0x00; d[31] = 0xC0;   /* 1.0, -2.0 */
    mae_crc32c c;
    mae_crc32c_init(&c);
    mae_crc32c_update(&c, b, n);
    char digits[9];
    snprintf(digits, sizeof digits, "%08x", (unsigned)mae_crc32c_value(&c));
    memcpy(strstr((char *)b + 8, "00000000"), digits, 8);
    /* orders of reading: all in file order, reversed, only the last, none */
    static const char *const orders[] = { "abc", "cba", "c", "", "bca", "ab" };
    for (int flip = -1; flip < (int)n; flip++) {
        if (flip >= 0)
            b[flip] ^= 0x04;
        mae_st_file mf;
        mae_status sp = mae_st_parse(b, n, &mf);
        if (sp == MAE_OK)
            mae_st_close(&mf);
        int in_data = flip >= (int)(8 + hl);
        if (write_bytes(path, b, n))
            for (size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
                mae_st_file f;
                mae_status s = mae_st_open_stream(path, &f);
                float x[3];
                for (const char *p = orders[o]; *p && s == MAE_OK; p++) {
                    char name[2] = { *p, 0 };
                    const mae_st_entry *e = mae_st_find(&f, name);
                    s = e && e->count <= 3 ? mae_st_read_f32(&f, e, x, e->count) : MAE_ERR_FORMAT;
                    if (flip < 0 && s == MAE_OK)
                        CHECK(*p == 'a' ? memcmp(x, a, sizeof a) == 0 : *p == 'b' ? memcmp(x, bv, sizeof bv) == 0
                              : x[0] == 1.0f && x[1] == -2.0f, "tensor %s read wrong (order %s)", name, orders[o]);
                }
                if (s == MAE_OK)
                    s = mae_st_verify(&f);
                mae_st_close(&f);
                if (flip < 0)
                    CHECK(s == MAE_OK, "intact file, order '%s': %s", orders[o], mae_last_error());
                else if (in_data)
                    CHECK(s == MAE_ERR_FORMAT && strstr(mae_last_error(), "checksum mismatch"),
                          "data byte %d flipped, order '%s': %s: %s", flip - (int)(8 + hl), orders[o], mae_status_str(s),
                          mae_last_error());
                else
                    CHECK(s != MAE_OK && sp != MAE_OK, "header byte %d flipped, order '%s': stream %s, memory %s", flip,
                          orders[o], mae_status_str(s), mae_status_str(sp));
            }
        if (flip >= 0)
            b[flip] ^= 0x04;
    }
    /* mae_st_open has verified already; its reads come from the file */
    mae_st_file f;
    CHECK(write_bytes(path, b, n), "rewrite");
    CHECK_OK(mae_st_open(path, &f));
    float x[3];
    CHECK(f.has_crc && f.stream && mae_st_read_f32(&f, mae_st_find(&f, "a"), x, 3) == MAE_OK && memcmp(x, a, sizeof a) == 0,
          "mae_st_open then a read: %s", mae_last_error());
    CHECK_OK(mae_st_verify(&f));
    mae_st_close(&f);
    d[35] ^= 1;   /* the last byte: not in any tensor */
    CHECK(write_bytes(path, b, n), "rewrite");
    CHECK(mae_st_open(path, &f) == MAE_ERR_FORMAT && strstr(mae_last_error(), "checksum mismatch") &&
          strstr(mae_last_error(), path) && f.stream == NULL, "mae_st_open of a damaged tail: %s", mae_last_error());
    free(b);
    unlink(path);
}

/* ---- memory -------------------------------------------------------------------------------- */

/* The most a load holds against the model it gives: at most the final model + the largest tensor
 * (as float32) + the header + 256 KiB. The old loader held the whole file besides the model. */
static void test_peak(const char *dtype)
{
    char path[128];
    snprintf(path, sizeof path, "%s/peak_%s.safetensors", dir, dtype);
    mae_model *m = make_model(256, 4, 64, 3);
    CHECK_OK(mae_model_save_as(m, path, dtype));
    size_t largest = 0, n_file = 0;
    int count = 0;
    mae_model_tensor_count(m, &count);
    for (int i = 0; i < count; i++) {
        const char *name;
        size_t c = 0;
        mae_model_tensor_name(m, i, &name);
        mae_model_tensor(m, name, NULL, &c, NULL, NULL);
        largest = c > largest ? c : largest;
    }
    mae_model_free(m);
    unsigned char *b = tu_read_file(path, &n_file);
    size_t hend = b ? header_end(b) : 0;
    for (int from_memory = 0; from_memory < 2 && b; from_memory++) {
        tu_alloc_reset();   /* the hook counts the bytes the library holds, and the most at once */
        CHECK_OK(tu_alloc_install());
        mae_model *r = NULL;
        CHECK_OK(from_memory ? mae_model_load_memory(b, n_file, &r) : mae_model_load(path, &r));
        size_t model = atomic_load(&tu_alloc.bytes), peak = atomic_load(&tu_alloc.peak);
        mae_model_free(r);
        size_t left = atomic_load(&tu_alloc.bytes);
        mae_set_allocator(NULL);
        size_t bound = model + largest * sizeof(float) + hend + 256 * 1024;
        printf("load %s from %s: the model holds %.2f MB, the load at most %.2f MB (bound %.2f MB, file %.2f MB)\n",
               dtype, from_memory ? "memory" : "its path", model / 1e6, peak / 1e6, bound / 1e6, n_file / 1e6);
        CHECK(peak <= bound, "a %s load from %s held %zu bytes at once, more than the model's %zu + the largest tensor's "
              "%zu + the header's %zu + 256 KiB", dtype, from_memory ? "memory" : "its path", peak, model,
              largest * sizeof(float), hend);
        CHECK(left == 0, "%zu bytes left after freeing the model", left);
    }
    free(b);
    unlink(path);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/mae_test_load_%ld", (long)getpid());
    mkdir(dir, 0777);
    tu_seed(15);
    TU_RUN("same/F32", test_same("F32"));
    TU_RUN("same/F16", test_same("F16"));
    TU_RUN("same/BF16", test_same("BF16"));
    TU_RUN("same/foreign", test_same_foreign());
    TU_RUN("truncated", test_truncated());
    TU_RUN("shrinking", test_shrinking());
    TU_RUN("flips", test_flips());
    TU_RUN("stream_order", test_stream_order());
    TU_RUN("peak/F32", test_peak("F32"));
    TU_RUN("peak/F16", test_peak("F16"));
    rmdir(dir);
    return tu_finish("test_load");
}
