"""Receive stream configuration and statistics, as spead2 4.x programs use
them: :class:`StreamConfig`, :class:`RingStreamConfig`,
:class:`StreamStatConfig` and :class:`StreamStats`.

A stream copies its configuration when it is built; later changes to these
objects do not reach it.
"""

import copy
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import spead2

from .._args import as_flags, as_index, as_nonzero_unsigned, as_unsigned
from .._config import Config as _Config
from .._config import IntEnum as _IntEnum
from .._config import ListOption as _ListOption
from .._config import Option as _Option
from .._config import flag as _flag
from ._recv import CORE_STATS, DEFAULT_MAX_HEAP_SIZE, default_allocator


class StreamStatConfig:
    """One statistic of a stream: its ``name`` and how two values combine
    (``mode``)."""

    class Mode(_IntEnum):
        COUNTER = 0
        MAXIMUM = 1

    __slots__ = ("_name", "_mode")

    def __init__(self, name: str, mode: "StreamStatConfig.Mode" = Mode.COUNTER) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if not isinstance(mode, StreamStatConfig.Mode):
            raise TypeError(f"mode must be a StreamStatConfig.Mode, not {type(mode).__name__}")
        self._name = name
        self._mode = mode

    @property
    def name(self) -> str:
        return self._name

    @property
    def mode(self) -> "StreamStatConfig.Mode":
        return self._mode

    def combine(self, a: int, b: int) -> int:
        """Merge two values of this statistic."""
        return max(a, b) if self._mode is StreamStatConfig.Mode.MAXIMUM else a + b

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamStatConfig):
            return NotImplemented
        return self._name == other._name and self._mode is other._mode

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StreamStatConfig({self._name!r}, {self._mode})"


_MODES = (StreamStatConfig.Mode.COUNTER, StreamStatConfig.Mode.MAXIMUM)
_CORE_STAT_CONFIGS = tuple(StreamStatConfig(name, _MODES[mode]) for name, mode in CORE_STATS)


def _check_bug_compat(value: Any, name: str) -> int:
    return as_flags(value, name, spead2.BUG_COMPAT_PYSPEAD_0_5_2)


def _check_memcpy(value: Any, name: str) -> int:
    value = as_index(value, name)
    if value not in (spead2.MEMCPY_STD, spead2.MEMCPY_NONTEMPORAL):
        raise ValueError(f"unknown memcpy function {value}")
    return value


def _check_allocator(value: Any, name: str) -> "spead2.MemoryAllocator":
    if not isinstance(value, spead2.MemoryAllocator):
        raise TypeError(f"{name} must be a spead2.MemoryAllocator, not "
                        f"{type(value).__name__}")
    return value


class StreamConfig(_Config):
    """How a receive stream assembles heaps.

    Keywords (each also a read/write attribute): ``max_heaps`` (heaps under
    assembly per substream), ``substreams`` (a heap's substream is ``cnt %
    substreams``), ``bug_compat``, ``memcpy`` (``spead2.MEMCPY_STD`` or
    ``MEMCPY_NONTEMPORAL``), ``memory_allocator``, ``stop_on_stop_item``,
    ``allow_unsized_heaps``, ``allow_out_of_order``, ``stream_id`` (copied
    into chunks), ``explicit_start`` (readers wait for
    :meth:`Stream.start`), and, beyond spead2, ``max_heap_size`` (the most
    payload one heap may claim). Custom statistics are registered with
    :meth:`add_stat`.
    """

    DEFAULT_MAX_HEAPS = 4

    __slots__ = ("_max_heaps", "_substreams", "_bug_compat", "_memcpy", "_memory_allocator",
                 "_stop_on_stop_item", "_allow_unsized_heaps", "_allow_out_of_order",
                 "_stream_id", "_explicit_start", "_max_heap_size", "_stats")

    def _set_defaults(self) -> None:
        self._max_heaps = self.DEFAULT_MAX_HEAPS
        self._substreams = 1
        self._bug_compat = 0
        self._memcpy = spead2.MEMCPY_STD
        # one default for every stream, so the blocks it keeps for reuse stay warm
        self._memory_allocator = default_allocator
        self._stop_on_stop_item = True
        self._allow_unsized_heaps = True
        self._allow_out_of_order = False
        self._stream_id = 0
        self._explicit_start = False
        self._max_heap_size = DEFAULT_MAX_HEAP_SIZE
        self._stats = list(_CORE_STAT_CONFIGS)

    max_heaps = _Option(as_nonzero_unsigned, "Heaps under assembly at once, per substream.")
    substreams = _Option(as_nonzero_unsigned, "Substreams; a heap's is its cnt modulo this.")
    bug_compat = _Option(_check_bug_compat, "PySPEAD bug-compatibility flags.")
    memcpy = _Option(_check_memcpy, "spead2.MEMCPY_STD or MEMCPY_NONTEMPORAL.")
    memory_allocator = _Option(_check_allocator, "Where heap payload memory comes from.")
    stop_on_stop_item = _Option(_flag, "Whether a stop item ends the stream.")
    allow_unsized_heaps = _Option(_flag, "Whether packets without HEAP_LENGTH are taken.")
    allow_out_of_order = _Option(_flag, "Whether a heap's packets may arrive in any order.")
    stream_id = _Option(as_unsigned, "A tag copied into chunks.")
    explicit_start = _Option(_flag, "Whether readers wait for Stream.start().")
    max_heap_size = _Option(as_unsigned, "The most payload bytes (and item-pointer bytes) one "
                                          "heap may claim; packets claiming more are dropped "
                                          "before anything is allocated.")

    @property
    def stats(self) -> List[StreamStatConfig]:
        """The statistics a stream keeps: the core ones, then the custom ones
        in order of registration (a new list each time)."""
        return list(self._stats)

    def next_stat_index(self) -> int:
        """The index the next :meth:`add_stat` will return."""
        return len(self._stats)

    def add_stat(self, name: str,
                 mode: StreamStatConfig.Mode = StreamStatConfig.Mode.COUNTER) -> int:
        """Register a custom statistic; returns its index."""
        stat = StreamStatConfig(name, mode)
        if any(s.name == name for s in self._stats):
            raise ValueError(f"a statistic called {name!r} already exists")
        self._stats.append(stat)
        return len(self._stats) - 1

    def get_stat_index(self, name: str) -> int:
        """The index of the statistic called ``name`` (IndexError if none)."""
        for i, stat in enumerate(self._stats):
            if stat.name == name:
                return i
        raise IndexError(f"no statistic called {name!r}")


