"""pcap and pcapng in the command-line tools, run as subprocesses the way a
person runs them: ``spead2-send --output`` (and ``--format``, ``--to``),
``spead2-recv --file`` and ``spead2-send --replay`` (and ``--filter``), and
``spead2-recv --capture``.

Files are checked three ways: by tcpdump and tshark where installed (tests
that need one skip without it), by the reference spead2's pcap reader, and
by the small reader below, written from the file format specifications
independently of the library. Network traffic stays on loopback; every wait
is bounded.
"""

import ipaddress
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

import refimpl
from conftest import wait_for
from pcapfiles import _checksum as internet_checksum
from ports import free_udp_port
from test_recv_pcap import (FILTER_CASES, filter_capture, filter_datagrams,
                            tcpdump_on_loopback)
from test_tools import (ToolProcess, assert_one_error_line, has_ipv6_loopback, run_tool,
                        summary_json, tool_cmd, tool_env)
from test_tools import receivers  # noqa: F401  (a fixture: tools started by a test)

TCPDUMP = shutil.which("tcpdump")
TSHARK = shutil.which("tshark")
CAPTURING = "capturing from"
TIMEOUT = 30.0


# ---------------------------------------------------------------------------
# An independent reader: classic pcap and pcapng as written on this host,
# Ethernet / IPv4 or IPv6 / UDP frames

@dataclass
class Frame:
    ts_ns: int
    eth_dst: bytes
    ip_version: int
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes
    ip_checksum_ok: bool
    udp_checksum: int
    udp_checksum_ok: bool   # a correct sum, or 0 (none) over IPv4


def _records(data: bytes) -> List[Tuple[int, bytes]]:
    """(timestamp in ns, frame) of each record."""
    out = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        pos, unit = 0, None
        while pos < len(data):
            kind, length = struct.unpack_from("=II", data, pos)
            assert length % 4 == 0
            assert struct.unpack_from("=I", data, pos + length - 4)[0] == length
            if kind == 0x0A0D0D0A:
                assert struct.unpack_from("=I", data, pos + 8)[0] == 0x1A2B3C4D
            elif kind == 1:     # interface: Ethernet; find if_tsresol
                assert struct.unpack_from("=H", data, pos + 8)[0] == 1
                opt = pos + 16
                while opt < pos + length - 4:
                    code, olen = struct.unpack_from("=HH", data, opt)
                    if code == 0:
                        break
                    if code == 9:
                        unit = 10 ** (9 - data[opt + 4])
                    opt += 4 + olen + (-olen % 4)
            elif kind == 6:
                iface, high, low, caplen, origlen = struct.unpack_from("=IIIII", data, pos + 8)
                assert iface == 0 and caplen == origlen and unit is not None
                out.append((((high << 32) | low) * unit, data[pos + 28:pos + 28 + caplen]))
            pos += length
        return out
    magic, major, minor, _, _, _, linktype = struct.unpack_from("=IHHiIII", data, 0)
    assert magic in (0xA1B2C3D4, 0xA1B23C4D) and (major, minor, linktype) == (2, 4, 1)
    scale = 1 if magic == 0xA1B23C4D else 1000
    pos = 24
    while pos < len(data):
        sec, frac, caplen, origlen = struct.unpack_from("=IIII", data, pos)
        assert caplen == origlen and frac < 1_000_000_000 // scale
        out.append((sec * 1_000_000_000 + frac * scale, data[pos + 16:pos + 16 + caplen]))
        pos += 16 + caplen
    assert pos == len(data)
    return out


def _frame(ts_ns: int, f: bytes) -> Frame:
    ethertype = struct.unpack_from("!H", f, 12)[0]
    ip = f[14:]
    if ethertype == 0x0800:
        assert ip[0] == 0x45 and ip[9] == 17
        total = struct.unpack_from("!H", ip, 2)[0]
        assert total == len(ip)
        src, dst = (str(ipaddress.IPv4Address(ip[a:a + 4])) for a in (12, 16))
        udp, version = ip[20:], 4
        ip_ok = internet_checksum(ip[:20]) == 0
    else:
        assert ethertype == 0x86DD and ip[0] >> 4 == 6 and ip[6] == 17
        assert struct.unpack_from("!H", ip, 4)[0] == len(ip) - 40
        src, dst = (str(ipaddress.IPv6Address(ip[a:a + 16])) for a in (8, 24))
        udp, version, ip_ok = ip[40:], 6, True
    sport, dport, length, check = struct.unpack_from("!HHHH", udp)
    assert length == len(udp)
    if version == 6:
        pseudo = ip[8:40] + struct.pack("!IxxxB", len(udp), 17)
        udp_ok = check != 0 and internet_checksum(pseudo + udp) == 0
    else:
        pseudo = ip[12:20] + struct.pack("!xBH", 17, len(udp))
        udp_ok = check == 0 or internet_checksum(pseudo + udp) == 0
    return Frame(ts_ns, f[:6], version, src, dst, sport, dport, udp[8:], ip_ok, check, udp_ok)


