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

import gc
import logging
import math
import os
import re
import socket
import textwrap
import threading
import time

import numpy as np
import pytest

import spead2
import spead2.recv
from spead2._logging import install as install_rate_limit
from conftest import wait_for, wait_until_blocked
from isolated import check_python
from packets import header, heap_packets, packet, pointer
from ports import free_udp_port
from refimpl import call_with_timeout


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
            # CPU time of this thread: what the refusal costs, however loaded
            # the machine is
            start = time.thread_time()
            try:
                ig.update(heap)
                if not value:
                    # an empty addressed item is left out of a received
                    # heap (as spead2 does): decode the empty value directly
                    ig[descriptor.name].set_from_raw(value)
            except ValueError as exc:
                print("ValueError", round(time.thread_time() - start, 1), exc)
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
        self.threads = []  # the thread that emitted each record

    def emit(self, record):
        self.records.append(record.getMessage())
        self.threads.append(record.thread)

    def count(self, text, thread=None):
        return sum(text in message and (thread is None or thread == emitter)
                   for message, emitter in zip(self.records, self.threads))


@pytest.fixture
def spead2_log(monkeypatch):
    """A LogCounter on the ``spead2`` logger, whose rate limiter
    (``spead2._logging``) starts afresh: ``handler.limiter.suppressed()``
    is then what it suppressed in this test, beside what the stream's own
    limits did (``stats.log_suppressed``)."""
    logger = logging.getLogger("spead2")
    handler = LogCounter()
    handler.limiter = install_rate_limit()
    monkeypatch.setattr(handler.limiter, "_budgets", {})
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


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
        # the stream's log budget starts with the stream: time it from before
        start = time.monotonic()
        stream = spead2.recv.Stream(tp, max_heaps=2)
        port = free_udp_port()
        stream.add_udp_reader(port, bind_hostname="127.0.0.1", buffer_size=1 << 20)
        received = []

        def consume():
            received.extend(stream)

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        assert wait_until_blocked(consumer, consume)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cnt = 0
        flood_start = time.monotonic()
        while time.monotonic() - flood_start < 2.0:
            for _ in range(200):
                cnt += 1
                # each packet is half of a new heap: it can never complete
                tx.sendto(packet(cnt, b"x", 0, 2, hab=48), ("127.0.0.1", port))
            # pacing, so that the 1 MiB socket buffer absorbs the flood (what
            # is lost is not counted anywhere, and not checked); no ordering
            time.sleep(0.002)
        tx.close()
        # lines the consumer emitted while it waited in get() during the flood
        from_consumer = spead2_log.count("dropped incomplete heap", consumer.ident)
        assert wait_for(lambda: stream.stats.packets >= cnt * 0.5)
        stream.stop()
        consumer.join(10)
        elapsed = time.monotonic() - start
        assert not consumer.is_alive()
        stats = stream.stats
        assert received == []
        assert from_consumer > 0
        drops = stats.incomplete_heaps_evicted + stats.incomplete_heaps_flushed
        assert drops == stats.packets > 5000
        logged = spead2_log.count("dropped incomplete heap")
        assert logged + stats.log_suppressed + spead2_log.limiter.suppressed() == drops
        assert logged <= log_line_limit(elapsed)
        tp.stop()

    def test_two_million_distinct_heap_cnts_through_a_buffer(self, spead2_log):
        n = 2_000_000
        data = single_packet_heaps(np.arange(1, n + 1, dtype=np.uint64), heap_length=2)
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp)
        gc.collect()
        before = rss_bytes()
        start = time.monotonic()
        stream.add_buffer_reader(data)
        heaps = call_with_timeout(lambda: sum(1 for _ in stream), 60, "draining the stream")
        elapsed = time.monotonic() - start
        growth = rss_bytes() - before
        stats = stream.stats
        assert heaps == 0
        assert stats.packets == n and stats.bytes == n
        assert stats.incomplete_heaps_evicted + stats.incomplete_heaps_flushed == n
        logged = spead2_log.count("dropped incomplete heap")
        assert logged + stats.log_suppressed + spead2_log.limiter.suppressed() == n
        assert logged <= log_line_limit(elapsed)
        assert growth < RSS_SLACK, f"RSS grew by {growth / 2**20:.1f} MiB"
        tp.stop()


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss():
    """Reset VmHWM (Linux >= 4.0); False if this kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


#: Allowed RSS growth for floods that must cost nothing once dropped.
RSS_SLACK = 16 << 20

_SINGLE = np.dtype([("header", ">u8"), ("cnt", ">u8"), ("length", ">u8"), ("offset", ">u8"),
                    ("payload_length", ">u8"), ("payload", "u1")])


def single_packet_heaps(cnts, heap_length, offsets=None, hab=48):
    """Packets of one payload byte, one per element of ``cnts`` (numpy, so
    millions are cheap): flavour SPEAD-64-``hab``, HEAP_LENGTH ``heap_length``,
    at ``offsets`` (default 0)."""
    arr = np.zeros(len(cnts), _SINGLE)
    arr["header"] = 0x5304000000000004 | ((64 - hab) // 8) << 40 | (hab // 8) << 32

    def imm(item_id, value):
        return (1 << 63) | (item_id << hab) | np.asarray(value, dtype=np.uint64)

    arr["cnt"] = imm(1, cnts)
    arr["length"] = imm(2, heap_length)
    arr["offset"] = imm(3, 0 if offsets is None else offsets)
    arr["payload_length"] = imm(4, 1)
    arr["payload"] = 0x5A
    return arr.tobytes()


def valid_heap(cnt, hab=48):
    payload = bytes(range(256)) * 20
    return heap_packets(cnt, payload, 1400, items=[(False, 0x1000, 0)], hab=hab), payload


def check_valid_heap_arrives(stream, cnt, payload):
    heaps = call_with_timeout(lambda: list(stream), 30, "draining the stream")
    matches = [h for h in heaps if h.cnt == cnt]
    assert len(matches) == 1
    (item,) = matches[0].get_items()
    assert bytes(item) == payload


class TestClaims:
    """Packets whose fields claim far more than they carry (SPEAD-64-48, so
    values up to 2**48 - 1 fit)."""

    HUGE = [2**40, 2**40 + 1, 2**47, 2**48 - 1]

    def hostile_packets(self):
        out = []
        for i, claim in enumerate(self.HUGE):
            cnt = 100 + i
            out.append(packet(cnt, b"h" * 100, 0, claim, hab=48))               # HEAP_LENGTH
            out.append(packet(cnt + 10, b"o" * 100, claim - 100, None, hab=48))  # offset, no length
            out.append(packet(cnt + 20, b"", claim, claim, hab=48))             # empty, at the end
            out.append(packet(cnt + 30, b"p" * 8, claim - 8, claim, hab=48))     # last bytes only
        return out

    @pytest.mark.parametrize("allocator", ["default", "mmap", "pool"])
    def test_claims_beyond_max_heap_size_are_rejected_before_allocation(self, allocator):
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp, max_heaps=4)
        if allocator == "mmap":
            stream.set_memory_allocator(spead2.MmapAllocator())
        elif allocator == "pool":
            stream.set_memory_allocator(spead2.MemoryPool(1 << 20, 1 << 30, 2, 0))
        hostile = self.hostile_packets()
        good, payload = valid_heap(5)
        gc.collect()
        before = rss_bytes()
        stream.add_buffer_reader(b"".join(hostile * 50 + good))
        check_valid_heap_arrives(stream, 5, payload)
        stats = stream.stats
        assert stats.rejected_packets == len(hostile) * 50
        assert stats.bytes == len(payload)
        assert rss_bytes() - before < RSS_SLACK
        tp.stop()

    def test_claims_within_a_raised_limit_fail_allocation_or_stay_untouched(self):
        # max_heap_size above 2**40: a 2**40-byte heap is either refused by
        # the allocator (the packet is rejected and counted) or mapped
        # lazily; either way only the pages written cost memory.
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp, max_heaps=2, max_heap_size=2**41)
        stream.set_memory_allocator(spead2.MmapAllocator())
        good, payload = valid_heap(5)
        hostile = [packet(100 + i, b"s" * 64, (i * 7919 * 4096) % 2**40, 2**40, hab=48)
                   for i in range(200)]
        gc.collect()
        before = rss_bytes()
        stream.add_buffer_reader(b"".join(hostile + good))
        check_valid_heap_arrives(stream, 5, payload)
        stats = stream.stats
        assert stats.packets == len(hostile) + len(good)
        assert stats.rejected_packets + stats.incomplete_heaps_evicted \
            + stats.incomplete_heaps_flushed >= len(hostile) / 2
        assert rss_bytes() - before < RSS_SLACK
        tp.stop()

    def test_live_heap_memory_is_bounded_by_max_heaps_times_max_heap_size(self):
        # Each packet writes one byte per page of an 8 MiB heap: the
        # worst case for the memory a packet can make resident. 48 heaps
        # of 2048 packets each; only max_heaps of them are alive at once.
        max_heap_size, max_heaps = 8 << 20, 4
        pages = max_heap_size // 4096
        cnts = np.repeat(np.arange(1, 49, dtype=np.uint64), pages)
        offsets = np.tile(np.arange(pages, dtype=np.uint64) * 4096, 48)
        data = single_packet_heaps(cnts, max_heap_size, offsets)
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp, max_heaps=max_heaps, max_heap_size=max_heap_size)
        stream.set_memory_allocator(spead2.MmapAllocator())
        gc.collect()
        if not reset_peak_rss():
            pytest.skip("this kernel cannot reset the peak RSS")
        before = rss_bytes()
        stream.add_buffer_reader(data)
        assert call_with_timeout(lambda: sum(1 for _ in stream), 60, "draining") == 0
        peak = peak_rss_bytes() - before
        assert stream.stats.incomplete_heaps_evicted + stream.stats.incomplete_heaps_flushed == 48
        assert peak <= max_heaps * max_heap_size + RSS_SLACK, f"peak {peak / 2**20:.0f} MiB"
        assert peak >= max_heap_size  # the test did make heaps resident
        assert rss_bytes() - before < RSS_SLACK
        tp.stop()


class TestItemPointers:
    def test_pointer_flood_into_a_heap_that_never_completes(self):
        # Packets without payload are never duplicates: repeated with new
        # item pointers each time, each one added its 1000 pointers to the
        # heap, so a heap kept incomplete grew without limit (150 MiB for
        # 150 MiB of packets). A heap's pointers are held to max_heap_size
        # bytes, like its payload.
        max_heap_size = 1 << 20
        n_flood = 20000
        base = np.frombuffer(packet(7, b"", 0, 1, [(True, 0x1000 + i % 100, 0)
                                                   for i in range(1000)]), np.uint8)
        flood = np.tile(base, (n_flood, 1))
        # the five address bytes of pointer i of copy k hold k * 1000 + i, so
        # no pointer repeats another
        values = (np.arange(n_flood, dtype=np.uint64)[:, None] * 1000
                  + np.arange(1000, dtype=np.uint64)[None, :])
        for b in range(5):
            column = 8 + 4 * 8 + 3 + b + 8 * np.arange(1000)
            flood[:, column] = ((values >> np.uint64(8 * (4 - b))) & np.uint64(0xFF)).astype(np.uint8)
        good = packet(8, b"g" * 16, 0, 16, [(True, 0x1000 + i, i) for i in range(1000)])
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp, max_heap_size=max_heap_size)
        stream.set_memory_allocator(spead2.MmapAllocator())
        data = flood.tobytes() + good
        del flood
        gc.collect()
        if not reset_peak_rss():
            pytest.skip("this kernel cannot reset the peak RSS")
        before = rss_bytes()
        stream.add_buffer_reader(data)
        heaps = call_with_timeout(lambda: list(stream), 60, "draining")
        peak = peak_rss_bytes() - before
        assert peak < 2 * max_heap_size + RSS_SLACK, f"peak {peak / 2**20:.0f} MiB"
        accepted = max_heap_size // 8 // 1000
        assert stream.stats.rejected_packets == n_flood - accepted
        (heap,) = heaps  # the flooded heap never completed; the good one did
        assert heap.cnt == 8 and len(heap.get_items()) == 1000
        tp.stop()

    def test_repeated_pointers_are_kept_once(self):
        # The same packet over and over (or every packet of a heap carrying
        # all its pointers) adds nothing after the first time.
        flood = packet(7, b"", 0, 2, [(True, 0x1000 + i % 100, i) for i in range(1000)])
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp, max_heap_size=1 << 20)
        stream.add_buffer_reader(flood * 5000 + packet(7, b"x", 0, 2) + packet(7, b"y", 1, 2))
        (heap,) = call_with_timeout(lambda: list(stream), 60, "draining")
        assert len(heap.get_items()) == 1000
        assert stream.stats.rejected_packets == 0
        tp.stop()


class TestDegeneratePackets:
    def degenerate(self):
        return [
            packet(1, b"", 0, 0),                                  # empty heap, complete
            packet(2, b"", 5, 10),                                 # empty, mid-heap
            packet(3, b"", 0, None, [(True, 0x1000, 7)]),          # only an immediate
            header(0),                                             # header, no pointers
            header(3) + pointer(True, 1, 4),                       # claims 3 pointers, has 1
            header(0xFFFF) + pointer(True, 1, 4) * 10,             # claims 65535 pointers
            packet(4, b"abc", 0, 3, [(False, 0x1000, 3), (False, 0x1001, 2**40 - 1)]),
            packet(5, b"q" * 16, 0, 16)[:-8],                      # payload cut short
        ]

    def test_buffer_reader(self):
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp)
        good, payload = valid_heap(50)
        # In a byte stream a packet cut short takes its payload from what
        # follows: zero bytes keep that from being the valid heap.
        stream.add_buffer_reader(b"".join(self.degenerate()) + bytes(64) + b"".join(good))
        heaps = call_with_timeout(lambda: list(stream), 30, "draining")
        by_cnt = {h.cnt: h for h in heaps}
        (item,) = by_cnt[50].get_items()
        assert bytes(item) == payload
        assert by_cnt[1].get_items() == []
        ig = spead2.ItemGroup()
        for h in heaps:
            ig.update(h)
        tp.stop()

    def test_udp_reader(self):
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp)
        port = free_udp_port()
        stream.add_udp_reader(port, bind_hostname="127.0.0.1", max_size=9200)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        datagrams = [b"", b"\x53", bytes(8)] + self.degenerate() + [bytes(9201)]
        for dgram in datagrams:
            tx.sendto(dgram, ("127.0.0.1", port))
        good, payload = valid_heap(50, hab=40)
        for p in good:
            tx.sendto(p, ("127.0.0.1", port))
        deadline = time.monotonic() + 10
        heaps = []
        while not any(h.cnt == 50 for h in heaps):
            assert time.monotonic() < deadline, stream.stats
            try:
                heaps.append(stream.get_nowait())
            except spead2.Empty:
                time.sleep(0.005)
        stats = stream.stats
        assert stats.too_large_packets == 1
        # "", "\x53", 8 zero bytes, bare header, 3 claimed of 1, 65535 claimed, cut payload
        assert stats.bad_packets == 7
        (item,) = heaps[-1].get_items()
        assert bytes(item) == payload
        stream.stop()
        tx.close()
        tp.stop()


class TestHeapWarningsAreRateLimited:
    def test_a_flood_of_heaps_with_bad_contents(self, spead2_log):
        # Malformed descriptors are logged when the consumer looks at the
        # heap, also at most 32 lines
        # a second per stream; a later line says how many were suppressed.
        bad_descriptor = b"\x53\x04\x03\x05\x00\x00\x00\x00"
        heaps = []
        for cnt in range(1, 3001):
            payload = bad_descriptor + b"v" * 8
            heaps.append(packet(cnt, payload, 0, len(payload),
                                [(False, spead2.DESCRIPTOR_ID, 0), (False, 0x1000, 8)]))
        tp = spead2.ThreadPool()
        start = time.monotonic()  # the stream's budget starts with the stream
        stream = spead2.recv.Stream(tp)
        stream.add_buffer_reader(b"".join(heaps))
        ig = spead2.ItemGroup()
        n = 0
        for heap in stream:
            ig.update(heap)
            n += 1
            if n == 1500:
                # A new second: a new budget, and a count of the rest. The
                # limiter reads the real monotonic clock and the library has
                # no clock to inject, so the second has to pass; the sleep
                # orders nothing.
                time.sleep(1.1)
        elapsed = time.monotonic() - start
        assert n == 3000
        warnings = [m for m in spead2_log.records if "malformed descriptor" in m]
        assert 32 <= len(warnings) <= log_line_limit(elapsed)
        suppressed = [m for m in warnings if "similar messages suppressed" in m]
        # counts of the stream's limit and of the logger's
        counts = re.findall(r"\((\d+) similar messages suppressed\)", suppressed[0]) if suppressed \
            else []
        assert sum(map(int, counts)) > 1000
        tp.stop()
