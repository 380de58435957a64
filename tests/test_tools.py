"""The command-line tools (spead2-recv, spead2-send, spead2-bench) and the demo,
run as subprocesses the way a person runs them.

Network traffic stays on loopback; every wait is bounded.
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pytest

import spead2
import spead2.send
from ports import free_udp_port

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("recv", "send", "bench")
READY = "receiving from"


def tool_env() -> dict:
    """The environment for a tool: it imports the spead2 these tests import."""
    package_parent = str(Path(spead2.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.pop("COLUMNS", None)
    return env


def tool_cmd(tool: str, *args: str) -> List[str]:
    return [sys.executable, "-m", f"spead2.tools.{tool}", *args]


def run_tool(tool: str, *args: str, timeout: float = 30.0, stdin: Optional[bytes] = None,
             env: Optional[dict] = None) -> subprocess.CompletedProcess:
    return subprocess.run(tool_cmd(tool, *args), capture_output=True, timeout=timeout,
                          env=env or tool_env(), text=True,
                          input=stdin.decode("latin-1") if stdin else None)


def has_ipv6_loopback() -> bool:
    try:
        free_udp_port("::1")
        return True
    except OSError:
        return False


class ToolProcess:
    """A tool running in the background, its output collected by threads;
    it is ready once a line of its stderr holds ``ready``."""

    def __init__(self, tool: str, *args: str, ready: str = READY,
                 env: Optional[dict] = None) -> None:
        self.ready_marker = ready
        self.proc = subprocess.Popen(tool_cmd(tool, *args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env or tool_env())
        self.stdout_lines: List[str] = []
        self.stderr_lines: List[str] = []
        self.ready = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines),
                             daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream, lines: List[str]) -> None:
        for line in stream:
            lines.append(line)
            if self.ready_marker in line:
                self.ready.set()
        self.ready.set()

    def wait_ready(self, timeout: float = 20.0) -> bool:
        """Whether the receiver is listening (False if it exited instead)."""
        self.ready.wait(timeout)
        return self.proc.poll() is None and any(self.ready_marker in line
                                                for line in self.stderr_lines)

    def finish(self, timeout: float = 30.0) -> Tuple[int, str, str]:
        """Wait for the exit (killing it after ``timeout``); (code, stdout, stderr)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            for t in self._threads:
                t.join(5)
            pytest.fail(f"tool did not finish in {timeout} s; stderr: {self.stderr}")
        for t in self._threads:
            t.join(5)
        return self.proc.returncode, self.stdout, self.stderr

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_receiver(make_args: Callable[[int], List[str]], host: str = "127.0.0.1",
                   free_port: Callable[[str], int] = free_udp_port,
                   **kwargs) -> Tuple[ToolProcess, int]:
    """Start spead2-recv on a port that ``free_port`` found free (trying
    another if it was taken meanwhile); ``kwargs`` go to :class:`ToolProcess`."""
    for _ in range(5):
        port = free_port(host)
        proc = ToolProcess("recv", *make_args(port), **kwargs)
        if proc.wait_ready():
            return proc, port
        code, _, err = proc.finish(10)
        if "in use" not in err:
            pytest.fail(f"receiver did not start (exit {code}): {err}")
    pytest.fail("no free port for the receiver")


@pytest.fixture
def receivers():
    """Receivers started by a test; killed if the test leaves them running."""
    started: List[ToolProcess] = []

    def start(make_args, host="127.0.0.1", **kwargs):
        proc, port = start_receiver(make_args, host, **kwargs)
        started.append(proc)
        return proc, port

    yield start
    for proc in started:
        proc.kill()


def summary_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary in {stdout!r}"
    return json.loads(lines[-1])


