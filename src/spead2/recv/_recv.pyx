# cython: language_level=3
"""Compiled receive side: finished heaps, the receive stream, and a
thread-free handle on heap assembly for tests and tools."""

import logging

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t, uint64_t, uint8_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from spead2._core cimport ThreadPool, MemoryAllocator, Buffer, InprocQueue, fill_byte_view
from spead2._alloc cimport spead_allocator
from spead2._tpool cimport tpool_t
from spead2._wire cimport (
    SPEAD_PACKET_OK, SPEAD_STREAM_CTRL_ID, SPEAD_CTRL_STREAM_START, SPEAD_CTRL_STREAM_STOP,
    SPEAD_DESCRIPTOR_ID, spead_packet, spead_decode_packet, spead_packet_status_string,
    spead_item_extent, spead_item_extents, spead_pointer_id)
from spead2._recv_core cimport *

import spead2
from spead2 import _logging
from spead2._args import as_index, as_nonzero_unsigned, as_unsigned
from spead2._flavour import Flavour

_logger = logging.getLogger("spead2")

#: Default limit on the size of one heap's payload (bytes).
DEFAULT_MAX_HEAP_SIZE = 1 << 30


# the rate limiter of the spead2 logger, shared by every source of log lines
_limiter = _logging.install()


cdef class _LogSource:
    """What a stream and its heaps log about received data goes through the
    spead2 logger's rate limiter under one key: at most 32 lines a second
    per stream."""

    def warning(self, msg, *args):
        _logging.log(logging.WARNING, msg, *args, source=self)


# for heaps not made by a stream
_heap_log = _LogSource()

_flavours = {}
default_allocator = MemoryAllocator()


cdef object _flavour(int hab, int bug_compat):
    key = (hab, bug_compat)
    f = _flavours.get(key)
    if f is None:
        f = Flavour(4, 64, hab, bug_compat)
        _flavours[key] = f
    return f


cdef class RawItem:
    """One item of a received heap: its ``id``, whether it was sent as an
    immediate (then ``immediate_value`` is its address field), and its bytes
    (through the buffer protocol)."""

    cdef readonly uint64_t id
    cdef readonly bint is_immediate
    cdef readonly uint64_t immediate_value
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


cdef RawItem _immediate_item(uint64_t id, uint64_t value, int hab):
    cdef RawItem item = RawItem.__new__(RawItem)
    cdef int nbytes = hab // 8
    cdef int b
    item.id = id
    item.is_immediate = True
    item.immediate_value = value
    for b in range(nbytes):
        item.immediate[b] = (value >> (8 * (nbytes - 1 - b))) & 0xff
    item.ptr = item.immediate
    item.length = nbytes
    return item


cdef class _HeapBase:
    """What complete and incomplete received heaps share."""

    cdef spead_heap *h
    cdef _LogSource warnings

    def __cinit__(self):
        self.h = NULL
        self.warnings = _heap_log

    def __dealloc__(self):
        spead_heap_free(self.h)

    @property
    def cnt(self) -> int:
        """The heap counter."""
        return self.h.cnt

    @property
    def flavour(self):
        """The SPEAD flavour the heap was encoded with."""
        return _flavour(self.h.heap_address_bits, self.h.bug_compat)

    def is_start_of_stream(self) -> bool:
        """True if the heap carries a stream-control start item."""
        return bool(spead_heap_has_ctrl(self.h, SPEAD_CTRL_STREAM_START))

    def is_end_of_stream(self) -> bool:
        """True if the heap carries a stream-control stop item."""
        return bool(spead_heap_has_ctrl(self.h, SPEAD_CTRL_STREAM_STOP))

    cdef list _items(self, Buffer payload, bint immediates_only):
        cdef spead_heap *h = self.h
        cdef spead_item_extent *ext = NULL
        cdef long n, i
        cdef RawItem item
        cdef list out = []
        if h.n_pointers == 0:
            return out
        ext = <spead_item_extent *> malloc(h.n_pointers * sizeof(spead_item_extent))
        if ext == NULL:
            raise MemoryError()
        try:
            n = spead_item_extents(h.pointers, h.n_pointers, h.heap_address_bits,
                                   h.payload_size if not immediates_only else 0xffffffffffffffff,
                                   ext)
            if n == -2:
                raise MemoryError()
            if n < 0:
                self.warnings.warning("heap %d has items beyond its payload; ignored", h.cnt)
                return out
            for i in range(n):
                if ext[i].immediate:
                    out.append(_immediate_item(ext[i].id, ext[i].value, h.heap_address_bits))
                elif not immediates_only:
                    item = RawItem.__new__(RawItem)
                    item.id = ext[i].id
                    item.is_immediate = False
                    item.owner = payload
                    item.ptr = payload.data + ext[i].value
                    item.length = <Py_ssize_t> ext[i].length
                    out.append(item)
        finally:
            free(ext)
        return out


