/* The kernel dispatch table: every numeric inner loop of the model goes through one of these.
 * One table per instruction-set tier; the scalar table is the reference the others are tested
 * against. A table is chosen once (CPUID + XGETBV, or MAE_KERNELS / mae_kernels_force) and each
 * model keeps the table it packed its weights with. */
#ifndef MAE_KERNELS_H
#define MAE_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "../util/util.h"   /* mae_exec: where a kernel runs */


enum { MAE_ACT_NONE = 0, MAE_ACT_GELU = 1 };

/* AdamW's per-step constants (src/model/optim.c fills them). */
typedef struct mae_adamw_hp {
    double grad_mul;                          /* gradient scale (clipping), 1 if none */
    double one_minus_beta1, beta2, one_minus_beta2;
    double decay;                             /* 1 - lr * weight_decay, or 1 without decay */
    double step_size;                         /* lr / (1 - beta1^step) */
    double bc2_sqrt;                          /* sqrt(1 - beta2^step) */
    double eps;
} mae_adamw_hp;

/* The table, by topic. The scalar table (scalar.c) sets every entry: it is the reference. A tier
 * sets what it does faster; an entry marked "(optional: NULL → scalar)" may be left NULL and
 * dispatch.c fills it from the scalar table, so a new tier can start empty and grow. Initialize
 * tables with designated initializers; adding an entry: docs/ARCHITECTURE.md. */
