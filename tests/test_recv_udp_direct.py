"""UDP payloads received straight into heap memory.

The UDP reader predicts where the coming datagrams' payloads belong and has
the kernel write them there. Whatever arrives (losses, duplicates, reordering,
garbage, a packet shaped unlike the others, coalesced trains or single
datagrams), the heaps must come out exactly as when every datagram goes
through the reader's own buffers (``SPEAD2_UDP_DIRECT=0``).
"""

import random
import socket
import struct

import pytest

import spead2
import spead2.recv
from packets import heap_packets, packet, stop_packet
from ports import free_udp_port
from refimpl import call_with_timeout

SOL_UDP = 17
UDP_SEGMENT = 103
ITEM_ID = 0x1000
HEAP_SIZE = 24000
PACKET_PAYLOAD = 1400


def heap_payload(cnt):
    rng = random.Random(cnt)
    return bytes(rng.getrandbits(8) for _ in range(HEAP_SIZE))


def clean_datagrams(n_heaps=10, packet_payload=PACKET_PAYLOAD):
    out = []
    for cnt in range(1, n_heaps + 1):
        out += heap_packets(cnt, heap_payload(cnt), packet_payload, items=[(False, ITEM_ID, 0)])
    return out


def equal_size_datagrams(n_heaps=10):
    """Heaps whose packets are all 1440 bytes: the first carries one more
    item pointer and 8 bytes less payload."""
    first = PACKET_PAYLOAD - 8
    length = first + 16 * PACKET_PAYLOAD
    out = []
    for cnt in range(1, n_heaps + 1):
        payload = heap_payload(cnt)[:length]
        out.append(packet(cnt, payload[:first], 0, length, items=[(False, ITEM_ID, 0)]))
        for off in range(first, length, PACKET_PAYLOAD):
            out.append(packet(cnt, payload[off:off + PACKET_PAYLOAD], off, length))
    assert len({len(d) for d in out}) == 1
    return out


