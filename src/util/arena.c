/* The arena planner (arena.h). */
#include "arena.h"

void *mae_arena_take(mae_arena *a, size_t count, size_t elem)
{
    size_t bytes, at = (a->used + 63) & ~(size_t)63;
    if (a->overflow || at < a->used || !mae_mul_size(count, elem, &bytes) || !mae_add_size(at, bytes, &a->used)) {
        a->overflow = 1;
        return NULL;
    }
    return a->base ? a->base + at : NULL;
}

mae_status mae_arena_count(const char *what, mae_arena_plan_fn plan, void *obj, size_t *bytes)
{
    mae_arena a = { NULL, 0, 0 };
    plan(obj, &a);
    if (a.overflow)
        return mae_fail(MAE_ERR_NOMEM, "the size of %s overflows", what);
    *bytes = a.used;
    return MAE_OK;
}

mae_status mae_arena_plan(const char *what, mae_arena_plan_fn plan, void *obj, void **mem)
{
    *mem = NULL;
    size_t bytes = 0;
    mae_status s = mae_arena_count(what, plan, obj, &bytes);
    if (s != MAE_OK)
        return s;
    unsigned char *base = bytes ? mae_alloc(bytes) : NULL;
    if (bytes && !base)
        return mae_fail(MAE_ERR_NOMEM, "cannot allocate %zu bytes for %s", bytes, what);
    mae_arena a = { base, 0, 0 };
    plan(obj, &a);
    *mem = base;
    return MAE_OK;
}
