"""Our sender against the reference receiver (spead2 4.5.1).

Our ``spead2.send`` streams send every item set in every flavour, into a
``BytesStream`` and over UDP loopback; the reference receiver (in its own
environment, see ``refimpl.py``) must get exactly the values sent. Our
``BytesStream`` output must also be byte-for-byte what the reference's is
(the conventions of the API contract, section 4). Written against the
documented API only. Skipped only when the reference cannot be installed.
"""

import pytest

import spead2
import spead2.send

import itemsets
import refimpl
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
        addr_bytes = data[pos + 3]
        payload_length = None
        for k in range(n_items):
            ptr = int.from_bytes(data[pos + 8 + 8 * k:pos + 16 + 8 * k], "big")
            if (ptr >> 48) & 0x7FFF == spead2.PAYLOAD_LENGTH_ID:
                payload_length = ptr & ((1 << (8 * addr_bytes)) - 1)
        if payload_length is None:
            break
        size = 8 + 8 * n_items + payload_length
        out.append((pos, data[pos:pos + size]))
        pos += size
    return out


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_ours_bytes_identical_to_reference(ref_python, tmp_path, name, flavour):
    bits, bug_compat = FLAVOURS[flavour]
    theirs = ref_python.send_bytes(tmp_path / "ref.bin", name, N_HEAPS, bits, bug_compat)
    ours = our_bytes(name, flavour)
    if ours == theirs:
        return
    ours_packets, their_packets = _packets(ours), _packets(theirs)
    for k, ((offset, a), (_, b)) in enumerate(zip(ours_packets, their_packets)):
        if a != b:
            at = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
            pytest.fail(f"packet {k} (stream offset {offset}) differs at byte {at}: "
                        f"ours {len(a)} bytes {a[max(0, at - 8):at + 16].hex(' ')} ... vs "
                        f"reference {len(b)} bytes {b[max(0, at - 8):at + 16].hex(' ')}")
    pytest.fail(f"ours {len(ours)} bytes in {len(ours_packets)} packets, reference "
                f"{len(theirs)} bytes in {len(their_packets)} packets")


def _send_udp_to_reference(ref_python, tmp_path, name, flavour, host="127.0.0.1",
                           max_packet_size=1472):
    bits, bug_compat = FLAVOURS[flavour]
    out = tmp_path / "dump.pkl"
    receiver, port = ref_python.start_recv_udp(out, bug_compat=bug_compat, host=host,
                                               timeout=TIMEOUT)
    with receiver:
        def run():
            config = spead2.send.StreamConfig(max_packet_size=max_packet_size, rate=UDP_RATE)
            stream = spead2.send.UdpStream(spead2.ThreadPool(), host, port, config)
            itemsets.send_heaps(spead2, stream.send_heap, name, N_HEAPS, our_flavour(flavour))
        call_with_timeout(run, TIMEOUT, "sending over UdpStream")
        # The end-of-stream heap should stop it at once; if it never comes,
        # SIGTERM makes it write what it has (and report end='timeout').
        receiver.finish(timeout=TIMEOUT, terminate_after=5.0)
    return refimpl.load_dump(out)


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_ours_udp_received_by_reference(ref_python, tmp_path, name, flavour):
    dump = _send_udp_to_reference(ref_python, tmp_path, name, flavour)
    itemsets.assert_dump_matches(name, dump, N_HEAPS, context="ours UDP -> reference: ")


def test_ours_udp_received_by_reference_large_packets(ref_python, tmp_path):
    dump = _send_udp_to_reference(ref_python, tmp_path, "large", "64-40", max_packet_size=8972)
    itemsets.assert_dump_matches("large", dump, N_HEAPS, context="ours UDP -> reference: ")


def test_ours_udp_received_by_reference_ipv6(ref_python, tmp_path):
    import socket
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    dump = _send_udp_to_reference(ref_python, tmp_path, "mix", "64-40", host="::1")
    itemsets.assert_dump_matches("mix", dump, N_HEAPS, context="ours UDP (IPv6) -> reference: ")
