"""Today's receive configuration and statistics (spead2 4.x): StreamConfig,
RingStreamConfig, StreamStatConfig, StreamStats, stream_stat_indices, and
the two constructor forms of recv.Stream."""

import copy

import pytest

import spead2
import spead2.recv
import spead2.recv.asyncio
from packets import concat, heap_packets, packet, stop_packet
from spead2.recv import (RingStreamConfig, StreamConfig, StreamStatConfig, StreamStats,
                         stream_stat_indices)
from refimpl import call_with_timeout

CORE_NAMES = ["heaps", "incomplete_heaps_evicted", "incomplete_heaps_flushed", "packets",
              "batches", "max_batch", "single_packet_heaps", "search_dist", "worker_blocked"]
OUR_NAMES = ["bad_packets", "rejected_packets", "duplicate_packets", "too_large_packets", "bytes",
             "log_suppressed", "direct_packets"]


class TestStreamConfig:
    def test_defaults(self):
        c = StreamConfig()
        assert (c.max_heaps, c.substreams, c.bug_compat, c.memcpy) == (4, 1, 0, spead2.MEMCPY_STD)
        assert (c.stop_on_stop_item, c.allow_unsized_heaps, c.allow_out_of_order) == (
            True, True, False)
        assert (c.stream_id, c.explicit_start) == (0, False)
        assert isinstance(c.memory_allocator, spead2.MemoryAllocator)
        assert StreamConfig.DEFAULT_MAX_HEAPS == 4

    def test_keywords_are_applied_in_order(self):
        c = StreamConfig(max_heaps=7, substreams=3, bug_compat=spead2.BUG_COMPAT_PYSPEAD_0_5_2,
                         memcpy=spead2.MEMCPY_NONTEMPORAL, stop_on_stop_item=False,
                         allow_unsized_heaps=False, allow_out_of_order=True, stream_id=12,
                         explicit_start=True)
        assert (c.max_heaps, c.substreams, c.bug_compat, c.memcpy, c.stream_id) == (
            7, 3, 7, spead2.MEMCPY_NONTEMPORAL, 12)
        assert (c.stop_on_stop_item, c.allow_unsized_heaps, c.allow_out_of_order,
                c.explicit_start) == (False, False, True, True)

    def test_memory_allocator_getter_returns_what_was_set(self):
        pool = spead2.MemoryPool(1, 2, 3, 3)
        assert StreamConfig(memory_allocator=pool).memory_allocator is pool

    @pytest.mark.parametrize("args, kwargs, exc", [
        ((4,), {}, TypeError),                       # positional
        ((), {"nonsense": 1}, TypeError),            # unknown keyword
        ((), {"max_heaps": 0}, ValueError),
        ((), {"substreams": 0}, ValueError),
        ((), {"max_heaps": -1}, TypeError),          # unsigned
        ((), {"stream_id": 2**64}, TypeError),
        ((), {"bug_compat": 8}, ValueError),
        ((), {"memcpy": 2}, ValueError),
        ((), {"memory_allocator": "malloc"}, TypeError),
        ((), {"max_heaps": 1.5}, TypeError),
    ])
    def test_bad_values(self, args, kwargs, exc):
        with pytest.raises(exc):
            StreamConfig(*args, **kwargs)

    def test_attributes_are_checked_when_assigned(self):
        c = StreamConfig()
        with pytest.raises(ValueError):
            c.max_heaps = 0
        assert c.max_heaps == 4

    def test_core_stats_then_custom_ones(self):
        c = StreamConfig()
        names = [s.name for s in c.stats]
        assert names == CORE_NAMES + OUR_NAMES
        assert c.stats[CORE_NAMES.index("max_batch")].mode is StreamStatConfig.Mode.MAXIMUM
        first = c.next_stat_index()
        assert c.add_stat("mine") == first
        assert c.add_stat("peak", StreamStatConfig.Mode.MAXIMUM) == first + 1
        assert c.next_stat_index() == first + 2 == len(c.stats)
        assert c.get_stat_index("peak") == first + 1
        assert c.get_stat_index("heaps") == 0

    def test_stat_registry_errors(self):
        c = StreamConfig()
        c.add_stat("mine")
        with pytest.raises(ValueError):
            c.add_stat("mine")
        with pytest.raises(ValueError):
            c.add_stat("heaps")
        with pytest.raises(IndexError):
            c.get_stat_index("nope")

    def test_stats_is_a_new_list_each_time(self):
        c = StreamConfig()
        c.stats.append(StreamStatConfig("sneaky"))
        assert "sneaky" not in [s.name for s in c.stats]

    def test_copies_are_independent(self):
        c = StreamConfig(max_heaps=5)
        d = copy.copy(c)
        d.max_heaps = 6
        d.add_stat("only_in_d")
        assert c.max_heaps == 5 and len(c.stats) == len(d.stats) - 1