cdef class Heap(_HeapBase):
    """A heap received from a stream. Pass it to :meth:`spead2.ItemGroup.update`."""

    cdef Buffer payload

    @property
    def payload_size(self) -> int:
        """Bytes of payload the heap's items span."""
        return self.h.payload_size

    def get_items(self) -> list:
        """The heap's items (raw), in the order their pointers arrived;
        header items and empty addressed items are left out."""
        return self._items(self.payload, False)

    def get_descriptors(self) -> list:
        """The raw descriptors carried by the heap."""
        cdef size_t i
        cdef int hab = self.h.heap_address_bits
        for i in range(self.h.n_pointers):
            if spead_pointer_id(self.h.pointers[i], hab) == SPEAD_DESCRIPTOR_ID:
                break
        else:
            return []
        from spead2._codec import decode_raw_descriptor
        out = []
        for item in self.get_items():
            if item.id == SPEAD_DESCRIPTOR_ID and not item.is_immediate:
                try:
                    out.append(decode_raw_descriptor(item, self.h.bug_compat))
                except ValueError as exc:
                    self.warnings.warning("malformed descriptor in heap %d ignored: %s",
                                          self.h.cnt, exc)
        return out

    def __repr__(self):
        return (f"<spead2.recv.Heap cnt={self.h.cnt} payload={self.h.payload_size} "
                f"items={self.h.n_pointers}>")


cdef class IncompleteHeap(_HeapBase):
    """A heap that left assembly before all its payload arrived. Only its
    immediate items are available."""

    @property
    def heap_length(self) -> int:
        """The heap length its packets announced, or -1 if none did."""
        return self.h.heap_length

    @property
    def received_length(self) -> int:
        """Payload bytes that arrived."""
        return self.h.received_length

    @property
    def payload_ranges(self) -> list:
        """``(start, end)`` byte ranges of the payload that arrived (end
        exclusive, ascending, merged); empty unless the stream keeps them."""
        return [(self.h.ranges[i].start, self.h.ranges[i].end) for i in range(self.h.n_ranges)]

    def get_items(self) -> list:
        """The heap's immediate items."""
        return self._items(None, True)

    def __repr__(self):
        return (f"<spead2.recv.IncompleteHeap cnt={self.h.cnt} received={self.h.received_length}"
                f"/{self.h.heap_length}>")


cdef object _wrap_heap(spead_heap *h, _LogSource warnings):
    """A Python heap that owns ``h``."""
    cdef _HeapBase out
    cdef Heap heap
    if h.contiguous:
        heap = Heap.__new__(Heap)
        if h.payload != NULL:
            heap.payload = Buffer.wrap(h.alloc, h.payload, h.handle, h.payload_size)
            h.payload = NULL
            spead_heap_release_payload(h)   # drops the allocator reference the heap held
        out = heap
    else:
        out = IncompleteHeap.__new__(IncompleteHeap)
    out.h = h
    out.warnings = warnings
    return out


