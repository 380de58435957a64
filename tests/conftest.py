import asyncio
import dis
import inspect
import platform
import socket
import sys
import time

import pytest

import refimpl
import spead2


@pytest.fixture(scope="session")
def ref_python():
    """The reference implementation (spead2 4.5.1) in its own environment, as a
    :class:`refimpl.RefPython`; installed on first use, and the test is skipped
    if it cannot be installed."""
    try:
        return refimpl.RefPython(refimpl.ensure_ref_python())
    except refimpl.RefUnavailable as exc:
        pytest.skip(f"the reference spead2 {refimpl.REF_VERSION} could not be installed: {exc}")


@pytest.fixture
def receiver():
    """A plain UDP socket on 127.0.0.1 (4 MiB buffer, 5 s timeout) to capture
    what a sender writes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


@pytest.fixture
def thread_pool():
    """A fresh ``spead2.ThreadPool`` for one test, stopped afterwards."""
    pool = spead2.ThreadPool()
    yield pool
    pool.stop()


# ---------------------------------------------------------------------------
# Waiting for observable state instead of sleeping a fixed time

def wait_for(predicate, timeout=10.0, interval=0.002):
    """Poll ``predicate`` until it is true (returns True) or ``timeout``
    seconds have passed (returns False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# futex(2) by machine, for /proc/<pid>/task/<tid>/syscall
_FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98, "riscv64": 98, "ppc64le": 221, "s390x": 238,
                  "i686": 240, "armv7l": 240}


def _kernel_waits_on_futex(native_id):
    """Whether the thread is asleep in the kernel in futex(2), the call under
    every pthread mutex and condition variable wait, as /proc shows it.

    The files are read with the GIL released (a read(2) of a regular file
    does that), so a thread that was merely waiting for the GIL has been
    woken when the state is taken, and reads as running, not asleep."""
    base = f"/proc/self/task/{native_id}/"
    try:
        with open(base + "stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(base + "wchan") as f:
            wchan = f.read()
        with open(base + "syscall") as f:
            syscall = f.read().split()
    except (OSError, IndexError):
        return False
    if state != "S":
        return False
    futex_nr = _FUTEX_SYSCALL.get(platform.machine())
    return "futex" in wchan or (bool(syscall) and syscall[0] == str(futex_nr))


def _parked_in_call(frame, where):
    """Whether ``frame`` (the innermost Python frame of a thread) is that of
    function ``where``, stopped at a call or a ``for`` loop's next step: the
    thread is inside compiled code called from there (compiled functions such
    as ``Stream.get`` have no Python frame of their own)."""
    if frame is None or frame.f_code is not getattr(where, "__code__", where):
        return False
    for ins in dis.get_instructions(frame.f_code):
        if ins.offset == frame.f_lasti:
            return ins.opname.startswith(("CALL", "PRECALL", "FOR_ITER"))
    return False


def wait_until_blocked(thread, where, timeout=10.0, samples=3):
    """Wait until ``thread`` is blocked in a compiled call such as
    ``Stream.get`` made from function ``where``: its innermost Python frame
    is that function's, stopped at a call or a ``for`` step, and the thread
    sleeps in futex(2), on ``samples`` consecutive looks with the GIL let go
    between them, so that a thread only waiting for the GIL gets the chance
    to move on. Returns False if that is not seen within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        if not thread.is_alive():
            return False
        before = sys._current_frames().get(thread.ident)
        lasti = before.f_lasti if before is not None else None
        if (_parked_in_call(before, where) and _kernel_waits_on_futex(thread.native_id)
                and sys._current_frames().get(thread.ident) is before
                and before.f_lasti == lasti):
            seen += 1
            if seen >= samples:
                return True
        else:
            seen = 0
        time.sleep(0.002)
    return False


async def wait_until_suspended(tasks, name="get", timeout=10.0):
    """Let the event loop run until every task in ``tasks`` is suspended
    inside a coroutine function called ``name`` (at an ``await`` in it), as
    ``Task.get_stack`` shows. Returns False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout

    def suspended(task):
        if task.done():
            return False
        coro = task.get_coro()
        stack = task.get_stack()
        return (inspect.getcoroutinestate(coro) == inspect.CORO_SUSPENDED
                and bool(stack) and stack[-1].f_code.co_name == name)

    while not all(suspended(t) for t in tasks):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.001)
    return True


def datagrams_waiting(sock):
    """Every datagram already queued on ``sock``, without waiting for more."""
    out = []
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        while True:
            out.append(sock.recv(65536))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(timeout)
