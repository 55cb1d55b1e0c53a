/* The bf16 linear layers (docs/PRECISION.md): the reference (gemm_bf16.c, set in the scalar
 * table) and the portable driver the fast tiers (gemm_bf16_avx512bf16.c, gemm_bf16_neonbf16.c)
 * plug their micro-kernel into.
 *
 * Packed layouts of the fast tiers, in uint16 (bf16) elements, K rounded up to even (kp = K/2
 * pairs, the odd K's last pair padded with a zero):
 *   B panel:       nr columns, pair-major: b[(kk*nr + j)*2 + s] = W'[j, 2kk + s]; a packed weight
 *                  is ceil(N/nr) such panels of all pairs, panel p at p * nr * 2kp.
 *   A micro-panel: mr rows, pair-major: a[(kk*mr + i)*2 + s] = A'[i, 2kk + s].
 * A pair of bf16 is one 32-bit lane, the operand of vdpbf16ps and BFDOT, so a micro-kernel loads
 * a B vector and broadcasts one A pair per row. Padding is zero, so a padded element computes
 * the same sums as a whole one and its position in a tile does not change any result. */
#ifndef MAE_GEMM_BF16_H
#define MAE_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>
#include "kernels.h"
#include "gemm.h"

/* t[i*nr + j] (i < mr, j < nr: the whole tile) = sum over kk < kp of the pair dot products
 * a-pair(kk, i) · b-pair(kk, j), in kk order, accumulated in fp32. */
typedef void (*mae_bf16_ukr_fn)(int kp, const uint32_t *a, const uint32_t *b, float *t);

/* A bf16 implementation: a bf16 micro-kernel (ukr, with the tier's fp32 add and GELU for the
 * epilogue), or, for an fp32 tier without bf16 instructions, "wide": that tier's fp32 gemm. The
 * wide path keeps the packed bf16 weights (half the memory) and widens one B panel at a time
 * to fp32 (exact) for the tier's fp32 micro-kernel and its epilogue, with A rounded to bf16
 * while it is packed: the reference's products at about the fp32 tier's speed. */
typedef struct mae_bf16_isa {
    int mr, nr;            /* micro-tile (wide: taken from the fp32 tier) */
    int mc;                /* rows of A packed at once, in micro-panels (wide: 4 panels) */
    mae_bf16_ukr_fn ukr;
    /* fp32 row operations for the epilogue (the tier's own add and GELU) */
    void (*add)(float *y, const float *a, const float *b, size_t n);
    void (*gelu)(float *y, const float *x, size_t n);
    const struct mae_gemm_isa *wide;
} mae_bf16_isa;

/* The four table entries over one implementation, and its view setter (below). */
#define MAE_BF16_ENTRIES(pre, ISA_PTR) \
    static size_t pre##_pack_size(int N, int K) { return mae_bf16_isa_pack_size(ISA_PTR, N, K); } \
    static void pre##_pack(uint16_t *d, const float *W, int N, int K) { mae_bf16_isa_pack(ISA_PTR, d, W, N, K); } \
    static void pre##_unpack(float *W, const uint16_t *p, int N, int K) { mae_bf16_isa_unpack(ISA_PTR, W, p, N, K); } \
    static void pre##_linear(const mae_exec *ex, float *out, const float *A, const uint16_t *wp, \
                             const float *bias, const float *res, int M, int N, int K, int act) \
    { mae_bf16_isa_linear(ISA_PTR, ex, out, A, wp, bias, res, M, N, K, act); } \
    MAE_BF16_VIEW(pre##_view, pre##_pack_size, pre##_pack, pre##_unpack, pre##_linear) \
    void pre##_set(mae_kernels *k); \
    void pre##_set(mae_kernels *k) \
    { k->bf16_pack_size = pre##_pack_size; k->bf16_pack = pre##_pack; \
      k->bf16_unpack = pre##_unpack; k->bf16_linear = pre##_linear; }

/* Completes the bf16 side of the table of tier (dispatch.c, before the scalar fill): an fp32 SIMD
 * tier gets the wide entries; and sets view (a copy of the completed table) to the bf16 view. */
void mae_bf16_set_wide(mae_kernels *k, const mae_kernels *tier);
void mae_bf16_set_view(mae_kernels *view, const mae_kernels *tier);

size_t mae_bf16_isa_pack_size(const mae_bf16_isa *g, int N, int K);
void   mae_bf16_isa_pack(const mae_bf16_isa *g, uint16_t *dst, const float *W, int N, int K);
void   mae_bf16_isa_unpack(const mae_bf16_isa *g, float *W, const uint16_t *packed, int N, int K);
void   mae_bf16_isa_linear(const mae_bf16_isa *g, const mae_exec *ex, float *out, const float *A,
                           const uint16_t *wp, const float *bias, const float *residual,
                           int M, int N, int K, int act);
/* Per-thread scratch (floats) mae_bf16_isa_linear needs for K. */
size_t mae_bf16_isa_scratch_floats(const mae_bf16_isa *g, int K);

/* The reference entries (the scalar table's). */
size_t mae_bf16_ref_pack_size(int N, int K);
void   mae_bf16_ref_pack(uint16_t *dst, const float *W, int N, int K);
void   mae_bf16_ref_unpack(float *W, const uint16_t *packed, int N, int K);
void   mae_bf16_ref_linear(const mae_exec *ex, float *out, const float *A, const uint16_t *wp,
                           const float *bias, const float *residual, int M, int N, int K, int act);

/* A model that computes in bf16 uses a "view" of a table (mae_kernels_bf16_view): the table with
 * pack_floats, pack, unpack and linear replaced by adapters over its bf16 entries, so the model
 * code packs and runs its linears as for fp32, with the packed bf16 held in float storage
 * (pack_floats = half the bf16 count, rounded up). Each bf16 implementation defines its setter
 * with MAE_BF16_VIEW. */
#define MAE_BF16_VIEW(fn, PACK_SIZE, PACK, UNPACK, LINEAR) \
    static size_t fn##_pf(int N, int K) { return (PACK_SIZE(N, K) + 1) / 2; } \
    static void fn##_pk(float *dst, const float *W, int N, int K) { PACK((uint16_t *)dst, W, N, K); } \
    static void fn##_up(float *W, const float *p, int N, int K) { UNPACK(W, (const uint16_t *)p, N, K); } \
    static void fn##_ln(const mae_exec *ex, float *out, const float *A, const float *wp, \
                        const float *bias, const float *res, int M, int N, int K, int act) \
    { LINEAR(ex, out, A, (const uint16_t *)wp, bias, res, M, N, K, act); } \
    void fn(mae_kernels *v); \
    void fn(mae_kernels *v) \
    { v->pack_floats = fn##_pf; v->pack = fn##_pk; v->unpack = fn##_up; v->linear = fn##_ln; }

void mae_bf16_avx512bf16_view(mae_kernels *v);
void mae_bf16_neonbf16_view(mae_kernels *v);

/* The fast tiers' tables (complete only with their base tier's entries: dispatch.c). */
extern const mae_kernels mae_kernels_avx512_bf16;
extern const mae_kernels mae_kernels_neon_bf16;

#endif
