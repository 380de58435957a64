"""Sending real spead2.Item values and descriptors: bytes built by hand.

Packets are built with ``test_send_support.packet`` (layout in that module's
docstring; how heaps are packetised in ``test_send_packets``). A descriptor
travels as an addressed DESCRIPTOR_ID (5) item whose value is a whole SPEAD
packet of its own (``descriptor_packet`` below): the header immediates, an
immediate DESCRIPTOR_ID_ID (0x14) holding the item's id, and addressed
fields NAME (0x10), DESCRIPTION (0x11), FORMAT (0x13), SHAPE (0x12) and, for
numpy items, DTYPE (0x15, a numpy header). A format is a list of entries of
one ASCII code byte and a bit count of ``(64 - hab) // 8`` bytes; a shape a
list of entries of one flag byte (1 = variable dimension, or 2 under
BUG_COMPAT_SHAPE_BIT_1) and a size of ``hab // 8`` bytes.
"""

import numpy as np
import pytest

import spead2
import spead2.send
from test_send_support import addressed, immediate, numpy_header, packet

pytestmark = pytest.mark.skipif(
    not hasattr(spead2, "Item"), reason="spead2.Item (the items layer) is not available")

F40 = spead2.Flavour(4, 64, 40)
F48 = spead2.Flavour(4, 64, 48)


def one_packet(heap, cnt=1):
    packets = list(spead2.send.PacketGenerator(heap, cnt, 9000))
    assert len(packets) == 1
    return packets[0]


def value_heap(item, flavour=F40):
    heap = spead2.send.Heap(flavour)
    heap.add_item(item)
    return heap


def descriptor_packet(id, name, description, fmt, shape, dtype_text=None, hab=40):
    """A descriptor as its own one-packet heap (cnt 1)."""
    fields = [(0x10, name), (0x11, description), (0x13, fmt), (0x12, shape)]
    if dtype_text is not None:
        fields.append((0x15, dtype_text))
    pointers = [immediate(0x14, id, hab)]
    offset = 0
    for field_id, data in fields:
        pointers.append(addressed(field_id, offset, hab))
        offset += len(data)
    payload = b"".join(data for _, data in fields)
    return packet(1, len(payload), 0, pointers, payload, hab)


