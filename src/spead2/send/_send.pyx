# cython: language_level=3, annotation_typing=False
"""Compiled core of the sender: heaps, packetisation and stream writers."""

import math
import os

cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_ANY_CONTIGUOUS, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.errno cimport errno
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

from spead2._core cimport ThreadPool
from spead2._tpool cimport tpool_t

from spead2._args import as_index, as_nonzero_unsigned, as_unsigned
from spead2._flavour import Flavour


from spead2._send_core cimport *


cdef extern from "<errno.h>":
    int EBUSY
    int ESHUTDOWN


_STREAM_CTRL_ID = 0x06
_CTRL_STREAM_START = 0
_CTRL_STREAM_STOP = 2


cdef _layout_error(int status):
    return ValueError(send_layout_status_string(status).decode())


cdef _io_error(int err):
    if err == EBUSY:
        return IOError(err, "too many heaps in flight (max_heaps reached)")
    if err == ESHUTDOWN:
        return IOError(err, "the stream's thread pool has been stopped")
    return IOError(err, os.strerror(err))


# Sizes are size_t in the C core, which adds them to one another: they are
# kept below 2**63 so that no sum of two of them wraps.
_SIZE_BITS = 63


cdef class StreamConfig:
    """Parameters of a sending stream.

    ``max_packet_size`` bounds every packet (header included); ``rate`` is
    in bytes per second (0 for no limit), with bursts of up to ``burst_size``
    bytes at full speed; ``max_heaps`` is how many heaps may be in flight at
    once.
    """

    cdef size_t _max_packet_size
    cdef double _rate
    cdef size_t _burst_size
    cdef size_t _max_heaps

    def __init__(self, max_packet_size: int = 1472, rate: float = 0.0,
                 burst_size: int = 65536, max_heaps: int = 4) -> None:
        self.max_packet_size = max_packet_size
        self.rate = rate
        self.burst_size = burst_size
        self.max_heaps = max_heaps

    @property
    def max_packet_size(self) -> int:
        """Largest packet to send, in bytes (at least 56)."""
        return self._max_packet_size

    @max_packet_size.setter
    def max_packet_size(self, value: int) -> None:
        value = as_unsigned(value, "max_packet_size", _SIZE_BITS)
        if value < SEND_MIN_PACKET_SIZE:
            raise ValueError(
                f"max_packet_size must be at least {SEND_MIN_PACKET_SIZE} bytes, not {value}")
        self._max_packet_size = value

    @property
    def rate(self) -> float:
        """Target rate in bytes per second; 0 means as fast as possible.

        Any finite non-negative number: a tiny rate makes sending very slow
        (beyond the first ``burst_size`` bytes). ``ValueError`` otherwise.
        """
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
            raise TypeError(f"rate must be a number, not {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"rate must be a finite non-negative number, not {value}")
        self._rate = value

    @property
    def burst_size(self) -> int:
        """Bytes that may be sent back to back, ahead of the rate."""
        return self._burst_size

    @burst_size.setter
    def burst_size(self, value: int) -> None:
        self._burst_size = as_unsigned(value, "burst_size", _SIZE_BITS)

    @property
    def max_heaps(self) -> int:
        """Heaps that may be queued or in transmission at once."""
        return self._max_heaps

    @max_heaps.setter
    def max_heaps(self, value: int) -> None:
        self._max_heaps = as_nonzero_unsigned(value, "max_heaps", _SIZE_BITS)

    def __repr__(self) -> str:
        return (f"StreamConfig(max_packet_size={self._max_packet_size}, rate={self._rate!r}, "
                f"burst_size={self._burst_size}, max_heaps={self._max_heaps})")

    def __eq__(self, other):
        if not isinstance(other, StreamConfig):
            return NotImplemented
        return (self.max_packet_size, self.rate, self.burst_size, self.max_heaps) == (
            other.max_packet_size, other.rate, other.burst_size, other.max_heaps)

    __hash__ = None


cdef class Heap:
    """A heap to send: descriptors and items, in the order added.

    On the wire, descriptors come first, then items.  Item values are
    referenced, not copied, until the heap is garbage collected; an item with
    a fixed shape whose value fits in the address field is sent as an
    immediate.
    """

    cdef send_item *_desc
    cdef size_t _n_desc, _cap_desc
    cdef send_item *_data
    cdef size_t _n_data, _cap_data
    cdef Py_buffer **_bufs
    cdef size_t _n_bufs, _cap_bufs
    cdef object _flavour
    cdef int _hab
    cdef uint64_t _payload
    cdef uint64_t _addr_mask
    cdef uint64_t _id_limit

    def __cinit__(self, *args, **kwargs):
        self._desc = NULL
        self._data = NULL
        self._bufs = NULL
        self._n_desc = self._cap_desc = 0
        self._n_data = self._cap_data = 0
        self._n_bufs = self._cap_bufs = 0
        self._payload = 0

    def __init__(self, flavour: Flavour = None) -> None:
        if flavour is None:
            flavour = Flavour()
        elif not isinstance(flavour, Flavour):
            raise TypeError("flavour must be a spead2.Flavour")
        self._flavour = flavour
        self._hab = flavour.heap_address_bits
        self._addr_mask = (<uint64_t> 1 << self._hab) - 1
        self._id_limit = <uint64_t> 1 << (63 - self._hab)

    def __dealloc__(self):
        cdef size_t i
        for i in range(self._n_bufs):
            PyBuffer_Release(self._bufs[i])
            free(self._bufs[i])
        free(self._bufs)
        free(self._desc)
        free(self._data)

    @property
    def flavour(self) -> Flavour:
        """The SPEAD flavour the heap is encoded with."""
        return self._flavour

    cdef uint64_t _check_id(self, id) except? 0:
        id = as_unsigned(id, "item ID")
        if id >= self._id_limit:
            raise ValueError(
                f"item ID {id:#x} does not fit in {63 - self._hab} bits (flavour "
                f"SPEAD-64-{self._hab})")
        return id

    cdef send_item *_slot(self, bint descriptor) except NULL:
        cdef send_item *arr
        cdef size_t cap
        if descriptor:
            if self._n_desc == self._cap_desc:
                cap = self._cap_desc * 2 if self._cap_desc else 4
                arr = <send_item *> realloc(self._desc, cap * sizeof(send_item))
                if arr == NULL:
                    raise MemoryError()
                self._desc = arr
                self._cap_desc = cap
            self._n_desc += 1
            return &self._desc[self._n_desc - 1]
        else:
            if self._n_data == self._cap_data:
                cap = self._cap_data * 2 if self._cap_data else 4
                arr = <send_item *> realloc(self._data, cap * sizeof(send_item))
                if arr == NULL:
                    raise MemoryError()
                self._data = arr
                self._cap_data = cap
            self._n_data += 1
            return &self._data[self._n_data - 1]

    cdef int _add(self, uint64_t id, obj, bint allow_immediate, bint descriptor,
                  expected_size) except -1:
        cdef Py_buffer *view
        cdef Py_buffer **bufs
        cdef send_item *slot
        cdef uint64_t value = 0
        cdef size_t i
        cdef const uint8_t *p
        cdef Py_ssize_t length
        view = <Py_buffer *> malloc(sizeof(Py_buffer))
        if view == NULL:
            raise MemoryError()
        try:
            try:
                PyObject_GetBuffer(obj, view, PyBUF_ANY_CONTIGUOUS)
            except (BufferError, ValueError):
                # Strided memory: send it as a contiguous (C order) copy.
                obj = memoryview(obj).tobytes()
                PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
        except BaseException:
            free(view)
            raise
        length = view.len
        if expected_size is not None and length != expected_size:
            PyBuffer_Release(view)
            free(view)
            raise ValueError(
                f"item {id:#x} has {length} bytes of data but its descriptor implies "
                f"{expected_size}")
        if allow_immediate and length <= self._hab // 8:
            p = <const uint8_t *> view.buf
            for i in range(<size_t> length):
                value = (value << 8) | p[i]
            PyBuffer_Release(view)
            free(view)
            slot = self._slot(descriptor)
            slot.id = id
            slot.immediate = 1
            slot.value = value
            slot.data = NULL
            slot.length = 0
            return 0
        if <uint64_t> length > self._addr_mask - self._payload:
            PyBuffer_Release(view)
            free(view)
            raise ValueError(
                f"heap is too large for flavour SPEAD-64-{self._hab} "
                f"(more than {self._addr_mask} bytes)")
        if self._n_bufs == self._cap_bufs:
            bufs = <Py_buffer **> realloc(
                self._bufs, (self._cap_bufs * 2 + 4) * sizeof(Py_buffer *))
            if bufs == NULL:
                PyBuffer_Release(view)
                free(view)
                raise MemoryError()
            self._bufs = bufs
            self._cap_bufs = self._cap_bufs * 2 + 4
        try:
            slot = self._slot(descriptor)
        except BaseException:
            PyBuffer_Release(view)
            free(view)
            raise
        self._bufs[self._n_bufs] = view
        self._n_bufs += 1
        slot.id = id
        slot.immediate = 0
        slot.value = 0
        slot.data = <const uint8_t *> view.buf
        slot.length = <uint64_t> length
        self._payload += <uint64_t> length
        return 0

    def add_item(self, item) -> None:
        """Add an item's current value.

        ``item`` needs ``id``, ``to_buffer()`` and ``is_variable_size()``
        (a :class:`spead2.Item`). A fixed-size value that fits the address
        field travels as an immediate, unless it is described by a format
        whose elements are not a whole number of bytes.  Raises ``ValueError`` if the value's size
        disagrees with the item's shape and format, or the heap would not
        fit the flavour.
        """
        if not (hasattr(item, "id") and hasattr(item, "to_buffer")
                and hasattr(item, "is_variable_size")):
            raise TypeError(f"item must be a spead2.Item (with id, to_buffer and "
                            f"is_variable_size), not {type(item).__name__}")
        cdef uint64_t id = self._check_id(item.id)
        variable = bool(item.is_variable_size())
        expected = None
        if not variable:
            bits = getattr(item, "itemsize_bits", None)
            shape = getattr(item, "shape", None)
            if bits is not None and shape is not None:
                n = 1
                for dim in shape:
                    n *= dim
                expected = (n * bits + 7) // 8
        # As the reference decides: bit-packed values whose elements are not
        # whole bytes are never immediates (their right-alignment in the
        # address field would be ambiguous).
        allow_immediate = not variable
        if allow_immediate and getattr(item, "dtype", None) is None:
            bits = getattr(item, "itemsize_bits", None)
            if bits is not None and bits % 8 != 0:
                allow_immediate = False
        self._add(id, item.to_buffer(), allow_immediate, False, expected)

    def add_descriptor(self, descriptor) -> None:
        """Add a descriptor (anything with ``to_raw(flavour)``, such as a
        :class:`spead2.Descriptor` or :class:`spead2.Item`)."""
        if not hasattr(descriptor, "to_raw"):
            raise TypeError(f"descriptor must be a spead2.Descriptor (with to_raw), not "
                            f"{type(descriptor).__name__}")
        raw = descriptor.to_raw(self._flavour)
        self._add(0x05, raw, False, True, None)

    def add_start(self) -> None:
        """Add a stream-control item marking the start of the stream."""
        self._add(_STREAM_CTRL_ID, _CTRL_STREAM_START.to_bytes(1, "big"), True, False, None)

    def add_end(self) -> None:
        """Add a stream-control item marking the end of the stream."""
        self._add(_STREAM_CTRL_ID, _CTRL_STREAM_STOP.to_bytes(1, "big"), True, False, None)

    cdef send_req *_make_req(self, int64_t cnt, size_t max_packet_size,
                             send_layout *layout) except NULL:
        """A request holding a copy of the item list (descriptors first),
        checked against the packet size and flavour."""
        cdef size_t n = self._n_desc + self._n_data
        cdef int status
        cdef send_req *req = send_req_new(n)
        if req == NULL:
            raise MemoryError()
        if self._n_desc:
            memcpy(req.items, self._desc, self._n_desc * sizeof(send_item))
        if self._n_data:
            memcpy(&req.items[self._n_desc], self._data, self._n_data * sizeof(send_item))
        req.heap_address_bits = self._hab
        req.cnt = cnt
        status = send_layout_compute(layout, req.items, n, self._hab, max_packet_size)
        if status != SEND_LAYOUT_OK:
            send_req_free(req)
            raise _layout_error(status)
        if cnt >= 0 and <uint64_t> cnt > self._addr_mask:
            send_req_free(req)
            raise _layout_error(SEND_LAYOUT_BAD_CNT)
        return req

    def __repr__(self) -> str:
        return (f"<spead2.send.Heap with {self._n_desc} descriptors and {self._n_data} items, "
                f"{self._payload} payload bytes>")


cdef int64_t _check_cnt(cnt, bint allow_auto) except? -2:
    """A heap counter (int64_t in the C core), or -1 for the stream's next
    one where ``allow_auto``."""
    cnt = as_index(cnt, "cnt")
    if allow_auto and cnt == -1:
        return -1
    return as_unsigned(cnt, "cnt", 63)


cdef class PacketGenerator:
    """Iterates over the packets (as ``bytes``) of ``heap`` sent with heap
    counter ``cnt`` and packets of at most ``max_packet_size`` bytes."""

    cdef Heap _heap
    cdef send_req *_req
    cdef send_packetizer _pz
    cdef uint8_t *_scratch

    def __cinit__(self, Heap heap not None, cnt, max_packet_size):
        cdef send_layout layout
        cdef int64_t c = _check_cnt(cnt, False)
        cdef size_t mps = as_unsigned(max_packet_size, "max_packet_size", _SIZE_BITS)
        self._req = NULL
        self._scratch = NULL
        self._heap = heap
        self._req = heap._make_req(c, mps, &layout)
        send_packetizer_init(&self._pz, self._req.items, self._req.n_items,
                             self._req.heap_address_bits, <uint64_t> c, mps)
        # Room for the largest header: the payload goes straight into bytes.
        cdef size_t max_pointers = min(self._pz.layout.pointers_per_packet,
                                       self._pz.layout.n_pointers)
        self._scratch = <uint8_t *> malloc(8 * (5 + max_pointers))
        if self._scratch == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self._scratch)
        if self._req != NULL:
            send_req_free(self._req)

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        cdef size_t payload
        cdef size_t hdr = send_packetizer_next(&self._pz, self._scratch, &payload)
        if hdr == 0:
            raise StopIteration
        out = PyBytes_FromStringAndSize(NULL, hdr + payload)
        cdef uint8_t *dst = <uint8_t *> PyBytes_AS_STRING(out)
        memcpy(dst, self._scratch, hdr)
        send_packetizer_copy(&self._pz, dst + hdr, payload)
        return out


