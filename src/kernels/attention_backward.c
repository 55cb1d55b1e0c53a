/* The backward pass of attention on a tier's micro-kernel. Per (sequence, head), with P the
 * saved softmax rows and S = scale * q·kᵀ:
 *
 *   dP = dO · Vᵀ                 [T, T]  (kept in the thread's scratch)
 *   dS = P ∘ (dP - rowsum(P ∘ dP)) · scale
 *   dQ = dS · K,   dK = dSᵀ · Q,   dV = Pᵀ · dO
 *
 * Every product is a sequence of micro-kernel calls on packed panels: the operands that are
 * used whole (Vᵀ, K, Q, dO as B panels) are packed once per task, the A side one micro-panel at
 * a time. One task per (sequence, head), each output element computed in a fixed order, so
 * the result does not depend on the thread count. */
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "attention.h"
#include "../util/util.h"

static int min_i(int a, int b) { return a < b ? a : b; }
static size_t up(size_t n, size_t m) { return (n + m - 1) / m * m; }
static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

typedef struct attnb_job {
    const mae_attn_isa *ai;
    const mae_exec *ex;
    float *dqkv;
    const float *dout, *qkv, *probs;
    int T, C, H, hd;
    float scale;
} attnb_job;

typedef struct attnb_scratch {
    float *ds;     /* dP, then dS: [T][ldS] */
    float *vt;     /* Vᵀ as B panels over keys: [up(T, nr)][hd] */
    float *kb;     /* K, Q, dO as B panels over head dims: [up(hd, nr)][T] each */
    float *qb, *ob;
    float *a;      /* one A micro-panel: [mr][max(T, hd)] */
} attnb_scratch;

static size_t carve(attnb_scratch *sc, float *base, const mae_gemm_isa *g, int T, int hd)
{
    size_t nr = (size_t)g->nr, kk = (size_t)(T > hd ? T : hd);
    size_t sizes[6] = { (size_t)T * up((size_t)T, nr), up((size_t)T, nr) * hd,
                        up((size_t)hd, nr) * T, up((size_t)hd, nr) * T, up((size_t)hd, nr) * T,
                        (size_t)g->mr * kk };
    float **dst[6] = { &sc->ds, &sc->vt, &sc->kb, &sc->qb, &sc->ob, &sc->a };
    size_t total = 0;
    for (int i = 0; i < 6; i++) {
        if (base)
            *dst[i] = align64(base + total);
        total += up(sizes[i], 16) + 16;
    }
    return total + 16;
}

size_t mae_attention_backward_scratch_floats(const mae_attn_isa *ai, int max_t, int max_c)
{
    attnb_scratch unused;
    return carve(&unused, NULL, ai->g, max_t, (max_c + 2) / 3);
}

/* One task's view: its (sequence, head) operands and its scratch. */
typedef struct attnb_ctx {
    const attnb_job *j;
    attnb_scratch sc;
    const float *q, *k, *v, *dO, *P;   /* rows of the head (q, k, v stride 3C; dO stride C) */
} attnb_ctx;

/* Packs rows [i0, i0+rows) of an A operand into one micro-panel. */
typedef void (*pack_rows_fn)(const attnb_ctx *t, float *dst, int i0, int rows);

static void pack_dO_rows(const attnb_ctx *t, float *dst, int i0, int rows)
{
    mae_pack_a(t->j->ai->g, dst, t->dO, (size_t)t->j->C, 0, i0, rows, 0, t->j->hd);
}

static void pack_dS_rows(const attnb_ctx *t, float *dst, int i0, int rows)
{
    mae_pack_a(t->j->ai->g, dst, t->sc.ds, up((size_t)t->j->T, t->j->ai->g->nr), 0, i0, rows, 0, t->j->T);
}

static void pack_dS_cols(const attnb_ctx *t, float *dst, int i0, int rows)
{
    mae_pack_a(t->j->ai->g, dst, t->sc.ds, up((size_t)t->j->T, t->j->ai->g->nr), 1, i0, rows, 0, t->j->T);
}

