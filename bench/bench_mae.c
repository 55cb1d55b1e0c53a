/* libmae's benchmark (make bench; not a timed test). Prints, for the ViT-B/16 MAE at 224x224:
 *   - the FMA peak of this machine per tier and thread count (an FMA loop, measured here);
 *   - GFLOP/s and % of peak of every linear shape (batch 1 and 8) per kernel tier, next to
 *     OpenBLAS's sgemm on the same product when built with it (MAE_BENCH_OPENBLAS);
 *   - the bf16 linears (batch 1 and 8) as a bf16 model runs them, % of the bf16 peak (vdpbf16ps,
 *     measured where the CPU has it) or of the fp32 one, paired with the fp32 linear;
 *   - the training step's backward products at batch 8 (dX = dY·W, dW = dYᵀ·X), likewise;
 *   - attention per (batch, head) for the encoder and decoder shapes, next to OpenBLAS doing one
 *     sgemm per (image, head) for Q·Kᵀ and for P·V;
 *   - end to end: forward images/s and latency (batch 1 and 8, 1 and 2 threads), encoder-only
 *     features with mask 0, the visible-only vs all-tokens encoder ratio, a training step, and
 *     the peak RSS of a forward-only process against the size of the weights;
 *   - loading: the peak RSS while mae_model_load reads a ViT-B file saved as F32 and as F16,
 *     as float32 and straight into bf16 (mae_model_load_with), and load + convert to bf16,
 *     against the RSS of the loaded model (each in a fresh process).
 * Times are medians of several runs; the kernels and OpenBLAS are measured in turns. The
 * machine is shared, so quote medians and ratios.
 *
 *   bench_mae [--quick] [--threads N] [--load-only | --bf16-only]   (the peaks and the bf16 linears only)
 *   (--rss-forward B, --rss-load PATH [f32|bf16|convert]: internal, the child processes of the
 *   memory figures) */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "mae.h"
#include "../src/kernels/kernels.h"
#include "../src/util/util.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#ifdef MAE_BENCH_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int n);
#endif

static int quick;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds per call of fn(arg): `runs` runs, each repeating the call for at least
 * min_secs (after one warm-up call). */
typedef void (*bench_fn)(void *arg);
static double median_time(bench_fn fn, void *arg, int runs, double min_secs)
{
    double t[32];
    if (runs > 32)
        runs = 32;
    fn(arg);
    for (int r = 0; r < runs; r++) {
        int n = 0;
        double t0 = now(), el;
        do {
            fn(arg);
            n++;
            el = now() - t0;
        } while (el < min_secs);
        t[r] = el / n;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    return t[runs / 2];
}

/* Seconds per call of n functions measured in turns: `runs` rounds in which each function runs
 * untimed for WARM_SECS, then timed for at least min_secs. A slow spell of the shared machine
 * then hits every function, not just the one measured at that moment. The untimed part lets the
 * other runtime's idle threads stop spinning: OpenBLAS's pthreads and OpenMP's workers busy-wait
 * after a call, and on two cores that took a core from whichever ran next (paired ratios then
 * read 0.4-1.8 for one shape). med[i] is the median of function i; ratio (if not NULL) the
 * median over rounds of t[den] / t[num], a paired ratio. */
#define WARM_SECS 0.1
#define MAX_FNS 4
static void median_times(int n, bench_fn const *fn, void *const *arg, int runs, double min_secs,
                         double *med, int num, int den, double *ratio)
{
    double t[MAX_FNS][32], r[32];
    if (runs > 32)
        runs = 32;
    for (int k = 0; k < runs; k++)
        for (int i = 0; i < n; i++) {
            int calls = 0;
            double t0 = now(), el;
            do
                fn[i](arg[i]);
            while (now() - t0 < WARM_SECS);
            t0 = now();
            do {
                fn[i](arg[i]);
                calls++;
                el = now() - t0;
            } while (el < min_secs);
            t[i][k] = el / calls;
        }
    if (ratio) {
        for (int k = 0; k < runs; k++)
            r[k] = t[den][k] / t[num][k];
        qsort(r, (size_t)runs, sizeof *r, cmp_double);
        *ratio = r[runs / 2];
    }
    for (int i = 0; i < n; i++) {
        qsort(t[i], (size_t)runs, sizeof *t[i], cmp_double);
        med[i] = t[i][runs / 2];
    }
}

static float *rnd(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench: out of memory\n");
        exit(2);
    }
    uint64_t s = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        p[i] = scale * (float)((double)(s >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
    }
    return p;
}

/* ---- the FMA peak --------------------------------------------------------------------------- */

typedef struct peak_arg { const char *tier; double secs, gflops; float sink; } peak_arg;

#if defined(__x86_64__)
/* Twelve independent FMA chains in named variables (so they stay in registers), per tier. */
#define FMA12(FMA) a0 = FMA(a0, b, c); a1 = FMA(a1, b, c); a2 = FMA(a2, b, c); a3 = FMA(a3, b, c); \
    a4 = FMA(a4, b, c); a5 = FMA(a5, b, c); a6 = FMA(a6, b, c); a7 = FMA(a7, b, c); \
    a8 = FMA(a8, b, c); a9 = FMA(a9, b, c); a10 = FMA(a10, b, c); a11 = FMA(a11, b, c);
#define FMA_LOOP(T, SET1, FMA, ADD, LANES) do { \
    T b = SET1(0.999f), c = SET1(0.001f), a0 = SET1(0), a1 = SET1(1), a2 = SET1(2), a3 = SET1(3); \
    T a4 = SET1(4), a5 = SET1(5), a6 = SET1(6), a7 = SET1(7), a8 = SET1(8), a9 = SET1(9); \
    T a10 = SET1(10), a11 = SET1(11); \
    long n = 0; \
    double t0 = now(), el; \
    do { \
        for (int it = 0; it < 100000; it++) { FMA12(FMA) } \
        n += 100000; \
        el = now() - t0; \
    } while (el < p->secs); \
    T s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7))); \
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11))); \
    float o[LANES]; \
    memcpy(o, &s, sizeof o); \
    p->gflops = (double)n * 12 * 2 * LANES / el / 1e9; \
    p->sink = o[0]; } while (0)

