"""UdpStream over loopback, checked with a plain Python socket receiver."""

import logging
import socket
import time

import pytest

import spead2
import spead2.send
from test_send_support import StandInItem, addressed, data_heap, packet

RECV_TIMEOUT = 5.0


def receive(sock, count):
    return [sock.recv(65536) for _ in range(count)]


def assert_nothing_more(sock):
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(65536)


def expected_packets(heap, cnt, max_packet_size=1472):
    return list(spead2.send.PacketGenerator(heap, cnt, max_packet_size))


class TestUnicast:
    def test_sends_each_packet_as_a_datagram(self, thread_pool, receiver):
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1])
        heap = data_heap(bytes(i % 256 for i in range(5000)))
        stream.send_heap(heap)
        expected = expected_packets(heap, 1)
        assert len(expected) == 4
        assert receive(receiver, 4) == expected
        assert_nothing_more(receiver)

    def test_heaps_numbered_in_order(self, thread_pool, receiver):
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1])
        for _ in range(3):
            stream.send_heap(spead2.send.Heap())
        assert receive(receiver, 3) == [packet(c, 1, 0, [addressed(0, 0)], b"\0")
                                        for c in (1, 2, 3)]

    def test_many_items_gathered_into_one_packet(self, thread_pool, receiver):
        # More pieces than one packet's gather list holds: payload is copied.
        heap = spead2.send.Heap()
        for i in range(40):
            heap.add_item(StandInItem(0x1000 + i, bytes([i]) * 6))
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1])
        stream.send_heap(heap)
        expected = expected_packets(heap, 1)
        assert receive(receiver, len(expected)) == expected

    def test_config_packet_size(self, thread_pool, receiver):
        config = spead2.send.StreamConfig(max_packet_size=9007)
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                       config)
        heap = data_heap(bytes(20000))
        stream.send_heap(heap)
        expected = expected_packets(heap, 1, 9007)
        got = receive(receiver, len(expected))
        assert got == expected and max(map(len, got)) == 9000

    def test_keyword_arguments(self, thread_pool, receiver):
        stream = spead2.send.UdpStream(thread_pool, hostname="127.0.0.1",
                                       port=receiver.getsockname()[1], buffer_size=65536,
                                       config=spead2.send.StreamConfig(max_heaps=1))
        stream.send_heap(spead2.send.Heap())
        assert receive(receiver, 1) == [packet(1, 1, 0, [addressed(0, 0)], b"\0")]

    def test_hostname_is_resolved(self, thread_pool, receiver):
        stream = spead2.send.UdpStream(thread_pool, "localhost", receiver.getsockname()[1])
        stream.send_heap(spead2.send.Heap())
        assert receive(receiver, 1)[0][:2] == b"\x53\x04"

    def test_ipv6_loopback(self, thread_pool):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        with sock:
            sock.settimeout(RECV_TIMEOUT)
            stream = spead2.send.UdpStream(thread_pool, "::1", sock.getsockname()[1])
            stream.send_heap(spead2.send.Heap())
            assert receive(sock, 1) == [packet(1, 1, 0, [addressed(0, 0)], b"\0")]

    def test_given_socket_is_used_and_may_be_closed(self, thread_pool, receiver):
        own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        own.bind(("127.0.0.1", 0))
        source = own.getsockname()
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                       socket=own)
        own.close()
        stream.send_heap(spead2.send.Heap())
        data, sender = receiver.recvfrom(65536)
        assert sender == source
        assert data == packet(1, 1, 0, [addressed(0, 0)], b"\0")

    def test_given_socket_positionally(self, thread_pool, receiver):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
            stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                           spead2.send.StreamConfig(), 65536, own)
        stream.send_heap(spead2.send.Heap())
        assert len(receive(receiver, 1)) == 1

    def test_heap_held_only_by_stream_call(self, thread_pool, receiver):
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1])
        stream.send_heap(data_heap(b"x" * 3000))
        assert b"".join(p[48:] if i == 0 else p[40:]
                        for i, p in enumerate(receive(receiver, 3))) == b"x" * 3000

    def test_send_to_closed_port_does_not_fail(self, thread_pool):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", port)
        for _ in range(3):
            stream.send_heap(spead2.send.Heap())