def read_frames(path) -> List[Frame]:
    return [_frame(ts, f) for ts, f in _records(Path(path).read_bytes())]


def raw_packets(data: bytes) -> List[bytes]:
    """The SPEAD packets of a raw capture, split as spead2-send --replay splits them."""
    from spead2.tools.send import split_packets
    return [data[o:o + n] for o, n, _ in split_packets(data)]


# ---------------------------------------------------------------------------
# tcpdump and tshark

def decode_with(decoder: str, path) -> List[Tuple[str, str, int, int, int]]:
    """(src, dst, sport, dport, UDP payload length) of each packet as
    ``decoder`` shows it, after checking that it found every checksum good."""
    if decoder == "tcpdump":
        if TCPDUMP is None:
            pytest.skip("tcpdump is not installed")
        proc = subprocess.run([TCPDUMP, "-r", str(path), "-nn", "-vv"], capture_output=True,
                              text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
        assert "bad" not in proc.stdout and "truncated" not in proc.stdout, proc.stdout[:2000]
        # IPv4 shows the UDP part on a line of its own, IPv6 on the header's
        rows = re.findall(r"(?:^|\s)(\S+)\.(\d+) > (\S+)\.(\d+): "
                          r"(?:\[(?:udp sum ok|no cksum)\] )?UDP, length (\d+)$",
                          proc.stdout, re.M)
        # every packet is decoded: as many packets as header lines
        assert len(rows) == len(re.findall(r"^\d\d:\d\d:\d\d\.\d+ IP", proc.stdout, re.M))
        return [(s, d, int(sp), int(dp), int(n)) for s, sp, d, dp, n in rows]
    if TSHARK is None:
        pytest.skip("tshark is not installed")
    proc = subprocess.run(
        [TSHARK, "-r", str(path), "-n", "-o", "ip.check_checksum:TRUE",
         "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=,",
         "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst",
         "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.length",
         "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "_ws.expert"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = []
    for line in proc.stdout.splitlines():
        s4, s6, d4, d6, sp, dp, ulen, ip_status, udp_status, expert = line.split(",")
        assert ip_status == ("1" if s4 else ""), line     # 1: good; none in IPv6
        # 1: good; 3: not present (0, allowed over IPv4 only)
        assert udp_status in (("1", "3") if s4 else ("1",)), line
        assert not expert, line
        out.append((s4 or s6, d4 or d6, int(sp), int(dp), int(ulen) - 8))
    return out


def tcpdump_count(path, expr: str) -> Optional[int]:
    """Packets tcpdump selects from ``path`` with the filter ``expr``."""
    proc = subprocess.run([TCPDUMP, "-r", str(path), "-nn", expr], capture_output=True,
                          text=True, timeout=TIMEOUT)
    if "expression rejects all packets" in proc.stderr:
        return 0
    assert proc.returncode == 0, proc.stderr
    return len(proc.stdout.splitlines())


# ---------------------------------------------------------------------------
# What spead2-send puts in its heaps

def expected_values(heap: int, items: int, elements: int) -> List[List[int]]:
    """Array ``k`` of data heap ``heap``: ``(j * (2k + 1) + 37 * (heap % 4)) % 251``."""
    return [[(j * (2 * k + 1) + 37 * (heap % 4)) % 251 for j in range(elements)]
            for k in range(items)]


def assert_recv_output(out: str, heaps: int, items: int = 1, elements: int = 3000) -> None:
    """spead2-recv printed ``heaps`` data heaps with the right values."""
    assert [int(t) for t in re.findall(r"^  timestamp = (\d+)$", out, re.M)] == list(range(heaps))
    names = ["data"] if items == 1 else [f"data{k}" for k in range(items)]
    for i in range(min(heaps, 4)):
        for name, values in zip(names, expected_values(i, items, elements)):
            head = ", ".join(map(str, values[:8]))
            assert f"  {name} = uint8[{elements}] [{head}, ...]" in out, out
    assert re.search(rf"^heaps:\s+{heaps} received", out, re.M), out


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    """``sent(fmt, *args)``: the path of ``spead2-send --output FILE --format
    fmt *args`` (made once per argument list) and its JSON summary."""
    made: Dict[tuple, Tuple[Path, dict]] = {}

    def make(fmt: str, *args: str) -> Tuple[Path, dict]:
        key = (fmt, *args)
        if key not in made:
            path = tmp_path_factory.mktemp("sent") / f"capture.{fmt}"
            result = run_tool("send", "--output", str(path), "--format", fmt, "--json", *args)
            assert result.returncode == 0, result.stderr
            made[key] = (path, summary_json(result.stdout))
        return made[key]

    return make


STANDARD = ("--heaps", "5", "--heap-size", "3000", "--packet-size", "1000")


# ---------------------------------------------------------------------------
# spead2-send --output: pcap and pcapng

@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_output_frames_carry_the_raw_packets(sent, fmt):
    started = time.time_ns()
    path, summary = sent(fmt, *STANDARD)
    raw, _ = sent("raw", *STANDARD)
    frames = read_frames(path)
    packets = raw_packets(raw.read_bytes())
    assert [f.payload for f in frames] == packets
    assert summary["file_bytes"] == path.stat().st_size
    # from this machine to the default destination, one flow
    assert {(f.ip_version, f.src, f.dst, f.dport) for f in frames} == {(4, "127.0.0.1",
                                                                        "127.0.0.1", 7148)}
    assert len({f.sport for f in frames}) == 1 and frames[0].sport != 0
    assert all(f.ip_checksum_ok and f.udp_checksum_ok for f in frames)
    stamps = [f.ts_ns for f in frames]
    assert stamps == sorted(stamps)
    # the capture may have been made before this test started (module fixture), but not long
    assert started - 600e9 < stamps[0] <= stamps[-1] <= time.time_ns()


@pytest.mark.parametrize("decoder", ["tcpdump", "tshark"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_output_is_decoded_by_tcpdump_and_tshark(sent, fmt, decoder):
    path, _ = sent(fmt, *STANDARD)
    frames = read_frames(path)
    decoded = decode_with(decoder, path)
    assert decoded == [(f.src, f.dst, f.sport, f.dport, len(f.payload)) for f in frames]


@pytest.mark.parametrize("decoder", ["tcpdump", "tshark"])
def test_output_to_ipv6_and_multicast_destinations(tmp_path, decoder):
    v6 = tmp_path / "v6.pcapng"
    group = tmp_path / "group.pcap"
    for path, to in ((v6, "[::1]:9000"), (group, "239.1.2.3:7150")):
        result = run_tool("send", "--output", str(path), "--to", to, "--heaps", "2",
                          "--heap-size", "2001")
        assert result.returncode == 0, result.stderr
    frames = read_frames(v6)
    assert {(f.ip_version, f.src, f.dst, f.dport) for f in frames} == {(6, "::1", "::1", 9000)}
    assert all(f.udp_checksum != 0 and f.udp_checksum_ok for f in frames)
    frames = read_frames(group)
    assert {(f.ip_version, f.dst, f.dport) for f in frames} == {(4, "239.1.2.3", 7150)}
    assert {f.eth_dst for f in frames} == {bytes.fromhex("01005e010203")}
    for path in (v6, group):
        frames = read_frames(path)
        assert decode_with(decoder, path) == [(f.src, f.dst, f.sport, f.dport, len(f.payload))
                                              for f in frames]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_recv_file_reads_pcap_output(sent, fmt):
    path, _ = sent(fmt, *STANDARD)
    result = run_tool("recv", "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert_recv_output(result.stdout, 5)
    assert f"receiving from {fmt} file {path}" in result.stderr


@pytest.mark.interop
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_reference_reads_pcap_output(ref_python, sent, tmp_path, fmt):
    path, _ = sent(fmt, "--heaps", "6", "--heap-size", "3000", "--items", "2")
    dump_path = str(tmp_path / "ref.pickle")
    ref_python.run("recv_pcap.py", "--input", str(path), "--output", dump_path,
                   "--timeout", TIMEOUT * 0.8, timeout=TIMEOUT + 30)
    dump = refimpl.load_dump(dump_path)
    assert dump["end"] == "stopped" and not dump["errors"], dump["errors"]
    data_heaps = [h for h in dump["heaps"] if "timestamp" in h["values"]]
    assert [int(h["values"]["timestamp"]) for h in data_heaps] == list(range(6))
    for i, heap in enumerate(data_heaps):
        for k, values in enumerate(expected_values(i, 2, 1500)):
            assert list(heap["values"][f"data{k}"]) == values


def test_output_to_stdout_is_raw_unless_asked(tmp_path):
    raw = subprocess.run(tool_cmd("send", "--output", "-", "--heaps", "2", "--heap-size", "500"),
                         capture_output=True, timeout=TIMEOUT, env=tool_env())
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout[:2] == b"\x53\x04"
    pcap = subprocess.run(tool_cmd("send", "--output", "-", "--format", "pcapng", "--heaps", "2",
                                   "--heap-size", "500"),
                          capture_output=True, timeout=TIMEOUT, env=tool_env())
    assert pcap.returncode == 0, pcap.stderr
    path = tmp_path / "stdout.pcapng"
    path.write_bytes(pcap.stdout)
    assert [f.payload for f in read_frames(path)] == raw_packets(raw.stdout)
    # and spead2-recv reads a pcapng capture from standard input
    result = subprocess.run(tool_cmd("recv", "--file", "-", "-q", "--json"), input=pcap.stdout,
                            capture_output=True, timeout=TIMEOUT, env=tool_env())
    assert result.returncode == 0, result.stderr
    assert summary_json(result.stdout.decode())["heaps"] == 2


def test_output_name_chooses_the_format(tmp_path):
    classic_ns = struct.pack("=I", 0xA1B23C4D)
    for name, magic in (("a.pcap", classic_ns), ("a.PCAPNG", b"\x0a\x0d\x0d\x0a"),
                        ("a.spead", classic_ns)):
        path = tmp_path / name
        result = run_tool("send", "--output", str(path), "--heaps", "1", "--heap-size", "10")
        assert result.returncode == 0, result.stderr
        assert path.read_bytes()[:4] == magic, name


def test_packets_too_large_for_a_datagram_are_refused_for_pcap(tmp_path):
    path = tmp_path / "big.pcap"
    args = ("--heaps", "1", "--heap-size", "200000", "--packet-size", "70000")
    result = run_tool("send", "--output", str(path), *args)
    assert_one_error_line(result, "spead2-send", "--packet-size 70000", "65507", "--format raw")
    assert not path.exists()
    # the largest that fits is fine, for IPv4 and (larger) IPv6
    for to, size in (("127.0.0.1:9", "65507"), ("[::1]:9", "65527")):
        result = run_tool("send", "--output", str(path), "--to", to, "--heaps", "1",
                          "--heap-size", "200000", "--packet-size", size)
        assert result.returncode == 0, result.stderr
        # (the packetiser may stop a few bytes short of the limit)
        assert int(size) - 64 < max(len(f.payload) for f in read_frames(path)) <= int(size)
    result = run_tool("send", "--output", str(path), "--to", "127.0.0.1:9", "--heaps", "1",
                      "--heap-size", "200000", "--packet-size", "65508")
    assert_one_error_line(result, "spead2-send", "--packet-size 65508")
    # raw captures have no such limit
    result = run_tool("send", "--output", str(tmp_path / "big.raw"), "--format", "raw", *args)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------
# Filters: spead2-recv --file and spead2-send --replay select alike

def interleave_classic(*captures: bytes) -> bytes:
    """One classic pcap holding the records of ``captures`` (written on this
    host by spead2-send) taken in turn."""
    queues = []
    for data in captures:
        records, pos = [], 24
        while pos < len(data):
            caplen = struct.unpack_from("=I", data, pos + 8)[0]
            records.append(data[pos:pos + 16 + caplen])
            pos += 16 + caplen
        queues.append(records)
    out = [captures[0][:24]]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return b"".join(out)


@pytest.fixture(scope="module")
def two_flows(sent, tmp_path_factory):
    """A pcap of two SPEAD streams interleaved: A (4 heaps, one array of 3000
    bytes) from this host to 127.0.0.1:7148 and B (6 heaps, two arrays of
    1000) to 127.0.0.2:7149. Without a filter their heaps collide."""
    a, _ = sent("pcap", "--to", "127.0.0.1:7148", "--heaps", "4", "--heap-size", "3000")
    b, _ = sent("pcap", "--to", "127.0.0.2:7149", "--heaps", "6", "--heap-size", "2000",
                "--items", "2", "--packet-size", "700")
    path = tmp_path_factory.mktemp("flows") / "two.pcap"
    path.write_bytes(interleave_classic(a.read_bytes(), b.read_bytes()))
    return path, len(read_frames(a)), len(read_frames(b))


FLOW_FILTERS = [
    ("udp dst port 7148", "A"),
    ("dst host 127.0.0.2", "B"),
    ("not port 7148", "B"),
    ("port 7148 or port 7149 and dst host 127.0.0.2", "B"),     # (A or B) and B's host
    ("port 7148 or (port 7149 and dst host 127.0.0.2)", "AB"),
    ("dst portrange 7000-7148 && ip", "A"),
    ("ip6", ""),
]


@pytest.mark.parametrize("expr, flows", FLOW_FILTERS)
def test_recv_and_replay_filters_select_the_same_datagrams(two_flows, expr, flows):
    path, n_a, n_b = two_flows
    want = (n_a if "A" in flows else 0) + (n_b if "B" in flows else 0)
    if len(flows) < 2:  # of two streams, the first end-of-stream heap stops the receiver
        recv = run_tool("recv", "--file", str(path), "--filter", expr, "-q", "--json")
        assert recv.returncode == 0, recv.stderr
        assert summary_json(recv.stdout)["stats"]["packets"] == want
    replay = run_tool("send", "--replay", str(path), "127.0.0.1:9", "--filter", expr, "--json")
    assert replay.returncode == 0, replay.stderr
    assert summary_json(replay.stdout)["packets"] == want
    if TCPDUMP is not None:
        assert tcpdump_count(path, expr) == want


@pytest.mark.parametrize("expr, heaps, items, elements",
                         [("udp dst port 7148", 4, 1, 3000), ("dst host 127.0.0.2", 6, 2, 1000)])
def test_a_filter_picks_one_stream_out_of_two(two_flows, expr, heaps, items, elements):
    path, _, _ = two_flows
    result = run_tool("recv", "--file", str(path), "--filter", expr)
    assert result.returncode == 0, result.stderr
    assert_recv_output(result.stdout, heaps, items, elements)
    assert re.search(r"^incomplete:\s+0 heaps dropped", result.stdout, re.M)


def test_replay_with_a_filter_sends_one_stream(two_flows, receivers):
    path, n_a, _ = two_flows
    recv, port = receivers(lambda port: [f"127.0.0.1:{port}", "-q", "--json", "--timeout", "30"])
    result = run_tool("send", "--replay", str(path), f"127.0.0.1:{port}", "--rate", "20M",
                      "--filter", "udp dst port 7148", "--json")
    assert result.returncode == 0, result.stderr
    s = summary_json(result.stdout)
    assert (s["packets"], s["heaps"]) == (n_a, 6)     # start, 4 data heaps, end
    code, out, err = recv.finish()
    assert code == 0, err
    got = summary_json(out)
    assert (got["reason"], got["heaps"], got["stats"]["packets"]) == ("end of stream", 4, n_a)


@pytest.fixture(scope="module")
def mixed_capture(tmp_path_factory):
    datagrams = filter_datagrams()
    path = tmp_path_factory.mktemp("mixed") / "mixed.pcap"
    path.write_bytes(filter_capture(datagrams))
    return path, datagrams


@pytest.mark.parametrize("expr, selects", FILTER_CASES,
                         ids=[c[0] or "empty" for c in FILTER_CASES])
def test_replay_reads_captures_with_the_pcap_readers_filter(mixed_capture, expr, selects):
    """The datagram walk behind --replay selects exactly what the pcap
    reader's filter selects (the same cases as its own tests: IPv4 and
    IPv6, VLAN tags, TCP noise)."""
    from spead2._capture import UdpDatagrams
    path, datagrams = mixed_capture
    data = path.read_bytes()
    walk = UdpDatagrams(data, expr)
    # each datagram is a one-packet heap whose 8-byte payload repeats cnt % 256
    got = [data[offset + length - 1] for offset, length in walk]
    assert got == [d.cnt % 256 for d in datagrams if selects(d)]
    assert (walk.fragments, walk.truncated, walk.unusable, walk.error) == (0, 0, 0, None)


# ---------------------------------------------------------------------------
# A capture by tcpdump of a real transfer

@pytest.fixture(scope="module")
def tcpdump_capture(sent, tmp_path_factory):
    """tcpdump's capture on lo of ``spead2-send --replay`` of a raw capture
    (one datagram per packet; spead2-send's own UDP stream coalesces
    datagrams with UDP_SEGMENT, which tcpdump on lo records as one frame per
    train). Returns (path, port, the raw packets sent)."""
    if TCPDUMP is None:
        pytest.skip("tcpdump is not installed")
    raw, _ = sent("raw", *STANDARD)
    path = tmp_path_factory.mktemp("tcpdump") / "live.pcap"
    with tcpdump_on_loopback(path) as port:
        result = run_tool("send", "--replay", str(raw), f"127.0.0.1:{port}", "--rate", "50M")
        assert result.returncode == 0, result.stderr
    return path, port, raw_packets(raw.read_bytes())


def test_tcpdump_capture_is_read_by_recv_file(tcpdump_capture):
    path, port, packets = tcpdump_capture
    result = run_tool("recv", "--file", str(path), "--filter", f"udp dst port {port}")
    assert result.returncode == 0, result.stderr
    assert_recv_output(result.stdout, 5)
    assert [f.payload for f in read_frames(path)][:len(packets)] == packets


def test_tcpdump_capture_is_replayed(tcpdump_capture, receivers):
    path, port, packets = tcpdump_capture
    recv, to = receivers(lambda p: [f"127.0.0.1:{p}", "--timeout", "30"])
    result = run_tool("send", "--replay", str(path), f"127.0.0.1:{to}", "--json",
                      "--filter", f"dst port {port}", "--rate", "20M")
    assert result.returncode == 0, result.stderr
    s = summary_json(result.stdout)
    # the marker is a datagram too, but no SPEAD packet: not counted as a heap
    assert (s["packets"], s["heaps"]) == (len(packets) + 1, 7)
    code, out, err = recv.finish()
    assert code == 0, err
    assert_recv_output(out, 5)


# ---------------------------------------------------------------------------
# The raw format, both ways

def test_raw_format_both_ways(sent, receivers):
    raw, summary = sent("raw", *STANDARD)
    assert summary["file_bytes"] == raw.stat().st_size
    result = run_tool("recv", "--file", str(raw))
    assert result.returncode == 0, result.stderr
    assert_recv_output(result.stdout, 5)
    recv, port = receivers(lambda p: [f"127.0.0.1:{p}", "--timeout", "30"])
    result = run_tool("send", "--replay", str(raw), f"127.0.0.1:{port}", "--json")
    assert result.returncode == 0, result.stderr
    assert summary_json(result.stdout)["packets"] == len(raw_packets(raw.read_bytes()))
    code, out, err = recv.finish()
    assert code == 0, err
    assert_recv_output(out, 5)


# ---------------------------------------------------------------------------
# spead2-recv --capture

class Sender:
    """Datagrams from a socket of the test to ``to``, each recorded as sent:
    a sequence number and bytes that depend on it."""

    def __init__(self, to: Tuple[str, int], family: int = socket.AF_INET,
                 multicast_if: Optional[str] = None) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        if multicast_if is not None:
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                 socket.inet_aton(multicast_if))
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.address: Tuple[str, int] = self.sock.getsockname()[:2]
        self.to = to
        self.sent: List[bytes] = []
        self.rng = random.Random(7)

    def payload(self, size: int) -> bytes:
        seq = struct.pack("!I", len(self.sent))
        body = bytes(self.rng.getrandbits(8) for _ in range(min(size, 64)))
        return (seq + body * (size // max(len(body), 1) + 1))[:size]

    def send(self, sizes: Sequence[int]) -> None:
        for size in sizes:
            data = self.payload(size)
            self.sock.sendto(data, self.to)
            self.sent.append(data)

    def close(self) -> None:
        self.sock.close()


def start_capture(receivers, tmp_path, name: str, *args: str, host: str = "127.0.0.1",
                  env: Optional[dict] = None):
    """spead2-recv --capture into ``tmp_path / name`` from ``host`` on a free
    port; returns (process, port, path)."""
    path = tmp_path / name
    source = f"[{host}]" if ":" in host else host
    proc, port = receivers(lambda p: ["--capture", str(path), f"{source}:{p}", *args], host,
                           ready=CAPTURING, env=env)
    return proc, port, path


def progress_counts(proc: ToolProcess) -> List[int]:
    return [int(n) for n in re.findall(r"^spead2-recv:\s+[\d.]+ s  (\d+) packets",
                                       proc.stderr, re.M)]


def wait_for_progress(proc: ToolProcess, packets: int, timeout: float = 15.0) -> bool:
    """Whether a progress line (one a second, collected by the process's
    stderr reader) shows at least ``packets`` before ``timeout``."""
    def seen() -> bool:
        counts = progress_counts(proc)
        return bool(counts) and counts[-1] >= packets
    return wait_for(lambda: seen() or proc.proc.poll() is not None, timeout) and seen()


SIZES = [0, 1, 7, 100, 1472, 8972, 65507] + [random.Random(3).randrange(1, 9000)
                                              for _ in range(300)]


def test_capture_records_every_datagram_byte_exact(receivers, tmp_path):
    proc, port, path = start_capture(receivers, tmp_path, "known.pcap", "--count",
                                     str(len(SIZES)), "--json", "--timeout", "60")
    sender = Sender(("127.0.0.1", port))
    before = time.time_ns()
    try:
        sender.send(SIZES)
        code, out, err = proc.finish(TIMEOUT)
        after = time.time_ns()
    finally:
        sender.close()
    assert code == 0, err
    frames = read_frames(path)
    assert [f.payload for f in frames] == sender.sent
    assert {(f.src, f.sport, f.dst, f.dport) for f in frames} == {(*sender.address,
                                                                  "127.0.0.1", port)}
    assert all(f.ip_checksum_ok and f.udp_checksum_ok for f in frames)
    # Kernel times: the kernel stamps a datagram on arrival once timestamping
    # is on system-wide, and switching it on for the first time may take
    # effect a moment later (datagrams in between are stamped when read), so
    # the stamps need not be in order, but each lies between the first send
    # and the end of the capture.
    stamps = [f.ts_ns for f in frames]
    assert all(before - 1e9 < t < after + 1e9 for t in stamps)
    assert len(set(stamps)) > 1
    s = summary_json(out)
    assert s["reason"] == f"captured {len(SIZES)} packets"
    assert (s["packets"], s["bytes"], s["drops"]) == (len(SIZES), sum(SIZES), 0)
    assert s["file_bytes"] == path.stat().st_size


@pytest.mark.parametrize("gro", ["1", "0"], ids=["coalesced", "one-per-receive"])
def test_capture_of_spead2_send(receivers, tmp_path, sent, gro):
    # spead2-send coalesces datagrams (UDP_SEGMENT): with UDP_GRO the capture
    # receives trains and splits them, without it one datagram at a time
    env = tool_env()
    env["SPEAD2_UDP_GRO"] = gro
    raw, _ = sent("raw", *STANDARD)
    packets = raw_packets(raw.read_bytes())
    proc, port, path = start_capture(receivers, tmp_path, "send.pcapng", "--count",
                                     str(len(packets)), "--timeout", "60", env=env)
    result = run_tool("send", f"127.0.0.1:{port}", *STANDARD)
    assert result.returncode == 0, result.stderr
    code, out, err = proc.finish(TIMEOUT)
    assert code == 0, err
    assert re.search(rf"^captured:\s+{len(packets)} packets", out, re.M), out
    assert [f.payload for f in read_frames(path)] == packets
    result = run_tool("recv", "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert_recv_output(result.stdout, 5)


def test_capture_of_a_multicast_group(receivers, tmp_path):
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    proc, port, path = start_capture(receivers, tmp_path, "group.pcap", "--interface",
                                     "127.0.0.1", "--count", "50", "--timeout", "60",
                                     host=group)
    assert f"multicast {group}:{port} on 127.0.0.1" in proc.stderr
    sender = Sender((group, port), multicast_if="127.0.0.1")
    try:
        sender.send([1000] * 50)
        code, out, err = proc.finish(TIMEOUT)
    finally:
        sender.close()
    assert code == 0, err
    frames = read_frames(path)
    assert [f.payload for f in frames] == sender.sent
    assert {(f.src, f.sport, f.dst, f.dport) for f in frames} == {(*sender.address, group,
                                                                  port)}
    mac = bytes([1, 0, 0x5E]) + socket.inet_aton(group)[1:]
    assert {f.eth_dst for f in frames} == {bytes([mac[0], mac[1], mac[2], mac[3] & 0x7F,
                                                  mac[4], mac[5]])}


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_capture_over_ipv6(receivers, tmp_path):
    proc, port, path = start_capture(receivers, tmp_path, "v6.pcapng", "--count", "20",
                                     "--timeout", "60", host="::1")
    sender = Sender(("::1", port), socket.AF_INET6)
    try:
        sender.send(range(1, 2001, 100))
        code, out, err = proc.finish(TIMEOUT)
    finally:
        sender.close()
    assert code == 0, err
    frames = read_frames(path)
    assert [f.payload for f in frames] == sender.sent
    assert {(f.ip_version, f.src, f.dst, f.dport) for f in frames} == {(6, "::1", "::1", port)}
    assert all(f.udp_checksum_ok for f in frames)
    if TCPDUMP is not None:
        assert decode_with("tcpdump", path) == [(f.src, f.dst, f.sport, f.dport,
                                                 len(f.payload)) for f in frames]


def test_capture_count_stops_after_exactly_n(receivers, tmp_path):
    proc, port, path = start_capture(receivers, tmp_path, "count.pcap", "--count", "30",
                                     "--timeout", "60", "-q")
    sender = Sender(("127.0.0.1", port))
    try:
        sender.send([200] * 40)
        code, out, err = proc.finish(TIMEOUT)
    finally:
        sender.close()
    assert code == 0, err
    assert [f.payload for f in read_frames(path)] == sender.sent[:30]
    assert re.search(r"^stopped:\s+captured 30 packets", out, re.M)
    assert progress_counts(proc) == []      # -q: no progress lines


def test_capture_timeout_leaves_a_valid_empty_file(receivers, tmp_path):
    started = time.monotonic()
    proc, port, path = start_capture(receivers, tmp_path, "empty.pcapng", "--timeout", "0.5")
    code, out, err = proc.finish(TIMEOUT)
    assert code == 0, err
    assert time.monotonic() - started < 20
    assert re.search(r"^stopped:\s+timeout after 0\.\d\d s$", out, re.M), out
    assert read_frames(path) == []
    if TCPDUMP is not None:
        assert decode_with("tcpdump", path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_capture_interrupted_keeps_every_packet_counted(receivers, tmp_path, sig):
    proc, port, path = start_capture(receivers, tmp_path, "sig.pcap", "--json",
                                     "--timeout", "60")
    sender = Sender(("127.0.0.1", port))
    stop = threading.Event()

    def keep_sending():
        # datagrams still arriving while the signal is handled (bounded in count)
        for _ in range(200000):
            if stop.is_set():
                return
            try:
                sender.send([500])
            except OSError:
                return

    thread = threading.Thread(target=keep_sending, daemon=True)
    try:
        sender.send([1000] * 200)
        assert wait_for_progress(proc, 200), proc.stderr
        thread.start()
        proc.proc.send_signal(sig)
        code, out, err = proc.finish(TIMEOUT)
    finally:
        stop.set()
        thread.join(10)
        sender.close()
    assert code == 0, err
    assert "Traceback" not in err
    s = summary_json(out)
    assert s["reason"] == "interrupted"
    frames = read_frames(path)
    assert s["packets"] == len(frames) >= 200
    assert s["file_bytes"] == path.stat().st_size
    # what was captured is what was sent, in order, less any the kernel dropped
    assert [f.payload for f in frames[:200]] == sender.sent[:200]
    sent = set(sender.sent)
    assert all(f.payload in sent for f in frames)
    assert len(frames) + s["drops"] <= len(sender.sent)


def test_capture_to_stdout(tmp_path):
    port = free_udp_port()
    proc = subprocess.Popen(tool_cmd("recv", "--capture", "-", f"127.0.0.1:{port}", "--count",
                                     "10", "--timeout", "60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env())
    lines: List[bytes] = []
    ready = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            lines.append(line)
            if CAPTURING.encode() in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    sender = Sender(("127.0.0.1", port))
    try:
        ready.wait(20)
        if proc.poll() is not None and b"in use" in b"".join(lines):
            pytest.skip("the free port was taken meanwhile")
        sender.send([300] * 10)
        proc.wait(TIMEOUT)      # 10 small records: the pipe holds them
        out = proc.stdout.read()
    finally:
        sender.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    err = b"".join(lines).decode()
    assert proc.returncode == 0, err
    path = tmp_path / "stdout.pcap"
    path.write_bytes(out)
    assert [f.payload for f in read_frames(path)] == sender.sent
    assert re.search(r"^captured:\s+10 packets", err, re.M), err   # the summary: on stderr


def test_capture_port_in_use_is_an_error():
    # a capture records its own sockets' datagrams, so it binds like a receiver
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = run_tool("recv", "--capture", "/dev/null", f"127.0.0.1:{port}", "--timeout", "5")
    assert_one_error_line(result, "spead2-recv", "in use", str(port))


@pytest.mark.parametrize("args, fragments", [
    (["--capture", "/nonexistent/dir/c.pcap", "PORT"], ["cannot write", "no such file"]),
    (["--capture", "DIR", "PORT"], ["cannot write", "directory"]),
    (["--capture", "FILE", "192.0.2.1:PORT"], ["cannot bind", "192.0.2.1"]),
    (["--capture", "FILE", "239.255.1.2:PORT", "--interface", "192.0.2.1"],
     ["multicast", "239.255.1.2"]),
    (["--capture", "FILE"], ["nothing to capture"]),
    (["--capture", "FILE", "PORT", "--max-heaps", "8"], ["--max-heaps", "--capture"]),
    (["--capture", "FILE", "PORT", "--pool"], ["--pool", "--capture"]),
    (["--capture", "FILE", "PORT", "--file", "x.pcap"], ["--file", "--capture"]),
    (["--capture", "FILE", "PORT", "--stats"], ["--stats", "--capture"]),
], ids=["no-dir", "is-dir", "not-local", "no-interface", "no-source", "max-heaps", "pool",
        "file", "stats"])
def test_capture_errors(tmp_path, args, fragments):
    port = str(free_udp_port())
    args = [a.replace("PORT", port).replace("FILE", str(tmp_path / "c.pcap"))
            .replace("DIR", str(tmp_path)) for a in args]
    assert_one_error_line(run_tool("recv", *args), "spead2-recv", *fragments)
    # checked before the file is created
    assert not (tmp_path / "c.pcap").exists()


# ---------------------------------------------------------------------------
# Errors of the file options

def test_filter_and_format_errors(tmp_path, sent):
    raw, _ = sent("raw", *STANDARD)
    pcap, _ = sent("pcap", *STANDARD)
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(pcap.read_bytes()[:10])
    cases = [
        ("recv", ["--file", str(raw), "--filter", "port 1"], ["--filter", "raw"]),
        ("recv", ["--file", str(pcap), "--filter", "port"], ["--filter", "bad filter", "port"]),
        ("recv", ["--file", str(pcap), "--filter", "tcp"], ["--filter", "tcp"]),
        ("recv", ["8888", "--filter", "port 1"], ["--filter", "--file"]),
        ("recv", ["--file", str(broken)], ["broken.pcap", "cut short"]),
        ("send", ["--replay", str(raw), "127.0.0.1:9", "--filter", "port 1"], ["--filter", "raw"]),
        ("send", ["--replay", str(pcap), "127.0.0.1:9", "--filter", "port x"], ["bad filter"]),
        ("send", ["--replay", str(broken), "127.0.0.1:9"], ["broken.pcap", "cut short"]),
        ("send", ["127.0.0.1:9", "--filter", "port 1"], ["--filter", "--replay"]),
        ("send", ["127.0.0.1:9", "--format", "pcap"], ["--format", "--output"]),
        ("send", ["127.0.0.1:9", "--to", "127.0.0.1:1"], ["--to", "--output"]),
        ("send", ["--output", "-", "--to", "127.0.0.1:1"], ["--to", "raw"]),
        ("send", ["--output", "x.spead", "--format", "raw", "--to", "127.0.0.1:1"],
         ["--to", "raw"]),
        ("send", ["--output", "x.pcap", "--format", "text"], ["--format"]),
    ]
    for tool, args, fragments in cases:
        assert_one_error_line(run_tool(tool, *args), f"spead2-{tool}", *fragments)
