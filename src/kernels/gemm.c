/* The blocked product driver: the BLIS loops around a tier's micro-kernel, the packing of A and
 * B panels, and the split of the output over threads (see gemm.h). Portable C: the tiers supply
 * only the micro-kernel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cpu.h"
#include "gemm.h"
#include "tiers.h"
#include "../os/os.h"
#include "../util/util.h"

/* ---- block sizes per CPU ----------------------------------------------------------------
 * A tier's mc, kc, nc and prefetch were measured on one machine (gemm_avx512.c: Zen 4). The
 * driver uses them as they are on AMD, and otherwise sizes the blocks from this CPU's caches
 * (see derive); MAE_BLOCKING=mc,kc,nc[,prefetch] or mae_gemm_force_blocking sets them. kc changes
 * the rounding (a k block is one accumulator), so results differ between block sizes exactly as
 * between tiers, never between thread counts. */

static mae_once blocking_once = MAE_ONCE_INIT;
static mae_cpu_caches cpu;
static int env_blk[4], env_state;   /* MAE_BLOCKING: 0 unset, 1 used, -1 malformed (ignored) */
static mae_atomic_long forced[4];        /* mae_gemm_force_blocking; mc 0: none */

static void read_blocking(void)
{
    mae_cpu_read_caches(&cpu);
    const char *e = getenv("MAE_BLOCKING");
    if (!e || !*e)
        return;
    int v[4] = { 0, 0, 0, -1 }, n = 0, used = 0;
    n = sscanf(e, "%d,%d,%d%n,%d%n", &v[0], &v[1], &v[2], &used, &v[3], &used);
    int ok = n >= 3 && e[used] == '\0' && v[0] > 0 && v[0] <= 4096 && v[1] > 0 && v[1] <= 8192 &&
             v[2] > 0 && v[2] <= 8192 && v[3] >= -1 && v[3] <= 1;
    env_state = ok ? 1 : -1;
    if (ok)
        memcpy(env_blk, v, sizeof v);
}

void mae_gemm_force_blocking(int mc, int kc, int nc, int prefetch)
{
    mae_atomic_long_store(&forced[1], kc);
    mae_atomic_long_store(&forced[2], nc);
    mae_atomic_long_store(&forced[3], prefetch);
    mae_atomic_long_store(&forced[0], mc);
}

static int round_to(int v, int m, int lo, int hi)
{
    v = v / m * m;
    return v < lo ? lo : v > hi ? hi : v;
}

/* Sizes from the caches where the tier's own were not measured, after BLIS's analytical model
 * (Low et al., 2016), adapted to this driver: kc such that the B micro-panel (kc x nr), reused
 * by every A micro-panel of the block, keeps two thirds of L1 (8 of 12 ways on an Ice Lake
 * Xeon's 48 KiB L1d: kc 256) with room for the streaming A micro-panel and C tile; mc such that
 * the A block of one k block (mc x kc) takes an eighth of L2, and nc such that the C block
 * (mc x nc), revisited by every k block, takes another eighth (1.25 MiB L2: mc 160, nc 256).
 * The driver packs A for all of K per m block and the per-thread scratch holds a B block and a C
 * copy, so larger blocks cost memory per thread (64 threads) more than they save; the shares
 * leave L2 room for the streaming weights. Not measured on a quiet machine (docs/PERFORMANCE.md). */
static void derive(const mae_gemm_isa *g, mae_gemm_isa *o)
{
    if (cpu.l1d > 0)
        o->kc = round_to(cpu.l1d * 2 / 3 / (g->nr * (int)sizeof(float)), 16, 128, 1024);
    if (cpu.l2 > 0) {
        o->mc = round_to(cpu.l2 / 8 / (o->kc * (int)sizeof(float)), g->mr, g->mr, 100 * g->mr);
        o->nc = round_to(cpu.l2 / 8 / (o->mc * (int)sizeof(float)), g->nr, g->nr, 64 * g->nr);
    }
}

