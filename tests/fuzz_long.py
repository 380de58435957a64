#!/usr/bin/env python3
"""Long fuzz run of the receive path: ``python tests/fuzz_long.py --inputs 1000000``.

Runs the harness of :mod:`fuzzing` (mutated captures and generated packets
through the buffer and UDP readers, and with ``--tcp`` a TCP reader, then
ItemGroup.update) in child
processes, so that a crash or hang is counted and the run goes on, and
reports inputs tried, crashes, hangs, invariant failures and the summed
stream statistics. Failing inputs are saved under --save-dir; ``--replay``
runs one again. Needs the package importable (installed, or
``PYTHONPATH=src``) and numpy.
"""

import argparse
import collections
import json
import logging
import mmap
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import spead2

from fuzzing import (BufferTarget, HangError, InvariantError, Mutator, RandomDraw, Tally,
                     TcpTarget, UdpTarget, gen_packets, own_captures, reference_captures)


def input_for(seed, index, mutator, max_size):
    """Input ``index`` of run ``seed``: ``(kind, data, rng)`` with kind
    'buffer' (data is bytes) or 'udp' (a list of datagrams); ``rng`` goes on
    to draw the tail. The same seed, index and corpus give the same input."""
    rng = random.Random(f"{seed}:{index}")
    mutator.rng = rng
    k = rng.randrange(10)
    if k < 5:
        return "buffer", mutator.buffer_input(), rng
    if k < 7:
        return "buffer", b"".join(gen_packets(RandomDraw(rng))), rng
    if k < 9:
        return "udp", mutator.datagram_input(max_size), rng
    return "udp", gen_packets(RandomDraw(rng)), rng


def _save_failure(directory, seed, index, kind, data, message):
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"seed{seed}-input{index}.pickle")
    with open(path, "wb") as f:
        pickle.dump({"seed": seed, "index": index, "kind": kind, "data": data,
                     "message": message}, f)
    return path


def worker(args):
    """Run inputs [start, start + count) of a seed; print a JSON tally."""
    progress = None
    if args.progress:
        fd = os.open(args.progress, os.O_RDWR)
        progress = mmap.mmap(fd, 8)
        os.close(fd)
    logging.getLogger("spead2").setLevel(logging.CRITICAL)
    tp = spead2.ThreadPool(args.threads)
    corpus = own_captures(tp)
    if args.corpus:
        with open(args.corpus, "rb") as f:
            corpus += pickle.load(f)
    mutator = Mutator(corpus, random.Random(args.seed))
    tally = Tally()
    udp = None
    # with --tcp every buffer input also goes over TCP; its tally is kept
    # apart so that the inputs are counted once
    tcp = TcpTarget(tp, None, Tally()) if args.tcp else None
    max_size = 9200
    for index in range(args.start, args.start + args.count):
        if progress is not None:
            struct.pack_into("<q", progress, 0, index)
        kind, data, rng = input_for(args.seed, index, mutator, max_size)
        try:
            if kind == "buffer":
                BufferTarget(tp, rng, tally).run(data)
                if tcp is not None:
                    kind = "tcp"
                    tcp.rng = random.Random(f"{args.seed}:{index}:tcp")
                    tcp.run(data)
            else:
                if udp is None:
                    udp = UdpTarget(tp, rng, tally, max_size)
                udp.rng = rng
                udp.run(data)
        except InvariantError as exc:
            kind_name = "hang" if isinstance(exc, HangError) else "invariant"
            path = _save_failure(args.save_dir, args.seed, index, kind, data, str(exc))
            tally.failures.append({"index": index, "kind": kind_name, "message": str(exc)[:500],
                                   "saved": path})
            if udp is not None and kind == "udp":
                udp.close()
                udp = None
    if udp is not None:
        udp.close()
    if tcp is not None:
        tcp.close()
        merged = tcp.tally.as_dict()
        merged["inputs"] = 0
        tally.merge(merged)
    tp.stop()
    if progress is not None:
        struct.pack_into("<q", progress, 0, args.start + args.count)
    print(json.dumps(tally.as_dict()))


def replay(path):
    """Run a saved failing input again and print what happens."""
    with open(path, "rb") as f:
        case = pickle.load(f)
    print(f"input {case['index']} of seed {case['seed']} ({case['kind']}): {case['message']}")
    tp = spead2.ThreadPool()
    tally = Tally()
    rng = random.Random(f"{case['seed']}:{case['index']}:replay")
    try:
        if case["kind"] == "buffer":
            BufferTarget(tp, rng, tally).run(case["data"])
        elif case["kind"] == "tcp":
            target = TcpTarget(tp, rng, tally)
            try:
                target.run(case["data"])
            finally:
                target.close()
        else:
            target = UdpTarget(tp, rng, tally)
            try:
                target.run(case["data"])
            finally:
                target.close()
    except InvariantError as exc:
        print(f"fails again: {exc}")
        return 1
    print("passes now")
    return 0