# The core statistics, as csrc/stats.h defines them: (name, mode) with mode
# 0 for counters (summed) and 1 for maxima.
CORE_STATS = tuple((spead_stat_names[i].decode(), spead_stat_modes[i])
                   for i in range(SPEAD_STAT_CORE_COUNT))


from spead2._errors import SocketError as UdpSocketError


cdef class _BufferHold:
    cdef Py_buffer view
    cdef bint held

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


cdef class _Ringbuffer:
    """The ring of finished heaps of a stream: ``size()`` heaps waiting,
    ``capacity()``."""

    cdef Stream _stream

    def size(self) -> int:
        return recv_stream_ring_size(self._stream._get())

    def capacity(self) -> int:
        return self._stream._ring_config.heaps


cdef class _StreamBase:
    """What every receive stream has: readers, start and stop, statistics and
    configuration. :class:`Stream` hands heaps to its consumer; chunk streams
    (:mod:`spead2.recv._chunks`) place them into chunks."""

    DEFAULT_UDP_MAX_SIZE = 9200
    DEFAULT_UDP_BUFFER_SIZE = 8388608
    DEFAULT_TCP_MAX_SIZE = 65536
    DEFAULT_TCP_BUFFER_SIZE = 212992

    def __cinit__(self, *args, **kwargs):
        self.s = NULL
        self._holds = []

    cdef int _create(self, ThreadPool thread_pool, config, recv_stream_config *c,
                     list extra_stats) except -1:
        """Build the C stream from ``config`` (a StreamConfig) and the parts
        of ``c`` the subclass filled in (ring or chunks); ``extra_stats`` are
        statistics the stream adds after the custom ones."""
        from spead2.recv._config import StreamStatConfig
        cdef tpool_t *tp = thread_pool.get()
        cdef bytes modes
        if self.s != NULL:
            raise RuntimeError("stream already initialised")
        stats = config.stats + extra_stats
        modes = bytes(int(stat.mode is StreamStatConfig.Mode.MAXIMUM) for stat in stats)
        c.assembly.max_heaps = config.max_heaps
        c.assembly.substreams = config.substreams
        c.assembly.max_heap_size = config.max_heap_size
        c.assembly.bug_compat = config.bug_compat
        c.assembly.allow_out_of_order = config.allow_out_of_order
        c.assembly.allow_unsized_heaps = config.allow_unsized_heaps
        c.assembly.stop_on_stop_item = config.stop_on_stop_item
        c.explicit_start = config.explicit_start
        c.n_stats = len(stats)
        c.stat_modes = <const uint8_t *> modes
        self.thread_pool = thread_pool
        self._config = config
        self._stat_list = stats
        self._warnings = _LogSource()
        self.s = recv_stream_new(tp, c, (<MemoryAllocator> config.memory_allocator)._alloc)
        if self.s == NULL:
            raise MemoryError(f"cannot allocate a stream with max_heaps={config.max_heaps} "
                              f"and substreams={config.substreams}")
        recv_stream_set_memcpy(self.s, config.memcpy)
        recv_stream_set_log_level(self.s, _logger.getEffectiveLevel())
        return 0

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
        if self._warnings is not None:
            _limiter.forget(self._warnings)

    @property
    def config(self):
        """A copy of the stream's :class:`StreamConfig`."""
        import copy
        return copy.copy(self._config)

    def set_memory_allocator(self, MemoryAllocator allocator not None) -> None:
        """Use ``allocator`` for the payload of heaps from now on."""
        recv_stream_set_allocator(self._get(), allocator._alloc)
        self._config.memory_allocator = allocator

    def set_memcpy(self, id) -> None:
        """Choose the copy from packet to heap: MEMCPY_STD or MEMCPY_NONTEMPORAL."""
        cdef recv_stream *s = self._get()
        id = as_index(id, "id")
        self._config.memcpy = id
        recv_stream_set_memcpy(s, id)

    def start(self) -> None:
        """Start readers that wait for it (``explicit_start``); harmless
        otherwise."""
        cdef recv_stream *s = self._get()
        with nogil:
            recv_stream_start(s)
        self._started = True

    cdef bint _may_add_reader(self) except -1:
        self._get()
        if self._started and self._config.explicit_start:
            raise RuntimeError("readers cannot be added after start() with explicit_start")
        return True

    cdef void _reader_refused(self, what):
        _logger.debug("%s reader not added: the stream has stopped", what)

    def add_buffer_reader(self, buffer) -> None:
        """Feed the stream from the packets held (back to back) in ``buffer``.

        The stream stops when the end of the buffer is reached.
        """
        cdef recv_stream *s = self._get()
        cdef _BufferHold hold = _BufferHold()
        cdef int rc
        self._may_add_reader()
        PyObject_GetBuffer(buffer, &hold.view, PyBUF_SIMPLE)
        hold.held = True
        self._holds.append(hold)
        with nogil:
            rc = recv_add_buffer_reader(s, <const uint8_t *> hold.view.buf, hold.view.len)
        if rc != 0:
            self._reader_refused("buffer")

    def add_udp_reader(self, *args, **kwargs) -> None:
        """Feed the stream from a UDP port.

        Forms: ``(port, max_size=DEFAULT_UDP_MAX_SIZE,
        buffer_size=DEFAULT_UDP_BUFFER_SIZE, bind_hostname='', socket=None)``;
        ``(multicast_group, port, max_size, buffer_size, interface_address)``
        for IPv4 multicast; ``(multicast_group, port, max_size, buffer_size,
        interface_index)`` for IPv6 multicast.
        """
        from spead2.recv._udp import open_udp_socket
        self._may_add_reader()
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
                self._reader_refused("UDP")
            else:
                import os
                raise UdpSocketError(-rc, os.strerror(-rc))

    def add_tcp_reader(self, *args, **kwargs) -> None:
        """Feed the stream from one TCP connection, packets back to back.

        Forms: ``(port, max_size=DEFAULT_TCP_MAX_SIZE,
        buffer_size=DEFAULT_TCP_BUFFER_SIZE, bind_hostname='')`` listens on
        ``(bind_hostname, port)``; ``(acceptor, max_size=DEFAULT_TCP_MAX_SIZE)``
        takes (a duplicate of) a bound, listening socket. One connection is
        accepted; the stream stops when its peer closes. Packets over
        ``max_size`` bytes are skipped.
        """
        from spead2.recv._udp import open_tcp_listener
        cdef recv_stream *s = self._get()
        cdef int fd, rc
        cdef size_t max_size
        self._may_add_reader()
        sock, max_size = open_tcp_listener(*args, **kwargs)
        fd = sock.detach()
        with nogil:
            rc = recv_add_tcp_reader(s, fd, max_size)
        if rc == -108:  # ESHUTDOWN
            self._reader_refused("TCP")
        elif rc != 0:
            import os
            raise MemoryError(os.strerror(-rc))

    def add_udp_ibv_reader(self, config) -> None:
        """Receive with ibverbs: checks ``config`` (a
        :class:`spead2.recv.UdpIbvConfig`), then raises
        :class:`spead2._ibv.IbvUnavailable`: this implementation has no
        ibverbs support."""
        from spead2.recv._ibv import check_reader
        self._may_add_reader()
        check_reader(config)

    def add_inproc_reader(self, InprocQueue queue not None) -> None:
        """Feed the stream from an in-process queue; once the queue is
        stopped and drained, the stream stops."""
        cdef recv_stream *s = self._get()
        cdef int rc
        self._may_add_reader()
        with nogil:
            rc = recv_add_inproc_reader(s, queue.q)
        if rc == -108:  # ESHUTDOWN
            self._reader_refused("in-process")
        elif rc != 0:
            import os
            raise OSError(-rc, os.strerror(-rc))

    def add_udp_pcap_file_reader(self, filename, filter: str = "") -> None:
        """Replay the UDP datagrams of a capture file, one SPEAD packet per
        datagram; the end of the file ends the stream.

        ``filename`` (str or os.PathLike) is a classic pcap or a pcapng
        capture of Ethernet, Linux cooked (SLL, SLL2) or raw IP frames.
        ``filter`` selects datagrams with tcpdump's syntax for ``udp``,
        ``ip``, ``ip6``, ``[src|dst] host|net|port|portrange`` and ``vlan``
        (see the README); ``""`` takes every UDP datagram. Raises
        :exc:`RuntimeError` if the file cannot be read or is not a capture,
        and :exc:`spead2._errors.FilterError` (a ``ValueError`` and a
        ``RuntimeError``) if the filter is not understood.
        """
        import os
        from spead2._errors import FilterError
        cdef recv_stream *s = self._get()
        cdef char err[512]
        cdef bytes path = os.fsencode(filename)
        cdef bytes expr
        cdef const char *c_path
        cdef const char *c_expr
        cdef int rc
        if not isinstance(filter, str):
            raise TypeError(f"filter must be a str, not {type(filter).__name__}")
        if b"\0" in path:
            raise ValueError("embedded null byte in filename")
        if "\0" in filter:
            raise FilterError("the filter contains a NUL character")
        expr = filter.encode()
        self._may_add_reader()
        c_path = path
        c_expr = expr
        with nogil:
            rc = recv_add_udp_pcap_file_reader(s, c_path, c_expr, err, sizeof(err))
        if rc == -108:  # ESHUTDOWN
            self._reader_refused("pcap file")
        elif rc == RECV_PCAP_BAD_FILTER:
            raise FilterError(f"bad filter {filter!r}: {err.decode('utf-8', 'replace')}")
        elif rc != 0:
            raise RuntimeError(err.decode("utf-8", "replace"))

    cdef void _drain_logs(self):
        cdef spead_log_entry entries[16]
        cdef size_t n, i
        cdef recv_stream *s = self.s
        if s == NULL or not recv_stream_logs_pending(s):
            return
        while recv_stream_logs_pending(s):
            if not _limiter.allows(self._warnings):
                # the budget is spent: the lines are counted, not formatted
                with nogil:
                    n = recv_stream_discard_logs(s)
                _limiter.suppress(self._warnings, n)
                break
            with nogil:
                n = recv_stream_take_logs(s, entries, 16)
            for i in range(n):
                _logging.log(entries[i].level, "%s", entries[i].text.decode("utf-8", "replace"),
                             source=self._warnings)
            if n < 16:
                break
        recv_stream_set_log_level(s, _logger.getEffectiveLevel())

    def stop(self) -> None:
        """Stop the stream and close its transports. Heaps already in the
        ring can still be taken; heaps under assembly are lost. A stopped
        stream cannot restart."""
        cdef recv_stream *s = self._get()
        with nogil:
            recv_stream_stop(s)
        self._drain_logs()

    @property
    def stats(self):
        """A snapshot of the stream's statistics (:class:`StreamStats`)."""
        from spead2.recv._config import StreamStats
        cdef recv_stream *s = self._get()
        cdef size_t n = len(self._stat_list)
        cdef uint64_t *st = <uint64_t *> malloc(n * sizeof(uint64_t))
        if st == NULL:
            raise MemoryError()
        try:
            with nogil:
                recv_stream_get_stats(s, st)
            values = [st[i] for i in range(n)]
        finally:
            free(st)
        self._drain_logs()
        values[SPEAD_STAT_LOG_SUPPRESSED] += _limiter.suppressed(self._warnings)
        return StreamStats._make(self._stat_list, values)


