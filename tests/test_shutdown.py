"""Shutdown and threads: stopping streams and thread pools in every state a
program can leave them in, collecting them, and exiting the interpreter
with them alive.

Every call that could block forever runs under a deadline
(:func:`refimpl.call_with_timeout` or a thread join with a timeout) whose
expiry fails the test; interpreter-exit cases run in a child interpreter
with a timeout.
"""

import asyncio
import gc
import random
import socket
import threading
import time

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.recv.asyncio
import spead2.send
import spead2.send.asyncio
from isolated import check_python
from packets import concat, packet
from refimpl import call_with_timeout

TIMEOUT = 10.0


def heap_bytes(n, size=64, start=1):
    return concat(packet(i, bytes([i % 256]) * size, 0, size, [(False, 0x1000, 0)])
                  for i in range(start, start + n))


def check_heap(heap, size=64):
    """A heap from :func:`heap_bytes`, intact."""
    (item,) = heap.get_items()
    assert item.id == 0x1000
    assert bytes(item) == bytes([heap.cnt % 256]) * size


def wait_for(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Consumer(threading.Thread):
    """Iterates over a stream in a daemon thread, recording heaps and how it ended."""

    def __init__(self, stream, check=True):
        super().__init__(daemon=True)
        self.stream = stream
        self.check = check
        self.heaps = []
        self.error = None
        self.start()

    def run(self):
        try:
            for heap in self.stream:
                if self.check:
                    check_heap(heap)
                self.heaps.append(heap.cnt)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout=TIMEOUT):
        self.join(timeout)
        assert not self.is_alive(), f"consumer still blocked after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.heaps


@pytest.fixture
def thread_pool():
    tp = spead2.ThreadPool()
    yield tp
    tp.stop()


class TestStoppingTheThreadPool:
    def test_blocked_consumers_end_when_the_pool_stops(self):
        # Nothing can serve a stream once its pool has stopped; consumers
        # blocked in get() used to wait forever.
        tp = spead2.ThreadPool()
        streams = [spead2.recv.Stream(tp) for _ in range(3)]
        streams[0].add_udp_reader(free_udp_port(), bind_hostname="127.0.0.1")
        streams[1].add_buffer_reader(heap_bytes(1000))  # paused on its full ring
        consumers = [Consumer(s) for s in streams[1:]]
        assert wait_for(lambda: streams[1].stats.worker_blocked > 0 or
                        len(consumers[0].heaps) == 1000)
        blocked = Consumer(streams[0])
        time.sleep(0.05)
        call_with_timeout(tp.stop, TIMEOUT, "ThreadPool.stop")
        assert blocked.finish() == []
        got = consumers[0].finish()
        assert got == list(range(1, len(got) + 1))
        assert consumers[1].finish() == []

    def test_get_nowait_after_the_pool_stopped_reports_stopped(self):
        tp = spead2.ThreadPool()
        s = spead2.recv.Stream(tp, ring_heaps=2)
        s.add_buffer_reader(heap_bytes(100))
        assert wait_for(lambda: s.stats.worker_blocked > 0)
        tp.stop()
        cnts = []
        with pytest.raises(spead2.Stopped):
            while True:
                cnts.append(s.get_nowait().cnt)
        assert cnts == list(range(1, len(cnts) + 1)) and len(cnts) >= 2
