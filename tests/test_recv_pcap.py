"""Replaying capture files: Stream.add_udp_pcap_file_reader.

Captures are written by ``pcapfiles.py`` from the format specifications; the
SPEAD packets inside them come from ``packets.py`` (hand-built) or from the
library's own packetiser. Every read is bounded in time.
"""

import contextlib
import logging
import os
import pathlib
import random
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

import spead2
import spead2.recv
from spead2._errors import FilterError

import itemsets
import pcapfiles as pf
import refimpl
from packets import heap_packets, packet
from refimpl import call_with_timeout

ITEM = 0x1000
TIMEOUT = 30.0


# ---------------------------------------------------------------------------
# Helpers

def heap_payload(cnt, size):
    return bytes((cnt * 31 + i) % 251 for i in range(size))


def heap_datagrams(cnt, size=3500, packet_payload=1000):
    """A heap's payload and the SPEAD packets (one per datagram) carrying it."""
    payload = heap_payload(cnt, size)
    return payload, heap_packets(cnt, payload, packet_payload, [(False, ITEM, 0)])


def standard_heaps(n=3):
    """``n`` multi-packet heaps: the expected (cnt, payload) list and the packets in order."""
    expected, packets = [], []
    for cnt in range(1, n + 1):
        payload, pkts = heap_datagrams(cnt, size=2500 + 700 * cnt)
        expected.append((cnt, payload))
        packets += pkts
    return expected, packets


def make_stream(thread_pool, ring_heaps=4, contiguous_only=True, max_heaps=4):
    return spead2.recv.Stream(thread_pool, spead2.recv.StreamConfig(max_heaps=max_heaps),
                              spead2.recv.RingStreamConfig(heaps=ring_heaps,
                                                           contiguous_only=contiguous_only))


def drain(stream):
    """Every heap until the stream ends, as (cnt, bytes of the first item)."""
    heaps = call_with_timeout(lambda: list(stream), TIMEOUT, "draining the stream")
    out = []
    for h in heaps:
        items = h.get_items()
        out.append((h.cnt, bytes(items[0]) if items else b""))
    return out


def replay(thread_pool, path, filter="", **kwargs):
    """Replay ``path`` through a fresh stream; return (heaps, stats)."""
    stream = make_stream(thread_pool, **kwargs)
    stream.add_udp_pcap_file_reader(path, filter)
    heaps = drain(stream)
    return heaps, stream.stats


def write(tmp_path, data, name="capture.pcap"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def eth_frames(packets, src="10.0.0.1", dst="10.0.0.2", sport=5000, dport=7148, vlans=()):
    return [pf.frame(pf.ETHERNET, src, dst, sport, dport, p, vlans) for p in packets]


@pytest.fixture
def info_logs(caplog):
    """INFO lines of the ``spead2`` logger (set before the stream is made:
    the stream reads the level when it is created)."""
    caplog.set_level(logging.INFO, logger="spead2")
    return caplog


def messages(caplog, level=None):
    return [r.getMessage() for r in caplog.records
            if r.name == "spead2" and (level is None or r.levelno == level)]


# ---------------------------------------------------------------------------
# Containers

def _ng(byteorder, simple=False):
    def make(frames):
        iface = None if simple else 0
        return pf.pcapng([pf.Section([pf.ETHERNET], [(iface, f) for f in frames], byteorder)])
    return make


CONTAINERS = {
    "pcap-us-le": lambda frames: pf.classic(frames, byteorder="<"),
    "pcap-us-be": lambda frames: pf.classic(frames, byteorder=">"),
    "pcap-ns-le": lambda frames: pf.classic(frames, byteorder="<", nanosecond=True),
    "pcap-ns-be": lambda frames: pf.classic(frames, byteorder=">", nanosecond=True),
    "pcap-modified-le": lambda frames: pf.classic(frames, byteorder="<", modified=True),
    "pcap-modified-be": lambda frames: pf.classic(frames, byteorder=">", modified=True),
    "pcapng-epb-le": _ng("<"),
    "pcapng-epb-be": _ng(">"),
    "pcapng-spb-le": _ng("<", simple=True),
    "pcapng-spb-be": _ng(">", simple=True),
}


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_containers_deliver_heaps_byte_exact(thread_pool, tmp_path, container):
    expected, packets = standard_heaps()
    path = write(tmp_path, CONTAINERS[container](eth_frames(packets)))
    heaps, stats = replay(thread_pool, path)
    assert heaps == expected
    assert stats.packets == len(packets)
    assert stats.heaps == len(expected)
    assert stats.bad_packets == 0


def test_fcs_bits_in_the_classic_link_type_are_ignored(thread_pool, tmp_path):
    # the upper bits of the link-type field say whether frames end in an FCS
    expected, packets = standard_heaps(1)
    frames = [f + b"\xde\xad\xbe\xef" for f in eth_frames(packets)]
    path = write(tmp_path, pf.classic(frames, linktype=0x10000000 | pf.ETHERNET))
    assert replay(thread_pool, path)[0] == expected


def test_pathlike_and_str_filenames(thread_pool, tmp_path):
    expected, packets = standard_heaps(1)
    path = write(tmp_path, pf.classic(eth_frames(packets)))
    assert replay(thread_pool, pathlib.Path(path))[0] == expected
    assert replay(thread_pool, path)[0] == expected


def test_an_empty_capture_ends_the_stream(thread_pool, tmp_path):
    for data in (pf.classic([]), pf.pcapng([pf.Section([pf.ETHERNET], [])])):
        heaps, stats = replay(thread_pool, write(tmp_path, data))
        assert heaps == [] and stats.packets == 0


def test_several_sections_with_their_own_byte_order_and_interfaces(thread_pool, tmp_path):
    expected, packets = standard_heaps(3)
    v4 = lambda p: pf.ipv4("10.0.0.1", "10.0.0.2", pf.PROTO_UDP, pf.udp(1, 7148, p))  # noqa: E731
    first, second = packets[:5], packets[5:]
    sections = [
        # interfaces 0: Ethernet, 1: raw IP, 2: Linux cooked
        pf.Section([pf.ETHERNET, pf.RAW, pf.LINUX_SLL],
                   [(i % 3, pf.link([pf.ETHERNET, pf.RAW, pf.LINUX_SLL][i % 3], v4(p)))
                    for i, p in enumerate(first)], byteorder="<"),
        # interface numbers start again: here 0 is raw IPv4, 1 is SLL2
        pf.Section([pf.IPV4, pf.LINUX_SLL2],
                   [(i % 2, pf.link([pf.IPV4, pf.LINUX_SLL2][i % 2], v4(p)))
                    for i, p in enumerate(second)], byteorder=">"),
    ]
    heaps, stats = replay(thread_pool, write(tmp_path, pf.pcapng(sections)))
    assert heaps == expected
    assert stats.packets == len(packets)


# ---------------------------------------------------------------------------
# Link types, VLANs, IPv6

V4_PAIR = ("10.0.0.1", "10.0.0.2")
V6_PAIR = ("fd00::1", "fd00::2")
LINK_CASES = [(lt, *pair) for lt in (pf.ETHERNET, pf.LINUX_SLL, pf.LINUX_SLL2, pf.RAW)
              for pair in (V4_PAIR, V6_PAIR)]
LINK_CASES += [(pf.RAW_BSD, *V4_PAIR), (pf.RAW_OPENBSD, *V6_PAIR), (pf.IPV4, *V4_PAIR),
               (pf.IPV6, *V6_PAIR)]


@pytest.mark.parametrize("linktype,src,dst", LINK_CASES,
                         ids=[f"{lt}-{'v6' if ':' in s else 'v4'}" for lt, s, _ in LINK_CASES])
@pytest.mark.parametrize("container", ["pcap", "pcapng"])
def test_link_types(thread_pool, tmp_path, linktype, src, dst, container):
    expected, packets = standard_heaps(2)
    frames = [pf.frame(linktype, src, dst, 5000, 7148, p) for p in packets]
    if container == "pcap":
        data = pf.classic(frames, linktype=linktype)
    else:
        data = pf.pcapng([pf.Section([linktype], [(0, f) for f in frames])])
    heaps, stats = replay(thread_pool, write(tmp_path, data))
    assert heaps == expected
    assert stats.packets == len(packets)


def test_raw_ip_of_the_wrong_version_is_skipped(thread_pool, tmp_path):
    # LINKTYPE_IPV4 promises IPv4: an IPv6 packet there is not taken
    expected, packets = standard_heaps(1)
    v6 = pf.ipv6("fd00::1", "fd00::2", pf.PROTO_UDP, pf.udp(1, 2, packet(9, b"x", 0, 1)))
    frames = [pf.frame(pf.IPV4, "10.0.0.1", "10.0.0.2", 1, 2, p) for p in packets]
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic([v6] + frames,
                                                                  linktype=pf.IPV4)))
    assert heaps == expected and stats.packets == len(packets)