class TestRingStreamConfig:
    def test_defaults_and_keywords(self):
        r = RingStreamConfig()
        assert (r.heaps, r.contiguous_only, r.incomplete_keep_payload_ranges) == (4, True, False)
        assert RingStreamConfig.DEFAULT_HEAPS == 4
        r = RingStreamConfig(heaps=9, contiguous_only=False, incomplete_keep_payload_ranges=True)
        assert (r.heaps, r.contiguous_only, r.incomplete_keep_payload_ranges) == (9, False, True)

    def test_zero_heaps(self):
        with pytest.raises(ValueError):
            RingStreamConfig(heaps=0)


class TestStreamStatConfig:
    def test_fields_and_combine(self):
        counter = StreamStatConfig("a")
        maximum = StreamStatConfig("b", StreamStatConfig.Mode.MAXIMUM)
        assert (counter.name, counter.mode) == ("a", StreamStatConfig.Mode.COUNTER)
        assert counter.combine(3, 5) == 8 and maximum.combine(3, 5) == 5
        assert counter == StreamStatConfig("a") and counter != maximum

    def test_mode_enum(self):
        mode = StreamStatConfig.Mode
        assert (mode.COUNTER.value, mode.MAXIMUM.value) == (0, 1)
        assert int(mode.MAXIMUM) == 1 and mode.MAXIMUM.name == "MAXIMUM"
        assert mode.COUNTER != 0 and list(mode.__members__) == ["COUNTER", "MAXIMUM"]
        assert len({mode.COUNTER, mode.MAXIMUM}) == 2

    def test_read_only(self):
        with pytest.raises(AttributeError):
            StreamStatConfig("a").name = "b"


def stats_of(data, config=None, ring_config=None):
    tp = spead2.ThreadPool()
    stream = spead2.recv.Stream(tp, config or StreamConfig(), ring_config or RingStreamConfig())
    stream.add_buffer_reader(data)
    heaps = call_with_timeout(lambda: list(stream), 30, "draining")
    return heaps, stream.stats


class TestStreamStats:
    def test_access_by_attribute_index_and_name(self):
        data = concat([packet(1, b"ab", 0, 2, [(False, 0x1000, 0)]),
                       packet(2, b"ab", 0, 2, [(False, 0x1000, 0)])])
        _, st = stats_of(data)
        assert st.heaps == st[0] == st["heaps"] == 2
        assert st.packets == st[stream_stat_indices.PACKETS] == 2
        assert st.bytes == st["bytes"] == 4
        assert "heaps" in st and "nope" not in st
        assert len(st) == len(CORE_NAMES + OUR_NAMES)
        assert st.get("nope") is None and st.get("nope", 7) == 7
        assert list(st) == list(st.keys()) == CORE_NAMES + OUR_NAMES
        assert list(st.values())[0] == 2
        assert dict(st.items())["single_packet_heaps"] == 2
        assert [c.name for c in st.config] == CORE_NAMES + OUR_NAMES

    def test_errors(self):
        _, st = stats_of(b"")
        with pytest.raises(IndexError):
            st[100]
        with pytest.raises(TypeError):
            st[-1]
        with pytest.raises(KeyError):
            st["nope"]
        with pytest.raises(TypeError):
            StreamStats()

    def test_assignment(self):
        _, st = stats_of(b"")
        st["heaps"] = 5
        st[1] = 3
        st.packets = 9
        assert (st.heaps, st.incomplete_heaps_evicted, st[3]) == (5, 3, 9)

    def test_addition_combines_by_mode(self):
        data = concat(heap_packets(1, bytes(100), 10, [(False, 0x1000, 0)]))
        _, a = stats_of(data)
        _, b = stats_of(data + data)
        total = a + b
        assert total.packets == a.packets + b.packets
        assert total.max_batch == max(a.max_batch, b.max_batch)
        a += b
        assert a.packets == total.packets

    def test_addition_needs_the_same_statistics(self):
        config = StreamConfig()
        config.add_stat("extra")
        _, a = stats_of(b"", config)
        _, b = stats_of(b"")
        with pytest.raises(ValueError):
            a + b

    def test_custom_statistics_are_reported(self):
        config = StreamConfig()
        index = config.add_stat("mine")
        _, st = stats_of(b"", config)
        assert st["mine"] == st[index] == 0 and len(st) == index + 1

    def test_indices_module(self):
        for i, name in enumerate(CORE_NAMES + OUR_NAMES):
            assert getattr(stream_stat_indices, name.upper()) == i
        assert stream_stat_indices.CUSTOM == len(CORE_NAMES + OUR_NAMES)


