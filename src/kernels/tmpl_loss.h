/* The loss of a tier (see mae_kernels.loss_patch and loss_grad), in double lanes like the scalar
 * reference: each lane converts, subtracts, multiplies and rounds exactly as the scalar code, so
 * loss_grad and the normalized target are bitwise the scalar ones; the sums differ from it only in
 * the order of their terms. Include after simd_*.h. */

/* sum(x) and sum((x - c)^2) over n floats, DL lanes, two accumulators each */
static double ISA(dsum)(const float *x, int n)
{
    vdbl a0 = vd_set1(0.0), a1 = vd_set1(0.0);
    int i = 0;
    for (; i + 2 * DL <= n; i += 2 * DL) {
        a0 = vd_add(a0, vd_loadf(x + i));
        a1 = vd_add(a1, vd_loadf(x + i + DL));
    }
    double s = vd_hsum(vd_add(a0, a1));
    for (; i < n; i++)
        s += x[i];
    return s;
}

static double ISA(dsqdev)(const float *x, int n, double c)
{
    vdbl vc = vd_set1(c), a0 = vd_set1(0.0), a1 = vd_set1(0.0);
    int i = 0;
    for (; i + 2 * DL <= n; i += 2 * DL) {
        vdbl d0 = vd_sub(vd_loadf(x + i), vc), d1 = vd_sub(vd_loadf(x + i + DL), vc);
        a0 = vd_add(a0, vd_mul(d0, d0));
        a1 = vd_add(a1, vd_mul(d1, d1));
    }
    double s = vd_hsum(vd_add(a0, a1));
    for (; i < n; i++)
        s += (x[i] - c) * (x[i] - c);
    return s;
}

double ISA(loss_patch)(float *t, const float *y, int n, int norm_pix)
{
    int i;
    if (norm_pix) {
        double mean = ISA(dsum)(t, n) / n;
        double var = n > 1 ? ISA(dsqdev)(t, n, mean) / (n - 1) : NAN;
        double inv = 1.0 / sqrt(var + 1e-6);
        vdbl vm = vd_set1(mean), vi = vd_set1(inv);
        for (i = 0; i + DL <= n; i += DL)
            vd_storef(t + i, vd_mul(vd_sub(vd_loadf(t + i), vm), vi));
        for (; i < n; i++)
            t[i] = (float)((t[i] - mean) * inv);
    }
    vdbl a0 = vd_set1(0.0), a1 = vd_set1(0.0);
    for (i = 0; i + 2 * DL <= n; i += 2 * DL) {
        vdbl d0 = vd_sub(vd_loadf(y + i), vd_loadf(t + i));
        vdbl d1 = vd_sub(vd_loadf(y + i + DL), vd_loadf(t + i + DL));
        a0 = vd_add(a0, vd_mul(d0, d0));
        a1 = vd_add(a1, vd_mul(d1, d1));
    }
    double s = vd_hsum(vd_add(a0, a1));
    for (; i < n; i++)
        s += ((double)y[i] - t[i]) * ((double)y[i] - t[i]);
    return s;
}

void ISA(loss_grad)(float *d, const float *y, const float *t, double w, size_t n)
{
    vdbl vw = vd_set1(w);
    size_t i = 0;
    for (; i + DL <= n; i += DL)
        vd_storef(d + i, vd_mul(vw, vd_sub(vd_loadf(y + i), vd_loadf(t + i))));
    for (; i < n; i++)
        d[i] = (float)(w * ((double)y[i] - t[i]));
}
