"""spead2-bench: the highest rate at which heaps cross UDP loopback without loss.

Each trial runs ``spead2-recv`` and ``spead2-send`` as separate processes on
this machine: the receiver counts the heaps that arrive, the sender sends a
fixed number at a given rate. A first trial sends as fast as the sender can
(or at ``--max-rate``); if anything is lost, a binary search (on a
logarithmic scale) between ``--min-rate`` and that speed narrows down the
highest rate with no loss, until the bounds are within ``--tolerance`` of
each other or ``--max-time`` is spent. With ``--passes N`` each rate is
tried N times, each time with new processes, and counts as lossless only
if every pass was; its achieved rate is then the mean of the passes'.
``--loss-allowed N`` counts a pass that lost at most N heaps as lossless.
"""

import argparse
import json
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any, Dict, List, Optional, Tuple

from ._common import (ToolError, add_verbosity_arg, format_bytes, format_rate, make_parser,
                      positive_size_arg, print_json, rate_arg, run_tool, seconds_arg,
                      setup_complete, size_arg)

PROG = "spead2-bench"

EXAMPLES = """\
examples:
  spead2-bench                                      1 MiB heaps, at most a minute
  spead2-bench --heap-size 8Ki --heaps 5000         small heaps: heaps/s matter
  spead2-bench --max-time 20 --tolerance 0.2        quicker, coarser
  spead2-bench --heaps 955 --passes 5 --loss-allowed 1 --tolerance 0.02 --max-time 600
                                                    as spead2_bench.py master judges
"""

# Start-up of a process that imports numpy and spead2, on a busy machine.
PROCESS_START_SECONDS = 10.0
# How long the receiver may take to see the end of the stream once the
# sender has finished, before it is told to stop.
DRAIN_SECONDS = 1.0
# How long a process may take to end when told to (a loaded machine can
# starve it for seconds) before it is killed.
STOP_SECONDS = 15.0
# Fewest heaps in a trial, however slow its rate.
MIN_TRIAL_HEAPS = 10