__attribute__((target("avx2,fma"))) static void fma_avx2(peak_arg *p)
{
    FMA_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8);
}
__attribute__((target("avx512f"))) static void fma_avx512(peak_arg *p)
{
    FMA_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
/* vdpbf16ps: per lane two bf16 products added to an fp32 sum, 4 flops, 64 per instruction
 * (twice an fp32 FMA's 32). Twelve chains, as above; the operands 1 + 2^-7 keep the sums normal. */
#define DP12 a0 = _mm512_dpbf16_ps(a0, x, y); a1 = _mm512_dpbf16_ps(a1, x, y); \
    a2 = _mm512_dpbf16_ps(a2, x, y); a3 = _mm512_dpbf16_ps(a3, x, y); \
    a4 = _mm512_dpbf16_ps(a4, x, y); a5 = _mm512_dpbf16_ps(a5, x, y); \
    a6 = _mm512_dpbf16_ps(a6, x, y); a7 = _mm512_dpbf16_ps(a7, x, y); \
    a8 = _mm512_dpbf16_ps(a8, x, y); a9 = _mm512_dpbf16_ps(a9, x, y); \
    a10 = _mm512_dpbf16_ps(a10, x, y); a11 = _mm512_dpbf16_ps(a11, x, y);
__attribute__((target("avx512f,avx512bf16"))) static void dp_avx512bf16(peak_arg *p)
{
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f813f81), y = (__m512bh)_mm512_set1_epi32(0x3f7f3f7f);
    __m512 a0 = _mm512_set1_ps(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    __m512 a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    long n = 0;
    double t0 = now(), el;
    do {
        for (int it = 0; it < 100000; it++) { DP12 }
        n += 100000;
        el = now() - t0;
    } while (el < p->secs);
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    float o[16];
    memcpy(o, &s, sizeof o);
    p->gflops = (double)n * 12 * 64 / el / 1e9;
    p->sink = o[0];
}
#endif

static void *peak_thread(void *arg)
{
    peak_arg *p = arg;
    p->gflops = 0;
#if defined(__x86_64__)
    if (strcmp(p->tier, "avx2") == 0)
        fma_avx2(p);
    else if (strcmp(p->tier, "avx512") == 0)
        fma_avx512(p);
#if defined(__GNUC__)
    else if (strcmp(p->tier, "avx512_bf16") == 0)
        dp_avx512bf16(p);
#endif
#endif
    return NULL;
}

/* Sum over nthreads threads running the FMA loop at once; 0 if unknown for the tier. */
static double fma_peak(const char *tier, int nthreads)
{
    pthread_t th[8];
    peak_arg pa[8];
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double sum = 0;
        for (int i = 0; i < nthreads; i++) {
            pa[i].tier = tier;
            pa[i].secs = 0.2;
            pthread_create(&th[i], NULL, peak_thread, &pa[i]);
        }
        for (int i = 0; i < nthreads; i++) {
            pthread_join(th[i], NULL);
            sum += pa[i].gflops;
        }
        if (sum > best)
            best = sum;
    }
    return best;
}

/* ---- matmul --------------------------------------------------------------------------------- */

typedef struct mm_case {
    const mae_kernels *k;
    mae_exec ex;
    int M, N, K;
    const float *A, *W, *wp, *bias;
    float *out;
    int blas_threads;
} mm_case;

static void run_linear(void *arg)
{
    mm_case *c = arg;
    c->k->linear(&c->ex, c->out, c->A, c->wp, c->bias, NULL, c->M, c->N, c->K, MAE_ACT_NONE);
}

#ifdef MAE_BENCH_OPENBLAS
static void run_sgemm(void *arg)
{
    mm_case *c = arg;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->M, c->N, c->K, 1.0f, c->A, c->K,
                c->W, c->K, 0.0f, c->out, c->N);
}
#endif

static mae_exec make_exec(const mae_kernels *k, int nthreads, int max_t, int max_c)
{
    mae_exec ex = { 0 };
    ex.nthreads = nthreads;
    ex.scratch_per_thread = k->scratch_floats(max_t, max_c);
    ex.scratch = mae_alloc(ex.scratch_per_thread * nthreads * sizeof(float) + 64);
    return ex;
}

typedef struct shape { const char *name; int m1, N, K; } shape;   /* M = m1 * batch */

static const shape vit_shapes[] = {
    { "patch_embed", 196, 768, 768 },
    { "enc.qkv", 50, 2304, 768 },
    { "enc.proj", 50, 768, 768 },
    { "enc.fc1", 50, 3072, 768 },
    { "enc.fc2", 50, 768, 3072 },
    { "decoder_embed", 50, 512, 768 },
    { "dec.qkv", 197, 1536, 512 },
    { "dec.proj", 197, 512, 512 },
    { "dec.fc1", 197, 2048, 512 },
    { "dec.fc2", 197, 512, 2048 },
    { "decoder_pred", 196, 768, 512 },
};
#define NSHAPES (sizeof vit_shapes / sizeof vit_shapes[0])

static const char *tier_names[] = { "scalar", "avx2", "avx512", "neon" };

static int count_bars(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '|';
    return n;
}

/* A table's header: the lead columns, one column per tier this CPU runs, the trailing columns
 * ("| a | b |" style strings; trail may be empty). */
