/* The kernel dispatch table: every numeric inner loop of the model goes through one of these.
 * One table per instruction-set tier; the scalar table is the reference the others are tested
 * against. A table is chosen once (CPUID + XGETBV, or MAE_KERNELS / mae_kernels_force) and each
 * model keeps the table it packed its weights with. */
#ifndef MAE_KERNELS_H
#define MAE_KERNELS_H

#include <stddef.h>

/* Where a kernel may run and the per-thread scratch it may use. Thread t of a parallel loop owns
 * scratch + t * scratch_per_thread (floats). */
typedef struct mae_exec {
    int    nthreads;
    float *scratch;
    size_t scratch_per_thread;
    const struct mae_thread_pool *host;   /* the host's pool, or NULL: the built-in one */
} mae_exec;

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

/* All entries after name are function pointers (dispatch.c relies on it to fill a tier's NULL
 * entries from the scalar table). Initialize tables with designated initializers. */
typedef struct mae_kernels {
    const char *name;   /* "scalar", "avx2", "avx512", "neon" */

    /* Per-thread scratch (floats) the kernels of this table need for sequences of up to max_t
     * tokens and rows up to max_c wide (max_c >= every K and N of the model's linears). */
    size_t (*scratch_floats)(int max_t, int max_c);

    /* Linear layers. W is [N,K] (PyTorch's [out,in]). pack_floats(N,K) == 0 means the kernel
     * reads W as it is; otherwise pack() writes W into the kernel's layout once, at model load. */
    size_t (*pack_floats)(int N, int K);
    void   (*pack)(float *dst, const float *W, int N, int K);

    /* out[M,N] = act(A[M,K]·Wᵀ + bias) + residual. wp is the packed W (or W itself).
     * bias and residual may be NULL; residual may alias out; act is applied before the residual
     * add. Rows are independent: the result for a row does not depend on M or the threads. */
    void (*linear)(const mae_exec *ex, float *out, const float *A, const float *wp,
                   const float *bias, const float *residual, int M, int N, int K, int act);

    /* Multi-head self-attention for B sequences of T tokens. qkv [B,T,3C] is the qkv projection's
     * output (channel s*C + h*hd + e: s in {q,k,v}, head h, dim e); out [B,T,C] (channel h*hd+e)
     * = softmax(q·kᵀ·hd^-0.5)·v per head. probs [B,H,T,T], when not NULL, receives the softmax
     * rows (the backward pass needs them). */
    void (*attention)(const mae_exec *ex, float *out, float *probs, const float *qkv,
                      int B, int T, int C, int H);

    /* Per row of x [N,C]: out = (x-mean)/sqrt(var+eps)*w + b (biased variance). mean and rstd
     * [N] may be NULL; the backward pass wants them. out may alias x. */
    void (*layernorm)(const mae_exec *ex, float *out, float *mean, float *rstd, const float *x,
                      const float *w, const float *b, int N, int C, float eps);

    void (*gelu)(float *y, const float *x, size_t n);              /* exact erf form; y may alias x */
    void (*add)(float *y, const float *a, const float *b, size_t n); /* y may alias a or b */
    void (*softmax)(float *x, int rows, int n);                     /* in place, per row */

    /* Products for the backward pass (B not packed; all dense row-major):
     * matmul_nn: C[M,N] (+)= A[M,K]·B[K,N];  matmul_tn: C[M,N] (+)= A[K,M]ᵀ·B[K,N]. */
    void (*matmul_nn)(const mae_exec *ex, float *C, const float *A, const float *B,
                      int M, int N, int K, int accumulate);
    void (*matmul_tn)(const mae_exec *ex, float *C, const float *A, const float *B,
                      int M, int N, int K, int accumulate);

    /* ---- backward pass (appended; a tier without them gets the scalar ones) ---- */

    /* Per-thread scratch (floats) the backward kernels need, as scratch_floats. A tier that
     * overrides attention_backward must override this too if it needs more than the scalar's. */
    size_t (*backward_scratch_floats)(int max_t, int max_c);

    /* LayerNorm backward for rows x [N,C] with the forward's saved mean and rstd [N]:
     * dx += d(loss)/dx, dw += sum over rows of dy*xhat, db += sum over rows of dy. */
    void (*layernorm_backward)(const mae_exec *ex, float *dx, float *dw, float *db, const float *dy,
                               const float *x, const float *mean, const float *rstd,
                               const float *w, int N, int C);

    /* dx = dy * gelu'(x) (exact erf form); dx may alias dy. */
    void (*gelu_backward)(const mae_exec *ex, float *dx, const float *x, const float *dy, size_t n);

    /* Backward of attention (same layouts as attention): from dout [B,T,C], the forward's qkv
     * [B,T,3C] and its saved probs [B,H,T,T], writes dqkv [B,T,3C] (not accumulated). */
    void (*attention_backward)(const mae_exec *ex, float *dqkv, const float *dout, const float *qkv,
                               const float *probs, int B, int T, int C, int H);

    /* db[c] += sum over the N rows of dy [N,C] (the gradient of a bias). */
    void (*bias_backward)(const mae_exec *ex, float *db, const float *dy, int N, int C);

    /* ---- weights kept only packed (appended) ---- */

    /* The inverse of pack: W [N,K] in PyTorch's layout from packed (pack_floats(N,K) floats).
     * Exact (a permutation of the values). A table whose pack_floats is 0 copies. Packing is by
     * whole panels of pack_floats(1,1) rows: when that width divides N, pack_floats(N,K) == N*K
     * and rows [i*w, (i+1)*w) of W pack into the same floats as they occupy, so a weight can be
     * packed block by block in its own storage (mae_model_pack_slim does). */
    void (*unpack)(float *W, const float *packed, int N, int K);

    /* ---- the optimizer (appended) ---- */

    /* AdamW on n parameters (torch.optim.AdamW's single-tensor path, per element in double):
     *   g' = g * grad_mul;  m1 += (1-b1)(g' - m1);  m2 = b2 m2 + (1-b2) g'^2  (both stored as
     *   float, then used as stored);  w = w * decay - step_size * m1 / (sqrt(m2) / bc2_sqrt + eps).
     * Every tier gives bitwise the scalar result. Single-threaded (the caller splits the work). */
    void (*adamw)(float *w, float *m1, float *m2, const float *g, size_t n, const mae_adamw_hp *h);

    /* ---- the loss (appended) ---- */

    /* One patch of the MAE loss, in double: with norm_pix, first t = (t - mean) / sqrt(var + 1e-6)
     * in place (unbiased var, NaN for n = 1, as torch.var); returns sum of (y[i] - t[i])^2. */
    double (*loss_patch)(float *t, const float *y, int n, int norm_pix);
    /* Its gradient: d = (float)(w * (y - t)), computed in double. */
    void (*loss_grad)(float *d, const float *y, const float *t, double w, size_t n);
} mae_kernels;


/* The active table (chosen on first use). */
const mae_kernels *mae_kernels_active(void);
/* The table for a tier name, or NULL if this build or CPU does not have it. */
const mae_kernels *mae_kernels_get(const char *name);

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
void mae_scalar_adamw(float *w, float *m1, float *m2, const float *g, size_t n, const mae_adamw_hp *h);

#endif