VLAN_CASES = {
    "802.1Q": [(pf.TPID_8021Q, 100)],
    "802.1ad": [(pf.TPID_8021AD, 300)],
    "stacked": [(pf.TPID_8021AD, 100), (pf.TPID_8021Q, 200)],
    "triple": [(pf.TPID_8021AD, 1), (pf.TPID_8021Q, 2), (pf.TPID_8021Q, 3)],
}


@pytest.mark.parametrize("vlans", sorted(VLAN_CASES))
@pytest.mark.parametrize("ip", ["v4", "v6"])
def test_vlan_tags(thread_pool, tmp_path, vlans, ip):
    expected, packets = standard_heaps(2)
    src, dst = ("10.0.0.1", "10.0.0.2") if ip == "v4" else ("fd00::1", "fd00::2")
    frames = eth_frames(packets, src, dst, vlans=VLAN_CASES[vlans])
    heaps, _ = replay(thread_pool, write(tmp_path, pf.classic(frames)))
    assert heaps == expected


@pytest.mark.parametrize("linktype,wrap", [(pf.LINUX_SLL, pf.sll), (pf.LINUX_SLL2, pf.sll2)],
                         ids=["sll", "sll2"])
@pytest.mark.parametrize("src,dst", [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")],
                         ids=["v4", "v6"])
def test_vlan_tag_in_linux_cooked_captures(thread_pool, tmp_path, linktype, wrap, src, dst):
    # libpcap puts an offloaded tag back where SLL's protocol field was: the
    # protocol reads as the TPID, and the TCI and the real type follow (as
    # after the TPID in Ethernet); SLL2 is read the same way
    expected, packets = standard_heaps(1)
    frames = []
    for p in packets:
        v6 = ":" in src
        ip = (pf.ipv6 if v6 else pf.ipv4)(src, dst, pf.PROTO_UDP, pf.udp(1, 7148, p))
        inner = pf.ETHERTYPE_IPV6 if v6 else pf.ETHERTYPE_IPV4
        frames.append(wrap(pf.TPID_8021Q, struct.pack("!HH", 42, inner) + ip))
    path = write(tmp_path, pf.classic(frames, linktype=linktype))
    assert replay(thread_pool, path)[0] == expected
    assert replay(thread_pool, path, "vlan 42")[0] == expected
    assert replay(thread_pool, path, "vlan 41")[0] == []


def test_too_many_interfaces_end_the_reading(thread_pool, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="spead2")
    expected, packets = standard_heaps(1)
    data = pf.pcapng([pf.Section([pf.ETHERNET], [(0, f) for f in eth_frames(packets)],
                                 extra_blocks=False)])
    data += pf.ng_interface(pf.ETHERNET) * 65536
    heaps, _ = replay(thread_pool, write(tmp_path, data))
    assert heaps == expected
    assert any("more than 65536 interfaces" in m for m in messages(caplog, logging.WARNING))


def test_ipv6_extension_headers_are_walked(thread_pool, tmp_path):
    expected, packets = standard_heaps(2)
    chains = [
        [(pf.HOP_BY_HOP, b"\x01\x04\0\0\0\0")],
        [(pf.HOP_BY_HOP, b""), (pf.ROUTING, b"\0\0" + b"\0" * 20), (pf.DEST_OPTS, b"\x01\x02\0\0")],
        [(pf.DEST_OPTS, b"\x01" + bytes([30]) + b"\0" * 30)],
        # an atomic fragment (offset 0, no more fragments) holds the whole datagram
        [(pf.FRAGMENT, pf.fragment_body(0, False))],
    ]
    frames = []
    for i, p in enumerate(packets):
        ip = pf.ipv6("fd00::1", "fd00::2", pf.PROTO_UDP, pf.udp(1, 7148, p),
                     chains[i % len(chains)])
        frames.append(pf.ethernet(pf.ETHERTYPE_IPV6, ip))
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic(frames)))
    assert heaps == expected and stats.packets == len(packets)


def test_ipv4_options_are_skipped_by_ihl(thread_pool, tmp_path):
    expected, packets = standard_heaps(1)
    frames = [pf.ethernet(pf.ETHERTYPE_IPV4,
                          pf.ipv4("10.0.0.1", "10.0.0.2", pf.PROTO_UDP, pf.udp(1, 7148, p),
                                  options=b"\x01" * 4 * (i % 11)))
              for i, p in enumerate(packets)]
    assert replay(thread_pool, write(tmp_path, pf.classic(frames)))[0] == expected


# ---------------------------------------------------------------------------
# What is skipped: fragments, truncated records, noise

