/* CPU feature detection for the dispatch: CPUID says what the processor implements, XGETBV says
 * whether the operating system saves the wide registers on a context switch. A tier needs both:
 * a kernel using YMM/ZMM registers on an OS that does not save them corrupts other threads. The
 * instructions themselves are issued by the platform layer (GCC/clang and MSVC spell them
 * differently). */
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
    unsigned b = r[1];
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512vl = (b >> 31) & 1;
    if (avx2 && fma && ymm_saved)
        f |= MAE_CPU_AVX2;
    if ((f & MAE_CPU_AVX2) && avx512f && avx512dq && avx512vl && zmm_saved)
        f |= MAE_CPU_AVX512;
    return f;
}

#elif defined(MAE_OS_AARCH64)

unsigned mae_cpu_features(void)
{
    return MAE_CPU_NEON;
}

#else

unsigned mae_cpu_features(void)
{
    return 0;
}

#endif
