/* Every kernel of every SIMD tier this CPU supports against the scalar reference table: random
 * data over many shapes (1, tile-1, tile, tile+1, primes, the ViT-B/16 MAE shapes), unaligned
 * pointers, special values, poisoned outputs and scratch, bitwise equality across thread counts.
 * Tiers are taken with mae_kernels_get(name), so a dispatch gate that never opens shows up as a
 * skip, not as a pass of the scalar fallback. Also: the vectorized exp and erf against libm over
 * a dense sweep, the flash-attention path, and the dispatch overrides (MAE_KERNELS, force). */
#include "testutil.h"
#include "../src/kernels/kernels.h"
#include "../src/kernels/tiers.h"
#include "../src/util/util.h"

typedef struct tier {
    const char *name;
    const mae_gemm_isa *g;
    const mae_attn_isa *ai;
    void (*erf)(float *y, const float *x, size_t n);
    void (*exp)(float *y, const float *x, size_t n);
} tier;

static const tier all_tiers[] = {
#if defined(__x86_64__)
    { "avx2", &mae_avx2_gemm, &mae_avx2_attn, mae_avx2_erf, mae_avx2_exp },
    { "avx512", &mae_avx512_gemm, &mae_avx512_attn, mae_avx512_erf, mae_avx512_exp },
#elif defined(__aarch64__)
    { "neon", &mae_neon_gemm, &mae_neon_attn, mae_neon_erf, mae_neon_exp },
#endif
};
#define NTIERS (sizeof all_tiers / sizeof all_tiers[0])

static const mae_kernels *S;   /* the scalar reference */
static int quick;              /* MAE_TEST_QUICK=1 (under an emulator): skip the biggest shapes */

/* ---- helpers -------------------------------------------------------------------------------- */

/* An exec with exactly the scratch the table asks for, poisoned, in its own malloc block (so that
 * ASan sees any overrun). */
typedef struct exec_buf { mae_exec ex; float *mem; } exec_buf;

static exec_buf make_exec(const mae_kernels *k, int nthreads, int max_t, int max_c)
{
    exec_buf b;
    memset(&b, 0, sizeof b);
    size_t per = k->scratch_floats(max_t, max_c);
    b.mem = tu_malloc((per * nthreads + 1) * sizeof(float));
    tu_poison(b.mem, per * nthreads + 1);
    b.ex.nthreads = nthreads;
    b.ex.scratch = b.mem;
    b.ex.scratch_per_thread = per;
    return b;
}

static float *fresh(size_t n, double lo, double hi)
{
    float *p = tu_malloc((n + 2) * sizeof *p);
    tu_fill(p, n + 2, lo, hi);
    return p;
}

/* Tolerance for a float32 sum of K products against a double reference. */
static double tol_k(int K)
{
    return 2e-6 + 2e-7 * sqrt((double)K);
}

/* ---- linear --------------------------------------------------------------------------------- */

enum { RES_NONE, RES_SEPARATE, RES_ALIAS };

/* Runs the tier's linear on (M, N, K) with unaligned pointers and compares rows against the scalar
 * table (all rows, or a sample of `sample` rows for the big shapes). Returns the relative error. */
static double check_linear(const mae_kernels *k, int M, int N, int K, int bias_on, int res_mode,
                           int act, int sample, double scale_a)
{
    size_t MN = (size_t)M * N;
    float *A = fresh((size_t)M * K, -scale_a, scale_a), *W = fresh((size_t)N * K, -1, 1);
    float *bias = fresh((size_t)N, -1, 1), *res = fresh(MN, -1, 1);
    float *out = tu_malloc((MN + 1) * sizeof *out), *ref = tu_malloc((MN + 1) * sizeof *ref);
    size_t pf = k->pack_floats(N, K);
    float *wp_mem = tu_malloc((pf + 1) * sizeof *wp_mem);
    tu_poison(wp_mem, pf + 1);
    const float *wp = W + 1;
    if (pf) {
        k->pack(wp_mem + 1, W + 1, N, K);
        wp = wp_mem + 1;
    }
    float *o = out + 1;
    const float *b = bias_on ? bias + 1 : NULL, *r = NULL;
    if (res_mode == RES_SEPARATE) {
        r = res + 1;
        tu_poison(o, MN);
    } else if (res_mode == RES_ALIAS) {
        memcpy(o, res + 1, MN * sizeof *o);
        r = o;
    } else {
        tu_poison(o, MN);
    }
    exec_buf eb = make_exec(k, 2, 1, N > K ? N : K);
    k->linear(&eb.ex, o, A + 1, wp, b, r, M, N, K, act);

    exec_buf es = make_exec(S, 2, 1, N > K ? N : K);
    double num = 0, den = 0;
    int step = sample && M > sample ? M / sample : 1;
    for (int m = 0; m < M; m += step) {
        const float *rr = res_mode == RES_NONE ? NULL : res + 1 + (size_t)m * N;
        S->linear(&es.ex, ref, A + 1 + (size_t)m * K, W + 1, b, rr, 1, N, K, act);
        for (int n = 0; n < N; n++) {
            double d = (double)o[(size_t)m * N + n] - ref[n];
            if (isnan(o[(size_t)m * N + n]) != isnan(ref[n]))
                d = INFINITY;
            num += d * d;
            den += (double)ref[n] * ref[n];
        }
    }
    free(A); free(W); free(bias); free(res); free(out); free(ref); free(wp_mem);
    free(eb.mem); free(es.mem);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* unpack inverts pack exactly (unaligned, poisoned buffers); the panel width w = pack_floats(1,1)
 * packs a weight with N a multiple of w into exactly N*K floats, block of w rows by block in the
 * rows' own floats (what mae_model_pack_slim relies on). */
static void test_pack_unpack(const tier *t, const mae_kernels *k)
{
    const mae_gemm_isa *g = t->g;
    int w = (int)k->pack_floats(1, 1);
    CHECK(w == g->nr, "%s: pack_floats(1,1) = %d, panel width %d", t->name, w, g->nr);
    int Ns[] = { 1, g->nr - 1, g->nr, g->nr + 1, 3 * g->nr, 61, 2304 };
    int Ks[] = { 1, 7, g->kc + 1, 33, 768 };
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 5; j++) {
            int N = Ns[i], K = Ks[j];
            size_t pf = k->pack_floats(N, K), nk = (size_t)N * K;
            float *W = fresh(nk + 1, -1, 1), *P = tu_malloc((pf + 1) * sizeof *P);
            float *U = tu_malloc((nk + 1) * sizeof *U), *B = tu_malloc((nk + 1) * sizeof *B);
            tu_poison(P, pf + 1);
            tu_poison(U, nk + 1);
            k->pack(P + 1, W + 1, N, K);
            k->unpack(U + 1, P + 1, N, K);
            CHECK(memcmp(U + 1, W + 1, nk * sizeof *U) == 0, "%s: unpack(pack(W)) != W at %dx%d", t->name, N, K);
            if (N % w == 0) {
                CHECK(pf == nk, "%s: %dx%d packs into %zu floats, not %zu", t->name, N, K, pf, nk);
                memcpy(B + 1, W + 1, nk * sizeof *B);
                for (int r = 0; r < N; r += w) {
                    k->pack(U + 1, B + 1 + (size_t)r * K, w, K);
                    memcpy(B + 1 + (size_t)r * K, U + 1, (size_t)w * K * sizeof *B);
                }
                CHECK(memcmp(B + 1, P + 1, nk * sizeof *B) == 0, "%s: block-wise packing differs at %dx%d", t->name, N, K);
            }
            free(W); free(P); free(U); free(B);
        }
}

