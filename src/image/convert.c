/* Between pixels and model tensors: 8-bit pixels -> normalized [C,H,W] input (channels, crop,
 * resample, mean/std), normalized tensors -> 8-bit pixels, and predictions [L, p*p*C] -> images
 * (per-patch un-normalization for norm_pix_loss models, unpatchify). */
#include <math.h>
#include <string.h>
#include "image.h"
#include "../model/model.h"

/* mean/std: NULL, or n finite values with std != 0. */
mae_status mae_norm_check(const char *fn, const float *mean, const float *std, int n)
{
    for (int c = 0; c < n; c++) {
        if (mean && !isfinite(mean[c]))
            return mae_fail(MAE_ERR_INVALID_ARG, "%s: mean[%d] is not finite", fn, c);
        if (std && (!isfinite(std[c]) || std[c] == 0.0f))
            return mae_fail(MAE_ERR_INVALID_ARG, "%s: std[%d] = %g (must be finite and nonzero)", fn, c,
                            (double)std[c]);
    }
    return MAE_OK;
}

static mae_status check_size(const char *fn, const char *what, int h, int w)
{
    if (h <= 0 || w <= 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %s %d x %d is not positive", fn, what, h, w);
    if ((uint64_t)h * (uint64_t)w > MAE_IMAGE_MAX_PIXELS)
        return mae_fail(MAE_ERR_UNSUPPORTED, "%s: %s %d x %d is more than 2^28 pixels", fn, what, h, w);
    return MAE_OK;
}

/* ---- pixels -> input ------------------------------------------------------------------------- */

/* A caller's pixel buffer, read as model channels. */
typedef struct source {
    const uint8_t *pixels;
    ptrdiff_t stride;
    int w, ch, oc;
} source;

/* Row y converted to oc channels, as floats 0..255 in planes `plane` floats apart. */
static void source_row(void *ctx, int y, float *out, size_t plane)
{
    const source *s = ctx;
    uint8_t px[4 * 64];
    for (int x0 = 0; x0 < s->w; x0 += 64) {
        int n = s->w - x0 < 64 ? s->w - x0 : 64;
        mae_pixels_convert(s->pixels + y * s->stride + (ptrdiff_t)x0 * s->ch, 0, s->ch, px, 0, s->oc, n, 1);
        for (int c = 0; c < s->oc; c++)
            for (int i = 0; i < n; i++)
                out[(size_t)c * plane + (size_t)x0 + (size_t)i] = px[i * s->oc + c];
    }
}

MAE_API mae_status mae_image_to_input(const uint8_t *pixels, int width, int height, int channels,
                                      ptrdiff_t stride, int out_channels, int out_height,
                                      int out_width, mae_filter filter, int center_crop,
                                      const float *mean, const float *std, float *out)
{
    const char *fn = "mae_image_to_input";
    mae_status s = mae_pixels_check(fn, pixels, width, height, channels, &stride);
    if (s != MAE_OK)
        return s;
    if (out_channels < 1 || out_channels > 4)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: out_channels %d (1..4 supported)", fn, out_channels);
    if ((s = check_size(fn, "output size", out_height, out_width)) != MAE_OK)
        return s;
    if (filter != MAE_FILTER_NEAREST && filter != MAE_FILTER_BILINEAR && filter != MAE_FILTER_BICUBIC)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: unknown filter %d", fn, (int)filter);
    if (center_crop != 0 && center_crop != 1)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: center_crop is %d (0 or 1)", fn, center_crop);
    if (!out)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: out is NULL", fn);
    if ((s = mae_norm_check(fn, mean, std, out_channels)) != MAE_OK)
        return s;

    /* The source box: everything, or the largest centred box of the output's aspect ratio. */
    double x0 = 0, y0 = 0, x1 = width, y1 = height;
    if (center_crop) {
        double sx = (double)width / out_width, sy = (double)height / out_height;
        double sc = sx < sy ? sx : sy;
        x0 = (width - out_width * sc) / 2;
        y0 = (height - out_height * sc) / 2;
        x1 = x0 + out_width * sc;
        y1 = y0 + out_height * sc;
    }
    source src = { pixels, stride, width, channels, out_channels };
    size_t plane = (size_t)out_height * (size_t)out_width;
    int same = x0 == 0 && y0 == 0 && x1 == width && y1 == height && out_width == width && out_height == height;
    if (same) {
        /* no resampling: the rows go straight into the output planes */
        for (int y = 0; y < height; y++)
            source_row(&src, y, out + (size_t)y * width, plane);
    } else {
        s = mae_resample(source_row, &src, out_channels, height, width, x0, y0, x1, y1, (int)filter, out,
                         out_height, out_width);
        if (s != MAE_OK)
            return s;
    }
    /* normalize in place */
    for (int c = 0; c < out_channels; c++) {
        double mu = mean ? mean[c] : 0.0, sd = std ? std[c] : 1.0;
        for (size_t i = 0; i < plane; i++) {
            double v = out[(size_t)c * plane + i];
            v = v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v;
            out[(size_t)c * plane + i] = (float)((v / 255.0 - mu) / sd);
        }
    }
    return MAE_OK;
}

/* ---- tensor -> pixels ------------------------------------------------------------------------ */

static uint8_t to_byte(double x)
{
    if (!(x > 0.0))   /* also NaN */
        return 0;
    if (x >= 255.0)
        return 255;
    return (uint8_t)floor(x + 0.5);
}

/* Unchecked core of mae_input_to_image. */
void mae_tensor_to_pixels(const float *img, int C, int H, int W, const float *mean, const float *std,
                             uint8_t *pixels, ptrdiff_t stride, int oc)
{
    size_t plane = (size_t)H * (size_t)W;
    uint8_t px[4 * 64];
    for (int y = 0; y < H; y++)
        for (int x0 = 0; x0 < W; x0 += 64) {
            int n = W - x0 < 64 ? W - x0 : 64;
            for (int c = 0; c < C; c++) {
                double mu = mean ? mean[c] : 0.0, sd = std ? std[c] : 1.0;
                const float *src = img + (size_t)c * plane + (size_t)y * W + (size_t)x0;
                for (int i = 0; i < n; i++)
                    px[i * C + c] = to_byte((src[i] * sd + mu) * 255.0);
            }
            mae_pixels_convert(px, 0, C, pixels + y * stride + (ptrdiff_t)x0 * oc, 0, oc, n, 1);
        }
}

MAE_API mae_status mae_input_to_image(const float *img, int channels, int height, int width,
                                      const float *mean, const float *std, uint8_t *pixels,
                                      ptrdiff_t stride, int out_channels)
{
    const char *fn = "mae_input_to_image";
    if (!img)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: img is NULL", fn);
    if (channels < 1 || channels > 4)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %d channels (1..4 supported)", fn, channels);
    mae_status s = mae_pixels_check(fn, pixels, width, height, out_channels, &stride);
    if (s == MAE_OK)
        s = mae_norm_check(fn, mean, std, channels);
    if (s != MAE_OK)
        return s;
    mae_tensor_to_pixels(img, channels, height, width, mean, std, pixels, stride, out_channels);
    return MAE_OK;
}

/* ---- prediction -> image --------------------------------------------------------------------- */

/* Mean and unbiased variance of each patch of img [C,H,W] (the loss's norm_pix statistics). */
static void patch_stats(const mae_cfg *c, const float *patches, double *mu, double *var)
{
    for (int l = 0; l < c->L; l++) {
        const float *p = patches + (size_t)l * c->P;
        double s = 0, s2 = 0;
        for (int k = 0; k < c->P; k++)
            s += p[k];
        s /= c->P;
        for (int k = 0; k < c->P; k++)
            s2 += (p[k] - s) * (p[k] - s);
        mu[l] = s;
        var[l] = c->P > 1 ? s2 / (c->P - 1) : 0.0;
    }
}

/* For each removed patch, the average statistics of the visible patches nearest to it
 * (smallest Chebyshev distance on the grid). Returns 0 if no patch is visible. */
static int borrow_visible_stats(const mae_cfg *c, const float *mask, double *mu, double *var)
{
    int any = 0;
    for (int l = 0; l < c->L; l++)
        any |= !(mask[l] > 0.5f);
    if (!any)
        return 0;
    double *bm = mu + c->L, *bv = var + c->L;   /* scratch halves: results land here first */
    int reach = c->gh > c->gw ? c->gh : c->gw;
    for (int l = 0; l < c->L; l++) {
        bm[l] = mu[l];
        bv[l] = var[l];
        if (!(mask[l] > 0.5f))
            continue;
        int i = l / c->gw, j = l % c->gw;
        for (int r = 1; r <= reach; r++) {
            double sm = 0, sv = 0;
            int n = 0;
            for (int a = i - r; a <= i + r; a++)
                for (int b = j - r; b <= j + r; b++) {
                    if (a < 0 || a >= c->gh || b < 0 || b >= c->gw)
                        continue;
                    int k = a * c->gw + b;
                    if (mask[k] > 0.5f)
                        continue;
                    sm += mu[k];
                    sv += var[k];
                    n++;
                }
            if (n) {
                bm[l] = sm / n;
                bv[l] = sv / n;
                break;
            }
        }
    }
    memcpy(mu, bm, (size_t)c->L * sizeof *mu);
    memcpy(var, bv, (size_t)c->L * sizeof *var);
    return 1;
}

mae_status mae_pred_check(const char *fn, const mae_model *m, const float *pred, const float *img,
                          const float *mask, mae_pred_space space)
{
    if (!m || !pred)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: %s is NULL", fn, !m ? "model" : "pred");
    if (space != MAE_PRED_PIXELS && space != MAE_PRED_NORM_OWN && space != MAE_PRED_NORM_VISIBLE)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: unknown prediction space %d", fn, (int)space);
    if (space != MAE_PRED_PIXELS && !img)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: the original image is needed to undo the per-patch normalization", fn);
    if (space == MAE_PRED_NORM_VISIBLE && !mask)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: MAE_PRED_NORM_VISIBLE needs the mask", fn);
    return MAE_OK;
}

mae_status mae_pred_to_tensor(const mae_model *m, const float *pred, const float *img, const float *mask,
                              mae_pred_space space, double *stats, float *patches, float *out)
{
    const mae_cfg *c = &m->cfg;
    if (space == MAE_PRED_PIXELS) {
        mae_unpatchify_run(c, pred, 1, out);
        return MAE_OK;
    }
    double *mu = stats, *var = stats + 2 * (size_t)c->L;
    mae_patchify_run(c, img, 1, patches);
    patch_stats(c, patches, mu, var);
    if (space == MAE_PRED_NORM_VISIBLE && !borrow_visible_stats(c, mask, mu, var))
        return mae_fail(MAE_ERR_INVALID_ARG, "no patch is visible, so none has statistics to lend");
    for (int l = 0; l < c->L; l++) {
        double sd = sqrt(var[l] + 1e-6);
        for (int k = 0; k < c->P; k++) {
            size_t i = (size_t)l * c->P + (size_t)k;
            patches[i] = (float)(pred[i] * sd + mu[l]);
        }
    }
    mae_unpatchify_run(c, patches, 1, out);
    return MAE_OK;
}

mae_status mae_pred_alloc(const mae_model *m, size_t extra_floats, double **stats, float **patches,
                          float **extra)
{
    const mae_cfg *c = &m->cfg;
    size_t nd = 4 * (size_t)c->L, nf = (size_t)c->L * (size_t)c->P + extra_floats;
    size_t bytes = nd * sizeof(double) + nf * sizeof(float);
    double *d = mae_alloc(bytes);
    if (!d)
        return mae_fail(MAE_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
    *stats = d;
    *patches = (float *)(d + nd);
    *extra = *patches + (size_t)c->L * (size_t)c->P;
    return MAE_OK;
}

MAE_API mae_status mae_output_to_image(const mae_model *m, const float *pred, const float *img,
                                       const float *mask, mae_pred_space space, const float *mean,
                                       const float *std, uint8_t *pixels, ptrdiff_t stride,
                                       int out_channels)
{
    const char *fn = "mae_output_to_image";
    mae_status s = mae_pred_check(fn, m, pred, img, mask, space);
    if (s != MAE_OK)
        return s;
    const mae_cfg *c = &m->cfg;
    if ((s = mae_pixels_check(fn, pixels, c->iw, c->ih, out_channels, &stride)) != MAE_OK ||
        (s = mae_norm_check(fn, mean, std, c->C)) != MAE_OK)
        return s;
    double *stats;
    float *patches, *tensor;
    if ((s = mae_pred_alloc(m, (size_t)c->C * (size_t)c->ih * (size_t)c->iw, &stats, &patches, &tensor)) != MAE_OK)
        return mae_fail(s, "%s: %s", fn, "cannot allocate the scratch");
    s = mae_pred_to_tensor(m, pred, img, mask, space, stats, patches, tensor);
    if (s == MAE_OK)
        mae_tensor_to_pixels(tensor, c->C, c->ih, c->iw, mean, std, pixels, stride, out_channels);
    else
        s = mae_fail(s, "%s: no patch is visible, so none has statistics to lend", fn);
    mae_free(stats);
    return s;
}
