/* vdpbf16ps in software, for tests/check_bf16_emu.sh: the avx512_bf16 tier (its packing, its
 * 10 x 32 micro-kernel, the shared driver's blocking and epilogue) runs on a CPU that has
 * AVX-512F but not AVX512_BF16, so that code which no machine here can execute is tested, not
 * only compiled. Force-included (-include) before gemm_bf16_avx512bf16.c; the macro below then
 * replaces the intrinsic in that file.
 *
 * The instruction, per lane i of 16 (Intel SDM, VDPBF16PS): with a = src1, b = src2,
 *     dst[i] += f32(a.bf16[2i+1]) * f32(b.bf16[2i+1])
 *     dst[i] += f32(a.bf16[2i])   * f32(b.bf16[2i])
 * each step an fp32 FMA rounded to nearest even (the product of two bf16 is exact in fp32),
 * with denormal inputs read as zero and denormal results flushed to zero. The flushing is left
 * out here: the tests keep their values away from underflow (tests/test_bf16.c). A bf16 is the
 * high half of the fp32 with the same bits, so the odd element of a pair is the pair's lane with
 * its low 16 bits cleared and the even one is the lane shifted left by 16. */
#ifndef MAE_TESTS_EMU_AVX512BF16_H
#define MAE_TESTS_EMU_AVX512BF16_H
#ifdef __AVX512BF16__
#include <immintrin.h>

static inline __m512 mae_emu_dpbf16_ps(__m512 acc, __m512bh a, __m512bh b)
{
    __m512i ai = (__m512i)a, bi = (__m512i)b;
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    __m512 a_odd = _mm512_castsi512_ps(_mm512_and_si512(ai, high));
    __m512 b_odd = _mm512_castsi512_ps(_mm512_and_si512(bi, high));
    __m512 a_even = _mm512_castsi512_ps(_mm512_slli_epi32(ai, 16));
    __m512 b_even = _mm512_castsi512_ps(_mm512_slli_epi32(bi, 16));
    acc = _mm512_fmadd_ps(a_odd, b_odd, acc);
    return _mm512_fmadd_ps(a_even, b_even, acc);
}

#define _mm512_dpbf16_ps(acc, a, b) mae_emu_dpbf16_ps((acc), (a), (b))
/* Marks the object, so that the check can tell an emulated build from a real one. */
#define MAE_EMULATED_DPBF16 1
#endif
#endif