cdef class Stream(_StreamBase):
    """A receive stream: heaps assembled from one or more transports, handed
    to the consumer through a ring (:meth:`get`, iteration).

    Two forms: today's ``Stream(thread_pool, config=StreamConfig(),
    ring_config=RingStreamConfig())`` and the 2016 ``Stream(thread_pool,
    bug_compat=0, max_heaps=4, ring_heaps=4)`` (which also takes
    ``max_heap_size`` and accepts a heap's packets in any order). See
    :func:`spead2.recv._config.stream_arguments`.
    """

    cdef object _ring_config

    def __init__(self, *args, **kwargs):
        from spead2.recv._config import stream_arguments
        cdef recv_stream_config c
        thread_pool, config, ring_config = stream_arguments(args, kwargs, type(self).__name__)
        memset(&c, 0, sizeof(c))
        c.assembly.keep_payload_ranges = ring_config.incomplete_keep_payload_ranges
        c.ring_heaps = ring_config.heaps
        c.contiguous_only = ring_config.contiguous_only
        self._ring_config = ring_config
        self._create(thread_pool, config, &c, [])

    @property
    def ring_config(self):
        """A copy of the stream's :class:`RingStreamConfig`."""
        import copy
        return copy.copy(self._ring_config)

    @property
    def ringbuffer(self) -> _Ringbuffer:
        """The ring of finished heaps (``size()``, ``capacity()``)."""
        cdef _Ringbuffer ring = _Ringbuffer.__new__(_Ringbuffer)
        ring._stream = self
        return ring

    # the 2016 attributes
    @property
    def bug_compat(self) -> int:
        return self._config.bug_compat

    @property
    def max_heaps(self) -> int:
        return self._config.max_heaps

    @property
    def ring_heaps(self) -> int:
        return self._ring_config.heaps

    @property
    def max_heap_size(self) -> int:
        return self._config.max_heap_size

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

    @property
    def fd(self) -> int:
        """File descriptor that is readable exactly when a heap (or the end of
        the stream) is ready. Do not read from it."""
        return recv_stream_fd(self._get())


