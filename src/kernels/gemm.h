/* The blocked matrix product shared by every SIMD tier (gemm.c), BLIS-style: cache blocks and
 * packed panels around a register micro-kernel. Only the micro-kernel and the block sizes differ
 * between tiers; the loops, the packing and the split over threads are written once here.
 *
 * Packed layouts (all zero-padded to whole panels):
 *   A micro-panel: mr rows of A, k-major: a[k*mr + i]
 *   B panel:       nr columns of B, k-major: b[k*nr + j]; a packed weight W [N,K] is ceil(N/nr)
 *                  such panels of all K rows, panel p at p*K*nr.
 *
 * Every output element is computed by the same sequence of operations whatever the thread count
 * or its position in a tile: per k block of fixed size kc, one accumulator summed in k order by
 * FMA, then added to the partial result of the earlier blocks. Results are therefore bitwise
 * identical for any thread count. */
#ifndef MAE_GEMM_H
#define MAE_GEMM_H

#include <stddef.h>
#include "kernels.h"

/* What the micro-kernel does with its tile after the products, in this order:
 * x = acc; if beta: x = c + x; if bias: x += bias[j]; if act: x = gelu(x); if res: x += res[i,j]. */
typedef struct mae_epi {
    const float *bias;   /* at the tile's first column, or NULL */
    const float *res;    /* at the tile's first element, or NULL */
    size_t ldr;          /* row stride of res */
    int act;             /* MAE_ACT_NONE or MAE_ACT_GELU */
    int beta;            /* add the current contents of c first */
} mae_epi;

/* c[i*ldc + j] (i < mr, j < nr) = epilogue(sum over k < kc of a[k*MR + i] * b[k*NR + j]).
 * a and b are packed micro-panels of the tier's full MR and NR; only mr x nr is written. */
typedef void (*mae_ukr_fn)(int kc, const float *a, const float *b, float *c, size_t ldc,
                           int mr, int nr, const mae_epi *e);

/* A tier's micro-kernel and block sizes. mc is a multiple of mr, nc of nr. */
typedef struct mae_gemm_isa {
    int mr, nr;          /* micro-tile */
    int kc;              /* k block: a B micro-panel (kc*nr) stays in L1 */
    int mc;              /* m block: a packed A block (mc*kc) stays in L2 */
    int nc;              /* column block: the C block (mc*nc) stays in L2 across k blocks, and a
                          * packed B block is kc*nc */
    int prefetch_b;      /* fetch the next prepacked weight panel during the current one, a slice
                          * per micro-kernel call (weights stream from memory); 0 leaves it to the
                          * hardware prefetcher, which measured faster with long k blocks */
    mae_ukr_fn ukr;
    /* Optional edge kernel for a last panel of at most mr/2 rows, over two B panels (b0 whole,
     * b1 with nr1 columns, the second tile at c + nr); NULL: ukr does those panels. */
    void (*ukr_half)(int kc, const float *a, const float *b0, const float *b1, float *c, size_t ldc,
                     int mr, int nr1, const mae_epi *e);
    /* Packs one whole micro-panel: d[k*mr + i] = a[i*lda + k] for i < mr, k < kc (the common
     * case of mae_pack_a, unrolled for the tier's mr). */
    void (*pack_panel)(float *d, const float *a, size_t lda, int kc);
    /* Whole micro-panels from A stored transposed, row by row of A: panel p (columns p*mr ..)
     * goes to d + p*mr*kc, d[p*mr*kc + k*mr + i] = a[k*lda + p*mr + i]. */
    void (*pack_panels_t)(float *d, const float *a, size_t lda, int panels, int kc);
    /* A plain transpose: d[k*ldd + i] = a[i*lda + k] for i < rows, k < cols (attention's Qᵀ
     * panel and its output rows). */
    void (*transpose)(float *d, size_t ldd, const float *a, size_t lda, int rows, int cols);
} mae_gemm_isa;

/* Per-thread scratch (floats) the products need for K up to max_k. matmul_nn/tn run with it,
 * and faster with the backward size, which lets them pack B for up to max_n columns at once. */
size_t mae_gemm_scratch_floats(const mae_gemm_isa *g, int max_k);
size_t mae_gemm_backward_scratch_floats(const mae_gemm_isa *g, int max_k, int max_n);

/* Sets this process's block sizes (mc, kc, nc, prefetch 0/1 or -1: the tier's), for tests and
 * measurements; mc 0: back to MAE_BLOCKING or the CPU's. Scratch sizes follow: call it before
 * sizing any scratch. The tier's struct stays as it is; the driver applies them per call. */
void mae_gemm_force_blocking(int mc, int kc, int nc, int prefetch);

/* Weight packing for linear: pack_floats(N,K) floats hold W [N,K] as B panels. */
size_t mae_gemm_pack_floats(const mae_gemm_isa *g, int N, int K);
void   mae_gemm_pack(const mae_gemm_isa *g, float *dst, const float *W, int N, int K);
void   mae_gemm_unpack(const mae_gemm_isa *g, float *W, const float *packed, int N, int K);

/* The table entries (same contracts as kernels.h). */
void mae_gemm_linear(const mae_gemm_isa *g, const mae_exec *ex, float *out, const float *A,
                     const float *wp, const float *bias, const float *residual,
                     int M, int N, int K, int act);
void mae_gemm_nn(const mae_gemm_isa *g, const mae_exec *ex, float *C, const float *A,
                 const float *B, int M, int N, int K, int accumulate);
void mae_gemm_tn(const mae_gemm_isa *g, const mae_exec *ex, float *C, const float *A,
                 const float *B, int M, int N, int K, int accumulate);

/* Packing helpers, also used by the attention kernels (gemm.c). */
/* mr-row micro-panels of A rows [m0, m0+m) and columns [k0, k0+kc); A[i*lda + k], or
 * A[k*lda + i] when trans. */
void mae_pack_a(const mae_gemm_isa *g, float *dst, const float *A, size_t lda, int trans, int m0, int m,
                int k0, int kc);
/* nr-column panels of B columns [n0, n0+n) and rows [k0, k0+kc); B[k*ldb + j], or B[j*ldb + k]
 * when trans (a weight stored [N,K]); panels of the tier's nr. */
void mae_pack_b(const mae_gemm_isa *g, float *dst, const float *B, size_t ldb, int trans, int n0, int n,
                int k0, int kc);

#endif
