/* bf16 linear layers: the rounding, the reference that defines their results (set in the scalar
 * table, so every machine runs it), and the portable driver of the fast tiers. See gemm_bf16.h
 * and docs/PRECISION.md.
 *
 * The reference holds W' (W rounded to bf16) transposed, [K, N]: half the memory of the fp32
 * weight. It widens each W' value to fp32 (exact: a bf16 is the top half of a float) and sums
 * the products a'·w' in k order in fp32. Each product of two bf16 values has at most 16
 * significant bits, so it is exact in fp32: the only rounding after the inputs' is the sum's,
 * and a fast tier that sums the same products in another order stays within a bound fixed by K
 * (tests/test_bf16.c). */
#include <assert.h>
#include <string.h>
#include "gemm_bf16.h"
#include "tiers.h"
#include "../util/util.h"

uint16_t mae_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0)
        return (uint16_t)((u >> 16) & 0x8000u);   /* zero or subnormal: a signed zero */
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);   /* NaN: kept, made quiet */
    u += 0x7fffu + ((u >> 16) & 1u);              /* to nearest, ties to even; may carry to inf */
    return (uint16_t)(u >> 16);
}

float mae_bf16_float(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ---- the reference ------------------------------------------------------------------------ */

size_t mae_bf16_ref_pack_size(int N, int K)
{
    return (size_t)N * (size_t)K;
}

void mae_bf16_ref_pack(uint16_t *dst, const float *W, int N, int K)
{
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k++)
            dst[(size_t)k * N + j] = mae_bf16_round(W[(size_t)j * K + k]);
}

void mae_bf16_ref_unpack(float *W, const uint16_t *packed, int N, int K)
{
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k++)
            W[(size_t)j * K + k] = mae_bf16_float(packed[(size_t)k * N + j]);
}

#define REF_ROWS 4      /* rows per task */
#define REF_COLS 256    /* columns summed at once: one accumulator each, vectorizable over j */

typedef struct ref_args {
    float *out; const float *A; const uint16_t *W; const float *bias, *res;
    int M, N, K, act;
} ref_args;

static void ref_task(void *p, int task, int thread)
{
    const ref_args *r = p;
    (void)thread;
    float acc[REF_COLS];
    int m1 = (task + 1) * REF_ROWS < r->M ? (task + 1) * REF_ROWS : r->M;
    for (int m = task * REF_ROWS; m < m1; m++) {
        const float *x = r->A + (size_t)m * r->K;
        for (int j0 = 0; j0 < r->N; j0 += REF_COLS) {
            int nc = r->N - j0 < REF_COLS ? r->N - j0 : REF_COLS;
            for (int j = 0; j < nc; j++)
                acc[j] = 0.0f;
            for (int k = 0; k < r->K; k++) {
                float a = mae_bf16_float(mae_bf16_round(x[k]));
                const uint16_t *w = r->W + (size_t)k * r->N + j0;
                for (int j = 0; j < nc; j++)
                    acc[j] += a * mae_bf16_float(w[j]);   /* exact product, one rounding */
            }
            for (int j = 0; j < nc; j++) {
                size_t o = (size_t)m * r->N + j0 + j;
                float v = acc[j];
                if (r->bias)
                    v = v + r->bias[j0 + j];
                if (r->act == MAE_ACT_GELU)
                    mae_kernels_scalar.gelu(&v, &v, 1);
                if (r->res)
                    v = v + r->res[o];
                r->out[o] = v;
            }
        }
    }
}

void mae_bf16_ref_linear(const mae_exec *ex, float *out, const float *A, const uint16_t *wp,
                         const float *bias, const float *residual, int M, int N, int K, int act)
{
    ref_args r = { out, A, wp, bias, residual, M, N, K, act };
    mae_parallel_for(ex, (M + REF_ROWS - 1) / REF_ROWS, ref_task, &r);
}

MAE_BF16_VIEW(ref_view, mae_bf16_ref_pack_size, mae_bf16_ref_pack, mae_bf16_ref_unpack,
              mae_bf16_ref_linear)

/* ---- the fast tiers' driver --------------------------------------------------------------- */

enum { TILE_MAX = 1024, ROW_MAX = 64 };   /* mr*nr and nr bounds of the tiers' tiles */

