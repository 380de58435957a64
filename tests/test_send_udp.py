"""UdpStream over loopback, checked with a plain Python socket receiver."""

import errno
import logging
import socket
import struct
import threading
import time

import pytest

import spead2
import spead2.send
from conftest import datagrams_waiting
from test_send_support import StandInItem, addressed, data_heap, expected_packets, packet

RECV_TIMEOUT = 5.0


def receive(sock, count):
    return [sock.recv(65536) for _ in range(count)]


def assert_nothing_more(sock):
    # "Nothing more arrives" has no event to wait for: the absence during a
    # fixed 0.2 s is the assertion. (send_heap has returned by now, so every
    # datagram it sent is normally queued already.)
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(65536)


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
            stream.send_heap(spead2.send.Heap())  # ICMP port unreachable comes back
        # the refusals neither broke the stream nor lost its count: once
        # someone listens there, the next heap arrives as heap 4
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as late:
            late.bind(("127.0.0.1", port))
            late.settimeout(RECV_TIMEOUT)
            stream.send_heap(spead2.send.Heap())
            assert receive(late, 1) == [packet(4, 1, 0, [addressed(0, 0)], b"\0")]


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
        with pytest.raises(spead2.RangeError):
            spead2.send.UdpStream(thread_pool, "127.0.0.1", 8888, buffer_size=-1)

    def test_max_heaps_exceeded_by_concurrent_senders(self, thread_pool, receiver):
        # max_heaps=1: while one thread's send_heap is sending, another
        # thread's send_heap fails at once instead of queueing.
        config = spead2.send.StreamConfig(max_heaps=1, rate=1e6, burst_size=1000)
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                       config)
        slow = data_heap(bytes(500000))  # 0.5 s at 1 MB/s
        expected = expected_packets(slow, 1)
        thread = threading.Thread(target=stream.send_heap, args=(slow,))
        thread.start()
        try:
            # the slow heap is in flight from its first datagram on...
            got = receive(receiver, 1)
            with pytest.raises(BlockingIOError) as info:   # an IOError, as in 2016
                stream.send_heap(spead2.send.Heap())
            # ...and was still in flight after the refusal: its last
            # datagram had not been sent
            got += datagrams_waiting(receiver)
            assert len(got) < len(expected)
        finally:
            thread.join(timeout=10)
        assert not thread.is_alive()
        assert info.value.errno == errno.EAGAIN
        # the refused heap sent nothing and took no heap counter
        got += receive(receiver, len(expected) - len(got))
        assert got == expected
        stream.send_heap(spead2.send.Heap())
        assert receive(receiver, 1) == [packet(2, 1, 0, [addressed(0, 0)], b"\0")]


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
    @pytest.mark.parametrize("today", [False, True], ids=["2016", "endpoints"])
    def test_ipv4_with_interface_address(self, thread_pool, mcast_receiver, today):
        port = mcast_receiver.getsockname()[1]
        destination = ([(MCAST_GROUP, port)],) if today else (MCAST_GROUP, port)
        stream = spead2.send.UdpStream(thread_pool, *destination,
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
        with pytest.raises(spead2.RangeError):
            spead2.send.UdpStream(thread_pool, MCAST_GROUP, 8888, spead2.send.StreamConfig(),
                                  65536, 300, "127.0.0.1")


#: SO_TIMESTAMPNS (Linux; the socket module names it only from Python 3.12 on)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class TimestampedCapture(threading.Thread):
    """Reads ``count`` datagrams from ``sock``, each with the time the kernel
    stamped on it (SO_TIMESTAMPNS, CLOCK_REALTIME). On loopback the stamp is
    taken when the sender's device queues the datagram, inside the sender's
    sendmsg, so it is when the datagram was sent, however late this thread
    reads it."""

    def __init__(self, sock, count, timeout=30.0):
        super().__init__(daemon=True)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock = sock
        self.count = count
        self.deadline = time.monotonic() + timeout
        self.datagrams = []  # (seconds, data)
        self.start()

    def run(self):
        stamp_size = struct.calcsize("@ll")
        while len(self.datagrams) < self.count and time.monotonic() < self.deadline:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(stamp_size))
            except socket.timeout:
                continue
            (stamp,) = [d for level, kind, d in ancdata
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS]
            sec, nsec = struct.unpack("@ll", stamp[:stamp_size])
            self.datagrams.append((sec + nsec * 1e-9, data))

    def finish(self):
        self.join(max(0.0, self.deadline - time.monotonic()) + 1.0)
        assert not self.is_alive(), f"{len(self.datagrams)} of {self.count} datagrams received"
        return self.datagrams


class TestRateLimit:
    def test_rate_is_honoured_over_a_second(self, thread_pool, receiver):
        # What the sender did, measured where it lands: the kernel's send
        # time of every datagram. The stream paces flushes of about
        # burst_size bytes with a generic cell rate algorithm, so from the
        # first send_heap call (at ``start``) to the send of datagram j, at
        # most burst_size bytes may run ahead of rate * time, plus the rest
        # of j's own flush (at most burst_size + one packet). A loaded
        # machine can only make the sender later, never earlier.
        rate = 4e6
        config = spead2.send.StreamConfig(rate=rate, burst_size=65536)
        stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", receiver.getsockname()[1],
                                       config)
        heap = data_heap(bytes(100000))
        packets = expected_packets(heap, 1)
        per_heap = sum(map(len, packets))
        n_heaps = 40
        capture = TimestampedCapture(receiver, n_heaps * len(packets))
        start = time.time()  # CLOCK_REALTIME, like the kernel's stamps
        for _ in range(n_heaps):
            stream.send_heap(heap)
        datagrams = capture.finish()
        assert [len(d) for _, d in datagrams] == [len(p) for p in packets] * n_heaps
        ahead = 2 * config.burst_size + config.max_packet_size
        sent = 0
        for when, data in datagrams:
            assert sent <= rate * (when - start) + ahead, \
                f"{sent} bytes sent before {when - start:.3f} s"
            sent += len(data)
        # and the rate is reached: the whole run takes about as long as it must
        ideal = (n_heaps * per_heap - config.burst_size) / rate
        assert ideal > 0.9
        elapsed = datagrams[-1][0] - start
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


@pytest.mark.parametrize("today", [False, True], ids=["2016", "endpoints"])
def test_ipv6_multicast_with_interface_index_in_network_namespace(today):
    import os
    import shutil
    import subprocess
    import sys
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip to make a network namespace")
    script = IPV6_NETNS_SCRIPT
    if today:
        script = script.replace(
            "spead2.send.UdpStream(spead2.ThreadPool(), group, recv.getsockname()[1],",
            "spead2.send.UdpStream(spead2.ThreadPool(), [(group, recv.getsockname()[1])],")
        assert script != IPV6_NETNS_SCRIPT
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        result = subprocess.run(["unshare", "--net", sys.executable, "-c", script],
                                capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("IPv6 multicast test in a network namespace timed out")
    if result.returncode != 0 and "unshare" in result.stderr and "Operation not permitted" \
            in result.stderr:
        pytest.skip("cannot create a network namespace here")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"
