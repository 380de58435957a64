"""spead2-bench: the highest rate at which heaps cross loopback without loss.

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

Over UDP (the default) that search is the point: datagrams the receiver
cannot take in time are dropped. Over TCP (``--tcp``, or ``--transport
both`` to measure the two in one run) the sender is held back instead, so
the first trial is lossless and its rate is the answer. ``--plot FILE``
draws the trials as a PNG with matplotlib (the ``plot`` extra).
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
from typing import IO, Any, Dict, List, NamedTuple, Optional, Tuple

from ._common import (ToolError, add_verbosity_arg, affinity_arg, describe_error, format_bytes,
                      format_rate, make_parser, positive_size_arg, print_json, rate_arg,
                      rt_priority_arg, run_tool, seconds_arg, setup_complete, size_arg)

PROG = "spead2-bench"

EXAMPLES = """\
examples:
  spead2-bench                                      1 MiB heaps, at most a minute
  spead2-bench --heap-size 8Ki --heaps 5000         small heaps: heaps/s matter
  spead2-bench --max-time 20 --tolerance 0.2        quicker, coarser
  spead2-bench --tcp                                over TCP
  spead2-bench --transport both --plot sweep.png    UDP and TCP, drawn as a PNG
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
TRANSPORTS = {"udp": ("udp",), "tcp": ("tcp",), "both": ("udp", "tcp")}


def build_parser() -> argparse.ArgumentParser:
    """The command line of spead2-bench."""
    parser = make_parser(
        PROG, epilog=EXAMPLES,
        description="Measure the highest rate at which spead2-send and spead2-recv, as "
                    "separate processes on this machine, exchange heaps over UDP or TCP "
                    "loopback without loss. Prints a table of the trials and the result.")
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
    parser.add_argument("--transport", choices=tuple(TRANSPORTS), default="udp",
                        help="what to measure: UDP, TCP, or both (each given half of "
                             "--max-time)")
    parser.add_argument("--tcp", dest="transport", action="store_const", const="tcp",
                        help="short for --transport tcp")
    send = parser.add_argument_group("sender")
    send.add_argument("--send-affinity", type=affinity_arg, default=None, metavar="CPUS",
                      help="as spead2-send --affinity: the CPUs the sender runs on")
    recv = parser.add_argument_group("receiver")
    recv.add_argument("--recv-affinity", type=affinity_arg, default=None, metavar="CPUS",
                      help="as spead2-recv --affinity: the CPUs of the receiver's worker "
                           "threads")
    recv.add_argument("--recv-rt-priority", type=rt_priority_arg, default=None, metavar="N",
                      help="as spead2-recv --rt-priority: the receiver's threads real-time "
                           "(SCHED_FIFO) at priority N")
    recv.add_argument("--ring-heaps", type=positive_size_arg, default=4, metavar="N",
                      help="as spead2-recv --ring-heaps")
    recv.add_argument("--max-heaps", type=positive_size_arg, default=4, metavar="N",
                      help="as spead2-recv --max-heaps")
    recv.add_argument("--buffer-size", type=size_arg, default=None, metavar="BYTES",
                      help="as spead2-recv --buffer-size (default: its default)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="print the trials and the result as one line of JSON")
    out.add_argument("--plot", metavar="FILE",
                     help="draw the trials as a PNG: the rate that arrived and the heaps "
                          "lost against the rate sent (needs matplotlib: "
                          "pip install 'spead2py[plot]')")
    add_verbosity_arg(out)
    return parser


class Trial:
    """One transfer at one rate."""

    def __init__(self, rate: float, heaps: int, transport: str = "udp",
                 loss_allowed: int = 0) -> None:
        self.rate = rate                # as asked of the sender; 0 = unlimited
        self.loss_allowed = loss_allowed
        self.heaps = heaps              # as asked of the sender
        self.transport = transport
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

    @property
    def arrived_rate(self) -> Optional[float]:
        """Bytes/s of item data that arrived: the send rate scaled by the
        fraction of heaps received."""
        if self.send_rate is None or self.sent == 0:
            return None
        return self.send_rate * self.received / self.sent

    def as_dict(self) -> Dict[str, Any]:
        return {"transport": self.transport, "rate": self.rate, "heaps_sent": self.sent,
                "heaps_received": self.received, "lost": self.lost,
                "send_rate": self.send_rate, "arrived_rate": self.arrived_rate,
                "seconds": round(self.seconds, 3)}


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


def _free_port(host: str, transport: str = "udp") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as s:
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
        self.transport = "udp"

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
            port = _free_port(args.host, self.transport)
            cmd = [sys.executable, "-m", "spead2.tools.recv", "--quiet", "--json",
                   "--ring-heaps", str(args.ring_heaps), "--max-heaps", str(args.max_heaps),
                   "--max-size", str(max(args.packet_size, 9200))]
            if self.transport == "tcp":
                cmd.append("--tcp")
            if args.buffer_size is not None:
                cmd += ["--buffer-size", str(args.buffer_size)]
            if args.recv_affinity:
                cmd += ["--affinity", ",".join(map(str, args.recv_affinity))]
            if args.recv_rt_priority is not None:
                cmd += ["--rt-priority", str(args.recv_rt_priority)]
            cmd.append(self.address(port))
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            collector = _LineCollector(proc.stderr, "receiving from")  # type: ignore[arg-type]
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
        trial = Trial(rate, heaps, self.transport, args.loss_allowed)
        started = time.monotonic()
        receiver, collector = self.start_receiver()
        try:
            cmd = [sys.executable, "-m", "spead2.tools.send", "--json",
                   "--heaps", str(heaps), "--heap-size", str(args.heap_size),
                   "--packet-size", str(args.packet_size), "--rate", repr(float(rate)),
                   self.address(receiver.port)]  # type: ignore[attr-defined]
            if self.transport == "tcp":
                cmd.append("--tcp")
            if args.send_affinity:
                cmd += ["--affinity", ",".join(map(str, args.send_affinity))]
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
            received = _last_json(receiver.stdout.read(), "the receiver")  # type: ignore[union-attr]
            trial.received = received["heaps"]
        finally:
            _stop(receiver)
            receiver.stdout.close()  # type: ignore[union-attr]
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
        total = Trial(rate, heaps, self.transport, self.args.loss_allowed * len(passes))
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
                       f"of at most {a.packet_size} bytes, over {self.transport.upper()} "
                       f"{a.host}\n\n")
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

    def search(self, transport: str, deadline: float) -> Optional[Trial]:
        """Run the trials over ``transport`` until ``deadline`` at the latest;
        returns the best lossless one, if any (and sets :attr:`note`)."""
        self.transport = transport
        self.deadline = deadline
        self.note = ""
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


