/* The bf16 linear family (kernels.h, bf16_*; docs/PRECISION.md) of every tier this CPU has:
 * the rounding against an independent nearest-even computation, pack/unpack, and bf16_linear
 * against a double-precision sum of the same bf16-rounded products, with a bound derived from
 * fp32 summation (below), on the fp32 kernel tests' shapes and the ViT-B/16 ones; the fast tiers
 * against the reference; exactness for K = 1; bitwise equality across 1, 2 and 3 threads.
 *
 * The bound. a', w' are the inputs rounded to bf16 (8 significant bits), so every product
 * p = a'·w' has at most 16 significant bits and is exact in fp32 (inputs are kept away from
 * underflow). Both the reference and a fast tier sum the same K exact products in fp32, in
 * different orders; a recursive sum in any order is within γ_K·S of the exact s, S = Σ|p|,
 * γ_K ≈ K·u, u = 2^-24 (one rounding per add, relative error ≤ u). BFDOT under the Arm
 * pseudocode rounds each step to odd (error < 2u), so the fast tiers get c = 2, the reference
 * c = 1. The epilogue adds: x = s + bias (≤ u|x|), GELU (Lipschitz ≤ 1.13 on the sum's error;
 * its own error ≤ 4e-7·|x| as test_kernels bounds the vector GELU), + residual (≤ u|y|):
 *     |y − y_exact| ≤ 1.13·(c·(K+2)·u·S + u·|x|) + 4e-7·|x| + u·|y| + 1e-35.
 * The rounding of the inputs themselves (|a − a'| ≤ 2^-9|a|) is not in the bound: the
 * reference is the double sum of the rounded inputs, so a tier that rounds differently (or not
 * at all) fails (K = 1 checks it exactly). Against the fp32 linear the difference is of order
 * 2^-8·S (docs/PRECISION.md). */
#include "testutil.h"
#include <float.h>
#include "../src/kernels/kernels.h"
#include "../src/kernels/gemm_bf16.h"
#include "../src/model/model.h"
#include <unistd.h>

static const mae_kernels *R;   /* the scalar table: the reference */
static int quick;

/* The fast tiers: the bf16 instruction tiers, and the fp32 SIMD tiers' "wide" families (the
 * packed bf16 widened for the fp32 micro-kernel: the reference's sums in the same k order, so
 * equal to it exactly without GELU, whose vector form may differ by an ulp). */
static const struct { const char *name; int wide; } fast_tiers[] = {
#if defined(__x86_64__)
    { "avx2", 1 }, { "avx512", 1 }, { "avx512_bf16", 0 },
#elif defined(__aarch64__)
    { "neon", 1 }, { "neon_bf16", 0 },
#endif
};
#define NFAST (sizeof fast_tiers / sizeof fast_tiers[0])

typedef struct exec_buf { mae_exec ex; float *mem; } exec_buf;

/* Exactly the scratch the table promises for K (kernels.h: scratch_floats(1, K)), poisoned. */
static exec_buf make_exec(const mae_kernels *k, int nthreads, int K)
{
    exec_buf b;
    memset(&b, 0, sizeof b);
    size_t per = k->scratch_floats(1, K);
    b.mem = tu_malloc((per * nthreads + 1) * sizeof(float));
    tu_poison(b.mem, per * nthreads + 1);
    b.ex.nthreads = nthreads;
    b.ex.scratch = b.mem;
    b.ex.scratch_per_thread = per;
    return b;
}

/* ---- rounding ------------------------------------------------------------------------------ */

/* Nearest bf16 by comparing distances in double: the two neighbours of x among bf16 values
 * (truncation and the next one up in magnitude), ties to the even one. */
static uint16_t nearest_even(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0)
        return (uint16_t)((u >> 16) & 0x8000u);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    double dl = fabs((double)x - mae_bf16_float(lo));
    float fh = mae_bf16_float(hi);
    /* past the largest bf16 the next value up is 2^128 for rounding purposes (then inf) */
    double dh = isinf(fh) ? ldexp(1.0, 128) - fabs((double)x) : fabs((double)x - fh);
    if (dl < dh || (dl == dh && (lo & 1) == 0))
        return lo;
    return hi;
}

