"""Heap assembly on its own: hand-built packets in, events out, with no
threads, sockets or clocks (``spead2.recv._recv.Assembler`` drives the same
C assembler that the receive stream runs on its workers).

Each test states one assembly rule.
"""

import pytest

import spead2
from packets import heap_packets, packet, stop_packet
from spead2.recv._recv import (
    FEED_BAD_PACKET, FEED_DUPLICATE, FEED_FLAVOUR_MISMATCH, FEED_HEAP_TOO_LARGE,
    FEED_LENGTH_MISMATCH, FEED_LENGTH_TOO_SMALL, FEED_NO_HEAP_LENGTH, FEED_OUT_OF_ORDER,
    FEED_OVERLAP, FEED_PAST_HEAP_LENGTH, FEED_POINTERS_LIMIT, Assembler, HeapLeft,
    PacketDropped, StopItem)
from spead2.recv import Heap, IncompleteHeap

ITEM = 0x1000


def item(address=0, item_id=ITEM):
    return (False, item_id, address)


def feed_all(asm, packets):
    events = []
    for p in packets:
        events.extend(asm.feed(p))
    return events


def left(events, exit=None):
    """The heaps in ``events`` that left assembly (optionally by ``exit``)."""
    return [e.heap for e in events if isinstance(e, HeapLeft) and (exit is None or e.exit == exit)]


def drops(events):
    return [e.code for e in events if isinstance(e, PacketDropped)]


def payload_of(heap):
    (raw,) = [i for i in heap.get_items() if i.id == ITEM]
    return bytes(raw)


class TestCompletion:
    def test_a_single_packet_heap_completes_at_once(self):
        asm = Assembler()
        (event,) = asm.feed(packet(1, b"abc", 0, 3, [item()]))
        assert event.exit == "completed" and isinstance(event.heap, Heap)
        assert payload_of(event.heap) == b"abc"
        assert asm.live_heaps == 0
        assert asm.stats["single_packet_heaps"] == 1

    def test_a_heap_completes_when_its_last_byte_arrives(self):
        asm = Assembler()
        pkts = heap_packets(5, bytes(range(100)), 30, [item()])
        assert feed_all(asm, pkts[:-1]) == []
        assert asm.live_heaps == 1
        (heap,) = left(asm.feed(pkts[-1]), "completed")
        assert heap.cnt == 5 and payload_of(heap) == bytes(range(100))
        assert asm.stats["heaps"] == 1 and asm.stats["bytes"] == 100

    def test_item_pointers_in_any_packet_are_gathered_once(self):
        asm = Assembler(allow_out_of_order=True)
        pkts = [packet(1, b"ab", 0, 4, [item(0), (True, 0x2000, 7)]),
                packet(1, b"cd", 2, 4, [item(2, 0x1001), (True, 0x2000, 7)])]
        (heap,) = left(feed_all(asm, pkts))
        got = [(i.id, i.is_immediate, bytes(i)) for i in heap.get_items()]
        assert got == [(ITEM, False, b"ab"), (0x2000, True, b"\0\0\0\0\x07"),
                       (0x1001, False, b"cd")]

    def test_items_run_to_the_next_address_and_shared_addresses_leave_the_first_empty(self):
        # 0x1000 and 0x1001 share address 0: the first (in pointer order) is
        # empty and left out, as spead2 does; 0x1002 runs to the end
        asm = Assembler()
        (heap,) = left(asm.feed(packet(1, b"abcdef", 0, 6, [item(0), item(0, 0x1001),
                                                            item(4, 0x1002)])))
        got = [(i.id, bytes(i)) for i in heap.get_items()]
        assert got == [(0x1001, b"abcd"), (0x1002, b"ef")]

    def test_null_items_only_mark_where_an_item_ends(self):
        asm = Assembler()
        (heap,) = left(asm.feed(packet(1, b"abcdef", 0, 6, [item(0), (False, 0, 2)])))
        assert [(i.id, bytes(i)) for i in heap.get_items()] == [(ITEM, b"ab")]

    def test_an_item_past_the_heap_length_keeps_the_heap_incomplete(self):
        asm = Assembler()
        events = asm.feed(packet(1, b"ab", 0, 2, [item(0), item(9, 0x1001)]))
        (heap,) = left(events)
        assert isinstance(heap, IncompleteHeap)
        assert heap.received_length == 2 and heap.heap_length == 2