/* g with the block sizes for this CPU; *why says where they came from. */
static mae_gemm_isa tuned(const mae_gemm_isa *g, const char **why)
{
    mae_os_once(&blocking_once, read_blocking);
    mae_gemm_isa o = *g;
    const char *w = "the tier's own (measured on Zen 4 / Zen 3)";
    int f[4];
    for (int i = 0; i < 4; i++)
        f[i] = (int)mae_atomic_long_load(&forced[i]);
    if (f[0] > 0) {
        w = "forced (mae_gemm_force_blocking)";
    } else if (env_state == 1) {
        memcpy(f, env_blk, sizeof f);
        w = "MAE_BLOCKING";
    } else if (strcmp(cpu.vendor, "AuthenticAMD") != 0 && cpu.l1d > 0) {
        derive(g, &o);
        w = env_state == -1 ? "from this CPU's caches; MAE_BLOCKING malformed, ignored" : "from this CPU's caches";
    } else if (env_state == -1) {
        w = "the tier's own; MAE_BLOCKING malformed, ignored";
    }
    if (f[0] > 0) {
        o.mc = round_to(f[0] + g->mr - 1, g->mr, g->mr, 1 << 20);
        o.kc = f[1];
        o.nc = round_to(f[2] + g->nr - 1, g->nr, g->nr, 1 << 20);
        if (f[3] >= 0)
            o.prefetch_b = f[3];
    }
    if (why)
        *why = w;
    return o;
}

static const mae_gemm_isa *tier_gemm(const char *name)
{
#if defined(MAE_OS_X86_64)
    if (strcmp(name, "avx512") == 0)
        return &mae_avx512_gemm;
    if (strcmp(name, "avx2") == 0)
        return &mae_avx2_gemm;
#elif defined(MAE_OS_AARCH64)
    if (strcmp(name, "neon") == 0)
        return &mae_neon_gemm;
#endif
    return NULL;
}

MAE_API mae_status mae_kernels_describe(char *buf, size_t size)
{
    if (!buf || size == 0)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_kernels_describe: %s", !buf ? "buf is NULL" : "size is 0");
    const char *name = mae_kernels_active()->name, *why = "";
    const mae_gemm_isa *g = tier_gemm(name);
    char blk[160] = "plain loops";
    if (g) {
        mae_gemm_isa t = tuned(g, &why);
        snprintf(blk, sizeof blk, "%dx%d micro-kernel, mc %d, kc %d, nc %d, prefetch %s (%s)", t.mr,
                 t.nr, t.mc, t.kc, t.nc, t.prefetch_b ? "next B panel" : "none", why);
    }
    mae_os_once(&blocking_once, read_blocking);
    int n = snprintf(buf, size, "%s: %s; CPU %s family %d model %d, L1d %d KiB (%d-way), L2 %d KiB (%d-way), L3 %d KiB",
                     name, blk, cpu.vendor[0] ? cpu.vendor : "unknown", cpu.family, cpu.model,
                     cpu.l1d >> 10, cpu.l1d_ways, cpu.l2 >> 10, cpu.l2_ways, cpu.l3 >> 10);
    if (n < 0 || (size_t)n >= size)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_kernels_describe: %zu bytes do not hold the %d characters", size, n);
    return MAE_OK;
}

enum { B_PACKED, B_ROWS, B_COLS };   /* prepacked panels; B [K,N] row-major; B stored [N,K] */

typedef struct gemm_job {
    const mae_gemm_isa *g;
    const mae_exec *ex;
    int M, N, K;
    const float *A; size_t lda; int a_trans;
    const float *B; size_t ldb; int b_form;
    float *C;                         /* [M,N], ldc = N */
    const float *bias, *res;
    int act, accumulate;
    int mp, np;                       /* micro-panels of A rows, panels of B columns */
    int nb_m, nb_n;                   /* task grid */
} gemm_job;

/* Three 64-byte aligned areas: A (an mc-row block of all K, or one k block), B block, residual
 * copy. */
size_t mae_gemm_scratch_floats(const mae_gemm_isa *g0, int max_k)
{
    mae_gemm_isa t = tuned(g0, NULL);
    const mae_gemm_isa *g = &t;
    size_t a = (size_t)g->mc * ((size_t)(max_k > 0 ? max_k : 0) + g->kc);
    return a + (size_t)g->kc * g->nc + (size_t)g->mc * g->nc + 64;
}

