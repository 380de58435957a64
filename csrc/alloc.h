/* Allocators for heap payload memory, usable without the GIL. */
#ifndef SPEAD2_ALLOC_H
#define SPEAD2_ALLOC_H

#include <stddef.h>
#include "tpool.h"

typedef struct spead_allocator spead_allocator;

struct spead_allocator {
    int refs;
    /* Returns memory of at least ``size`` bytes (NULL on failure) and an
     * opaque handle that must be passed back to ``release``. */
    void *(*allocate)(spead_allocator *self, size_t size, void **handle);
    void (*release)(spead_allocator *self, void *ptr, void *handle);
    void (*destroy)(spead_allocator *self);
};

spead_allocator *spead_malloc_allocator_new(void);
/* ``prefer_huge``: try huge pages (MAP_HUGETLB) first, then normal pages
 * with transparent huge pages asked for. */
spead_allocator *spead_mmap_allocator_new(int flags, int prefer_huge);
/* ``tp`` may be NULL (no background refill); ``base`` NULL means malloc. */
spead_allocator *spead_pool_allocator_new(tpool_t *tp, size_t lower, size_t upper,
                                          size_t max_free, size_t initial, size_t low_water,
                                          spead_allocator *base);
size_t spead_pool_free_count(spead_allocator *pool);
size_t spead_pool_refills(spead_allocator *pool);
/* Whether a request finding the pool empty logs a warning (default 1), to
 * the log queue of the stream the calling thread works for. */
void spead_pool_set_warn_on_empty(spead_allocator *pool, int warn);
int spead_pool_get_warn_on_empty(spead_allocator *pool);

void spead_allocator_incref(spead_allocator *a);
void spead_allocator_decref(spead_allocator *a);

static inline void *spead_allocate(spead_allocator *a, size_t size, void **handle)
{
    return a->allocate(a, size, handle);
}

static inline void spead_release(spead_allocator *a, void *ptr, void *handle)
{
    a->release(a, ptr, handle);
}

#endif
