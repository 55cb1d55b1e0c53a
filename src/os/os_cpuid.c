/* CPUID and XGETBV for both compiler families: <cpuid.h> and inline assembly with GCC and clang,
 * <intrin.h>'s __cpuidex and _xgetbv with MSVC. The question is the compiler's, not the OS's,
 * so this file is shared by os_unix.c and os_win.c (MinGW is GCC on Windows). */
#include "os.h"

#if defined(MAE_OS_X86_64) && defined(MAE_OS_MSVC)
#include <intrin.h>

void mae_os_cpuid(unsigned leaf, unsigned subleaf, unsigned r[4])
{
    int max[4], v[4] = { 0, 0, 0, 0 };
    __cpuid(max, (int)(leaf & 0x80000000u));
    if (leaf <= (unsigned)max[0])
        __cpuidex(v, (int)leaf, (int)subleaf);
    for (int i = 0; i < 4; i++)
        r[i] = (unsigned)v[i];
}

unsigned long long mae_os_xgetbv0(void)
{
    return _xgetbv(0);
}

#elif defined(MAE_OS_X86_64) && defined(__GNUC__)
#include <cpuid.h>

void mae_os_cpuid(unsigned leaf, unsigned subleaf, unsigned r[4])
{
    r[0] = r[1] = r[2] = r[3] = 0;
    if (leaf <= (unsigned)__get_cpuid_max(leaf & 0x80000000u, 0))
        __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
}

/* Encoded as bytes so that the file needs no -mxsave. */
unsigned long long mae_os_xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

#elif defined(MAE_OS_X86_64)
#error "CPUID: no implementation for this compiler; the dispatch would silently run scalar kernels"

#else

void mae_os_cpuid(unsigned leaf, unsigned subleaf, unsigned r[4])
{
    (void)leaf;
    (void)subleaf;
    r[0] = r[1] = r[2] = r[3] = 0;
}

unsigned long long mae_os_xgetbv0(void)
{
    return 0;
}

#endif