class TestUnicastErrors:
    @pytest.mark.parametrize("port", [-1, 65536, 100000])
    def test_port_out_of_range(self, thread_pool, port):
        with pytest.raises(OverflowError):
            spead2.send.UdpStream(thread_pool, "127.0.0.1", port)

    def test_unresolvable_host(self, thread_pool):
        with pytest.raises(OSError) as info:
            spead2.send.UdpStream(thread_pool, "no-such-host.invalid", 8888)
        assert isinstance(info.value, RuntimeError)

    def test_packet_too_large_for_udp(self, thread_pool, receiver):
        config = spead2.send.StreamConfig(max_packet_size=70000)
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                       config)
        with pytest.raises(IOError):
            stream.send_heap(data_heap(bytes(100000)))
        # The stream is still usable afterwards.
        stream.send_heap(spead2.send.Heap())
        assert receive(receiver, 1) == [packet(2, 1, 0, [addressed(0, 0)], b"\0")]

    def test_huge_packet_size_limit(self, thread_pool, receiver):
        config = spead2.send.StreamConfig(max_packet_size=2**30)
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                       config)
        stream.send_heap(data_heap(bytes(1000)))
        with pytest.raises(IOError):
            stream.send_heap(data_heap(bytes(300000)))
        assert len(receive(receiver, 1)[0]) == 1048
        assert_nothing_more(receiver)

    def test_small_buffer_is_accepted(self, thread_pool, receiver, caplog):
        with caplog.at_level(logging.WARNING, logger="spead2"):
            spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                  buffer_size=65536)
        assert not caplog.records

    def test_oversized_buffer_logs_warning(self, thread_pool, receiver, caplog):
        with open("/proc/sys/net/core/wmem_max") as f:
            wmem_max = int(f.read())
        with caplog.at_level(logging.WARNING, logger="spead2"):
            stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                           buffer_size=wmem_max * 4)
        assert any("buffer" in r.getMessage() for r in caplog.records)
        stream.send_heap(spead2.send.Heap())
        assert len(receive(receiver, 1)) == 1

    def test_invalid_arguments(self, thread_pool):
        with pytest.raises(TypeError):
            spead2.send.UdpStream(thread_pool, "127.0.0.1")
        with pytest.raises(TypeError):
            spead2.send.UdpStream(thread_pool, "127.0.0.1", 8888, colour="red")
        with pytest.raises(TypeError):
            spead2.send.UdpStream(None, "127.0.0.1", 8888)
        with pytest.raises(ValueError):
            spead2.send.UdpStream(thread_pool, "127.0.0.1", 8888, buffer_size=-1)

    def test_max_heaps_exceeded_by_concurrent_senders(self, thread_pool, receiver):
        import threading
        config = spead2.send.StreamConfig(max_heaps=1, rate=1e6, burst_size=1000)
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                       config)
        slow = data_heap(bytes(200000))
        thread = threading.Thread(target=stream.send_heap, args=(slow,))
        thread.start()
        try:
            time.sleep(0.05)
            with pytest.raises(IOError):
                stream.send_heap(spead2.send.Heap())
        finally:
            thread.join(timeout=10)
        assert not thread.is_alive()


MCAST_GROUP = "239.255.42.99"


@pytest.fixture
def mcast_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((MCAST_GROUP, 0))
    mreq = socket.inet_aton(MCAST_GROUP) + socket.inet_aton("127.0.0.1")
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError as exc:
        sock.close()
        pytest.skip(f"cannot join multicast group on loopback: {exc}")
    sock.settimeout(RECV_TIMEOUT)
    yield sock
    sock.close()