size_t mae_gemm_backward_scratch_floats(const mae_gemm_isa *g0, int max_k, int max_n)
{
    mae_gemm_isa t = tuned(g0, NULL);
    const mae_gemm_isa *g = &t;
    size_t f = mae_gemm_scratch_floats(g0, max_k);
    size_t b = (size_t)g->mc * g->kc + (size_t)g->kc * (((size_t)max_n + g->nr - 1) / g->nr * g->nr) + 64;
    return f > b ? f : b;
}

size_t mae_gemm_pack_floats(const mae_gemm_isa *g, int N, int K)
{
    size_t panels = ((size_t)N + g->nr - 1) / g->nr;
    return panels * g->nr * (size_t)K;
}

/* d[0, n) = s[0, n), zeros up to width: one row of a panel with its padding. */
static void copy_padded(float *d, const float *s, int n, int width)
{
    memcpy(d, s, (size_t)n * sizeof *d);
    memset(d + n, 0, (size_t)(width - n) * sizeof *d);
}

/* A panel of `width` k-major columns from `rows` stored rows of kc floats: the tier transpose,
 * then zero columns past rows (the edge of A's and of B's panels alike). */
static void transpose_padded(const mae_gemm_isa *g, float *d, int width, const float *src, size_t ld,
                             int rows, int kc)
{
    g->transpose(d, (size_t)width, src, ld, rows, kc);
    if (rows < width)
        for (int k = 0; k < kc; k++)
            memset(d + (size_t)k * width + rows, 0, (size_t)(width - rows) * sizeof *d);
}

void mae_pack_a(const mae_gemm_isa *g, float *dst, const float *A, size_t lda, int trans, int m0, int m,
                int k0, int kc)
{
    int mr = g->mr, full = m / mr * mr, rows = m - full;
    if (trans) {
        /* A stored [K, M]: each row of A is read once, contiguously, for the whole block (far
         * apart rows panel by panel would cost a TLB miss per element) */
        if (full)
            g->pack_panels_t(dst, A + (size_t)k0 * lda + m0, lda, full / mr, kc);
        if (rows) {
            float *d = dst + (size_t)full * kc;
            for (int k = 0; k < kc; k++)
                copy_padded(d + (size_t)k * mr, A + (size_t)(k0 + k) * lda + m0 + full, rows, mr);
        }
        return;
    }
    for (int i0 = 0; i0 < full; i0 += mr)
        g->pack_panel(dst + (size_t)i0 * kc, A + (size_t)(m0 + i0) * lda + k0, lda, kc);
    if (rows) {
        /* the edge panel: its rows transposed in, zero rows below the edge */
        transpose_padded(g, dst + (size_t)full * kc, mr, A + (size_t)(m0 + full) * lda + k0, lda, rows, kc);
    }
}

void mae_pack_b(const mae_gemm_isa *g, float *dst, const float *B, size_t ldb, int trans, int n0, int n,
                int k0, int kc)
{
    int nr = g->nr;
    if (!trans) {
        /* B [K, N] row-major: each row read once for all the panels, nr floats at a time (an
         * element loop here took 6 % of a training step) */
        size_t whole = (size_t)nr * sizeof *dst;
        for (int k = 0; k < kc; k++) {
            const float *src = B + (size_t)(k0 + k) * ldb + n0;
            float *dk = dst + (size_t)k * nr;
            int j0 = 0;
            for (; j0 + nr <= n; j0 += nr)
                memcpy(dk + (size_t)j0 * kc, src + j0, whole);
            if (j0 < n)
                copy_padded(dk + (size_t)j0 * kc, src + j0, n - j0, nr);
        }
        return;
    }
    /* B stored [N, K]: each panel is a transpose of nr stored rows (the weights after every
     * optimizer step, attention backward's V) */
    for (int j0 = 0; j0 < n; j0 += nr)
        transpose_padded(g, dst + (size_t)j0 * kc, nr, B + (size_t)(n0 + j0) * ldb + k0, ldb,
                         mae_min_i(nr, n - j0), kc);
}

