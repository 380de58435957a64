# cython: language_level=3
"""Compiled receive stream: heaps assembled by the thread pool's workers."""

import logging
import socket as _socket
import time

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t, uint64_t, uint8_t
from libc.stdlib cimport malloc, free, qsort
from libc.string cimport memcpy

from spead2._core cimport ThreadPool, MemoryAllocator, Buffer, fill_byte_view
from spead2._alloc cimport spead_allocator, spead_malloc_allocator_new, spead_allocator_decref
from spead2._tpool cimport tpool_t

import spead2
from spead2._args import as_index
from spead2._flavour import Flavour

_logger = logging.getLogger("spead2")

#: Default limit on the size of one heap's payload (bytes).
DEFAULT_MAX_HEAP_SIZE = 1 << 30


cdef extern from "recv.h" nogil:
    ctypedef struct spead_heap:
        int64_t cnt
        int heap_address_bits
        int bug_compat
        uint8_t *payload
        size_t payload_size
        void *handle
        spead_allocator *alloc
        uint64_t *pointers
        size_t n_pointers

    void spead_heap_free(spead_heap *h)

    ctypedef struct spead_recv_stats:
        uint64_t packets
        uint64_t batches
        uint64_t max_batch
        uint64_t heaps
        uint64_t single_packet_heaps
        uint64_t incomplete_heaps_evicted
        uint64_t incomplete_heaps_flushed
        uint64_t bad_packets
        uint64_t duplicate_packets
        uint64_t too_large_packets
        uint64_t rejected_packets
        uint64_t payload_bytes
        uint64_t worker_blocked
        uint64_t log_suppressed

    ctypedef struct spead_log_entry:
        int level
        char text[200]

    ctypedef struct recv_stream:
        pass

    recv_stream *recv_stream_new(tpool_t *tp, int bug_compat, size_t max_heaps, size_t ring_heaps,
                                 size_t max_heap_size, spead_allocator *alloc)
    void recv_stream_decref(recv_stream *s)
    void recv_stream_set_allocator(recv_stream *s, spead_allocator *alloc)
    void recv_stream_set_memcpy(recv_stream *s, int nontemporal)
    void recv_stream_stop(recv_stream *s)
    int recv_stream_pop(recv_stream *s, spead_heap **out, int timeout_ms)
    int recv_stream_logs_pending(recv_stream *s)
    size_t recv_stream_take_logs(recv_stream *s, spead_log_entry *out, size_t max) nogil
    void recv_stream_get_stats(recv_stream *s, spead_recv_stats *out) nogil
    int recv_stream_fd(recv_stream *s)
    int recv_add_buffer_reader(recv_stream *s, const uint8_t *data, size_t len)
    int recv_add_udp_reader(recv_stream *s, int fd, size_t max_size)


cdef class _HeapWarnings:
    """Warnings about what a stream's heaps contain, at most 32 lines per
    second per stream: like dropped packets, their number is up to the
    sender. A line after a suppressed stretch says how many were
    suppressed."""

    cdef int budget
    cdef double period_start
    cdef readonly object suppressed

    def __init__(self):
        self.budget = 32
        self.period_start = time.monotonic()
        self.suppressed = 0

    def warning(self, msg, *args):
        cdef double now
        if self.budget == 0:
            now = time.monotonic()
            if now - self.period_start >= 1.0:
                self.budget = 32
                self.period_start = now
        if self.budget == 0:
            self.suppressed += 1
            return
        self.budget -= 1
        if self.suppressed:
            msg += " (%d similar messages suppressed)"
            args += (self.suppressed,)
            self.suppressed = 0
        _logger.warning(msg, *args)


# for heaps not made by a stream
_heap_warnings = _HeapWarnings()


cdef int64_t _HEAP_LENGTH_ID = 0x02
cdef uint64_t _DESCRIPTOR_ID = 0x05
cdef uint64_t _STREAM_CTRL_ID = 0x06
cdef uint64_t _CTRL_STREAM_START = 0

