"""The chunking receiver's Python API: Chunk, ChunkStreamConfig,
ChunkRingbuffer (blocking and asyncio) and ChunkRingStream's arguments.
No stream traffic here beyond what an argument check needs."""

import asyncio
import ctypes
import select
import threading

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.recv.asyncio
from spead2.recv import Chunk, ChunkRingbuffer, ChunkRingStream, ChunkStreamConfig, StreamConfig

from conftest import wait_for, wait_until_blocked, wait_until_suspended

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


def capsule(name=b"void (void *, size_t)"):
    return _capsule_new(1, name, None)


def ready_chunk(**kwargs):
    return Chunk(data=np.zeros(8, np.uint8), present=np.zeros(2, np.uint8), **kwargs)


# ---------------------------------------------------------------------------
# Chunk


class Sub(Chunk):
    def __init__(self, tag, **kwargs):
        super().__init__(**kwargs)
        self.tag = tag


def test_chunk_defaults():
    c = Chunk()
    assert (c.chunk_id, c.stream_id, c.present, c.data, c.extra) == (-1, 0, None, None, None)


def test_chunk_attributes():
    present, data, extra = np.zeros(4, np.uint8), bytearray(16), np.zeros((2, 3), np.float32)
    c = Chunk(chunk_id=5, stream_id=2**64 - 1, present=present, data=data, extra=extra)
    assert (c.chunk_id, c.stream_id) == (5, 2**64 - 1)
    assert c.present is present and c.data is data and c.extra is extra
    c.chunk_id = -2**63
    assert c.chunk_id == -2**63
    c.data = None
    assert c.data is None
    mv = memoryview(bytearray(3))
    c.present = mv
    assert c.present is mv


@pytest.mark.parametrize("name", ["present", "data", "extra"])
def test_chunk_buffer_errors(name):
    c = Chunk()
    with pytest.raises(BufferError):
        setattr(c, name, b"read-only")
    with pytest.raises((BufferError, ValueError)):   # numpy's ValueError, as in spead2
        setattr(c, name, np.zeros(8, np.uint8)[::2])   # not contiguous
    with pytest.raises(TypeError):
        setattr(c, name, 3)
    with pytest.raises(TypeError):
        Chunk(**{name: "text"})
    # a failed assignment leaves the old value
    keep = bytearray(2)
    setattr(c, name, keep)
    with pytest.raises(TypeError):
        setattr(c, name, object())
    assert getattr(c, name) is keep


def test_chunk_id_errors():
    c = Chunk()
    for bad in (1.5, None, "1"):
        with pytest.raises(TypeError):
            c.chunk_id = bad
    with pytest.raises((OverflowError, TypeError)):
        c.chunk_id = 2**63
    for bad in (-1, 2**64):
        with pytest.raises((OverflowError, TypeError)):
            c.stream_id = bad
    with pytest.raises(TypeError):
        Chunk(1)
    with pytest.raises(TypeError):
        Chunk(size=3)


def test_chunk_subclass_identity():
    ring = ChunkRingbuffer(2)
    c = Sub("mine", data=bytearray(4), present=bytearray(1), chunk_id=9)
    c.more = [1, 2]
    ring.put_nowait(c)
    del c
    out = ring.get_nowait()
    assert type(out) is Sub and out.tag == "mine" and out.more == [1, 2] and out.chunk_id == 9


# ---------------------------------------------------------------------------
# ChunkStreamConfig


def test_config_defaults():
    config = ChunkStreamConfig()
    assert config.items == []
    assert config.max_chunks == ChunkStreamConfig.DEFAULT_MAX_CHUNKS == 2
    assert config.place is None
    assert config.max_heap_extra == 0
    assert config.packet_presence_payload_size == 0


def test_config_items():
    config = ChunkStreamConfig(items=(0x1600, spead2.HEAP_CNT_ID))
    items = config.items
    assert items == [0x1600, spead2.HEAP_CNT_ID]
    items.append(7)
    assert config.items == [0x1600, spead2.HEAP_CNT_ID]
    for bad in ([-1], [2**64]):
        with pytest.raises((OverflowError, TypeError)):
            ChunkStreamConfig(items=bad)
    with pytest.raises(TypeError):
        ChunkStreamConfig(items=[1.0])


