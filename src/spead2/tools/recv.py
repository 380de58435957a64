"""spead2-recv: receive a SPEAD stream and show what arrives.

By default every heap is printed: its counter, the descriptors it carries and
the values of its items (arrays summarised by type, shape and first
elements). With ``--stats`` a live display of rates and losses is shown
instead, refreshed every second. Either way a summary ends the run, which
lasts until the stream stops, ``--count`` heaps have arrived, ``--timeout``
seconds have passed, or Ctrl-C.

A capture file may be pcap or pcapng (read by
:meth:`spead2.recv.Stream.add_udp_pcap_file_reader`, through ``--filter``)
or raw SPEAD packets back to back (read by
:meth:`spead2.recv.Stream.add_buffer_reader`); the content tells which.
``--capture`` records the datagrams that arrive, before any assembly,
instead of receiving a stream (see :mod:`spead2.tools._record`).

With ``--tcp`` each source is a TCP port to listen on: the stream takes one
connection there and ends when the sender closes it. The stream is built
with today's configuration (:class:`spead2.recv.StreamConfig` and
:class:`spead2.recv.RingStreamConfig`), so substreams and the delivery of
incomplete heaps (``--no-contiguous-only``) are available.
"""

import argparse
import os
import select
import sys
import tempfile
import time
from typing import IO, Any, Dict, List, Optional, Tuple, Union

import numpy as np

import spead2
import spead2.recv

from . import _record
from ._common import (BUG_COMPAT_HELP, INTERFACE_HELP, Endpoint, ToolError, add_verbosity_arg,
                      affinity_arg, bug_compat_arg, capture_format, check_multicast_options,
                      endpoint_arg, format_bytes, format_rate, make_parser,
                      multicast_interface, positive_size_arg, print_json, read_capture,
                      rt_priority_arg, run_realtime, run_tool, seconds_arg, setup_complete,
                      size_arg)

PROG = "spead2-recv"

EXAMPLES = """\
examples:
  spead2-recv 8888                          all IPv4 addresses, port 8888
  spead2-recv 127.0.0.1:8888 --count 10     stop after 10 heaps
  spead2-recv '[::1]:8888'                  IPv6
  spead2-recv 239.1.2.3:8888 --interface 10.0.0.2     IPv4 multicast on an interface
  spead2-recv '[ff14::1234]:8888' --interface eth0    IPv6 multicast (index or name)
  spead2-recv --file capture.pcap           a capture (pcap, pcapng or raw SPEAD packets)
  spead2-recv --file tcpdump.pcapng --filter 'udp dst port 8888 and src host 10.0.0.1'
  spead2-recv 8888 --stats --pool           live statistics, heaps from a memory pool
  spead2-recv --tcp 127.0.0.1:8888          listen for one TCP connection
  spead2-recv 239.1.2.3:8888 --interface 10.0.0.2 --substreams 4 --max-heaps 2
                                            heaps of 4 senders, 2 in flight from each
  spead2-recv 8888 --no-contiguous-only     show incomplete heaps instead of dropping them
  spead2-recv --capture cap.pcap 239.1.2.3:8888 --interface 10.0.0.2 --timeout 60
                                            record the datagrams (no assembly) to pcap
"""

# Stream counters shown in summaries, as named by spead2.recv.StreamStats.
STAT_FIELDS = ("packets", "batches", "heaps", "incomplete_heaps_evicted",
               "incomplete_heaps_flushed", "bad_packets", "rejected_packets",
               "duplicate_packets", "too_large_packets", "bytes", "worker_blocked",
               "log_suppressed", "direct_packets", "malformed_packets")

# Item IDs that describe the heap itself rather than carry a value.
_CONTROL_IDS = frozenset(range(spead2.NULL_ID, spead2.STREAM_CTRL_ID + 1))


