/* `mae finetune --reprob`'s random erasing (examples/cli/augment.h) against timm's
 * RandomErasing('pixel', max_count 1) stated as properties over many draws: the erase rate is
 * the probability; every rectangle is one that some area fraction in [0.02, 1/3] and aspect in
 * [0.3, 1/0.3] round to, lies inside the image and below its height and width; both ends of the
 * corner's range occur (randint includes both); the pixels outside stay, those inside (every
 * channel) become standard normal values; probability 0 draws nothing; the same state gives the
 * same result. RandAugment-lite (examples/cli/randaug.c): level 0 leaves the signed ops' images
 * as they are, Invert twice is the identity, a whole-pixel translation shifts exactly, a quarter
 * turn of a square image is exact, and the policy runs each op about 2 x 0.5 / 15 of the time;
 * with --pil FILE (tests/check_linprobe.sh, FILE from tests/gen_randaug.py) every op against
 * PIL as timm calls it (bilinear for the affine ones): equal to the byte. */
#include "../examples/cli/augment.c"
#include "../examples/cli/randaug.c"
#include "testutil.h"

/* Whether [a0, a1] and [b0, b1] meet. */
static int meet(double a0, double a1, double b0, double b1)
{
    return a0 <= b1 && b0 <= a1;
}

static void run_shape(int C, int H, int W)
{
    enum { DRAWS = 20000 };
    size_t n = (size_t)C * H * W;
    float *img = tu_malloc(n * sizeof *img), *orig = tu_malloc(n * sizeof *orig);
    uint64_t state = 12345 + (uint64_t)H;
    int erased = 0, bad_box = 0, bad_outside = 0, top0 = 0, top_max = 0, left0 = 0, left_max = 0;
    double s = 0, s2 = 0, cnt = 0, area_sum = 0;
    for (int d = 0; d < DRAWS; d++) {
        for (size_t i = 0; i < n; i++)
            orig[i] = img[i] = (float)(100 + (int)(i % 13));   /* far from what N(0, 1) gives */
        int box[4] = { -1, -1, -1, -1 };
        if (!cli_random_erase(img, C, H, W, 0.25, &state, box)) {
            bad_outside += memcmp(img, orig, n * sizeof *img) != 0;
            continue;
        }
        erased++;
        int top = box[0], left = box[1], h = box[2], w = box[3];
        double A = (double)H * W;
        /* some target area t and aspect a with round(sqrt(t a)) = h, round(sqrt(t / a)) = w */
        int ok = h >= 1 && w >= 1 && h < H && w < W && top >= 0 && left >= 0 && top + h <= H && left + w <= W &&
                 meet((h - 0.5) * (w - 0.5), (h + 0.5) * (w + 0.5), 0.02 * A, A / 3) &&
                 meet((h - 0.5) / (w + 0.5), (h + 0.5) / (w - 0.5), 0.3, 1 / 0.3);
        bad_box += !ok;
        if (!ok)
            continue;
        top0 += top == 0, top_max += top == H - h, left0 += left == 0, left_max += left == W - w;
        area_sum += h * w / A;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    size_t i = ((size_t)c * H + y) * W + x;
                    int inside = y >= top && y < top + h && x >= left && x < left + w;
                    if (!inside)
                        bad_outside += img[i] != orig[i];
                    else
                        s += img[i], s2 += (double)img[i] * img[i], cnt++;
                }
    }
    double rate = (double)erased / DRAWS, sd = sqrt(0.25 * 0.75 / DRAWS);
    CHECK(fabs(rate - 0.25) < 5 * sd, "%dx%dx%d: erase rate %.4f, want 0.25 +- %.4f", C, H, W, rate, 5 * sd);
    CHECK(bad_box == 0, "%dx%dx%d: %d rectangles no area / aspect in range rounds to", C, H, W, bad_box);
    CHECK(bad_outside == 0, "%dx%dx%d: %d pixels outside the rectangle changed", C, H, W, bad_outside);
    CHECK(top0 && top_max && left0 && left_max, "%dx%dx%d: a corner range end never drawn (top 0: %d, H-h: %d, left 0: %d, W-w: %d)",
          C, H, W, top0, top_max, left0, left_max);
    double mean = s / cnt, var = s2 / cnt - mean * mean;
    CHECK(fabs(mean) < 0.01 && fabs(var - 1) < 0.02, "%dx%dx%d: erased values mean %.4f variance %.4f, want N(0, 1)", C, H,
          W, mean, var);
    /* the area fraction is uniform in [0.02, 1/3] before rounding and the (rare) retries: mean ~0.177 */
    double mean_area = area_sum / erased;
    CHECK(mean_area > 0.15 && mean_area < 0.2, "%dx%dx%d: mean erased fraction %.4f", C, H, W, mean_area);
    free(img);
    free(orig);
}

