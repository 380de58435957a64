"""UDP end to end, each library to itself, measured by its own bench tool.

Ours: ``spead2-bench`` (``python -m spead2.tools.bench --json``): sender and
receiver as separate processes, new ones for every trial. The reference:
``spead2_bench.py agent`` and ``spead2_bench.py master`` (its C++ sender and
receiver, driven from Python; one agent process receives every trial).

Both search for the highest rate at which no heap is lost (as each judges it), and the figure
compared is that rate as the sender achieved it, in GB/s. Ours is run with
the reference's criteria: every rate is tried in ``REF_PASSES`` passes of
1 GB plus 2 heaps (``ref_heaps``), each of which may lose at most
``REF_LOSS_ALLOWED`` heap (the reference checks ``received >= sent - 1``),
to within ``REF_TOLERANCE`` (2%); its figure is the mean achieved rate of
the passes at the best rate, as the reference's is. What still differs:

- the search: the reference bisects linearly between 0 and its
  unthrottled send rate after a warm-up transfer; ours bisects on a
  logarithmic scale between ``MIN_RATE`` and that rate, after checking
  ``MIN_RATE`` itself (finding nothing if that loses heaps), and has no
  warm-up;
- bytes counted: the reference's achieved rate counts whole packets
  (headers included: about 0.5% more than the payload with 8972-byte packets,
  3% with 1472-byte ones); ours counts the heaps' payload;
- receiver: the reference agent takes heaps from a memory pool of
  heap-sized buffers; ours uses its default allocator, which keeps freed
  heap-sized blocks for reuse.

With ``affinity`` (run.py's ``udp_e2e_pinned``) both tools are given
``--send-affinity A --recv-affinity B``: the reference pins the thread pools
that send and receive; ours pins the sending process and the receiver's
worker thread. Each tool's consumer of heaps is left where the scheduler
puts it. With ``rt_priority`` (``udp_e2e_rt``) every thread of the
receiving process runs under SCHED_FIFO at that priority: ours with
``spead2-bench --recv-rt-priority``, the reference's agent started with
``chrt -f`` (its tool has no such option); the senders run as usual.
"""

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

# The reference's procedure (spead2/tools/bench_asyncio.py, run_master)
REF_PASSES = 5
REF_LOSS_ALLOWED = 1
REF_TOLERANCE = 0.02
# Ours checks its lowest rate first and gives up if that loses heaps.
MIN_RATE = "200M"


def ref_heaps(heap_size: int) -> int:
    """Heaps per pass as the reference sends them: at least 1 GB."""
    return int(1e9 / heap_size) + 2


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def affinity_args(affinity: Optional[Tuple[int, int]]) -> List[str]:
    """Both bench tools' options for a sender CPU and a receiver CPU."""
    if affinity is None:
        return []
    return ["--send-affinity", str(affinity[0]), "--recv-affinity", str(affinity[1])]


class Setup(NamedTuple):
    """How both sides run: ``affinity`` (sender CPU, receiver CPU) and
    ``rt_priority`` (the receiving process's threads under SCHED_FIFO)."""

    affinity: Optional[Tuple[int, int]] = None
    rt_priority: Optional[int] = None


