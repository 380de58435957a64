"""spead2.send.asyncio.UdpStream: sending from the thread pool, completion on
the event loop."""

import asyncio
import sys
import threading
import time

import pytest

import spead2
import spead2.send
import spead2.send.asyncio
from conftest import datagrams_waiting
from test_send_support import addressed, data_heap, expected_packets, packet

TIMEOUT = 10.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def test_async_send_heap_resolves_to_bytes_sent(thread_pool, receiver):
    async def main():
        stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1",
                                               receiver.getsockname()[1])
        heap = data_heap(bytes(range(200)) * 20)
        future = stream.async_send_heap(heap)
        assert isinstance(future, asyncio.Future)
        nbytes = await future
        return heap, nbytes

    heap, nbytes = run(main())
    expected = list(spead2.send.PacketGenerator(heap, 1, 1472))
    assert nbytes == sum(map(len, expected))
    assert [receiver.recv(65536) for _ in expected] == expected


def test_heaps_sent_in_order(thread_pool, receiver):
    async def main():
        stream = spead2.send.asyncio.UdpStream(
            thread_pool, "127.0.0.1", receiver.getsockname()[1],
            spead2.send.StreamConfig(max_heaps=8))
        futures = [stream.async_send_heap(spead2.send.Heap()) for _ in range(8)]
        await asyncio.gather(*futures)

    run(main())
    assert [receiver.recv(65536) for _ in range(8)] == [
        packet(c, 1, 0, [addressed(0, 0)], b"\0") for c in range(1, 9)]


def test_more_than_max_heaps_in_flight_fails_that_future(thread_pool, receiver):
    async def main():
        config = spead2.send.StreamConfig(max_heaps=2, rate=2e6, burst_size=1000)
        stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1",
                                               receiver.getsockname()[1], config)
        heap = data_heap(bytes(20000))
        futures = [stream.async_send_heap(heap) for _ in range(3)]
        assert futures[2].done()
        with pytest.raises(IOError):
            futures[2].result()
        results = await asyncio.gather(*futures[:2])
        # Room again once they are done.
        results.append(await stream.async_send_heap(heap))
        return results

    results = run(main())
    assert len(results) == 3 and all(r > 20000 for r in results)


def test_async_flush_waits_for_everything(thread_pool, receiver):
    async def main():
        config = spead2.send.StreamConfig(rate=5e6, burst_size=1000)
        stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1",
                                               receiver.getsockname()[1], config)
        heap = data_heap(bytes(100000))
        futures = [stream.async_send_heap(heap) for _ in range(3)]
        start = time.monotonic()
        await stream.async_flush()
        elapsed = time.monotonic() - start
        assert all(f.done() for f in futures)
        # every datagram had been sent when the flush returned
        assert len(datagrams_waiting(receiver)) == 3 * len(expected_packets(heap, 1))
        await stream.async_flush()  # nothing pending: returns at once
        return elapsed

    elapsed = run(main())
    assert elapsed > 0.04


def test_flush_blocks_until_sent(thread_pool, receiver):
    async def main():
        config = spead2.send.StreamConfig(rate=5e6, burst_size=1000)
        stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1",
                                               receiver.getsockname()[1], config)
        heap = data_heap(bytes(50000))
        futures = [stream.async_send_heap(heap) for _ in range(2)]
        start = time.monotonic()
        stream.flush()
        elapsed = time.monotonic() - start
        # every datagram had been sent when the flush returned
        assert len(datagrams_waiting(receiver)) == 2 * len(expected_packets(heap, 1))
        await asyncio.gather(*futures)
        return elapsed

    elapsed = run(main())
    assert elapsed > 0.01


def test_socket_refusal_fails_the_future(thread_pool, receiver):
    async def main():
        config = spead2.send.StreamConfig(max_packet_size=70000)
        stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1",
                                               receiver.getsockname()[1], config)
        bad = stream.async_send_heap(data_heap(bytes(100000)))
        good = stream.async_send_heap(spead2.send.Heap())
        with pytest.raises(IOError):
            await bad
        return await good

    assert run(main()) > 0
    assert receiver.recv(65536) == packet(2, 1, 0, [addressed(0, 0)], b"\0")


def test_explicit_loop(thread_pool, receiver):
    loop = asyncio.new_event_loop()
    try:
        stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1",
                                               receiver.getsockname()[1], loop=loop)
        future = stream.async_send_heap(spead2.send.Heap())
        assert future.get_loop() is loop
        assert loop.run_until_complete(asyncio.wait_for(future, TIMEOUT)) > 0
    finally:
        loop.close()


def test_stopped_thread_pool_fails_the_future(receiver):
    pool = spead2.ThreadPool()

    async def main():
        stream = spead2.send.asyncio.UdpStream(pool, "127.0.0.1", receiver.getsockname()[1])
        pool.stop()
        with pytest.raises(IOError):
            await stream.async_send_heap(spead2.send.Heap())

    run(main())


def test_sending_does_not_need_the_gil(thread_pool, receiver):
    """A heap is sent and its completion queued while this thread holds the
    GIL without a break (a worker that needed the GIL would stall)."""
    loop = asyncio.new_event_loop()
    old_interval = sys.getswitchinterval()
    try:
        stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1",
                                               receiver.getsockname()[1], loop=loop)
        sys.setswitchinterval(10.0)
        try:
            stream.async_send_heap(data_heap(bytes(100000)))
            # spin, never letting the GIL go, until the completion is queued
            deadline = time.monotonic() + TIMEOUT
            done = []
            while not done and time.monotonic() < deadline:
                done = stream._pop_completions()
        finally:
            sys.setswitchinterval(old_interval)
        assert [(error, nbytes > 100000) for _, error, nbytes in done] == [(0, True)]
    finally:
        loop.close()


def test_sync_send_heap_still_works(thread_pool, receiver):
    stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1])
    stream.send_heap(spead2.send.Heap())
    assert receiver.recv(65536) == packet(1, 1, 0, [addressed(0, 0)], b"\0")


def test_stream_from_another_thread_loop(thread_pool, receiver):
    results = []

    def worker():
        results.append(run(send_one()))

    async def send_one():
        stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1",
                                               receiver.getsockname()[1])
        return await stream.async_send_heap(spead2.send.Heap())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=TIMEOUT)
    assert results and results[0] > 0
