"""The chunking receiver against its contract: the window rules, presence,
extra data, bounds checks, statistics, free and data rings, stopping, and
place callbacks in each form (numba, ctypes, ChunkPlacement).

Heaps are hand-built (tests/packets.py) and most carry their own placement
as immediates read by the "direct" numba callback of
ref_scripts/chunk_prog.py, the program the interoperability tests run on
both implementations."""

import ctypes
import gc
import logging
import os
import random
import socket
import threading
import weakref

import numpy as np
import pytest

import spead2
import spead2.recv
from spead2.recv import (Chunk, ChunkPlacement, ChunkRingbuffer, ChunkRingStream,
                         ChunkStreamConfig, StreamConfig)

pytest.importorskip("numba")
pytest.importorskip("scipy")

import packets as P  # noqa: E402
from chunk_support import (direct_config, direct_heap, drain, make_chunk,  # noqa: E402
                           next_chunk, run, snap, window_model)
from conftest import _kernel_waits_on_futex, wait_for  # noqa: E402

CUSTOM = spead2.recv.stream_stat_indices.CUSTOM


def heap(cnt, chunk, index=0, size=16, **fields):
    """A one-packet heap of ``size`` bytes ``cnt`` for ``chunk`` at ``index``
    (offset ``index * size``)."""
    fields.setdefault("offset", index * size)
    return direct_heap(cnt, bytes([cnt & 0xFF]) * size, chunk=chunk, index=index, **fields)


def heaps(*specs, size=16):
    """Packets of one-packet heaps ``(chunk, index)``, cnts from 1."""
    out = []
    for cnt, (chunk, index) in enumerate(specs, 1):
        out += heap(cnt, chunk, index, size)
    return out


def ids(result):
    return [c.chunk_id for c in result.chunks]


# ---------------------------------------------------------------------------
# The window


@pytest.mark.parametrize("first, max_chunks, expected", [
    (10, 4, [7, 8, 9, 10]),      # far ahead: the window restarts just below
    (1, 4, [0, 1]),              # near: back-filled from 0
    (0, 1, [0]),
    (3, 4, [0, 1, 2, 3]),        # exactly a window from the start
    (4, 4, [1, 2, 3, 4]),
])
def test_first_heap_brings_chunks(first, max_chunks, expected):
    result = run(heaps((first, 2)), direct_config(max_chunks), free=max_chunks)
    assert ids(result) == expected
    for c in result.chunks:
        assert c.present == (b"\0\0\1\0" if c.chunk_id == first else bytes(4))
        assert c.stream_id == 0
    assert result.chunks[-1].data == bytes(32) + bytes([1]) * 16 + bytes(16)


def test_back_fill_and_jumps():
    # max_chunks 3: 2 brings 0-2; 1 and 0 are back-filled; 4 flushes 0 and 1;
    # 3 is in the window; 9 is a jump of more than a window: 2-4 are flushed
    # in order and the window restarts at 7
    result = run(heaps((2, 0), (1, 1), (0, 2), (4, 3), (3, 0), (9, 1), (8, 2), (7, 3)),
                 direct_config(3), free=4)
    assert ids(result) == [0, 1, 2, 3, 4, 7, 8, 9]
    present = {c.chunk_id: c.present for c in result.chunks}
    assert present == {0: b"\0\0\1\0", 1: b"\0\1\0\0", 2: b"\1\0\0\0", 3: b"\1\0\0\0",
                       4: b"\0\0\0\1", 7: b"\0\0\0\1", 8: b"\0\0\1\0", 9: b"\0\1\0\0"}
    assert result.stats["too_old_heaps"] == 0
    assert result.stats["rejected_heaps"] == 0


def test_too_old_heaps():
    # window [4, 6) after heap 5; 2 and 3 are behind the head
    result = run(heaps((5, 0), (2, 0), (4, 1), (3, 3)), direct_config(2))
    assert ids(result) == [4, 5]
    assert result.stats["too_old_heaps"] == 2
    assert result.stats["rejected_heaps"] == 0
    assert result.chunks[0].present == b"\0\1\0\0"


