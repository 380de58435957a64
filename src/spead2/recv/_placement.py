"""Declarative chunk placement: the usual place callback, configured in
Python and evaluated in C on the stream's worker (no numba, no compiler,
no GIL).

Most place callbacks do the same thing: one item, typically a timestamp,
picks the chunk by integer division and the heap's slot along the time
axis by its remainder; other items (channel, antenna, polarisation) pick
the slot along the chunk's other axes; heaps of the wrong size are
dropped; the timestamp is kept in ``Chunk.extra``. :class:`ChunkPlacement`
says that once, and can be given as ``ChunkStreamConfig(place=...)``.

Example: a correlator's input, with heaps of 256 samples of one channel
group (``0x4103``, 16 groups of 32 channels: a group's first channel is the
value) from one antenna (``0x4101``, 64 antennas), timestamped by
``0x1600`` in samples; a chunk holds 32 heaps in time, so 8192 samples::

    placement = ChunkPlacement(
        chunk_item=0x1600, chunk_step=32 * 256,
        axes=[("chunk", 32, 256),          # time within the chunk, slowest
              (0x4103, 16, 32),             # channel group
              (0x4101, 64)],                # antenna, fastest
        heap_size=256 * 32 * 2 * 2,         # 256 samples x 32 channels x 2 pols x int8 complex
        extra=True)                         # each heap's timestamp into Chunk.extra
    chunk_config = ChunkStreamConfig(place=placement, max_chunks=4)
    # chunks: data of placement.chunk_bytes bytes, present of
    # placement.heaps_per_chunk bytes, extra of 8 * placement.heaps_per_chunk

The chunk's data is then an array of shape (32, 16, 64, 256, 32, 2, 2):
time, channel group, antenna, then one heap's payload.
"""

from typing import Iterable, List, Tuple, Union

import spead2

from .._args import as_nonzero_unsigned, as_unsigned

Axis = Union[Tuple[str, int, int], Tuple[int, int], Tuple[int, int, int]]

MAX_AXES = 8


class ChunkPlacement:
    """Where each heap goes in its chunk, described by items.

    ``chunk_item``: the item (an immediate) whose value picks the chunk:
    ``chunk_id = value // chunk_step``. ``axes``: the chunk's dimensions,
    slowest first, each ``("chunk", count, divisor)`` (position
    ``(value % chunk_step) // divisor`` of the chunk item) or ``(item_id,
    count)`` / ``(item_id, count, divisor)`` (position ``item // divisor``);
    a position of ``count`` or more, or a missing item, drops the heap
    (counted in ``rejected_heaps``). ``heap_size``: the payload bytes of
    every heap; others are dropped. ``extra``: store the chunk item's value
    (a native-order uint64) at ``8 * heap_index`` in ``Chunk.extra``.
    """

    def __init__(self, *, chunk_item: int, chunk_step: int, axes: Iterable[Axis] = (),
                 heap_size: int, extra: bool = False) -> None:
        self.chunk_item = as_unsigned(chunk_item, "chunk_item")
        self.chunk_step = as_nonzero_unsigned(chunk_step, "chunk_step", bits=63)
        self.heap_size = as_nonzero_unsigned(heap_size, "heap_size", bits=63)
        self.extra = bool(extra)
        parsed = []
        for axis in axes:
            if not isinstance(axis, (tuple, list)) or len(axis) not in (2, 3):
                raise ValueError(f"an axis is (item_id, count[, divisor]) or "
                                 f"('chunk', count, divisor), not {axis!r}")
            source = axis[0]
            count = as_nonzero_unsigned(axis[1], "count", bits=63)
            divisor = as_nonzero_unsigned(axis[2], "divisor", bits=63) if len(axis) == 3 else 1
            if source != "chunk":
                source = as_unsigned(source, "item_id")
            parsed.append((source, count, divisor))
        if len(parsed) > MAX_AXES:
            raise ValueError(f"at most {MAX_AXES} axes are supported")
        self.axes: List[Tuple[Union[str, int], int, int]] = parsed
        if self.heaps_per_chunk * self.heap_size >= 2**63:
            raise ValueError("the chunk would hold more than 2**63 bytes")

    @property
    def heaps_per_chunk(self) -> int:
        """Heaps in one chunk: the product of the axes' counts."""
        n = 1
        for _, count, _ in self.axes:
            n *= count
        return n

    @property
    def chunk_bytes(self) -> int:
        """The size ``Chunk.data`` needs."""
        return self.heaps_per_chunk * self.heap_size

    @property
    def extra_bytes(self) -> int:
        """Bytes each heap writes into ``Chunk.extra`` (8 with ``extra``)."""
        return 8 if self.extra else 0

    @property
    def items(self) -> List[int]:
        """The item ids the rule reads from each heap's first packet."""
        out = [self.chunk_item]
        for source, _, _ in self.axes:
            if source != "chunk" and source not in out:
                out.append(source)  # type: ignore[arg-type]  # not 'chunk': an id
        if spead2.HEAP_LENGTH_ID not in out:
            out.append(spead2.HEAP_LENGTH_ID)
        return out

    def _callback(self) -> tuple:
        """The ``(capsule, rule)`` place value that runs this rule."""
        from ._chunks import _rule_callback
        items = self.items
        axes = [(True, 0, divisor, count) if source == "chunk"
                else (False, items.index(source), divisor, count)  # type: ignore[arg-type]
                for source, count, divisor in self.axes]
        return _rule_callback(items.index(self.chunk_item), self.chunk_step, axes,
                              items.index(spead2.HEAP_LENGTH_ID), self.heap_size, self.extra)

    def __repr__(self) -> str:
        return (f"ChunkPlacement(chunk_item={self.chunk_item:#x}, chunk_step={self.chunk_step}, "
                f"axes={self.axes!r}, heap_size={self.heap_size}, extra={self.extra})")


