/* RandAugment-lite (augment.h): timm's rand-mM-mstdS-inc1 policy on one 8-bit gray image, with
 * its 15 ops written after the PIL functions timm calls (ImageOps / ImageEnhance / affine
 * transforms), the affine ones resampled bilinearly. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "augment.h"

static const char *const op_names[CLI_RA_OPS] = {
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"
};

const char *cli_randaug_name(int op)
{
    return op >= 0 && op < CLI_RA_OPS ? op_names[op] : "?";
}

static void apply_lut(uint8_t *img, size_t n, const int lut[256])
{
    for (size_t i = 0; i < n; i++)
        img[i] = (uint8_t)lut[img[i]];
}

static void histogram(const uint8_t *img, size_t n, long h[256])
{
    memset(h, 0, 256 * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[img[i]]++;
}

/* ImageOps.autocontrast (cutoff 0): the lowest value to 0, the highest to 255, linearly,
 * truncated. */
static void autocontrast(uint8_t *img, size_t n)
{
    long h[256];
    int lut[256], lo = 0, hi = 255;
    histogram(img, n, h);
    while (lo < 255 && !h[lo])
        lo++;
    while (hi > 0 && !h[hi])
        hi--;
    if (hi <= lo)
        return;
    double scale = 255.0 / (hi - lo), offset = -lo * scale;
    for (int i = 0; i < 256; i++) {
        int v = (int)(i * scale + offset);
        lut[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    apply_lut(img, n, lut);
}

/* ImageOps.equalize: step = (pixels - the highest value's count) / 255, value i -> the pixels
 * below it (plus step / 2) / step. */
static void equalize(uint8_t *img, size_t n)
{
    long h[256], total = 0, last = 0;
    int lut[256], distinct = 0;
    histogram(img, n, h);
    for (int i = 0; i < 256; i++)
        if (h[i])
            total += h[i], last = h[i], distinct++;
    long step = (total - last) / 255;
    if (distinct <= 1 || !step)
        return;
    long acc = step / 2;
    for (int i = 0; i < 256; i++) {
        long v = acc / step;
        lut[i] = v > 255 ? 255 : (int)v;
        acc += h[i];
    }
    apply_lut(img, n, lut);
}

/* Image.blend(a, b, alpha) as Pillow computes 8-bit bands: a + alpha (b - a) in float, clipped,
 * truncated. */
static uint8_t blend(int a, int b, float alpha)
{
    float t = (float)a + alpha * (float)(b - a);
    return t <= 0 ? 0 : t >= 255 ? 255 : (uint8_t)t;
}

/* ImageFilter.SMOOTH (3x3, centre 5, the rest 1, / 13, rounded), the border rows and columns
 * copied: the degenerate image of ImageEnhance.Sharpness. */
static void smooth(const uint8_t *img, int H, int W, uint8_t *out)
{
    memcpy(out, img, (size_t)H * W);
    for (int y = 1; y + 1 < H; y++)
        for (int x = 1; x + 1 < W; x++) {
            float s = 0;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++)
                    s += img[(y + dy) * W + x + dx] * ((dx == 0 && dy == 0 ? 5.0f : 1.0f) / 13.0f);
            out[y * W + x] = s <= 0 ? 0 : s >= 255 ? 255 : (uint8_t)(s + 0.5f);
        }
}

/* An affine map as PIL's Image.transform(AFFINE, (a, b, c, d, e, f)) with bilinear resampling:
 * output pixel (x, y) samples the input at (a x' + b y' + c, d x' + e y' + f), x' = x + 0.5,
 * y' = y + 0.5; points outside the image get fill, the taps at the border repeat it; the
 * value truncated (Pillow's bilinear filter, exactly: tests/test_augment.c --pil). */
static void affine(const uint8_t *img, int H, int W, const double m[6], uint8_t fill, uint8_t *out)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double xi = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2], yi = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5];
            if (xi < 0 || xi >= W || yi < 0 || yi >= H) {
                out[y * W + x] = fill;
                continue;
            }
            xi -= 0.5, yi -= 0.5;
            int x0 = (int)floor(xi), y0 = (int)floor(yi);
            double dx = xi - x0, dy = yi - y0;
            int xa = x0 < 0 ? 0 : x0, xb = x0 + 1 >= W ? W - 1 : x0 + 1;
            int ya = y0 < 0 ? 0 : y0, yb = y0 + 1 >= H ? H - 1 : y0 + 1;
            double top = img[ya * W + xa] + dx * (img[ya * W + xb] - img[ya * W + xa]);
            double bot = img[yb * W + xa] + dx * (img[yb * W + xb] - img[yb * W + xa]);
            double v = top + dy * (bot - top);
            out[y * W + x] = v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;   /* truncated, as Pillow */
        }
}