class TestStreamForms:
    def test_todays_form_copies_its_configs(self, thread_pool):
        config = StreamConfig(max_heaps=3)
        ring = RingStreamConfig(heaps=5)
        stream = spead2.recv.Stream(thread_pool, config, ring)
        config.max_heaps = 9
        ring.heaps = 9
        assert stream.config.max_heaps == 3 and stream.ring_config.heaps == 5
        got = stream.config
        got.max_heaps = 10
        assert stream.config.max_heaps == 3
        assert stream.ringbuffer.capacity() == 5 and stream.ringbuffer.size() == 0

    def test_keywords_of_todays_form(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool, ring_config=RingStreamConfig(heaps=2),
                                    config=StreamConfig(substreams=2))
        assert stream.config.substreams == 2 and stream.ring_config.heaps == 2

    def test_2016_form(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool, 7, 5, 6)
        assert (stream.bug_compat, stream.max_heaps, stream.ring_heaps) == (7, 5, 6)
        assert stream.config.allow_out_of_order
        assert stream.config.max_heaps == 5 and stream.ringbuffer.capacity() == 6
        stream = spead2.recv.Stream(thread_pool, ring_heaps=3)
        assert stream.ring_config.heaps == 3 and stream.config.allow_out_of_order

    def test_default_form_is_todays_and_in_order(self, thread_pool):
        assert not spead2.recv.Stream(thread_pool).config.allow_out_of_order

    @pytest.mark.parametrize("args, kwargs", [
        ((StreamConfig(),), {"max_heaps": 4}),
        ((4,), {"config": StreamConfig()}),
        ((), {"ring_config": RingStreamConfig(), "ring_heaps": 4}),
        ((StreamConfig(), RingStreamConfig(), 3), {}),
        (("config",), {}),
    ])
    def test_mixing_forms_or_bad_configs(self, thread_pool, args, kwargs):
        with pytest.raises(TypeError):
            spead2.recv.Stream(thread_pool, *args, **kwargs)

    def test_thread_pool_is_required(self):
        with pytest.raises(TypeError):
            spead2.recv.Stream(None)
        with pytest.raises(TypeError):
            spead2.recv.Stream(config=StreamConfig())

    def test_class_constants(self):
        for cls in (spead2.recv.Stream, spead2.recv.asyncio.Stream):
            assert cls.DEFAULT_UDP_MAX_SIZE == 9200
            assert cls.DEFAULT_UDP_BUFFER_SIZE == 8388608
            assert cls.DEFAULT_TCP_MAX_SIZE == 65536
            assert cls.DEFAULT_TCP_BUFFER_SIZE == 212992
        assert spead2.recv.DEFAULT_UDP_MAX_SIZE == 9200

    def test_set_memory_allocator_and_memcpy_update_the_reported_config(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool)
        pool = spead2.MemoryPool(1, 2, 2, 2)
        stream.set_memory_allocator(pool)
        stream.set_memcpy(spead2.MEMCPY_NONTEMPORAL)
        assert stream.config.memory_allocator is pool
        assert stream.config.memcpy == spead2.MEMCPY_NONTEMPORAL


