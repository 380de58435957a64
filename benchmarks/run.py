"""Benchmark our spead2 against the reference spead2 4.5.1, side by side in one run.

    python benchmarks/run.py [--quick] [--write] [--ours-python PATH] [--only NAME ...]

Every scenario runs in separate processes (``worker.py``): once with the
reference (in its cached virtual environment, created if needed; see
``tests/refimpl.py``) and once with ours (``--ours-python``, by default this
interpreter, which must import our ``spead2``). The report gives ratios
ours/reference from this run, memcpy bandwidth measured in this run, and each
process's peak RSS. A scenario that fails for one side is reported as n/a with
the error; the run goes on. ``--write`` saves the report to BENCHMARKS.md.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "worker.py"
sys.path.insert(0, str(ROOT / "tests"))

import refimpl  # noqa: E402

import capture  # noqa: E402
import e2e  # noqa: E402

MiB = 1 << 20
KiB = 1 << 10
JUMBO = 8972
SMALL_PACKET = 1472

# name: (default settings, quick settings)
SETTINGS = {
    "memcpy": ({"total": 64 * MiB, "budget": 1.0}, {"total": 32 * MiB, "budget": 0.3}),
    "recv_large": ({"n_heaps": 64, "budget": 2.0, "rounds": 2},
                   {"n_heaps": 16, "budget": 0.5, "rounds": 1}),
    "recv_small": ({"n_heaps": 50000, "budget": 3.0, "rounds": 2},
                   {"n_heaps": 10000, "budget": 0.5, "rounds": 1}),
    "recv_udp": ({"rates": [0.25, 0.5, 1.0, 1.5, 2.0], "seconds": 0.5, "unthrottled_heaps": 512,
                  "sweeps": 3},
                 {"rates": [0.5, 1.0], "seconds": 0.25, "unthrottled_heaps": 128, "sweeps": 1}),
    "recv_tcp": ({"n_heaps": 1000, "reps": 7}, {"n_heaps": 300, "reps": 2}),
    "send_bytes_large": ({"n_heaps": 128, "budget": 2.0, "rounds": 2},
                         {"n_heaps": 32, "budget": 0.5, "rounds": 1}),
    "send_udp_large": ({"n_heaps": 512, "budget": 2.0, "rounds": 2},
                       {"n_heaps": 128, "budget": 0.5, "rounds": 1}),
    "send_udp_small": ({"n_heaps": 20000, "budget": 3.0, "rounds": 2},
                       {"n_heaps": 5000, "budget": 0.5, "rounds": 1}),
    "udp_e2e": ({"packets": [JUMBO, SMALL_PACKET], "reps": 3, "max_time": 600},
                {"packets": [JUMBO], "reps": 1, "max_time": 300}),
    "udp_e2e_pinned": ({"packets": [JUMBO], "reps": 3, "max_time": 600, "affinity": (0, 1)},
                       {"packets": [JUMBO], "reps": 1, "max_time": 300, "affinity": (0, 1)}),
    "udp_e2e_rt": ({"packets": [JUMBO, SMALL_PACKET], "reps": 3, "max_time": 600,
                    "rt_priority": 10},
                   {"packets": [JUMBO], "reps": 1, "max_time": 300, "rt_priority": 10}),
    "capture": ({"sizes": [SMALL_PACKET, JUMBO], "reps": 3, "rates": capture.RATES,
                 "seconds": 0.25},
                {"sizes": [SMALL_PACKET], "reps": 1, "rates": capture.QUICK_RATES,
                 "seconds": 0.5}),
    "recv_pcap": ({"n_heaps": 1024, "runs": 5}, {"n_heaps": 128, "runs": 2}),
    "chunk_buffer_4k": ({"n_heaps": 32768, "budget": 3.0, "rounds": 5},
                        {"n_heaps": 8192, "budget": 0.5, "rounds": 1}),
    "chunk_buffer_64k": ({"n_heaps": 2048, "budget": 3.0, "rounds": 3, "nontemporal": True},
                         {"n_heaps": 512, "budget": 0.5, "rounds": 1, "nontemporal": True}),
    "chunk_group_4k": ({"n_heaps": 32768, "budget": 3.0, "rounds": 5, "members": 4},
                       {"n_heaps": 8192, "budget": 0.5, "rounds": 1, "members": 4}),
    "chunk_udp": ({"rates": [0.5, 1.0, 1.5, 2.0, 3.0], "seconds": 0.5,
                   "unthrottled_heaps": 4096, "sweeps": 3},
                  {"rates": [0.5, 1.0], "seconds": 0.25, "unthrottled_heaps": 1024,
                   "sweeps": 1}),
    # These run each side in ``runs`` separate processes and report the spread.
    "send_bytes_spread": ({"n_heaps": 200, "runs": 10}, {"n_heaps": 100, "runs": 3}),
    "send_heaps_udp_large": ({"n_groups": 2000, "runs": 5, "budget": 1.0},
                             {"n_groups": 500, "runs": 2, "budget": 0.3}),
    "send_heaps_udp_small": ({"n_groups": 20000, "runs": 5, "budget": 1.0},
                             {"n_groups": 5000, "runs": 2, "budget": 0.3}),
    "send_tcp_large": ({"n_heaps": 512, "runs": 5, "budget": 1.0},
                       {"n_heaps": 128, "runs": 2, "budget": 0.3}),
}
SCENARIO_NAMES = list(SETTINGS)
CHUNK_HEAPS = 64   # heaps per chunk in the chunk scenarios


class Runner:
    def __init__(self, ref_python, ours_python, timeout, log):
        self.pythons = {"ref": ref_python, "ours": ours_python}
        # numpy's OpenBLAS otherwise starts a spinning helper thread per core,
        # which competes with the threads being measured on a small machine
        quiet = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.envs = {"ref": dict(refimpl.script_env(), **quiet), "ours": dict(os.environ, **quiet)}
        self.timeout = timeout
        self.log = log
        self.disabled = {}  # impl -> reason it cannot run at all

    def argv(self, impl, scenario, params):
        return [self.pythons[impl], WORKER, "--impl", impl, scenario, "--params", json.dumps(params)]

    def run(self, impl, scenario, **params):
        """Run one scenario to completion; return its result dict (``ok`` False on failure)."""
        if impl in self.disabled:
            return {"ok": False, "error": self.disabled[impl]}
        self.log(f"  {impl:4} {scenario} {params}")
        try:
            proc = subprocess.run([str(a) for a in self.argv(impl, scenario, params)],
                                  capture_output=True, text=True, timeout=self.timeout,
                                  env=self.envs[impl], cwd=tempfile.gettempdir())
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {self.timeout:.0f} s"}
        return parse_result(proc.returncode, proc.stdout, proc.stderr)

    def start(self, impl, scenario, **params):
        if impl in self.disabled:
            raise RuntimeError(self.disabled[impl])
        self.log(f"  {impl:4} {scenario} {params} (background)")
        return refimpl.RefProcess(self.argv(impl, scenario, params), env=self.envs[impl])


def paired(runner, rounds, scenario, **params):
    """Run ``scenario`` for both sides ``rounds`` times, alternating which goes first.

    Keeps each side's best result (highest ``gbps``/``heaps_per_s``) and its
    highest peak RSS, so that a burst of load from elsewhere on the machine
    during one run does not decide the ratio.
    """
    best = {}
    for k in range(rounds):
        order = ("ref", "ours") if k % 2 == 0 else ("ours", "ref")
        for impl in order:
            prev = best.get(impl)
            if prev is not None and not prev.get("ok"):
                continue  # it failed once; it will fail again
            result = runner.run(impl, scenario, **params)
            if prev is None or (result.get("ok") and not prev.get("ok")):
                best[impl] = result
            elif result.get("ok") and prev.get("ok"):
                key = "gbps" if result.get("gbps") is not None else "heaps_per_s"
                rss = max(prev["maxrss_kib"], result["maxrss_kib"])
                limit = max((r["memcpy_gbps"] for r in (prev, result) if "memcpy_gbps" in r),
                            default=None)
                if result[key] > prev[key]:
                    best[impl] = result
                best[impl]["maxrss_kib"] = rss
                if limit is not None:
                    best[impl]["memcpy_gbps"] = limit
    return {impl: best[impl] for impl in ("ref", "ours")}


def parse_result(returncode, stdout, stderr):
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        try:
            return json.loads(lines[-1])
        except ValueError:
            pass
    err = [line for line in stderr.strip().splitlines() if line.strip()]
    return {"ok": False, "error": (err[-1] if err else f"exit code {returncode}")[:300]}


def short_error(text):
    return " ".join(str(text).split())[:300]


# ---------------------------------------------------------------------------
# Scenarios.

def bench_memcpy(runner, s, work):
    return {"memcpy": runner.run("ref", "memcpy", block=MiB, total=s["total"], budget=s["budget"])}


def _bench_recv_buffer(runner, work, name, heap_size, packet, n_heaps, budget, rounds):
    path = str(work / f"{name}.bin")
    gen = runner.run("ref", "gen_bytes", path=path, heap_size=heap_size, n_heaps=n_heaps,
                     max_packet_size=packet)
    if not gen.get("ok"):
        err = {"ok": False, "error": "could not generate the input: " + gen.get("error", "")}
        return {"ref": err, "ours": err}
    params = dict(path=path, heap_size=heap_size, n_heaps=n_heaps, budget=budget)
    if n_heaps > 1000:
        params.update(min_reps=1, max_reps=3)
    out = paired(runner, rounds, "recv_buffer", **params)
    os.unlink(path)
    return out


def bench_recv_large(runner, s, work):
    return _bench_recv_buffer(runner, work, "recv_large", MiB, JUMBO, s["n_heaps"], s["budget"],
                              s["rounds"])


def bench_recv_small(runner, s, work):
    return _bench_recv_buffer(runner, work, "recv_small", KiB, SMALL_PACKET, s["n_heaps"],
                              s["budget"], s["rounds"])


def receive_trial(runner, impl, recv_scenario, send_scenario, n_heaps, sender="ref",
                  recv_params=None, heap_size=MiB, **send_params):
    """``sender``'s (by default the reference's) ``send_scenario`` ->
    ``impl``'s ``recv_scenario`` (by default 1 MiB heaps); returns the
    receiver's result, with ``sender`` (its result) and ``sent``."""
    record = {"sent": n_heaps}
    try:
        rx = runner.start(impl, recv_scenario,
                          **(recv_params or {"heap_size": heap_size, "timeout": 60.0}))
    except RuntimeError as exc:
        return dict(record, ok=False, error=str(exc))
    with rx:
        try:
            line = rx.readline(60.0)   # a chunk receiver compiles its callback first
        except refimpl.RefScriptError as exc:
            return dict(record, ok=False, error=short_error(exc))
        if not line.isdigit():  # the receiver failed and printed its result instead
            result = parse_result(1, line, "")
            return dict(record, ok=False, error=result.get("error", line))
        record["sender"] = runner.run(sender, send_scenario, port=int(line),
                                      heap_size=heap_size, n_heaps=n_heaps,
                                      max_packet_size=JUMBO, **send_params)
        try:
            out = rx.finish(timeout=30.0, terminate_after=3.0)
            result = parse_result(0, out, "")
        except refimpl.RefScriptError as exc:
            result = {"ok": False, "error": short_error(exc)}
    record.update(result)
    return record


