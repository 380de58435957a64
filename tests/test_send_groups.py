"""Groups of heaps (``send_heaps``), substreams, the cnt sequence and
repeated pointers, on BytesStream and InprocStream.

The interleaving of a group is compared byte for byte with the reference's
BytesStream for the same heaps (tests/groupsets.py, ref_scripts/send_groups.py).
"""

import errno
import json
import logging
import struct

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.send
from groupsets import PLANS, bytes_config, send_plan
from test_send_support import DecodedPacket, data_heap, reassemble

RR = spead2.send.GroupMode.ROUND_ROBIN
SERIAL = spead2.send.GroupMode.SERIAL


def split_packets(data: bytes):
    """The packets of a BytesStream's output, each as bytes."""
    out = []
    pos = 0
    while pos < len(data):
        n = struct.unpack(">H", data[pos + 6:pos + 8])[0]
        length = None
        for i in range(n):
            word = int.from_bytes(data[pos + 8 + 8 * i:pos + 16 + 8 * i], "big")
            if (word >> 40) & 0x7FFFFF == 4 and word >> 63:   # PAYLOAD_LENGTH, SPEAD-64-40
                length = word & ((1 << 40) - 1)
        assert length is not None
        end = pos + 8 + 8 * n + length
        out.append(data[pos:end])
        pos = end
    return out


def order(data: bytes):
    """(cnt, payload offset) of each packet, in order."""
    return [(p.cnt, p.offset) for p in map(DecodedPacket, split_packets(data))]


def size_of(packets):
    """Payload that fills ``packets`` packets of 200 bytes: the first has 48
    bytes of header and one item pointer, the others 40 bytes of header."""
    return 152 + 160 * (packets - 1)


def abc(packets=(1, 2, 3)):
    """Heaps of 1, 2 and 3 packets of at most 200 bytes."""
    return [data_heap(bytes(size_of(n))) for n in packets]


class TestGroupModes:
    def test_round_robin_skips_finished_heaps(self, thread_pool):
        stream = spead2.send.BytesStream(
            thread_pool, spead2.send.StreamConfig(max_packet_size=200, max_heaps=3))
        stream.send_heaps([spead2.send.HeapReference(h) for h in abc()], RR)
        # A0 B0 C0 B1 C1 C2
        assert order(stream.getvalue()) == [(1, 0), (2, 0), (3, 0), (2, 152), (3, 152),
                                            (3, 312)]

    def test_serial_sends_each_heap_in_full(self, thread_pool):
        stream = spead2.send.BytesStream(
            thread_pool, spead2.send.StreamConfig(max_packet_size=200, max_heaps=3))
        stream.send_heaps([spead2.send.HeapReference(h) for h in abc()], SERIAL)
        # A0 B0 B1 C0 C1 C2
        assert order(stream.getvalue()) == [(1, 0), (2, 0), (2, 152), (3, 0), (3, 152),
                                            (3, 312)]

    @pytest.mark.parametrize("mode", [RR, SERIAL])
    def test_each_heap_is_whole(self, thread_pool, mode):
        heaps = abc((3, 1, 2, 1))
        stream = spead2.send.BytesStream(
            thread_pool, spead2.send.StreamConfig(max_packet_size=200, max_heaps=4))
        total = stream.send_heaps([spead2.send.HeapReference(h) for h in heaps], mode)
        data = stream.getvalue()
        assert total == len(data)
        by_cnt = {}
        for p in split_packets(data):
            by_cnt.setdefault(DecodedPacket(p).cnt, []).append(p)
        assert sorted(by_cnt) == [1, 2, 3, 4]
        for cnt in range(1, 5):
            assert len(by_cnt[cnt]) == [3, 1, 2, 1][cnt - 1]
            assert reassemble(by_cnt[cnt])[2] == bytes(size_of(len(by_cnt[cnt])))

    def test_a_heap_reference_list_is_reusable(self, thread_pool):
        stream = spead2.send.BytesStream(
            thread_pool, spead2.send.StreamConfig(max_packet_size=200, max_heaps=3))
        refs = spead2.send.HeapReferenceList([spead2.send.HeapReference(h) for h in abc()])
        first = stream.send_heaps(refs, RR)
        second = stream.send_heaps(refs, RR)
        assert first == second
        cnts = [cnt for cnt, _ in order(stream.getvalue())]
        assert cnts == [1, 2, 3, 2, 3, 3, 4, 5, 6, 5, 6, 6]

    def test_a_single_heap_group_equals_send_heap(self, thread_pool):
        heap = data_heap(bytes(1000))
        a = spead2.send.BytesStream(thread_pool)
        b = spead2.send.BytesStream(thread_pool)
        assert a.send_heap(heap) == b.send_heaps([spead2.send.HeapReference(heap)], SERIAL)
        assert a.getvalue() == b.getvalue()

    def test_mode_must_be_a_group_mode(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool)
        with pytest.raises(TypeError):
            stream.send_heaps([spead2.send.HeapReference(spead2.send.Heap())], 0)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_interleaving_matches_the_reference(ref_python, tmp_path, thread_pool, name):
    path = tmp_path / "ref.bin"
    counts = json.loads(ref_python.run("send_groups.py", "--plan", name, "--output", path))
    plan = PLANS[name]
    stream = spead2.send.BytesStream(thread_pool, bytes_config(spead2, plan))
    ours = send_plan(spead2, stream, plan)
    expected = path.read_bytes()
    got = stream.getvalue()
    assert split_packets(got) == split_packets(expected)
    assert got == expected
    assert ours == counts


