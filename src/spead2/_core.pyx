# cython: language_level=3
"""Thread pool and heap-memory allocators shared by receive and send."""

from libc.errno cimport errno
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free

from spead2._alloc cimport *
from spead2._tpool cimport *
from spead2._inproc cimport *
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS
from libc.stdint cimport uint8_t
from spead2 cimport _wire

import logging
import numbers
import os
import select
import sys
import time

from spead2._args import as_flags, as_nonzero_unsigned, as_unsigned, bind_arguments

_logger = logging.getLogger("spead2")


cdef class ThreadPool:
    """Worker threads that perform all packet I/O for the streams given it.

    ``affinity`` lists CPU numbers; worker *i* is pinned to
    ``affinity[i % len(affinity)]``.
    """

    def __cinit__(self, threads=1, affinity=()):
        cdef char err[256]
        cdef int *aff = NULL
        cdef int n_aff
        cdef int nthreads
        self._tp = NULL
        threads = as_nonzero_unsigned(threads, "threads", bits=31)
        nthreads = threads
        if not hasattr(affinity, "__iter__"):
            raise TypeError(f"affinity must be a sequence of CPU numbers, not "
                            f"{type(affinity).__name__}")
        cpus = [as_unsigned(c, "a CPU number in affinity", bits=31) for c in affinity]
        n_aff = len(cpus)
        for c in cpus:
            if c >= 1 << 20:
                raise ValueError(f"invalid CPU number {c}")
        if cpus:
            usable = os.sched_getaffinity(0)
            for c in sorted(set(cpus) - usable):
                _logger.warning("worker threads cannot be bound to CPU %d: this process may "
                                "run only on CPUs %s", c, ",".join(map(str, sorted(usable))))
        if n_aff:
            aff = <int *> malloc(sizeof(int) * n_aff)
            if aff == NULL:
                raise MemoryError()
            for i, c in enumerate(cpus):
                aff[i] = c
        err[0] = 0
        with nogil:
            self._tp = tpool_create(nthreads, aff, n_aff, err, sizeof(err))
        free(aff)
        if self._tp == NULL:
            raise RuntimeError((<bytes> err).decode(errors="replace"))
        self.num_threads = threads

    cdef tpool_t *get(self) except NULL:
        if self._tp == NULL:
            raise RuntimeError("thread pool has been released")
        return self._tp

    def stop(self) -> None:
        """Stop the worker threads.

        Receive streams using the pool end: their consumers (blocking,
        polling or asyncio) get the heaps already queued, then
        :exc:`spead2.Stopped`. Synchronous sends still complete, on the
        calling thread; asynchronous sends fail.
        """
        if self._tp != NULL:
            with nogil:
                tpool_stop(self._tp)

    @property
    def stopped(self) -> bool:
        return self._tp == NULL or bool(tpool_is_stopped(self._tp))

    @staticmethod
    def set_affinity(core) -> None:
        """Pin the calling thread to CPU ``core``; a core that cannot be used
        is logged as a warning, not raised."""
        if isinstance(core, bool) or not isinstance(core, numbers.Integral):
            raise TypeError(f"core must be an integer, not {type(core).__name__}")
        try:
            os.sched_setaffinity(0, {int(core)})
        except (OSError, ValueError, OverflowError) as exc:
            _logger.warning("Failed to bind to CPU %d: %s", core, exc)

    def __dealloc__(self):
        if self._tp != NULL:
            with nogil:
                tpool_stop(self._tp)
                tpool_decref(self._tp)
            self._tp = NULL


cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    int gettid()
    ssize_t write(int fd, const void *buf, size_t count)


cdef struct _StopFromWorker:
    tpool_t *tp
    int efd


cdef void _stop_from_worker_task(void *arg) noexcept nogil:
    cdef _StopFromWorker *job = <_StopFromWorker *> arg
    cdef tpool_t *tp = job.tp
    cdef int efd = job.efd
    cdef uint64_t tid = <uint64_t> gettid()
    free(job)
    tpool_stop(tp)
    tpool_decref(tp)    # the last reference: the pool is released here
    write(efd, &tid, sizeof(tid))


def _selftest_stop_pool_from_worker(threads=1, timeout=10.0):
    """Test hook: a pool of ``threads`` workers whose only reference belongs
    to a task that, on a worker, stops the pool and drops that reference.

    Returns once that worker thread has exited, so that everything it did
    with the pool afterwards has happened (and been checked, under a
    sanitizer); raises ``TimeoutError`` if that takes over ``timeout`` s.
    """
    cdef char err[256]
    cdef tpool_t *tp
    cdef _StopFromWorker *job
    cdef int nthreads = threads
    efd = eventfd(0, EFD_CLOEXEC)
    if efd < 0:
        raise OSError(errno, os.strerror(errno))
    try:
        job = <_StopFromWorker *> malloc(sizeof(_StopFromWorker))
        if job == NULL:
            raise MemoryError()
        with nogil:
            tp = tpool_create(nthreads, NULL, 0, err, sizeof(err))
        if tp == NULL:
            free(job)
            raise RuntimeError((<bytes> err).decode(errors="replace"))
        job.tp = tp
        job.efd = efd
        if tpool_post(tp, _stop_from_worker_task, job, NULL) != 0:
            free(job)
            with nogil:
                tpool_stop(tp)
                tpool_decref(tp)
            raise MemoryError()
        if not select.select([efd], [], [], timeout)[0]:
            raise TimeoutError("the task did not stop the pool in time")
        tid = int.from_bytes(os.read(efd, 8), sys.byteorder)
    finally:
        os.close(efd)
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/self/task/{tid}"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker thread {tid} did not exit in time")
        time.sleep(0.001)