def send_datagrams(datagrams, port, gso):
    """Send in order; with ``gso`` runs of equal-sized datagrams go as one
    UDP_SEGMENT train, as spead2's senders do."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = ("127.0.0.1", port)
    try:
        i = 0
        while i < len(datagrams):
            size = len(datagrams[i])
            j = i + 1
            if gso:
                while (j < len(datagrams) and len(datagrams[j]) == size
                       and (j - i + 1) * size <= 65000 and j - i < 32):
                    j += 1
            if j - i > 1:
                try:
                    sock.sendmsg([b"".join(datagrams[i:j])],
                                 [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, addr)
                except OSError as exc:
                    pytest.skip(f"UDP_SEGMENT unavailable: {exc}")
            else:
                sock.sendto(datagrams[i], addr)
            i = j
    finally:
        sock.close()


def receive(monkeypatch, datagrams, direct, gro, out_of_order):
    """What a stream makes of ``datagrams`` (all queued before it starts, so
    that the reader takes them in full batches)."""
    monkeypatch.setenv("SPEAD2_UDP_DIRECT", "1" if direct else "0")
    monkeypatch.setenv("SPEAD2_UDP_GRO", "1" if gro else "0")
    tp = spead2.ThreadPool()
    config = spead2.recv.StreamConfig(max_heaps=4, explicit_start=True,
                                      allow_out_of_order=out_of_order)
    ring = spead2.recv.RingStreamConfig(heaps=128, contiguous_only=False,
                                        incomplete_keep_payload_ranges=True)
    stream = spead2.recv.Stream(tp, config, ring)
    port = free_udp_port()
    stream.add_udp_reader(port, bind_hostname="127.0.0.1", buffer_size=4 << 20)
    send_datagrams(list(datagrams) + [stop_packet()], port, gso=gro)
    stream.start()
    heaps = call_with_timeout(lambda: list(stream), 30, "draining the stream")
    stats = stream.stats
    tp.stop()
    out = []
    for heap in heaps:
        if isinstance(heap, spead2.recv.IncompleteHeap):
            out.append(("incomplete", heap.cnt, heap.received_length,
                        tuple(tuple(r) for r in heap.payload_ranges)))
        else:
            values = {item.id: bytes(memoryview(item)) for item in heap.get_items()}
            out.append(("heap", heap.cnt, values.get(ITEM_ID)))
    return out, stats


def perturbed(case, datagrams):
    d = list(datagrams)
    rng = random.Random(case)
    mid = len(d) // 2
    if case == "clean":
        pass
    elif case == "loss":
        del d[mid]
    elif case == "losses":
        for i in sorted(rng.sample(range(len(d)), 8), reverse=True):
            del d[i]
    elif case == "duplicate":
        d.insert(mid + 1, d[mid])
    elif case == "duplicate-later":
        d.insert(mid + 5, d[mid])
    elif case == "swap":
        d[mid], d[mid + 1] = d[mid + 1], d[mid]
    elif case == "reversed-heap":
        d[20:38] = reversed(d[20:38])
    elif case == "garbage":
        d.insert(mid, bytes([0x53, 4, 3, 5, 0, 0, 0, 4]) + bytes(rng.getrandbits(8)
                                                                  for _ in range(1440)))
    elif case == "same-size-garbage":
        d[mid] = bytes(rng.getrandbits(8) for _ in range(len(d[mid])))
    elif case == "extra-item":
        # the packet continues its heap but carries one more item pointer
        cnt = 1 + mid // 18
        off = (mid % 18) * PACKET_PAYLOAD
        d[mid] = packet(cnt, heap_payload(cnt)[off:off + PACKET_PAYLOAD], off, HEAP_SIZE,
                        items=[(True, 0x2000, 5)])
    elif case == "truncated":
        d[mid] = d[mid][:-100]
    elif case == "interleaved":
        a, b = d[18:36], d[36:54]
        d[18:54] = [x for pair in zip(a, b) for x in pair]
    elif case == "wrong-offset":
        # a packet claiming the payload of the one after it: a duplicate later
        cnt = 1 + mid // 18
        off = (mid % 18 + 1) * PACKET_PAYLOAD
        d[mid] = packet(cnt, heap_payload(cnt)[off:off + PACKET_PAYLOAD], off, HEAP_SIZE)
    elif case == "stop-mid-heap":
        d.insert(mid, stop_packet())
    elif case == "trains-across-heaps":
        # every datagram of every heap the same size, so that one coalesced
        # train may end one heap and start the next
        d = equal_size_datagrams()
    elif case.startswith("random"):
        for _ in range(6):
            op = rng.randrange(4)
            i = rng.randrange(len(d) - 1)
            if op == 0:
                del d[i]
            elif op == 1:
                d.insert(rng.randrange(len(d)), d[i])
            elif op == 2:
                d[i], d[i + 1] = d[i + 1], d[i]
            else:
                d[i] = d[i][:rng.randrange(8, len(d[i]))]
    else:
        raise AssertionError(case)
    return d


CASES = ["clean", "loss", "losses", "duplicate", "duplicate-later", "swap", "reversed-heap",
         "garbage", "same-size-garbage", "extra-item", "truncated", "interleaved",
         "wrong-offset", "stop-mid-heap", "trains-across-heaps", "random-1", "random-2",
         "random-3"]


@pytest.mark.parametrize("out_of_order", [False, True], ids=["in-order", "out-of-order"])
@pytest.mark.parametrize("gro", [True, False], ids=["trains", "datagrams"])
@pytest.mark.parametrize("case", CASES)
def test_same_heaps_as_through_the_readers_buffers(monkeypatch, case, gro, out_of_order):
    datagrams = perturbed(case, clean_datagrams())
    direct, direct_stats = receive(monkeypatch, datagrams, True, gro, out_of_order)
    buffered, buffered_stats = receive(monkeypatch, datagrams, False, gro, out_of_order)
    assert direct == buffered
    assert buffered_stats.direct_packets == 0
    for name in ("packets", "heaps", "bad_packets", "duplicate_packets", "rejected_packets",
                 "too_large_packets", "bytes", "incomplete_heaps_evicted"):
        assert getattr(direct_stats, name) == getattr(buffered_stats, name), name


@pytest.mark.parametrize("gro", [True, False], ids=["trains", "datagrams"])
def test_an_ordinary_stream_goes_straight_into_heap_memory(monkeypatch, gro):
    heaps, stats = receive(monkeypatch, clean_datagrams(30), True, gro, False)
    assert heaps == [("heap", cnt, heap_payload(cnt)) for cnt in range(1, 31)]
    # the first receive (a full batch, several heaps) and each heap's first
    # and last packets go through the reader's buffers; the rest go direct
    assert stats.direct_packets > stats.packets * 2 // 3
    assert stats.direct_packets <= stats.packets


def test_small_payloads_are_copied(monkeypatch):
    datagrams = clean_datagrams(packet_payload=512)
    heaps, stats = receive(monkeypatch, datagrams, True, False, False)
    assert heaps == [("heap", cnt, heap_payload(cnt)) for cnt in range(1, 11)]
    assert stats.direct_packets == 0


def test_a_chunk_stream_takes_full_batches(monkeypatch):
    """Heaps of a chunk stream go where its placement says, never into
    memory of their own: the reader makes no plan and does not shrink its
    receives to plan the next heap."""
    pytest.importorskip("numba")
    from chunk_support import make_chunk, next_chunk

    monkeypatch.setenv("SPEAD2_UDP_GRO", "0")
    placement = spead2.recv.ChunkPlacement(chunk_item=0x1600, chunk_step=4 * HEAP_SIZE,
                                           axes=[("chunk", 4, HEAP_SIZE)], heap_size=HEAP_SIZE)
    data_ring = spead2.recv.ChunkRingbuffer(8)
    free_ring = spead2.recv.ChunkRingbuffer(8)
    tp = spead2.ThreadPool()
    stream = spead2.recv.ChunkRingStream(
        tp, spead2.recv.StreamConfig(explicit_start=True, max_heaps=4),
        spead2.recv.ChunkStreamConfig(items=placement.items, max_chunks=2, place=placement),
        data_ring, free_ring)
    for _ in range(4):
        stream.add_free_chunk(make_chunk(placement.chunk_bytes, placement.heaps_per_chunk))
    port = free_udp_port()
    stream.add_udp_reader(port, bind_hostname="127.0.0.1", buffer_size=4 << 20)
    datagrams = []
    for i in range(8):
        datagrams += heap_packets(i + 1, heap_payload(i + 1), PACKET_PAYLOAD,
                                  items=[(True, 0x1600, i * HEAP_SIZE)])
    # the stop packet ends the stream, which hands both chunks on
    send_datagrams(datagrams + [stop_packet()], port, gso=False)
    stream.start()
    chunks = []
    for _ in range(2):
        chunk = next_chunk(data_ring)
        chunks.append((chunk.chunk_id, bytes(chunk.present), bytes(chunk.data)))
    stats = stream.stats
    stream.stop()
    tp.stop()
    assert [c[0] for c in chunks] == [0, 1]
    for chunk_id, present, data in chunks:
        assert present == b"\1" * 4
        assert data == b"".join(heap_payload(chunk_id * 4 + k + 1) for k in range(4))
    assert stats["direct_packets"] == 0
    # all 145 datagrams were waiting: a few full receives take them (one
    # datagram per receive would need a batch per 8)
    assert stats["batches"] <= 3
