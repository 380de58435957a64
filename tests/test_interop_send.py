"""Our sender against the reference receiver (spead2 4.5.1).

Our ``spead2.send`` streams send every item set in every flavour, into a
``BytesStream`` and over UDP loopback; the reference receiver (in its own
environment, see ``refimpl.py``) must get exactly the values sent. Our
``BytesStream`` output must also be byte-for-byte what the reference's is
(the packet layout that ``test_send_packets`` checks byte by byte, which the
reference follows too). Written against the documented API only. Skipped
only when the reference cannot be installed.
"""

import pytest

import spead2
import spead2.send

import itemsets
from itemsets import FLAVOURS, ITEM_SETS
from refimpl import call_with_timeout

pytestmark = pytest.mark.interop

N_HEAPS = 4
TIMEOUT = 30.0
UDP_RATE = 1e8  # bytes/s: slow enough that loopback never drops


def our_flavour(flavour):
    bits, bug_compat = FLAVOURS[flavour]
    return spead2.Flavour(4, 64, bits, bug_compat)


def our_bytes(name, flavour, max_packet_size=1472):
    """What our BytesStream produces for N_HEAPS heaps of item set ``name``."""
    def run():
        stream = spead2.send.BytesStream(
            spead2.ThreadPool(), spead2.send.StreamConfig(max_packet_size=max_packet_size))
        itemsets.send_heaps(spead2, stream.send_heap, name, N_HEAPS, our_flavour(flavour))
        return stream.getvalue()
    return bytes(call_with_timeout(run, TIMEOUT, "sending into BytesStream"))


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_ours_bytes_received_by_reference(ref_python, tmp_path, name, flavour):
    path = tmp_path / "stream.bin"
    path.write_bytes(our_bytes(name, flavour))
    dump = ref_python.recv_bytes(path, tmp_path / "dump.pkl", FLAVOURS[flavour][1])
    itemsets.assert_dump_matches(name, dump, N_HEAPS, context="ours bytes -> reference: ")


def _packets(data):
    """Split a stream of SPEAD packets into (offset, packet) pairs (headers trusted)."""
    out = []
    pos = 0
    while pos + 8 <= len(data):
        n_items = int.from_bytes(data[pos + 6:pos + 8], "big")
        hab = 8 * data[pos + 3]
        addr_bytes = hab // 8
        payload_length = None
        for k in range(n_items):
            ptr = int.from_bytes(data[pos + 8 + 8 * k:pos + 16 + 8 * k], "big")
            if (ptr >> hab) & ((1 << (63 - hab)) - 1) == spead2.PAYLOAD_LENGTH_ID:
                payload_length = ptr & ((1 << (8 * addr_bytes)) - 1)
        if payload_length is None:
            break
        size = 8 + 8 * n_items + payload_length
        out.append((pos, data[pos:pos + size]))
        pos += size
    return out


def _heaps(data, bug_compat):
    """Parse a byte stream with our receiver: per heap, its items as
    (id, is_immediate, bytes), in pointer order."""
    import spead2.recv
    stream = spead2.recv.Stream(spead2.ThreadPool(), bug_compat=bug_compat)
    stream.add_buffer_reader(data)
    return [(heap.cnt, [(i.id, i.is_immediate, bytes(i)) for i in heap.get_items()])
            for heap in stream]


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_ours_bytes_identical_to_reference(ref_python, tmp_path, name, flavour):
    """Heaps without descriptors are byte-identical to the reference's.

    A heap that carries descriptors holds the same descriptor packets and
    item values, but its pointers list the descriptors first (this library's
    convention, see ``test_send_packets``) where the reference's ItemGroup
    interleaves each descriptor with its item.
    """
    bits, bug_compat = FLAVOURS[flavour]
    theirs = ref_python.send_bytes(tmp_path / "ref.bin", name, N_HEAPS, bits, bug_compat)
    ours = our_bytes(name, flavour)
    ours_packets, their_packets = _packets(ours), _packets(theirs)
    assert sum(len(p) for _, p in ours_packets) == len(ours)
    assert sum(len(p) for _, p in their_packets) == len(theirs)
    ours_heaps, their_heaps = _heaps(ours, bug_compat), _heaps(theirs, bug_compat)
    assert [cnt for cnt, _ in ours_heaps] == [cnt for cnt, _ in their_heaps]
    with_descriptors = set()
    for (cnt, a), (_, b) in zip(ours_heaps, their_heaps):
        if any(item[0] == spead2.DESCRIPTOR_ID for item in a + b):
            with_descriptors.add(cnt)
            descs = lambda items: [i for i in items if i[0] == spead2.DESCRIPTOR_ID]
            assert descs(a) == descs(b), f"heap {cnt}: descriptor packets differ"
            assert sorted(a) == sorted(b), f"heap {cnt}: items differ"
        else:
            assert a == b, f"heap {cnt}: items differ"
    assert len(with_descriptors) <= 1
    # every packet of a heap without descriptors is identical, byte for byte
    def by_heap(packets):
        out = {}
        for _, pkt in packets:
            cnt = _cnt_of(pkt)
            if cnt not in with_descriptors:
                out.setdefault(cnt, []).append(pkt)
        return out
    ours_by_heap, their_by_heap = by_heap(ours_packets), by_heap(their_packets)
    assert ours_by_heap.keys() == their_by_heap.keys()
    for cnt in ours_by_heap:
        for k, (a, b) in enumerate(zip(ours_by_heap[cnt], their_by_heap[cnt])):
            if a != b:
                at = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]),
                          min(len(a), len(b)))
                pytest.fail(f"heap {cnt} packet {k} differs at byte {at}: "
                            f"ours {len(a)} bytes {a[max(0, at - 8):at + 16].hex(' ')} ... vs "
                            f"reference {len(b)} bytes {b[max(0, at - 8):at + 16].hex(' ')}")
        assert len(ours_by_heap[cnt]) == len(their_by_heap[cnt])


def _cnt_of(pkt):
    hab = 8 * pkt[3]
    for k in range(int.from_bytes(pkt[6:8], "big")):
        ptr = int.from_bytes(pkt[8 + 8 * k:16 + 8 * k], "big")
        if (ptr >> hab) & ((1 << (63 - hab)) - 1) == spead2.HEAP_CNT_ID:
            return ptr & ((1 << hab) - 1)
    return None
