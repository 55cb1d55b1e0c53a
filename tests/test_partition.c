/* The work partitions for many threads (issue 17 item 2): every kernel with a parallel loop gives
 * bitwise the one-thread result at 2, 3, 7, 16 and 64 tasks on shapes whose partitions differ
 * (2-D matmul grids, attention query chunks, attention backward's dV tasks, row and column loops
 * sized by the thread count); and the schedule simulation (mae_measure_set) sees partitions that
 * keep 16 threads busy at batch 1 shapes where one task per thread or per head did not. */
#include <string.h>
#include <math.h>
#include "testutil.h"
#include "../src/kernels/kernels.h"
#include "../src/kernels/gemm.h"
#include "../src/util/util.h"

static const int threads[] = { 2, 3, 7, 16, 64 };
enum { NT = sizeof threads / sizeof threads[0] };

static mae_exec make(const mae_kernels *k, int n, int T, int C, float **mem)
{
    size_t a = k->scratch_floats(T, C), b = k->backward_scratch_floats(T, C);
    size_t per = a > b ? a : b;
    *mem = tu_malloc(per * (size_t)n * sizeof(float) + 64);
    mae_exec ex = { n, *mem, per, NULL };
    return ex;
}

static float *fresh(size_t n, double lo, double hi)
{
    float *p = tu_malloc(n * sizeof *p);
    tu_fill(p, n, lo, hi);
    return p;
}

/* Runs op at 1 thread and at each of threads[], comparing the out floats bitwise. The op writes
 * out from fixed inputs (accumulating ops get out reset from init first). */
typedef void (*op_fn)(const mae_kernels *k, const mae_exec *ex, void *arg);
static void same_bits(const char *what, const mae_kernels *k, op_fn op, void *arg, float *out,
                      const float *init, size_t n, int T, int C)
{
    float *mem, *ref = tu_malloc(n * sizeof *ref);
    mae_exec ex = make(k, 1, T, C, &mem);
    if (init) memcpy(out, init, n * sizeof *out);
    op(k, &ex, arg);
    memcpy(ref, out, n * sizeof *ref);
    free(mem);
    for (int i = 0; i < NT; i++) {
        ex = make(k, threads[i], T, C, &mem);
        if (init) memcpy(out, init, n * sizeof *out); else tu_fill(out, n, -9, 9);
        op(k, &ex, arg);
        CHECK(memcmp(ref, out, n * sizeof *ref) == 0, "%s: %d threads differ from 1", what, threads[i]);
        free(mem);
    }
    free(ref);
}

typedef struct mm { int M, N, K; float *A, *W, *Wp, *bias, *res, *C; } mm;
static void op_linear(const mae_kernels *k, const mae_exec *ex, void *p)
{
    mm *a = p;
    k->linear(ex, a->C, a->A, a->Wp, a->bias, a->res, a->M, a->N, a->K, MAE_ACT_GELU);
}
static void op_nn(const mae_kernels *k, const mae_exec *ex, void *p)
{
    mm *a = p;
    k->matmul_nn(ex, a->C, a->A, a->W, a->M, a->N, a->K, 1);
}
static void op_tn(const mae_kernels *k, const mae_exec *ex, void *p)
{
    mm *a = p;
    k->matmul_tn(ex, a->C, a->A, a->W, a->M, a->N, a->K, 1);
}

static void test_matmuls(const mae_kernels *k)
{
    /* batch 1 encoder/decoder shapes, a K-heavy one, and odd edges */
    int shapes[][3] = { { 50, 768, 768 }, { 50, 768, 3072 }, { 197, 1536, 512 }, { 13, 100, 37 },
                        { 3, 2304, 64 }, { 401, 45, 130 } };
    for (int s = 0; s < 6; s++) {
        mm a = { shapes[s][0], shapes[s][1], shapes[s][2], 0, 0, 0, 0, 0, 0 };
        size_t big = (size_t)(a.M > a.N ? a.M : a.N) * (size_t)(a.K > a.N ? a.K : a.N);
        a.A = fresh(big, -1, 1);
        a.W = fresh(big, -1, 1);
        a.Wp = tu_malloc((k->pack_floats(a.N, a.K) + 1) * sizeof(float));
        k->pack(a.Wp, a.W, a.N, a.K);
        a.bias = fresh((size_t)a.N, -1, 1);
        a.res = fresh((size_t)a.M * a.N, -1, 1);
        size_t nc = big > (size_t)a.M * a.N ? big : (size_t)a.M * a.N;
        a.C = tu_malloc(nc * sizeof(float));
        float *init = fresh(nc, -1, 1);
        int widest = a.N > a.K ? a.N : a.K;
        widest = widest > a.M ? widest : a.M;
        char what[96];
        snprintf(what, sizeof what, "linear M=%d N=%d K=%d", a.M, a.N, a.K);
        same_bits(what, k, op_linear, &a, a.C, NULL, (size_t)a.M * a.N, 1, widest);
        snprintf(what, sizeof what, "matmul_nn M=%d N=%d K=%d", a.M, a.N, a.K);
        same_bits(what, k, op_nn, &a, a.C, init, (size_t)a.M * a.N, 1, widest);
        snprintf(what, sizeof what, "matmul_tn M=%d N=%d K=%d", a.M, a.N, a.K);
        same_bits(what, k, op_tn, &a, a.C, init, (size_t)a.M * a.N, 1, widest);
        free(a.A); free(a.W); free(a.Wp); free(a.bias); free(a.res); free(a.C); free(init);
    }
}

