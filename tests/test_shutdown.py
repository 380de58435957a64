"""Shutdown and threads: stopping streams and thread pools in every state a
program can leave them in, collecting them, and exiting the interpreter
with them alive.

Every call that could block forever runs under a deadline
(:func:`refimpl.call_with_timeout` or a thread join with a timeout) whose
expiry fails the test; interpreter-exit cases run in a child interpreter
with a timeout.
"""

import asyncio
import gc
import random
import select
import socket
import threading
import time

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.recv.asyncio
import spead2.send
import spead2.send.asyncio
from conftest import datagrams_waiting, wait_for, wait_until_blocked, wait_until_suspended
from isolated import check_python
from packets import concat, packet
from ports import free_udp_port
from refimpl import call_with_timeout
from test_send_support import expected_packets

TIMEOUT = 10.0


def heap_bytes(n, size=64, start=1):
    return concat(packet(i, bytes([i % 256]) * size, 0, size, [(False, 0x1000, 0)])
                  for i in range(start, start + n))


def check_heap(heap, size=64):
    """A heap from :func:`heap_bytes`, intact."""
    (item,) = heap.get_items()
    assert item.id == 0x1000
    assert bytes(item) == bytes([heap.cnt % 256]) * size


class Consumer(threading.Thread):
    """Iterates over a stream in a daemon thread, recording heaps and how it ended."""

    def __init__(self, stream, check=True):
        super().__init__(daemon=True)
        self.stream = stream
        self.check = check
        self.heaps = []
        self.error = None
        self.start()

    def run(self):
        try:
            for heap in self.stream:
                if self.check:
                    check_heap(heap)
                self.heaps.append(heap.cnt)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def wait_until_blocked(self):
        """Whether the consumer is seen blocked in ``get`` (within TIMEOUT)."""
        return wait_until_blocked(self, Consumer.run, TIMEOUT)

    def finish(self, timeout=TIMEOUT):
        self.join(timeout)
        assert not self.is_alive(), f"consumer still blocked after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.heaps


