"""Helpers for the chunk stream tests: the place callbacks of
``ref_scripts/chunk_prog.py`` (the program both implementations run),
hand-built heaps that carry their own placement, a runner that feeds a
ChunkRingStream from a buffer and collects its chunks with bounded waits,
and a model of the window rules.

Importing this module imports numba (the tests that use it skip without).
"""

import ctypes
import importlib.util
import select
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import scipy

import packets as P
import spead2
import spead2.recv

_PROG_PATH = Path(__file__).resolve().parent / "ref_scripts" / "chunk_prog.py"
_spec = importlib.util.spec_from_file_location("chunk_prog", _PROG_PATH)
prog = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prog)

DIRECT_ITEMS = prog.DIRECT_ITEMS
TIMEOUT = 10.0

# names of the direct callback's items (see chunk_prog.DIRECT_ITEMS)
_DIRECT_KEYS = ["chunk", "index", "offset", "extra_offset", "extra_size", "fill", "stat",
                "value", "maximum", "negative", "top"]


# user data of the direct callbacks made so far (the callbacks point into them)
_KEEP: List[np.ndarray] = []


def direct_place(stat_base: int = spead2.recv.stream_stat_indices.CUSTOM):
    """The direct callback (3-argument form) as a ``place`` value; its
    statistic item counts from custom statistic ``stat_base``."""
    params = np.array([stat_base], np.int64)
    _KEEP.append(params)
    return scipy.LowLevelCallable(prog.place_direct.ctypes,
                                  user_data=params.ctypes.data_as(ctypes.c_void_p),
                                  signature="void (void *, size_t, void *)")


def direct_config(max_chunks: int = 2, max_heap_extra: int = 0, packet_presence: int = 0,
                  stat_base: int = spead2.recv.stream_stat_indices.CUSTOM):
    config = spead2.recv.ChunkStreamConfig(items=DIRECT_ITEMS, max_chunks=max_chunks,
                                           place=direct_place(stat_base),
                                           max_heap_extra=max_heap_extra)
    if packet_presence:
        config.enable_packet_presence(packet_presence)
    return config


def direct_heap(cnt: int, payload: bytes, packet_payload: int = 0, **fields) -> List[bytes]:
    """The packets of heap ``cnt``; ``fields`` (names from ``_DIRECT_KEYS``)
    become immediates of its first packet that the direct callback turns
    into the placement. ``packet_payload`` 0: one packet."""
    items = []
    for key, value in fields.items():
        if value is None:
            continue
        items.append((True, DIRECT_ITEMS[_DIRECT_KEYS.index(key)], value))
    return P.heap_packets(cnt, payload, packet_payload or max(len(payload), 1), items=items)


class Snap(NamedTuple):
    """A chunk as it left the data ring."""
    chunk_id: int
    stream_id: int
    present: bytes
    data: bytes
    extra: Optional[bytes]


def snap(chunk) -> Snap:
    return Snap(chunk.chunk_id, chunk.stream_id, bytes(chunk.present), bytes(chunk.data),
                None if chunk.extra is None else bytes(chunk.extra))


def make_chunk(data_bytes: int, present_bytes: int, extra_bytes: Optional[int] = None,
               cls=spead2.recv.Chunk, **kwargs):
    return cls(data=np.zeros(data_bytes, np.uint8), present=np.zeros(present_bytes, np.uint8),
               extra=None if extra_bytes is None else np.zeros(extra_bytes, np.uint8), **kwargs)


def next_chunk(ring, timeout: float = TIMEOUT):
    """The next chunk of ``ring``, waiting at most ``timeout`` on its
    data_fd (readable when a chunk is there or the ring has stopped);
    :exc:`spead2.Stopped` at the end."""
    readable, _, _ = select.select([ring.data_fd], [], [], timeout)
    if not readable:
        raise AssertionError(f"no chunk and no stop within {timeout} s")
    return ring.get_nowait()


