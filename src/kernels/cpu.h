/* What the CPU and the operating system support, detected once (cpu.c). */
#ifndef MAE_CPU_H
#define MAE_CPU_H

enum {
    MAE_CPU_AVX2   = 1,   /* AVX2 + FMA, and the OS saves YMM state */
    MAE_CPU_AVX512 = 2,   /* AVX-512 F/VL/DQ, and the OS saves ZMM and opmask state */
    MAE_CPU_NEON   = 4,   /* AArch64 Advanced SIMD (always there on AArch64) */
    MAE_CPU_BF16   = 8,   /* bf16 dot products: AVX512_BF16 with MAE_CPU_AVX512 (x86), or the
                           * BF16 extension (AArch64, HWCAP2_BF16) */
};

/* Bit set of MAE_CPU_* features. */
unsigned mae_cpu_features(void);

/* The processor's vendor and data caches, for the matrix product's block sizes (gemm.c). Sizes
 * in bytes, 0 where unknown (then the tier's own sizes are used). */
typedef struct mae_cpu_caches {
    char vendor[13];          /* CPUID's "GenuineIntel", "AuthenticAMD", ...; "" if none */
    int family, model;        /* display family and model */
    int l1d, l2, l3;          /* per core (l3: per package) */
    int l1d_ways, l2_ways;
} mae_cpu_caches;
void mae_cpu_read_caches(mae_cpu_caches *c);

#endif
