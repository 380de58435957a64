"""Today's transports in the command-line tools, run as subprocesses the way
a person runs them: TCP in spead2-recv, spead2-send and spead2-bench;
substreams (several destinations, ``--group-mode``, ``--substreams``,
``--stop-heaps``); incomplete and out-of-order heaps in spead2-recv;
``spead2-bench --plot``.

Round trips run between our tools over loopback, and against the reference
spead2 4.5.1 on the other side: its command-line tools (``spead2_send.py``,
``spead2_recv.py``) and its library (``ref_scripts/recv_tcp.py``). Values
are compared, not only counted. Every wait is bounded.
"""

import errno
import os
import pickle
import random
import re
import socket
import struct
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import refimpl
import spead2
import spead2.send
from conftest import wait_for
from ports import free_tcp_port, free_udp_port
from test_tools import ToolProcess, assert_one_error_line, run_tool, summary_json, tool_env
from test_tools import receivers  # noqa: F401  (a fixture: tools started by a test)
from test_tools_pcap import assert_recv_output, expected_values

TIMEOUT = 30.0


@pytest.fixture
def tcp_receivers(receivers):
    """``start(*args)``: ``spead2-recv --tcp 127.0.0.1:PORT *args`` on a
    free port, listening; returns it and the port."""
    def start(*args: str) -> Tuple[ToolProcess, int]:
        return receivers(lambda port: ["--tcp", f"127.0.0.1:{port}", "--timeout", str(TIMEOUT),
                                       *args], free_port=free_tcp_port)

    return start


def timestamps(out: str) -> List[int]:
    """The ``timestamp`` values spead2-recv printed, in order."""
    return [int(t) for t in re.findall(r"^  timestamp = (\d+)$", out, re.M)]


def shown_heads(out: str, name: str = "data") -> List[List[int]]:
    """The first elements of each value of ``name`` that spead2-recv printed."""
    return [[int(v) for v in m.split(", ")]
            for m in re.findall(rf"^  {name} = uint8\[\d+\] \[([\d, ]+), \.\.\.\]$", out, re.M)]


def random_group() -> str:
    return f"239.255.{random.randint(1, 254)}.{random.randint(1, 250)}"


# ---------------------------------------------------------------------------
# TCP between our tools

def test_tcp_round_trip_values(tcp_receivers):
    recv, port = tcp_receivers()
    assert re.search(rf"receiving from tcp 127\.0\.0\.1:{port}$", recv.stderr, re.M)
    sent = run_tool("send", "--tcp", f"127.0.0.1:{port}", "--heaps", "12", "--heap-size",
                    "6000", "--items", "2", "--packet-size", "1400", "--json")
    assert sent.returncode == 0, sent.stderr
    s = summary_json(sent.stdout)
    assert (s["heaps"], s["bytes"], s["to"]) == (12, 12 * 6000, f"tcp 127.0.0.1:{port}")
    code, out, err = recv.finish(TIMEOUT)
    assert code == 0, err
    assert_recv_output(out, 12, items=2, elements=3000)
    assert re.search(r"^stopped:\s+end of stream", out, re.M)
    assert re.search(r"^packets:\s+\d+ \(0 malformed", out, re.M)


def test_tcp_stream_ends_when_the_sender_closes(tcp_receivers):
    """No end-of-stream heap is needed: closing the connection ends the
    stream, as add_tcp_reader documents. A raw connection sends two heaps
    and closes."""
    recv, port = tcp_receivers("-q", "--json")
    ig = spead2.send.ItemGroup()
    ig.add_item(0x1000, "timestamp", "", shape=(), format=[("u", 40)])
    stream = spead2.send.BytesStream(spead2.ThreadPool())
    for i in range(2):
        ig["timestamp"].value = i
        stream.send_heap(ig.get_heap())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(stream.getvalue())
    code, out, err = recv.finish(TIMEOUT)
    assert code == 0, err
    s = summary_json(out)
    assert (s["reason"], s["heaps"]) == ("end of stream", 2)


# ---------------------------------------------------------------------------
# Substreams: several destinations, groups of heaps

