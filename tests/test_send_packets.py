"""Heap and PacketGenerator: the exact bytes of every packet.

Expected packets are built with ``test_send_support.packet`` (its module
docstring gives the header and item pointer layout). How a heap becomes
packets, which the expected values below follow:

- ``max_packet_size`` is rounded down to a multiple of 8 (at least 56);
- every packet has the 8-byte header and the four header immediates (HEAP_CNT,
  HEAP_LENGTH, PAYLOAD_OFFSET, PAYLOAD_LENGTH): 40 bytes before anything else;
- the heap's pointers (descriptors first, then items, each in the order added)
  fill the first packets, leaving at least 8 payload bytes in each;
- an item whose value has a fixed size of at most ``hab // 8`` bytes is an
  immediate, right-aligned in the address field; any other item is addressed,
  its value in the payload back to back with the others;
- if the payload cannot give every pointer-carrying packet 8 bytes (the last
  one 1 byte), a NULL (id 0) pointer addressing the end of the item data is
  added and the heap padded with zero bytes to that size: a heap with no
  payload thus carries one zero byte.
"""

import gc
import weakref

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import spead2
import spead2.send
from test_send_support import (StandInItem, addressed, immediate, item_values, packet,
                               reassemble)

FLAVOURS = [spead2.Flavour(4, 64, hab, 0) for hab in range(8, 64, 8)]


def packets(heap, cnt=1, max_packet_size=1472):
    return list(spead2.send.PacketGenerator(heap, cnt, max_packet_size))


