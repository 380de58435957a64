"""CPU time per GB on each side of a UDP loopback transfer, ours and the reference.

    python benchmarks/udp_cpu.py [--ours-python PATH] [--reps 3] [--rate 0.5]

Where ``udp_e2e`` gives one figure per library (the highest lossless rate of
its own sender and receiver), this separates the two sides. The same
program (``PROGRAM`` below, the spead2 4.x API, which both implementations
run unchanged) is the sender in one process and the receiver in another:

- receivers: ours and the reference's, each fed by the same sender (ours)
  at ``--rate`` GB/s;
- senders: ours and the reference's, each unthrottled, into the same
  receiver (ours), which may lose heaps: only the sender is measured.

Each process measures its own CPU time (all its threads, ``process_time``)
from its first heap to its last, so start-up is left out, and reports
seconds per GB of heap payload. 1 MiB heaps, 1000 per transfer, in
8972-byte and 1472-byte packets; ``--reps`` transfers of each kind, the
order alternating. Prints min / median / max.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import refimpl  # noqa: E402

PROGRAM = r'''
import json, sys, time
import numpy as np
import spead2, spead2.recv, spead2.send

role, port, packet, heaps, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
HEAP = 1 << 20
if role == "recv":
    tp = spead2.ThreadPool(1)
    stream = spead2.recv.Stream(tp, spead2.recv.StreamConfig(max_heaps=4),
                                spead2.recv.RingStreamConfig(heaps=4))
    stream.add_udp_reader(port, 9200, 8 << 20, "127.0.0.1")
    print("ready", flush=True)
    n = 0
    cpu0 = wall0 = None
    for heap in stream:
        if cpu0 is None:
            cpu0, wall0 = time.process_time(), time.monotonic()
        n += 1
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    print(json.dumps({"heaps": n, "cpu_s": cpu, "wall_s": wall}), flush=True)
else:
    tp = spead2.ThreadPool(1)
    config = spead2.send.StreamConfig(max_packet_size=packet, rate=rate, max_heaps=4)
    stream = spead2.send.UdpStream(tp, [("127.0.0.1", port)], config)
    ig = spead2.send.ItemGroup()
    ig.add_item(0x1000, "data", "", shape=(HEAP,), dtype=np.uint8, value=np.zeros(HEAP, np.uint8))
    stream.send_heap(ig.get_heap())   # descriptors, before timing
    cpu0, wall0 = time.process_time(), time.monotonic()
    for _ in range(heaps):
        stream.send_heap(ig.get_heap(data="all"))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    stream.send_heap(ig.get_end())
    print(json.dumps({"heaps": heaps, "cpu_s": cpu, "wall_s": wall}), flush=True)
'''

HEAPS = 1000
GB_PER_HEAP = (1 << 20) / 1e9


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def transfer(recv_python: str, send_python: str, envs: Dict[str, Dict[str, str]],
             recv_impl: str, send_impl: str, packet: int, rate: float) -> Dict[str, float]:
    """One transfer: the figures of both sides."""
    port = _free_port()
    recv = subprocess.Popen([recv_python, "-c", PROGRAM, "recv", str(port), str(packet),
                             str(HEAPS), "0"], stdout=subprocess.PIPE, text=True,
                            env=envs[recv_impl])
    try:
        if recv.stdout.readline().strip() != "ready":
            raise RuntimeError("the receiver did not start")
        try:
            send = subprocess.run([send_python, "-c", PROGRAM, "send", str(port), str(packet),
                                   str(HEAPS), str(rate)], capture_output=True, text=True,
                                  env=envs[send_impl], timeout=60)
        except subprocess.TimeoutExpired:
            return {"error": "the sender did not finish within 60 s"}
        sent = json.loads(send.stdout.strip().splitlines()[-1])
        time.sleep(1.0)
        if recv.poll() is None:   # the end of the stream was lost
            recv.terminate()
        out = recv.communicate(timeout=30)[0]
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    got = json.loads(lines[-1]) if lines else {"heaps": 0, "cpu_s": 0.0, "wall_s": 0.0}
    return {"send_cpu_s_per_gb": sent["cpu_s"] / (HEAPS * GB_PER_HEAP),
            "send_gbps": HEAPS * GB_PER_HEAP / sent["wall_s"],
            "received": got["heaps"],
            "recv_cpu_s_per_gb": (got["cpu_s"] / (got["heaps"] * GB_PER_HEAP)
                                  if got["heaps"] else None)}


def median(values: List[float]):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def spread(values: List[float]) -> str:
    values = sorted(v for v in values if v is not None)
    if not values:
        return "n/a"
    return f"{values[0]:.3f} / {values[len(values) // 2]:.3f} / {values[-1]:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours-python", default=sys.executable)
    parser.add_argument("--ref-python")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.5, help="GB/s for the receiver runs")
    parser.add_argument("--packets", type=int, nargs="+", default=[8972, 1472])
    args = parser.parse_args()
    pythons = {"ours": os.path.abspath(args.ours_python),
               "ref": args.ref_python or str(refimpl.ensure_ref_python())}
    quiet = {"OPENBLAS_NUM_THREADS": "1"}
    envs = {"ours": dict(os.environ, **quiet), "ref": dict(refimpl.script_env(), **quiet)}
    results: Dict[str, List[Dict[str, float]]] = {}
    for packet in args.packets:
        for k in range(args.reps):
            for impl in (("ref", "ours") if k % 2 == 0 else ("ours", "ref")):
                r = transfer(pythons[impl], pythons["ours"], envs, impl, "ours", packet,
                             args.rate * 1e9)
                print(f"receiver {impl:4} {packet}: {r}", file=sys.stderr, flush=True)
                if "error" not in r:
                    results.setdefault(f"recv {impl} {packet}", []).append(r)
                s = transfer(pythons["ours"], pythons[impl], envs, "ours", impl, packet, 0.0)
                print(f"sender   {impl:4} {packet}: {s}", file=sys.stderr, flush=True)
                if "error" not in s:
                    results.setdefault(f"send {impl} {packet}", []).append(s)
    print("| Side | Packet | Reference CPU s/GB | Ours CPU s/GB | Ref/Ours (medians) |")
    print("|---|---:|---:|---:|---:|")
    for side, key in (("recv", "recv_cpu_s_per_gb"), ("send", "send_cpu_s_per_gb")):
        for packet in args.packets:
            vals = {impl: [r[key] for r in results.get(f"{side} {impl} {packet}", [])]
                    for impl in ("ref", "ours")}
            med = {impl: median(vals[impl]) for impl in ("ref", "ours")}
            ratio = f"{med['ref'] / med['ours']:.2f}" if med["ref"] and med["ours"] else "n/a"
            what = (f"receiver, our sender at {args.rate} GB/s" if side == "recv"
                    else "sender, unthrottled, into our receiver")
            print(f"| {what} | {packet} | {spread(vals['ref'])} | {spread(vals['ours'])} | "
                  f"{ratio} |")
    for packet in args.packets:
        cells = {impl: spread([r["send_gbps"] for r in results.get(f"send {impl} {packet}", [])])
                 for impl in ("ref", "ours")}
        print(f"| sender, unthrottled: GB/s achieved | {packet} | {cells['ref']} | "
              f"{cells['ours']} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
