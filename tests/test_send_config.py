"""send.StreamConfig and its enums, Heap.add_descriptor's ID rule, the
ibverbs names, and pacing measured on a virtual clock (exact, whatever the
load on the machine)."""

import copy
import errno
import math

import numpy as np
import pytest

import spead2
import spead2.send
import spead2.send.asyncio
from test_send_support import StandInItem, data_heap

SC = spead2.send.StreamConfig


class TestStreamConfig:
    def test_defaults(self):
        c = SC()
        assert (c.max_packet_size, c.rate, c.burst_size, c.max_heaps, c.burst_rate_ratio,
                c.rate_method) == (1472, 0.0, 65536, 4, 1.05, spead2.send.RateMethod.AUTO)
        assert (SC.DEFAULT_MAX_PACKET_SIZE, SC.DEFAULT_BURST_SIZE, SC.DEFAULT_MAX_HEAPS,
                SC.DEFAULT_BURST_RATE_RATIO, SC.DEFAULT_RATE_METHOD) == (
            1472, 65536, 4, 1.05, spead2.send.RateMethod.AUTO)

    def test_keywords(self):
        c = SC(max_packet_size=9000, rate=1e6, burst_size=10, max_heaps=2,
               burst_rate_ratio=2.0, rate_method=spead2.send.RateMethod.SW)
        assert (c.max_packet_size, c.rate, c.burst_size, c.max_heaps, c.burst_rate_ratio,
                c.rate_method) == (9000, 1e6, 10, 2, 2.0, spead2.send.RateMethod.SW)
        assert c.burst_rate == 2e6

    def test_2016_positional_order(self):
        c = SC(9000, 1e6, 10, 2)
        assert (c.max_packet_size, c.rate, c.burst_size, c.max_heaps) == (9000, 1e6, 10, 2)
        with pytest.raises(TypeError):
            SC(1, 2, 3, 4, 5)
        with pytest.raises(TypeError):
            SC(9000, max_packet_size=9000)

    def test_unknown_keyword(self):
        with pytest.raises(TypeError):
            SC(max_packets=4)

    def test_burst_rate_is_read_only(self):
        c = SC(rate=10.0)
        assert c.burst_rate == pytest.approx(10.5)
        with pytest.raises(AttributeError):
            c.burst_rate = 5

    @pytest.mark.parametrize("name, value, exc", [
        ("rate", -1.0, ValueError), ("rate", math.nan, ValueError), ("rate", math.inf, ValueError),
        ("rate", "1", TypeError),
        ("max_heaps", 0, ValueError), ("max_heaps", -1, TypeError),
        ("burst_rate_ratio", 0.99, ValueError), ("burst_rate_ratio", math.inf, ValueError),
        ("burst_rate_ratio", math.nan, ValueError),
        ("burst_size", -1, TypeError), ("max_packet_size", -1, TypeError),
        ("max_packet_size", 1.5, TypeError), ("rate_method", 0, TypeError),
    ])
    def test_checked_when_assigned(self, name, value, exc):
        c = SC()
        with pytest.raises(exc):
            setattr(c, name, value)
        with pytest.raises(exc):
            SC(**{name: value})

    def test_max_heaps_negative_is_a_range_error(self):
        with pytest.raises(spead2.RangeError):
            SC(max_heaps=-1)

    def test_max_packet_size_is_not_checked_when_set(self):
        assert SC(max_packet_size=8).max_packet_size == 8

    def test_copies_are_independent_and_equal(self):
        a = SC(rate=5.0)
        b = copy.copy(a)
        assert a == b
        b.rate = 6.0
        assert a.rate == 5.0 and a != b

    def test_stream_keeps_a_copy(self, thread_pool):
        c = SC(max_heaps=3)
        stream = spead2.send.BytesStream(thread_pool, c)
        c.max_heaps = 7
        assert stream.config.max_heaps == 3


