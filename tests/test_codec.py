"""Descriptor packets and the bit-level value codec (spead2._codec)."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from spead2._codec import BitFormat, RawDescriptor, decode_raw_descriptor, encode_raw_descriptor

HABS = [8, 16, 24, 32, 40, 48, 56]
BUG_COMPATS = list(range(8))


def h(text: str) -> bytes:
    """Bytes from hex digits; ``#`` starts a comment that runs to the end of the line."""
    return bytes.fromhex(" ".join(line.split("#")[0] for line in text.splitlines()))


# A descriptor is one SPEAD packet (big-endian throughout), derived by hand here:
#
# - header: magic 0x53, version 4, id width (64 - hab) / 8 bytes, address
#   width hab / 8 bytes, 00 00, number of item pointers (16 bits);
# - item pointers of 64 bits: bit 63 set for an immediate value, clear for an
#   address into the payload; then 63 - hab bits of item id; then hab bits of
#   value or address. The ids: HEAP_CNT 0x01, HEAP_LENGTH 0x02,
#   PAYLOAD_OFFSET 0x03, PAYLOAD_LENGTH 0x04, DESCRIPTOR_NAME 0x10,
#   DESCRIPTOR_DESCRIPTION 0x11, DESCRIPTOR_SHAPE 0x12, DESCRIPTOR_FORMAT 0x13,
#   DESCRIPTOR_ID 0x14, DESCRIPTOR_DTYPE 0x15;
# - payload: the addressed fields, each running to the next address (or the
#   end). A format entry is an ASCII code byte and a bit count of
#   (64 - hab) / 8 bytes; a shape entry a flag byte (1: variable dimension)
#   and a size of hab / 8 bytes. BUG_COMPAT_DESCRIPTOR_WIDTHS fixes the
#   widths at SPEAD-64-40's whatever the flavour (1 + 3 and 8 bytes), and
#   under BUG_COMPAT_SHAPE_BIT_1 the flag for a variable dimension is 2.

# SPEAD-64-40: pointers are 1 mode bit, 23 id bits and 40 address bits, so the
# id is bytes 1-2 (after the mode bit in byte 0) and the value bytes 3-7.
# Item 0x1234, name "ab", description "c", format [("u", 8)], shape [3].
FORMAT_DESCRIPTOR_64_40 = h("""
53 04 03 05 00 00 00 09   # ids 3 bytes, addresses 5 bytes, 9 pointers
80 00 01 00 00 00 00 01   # immediate HEAP_CNT = 1
80 00 02 00 00 00 00 0d   # immediate HEAP_LENGTH = 13
80 00 03 00 00 00 00 00   # immediate PAYLOAD_OFFSET = 0
80 00 04 00 00 00 00 0d   # immediate PAYLOAD_LENGTH = 13
80 00 14 00 00 00 12 34   # immediate DESCRIPTOR_ID = 0x1234
00 00 10 00 00 00 00 00   # NAME at 0
00 00 11 00 00 00 00 02   # DESCRIPTION at 2
00 00 13 00 00 00 00 03   # FORMAT at 3
00 00 12 00 00 00 00 07   # SHAPE at 7
61 62                     # 0-1: name "ab"
63                        # 2: description "c"
75 00 00 08               # 3-6: format "u", 8 bits (3-byte count)
00 00 00 00 00 03         # 7-12: shape: fixed (flag 0), size 3 (5 bytes)
""")

