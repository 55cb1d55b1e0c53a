/* The avx512_bf16 tier: bf16 linears with vdpbf16ps (AVX512_BF16: Zen 4 and later, Cooper Lake,
 * Sapphire Rapids and later), on a 10 x 32 fp32 tile (20 accumulators, two B vectors of 16 bf16
 * pairs, one broadcast A pair per row). Its table is the avx512 table with the bf16 entries
 * replaced (dispatch.c completes it from mae_kernels_avx512). Compiled with -mavx512bf16; run
 * only when cpu.c reports MAE_CPU_BF16 (CPUID.(7,1).EAX[5] and the OS's ZMM state). */
#include <immintrin.h>
#include <string.h>
#include "gemm_bf16.h"
#include "tiers.h"

#define MR 10
#define NR 32
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)

/* A 512-bit integer vector seen as 32 bf16 (the intrinsics' operand type). A copy, not a cast:
 * GCC and clang define __m512bh as a vector type a cast converts to, MSVC's intrinsic types are
 * unions that no cast converts; both compilers turn the copy into nothing. */
static inline __m512bh as_bh(__m512i v)
{
    __m512bh b;
    memcpy(&b, &v, sizeof b);
    return b;
}

#define DECL(i) __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps();
#define STEP(i) { __m512bh a_ = as_bh(_mm512_set1_epi32((int)ap[i])); \
    c##i##_0 = _mm512_dpbf16_ps(c##i##_0, a_, b0); c##i##_1 = _mm512_dpbf16_ps(c##i##_1, a_, b1); }
#define STORE(i) _mm512_storeu_ps(t + (i) * NR, c##i##_0); _mm512_storeu_ps(t + (i) * NR + 16, c##i##_1);

static void ukr(int kp, const uint32_t *a, const uint32_t *b, float *t)
{
    ROWS(DECL)
    const uint32_t *ap = a, *bp = b;
    for (int kk = 0; kk < kp; kk++) {
        __m512bh b0 = as_bh(_mm512_loadu_si512(bp)), b1 = as_bh(_mm512_loadu_si512(bp + 16));
        ROWS(STEP)
        ap += MR; bp += NR;
    }
    ROWS(STORE)
}

/* mc = 40: a 4-panel A block; at K = 3072 it is 240 KB, in L2 beside the B panel (192 KB). */
static const mae_bf16_isa isa = {
    .mr = MR, .nr = NR, .mc = 4 * MR, .ukr = ukr, .add = mae_avx512_add, .gelu = mae_avx512_gelu,
};

static size_t t_scratch_floats(int max_t, int max_c)
{
    size_t base = mae_kernels_avx512.scratch_floats(max_t, max_c);
    size_t own = mae_bf16_isa_scratch_floats(&isa, max_c);
    return base > own ? base : own;
}

MAE_BF16_ENTRIES(mae_bf16_avx512bf16, &isa)

const mae_kernels mae_kernels_avx512_bf16 = {
    .name = "avx512_bf16",
    .scratch_floats = t_scratch_floats,
    .bf16_pack_size = mae_bf16_avx512bf16_pack_size,
    .bf16_pack = mae_bf16_avx512bf16_pack,
    .bf16_unpack = mae_bf16_avx512bf16_unpack,
    .bf16_linear = mae_bf16_avx512bf16_linear,
};
