/* Multi-head attention on a tier's micro-kernel (see attention.h), computed transposed so that
 * the softmax runs down columns with plain vector operations:
 *
 *   per (sequence, head): K packed as A micro-panels (mr keys each), Vᵀ packed as A micro-panels
 *   (mr head dims each), both read straight from the qkv rows;
 *   per block of nr queries: Qᵀ packed as one B panel, then
 *     Sᵀ [keys, nr]  = K · Qᵀ            (one micro-kernel call per mr keys)
 *     softmax of each column of Sᵀ      (scale, max, exp, sum: vertical vector operations)
 *     Oᵀ [hd, nr]    = Vᵀ · Pᵀ           (Pᵀ is Sᵀ, already a packed B panel)
 *   and Oᵀ is written back as rows of the output.
 *
 * Up to MAE_FLASH_MIN_T keys (or whenever the softmax rows are asked for) all keys form one
 * block: exact softmax, P normalized before P·V. Longer sequences go over key blocks with an
 * online softmax (running max and sum per query, Oᵀ rescaled when the max grows), so nothing of
 * size T x T is ever held. Every query's result depends only on its own column: the split over
 * threads changes nothing. */
#include <math.h>
#include <stdint.h>
#include "attention.h"
#include "../util/util.h"

typedef struct attn_job {
    const mae_attn_isa *ai;
    const mae_exec *ex;
    float *out, *probs;
    const float *qkv;
    int B, T, C, H, hd;
    int keys;             /* keys per block: T (exact), or the flash block (a multiple of mr) */
    int nq, blocks;       /* tasks per (sequence, head); query blocks of nr per task */
    float scale;
} attn_job;

/* The per-thread areas, carved from the scratch (sizes in floats). */
typedef struct attn_scratch {
    float *kp;     /* K as A micro-panels: [up(T, mr)][hd] */
    float *vp;     /* Vᵀ as A micro-panels: [up(hd, mr)][T] */
    float *qt;     /* Qᵀ of one query block: [hd][nr] */
    float *st;     /* Sᵀ then Pᵀ of one key block: [up(keys, mr)][nr] */
    float *ot;     /* Oᵀ: [up(hd, mr)][nr] */
    float *m, *l, *f;   /* per query: running max, running sum, a factor */
} attn_scratch;

static size_t carve(attn_scratch *sc, float *base, const mae_gemm_isa *g, int T, int hd, int keys)
{
    size_t mr = (size_t)g->mr, nr = (size_t)g->nr;
    size_t hm = mae_round_up((size_t)hd, mr);
    size_t sizes[8] = { mae_round_up((size_t)T, mr) * hd, hm * T, (size_t)hd * nr,
                        mae_round_up((size_t)keys, mr) * nr, hm * nr, nr, nr, nr };
    float **dst[8] = { &sc->kp, &sc->vp, &sc->qt, &sc->st, &sc->ot, &sc->m, &sc->l, &sc->f };
    size_t total = 0;
    for (int i = 0; i < 8; i++) {
        if (base)
            *dst[i] = mae_align64(base + total);
        total += mae_round_up(sizes[i], 16) + 16;
    }
    return total + 16;
}

size_t mae_attention_scratch_floats(const mae_attn_isa *ai, int max_t, int max_c)
{
    /* qkv is a linear's output, so 3C <= max_c bounds the head width; with the softmax rows
     * asked for, the exact path may see all max_t keys in one block */
    attn_scratch unused;
    return carve(&unused, NULL, ai->g, max_t, (max_c + 2) / 3, max_t);
}

/* Sᵀ rows [0, nk) = K[k0, k0+nk) · Qᵀ */
static void scores(const attn_job *j, const attn_scratch *sc, int k0, int nk)
{
    const mae_gemm_isa *g = j->ai->g;
    mae_epi plain = { NULL, NULL, 0, MAE_ACT_NONE, 0 };
    for (int i = 0; i < nk; i += g->mr)
        g->ukr(j->hd, sc->kp + (size_t)(k0 + i) * j->hd, sc->qt, sc->st + (size_t)i * g->nr,
               (size_t)g->nr, mae_min_i(g->mr, nk - i), g->nr, &plain);
}

/* Oᵀ (+)= Vᵀ[:, k0, k0+nk) · Pᵀ */
static void times_v(const attn_job *j, const attn_scratch *sc, int k0, int nk, int beta)
{
    const mae_gemm_isa *g = j->ai->g;
    mae_epi e = { NULL, NULL, 0, MAE_ACT_NONE, beta };
    for (int e0 = 0; e0 < j->hd; e0 += g->mr)
        g->ukr(nk, sc->vp + (size_t)e0 * j->T + (size_t)k0 * g->mr, sc->st,
               sc->ot + (size_t)e0 * g->nr, (size_t)g->nr, mae_min_i(g->mr, j->hd - e0), g->nr, &e);
}