@pytest.mark.parametrize("mode", ["round-robin", "serial"])
def test_two_destinations_each_get_a_complete_stream(receivers, mode):
    """Heap i goes to destination i % 2; each receiver sees a start heap,
    the descriptors, its share of the values and an end."""
    recv_a, port_a = receivers(lambda port: [f"127.0.0.1:{port}", "--timeout", str(TIMEOUT)])
    recv_b, port_b = receivers(lambda port: [f"127.0.0.1:{port}", "--timeout", str(TIMEOUT)])
    sent = run_tool("send", f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}", "--heaps", "10",
                    "--heap-size", "3000", "--packet-size", "1000", "--group-mode", mode,
                    "--json")
    assert sent.returncode == 0, sent.stderr
    s = summary_json(sent.stdout)
    assert (s["heaps"], s["substreams"]) == (10, 2)
    for k, recv in enumerate((recv_a, recv_b)):
        code, out, err = recv.finish(TIMEOUT)
        assert code == 0, err
        mine = list(range(k, 10, 2))
        assert timestamps(out) == mine, out
        assert shown_heads(out) == [expected_values(i, 1, 8)[0] for i in mine]
        assert "start of stream" in out and "2 descriptors, 2 values" in out
        assert re.search(r"^stopped:\s+end of stream", out, re.M)
        assert re.search(r"^heaps:\s+5 received \(\+ 1 start-of-stream marker\)$", out, re.M)


def test_joint_receiver_with_substreams_takes_both_groups(receivers):
    """One receiver joining both multicast groups of a two-destination
    sender, with a substream each, ends at the second end-of-stream heap and
    has every heap; a receiver of one group has its half."""
    groups = [random_group(), random_group()]
    while groups[1] == groups[0]:
        groups[1] = random_group()
    port = free_udp_port()
    joint, _ = receivers(lambda _: [f"{groups[0]}:{port}", f"{groups[1]}:{port}",
                                    "--interface", "127.0.0.1", "--substreams", "2",
                                    "--stop-heaps", "2", "--timeout", str(TIMEOUT)])
    half, _ = receivers(lambda _: [f"{groups[1]}:{port}", "--interface", "127.0.0.1",
                                   "--timeout", str(TIMEOUT)])
    sent = run_tool("send", *(f"{g}:{port}" for g in groups), "--interface", "127.0.0.1",
                    "--heaps", "8", "--heap-size", "2000", "--group-mode", "round-robin")
    assert sent.returncode == 0, sent.stderr
    code, out, err = joint.finish(TIMEOUT)
    assert code == 0, err
    assert sorted(timestamps(out)) == list(range(8)), out
    assert re.search(r"^heaps:\s+8 received \(\+ 2 start-of-stream markers\)$", out, re.M)
    assert re.search(r"^stopped:\s+end of stream", out, re.M)
    code, out, err = half.finish(TIMEOUT)
    assert code == 0, err
    assert timestamps(out) == [1, 3, 5, 7]


def test_round_robin_interleaves_packets_and_serial_does_not(receivers):
    """Four 3-packet heaps per group to one destination. A receiver
    assembling one heap at a time gets each heap whole from a serial group;
    from a round-robin group, whose packets alternate between the heaps,
    every heap is pushed out unfinished by the next, and --no-contiguous-only
    shows them as incomplete with what arrived."""
    outputs: Dict[str, str] = {}
    for mode in ("serial", "round-robin"):
        recv, port = receivers(lambda port: [f"127.0.0.1:{port}", "--max-heaps", "1",
                                             "--no-contiguous-only",
                                             "--timeout", str(TIMEOUT)])
        sent = run_tool("send", f"127.0.0.1:{port}", "--heaps", "8", "--heap-size", "2000",
                        "--packet-size", "1000", "--group-mode", mode, "--group-size", "4")
        assert sent.returncode == 0, sent.stderr
        code, outputs[mode], err = recv.finish(TIMEOUT)
        assert code == 0, err
    serial, interleaved = outputs["serial"], outputs["round-robin"]
    assert timestamps(serial) == list(range(8))
    assert "incomplete" not in serial.replace("incomplete:   0 heaps delivered", "")
    shown = re.findall(r"^heap (\d+): incomplete, (\d+) of (\d+) bytes of payload received",
                       interleaved, re.M)
    assert len(shown) >= 6, interleaved
    for _, received, length in shown:
        assert 0 < int(received) < int(length)
    # the immediates of an incomplete heap are shown: each heap's timestamp,
    # with the part that holds its first packet (by id: the descriptors
    # travelled in the first heap, itself incomplete)
    assert [int(t) for t in re.findall(r"^  0x1000 = (\d+) \(immediate\)$", interleaved,
                                       re.M)] == list(range(8))
    assert re.search(r"^incomplete:\s+\d+ heaps delivered", interleaved, re.M)