static int pairs(int K) { return (K + 1) / 2; }
static int tile_mr(const mae_bf16_isa *g) { return g->wide ? g->wide->mr : g->mr; }
static int tile_nr(const mae_bf16_isa *g) { return g->wide ? g->wide->nr : g->nr; }
static int block_mc(const mae_bf16_isa *g) { return g->wide ? 4 * g->wide->mr : g->mc; }

size_t mae_bf16_isa_pack_size(const mae_bf16_isa *g, int N, int K)
{
    size_t nr = (size_t)tile_nr(g), panels = ((size_t)N + nr - 1) / nr;
    return panels * nr * 2 * (size_t)pairs(K);
}

void mae_bf16_isa_pack(const mae_bf16_isa *g, uint16_t *dst, const float *W, int N, int K)
{
    size_t kp = (size_t)pairs(K), nr = (size_t)tile_nr(g);
    size_t panels = ((size_t)N + nr - 1) / nr;
    for (size_t p = 0; p < panels; p++) {
        uint16_t *d = dst + p * nr * 2 * kp;
        for (size_t kk = 0; kk < kp; kk++)
            for (size_t j = 0; j < nr; j++)
                for (size_t s = 0; s < 2; s++) {
                    size_t col = p * nr + j, k = 2 * kk + s;
                    d[(kk * nr + j) * 2 + s] = col < (size_t)N && k < (size_t)K
                        ? mae_bf16_round(W[col * K + k]) : 0;
                }
    }
}

void mae_bf16_isa_unpack(const mae_bf16_isa *g, float *W, const uint16_t *packed, int N, int K)
{
    size_t kp = (size_t)pairs(K), nr = (size_t)tile_nr(g);
    for (size_t col = 0; col < (size_t)N; col++) {
        const uint16_t *d = packed + col / nr * nr * 2 * kp;
        size_t j = col % nr;
        for (size_t k = 0; k < (size_t)K; k++)
            W[col * K + k] = mae_bf16_float(d[(k / 2 * nr + j) * 2 + k % 2]);
    }
}

size_t mae_bf16_isa_scratch_floats(const mae_bf16_isa *g, int K)
{
    size_t kp = (size_t)pairs(K);
    if (g->wide)   /* the A block and one B panel, widened to fp32, each 64-byte aligned */
        return 2 * kp * ((size_t)block_mc(g) + (size_t)tile_nr(g)) + 32;
    return (size_t)g->mc * kp + 16;   /* the packed A block, 64-byte aligned */
}

/* Rows [m0, m0+m) of A rounded to bf16 (and widened back: exact) into the fp32 tier's mr-row
 * k-major micro-panels, over 2kp columns; zero past M and K. */
static void pack_a_wide(const mae_bf16_isa *g, float *dst, const float *A, int K, int m0, int m)
{
    size_t k2 = 2 * (size_t)pairs(K), mr = (size_t)tile_mr(g);
    for (int q = 0; q * (int)mr < m; q++) {
        float *d = dst + (size_t)q * mr * k2;
        for (size_t i = 0; i < mr; i++) {
            int row = q * (int)mr + (int)i;
            const float *a = A + (size_t)(m0 + row) * K;
            for (size_t k = 0; k < k2; k++)
                d[k * mr + i] = row < m && k < (size_t)K ? mae_bf16_float(mae_bf16_round(a[k])) : 0.0f;
        }
    }
}

/* One packed bf16 B panel (pairs) widened to the fp32 tier's k-major panel b[k*nr + j]. */
static void widen_b(float *dst, const uint16_t *src, size_t kp, size_t nr)
{
    for (size_t kk = 0; kk < kp; kk++)
        for (size_t j = 0; j < nr; j++) {
            dst[(2 * kk) * nr + j] = mae_bf16_float(src[(kk * nr + j) * 2]);
            dst[(2 * kk + 1) * nr + j] = mae_bf16_float(src[(kk * nr + j) * 2 + 1]);
        }
}

/* Rows [m0, m0+m) of A rounded into mr-row micro-panels of pairs, zero past M and K. */
static void pack_a(const mae_bf16_isa *g, uint32_t *dst, const float *A, int K, int m0, int m)
{
    size_t kp = (size_t)pairs(K), mr = (size_t)g->mr;
    uint16_t *d16 = (uint16_t *)dst;
    for (int q = 0; q * g->mr < m; q++) {
        uint16_t *d = d16 + (size_t)q * mr * 2 * kp;
        for (size_t i = 0; i < mr; i++) {
            int row = q * g->mr + (int)i;
            const float *a = A + (size_t)(m0 + row) * K;
            for (size_t k = 0; k < 2 * kp; k++)
                d[(k / 2 * mr + i) * 2 + k % 2] =
                    row < m && k < (size_t)K ? mae_bf16_round(a[k]) : 0;
        }
    }
}

