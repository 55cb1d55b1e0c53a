/* Separable resampling of float planes with Pillow's convolution scheme, so that a model sees
 * what torchvision's PIL transforms (Resize, RandomResizedCrop with bicubic) would give it:
 * output pixel i samples at in0 + (i + 0.5) * scale; when shrinking, the filter is widened by
 * the scale so that every input pixel contributes (antialiasing); weights are normalized to sum 1. */
#include <math.h>
#include <string.h>
#include "image.h"
#include "../util/util.h"

static double triangle(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Keys' cubic convolution with a = -0.5 (Pillow's BICUBIC; PyTorch uses -0.75). */
static double cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* Weights of one axis: output i reads in[start[i] .. start[i] + count[i]) with w[i * ksize ...]. */
typedef struct axis {
    int *start, *count;
    double *w;
    int ksize;
} axis;

static int axis_ksize(int in_size, double in0, double in1, int out_size, int filter)
{
    if (filter == MAE_FILTER_NEAREST)
        return 1;
    double scale = (in1 - in0) / out_size, fs = scale > 1.0 ? scale : 1.0;
    double support = (filter == MAE_FILTER_BICUBIC ? 2.0 : 1.0) * fs;
    int k = (int)ceil(support) * 2 + 1;
    return k < in_size + 1 ? k : in_size + 1;
}

static void axis_weights(axis *a, int in_size, double in0, double in1, int out_size, int filter)
{
    double scale = (in1 - in0) / out_size;
    double fs = scale > 1.0 ? scale : 1.0;
    double support = (filter == MAE_FILTER_BICUBIC ? 2.0 : 1.0) * fs;
    for (int i = 0; i < out_size; i++) {
        double center = in0 + (i + 0.5) * scale;
        double *w = a->w + (size_t)i * (size_t)a->ksize;
        if (filter == MAE_FILTER_NEAREST) {
            int x = (int)floor(center);
            a->start[i] = x < 0 ? 0 : x >= in_size ? in_size - 1 : x;
            a->count[i] = 1;
            w[0] = 1.0;
            continue;
        }
        /* (int) truncates; a negative value is clamped to 0 right after either way. */
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in_size)
            hi = in_size;
        if (hi - lo > a->ksize)
            hi = lo + a->ksize;
        double sum = 0.0;
        for (int x = lo; x < hi; x++) {
            double t = (x - center + 0.5) / fs;
            w[x - lo] = filter == MAE_FILTER_BICUBIC ? cubic(t) : triangle(t);
            sum += w[x - lo];
        }
        for (int x = lo; x < hi; x++)
            if (sum != 0.0)
                w[x - lo] /= sum;
        a->start[i] = lo;
        a->count[i] = hi - lo;
    }
}

mae_status mae_resample(mae_row_fn row, void *ctx, int C, int h, int w, double x0, double y0,
                        double x1, double y1, int filter, float *dst, int oh, int ow)
{
    int kx = axis_ksize(w, x0, x1, ow, filter), ky = axis_ksize(h, y0, y1, oh, filter);
    /* One block: both axes' tables, one source row [C, w] and the horizontally resampled rows
     * [C, h, ow] (only the rows the vertical pass reads are computed). */
    size_t n_int = 2 * ((size_t)ow + (size_t)oh);
    size_t n_w = (size_t)ow * (size_t)kx + (size_t)oh * (size_t)ky;
    size_t n_tmp = (size_t)C * (size_t)h * (size_t)ow, n_row = (size_t)C * (size_t)w;
    size_t bytes = n_w * sizeof(double) + (n_tmp + n_row) * sizeof(float) + n_int * sizeof(int);
    char *block = mae_alloc(bytes);
    if (!block)
        return mae_fail(MAE_ERR_NOMEM, "resize: cannot allocate %zu bytes", bytes);
    axis ax, ay;
    ax.w = (double *)block;
    ay.w = ax.w + (size_t)ow * (size_t)kx;
    float *tmp = (float *)(ay.w + (size_t)oh * (size_t)ky), *src = tmp + n_tmp;
    ax.start = (int *)(src + n_row);
    ax.count = ax.start + ow;
    ay.start = ax.count + ow;
    ay.count = ay.start + oh;
    ax.ksize = kx;
    ay.ksize = ky;
    axis_weights(&ax, w, x0, x1, ow, filter);
    axis_weights(&ay, h, y0, y1, oh, filter);

    int ylo = h, yhi = 0;
    for (int j = 0; j < oh; j++) {
        if (ay.start[j] < ylo)
            ylo = ay.start[j];
        if (ay.start[j] + ay.count[j] > yhi)
            yhi = ay.start[j] + ay.count[j];
    }
    for (int y = ylo; y < yhi; y++) {
        row(ctx, y, src, (size_t)w);
        for (int c = 0; c < C; c++) {
            const float *in = src + (size_t)c * w;
            float *out = tmp + ((size_t)c * h + y) * ow;
            for (int i = 0; i < ow; i++) {
                const double *k = ax.w + (size_t)i * kx;
                const float *p = in + ax.start[i];
                double s = 0.0;
                for (int t = 0; t < ax.count[i]; t++)
                    s += k[t] * p[t];
                out[i] = (float)s;
            }
        }
    }
    for (int c = 0; c < C; c++)
        for (int j = 0; j < oh; j++) {
            const double *k = ay.w + (size_t)j * ky;
            const float *in = tmp + ((size_t)c * h + ay.start[j]) * ow;
            float *out = dst + ((size_t)c * oh + j) * ow;
            for (int i = 0; i < ow; i++) {
                double s = 0.0;
                for (int t = 0; t < ay.count[j]; t++)
                    s += k[t] * in[(size_t)t * ow + i];
                out[i] = (float)s;
            }
        }
    mae_free(block);
    return MAE_OK;
}
