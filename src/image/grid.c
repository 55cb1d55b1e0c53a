/* The official MAE demo's figure: per image, original | masked | reconstruction |
 * reconstruction with the visible patches pasted back, as one RGB8 picture. */
#include <string.h>
#include "image.h"
#include "../model/model.h"

enum { PANELS = 4 };

/* Copies a w x h RGB8 panel into the grid at (x, y), each pixel as a scale x scale block. */
static void blit(uint8_t *grid, int gw, const uint8_t *panel, int w, int h, int scale, int x, int y)
{
    for (int r = 0; r < h * scale; r++) {
        const uint8_t *src = panel + (size_t)(r / scale) * (size_t)w * 3;
        uint8_t *dst = grid + ((size_t)(y + r) * (size_t)gw + (size_t)x) * 3;
        for (int cidx = 0; cidx < w * scale; cidx++)
            memcpy(dst + (size_t)cidx * 3, src + (size_t)(cidx / scale) * 3, 3);
    }
}

MAE_API mae_status mae_visualize(const mae_model *m, const float *imgs, const float *pred,
                                 const float *mask, int batch, mae_pred_space space,
                                 const float *mean, const float *std, int scale, uint8_t **rgb,
                                 int *width, int *height)
{
    const char *fn = "mae_visualize";
    mae_status s = mae_pred_check(fn, m, pred, imgs, mask, space);
    if (s != MAE_OK)
        return s;
    if (!imgs || !mask || !rgb || !width || !height)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: imgs, mask, rgb, width and height must not be NULL", fn);
    if (batch < 1 || batch > 4096)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: batch %d is outside [1, 4096]", fn, batch);
    if (scale < 1 || scale > 16)
        return mae_fail(MAE_ERR_INVALID_ARG, "%s: scale %d is outside [1, 16]", fn, scale);
    const mae_cfg *c = &m->cfg;
    if ((s = mae_norm_check(fn, mean, std, c->C)) != MAE_OK)
        return s;
    int H = c->ih, W = c->iw, gap = 2 * scale;
    uint64_t gw = (uint64_t)PANELS * W * scale + (PANELS + 1) * (uint64_t)gap;
    uint64_t gh = (uint64_t)batch * H * scale + ((uint64_t)batch + 1) * gap;
    if (gw * gh > MAE_IMAGE_MAX_PIXELS)
        return mae_fail(MAE_ERR_UNSUPPORTED, "%s: the figure (%llu x %llu) is more than 2^28 pixels", fn,
                        (unsigned long long)gw, (unsigned long long)gh);

    size_t plane = (size_t)H * W, nimg = (size_t)c->C * plane;
    double *stats;
    float *patches, *work;
    /* work: the reconstruction, one panel tensor, then one RGB8 panel */
    if ((s = mae_pred_alloc(m, 2 * nimg + (3 * plane + 3) / 4, &stats, &patches, &work)) != MAE_OK)
        return mae_fail(s, "%s: cannot allocate the scratch", fn);
    float *recon = work, *panel = work + nimg;
    uint8_t *px = (uint8_t *)(panel + nimg);
    uint8_t *grid = mae_alloc((size_t)(gw * gh * 3));
    if (!grid) {
        mae_free(stats);
        return mae_fail(MAE_ERR_NOMEM, "%s: cannot allocate the %llu x %llu figure", fn,
                        (unsigned long long)gw, (unsigned long long)gh);
    }
    memset(grid, 255, (size_t)(gw * gh * 3));
    for (int b = 0; b < batch && s == MAE_OK; b++) {
        const float *x = imgs + (size_t)b * nimg, *mk = mask + (size_t)b * c->L;
        s = mae_pred_to_tensor(m, pred + (size_t)b * c->L * c->P, x, mk, space, stats, patches, recon);
        if (s != MAE_OK) {
            s = mae_fail(s, "%s: image %d: no patch is visible, so none has statistics to lend", fn, b);
            break;
        }
        int y0 = gap + b * (H * scale + gap);
        for (int k = 0; k < PANELS; k++) {
            /* In normalized space, as the notebook does: x, x(1-m), y, x(1-m) + y m. */
            for (int ch = 0; ch < c->C; ch++)
                for (int r = 0; r < H; r++)
                    for (int q = 0; q < W; q++) {
                        size_t i = (size_t)ch * plane + (size_t)r * W + (size_t)q;
                        float removed = mk[(r / c->p) * c->gw + q / c->p] > 0.5f ? 1.0f : 0.0f;
                        float v = k == 0 ? x[i] : k == 1 ? x[i] * (1 - removed)
                                : k == 2 ? recon[i] : x[i] * (1 - removed) + recon[i] * removed;
                        panel[i] = v;
                    }
            mae_tensor_to_pixels(panel, c->C, H, W, mean, std, px, (ptrdiff_t)W * 3, 3);
            blit(grid, (int)gw, px, W, H, scale, gap + k * (W * scale + gap), y0);
        }
    }
    mae_free(stats);
    if (s != MAE_OK) {
        mae_free(grid);
        return s;
    }
    *rgb = grid;
    *width = (int)gw;
    *height = (int)gh;
    return MAE_OK;
}

MAE_API mae_status mae_visualize_png(const mae_model *m, const float *imgs, const float *pred,
                                     const float *mask, int batch, mae_pred_space space,
                                     const float *mean, const float *std, int scale,
                                     const char *path)
{
    if (!path)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_visualize_png: path is NULL");
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    mae_status s = mae_visualize(m, imgs, pred, mask, batch, space, mean, std, scale, &rgb, &w, &h);
    if (s != MAE_OK)
        return s;
    s = mae_png_write(path, rgb, w, h, 3, 0);
    mae_image_free(rgb);
    return s;
}
