/* The scalar reference kernels: plain loops with double accumulators. Every other tier is tested
 * against these, and they are the fallback on any CPU. */
#include <math.h>
#include <string.h>
#include "kernels.h"
#include "gemm_bf16.h"
#include "../util/util.h"

#define ROWS_PER_TASK 8

static size_t scalar_scratch_floats(int max_t, int max_c)
{
    (void)max_c;
    return (size_t)max_t;
}

static size_t scalar_pack_floats(int N, int K)
{
    (void)N; (void)K;
    return 0;
}

static void scalar_pack(float *dst, const float *W, int N, int K)
{
    memcpy(dst, W, (size_t)N * K * sizeof *W);
}

static void scalar_unpack(float *W, const float *packed, int N, int K)
{
    memcpy(W, packed, (size_t)N * K * sizeof *W);
}

/* Written as torch.optim.AdamW's single-tensor path computes it (see kernels.h); each product
 * rounded on its own (this file has no FMA, and -std=c11 forbids contracting). */
void mae_scalar_adamw(float *w, float *m1, float *m2, const float *g, size_t n, const mae_adamw_hp *h)
{
    for (size_t j = 0; j < n; j++) {
        double gd = (double)g[j] * h->grad_mul;
        double m = m1[j] + h->one_minus_beta1 * (gd - m1[j]);
        double v = h->beta2 * m2[j] + h->one_minus_beta2 * gd * gd;
        m1[j] = (float)m;
        m2[j] = (float)v;
        double denom = sqrt((double)m2[j]) / h->bc2_sqrt + h->eps;
        w[j] = (float)(w[j] * h->decay - h->step_size * (double)m1[j] / denom);
    }
}

/* One patch of the loss (see kernels.h), each term in double. */
static double scalar_loss_patch(float *t, const float *y, int n, int norm_pix)
{
    if (norm_pix) {
        double mean = 0.0, var = 0.0;
        for (int q = 0; q < n; q++)
            mean += t[q];
        mean /= n;
        for (int q = 0; q < n; q++)
            var += (t[q] - mean) * (t[q] - mean);
        var = n > 1 ? var / (n - 1) : NAN;   /* torch.var of one value is NaN */
        double inv = 1.0 / sqrt(var + 1e-6);
        for (int q = 0; q < n; q++)
            t[q] = (float)((t[q] - mean) * inv);
    }
    double s = 0.0;
    for (int q = 0; q < n; q++)
        s += ((double)y[q] - t[q]) * ((double)y[q] - t[q]);
    return s;
}

static void scalar_loss_grad(float *d, const float *y, const float *t, double w, size_t n)
{
    for (size_t q = 0; q < n; q++)
        d[q] = (float)(w * ((double)y[q] - t[q]));
}

static float gelu1(float x)
{
    return (float)(0.5 * x * (1.0 + erf(x * 0.70710678118654752440)));
}

typedef struct linear_args {
    float *out; const float *A, *W, *bias, *res;
    int M, N, K, act;
} linear_args;

static void linear_task(void *p, int task, int thread)
{
    const linear_args *a = p;
    (void)thread;
    int m0 = task * ROWS_PER_TASK, m1 = m0 + ROWS_PER_TASK < a->M ? m0 + ROWS_PER_TASK : a->M;
    for (int m = m0; m < m1; m++) {
        const float *x = a->A + (size_t)m * a->K;
        for (int n = 0; n < a->N; n++) {
            const float *w = a->W + (size_t)n * a->K;
            double s = a->bias ? a->bias[n] : 0.0;
            for (int k = 0; k < a->K; k++)
                s += (double)x[k] * w[k];
            float v = (float)s;
            if (a->act == MAE_ACT_GELU)
                v = gelu1(v);
            if (a->res)
                v += a->res[(size_t)m * a->N + n];
            a->out[(size_t)m * a->N + n] = v;
        }
    }
}

static void scalar_linear(const mae_exec *ex, float *out, const float *A, const float *wp,
                          const float *bias, const float *residual, int M, int N, int K, int act)
{
    linear_args a = { out, A, wp, bias, residual, M, N, K, act };
    mae_parallel_for(ex, (M + ROWS_PER_TASK - 1) / ROWS_PER_TASK, linear_task, &a);
}

typedef struct attn_args {
    const mae_exec *ex;
    float *out, *probs; const float *qkv;
    int T, C, H;
} attn_args;

/* One (sequence, head) pair per task. */
static void attn_task(void *p, int task, int thread)
{
    const attn_args *a = p;
    int T = a->T, C = a->C, H = a->H, hd = C / H;
    int b = task / H, h = task % H;
    double scale = 1.0 / sqrt((double)hd);
    float *s = a->ex->scratch + (size_t)thread * a->ex->scratch_per_thread;
    const float *base = a->qkv + (size_t)b * T * 3 * C;
    for (int i = 0; i < T; i++) {
        const float *q = base + (size_t)i * 3 * C + h * hd;
        float mx = -INFINITY;
        for (int j = 0; j < T; j++) {
            const float *k = base + (size_t)j * 3 * C + C + h * hd;
            double d = 0.0;
            for (int e = 0; e < hd; e++)
                d += (double)q[e] * k[e];
            s[j] = (float)(d * scale);
            if (s[j] > mx)
                mx = s[j];
        }
        double sum = 0.0;
        for (int j = 0; j < T; j++) {
            s[j] = (float)exp((double)s[j] - mx);
            sum += s[j];
        }
        for (int j = 0; j < T; j++)
            s[j] = (float)(s[j] / sum);
        if (a->probs)
            memcpy(a->probs + (((size_t)b * H + h) * T + i) * T, s, (size_t)T * sizeof *s);
        float *o = a->out + ((size_t)b * T + i) * C + h * hd;
        for (int e = 0; e < hd; e++) {
            double acc = 0.0;
            for (int j = 0; j < T; j++)
                acc += (double)s[j] * base[(size_t)j * 3 * C + 2 * C + h * hd + e];
            o[e] = (float)acc;
        }
    }
}

