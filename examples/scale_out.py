#!/usr/bin/env python3
"""Scale-out over multicast: one sender spreads heaps over four groups, and
four receivers, one per group, each take their share.

A stream too fast for one receiving machine is split by heap: the sender
has one substream per multicast group (a :class:`spead2.send.UdpStream`
with several endpoints) and sends its heaps in turn to each, four at a time
with :meth:`~spead2.send.UdpStream.send_heaps` in
:attr:`~spead2.send.GroupMode.ROUND_ROBIN` order, so the four heaps of a
group leave interleaved, packet by packet. Each receiver joins one group,
as each of four machines would, and gets every fourth heap.

Every heap carries its index and a payload that the index determines, so
each receiver checks what it got; the summary checks that every heap
arrived exactly once, and the exit status is 1 if one did not.

Run without arguments, the script plays every part on this machine over
loopback: it starts four receivers (this script with ``--role receiver``)
as separate processes, waits until they have joined their groups, sends,
and collects their reports. On real hosts, start one receiver per host::

    scale_out.py --role receiver --index 2 --group 239.10.0.3 --port 7148 --interface 10.0.0.3

and the sender with ``--role sender --groups 239.10.0.1,...`` and its own
``--interface``. See docs/scale-out.rst.
"""

import argparse
import json
import logging
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, Dict, List, Optional

import numpy as np

import spead2
import spead2.recv
import spead2.send

logger = logging.getLogger("spead2")

INDEX_ID = 0x1000
PAYLOAD_ID = 0x1001
RESULT_PREFIX = "RESULT "
READY_LINE = "ready"


def payload(index: int, size: int) -> np.ndarray:
    """The payload of heap ``index``: bytes that no other index produces."""
    return np.random.default_rng(index).integers(0, 256, size, dtype=np.uint8)


def default_groups(base: str, count: int) -> List[str]:
    """``count`` consecutive IPv4 multicast addresses from ``base``."""
    first = int.from_bytes(socket.inet_aton(base), "big")
    return [socket.inet_ntoa((first + k).to_bytes(4, "big")) for k in range(count)]


# ---------------------------------------------------------------------------
# The sender

def make_item_group(payload_size: int) -> spead2.send.ItemGroup:
    ig = spead2.send.ItemGroup()
    ig.add_item(INDEX_ID, "index", "Position of the heap in the whole stream",
                shape=(), format=[("u", 40)])
    ig.add_item(PAYLOAD_ID, "payload", "Bytes determined by the index",
                shape=(payload_size,), dtype=np.uint8)
    return ig


def send(groups: List[str], port: int, args: argparse.Namespace) -> Dict[str, Any]:
    """Send ``args.heaps`` heaps, heap ``i`` to ``groups[i % len(groups)]``,
    then an end-of-stream heap to each group. Returns what was sent."""
    n = len(groups)
    config = spead2.send.StreamConfig(max_packet_size=args.packet_size, rate=args.rate,
                                      max_heaps=2 * n)
    stream = spead2.send.UdpStream(spead2.ThreadPool(), [(g, port) for g in groups], config,
                                   args.send_buffer, args.ttl,
                                   interface_address=args.interface)
    ig = make_item_group(args.payload_size)
    indices = [i for i in range(args.heaps) if i not in args.omit] + list(args.repeat)
    described = set()     # substreams whose receiver has had the descriptors
    started = time.monotonic()
    sent_bytes = 0
    for first in range(0, len(indices), n):
        refs = []
        for i in indices[first:first + n]:
            ig["index"].value = i
            ig["payload"].value = payload(i, args.payload_size)
            # the first heap of each substream carries the descriptors
            heap = ig.get_heap(descriptors="stale" if i % n in described else "all",
                               data="all")
            described.add(i % n)
            refs.append(spead2.send.HeapReference(heap, substream_index=i % n))
        sent_bytes += stream.send_heaps(spead2.send.HeapReferenceList(refs),
                                        spead2.send.GroupMode.ROUND_ROBIN)
    for k in range(n):
        stream.send_heap(ig.get_end(), substream_index=k)
    seconds = time.monotonic() - started
    return {"heaps": len(indices), "bytes": sent_bytes, "seconds": seconds}


# ---------------------------------------------------------------------------
# A receiver