_flavours = {}
_default_allocator = MemoryAllocator()


cdef object _flavour(int hab, int bug_compat):
    key = (hab, bug_compat)
    f = _flavours.get(key)
    if f is None:
        f = Flavour(4, 64, hab, bug_compat)
        _flavours[key] = f
    return f


cdef class RawItem:
    """One item of a received heap: its ``id``, whether it was sent as an
    immediate, and its bytes (through the buffer protocol)."""

    cdef readonly uint64_t id
    cdef readonly bint is_immediate
    cdef object owner
    cdef const unsigned char *ptr
    cdef Py_ssize_t length
    cdef unsigned char immediate[8]

    def __getbuffer__(self, Py_buffer *view, int flags):
        fill_byte_view(view, self, <void *> self.ptr, self.length, True, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __len__(self):
        return self.length

    def __repr__(self):
        kind = "immediate" if self.is_immediate else "addressed"
        return f"<RawItem id={self.id:#x} {kind} {self.length} bytes>"


cdef int _cmp_u64(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t *> a)[0]
    cdef uint64_t y = (<const uint64_t *> b)[0]
    return (x > y) - (x < y)


cdef class Heap:
    """A heap received from a stream. Pass it to :meth:`spead2.ItemGroup.update`."""

    cdef readonly int64_t cnt
    cdef int hab
    cdef int bug_compat
    cdef Buffer payload
    cdef size_t payload_size
    cdef uint64_t *pointers
    cdef size_t n_pointers
    cdef _HeapWarnings warnings

    def __cinit__(self):
        self.pointers = NULL
        self.n_pointers = 0
        self.payload = None
        self.warnings = _heap_warnings

    def __dealloc__(self):
        free(self.pointers)

    @property
    def flavour(self):
        """The SPEAD flavour the heap was encoded with."""
        return _flavour(self.hab, self.bug_compat)

    @property
    def payload_size(self) -> int:
        return self.payload_size

    def is_start_of_stream(self) -> bool:
        """True if the heap carries a stream-control start item."""
        cdef size_t i
        cdef uint64_t ptr
        cdef int hab = self.hab
        for i in range(self.n_pointers):
            ptr = self.pointers[i]
            if (ptr >> 63) and ((ptr >> hab) & ((1ULL << (63 - hab)) - 1)) == _STREAM_CTRL_ID \
                    and (ptr & ((1ULL << hab) - 1)) == _CTRL_STREAM_START:
                return True
        return False

    def get_items(self) -> list:
        """The heap's items, in the order their pointers arrived."""
        cdef size_t i, n_addr = 0, lo, hi, mid
        cdef uint64_t ptr, addr, end, id_mask, addr_mask
        cdef int hab = self.hab
        cdef int nbytes = hab // 8
        cdef uint64_t *addrs = NULL
        cdef RawItem item
        cdef list out = []
        id_mask = (1ULL << (63 - hab)) - 1
        addr_mask = (1ULL << hab) - 1
        for i in range(self.n_pointers):
            if not (self.pointers[i] >> 63):
                n_addr += 1
        if n_addr:
            addrs = <uint64_t *> malloc(n_addr * sizeof(uint64_t))
            if addrs == NULL:
                raise MemoryError()
            n_addr = 0
            for i in range(self.n_pointers):
                if not (self.pointers[i] >> 63):
                    addrs[n_addr] = self.pointers[i] & addr_mask
                    n_addr += 1
            if n_addr > 1:
                qsort(addrs, n_addr, sizeof(uint64_t), _cmp_u64)
        try:
            for i in range(self.n_pointers):
                ptr = self.pointers[i]
                item = RawItem.__new__(RawItem)
                item.id = (ptr >> hab) & id_mask
                addr = ptr & addr_mask
                if ptr >> 63:
                    item.is_immediate = True
                    for b in range(nbytes):
                        item.immediate[b] = (addr >> (8 * (nbytes - 1 - b))) & 0xff
                    item.ptr = item.immediate
                    item.length = nbytes
                else:
                    if addr > self.payload_size:
                        self.warnings.warning(
                            "item %#x in heap %d points past the payload; ignored",
                            item.id, self.cnt)
                        continue
                    # the item ends where the next item (by address) starts
                    lo = 0
                    hi = n_addr
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if addrs[mid] <= addr:
                            lo = mid + 1
                        else:
                            hi = mid
                    end = addrs[lo] if lo < n_addr else self.payload_size
                    if end > self.payload_size:
                        end = self.payload_size
                    item.is_immediate = False
                    item.owner = self.payload
                    item.ptr = self.payload.data + addr if self.payload is not None else item.immediate
                    item.length = end - addr
                out.append(item)
        finally:
            free(addrs)
        return out

    def get_descriptors(self) -> list:
        """The raw descriptors carried by the heap."""
        cdef size_t i
        cdef int hab = self.hab
        for i in range(self.n_pointers):
            if ((self.pointers[i] >> hab) & ((1ULL << (63 - hab)) - 1)) == _DESCRIPTOR_ID:
                break
        else:
            return []
        from spead2._codec import decode_raw_descriptor
        out = []
        for item in self.get_items():
            if item.id == _DESCRIPTOR_ID and not item.is_immediate:
                try:
                    out.append(decode_raw_descriptor(item, self.bug_compat))
                except ValueError as exc:
                    self.warnings.warning("malformed descriptor in heap %d ignored: %s",
                                          self.cnt, exc)
        return out

    def __repr__(self):
        return f"<spead2.recv.Heap cnt={self.cnt} payload={self.payload_size} items={self.n_pointers}>"


cdef Heap _wrap_heap(spead_heap *h, _HeapWarnings warnings):
    cdef Heap heap = Heap.__new__(Heap)
    heap.warnings = warnings
    heap.cnt = h.cnt
    heap.hab = h.heap_address_bits
    heap.bug_compat = h.bug_compat
    heap.payload_size = h.payload_size
    if h.payload != NULL:
        heap.payload = Buffer.wrap(h.alloc, h.payload, h.handle, h.payload_size)
        h.payload = NULL
    heap.pointers = h.pointers
    heap.n_pointers = h.n_pointers
    h.pointers = NULL
    spead_heap_free(h)
    return heap


class StreamStats:
    """Counters of a receive stream, read at one instant."""

    __slots__ = ("packets", "batches", "max_batch", "heaps", "single_packet_heaps",
                 "incomplete_heaps_evicted", "incomplete_heaps_flushed", "bad_packets",
                 "duplicate_packets", "too_large_packets", "rejected_packets", "bytes",
                 "worker_blocked", "log_suppressed")

    def __init__(self, **kwargs):
        for name in self.__slots__:
            setattr(self, name, kwargs.get(name, 0))

    @property
    def malformed_packets(self) -> int:
        """Packets dropped because they could not be decoded or were inconsistent."""
        return self.bad_packets + self.rejected_packets + self.too_large_packets

    def _asdict(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self):
        inner = ", ".join(f"{k}={v}" for k, v in self._asdict().items())
        return f"StreamStats({inner})"


from spead2._errors import SocketError as UdpSocketError


cdef class _BufferHold:
    cdef Py_buffer view
    cdef bint held

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


def _check_size(name, value):
    value = as_index(value, name)
    if value < 0:
        raise OverflowError(f"{name} must be non-negative")
    if value >= 2**64:
        raise OverflowError(f"{name} {value} does not fit in 64 bits")
    return value


cdef class Stream:
    """A receive stream: heaps assembled from one or more transports.

    Parameters follow the documented API: ``thread_pool``, ``bug_compat``,
    ``max_heaps`` (heaps under assembly at once) and ``ring_heaps`` (finished
    heaps waiting for the consumer). ``max_heap_size`` bounds the payload of a
    single heap; packets claiming more are dropped.
    """

    cdef recv_stream *s
    cdef readonly object thread_pool
    cdef list _holds
    cdef readonly int bug_compat
    cdef readonly size_t max_heaps
    cdef readonly size_t ring_heaps
    cdef readonly size_t max_heap_size
    cdef object _allocator
    cdef bint _stopped
    cdef _HeapWarnings _warnings

    def __cinit__(self, *args, **kwargs):
        self.s = NULL
        self._holds = []

    def __init__(self, ThreadPool thread_pool not None, bug_compat=0, max_heaps=4,
                 ring_heaps=4, *, max_heap_size=DEFAULT_MAX_HEAP_SIZE):
        cdef spead_allocator *alloc
        cdef tpool_t *tp = thread_pool.get()
        bug_compat = as_index(bug_compat, "bug_compat")
        if bug_compat & ~7 or bug_compat < 0:
            raise ValueError(f"invalid bug_compat flags {bug_compat:#x}")
        max_heaps = _check_size("max_heaps", max_heaps)
        ring_heaps = _check_size("ring_heaps", ring_heaps)
        max_heap_size = _check_size("max_heap_size", max_heap_size)
        if max_heaps < 1:
            raise ValueError("max_heaps must be at least 1")
        if ring_heaps < 1:
            raise ValueError("ring_heaps must be at least 1")
        if self.s != NULL:
            raise RuntimeError("stream already initialised")
        self.thread_pool = thread_pool
        self.bug_compat = bug_compat
        self.max_heaps = max_heaps
        self.ring_heaps = ring_heaps
        self.max_heap_size = max_heap_size
        # one default allocator for all streams, so the blocks it keeps for
        # reuse stay warm from one stream to the next
        self._allocator = _default_allocator
        self._warnings = _HeapWarnings()
        alloc = (<MemoryAllocator> self._allocator)._alloc
        self.s = recv_stream_new(tp, bug_compat, self.max_heaps, self.ring_heaps,
                                 self.max_heap_size, alloc)
        if self.s == NULL:
            raise MemoryError(f"cannot allocate a stream with max_heaps={max_heaps} and "
                              f"ring_heaps={ring_heaps}")

    cdef recv_stream *_get(self) except NULL:
        if self.s == NULL:
            raise RuntimeError("stream is not initialised")
        return self.s

    def __dealloc__(self):
        if self.s != NULL:
            with nogil:
                recv_stream_stop(self.s)
                recv_stream_decref(self.s)
            self.s = NULL

    def set_memory_allocator(self, MemoryAllocator allocator not None) -> None:
        """Use ``allocator`` for the payload of heaps from now on."""
        recv_stream_set_allocator(self._get(), allocator._alloc)
        self._allocator = allocator

    def set_memcpy(self, id) -> None:
        """Choose the copy from packet to heap: MEMCPY_STD or MEMCPY_NONTEMPORAL."""
        id = as_index(id, "id")
        if id not in (0, 1):
            raise ValueError(f"unknown memcpy function {id}")
        recv_stream_set_memcpy(self._get(), id)

    def add_buffer_reader(self, buffer) -> None:
        """Feed the stream from the packets held (back to back) in ``buffer``.

        The stream stops when the end of the buffer is reached.
        """
        cdef recv_stream *s = self._get()
        cdef _BufferHold hold = _BufferHold()
        cdef int rc
        PyObject_GetBuffer(buffer, &hold.view, PyBUF_SIMPLE)
        hold.held = True
        self._holds.append(hold)
        with nogil:
            rc = recv_add_buffer_reader(s, <const uint8_t *> hold.view.buf, hold.view.len)
        if rc != 0:
            _logger.warning("buffer reader not added: the stream is stopped")

    def add_udp_reader(self, *args, **kwargs) -> None:
        """Feed the stream from a UDP port.

        Forms: ``(port, max_size=DEFAULT_UDP_MAX_SIZE,
        buffer_size=DEFAULT_UDP_BUFFER_SIZE, bind_hostname='', socket=None)``;
        ``(multicast_group, port, max_size, buffer_size, interface_address)``
        for IPv4 multicast; ``(multicast_group, port, max_size, buffer_size,
        interface_index)`` for IPv6 multicast.
        """
        from spead2.recv._udp import open_udp_socket
        sock, max_size = open_udp_socket(*args, **kwargs)
        self._add_udp_fd(sock, max_size)

    def _add_udp_fd(self, sock, size_t max_size):
        cdef recv_stream *s = self._get()
        cdef int fd = sock.detach()
        cdef int rc
        with nogil:
            rc = recv_add_udp_reader(s, fd, max_size)
        if rc != 0:
            if rc == -108:  # ESHUTDOWN
                _logger.warning("UDP reader not added: the stream is stopped")
            else:
                import os
                raise UdpSocketError(-rc, os.strerror(-rc))

    cdef void _drain_logs(self):
        cdef spead_log_entry entries[16]
        cdef size_t n, i
        if self.s == NULL:
            return
        cdef recv_stream *s = self.s
        while recv_stream_logs_pending(s):
            with nogil:
                n = recv_stream_take_logs(s, entries, 16)
            for i in range(n):
                _logger.log(entries[i].level, "%s", entries[i].text.decode("utf-8", "replace"))
            if n < 16:
                break

    def get(self):
        """Return the next heap, waiting if necessary.

        Raises :exc:`spead2.Stopped` once the stream has stopped and every
        queued heap has been returned.
        """
        cdef spead_heap *h = NULL
        cdef int r
        cdef recv_stream *s = self._get()
        while True:
            with nogil:
                r = recv_stream_pop(s, &h, 100)
            self._drain_logs()
            if r == 1:
                return _wrap_heap(h, self._warnings)
            if r == 0:
                raise spead2.Stopped()
            PyErr_CheckSignals()

    def get_nowait(self):
        """Like :meth:`get`, but raise :exc:`spead2.Empty` if no heap is ready."""
        cdef spead_heap *h = NULL
        cdef int r
        cdef recv_stream *s = self._get()
        r = recv_stream_pop(s, &h, 0)
        self._drain_logs()
        if r == 1:
            return _wrap_heap(h, self._warnings)
        if r == 0:
            raise spead2.Stopped()
        raise spead2.Empty()

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self.get()
        except spead2.Stopped:
            raise StopIteration from None

    def stop(self) -> None:
        """Stop the stream and close its transports. A stopped stream cannot restart."""
        cdef recv_stream *s = self._get()
        with nogil:
            recv_stream_stop(s)
        self._drain_logs()

    @property
    def fd(self) -> int:
        """File descriptor that is readable exactly when a heap (or the end of
        the stream) is ready. Do not read from it."""
        return recv_stream_fd(self._get())

    @property
    def stats(self) -> StreamStats:
        """A snapshot of the stream's counters."""
        cdef spead_recv_stats st
        cdef recv_stream *s = self._get()
        with nogil:
            recv_stream_get_stats(s, &st)
        self._drain_logs()
        return StreamStats(
            packets=st.packets, batches=st.batches, max_batch=st.max_batch, heaps=st.heaps,
            single_packet_heaps=st.single_packet_heaps,
            incomplete_heaps_evicted=st.incomplete_heaps_evicted,
            incomplete_heaps_flushed=st.incomplete_heaps_flushed, bad_packets=st.bad_packets,
            duplicate_packets=st.duplicate_packets, too_large_packets=st.too_large_packets,
            rejected_packets=st.rejected_packets, bytes=st.payload_bytes,
            worker_blocked=st.worker_blocked, log_suppressed=st.log_suppressed)
