/* The decode memory limit (mae_image_set_limit): with a counting allocator, the most any load
 * holds at once stays within the limit, whether the load succeeds or is refused; a gzip IDX's
 * output is sized from its ISIZE trailer (one allocation) and otherwise grows without the old and
 * new buffers together passing the limit (the doubling used to reach twice the documented 1 GiB);
 * PNG, PNM, channel conversion and plain IDX refuse a need above the limit before allocating it. */
#include "testutil.h"
#include "../src/image/image.h"
#include "../src/util/util.h"

/* What mae_alloc adds to a block to align it (a few dozen bytes), for the few blocks a load holds. */
#define SLACK 1024

/* Loads under `limit`: 1 if it succeeded; either way the peak stays within the limit. */
static int load_under(size_t limit, const uint8_t *file, size_t n, int idx, int channels, const char *what)
{
    CHECK_OK(mae_image_set_limit(limit));
    size_t before = atomic_load(&tu_alloc.bytes);
    tu_alloc_mark();
    uint8_t *out = NULL;
    int w, h, c, nd;
    int64_t dims[4];
    mae_status s = idx ? mae_idx_load_memory(file, n, &out, &nd, dims)
                       : mae_image_load_memory(file, n, channels, &out, &w, &h, &c);
    size_t held = atomic_load(&tu_alloc.peak) - before;
    CHECK(held <= limit + SLACK, "%s under a limit of %zu: %zu bytes held at once", what, limit, held);
    CHECK(s == MAE_OK || (s == MAE_ERR_UNSUPPORTED && strstr(mae_last_error(), "limit")),
          "%s under a limit of %zu: %s: %s", what, limit, mae_status_str(s), mae_last_error());
    mae_image_free(out);
    size_t after = atomic_load(&tu_alloc.bytes);
    CHECK(after == before, "%s: %zu bytes leaked", what, after - before);
    return s == MAE_OK;
}

/* An IDX file of n images of 100 x 100: header and values. */
static uint8_t *make_idx(int n, size_t *size)
{
    size_t count = (size_t)n * 100 * 100;
    uint8_t *b = tu_malloc(16 + count);
    const uint8_t head[16] = { 0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, 100, 0, 0, 0, 100 };
    memcpy(b, head, 16);
    for (size_t i = 0; i < count; i++)
        b[16 + i] = (uint8_t)(tu_uniform() * 4);   /* compressible, not trivially */
    *size = 16 + count;
    return b;
}

static uint8_t *gzip(const uint8_t *p, size_t n, size_t *size)
{
    mae_bytes b;
    mae_bytes_init(&b, SIZE_MAX);
    CHECK_OK(mae_gzip_compress(p, n, &b));
    *size = b.size;
    return b.data;
}

static void test_idx(void)
{
    size_t n, z1n, z2n;
    uint8_t *raw = make_idx(3, &n);
    uint8_t *z = gzip(raw, n, &z1n);
    /* one member: ISIZE is the whole output, so the limit can be the file's size exactly */
    CHECK(load_under(n, z, z1n, 1, 0, "gzip IDX") == 1, "a gzip IDX does not load under a limit of its size");
    CHECK(load_under(n - 1, z, z1n, 1, 0, "gzip IDX") == 0, "a gzip IDX loaded under a limit below its size");
    CHECK(load_under(n, raw, n, 1, 0, "plain IDX") == 1, "a plain IDX does not load under a limit of its size");
    CHECK(load_under(n - 17, raw, n, 1, 0, "plain IDX") == 0, "a plain IDX loaded under a limit below its values");
    /* two members (the trailer gives only the second one's size): the buffer grows, and the
     * old and new buffers together still stay within every limit tried */
    uint8_t *z2a = gzip(raw, n / 3, &z1n), *z2b = gzip(raw + n / 3, n - n / 3, &z2n);
    uint8_t *two = tu_malloc(z1n + z2n);
    memcpy(two, z2a, z1n);
    memcpy(two + z1n, z2b, z2n);
    int ok = 0;
    for (size_t limit = n / 2; limit <= 3 * n; limit += n / 8)
        ok += load_under(limit, two, z1n + z2n, 1, 0, "two-member gzip IDX");
    CHECK(ok > 0, "a two-member gzip IDX never loaded");
    mae_free(z);
    mae_free(z2a);
    mae_free(z2b);
    free(two);
    free(raw);
}

static void test_png_pnm(void)
{
    int w = 300, h = 200;
    uint8_t *px = tu_malloc((size_t)w * h * 4);
    for (size_t i = 0; i < (size_t)w * h * 4; i++)
        px[i] = (uint8_t)(tu_uniform() * 256);
    uint8_t *png = NULL;
    size_t n = 0;
    CHECK_OK(mae_png_encode(px, w, h, 4, 0, &png, &n));
    int ok = 0, refused = 0;
    for (size_t limit = 50000; limit <= 1200000; limit += 50000) {
        int r = load_under(limit, png, n, 0, 0, "PNG");
        ok += r;
        refused += !r;
        load_under(limit, png, n, 0, 1, "PNG to gray");
    }
    CHECK(ok > 0 && refused > 0, "PNG: %d loads, %d refusals over the limits tried", ok, refused);
    /* a binary PPM: 3 bytes a pixel */
    char head[32];
    int hn = snprintf(head, sizeof head, "P6\n%d %d\n255\n", w, h);
    size_t pn = (size_t)hn + (size_t)w * h * 3;
    uint8_t *ppm = tu_malloc(pn);
    memcpy(ppm, head, (size_t)hn);
    memcpy(ppm + hn, px, (size_t)w * h * 3);
    CHECK(load_under((size_t)w * h * 3, ppm, pn, 0, 0, "PPM") == 1, "a PPM does not load under a limit of its pixels");
    CHECK(load_under((size_t)w * h * 3 - 1, ppm, pn, 0, 0, "PPM") == 0, "a PPM loaded under a limit below its pixels");
    CHECK(load_under((size_t)w * h * 3, ppm, pn, 0, 4, "PPM to RGBA") == 0, "a conversion to RGBA fit in the pixels' size");
    free(ppm);
    mae_image_free(png);
    free(px);
}

int main(void)
{
    tu_seed(11);
    CHECK(mae_image_get_limit() == (size_t)1 << 30, "the default limit is %zu", mae_image_get_limit());
    tu_alloc_reset();
    CHECK_OK(tu_alloc_install());
    test_idx();
    test_png_pnm();
    CHECK_OK(mae_set_allocator(NULL));
    CHECK_OK(mae_image_set_limit(0));
    CHECK(mae_image_get_limit() == (size_t)1 << 30, "limit 0 did not restore the default (%zu)", mae_image_get_limit());
    return tu_finish("test_limits");
}