def test_config_numbers():
    with pytest.raises(ValueError):
        ChunkStreamConfig(max_chunks=0)
    with pytest.raises((OverflowError, TypeError)):
        ChunkStreamConfig(max_chunks=-1)
    with pytest.raises((OverflowError, TypeError)):
        ChunkStreamConfig(max_heap_extra=-1)
    config = ChunkStreamConfig(max_chunks=7, max_heap_extra=32)
    assert (config.max_chunks, config.max_heap_extra) == (7, 32)
    with pytest.raises(TypeError):
        ChunkStreamConfig(bogus=1)


def test_config_place():
    good = (capsule(), "user data is ignored but kept")
    assert ChunkStreamConfig(place=good).place is good
    three = (capsule(b"void (void *, size_t, void *)"),)
    assert ChunkStreamConfig(place=three).place is three
    config = ChunkStreamConfig(place=good)
    config.place = None
    assert config.place is None
    with pytest.raises(IndexError):
        ChunkStreamConfig(place=())
    for bad in (3, [capsule()], capsule(), (3,), ("capsule",)):
        with pytest.raises(TypeError):
            ChunkStreamConfig(place=bad)
    for name in (b"void (void *)", b"int (void *, size_t)", None):
        with pytest.raises(ValueError):
            ChunkStreamConfig(place=(capsule(name),))
    # a failed assignment leaves the old value
    config = ChunkStreamConfig(place=good)
    with pytest.raises(ValueError):
        config.place = (capsule(b"wrong"),)
    assert config.place is good


def test_config_place_low_level_callable():
    scipy = pytest.importorskip("scipy")
    # a LowLevelCallable from a capsule: a tuple subclass that forbids indexing
    llc = scipy.LowLevelCallable(capsule())
    assert isinstance(llc, tuple)
    assert ChunkStreamConfig(place=llc).place is llc


def test_config_packet_presence():
    config = ChunkStreamConfig()
    assert config.enable_packet_presence(64) is config
    assert config.packet_presence_payload_size == 64
    assert config.disable_packet_presence() is config
    assert config.packet_presence_payload_size == 0
    with pytest.raises(ValueError):
        config.enable_packet_presence(0)
    with pytest.raises((OverflowError, TypeError)):
        config.enable_packet_presence(-1)
    with pytest.raises(AttributeError):
        config.packet_presence_payload_size = 3


# ---------------------------------------------------------------------------
# ChunkRingStream arguments


def test_stream_arguments():
    pool = spead2.ThreadPool()
    data_ring, free_ring = ChunkRingbuffer(2), ChunkRingbuffer(2)
    place = (capsule(),)
    with pytest.raises(ValueError):
        ChunkRingStream(pool, StreamConfig(), ChunkStreamConfig(), data_ring, free_ring)
    with pytest.raises(TypeError):
        ChunkRingStream(pool, StreamConfig(), ChunkStreamConfig(place=place), None, free_ring)
    with pytest.raises(TypeError):
        ChunkRingStream(pool, StreamConfig(), ChunkStreamConfig(place=place), data_ring, None)
    stream = ChunkRingStream(thread_pool=pool, config=StreamConfig(),
                             chunk_stream_config=ChunkStreamConfig(place=place),
                             data_ringbuffer=data_ring, free_ringbuffer=free_ring)
    assert stream.data_ringbuffer is data_ring and stream.free_ringbuffer is free_ring
    assert not hasattr(stream, "get") and not hasattr(stream, "get_nowait")
    with pytest.raises(TypeError):
        iter(stream)
    with pytest.raises(ValueError):
        stream.add_free_chunk(Chunk(data=bytearray(4)))
    with pytest.raises(TypeError):
        stream.add_free_chunk(None)
    chunk = Chunk(data=bytearray(4), present=np.ones(3, np.uint8))
    stream.add_free_chunk(chunk)
    assert bytes(chunk.present) == bytes(3)      # zeroed
    stream.add_free_chunk(ready_chunk())
    with pytest.raises(spead2.Full):
        stream.add_free_chunk(ready_chunk())
    stream.stop()
    stream.add_free_chunk(ready_chunk())         # stopped: nothing happens
    assert free_ring.qsize() == 2
    with pytest.raises(spead2.Stopped):
        data_ring.get_nowait()