class TestInOrderMode:
    def test_in_order_is_the_default(self):
        asm = Assembler()
        pkts = heap_packets(1, bytes(90), 30, [item()])
        assert drops(asm.feed(pkts[1])) == [FEED_OUT_OF_ORDER]    # does not start a heap
        assert asm.live_heaps == 0
        asm.feed(pkts[0])
        assert drops(asm.feed(pkts[2])) == [FEED_OUT_OF_ORDER]    # a gap
        (heap,) = left(asm.feed(pkts[1]) + asm.feed(pkts[2]))
        assert heap.cnt == 1

    def test_a_repeated_packet_is_a_duplicate(self):
        asm = Assembler()
        pkts = heap_packets(1, bytes(90), 30, [item()])
        asm.feed(pkts[0])
        asm.feed(pkts[1])
        assert drops(asm.feed(pkts[0])) == [FEED_DUPLICATE]
        assert asm.stats["duplicate_packets"] == 1

    def test_out_of_order_mode_takes_any_order(self):
        asm = Assembler(allow_out_of_order=True)
        pkts = heap_packets(1, bytes(range(90)), 30, [item()])
        assert feed_all(asm, [pkts[2], pkts[0]]) == []
        (heap,) = left(asm.feed(pkts[1]))
        assert payload_of(heap) == bytes(range(90))


class TestRefusedPackets:
    def test_duplicate_and_partial_overlap(self):
        asm = Assembler(allow_out_of_order=True)
        asm.feed(packet(1, b"x" * 60, 0, 100, [item()]))
        assert drops(asm.feed(packet(1, b"y" * 20, 10, 100))) == [FEED_DUPLICATE]
        assert drops(asm.feed(packet(1, b"y" * 20, 50, 100))) == [FEED_OVERLAP]
        assert asm.stats["duplicate_packets"] == 1 and asm.stats["rejected_packets"] == 1

    def test_heap_length_must_agree(self):
        asm = Assembler(allow_out_of_order=True)
        asm.feed(packet(1, b"ab", 0, 4, [item()]))
        assert drops(asm.feed(packet(1, b"cd", 2, 5))) == [FEED_LENGTH_MISMATCH]

    def test_heap_length_below_what_arrived_is_refused(self):
        asm = Assembler(allow_out_of_order=True)
        asm.feed(packet(1, b"abcdef", 0, None, [item()]))
        assert drops(asm.feed(packet(1, b"", 0, 3))) == [FEED_LENGTH_TOO_SMALL]

    def test_payload_past_a_known_length_is_refused(self):
        asm = Assembler(allow_out_of_order=True)
        asm.feed(packet(1, b"ab", 0, 4, [item()]))
        assert drops(asm.feed(packet(1, b"cdef", 2, None))) == [FEED_PAST_HEAP_LENGTH]

    def test_flavour_must_agree(self):
        asm = Assembler(allow_out_of_order=True)
        asm.feed(packet(1, b"ab", 0, 4, [item()]))
        assert drops(asm.feed(packet(1, b"cd", 2, 4, hab=48))) == [FEED_FLAVOUR_MISMATCH]

    def test_unsized_heaps_can_be_refused(self):
        asm = Assembler(allow_unsized_heaps=False)
        assert drops(asm.feed(packet(1, b"ab", 0, None, [item()]))) == [FEED_NO_HEAP_LENGTH]
        assert asm.live_heaps == 0

    def test_claims_beyond_max_heap_size_allocate_nothing(self):
        asm = Assembler(max_heap_size=1000)
        assert drops(asm.feed(packet(1, b"ab", 0, 2**39, [item()]))) == [FEED_HEAP_TOO_LARGE]
        assert drops(asm.feed(packet(2, b"ab", 2**39, None))) == [FEED_HEAP_TOO_LARGE]
        assert drops(asm.feed(packet(3, b"ab", 0, None, [item(2**39)]))) == [FEED_HEAP_TOO_LARGE]
        assert asm.live_heaps == 0

    def test_item_pointers_are_held_to_max_heap_size(self):
        asm = Assembler(max_heap_size=64, allow_out_of_order=True)
        many = [(True, 0x2000 + i, i) for i in range(8)]
        asm.feed(packet(1, b"a", 0, 2, many))
        more = [(True, 0x3000 + i, i) for i in range(2)]
        assert drops(asm.feed(packet(1, b"", 1, 2, more))) == [FEED_POINTERS_LIMIT]

    def test_a_refused_first_packet_leaves_no_heap(self):
        asm = Assembler(max_heap_size=64)
        asm.feed(packet(1, b"a", 0, 2, [(True, 0x2000 + i, i) for i in range(9)]))
        assert asm.live_heaps == 0

    def test_undecodable_bytes_are_a_bad_packet(self):
        asm = Assembler()
        assert drops(asm.feed(b"\x53\x04\x02\x06\x00\x00\x00\x09")) == [FEED_BAD_PACKET]
        assert asm.stats["bad_packets"] == 1 and asm.stats["packets"] == 0