/* AdamW: bitwise the scalar reference (same double operations per element), on unaligned
 * buffers of every length around the vector width, with zero, huge and tiny gradients and
 * moments mixed in, with and without decay, clipping and bias correction. */
static void test_adamw(const tier *t, const mae_kernels *k)
{
    int lens[] = { 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4099 };
    mae_adamw_hp hp[3] = {
        { 1.0, 0.1, 0.95, 0.05, 1.0 - 1e-3 * 0.05, 1e-3 / (1.0 - 0.9), sqrt(1.0 - 0.95), 1e-8 },
        { 0.37, 0.1, 0.999, 1.0 - 0.999, 1.0, 2.5e-4, 0.31, 1e-6 },
        { 1.0 / 3.0, 0.2, 0.5, 0.5, 0.999, 0.1, 0.99, 1e-8 },
    };
    int bad = 0;
    for (int li = 0; li < 14; li++)
        for (int hi = 0; hi < 3; hi++) {
            size_t n = (size_t)lens[li];
            float *x[4], *y[4];
            for (int b = 0; b < 4; b++) {
                x[b] = fresh(n + 1, b == 2 ? 0 : -1, 1);   /* m2 >= 0 */
                y[b] = tu_malloc((n + 1) * sizeof *y[b]);
            }
            for (size_t i = 1; i <= n; i += 7) {   /* special values */
                x[3][i] = i % 3 == 1 ? 0.0f : i % 3 == 2 ? 3e4f : -1e-30f;
                x[2][i] = i % 2 ? 0.0f : 1e-38f;
            }
            for (int b = 0; b < 4; b++)
                memcpy(y[b], x[b], (n + 1) * sizeof *y[b]);
            k->adamw(x[0] + 1, x[1] + 1, x[2] + 1, x[3] + 1, n, &hp[hi]);
            S->adamw(y[0] + 1, y[1] + 1, y[2] + 1, y[3] + 1, n, &hp[hi]);
            for (int b = 0; b < 4; b++)
                bad += memcmp(x[b], y[b], (n + 1) * sizeof *y[b]) != 0;
            for (int b = 0; b < 4; b++) {
                free(x[b]);
                free(y[b]);
            }
        }
    CHECK(bad == 0, "%s: adamw differs from the scalar reference in %d buffers", t->name, bad);
    printf("%s adamw: bitwise the scalar reference (14 lengths x 3 settings)\n", t->name);
}

/* The loss kernels: loss_grad bitwise the scalar one over a poisoned output; loss_patch's
 * normalized target within 1 ulp of the scalar's and its sum within 1e-12 of it (double sums in
 * another order), both against a long double reference; untouched floats around every buffer. */
static int same_or_ulp(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return a == b || nextafterf(a, b) == b;
}

static void test_loss(const tier *t, const mae_kernels *k)
{
    int lens[] = { 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 768, 769, 4099 };
    int bad = 0, cases = 0;
    double worst = 0.0;
    for (int li = 0; li < 15; li++)
        for (int mode = 0; mode < 6; mode++) {
            int n = lens[li], norm = mode & 1, kind = mode >> 1;
            /* kind 0: [-1,1]; 1: target 1e4 + [-1,1] (a large common offset); 2: tiny and ±0 */
            float *y = fresh((size_t)n, -1, 1), *t0 = fresh((size_t)n, -1, 1);
            for (int i = 1; i <= n; i++) {
                if (kind == 1)
                    t0[i] += 1e4f;
                if (kind == 2) {
                    t0[i] *= 1e-30f;
                    y[i] = i % 3 == 0 ? 0.0f : i % 3 == 1 ? -0.0f : y[i] * 1e-30f;
                }
            }
            float *tk = tu_malloc((size_t)(n + 2) * sizeof *tk), *ts = tu_malloc((size_t)(n + 2) * sizeof *ts);
            memcpy(tk, t0, (size_t)(n + 2) * sizeof *tk);
            memcpy(ts, t0, (size_t)(n + 2) * sizeof *ts);
            double sk = k->loss_patch(tk + 1, y + 1, n, norm), ss = S->loss_patch(ts + 1, y + 1, n, norm);
            /* the reference, in long double from the original target */
            long double mean = 0, var = 0, ref = 0;
            for (int i = 1; i <= n; i++)
                mean += t0[i];
            mean /= n;
            for (int i = 1; i <= n; i++)
                var += (t0[i] - mean) * (t0[i] - mean);
            long double inv = n > 1 ? 1.0L / sqrtl(var / (n - 1) + 1e-6L) : NAN;
            for (int i = 1; i <= n; i++) {
                long double ti = norm ? (t0[i] - mean) * inv : t0[i];
                bad += norm && n > 1 && fabsl(ts[i] - ti) > 1e-6L * (1 + fabsl(ti));
                bad += !same_or_ulp(tk[i], ts[i]);
                ref += (y[i] - (long double)ts[i]) * (y[i] - (long double)ts[i]);
            }
            bad += tk[0] != t0[0] || tk[n + 1] != t0[n + 1];
            if (norm && n == 1) {
                bad += !isnan(sk) || !isnan(ss);
            } else {
                double e = fabs(sk - ss) / (fabs(ss) > 1e-300 ? fabs(ss) : 1e-300);
                worst = e > worst ? e : worst;
                bad += e > 1e-12 || fabsl(ss - ref) > 1e-12L * (fabsl(ref) > 1e-300L ? fabsl(ref) : 1e-300L);
            }
            /* the gradient: bitwise the scalar one, nothing written outside */
            double w = (kind == 2 ? 1e20 : 1.0) * (tu_uniform() - 0.5);
            float *dk = tu_malloc((size_t)(n + 2) * sizeof *dk), *ds = tu_malloc((size_t)(n + 2) * sizeof *ds);
            tu_poison(dk, (size_t)n + 2);
            tu_poison(ds, (size_t)n + 2);
            k->loss_grad(dk + 1, y + 1, ts + 1, w, (size_t)n);
            S->loss_grad(ds + 1, y + 1, ts + 1, w, (size_t)n);
            bad += memcmp(dk, ds, (size_t)(n + 2) * sizeof *dk) != 0 || !isnan(dk[0]) || !isnan(dk[n + 1]);
            for (int i = 1; i <= n; i++)
                bad += isnan(dk[i]) && !(norm && n == 1);
            cases++;
            free(y); free(t0); free(tk); free(ts); free(dk); free(ds);
        }
    CHECK(bad == 0, "%s: the loss kernels differ from the scalar reference in %d places", t->name, bad);
    printf("%s loss: %d cases, target within 1 ulp, sums within %.1e of the scalar's, gradient bitwise\n",
           t->name, cases, worst);
}