# ---------------------------------------------------------------------------
# Heap assembly without threads or I/O


class HeapLeft:
    """A heap left the assembler: ``exit`` is ``"completed"``, ``"evicted"``
    or ``"flushed"``; ``heap`` is a :class:`Heap` (contiguous) or an
    :class:`IncompleteHeap`, or None if memory ran out."""

    __slots__ = ("exit", "heap")

    def __init__(self, exit, heap):
        self.exit = exit
        self.heap = heap

    def __repr__(self):
        return f"HeapLeft({self.exit!r}, {self.heap!r})"


class PacketDropped:
    """A packet was not taken: ``code`` is one of the ``FEED_*`` constants,
    ``reason`` says why in words."""

    __slots__ = ("code", "reason")

    def __init__(self, code, reason):
        self.code = code
        self.reason = reason

    def __repr__(self):
        return f"PacketDropped({self.code}, {self.reason!r})"


class StopItem:
    """A packet carried the stop item that ends the stream."""

    __slots__ = ()

    def __repr__(self):
        return "StopItem()"


FEED_STOP = SPEAD_FEED_STOP
FEED_DUPLICATE = SPEAD_FEED_DUPLICATE
FEED_NO_HEAP_LENGTH = SPEAD_FEED_NO_HEAP_LENGTH
FEED_HEAP_TOO_LARGE = SPEAD_FEED_HEAP_TOO_LARGE
FEED_OUT_OF_ORDER = SPEAD_FEED_OUT_OF_ORDER
FEED_LENGTH_MISMATCH = SPEAD_FEED_LENGTH_MISMATCH
FEED_LENGTH_TOO_SMALL = SPEAD_FEED_LENGTH_TOO_SMALL
FEED_FLAVOUR_MISMATCH = SPEAD_FEED_FLAVOUR_MISMATCH
FEED_PAST_HEAP_LENGTH = SPEAD_FEED_PAST_HEAP_LENGTH
FEED_OVERLAP = SPEAD_FEED_OVERLAP
FEED_POINTERS_LIMIT = SPEAD_FEED_POINTERS_LIMIT
FEED_NO_MEMORY = SPEAD_FEED_NO_MEMORY
FEED_BAD_PACKET = -1

