/* Multi-head attention on a tier's micro-kernel (see attention.h). For one (sequence, head):
 * K and V are packed once into B panels (K as the transposed operand of Q·Kᵀ, V as the operand
 * of P·V); then each mr-row micro-panel of queries makes one tile of scores S [mr, keys] with the
 * micro-kernel, turns it into softmax rows, and multiplies it by V, writing its rows of the
 * output. Nothing of size T x T is ever held. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "attention.h"
#include "../util/util.h"

#define FLASH_ROWS 64   /* query rows per task on the flash path (rounded up to mr) */

typedef struct attn_job {
    const mae_attn_isa *ai;
    const mae_exec *ex;
    float *out, *probs;
    const float *qkv;
    int B, T, C, H, hd;
    int flash;            /* online softmax over key blocks */
    int keys;             /* keys per block: T, or the flash block */
    int nq, rows;         /* query chunks per (sequence, head), rows per chunk */
    float scale;
} attn_job;

static int min_i(int a, int b) { return a < b ? a : b; }
static size_t up(size_t n, size_t m) { return (n + m - 1) / m * m; }
static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* The per-thread areas; sizes in floats for keys-per-block kb and chunk rows rq. */
typedef struct attn_scratch { float *kp, *vp, *qp, *s, *pp, *o, *m, *l; } attn_scratch;

static size_t carve(attn_scratch *sc, float *base, const mae_gemm_isa *g, int T, int hd, int kb, int rq)
{
    size_t sizes[8] = {
        up((size_t)T, g->nr) * hd,        /* K panels */
        up((size_t)hd, g->nr) * T,        /* V panels */
        (size_t)g->mr * hd,               /* one micro-panel of Q */
        (size_t)g->mr * up((size_t)kb, g->nr),   /* scores */
        (size_t)g->mr * kb,               /* the scores packed as an A micro-panel */
        (size_t)rq * hd, (size_t)rq, (size_t)rq, /* flash: output rows, running max, running sum */
    };
    float **dst[8] = { &sc->kp, &sc->vp, &sc->qp, &sc->s, &sc->pp, &sc->o, &sc->m, &sc->l };
    size_t total = 0;
    for (int i = 0; i < 8; i++) {
        if (base)
            *dst[i] = align64(base + total);
        total += up(sizes[i], 16) + 16;
    }
    return total + 16;
}

size_t mae_attention_scratch_floats(const mae_attn_isa *ai, int max_t, int max_c)
{
    const mae_gemm_isa *g = ai->g;
    /* qkv is a linear's output, so 3C <= max_c bounds the head width; with probs asked for, the
     * exact path may see all max_t keys in one block */
    int hd = (max_c + 2) / 3;
    return carve(NULL, NULL, g, max_t, hd, max_t, (int)up(FLASH_ROWS, g->mr));
}

/* S [rows, nk] = Q micro-panel · K[k0, k0+nk)ᵀ; k0 is a multiple of nr. */
static void scores(const attn_job *j, const attn_scratch *sc, int rows, int k0, int nk, size_t lds)
{
    const mae_gemm_isa *g = j->ai->g;
    mae_epi plain = { NULL, NULL, 0, MAE_ACT_NONE, 0 };
    for (int c0 = 0; c0 < nk; c0 += g->nr)
        g->ukr(j->hd, sc->qp, sc->kp + (size_t)(k0 + c0) * j->hd, sc->s + c0, lds, rows,
               min_i(g->nr, nk - c0), &plain);
}

/* dst [rows, hd] (row stride ldd) (+)= P (packed) · V[k0, k0+nk). */
static void times_v(const attn_job *j, const attn_scratch *sc, int rows, int k0, int nk,
                    float *dst, size_t ldd, int beta)
{
    const mae_gemm_isa *g = j->ai->g;
    mae_epi e = { NULL, NULL, 0, MAE_ACT_NONE, beta };
    for (int e0 = 0; e0 < j->hd; e0 += g->nr)
        g->ukr(nk, sc->pp, sc->vp + (size_t)e0 * j->T + (size_t)k0 * g->nr, dst + e0, ldd, rows,
               min_i(g->nr, j->hd - e0), &e);
}

/* All keys in one block: exact softmax rows (saved to probs when asked), then P·V. */
static void exact_rows(const attn_job *j, const attn_scratch *sc, const float *q, int b, int h,
                       int r0, int r1)
{
    const mae_gemm_isa *g = j->ai->g;
    const mae_attn_isa *ai = j->ai;
    int T = j->T;
    size_t lds = up((size_t)T, g->nr), ldq = 3 * (size_t)j->C;
    for (int i0 = r0; i0 < r1; i0 += g->mr) {
        int rows = min_i(g->mr, r1 - i0);
        mae_pack_a(sc->qp, q, ldq, 0, i0, rows, 0, j->hd, g->mr);
        scores(j, sc, rows, 0, T, lds);
        for (int r = 0; r < rows; r++) {
            float *s = sc->s + (size_t)r * lds;
            float mx = ai->scale_max(s, T, j->scale);
            float sum = ai->exp_sum(s, T, mx);
            ai->scale(s, T, 1.0f / sum);
            if (j->probs)
                memcpy(j->probs + (((size_t)b * j->H + h) * T + i0 + r) * T, s, (size_t)T * sizeof *s);
        }
        mae_pack_a(sc->pp, sc->s, lds, 0, 0, rows, 0, T, g->mr);
        times_v(j, sc, rows, 0, T, j->out + ((size_t)b * T + i0) * j->C + (size_t)h * j->hd,
                (size_t)j->C, 0);
    }
}

