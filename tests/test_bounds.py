"""Hostile sizes: what a packet or descriptor claims must not decide how much
memory or time the receiver spends.

Bounds documented in the README ("Reliability") and checked here:

- a packet claiming more than ``max_heap_size`` (HEAP_LENGTH or offset +
  length) is rejected before anything is allocated;
- memory held for heaps under assembly is at most ``max_heaps`` heaps of at
  most ``max_heap_size`` bytes each, whatever the packets claim;
- any number of incomplete heaps costs nothing once evicted: each drop is
  counted (``incomplete_heaps_evicted`` / ``incomplete_heaps_flushed``) and
  logged, at most 32 log lines per second per stream, the rest counted in
  ``stats.log_suppressed``;
- a received descriptor cannot make ``ItemGroup.update`` build an unbounded
  value or recurse without bound.
"""

import logging
import math
import socket
import textwrap
import threading
import time

import pytest

import spead2
import spead2.recv
from isolated import check_python
from packets import packet


class TestHostileShapes:
    """Descriptors whose shapes would make value decoding explode."""

    CHILD = textwrap.dedent("""
        import sys, time
        import spead2, spead2.recv
        from packets import packet

        def receive_and_update(descriptor, value):
            flavour = spead2.Flavour()
            raw = descriptor.to_raw(flavour)
            items = [(False, spead2.DESCRIPTOR_ID, 0), (False, descriptor.id, len(raw))]
            payload = raw + value
            tp = spead2.ThreadPool()
            stream = spead2.recv.Stream(tp)
            stream.add_buffer_reader(packet(1, payload, 0, len(payload), items))
            (heap,) = list(stream)
            ig = spead2.ItemGroup()
            start = time.monotonic()
            try:
                ig.update(heap)
            except ValueError as exc:
                print("ValueError", round(time.monotonic() - start, 1), exc)
            else:
                print("value", repr(ig[descriptor.name].value)[:60])
    """)

    def run(self, code, timeout=60):
        return check_python(self.CHILD + textwrap.dedent(code), timeout=timeout)

    def test_empty_value_with_huge_leading_dimension_is_refused(self):
        # u12 has no numpy equivalent, so the value is nested lists: shape
        # (2**40 - 1, 0) used to build 2**40 - 1 empty lists (hours, then out of memory).
        out = self.run("""
            for shape in [(2**40 - 1, 0), (2**20, 2**20, 0), (2**17, 0)]:
                receive_and_update(spead2.Descriptor(0x1000, "x", "", shape, format=[("u", 12)]),
                                   b"")
        """, timeout=60)
        lines = out.splitlines()
        assert len(lines) == 3
        for line in lines:
            assert line.startswith("ValueError 0.0 an empty value of shape"), line

    def test_empty_value_with_modest_leading_dimensions_is_nested_lists(self):
        out = self.run("""
            receive_and_update(spead2.Descriptor(0x1000, "x", "", (3, 0), format=[("u", 12)]), b"")
            receive_and_update(spead2.Descriptor(0x1000, "x", "", (2, None), format=[("u", 12)]),
                               b"")
        """)
        assert out.splitlines() == ["value [[], [], []]", "value [[], []]"]

    def test_shape_with_thousands_of_dimensions_is_refused(self):
        # The nested lists were built recursively in C: 100000 dimensions of
        # size 1 overflowed the C stack (segfault).
        out = self.run("""
            for ndim in (65, 100000):
                receive_and_update(spead2.Descriptor(0x1000, "x", "", (1,) * ndim,
                                                     format=[("u", 12)]), b"\\x12\\x30")
            receive_and_update(spead2.Descriptor(0x1000, "x", "", (1,) * 64, format=[("u", 12)]),
                               b"\\x12\\x30")
        """, timeout=60)
        lines = out.splitlines()
        assert lines[0] == "ValueError 0.0 shape has 65 dimensions; at most 64 are supported"
        assert lines[1] == "ValueError 0.0 shape has 100000 dimensions; at most 64 are supported"
        assert lines[2].startswith("value " + "[" * 54)


class LogCounter(logging.Handler):
    """Counts the records of the ``spead2`` logger, by message prefix."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())

    def count(self, text):
        return sum(text in message for message in self.records)


@pytest.fixture
def spead2_log():
    logger = logging.getLogger("spead2")
    handler = LogCounter()
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_line_limit(seconds):
    """Most log lines a stream may emit in ``seconds``: 32 at once, then 32 more
    per elapsed second."""
    return LOG_BUDGET * (1 + math.ceil(seconds))


LOG_BUDGET = 32


class TestDropsAreCountedAndLogRateLimited:
    def test_udp_flood_of_incomplete_heaps_while_consumer_waits(self, spead2_log):
        # A consumer blocked in get() drains log lines as they come; the
        # budget used to be refilled on every drain, so a flood of bad
        # packets produced thousands of log lines per second.
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp, max_heaps=2)
        port = free_udp_port()
        stream.add_udp_reader(port, bind_hostname="127.0.0.1", buffer_size=1 << 20)
        received = []
        consumer = threading.Thread(target=lambda: received.extend(stream), daemon=True)
        start = time.monotonic()
        consumer.start()
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cnt = 0
        while time.monotonic() - start < 2.0:
            for _ in range(200):
                cnt += 1
                # each packet is half of a new heap: it can never complete
                tx.sendto(packet(cnt, b"x", 0, 2, hab=48), ("127.0.0.1", port))
            time.sleep(0.002)
        tx.close()
        deadline = time.monotonic() + 10
        while stream.stats.packets < cnt * 0.5 and time.monotonic() < deadline:
            time.sleep(0.01)
        stream.stop()
        consumer.join(10)
        elapsed = time.monotonic() - start
        assert not consumer.is_alive()
        stats = stream.stats
        assert received == []
        drops = stats.incomplete_heaps_evicted + stats.incomplete_heaps_flushed
        assert drops == stats.packets > 5000
        logged = spead2_log.count("dropped incomplete heap")
        assert logged + stats.log_suppressed == drops
        assert logged <= log_line_limit(elapsed)
        tp.stop()