typedef struct drv_args {
    const mae_bf16_isa *g; const mae_exec *ex;
    float *out; const float *A; const uint16_t *W; const float *bias, *res;
    int M, N, K, act;
    int mc;                  /* rows per row block */
    int mb, cparts, np;      /* row blocks, column parts, B panels */
} drv_args;

/* One tile's epilogue, row by row through a copy (so that a residual aliasing out is read
 * before the row is written): x = acc (+ bias) (GELU) (+ residual). */
static void epilogue(const drv_args *r, const float *t, int row, int col, int mr, int nr)
{
    const mae_bf16_isa *g = r->g;
    float x[ROW_MAX];
    for (int i = 0; i < mr; i++) {
        const float *ti = t + (size_t)i * g->nr;
        float *o = r->out + (size_t)(row + i) * r->N + col;
        if (r->bias)
            g->add(x, ti, r->bias + col, (size_t)nr);
        else
            memcpy(x, ti, (size_t)nr * sizeof *x);
        if (r->act == MAE_ACT_GELU)
            g->gelu(x, x, (size_t)nr);
        if (r->res)
            g->add(o, x, r->res + (size_t)(row + i) * r->N + col, (size_t)nr);
        else
            memcpy(o, x, (size_t)nr * sizeof *o);
    }
}

/* Task (row block, column part): pack the block's rows of A, then every micro-tile of it. */
static float *align_up(float *p)
{
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* The wide path: the fp32 tier's micro-kernel over all of K at once (one accumulator per
 * element, no partial sums) with its own epilogue (bias, GELU, residual; a residual aliasing
 * out is read by the tile before it writes it). */
static void wide_task(const drv_args *r, int m0, int m, int p0, int p1, float *s)
{
    const mae_bf16_isa *g = r->g;
    const mae_gemm_isa *w = g->wide;
    size_t kp = (size_t)pairs(r->K), k2 = 2 * kp, nr = (size_t)w->nr;
    float *a = align_up(s), *b = align_up(a + (size_t)r->mc * k2);
    pack_a_wide(g, a, r->A, r->K, m0, m);
    size_t ldc = (size_t)r->N;
    for (int pb = p0; pb < p1; pb++) {
        widen_b(b, r->W + (size_t)pb * nr * k2, kp, nr);
        int col = pb * (int)nr, ncols = r->N - col < (int)nr ? r->N - col : (int)nr;
        for (int i0 = 0; i0 < m; i0 += w->mr) {
            int row = m0 + i0;
            mae_epi e = { r->bias ? r->bias + col : NULL,
                          r->res ? r->res + (size_t)row * ldc + col : NULL, ldc, r->act, 0 };
            w->ukr((int)k2, a + (size_t)i0 * k2, b, r->out + (size_t)row * ldc + col, ldc,
                   m - i0 < w->mr ? m - i0 : w->mr, ncols, &e);
        }
    }
}

static void drv_task(void *p, int task, int thread)
{
    const drv_args *r = p;
    const mae_bf16_isa *g = r->g;
    int rb = task / r->cparts, cp = task % r->cparts, mc = r->mc;
    int m0 = rb * mc, m = r->M - m0 < mc ? r->M - m0 : mc;
    int p0 = (int)((int64_t)r->np * cp / r->cparts), p1 = (int)((int64_t)r->np * (cp + 1) / r->cparts);
    size_t kp = (size_t)pairs(r->K);
    assert(r->ex->scratch_per_thread >= mae_bf16_isa_scratch_floats(g, r->K) &&
           (!g->wide || r->ex->scratch_per_thread >= 2 * kp * (size_t)(r->mc + tile_nr(g)) + 32));
    float *s = r->ex->scratch + (size_t)thread * r->ex->scratch_per_thread;
    if (g->wide) {
        wide_task(r, m0, m, p0, p1, s);
        return;
    }
    uint32_t *a = (uint32_t *)align_up(s);
    pack_a(g, a, r->A, r->K, m0, m);
    float t[TILE_MAX];
    for (int pb = p0; pb < p1; pb++) {
        const uint32_t *b = (const uint32_t *)(r->W + (size_t)pb * g->nr * 2 * kp);
        int col = pb * g->nr, nr = r->N - col < g->nr ? r->N - col : g->nr;
        for (int i0 = 0; i0 < m; i0 += g->mr) {
            g->ukr((int)kp, a + (size_t)i0 * kp, b, t);
            epilogue(r, t, m0 + i0, col, m - i0 < g->mr ? m - i0 : g->mr, nr);
        }
    }
}

