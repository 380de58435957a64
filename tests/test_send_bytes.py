"""StreamConfig and BytesStream."""

import threading
import time

import pytest

import spead2
import spead2.send
from test_send_support import StandInItem, addressed, data_heap, immediate, packet


class TestStreamConfig:
    def test_defaults(self):
        config = spead2.send.StreamConfig()
        assert (config.max_packet_size, config.rate, config.burst_size, config.max_heaps) == (
            1472, 0.0, 65536, 4)

    def test_keywords_and_attributes(self):
        config = spead2.send.StreamConfig(max_packet_size=9000, rate=1e6, burst_size=1000,
                                          max_heaps=2)
        assert (config.max_packet_size, config.rate, config.burst_size, config.max_heaps) == (
            9000, 1e6, 1000, 2)
        config.rate = 5
        assert config.rate == 5.0

    @pytest.mark.parametrize("kwargs", [
        {"rate": -1.0}, {"rate": float("nan")}, {"rate": float("inf")}, {"max_heaps": 0},
    ])
    def test_nonsense_is_rejected(self, kwargs):
        with pytest.raises(ValueError):
            spead2.send.StreamConfig(**kwargs)

    @pytest.mark.parametrize("size", [0, 55])
    def test_small_packet_size_is_refused_when_sending(self, thread_pool, size):
        # as in spead2 4.x: kept when set, refused when a heap is split
        config = spead2.send.StreamConfig(max_packet_size=size)
        assert config.max_packet_size == size
        stream = spead2.send.BytesStream(thread_pool, config)
        with pytest.raises(ValueError, match="^packet size is too small$"):
            stream.send_heap(spead2.send.Heap())
        assert stream.getvalue() == b""

    @pytest.mark.parametrize("kwargs", [
        {"max_packet_size": -1}, {"burst_size": -5}, {"max_heaps": -3}, {"max_heaps": 2**64},
    ])
    def test_negative_or_huge_sizes_are_range_errors(self, kwargs):
        with pytest.raises(spead2.RangeError):
            spead2.send.StreamConfig(**kwargs)

    def test_non_integer_sizes_are_rejected(self):
        with pytest.raises(TypeError):
            spead2.send.StreamConfig(max_packet_size=1472.5)
        with pytest.raises(TypeError):
            spead2.send.StreamConfig(max_heaps="4")


