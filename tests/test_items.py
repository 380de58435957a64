"""Descriptor, Item and ItemGroup: validation, wire conversions and value mapping."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import spead2
from spead2 import Descriptor, Flavour, Item, ItemGroup
from spead2._codec import RawDescriptor, decode_raw_descriptor
from test_codec import FORMAT_DESCRIPTOR_64_40

HABS = [8, 16, 24, 32, 40, 48, 56]
BUG_COMPATS = list(range(8))
FLAVOURS = [Flavour(4, 64, hab, bc) for hab in HABS for bc in BUG_COMPATS]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


class RawItem(bytes):
    """Stands in for a received raw item: its bytes plus ``id`` and ``is_immediate``."""

    def __new__(cls, id, data, is_immediate=False):
        self = super().__new__(cls, data)
        self.id = id
        self.is_immediate = is_immediate
        return self


def immediate(id, value, hab=40):
    return RawItem(id, value.to_bytes(hab // 8, "big"), True)


class FakeHeap:
    """Has the attributes of a received heap that ItemGroup.update uses."""

    def __init__(self, items=(), descriptors=(), flavour=Flavour()):
        self._items = list(items)
        self._descriptors = list(descriptors)
        self.flavour = flavour

    def get_items(self):
        return self._items

    def get_descriptors(self):
        return self._descriptors


def raw_of(descriptor, flavour=Flavour()):
    return decode_raw_descriptor(descriptor.to_raw(flavour), flavour.bug_compat)


def transfer(item, flavour=Flavour()):
    """Send ``item`` (descriptor and value) through a fake heap into a new ItemGroup."""
    ig = ItemGroup()
    heap = FakeHeap([RawItem(item.id, bytes(item.to_buffer()))], [raw_of(item, flavour)], flavour)
    updated = ig.update(heap)
    assert list(updated) == [item.name]
    return ig[item.id]


# ---------------------------------------------------------------- Descriptor

class TestDescriptorArguments:
    def test_both_dtype_and_format(self):
        with pytest.raises(ValueError):
            Descriptor(1, "x", "", (), dtype=np.uint8, format=[("u", 8)])

    def test_neither_dtype_nor_format(self):
        with pytest.raises(ValueError):
            Descriptor(1, "x", "", ())

    @pytest.mark.parametrize("order", ["A", "c", "", None])
    def test_bad_order(self, order):
        with pytest.raises(ValueError):
            Descriptor(1, "x", "", (), dtype=np.uint8, order=order)

    def test_fortran_order_with_format(self):
        with pytest.raises(ValueError):
            Descriptor(1, "x", "", (2, 2), format=[("u", 8)], order="F")

    @pytest.mark.parametrize("fmt", [
        [], [("0", 8)], [("x", 8)], [("c", 16)], [("c", 7)], [("f", 16)], [("f", 8)],
        [("u", 0)], [("u", -8)], [("u",)], ["u8"],
    ])
    def test_bad_format(self, fmt):
        with pytest.raises(ValueError):
            Descriptor(1, "x", "", (), format=fmt)

    @pytest.mark.parametrize("fmt", [[("u", 8.5)], [("u", "8")]])
    def test_format_bit_count_not_an_integer(self, fmt):
        with pytest.raises(TypeError):
            Descriptor(1, "x", "", (), format=fmt)

    @pytest.mark.parametrize("shape", [(None, None), (-1,)])
    def test_bad_shape(self, shape):
        with pytest.raises(ValueError):
            Descriptor(1, "x", "", shape, format=[("u", 8)])

    @pytest.mark.parametrize("shape", [(1.5,), ("a",), 5, "ab"])
    def test_shape_not_a_sequence_of_integers(self, shape):
        with pytest.raises(TypeError):
            Descriptor(1, "x", "", shape, format=[("u", 8)])

    def test_variable_dimension_with_dtype(self):
        with pytest.raises(ValueError):
            Descriptor(1, "x", "", (None,), dtype=np.uint8)

    def test_object_dtype(self):
        with pytest.raises(TypeError):
            Descriptor(1, "x", "", (), dtype=object)

    def test_structured_dtype_with_object_field(self):
        with pytest.raises(TypeError):
            Descriptor(1, "x", "", (), dtype=[("a", "<u2"), ("b", object)])

    def test_negative_id(self):
        with pytest.raises(spead2.RangeError):
            Descriptor(-1, "x", "", (), dtype=np.uint8)

    def test_non_ascii_name_fails_on_to_raw(self):
        d = Descriptor(1, "café", "", (), dtype=np.uint8)
        with pytest.raises(UnicodeEncodeError):
            d.to_raw(Flavour())

    def test_non_ascii_description_fails_on_to_raw(self):
        d = Descriptor(1, "x", "naïve", (), dtype=np.uint8)
        with pytest.raises(UnicodeEncodeError):
            d.to_raw(Flavour())


class TestDescriptorMembers:
    def test_attributes_of_numpy_descriptor(self):
        d = Descriptor(0x1234, "x", "desc", [2, 3], dtype="<u2", order="F")
        assert (d.id, d.name, d.description) == (0x1234, "x", "desc")
        assert d.shape == (2, 3)
        assert d.dtype == np.dtype("<u2")
        assert d.order == "F"
        assert d.format is None

    def test_attributes_of_format_descriptor(self):
        d = Descriptor(1, "x", "", [None], format=[["u", 12], ("b", 1)])
        assert d.shape == (None,)
        assert d.dtype is None
        assert d.order == "C"
        assert d.format == [("u", 12), ("b", 1)]

    def test_itemsize_bits(self):
        assert Descriptor(1, "x", "", (), dtype="<u2").itemsize_bits == 16
        assert Descriptor(1, "x", "", (), dtype="<u2,<f8").itemsize_bits == 80
        assert Descriptor(1, "x", "", (), format=[("u", 12), ("b", 1)]).itemsize_bits == 13

    def test_is_variable_size(self):
        assert Descriptor(1, "x", "", (2, None), format=[("u", 8)]).is_variable_size()
        assert not Descriptor(1, "x", "", (2, 3), format=[("u", 8)]).is_variable_size()

    def test_dynamic_shape(self):
        d = Descriptor(1, "x", "", (2, None), format=[("u", 8)])
        assert d.dynamic_shape(10) == (2, 5)
        assert d.dynamic_shape(11) == (2, 5)

    def test_dynamic_shape_is_zero_when_another_dimension_is_zero(self):
        assert Descriptor(1, "x", "", (0, None), format=[("u", 8)]).dynamic_shape(10) == (0, 0)

    def test_dynamic_shape_of_fixed_shape(self):
        assert Descriptor(1, "x", "", (2, 3), format=[("u", 8)]).dynamic_shape(100) == (2, 3)

    def test_compatible_shape(self):
        d = Descriptor(1, "x", "", (2, None), format=[("u", 8)])
        assert d.compatible_shape((2, 7))
        assert d.compatible_shape((2, 0))
        assert not d.compatible_shape((3, 7))
        assert not d.compatible_shape((2,))
        assert not d.compatible_shape((2, 7, 1))

    def test_subarray_dtype_extends_shape(self):
        d = Descriptor(1, "x", "", (4,), dtype=("<f4", (2,)))
        assert d.shape == (4, 2)
        assert d.dtype == np.dtype("<f4")


# ---------------------------------------------------------------- descriptor bytes

class TestDescriptorWire:
    def test_numpy_header_text(self):
        raw = raw_of(Descriptor(1, "x", "", (2, 3), dtype="<u2"))
        assert raw.numpy_header == b"{'descr': '<u2', 'fortran_order': False, 'shape': (2, 3)}"

    def test_numpy_header_fortran_order(self):
        raw = raw_of(Descriptor(1, "x", "", (2, 3), dtype=">f8", order="F"))
        assert raw.numpy_header == b"{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3)}"

    def test_numpy_header_structured(self):
        raw = raw_of(Descriptor(1, "x", "", (), dtype=[("a", "<u2"), ("b", ">f4")]))
        assert raw.numpy_header == (
            b"{'descr': [('a', '<u2'), ('b', '>f4')], 'fortran_order': False, 'shape': ()}")

    def test_numpy_descriptor_sends_empty_format_and_its_shape(self):
        raw = raw_of(Descriptor(7, "x", "d", (2, 3), dtype="<u2"))
        assert raw.format == []
        assert raw.shape == [2, 3]
        assert (raw.id, raw.name, raw.description) == (7, b"x", b"d")

    def test_format_descriptor_sends_format_and_no_header(self):
        raw = raw_of(Descriptor(7, "x", "", (None, 2), format=[("u", 12), ("c", 8)]))
        assert raw.format == [("u", 12), ("c", 8)]
        assert raw.shape == [-1, 2]
        assert raw.numpy_header == b""

    def test_swap_endian_sends_swapped_dtype(self):
        flavour = Flavour(bug_compat=spead2.BUG_COMPAT_SWAP_ENDIAN)
        raw = raw_of(Descriptor(1, "x", "", (2,), dtype="<u2"), flavour)
        assert raw.numpy_header == b"{'descr': '>u2', 'fortran_order': False, 'shape': (2,)}"

    def test_swap_endian_receives_swapped_dtype(self):
        raw = RawDescriptor(0x1000, b"x", b"", [], [],
                            b"{'descr': '<u2', 'fortran_order': False, 'shape': (2,)}")
        flavour = Flavour(bug_compat=spead2.BUG_COMPAT_SWAP_ENDIAN)
        d = Descriptor.from_raw(raw, flavour)
        assert d.dtype == np.dtype(">u2")
        ig = ItemGroup()
        ig.update(FakeHeap([RawItem(0x1000, h("00 01 02 03"))], [raw], flavour))
        assert ig["x"].value.tolist() == [1, 0x0203]

    def test_to_raw_bytes_64_40(self):
        packet = Descriptor(0x1234, "ab", "c", (3,), format=[("u", 8)]).to_raw(Flavour())
        assert packet == FORMAT_DESCRIPTOR_64_40  # derived byte by byte in test_codec

    def test_from_raw_returns_class_it_is_called_on(self):
        raw = RawDescriptor(1, b"x", b"", [], [("u", 8)])
        assert type(Item.from_raw(raw, Flavour())) is Item
        assert type(Descriptor.from_raw(raw, Flavour())) is Descriptor

    def test_from_raw_non_ascii_name(self):
        raw = RawDescriptor(1, b"caf\xe9", b"", [], [("u", 8)])
        with pytest.raises(UnicodeDecodeError):
            Descriptor.from_raw(raw, Flavour())

    def test_from_raw_without_format_or_header(self):
        with pytest.raises(ValueError):
            Descriptor.from_raw(RawDescriptor(1, b"x"), Flavour())

    def test_from_raw_with_zero_code(self):
        with pytest.raises(ValueError):
            Descriptor.from_raw(RawDescriptor(1, b"x", b"", [], [("0", 16)]), Flavour())

    @pytest.mark.parametrize("header", [
        b"{'descr': '<u2', 'fortran_order': False}",
        b"{'descr': '<u2', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        b"{'descr': 'not a dtype', 'fortran_order': False, 'shape': (2,)}",
        b"{'descr': 5, 'fortran_order': False, 'shape': (2,)}",
        b"{'descr': '<u2', 'fortran_order': 'no', 'shape': (2,)}",
        b"{'descr': '<u2', 'fortran_order': False, 'shape': 2}",
        b"{'descr': '<u2', 'fortran_order': False, 'shape': (-1,)}",
        b"{'descr': '<u2', 'fortran_order': False, 'shape': (2.0,)}",
        b"['descr', '<u2']",
        b"{'descr': '<u2', 'fortran_order': False, 'shape': (2,)",
        b"__import__('os').system('false')",
        b"{'descr': '<u2', 'fortran_order': False, 'shape': (" + b"(" * 10000 + b")",
        b"{'descr': '\xff', 'fortran_order': False, 'shape': ()}",
    ])
    def test_malformed_numpy_header(self, header):
        with pytest.raises(ValueError):
            Descriptor.from_raw(RawDescriptor(1, b"x", b"", [], [], header), Flavour())

    @pytest.mark.parametrize("descr", ["'|O'", "[('a', '<u2'), ('b', '|O')]"])
    def test_object_numpy_header(self, descr):
        header = ("{'descr': %s, 'fortran_order': False, 'shape': ()}" % descr).encode()
        with pytest.raises(TypeError):
            Descriptor.from_raw(RawDescriptor(1, b"x", b"", [], [], header), Flavour())


NUMPY_DESCRIPTORS = [
    ("<u2", (2, 3), "C"), (">i4", (5,), "C"), ("<f8", (), "C"), (">c8", (2, 2), "F"),
    ("?", (4,), "C"), ("S3", (2,), "C"), ("u1", (3, 2), "F"), (">f4", (0,), "C"),
    ([("a", "<u2"), ("b", ">f4")], (3,), "C"),
    ([("a", "<u2"), ("b", [("c", ">i8"), ("d", "S2")])], (2, 2), "F"),
]

FORMAT_DESCRIPTORS = [
    ([("u", 8)], (3,)), ([("u", 16)], ()), ([("i", 64)], (2, 2)), ([("f", 32)], (None,)),
    ([("b", 8)], (2,)), ([("c", 8)], (None,)), ([("f", 32), ("i", 8)], (2, None)),
    ([("u", 48)], ()), ([("i", 12)], (3,)), ([("u", 1)], (None, 3)),
    ([("b", 1), ("i", 7), ("c", 8), ("f", 32)], ()), ([("u", 255)], (1,)),
]


@pytest.mark.parametrize("flavour", FLAVOURS, ids=repr)
@pytest.mark.parametrize("dtype, shape, order", NUMPY_DESCRIPTORS)
def test_numpy_descriptor_round_trip(flavour, dtype, shape, order):
    sent = Descriptor(0x42, "name", "description", shape, dtype=dtype, order=order)
    got = Descriptor.from_raw(raw_of(sent, flavour), flavour)
    assert (got.id, got.name, got.description) == (0x42, "name", "description")
    assert got.shape == sent.shape
    assert got.dtype == sent.dtype
    assert got.order == order
    assert got.format is None


@pytest.mark.parametrize("flavour", FLAVOURS, ids=repr)
@pytest.mark.parametrize("fmt, shape", FORMAT_DESCRIPTORS)
def test_format_descriptor_round_trip(flavour, fmt, shape):
    sent = Descriptor(0x42, "name", "description", shape, format=fmt)
    got = Descriptor.from_raw(raw_of(sent, flavour), flavour)
    assert (got.id, got.name, got.description) == (0x42, "name", "description")
    assert got.shape == shape
    assert got.format == fmt
    assert all(type(code) is str and type(bits) is int for code, bits in got.format)
    assert got.dtype is None
    assert got.order == "C"


# ---------------------------------------------------------------- values

def sample_value(dtype, shape):
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(1)
    n = int(np.prod(shape))
    if dtype.names is None:
        if dtype.kind == "S":
            flat = np.array([bytes([65 + i % 26]) * dtype.itemsize for i in range(n)], dtype)
        else:
            flat = rng.integers(0, 100, n).astype(dtype)
        return flat.reshape(shape)
    out = np.zeros(shape, dtype)
    for name in dtype.names:
        out[name] = sample_value(dtype[name], shape)
    return out


@pytest.mark.parametrize("flavour", FLAVOURS, ids=repr)
@pytest.mark.parametrize("dtype, shape, order", NUMPY_DESCRIPTORS)
def test_numpy_value_round_trip(flavour, dtype, shape, order):
    value = sample_value(dtype, shape)
    item = Item(0x42, "x", "", shape, dtype=dtype, order=order, value=value)
    got = transfer(item, flavour)
    assert got.dtype == item.dtype
    received = got.value
    if shape == ():
        assert received == value[()]
        return
    assert received.dtype.isnative
    assert received.dtype == item.dtype.newbyteorder("=")
    assert received.shape == shape
    assert received.astype(value.dtype).tobytes() == value.tobytes()


class TestValueBytes:
    """Numpy values are their dtype's bytes (byte order as the dtype says, in
    C or Fortran order as the item says); format values are big-endian bit
    fields, most significant bit first, padded to a byte (the u12 and mixed
    examples are derived in test_codec)."""

    def test_little_endian_numpy(self):
        item = Item(1, "x", "", (2,), dtype="<u2", value=[1, 0x0203])
        assert item.to_buffer() == h("01 00 03 02")

    def test_big_endian_numpy(self):
        item = Item(1, "x", "", (2,), dtype=">u2", value=[1, 0x0203])
        assert item.to_buffer() == h("00 01 02 03")

    def test_fortran_order(self):
        item = Item(1, "x", "", (2, 3), dtype="u1", order="F", value=np.arange(6).reshape(2, 3))
        assert item.to_buffer() == h("00 03 01 04 02 05")

    def test_non_contiguous_value_is_sent_contiguous(self):
        value = np.arange(12, dtype="u1").reshape(3, 4)[:, ::2]
        item = Item(1, "x", "", (3, 2), dtype="u1", value=value)
        assert item.to_buffer() == h("00 02 04 06 08 0a")

    def test_value_converted_to_descriptor_dtype(self):
        item = Item(1, "x", "", (2,), dtype="<u2", value=np.array([1, 2], ">i8"))
        assert item.to_buffer() == h("01 00 02 00")

    def test_format_fields_are_big_endian(self):
        item = Item(1, "x", "", (2,), format=[("u", 16)], value=[1, 0x0203])
        assert item.to_buffer() == h("00 01 02 03")

    def test_multi_field_mapped_format(self):
        item = Item(1, "x", "", (), format=[("f", 32), ("i", 8)], value=(1.0, -2))
        assert item.to_buffer() == h("3f 80 00 00 fe")

    def test_str_is_split_into_characters(self):
        item = Item(1, "x", "", (None,), format=[("c", 8)], value="abc")
        assert item.to_buffer() == b"abc"

    def test_bytes_is_split_into_characters(self):
        item = Item(1, "x", "", (3,), format=[("c", 8)], value=b"abc")
        assert item.to_buffer() == b"abc"

    def test_fallback_u12(self):
        item = Item(1, "x", "", (3,), format=[("u", 12)], value=[0xABC, 0xDEF, 0x123])
        assert item.to_buffer() == h("AB CD EF 12 30")

    def test_fallback_i12_from_numpy(self):
        item = Item(1, "x", "", (None,), format=[("i", 12)], value=np.array([-1348, -529, 291]))
        assert item.to_buffer() == h("AB CD EF 12 30")

    def test_fallback_mixed(self):
        item = Item(1, "x", "", (), format=[("b", 1), ("i", 7), ("c", 8), ("f", 32)],
                    value=(True, 17, "y", 1.0))
        assert item.to_buffer() == h("91 79 3F 80 00 00")

    def test_to_buffer_without_value(self):
        with pytest.raises(ValueError):
            Item(1, "x", "", (), dtype="u1").to_buffer()

    @pytest.mark.parametrize("kwargs, value", [
        (dict(dtype="u1", shape=(3,)), [1, 2]),
        (dict(dtype="u1", shape=(3,)), [[1, 2, 3]]),
        (dict(format=[("u", 8)], shape=(2, None)), np.zeros((3, 4))),
        (dict(format=[("u", 12)], shape=(3,)), [1, 2]),
        (dict(format=[("u", 12)], shape=(2, None)), [[1, 2], [3]]),
        (dict(format=[("u", 12)], shape=(2, None)), [[1, 2]]),
        (dict(format=[("c", 8)], shape=(2,)), "abc"),
    ])
    def test_wrong_shape(self, kwargs, value):
        item = Item(1, "x", "", value=value, **kwargs)
        with pytest.raises(ValueError):
            item.to_buffer()

    def test_non_ascii_str(self):
        item = Item(1, "x", "", (None,), format=[("c", 8)], value="café")
        with pytest.raises(UnicodeEncodeError):
            item.to_buffer()

    def test_fallback_out_of_range(self):
        item = Item(1, "x", "", (), format=[("u", 12)], value=4096)
        with pytest.raises(ValueError):
            item.to_buffer()


class TestReceivedValueTypes:
    def test_mapped_scalar_is_numpy_scalar(self):
        got = transfer(Item(0x1000, "x", "", (), format=[("i", 32)], value=-5))
        assert type(got.value) is np.int32
        assert got.value == -5
        assert got.dtype is None

    def test_mapped_multi_field_is_native_structured(self):
        got = transfer(Item(0x1000, "x", "", (2,), format=[("f", 32), ("i", 8)],
                            value=[(1.5, -2), (2.5, 3)]))
        assert got.value.dtype == np.dtype("=f4,i1")
        assert got.value.tolist() == [(1.5, -2), (2.5, 3)]

    def test_mapped_multi_field_scalar(self):
        got = transfer(Item(0x1000, "x", "", (), format=[("f", 32), ("i", 8)], value=(1.5, -2)))
        assert got.value.dtype == np.dtype("=f4,i1")
        assert got.value.tolist() == (1.5, -2)

    def test_mapped_array_is_native(self):
        got = transfer(Item(0x1000, "x", "", (3,), format=[("u", 16)], value=[1, 2, 0xFFFF]))
        assert got.value.dtype == np.dtype("=u2")
        assert got.value.tolist() == [1, 2, 0xFFFF]

    @pytest.mark.parametrize("fmt, dtype", [
        ([("u", 8)], np.uint8), ([("u", 16)], np.uint16), ([("u", 32)], np.uint32),
        ([("u", 64)], np.uint64), ([("i", 8)], np.int8), ([("i", 16)], np.int16),
        ([("i", 32)], np.int32), ([("i", 64)], np.int64), ([("f", 32)], np.float32),
        ([("f", 64)], np.float64), ([("b", 8)], np.bool_), ([("c", 8)], np.bytes_),
    ])
    def test_mapped_field_types(self, fmt, dtype):
        value = b"q" if dtype is np.bytes_ else 1
        got = transfer(Item(0x1000, "x", "", (), format=fmt, value=value))
        assert type(got.value) is dtype
        assert got.value == dtype(value)

    def test_fallback_scalar_is_python_int(self):
        got = transfer(Item(0x1000, "x", "", (), format=[("u", 48)], value=0x123456789ABC))
        assert type(got.value) is int
        assert got.value == 0x123456789ABC

    def test_fallback_array_is_list(self):
        got = transfer(Item(0x1000, "x", "", (None,), format=[("i", 12)], value=[-1348, -529, 291]))
        assert got.value == [-1348, -529, 291]

    def test_c8_string(self):
        got = transfer(Item(0x1000, "x", "", (None,), format=[("c", 8)], value="hello"))
        assert got.value == "hello"

    def test_fixed_c8_string(self):
        got = transfer(Item(0x1000, "x", "", (5,), format=[("c", 8)], value="hello"))
        assert got.value == "hello"

    def test_two_dimensional_c8_stays_array(self):
        got = transfer(Item(0x1000, "x", "", (2, 2), format=[("c", 8)], value=[[b"a", b"b"], [b"c", b"d"]]))
        assert got.value.tolist() == [[b"a", b"b"], [b"c", b"d"]]

    def test_numpy_scalar(self):
        got = transfer(Item(0x1000, "x", "", (), dtype=">f8", value=2.5))
        assert type(got.value) is np.float64
        assert got.value == 2.5

    def test_variable_dimension_from_item_size(self):
        got = transfer(Item(0x1000, "x", "", (2, None), format=[("u", 16)], value=np.arange(6).reshape(2, 3)))
        assert got.value.shape == (2, 3)
        assert got.value.tolist() == [[0, 1, 2], [3, 4, 5]]

    def test_variable_dimension_is_zero_when_another_is_zero(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (0, None), format=[("u", 8)])
        ig.update(FakeHeap([RawItem(0x1000, b"")]))
        assert ig["x"].value.shape == (0, 0)

    def test_non_ascii_c8_string(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (None,), format=[("c", 8)])
        with pytest.raises(UnicodeDecodeError):
            ig.update(FakeHeap([RawItem(0x1000, b"caf\xe9")]))

    def test_non_ascii_fixed_c8_string(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (4,), format=[("c", 8)])
        with pytest.raises(UnicodeDecodeError):
            ig.update(FakeHeap([RawItem(0x1000, b"caf\xe9")]))

    def test_received_array_is_a_view_of_the_heap(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (256,), dtype=np.float32)
        raw = RawItem(0x1000, np.arange(256, dtype=np.float32).tobytes())
        ig.update(FakeHeap([raw]))
        value = ig["x"].value
        assert np.shares_memory(value, np.frombuffer(raw, np.uint8))
        assert value[3] == 3.0

    def test_received_2d_array_is_a_view_of_the_heap(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (2, 3), dtype="<u2", order="F")
        raw = RawItem(0x1000, np.arange(6, dtype="<u2").tobytes())
        ig.update(FakeHeap([raw]))
        value = ig["x"].value
        assert np.shares_memory(value, np.frombuffer(raw, np.uint8))
        assert value.tolist() == [[0, 2, 4], [1, 3, 5]]

    def test_new_order_keeps_wire_order(self):
        item = Item(1, "x", "", (2,), format=[("u", 16)])
        item.set_from_raw(RawItem(0x1000, h("00 01 02 03")), new_order="|")
        assert item.value.dtype == np.dtype(">u2")
        assert item.value.tolist() == [1, 0x0203]

    def test_new_order_little_endian(self):
        item = Item(1, "x", "", (2,), dtype=">u2")
        item.set_from_raw(RawItem(0x1000, h("00 01 02 03")), new_order="<")
        assert item.value.dtype == np.dtype("<u2")
        assert item.value.tolist() == [1, 0x0203]

    def test_bad_new_order(self):
        item = Item(1, "x", "", (2,), dtype=">u2")
        with pytest.raises(ValueError):
            item.set_from_raw(RawItem(0x1000, h("00 01 02 03")), new_order="?")


@pytest.mark.parametrize("flavour", FLAVOURS, ids=repr)
@pytest.mark.parametrize("fmt, shape, value", [
    ([("u", 8)], (3,), [1, 2, 255]),
    ([("f", 32)], (None,), [1.5, -2.0]),
    ([("c", 8)], (None,), "text"),
    ([("f", 32), ("i", 8)], (2, None), [[(1.0, 1)], [(2.0, -2)]]),
    ([("u", 48)], (), 0xFEDCBA987654),
    ([("i", 12)], (3,), [-2048, 0, 2047]),
    ([("u", 1)], (None, 3), [[1, 0, 1], [0, 1, 1]]),
    # a c8 field of a record travels back as one byte
    ([("b", 1), ("i", 7), ("c", 8), ("f", 32)], (), (True, -64, b"z", 0.25)),
])
def test_format_value_round_trip(flavour, fmt, shape, value):
    got = transfer(Item(0x42, "x", "", shape, format=fmt, value=value), flavour)
    received = got.value
    if isinstance(received, np.ndarray):
        received = received.tolist()
    assert received == value


@st.composite
def fallback_items(draw):
    fields = draw(st.lists(st.sampled_from(
        [("u", b) for b in (1, 5, 12, 24, 48, 63)] + [("i", b) for b in (3, 12, 33, 63)]
        + [("b", 1), ("b", 2)]), min_size=1, max_size=3))
    fields += draw(st.lists(st.sampled_from([("c", 8), ("f", 32), ("f", 64), ("u", 8)]),
                            max_size=2))
    fields = draw(st.permutations(fields))
    ndim = draw(st.integers(0, 2))
    dims = draw(st.lists(st.integers(0, 3), min_size=ndim, max_size=ndim))
    shape = list(dims)
    if ndim and draw(st.booleans()):
        shape[draw(st.integers(0, ndim - 1))] = None

    def field(code, bits):
        if code == "u":
            return st.integers(0, 2 ** bits - 1)
        if code == "i":
            return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if code == "b":
            return st.booleans()
        if code == "c":
            return st.integers(0, 127).map(lambda c: bytes([c]))
        return st.floats(width=bits, allow_nan=False)

    element = field(*fields[0]) if len(fields) == 1 else st.tuples(*(field(*f) for f in fields))

    def nested(d):
        if d == len(dims):
            return element
        return st.lists(nested(d + 1), min_size=dims[d], max_size=dims[d])

    return fields, tuple(shape), tuple(dims), draw(nested(0))


@settings(max_examples=150, deadline=None)
@given(fallback_items(), st.sampled_from(FLAVOURS))
def test_fallback_value_round_trip(case, flavour):
    fields, shape, dims, value = case
    item = Item(0x42, "x", "", shape, format=fields, value=value)
    size = len(item.to_buffer())
    assert size == (int(np.prod(dims)) * item.itemsize_bits + 7) // 8
    # The variable length is read back from the padded size: padding of a
    # whole row or more would add elements, and a zero dimension elsewhere
    # makes it 0.
    assume(item.dynamic_shape(size * 8 // item.itemsize_bits) == dims)
    got = transfer(item, flavour)
    assert got.value == value


def test_padding_bits_read_back_as_elements_of_a_variable_dimension():
    got = transfer(Item(0x1000, "x", "", (None,), format=[("u", 1)], value=[1]))
    assert got.value == [1, 0, 0, 0, 0, 0, 0, 0]


class TestImmediates:
    def test_signed_48_bit_sign_extends(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (), format=[("i", 48)])
        ig.update(FakeHeap([immediate(0x1000, 0x9234567890AB, 48)], flavour=Flavour(heap_address_bits=48)))
        assert ig["x"].value == -0x6DCBA9876F55

    def test_narrower_item_takes_trailing_bytes(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (), format=[("u", 32)])
        ig.update(FakeHeap([immediate(0x1000, 0x12345678)]))
        assert ig["x"].value == 0x12345678

    def test_narrower_signed_item(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (), format=[("i", 16)])
        ig.update(FakeHeap([immediate(0x1000, 0xFFFE)]))
        assert ig["x"].value == -2

    def test_numpy_immediate(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (), dtype=">u2")
        ig.update(FakeHeap([immediate(0x1000, 0x1234)]))
        assert ig["x"].value == 0x1234

    def test_fallback_immediate_is_right_aligned(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (), format=[("i", 12)])
        # -5 in 12 bits, padded to 2 bytes: FF B0, right-aligned in 5 bytes.
        ig.update(FakeHeap([immediate(0x1000, 0xFFB0)]))
        assert ig["x"].value == -5

    def test_item_wider_than_field(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (), format=[("u", 64)])
        with pytest.raises(ValueError):
            ig.update(FakeHeap([immediate(0x1000, 1)]))


class TestSizeErrors:
    @pytest.mark.parametrize("kwargs, data", [
        (dict(shape=(4,), dtype="<u2"), bytes(7)),
        (dict(shape=(4,), dtype="<u2"), bytes(9)),
        (dict(shape=(4,), dtype="<u2"), bytes(10)),
        (dict(shape=(4,), dtype="<u2"), bytes(6)),
        (dict(shape=(2, 2), dtype="<u2"), bytes(10)),
        (dict(shape=(2, 2), dtype=">u2", order="F"), bytes(6)),
        (dict(shape=(), dtype="<u4"), bytes(5)),
        (dict(shape=(), dtype="<u4"), bytes(3)),
        (dict(shape=(), dtype="<u4,u1"), bytes(4)),
        (dict(shape=(3,), format=[("u", 12)]), bytes(4)),
        (dict(shape=(3,), format=[("u", 12)]), bytes(6)),
        (dict(shape=(), format=[("u", 48)]), bytes(7)),
        (dict(shape=(None,), format=[("u", 16)]), bytes(5)),
        (dict(shape=(None,), format=[("u", 12)]), bytes(4)),
        (dict(shape=(3,), format=[("c", 8)]), b"abcd"),
        (dict(shape=(0, None), format=[("u", 8)]), b"a"),
    ])
    def test_wrong_size_raises_value_error(self, kwargs, data):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", **kwargs)
        with pytest.raises(ValueError):
            ig.update(FakeHeap([RawItem(0x1000, data)]))


# ---------------------------------------------------------------- Item

class TestItem:
    def test_value_none_raises(self):
        item = Item(1, "x", "", (), dtype="u1", value=3)
        with pytest.raises(ValueError):
            item.value = None
        assert item.value == 3

    def test_version_counts_value_sets(self):
        item = Item(1, "x", "", (), dtype="u1")
        assert item.value is None
        assert item.version == 0
        item.value = 1
        assert item.version == 1
        item.value = 2
        assert item.version == 2

    def test_constructor_value_counts(self):
        assert Item(1, "x", "", (), dtype="u1", value=0).version == 1

    def test_set_from_raw_bumps_version(self):
        item = Item(1, "x", "", (), dtype="u1")
        item.set_from_raw(RawItem(0x1000, b"\x07"))
        item.set_from_raw(RawItem(0x1000, b"\x08"))
        assert item.version == 2
        assert item.value == 8

    def test_is_a_descriptor(self):
        assert isinstance(Item(1, "x", "", (), dtype="u1"), Descriptor)


# ---------------------------------------------------------------- ItemGroup

class TestItemGroup:
    def test_add_item_returns_item(self):
        ig = ItemGroup()
        item = ig.add_item(0x1234, "x", "desc", (2,), dtype="<u2", value=[1, 2])
        assert isinstance(item, Item)
        assert ig[0x1234] is item
        assert ig["x"] is item
        assert item.value == [1, 2]

    def test_automatic_ids(self):
        ig = ItemGroup()
        assert ig.add_item(None, "a", "", (), dtype="u1").id == 0x1000
        ig.add_item(0x1001, "b", "", (), dtype="u1")
        assert ig.add_item(None, "c", "", (), dtype="u1").id == 0x1002
        ig.add_item(5, "d", "", (), dtype="u1")
        assert ig.add_item(None, "e", "", (), dtype="u1").id == 0x1003

    def test_replace_by_id(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "a", "", (), dtype="u1")
        ig.add_item(0x1000, "b", "", (), dtype="u1")
        assert "a" not in ig
        assert ig[0x1000].name == "b"
        assert len(ig) == 1

    def test_replace_by_name(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "a", "", (), dtype="u1")
        ig.add_item(0x1001, "a", "", (), dtype="u1")
        assert 0x1000 not in ig
        assert ig["a"].id == 0x1001
        assert len(ig) == 1

    def test_replace_two_items_at_once(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "a", "", (), dtype="u1")
        ig.add_item(0x1001, "b", "", (), dtype="u1")
        ig.add_item(0x1000, "b", "", (), dtype="u2")
        assert list(ig.ids()) == [0x1000]
        assert list(ig.keys()) == ["b"]

    def test_replacement_version_exceeds_old(self):
        ig = ItemGroup()
        old = ig.add_item(0x1000, "a", "", (), dtype="u1", value=1)
        old.value = 2
        old.value = 3
        new = ig.add_item(0x1000, "a", "", (), dtype="u2", value=4)
        assert new is not old
        assert new.version > 3

    def test_identical_descriptor_keeps_item(self):
        ig = ItemGroup()
        item = ig.add_item(0x1000, "a", "", (2,), dtype="u1", value=[1, 2])
        again = ig.add_item(0x1000, "a", "", (2,), dtype="u1")
        assert again is item
        assert item.value == [1, 2]

    def test_mapping_methods(self):
        ig = ItemGroup()
        a = ig.add_item(0x1000, "a", "", (), dtype="u1")
        b = ig.add_item(0x1001, "b", "", (), dtype="u1")
        assert len(ig) == 2
        assert sorted(ig.keys()) == ["a", "b"]
        assert sorted(ig.ids()) == [0x1000, 0x1001]
        assert sorted(ig.values(), key=lambda i: i.id) == [a, b]
        assert dict(ig.items()) == {"a": a, "b": b}
        assert "a" in ig and 0x1001 in ig
        assert "c" not in ig and 0x1002 not in ig

    def test_missing_key(self):
        ig = ItemGroup()
        with pytest.raises(KeyError):
            ig["x"]
        with pytest.raises(KeyError):
            ig[0x1000]


class TestUpdate:
    def test_descriptors_then_values_in_one_heap(self):
        sender = Item(0x1000, "x", "", (2,), dtype="<i4", value=[-1, 7])
        ig = ItemGroup()
        updated = ig.update(FakeHeap([RawItem(0x1000, bytes(sender.to_buffer()))],
                                     [raw_of(sender)]))
        assert list(updated) == ["x"]
        assert updated["x"] is ig["x"]
        assert ig["x"].value.tolist() == [-1, 7]

    def test_descriptor_only_heap_updates_nothing(self):
        ig = ItemGroup()
        assert ig.update(FakeHeap([], [raw_of(Descriptor(0x1000, "x", "", (), dtype="u1"))])) == {}
        assert "x" in ig
        assert ig["x"].value is None

    def test_unknown_ids_are_ignored(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (), dtype="u1")
        assert list(ig.update(FakeHeap([RawItem(0x2000, b"\x01"), RawItem(0x1000, b"\x02")]))) == ["x"]
        assert ig["x"].value == 2

    def test_stream_control_ids_are_skipped(self):
        ig = ItemGroup()
        ig.add_item(spead2.STREAM_CTRL_ID, "ctrl", "", (), dtype="u1")
        heap = FakeHeap([immediate(spead2.STREAM_CTRL_ID, spead2.CTRL_STREAM_STOP),
                         immediate(spead2.HEAP_CNT_ID, 1)])
        assert ig.update(heap) == {}
        assert ig["ctrl"].value is None

    def test_first_user_id_after_stream_control_is_used(self):
        ig = ItemGroup()
        ig.add_item(spead2.STREAM_CTRL_ID + 1, "x", "", (), dtype="u1")
        assert list(ig.update(FakeHeap([RawItem(7, b"\x05")]))) == ["x"]

    def test_update_bumps_version(self):
        ig = ItemGroup()
        item = ig.add_item(0x1000, "x", "", (), dtype="u1")
        ig.update(FakeHeap([RawItem(0x1000, b"\x01")]))
        ig.update(FakeHeap([RawItem(0x1000, b"\x02")]))
        assert item.version == 2

    def test_reissued_descriptor_keeps_value_and_item(self):
        ig = ItemGroup()
        desc = raw_of(Descriptor(0x1000, "x", "", (), dtype="u1"))
        ig.update(FakeHeap([RawItem(0x1000, b"\x09")], [desc]))
        item = ig["x"]
        ig.update(FakeHeap([], [desc]))
        assert ig["x"] is item
        assert item.value == 9

    def test_changed_descriptor_replaces_item(self):
        ig = ItemGroup()
        ig.update(FakeHeap([], [raw_of(Descriptor(0x1000, "x", "", (), dtype="u1"))]))
        ig.update(FakeHeap([RawItem(0x1000, b"\x00\x02")],
                           [raw_of(Descriptor(0x1000, "x", "", (), dtype=">u2"))]))
        assert ig["x"].dtype == np.dtype(">u2")
        assert ig["x"].value == 2

    def test_wrong_size_raises_value_error(self):
        ig = ItemGroup()
        ig.add_item(0x1000, "x", "", (256,), dtype=np.float32)
        with pytest.raises(ValueError, match="bytes"):
            ig.update(FakeHeap([RawItem(0x1000, bytes(1023))]))

    def test_object_header_raises_type_error(self):
        raw = RawDescriptor(0x1000, b"x", b"", [], [],
                            b"{'descr': '|O', 'fortran_order': False, 'shape': ()}")
        with pytest.raises(TypeError):
            ItemGroup().update(FakeHeap([], [raw]))

    def test_malformed_header_raises_value_error(self):
        raw = RawDescriptor(0x1000, b"x", b"", [], [], b"{'descr': ")
        with pytest.raises(ValueError):
            ItemGroup().update(FakeHeap([], [raw]))

    def test_swap_endian_round_trip(self):
        flavour = Flavour(bug_compat=spead2.BUG_COMPAT_PYSPEAD_0_5_2)
        sent = Item(0x1000, "x", "", (3,), dtype="<u2", value=[1, 2, 3])
        assert sent.to_buffer() == h("01 00 02 00 03 00")
        got = transfer(sent, flavour)
        assert got.dtype == np.dtype("<u2")
        assert got.value.tolist() == [1, 2, 3]

    def test_exported_from_package(self):
        assert spead2.ItemGroup is ItemGroup
        assert spead2.Item is Item
        assert spead2.Descriptor is Descriptor
