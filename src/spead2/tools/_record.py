"""``spead2-recv --capture``: record the datagrams arriving on UDP sources.

Every datagram is written, before any SPEAD processing, to a pcap (or
pcapng) file with the kernel's receive timestamp, framed as
Ethernet/IP/UDP with its real addresses and ports. The sockets are bound,
and multicast groups joined, exactly as ``spead2-recv`` binds and joins for
a stream; the receiving and writing is :class:`spead2._capture.Capture`,
compiled code that runs without the GIL and returns here a few times a
second, so that progress can be shown and Ctrl-C or SIGTERM end the capture
with everything received written out.

Binding a port that another socket holds fails (``Address already in
use``), as for a receiver: a capture sees the datagrams of its own sockets,
not those of another program (that is tcpdump's job). Several sockets can
share a multicast group and port, so a capture can run beside a receiver of
the same group.
"""

import os
import signal
import socket
import sys
import time
from typing import IO, Any, Dict, List, Optional

from spead2 import _capture
from spead2.recv._udp import open_udp_socket

from ._common import (ToolError, describe_error, format_bytes, format_rate, output_format,
                      print_json, setup_complete)

PROG = "spead2-recv"
# How long the capture runs without the GIL before Python checks for
# signals: the bound on the delay between Ctrl-C and the end.
SLICE = 0.1
# Options of spead2-recv that configure a stream, which a capture does not
# make: giving one with --capture is an error rather than silently ignored.
STREAM_ONLY = ("file", "filter", "tcp", "stats", "display", "values", "max_heaps",
               "substreams", "stop_heaps", "allow_out_of_order", "contiguous_only", "ring_heaps",
               "bug_compat", "max_heap_size", "memcpy", "threads", "affinity", "max_size",
               "pool", "pool_lower", "pool_upper", "pool_max_free", "pool_initial",
               "pool_low_water")


def check_capture_options(args: Any, defaults: Dict[str, Any]) -> None:
    """Reject options that apply to a stream only (those not at their
    ``defaults``), and a capture without sources."""
    for name in STREAM_ONLY:
        if getattr(args, name) != defaults[name]:
            raise ToolError(f"--{name.replace('_', '-')} does not apply to --capture, which "
                            "records datagrams without assembling heaps")
    if not args.sources:
        raise ToolError("nothing to capture: give the [HOST:]PORT sources to record")


def open_output_fd(path: str) -> int:
    """A file descriptor to write the capture to (``-``: standard output)."""
    if path == "-":
        return sys.stdout.fileno()
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ToolError(f"cannot write {path}: {describe_error(OSError(exc.errno, exc.strerror))}"
                        ) from None


def kernel_drops(sockets: List[socket.socket]) -> Optional[int]:
    """The datagrams the kernel dropped for ``sockets``, from /proc/net/udp
    and udp6 (the ``drops`` column of each socket's inode), or None if that
    cannot be read. Unlike the SO_RXQ_OVFL count, which arrives with the
    next datagram received, this includes drops after the last one."""
    inodes = {os.fstat(sock.fileno()).st_ino for sock in sockets}
    total = 0
    found = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)     # the header
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and int(fields[9]) in inodes:
                        total += int(fields[-1])
                        found += 1
        except (OSError, ValueError, StopIteration):
            return None
    return total if found == len(inodes) else None