/* Online softmax over key blocks: per row a running max m and sum l; the output rows are
 * rescaled by exp(m_old - m_new) whenever the max grows, and divided by l at the end. */
static void flash_rows(const attn_job *j, const attn_scratch *sc, const float *q, int b, int h,
                       int r0, int r1)
{
    const mae_gemm_isa *g = j->ai->g;
    const mae_attn_isa *ai = j->ai;
    int T = j->T, hd = j->hd, n = r1 - r0;
    size_t lds = up((size_t)j->keys, g->nr), ldq = 3 * (size_t)j->C;
    memset(sc->o, 0, (size_t)n * hd * sizeof *sc->o);
    for (int r = 0; r < n; r++) {
        sc->m[r] = -INFINITY;
        sc->l[r] = 0.0f;
    }
    for (int k0 = 0; k0 < T; k0 += j->keys) {
        int nk = min_i(j->keys, T - k0);
        for (int i0 = r0; i0 < r1; i0 += g->mr) {
            int rows = min_i(g->mr, r1 - i0);
            mae_pack_a(sc->qp, q, ldq, 0, i0, rows, 0, hd, g->mr);
            scores(j, sc, rows, k0, nk, lds);
            for (int r = 0; r < rows; r++) {
                int at = i0 - r0 + r;
                float *s = sc->s + (size_t)r * lds;
                float mx = ai->scale_max(s, nk, j->scale);
                float m_new = mx > sc->m[at] ? mx : sc->m[at];
                float alpha = expf(sc->m[at] - m_new);
                float sum = ai->exp_sum(s, nk, m_new);
                sc->l[at] = sc->l[at] * alpha + sum;
                sc->m[at] = m_new;
                ai->scale(sc->o + (size_t)at * hd, hd, alpha);
            }
            mae_pack_a(sc->pp, sc->s, lds, 0, 0, rows, 0, nk, g->mr);
            times_v(j, sc, rows, k0, nk, sc->o + (size_t)(i0 - r0) * hd, (size_t)hd, 1);
        }
    }
    for (int r = 0; r < n; r++) {
        float *o = j->out + ((size_t)b * T + r0 + r) * j->C + (size_t)h * hd;
        memcpy(o, sc->o + (size_t)r * hd, (size_t)hd * sizeof *o);
        ai->scale(o, hd, 1.0f / sc->l[r]);
    }
}

static void attn_task(void *arg, int task, int thread)
{
    const attn_job *j = arg;
    const mae_gemm_isa *g = j->ai->g;
    int bh = task / j->nq, qc = task % j->nq, b = bh / j->H, h = bh % j->H;
    int r0 = qc * j->rows, r1 = min_i(r0 + j->rows, j->T);
    if (r0 >= r1)
        return;
    attn_scratch sc;
    carve(&sc, j->ex->scratch + (size_t)thread * j->ex->scratch_per_thread, g, j->T, j->hd,
          j->keys, j->flash ? j->rows : 0);
    size_t ld = 3 * (size_t)j->C;
    const float *base = j->qkv + (size_t)b * j->T * ld + (size_t)h * j->hd;
    mae_pack_b(sc.kp, base + j->C, ld, 1, 0, j->T, 0, j->hd, g->nr);
    mae_pack_b(sc.vp, base + 2 * (size_t)j->C, ld, 0, 0, j->hd, 0, j->T, g->nr);
    if (j->flash)
        flash_rows(j, &sc, base, b, h, r0, r1);
    else
        exact_rows(j, &sc, base, b, h, r0, r1);
}

void mae_attention_run(const mae_attn_isa *ai, const mae_exec *ex, float *out, float *probs,
                       const float *qkv, int B, int T, int C, int H, int flash_min_t)
{
    const mae_gemm_isa *g = ai->g;
    if (B <= 0 || T <= 0 || H <= 0)
        return;
    attn_job j = { ai, ex, out, probs, qkv, B, T, C, H, C / H, 0, T, 1, T,
                   (float)(1.0 / sqrt((double)(C / H))) };
    int nt = ex->nthreads < 1 ? 1 : ex->nthreads;
    if (!probs && T > flash_min_t) {
        j.flash = 1;
        j.keys = MAE_FLASH_KEYS / g->nr * g->nr;
        if (j.keys > flash_min_t)   /* tests lower the threshold to reach this path */
            j.keys = flash_min_t / g->nr * g->nr > 0 ? flash_min_t / g->nr * g->nr : g->nr;
        j.rows = (int)up(FLASH_ROWS, g->mr);
        j.nq = (T + j.rows - 1) / j.rows;
    } else if (B * H < 2 * nt) {
        /* few heads: split the queries too, in whole micro-panels */
        int panels = (T + g->mr - 1) / g->mr;
        j.nq = min_i(panels, (2 * nt + B * H - 1) / (B * H));
        j.rows = (panels + j.nq - 1) / j.nq * g->mr;
        j.nq = (T + j.rows - 1) / j.rows;
    }
    mae_parallel_for(nt, B * H * j.nq, attn_task, &j);
}
