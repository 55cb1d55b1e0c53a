/* Aligned allocation through the user's allocator. Each block remembers the allocator that made
 * it, so objects outlive a later mae_set_allocator() call safely. */
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define MAE_ALIGN 64

typedef struct header {
    void *raw;                       /* what the allocator returned */
    void (*free_fn)(void *, void *);
    void *user;
} header;

static void *default_alloc(void *user, size_t size) { (void)user; return malloc(size); }
static void  default_free(void *user, void *p) { (void)user; free(p); }

static mae_allocator current = { default_alloc, default_free, NULL };

MAE_API mae_status mae_set_allocator(const mae_allocator *a)
{
    if (!a) {
        current.alloc = default_alloc;
        current.free = default_free;
        current.user = NULL;
        return MAE_OK;
    }
    if (!a->alloc || !a->free)
        return mae_fail(MAE_ERR_INVALID_ARG, "mae_set_allocator: alloc and free must both be set");
    current = *a;
    return MAE_OK;
}

int mae_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

int mae_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return 0;
    *out = a + b;
    return 1;
}

void *mae_alloc(size_t size)
{
    size_t total;
    if (size == 0 || !mae_add_size(size, MAE_ALIGN + sizeof(header), &total))
        return NULL;
    unsigned char *raw = current.alloc(current.user, total);
    if (!raw)
        return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(header) + MAE_ALIGN - 1) & ~(uintptr_t)(MAE_ALIGN - 1);
    header h = { raw, current.free, current.user };
    memcpy((unsigned char *)p - sizeof(header), &h, sizeof h);
    return (void *)p;
}

void *mae_calloc(size_t count, size_t size)
{
    size_t n;
    if (!mae_mul_size(count, size, &n))
        return NULL;
    void *p = mae_alloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

void mae_free(void *p)
{
    if (!p)
        return;
    header h;
    memcpy(&h, (unsigned char *)p - sizeof(header), sizeof h);
    h.free_fn(h.user, h.raw);
}