class TestStoppingTheThreadPool:
    def test_blocked_consumers_end_when_the_pool_stops(self):
        # Nothing can serve a stream once its pool has stopped; consumers
        # blocked in get() used to wait forever.
        tp = spead2.ThreadPool()
        streams = [spead2.recv.Stream(tp) for _ in range(3)]
        streams[0].add_udp_reader(free_udp_port(), bind_hostname="127.0.0.1")
        streams[1].add_buffer_reader(heap_bytes(1000))  # paused on its full ring
        consumers = [Consumer(s) for s in streams[1:]]
        assert wait_for(lambda: streams[1].stats.worker_blocked > 0 or
                        len(consumers[0].heaps) == 1000)
        blocked = Consumer(streams[0])
        # the consumers of the UDP stream and of the stream without readers
        # must really be waiting in get() when the pool stops
        assert blocked.wait_until_blocked()
        assert consumers[1].wait_until_blocked()
        call_with_timeout(tp.stop, TIMEOUT, "ThreadPool.stop")
        assert blocked.finish() == []
        got = consumers[0].finish()
        assert got == list(range(1, len(got) + 1))
        assert consumers[1].finish() == []

    def test_get_nowait_after_the_pool_stopped_reports_stopped(self):
        tp = spead2.ThreadPool()
        s = spead2.recv.Stream(tp, ring_heaps=2)
        s.add_buffer_reader(heap_bytes(100))
        assert wait_for(lambda: s.stats.worker_blocked > 0)
        tp.stop()
        cnts = []
        with pytest.raises(spead2.Stopped):
            while True:
                cnts.append(s.get_nowait().cnt)
        assert cnts == list(range(1, len(cnts) + 1)) and len(cnts) >= 2


    def test_asyncio_waiters_end_when_the_pool_stops(self):
        # The asyncio stream waits on the stream's fd, which only the stream
        # can signal: stopping the pool must end the stream, not just the
        # workers.
        tp = spead2.ThreadPool()

        async def main():
            idle = spead2.recv.asyncio.Stream(tp)
            idle.add_udp_reader(free_udp_port(), bind_hostname="127.0.0.1")
            full = spead2.recv.asyncio.Stream(tp, ring_heaps=2)
            full.add_buffer_reader(heap_bytes(100))
            waiters = [asyncio.ensure_future(idle.get()) for _ in range(2)]
            assert await wait_until_suspended(waiters, timeout=TIMEOUT)
            assert wait_for(lambda: full.stats.worker_blocked > 0)
            tp.stop()
            done, pending = await asyncio.wait(waiters, timeout=TIMEOUT)
            assert not pending
            for fut in done:
                assert isinstance(fut.exception(), spead2.Stopped)
            # heaps already in the ring are still handed out, then Stopped
            cnts = []
            with pytest.raises(spead2.Stopped):
                while True:
                    cnts.append((await asyncio.wait_for(full.get(), TIMEOUT)).cnt)
            assert cnts == list(range(1, len(cnts) + 1)) and len(cnts) >= 2

        asyncio.run(main())

    def test_streams_made_after_the_pool_stopped_are_ended(self):
        tp = spead2.ThreadPool()
        tp.stop()
        s = spead2.recv.Stream(tp)
        # the end is ready at once, so the fd says so before anyone calls get
        readable, _, _ = select.select([s.fd], [], [], 0)
        assert readable == [s.fd]
        s.add_buffer_reader(heap_bytes(3))  # logged and ignored: nothing would read it
        with pytest.raises(spead2.Stopped):
            s.get_nowait()

        async def main():
            a = spead2.recv.asyncio.Stream(tp)
            with pytest.raises(spead2.Stopped):
                await asyncio.wait_for(a.get(), TIMEOUT)

        asyncio.run(main())

    def test_streams_dropped_while_the_pool_stops(self):
        # The pool ends each live stream when it stops; streams collected at
        # the same moment on other threads must neither be touched after
        # they are freed nor hold the stop up.
        for _ in range(20):
            tp = spead2.ThreadPool()
            streams = [spead2.recv.Stream(tp) for _ in range(8)]
            for s in streams:
                s.add_buffer_reader(heap_bytes(20))

            def drop(streams=streams):
                while streams:
                    streams.pop()

            dropper = threading.Thread(target=drop)
            dropper.start()
            call_with_timeout(tp.stop, TIMEOUT, "ThreadPool.stop")
            dropper.join(TIMEOUT)
            assert not dropper.is_alive()


