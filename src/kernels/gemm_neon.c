/* AArch64 NEON matrix products: the 8x12 register micro-kernel (24 accumulators, three B vectors, one
 * broadcast of A) from tmpl_ukr.h, and its block sizes:
 * a 12 KB B micro-panel (kc = 256) in L1, a 96 KB A block (mc = 96) in L2. */
#include "simd_neon.h"
#include "tiers.h"
#include "tmpl_vmath.h"
#include "tmpl_ukr.h"

const mae_gemm_isa mae_neon_gemm = {
    .mr = MR, .nr = NV * VL, .kc = 256, .mc = 96, .nc = 240, .prefetch_b = 1,
    .ukr = mae_neon_ukr, .ukr_half = mae_neon_ukr_half,
    .pack_panel = mae_neon_pack_panel, .pack_panels_t = mae_neon_pack_panels_t,
    .transpose = mae_neon_transpose,
};
