"""spead2-send: send synthetic SPEAD heaps, or replay a capture.

Synthetic heaps hold a timestamp (an immediate item) and one or more numpy
arrays whose contents are a deterministic function of the heap's index, so a
receiver can check them. They go to a UDP destination (unicast or multicast,
IPv4 or IPv6) or over TCP, or with ``--output`` into a capture file: pcap or pcapng,
each packet framed as an Ethernet/IP/UDP datagram (what tcpdump and
:meth:`spead2.recv.Stream.add_udp_pcap_file_reader` read), or raw, the
packets back to back (what :meth:`spead2.recv.Stream.add_buffer_reader`
reads). ``--replay`` sends the packets of a capture file of any of these
formats as UDP datagrams, one per packet.

Several UDP destinations make a stream with one substream per destination:
data heap ``i`` goes to destination ``i % N``, and each destination gets its
own start-of-stream heap, descriptors and end-of-stream heap, so each is a
complete stream for its receiver. ``--group-mode`` sends the heaps in groups
(one heap per destination by default) with
:meth:`spead2.send.UdpStream.send_heaps`, interleaving their packets
(round-robin) or not (serial).
"""

import argparse
import errno
import logging
import mmap
import socket
import struct
import sys
import time
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

import spead2
import spead2.send
from spead2 import _capture, _net
from spead2._args import as_nonzero_unsigned, as_unsigned

from ._common import (BUG_COMPAT_HELP, INTERFACE_HELP, Endpoint, ToolError, add_verbosity_arg,
                      CAPTURE_FORMATS, affinity_arg, bug_compat_arg, capture_format,
                      check_multicast_options, describe_error, endpoint_arg, format_bytes,
                      format_rate, make_parser, multicast_interface, open_output, output_format,
                      pin_process, positive_size_arg, print_json, rate_arg, read_capture,
                      run_tool, setup_complete, size_arg)

_logger = logging.getLogger("spead2")

PROG = "spead2-send"

EXAMPLES = """\
examples:
  spead2-send 127.0.0.1:8888                            100 heaps of 64 KiB at 10 MB/s
  spead2-send 127.0.0.1:8888 --heaps 1000 --heap-size 1Mi --rate 500M --packet-size 8972
  spead2-send '[::1]:8888' --heap-address-bits 48       IPv6, SPEAD-64-48
  spead2-send 239.1.2.3:8888 --ttl 4 --interface 10.0.0.2     IPv4 multicast
  spead2-send --tcp 127.0.0.1:8888                      over TCP (spead2-recv --tcp listening)
  spead2-send 239.1.2.1:8888 239.1.2.2:8888 --interface 10.0.0.2 --group-mode round-robin
                                                        heaps spread over two groups
  spead2-send --output capture.pcap --heaps 10          write a pcap capture file
  spead2-send --output capture.pcapng --to 239.1.2.3:7148   pcapng, frames addressed to a group
  spead2-send --output - --heaps 3 | spead2-recv --file -   raw packets through a pipe
  spead2-send --replay capture.pcap 127.0.0.1:8888 --rate 10M
  spead2-send --replay tcpdump.pcap 127.0.0.1:8888 --filter 'udp dst port 7148'
"""

TIMESTAMP_ID = 0x1000
FIRST_DATA_ID = 0x1001
DEFAULT_RATE = 10e6
# Where the frames of a pcap or pcapng --output are addressed by default.
DEFAULT_TO = Endpoint("127.0.0.1", 7148)
# Distinct array contents cycled through by successive heaps: each heap's
# values are a function of its index, without computing a new array per heap.
VARIANTS = 4
GROUP_MODES = {"round-robin": spead2.send.GroupMode.ROUND_ROBIN,
               "serial": spead2.send.GroupMode.SERIAL}