cdef class MemoryAllocator:
    """The default allocator for heap payloads: plain heap memory."""

    def __cinit__(self, *args, **kwargs):
        self._alloc = NULL

    def __init__(self):
        if self._alloc == NULL:
            self._alloc = spead_malloc_allocator_new()
            if self._alloc == NULL:
                raise MemoryError()

    def __dealloc__(self):
        if self._alloc != NULL:
            spead_allocator_decref(self._alloc)
            self._alloc = NULL

    def _allocate(self, size_t size) -> Buffer:
        """Allocate ``size`` bytes as a :class:`Buffer` (released when it dies)."""
        cdef void *handle = NULL
        cdef void *p
        with nogil:
            p = spead_allocate(self._alloc, size, &handle)
        if p == NULL:
            raise MemoryError(f"cannot allocate {size} bytes")
        return Buffer.wrap(self._alloc, <unsigned char *> p, handle, size)


cdef class Buffer:
    """Memory obtained from an allocator; exposes the buffer protocol and
    returns the memory to its allocator when the last reference dies."""

    def __cinit__(self):
        self.alloc = NULL
        self.data = NULL
        self.handle = NULL
        self.size = 0
        self.exports = 0

    @staticmethod
    cdef Buffer wrap(spead_allocator *alloc, unsigned char *data, void *handle, size_t size):
        cdef Buffer b = Buffer.__new__(Buffer)
        spead_allocator_incref(alloc)
        b.alloc = alloc
        b.data = data
        b.handle = handle
        b.size = size
        return b

    def __len__(self):
        return self.size

    def __getbuffer__(self, Py_buffer *view, int flags):
        fill_byte_view(view, self, self.data, self.size, False, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1

    def __dealloc__(self):
        if self.data != NULL:
            spead_release(self.alloc, self.data, self.handle)
            self.data = NULL
        if self.alloc != NULL:
            spead_allocator_decref(self.alloc)
            self.alloc = NULL


cdef class MmapAllocator(MemoryAllocator):
    """Allocator that maps anonymous memory with ``mmap(2)``, with extra ``flags``.

    With ``prefer_huge``, each buffer is first tried in huge pages
    (``MAP_HUGETLB``, rounded up to 2 MiB) and, where the system has none
    reserved, mapped in normal pages with transparent huge pages requested.
    """

    def __init__(self, flags=0, prefer_huge=False):
        flags = as_flags(flags, "flags", bits=31)
        self.prefer_huge = bool(prefer_huge)
        self._alloc = spead_mmap_allocator_new(flags, 1 if self.prefer_huge else 0)
        if self._alloc == NULL:
            raise MemoryError()


cdef class MemoryPool(MemoryAllocator):
    """Pool of ``upper``-byte buffers for requests whose size is in [lower, upper].

    Forms (those of the documented API):

    - ``MemoryPool(thread_pool, lower, upper, max_free, initial, low_water,
      allocator=None)``: a background task on ``thread_pool`` refills the
      pool to ``initial`` buffers whenever fewer than ``low_water`` remain;
    - ``MemoryPool(lower, upper, max_free, initial, allocator=None)``.

    The first form is chosen by a :class:`ThreadPool` first, or the
    ``thread_pool`` keyword. Sizes and counts are unsigned 64-bit integers.
    """

    def __init__(self, *args, **kwargs):
        cdef MemoryAllocator base = None
        cdef ThreadPool tp = None
        cdef tpool_t *ctp = NULL
        if (args and isinstance(args[0], ThreadPool)) or "thread_pool" in kwargs:
            names = ("thread_pool", "lower", "upper", "max_free", "initial", "low_water",
                     "allocator")
        else:
            names = ("lower", "upper", "max_free", "initial", "allocator")
        values = bind_arguments("MemoryPool", names, args, kwargs, names[:-1])
        allocator = values.get("allocator")
        if allocator is not None:
            if not isinstance(allocator, MemoryAllocator):
                raise TypeError("allocator must be a spead2.MemoryAllocator")
            base = <MemoryAllocator> allocator
        if "thread_pool" in values:
            if not isinstance(values["thread_pool"], ThreadPool):
                raise TypeError("thread_pool must be a spead2.ThreadPool")
            tp = <ThreadPool> values["thread_pool"]
            ctp = tp.get()
        lower = as_unsigned(values["lower"], "lower")
        upper = as_unsigned(values["upper"], "upper")
        max_free = as_unsigned(values["max_free"], "max_free")
        initial = as_unsigned(values["initial"], "initial")
        low_water = as_unsigned(values.get("low_water", 0), "low_water")
        if lower > upper:
            raise ValueError("lower must not exceed upper")
        self.lower = lower
        self.upper = upper
        self.max_free = max_free
        self.initial = initial
        self.low_water = low_water
        self._thread_pool = tp
        self._underlying = base
        with nogil:
            self._alloc = spead_pool_allocator_new(
                ctp, self.lower, self.upper, self.max_free, self.initial, self.low_water,
                base._alloc if base is not None else NULL)
        if self._alloc == NULL:
            raise MemoryError()

    @property
    def free_buffers(self) -> int:
        """Number of buffers currently waiting in the pool."""
        return spead_pool_free_count(self._alloc)

    @property
    def refills(self) -> int:
        """Number of completed background refills."""
        return spead_pool_refills(self._alloc)

    @property
    def warn_on_empty(self) -> bool:
        """Whether a request that finds the pool empty logs
        ``memory pool is empty when allocating N bytes`` (a warning, through
        the receiving stream's log); ``True`` by default."""
        return bool(spead_pool_get_warn_on_empty(self._alloc))

    @warn_on_empty.setter
    def warn_on_empty(self, value: bool) -> None:
        spead_pool_set_warn_on_empty(self._alloc, 1 if value else 0)


cdef class InprocQueue:
    """A queue of packets within one process: ``spead2.send.InprocStream``
    (or :meth:`add_packet`) puts packets in, a receive stream's
    ``add_inproc_reader`` takes them out. Unbounded, first in first out;
    each packet is copied in."""

    def __cinit__(self):
        self.q = spead_inproc_queue_new()
        if self.q == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.q != NULL:
            spead_inproc_queue_decref(self.q)
            self.q = NULL

    def add_packet(self, packet) -> None:
        """Append one packet: any C-contiguous buffer. Raises
        :exc:`spead2.Stopped` once the queue is stopped."""
        cdef Py_buffer view
        cdef int rc
        PyObject_GetBuffer(packet, &view, PyBUF_C_CONTIGUOUS)
        try:
            with nogil:
                rc = spead_inproc_queue_add(self.q, <const uint8_t *> view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        if rc == 1:
            import spead2
            raise spead2.Stopped("the queue has been stopped")
        if rc != 0:
            raise MemoryError()

    def stop(self) -> None:
        """No more packets: receivers take what is queued, then stop."""
        spead_inproc_queue_stop(self.q)

    def __len__(self) -> int:
        return spead_inproc_queue_size(self.q)


# SPEAD constants, as csrc/wire.h defines them, for ``spead2`` to re-export.
NULL_ID = _wire.SPEAD_NULL_ID
HEAP_CNT_ID = _wire.SPEAD_HEAP_CNT_ID
HEAP_LENGTH_ID = _wire.SPEAD_HEAP_LENGTH_ID
PAYLOAD_OFFSET_ID = _wire.SPEAD_PAYLOAD_OFFSET_ID
PAYLOAD_LENGTH_ID = _wire.SPEAD_PAYLOAD_LENGTH_ID
DESCRIPTOR_ID = _wire.SPEAD_DESCRIPTOR_ID
STREAM_CTRL_ID = _wire.SPEAD_STREAM_CTRL_ID
DESCRIPTOR_NAME_ID = _wire.SPEAD_DESCRIPTOR_NAME_ID
DESCRIPTOR_DESCRIPTION_ID = _wire.SPEAD_DESCRIPTOR_DESCRIPTION_ID
DESCRIPTOR_SHAPE_ID = _wire.SPEAD_DESCRIPTOR_SHAPE_ID
DESCRIPTOR_FORMAT_ID = _wire.SPEAD_DESCRIPTOR_FORMAT_ID
DESCRIPTOR_ID_ID = _wire.SPEAD_DESCRIPTOR_ID_ID
DESCRIPTOR_DTYPE_ID = _wire.SPEAD_DESCRIPTOR_DTYPE_ID
CTRL_STREAM_START = _wire.SPEAD_CTRL_STREAM_START
CTRL_DESCRIPTOR_REISSUE = _wire.SPEAD_CTRL_DESCRIPTOR_REISSUE
CTRL_STREAM_STOP = _wire.SPEAD_CTRL_STREAM_STOP
CTRL_DESCRIPTOR_UPDATE = _wire.SPEAD_CTRL_DESCRIPTOR_UPDATE
BUG_COMPAT_DESCRIPTOR_WIDTHS = _wire.SPEAD_BUG_COMPAT_DESCRIPTOR_WIDTHS
BUG_COMPAT_SHAPE_BIT_1 = _wire.SPEAD_BUG_COMPAT_SHAPE_BIT_1
BUG_COMPAT_SWAP_ENDIAN = _wire.SPEAD_BUG_COMPAT_SWAP_ENDIAN
BUG_COMPAT_PYSPEAD_0_5_2 = _wire.SPEAD_BUG_COMPAT_PYSPEAD_0_5_2
MEMCPY_STD = _wire.SPEAD_MEMCPY_STD
MEMCPY_NONTEMPORAL = _wire.SPEAD_MEMCPY_NONTEMPORAL
