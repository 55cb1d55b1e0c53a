/* `mae finetune --reprob`'s random erasing (examples/cli/augment.h) against timm's
 * RandomErasing('pixel', max_count 1) stated as properties over many draws: the erase rate is
 * the probability; every rectangle is one that some area fraction in [0.02, 1/3] and aspect in
 * [0.3, 1/0.3] round to, lies inside the image and below its height and width; both ends of the
 * corner's range occur (randint includes both); the pixels outside stay, those inside (every
 * channel) become standard normal values; probability 0 draws nothing; the same state gives the
 * same result. */
#include "../examples/cli/augment.c"
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

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(77);
    TU_RUN("properties", test_properties());
    TU_RUN("off_and_determinism", test_off_and_determinism());
    return tu_finish("test_augment");
}