def assert_one_error_line(result: subprocess.CompletedProcess, prog: str,
                          *fragments: str) -> None:
    """Failed with exactly one ``PROG: error: ...`` line and no traceback."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]


# ---------------------------------------------------------------------------
# Entry points

def _declared_scripts() -> dict:
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        section = re.search(r"^\[project\.scripts\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        assert section, "no [project.scripts] in pyproject.toml"
        return dict(re.findall(r'^\s*([\w.-]+)\s*=\s*"([^"]+)"', section.group(1), re.M))
    return tomllib.loads(text)["project"]["scripts"]


def test_console_scripts_are_declared_and_importable():
    import importlib
    scripts = _declared_scripts()
    for tool in TOOLS:
        target = scripts[f"spead2-{tool}"]
        module_name, _, func_name = target.partition(":")
        assert module_name == f"spead2.tools.{tool}"
        assert callable(getattr(importlib.import_module(module_name), func_name))


@pytest.mark.parametrize("tool", TOOLS)
def test_help_exits_zero_and_shows_usage(tool):
    result = run_tool(tool, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: spead2-{tool}")
    assert "examples:" in result.stdout


# ---------------------------------------------------------------------------
# send -> recv over UDP

def test_loopback_transfer_prints_descriptors_and_values(receivers):
    recv, port = receivers(lambda port: [f"127.0.0.1:{port}", "--timeout", "30"])
    sent = run_tool("send", f"127.0.0.1:{port}", "--heaps", "20", "--heap-size", "4000",
                    "--items", "2", "--dtype", "int16")
    assert sent.returncode == 0, sent.stderr
    assert re.search(r"^sent:\s+20 heaps to 127\.0\.0\.1:\d+$", sent.stdout, re.M)
    assert re.search(r"^payload:\s+80 kB of item data \(80000 bytes\)", sent.stdout, re.M)
    code, out, err = recv.finish()
    assert code == 0, err
    assert "heap 1: start of stream" in out
    assert "heap 2: 3 descriptors, 3 values" in out
    assert re.search(r"^  descriptor 0x1001 data0: int16 \(1000,\) ", out, re.M)
    assert re.search(r"^  descriptor 0x1000 timestamp: u40 \(\) ", out, re.M)
    assert "  data0 = int16[1000] [0, 1, 2, 3, 4, 5, 6, 7, ...]" in out
    assert "  data1 = int16[1000] [0, 3, 6, 9, 12, 15, 18, 21, ...]" in out
    assert [int(t) for t in re.findall(r"^  timestamp = (\d+)$", out, re.M)] == list(range(20))
    assert re.search(r"^heaps:\s+20 received \(\+ 1 start-of-stream marker\)$", out, re.M)
    assert re.search(r"^stopped:\s+end of stream", out, re.M)
    assert re.search(r"^incomplete:\s+0 heaps dropped", out, re.M)


def test_recv_json_summary_counts_heaps_and_stats(receivers):
    recv, port = receivers(lambda port: [f"127.0.0.1:{port}", "-q", "--json",
                                         "--timeout", "30"])
    sent = run_tool("send", f"127.0.0.1:{port}", "--heaps", "30", "--heap-size", "10000",
                    "--packet-size", "4000", "--json")
    assert sent.returncode == 0, sent.stderr
    sent_summary = summary_json(sent.stdout)
    assert sent_summary["heaps"] == 30 and sent_summary["bytes"] == 300000
    code, out, err = recv.finish()
    assert code == 0, err
    s = summary_json(out)
    assert s["reason"] == "end of stream"
    assert (s["heaps"], s["start_heaps"]) == (30, 1)
    assert s["stats"]["heaps"] == 31
    assert s["stats"]["packets"] >= 30 * 3
    assert s["stats"]["malformed_packets"] == 0
    assert s["payload_bytes"] >= 300000


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_loopback_transfer(receivers):
    recv, port = receivers(lambda port: [f"[::1]:{port}", "-q", "--json", "--timeout", "30"],
                           "::1")
    assert "udp [::1]:" in recv.stderr
    sent = run_tool("send", f"[::1]:{port}", "--heaps", "10", "--heap-size", "2000")
    assert sent.returncode == 0, sent.stderr
    code, out, err = recv.finish()
    assert code == 0, err
    assert summary_json(out)["heaps"] == 10


def test_ipv4_multicast_loopback_transfer(receivers):
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    recv, port = receivers(lambda port: [f"{group}:{port}", "--interface", "127.0.0.1",
                                         "-q", "--json", "--timeout", "30"])
    assert f"multicast {group}:{port} on 127.0.0.1" in recv.stderr
    sent = run_tool("send", f"{group}:{port}", "--interface", "127.0.0.1", "--ttl", "1",
                    "--heaps", "10", "--heap-size", "2000")
    assert sent.returncode == 0, sent.stderr
    code, out, err = recv.finish()
    assert code == 0, err
    assert summary_json(out)["heaps"] == 10


def test_recv_count_stops_after_n_heaps(receivers):
    recv, port = receivers(lambda port: [f"127.0.0.1:{port}", "--count", "5", "-q", "--json",
                                         "--timeout", "30"])
    sent = run_tool("send", f"127.0.0.1:{port}", "--heaps", "50", "--heap-size", "1000",
                    "--rate", "1M")
    assert sent.returncode == 0, sent.stderr
    code, out, err = recv.finish()
    assert code == 0, err
    s = summary_json(out)
    assert s["heaps"] == 5
    assert s["reason"] == "received 5 heaps"


def test_recv_timeout_ends_cleanly():
    port = free_udp_port()
    started = time.monotonic()
    result = run_tool("recv", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    assert re.search(r"^stopped:\s+timeout after 0\.\d\d s$", result.stdout, re.M)
    assert re.search(r"^heaps:\s+0 received$", result.stdout, re.M)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_recv_interrupt_prints_summary_and_exits_zero(receivers, sig):
    recv, port = receivers(lambda port: [f"127.0.0.1:{port}", "--timeout", "30"])
    recv.proc.send_signal(sig)
    code, out, err = recv.finish(15)
    assert code == 0, err
    assert re.search(r"^stopped:\s+interrupted", out, re.M)
    assert "Traceback" not in err


def test_recv_stats_shows_live_lines_and_summary(receivers):
    recv, port = receivers(lambda port: [f"127.0.0.1:{port}", "--stats", "--display", "plain",
                                         "--timeout", "30"])
    # about 2.5 s of data, so at least two refreshes happen while it flows
    sent = run_tool("send", f"127.0.0.1:{port}", "--heaps", "50", "--heap-size", "4000",
                    "--rate", "80k")
    assert sent.returncode == 0, sent.stderr
    code, out, err = recv.finish()
    assert code == 0, err
    live = re.findall(r"^\s+\d+\.\d s  heaps (\d+) \(\d+/s\)  payload .+ \(.+/s\)  "
                      r"incomplete (\d+)  malformed packets (\d+)  ring waits \d+$", out, re.M)
    assert len(live) >= 2, out
    assert [int(h) for h, _, _ in live] == sorted(int(h) for h, _, _ in live)
    assert int(live[-1][0]) == 50
    assert "heap 2:" not in out  # statistics instead of heaps
    assert re.search(r"^heaps:\s+50 received", out, re.M)


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _has_rich(), reason="rich is not installed")
def test_recv_stats_with_rich_draws_a_table(capture):
    cap = capture("--heaps", "5", "--heap-size", "1000")
    result = run_tool("recv", "--file", str(cap), "--stats", "--display", "rich")
    assert result.returncode == 0, result.stderr
    assert "ring waits" in result.stdout and "per second" in result.stdout


def test_recv_stats_display_rich_without_rich_is_one_line_error(capture, tmp_path):
    # a stand-in package that fails to import hides an installed rich
    (tmp_path / "rich").mkdir()
    (tmp_path / "rich" / "__init__.py").write_text("raise ImportError('rich hidden')\n")
    env = tool_env()
    env["PYTHONPATH"] = os.pathsep.join((str(tmp_path), env["PYTHONPATH"]))
    cap = capture("--heaps", "1", "--heap-size", "100")
    result = run_tool("recv", "--file", str(cap), "--stats", "--display", "rich", env=env)
    assert_one_error_line(result, "spead2-recv", "rich")


def test_recv_stats_auto_falls_back_to_plain_when_not_a_terminal(capture):
    cap = capture("--heaps", "5", "--heap-size", "1000")
    result = run_tool("recv", "--file", str(cap), "--stats")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout
    assert re.search(r"^heaps:\s+5 received", result.stdout, re.M)


# ---------------------------------------------------------------------------
# Capture files

@pytest.fixture(scope="session")
def capture(tmp_path_factory):
    """``capture(*args)``: a raw capture (SPEAD packets back to back) written
    by ``spead2-send --output ... --format raw *args``, made once per
    argument list. (pcap and pcapng have tests of their own.)"""
    made: dict = {}

    def make(*args: str) -> Path:
        if args not in made:
            path = tmp_path_factory.mktemp("capture") / "capture.spead"
            result = run_tool("send", "--output", str(path), "--format", "raw", *args)
            assert result.returncode == 0, result.stderr
            made[args] = path
        return made[args]

    return make


def test_capture_file_is_what_recv_file_reads(capture):
    cap = capture("--heaps", "5", "--heap-size", "3000")
    result = run_tool("recv", "--file", str(cap))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "heap 1: start of stream" in out
    assert [int(t) for t in re.findall(r"^  timestamp = (\d+)$", out, re.M)] == [0, 1, 2, 3, 4]
    assert "  data = uint8[3000] [0, 1, 2, 3, 4, 5, 6, 7, ...]" in out
    assert "  data = uint8[3000] [37, 38, 39, 40, 41, 42, 43, 44, ...]" in out
    assert re.search(r"^heaps:\s+5 received", out, re.M)
    assert "file " + str(cap) in result.stderr


def test_capture_file_matches_bytes_stream_output(tmp_path):
    """--output --format raw writes what a BytesStream would, heap counters included."""
    path = tmp_path / "c.spead"
    result = run_tool("send", "--output", str(path), "--format", "raw", "--heaps", "3",
                      "--heap-size", "100", "--json")
    assert result.returncode == 0, result.stderr
    assert summary_json(result.stdout)["file_bytes"] == path.stat().st_size
    from spead2.tools.send import HeapSource
    import numpy as np
    source = HeapSource(spead2.Flavour(), 100, 1, np.dtype(np.uint8))
    stream = spead2.send.BytesStream(spead2.ThreadPool())
    stream.send_heap(source.start())
    for i in range(3):
        stream.send_heap(source.heap(i))
    stream.send_heap(source.end())
    assert path.read_bytes() == stream.getvalue()


def test_capture_through_a_pipe():
    sender = subprocess.Popen(tool_cmd("send", "--output", "-", "--heaps", "4",
                                       "--heap-size", "500", "--json"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env())
    receiver = subprocess.run(tool_cmd("recv", "--file", "-", "-q", "--json"),
                              stdin=sender.stdout, capture_output=True, text=True, timeout=30,
                              env=tool_env())
    sender.stdout.close()
    sender_err = sender.communicate(timeout=30)[1].decode()
    assert sender.returncode == 0, sender_err
    assert summary_json(sender_err)["heaps"] == 4   # the summary goes to stderr
    assert receiver.returncode == 0, receiver.stderr
    assert summary_json(receiver.stdout)["heaps"] == 4


def test_flavour_and_bug_compat_options_reach_the_wire(tmp_path):
    path = tmp_path / "swapped.spead"
    result = run_tool("send", "--output", str(path), "--format", "raw", "--heaps", "1",
                      "--heap-size", "8", "--dtype", "uint16", "--heap-address-bits", "48",
                      "--bug-compat", "swap-endian")
    assert result.returncode == 0, result.stderr
    data = path.read_bytes()
    assert data[:4] == b"\x53\x04\x02\x06"    # SPEAD-64-48
    right = run_tool("recv", "--file", str(path), "--bug-compat", "swap-endian")
    assert "  data = uint16[4] [0, 1, 2, 3]" in right.stdout, right.stdout
    assert "descriptor 0x1000 timestamp: u48 ()" in right.stdout
    wrong = run_tool("recv", "--file", str(path))
    assert "  data = uint16[4] [0, 256, 512, 768]" in wrong.stdout, wrong.stdout


def test_recv_options_mirroring_the_api_are_accepted(capture):
    cap = capture("--heaps", "5", "--heap-size", "64Ki", "--packet-size", "8972")
    result = run_tool("recv", "--file", str(cap), "--json", "-q", "--pool",
                      "--pool-lower", "1Ki", "--pool-upper", "1Mi", "--pool-max-free", "4",
                      "--pool-initial", "2", "--pool-low-water", "1", "--memcpy", "nontemporal",
                      "--max-heaps", "8", "--ring-heaps", "16", "--threads", "2",
                      "--affinity", "0", "--bug-compat", "0", "--max-heap-size", "1M")
    assert result.returncode == 0, result.stderr
    assert summary_json(result.stdout)["heaps"] == 5


def test_recv_max_heap_size_drops_larger_heaps(capture):
    cap = capture("--heaps", "5", "--heap-size", "64Ki", "--packet-size", "8972")
    result = run_tool("recv", "--file", str(cap), "--json", "-q",
                      "--max-heap-size", "1000")
    assert result.returncode == 0, result.stderr
    s = summary_json(result.stdout)
    assert s["heaps"] == 0 and s["stats"]["malformed_packets"] > 0


def test_recv_shows_long_strings_and_values_truncated(tmp_path):
    ig = spead2.send.ItemGroup()
    ig.add_item(0x2000, "label", "A long text", shape=(None,), format=[("c", 8)],
                value="x" * 500)
    import numpy as np
    ig.add_item(0x2001, "big", "A big array", shape=(100, 100), dtype=np.float32,
                value=np.full((100, 100), 0.5, np.float32))
    stream = spead2.send.BytesStream(spead2.ThreadPool())
    stream.send_heap(ig.get_heap())
    path = tmp_path / "text.spead"
    path.write_bytes(stream.getvalue())
    result = run_tool("recv", "--file", str(path), "--values", "3")
    assert result.returncode == 0, result.stderr
    assert "  big = float32[100, 100] [0.5, 0.5, 0.5, ...]" in result.stdout
    label = re.search(r"^  label = (.*)$", result.stdout, re.M).group(1)
    assert label.endswith("... (500 chars)") and len(label) < 100


def test_recv_survives_descriptors_replaced_within_one_heap(tmp_path):
    import numpy as np
    heap = spead2.send.Heap()
    heap.add_descriptor(spead2.Descriptor(0x2000, "x", "first", (), np.uint32))
    heap.add_descriptor(spead2.Descriptor(0x2001, "x", "second", (), np.uint32))
    heap.add_item(spead2.Item(0x2001, "x", "second", (), np.uint32, value=np.uint32(7)))
    stream = spead2.send.BytesStream(spead2.ThreadPool())
    stream.send_heap(heap)
    path = tmp_path / "renamed.spead"
    path.write_bytes(stream.getvalue())
    result = run_tool("recv", "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert "descriptor 0x2000: replaced by a later one" in result.stdout
    assert "  x = 7" in result.stdout


# ---------------------------------------------------------------------------
# Replay

def test_split_packets_finds_the_packets_the_library_wrote():
    from spead2.tools.send import HeapSource, split_packets
    import numpy as np
    source = HeapSource(spead2.Flavour(4, 64, 48, 0), 5000, 2, np.dtype(np.int32))
    packets = []
    for cnt, heap in enumerate([source.start(), source.heap(0), source.heap(1), source.end()],
                               start=1):
        packets += list(spead2.send.PacketGenerator(heap, cnt, 1500))
    data = b"".join(packets)
    found = list(split_packets(data))
    assert [length for _, length, _ in found] == [len(p) for p in packets]
    assert sorted({cnt for _, _, cnt in found}) == [1, 2, 3, 4]


def test_replay_sends_each_captured_packet(receivers, capture):
    cap = capture("--heaps", "8", "--heap-size", "5000", "--packet-size", "1500")
    recv, port = receivers(lambda port: [f"127.0.0.1:{port}", "-q", "--json",
                                         "--timeout", "30"])
    result = run_tool("send", "--replay", str(cap), f"127.0.0.1:{port}", "--rate", "20M",
                      "--json")
    assert result.returncode == 0, result.stderr
    replayed = summary_json(result.stdout)
    assert replayed["heaps"] == 10      # start, 8 data heaps, end
    assert replayed["bytes"] == cap.stat().st_size
    code, out, err = recv.finish()
    assert code == 0, err
    s = summary_json(out)
    assert s["reason"] == "end of stream"
    assert s["heaps"] == 8
    assert s["stats"]["packets"] == replayed["packets"]


def test_replay_to_ipv4_multicast(receivers, capture):
    cap = capture("--heaps", "3", "--heap-size", "2000")
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    recv, port = receivers(lambda port: [f"{group}:{port}", "--interface", "127.0.0.1",
                                         "-q", "--json", "--timeout", "30"])
    result = run_tool("send", "--replay", str(cap), f"{group}:{port}",
                      "--interface", "127.0.0.1", "--ttl", "1")
    assert result.returncode == 0, result.stderr
    code, out, err = recv.finish()
    assert code == 0, err
    assert summary_json(out)["heaps"] == 3


def test_replay_skips_bytes_that_are_not_packets(tmp_path, capture):
    from spead2.tools.send import split_packets
    cap = capture("--heaps", "3", "--heap-size", "2000")
    data = cap.read_bytes()
    packets = [data[offset:offset + length] for offset, length, _ in split_packets(data)]
    dirty = tmp_path / "dirty.spead"
    dirty.write_bytes(b"junk\x53\x04" + packets[0] + b"\x00" * 13 + b"".join(packets[1:]))
    result = run_tool("send", "--replay", str(dirty), "127.0.0.1:9", "--json")
    assert result.returncode == 0, result.stderr
    assert re.search(r"skipped 19 bytes", result.stderr), result.stderr
    s = summary_json(result.stdout)
    assert (s["packets"], s["heaps"], s["bytes"]) == (len(packets), 5, len(data))


def test_replay_human_summary(capture):
    cap = capture("--heaps", "3", "--heap-size", "2000")
    result = run_tool("send", "--replay", str(cap), "127.0.0.1:9")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^replayed:\s+\d+ packets of 5 heaps to 127\.0\.0\.1:9$", result.stdout,
                     re.M)


# ---------------------------------------------------------------------------
# Bench

def test_bench_finds_a_lossless_rate_and_prints_a_table():
    result = run_tool("bench", "--heap-size", "8Ki", "--heaps", "40", "--max-time", "20",
                      "--tolerance", "1", "--min-rate", "2M", "--max-rate", "8M",
                      timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    header = re.search(r"^\s+rate tried\s+heaps sent\s+received\s+lost\s+sent at\s+result",
                       out, re.M)
    assert header, out
    rows = re.findall(r"^\s+([\d.]+ [kMG]?B/s|unlimited)\s+(\d+)\s+(\d+)\s+(\d+)\s+", out, re.M)
    assert rows, out
    for _, sent, received, lost in rows:
        assert int(sent) - int(received) == int(lost)
    assert re.search(r"^highest lossless rate: ", out, re.M)


def test_bench_json():
    result = run_tool("bench", "--heap-size", "4Ki", "--heaps", "20", "--max-time", "15",
                      "--min-rate", "1M", "--max-rate", "1M", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    s = summary_json(result.stdout)
    assert len(s["trials"]) >= 1
    assert s["trials"][0]["heaps_sent"] == 20
    assert s["best_rate"] == 1e6


def test_bench_passes_try_each_rate_that_many_times():
    result = run_tool("bench", "--heap-size", "4Ki", "--heaps", "10", "--max-time", "15",
                      "--min-rate", "1M", "--max-rate", "1M", "--passes", "3", "--json",
                      timeout=120)
    assert result.returncode == 0, result.stderr
    s = summary_json(result.stdout)
    assert s["passes"] == 3
    assert s["loss_allowed"] == 0
    assert [t["rate"] for t in s["trials"]] == [1e6] * 3
    assert s["best_rate"] == 1e6
    rates = [t["send_rate"] for t in s["trials"]]
    assert s["best_send_rate"] == pytest.approx(sum(rates) / 3)


# ---------------------------------------------------------------------------
# Errors: one line, non-zero exit, no traceback

def test_recv_port_in_use():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = run_tool("recv", f"127.0.0.1:{port}", "--timeout", "5")
    assert_one_error_line(result, "spead2-recv", "in use", str(port))


def test_recv_address_not_on_this_machine():
    result = run_tool("recv", f"192.0.2.1:{free_udp_port()}", "--timeout", "5")
    assert_one_error_line(result, "spead2-recv", "cannot bind", "192.0.2.1")


def test_recv_multicast_on_a_missing_interface():
    result = run_tool("recv", f"239.255.1.2:{free_udp_port()}", "--interface", "192.0.2.1",
                      "--timeout", "5")
    assert_one_error_line(result, "spead2-recv", "multicast", "239.255.1.2")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to take the privilege away")
def test_recv_privileged_port_without_permission():
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        if int(f.read()) <= 80:
            pytest.skip("port 80 is not privileged here")
    cmd = ["setpriv", "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service",
           *tool_cmd("recv", "127.0.0.1:80", "--timeout", "5")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=tool_env())
    assert_one_error_line(result, "spead2-recv", "permission denied")


def test_send_ipv6_multicast_without_a_route():
    # IPv6 multicast does not route on lo: the kernel refuses before anything is sent
    lo = socket.if_nametoindex("lo")
    result = run_tool("send", f"[ff14::1:2]:{free_udp_port()}", "--interface", str(lo),
                      "--heaps", "1")
    assert_one_error_line(result, "spead2-send", "cannot send", "unreachable")


def test_send_multicast_on_a_missing_interface():
    result = run_tool("send", "239.255.1.2:9", "--interface", "192.0.2.1", "--heaps", "1")
    assert_one_error_line(result, "spead2-send", "cannot send to 239.255.1.2:9")


def test_send_unresolvable_address():
    result = run_tool("send", "[fe80::1%nosuchif0]:9", "--heaps", "1")
    assert_one_error_line(result, "spead2-send", "cannot resolve")


def test_send_packet_too_large_for_udp():
    result = run_tool("send", "127.0.0.1:9", "--heaps", "1", "--heap-size", "100000",
                      "--packet-size", "70000")
    assert_one_error_line(result, "spead2-send", "too long", "--packet-size")


@pytest.mark.parametrize("args, fragments", [
    (["--file", "/nonexistent/capture"], ["cannot read", "no such file"]),
    (["--file", "/"], ["cannot read", "directory"]),
], ids=["missing", "directory"])
def test_recv_unreadable_file(args, fragments):
    assert_one_error_line(run_tool("recv", *args), "spead2-recv", *fragments)


@pytest.mark.parametrize("args, fragments", [
    (["--replay", "/nonexistent/capture", "127.0.0.1:9"], ["cannot read", "no such file"]),
    (["--output", "/nonexistent/dir/capture"], ["cannot write", "no such file"]),
], ids=["replay-missing", "output-dir-missing"])
def test_send_unreadable_or_unwritable_file(args, fragments):
    assert_one_error_line(run_tool("send", *args), "spead2-send", *fragments)


@pytest.mark.parametrize("tool, args, fragments", [
    ("recv", ["99999"], ["port"]),
    ("recv", ["::1:8888"], ["brackets"]),
    ("recv", ["8888", "--memcpy", "fast"], ["--memcpy"]),
    ("recv", ["8888", "--ring-heaps", "0"], ["--ring-heaps"]),
    ("recv", ["8888", "--count", "-1"], ["--count"]),
    ("recv", ["8888", "--timeout", "soon"], ["--timeout"]),
    ("recv", ["8888", "--bug-compat", "bogus"], ["bug-compat"]),
    ("recv", ["8888", "--interface", "127.0.0.1"], ["--interface", "multicast"]),
    ("recv", ["8888", "--pool", "--pool-lower", "2M", "--pool-upper", "1M"], ["lower"]),
    ("recv", [], ["nothing to receive"]),
    ("recv", ["8888", "--file", "x"], ["not both"]),
    ("send", ["127.0.0.1:9", "--rate", "10Q"], ["--rate"]),
    ("send", ["127.0.0.1:9", "--heap-address-bits", "12"], ["--heap-address-bits"]),
    ("send", ["127.0.0.1:9", "--packet-size", "10"], ["--packet-size"]),
    ("send", ["127.0.0.1:9", "--dtype", "object"], ["--dtype"]),
    ("send", ["127.0.0.1:9", "--heap-size", "1", "--dtype", "float64"], ["--heap-size"]),
    ("send", ["127.0.0.1:9", "--ttl", "2"], ["--ttl", "multicast"]),
    ("send", ["239.1.1.1:9", "--ttl", "300"], ["--ttl"]),
    ("send", [], ["nowhere to send"]),
    ("send", ["127.0.0.1:9", "--output", "x"], ["not both"]),
    ("send", ["--output", "x", "--rate", "1M"], ["--rate"]),
    ("send", ["--replay", "x", "127.0.0.1:9", "--heap-size", "1k"], ["--heap-size"]),
    ("bench", ["--min-rate", "0"], ["--min-rate"]),
    ("bench", ["--min-rate", "10M", "--max-rate", "1M"], ["--max-rate"]),
    ("bench", ["--max-time", "-1"], ["--max-time"]),
])
def test_bad_option_values(tool, args, fragments):
    assert_one_error_line(run_tool(tool, *args), f"spead2-{tool}", *fragments)


# ---------------------------------------------------------------------------
# The demonstration

def test_demo_runs_in_bounded_time_and_loses_nothing():
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "spead2.demo", "--heaps", "100"],
                            capture_output=True, text=True, timeout=120, env=tool_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"heaps received:\s+100 of 100 \(lost 0, corrupt 0\)", result.stdout)
    assert time.monotonic() - started < 60
