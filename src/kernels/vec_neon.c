/* AArch64 NEON vector kernels: exp, erf, GELU, add, LayerNorm (tmpl_vec.h),
 * AdamW and the loss. */
#include "simd_neon.h"
#include "tiers.h"
#include "tmpl_vmath.h"
#include "tmpl_vec.h"
#include "tmpl_adamw.h"
#include "tmpl_loss.h"