static void print_header(const char *lead, const char *trail)
{
    int cols = count_bars(lead) - 1 + count_bars(trail);
    printf("%s", lead);
    for (int t = 1; t < 4; t++)
        if (mae_kernels_get(tier_names[t])) {
            printf(" %s |", tier_names[t]);
            cols++;
        }
    printf("%s\n|", trail);
    for (int i = 0; i < cols; i++)
        printf("---|");
    printf("\n");
}

/* One table row's contenders: the SIMD tiers this CPU runs, then OpenBLAS when built with it. */
typedef struct contenders {
    bench_fn fn[MAX_FNS];
    void *arg[MAX_FNS];
    int tier[MAX_FNS];   /* index into tier_names; 0 for OpenBLAS */
    int n, ntiers;
} contenders;

static void add_contender(contenders *c, bench_fn fn, void *arg, int tier)
{
    c->fn[c->n] = fn;
    c->arg[c->n] = arg;
    c->tier[c->n++] = tier;
    c->ntiers += tier > 0;
}

/* Measures a row's contenders in turns and prints their cells: GFLOP/s and % of the tier's
 * peak per tier, then OpenBLAS's GFLOP/s and, if `ratio`, libmae/OpenBLAS for the active table
 * (the median of the paired per-round ratios). */
static void print_cells(const contenders *c, double flop, int nt, const double *peak, int ratio)
{
    double med[MAX_FNS], r = 0;
    int active = 0, blas = c->n > c->ntiers;
    for (int i = 0; i < c->ntiers; i++)
        if (strcmp(tier_names[c->tier[i]], mae_kernels_name()) == 0)
            active = i;
    median_times(c->n, c->fn, c->arg, quick ? 3 : 7, 0.05, med, active, c->n - 1,
                 blas && ratio ? &r : NULL);
    for (int i = 0; i < c->ntiers; i++) {
        double g = flop / med[i] / 1e9, pk = peak[c->tier[i] * 8 + nt];
        printf(" %.1f (%.0f%%) |", g, pk > 0 ? 100 * g / pk : 0);
    }
    if (blas)
        printf(ratio ? " %.1f | %.2f |" : " %.1f |", flop / med[c->n - 1] / 1e9, r);
}

static void bench_matmul(int maxthreads, const double *peak)
{
    printf("\n## Linear layers (C = A·Wᵀ + bias), GFLOP/s (%% of the tier's FMA peak)\n\n");
    printf("The tiers and OpenBLAS run in turns, %d rounds, medians shown; libmae/OpenBLAS is the\n"
           "median of the per-round ratios for the active table '%s'.\n\n", quick ? 3 : 7,
           mae_kernels_name());
#ifdef MAE_BENCH_OPENBLAS
    print_header("| shape | M | N | K | threads |", " OpenBLAS | libmae/OpenBLAS | scalar |");
#else
    print_header("| shape | M | N | K | threads |", " scalar |");
#endif
    int batches[2] = { 1, 8 };
    for (int bi = 0; bi < 2; bi++)
        for (size_t s = 0; s < NSHAPES; s++) {
            const shape *sh = &vit_shapes[s];
            int M = sh->m1 * batches[bi], N = sh->N, K = sh->K;
            float *A = rnd((size_t)M * K, 1), *W = rnd((size_t)N * K, 0.05f), *bias = rnd(N, 0.1f);
            float *out = malloc((size_t)M * N * sizeof *out);
            double flop = 2.0 * M * N * K;
            for (int nt = 1; nt <= maxthreads; nt++) {
                printf("| %s B=%d | %d | %d | %d | %d |", sh->name, batches[bi], M, N, K, nt);
                /* the SIMD tiers and OpenBLAS, measured in turns */
                mm_case mc[MAX_FNS];
                contenders c = { .n = 0 };
                for (int t = 1; t < 4; t++) {
                    const mae_kernels *k = mae_kernels_get(tier_names[t]);
                    if (!k)
                        continue;
                    size_t pf = k->pack_floats(N, K);
                    float *wp = pf ? mae_alloc(pf * sizeof *wp) : NULL;
                    if (pf)
                        k->pack(wp, W, N, K);
                    mm_case tc = { k, make_exec(k, nt, 1, N > K ? N : K), M, N, K, A, W, pf ? wp : W, bias, out, nt };
                    mc[c.n] = tc;
                    add_contender(&c, run_linear, &mc[c.n], t);
                }
#ifdef MAE_BENCH_OPENBLAS
                openblas_set_num_threads(nt);
                mm_case cb = { NULL, { 0, NULL, 0, NULL }, M, N, K, A, W, W, bias, out, nt };
                mc[c.n] = cb;
                add_contender(&c, run_sgemm, &mc[c.n], 0);
#endif
                print_cells(&c, flop, nt, peak, 1);
                for (int i = 0; i < c.ntiers; i++) {
                    mae_free(mc[i].ex.scratch);
                    if (mc[i].wp != W)
                        mae_free((float *)mc[i].wp);
                }
                /* the scalar reference, once per shape at batch 1 (it is slow) */
                if (batches[bi] == 1 && nt == 1) {
                    const mae_kernels *k = mae_kernels_get("scalar");
                    mm_case sc = { k, make_exec(k, 1, 1, N > K ? N : K), M, N, K, A, W, W, bias, out, 1 };
                    double t0 = now();
                    run_linear(&sc);
                    printf(" %.2f |\n", flop / (now() - t0) / 1e9);
                    mae_free(sc.ex.scratch);
                } else {
                    printf(" |\n");
                }
                fflush(stdout);
            }
            free(A); free(W); free(bias); free(out);
        }
}

/* ---- the bf16 linears ------------------------------------------------------------------------- */

typedef struct bf_case {
    const mae_kernels *k;   /* the bf16 tier (its bf16_* entries) */
    mae_exec ex;
    int M, N, K;
    const float *A, *bias;
    const uint16_t *wp;
    float *out;
} bf_case;