def test_fragments_are_skipped_and_counted(thread_pool, tmp_path, info_logs):
    expected, packets = standard_heaps(2)
    frag_payload = pf.udp(1, 7148, packet(50, b"y" * 100, 0, 100))
    fragments = [
        pf.ethernet(pf.ETHERTYPE_IPV4, pf.ipv4("10.0.0.1", "10.0.0.2", pf.PROTO_UDP, frag_payload,
                                               flags_offset=0x2000)),   # MF
        pf.ethernet(pf.ETHERTYPE_IPV4, pf.ipv4("10.0.0.1", "10.0.0.2", pf.PROTO_UDP, b"z" * 40,
                                               flags_offset=0x0010)),   # offset 128
        pf.ethernet(pf.ETHERTYPE_IPV6, pf.ipv6("fd00::1", "fd00::2", pf.PROTO_UDP, frag_payload,
                                               [(pf.FRAGMENT, pf.fragment_body(0, True))])),
        pf.ethernet(pf.ETHERTYPE_IPV6, pf.ipv6("fd00::1", "fd00::2", pf.PROTO_UDP, b"q" * 40,
                                               [(pf.HOP_BY_HOP, b""),
                                                (pf.FRAGMENT, pf.fragment_body(6, False))])),
    ]
    frames = eth_frames(packets)
    frames = frames[:2] + fragments + frames[2:]
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic(frames)))
    assert heaps == expected
    assert stats.packets == len(packets)
    assert stats.bad_packets == 0
    assert any("skipped 4 IP fragments, 0 truncated records" in m
               for m in messages(info_logs, logging.INFO))


def test_truncated_records_are_skipped_logged_and_counted(thread_pool, tmp_path, info_logs):
    expected, packets = standard_heaps(2)
    whole = eth_frames([packet(60, b"t" * 300, 0, 300, [(False, ITEM, 0)])])[0]
    truncated = [
        pf.Record(whole[:10], len(whole)),          # inside the Ethernet header
        pf.Record(whole[:14 + 12], len(whole)),     # inside the IPv4 header
        pf.Record(whole[:14 + 20 + 4], len(whole)),  # inside the UDP header
        pf.Record(whole[:200], len(whole)),         # the datagram cut short (snap length)
    ]
    # a UDP length field larger than what the IP packet holds, and one too
    # small for the UDP header itself
    short = pf.ethernet(pf.ETHERTYPE_IPV4, pf.ipv4("10.0.0.1", "10.0.0.2", pf.PROTO_UDP,
                                                   pf.udp(1, 7148, b"abc" * 20, length=400)))
    tiny = pf.ethernet(pf.ETHERTYPE_IPV4, pf.ipv4("10.0.0.1", "10.0.0.2", pf.PROTO_UDP,
                                                  pf.udp(1, 7148, b"abc" * 20, length=3)))
    frames = eth_frames(packets)
    frames = frames[:3] + truncated + [short, tiny] + frames[3:]
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic(frames)))
    assert heaps == expected
    assert stats.packets == len(packets)
    assert stats.bad_packets == 0
    lines = messages(info_logs, logging.INFO)
    offsets = pf.classic_record_offsets(frames)
    assert sum("headers cut short" in m for m in lines) == 3
    assert sum("UDP datagram cut short" in m for m in lines) == 2
    assert any(f"record at byte {offsets[7]} skipped: UDP datagram cut short (" in m
               for m in lines)
    assert any(f"record at byte {offsets[8]} skipped: UDP length field below" in m
               for m in lines)
    assert any("skipped 0 IP fragments, 6 truncated records" in m for m in lines)


def test_records_cut_after_the_datagram_are_taken(thread_pool, tmp_path, info_logs):
    # a snap length that keeps the whole datagram but not the Ethernet
    # padding or FCS loses nothing: the UDP length decides, not the wire length
    expected, packets = standard_heaps(1)
    frames = [pf.Record(f, len(f) + 4) for f in eth_frames(packets)]
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic(frames)))
    assert heaps == expected
    assert not any("truncated" in m or "cut short" in m for m in messages(info_logs))


def test_the_udp_length_bounds_the_packet(thread_pool, tmp_path):
    # bytes captured after the datagram (padding, FCS) are not part of it: a
    # SPEAD packet longer than its UDP length says is cut, so it is bad
    pkt = packet(5, b"p" * 100, 0, 100, [(False, ITEM, 0)])
    frame = pf.ethernet(pf.ETHERTYPE_IPV4, pf.ipv4("10.0.0.1", "10.0.0.2", pf.PROTO_UDP,
                                                   pf.udp(1, 7148, pkt, length=8 + len(pkt) - 50)))
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic([frame])))
    assert heaps == []
    assert stats.bad_packets == 1 and stats.packets == 0


def test_non_udp_and_non_ip_frames_are_skipped_silently(thread_pool, tmp_path, info_logs):
    expected, packets = standard_heaps(2)
    noise = [
        pf.ethernet(pf.ETHERTYPE_IPV4, pf.ipv4("10.0.0.1", "10.0.0.2", pf.PROTO_TCP,
                                               pf.tcp(5000, 7148, b"x" * 50))),
        pf.ethernet(pf.ETHERTYPE_IPV4, pf.ipv4("10.0.0.1", "10.0.0.2", 1, b"\x08\0" + b"\0" * 30)),
        pf.ethernet(pf.ETHERTYPE_ARP, b"\0\x01\x08\0\x06\x04\0\x01" + b"\0" * 20),
        pf.ethernet(0x0060, b"\xaa\xaa\x03" + b"\0" * 40),    # an 802.3 length, LLC
        pf.ethernet(pf.ETHERTYPE_IPV6, pf.ipv6("fd00::1", "fd00::2", pf.PROTO_TCP,
                                               pf.tcp(1, 7148))),
        pf.ethernet(pf.ETHERTYPE_IPV6, pf.ipv6("fd00::1", "fd00::2", pf.NO_NEXT, b"")),
        pf.ethernet(pf.ETHERTYPE_IPV4, b"\x45" + b"\0" * 3),  # IPv4 type, but a stub of a header
    ]
    noise = noise[:-1]  # the last is a truncated record, not noise: kept out here
    frames = eth_frames(packets)
    mixed = []
    for i, f in enumerate(frames):
        mixed += [noise[i % len(noise)], f]
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic(mixed + noise)))
    assert heaps == expected
    assert stats.packets == len(packets) and stats.bad_packets == 0
    assert messages(info_logs) == []


def test_bad_spead_payloads_are_counted_and_logged(thread_pool, tmp_path, info_logs):
    expected, packets = standard_heaps(1)
    frames = eth_frames([b"hello, not SPEAD"] + packets + [b"\x53\x04\x02\x06" + b"\0" * 4])
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic(frames)))
    assert heaps == expected
    assert stats.bad_packets == 2
    assert sum("rejected" in m for m in messages(info_logs, logging.INFO)) == 2