class RingStreamConfig(_Config):
    """The ring of finished heaps between a stream and its consumer:
    ``heaps`` (capacity), ``contiguous_only`` (else incomplete heaps are
    delivered as :class:`IncompleteHeap`) and
    ``incomplete_keep_payload_ranges``."""

    DEFAULT_HEAPS = 4

    __slots__ = ("_heaps", "_contiguous_only", "_incomplete_keep_payload_ranges")

    def _set_defaults(self) -> None:
        self._heaps = self.DEFAULT_HEAPS
        self._contiguous_only = True
        self._incomplete_keep_payload_ranges = False

    heaps = _Option(as_nonzero_unsigned, "Capacity of the ring of finished heaps.")
    contiguous_only = _Option(_flag, "Whether incomplete heaps are dropped rather than "
                                     "delivered as IncompleteHeap.")
    incomplete_keep_payload_ranges = _Option(
        _flag, "Whether IncompleteHeap.payload_ranges is recorded.")


class StreamStats:
    """A snapshot of a stream's statistics (``stream.stats``).

    Entries are read and written by attribute (core statistics), by index
    (``s[i]``) or by name (``s["name"]``); ``in``, ``len``, ``get``,
    iteration over the names, ``keys``, ``values`` and ``items`` work, and
    ``a + b`` combines two snapshots of the same statistics entry by entry.
    """

    __slots__ = ("_config", "_values")
    _config: List[StreamStatConfig]
    _values: List[int]

    # the core statistics, as read/write properties (added below, from CORE_STATS)
    heaps: int
    incomplete_heaps_evicted: int
    incomplete_heaps_flushed: int
    packets: int
    batches: int
    max_batch: int
    single_packet_heaps: int
    search_dist: int
    worker_blocked: int
    bad_packets: int
    rejected_packets: int
    duplicate_packets: int
    too_large_packets: int
    bytes: int
    log_suppressed: int
    direct_packets: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("StreamStats cannot be constructed; read it from stream.stats")

    @classmethod
    def _make(cls, config: List[StreamStatConfig], values: List[int]) -> "StreamStats":
        out = cls.__new__(cls)
        out._config = config
        out._values = values
        return out

    @property
    def config(self) -> List[StreamStatConfig]:
        """The :class:`StreamStatConfig` of each entry, in index order."""
        return list(self._config)

    def _index(self, key: Union[int, str]) -> int:
        if isinstance(key, str):
            for i, stat in enumerate(self._config):
                if stat.name == key:
                    return i
            raise KeyError(key)
        key = as_index(key, "index")
        if key < 0:
            raise TypeError(f"statistic index must be non-negative, not {key}")
        if key >= len(self._values):
            raise IndexError(f"statistic index {key} out of range")
        return key

    def __getitem__(self, key: Union[int, str]) -> int:
        return self._values[self._index(key)]

    def __setitem__(self, key: Union[int, str], value: int) -> None:
        self._values[self._index(key)] = as_unsigned(value, "value")

    def __contains__(self, name: object) -> bool:
        return any(stat.name == name for stat in self._config)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, name: str, default: Optional[int] = None) -> Optional[int]:
        try:
            return self[name]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        return (stat.name for stat in self._config)

    def keys(self) -> Iterator[str]:
        return iter(self)

    def values(self) -> Iterator[int]:
        return iter(list(self._values))

    def items(self) -> Iterator[Tuple[str, int]]:
        return iter([(stat.name, value) for stat, value in zip(self._config, self._values)])

    def _combine(self, other: "StreamStats") -> List[int]:
        if not isinstance(other, StreamStats):
            return NotImplemented
        if self._config != other._config:
            raise ValueError("the two snapshots do not have the same statistics")
        return [stat.combine(a, b) for stat, a, b in zip(self._config, self._values,
                                                          other._values)]

    def __add__(self, other: "StreamStats") -> "StreamStats":
        values = self._combine(other)
        if values is NotImplemented:
            return NotImplemented
        return StreamStats._make(self._config, values)

    def __iadd__(self, other: "StreamStats") -> "StreamStats":
        values = self._combine(other)
        if values is NotImplemented:
            return NotImplemented
        self._values = values
        return self

    @property
    def malformed_packets(self) -> int:
        """Packets dropped because they could not be decoded, were refused
        by assembly or were too large (duplicates are not counted here)."""
        return self.bad_packets + self.rejected_packets + self.too_large_packets

    def _asdict(self) -> Dict[str, int]:
        return dict(self.items())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.items())
        return f"StreamStats({inner})"