static void run_bf16_linear(void *arg)
{
    bf_case *c = arg;
    c->k->bf16_linear(&c->ex, c->out, c->A, c->wp, c->bias, NULL, c->M, c->N, c->K, MAE_ACT_NONE);
}

/* The linears as a bf16 model runs them (the tier mae_kernels_bf16 gives the active table:
 * avx512_bf16 / neon_bf16 where the CPU has bf16 instructions, else the active table's "wide"
 * path), paired with the active table's fp32 linear. The % is of the bf16 peak measured above
 * where the tier has bf16 instructions, else of the fp32 FMA peak. */
static void bench_bf16_linears(int maxthreads, const double *peak, const double *bf16_peak)
{
    const mae_kernels *f = mae_kernels_get(mae_kernels_name()), *b = mae_kernels_bf16(f);
    int native = b != f, ti = 0;
    for (int t = 1; t < 4; t++)
        if (strcmp(tier_names[t], f->name) == 0)
            ti = t;
    printf("\n## bf16 linears (a bf16 model's C = bf16(A)·bf16(W)ᵀ + bias, fp32 sums), GFLOP/s\n\n");
    printf("bf16 tier '%s' (%s); %% of %s. Paired with the fp32 linear of '%s' (%d rounds, medians).\n\n",
           b->name, native ? "bf16 instructions" : "no bf16 instructions here: the packed bf16 widened for the fp32 micro-kernel",
           native ? "the measured bf16 peak" : "the fp32 FMA peak", f->name, quick ? 3 : 7);
    printf("| shape | M | N | K | threads | bf16 | fp32 | bf16 / fp32 |\n|---|---|---|---|---|---|---|---|\n");
    int batches[2] = { 1, 8 };
    for (int bi = 0; bi < 2; bi++)
        for (size_t s = 0; s < NSHAPES; s++) {
            const shape *sh = &vit_shapes[s];
            int M = sh->m1 * batches[bi], N = sh->N, K = sh->K;
            float *A = rnd((size_t)M * K, 1), *W = rnd((size_t)N * K, 0.05f), *bias = rnd(N, 0.1f);
            float *out = malloc((size_t)M * N * sizeof *out);
            size_t pf = f->pack_floats(N, K);
            float *wp32 = pf ? mae_alloc(pf * sizeof *wp32) : NULL;
            uint16_t *wp16 = mae_alloc(b->bf16_pack_size(N, K) * sizeof *wp16);
            if (pf)
                f->pack(wp32, W, N, K);
            b->bf16_pack(wp16, W, N, K);
            double flop = 2.0 * M * N * K;
            for (int nt = 1; nt <= maxthreads; nt++) {
                bf_case bc = { b, make_exec(b, nt, 1, N > K ? N : K), M, N, K, A, bias, wp16, out };
                mm_case fc = { f, make_exec(f, nt, 1, N > K ? N : K), M, N, K, A, W, pf ? wp32 : W, bias, out, nt };
                bench_fn fn[2] = { run_bf16_linear, run_linear };
                void *arg[2] = { &bc, &fc };
                double med[2], r = 0, pk = native ? bf16_peak[nt] : peak[ti * 8 + nt];
                median_times(2, fn, arg, quick ? 3 : 7, 0.05, med, 0, 1, &r);
                double g = flop / med[0] / 1e9;
                printf("| %s B=%d | %d | %d | %d | %d | %.1f (%.0f%%) | %.1f | %.2f |\n", sh->name, batches[bi],
                       M, N, K, nt, g, pk > 0 ? 100 * g / pk : 0, flop / med[1] / 1e9, r);
                fflush(stdout);
                mae_free(bc.ex.scratch);
                mae_free(fc.ex.scratch);
            }
            mae_free(wp32);
            mae_free(wp16);
            free(A); free(W); free(bias); free(out);
        }
}

/* ---- the backward products ------------------------------------------------------------------ */

/* C = A·B (nn: A [M,K]) or Aᵀ·B (tn: A stored [K,M]); B [K,N]; both row-major, B unpacked. */
typedef struct bw_case {
    const mae_kernels *k;
    mae_exec ex;
    int tn, M, N, K;
    const float *A, *B;
    float *C;
} bw_case;

static void run_backward_product(void *arg)
{
    bw_case *c = arg;
    if (c->tn)
        c->k->matmul_tn(&c->ex, c->C, c->A, c->B, c->M, c->N, c->K, 0);
    else
        c->k->matmul_nn(&c->ex, c->C, c->A, c->B, c->M, c->N, c->K, 0);
}

#ifdef MAE_BENCH_OPENBLAS
static void run_blas_backward(void *arg)
{
    bw_case *c = arg;
    cblas_sgemm(CblasRowMajor, c->tn ? CblasTrans : CblasNoTrans, CblasNoTrans, c->M, c->N, c->K,
                1.0f, c->A, c->tn ? c->M : c->K, c->B, c->N, 0.0f, c->C, c->N);
}
#endif

/* Per linear of the training step at batch 8: dX = dY·W (nn: tokens x in x out) and
 * dW = dYᵀ·X (tn: out x in x tokens). */