class Result(NamedTuple):
    """The outcome of the search over one transport."""

    transport: str
    best: Optional[Trial]
    note: str
    trials: List[Trial]
    seconds: float

    def as_dict(self) -> Dict[str, Any]:
        return {"best_rate": self.best.rate if self.best else None,
                "best_send_rate": self.best.send_rate if self.best else None,
                "note": self.note, "trials": len(self.trials),
                "seconds": round(self.seconds, 3)}


def print_result(result: Result, heap_size: int, out: IO[str]) -> None:
    """The best lossless rate over one transport, for a person."""
    best = result.best
    out.write("\n")
    over = f" over {result.transport.upper()}"
    if best is not None:
        asked = format_rate(best.rate) if best.rate > 0 else "unlimited"
        achieved = format_rate(best.send_rate) if best.send_rate else "?"
        out.write(f"highest lossless rate: {achieved} "
                  f"({best.send_rate / heap_size:.0f} heaps/s; rate asked {asked}){over}\n"
                  if best.send_rate else f"highest lossless rate: {asked}{over}\n")
    else:
        out.write(f"highest lossless rate: none found{over}\n")
    trials = "1 trial" if len(result.trials) == 1 else f"{len(result.trials)} trials"
    out.write(f"({result.note}; {trials} in {result.seconds:.1f} s)\n")
    out.flush()