static void scalar_attention(const mae_exec *ex, float *out, float *probs, const float *qkv,
                             int B, int T, int C, int H)
{
    attn_args a = { ex, out, probs, qkv, T, C, H };
    mae_parallel_for(ex, B * H, attn_task, &a);
}

typedef struct ln_args {
    float *out, *mean, *rstd; const float *x, *w, *b;
    int N, C; float eps;
} ln_args;

static void ln_task(void *p, int task, int thread)
{
    const ln_args *a = p;
    (void)thread;
    int r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < a->N ? r0 + ROWS_PER_TASK : a->N;
    for (int r = r0; r < r1; r++) {
        const float *x = a->x + (size_t)r * a->C;
        float *y = a->out + (size_t)r * a->C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < a->C; c++)
            m += x[c];
        m /= a->C;
        for (int c = 0; c < a->C; c++)
            v += (x[c] - m) * (x[c] - m);
        v /= a->C;
        double rs = 1.0 / sqrt(v + a->eps);
        for (int c = 0; c < a->C; c++)
            y[c] = (float)((x[c] - m) * rs * a->w[c] + a->b[c]);
        if (a->mean)
            a->mean[r] = (float)m;
        if (a->rstd)
            a->rstd[r] = (float)rs;
    }
}

static void scalar_layernorm(const mae_exec *ex, float *out, float *mean, float *rstd, const float *x,
                             const float *w, const float *b, int N, int C, float eps)
{
    ln_args a = { out, mean, rstd, x, w, b, N, C, eps };
    mae_parallel_for(ex, (N + ROWS_PER_TASK - 1) / ROWS_PER_TASK, ln_task, &a);
}

static void scalar_gelu(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = gelu1(x[i]);
}

static void scalar_add(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

typedef struct mm_args {
    float *C; const float *A, *B;
    int M, N, K, accumulate, trans_a;
} mm_args;

static void mm_task(void *p, int task, int thread)
{
    const mm_args *a = p;
    (void)thread;
    int m0 = task * ROWS_PER_TASK, m1 = m0 + ROWS_PER_TASK < a->M ? m0 + ROWS_PER_TASK : a->M;
    for (int m = m0; m < m1; m++) {
        for (int n = 0; n < a->N; n++) {
            double s = 0.0;
            for (int k = 0; k < a->K; k++) {
                float av = a->trans_a ? a->A[(size_t)k * a->M + m] : a->A[(size_t)m * a->K + k];
                s += (double)av * a->B[(size_t)k * a->N + n];
            }
            float *c = a->C + (size_t)m * a->N + n;
            *c = a->accumulate ? *c + (float)s : (float)s;
        }
    }
}

static void scalar_matmul_nn(const mae_exec *ex, float *C, const float *A, const float *B,
                             int M, int N, int K, int accumulate)
{
    mm_args a = { C, A, B, M, N, K, accumulate, 0 };
    mae_parallel_for(ex, (M + ROWS_PER_TASK - 1) / ROWS_PER_TASK, mm_task, &a);
}

static void scalar_matmul_tn(const mae_exec *ex, float *C, const float *A, const float *B,
                             int M, int N, int K, int accumulate)
{
    mm_args a = { C, A, B, M, N, K, accumulate, 1 };
    mae_parallel_for(ex, (M + ROWS_PER_TASK - 1) / ROWS_PER_TASK, mm_task, &a);
}

const mae_kernels mae_kernels_scalar = {
    .name = "scalar",
    .scratch_floats = scalar_scratch_floats,
    .pack_floats = scalar_pack_floats,
    .pack = scalar_pack,
    .linear = scalar_linear,
    .attention = scalar_attention,
    .layernorm = scalar_layernorm,
    .gelu = scalar_gelu,
    .add = scalar_add,
    .matmul_nn = scalar_matmul_nn,
    .matmul_tn = scalar_matmul_tn,
    .backward_scratch_floats = mae_scalar_backward_scratch_floats,
    .layernorm_backward = mae_scalar_layernorm_backward,
    .gelu_backward = mae_scalar_gelu_backward,
    .attention_backward = mae_scalar_attention_backward,
    .bias_backward = mae_scalar_bias_backward,
    .unpack = scalar_unpack,
    .adamw = mae_scalar_adamw,
    .loss_patch = scalar_loss_patch,
    .loss_grad = scalar_loss_grad,
    .bf16_pack_size = mae_bf16_ref_pack_size,
    .bf16_pack = mae_bf16_ref_pack,
    .bf16_unpack = mae_bf16_ref_unpack,
    .bf16_linear = mae_bf16_ref_linear,
};
