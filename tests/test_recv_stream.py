"""Stream behaviour: blocking and non-blocking get, stop, backpressure, the
readiness fd, threads and asyncio."""

import asyncio
import gc
import select
import threading
import time

import pytest

import spead2
import spead2.recv
import spead2.recv.asyncio
from conftest import wait_for, wait_until_blocked, wait_until_suspended
from packets import concat, packet, stop_packet


def heap_bytes(n, size=16, start=1):
    return concat(packet(i, bytes([i % 256]) * size, 0, size, [(False, 0x1000, 0)])
                  for i in range(start, start + n))


class TestConstruction:
    def test_documented_defaults(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        assert (s.bug_compat, s.max_heaps, s.ring_heaps) == (0, 4, 4)

    def test_positional_arguments(self, thread_pool):
        s = spead2.recv.Stream(thread_pool, 7, 8, 16)
        assert (s.bug_compat, s.max_heaps, s.ring_heaps) == (7, 8, 16)

    @pytest.mark.parametrize("kwargs, exc", [
        ({"max_heaps": 0}, ValueError), ({"ring_heaps": 0}, ValueError),
        ({"max_heaps": -1}, OverflowError), ({"bug_compat": 8}, ValueError),
    ])
    def test_bad_arguments(self, thread_pool, kwargs, exc):
        with pytest.raises(exc):
            spead2.recv.Stream(thread_pool, **kwargs)

    def test_thread_pool_required(self):
        with pytest.raises(TypeError):
            spead2.recv.Stream(None)


class TestGet:
    def test_get_nowait_empty_then_heap_then_stopped(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with pytest.raises(spead2.Empty):
            s.get_nowait()
        s.add_buffer_reader(heap_bytes(1))
        assert wait_for(lambda: select.select([s.fd], [], [], 0)[0])
        assert s.get_nowait().cnt == 1
        with pytest.raises(spead2.Stopped):
            s.get_nowait()

    def test_queued_heaps_come_before_stopped(self, thread_pool):
        s = spead2.recv.Stream(thread_pool, ring_heaps=8)
        s.add_buffer_reader(heap_bytes(3))
        assert wait_for(lambda: s.stats.heaps == 3)
        s.stop()
        assert [s.get().cnt for _ in range(3)] == [1, 2, 3]
        with pytest.raises(spead2.Stopped):
            s.get()
        with pytest.raises(spead2.Stopped):
            s.get()

    def test_iteration_ends_at_stop(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        s.add_buffer_reader(heap_bytes(5) + stop_packet())
        assert [h.cnt for h in s] == [1, 2, 3, 4, 5]

    def test_stop_from_another_thread_wakes_blocked_get(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        result = []

        def consume():
            try:
                s.get()
            except spead2.Stopped:
                result.append("stopped")

        t = threading.Thread(target=consume)
        t.start()
        blocked = wait_until_blocked(t, consume)
        s.stop()
        t.join(5)
        assert blocked, "the getter never blocked in get()"
        assert not t.is_alive() and result == ["stopped"]

    def test_stop_is_idempotent_and_readers_after_stop_are_ignored(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        s.stop()
        s.stop()
        s.add_buffer_reader(heap_bytes(2))
        with pytest.raises(spead2.Stopped):
            s.get()


class TestBackpressure:
    def test_full_ring_pauses_reader_without_losing_heaps(self, thread_pool):
        s = spead2.recv.Stream(thread_pool, ring_heaps=2)
        s.add_buffer_reader(heap_bytes(200))
        assert wait_for(lambda: s.stats.worker_blocked > 0)
        paused = s.stats
        # What is under test is that nothing happens while the ring stays
        # full: no event marks "the reader would have gone on by now", so
        # the test gives it a fixed time to (wrongly) make progress.
        time.sleep(0.05)
        later = s.stats
        assert (later.packets, later.heaps) == (paused.packets, paused.heaps)
        assert later.heaps <= 3  # the ring holds its capacity and no more
        cnts = [h.cnt for h in s]
        assert cnts == list(range(1, 201))
        assert s.stats.worker_blocked >= 1

    def test_stop_during_backpressure(self, thread_pool):
        s = spead2.recv.Stream(thread_pool, ring_heaps=1)
        s.add_buffer_reader(heap_bytes(100))
        assert wait_for(lambda: s.stats.worker_blocked > 0)
        s.stop()
        got = list(s)
        assert 1 <= len(got) <= 3
        assert [h.cnt for h in got] == list(range(1, len(got) + 1))


class TestFd:
    def test_readable_exactly_when_heap_or_end_ready(self, thread_pool):
        s = spead2.recv.Stream(thread_pool, ring_heaps=4)

        def readable():
            return bool(select.select([s.fd], [], [], 0)[0])

        assert not readable()
        s.add_buffer_reader(heap_bytes(2) + stop_packet() + heap_bytes(1, start=10))
        assert wait_for(lambda: s.stats.heaps == 2)
        assert readable()
        s.get()
        assert readable()
        s.get()
        assert readable()  # the end is ready
        with pytest.raises(spead2.Stopped):
            s.get_nowait()
        assert readable()

    def test_not_readable_while_empty_and_running(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        s.add_buffer_reader(heap_bytes(1)[:-3])  # truncated: no heap, then end
        assert wait_for(lambda: select.select([s.fd], [], [], 0)[0])
        with pytest.raises(spead2.Stopped):
            s.get_nowait()


class TestThreads:
    def test_shared_pool_with_many_streams_does_not_deadlock(self):
        tp = spead2.ThreadPool(1)
        streams = [spead2.recv.Stream(tp, ring_heaps=1) for _ in range(6)]
        for i, s in enumerate(streams):
            s.add_buffer_reader(heap_bytes(50, start=1 + i * 100))
        results = {}

        def consume(i, s):
            results[i] = [h.cnt for h in s]

        threads = [threading.Thread(target=consume, args=(i, s)) for i, s in enumerate(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert all(not t.is_alive() for t in threads)
        for i in range(6):
            assert results[i] == list(range(1 + i * 100, 51 + i * 100))
        tp.stop()

    def test_streams_consumed_one_after_another_on_one_thread(self):
        tp = spead2.ThreadPool(1)
        a = spead2.recv.Stream(tp, ring_heaps=1)
        b = spead2.recv.Stream(tp, ring_heaps=1)
        a.add_buffer_reader(heap_bytes(30))
        b.add_buffer_reader(heap_bytes(30, start=100))
        assert len(list(b)) == 30  # a is paused on its full ring, not blocking the worker
        assert len(list(a)) == 30
        tp.stop()

    def test_dropping_a_running_stream_does_not_hang(self, thread_pool):
        for _ in range(20):
            s = spead2.recv.Stream(thread_pool, ring_heaps=1)
            s.add_buffer_reader(heap_bytes(50))
            del s
        gc.collect()
        s = spead2.recv.Stream(thread_pool)
        s.add_buffer_reader(heap_bytes(3))
        assert len(list(s)) == 3

    def test_stopping_the_thread_pool_first(self):
        tp = spead2.ThreadPool()
        s = spead2.recv.Stream(tp)
        tp.stop()
        s.add_buffer_reader(heap_bytes(3))
        s.stop()
        assert list(s) == []

    def test_multiple_worker_threads(self):
        tp = spead2.ThreadPool(2)
        streams = [spead2.recv.Stream(tp, ring_heaps=2) for _ in range(3)]
        for s in streams:
            s.add_buffer_reader(heap_bytes(100))
        for s in streams:
            assert [h.cnt for h in s] == list(range(1, 101))
        tp.stop()


class TestAsyncio:
    def test_waiters_served_in_order(self, thread_pool):
        async def main():
            s = spead2.recv.asyncio.Stream(thread_pool)
            waiters = [asyncio.ensure_future(s.get()) for _ in range(4)]
            assert await wait_until_suspended(waiters)
            s.add_buffer_reader(heap_bytes(3))
            out = []
            for w in waiters:
                try:
                    out.append((await asyncio.wait_for(w, 5)).cnt)
                except spead2.Stopped:
                    out.append(None)
            return out

        assert asyncio.run(main()) == [1, 2, 3, None]

    def test_async_for(self, thread_pool):
        async def main():
            s = spead2.recv.asyncio.Stream(thread_pool, ring_heaps=2)
            s.add_buffer_reader(heap_bytes(20))
            return [h.cnt async for h in s]

        assert asyncio.run(asyncio.wait_for(main(), 10)) == list(range(1, 21))

    def test_stop_wakes_waiters(self, thread_pool):
        async def main():
            s = spead2.recv.asyncio.Stream(thread_pool)
            w = asyncio.ensure_future(s.get())
            assert await wait_until_suspended([w])
            s.stop()
            with pytest.raises(spead2.Stopped):
                await asyncio.wait_for(w, 5)

        asyncio.run(main())

    def test_cancelled_waiter_is_skipped(self, thread_pool):
        async def main():
            s = spead2.recv.asyncio.Stream(thread_pool)
            first = asyncio.ensure_future(s.get())
            second = asyncio.ensure_future(s.get())
            assert await wait_until_suspended([first, second])
            first.cancel()
            s.add_buffer_reader(heap_bytes(1))
            return (await asyncio.wait_for(second, 5)).cnt

        assert asyncio.run(main()) == 1

    def test_explicit_loop_argument(self, thread_pool):
        async def main():
            loop = asyncio.get_running_loop()
            s = spead2.recv.asyncio.Stream(thread_pool, loop=loop)
            s.add_buffer_reader(heap_bytes(1))
            return (await s.get(loop=loop)).cnt

        assert asyncio.run(main()) == 1