static void test_linear_shapes(const tier *t, const mae_kernels *k)
{
    const mae_gemm_isa *g = t->g;
    int Ms[] = { 1, g->mr - 1, g->mr, g->mr + 1, 2 * g->mr + 1, g->mc - 1, g->mc + 1, 37 };
    int Ns[] = { 1, g->nr - 1, g->nr, g->nr + 1, 3 * g->nr + 5, 61 };
    int Ks[] = { 1, 7, g->kc - 1, g->kc, g->kc + 1, 2 * g->kc + 3 };
    int nM = 8, nN = 6, nK = 6, combo = 0;
    double worst = 0;
    for (int i = 0; i < nM; i++)
        for (int j = 0; j < nN; j++) {
            int M = Ms[i], N = Ns[j], K = Ks[combo % nK];
            int bias_on = combo % 2, res_mode = combo / 2 % 3, act = combo / 6 % 2;
            combo++;
            double e = check_linear(k, M, N, K, bias_on, res_mode, act, 0, 1.0);
            CHECK(e < tol_k(K), "%s linear M=%d N=%d K=%d bias=%d res=%d act=%d: rel err %.3g",
                  t->name, M, N, K, bias_on, res_mode, act, e);
            if (e > worst)
                worst = e;
        }
    for (int i = 0; i < nK; i++) {
        double e = check_linear(k, g->mr + 1, g->nr + 3, Ks[i], 1, RES_ALIAS, 1, 0, 1.0);
        CHECK(e < tol_k(Ks[i]), "%s linear K=%d: rel err %.3g", t->name, Ks[i], e);
    }
    printf("%s linear: %d small shapes, worst rel err %.3g\n", t->name, combo, worst);

    /* the ViT-B/16 MAE shapes (rows sampled on the big ones) */
    int vit[][3] = { { 50, 2304, 768 }, { 50, 768, 3072 }, { 197, 2048, 512 }, { 196, 768, 512 },
                     { 400, 3072, 768 }, { 1576, 1536, 512 } };
    for (int i = 0; i < (quick ? 2 : 6); i++) {
        int M = vit[i][0], N = vit[i][1], K = vit[i][2];
        double e = check_linear(k, M, N, K, 1, i % 2 ? RES_SEPARATE : RES_NONE, i == 4, 12, 1.0);
        CHECK(e < tol_k(K), "%s linear ViT-B M=%d N=%d K=%d: rel err %.3g", t->name, M, N, K, e);
        printf("%s linear M=%d N=%d K=%d: rel err %.3g\n", t->name, M, N, K, e);
    }

    /* special values: large and tiny magnitudes */
    double scales[] = { 1e15, 1e-20 };
    for (int i = 0; i < 2; i++) {
        double e = check_linear(k, 2 * g->mr + 1, 2 * g->nr + 1, 300, 0, RES_NONE, 0, 0, scales[i]);
        CHECK(e < tol_k(300), "%s linear |A| ~ %g: rel err %.3g", t->name, scales[i], e);
    }
}

/* Zero rows (+0 and -0) give exactly the bias; NaN in one row stays in that row. */
static void test_linear_special(const tier *t, const mae_kernels *k)
{
    int M = t->g->mr + 2, N = t->g->nr + 5, K = 33;
    float *A = fresh((size_t)M * K, -1, 1), *W = fresh((size_t)N * K, -1, 1), *bias = fresh(N, -1, 1);
    float *out = tu_malloc((size_t)M * N * sizeof *out);
    for (int kk = 0; kk < K; kk++) {
        A[0 * K + kk] = 0.0f;
        A[1 * K + kk] = -0.0f;
    }
    A[3 * K + 5] = NAN;
    size_t pf = k->pack_floats(N, K);
    float *wp = pf ? tu_malloc(pf * sizeof *wp) : W;
    if (pf)
        k->pack(wp, W, N, K);
    exec_buf eb = make_exec(k, 1, 1, N);
    tu_poison(out, (size_t)M * N);
    k->linear(&eb.ex, out, A, wp, bias, NULL, M, N, K, MAE_ACT_NONE);
    int exact = 1, nan_ok = 1;
    for (int n = 0; n < N; n++) {
        exact &= out[n] == bias[n] && out[N + n] == bias[n];
        nan_ok &= isnan(out[3 * N + n]) && !isnan(out[2 * N + n]) && !isnan(out[4 * N + n]);
    }
    CHECK(exact, "%s linear: zero rows do not give exactly the bias", t->name);
    CHECK(nan_ok, "%s linear: a NaN does not stay in its row", t->name);
    free(A); free(W); free(bias); free(out); free(eb.mem);
    if (pf)
        free(wp);
}

/* ---- matmul_nn / matmul_tn ------------------------------------------------------------------ */

