"""Capture files for tests, written straight from the format specifications
(the libpcap file format, the pcapng draft, IEEE 802.1Q, RFC 791, RFC 8200,
RFC 768 and the Linux cooked-capture headers), independent of the library.

Frames are built inside out: :func:`udp` makes a datagram, :func:`ipv4` or
:func:`ipv6` wraps it, and a link-layer function (:func:`ethernet`,
:func:`sll`, :func:`sll2`) or nothing (raw IP) wraps that. :func:`frame` does
the usual case in one call. :func:`classic` and :func:`pcapng` put frames
into a file.
"""

import ipaddress
import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

# Link types
ETHERNET = 1
RAW_BSD = 12
RAW_OPENBSD = 14
RAW = 101
LINUX_SLL = 113
IPV4 = 228
IPV6 = 229
LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_ARP = 0x0806
TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8

PROTO_TCP = 6
PROTO_UDP = 17
# IPv6 extension headers
HOP_BY_HOP = 0
ROUTING = 43
FRAGMENT = 44
DEST_OPTS = 60
NO_NEXT = 59


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp(sport: int, dport: int, payload: bytes, length: Optional[int] = None) -> bytes:
    """A UDP datagram; ``length`` overrides the length field (checksum 0: none)."""
    if length is None:
        length = 8 + len(payload)
    return struct.pack("!HHHH", sport, dport, length, 0) + payload