static void bench_backward(int maxthreads, const double *peak)
{
    printf("\n## Backward products at batch 8 (dX = dY·W: nn, dW = dYᵀ·X: tn), GFLOP/s (%% of peak)\n\n");
#ifdef MAE_BENCH_OPENBLAS
    print_header("| product | M | N | K | threads |", " OpenBLAS | libmae/OpenBLAS |");
#else
    print_header("| product | M | N | K | threads |", "");
#endif
    for (size_t s = 0; s < NSHAPES; s++)
        for (int tn = 0; tn < 2; tn++) {
            const shape *sh = &vit_shapes[s];
            int tokens = sh->m1 * 8, in = sh->K, out = sh->N;
            if (!tn && s == 0)
                continue;   /* the patch embedding needs no input gradient */
            int M = tn ? out : tokens, N = in, K = tn ? tokens : out;
            float *A = rnd((size_t)M * K, 1), *B = rnd((size_t)K * N, 1);
            float *C = malloc((size_t)M * N * sizeof *C);
            double flop = 2.0 * M * N * K;
            for (int nt = 1; nt <= maxthreads; nt++) {
                printf("| %s %s | %d | %d | %d | %d |", sh->name, tn ? "dW (tn)" : "dX (nn)", M, N, K, nt);
                bw_case bc[MAX_FNS];
                contenders c = { .n = 0 };
                for (int t = 1; t < 4; t++) {
                    const mae_kernels *k = mae_kernels_get(tier_names[t]);
                    if (!k)
                        continue;
                    mae_exec ex = { 0 };
                    ex.nthreads = nt;
                    ex.scratch_per_thread = k->backward_scratch_floats(1, 3072);
                    ex.scratch = mae_alloc(ex.scratch_per_thread * nt * sizeof(float) + 64);
                    bw_case tc = { k, ex, tn, M, N, K, A, B, C };
                    bc[c.n] = tc;
                    add_contender(&c, run_backward_product, &bc[c.n], t);
                }
#ifdef MAE_BENCH_OPENBLAS
                openblas_set_num_threads(nt);
                bw_case cb = { NULL, { 0, NULL, 0, NULL }, tn, M, N, K, A, B, C };
                bc[c.n] = cb;
                add_contender(&c, run_blas_backward, &bc[c.n], 0);
#endif
                print_cells(&c, flop, nt, peak, 1);
                for (int i = 0; i < c.ntiers; i++)
                    mae_free(bc[i].ex.scratch);
                printf("\n");
                fflush(stdout);
            }
            free(A); free(B); free(C);
        }
}

/* ---- attention ------------------------------------------------------------------------------ */

typedef struct attn_case {
    const mae_kernels *k;
    mae_exec ex;
    int B, T, C, H;
    const float *qkv;
    float *out, *s;
} attn_case;

static void run_attention(void *arg)
{
    attn_case *c = arg;
    c->k->attention(&c->ex, c->out, NULL, c->qkv, c->B, c->T, c->C, c->H);
}

#ifdef MAE_BENCH_OPENBLAS
/* The usual library route: per (image, head) S = Q·Kᵀ (sgemm), row softmax, O = P·V (sgemm). */
static void run_blas_attention(void *arg)
{
    attn_case *c = arg;
    int T = c->T, C = c->C, hd = C / c->H;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++) {
            const float *q = c->qkv + (size_t)b * T * 3 * C + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, 3 * C, q + C,
                        3 * C, 0.0f, c->s, T);
            for (int i = 0; i < T; i++) {
                float *r = c->s + (size_t)i * T, mx = r[0], sum = 0;
                for (int j = 1; j < T; j++)
                    mx = r[j] > mx ? r[j] : mx;
                for (int j = 0; j < T; j++)
                    sum += r[j] = expf(r[j] - mx);
                for (int j = 0; j < T; j++)
                    r[j] /= sum;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, c->s, T,
                        q + 2 * C, 3 * C, 0.0f, c->out + (size_t)b * T * C + (size_t)h * hd, C);
        }
}
#endif

static void bench_attention(int maxthreads, const double *peak)
{
    printf("\n## Attention (scores, softmax, ·V), GFLOP/s (4·B·H·T²·hd flops)\n\n");
#ifdef MAE_BENCH_OPENBLAS
    print_header("| shape | B | T | C | H | threads |", " OpenBLAS per head |");
#else
    print_header("| shape | B | T | C | H | threads |", "");
#endif
    int cases[][4] = { { 1, 50, 768, 12 }, { 8, 50, 768, 12 }, { 1, 197, 512, 16 }, { 8, 197, 512, 16 },
                       { 1, 1025, 1024, 16 } };
    const char *names[] = { "encoder", "encoder", "decoder", "decoder", "ViT-L/16 at 512px (flash path)" };
    for (int ci = 0; ci < (quick ? 4 : 5); ci++) {
        int B = cases[ci][0], T = cases[ci][1], C = cases[ci][2], H = cases[ci][3];
        float *qkv = rnd((size_t)B * T * 3 * C, 1), *out = malloc((size_t)B * T * C * sizeof *out);
        float *s = malloc((size_t)T * T * sizeof *s);
        double flop = 4.0 * B * H * (double)T * T * (C / H);
        for (int nt = 1; nt <= maxthreads; nt++) {
            printf("| %s | %d | %d | %d | %d | %d |", names[ci], B, T, C, H, nt);
            attn_case ac[MAX_FNS];
            contenders c = { .n = 0 };
            for (int t = 1; t < 4; t++) {
                const mae_kernels *k = mae_kernels_get(tier_names[t]);
                if (!k)
                    continue;
                attn_case tc = { k, make_exec(k, nt, T, 3 * C), B, T, C, H, qkv, out, s };
                ac[c.n] = tc;
                add_contender(&c, run_attention, &ac[c.n], t);
            }
#ifdef MAE_BENCH_OPENBLAS
            openblas_set_num_threads(nt);
            attn_case cb = { NULL, { 0, NULL, 0, NULL }, B, T, C, H, qkv, out, s };
            ac[c.n] = cb;
            add_contender(&c, run_blas_attention, &ac[c.n], 0);
#endif
            print_cells(&c, flop, nt, peak, 0);
            for (int i = 0; i < c.ntiers; i++)
                mae_free(ac[i].ex.scratch);
            printf("\n");
            fflush(stdout);
        }
        free(qkv); free(out); free(s);
    }
}

/* ---- end to end ----------------------------------------------------------------------------- */