static double check_mm(const mae_kernels *k, int tn, int M, int N, int K, int accumulate)
{
    size_t MN = (size_t)M * N;
    float *A = fresh((size_t)M * K, -1, 1), *B = fresh((size_t)K * N, -1, 1), *C0 = fresh(MN, -1, 1);
    float *c = tu_malloc((MN + 1) * sizeof *c), *ref = tu_malloc(MN * sizeof *ref);
    if (accumulate) {
        memcpy(c + 1, C0, MN * sizeof *c);
        memcpy(ref, C0, MN * sizeof *ref);
    } else {
        tu_poison(c + 1, MN);
        tu_poison(ref, MN);
    }
    int w = M > N ? M : N;
    w = w > K ? w : K;
    exec_buf eb = make_exec(k, 2, 1, w), es = make_exec(S, 2, 1, w);
    if (tn) {
        k->matmul_tn(&eb.ex, c + 1, A + 1, B + 1, M, N, K, accumulate);
        S->matmul_tn(&es.ex, ref, A + 1, B + 1, M, N, K, accumulate);
    } else {
        k->matmul_nn(&eb.ex, c + 1, A + 1, B + 1, M, N, K, accumulate);
        S->matmul_nn(&es.ex, ref, A + 1, B + 1, M, N, K, accumulate);
    }
    double e = tu_rel_l2(c + 1, ref, MN);
    free(A); free(B); free(C0); free(c); free(ref); free(eb.mem); free(es.mem);
    return e;
}

static void test_matmul(const tier *t, const mae_kernels *k)
{
    const mae_gemm_isa *g = t->g;
    int shapes[][3] = { { 1, 1, 1 }, { g->mr - 1, g->nr + 1, 5 }, { g->mr + 1, g->nr - 1, g->kc + 1 },
                        { 2 * g->mr, 2 * g->nr, g->kc }, { g->mc + 1, g->nr * 3 + 1, 17 },
                        { 13, g->nc + g->nr + 3, 29 }, { 97, 61, 2 * g->kc + 1 },
                        { 768, 64, 50 }, { 50, 768, 64 },
                        { 2 * g->mr + 3, 17 * g->nr + 5, 2 * g->kc + 3 } };   /* split by columns */
    double worst = 0;
    for (int i = 0; i < 10; i++)
        for (int tn = 0; tn < 2; tn++)
            for (int acc = 0; acc < 2; acc++) {
                int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
                double e = check_mm(k, tn, M, N, K, acc);
                CHECK(e < tol_k(K), "%s matmul_%s M=%d N=%d K=%d acc=%d: rel err %.3g",
                      t->name, tn ? "tn" : "nn", M, N, K, acc, e);
                if (e > worst)
                    worst = e;
            }
    /* a backward-pass shape: dW [768,768] += dyᵀ [768,400] · x [400,768] */
    double e = quick ? 0 : check_mm(k, 1, 768, 768, 400, 1);
    CHECK(e < tol_k(400), "%s matmul_tn 768x768x400: rel err %.3g", t->name, e);
    printf("%s matmul_nn/tn: 41 shapes, worst rel err %.3g\n", t->name, worst > e ? worst : e);
}

/* ---- attention ------------------------------------------------------------------------------ */

/* Compares out (and probs when asked) with the scalar table; flash_min_t < T forces the
 * online-softmax path. */
static void check_attention(const tier *t, const mae_kernels *k, int B, int T, int C, int H,
                            int with_probs, int flash_min_t)
{
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, np = (size_t)B * H * T * T;
    float *qkv = fresh(nq, -2, 2);
    float *out = tu_malloc((no + 1) * sizeof *out), *ref = tu_malloc(no * sizeof *ref);
    float *probs = with_probs ? tu_malloc((np + 1) * sizeof *probs) : NULL;
    float *rprobs = tu_malloc(np * sizeof *rprobs);
    tu_poison(out, no + 1);
    if (probs)
        tu_poison(probs, np + 1);
    exec_buf eb = make_exec(k, 2, T, 3 * C), es = make_exec(S, 2, T, 3 * C);
    if (flash_min_t)
        mae_attention_run(t->ai, &eb.ex, out + 1, probs ? probs + 1 : NULL, qkv + 1, B, T, C, H, flash_min_t);
    else
        k->attention(&eb.ex, out + 1, probs ? probs + 1 : NULL, qkv + 1, B, T, C, H);
    S->attention(&es.ex, ref, rprobs, qkv + 1, B, T, C, H);
    double e = tu_rel_l2(out + 1, ref, no);
    CHECK(e < 1e-5, "%s attention B=%d T=%d C=%d H=%d probs=%d flash<%d: rel err %.3g",
          t->name, B, T, C, H, with_probs, flash_min_t, e);
    if (probs) {
        double ep = tu_rel_l2(probs + 1, rprobs, np);
        CHECK(ep < 1e-5, "%s attention probs B=%d T=%d C=%d H=%d: rel err %.3g", t->name, B, T, C, H, ep);
    }
    free(qkv); free(out); free(ref); free(probs); free(rprobs); free(eb.mem); free(es.mem);
}

static void test_attention(const tier *t, const mae_kernels *k)
{
    const mae_gemm_isa *g = t->g;
    int shapes[][4] = { { 1, 1, 16, 1 }, { 2, 5, 24, 3 }, { 1, g->mr - 1, 40, 2 },
                        { 1, g->mr + 1, 2 * g->nr, 1 }, { 3, g->nr - 1, 20, 1 },
                        { 1, g->nr + 1, 64, 2 }, { 2, 33, 96, 3 }, { 1, 50, 768, 12 },
                        { 1, 197, 512, 16 } };
    for (int i = 0; i < (quick ? 8 : 9); i++)
        for (int p = 0; p < 2; p++)
            check_attention(t, k, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], p, 0);
    /* the flash path: forced on short sequences (several key blocks, partial last block), and
     * taken for real past MAE_FLASH_MIN_T */
    check_attention(t, k, 2, 50, 64, 2, 0, g->nr);
    check_attention(t, k, 1, 3 * g->nr + 5, 48, 1, 0, 2 * g->nr);
    check_attention(t, k, 1, 77, 96, 3, 0, 1);
    check_attention(t, k, 1, MAE_FLASH_MIN_T + 90, 64, 2, 0, 0);
    /* with probs the exact path runs whatever T is */
    check_attention(t, k, 1, MAE_FLASH_MIN_T + 3, 32, 1, 1, 0);
    printf("%s attention: 23 cases (exact, probs, flash)\n", t->name);
}