def test_the_end_of_the_file_flushes_partial_heaps(thread_pool, tmp_path):
    expected, packets = standard_heaps(2)
    path = write(tmp_path, pf.classic(eth_frames(packets[:-1])))  # heap 2 lacks its last packet
    heaps, stats = replay(thread_pool, path)
    assert heaps == expected[:1]
    assert stats.incomplete_heaps_flushed == 1
    # with incomplete heaps delivered, the partial one comes out too
    stream = make_stream(thread_pool, contiguous_only=False)
    stream.add_udp_pcap_file_reader(path)
    got = call_with_timeout(lambda: list(stream), TIMEOUT, "draining")
    assert [h.cnt for h in got] == [1, 2]
    assert isinstance(got[1], spead2.recv.IncompleteHeap)


def test_a_stop_heap_ends_the_stream_before_the_file_does(thread_pool, tmp_path):
    from packets import stop_packet
    expected, packets = standard_heaps(2)
    frames = eth_frames(packets[:4] + [stop_packet()] + packets[4:])
    heaps, _ = replay(thread_pool, write(tmp_path, pf.classic(frames)))
    assert heaps == expected[:1]


def test_a_full_ring_pauses_the_reader_and_nothing_is_lost(thread_pool, tmp_path):
    packets = []
    for cnt in range(1, 201):
        packets += heap_datagrams(cnt, size=300, packet_payload=100)[1]
    heaps, stats = replay(thread_pool, write(tmp_path, pf.classic(eth_frames(packets))),
                          ring_heaps=1)
    assert [cnt for cnt, _ in heaps] == list(range(1, 201))
    assert all(data == heap_payload(cnt, 300) for cnt, data in heaps)


def test_a_capture_larger_than_the_mapping_window(thread_pool, tmp_path):
    # the reader fills page tables a few MiB ahead and unmaps pages some
    # 16 MiB behind: heaps across those edges, paused by a small ring, must
    # still arrive intact
    size = 1 << 20
    frames, expected = [], []
    for cnt in range(1, 33):
        payload = bytes([cnt]) * 100 + os.urandom(size - 100)
        expected.append((cnt, payload))
        frames += eth_frames(heap_packets(cnt, payload, 8900, [(False, ITEM, 0)]))
    data = pf.classic(frames)
    assert len(data) > 32 << 20
    heaps, stats = replay(thread_pool, write(tmp_path, data), ring_heaps=1)
    assert [c for c, _ in heaps] == [c for c, _ in expected]
    assert heaps == expected


def test_stopping_the_stream_mid_file(thread_pool, tmp_path):
    packets = []
    for cnt in range(1, 2001):
        packets += heap_datagrams(cnt, size=200, packet_payload=200)[1]
    stream = make_stream(thread_pool, ring_heaps=2)
    stream.add_udp_pcap_file_reader(write(tmp_path, pf.classic(eth_frames(packets))))
    first = call_with_timeout(stream.get, TIMEOUT, "get")
    assert first.cnt == 1
    call_with_timeout(stream.stop, TIMEOUT, "stop")
    rest = call_with_timeout(lambda: list(stream), TIMEOUT, "draining")
    assert len(rest) <= 2   # what the ring held


def test_an_unusable_packet_block_is_skipped(thread_pool, tmp_path, info_logs):
    expected, packets = standard_heaps(1)
    frames = eth_frames(packets)
    bad = pf.ng_enhanced(5, frames[0])   # interface 5 is not described
    data = pf.pcapng([pf.Section([pf.ETHERNET], [(0, f) for f in frames], extra_blocks=False)])
    idx = data.index(pf.ng_enhanced(0, frames[0]))
    heaps, _ = replay(thread_pool, write(tmp_path, data[:idx] + bad + data[idx:]))
    assert heaps == expected
    lines = messages(info_logs, logging.INFO)
    assert any("names interface 5" in m for m in lines)
    assert any("1 unusable records" in m for m in lines)


def test_a_later_interface_of_unknown_link_type_is_skipped(thread_pool, tmp_path, info_logs):
    expected, packets = standard_heaps(1)
    frames = eth_frames(packets)
    data = pf.pcapng([pf.Section([pf.ETHERNET], [(0, f) for f in frames], extra_blocks=False)])
    # after the packets: an 802.11 interface and a packet on it
    data += pf.ng_interface(105) + pf.ng_enhanced(1, frames[0])
    heaps, _ = replay(thread_pool, write(tmp_path, data))
    assert heaps == expected
    assert any("link type 105 is not supported" in m for m in messages(info_logs))