void mae_gemm_pack(const mae_gemm_isa *g, float *dst, const float *W, int N, int K)
{
    mae_pack_b(g, dst, W, (size_t)K, 1, 0, N, 0, K);
}

void mae_gemm_unpack(const mae_gemm_isa *g, float *W, const float *packed, int N, int K)
{
    /* each panel back: a [K, nr] block transposed into rows of W */
    for (int j0 = 0; j0 < N; j0 += g->nr)
        g->transpose(W + (size_t)j0 * K, (size_t)K, packed + (size_t)j0 * K, (size_t)g->nr, K,
                     mae_min_i(g->nr, N - j0));
}

/* The epilogue of block [k0, k0+kc) for the tile at (row, col): beta unless it is the first
 * block of a fresh product; bias, activation and residual only on the last block. The residual
 * res [.., ldr] starts at (res_row, res_col) of the output. */
static mae_epi block_epi(const gemm_job *j, int k0, int kc, int row, int col,
                         const float *res, size_t ldr, int res_row, int res_col)
{
    mae_epi e = { NULL, NULL, 0, MAE_ACT_NONE, k0 > 0 || j->accumulate };
    if (k0 + kc >= j->K) {
        e.bias = j->bias ? j->bias + col : NULL;
        e.res = res ? res + (size_t)(row - res_row) * ldr + (col - res_col) : NULL;
        e.ldr = ldr;
        e.act = j->act;
    }
    return e;
}

/* One A block (rows [m0, m0+m), k block [k0, k0+kc), packed in ap) times the B panels of columns
 * [n0, n1); bp(panel index) gives each packed panel. */
static void block_product(const gemm_job *j, const float *ap, const float *bp, size_t bp_stride,
                          int m0, int m, int n0, int n1, int k0, int kc,
                          const float *res, size_t ldr, int res_row0, int res_col0)
{
    const mae_gemm_isa *g = j->g;
    size_t ldc = (size_t)j->N;
    /* a short last panel of A (at most mr/2 rows) goes to the edge kernel, two B panels at a time */
    int tail = m % g->mr, half = g->ukr_half && tail && tail <= g->mr / 2;
    int mfull = half ? m - tail : m;
    size_t panel = (size_t)kc * g->nr, calls = (size_t)(mfull + g->mr - 1) / g->mr;
    size_t slice = calls ? (panel + calls - 1) / calls : panel;
    mae_epi e = block_epi(j, k0, kc, m0, n0, res, ldr, res_row0, res_col0);
    for (int jr = n0; jr < n1; jr += g->nr) {
        const float *b = bp + (size_t)((jr - n0) / g->nr) * bp_stride;
        const float *next = g->prefetch_b && jr + g->nr < n1 ? b + bp_stride : NULL;
        int nr = mae_min_i(g->nr, n1 - jr);
        size_t q = 0;
        for (int ir = 0; ir < mfull; ir += g->mr) {
            /* Each call fetches a slice of the next B panel: prepacked weights come from memory,
             * and the first micro-kernel on a panel would otherwise wait for every line. */
            if (next)
                for (size_t end = q + slice < panel ? q + slice : panel; q < end; q += 16)
                    mae_prefetch(next + q);
            /* the epilogue's pointers follow the tile */
            e.bias = e.bias ? j->bias + jr : NULL;
            e.res = e.res ? res + (size_t)(m0 + ir - res_row0) * ldr + (jr - res_col0) : NULL;
            g->ukr(kc, ap + (size_t)ir * kc, b, j->C + (size_t)(m0 + ir) * ldc + jr, ldc,
                   mae_min_i(g->mr, m - ir), nr, &e);
        }
    }
    if (!half)
        return;
    for (int jr = n0; jr < n1; jr += 2 * g->nr) {
        const float *b = bp + (size_t)((jr - n0) / g->nr) * bp_stride;
        float *c = j->C + (size_t)(m0 + mfull) * ldc + jr;
        e.bias = e.bias ? j->bias + jr : NULL;
        e.res = e.res ? res + (size_t)(m0 + mfull - res_row0) * ldr + (jr - res_col0) : NULL;
        if (jr + g->nr < n1)
            g->ukr_half(kc, ap + (size_t)mfull * kc, b, b + bp_stride, c, ldc, tail,
                        mae_min_i(g->nr, n1 - jr - g->nr), &e);
        else
            g->ukr(kc, ap + (size_t)mfull * kc, b, c, ldc, tail, n1 - jr, &e);
    }
}