def test_stream_accepts_asyncio_rings():
    rings = spead2.recv.asyncio.ChunkRingbuffer(2), spead2.recv.asyncio.ChunkRingbuffer(2)
    stream = ChunkRingStream(spead2.ThreadPool(), StreamConfig(),
                             ChunkStreamConfig(place=(capsule(),)), *rings)
    assert stream.data_ringbuffer is rings[0]
    stream.stop()


# ---------------------------------------------------------------------------
# ChunkRingbuffer


def readable(fd):
    return bool(select.select([fd], [], [], 0)[0])


def test_ring_basics():
    for bad in (0,):
        with pytest.raises(ValueError):
            ChunkRingbuffer(bad)
    with pytest.raises((OverflowError, TypeError)):
        ChunkRingbuffer(-1)
    with pytest.raises(TypeError):
        ChunkRingbuffer(1.0)
    ring = ChunkRingbuffer(2)
    assert ring.maxsize == 2
    with pytest.raises(AttributeError):
        ring.maxsize = 3
    assert (ring.qsize(), ring.empty(), ring.full()) == (0, True, False)
    assert not readable(ring.data_fd) and readable(ring.space_fd)
    with pytest.raises(spead2.Empty):
        ring.get_nowait()
    a, b = ready_chunk(), ready_chunk()
    ring.put_nowait(a)
    assert readable(ring.data_fd) and readable(ring.space_fd)
    ring.put(b)
    assert (ring.qsize(), ring.empty(), ring.full()) == (2, False, True)
    assert not readable(ring.space_fd)
    c = ready_chunk(chunk_id=4)
    with pytest.raises(spead2.Full):
        ring.put_nowait(c)
    assert c.chunk_id == 4 and c.data is not None
    assert ring.get() is a
    assert readable(ring.space_fd)
    assert ring.get_nowait() is b
    assert not readable(ring.data_fd)


def test_ring_put_needs_data_and_present():
    ring = ChunkRingbuffer(2)
    with pytest.raises(ValueError):
        ring.put_nowait(Chunk(data=bytearray(1)))
    with pytest.raises(ValueError):
        ring.put(Chunk(present=bytearray(1)))
    with pytest.raises(TypeError):
        ring.put_nowait(None)
    with pytest.raises(TypeError):
        ring.put_nowait(bytearray(1))
    assert ring.empty()


def test_ring_stop():
    ring = ChunkRingbuffer(3)
    a = ready_chunk()
    ring.put(a)
    ring.put(ready_chunk())
    assert ring.stop() is True
    assert ring.stop() is False
    assert readable(ring.data_fd) and readable(ring.space_fd)
    with pytest.raises(spead2.Stopped):
        ring.put_nowait(ready_chunk())
    with pytest.raises(spead2.Stopped):
        ring.put(ready_chunk())
    assert ring.get_nowait() is a         # drained first
    assert len(list(ring)) == 1
    with pytest.raises(spead2.Stopped):
        ring.get_nowait()
    with pytest.raises(spead2.Stopped):
        ring.get()
    assert readable(ring.data_fd) and readable(ring.space_fd)


def test_ring_producers():
    ring = ChunkRingbuffer(1)
    assert ring.remove_producer() is False      # none to remove: nothing happens
    ring.put_nowait(ready_chunk())
    ring.add_producer()
    ring.add_producer()
    assert ring.remove_producer() is False
    assert ring.remove_producer() is True
    assert ring.remove_producer() is False
    assert ring.stop() is False
    ring.get_nowait()
    with pytest.raises(spead2.Stopped):
        ring.get_nowait()