class Recorder:
    """Runs a :class:`spead2._capture.Capture` to its end, showing progress."""

    def __init__(self, capture: _capture.Capture, sockets: List[socket.socket], args: Any,
                 report: IO[str]) -> None:
        self.capture = capture
        self.sockets = sockets
        self.args = args
        self.report = report
        self.reason = "interrupted"
        self.started = time.monotonic()
        self.ended: Optional[float] = None

    def stats(self) -> Dict[str, Any]:
        """The capture's counts, with the kernel's drop count where /proc
        has it."""
        st = self.capture.stats
        drops = kernel_drops(self.sockets)
        if drops is not None:
            st["drops"] = max(st["drops"], drops)
        return st

    def run(self) -> None:
        """Capture until ``--count``, ``--timeout``, Ctrl-C or SIGTERM, then
        write out everything received."""
        args = self.args
        limit = args.count or 0
        deadline = self.started + args.timeout if args.timeout else None
        next_report = self.started + 1.0
        previous = (self.started, 0, 0)
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.reason = "timeout"
                    break
                wait = min(SLICE, next_report - now)
                if deadline is not None:
                    wait = min(wait, deadline - now)
                if self.capture.run(limit, max(wait, 0.0)) == "limit":
                    self.reason = f"captured {limit} packets"
                    break
                now = time.monotonic()
                if now >= next_report:
                    # keep the file current for a reader, a second behind at most
                    self.capture.flush()
                    if not args.quiet:
                        previous = self.show_progress(now, previous)
                    while next_report <= now:
                        next_report += 1.0
        except KeyboardInterrupt:
            self.reason = "interrupted"
        finally:
            # a second Ctrl-C must not cut the final write short
            handlers = {sig: signal.signal(sig, signal.SIG_IGN)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                self.ended = time.monotonic()
                self.capture.flush()
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)

    def show_progress(self, now: float, previous: tuple) -> tuple:
        """One line on stderr: totals and rates since the last line."""
        st = self.stats()
        then, packets, nbytes = previous
        dt = max(now - then, 1e-9)
        sys.stderr.write(
            f"{PROG}: {now - self.started:7.1f} s  {st['packets']} packets "
            f"({(st['packets'] - packets) / dt:.0f}/s)  {format_bytes(st['bytes'])} "
            f"({format_rate((st['bytes'] - nbytes) / dt)})  dropped {st['drops']}\n")
        sys.stderr.flush()
        return now, st["packets"], st["bytes"]

    def summary(self) -> Dict[str, Any]:
        """What was captured, as printed by ``--json``."""
        st = self.stats()
        seconds = (self.ended or time.monotonic()) - self.started
        return {
            "reason": self.reason,
            "packets": st["packets"],
            "bytes": st["bytes"],
            "drops": st["drops"],
            "truncated": st["truncated"],
            "file": self.args.capture,
            "file_bytes": st["file_bytes"],
            "seconds": round(seconds, 6),
        }

    def print_summary(self) -> None:
        """The summary for a person."""
        s = self.summary()
        write = self.report.write
        write(f"\nstopped:      {s['reason']} after {s['seconds']:.2f} s\n")
        write(f"captured:     {s['packets']} packets, {format_bytes(s['bytes'])} of UDP payload "
              f"({s['bytes']} bytes)\n")
        write(f"written:      {s['file']}, {s['file_bytes']} bytes\n")
        write(f"dropped:      {s['drops']} packets (socket buffer full)\n")
        if s["truncated"]:
            write(f"truncated:    {s['truncated']} packets larger than a receive slot\n")
        self.report.flush()


def run_capture(args: Any, defaults: Dict[str, Any], describe: Any) -> int:
    """``spead2-recv --capture``: ``describe(source, args)`` gives the
    arguments of ``add_udp_reader`` for a source and a description of it
    (as :func:`spead2.tools.recv.udp_reader_arguments`)."""
    check_capture_options(args, defaults)
    fmt = output_format(args.capture, None)
    if fmt == "raw":    # standard output: pcap, which tcpdump -r - reads as it comes
        fmt = "pcap"
    sockets: List[socket.socket] = []
    fd = -1
    capture = None
    try:
        described = []
        for source in args.sources:
            positional, kwargs, description = describe(source, args)
            sockets.append(open_udp_socket(*positional, **kwargs)[0])
            described.append(description)
        fd = open_output_fd(args.capture)
        try:
            capture = _capture.Capture(sockets, fd, fmt,
                                       gro=os.environ.get("SPEAD2_UDP_GRO", "1") != "0")
        except ValueError as exc:
            raise ToolError(f"cannot capture: {exc}") from None
        report = sys.stderr if args.capture == "-" else sys.stdout
        recorder = Recorder(capture, sockets, args, report)
        try:
            sys.stderr.write(f"{PROG}: capturing from {', '.join(described)} "
                             f"into {args.capture} ({fmt})\n")
            sys.stderr.flush()
            setup_complete()
            recorder.run()
        except OSError as exc:
            which = getattr(exc, "socket_index", -1)
            what = (f"cannot write {args.capture}" if which < 0
                    else f"cannot receive from {described[which]}")
            raise ToolError(f"{what}: {describe_error(OSError(exc.errno, exc.strerror))}"
                            ) from None
        if args.json:
            print_json(recorder.summary(), report)
        else:
            recorder.print_summary()
        return 0
    finally:
        if capture is not None:
            capture.close()
        if fd >= 0 and args.capture != "-":
            os.close(fd)
        for sock in sockets:
            sock.close()