class TestEnums:
    @pytest.mark.parametrize("enum, members", [
        (spead2.send.RateMethod, {"SW": 0, "HW": 1, "AUTO": 2}),
        (spead2.send.GroupMode, {"ROUND_ROBIN": 0, "SERIAL": 1}),
    ])
    def test_members(self, enum, members):
        import enum as _enum
        assert issubclass(enum, _enum.Enum)
        for name, value in members.items():
            member = getattr(enum, name)
            assert (member.name, member.value, int(member)) == (name, value, value)
            assert member == member and member != value
        assert len(list(enum)) == len(members)

    @pytest.mark.parametrize("method", list(spead2.send.RateMethod))
    def test_every_rate_method_paces_in_software(self, thread_pool, method):
        stream = spead2.send.BytesStream(thread_pool, SC(rate=1e6, burst_size=0,
                                                         rate_method=method))
        stream._use_virtual_clock()
        for _ in range(3):
            stream.send_heap(data_heap(bytes(1000)))
        assert stream._virtual_clock[1] == pytest.approx(2 * 1048 / 1e6)


class TestHeap:
    def test_descriptor_id_range(self):
        heap = spead2.send.Heap(spead2.Flavour(4, 64, 48, 0))
        heap.add_descriptor(StandInItem(2**15 - 1, b""))
        for bad in (0, 2**15):
            with pytest.raises(ValueError):
                heap.add_descriptor(StandInItem(bad, b""))

    def test_flavour_is_read_only(self):
        heap = spead2.send.Heap()
        assert heap.flavour == spead2.Flavour()
        with pytest.raises(AttributeError):
            heap.flavour = spead2.Flavour()

    def test_add_item_refers_to_the_value(self, thread_pool):
        value = np.zeros(3000, np.uint8)
        heap = spead2.send.Heap()
        heap.add_item(spead2.Item(0x1000, "v", "", (3000,), dtype=np.uint8, value=value))
        value[:] = 7   # after add_item: what is sent is what the buffer holds then
        stream = spead2.send.BytesStream(thread_pool)
        stream.send_heap(heap)
        assert bytes([7]) * 1000 in stream.getvalue()


class TestVirtualClockPacing:
    """The pacing arithmetic, with a clock that only sleeping moves: after
    each burst of at least burst_size bytes the sender sleeps until the
    bytes sent are worth their time at their heaps' rates."""

    def packets(self, stream):
        return len(stream.getvalue())

    def test_bursts_and_rate(self, thread_pool):
        # 1000-byte heaps are one 1048-byte packet: bursts of 4 packets
        config = SC(rate=1e6, burst_size=4000, max_heaps=1)
        stream = spead2.send.BytesStream(thread_pool, config)
        stream._use_virtual_clock()
        for _ in range(40):
            stream.send_heap(data_heap(bytes(1000)))
        now, slept, sleeps = stream._virtual_clock
        # 10 bursts; the sender waits before bursts 2..10 for the 9 before them
        assert sleeps == 9
        assert now == pytest.approx(9 * 4 * 1048 / 1e6)

    def test_per_heap_rates(self, thread_pool):
        config = SC(rate=1e6, burst_size=0, max_heaps=3)
        stream = spead2.send.BytesStream(thread_pool, config)
        stream._use_virtual_clock()
        heaps = [data_heap(bytes(1000)) for _ in range(3)]
        refs = [spead2.send.HeapReference(heaps[0]),               # the stream's rate
                spead2.send.HeapReference(heaps[1], rate=2e6),
                spead2.send.HeapReference(heaps[2], rate=0)]       # unpaced
        stream.send_heaps(refs, spead2.send.GroupMode.SERIAL)
        stream.send_heap(heaps[0], rate=4e6)
        stream.send_heap(heaps[0])
        # each packet waits for the ones before it
        assert stream._virtual_clock[0] == pytest.approx(
            1048 / 1e6 + 1048 / 2e6 + 0 + 1048 / 4e6)

    def test_catching_up_goes_at_the_burst_rate(self, thread_pool):
        # A stream whose schedule fell behind (here: the clock jumps 10 s
        # before anything was ever sent, so it never went idle) sends the
        # backlog faster than rate, but no faster than rate *
        # burst_rate_ratio: after the first two packets (the first is due
        # at once, the second's time has long passed), one per 1048 / 2e6 s.
        config = SC(rate=1e6, burst_size=0, max_heaps=8, burst_rate_ratio=2.0)
        stream = spead2.send.BytesStream(thread_pool, config)
        stream._use_virtual_clock(start=0.0)
        stream._advance_virtual_clock(10.0)
        stream.send_heaps([spead2.send.HeapReference(data_heap(bytes(1000)))] * 8,
                          spead2.send.GroupMode.SERIAL)
        assert stream._virtual_clock[0] == pytest.approx(10.0 + 6 * 1048 / 2e6)
        # once idle, the schedule restarts from now (the backlog is not
        # saved up, and the next packet is due at once): back to the rate
        start = stream._virtual_clock[0]
        stream.send_heaps([spead2.send.HeapReference(data_heap(bytes(1000)))] * 3,
                          spead2.send.GroupMode.SERIAL)
        assert stream._virtual_clock[0] - start == pytest.approx(2 * 1048 / 1e6)

    def test_unpaced_stream_never_sleeps(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool, SC(burst_size=0))
        stream._use_virtual_clock()
        for _ in range(10):
            stream.send_heap(data_heap(bytes(10000)))
        assert stream._virtual_clock[2] == 0


