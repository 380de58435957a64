import socket

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
