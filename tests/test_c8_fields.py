"""``c8`` (character) fields: what they decode to and what they accept.

- inside a multi-field record on the bit-level path, a ``c8`` field is one
  byte: ``bytes`` of length 1 (as spead2 returns it);
- a 1-D item whose format is exactly ``[("c", 8)]`` is a ``str``;
- sending takes a one-character ``str`` or a one-byte ``bytes``;
- a received byte of 128 or more is not ASCII: ``UnicodeDecodeError``.
"""

import pytest

import spead2
import spead2.recv
from spead2._codec import BitFormat
from packets import concat
from test_recv_items import heap_with, receive

RECORD = [("b", 1), ("i", 7), ("c", 8), ("f", 32)]
# (True, 17, b"y", 1.0) in RECORD, most significant bit first:
#   b1   True        -> 1
#   i7   17          -> 001 0001        first byte 1001 0001 = 0x91
#   c8   "y" (0x79)  -> 0111 1001       0x79
#   f32  1.0         -> 0x3F800000      3F 80 00 00
# 48 bits: a whole number of bytes, no padding.
RECORD_BYTES = bytes.fromhex("91 79 3F 80 00 00")
RECORD_VALUE = (True, 17, b"y", 1.0)

PAIR = [("c", 8), ("u", 4)]
# Two PAIR elements ("a", 1) and ("Z", 15), 12 bits each:
#   0x61 0x1 0x5A 0xF -> 0110 0001  0001 0101  1010 1111 = 61 15 AF
PAIR_BYTES = bytes.fromhex("61 15 AF")


def record_item(value=None):
    return spead2.Item(0x1000, "rec", "", (), format=RECORD, value=value)


class TestBitFormat:
    def test_array_of_records(self):
        assert BitFormat(PAIR).unpack(PAIR_BYTES, (2,)) == [(b"a", 1), (b"Z", 15)]

    def test_pack_takes_str_or_bytes(self):
        assert BitFormat(PAIR).pack([("a", 1), (b"Z", 15)], (2,)) == PAIR_BYTES

    @pytest.mark.parametrize("char", ["", "yz", b"", b"yz", 121, None])
    def test_pack_needs_exactly_one_character(self, char):
        with pytest.raises(ValueError):
            BitFormat(PAIR).pack((char, 1), ())

    def test_non_ascii_byte_on_unpack(self):
        # 0xE9 in the c8 field
        with pytest.raises(UnicodeDecodeError):
            BitFormat(PAIR).unpack(bytes.fromhex("E9 10"), ())


class TestItem:
    def test_received_record_has_a_one_byte_bytes(self):
        item = record_item()
        item.set_from_raw(RECORD_BYTES)
        assert item.value == RECORD_VALUE
        assert type(item.value[2]) is bytes

    @pytest.mark.parametrize("char", ["y", b"y"])
    def test_sent_record_takes_str_or_bytes(self, char):
        assert bytes(record_item((True, 17, char, 1.0)).to_buffer()) == RECORD_BYTES

    def test_received_value_sends_back_unchanged(self):
        item = record_item()
        item.set_from_raw(RECORD_BYTES)
        assert bytes(record_item(item.value).to_buffer()) == RECORD_BYTES

    def test_non_ascii_byte_in_a_record(self):
        item = record_item()
        with pytest.raises(UnicodeDecodeError):
            item.set_from_raw(bytes.fromhex("91 E9 3F 80 00 00"))

    @pytest.mark.parametrize("shape", [(5,), (None,)])
    def test_one_dimensional_c8_item_is_a_str(self, shape):
        item = spead2.Item(0x1000, "name", "", shape, format=[("c", 8)])
        item.set_from_raw(b"hello")
        assert item.value == "hello"


def test_record_received_through_a_stream(thread_pool):
    record = spead2.Descriptor(0x1000, "rec", "", (), format=RECORD)
    name = spead2.Descriptor(0x1001, "name", "", (None,), format=[("c", 8)])
    data = concat(heap_with([record, name], [(0x1000, RECORD_BYTES), (0x1001, b"spead")]))
    (heap,) = receive(thread_pool, data)
    ig = spead2.ItemGroup()
    ig.update(heap)
    assert ig["rec"].value == RECORD_VALUE
    assert ig["name"].value == "spead"
