"""Fuzzing harness for the receive path.

Used by ``tests/test_fuzz.py`` (a bounded run) and by the long run
(``python tests/fuzz_long.py --inputs 1000000``).

Inputs come from two sources:

- a byte-level :class:`Mutator` over valid captured streams (made with our
  ``send.BytesStream`` and, when available, the reference implementation):
  bit flips, byte writes, truncation, splices, duplicated and dropped
  ranges and packets, and structure-aware tweaks of header fields and item
  pointers (lengths, offsets, widths, item counts, ids, immediate bits);
- a structure-aware generator (:func:`gen_packets`) of valid-ish packets:
  random pointers, lengths, offsets, flavours, stream control and embedded
  descriptors. It draws through a small interface (:class:`RandomDraw`,
  :class:`BytesDraw`), so hypothesis can shrink what it finds and the
  long run can draw fast from a seeded ``random.Random``.

Each input is fed to a receive stream, followed by a *tail* of valid heaps
on the same stream (a buffer reader gets ``input + padding + tail`` as one
buffer; a TCP reader gets the same bytes over one connection, in pieces of
random sizes, and then the connection closes; a UDP reader gets the input's
datagrams, then the tail's). The invariants checked for every input:

- no crash and no hang: every wait has a deadline, and the long run runs
  its inputs in child processes to survive and report a crash;
- the tail arrives intact: each tail heap exactly once, every item
  byte-exact;
- the reader's framing matches :func:`frame`, an independent statement of
  the buffer reader's rule (a packet is decoded; a rejected packet whose
  extent is known is skipped whole; anything else is skipped up to the
  next plausible header), or :func:`frame_stream`, the TCP reader's (the
  extent comes from the header; a bad header skips 8 bytes; a packet over
  max_size is skipped): ``stats.packets``, ``stats.bad_packets`` and
  ``stats.too_large_packets`` equal the model's counts exactly, and no heap
  is delivered whose cnt no packet carried;
- ``ItemGroup.update`` on every delivered heap raises nothing but
  ``ValueError``, ``TypeError`` or ``UnicodeDecodeError``.

Why the tail cannot be disturbed by the input, by construction:

- *Stop*: an input may legitimately carry a stream-control STOP, which
  ends the stream. The buffer target predicts it with the model (the tail
  must then not arrive, and the next input gets a new stream); the UDP
  target shares one stream between many inputs, so it drops the datagrams
  the model decodes as a STOP.
- *Heap cnts*: a heap left incomplete by the input stays under assembly;
  tail packets with its cnt would join it. Tail cnts are therefore drawn
  outside the set of cnts of every packet the model decodes in the input
  (for UDP, in every input fed to that stream so far).
- *Framing* (buffer and TCP): a packet near the end of the input may claim
  a payload that extends into the tail (the reader skips a rejected packet
  whole too, when its extent is known), or a header may straddle the
  boundary. Zero bytes are inserted between input and tail until the model
  frames the tail's first byte as a packet start (a swallowing packet ends
  inside the padding; zero bytes are never a plausible header). Over TCP
  an oversized packet may claim more than padding can cover (up to 2^56
  bytes): the input is then cut where that packet starts.
- *Eviction*: tail heaps arrive one after another, each packet in order,
  so the heap being assembled is always the newest and is never the one
  evicted; fuzz heaps still under assembly are evicted or flushed instead.
"""

import collections
import logging
import os
import select
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import spead2  # noqa: E402
import spead2.recv  # noqa: E402
import spead2.send  # noqa: E402
from spead2._codec import RawDescriptor, encode_raw_descriptor  # noqa: E402

import itemsets  # noqa: E402
from packets import heap_packets  # noqa: E402
from ports import free_udp_port  # noqa: E402

#: Exceptions ItemGroup.update may raise for a bad heap (documented).
ALLOWED_UPDATE_ERRORS = (ValueError, TypeError, UnicodeDecodeError)

MAGIC = 0x53
VERSION = 4
HEAP_CNT_ID, HEAP_LENGTH_ID, PAYLOAD_OFFSET_ID, PAYLOAD_LENGTH_ID = 1, 2, 3, 4
DESCRIPTOR_ID, STREAM_CTRL_ID = 5, 6
CTRL_STOP = 2
MAX_DATAGRAM = 65000
WAIT = 10.0  # seconds any single wait may take before it counts as a hang

_logger = logging.getLogger("spead2")


class InvariantError(AssertionError):
    """An input broke one of the invariants (the message says which)."""


class HangError(InvariantError):
    """A bounded wait expired."""


# ---------------------------------------------------------------------------
# The model: how a buffer reader frames bytes into packets.

class Packet:
    __slots__ = ("pos", "size", "hab", "cnt", "heap_length", "offset", "length", "is_stop")

    def __init__(self, pos, size, hab, cnt, heap_length, offset, length, is_stop):
        self.pos, self.size, self.hab, self.cnt = pos, size, hab, cnt
        self.heap_length, self.offset, self.length, self.is_stop = (
            heap_length, offset, length, is_stop)


def _specials(data, pos, n, hab):
    """The header items among the ``n`` pointers after the header at ``pos``:
    ``(cnt, heap_length, offset, length, is_stop)``, -1 where absent (the
    last pointer of an id counts)."""
    cnt = heap_length = offset = length = -1
    is_stop = False
    addr_mask = (1 << hab) - 1
    for word in struct.unpack_from(f">{n}Q", data, pos + 8):
        if not word >> 63:
            continue
        item_id = (word >> hab) & ((1 << (63 - hab)) - 1)
        value = word & addr_mask
        if item_id == HEAP_CNT_ID:
            cnt = value
        elif item_id == HEAP_LENGTH_ID:
            heap_length = value
        elif item_id == PAYLOAD_OFFSET_ID:
            offset = value
        elif item_id == PAYLOAD_LENGTH_ID:
            length = value
        elif item_id == STREAM_CTRL_ID and value == CTRL_STOP:
            is_stop = True
    return cnt, heap_length, offset, length, is_stop