def _stat_property(index: int, name: str) -> property:
    def getter(self: StreamStats) -> int:
        return self._values[index]

    def setter(self: StreamStats, value: int) -> None:
        self._values[index] = as_unsigned(value, name)

    return property(getter, setter, doc=f"The {name} statistic.")


for _index, (_name, _mode) in enumerate(CORE_STATS):
    setattr(StreamStats, _name, _stat_property(_index, _name))
del _index, _name, _mode


def copy_config(config: _Config) -> _Config:
    """An independent copy of a configuration object."""
    return copy.copy(config)


def _check_items(value: Any, name: str) -> List[int]:
    return [as_unsigned(item, "item id") for item in value]


def _check_place(value: Any, name: str) -> Any:
    from ._chunks import check_place
    return check_place(value)


class ChunkStreamConfig(_Config):
    """How a chunk stream places heaps into chunks.

    Keywords (each also a read/write attribute): ``items`` (ids whose
    immediate values, from each heap's first packet, are passed to the place
    callback; the getter returns a copy), ``max_chunks`` (chunks being filled
    at once), ``place`` (the place callback: a tuple whose first item is a
    PyCapsule, such as a ``scipy.LowLevelCallable``, or a
    :class:`ChunkPlacement`), ``max_heap_extra`` (the most bytes one heap may
    write into ``Chunk.extra``). Packet presence is switched with
    :meth:`enable_packet_presence` and :meth:`disable_packet_presence`.

    The stream's ``StreamConfig.memcpy`` applies to the payloads, except
    that heaps of 2 KiB or more going into chunks at least as large as the
    CPU's level 2 cache (1 MiB if unknown) are written with non-temporal
    stores (on x86) whatever it says: such a chunk leaves the receiving
    core's cache before it is read.
    """

    DEFAULT_MAX_CHUNKS = 2

    __slots__ = ("_items", "_max_chunks", "_place", "_max_heap_extra",
                 "_packet_presence_payload_size")

    def _set_defaults(self) -> None:
        self._items: List[int] = []
        self._max_chunks = self.DEFAULT_MAX_CHUNKS
        self._place = None
        self._max_heap_extra = 0
        self._packet_presence_payload_size = 0

    items = _ListOption(_check_items, "Item ids whose immediate values the place callback "
                                      "gets (a new list each time).")
    max_chunks = _Option(as_nonzero_unsigned, "Chunks being filled at once.")
    place = _Option(_check_place, "The place callback (None until set).")
    max_heap_extra = _Option(as_unsigned, "The most bytes one heap may write into Chunk.extra.")

    @property
    def packet_presence_payload_size(self) -> int:
        """Payload bytes per packet in packet-presence mode, or 0 (off)."""
        return self._packet_presence_payload_size

    def enable_packet_presence(self, payload_size: int) -> "ChunkStreamConfig":
        """Flag each packet in ``Chunk.present`` (at ``heap_index +
        payload_offset // payload_size``) instead of each heap; returns self."""
        self._packet_presence_payload_size = as_nonzero_unsigned(payload_size, "payload_size")
        return self

    def disable_packet_presence(self) -> "ChunkStreamConfig":
        """Back to one flag per heap; returns self."""
        self._packet_presence_payload_size = 0
        return self