# What a UDP trial runs: the receiver's scenario and parameters, the sender's
# side and scenario, the heap size and the bounds on the heaps per trial.
RECV_UDP = {"rx": "recv_udp", "rx_params": None, "tx_impl": "ref", "tx": "send_udp",
            "heap_size": MiB, "min_heaps": 64, "max_heaps": 1024}
# Our sender -> a chunk stream with a numba place callback on either side.
CHUNK_UDP = {"rx": "chunk_recv_udp",
             "rx_params": {"heap_size": 64 * KiB, "heaps_per_chunk": CHUNK_HEAPS,
                           "timeout": 60.0},
             "tx_impl": "ours", "tx": "chunk_send_udp",
             "heap_size": 64 * KiB, "min_heaps": 256, "max_heaps": 8192}


def udp_trial(runner, impl, rate_gbps, n_heaps, kind=RECV_UDP):
    """One sender -> ``impl`` receiver trial (by default the reference
    sender and a heap receiver); returns the trial's record."""
    record = receive_trial(runner, impl, kind["rx"], kind["tx"], n_heaps,
                           sender=kind["tx_impl"], recv_params=kind["rx_params"],
                           heap_size=kind["heap_size"], rate=rate_gbps * 1e9)
    record["rate_gbps"] = rate_gbps
    if record.get("ok"):
        record["lost"] = n_heaps - record["heaps"]
    return record


def udp_sweep(runner, s, order, kind=RECV_UDP):
    """One rising-rate sweep for each receiver, then one unthrottled trial each."""
    trials = {"ref": [], "ours": []}
    lossy_in_a_row = {"ref": 0, "ours": 0}
    for rate in s["rates"]:
        n = int(min(max(rate * 1e9 * s["seconds"] / kind["heap_size"], kind["min_heaps"]),
                    kind["max_heaps"]))
        for impl in order:
            if lossy_in_a_row[impl] >= 2 or (trials[impl] and not trials[impl][-1].get("ok")):
                continue
            t = udp_trial(runner, impl, rate, n, kind)
            trials[impl].append(t)
            lossy_in_a_row[impl] = lossy_in_a_row[impl] + 1 if t.get("lost") else 0
    unthrottled = {impl: udp_trial(runner, impl, 0.0, s["unthrottled_heaps"], kind)
                   for impl in order}
    return {"trials": trials, "unthrottled": unthrottled}