class TestIbverbsNames:
    def test_names_exist(self):
        for name in ("IbvContext",):
            assert hasattr(spead2, name)

        for name in ("UdpIbvConfig", "UdpIbvStream"):
            assert hasattr(spead2.send, name)
        assert hasattr(spead2.send.asyncio, "UdpIbvStream")

    def test_context_fails_cleanly(self):
        with pytest.raises(RuntimeError) as info:
            spead2.IbvContext("127.0.0.1")
        assert isinstance(info.value, OSError) and info.value.errno == errno.ENODEV
        assert "127.0.0.1" in str(info.value)

    def test_config_defaults_and_checks(self):
        c = spead2.send.UdpIbvConfig()
        assert (c.endpoints, c.interface_address, c.buffer_size, c.ttl, c.comp_vector,
                c.max_poll, c.memory_regions) == ([], "", 524288, 1, 0, 10, [])
        assert spead2.send.UdpIbvConfig.DEFAULT_BUFFER_SIZE == 524288
        assert spead2.send.UdpIbvConfig.DEFAULT_MAX_POLL == 10
        c.buffer_size = 0
        assert c.buffer_size == 524288
        for bad in (0, -1):
            with pytest.raises(ValueError):
                spead2.send.UdpIbvConfig(max_poll=bad)
        with pytest.raises(TypeError):
            spead2.send.UdpIbvConfig(memory_regions=[object()])
        with pytest.raises(TypeError):
            spead2.send.UdpIbvConfig(bogus=1)

    def make(self, thread_pool, **kw):
        kw.setdefault("endpoints", [("239.1.2.3", 8888)])
        kw.setdefault("interface_address", "127.0.0.1")
        return spead2.send.UdpIbvStream(thread_pool, spead2.send.StreamConfig(),
                                        spead2.send.UdpIbvConfig(**kw))

    @pytest.mark.parametrize("kw, match", [
        ({"endpoints": []}, "endpoints is empty"),
        ({"endpoints": [("127.0.0.1", 8888)]}, "endpoint is not an IPv4 multicast address"),
        ({"endpoints": [("ff14::1", 8888)]}, "endpoint is not an IPv4 multicast address"),
        ({"interface_address": ""}, "interface address"),
        ({"interface_address": "::1"}, "interface address"),
        ({"memory_regions": [bytearray(0)]}, "memory region must have non-zero size"),
    ])
    def test_value_errors_before_the_device(self, thread_pool, kw, match):
        with pytest.raises(ValueError, match=match):
            self.make(thread_pool, **kw)

    def test_overlapping_regions(self, thread_pool):
        buf = np.zeros(1000, np.uint8)
        with pytest.raises(ValueError, match="memory regions overlap"):
            self.make(thread_pool, memory_regions=[buf[:600], buf[500:]])

    def test_names_resolved_first(self, thread_pool):
        with pytest.raises(RuntimeError, match="Host not found"):
            self.make(thread_pool, endpoints=[("no-such-host.invalid", 1)],
                      interface_address="")

    def test_no_device(self, thread_pool):
        buf = np.zeros(1000, np.uint8)
        with pytest.raises(RuntimeError) as info:
            self.make(thread_pool, memory_regions=[buf[:500], buf[500:]])
        assert isinstance(info.value, OSError) and info.value.errno == errno.ENODEV
        assert "127.0.0.1" in str(info.value)