/* FLOPs of one image: the linears and attention of ViT-B/16 MAE with t_enc encoder tokens. */
static double model_flops(int t_enc, int decoder)
{
    double D = 768, Dd = 512, L = 196, T = 197;
    double f = 2 * L * D * 768;                                             /* patch embedding */
    f += 12 * (2 * t_enc * 12 * D * D + 4.0 * t_enc * t_enc * D);          /* encoder */
    if (decoder) {
        f += 2 * t_enc * D * Dd;                                            /* decoder_embed */
        f += 8 * (2 * T * 12 * Dd * Dd + 4 * T * T * Dd);                   /* decoder */
        f += 2 * L * Dd * 768;                                              /* decoder_pred */
    }
    return f;
}

typedef struct fwd_case {
    mae_ctx *c;
    const mae_model *m;
    const float *imgs;
    float *pred, *mask, *tokens, *latent;
    int32_t *ids;
    int B, mode;     /* 0: mae_forward; 1: encoder visible only; 2: encoder all tokens */
    mae_trainer *t;
} fwd_case;

static void run_forward(void *arg)
{
    fwd_case *f = arg;
    float loss;
    if (f->mode == 0) {
        mae_forward(f->c, f->imgs, f->B, NULL, &loss, f->pred, f->mask, NULL);
        return;
    }
    const mae_patch_embed *pe;
    const mae_masker *mk;
    const mae_encoder *enc;
    mae_model_patch_embed(f->m, &pe);
    mae_model_masker(f->m, &mk);
    mae_model_encoder(f->m, &enc);
    mae_patch_embed_forward(pe, f->c, f->imgs, f->B, f->tokens);
    if (f->mode == 1) {
        int keep;
        mae_masker_forward(mk, f->c, f->B, NULL, f->ids, NULL, NULL, &keep);
        mae_encoder_forward(enc, f->c, f->tokens, f->B, f->ids, keep, f->latent);
    } else {
        mae_encoder_forward(enc, f->c, f->tokens, f->B, NULL, 196, f->latent);
    }
}

static void run_train_step(void *arg)
{
    fwd_case *f = arg;
    float loss;
    mae_trainer_forward_backward(f->t, f->imgs, f->B, NULL, &loss);
    mae_trainer_step(f->t);
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* The forward-only process for the memory figure: model, context for batch B, one forward. */
static int rss_forward(int B)
{
    mae_config cfg;
    mae_model *m;
    mae_ctx *c;
    if (mae_config_init(&cfg, sizeof cfg, "base") || mae_model_create(&cfg, 1, &m) || mae_ctx_create(m, B, &c))
        return 1;
    float *imgs = rnd((size_t)B * 3 * 224 * 224, 1), *pred = malloc((size_t)B * 196 * 768 * sizeof *pred);
    float loss;
    long before = peak_rss_kib();
    mae_forward(c, imgs, B, NULL, &loss, pred, NULL, NULL);
    size_t np;
    mae_model_num_params(m, &np);
    printf("%ld %ld %zu\n", before, peak_rss_kib(), np);
    return 0;
}

/* A field of /proc/self/status in KiB (VmRSS, VmHWM); -1 where there is none (not Linux). */
static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':')
            v = atol(line + n + 1);
    if (f)
        fclose(f);
    return v;
}

/* The load process: the RSS before, the peak while the model is loaded and the RSS after, in KiB.
 * how: "f32" (mae_model_load), "bf16" (mae_model_load_with, precision bf16) or "convert"
 * (mae_model_load, then mae_model_set_precision bf16: what a bf16 model cost before the load
 * option). The peak is VmHWM after the load (reset first through clear_refs where the kernel
 * allows, else the process's peak so far, which before the load is its baseline); getrusage where
 * there is no /proc. */
static int rss_load(const char *path, const char *how)
{
    mae_load_options o;
    if (mae_load_options_init(&o, sizeof o) != MAE_OK)
        return 1;
    o.precision = strcmp(how, "bf16") == 0 ? MAE_PRECISION_BF16 : MAE_PRECISION_F32;
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) {
        fputs("5", cr);   /* 5: reset the peak RSS to the current RSS */
        fclose(cr);
    }
    long base = status_kib("VmRSS");
    if (base < 0)
        base = peak_rss_kib();
    mae_model *m;
    if (mae_model_load_with(path, &o, &m) != MAE_OK ||
        (strcmp(how, "convert") == 0 && mae_model_set_precision(m, MAE_PRECISION_BF16) != MAE_OK)) {
        fprintf(stderr, "%s\n", mae_last_error());
        return 1;
    }
    long peak = status_kib("VmHWM"), after = status_kib("VmRSS");
    if (peak < 0) {
        peak = peak_rss_kib();
        after = peak;   /* no current RSS without /proc: the ratio reads 1 */
    }
    printf("%ld %ld %ld\n", base, peak, after);
    mae_model_free(m);
    return 0;
}

/* The memory of loading: ViT-B saved by the library as F32 and F16 in a temporary directory,
 * each loaded in a fresh process (bench_mae --rss-load), as float32, straight into bf16
 * (mae_model_load_with) and, for comparison, as float32 then converted to bf16; the target
 * (issue 15) is a peak at most 1.15x the loaded model's RSS. */
