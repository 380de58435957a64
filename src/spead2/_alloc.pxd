# Typed interface to csrc/alloc.h: allocators for heap payload memory.
from spead2._tpool cimport tpool_t

cdef extern from "alloc.h" nogil:
    ctypedef struct spead_allocator:
        pass
    spead_allocator *spead_malloc_allocator_new()
    spead_allocator *spead_mmap_allocator_new(int flags, int prefer_huge)
    spead_allocator *spead_pool_allocator_new(tpool_t *tp, size_t lower, size_t upper,
                                              size_t max_free, size_t initial, size_t low_water,
                                              spead_allocator *base)
    size_t spead_pool_free_count(spead_allocator *pool)
    size_t spead_pool_refills(spead_allocator *pool)
    void spead_pool_set_warn_on_empty(spead_allocator *pool, int warn)
    int spead_pool_get_warn_on_empty(spead_allocator *pool)
    void spead_allocator_incref(spead_allocator *a)
    void spead_allocator_decref(spead_allocator *a)
    void *spead_allocate(spead_allocator *a, size_t size, void **handle)
    void spead_release(spead_allocator *a, void *ptr, void *handle)