def build_parser() -> argparse.ArgumentParser:
    """The command line of spead2-send."""
    parser = make_parser(
        PROG, epilog=EXAMPLES,
        description="Send synthetic SPEAD heaps over UDP or TCP or into a capture file, or "
                    "replay the packets of a capture file over UDP. Prints a summary.")
    parser.add_argument("destinations", nargs="*", type=endpoint_arg, metavar="[HOST:]PORT",
                        help="UDP destination (HOST defaults to 127.0.0.1; IPv6 addresses "
                             "in brackets: [ADDR]:PORT). Several make one substream each: "
                             "heaps go to them in turn")
    parser.add_argument("--tcp", action="store_true",
                        help="connect to the destination over TCP (one destination; a "
                             "receiver must be listening) instead of sending UDP datagrams")
    parser.add_argument("--output", metavar="FILE",
                        help="write the packets to a capture file instead of sending them: "
                             "FILE in --format, or '-' for standard output")
    parser.add_argument("--replay", metavar="FILE",
                        help="send the packets of a capture file (pcap, pcapng or raw, told "
                             "apart by their content) instead of synthetic heaps")

    files = parser.add_argument_group("capture files")
    files.add_argument("--format", choices=CAPTURE_FORMATS, default=None,
                       help="--output format: pcap or pcapng (each packet an "
                            "Ethernet/IP/UDP frame, as tcpdump reads them) or raw (the packets "
                            "back to back, as BytesStream writes them). Default: pcapng if "
                            "FILE ends in .pcapng, raw for standard output (a stream that "
                            "spead2-recv --file - reads as it arrives), pcap otherwise")
    files.add_argument("--to", type=endpoint_arg, default=None, metavar="HOST:PORT",
                       help="with a pcap or pcapng --output: the UDP destination written "
                            "in each frame (default 127.0.0.1:7148; the source is the "
                            "address this machine would send from)")
    files.add_argument("--filter", default=None, metavar="EXPR",
                       help="with --replay of a pcap or pcapng file: send only the datagrams "
                            "this tcpdump-style filter selects, e.g. 'udp dst port 7148' (the "
                            "language of spead2.recv.Stream.add_udp_pcap_file_reader)")

    heaps = parser.add_argument_group("synthetic heaps")
    heaps.add_argument("--heaps", type=size_arg, default=None, metavar="N",
                       help="data heaps to send (default 100), between a start-of-stream and "
                            "an end-of-stream heap")
    heaps.add_argument("--heap-size", type=positive_size_arg, default=None, metavar="BYTES",
                       help="bytes of array data per heap, suffixes allowed (default 64Ki)")
    heaps.add_argument("--items", type=positive_size_arg, default=None, metavar="N",
                       help="arrays per heap, sharing the heap size (default 1)")
    heaps.add_argument("--dtype", default=None, metavar="DTYPE",
                       help="numpy dtype of the arrays, e.g. uint8, int16, float32, complex64 "
                            "(default uint8)")
    heaps.add_argument("--heap-address-bits", type=int, default=None, metavar="BITS",
                       help="flavour SPEAD-64-BITS: a multiple of 8 from 8 to 56 (default 40)")
    heaps.add_argument("--bug-compat", type=bug_compat_arg, default=None, metavar="FLAGS",
                       help=BUG_COMPAT_HELP + " (default 0)")

    net = parser.add_argument_group("sending (as for spead2.send.StreamConfig and UdpStream)")
    net.add_argument("--rate", type=rate_arg, default=None, metavar="BYTES/S",
                     help="rate limit in bytes per second, e.g. 100M or 1G (0: unlimited; "
                          "default 10M, which a receiver printing every heap keeps up with)")
    net.add_argument("--packet-size", type=positive_size_arg, default=None, metavar="BYTES",
                     help="largest packet (default 1472)")
    net.add_argument("--burst-size", type=positive_size_arg, default=None, metavar="BYTES",
                     help="bytes sent at once above the rate limit (default 65536)")
    net.add_argument("--buffer-size", type=size_arg, default=None, metavar="BYTES",
                     help=f"socket send buffer, 0 for the OS default (default "
                          f"{spead2.send.UdpStream.DEFAULT_BUFFER_SIZE} for UDP, "
                          f"{spead2.send.TcpStream.DEFAULT_BUFFER_SIZE} for TCP)")
    net.add_argument("--group-mode", choices=GROUP_MODES, default=None,
                     help="send the data heaps in groups with send_heaps: round-robin "
                          "interleaves the packets of a group's heaps, serial sends them one "
                          "heap after another (default: one heap at a time with send_heap)")
    net.add_argument("--group-size", type=positive_size_arg, default=None, metavar="N",
                     help="heaps per group with --group-mode (default: one per destination)")
    net.add_argument("--ttl", type=int, default=None, metavar="N",
                     help="multicast TTL or hop limit (default 1)")
    net.add_argument("--interface", metavar="ADDR|INDEX",
                     help=INTERFACE_HELP)
    net.add_argument("--affinity", type=affinity_arg, default=None, metavar="CPUS",
                     help="run on these CPUs only (the process and every thread it starts), "
                          "e.g. 0 or 0,2-3")

    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="print the summary as one line of JSON (to stderr with --output -)")
    add_verbosity_arg(out)
    return parser


