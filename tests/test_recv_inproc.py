"""In-process transport: spead2.InprocQueue and Stream.add_inproc_reader."""

import time

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.send
from packets import heap_packets, packet
from refimpl import call_with_timeout


def drain(stream):
    return call_with_timeout(lambda: list(stream), 30, "draining")


class TestQueue:
    def test_add_and_stop(self):
        q = spead2.InprocQueue()
        q.add_packet(b"abc")
        q.add_packet(bytearray(b"de"))
        q.add_packet(np.arange(4, dtype=np.uint8))
        assert len(q) == 3
        q.stop()
        with pytest.raises(spead2.Stopped):
            q.add_packet(b"x")
        assert len(q) == 3

    def test_non_contiguous_buffers_are_refused(self):
        q = spead2.InprocQueue()
        with pytest.raises((ValueError, BufferError)):
            q.add_packet(np.arange(10, dtype=np.uint8)[::2])
        with pytest.raises(TypeError):
            q.add_packet(12)


class TestReader:
    def test_heaps_arrive_and_a_stopped_queue_ends_the_stream(self, thread_pool):
        q = spead2.InprocQueue()
        stream = spead2.recv.Stream(thread_pool)
        stream.add_inproc_reader(q)
        payload = bytes(range(200)) * 10
        for p in heap_packets(1, payload, 300, [(False, 0x1000, 0)]):
            q.add_packet(p)
        heap = call_with_timeout(stream.get, 30, "get")
        assert bytes(heap.get_items()[0]) == payload
        q.add_packet(packet(2, b"xy", 0, 2, [(False, 0x1000, 0)]))
        q.stop()
        heaps = drain(stream)
        assert [h.cnt for h in heaps] == [2]

    def test_packets_queued_before_the_reader_are_taken(self, thread_pool):
        q = spead2.InprocQueue()
        for cnt in range(1, 6):
            q.add_packet(packet(cnt, b"z", 0, 1, [(False, 0x1000, 0)]))
        q.stop()
        stream = spead2.recv.Stream(thread_pool)
        stream.add_inproc_reader(q)
        assert [h.cnt for h in drain(stream)] == [1, 2, 3, 4, 5]

    def test_bad_packets_are_counted(self, thread_pool):
        q = spead2.InprocQueue()
        q.add_packet(b"not a packet")
        q.add_packet(packet(1, b"z", 0, 1, [(False, 0x1000, 0)]))
        q.stop()
        stream = spead2.recv.Stream(thread_pool)
        stream.add_inproc_reader(q)
        assert [h.cnt for h in drain(stream)] == [1]
        assert stream.stats.bad_packets == 1

    def test_two_readers_share_a_queue(self):
        tp = spead2.ThreadPool(2)
        q = spead2.InprocQueue()
        a = spead2.recv.Stream(tp, ring_config=spead2.recv.RingStreamConfig(heaps=1000))
        b = spead2.recv.Stream(tp, ring_config=spead2.recv.RingStreamConfig(heaps=1000))
        a.add_inproc_reader(q)
        b.add_inproc_reader(q)
        for cnt in range(1, 501):
            q.add_packet(packet(cnt, b"z", 0, 1, [(False, 0x1000, 0)]))
        q.stop()
        got = sorted([h.cnt for h in drain(a)] + [h.cnt for h in drain(b)])
        assert got == list(range(1, 501))
        tp.stop()

    def test_a_full_ring_pauses_the_reader_without_losing_packets(self, thread_pool):
        q = spead2.InprocQueue()
        stream = spead2.recv.Stream(thread_pool, ring_config=spead2.recv.RingStreamConfig(heaps=2))
        stream.add_inproc_reader(q)
        for cnt in range(1, 101):
            q.add_packet(packet(cnt, b"z", 0, 1, [(False, 0x1000, 0)]))
        deadline = time.monotonic() + 10
        while stream.stats.worker_blocked == 0:
            assert time.monotonic() < deadline, "the reader never waited for the ring"
            time.sleep(0.001)
        q.stop()
        assert [h.cnt for h in drain(stream)] == list(range(1, 101))

    def test_our_sender_into_a_queue(self, thread_pool):
        # packets from the packetiser, handed over one by one
        q = spead2.InprocQueue()
        ig = spead2.send.ItemGroup()
        ig.add_item(0x1000, "v", "", (3000,), dtype=np.float32)
        ig["v"].value = np.linspace(0, 1, 3000, dtype=np.float32)
        for p in spead2.send.PacketGenerator(ig.get_heap(), 1, 1472):
            q.add_packet(p)
        q.stop()
        stream = spead2.recv.Stream(thread_pool)
        stream.add_inproc_reader(q)
        (heap,) = drain(stream)
        rig = spead2.ItemGroup()
        rig.update(heap)
        np.testing.assert_array_equal(rig["v"].value, ig["v"].value)

    def test_stop_closes_the_reader(self, thread_pool):
        q = spead2.InprocQueue()
        stream = spead2.recv.Stream(thread_pool)
        stream.add_inproc_reader(q)
        stream.stop()
        q.add_packet(packet(1, b"z", 0, 1, [(False, 0x1000, 0)]))
        with pytest.raises(spead2.Stopped):
            stream.get()
