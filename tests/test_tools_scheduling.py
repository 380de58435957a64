"""Where and how the tools' threads run: spead2-send --affinity, spead2-recv
--rt-priority, spead2-bench --send-affinity / --recv-affinity /
--recv-rt-priority, and the thread pool's warning for CPUs it cannot use."""

import ctypes
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest

import spead2
from ports import free_udp_port
from test_tools import ToolProcess, assert_one_error_line, run_tool, tool_cmd, tool_env

ALLOWED = sorted(os.sched_getaffinity(0))


def _task_files(pid: int, name: str) -> Dict[int, str]:
    """Each thread of ``pid`` and its /proc file ``name`` (threads that end
    meanwhile are left out)."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(task)] = Path(f"/proc/{pid}/task/{task}/{name}").read_text()
        except OSError:
            pass
    return out


def _task_cpus(pid: int) -> Dict[int, str]:
    """Each thread of ``pid`` and the CPUs it may run on (as /proc lists them)."""
    return {task: line.split(":", 1)[1].strip()
            for task, status in _task_files(pid, "status").items()
            for line in status.splitlines() if line.startswith("Cpus_allowed_list:")}


def _threads_while_sending(*extra: str) -> Dict[int, str]:
    """Start spead2-send at a slow rate to a socket of this test; once its
    datagrams arrive, the CPU lists of its threads."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(20)
        port = sink.getsockname()[1]
        proc = subprocess.Popen(tool_cmd("send", "--heaps", "100000", "--heap-size", "64Ki",
                                         "--rate", "5M", *extra, f"127.0.0.1:{port}"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=tool_env())
        try:
            sink.recv(65536)    # sending has begun: every thread has started
            return _task_cpus(proc.pid)
        finally:
            proc.kill()
            proc.wait(10)
            proc.stderr.close()


def test_send_affinity_pins_every_thread():
    cpu = ALLOWED[-1]
    pinned = _threads_while_sending("--affinity", str(cpu))
    assert len(pinned) >= 2, pinned   # the main thread and the pool's worker at least
    assert set(pinned.values()) == {str(cpu)}


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs to tell pinned from unpinned")
def test_send_without_affinity_is_not_pinned():
    free = _threads_while_sending()
    assert all("," in cpus or "-" in cpus for cpus in free.values()), free


def test_send_affinity_list_of_cpus():
    cpus = ALLOWED[:2]
    pinned = _threads_while_sending("--affinity", ",".join(map(str, cpus)))
    expected = str(cpus[0]) if len(cpus) == 1 else (
        f"{cpus[0]}-{cpus[1]}" if cpus[1] == cpus[0] + 1 else f"{cpus[0]},{cpus[1]}")
    assert set(pinned.values()) == {expected}


def test_send_affinity_unusable_cpu_is_one_error_line():
    result = run_tool("send", "--affinity", "99999", "--heaps", "1",
                      f"127.0.0.1:{free_udp_port()}")
    assert_one_error_line(result, "spead2-send", "cannot run on CPUs 99999")


@pytest.mark.parametrize("text", ["x", "1-", "-1"])
def test_send_affinity_malformed_is_a_usage_error(text):
    result = run_tool("send", f"--affinity={text}", "--heaps", "1", "127.0.0.1:9")
    assert result.returncode == 2
    assert "invalid CPU list" in result.stderr
    assert "Traceback" not in result.stderr


# spead2-bench hands its affinities to the tools it runs: record their
# command lines (the tools still run).
_RECORDER = """
import json, subprocess, sys
calls = []
real_run, real_popen = subprocess.run, subprocess.Popen
def run(cmd, *a, **k):
    calls.append(list(cmd)); return real_run(cmd, *a, **k)
class Popen(real_popen):
    def __init__(self, cmd, *a, **k):
        calls.append(list(cmd)); super().__init__(cmd, *a, **k)
subprocess.run, subprocess.Popen = run, Popen
from spead2.tools import bench
try:
    code = bench.main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as f:
        json.dump(calls, f)
sys.exit(code)
"""


def _bench_commands(tmp_path, *args: str):
    record = tmp_path / "calls.json"
    result = subprocess.run([sys.executable, "-c", _RECORDER, str(record), "--json",
                             "--heap-size", "16Ki", "--heaps", "20", "--max-time", "20", *args],
                            capture_output=True, text=True, timeout=120, env=tool_env())
    calls = json.loads(record.read_text())
    senders = [c for c in calls if "spead2.tools.send" in c]
    receivers = [c for c in calls if "spead2.tools.recv" in c]
    return result, senders, receivers


def _option(cmd, name):
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_bench_passes_affinities_to_the_tools(tmp_path):
    send_cpu, recv_cpu = ALLOWED[0], ALLOWED[-1]
    result, senders, receivers = _bench_commands(
        tmp_path, "--send-affinity", str(send_cpu), "--recv-affinity", str(recv_cpu))
    assert result.returncode == 0, result.stderr
    assert senders and receivers
    assert {_option(c, "--affinity") for c in senders} == {str(send_cpu)}
    assert {_option(c, "--affinity") for c in receivers} == {str(recv_cpu)}
    assert all("--rt-priority" not in c for c in senders + receivers)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["trials"] and all(t["lost"] == 0 for t in summary["trials"])


def test_bench_without_affinities_pins_nothing(tmp_path):
    result, senders, receivers = _bench_commands(tmp_path)
    assert result.returncode == 0, result.stderr
    assert senders and receivers
    assert all("--affinity" not in c and "--rt-priority" not in c
               for c in senders + receivers)


def test_bench_unusable_send_cpu_is_reported(tmp_path):
    result, senders, _ = _bench_commands(tmp_path, "--send-affinity", "99999")
    assert result.returncode != 0
    assert "cannot run on CPUs 99999" in result.stderr
    assert "Traceback" not in result.stderr


def test_thread_pool_warns_of_cpus_it_cannot_use(caplog):
    with caplog.at_level(logging.WARNING, logger="spead2"):
        pool = spead2.ThreadPool(1, [ALLOWED[0], 99999])
        pool.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "CPU 99999" in warnings[0]


def test_thread_pool_usable_cpus_need_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="spead2"):
        pool = spead2.ThreadPool(2, ALLOWED)
        pool.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def _worker_threads() -> Dict[int, str]:
    """This process's thread-pool workers and their CPU lists."""
    out = {}
    for tid, cpus in _task_cpus(os.getpid()).items():
        try:
            name = Path(f"/proc/{os.getpid()}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        if name == "spead2-worker":
            out[tid] = cpus
    return out


def test_thread_pool_pins_its_workers():
    cpu = ALLOWED[-1]
    before = set(_worker_threads())
    pool = spead2.ThreadPool(2, [cpu])
    try:
        deadline = time.monotonic() + 10
        new: Dict[int, str] = {}
        while time.monotonic() < deadline:
            new = {t: c for t, c in _worker_threads().items() if t not in before}
            if len(new) >= 2 and set(new.values()) == {str(cpu)}:
                break
            time.sleep(0.01)
        assert len(new) == 2 and set(new.values()) == {str(cpu)}, new
    finally:
        pool.stop()


# ---------------------------------------------------------------------------
# Real-time priority

def _may_run_realtime() -> bool:
    """Whether this process may put a thread under SCHED_FIFO (tried on a
    short-lived child, so that this process keeps its policy)."""
    probe = subprocess.run([sys.executable, "-c",
                            "import os; os.sched_setscheduler(0, os.SCHED_FIFO, "
                            "os.sched_param(1))"], capture_output=True)
    return probe.returncode == 0


REALTIME = _may_run_realtime()
needs_realtime = pytest.mark.skipif(
    not REALTIME, reason="real-time scheduling is not permitted here (needs root, "
                         "CAP_SYS_NICE or RLIMIT_RTPRIO)")


def _policies(pid: int) -> Dict[int, tuple]:
    """Each thread of ``pid``: (scheduling policy, real-time priority)."""
    out = {}
    for task, stat in _task_files(pid, "stat").items():
        fields = stat.rsplit(")", 1)[1].split()
        # after the command: field 3 is fields[0]; rt_priority is field 40, policy 41
        out[task] = (int(fields[41 - 3]), int(fields[40 - 3]))
    return out


@needs_realtime
@pytest.mark.parametrize("mode", ["stream", "capture"])
def test_recv_rt_priority_makes_every_thread_realtime(tmp_path, mode):
    port = free_udp_port()
    args = ["--rt-priority", "7", f"127.0.0.1:{port}"]
    if mode == "capture":
        args = ["--capture", str(tmp_path / "c.pcap"), *args]
    tool = ToolProcess("recv", *args,
                       ready="capturing from" if mode == "capture" else "receiving from")
    try:
        assert tool.wait_ready(20), tool.stderr_lines
        threads = _policies(tool.proc.pid)
        if mode == "stream":
            assert len(threads) >= 2, threads   # the main thread and a worker at least
        assert set(threads.values()) == {(os.SCHED_FIFO, 7)}, threads
    finally:
        tool.kill()


def test_recv_without_rt_priority_is_not_realtime():
    tool = ToolProcess("recv", f"127.0.0.1:{free_udp_port()}")
    try:
        assert tool.wait_ready(20), tool.stderr_lines
        threads = _policies(tool.proc.pid)
        assert threads and all(policy == os.SCHED_OTHER for policy, _ in threads.values())
    finally:
        tool.kill()


@needs_realtime
def test_recv_rt_priority_receives_every_heap():
    port = free_udp_port()
    tool = ToolProcess("recv", "--rt-priority", "5", "-q", "--json", f"127.0.0.1:{port}")
    try:
        assert tool.wait_ready(20), tool.stderr_lines
        sent = run_tool("send", "--heaps", "50", "--heap-size", "8Ki", "--rate", "20M",
                        f"127.0.0.1:{port}")
        assert sent.returncode == 0, sent.stderr
        code, stdout, stderr = tool.finish(20)   # the end-of-stream heap ends it
    finally:
        tool.kill()
    assert code == 0, stderr
    summary = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    assert summary["heaps"] == 50


PR_CAPBSET_DROP = 24
CAP_SYS_NICE = 23


def _without_realtime() -> None:
    """In the child before it runs the tool: no permission for real-time
    scheduling. The rlimit is what binds an unprivileged process; root
    (which would still have CAP_SYS_NICE) drops that capability from its
    bounding set, so that the program it runs next does not get it."""
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_recv_rt_priority_refused_is_one_error_line():
    result = subprocess.run(tool_cmd("recv", "--rt-priority", "5", f"127.0.0.1:{free_udp_port()}"),
                            capture_output=True, text=True, timeout=30, env=tool_env(),
                            preexec_fn=_without_realtime)
    assert_one_error_line(result, "spead2-recv", "real-time priority 5", "CAP_SYS_NICE")


@pytest.mark.parametrize("text", ["0", "100", "x", "-3"])
def test_recv_rt_priority_out_of_range_is_a_usage_error(text):
    result = run_tool("recv", f"--rt-priority={text}", "9")
    assert result.returncode == 2
    assert "invalid priority" in result.stderr
    assert "Traceback" not in result.stderr


@needs_realtime
def test_bench_passes_rt_priority_to_the_receiver(tmp_path):
    result, senders, receivers = _bench_commands(tmp_path, "--recv-rt-priority", "3")
    assert result.returncode == 0, result.stderr
    assert senders and receivers
    assert {_option(c, "--rt-priority") for c in receivers} == {"3"}
    assert all("--rt-priority" not in c for c in senders)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["trials"] and all(t["lost"] == 0 for t in summary["trials"])