def bench_recv_udp(runner, s, work, kind=RECV_UDP):
    # Two processes share two cores here, so one sweep is at the mercy of the
    # scheduler: repeat it, alternating which receiver goes first at each rate.
    sweeps = []
    for i in range(s["sweeps"]):
        order = ("ref", "ours") if i % 2 == 0 else ("ours", "ref")
        sweeps.append(udp_sweep(runner, s, order, kind))
    return {"sweeps": sweeps}


def bench_recv_tcp(runner, s, work):
    # Lossless, so the sender is held back by the receiver: the rate is the
    # receiver's. Repeated (alternating which receiver goes first) for the
    # spread; a trial that lost or added heaps does not count.
    trials = {"ref": [], "ours": []}
    for i in range(s["reps"]):
        for impl in (("ref", "ours") if i % 2 == 0 else ("ours", "ref")):
            t = receive_trial(runner, impl, "recv_tcp", "send_tcp", s["n_heaps"])
            if t.get("ok") and t["heaps"] != s["n_heaps"]:
                t = dict(t, ok=False, error=f"received {t['heaps']} of {s['n_heaps']} heaps")
            trials[impl].append(t)
    return {"trials": trials}


def bench_send_bytes_large(runner, s, work):
    return paired(runner, s["rounds"], "send_bytes", heap_size=MiB, n_heaps=s["n_heaps"],
                  max_packet_size=JUMBO, budget=s["budget"])


def bench_send_udp_large(runner, s, work):
    return paired(runner, s["rounds"], "send_udp_sink", heap_size=MiB, n_heaps=s["n_heaps"],
                  max_packet_size=JUMBO, budget=s["budget"])


def bench_send_udp_small(runner, s, work):
    return paired(runner, s["rounds"], "send_udp_sink", heap_size=KiB, n_heaps=s["n_heaps"],
                  max_packet_size=SMALL_PACKET, budget=s["budget"], min_reps=1, max_reps=3)


def bench_udp_e2e(runner, s, work):
    """Each library to itself over UDP loopback, with its own bench tool."""
    out = {}
    # a search takes minutes: bounded by its own --max-time, not --timeout
    timeout = max(runner.timeout, s["max_time"] + 300)
    for packet in s["packets"]:
        out[str(packet)] = e2e.run({k: str(v) for k, v in runner.pythons.items()}, runner.envs,
                                   MiB, packet, s["reps"], s["max_time"], timeout, runner.log,
                                   e2e.Setup(s.get("affinity"), s.get("rt_priority")))
    return out


def bench_udp_e2e_pinned(runner, s, work):
    """As ``udp_e2e``, each side's sender and receiver on CPUs of their own."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return {"error": "needs two CPUs"}
    return bench_udp_e2e(runner, dict(s, affinity=(cpus[0], cpus[1])), work)


def bench_udp_e2e_rt(runner, s, work):
    """As ``udp_e2e``, each side's receiving process real-time (SCHED_FIFO)."""
    return bench_udp_e2e(runner, s, work)


def bench_capture(runner, s, work):
    """``spead2-recv --capture`` against ``tcpdump -w`` (``capture.py``)."""
    if "ours" in runner.disabled:
        return {"error": runner.disabled["ours"]}
    return capture.run(str(runner.pythons["ours"]), runner.envs["ours"], s["sizes"], s["reps"],
                       s["rates"], s["seconds"], runner.log)


# How the capture gets into the page cache: (label, bytes per write call).
PCAP_CACHE_STATES = [("written in 64 MiB writes", 64 * MiB), ("written in 4 KiB writes", 4 * KiB)]


def _pcap_runs(runner, s, path, write_size):
    gen = runner.run("ref", "gen_pcap", path=path, heap_size=MiB, n_heaps=s["n_heaps"],
                     max_packet_size=JUMBO, write_size=write_size)
    if not gen.get("ok"):
        err = {"ok": False, "error": "could not write the capture: " + gen.get("error", "")}
        return {"ref": err, "ours": err, "runs": {"ref": [], "ours": []}}
    runs = {"ref": [], "ours": []}
    last = {}
    for k in range(s["runs"]):
        for impl in (("ref", "ours") if k % 2 == 0 else ("ours", "ref")):
            if impl in last and not last[impl].get("ok"):
                continue
            result = runner.run(impl, "recv_pcap", path=path, heap_size=MiB,
                                n_heaps=s["n_heaps"])
            last[impl] = result
            if result.get("ok"):
                runs[impl].append(result)
    os.unlink(path)
    out = {"runs": runs, "file_bytes": gen["bytes"]}
    for impl in ("ref", "ours"):
        if runs[impl]:
            best = max(runs[impl], key=lambda r: r["gbps"])
            out[impl] = dict(best, gbps=median_or_none([r["gbps"] for r in runs[impl]]),
                             heaps_per_s=median_or_none([r["heaps_per_s"] for r in runs[impl]]),
                             maxrss_kib=max(r["maxrss_kib"] for r in runs[impl]))
        else:
            out[impl] = last.get(impl, {"ok": False, "error": "not run"})
    return out


def bench_recv_pcap(runner, s, work):
    """Replay one capture (1 MiB heaps in 8972-byte packets) ``runs`` times
    per side, each in a fresh process, alternating which side goes first,
    for each way of filling the page cache; every run is kept for the
    spread."""
    return {label: _pcap_runs(runner, s, str(work / "recv_pcap.pcap"), write_size)
            for label, write_size in PCAP_CACHE_STATES}


def _gen_chunk_inputs(runner, work, name, heap_size, n_heaps, members):
    """Files of the chunk heaps, written by the reference: all of them when
    ``members`` is 1, else each member's share. A list of paths, or the
    error result."""
    paths = []
    for member in range(members):
        path = str(work / f"{name}.{member}.bin")
        gen = runner.run("ref", "gen_chunk_bytes", path=path, heap_size=heap_size,
                         n_heaps=n_heaps, max_packet_size=JUMBO, members=members, member=member)
        if not gen.get("ok"):
            return {"ok": False, "error": "could not generate the input: " + gen.get("error", "")}
        paths.append(path)
    return paths


def _chunk_rounds(runner, rounds, variants):
    """Run each variant ``(key, impl, scenario, params)`` once per round,
    the order reversed every other round; every repetition is kept."""
    runs = {key: [] for key, _, _, _ in variants}
    for k in range(rounds):
        for key, impl, scenario, params in (variants if k % 2 == 0 else variants[::-1]):
            runs[key].append(runner.run(impl, scenario, **params))
    return {key: merge_reps(results) for key, results in runs.items()}