class TestMulticast:
    def test_ipv4_with_interface_address(self, thread_pool, mcast_receiver):
        port = mcast_receiver.getsockname()[1]
        stream = spead2.send.UdpStream(thread_pool, MCAST_GROUP, port,
                                       spead2.send.StreamConfig(), 65536, 1, "127.0.0.1")
        heap = data_heap(b"multicast")
        stream.send_heap(heap)
        assert receive(mcast_receiver, 1) == expected_packets(heap, 1)

    def test_ipv4_multi_packet_heaps(self, thread_pool, mcast_receiver):
        port = mcast_receiver.getsockname()[1]
        stream = spead2.send.UdpStream(thread_pool, MCAST_GROUP, port,
                                       spead2.send.StreamConfig(), 65536, 1, "127.0.0.1")
        heaps = [data_heap(bytes([i]) * 10000) for i in range(3)]
        for heap in heaps:
            stream.send_heap(heap)
        expected = [p for i, heap in enumerate(heaps) for p in expected_packets(heap, i + 1)]
        assert receive(mcast_receiver, len(expected)) == expected

    def test_ipv4_keywords(self, thread_pool, mcast_receiver):
        port = mcast_receiver.getsockname()[1]
        stream = spead2.send.UdpStream(thread_pool, multicast_group=MCAST_GROUP, port=port,
                                       ttl=2, interface_address="127.0.0.1")
        stream.send_heap(spead2.send.Heap())
        assert receive(mcast_receiver, 1) == [packet(1, 1, 0, [addressed(0, 0)], b"\0")]

    def test_ttl_only_form(self, thread_pool):
        # Without an interface the route decides; only check it is accepted.
        stream = spead2.send.UdpStream(thread_pool, MCAST_GROUP, 8888,
                                       spead2.send.StreamConfig(), 65536, 4)
        assert stream.config.max_packet_size == 1472

    def test_multicast_form_needs_multicast_address(self, thread_pool):
        with pytest.raises(ValueError):
            spead2.send.UdpStream(thread_pool, "127.0.0.1", 8888, spead2.send.StreamConfig(),
                                  65536, 1, "127.0.0.1")

    def test_bad_interface_address(self, thread_pool):
        with pytest.raises(OSError) as info:
            spead2.send.UdpStream(thread_pool, MCAST_GROUP, 8888, spead2.send.StreamConfig(),
                                  65536, 1, "no-such-host.invalid")
        assert isinstance(info.value, RuntimeError)

    def test_ipv6_interface_index_form(self, thread_pool):
        try:
            index = socket.if_nametoindex("lo")
            stream = spead2.send.UdpStream(thread_pool, "ff14::1234", 8888,
                                           spead2.send.StreamConfig(), 65536, 1, index)
        except OSError as exc:
            if not isinstance(exc, RuntimeError):
                raise
            pytest.skip(f"IPv6 multicast unavailable: {exc}")
        assert stream.config.max_heaps == 4

    def test_bad_ttl(self, thread_pool):
        with pytest.raises(ValueError):
            spead2.send.UdpStream(thread_pool, MCAST_GROUP, 8888, spead2.send.StreamConfig(),
                                  65536, 300, "127.0.0.1")


class TestRateLimit:
    def test_rate_is_honoured_over_a_second(self, thread_pool, receiver):
        rate = 4e6
        config = spead2.send.StreamConfig(rate=rate, burst_size=65536)
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                       config)
        heap = data_heap(bytes(100000))
        per_heap = sum(map(len, expected_packets(heap, 1)))
        n_heaps = 40
        start = time.monotonic()
        for _ in range(n_heaps):
            stream.send_heap(heap)
        elapsed = time.monotonic() - start
        ideal = (n_heaps * per_heap - config.burst_size) / rate
        assert ideal > 0.9
        assert ideal * 0.97 <= elapsed <= ideal * 1.2 + 0.05

    def test_unlimited_is_fast(self, thread_pool, receiver):
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1])
        heap = data_heap(bytes(1000000))
        start = time.monotonic()
        stream.send_heap(heap)
        assert time.monotonic() - start < 1.0


IPV6_NETNS_SCRIPT = r"""
import socket, struct, subprocess, sys, time
import spead2, spead2.send

def ip(*args):
    subprocess.run(["ip", *args], check=True, timeout=10)

ip("link", "set", "lo", "up")
ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
ip("link", "set", "v0", "up")
ip("link", "set", "v1", "up")
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    out = subprocess.run(["ip", "-6", "addr", "show", "dev", "v0"], capture_output=True,
                         text=True, timeout=10).stdout
    if "inet6" in out and "tentative" not in out:
        break
    time.sleep(0.1)
index = socket.if_nametoindex("v0")
group = "ff14::1234"
recv = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
recv.bind(("::", 0))
recv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index))
recv.settimeout(5)
stream = spead2.send.UdpStream(spead2.ThreadPool(), group, recv.getsockname()[1],
                               spead2.send.StreamConfig(), 65536, 1, index)
heap = spead2.send.Heap()
stream.send_heap(heap)
data = recv.recv(65536)
expected = next(iter(spead2.send.PacketGenerator(heap, 1, 1472)))
print("OK" if data == expected else "MISMATCH")
"""


def test_ipv6_multicast_with_interface_index_in_network_namespace():
    import os
    import shutil
    import subprocess
    import sys
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip to make a network namespace")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        result = subprocess.run(["unshare", "--net", sys.executable, "-c", IPV6_NETNS_SCRIPT],
                                capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("IPv6 multicast test in a network namespace timed out")
    if result.returncode != 0 and "unshare" in result.stderr and "Operation not permitted" \
            in result.stderr:
        pytest.skip("cannot create a network namespace here")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"
