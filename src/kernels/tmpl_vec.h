/* The vector kernels of the table (GELU, add, LayerNorm) and the row operations the
 * attention uses, written once against the vector layer and compiled per instruction set.
 * Include after simd_*.h and tmpl_vmath.h. Tails shorter than a vector go through a padded copy,
 * so that every element sees the same vector operations. */
#include <math.h>
#include <string.h>
#include "../util/util.h"

#define LN_ROWS_PER_TASK 8

/* Per-task sizes of the row and column loops: up to `most`, fewer when the loop would give
 * fewer than `per` tasks per thread (batch 1 on many threads); rows and columns are independent,
 * so the size changes nothing in the result. */
static int ISA(task_size)(const mae_exec *ex, int n, int per, int most)
{
    int nt = ex && ex->nthreads > 1 ? ex->nthreads : 1;
    int r = (int)(((int64_t)n + (int64_t)per * nt - 1) / ((int64_t)per * nt));
    return r < 1 ? 1 : r > most ? most : r;
}

/* y[i] = op(x[i]): whole vectors, then the tail through a zero-padded vector, so that every
 * element goes through the same vector code. One definition per elementwise function. */
#define UNARY_MAP(name, op)                                                                        \
    void ISA(name)(float *y, const float *x, size_t n)                                             \
    {                                                                                              \
        size_t i = 0;                                                                              \
        for (; i + VL <= n; i += VL)                                                               \
            vstore(y + i, op(vload(x + i)));                                                       \
        if (i < n) {                                                                               \
            float t[VL] = { 0 };                                                                   \
            memcpy(t, x + i, (n - i) * sizeof *t);                                                 \
            vstore(t, op(vload(t)));                                                               \
            memcpy(y + i, t, (n - i) * sizeof *t);                                                 \
        }                                                                                          \
    }

UNARY_MAP(exp, vexp)
UNARY_MAP(erf, verf)
UNARY_MAP(gelu, vgelu)
#undef UNARY_MAP