def ours(python: str, env: Dict[str, str], heap_size: int, packet_size: int,
         max_time: float, timeout: float, setup: Setup = Setup()) -> Dict[str, Any]:
    """Our highest lossless rate (GB/s as sent) and every trial."""
    cmd = [python, "-m", "spead2.tools.bench", "--json", "--heap-size", str(heap_size),
           "--packet-size", str(packet_size), "--max-time", str(max_time),
           "--heaps", str(ref_heaps(heap_size)), "--passes", str(REF_PASSES),
           "--loss-allowed", str(REF_LOSS_ALLOWED), "--tolerance", str(REF_TOLERANCE),
           "--min-rate", MIN_RATE, *affinity_args(setup.affinity)]
    if setup.rt_priority is not None:
        cmd += ["--recv-rt-priority", str(setup.rt_priority)]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        return {"ok": False, "error": err[-1] if err else f"exit status {proc.returncode}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    best = result.get("best_send_rate")
    return {"ok": best is not None, "gbps": best / 1e9 if best else None,
            "error": None if best else result.get("note", "no lossless rate"),
            "note": result.get("note"), "trials": result.get("trials", []),
            "seconds": round(seconds, 1)}


_REF_LINE = re.compile(r"Rate: ([\d.]+) Gbps \(([\d.]+) actual\): (GOOD|BAD)")


def reference(python: str, env: Dict[str, str], heap_size: int, packet_size: int,
              timeout: float, setup: Setup = Setup()) -> Dict[str, Any]:
    """The reference's sustainable rate (GB/s) and its search, as it printed them."""
    bench = Path(python).parent / "spead2_bench.py"
    port = _free_tcp_port()
    # its tool has no such option: the whole agent process runs real-time
    rt = ["chrt", "-f", str(setup.rt_priority)] if setup.rt_priority is not None else []
    agent = subprocess.Popen([*rt, python, str(bench), "agent", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # the agent listens once it has started
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or agent.poll() is not None:
                    return {"ok": False, "error": "the agent did not start"}
                time.sleep(0.1)
        started = time.monotonic()
        proc = subprocess.run([python, str(bench), "master", "--heap-size", str(heap_size),
                               "--packet", str(packet_size), *affinity_args(setup.affinity),
                               f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=timeout, env=env)
        seconds = time.monotonic() - started
        out = proc.stdout
        m = re.search(r"Sustainable rate: ([\d.]+) Gbps", out)
        if not m:
            err = (proc.stderr or out).strip().splitlines()
            return {"ok": False, "error": err[-1] if err else "no result"}
        send = re.search(r"Send rate: ([\d.]+) Gbps", out)
        trials = [{"rate_gbps": float(a), "actual_gbps": float(b), "good": g == "GOOD"}
                  for a, b, g in _REF_LINE.findall(out)]
        gbps = float(m.group(1)) / 8
        return {"ok": gbps > 0, "gbps": gbps if gbps > 0 else None,
                "error": None if gbps > 0 else "no lossless rate",
                "limited_by_send": "Limited by send speed" in out,
                "unthrottled_gbps": float(send.group(1)) / 8 if send else None,
                "trials": trials, "seconds": round(seconds, 1)}
    finally:
        agent.kill()
        agent.wait()


def run(pythons: Dict[str, str], envs: Dict[str, Dict[str, str]], heap_size: int,
        packet_size: int, reps: int, max_time: float, timeout: float,
        log: Callable[[str], None], setup: Setup = Setup()) -> Dict[str, List[Dict[str, Any]]]:
    """``reps`` runs of each side, alternating which goes first, both set
    up as ``setup`` says."""
    out: Dict[str, List[Dict[str, Any]]] = {"ref": [], "ours": []}
    how = ((f" pinned {setup.affinity[0]}/{setup.affinity[1]}" if setup.affinity else "")
           + (f" rt {setup.rt_priority}" if setup.rt_priority else ""))
    for k in range(reps):
        for impl in (("ref", "ours") if k % 2 == 0 else ("ours", "ref")):
            log(f"  {impl:4} udp_e2e{how} packet={packet_size} run {k + 1}/{reps}")
            try:
                if impl == "ours":
                    value = ours(pythons[impl], envs[impl], heap_size, packet_size, max_time,
                                 timeout, setup)
                else:
                    value = reference(pythons[impl], envs[impl], heap_size, packet_size, timeout,
                                      setup)
            except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
                value = {"ok": False, "error": str(exc)}
            log(f"    {value['gbps']:.2f} GB/s in {value['seconds']} s" if value.get("ok")
                else f"    failed: {value.get('error')}")
            out[impl].append(value)
    return out