def _bench_chunk_buffer(runner, work, name, heap_size, s):
    """Both sides receive the same file into chunks with a numba place
    callback; ours also with a ChunkPlacement. ``rounds`` processes per
    side, alternating; every repetition's rate is kept."""
    variants = [("ref", "ref", dict(place="numba")),
                ("ours", "ours", dict(place="numba")),
                ("ours_placement", "ours", dict(place="placement"))]
    if s.get("nontemporal"):
        # the reference's own non-temporal copy, against our defaults
        variants.append(("ref_nontemporal", "ref", dict(place="numba", memcpy="nontemporal")))
    paths = _gen_chunk_inputs(runner, work, name, heap_size, s["n_heaps"], 1)
    if isinstance(paths, dict):
        return {key: paths for key, _, _ in variants}
    params = dict(path=paths[0], heap_size=heap_size, n_heaps=s["n_heaps"], budget=s["budget"],
                  heaps_per_chunk=CHUNK_HEAPS)
    out = _chunk_rounds(runner, s["rounds"], [(key, impl, "chunk_buffer", dict(params, **extra))
                                              for key, impl, extra in variants])
    os.unlink(paths[0])
    return out


def bench_chunk_group_4k(runner, s, work):
    """One ChunkRingStream fed all the heaps from one buffer against a
    ChunkStreamRingGroup of ``members`` members, each on its own thread and
    fed its share of every chunk from its own buffer; both sides, numba
    place callback, ``rounds`` processes each, alternating."""
    name, heap_size, n_heaps = "chunk_group_4k", 4 * KiB, s["n_heaps"]
    keys = ("ref", "ours", "ref_group", "ours_group")
    single = _gen_chunk_inputs(runner, work, name + ".all", heap_size, n_heaps, 1)
    shares = _gen_chunk_inputs(runner, work, name, heap_size, n_heaps, s["members"])
    for paths in (single, shares):
        if isinstance(paths, dict):
            return {key: paths for key in keys}
    common = dict(heap_size=heap_size, n_heaps=n_heaps, budget=s["budget"],
                  heaps_per_chunk=CHUNK_HEAPS, place="numba")
    variants = []
    for impl in ("ref", "ours"):
        variants += [(impl, impl, "chunk_buffer", dict(common, path=single[0])),
                     (impl + "_group", impl, "chunk_group_buffer", dict(common, paths=shares))]
    out = _chunk_rounds(runner, s["rounds"], variants)
    for path in single + shares:
        os.unlink(path)
    return out


def merge_reps(results):
    """One result from several processes' repetitions: every rate, the
    highest peak RSS, and the first error if none succeeded."""
    good = [r for r in results if r.get("ok")]
    if not good:
        return results[0]
    out = dict(good[0])
    for key in ("rates", "cpu_rates"):
        out[key] = sorted(x for r in good for x in r.get(key, []))
    out["heaps_per_s"] = out["rates"][-1]
    out["maxrss_kib"] = max(r["maxrss_kib"] for r in good)
    out["heaps"] = min(r["heaps"] for r in good)
    out["processes"] = len(good)
    return out


def bench_chunk_buffer_4k(runner, s, work):
    return _bench_chunk_buffer(runner, work, "chunk_buffer_4k", 4 * KiB, s)


def bench_chunk_buffer_64k(runner, s, work):
    return _bench_chunk_buffer(runner, work, "chunk_buffer_64k", 64 * KiB, s)


def bench_chunk_udp(runner, s, work):
    return bench_recv_udp(runner, s, work, CHUNK_UDP)


def spread_runs(runner, runs, scenario, **params):
    """Run ``scenario`` for both sides in ``runs`` separate processes each,
    alternating which goes first; returns every result of each side (for
    min / median / max rather than only the best)."""
    out = {"ref": [], "ours": []}
    for k in range(runs):
        for impl in (("ref", "ours") if k % 2 == 0 else ("ours", "ref")):
            if out[impl] and not any(r.get("ok") for r in out[impl]):
                continue  # it failed every time so far; it will fail again
            out[impl].append(runner.run(impl, scenario, **params))
    return out


def bench_send_bytes_spread(runner, s, work):
    return spread_runs(runner, s["runs"], "send_bytes", heap_size=MiB, n_heaps=s["n_heaps"],
                       max_packet_size=JUMBO, min_reps=2, max_reps=3, budget=0.5)


def bench_send_heaps_udp_large(runner, s, work):
    return spread_runs(runner, s["runs"], "send_heaps_udp", heap_size=64 * KiB,
                       n_groups=s["n_groups"], max_packet_size=JUMBO, budget=s["budget"])


def bench_send_heaps_udp_small(runner, s, work):
    return spread_runs(runner, s["runs"], "send_heaps_udp", heap_size=KiB,
                       n_groups=s["n_groups"], max_packet_size=SMALL_PACKET, budget=s["budget"])


def bench_send_tcp_large(runner, s, work):
    return spread_runs(runner, s["runs"], "send_tcp_sink", heap_size=MiB,
                       n_heaps=s["n_heaps"], max_packet_size=JUMBO, budget=s["budget"])


# ---------------------------------------------------------------------------
# Report.

def fmt_rate(value, unit):
    if value is None:
        return "n/a"
    if unit == "GB/s":
        return f"{value:.2f}"
    if unit == "heaps/s":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def fmt_ratio(ours, ref):
    if ours is None or ref in (None, 0):
        return "n/a"
    return f"{ours / ref:.2f}"


def fmt_spread(values):
    """``(min-max)`` of the values that were measured."""
    got = [v for v in values if v is not None]
    if len(got) < 2:
        return ""
    return f"({min(got):.2f}-{max(got):.2f})"


def fmt_rss(result):
    if not result or "maxrss_kib" not in result or not result.get("ok"):
        return "n/a"
    return f"{result['maxrss_kib'] / 1024:.0f} MiB"


def metric(result, key):
    return result.get(key) if result and result.get("ok") else None


def lossless_rate(trials):
    """The highest rate the sender achieved in a trial that, like every trial at a lower
    target rate, lost nothing.

    Achieved rates vary from trial to trial (the sender shares the machine), so a
    higher target does not always mean a higher achieved rate. ``None`` if no trial
    ran; 0.0 if even the slowest lost heaps.
    """
    best = None
    for t in sorted(trials, key=lambda t: t["rate_gbps"]):
        if not t.get("ok"):
            break
        best = best or 0.0
        if t.get("lost") != 0:
            break
        sender = t.get("sender") or {}
        best = max(best, sender.get("gbps") if sender.get("ok") else t["rate_gbps"])
    return best


def unthrottled_loss(sweeps, impl):
    """``(percent of heaps lost, the sender's rates)`` over the unthrottled
    trials of ``impl`` that ran; the percentage is None if none did."""
    un = [sw["unthrottled"][impl] for sw in sweeps if sw["unthrottled"][impl].get("ok")]
    sent = sum(t["sent"] for t in un)
    speeds = [t["sender"]["gbps"] for t in un if (t.get("sender") or {}).get("ok")]
    return (100.0 * sum(t["lost"] for t in un) / sent if sent else None), speeds