def build_parser() -> argparse.ArgumentParser:
    """The command line of spead2-recv."""
    parser = make_parser(
        PROG, epilog=EXAMPLES,
        description="Receive a SPEAD stream over UDP or TCP or from a capture file, and print "
                    "its heaps' descriptors and item values, or live statistics.")
    parser.add_argument(
        "sources", nargs="*", type=endpoint_arg, metavar="[HOST:]PORT",
        help="UDP port to receive on (with --tcp, TCP port to listen on). HOST binds to that "
             "address, or, for a multicast group, joins it; IPv6 addresses go in brackets: "
             "[ADDR]:PORT. Several may be given, all feeding one stream")
    parser.add_argument("--tcp", action="store_true",
                        help="listen on the TCP ports given and take one connection on each, "
                             "instead of receiving UDP datagrams; the stream ends when a "
                             "sender closes its connection (or sends an end-of-stream heap)")
    parser.add_argument("--file", metavar="PATH",
                        help="read the packets from a capture file ('-' for standard input) "
                             "instead of UDP: pcap or pcapng (UDP datagrams, as tcpdump "
                             "writes them) or raw SPEAD packets, told apart by their content")
    parser.add_argument("--filter", metavar="EXPR",
                        help="with a pcap or pcapng --file: take only the datagrams this "
                             "tcpdump-style filter selects, e.g. 'udp dst port 8888 and vlan "
                             "100' (the language of Stream.add_udp_pcap_file_reader)")
    parser.add_argument("--capture", metavar="FILE",
                        help="record every datagram arriving on the UDP sources to FILE "
                             "(pcapng if it ends in .pcapng, else pcap with nanosecond "
                             "timestamps; '-' for standard output) instead of receiving a "
                             "stream: no assembly, kernel receive timestamps, a count per "
                             "second on stderr (-q: none); --count counts packets")
    parser.add_argument("--interface", metavar="ADDR|INDEX",
                        help=INTERFACE_HELP)

    out = parser.add_argument_group("output")
    out.add_argument("--stats", action="store_true",
                     help="show live statistics (heaps/s, bytes/s, losses, ring waits) instead "
                          "of heaps; uses rich if it is installed")
    out.add_argument("--display", choices=("auto", "rich", "plain"), default="auto",
                     help="statistics display: rich needs the rich package; auto uses it when "
                          "installed and the output is a terminal")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="do not print heaps (nor interpret their items); only the summary")
    out.add_argument("--values", type=size_arg, default=8, metavar="N",
                     help="array elements shown per value")
    out.add_argument("--json", action="store_true",
                     help="print the final summary as one line of JSON")
    add_verbosity_arg(out)

    end = parser.add_argument_group("when to stop (besides the end of the stream and Ctrl-C)")
    end.add_argument("--count", type=positive_size_arg, metavar="N",
                     help="stop after N heaps, incomplete ones included (start-of-stream "
                          "markers not counted; with --capture, N packets)")
    end.add_argument("--stop-heaps", type=positive_size_arg, default=1, metavar="N",
                     help="end the stream at the Nth end-of-stream heap rather than the "
                          "first: for N senders sharing the stream, or a sender with N "
                          "substreams (such as spead2-send with N destinations) that ends "
                          "each one")
    end.add_argument("--timeout", type=seconds_arg, metavar="SECONDS",
                     help="stop after this many seconds")

    st = parser.add_argument_group("stream (as for spead2.recv.Stream)")
    st.add_argument("--max-heaps", type=positive_size_arg, default=4, metavar="N",
                    help="heaps under assembly at once, in each substream (the reference "
                         "spead2_recv calls this --concurrent-heaps)")
    st.add_argument("--substreams", type=positive_size_arg, default=1, metavar="N",
                    help="substreams: heap counter modulo N picks one, each with its own "
                         "--max-heaps slots, so that N senders sharing the stream do not "
                         "evict each other's heaps")
    st.add_argument("--allow-out-of-order", action=argparse.BooleanOptionalAction,
                    default=True,
                    help="accept a heap's packets in any order, as the 2016 API did; with "
                         "--no-allow-out-of-order each packet must continue where the "
                         "previous one ended (StreamConfig's default), others are dropped")
    st.add_argument("--contiguous-only", action=argparse.BooleanOptionalAction,
                    default=True,
                    help="drop heaps that are missing packets; with --no-contiguous-only "
                         "they are delivered and shown as incomplete heaps, with the "
                         "payload bytes received, the heap length and the ranges that arrived")
    st.add_argument("--ring-heaps", type=positive_size_arg, default=4, metavar="N",
                    help="finished heaps waiting for this program")
    st.add_argument("--bug-compat", type=bug_compat_arg, default=0, metavar="FLAGS",
                    help=BUG_COMPAT_HELP)
    st.add_argument("--max-heap-size", type=size_arg,
                    default=spead2.recv.DEFAULT_MAX_HEAP_SIZE, metavar="BYTES",
                    help="drop heaps claiming a larger payload")
    st.add_argument("--memcpy", choices=("std", "nontemporal"), default="std",
                    help="copy from packets to heaps (nontemporal bypasses the cache)")
    st.add_argument("--threads", type=positive_size_arg, default=1, metavar="N",
                    help="worker threads for packet I/O")
    st.add_argument("--affinity", type=affinity_arg, default=[], metavar="CPUS",
                    help="CPUs for the worker threads, e.g. 0,2-3")
    st.add_argument("--rt-priority", type=rt_priority_arg, default=None, metavar="N",
                    help="run every thread of the receiver (workers and the one taking heaps, "
                         "or the capture's) under the real-time SCHED_FIFO policy at priority "
                         "N (1-99), so that they run as soon as packets arrive rather than "
                         "wait for a busy CPU; needs root, CAP_SYS_NICE or RLIMIT_RTPRIO")

    udp = parser.add_argument_group("sockets")
    udp.add_argument("--max-size", type=positive_size_arg, default=None, metavar="BYTES",
                     help=f"largest packet accepted (default "
                          f"{spead2.recv.Stream.DEFAULT_UDP_MAX_SIZE} for UDP, "
                          f"{spead2.recv.Stream.DEFAULT_TCP_MAX_SIZE} for TCP)")
    udp.add_argument("--buffer-size", type=size_arg, default=None, metavar="BYTES",
                     help=f"socket receive buffer, 0 for the OS default (default "
                          f"{spead2.recv.Stream.DEFAULT_UDP_BUFFER_SIZE} for UDP, "
                          f"{spead2.recv.Stream.DEFAULT_TCP_BUFFER_SIZE} for TCP)")

    pool = parser.add_argument_group("memory pool (spead2.MemoryPool)")
    pool.add_argument("--pool", action="store_true",
                      help="take heap memory from a pool of preallocated buffers")
    pool.add_argument("--pool-lower", type=size_arg, default="16Ki", metavar="BYTES",
                      help="smallest heap served from the pool")
    pool.add_argument("--pool-upper", type=size_arg, default="8Mi", metavar="BYTES",
                      help="size of each pooled buffer (the largest heap served)")
    pool.add_argument("--pool-max-free", type=size_arg, default=12, metavar="N",
                      help="free buffers kept at most")
    pool.add_argument("--pool-initial", type=size_arg, default=8, metavar="N",
                      help="buffers allocated up front")
    pool.add_argument("--pool-low-water", type=size_arg, default=0, metavar="N",
                      help="refill in the background when fewer buffers than this are free "
                           "(0: never)")
    return parser