_EXITS = {SPEAD_HEAP_COMPLETED: "completed", SPEAD_HEAP_EVICTED: "evicted",
          SPEAD_HEAP_FLUSHED: "flushed"}


cdef void _collect_heap(void *ctx, spead_heap *heap, int exit) noexcept with gil:
    cdef Assembler a = <Assembler> ctx
    wrapped = _wrap_heap(heap, _heap_log) if heap != NULL else None
    a._events.append(HeapLeft(_EXITS[exit], wrapped))


cdef class Assembler:
    """Heap assembly with nothing around it: no threads, sockets, locks or
    clocks. :meth:`feed` takes one packet (bytes) and returns what happened,
    as a list of events: heaps that left assembly (:class:`HeapLeft`, in
    order), then :class:`PacketDropped` or :class:`StopItem` if the packet
    was not simply taken. The receive stream runs the same assembler on its
    worker threads."""

    cdef spead_assembler *a
    cdef list _events
    cdef uint64_t _stats[SPEAD_STAT_CORE_COUNT]
    cdef readonly object allocator

    def __cinit__(self, *args, **kwargs):
        self.a = NULL
        self._events = []
        memset(self._stats, 0, sizeof(self._stats))

    def __init__(self, *, max_heaps=4, substreams=1, bug_compat=0,
                 max_heap_size=DEFAULT_MAX_HEAP_SIZE, allow_out_of_order=False,
                 allow_unsized_heaps=True, stop_on_stop_item=True, keep_payload_ranges=False,
                 memcpy=0, MemoryAllocator allocator=None):
        cdef spead_assembler_config config
        memset(&config, 0, sizeof(config))
        config.max_heaps = as_nonzero_unsigned(max_heaps, "max_heaps")
        config.substreams = as_nonzero_unsigned(substreams, "substreams")
        config.max_heap_size = as_unsigned(max_heap_size, "max_heap_size")
        config.bug_compat = bug_compat
        config.allow_out_of_order = bool(allow_out_of_order)
        config.allow_unsized_heaps = bool(allow_unsized_heaps)
        config.stop_on_stop_item = bool(stop_on_stop_item)
        config.keep_payload_ranges = bool(keep_payload_ranges)
        self.allocator = allocator if allocator is not None else default_allocator
        self.a = spead_assembler_new(&config, (<MemoryAllocator> self.allocator)._alloc,
                                     _collect_heap, <void *> self)
        if self.a == NULL:
            raise MemoryError()
        spead_assembler_set_memcpy(self.a, memcpy)

    def __dealloc__(self):
        spead_assembler_free(self.a)

    cdef list _take_events(self):
        events = self._events
        self._events = []
        return events

    def feed(self, packet) -> list:
        """Offer one packet; return the events it caused."""
        cdef Py_buffer view
        cdef spead_packet pkt
        cdef int status, result
        PyObject_GetBuffer(packet, &view, PyBUF_SIMPLE)
        try:
            status = spead_decode_packet(<const uint8_t *> view.buf, <size_t> view.len, &pkt)
            if status != SPEAD_PACKET_OK:
                self._stats[SPEAD_STAT_BAD_PACKETS] += 1
                return [PacketDropped(FEED_BAD_PACKET,
                                      spead_packet_status_string(status).decode())]
            result = spead_assembler_feed(self.a, &pkt, self._stats)
        finally:
            PyBuffer_Release(&view)
        events = self._take_events()
        if result == SPEAD_FEED_STOP:
            events.append(StopItem())
        elif result != SPEAD_FEED_ACCEPTED:
            events.append(PacketDropped(result, spead_feed_result_string(result).decode()))
        return events

    def flush(self) -> list:
        """Hand on every heap under assembly; return the events."""
        spead_assembler_flush(self.a, self._stats)
        return self._take_events()

    @property
    def live_heaps(self) -> int:
        """Heaps under assembly."""
        return spead_assembler_live(self.a)

    @property
    def stats(self) -> dict:
        """The counters, by name, as a stream reports them."""
        return {CORE_STATS[i][0]: self._stats[i] for i in range(SPEAD_STAT_CORE_COUNT)}