# SPEAD-64-48 under BUG_COMPAT_PYSPEAD_0_5_2: 1 mode bit, 15 id bits, 48
# address bits, so the id is bytes 0-1 (less the mode bit) and the value
# bytes 2-7; DESCRIPTOR_WIDTHS makes a format entry 1 + 3 bytes and a shape
# entry 8 bytes, and SHAPE_BIT_1 marks the variable dimension with 2.
# Item 0x1234, name "n", no description, format [("u", 12)], shape [None].
BUGGY_DESCRIPTOR_64_48 = h("""
53 04 02 06 00 00 00 09   # ids 2 bytes, addresses 6 bytes, 9 pointers
80 01 00 00 00 00 00 01   # immediate HEAP_CNT = 1
80 02 00 00 00 00 00 0d   # immediate HEAP_LENGTH = 13
80 03 00 00 00 00 00 00   # immediate PAYLOAD_OFFSET = 0
80 04 00 00 00 00 00 0d   # immediate PAYLOAD_LENGTH = 13
80 14 00 00 00 00 12 34   # immediate DESCRIPTOR_ID = 0x1234
00 10 00 00 00 00 00 00   # NAME at 0
00 11 00 00 00 00 00 01   # DESCRIPTION at 1 (empty: FORMAT is also at 1)
00 13 00 00 00 00 00 01   # FORMAT at 1
00 12 00 00 00 00 00 05   # SHAPE at 5
6e                        # 0: name "n"
75 00 00 0c               # 1-4: format "u", 12 bits (3-byte count)
02 00 00 00 00 00 00 00   # 5-12: shape: variable (flag 2), size 0 (8 bytes in all)
""")

# SPEAD-64-48 without bug compatibility: a format entry is 1 + 2 bytes, a
# shape entry 1 + 6 bytes with 1 marking the variable dimension. The same
# item as above.
PLAIN_DESCRIPTOR_64_48 = h("""
53 04 02 06 00 00 00 09   # ids 2 bytes, addresses 6 bytes, 9 pointers
80 01 00 00 00 00 00 01   # immediate HEAP_CNT = 1
80 02 00 00 00 00 00 0b   # immediate HEAP_LENGTH = 11
80 03 00 00 00 00 00 00   # immediate PAYLOAD_OFFSET = 0
80 04 00 00 00 00 00 0b   # immediate PAYLOAD_LENGTH = 11
80 14 00 00 00 00 12 34   # immediate DESCRIPTOR_ID = 0x1234
00 10 00 00 00 00 00 00   # NAME at 0
00 11 00 00 00 00 00 01   # DESCRIPTION at 1 (empty)
00 13 00 00 00 00 00 01   # FORMAT at 1
00 12 00 00 00 00 00 04   # SHAPE at 4
6e                        # 0: name "n"
75 00 0c                  # 1-3: format "u", 12 bits (2-byte count)
01 00 00 00 00 00 00      # 4-10: shape: variable (flag 1), size 0 (6 bytes)
""")