static void pack_P_cols(const attnb_ctx *t, float *dst, int i0, int rows)
{
    mae_pack_a(t->j->ai->g, dst, t->P, (size_t)t->j->T, 1, i0, rows, 0, t->j->T);
}

/* C [M, N] (row stride ldc) = A · B, A from its packer, B as packed panels (panel at column n0
 * starts at b + n0*kc). */
static void product(const attnb_ctx *t, pack_rows_fn pack, int M, int N, int kc, const float *b,
                    float *c, size_t ldc)
{
    const mae_gemm_isa *g = t->j->ai->g;
    mae_epi plain = { NULL, NULL, 0, MAE_ACT_NONE, 0 };
    for (int i0 = 0; i0 < M; i0 += g->mr) {
        int rows = min_i(g->mr, M - i0);
        pack(t, t->sc.a, i0, rows);
        for (int n0 = 0; n0 < N; n0 += g->nr)
            g->ukr(kc, t->sc.a, b + (size_t)n0 * kc, c + (size_t)i0 * ldc + n0, ldc, rows,
                   min_i(g->nr, N - n0), &plain);
    }
}

static void attnb_task(void *arg, int task, int thread)
{
    const attnb_job *j = arg;
    const mae_gemm_isa *g = j->ai->g;
    int T = j->T, C = j->C, H = j->H, hd = j->hd;
    int b = task / H, h = task % H;
    size_t C3 = 3 * (size_t)C, lds = up((size_t)T, g->nr);
    attnb_ctx t;
    t.j = j;
    carve(&t.sc, j->ex->scratch + (size_t)thread * j->ex->scratch_per_thread, g, T, hd);
    t.q = j->qkv + (size_t)b * T * C3 + (size_t)h * hd;
    t.k = t.q + C;
    t.v = t.q + 2 * (size_t)C;
    t.dO = j->dout + (size_t)b * T * C + (size_t)h * hd;
    t.P = j->probs + ((size_t)b * H + h) * T * T;
    float *dbase = j->dqkv + (size_t)b * T * C3 + (size_t)h * hd;

    /* dP = dO · Vᵀ, then dS row by row */
    mae_pack_b(g, t.sc.vt, t.v, C3, 1, 0, T, 0, hd);
    product(&t, pack_dO_rows, T, T, hd, t.sc.vt, t.sc.ds, lds);
    for (int i = 0; i < T; i++)
        j->ai->softmax_backward_row(t.sc.ds + (size_t)i * lds, t.P + (size_t)i * T, T, j->scale);
    /* dQ = dS · K, dK = dSᵀ · Q, dV = Pᵀ · dO, written straight into dqkv */
    mae_pack_b(g, t.sc.kb, t.k, C3, 0, 0, hd, 0, T);
    mae_pack_b(g, t.sc.qb, t.q, C3, 0, 0, hd, 0, T);
    mae_pack_b(g, t.sc.ob, t.dO, (size_t)C, 0, 0, hd, 0, T);
    product(&t, pack_dS_rows, T, hd, T, t.sc.kb, dbase, C3);
    product(&t, pack_dS_cols, T, hd, T, t.sc.qb, dbase + C, C3);
    product(&t, pack_P_cols, T, hd, T, t.sc.ob, dbase + 2 * (size_t)C, C3);
}

void mae_attention_backward_run(const mae_attn_isa *ai, const mae_exec *ex, float *dqkv,
                                const float *dout, const float *qkv, const float *probs,
                                int B, int T, int C, int H)
{
    if (B <= 0 || T <= 0 || H <= 0)
        return;
    attnb_job j = { ai, ex, dqkv, dout, qkv, probs, T, C, H, C / H,
                    (float)(1.0 / sqrt((double)(C / H))) };
    mae_parallel_for(ex, B * H, attnb_task, &j);
}