# ---------------------------------------------------------------------------
# Incomplete and out-of-order heaps, from a file (deterministic)

def _packets(data: bytes) -> List[Tuple[bytes, int, int, int]]:
    """``(packet, heap_cnt, payload_offset, payload_length)`` of each packet
    of a raw SPEAD-64-40 capture."""
    from spead2.tools.send import split_packets
    out = []
    for pos, length, cnt in split_packets(data):
        packet = data[pos:pos + length]
        n_items = struct.unpack_from(">H", packet, 6)[0]
        fields = {}
        for (pointer,) in struct.iter_unpack(">Q", packet[8:8 + 8 * n_items]):
            if pointer >> 63:
                fields[(pointer >> 40) & 0x7FFFFF] = pointer & ((1 << 40) - 1)
        out.append((packet, cnt, fields[spead2.PAYLOAD_OFFSET_ID],
                    fields[spead2.PAYLOAD_LENGTH_ID]))
    return out


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A raw capture of 3 heaps of 3000 bytes in 1000-byte packets, written
    twice: without the second packet of the second data heap (``drop``) and
    with two packets of the third data heap swapped (``swap``)."""
    base = tmp_path_factory.mktemp("damaged")
    raw = base / "whole.raw"
    result = run_tool("send", "--output", str(raw), "--format", "raw", "--heaps", "3",
                      "--heap-size", "3000", "--packet-size", "1000")
    assert result.returncode == 0, result.stderr
    packets = _packets(raw.read_bytes())
    data_cnts = sorted({cnt for _, cnt, _, _ in packets})[1:-1]
    victim = [p for p in packets if p[1] == data_cnts[1]][1]
    (base / "drop.raw").write_bytes(b"".join(p[0] for p in packets if p is not victim))
    third = [n for n, p in enumerate(packets) if p[1] == data_cnts[2]]
    order = list(range(len(packets)))
    order[third[1]], order[third[2]] = order[third[2]], order[third[1]]
    (base / "swap.raw").write_bytes(b"".join(packets[n][0] for n in order))
    heap_length = sum(p[3] for p in packets if p[1] == victim[1])
    return base, victim, heap_length


def test_incomplete_heap_is_shown_with_what_arrived(damaged):
    base, (_, cnt, offset, length), heap_length = damaged
    result = run_tool("recv", "--file", str(base / "drop.raw"), "--no-contiguous-only")
    assert result.returncode == 0, result.stderr
    received = heap_length - length
    assert (f"heap {cnt}: incomplete, {received} of {heap_length} bytes of payload received "
            f"(bytes 0-{offset}, {offset + length}-{heap_length})\n") in result.stdout, \
        result.stdout
    assert re.search(r"^  timestamp = 1 \(immediate\)$", result.stdout, re.M)
    assert timestamps(result.stdout) == [0, 2]
    assert re.search(r"^incomplete:\s+1 heap delivered", result.stdout, re.M)
    js = summary_json(run_tool("recv", "--file", str(base / "drop.raw"), "--json", "-q",
                               "--no-contiguous-only").stdout)
    assert (js["heaps"], js["incomplete_heaps"]) == (2, 1)


def test_incomplete_heap_is_dropped_by_default(damaged):
    base, (_, cnt, _, _), _ = damaged
    result = run_tool("recv", "--file", str(base / "drop.raw"))
    assert result.returncode == 0, result.stderr
    assert timestamps(result.stdout) == [0, 2]
    assert "incomplete," not in result.stdout
    assert f"dropped incomplete heap {cnt}" in result.stderr
    assert re.search(r"^incomplete:\s+1 heap dropped", result.stdout, re.M)


def test_out_of_order_packets_accepted_unless_refused(damaged):
    base, _, _ = damaged
    accepted = run_tool("recv", "--file", str(base / "swap.raw"))
    assert accepted.returncode == 0, accepted.stderr
    assert timestamps(accepted.stdout) == [0, 1, 2]
    refused = run_tool("recv", "--file", str(base / "swap.raw"), "--no-allow-out-of-order",
                       "--no-contiguous-only", "--json", "-q")
    assert refused.returncode == 0, refused.stderr
    s = summary_json(refused.stdout)
    assert (s["heaps"], s["incomplete_heaps"]) == (2, 1)


# ---------------------------------------------------------------------------
# Against the reference spead2 4.5.1

def _ref_tool(ref_python, name: str) -> Path:
    path = Path(ref_python.executable).parent / name
    if not path.exists():
        pytest.skip(f"the reference environment has no {name}")
    return path


def _bound(port: int, kind: int) -> bool:
    """Whether something on this machine has bound 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _ref_arrays(out: str, name: str) -> List[List[int]]:
    """The values of ``name`` that the reference spead2_recv printed (numpy
    prints arrays of up to 1000 elements whole)."""
    return [[int(v) for v in body.split()]
            for body in re.findall(rf"^{name} = \[([\d\s]+)\]$", out, re.M)]