typedef struct at { int B, T, C, H; float *qkv, *out, *probs, *dout, *dqkv; } at;
static void op_attn(const mae_kernels *k, const mae_exec *ex, void *p)
{
    at *a = p;
    k->attention(ex, a->out, a->probs, a->qkv, a->B, a->T, a->C, a->H);
}
static void op_attn_noprobs(const mae_kernels *k, const mae_exec *ex, void *p)
{
    at *a = p;
    k->attention(ex, a->out, NULL, a->qkv, a->B, a->T, a->C, a->H);
}
static void op_attnb(const mae_kernels *k, const mae_exec *ex, void *p)
{
    at *a = p;
    k->attention_backward(ex, a->dqkv, a->dout, a->qkv, a->probs, a->B, a->T, a->C, a->H);
}

static void test_attention(const mae_kernels *k)
{
    int shapes[][4] = { { 1, 50, 768, 12 }, { 1, 197, 512, 16 }, { 2, 33, 96, 3 }, { 3, 600, 64, 2 } };
    for (int s = 0; s < 4; s++) {
        at a = { shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], 0, 0, 0, 0, 0 };
        size_t nq = (size_t)a.B * a.T * 3 * a.C, no = (size_t)a.B * a.T * a.C;
        size_t np = (size_t)a.B * a.H * a.T * a.T;
        a.qkv = fresh(nq, -2, 2);
        a.dout = fresh(no, -1, 1);
        a.out = tu_malloc(no * sizeof(float));
        a.probs = tu_malloc(np * sizeof(float));
        a.dqkv = tu_malloc(nq * sizeof(float));
        char what[96];
        snprintf(what, sizeof what, "attention B=%d T=%d C=%d H=%d", a.B, a.T, a.C, a.H);
        if (a.T > 512)   /* the flash path (no saved rows) */
            same_bits(what, k, op_attn_noprobs, &a, a.out, NULL, no, a.T, 3 * a.C);
        same_bits(what, k, op_attn, &a, a.out, NULL, no, a.T, 3 * a.C);
        snprintf(what, sizeof what, "attention_backward B=%d T=%d C=%d H=%d", a.B, a.T, a.C, a.H);
        same_bits(what, k, op_attnb, &a, a.dqkv, NULL, nq, a.T, 3 * a.C);
        free(a.qkv); free(a.dout); free(a.out); free(a.probs); free(a.dqkv);
    }
}

typedef struct rw { int N, C; float *x, *w, *b, *out, *mean, *rstd, *dy, *dx, *dw, *db; } rw;
static void op_ln(const mae_kernels *k, const mae_exec *ex, void *p)
{
    rw *a = p;
    k->layernorm(ex, a->out, a->mean, a->rstd, a->x, a->w, a->b, a->N, a->C, 1e-6f);
}
/* dx, dw, db are consecutive in one buffer (out of same_bits) */
static void op_lnb(const mae_kernels *k, const mae_exec *ex, void *p)
{
    rw *a = p;
    k->layernorm_backward(ex, a->dx, a->dw, a->db, a->dy, a->x, a->mean, a->rstd, a->w, a->N, a->C);
    k->bias_backward(ex, a->db, a->dy, a->N, a->C);
    k->gelu_backward(ex, a->dx, a->x, a->dx, (size_t)a->N * a->C);
}