def decode(data, pos=0, end=None):
    """Decode the packet at ``data[pos:end]`` as the receiver does.

    Returns ``(packet, extent)``: ``packet`` is a :class:`Packet` if the
    receiver accepts the packet, else None; ``extent`` is the number of
    bytes the packet occupies if its header, pointers and PAYLOAD_LENGTH
    could be read and the payload fits, else 0.
    """
    if end is None:
        end = len(data)
    avail = end - pos
    if not _plausible_header(data, pos, end):
        return None, 0
    hab = data[pos + 3] * 8
    n = (data[pos + 6] << 8) | data[pos + 7]
    after = 8 + 8 * n
    if after > avail:
        return None, 0
    cnt, heap_length, offset, length, is_stop = _specials(data, pos, n, hab)
    extent = after + length if 0 <= length <= avail - after else 0
    if (cnt < 0 or offset < 0 or length < 0 or length > avail - after
            or (heap_length >= 0 and offset + length > heap_length)):
        return None, extent
    return Packet(pos, extent, hab, cnt, heap_length, offset, length, is_stop), extent


def _plausible_header(data, pos, end):
    return (end - pos >= 8 and data[pos] == MAGIC and data[pos + 1] == VERSION
            and data[pos + 2] + data[pos + 3] == 8 and 1 <= data[pos + 3] <= 7)


def _next_header(data, pos, end):
    """The first plausible header after ``pos`` (``end`` if none)."""
    p = pos
    while True:
        p = data.find(b"\x53\x04", p + 1, end)
        if p < 0:
            return end
        if _plausible_header(data, p, end):
            return p


class Framing:
    """The outcome of :func:`frame` or :func:`frame_stream`: the accepted
    packets, the number of rejected decodes (bad packets) and of oversized
    packets, where each decode started, the (start, end) of every packet
    whose extent was known (accepted or not; for a stream also each 8-byte
    skip), and whether (and where) a STOP ended the reading."""

    __slots__ = ("packets", "bad", "too_large", "starts", "spans", "stop_at")

    def __init__(self):
        self.packets = []
        self.bad = 0
        self.too_large = 0
        self.starts = set()
        self.spans = []
        self.stop_at = None


def frame(data):
    """Frame ``data`` as the buffer reader does, up to the end or a STOP."""
    out = Framing()
    pos, end = 0, len(data)
    while pos < end:
        out.starts.add(pos)
        pkt, extent = decode(data, pos, end)
        if extent:
            out.spans.append((pos, pos + extent))
        if pkt is None:
            out.bad += 1
            pos = pos + extent if extent else _next_header(data, pos, end)
            continue
        out.packets.append(pkt)
        pos += extent
        if pkt.is_stop:
            out.stop_at = pkt.pos
            break
    return out


def _stream_extent(data, pos, end):
    """How many bytes the packet at ``pos`` occupies, as a stream reader
    tells from its header: ``(extent, None)``; ``(None, needed)`` if
    ``data[pos:end]`` is too short to tell (``needed`` bytes would do);
    ``(None, None)`` if it cannot start a packet (not a SPEAD header, or no
    PAYLOAD_LENGTH)."""
    if end - pos < 8:
        return None, 8
    if not _plausible_header(data, pos, end):
        return None, None
    n = (data[pos + 6] << 8) | data[pos + 7]
    if 8 + 8 * n > end - pos:
        return None, 8 + 8 * n
    length = _specials(data, pos, n, data[pos + 3] * 8)[3]
    return (None, None) if length < 0 else (8 + 8 * n + length, None)


def frame_stream(data, max_size):
    """Frame ``data`` as the TCP reader frames its connection (which then
    closes), up to the end or a STOP.

    The rules: a header that is not SPEAD or has no PAYLOAD_LENGTH skips 8
    bytes, and a run of such skips is one bad packet; a packet over
    ``max_size`` is skipped whole (too large); one that does not decode is
    skipped whole (bad); bytes left at the end are one bad packet unless
    they continue a run of skips.
    """
    out = Framing()
    pos, end = 0, len(data)
    skipping = False
    while pos < end:
        out.starts.add(pos)
        extent, needed = _stream_extent(data, pos, end)
        if needed is not None:
            out.bad += not skipping
            out.spans.append((pos, pos + needed))
            break
        if extent is None:
            out.bad += not skipping
            skipping = True
            out.spans.append((pos, pos + 8))
            pos += 8
            continue
        skipping = False
        out.spans.append((pos, pos + extent))
        if extent > max_size:
            out.too_large += 1
        elif pos + extent > end:
            out.bad += 1
        else:
            pkt, _ = decode(data, pos, pos + extent)
            if pkt is None:
                out.bad += 1
            else:
                out.packets.append(pkt)
                if pkt.is_stop:
                    out.stop_at = pos
                    break
        pos += extent
    return out


def split_packets(data):
    """The packets of a valid capture, as a list of bytes."""
    return [bytes(data[p.pos:p.pos + p.size]) for p in frame(data).packets]


# ---------------------------------------------------------------------------
# Captures: valid streams to mutate.