class TestSinglePacketHeaps:
    def test_empty_heap_carries_null_pointer_and_one_zero_byte(self):
        heap = spead2.send.Heap()
        assert packets(heap) == [bytes.fromhex(
            # magic 53, version 04, 3-byte ids, 5-byte addresses (SPEAD-64-40),
            # 00 00, 5 item pointers
            "5304030500000005"
            # immediates: HEAP_CNT 1, HEAP_LENGTH 1, PAYLOAD_OFFSET 0, PAYLOAD_LENGTH 1
            "8000010000000001 8000020000000001 8000030000000000 8000040000000001"
            # NULL pointer (addressed, id 0) at 0; payload: the one zero byte
            "0000000000000000 00")]

    def test_start_heap(self):
        heap = spead2.send.Heap()
        heap.add_start()
        assert packets(heap, cnt=3) == [packet(
            3, 1, 0, [immediate(spead2.STREAM_CTRL_ID, spead2.CTRL_STREAM_START),
                      addressed(0, 0)], b"\0")]

    def test_end_heap(self):
        heap = spead2.send.Heap()
        heap.add_end()
        assert packets(heap) == [packet(
            1, 1, 0, [immediate(spead2.STREAM_CTRL_ID, spead2.CTRL_STREAM_STOP),
                      addressed(0, 0)], b"\0")]

    @pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: f"64-{f.heap_address_bits}")
    def test_empty_heap_in_every_flavour(self, flavour):
        hab = flavour.heap_address_bits
        heap = spead2.send.Heap(flavour)
        assert packets(heap, cnt=5) == [packet(5, 1, 0, [addressed(0, 0, hab)], b"\0", hab)]
        assert packets(heap)[0][:4] == bytes([0x53, 4, (64 - hab) // 8, hab // 8])

    @pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: f"64-{f.heap_address_bits}")
    def test_fixed_item_that_fits_is_right_aligned_immediate(self, flavour):
        hab = flavour.heap_address_bits
        for size in range(0, hab // 8 + 1):
            data = bytes(range(0x41, 0x41 + size))
            heap = spead2.send.Heap(flavour)
            heap.add_item(StandInItem(0x12, data))
            expected = packet(1, 1, 0, [immediate(0x12, int.from_bytes(data, "big"), hab),
                                        addressed(0, 0, hab)], b"\0", hab)
            assert packets(heap) == [expected], size

    @pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: f"64-{f.heap_address_bits}")
    def test_fixed_item_one_byte_too_big_is_addressed(self, flavour):
        hab = flavour.heap_address_bits
        data = bytes(range(1, hab // 8 + 2))
        heap = spead2.send.Heap(flavour)
        heap.add_item(StandInItem(0x12, data))
        assert packets(heap) == [packet(1, len(data), 0, [addressed(0x12, 0, hab)], data, hab)]

    def test_variable_item_is_never_immediate(self):
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, b"\x07", variable=True))
        assert packets(heap) == [packet(1, 1, 0, [addressed(0x1000, 0)], b"\x07")]

    def test_empty_variable_item_gets_null_padding(self):
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, b"", variable=True))
        assert packets(heap) == [packet(1, 1, 0, [addressed(0x1000, 0), addressed(0, 0)], b"\0")]

    def test_items_in_order_added_payload_back_to_back(self):
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1001, b"abcdefg"))
        heap.add_item(StandInItem(0x1002, b"\x01\x02"))
        heap.add_item(StandInItem(0x1003, b"XYZ", variable=True))
        assert packets(heap, cnt=9) == [packet(
            9, 10, 0, [addressed(0x1001, 0), immediate(0x1002, 0x0102), addressed(0x1003, 7)],
            b"abcdefgXYZ")]

    def test_descriptors_come_before_items_whenever_added(self):
        a = StandInItem(0x1001, b"0123456789", raw_descriptor=b"first-descriptor")
        b = StandInItem(0x1002, b"\xff", raw_descriptor=b"second")
        heap = spead2.send.Heap()
        heap.add_item(a)
        heap.add_descriptor(a)
        heap.add_item(b)
        heap.add_descriptor(b)
        payload = b"first-descriptor" + b"second" + b"0123456789"
        assert packets(heap) == [packet(1, len(payload), 0, [
            addressed(spead2.DESCRIPTOR_ID, 0), addressed(spead2.DESCRIPTOR_ID, 16),
            addressed(0x1001, 22), immediate(0x1002, 0xff)], payload)]

    def test_descriptor_is_encoded_with_heap_flavour(self):
        flavour = spead2.Flavour(4, 64, 48, spead2.BUG_COMPAT_PYSPEAD_0_5_2)
        item = StandInItem(0x1001, b"", raw_descriptor=b"raw")
        heap = spead2.send.Heap(flavour)
        heap.add_descriptor(item)
        assert item.to_raw_flavours == [flavour]
        assert packets(heap) == [packet(1, 3, 0, [addressed(5, 0, 48)], b"raw", 48)]

    def test_bug_compat_does_not_change_framing(self):
        for bug in range(8):
            heap = spead2.send.Heap(spead2.Flavour(4, 64, 48, bug))
            heap.add_item(StandInItem(0x1001, b"abcdefgh"))
            assert packets(heap) == [packet(1, 8, 0, [addressed(0x1001, 0, 48)], b"abcdefgh", 48)]

    def test_numpy_buffer_is_sent_as_its_bytes(self):
        value = np.arange(6, dtype=">u2").reshape(2, 3)
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1001, value))
        assert packets(heap) == [packet(1, 12, 0, [addressed(0x1001, 0)], value.tobytes())]

    def test_fortran_contiguous_buffer_is_sent_in_memory_order(self):
        value = np.asfortranarray(np.arange(6, dtype="<u2").reshape(2, 3))
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1001, value))
        assert packets(heap) == [packet(1, 12, 0, [addressed(0x1001, 0)],
                                        value.tobytes(order="F"))]

    def test_non_contiguous_buffer_is_sent_contiguous_in_c_order(self):
        value = np.arange(24, dtype=np.uint8).reshape(4, 6)[::2, 1::2]
        assert not value.flags.c_contiguous and not value.flags.f_contiguous
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1001, value))
        assert packets(heap) == [packet(1, 6, 0, [addressed(0x1001, 0)],
                                        value.tobytes(order="C"))]

    def test_heap_reports_its_flavour(self):
        flavour = spead2.Flavour(4, 64, 48, 2)
        assert spead2.send.Heap(flavour).flavour == flavour
        assert spead2.send.Heap().flavour == spead2.Flavour()