# ---------------------------------------------------------------------------
# Synthetic heaps

class HeapSource:
    """The synthetic stream: a timestamp and ``items`` arrays per heap.

    Heap ``i`` (from 0) has timestamp ``i`` and, in array ``k``, the values of
    :meth:`array`: a deterministic pattern depending on ``i % VARIANTS``.
    """

    def __init__(self, flavour: spead2.Flavour, heap_size: int, items: int,
                 dtype: np.dtype) -> None:
        self.flavour = flavour
        heap_size = as_unsigned(heap_size, "heap_size")
        items = as_nonzero_unsigned(items, "items")
        elements = heap_size // (items * dtype.itemsize)
        if elements < 1:
            raise ToolError(f"--heap-size {heap_size} is too small for {items} array(s) of "
                            f"{dtype} ({dtype.itemsize} bytes per element)")
        self.item_group = spead2.send.ItemGroup(flavour=flavour)
        hab = flavour.heap_address_bits
        self.timestamp_mask = (1 << hab) - 1
        self.item_group.add_item(TIMESTAMP_ID, "timestamp", "Index of the heap in the stream",
                                 shape=(), format=[("u", hab)])
        self.names = []
        for k in range(items):
            name = "data" if items == 1 else f"data{k}"
            self.item_group.add_item(FIRST_DATA_ID + k, name,
                                     f"Synthetic array {k}: a pattern depending on the heap index",
                                     shape=(elements,), dtype=dtype)
            self.names.append(name)
        self.variants = [[self.array(k, v, elements, dtype) for v in range(VARIANTS)]
                         for k in range(items)]
        self.payload_size = items * elements * dtype.itemsize

    @staticmethod
    def array(k: int, variant: int, elements: int, dtype: np.dtype) -> np.ndarray:
        """Contents of array ``k`` in heaps whose index is ``variant`` modulo
        :data:`VARIANTS`."""
        pattern = (np.arange(elements, dtype=np.int64) * (2 * k + 1) + 37 * variant) % 251
        if dtype.kind == "b":
            return (pattern % 2).astype(dtype)
        return pattern.astype(dtype)

    def start(self) -> spead2.send.Heap:
        return self.item_group.get_start()

    def end(self) -> spead2.send.Heap:
        return self.item_group.get_end()

    def heap(self, i: int, descriptors: str = "stale") -> spead2.send.Heap:
        """Data heap ``i``: the changed values, and the descriptors that have
        not been sent (``descriptors="all"``: every descriptor)."""
        ig = self.item_group
        ig["timestamp"].value = i & self.timestamp_mask
        for name, variants in zip(self.names, self.variants):
            ig[name].value = variants[i % VARIANTS]
        return ig.get_heap(descriptors=descriptors)


def parse_dtype(text: str) -> np.dtype:
    """The numeric numpy dtype named by ``--dtype``."""
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise ToolError(f"--dtype {text}: not a numpy dtype") from None
    if dtype.hasobject or dtype.fields or dtype.subdtype or dtype.itemsize == 0 \
            or dtype.kind not in "biufc":
        raise ToolError(f"--dtype {text}: use a numeric dtype such as uint8, int16, float32")
    return dtype


def make_flavour(args: Any) -> spead2.Flavour:
    """The flavour asked for by ``--heap-address-bits`` and ``--bug-compat``."""
    bits = 40 if args.heap_address_bits is None else args.heap_address_bits
    try:
        return spead2.Flavour(4, 64, bits, args.bug_compat or 0)
    except ValueError:
        raise ToolError(f"--heap-address-bits {bits}: must be a multiple of 8 from 8 to 56"
                        ) from None


def make_config(args: Any, rate: float) -> spead2.send.StreamConfig:
    """The stream configuration asked for on the command line, at ``rate``."""
    defaults = spead2.send.StreamConfig()
    packet_size = args.packet_size or defaults.max_packet_size
    # StreamConfig takes any size (as spead2 4.x does) and sending refuses
    # one too small: refuse it here, naming the option
    try:
        list(spead2.send.PacketGenerator(spead2.send.Heap(), 1, packet_size))
    except ValueError as exc:
        raise ToolError(f"--packet-size {args.packet_size}: {exc}") from None
    return spead2.send.StreamConfig(max_packet_size=packet_size, rate=rate,
                                    burst_size=args.burst_size or defaults.burst_size)