class TestRepeatPointers:
    def heap(self, n_items, size):
        heap = spead2.send.Heap()
        for k in range(n_items):
            heap.add_item(spead2.Item(0x1000 + k, f"i{k}", "", (size,), dtype="u1",
                                      value=np.arange(size, dtype=np.uint8)))
        heap.repeat_pointers = True
        return heap

    def test_every_packet_carries_every_pointer(self):
        heap = self.heap(3, 100)
        packets = [DecodedPacket(p) for p in spead2.send.PacketGenerator(heap, 1, 104)]
        assert len(packets) > 1
        for p in packets:
            assert [(imm, id, addr) for imm, id, addr in p.items] == [
                (0, 0x1000, 0), (0, 0x1001, 100), (0, 0x1002, 200)]
        assert b"".join(p.payload for p in packets) == bytes(range(100)) * 3

    def test_defaults_off(self):
        assert spead2.send.Heap().repeat_pointers is False

    def test_pointers_that_do_not_fit_are_a_value_error(self, thread_pool):
        # 104-byte packets hold 40 bytes of header, 7 pointers and 8 bytes
        # of payload; as in the reference, one pointer must stay free for a
        # NULL pointer
        stream = spead2.send.BytesStream(thread_pool,
                                         spead2.send.StreamConfig(max_packet_size=104))
        stream.send_heap(self.heap(6, 10))
        with pytest.raises(ValueError, match="repeat item pointers"):
            stream.send_heap(self.heap(7, 10))
        heap = self.heap(7, 10)
        heap.repeat_pointers = False
        stream.send_heap(heap)


