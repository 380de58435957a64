# cython: language_level=3, annotation_typing=False
"""Compiled core of the sender: heaps, packetisation and stream writers."""

import copy
import errno as _errno
import logging
import math
import os

cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_ANY_CONTIGUOUS, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.errno cimport errno
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

from spead2._core cimport InprocQueue, ThreadPool
from spead2._inproc cimport spead_inproc_queue
from spead2._tpool cimport tpool_t

from spead2._args import as_index, as_unsigned
from spead2._flavour import Flavour
from spead2._logging import log
from spead2.send._config import SIZE_BITS as _SIZE_BITS
from spead2.send._config import GroupMode, StreamConfig, check_rate


from spead2._send_core cimport *


cdef extern from "<errno.h>":
    int EAGAIN
    int EINVAL
    int ESHUTDOWN


# Compared by identity: an enum member's .value is a Python-level property,
# too slow for every send_heaps call.
_SERIAL = GroupMode.SERIAL
_ROUND_ROBIN = GroupMode.ROUND_ROBIN

_STREAM_CTRL_ID = 0x06
_DESCRIPTOR_ID = 0x05
_CTRL_STREAM_START = 0
_CTRL_STREAM_STOP = 2


cdef _layout_error(int status):
    return ValueError(send_layout_status_string(status).decode())


def _os_error(int err, msg=None) -> OSError:
    """``OSError(err, msg)``, which Python turns into the subclass for
    ``err`` (BlockingIOError for EAGAIN, ConnectionResetError...)."""
    if err == ESHUTDOWN and msg is None:
        msg = "the stream's thread pool has been stopped"
    return OSError(err, msg if msg is not None else os.strerror(err))


cdef _queue_error(int err, str msg):
    """A send refused before anything was queued: logged as a warning, as
    the reference does, then raised or set on the future by the caller."""
    log(logging.WARNING, "%s", msg)
    return _os_error(err, msg)


cdef _queue_full_error(size_t n_heaps):
    if n_heaps == 1:
        return _queue_error(EAGAIN, "send queue is full (max_heaps heaps are already queued)")
    return _queue_error(EAGAIN, f"send queue has no room for a group of {n_heaps} heaps "
                                f"(max_heaps)")