/* The backward of attention from the saved softmax rows (taken from the scalar forward). */
static void check_attention_backward(const tier *t, const mae_kernels *k, int B, int T, int C, int H)
{
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, np = (size_t)B * H * T * T;
    float *qkv = fresh(nq, -2, 2), *dout = fresh(no, -1, 1), *out = tu_malloc(no * sizeof *out);
    float *probs = tu_malloc(np * sizeof *probs);
    float *d = tu_malloc((nq + 1) * sizeof *d), *ref = tu_malloc(nq * sizeof *ref);
    exec_buf es = make_exec(S, 2, T, 3 * C);
    S->attention(&es.ex, out, probs, qkv + 1, B, T, C, H);
    free(es.mem);
    es.ex.scratch_per_thread = S->backward_scratch_floats(T, 3 * C);
    es.mem = tu_malloc(2 * es.ex.scratch_per_thread * sizeof(float) + 4);
    es.ex.scratch = es.mem;
    S->attention_backward(&es.ex, ref, dout + 1, qkv + 1, probs, B, T, C, H);
    exec_buf eb;
    memset(&eb, 0, sizeof eb);
    eb.ex.nthreads = 2;
    eb.ex.scratch_per_thread = k->backward_scratch_floats(T, 3 * C);
    eb.mem = tu_malloc(2 * eb.ex.scratch_per_thread * sizeof(float) + 4);
    tu_poison(eb.mem, 2 * eb.ex.scratch_per_thread);
    eb.ex.scratch = eb.mem;
    tu_poison(d, nq + 1);
    k->attention_backward(&eb.ex, d + 1, dout + 1, qkv + 1, probs, B, T, C, H);
    double e = tu_rel_l2(d + 1, ref, nq);
    CHECK(e < 1e-5, "%s attention_backward B=%d T=%d C=%d H=%d: rel err %.3g", t->name, B, T, C, H, e);
    /* one thread gives the same bits */
    float *d1 = tu_malloc(nq * sizeof *d1);
    eb.ex.nthreads = 1;
    k->attention_backward(&eb.ex, d1, dout + 1, qkv + 1, probs, B, T, C, H);
    CHECK(memcmp(d1, d + 1, nq * sizeof *d1) == 0, "%s attention_backward: 1 and 2 threads differ", t->name);
    free(qkv); free(dout); free(out); free(probs); free(d); free(ref); free(d1); free(es.mem); free(eb.mem);
}

static void test_backward_kernels(const tier *t, const mae_kernels *k)
{
    const mae_gemm_isa *g = t->g;
    int shapes[][4] = { { 1, 1, 16, 1 }, { 2, 5, 24, 3 }, { 1, g->mr + 1, 40, 2 }, { 1, g->nr + 1, 64, 2 },
                        { 2, 33, 96, 3 }, { 1, 50, 768, 12 }, { 1, 197, 512, 16 } };
    for (int i = 0; i < (quick ? 5 : 7); i++)
        check_attention_backward(t, k, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);

    /* LayerNorm and bias backward: they accumulate into dx, dw, db */
    int lnshapes[][2] = { { 1, 1 }, { 7, 7 }, { 3, 8 }, { 5, 9 }, { 50, 33 }, { 4, 65 }, { 9, 130 },
                          { 197, 768 }, { 13, 1001 } };
    for (int i = 0; i < 9; i++) {
        int N = lnshapes[i][0], C = lnshapes[i][1];
        size_t nc = (size_t)N * C;
        float *x = fresh(nc, -2, 2), *dy = fresh(nc, -1, 1), *w = fresh(C, 0.5, 1.5), *b = fresh(C, -1, 1);
        float *y = tu_malloc(nc * sizeof *y), *mean = tu_malloc(N * sizeof *mean), *rstd = tu_malloc(N * sizeof *rstd);
        float *dx0 = fresh(nc, -1, 1), *dw0 = fresh(C, -1, 1), *db0 = fresh(C, -1, 1);
        float *dx[2], *dw[2], *db[2];
        exec_buf e2 = make_exec(S, 2, 1, C);
        S->layernorm(&e2.ex, y, mean, rstd, x + 1, w + 1, b + 1, N, C, 1e-6f);
        for (int v = 0; v < 2; v++) {
            const mae_kernels *kk = v ? k : S;
            dx[v] = tu_malloc((nc + 2) * sizeof(float));
            dw[v] = tu_malloc((C + 2) * sizeof(float));
            db[v] = tu_malloc((C + 2) * sizeof(float));
            memcpy(dx[v], dx0, (nc + 2) * sizeof(float));
            memcpy(dw[v], dw0, (C + 2) * sizeof(float));
            memcpy(db[v], db0, (C + 2) * sizeof(float));
            kk->layernorm_backward(&e2.ex, dx[v] + 1, dw[v] + 1, db[v] + 1, dy + 1, x + 1, mean, rstd, w + 1, N, C);
            kk->bias_backward(&e2.ex, db[v] + 1, dy + 1, N, C);
        }
        double ex_ = tu_rel_l2(dx[1] + 1, dx[0] + 1, nc), ew = tu_rel_l2(dw[1] + 1, dw[0] + 1, C);
        double eb_ = tu_rel_l2(db[1] + 1, db[0] + 1, C);
        CHECK(ex_ < 1e-5 && ew < 1e-5 && eb_ < 1e-5 && dx[1][0] == dx0[0] && dx[1][nc + 1] == dx0[nc + 1] &&
              dw[1][C + 1] == dw0[C + 1] && db[1][C + 1] == db0[C + 1],
              "%s layernorm/bias backward N=%d C=%d: rel err dx %.3g dw %.3g db %.3g", t->name, N, C, ex_, ew, eb_);
        free(x); free(dy); free(w); free(b); free(y); free(mean); free(rstd); free(dx0); free(dw0); free(db0);
        for (int v = 0; v < 2; v++) {
            free(dx[v]); free(dw[v]); free(db[v]);
        }
        free(e2.mem);
    }

    /* GELU backward: a sweep, in place and not */
    size_t n = 100003;
    float *x = tu_malloc(n * sizeof *x), *dy = fresh(n, -1, 1), *dx = tu_malloc((n + 1) * sizeof *dx);
    float *ref = tu_malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(-10.0 + 20.0 * (double)i / (double)(n - 1));
    exec_buf eb = make_exec(k, 2, 1, 16), es = make_exec(S, 2, 1, 16);
    tu_poison(dx, n + 1);
    k->gelu_backward(&eb.ex, dx + 1, x, dy + 1, n);
    S->gelu_backward(&es.ex, ref, x, dy + 1, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)dx[1 + i] - ref[i]) <= 4e-7 * fabs((double)dy[1 + i]) + 1e-37))
            bad++;
    CHECK(bad == 0, "%s gelu_backward: %d values off by more than 4e-7 |dy|", t->name, bad);
    k->gelu_backward(&eb.ex, dy + 1, x, dy + 1, n);   /* dx aliases dy */
    CHECK(memcmp(dy + 1, dx + 1, n * sizeof *dx) == 0, "%s gelu_backward: in place differs", t->name);
    free(x); free(dy); free(dx); free(ref); free(eb.mem); free(es.mem);
    printf("%s backward: attention (%d shapes), LayerNorm and bias (9 shapes), GELU\n", t->name, quick ? 5 : 7);
}