class ChunkStreamGroupConfig(_Config):
    """A group of chunk streams filling one sequence of chunks:
    ``max_chunks`` (chunks being filled at once by the group) and
    ``eviction_mode`` (what happens when a member needs a chunk beyond the
    group's window: LOSSY releases the oldest chunks, complete or not;
    LOSSLESS waits for every member to move past them)."""

    class EvictionMode(_IntEnum):
        LOSSY = 0
        LOSSLESS = 1

    DEFAULT_MAX_CHUNKS = 2

    __slots__ = ("_max_chunks", "_eviction_mode")

    def _set_defaults(self) -> None:
        self._max_chunks = self.DEFAULT_MAX_CHUNKS
        self._eviction_mode = ChunkStreamGroupConfig.EvictionMode.LOSSY

    def _check_mode(value: Any, name: str) -> "ChunkStreamGroupConfig.EvictionMode":
        if not isinstance(value, ChunkStreamGroupConfig.EvictionMode):
            raise TypeError(f"{name} must be a ChunkStreamGroupConfig.EvictionMode, not "
                            f"{type(value).__name__}")
        return value

    max_chunks = _Option(as_nonzero_unsigned, "Chunks the group fills at once.")
    eviction_mode = _Option(_check_mode, "LOSSY or LOSSLESS.")
    del _check_mode


_LEGACY_KEYWORDS = ("bug_compat", "max_heaps", "ring_heaps", "max_heap_size")


def stream_arguments(args: tuple, kwargs: dict,
                     name: str = "Stream") -> Tuple[Any, StreamConfig, RingStreamConfig]:
    """``(thread_pool, config, ring_config)`` from the arguments of a receive
    stream in either API generation.

    Today's form is ``(thread_pool, config=StreamConfig(),
    ring_config=RingStreamConfig())``. The 2016 form, ``(thread_pool,
    bug_compat=0, max_heaps=4, ring_heaps=4)`` (plus ``max_heap_size``), is
    chosen when the second positional argument is an int or one of its
    keywords is given; it accepts packets in any order within a heap, as the
    2016 streams did. Mixing the two raises TypeError.
    """
    legacy = (len(args) > 1 and isinstance(args[1], int)) or any(k in kwargs
                                                                 for k in _LEGACY_KEYWORDS)
    names = ("thread_pool",) + (_LEGACY_KEYWORDS[:3] if legacy else ("config", "ring_config"))
    if len(args) > len(names):
        raise TypeError(f"{name}() takes at most {len(names)} positional arguments "
                        f"({len(args)} given)")
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        allowed = names + (("max_heap_size",) if legacy else ())
        if key not in allowed:
            other = "the 2016 form" if legacy else "today's form"
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r} (with "
                            f"{other} of the arguments)")
        if key in values:
            raise TypeError(f"{name}() got multiple values for argument {key!r}")
        values[key] = value
    if "thread_pool" not in values:
        raise TypeError(f"{name}() missing required argument 'thread_pool'")
    thread_pool = values["thread_pool"]
    if not isinstance(thread_pool, spead2.ThreadPool):
        raise TypeError(f"thread_pool must be a spead2.ThreadPool, not "
                        f"{type(thread_pool).__name__}")
    if legacy:
        # checked under their 2016 names, so errors name the argument given
        config = StreamConfig(allow_out_of_order=True)
        config.bug_compat = values.get("bug_compat", 0)
        config.max_heaps = as_nonzero_unsigned(
            values.get("max_heaps", StreamConfig.DEFAULT_MAX_HEAPS), "max_heaps")
        config.max_heap_size = as_unsigned(values.get("max_heap_size", DEFAULT_MAX_HEAP_SIZE),
                                           "max_heap_size")
        ring_config = RingStreamConfig()
        ring_config.heaps = as_nonzero_unsigned(
            values.get("ring_heaps", RingStreamConfig.DEFAULT_HEAPS), "ring_heaps")
        return thread_pool, config, ring_config
    config = values.get("config")  # type: ignore[assignment]  # None: checked below
    ring_config = values.get("ring_config")  # type: ignore[assignment]
    if config is None:
        config = StreamConfig()
    elif not isinstance(config, StreamConfig):
        raise TypeError(f"config must be a spead2.recv.StreamConfig, not {type(config).__name__}")
    if ring_config is None:
        ring_config = RingStreamConfig()
    elif not isinstance(ring_config, RingStreamConfig):
        raise TypeError(f"ring_config must be a spead2.recv.RingStreamConfig, not "
                        f"{type(ring_config).__name__}")
    return thread_pool, copy.copy(config), copy.copy(ring_config)