typedef struct mae_kernels {
    const char *name;   /* "scalar", "avx2", "avx512", "neon", "avx512_bf16", "neon_bf16" (required) */

    /* ---- memory ---- */

    /* Per-thread scratch (floats) the kernels of this table need for sequences of up to max_t
     * tokens and rows up to max_c wide (max_c >= every K and N of the model's linears).
     * (optional: NULL → scalar; a tier whose kernels need more must set it) */
    size_t (*scratch_floats)(int max_t, int max_c);

    /* Per-thread scratch (floats) the backward kernels need, as scratch_floats.
     * (optional: NULL → scalar; a tier that sets attention_backward and needs more must set it) */
    size_t (*backward_scratch_floats)(int max_t, int max_c);

    /* ---- linear layers and matrix products ---- */

    /* W is [N,K] (PyTorch's [out,in]). pack_floats(N,K) == 0 means the kernel reads W as it is;
     * otherwise pack() writes W into the kernel's layout once, at model load.
     * (optional: NULL → scalar, as a set of three: pack_floats, pack and unpack go together, and
     * linear reads what they write) */
    size_t (*pack_floats)(int N, int K);
    void   (*pack)(float *dst, const float *W, int N, int K);

    /* The inverse of pack: W [N,K] in PyTorch's layout from packed (pack_floats(N,K) floats).
     * Exact (a permutation of the values). A table whose pack_floats is 0 copies. Packing is by
     * whole panels of pack_floats(1,1) rows: when that width divides N, pack_floats(N,K) == N*K
     * and rows [i*w, (i+1)*w) of W pack into the same floats as they occupy, so a weight can be
     * packed block by block in its own storage (mae_model_pack_slim does).
     * (optional: NULL → scalar, with pack) */
    void (*unpack)(float *W, const float *packed, int N, int K);

    /* out[M,N] = act(A[M,K]·Wᵀ + bias) + residual. wp is the packed W (or W itself).
     * bias and residual may be NULL; residual may alias out; act is applied before the residual
     * add. Rows are independent: the result for a row does not depend on M or the threads.
     * (optional: NULL → scalar, with pack) */
    void (*linear)(const mae_exec *ex, float *out, const float *A, const float *wp,
                   const float *bias, const float *residual, int M, int N, int K, int act);

    /* Products for the backward pass (B not packed; all dense row-major):
     * matmul_nn: C[M,N] (+)= A[M,K]·B[K,N];  matmul_tn: C[M,N] (+)= A[K,M]ᵀ·B[K,N].
     * (optional: NULL → scalar) */
    void (*matmul_nn)(const mae_exec *ex, float *C, const float *A, const float *B,
                      int M, int N, int K, int accumulate);
    void (*matmul_tn)(const mae_exec *ex, float *C, const float *A, const float *B,
                      int M, int N, int K, int accumulate);

    /* ---- attention ---- */

    /* Multi-head self-attention for B sequences of T tokens. qkv [B,T,3C] is the qkv projection's
     * output (channel s*C + h*hd + e: s in {q,k,v}, head h, dim e); out [B,T,C] (channel h*hd+e)
     * = softmax(q·kᵀ·hd^-0.5)·v per head. probs [B,H,T,T], when not NULL, receives the softmax
     * rows (the backward pass needs them). (optional: NULL → scalar) */
    void (*attention)(const mae_exec *ex, float *out, float *probs, const float *qkv,
                      int B, int T, int C, int H);

    /* Backward of attention (same layouts as attention): from dout [B,T,C], the forward's qkv
     * [B,T,3C] and its saved probs [B,H,T,T], writes dqkv [B,T,3C] (not accumulated).
     * (optional: NULL → scalar) */
    void (*attention_backward)(const mae_exec *ex, float *dqkv, const float *dout, const float *qkv,
                               const float *probs, int B, int T, int C, int H);

    /* ---- normalization and element-wise ---- */

    /* Per row of x [N,C]: out = (x-mean)/sqrt(var+eps)*w + b (biased variance). mean and rstd
     * [N] may be NULL; the backward pass wants them. out may alias x. (optional: NULL → scalar) */
    void (*layernorm)(const mae_exec *ex, float *out, float *mean, float *rstd, const float *x,
                      const float *w, const float *b, int N, int C, float eps);

    /* LayerNorm backward for rows x [N,C] with the forward's saved mean and rstd [N]:
     * dx += d(loss)/dx, dw += sum over rows of dy*xhat, db += sum over rows of dy.
     * (optional: NULL → scalar) */
    void (*layernorm_backward)(const mae_exec *ex, float *dx, float *dw, float *db, const float *dy,
                               const float *x, const float *mean, const float *rstd,
                               const float *w, int N, int C);

    void (*gelu)(float *y, const float *x, size_t n);   /* exact erf form; y may alias x (optional: NULL → scalar) */
    /* dx = dy * gelu'(x) (exact erf form); dx may alias dy. (optional: NULL → scalar) */
    void (*gelu_backward)(const mae_exec *ex, float *dx, const float *x, const float *dy, size_t n);

    void (*add)(float *y, const float *a, const float *b, size_t n);   /* y may alias a or b (optional: NULL → scalar) */
    /* db[c] += sum over the N rows of dy [N,C] (the gradient of a bias). (optional: NULL → scalar) */
    void (*bias_backward)(const mae_exec *ex, float *db, const float *dy, int N, int C);

    /* ---- the loss ---- */

    /* One patch of the MAE loss, in double: with norm_pix, first t = (t - mean) / sqrt(var + 1e-6)
     * in place (unbiased var, NaN for n = 1, as torch.var); returns sum of (y[i] - t[i])^2.
     * (optional: NULL → scalar) */
    double (*loss_patch)(float *t, const float *y, int n, int norm_pix);
    /* Its gradient: d = (float)(w * (y - t)), computed in double. (optional: NULL → scalar) */
    void (*loss_grad)(float *d, const float *y, const float *t, double w, size_t n);

    /* ---- the optimizer ---- */

    /* AdamW on n parameters (torch.optim.AdamW's single-tensor path, per element in double):
     *   g' = g * grad_mul;  m1 += (1-b1)(g' - m1);  m2 = b2 m2 + (1-b2) g'^2  (both stored as
     *   float, then used as stored);  w = w * decay - step_size * m1 / (sqrt(m2) / bc2_sqrt + eps).
     * Every tier gives bitwise the scalar result. Single-threaded (the caller splits the work).
     * (optional: NULL → scalar) */
    void (*adamw)(float *w, float *m1, float *m2, const float *g, size_t n, const mae_adamw_hp *h);

    /* ---- bf16 linear layers (docs/PRECISION.md) ---- */

    /* The bf16 family, as the fp32 pack/unpack/linear above: W [N,K] is rounded to bf16 (round
     * to nearest even; a result below bf16's normal range becomes a signed zero, as the bf16 dot
     * product instructions read it: mae_bf16_round) and packed once into bf16_pack_size(N,K)
     * uint16 values in the table's layout. bf16_unpack writes the rounded W back as floats
     * (exact). bf16_linear: out[M,N] = act(A'·W'ᵀ + bias) + residual, where A' is A rounded to
     * bf16 the same way and every product a'·w' is exact in fp32, summed in fp32; bias, GELU and
     * residual are the fp32 epilogue of linear (same aliasing rules). The reference (scalar) sums
     * in k order; a fast tier sums the same products in another fixed order. Rows are
     * independent, results do not depend on the thread count. Per-thread scratch: at most
     * scratch_floats(1, K). (optional: NULL → scalar, the four together) */
    size_t (*bf16_pack_size)(int N, int K);
    void   (*bf16_pack)(uint16_t *dst, const float *W, int N, int K);
    void   (*bf16_unpack)(float *W, const uint16_t *packed, int N, int K);
    void   (*bf16_linear)(const mae_exec *ex, float *out, const float *A, const uint16_t *wp,
                          const float *bias, const float *residual, int M, int N, int K, int act);
} mae_kernels;