@pytest.mark.interop
def test_reference_tool_sends_tcp_to_our_recv(ref_python, tcp_receivers):
    """spead2_send.py --tcp (the reference's own tool: zeros of complex64)
    into spead2-recv --tcp."""
    recv, port = tcp_receivers("--values", "3")
    tool = _ref_tool(ref_python, "spead2_send.py")
    with refimpl.RefProcess([ref_python.executable, tool, "--tcp", "--heaps", "6",
                             "--heap-size", "8192", "--items", "2",
                             f"127.0.0.1:{port}"]) as sender:
        sender.finish(TIMEOUT)
    code, out, err = recv.finish(TIMEOUT)
    assert code == 0, err
    assert re.search(r"^heaps:\s+6 received$", out, re.M), out
    for k in range(2):
        assert re.search(rf"^  descriptor 0x\w+ Test item {k}: complex64 \(512,\) ", out, re.M)
        values = re.findall(rf"^  Test item {k} = complex64\[512\] \[(.*)\]$", out, re.M)
        assert values == ["(0+0j), (0+0j), (0+0j), ..."] * 6
    assert re.search(r"^stopped:\s+end of stream", out, re.M)


@pytest.mark.interop
def test_our_tcp_send_to_the_reference_library(ref_python, tmp_path):
    """spead2-send --tcp into the reference's add_tcp_reader: the raw items
    it assembled hold the timestamps and arrays we sent, byte for byte."""
    output = str(tmp_path / "ref.pickle")
    with ref_python.start("recv_tcp.py", "--output", output, "--timeout", TIMEOUT,
                          "--max-size", 65536) as receiver:
        port = int(receiver.readline(TIMEOUT))
        sent = run_tool("send", "--tcp", f"127.0.0.1:{port}", "--heaps", "7", "--heap-size",
                        "5000", "--items", "2", "--packet-size", "1500")
        assert sent.returncode == 0, sent.stderr
        receiver.finish(TIMEOUT + 10)
    with open(output, "rb") as f:
        dump = pickle.load(f)
    assert dump["end"] == "stopped"
    data = [dict(h["items"]) for h in dump["heaps"] if 0x1001 in dict(h["items"])]
    assert len(data) == 7
    for i, items in enumerate(data):
        assert int.from_bytes(items[0x1000], "big") == i
        for k, values in enumerate(expected_values(i, 2, 2500)):
            assert list(items[0x1001 + k]) == values


