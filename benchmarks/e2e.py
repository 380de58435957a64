"""UDP end to end, each library to itself, measured by its own bench tool.

Ours: ``spead2-bench`` (``python -m spead2.tools.bench --json``): sender and
receiver as separate processes. The reference: ``spead2_bench.py agent`` and
``spead2_bench.py master`` (its C++ sender and receiver, driven from
Python). Both search for the highest rate at which no heap is lost; the
figure compared is that rate as the sender achieved it, in GB/s.
"""

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours(python: str, env: Dict[str, str], heap_size: int, packet_size: int,
         max_time: float, timeout: float) -> Optional[float]:
    """Our highest lossless rate (GB/s as sent), or None if the run failed."""
    cmd = [python, "-m", "spead2.tools.bench", "--json", "--heap-size", str(heap_size),
           "--packet-size", str(packet_size), "--max-time", str(max_time)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    best = result.get("best_send_rate")
    return best / 1e9 if best else None


def reference(python: str, env: Dict[str, str], heap_size: int, packet_size: int,
              timeout: float) -> Optional[float]:
    """The reference's sustainable rate (GB/s), or None if the run failed."""
    bench = Path(python).parent / "spead2_bench.py"
    port = _free_tcp_port()
    agent = subprocess.Popen([python, str(bench), "agent", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # the agent listens once it has started
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or agent.poll() is not None:
                    return None
                time.sleep(0.1)
        proc = subprocess.run([python, str(bench), "master", "--quiet", "--heap-size",
                               str(heap_size), "--packet", str(packet_size),
                               f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=timeout, env=env)
        # --quiet prints only the rate in Gbps (the achieved rate of the
        # highest good trial)
        lines = proc.stdout.strip().splitlines()
        try:
            return float(lines[-1]) / 8
        except (IndexError, ValueError):
            return None
    finally:
        agent.kill()
        agent.wait()


def run(pythons: Dict[str, str], envs: Dict[str, Dict[str, str]], heap_size: int,
        packet_size: int, reps: int, max_time: float, timeout: float,
        log: Callable[[str], None]) -> Dict[str, List[Optional[float]]]:
    """``reps`` runs of each side, alternating which goes first."""
    out: Dict[str, List[Optional[float]]] = {"ref": [], "ours": []}
    for k in range(reps):
        for impl in (("ref", "ours") if k % 2 == 0 else ("ours", "ref")):
            log(f"  {impl:4} udp_e2e packet={packet_size} run {k + 1}/{reps}")
            try:
                if impl == "ours":
                    value = ours(pythons[impl], envs[impl], heap_size, packet_size, max_time,
                                 timeout)
                else:
                    value = reference(pythons[impl], envs[impl], heap_size, packet_size, timeout)
            except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
                log(f"    failed: {exc}")
                value = None
            out[impl].append(value)
    return out
