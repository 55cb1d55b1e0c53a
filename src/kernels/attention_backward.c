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

typedef struct attnb_job {
    const mae_attn_isa *ai;
    const mae_exec *ex;
    float *dqkv;
    const float *dout, *qkv, *probs;
    int T, C, H, hd;
    float scale;
    int BH, nv;        /* heads in all; dV tasks per head */
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
    size_t tk = mae_round_up((size_t)T, nr), th = mae_round_up((size_t)hd, nr);
    size_t sizes[6] = { (size_t)T * tk, tk * hd, th * T, th * T, th * T, (size_t)g->mr * kk };
    float **dst[6] = { &sc->ds, &sc->vt, &sc->kb, &sc->qb, &sc->ob, &sc->a };
    size_t total = 0;
    for (int i = 0; i < 6; i++) {
        if (base)
            *dst[i] = mae_align64(base + total);
        total += mae_round_up(sizes[i], 16) + 16;
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
    mae_pack_a(t->j->ai->g, dst, t->sc.ds, mae_round_up((size_t)t->j->T, t->j->ai->g->nr), 0, i0, rows, 0, t->j->T);
}

static void pack_dS_cols(const attnb_ctx *t, float *dst, int i0, int rows)
{
    mae_pack_a(t->j->ai->g, dst, t->sc.ds, mae_round_up((size_t)t->j->T, t->j->ai->g->nr), 1, i0, rows, 0, t->j->T);
}

static void pack_P_cols(const attnb_ctx *t, float *dst, int i0, int rows)
{
    mae_pack_a(t->j->ai->g, dst, t->P, (size_t)t->j->T, 1, i0, rows, 0, t->j->T);
}

/* Rows [r0, M) of C [M, N] (row stride ldc) = A · B, A from its packer, B as packed panels
 * (panel at column n0 starts at b + n0*kc); r0 is a multiple of mr. */
static void product(const attnb_ctx *t, pack_rows_fn pack, int r0, int M, int N, int kc,
                    const float *b, float *c, size_t ldc)
{
    const mae_gemm_isa *g = t->j->ai->g;
    mae_epi plain = { NULL, NULL, 0, MAE_ACT_NONE, 0 };
    for (int i0 = r0; i0 < M; i0 += g->mr) {
        int rows = mae_min_i(g->mr, M - i0);
        pack(t, t->sc.a, i0, rows);
        for (int n0 = 0; n0 < N; n0 += g->nr)
            g->ukr(kc, t->sc.a, b + (size_t)n0 * kc, c + (size_t)i0 * ldc + n0, ldc, rows,
                   mae_min_i(g->nr, N - n0), &plain);
    }
}

/* A task's view of its (sequence, head). */
static void head_view(const attnb_job *j, attnb_ctx *t, int bh, int thread)
{
    int T = j->T, C = j->C, H = j->H, hd = j->hd, b = bh / H, h = bh % H;
    size_t C3 = 3 * (size_t)C;
    t->j = j;
    carve(&t->sc, j->ex->scratch + (size_t)thread * j->ex->scratch_per_thread, j->ai->g, T, hd);
    t->q = j->qkv + (size_t)b * T * C3 + (size_t)h * hd;
    t->k = t->q + C;
    t->v = t->q + 2 * (size_t)C;
    t->dO = j->dout + (size_t)b * T * C + (size_t)h * hd;
    t->P = j->probs + ((size_t)b * H + h) * T * T;
}

/* Task kinds, in this order: one per head for dS, dQ and dK (three T x T x hd products); then
 * nv per head for rows of dV = Pᵀ · dO (one product, needing only P), so that the small tasks
 * fill the lanes the large ones leave idle at the end. Each output element is computed by the
 * same micro-kernel calls whichever task computes it. */
static void attnb_task(void *arg, int task, int thread)
{
    const attnb_job *j = arg;
    const mae_gemm_isa *g = j->ai->g;
    int T = j->T, C = j->C, hd = j->hd, BH = j->BH;
    size_t C3 = 3 * (size_t)C, lds = mae_round_up((size_t)T, g->nr);
    attnb_ctx t;
    if (task >= BH) {
        int bh = (task - BH) / j->nv, part = (task - BH) % j->nv;
        int panels = (T + g->mr - 1) / g->mr;
        int r0 = panels * part / j->nv * g->mr, r1 = mae_min_i(panels * (part + 1) / j->nv * g->mr, T);
        if (r0 >= r1)
            return;
        if (mae_measure_mode) {
            mae_task_work(thread, 2.0 * (r1 - r0) * (double)T * hd, (double)T * hd + (double)(r1 - r0) * T);
            if (mae_measure_mode == MAE_MEASURE_SIMULATE)
                return;
        }
        head_view(j, &t, bh, thread);
        float *dv = j->dqkv + (size_t)(bh / j->H) * T * C3 + (size_t)(bh % j->H) * hd + 2 * (size_t)C;
        mae_pack_b(g, t.sc.ob, t.dO, (size_t)C, 0, 0, hd, 0, T);
        product(&t, pack_P_cols, r0, r1, hd, T, t.sc.ob, dv, C3);
        return;
    }
    if (mae_measure_mode) {
        mae_task_work(thread, 6.0 * T * (double)T * hd + 6.0 * T * (double)T, 3.0 * T * hd + 3.0 * (double)T * T);
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    head_view(j, &t, task, thread);
    float *dbase = j->dqkv + (size_t)(task / j->H) * T * C3 + (size_t)(task % j->H) * hd;

    /* dP = dO · Vᵀ, then dS row by row */
    mae_pack_b(g, t.sc.vt, t.v, C3, 1, 0, T, 0, hd);
    product(&t, pack_dO_rows, 0, T, T, hd, t.sc.vt, t.sc.ds, lds);
    for (int i = 0; i < T; i++)
        j->ai->softmax_backward_row(t.sc.ds + (size_t)i * lds, t.P + (size_t)i * T, T, j->scale);
    /* dQ = dS · K, dK = dSᵀ · Q, written straight into dqkv */
    mae_pack_b(g, t.sc.kb, t.k, C3, 0, 0, hd, 0, T);
    mae_pack_b(g, t.sc.qb, t.q, C3, 0, 0, hd, 0, T);
    product(&t, pack_dS_rows, 0, T, hd, T, t.sc.kb, dbase, C3);
    product(&t, pack_dS_cols, 0, T, hd, T, t.sc.qb, dbase + C, C3);
}

void mae_attention_backward_run(const mae_attn_isa *ai, const mae_exec *ex, float *dqkv,
                                const float *dout, const float *qkv, const float *probs,
                                int B, int T, int C, int H)
{
    if (B <= 0 || T <= 0 || H <= 0)
        return;
    attnb_job j = { ai, ex, dqkv, dout, qkv, probs, T, C, H, C / H,
                    (float)(1.0 / sqrt((double)(C / H))), B * H, 1 };
    /* dV rows in parts of whole micro-panels: on one thread one part; else enough that the dV
     * tasks (a quarter of the work) can fill the last round of the head tasks */
    int nt = ex->nthreads < 1 ? 1 : ex->nthreads, panels = (T + ai->g->mr - 1) / ai->g->mr;
    if (nt > 1) {
        int want = (4 * nt + j.BH - 1) / j.BH;
        j.nv = want < panels ? want : panels;
    }
    mae_parallel_for_op(ex, "attention_backward", j.BH * (1 + j.nv), attnb_task, &j);
}
