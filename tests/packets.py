"""Hand-built SPEAD packets for tests, written straight from the protocol
layout (independent of the library's own encoder)."""

import struct
from typing import Iterable, List, Optional, Sequence, Tuple

MAGIC = 0x53
VERSION = 4


def pointer(immediate: bool, item_id: int, value: int, hab: int = 40) -> bytes:
    """One 64-bit item pointer: mode bit, id, address/value."""
    word = (int(immediate) << 63) | (item_id << hab) | (value & ((1 << hab) - 1))
    return struct.pack(">Q", word)


def header(n_items: int, hab: int = 40, magic: int = MAGIC, version: int = VERSION,
           id_bytes: Optional[int] = None, addr_bytes: Optional[int] = None) -> bytes:
    if id_bytes is None:
        id_bytes = (64 - hab) // 8
    if addr_bytes is None:
        addr_bytes = hab // 8
    return bytes([magic, version, id_bytes, addr_bytes, 0, 0]) + struct.pack(">H", n_items)


def packet(cnt: int, payload: bytes = b"", offset: int = 0, heap_length: Optional[int] = None,
           items: Sequence[Tuple[bool, int, int]] = (), hab: int = 40,
           order: str = "clop", raw_header: Optional[bytes] = None) -> bytes:
    """A packet of heap ``cnt`` carrying ``payload`` at ``offset``.

    ``items`` are extra (immediate, id, value) pointers. ``order`` gives the
    order of the header immediates (c=cnt, l=length, o=offset, p=payload
    length); ``heap_length=None`` omits HEAP_LENGTH.
    """
    special = {
        "c": (1, cnt),
        "l": (2, heap_length),
        "o": (3, offset),
        "p": (4, len(payload)),
    }
    ptrs = []
    for key in order:
        item_id, value = special[key]
        if value is not None:
            ptrs.append(pointer(True, item_id, value, hab))
    for imm, item_id, value in items:
        ptrs.append(pointer(imm, item_id, value, hab))
    hdr = raw_header if raw_header is not None else header(len(ptrs), hab)
    return hdr + b"".join(ptrs) + payload


def heap_packets(cnt: int, payload: bytes, packet_payload: int,
                 items: Sequence[Tuple[bool, int, int]] = (), hab: int = 40,
                 with_length: bool = True) -> List[bytes]:
    """Split a heap into packets; item pointers go in the first packet."""
    out = []
    offsets = list(range(0, len(payload), packet_payload)) or [0]
    for i, off in enumerate(offsets):
        out.append(packet(cnt, payload[off:off + packet_payload], off,
                          len(payload) if with_length else None,
                          items if i == 0 else (), hab))
    return out


def stop_packet(cnt: int = 0xFFFF, hab: int = 40) -> bytes:
    return packet(cnt, b"", 0, 0, [(True, 0x06, 2)], hab)


def start_packet(cnt: int = 1, hab: int = 40) -> bytes:
    return packet(cnt, b"\0", 0, 1, [(True, 0x06, 0), (False, 0, 0)], hab)


def concat(packets: Iterable[bytes]) -> bytes:
    return b"".join(packets)