/* One block of nq <= nr queries starting at q0. */
static void query_block(const attn_job *j, const attn_scratch *sc, const float *base, int b, int h,
                        int q0, int nq)
{
    const mae_gemm_isa *g = j->ai->g;
    const mae_attn_isa *ai = j->ai;
    int T = j->T, hd = j->hd, nr = g->nr;
    size_t ld = 3 * (size_t)j->C;
    /* Qᵀ as one B panel; the columns past nq are zero (computed, never written out) */
    mae_pack_b(g, sc->qt, base, ld, 1, q0, nq, 0, hd);
    if (j->keys >= T) {
        /* exact: all keys in one block */
        scores(j, sc, 0, T);
        ai->scale_colmax(sc->st, T, j->scale, sc->m);
        ai->exp_colsum(sc->st, T, sc->m, sc->l);
        for (int q = 0; q < nr; q++)
            sc->f[q] = 1.0f / sc->l[q];
        ai->scale_cols(sc->st, T, sc->f);
        if (j->probs)
            g->transpose(j->probs + (((size_t)b * j->H + h) * T + q0) * T, (size_t)T, sc->st,
                         (size_t)nr, T, nq);
        times_v(j, sc, 0, T, 0);
    } else {
        /* flash: online softmax over key blocks */
        for (int q = 0; q < nr; q++) {
            sc->m[q] = -INFINITY;
            sc->l[q] = 0.0f;
        }
        for (int k0 = 0; k0 < T; k0 += j->keys) {
            int nk = mae_min_i(j->keys, T - k0);
            scores(j, sc, k0, nk);
            ai->scale_colmax(sc->st, nk, j->scale, sc->f);
            for (int q = 0; q < nr; q++) {
                float m_new = sc->f[q] > sc->m[q] ? sc->f[q] : sc->m[q];
                sc->f[q] = expf(sc->m[q] - m_new);     /* the old terms' factor; 0 at first */
                sc->m[q] = m_new;
            }
            if (k0 > 0)
                ai->scale_cols(sc->ot, (int)mae_round_up((size_t)hd, g->mr), sc->f);
            for (int q = 0; q < nr; q++)
                sc->l[q] *= sc->f[q];
            ai->exp_colsum(sc->st, nk, sc->m, sc->f);
            for (int q = 0; q < nr; q++)
                sc->l[q] += sc->f[q];
            times_v(j, sc, k0, nk, k0 > 0);
        }
        for (int q = 0; q < nr; q++)
            sc->f[q] = 1.0f / sc->l[q];
        ai->scale_cols(sc->ot, hd, sc->f);
    }
    /* Oᵀ [hd, nr] back to the rows of the output */
    g->transpose(j->out + ((size_t)b * T + q0) * j->C + (size_t)h * hd, (size_t)j->C, sc->ot,
                 (size_t)nr, hd, nq);
}

static void attn_task(void *arg, int task, int thread)
{
    const attn_job *j = arg;
    const mae_gemm_isa *g = j->ai->g;
    int bh = task / j->nq, part = task % j->nq, b = bh / j->H, h = bh % j->H;
    int q0 = part * j->blocks * g->nr, q1 = mae_min_i(q0 + j->blocks * g->nr, j->T);
    if (q0 >= q1)
        return;
    if (mae_measure_mode) {
        /* per query: scores and P·V (2·T·hd flops each), the softmax; K and Vᵀ packed per task */
        double q = q1 - q0;
        mae_task_work(thread, q * j->T * (4.0 * j->hd + 10.0), 2.0 * j->T * j->hd + 2.0 * q * j->hd);
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    attn_scratch sc;
    carve(&sc, j->ex->scratch + (size_t)thread * j->ex->scratch_per_thread, g, j->T, j->hd, j->keys);
    size_t ld = 3 * (size_t)j->C;
    const float *base = j->qkv + (size_t)b * j->T * ld + (size_t)h * j->hd;
    mae_pack_a(g, sc.kp, base + j->C, ld, 0, 0, j->T, 0, j->hd);       /* K rows */
    mae_pack_a(g, sc.vp, base + 2 * (size_t)j->C, ld, 1, 0, j->hd, 0, j->T);   /* Vᵀ */
    for (int q = q0; q < q1; q += g->nr)
        query_block(j, &sc, base, b, h, q, mae_min_i(g->nr, q1 - q));
}

void mae_attention_run(const mae_attn_isa *ai, const mae_exec *ex, float *out, float *probs,
                       const float *qkv, int B, int T, int C, int H, int flash_min_t)
{
    const mae_gemm_isa *g = ai->g;
    if (B <= 0 || T <= 0 || H <= 0)
        return;
    attn_job j = { ai, ex, out, probs, qkv, B, T, C, H, C / H, T, 1, 0,
                   (float)(1.0 / sqrt((double)(C / H))) };
    int nt = ex->nthreads < 1 ? 1 : ex->nthreads;
    if (!probs && T > flash_min_t) {
        int keys = MAE_FLASH_KEYS < flash_min_t ? MAE_FLASH_KEYS : flash_min_t;
        j.keys = keys / g->mr * g->mr > 0 ? keys / g->mr * g->mr : g->mr;
    }
    /* One task per (sequence, head) and chunk of query blocks. Each task packs its head's K and
     * Vᵀ, so chunks cost packing: choose the chunk count that finishes first on nt lanes, ceil(tasks
     * / nt) rounds of the largest task (one chunk on one thread; with many heads one chunk per
     * head, as before). */
    int qblocks = (T + g->nr - 1) / g->nr, BH = B * H;
    double block = (double)g->nr * T * (4.0 * j.hd + 10.0), pack = 8.0 * 2.0 * T * j.hd + 20000.0;
    double best = 0.0;
    for (int nq = 1; nq <= qblocks && (nq == 1 || nt > 1); nq++) {
        int blocks = (qblocks + nq - 1) / nq, n = (qblocks + blocks - 1) / blocks;
        if (n != nq)
            continue;
        double cost = (double)(((int64_t)BH * n + nt - 1) / nt) * (blocks * block + pack);
        if (nq == 1 || cost < best * (1.0 - 1e-9)) {
            best = cost;
            j.nq = n;
            j.blocks = blocks;
        }
    }
    mae_parallel_for_op(ex, "attention", B * H * j.nq, attn_task, &j);
}