@cython.no_gc_clear
cdef class _Stream:
    """Common machinery of sending streams: in-order delivery of heaps by the
    caller (blocking) or by the thread pool (asynchronous)."""

    cdef send_stream *_s
    cdef object _thread_pool
    cdef object _config
    # token -> (heap, bytes on the wire) for asynchronous sends in flight
    cdef dict _pending
    cdef uint64_t _next_token

    def __cinit__(self, *args, **kwargs):
        self._s = NULL
        self._pending = {}
        self._next_token = 1

    def __dealloc__(self):
        if self._s != NULL:
            with nogil:
                send_stream_flush(self._s)
                send_stream_decref(self._s)
            self._s = NULL

    cdef send_stream *_get(self) except NULL:
        if self._s == NULL:
            raise RuntimeError("stream is not initialised")
        return self._s

    @property
    def config(self) -> StreamConfig:
        """The stream's configuration."""
        return self._config

    def send_heap(self, Heap heap not None, cnt: int = -1) -> None:
        """Send ``heap`` and wait until it has gone.

        ``cnt`` is the heap counter; by default the stream numbers heaps 1,
        2, 3...  Raises ``IOError`` if ``max_heaps`` heaps are already in
        flight or the transport refuses a packet.
        """
        cdef send_stream *s = self._get()
        cdef send_layout layout
        cdef int64_t c = _check_cnt(cnt, True)
        cdef send_req *req = heap._make_req(c, (<StreamConfig> self._config)._max_packet_size,
                                            &layout)
        cdef int rc
        cdef int err
        with nogil:
            rc = send_stream_send_sync(s, req)
        err = rc if rc != 0 else req.error
        send_req_free(req)
        if err:
            raise _io_error(err)

    def flush(self) -> None:
        """Block until every heap handed to the stream has been sent."""
        cdef send_stream *s = self._get()
        with nogil:
            send_stream_flush(s)

    def _async_send(self, Heap heap not None, cnt: int = -1) -> int:
        """Queue ``heap`` for the thread pool; returns a token that
        :meth:`_pop_completions` reports when it is done.  Raises ``IOError``
        if it cannot be queued."""
        cdef send_stream *s = self._get()
        cdef send_layout layout
        cdef int64_t c = _check_cnt(cnt, True)
        cdef send_req *req = heap._make_req(c, (<StreamConfig> self._config)._max_packet_size,
                                            &layout)
        cdef uint64_t token = self._next_token
        req.token = token
        rc = send_stream_send_async(s, req)
        if rc != 0:
            send_req_free(req)
            raise _io_error(rc)
        self._next_token += 1
        self._pending[token] = (heap, layout.total_bytes)
        return token

    def _enable_notify(self) -> int:
        """File descriptor that becomes readable when asynchronous sends
        finish."""
        cdef send_stream *s = self._get()
        cdef int fd = send_stream_enable_notify(s)
        cdef int err = errno    # before anything else can change it
        if fd < 0:
            raise OSError(err, os.strerror(err))
        return fd

    def _pop_completions(self) -> list:
        """Finished asynchronous sends as ``(token, errno, bytes)`` tuples."""
        cdef send_req *req = send_stream_pop_done(self._get())
        cdef send_req *nxt
        out = []
        while req != NULL:
            nxt = req.next
            entry = self._pending.pop(req.token, None)
            out.append((req.token, req.error, entry[1] if entry is not None else 0))
            send_req_free(req)
            req = nxt
        return out

    def _io_error(self, int err) -> OSError:
        return _io_error(err)

    @property
    def _in_flight_async(self) -> int:
        return len(self._pending)


