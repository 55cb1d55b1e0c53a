/* Count, then carve: an object's buffers laid out one after another, each 64-byte aligned, in one
 * allocation. The object's plan function asks for every buffer with mae_arena_take; it runs once
 * on a counting arena (base NULL: the pointers come back NULL, only the sizes add up, with
 * overflow checks) and once on the allocation, where the same calls hand out the pointers. A
 * plan therefore must ask for the same sizes in the same order both times. */
#ifndef MAE_ARENA_H
#define MAE_ARENA_H

#include <stddef.h>
#include "util.h"

typedef struct mae_arena {
    unsigned char *base;   /* NULL while counting */
    size_t used;           /* bytes laid out so far */
    int overflow;          /* a size did not fit in size_t: the plan is void */
} mae_arena;

/* Room for count elements of elem bytes at the next 64-byte boundary: the pointer, or NULL while
 * counting or after an overflow. */
void *mae_arena_take(mae_arena *a, size_t count, size_t elem);

typedef void (*mae_arena_plan_fn)(void *obj, mae_arena *a);

/* The bytes plan(obj) lays out (one counting pass); MAE_ERR_NOMEM when they overflow. */
mae_status mae_arena_count(const char *what, mae_arena_plan_fn plan, void *obj, size_t *bytes);

/* Counts, allocates (mae_alloc) and carves: *mem gets the allocation (the caller frees it with
 * mae_free) and obj the pointers into it. On failure nothing is allocated, *mem is NULL and the
 * message says what failed, naming the buffers as what says (the public function puts its name
 * in front: mae_fail_wrap). */
mae_status mae_arena_plan(const char *what, mae_arena_plan_fn plan, void *obj, void **mem);

#endif