class TestEncode:
    def test_format_descriptor_bytes_64_40(self):
        raw = RawDescriptor(0x1234, b"ab", b"c", [3], [("u", 8)])
        assert encode_raw_descriptor(raw, 40, 0) == FORMAT_DESCRIPTOR_64_40

    def test_bug_compat_descriptor_bytes_64_48(self):
        raw = RawDescriptor(0x1234, b"n", b"", [-1], [("u", 12)])
        assert encode_raw_descriptor(raw, 48, 7) == BUGGY_DESCRIPTOR_64_48

    def test_plain_descriptor_bytes_64_48(self):
        raw = RawDescriptor(0x1234, b"n", b"", [-1], [("u", 12)])
        assert encode_raw_descriptor(raw, 48, 0) == PLAIN_DESCRIPTOR_64_48

    def test_numpy_header_adds_dtype_item_after_shape(self):
        header = b"{'descr': '<u2', 'fortran_order': False, 'shape': (2,)}"
        raw = RawDescriptor(0x1000, b"a", b"", [2], [], header)
        # SPEAD-64-40 (layout above); the payload is 7 bytes and the header
        expected = h("""
            53 04 03 05 00 00 00 0a   # 10 pointers
            80 00 01 00 00 00 00 01   # immediate HEAP_CNT = 1
            80 00 02 00 00 00 00 {n:02x}   # immediate HEAP_LENGTH = n
            80 00 03 00 00 00 00 00   # immediate PAYLOAD_OFFSET = 0
            80 00 04 00 00 00 00 {n:02x}   # immediate PAYLOAD_LENGTH = n
            80 00 14 00 00 00 10 00   # immediate DESCRIPTOR_ID = 0x1000
            00 00 10 00 00 00 00 00   # NAME at 0
            00 00 11 00 00 00 00 01   # DESCRIPTION at 1 (empty)
            00 00 13 00 00 00 00 01   # FORMAT at 1 (empty)
            00 00 12 00 00 00 00 01   # SHAPE at 1
            00 00 15 00 00 00 00 07   # DTYPE at 7
            61                        # 0: name "a"
            00 00 00 00 00 02         # 1-6: shape: fixed, size 2; the numpy header follows
        """.format(n=7 + len(header))) + header
        assert encode_raw_descriptor(raw, 40, 0) == expected

    def test_none_in_shape_is_variable(self):
        a = encode_raw_descriptor(RawDescriptor(1, shape=[None], format=[("u", 8)]), 40, 0)
        b = encode_raw_descriptor(RawDescriptor(1, shape=[-1], format=[("u", 8)]), 40, 0)
        assert a == b

    @pytest.mark.parametrize("hab", [0, 4, 64, 72])
    def test_bad_heap_address_bits(self, hab):
        with pytest.raises(ValueError):
            encode_raw_descriptor(RawDescriptor(1), hab, 0)

    def test_id_too_large_for_flavour(self):
        with pytest.raises(ValueError):
            encode_raw_descriptor(RawDescriptor(0x1000), 8, 0)

    def test_negative_id(self):
        with pytest.raises(ValueError):
            encode_raw_descriptor(RawDescriptor(-1), 40, 0)

    def test_format_bits_too_wide_for_field(self):
        # SPEAD-64-56: one byte of bit count
        with pytest.raises(ValueError):
            encode_raw_descriptor(RawDescriptor(1, format=[("u", 256)]), 56, 0)

    def test_shape_too_large_for_field(self):
        # SPEAD-64-8: one byte of dimension
        with pytest.raises(ValueError):
            encode_raw_descriptor(RawDescriptor(1, shape=[256], format=[("u", 8)]), 8, 0)

    def test_multi_character_format_code(self):
        with pytest.raises(ValueError):
            encode_raw_descriptor(RawDescriptor(1, format=[("uu", 8)]), 40, 0)


