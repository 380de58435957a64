"""Live capture to a pcap file: ``spead2-recv --capture`` against ``tcpdump -w``.

    python benchmarks/capture.py [--python PATH] [--sizes 1472 8972] [--reps 3] [--quick]

The load is ``udp_blast`` (``udp_blast.c``, compiled here with ``cc``): UDP
datagrams, each with a sequence number, sent one per datagram (no
UDP_SEGMENT trains, which tcpdump on lo would record as single frames) to
127.0.0.1 at a fixed rate. At each rate of a rising list, each capturer
records one trial, the two taking turns to go first:

- ours: ``spead2-recv --capture FILE.pcap 127.0.0.1:PORT -q --json`` (its
  socket is the one the datagrams go to);
- tcpdump: ``tcpdump -i lo -n -B 4096 -w FILE.pcap udp dst port PORT``, with
  a socket of this script bound to the port (never read: the datagrams
  would otherwise draw ICMP errors). ``-B 4096`` gives its ring the 4 MiB
  that ours gets as a socket buffer here (net.core.rmem_max).

Each capturer is started, and the trial begins once it says it is
listening. After the sender ends, both get the same second to drain what is
queued before SIGINT ends them (tcpdump writes out its buffer on exit, ours
flushes). A trial is lossless when the file holds every sequence number
sent. The figure is the highest rate the sender achieved in a trial that,
like every trial at a lower target rate, lost nothing; after two lossy
rates in a row a capturer is not tried higher. ``--reps`` sweeps give min /
median / max. On a 2-core machine the sender and the capturer compete for
the CPUs (the kernel's loopback delivery runs on the sender's), so the
sender's achieved rate caps what can be shown.

Run by ``run.py`` as the ``capture`` scenario, or alone (it prints its
section of the report).
"""

import argparse
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
CAPTURERS = ("tcpdump", "ours")
# Datagrams per second, for 1472-byte datagrams; other sizes get the same
# bytes per second (``rates_for``)
RATES = [100e3, 200e3, 300e3, 400e3, 500e3, 700e3, 1000e3, 1400e3, 2000e3]
QUICK_RATES = [100e3, 300e3, 500e3]
SETTLE = 1.0            # seconds for a capturer to drain its queue after the sender ends
START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0


def build_blaster(work: Path) -> Path:
    """Compile ``udp_blast.c`` into ``work``."""
    out = work / "udp_blast"
    subprocess.run(["cc", "-O2", "-o", str(out), str(HERE / "udp_blast.c")], check=True,
                   timeout=120)
    return out


def count_sequence_numbers(path: Path, port: int, size: int) -> int:
    """How many distinct sequence numbers the classic pcap at ``path`` holds
    in UDP datagrams of ``size`` bytes to ``port`` (Ethernet/IPv4 frames)."""
    data = path.read_bytes()
    seen = set()
    if len(data) < 24:
        return 0
    magic = struct.unpack_from("=I", data)[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), f"{path}: not a classic pcap of this host"
    pos = 24
    unpack = struct.unpack_from
    while pos + 16 <= len(data):
        caplen = unpack("=I", data, pos + 8)[0]
        frame = pos + 16
        pos = frame + caplen
        if caplen < 14 + 20 + 8 + 8 or data[frame + 12:frame + 14] != b"\x08\x00":
            continue
        ip = frame + 14
        udp = ip + (data[ip] & 0x0F) * 4
        dport, length = unpack("!2xHH", data, udp)
        if dport == port and length == size + 8 and udp + length <= pos:
            seen.add(unpack("!Q", data, udp + 8)[0])
    return len(seen)


