"""Chunk stream groups: several member streams, each on its own worker,
filling one sequence of chunks."""

import collections.abc
import threading
import time

import numpy as np
import pytest

import spead2
import spead2.recv as recv
from packets import packet
from refimpl import call_with_timeout

HEAP = 64
Mode = recv.ChunkStreamGroupConfig.EvictionMode


def placement(per_chunk, members):
    """Heap ``(ts, m)`` goes to chunk ``ts // per_chunk``, slot
    ``(ts % per_chunk) * members + m``."""
    return recv.ChunkPlacement(chunk_item=0x1600, chunk_step=per_chunk,
                               axes=[("chunk", per_chunk, 1), (0x4101, members)],
                               heap_size=HEAP)


def heap(cnt, ts, member):
    return packet(cnt, bytes([member + 1]) * HEAP, 0, HEAP,
                  [(True, 0x1600, ts), (True, 0x4101, member), (False, 0x1000, 0)])


class Group:
    """A group of ``members`` streams, each fed by its own InprocQueue."""

    def __init__(self, members=4, per_chunk=4, group_chunks=4, member_chunks=2,
                 mode=Mode.LOSSY, free_chunks=8, data_capacity=None):
        self.members = members
        self.place = placement(per_chunk, members)
        self.tp = spead2.ThreadPool(members)
        self.data_ring = recv.ChunkRingbuffer(data_capacity or free_chunks)
        self.free_ring = recv.ChunkRingbuffer(free_chunks)
        config = recv.ChunkStreamGroupConfig(max_chunks=group_chunks, eviction_mode=mode)
        self.group = recv.ChunkStreamRingGroup(config, self.data_ring, self.free_ring)
        self.queues = []
        for m in range(members):
            member = self.group.emplace_back(
                self.tp, recv.StreamConfig(stream_id=m),
                recv.ChunkStreamConfig(place=self.place, max_chunks=member_chunks))
            q = spead2.InprocQueue()
            member.add_inproc_reader(q)
            self.queues.append(q)
        for _ in range(free_chunks):
            self.group.add_free_chunk(self.new_chunk())
        self.cnt = 0

    def new_chunk(self):
        return recv.Chunk(data=np.zeros(self.place.chunk_bytes, np.uint8),
                          present=np.zeros(self.place.heaps_per_chunk, np.uint8))

    def send(self, member, ts):
        self.cnt += 1
        self.queues[member].add_packet(heap(self.cnt, ts, member))

    def finish(self):
        for q in self.queues:
            q.stop()

    def chunks(self, timeout=30):
        """Every chunk (id, present copy, data copy) until the data ring stops."""
        def collect():
            out = []
            for chunk in self.data_ring:
                out.append((chunk.chunk_id, chunk.present.copy(), chunk.data.copy()))
                self.group.add_free_chunk(chunk)
            return out
        return call_with_timeout(collect, timeout, "collecting chunks")

    def close(self):
        self.group.stop()
        self.tp.stop()


@pytest.fixture
def make_group():
    groups = []

    def make(**kwargs):
        g = Group(**kwargs)
        groups.append(g)
        return g

    yield make
    for g in groups:
        g.close()


class TestAssembly:
    @pytest.mark.parametrize("mode", [Mode.LOSSY, Mode.LOSSLESS])
    def test_every_member_fills_its_part_of_every_chunk(self, make_group, mode):
        # a window as long as the run: no member can get far enough ahead to
        # release another's chunks, even in LOSSY mode
        g = make_group(mode=mode, group_chunks=8, member_chunks=8, free_chunks=8)
        for ts in range(4 * 6):
            for m in range(4):
                g.send(m, ts)
        g.finish()
        chunks = g.chunks()
        assert [c[0] for c in chunks] == list(range(6))
        for chunk_id, present, data in chunks:
            assert present.all()
            # slot (ts % 4) * 4 + m holds member m's bytes
            expect = np.repeat(np.tile(np.arange(1, 5, dtype=np.uint8), 4), HEAP)
            np.testing.assert_array_equal(data, expect)

    def test_stream_ids_tag_the_chunks(self, make_group):
        g = make_group(members=2)
        g.send(0, 0)
        g.send(1, 0)
        g.finish()
        (chunk_id, present, _), = g.chunks()
        assert present.sum() == 2

    def test_the_data_ring_stops_after_the_last_member(self, make_group):
        g = make_group(members=2)
        g.send(0, 0)
        g.queues[0].stop()
        # one member ended: the ring keeps running, the group's chunk waits
        # for the other member
        with pytest.raises(spead2.Empty):
            g.data_ring.get_nowait()
        g.send(1, 0)
        g.queues[1].stop()
        chunks = g.chunks()
        assert [(c[0], int(c[1].sum())) for c in chunks] == [(0, 2)]