def tcp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    """A minimal TCP segment (20-byte header), as noise."""
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, options: bytes = b"",
         flags_offset: int = 0x4000, ident: int = 1) -> bytes:
    """An IPv4 packet; ``options`` (a multiple of 4 bytes) lengthen the header
    (IHL); ``flags_offset`` is the 16-bit flags and fragment offset field (the
    default is DF alone)."""
    assert len(options) % 4 == 0
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(payload)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total & 0xFFFF, ident, flags_offset,
                         64, proto, 0, ipaddress.IPv4Address(src).packed,
                         ipaddress.IPv4Address(dst).packed) + options
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes,
         extensions: Sequence[Tuple[int, bytes]] = ()) -> bytes:
    """An IPv6 packet whose ``extensions`` are (type, body) pairs, outermost
    first; each body is padded so that its header is a multiple of 8 bytes.
    ``next_header`` is the protocol after the last extension."""
    chain = b""
    types = [t for t, _ in extensions] + [next_header]
    for i, (kind, body) in enumerate(extensions):
        if kind == FRAGMENT:
            assert len(body) == 6
            chain += bytes([types[i + 1], 0]) + body
        else:
            body = body + b"\0" * (-(len(body) + 2) % 8)
            chain += bytes([types[i + 1], (len(body) + 2) // 8 - 1]) + body
    rest = chain + payload
    return struct.pack("!IHBB16s16s", 6 << 28, len(rest), types[0], 64,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + rest


def fragment_body(offset_units: int, more: bool, ident: int = 7) -> bytes:
    """The 6 bytes after next-header and reserved in an IPv6 fragment header."""
    return struct.pack("!HI", (offset_units << 3) | int(more), ident)


def ethernet(ethertype: int, payload: bytes, vlans: Sequence[Tuple[int, int]] = (),
             src_mac: bytes = b"\x02\0\0\0\0\x01", dst_mac: bytes = b"\x02\0\0\0\0\x02",
             pad: bool = True) -> bytes:
    """An Ethernet frame; ``vlans`` are (TPID, VLAN id) tags, outermost first.
    Short frames are padded to 60 bytes as on the wire (the UDP length then
    matters)."""
    tags = b"".join(struct.pack("!HH", tpid, vid & 0xFFF) for tpid, vid in vlans)
    out = dst_mac + src_mac + tags + struct.pack("!H", ethertype) + payload
    if pad and len(out) < 60:
        out += b"\0" * (60 - len(out))
    return out


def sll(protocol: int, payload: bytes) -> bytes:
    """A Linux cooked capture (v1) frame: packet type, ARPHRD, address, protocol."""
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\0\0\0\0\x01\0\0", protocol) + payload


def sll2(protocol: int, payload: bytes) -> bytes:
    """A Linux cooked capture v2 frame: protocol first, then interface index,
    ARPHRD, packet type and address."""
    return struct.pack("!HHIHBB8s", protocol, 0, 3, 1, 0, 6, b"\x02\0\0\0\0\x01\0\0") + payload


def frame(linktype: int, src: str, dst: str, sport: int, dport: int, payload: bytes,
          vlans: Sequence[Tuple[int, int]] = ()) -> bytes:
    """A UDP datagram carrying ``payload`` in a frame of ``linktype``; the IP
    version follows the addresses."""
    v6 = ":" in src
    dgram = udp(sport, dport, payload)
    ip = ipv6(src, dst, PROTO_UDP, dgram) if v6 else ipv4(src, dst, PROTO_UDP, dgram)
    return link(linktype, ip, vlans)


def link(linktype: int, ip: bytes, vlans: Sequence[Tuple[int, int]] = ()) -> bytes:
    """Wrap an IP packet for ``linktype``."""
    ethertype = ETHERTYPE_IPV6 if ip[0] >> 4 == 6 else ETHERTYPE_IPV4
    if linktype == ETHERNET:
        return ethernet(ethertype, ip, vlans)
    assert not vlans, "VLAN tags are only built for Ethernet"
    if linktype == LINUX_SLL:
        return sll(ethertype, ip)
    if linktype == LINUX_SLL2:
        return sll2(ethertype, ip)
    return ip   # raw IP, IPv4, IPv6


# ---------------------------------------------------------------------------
# Containers

@dataclass
class Record:
    """A frame as captured: ``caplen`` bytes of it kept (all by default), and
    the length on the wire (``origlen``, by default the frame's)."""
    data: bytes
    origlen: Optional[int] = None

    def wire_length(self) -> int:
        return len(self.data) if self.origlen is None else self.origlen


RecordLike = Union[bytes, Record]


def _record(r: RecordLike) -> Record:
    return r if isinstance(r, Record) else Record(r)


def classic(records: Sequence[RecordLike], linktype: int = ETHERNET, byteorder: str = "<",
            nanosecond: bool = False, snaplen: int = 262144, modified: bool = False) -> bytes:
    """A classic pcap file (microsecond or nanosecond timestamps) in
    ``byteorder`` ('<' or '>'). ``modified`` writes Alexey Kuznetzov's
    variant, whose record headers carry 8 more bytes (interface index,
    protocol, packet type)."""
    magic = 0xA1B2CD34 if modified else 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, r in enumerate(map(_record, records)):
        out.append(struct.pack(byteorder + "IIII", 1700000000 + i, i * 10, len(r.data),
                               r.wire_length()))
        if modified:
            out.append(struct.pack(byteorder + "IHBx", 2, ETHERTYPE_IPV4, 0))
        out.append(r.data)
    return b"".join(out)


def classic_record_offsets(records: Sequence[RecordLike]) -> List[int]:
    """Where each record's header starts in :func:`classic`'s output."""
    offsets, pos = [], 24
    for r in map(_record, records):
        offsets.append(pos)
        pos += 16 + len(r.data)
    return offsets


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def ng_block(block_type: int, body: bytes, byteorder: str = "<") -> bytes:
    """A pcapng block: type, total length, body (padded), total length."""
    body = _pad4(body)
    total = 12 + len(body)
    return struct.pack(byteorder + "II", block_type, total) + body + struct.pack(byteorder + "I",
                                                                                 total)


def ng_option_end(byteorder: str) -> bytes:
    return struct.pack(byteorder + "HH", 0, 0)


def ng_section_header(byteorder: str = "<", options: bool = True) -> bytes:
    body = struct.pack(byteorder + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    if options:     # shb_userappl, so that option parsing is exercised by length only
        text = b"spead2py tests"
        body += struct.pack(byteorder + "HH", 4, len(text)) + _pad4(text) + ng_option_end(byteorder)
    return ng_block(0x0A0D0D0A, body, byteorder)


def ng_interface(linktype: int, byteorder: str = "<", snaplen: int = 0) -> bytes:
    body = struct.pack(byteorder + "HHI", linktype, 0, snaplen)
    # if_tsresol = 9 (nanoseconds), then the end of options
    body += struct.pack(byteorder + "HHB3x", 9, 1, 9) + ng_option_end(byteorder)
    return ng_block(1, body, byteorder)


def ng_enhanced(interface: int, r: RecordLike, byteorder: str = "<") -> bytes:
    r = _record(r)
    body = struct.pack(byteorder + "IIIII", interface, 0, 12345, len(r.data), r.wire_length())
    body += _pad4(r.data)
    body += struct.pack(byteorder + "HH", 1, 4) + b"note" + ng_option_end(byteorder)  # opt_comment
    return ng_block(6, body, byteorder)


def ng_simple(r: RecordLike, byteorder: str = "<") -> bytes:
    r = _record(r)
    return ng_block(3, struct.pack(byteorder + "I", r.wire_length()) + r.data, byteorder)


def ng_statistics(interface: int, byteorder: str = "<") -> bytes:
    """An Interface Statistics Block, which a reader skips."""
    return ng_block(5, struct.pack(byteorder + "III", interface, 0, 0) + ng_option_end(byteorder),
                    byteorder)


def ng_name_resolution(byteorder: str = "<") -> bytes:
    """A Name Resolution Block (one IPv4 record), which a reader skips."""
    rec = struct.pack(byteorder + "HH", 1, 16) + bytes([10, 0, 0, 1]) + b"host.example\0\0\0\0"
    return ng_block(4, rec + struct.pack(byteorder + "HH", 0, 0), byteorder)


@dataclass
class Section:
    """One pcapng section: its byte order, its interfaces' link types, and its
    packets as (interface, record) for Enhanced Packet Blocks or (None,
    record) for Simple Packet Blocks (which belong to interface 0)."""
    interfaces: Sequence[int]
    packets: Sequence[Tuple[Optional[int], RecordLike]]
    byteorder: str = "<"
    extra_blocks: bool = True   # statistics and name resolution blocks to skip

    def to_bytes(self) -> bytes:
        bo = self.byteorder
        out = [ng_section_header(bo)]
        if self.extra_blocks:
            out.append(ng_name_resolution(bo))
        out += [ng_interface(lt, bo) for lt in self.interfaces]
        for iface, rec in self.packets:
            out.append(ng_simple(rec, bo) if iface is None else ng_enhanced(iface, rec, bo))
        if self.extra_blocks:
            out += [ng_statistics(i, bo) for i in range(len(self.interfaces))]
        return b"".join(out)


def pcapng(sections: Sequence[Section]) -> bytes:
    """A pcapng file of one or more sections."""
    return b"".join(s.to_bytes() for s in sections)