class TestEviction:
    def test_a_new_heap_evicts_the_oldest_of_its_substream(self):
        asm = Assembler(max_heaps=2)
        asm.feed(packet(1, b"a", 0, 2, [item()]))
        asm.feed(packet(2, b"b", 0, 2, [item()]))
        events = asm.feed(packet(3, b"c", 0, 2, [item()]))
        (heap,) = left(events, "evicted")
        assert heap.cnt == 1 and isinstance(heap, IncompleteHeap)
        assert asm.stats["incomplete_heaps_evicted"] == 1 and asm.stats["heaps"] == 1

    def test_slots_rotate_even_past_free_ones(self):
        # as in spead2, each substream's slots are used in turn: heap 3 takes
        # the slot after heap 2's, which holds heap 1, although heap 2's
        # slot has been free since it completed
        asm = Assembler(max_heaps=2)
        asm.feed(packet(1, b"a", 0, 2, [item()]))
        asm.feed(packet(2, b"b", 0, 2, [item()]))
        (done,) = left(asm.feed(packet(2, b"B", 1, 2)), "completed")
        assert done.cnt == 2
        (evicted,) = left(asm.feed(packet(3, b"c", 0, 2, [item()])), "evicted")
        assert evicted.cnt == 1

    def test_single_packet_heaps_take_no_slot(self):
        asm = Assembler(max_heaps=1)
        asm.feed(packet(1, b"a", 0, 2, [item()]))
        events = feed_all(asm, [packet(c, b"x", 0, 1, [item()]) for c in range(2, 10)])
        assert [h.cnt for h in left(events, "completed")] == list(range(2, 10))
        assert left(events, "evicted") == []
        assert asm.live_heaps == 1

    def test_substreams_evict_only_their_own_heaps(self):
        asm = Assembler(max_heaps=1, substreams=2)
        asm.feed(packet(2, b"a", 0, 2, [item()]))    # substream 0
        asm.feed(packet(3, b"b", 0, 2, [item()]))    # substream 1
        assert asm.live_heaps == 2
        (evicted,) = left(asm.feed(packet(5, b"c", 0, 2, [item()])), "evicted")
        assert evicted.cnt == 3
        (evicted,) = left(asm.feed(packet(4, b"d", 0, 2, [item()])), "evicted")
        assert evicted.cnt == 2

    def test_an_evicted_unsized_heap_contiguous_from_zero_is_a_heap(self):
        asm = Assembler(max_heaps=1)
        asm.feed(packet(1, b"abc", 0, None, [item()]))
        (heap,) = left(asm.feed(packet(2, b"d", 0, 2, [item()])), "evicted")
        assert isinstance(heap, Heap) and payload_of(heap) == b"abc"

    def test_an_evicted_unsized_heap_with_a_gap_is_incomplete(self):
        asm = Assembler(max_heaps=1, allow_out_of_order=True)
        asm.feed(packet(1, b"abc", 0, None, [item()]))
        asm.feed(packet(1, b"ghi", 6, None))
        (heap,) = left(asm.feed(packet(2, b"d", 0, 2, [item()])), "evicted")
        assert isinstance(heap, IncompleteHeap)
        assert heap.heap_length == -1 and heap.received_length == 6