cdef object _check_stream_config(config):
    if config is None:
        return StreamConfig()
    if not isinstance(config, StreamConfig):
        raise TypeError("config must be a spead2.send.StreamConfig")
    # Later changes to the caller's object do not affect the stream.
    c = <StreamConfig> config
    return StreamConfig(c._max_packet_size, c._rate, c._burst_size, c._max_heaps)


cdef class BytesStream(_Stream):
    """A stream that appends its packets to memory; :meth:`getvalue` returns
    everything sent so far."""

    def __init__(self, ThreadPool thread_pool not None, config: StreamConfig = None) -> None:
        cdef tpool_t *tp = thread_pool.get()
        cdef StreamConfig c = _check_stream_config(config)
        self._config = c
        self._thread_pool = thread_pool
        self._s = send_bytes_stream_new(tp, c._max_packet_size, c._rate, c._burst_size,
                                        c._max_heaps)
        if self._s == NULL:
            raise MemoryError()

    def getvalue(self) -> bytes:
        """The bytes of every packet sent so far."""
        cdef send_stream *s = self._get()
        cdef size_t size
        cdef const uint8_t *data
        cdef uint8_t *dst
        with nogil:
            send_stream_lock_idle(s)
        try:
            data = send_bytes_data(s, &size)
            out = PyBytes_FromStringAndSize(NULL, size)
            dst = <uint8_t *> PyBytes_AS_STRING(out)
            with nogil:
                send_bytes_copy_out(dst, data, size)
            return out
        finally:
            send_stream_unlock(s)


cdef class _UdpStreamBase(_Stream):
    """The compiled UDP writer; :class:`spead2.send.UdpStream` sets up the
    socket."""

    def _open(self, ThreadPool thread_pool not None, int fd, int family, str host, int port,
              unsigned int flowinfo, unsigned int scope_id, config) -> None:
        """Start sending to (host, port) on socket ``fd``, which the stream
        then owns."""
        cdef tpool_t *tp = NULL
        cdef StreamConfig c
        cdef sockaddr_storage addr
        cdef socklen_t addrlen = 0
        try:
            tp = thread_pool.get()
            c = _check_stream_config(config)
            host_b = host.encode()
            if send_make_sockaddr(family, host_b, port, flowinfo, scope_id, &addr,
                                  &addrlen) != 0:
                raise ValueError(f"cannot use {host!r} as a destination address")
        except BaseException:
            os.close(fd)
            raise
        self._config = c
        self._thread_pool = thread_pool
        self._s = send_udp_stream_new(tp, fd, <const sockaddr *> &addr, addrlen,
                                      c._max_packet_size, c._rate, c._burst_size, c._max_heaps)
        if self._s == NULL:
            raise MemoryError()