class TestDecode:
    def test_hand_built_format_descriptor(self):
        raw = decode_raw_descriptor(FORMAT_DESCRIPTOR_64_40, 0)
        assert raw.id == 0x1234
        assert raw.name == b"ab"
        assert raw.description == b"c"
        assert raw.format == [("u", 8)]
        assert raw.shape == [3]
        assert raw.numpy_header == b""

    def test_hand_built_buggy_descriptor(self):
        raw = decode_raw_descriptor(BUGGY_DESCRIPTOR_64_48, 7)
        assert raw == RawDescriptor(0x1234, b"n", b"", [-1], [("u", 12)])

    def test_shape_bit_1_ignores_bit_0(self):
        # Under SHAPE_BIT_1 only bit 1 marks a variable dimension.
        packet = bytearray(BUGGY_DESCRIPTOR_64_48)
        packet[-8] = 0x01
        raw = decode_raw_descriptor(bytes(packet), 7)
        assert raw.shape == [0]

    def test_plain_descriptor_64_48(self):
        raw = decode_raw_descriptor(PLAIN_DESCRIPTOR_64_48, 0)
        assert raw == RawDescriptor(0x1234, b"n", b"", [-1], [("u", 12)])

    def test_missing_fields_take_empty_defaults(self):
        header = b"{'descr': '<f4', 'fortran_order': False, 'shape': ()}"
        # SPEAD-64-40 (layout above) without HEAP_LENGTH, DESCRIPTION, FORMAT
        # or SHAPE
        packet = h("""
            53 04 03 05 00 00 00 06   # 6 pointers
            80 00 01 00 00 00 00 01   # immediate HEAP_CNT = 1
            80 00 03 00 00 00 00 00   # immediate PAYLOAD_OFFSET = 0
            80 00 04 00 00 00 00 {n:02x}   # immediate PAYLOAD_LENGTH = n
            80 00 14 00 00 00 10 01   # immediate DESCRIPTOR_ID = 0x1001
            00 00 10 00 00 00 00 00   # NAME at 0
            00 00 15 00 00 00 00 01   # DTYPE at 1
            78                        # 0: name "x"; the numpy header follows
        """.format(n=1 + len(header))) + header
        raw = decode_raw_descriptor(packet, 0)
        assert raw == RawDescriptor(0x1001, b"x", b"", [], [], header)

    def test_items_sharing_an_address_as_in_a_received_heap(self):
        # NAME and DESCRIPTION both at address 0: as in any received heap,
        # the first in pointer order is empty (so absent) and the second
        # runs to the next address. Header (64-40): magic, version, 3 id
        # bytes, 5 address bytes, 6 pointers; then HEAP_CNT=1,
        # PAYLOAD_OFFSET=0, PAYLOAD_LENGTH=2, DESCRIPTOR_ID_ID=0x1001
        # (immediates: top bit set), NAME and DESCRIPTION addressed at 0.
        packet = h("""
            53 04 03 05 00 00 00 06
            80 00 01 00 00 00 00 01
            80 00 03 00 00 00 00 00
            80 00 04 00 00 00 00 02
            80 00 14 00 00 00 10 01
            00 00 10 00 00 00 00 00
            00 00 11 00 00 00 00 00
            6e 6d
        """)
        raw = decode_raw_descriptor(packet, 0)
        assert (raw.id, raw.name, raw.description) == (0x1001, b"", b"nm")

    def test_header_immediates_in_any_order_and_pointers_unsorted(self):
        # PAYLOAD_LENGTH first, DESCRIPTION pointer before NAME pointer.
        packet = h("""
            53 04 03 05 00 00 00 07   # SPEAD-64-40 (layout above), 7 pointers
            80 00 04 00 00 00 00 05   # immediate PAYLOAD_LENGTH = 5
            80 00 14 00 00 00 00 42   # immediate DESCRIPTOR_ID = 0x42
            00 00 11 00 00 00 00 02   # DESCRIPTION at 2
            80 00 01 00 00 00 00 07   # immediate HEAP_CNT = 7
            80 00 03 00 00 00 00 00   # immediate PAYLOAD_OFFSET = 0
            80 00 02 00 00 00 00 05   # immediate HEAP_LENGTH = 5
            00 00 10 00 00 00 00 00   # NAME at 0
            6e 6d 64 65 73            # "nm" (name, 0-1), "des" (description, 2-4)
        """)
        raw = decode_raw_descriptor(packet, 0)
        assert raw.id == 0x42
        assert raw.name == b"nm"
        assert raw.description == b"des"

    def test_trailing_bytes_after_packet_are_ignored(self):
        assert decode_raw_descriptor(FORMAT_DESCRIPTOR_64_40 + b"\0\0", 0).name == b"ab"

    @pytest.mark.parametrize("cut", range(len(FORMAT_DESCRIPTOR_64_40)))
    def test_truncated_packet_raises_value_error(self, cut):
        with pytest.raises(ValueError):
            decode_raw_descriptor(FORMAT_DESCRIPTOR_64_40[:cut], 0)

    def test_bad_magic(self):
        with pytest.raises(ValueError, match="magic"):
            decode_raw_descriptor(b"\x54" + FORMAT_DESCRIPTOR_64_40[1:], 0)

    def test_bad_version(self):
        with pytest.raises(ValueError, match="version"):
            decode_raw_descriptor(b"\x53\x03" + FORMAT_DESCRIPTOR_64_40[2:], 0)

    def test_no_descriptor_id(self):
        packet = bytearray(FORMAT_DESCRIPTOR_64_40)
        packet[8 + 4 * 8 + 2] = 0x00   # DESCRIPTOR_ID_ID -> NULL_ID
        with pytest.raises(ValueError, match="DESCRIPTOR_ID"):
            decode_raw_descriptor(bytes(packet), 0)

    def test_address_beyond_payload(self):
        packet = bytearray(FORMAT_DESCRIPTOR_64_40)
        packet[8 + 8 * 8 + 7] = 0x0e   # SHAPE at 14 of a 13-byte payload
        with pytest.raises(ValueError, match="beyond"):
            decode_raw_descriptor(bytes(packet), 0)

    def test_format_not_whole_entries(self):
        packet = bytearray(FORMAT_DESCRIPTOR_64_40)
        packet[8 + 8 * 8 + 7] = 0x08   # FORMAT now 5 bytes long
        with pytest.raises(ValueError, match="format"):
            decode_raw_descriptor(bytes(packet), 0)

    def test_shape_not_whole_entries(self):
        # The 64-40 packet read with buggy widths: 6 shape bytes, entries of 8.
        with pytest.raises(ValueError, match="shape"):
            decode_raw_descriptor(FORMAT_DESCRIPTOR_64_40, 1)

    def test_payload_offset_not_zero(self):
        packet = bytearray(FORMAT_DESCRIPTOR_64_40)
        packet[8 + 2 * 8 + 7] = 0x01
        with pytest.raises(ValueError):
            decode_raw_descriptor(bytes(packet), 0)

    def test_heap_length_beyond_packet(self):
        packet = bytearray(FORMAT_DESCRIPTOR_64_40)
        packet[8 + 1 * 8 + 7] = 0x20
        with pytest.raises(ValueError, match="heap length"):
            decode_raw_descriptor(bytes(packet), 0)

    def test_accepts_any_buffer(self):
        assert decode_raw_descriptor(memoryview(bytearray(FORMAT_DESCRIPTOR_64_40)), 0).id == 0x1234

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200), st.integers(0, 7))
    def test_random_bytes_never_crash(self, data, bug_compat):
        decode_or_reject(data, bug_compat)

    @settings(max_examples=300, deadline=None)
    @given(st.data(), st.integers(0, 7))
    def test_corrupted_descriptor_never_crashes(self, data, bug_compat):
        packet = bytearray(FORMAT_DESCRIPTOR_64_40)
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(packet) - 1))
            packet[pos] = data.draw(st.integers(0, 255))
        decode_or_reject(bytes(packet), bug_compat)


