/* What the CPU and the operating system support, detected once (cpu.c). */
#ifndef MAE_CPU_H
#define MAE_CPU_H

enum {
    MAE_CPU_AVX2   = 1,   /* AVX2 + FMA, and the OS saves YMM state */
    MAE_CPU_AVX512 = 2,   /* AVX-512 F/VL/DQ, and the OS saves ZMM and opmask state */
    MAE_CPU_NEON   = 4,   /* AArch64 Advanced SIMD (always there on AArch64) */
};

/* Bit set of MAE_CPU_* features. */
unsigned mae_cpu_features(void);

#endif