def run_chunk(args, start, count, corpus_path):
    """Run a worker over [start, start + count); returns (tally dict, next index,
    crash or hang record or None)."""
    with tempfile.NamedTemporaryFile(prefix="spead2-fuzz-", delete=False) as f:
        f.write(struct.pack("<q", start - 1))
        progress_path = f.name
    argv = [sys.executable, os.path.abspath(__file__), "--worker", "--seed", str(args.seed),
            "--start", str(start), "--count", str(count), "--progress", progress_path,
            "--threads", str(args.threads)]
    if corpus_path:
        argv += ["--corpus", corpus_path]
    if args.save_dir:
        argv += ["--save-dir", args.save_dir]
    if args.tcp:
        argv.append("--tcp")
    timeout = 120 + count * 0.05
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        status = None
    with open(progress_path, "rb") as f:
        (index,) = struct.unpack("<q", f.read(8))
    os.unlink(progress_path)
    if status == 0:
        return json.loads(out.decode().strip().splitlines()[-1]), start + count, None
    what = "hang" if status is None else (
        f"crash ({signal.Signals(-status).name})" if status < 0 else f"exit status {status}")
    record = {"index": index, "kind": "hang" if status is None else "crash", "what": what,
              "stderr": err.decode(errors="replace")[-3000:]}
    partial = {"inputs": max(0, index - start), "heaps": 0, "stops": 0, "stats": {},
               "update_errors": {}, "failures": []}
    if index < start:
        # the child died in its set-up: running the chunk again would too
        record["what"] += " before its first input"
        return partial, start + count, record
    return partial, index + 1, record


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Fuzz the spead2 receive path (buffer and UDP readers, ItemGroup.update); "
                    "report inputs tried, crashes, hangs, invariant failures and stream stats.")
    parser.add_argument("--inputs", type=int, default=10000, help="number of inputs (default 10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=20000,
                        help="inputs per child process (a crash costs at most its chunk's rest)")
    parser.add_argument("--jobs", type=int, default=1, help="child processes run at once")
    parser.add_argument("--threads", type=int, default=2,
                        help="worker threads of each child's ThreadPool (default 2)")
    parser.add_argument("--save-dir", default="fuzz-failures",
                        help="where failing inputs are saved (pickles)")
    parser.add_argument("--reference", action="store_true",
                        help="also mutate captures sent by the reference spead2 (installs it)")
    parser.add_argument("--tcp", action="store_true",
                        help="also send every buffer input over TCP loopback to a TCP reader "
                             "(about 8 ms more an input)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--replay", metavar="PICKLE", help="run one saved failing input again")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.replay:
        return replay(args.replay)

    corpus_path = None
    if args.reference:
        import refimpl
        ref = refimpl.RefPython(refimpl.ensure_ref_python())
        with tempfile.TemporaryDirectory() as tmp:
            corpus = reference_captures(ref, tmp)
        with tempfile.NamedTemporaryFile(prefix="spead2-fuzz-corpus-", delete=False) as f:
            pickle.dump(corpus, f)
            corpus_path = f.name

    started = time.monotonic()
    total = Tally()
    crashes, hangs = [], []
    queue = collections.deque()
    for start in range(0, args.inputs, args.chunk):
        queue.append((start, min(args.chunk, args.inputs - start)))
    running = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        while queue or running:
            while queue and len(running) < max(1, args.jobs):
                start, count = queue.popleft()
                running.append((start, count, pool.submit(run_chunk, args, start, count,
                                                          corpus_path)))
            start, count, fut = running.pop(0)
            tally, resume, record = fut.result()
            total.merge(tally)
            if record is not None:
                (hangs if record["kind"] == "hang" else crashes).append(record)
                total.inputs += 1
                if resume < start + count:
                    queue.appendleft((resume, start + count - resume))
            done = total.inputs
            rate = done / max(1e-9, time.monotonic() - started)
            print(f"[{time.monotonic() - started:7.0f} s] {done} inputs, {len(crashes)} crashes, "
                  f"{len(hangs)} hangs, {len(total.failures)} invariant failures "
                  f"({rate:.0f} inputs/s)", file=sys.stderr, flush=True)
    if corpus_path:
        os.unlink(corpus_path)
    elapsed = time.monotonic() - started
    hang_failures = [f for f in total.failures if f["kind"] == "hang"]
    report = {
        "inputs": total.inputs, "seed": args.seed, "seconds": round(elapsed, 1),
        "crashes": len(crashes), "hangs": len(hangs) + len(hang_failures),
        "invariant_failures": len(total.failures) - len(hang_failures),
        "heaps_delivered": total.heaps, "inputs_with_stop": total.stops,
        "update_errors": dict(total.update_errors), "stream_stats": dict(total.stats),
        "crash_records": crashes, "hang_records": hangs, "failures": total.failures[:50],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"inputs tried:        {report['inputs']} (seed {args.seed}, {elapsed:.0f} s)")
        print(f"crashes:             {report['crashes']}")
        print(f"hangs:               {report['hangs']}")
        print(f"invariant failures:  {report['invariant_failures']}")
        print(f"heaps delivered:     {report['heaps_delivered']}")
        print(f"inputs with a STOP:  {report['inputs_with_stop']}")
        print(f"ItemGroup.update errors (allowed): {report['update_errors']}")
        print("stream stats (summed):")
        for key in sorted(total.stats):
            print(f"  {key:26} {total.stats[key]}")
        for rec in crashes + hangs + total.failures[:20]:
            print(f"  {rec}")
    ok = not crashes and not hangs and not total.failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
