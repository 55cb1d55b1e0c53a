/* CPU feature detection for the dispatch: CPUID says what the processor implements, XGETBV says
 * whether the operating system saves the wide registers on a context switch. A tier needs both:
 * a kernel using YMM/ZMM registers on an OS that does not save them corrupts other threads. The
 * instructions themselves are issued by the platform layer (GCC/clang and MSVC spell them
 * differently). */
#include <string.h>
#include "cpu.h"
#include "../os/os.h"

#if defined(MAE_OS_X86_64)

unsigned mae_cpu_features(void)
{
    unsigned r[4], f = 0;
    mae_os_cpuid(1, 0, r);
    unsigned c = r[2];
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return 0;
    unsigned long long xcr0 = mae_os_xgetbv0();
    int ymm_saved = (xcr0 & 0x6) == 0x6;            /* SSE and AVX state */
    int zmm_saved = (xcr0 & 0xe6) == 0xe6;          /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    mae_os_cpuid(7, 0, r);                           /* zeros when leaf 7 is beyond the maximum */
    unsigned b = r[1], max_sub7 = r[0];
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512vl = (b >> 31) & 1;
    if (avx2 && fma && ymm_saved)
        f |= MAE_CPU_AVX2;
    if ((f & MAE_CPU_AVX2) && avx512f && avx512dq && avx512vl && zmm_saved)
        f |= MAE_CPU_AVX512;
    /* AVX512_BF16 is CPUID.(EAX=7, ECX=1):EAX[5]; it uses the ZMM state checked above */
    if ((f & MAE_CPU_AVX512) && max_sub7 >= 1) {
        mae_os_cpuid(7, 1, r);
        if ((r[0] >> 5) & 1)
            f |= MAE_CPU_BF16;
    }
#ifdef MAE_EMULATE_AVX512BF16
    /* tests/check_bf16_emu.sh: a test build whose avx512_bf16 tier emulates vdpbf16ps with
     * AVX-512F (tests/emu/avx512bf16.h), so that tier runs wherever AVX-512 does */
    if (f & MAE_CPU_AVX512)
        f |= MAE_CPU_BF16;
#endif
    return f;
}

/* Vendor, family and model (leaves 0 and 1), then the deterministic cache parameters: leaf 4 on
 * Intel, 0x8000001D on AMD (same layout): per cache level, type, ways, partitions, line size and
 * sets give its size. */
void mae_cpu_read_caches(mae_cpu_caches *c)
{
    unsigned r[4];
    memset(c, 0, sizeof *c);
    mae_os_cpuid(0, 0, r);
    unsigned max = r[0], a, b, cc, d;
    b = r[1], cc = r[2], d = r[3];
    if (max == 0)
        return;
    memcpy(c->vendor, &b, 4);
    memcpy(c->vendor + 4, &d, 4);
    memcpy(c->vendor + 8, &cc, 4);
    mae_os_cpuid(1, 0, r);
    a = r[0];
    int fam = (a >> 8) & 0xf, model = (a >> 4) & 0xf;
    if (fam == 0xf)
        fam += (a >> 20) & 0xff;
    if (fam == 6 || fam >= 0xf)
        model += ((a >> 16) & 0xf) << 4;
    c->family = fam;
    c->model = model;
    unsigned leaf = 4;
    if (strcmp(c->vendor, "AuthenticAMD") == 0 || strcmp(c->vendor, "HygonGenuine") == 0) {
        leaf = 0x8000001D;
        mae_os_cpuid(0x80000000u, 0, r);
        if (r[0] < leaf)
            return;
    } else if (max < 4) {
        return;
    }
    for (unsigned i = 0; i < 16; i++) {
        mae_os_cpuid(leaf, i, r);
        a = r[0], b = r[1], cc = r[2];
        int type = a & 0x1f, level = (a >> 5) & 7;
        if (type == 0)
            break;
        if (type == 2)   /* instruction cache */
            continue;
        int ways = (int)(b >> 22) + 1, parts = (int)((b >> 12) & 0x3ff) + 1, line = (int)(b & 0xfff) + 1;
        long long size = (long long)ways * parts * line * ((long long)cc + 1);
        int sz = size > 0x7fffffff ? 0x7fffffff : (int)size;
        if (level == 1) {
            c->l1d = sz;
            c->l1d_ways = ways;
        } else if (level == 2) {
            c->l2 = sz;
            c->l2_ways = ways;
        } else if (level == 3) {
            c->l3 = sz;
        }
    }
}

#elif defined(MAE_OS_AARCH64)

unsigned mae_cpu_features(void)
{
    return MAE_CPU_NEON | (mae_os_arm_bf16() ? MAE_CPU_BF16 : 0u);
}

void mae_cpu_read_caches(mae_cpu_caches *c)
{
    memset(c, 0, sizeof *c);
}

#else

unsigned mae_cpu_features(void)
{
    return 0;
}

void mae_cpu_read_caches(mae_cpu_caches *c)
{
    memset(c, 0, sizeof *c);
}

#endif