def shape_field(shape, hab=40, variable_marker=1):
    out = b""
    for dim in shape:
        if dim is None:
            out += bytes([variable_marker]) + bytes(hab // 8)
        else:
            out += b"\0" + dim.to_bytes(hab // 8, "big")
    return out


def format_field(fmt, hab=40):
    return b"".join(code.encode() + bits.to_bytes((64 - hab) // 8, "big") for code, bits in fmt)


class TestValues:
    def test_numpy_c_order(self):
        value = np.arange(6, dtype="<u2").reshape(2, 3)
        item = spead2.Item(0x1000, "x", "", (2, 3), dtype="<u2", value=value)
        assert one_packet(value_heap(item)) == packet(
            1, 12, 0, [addressed(0x1000, 0)], value.tobytes(order="C"))

    def test_numpy_big_endian_dtype(self):
        value = np.arange(6, dtype=">u2").reshape(2, 3)
        item = spead2.Item(0x1000, "x", "", (2, 3), dtype=">u2", value=value)
        # 0, 1, ..., 5 as 16-bit big-endian integers, in row order
        assert one_packet(value_heap(item)) == packet(
            1, 12, 0, [addressed(0x1000, 0)], bytes.fromhex("000000010002000300040005"))

    def test_numpy_fortran_order(self):
        value = np.arange(6, dtype="<u2").reshape(2, 3)
        item = spead2.Item(0x1000, "x", "", (2, 3), dtype="<u2", order="F", value=value)
        # [[0, 1, 2], [3, 4, 5]] column by column: 0, 3, 1, 4, 2, 5 as
        # 16-bit little-endian integers
        assert one_packet(value_heap(item)) == packet(
            1, 12, 0, [addressed(0x1000, 0)], bytes.fromhex("000003000100040002000500"))

    def test_non_contiguous_value_sent_contiguous(self):
        base = np.arange(24, dtype=np.uint8).reshape(4, 6)
        value = base[::2, ::2]
        item = spead2.Item(0x1000, "x", "", (2, 3), dtype=np.uint8, value=value)
        assert one_packet(value_heap(item)) == packet(
            1, 6, 0, [addressed(0x1000, 0)], bytes([0, 2, 4, 12, 14, 16]))

    def test_small_numpy_value_is_immediate(self):
        item = spead2.Item(0x1000, "x", "", (2,), dtype="<u2", value=np.array([1, 2]))
        # bytes 01 00 02 00, right-aligned in the 5-byte address field
        assert one_packet(value_heap(item)) == packet(
            1, 1, 0, [immediate(0x1000, 0x0001000200), addressed(0, 0)], b"\0")

    def test_scalar_format_immediate_right_aligned(self):
        item = spead2.Item(0x1000, "x", "", (), format=[("u", 32)], value=0x12345678)
        assert one_packet(value_heap(item, F48), 5) == packet(
            5, 1, 0, [immediate(0x1000, 0x12345678, 48), addressed(0, 0, 48)], b"\0", 48)

    def test_fallback_format_bit_packed_and_never_immediate(self):
        # 36 bits would fit the 48-bit address field, but elements that are
        # not whole bytes are always addressed (as the reference sends them)
        item = spead2.Item(0x1000, "x", "", (3,), format=[("u", 12)],
                           value=[0xABC, 0xDEF, 0x123])
        # the 12-bit fields back to back, most significant bit first: ABC DEF
        # 123, then 4 zero bits to the byte boundary
        assert one_packet(value_heap(item, F48)) == packet(
            1, 5, 0, [addressed(0x1000, 0, 48)], bytes.fromhex("ABCDEF1230"), 48)

    def test_whole_byte_fallback_format_is_immediate(self):
        item = spead2.Item(0x1000, "x", "", (), format=[("u", 24)], value=0xABCDEF)
        assert one_packet(value_heap(item, F48)) == packet(
            1, 1, 0, [immediate(0x1000, 0xABCDEF, 48), addressed(0, 0, 48)], b"\0", 48)

    def test_mixed_fallback_record(self):
        item = spead2.Item(0x1000, "x", "", (), format=[("b", 1), ("i", 7), ("c", 8), ("f", 32)],
                           value=(True, 17, "y", 1.0))
        # bits 1 (True) and 0010001 (17) make 0x91; "y" is 0x79; 1.0 as a
        # big-endian float32 is 3F 80 00 00
        assert one_packet(value_heap(item)) == packet(
            1, 6, 0, [addressed(0x1000, 0)], bytes.fromhex("91793F800000"))

    def test_variable_size_item_never_immediate(self):
        item = spead2.Item(0x1000, "x", "", (None,), format=[("u", 8)], value=[1, 2])
        assert one_packet(value_heap(item)) == packet(
            1, 2, 0, [addressed(0x1000, 0)], b"\x01\x02")

    def test_string_value(self):
        item = spead2.Item(0x1000, "x", "", (None,), format=[("c", 8)], value="hello")
        assert one_packet(value_heap(item)) == packet(
            1, 5, 0, [addressed(0x1000, 0)], b"hello")

    def test_large_value_spans_packets_zero_copy(self):
        value = np.arange(100000, dtype=np.uint32)
        item = spead2.Item(0x1000, "x", "", value.shape, dtype=np.uint32, value=value)
        heap = value_heap(item)
        packets = list(spead2.send.PacketGenerator(heap, 1, 1472))
        payload = packets[0][48:] + b"".join(p[40:] for p in packets[1:])
        assert payload == value.tobytes()


class TestDescriptors:
    def test_numpy_descriptor(self):
        item = spead2.Item(0x1234, "nm", "dsc", (2, 3), dtype="<u2")
        expected = descriptor_packet(0x1234, b"nm", b"dsc", b"", shape_field((2, 3)),
                                     numpy_header(np.dtype("<u2"), False, (2, 3)))
        heap = spead2.send.Heap()
        heap.add_descriptor(item)
        assert one_packet(heap) == packet(1, len(expected), 0,
                                          [addressed(spead2.DESCRIPTOR_ID, 0)], expected)

    def test_format_descriptor_every_flavour(self):
        for hab in range(16, 64, 8):
            flavour = spead2.Flavour(4, 64, hab)
            item = spead2.Item(0x12, "nm", "dsc", (None, 4), format=[("u", 8), ("f", 32)])
            expected = descriptor_packet(0x12, b"nm", b"dsc",
                                         format_field([("u", 8), ("f", 32)], hab),
                                         shape_field((None, 4), hab), hab=hab)
            heap = spead2.send.Heap(flavour)
            heap.add_descriptor(item)
            assert one_packet(heap) == packet(1, len(expected), 0,
                                              [addressed(spead2.DESCRIPTOR_ID, 0, hab)],
                                              expected, hab), hab

    def test_shape_bit_1_marks_variable_dimension_with_2(self):
        flavour = spead2.Flavour(4, 64, 40, spead2.BUG_COMPAT_SHAPE_BIT_1)
        item = spead2.Item(0x12, "nm", "dsc", (None,), format=[("u", 8)])
        heap = spead2.send.Heap(flavour)
        heap.add_descriptor(item)
        expected = descriptor_packet(0x12, b"nm", b"dsc", format_field([("u", 8)]),
                                     shape_field((None,), variable_marker=2))
        assert one_packet(heap) == packet(1, len(expected), 0,
                                          [addressed(spead2.DESCRIPTOR_ID, 0)], expected)

    def test_item_group_first_heap(self):
        ig = spead2.send.ItemGroup()
        ig.add_item(0x1000, "a", "first", (), format=[("u", 16)], value=0x0102)
        ig.add_item(0x1001, "b", "second", (4,), dtype="<i4", value=np.array([1, -1, 2, -2]))
        stream = spead2.send.BytesStream(spead2.ThreadPool())
        stream.send_heap(ig.get_heap())
        stream.send_heap(ig.get_end())
        desc_a = descriptor_packet(0x1000, b"a", b"first", format_field([("u", 16)]), b"")
        desc_b = descriptor_packet(0x1001, b"b", b"second", b"", shape_field((4,)),
                                   numpy_header(np.dtype("<i4"), False, (4,)))
        b_value = np.array([1, -1, 2, -2], "<i4").tobytes()
        payload = desc_a + desc_b + b_value
        first = packet(1, len(payload), 0, [
            addressed(spead2.DESCRIPTOR_ID, 0), addressed(spead2.DESCRIPTOR_ID, len(desc_a)),
            immediate(0x1000, 0x0102), addressed(0x1001, len(desc_a) + len(desc_b))], payload)
        end = packet(2, 1, 0, [immediate(spead2.STREAM_CTRL_ID, spead2.CTRL_STREAM_STOP),
                               addressed(0, 0)], b"\0")
        assert stream.getvalue() == first + end
