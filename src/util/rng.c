/* MT19937, seeded and tempered as PyTorch's CPU generator, so torch.manual_seed(s); torch.rand()
 * masks can be reproduced exactly. */
#include <math.h>
#include "util.h"

void mae_rng_seed(mae_rng *r, uint64_t seed)
{
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (int i = 1; i < 624; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->idx = 624;
}

static void twist(mae_rng *r)
{
    for (int i = 0; i < 624; i++) {
        uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[(i + 1) % 624] & 0x7fffffffu);
        uint32_t v = r->mt[(i + 397) % 624] ^ (y >> 1);
        if (y & 1u)
            v ^= 0x9908b0dfu;
        r->mt[i] = v;
    }
    r->idx = 0;
}

uint32_t mae_rng_u32(mae_rng *r)
{
    if (r->idx >= 624)
        twist(r);
    uint32_t y = r->mt[r->idx++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

float mae_rng_uniform(mae_rng *r)
{
    return (float)(mae_rng_u32(r) & 0xFFFFFFu) * (1.0f / 16777216.0f);
}

double mae_rng_uniform_double(mae_rng *r)
{
    uint64_t a = mae_rng_u32(r) >> 5, b = mae_rng_u32(r) >> 6;
    return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

double mae_rng_normal(mae_rng *r)
{
    double u1 = mae_rng_uniform_double(r), u2 = mae_rng_uniform_double(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