class TestStopWhileBusy:
    def test_stop_from_another_thread_during_udp_backpressure(self, thread_pool):
        s = spead2.recv.Stream(thread_pool, ring_heaps=2)
        port = free_udp_port()
        s.add_udp_reader(port, bind_hostname="127.0.0.1")
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(1, 201):
            tx.sendto(packet(i, bytes([i % 256]) * 64, 0, 64, [(False, 0x1000, 0)]),
                      ("127.0.0.1", port))
        assert wait_for(lambda: s.stats.worker_blocked > 0)
        stopper = threading.Thread(target=s.stop, daemon=True)
        stopper.start()
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
        tx.sendto(packet(1000, b"x" * 64, 0, 64), ("127.0.0.1", port))
        got = Consumer(s).finish()
        assert 2 <= len(got) <= 3 and got == sorted(got)
        tx.close()

    def test_stop_racing_delivery_never_tears_a_heap(self, thread_pool):
        # stop() at random moments while a worker assembles heaps and a
        # consumer takes them: every heap handed out is whole, in order,
        # and the consumer always ends.
        rng = random.Random(7)
        data = heap_bytes(3000)
        lengths = []
        for _ in range(40):
            s = spead2.recv.Stream(thread_pool, max_heaps=rng.randint(1, 4),
                                   ring_heaps=rng.randint(1, 8))
            s.add_buffer_reader(data)
            consumer = Consumer(s)
            # The moment of stop() is what varies here, on purpose: a random
            # delay, not an ordering the test relies on.
            time.sleep(rng.random() * 0.003)
            call_with_timeout(s.stop, TIMEOUT, "Stream.stop")
            got = consumer.finish()
            assert got == list(range(1, len(got) + 1))
            lengths.append(len(got))
        # some stop() did land while heaps were still being delivered
        assert any(0 < n < 3000 for n in lengths), lengths

    def test_several_consumers_blocked_in_get_all_end(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader(free_udp_port(), bind_hostname="127.0.0.1")
        consumers = [Consumer(s) for _ in range(4)]
        for c in consumers:
            assert c.wait_until_blocked()
        call_with_timeout(s.stop, TIMEOUT, "Stream.stop")
        for c in consumers:
            assert c.finish() == []


class TestSharedThreadPool:
    def test_stopping_some_streams_leaves_the_others_served(self):
        tp = spead2.ThreadPool(1)
        streams = []
        for i in range(6):
            s = spead2.recv.Stream(tp, ring_heaps=1)
            s.add_buffer_reader(heap_bytes(300, start=1 + 1000 * i))
            if i % 2:
                s.add_udp_reader(free_udp_port(), bind_hostname="127.0.0.1")
            streams.append(s)
        # every stream is now paused on its full ring or waiting on its socket
        assert wait_for(lambda: all(s.stats.heaps >= 1 for s in streams))
        for s in streams[::3]:
            call_with_timeout(s.stop, TIMEOUT, "Stream.stop")
        results = {}
        for i, s in enumerate(streams):
            if s in streams[::3]:
                results[i] = call_with_timeout(lambda s=s: [h.cnt for h in s], TIMEOUT, "drain")
            else:
                # the UDP reader keeps these running: take the buffer's heaps, then stop
                got = []
                while len(got) < 300:
                    got.append(call_with_timeout(s.get, TIMEOUT, "get").cnt)
                call_with_timeout(s.stop, TIMEOUT, "Stream.stop")
                got += [h.cnt for h in s]
                results[i] = got
        for i, got in results.items():
            first = 1 + 1000 * i
            if i % 3 == 0:
                assert got == list(range(first, first + len(got))) and len(got) <= 3
            else:
                assert got == list(range(first, first + 300))
        tp.stop()

    def test_round_robin_consumption_of_many_streams_on_one_worker(self):
        tp = spead2.ThreadPool(1)
        streams = [spead2.recv.Stream(tp, ring_heaps=1) for _ in range(8)]
        for i, s in enumerate(streams):
            s.add_buffer_reader(heap_bytes(200, start=1 + 1000 * i))
        got = {i: [] for i in range(8)}
        live = set(range(8))
        deadline = time.monotonic() + 30
        while live:
            assert time.monotonic() < deadline, "streams on one worker stopped making progress"
            for i in list(live):
                try:
                    got[i].append(streams[i].get_nowait().cnt)
                except spead2.Empty:
                    time.sleep(0.0005)
                except spead2.Stopped:
                    live.discard(i)
        for i in range(8):
            assert got[i] == list(range(1 + 1000 * i, 201 + 1000 * i))
        tp.stop()


class StopsOnDelete:
    """An owner that stops its stream from ``__del__``."""

    def __init__(self, tp, port):
        self.me = self  # only the cyclic collector frees this object
        self.stream = spead2.recv.Stream(tp, ring_heaps=1)
        self.stream.add_buffer_reader(heap_bytes(100))
        self.stream.add_udp_reader(port, bind_hostname="127.0.0.1")

    def __del__(self):
        self.stream.stop()


class TestCollection:
    def test_stop_from_del_during_garbage_collection(self, thread_pool):
        port = free_udp_port()
        owner = StopsOnDelete(thread_pool, port)
        assert wait_for(lambda: owner.stream.stats.worker_blocked > 0)
        del owner
        call_with_timeout(gc.collect, TIMEOUT, "gc.collect")
        # the socket was closed: the port can be bound again
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", port))

    def test_collection_in_another_thread_while_a_udp_flood_arrives(self, thread_pool):
        port = free_udp_port()
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sending = threading.Event()
        sending.set()

        def flood():
            i = 0
            while sending.is_set():
                i += 1
                tx.sendto(packet(i, b"f" * 64, 0, 64), ("127.0.0.1", port))
                if i % 64 == 0:
                    time.sleep(0.0005)  # pacing (leaves the CPU to the rest), not ordering

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        try:
            for _ in range(10):
                owner = StopsOnDelete(thread_pool, port)
                assert wait_for(lambda: owner.stream.stats.packets > 0)
                del owner
                call_with_timeout(gc.collect, TIMEOUT, "gc.collect")
        finally:
            sending.clear()
            sender.join(TIMEOUT)
            tx.close()

    def test_asyncio_stream_stopped_with_waiters(self, thread_pool):
        async def main():
            s = spead2.recv.asyncio.Stream(thread_pool)
            s.add_udp_reader(free_udp_port(), bind_hostname="127.0.0.1")
            waiters = [asyncio.ensure_future(s.get()) for _ in range(3)]
            assert await wait_until_suspended(waiters, timeout=TIMEOUT)
            s.stop()
            done, pending = await asyncio.wait(waiters, timeout=TIMEOUT)
            assert not pending
            for fut in done:
                assert isinstance(fut.exception(), spead2.Stopped)

        asyncio.run(main())


def small_heap(size=4096):
    item = spead2.Item(0x1000, "data", "", (size,), dtype=np.uint8,
                       value=np.arange(size, dtype=np.uint8))
    heap = spead2.send.Heap()
    heap.add_item(item)
    return heap


class TestSendShutdown:
    def test_collecting_a_rate_limited_asyncio_stream_with_heaps_in_flight(self, thread_pool,
                                                                          receiver):
        port = receiver.getsockname()[1]
        heap = small_heap(100_000)
        total = 8 * len(expected_packets(heap, 1))  # 800 kB at 2 MB/s: 0.4 s on the wire

        async def main():
            config = spead2.send.StreamConfig(rate=2e6, max_heaps=8, burst_size=1000)
            stream = spead2.send.asyncio.UdpStream(thread_pool, "127.0.0.1", port, config)
            return [stream.async_send_heap(heap) for _ in range(8)]

        loop = asyncio.new_event_loop()
        try:
            futures = loop.run_until_complete(main())
            # the stream is unreachable now except through the loop's reader
            call_with_timeout(gc.collect, TIMEOUT, "gc.collect")
            # a datagram is queued on the receiver once it is sent, so fewer
            # than all of them means heaps were in flight during the collection
            early = len(datagrams_waiting(receiver))
            assert early < total
            results = loop.run_until_complete(
                asyncio.wait_for(asyncio.gather(*futures), TIMEOUT))
        finally:
            loop.close()
        assert results == [results[0]] * 8 and results[0] > 100_000
        assert early + len(datagrams_waiting(receiver)) == total
        del futures
        call_with_timeout(gc.collect, TIMEOUT, "gc.collect")

    def test_thread_pool_stopped_with_async_heaps_queued(self, receiver):
        port = receiver.getsockname()[1]
        tp = spead2.ThreadPool()
        heap = small_heap(50_000)

        async def main():
            # 16 heaps of 50 kB at 2 MB/s: 25 ms each, 0.4 s in all
            config = spead2.send.StreamConfig(rate=2e6, max_heaps=16)
            stream = spead2.send.asyncio.UdpStream(tp, "127.0.0.1", port, config)
            futures = [stream.async_send_heap(heap) for _ in range(16)]
            # the worker is sending the first heap once its first datagram is here
            readable, _, _ = select.select([receiver], [], [], TIMEOUT)
            assert readable, "nothing was sent"
            call_with_timeout(tp.stop, TIMEOUT, "ThreadPool.stop")
            results = await asyncio.wait_for(
                asyncio.gather(*futures, return_exceptions=True), TIMEOUT)
            call_with_timeout(stream.flush, TIMEOUT, "flush")
            return results

        results = asyncio.run(main())
        sent = [r for r in results if not isinstance(r, BaseException)]
        failed = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, IOError) for e in failed)
        assert len(sent) + len(failed) == 16 and sent and failed
        # the heap being sent when the pool stopped was finished; the queued
        # ones failed without sending anything
        assert results[:len(sent)] == sent
        assert len(datagrams_waiting(receiver)) == len(sent) * len(expected_packets(heap, 1))

    def test_dropping_udp_streams_mid_send_from_threads(self, thread_pool):
        port = free_udp_port()
        errors = []

        def sender():
            stream = spead2.send.UdpStream(
                thread_pool, "127.0.0.1", port, spead2.send.StreamConfig(rate=50e6))
            heap = small_heap(20_000)
            try:
                for _ in range(20):
                    stream.send_heap(heap)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=sender, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads) and not errors
        call_with_timeout(gc.collect, TIMEOUT, "gc.collect")