def decode_or_reject(packet, bug_compat):
    """Decode ``packet``: a rejection is a ValueError (anything else escapes
    and fails the test), and a descriptor accepted is one the encoder writes
    back, in the packet's own widths, as a packet that decodes the same."""
    try:
        raw = decode_raw_descriptor(packet, bug_compat)
    except ValueError:
        return None
    assert isinstance(raw, RawDescriptor)
    assert isinstance(raw.name, bytes) and isinstance(raw.description, bytes)
    # (the decoder accepts any byte as a format code; the encoder only ASCII)
    if all(ord(code) < 128 for code, _ in raw.format):
        hab = 8 * packet[3]
        again = encode_raw_descriptor(raw, hab, bug_compat)
        assert decode_raw_descriptor(again, bug_compat) == raw
    return raw


def raw_descriptors(hab):
    size_max = (1 << min(hab, 56)) - 1
    bits_max = (1 << min(64 - hab, 24)) - 1
    text = st.binary(max_size=20)
    return st.builds(
        RawDescriptor,
        id=st.integers(0, (1 << min(hab, 63)) - 1),
        name=text, description=text,
        shape=st.lists(st.one_of(st.just(-1), st.integers(0, size_max)), max_size=4),
        format=st.lists(st.tuples(st.sampled_from("uifbc0"), st.integers(0, bits_max)), max_size=4),
        numpy_header=text,
    )