static void test_round(void)
{
    struct { float x; uint16_t want; } spot[] = {
        { 1.0f, 0x3f80 }, { -1.0f, 0xbf80 },
        { 1.0f + 0x1p-8f, 0x3f80 },               /* tie, even below */
        { 1.0f + 3 * 0x1p-8f, 0x3f82 },           /* tie, odd below: up */
        { 1.0f + 0x1p-8f + 0x1p-20f, 0x3f81 },    /* above the tie */
        { 1.0f + 0x1p-8f - 0x1p-20f, 0x3f80 },
        { INFINITY, 0x7f80 }, { -INFINITY, 0xff80 },
        { FLT_MAX, 0x7f80 },                      /* rounds up to inf */
        { 0x1p-126f, 0x0080 }, { 1e-40f, 0x0000 }, { -1e-40f, 0x8000 },
        { 0.0f, 0x0000 }, { -0.0f, 0x8000 },
    };
    for (size_t i = 0; i < sizeof spot / sizeof spot[0]; i++)
        CHECK(mae_bf16_round(spot[i].x) == spot[i].want, "round(%a) = %04x, want %04x",
              (double)spot[i].x, mae_bf16_round(spot[i].x), spot[i].want);
    uint16_t n = mae_bf16_round(NAN);
    CHECK(isnan(mae_bf16_float(n)), "round(NaN) is not NaN");
    /* fresh random bit patterns (every exponent), against the distance comparison */
    int bad = 0;
    for (int i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)(tu_uniform() * 4294967296.0);
        float x;
        memcpy(&x, &u, 4);
        if (isnan(x))
            continue;
        uint16_t got = mae_bf16_round(x), want = nearest_even(x);
        if (got != want && bad++ < 5)
            CHECK(0, "round(%a) = %04x, want %04x", (double)x, got, want);
    }
    CHECK(bad == 0, "round: %d of 1e6 random values wrong", bad);
}

/* ---- pack / unpack ------------------------------------------------------------------------- */

static void test_pack(const mae_kernels *k)
{
    int shapes[][2] = { { 1, 1 }, { 31, 7 }, { 32, 8 }, { 33, 9 }, { 12, 5 }, { 100, 127 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], K = shapes[s][1];
        size_t n = (size_t)N * K, np = k->bf16_pack_size(N, K);
        CHECK(np >= n, "%s: pack_size(%d, %d) = %zu < N*K", k->name, N, K, np);
        float *W = tu_malloc(n * sizeof *W), *back = tu_malloc(n * sizeof *back);
        uint16_t *p = tu_malloc(np * sizeof *p);
        tu_fill(W, n, -3, 3);
        memset(p, 0xff, np * sizeof *p);
        k->bf16_pack(p, W, N, K);
        tu_poison(back, n);
        k->bf16_unpack(back, p, N, K);
        int bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += mae_bf16_float(mae_bf16_round(W[i])) != back[i];
        CHECK(bad == 0, "%s: unpack(pack(W)) != bf16(W) at %d of %zu (%dx%d)", k->name, bad, n, N, K);
        free(W); free(back); free(p);
    }
}

/* ---- linear -------------------------------------------------------------------------------- */

typedef struct lin_case {
    int M, N, K, bias, act, res;   /* res: 0 none, 1 separate, 2 aliasing out */
} lin_case;

/* out of tier k for case c on fresh data (A, W, bias, res given); returns the packed weight
 * through *wp so that callers can reuse it. */
static float *run_linear(const mae_kernels *k, int nthreads, const lin_case *c, const float *A,
                         const uint16_t *wp, const float *bias, const float *res)
{
    size_t mn = (size_t)c->M * c->N;
    float *out = tu_malloc((mn + 1) * sizeof *out);
    if (c->res == 2)
        memcpy(out, res, mn * sizeof *out);
    else
        tu_poison(out, mn + 1);
    exec_buf eb = make_exec(k, nthreads, c->K);
    k->bf16_linear(&eb.ex, out, A, wp, c->bias ? bias : NULL,
                   c->res == 1 ? res : c->res == 2 ? out : NULL, c->M, c->N, c->K, c->act);
    free(eb.mem);
    return out;
}

static double gelu_d(double x)
{
    return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
}

/* Checks out against the double reference on bf16-rounded inputs, rows sampled when M is large;
 * c_sum is the bound's summation factor (1 reference, 2 fast tier). Returns failures. */