def receive(args: argparse.Namespace) -> Dict[str, Any]:
    """Join ``args.group``, take heaps until the end-of-stream heap (or
    ``args.timeout``), and check each one. Prints ``ready`` once joined."""
    k, n = args.index, args.receivers
    config = spead2.recv.StreamConfig(max_heaps=4)
    stream = spead2.recv.Stream(spead2.ThreadPool(), config,
                                spead2.recv.RingStreamConfig(heaps=64))
    stream.add_udp_reader(args.group, args.port, spead2.recv.Stream.DEFAULT_UDP_MAX_SIZE,
                          args.recv_buffer, interface_address=args.interface)
    print(READY_LINE, flush=True)
    ig = spead2.ItemGroup()
    seen: Counter = Counter()
    bad: List[int] = []
    deadline = time.monotonic() + args.timeout
    ended = "end of stream"
    while True:
        try:
            heap = stream.get_nowait()
        except spead2.Empty:
            left = deadline - time.monotonic()
            if left <= 0:
                ended = "timeout"
                break
            select.select([stream.fd], [], [], min(left, 0.5))
            continue
        except spead2.Stopped:
            break
        updated = ig.update(heap)
        if "index" not in updated:
            continue
        i = int(updated["index"].value)
        seen[i] += 1
        if i % n != k or not np.array_equal(updated["payload"].value,
                                            payload(i, args.payload_size)):
            bad.append(i)
    stream.stop()
    stats = stream.stats
    expected = set(range(k, args.heaps, n))
    return {
        "index": k, "group": args.group, "ended": ended,
        "received": sorted(seen),
        "expected": len(expected),
        "lost": sorted(expected - set(seen)),
        "duplicates": sorted(i for i, c in seen.items() if c > 1),
        "bad": sorted(set(bad)),
        "incomplete": stats.incomplete_heaps_evicted + stats.incomplete_heaps_flushed,
        "packets": stats.packets,
    }


def describe_share(r: Dict[str, Any]) -> str:
    """One line: what a receiver got and what it lacked."""
    got = r["received"]
    shown = ", ".join(map(str, got[:3])) + (f", ... {got[-1]}" if len(got) > 3 else "")
    problems = [f"{len(r[key])} {key}" for key in ("lost", "duplicates", "bad") if r[key]]
    return (f"receiver {r['index']} ({r['group']}): {len(got)} of {r['expected']} heaps "
            f"[{shown}], lost {len(r['lost'])}, duplicates {len(r['duplicates'])}, "
            f"bad {len(r['bad'])}, incomplete {r['incomplete']}, {r['packets']} packets, "
            f"{r['ended']}" + (f"  <-- {', '.join(problems)}" if problems else ""))


# ---------------------------------------------------------------------------
# Everything on this machine

