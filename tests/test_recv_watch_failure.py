"""A UDP reader whose socket the thread pool can no longer watch.

The pool watches a reader's socket with one-shot epoll registrations,
re-armed (EPOLL_CTL_MOD) after each wake-up.  If re-arming fails, nothing
will ever read the socket again: the stream must end, with a warning,
rather than stall silently.

To make re-arming fail, the reader's descriptor number is pointed at a pipe
behind its back while a duplicate keeps the socket open: the socket's
registration lives on (it belongs to the socket's open file description),
so a datagram still wakes the reader, but EPOLL_CTL_MOD on the descriptor
number now names the pipe, which epoll does not know (ENOENT).
"""

import contextlib
import logging
import os
import socket
import time

import spead2
import spead2.recv
from packets import packet
from ports import free_udp_port

TIMEOUT = 10.0


def fds_of(sock_inode):
    """The descriptors of this process open on the socket with that inode."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == f"socket:[{sock_inode}]":
                out.append(int(name))
        except OSError:
            pass    # the descriptor of the listing itself, closed by now
    return out


@contextlib.contextmanager
def udp_reader(stream):
    """Add a UDP reader to ``stream``; yields ``(port, swap)``, where
    ``swap()`` points the reader's descriptor at a pipe."""
    port = free_udp_port()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    inode = os.fstat(sock.fileno()).st_ino
    stream.add_udp_reader(port, bind_hostname="127.0.0.1", socket=sock)
    # the descriptor the reader owns (the caller's socket stays the caller's)
    (fd,) = [n for n in fds_of(inode) if n != sock.fileno()]
    sock.close()
    keep = os.dup(fd)              # keeps the socket, and its registration, alive
    pipe_r, pipe_w = os.pipe()
    try:
        yield port, lambda: os.dup2(pipe_r, fd)
    finally:
        stream.stop()              # closes fd (the reader still owns that number)
        for other in (keep, pipe_r, pipe_w):
            os.close(other)


def drain_until_stopped(stream, timeout):
    """Get heaps until Stopped; returns how many, or None if ``timeout`` s pass first."""
    n = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stream.get_nowait()
            n += 1
        except spead2.Empty:
            time.sleep(0.01)
        except spead2.Stopped:
            return n
    return None


def check_warned(caplog):
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot watch its UDP socket" in m for m in messages), messages


def test_failed_rearm_after_a_wake_up_ends_the_stream(thread_pool, caplog):
    caplog.set_level(logging.WARNING, logger="spead2")
    stream = spead2.recv.Stream(thread_pool)
    with udp_reader(stream) as (port, swap), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        swap()
        deadline = time.monotonic() + TIMEOUT
        got = None
        while got is None and time.monotonic() < deadline:
            tx.sendto(b"wake up", ("127.0.0.1", port))
            got = drain_until_stopped(stream, 0.5)
        assert got == 0, "the stream did not stop after its socket watch failed"
        check_warned(caplog)


def test_failed_rearm_on_resume_ends_the_stream(thread_pool, caplog):
    # A full ring pauses the reader (its watch goes idle); taking a heap
    # resumes it, and the re-arm that follows is the one that fails.
    caplog.set_level(logging.WARNING, logger="spead2")
    stream = spead2.recv.Stream(thread_pool, max_heaps=1, ring_heaps=1)
    with udp_reader(stream) as (port, swap), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for cnt in range(1, 5):
            tx.sendto(packet(cnt, b"x" * 8, 0, 8), ("127.0.0.1", port))
        deadline = time.monotonic() + TIMEOUT
        while stream.stats.worker_blocked == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.stats.worker_blocked > 0, "the reader never paused"
        swap()
        got = drain_until_stopped(stream, TIMEOUT)
        assert got is not None, "the stream did not stop after its socket watch failed"
        assert 1 <= got <= 4
        check_warned(caplog)