/* Rows of the m block starting at ic within [m0, m1): the range is cut into as few blocks of at
 * most mc rows as possible, of nearly equal whole micro-panels, so that no block is a small
 * remainder (a block of a few rows would stream all of B for little work). */
static int block_rows(const mae_gemm_isa *g, int ic, int m0, int m1)
{
    int panels = (m1 - m0 + g->mr - 1) / g->mr, per = g->mc / g->mr;
    int blocks = (panels + per - 1) / per, done = (ic - m0) / g->mr;
    int b = (int)((int64_t)done * blocks / panels);   /* the block ic starts */
    while ((int)((int64_t)panels * (b + 1) / blocks) <= done)
        b++;
    int end = (int)((int64_t)panels * (b + 1) / blocks) * g->mr + m0;
    return mae_min_i(end, m1) - ic;
}

/* Prepacked B (linear): for each m block, pack A for all of K once; then for each column block
 * of at most nc, all k blocks. The partial sums live in C between k blocks, and the C block
 * (mc x nc) stays in L2 across them; a residual that aliases C is copied first. The host's
 * abort is checked per macro-tile (m block x column block), in both drivers: one thread-local
 * load when no call has a hook, an atomic load when one has. */
static void task_packed(const gemm_job *j, float *scratch, int m0, int m1, int n0, int n1)
{
    const mae_gemm_isa *g = j->g;
    size_t ablock = (size_t)g->mc * g->kc;
    int nk = (j->K + g->kc - 1) / g->kc;
    float *ap = mae_align64(scratch);
    float *rc = mae_align64(ap + ablock * (size_t)(nk > 0 ? nk : 1));
    for (int ic = m0, m; ic < m1; ic += m) {
        m = block_rows(g, ic, m0, m1);
        for (int p = 0; p < nk; p++)
            mae_pack_a(g, ap + p * ablock, j->A, j->lda, j->a_trans, ic, m, p * g->kc,
                       mae_min_i(g->kc, j->K - p * g->kc));
        for (int jc = n0; jc < n1; jc += g->nc) {
            if (mae_cancel_tile())   /* the host's abort: at most this tile more per thread */
                return;
            int jn = mae_min_i(jc + g->nc, n1);
            const float *res = j->res;
            size_t ldr = (size_t)j->N;
            int rr = 0, rcol = 0;
            if (res && res == j->C) {
                for (int i = 0; i < m; i++)
                    memcpy(rc + (size_t)i * (jn - jc), j->res + (size_t)(ic + i) * j->N + jc,
                           (size_t)(jn - jc) * sizeof *rc);
                res = rc; ldr = (size_t)(jn - jc); rr = ic; rcol = jc;
            }
            int k0 = 0, p = 0;
            do {
                int kc = mae_min_i(g->kc, j->K - k0);
                const float *bp = j->B + (size_t)(jc / g->nr) * g->nr * j->K + (size_t)k0 * g->nr;
                block_product(j, ap + p * ablock, bp, (size_t)g->nr * j->K, ic, m, jc, jn, k0, kc,
                              res, ldr, rr, rcol);
                k0 += kc;
                p++;
            } while (k0 < j->K);
        }
    }
}

/* B packed here (matmul_nn / matmul_tn), BLIS order: for each column block as wide as the
 * scratch allows (all of a backward product's columns with backward_scratch_floats), for each k
 * block pack B once, then the m blocks, packing A. A is packed once per column block. */
