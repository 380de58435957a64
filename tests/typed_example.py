"""A program with type annotations throughout, in the styles of the 2016 API
and of spead2 4.x, checked by ``mypy --strict`` in tests/test_stubs.py.

It also runs (``python tests/typed_example.py``), over memory and in-process
queues only, so that what the type checker accepts is known to work.
"""

import asyncio
from typing import Dict, List

import numpy as np

import spead2
import spead2.recv
import spead2.recv.asyncio
import spead2.send
import spead2.send.asyncio

HEAP_SIZE = 64
HEAPS_PER_CHUNK = 4


def make_items(flavour: spead2.Flavour) -> spead2.send.ItemGroup:
    item_group = spead2.send.ItemGroup(flavour=flavour)
    item_group.add_item(0x1600, "timestamp", "a sample counter", shape=(), format=[("u", 48)])
    item_group.add_item(0x1601, "data", "some samples", shape=(HEAP_SIZE,), dtype=np.uint8)
    return item_group


def send_2016(thread_pool: spead2.ThreadPool) -> bytes:
    """Heaps in memory, sent with the 2016 positional StreamConfig."""
    config = spead2.send.StreamConfig(1472, 0.0, 65536, 4)
    stream = spead2.send.BytesStream(thread_pool, config)
    item_group = make_items(spead2.Flavour(4, 64, 48, 0))
    for i in range(3):
        item_group["timestamp"].value = i
        item_group["data"].value = np.full(HEAP_SIZE, i, np.uint8)
        sent: int = stream.send_heap(item_group.get_heap())
        assert sent > 0
    stream.send_heap(item_group.get_end())
    return stream.getvalue()


def receive_2016(thread_pool: spead2.ThreadPool, data: bytes) -> List[int]:
    stream = spead2.recv.Stream(thread_pool, spead2.BUG_COMPAT_PYSPEAD_0_5_2 & 0, 4, 8)
    stream.add_buffer_reader(data)
    item_group = spead2.ItemGroup()
    timestamps: List[int] = []
    for heap in stream:
        updated: Dict[str, spead2.Item] = item_group.update(heap)
        if "timestamp" in updated:
            timestamps.append(int(updated["timestamp"].value))
    return timestamps


def send_groups(thread_pool: spead2.ThreadPool) -> List[spead2.InprocQueue]:
    """Today's API: a heap per substream, sent as groups, round robin."""
    queues = [spead2.InprocQueue() for _ in range(2)]
    config = spead2.send.StreamConfig(max_packet_size=1024, rate=0.0, max_heaps=4)
    stream = spead2.send.InprocStream(thread_pool, queues, config)
    item_group = make_items(spead2.Flavour())
    heaps: List[spead2.send.HeapReference] = []
    for i in range(2):
        item_group["timestamp"].value = i
        item_group["data"].value = np.full(HEAP_SIZE, i, np.uint8)
        heap = item_group.get_heap(descriptors="all", data="all")
        heaps.append(spead2.send.HeapReference(heap, substream_index=i))
    stream.send_heaps(spead2.send.HeapReferenceList(heaps), spead2.send.GroupMode.ROUND_ROBIN)
    stream.send_heaps([spead2.send.HeapReference(item_group.get_end(), substream_index=i)
                       for i in range(2)], spead2.send.GroupMode.SERIAL)
    for queue in queues:
        queue.stop()
    return queues


def receive_4x(thread_pool: spead2.ThreadPool, queue: spead2.InprocQueue) -> int:
    config = spead2.recv.StreamConfig(max_heaps=4, allow_out_of_order=False)
    index: int = config.add_stat("my_counter")
    ring = spead2.recv.RingStreamConfig(heaps=8, contiguous_only=False)
    stream = spead2.recv.Stream(thread_pool, config, ring)
    stream.add_inproc_reader(queue)
    heaps = 0
    for heap in stream:
        if isinstance(heap, spead2.recv.IncompleteHeap):
            continue
        heaps += len(heap.get_items()) > 0
    stats: spead2.recv.StreamStats = stream.stats
    assert stats[index] == 0 and stats["heaps"] == stats.heaps
    return heaps


def receive_chunks(thread_pool: spead2.ThreadPool, data: bytes) -> List[int]:
    placement = spead2.recv.ChunkPlacement(
        chunk_item=0x1600, chunk_step=HEAPS_PER_CHUNK,
        axes=[("chunk", HEAPS_PER_CHUNK, 1)], heap_size=HEAP_SIZE)
    chunk_config = spead2.recv.ChunkStreamConfig(place=placement, max_chunks=2)
    data_ring = spead2.recv.ChunkRingbuffer(4)
    free_ring = spead2.recv.ChunkRingbuffer(4)
    stream = spead2.recv.ChunkRingStream(thread_pool, spead2.recv.StreamConfig(),
                                         chunk_config, data_ring, free_ring)
    for _ in range(4):
        stream.add_free_chunk(spead2.recv.Chunk(
            present=np.zeros(placement.heaps_per_chunk, np.uint8),
            data=np.zeros(placement.chunk_bytes, np.uint8)))
    stream.add_buffer_reader(data)
    counts: List[int] = []
    for chunk in data_ring:
        counts.append(int(np.count_nonzero(chunk.present)))
        stream.add_free_chunk(chunk)
    return counts


async def asyncio_round_trip(thread_pool: spead2.ThreadPool) -> int:
    queue = spead2.InprocQueue()
    sender = spead2.send.asyncio.InprocStream(thread_pool, [queue],
                                              spead2.send.StreamConfig(max_heaps=8))
    item_group = make_items(spead2.Flavour())
    futures: List["asyncio.Future[int]"] = []
    for i in range(3):
        item_group["timestamp"].value = i
        item_group["data"].value = np.zeros(HEAP_SIZE, np.uint8)
        futures.append(sender.async_send_heap(item_group.get_heap()))
    futures.append(sender.async_send_heap(item_group.get_end()))
    sent = sum(await asyncio.gather(*futures))
    await sender.async_flush()
    queue.stop()

    receiver = spead2.recv.asyncio.Stream(thread_pool, spead2.recv.StreamConfig())
    receiver.add_inproc_reader(queue)
    received = spead2.ItemGroup()
    async for heap in receiver:
        received.update(heap)
    assert received["timestamp"].value == 2
    return sent


def main() -> None:
    thread_pool = spead2.ThreadPool(1)
    data = send_2016(thread_pool)
    assert receive_2016(thread_pool, data) == [0, 1, 2]
    # heap 0 also carries the descriptors, so it is not HEAP_SIZE bytes: dropped
    assert receive_chunks(thread_pool, data) == [2]
    queues = send_groups(thread_pool)
    assert [receive_4x(thread_pool, queue) for queue in queues] == [1, 1]
    assert asyncio.run(asyncio_round_trip(thread_pool)) > 0


if __name__ == "__main__":
    main()