class Progress:
    """Counts what has been sent and times it."""

    def __init__(self) -> None:
        self.heaps = 0
        self.payload_bytes = 0
        self.start = time.monotonic()
        self.end: Optional[float] = None
        self.interrupted = False

    def finish(self) -> None:
        self.end = time.monotonic()

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start


def send_synthetic(stream: Any, source: HeapSource, heaps: int, progress: Progress,
                   target: str, substreams: int = 1,
                   group_mode: Optional[spead2.send.GroupMode] = None,
                   group_size: int = 1) -> None:
    """Send ``heaps`` data heaps to ``stream``, between a start heap and an
    end heap in each of its ``substreams``.

    Data heap ``i`` goes to substream ``i % substreams``, the first one of
    each substream with all the descriptors. With ``group_mode``, the data
    heaps go ``group_size`` at a time through ``send_heaps``.
    """
    def data_heap(i: int) -> spead2.send.Heap:
        return source.heap(i, "all" if 0 < i < substreams else "stale")

    try:
        for k in range(substreams):
            stream.send_heap(source.start(), substream_index=k)
        if group_mode is None:
            for i in range(heaps):
                stream.send_heap(data_heap(i), substream_index=i % substreams)
                progress.heaps += 1
                progress.payload_bytes += source.payload_size
        else:
            for first in range(0, heaps, group_size):
                group = spead2.send.HeapReferenceList([
                    spead2.send.HeapReference(data_heap(i), substream_index=i % substreams)
                    for i in range(first, min(first + group_size, heaps))])
                stream.send_heaps(group, group_mode)
                progress.heaps += len(group)
                progress.payload_bytes += len(group) * source.payload_size
        for k in range(substreams):
            stream.send_heap(source.end(), substream_index=k)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EMSGSIZE:
            hint = " (is --packet-size larger than the network allows?)"
        raise ToolError(f"cannot send to {target}: {describe_error(exc)}{hint}") from None