def test_a_capture_is_mapped_not_read(thread_pool, tmp_path):
    # a sparse 1 GiB record: mapping it costs no memory, reading it would
    # cost 1 GiB (the frame is all zeros: not IP, so nothing is copied)
    path = tmp_path / "sparse.pcap"
    size = 1 << 30
    with open(path, "wb") as f:
        f.write(pf.classic([])[:24] + struct.pack("<IIII", 0, 0, size, size))
        f.truncate(24 + 16 + size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    heaps, stats = replay(thread_pool, str(path))
    assert heaps == [] and stats.packets == 0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 128 * 1024, f"peak RSS grew by {grown_kib} KiB"
    assert time.monotonic() - start < TIMEOUT


# ---------------------------------------------------------------------------
# Errors at add time and lengths that end the reading

def test_file_errors_are_runtime_errors(thread_pool, tmp_path):
    cases = {
        "missing": (str(tmp_path / "missing.pcap"), "No such file or directory"),
        "directory": (str(tmp_path), "Is a directory"),
        "empty": (write(tmp_path, b"", "empty.pcap"), "empty"),
        "text": (write(tmp_path, b"this is not a capture\n", "t.txt"), "not a pcap or pcapng"),
        "tiny": (write(tmp_path, b"\xd4\xc3", "tiny.pcap"), "not a pcap or pcapng"),
        "short header": (write(tmp_path, pf.classic([])[:20], "h.pcap"), "cut short"),
        "version": (write(tmp_path, b"\xd4\xc3\xb2\xa1\x03\x00" + pf.classic([])[6:], "v.pcap"),
                    "version 3"),
        "link type": (write(tmp_path, pf.classic([], linktype=105), "l.pcap"), "link type 105"),
        "ng link type": (write(tmp_path, pf.pcapng([pf.Section([pf.ETHERNET, 147], [])]),
                               "l.pcapng"), "link type 147"),
        "ng byte order": (write(tmp_path, pf.ng_section_header("<")[:8] + b"\x11\x22\x33\x44"
                                + pf.ng_section_header("<")[12:], "bom.pcapng"),
                          "byte-order magic"),
        "ng version": (write(tmp_path, pf.ng_section_header("<")[:12] + b"\x02\x00"
                             + pf.ng_section_header("<")[14:], "ver.pcapng"), "version 2"),
    }
    for name, (path, text) in cases.items():
        stream = make_stream(thread_pool)
        with pytest.raises(RuntimeError) as info:
            stream.add_udp_pcap_file_reader(path)
        assert not isinstance(info.value, ValueError), name
        assert text in str(info.value), (name, str(info.value))
        stream.stop()


def test_argument_types(thread_pool, tmp_path):
    stream = make_stream(thread_pool)
    with pytest.raises(TypeError):
        stream.add_udp_pcap_file_reader(42)
    with pytest.raises(TypeError):
        stream.add_udp_pcap_file_reader(write(tmp_path, pf.classic([])), b"udp")
    with pytest.raises(ValueError):
        stream.add_udp_pcap_file_reader("a\0b")


def test_a_stopped_stream_ignores_the_reader(thread_pool, tmp_path):
    expected, packets = standard_heaps(1)
    stream = make_stream(thread_pool)
    stream.stop()
    stream.add_udp_pcap_file_reader(write(tmp_path, pf.classic(eth_frames(packets))))
    assert drain(stream) == []


def test_explicit_start_refuses_readers_after_start(thread_pool, tmp_path):
    expected, packets = standard_heaps(1)
    path = write(tmp_path, pf.classic(eth_frames(packets)))
    stream = spead2.recv.Stream(thread_pool, spead2.recv.StreamConfig(explicit_start=True))
    stream.add_udp_pcap_file_reader(path)
    stream.start()
    with pytest.raises(RuntimeError):
        stream.add_udp_pcap_file_reader(path)
    assert drain(stream) == expected


def _classic_with_tail(tail):
    expected, packets = standard_heaps(2)
    return expected, pf.classic(eth_frames(packets)) + tail


def _ng_with_tail(tail, byteorder="<"):
    expected, packets = standard_heaps(2)
    data = pf.pcapng([pf.Section([pf.ETHERNET], [(0, f) for f in eth_frames(packets)],
                                 byteorder, extra_blocks=False)])
    return expected, data + tail


def _epb_with(caplen=None, total=None, body_len=None):
    epb = bytearray(pf.ng_enhanced(0, b"\0" * 40))
    if caplen is not None:
        epb[20:24] = struct.pack("<I", caplen)
    if total is not None:
        epb[4:8] = struct.pack("<I", total)
    return bytes(epb)


ABSURD = {
    "record past the end": lambda: _classic_with_tail(struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 60)
                                                      + b"\0" * 30),
    "record one byte short": lambda: _classic_with_tail(struct.pack("<IIII", 0, 0, 31, 31)
                                                        + b"\0" * 30),
    "record header cut": lambda: _classic_with_tail(b"\0" * 7),
    "block past the end": lambda: _ng_with_tail(_epb_with(total=0x7FFFFFF0)),
    "block shorter than a header": lambda: _ng_with_tail(_epb_with(total=8)),
    "block length not a multiple of 4": lambda: _ng_with_tail(_epb_with(total=61)),
    "block header cut": lambda: _ng_with_tail(b"\x06\0\0\0\x40\0"),
    "captured length past the block": lambda: _ng_with_tail(_epb_with(caplen=1000)),
    "packet block shorter than its fields": lambda: _ng_with_tail(
        pf.ng_block(6, b"\0" * 12)),
    "section without byte-order magic": lambda: _ng_with_tail(
        pf.ng_section_header("<")[:8] + b"\0" * 4 + pf.ng_section_header("<")[12:]),
}


@pytest.mark.parametrize("case", sorted(ABSURD))
def test_absurd_lengths_end_the_reading_with_a_warning(thread_pool, tmp_path, caplog, case):
    caplog.set_level(logging.WARNING, logger="spead2")
    expected, data = ABSURD[case]()
    heaps, stats = replay(thread_pool, write(tmp_path, data))
    assert heaps == expected
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "reading stopped" in warnings[0], warnings


# ---------------------------------------------------------------------------
# Filters

class Datagram:
    def __init__(self, cnt, src, dst, sport, dport, vlans=()):
        self.cnt, self.src, self.dst = cnt, src, dst
        self.sport, self.dport = sport, dport
        self.vlans = [vid for _, vid in vlans]
        self.tags = list(vlans)
        self.v = 6 if ":" in src else 4

    def frame(self):
        pkt = packet(self.cnt, bytes([self.cnt % 256]) * 8, 0, 8, [(False, ITEM, 0)])
        return pf.frame(pf.ETHERNET, self.src, self.dst, self.sport, self.dport, pkt, self.tags)


V4 = ["10.0.0.1", "10.0.0.2", "10.1.0.5", "192.168.1.7"]
V6 = ["fd00::1", "fd00::2", "2001:db8::5"]
PORTS = [7148, 7149, 7150, 8888, 53]
TAGS = [(), ((pf.TPID_8021Q, 100),), ((pf.TPID_8021Q, 200),),
        ((pf.TPID_8021AD, 100), (pf.TPID_8021Q, 200))]


def filter_datagrams(with_vlans=True):
    """Datagrams between assorted hosts and ports (each a one-packet heap with its own cnt)."""
    rng = random.Random(1234)
    out = []
    for i in range(80):
        hosts = V4 if i % 3 else V6
        src, dst = rng.sample(hosts, 2)
        tags = TAGS[i % len(TAGS)] if with_vlans else ()
        out.append(Datagram(i + 1, src, dst, rng.choice(PORTS), rng.choice(PORTS), tags))
    return out


def filter_capture(datagrams):
    frames = []
    for d in datagrams:
        frames.append(d.frame())
        # TCP between the same ends: never replayed, whatever the filter
        ip = (pf.ipv6 if d.v == 6 else pf.ipv4)(d.src, d.dst, pf.PROTO_TCP,
                                                 pf.tcp(d.sport, d.dport, b"tcp"))
        frames.append(pf.ethernet(pf.ETHERTYPE_IPV6 if d.v == 6 else pf.ETHERTYPE_IPV4, ip,
                                  d.tags))
    return pf.classic(frames)


def _in_net(addr, cidr):
    import ipaddress
    a = ipaddress.ip_address(addr)
    n = ipaddress.ip_network(cidr)
    return a.version == n.version and a in n


def host(a):
    return lambda d: a in (d.src, d.dst)


def port(p):
    return lambda d: p in (d.sport, d.dport)