def load_pyplot() -> Any:
    """matplotlib's pyplot, drawing off screen; a :class:`ToolError` if
    matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise ToolError("--plot needs matplotlib (pip install 'spead2py[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_trials(plt: Any, results: List[Result], args: Any, path: str) -> None:
    """Draw the trials of ``results`` into the PNG file ``path``: above, the
    rate that arrived against the rate sent; below, the heaps lost."""
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6.5),
                                      gridspec_kw={"height_ratios": [3, 2]})
    styles = {"udp": ("tab:blue", "o"), "tcp": ("tab:orange", "s")}
    all_rates = [t.send_rate / 1e6 for r in results for t in r.trials if t.send_rate]
    # on the logarithmic axis, a trial where nothing arrived sits at the bottom
    floor = min(all_rates, default=1.0) * 0.5
    for result in results:
        color, marker = styles[result.transport]
        trials = [t for t in result.trials if t.send_rate]
        if not trials:
            continue
        sent = [(t.send_rate or 0.0) / 1e6 for t in trials]
        arrived = [max((t.arrived_rate or 0.0) / 1e6, floor) for t in trials]
        lost = [100.0 * t.lost / t.sent for t in trials]
        label = result.transport.upper()
        for ax, values in ((top, arrived), (bottom, lost)):
            for lossless in (True, False):
                points = [(x, y) for x, y, t in zip(sent, values, trials)
                          if t.lossless == lossless]
                if not points:
                    continue
                xs, ys = zip(*points)
                if lossless:
                    ax.scatter(xs, ys, color=color, marker=marker, label=f"{label}, lossless")
                else:
                    ax.scatter(xs, ys, facecolors="none", edgecolors=color, marker=marker,
                               label=f"{label}, heaps lost")
        for n, (x, y) in enumerate(zip(sent, arrived), 1):
            top.annotate(str(n), (x, y), textcoords="offset points", xytext=(5, 5),
                         fontsize=8, color=color)
        if result.best is not None and result.best.send_rate:
            top.axvline(result.best.send_rate / 1e6, color=color, linestyle="--",
                        linewidth=1, label=f"{label}: best lossless, "
                                           f"{format_rate(result.best.send_rate)}")
    if all_rates:
        span = [min(all_rates) * 0.8, max(all_rates) * 1.25]
        top.plot(span, span, color="grey", linestyle=":", linewidth=1, label="all arrived")
        top.set_xscale("log")
        top.set_yscale("log")
    top.set_ylabel("arrived (MB/s of item data)")
    top.legend(fontsize=8, loc="upper left")
    top.grid(True, which="both", alpha=0.3)
    top.set_title(f"spead2-bench: heaps of {format_bytes(args.heap_size)} in packets of at "
                  f"most {args.packet_size} bytes, {args.host}\n(numbers: order of the trials)",
                  fontsize=10)
    bottom.set_xlabel("sent (MB/s of item data)")
    bottom.set_ylabel("heaps lost (%)")
    bottom.grid(True, which="both", alpha=0.3)
    bottom.set_ylim(bottom=-5, top=105)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise ToolError(f"cannot write {path}: {describe_error(exc)}") from None
    finally:
        plt.close(fig)


def run(args: Any) -> int:
    """Benchmark as the parsed command line ``args`` asks; returns the exit code."""
    if args.min_rate <= 0:
        raise ToolError("--min-rate must be above 0")
    if args.max_rate and args.max_rate < args.min_rate:
        raise ToolError("--max-rate must not be below --min-rate")
    if not 0 < args.tolerance < 10:
        raise ToolError("--tolerance must be a fraction above 0, e.g. 0.05")
    plt = load_pyplot() if args.plot is not None else None
    bench = Bench(args, sys.stdout)
    setup_complete()
    transports = TRANSPORTS[args.transport]
    results: List[Result] = []
    for n, transport in enumerate(transports, 1):
        started = time.monotonic()
        first_trial = len(bench.trials)
        # each transport gets its share of what is left, the last one all of it
        left = bench.started + args.max_time - started
        deadline = started + left / (len(transports) - n + 1)
        bench.transport = transport
        if n > 1 and not args.json:
            bench.out.write("\n")
        bench.print_header()
        best = bench.search(transport, deadline)
        results.append(Result(transport, best, bench.note, bench.trials[first_trial:],
                              time.monotonic() - started))
        if not args.json:
            print_result(results[-1], args.heap_size, bench.out)
    if plt is not None:
        plot_trials(plt, results, args, args.plot)
    elapsed = time.monotonic() - bench.started
    if args.json:
        first = results[0]
        print_json({
            "heap_size": args.heap_size, "packet_size": args.packet_size,
            "transport": args.transport,
            "passes": args.passes, "loss_allowed": args.loss_allowed,
            "trials": [t.as_dict() for t in bench.trials],
            "best_rate": first.best.rate if first.best else None,
            "best_send_rate": first.best.send_rate if first.best else None,
            "note": first.note,
            "results": {r.transport: r.as_dict() for r in results},
            "plot": args.plot, "seconds": round(elapsed, 3)})
    elif args.plot is not None:
        bench.out.write(f"\nplot: {args.plot}\n")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``spead2-bench``."""
    args = build_parser().parse_args(argv)
    return run_tool(PROG, lambda: run(args), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
