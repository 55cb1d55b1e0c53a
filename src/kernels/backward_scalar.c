/* Scalar reference kernels of the backward pass: LayerNorm, GELU, attention (with the softmax
 * backward from the saved probabilities) and bias gradients. Double accumulators, and every sum
 * runs in a fixed order inside one task, so the results do not depend on the thread count. */
#include <math.h>
#include <string.h>
#include "kernels.h"
#include "../util/util.h"

#define ROWS_PER_TASK 8
#define COLS_PER_TASK 64

/* The attention backward keeps one [T,T] tile of score gradients per thread. */
size_t mae_scalar_backward_scratch_floats(int max_t, int max_c)
{
    (void)max_c;
    return (size_t)max_t * (size_t)max_t;
}

/* ---- LayerNorm ------------------------------------------------------------------------------ */

typedef struct lnb_args {
    float *dx, *dw, *db;
    const float *dy, *x, *mean, *rstd, *w;
    int N, C;
} lnb_args;

/* dx += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w, per row. */
static void lnb_rows(void *p, int task, int thread)
{
    const lnb_args *a = p;
    (void)thread;
    int C = a->C;
    int r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < a->N ? r0 + ROWS_PER_TASK : a->N;
    for (int r = r0; r < r1; r++) {
        const float *dy = a->dy + (size_t)r * C, *x = a->x + (size_t)r * C;
        float *dx = a->dx + (size_t)r * C;
        double mu = a->mean[r], rs = a->rstd[r];
        double s1 = 0.0, s2 = 0.0;
        for (int c = 0; c < C; c++) {
            double g = (double)dy[c] * a->w[c];
            s1 += g;
            s2 += g * ((x[c] - mu) * rs);
        }
        s1 /= C;
        s2 /= C;
        for (int c = 0; c < C; c++) {
            double g = (double)dy[c] * a->w[c], xhat = (x[c] - mu) * rs;
            dx[c] += (float)(rs * (g - s1 - xhat * s2));
        }
    }
}

/* dw[c] += sum_r dy*xhat, db[c] += sum_r dy: a block of columns per task, rows in order. */
static void lnb_cols(void *p, int task, int thread)
{
    const lnb_args *a = p;
    (void)thread;
    int C = a->C;
    int c0 = task * COLS_PER_TASK, c1 = c0 + COLS_PER_TASK < C ? c0 + COLS_PER_TASK : C;
    double sw[COLS_PER_TASK] = { 0 }, sb[COLS_PER_TASK] = { 0 };
    for (int r = 0; r < a->N; r++) {
        const float *dy = a->dy + (size_t)r * C, *x = a->x + (size_t)r * C;
        double mu = a->mean[r], rs = a->rstd[r];
        for (int c = c0; c < c1; c++) {
            sw[c - c0] += (double)dy[c] * ((x[c] - mu) * rs);
            sb[c - c0] += dy[c];
        }
    }
    for (int c = c0; c < c1; c++) {
        a->dw[c] += (float)sw[c - c0];
        a->db[c] += (float)sb[c - c0];
    }
}

void mae_scalar_layernorm_backward(const mae_exec *ex, float *dx, float *dw, float *db,
                                   const float *dy, const float *x, const float *mean,
                                   const float *rstd, const float *w, int N, int C)
{
    lnb_args a = { dx, dw, db, dy, x, mean, rstd, w, N, C };
    mae_parallel_for(ex, (N + ROWS_PER_TASK - 1) / ROWS_PER_TASK, lnb_rows, &a);
    mae_parallel_for(ex, (C + COLS_PER_TASK - 1) / COLS_PER_TASK, lnb_cols, &a);
}

/* ---- GELU ----------------------------------------------------------------------------------- */

typedef struct gelub_args {
    float *dx; const float *x, *dy;
    size_t n;
} gelub_args;

#define GELU_CHUNK 4096

/* d/dx 0.5 x (1 + erf(x/sqrt2)) = 0.5 (1 + erf(x/sqrt2)) + x exp(-x^2/2) / sqrt(2 pi) */
static void gelub_task(void *p, int task, int thread)
{
    const gelub_args *a = p;
    (void)thread;
    size_t i0 = (size_t)task * GELU_CHUNK, i1 = i0 + GELU_CHUNK < a->n ? i0 + GELU_CHUNK : a->n;
    for (size_t i = i0; i < i1; i++) {
        double x = a->x[i];
        double d = 0.5 * (1.0 + erf(x * 0.70710678118654752440)) +
                   x * exp(-0.5 * x * x) * 0.39894228040143267794;
        a->dx[i] = (float)(d * a->dy[i]);
    }
}

