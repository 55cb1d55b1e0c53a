/* CPU feature detection for the dispatch: CPUID says what the processor implements, XGETBV says
 * whether the operating system saves the wide registers on a context switch. A tier needs both:
 * a kernel using YMM/ZMM registers on an OS that does not save them corrupts other threads. */
#include "cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 through XGETBV; only valid when CPUID reports OSXSAVE. Encoded as bytes so that the file
 * needs no -mxsave. */
static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

unsigned mae_cpu_features(void)
{
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return 0;
    unsigned long long xcr0 = xgetbv0();
    int ymm_saved = (xcr0 & 0x6) == 0x6;            /* SSE and AVX state */
    int zmm_saved = (xcr0 & 0xe6) == 0xe6;          /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, 0) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512vl = (b >> 31) & 1;
    if (avx2 && fma && ymm_saved)
        f |= MAE_CPU_AVX2;
    if ((f & MAE_CPU_AVX2) && avx512f && avx512dq && avx512vl && zmm_saved)
        f |= MAE_CPU_AVX512;
    /* AVX512_BF16 is CPUID.(EAX=7, ECX=1):EAX[5]; it uses the ZMM state checked above */
    if ((f & MAE_CPU_AVX512) && a >= 1) {
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        if ((a1 >> 5) & 1)
            f |= MAE_CPU_BF16;
    }
    return f;
}

#elif defined(__aarch64__)

#include <sys/auxv.h>

unsigned mae_cpu_features(void)
{
    /* the kernel reports the BF16 extension (BFDOT, BFMMLA) as HWCAP2_BF16 */
    unsigned long hwcap2 = getauxval(AT_HWCAP2);
    return MAE_CPU_NEON | ((hwcap2 & (1ul << 14)) ? MAE_CPU_BF16 : 0u);
}

#else

unsigned mae_cpu_features(void)
{
    return 0;
}

#endif