static void test_properties(void)
{
    run_shape(1, 28, 28);
    run_shape(3, 16, 24);
}

static void test_off_and_determinism(void)
{
    float a[3 * 8 * 8], b[3 * 8 * 8];
    tu_fill(a, sizeof a / sizeof a[0], -1, 1);
    memcpy(b, a, sizeof a);
    uint64_t st = 99, st0 = 99;
    int box[4];
    for (int i = 0; i < 100; i++)
        CHECK(cli_random_erase(a, 3, 8, 8, 0, &st, box) == 0, "probability 0 erased");
    CHECK(st == st0 && memcmp(a, b, sizeof a) == 0, "probability 0 drew numbers or changed the image");
    uint64_t s1 = 7, s2 = 7;
    int e1 = cli_random_erase(a, 3, 8, 8, 1, &s1, box), box2[4];
    int e2 = cli_random_erase(b, 3, 8, 8, 1, &s2, box2);
    CHECK(e1 == 1 && e2 == 1 && s1 == s2 && memcmp(a, b, sizeof a) == 0 && memcmp(box, box2, sizeof box) == 0,
          "the same state erased differently");
}

static void test_randaug_properties(void)
{
    enum { H = 12, W = 12 };
    uint8_t img[H * W], orig[H * W], tmp[H * W];
    for (int i = 0; i < H * W; i++)
        orig[i] = (uint8_t)(20 + (i * 37) % 200);
    /* level 0: the factor-1 enhances, zero-angle rotation and zero shears / shifts change nothing */
    static const int still[] = { 3, 7, 8, 9, 10, 11, 12, 13, 14 };
    for (size_t k = 0; k < sizeof still / sizeof still[0]; k++)
        for (int neg = 0; neg <= 1; neg++) {
            memcpy(img, orig, sizeof img);
            cli_randaug_apply(img, tmp, H, W, still[k], 0, neg, 9);
            CHECK(memcmp(img, orig, sizeof img) == 0, "%s at level 0 changed the image", cli_randaug_name(still[k]));
        }
    memcpy(img, orig, sizeof img);
    cli_randaug_apply(img, tmp, H, W, 2, 5, 0, 0);
    CHECK(img[0] == 255 - orig[0], "Invert");
    cli_randaug_apply(img, tmp, H, W, 2, 5, 0, 0);
    CHECK(memcmp(img, orig, sizeof img) == 0, "Invert twice is not the identity");
    /* TranslateXRel at level 10 * 5 / (0.45 * 12 * 10) = 0.925...: 0.45 * f * 12 = 5 pixels */
    double level = 5 / (0.45 * 12) * 10;
    for (int neg = 0; neg <= 1; neg++) {
        memcpy(img, orig, sizeof img);
        cli_randaug_apply(img, tmp, H, W, 13, level, neg, 9);
        int bad = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int src = neg ? x - 5 : x + 5;
                bad += img[y * W + x] != (src >= 0 && src < W ? orig[y * W + src] : 9);
            }
        CHECK(bad == 0, "a 5-pixel translation (%s) is not an exact shift with fill: %d pixels", neg ? "left" : "right", bad);
    }
    /* Rotate by +90 degrees (level 30, clipped at 10 would be 30: use the op's level 10 * 90 / 30
     * outside the policy's range): pixel (x, y) takes the input's (W - 1 - y, x) */
    memcpy(img, orig, sizeof img);
    cli_randaug_apply(img, tmp, H, W, 3, 30, 0, 9);
    int bad = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            bad += img[y * W + x] != orig[x * W + (W - 1 - y)];
    CHECK(bad == 0, "a quarter turn counter-clockwise is not exact: %d pixels", bad);
    /* the policy: 2 layers, each op chosen 1/15 and run half the time */
    int changed = 0, runs = 3000;
    uint64_t st = 5;
    for (int r = 0; r < runs; r++) {
        memcpy(img, orig, sizeof img);
        cli_randaugment(img, tmp, H, W, 2, 9, 0.5, 73, &st);
        changed += memcmp(img, orig, sizeof img) != 0;
    }
    /* unchanged: each layer skipped, or Color (nothing on gray) or Equalize (144 distinct values:
     * PIL's step (144 - 1) / 255 is 0, no change); or both layers Invert */
    double p_same = pow(0.5 + 0.5 * 2 / 15, 2) + pow(0.5 / 15, 2), got = 1 - (double)changed / runs, sd = sqrt(p_same * (1 - p_same) / runs);
    CHECK(fabs(got - p_same) < 5 * sd, "the policy left %.3f of the images unchanged, want %.3f", got, p_same);
}

