/* AVX-512 (F, DQ, VL) matrix products: the 10x32 register micro-kernel and its 5-row edge kernel
 * from tmpl_ukr.h, and its block sizes, measured on Zen 4 (1 MiB L2, 32 KiB L1d): kc = 512 (a
 * 64 KB B micro-panel, read from L2 with the hardware prefetcher; fewer k blocks mean fewer
 * passes over C), mc = 100 (a 200 KB A block in L2). kc 256 / 768 and mc 84-168 ran 1-3 % slower.
 * No software prefetch of the next weight panel: with these long panels the bursts of prefetches
 * stalled the kernel (forward batch 1 ran 15 % faster without them, batch 8 3 %). */
#include "simd_avx512.h"
#include "tiers.h"
#include "tmpl_vmath.h"
#include "tmpl_ukr.h"

const mae_gemm_isa mae_avx512_gemm = {
    .mr = MR, .nr = NV * VL, .kc = 512, .mc = 100, .nc = 256, .prefetch_b = 0,
    .ukr = mae_avx512_ukr, .ukr_half = mae_avx512_ukr_half,
    .pack_panel = mae_avx512_pack_panel, .pack_panels_t = mae_avx512_pack_panels_t,
    .transpose = mae_avx512_transpose,
};
