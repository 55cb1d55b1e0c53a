/* The vector kernels of the table (GELU, add, softmax, LayerNorm) and the row operations the
 * attention uses, written once against the vector layer and compiled per instruction set.
 * Include after simd_*.h and tmpl_vmath.h. Tails shorter than a vector go through a padded copy,
 * so that every element sees the same vector operations. */
#include <math.h>
#include <string.h>
#include "../util/util.h"

#define LN_ROWS_PER_TASK 8

void ISA(exp)(float *y, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        vstore(y + i, vexp(vload(x + i)));
    if (i < n) {
        float t[VL] = { 0 };
        memcpy(t, x + i, (n - i) * sizeof *t);
        vstore(t, vexp(vload(t)));
        memcpy(y + i, t, (n - i) * sizeof *t);
    }
}

void ISA(erf)(float *y, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        vstore(y + i, verf(vload(x + i)));
    if (i < n) {
        float t[VL] = { 0 };
        memcpy(t, x + i, (n - i) * sizeof *t);
        vstore(t, verf(vload(t)));
        memcpy(y + i, t, (n - i) * sizeof *t);
    }
}

void ISA(gelu)(float *y, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        vstore(y + i, vgelu(vload(x + i)));
    if (i < n) {
        float t[VL] = { 0 };
        memcpy(t, x + i, (n - i) * sizeof *t);
        vstore(t, vgelu(vload(t)));
        memcpy(y + i, t, (n - i) * sizeof *t);
    }
}

void ISA(add)(float *y, const float *a, const float *b, size_t n)
{
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        vstore(y + i, vadd(vload(a + i), vload(b + i)));
    for (; i < n; i++)
        y[i] = a[i] + b[i];
}

static float ISA(row_scale_max)(float *x, int n, float scale)
{
    vf s = vset1(scale), mx = vset1(-INFINITY);
    int i = 0;
    for (; i + VL <= n; i += VL) {
        vf v = vmul(vload(x + i), s);
        vstore(x + i, v);
        mx = vmax(mx, v);
    }
    float m = vhmax(mx);
    for (; i < n; i++) {
        x[i] *= scale;
        m = x[i] > m ? x[i] : m;
    }
    return m;
}

static float ISA(row_exp_sum)(float *x, int n, float m)
{
    vf vm = vset1(m), acc = vzero();
    int i = 0;
    for (; i + VL <= n; i += VL) {
        vf e = vexp(vsub(vload(x + i), vm));
        vstore(x + i, e);
        acc = vadd(acc, e);
    }
    if (i < n) {
        float t[VL];
        for (int k = 0; k < VL; k++)
            t[k] = i + k < n ? x[i + k] : -INFINITY;   /* exp(-inf) = 0 adds nothing */
        vf e = vexp(vsub(vload(t), vm));
        vstore(t, e);
        acc = vadd(acc, e);
        memcpy(x + i, t, (size_t)(n - i) * sizeof *t);
    }
    return vhsum(acc);
}

static void ISA(row_scale)(float *x, int n, float f)
{
    vf s = vset1(f);
    int i = 0;
    for (; i + VL <= n; i += VL)
        vstore(x + i, vmul(vload(x + i), s));
    for (; i < n; i++)
        x[i] *= f;
}

/* ---- column operations on a score tile [rows][NR] (the attention's softmax) ----------------- */

#define TILE_NR (NV * VL)

void ISA(scale_colmax)(float *s, int rows, float scale, float *mx)
{
    vf sc = vset1(scale);
    for (int v = 0; v < NV; v++) {
        vf m = vset1(-INFINITY);
        for (int i = 0; i < rows; i++) {
            float *p = s + (size_t)i * TILE_NR + v * VL;
            vf x = vmul(vload(p), sc);
            vstore(p, x);
            m = vmax(m, x);
        }
        vstore(mx + v * VL, m);
    }
}

void ISA(exp_colsum)(float *s, int rows, const float *m, float *sum)
{
    for (int v = 0; v < NV; v++) {
        vf mv = vload(m + v * VL), acc = vzero();
        for (int i = 0; i < rows; i++) {
            float *p = s + (size_t)i * TILE_NR + v * VL;
            vf e = vexp(vsub(vload(p), mv));
            vstore(p, e);
            acc = vadd(acc, e);
        }
        vstore(sum + v * VL, acc);
    }
}

void ISA(scale_cols)(float *s, int rows, const float *f)
{
    for (int v = 0; v < NV; v++) {
        vf fv = vload(f + v * VL);
        for (int i = 0; i < rows; i++) {
            float *p = s + (size_t)i * TILE_NR + v * VL;
            vstore(p, vmul(vload(p), fv));
        }
    }
}

#undef TILE_NR

void ISA(softmax_backward_row)(float *ds, const float *p, int n, float scale)
{
    vf acc = vzero();
    int i = 0;
    for (; i + VL <= n; i += VL)
        acc = vfma(vload(p + i), vload(ds + i), acc);
    float d = vhsum(acc);
    for (; i < n; i++)
        d += p[i] * ds[i];
    vf vd = vset1(d), vs = vset1(scale);
    for (i = 0; i + VL <= n; i += VL)
        vstore(ds + i, vmul(vmul(vload(p + i), vsub(vload(ds + i), vd)), vs));
    for (; i < n; i++)
        ds[i] = p[i] * (ds[i] - d) * scale;
}

/* ---- GELU backward: dx = dy * (Phi(x) + x * phi(x)) ------------------------------------------ */

#define GELUB_CHUNK 4096

typedef struct ISA(gelub_args) { float *dx; const float *x, *dy; size_t n; } ISA(gelub_args);

