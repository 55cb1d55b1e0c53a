/* Random erasing as timm's RandomErasing in 'pixel' mode (augment.h). */
#include <math.h>
#include <stddef.h>
#include "augment.h"

uint64_t cli_aug_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double cli_aug_uniform(uint64_t *state)
{
    return (double)(cli_aug_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* An integer uniform in [lo, hi] (both included, as Python's random.randint). */
static int randint(uint64_t *state, int lo, int hi)
{
    return lo + (int)(cli_aug_next(state) % (uint64_t)(hi - lo + 1));
}

/* A standard normal value (Box-Muller; 1 - u keeps the log's argument in (0, 1]). */
static float normal(uint64_t *state)
{
    double u = 1 - cli_aug_uniform(state), v = cli_aug_uniform(state);
    return (float)(sqrt(-2 * log(u)) * cos(2 * 3.14159265358979323846 * v));
}

int cli_random_erase(float *img, int C, int H, int W, double prob, uint64_t *state, int box[4])
{
    if (prob <= 0 || cli_aug_uniform(state) >= prob)
        return 0;
    double area = (double)H * W, lo = log(0.3), hi = log(1 / 0.3);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = (0.02 + (1.0 / 3 - 0.02) * cli_aug_uniform(state)) * area;
        double aspect = exp(lo + (hi - lo) * cli_aug_uniform(state));
        int h = (int)nearbyint(sqrt(target * aspect)), w = (int)nearbyint(sqrt(target / aspect));   /* Python's round: half to even */
        if (w >= W || h >= H)
            continue;
        int top = randint(state, 0, H - h), left = randint(state, 0, W - w);
        for (int c = 0; c < C; c++)
            for (int y = top; y < top + h; y++)
                for (int x = left; x < left + w; x++)
                    img[((size_t)c * H + y) * W + x] = normal(state);
        box[0] = top, box[1] = left, box[2] = h, box[3] = w;
        return 1;
    }
    return 0;
}