cdef double _as_rate(value, str name) except? -2.0:
    """A per-heap rate: negative means the stream's; NaN is refused."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    cdef double v = float(value)
    if v != v:
        raise ValueError(f"{name} must not be NaN")
    return v


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
    cdef bint _repeat_pointers

    def __cinit__(self, *args, **kwargs):
        self._desc = NULL
        self._data = NULL
        self._bufs = NULL
        self._n_desc = self._cap_desc = 0
        self._n_data = self._cap_data = 0
        self._n_bufs = self._cap_bufs = 0
        self._payload = 0
        self._repeat_pointers = False

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

    @property
    def repeat_pointers(self) -> bool:
        """Whether every packet carries all the item pointers (the payload
        being split across the packets); sending raises ``ValueError`` if
        they do not fit in one packet."""
        return self._repeat_pointers

    @repeat_pointers.setter
    def repeat_pointers(self, value: bool) -> None:
        self._repeat_pointers = bool(value)

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
        id = getattr(descriptor, "id", None)
        if id is not None:
            id = as_index(id, "descriptor ID")
            # ID 0 is NULL_ID, which no receiver takes as an item
            if not 0 < id < self._id_limit:
                raise ValueError(f"descriptor ID {id:#x} is not in 1..{self._id_limit - 1:#x} "
                                 f"(flavour SPEAD-64-{self._hab})")
        raw = descriptor.to_raw(self._flavour)
        self._add(_DESCRIPTOR_ID, raw, False, True, None)

    def add_start(self) -> None:
        """Add a stream-control item marking the start of the stream."""
        self._add(_STREAM_CTRL_ID, _CTRL_STREAM_START.to_bytes(1, "big"), True, False, None)

    def add_end(self) -> None:
        """Add a stream-control item marking the end of the stream."""
        self._add(_STREAM_CTRL_ID, _CTRL_STREAM_STOP.to_bytes(1, "big"), True, False, None)

    cdef size_t _n_items(self):
        return self._n_desc + self._n_data

    cdef int _fill(self, send_heap_spec *spec, send_item *items, int64_t cnt,
                   size_t max_packet_size) except -1:
        """Copy the item list (descriptors first) to ``items`` and describe
        the heap in ``spec``, checked against the packet size and flavour
        (``ValueError``).  ``cnt`` must fit the flavour or be -1."""
        cdef int status
        if self._n_desc:
            memcpy(items, self._desc, self._n_desc * sizeof(send_item))
        if self._n_data:
            memcpy(&items[self._n_desc], self._data, self._n_data * sizeof(send_item))
        spec.items = items
        spec.n_items = self._n_desc + self._n_data
        spec.cnt = cnt
        status = send_layout_compute(&spec.layout, items, spec.n_items, self._hab,
                                     max_packet_size, self._repeat_pointers)
        if status != SEND_LAYOUT_OK:
            raise _layout_error(status)
        return 0

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


cdef class HeapReference:
    """A heap with the parameters of one sending of it, for
    :meth:`Stream.send_heaps`: ``cnt`` (-1: the stream's next),
    ``substream_index`` and ``rate`` (bytes/s; negative: the stream's rate,
    0: unpaced).  Keeps the heap alive."""

    cdef readonly Heap heap
    cdef int64_t _cnt
    cdef size_t _substream_index
    cdef double _rate

    def __init__(self, Heap heap not None, *, cnt: int = -1, substream_index: int = 0,
                 rate: float = -1.0) -> None:
        self.heap = heap
        self.cnt = cnt
        self.substream_index = substream_index
        self.rate = rate

    @property
    def cnt(self) -> int:
        """Heap counter, or -1 for the stream's next."""
        return self._cnt

    @cnt.setter
    def cnt(self, value: int) -> None:
        self._cnt = _check_cnt(value, True)

    @property
    def substream_index(self) -> int:
        """Which of the stream's substreams (endpoints, queues) it goes to."""
        return self._substream_index

    @substream_index.setter
    def substream_index(self, value: int) -> None:
        self._substream_index = as_unsigned(value, "substream_index", _SIZE_BITS)

    @property
    def rate(self) -> float:
        """Bytes per second for this heap; negative: the stream's; 0: unpaced."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._rate = _as_rate(value, "rate")

    cdef HeapReference _copy(self):
        cdef HeapReference out = HeapReference.__new__(HeapReference)
        out.heap = self.heap
        out._cnt = self._cnt
        out._substream_index = self._substream_index
        out._rate = self._rate
        return out

    def __repr__(self) -> str:
        return (f"HeapReference({self.heap!r}, cnt={self._cnt}, "
                f"substream_index={self._substream_index}, rate={self._rate!r})")


cdef class HeapReferenceList:
    """A reusable list of :class:`HeapReference` for :meth:`Stream.send_heaps`:
    a copy of the references given (later changes to them do not reach it),
    keeping their heaps alive.  ``len()`` and slicing (a new list) work."""

    cdef list _refs

    def __init__(self, heaps) -> None:
        refs = []
        for ref in heaps:
            if not isinstance(ref, HeapReference):
                raise TypeError(f"HeapReferenceList takes HeapReference objects, not "
                                f"{type(ref).__name__}")
            refs.append((<HeapReference> ref)._copy())
        self._refs = refs

    def __len__(self) -> int:
        return len(self._refs)

    def __getitem__(self, index) -> "HeapReferenceList":
        if not isinstance(index, slice):
            raise TypeError(f"HeapReferenceList indices must be slices, not "
                            f"{type(index).__name__}")
        cdef HeapReferenceList out = HeapReferenceList.__new__(HeapReferenceList)
        out._refs = self._refs[index]   # ValueError for a zero step
        return out

    def __repr__(self) -> str:
        return f"HeapReferenceList({self._refs!r})"


cdef class PacketGenerator:
    """Iterates over the packets (as ``bytes``) of ``heap`` sent with heap
    counter ``cnt`` and packets of at most ``max_packet_size`` bytes."""

    cdef Heap _heap
    cdef send_req *_req
    cdef send_packetizer _pz
    cdef uint8_t *_scratch

    def __cinit__(self, Heap heap not None, cnt, max_packet_size):
        cdef int64_t c = _check_cnt(cnt, False)
        cdef size_t mps = as_unsigned(max_packet_size, "max_packet_size", _SIZE_BITS)
        self._req = NULL
        self._scratch = NULL
        self._heap = heap
        if <uint64_t> c > heap._addr_mask:
            raise _layout_error(SEND_LAYOUT_BAD_CNT)
        self._req = send_req_new(1, heap._n_items())
        if self._req == NULL:
            raise MemoryError()
        heap._fill(&self._req.heaps[0], self._req.items, c, mps)
        send_packetizer_init(&self._pz, self._req.items, heap._n_items(), heap._hab,
                             <uint64_t> c, mps, heap._repeat_pointers)
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


# A clock for tests of pacing: sleeping moves it forward at once.
cdef struct _VirtualClock:
    double now
    double slept
    uint64_t sleeps


cdef double _virtual_now(void *ctx) noexcept nogil:
    return (<_VirtualClock *> ctx).now


cdef void _virtual_sleep_until(void *ctx, double t) noexcept nogil:
    cdef _VirtualClock *c = <_VirtualClock *> ctx
    c.sleeps += 1
    if t > c.now:
        c.slept += t - c.now
        c.now = t


cdef int _fill_config(send_config *out, config) except -1:
    out.max_packet_size = config.max_packet_size
    out.rate = config.rate
    out.burst_size = config.burst_size
    out.burst_rate_ratio = config.burst_rate_ratio
    out.max_heaps = config.max_heaps
    return 0


@cython.no_gc_clear
cdef class Stream:
    """What every sending stream has: in-order delivery of heaps, singly or
    in groups, by the caller (blocking) or by the thread pool
    (asynchronous), with one rate limiter across all substreams."""

    cdef send_stream *_s
    cdef object _thread_pool
    cdef object _config
    cdef size_t _max_packet_size
    cdef double _stream_wait_per_byte
    cdef _VirtualClock _vclock
    # token -> the heaps of an asynchronous send in flight (kept alive)
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

    cdef int _start(self, ThreadPool thread_pool, config, send_stream *s) except -1:
        """Adopt the C stream ``s`` made from ``config`` (a copy)."""
        if s == NULL:
            raise MemoryError()
        self._s = s
        self._thread_pool = thread_pool
        self._config = config
        self._max_packet_size = config.max_packet_size
        self._stream_wait_per_byte = 1.0 / config.rate if config.rate > 0 else 0.0
        return 0

    @property
    def config(self) -> StreamConfig:
        """The stream's configuration (a copy of the one it was given)."""
        return self._config

    @property
    def num_substreams(self) -> int:
        """How many substreams (endpoints, queues) the stream sends to."""
        return self._get().num_substreams

    def set_cnt_sequence(self, next: int, step: int) -> None:
        """Heaps sent without an explicit cnt get ``next``, ``next + step``,
        ``next + 2 * step``... (each modulo 2**heap_address_bits)."""
        cdef send_stream *s = self._get()
        cdef uint64_t n = as_unsigned(next, "next")
        cdef uint64_t st = as_unsigned(step, "step")
        if st == 0:
            raise ValueError("cnt sequence step cannot be 0")
        send_stream_set_cnt_sequence(s, n, st)

    cdef int _fill_heap(self, send_req *req, size_t i, send_item *items, Heap heap,
                        int64_t cnt, size_t substream, double rate) except -1:
        cdef send_heap_spec *spec = &req.heaps[i]
        if substream >= self._s.num_substreams:
            raise _queue_error(EINVAL, f"substream_index {substream} is out of range (the "
                                       f"stream has {self._s.num_substreams})")
        if cnt >= 0 and <uint64_t> cnt > heap._addr_mask:
            raise _queue_error(EINVAL, f"cnt {cnt} does not fit in the flavour's "
                                       f"{heap._hab} heap address bits")
        heap._fill(spec, items, cnt, self._max_packet_size)
        spec.substream = substream
        if rate < 0:
            spec.wait_per_byte = self._stream_wait_per_byte
        elif rate == 0:
            spec.wait_per_byte = 0.0
        else:
            spec.wait_per_byte = 1.0 / rate
        return 0

    cdef send_req *_heap_req(self, Heap heap, cnt, substream_index, rate) except NULL:
        cdef int64_t c = _check_cnt(cnt, True)
        cdef size_t sub = as_unsigned(substream_index, "substream_index", _SIZE_BITS)
        cdef double r = _as_rate(rate, "rate")
        self._get()
        cdef send_req *req = send_req_new(1, heap._n_items())
        if req == NULL:
            raise MemoryError()
        req.mode = 0
        try:
            self._fill_heap(req, 0, req.items, heap, c, sub, r)
        except BaseException:
            send_req_free(req)
            raise
        return req

    cdef send_req *_group_req(self, heaps, mode, list keep) except NULL:
        """A request for the group ``heaps``; the Heap objects go to ``keep``
        (unless it is None)."""
        cdef list refs
        cdef HeapReference ref
        cdef size_t n_items = 0
        cdef size_t i
        cdef send_req *req
        cdef int c_mode
        if mode is _ROUND_ROBIN:
            c_mode = 0
        elif mode is _SERIAL:
            c_mode = 1
        else:
            raise TypeError(f"mode must be a spead2.send.GroupMode, not {type(mode).__name__}")
        if isinstance(heaps, HeapReferenceList):
            refs = (<HeapReferenceList> heaps)._refs
        else:
            refs = list(heaps)
            for ref_obj in refs:
                if not isinstance(ref_obj, HeapReference):
                    raise TypeError(f"heaps must hold HeapReference objects, not "
                                    f"{type(ref_obj).__name__}")
        self._get()
        if not refs:
            raise _queue_error(EINVAL, "send_heaps needs at least one heap")
        for ref_obj in refs:
            n_items += (<HeapReference> ref_obj).heap._n_items()
        req = send_req_new(len(refs), n_items)
        if req == NULL:
            raise MemoryError()
        req.mode = c_mode
        n_items = 0
        try:
            for i in range(len(refs)):
                ref = <HeapReference> refs[i]
                self._fill_heap(req, i, &req.items[n_items], ref.heap, ref._cnt,
                                ref._substream_index, ref._rate)
                n_items += ref.heap._n_items()
                if keep is not None:
                    keep.append(ref.heap)
        except BaseException:
            send_req_free(req)
            raise
        return req

    cdef uint64_t _send_sync(self, send_req *req) except? 0xFFFFFFFFFFFFFFFF:
        cdef send_stream *s = self._s
        cdef size_t n_heaps = req.n_heaps
        cdef int rc
        with nogil:
            rc = send_stream_send_sync(s, req)
        if rc != 0:
            send_req_free(req)
            raise _queue_full_error(n_heaps)
        cdef int err = req.error
        cdef uint64_t nbytes = req.bytes
        send_req_free(req)
        if err:
            raise _os_error(err)
        return nbytes

    def send_heap(self, Heap heap not None, cnt: int = -1, substream_index: int = 0,
                  rate: float = -1.0) -> int:
        """Send ``heap`` and wait until every packet has been handed to the
        transport; returns the bytes written.

        ``cnt`` is the heap counter (-1: the stream's next), ``rate`` is in
        bytes per second (negative: the stream's rate; 0: unpaced).
        Raises ``BlockingIOError`` if ``max_heaps`` heaps are already in
        flight, ``OSError`` if the transport refuses a packet, ``ValueError``
        if the heap cannot be split into packets.
        """
        return self._send_sync(self._heap_req(heap, cnt, substream_index, rate))

    def send_heaps(self, heaps, mode: GroupMode) -> int:
        """Send a group of heaps (a list of :class:`HeapReference` or a
        :class:`HeapReferenceList`) with their packets interleaved as
        ``mode`` says; waits until all have gone and returns the bytes
        written.  The group is queued whole (it needs room for all its heaps
        within ``max_heaps``) or not at all."""
        # the caller's references keep the heaps alive while it waits
        return self._send_sync(self._group_req(heaps, mode, None))

    def flush(self) -> None:
        """Block until every heap handed to the stream has been sent."""
        cdef send_stream *s = self._get()
        with nogil:
            send_stream_flush(s)

    cdef uint64_t _queue_async(self, send_req *req, object keep) except 0:
        cdef uint64_t token = self._next_token
        cdef size_t n_heaps = req.n_heaps
        req.token = token
        rc = send_stream_send_async(self._s, req)
        if rc != 0:
            send_req_free(req)
            if rc == EAGAIN:
                raise _queue_full_error(n_heaps)
            raise _os_error(rc)   # ESHUTDOWN: the thread pool is stopped
        self._next_token += 1
        self._pending[token] = keep
        return token

    def _async_send_heap(self, Heap heap not None, cnt: int = -1, substream_index: int = 0,
                         rate: float = -1.0) -> int:
        """Queue ``heap`` for the thread pool; returns a token that
        :meth:`_pop_completions` reports when it is done.  Raises
        ``OSError`` if it cannot be queued, ``ValueError`` if it cannot be
        split into packets."""
        return self._queue_async(self._heap_req(heap, cnt, substream_index, rate), heap)

    def _async_send_heaps(self, heaps, mode: GroupMode) -> int:
        """As :meth:`_async_send_heap`, for a group."""
        keep = []
        cdef send_req *req = self._group_req(heaps, mode, keep)
        return self._queue_async(req, keep)

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
        """Finished asynchronous sends as ``(token, errno, bytes)`` tuples,
        in the order they were queued; their heaps are released."""
        cdef send_req *req = send_stream_pop_done(self._get())
        cdef send_req *nxt
        out = []
        while req != NULL:
            nxt = req.next
            self._pending.pop(req.token, None)
            out.append((req.token, req.error, req.bytes if req.error == 0 else 0))
            send_req_free(req)
            req = nxt
        return out

    def _io_error(self, int err) -> OSError:
        return _os_error(err)

    @property
    def _in_flight_async(self) -> int:
        return len(self._pending)

    def _use_virtual_clock(self, start: float = 0.0) -> None:
        """For tests: pace with a clock that sleeping moves forward at once
        (see :attr:`_virtual_clock`).  Call while nothing is in flight."""
        cdef send_stream *s = self._get()
        self._vclock.now = start
        self._vclock.slept = 0.0
        self._vclock.sleeps = 0
        send_stream_set_clock(s, _virtual_now, _virtual_sleep_until, &self._vclock)

    def _advance_virtual_clock(self, seconds: float) -> None:
        """For tests: move the virtual clock on, as if the machine had
        stalled (the stream is not told)."""
        self._vclock.now += seconds

    @property
    def _virtual_clock(self) -> tuple:
        """``(now, seconds slept, number of sleeps)`` of the virtual clock."""
        return (self._vclock.now, self._vclock.slept, self._vclock.sleeps)


cdef object _check_stream_config(config):
    if config is None:
        return StreamConfig()
    if not isinstance(config, StreamConfig):
        raise TypeError(f"config must be a spead2.send.StreamConfig, not "
                        f"{type(config).__name__}")
    # Later changes to the caller's object do not affect the stream.
    return copy.copy(config)


cdef class BytesStream(Stream):
    """A stream that appends its packets to memory; :meth:`getvalue` returns
    everything sent so far."""

    def __init__(self, ThreadPool thread_pool not None, config: StreamConfig = None) -> None:
        cdef tpool_t *tp = thread_pool.get()
        c = _check_stream_config(config)
        cdef send_config cc
        _fill_config(&cc, c)
        self._start(thread_pool, c, send_bytes_stream_new(tp, &cc))

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


cdef class _UdpStreamBase(Stream):
    """The compiled UDP writer; :class:`spead2.send.UdpStream` sets up the
    socket."""

    def _open(self, ThreadPool thread_pool not None, int fd, int family, list endpoints,
              config) -> None:
        """Start sending substream i to ``endpoints[i]`` (numeric ``(host,
        port, flowinfo, scope_id)``) on socket ``fd``, which the stream then
        owns."""
        cdef tpool_t *tp = NULL
        cdef sockaddr_storage *addrs = NULL
        cdef socklen_t addrlen = 0
        cdef send_config cc
        cdef size_t i
        try:
            tp = thread_pool.get()
            c = _check_stream_config(config)
            _fill_config(&cc, c)
            addrs = <sockaddr_storage *> malloc(max(len(endpoints), 1) * sizeof(sockaddr_storage))
            if addrs == NULL:
                raise MemoryError()
            for i, (host, port, flowinfo, scope_id) in enumerate(endpoints):
                host_b = host.encode()
                if send_make_sockaddr(family, host_b, port, flowinfo, scope_id, &addrs[i],
                                      &addrlen) != 0:
                    raise ValueError(f"cannot use {host!r} as a destination address")
        except BaseException:
            free(addrs)
            os.close(fd)
            raise
        try:
            self._start(thread_pool, c, send_udp_stream_new(tp, fd, addrs, len(endpoints),
                                                            addrlen, &cc))
        finally:
            free(addrs)


cdef class _TcpStreamBase(Stream):
    """The compiled TCP writer; :class:`spead2.send.TcpStream` connects the
    socket."""

    def _open(self, ThreadPool thread_pool not None, int fd, config) -> None:
        """Start sending on the connected socket ``fd``, which the stream
        then owns."""
        cdef tpool_t *tp = NULL
        cdef send_config cc
        try:
            tp = thread_pool.get()
            c = _check_stream_config(config)
            _fill_config(&cc, c)
        except BaseException:
            os.close(fd)
            raise
        self._start(thread_pool, c, send_tcp_stream_new(tp, fd, &cc))


cdef class _InprocStreamBase(Stream):
    """The compiled in-process writer; :class:`spead2.send.InprocStream`
    checks the queues."""

    cdef list _queues

    def _open(self, ThreadPool thread_pool not None, list queues, config) -> None:
        """Start sending substream i into ``queues[i]`` (spead2.InprocQueue)."""
        cdef tpool_t *tp = thread_pool.get()
        c = _check_stream_config(config)
        cdef send_config cc
        _fill_config(&cc, c)
        cdef size_t n = len(queues)
        cdef size_t i
        cdef spead_inproc_queue **qs = <spead_inproc_queue **> malloc(
            max(n, 1) * sizeof(spead_inproc_queue *))
        if qs == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                qs[i] = (<InprocQueue?> queues[i]).q
            self._start(thread_pool, c, send_inproc_stream_new(tp, qs, n, &cc))
        finally:
            free(qs)
        self._queues = list(queues)

    @property
    def queues(self) -> list:
        """The queues, one per substream (the objects given)."""
        return list(self._queues)


def _buffer_extent(obj) -> tuple:
    """``(address, length)`` of the memory of a contiguous buffer
    (``TypeError`` for anything else)."""
    cdef Py_buffer view
    try:
        PyObject_GetBuffer(obj, &view, PyBUF_ANY_CONTIGUOUS)
    except (BufferError, ValueError):
        raise TypeError(f"a memory region must be a contiguous buffer, not "
                        f"{type(obj).__name__}") from None
    out = (<size_t> view.buf, view.len)
    PyBuffer_Release(&view)
    return out
