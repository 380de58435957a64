"""Our receiver against the reference sender (spead2 4.5.1).

The reference (in its own environment, see ``refimpl.py``) sends every item
set in every flavour, into a file and over UDP loopback; our
``spead2.recv.Stream`` must deliver exactly the values sent. Written against
the documented API only. Skipped only when the reference cannot be installed.
"""

import pytest

import spead2
import spead2.recv

import itemsets
from itemsets import FLAVOURS, ITEM_SETS
from ports import free_udp_port
from refimpl import call_with_timeout

pytestmark = pytest.mark.interop

N_HEAPS = 4
TIMEOUT = 30.0
UDP_RATE = 1e8  # bytes/s: slow enough that loopback never drops


def add_udp_reader_on_free_port(stream, host="127.0.0.1", attempts=10):
    """Bind ``stream`` to a free UDP port on ``host``; return the port."""
    error = None
    for _ in range(attempts):
        port = free_udp_port(host)
        try:
            call_with_timeout(lambda: stream.add_udp_reader(port, bind_hostname=host),
                              TIMEOUT, "add_udp_reader")
            return port
        except (RuntimeError, OSError) as exc:
            error = exc
    raise AssertionError(f"could not bind a UDP reader in {attempts} attempts: {error!r}")


class OurStream:
    """Our receive stream, stopped (with a bounded wait) when the test ends."""

    def __init__(self, bug_compat):
        self.thread_pool = spead2.ThreadPool()
        self.stream = spead2.recv.Stream(self.thread_pool, bug_compat=bug_compat,
                                         max_heaps=4, ring_heaps=4)

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        call_with_timeout(self.stream.stop, TIMEOUT, "Stream.stop")


def flavour_params(flavour):
    return FLAVOURS[flavour]


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_reference_bytes_received_by_ours(ref_python, tmp_path, name, flavour):
    bits, bug_compat = flavour_params(flavour)
    data = ref_python.send_bytes(tmp_path / "stream.bin", name, N_HEAPS, bits, bug_compat)
    with OurStream(bug_compat) as stream:
        call_with_timeout(lambda: stream.add_buffer_reader(data), TIMEOUT, "add_buffer_reader")
        dump = itemsets.collect_heaps(spead2, stream, TIMEOUT)
    itemsets.assert_dump_matches(name, dump, N_HEAPS, context="reference bytes -> ours: ")


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_reference_udp_received_by_ours(ref_python, name, flavour):
    bits, bug_compat = flavour_params(flavour)
    with OurStream(bug_compat) as stream:
        port = add_udp_reader_on_free_port(stream)
        with ref_python.start_send_udp(port, name, N_HEAPS, bits, bug_compat,
                                       rate=UDP_RATE) as sender:
            dump = itemsets.collect_heaps(spead2, stream, TIMEOUT, stop_when=sender.exited)
            sender.finish(timeout=TIMEOUT)
    itemsets.assert_dump_matches(name, dump, N_HEAPS, context="reference UDP -> ours: ")


@pytest.mark.parametrize("gro", ["1", "0"])
def test_reference_udp_received_by_ours_large_packets(ref_python, monkeypatch, gro):
    """Jumbo-sized packets (8972 bytes) within the default max_size, with
    the kernel coalescing datagrams (GRO) and without."""
    monkeypatch.setenv("SPEAD2_UDP_GRO", gro)
    with OurStream(0) as stream:
        port = add_udp_reader_on_free_port(stream)
        with ref_python.start_send_udp(port, "large", N_HEAPS, rate=UDP_RATE,
                                       max_packet_size=8972) as sender:
            dump = itemsets.collect_heaps(spead2, stream, TIMEOUT, stop_when=sender.exited)
            sender.finish(timeout=TIMEOUT)
    itemsets.assert_dump_matches("large", dump, N_HEAPS, context="reference UDP -> ours: ")


def test_reference_udp_received_by_ours_ipv6(ref_python):
    try:
        free_udp_port("::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with OurStream(0) as stream:
        port = add_udp_reader_on_free_port(stream, host="::1")
        with ref_python.start_send_udp(port, "mix", N_HEAPS, host="::1",
                                       rate=UDP_RATE) as sender:
            dump = itemsets.collect_heaps(spead2, stream, TIMEOUT, stop_when=sender.exited)
            sender.finish(timeout=TIMEOUT)
    itemsets.assert_dump_matches("mix", dump, N_HEAPS, context="reference UDP (IPv6) -> ours: ")