def build_parser() -> argparse.ArgumentParser:
    """The command line of spead2-bench."""
    parser = make_parser(
        PROG, epilog=EXAMPLES,
        description="Measure the highest rate at which spead2-send and spead2-recv, as "
                    "separate processes on this machine, exchange heaps over UDP loopback "
                    "without loss. Prints a table of the trials and the result.")
    parser.add_argument("--heap-size", type=positive_size_arg, default="1Mi",
                        metavar="BYTES", help="bytes of data per heap")
    parser.add_argument("--heaps", type=positive_size_arg, default=500, metavar="N",
                        help="heaps per trial (fewer for slow rates, to keep trials short)")
    parser.add_argument("--packet-size", type=positive_size_arg, default=8972, metavar="BYTES",
                        help="largest packet")
    parser.add_argument("--min-rate", type=rate_arg, default="10M", metavar="BYTES/S",
                        help="lowest rate searched")
    parser.add_argument("--max-rate", type=rate_arg, default="0", metavar="BYTES/S",
                        help="highest rate searched (0: as fast as the sender goes)")
    parser.add_argument("--tolerance", type=float, default=0.05, metavar="FRACTION",
                        help="stop when the search bounds are within this fraction")
    parser.add_argument("--passes", type=positive_size_arg, default=1, metavar="N",
                        help="trials at each rate, all of which must be lossless")
    parser.add_argument("--loss-allowed", type=size_arg, default=0, metavar="N",
                        help="heaps a trial may lose and still count as lossless "
                             "(spead2_bench.py master allows 1)")
    parser.add_argument("--max-time", type=seconds_arg, default=60.0, metavar="SECONDS",
                        help="start no trial that would end after this")
    parser.add_argument("--host", default="127.0.0.1",
                        help="loopback address to use (127.0.0.1 or ::1)")
    recv = parser.add_argument_group("receiver")
    recv.add_argument("--ring-heaps", type=positive_size_arg, default=4, metavar="N",
                      help="as spead2-recv --ring-heaps")
    recv.add_argument("--max-heaps", type=positive_size_arg, default=4, metavar="N",
                      help="as spead2-recv --max-heaps")
    recv.add_argument("--buffer-size", type=size_arg, default=None, metavar="BYTES",
                      help="as spead2-recv --buffer-size (default: its default)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="print the trials and the result as one line of JSON")
    add_verbosity_arg(out)
    return parser


class Trial:
    """One transfer at one rate."""

    def __init__(self, rate: float, heaps: int, loss_allowed: int = 0) -> None:
        self.rate = rate                # as asked of the sender; 0 = unlimited
        self.loss_allowed = loss_allowed
        self.heaps = heaps              # as asked of the sender
        self.sent = 0
        self.received = 0
        self.send_rate: Optional[float] = None   # as achieved, bytes/s of item data
        self.seconds = 0.0

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def lossless(self) -> bool:
        return self.sent > 0 and self.lost <= self.loss_allowed

    def as_dict(self) -> Dict[str, Any]:
        return {"rate": self.rate, "heaps_sent": self.sent, "heaps_received": self.received,
                "lost": self.lost, "send_rate": self.send_rate, "seconds": round(self.seconds, 3)}


class _LineCollector(threading.Thread):
    """Reads a process's stderr, keeping its lines and noticing readiness."""

    def __init__(self, stream: IO[str], ready_text: str) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.ready_text = ready_text
        self.lines: List[str] = []
        self.ready = threading.Event()

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line.rstrip("\n"))
            if self.ready_text in line:
                self.ready.set()
        self.ready.set()   # at EOF: whoever waits should look at the process

    def error_line(self) -> str:
        for line in reversed(self.lines):
            if ": error: " in line:
                return line.split(": error: ", 1)[1]
        return self.lines[-1] if self.lines else "no output"


