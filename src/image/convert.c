/* Between pixels and model tensors: 8-bit pixels -> normalized [C,H,W] input (channels, crop,
 * resample, mean/std), and normalized tensors -> 8-bit pixels. */
#include <math.h>
#include "image.h"
#include "../util/util.h"

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
