"""Demonstration: a spectrometer-like sender and a receiver over UDP loopback.

``python -m spead2.demo`` starts a receiver in this process and a sender in a
child process, streams a few hundred heaps (a 48-bit timestamp sent as an
immediate, a 2-D complex int8 spectrum and a per-channel flag array), and
prints what arrived.
"""

import argparse
import socket
import subprocess
import sys
import time
from typing import List, Optional

import numpy as np

import spead2
import spead2.recv
import spead2.send

CHANNELS = 1024
TIMESTAMP_STEP = 2 * CHANNELS


def spectrum(i: int) -> np.ndarray:
    """The spectrum of heap ``i``: deterministic, so the receiver can check it."""
    chan = np.arange(CHANNELS, dtype=np.int32)
    out = np.empty((CHANNELS, 2), np.int8)
    out[:, 0] = ((chan * 3 + i) % 255 - 127).astype(np.int8)
    out[:, 1] = ((chan * 7 - i) % 255 - 127).astype(np.int8)
    return out


def flags(i: int) -> np.ndarray:
    return (np.arange(CHANNELS) % 97 == i % 97).astype(np.uint8)


def build_items(ig: spead2.ItemGroup) -> None:
    ig.add_item(0x1600, "timestamp", "ADC sample counter of the first sample in the spectrum",
                shape=(), format=[("u", 48)])
    ig.add_item(0x1601, "spectrum", "Channelised voltages (real, imaginary) as int8",
                shape=(CHANNELS, 2), dtype=np.int8)
    ig.add_item(0x1602, "flags", "Per-channel data-quality flags",
                shape=(CHANNELS,), dtype=np.uint8)
    ig.add_item(0x1603, "name", "Instrument name", shape=(None,), format=[("c", 8)])


def run_sender(host: str, port: int, heaps: int, rate: float) -> None:
    tp = spead2.ThreadPool()
    config = spead2.send.StreamConfig(max_packet_size=8972, rate=rate)
    stream = spead2.send.UdpStream(tp, host, port, config)
    ig = spead2.send.ItemGroup(flavour=spead2.Flavour(4, 64, 48, 0))
    build_items(ig)
    stream.send_heap(ig.get_start())
    ig["name"].value = "demo-spectrometer"
    for i in range(heaps):
        ig["timestamp"].value = 1_000_000_000 + i * TIMESTAMP_STEP
        ig["spectrum"].value = spectrum(i)
        ig["flags"].value = flags(i)
        stream.send_heap(ig.get_heap())
    stream.send_heap(ig.get_end())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(heaps: int, rate: float, timeout: float) -> int:
    tp = spead2.ThreadPool()
    stream = spead2.recv.Stream(tp, max_heaps=4, ring_heaps=64)
    port = _free_port()
    stream.add_udp_reader(port, bind_hostname="127.0.0.1")
    print(f"receiver listening on 127.0.0.1:{port}; starting sender ({heaps} heaps, "
          f"{rate / 1e6:.0f} MB/s)")
    sender = subprocess.Popen([sys.executable, "-m", "spead2.demo", "--send", "--port", str(port),
                               "--heaps", str(heaps), "--rate", str(rate)])
    ig = spead2.ItemGroup()
    received = 0
    payload = 0
    bad = 0
    seen = set()
    first: Optional[float] = None
    start = time.monotonic()
    deadline = start + timeout
    try:
        while time.monotonic() < deadline:
            try:
                heap = stream.get_nowait()
            except spead2.Empty:
                time.sleep(0.001)
                continue
            except spead2.Stopped:
                break
            if first is None:
                first = time.monotonic()
            updated = ig.update(heap)
            if heap.is_start_of_stream():
                print(f"heap {heap.cnt}: start of stream")
                continue
            if "timestamp" not in updated:
                continue
            ts = int(ig["timestamp"].value)
            i = (ts - 1_000_000_000) // TIMESTAMP_STEP
            ok = (np.array_equal(ig["spectrum"].value, spectrum(i))
                  and np.array_equal(ig["flags"].value, flags(i)))
            bad += not ok
            seen.add(i)
            received += 1
            payload += heap.payload_size
            if received <= 3 or received % 100 == 0:
                names = ", ".join(sorted(updated))
                print(f"heap {heap.cnt}: timestamp={ts} items=[{names}] "
                      f"spectrum[0]={ig['spectrum'].value[0].tolist()} "
                      f"name={ig['name'].value!r}")
    finally:
        stream.stop()
        try:
            sender.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sender.kill()
    elapsed = max(time.monotonic() - (first or start), 1e-9)
    lost = heaps - len(seen)
    print()
    print(f"descriptors known: {', '.join(ig.keys())}")
    print(f"heaps received:    {received} of {heaps} (lost {lost}, corrupt {bad})")
    print(f"payload received:  {payload} bytes in {elapsed:.3f} s "
          f"({payload / elapsed / 1e6:.1f} MB/s, {received / elapsed:.0f} heaps/s)")
    stats = stream.stats
    print(f"stream stats:      packets={stats.packets} heaps={stats.heaps} "
          f"incomplete={stats.incomplete_heaps_evicted + stats.incomplete_heaps_flushed} "
          f"malformed={stats.malformed_packets} ring_waits={stats.worker_blocked}")
    return 0 if lost == 0 and bad == 0 and sender.returncode == 0 else 1


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heaps", type=int, default=500, help="heaps to send [%(default)s]")
    parser.add_argument("--rate", type=float, default=200e6,
                        help="send rate in bytes/s [%(default)s]")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after [%(default)s] s")
    parser.add_argument("--send", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.send:
        run_sender(args.host, args.port, args.heaps, args.rate)
        return 0
    return run_demo(args.heaps, args.rate, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