# ---------------------------------------------------------------------------
# Describing items and values

def dtype_text(dtype: np.dtype) -> str:
    """A short name for a dtype: ``int8``, ``S1``, ``(float32, int8)``."""
    if dtype.fields:
        return "(" + ", ".join(dtype_text(dtype.fields[name][0])
                               for name in dtype.names) + ")"  # type: ignore[union-attr]
    if dtype.kind in "SU":
        return dtype.str[1:]
    return dtype.name


def item_type_text(item: spead2.Item) -> str:
    """Type and shape of an item's descriptor: ``int8 (1024, 2)``, ``u48 ()``."""
    if item.dtype is not None:
        kind = dtype_text(np.dtype(item.dtype))
        if item.order == "F":
            kind += " F-order"
    else:
        kind = ",".join(f"{code}{bits}" for code, bits in item.format)  # type: ignore[union-attr]
    return f"{kind} {tuple(item.shape)}"


def _element_text(value: Any, max_chars: int) -> str:
    """One element of a value, compactly."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, complex):
        return f"({value.real:.4g}{value.imag:+.4g}j)"
    if isinstance(value, (str, bytes)):
        return _truncate_repr(value, max_chars)
    if isinstance(value, (list, tuple)):
        return ("(" if isinstance(value, tuple) else "[") + ", ".join(
            _element_text(v, max_chars) for v in value) + (")" if isinstance(value, tuple) else "]")
    return _truncate_repr(value, max_chars)


def _truncate_repr(value: Any, max_chars: int) -> str:
    """``repr(value)``, cut after ``max_chars`` characters."""
    if isinstance(value, (str, bytes)) and len(value) > max_chars:
        unit = "chars" if isinstance(value, str) else "bytes"
        return f"{value[:max_chars]!r}... ({len(value)} {unit})"
    text = repr(value)
    return text if len(text) <= max_chars else text[:max_chars] + "..."


def value_text(value: Any, max_elements: int = 8, max_chars: int = 60) -> str:
    """One line summarising a received value.

    Arrays show dtype, shape and their first ``max_elements`` elements (in
    memory order of a C-ordered copy); strings longer than ``max_chars`` are
    cut.
    """
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return _element_text(value.item(), max_chars)
        head = value.reshape(-1)[:max_elements].tolist()
        body = ", ".join([_element_text(v, max_chars) for v in head]
                         + (["..."] if value.size > max_elements else []))
        shape = ", ".join(str(n) for n in value.shape)
        return f"{dtype_text(value.dtype)}[{shape}] [{body}]"
    if isinstance(value, np.generic):
        return _element_text(value.item(), max_chars)
    if isinstance(value, list):
        body = ", ".join([_element_text(v, max_chars) for v in value[:max_elements]]
                         + (["..."] if len(value) > max_elements else []))
        return f"list[{len(value)}] [{body}]"
    return _element_text(value, max_chars)


class HeapPrinter:
    """Prints each heap: counter, new descriptors and item values."""

    def __init__(self, out: IO[str], max_elements: int) -> None:
        self.out = out
        self.max_elements = max_elements
        self.item_group = spead2.ItemGroup()
        self.bad_heaps = 0

    def show(self, heap: Union[spead2.recv.Heap, spead2.recv.IncompleteHeap]) -> None:
        if isinstance(heap, spead2.recv.IncompleteHeap):
            self.show_incomplete(heap)
            return
        write = self.out.write
        raw_descriptors = heap.get_descriptors()
        try:
            updated = self.item_group.update(heap)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            self.bad_heaps += 1
            write(f"heap {heap.cnt}: cannot interpret items: {exc}\n")
            return
        unknown = sorted({raw.id for raw in heap.get_items()
                          if raw.id not in _CONTROL_IDS and raw.id not in self.item_group})
        parts = []
        if heap.is_start_of_stream():
            parts.append("start of stream")
        if raw_descriptors:
            parts.append(_plural(len(raw_descriptors), "descriptor"))
        if updated:
            parts.append(_plural(len(updated), "value"))
        if unknown:
            parts.append(_plural(len(unknown), "value") + " without descriptor ("
                         + ", ".join(f"{i:#x}" for i in unknown) + ")")
        write(f"heap {heap.cnt}: {', '.join(parts) if parts else 'no items'}\n")
        for raw in raw_descriptors:
            if raw.id not in self.item_group:
                write(f"  descriptor {raw.id:#x}: replaced by a later one with the same name\n")
                continue
            item = self.item_group[raw.id]
            description = _truncate_repr(item.description, 60)
            write(f"  descriptor {item.id:#x} {item.name}: {item_type_text(item)} {description}\n")
        for item in sorted(updated.values(), key=lambda item: item.id):
            write(f"  {item.name} = {value_text(item.value, self.max_elements)}\n")

    def show_incomplete(self, heap: spead2.recv.IncompleteHeap) -> None:
        """An incomplete heap: how much of it arrived, where, and its
        immediate items (its addressed items may lack their payload)."""
        write = self.out.write
        length = "unknown" if heap.heap_length < 0 else str(heap.heap_length)
        ranges = ", ".join(f"{start}-{end}" for start, end in heap.payload_ranges)
        write(f"heap {heap.cnt}: incomplete, {heap.received_length} of {length} bytes of "
              f"payload received{f' (bytes {ranges})' if ranges else ''}\n")
        for raw in heap.get_items():
            if raw.id in _CONTROL_IDS:
                continue
            name = self.item_group[raw.id].name if raw.id in self.item_group else f"{raw.id:#x}"
            write(f"  {name} = {raw.immediate_value} (immediate)\n")


def _plural(n: int, word: str) -> str:
    """``1 heap``, ``2 heaps``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------------------