class TestIncompleteHeaps:
    def test_only_immediates_are_kept(self):
        asm = Assembler(max_heaps=1)
        asm.feed(packet(1, b"ab", 0, 4, [item(), (True, 0x2000, 42)]))
        (heap,) = left(asm.flush())
        assert [(i.id, i.is_immediate, i.immediate_value) for i in heap.get_items()] == [
            (0x2000, True, 42)]

    def test_payload_ranges_are_kept_on_request(self):
        asm = Assembler(allow_out_of_order=True, keep_payload_ranges=True)
        feed_all(asm, [packet(1, b"a" * 10, 0, 100, [item()]), packet(1, b"b" * 10, 40, 100),
                       packet(1, b"c" * 10, 10, 100)])
        (heap,) = left(asm.flush())
        assert heap.payload_ranges == [(0, 20), (40, 50)]
        assert heap.received_length == 30

    def test_in_order_mode_reports_one_range(self):
        asm = Assembler(keep_payload_ranges=True)
        feed_all(asm, [packet(1, b"a" * 10, 0, 100, [item()]), packet(1, b"b" * 10, 10, 100)])
        (heap,) = left(asm.flush())
        assert heap.payload_ranges == [(0, 20)]

    def test_ranges_are_empty_unless_requested(self):
        asm = Assembler()
        asm.feed(packet(1, b"a" * 10, 0, 100, [item()]))
        (heap,) = left(asm.flush())
        assert heap.payload_ranges == []


class TestStopAndFlush:
    def test_a_stop_item_ends_the_stream_and_its_heap_is_not_handed_on(self):
        asm = Assembler()
        events = asm.feed(stop_packet(7))
        assert len(events) == 1 and isinstance(events[0], StopItem)
        assert left(asm.flush()) == []

    def test_without_stop_on_stop_item_the_stop_heap_is_a_heap(self):
        asm = Assembler(stop_on_stop_item=False)
        (heap,) = left(asm.feed(stop_packet(7)), "completed")
        assert heap.is_end_of_stream() and not heap.is_start_of_stream()

    def test_flush_hands_on_every_heap_oldest_first_by_substream(self):
        asm = Assembler(max_heaps=3, substreams=2)
        feed_all(asm, [packet(c, b"a", 0, 2, [item()]) for c in (3, 2, 5, 4)])
        events = asm.flush()
        assert [(e.exit, e.heap.cnt) for e in events] == [
            ("flushed", 2), ("flushed", 4), ("flushed", 3), ("flushed", 5)]
        assert asm.stats["incomplete_heaps_flushed"] == 4 and asm.live_heaps == 0

    def test_heaps_counts_every_heap_that_left(self):
        asm = Assembler(max_heaps=1)
        feed_all(asm, [packet(1, b"a", 0, 1, [item()]), packet(2, b"a", 0, 2, [item()]),
                       packet(3, b"a", 0, 2, [item()])])
        asm.flush()
        st = asm.stats
        assert (st["heaps"], st["incomplete_heaps_evicted"], st["incomplete_heaps_flushed"]) == (
            3, 1, 1)
        assert st["packets"] == 3


class TestMemory:
    def test_payload_comes_from_the_injected_allocator(self):
        pool = spead2.MemoryPool(16, 4096, 4, 4)
        asm = Assembler(allocator=pool)
        before = pool.free_buffers
        (heap,) = left(asm.feed(packet(1, b"x" * 100, 0, 100, [item()])))
        assert pool.free_buffers == before - 1
        del heap
        assert pool.free_buffers == before

    @pytest.mark.parametrize("memcpy", [spead2.MEMCPY_STD, spead2.MEMCPY_NONTEMPORAL])
    def test_either_copy_gives_the_same_bytes(self, memcpy):
        payload = bytes(range(256)) * 40
        asm = Assembler(memcpy=memcpy, allow_out_of_order=True)
        pkts = heap_packets(1, payload, 1000, [item()])
        (heap,) = left(feed_all(asm, pkts[::-1]))
        assert payload_of(heap) == payload

    def test_an_unsized_heap_grows_as_data_arrives(self):
        asm = Assembler(max_heaps=1)
        payload = bytes(range(251)) * 100
        feed_all(asm, heap_packets(1, payload, 1000, [item()], with_length=False))
        (heap,) = left(asm.flush())
        assert isinstance(heap, Heap) and payload_of(heap) == payload
