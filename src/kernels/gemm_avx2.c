/* AVX2 + FMA matrix products: the 6x16 register micro-kernel (12 accumulators, two B vectors,
 * one broadcast of A) from tmpl_ukr.h, and its block sizes: a 16 KB B micro-panel (kc = 256)
 * in L1, a 96 KB A block (mc = 96) in L2. */
#include "simd_avx2.h"
#include "tiers.h"
#include "tmpl_vmath.h"
#include "tmpl_ukr.h"

const mae_gemm_isa mae_avx2_gemm = {
    .mr = MR, .nr = NV * VL, .kc = 256, .mc = 96, .nc = 256, .prefetch_b = 1,
    .ukr = mae_avx2_ukr, .ukr_half = mae_avx2_ukr_half,
    .pack_panel = mae_avx2_pack_panel, .pack_panels_t = mae_avx2_pack_panels_t,
    .transpose = mae_avx2_transpose,
};