class ReceiverProcess:
    """This script with ``--role receiver``, its stdout read by a thread."""

    def __init__(self, index: int, group: str, port: int, args: argparse.Namespace) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--role", "receiver",
               "--index", str(index), "--receivers", str(args.receivers),
               "--group", group, "--port", str(port), "--interface", args.interface,
               "--heaps", str(args.heaps), "--payload-size", str(args.payload_size),
               "--recv-buffer", str(args.recv_buffer), "--timeout", str(args.timeout)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, deadline: float) -> Optional[str]:
        """The next line, or None at the end of the output or the deadline."""
        try:
            return self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            return None

    def result(self, deadline: float) -> Optional[Dict[str, Any]]:
        """The receiver's report, its other lines passed through."""
        while True:
            line = self.next_line(deadline)
            if line is None:
                return None
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX):])
            print(line, flush=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_all(args: argparse.Namespace) -> int:
    """Start the receivers, send, collect the reports, and judge."""
    groups = args.groups or default_groups(args.base_group, args.receivers)
    port = args.port or free_port()
    started = time.monotonic()
    receivers = [ReceiverProcess(k, g, port, args) for k, g in enumerate(groups)]
    try:
        startup_deadline = time.monotonic() + args.startup_timeout
        for k, r in enumerate(receivers):
            line = r.next_line(startup_deadline)
            if line != READY_LINE:
                print(f"receiver {k} ({groups[k]}:{port}) did not start"
                      + (f": {line}" if line else ""), file=sys.stderr)
                return 2
        print(f"{len(groups)} receivers joined {', '.join(groups)} (port {port}) on "
              f"{args.interface} in {time.monotonic() - started:.1f} s", flush=True)
        sent = send(groups, port, args)
        print(f"sent {sent['heaps']} heaps ({sent['bytes']} bytes) in {sent['seconds']:.2f} s, "
              f"{sent['bytes'] / max(sent['seconds'], 1e-9) / 1e6:.1f} MB/s", flush=True)
        report_deadline = time.monotonic() + args.timeout + 10
        results = []
        for k, r in enumerate(receivers):
            result = r.result(report_deadline)
            if result is None:
                print(f"receiver {k} gave no report", file=sys.stderr)
                return 2
            results.append(result)
    finally:
        for r in receivers:
            r.stop()
    return judge(results, args.heaps, time.monotonic() - started)


def judge(results: List[Dict[str, Any]], heaps: int, seconds: float) -> int:
    """Print the verdict on the receivers' reports (their shares are already
    printed): 0 if every heap arrived exactly once, at its receiver, intact."""
    arrivals: Counter = Counter()
    for r in results:
        arrivals.update(r["received"])
    missing = [i for i in range(heaps) if arrivals[i] == 0]
    repeated = sorted({i for i, c in arrivals.items() if c > 1}
                      | {i for r in results for i in r["duplicates"]})
    bad = sorted(i for r in results for i in r["bad"])
    if not (missing or repeated or bad) and len(arrivals) == heaps:
        print(f"all {heaps} heaps arrived exactly once, each at its receiver with the right "
              f"payload ({seconds:.1f} s in all)")
        return 0
    print(f"FAILED: {len(missing)} heaps missing {missing[:10]}, {len(repeated)} arrived more "
          f"than once {repeated[:10]}, {len(bad)} wrong {bad[:10]}")
    return 1


# ---------------------------------------------------------------------------

def index_list(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="One sender, heaps spread over N multicast groups as substreams; N "
                    "receivers, one per group. Without --role, everything runs on this "
                    "machine over loopback.")
    parser.add_argument("--role", choices=("all", "sender", "receiver"), default="all")
    parser.add_argument("--receivers", type=int, default=4, help="groups, one per receiver")
    parser.add_argument("--heaps", type=int, default=1000, help="heaps in the whole stream")
    parser.add_argument("--payload-size", type=int, default=8192, help="bytes per heap")
    parser.add_argument("--port", type=int, default=0,
                        help="UDP port of every group (default: a free one)")
    parser.add_argument("--interface", default="127.0.0.1",
                        help="IPv4 address of the interface to send or join on")
    parser.add_argument("--base-group", default="239.255.42.1",
                        help="first group; the others follow it")
    parser.add_argument("--groups", type=lambda t: t.split(","),
                        help="the groups, comma-separated (instead of --base-group)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds a receiver waits for the end of its stream")
    parser.add_argument("--startup-timeout", type=float, default=60.0,
                        help="seconds to wait for the receivers to join their groups")
    snd = parser.add_argument_group("sender")
    snd.add_argument("--rate", type=float, default=10e6, help="bytes per second, all groups")
    snd.add_argument("--packet-size", type=int, default=1472,
                     help="largest packet (1472: a UDP datagram in a 1500-byte Ethernet MTU)")
    snd.add_argument("--ttl", type=int, default=1, help="multicast TTL (hops of routers)")
    snd.add_argument("--send-buffer", type=int, default=spead2.send.UdpStream.DEFAULT_BUFFER_SIZE)
    snd.add_argument("--omit", type=index_list, default=[],
                     help="heap indices not to send (to see the check fail)")
    snd.add_argument("--repeat", type=index_list, default=[],
                     help="heap indices to send a second time (to see the check fail)")
    rcv = parser.add_argument_group("receiver")
    rcv.add_argument("--index", type=int, default=0, help="which receiver this is (0-based)")
    rcv.add_argument("--group", help="the group this receiver joins")
    rcv.add_argument("--recv-buffer", type=int, default=16 * 1024 * 1024,
                     help="socket receive buffer (the kernel caps it at net.core.rmem_max)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format=f"%(name)s ({args.role}): %(levelname)s: %(message)s",
                        level=logging.WARNING)
    if args.role == "receiver":
        if args.group is None:
            build_parser().error("--role receiver needs --group")
        result = receive(args)
        print(describe_share(result))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0 if not (result["lost"] or result["duplicates"] or result["bad"]) else 1
    if args.role == "sender":
        groups = args.groups or default_groups(args.base_group, args.receivers)
        if not args.port:
            build_parser().error("--role sender needs --port")
        sent = send(groups, args.port, args)
        print(f"sent {sent['heaps']} heaps ({sent['bytes']} bytes) to {', '.join(groups)} "
              f"in {sent['seconds']:.2f} s")
        return 0
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