@pytest.mark.parametrize("hab", HABS)
@pytest.mark.parametrize("bug_compat", BUG_COMPATS)
def test_round_trip_every_flavour(hab, bug_compat):
    @settings(max_examples=15, deadline=None)
    @given(raw_descriptors(hab))
    def check(raw):
        packet = encode_raw_descriptor(raw, hab, bug_compat)
        assert packet[2:4] == bytes([(64 - hab) // 8, hab // 8])
        assert decode_raw_descriptor(packet, bug_compat) == raw
    check()


# Bit-level codec. Values that are not whole numpy dtypes are packed as bit
# fields, most significant bit first, element after element with no gaps, the
# last byte padded with zero bits: three u12 values ABC, DEF, 123 (hex) are
# the 36 bits ABCDEF123 and 4 bits of padding, bytes AB CD EF 12 30. As i12
# (two's complement) the same bits are 0xABC - 0x1000 = -1348, 0xDEF - 0x1000
# = -529 and 0x123 = 291.

def test_u12_unpack_example():
    assert BitFormat([("u", 12)]).unpack(h("AB CD EF 12 30"), (3,)) == [0xABC, 0xDEF, 0x123]


def test_i12_unpack_example():
    assert BitFormat([("i", 12)]).unpack(h("AB CD EF 12 30"), (3,)) == [-1348, -529, 291]


def test_u12_pack_example():
    assert BitFormat([("u", 12)]).pack([0xABC, 0xDEF, 0x123], (3,)) == h("AB CD EF 12 30")


def test_i12_pack_example():
    assert BitFormat([("i", 12)]).pack([-1348, -529, 291], (3,)) == h("AB CD EF 12 30")


# One bit (True: 1), then 17 in 7 bits (0010001): 1001 0001 = 0x91; "y" is
# 0x79; 1.0 as a big-endian IEEE float32 is 3F 80 00 00.
MIXED = [("b", 1), ("i", 7), ("c", 8), ("f", 32)]
# (True, 17, b"y", 1.0) in MIXED, most significant bit first:
#   b1  True          1
#   i7  17            0010001      -> first byte 1001 0001 = 0x91
#   c8  "y" = 0x79    01111001     -> 0x79
#   f32 1.0           0x3F800000   -> 3F 80 00 00
# 48 bits, a whole number of bytes: no padding.
MIXED_BYTES = "91 79 3F 80 00 00"


@pytest.mark.parametrize("char", ["y", b"y"])
def test_mixed_pack_example(char):
    assert BitFormat(MIXED).pack((True, 17, char, 1.0), ()) == h(MIXED_BYTES)


def test_mixed_unpack_example():
    # a character field comes back as one byte, as spead2 returns it
    value = BitFormat(MIXED).unpack(h(MIXED_BYTES), ())
    assert value == (True, 17, b"y", 1.0)
    assert [type(v) for v in value] == [bool, int, bytes, float]


def test_u1_elements_are_packed_back_to_back():
    # bits 1011 0001 | 1 and 7 bits of padding
    assert BitFormat([("u", 1)]).pack([1, 0, 1, 1, 0, 0, 0, 1, 1], (9,)) == h("B1 80")


def test_b1_unpack():
    # A0 = 1010 0000: the first three bits
    assert BitFormat([("b", 1)]).unpack(h("A0"), (3,)) == [True, False, True]


def test_u48_scalar():
    assert BitFormat([("u", 48)]).unpack(h("12 34 56 78 9A BC"), ()) == 0x123456789ABC


def test_i48_negative():
    # 0x9234567890AB has its top bit set: 0x9234567890AB - 2**48 = -0x6DCBA9876F55
    assert BitFormat([("i", 48)]).unpack(h("92 34 56 78 90 AB"), ()) == -0x6DCBA9876F55


def test_f64_inside_odd_layout():
    fmt = BitFormat([("u", 4), ("f", 64), ("u", 4)])
    data = fmt.pack([(0xA, -2.5, 0x5)], (1,))
    expected_bits = (0xA << 68) | (struct.unpack(">Q", struct.pack(">d", -2.5))[0] << 4) | 0x5
    assert data == expected_bits.to_bytes(9, "big")
    assert fmt.unpack(data, (1,)) == [(0xA, -2.5, 0x5)]


def test_two_dimensional_nested_lists():
    fmt = BitFormat([("u", 4)])
    # one nibble per element, rows in order
    assert fmt.unpack(h("12 34 56"), (2, 3)) == [[1, 2, 3], [4, 5, 6]]
    assert fmt.pack([[1, 2, 3], [4, 5, 6]], (2, 3)) == h("12 34 56")


def test_wide_fields():
    fmt = BitFormat([("u", 100), ("i", 100)])
    value = [(2 ** 100 - 1, -(2 ** 99))]
    assert fmt.unpack(fmt.pack(value, (1,)), (1,)) == value


def test_pack_accepts_numpy_arrays():
    np = pytest.importorskip("numpy")
    # nibbles 1, 2, 3 and a zero nibble of padding
    assert BitFormat([("u", 4)]).pack(np.array([1, 2, 3], np.uint8), (3,)) == h("12 30")


class TestBitFormatErrors:
    @pytest.mark.parametrize("fmt", [
        [], [("0", 8)], [("x", 8)], [("c", 7)], [("c", 16)], [("f", 16)], [("f", 48)],
        [("u", 0)], [("i", -1)],
    ])
    def test_bad_format(self, fmt):
        with pytest.raises(ValueError):
            BitFormat(fmt)

    def test_size_mismatch_on_unpack(self):
        # 3 x 12 bits take 5 bytes: 4 are too few and 6 too many
        with pytest.raises(ValueError):
            BitFormat([("u", 12)]).unpack(h("AB CD EF 12"), (3,))
        with pytest.raises(ValueError):
            BitFormat([("u", 12)]).unpack(h("AB CD EF 12 30 00"), (3,))

    @pytest.mark.parametrize("fmt, value", [
        ([("u", 4)], 16), ([("u", 4)], -1), ([("i", 4)], 8), ([("i", 4)], -9),
    ])
    def test_out_of_range(self, fmt, value):
        with pytest.raises(ValueError):
            BitFormat(fmt).pack(value, ())

    def test_wrong_length(self):
        with pytest.raises(ValueError):
            BitFormat([("u", 4)]).pack([1, 2], (3,))

    def test_wrong_field_count(self):
        with pytest.raises(ValueError):
            BitFormat([("u", 4), ("u", 4)]).pack((1, 2, 3), ())

    def test_non_ascii_character_on_pack(self):
        with pytest.raises(UnicodeEncodeError):
            BitFormat([("c", 8), ("u", 4)]).pack(("é", 1), ())

    def test_non_ascii_character_on_unpack(self):
        # c8 = 0xE9 (not ASCII), then u4 = 1
        with pytest.raises(UnicodeDecodeError):
            BitFormat([("c", 8), ("u", 4)]).unpack(h("E9 10"), ())


@st.composite
def formats_and_values(draw):
    fields = draw(st.lists(st.sampled_from(
        [("u", b) for b in (1, 3, 12, 48, 64, 65)] + [("i", b) for b in (2, 7, 12, 48, 64)]
        + [("b", 1), ("b", 3), ("c", 8), ("f", 32), ("f", 64)]), min_size=1, max_size=4))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))

    def field_value(code, bits):
        if code == "u":
            return st.integers(0, 2 ** bits - 1)
        if code == "i":
            return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if code == "b":
            return st.booleans()
        if code == "c":
            return st.integers(0, 127).map(lambda c: bytes([c]))
        width = 32 if bits == 32 else 64
        return st.floats(width=width, allow_nan=False)

    if len(fields) == 1:
        element = field_value(*fields[0])
    else:
        element = st.tuples(*(field_value(*f) for f in fields))

    def build(dims):
        if not dims:
            return element
        return st.lists(build(dims[1:]), min_size=dims[0], max_size=dims[0])

    return fields, shape, draw(build(shape))


@settings(max_examples=200, deadline=None)
@given(formats_and_values())
def test_bit_codec_round_trip(case):
    fields, shape, value = case
    fmt = BitFormat(fields)
    data = fmt.pack(value, shape)
    count = 1
    for d in shape:
        count *= d
    assert len(data) == (count * fmt.itemsize_bits + 7) // 8
    assert fmt.unpack(data, shape) == value


def test_huge_shape_is_a_size_error_not_an_overflow():
    with pytest.raises(ValueError):
        BitFormat([("u", 4)]).unpack(b"", (2 ** 32, 2 ** 32))


def test_negative_dimension():
    with pytest.raises(ValueError):
        BitFormat([("u", 4)]).pack([], (-1,))
    with pytest.raises(ValueError):
        BitFormat([("u", 4)]).unpack(b"", (-1,))