static void bench_load_rss(const char *self)
{
    printf("\n## Loading ViT-B/16 (mae_model_load, mae_model_load_with): peak RSS while loading vs the loaded model\n\n");
    char dir[] = "/tmp/mae_bench_XXXXXX";
    mae_config cfg;
    mae_model *m;
    if (!mkdtemp(dir) || mae_config_init(&cfg, sizeof cfg, "base") != MAE_OK || mae_model_create(&cfg, 1, &m) != MAE_OK) {
        printf("cannot create the model or a temporary directory: %s\n", mae_last_error());
        return;
    }
    printf("| file | loaded as | size MiB | RSS before MiB | peak while loading MiB | loaded model MiB | peak / model |\n"
           "|---|---|---|---|---|---|---|\n");
    const char *dtypes[2] = { "F32", "F16" };
    const char *hows[3] = { "f32", "bf16", "convert" };
    const char *how_text[3] = { "float32", "bf16 (load option)", "float32, then set_precision bf16" };
    for (int i = 0; i < 2; i++) {
        char path[256], cmd[1024];
        snprintf(path, sizeof path, "%s/vit_base_%s.safetensors", dir, dtypes[i]);
        if (mae_model_save_as(m, path, dtypes[i]) != MAE_OK) {
            printf("cannot save %s: %s\n", path, mae_last_error());
            continue;
        }
        FILE *fs = fopen(path, "rb");
        long size = -1;
        if (fs && fseek(fs, 0, SEEK_END) == 0)
            size = ftell(fs);
        if (fs)
            fclose(fs);
        for (int h = 0; h < 3; h++) {
            if (h == 2 && i > 0)
                continue;   /* the old way once, from the F32 file */
            snprintf(cmd, sizeof cmd, "%s --rss-load %s %s", self, path, hows[h]);
            FILE *p = popen(cmd, "r");
            long base = 0, peak = 0, after = 0;
            if (p && fscanf(p, "%ld %ld %ld", &base, &peak, &after) == 3 && after > base)
                printf("| ViT-B %s | %s | %.0f | %.0f | %.0f | %.0f | %.3fx |\n", dtypes[i], how_text[h], size / 1048576.0,
                       base / 1024.0, (peak - base) / 1024.0, (after - base) / 1024.0,
                       (double)(peak - base) / (double)(after - base));
            else
                printf("| ViT-B %s | %s | the load process failed | | | | |\n", dtypes[i], how_text[h]);
            if (p)
                pclose(p);
            fflush(stdout);
        }
        remove(path);
    }
    rmdir(dir);
    mae_model_free(m);
}

static void bench_model(int maxthreads, const char *self)
{
    printf("\n## ViT-B/16 MAE at 224x224, table '%s'\n\n", mae_kernels_name());
    mae_config cfg;
    mae_model *m;
    mae_ctx *c;
    if (mae_config_init(&cfg, sizeof cfg, "base") != MAE_OK || mae_model_create(&cfg, 1, &m) != MAE_OK ||
        mae_ctx_create(m, 8, &c) != MAE_OK) {
        printf("cannot create the model: %s\n", mae_last_error());
        return;
    }
    float *imgs = rnd((size_t)8 * 3 * 224 * 224, 1);
    float *pred = malloc((size_t)8 * 196 * 768 * sizeof *pred), *mask = malloc(8 * 196 * sizeof *mask);
    float *tokens = malloc((size_t)8 * 196 * 768 * sizeof *tokens);
    float *latent = malloc((size_t)8 * 197 * 768 * sizeof *latent);
    int32_t *ids = malloc(8 * 196 * sizeof *ids);
    double f_fwd = model_flops(50, 1), f_vis = model_flops(50, 0), f_all = model_flops(197, 0);
    printf("FLOPs per image: forward (mask 0.75) %.2f G; encoder visible only %.2f G; encoder on all "
           "197 tokens %.2f G\n\n", f_fwd / 1e9, f_vis / 1e9, f_all / 1e9);
    printf("| run | batch | threads | images/s | latency ms | GFLOP/s |\n|---|---|---|---|---|---|\n");
    double vis_t[9] = { 0 }, all_t[9] = { 0 }, fwd_t[9][2] = { { 0 } };
    for (int nt = 1; nt <= maxthreads; nt++) {
        mae_ctx_set_threads(c, nt);
        int bs[2] = { 1, 8 };
        for (int bi = 0; bi < 2; bi++) {
            int B = bs[bi];
            fwd_case f = { c, m, imgs, pred, mask, tokens, latent, ids, B, 0, NULL };
            mae_ctx_set_mask_ratio(c, 0.75f);
            double t = median_time(run_forward, &f, quick ? 3 : 7, 0.2);
            if (nt <= 8)
                fwd_t[nt][bi] = t;
            printf("| forward, mask 0.75 | %d | %d | %.2f | %.1f | %.1f |\n", B, nt, B / t, t * 1e3, B * f_fwd / t / 1e9);
            f.mode = 1;
            t = median_time(run_forward, &f, quick ? 3 : 7, 0.2);
            if (B == 8)
                vis_t[nt] = t;
            printf("| encoder, visible patches (mask 0.75) | %d | %d | %.2f | %.1f | %.1f |\n", B, nt, B / t, t * 1e3, B * f_vis / t / 1e9);
            f.mode = 2;
            mae_ctx_set_mask_ratio(c, 0.0f);
            t = median_time(run_forward, &f, quick ? 3 : 7, 0.2);
            if (B == 8)
                all_t[nt] = t;
            printf("| encoder features, mask 0 (all tokens) | %d | %d | %.2f | %.1f | %.1f |\n", B, nt, B / t, t * 1e3, B * f_all / t / 1e9);
            fflush(stdout);
        }
    }
    mae_ctx_set_mask_ratio(c, 0.75f);
    for (int nt = 1; nt <= maxthreads; nt++)
        printf("\nEncoder all tokens / visible only, batch 8, %d thread(s): %.2fx slower (FLOP ratio %.2fx)",
               nt, all_t[nt] / vis_t[nt], f_all / f_vis);
    printf("\n");
    mae_ctx_free(c);

    /* the same forward with the model in bf16 (docs/PRECISION.md), against the float32 times above */
    mae_model *mb = NULL;
    mae_ctx *cb = NULL;
    if (mae_model_create(&cfg, 1, &mb) == MAE_OK && mae_model_set_precision(mb, MAE_PRECISION_BF16) == MAE_OK &&
        mae_ctx_create(mb, 8, &cb) == MAE_OK) {
        printf("\n| forward, mask 0.75, bf16 model | batch | threads | images/s | latency ms | vs f32 |\n"
               "|---|---|---|---|---|---|\n");
        for (int nt = 1; nt <= maxthreads && nt <= 8; nt++) {
            mae_ctx_set_threads(cb, nt);
            for (int bi = 0; bi < 2; bi++) {
                int B = bi ? 8 : 1;
                fwd_case f = { cb, mb, imgs, pred, mask, tokens, latent, ids, B, 0, NULL };
                double t = median_time(run_forward, &f, quick ? 3 : 7, 0.2);
                printf("| | %d | %d | %.2f | %.1f | %.2fx |\n", B, nt, B / t, t * 1e3, fwd_t[nt][bi] / t);
                fflush(stdout);
            }
        }
        mae_ctx_free(cb);
    }
    mae_model_free(mb);

    /* training step: forward, backward, AdamW; in float32, then in mixed precision (a bf16
     * model: bf16 operands in the linears' products, docs/PRECISION.md) */
    printf("\n| training step (forward + backward + AdamW) | precision | batch | threads | images/s | ms/step |\n"
           "|---|---|---|---|---|---|\n");
    for (int prec = 0; prec < 2 && !quick; prec++) {
        mae_model *mt;
        mae_trainer *tr;
        if (mae_model_create(&cfg, 2, &mt) != MAE_OK)
            continue;
        if ((prec && mae_model_set_precision(mt, MAE_PRECISION_BF16) != MAE_OK) ||
            mae_trainer_create(mt, 8, &tr) != MAE_OK) {
            mae_model_free(mt);
            continue;
        }
        for (int nt = 1; nt <= maxthreads; nt++) {
            mae_trainer_set_threads(tr, nt);
            fwd_case f = { NULL, mt, imgs, NULL, NULL, NULL, NULL, NULL, 8, 0, tr };
            double t = median_time(run_train_step, &f, 3, 0.1);
            printf("| | %s | 8 | %d | %.2f | %.0f |\n", prec ? "bf16" : "f32", nt, 8 / t, t * 1e3);
            fflush(stdout);
        }
        printf("peak RSS of this process after training (%s): %.0f MiB\n", prec ? "bf16" : "f32",
               peak_rss_kib() / 1024.0);
        mae_trainer_free(tr);
        mae_model_free(mt);
    }
    mae_model_free(m);

    /* memory: a fresh process that only runs forward passes */
    char cmd[1024];
    for (int i = 0; i < 2; i++) {
        int B = i ? 8 : 1;
        snprintf(cmd, sizeof cmd, "%s --rss-forward %d", self, B);
        FILE *p = popen(cmd, "r");
        long before = 0, after = 0;
        size_t np = 0;
        if (p && fscanf(p, "%ld %ld %zu", &before, &after, &np) == 3) {
            double w = np * 4.0 / 1048576.0;
            printf("forward-only process, batch %d: peak RSS %.0f MiB = %.2fx the weights (%.0f MiB, %zu floats); "
                   "%.0f MiB before the first forward\n", B, after / 1024.0, after / 1024.0 / w, w, np, before / 1024.0);
        }
        if (p)
            pclose(p);
    }
    free(imgs); free(pred); free(mask); free(tokens); free(latent); free(ids);
}