static int check_exact(const char *who, const lin_case *c, const float *out, const float *A,
                       const float *W, const float *bias, const float *res, double c_sum)
{
    const double u = 0x1p-24;
    int bad = 0, step = c->M > 64 ? c->M / 16 : 1;
    for (int i = 0; i < c->M; i += step)
        for (int j = 0; j < c->N; j++) {
            double s = 0, S = 0;
            for (int k = 0; k < c->K; k++) {
                double p = (double)mae_bf16_float(mae_bf16_round(A[(size_t)i * c->K + k])) *
                           mae_bf16_float(mae_bf16_round(W[(size_t)j * c->K + k]));
                s += p;
                S += fabs(p);
            }
            double x = s + (c->bias ? bias[j] : 0.0);
            double y = c->act == MAE_ACT_GELU ? gelu_d(x) : x;
            y += c->res ? res[(size_t)i * c->N + j] : 0.0;
            double tol = 1.13 * (c_sum * (c->K + 2) * u * S + u * fabs(x)) + 4e-7 * fabs(x) +
                         u * fabs(y) + 1e-35;
            double got = out[(size_t)i * c->N + j];
            if (!(fabs(got - y) <= tol) && bad++ < 3)
                CHECK(0, "%s linear %dx%dx%d (bias %d act %d res %d) [%d,%d] = %.9g, want %.9g ± %.3g",
                      who, c->M, c->N, c->K, c->bias, c->act, c->res, i, j, got, y, tol);
        }
    return bad;
}

static void test_linear(const mae_kernels *k, double c_sum, int exact_ref)
{
    static const int Ms[] = { 1, 2, 5, 9, 10, 11, 21, 39, 40, 41, 50, 97 };
    static const int Ns[] = { 1, 11, 12, 13, 31, 32, 33, 65, 100 };
    static const int Ks[] = { 1, 2, 3, 7, 64, 127, 256, 513 };
    /* the ViT-B/16 MAE linears (encoder 768, decoder 512), rows: batch 1 encoder / decoder */
    static const int vit[][3] = { { 50, 2304, 768 }, { 50, 768, 768 }, { 50, 3072, 768 },
                                  { 50, 768, 3072 }, { 196, 768, 768 }, { 197, 1536, 512 },
                                  { 197, 512, 2048 }, { 197, 768, 512 } };
    int n_cases = 0, failed = 0;
    lin_case cases[400];
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++) {
            size_t ci = (a * 7 + b * 3) % (sizeof Ks / sizeof Ks[0]);
            int v = n_cases;
            cases[n_cases++] = (lin_case){ Ms[a], Ns[b], Ks[ci], v & 1, (v >> 1) % 2, v % 3 };
        }
    for (size_t s = 0; s < sizeof vit / sizeof vit[0]; s++) {
        int v = (int)s;
        cases[n_cases++] = (lin_case){ quick ? 10 : vit[s][0], vit[s][1], vit[s][2], 1, v % 2, v % 3 };
    }
    for (int ci = 0; ci < n_cases; ci++) {
        const lin_case *c = &cases[ci];
        size_t mk = (size_t)c->M * c->K, nk = (size_t)c->N * c->K, mn = (size_t)c->M * c->N;
        float *A = tu_malloc(mk * sizeof *A), *W = tu_malloc(nk * sizeof *W);
        float *bias = tu_malloc((size_t)c->N * sizeof *bias), *res = tu_malloc(mn * sizeof *res);
        tu_fill(A, mk, -2, 2);
        tu_fill(W, nk, -0.1, 0.1);
        tu_fill(bias, (size_t)c->N, -1, 1);
        tu_fill(res, mn, -1, 1);
        uint16_t *wp = tu_malloc(k->bf16_pack_size(c->N, c->K) * sizeof *wp);
        k->bf16_pack(wp, W, c->N, c->K);
        float *out = run_linear(k, 2, c, A, wp, bias, res);
        failed += check_exact(k->name, c, out, A, W, bias, res, c_sum) != 0;
        if (k != R) {
            /* against the reference: both within their bounds of the exact value */
            uint16_t *rp = tu_malloc(R->bf16_pack_size(c->N, c->K) * sizeof *rp);
            R->bf16_pack(rp, W, c->N, c->K);
            float *ref = run_linear(R, 1, c, A, rp, bias, res);
            double rel = tu_rel_l2(out, ref, mn);
            CHECK(rel < 1e-5, "%s linear %dx%dx%d: rel L2 %.3g from the reference", k->name,
                  c->M, c->N, c->K, rel);
            if (exact_ref && c->act == MAE_ACT_NONE) {
                size_t neq = 0;
                for (size_t q = 0; q < mn; q++)
                    neq += out[q] != ref[q];
                CHECK(neq == 0, "%s linear %dx%dx%d: %zu elements differ from the reference "
                      "(same products, same order: must be equal)", k->name, c->M, c->N, c->K, neq);
            }
            free(ref); free(rp);
        }
        if (ci % 5 == 0 || c->M >= 50) {
            for (int t = 1; t <= 3; t += 2) {
                float *o2 = run_linear(k, t, c, A, wp, bias, res);
                CHECK(memcmp(o2, out, mn * sizeof *out) == 0, "%s linear %dx%dx%d: %d and 2 threads differ",
                      k->name, c->M, c->N, c->K, t);
                free(o2);
            }
        }
        free(out); free(wp); free(A); free(W); free(bias); free(res);
    }
    CHECK(failed == 0, "%s: %d of %d linear cases out of bound", k->name, failed, n_cases);
    printf("%s linear: %d cases (bf16 bound, c = %.0f)\n", k->name, n_cases, c_sum);
}