/* Every entry after name, once: dispatch.c fills a tier's NULL entries from this list, and
 * asserts that it covers the struct (an entry added above but not here fails to compile). */
#define MAE_KERNEL_ENTRIES(X) \
    X(scratch_floats) X(backward_scratch_floats) \
    X(pack_floats) X(pack) X(unpack) X(linear) X(matmul_nn) X(matmul_tn) \
    X(attention) X(attention_backward) \
    X(layernorm) X(layernorm_backward) X(gelu) X(gelu_backward) X(add) X(bias_backward) \
    X(loss_patch) X(loss_grad) \
    X(adamw) \
    X(bf16_pack_size) X(bf16_pack) X(bf16_unpack) X(bf16_linear)


/* The active table (chosen on first use). */
const mae_kernels *mae_kernels_active(void);
/* The table for a tier name, or NULL if this build or CPU does not have it. */
const mae_kernels *mae_kernels_get(const char *name);

/* The table a model computing in bf16 uses with k: the bf16 tier built on k ("avx512_bf16" on
 * "avx512", "neon_bf16" on "neon") when the CPU has it, else k itself (whose bf16 entries are
 * the reference's). */
const mae_kernels *mae_kernels_bf16(const mae_kernels *k);
/* The table a bf16 model packs and runs with: mae_kernels_bf16(k) with pack_floats, pack,
 * unpack and linear replaced by its bf16 family (the packed bf16 held in float storage, half the
 * floats; src/kernels/gemm_bf16.h). NULL if k is not a table from mae_kernels_get/active. */
const mae_kernels *mae_kernels_bf16_view(const mae_kernels *k);

extern const mae_kernels mae_kernels_scalar;

/* The scalar backward kernels (backward_scalar.c), named so the scalar table can refer to them. */
size_t mae_scalar_backward_scratch_floats(int max_t, int max_c);
void mae_scalar_layernorm_backward(const mae_exec *ex, float *dx, float *dw, float *db,
                                   const float *dy, const float *x, const float *mean,
                                   const float *rstd, const float *w, int N, int C);
void mae_scalar_gelu_backward(const mae_exec *ex, float *dx, const float *x, const float *dy, size_t n);
void mae_scalar_attention_backward(const mae_exec *ex, float *dqkv, const float *dout,
                                   const float *qkv, const float *probs, int B, int T, int C, int H);
void mae_scalar_bias_backward(const mae_exec *ex, float *db, const float *dy, int N, int C);
/* The scalar AdamW (scalar.c): the reference, and the SIMD tiers' tail. */
/* bf16 (gemm_bf16.c): x rounded to the nearest bf16, ties to even; NaN stays a (quiet) NaN; a
 * value whose bf16 is subnormal becomes a signed zero (the bf16 dot product instructions treat
 * subnormal inputs as zero). mae_bf16_float widens exactly. */
uint16_t mae_bf16_round(float x);
float    mae_bf16_float(uint16_t b);

void mae_scalar_adamw(float *w, float *m1, float *m2, const float *g, size_t n, const mae_adamw_hp *h);

#endif
