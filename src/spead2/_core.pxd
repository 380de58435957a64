# Python-facing classes shared by receive and send: thread pool, allocators,
# buffers of heap memory.
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES

from spead2._tpool cimport tpool_t
from spead2._alloc cimport spead_allocator
from spead2._inproc cimport spead_inproc_queue


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


cdef class InprocQueue:
    cdef spead_inproc_queue *q


cdef class MmapAllocator(MemoryAllocator):
    cdef readonly bint prefer_huge


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
