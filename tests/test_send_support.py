"""Helpers for the send tests: stand-in items, hand-built packets, and an
independent packet decoder (itself tested here against literal bytes).

The packet layout the builders write, for flavour SPEAD-64-``hab`` (big-endian
throughout):

- an 8-byte header: magic ``0x53``, version ``4``, the width of an item
  pointer's id field in bytes, ``(64 - hab) // 8``, the width of its
  address field, ``hab // 8``, two zero bytes, and the number of item
  pointers as 16 bits;
- the item pointers, 64 bits each: bit 63 is 1 for an immediate value and 0
  for an address into the heap's payload, the next ``63 - hab`` bits the
  item id, the low ``hab`` bits the value or address. A stream's packets
  start with four immediates: HEAP_CNT (id 1), HEAP_LENGTH (2),
  PAYLOAD_OFFSET (3) and PAYLOAD_LENGTH (4);
- the payload bytes.
"""

import struct
from typing import List, Optional, Sequence

import numpy as np

import spead2
import spead2.send


class StandInItem:
    """The item interface the sender relies on, with a fixed wire buffer."""

    def __init__(self, id: int, data, variable: bool = False,
                 shape: Optional[tuple] = None, itemsize_bits: Optional[int] = None,
                 value=True, version: int = 1, raw_descriptor: bytes = b"DESC") -> None:
        self.id = id
        self._data = data
        self._variable = variable
        self.shape = shape if shape is not None else ((None,) if variable else ())
        if itemsize_bits is not None:
            self.itemsize_bits = itemsize_bits
        self.value = value
        self.version = version
        self.raw_descriptor = raw_descriptor
        self.to_raw_flavours: list = []

    def to_buffer(self):
        return self._data

    def is_variable_size(self) -> bool:
        return self._variable

    def to_raw(self, flavour) -> bytes:
        self.to_raw_flavours.append(flavour)
        return self.raw_descriptor


def data_heap(data: bytes, id: int = 0x1000) -> spead2.send.Heap:
    """A heap holding one variable-size stand-in item with ``data`` as its bytes."""
    heap = spead2.send.Heap()
    heap.add_item(StandInItem(id, data, variable=True))
    return heap


def expected_packets(heap: spead2.send.Heap, cnt: int, max_packet_size: int = 1472) -> List[bytes]:
    """The packets a stream sends for ``heap`` as heap ``cnt``."""
    return list(spead2.send.PacketGenerator(heap, cnt, max_packet_size))


class StandInGroup:
    """The part of an item group a HeapGenerator reads: ``values()``."""

    def __init__(self, items: Sequence[StandInItem] = ()) -> None:
        self.by_id = {item.id: item for item in items}

    def add(self, item: StandInItem) -> None:
        self.by_id[item.id] = item

    def values(self):
        return list(self.by_id.values())


def immediate(id: int, value: int, hab: int = 40) -> bytes:
    return ((1 << 63) | (id << hab) | value).to_bytes(8, "big")


def addressed(id: int, address: int, hab: int = 40) -> bytes:
    return ((id << hab) | address).to_bytes(8, "big")