class TestMultiPacketHeaps:
    def test_large_item_split_into_full_packets(self):
        data = bytes(i % 251 for i in range(3000))
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, data, variable=True))
        # 1472 bytes per packet: the first has 5 pointers, later ones 4.
        first = 1472 - 8 - 5 * 8
        later = 1472 - 8 - 4 * 8
        assert packets(heap, cnt=2) == [
            packet(2, 3000, 0, [addressed(0x1000, 0)], data[:first]),
            packet(2, 3000, first, [], data[first:first + later]),
            packet(2, 3000, first + later, [], data[first + later:]),
        ]

    def test_packet_size_rounded_down_to_multiple_of_8(self):
        data = bytes(range(200))
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, data, variable=True))
        # 103 -> 96: 48 bytes of payload after the pointer, 56 after that.
        assert packets(heap, max_packet_size=103) == [
            packet(1, 200, 0, [addressed(0x1000, 0)], data[:48]),
            packet(1, 200, 48, [], data[48:104]),
            packet(1, 200, 104, [], data[104:160]),
            packet(1, 200, 160, [], data[160:]),
        ]

    def test_pointers_fill_first_packets_leaving_8_payload_bytes(self):
        heap = spead2.send.Heap()
        data = [bytes([i]) * 10 for i in range(4)]
        for i, d in enumerate(data):
            heap.add_item(StandInItem(0x2000 + i, d))
        payload = b"".join(data)
        # 72 bytes: room for three pointers and 8 payload bytes.
        assert packets(heap, max_packet_size=72) == [
            packet(1, 40, 0, [addressed(0x2000, 0), addressed(0x2001, 10), addressed(0x2002, 20)],
                   payload[:8]),
            packet(1, 40, 8, [addressed(0x2003, 30)], payload[8:32]),
            packet(1, 40, 32, [], payload[32:]),
        ]

    def test_immediates_spread_over_packets_are_padded(self):
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x2000, b"\x01"))
        heap.add_item(StandInItem(0x2001, b"\x02"))
        # One pointer per 56-byte packet; a NULL pointer for the padding; 8
        # padding bytes in every pointer packet but the last, which has one.
        assert packets(heap, max_packet_size=56) == [
            packet(1, 17, 0, [immediate(0x2000, 1)], bytes(8)),
            packet(1, 17, 8, [immediate(0x2001, 2)], bytes(8)),
            packet(1, 17, 16, [addressed(0, 0)], bytes(1)),
        ]

    def test_short_payload_padded_after_the_data(self):
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x2000, b"abc", variable=True))
        heap.add_item(StandInItem(0x2001, b"\x05"))
        assert packets(heap, max_packet_size=56) == [
            packet(1, 17, 0, [addressed(0x2000, 0)], b"abc" + bytes(5)),
            packet(1, 17, 8, [immediate(0x2001, 5)], bytes(8)),
            packet(1, 17, 16, [addressed(0, 3)], bytes(1)),
        ]

    @settings(max_examples=60, deadline=None)
    @given(sizes=st.lists(st.integers(0, 3000), max_size=12),
           mps=st.integers(56, 4000),
           hab=st.sampled_from([24, 32, 40, 48, 56]),
           cnt=st.integers(0, 2**24 - 1))
    def test_any_heap_reassembles_and_respects_packet_size(self, sizes, mps, hab, cnt):
        heap = spead2.send.Heap(spead2.Flavour(4, 64, hab))
        expected = {}
        for i, size in enumerate(sizes):
            data = bytes((i * 31 + j) % 256 for j in range(size))
            variable = i % 2 == 0
            heap.add_item(StandInItem(0x10 + i, data, variable=variable))
            if not variable and size <= hab // 8:
                expected[0x10 + i] = [data.rjust(hab // 8, b"\0")]
            else:
                expected[0x10 + i] = [data]
        pkts = packets(heap, cnt=cnt, max_packet_size=mps)
        assert all(len(p) <= mps for p in pkts)
        assert all(len(p) % 8 == 0 for p in pkts[:-1])
        got_cnt, pointers, payload = reassemble(pkts)
        assert got_cnt == cnt
        values = item_values(pointers, payload, hab)
        null = values.pop(0, [])
        assert all(v == bytes(len(v)) for v in null), "padding must be zeros"
        for id, v in expected.items():
            assert values[id] == v


class TestHeapErrors:
    def test_packet_size_too_small(self):
        heap = spead2.send.Heap()
        with pytest.raises(ValueError):
            packets(heap, max_packet_size=55)
        assert len(packets(heap, max_packet_size=56)) == 1

    def test_heap_too_large_for_flavour_fails_when_added(self):
        heap = spead2.send.Heap(spead2.Flavour(4, 64, 16))
        heap.add_item(StandInItem(0x10, bytes(60000), variable=True))
        with pytest.raises(ValueError, match="too large"):
            heap.add_item(StandInItem(0x11, bytes(6000), variable=True))
        assert sum(len(p) for p in packets(heap, max_packet_size=9000)) > 60000

    def test_padding_that_overflows_flavour_is_an_error(self):
        heap = spead2.send.Heap(spead2.Flavour(4, 64, 8))
        for i in range(40):
            heap.add_item(StandInItem(0x10 + i, b"\x01"))
        with pytest.raises(ValueError):
            packets(heap, max_packet_size=56)

    def test_item_id_too_large_for_flavour(self):
        heap = spead2.send.Heap(spead2.Flavour(4, 64, 56))
        heap.add_item(StandInItem(0x7F, b"\x01"))
        with pytest.raises(ValueError, match="ID"):
            heap.add_item(StandInItem(0x80, b"\x01"))

    def test_negative_item_id(self):
        with pytest.raises(spead2.RangeError):
            spead2.send.Heap().add_item(StandInItem(-1, b"\x01"))

    def test_heap_cnt_too_large_for_flavour(self):
        heap = spead2.send.Heap(spead2.Flavour(4, 64, 16))
        assert packets(heap, cnt=0xFFFF)
        with pytest.raises(ValueError):
            packets(heap, cnt=0x10000)
        with pytest.raises(spead2.RangeError):
            packets(heap, cnt=-1)

    def test_value_size_disagreeing_with_descriptor(self):
        heap = spead2.send.Heap()
        with pytest.raises(ValueError, match="descriptor"):
            heap.add_item(StandInItem(0x1000, bytes(7), shape=(2, 3), itemsize_bits=16))
        heap.add_item(StandInItem(0x1000, bytes(12), shape=(2, 3), itemsize_bits=16))
        heap.add_item(StandInItem(0x1001, bytes(5), shape=(3,), itemsize_bits=12))
        assert len(packets(heap)) == 1

    def test_buffer_errors_propagate(self):
        class Broken(StandInItem):
            def to_buffer(self):
                raise ValueError("no value")
        with pytest.raises(ValueError, match="no value"):
            spead2.send.Heap().add_item(Broken(0x1000, b""))

    def test_not_a_buffer(self):
        with pytest.raises(TypeError):
            spead2.send.Heap().add_item(StandInItem(0x1000, 12345))

    def test_wrong_flavour_type(self):
        with pytest.raises(TypeError):
            spead2.send.Heap("SPEAD-64-40")


class TestHeapReferences:
    def test_heap_keeps_addressed_values_alive_until_released(self):
        value = np.arange(1000, dtype=np.uint8)
        ref = weakref.ref(value)
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, value, variable=True))
        del value
        gc.collect()
        assert ref() is not None
        first = packets(heap)
        del heap
        gc.collect()
        assert ref() is None
        assert reassemble(first)[2] == bytes(i % 256 for i in range(1000))

    def test_packets_follow_value_changes_until_sent(self):
        # Values are referenced, not copied, when added.
        value = bytearray(b"before!!!")
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, value, variable=True))
        value[:6] = b"after!"
        assert packets(heap)[0].endswith(b"after!!!!")

    def test_referenced_bytearray_cannot_be_resized(self):
        value = bytearray(b"abcdefghij")
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, value, variable=True))
        with pytest.raises(BufferError):
            value.extend(b"more")
        del heap
        value.extend(b"more")


class TestPacketGenerator:
    def test_is_an_iterator_of_bytes(self):
        gen = spead2.send.PacketGenerator(spead2.send.Heap(), 1, 1472)
        assert iter(gen) is gen
        first = next(gen)
        assert isinstance(first, bytes)
        with pytest.raises(StopIteration):
            next(gen)

    def test_huge_packet_size_limit(self):
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, b"abc", variable=True))
        assert packets(heap, 1, 2**40) == [packet(1, 3, 0, [addressed(0x1000, 0)], b"abc")]

    def test_same_heap_can_be_generated_twice(self):
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, bytes(range(200)), variable=True))
        assert packets(heap, 4, 100) == packets(heap, 4, 100)