def test_ring_blocking_get_woken_by_put_and_stop():
    ring = ChunkRingbuffer(1)
    got = []

    def consumer():
        for chunk in ring:
            got.append(chunk)

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    assert wait_until_blocked(thread, consumer)
    chunk = ready_chunk()
    ring.put(chunk)
    assert wait_for(lambda: got == [chunk])
    assert wait_until_blocked(thread, consumer)
    ring.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_ring_blocking_put_woken_by_get_and_stop():
    ring = ChunkRingbuffer(1)
    ring.put(ready_chunk())
    outcome = []

    def producer():
        try:
            ring.put(ready_chunk(chunk_id=1))
            outcome.append("put")
            ring.put(ready_chunk(chunk_id=2))
            outcome.append("put")
        except spead2.Stopped:
            outcome.append("stopped")

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    assert wait_until_blocked(thread, producer)
    assert ring.get().chunk_id == -1
    assert wait_for(lambda: outcome == ["put"])
    assert wait_until_blocked(thread, producer)
    ring.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome == ["put", "stopped"]
    assert ring.get_nowait().chunk_id == 1


# ---------------------------------------------------------------------------
# The asyncio ChunkRingbuffer


def run_async(coro, timeout=10.0):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def test_asyncio_ring_get_put_and_iteration():
    async def main():
        ring = spead2.recv.asyncio.ChunkRingbuffer(2)
        assert isinstance(ring, ChunkRingbuffer)
        a, b, c = ready_chunk(chunk_id=1), ready_chunk(chunk_id=2), ready_chunk(chunk_id=3)
        await ring.put(a)
        await ring.put(b)
        putter = asyncio.ensure_future(ring.put(c))
        assert await wait_until_suspended([putter], "put")
        assert await ring.get() is a
        await putter
        ring.stop()
        return [chunk async for chunk in ring]

    assert [c.chunk_id for c in run_async(main())] == [2, 3]


def test_asyncio_ring_fifo_waiters_and_cancellation():
    async def main():
        ring = spead2.recv.asyncio.ChunkRingbuffer(4)
        getters = [asyncio.ensure_future(ring.get()) for _ in range(3)]
        assert await wait_until_suspended(getters, "get")
        getters[1].cancel()
        chunks = [ready_chunk(chunk_id=i) for i in range(2)]
        for chunk in chunks:
            ring.put_nowait(chunk)      # from the loop's thread
        assert await getters[0] is chunks[0]
        assert await getters[2] is chunks[1]
        with pytest.raises(asyncio.CancelledError):
            await getters[1]
        return True

    assert run_async(main())


def test_asyncio_ring_put_from_another_thread():
    async def main():
        ring = spead2.recv.asyncio.ChunkRingbuffer(1)
        getter = asyncio.ensure_future(ring.get())
        assert await wait_until_suspended([getter], "get")
        chunk = ready_chunk(chunk_id=8)
        # the blocking put of the base class, as a stream's worker does
        thread = threading.Thread(target=ChunkRingbuffer.put, args=(ring, chunk))
        thread.start()
        got = await getter
        thread.join(10)
        return got is chunk

    assert run_async(main())


def test_asyncio_ring_stop_wakes_every_waiter():
    async def main():
        ring = spead2.recv.asyncio.ChunkRingbuffer(1)
        getters = [asyncio.ensure_future(ring.get()) for _ in range(2)]
        full = spead2.recv.asyncio.ChunkRingbuffer(1)
        await full.put(ready_chunk())
        putters = [asyncio.ensure_future(full.put(ready_chunk())) for _ in range(2)]
        assert await wait_until_suspended(getters, "get")
        assert await wait_until_suspended(putters, "put")
        assert ring.stop() is True
        full.stop()
        results = await asyncio.gather(*getters, *putters, return_exceptions=True)
        assert all(isinstance(r, spead2.Stopped) for r in results), results
        # the chunk put before the stop is still there
        assert (await full.get()).chunk_id == -1
        with pytest.raises(spead2.Stopped):
            await full.get()
        return True

    assert run_async(main())


def test_asyncio_ring_stopped_by_its_last_producer_from_a_thread():
    async def main():
        ring = spead2.recv.asyncio.ChunkRingbuffer(1)
        ring.add_producer()
        getter = asyncio.ensure_future(ring.get())
        assert await wait_until_suspended([getter], "get")
        thread = threading.Thread(target=ring.remove_producer)
        thread.start()
        thread.join(10)
        with pytest.raises(spead2.Stopped):
            await getter
        return True

    assert run_async(main())
