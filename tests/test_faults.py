"""Network faults: seeded loss, reordering and duplication of the packets of
multi-packet heaps, through a buffer and over UDP.

Whatever the faults, every heap delivered is byte-exact against what was
sent (never merged with another heap's packets, never partly stale), each
incomplete heap is dropped and counted, and without loss every heap
arrives. Heaps that lack HEAP_LENGTH follow the rule for them: what is
contiguous from offset 0 is delivered, and it is an exact prefix.
"""

import random
import socket
import time

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.send
from packets import heap_packets
from ports import free_udp_port
from refimpl import call_with_timeout

N_HEAPS = 400


class SentHeap:
    """A heap as sent: its packets and the items a receiver must see."""

    def __init__(self, cnt, packets, items, payload=None):
        self.cnt = cnt
        self.packets = packets
        self.items = items
        self.payload = payload


def make_heaps(rng, n=N_HEAPS, hab=40, first_cnt=1):
    """Heaps sent by our packetiser: a random-sized array (1 to ~14 packets
    of 1472 bytes), an immediate, and sometimes a second array."""
    flavour = spead2.Flavour(4, 64, hab, 0)
    heaps = []
    for k in range(n):
        cnt = first_cnt + k
        heap = spead2.send.Heap(flavour)
        items = []
        sizes = [rng.choice([100, 1400, 3000, 9000, 20000])]
        if rng.random() < 0.3:
            sizes.append(rng.randrange(16, 5000))
        for j, size in enumerate(sizes):
            data = np.frombuffer(rng.randbytes(size), np.uint8)
            item = spead2.Item(0x1000 + j, f"a{j}", "", (size,), dtype=np.uint8, value=data)
            heap.add_item(item)
            items.append((0x1000 + j, False, data.tobytes()))
        tag = spead2.Item(0x1100, "tag", "", (), format=[("u", 32)], value=cnt & 0xFFFFFFFF)
        heap.add_item(tag)
        items.append((0x1100, True, (cnt & 0xFFFFFFFF).to_bytes(hab // 8, "big")))
        packets = list(spead2.send.PacketGenerator(heap, cnt, 1472))
        heaps.append(SentHeap(cnt, packets, items))
    return heaps


class Faults:
    def __init__(self, loss=0.0, dup=0.0, delay=0, far=0.0):
        self.loss, self.dup, self.delay, self.far = loss, dup, delay, far

    def apply(self, rng, heaps):
        """The packets in arrival order, as (heap index, packet)."""
        arrivals = []
        for index, heap in enumerate(heaps):
            for pkt in heap.packets:
                copies = 0 if rng.random() < self.loss else 1
                if rng.random() < self.dup:
                    copies += 1
                for _ in range(copies):
                    position = len(arrivals)
                    if self.delay:
                        position += rng.randint(0, self.delay)
                    if rng.random() < self.far:
                        position += rng.randint(50, 500)
                    arrivals.append((position, len(arrivals), index, pkt))
        arrivals.sort()
        return [(index, pkt) for _, _, index, pkt in arrivals]

    def __repr__(self):
        return f"Faults(loss={self.loss}, dup={self.dup}, delay={self.delay}, far={self.far})"


PROFILES = {
    "loss": Faults(loss=0.05),
    "reorder": Faults(delay=8),
    "duplicate": Faults(dup=0.1),
    "far-reorder": Faults(delay=3, far=0.02),
    "everything": Faults(loss=0.03, dup=0.05, delay=6, far=0.01),
}


def check_delivery(heaps, arrivals, delivered, stats, lossless):
    by_cnt = {h.cnt: h for h in heaps}
    received_packets = {}
    for index, pkt in arrivals:
        received_packets.setdefault(index, set()).add(pkt)
    complete = {heaps[i].cnt for i, pkts in received_packets.items()
                if pkts == set(heaps[i].packets)}
    touched = {heaps[i].cnt for i in received_packets}
    for heap in delivered:
        sent = by_cnt.get(heap.cnt)
        assert sent is not None, f"heap {heap.cnt} was never sent"
        got = [(item.id, bool(item.is_immediate), bytes(item)) for item in heap.get_items()]
        assert got == sent.items, f"heap {heap.cnt} differs from what was sent"
        assert heap.cnt in complete, f"heap {heap.cnt} delivered without all its packets"
    cnts = [h.cnt for h in delivered]
    # every heap that left assembly is counted, delivered or not; with
    # HEAP_LENGTH on every packet an evicted or flushed heap is incomplete
    dropped = stats.incomplete_heaps_evicted + stats.incomplete_heaps_flushed
    assert stats.heaps == len(delivered) + dropped
    assert set(cnts) <= complete
    # every heap that got a packet was delivered or dropped, and counted
    assert len(set(cnts)) + dropped >= len(touched)
    assert len(touched - set(cnts)) <= dropped
    if lossless:
        assert set(cnts) == {h.cnt for h in heaps}
    return complete


def drain(stream, timeout=30):
    return call_with_timeout(lambda: list(stream), timeout, "draining the stream")


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("seed", [1, 2])
def test_buffer(thread_pool, profile, seed):
    rng = random.Random(f"{profile}:{seed}")
    heaps = make_heaps(rng, hab=rng.choice([40, 48]))
    faults = PROFILES[profile]
    arrivals = faults.apply(rng, heaps)
    max_heaps = 16
    stream = spead2.recv.Stream(thread_pool, max_heaps=max_heaps, ring_heaps=4)
    stream.add_buffer_reader(b"".join(pkt for _, pkt in arrivals))
    delivered = drain(stream)
    lossless = faults.loss == 0 and faults.far == 0
    complete = check_delivery(heaps, arrivals, delivered, stream.stats, lossless)
    if faults.loss:
        assert len(complete) < len(heaps)  # the faults did bite
    if faults.dup:
        assert stream.stats.duplicate_packets > 0


@pytest.mark.parametrize("max_heaps", [1, 2, 4])
def test_buffer_with_few_live_heaps(thread_pool, max_heaps):
    # Reordering beyond what max_heaps can hold evicts heaps early; their
    # late packets start new partial heaps. None of that may leak into a
    # delivered heap.
    rng = random.Random(max_heaps)
    heaps = make_heaps(rng)
    arrivals = PROFILES["everything"].apply(rng, heaps)
    stream = spead2.recv.Stream(thread_pool, max_heaps=max_heaps, ring_heaps=2)
    stream.add_buffer_reader(b"".join(pkt for _, pkt in arrivals))
    delivered = drain(stream)
    check_delivery(heaps, arrivals, delivered, stream.stats, False)
    assert stream.stats.incomplete_heaps_evicted > 0
    assert len(delivered) > N_HEAPS // 4


def send_paced(tx, port, packets, stream, base):
    """Send in bursts the socket buffer can hold, waiting for each to be read."""
    sent = 0
    for i in range(0, len(packets), 256):
        for pkt in packets[i:i + 256]:
            tx.sendto(pkt, ("127.0.0.1", port))
            sent += 1
        deadline = time.monotonic() + 10
        while stream.stats.packets - base < sent:
            assert time.monotonic() < deadline, f"{stream.stats.packets - base} of {sent} read"
            time.sleep(0.001)


def receive_over_udp(thread_pool, arrivals, max_heaps):
    """Send the packets of ``arrivals`` (``(index, packet)`` pairs) in order to
    a new stream's UDP reader on 127.0.0.1; return the stream, stopped, and
    the heaps it delivered."""
    stream = spead2.recv.Stream(thread_pool, max_heaps=max_heaps, ring_heaps=1024)
    port = free_udp_port()
    stream.add_udp_reader(port, bind_hostname="127.0.0.1", buffer_size=4 << 20)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        send_paced(tx, port, [pkt for _, pkt in arrivals], stream, 0)
    finally:
        tx.close()
    stream.stop()
    return stream, drain(stream)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_udp(thread_pool, profile):
    rng = random.Random(f"udp:{profile}")
    heaps = make_heaps(rng)
    faults = PROFILES[profile]
    arrivals = faults.apply(rng, heaps)
    stream, delivered = receive_over_udp(thread_pool, arrivals, max_heaps=16)
    check_delivery(heaps, arrivals, delivered, stream.stats, faults.loss == 0 and faults.far == 0)


def test_udp_heaps_interleaved_from_two_senders(thread_pool):
    # Two senders' heaps (distinct cnt ranges) interleaved packet by packet
    # on one socket, with faults: no heap takes a packet of the other's.
    rng = random.Random(99)
    a = make_heaps(rng, 150, first_cnt=1)
    b = make_heaps(rng, 150, first_cnt=1_000_001)
    arr_a = Faults(loss=0.02, dup=0.05, delay=4).apply(rng, a)
    arr_b = Faults(loss=0.02, dup=0.05, delay=4).apply(rng, b)
    merged = []
    while arr_a or arr_b:
        src = arr_a if arr_a and (not arr_b or rng.random() < 0.5) else arr_b
        index, pkt = src.pop(0)
        merged.append((index if src is arr_a else index + len(a), pkt))
    stream, delivered = receive_over_udp(thread_pool, merged, max_heaps=32)
    check_delivery(a + b, merged, delivered, stream.stats, False)
    assert len(delivered) > 150


class TestWithoutHeapLength:
    """Heaps whose packets omit HEAP_LENGTH: delivered when contiguous from
    offset 0 (at eviction or at the end), as an exact prefix."""

    @pytest.mark.parametrize("seed", range(3))
    def test_only_exact_prefixes_are_delivered(self, thread_pool, seed):
        rng = random.Random(seed)
        heaps = []
        for k in range(200):
            payload = rng.randbytes(rng.choice([500, 3000, 7000]))
            pkts = heap_packets(k + 1, payload, 1000, items=[(False, 0x1000, 0)],
                                with_length=False)
            heaps.append(SentHeap(k + 1, pkts, None, payload))
        arrivals = Faults(loss=0.05, dup=0.05, delay=4).apply(rng, heaps)
        stream = spead2.recv.Stream(thread_pool, max_heaps=8)
        stream.add_buffer_reader(b"".join(pkt for _, pkt in arrivals))
        delivered = drain(stream)
        by_cnt = {h.cnt: h for h in heaps}
        first_packets = {i for i, pkt in arrivals if pkt == heaps[i].packets[0]}
        assert delivered
        for heap in delivered:
            sent = by_cnt[heap.cnt]
            (item,) = heap.get_items()
            data = bytes(item)
            assert sent.payload.startswith(data) and data
            assert heap.cnt - 1 in first_packets
        st = stream.stats
        assert st.heaps + st.incomplete_heaps_evicted + st.incomplete_heaps_flushed >= len(
            {i for i, _ in arrivals})
