/* Predictions [L, p*p*C] -> images: per-patch un-normalization for norm_pix_loss models (with
 * the patch's own statistics or the nearest visible patches'), unpatchify, denormalize. */
#include <math.h>
#include <string.h>
#include "image.h"
#include "../model/model.h"

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
    if (m->cfg.C > 4)
        return mae_fail(MAE_ERR_UNSUPPORTED, "%s: the model has %d channels; images have 1..4", fn, m->cfg.C);
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
