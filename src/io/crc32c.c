/* CRC-32C: slicing-by-8 in portable C (eight bytes per step through eight tables), and on x86-64
 * the SSE4.2 crc32 instruction, chosen at run time. Both compute the same reflected CRC with
 * initial value and final xor 0xFFFFFFFF, so the check value of "123456789" is 0xE3069283. */
#include <string.h>
#include "crc32c.h"
#include "../os/os.h"

#define POLY 0x82F63B78u

#if defined(MAE_OS_X86_64)
#include <nmmintrin.h>
#define HAVE_HW 1

MAE_OS_TARGET("sse4.2") static uint32_t hw_update(uint32_t crc, const unsigned char *p, size_t n)
{
    uint64_t c = crc;
    for (; n > 0 && ((uintptr_t)p & 7); n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);   /* x86 is little-endian: the bytes in file order */
        c = _mm_crc32_u64(c, w);
    }
    for (; n > 0; n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}
#else
#define HAVE_HW 0
#endif

void mae_crc32c_init(mae_crc32c *c)
{
    c->state = 0xFFFFFFFFu;
#if HAVE_HW
    unsigned r[4];
    mae_os_cpuid(1, 0, r);
    c->hw = (int)(r[2] >> 20 & 1);   /* CPUID.1:ECX bit 20, SSE4.2 */
#else
    c->hw = 0;
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t v = i;
        for (int k = 0; k < 8; k++)
            v = v & 1 ? v >> 1 ^ POLY : v >> 1;
        c->table[0][i] = v;
    }
    for (int t = 1; t < 8; t++)   /* table[t][i]: the CRC of byte i followed by t zero bytes */
        for (int i = 0; i < 256; i++)
            c->table[t][i] = c->table[t - 1][i] >> 8 ^ c->table[0][c->table[t - 1][i] & 0xFF];
}

static uint32_t sw_update(const mae_crc32c *c, uint32_t crc, const unsigned char *p, size_t n)
{
    const uint32_t (*T)[256] = (const uint32_t (*)[256])c->table;
    for (; n >= 8; n -= 8, p += 8) {   /* byte by byte assembly: no dependence on the host's order */
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = T[7][lo & 0xFF] ^ T[6][lo >> 8 & 0xFF] ^ T[5][lo >> 16 & 0xFF] ^ T[4][lo >> 24] ^
              T[3][p[4]] ^ T[2][p[5]] ^ T[1][p[6]] ^ T[0][p[7]];
    }
    for (; n > 0; n--)
        crc = crc >> 8 ^ T[0][(crc ^ *p++) & 0xFF];
    return crc;
}

void mae_crc32c_update(mae_crc32c *c, const void *p, size_t n)
{
#if HAVE_HW
    if (c->hw) {
        c->state = hw_update(c->state, p, n);
        return;
    }
#endif
    c->state = sw_update(c, c->state, p, n);
}

uint32_t mae_crc32c_value(const mae_crc32c *c)
{
    return c->state ^ 0xFFFFFFFFu;
}
