/* AVX-512 (F, DQ, VL) matrix products: the 14x32 register micro-kernel (28 accumulators, two B vectors, A broadcast
 * from memory into the FMA) from tmpl_ukr.h, and its block sizes:
 * a 24 KB B micro-panel (kc = 192) in L1, a 126 KB A block (mc = 168) in L2. */
#include "simd_avx512.h"
#include "tiers.h"
#include "tmpl_vmath.h"
#include "tmpl_ukr.h"

const mae_gemm_isa mae_avx512_gemm = {
    .mr = MR, .nr = NV * VL, .kc = 192, .mc = 168, .nc = 256,
    .ukr = mae_avx512_ukr, .ukr_half = NULL,
    .pack_panel = mae_avx512_pack_panel, .pack_panels_t = mae_avx512_pack_panels_t,
};
