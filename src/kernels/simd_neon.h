/* The vector layer for AArch64 Advanced SIMD (NEON): 4 floats per vector. Same names and
 * meanings as simd_avx2.h, so the templates compile unchanged. Include only from *_neon.c. */
#ifndef MAE_SIMD_NEON_H
#define MAE_SIMD_NEON_H

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#define VL 4
#define ISA(name) mae_neon_##name
#define ISA_NAME "neon"
#define ISA_TABLE mae_kernels_neon

typedef float32x4_t vf;
typedef uint32x4_t vmask;

static inline vf vload(const float *p) { return vld1q_f32(p); }
static inline void vstore(float *p, vf v) { vst1q_f32(p, v); }
static inline vf vset1(float x) { return vdupq_n_f32(x); }
static inline vf vzero(void) { return vdupq_n_f32(0.0f); }
static inline vf vbcast(const float *p) { return vld1q_dup_f32(p); }
static inline vf vadd(vf a, vf b) { return vaddq_f32(a, b); }
static inline vf vsub(vf a, vf b) { return vsubq_f32(a, b); }
static inline vf vmul(vf a, vf b) { return vmulq_f32(a, b); }
static inline vf vdiv(vf a, vf b) { return vdivq_f32(a, b); }
static inline vf vmax(vf a, vf b) { return vmaxq_f32(a, b); }
static inline vf vmin(vf a, vf b) { return vminq_f32(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
static inline vf vfnma(vf a, vf b, vf c) { return vfmsq_f32(c, a, b); }
static inline vf vabs(vf a) { return vabsq_f32(a); }
static inline vf vcopysign(vf a, vf s) { return vbslq_f32(vdupq_n_u32(0x80000000u), s, a); }
static inline vf vround(vf a) { return vrndnq_f32(a); }
static inline vf vpow2i(vf n)
{
    int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
}
static inline vmask vlt(vf a, vf b) { return vcltq_f32(a, b); }
static inline vf vselect(vmask m, vf a, vf b) { return vbslq_f32(m, a, b); }
static inline float vhsum(vf v) { return vaddvq_f32(v); }
static inline float vhmax(vf v) { return vmaxvq_f32(v); }

/* A 4x4 block transposed: d[k*ds + i] = s_i[k] for i, k < 4 (the A-panel packer's step). */
static inline void vtr4(float *d, size_t ds, const float *s0, const float *s1, const float *s2,
                        const float *s3)
{
    float32x4x2_t a = vtrnq_f32(vld1q_f32(s0), vld1q_f32(s1));
    float32x4x2_t b = vtrnq_f32(vld1q_f32(s2), vld1q_f32(s3));
    vst1q_f32(d, vcombine_f32(vget_low_f32(a.val[0]), vget_low_f32(b.val[0])));
    vst1q_f32(d + ds, vcombine_f32(vget_low_f32(a.val[1]), vget_low_f32(b.val[1])));
    vst1q_f32(d + 2 * ds, vcombine_f32(vget_high_f32(a.val[0]), vget_high_f32(b.val[0])));
    vst1q_f32(d + 3 * ds, vcombine_f32(vget_high_f32(a.val[1]), vget_high_f32(b.val[1])));
}

/* Two rows of four: d[k*ds + i] = s_i[k] for i < 2, k < 4. */
static inline void vtr2(float *d, size_t ds, const float *s0, const float *s1)
{
    float32x4x2_t z = vzipq_f32(vld1q_f32(s0), vld1q_f32(s1));
    vst1_f32(d, vget_low_f32(z.val[0]));
    vst1_f32(d + ds, vget_high_f32(z.val[0]));
    vst1_f32(d + 2 * ds, vget_low_f32(z.val[1]));
    vst1_f32(d + 3 * ds, vget_high_f32(z.val[1]));
}

/* 8 x 12 micro-tile: 24 accumulators, three B vectors, one broadcast of A. */
#define MR 8
#define NV 3
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
/* The edge kernel for short last panels: MR/2 rows over two B panels. */
#define HALF_ROWS(X) X(0) X(1) X(2) X(3)

/* Doubles, for the optimizer (tmpl_adamw.h); see simd_avx2.h. */
#define DL 2
typedef float64x2_t vdbl;
static inline vdbl vd_loadf(const float *p) { return vcvt_f64_f32(vld1_f32(p)); }
static inline void vd_storef(float *p, vdbl v) { vst1_f32(p, vcvt_f32_f64(v)); }
static inline vdbl vd_set1(double x) { return vdupq_n_f64(x); }
static inline vdbl vd_add(vdbl a, vdbl b) { return vaddq_f64(a, b); }
static inline vdbl vd_sub(vdbl a, vdbl b) { return vsubq_f64(a, b); }
static inline vdbl vd_mul(vdbl a, vdbl b) { return vmulq_f64(a, b); }
static inline vdbl vd_div(vdbl a, vdbl b) { return vdivq_f64(a, b); }
static inline vdbl vd_sqrt(vdbl a) { return vsqrtq_f64(a); }
static inline double vd_hsum(vdbl v) { return vaddvq_f64(v); }

#endif