# (filter, what it selects), the second written independently of the first
FILTER_CASES = [
    ("", lambda d: True),
    ("   ", lambda d: True),
    ("udp", lambda d: True),
    ("ip", lambda d: d.v == 4),
    ("ip6", lambda d: d.v == 6),
    ("host 10.0.0.1", host("10.0.0.1")),
    ("host fd00::2", host("fd00::2")),
    ("src host 10.0.0.1", lambda d: d.src == "10.0.0.1"),
    ("dst host 2001:db8::5", lambda d: d.dst == "2001:db8::5"),
    ("port 7148", port(7148)),
    ("src port 7149", lambda d: d.sport == 7149),
    ("dst port 53", lambda d: d.dport == 53),
    ("portrange 7148-7150", lambda d: any(7148 <= p <= 7150 for p in (d.sport, d.dport))),
    ("src portrange 7150-7148", lambda d: 7148 <= d.sport <= 7150),
    ("dst portrange 8000-9000", lambda d: 8000 <= d.dport <= 9000),
    ("net 10.0.0.0/8", lambda d: _in_net(d.src, "10.0.0.0/8") or _in_net(d.dst, "10.0.0.0/8")),
    ("net 10.0.0.0/30", lambda d: _in_net(d.src, "10.0.0.0/30") or _in_net(d.dst, "10.0.0.0/30")),
    ("src net 10.1.0.0/16", lambda d: _in_net(d.src, "10.1.0.0/16")),
    ("dst net 192.168.0.0/16", lambda d: _in_net(d.dst, "192.168.0.0/16")),
    ("net fd00::/8", lambda d: _in_net(d.src, "fd00::/8") or _in_net(d.dst, "fd00::/8")),
    ("src net 2001:db8::/32", lambda d: _in_net(d.src, "2001:db8::/32")),
    ("net 0.0.0.0/0", lambda d: d.v == 4),
    ("vlan", lambda d: bool(d.vlans)),
    ("vlan 100", lambda d: 100 in d.vlans),
    ("vlan 200", lambda d: 200 in d.vlans),
    ("not vlan", lambda d: not d.vlans),
    ("not port 7148", lambda d: not port(7148)(d)),
    ("! port 7148", lambda d: not port(7148)(d)),
    ("port 7148 and host 10.0.0.1", lambda d: port(7148)(d) and host("10.0.0.1")(d)),
    ("port 7148 && vlan 100", lambda d: port(7148)(d) and 100 in d.vlans),
    ("port 7148 or port 53", lambda d: port(7148)(d) or port(53)(d)),
    ("port 7148||ip6", lambda d: port(7148)(d) or d.v == 6),
    # and/or: equal precedence, from the left, as libpcap parses them
    ("port 7148 or port 7149 and host 10.0.0.1",
     lambda d: (port(7148)(d) or port(7149)(d)) and host("10.0.0.1")(d)),
    ("host 10.0.0.1 and port 7148 or port 53",
     lambda d: (host("10.0.0.1")(d) and port(7148)(d)) or port(53)(d)),
    ("port 7148 or (port 7149 and host 10.0.0.1)",
     lambda d: port(7148)(d) or (port(7149)(d) and host("10.0.0.1")(d))),
    ("not port 7148 and host 10.0.0.1", lambda d: not port(7148)(d) and host("10.0.0.1")(d)),
    ("not (port 7148 or host 10.0.0.1)", lambda d: not (port(7148)(d) or host("10.0.0.1")(d))),
    ("not not ip", lambda d: d.v == 4),
    ("!(vlan 100)&&!ip6", lambda d: 100 not in d.vlans and d.v != 6),
    ("udp port 7148", port(7148)),
    ("udp dst port 7149", lambda d: d.dport == 7149),
    ("ip host 10.0.0.1", host("10.0.0.1")),
    ("ip6 and dst port 8888", lambda d: d.v == 6 and d.dport == 8888),
    ("ip6 net fd00::/16", lambda d: _in_net(d.src, "fd00::/16") or _in_net(d.dst, "fd00::/16")),
    # a bare value repeats the last qualifier
    ("port 7148 or 7149", lambda d: port(7148)(d) or port(7149)(d)),
    ("src host 10.0.0.1 or 10.0.0.2", lambda d: d.src in ("10.0.0.1", "10.0.0.2")),
    ("((vlan 100)) and (src net 10.0.0.0/8 or src net fd00::/16)",
     lambda d: 100 in d.vlans and (_in_net(d.src, "10.0.0.0/8") or _in_net(d.src, "fd00::/16"))),
    ("ip and ip6", lambda d: False),
    ("not udp", lambda d: False),
]


@pytest.fixture(scope="module")
def filter_file(tmp_path_factory):
    datagrams = filter_datagrams()
    path = tmp_path_factory.mktemp("filters") / "mixed.pcap"
    path.write_bytes(filter_capture(datagrams))
    return str(path), datagrams


@pytest.mark.parametrize("expr,selects", FILTER_CASES, ids=[c[0] or "empty" for c in FILTER_CASES])
def test_filters_select_exactly_the_right_datagrams(thread_pool, filter_file, expr, selects):
    path, datagrams = filter_file
    want = [d.cnt for d in datagrams if selects(d)]
    heaps, stats = replay(thread_pool, path, expr, max_heaps=1)
    assert [cnt for cnt, _ in heaps] == want
    assert stats.bad_packets == 0


def test_the_filter_cases_are_not_trivial(filter_file):
    # each case that should select something selects some but not all
    _, datagrams = filter_file
    for expr, selects in FILTER_CASES:
        n = sum(map(selects, datagrams))
        if expr.strip() not in ("", "udp", "ip and ip6", "not udp"):
            assert 0 < n < len(datagrams), expr


FILTER_ERRORS = [
    ("tcp", "tcp"),
    ("udp or tcp", "tcp"),
    ("ether host 10.0.0.1", "ether"),
    ("greater 100", "greater"),
    ("host", "host"),
    ("host 10.0.0.256", "10.0.0.256"),
    ("host example.com", "example.com"),
    ("host fd00::1::2", "fd00::1::2"),
    ("port 65536", "65536"),
    ("port http", "http"),
    ("port -1", "-1"),
    ("portrange 7148", "7148"),
    ("portrange 7148-", "7148-"),
    ("portrange a-b", "a-b"),
    ("net 10.0.0.0", "10.0.0.0"),
    ("net 10.0.0.1/8", "10.0.0.1/8"),
    ("net 10.0.0.0/33", "10.0.0.0/33"),
    ("net fd00::/129", "fd00::/129"),
    ("vlan 4096", "4096"),
    ("src", "src"),
    ("dst udp", "udp"),
    ("udp and", "and"),
    ("or udp", "or"),
    ("not", "not"),
    ("udp and or ip", "and"),
    ("()", "()"),
    ("(udp", "("),
    ("udp)", ")"),
    ("(udp or)", "or"),
    ("udp ip", "ip"),
    ("udp & ip", "&"),
    ("udp | ip", "|"),
    ("7148", "7148"),
    ("port 7148 or 7149x", "7149x"),
]


@pytest.mark.parametrize("expr,word", FILTER_ERRORS, ids=[e for e, _ in FILTER_ERRORS])
def test_filter_errors_name_the_word(thread_pool, filter_file, expr, word):
    path, _ = filter_file
    stream = make_stream(thread_pool)
    with pytest.raises(FilterError) as info:
        stream.add_udp_pcap_file_reader(path, expr)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    assert f"'{word}'" in str(info.value)
    stream.stop()