/* ---- LayerNorm, GELU, add ---------------------------------------------------------------- */

static void check_layernorm(const tier *t, const mae_kernels *k, int N, int C, double offset,
                            double spread, int alias)
{
    size_t n = (size_t)N * C;
    float *x = fresh(n, offset - spread, offset + spread), *w = fresh(C, 0.5, 1.5), *b = fresh(C, -1, 1);
    float *out = tu_malloc((n + 1) * sizeof *out), *ref = tu_malloc(n * sizeof *ref);
    float *mean = tu_malloc((N + 1) * sizeof *mean), *rstd = tu_malloc((N + 1) * sizeof *rstd);
    float *rmean = tu_malloc(N * sizeof *rmean), *rrstd = tu_malloc(N * sizeof *rrstd);
    if (N > 1)   /* a constant row: zero variance */
        for (int c = 0; c < C; c++)
            x[1 + (size_t)C + c] = (float)offset;
    exec_buf eb = make_exec(k, 2, 1, C), es = make_exec(S, 2, 1, C);
    S->layernorm(&es.ex, ref, rmean, rrstd, x + 1, w + 1, b + 1, N, C, 1e-6f);
    tu_poison(mean, N + 1);
    tu_poison(rstd, N + 1);
    float *o;
    if (alias) {
        o = x + 1;
    } else {
        o = out + 1;
        tu_poison(o, n);
    }
    k->layernorm(&eb.ex, o, mean + 1, rstd + 1, x + 1, w + 1, b + 1, N, C, 1e-6f);
    /* the mean's error is measured against the row's scale (a mean near 0 has no relative
     * precision in any float32 sum) */
    double dm = 0, nm = 0;
    for (int i = 0; i < N; i++) {
        dm += ((double)mean[1 + i] - rmean[i]) * ((double)mean[1 + i] - rmean[i]);
        nm += (double)rmean[i] * rmean[i] + spread * spread;
    }
    double e = tu_rel_l2(o, ref, n), em = isnan(dm) ? INFINITY : sqrt(dm / nm);
    double er = tu_rel_l2(rstd + 1, rrstd, N);
    CHECK(e < 1e-5 && em < 1e-6 && er < 1e-5,
          "%s layernorm N=%d C=%d offset=%g spread=%g alias=%d: rel err out %.3g mean %.3g rstd %.3g",
          t->name, N, C, offset, spread, alias, e, em, er);
    free(x); free(w); free(b); free(out); free(ref); free(mean); free(rstd); free(rmean); free(rrstd);
    free(eb.mem); free(es.mem);
}

static void test_vector_kernels(const tier *t, const mae_kernels *k)
{
    int Cs[] = { 1, 7, 8, 9, 15, 16, 17, 31, 33, 768, 1001 };
    for (int i = 0; i < 11; i++) {
        check_layernorm(t, k, 3, Cs[i], 0.0, 1.0, i % 2);
        check_layernorm(t, k, 37, Cs[i], 1e4, 1.0, 0);      /* large offset */
        check_layernorm(t, k, 5, Cs[i], 0.0, 1e12, 0);      /* large magnitudes */
        check_layernorm(t, k, 5, Cs[i], 0.0, 1e-15, 1);     /* tiny */
    }


    /* GELU: a dense sweep plus special values; the error is measured against |x| since
     * 1 + erf(x/sqrt 2) cancels for x << 0 in any float32 implementation of the exact form */
    size_t n = 200001;
    float *x = tu_malloc((n + 16) * sizeof *x), *y = tu_malloc((n + 17) * sizeof *y);
    float *r = tu_malloc((n + 16) * sizeof *r);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(-12.0 + 24.0 * (double)i / (double)(n - 1));
    float special[16] = { 0.0f, -0.0f, 1e-30f, -1e-30f, 1e-40f, -1e-40f, 1e30f, -1e30f, 3.4e38f,
                          5.0f, -5.0f, 1.0f, -1.0f, 0.999999f, 4.0f, -4.0001f };
    memcpy(x + n, special, sizeof special);
    size_t nn = n + 16;
    tu_poison(y, nn + 1);
    k->gelu(y + 1, x, nn);
    S->gelu(r, x, nn);
    double worst = 0;
    int bad = 0;
    for (size_t i = 0; i < nn; i++) {
        double err = fabs((double)y[1 + i] - r[i]) / (fabs((double)x[i]) + 1e-38);
        if (!(err <= 4e-7) && !(y[1 + i] == r[i]))
            bad++;
        else if (err > worst && y[1 + i] != r[i])
            worst = err;
    }
    CHECK(bad == 0, "%s gelu: %d values off by more than 4e-7 |x|", t->name, bad);
    float *z = tu_malloc(nn * sizeof *z);   /* in place gives the same bits */
    memcpy(z, x, nn * sizeof *z);
    k->gelu(z, z, nn);
    CHECK(memcmp(z, y + 1, nn * sizeof *z) == 0, "%s gelu: in place differs from out of place", t->name);
    printf("%s gelu: %zu values, worst error %.3g |x|\n", t->name, nn, worst);
    free(z);

    /* add, out of place and aliased: exact */
    size_t lens[] = { 0, 1, 7, 8, 9, 1000 };
    for (int i = 0; i < 6; i++) {
        size_t m = lens[i];
        float *a = fresh(m, -1, 1), *b = fresh(m, -1e10, 1e10), *o = tu_malloc((m + 2) * sizeof *o);
        tu_poison(o, m + 2);
        k->add(o + 1, a + 1, b + 1, m);
        int ok = isnan(o[0]) && isnan(o[m + 1]);
        for (size_t j = 0; j < m; j++)
            ok &= o[1 + j] == a[1 + j] + b[1 + j];
        k->add(a + 1, a + 1, b + 1, m);
        for (size_t j = 0; j < m; j++)
            ok &= a[1 + j] == o[1 + j];
        CHECK(ok, "%s add n=%zu", t->name, m);
        free(a); free(b); free(o);
    }
    free(x); free(y); free(r);
}

