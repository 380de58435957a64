"""The programs in ``examples/``, run as a person runs them, with bounded time."""

import random
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_tools import tool_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 180.0


def loopback_multicast_works() -> bool:
    """Whether a datagram sent to an IPv4 group on the loopback interface
    reaches a socket that joined the group there (it does not without a
    multicast-capable lo, or where the group is filtered)."""
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.bind((group, 0))
        try:
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                          socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                          socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("b", 1))
            rx.settimeout(2.0)
            tx.sendto(b"probe", (group, rx.getsockname()[1]))
            return rx.recv(16) == b"probe"
        except OSError:
            return False


needs_multicast = pytest.mark.skipif(not loopback_multicast_works(),
                                     reason="IPv4 multicast does not work on loopback here")


def run_scale_out(*args: str) -> subprocess.CompletedProcess:
    base = f"239.255.{random.randint(1, 254)}.{random.randint(1, 200)}"
    return subprocess.run([sys.executable, str(EXAMPLES / "scale_out.py"), "--base-group", base,
                           *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env=tool_env())


@needs_multicast
def test_scale_out_every_heap_arrives_once_at_its_receiver():
    started = time.monotonic()
    result = run_scale_out()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^4 receivers joined (239\.255\.\d+\.\d+, ){3}239\.255\.\d+\.\d+ "
                     r"\(port \d+\) on 127\.0\.0\.1", out, re.M), out
    assert re.search(r"^sent 1000 heaps \(\d+ bytes\)", out, re.M)
    for k in range(4):
        first = ", ".join(str(k + 4 * j) for j in range(3))
        assert re.search(rf"^receiver {k} \(239\.255\.\d+\.\d+\): 250 of 250 heaps "
                         rf"\[{first}, \.\.\. {996 + k}\], lost 0, duplicates 0, bad 0, "
                         rf"incomplete 0, \d+ packets, end of stream$", out, re.M), out
    assert re.search(r"^all 1000 heaps arrived exactly once, each at its receiver with the "
                     r"right payload", out, re.M)
    assert time.monotonic() - started < 120


@needs_multicast
def test_scale_out_fails_on_a_lost_or_repeated_heap():
    result = run_scale_out("--heaps", "40", "--omit", "5", "--repeat", "6,30")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^receiver 1 .*: 9 of 10 heaps .* lost 1, .*<-- 1 lost$", out, re.M), out
    assert re.search(r"^receiver 2 .*: 10 of 10 heaps .* duplicates 2, .*<-- 2 duplicates$",
                     out, re.M), out
    assert re.search(r"^FAILED: 1 heaps missing \[5\], 2 arrived more than once \[6, 30\]",
                     out, re.M), out


def test_scale_out_roles_need_their_options():
    for args, fragment in ((["--role", "receiver"], "--group"),
                           (["--role", "sender"], "--port")):
        result = subprocess.run([sys.executable, str(EXAMPLES / "scale_out.py"), *args],
                                capture_output=True, text=True, timeout=60, env=tool_env())
        assert result.returncode == 2
        assert fragment in result.stderr