int main(int argc, char **argv)
{
    int maxthreads = 2, load_only = 0, bf16_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            maxthreads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rss-forward") == 0 && i + 1 < argc)
            return rss_forward(atoi(argv[i + 1]));
        else if (strcmp(argv[i], "--rss-load") == 0 && i + 1 < argc)
            return rss_load(argv[i + 1], i + 2 < argc ? argv[i + 2] : "f32");
        else if (strcmp(argv[i], "--load-only") == 0)
            load_only = 1;
        else if (strcmp(argv[i], "--bf16-only") == 0)
            bf16_only = 1;
    }
    if (load_only) {
        bench_load_rss(argv[0]);
        return 0;
    }
    if (maxthreads < 1 || maxthreads > 7)
        maxthreads = 2;
    char cpu[600] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            snprintf(cpu, sizeof cpu, "%s", v ? v + 2 : line);
            cpu[strcspn(cpu, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
    time_t tt = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&tt));
    printf("# libmae bench — %s, %s, %d thread(s) max, libmae %s, best table '%s'\n",
           cpu, date, maxthreads, mae_version_string(), mae_kernels_name());
    double peak[4 * 8] = { 0 };
    printf("\nFMA peak (GFLOP/s, measured):");
    for (int t = 1; t < 4; t++)
        if (mae_kernels_get(tier_names[t]))
            for (int nt = 1; nt <= maxthreads; nt++) {
                peak[t * 8 + nt] = fma_peak(tier_names[t], nt);
                printf(" %s x%d = %.1f;", tier_names[t], nt, peak[t * 8 + nt]);
            }
    double bf16_peak[8] = { 0 };
    if (mae_kernels_get("avx512_bf16"))
        for (int nt = 1; nt <= maxthreads; nt++) {
            bf16_peak[nt] = fma_peak("avx512_bf16", nt);
            printf(" avx512_bf16 (vdpbf16ps) x%d = %.1f;", nt, bf16_peak[nt]);
        }
    printf("\n");
    if (bf16_only) {
        bench_bf16_linears(maxthreads, peak, bf16_peak);
        return 0;
    }
    bench_matmul(maxthreads, peak);
    bench_bf16_linears(maxthreads, peak, bf16_peak);
    bench_backward(maxthreads, peak);
    bench_attention(maxthreads, peak);
    bench_model(maxthreads, argv[0]);
    bench_load_rss(argv[0]);
    return 0;
}
