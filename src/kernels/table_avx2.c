/* The AVX2 + FMA kernel table (tmpl_table.h). */
#include "simd_avx2.h"
#include "tiers.h"
#include "tmpl_table.h"
