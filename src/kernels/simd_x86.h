/* What the x86 vector layers (simd_avx2.h, simd_avx512.h) share: SSE helpers that work the same
 * under either instruction set. */
#ifndef MAE_SIMD_X86_H
#define MAE_SIMD_X86_H

#include <immintrin.h>
#include <stddef.h>

/* A 4x4 block transposed: d[k*ds + i] = s_i[k] for i, k < 4 (the A-panel packer's step). */
static inline void vtr4(float *d, size_t ds, const float *s0, const float *s1, const float *s2,
                        const float *s3)
{
    __m128 r0 = _mm_loadu_ps(s0), r1 = _mm_loadu_ps(s1), r2 = _mm_loadu_ps(s2), r3 = _mm_loadu_ps(s3);
    __m128 t0 = _mm_unpacklo_ps(r0, r1), t1 = _mm_unpacklo_ps(r2, r3);
    __m128 t2 = _mm_unpackhi_ps(r0, r1), t3 = _mm_unpackhi_ps(r2, r3);
    _mm_storeu_ps(d, _mm_movelh_ps(t0, t1));
    _mm_storeu_ps(d + ds, _mm_movehl_ps(t1, t0));
    _mm_storeu_ps(d + 2 * ds, _mm_movelh_ps(t2, t3));
    _mm_storeu_ps(d + 3 * ds, _mm_movehl_ps(t3, t2));
}

/* Two rows of four: d[k*ds + i] = s_i[k] for i < 2, k < 4 (the rows left after the 4x4 blocks,
 * e.g. two of a 10- or 6-row micro-panel). */
static inline void vtr2(float *d, size_t ds, const float *s0, const float *s1)
{
    __m128 r0 = _mm_loadu_ps(s0), r1 = _mm_loadu_ps(s1);
    __m128 lo = _mm_unpacklo_ps(r0, r1), hi = _mm_unpackhi_ps(r0, r1);
    _mm_storel_pi((__m64 *)d, lo);
    _mm_storeh_pi((__m64 *)(d + ds), lo);
    _mm_storel_pi((__m64 *)(d + 2 * ds), hi);
    _mm_storeh_pi((__m64 *)(d + 3 * ds), hi);
}

#endif