/* K = 1: out = a'·w' exactly (one exact product, no sum), whatever the order; values chosen
 * not to be bf16 so that a tier that does not round A (or rounds it another way) fails. */
static void test_k1(const mae_kernels *k)
{
    int M = 23, N = 45;
    float *A = tu_malloc((size_t)M * sizeof *A), *W = tu_malloc((size_t)N * sizeof *W);
    tu_fill(A, (size_t)M, 1, 2);
    tu_fill(W, (size_t)N, -2, -1);
    uint16_t *wp = tu_malloc(k->bf16_pack_size(N, 1) * sizeof *wp);
    k->bf16_pack(wp, W, N, 1);
    lin_case c = { M, N, 1, 0, 0, 0 };
    float *out = run_linear(k, 2, &c, A, wp, NULL, NULL);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            bad += out[(size_t)i * N + j] !=
                   mae_bf16_float(mae_bf16_round(A[i])) * mae_bf16_float(mae_bf16_round(W[j]));
    CHECK(bad == 0, "%s: K = 1 not exactly a'·w' at %d of %d", k->name, bad, M * N);
    /* a zero row gives exactly the bias, a NaN stays in its row */
    int K = 37;
    float *A2 = tu_malloc((size_t)3 * K * sizeof *A2), *W2 = tu_malloc((size_t)N * K * sizeof *W2);
    float *b2 = tu_malloc((size_t)N * sizeof *b2);
    tu_fill(A2, (size_t)3 * K, -1, 1);
    tu_fill(W2, (size_t)N * K, -1, 1);
    tu_fill(b2, (size_t)N, -1, 1);
    for (int q = 0; q < K; q++)
        A2[q] = (q & 1) ? -0.0f : 0.0f;
    A2[2 * K + 5] = NAN;
    uint16_t *wp2 = tu_malloc(k->bf16_pack_size(N, K) * sizeof *wp2);
    k->bf16_pack(wp2, W2, N, K);
    lin_case c2 = { 3, N, K, 1, 0, 0 };
    float *o2 = run_linear(k, 1, &c2, A2, wp2, b2, NULL);
    int zero_ok = 1, nan_ok = 1, mid_ok = 1;
    for (int j = 0; j < N; j++) {
        zero_ok &= o2[j] == b2[j];
        mid_ok &= !isnan(o2[N + j]);
        nan_ok &= isnan(o2[2 * N + j]) != 0;
    }
    CHECK(zero_ok, "%s: a zero row does not give exactly the bias", k->name);
    CHECK(mid_ok && nan_ok, "%s: a NaN does not stay in its row", k->name);
    free(A); free(W); free(wp); free(out);
    free(A2); free(W2); free(b2); free(wp2); free(o2);
}

/* ---- a model that computes in bf16 --------------------------------------------------------- */

typedef struct fwd_out { float *pred, *latent, loss; size_t np, nl; } fwd_out;

static fwd_out forward(const mae_model *m, const float *img, const float *noise, int B, int threads)
{
    fwd_out o = { NULL, NULL, NAN, 0, 0 };
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c));
    if (!c)
        return o;
    CHECK_OK(mae_ctx_set_threads(c, threads));
    int L = 0, keep = 0, P = 0;
    CHECK_OK(mae_ctx_get_dims(c, &L, &keep, &P));
    o.np = (size_t)B * L * P;
    o.nl = (size_t)B * (1 + keep) * m->cfg.D;
    o.pred = tu_malloc(o.np * sizeof *o.pred);
    o.latent = tu_malloc(o.nl * sizeof *o.latent);
    tu_poison(o.pred, o.np);
    tu_poison(o.latent, o.nl);
    CHECK_OK(mae_forward(c, img, B, noise, &o.loss, o.pred, NULL, o.latent));
    mae_ctx_free(c);
    return o;
}

