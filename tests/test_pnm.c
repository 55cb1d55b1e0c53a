/* Binary PGM/PPM: files written by hand here (comments, odd whitespace, maxval 15 and 1000 with
 * values scaled as round(v * 255 / maxval)), round trips through mae_pnm_write, and every
 * truncation and malformed header failing cleanly. */
#include "testutil.h"
#include "../src/image/image.h"

static uint8_t *load(const void *p, size_t n, int want, int *w, int *h, int *c, mae_status *s)
{
    uint8_t *px = NULL;
    *s = mae_image_load_memory(p, n, want, &px, w, h, c);
    return *s == MAE_OK ? px : NULL;
}

static void test_hand_written(void)
{
    int w, h, c;
    mae_status s;
    /* P5 with comments between every field and a tab, maxval 255 */
    const char pgm[] = "P5 # a comment\n3\t# another\n2\n#x\n255\n\x00\x7f\xff\x01\x02\x03";
    uint8_t *px = load(pgm, sizeof pgm - 1, 0, &w, &h, &c, &s);
    CHECK(s == MAE_OK, "P5: %s", mae_last_error());
    if (px) {
        CHECK(w == 3 && h == 2 && c == 1, "P5: %dx%dx%d", w, h, c);
        const uint8_t want[] = { 0, 127, 255, 1, 2, 3 };
        CHECK(!memcmp(px, want, 6), "P5 pixels");
    }
    mae_image_free(px);

    /* P6 maxval 15: v -> round(v * 255 / 15) = 17 v */
    const char ppm[] = "P6\n2 1\n15\n\x00\x01\x0f\x07\x08\x0e";
    px = load(ppm, sizeof ppm - 1, 0, &w, &h, &c, &s);
    CHECK(s == MAE_OK, "P6/15: %s", mae_last_error());
    if (px) {
        const uint8_t want[] = { 0, 17, 255, 119, 136, 238 };
        CHECK(w == 2 && h == 1 && c == 3 && !memcmp(px, want, 6), "P6 maxval 15");
    }
    mae_image_free(px);

    /* P5 maxval 1000, 16-bit big-endian samples: 0, 1, 2 (-> 1), 500 (-> 128), 996 (-> 254), 1000 */
    const uint8_t pgm16[] = { 'P', '5', ' ', '6', ' ', '1', ' ', '1', '0', '0', '0', '\n',
                              0, 0, 0, 1, 0, 2, 0x01, 0xf4, 0x03, 0xe4, 0x03, 0xe8 };
    px = load(pgm16, sizeof pgm16, 0, &w, &h, &c, &s);
    CHECK(s == MAE_OK, "P5/1000: %s", mae_last_error());
    if (px) {
        const uint8_t want[] = { 0, 0, 1, 128, 254, 255 };
        CHECK(w == 6 && h == 1 && c == 1 && !memcmp(px, want, 6), "P5 maxval 1000: %u %u %u %u %u %u",
              px[0], px[1], px[2], px[3], px[4], px[5]);
    }
    mae_image_free(px);

    /* gray -> RGB on load */
    px = load(pgm, sizeof pgm - 1, 3, &w, &h, &c, &s);
    CHECK(px && c == 3 && px[3] == 127 && px[4] == 127 && px[5] == 127, "P5 loaded as RGB");
    mae_image_free(px);

    /* the raster may be followed by more data (a second image): ignored */
    const char two[] = "P5 1 1 255 \x05P5 1 1 255 \x06";
    px = load(two, sizeof two - 1, 0, &w, &h, &c, &s);
    CHECK(px && w == 1 && px[0] == 5, "trailing data after the raster");
    mae_image_free(px);
}

static void expect_fail(const void *p, size_t n, mae_status want, const char *what)
{
    int w = -1, h = -1, c = -1;
    uint8_t *px = (uint8_t *)&px;
    mae_status s = mae_image_load_memory(p, n, 0, &px, &w, &h, &c);
    CHECK(s == want, "%s: got %s (%s)", what, mae_status_str(s), mae_last_error());
    CHECK(px == (uint8_t *)&px && w == -1 && h == -1 && c == -1, "%s: outputs written", what);
    if (s == MAE_OK)
        mae_image_free(px);
}

#define FAIL(str, want, what) expect_fail(str, sizeof str - 1, want, what)