class TestEviction:
    def test_lossy_releases_what_a_silent_member_holds(self, make_group):
        # member 1 sends nothing: member 0 moving far ahead makes the group
        # release the older chunks anyway
        g = make_group(members=2, group_chunks=2, member_chunks=2, free_chunks=4)
        for ts in range(4 * 5):
            g.send(0, ts)
        g.queues[0].stop()
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 3:
            assert time.monotonic() < deadline, got
            try:
                chunk = g.data_ring.get_nowait()
            except spead2.Empty:
                time.sleep(0.002)
                continue
            got.append((chunk.chunk_id, int(chunk.present.sum())))
            g.group.add_free_chunk(chunk)
        assert [c[0] for c in got] == [0, 1, 2]
        assert all(n == 4 for _, n in got)   # member 0's half of each

    def test_lossless_waits_for_a_silent_member(self, make_group):
        g = make_group(members=2, group_chunks=2, member_chunks=2, free_chunks=4,
                       mode=Mode.LOSSLESS)
        for ts in range(4 * 5):
            g.send(0, ts)
        # member 0 must wait for member 1 before chunk 0 can go: nothing may
        # reach the data ring while member 1 is silent (a window of absence)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert g.data_ring.qsize() == 0
            time.sleep(0.01)
        for ts in range(4 * 5):
            g.send(1, ts)
        g.finish()
        chunks = g.chunks()
        assert [c[0] for c in chunks] == [0, 1, 2, 3, 4]
        assert all(c[1].all() for c in chunks)

    def test_stop_unblocks_a_lossless_wait(self, make_group):
        g = make_group(members=2, group_chunks=2, member_chunks=2, free_chunks=4,
                       mode=Mode.LOSSLESS)
        for ts in range(4 * 5):
            g.send(0, ts)
        deadline = time.monotonic() + 10
        # member 0 is stuck once it has taken the group's two chunks
        while g.free_ring.qsize() > 2:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        call_with_timeout(g.group.stop, 10, "stopping the group")
        with pytest.raises(spead2.Stopped):
            while True:
                g.data_ring.get_nowait()


class TestApi:
    def test_config(self):
        c = recv.ChunkStreamGroupConfig()
        assert (c.max_chunks, c.eviction_mode) == (2, Mode.LOSSY)
        assert recv.ChunkStreamGroupConfig.DEFAULT_MAX_CHUNKS == 2
        c = recv.ChunkStreamGroupConfig(max_chunks=5, eviction_mode=Mode.LOSSLESS)
        assert (c.max_chunks, c.eviction_mode) == (5, Mode.LOSSLESS)
        assert (Mode.LOSSY.value, Mode.LOSSLESS.value, int(Mode.LOSSLESS)) == (0, 1, 1)
        with pytest.raises(ValueError):
            recv.ChunkStreamGroupConfig(max_chunks=0)
        with pytest.raises(TypeError):
            recv.ChunkStreamGroupConfig(eviction_mode=1)

    def test_group_config_is_a_copy(self):
        config = recv.ChunkStreamGroupConfig(max_chunks=3)
        group = recv.ChunkStreamRingGroup(config, recv.ChunkRingbuffer(2),
                                          recv.ChunkRingbuffer(2))
        config.max_chunks = 9
        assert group.config.max_chunks == 3
        group.config.max_chunks = 10
        assert group.config.max_chunks == 3
        group.stop()

    def test_a_sequence_of_members(self, make_group):
        g = make_group(members=3)
        group = g.group
        assert isinstance(group, collections.abc.Sequence)
        assert isinstance(group, recv.ChunkRingPair)
        members = list(group)
        assert len(group) == 3 and len(members) == 3
        assert group[0] is members[0] and group[-1] is members[2]
        assert group[1:] == members[1:]
        assert list(reversed(group)) == members[::-1]
        assert members[1] in group and object() not in group
        assert group.count(members[1]) == 1 and group.index(members[2]) == 2
        with pytest.raises(IndexError):
            group[3]
        with pytest.raises(ValueError):
            group.index(object())
        assert all(isinstance(m, recv.ChunkStreamGroupMember) for m in members)
        assert group.data_ringbuffer is g.data_ring and group.free_ringbuffer is g.free_ring

    def test_members_cannot_be_built_directly(self):
        with pytest.raises(TypeError):
            recv.ChunkStreamGroupMember()

    def test_member_window_larger_than_the_groups(self):
        group = recv.ChunkStreamRingGroup(recv.ChunkStreamGroupConfig(max_chunks=2),
                                          recv.ChunkRingbuffer(2), recv.ChunkRingbuffer(2))
        tp = spead2.ThreadPool()
        with pytest.raises(ValueError):
            group.emplace_back(tp, recv.StreamConfig(),
                               recv.ChunkStreamConfig(place=placement(4, 1), max_chunks=3))
        group.stop()
        tp.stop()

    def test_no_member_after_data(self, make_group):
        g = make_group(members=1)
        g.send(0, 0)
        deadline = time.monotonic() + 10
        while g.group[0].stats["packets"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        with pytest.raises(RuntimeError):
            g.group.emplace_back(g.tp, recv.StreamConfig(),
                                 recv.ChunkStreamConfig(place=g.place, max_chunks=2))

    def test_member_stats_include_the_chunk_statistics(self, make_group):
        g = make_group(members=1)
        g.send(0, 0)
        g.finish()
        g.chunks()
        stats = g.group[0].stats
        assert stats["too_old_heaps"] == 0 and stats["rejected_heaps"] == 0
        assert stats.heaps == 1

    def test_stopping_a_member_stops_the_group(self, make_group):
        g = make_group(members=2)
        g.group[1].stop()
        with pytest.raises(spead2.Stopped):
            g.data_ring.get_nowait()
        with pytest.raises(spead2.Stopped):
            g.free_ring.put_nowait(g.new_chunk())

    def test_the_group_outlives_its_last_reference_through_members(self):
        tp = spead2.ThreadPool()
        data_ring = recv.ChunkRingbuffer(2)
        group = recv.ChunkStreamRingGroup(recv.ChunkStreamGroupConfig(), data_ring,
                                          recv.ChunkRingbuffer(2))
        member = group.emplace_back(tp, recv.StreamConfig(),
                                    recv.ChunkStreamConfig(place=placement(4, 1)))
        del group
        member.stop()   # reaches the group through the member
        with pytest.raises(spead2.Stopped):
            data_ring.get_nowait()
        tp.stop()
