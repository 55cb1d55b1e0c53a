/* The vector layer for AVX-512 (F, DQ, VL): 16 floats per vector. Same names and meanings as
 * simd_avx2.h, so the templates compile unchanged. Include only from *_avx512.c files. */
#ifndef MAE_SIMD_AVX512_H
#define MAE_SIMD_AVX512_H

#include <immintrin.h>
#include <stdint.h>
#include "simd_x86.h"

#define VL 16
#define ISA(name) mae_avx512_##name
#define ISA_NAME "avx512"
#define ISA_TABLE mae_kernels_avx512

typedef __m512 vf;
typedef __mmask16 vmask;

static inline vf vload(const float *p) { return _mm512_loadu_ps(p); }
static inline void vstore(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vset1(float x) { return _mm512_set1_ps(x); }
static inline vf vzero(void) { return _mm512_setzero_ps(); }
static inline vf vbcast(const float *p) { return _mm512_set1_ps(*p); }   /* folds into {1to16} */
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf vfnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }
static inline vf vabs(vf a) { return _mm512_abs_ps(a); }
static inline vf vcopysign(vf a, vf s)
{
    vf sign = _mm512_set1_ps(-0.0f);
    return _mm512_or_ps(_mm512_andnot_ps(sign, a), _mm512_and_ps(sign, s));
}
static inline vf vround(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vpow2i(vf n)
{
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
static inline vmask vlt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline vf vselect(vmask m, vf a, vf b) { return _mm512_mask_blend_ps(m, b, a); }  /* m ? a : b */
static inline float vhsum(vf v) { return _mm512_reduce_add_ps(v); }
static inline float vhmax(vf v) { return _mm512_reduce_max_ps(v); }

/* 10 x 32 micro-tile: 20 accumulators, two B vectors, one broadcast of A. Ten rows, not the 14
 * that 32 registers would hold: the ViT's row counts (50 tokens per image in the encoder at
 * batch 1, 400 at batch 8) are multiples of 10, and short last panels (at most 5 rows) fit the
 * edge kernel, 5 rows over two B panels (20 accumulators + 4 B vectors + 1 broadcast). On Zen 4
 * this ran the 50-row linears 3-9 % faster than 12 x 32 (14 x 32 was slower still), the 196/197
 * row ones 0-2 % slower, the batch-8 ones the same, and the encoder's attention 11 % faster. */
#define MR 10
#define NV 2
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)
#define HALF_ROWS(X) X(0) X(1) X(2) X(3) X(4)

/* Doubles, for the optimizer (tmpl_adamw.h); see simd_avx2.h. */
#define DL 8
typedef __m512d vdbl;
static inline vdbl vd_loadf(const float *p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
static inline void vd_storef(float *p, vdbl v) { _mm256_storeu_ps(p, _mm512_cvtpd_ps(v)); }
static inline vdbl vd_set1(double x) { return _mm512_set1_pd(x); }
static inline vdbl vd_add(vdbl a, vdbl b) { return _mm512_add_pd(a, b); }
static inline vdbl vd_sub(vdbl a, vdbl b) { return _mm512_sub_pd(a, b); }
static inline vdbl vd_mul(vdbl a, vdbl b) { return _mm512_mul_pd(a, b); }
static inline vdbl vd_div(vdbl a, vdbl b) { return _mm512_div_pd(a, b); }
static inline vdbl vd_sqrt(vdbl a) { return _mm512_sqrt_pd(a); }
static inline double vd_hsum(vdbl v) { return _mm512_reduce_add_pd(v); }

#endif
