/* The AArch64 NEON kernel table (tmpl_table.h). */
#include "simd_neon.h"
#include "tiers.h"
#include "tmpl_table.h"