static void test_rows(const mae_kernels *k)
{
    int shapes[][2] = { { 50, 768 }, { 1, 3072 }, { 197, 512 }, { 9, 130 } };
    for (int s = 0; s < 4; s++) {
        rw a;
        memset(&a, 0, sizeof a);
        a.N = shapes[s][0];
        a.C = shapes[s][1];
        size_t n = (size_t)a.N * a.C;
        a.x = fresh(n, -2, 2); a.dy = fresh(n, -1, 1);
        a.w = fresh((size_t)a.C, 0.5, 1.5); a.b = fresh((size_t)a.C, -1, 1);
        a.out = tu_malloc((n + 2 * (size_t)a.N) * sizeof(float));
        a.mean = a.out + n;
        a.rstd = a.mean + a.N;
        float *grads = tu_malloc((n + 2 * (size_t)a.C) * sizeof(float));
        float *init = fresh(n + 2 * (size_t)a.C, -1, 1);
        a.dx = grads; a.dw = grads + n; a.db = a.dw + a.C;
        char what[96];
        snprintf(what, sizeof what, "layernorm N=%d C=%d", a.N, a.C);
        same_bits(what, k, op_ln, &a, a.out, NULL, n + 2 * (size_t)a.N, 1, a.C);
        snprintf(what, sizeof what, "layernorm/bias/gelu backward N=%d C=%d", a.N, a.C);
        same_bits(what, k, op_lnb, &a, grads, init, n + 2 * (size_t)a.C, 1, a.C);
        free(a.x); free(a.dy); free(a.w); free(a.b); free(a.out); free(grads); free(init);
    }
}

/* Efficiency of one call at T threads in the simulation: its work on 1 thread / (T * span). */
static double simulated(const mae_kernels *k, op_fn op, void *arg, int T, int maxT, int C)
{
    double w1 = 0.0, wT, span = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        float *mem;
        mae_exec ex = make(k, pass ? T : 1, maxT, C, &mem);
        CHECK_OK(mae_measure_set(MAE_MEASURE_SIMULATE));
        op(k, &ex, arg);
        int n = 0;
        CHECK_OK(mae_measure_count(&n));
        double w = 0.0, s = 0.0;
        for (int i = 0; i < n; i++) {
            double wi, si;
            CHECK_OK(mae_measure_op(i, NULL, NULL, NULL, NULL, &wi, &si));
            w += wi;
            s += si;
        }
        CHECK_OK(mae_measure_set(MAE_MEASURE_OFF));
        if (pass == 0) w1 = w; else { wT = w; span = s; (void)wT; }
        free(mem);
    }
    return span > 0 ? w1 / (T * span) : 0.0;
}

/* Batch-1 shapes on 16 threads: one task per thread over 24 column panels (0.75), one task per
 * head (12 heads: 0.75), 8 rows per LayerNorm task (7 tasks: 0.44) were the old partitions. */
static void test_simulation(const mae_kernels *k)
{
    mm a = { 50, 768, 768, 0, 0, 0, 0, 0, 0 };
    a.A = fresh((size_t)a.M * a.K, -1, 1);
    a.Wp = tu_malloc((k->pack_floats(a.N, a.K) + 1) * sizeof(float));
    a.C = tu_malloc((size_t)a.M * a.N * sizeof(float));
    double e = simulated(k, op_linear, &a, 16, 1, 768);
    CHECK(e >= 0.85 && e <= 1.0, "linear 50x768x768 at 16 threads: simulated efficiency %.3f < 0.85", e);
    free(a.A); free(a.Wp); free(a.C);

    at t = { 8, 50, 768, 12, 0, 0, 0, 0, 0 };
    size_t nq = (size_t)t.B * t.T * 3 * t.C;
    t.qkv = tu_malloc(nq * sizeof(float)); t.dqkv = tu_malloc(nq * sizeof(float));
    t.dout = tu_malloc(nq * sizeof(float)); t.probs = tu_malloc((size_t)t.B * t.H * t.T * t.T * sizeof(float));
    e = simulated(k, op_attnb, &t, 64, t.T, 3 * t.C);
    CHECK(e >= 0.85 && e <= 1.0, "attention_backward 96 heads at 64 threads: simulated efficiency %.3f < 0.85", e);
    t.B = 1;
    e = simulated(k, op_attn, &t, 16, t.T, 3 * t.C);
    CHECK(e >= 0.6 && e <= 1.0, "attention 12 heads at 16 threads: simulated efficiency %.3f < 0.6", e);
    free(t.qkv); free(t.dqkv); free(t.dout); free(t.probs);

    rw r;
    memset(&r, 0, sizeof r);
    r.N = 50; r.C = 768;
    r.x = tu_malloc((size_t)r.N * r.C * 2 * sizeof(float)); r.out = r.x + (size_t)r.N * r.C;
    r.w = tu_malloc((size_t)r.C * 2 * sizeof(float)); r.b = r.w + r.C;
    e = simulated(k, op_ln, &r, 16, 1, r.C);
    CHECK(e >= 0.75 && e <= 1.0, "layernorm 50 rows at 16 threads: simulated efficiency %.3f < 0.75", e);
    free(r.x); free(r.w);
    /* the mode's argument is checked */
    CHECK(mae_measure_set(7) == MAE_ERR_INVALID_ARG, "mae_measure_set(7) accepted");
    CHECK(mae_measure_op(0, NULL, NULL, NULL, NULL, NULL, NULL) == MAE_ERR_INVALID_ARG, "op 0 of an empty table");
}