def spread_values(results, key, pick=None):
    """The figures of the successful runs of one side."""
    values = []
    for r in results:
        if r.get("ok"):
            value = pick(r) if pick else r.get(key)
            if value is not None:
                values.append(value)
    return values


def fmt_min_median_max(values, unit):
    """``min / median / max`` of the figures of one side's runs."""
    if not values:
        return "n/a"
    return " / ".join(fmt_rate(v, unit) for v in (min(values), median_or_none(values),
                                                   max(values)))


def median_or_none(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def build_report(results, meta, errors):
    lines = [
        "# Benchmarks: ours vs the reference spead2 4.5.1",
        "",
        f"Run {meta['date']} on {meta['machine']} "
        f"({'quick' if meta['quick'] else 'default'} settings, {meta['elapsed']:.0f} s). "
        "Both implementations ran in the same run, one process per measurement; only the "
        "ratios are comparable between machines.",
        "",
        f"- ours: {meta['ours']}",
        f"- reference: {meta['ref']}",
        "",
    ]
    memcpy = metric(results.get("memcpy", {}).get("memcpy"), "gbps")
    if "memcpy" in results:
        total = results["memcpy"]["memcpy"].get("total", 0) // MiB
        lines += [f"memcpy bandwidth (numpy copy of a {total} MiB buffer in 1 MiB blocks into "
                  f"a reused 1 MiB block): **{fmt_rate(memcpy, 'GB/s')} GB/s**", ""]
    rows = []

    def row(label, unit, pair, key):
        ref, ours = metric(pair.get("ref"), key), metric(pair.get("ours"), key)
        rows.append(f"| {label} | {unit} | {fmt_rate(ref, unit)} | {fmt_rate(ours, unit)} | "
                    f"{fmt_ratio(ours, ref)} | {fmt_rss(pair.get('ref'))} | "
                    f"{fmt_rss(pair.get('ours'))} |")

    if "recv_large" in results:
        pair = results["recv_large"]
        row("Buffer receive, 1 MiB heaps in 8972-byte packets, `ItemGroup.update` per heap",
            "GB/s", pair, "gbps")
        fractions = {}
        for impl in ("ref", "ours"):
            got, limit = metric(pair.get(impl), "gbps"), metric(pair.get(impl), "memcpy_gbps")
            fractions[impl] = (fmt_ratio(got, limit), fmt_rate(limit, "GB/s"))
        rows.append(f"| ... as a fraction of memcpy of the same input in the same process "
                    f"(memcpy GB/s in brackets) | x memcpy | {fractions['ref'][0]} "
                    f"({fractions['ref'][1]}) | {fractions['ours'][0]} ({fractions['ours'][1]}) "
                    f"| | | |")
        if memcpy:
            ref, ours = metric(pair.get("ref"), "gbps"), metric(pair.get("ours"), "gbps")
            rows.append(f"| ... as a fraction of the separate memcpy figure above | x memcpy | "
                        f"{fmt_ratio(ref, memcpy)} | {fmt_ratio(ours, memcpy)} | | | |")
    if "recv_small" in results:
        row("Buffer receive, 1 KiB single-packet heaps, `ItemGroup.update` per heap",
            "heaps/s", results["recv_small"], "heaps_per_s")
    if "recv_udp" in results:
        sweeps = results["recv_udp"]["sweeps"]
        best = {impl: median_or_none([lossless_rate(sw["trials"][impl]) for sw in sweeps])
                for impl in ("ref", "ours")}
        rss = {impl: max((t for sw in sweeps for t in sw["trials"][impl] if t.get("ok")),
                         key=lambda t: t.get("maxrss_kib", 0), default=None)
               for impl in ("ref", "ours")}
        label = ("highest rate (as sent) with no heap lost at it or any lower target rate; "
                 "capped by what the sender achieves")
        if len(sweeps) > 1:
            label += f", median of {len(sweeps)} sweeps"
        rows.append(f"| UDP loopback receive from the reference sender, 1 MiB heaps: {label} "
                    f"| GB/s | {fmt_rate(best['ref'], 'GB/s')} | "
                    f"{fmt_rate(best['ours'], 'GB/s')} | {fmt_ratio(best['ours'], best['ref'])} | "
                    f"{fmt_rss(rss['ref'])} | {fmt_rss(rss['ours'])} |")
        loss = {impl: unthrottled_loss(sweeps, impl)[0] for impl in ("ref", "ours")}
        un_rss = {impl: max((sw["unthrottled"][impl] for sw in sweeps
                             if sw["unthrottled"][impl].get("ok")),
                            key=lambda t: t.get("maxrss_kib", 0), default=None)
                  for impl in ("ref", "ours")}
        rows.append(
            "| UDP loopback receive, reference sender unthrottled: heaps lost"
            + (f" (all {len(sweeps)} sweeps)" if len(sweeps) > 1 else "") + " | % | "
            + " | ".join("n/a" if loss[i] is None else f"{loss[i]:.1f}" for i in ("ref", "ours"))
            + f" | | {fmt_rss(un_rss['ref'])} | {fmt_rss(un_rss['ours'])} |")
    if "recv_tcp" in results:
        trials = results["recv_tcp"]["trials"]
        rates = {impl: [t["gbps"] for t in trials[impl] if t.get("ok") and t.get("gbps")]
                 for impl in ("ref", "ours")}
        med = {impl: median_or_none(rates[impl]) for impl in ("ref", "ours")}
        rss = {impl: max((t for t in trials[impl] if t.get("ok")),
                         key=lambda t: t.get("maxrss_kib", 0), default=None)
               for impl in ("ref", "ours")}

        def spread(values, unit="GB/s"):
            if not values:
                return "n/a"
            return (f"{fmt_rate(median_or_none(values), unit)} "
                    f"({fmt_rate(min(values), unit)}-{fmt_rate(max(values), unit)})")

        rows.append(f"| TCP loopback receive from the reference sender (`TcpStream`, unthrottled), "
                    f"1 MiB heaps in 8972-byte packets, `ItemGroup.update` per heap: median of "
                    f"{max(len(rates['ref']), len(rates['ours']))} (min-max) | GB/s | "
                    f"{spread(rates['ref'])} | {spread(rates['ours'])} | "
                    f"{fmt_ratio(med['ours'], med['ref'])} | {fmt_rss(rss['ref'])} | "
                    f"{fmt_rss(rss['ours'])} |")
        # the receiving process's CPU time per GB: its own cost, less at the
        # mercy of the sender and of other load than the rate
        cpu = {impl: [t["cpu_s_per_gb"] for t in trials[impl]
                      if t.get("ok") and t.get("cpu_s_per_gb")] for impl in ("ref", "ours")}
        cpu_med = {impl: median_or_none(cpu[impl]) for impl in ("ref", "ours")}
        rows.append(f"| ... CPU time of the receiving process per GB received (lower is better; "
                    f"Ref/Ours in the ratio column) | s/GB | {spread(cpu['ref'], 'x')} | "
                    f"{spread(cpu['ours'], 'x')} | {fmt_ratio(cpu_med['ref'], cpu_med['ours'])} "
                    f"| | |")
    if "send_bytes_large" in results:
        row("Send 1 MiB heaps into `BytesStream` (8972-byte packets)", "GB/s",
            results["send_bytes_large"], "gbps")
    if "send_udp_large" in results:
        row("Send 1 MiB heaps over UDP loopback (8972-byte packets)", "GB/s",
            results["send_udp_large"], "gbps")
        row("Send 1 MiB heaps over UDP loopback (8972-byte packets)", "heaps/s",
            results["send_udp_large"], "heaps_per_s")
    if "send_udp_small" in results:
        row("Send 1 KiB heaps over UDP loopback", "heaps/s", results["send_udp_small"],
            "heaps_per_s")
    for name in ("udp_e2e", "udp_e2e_pinned", "udp_e2e_rt"):
        for packet, runs in results.get(name, {}).items():
            if packet == "error":
                continue
            how = E2E_SETUPS[name]
            values = {impl: e2e_values(runs[impl]) for impl in ("ref", "ours")}
            med = {impl: median_or_none(values[impl]) for impl in ("ref", "ours")}
            spread = {impl: fmt_spread(values[impl]) for impl in ("ref", "ours")}
            rows.append(f"| UDP loopback end to end, each library to itself with its own bench "
                        f"tool (ours `spead2-bench`, reference `spead2_bench.py master/agent`), "
                        f"1 MiB heaps in {packet}-byte packets{how}: highest lossless rate "
                        f"as sent, median (min-max) of {len(runs['ours'])} runs | GB/s | "
                        f"{fmt_rate(med['ref'], 'GB/s')} {spread['ref']} | "
                        f"{fmt_rate(med['ours'], 'GB/s')} {spread['ours']} | "
                        f"{fmt_ratio(med['ours'], med['ref'])} | | |")

    for state, pair in results.get("recv_pcap", {}).items():
        size = pair.get("file_bytes", 0) / 1e9
        label = (f"Replay a {size:.2f} GB pcap capture (`add_udp_pcap_file_reader`), 1 MiB heaps "
                 f"in 8972-byte packets, `ItemGroup.update` per heap; file {state}, in the page "
                 "cache; median of runs")
        row(label, "GB/s", pair, "gbps")
        row(label, "heaps/s", pair, "heaps_per_s")
    spread_rows = []

    def spread_row(label, unit, pair, key, pick=None):
        ref = spread_values(pair.get("ref", []), key, pick)
        ours = spread_values(pair.get("ours", []), key, pick)
        ref_m, ours_m = median_or_none(ref), median_or_none(ours)
        rows.append(f"| {label} (median of {len(ours)} processes) | {unit} | "
                    f"{fmt_rate(ref_m, unit)} | {fmt_rate(ours_m, unit)} | "
                    f"{fmt_ratio(ours_m, ref_m)} | "
                    f"{fmt_rss(max(pair.get('ref', []), key=lambda r: r.get('maxrss_kib', 0), default=None))} | "
                    f"{fmt_rss(max(pair.get('ours', []), key=lambda r: r.get('maxrss_kib', 0), default=None))} |")
        spread_rows.append(f"| {label} | {unit} | {fmt_min_median_max(ref, unit)} | "
                           f"{fmt_min_median_max(ours, unit)} | {len(ref)} / {len(ours)} |")

    if "send_heaps_udp_large" in results:
        spread_row("`send_heaps` round robin, 4 heaps of 64 KiB to 4 UDP substreams (8972-byte "
                   "packets)", "heaps/s", results["send_heaps_udp_large"], "heaps_per_s")
    if "send_heaps_udp_small" in results:
        spread_row("`send_heaps` round robin, 4 heaps of 1 KiB to 4 UDP substreams", "heaps/s",
                   results["send_heaps_udp_small"], "heaps_per_s")
    if "send_tcp_large" in results:
        spread_row("Send 1 MiB heaps over TCP loopback to a socket that reads and discards "
                   "(8972-byte packets)", "GB/s", results["send_tcp_large"], "gbps")
    if "send_bytes_spread" in results:
        pair = results["send_bytes_spread"]
        spread_row("Send 1 MiB heaps into `BytesStream`, best repetition of each process",
                   "GB/s", pair, "gbps")
        spread_row("... first repetition of each process (memory never touched before)",
                   "GB/s", pair, None, lambda r: (r.get("gbps_reps") or [None])[0])
    if rows:
        lines += ["| Scenario | Unit | Reference | Ours | Ours/Ref | Ref peak RSS | Ours peak RSS |",
                  "|---|---|---:|---:|---:|---:|---:|", *rows, ""]
    if spread_rows:
        lines += ["Spread over separate processes (min / median / max; each process keeps its "
                  "best of a few repetitions unless said otherwise):", "",
                  "| Scenario | Unit | Reference | Ours | Runs (ref / ours) |",
                  "|---|---|---|---|---:|", *spread_rows, ""]

    if "recv_udp" in results:
        sweeps = results["recv_udp"]["sweeps"]
        lines += [f"UDP loopback rate sweeps ({len(sweeps)}; reference sender, 1 MiB heaps in "
                  "8972-byte packets; per sweep: heaps lost of heaps sent, then the sender's "
                  "achieved rate; a receiver is not tried again in a sweep after two lossy "
                  "rates):", "",
                  "| Target rate | Reference receiver | Our receiver |",
                  "|---:|---|---|"]
        by_rate = {}
        for k, sw in enumerate(sweeps):
            for impl in ("ref", "ours"):
                for t in sw["trials"][impl]:
                    by_rate.setdefault(t["rate_gbps"], {}).setdefault(impl, {})[k] = t
                by_rate.setdefault("unthrottled", {}).setdefault(impl, {})[k] = \
                    sw["unthrottled"][impl]

        def cell(t):
            if t is None:
                return "-"
            if not t.get("ok"):
                return "n/a"
            sender = t.get("sender") or {}
            speed = f" @ {sender['gbps']:.2f}" if sender.get("ok") else ""
            return f"{t['lost']}/{t['sent']}{speed}"

        for rate, per_impl in by_rate.items():
            target = "unthrottled" if rate == "unthrottled" else f"{rate:.2f} GB/s"
            cells = ["; ".join(cell(per_impl.get(impl, {}).get(k)) for k in range(len(sweeps)))
                     for impl in ("ref", "ours")]
            lines.append(f"| {target} | {cells[0]} | {cells[1]} |")
        per_sweep = {impl: ", ".join(fmt_rate(lossless_rate(sw["trials"][impl]), "GB/s")
                                     for sw in sweeps) for impl in ("ref", "ours")}
        lines += ["", f"Lossless rate in each sweep (GB/s as sent): reference {per_sweep['ref']}; "
                  f"ours {per_sweep['ours']}.", ""]

    for state, pair in results.get("recv_pcap", {}).items():
        runs = pair["runs"]

        def spread(impl):
            values = sorted(r["gbps"] for r in runs[impl])
            if not values:
                return "n/a"
            return (f"{values[0]:.2f} / {median_or_none(values):.2f} / {values[-1]:.2f} GB/s "
                    f"({len(values)} runs)")

        lines += [f"Capture replay, file {state}, min / median / max: reference "
                  f"{spread('ref')}; ours {spread('ours')}.", ""]

    if "udp_e2e" in results:
        lines += e2e_details(results["udp_e2e"])
    for name in ("udp_e2e_pinned", "udp_e2e_rt"):
        runs = results.get(name)
        if isinstance(runs, dict) and "error" not in runs:
            lines += e2e_details(runs, E2E_SETUPS[name])
    if "capture" in results:
        lines += capture.report_lines(results["capture"])
    lines += chunk_report(results)
    if errors:
        lines += ["Not measured:", ""]
        lines += [f"- {e}" for e in errors]
        lines.append("")
    return "\n".join(lines)


def e2e_values(runs):
    """The figures (GB/s) of the runs of one side that found a lossless rate."""
    return [r["gbps"] for r in runs if r.get("ok") and r.get("gbps")]


# How each end-to-end scenario sets both sides up, as the report says it
E2E_SETUPS = {
    "udp_e2e": "",
    "udp_e2e_pinned": (", sender and receiver pinned to CPUs of their own "
                       "(`--send-affinity`/`--recv-affinity`)"),
    "udp_e2e_rt": (", the receiving process real-time (SCHED_FIFO 10: ours "
                   "`--recv-rt-priority 10`, the reference's agent under `chrt -f 10`)"),
}


def e2e_details(results, how=""):
    """Each end-to-end run: its figure, and how fast its sender went unthrottled."""
    lines = [f"UDP end to end{how}, each run (GB/s; each rate tried in {e2e.REF_PASSES} passes of "
             f"about 1 GB, each allowed to lose {e2e.REF_LOSS_ALLOWED} heap, as the reference "
             f"judges; in brackets the sender's unthrottled rate; see `benchmarks/e2e.py`):",
             ""]
    for packet, runs in results.items():
        cells = {}
        for impl in ("ref", "ours"):
            parts = []
            for r in runs[impl]:
                if not r.get("ok"):
                    parts.append(f"n/a ({short_error(r.get('error') or 'failed')})")
                    continue
                if impl == "ref":
                    un = r.get("unthrottled_gbps")
                    if r.get("limited_by_send"):
                        un = r["gbps"]
                else:
                    first = (r.get("trials") or [{}])[0]
                    un = (first.get("send_rate") or 0) / 1e9 or None
                sender = f" ({un:.2f})" if un else ""
                parts.append(f"{r['gbps']:.2f}{sender} in {r.get('seconds', 0):.0f} s")
            cells[impl] = "; ".join(parts) or "n/a"
        lines.append(f"- {packet}-byte packets: reference {cells['ref']}; ours {cells['ours']}")
    return lines + [""]


def fmt_chunk_spread(result, key="rates"):
    """``max (median, min)`` of a chunk result's repetitions, in M heaps/s."""
    values = (result or {}).get(key) if (result or {}).get("ok") else None
    if not values:
        return "n/a"
    return (f"{max(values) / 1e6:.3f} ({median_or_none(values) / 1e6:.3f}, "
            f"{min(values) / 1e6:.3f})")


def spread_ratio(ours, ref, key="rates"):
    """Ours/reference of the maxima and of the medians."""
    a, b = (ours or {}).get(key), (ref or {}).get(key)
    if not (ours or {}).get("ok") or not (ref or {}).get("ok") or not a or not b:
        return "n/a"
    return f"{max(a) / max(b):.2f} ({median_or_none(a) / median_or_none(b):.2f})"


def chunk_group_rows(runs):
    """One stream against a group of members, each side; and the group's
    rate over the stream's (medians), each side."""
    rows = []
    members = SETTINGS["chunk_group_4k"][0]["members"]
    for suffix, what in (("", "one `ChunkRingStream` on one thread, all heaps from one buffer"),
                         ("_group", f"a {members}-member `ChunkStreamRingGroup` (lossless), "
                                    f"each member on its own thread and fed its share of "
                                    f"every chunk from its own buffer")):
        ref, ours = runs["ref" + suffix], runs["ours" + suffix]
        for rate_key, unit in (("rates", "M heaps/s"), ("cpu_rates", "M heaps per CPU s")):
            reps = "/".join(str(len(r.get("rates", []))) for r in (ref, ours))
            label = (f"Chunk receive from buffers, 4 KiB heaps (one packet each), {CHUNK_HEAPS} "
                     f"per chunk, numba place callback: {what} ({reps} repetitions)"
                     if rate_key == "rates" else "... per second of CPU time (all threads)")
            rows.append(f"| {label} | {unit} | {fmt_chunk_spread(ref, rate_key)} | "
                        f"{fmt_chunk_spread(ours, rate_key)} | "
                        f"{spread_ratio(ours, ref, rate_key)} | {fmt_rss(ref)} | "
                        f"{fmt_rss(ours)} |")

    def group_over_single(impl):
        group, single = runs[impl + "_group"], runs[impl]
        if not group.get("ok") or not single.get("ok"):
            return "n/a"
        return f"{median_or_none(group['rates']) / median_or_none(single['rates']):.2f}"

    rows.append(f"| ... the group's rate over the single stream's (medians) | ratio | "
                f"{group_over_single('ref')} | {group_over_single('ours')} | | | |")
    return rows


def chunk_report(results):
    """The chunk stream section: its own table, since each cell is a spread."""
    rows = []
    for name, size in (("chunk_buffer_4k", "4 KiB heaps (one 8972-byte packet each)"),
                       ("chunk_buffer_64k", "64 KiB heaps in 8972-byte packets")):
        if name not in results:
            continue
        pair = results[name]
        for key, ref_key, what in (
                ("ours", "ref", "numba place callback on both sides"),
                ("ours_placement", "ref", "ours with a `ChunkPlacement`, the reference with "
                                          "its numba callback"),
                ("ours", "ref_nontemporal", "numba place callback on both sides, the "
                                            "reference with `MEMCPY_NONTEMPORAL`, ours with "
                                            "its default")):
            if ref_key not in pair:
                continue
            for rate_key, unit in (("rates", "M heaps/s"), ("cpu_rates", "M heaps per CPU s")):
                reps = "/".join(str(len(pair[k].get("rates", []))) for k in (ref_key, key))
                label = (f"Chunk receive from a buffer, {size}, {CHUNK_HEAPS} per chunk, {what} "
                         f"({reps} repetitions)" if rate_key == "rates"
                         else "... per second of CPU time (all threads)")
                rows.append(f"| {label} | {unit} | {fmt_chunk_spread(pair[ref_key], rate_key)} | "
                            f"{fmt_chunk_spread(pair[key], rate_key)} | "
                            f"{spread_ratio(pair[key], pair[ref_key], rate_key)} | "
                            f"{fmt_rss(pair[ref_key])} | {fmt_rss(pair[key])} |")
    if "chunk_group_4k" in results:
        rows += chunk_group_rows(results["chunk_group_4k"])
    if "chunk_udp" in results:
        sweeps = results["chunk_udp"]["sweeps"]
        best = {impl: median_or_none([lossless_rate(sw["trials"][impl]) for sw in sweeps])
                for impl in ("ref", "ours")}
        per_sweep = {impl: ", ".join(fmt_rate(lossless_rate(sw["trials"][impl]), "GB/s")
                                     for sw in sweeps) for impl in ("ref", "ours")}
        rows.append(f"| Chunk receive over UDP loopback from our sender, 64 KiB heaps in "
                    f"8972-byte packets, {CHUNK_HEAPS} per chunk, numba place callback: highest "
                    f"rate (as sent) with no heap lost at it or any lower target rate, median of "
                    f"{len(sweeps)} sweeps (each sweep) | GB/s | "
                    f"{fmt_rate(best['ref'], 'GB/s')} ({per_sweep['ref']}) | "
                    f"{fmt_rate(best['ours'], 'GB/s')} ({per_sweep['ours']}) | "
                    f"{fmt_ratio(best['ours'], best['ref'])} | | |")
        loss = {}
        for impl in ("ref", "ours"):
            percent, speeds = unthrottled_loss(sweeps, impl)
            loss[impl] = ("n/a" if percent is None else f"{percent:.1f} (sent at "
                          + ", ".join(f"{v:.2f}" for v in speeds) + " GB/s)")
        rows.append(f"| ... our sender unthrottled: heaps lost | % | {loss['ref']} | "
                    f"{loss['ours']} | | | |")
    if not rows:
        return []
    return ["Chunk streams (`ChunkRingStream`, 4 chunks in the window, 8 chunks (UDP: 16) "
            "cycling through the rings; figures are max (median, min) over every repetition "
            "of every process; ratios are of the maxima (medians)):", "",
            "| Scenario | Unit | Reference | Ours | Ours/Ref | Ref peak RSS | Ours peak RSS |",
            "|---|---|---:|---:|---:|---:|---:|", *rows, ""]


def collect_errors(results):
    errors = []
    seen = set()

    def add(name, impl, result):
        if result and not result.get("ok"):
            msg = f"{impl} / {name}: {short_error(result.get('error', 'failed'))}"
            if msg not in seen:
                seen.add(msg)
                errors.append(msg)

    for name, pair in results.items():
        if name == "recv_pcap":
            for state in pair.values():
                for impl in ("ref", "ours"):
                    add(name, impl, state.get(impl))
        elif name == "recv_tcp":
            for impl in ("ref", "ours"):
                for t in pair["trials"][impl]:
                    add(name, impl, t)
        elif name in ("udp_e2e", "udp_e2e_pinned", "udp_e2e_rt"):
            for runs in pair.values():
                if not isinstance(runs, dict):
                    continue
                for impl in ("ref", "ours"):
                    for r in runs[impl]:
                        add(f"{name}", impl, r)
        elif name == "capture":
            if "error" in pair:
                add(name, "ours", {"ok": False, "error": pair["error"]})
            for res in pair.values():
                for sweep in res.get("sweeps", []) if isinstance(res, dict) else []:
                    for kind, trials in sweep.items():
                        for t in trials:
                            add(name, kind, t)
        elif name in ("recv_udp", "chunk_udp"):
            for sweep in pair["sweeps"]:
                for impl in ("ref", "ours"):
                    for t in sweep["trials"][impl] + [sweep["unthrottled"][impl]]:
                        add(name, impl, t)
        else:
            for impl, result in pair.items():
                for one in result if isinstance(result, list) else [result]:
                    add(name, impl, one)
    return errors


def describe_python(python, env):
    code = ("import sys, spead2, numpy; print(f'spead2 {spead2.__version__} "
            "({spead2.__file__}), numpy {numpy.__version__}, Python {sys.version.split()[0]}')")
    try:
        proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              timeout=60, env=env, cwd=tempfile.gettempdir())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{python}: {exc}"
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        return None, f"{python}: {err[-1] if err else 'failed'}"
    return proc.stdout.strip(), None


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    parser.add_argument("--write", action="store_true", help=f"write {ROOT / 'BENCHMARKS.md'}")
    parser.add_argument("--ours-python", default=sys.executable,
                        help="interpreter that imports our spead2 (default: this one)")
    parser.add_argument("--ref-python", help="reference interpreter (default: the cached "
                        f"environment, ${refimpl.VENV_ENV_VAR} or {refimpl.DEFAULT_VENV})")
    parser.add_argument("--only", nargs="+", choices=SCENARIO_NAMES, metavar="NAME",
                        help=f"run only these scenarios: {', '.join(SCENARIO_NAMES)}")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="limit for each measurement process, seconds")
    args = parser.parse_args()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.ref_python:
        ref_python = Path(args.ref_python)
    else:
        log("locating the reference environment (installing it on first use)...")
        try:
            ref_python = refimpl.ensure_ref_python()
        except refimpl.RefUnavailable as exc:
            log(f"the reference spead2 {refimpl.REF_VERSION} could not be installed: {exc}")
            return 2
    # Absolute but not resolved: a virtual environment's python is a symlink.
    ours_python = Path(os.path.abspath(args.ours_python))
    runner = Runner(ref_python, ours_python, args.timeout, log)
    ref_desc, err = describe_python(ref_python, runner.envs["ref"])
    if err:
        log(f"the reference interpreter does not work: {err}")
        return 2
    ours_desc, err = describe_python(ours_python, runner.envs["ours"])
    if err:
        runner.disabled["ours"] = f"our spead2 cannot be imported: {err}"
        ours_desc = f"{ours_python} (does not import spead2: {short_error(err)})"
    elif ours_desc.startswith(f"spead2 {refimpl.REF_VERSION} "):
        log(f"--ours-python {ours_python} imports the reference spead2, not ours")
        return 2

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="spead2-bench-"))
    results = {}
    try:
        for name in args.only or SCENARIO_NAMES:
            log(f"{name}:")
            settings = SETTINGS[name][1 if args.quick else 0]
            results[name] = globals()[f"bench_{name}"](runner, settings, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "quick": args.quick,
        "elapsed": time.monotonic() - started,
        "ours": ours_desc,
        "ref": ref_desc,
    }
    report = build_report(results, meta, collect_errors(results))
    print(report)
    if args.write:
        (ROOT / "BENCHMARKS.md").write_text(report)
        log(f"wrote {ROOT / 'BENCHMARKS.md'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
