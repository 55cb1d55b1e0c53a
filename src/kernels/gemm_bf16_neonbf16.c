/* The neon_bf16 tier: bf16 linears with BFDOT (Armv8.6 BF16: Neoverse V1/N2, Graviton 3/4, Apple
 * M2 and later), on an 8 x 12 fp32 tile (24 accumulators, three B vectors of 4 bf16 pairs, the
 * A pairs of 8 rows in two vectors, taken by lane). Its table is the neon table with the bf16
 * entries replaced (dispatch.c completes it from mae_kernels_neon). Compiled with +bf16; run only
 * when cpu.c reports MAE_CPU_BF16 (HWCAP2_BF16). BFMMLA (2x4 by 4x2 blocks) would need an A and
 * B layout of its own; BFDOT keeps the layout of the x86 tier. Under qemu BFDOT follows the Arm
 * pseudocode (each step rounded to odd, subnormals flushed); tests/test_bf16.c bounds the
 * difference from the reference accordingly. */
#include <arm_neon.h>
#include "gemm_bf16.h"
#include "tiers.h"

#define MR 8
#define NR 12
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

#define DECL(i) float32x4_t c##i##_0 = vdupq_n_f32(0.0f), c##i##_1 = vdupq_n_f32(0.0f), \
    c##i##_2 = vdupq_n_f32(0.0f);
/* row i's pair is lane l of av: a_lo for rows 0-3, a_hi for rows 4-7 */
#define STEP(i, av, l) c##i##_0 = vbfdotq_laneq_f32(c##i##_0, b0, av, l); \
    c##i##_1 = vbfdotq_laneq_f32(c##i##_1, b1, av, l); \
    c##i##_2 = vbfdotq_laneq_f32(c##i##_2, b2, av, l);
#define STEPS STEP(0, a_lo, 0) STEP(1, a_lo, 1) STEP(2, a_lo, 2) STEP(3, a_lo, 3) \
    STEP(4, a_hi, 0) STEP(5, a_hi, 1) STEP(6, a_hi, 2) STEP(7, a_hi, 3)
#define STORE(i) vst1q_f32(t + (i) * NR, c##i##_0); vst1q_f32(t + (i) * NR + 4, c##i##_1); \
    vst1q_f32(t + (i) * NR + 8, c##i##_2);

static inline bfloat16x8_t ld(const uint32_t *p)
{
    return vreinterpretq_bf16_u32(vld1q_u32(p));
}

static void ukr(int kp, const uint32_t *a, const uint32_t *b, float *t)
{
    ROWS(DECL)
    const uint32_t *ap = a, *bp = b;
    for (int kk = 0; kk < kp; kk++) {
        bfloat16x8_t a_lo = ld(ap), a_hi = ld(ap + 4);
        bfloat16x8_t b0 = ld(bp), b1 = ld(bp + 4), b2 = ld(bp + 8);
        STEPS
        ap += MR; bp += NR;
    }
    ROWS(STORE)
}

static const mae_bf16_isa isa = {
    .mr = MR, .nr = NR, .mc = 4 * MR, .ukr = ukr, .add = mae_neon_add, .gelu = mae_neon_gelu,
};

static size_t t_scratch_floats(int max_t, int max_c)
{
    size_t base = mae_kernels_neon.scratch_floats(max_t, max_c);
    size_t own = mae_bf16_isa_scratch_floats(&isa, max_c);
    return base > own ? base : own;
}

MAE_BF16_ENTRIES(mae_bf16_neonbf16, &isa)

const mae_kernels mae_kernels_neon_bf16 = {
    .name = "neon_bf16",
    .scratch_floats = t_scratch_floats,
    .bf16_pack_size = mae_bf16_neonbf16_pack_size,
    .bf16_pack = mae_bf16_neonbf16_pack,
    .bf16_unpack = mae_bf16_neonbf16_unpack,
    .bf16_linear = mae_bf16_neonbf16_linear,
};