/* ---- exp and erf against libm ---------------------------------------------------------------- */

static double ulp_err(float got, double want)
{
    float w = (float)want;
    if (got == w)
        return 0;
    if (isnan(got) || isnan(w))
        return INFINITY;
    double u = fabs((double)nextafterf(w, INFINITY) - w);
    if (u == 0 || isinf(u))
        u = fabs((double)w - nextafterf(w, 0));
    return fabs((double)got - want) / u;
}

static void test_vmath(const tier *t)
{
    size_t n = quick ? 1 << 17 : 1 << 20;
    float *x = tu_malloc(n * sizeof *x), *y = tu_malloc(n * sizeof *y);
    /* erf: uniform over [-4.5, 4.5] plus a log sweep of small magnitudes */
    for (size_t i = 0; i < n; i++)
        x[i] = i < n / 2 ? (float)(-4.5 + 9.0 * (double)i / (double)(n / 2))
                         : (float)((i % 2 ? -1 : 1) * pow(10.0, -38.0 + 38.0 * (double)(i - n / 2) / (double)(n / 2)));
    t->erf(y, x, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = ulp_err(y[i], erf((double)x[i]));
        if (e > worst)
            worst = e;
    }
    CHECK(worst <= 1.5, "%s erf: %.2f ulp from libm", t->name, worst);
    float sp[6] = { INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 10.0f }, sy[6];
    t->erf(sy, sp, 6);
    CHECK(sy[0] == 1.0f && sy[1] == -1.0f && isnan(sy[2]) && sy[3] == 0.0f && sy[4] == 0.0f &&
          signbit(sy[4]) && sy[5] == 1.0f, "%s erf: special values", t->name);
    printf("%s erf: %zu values, max %.2f ulp from libm\n", t->name, n, worst);

    /* exp: the range the kernels use, [-87.3, 0], plus up to 88 */
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(-87.3 + 175.3 * (double)i / (double)n);
    t->exp(y, x, n);
    double wexp = 0;
    for (size_t i = 0; i < n; i++) {
        double e = ulp_err(y[i], exp((double)x[i]));
        if (e > wexp)
            wexp = e;
    }
    CHECK(wexp <= 1.5, "%s exp: %.2f ulp from libm", t->name, wexp);
    float ex[3] = { -INFINITY, -100.0f, 0.0f }, ey[3];
    t->exp(ey, ex, 3);
    CHECK(ey[0] == 0.0f && ey[1] == 0.0f && ey[2] == 1.0f, "%s exp: special values", t->name);
    printf("%s exp: %zu values, max %.2f ulp from libm\n", t->name, n, wexp);
    free(x); free(y);
}

/* ---- the same bits for any thread count ----------------------------------------------------- */