# Statistics

class Tally:
    """What this program has taken from the stream."""

    def __init__(self) -> None:
        self.heaps = 0          # complete heaps other than bare start-of-stream markers
        self.start_heaps = 0    # start-of-stream markers
        self.incomplete = 0     # incomplete heaps delivered (--no-contiguous-only)
        self.payload_bytes = 0
        self.first: Optional[float] = None
        self.last: Optional[float] = None

    def add(self, heap: Union[spead2.recv.Heap, spead2.recv.IncompleteHeap], now: float
            ) -> bool:
        """Count ``heap``; returns whether it counts towards ``--count``."""
        if self.first is None:
            self.first = now
        self.last = now
        if isinstance(heap, spead2.recv.IncompleteHeap):
            self.incomplete += 1
            return True
        if heap.is_start_of_stream() and not heap.get_descriptors() and all(
                raw.id in _CONTROL_IDS for raw in heap.get_items()):
            self.start_heaps += 1
            return False
        self.heaps += 1
        self.payload_bytes += heap.payload_size
        return True

    @property
    def seconds(self) -> float:
        """From the first heap to the last."""
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first


class StatsLine:
    """A snapshot for the live display, with rates since the previous one."""

    def __init__(self, elapsed: float, tally: Tally, stats: Any,
                 previous: Optional["StatsLine"]) -> None:
        self.elapsed = elapsed
        self.heaps = tally.heaps
        self.payload_bytes = tally.payload_bytes
        self.packets = stats.packets
        self.incomplete = stats.incomplete_heaps_evicted + stats.incomplete_heaps_flushed
        self.malformed = stats.malformed_packets
        self.ring_waits = stats.worker_blocked
        base_time = previous.elapsed if previous else 0.0
        dt = max(elapsed - base_time, 1e-9)
        self.heap_rate = (self.heaps - (previous.heaps if previous else 0)) / dt
        self.byte_rate = (self.payload_bytes - (previous.payload_bytes if previous else 0)) / dt