static void test_malformed(void)
{
    const char ok[] = "P6\n# c\n2 2\n255\n0123456789ab";
    for (size_t len = 0; len + 1 < sizeof ok; len++) {
        uint8_t *cp = tu_malloc(len ? len : 1);   /* exact size for ASan */
        memcpy(cp, ok, len);
        int w, h, c;
        uint8_t *px = NULL;
        mae_status s = mae_image_load_memory(cp, len, 0, &px, &w, &h, &c);
        CHECK(s == MAE_ERR_FORMAT, "prefix of %zu bytes: %s", len, mae_status_str(s));
        if (s == MAE_OK)
            mae_image_free(px);
        free(cp);
    }
    FAIL("P3\n1 1\n255\n1 2 3\n", MAE_ERR_UNSUPPORTED, "ASCII P3");
    FAIL("P4\n8 1\n\xff", MAE_ERR_UNSUPPORTED, "bitmap P4");
    FAIL("P7\nWIDTH 1\n", MAE_ERR_UNSUPPORTED, "PAM");
    FAIL("P5\n0 1\n255\n\x01", MAE_ERR_FORMAT, "width 0");
    FAIL("P5\n1 1\n0\n\x01", MAE_ERR_FORMAT, "maxval 0");
    FAIL("P5\n1 1\n65536\n\x01\x01", MAE_ERR_FORMAT, "maxval 65536");
    FAIL("P5\n1 1\n15\n\x10", MAE_ERR_FORMAT, "a sample above maxval");
    FAIL("P5\n1 1\n255", MAE_ERR_FORMAT, "no whitespace after maxval");
    FAIL("P5\n1 -1\n255\n\x01", MAE_ERR_FORMAT, "negative height");
    FAIL("P51 1 255\n\x01", MAE_ERR_FORMAT, "no whitespace after the magic");
    FAIL("P5\n99999999999 1\n255\n", MAE_ERR_FORMAT, "width beyond 2^31");
    FAIL("P5\n65536 65536\n255\n\x01", MAE_ERR_UNSUPPORTED, "2^32 pixels");
    FAIL("P5\n100 100\n255\n\x01", MAE_ERR_FORMAT, "raster far too short");
}

static void test_roundtrip(void)
{
    char dir[] = "/tmp/mae_test_pnm_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char path[256], cmd[300];
    snprintf(path, sizeof path, "%s/a.pnm", dir);
    for (int c = 1; c <= 3; c += 2)
        for (int t = 0; t < 4; t++) {
            int w = 1 + (int)(tu_uniform() * 33), h = 1 + (int)(tu_uniform() * 17);
            ptrdiff_t stride = (ptrdiff_t)w * c + t;
            uint8_t *img = tu_malloc((size_t)(stride * h));
            for (ptrdiff_t i = 0; i < stride * h; i++)
                img[i] = (uint8_t)(tu_uniform() * 256);
            CHECK_OK(mae_pnm_write(path, img, w, h, c, stride));
            int ow, oh, oc;
            uint8_t *px = NULL;
            CHECK_OK(mae_image_load(path, 0, &px, &ow, &oh, &oc));
            int same = px && ow == w && oh == h && oc == c;
            for (int y = 0; same && y < h; y++)
                same = !memcmp(px + (size_t)y * w * c, img + y * stride, (size_t)w * c);
            CHECK(same, "PNM round trip %dx%dx%d stride %td", w, h, c, stride);
            mae_image_free(px);
            free(img);
        }
    uint8_t img[8] = { 0 };
    CHECK(mae_pnm_write(path, img, 2, 1, 4, 0) == MAE_ERR_UNSUPPORTED, "RGBA to PNM");
    CHECK(mae_pnm_write(path, img, 2, 1, 2, 0) == MAE_ERR_UNSUPPORTED, "gray+alpha to PNM");
    CHECK(mae_pnm_write(path, img, 2, 1, 0, 0) == MAE_ERR_INVALID_ARG, "0 channels");
    CHECK(mae_pnm_write(NULL, img, 2, 1, 1, 0) == MAE_ERR_INVALID_ARG, "NULL path");
    CHECK(mae_pnm_write(path, NULL, 2, 1, 1, 0) == MAE_ERR_INVALID_ARG, "NULL pixels");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(11);
    TU_RUN("hand_written", test_hand_written());
    TU_RUN("malformed", test_malformed());
    TU_RUN("roundtrip", test_roundtrip());
    return tu_finish("test_pnm");
}