def test_deep_or_long_filters_are_bounded(thread_pool, filter_file):
    path, datagrams = filter_file
    stream = make_stream(thread_pool)
    stream.stop()   # the filter is still compiled: only the reader is refused
    with pytest.raises(FilterError, match="nests"):
        stream.add_udp_pcap_file_reader(path, "(" * 5000 + "udp" + ")" * 5000)
    with pytest.raises(FilterError, match="more than"):
        stream.add_udp_pcap_file_reader(path, " or ".join(["udp"] * 5000))
    # long but within the limits, and it still means what it says
    expr = " or ".join(f"port {p}" for p in range(7148, 7148 + 1000))
    want = [d.cnt for d in datagrams if any(7148 <= p < 8148 for p in (d.sport, d.dport))]
    assert [c for c, _ in replay(thread_pool, path, expr, max_heaps=1)[0]] == want


def _random_valid_filter(rng, depth=0):
    """A random expression from the grammar: it must compile."""
    if depth < 3 and rng.random() < 0.5:
        op = rng.choice([" and ", " or ", " && ", " || "])
        left, right = _random_valid_filter(rng, depth + 1), _random_valid_filter(rng, depth + 1)
        expr = left + op + right
        return f"({expr})" if rng.random() < 0.5 else expr
    if rng.random() < 0.2:
        return rng.choice(["not ", "!"]) + _random_valid_filter(rng, depth + 1)
    direction = rng.choice(["", "src ", "dst "])
    return rng.choice([
        "udp", "ip", "ip6", "vlan", f"vlan {rng.randrange(4096)}",
        f"{direction}host {rng.choice(['10.0.0.1', 'fd00::1', '::1', '255.255.255.255'])}",
        f"{direction}port {rng.randrange(65536)}",
        f"{direction}portrange {rng.randrange(65536)}-{rng.randrange(65536)}",
        f"{direction}net {rng.choice(['10.0.0.0/8', '0.0.0.0/0', 'fd00::/8', '::/0'])}",
        f"udp {direction}port {rng.randrange(65536)}",
    ])


def test_random_filters_compile_or_fail_cleanly(thread_pool, filter_file):
    path, _ = filter_file
    words = ["udp", "ip", "ip6", "host", "net", "port", "portrange", "vlan", "src", "dst", "and",
             "or", "not", "!", "&&", "||", "(", ")", "10.0.0.1", "fd00::1", "10.0.0.0/8",
             "7148", "7148-7150", "100", "&", "|", "tcp", "-", "/", ":", "65536"]
    rng = random.Random(99)
    stream = make_stream(thread_pool)
    stream.stop()   # compile only
    failed = 0
    for _ in range(2000):
        stream.add_udp_pcap_file_reader(path, _random_valid_filter(rng))
        expr = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.3:
            expr = expr.replace(" ", "")
        try:
            stream.add_udp_pcap_file_reader(path, expr)
        except FilterError as exc:
            assert str(exc)
            failed += 1
    assert failed > 100


# ---------------------------------------------------------------------------
# Corruption fuzz

def _fuzz_bases():
    expected, packets = standard_heaps(2)
    frames = eth_frames(packets[:3]) + [pf.frame(pf.RAW, "fd00::1", "fd00::2", 1, 2, p)
                                        for p in packets[3:]]
    return [
        pf.classic(eth_frames(packets), byteorder="<"),
        pf.classic(eth_frames(packets, vlans=VLAN_CASES["stacked"]), byteorder=">"),
        pf.pcapng([pf.Section([pf.ETHERNET, pf.RAW], [(0 if i < 3 else 1, f)
                                                      for i, f in enumerate(frames)], "<"),
                   pf.Section([pf.LINUX_SLL], [(None, pf.frame(pf.LINUX_SLL, "10.0.0.1",
                                                               "10.0.0.2", 1, 2, p))
                                               for p in packets[:2]], ">")]),
    ]