class TestInterpreterExit:
    def test_exit_with_live_streams_senders_and_blocked_threads(self):
        out = check_python("""
            import asyncio, socket, threading
            import numpy as np
            import spead2, spead2.recv, spead2.recv.asyncio, spead2.send, spead2.send.asyncio
            from conftest import wait_for, wait_until_blocked, wait_until_suspended
            from packets import packet

            def port():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as p:
                    p.bind(("127.0.0.1", 0))
                    return p.getsockname()[1]

            tp = spead2.ThreadPool(2)
            data = b"".join(packet(i, b"z" * 64, 0, 64, [(False, 0x1000, 0)])
                            for i in range(1, 500))
            rx = spead2.recv.Stream(tp, ring_heaps=1)
            rx.add_buffer_reader(data)
            rx_port = port()
            rx.add_udp_reader(rx_port, bind_hostname="127.0.0.1")
            blocked = spead2.recv.Stream(tp)
            blocked.add_udp_reader(port(), bind_hostname="127.0.0.1")
            def get_blocked():
                blocked.get()
            getter = threading.Thread(target=get_blocked, daemon=True)
            getter.start()

            item = spead2.Item(0x1000, "x", "", (100000,), dtype=np.uint8,
                               value=np.zeros(100000, np.uint8))
            heap = spead2.send.Heap()
            heap.add_item(item)
            slow = spead2.send.UdpStream(tp, "127.0.0.1", rx_port,
                                         spead2.send.StreamConfig(rate=5e6))
            sent = [0]
            def send_forever():
                while True:
                    slow.send_heap(heap)
                    sent[0] += 1
            threading.Thread(target=send_forever, daemon=True).start()
            bytes_stream = spead2.send.BytesStream(tp)
            bytes_stream.send_heap(heap)

            loop = asyncio.new_event_loop()
            async_tx = spead2.send.asyncio.UdpStream(
                tp, "127.0.0.1", rx_port, spead2.send.StreamConfig(rate=5e6, max_heaps=4),
                loop=loop)
            futures = [async_tx.async_send_heap(heap) for _ in range(4)]
            arx = spead2.recv.asyncio.Stream(tp)
            arx.add_udp_reader(port(), bind_hostname="127.0.0.1")
            async def start_waiter():
                waiter = asyncio.ensure_future(arx.get())
                return await wait_until_suspended([waiter])
            # exit only once every part is in the state this test is about
            print("asyncio waiter pending:", loop.run_until_complete(start_waiter()))
            print("thread blocked in get:", wait_until_blocked(getter, get_blocked))
            print("synchronous sender has sent a heap:", wait_for(lambda: sent[0] >= 1))
            print("asynchronous sends pending:", not all(f.done() for f in futures))
            print("exiting", flush=True)
        """, timeout=60)
        assert out.splitlines() == ["asyncio waiter pending: True",
                                    "thread blocked in get: True",
                                    "synchronous sender has sent a heap: True",
                                    "asynchronous sends pending: True",
                                    "exiting"]

    def test_exit_after_the_thread_pool_was_stopped_under_live_streams(self):
        out = check_python("""
            import select
            import spead2, spead2.recv, spead2.send
            from packets import packet
            tp = spead2.ThreadPool()
            s = spead2.recv.Stream(tp, ring_heaps=1)
            s.add_buffer_reader(b"".join(packet(i, b"q", 0, 1) for i in range(1, 50)))
            s.add_udp_reader(0, bind_hostname="127.0.0.1")
            tx = spead2.send.UdpStream(tp, "127.0.0.1", 9)
            # a heap is waiting in the ring before the pool stops
            readable, _, _ = select.select([s.fd], [], [], 10)
            assert readable, "no heap arrived within 10 s"
            tp.stop()
            print(len(list(s)), flush=True)
        """)
        assert int(out) >= 1