class TestCntSequence:
    def cnts(self, stream):
        return [cnt for cnt, _ in order(stream.getvalue())]

    def test_default_is_one_step_one(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool)
        for _ in range(3):
            stream.send_heap(spead2.send.Heap())
        assert self.cnts(stream) == [1, 2, 3]

    def test_next_and_step(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool)
        stream.set_cnt_sequence(10, 7)
        stream.send_heap(spead2.send.Heap())
        stream.send_heap(spead2.send.Heap(), cnt=3)   # explicit: the sequence stays
        stream.send_heap(spead2.send.Heap())
        assert self.cnts(stream) == [10, 3, 17]

    def test_group_takes_cnts_in_list_order(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool,
                                         spead2.send.StreamConfig(max_heaps=3))
        stream.set_cnt_sequence(5, 2)
        refs = [spead2.send.HeapReference(spead2.send.Heap()),
                spead2.send.HeapReference(spead2.send.Heap(), cnt=100),
                spead2.send.HeapReference(spead2.send.Heap())]
        stream.send_heaps(refs, SERIAL)
        assert self.cnts(stream) == [5, 100, 7]

    def test_cnt_wraps_modulo_the_heap_address_bits(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool)
        stream.set_cnt_sequence(2**40 - 1, 2**40 + 1)
        for _ in range(3):
            stream.send_heap(spead2.send.Heap())
        assert self.cnts(stream) == [2**40 - 1, 0, 1]

    def test_step_zero_is_a_value_error(self, thread_pool):
        stream = spead2.send.BytesStream(thread_pool)
        with pytest.raises(ValueError):
            stream.set_cnt_sequence(1, 0)
        with pytest.raises(TypeError):
            stream.set_cnt_sequence(-1, 1)


class TestQueueErrors:
    """The errors of the contract's table that come from queueing: nothing
    is sent, the cnt sequence does not move, and a warning is logged."""

    def check(self, stream, call, err, caplog):
        with caplog.at_level(logging.WARNING, logger="spead2"):
            caplog.clear()
            with pytest.raises(OSError) as info:
                call()
        assert info.value.errno == err
        assert type(info.value) is type(OSError(err, ""))
        assert [r.levelno for r in caplog.records if r.name == "spead2"] == [logging.WARNING]
        assert stream.getvalue() == b""
        stream.send_heap(spead2.send.Heap())
        assert order(stream.getvalue()) == [(1, 0)]

    def test_group_larger_than_max_heaps(self, thread_pool, caplog):
        stream = spead2.send.BytesStream(thread_pool, spead2.send.StreamConfig(max_heaps=2))
        refs = [spead2.send.HeapReference(spead2.send.Heap()) for _ in range(3)]
        self.check(stream, lambda: stream.send_heaps(refs, RR), errno.EAGAIN, caplog)

    def test_substream_out_of_range(self, thread_pool, caplog):
        stream = spead2.send.BytesStream(thread_pool)
        assert stream.num_substreams == 1
        self.check(stream, lambda: stream.send_heap(spead2.send.Heap(), substream_index=1),
                   errno.EINVAL, caplog)

    def test_substream_out_of_range_in_a_group(self, thread_pool, caplog):
        stream = spead2.send.BytesStream(thread_pool, spead2.send.StreamConfig(max_heaps=2))
        refs = [spead2.send.HeapReference(spead2.send.Heap()),
                spead2.send.HeapReference(spead2.send.Heap(), substream_index=5)]
        self.check(stream, lambda: stream.send_heaps(refs, RR), errno.EINVAL, caplog)

    def test_explicit_cnt_too_large(self, thread_pool, caplog):
        stream = spead2.send.BytesStream(thread_pool)
        self.check(stream, lambda: stream.send_heap(spead2.send.Heap(), cnt=2**40),
                   errno.EINVAL, caplog)

    @pytest.mark.parametrize("empty", [[], spead2.send.HeapReferenceList([])])
    def test_empty_group(self, thread_pool, caplog, empty):
        stream = spead2.send.BytesStream(thread_pool)
        self.check(stream, lambda: stream.send_heaps(empty, RR), errno.EINVAL, caplog)