static void task_unpacked(const gemm_job *j, float *scratch, int m0, int m1, int n0, int n1)
{
    const mae_gemm_isa *g = j->g;
    float *ap = mae_align64(scratch);
    float *bp = mae_align64(ap + (size_t)g->mc * g->kc);
    size_t room = j->ex->scratch_per_thread - (size_t)(bp - scratch) - 16;
    int width = (int)(room / (size_t)g->kc / (size_t)g->nr) * g->nr;
    width = width < g->nc ? g->nc : width;   /* scratch_floats guarantees nc columns */
    for (int jc = n0; jc < n1; jc += width) {
        int jn = mae_min_i(jc + width, n1);
        int k0 = 0;
        do {
            int kc = mae_min_i(g->kc, j->K - k0);
            mae_pack_b(g, bp, j->B, j->ldb, j->b_form == B_COLS, jc, jn - jc, k0, kc);
            for (int ic = m0, m; ic < m1; ic += m) {
                if (mae_cancel_tile())
                    return;
                m = block_rows(g, ic, m0, m1);
                mae_pack_a(g, ap, j->A, j->lda, j->a_trans, ic, m, k0, kc);
                block_product(j, ap, bp, (size_t)g->nr * kc, ic, m, jc, jn, k0, kc, NULL, 0, 0, 0);
            }
            k0 += kc;
        } while (k0 < j->K);
    }
}