void mae_scalar_gelu_backward(const mae_exec *ex, float *dx, const float *x, const float *dy, size_t n)
{
    gelub_args a = { dx, x, dy, n };
    mae_parallel_for(ex, (int)((n + GELU_CHUNK - 1) / GELU_CHUNK), gelub_task, &a);
}

/* ---- attention ------------------------------------------------------------------------------ */

typedef struct attnb_args {
    const mae_exec *ex;
    float *dqkv; const float *dout, *qkv, *probs;
    int T, C, H;
} attnb_args;

/* One (sequence, head) per task. With P the saved softmax rows and S = scale * q·kᵀ:
 *   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - rowsum(P ∘ dP)),  dQ = scale dS K,  dK = scale dSᵀ Q.
 * dS (already times scale) lives in the thread's [T,T] scratch tile. */
static void attnb_task(void *p, int task, int thread)
{
    const attnb_args *a = p;
    int T = a->T, C = a->C, H = a->H, hd = C / H, C3 = 3 * C;
    int b = task / H, h = task % H;
    double scale = 1.0 / sqrt((double)hd);
    float *ds = a->ex->scratch + (size_t)thread * a->ex->scratch_per_thread;
    const float *base = a->qkv + (size_t)b * T * C3;
    const float *P = a->probs + ((size_t)b * H + h) * T * T;
    const float *dO = a->dout + (size_t)b * T * C + h * hd;
    float *dbase = a->dqkv + (size_t)b * T * C3;
    int qo = h * hd, ko = C + h * hd, vo = 2 * C + h * hd;

    for (int i = 0; i < T; i++) {
        const float *pi = P + (size_t)i * T, *doi = dO + (size_t)i * C;
        float *dsi = ds + (size_t)i * T;
        double rowdot = 0.0;
        for (int j = 0; j < T; j++) {
            const float *v = base + (size_t)j * C3 + vo;
            double dp = 0.0;
            for (int e = 0; e < hd; e++)
                dp += (double)doi[e] * v[e];
            dsi[j] = (float)dp;
            rowdot += (double)pi[j] * dp;
        }
        for (int j = 0; j < T; j++)
            dsi[j] = (float)(pi[j] * ((double)dsi[j] - rowdot) * scale);
    }
    for (int i = 0; i < T; i++) {
        const float *dsi = ds + (size_t)i * T;
        float *dq = dbase + (size_t)i * C3 + qo;
        for (int e = 0; e < hd; e++) {
            double s = 0.0;
            for (int j = 0; j < T; j++)
                s += (double)dsi[j] * base[(size_t)j * C3 + ko + e];
            dq[e] = (float)s;
        }
    }
    for (int j = 0; j < T; j++) {
        float *dk = dbase + (size_t)j * C3 + ko, *dv = dbase + (size_t)j * C3 + vo;
        for (int e = 0; e < hd; e++) {
            double sk = 0.0, sv = 0.0;
            for (int i = 0; i < T; i++) {
                sk += (double)ds[(size_t)i * T + j] * base[(size_t)i * C3 + qo + e];
                sv += (double)P[(size_t)i * T + j] * dO[(size_t)i * C + e];
            }
            dk[e] = (float)sk;
            dv[e] = (float)sv;
        }
    }
}

void mae_scalar_attention_backward(const mae_exec *ex, float *dqkv, const float *dout,
                                   const float *qkv, const float *probs, int B, int T, int C, int H)
{
    attnb_args a = { ex, dqkv, dout, qkv, probs, T, C, H };
    mae_parallel_for(ex, B * H, attnb_task, &a);
}

/* ---- bias ----------------------------------------------------------------------------------- */

typedef struct biasb_args {
    float *db; const float *dy;
    int N, C;
} biasb_args;

static void biasb_task(void *p, int task, int thread)
{
    const biasb_args *a = p;
    (void)thread;
    int c0 = task * COLS_PER_TASK, c1 = c0 + COLS_PER_TASK < a->C ? c0 + COLS_PER_TASK : a->C;
    double s[COLS_PER_TASK] = { 0 };
    for (int r = 0; r < a->N; r++) {
        const float *dy = a->dy + (size_t)r * a->C;
        for (int c = c0; c < c1; c++)
            s[c - c0] += dy[c];
    }
    for (int c = c0; c < c1; c++)
        a->db[c] += (float)s[c - c0];
}

void mae_scalar_bias_backward(const mae_exec *ex, float *db, const float *dy, int N, int C)
{
    biasb_args a = { db, dy, N, C };
    mae_parallel_for(ex, (C + COLS_PER_TASK - 1) / COLS_PER_TASK, biasb_task, &a);
}