class TestHeapReference:
    def test_defaults_and_attributes(self):
        heap = spead2.send.Heap()
        ref = spead2.send.HeapReference(heap)
        assert (ref.heap, ref.cnt, ref.substream_index, ref.rate) == (heap, -1, 0, -1.0)
        ref.cnt = 5
        ref.substream_index = 2
        ref.rate = 1e6
        assert (ref.cnt, ref.substream_index, ref.rate) == (5, 2, 1e6)
        with pytest.raises(AttributeError):
            ref.heap = spead2.send.Heap()

    def test_keywords_only(self):
        with pytest.raises(TypeError):
            spead2.send.HeapReference(spead2.send.Heap(), 5)

    def test_checked(self):
        with pytest.raises(TypeError):
            spead2.send.HeapReference(None)
        with pytest.raises(TypeError):
            spead2.send.HeapReference(spead2.send.Heap(), rate="fast")
        with pytest.raises(spead2.RangeError):
            spead2.send.HeapReference(spead2.send.Heap(), substream_index=-1)

    def test_keeps_the_heap_alive(self, thread_pool):
        ref = spead2.send.HeapReference(data_heap(b"abc" * 100))
        stream = spead2.send.BytesStream(thread_pool)
        stream.send_heaps([ref], SERIAL)
        assert b"abc" * 100 in stream.getvalue()


class TestHeapReferenceList:
    def refs(self, n):
        return [spead2.send.HeapReference(spead2.send.Heap(), cnt=i) for i in range(n)]

    def test_len_and_slices(self):
        hrl = spead2.send.HeapReferenceList(self.refs(5))
        assert len(hrl) == 5
        part = hrl[1:4]
        assert isinstance(part, spead2.send.HeapReferenceList)
        assert len(part) == 3
        assert len(hrl[::2]) == 3
        with pytest.raises(ValueError):
            hrl[::0]
        with pytest.raises(TypeError):
            hrl[0]

    def test_copies_the_references(self, thread_pool):
        refs = self.refs(2)
        hrl = spead2.send.HeapReferenceList(refs)
        refs[0].cnt = 50
        stream = spead2.send.BytesStream(thread_pool, spead2.send.StreamConfig(max_heaps=2))
        stream.send_heaps(hrl, SERIAL)
        assert [cnt for cnt, _ in order(stream.getvalue())] == [0, 1]

    def test_only_heap_references(self):
        with pytest.raises(TypeError):
            spead2.send.HeapReferenceList([spead2.send.Heap()])
        with pytest.raises(TypeError):
            spead2.send.BytesStream(spead2.ThreadPool()).send_heaps([spead2.send.Heap()], RR)


class TestInprocStream:
    def test_each_queue_gets_its_substream(self, thread_pool):
        queues = [spead2.InprocQueue() for _ in range(3)]
        stream = spead2.send.InprocStream(thread_pool, queues,
                                          spead2.send.StreamConfig(max_heaps=6))
        assert stream.num_substreams == 3
        assert stream.queues == queues and all(a is b for a, b in zip(stream.queues, queues))
        heaps = [data_heap(bytes([i]) * 3000) for i in range(6)]
        refs = [spead2.send.HeapReference(h, substream_index=i % 3)
                for i, h in enumerate(heaps)]
        stream.send_heaps(refs, RR)
        for q, queue in enumerate(queues):
            queue.stop()
            rx = spead2.recv.Stream(thread_pool)
            rx.add_inproc_reader(queue)
            got = [h.cnt for h in rx]
            assert got == [q + 1, q + 4]

    def test_single_queue_forms(self, thread_pool):
        queue = spead2.InprocQueue()
        stream = spead2.send.InprocStream(thread_pool, queue)
        assert stream.queue is queue
        several = spead2.send.InprocStream(thread_pool, [queue, spead2.InprocQueue()])
        with pytest.raises(RuntimeError):
            several.queue

    def test_bad_queues(self, thread_pool):
        with pytest.raises(ValueError):
            spead2.send.InprocStream(thread_pool, [])
        with pytest.raises(TypeError):
            spead2.send.InprocStream(thread_pool, [object()])

    def test_stopped_queue_is_ecanceled(self, thread_pool):
        queue = spead2.InprocQueue()
        stream = spead2.send.InprocStream(thread_pool, [queue])
        queue.stop()
        with pytest.raises(OSError) as info:
            stream.send_heap(spead2.send.Heap())
        assert info.value.errno == errno.ECANCELED