void ISA(add)(float *y, const float *a, const float *b, size_t n)
{
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        vstore(y + i, vadd(vload(a + i), vload(b + i)));
    for (; i < n; i++)
        y[i] = a[i] + b[i];
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
    size_t i = (size_t)task * GELUB_CHUNK, end = i + GELUB_CHUNK < a->n ? i + GELUB_CHUNK : a->n;
    if (mae_measure_mode) {
        mae_task_work(thread, 40.0 * (double)(end - i), 3.0 * (double)(end - i));
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
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
    mae_parallel_for_op(ex, "gelu_backward", (int)((n + GELUB_CHUNK - 1) / GELUB_CHUNK), ISA(gelub_task), &a);
}

#undef GELUB_CHUNK

/* ---- LayerNorm and bias backward ------------------------------------------------------------- */

#define LNB_ROWS 8
#define COL_VECS 8                      /* a column task: 8 vectors wide */
#define COL_WIDTH (COL_VECS * VL)

typedef struct ISA(lnb_args) {
    float *dx, *dw, *db;
    const float *dy, *x, *mean, *rstd, *w;
    int N, C;
    int rows, width;   /* rows per row task; columns per column task (whole vectors) */
} ISA(lnb_args);

/* dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd */
static void ISA(lnb_rows)(void *p, int task, int thread)
{
    const ISA(lnb_args) *a = p;
    (void)thread;
    int C = a->C, r0 = task * a->rows, r1 = r0 + a->rows < a->N ? r0 + a->rows : a->N;
    if (mae_measure_mode) {
        mae_task_work(thread, 12.0 * (r1 - r0) * C, 3.0 * (r1 - r0) * C);
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    for (int r = r0; r < r1; r++) {
        const float *dy = a->dy + (size_t)r * C, *x = a->x + (size_t)r * C, *w = a->w;
        float *dx = a->dx + (size_t)r * C;
        float mu = a->mean[r], rs = a->rstd[r];
        vf vmu = vset1(mu), vrs = vset1(rs), s1 = vzero(), s2 = vzero();
        int c = 0;
        for (; c + VL <= C; c += VL) {
            vf g = vmul(vload(dy + c), vload(w + c));
            s1 = vadd(s1, g);
            s2 = vfma(g, vmul(vsub(vload(x + c), vmu), vrs), s2);
        }
        float m1 = vhsum(s1), m2 = vhsum(s2);
        for (int t = c; t < C; t++) {
            float g = dy[t] * w[t];
            m1 += g;
            m2 += g * ((x[t] - mu) * rs);
        }
        m1 /= (float)C;
        m2 /= (float)C;
        vf vm1 = vset1(m1), vm2 = vset1(m2);
        for (c = 0; c + VL <= C; c += VL) {
            vf g = vmul(vload(dy + c), vload(w + c)), xh = vmul(vsub(vload(x + c), vmu), vrs);
            vstore(dx + c, vfma(vrs, vfnma(xh, vm2, vsub(g, vm1)), vload(dx + c)));
        }
        for (; c < C; c++) {
            float g = dy[c] * w[c], xh = (x[c] - mu) * rs;
            dx[c] += rs * ((g - m1) - xh * m2);
        }
    }
}

/* dw[c] += sum over rows of dy * xhat, db[c] += sum of dy: a block of columns per task, the rows
 * in order. */
static void ISA(lnb_cols)(void *p, int task, int thread)
{
    const ISA(lnb_args) *a = p;
    int C = a->C, c0 = task * a->width, c1 = c0 + a->width < C ? c0 + a->width : C;
    int nv = (c1 - c0) / VL;
    if (mae_measure_mode) {
        mae_task_work(thread, 4.0 * a->N * (c1 - c0), 2.0 * a->N * (c1 - c0));
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    vf sw[COL_VECS], sb[COL_VECS];
    for (int v = 0; v < COL_VECS; v++)
        sw[v] = sb[v] = vzero();
    float tw[VL] = { 0 }, tb[VL] = { 0 };
    for (int r = 0; r < a->N; r++) {
        const float *dy = a->dy + (size_t)r * C, *x = a->x + (size_t)r * C;
        float mu = a->mean[r], rs = a->rstd[r];
        vf vmu = vset1(mu), vrs = vset1(rs);
        for (int v = 0; v < nv; v++) {
            int c = c0 + v * VL;
            vf d = vload(dy + c);
            sw[v] = vfma(d, vmul(vsub(vload(x + c), vmu), vrs), sw[v]);
            sb[v] = vadd(sb[v], d);
        }
        for (int c = c0 + nv * VL; c < c1; c++) {
            tw[c - c0 - nv * VL] += dy[c] * ((x[c] - mu) * rs);
            tb[c - c0 - nv * VL] += dy[c];
        }
    }
    for (int v = 0; v < nv; v++) {
        int c = c0 + v * VL;
        vstore(a->dw + c, vadd(vload(a->dw + c), sw[v]));
        vstore(a->db + c, vadd(vload(a->db + c), sb[v]));
    }
    for (int c = c0 + nv * VL; c < c1; c++) {
        a->dw[c] += tw[c - c0 - nv * VL];
        a->db[c] += tb[c - c0 - nv * VL];
    }
}

void ISA(layernorm_backward)(const mae_exec *ex, float *dx, float *dw, float *db, const float *dy,
                             const float *x, const float *mean, const float *rstd, const float *w,
                             int N, int C)
{
    ISA(lnb_args) a = { dx, dw, db, dy, x, mean, rstd, w, N, C, ISA(task_size)(ex, N, 4, LNB_ROWS),
                        VL * ISA(task_size)(ex, (C + VL - 1) / VL, 2, COL_VECS) };
    mae_parallel_for_op(ex, "layernorm_backward", (N + a.rows - 1) / a.rows, ISA(lnb_rows), &a);
    mae_parallel_for_op(ex, "layernorm_backward", (C + a.width - 1) / a.width, ISA(lnb_cols), &a);
}

typedef struct ISA(biasb_args) { float *db; const float *dy; int N, C, width; } ISA(biasb_args);

static void ISA(biasb_task)(void *p, int task, int thread)
{
    const ISA(biasb_args) *a = p;
    int C = a->C, c0 = task * a->width, c1 = c0 + a->width < C ? c0 + a->width : C;
    int nv = (c1 - c0) / VL;
    if (mae_measure_mode) {
        mae_task_work(thread, (double)a->N * (c1 - c0), (double)a->N * (c1 - c0));
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    vf sb[COL_VECS];
    for (int v = 0; v < COL_VECS; v++)
        sb[v] = vzero();
    float tb[VL] = { 0 };
    for (int r = 0; r < a->N; r++) {
        const float *dy = a->dy + (size_t)r * C;
        for (int v = 0; v < nv; v++)
            sb[v] = vadd(sb[v], vload(dy + c0 + v * VL));
        for (int c = c0 + nv * VL; c < c1; c++)
            tb[c - c0 - nv * VL] += dy[c];
    }
    for (int v = 0; v < nv; v++)
        vstore(a->db + c0 + v * VL, vadd(vload(a->db + c0 + v * VL), sb[v]));
    for (int c = c0 + nv * VL; c < c1; c++)
        a->db[c] += tb[c - c0 - nv * VL];
}

void ISA(bias_backward)(const mae_exec *ex, float *db, const float *dy, int N, int C)
{
    ISA(biasb_args) a = { db, dy, N, C, VL * ISA(task_size)(ex, (C + VL - 1) / VL, 2, COL_VECS) };
    mae_parallel_for_op(ex, "bias_backward", (C + a.width - 1) / a.width, ISA(biasb_task), &a);
}

#undef LNB_ROWS
#undef COL_VECS
#undef COL_WIDTH

/* ---- LayerNorm: two passes over each row (mean, then the variance around it) ---------------- */

typedef struct ISA(ln_args) {
    int rows;   /* per task */
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
    int C = a->C;
    int r0 = task * a->rows;
    int r1 = r0 + a->rows < a->N ? r0 + a->rows : a->N;
    if (mae_measure_mode) {
        mae_task_work(thread, 10.0 * (r1 - r0) * C, 2.0 * (r1 - r0) * C);
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
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
    ISA(ln_args) a = { ISA(task_size)(ex, N, 4, LN_ROWS_PER_TASK), out, mean, rstd, x, w, b, N, C, eps };
    mae_parallel_for_op(ex, "layernorm", (N + a.rows - 1) / a.rows, ISA(ln_task), &a);
}

#undef LN_ROWS_PER_TASK