def drain(ring, stream=None, timeout: float = TIMEOUT) -> List[Snap]:
    """Every chunk until the ring stops, as snapshots; each chunk goes back
    to ``stream``'s free ring when one is given."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = next_chunk(ring, max(0.0, deadline - time.monotonic()))
        except spead2.Stopped:
            return out
        out.append(snap(chunk))
        if stream is not None:
            stream.add_free_chunk(chunk)


class Result(NamedTuple):
    chunks: List[Snap]
    stats: Dict[str, int]


def run(packets: Sequence[bytes], chunk_config, *, data_bytes: int = 64, present_bytes: int = 4,
        extra_bytes: Optional[int] = None, free: int = 4, data_ring: int = 4,
        config: Optional[spead2.recv.StreamConfig] = None, thread_pool=None,
        recycle: bool = True) -> Result:
    """Feed ``packets`` to a ChunkRingStream from a buffer; return its chunks
    and statistics. With ``recycle`` each chunk goes back to the free ring
    (which zeroes present, not data), else every chunk is fresh."""
    pool = thread_pool or spead2.ThreadPool()
    data = spead2.recv.ChunkRingbuffer(data_ring)
    free_ring = spead2.recv.ChunkRingbuffer(free)
    stream = spead2.recv.ChunkRingStream(pool, config or spead2.recv.StreamConfig(),
                                         chunk_config, data, free_ring)
    for _ in range(free):
        stream.add_free_chunk(make_chunk(data_bytes, present_bytes, extra_bytes))
    stream.add_buffer_reader(b"".join(packets))
    chunks = drain(data, stream if recycle else None)
    stream.stop()
    stats = stream.stats
    result = Result(chunks, {s.name: stats[s.name] for s in stream.config.stats})
    if thread_pool is None:
        pool.stop()
    return result


def window_model(chunk_ids: Sequence[int], max_chunks: int):
    """The window rules, one requested chunk id per heap: returns
    ``(accepted, order)``, whether each heap found its chunk, and the ids of
    the chunks in the order they leave (including those flushed at the end)."""
    head = tail = 0
    order: List[int] = []
    accepted = []
    for c in chunk_ids:
        if c < head:
            accepted.append(False)
            continue
        if c >= tail:
            if c - tail >= max_chunks:
                order.extend(range(head, tail))
                head = tail = c - max_chunks + 1
            while c >= tail:
                if tail - head == max_chunks:
                    order.append(head)
                    head += 1
                tail += 1
        accepted.append(True)
    order.extend(range(head, tail))
    return accepted, order


def random_direct_stream(rng, *, per: int = 8, heap_size: int = 32, packet_payload: int = 8,
                         n_heaps: int = 80, extra: bool = True, n_stats: int = 2,
                         shuffle: bool = False) -> List[bytes]:
    """Packets of heaps placed by the direct callback, always within the
    chunk's bounds (data ``per * heap_size``, present ``per`` flags per heap or
    ``per * heap_size // packet_payload`` per packet, extra ``8 * per``): chunk
    ids around a base that sometimes jumps, some packets lost or reordered
    within a heap, some heaps with extra data or counting a custom statistic
    (``n_stats`` of them, the second a maximum). With ``shuffle``, packets
    are also duplicated and reordered across neighbouring heaps."""
    out = []
    base = rng.randrange(0, 3)
    packets_per_heap = heap_size // packet_payload
    for cnt in range(1, n_heaps + 1):
        if rng.random() < 0.08:
            base += rng.randint(1, 9)
        chunk = max(0, base + rng.randint(-3, 2))
        index = rng.randrange(per)
        fields = dict(chunk=chunk, index=index * packets_per_heap,
                      offset=index * heap_size)
        if extra and rng.random() < 0.5:
            size = rng.randint(1, 8)
            fields.update(extra_offset=8 * index + rng.randint(0, 8 - size), extra_size=size,
                          fill=rng.randrange(256))
        if n_stats and rng.random() < 0.3:
            stat = rng.randrange(n_stats)
            fields.update(stat=stat, value=rng.randint(1, 1000))
            if stat == 1:
                fields.update(maximum=1)
        if rng.random() < 0.05:
            fields = dict(fields, chunk=None, negative=rng.randint(1, 5))
        payload = bytes(rng.randrange(256) for _ in range(heap_size))
        pkts = direct_heap(cnt, payload, packet_payload, **fields)
        if rng.random() < 0.1:
            del pkts[rng.randrange(len(pkts))]
        if shuffle and pkts and rng.random() < 0.3:
            # a duplicate, and the packets of this heap among the previous one's
            pkts.append(rng.choice(pkts))
            rng.shuffle(pkts)
            tail = out[-rng.randint(0, min(3, len(out))):] if out else []
            del out[len(out) - len(tail):]
            mixed = tail + pkts
            rng.shuffle(mixed)
            pkts = mixed
        out += pkts
    return out
