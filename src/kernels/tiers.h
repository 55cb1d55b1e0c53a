/* The SIMD tiers' internal entry points. Each tier's files (*_avx2.c, *_avx512.c, *_neon.c) are
 * compiled with its instruction-set flags; nothing here may be called before the dispatch has
 * checked the CPU (mae_kernels_get / mae_kernels_active). */
#ifndef MAE_TIERS_H
#define MAE_TIERS_H

#include <stddef.h>
#include "kernels.h"
#include "gemm.h"
#include "attention.h"

/* Declares one tier's functions; the bodies come from the tmpl_*.h templates. */
#define MAE_TIER_DECLS(t) \
    extern const mae_kernels mae_kernels_##t; \
    extern const mae_gemm_isa mae_##t##_gemm; \
    extern const mae_attn_isa mae_##t##_attn; \
    void mae_##t##_ukr(int kc, const float *a, const float *b, float *c, size_t ldc, \
                       int mr, int nr, const mae_epi *e); \
    void mae_##t##_ukr_half(int kc, const float *a, const float *b0, const float *b1, float *c, \
                            size_t ldc, int mr, int nr1, const mae_epi *e); \
    void mae_##t##_pack_panel(float *d, const float *a, size_t lda, int kc); \
    void mae_##t##_pack_panels_t(float *d, const float *a, size_t lda, int panels, int kc); \
    void mae_##t##_transpose(float *d, size_t ldd, const float *a, size_t lda, int rows, int cols); \
    void mae_##t##_exp(float *y, const float *x, size_t n); \
    void mae_##t##_erf(float *y, const float *x, size_t n); \
    void mae_##t##_gelu(float *y, const float *x, size_t n); \
    void mae_##t##_add(float *y, const float *a, const float *b, size_t n); \
    void mae_##t##_layernorm(const mae_exec *ex, float *out, float *mean, float *rstd, \
                             const float *x, const float *w, const float *b, int N, int C, \
                             float eps); \
    void mae_##t##_scale_colmax(float *s, int rows, float scale, float *mx); \
    void mae_##t##_exp_colsum(float *s, int rows, const float *m, float *sum); \
    void mae_##t##_scale_cols(float *s, int rows, const float *f); \
    void mae_##t##_softmax_backward_row(float *ds, const float *p, int n, float scale); \
    void mae_##t##_gelu_backward(const mae_exec *ex, float *dx, const float *x, const float *dy, \
                                 size_t n); \
    void mae_##t##_layernorm_backward(const mae_exec *ex, float *dx, float *dw, float *db, \
                                      const float *dy, const float *x, const float *mean, \
                                      const float *rstd, const float *w, int N, int C); \
    void mae_##t##_bias_backward(const mae_exec *ex, float *db, const float *dy, int N, int C); \
    void mae_##t##_adamw(float *w, float *m1, float *m2, const float *g, size_t n, \
                         const mae_adamw_hp *h); \
    double mae_##t##_loss_patch(float *t, const float *y, int n, int norm_pix); \
    void mae_##t##_loss_grad(float *d, const float *y, const float *t, double w, size_t n);

MAE_TIER_DECLS(avx2)
MAE_TIER_DECLS(avx512)
MAE_TIER_DECLS(neon)

#endif