static void test_threads(const tier *t, const mae_kernels *k)
{
    int M = 97, N = 3 * t->g->nr + 7, K = t->g->kc + 9;
    size_t MN = (size_t)M * N;
    float *A = fresh((size_t)M * K, -1, 1), *W = fresh((size_t)N * K, -1, 1), *bias = fresh(N, -1, 1);
    float *res = fresh(MN, -1, 1);
    size_t pf = k->pack_floats(N, K);
    float *wp = pf ? tu_malloc(pf * sizeof *wp) : W;
    if (pf)
        k->pack(wp, W, N, K);
    float *o[3];
    for (int i = 0; i < 3; i++) {
        int nt = i + 1;
        exec_buf eb = make_exec(k, nt, 1, N > K ? N : K);
        o[i] = tu_malloc(MN * sizeof *o[i]);
        memcpy(o[i], res, MN * sizeof *o[i]);
        k->linear(&eb.ex, o[i], A, wp, bias, o[i], M, N, K, MAE_ACT_GELU);
        free(eb.mem);
    }
    CHECK(memcmp(o[0], o[1], MN * sizeof(float)) == 0 && memcmp(o[0], o[2], MN * sizeof(float)) == 0,
          "%s linear: 1, 2 and 3 threads differ", t->name);
    for (int tn = 0; tn < 2; tn++) {
        for (int i = 0; i < 2; i++) {
            exec_buf eb = make_exec(k, i + 1, 1, 256);
            memcpy(o[i], res, MN * sizeof(float));
            if (tn)
                k->matmul_tn(&eb.ex, o[i], A, W, M, N, 64, 1);   /* A [64,M], B [64,N] */
            else
                k->matmul_nn(&eb.ex, o[i], A, W, M, N, 64, 1);
            free(eb.mem);
        }
        CHECK(memcmp(o[0], o[1], MN * sizeof(float)) == 0, "%s matmul_%s: 1 and 2 threads differ",
              t->name, tn ? "tn" : "nn");
    }
    /* wide and short: the backward products then split by columns (with 2 and 3 threads) */
    int Mw = 2 * t->g->mr + 3, Nw = 25 * t->g->nr + 5, Kw = t->g->kc + 9;
    size_t MNw = (size_t)Mw * Nw;
    float *Aw = fresh((size_t)Mw * Kw, -1, 1), *Bw = fresh((size_t)Kw * Nw, -1, 1);
    for (int tn = 0; tn < 2; tn++) {
        float *ow[3];
        for (int i = 0; i < 3; i++) {
            exec_buf eb = make_exec(k, i + 1, 1, Nw);
            ow[i] = tu_malloc(MNw * sizeof *ow[i]);
            tu_poison(ow[i], MNw);
            if (tn)
                k->matmul_tn(&eb.ex, ow[i], Aw, Bw, Mw, Nw, Kw, 0);
            else
                k->matmul_nn(&eb.ex, ow[i], Aw, Bw, Mw, Nw, Kw, 0);
            free(eb.mem);
        }
        CHECK(memcmp(ow[0], ow[1], MNw * sizeof(float)) == 0 && memcmp(ow[0], ow[2], MNw * sizeof(float)) == 0,
              "%s matmul_%s %dx%dx%d: 1, 2 and 3 threads differ", t->name, tn ? "tn" : "nn", Mw, Nw, Kw);
        for (int i = 0; i < 3; i++)
            free(ow[i]);
    }
    free(Aw); free(Bw);
    for (int i = 0; i < 3; i++)
        free(o[i]);

    /* attention, exact with probs and flash; LayerNorm */
    int B = 2, T = 45, C = 64, H = 2;
    float *qkv = fresh((size_t)B * T * 3 * C, -2, 2);
    float *ao[2], *pr[2];
    for (int path = 0; path < 2; path++) {
        for (int i = 0; i < 2; i++) {
            exec_buf eb = make_exec(k, i + 1, T, 3 * C);
            ao[i] = tu_malloc((size_t)B * T * C * sizeof(float));
            pr[i] = path ? NULL : tu_malloc((size_t)B * H * T * T * sizeof(float));
            mae_attention_run(t->ai, &eb.ex, ao[i], pr[i], qkv, B, T, C, H, path ? 8 : MAE_FLASH_MIN_T);
            free(eb.mem);
        }
        CHECK(memcmp(ao[0], ao[1], (size_t)B * T * C * sizeof(float)) == 0 &&
              (path || memcmp(pr[0], pr[1], (size_t)B * H * T * T * sizeof(float)) == 0),
              "%s attention (%s): 1 and 2 threads differ", t->name, path ? "flash" : "exact");
        for (int i = 0; i < 2; i++) {
            free(ao[i]);
            free(pr[i]);
        }
    }
    float *ln[2];
    for (int i = 0; i < 2; i++) {
        exec_buf eb = make_exec(k, i + 1, 1, K);
        ln[i] = tu_malloc((size_t)M * K * sizeof(float));
        k->layernorm(&eb.ex, ln[i], NULL, NULL, A, W, W + K, M, K, 1e-6f);
        free(eb.mem);
    }
    CHECK(memcmp(ln[0], ln[1], (size_t)M * K * sizeof(float)) == 0, "%s layernorm: 1 and 2 threads differ", t->name);
    free(ln[0]); free(ln[1]); free(qkv);
    free(A); free(W); free(bias); free(res);
    if (pf)
        free(wp);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static void test_dispatch(const char *self)
{
    const char *best = mae_kernels_name();
    CHECK(mae_kernels_force(NULL) == MAE_ERR_INVALID_ARG, "force(NULL) accepted");
    CHECK(mae_kernels_force("avx9000") == MAE_ERR_UNSUPPORTED, "force(unknown) accepted");
    CHECK(strcmp(mae_kernels_name(), best) == 0, "a failed force changed the table");
    CHECK_OK(mae_kernels_force("scalar"));
    CHECK(strcmp(mae_kernels_name(), "scalar") == 0, "force(scalar) -> %s", mae_kernels_name());
    CHECK_OK(mae_kernels_force(best));
    CHECK(strcmp(mae_kernels_name(), best) == 0, "force(%s) -> %s", best, mae_kernels_name());
    /* the environment variable, read once at first use: ask a child process (through the
     * emulator when the test itself runs under one, see check_neon.sh) */
    const char *runner = getenv("MAE_TEST_RUNNER");
    runner = runner ? runner : "";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "MAE_KERNELS=scalar %s %s --expect scalar", runner, self);
    CHECK(system(cmd) == 0, "MAE_KERNELS=scalar is not obeyed");
    snprintf(cmd, sizeof cmd, "MAE_KERNELS=nonsense %s %s --expect %s", runner, self, best);
    CHECK(system(cmd) == 0, "MAE_KERNELS=nonsense does not fall back to %s", best);
    printf("dispatch: best table '%s'; force and MAE_KERNELS work\n", best);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--expect") == 0)
        return strcmp(mae_kernels_name(), argv[2]) == 0 ? 0 : 1;
    tu_init(argc, argv);
    tu_seed(20240611);
    quick = getenv("MAE_TEST_QUICK") && strcmp(getenv("MAE_TEST_QUICK"), "1") == 0;
    S = mae_kernels_get("scalar");
    CHECK(S != NULL && S == mae_kernels_get("scalar"), "no scalar table");
    TU_RUN("dispatch", test_dispatch(argv[0]));
#if !defined(__x86_64__)
    printf("avx2, avx512: skipped (not built for this architecture)\n");
#endif
#if !defined(__aarch64__)
    printf("neon: skipped (not built for this architecture)\n");
#endif
    for (size_t i = 0; i < NTIERS; i++) {
        const tier *t = &all_tiers[i];
        const mae_kernels *k = mae_kernels_get(t->name);
        if (!k) {
            printf("%s: skipped (CPU lacks %s)\n", t->name, t->name);
            continue;
        }
        CHECK(strcmp(k->name, t->name) == 0, "mae_kernels_get(%s) gave %s", t->name, k->name);
        /* the tier's own kernels are in its table, not the scalar fallback */
        CHECK(k->linear != S->linear && k->attention != S->attention && k->layernorm != S->layernorm &&
              k->gelu != S->gelu && k->add != S->add &&
              k->matmul_nn != S->matmul_nn && k->matmul_tn != S->matmul_tn &&
              k->attention_backward != S->attention_backward && k->gelu_backward != S->gelu_backward &&
              k->layernorm_backward != S->layernorm_backward && k->bias_backward != S->bias_backward &&
              k->backward_scratch_floats != S->backward_scratch_floats && k->unpack != S->unpack &&
              k->adamw != S->adamw && k->loss_patch != S->loss_patch && k->loss_grad != S->loss_grad,
              "%s: an entry falls back to scalar", t->name);
        TU_RUN(tu_name("%s/vmath", t->name), test_vmath(t));
        TU_RUN(tu_name("%s/pack_unpack", t->name), test_pack_unpack(t, k));
        TU_RUN(tu_name("%s/adamw", t->name), test_adamw(t, k));
        TU_RUN(tu_name("%s/loss", t->name), test_loss(t, k));
        TU_RUN(tu_name("%s/linear_shapes", t->name), test_linear_shapes(t, k));
        TU_RUN(tu_name("%s/linear_special", t->name), test_linear_special(t, k));
        TU_RUN(tu_name("%s/matmul", t->name), test_matmul(t, k));
        TU_RUN(tu_name("%s/attention", t->name), test_attention(t, k));
        TU_RUN(tu_name("%s/vector_kernels", t->name), test_vector_kernels(t, k));
        TU_RUN(tu_name("%s/backward_kernels", t->name), test_backward_kernels(t, k));
        TU_RUN(tu_name("%s/threads", t->name), test_threads(t, k));
    }
    return tu_finish("test_kernels");
}