class CaptureWriter:
    """Writes heaps to a file as a :class:`spead2.send.BytesStream` would
    produce them, a batch at a time so that memory use stays bounded."""

    BATCH_BYTES = 32 * 1024 * 1024

    def __init__(self, out: IO[bytes], config: spead2.send.StreamConfig,
                 flavour: spead2.Flavour, heap_bytes: int) -> None:
        self.out = out
        self.config = config
        self.thread_pool = spead2.ThreadPool()
        self.cnt_mask = (1 << flavour.heap_address_bits) - 1
        self.next_cnt = 1
        self.bytes_written = 0
        self.batch_heaps = max(1, self.BATCH_BYTES // max(heap_bytes, 1))
        self._batch: Optional[spead2.send.BytesStream] = None
        self._in_batch = 0

    def send_heap(self, heap: spead2.send.Heap, substream_index: int = 0) -> None:
        """Append ``heap``'s packets, with heap counters 1, 2, 3... across batches."""
        if self._batch is None:
            self._batch = spead2.send.BytesStream(self.thread_pool, self.config)
            self._in_batch = 0
        self._batch.send_heap(heap, self.next_cnt & self.cnt_mask)
        self.next_cnt += 1
        self._in_batch += 1
        if self._in_batch >= self.batch_heaps:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if self._batch is not None:
            data = self._batch.getvalue()
            self._batch = None
            self.out.write(data)
            self.bytes_written += len(data)

    def close(self) -> None:
        self._flush_batch()
        self.out.flush()


class PcapCaptureWriter:
    """Writes heaps to a pcap or pcapng file (``fmt``), each packet a UDP
    datagram from ``source`` to ``destination`` (see :func:`frame_addresses`),
    stamped with the time it was written. Heap counters run 1, 2, 3... as
    for :class:`CaptureWriter`."""

    def __init__(self, out: IO[bytes], config: spead2.send.StreamConfig,
                 flavour: spead2.Flavour, fmt: str, source: Tuple[str, int],
                 destination: Tuple[str, int]) -> None:
        self.writer = _capture.PcapWriter(out, source, destination, fmt)
        self.max_packet_size = config.max_packet_size
        self.cnt_mask = (1 << flavour.heap_address_bits) - 1
        self.next_cnt = 1

    def send_heap(self, heap: spead2.send.Heap, substream_index: int = 0) -> None:
        """Append a record per packet of ``heap``."""
        cnt = self.next_cnt & self.cnt_mask
        self.next_cnt += 1
        for packet in spead2.send.PacketGenerator(heap, cnt, self.max_packet_size):
            self.writer.write(packet, time.time_ns())

    @property
    def bytes_written(self) -> int:
        return self.writer.bytes_written

    def close(self) -> None:
        self.writer.close()


def make_capture_writer(args: Any, config: spead2.send.StreamConfig, flavour: spead2.Flavour,
                        heap_bytes: int) -> Union[CaptureWriter, PcapCaptureWriter]:
    """The writer for ``--output`` in ``args.format``. A packet size that a
    UDP datagram cannot carry is refused for pcap and pcapng before the
    file is created."""
    if args.format == "raw":
        return CaptureWriter(open_output(args.output), config, flavour, heap_bytes)
    to = DEFAULT_TO if args.to is None else args.to
    limit = _capture.MAX_PAYLOAD[6 if to.is_ipv6 else 4]
    if config.max_packet_size > limit:
        raise ToolError(f"--packet-size {config.max_packet_size}: a UDP datagram over "
                        f"IPv{6 if to.is_ipv6 else 4} carries at most {limit} bytes, so the "
                        f"packets cannot be written as {args.format} frames (--format raw "
                        "can hold them)")
    source, destination = frame_addresses(to)
    return PcapCaptureWriter(open_output(args.output), config, flavour, args.format, source,
                             destination)


def frame_addresses(to: Endpoint) -> Tuple[Tuple[str, int], Tuple[str, int]]:
    """``(source, destination)`` of the frames of a pcap capture of packets
    sent to ``to``, each a (numeric address, port) pair: the destination
    resolved, and as source the address this machine would send from to it
    (the loopback address when no route leads there) with a port the OS
    picks, as for an unbound socket's first datagram. Nothing is sent."""
    family, address = _net.resolve(to.host or DEFAULT_TO.host, to.port)
    with _net.create_socket(family) as sock:
        _net.bind(sock, (_net.wildcard_address(family), 0), "an ephemeral port")
        try:
            sock.connect(address)   # chooses a route and a source address only
            host = sock.getsockname()[0]
        except OSError:
            host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        port = sock.getsockname()[1]
    return (host, port), (address[0], address[1])


def make_udp_stream(destinations: List[Endpoint], args: Any,
                    config: spead2.send.StreamConfig) -> spead2.send.UdpStream:
    """A UDP stream with a substream per destination, in the multicast form
    for groups (which all the destinations then are)."""
    thread_pool = spead2.ThreadPool()
    endpoints = [(d.host or "127.0.0.1", d.port) for d in destinations]
    buffer_size = (spead2.send.UdpStream.DEFAULT_BUFFER_SIZE if args.buffer_size is None
                   else args.buffer_size)
    if destinations[0].is_multicast:
        ttl = 1 if args.ttl is None else args.ttl
        interface = multicast_interface(destinations[0], args.interface)
        if isinstance(interface, int):
            return spead2.send.UdpStream(thread_pool, endpoints, config, buffer_size, ttl,
                                         interface_index=interface)
        if interface:
            return spead2.send.UdpStream(thread_pool, endpoints, config, buffer_size, ttl,
                                         interface_address=interface)
        return spead2.send.UdpStream(thread_pool, endpoints, config, buffer_size, ttl)
    return spead2.send.UdpStream(thread_pool, endpoints, config, buffer_size)


def make_tcp_stream(destination: Endpoint, args: Any,
                    config: spead2.send.StreamConfig) -> spead2.send.TcpStream:
    """A TCP stream connected to ``destination`` (this waits for the connection)."""
    buffer_size = (spead2.send.TcpStream.DEFAULT_BUFFER_SIZE if args.buffer_size is None
                   else args.buffer_size)
    return spead2.send.TcpStream(spead2.ThreadPool(),
                                 [(destination.host or "127.0.0.1", destination.port)],
                                 config, buffer_size)


# ---------------------------------------------------------------------------
# Replay

def packet_at(data: Union[bytes, mmap.mmap, memoryview], pos: int) -> Optional[Tuple[int, int]]:
    """``(length, heap_cnt)`` of the SPEAD packet starting at ``data[pos:]``,
    or None if no complete packet starts there.

    Only the header, HEAP_CNT and PAYLOAD_LENGTH are read: enough to find
    where the packet ends. Checking the rest is the receiver's job.
    """
    if len(data) - pos < 8:
        return None
    magic, version, pointer_bytes, address_bytes, n_items = struct.unpack_from(
        ">BBBBxxH", data, pos)
    if magic != 0x53 or version != 4 or pointer_bytes + address_bytes != 8 \
            or not 1 <= address_bytes <= 7:
        return None
    payload_pos = pos + 8 + 8 * n_items
    if payload_pos > len(data):
        return None
    bits = 8 * address_bytes
    address_mask = (1 << bits) - 1
    id_mask = (1 << (63 - bits)) - 1
    payload_length = heap_cnt = None
    for pointer in struct.unpack_from(f">{n_items}Q", data, pos + 8):
        if pointer >> 63:
            item_id = (pointer >> bits) & id_mask
            if item_id == spead2.PAYLOAD_LENGTH_ID:
                payload_length = pointer & address_mask
            elif item_id == spead2.HEAP_CNT_ID:
                heap_cnt = pointer & address_mask
    if payload_length is None or heap_cnt is None or payload_pos + payload_length > len(data):
        return None
    return payload_pos + payload_length - pos, heap_cnt


def split_packets(data: Union[bytes, mmap.mmap]) -> Iterator[Tuple[int, int, int]]:
    """``(offset, length, heap_cnt)`` of each packet in a capture.

    Bytes that do not start a packet are skipped up to the next SPEAD magic
    and version bytes, as :meth:`spead2.recv.Stream.add_buffer_reader` does.
    """
    pos = 0
    size = len(data)
    skipped = 0
    while pos < size:
        found = packet_at(data, pos)
        if found is None:
            nxt = data.find(b"\x53\x04", pos + 1)
            nxt = size if nxt < 0 else nxt
            skipped += nxt - pos
            pos = nxt
            continue
        length, heap_cnt = found
        yield pos, length, heap_cnt
        pos += length
    if skipped:
        _logger.warning(
            "skipped %d bytes of the capture that were not SPEAD packets", skipped)


def captured_packets(data: Union[bytes, mmap.mmap], path: str, packet_filter: Optional[str]
                     ) -> Iterator[Tuple[int, int, Optional[int]]]:
    """``(offset, length, heap_cnt)`` of each packet to replay from the
    capture ``data`` read from ``path``: the SPEAD packets of a raw capture
    (:func:`split_packets`), or the UDP payloads of a pcap or pcapng one
    that ``packet_filter`` selects (``heap_cnt`` is None for a payload that
    is not one SPEAD packet). A filter for a raw capture, a bad filter or a
    broken capture is a :class:`ToolError`, raised here rather than when
    the iteration starts."""
    if capture_format(data[:4]) == "raw":
        if packet_filter is not None:
            raise ToolError(f"--filter applies only to pcap and pcapng captures, and {path} "
                            "holds raw SPEAD packets")
        return split_packets(data)
    try:
        datagrams = _capture.UdpDatagrams(data, packet_filter or "")
    except spead2.FilterError as exc:
        raise ToolError(f"--filter: {exc}") from None
    except ValueError as exc:
        raise ToolError(f"{path}: {exc}") from None
    return _pcap_packets(data, datagrams, path)


def _pcap_packets(data: Union[bytes, mmap.mmap], datagrams: Any, path: str
                  ) -> Iterator[Tuple[int, int, Optional[int]]]:
    view = memoryview(data)
    try:
        for offset, length in datagrams:
            found = packet_at(view[offset:offset + length], 0)
            yield offset, length, found[1] if found is not None and found[0] == length else None
    finally:
        view.release()
        datagrams.close()
    if datagrams.error:
        _logger.warning("%s: the rest of the capture cannot be read: %s", path, datagrams.error)
    if datagrams.fragments or datagrams.truncated or datagrams.unusable:
        _logger.warning("%s: skipped %d IP fragments, %d records cut short and %d unusable "
                        "records", path, datagrams.fragments, datagrams.truncated,
                        datagrams.unusable)


def open_replay_socket(destination: Endpoint, args: Any) -> Tuple[socket.socket, Any]:
    """A UDP socket and the address to send replayed packets to, set up as
    :class:`spead2.send.UdpStream` sets up its own."""
    host = destination.host or "127.0.0.1"
    family, address = _net.resolve(host, destination.port)
    sock = _net.create_socket(family)
    try:
        _net.set_buffer_size(sock, args.buffer_size or 0, _net.SEND)
        if destination.is_multicast:
            interface = multicast_interface(destination, args.interface)
            _net.set_multicast_send(
                sock, 1 if args.ttl is None else args.ttl,
                interface_address=interface if isinstance(interface, str) and interface else None,
                interface_index=interface if isinstance(interface, int) and interface else None)
    except OSError as exc:
        sock.close()
        raise ToolError(f"cannot send to {destination}: {describe_error(exc)}") from None
    except BaseException:
        sock.close()
        raise
    return sock, address


def replay(path: str, destination: Endpoint, args: Any, progress: Progress) -> int:
    """Send each packet of the capture at ``path`` as a datagram, at
    ``args.rate`` bytes/s if given. Returns the number of packets."""
    data = read_capture(path)
    packets_in = captured_packets(data, path, args.filter)
    sock, address = open_replay_socket(destination, args)
    setup_complete()
    heap_cnts = set()
    packets = 0
    rate = args.rate
    sent = 0
    progress.start = time.monotonic()
    view = memoryview(data)
    try:
        for offset, length, heap_cnt in packets_in:
            if rate > 0:
                ahead = progress.start + sent / rate - time.monotonic()
                if ahead > 0.001:
                    time.sleep(ahead)
            try:
                sock.sendto(view[offset:offset + length], address)
            except OSError as exc:
                raise ToolError(f"cannot send the {length}-byte packet at offset {offset} to "
                                f"{destination}: {describe_error(exc)}") from None
            sent += length
            packets += 1
            if heap_cnt is not None:
                heap_cnts.add(heap_cnt)
            progress.heaps = len(heap_cnts)
            progress.payload_bytes = sent
    finally:
        view.release()
        sock.close()
    return packets


# ---------------------------------------------------------------------------

def check_options(args: Any) -> None:
    """Reject combinations of options that do not make sense together."""
    synthetic = ("heaps", "heap_size", "items", "dtype", "heap_address_bits", "bug_compat",
                 "packet_size", "burst_size")
    destinations = args.destinations
    if args.replay is not None:
        if args.output is not None:
            raise ToolError("--replay sends over UDP; it cannot be combined with --output")
        given = [name for name in synthetic + ("group_mode", "group_size")
                 if getattr(args, name) is not None]
        if args.tcp:
            given.insert(0, "tcp")
        if given:
            raise ToolError(f"--{given[0].replace('_', '-')} does not apply to --replay, which "
                            "sends the captured packets as they are")
        if len(destinations) > 1:
            raise ToolError("--replay sends to one destination")
    if args.output is not None:
        if destinations:
            raise ToolError("give a destination or --output, not both")
        for name in ("ttl", "interface", "buffer_size"):
            if getattr(args, name) is not None:
                raise ToolError(f"--{name.replace('_', '-')} applies only to UDP")
        if args.tcp:
            raise ToolError("--tcp sends to a destination; it cannot be combined with --output")
        if args.rate is not None:
            raise ToolError("--rate applies only to UDP")
        args.format = output_format(args.output, args.format)
        if args.format == "raw" and args.to is not None:
            raise ToolError("--to applies only to pcap and pcapng output: a raw capture holds "
                            "no addresses")
    elif args.format is not None or args.to is not None:
        raise ToolError(f"--{'format' if args.format is not None else 'to'} applies only to "
                        "--output")
    elif not destinations:
        raise ToolError("nowhere to send to: give HOST:PORT or --output FILE")
    elif args.tcp:
        if len(destinations) > 1:
            raise ToolError("--tcp sends to one destination (a TCP stream has one connection)")
        if destinations[0].is_multicast:
            raise ToolError(f"{destinations[0]} is a multicast group, which TCP cannot reach")
        for name in ("ttl", "interface"):
            if getattr(args, name) is not None:
                raise ToolError(f"--{name} applies only to UDP multicast")
    else:
        groups = [d for d in destinations if d.is_multicast]
        if groups and len(groups) < len(destinations):
            raise ToolError(f"{groups[0]} is a multicast group and "
                            f"{next(d for d in destinations if not d.is_multicast)} is not: "
                            "give groups only, or unicast addresses only")
        for destination in destinations:
            check_multicast_options(destination, args.interface, args.ttl)
        if args.ttl is not None and not 0 <= args.ttl <= 255:
            raise ToolError(f"--ttl {args.ttl}: must be 0-255")
    if args.group_size is not None and args.group_mode is None:
        raise ToolError("--group-size applies only with --group-mode")
    if args.filter is not None and args.replay is None:
        raise ToolError("--filter applies only to --replay")
    if args.rate is None:
        args.rate = DEFAULT_RATE if args.output is None else 0.0


def summary(progress: Progress, what: str, extra: Dict[str, Any]) -> Dict[str, Any]:
    """What was sent to ``what``, as printed by ``--json``."""
    seconds = progress.seconds
    out = {
        "heaps": progress.heaps,
        "bytes": progress.payload_bytes,
        "seconds": round(seconds, 6),
        "bytes_per_second": progress.payload_bytes / seconds if seconds > 0 else None,
        "heaps_per_second": progress.heaps / seconds if seconds > 0 else None,
        "interrupted": progress.interrupted,
        "to": what,
    }
    out.update(extra)
    return out


def print_summary(s: Dict[str, Any], out: IO[str]) -> None:
    """The summary for a person: what went where, how much, how fast."""
    write = out.write
    interrupted = " (interrupted)" if s["interrupted"] else ""
    if s["seconds"] > 0:
        timing = (f" in {s['seconds']:.3f} s: {format_rate(s['bytes_per_second'])}, "
                  f"{s['heaps_per_second']:.0f} heaps/s")
    else:
        timing = ""
    if "packets" in s:
        write(f"replayed:  {s['packets']} packets of {s['heaps']} heaps to {s['to']}"
              f"{interrupted}\n")
        write(f"bytes:     {format_bytes(s['bytes'])} ({s['bytes']} bytes){timing}\n")
    else:
        write(f"sent:      {s['heaps']} heaps to {s['to']}{interrupted}\n")
        write(f"payload:   {format_bytes(s['bytes'])} of item data ({s['bytes']} bytes)"
              f"{timing}\n")
    if "file_bytes" in s:
        write(f"written:   {s['file_bytes']} bytes\n")
    out.flush()


def run(args: Any) -> int:
    """Send as the parsed command line ``args`` asks; returns the exit code."""
    check_options(args)
    if args.affinity:
        pin_process(args.affinity)
    progress = Progress()
    extra: Dict[str, Any] = {}
    # the summary goes to stderr when the capture itself goes to stdout
    report = sys.stderr if args.output == "-" else sys.stdout
    if args.replay is not None:
        target = str(args.destinations[0])
        try:
            extra["packets"] = replay(args.replay, args.destinations[0], args, progress)
        except KeyboardInterrupt:
            progress.interrupted = True
    else:
        flavour = make_flavour(args)
        heaps = 100 if args.heaps is None else args.heaps
        source = HeapSource(flavour, 65536 if args.heap_size is None else args.heap_size,
                            args.items or 1, parse_dtype(args.dtype or "uint8"))
        substreams = 1
        if args.output is not None:
            config = make_config(args, 0.0)
            stream: Any = make_capture_writer(args, config, flavour, source.payload_size)
            target = args.output
        elif args.tcp:
            config = make_config(args, args.rate)
            target = f"tcp {args.destinations[0]}"
            try:
                stream = make_tcp_stream(args.destinations[0], args, config)
            except OSError as exc:
                raise ToolError(f"cannot connect to {target}: {describe_error(exc)}") from None
        else:
            config = make_config(args, args.rate)
            target = ", ".join(str(d) for d in args.destinations)
            substreams = len(args.destinations)
            try:
                stream = make_udp_stream(args.destinations, args, config)
            except OSError as exc:
                raise ToolError(f"cannot send to {target}: {describe_error(exc)}") from None
        extra["substreams"] = substreams
        group_mode = GROUP_MODES[args.group_mode] if args.group_mode else None
        setup_complete()
        progress.start = time.monotonic()
        try:
            send_synthetic(stream, source, heaps, progress, target, substreams, group_mode,
                           args.group_size or substreams)
        except KeyboardInterrupt:
            progress.interrupted = True
        finally:
            if isinstance(stream, (CaptureWriter, PcapCaptureWriter)):
                stream.close()
                extra["file_bytes"] = stream.bytes_written
    progress.finish()
    result = summary(progress, target, extra)
    if args.json:
        print_json(result, report)
    else:
        print_summary(result, report)
    return 130 if progress.interrupted else 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``spead2-send``."""
    args = build_parser().parse_args(argv)
    return run_tool(PROG, lambda: run(args), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