class TestBytesStream:
    def test_starts_empty(self, thread_pool):
        assert spead2.send.BytesStream(thread_pool).getvalue() == b""

    def test_heaps_numbered_from_1(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool)
        heap = spead2.send.Heap()
        heap.add_item(StandInItem(0x1000, b"\x2a"))
        for _ in range(3):
            stream.send_heap(heap)
        assert stream.getvalue() == b"".join(
            packet(cnt, 1, 0, [immediate(0x1000, 0x2a), addressed(0, 0)], b"\0")
            for cnt in (1, 2, 3))

    def test_matches_packet_generator(self, thread_pool):
        config = spead2.send.StreamConfig(max_packet_size=9000)
        stream = spead2.send.BytesStream(thread_pool, config)
        heaps = [data_heap(bytes([i]) * (i * 7000)) for i in range(4)]
        for heap in heaps:
            stream.send_heap(heap)
        expected = b"".join(b"".join(spead2.send.PacketGenerator(heap, i + 1, 9000))
                            for i, heap in enumerate(heaps))
        assert stream.getvalue() == expected

    def test_uses_configured_packet_size(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool, spead2.send.StreamConfig(max_packet_size=100))
        data = bytes(range(100))
        stream.send_heap(data_heap(data))
        # 96-byte packets: 48 payload bytes after the item pointer, then 56.
        assert stream.getvalue() == (
            packet(1, 100, 0, [addressed(0x1000, 0)], data[:48])
            + packet(1, 100, 48, [], data[48:]))

    def test_explicit_cnt(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool)
        stream.send_heap(spead2.send.Heap(), cnt=0x1234)
        stream.send_heap(spead2.send.Heap())
        assert stream.getvalue() == (packet(0x1234, 1, 0, [addressed(0, 0)], b"\0")
                                     + packet(1, 1, 0, [addressed(0, 0)], b"\0"))

    def test_cnt_wraps_to_flavour_width(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool)
        flavour = spead2.Flavour(4, 64, 8)
        for _ in range(257):
            stream.send_heap(spead2.send.Heap(flavour))
        value = stream.getvalue()
        per_heap = len(value) // 257
        cnts = [value[i * per_heap + 15] for i in range(257)]
        assert cnts == [(i + 1) % 256 for i in range(257)]

    def test_invalid_heap_is_rejected_before_sending(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool, spead2.send.StreamConfig(max_packet_size=56))
        heap = spead2.send.Heap(spead2.Flavour(4, 64, 8))
        for i in range(40):
            heap.add_item(StandInItem(0x10 + i, b"\x01"))
        with pytest.raises(ValueError):
            stream.send_heap(heap)
        with pytest.raises(spead2.RangeError):
            stream.send_heap(spead2.send.Heap(), cnt=-5)
        assert stream.getvalue() == b""
        stream.send_heap(spead2.send.Heap())
        assert stream.getvalue() == packet(1, 1, 0, [addressed(0, 0)], b"\0")

    def test_config_is_copied(self, thread_pool):
        config = spead2.send.StreamConfig(max_packet_size=100)
        stream = spead2.send.BytesStream(thread_pool, config)
        config.max_packet_size = 9000
        assert stream.config.max_packet_size == 100
        stream.send_heap(data_heap(bytes(1000)))
        assert max(len(p) for p in spead2.send.PacketGenerator(data_heap(bytes(1000)), 1, 100)) \
            <= 100
        assert len(stream.getvalue()) > 1000 + 40 * 10

    def test_concurrent_senders_keep_heaps_whole(self, thread_pool):
        stream = spead2.send.BytesStream(
            thread_pool, spead2.send.StreamConfig(max_packet_size=1000, max_heaps=8))
        data = [bytes([i]) * 20000 for i in range(4)]
        errors = []

        def sender(i):
            try:
                for _ in range(10):
                    stream.send_heap(data_heap(data[i]))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors
        value = stream.getvalue()
        size = len(b"".join(spead2.send.PacketGenerator(data_heap(data[0]), 1, 1000)))
        assert len(value) == 40 * size
        for k in range(40):
            chunk = value[k * size:(k + 1) * size]
            cnt = int.from_bytes(chunk[11:16], "big")
            fill = chunk[-1]
            assert chunk == b"".join(spead2.send.PacketGenerator(data_heap(data[fill]), cnt, 1000))

    def test_rate_limit_applies(self, thread_pool):
        config = spead2.send.StreamConfig(rate=2e6, burst_size=10000)
        stream = spead2.send.BytesStream(thread_pool, config)
        heap = data_heap(bytes(100000))
        start = time.monotonic()
        for _ in range(4):
            stream.send_heap(heap)
        elapsed = time.monotonic() - start
        expected = (len(stream.getvalue()) - config.burst_size) / config.rate
        assert expected * 0.9 <= elapsed <= expected * 1.5 + 0.1

    def test_requires_thread_pool(self):
        with pytest.raises(TypeError):
            spead2.send.BytesStream(None)


def test_a_reused_buffer_shows_only_what_was_sent(thread_pool):
    # a finished stream's buffer is kept for the next stream (see
    # csrc/send_bytes.c): none of its old bytes may show through
    first = spead2.send.BytesStream(thread_pool)
    first.send_heap(data_heap(b"\xff" * (3 << 20)))
    del first
    second = spead2.send.BytesStream(thread_pool)
    assert second.getvalue() == b""
    second.send_heap(data_heap(b"small"))
    assert second.getvalue() == b"".join(spead2.send.PacketGenerator(data_heap(b"small"), 1,
                                                                     1472))
    third = spead2.send.BytesStream(thread_pool)   # while the second holds the buffer
    third.send_heap(spead2.send.Heap())
    assert len(third.getvalue()) == 49
