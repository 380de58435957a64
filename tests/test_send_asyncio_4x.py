"""spead2.send.asyncio with today's API: every stream class, groups,
ordering, errors on futures, cancellation, async_flush and
TcpStream.connect."""

import asyncio
import errno
import gc
import logging
import socket
import weakref

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.send
import spead2.send.asyncio
from test_send_groups import order
from test_send_support import data_heap, expected_packets
from test_send_tcp import Sink

TIMEOUT = 20.0
RR = spead2.send.GroupMode.ROUND_ROBIN
SERIAL = spead2.send.GroupMode.SERIAL


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def array_heap(size, seed=0):
    """A heap whose one item is a numpy array (which can be watched with a
    weak reference: the heap keeps it alive)."""
    value = np.full(size, seed, np.uint8)
    heap = spead2.send.Heap()
    heap.add_item(spead2.Item(0x1000, "x", "", (size,), dtype=np.uint8, value=value))
    return heap, weakref.ref(value)


def slow_config(**kw):
    # a first burst of 1000 bytes, then 10 kB/s: a 20 kB heap stays in flight ~2 s
    return spead2.send.StreamConfig(rate=1e4, burst_size=1000, **kw)


class TestOrderAndResults:
    def test_sends_go_out_in_call_order(self, thread_pool):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool,
                                                     spead2.send.StreamConfig(max_heaps=16))
            futures = []
            for i in range(12):
                if i % 3 == 0:
                    futures.append(stream.async_send_heaps(
                        [spead2.send.HeapReference(data_heap(bytes(3000)))] * 2, SERIAL))
                else:
                    futures.append(stream.async_send_heap(data_heap(bytes(100))))
            results = await asyncio.gather(*futures)
            return stream, results

        stream, results = run(main())
        cnts = [cnt for cnt, offset in order(stream.getvalue()) if offset == 0]
        assert cnts == list(range(1, 17))
        assert sum(results) == len(stream.getvalue())

    def test_async_calls_return_futures_not_coroutines(self, thread_pool):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool)
            future = stream.async_send_heap(spead2.send.Heap())
            assert isinstance(future, asyncio.Future)
            group = stream.async_send_heaps([spead2.send.HeapReference(spead2.send.Heap())],
                                            RR)
            assert isinstance(group, asyncio.Future)
            return await future, await group

        assert run(main()) == (49, 49)

    def test_group_future_is_the_total(self, thread_pool):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool,
                                                     spead2.send.StreamConfig(max_heaps=3))
            refs = [spead2.send.HeapReference(data_heap(bytes(n))) for n in (10, 5000, 20000)]
            total = await stream.async_send_heaps(spead2.send.HeapReferenceList(refs), RR)
            return stream, total

        stream, total = run(main())
        assert total == len(stream.getvalue())

    def test_loop_is_accepted(self, thread_pool):
        async def main():
            loop = asyncio.get_running_loop()
            stream = spead2.send.asyncio.BytesStream(thread_pool, loop=loop)
            return await stream.async_send_heap(spead2.send.Heap())

        assert run(main()) == 49

    def test_inproc(self, thread_pool):
        queue = spead2.InprocQueue()

        async def main():
            stream = spead2.send.asyncio.InprocStream(thread_pool, [queue])
            await stream.async_send_heap(data_heap(b"in process"))
            queue.stop()

        run(main())
        rx = spead2.recv.Stream(thread_pool)
        rx.add_inproc_reader(queue)
        assert [h.cnt for h in rx] == [1]

    def test_udp_today_form(self, thread_pool, receiver):
        async def main():
            stream = spead2.send.asyncio.UdpStream(
                thread_pool, [("127.0.0.1", receiver.getsockname()[1])],
                spead2.send.StreamConfig(), 65536)
            heap = data_heap(b"udp")
            await stream.async_send_heap(heap)
            return heap

        heap = run(main())
        assert receiver.recv(65536) == expected_packets(heap, 1)[0]


