/* Chooses the kernel table once: the best tier the CPU and OS support, or a lower one named by
 * MAE_KERNELS or mae_kernels_force(). A tier may leave entries NULL; they are filled from the
 * scalar reference (BLIS-style: start from the reference, override what is faster). */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "cpu.h"
#include "kernels.h"
#include "tiers.h"
#include "gemm_bf16.h"
#include "../os/os.h"
#include "../util/util.h"

/* Lowest to highest; a tier is in the list only when this build compiles it. */
static const mae_kernels *const tiers[] = {
    &mae_kernels_scalar,
#if defined(MAE_OS_X86_64)
    &mae_kernels_avx2,
    &mae_kernels_avx512,
    &mae_kernels_avx512_bf16,
#elif defined(MAE_OS_AARCH64)
    &mae_kernels_neon,
    &mae_kernels_neon_bf16,
#endif
};
#define NTIERS (sizeof tiers / sizeof tiers[0])

/* A bf16 tier is its base tier with the bf16 entries replaced: its NULL entries come from the
 * base first. It is not chosen as the active table (its fp32 entries are the base's); a model
 * that computes in bf16 takes it through mae_kernels_bf16. */
static const mae_kernels *base_of(const mae_kernels *k)
{
#if defined(MAE_OS_X86_64)
    if (k == &mae_kernels_avx512_bf16)
        return &mae_kernels_avx512;
#elif defined(MAE_OS_AARCH64)
    if (k == &mae_kernels_neon_bf16)
        return &mae_kernels_neon;
#endif
    return NULL;
}

/* Whether this CPU and OS can run a tier (CPUID + XGETBV on x86; scalar always can). */
static int cpu_has(const mae_kernels *k)
{
    if (k == &mae_kernels_scalar)
        return 1;
    unsigned f = mae_cpu_features();
#if defined(MAE_OS_X86_64)
    if (k == &mae_kernels_avx2)
        return (f & MAE_CPU_AVX2) != 0;
    if (k == &mae_kernels_avx512)
        return (f & MAE_CPU_AVX512) != 0;
    if (k == &mae_kernels_avx512_bf16)
        return (f & MAE_CPU_AVX512) && (f & MAE_CPU_BF16);
#elif defined(MAE_OS_AARCH64)
    if (k == &mae_kernels_neon)
        return (f & MAE_CPU_NEON) != 0;
    if (k == &mae_kernels_neon_bf16)
        return (f & MAE_CPU_NEON) && (f & MAE_CPU_BF16);
#endif
    return 0;
}

static mae_kernels completed[NTIERS];
static mae_kernels views[NTIERS];   /* the bf16 views (gemm_bf16.h) of the completed tables */

/* The fill below names every entry (MAE_KERNEL_ENTRIES): it covers the table exactly when the
 * table is the name plus one function pointer per listed entry. */
#define ONE_ENTRY(e) + 1
enum { N_KERNEL_ENTRIES = 0 MAE_KERNEL_ENTRIES(ONE_ENTRY) };
#undef ONE_ENTRY
_Static_assert(sizeof(mae_kernels) == sizeof(const char *) + N_KERNEL_ENTRIES * sizeof(void (*)(void)),
               "mae_kernels has an entry that MAE_KERNEL_ENTRIES (kernels.h) does not list");
_Static_assert(offsetof(mae_kernels, name) == 0, "mae_kernels: name comes first");

/* Fills NULL entries of every tier from the scalar table. Idempotent, so a race between two
 * first callers writes the same bytes. */
static void fill_tables(void)
{
    for (size_t i = 0; i < NTIERS; i++) {
        mae_kernels k = *tiers[i];
        const mae_kernels *base = base_of(tiers[i]);
#define FILL_BASE(e) if (!k.e) k.e = base->e;
        if (base) {
            MAE_KERNEL_ENTRIES(FILL_BASE)
        }
#undef FILL_BASE
        if (!k.bf16_linear)
            mae_bf16_set_wide(&k, tiers[i]);   /* an fp32 tier: its own products, widened */
#define FILL(e) if (!k.e) k.e = mae_kernels_scalar.e;
        MAE_KERNEL_ENTRIES(FILL)
#undef FILL
#define IS_SET(e) assert(k.e != NULL);   /* the scalar table sets every entry */
        MAE_KERNEL_ENTRIES(IS_SET)
#undef IS_SET
        completed[i] = k;
        views[i] = k;
        mae_bf16_set_view(&views[i], tiers[i]);
    }
}

static mae_once tables_once = MAE_ONCE_INIT;

static void complete_tables(void)
{
    mae_os_once(&tables_once, fill_tables);
}

const mae_kernels *mae_kernels_get(const char *name)
{
    complete_tables();
    for (size_t i = 0; i < NTIERS; i++)
        if (strcmp(tiers[i]->name, name) == 0)
            return cpu_has(tiers[i]) ? &completed[i] : NULL;
    return NULL;
}

static const mae_kernels *best(void)
{
    complete_tables();
    const mae_kernels *k = &completed[0];
    for (size_t i = 0; i < NTIERS; i++)
        if (cpu_has(tiers[i]) && !base_of(tiers[i]))
            k = &completed[i];
    const char *env = getenv("MAE_KERNELS");
    if (env && *env) {
        const mae_kernels *e = mae_kernels_get(env);
        if (e)
            k = e;
    }
    return k;
}

static mae_atomic_ptr active;   /* const mae_kernels *; NULL until the first call */

const mae_kernels *mae_kernels_active(void)
{
    const mae_kernels *k = mae_atomic_ptr_load(&active);
    if (!k) {
        k = best();
        const mae_kernels *found = mae_atomic_ptr_cas(&active, NULL, (void *)k);
        if (found)   /* another thread chose first (the same table, unless forced) */
            k = found;
    }
    return k;
}

MAE_API const char *mae_kernels_name(void)
{
    return mae_kernels_active()->name;
}

MAE_API mae_status mae_kernels_force(const char *name)
{
    if (!name)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_kernels_force: name is NULL");
    const mae_kernels *k = mae_kernels_get(name);
    if (!k)
        return mae_fail(MAE_ERR_UNSUPPORTED, "mae_kernels_force: kernel table '%s' is not available on this CPU or build", name);
    mae_atomic_ptr_store(&active, (void *)k);
    return MAE_OK;
}

const mae_kernels *mae_kernels_bf16(const mae_kernels *k)
{
    complete_tables();
    for (size_t i = 0; i < NTIERS; i++) {
        const mae_kernels *b = base_of(tiers[i]);
        if (b && cpu_has(tiers[i]))
            for (size_t j = 0; j < NTIERS; j++)
                if (tiers[j] == b && k == &completed[j])
                    return &completed[i];
    }
    return k;
}

const mae_kernels *mae_kernels_bf16_view(const mae_kernels *k)
{
    const mae_kernels *u = mae_kernels_bf16(k);
    for (size_t i = 0; i < NTIERS; i++)
        if (u == &completed[i])
            return &views[i];
    return NULL;
}