void cli_randaug_apply(uint8_t *img, uint8_t *tmp, int H, int W, int op, double level, int negate,
                       uint8_t fill)
{
    size_t n = (size_t)H * W;
    double f = level / 10, sign = negate ? -1 : 1;
    int lut[256];
    double m[6] = { 1, 0, 0, 0, 1, 0 };
    switch (op) {
    case 0: autocontrast(img, n); return;
    case 1: equalize(img, n); return;
    case 2:
        for (size_t i = 0; i < n; i++)
            img[i] = (uint8_t)(255 - img[i]);
        return;
    case 4: {   /* keep 4 - int(4 f) bits */
        int bits = 4 - (int)(f * 4), mask = ~((1 << (8 - bits)) - 1);
        for (int i = 0; i < 256; i++)
            lut[i] = i & mask;
        apply_lut(img, n, lut);
        return;
    }
    case 5: {   /* solarize above 256 - int(256 f) */
        int thresh = 256 - (int)(f * 256);
        for (int i = 0; i < 256; i++)
            lut[i] = i < thresh ? i : 255 - i;
        apply_lut(img, n, lut);
        return;
    }
    case 6: {   /* add int(110 f) below 128 */
        int add = (int)(f * 110);
        for (int i = 0; i < 256; i++)
            lut[i] = i < 128 ? (i + add > 255 ? 255 : i + add) : i;
        apply_lut(img, n, lut);
        return;
    }
    case 7: return;   /* Color: a gray image is its own degenerate */
    case 8: case 9: case 10: {   /* enhance factor 1 +- 0.9 f against the degenerate image */
        float alpha = (float)(1 + sign * 0.9 * f);
        if (op == 8) {
            long h[256];
            double sum = 0;
            histogram(img, n, h);
            for (int i = 0; i < 256; i++)
                sum += (double)h[i] * i;
            int mean = (int)(sum / (double)n + 0.5);
            for (size_t i = 0; i < n; i++)
                img[i] = blend(mean, img[i], alpha);
        } else if (op == 9) {
            for (size_t i = 0; i < n; i++)
                img[i] = blend(0, img[i], alpha);
        } else {
            smooth(img, H, W, tmp);
            for (size_t i = 0; i < n; i++)
                img[i] = blend(tmp[i], img[i], alpha);
        }
        return;
    }
    case 3: {   /* Image.rotate(30 f degrees, counter-clockwise) about the centre */
        double a = -sign * 30 * f * 3.14159265358979323846 / 180, cx = W / 2.0, cy = H / 2.0;
        /* PIL rounds the matrix to 15 decimals (so a quarter turn maps pixels exactly) */
        double c = nearbyint(cos(a) * 1e15) / 1e15, sn = nearbyint(sin(a) * 1e15) / 1e15;
        m[0] = c, m[1] = sn, m[3] = -sn, m[4] = c;
        m[2] = m[0] * -cx + m[1] * -cy + cx;
        m[5] = m[3] * -cx + m[4] * -cy + cy;
        break;
    }
    case 11: m[1] = sign * 0.3 * f; break;
    case 12: m[3] = sign * 0.3 * f; break;
    case 13: m[2] = sign * 0.45 * f * W; break;
    case 14: m[5] = sign * 0.45 * f * H; break;
    default: return;
    }
    affine(img, H, W, m, fill, tmp);
    memcpy(img, tmp, n);
}

/* random.gauss(mu, sigma) in distribution (Box-Muller). */
static double gauss(uint64_t *state, double mu, double sigma)
{
    double u = 1 - cli_aug_uniform(state), v = cli_aug_uniform(state);
    return mu + sigma * sqrt(-2 * log(u)) * cos(2 * 3.14159265358979323846 * v);
}

void cli_randaugment(uint8_t *img, uint8_t *tmp, int H, int W, int layers, double magnitude,
                     double mstd, uint8_t fill, uint64_t *state)
{
    for (int l = 0; l < layers; l++) {
        int op = (int)(cli_aug_next(state) % CLI_RA_OPS);   /* chosen with replacement */
        if (cli_aug_uniform(state) > 0.5)
            continue;                                     /* each op runs with probability 0.5 */
        double level = mstd > 0 ? gauss(state, magnitude, mstd) : magnitude;
        level = level < 0 ? 0 : level > 10 ? 10 : level;
        int negate = cli_aug_uniform(state) > 0.5;
        cli_randaug_apply(img, tmp, H, W, op, level, negate, fill);
    }
}

int cli_randaug_parse(const char *policy, int *layers, double *magnitude, double *mstd)
{
    char buf[128];
    if (strlen(policy) >= sizeof buf || strncmp(policy, "rand-", 5) != 0)
        return -1;
    strcpy(buf, policy + 5);
    *layers = 2, *magnitude = 10, *mstd = 0;   /* timm's defaults for what is not given */
    int inc = 0;
    for (char *tok = strtok(buf, "-"); tok; tok = strtok(NULL, "-")) {
        char *end;
        double v;
        if (strncmp(tok, "mstd", 4) == 0) {
            v = strtod(tok + 4, &end);
            if (end == tok + 4 || *end || !(v >= 0 && v <= 100))
                return -1;
            *mstd = v;
        } else if (tok[0] == 'm') {
            v = strtod(tok + 1, &end);
            if (end == tok + 1 || *end || !(v >= 0 && v <= 10))
                return -1;
            *magnitude = v;
        } else if (tok[0] == 'n') {
            long n = strtol(tok + 1, &end, 10);
            if (end == tok + 1 || *end || n < 1 || n > 10)
                return -1;
            *layers = (int)n;
        } else if (strcmp(tok, "inc1") == 0) {
            inc = 1;
        } else {
            return -1;   /* inc0 (the non-increasing ops), weights: not here */
        }
    }
    return inc ? 0 : -1;
}