static void free_out(fwd_out *o) { free(o->pred); free(o->latent); }

/* The bf16 forward of m (a copy made from path or cfg) against its fp32 forward: relative L2 of
 * pred, latent and the loss; the weights' storage; threads; save and load. */
static void check_model(const char *tag, mae_model *f32, mae_model *b16, int B, double aim)
{
    int prec = -1;
    CHECK_OK(mae_model_get_precision(f32, &prec));
    CHECK(prec == MAE_PRECISION_F32, "%s: a new model is not F32", tag);
    size_t before = b16->lay.total;
    CHECK_OK(mae_model_set_precision(b16, MAE_PRECISION_BF16));
    CHECK_OK(mae_model_get_precision(b16, &prec));
    CHECK(prec == MAE_PRECISION_BF16, "%s: precision not BF16 after setting it", tag);
    CHECK_OK(mae_model_set_precision(b16, MAE_PRECISION_BF16));   /* again: nothing to do */
    double ratio = (double)b16->lay.total / (double)before;
    size_t n32 = 0, n16 = 1;
    CHECK_OK(mae_model_num_params(f32, &n32));
    CHECK_OK(mae_model_num_params(b16, &n16));
    CHECK(n32 == n16, "%s: num_params %zu as bf16, %zu as f32", tag, n16, n32);
    /* every tensor: linear weights are bf16(W) exactly, the others unchanged */
    int bad = 0, linears = 0;
    for (int i = 0; i < f32->n_tensors; i++) {
        const mae_tensor *t = &f32->tensors[i];
        const float *p = NULL, *q = NULL;
        size_t n = 0;
        CHECK_OK(mae_model_tensor(f32, t->name, &p, &n, NULL, NULL));
        CHECK_OK(mae_model_tensor(b16, t->name, &q, NULL, NULL, NULL));
        int lin = b16->tensors[i].in_place;
        linears += lin;
        for (size_t j = 0; p && q && j < n; j++) {
            float want = lin ? mae_bf16_float(mae_bf16_round(p[j])) : p[j];
            bad += memcmp(&want, &q[j], sizeof want) != 0;
        }
    }
    CHECK(bad == 0, "%s: %d tensor values are not bf16(W) (or changed)", tag, bad);
    CHECK(linears == 4 * (f32->cfg.depth + (f32->cfg.has_decoder ? f32->cfg.ddepth : 0)) + 1 +
                     (f32->cfg.has_decoder ? 2 : 0), "%s: %d linear weights held as bf16", tag, linears);

    int L = f32->cfg.L;
    size_t nimg = (size_t)B * f32->cfg.C * f32->cfg.ih * f32->cfg.iw;
    float *img = tu_malloc(nimg * sizeof *img), *noise = tu_malloc((size_t)B * L * sizeof *noise);
    tu_fill(img, nimg, -2, 2);
    tu_fill(noise, (size_t)B * L, 0, 1);
    fwd_out a = forward(f32, img, noise, B, 2), b = forward(b16, img, noise, B, 2);
    fwd_out b1 = forward(b16, img, noise, B, 1), b3 = forward(b16, img, noise, B, 3);
    double ep = tu_rel_l2(b.pred, a.pred, a.np), el = tu_rel_l2(b.latent, a.latent, a.nl);
    double eloss = fabs((double)b.loss - a.loss) / fabs((double)a.loss);
    printf("%s (%s): bf16 vs fp32 rel L2 pred %.3g, latent %.3g, loss %.3g; weights held in "
           "%.3f of the fp32 floats\n", tag, b16->k->name, ep, el, eloss, ratio);
    CHECK(ep <= aim && el <= aim, "%s: bf16 forward rel L2 pred %.3g latent %.3g > %g", tag, ep, el, aim);
    CHECK(ep > 0 && el > 0, "%s: the bf16 forward equals the fp32 one: not computed in bf16", tag);
    CHECK(memcmp(b1.pred, b.pred, b.np * sizeof *b.pred) == 0 &&
          memcmp(b3.pred, b.pred, b.np * sizeof *b.pred) == 0 &&
          memcmp(b1.latent, b.latent, b.nl * sizeof *b.latent) == 0,
          "%s: the bf16 forward depends on the thread count", tag);

    /* save writes BF16 (half the file): loaded, every tensor is bf16 of the bf16 model's (the
     * norms, biases and position tables rounded too); saved as F32, loaded and set to bf16 it
     * computes the same bits */
    char path[128], p32[128];
    snprintf(path, sizeof path, "/tmp/mae_test_bf16_%d_%s.safetensors", (int)getpid(), tag);
    snprintf(p32, sizeof p32, "/tmp/mae_test_bf16_%d_%s_f32.safetensors", (int)getpid(), tag);
    CHECK_OK(mae_model_save(b16, path));
    CHECK_OK(mae_model_save(f32, p32));
    FILE *fa = fopen(path, "rb"), *fb = fopen(p32, "rb");
    long sa = -1, sb = -1;
    if (fa && fb) {
        fseek(fa, 0, SEEK_END); sa = ftell(fa);
        fseek(fb, 0, SEEK_END); sb = ftell(fb);
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    CHECK(sa > 0 && sb > 0 && (double)sa < 0.52 * (double)sb + 65536,
          "%s: the bf16 model's file (%ld bytes) is not BF16 (fp32: %ld)", tag, sa, sb);
    mae_model *l = NULL;
    CHECK_OK(mae_model_load(path, &l));
    if (l) {
        int diff = 0;
        for (int i = 0; i < l->n_tensors; i++) {
            const float *p = NULL, *q = NULL;
            size_t n = 0;
            CHECK_OK(mae_model_tensor(b16, l->tensors[i].name, &p, &n, NULL, NULL));
            CHECK_OK(mae_model_tensor(l, l->tensors[i].name, &q, NULL, NULL, NULL));
            for (size_t j = 0; p && q && j < n; j++)
                diff += mae_bf16_float(mae_bf16_round(p[j])) != q[j];
        }
        CHECK(diff == 0, "%s: the saved bf16 model's file holds %d other values", tag, diff);
        mae_model_free(l);
        l = NULL;
    }
    CHECK_OK(mae_model_save_as(b16, path, "F32"));
    CHECK_OK(mae_model_load(path, &l));
    if (l) {
        CHECK_OK(mae_model_set_precision(l, MAE_PRECISION_BF16));
        fwd_out c = forward(l, img, noise, B, 2);
        CHECK(c.pred && memcmp(c.pred, b.pred, b.np * sizeof *b.pred) == 0 &&
              memcmp(c.latent, b.latent, b.nl * sizeof *b.latent) == 0,
              "%s: saved as F32, loaded and set to bf16 it computes other values", tag);
        free_out(&c);
        mae_model_free(l);
    }
    remove(path); remove(p32);
    free_out(&a); free_out(&b); free_out(&b1); free_out(&b3);
    free(img); free(noise);
}

static void test_model_rules(void)
{
    mae_config cfg;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    mae_model *m = NULL;
    CHECK_OK(mae_model_create(&cfg, 5, &m));
    if (!m)
        return;
    EXPECT(mae_model_set_precision(NULL, MAE_PRECISION_BF16), MAE_ERR_INVALID_ARG);
    EXPECT(mae_model_set_precision(m, 7), MAE_ERR_INVALID_ARG);
    EXPECT(mae_model_get_precision(m, NULL), MAE_ERR_INVALID_ARG);
    CHECK_OK(mae_model_set_precision(m, MAE_PRECISION_F32));   /* what it has */
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, 1, &c));
    EXPECT(mae_model_set_precision(m, MAE_PRECISION_BF16), MAE_ERR_STATE);
    int prec = -1;
    CHECK_OK(mae_model_get_precision(m, &prec));
    CHECK(prec == MAE_PRECISION_F32, "a refused conversion changed the precision");
    mae_ctx_free(c);
    CHECK_OK(mae_model_set_precision(m, MAE_PRECISION_BF16));
    EXPECT(mae_model_set_precision(m, MAE_PRECISION_F32), MAE_ERR_UNSUPPORTED);
    mae_trainer *t = NULL;
    CHECK_OK(mae_trainer_create(m, 1, &t));   /* mixed precision: tests/test_mixed.c */
    mae_trainer_free(t);
    mae_model_free(m);
    /* a model that has had a trainer stays fp32 */
    CHECK_OK(mae_model_create(&cfg, 5, &m));
    CHECK_OK(mae_trainer_create(m, 1, &t));
    EXPECT(mae_model_set_precision(m, MAE_PRECISION_BF16), MAE_ERR_STATE);
    mae_trainer_free(t);
    mae_model_free(m);
}