class Capturer:
    """One capturing process, started and stopped with bounded waits."""

    def __init__(self, kind: str, python: str, path: Path, env: Dict[str, str]) -> None:
        self.kind = kind
        self.path = path
        self.sink: Optional[socket.socket] = None
        self.port = 0
        if kind == "ours":
            for _ in range(5):
                self.port = _free_port()
                self.proc = subprocess.Popen(
                    [python, "-m", "spead2.tools.recv", "--capture", str(path),
                     f"127.0.0.1:{self.port}", "-q", "--json"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                    preexec_fn=_default_sigint)
                if self._wait_for(b"capturing from"):
                    return
                self.stop()
                if b"in use" not in self.stderr:
                    break
            raise RuntimeError(f"spead2-recv --capture did not start: {self.stderr[-300:]!r}")
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.port = self.sink.getsockname()[1]
        tcpdump = shutil.which("tcpdump")
        # as root, tcpdump would change to its own user before writing the file
        user = ["-Z", "root"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [tcpdump, *user, "-i", "lo", "-n", "-B", "4096", "-w", str(path),
             f"udp dst port {self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_default_sigint)
        if not self._wait_for(b"listening on"):
            self.stop()
            raise RuntimeError(f"tcpdump did not start: {self.stderr[-300:]!r}")

    def _wait_for(self, marker: bytes) -> bool:
        self.stderr = b""
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stderr.fileno()
        os.set_blocking(fd, False)
        while marker not in self.stderr and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stderr += self.proc.stderr.read() or b""
                return False
            if select.select([fd], [], [], 0.1)[0]:
                self.stderr += os.read(fd, 4096)
        return marker in self.stderr

    def stop(self) -> Dict[str, Any]:
        """SIGINT, then wait; ours reports its summary (JSON) on stdout. (Both
        were started with SIGINT at its default, which a shell's background
        job would otherwise pass on ignored.)"""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        finally:
            if self.sink is not None:
                self.sink.close()
        self.stderr += err or b""
        report: Dict[str, Any] = {"exit": self.proc.returncode}
        if self.kind == "ours" and out:
            lines = [line for line in out.decode().splitlines() if line.startswith("{")]
            if lines:
                report["summary"] = json.loads(lines[-1])
        return report


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trial(kind: str, blaster: Path, python: str, env: Dict[str, str], work: Path, size: int,
          rate: float, seconds: float) -> Dict[str, Any]:
    """One capturer at one rate: datagrams sent, found in the file, lost."""
    count = int(min(max(rate * seconds, 20000), 2_000_000))
    path = work / f"{kind}.pcap"
    record: Dict[str, Any] = {"rate": rate, "sent": count}
    try:
        cap = Capturer(kind, python, path, env)
    except (RuntimeError, OSError) as exc:
        return dict(record, ok=False, error=str(exc))
    try:
        blast = subprocess.run([str(blaster), "127.0.0.1", str(cap.port), str(size),
                                str(count), str(rate)],
                               capture_output=True, text=True, timeout=STOP_TIMEOUT)
        time.sleep(SETTLE)  # the same grace for both to drain their queues
    finally:
        report = cap.stop()
    if blast.returncode != 0:
        return dict(record, ok=False, error=blast.stderr.strip()[-300:])
    sender = json.loads(blast.stdout)
    got = count_sequence_numbers(path, cap.port, size) if path.exists() else 0
    path.unlink(missing_ok=True)
    record.update(ok=True, achieved=sender["rate"], captured=got, lost=count - got,
                  report=report)
    return record


def rates_for(size: int, rates: List[float]) -> List[float]:
    """The target rates for ``size``-byte datagrams: as many bytes per
    second as ``rates`` of 1472-byte ones (never more datagrams)."""
    scale = min(1.0, 1472 / size)
    return [round(rate * scale, -3) for rate in rates]


def highest_lossless(trials: List[Dict[str, Any]]) -> Optional[float]:
    """The highest achieved rate of a lossless trial whose lower target
    rates were all lossless too (None if none was)."""
    best = None
    for t in sorted(trials, key=lambda t: t["rate"]):
        if not t.get("ok") or t["lost"]:
            break
        best = max(best or 0.0, t["achieved"])
    return best


def run(python: str, env: Dict[str, str], sizes: List[int], reps: int, rates: List[float],
        seconds: float, log: Callable[[str], None]) -> Dict[str, Any]:
    """Every sweep, for each datagram size: ``{size: {"sweeps": [{kind:
    [trial, ...]}]}}``; an ``error`` entry if the run could not be made."""
    if shutil.which("tcpdump") is None:
        return {"error": "tcpdump is not installed"}
    work = Path(tempfile.mkdtemp(prefix="spead2-capture-bench-"))
    try:
        blaster = build_blaster(work)
        out: Dict[str, Any] = {}
        for size in sizes:
            sweeps = []
            for rep in range(reps):
                trials: Dict[str, List[Dict[str, Any]]] = {k: [] for k in CAPTURERS}
                lossy = {k: 0 for k in CAPTURERS}
                for i, rate in enumerate(rates_for(size, rates)):
                    order = CAPTURERS if (i + rep) % 2 == 0 else CAPTURERS[::-1]
                    for kind in order:
                        if lossy[kind] >= 2 or (trials[kind] and not trials[kind][-1].get("ok")):
                            continue
                        t = trial(kind, blaster, python, env, work, size, rate, seconds)
                        log(f"  capture {size} B, sweep {rep + 1}, {kind:7} at {rate:9.0f}/s: "
                            + (f"{t['lost']} of {t['sent']} lost, sent at "
                               f"{t['achieved']:.0f}/s" if t.get("ok") else t["error"]))
                        trials[kind].append(t)
                        lossy[kind] = lossy[kind] + 1 if t.get("lost") else 0
                sweeps.append(trials)
            out[str(size)] = {"sweeps": sweeps}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _median(values: List[float]) -> Optional[float]:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _kpps(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value / 1e3:.0f}k"


def report_lines(results: Dict[str, Any]) -> List[str]:
    """The report's section: a table of the figures, then every trial."""
    if "error" in results:
        return ["Live capture (`spead2-recv --capture` vs `tcpdump -w`): not measured: "
                f"{results['error']}", ""]
    lines = ["Live capture to pcap on UDP loopback: `spead2-recv --capture` against "
             "`tcpdump -w` (`-B 4096`), load from `benchmarks/udp_blast.c` at rising rates, one "
             "datagram per send; highest rate (datagrams/s as sent) at which the file held every "
             "datagram, like every lower rate; min / median / max over the sweeps:", "",
             "| Datagram size | tcpdump -w | spead2-recv --capture | Ours/tcpdump (medians) |",
             "|---:|---:|---:|---:|"]
    details = []
    for size, res in results.items():
        sweeps = res["sweeps"]
        best = {k: [highest_lossless(sw[k]) or 0.0 for sw in sweeps] for k in CAPTURERS}
        cells = {k: (f"{_kpps(min(v))} / {_kpps(_median(v))} / {_kpps(max(v))}" if v else "n/a")
                 for k, v in best.items()}
        med = {k: _median(v) for k, v in best.items()}
        ratio = f"{med['ours'] / med['tcpdump']:.2f}" if med["tcpdump"] else "n/a"
        lines.append(f"| {size} B | {cells['tcpdump']} | {cells['ours']} | {ratio} |")
        details += ["", f"{size}-byte datagrams, per sweep: lost of sent @ rate achieved "
                    "(datagrams/s):", "", "| Target rate | tcpdump -w | spead2-recv --capture |",
                    "|---:|---|---|"]
        rates = sorted({t["rate"] for sw in sweeps for k in CAPTURERS for t in sw[k]})
        for rate in rates:
            cells = []
            for k in CAPTURERS:
                per = []
                for sw in sweeps:
                    t = next((t for t in sw[k] if t["rate"] == rate), None)
                    per.append("-" if t is None else "n/a" if not t.get("ok")
                               else f"{t['lost']}/{t['sent']} @ {_kpps(t['achieved'])}")
                cells.append("; ".join(per))
            details.append(f"| {_kpps(rate)}/s | {cells[0]} | {cells[1]} |")
    return lines + details + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that imports our spead2 (default: this one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1472, 8972],
                        help="UDP payload sizes, bytes")
    parser.add_argument("--reps", type=int, default=3, help="sweeps per size")
    parser.add_argument("--seconds", type=float, default=0.25,
                        help="seconds of traffic per trial, at the target rate")
    parser.add_argument("--quick", action="store_true", help="one sweep over fewer rates")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = run(args.python, dict(os.environ, OPENBLAS_NUM_THREADS="1"), args.sizes,
                  1 if args.quick else args.reps, QUICK_RATES if args.quick else RATES,
                  args.seconds, log)
    print("\n".join(report_lines(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