static void gemm_task(void *arg, int task, int thread)
{
    const gemm_job *j = arg;
    const mae_gemm_isa *g = j->g;
    int tm = task % j->nb_m, tn = task / j->nb_m;
    /* even split of micro-panels and panels: chunk sizes differ by at most one */
    int m0 = (int)((int64_t)j->mp * tm / j->nb_m) * g->mr;
    int m1 = mae_min_i((int)((int64_t)j->mp * (tm + 1) / j->nb_m) * g->mr, j->M);
    int n0 = (int)((int64_t)j->np * tn / j->nb_n) * g->nr;
    int n1 = mae_min_i((int)((int64_t)j->np * (tn + 1) / j->nb_n) * g->nr, j->N);
    if (m0 >= m1 || n0 >= n1)
        return;
    if (mae_measure_mode) {
        /* the products, and the floats this task packs: its rows of A, and B unless prepacked */
        double mv = (double)(m1 - m0) * j->K + (j->b_form != B_PACKED ? (double)(n1 - n0) * j->K : 0.0);
        mae_task_work(thread, 2.0 * (m1 - m0) * (double)(n1 - n0) * j->K, mv);
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    float *scratch = j->ex->scratch + (size_t)thread * j->ex->scratch_per_thread;
    if (j->b_form == B_PACKED)
        task_packed(j, scratch, m0, m1, n0, n1);
    else
        task_unpacked(j, scratch, m0, m1, n0, n1);
}

/* A packed float costs about as much as this many flops of the micro-kernel, and a task this
 * many flops of start-up (claiming it, the first misses); the estimates only steer the choice of
 * partition below. */
#define PACK_COST 8.0
#define TASK_COST 20000.0

/* The time a grid of bm x bn tasks takes on nt lanes, in flops: the lanes claim tasks of near
 * equal size, so ceil(tasks / nt) rounds of the largest task; a task costs its products, its
 * packing (a column split packs each A row once per column range; with B packed here, a row
 * split packs B once per row range; A stored transposed is packed by plain copies, at half the
 * cost of the transposing pack) and a fixed start-up. */
static double grid_cost(const gemm_job *j, int bm, int bn, int nt)
{
    const mae_gemm_isa *g = j->g;
    double K = j->K, apack = j->a_trans ? 1.0 : 2.0;
    double bpack = j->b_form == B_PACKED ? 0.0 : j->b_form == B_COLS ? 2.0 : 1.0;
    double rows = (double)((j->mp + bm - 1) / bm) * g->mr, cols = (double)((j->np + bn - 1) / bn) * g->nr;
    rows = rows < j->M ? rows : j->M;
    cols = cols < j->N ? cols : j->N;
    double task = 2.0 * rows * cols * K + PACK_COST * K * (apack * rows + bpack * cols) + TASK_COST;
    return (double)((bm * bn + nt - 1) / nt) * task;
}

/* The task grid: nb_m row ranges x nb_n column ranges of whole micro-panels and panels. The
 * split measured best on 2 threads (Zen 4, paired runs) is one task per thread: row ranges when
 * there are at least 8 micro-panels of rows per thread (each thread packs only its rows of A and
 * the threads share the weight panels in L3), else column ranges; the backward products, which
 * pack B themselves, by columns when A is the cheaper operand for every thread to pack (N > M
 * for A stored transposed, N > 2M otherwise). On many threads that split leaves lanes idle (24
 * column panels on 16 threads: 0.75), so the grid of up to 4 tasks per thread with the least
 * grid_cost replaces it when it is more than 3 % faster by that estimate (the estimate cannot
 * tell the measured differences of a few per cent between the splits at 2 threads). On one
 * thread: one task. The split changes which thread computes an element, never how. */
static void choose_grid(gemm_job *j, int nt)
{
    j->nb_m = j->nb_n = 1;
    if (nt <= 1)
        return;
    int cols = j->b_form != B_PACKED && j->np >= 8 * nt && j->N > (j->a_trans ? 1 : 2) * j->M;
    if (j->mp >= 8 * nt && !cols) {
        j->nb_m = nt;
    } else {
        j->nb_n = mae_min_i(j->np, nt);
        if (j->nb_n < nt)
            j->nb_m = mae_min_i(j->mp, (nt + j->nb_n - 1) / j->nb_n);
    }
    double keep = grid_cost(j, j->nb_m, j->nb_n, nt), best = keep;
    int bm_best = j->nb_m, bn_best = j->nb_n, most = 4 * nt;
    for (int bm = 1; bm <= j->mp && bm <= most; bm++)
        for (int bn = 1; bn <= j->np && bm * bn <= most; bn++) {
            double c = grid_cost(j, bm, bn, nt);
            if (c < best * (1.0 - 1e-9) || (c <= best * (1.0 + 1e-9) && bm * bn < bm_best * bn_best)) {
                best = c;
                bm_best = bm;
                bn_best = bn;
            }
        }
    if (best < 0.97 * keep) {
        j->nb_m = bm_best;
        j->nb_n = bn_best;
    }
}

static void run(gemm_job *j)
{
    if (j->M <= 0 || j->N <= 0)
        return;
    mae_gemm_isa t = tuned(j->g, NULL);   /* this CPU's block sizes */
    j->g = &t;
    j->mp = (j->M + j->g->mr - 1) / j->g->mr;
    j->np = (j->N + j->g->nr - 1) / j->g->nr;
    choose_grid(j, j->ex->nthreads < 1 ? 1 : j->ex->nthreads);
    const char *op = j->b_form == B_PACKED ? "linear" : j->a_trans ? "matmul_tn" : "matmul_nn";
    mae_parallel_for_op(j->ex, op, j->nb_m * j->nb_n, gemm_task, j);
}

void mae_gemm_linear(const mae_gemm_isa *g, const mae_exec *ex, float *out, const float *A,
                     const float *wp, const float *bias, const float *residual,
                     int M, int N, int K, int act)
{
    gemm_job j = { g, ex, M, N, K, A, (size_t)K, 0, wp, 0, B_PACKED, out, bias, residual, act, 0,
                   0, 0, 0, 0 };
    run(&j);
}

void mae_gemm_nn(const mae_gemm_isa *g, const mae_exec *ex, float *C, const float *A,
                 const float *B, int M, int N, int K, int accumulate)
{
    gemm_job j = { g, ex, M, N, K, A, (size_t)K, 0, B, (size_t)N, B_ROWS, C, NULL, NULL,
                   MAE_ACT_NONE, accumulate, 0, 0, 0, 0 };
    run(&j);
}

void mae_gemm_tn(const mae_gemm_isa *g, const mae_exec *ex, float *C, const float *A,
                 const float *B, int M, int N, int K, int accumulate)
{
    gemm_job j = { g, ex, M, N, K, A, (size_t)M, 1, B, (size_t)N, B_ROWS, C, NULL, NULL,
                   MAE_ACT_NONE, accumulate, 0, 0, 0, 0 };
    run(&j);
}