def own_captures(tp):
    """Streams sent by our ``send.BytesStream``: every item set of
    ``itemsets`` in several flavours and packet sizes, without the final
    stop heap (see the module notes)."""
    out = []
    flavours = [(40, 0), (48, 0), (32, 0), (40, 7), (56, 0), (16, 0)]
    for name, itemset in sorted(itemsets.ITEM_SETS.items()):
        for k, (hab, bug_compat) in enumerate(flavours):
            if name == "large" and k > 1:
                continue
            if hab == 16 and name not in ("simple", "immediate"):
                continue  # 16-bit addresses cannot hold the other heaps
            size = (1472, 9000, 200, 1472, 600, 1472)[k]
            config = spead2.send.StreamConfig(max_packet_size=size)
            stream = spead2.send.BytesStream(tp, config)
            flavour = itemsets.make_flavour(spead2, hab, bug_compat)
            try:
                itemsets.send_heaps(spead2, stream.send_heap, itemset, 2, flavour)
            except ValueError:
                continue
            out.append(strip_stop(stream.getvalue()))
    # descriptors re-sent with every heap, and start-of-stream heaps
    ig = spead2.send.ItemGroup(descriptor_frequency=1, flavour=spead2.Flavour(4, 64, 48, 0))
    itemsets.MIX.add_to(ig)
    stream = spead2.send.BytesStream(tp, spead2.send.StreamConfig(max_packet_size=700))
    stream.send_heap(ig.get_start())
    for i in range(3):
        for key, value in itemsets.MIX.send_values(i).items():
            ig[key].value = value
        stream.send_heap(ig.get_heap())
    out.append(strip_stop(stream.getvalue()))
    return out


def reference_captures(ref_python, directory):
    """Streams sent by the reference's BytesStream (see ``refimpl``)."""
    out = []
    for name, hab, bug_compat, size in [("mix", 40, 0, 1472), ("formats", 48, 0, 9000),
                                        ("numpy", 40, 7, 600), ("immediate", 32, 0, 1472)]:
        path = os.path.join(directory, f"ref-{name}-{hab}-{bug_compat}.bin")
        data = ref_python.send_bytes(path, name, 2, hab, bug_compat, size)
        out.append(strip_stop(data))
    return out


def strip_stop(data):
    """``data`` without its stop packets."""
    return b"".join(bytes(data[p.pos:p.pos + p.size]) for p in frame(data).packets
                    if not p.is_stop)


# ---------------------------------------------------------------------------
# Drawing random choices, from random.Random or from hypothesis.