class TestErrors:
    def test_group_counts_as_its_heaps(self, thread_pool):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool, slow_config(max_heaps=4))
            group = stream.async_send_heaps(
                [spead2.send.HeapReference(data_heap(bytes(20000)))] * 3, SERIAL)
            fits = stream.async_send_heap(spead2.send.Heap())
            full = stream.async_send_heap(spead2.send.Heap())
            too_big = stream.async_send_heaps(
                [spead2.send.HeapReference(spead2.send.Heap())] * 5, SERIAL)
            assert full.done() and too_big.done() and not group.done()
            for f in (full, too_big):
                with pytest.raises(BlockingIOError):
                    f.result()
            group.cancel()
            fits.cancel()
            stream.flush()

        run(main())

    @pytest.mark.parametrize("call, err", [
        (lambda s: s.async_send_heap(spead2.send.Heap(), substream_index=1), errno.EINVAL),
        (lambda s: s.async_send_heap(spead2.send.Heap(), cnt=2**40), errno.EINVAL),
        (lambda s: s.async_send_heaps([], RR), errno.EINVAL),
    ])
    def test_queueing_errors_go_to_the_future(self, thread_pool, caplog, call, err):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool)
            future = call(stream)
            assert future.done()
            with pytest.raises(OSError) as info:
                await future
            assert info.value.errno == err
            return stream

        with caplog.at_level(logging.WARNING, logger="spead2"):
            stream = run(main())
        assert stream.getvalue() == b""
        assert any(r.levelno == logging.WARNING for r in caplog.records if r.name == "spead2")

    def test_transmission_error_goes_to_the_future(self, thread_pool, receiver):
        async def main():
            stream = spead2.send.asyncio.UdpStream(
                thread_pool, [("127.0.0.1", receiver.getsockname()[1])],
                spead2.send.StreamConfig(max_packet_size=70000))
            future = stream.async_send_heap(data_heap(bytes(69000)))
            with pytest.raises(OSError) as info:
                await future
            assert info.value.errno == errno.EMSGSIZE

        run(main())

    def test_broken_tcp_connection_goes_to_the_future(self, thread_pool):
        sink = Sink(read=False)

        async def main():
            stream = await spead2.send.asyncio.TcpStream.connect(
                thread_pool, [("127.0.0.1", sink.port)], spead2.send.StreamConfig(max_heaps=1))
            assert sink.accepted.wait(10)
            # closing with unread data resets the connection
            sink.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sink.conn.close()
            sink.release.set()
            heap = data_heap(bytes(1 << 20))
            with pytest.raises(OSError) as info:
                for _ in range(100):
                    await stream.async_send_heap(heap)
            assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)

        run(main())
        sink.finish()

    def test_stopped_queue_is_ecanceled(self, thread_pool):
        async def main():
            queue = spead2.InprocQueue()
            queue.stop()
            stream = spead2.send.asyncio.InprocStream(thread_pool, [queue])
            with pytest.raises(OSError) as info:
                await stream.async_send_heap(spead2.send.Heap())
            assert info.value.errno == errno.ECANCELED

        run(main())

    @pytest.mark.parametrize("group", [False, True])
    def test_value_errors_are_raised_by_the_call(self, thread_pool, group):
        async def main():
            stream = spead2.send.asyncio.BytesStream(
                thread_pool, spead2.send.StreamConfig(max_packet_size=40))
            with pytest.raises(ValueError, match="packet size is too small"):
                if group:
                    stream.async_send_heaps([spead2.send.HeapReference(spead2.send.Heap())], RR)
                else:
                    stream.async_send_heap(spead2.send.Heap())

        run(main())


class TestCancellationAndFlush:
    def test_cancelling_does_not_cancel_the_send(self, thread_pool, caplog):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool, slow_config())
            heap, watch = array_heap(5000)
            future = stream.async_send_heap(heap)
            del heap
            future.cancel()
            await stream.async_flush()
            return stream, watch

        with caplog.at_level(logging.DEBUG, logger="spead2"):
            stream, watch = run(main())
        assert [r for r in caplog.records if r.name == "spead2"] == []
        assert len(stream.getvalue()) > 5000
        gc.collect()
        assert watch() is None   # released once sent

    def test_heaps_released_when_they_complete(self, thread_pool):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool)
            heap, watch = array_heap(100000)
            future = stream.async_send_heaps([spead2.send.HeapReference(heap)], RR)
            del heap
            assert watch() is not None
            await future
            gc.collect()
            return watch

        assert run(main())() is None

    def test_async_flush_waits_for_the_last_send(self, thread_pool):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool, slow_config())
            first = stream.async_send_heap(data_heap(bytes(2000)))
            last = stream.async_send_heap(data_heap(bytes(2000)))
            assert await stream.async_flush() is None
            assert first.done() and last.done()

        run(main())

    def test_async_flush_never_raises(self, thread_pool, receiver):
        async def main():
            stream = spead2.send.asyncio.UdpStream(
                thread_pool, [("127.0.0.1", receiver.getsockname()[1])],
                spead2.send.StreamConfig(max_packet_size=70000))
            assert await stream.async_flush() is None   # nothing queued yet
            bad = stream.async_send_heap(data_heap(bytes(69000)))
            assert await stream.async_flush() is None
            assert isinstance(bad.exception(), OSError)
            refused = stream.async_send_heaps([], RR)   # not queued: flush has nothing new
            assert await stream.async_flush() is None
            assert isinstance(refused.exception(), OSError)

        run(main())

    def test_sync_flush_blocks_until_done(self, thread_pool):
        async def main():
            stream = spead2.send.asyncio.BytesStream(thread_pool)
            futures = [stream.async_send_heap(data_heap(bytes(10000))) for _ in range(4)]
            stream.flush()
            n = len(stream.getvalue())
            await asyncio.gather(*futures)
            return n, stream

        n, stream = run(main())
        assert n == len(stream.getvalue())


class TestTcpConnect:
    def test_connect_then_send(self, thread_pool):
        sink = Sink()

        async def main():
            stream = await spead2.send.asyncio.TcpStream.connect(
                thread_pool, [("127.0.0.1", sink.port)])
            assert isinstance(stream, spead2.send.asyncio.TcpStream)
            heap = data_heap(b"connected")
            await stream.async_send_heap(heap)
            return heap

        heap = run(main())
        assert sink.finish() == expected_packets(heap, 1)[0]

    def test_refused(self, thread_pool):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]

            async def main():
                await spead2.send.asyncio.TcpStream.connect(thread_pool, [("127.0.0.1", port)])

            with pytest.raises(ConnectionRefusedError):
                run(main())

    def test_socket_form(self, thread_pool):
        sink = Sink()

        async def main():
            with socket.create_connection(("127.0.0.1", sink.port)) as sock:
                stream = spead2.send.asyncio.TcpStream(thread_pool, sock,
                                                       spead2.send.StreamConfig())
            return await stream.async_send_heap(spead2.send.Heap())

        assert run(main()) == 49
        assert len(sink.finish()) == 49


def test_ibverbs_streams_fail_cleanly(thread_pool):
    config = spead2.send.UdpIbvConfig(endpoints=[("239.1.2.3", 8888)],
                                      interface_address="127.0.0.1")
    with pytest.raises(RuntimeError) as info:
        spead2.send.asyncio.UdpIbvStream(thread_pool, spead2.send.StreamConfig(), config)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENODEV
