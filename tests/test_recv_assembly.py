"""Heap assembly rules, driven through the buffer reader with hand-built packets."""

import logging
import random

import numpy as np
import pytest

import spead2
import spead2.recv
from packets import concat, header, heap_packets, packet, pointer, start_packet, stop_packet


def receive(tp, data, **kwargs):
    # the 2016 form (chosen by its keywords), which takes packets in any order
    kwargs.setdefault("max_heaps", 4)
    stream = spead2.recv.Stream(tp, **kwargs)
    stream.add_buffer_reader(data)
    heaps = list(stream)
    return heaps, stream.stats


def items_of(heap):
    return {item.id: (item.is_immediate, bytes(item)) for item in heap.get_items()}


class TestSinglePacketHeaps:
    def test_items_extents_and_immediates(self, thread_pool):
        data = packet(7, b"0123456789", heap_length=10,
                      items=[(False, 0x1000, 0), (True, 0x1001, 0x1234), (False, 0x1002, 4)])
        (heap,), _ = receive(thread_pool, data)
        assert heap.cnt == 7
        got = items_of(heap)
        assert got[0x1000] == (False, b"0123")
        assert got[0x1002] == (False, b"456789")
        assert got[0x1001] == (True, b"\x00\x00\x00\x12\x34")

    def test_item_order_is_pointer_order(self, thread_pool):
        data = packet(1, b"abcd", heap_length=4,
                      items=[(False, 0x2000, 2), (True, 0x1000, 1), (False, 0x3000, 0)])
        (heap,), _ = receive(thread_pool, data)
        assert [i.id for i in heap.get_items()] == [0x2000, 0x1000, 0x3000]

    @pytest.mark.parametrize("order", ["clop", "pocl", "lpco", "opcl"])
    def test_header_immediates_in_any_order(self, thread_pool, order):
        data = packet(3, b"xyz", heap_length=3, items=[(False, 0x1000, 0)], order=order)
        (heap,), _ = receive(thread_pool, data)
        assert heap.cnt == 3 and items_of(heap)[0x1000] == (False, b"xyz")

    @pytest.mark.parametrize("hab", [8, 16, 24, 32, 40, 48, 56])
    def test_every_flavour(self, thread_pool, hab):
        item_id = (1 << (63 - hab)) - 1 if hab >= 48 else 0x1234
        imm = (1 << hab) - 1
        data = packet(5, b"pq", heap_length=2,
                      items=[(True, item_id, imm), (False, item_id - 1, 0)], hab=hab)
        (heap,), _ = receive(thread_pool, data)
        assert heap.flavour == spead2.Flavour(4, 64, hab, 0)
        got = items_of(heap)
        assert got[item_id] == (True, b"\xff" * (hab // 8))
        assert got[item_id - 1] == (False, b"pq")

    def test_header_items_are_not_exposed(self, thread_pool):
        (heap,), _ = receive(thread_pool, packet(1, b"ab", heap_length=2,
                                                 items=[(False, 0x1000, 0)]))
        assert all(i.id > 4 for i in heap.get_items())

    def test_start_of_stream(self, thread_pool):
        heaps, _ = receive(thread_pool, start_packet(1) + packet(2, b"a", heap_length=1))
        assert [h.is_start_of_stream() for h in heaps] == [True, False]

    def test_bug_compat_is_reported_in_flavour(self, thread_pool):
        (heap,), _ = receive(thread_pool, packet(1, b"a", heap_length=1), bug_compat=7)
        assert heap.flavour.bug_compat == 7


class TestMultiPacketHeaps:
    def payload(self, n):
        return bytes(random.Random(n).getrandbits(8) for _ in range(n))

    def test_in_order(self, thread_pool):
        payload = self.payload(10000)
        data = concat(heap_packets(1, payload, 1000, items=[(False, 0x1000, 0)]))
        (heap,), stats = receive(thread_pool, data)
        assert bytes(heap.get_items()[0]) == payload
        assert stats.packets == 10 and stats.heaps == 1

    def test_out_of_order(self, thread_pool):
        payload = self.payload(5000)
        pkts = heap_packets(1, payload, 700, items=[(False, 0x1000, 0)])
        random.Random(1).shuffle(pkts)
        (heap,), _ = receive(thread_pool, concat(pkts))
        assert bytes(heap.get_items()[0]) == payload

    def test_interleaved_heaps(self, thread_pool):
        a, b = self.payload(3000), self.payload(3001)
        pa = heap_packets(1, a, 1000, items=[(False, 0x1000, 0)])
        pb = heap_packets(2, b, 1000, items=[(False, 0x1000, 0)])
        data = concat(x for pair in zip(pa, pb) for x in pair) + pb[-1]
        heaps, _ = receive(thread_pool, data)
        assert [h.cnt for h in heaps] == [1, 2]
        assert bytes(heaps[0].get_items()[0]) == a
        assert bytes(heaps[1].get_items()[0]) == b

    def test_duplicate_packet_is_dropped(self, thread_pool):
        payload = self.payload(2000)
        pkts = heap_packets(1, payload, 500, items=[(False, 0x1000, 0)])
        corrupt_dup = pkts[1][:-500] + b"\xee" * 500
        data = concat([pkts[0], pkts[1], corrupt_dup, pkts[2], pkts[3]])
        (heap,), stats = receive(thread_pool, data)
        assert bytes(heap.get_items()[0]) == payload
        assert stats.duplicate_packets == 1

    def test_overlapping_packet_is_dropped(self, thread_pool):
        payload = self.payload(100)
        data = concat([packet(1, payload[:60], 0, 100, [(False, 0x1000, 0)]),
                       packet(1, b"\x00" * 20, 50, 100),
                       packet(1, payload[60:], 60, 100)])
        (heap,), stats = receive(thread_pool, data)
        assert bytes(heap.get_items()[0]) == payload
        # a partial overlap is not a retransmission: it is refused, not a duplicate
        assert stats.rejected_packets == 1
        assert stats.duplicate_packets == 0

    def test_pointers_from_several_packets(self, thread_pool):
        data = concat([packet(1, b"ab", 0, 4, [(False, 0x1000, 0)]),
                       packet(1, b"cd", 2, 4, [(False, 0x1001, 2)])])
        (heap,), _ = receive(thread_pool, data)
        assert items_of(heap) == {0x1000: (False, b"ab"), 0x1001: (False, b"cd")}

    def test_heap_without_length_delivered_at_end_when_contiguous(self, thread_pool):
        data = concat(heap_packets(4, b"abcdefgh", 3, items=[(False, 0x1000, 0)],
                                   with_length=False))
        (heap,), stats = receive(thread_pool, data)
        assert bytes(heap.get_items()[0]) == b"abcdefgh"

    def test_heap_without_length_with_gap_is_dropped(self, thread_pool):
        pkts = heap_packets(4, b"abcdefgh", 3, items=[(False, 0x1000, 0)], with_length=False)
        heaps, stats = receive(thread_pool, concat([pkts[0], pkts[2]]))
        assert heaps == []
        assert stats.incomplete_heaps_flushed == 1


class TestMalformedPackets:
    good = packet(9, b"good", heap_length=4, items=[(False, 0x1000, 0)])

    @pytest.mark.parametrize("bad", [
        pytest.param(header(4, magic=0x54) + b"\0" * 32, id="bad-magic"),
        pytest.param(header(4, version=3) + b"\0" * 32, id="bad-version"),
        pytest.param(header(4, id_bytes=3, addr_bytes=4) + b"\0" * 32, id="bad-widths"),
        pytest.param(header(4, id_bytes=0, addr_bytes=8) + b"\0" * 32, id="zero-id-width"),
        pytest.param(packet(1, b"abc", heap_length=2), id="payload-beyond-heap"),
        pytest.param(packet(1, b"abc", heap_length=3, order="lop"), id="no-heap-cnt"),
        pytest.param(packet(1, b"", heap_length=3, order="clp"), id="no-payload-offset"),
        pytest.param(packet(1, b"", heap_length=3, order="clo"), id="no-payload-length"),
    ])
    def test_dropped_and_stream_goes_on(self, thread_pool, bad, caplog):
        caplog.set_level(logging.INFO, logger="spead2")
        heaps, stats = receive(thread_pool, bad + self.good)
        assert [h.cnt for h in heaps] == [9]
        assert items_of(heaps[0])[0x1000] == (False, b"good")
        assert stats.bad_packets >= 1
        assert any("rejected" in r.message or "not a valid" in r.message for r in caplog.records)

    def test_truncated_packet_at_end_of_buffer(self, thread_pool):
        heaps, stats = receive(thread_pool, self.good + self.good[:-2])
        assert [h.cnt for h in heaps] == [9]
        assert stats.bad_packets == 1

    def test_pointers_past_end(self, thread_pool):
        bad = header(200) + pointer(True, 1, 1) * 3
        heaps, stats = receive(thread_pool, bad)
        assert heaps == [] and stats.bad_packets == 1

    def test_heap_length_conflict_is_rejected(self, thread_pool):
        data = concat([packet(1, b"ab", 0, 4, [(False, 0x1000, 0)]),
                       packet(1, b"cd", 2, 5),
                       packet(1, b"cd", 2, 4)])
        (heap,), stats = receive(thread_pool, data)
        assert bytes(heap.get_items()[0]) == b"abcd"
        assert stats.rejected_packets == 1

    def test_flavour_conflict_within_heap_is_rejected(self, thread_pool):
        data = concat([packet(1, b"ab", 0, 4, [(False, 0x1000, 0)]),
                       packet(1, b"cd", 2, 4, hab=48),
                       packet(1, b"cd", 2, 4)])
        (heap,), stats = receive(thread_pool, data)
        assert bytes(heap.get_items()[0]) == b"abcd"
        assert stats.rejected_packets == 1

    def test_heap_with_an_item_past_its_length_never_completes(self, thread_pool, caplog):
        # an item at address 99 of a 2-byte heap cannot be decoded: the heap
        # stays incomplete, as in spead2, and is dropped when flushed
        caplog.set_level(logging.WARNING, logger="spead2")
        heaps, stats = receive(thread_pool, packet(1, b"ab", 0, 2, [(False, 0x1000, 0),
                                                                   (False, 0x1001, 99)])
                               + self.good)
        assert [h.cnt for h in heaps] == [9]
        assert stats.heaps == 2
        assert any("dropped incomplete heap 1" in r.message for r in caplog.records)

    def test_huge_heap_length_does_not_allocate(self, thread_pool):
        bad = packet(1, b"x" * 8, 0, (1 << 40) - 1, [(False, 0x1000, 0)])
        far = packet(2, b"x" * 8, (1 << 40) - 16, None)
        heaps, stats = receive(thread_pool, bad + far + self.good)
        assert [h.cnt for h in heaps] == [9]
        assert stats.rejected_packets == 2

    def test_max_heap_size_is_configurable(self, thread_pool):
        big = concat(heap_packets(1, b"z" * 3000, 1000, items=[(False, 0x1000, 0)]))
        heaps, _ = receive(thread_pool, big + self.good, max_heap_size=2000)
        assert [h.cnt for h in heaps] == [9]
        heaps, _ = receive(thread_pool, big + self.good, max_heap_size=3000)
        assert [h.cnt for h in heaps] == [1, 9]

    def test_garbage_between_packets_is_skipped(self, thread_pool):
        data = self.good + b"\x01\x02garbage\x53" + packet(10, b"more", 0, 4,
                                                             [(False, 0x1000, 0)])
        heaps, stats = receive(thread_pool, data)
        assert [h.cnt for h in heaps] == [9, 10]
        assert stats.bad_packets == 1


class TestEvictionAndStop:
    def test_oldest_incomplete_heap_is_evicted(self, thread_pool, caplog):
        caplog.set_level(logging.WARNING, logger="spead2")
        data = concat([packet(1, b"a", 0, 2, [(False, 0x1000, 0)]),
                       packet(2, b"b", 0, 2, [(False, 0x1000, 0)]),
                       packet(3, b"c", 0, 2, [(False, 0x1000, 0)]),   # evicts heap 1
                       packet(2, b"B", 1, 2),
                       packet(3, b"C", 1, 2)])
        heaps, stats = receive(thread_pool, data, max_heaps=2)
        assert [h.cnt for h in heaps] == [2, 3]
        assert stats.incomplete_heaps_evicted == 1
        assert stats.heaps == 3
        assert any("incomplete heap 1" in r.message for r in caplog.records)

    def test_evicted_heap_without_length_is_delivered_if_contiguous(self, thread_pool):
        data = concat([packet(1, b"ab", 0, None, [(False, 0x1000, 0)]),
                       packet(2, b"c", 0, 2, [(False, 0x1000, 0)]),   # evicts heap 1
                       packet(2, b"d", 1, 2)])
        heaps, stats = receive(thread_pool, data, max_heaps=1)
        assert [h.cnt for h in heaps] == [1, 2]
        assert bytes(heaps[0].get_items()[0]) == b"ab"
        assert stats.incomplete_heaps_evicted == 1

    def test_single_packet_heaps_evict_nothing(self, thread_pool):
        data = concat([packet(1, b"a", 0, 2, [(False, 0x1000, 0)])]
                      + [packet(cnt, b"x", 0, 1, [(False, 0x1000, 0)]) for cnt in range(2, 10)]
                      + [packet(1, b"b", 1, 2)])
        heaps, stats = receive(thread_pool, data, max_heaps=1)
        assert [h.cnt for h in heaps] == list(range(2, 10)) + [1]
        assert stats.incomplete_heaps_evicted == 0
        assert stats.single_packet_heaps == 8

    def test_stop_packet_ends_stream_and_is_not_delivered(self, thread_pool):
        data = concat([packet(1, b"a", 0, 1, [(False, 0x1000, 0)]), stop_packet(),
                       packet(2, b"b", 0, 1, [(False, 0x1000, 0)])])
        heaps, stats = receive(thread_pool, data)
        assert [h.cnt for h in heaps] == [1]

    def test_stop_flushes_partial_heaps(self, thread_pool):
        data = concat([packet(1, b"a", 0, 2, [(False, 0x1000, 0)]),
                       packet(2, b"bb", 0, None, [(False, 0x1000, 0)]), stop_packet()])
        heaps, stats = receive(thread_pool, data)
        assert [h.cnt for h in heaps] == [2]
        # both were still under assembly: heap 1 is dropped, heap 2 (no
        # length, contiguous) is delivered
        assert stats.incomplete_heaps_flushed == 2
        assert stats.heaps == 2

    def test_empty_buffer_stops_stream(self, thread_pool):
        heaps, _ = receive(thread_pool, b"")
        assert heaps == []

    def test_heap_with_zero_length_and_only_immediates(self, thread_pool):
        (heap,), _ = receive(thread_pool, packet(1, b"", 0, 0, [(True, 0x1000, 5)]))
        assert items_of(heap) == {0x1000: (True, b"\0\0\0\0\x05")}


class TestMemory:
    def test_raw_item_is_a_view_that_keeps_the_heap_alive(self, thread_pool):
        payload = bytes(range(256)) * 4
        (heap,), _ = receive(thread_pool, packet(1, payload, 0, len(payload),
                                                 [(False, 0x1000, 0)]))
        item = heap.get_items()[0]
        arr = np.frombuffer(item, np.uint8)
        again = np.frombuffer(heap.get_items()[0], np.uint8)
        assert np.shares_memory(arr, again)
        del heap, item, again
        assert bytes(arr) == payload

    def test_raw_items_are_read_only(self, thread_pool):
        (heap,), _ = receive(thread_pool, packet(1, b"ab", 0, 2, [(False, 0x1000, 0)]))
        assert memoryview(heap.get_items()[0]).readonly

    def test_memory_pool_buffers_return_when_heaps_die(self, thread_pool):
        pool = spead2.MemoryPool(1, 1024, 8, 2)
        stream = spead2.recv.Stream(thread_pool, ring_heaps=8)
        stream.set_memory_allocator(pool)
        stream.add_buffer_reader(concat(packet(i, b"q" * 100, 0, 100, [(False, 0x1000, 0)])
                                        for i in range(1, 5)))
        heaps = list(stream)
        assert len(heaps) == 4
        assert pool.free_buffers == 0
        del heaps
        assert pool.free_buffers == 4

    def test_mmap_allocator(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool)
        stream.set_memory_allocator(spead2.MmapAllocator())
        stream.add_buffer_reader(packet(1, b"mmap", 0, 4, [(False, 0x1000, 0)]))
        (heap,) = list(stream)
        assert bytes(heap.get_items()[0]) == b"mmap"

    @pytest.mark.parametrize("memcpy", [spead2.MEMCPY_STD, spead2.MEMCPY_NONTEMPORAL])
    def test_memcpy_choices_copy_exactly(self, thread_pool, memcpy):
        payload = bytes(random.Random(3).getrandbits(8) for _ in range(100003))
        stream = spead2.recv.Stream(thread_pool)
        stream.set_memcpy(memcpy)
        stream.add_buffer_reader(concat(heap_packets(1, payload, 8972,
                                                     items=[(False, 0x1000, 0)])))
        (heap,) = list(stream)
        assert bytes(heap.get_items()[0]) == payload

    def test_bad_memcpy_id(self, thread_pool):
        with pytest.raises(ValueError):
            spead2.recv.Stream(thread_pool).set_memcpy(2)