static void test_randaug_parse(void)
{
    int n = 0;
    double m = 0, sd = 0;
    CHECK(cli_randaug_parse("rand-m9-mstd0.5-inc1", &n, &m, &sd) == 0 && n == 2 && m == 9 && sd == 0.5,
          "the official policy: n %d m %g mstd %g", n, m, sd);
    CHECK(cli_randaug_parse("rand-inc1-n3-m5", &n, &m, &sd) == 0 && n == 3 && m == 5 && sd == 0, "n3 m5: n %d m %g mstd %g", n,
          m, sd);
    static const char *const bad[] = { "rand-m9-mstd0.5", "rand-m9-inc0", "rand-m11-inc1", "rand-m-inc1", "rand-n0-inc1",
                                       "rand-m9-x-inc1", "auto-m9-inc1", "rand", "rand-m9-mstd-1-inc1", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(cli_randaug_parse(bad[i], &n, &m, &sd) != 0, "'%s' was accepted", bad[i]);
}

/* Every op against PIL (tests/gen_randaug.py). */
static void test_pil(const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot read %s", path);
    if (!f)
        return;
    long seed = 0;
    int cases = 0, exact = 0, worst_affine = 0;
    CHECK(fscanf(f, "%ld %d", &seed, &cases) == 2 && cases > 0 && cases < 100000, "bad header");
    for (int c = 0; c < cases && !tu_failures; c++) {
        int op, neg, H, W, fill;
        double level;
        if (fscanf(f, "%d %lf %d %d %d %d", &op, &level, &neg, &H, &W, &fill) != 6 || op < 0 || op >= CLI_RA_OPS ||
            H < 1 || W < 1 || H > 64 || W > 64) {
            CHECK(0, "case %d: bad line", c);
            break;
        }
        uint8_t img[64 * 64], want[64 * 64], tmp[64 * 64];
        for (int i = 0; i < H * W; i++) {
            int v = 0;
            CHECK(fscanf(f, "%d", &v) == 1, "case %d: short", c);
            img[i] = (uint8_t)v;
        }
        for (int i = 0; i < H * W; i++) {
            int v = 0;
            CHECK(fscanf(f, "%d", &v) == 1, "case %d: short", c);
            want[i] = (uint8_t)v;
        }
        cli_randaug_apply(img, tmp, H, W, op, level, neg, (uint8_t)fill);
        int worst = 0;
        for (int i = 0; i < H * W; i++)
            worst = abs(img[i] - want[i]) > worst ? abs(img[i] - want[i]) : worst;
        int affine_op = op == 3 || op >= 11;
        if (affine_op)
            worst_affine = worst > worst_affine ? worst : worst_affine;
        exact += worst == 0;
        CHECK(worst == 0, "seed %ld case %d: %s level %.3f %s on %dx%d differs from PIL by %d", seed, c,
              cli_randaug_name(op), level, neg ? "negated" : "", H, W, worst);
    }
    fclose(f);
    printf("against PIL (seed %ld): %d cases, %d byte-exact (the affine ones within %d)\n", seed, cases, exact, worst_affine);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(77);
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--pil") == 0) {
            TU_RUN("pil", test_pil(argv[i + 1]));
            return tu_finish("test_augment --pil");
        }
    TU_RUN("randaug_properties", test_randaug_properties());
    TU_RUN("randaug_parse", test_randaug_parse());
    TU_RUN("properties", test_properties());
    TU_RUN("off_and_determinism", test_off_and_determinism());
    return tu_finish("test_augment");
}