static inline vf ISA(gelu_grad)(vf x)
{
    vf cdf = vfma(verf(vmul(x, vset1(0.70710678118654752f))), vset1(0.5f), vset1(0.5f));
    vf pdf = vmul(vexp(vmul(vmul(x, x), vset1(-0.5f))), vset1(0.39894228040143267794f));
    return vfma(x, pdf, cdf);
}

static void ISA(gelub_task)(void *p, int task, int thread)
{
    const ISA(gelub_args) *a = p;
    (void)thread;
    size_t i = (size_t)task * GELUB_CHUNK, end = i + GELUB_CHUNK < a->n ? i + GELUB_CHUNK : a->n;
    for (; i + VL <= end; i += VL)
        vstore(a->dx + i, vmul(vload(a->dy + i), ISA(gelu_grad)(vload(a->x + i))));
    if (i < end) {
        float tx[VL] = { 0 }, td[VL] = { 0 };
        memcpy(tx, a->x + i, (end - i) * sizeof *tx);
        memcpy(td, a->dy + i, (end - i) * sizeof *td);
        vstore(td, vmul(vload(td), ISA(gelu_grad)(vload(tx))));
        memcpy(a->dx + i, td, (end - i) * sizeof *td);
    }
}

void ISA(gelu_backward)(const mae_exec *ex, float *dx, const float *x, const float *dy, size_t n)
{
    ISA(gelub_args) a = { dx, x, dy, n };
    mae_parallel_for(ex->nthreads, (int)((n + GELUB_CHUNK - 1) / GELUB_CHUNK), ISA(gelub_task), &a);
}

#undef GELUB_CHUNK

void ISA(softmax)(float *x, int rows, int n)
{
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * n;
        float m = ISA(row_scale_max)(v, n, 1.0f);
        float sum = ISA(row_exp_sum)(v, n, m);
        ISA(row_scale)(v, n, 1.0f / sum);
    }
}

/* ---- LayerNorm: two passes over each row (mean, then the variance around it) ---------------- */

typedef struct ISA(ln_args) {
    float *out, *mean, *rstd;
    const float *x, *w, *b;
    int N, C;
    float eps;
} ISA(ln_args);

/* The row is measured from its first element: x - x0 is exact for the values near the mean, so
 * a large common offset (1e4 with unit spread) does not cost the deviations their precision.
 * Returns sum(x - x0). */
static float ISA(row_sum)(const float *x, int n, float x0)
{
    vf o = vset1(x0), a0 = vzero(), a1 = vzero();
    int i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        a0 = vadd(a0, vsub(vload(x + i), o));
        a1 = vadd(a1, vsub(vload(x + i + VL), o));
    }
    for (; i + VL <= n; i += VL)
        a0 = vadd(a0, vsub(vload(x + i), o));
    float s = vhsum(vadd(a0, a1));
    for (; i < n; i++)
        s += x[i] - x0;
    return s;
}

/* sum(((x - x0) - d)^2), d = mean - x0 */
static float ISA(row_sqdev)(const float *x, int n, float x0, float d)
{
    vf o = vset1(x0), m = vset1(d), a0 = vzero(), a1 = vzero();
    int i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        vf d0 = vsub(vsub(vload(x + i), o), m), d1 = vsub(vsub(vload(x + i + VL), o), m);
        a0 = vfma(d0, d0, a0);
        a1 = vfma(d1, d1, a1);
    }
    for (; i + VL <= n; i += VL) {
        vf d0 = vsub(vsub(vload(x + i), o), m);
        a0 = vfma(d0, d0, a0);
    }
    float s = vhsum(vadd(a0, a1));
    for (; i < n; i++)
        s += ((x[i] - x0) - d) * ((x[i] - x0) - d);
    return s;
}

static void ISA(ln_task)(void *p, int task, int thread)
{
    const ISA(ln_args) *a = p;
    (void)thread;
    int C = a->C;
    int r0 = task * LN_ROWS_PER_TASK;
    int r1 = r0 + LN_ROWS_PER_TASK < a->N ? r0 + LN_ROWS_PER_TASK : a->N;
    for (int r = r0; r < r1; r++) {
        const float *x = a->x + (size_t)r * C;
        float *y = a->out + (size_t)r * C;
        float x0 = x[0];
        float d = ISA(row_sum)(x, C, x0) / (float)C;
        float var = ISA(row_sqdev)(x, C, x0, d) / (float)C;
        float rs = 1.0f / sqrtf(var + a->eps);
        vf vo = vset1(x0), vd = vset1(d), vrs = vset1(rs);
        int i = 0;
        for (; i + VL <= C; i += VL) {
            vf xh = vmul(vsub(vsub(vload(x + i), vo), vd), vrs);
            vstore(y + i, vfma(xh, vload(a->w + i), vload(a->b + i)));
        }
        for (; i < C; i++)
            y[i] = fmaf(((x[i] - x0) - d) * rs, a->w[i], a->b[i]);
        if (a->mean)
            a->mean[r] = x0 + d;
        if (a->rstd)
            a->rstd[r] = rs;
    }
}

void ISA(layernorm)(const mae_exec *ex, float *out, float *mean, float *rstd, const float *x,
                    const float *w, const float *b, int N, int C, float eps)
{
    ISA(ln_args) a = { out, mean, rstd, x, w, b, N, C, eps };
    mae_parallel_for(ex->nthreads, (N + LN_ROWS_PER_TASK - 1) / LN_ROWS_PER_TASK, ISA(ln_task), &a);
}

#undef LN_ROWS_PER_TASK