void mae_bf16_isa_linear(const mae_bf16_isa *g, const mae_exec *ex, float *out, const float *A,
                         const uint16_t *wp, const float *bias, const float *residual,
                         int M, int N, int K, int act)
{
    assert(g->wide || (g->mr * g->nr <= TILE_MAX && g->nr <= ROW_MAX && g->mc % g->mr == 0));
    if (M <= 0 || N <= 0)
        return;
    drv_args r = { g, ex, out, A, wp, bias, residual, M, N, K, act, block_mc(g), 0, 1, 0 };
    if (g->wide) {
        /* as many rows per block as the scratch holds (the fp32 tier's scratch is much larger
         * than 4 panels): each B panel is widened once per row block, so fewer blocks widen
         * less. The block size changes no result (whole-K sums per element). */
        size_t k2 = 2 * (size_t)pairs(K), mr = (size_t)tile_mr(g);
        size_t fixed = k2 * (size_t)tile_nr(g) + 32, rows_needed = ((size_t)M + mr - 1) / mr;
        size_t fit = ex->scratch_per_thread > fixed ? (ex->scratch_per_thread - fixed) / (k2 * mr) : 0;
        fit = fit < rows_needed ? fit : rows_needed;
        if (fit * mr > (size_t)r.mc)
            r.mc = (int)(fit * mr);
    }
    r.mb = (M + r.mc - 1) / r.mc;
    r.np = (N + tile_nr(g) - 1) / tile_nr(g);
    /* Enough tasks for the threads: column parts when the row blocks are few. Every element is
     * computed by the same operations whatever the split (whole-K sums in a fixed order, zero
     * padding, a per-element epilogue), so the split may follow the thread count and the result
     * still does not. */
    int want = 2 * (ex->nthreads > 0 ? ex->nthreads : 1);
    if (r.mb < want)
        r.cparts = (want + r.mb - 1) / r.mb < r.np ? (want + r.mb - 1) / r.mb : r.np;
    mae_parallel_for(ex, r.mb * r.cparts, drv_task, &r);
}

/* ---- the fp32 tiers' wide families, and the choice per table ------------------------------ */

#if defined(MAE_OS_X86_64)
static const mae_bf16_isa wide_avx2 = { .wide = &mae_avx2_gemm };
static const mae_bf16_isa wide_avx512 = { .wide = &mae_avx512_gemm };
MAE_BF16_ENTRIES(mae_bf16_wide_avx2, &wide_avx2)
MAE_BF16_ENTRIES(mae_bf16_wide_avx512, &wide_avx512)
#elif defined(MAE_OS_AARCH64)
static const mae_bf16_isa wide_neon = { .wide = &mae_neon_gemm };
MAE_BF16_ENTRIES(mae_bf16_wide_neon, &wide_neon)
#endif

void mae_bf16_set_wide(mae_kernels *k, const mae_kernels *tier)
{
#if defined(MAE_OS_X86_64)
    if (tier == &mae_kernels_avx2)
        mae_bf16_wide_avx2_set(k);
    if (tier == &mae_kernels_avx512)
        mae_bf16_wide_avx512_set(k);
#elif defined(MAE_OS_AARCH64)
    if (tier == &mae_kernels_neon)
        mae_bf16_wide_neon_set(k);
#endif
    (void)k; (void)tier;
}

void mae_bf16_set_view(mae_kernels *view, const mae_kernels *tier)
{
#if defined(MAE_OS_X86_64)
    if (tier == &mae_kernels_avx2) {
        mae_bf16_wide_avx2_view(view);
        return;
    }
    if (tier == &mae_kernels_avx512) {
        mae_bf16_wide_avx512_view(view);
        return;
    }
    if (tier == &mae_kernels_avx512_bf16) {
        mae_bf16_avx512bf16_view(view);
        return;
    }
#elif defined(MAE_OS_AARCH64)
    if (tier == &mae_kernels_neon) {
        mae_bf16_wide_neon_view(view);
        return;
    }
    if (tier == &mae_kernels_neon_bf16) {
        mae_bf16_neonbf16_view(view);
        return;
    }
#endif
    ref_view(view);
}
