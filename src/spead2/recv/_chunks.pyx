# cython: language_level=3
"""The chunking receiver: chunks, chunk rings and chunk streams.

A chunk stream writes each heap's payload straight into a large buffer
owned by the caller (a :class:`Chunk`), at the place a place callback
chooses, and hands the caller whole chunks through a ring. The payload
never becomes a Python object, so a chunk stream keeps up with millions of
heaps a second.

Chunks travel between Python and the worker threads by pointer: a chunk
put into a ring (or given to a stream) keeps a reference to itself, which
comes back with it when Python takes it out again.
"""

from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE,
                             PyBUF_C_CONTIGUOUS)
from cpython.exc cimport PyErr_CheckSignals
from cpython.pycapsule cimport PyCapsule_CheckExact, PyCapsule_GetName, PyCapsule_GetPointer, \
    PyCapsule_GetContext, PyCapsule_New, PyCapsule_SetContext
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.stdint cimport int64_t, uint64_t, uint8_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from spead2._core cimport ThreadPool
from spead2._recv_core cimport *
from spead2.recv._recv cimport _StreamBase

import spead2
from spead2._args import as_index, as_nonzero_unsigned, as_unsigned

# Poll interval of blocking calls, so that signals (KeyboardInterrupt) get through.
DEF WAIT_MS = 100

_PLACE_SIGNATURES = (b"void (void *, size_t)", b"void (void *, size_t, void *)")


# ---------------------------------------------------------------------------
# Chunks


