/* The AVX-512 (F, DQ, VL) kernel table (tmpl_table.h). */
#include "simd_avx512.h"
#include "tiers.h"
#include "tmpl_table.h"