def _mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        if kind == 0 and len(data) > 1:      # truncate
            del data[rng.randrange(1, len(data)):]
        elif kind == 1:                      # flip bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 2 and len(data) >= 4:   # a 32-bit field (length-like) to a tweaked value
            pos = rng.randrange(0, len(data) - 3) & ~3
            old = struct.unpack_from("<I", data, pos)[0]
            new = rng.choice([0, 1, 7, 8, 11, 12, 0xFFFFFFFF, 0x7FFFFFFF, old + 4, old - 4,
                              old * 2, rng.getrandbits(32)]) & 0xFFFFFFFF
            struct.pack_into(rng.choice("<>") + "I", data, pos, new)
        elif kind == 3 and len(data) >= 2:   # a 16-bit field (UDP, IP lengths)
            pos = rng.randrange(len(data) - 1)
            struct.pack_into(">H", data, pos, rng.getrandbits(16))
        else:                                # insert junk
            pos = rng.randrange(len(data) + 1)
            data[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
    return bytes(data)


def test_corruption_fuzz_never_crashes_or_hangs(thread_pool, tmp_path):
    rng = random.Random(20240611)
    bases = _fuzz_bases()
    good_expected, good_packets = standard_heaps(1)
    good = write(tmp_path, pf.classic(eth_frames(good_packets)), "good.pcap")
    path = str(tmp_path / "fuzz.pcap")
    start = time.monotonic()
    runs = refused = delivered = 0
    while runs < 5000 and time.monotonic() - start < 30:
        data = _mutate(rng, bases[runs % len(bases)])
        with open(path, "wb") as f:
            f.write(data)
        stream = make_stream(thread_pool)
        try:
            stream.add_udp_pcap_file_reader(path)
        except RuntimeError:
            refused += 1
        else:
            heaps = call_with_timeout(lambda: list(stream), 10, f"fuzz run {runs}")
            delivered += len(heaps)
            for h in heaps:
                h.get_items()
        runs += 1
        if runs % 250 == 0:
            # the pool and the library still work: a good file still replays
            assert replay(thread_pool, good)[0] == good_expected
    assert runs >= 1000, f"only {runs} fuzz runs in the time allowed"
    assert replay(thread_pool, good)[0] == good_expected
    # the mutations leave enough intact that some heaps still get through
    assert delivered > 0 and refused < runs


# ---------------------------------------------------------------------------
# Against tcpdump (libpcap's filter compiler) and the reference spead2

TCPDUMP = shutil.which("tcpdump")
needs_tcpdump = pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")


def _tcpdump_argv(*args):
    # as root, tcpdump would switch to its own user before writing into a
    # directory only root may enter
    return [TCPDUMP, *(["-Z", "root"] if os.geteuid() == 0 else []), *args]


@needs_tcpdump
def test_filters_agree_with_tcpdump(thread_pool, tmp_path):
    # tcpdump reads VLAN-tagged frames only after a ``vlan`` keyword (it
    # shifts its offsets), so the comparison uses untagged frames
    datagrams = filter_datagrams(with_vlans=False)
    src = write(tmp_path, filter_capture(datagrams), "all.pcap")
    compared = 0
    for expr, _ in FILTER_CASES:
        if "vlan" in expr or not expr.strip():
            continue
        out = tmp_path / "selected.pcap"
        proc = subprocess.run(_tcpdump_argv("-r", src, "-w", str(out), expr),
                              capture_output=True, text=True, timeout=30)
        if "expression rejects all packets" in proc.stderr:
            theirs = []     # libpcap refuses a filter it can prove selects nothing
        elif proc.returncode != 0:
            pytest.skip(f"tcpdump cannot filter a file here: {proc.stderr.strip()[-300:]}")
        else:
            theirs = [cnt for cnt, _ in replay(thread_pool, str(out))[0]]
        ours = [cnt for cnt, _ in replay(thread_pool, src, expr, max_heaps=1)[0]]
        assert ours == theirs, expr
        compared += 1
    assert compared > 30


def _our_packets(itemset_name, n_heaps, max_packet_size=1472, first_cnt=1):
    """The packets of ``n_heaps`` heaps of an item set (and the end heap),
    from our packetiser, with cnts counting up as a stream gives them."""
    import spead2.send
    packets = []
    cnt = [first_cnt]

    def send_heap(heap):
        packets.extend(spead2.send.PacketGenerator(heap, cnt[0], max_packet_size))
        cnt[0] += 1

    itemsets.send_heaps(spead2, send_heap, itemset_name, n_heaps, itemsets.make_flavour(spead2))
    return packets


def _ours(path, filter=""):
    stream = spead2.recv.Stream(spead2.ThreadPool(), bug_compat=0, max_heaps=4, ring_heaps=4)
    stream.add_udp_pcap_file_reader(path, filter)
    return itemsets.collect_heaps(spead2, stream, TIMEOUT)


def _theirs(ref_python, tmp_path, path, filter=""):
    out = str(tmp_path / "ref-dump.pickle")
    ref_python.run("recv_pcap.py", "--input", path, "--output", out, "--filter", filter,
                   "--timeout", TIMEOUT * 0.8, timeout=TIMEOUT + 30)
    return refimpl.load_dump(out)


def _cnts(dump):
    return [h["cnt"] for h in dump["heaps"]]


INTEROP_HEAPS = 3


@pytest.mark.interop
@pytest.mark.parametrize("name", sorted(itemsets.ITEM_SETS))
def test_reference_reads_our_captures_alike(ref_python, tmp_path, name):
    frames = eth_frames(_our_packets(name, INTEROP_HEAPS))
    path = write(tmp_path, pf.classic(frames))
    theirs, ours = _theirs(ref_python, tmp_path, path), _ours(path)
    itemsets.assert_dump_matches(name, theirs, INTEROP_HEAPS, context="capture -> reference: ")
    itemsets.assert_dump_matches(name, ours, INTEROP_HEAPS, context="capture -> ours: ")
    assert _cnts(theirs) == _cnts(ours)


@pytest.mark.interop
def test_reference_and_ours_filter_alike(ref_python, tmp_path):
    wanted = _our_packets("simple", INTEROP_HEAPS)
    # a second flow of heaps with other cnts (no descriptors, no end)
    other = []
    for cnt in range(1000, 1006):
        other += heap_datagrams(cnt, size=1500, packet_payload=700)[1]
    a = eth_frames(wanted, "10.0.0.1", "10.0.0.2", 7148, 7148)
    b = eth_frames(other, "10.0.0.3", "10.0.0.2", 5000, 7149)
    frames = [f for pair in zip(a, b) for f in pair] + a[len(b):] + b[len(a):]
    path = write(tmp_path, pf.classic(frames))
    selects_a = ["udp port 7148", "src host 10.0.0.1", "not dst port 7149",
                 "src net 10.0.0.0/31 and dst portrange 7000-7148"]
    selects_b = ["dst port 7149", "udp port 7148 or src host 10.0.0.3 and port 5000"]
    for expr in selects_a + selects_b:
        theirs, ours = _theirs(ref_python, tmp_path, path, expr), _ours(path, expr)
        assert _cnts(theirs) == _cnts(ours), expr
        if expr in selects_a:
            itemsets.assert_dump_matches("simple", ours, INTEROP_HEAPS, context=expr + ": ")
        else:   # the second: (port 7148 or host 10.0.0.3) and port 5000
            assert _cnts(ours) == list(range(1000, 1006)), expr


class _Tcpdump:
    """tcpdump capturing UDP to one port on loopback into ``path``, started
    and stopped with bounded waits."""

    def __init__(self, path, port):
        self.proc = subprocess.Popen(
            _tcpdump_argv("-i", "lo", "-U", "-n", "-w", str(path), f"udp port {port}"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.stderr = b""

    def wait_listening(self, timeout=10.0):
        """Whether tcpdump says it is capturing before ``timeout``."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        os.set_blocking(fd, False)
        while time.monotonic() < deadline and b"listening on" not in self.stderr:
            if self.proc.poll() is not None:
                self.stderr += self.proc.stderr.read() or b""
                return False
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                self.stderr += os.read(fd, 4096)
        return b"listening on" in self.stderr

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)


def _wait_for_bytes(path, marker, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and marker in path.read_bytes()[-4096:]:
            return True
        time.sleep(0.05)    # polling a file that tcpdump writes: no event to wait on
    return False


@contextlib.contextmanager
def tcpdump_on_loopback(path):
    """Yield a UDP port on loopback whose datagrams tcpdump records into
    ``path``; on leaving, everything sent to it before is in the file. Skips
    the test if tcpdump cannot capture here."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        # a bound socket, so the kernel answers the sender with no ICMP errors
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        dump = _Tcpdump(path, port)
        try:
            if not dump.wait_listening():
                pytest.skip(f"tcpdump cannot capture on lo here: {dump.stderr.decode()[-300:]}")
            yield port
            # loopback keeps order: once this is in the file, so is all before it
            marker = b"spead2py capture marker"
            sink.sendto(marker, ("127.0.0.1", port))
            assert _wait_for_bytes(path, marker, 10.0), "tcpdump did not write the capture"
        finally:
            dump.stop()


@pytest.mark.interop
@needs_tcpdump
def test_tcpdump_capture_of_the_reference_sender(ref_python, tmp_path):
    name = "large"
    path = tmp_path / "live.pcap"
    with tcpdump_on_loopback(path) as port:
        with ref_python.start_send_udp(port, name, INTEROP_HEAPS, rate=1e8) as sender:
            sender.finish(timeout=TIMEOUT)
    theirs, ours = _theirs(ref_python, tmp_path, str(path)), _ours(str(path))
    itemsets.assert_dump_matches(name, theirs, INTEROP_HEAPS, context="tcpdump -> reference: ")
    itemsets.assert_dump_matches(name, ours, INTEROP_HEAPS, context="tcpdump -> ours: ")
    assert _cnts(theirs) == _cnts(ours)