def _last_json(text: str, who: str) -> Dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ToolError(f"{who} printed no summary")


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Bench:
    """Runs trials and the search."""

    def __init__(self, args: Any, out: IO[str]) -> None:
        self.args = args
        self.out = out
        self.started = time.monotonic()
        self.deadline = self.started + args.max_time
        self.trials: List[Trial] = []
        self.note = ""

    def address(self, port: int) -> str:
        """``HOST:PORT`` for the tools' command lines."""
        host = self.args.host
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def trial_heaps(self, rate: float) -> int:
        """Heaps for a trial at ``rate``: at most ``--heaps``, and few enough
        that the trial lasts about an eighth of ``--max-time`` (0.5-10 s)."""
        args = self.args
        if rate <= 0:
            return args.heaps
        seconds = min(max(args.max_time / 8, 0.5), 10.0)
        return max(min(args.heaps, int(rate * seconds / args.heap_size)),
                   min(args.heaps, MIN_TRIAL_HEAPS))

    def fits(self, rate: float, heaps: int) -> bool:
        """Whether the trials at a rate can finish before the deadline."""
        estimate = 2 * 1.0 + (heaps * self.args.heap_size / rate if rate > 0 else 0.0)
        return time.monotonic() + estimate * self.args.passes <= self.deadline

    def start_receiver(self) -> Tuple[subprocess.Popen, _LineCollector]:
        """spead2-recv listening on a free port (another if that one was taken)."""
        args = self.args
        for attempt in range(3):
            port = _free_port(args.host)
            cmd = [sys.executable, "-m", "spead2.tools.recv", "--quiet", "--json",
                   "--ring-heaps", str(args.ring_heaps), "--max-heaps", str(args.max_heaps),
                   "--max-size", str(max(args.packet_size, 9200))]
            if args.buffer_size is not None:
                cmd += ["--buffer-size", str(args.buffer_size)]
            cmd.append(self.address(port))
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            collector = _LineCollector(proc.stderr, "receiving from")
            collector.start()
            collector.ready.wait(PROCESS_START_SECONDS)
            if proc.poll() is None and collector.ready.is_set():
                proc.port = port  # type: ignore[attr-defined]
                return proc, collector
            _stop(proc)
            collector.join(1.0)
            error = collector.error_line()
            if "in use" not in error:
                raise ToolError(f"the receiver did not start: {error}")
        raise ToolError(f"the receiver did not start: {error}")

    def run_trial(self, rate: float, heaps: int) -> Trial:
        """Send ``heaps`` heaps at ``rate`` (0: unlimited) and count those received."""
        args = self.args
        trial = Trial(rate, heaps, args.loss_allowed)
        started = time.monotonic()
        receiver, collector = self.start_receiver()
        try:
            cmd = [sys.executable, "-m", "spead2.tools.send", "--json",
                   "--heaps", str(heaps), "--heap-size", str(args.heap_size),
                   "--packet-size", str(args.packet_size), "--rate", repr(float(rate)),
                   self.address(receiver.port)]  # type: ignore[attr-defined]
            expected = heaps * args.heap_size / rate if rate > 0 else 0.0
            timeout = PROCESS_START_SECONDS + 3 * expected + 10
            try:
                sender = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise ToolError(f"the sender did not finish within {timeout:.0f} s") from None
            if sender.returncode != 0:
                lines = sender.stderr.strip().splitlines() or ["no output"]
                raise ToolError(f"the sender failed: {lines[-1].split(': error: ', 1)[-1]}")
            sent = _last_json(sender.stdout, "the sender")
            trial.sent = sent["heaps"]
            trial.send_rate = sent["bytes_per_second"]
            try:
                receiver.wait(DRAIN_SECONDS)
            except subprocess.TimeoutExpired:
                pass   # the end-of-stream heap was lost too: stop it by hand
            _stop(receiver)
            collector.join(5.0)
            if receiver.returncode != 0:
                status = receiver.returncode
                how = (f"killed by signal {-status}" if status < 0 else f"exit status {status}")
                raise ToolError(f"the receiver failed ({how}): {collector.error_line()}")
            received = _last_json(receiver.stdout.read(), "the receiver")
            trial.received = received["heaps"]
        finally:
            _stop(receiver)
            receiver.stdout.close()
        trial.seconds = time.monotonic() - started
        self.trials.append(trial)
        self.print_row(trial)
        return trial

    def try_rate(self, rate: float, heaps: int) -> Trial:
        """``--passes`` trials at ``rate``, stopping at the first loss; the
        result is the lossy trial, or one summing the lossless ones (achieved
        rate: their mean)."""
        passes = [self.run_trial(rate, heaps)]
        while passes[-1].lossless and len(passes) < self.args.passes:
            passes.append(self.run_trial(rate, heaps))
        if len(passes) == 1 or not passes[-1].lossless:
            return passes[-1]
        total = Trial(rate, heaps, self.args.loss_allowed * len(passes))
        total.sent = sum(t.sent for t in passes)
        total.received = sum(t.received for t in passes)
        rates = [t.send_rate for t in passes if t.send_rate]
        total.send_rate = sum(rates) / len(rates) if rates else None
        total.seconds = sum(t.seconds for t in passes)
        return total

    def print_header(self) -> None:
        if self.args.json:
            return
        a = self.args
        self.out.write(f"heaps of {format_bytes(a.heap_size)} ({a.heap_size} bytes) in packets "
                       f"of at most {a.packet_size} bytes, over {a.host}\n\n")
        self.out.write(f"{'rate tried':>12}  {'heaps sent':>10}  {'received':>10}  "
                       f"{'lost':>8}  {'sent at':>12}  result\n")
        self.out.flush()

    def print_row(self, trial: Trial) -> None:
        if self.args.json:
            return
        rate = format_rate(trial.rate) if trial.rate > 0 else "unlimited"
        achieved = format_rate(trial.send_rate) if trial.send_rate else "-"
        self.out.write(f"{rate:>12}  {trial.sent:>10}  {trial.received:>10}  {trial.lost:>8}  "
                       f"{achieved:>12}  {'lossless' if trial.lossless else 'LOSS'}\n")
        self.out.flush()

    def search(self) -> Optional[Trial]:
        """Run the trials; returns the best lossless one, if any."""
        args = self.args
        first_rate = args.max_rate
        first = self.try_rate(first_rate, self.trial_heaps(first_rate))
        if first.lossless:
            self.note = ("no loss at the highest rate tried" if first_rate > 0
                         else "no loss even at the sender's full speed")
            return first
        hi = first_rate if first_rate > 0 else (first.send_rate or args.min_rate)
        lo = min(args.min_rate, hi)
        heaps = self.trial_heaps(lo)
        if not self.fits(lo, heaps):
            self.note = "out of time before trying --min-rate"
            return None
        best = self.try_rate(lo, heaps)
        if not best.lossless:
            self.note = f"heaps were lost even at --min-rate {format_rate(lo)}"
            return None
        while hi > lo * (1 + args.tolerance):
            mid = math.sqrt(lo * hi)
            heaps = self.trial_heaps(mid)
            if not self.fits(mid, heaps):
                self.note = f"--max-time reached; the answer lies in {format_rate(lo)} - " \
                            f"{format_rate(hi)}"
                break
            trial = self.try_rate(mid, heaps)
            if trial.lossless:
                lo, best = mid, trial
            else:
                hi = mid
        else:
            self.note = f"within {args.tolerance:.0%}: the next rate tried, " \
                        f"{format_rate(hi)}, lost heaps"
        return best