def test_negative_or_missing_chunk_id_is_rejected():
    packets = (heap(1, None, 0) + heap(2, None, 1, negative=5) + heap(3, 0, 2)
               + heap(4, None, 3, negative=0))  # -0 is chunk 0
    result = run(packets, direct_config(2))
    assert ids(result) == [0]
    assert result.chunks[0].present == b"\0\0\1\1"
    assert result.stats["rejected_heaps"] == 2
    assert result.stats["too_old_heaps"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_window_matches_model(seed):
    """Random chunk ids, each heap writing its cnt at its own index: the
    chunks leave in the model's order, each holding exactly the heaps the
    model accepts."""
    rng = random.Random(seed)
    max_chunks = rng.randint(1, 4)
    per = 8
    specs = []
    base = 0
    for _ in range(60):
        if rng.random() < 0.1:
            base += rng.randint(0, 12)
        specs.append((max(0, base + rng.randint(-3, 4)), rng.randrange(per)))
    accepted, order = window_model([c for c, _ in specs], max_chunks)
    result = run(heaps(*specs, size=4), direct_config(max_chunks), data_bytes=4 * per,
                 present_bytes=per, free=len(order), recycle=False)
    assert ids(result) == order
    expected = {c: [bytearray(per), bytearray(4 * per)] for c in order}
    for cnt, ((chunk, index), ok) in enumerate(zip(specs, accepted), 1):
        if ok:
            expected[chunk][0][index] = 1
            expected[chunk][1][4 * index:4 * index + 4] = bytes([cnt]) * 4
    for c in result.chunks:
        assert (c.present, c.data) == tuple(map(bytes, expected[c.chunk_id])), c.chunk_id
    assert result.stats["too_old_heaps"] == accepted.count(False)
    assert result.stats["rejected_heaps"] == 0


def test_heap_whose_chunk_left_the_window_is_too_old():
    """The first packet of a heap lands in chunk 0; chunks 1 and 2 push
    chunk 0 out (max_chunks 2); the heap's second packet is then not
    written, and the heap completing counts as too old."""
    late = direct_heap(1, bytes([0xAA]) * 8 + bytes([0xBB]) * 8, 8, chunk=0, index=1, offset=16)
    packets = [late[0]] + heap(2, 1, 0) + heap(3, 2, 0) + [late[1]]
    result = run(packets, direct_config(2))
    assert ids(result) == [0, 1, 2]
    chunk0 = result.chunks[0]
    assert chunk0.present == bytes(4)
    assert chunk0.data[16:32] == bytes([0xAA]) * 8 + bytes(8)
    assert result.stats["too_old_heaps"] == 1


def test_empty_heaps_are_not_placed():
    """As in spead2, a heap is placed when its payload first needs memory:
    the callback never sees a heap of length 0 (no window move, no extra,
    no statistic, no present flag)."""
    config = StreamConfig()
    config.add_stat("calls")
    packets = (heap(1, 0, 0) + direct_heap(2, b"", chunk=5, index=1, offset=0, extra_offset=0,
                                           extra_size=4, fill=1, stat=0)
               + direct_heap(3, b"", chunk=None, index=2))
    result = run(packets, direct_config(2, max_heap_extra=8), config=config, extra_bytes=8)
    assert [(c.chunk_id, c.present, c.extra) for c in result.chunks] == [
        (0, b"\1\0\0\0", bytes(8))]
    assert result.stats["calls"] == result.stats["rejected_heaps"] == 0
    assert result.stats["heaps"] == 3


def test_stop_heap_is_placed_but_never_present():
    """As in spead2, the stop heap's packet reaches the place callback like
    any other (spead2's end-of-stream heap carries one byte of padding):
    here it moves the window, writes its payload and extra, and counts, but
    its present flag is never set; then every chunk is flushed."""
    config = StreamConfig()
    config.add_stat("calls")
    stop = P.packet(9, bytes([9]) * 16, 0, 16, [
        (True, 0x1000, 4), (True, 0x1001, 3), (True, 0x1002, 48), (True, 0x1003, 4),
        (True, 0x1004, 4), (True, 0x1005, 7), (True, 0x1006, 0), (True, spead2.STREAM_CTRL_ID,
                                                                  spead2.CTRL_STREAM_STOP)])
    packets = heap(1, 0, 0) + heap(2, 1, 2) + [stop] + heap(3, 4, 0)
    result = run(packets, direct_config(2, max_heap_extra=8), config=config, extra_bytes=8)
    assert [(c.chunk_id, c.present) for c in result.chunks] == [
        (0, b"\1\0\0\0"), (1, b"\0\0\1\0"), (3, bytes(4)), (4, bytes(4))]
    assert result.chunks[-1].data == bytes(48) + bytes([9]) * 16
    assert result.chunks[-1].extra == bytes(4) + bytes([7, 8, 9, 10])
    assert result.stats["calls"] == 1
    # the end-of-stream heap of a spead2 sender has no placement items: rejected
    end = P.packet(9, b"\0", 0, 1, [(True, spead2.STREAM_CTRL_ID, spead2.CTRL_STREAM_STOP)])
    result = run(heap(1, 0, 0) + [end], direct_config(2))
    assert result.stats["rejected_heaps"] == 1
    assert [c.chunk_id for c in result.chunks] == [0]


def test_flush_order_at_stop_heap():
    """Chunks left in the window at the stop heap leave in id order, and
    packets after the stop heap are not read."""
    packets = heaps((5, 0), (3, 1), (4, 2)) + [P.stop_packet()] + heap(9, 9, 0)
    result = run(packets, direct_config(3))
    assert ids(result) == [3, 4, 5]
    assert result.stats["packets"] == 4


# ---------------------------------------------------------------------------
# Presence and extra


def test_present_set_only_for_complete_heaps():
    full = direct_heap(1, bytes(range(32)), 8, chunk=0, index=0, offset=0)
    partial = direct_heap(2, bytes(range(100, 132)), 8, chunk=0, index=1, offset=32)
    result = run(full + partial[:3], direct_config(1))
    (chunk,) = result.chunks
    assert chunk.present == b"\1\0\0\0"
    # payload is written as packets arrive, complete or not
    assert chunk.data == bytes(range(32)) + bytes(range(100, 124)) + bytes(8)
    assert result.stats["incomplete_heaps_flushed"] == 1


def test_packet_presence():
    """One flag per packet at heap_index + payload_offset // payload_size,
    complete heap or not."""
    config = direct_config(2, packet_presence=8)
    assert config.packet_presence_payload_size == 8
    full = direct_heap(1, bytes(range(32)), 8, chunk=0, index=0, offset=0)
    partial = direct_heap(2, bytes(range(32)), 8, chunk=0, index=4, offset=32)
    short = direct_heap(3, bytes(20), 8, chunk=1, index=1, offset=0)  # 3 packets, last short
    result = run(full + [partial[0], partial[2]] + short, config, present_bytes=8,
                 data_bytes=64, config=StreamConfig(allow_out_of_order=True))
    assert ids(result) == [0, 1]
    assert result.chunks[0].present == b"\1\1\1\1\1\0\1\0"
    assert result.chunks[1].present == b"\0\1\1\1\0\0\0\0"


def test_extra_copied_even_if_heap_never_completes():
    config = direct_config(2, max_heap_extra=6)
    partial = direct_heap(1, bytes(32), 8, chunk=0, index=0, offset=0, extra_offset=2,
                          extra_size=6, fill=0x10)
    packets = partial[:1] + heap(2, 0, 1, extra_offset=10, extra_size=3, fill=0xF0)
    result = run(packets, config, extra_bytes=16)
    (chunk,) = result.chunks
    assert chunk.present == b"\0\1\0\0"
    assert chunk.extra == (bytes(2) + bytes(range(0x10, 0x16)) + bytes(2)
                           + bytes([0xF0, 0xF1, 0xF2]) + bytes(3))


# ---------------------------------------------------------------------------
# Bounds: whatever the callback says, nothing is written out of bounds


TOP_OFFSET, TOP_INDEX, TOP_EXTRA = 1, 2, 4

BOUNDS_CASES = {
    # name: (fields of a 16-byte heap, chunk data 64 / present 4 / extra 8)
    "offset past the end": dict(offset=64),
    "offset far past the end": dict(offset=2**39),
    "last byte past the end": dict(offset=49),
    "offset near 2**64": dict(offset=8, top=TOP_OFFSET),
    "index past present": dict(index=4, offset=0),
    "index near 2**64": dict(index=1, top=TOP_INDEX, offset=0),
    "extra larger than max_heap_extra": dict(offset=0, extra_size=9),
    "extra past the end": dict(offset=0, extra_offset=1, extra_size=8),
    "extra offset near 2**64": dict(offset=0, extra_offset=4, top=TOP_EXTRA, extra_size=8),
}


@pytest.mark.parametrize("case", sorted(BOUNDS_CASES))
def test_out_of_bounds_heap_dropped(case, caplog):
    fields = dict(BOUNDS_CASES[case])
    fields.setdefault("index", 1)
    packets = heap(1, 0, 0) + direct_heap(2, bytes([0xEE]) * 16, chunk=0, **fields) + \
        heap(3, 0, 3)
    with caplog.at_level(logging.WARNING, logger="spead2"):
        result = run(packets, direct_config(1, max_heap_extra=16), data_bytes=64,
                     present_bytes=4, extra_bytes=8)
    (chunk,) = result.chunks
    assert chunk.present == b"\1\0\0\1"
    assert chunk.data == bytes([1]) * 16 + bytes(32) + bytes([3]) * 16
    assert chunk.extra == bytes(8)
    assert result.stats["rejected_heaps"] == 1
    assert result.stats["too_old_heaps"] == 0
    assert any("heap 2 dropped" in r.getMessage() for r in caplog.records)


def test_bounds_exactly_fitting_heaps_accepted():
    config = direct_config(1, max_heap_extra=8)
    packets = direct_heap(1, bytes([1]) * 16, chunk=0, index=3, offset=48, extra_offset=0,
                          extra_size=8, fill=7)
    result = run(packets, config, extra_bytes=8)
    (chunk,) = result.chunks
    assert chunk.present == b"\0\0\0\1"
    assert chunk.data == bytes(48) + bytes([1]) * 16
    assert chunk.extra == bytes(range(7, 15))
    assert result.stats["rejected_heaps"] == 0


def _large_chunk_bytes():
    """Chunk data larger than this core's own cache (where payloads go
    with streaming stores): at least 8 MiB, and twice the level 2 cache."""
    try:
        l2 = os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (ValueError, OSError):
        l2 = 0
    return max(8 << 20, 2 * max(l2, 0))


@pytest.mark.parametrize("memcpy", [spead2.MEMCPY_STD, spead2.MEMCPY_NONTEMPORAL])
def test_large_chunks_get_exactly_the_payload(memcpy):
    """Heaps of many packets, of every alignment and size (including
    packets too short for streaming stores), interleaved, into chunks larger
    than the cache: every byte of each heap lands, and nothing around it
    changes."""
    rng = random.Random(7)
    data_bytes = _large_chunk_bytes()
    heaps_per_chunk = 24
    expected = [bytearray(data_bytes) for _ in range(2)]
    present = [bytearray(heaps_per_chunk) for _ in range(2)]
    pending = []
    cnt = 0
    for chunk_id in range(2):
        pos = rng.randrange(64)
        for index in range(heaps_per_chunk):
            size = rng.choice([rng.randint(2048, 70000), rng.randint(1, 300),
                               rng.randint(300, 2047)])
            pos += rng.randrange(0, 200)
            if pos + size > data_bytes:
                break
            payload = bytes(rng.getrandbits(8) for _ in range(size)) if size < 4096 \
                else rng.randbytes(size)
            per_packet = rng.choice([rng.randint(64, 9000), 8924, 8192, 1000, 150])
            cnt += 1
            pending.append(direct_heap(cnt, payload, per_packet, chunk=chunk_id, index=index,
                                       offset=pos))
            expected[chunk_id][pos:pos + size] = payload
            present[chunk_id][index] = 1
            pos += size
    packets = []
    while pending:   # three heaps at a time, their packets interleaved
        group, pending = pending[:3], pending[3:]
        while group:
            for h in list(group):
                packets.append(h.pop(0))
                if not h:
                    group.remove(h)
    result = run(packets, direct_config(2), config=StreamConfig(max_heaps=4, memcpy=memcpy),
                 data_bytes=data_bytes, present_bytes=heaps_per_chunk, free=2, data_ring=2,
                 recycle=False)
    assert [c.chunk_id for c in result.chunks] == [0, 1]
    for chunk, want, want_present in zip(result.chunks, expected, present):
        assert chunk.data == bytes(want)
        assert chunk.present == bytes(want_present)
    assert result.stats["rejected_heaps"] == 0


def test_extra_without_chunk_extra_is_dropped():
    result = run(heap(1, 0, 0, extra_offset=0, extra_size=4) + heap(2, 0, 1),
                 direct_config(1, max_heap_extra=8), extra_bytes=None)
    assert result.chunks[0].present == b"\0\1\0\0"
    assert result.stats["rejected_heaps"] == 1


def test_packet_presence_bounds():
    """In packet mode every packet of the heap needs a flag: a heap whose
    last packet's flag would be past the array is dropped whole."""
    config = direct_config(1, packet_presence=8)
    ok = direct_heap(1, bytes([1]) * 16, 8, chunk=0, index=2, offset=0)
    over = direct_heap(2, bytes([2]) * 24, 8, chunk=0, index=2, offset=16)
    result = run(ok + over, config, present_bytes=4)
    assert result.chunks[0].present == b"\0\0\1\1"
    assert result.chunks[0].data[16:] == bytes(48)
    assert result.stats["rejected_heaps"] == 1


# ---------------------------------------------------------------------------
# Statistics


def test_stat_indices_after_custom_stats():
    config = StreamConfig()
    mine = config.add_stat("mine")
    biggest = config.add_stat("biggest", spead2.recv.StreamStatConfig.Mode.MAXIMUM)
    assert (mine, biggest) == (CUSTOM, CUSTOM + 1)
    stream = ChunkRingStream(spead2.ThreadPool(), config, direct_config(),
                             ChunkRingbuffer(1), ChunkRingbuffer(1))
    names = [s.name for s in stream.config.stats]
    assert names[CUSTOM:] == ["mine", "biggest", "too_old_heaps", "rejected_heaps"]
    assert stream.config.get_stat_index("too_old_heaps") == CUSTOM + 2
    assert stream.config.get_stat_index("rejected_heaps") == CUSTOM + 3
    modes = {s.name: s.mode for s in stream.config.stats}
    assert modes["too_old_heaps"] == spead2.recv.StreamStatConfig.Mode.COUNTER
    assert modes["rejected_heaps"] == spead2.recv.StreamStatConfig.Mode.COUNTER
    # the caller's config is not changed
    assert [s.name for s in config.stats][CUSTOM:] == ["mine", "biggest"]
    stats = stream.stats
    assert stats["too_old_heaps"] == stats[CUSTOM + 2] == 0
    stream.stop()


def test_custom_stat_name_clash():
    config = StreamConfig()
    config.add_stat("too_old_heaps")
    with pytest.raises(ValueError):
        ChunkRingStream(spead2.ThreadPool(), config, direct_config(),
                        ChunkRingbuffer(1), ChunkRingbuffer(1))


def test_custom_stats_from_callback():
    """The callback increments batch_stats: a counter adds up, a maximum
    keeps the largest value, across batches too."""
    config = StreamConfig()
    config.add_stat("count")
    config.add_stat("biggest", spead2.recv.StreamStatConfig.Mode.MAXIMUM)
    packets = (heap(1, 0, 0, stat=0) + heap(2, 0, 1, stat=0, value=5)
               + heap(3, 0, 2, stat=1, value=7, maximum=1) + heap(4, 0, 3, stat=1, value=3,
                                                                   maximum=1)
               + heap(5, None, 0, stat=0, value=10))   # rejected, still counted
    result = run(packets, direct_config(1), config=config)
    assert result.stats["count"] == 16
    assert result.stats["biggest"] == 7
    assert result.stats["rejected_heaps"] == 1


def test_custom_stats_over_many_batches():
    config = StreamConfig()
    config.add_stat("count")
    config.add_stat("biggest", spead2.recv.StreamStatConfig.Mode.MAXIMUM)
    packets = []
    for i in range(300):
        packets += heap(i + 1, i // 4, i % 4, stat=0, value=2)
    packets += heap(301, 75, 0, stat=1, value=1000, maximum=1)
    for i in range(302, 400):
        packets += heap(i, 75 + (i - 301) // 4, (i - 301) % 4, stat=1, value=i, maximum=1)
    result = run(packets, direct_config(2), config=config)
    assert result.stats["batches"] > 1
    assert result.stats["count"] == 600
    assert result.stats["biggest"] == 1000


# ---------------------------------------------------------------------------
# Rings around a stream


def make_stream(max_chunks=2, free=0, data=4, thread_pool=None, config=None, chunk_config=None,
                data_ring=None, free_ring=None):
    data_ring = data_ring or ChunkRingbuffer(data)
    free_ring = free_ring or ChunkRingbuffer(max(free, 1))
    stream = ChunkRingStream(thread_pool or spead2.ThreadPool(), config or StreamConfig(),
                             chunk_config or direct_config(max_chunks), data_ring, free_ring)
    for _ in range(free):
        stream.add_free_chunk(make_chunk(64, 4))
    return stream, data_ring, free_ring


def test_empty_free_ring_makes_the_stream_wait():
    stream, data_ring, free_ring = make_stream(max_chunks=2, free=0, data=4)
    stream.add_buffer_reader(b"".join(heaps((0, 0), (1, 0), (2, 0))))
    a, b, c = (make_chunk(64, 4) for _ in range(3))
    # chunk 0 waits for a free chunk: nothing can come out
    assert free_ring.empty() and data_ring.empty()
    stream.add_free_chunk(a)
    assert wait_for(free_ring.empty, 10)
    # a became chunk 0; chunk 1 now waits, so chunk 0 cannot leave yet
    assert data_ring.empty() and not data_ring.full()
    assert a.chunk_id == 0
    stream.add_free_chunk(b)
    # b became chunk 1; chunk 2 pushes chunk 0 out, then waits for a chunk
    assert next_chunk(data_ring) is a
    assert wait_for(lambda: b.chunk_id == 1, 10)
    assert data_ring.empty()
    stream.add_free_chunk(c)
    assert next_chunk(data_ring) is b
    assert next_chunk(data_ring) is c
    with pytest.raises(spead2.Stopped):
        next_chunk(data_ring)
    assert [bytes(x.present) for x in (a, b, c)] == [b"\1\0\0\0"] * 3
    stream.stop()


def _threads_in_futex():
    """Native ids of this process's threads asleep in futex(2) (mutex and
    condition waits)."""
    out = set()
    for tid in os.listdir("/proc/self/task"):
        if _kernel_waits_on_futex(int(tid)):
            out.add(int(tid))
    return out


def _python_threads():
    return {t.native_id for t in threading.enumerate()}


def test_stats_while_the_stream_waits_for_a_free_chunk():
    """Reading stats must not wait for the worker, which holds the stream
    while it waits for a free chunk: a consumer that reads stats before
    giving a chunk back would hang. (spead2 keeps statistics under their
    own lock.)"""
    from refimpl import call_with_timeout
    stream, data_ring, free_ring = make_stream(max_chunks=1, free=0,
                                               free_ring=ChunkRingbuffer(4))
    before = _threads_in_futex() | _python_threads()
    stream.add_buffer_reader(b"".join(heaps((0, 0), (1, 0), (2, 0))))
    # a pool worker is now asleep on the free ring
    assert wait_for(lambda: bool(_threads_in_futex() - before))
    stats = call_with_timeout(lambda: stream.stats, 10, "stats while waiting for a chunk")
    assert stats["heaps"] == 0
    chunks = [make_chunk(64, 4) for _ in range(3)]
    stream.add_free_chunk(chunks[0])
    # chunk 0 leaves; the worker waits for a chunk for id 1
    assert next_chunk(data_ring) is chunks[0]
    call_with_timeout(lambda: stream.stats, 10, "stats while waiting for a chunk")
    stream.add_free_chunk(chunks[1])
    stream.add_free_chunk(chunks[2])
    assert [next_chunk(data_ring).chunk_id for _ in range(2)] == [1, 2]
    with pytest.raises(spead2.Stopped):
        next_chunk(data_ring)
    assert stream.stats["heaps"] == 3
    stream.stop()


def test_stats_while_the_stream_waits_on_a_full_data_ring():
    from refimpl import call_with_timeout
    stream, data_ring, free_ring = make_stream(max_chunks=1, free=4, data=1)
    stream.add_buffer_reader(b"".join(heaps(*[(i, 0) for i in range(4)])))
    assert wait_for(data_ring.full)
    # the worker waits to put chunk 1 (or 2) while the consumer reads stats
    for _ in range(4):
        call_with_timeout(lambda: stream.stats, 10, "stats while the data ring is full")
        stream.add_free_chunk(next_chunk(data_ring))
    with pytest.raises(spead2.Stopped):
        next_chunk(data_ring)
    stream.stop()


def test_stopped_free_ring_drops_heaps_silently():
    stream, data_ring, free_ring = make_stream(max_chunks=2, free=1, data=4)
    free_ring.stop()
    stream.add_free_chunk(make_chunk(64, 4))   # nothing: the ring is stopped
    assert free_ring.qsize() == 1
    stream.add_buffer_reader(b"".join(heaps((0, 0), (1, 1), (1, 2), (2, 3), (0, 1))))
    chunks = drain(data_ring)
    # chunk 0 got the one chunk left in the ring; 1 and 2 got none
    assert [(c.chunk_id, c.present) for c in chunks] == [(0, b"\1\0\0\0")]
    stats = stream.stats
    assert stats["heaps"] == 5
    assert stats["rejected_heaps"] == 0
    assert stats["too_old_heaps"] == 1    # the last heap: chunk 0 had left
    stream.stop()


def test_full_data_ring_blocks_the_flush():
    stream, data_ring, free_ring = make_stream(max_chunks=1, free=4, data=1)
    stream.add_buffer_reader(b"".join(heaps(*[(i, 0) for i in range(6)])))
    assert wait_for(data_ring.full, 10)
    got = []
    for _ in range(6):
        chunk = next_chunk(data_ring)
        got.append(chunk.chunk_id)
        stream.add_free_chunk(chunk)
    with pytest.raises(spead2.Stopped):
        next_chunk(data_ring)
    assert got == list(range(6))
    stream.stop()


def test_end_of_input_removes_a_producer_and_rings_are_shared():
    """Two streams with their own stream_id share the rings: the data ring
    stops only after the second stream ends; the free ring keeps running."""
    pool = spead2.ThreadPool()
    data_ring, free_ring = ChunkRingbuffer(8), ChunkRingbuffer(8)
    a = ChunkRingStream(pool, StreamConfig(stream_id=3), direct_config(1), data_ring, free_ring)
    b = ChunkRingStream(pool, StreamConfig(stream_id=7), direct_config(1), data_ring, free_ring)
    for _ in range(4):
        a.add_free_chunk(make_chunk(64, 4))
    a.add_buffer_reader(b"".join(heaps((0, 0), (1, 1))))
    first = [next_chunk(data_ring) for _ in range(2)]
    assert [(c.chunk_id, c.stream_id, bytes(c.present)) for c in first] == [
        (0, 3, b"\1\0\0\0"), (1, 3, b"\0\1\0\0")]
    for c in first:
        b.add_free_chunk(c)      # either stream's add_free_chunk feeds the shared ring
    b.add_buffer_reader(b"".join(heaps((5, 2))))
    last = next_chunk(data_ring)
    assert (last.chunk_id, last.stream_id, bytes(last.present)) == (5, 7, b"\0\0\1\0")
    with pytest.raises(spead2.Stopped):
        next_chunk(data_ring)
    # the free ring was never stopped: this call stops it
    assert free_ring.qsize() == 3
    assert free_ring.stop() is True
    a.stop()
    b.stop()


def test_stop_releases_chunks_and_keeps_the_data_ring_readable(thread_pool):
    """stop() stops both rings, then flushes: chunks in the window cannot
    enter the stopped data ring and go back to Python; chunks already in
    the data ring stay retrievable."""

    class Tracked(Chunk):
        pass

    stream, data_ring, free_ring = make_stream(max_chunks=2, free=0, data=4,
                                               thread_pool=thread_pool,
                                               free_ring=ChunkRingbuffer(4))
    chunks = [make_chunk(64, 4, cls=Tracked) for _ in range(4)]
    refs = [weakref.ref(c) for c in chunks]
    for i in range(4):
        stream.add_free_chunk(chunks[i])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    stream.add_udp_reader(port, bind_hostname="127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for p in heaps((0, 0), (1, 1), (2, 2)):
            tx.sendto(p, ("127.0.0.1", port))
    assert wait_for(lambda: stream.stats["heaps"] == 3)
    assert data_ring.qsize() == 1
    del chunks
    stream.stop()
    assert data_ring.stop() is False and free_ring.stop() is False   # both already stopped
    out = data_ring.get_nowait()
    assert (out.chunk_id, bytes(out.present)) == (0, b"\1\0\0\0")
    assert type(out) is Tracked
    with pytest.raises(spead2.Stopped):
        data_ring.get_nowait()
    leftover = free_ring.get_nowait()   # the one chunk the stream never took
    assert leftover.chunk_id == -1
    del out, leftover
    gc.collect()
    assert [r() for r in refs] == [None] * 4


def test_stop_while_waiting_for_a_free_chunk():
    stream, data_ring, free_ring = make_stream(max_chunks=2, free=0)
    stream.add_buffer_reader(b"".join(heaps((0, 0), (1, 0))))
    assert data_ring.empty()
    stream.stop()      # wakes the worker waiting on the free ring
    with pytest.raises(spead2.Stopped):
        next_chunk(data_ring)
    with pytest.raises(spead2.Stopped):
        free_ring.get_nowait()


def test_free_ring_stopped_while_the_stream_waits():
    """The stream waits for chunk 0; stopping the free ring lets it go on
    with no chunks: every heap is dropped, silently, and the data ring
    stops at the end of the input."""
    stream, data_ring, free_ring = make_stream(max_chunks=2, free=0)
    stream.add_buffer_reader(b"".join(heaps((0, 0), (1, 1), (2, 2), (0, 3))))
    assert data_ring.empty()
    assert free_ring.stop() is True
    with pytest.raises(spead2.Stopped):
        next_chunk(data_ring)
    stats = stream.stats
    assert stats["heaps"] == 4
    assert (stats["rejected_heaps"], stats["too_old_heaps"]) == (0, 1)
    stream.stop()


@pytest.mark.parametrize("waits_for", ["a free chunk", "room in the data ring"])
def test_thread_pool_stopped_while_the_stream_waits(waits_for):
    """Stopping the pool ends a stream whose worker waits on a ring: the
    stream is stopped (both rings) before the workers are joined."""
    from refimpl import call_with_timeout
    pool = spead2.ThreadPool()
    free = 0 if waits_for == "a free chunk" else 3
    stream, data_ring, free_ring = make_stream(max_chunks=1, free=free, data=1,
                                               thread_pool=pool)
    before = _threads_in_futex() | _python_threads()
    stream.add_buffer_reader(b"".join(heaps((0, 0), (1, 1), (2, 2))))
    assert wait_for(lambda: bool(_threads_in_futex() - before))
    call_with_timeout(pool.stop, 10, "ThreadPool.stop")
    assert len(drain(data_ring)) == (0 if free == 0 else 1)
    with pytest.raises(spead2.Stopped):
        free_ring.put_nowait(make_chunk(64, 4))
    stream.stop()


def test_constructor_adds_a_producer():
    data_ring, free_ring = ChunkRingbuffer(2), ChunkRingbuffer(2)
    stream = ChunkRingStream(spead2.ThreadPool(), StreamConfig(), direct_config(),
                             data_ring, free_ring)
    # the stream is a producer: removing it stops the ring, one more does not
    data_ring.add_producer()
    assert data_ring.remove_producer() is False
    assert data_ring.remove_producer() is True
    stream.stop()


def test_forced_options():
    """A chunk stream rejects heaps without HEAP_LENGTH, whatever the config."""
    packets = P.heap_packets(1, bytes(16), 16, items=[(True, DIRECT, 0)], with_length=False)
    pool = spead2.MemoryPool(16, 1024, 4, 4)
    config = StreamConfig(allow_unsized_heaps=True, memcpy=spead2.MEMCPY_NONTEMPORAL,
                          memory_allocator=pool)
    payload = bytes(range(256)) * 2
    big = direct_heap(2, payload, 64, chunk=0, index=1, offset=64)   # copied by the chosen memcpy
    result = run(packets + big, direct_config(1), config=config, data_bytes=1024)
    assert result.chunks[0].present == b"\0\1\0\0"
    assert result.chunks[0].data[64:576] == payload
    assert result.stats["heaps"] == 1


DIRECT = 0x1000


# ---------------------------------------------------------------------------
# Place callbacks in each form


def test_ctypes_callback_with_user_data():
    """A ctypes function as the 3-argument form: the capsule's context is
    the third argument."""
    seen = []

    class PlaceData(ctypes.Structure):
        _fields_ = [("packet", ctypes.c_void_p), ("packet_size", ctypes.c_size_t),
                    ("items", ctypes.POINTER(ctypes.c_int64)), ("chunk_id", ctypes.c_int64),
                    ("heap_index", ctypes.c_size_t), ("heap_offset", ctypes.c_size_t),
                    ("batch_stats", ctypes.POINTER(ctypes.c_uint64)),
                    ("extra", ctypes.c_void_p), ("extra_offset", ctypes.c_size_t),
                    ("extra_size", ctypes.c_size_t)]

    assert ctypes.sizeof(PlaceData) == 80
    PROTO = ctypes.CFUNCTYPE(None, ctypes.POINTER(PlaceData), ctypes.c_size_t, ctypes.c_void_p)

    @PROTO
    def place(data, size, user):
        d = data.contents
        step = ctypes.cast(user, ctypes.POINTER(ctypes.c_int64))[0]
        packet = ctypes.string_at(d.packet, d.packet_size)
        seen.append((size, packet, d.items[0], d.items[1]))
        ts = d.items[0]
        d.chunk_id = ts // step
        d.heap_index = ts % step
        d.heap_offset = (ts % step) * 8
        d.batch_stats[CUSTOM] += 1

    step = ctypes.c_int64(4)
    capsule_new = ctypes.pythonapi.PyCapsule_New
    capsule_new.restype = ctypes.py_object
    capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    capsule = capsule_new(ctypes.cast(place, ctypes.c_void_p), b"void (void *, size_t, void *)",
                          None)
    set_context = ctypes.pythonapi.PyCapsule_SetContext
    set_context.argtypes = [ctypes.py_object, ctypes.c_void_p]
    set_context(capsule, ctypes.addressof(step))
    chunk_config = ChunkStreamConfig(items=[0x1600, spead2.HEAP_LENGTH_ID], max_chunks=2,
                                     place=(capsule, place, step))
    config = StreamConfig()
    config.add_stat("calls")
    packets = []
    for ts in (0, 5, 3, 6):
        packets += P.heap_packets(ts + 1, bytes([ts]) * 8, 8, items=[(True, 0x1600, ts)])
    result = run(packets, chunk_config, data_bytes=32, config=config)
    assert [(c.chunk_id, c.present) for c in result.chunks] == [
        (0, b"\1\0\0\1"), (1, b"\0\1\1\0")]
    assert result.chunks[1].data == bytes(8) + bytes([5]) * 8 + bytes([6]) * 8 + bytes(8)
    assert result.stats["calls"] == 4
    assert [s[0] for s in seen] == [80] * 4
    # the packet as received, header to end of payload, and the items asked for
    assert seen[1][1] == packets[1]
    assert [s[2:] for s in seen] == [(0, 8), (5, 8), (3, 8), (6, 8)]


def test_items_include_header_items():
    """Header item ids may be asked for: HEAP_CNT, HEAP_LENGTH, PAYLOAD_OFFSET."""
    calls = []

    class PlaceData(ctypes.Structure):
        _fields_ = [("packet", ctypes.c_void_p), ("packet_size", ctypes.c_size_t),
                    ("items", ctypes.POINTER(ctypes.c_int64)), ("chunk_id", ctypes.c_int64)]

    @ctypes.CFUNCTYPE(None, ctypes.POINTER(PlaceData), ctypes.c_size_t)
    def place(data, size):
        calls.append(tuple(data.contents.items[i] for i in range(5)))
        data.contents.chunk_id = 0

    capsule_new = ctypes.pythonapi.PyCapsule_New
    capsule_new.restype = ctypes.py_object
    capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    capsule = capsule_new(ctypes.cast(place, ctypes.c_void_p), b"void (void *, size_t)", None)
    config = ChunkStreamConfig(items=[spead2.HEAP_CNT_ID, spead2.HEAP_LENGTH_ID,
                                      spead2.PAYLOAD_OFFSET_ID, 0x1234, 0x4321],
                               place=(capsule, place))
    packets = P.heap_packets(7, bytes(12), 4, items=[(True, 0x1234, 99), (False, 0x4321, 0)])
    result = run(packets[1:] + packets[:1], config, data_bytes=16,
                 config=StreamConfig(allow_out_of_order=True))
    # the callback sees the heap's first packet to arrive; an addressed item is absent
    assert calls == [(7, 12, 4, -1, -1)]
    assert result.chunks[0].present == b"\1\0\0\0"


def timestamp_packets(heap_size, n, rng, channels=4):
    """Heaps with a timestamp (0x1600) and a channel (0x4103): some of the
    wrong size, some with the channel out of range or missing."""
    out = []
    for cnt in range(1, n + 1):
        ts = rng.randrange(0, 40) * heap_size + rng.choice([0, 0, rng.randrange(heap_size)])
        chan = rng.randrange(0, channels + 1)
        size = heap_size if rng.random() > 0.05 else heap_size // 2
        items = [(True, 0x1600, ts)]
        if rng.random() > 0.05:
            items.append((True, 0x4103, chan * 16))
        payload = bytes((cnt + k) % 251 for k in range(size))
        out += P.heap_packets(cnt, payload, 64, items=items)
    return out


@pytest.mark.parametrize("heap_size, times, width", [(128, 4, 16), (96, 3, 12)])
def test_chunk_placement_matches_numba_callback(heap_size, times, width):
    """The same rule as a ChunkPlacement and as a numba callback: the same
    chunks, present, data, extra and statistics; steps and divisors powers
    of two or not."""
    import numba
    from numba import types

    from spead2.numba import intp_to_voidptr
    from spead2.recv.numba import chunk_place_data
    import scipy

    channels = 4

    @numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp), nopython=True)
    def place(data_ptr, data_size):
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 3, dtype=np.int64)
        ts, chan, length = items[0], items[1], items[2]
        if ts < 0 or chan < 0 or length != heap_size:
            return
        t = (ts % (times * heap_size)) // heap_size
        c = chan // width
        if c >= channels:
            return
        index = t * channels + c
        data[0].chunk_id = ts // (times * heap_size)
        data[0].heap_index = index
        data[0].heap_offset = index * heap_size
        extra = numba.carray(intp_to_voidptr(data[0].extra), 1, dtype=np.uint64)
        extra[0] = ts
        data[0].extra_offset = index * 8
        data[0].extra_size = 8

    placement = ChunkPlacement(chunk_item=0x1600, chunk_step=times * heap_size,
                               axes=[("chunk", times, heap_size), (0x4103, channels, width)],
                               heap_size=heap_size, extra=True)
    assert placement.items == [0x1600, 0x4103, spead2.HEAP_LENGTH_ID]
    assert placement.heaps_per_chunk == times * channels
    packets = timestamp_packets(heap_size, 300, random.Random(1), channels)
    sizes = dict(data_bytes=placement.chunk_bytes, present_bytes=placement.heaps_per_chunk,
                 extra_bytes=8 * placement.heaps_per_chunk)
    numba_config = ChunkStreamConfig(
        items=placement.items, max_chunks=3, max_heap_extra=8,
        place=scipy.LowLevelCallable(place.ctypes, signature="void (void *, size_t)"))
    rule_config = ChunkStreamConfig(max_chunks=3, place=placement)
    assert rule_config.place is placement
    by_numba = run(packets, numba_config, **sizes)
    by_rule = run(packets, rule_config, **sizes)
    assert len(by_numba.chunks) > 5
    assert by_rule.chunks == by_numba.chunks
    assert by_numba.stats["rejected_heaps"] > 0 and by_numba.stats["too_old_heaps"] > 0
    for key in ("heaps", "packets", "too_old_heaps", "rejected_heaps"):
        assert by_rule.stats[key] == by_numba.stats[key], key


def test_chunk_placement_in_packet_presence_mode():
    placement = ChunkPlacement(chunk_item=0x1600, chunk_step=4, axes=[("chunk", 4, 1)],
                               heap_size=32)
    config = ChunkStreamConfig(place=placement).enable_packet_presence(32)
    packets = []
    for ts in (0, 2, 3, 5):
        packets += P.heap_packets(ts + 1, bytes([ts]) * 32, 16, items=[(True, 0x1600, ts)])
    result = run(packets, config, data_bytes=placement.chunk_bytes, present_bytes=4)
    assert [(c.chunk_id, c.present) for c in result.chunks] == [
        (0, b"\1\0\1\1"), (1, b"\0\1\0\0")]


def test_chunk_placement_arguments():
    with pytest.raises(ValueError):
        ChunkPlacement(chunk_item=0x1600, chunk_step=0, heap_size=8)
    with pytest.raises(ValueError):
        ChunkPlacement(chunk_item=0x1600, chunk_step=1, heap_size=0)
    with pytest.raises(ValueError):
        ChunkPlacement(chunk_item=0x1600, chunk_step=1, heap_size=8, axes=[(0x1, 0)])
    with pytest.raises(ValueError):
        ChunkPlacement(chunk_item=0x1600, chunk_step=1, heap_size=8, axes=[(0x1,)])
    with pytest.raises(ValueError):
        ChunkPlacement(chunk_item=0x1600, chunk_step=1, heap_size=8, axes=[(1, 2)] * 9)
    with pytest.raises(ValueError):
        ChunkPlacement(chunk_item=0x1600, chunk_step=1, heap_size=2**40,
                       axes=[(1, 2**30)])
    with pytest.raises(TypeError):
        ChunkPlacement(chunk_item="x", chunk_step=1, heap_size=8)
    p = ChunkPlacement(chunk_item=0x1600, chunk_step=8, heap_size=8, axes=[(0x1600, 2)])
    assert p.items == [0x1600, spead2.HEAP_LENGTH_ID]
    assert "ChunkPlacement" in repr(p)


# ---------------------------------------------------------------------------
# asyncio rings around a stream


def test_stream_with_asyncio_rings():
    import asyncio

    import spead2.recv.asyncio

    async def main():
        data_ring = spead2.recv.asyncio.ChunkRingbuffer(1)
        free_ring = spead2.recv.asyncio.ChunkRingbuffer(2)
        stream = ChunkRingStream(spead2.ThreadPool(), StreamConfig(), direct_config(1),
                                 data_ring, free_ring)
        for _ in range(2):
            await free_ring.put(make_chunk(64, 4))
        stream.add_buffer_reader(b"".join(heaps(*[(i, i % 4) for i in range(8)])))
        got = []
        async for chunk in data_ring:
            got.append(snap(chunk))
            stream.add_free_chunk(chunk)
        stream.stop()
        return got

    got = asyncio.run(asyncio.wait_for(main(), 20))
    assert [(c.chunk_id, c.present) for c in got] == [
        (i, bytes(1 if k == i % 4 else 0 for k in range(4))) for i in range(8)]
