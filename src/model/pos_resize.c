/* Running a model at another image size (mae_model_resize): the position tables are resized to
 * the new patch grid. */
#include <math.h>
#include <string.h>
#include "model.h"


/* PyTorch's cubic convolution weights (A = -0.75) for a fractional offset t. */
static void cubic_weights(double t, double w[4])
{
    const double A = -0.75;
    double x;
    x = t + 1.0; w[0] = ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    x = t;       w[1] = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    x = 1.0 - t; w[2] = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    x = 2.0 - t; w[3] = ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
}

static int clampi(int v, int hi)
{
    return v < 0 ? 0 : v > hi ? hi : v;
}

/* Bicubic resampling of the grid rows of a [1+gh*gw, dim] table to [1+nh*nw, dim],
 * align_corners = false; the cls row is copied. */
static void resample(const float *src, int gh, int gw, float *dst, int nh, int nw, int dim)
{
    memcpy(dst, src, (size_t)dim * sizeof *dst);
    double sy = (double)gh / nh, sx = (double)gw / nw;
    for (int y = 0; y < nh; y++) {
        double ry = (y + 0.5) * sy - 0.5;
        int iy = (int)floor(ry);
        double wy[4];
        cubic_weights(ry - iy, wy);
        for (int x = 0; x < nw; x++) {
            double rx = (x + 0.5) * sx - 0.5;
            int ix = (int)floor(rx);
            double wx[4];
            cubic_weights(rx - ix, wx);
            float *out = dst + (size_t)(1 + y * nw + x) * dim;
            for (int d = 0; d < dim; d++) {
                double acc = 0.0;
                for (int a = 0; a < 4; a++) {
                    const float *row = src + (size_t)(1 + clampi(iy - 1 + a, gh - 1) * gw) * dim;
                    double r = 0.0;
                    for (int b = 0; b < 4; b++)
                        r += wx[b] * row[(size_t)clampi(ix - 1 + b, gw - 1) * dim + d];
                    acc += wy[a] * r;
                }
                out[d] = (float)acc;
            }
        }
    }
}

static void adapt_table(const float *src, const mae_cfg *old, float *dst, const mae_cfg *nw,
                        int dim, float *tmp)
{
    if (mae_is_sincos_table(src, dim, old->gh, old->gw, tmp))
        mae_sincos_pos_embed(dst, dim, nw->gh, nw->gw);
    else
        resample(src, old->gh, old->gw, dst, nw->gh, nw->gw, dim);
}

mae_status mae_model_resized(const mae_model *m, int height, int width, mae_model **out)
{
    mae_cfg c = m->cfg;
    c.ih = height;
    c.iw = width;
    mae_status s = mae_cfg_finish(&c);
    if (s != MAE_OK)
        return s;
    mae_model *r;
    if ((s = mae_model_alloc(&c, &r)) != MAE_OK)
        return s;
    int maxd = c.D > c.Dd ? c.D : c.Dd;
    size_t tmp_n = (size_t)(1 + m->cfg.L) * maxd;
    float *tmp = mae_alloc(tmp_n * sizeof *tmp);
    if (!tmp) {
        mae_model_destroy(r);
        return mae_fail(MAE_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < r->n_tensors; i++) {
        const mae_tensor *t = &r->tensors[i];
        const mae_tensor *o = mae_model_find(m, t->name);
        if (strcmp(t->name, "pos_embed") == 0)
            adapt_table(m->w.pos, &m->cfg, r->w.pos, &c, c.D, tmp);
        else if (strcmp(t->name, "decoder_pos_embed") == 0)
            adapt_table(m->w.dpos, &m->cfg, r->w.dpos, &c, c.Dd, tmp);
        else
            mae_model_tensor_read(m, o, r->data + t->offset);
    }
    mae_free(tmp);
    if ((s = mae_model_pack_slim(r)) != MAE_OK) {
        mae_model_destroy(r);
        return s;
    }
    *out = r;
    return MAE_OK;
}