cdef class Chunk:
    """A chunk: ``data`` receives heap payloads, ``present`` one flag per
    heap (or per packet), ``extra`` optional per-heap metadata.

    Keywords set the attributes: ``chunk_id`` (default -1), ``stream_id``
    (default 0), ``present``, ``data`` and ``extra`` (each None, or an object
    with a writable C-contiguous buffer, which the getter returns as given).
    May be subclassed; a chunk comes out of a ring as the same object.
    While a chunk is inside a ring or a stream, its buffers belong to the
    library: do not touch them.
    """

    cdef spead_chunk c
    cdef object _present, _data, _extra
    cdef Py_buffer _present_view, _data_view, _extra_view
    cdef bint _present_held, _data_held, _extra_held

    def __cinit__(self, *args, **kwargs):
        memset(&self.c, 0, sizeof(self.c))
        self.c.chunk_id = -1
        self.c.owner = <void *> self

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            if key not in ("chunk_id", "stream_id", "present", "data", "extra"):
                raise TypeError(f"Chunk() got an unexpected keyword argument {key!r}")
            setattr(self, key, value)

    def __dealloc__(self):
        if self._present_held:
            PyBuffer_Release(&self._present_view)
        if self._data_held:
            PyBuffer_Release(&self._data_view)
        if self._extra_held:
            PyBuffer_Release(&self._extra_view)

    @property
    def chunk_id(self) -> int:
        return self.c.chunk_id

    @chunk_id.setter
    def chunk_id(self, value):
        value = as_index(value, "chunk_id")
        if not -2**63 <= value < 2**63:
            raise spead2.RangeError(f"chunk_id {value} does not fit in 64 bits")
        self.c.chunk_id = value

    @property
    def stream_id(self) -> int:
        return self.c.stream_id

    @stream_id.setter
    def stream_id(self, value):
        self.c.stream_id = as_unsigned(value, "stream_id")

    cdef int _hold(self, value, Py_buffer *view, bint *held, uint8_t **ptr,
                   size_t *size) except -1:
        """Take a writable view of ``value`` (None releases it)."""
        cdef Py_buffer fresh
        if value is not None:
            PyObject_GetBuffer(value, &fresh, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
        if held[0]:
            PyBuffer_Release(view)
            held[0] = False
        if value is None:
            ptr[0] = NULL
            size[0] = 0
            return 0
        view[0] = fresh
        held[0] = True
        ptr[0] = <uint8_t *> fresh.buf
        size[0] = fresh.len
        return 0

    @property
    def present(self):
        """One byte per heap (or per packet): 1 once it arrived."""
        return self._present

    @present.setter
    def present(self, value):
        self._hold(value, &self._present_view, &self._present_held, &self.c.present,
                   &self.c.present_size)
        self._present = value

    @property
    def data(self):
        """Where heap payloads are written."""
        return self._data

    @data.setter
    def data(self, value):
        self._hold(value, &self._data_view, &self._data_held, &self.c.data, &self.c.data_size)
        self._data = value

    @property
    def extra(self):
        """Where place callbacks copy per-heap metadata (may be None)."""
        return self._extra

    @extra.setter
    def extra(self, value):
        self._hold(value, &self._extra_view, &self._extra_held, &self.c.extra,
                   &self.c.extra_size)
        self._extra = value

    def __repr__(self):
        return (f"<{type(self).__name__} chunk_id={self.c.chunk_id} "
                f"stream_id={self.c.stream_id}>")


cdef inline spead_chunk *_chunk_out(Chunk chunk):
    """Hand ``chunk`` to C: it keeps a reference to itself meanwhile."""
    Py_INCREF(chunk)
    return &chunk.c


cdef inline object _chunk_back(spead_chunk *c):
    """Take a chunk back from C, with the reference it carried."""
    cdef PyObject *owner = <PyObject *> c.owner
    obj = <object> owner          # a new reference
    Py_DECREF(obj)                # ... replacing the one the chunk carried
    return obj


cdef void _release_list(spead_chunk *c):
    cdef spead_chunk *nxt
    while c != NULL:
        nxt = c.next
        c.next = NULL
        _chunk_back(c)
        c = nxt


cdef int _check_ready(Chunk chunk) except -1:
    if chunk._data is None or chunk._present is None:
        raise ValueError("a chunk needs data and present to be given to a stream")
    return 0


cdef int _add_free_chunk(ChunkRingbuffer free_ring, Chunk chunk) except -1:
    """What ``add_free_chunk`` does for ring streams and groups alike."""
    _check_ready(chunk)
    memset(chunk.c.present, 0, chunk.c.present_size)
    try:
        free_ring._put(chunk, False)
    except spead2.Stopped:
        pass
    return 0


# ---------------------------------------------------------------------------
# Chunk rings


cdef class ChunkRingbuffer:
    """A thread-safe queue of up to ``maxsize`` chunks.

    ``put`` waits for room and ``get`` for a chunk; the ``_nowait`` forms
    raise :exc:`spead2.Full` and :exc:`spead2.Empty` instead. Once stopped,
    ``put`` raises :exc:`spead2.Stopped`, and ``get`` hands out what is left,
    then raises it (iteration just ends). Producers are counted: removing
    the last one stops the ring.
    """

    cdef spead_chunk_ring *r
    cdef readonly size_t maxsize

    def __cinit__(self, *args, **kwargs):
        self.r = NULL

    def __init__(self, maxsize):
        self.maxsize = as_nonzero_unsigned(maxsize, "maxsize")
        self.r = spead_chunk_ring_new(self.maxsize)
        if self.r == NULL:
            raise MemoryError(f"cannot allocate a ring of {maxsize} chunks")

    def __dealloc__(self):
        cdef spead_chunk *c
        if self.r == NULL:
            return
        spead_chunk_ring_stop(self.r)
        while spead_chunk_ring_get(self.r, &c, 0) == 1:
            _chunk_back(c)
        spead_chunk_ring_decref(self.r)
        self.r = NULL

    def qsize(self) -> int:
        return spead_chunk_ring_size(self.r)

    def empty(self) -> bool:
        return spead_chunk_ring_size(self.r) == 0

    def full(self) -> bool:
        return spead_chunk_ring_size(self.r) >= self.maxsize

    cdef int _put(self, Chunk chunk, bint wait) except -1:
        cdef spead_chunk *c
        cdef int rc
        if chunk is None:
            raise TypeError("put() needs a Chunk")
        _check_ready(chunk)
        c = _chunk_out(chunk)
        while True:
            with nogil:
                rc = spead_chunk_ring_put(self.r, c, WAIT_MS if wait else 0)
            if rc == 0:
                return 0
            if rc == 1 or not wait:
                _chunk_back(c)
                if rc == 1:
                    raise spead2.Stopped()
                raise spead2.Full()
            try:
                PyErr_CheckSignals()
            except BaseException:
                _chunk_back(c)
                raise

    def put(self, Chunk chunk) -> None:
        """Add ``chunk``, waiting for room."""
        self._put(chunk, True)

    def put_nowait(self, Chunk chunk) -> None:
        """Add ``chunk``; raise :exc:`spead2.Full` if there is no room."""
        self._put(chunk, False)

    cdef object _get(self, bint wait):
        cdef spead_chunk *c = NULL
        cdef int rc
        while True:
            with nogil:
                rc = spead_chunk_ring_get(self.r, &c, WAIT_MS if wait else 0)
            if rc == 1:
                return _chunk_back(c)
            if rc == 0:
                raise spead2.Stopped()
            if not wait:
                raise spead2.Empty()
            PyErr_CheckSignals()

    def get(self):
        """Take the oldest chunk, waiting for one."""
        return self._get(True)

    def get_nowait(self):
        """Take the oldest chunk; raise :exc:`spead2.Empty` if there is none."""
        return self._get(False)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self._get(True)
        except spead2.Stopped:
            raise StopIteration from None

    def stop(self) -> bool:
        """Stop the ring; True if this call stopped it."""
        return bool(spead_chunk_ring_stop(self.r))

    def add_producer(self) -> None:
        spead_chunk_ring_add_producer(self.r)

    def remove_producer(self) -> bool:
        """One producer fewer; True if that was the last and the ring stopped."""
        return bool(spead_chunk_ring_remove_producer(self.r))

    @property
    def data_fd(self) -> int:
        """Readable when a chunk is waiting (or the ring is stopped)."""
        return self.r.data_fd

    @property
    def space_fd(self) -> int:
        """Readable when there is room (or the ring is stopped)."""
        return self.r.space_fd


# ---------------------------------------------------------------------------
# Place callbacks


def check_place(value):
    """Check a value for ``ChunkStreamConfig.place``: None, a tuple whose
    first item is a PyCapsule holding a place function (a
    ``scipy.LowLevelCallable`` is one), or a :class:`ChunkPlacement`."""
    if value is None:
        return value
    from spead2.recv._placement import ChunkPlacement
    if isinstance(value, ChunkPlacement):
        return value
    if not isinstance(value, tuple):
        raise TypeError(f"place must be a tuple (a capsule and user data, e.g. a "
                        f"scipy.LowLevelCallable), not {type(value).__name__}")
    # tuple's own methods: scipy.LowLevelCallable, a tuple, forbids indexing
    if tuple.__len__(value) == 0:
        raise IndexError("place is an empty tuple")
    capsule = tuple.__getitem__(value, 0)
    if not PyCapsule_CheckExact(capsule):
        raise TypeError(f"place[0] must be a PyCapsule, not {type(capsule).__name__}")
    name = PyCapsule_GetName(capsule)
    if name == NULL or <bytes> name not in _PLACE_SIGNATURES:
        shown = "no name" if name == NULL else repr((<bytes> name).decode("ascii", "replace"))
        raise ValueError(f"the place capsule's signature must be 'void (void *, size_t)' or "
                         f"'void (void *, size_t, void *)', not {shown}")
    return value


cdef class _PlaceRule:
    """The compiled form of a :class:`spead2.recv.ChunkPlacement`."""

    cdef spead_place_rule rule


def _rule_callback(size_t chunk_item, uint64_t chunk_step, axes, size_t length_item,
                   uint64_t heap_size, bint extra_value):
    """``(capsule, rule)``: a place value that runs the built-in rule. ``axes``
    holds ``(from_chunk_item, item, divisor, count)`` tuples."""
    cdef _PlaceRule rule = _PlaceRule.__new__(_PlaceRule)
    cdef size_t i
    if len(axes) > SPEAD_PLACE_MAX_AXES:
        raise ValueError(f"at most {SPEAD_PLACE_MAX_AXES} axes are supported")
    rule.rule.chunk_item = chunk_item
    rule.rule.chunk_step = chunk_step
    rule.rule.n_axes = len(axes)
    for i, (from_chunk_item, item, divisor, count) in enumerate(axes):
        rule.rule.axes[i].from_chunk_item = from_chunk_item
        rule.rule.axes[i].item = item
        rule.rule.axes[i].divisor = divisor
        rule.rule.axes[i].count = count
    rule.rule.length_item = length_item
    rule.rule.heap_size = heap_size
    rule.rule.extra_value = extra_value
    capsule = PyCapsule_New(<void *> spead_place_by_rule, _PLACE_SIGNATURES[1], NULL)
    PyCapsule_SetContext(capsule, <void *> &rule.rule)
    return (capsule, rule)


cdef int _set_place(spead_chunker_config *c, place) except -1:
    """Fill the callback of ``c`` from a checked ``place`` value."""
    cdef const char *name
    c.place = NULL
    c.place_user = NULL
    c.place_user_data = NULL
    if place is None:
        return 0
    capsule = tuple.__getitem__(place, 0)
    name = PyCapsule_GetName(capsule)
    if <bytes> name == _PLACE_SIGNATURES[0]:
        c.place = <spead_chunk_place_fn> PyCapsule_GetPointer(capsule, name)
    else:
        c.place_user = <spead_chunk_place_user_fn> PyCapsule_GetPointer(capsule, name)
        c.place_user_data = PyCapsule_GetContext(capsule)
    return 0


# ---------------------------------------------------------------------------
# Chunk streams


cdef class _ChunkStream(_StreamBase):
    """A receive stream whose heaps go into chunks: the machinery of
    :class:`ChunkRingStream` (and of group members)."""

    cdef uint64_t *_item_ids
    cdef object _chunk_config
    cdef object _keep          # objects the C side points into

    def __cinit__(self, *args, **kwargs):
        self._item_ids = NULL

    def __dealloc__(self):
        free(self._item_ids)

    cdef int _create_chunked(self, ThreadPool thread_pool, config, chunk_config,
                             spead_chunk_manager manager) except -1:
        """Build the C stream; the stream owns ``manager`` from here on."""
        from spead2.recv._config import StreamStatConfig
        cdef recv_stream_config c
        cdef spead_chunker_config cc
        cdef size_t i
        place = chunk_config.place
        memset(&c, 0, sizeof(c))
        memset(&cc, 0, sizeof(cc))
        if place is None:
            manager.release(manager.ctx)
            raise ValueError("chunk_stream_config.place is not set")
        from spead2.recv._placement import ChunkPlacement
        max_heap_extra = chunk_config.max_heap_extra
        if isinstance(place, ChunkPlacement):
            items = place.items
            max_heap_extra = max(max_heap_extra, place.extra_bytes)
            self._keep = place._callback()
            place = self._keep
        else:
            items = chunk_config.items
            self._keep = place
        self._item_ids = <uint64_t *> malloc((len(items) or 1) * sizeof(uint64_t))
        if self._item_ids == NULL:
            manager.release(manager.ctx)
            raise MemoryError()
        for i in range(len(items)):
            self._item_ids[i] = items[i]
        cc.item_ids = self._item_ids
        cc.n_items = len(items)
        cc.max_chunks = chunk_config.max_chunks
        cc.max_heap_extra = max_heap_extra
        cc.packet_presence_payload_size = chunk_config.packet_presence_payload_size
        _set_place(&cc, place)
        cc.stream_id = config.stream_id
        cc.stat_too_old = config.next_stat_index()
        cc.stat_rejected = cc.stat_too_old + 1
        c.ring_heaps = 1
        c.contiguous_only = 1
        c.chunks = &cc
        c.chunk_manager = manager
        self._chunk_config = chunk_config
        extra = [StreamStatConfig("too_old_heaps"), StreamStatConfig("rejected_heaps")]
        self._create(thread_pool, config, &c, extra)
        return 0

    @property
    def chunk_stream_config(self):
        """A copy of the stream's :class:`ChunkStreamConfig`."""
        import copy
        return copy.copy(self._chunk_config)


cdef class ChunkRingStream(_ChunkStream):
    """A chunk stream whose chunks come from ``free_ringbuffer`` and go to
    ``data_ringbuffer``.

    Fill the free ring with chunks (each with ``data`` and ``present``, and
    ``extra`` if heaps write any) before adding readers; consume with ``for
    chunk in data_ringbuffer: ...; stream.add_free_chunk(chunk)``. An empty
    free ring makes the stream wait (backpressure); a full data ring too.
    At the end of the input every chunk is flushed and the data ring loses
    a producer, so it stops after its last producer.
    """

    cdef spead_chunk_ring_pair *_pair    # owned by the C stream
    cdef ChunkRingbuffer _data_ring
    cdef ChunkRingbuffer _free_ring

    def __init__(self, ThreadPool thread_pool not None, config, chunk_stream_config,
                 ChunkRingbuffer data_ringbuffer not None,
                 ChunkRingbuffer free_ringbuffer not None):
        from spead2.recv._config import ChunkStreamConfig, StreamConfig
        import copy
        if not isinstance(config, StreamConfig):
            raise TypeError(f"config must be a spead2.recv.StreamConfig, not "
                            f"{type(config).__name__}")
        if not isinstance(chunk_stream_config, ChunkStreamConfig):
            raise TypeError(f"chunk_stream_config must be a spead2.recv.ChunkStreamConfig, "
                            f"not {type(chunk_stream_config).__name__}")
        self._data_ring = data_ringbuffer
        self._free_ring = free_ringbuffer
        self._pair = spead_chunk_ring_pair_new(data_ringbuffer.r, free_ringbuffer.r)
        if self._pair == NULL:
            raise MemoryError()
        self._create_chunked(thread_pool, copy.copy(config), copy.copy(chunk_stream_config),
                             spead_chunk_ring_pair_manager(self._pair))
        spead_chunk_ring_add_producer(data_ringbuffer.r)

    @property
    def data_ringbuffer(self) -> ChunkRingbuffer:
        return self._data_ring

    @property
    def free_ringbuffer(self) -> ChunkRingbuffer:
        return self._free_ring

    def add_free_chunk(self, Chunk chunk not None) -> None:
        """Zero ``chunk.present`` and put the chunk on the free ring without
        waiting: :exc:`spead2.Full` if it is full; nothing if it is stopped."""
        _add_free_chunk(self._free_ring, chunk)

    def stop(self) -> None:
        """Stop both rings and the stream; chunks that cannot enter the
        data ring are released; those already in it stay retrievable."""
        _StreamBase.stop(self)
        self._release()

    cdef void _release(self):
        if self.s != NULL and self._pair != NULL:
            _release_list(spead_chunk_ring_pair_take_released(self._pair))

    def __dealloc__(self):
        if self.s != NULL:
            with nogil:
                recv_stream_stop(self.s)
            self._release()


# ---------------------------------------------------------------------------
# Chunk stream groups


cdef class ChunkStreamRingGroup:
    """Several chunk streams (members), each on its own worker, filling one
    sequence of chunks from ``free_ringbuffer`` into ``data_ringbuffer``.

    Add members with :meth:`emplace_back` before any data arrives. A chunk
    reaches the data ring once every member has moved past it; what happens
    when a member needs a chunk beyond the group's window is the config's
    ``eviction_mode``. The group is a sequence of its members. A shared
    thread pool needs at least one thread per member.
    """

    cdef spead_chunk_group *g
    cdef object _config
    cdef ChunkRingbuffer _data_ring
    cdef ChunkRingbuffer _free_ring
    cdef list _members

    def __cinit__(self, *args, **kwargs):
        self.g = NULL
        self._members = []

    def __init__(self, config, ChunkRingbuffer data_ringbuffer not None,
                 ChunkRingbuffer free_ringbuffer not None):
        from spead2.recv._config import ChunkStreamGroupConfig
        import copy
        if not isinstance(config, ChunkStreamGroupConfig):
            raise TypeError(f"config must be a spead2.recv.ChunkStreamGroupConfig, not "
                            f"{type(config).__name__}")
        self._config = copy.copy(config)
        self._data_ring = data_ringbuffer
        self._free_ring = free_ringbuffer
        self.g = spead_chunk_group_new(config.max_chunks, int(config.eviction_mode),
                                       data_ringbuffer.r, free_ringbuffer.r)
        if self.g == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.g != NULL:
            with nogil:
                spead_chunk_group_stop(self.g)
            _release_list(spead_chunk_group_take_released(self.g))
            spead_chunk_group_decref(self.g)
            self.g = NULL

    @property
    def config(self):
        """A copy of the group's :class:`ChunkStreamGroupConfig`."""
        import copy
        return copy.copy(self._config)

    @property
    def data_ringbuffer(self) -> ChunkRingbuffer:
        return self._data_ring

    @property
    def free_ringbuffer(self) -> ChunkRingbuffer:
        return self._free_ring

    def add_free_chunk(self, Chunk chunk not None) -> None:
        """Zero ``chunk.present`` and put the chunk on the free ring without
        waiting: :exc:`spead2.Full` if it is full; nothing if it is stopped."""
        _add_free_chunk(self._free_ring, chunk)

    def emplace_back(self, ThreadPool thread_pool not None, config, chunk_stream_config):
        """Add a member stream; returns it (a :class:`ChunkStreamGroupMember`)."""
        from spead2.recv._config import ChunkStreamConfig, StreamConfig
        import copy
        cdef spead_chunk_manager manager
        cdef ChunkStreamGroupMember member
        cdef size_t index = len(self._members)
        if not isinstance(config, StreamConfig):
            raise TypeError(f"config must be a spead2.recv.StreamConfig, not "
                            f"{type(config).__name__}")
        if not isinstance(chunk_stream_config, ChunkStreamConfig):
            raise TypeError(f"chunk_stream_config must be a spead2.recv.ChunkStreamConfig, "
                            f"not {type(chunk_stream_config).__name__}")
        if chunk_stream_config.max_chunks > self._config.max_chunks:
            raise ValueError("a member's max_chunks must not exceed the group's")
        if spead_chunk_group_add_member(self.g, index, &manager) != 0:
            raise RuntimeError("members cannot be added once the group has received data")
        member = ChunkStreamGroupMember.__new__(ChunkStreamGroupMember)
        member._group = self
        member._create_chunked(thread_pool, copy.copy(config), copy.copy(chunk_stream_config),
                               manager)
        spead_chunk_group_set_member_stream(self.g, index, member.s)
        self._members.append(member)
        return member

    def stop(self) -> None:
        """Stop both rings and every member; chunks in flight are released."""
        with nogil:
            spead_chunk_group_stop(self.g)
        _release_list(spead_chunk_group_take_released(self.g))

    # the sequence of members
    def __len__(self):
        return len(self._members)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._members[index]
        return self._members[as_index(index, "index")]

    def __iter__(self):
        return iter(list(self._members))

    def __reversed__(self):
        return reversed(list(self._members))

    def __contains__(self, value):
        return any(member is value for member in self._members)

    def count(self, value) -> int:
        return sum(1 for member in self._members if member is value)

    def index(self, value, start=0, stop=None) -> int:
        members = self._members[start:stop]
        for i, member in enumerate(members):
            if member is value:
                return i + (start if start >= 0 else max(len(self._members) + start, 0))
        raise ValueError("not a member of this group")


cdef class ChunkStreamGroupMember(_ChunkStream):
    """One stream of a :class:`ChunkStreamRingGroup` (made by its
    ``emplace_back``): readers, ``start``, ``stats`` and ``config`` as any
    stream. Stopping a member stops the whole group."""

    cdef object _group

    def __init__(self, *args, **kwargs):
        raise TypeError("a group member is made by ChunkStreamRingGroup.emplace_back")

    def stop(self) -> None:
        """Stop the whole group."""
        self._group.stop()
