/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum libmae writes into its own
 * safetensors files (docs/FORMAT.md). Software slicing-by-8, or the SSE4.2 crc32 instruction
 * where the CPU has it (same result, about 5x faster). */
#ifndef MAE_CRC32C_H
#define MAE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

typedef struct mae_crc32c {
    uint32_t state;               /* inverted running value */
    int hw;                       /* the instruction path (a test may clear it) */
    uint32_t table[8][256];       /* slicing-by-8 tables */
} mae_crc32c;

/* Starts a checksum (builds the tables here, per use: 8 KB, a few microseconds, no shared state). */
void     mae_crc32c_init(mae_crc32c *c);
void     mae_crc32c_update(mae_crc32c *c, const void *p, size_t n);
uint32_t mae_crc32c_value(const mae_crc32c *c);

#endif
