/* The vector layer for AVX2 + FMA: 8 floats per vector. The kernel templates (tmpl_*.h) are
 * written once against these names and compiled per instruction set, so the AVX-512 and NEON
 * tiers run the same, tested algorithm as this one. Include only from *_avx2.c files. */
#ifndef MAE_SIMD_AVX2_H
#define MAE_SIMD_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include "simd_x86.h"

#define VL 8                          /* floats per vector */
#define ISA(name) mae_avx2_##name     /* names of the functions a template defines */
#define ISA_NAME "avx2"
#define ISA_TABLE mae_kernels_avx2

typedef __m256 vf;
typedef __m256 vmask;                 /* all-ones lanes where a comparison holds */

static inline vf vload(const float *p) { return _mm256_loadu_ps(p); }
static inline void vstore(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vset1(float x) { return _mm256_set1_ps(x); }
static inline vf vzero(void) { return _mm256_setzero_ps(); }
static inline vf vbcast(const float *p) { return _mm256_broadcast_ss(p); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }    /* a*b + c */
static inline vf vfnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }  /* c - a*b */
static inline vf vabs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
/* magnitude of a with the sign of s */
static inline vf vcopysign(vf a, vf s)
{
    vf sign = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(sign, a), _mm256_and_ps(sign, s));
}
static inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* 2^n for integral n in [-126, 127] */
static inline vf vpow2i(vf n)
{
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static inline vmask vlt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline vf vselect(vmask m, vf a, vf b) { return _mm256_blendv_ps(b, a, m); }  /* m ? a : b */

static inline float vhsum(vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vhmax(vf v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The micro-kernel's shape: MR rows of A times NV vectors of B. */
#define MR 6
#define NV 2
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
/* The edge kernel for short last panels: MR/2 rows over two B panels. */
#define HALF_ROWS(X) X(0) X(1) X(2)

/* Doubles, for the optimizer (tmpl_adamw.h): DL per vector, loaded from and stored to floats
 * with IEEE conversions (round to nearest on the way back), so a lane computes exactly what
 * scalar double code does. */
#define DL 4
typedef __m256d vdbl;
static inline vdbl vd_loadf(const float *p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
static inline void vd_storef(float *p, vdbl v) { _mm_storeu_ps(p, _mm256_cvtpd_ps(v)); }
static inline vdbl vd_set1(double x) { return _mm256_set1_pd(x); }
static inline vdbl vd_add(vdbl a, vdbl b) { return _mm256_add_pd(a, b); }
static inline vdbl vd_sub(vdbl a, vdbl b) { return _mm256_sub_pd(a, b); }
static inline vdbl vd_mul(vdbl a, vdbl b) { return _mm256_mul_pd(a, b); }
static inline vdbl vd_div(vdbl a, vdbl b) { return _mm256_div_pd(a, b); }
static inline vdbl vd_sqrt(vdbl a) { return _mm256_sqrt_pd(a); }
static inline double vd_hsum(vdbl v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

#endif
