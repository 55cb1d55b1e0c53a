/* Chooses the kernel table once: the best tier the CPU and OS support, or a lower one named by
 * MAE_KERNELS or mae_kernels_force(). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "kernels.h"
#include "../util/util.h"

static const mae_kernels *const tiers[] = {
    &mae_kernels_scalar,
};

/* Whether this CPU can run a tier (scalar always can). */
static int cpu_has(const mae_kernels *k)
{
    return k == &mae_kernels_scalar;
}

const mae_kernels *mae_kernels_get(const char *name)
{
    for (size_t i = 0; i < sizeof tiers / sizeof tiers[0]; i++)
        if (strcmp(tiers[i]->name, name) == 0)
            return cpu_has(tiers[i]) ? tiers[i] : NULL;
    return NULL;
}

static const mae_kernels *best(void)
{
    const mae_kernels *k = &mae_kernels_scalar;
    for (size_t i = 0; i < sizeof tiers / sizeof tiers[0]; i++)
        if (cpu_has(tiers[i]))
            k = tiers[i];   /* tiers are listed from lowest to highest */
    const char *env = getenv("MAE_KERNELS");
    if (env && *env) {
        const mae_kernels *e = mae_kernels_get(env);
        if (e)
            k = e;
    }
    return k;
}

static _Atomic(const mae_kernels *) active;

const mae_kernels *mae_kernels_active(void)
{
    const mae_kernels *k = atomic_load(&active);
    if (!k) {
        const mae_kernels *expected = NULL;
        k = best();
        if (!atomic_compare_exchange_strong(&active, &expected, k))
            k = expected;
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
    atomic_store(&active, k);
    return MAE_OK;
}