def packet(cnt: int, heap_length: int, offset: int, pointers: Sequence[bytes],
           payload: bytes, hab: int = 40) -> bytes:
    """One packet: the header, the four header immediates (HEAP_CNT ``cnt``,
    HEAP_LENGTH ``heap_length``, PAYLOAD_OFFSET ``offset``, PAYLOAD_LENGTH
    ``len(payload)``), then ``pointers``, then ``payload``."""
    head = bytes([0x53, 0x04, (64 - hab) // 8, hab // 8, 0, 0]) + struct.pack(
        ">H", 4 + len(pointers))
    return (head + immediate(1, cnt, hab) + immediate(2, heap_length, hab)
            + immediate(3, offset, hab) + immediate(4, len(payload), hab)
            + b"".join(pointers) + payload)


class DecodedPacket:
    def __init__(self, data: bytes) -> None:
        assert data[0] == 0x53 and data[1] == 4, "bad magic/version"
        self.id_bytes, self.addr_bytes = data[2], data[3]
        assert self.id_bytes + self.addr_bytes == 8
        self.hab = 8 * self.addr_bytes
        n = struct.unpack(">H", data[6:8])[0]
        assert data[4:6] == b"\0\0"
        self.pointers = []
        for i in range(n):
            word = int.from_bytes(data[8 + 8 * i:16 + 8 * i], "big")
            self.pointers.append((word >> 63, (word >> self.hab) & ((1 << (63 - self.hab)) - 1),
                                  word & ((1 << self.hab) - 1)))
        self.payload = data[8 + 8 * n:]
        first = self.pointers[:4]
        assert [(imm, id) for imm, id, _ in first] == [(1, 1), (1, 2), (1, 3), (1, 4)], \
            "the four header immediates must come first, in order"
        self.cnt, self.heap_length, self.offset, self.length = (v for _, _, v in first)
        assert self.length == len(self.payload)
        self.items = self.pointers[4:]


def reassemble(packets: List[bytes]):
    """Check that ``packets`` form one well-made heap; return (cnt, pointers,
    payload) where pointers are (immediate, id, value-or-address)."""
    decoded = [DecodedPacket(p) for p in packets]
    cnt = decoded[0].cnt
    heap_length = decoded[0].heap_length
    payload = bytearray()
    pointers = []
    pointer_phase = True
    for d in decoded:
        assert d.cnt == cnt and d.heap_length == heap_length
        assert d.offset == len(payload), "payload must arrive in order, back to back"
        payload += d.payload
        if d.items:
            assert pointer_phase, "item pointers must be in the first packets"
        else:
            pointer_phase = False
        pointers.extend(d.items)
    assert len(payload) == heap_length
    return cnt, pointers, bytes(payload)


def item_values(pointers, payload: bytes, hab: int = 40):
    """{id: value} with addressed values cut at the next address (or the end
    of the payload); immediates as address-field bytes."""
    out = {}
    # Equal addresses (empty items) keep pointer order.
    addressed_ptrs = [(addr, id) for addr, _, id in sorted(
        (addr, i, id) for i, (imm, id, addr) in enumerate(pointers) if not imm)]
    for imm, id, value in pointers:
        if imm:
            out.setdefault(id, []).append(value.to_bytes(hab // 8, "big"))
    for i, (addr, id) in enumerate(addressed_ptrs):
        end = addressed_ptrs[i + 1][0] if i + 1 < len(addressed_ptrs) else len(payload)
        out.setdefault(id, []).append(payload[addr:end])
    return out


# --- tests of the helpers themselves ----------------------------------------

def test_packet_builder_matches_literal_empty_heap():
    # SPEAD-64-40: 24-bit id fields (1 mode bit + 23 id bits), 40-bit addresses
    literal = bytes.fromhex(
        # magic 53, version 04, id width 03, address width 05, 00 00, 5 pointers
        "5304 0305 0000 0005"
        # immediate (80...) id 000001 HEAP_CNT = 1; id 000002 HEAP_LENGTH = 1;
        # id 000003 PAYLOAD_OFFSET = 0; id 000004 PAYLOAD_LENGTH = 1
        "8000010000000001 8000020000000001 8000030000000000 8000040000000001"
        # addressed (bit 63 clear) id 000000 (NULL) at address 0; payload: one zero byte
        "0000000000000000 00")
    assert packet(1, 1, 0, [addressed(0, 0)], b"\0") == literal


def test_decoder_reads_pointers_and_payload():
    data = packet(7, 3, 0, [immediate(0x1234, 5), addressed(0x20, 0)], b"abc")
    d = DecodedPacket(data)
    assert (d.cnt, d.heap_length, d.offset, d.length) == (7, 3, 0, 3)
    assert d.items == [(1, 0x1234, 5), (0, 0x20, 0)]
    assert d.payload == b"abc"


def test_reassemble_rejects_gaps():
    import pytest
    a = packet(1, 6, 0, [addressed(0x20, 0)], b"abc")
    b = packet(1, 6, 4, [], b"de")
    with pytest.raises(AssertionError):
        reassemble([a, b])


def test_item_values_splits_addressed_items():
    ptrs = [(0, 0x20, 0), (1, 0x21, 9), (0, 0x22, 2)]
    values = item_values(ptrs, b"abcdef")
    assert values == {0x20: [b"ab"], 0x21: [(9).to_bytes(5, "big")], 0x22: [b"cdef"]}


def numpy_header(dtype: np.dtype, fortran: bool, shape: tuple) -> bytes:
    return str({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran,
                "shape": shape}).encode()