def _stop(proc: subprocess.Popen) -> None:
    """Ask a process to stop (as Ctrl-C would) and make sure it has.

    SIGTERM rather than SIGINT: the tools treat both alike, but a program
    started in the background by a shell inherits SIGINT ignored, and so
    would this one's children."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(args: Any) -> int:
    """Benchmark as the parsed command line ``args`` asks; returns the exit code."""
    if args.min_rate <= 0:
        raise ToolError("--min-rate must be above 0")
    if args.max_rate and args.max_rate < args.min_rate:
        raise ToolError("--max-rate must not be below --min-rate")
    if not 0 < args.tolerance < 10:
        raise ToolError("--tolerance must be a fraction above 0, e.g. 0.05")
    bench = Bench(args, sys.stdout)
    setup_complete()
    bench.print_header()
    best = bench.search()
    elapsed = time.monotonic() - bench.started
    if args.json:
        print_json({
            "heap_size": args.heap_size, "packet_size": args.packet_size,
            "passes": args.passes, "loss_allowed": args.loss_allowed,
            "trials": [t.as_dict() for t in bench.trials],
            "best_rate": best.rate if best else None,
            "best_send_rate": best.send_rate if best else None,
            "note": bench.note, "seconds": round(elapsed, 3)})
        return 0
    out = sys.stdout
    out.write("\n")
    if best is not None:
        asked = format_rate(best.rate) if best.rate > 0 else "unlimited"
        achieved = format_rate(best.send_rate) if best.send_rate else "?"
        out.write(f"highest lossless rate: {achieved} "
                  f"({best.send_rate / args.heap_size:.0f} heaps/s; rate asked {asked})\n"
                  if best.send_rate else f"highest lossless rate: {asked}\n")
    else:
        out.write("highest lossless rate: none found\n")
    trials = "1 trial" if len(bench.trials) == 1 else f"{len(bench.trials)} trials"
    out.write(f"({bench.note}; {trials} in {elapsed:.1f} s)\n")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``spead2-bench``."""
    args = build_parser().parse_args(argv)
    return run_tool(PROG, lambda: run(args), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