/* Forced block sizes (mae_gemm_force_blocking, as MAE_BLOCKING does): small blocks make many k
 * blocks and m blocks; products stay within float rounding of a double reference, bitwise the
 * same for any thread count, and mae_kernels_describe says what is in use. */
static void test_blocking(const mae_kernels *k)
{
    int blk[][4] = { { 20, 64, 64, 1 }, { 7, 100, 40, 0 }, { 300, 1000, 600, -1 } };
    int M = 61, N = 130, K = 700;
    mm a = { M, N, K, 0, 0, 0, 0, 0, 0 };
    a.A = fresh((size_t)M * K, -1, 1);
    a.W = fresh((size_t)N * K, -1, 1);
    a.Wp = tu_malloc((k->pack_floats(N, K) + 1) * sizeof(float));
    k->pack(a.Wp, a.W, N, K);
    a.C = tu_malloc((size_t)M * N * sizeof(float));
    for (int b = 0; b < 3; b++) {
        mae_gemm_force_blocking(blk[b][0], blk[b][1], blk[b][2], blk[b][3]);
        char d[512], what[96];
        CHECK_OK(mae_kernels_describe(d, sizeof d));
        char want[64];
        snprintf(want, sizeof want, "kc %d,", blk[b][1]);
        CHECK(strstr(d, want) && strstr(d, "forced"), "describe does not show the forced blocking: %s", d);
        snprintf(what, sizeof what, "linear %dx%dx%d, blocking %d,%d,%d", M, N, K, blk[b][0], blk[b][1], blk[b][2]);
        same_bits(what, k, op_linear, &a, a.C, NULL, (size_t)M * N, 1, K);
        double worst = 0.0;
        /* the product itself, without the activation, on 3 threads */
        mae_exec ex;
        float *mem;
        ex = make(k, 3, 1, K, &mem);
        k->linear(&ex, a.C, a.A, a.Wp, NULL, NULL, M, N, K, MAE_ACT_NONE);
        free(mem);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double r = 0.0, mag = 0.0;
                for (int q = 0; q < K; q++) {
                    r += (double)a.A[(size_t)i * K + q] * a.W[(size_t)j * K + q];
                    mag += fabs((double)a.A[(size_t)i * K + q] * a.W[(size_t)j * K + q]);
                }
                double e = fabs(a.C[(size_t)i * N + j] - r) / (mag + 1e-30);
                worst = e > worst ? e : worst;
            }
        CHECK(worst < 1e-6, "%s: error %.3g of the magnitude sum", what, worst);
    }
    mae_gemm_force_blocking(0, 0, 0, -1);
    char d[512];
    CHECK_OK(mae_kernels_describe(d, sizeof d));
    CHECK(!strstr(d, "forced"), "describe still says forced after the reset: %s", d);
    CHECK(mae_kernels_describe(d, 8) == MAE_ERR_INVALID_ARG, "describe into 8 bytes accepted");
    CHECK(mae_kernels_describe(NULL, 8) == MAE_ERR_INVALID_ARG, "describe into NULL accepted");
    free(a.A); free(a.W); free(a.Wp); free(a.C);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(17);
    const mae_kernels *k = mae_kernels_active();
    printf("test_partition: table %s\n", k->name);
    TU_RUN("matmuls", test_matmuls(k));
    TU_RUN("attention", test_attention(k));
    TU_RUN("rows", test_rows(k));
    TU_RUN("simulation", test_simulation(k));
    TU_RUN("blocking", test_blocking(k));
    return tu_finish("test_partition");
}