class RandomDraw:
    """Choices from a seeded :class:`random.Random` (the long run)."""

    def __init__(self, rng):
        self.rng = rng

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)

    def choice(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def chance(self, p):
        return self.rng.random() < p

    def bytes(self, n):
        return self.rng.randbytes(n)


class BytesDraw:
    """Choices read from a byte string, for hypothesis: the strategy draws
    the bytes once (fast), and shrinking them towards zero bytes shrinks
    every choice towards its simplest outcome (the low end of a range, the
    first option, the rare branch not taken). Past the end, bytes are zero.
    """

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk + bytes(n - len(chunk))

    def int(self, lo, hi):
        span = hi - lo
        if span <= 0:
            return lo
        raw = int.from_bytes(self._take((span.bit_length() + 7) // 8), "big")
        return lo + raw % (span + 1)

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, p):
        return int.from_bytes(self._take(2), "big") >= 65536 * (1 - p)

    def bytes(self, n):
        return self._take(n)


def interesting_values(hab):
    mask = (1 << hab) - 1
    values = [0, 1, 2, 3, 7, 8, 9, 15, 16, 63, 64, 255, 256, 1023, 1024, 1472, 4095, 4096, 8192,
              9000, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40 - 1, 2 ** 40,
              2 ** 47, 2 ** 48 - 1, mask, mask - 1]
    return sorted({v & mask for v in values})


# ---------------------------------------------------------------------------
# The structure-aware generator.

def _pointer(immediate, item_id, value, hab):
    id_mask = (1 << (63 - hab)) - 1
    return struct.pack(">Q", (int(bool(immediate)) << 63) | ((item_id & id_mask) << hab)
                       | (value & ((1 << hab) - 1)))


def gen_value(d, hab, near=None):
    """A value for a pointer field: interesting, near ``near``, or random."""
    k = d.int(0, 9)
    if near is not None and k < 5:
        return max(0, near + d.int(-2, 2)) & ((1 << hab) - 1)
    if k < 8:
        return d.choice(interesting_values(hab))
    return d.int(0, (1 << hab) - 1)


def gen_descriptor(d, hab, bug_compat=0):
    """The bytes of a descriptor packet, valid-ish."""
    id_bytes = (64 - hab) // 8
    raw = RawDescriptor()
    addr_max = (1 << hab) - 1
    raw.id = min(addr_max, d.choice([0x1000, 0x1001, 0x1002, 7, d.int(0, (1 << min(hab, 24)) - 1)]))
    raw.name = d.choice([b"a", b"b", b"item", b"", b"\xff\xfe", b"n" * d.int(0, 40)])
    raw.description = d.choice([b"", b"desc", b"\x80"])
    ndim = d.int(0, 3) if not d.chance(0.05) else d.int(4, 70)
    shape = []
    for _ in range(ndim):
        shape.append(min(addr_max, d.choice([-1, 0, 1, 2, 3, 8, 100, 2 ** 16, 2 ** 40 - 1])))
    raw.shape = shape
    if d.chance(0.4):
        dtype = d.choice(["<u1", ">i2", "<f4", ">c8", "|b1", "S3", "<M8[us]", "O", "<V0",
                          "[('a', '<u2'), ('b', '>f8')]", "('<u1', (2, 2))", "garbage"])
        dims = ", ".join(str(s if s >= 0 else 2) for s in shape)
        header = d.choice([
            "{'descr': %r, 'fortran_order': %s, 'shape': (%s,)}"
            % (dtype, d.choice(["False", "True", "1"]), dims),
            "{'descr': '<u1', 'fortran_order': False, 'shape': ()}",
            "{'descr': '<u1', 'fortran_order': False}",
            "[" * d.int(1, 3000),
            "{'descr': '<u1', 'fortran_order': False, 'shape': (2**70,)}",
            "not a dict",
        ])
        raw.numpy_header = header.encode("ascii")
    else:
        fmt = []
        for _ in range(d.int(0, 3) if not d.chance(0.05) else d.int(4, 300)):
            code = d.choice(["u", "i", "f", "b", "c", "u", "i", "0", "x", b"\x80"])
            bits = d.choice([1, 7, 8, 12, 16, 32, 48, 64, 65, 0, 2 ** 16, (1 << (8 * id_bytes)) - 1])
            fmt.append((code, bits & ((1 << (8 * id_bytes)) - 1)))
        raw.format = fmt
    try:
        return encode_raw_descriptor(raw, hab, bug_compat)
    except (ValueError, UnicodeEncodeError):
        # too big for the flavour: the smallest descriptor instead
        return encode_raw_descriptor(RawDescriptor(1, b"a", b"", [], [("u", 8)]), hab,
                                     bug_compat)


def gen_packets(d):
    """A list of packets (bytes), each valid-ish: mostly coherent heaps with
    a few things wrong."""
    hab = d.choice([40, 48, 40, 48, 32, 56, 8, 16, 24])
    packets = []
    for _ in range(d.int(1, 6)):
        cnt = gen_value(d, hab) if d.chance(0.3) else d.int(1, 20)
        # the heap: payload, items, descriptors
        payload = bytearray()
        items = []
        for _ in range(d.int(0, 4)):
            kind = d.int(0, 9)
            if kind < 3:
                desc = gen_descriptor(d, hab)
                if d.chance(0.2):
                    desc = bytearray(desc)
                    desc[d.int(0, len(desc) - 1)] = d.int(0, 255)
                items.append((False, DESCRIPTOR_ID, len(payload)))
                payload += desc
            elif kind < 6:
                n = d.choice([0, 1, 2, 3, 4, 8, 12, 100, 1000])
                items.append((False, d.choice([0x1000, 0x1001, 0x1002, 7, 0x10]), len(payload)))
                payload += d.bytes(n) if n <= 16 else bytes([d.int(0, 255)]) * n
            elif kind < 8:
                items.append((True, d.choice([0x1000, 0x1001, 0x1002]), gen_value(d, hab)))
            elif kind < 9:
                ctrl = d.choice([0, 1, 3, 0, 1, 3, 2]) if d.chance(0.5) else gen_value(d, hab)
                items.append((True, STREAM_CTRL_ID, ctrl))
            else:
                items.append((d.chance(0.5), d.int(0, 0x20), gen_value(d, hab)))
            if d.chance(0.1):  # an address past the payload
                imm, item_id, _ = items[-1]
                if not imm:
                    items[-1] = (imm, item_id, gen_value(d, hab, len(payload) + 1))
        heap_length = len(payload)
        chunk = d.choice([8, 64, 100, 1000, 1472, max(1, heap_length)])
        offsets = list(range(0, max(heap_length, 1), chunk)) or [0]
        order = list(range(len(offsets)))
        if d.chance(0.3):
            j = d.int(0, len(order) - 1)
            order.insert(d.int(0, len(order)), order[j])  # a duplicate
        if d.chance(0.2) and len(order) > 1:
            del order[d.int(0, len(order) - 1)]  # a loss
        if d.chance(0.2):
            order.reverse()
        for k in order:
            off = offsets[k]
            body = bytes(payload[off:off + chunk])
            fields = {HEAP_CNT_ID: cnt, HEAP_LENGTH_ID: heap_length, PAYLOAD_OFFSET_ID: off,
                      PAYLOAD_LENGTH_ID: len(body)}
            for key in list(fields):
                r = d.int(0, 99)
                if r < 4:
                    del fields[key]
                elif r < 12:
                    fields[key] = gen_value(d, hab, fields[key])
            ptrs = [_pointer(True, key, value, hab) for key, value in fields.items()]
            if d.chance(0.2):
                ptrs.reverse()
            if k == order[0] or d.chance(0.1):
                ptrs += [_pointer(imm, item_id, value, hab) for imm, item_id, value in items]
            n_items = len(ptrs)
            if d.chance(0.05):
                n_items = d.choice([0, max(0, n_items - 1), n_items + 1, 0xFFFF])
            id_bytes, addr_bytes = (64 - hab) // 8, hab // 8
            if d.chance(0.03):
                id_bytes, addr_bytes = d.choice([(0, 8), (4, 5), (8, 0), (addr_bytes, id_bytes)])
            magic = MAGIC if not d.chance(0.02) else d.int(0, 255)
            version = VERSION if not d.chance(0.02) else d.choice([3, 5, 0])
            head = bytes([magic, version, id_bytes, addr_bytes, 0, 0]) + struct.pack(">H", n_items)
            pkt = head + b"".join(ptrs) + body
            if d.chance(0.05):
                pkt = pkt[:d.int(0, len(pkt))]
            if d.chance(0.03):
                pkt += d.bytes(d.int(1, 16))
            packets.append(pkt)
        if d.chance(0.05):
            hab = d.choice([40, 48, 8, 56])
    if d.chance(0.1):
        packets.insert(d.int(0, len(packets)), d.bytes(d.int(0, 64)))
    return packets


def hypothesis_packets():
    """Hypothesis strategy for :func:`gen_packets` (see :class:`BytesDraw`)."""
    from hypothesis import strategies as st
    return st.binary(min_size=256, max_size=4096).map(lambda b: gen_packets(BytesDraw(b)))


def _descriptor_case(data):
    d = BytesDraw(data)
    hab = d.choice([40, 48, 32, 56, 8, 16, 24])
    bug_compat = d.choice([0, 7, 1, 2])
    desc = bytearray(gen_descriptor(d, hab, bug_compat & 3))
    for _ in range(d.int(0, 3)):
        desc[d.int(0, len(desc) - 1)] = d.int(0, 255)
    if d.chance(0.1):
        desc = desc[:d.int(0, len(desc))]
    return bytes(desc), hab, bug_compat


def hypothesis_descriptor():
    """Hypothesis strategy: (descriptor packet, heap_address_bits, bug_compat)."""
    from hypothesis import strategies as st
    return st.binary(min_size=64, max_size=1024).map(_descriptor_case)


# ---------------------------------------------------------------------------
# The byte-level mutator.

class Mutator:
    """Seeded mutations of captured streams, as one buffer or as datagrams."""

    def __init__(self, corpus, rng):
        self.corpus = [bytes(c) for c in corpus if c]
        self.packets = [split_packets(c) for c in self.corpus]
        self.rng = rng

    def _chunk(self):
        src = self.rng.choice(self.corpus)
        start = self.rng.randrange(len(src))
        return src[start:start + self.rng.choice([1, 8, 16, 64, 300, 3000])]

    def _tweak_field(self, buf, pos):
        """Change one header field or pointer of the packet at ``pos``."""
        rng = self.rng
        if len(buf) - pos < 8:
            return
        n = min((buf[pos + 6] << 8) | buf[pos + 7], (len(buf) - pos - 8) // 8)
        what = rng.randrange(10)
        if what == 0 or n == 0:
            field = rng.choice([0, 1, 2, 3, 6, 7])
            if field == 2 and rng.random() < 0.5:
                buf[pos + 2], buf[pos + 3] = buf[pos + 3], buf[pos + 2]
            elif field in (6, 7):
                count = (buf[pos + 6] << 8) | buf[pos + 7]
                count = rng.choice([0, count - 1, count + 1, count * 2, 0xFFFF, rng.randrange(65536)])
                struct.pack_into(">H", buf, pos + 6, count & 0xFFFF)
            else:
                buf[pos + field] = rng.choice([0, 1, 3, 4, 5, 8, 0x53, 0xFF, rng.randrange(256)])
            return
        hab = buf[pos + 3] * 8 if 1 <= buf[pos + 3] <= 7 else 40
        p = pos + 8 + 8 * rng.randrange(n)
        (word,) = struct.unpack_from(">Q", buf, p)
        value = word & ((1 << hab) - 1)
        if what < 7:
            value = rng.choice([0, 1, value - 1, value + 1, value * 2, value // 2, value + 8,
                                2 ** 40, 2 ** 40 - 1, 2 ** 32, (1 << hab) - 1,
                                rng.randrange(1 << hab), len(buf)])
            word = (word & ~((1 << hab) - 1)) | (value & ((1 << hab) - 1))
        elif what == 7:
            word ^= 1 << 63
        else:
            item_id = rng.choice([0, 1, 2, 3, 4, 5, 6, 0x14, 0x1000])
            word = (word & ((1 << hab) - 1)) | (word & (1 << 63)) | (item_id << hab)
        struct.pack_into(">Q", buf, p, word & (2 ** 64 - 1))

    def mutate_bytes(self, data, max_ops=8):
        """Byte-level mutations of ``data`` (a stream or one datagram)."""
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rng.randint(1, max_ops)):
            op = rng.randrange(12)
            if not buf:
                buf += self._chunk()
                continue
            i = rng.randrange(len(buf))
            if op < 3:
                for _ in range(rng.randint(1, 4)):
                    j = rng.randrange(len(buf))
                    buf[j] ^= 1 << rng.randrange(8)
            elif op == 3:
                buf[i] = rng.choice([0, 0xFF, 0x53, 0x04, 0x80, 0x02, 0x06, rng.randrange(256)])
            elif op == 4:
                del buf[rng.randrange(len(buf) + 1):]
            elif op == 5:
                del buf[i:i + rng.choice([1, 7, 8, 9, 64, 1000])]
            elif op == 6:
                buf[i:i] = self._chunk()
            elif op == 7:
                j = rng.randrange(len(buf))
                buf[i:i] = buf[j:j + rng.choice([8, 40, 100, 1500])]
            elif op == 8:
                buf[i:i] = rng.choice([bytes(rng.randrange(1, 40)), rng.randbytes(rng.randrange(1, 40)),
                                       b"\x53\x04\x03\x05", b"\x53\x04\x02\x06\x00\x00\xff\xff"])
            else:
                # a field of a packet: one where a packet starts, or anywhere
                starts = [p.pos for p in frame(bytes(buf)).packets] if op < 11 else []
                self._tweak_field(buf, rng.choice(starts) if starts else i)
        return bytes(buf)

    def buffer_input(self):
        """A mutated stream for a buffer reader."""
        rng = self.rng
        k = rng.randrange(len(self.corpus))
        if rng.random() < 0.3:
            # packet-level: drop, duplicate and swap packets first
            pkts = list(self.packets[k])
            for _ in range(rng.randint(1, 4)):
                if not pkts:
                    break
                i, j = rng.randrange(len(pkts)), rng.randrange(len(pkts))
                op = rng.randrange(3)
                if op == 0:
                    del pkts[i]
                elif op == 1:
                    pkts.insert(i, pkts[j])
                else:
                    pkts[i], pkts[j] = pkts[j], pkts[i]
            data = b"".join(pkts)
            return self.mutate_bytes(data, 3) if rng.random() < 0.7 else data
        return self.mutate_bytes(self.corpus[k])

    def datagram_input(self, max_size):
        """Mutated datagrams for a UDP reader with ``max_size``."""
        rng = self.rng
        pkts = list(self.packets[rng.randrange(len(self.packets))])
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(10)
            i = rng.randrange(len(pkts) + 1)
            if op < 4 and pkts:
                j = min(i, len(pkts) - 1)
                pkts[j] = self.mutate_bytes(pkts[j], 4)
            elif op == 4 and pkts:
                del pkts[min(i, len(pkts) - 1)]
            elif op == 5 and pkts:
                pkts.insert(i, pkts[rng.randrange(len(pkts))])
            elif op == 6 and len(pkts) > 1:
                a, b = rng.randrange(len(pkts)), rng.randrange(len(pkts))
                pkts[a], pkts[b] = pkts[b], pkts[a]
            elif op == 7:
                pkts.insert(i, rng.choice([b"", b"\x53", bytes(8), rng.randbytes(rng.randrange(64))]))
            elif op == 8:
                pkts.insert(i, rng.choice(pkts or [b""]) + bytes(max_size + rng.randrange(1, 2000)))
            elif pkts:
                j = min(i, len(pkts) - 1)
                if rng.random() < 0.5 and j + 1 < len(pkts):
                    pkts[j:j + 2] = [pkts[j] + pkts[j + 1]]
                else:
                    cut = rng.randrange(len(pkts[j]) + 1)
                    pkts[j:j + 1] = [pkts[j][:cut], pkts[j][cut:]]
        return [p[:MAX_DATAGRAM] for p in pkts]


# ---------------------------------------------------------------------------
# The tail: valid heaps that must arrive intact after any input.

class TailHeap:
    __slots__ = ("cnt", "hab", "packets", "items")

    def __init__(self, cnt, hab, packets, items):
        self.cnt, self.hab, self.packets, self.items = cnt, hab, packets, items


def make_tail(rng, exclude, n_heaps=None):
    """1-3 heaps (hand-built, flavour 64-40 or 64-48) with cnts not in ``exclude``.

    ``items`` of each heap: the (id, is_immediate, bytes) a receiver must
    see, in pointer order.
    """
    heaps = []
    used = set()
    for _ in range(n_heaps or rng.randint(1, 3)):
        hab = rng.choice([40, 48])
        while True:
            cnt = rng.randrange(1 << 20, 1 << 39)
            if cnt not in exclude and cnt not in used:
                break
        used.add(cnt)
        payload = b""
        ptrs, items = [], []
        for k in range(rng.randint(1, 4)):
            item_id = 0x2000 + k
            if rng.random() < 0.3:
                value = rng.randrange(1 << hab)
                ptrs.append((True, item_id, value))
                items.append((item_id, True, value.to_bytes(hab // 8, "big")))
            else:
                size = rng.choice([16, 64, 1000, 5000])
                data = rng.randbytes(size)
                ptrs.append((False, item_id, len(payload)))
                items.append((item_id, False, data))
                payload += data
        if not payload:
            payload = bytes(1)  # a heap needs a payload byte to be complete
        pkts = heap_packets(cnt, payload, rng.choice([256, 1000, 1400, 8000]), items=ptrs,
                            hab=hab)
        heaps.append(TailHeap(cnt, hab, pkts, items))
    return heaps


def check_tail_heap(heap, tail):
    got = [(item.id, bool(item.is_immediate), bytes(item)) for item in heap.get_items()]
    if got != tail.items:
        raise InvariantError(f"tail heap {tail.cnt} corrupted: got {_short(got)}, "
                             f"sent {_short(tail.items)}")


def _short(items):
    return [(hex(i), imm, data[:12].hex() + ("..." if len(data) > 12 else ""), len(data))
            for i, imm, data in items]


# ---------------------------------------------------------------------------
# Targets: feed an input and its tail, check the invariants.

class Tally:
    """Totals over many inputs, for reports."""

    def __init__(self):
        self.inputs = 0
        self.stats = collections.Counter()
        self.update_errors = collections.Counter()
        self.heaps = 0
        self.stops = 0
        self.failures = []

    def add_stats(self, before, after):
        for name, value in after.items():
            if name == "max_batch":
                self.stats[name] = max(self.stats[name], value)
            else:
                self.stats[name] += value - (before[name] if before else 0)

    def merge(self, other):
        self.inputs += other["inputs"]
        self.heaps += other["heaps"]
        self.stops += other["stops"]
        for k, v in other["stats"].items():
            self.stats[k] = max(self.stats[k], v) if k == "max_batch" else self.stats[k] + v
        self.update_errors.update(other["update_errors"])
        self.failures += other["failures"]

    def as_dict(self):
        return {"inputs": self.inputs, "heaps": self.heaps, "stops": self.stops,
                "stats": dict(self.stats), "update_errors": dict(self.update_errors),
                "failures": self.failures}


def apply_update(ig, heap, tally):
    """``ig.update(heap)``; only the documented exceptions may escape."""
    try:
        heap.is_start_of_stream()
        repr(heap)
        ig.update(heap)
    except ALLOWED_UPDATE_ERRORS as exc:
        tally.update_errors[type(exc).__name__] += 1
    except Exception as exc:
        raise InvariantError(f"ItemGroup.update raised {type(exc).__name__}: {exc}") from exc


def _allocator(rng):
    k = rng.randrange(6)
    if k == 0:
        return spead2.MemoryPool(0, 65536, 4, 2)
    if k == 1:
        return spead2.MmapAllocator()
    return None


def random_stream_args(rng):
    kwargs = {"max_heaps": rng.choice([1, 2, 4, 4, 8]), "ring_heaps": rng.choice([1, 2, 4, 8]),
              "bug_compat": rng.choice([0, 0, 7, 1, 2, 4])}
    if rng.random() < 0.1:
        # small enough to reject many fuzz heaps, large enough for a tail heap
        kwargs["max_heap_size"] = rng.choice([1 << 15, 1 << 20])
    return kwargs


def wait_readable(fd, deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    return bool(select.select([fd], [], [], left)[0])


class BufferTarget:
    """A new stream per input, fed ``input + padding + tail`` as one buffer."""

    def __init__(self, tp, rng, tally):
        self.tp = tp
        self.rng = rng
        self.tally = tally

    def frame(self, data):
        """The model of this target's reader."""
        return frame(data)

    def layout(self, data):
        """``(buffer, tail, framing, start)``: ``data``, zero padding and a
        tail framed apart; the tail starts at ``start``."""
        rng = self.rng
        pad = 0
        for _ in range(50):
            head = data + bytes(pad)
            fuzz_framing = self.frame(head)
            exclude = {p.cnt for p in fuzz_framing.packets}
            tail = make_tail(rng, exclude)
            tail_bytes = b"".join(p for heap in tail for p in heap.packets)
            buf = head + tail_bytes
            framing = self.frame(buf)
            start = len(head)
            if framing.stop_at is not None and framing.stop_at < start:
                return buf, tail, framing, start
            fuzz_cnts = {p.cnt for p in framing.packets if p.pos < start}
            if start in framing.starts and not fuzz_cnts & {h.cnt for h in tail}:
                return buf, tail, framing, start
            # a packet (accepted or rejected, its extent known) swallows the
            # tail's start: pad until it ends inside the padding
            crossing = [(begin, end) for begin, end in framing.spans if begin < start < end]
            if crossing and crossing[-1][1] - start > self.MAX_PAD:
                # an oversized packet claiming more than padding can cover:
                # the input is cut where it starts
                data, pad = data[:crossing[-1][0]], 0
                continue
            pad += crossing[-1][1] - start if crossing else 8
        raise InvariantError("could not lay out the input and its tail apart")

    #: the most zero bytes put between input and tail
    MAX_PAD = 1 << 20

    def new_stream(self):
        """A stream with random settings; returns it and its keyword arguments."""
        rng = self.rng
        kwargs = random_stream_args(rng)
        stream = spead2.recv.Stream(self.tp, **kwargs)
        alloc = _allocator(rng)
        if alloc is not None:
            stream.set_memory_allocator(alloc)
        if rng.random() < 0.1:
            stream.set_memcpy(spead2.MEMCPY_NONTEMPORAL)
        return stream, kwargs

    def run(self, data):
        self.tally.inputs += 1
        buf, tail, framing, start = self.layout(bytes(data))
        stream, kwargs = self.new_stream()
        stream.add_buffer_reader(buf)
        self.check(stream, framing, start, tail, f"buffer stream ({len(buf)} bytes, {kwargs})")

    def check(self, stream, framing, start, tail, what):
        """Consume ``stream`` until it ends; check the invariants against
        the model's ``framing`` of the input and ``tail`` (from ``start``)."""
        stopped_early = framing.stop_at is not None and framing.stop_at < start
        accepted = {p.cnt for p in framing.packets}
        by_cnt = {h.cnt: h for h in tail}
        got_tail = []
        ig = spead2.ItemGroup()
        deadline = time.monotonic() + WAIT
        heaps = 0
        try:
            while True:
                try:
                    heap = stream.get_nowait()
                except spead2.Empty:
                    if not wait_readable(stream.fd, deadline):
                        raise HangError(f"{what} did not end within {WAIT} s")
                    continue
                except spead2.Stopped:
                    break
                heaps += 1
                if heap.cnt not in accepted:
                    raise InvariantError(f"heap {heap.cnt} delivered but no packet carried it")
                if heap.cnt in by_cnt:
                    check_tail_heap(heap, by_cnt[heap.cnt])
                    got_tail.append(heap.cnt)
                else:
                    apply_update(ig, heap, self.tally)
        finally:
            stream.stop()
        stats = stream.stats
        self.tally.add_stats(None, stats)
        self.tally.heaps += heaps
        counts = (stats.packets, stats.bad_packets, stats.too_large_packets)
        model = (len(framing.packets), framing.bad, framing.too_large)
        if counts != model:
            raise InvariantError(
                f"framing differs from the model: reader saw (packets, bad, too large) {counts}, "
                f"model {model}")
        if stopped_early:
            self.tally.stops += 1
            if got_tail:
                raise InvariantError(f"tail heaps {got_tail} delivered after a STOP")
        elif got_tail != [h.cnt for h in tail]:
            raise InvariantError(f"tail heaps {[h.cnt for h in tail]} sent, {got_tail} delivered "
                                 f"({what}, stats {stats})")


class TcpTarget(BufferTarget):
    """A new stream per input, fed ``input + padding + tail`` over one TCP
    connection (which then closes), sent in pieces of random sizes. One
    listening socket serves every input: each reader accepts from a
    duplicate of it."""

    def __init__(self, tp, rng, tally, max_sizes=(8192, 65536)):
        super().__init__(tp, rng, tally)
        # 8192: a tail packet fits, many packets of the captures do not
        self.max_sizes = max_sizes
        self.max_size = max_sizes[0]
        self.acceptor = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.acceptor.bind(("127.0.0.1", 0))
        self.acceptor.listen()

    def close(self):
        self.acceptor.close()

    def frame(self, data):
        return frame_stream(data, self.max_size)

    def pieces(self, n):
        """Sizes to cut ``n`` bytes into: all at once, or small random pieces
        (so that headers and packets straddle reads)."""
        rng = self.rng
        if rng.random() < 0.6:
            return [n]
        top = rng.choice([64, 512, 4096])
        sizes = []
        while n > 0:
            sizes.append(min(n, rng.randint(1, top)))
            n -= sizes[-1]
        return sizes

    def _send(self, conn, buf, sizes):
        pos = 0
        try:
            for size in sizes:
                conn.sendall(buf[pos:pos + size])
                pos += size
        except OSError:
            pass  # the reader closed early (a STOP); the checks say if it should have
        finally:
            conn.close()

    def run(self, data):
        self.tally.inputs += 1
        self.max_size = self.rng.choice(self.max_sizes)
        buf, tail, framing, start = self.layout(bytes(data))
        stream, kwargs = self.new_stream()
        stream.add_tcp_reader(self.acceptor, max_size=self.max_size)
        conn = socket.create_connection(self.acceptor.getsockname(), timeout=WAIT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # a thread sends, as the reader may wait for the consumer (a full ring)
        sender = threading.Thread(target=self._send, args=(conn, buf, self.pieces(len(buf))),
                                  daemon=True)
        sender.start()
        try:
            self.check(stream, framing, start, tail,
                       f"TCP stream ({len(buf)} bytes, max_size {self.max_size}, {kwargs})")
        finally:
            sender.join(WAIT)
        if sender.is_alive():
            raise HangError(f"sending {len(buf)} bytes over TCP took over {WAIT} s")


class UdpTarget:
    """One stream and UDP reader for many inputs: each input's datagrams,
    then a tail."""

    def __init__(self, tp, rng, tally, max_size=9200, stream_kwargs=None):
        self.tp = tp
        self.rng = rng
        self.tally = tally
        self.max_size = max_size
        self.stream = spead2.recv.Stream(tp, **(stream_kwargs or {"max_heaps": 4,
                                                                  "ring_heaps": 8}))
        self.port = free_udp_port()
        self.stream.add_udp_reader(self.port, max_size=max_size, bind_hostname="127.0.0.1",
                                   buffer_size=4 << 20)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.seen_cnts = set()
        self.ig = spead2.ItemGroup()
        self.sent = 0
        self.expect = collections.Counter()
        self.base_stats = self.stream.stats

    def close(self):
        self.stream.stop()
        self.tx.close()
        self.tally.add_stats(self.base_stats, self.stream.stats)

    def _drain(self, tail_by_cnt, got_tail):
        n = 0
        while True:
            try:
                heap = self.stream.get_nowait()
            except spead2.Empty:
                return n
            except spead2.Stopped:
                raise InvariantError("the UDP stream stopped although no STOP was sent")
            n += 1
            self.tally.heaps += 1
            if heap.cnt in tail_by_cnt:
                check_tail_heap(heap, tail_by_cnt[heap.cnt])
                got_tail.append(heap.cnt)
            elif heap.cnt not in self.seen_cnts:
                raise InvariantError(f"heap {heap.cnt} delivered but no datagram carried it")
            else:
                apply_update(self.ig, heap, self.tally)

    def _send(self, datagrams, tail_by_cnt, got_tail):
        """Send in bursts, waiting until the reader has accounted for each."""
        for i in range(0, len(datagrams), 128):
            for dgram in datagrams[i:i + 128]:
                self.tx.sendto(dgram, ("127.0.0.1", self.port))
                self.sent += 1
            deadline = time.monotonic() + WAIT
            while True:
                self._drain(tail_by_cnt, got_tail)
                st = self.stream.stats
                seen = (st.packets + st.bad_packets + st.too_large_packets
                        - self.base_stats.packets - self.base_stats.bad_packets
                        - self.base_stats.too_large_packets)
                if seen >= self.sent:
                    break
                if time.monotonic() > deadline:
                    raise HangError(f"UDP reader accounted for {seen} of {self.sent} datagrams "
                                    f"within {WAIT} s")
                time.sleep(0.0002)

    def run(self, datagrams):
        self.tally.inputs += 1
        keep = []
        for dgram in datagrams:
            dgram = bytes(dgram[:MAX_DATAGRAM])
            if len(dgram) > self.max_size:
                self.expect["too_large_packets"] += 1
            else:
                pkt, _ = decode(dgram)
                if pkt is None:
                    self.expect["bad_packets"] += 1
                elif pkt.is_stop:
                    self.tally.stops += 1
                    continue  # would end the shared stream (module notes)
                else:
                    self.expect["packets"] += 1
                    self.seen_cnts.add(pkt.cnt)
            keep.append(dgram)
        tail = make_tail(self.rng, self.seen_cnts)
        tail_by_cnt = {h.cnt: h for h in tail}
        got_tail = []
        self._send(keep, tail_by_cnt, got_tail)
        tail_packets = [p for h in tail for p in h.packets]
        self.expect["packets"] += len(tail_packets)
        self._send(tail_packets, tail_by_cnt, got_tail)
        deadline = time.monotonic() + WAIT
        while len(got_tail) < len(tail):
            if time.monotonic() > deadline:
                raise HangError(f"tail heaps {[h.cnt for h in tail]} sent, {got_tail} delivered "
                                f"within {WAIT} s; stats {self.stream.stats}")
            if not self._drain(tail_by_cnt, got_tail):
                wait_readable(self.stream.fd, min(deadline, time.monotonic() + 0.01))
        for h in tail:
            self.seen_cnts.add(h.cnt)
        if got_tail != [h.cnt for h in tail]:
            raise InvariantError(f"tail heaps {[h.cnt for h in tail]} sent, {got_tail} delivered")
        st = self.stream.stats
        for name, want in self.expect.items():
            got = getattr(st, name) - getattr(self.base_stats, name)
            if got != want:
                raise InvariantError(f"UDP reader counted {got} {name}, the model {want}")
