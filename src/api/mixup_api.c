/* Mixup and cutmix of a batch (timm.data.mixup.Mixup, mode "batch", correct_lam): the mixing
 * weight from Beta(alpha, alpha), the cutmix box, and the mixed soft targets. Stateless: every
 * random number comes from an MT19937 seeded by the caller. */
#include <math.h>
#include <string.h>
#include "../model/model.h"
#include "../util/sized.h"

static void defaults(mae_mixup_config *c)
{
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    c->mixup_alpha = 0.8f;
    c->cutmix_alpha = 1.0f;
    c->prob = 1.0f;
    c->switch_prob = 0.5f;
    c->smoothing = 0.1f;
}

MAE_API mae_status mae_mixup_config_init(mae_mixup_config *cfg, size_t struct_size)
{
    if (!cfg)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_mixup_config_init: cfg is NULL");
    mae_mixup_config d;
    defaults(&d);
    return mae_sized_write("mae_mixup_config_init", cfg, struct_size, &d, sizeof d, sizeof d);
}

/* Gamma(a, 1) by Marsaglia and Tsang (a >= 1), boosted by U^(1/a) for a < 1. */
static double gamma_draw(mae_rng *r, double a)
{
    if (a < 1.0) {
        double u = mae_rng_uniform_double(r);
        return gamma_draw(r, a + 1.0) * pow(u > 0 ? u : 1e-300, 1.0 / a);
    }
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = mae_rng_normal(r), v = 1.0 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = mae_rng_uniform_double(r);
        if (u < 1.0 - 0.0331 * x * x * x * x || log(u > 0 ? u : 1e-300) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

static double beta_draw(mae_rng *r, double a)
{
    double x = gamma_draw(r, a), y = gamma_draw(r, a);
    return x + y > 0 ? x / (x + y) : 0.5;
}

/* An integer uniform in [lo, hi). */
static int randint(mae_rng *r, int lo, int hi)
{
    return lo + (int)(mae_rng_uniform_double(r) * (hi - lo));
}

MAE_API mae_status mae_mixup(const mae_mixup_config *cfg, uint64_t seed, float *imgs, int batch,
                             int channels, int height, int width, const int32_t *labels,
                             int num_classes, float *targets, float *lam_out)
{
    if (!cfg || !imgs || !labels || !targets)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_mixup: cfg, imgs, labels and targets must not be NULL");
    mae_mixup_config c;
    defaults(&c);
    mae_status s = mae_sized_read("mae_mixup", cfg, &c, sizeof c, sizeof c);
    if (s != MAE_OK)
        return s;
    if (!(c.mixup_alpha >= 0) || !(c.cutmix_alpha >= 0) || !(c.prob >= 0 && c.prob <= 1) ||
        !(c.switch_prob >= 0 && c.switch_prob <= 1) || !(c.smoothing >= 0 && c.smoothing < 1) ||
        isinf(c.mixup_alpha) || isinf(c.cutmix_alpha))
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_mixup: alphas must be finite and >= 0, prob and switch_prob in [0, 1], "
                        "smoothing in [0, 1)");
    if (batch <= 0 || batch % 2 || channels <= 0 || height <= 0 || width <= 0 || num_classes <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_mixup: batch %d must be even and positive, sizes and classes positive",
                        batch);
    for (int b = 0; b < batch; b++)
        if (labels[b] < 0 || labels[b] >= num_classes)
            return mae_fail(MAE_ERR_INVALID_ARG, "mae_mixup: label %d of image %d is outside [0, %d)", (int)labels[b], b,
                            num_classes);
    mae_rng r;
    mae_rng_seed(&r, seed);
    double lam = 1.0;
    int cutmix = 0;
    /* _params_per_batch: the order of the draws is timm's */
    if ((c.mixup_alpha > 0 || c.cutmix_alpha > 0) && mae_rng_uniform_double(&r) < c.prob) {
        if (c.mixup_alpha > 0 && c.cutmix_alpha > 0)
            cutmix = mae_rng_uniform_double(&r) < c.switch_prob;
        else
            cutmix = c.cutmix_alpha > 0;
        lam = beta_draw(&r, cutmix ? c.cutmix_alpha : c.mixup_alpha);
    }
    size_t plane = (size_t)height * width, per = (size_t)channels * plane;
    if (lam < 1.0 && cutmix) {
        /* rand_bbox + correct_lam: the box's side is sqrt(1 - lam) of the image's */
        double ratio = sqrt(1.0 - lam);
        int ch = (int)(height * ratio), cw = (int)(width * ratio);
        int cy = randint(&r, 0, height), cx = randint(&r, 0, width);
        int yl = cy - ch / 2 < 0 ? 0 : cy - ch / 2, yh = cy + ch / 2 > height ? height : cy + ch / 2;
        int xl = cx - cw / 2 < 0 ? 0 : cx - cw / 2, xh = cx + cw / 2 > width ? width : cx + cw / 2;
        /* images b and B-1-b swap their boxes: one pass over the first half does both */
        for (int b = 0; b < batch / 2; b++)
            for (int k = 0; k < channels; k++)
                for (int y = yl; y < yh; y++)
                    for (int x = xl; x < xh; x++) {
                        float *p = imgs + (size_t)b * per + k * plane + (size_t)y * width + x;
                        float *q = imgs + (size_t)(batch - 1 - b) * per + k * plane + (size_t)y * width + x;
                        float t = *p; *p = *q; *q = t;
                    }
        lam = 1.0 - (double)(yh - yl) * (xh - xl) / (double)plane;
    } else if (lam < 1.0) {
        /* x = lam x + (1 - lam) flip(x), in float as PyTorch's mul_ / add_ */
        float l = (float)lam, m = (float)(1.0 - lam);
        for (int b = 0; b < batch / 2; b++) {
            float *p = imgs + (size_t)b * per, *q = imgs + (size_t)(batch - 1 - b) * per;
            for (size_t i = 0; i < per; i++) {
                float a = p[i], z = q[i];
                p[i] = a * l + z * m;
                q[i] = z * l + a * m;
            }
        }
    }
    double off = c.smoothing / num_classes, on = 1.0 - c.smoothing + off;
    for (int b = 0; b < batch; b++) {
        float *t = targets + (size_t)b * num_classes;
        int y1 = labels[b], y2 = labels[batch - 1 - b];
        for (int k = 0; k < num_classes; k++)
            t[k] = (float)(lam * (k == y1 ? on : off) + (1.0 - lam) * (k == y2 ? on : off));
    }
    if (lam_out)
        *lam_out = (float)lam;
    return MAE_OK;
}
