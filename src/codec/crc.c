/* CRC-32 (PNG chunks, gzip members) and Adler-32 (zlib streams). */
#include "codec.h"

/* CRC-32 of every 4-bit value under the reflected polynomial 0xEDB88320: a 16-entry table keeps
 * the code free of run-time initialization (no shared mutable state) at two lookups per byte. */
static const uint32_t crc_nibble[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

uint32_t mae_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
    }
    return ~crc;
}

uint32_t mae_adler32(uint32_t adler, const uint8_t *p, size_t n)
{
    const uint32_t mod = 65521;
    uint32_t a = adler & 0xffff, b = adler >> 16;
    while (n > 0) {
        /* 5552 bytes is the most that cannot overflow b in 32 bits before the reduction. */
        size_t chunk = n < 5552 ? n : 5552;
        n -= chunk;
        while (chunk--) {
            a += *p++;
            b += a;
        }
        a %= mod;
        b %= mod;
    }
    return (b << 16) | a;
}