class PlainStatsDisplay:
    """One line of statistics per refresh."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def start(self) -> None:
        pass

    def update(self, line: StatsLine) -> None:
        self.out.write(
            f"{line.elapsed:7.1f} s  heaps {line.heaps} ({line.heap_rate:.0f}/s)  "
            f"payload {format_bytes(line.payload_bytes)} ({format_rate(line.byte_rate)})  "
            f"incomplete {line.incomplete}  malformed packets {line.malformed}  "
            f"ring waits {line.ring_waits}\n")
        self.out.flush()

    def close(self) -> None:
        pass


class RichStatsDisplay:
    """A table redrawn in place with rich."""

    def __init__(self, out: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live
        self._console = Console(file=out)
        self._live = Live(console=self._console, auto_refresh=False, transient=False)

    def start(self) -> None:
        self._live.start()

    def update(self, line: StatsLine) -> None:
        from rich.table import Table
        table = Table(title=f"{PROG}: {line.elapsed:.0f} s", title_justify="left")
        table.add_column("", style="bold")
        table.add_column("total", justify="right")
        table.add_column("per second", justify="right")
        table.add_row("heaps", str(line.heaps), f"{line.heap_rate:.0f}")
        table.add_row("payload", format_bytes(line.payload_bytes), format_rate(line.byte_rate))
        table.add_row("packets", str(line.packets), "")
        table.add_row("incomplete heaps dropped", str(line.incomplete), "",
                      style="red" if line.incomplete else None)
        table.add_row("malformed packets", str(line.malformed), "",
                      style="red" if line.malformed else None)
        table.add_row("ring waits", str(line.ring_waits), "",
                      style="yellow" if line.ring_waits else None)
        self._live.update(table, refresh=True)

    def close(self) -> None:
        self._live.stop()


def make_stats_display(kind: str, out: IO[str]) -> Union[PlainStatsDisplay, RichStatsDisplay]:
    """The display asked for: ``rich``, ``plain``, or ``auto`` (rich when it
    is installed and ``out`` is a terminal)."""
    if kind == "plain":
        return PlainStatsDisplay(out)
    try:
        import rich  # noqa: F401
    except ImportError:
        if kind == "rich":
            raise ToolError("--display rich needs the rich package "
                            "(pip install 'spead2py[rich]')") from None
        return PlainStatsDisplay(out)
    if kind == "auto" and not out.isatty():
        return PlainStatsDisplay(out)
    return RichStatsDisplay(out)


# ---------------------------------------------------------------------------
# The stream

def make_stream(args: Any) -> spead2.recv.Stream:
    """A stream configured from the command line, with no readers yet."""
    thread_pool = spead2.ThreadPool(args.threads, args.affinity)
    allocator = None
    if args.pool:
        try:
            if args.pool_low_water:
                allocator = spead2.MemoryPool(thread_pool, args.pool_lower, args.pool_upper,
                                              args.pool_max_free, args.pool_initial,
                                              args.pool_low_water)
            else:
                allocator = spead2.MemoryPool(args.pool_lower, args.pool_upper,
                                              args.pool_max_free, args.pool_initial)
        except (ValueError, OverflowError) as exc:
            raise ToolError(f"--pool: {exc}") from None
    config = spead2.recv.StreamConfig(
        max_heaps=args.max_heaps, substreams=args.substreams, bug_compat=args.bug_compat,
        stop_on_stop_item=args.stop_heaps == 1,
        allow_out_of_order=args.allow_out_of_order, max_heap_size=args.max_heap_size,
        memcpy=(spead2.MEMCPY_NONTEMPORAL if args.memcpy == "nontemporal"
                else spead2.MEMCPY_STD))
    if allocator is not None:
        config.memory_allocator = allocator
    ring_config = spead2.recv.RingStreamConfig(
        heaps=args.ring_heaps, contiguous_only=args.contiguous_only,
        incomplete_keep_payload_ranges=not args.contiguous_only)
    return spead2.recv.Stream(thread_pool, config, ring_config)


def udp_reader_arguments(source: Endpoint, args: Any
                         ) -> Tuple[Tuple[Any, ...], Dict[str, Any], str]:
    """The arguments of :meth:`spead2.recv.Stream.add_udp_reader` (and of
    :func:`spead2.recv._udp.open_udp_socket`, which makes its socket) for
    ``source``, and a description of it."""
    check_multicast_options(source, args.interface)
    max_size = spead2.recv.Stream.DEFAULT_UDP_MAX_SIZE if args.max_size is None \
        else args.max_size
    buffer_size = spead2.recv.Stream.DEFAULT_UDP_BUFFER_SIZE if args.buffer_size is None \
        else args.buffer_size
    if source.is_multicast:
        interface = multicast_interface(source, args.interface)
        if isinstance(interface, int):
            kwargs: Dict[str, Any] = {"interface_index": interface}
            where = f" on interface {interface}" if interface else ""
        else:
            kwargs = {"interface_address": interface}
            where = f" on {interface}" if interface else ""
        return ((source.host, source.port, max_size, buffer_size), kwargs,
                f"multicast {source}{where}")
    return ((source.port, max_size, buffer_size, source.host), {},
            f"udp {source}" if source.host else f"udp port {source.port}")


def add_udp_reader(stream: spead2.recv.Stream, source: Endpoint, args: Any) -> str:
    """Add a reader for ``source``; returns a description of it."""
    positional, kwargs, description = udp_reader_arguments(source, args)
    stream.add_udp_reader(*positional, **kwargs)
    return description


def add_tcp_reader(stream: spead2.recv.Stream, source: Endpoint, args: Any) -> str:
    """Listen on ``source`` for one TCP connection; returns a description of it."""
    if source.is_multicast:
        raise ToolError(f"{source}: a multicast group cannot be used with --tcp")
    max_size = spead2.recv.Stream.DEFAULT_TCP_MAX_SIZE if args.max_size is None \
        else args.max_size
    buffer_size = spead2.recv.Stream.DEFAULT_TCP_BUFFER_SIZE if args.buffer_size is None \
        else args.buffer_size
    stream.add_tcp_reader(source.port, max_size, buffer_size, source.host)
    return f"tcp {source}" if source.host else f"tcp port {source.port}"


def add_file_reader(stream: spead2.recv.Stream, path: str, packet_filter: Optional[str],
                    spool_dir: str) -> str:
    """Add a reader for the capture file ``path`` (``-``: standard input),
    whatever its format; returns a description of it.

    A pcap or pcapng capture on standard input is first copied to a file in
    ``spool_dir``, since the pcap reader maps its file."""
    data = read_capture(path)
    fmt = capture_format(data[:4])
    if fmt == "raw":
        if packet_filter is not None:
            raise ToolError(f"--filter applies only to pcap and pcapng captures, and {path} "
                            "holds raw SPEAD packets")
        stream.add_buffer_reader(data)
        return f"file {path}"
    mapped = path
    if path == "-":
        mapped = os.path.join(spool_dir, "stdin." + fmt)
        with open(mapped, "wb") as f:
            f.write(data)
    del data    # the pcap reader maps the file itself
    return _add_pcap_reader(stream, mapped, path, fmt, packet_filter)


def _add_pcap_reader(stream: spead2.recv.Stream, path: str, name: str, fmt: str,
                     packet_filter: Optional[str]) -> str:
    try:
        stream.add_udp_pcap_file_reader(path, packet_filter or "")
    except spead2.FilterError as exc:
        raise ToolError(f"--filter: {exc}") from None
    except RuntimeError as exc:
        raise ToolError(str(exc).replace(path, name)) from None
    where = f" (filter {packet_filter!r})" if packet_filter else ""
    return f"{fmt} file {name}{where}"


class Receiver:
    """Takes heaps from a stream until it ends, showing them as asked."""

    def __init__(self, stream: spead2.recv.Stream, args: Any, out: IO[str]) -> None:
        self.stream = stream
        self.args = args
        self.out = out
        self.tally = Tally()
        self.printer = None if (args.quiet or args.stats) else HeapPrinter(out, args.values)
        self.display = make_stats_display(args.display, out) if args.stats else None
        self.reason = "end of stream"
        self.stop_heaps = 0     # end-of-stream heaps seen, with --stop-heaps above 1
        self.started = time.monotonic()

    def run(self, sources: str) -> None:
        """Announce ``sources`` on stderr, then take heaps until the end."""
        stream = self.stream
        args = self.args
        fd = stream.fd
        deadline = self.started + args.timeout if args.timeout else None
        next_refresh = self.started + 1.0
        previous: Optional[StatsLine] = None
        try:
            # in here, so that Ctrl-C as soon as this is seen still ends cleanly
            sys.stderr.write(f"{PROG}: receiving from {sources}\n")
            sys.stderr.flush()
            setup_complete()
            if self.display is not None:
                self.display.start()
            while True:
                now = time.monotonic()
                if self.display is not None and now >= next_refresh:
                    previous = StatsLine(now - self.started, self.tally, stream.stats, previous)
                    self.display.update(previous)
                    while next_refresh <= now:
                        next_refresh += 1.0
                if deadline is not None and now >= deadline:
                    self.reason = "timeout"
                    break
                try:
                    heap = stream.get_nowait()
                except spead2.Empty:
                    wait = 1.0
                    if self.display is not None:
                        wait = min(wait, next_refresh - now)
                    if deadline is not None:
                        wait = min(wait, deadline - now)
                    select.select([fd], [], [], max(wait, 0.0))
                    continue
                except spead2.Stopped:
                    break
                if args.stop_heaps > 1 and heap.is_end_of_stream():
                    # delivered because stop_on_stop_item is off: count, do not show
                    self.stop_heaps += 1
                    if self.stop_heaps >= args.stop_heaps:
                        break
                    continue
                counted = self.tally.add(heap, now)
                if self.printer is not None:
                    self.printer.show(heap)
                del heap
                if counted and args.count is not None \
                        and self.tally.heaps + self.tally.incomplete >= args.count:
                    self.reason = f"received {args.count} heaps"
                    break
        except KeyboardInterrupt:
            self.reason = "interrupted"
        finally:
            stream.stop()
            if self.display is not None:
                self.display.update(StatsLine(time.monotonic() - self.started, self.tally,
                                              stream.stats, previous))
                self.display.close()

    def summary(self) -> Dict[str, Any]:
        """What was received, as printed by ``--json``."""
        stats = self.stream.stats
        tally = self.tally
        seconds = tally.seconds
        return {
            "reason": self.reason,
            "heaps": tally.heaps,
            "start_heaps": tally.start_heaps,
            "payload_bytes": tally.payload_bytes,
            "seconds": round(seconds, 6),
            "heaps_per_second": tally.heaps / seconds if seconds > 0 else None,
            "bytes_per_second": tally.payload_bytes / seconds if seconds > 0 else None,
            "incomplete_heaps": tally.incomplete,
            "bad_heaps": self.printer.bad_heaps if self.printer is not None else 0,
            "elapsed": round(time.monotonic() - self.started, 6),
            "stats": {name: getattr(stats, name) for name in STAT_FIELDS},
        }

    def print_summary(self) -> None:
        """The summary for a person."""
        s = self.summary()
        st = s["stats"]
        write = self.out.write
        write(f"\nstopped:      {s['reason']} after {s['elapsed']:.2f} s\n")
        markers = f" (+ {_plural(s['start_heaps'], 'start-of-stream marker')})" \
            if s["start_heaps"] else ""
        write(f"heaps:        {s['heaps']} received{markers}\n")
        if s["seconds"] > 0:
            rates = (f" in {s['seconds']:.3f} s: {format_rate(s['bytes_per_second'])}, "
                     f"{s['heaps_per_second']:.0f} heaps/s")
        else:
            rates = ""
        write(f"payload:      {format_bytes(s['payload_bytes'])}{rates}\n")
        if s["bad_heaps"]:
            write(f"bad heaps:    {s['bad_heaps']} could not be interpreted\n")
        dropped = st["incomplete_heaps_evicted"] + st["incomplete_heaps_flushed"]
        if not self.args.contiguous_only:
            write(f"incomplete:   {_plural(s['incomplete_heaps'], 'heap')} delivered "
                  f"({st['incomplete_heaps_evicted']} evicted, "
                  f"{st['incomplete_heaps_flushed']} at the end)\n")
        else:
            write(f"incomplete:   {_plural(dropped, 'heap')} dropped "
                  f"({st['incomplete_heaps_evicted']} evicted, "
                  f"{st['incomplete_heaps_flushed']} at stop)\n")
        write(f"packets:      {st['packets']} ({st['malformed_packets']} malformed, "
              f"{st['duplicate_packets']} duplicate)\n")
        write(f"ring waits:   {st['worker_blocked']}\n")
        self.out.flush()


def run(args: Any) -> int:
    """Receive as the parsed command line ``args`` asks; returns the exit code."""
    if args.rt_priority is not None:
        run_realtime(args.rt_priority)
    if args.capture is not None:
        defaults = vars(build_parser().parse_args([]))     # as argparse converts them
        return _record.run_capture(args, defaults, udp_reader_arguments)
    if args.file is not None and args.sources:
        raise ToolError("give UDP ports or --file, not both (a file ends the stream when "
                        "it has been read)")
    if args.file is None and not args.sources:
        raise ToolError("nothing to receive from: give [HOST:]PORT or --file PATH")
    if args.tcp and args.file is not None:
        raise ToolError("--tcp applies to ports to listen on, not to --file")
    if args.interface is not None and (args.file is not None or args.tcp):
        raise ToolError("--interface applies only to multicast groups")
    if args.display != "auto" and not args.stats:
        raise ToolError("--display applies only with --stats")
    if args.filter is not None and args.file is None:
        raise ToolError("--filter applies only to --file (a pcap or pcapng capture)")
    stream = make_stream(args)
    described: List[str] = []
    with tempfile.TemporaryDirectory(prefix="spead2-recv-") as spool_dir:
        if args.file is not None:
            described.append(add_file_reader(stream, args.file, args.filter, spool_dir))
        else:
            add_reader = add_tcp_reader if args.tcp else add_udp_reader
            for source in args.sources:
                described.append(add_reader(stream, source, args))
        receiver = Receiver(stream, args, sys.stdout)
        receiver.run(", ".join(described))
    if args.json:
        print_json(receiver.summary())
    else:
        receiver.print_summary()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``spead2-recv``."""
    args = build_parser().parse_args(argv)
    return run_tool(PROG, lambda: run(args), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