@pytest.mark.interop
def test_reference_tool_sends_two_substreams_to_our_recv(ref_python, receivers):
    """spead2_send.py to two UDP destinations (its substreams) into one
    spead2-recv on both ports with --substreams 2 --stop-heaps 2."""
    port_b = free_udp_port()
    recv, port_a = receivers(lambda port: [f"127.0.0.1:{port}", f"127.0.0.1:{port_b}",
                                           "--substreams", "2", "--stop-heaps", "2",
                                           "--values", "2", "--timeout", str(TIMEOUT)])
    tool = _ref_tool(ref_python, "spead2_send.py")
    with refimpl.RefProcess([ref_python.executable, tool, "--heaps", "10", "--heap-size",
                             "4096", "--dtype", "u1", "--rate", "0.08",
                             f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"]) as sender:
        sender.finish(TIMEOUT)
    code, out, err = recv.finish(TIMEOUT)
    assert code == 0, err
    assert re.search(r"^heaps:\s+10 received$", out, re.M), out
    assert len(re.findall(r"^  Test item 0 = uint8\[4096\] \[0, 0, \.\.\.\]$", out, re.M)) == 10
    assert len(re.findall(r"^  descriptor 0x\w+ Test item 0: uint8 \(4096,\)", out, re.M)) == 2
    assert re.search(r"^stopped:\s+end of stream", out, re.M)


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["round-robin", "serial"])
def test_our_two_destinations_to_the_reference_recv_tool(ref_python, mode):
    """spead2-send to two UDP ports, grouped, into the reference's
    spead2_recv.py --values, which runs a stream per port: each stream has
    its half of the heaps, values exact."""
    tool = _ref_tool(ref_python, "spead2_recv.py")
    ports = [free_udp_port(), free_udp_port()]
    while ports[1] == ports[0]:
        ports[1] = free_udp_port()
    with refimpl.RefProcess([ref_python.executable, tool, "--values",
                             *(f"127.0.0.1:{p}" for p in ports)]) as receiver:
        assert wait_for(lambda: all(_bound(p, socket.SOCK_DGRAM) for p in ports), TIMEOUT), \
            receiver.stderr()
        sent = run_tool("send", *(f"127.0.0.1:{p}" for p in ports), "--heaps", "6",
                        "--heap-size", "600", "--group-mode", mode)
        assert sent.returncode == 0, sent.stderr
        out = receiver.finish(TIMEOUT)
    for k, port in enumerate(ports):
        section = "\n".join(line for line in re.split(r"(?=^Received heap )", out, flags=re.M)
                            if line.startswith("Received heap ")
                            and f" on stream 127.0.0.1:{port}\n" in line)
        mine = list(range(k, 6, 2))
        assert [int(t) for t in re.findall(r"^timestamp = (\d+)$", section, re.M)] == mine
        assert _ref_arrays(section, "data") == [expected_values(i, 1, 600)[0] for i in mine]
        assert f"Shutting down stream 127.0.0.1:{port} after 4 heaps" in out


@pytest.mark.interop
def test_our_tcp_send_to_the_reference_recv_tool(ref_python):
    tool = _ref_tool(ref_python, "spead2_recv.py")
    port = free_tcp_port()
    with refimpl.RefProcess([ref_python.executable, tool, "--tcp", "--values",
                             f"127.0.0.1:{port}"]) as receiver:
        assert wait_for(lambda: _bound(port, socket.SOCK_STREAM), TIMEOUT), receiver.stderr()
        sent = run_tool("send", "--tcp", f"127.0.0.1:{port}", "--heaps", "4",
                        "--heap-size", "500")
        assert sent.returncode == 0, sent.stderr
        out = receiver.finish(TIMEOUT)
    assert [int(t) for t in re.findall(r"^timestamp = (\d+)$", out, re.M)] == [0, 1, 2, 3]
    assert _ref_arrays(out, "data") == [expected_values(i, 1, 500)[0] for i in range(4)]


# ---------------------------------------------------------------------------
# spead2-bench over TCP, and its plot

def test_bench_over_tcp():
    result = run_tool("bench", "--tcp", "--heap-size", "64Ki", "--heaps", "40",
                      "--max-time", "30", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    s = summary_json(result.stdout)
    assert s["transport"] == "tcp"
    assert [t["transport"] for t in s["trials"]] == ["tcp"]
    trial = s["trials"][0]
    assert (trial["heaps_sent"], trial["heaps_received"], trial["lost"]) == (40, 40, 0)
    assert s["best_rate"] == 0 and s["best_send_rate"] > 0
    assert s["results"]["tcp"]["note"] == "no loss even at the sender's full speed"


def _matplotlib_or_skip() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("matplotlib is part of the test extra, and CI must test --plot")
        pytest.skip("matplotlib is not installed (pip install 'spead2py[plot]')")


def test_bench_plots_both_transports_as_png(tmp_path):
    _matplotlib_or_skip()
    png = tmp_path / "sweep.png"
    result = run_tool("bench", "--transport", "both", "--heap-size", "8Ki", "--heaps", "30",
                      "--max-time", "30", "--min-rate", "1M", "--max-rate", "2M",
                      "--plot", str(png), timeout=150)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"over UDP 127\.0\.0\.1$", out, re.M)
    assert re.search(r"over TCP 127\.0\.0\.1$", out, re.M)
    assert len(re.findall(r"^highest lossless rate: .* over (UDP|TCP)$", out, re.M)) == 2
    assert f"plot: {png}" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (800, 650)


def test_bench_plot_without_matplotlib_is_one_line_error(tmp_path):
    blocker = tmp_path / "matplotlib"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    env = tool_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    result = run_tool("bench", "--plot", str(tmp_path / "x.png"), env=env)
    assert_one_error_line(result, "spead2-bench", "--plot", "matplotlib", "spead2py[plot]")


# ---------------------------------------------------------------------------
# Options that do not go together: one line, non-zero exit

@pytest.mark.parametrize("tool, args, fragments", [
    ("recv", ["--tcp", "--file", "x"], ["--tcp", "--file"]),
    ("recv", ["--tcp", "239.1.2.3:9"], ["multicast", "--tcp"]),
    ("recv", ["--tcp", "9", "--interface", "127.0.0.1"], ["--interface"]),
    ("recv", ["--capture", "x.pcap", "--tcp", "9"], ["--tcp", "--capture"]),
    ("recv", ["--capture", "x.pcap", "--substreams", "2", "9"], ["--substreams", "--capture"]),
    ("recv", ["9", "--substreams", "0"], ["--substreams"]),
    ("send", ["--tcp", "127.0.0.1:9", "127.0.0.1:10"], ["--tcp", "one destination"]),
    ("send", ["--tcp", "239.1.2.3:9"], ["multicast", "tcp"]),
    ("send", ["--tcp", "127.0.0.1:9", "--ttl", "2"], ["--ttl"]),
    ("send", ["--tcp", "--output", "x"], ["--tcp", "--output"]),
    ("send", ["239.1.2.3:9", "127.0.0.1:9"], ["multicast", "127.0.0.1:9"]),
    ("send", ["127.0.0.1:9", "--group-size", "2"], ["--group-size", "--group-mode"]),
    ("send", ["127.0.0.1:9", "--group-mode", "sideways"], ["--group-mode"]),
    ("send", ["--replay", "x", "127.0.0.1:9", "127.0.0.1:10"], ["one destination"]),
    ("send", ["--replay", "x", "127.0.0.1:9", "--tcp"], ["--tcp", "--replay"]),
    ("bench", ["--transport", "carrier-pigeon"], ["--transport"]),
])
def test_bad_option_combinations(tool, args, fragments):
    assert_one_error_line(run_tool(tool, *args), f"spead2-{tool}", *fragments)


def test_send_tcp_with_nobody_listening():
    result = run_tool("send", "--tcp", f"127.0.0.1:{free_tcp_port()}", "--heaps", "1")
    assert_one_error_line(result, "spead2-send", "cannot connect", "refused")


def test_recv_tcp_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        result = run_tool("recv", "--tcp", f"127.0.0.1:{s.getsockname()[1]}",
                          "--timeout", "5")
    assert_one_error_line(result, "spead2-recv", "in use", "tcp")
