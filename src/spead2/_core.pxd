# Typed interface to the shared compiled core: thread pool and allocators.
from libc.stdint cimport int64_t, uint32_t
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES

cdef extern from "tpool.h" nogil:
    ctypedef struct tpool_t:
        pass
    ctypedef int (*tpool_watch_fn)(void *arg)
    ctypedef void (*tpool_task_fn)(void *arg)
    ctypedef void (*tpool_release_fn)(void *arg)
    tpool_t *tpool_create(int nthreads, const int *affinity, int n_affinity, char *err, size_t errlen)
    void tpool_incref(tpool_t *tp)
    void tpool_decref(tpool_t *tp)
    void tpool_stop(tpool_t *tp)
    int tpool_num_threads(const tpool_t *tp)
    int tpool_is_stopped(tpool_t *tp)
    int tpool_post(tpool_t *tp, tpool_task_fn fn, void *arg, tpool_release_fn release)
    int64_t tpool_watch(tpool_t *tp, int fd, uint32_t events, tpool_watch_fn fn, void *arg, tpool_release_fn release)
    void tpool_rearm(tpool_t *tp, int64_t handle)
    void tpool_unwatch(tpool_t *tp, int64_t handle)

cdef extern from "alloc.h" nogil:
    ctypedef struct spead_allocator:
        pass
    spead_allocator *spead_malloc_allocator_new()
    spead_allocator *spead_mmap_allocator_new(int flags)
    spead_allocator *spead_pool_allocator_new(tpool_t *tp, size_t lower, size_t upper,
                                              size_t max_free, size_t initial, size_t low_water,
                                              spead_allocator *base)
    size_t spead_pool_free_count(spead_allocator *pool)
    size_t spead_pool_refills(spead_allocator *pool)
    void spead_allocator_incref(spead_allocator *a)
    void spead_allocator_decref(spead_allocator *a)
    void *spead_allocate(spead_allocator *a, size_t size, void **handle)
    void spead_release(spead_allocator *a, void *ptr, void *handle)


cdef class ThreadPool:
    cdef tpool_t *_tp
    cdef readonly int num_threads
    cdef tpool_t *get(self) except NULL


cdef class MemoryAllocator:
    cdef spead_allocator *_alloc


cdef class Buffer:
    cdef spead_allocator *alloc
    cdef unsigned char *data
    cdef void *handle
    cdef readonly size_t size
    cdef int exports

    @staticmethod
    cdef Buffer wrap(spead_allocator *alloc, unsigned char *data, void *handle, size_t size)


cdef class MmapAllocator(MemoryAllocator):
    pass


cdef class MemoryPool(MemoryAllocator):
    cdef object _thread_pool
    cdef object _underlying
    cdef readonly size_t lower, upper, max_free, initial, low_water


cdef inline void fill_byte_view(Py_buffer *view, object owner, void *buf, Py_ssize_t length,
                                bint readonly, int flags) noexcept:
    """Fill ``view`` as a one-dimensional view of ``length`` unsigned bytes at ``buf``."""
    view.buf = buf
    view.obj = owner
    view.len = length
    view.readonly = readonly
    view.itemsize = 1
    view.format = NULL
    if flags & PyBUF_FORMAT:
        view.format = b"B"
    view.ndim = 1
    view.shape = NULL
    if flags & PyBUF_ND:
        view.shape = &view.len
    view.strides = NULL
    if flags & PyBUF_STRIDES:
        view.strides = &view.itemsize
    view.suboffsets = NULL
    view.internal = NULL