class TestAssemblyThroughAStream:
    def test_in_order_stream_drops_a_reordered_heap(self):
        pkts = heap_packets(1, bytes(300), 100, [(False, 0x1000, 0)])
        heaps, st = stats_of(concat([pkts[0], pkts[2], pkts[1]]))
        assert heaps == [] and st.rejected_packets == 1 and st.incomplete_heaps_flushed == 1

    def test_out_of_order_stream_takes_it(self):
        pkts = heap_packets(1, bytes(300), 100, [(False, 0x1000, 0)])
        heaps, _ = stats_of(concat([pkts[0], pkts[2], pkts[1]]),
                            StreamConfig(allow_out_of_order=True))
        assert [h.cnt for h in heaps] == [1]

    def test_incomplete_heaps_are_delivered_on_request(self):
        data = concat([packet(1, b"abc", 0, 10, [(False, 0x1000, 0), (True, 0x2000, 9)]),
                       packet(2, b"xy", 0, 2, [(False, 0x1000, 0)])])
        heaps, st = stats_of(data, ring_config=RingStreamConfig(
            contiguous_only=False, incomplete_keep_payload_ranges=True))
        assert [type(h).__name__ for h in heaps] == ["Heap", "IncompleteHeap"]
        incomplete = heaps[1]
        assert (incomplete.cnt, incomplete.heap_length, incomplete.received_length) == (1, 10, 3)
        assert incomplete.payload_ranges == [(0, 3)]
        assert [(i.id, i.immediate_value) for i in incomplete.get_items()] == [(0x2000, 9)]
        assert st.heaps == 2

    def test_stop_heap_delivered_when_stop_on_stop_item_is_off(self):
        heaps, _ = stats_of(concat([stop_packet(5), packet(6, b"a", 0, 1, [(False, 0x1000, 0)])]),
                            StreamConfig(stop_on_stop_item=False))
        assert [h.cnt for h in heaps] == [5, 6]
        assert heaps[0].is_end_of_stream() and not heaps[1].is_end_of_stream()
        assert spead2.ItemGroup().update(heaps[0]) == {}

    def test_unsized_heaps_refused_on_request(self):
        data = packet(1, b"ab", 0, None, [(False, 0x1000, 0)])
        heaps, st = stats_of(data, StreamConfig(allow_unsized_heaps=False))
        assert heaps == [] and st.rejected_packets == 1

    def test_substreams_keep_separate_slots(self):
        # with one slot per substream, heaps 1 and 2 (substreams 1 and 0)
        # interleave without evicting each other
        p1 = heap_packets(1, bytes(200), 100, [(False, 0x1000, 0)])
        p2 = heap_packets(2, bytes(200), 100, [(False, 0x1000, 0)])
        data = concat([p1[0], p2[0], p1[1], p2[1]])
        heaps, st = stats_of(data, StreamConfig(max_heaps=1, substreams=2))
        assert sorted(h.cnt for h in heaps) == [1, 2] and st.incomplete_heaps_evicted == 0
        # one substream: heap 2 evicts heap 1, whose second packet cannot
        # start a heap (in-order mode), so only heap 2 arrives
        heaps, st = stats_of(data, StreamConfig(max_heaps=1))
        assert [h.cnt for h in heaps] == [2] and st.incomplete_heaps_evicted == 1


class TestExplicitStart:
    def test_readers_wait_for_start(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool, StreamConfig(explicit_start=True))
        stream.add_buffer_reader(packet(1, b"a", 0, 1, [(False, 0x1000, 0)]))
        with pytest.raises(spead2.Empty):
            stream.get_nowait()
        stream.start()
        heaps = call_with_timeout(lambda: list(stream), 30, "draining")
        assert [h.cnt for h in heaps] == [1]

    def test_no_reader_after_start(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool, StreamConfig(explicit_start=True))
        stream.start()
        with pytest.raises(RuntimeError):
            stream.add_buffer_reader(b"")

    def test_start_is_harmless_without_explicit_start(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool)
        stream.start()
        stream.add_buffer_reader(packet(1, b"a", 0, 1, [(False, 0x1000, 0)]))
        heaps = call_with_timeout(lambda: list(stream), 30, "draining")
        assert [h.cnt for h in heaps] == [1]

    def test_a_reader_added_after_stop_is_ignored(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool)
        stream.stop()
        stream.add_buffer_reader(packet(1, b"a", 0, 1, [(False, 0x1000, 0)]))
        with pytest.raises(spead2.Stopped):
            stream.get()


class TestAsyncioWithTodaysForm:
    def test_async_for_with_configs(self, thread_pool):
        import asyncio

        async def main():
            stream = spead2.recv.asyncio.Stream(thread_pool, StreamConfig(max_heaps=2),
                                                RingStreamConfig(heaps=2))
            stream.add_buffer_reader(concat([packet(c, b"a", 0, 1, [(False, 0x1000, 0)])
                                             for c in (1, 2, 3)]))
            return [heap.cnt async for heap in stream]

        assert asyncio.run(asyncio.wait_for(main(), 30)) == [1, 2, 3]

    def test_get_yields_to_the_loop_even_when_a_heap_is_ready(self, thread_pool):
        import asyncio

        async def main():
            stream = spead2.recv.asyncio.Stream(thread_pool)
            stream.add_buffer_reader(packet(1, b"a", 0, 1, [(False, 0x1000, 0)]))
            while stream.ringbuffer.size() == 0:
                await asyncio.sleep(0.001)
            order = []

            async def other():
                order.append("other")

            task = asyncio.ensure_future(other())
            heap = await stream.get()
            order.append("get")
            await task
            return heap.cnt, order

        cnt, order = asyncio.run(asyncio.wait_for(main(), 30))
        assert cnt == 1 and order == ["other", "get"]

    def test_loop_argument_is_accepted_and_ignored(self, thread_pool):
        import asyncio

        async def main():
            loop = asyncio.get_running_loop()
            stream = spead2.recv.asyncio.Stream(thread_pool, StreamConfig(), loop=loop)
            stream.add_buffer_reader(b"")
            with pytest.raises(spead2.Stopped):
                await stream.get(loop=loop)

        asyncio.run(asyncio.wait_for(main(), 30))