static void test_model_created(const char *preset, int B, int qkv_bias)
{
    mae_config cfg;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, preset));
    cfg.qkv_bias = qkv_bias;
    mae_model *a = NULL, *b = NULL;
    CHECK_OK(mae_model_create(&cfg, 3, &a));
    CHECK_OK(mae_model_create(&cfg, 3, &b));
    if (a && b)
        check_model(preset, a, b, B, 1e-2);
    mae_model_free(a); mae_model_free(b);
}

/* Without q/k/v biases and with every block the library allocates filled with NaN bytes first:
 * the conversion must write (or zero) every float a forward reads, the layout's reserved q/k/v
 * bias slots included. */
static void test_model_junk(void)
{
    tu_alloc_reset();
    tu_alloc.junk = 1;
    CHECK_OK(tu_alloc_install());
    test_model_created("tiny", 2, 0);
    mae_set_allocator(NULL);
}

static void test_model_file(const char *rel)
{
    mae_model *a = NULL, *b = NULL;
    CHECK_OK(mae_model_load(tu_path(rel), &a));
    CHECK_OK(mae_model_load(tu_path(rel), &b));
    if (a && b)
        check_model("mae-fmnist", a, b, 8, 1e-2);
    mae_model_free(a); mae_model_free(b);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(20261204);
    quick = getenv("MAE_TEST_QUICK") && strcmp(getenv("MAE_TEST_QUICK"), "1") == 0;
    R = mae_kernels_get("scalar");
    CHECK(R != NULL, "no scalar table");
    TU_RUN("round", test_round());
    TU_RUN("scalar/pack", test_pack(R));
    TU_RUN("scalar/k1", test_k1(R));
    TU_RUN("scalar/linear", test_linear(R, 1, 0));
#if !defined(__x86_64__)
    printf("avx512_bf16: skipped (not built for this architecture)\n");
#endif
#if !defined(__aarch64__)
    printf("neon_bf16: skipped (not built for this architecture)\n");
#endif
    for (size_t i = 0; i < NFAST; i++) {
        const char *name = fast_tiers[i].name;
        const mae_kernels *k = mae_kernels_get(name);
        if (!k) {
            printf("%s: skipped (CPU lacks %s)\n", name,
                   strcmp(name, "neon_bf16") == 0 ? "the Arm BF16 extension (HWCAP2_BF16)"
                   : strcmp(name, "avx512_bf16") == 0 ? "AVX512_BF16 (CPUID.(7,1).EAX[5])" : name);
            continue;
        }
        CHECK(strcmp(k->name, name) == 0, "mae_kernels_get(%s) gave %s", name, k->name);
        CHECK(k->bf16_linear != R->bf16_linear && k->bf16_pack != R->bf16_pack &&
              k->bf16_unpack != R->bf16_unpack && k->bf16_pack_size != R->bf16_pack_size,
              "%s: a bf16 entry falls back to the reference", k->name);
        CHECK(k->linear != R->linear, "%s: its fp32 entries are not its base tier's", k->name);
        TU_RUN(tu_name("%s/pack", k->name), test_pack(k));
        TU_RUN(tu_name("%s/k1", k->name), test_k1(k));
        TU_RUN(tu_name("%s/linear", k->name), test_linear(k, fast_tiers[i].wide ? 1 : 2, fast_tiers[i].wide));
    }
    TU_RUN("model/rules", test_model_rules());
    TU_RUN("model/tiny", test_model_created("tiny", 2, 1));
    TU_RUN("model/tiny-junk", test_model_junk());
    if (!quick)
        TU_RUN("model/fmnist", test_model_file("examples/data/mae-fmnist.safetensors"));
    /* ViT-B/16 with random weights: minutes on the reference tier, so on request
     * (MAE_TEST_VIT=1; docs/PRECISION.md has its numbers) */
    if (getenv("MAE_TEST_VIT") && strcmp(getenv("MAE_TEST_VIT"), "1") == 0)
        TU_RUN("model/base", test_model_created("base", 1, 1));
    return tu_finish("test_bf16");
}
