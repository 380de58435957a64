"""Today's UdpStream forms (endpoint lists, substreams, the socket form),
their argument rules beside the 2016 forms, and per-heap pacing measured
with the kernel's timestamps."""

import asyncio
import errno
import socket
import time

import pytest

import spead2
import spead2.send
import spead2.send.asyncio
from conftest import datagrams_waiting
from test_send_support import DecodedPacket, data_heap, expected_packets
from test_send_udp import MCAST_GROUP, TimestampedCapture, mcast_receiver, receive  # noqa: F401

RR = spead2.send.GroupMode.ROUND_ROBIN


def udp_socket(family=socket.AF_INET, host="127.0.0.1"):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, 0))
    sock.settimeout(5.0)
    return sock


@pytest.fixture
def receivers():
    socks = [udp_socket() for _ in range(4)]
    yield socks
    for sock in socks:
        sock.close()


def endpoints(socks):
    return [("127.0.0.1", sock.getsockname()[1]) for sock in socks]


class TestEndpoints:
    def test_each_endpoint_gets_exactly_its_heaps(self, thread_pool, receivers):
        config = spead2.send.StreamConfig(max_heaps=8)
        stream = spead2.send.UdpStream(thread_pool, endpoints(receivers), config)
        assert stream.num_substreams == 4
        heaps = [data_heap(bytes([i]) * 3000) for i in range(8)]
        refs = [spead2.send.HeapReference(h, substream_index=i % 4) for i, h in enumerate(heaps)]
        total = stream.send_heaps(refs, RR)
        got_bytes = 0
        for i, sock in enumerate(receivers):
            expected = expected_packets(heaps[i], i + 1) + expected_packets(heaps[i + 4], i + 5)
            got = sorted(receive(sock, len(expected)), key=lambda p: DecodedPacket(p).cnt)
            assert got == expected
            assert datagrams_waiting(sock) == []
            got_bytes += sum(map(len, got))
        assert total == got_bytes

    def test_send_heap_substream_index(self, thread_pool, receivers):
        stream = spead2.send.UdpStream(thread_pool, endpoints(receivers))
        heap = data_heap(b"to the third")
        assert stream.send_heap(heap, substream_index=2) == len(expected_packets(heap, 1)[0])
        assert receive(receivers[2], 1) == expected_packets(heap, 1)
        for i in (0, 1, 3):
            assert datagrams_waiting(receivers[i]) == []

    def test_substream_index_out_of_range(self, thread_pool, receivers):
        stream = spead2.send.UdpStream(thread_pool, endpoints(receivers[:2]))
        with pytest.raises(OSError) as info:
            stream.send_heap(spead2.send.Heap(), substream_index=2)
        assert info.value.errno == errno.EINVAL

    def test_defaults_and_keywords(self, thread_pool, receivers):
        stream = spead2.send.UdpStream(thread_pool, endpoints=endpoints(receivers[:1]),
                                       config=spead2.send.StreamConfig(max_heaps=2),
                                       buffer_size=0, interface_address="")
        assert stream.config.max_heaps == 2
        assert spead2.send.UdpStream.DEFAULT_BUFFER_SIZE == 524288
        stream.send_heap(spead2.send.Heap())
        assert len(receive(receivers[0], 1)) == 1

    def test_interface_address_binds_the_source(self, thread_pool, receivers):
        stream = spead2.send.UdpStream(thread_pool, endpoints(receivers[:1]),
                                       spead2.send.StreamConfig(), 65536, "127.0.0.1")
        stream.send_heap(spead2.send.Heap())
        _, source = receivers[0].recvfrom(65536)
        assert source[0] == "127.0.0.1"

    def test_interface_address_not_on_this_host(self, thread_pool, receivers):
        with pytest.raises(OSError) as info:
            spead2.send.UdpStream(thread_pool, endpoints(receivers[:1]),
                                  interface_address="192.0.2.1")
        assert isinstance(info.value, RuntimeError)

    def test_ipv6_loopback(self, thread_pool):
        try:
            sock = udp_socket(socket.AF_INET6, "::1")
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        with sock:
            stream = spead2.send.UdpStream(thread_pool, [("::1", sock.getsockname()[1])])
            heap = data_heap(b"six")
            stream.send_heap(heap)
            assert receive(sock, 1) == expected_packets(heap, 1)

    def test_tuple_of_endpoints(self, thread_pool, receivers):
        stream = spead2.send.UdpStream(thread_pool, tuple(endpoints(receivers[:2])))
        assert stream.num_substreams == 2

    @pytest.mark.parametrize("bad, exc", [
        ([], ValueError),
        ([("127.0.0.1", 8888), ("::1", 8888)], ValueError),
        ([("127.0.0.1",)], TypeError),
        ([("127.0.0.1", 70000)], spead2.PortRangeError),
        ([(5, 8888)], TypeError),
    ])
    def test_bad_endpoints(self, thread_pool, bad, exc):
        with pytest.raises(exc):
            spead2.send.UdpStream(thread_pool, bad)

    def test_host_not_found(self, thread_pool):
        with pytest.raises(RuntimeError, match="Host not found"):
            spead2.send.UdpStream(thread_pool, [("no-such-host.invalid", 8888)])

    def test_packet_refused_by_the_socket(self, thread_pool, receivers):
        stream = spead2.send.UdpStream(thread_pool, endpoints(receivers[:1]),
                                       spead2.send.StreamConfig(max_packet_size=70000))
        with pytest.raises(OSError) as info:
            stream.send_heap(data_heap(bytes(69000)))
        assert info.value.errno == errno.EMSGSIZE
        assert type(info.value) is OSError


class TestSocketForm:
    def test_socket_is_used_as_it_is(self, thread_pool, receivers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        stream = spead2.send.UdpStream(thread_pool, sock, endpoints(receivers[:2]))
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == before
        source = sock.getsockname()
        sock.close()   # the stream has its own descriptor
        stream.send_heap(spead2.send.Heap(), substream_index=1)
        _, got_from = receivers[1].recvfrom(65536)
        assert got_from == source

    def test_socket_keyword(self, thread_pool, receivers):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            stream = spead2.send.UdpStream(thread_pool, socket=sock,
                                           endpoints=endpoints(receivers[:1]),
                                           config=spead2.send.StreamConfig(max_heaps=3))
        assert stream.config.max_heaps == 3

    def test_family_must_match(self, thread_pool):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(ValueError):
                spead2.send.UdpStream(thread_pool, sock, [("::1", 8888)])

    def test_2016_socket_keyword_sets_the_buffer(self, thread_pool, receivers):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            spead2.send.UdpStream(thread_pool, "127.0.0.1", receivers[0].getsockname()[1],
                                  spead2.send.StreamConfig(), 200000, socket=sock)
            # Linux reports twice what it grants
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= 200000


class TestMulticastForms:
    # the positional form is tested beside the 2016 one in test_send_udp.py

    def test_ipv4_keywords(self, thread_pool, mcast_receiver):
        port = mcast_receiver.getsockname()[1]
        stream = spead2.send.UdpStream(thread_pool, [(MCAST_GROUP, port)], ttl=1,
                                       interface_address="127.0.0.1")
        stream.send_heap(spead2.send.Heap())
        assert len(receive(mcast_receiver, 1)) == 1

    def test_ttl_form(self, thread_pool):
        stream = spead2.send.UdpStream(thread_pool, [(MCAST_GROUP, 8888)],
                                       spead2.send.StreamConfig(), 65536, 4)
        assert stream.num_substreams == 1
        stream2 = spead2.send.UdpStream(thread_pool, [(MCAST_GROUP, 8888)], ttl=4)
        assert stream2.num_substreams == 1

    @pytest.mark.parametrize("args", [
        ([("127.0.0.1", 8888)], spead2.send.StreamConfig(), 0, 1),
        ([(MCAST_GROUP, 8888), ("127.0.0.1", 8888)], spead2.send.StreamConfig(), 0, 1),
        ([("127.0.0.1", 8888)], spead2.send.StreamConfig(), 0, 1, "127.0.0.1"),
        ([("ff14::1", 8888)], spead2.send.StreamConfig(), 0, 1, "127.0.0.1"),
        ([(MCAST_GROUP, 8888)], spead2.send.StreamConfig(), 0, 1, "::1"),
        ([(MCAST_GROUP, 8888)], spead2.send.StreamConfig(), 0, 1, 1),
        ([("::1", 8888)], spead2.send.StreamConfig(), 0, 1, 1),
    ])
    def test_not_multicast_or_wrong_family(self, thread_pool, args):
        with pytest.raises(ValueError):
            spead2.send.UdpStream(thread_pool, *args)

    def test_interface_index_needs_ttl(self, thread_pool):
        with pytest.raises(TypeError):
            spead2.send.UdpStream(thread_pool, [("ff14::1", 8888)], interface_index=1)


# IPv6 multicast (form 4) in a network namespace: test_send_udp.py, beside the 2016 form.


def burst_starts(datagrams, burst_size):
    """Indices of the datagrams that start a burst: the sender waits only
    once at least burst_size bytes have gone since the last wait."""
    starts = [0]
    run = 0
    for i, (_, data) in enumerate(datagrams):
        run += len(data)
        if run >= burst_size and i + 1 < len(datagrams):
            starts.append(i + 1)
            run = 0
    return starts


class TestPerHeapRate:
    """From the kernel's send times of the datagrams: each burst may start
    no earlier than the time the bytes before it are worth at their heaps'
    rates after the stream was made (its schedule starts then), and (the
    rate being met) the last one starts within 2% of that time, over about
    a second.

    Every heap is queued at once (asynchronously), so that the writer never
    runs out of work, and burst_rate_ratio is 2: a wake-up that a loaded
    machine makes late is then made up within the next bursts. (A sender
    that runs dry is idle, and, as in spead2, idle time is not made up.)"""

    def check(self, made, datagrams, rate_of, burst_size):
        due = 0.0
        worth = []
        for when, data in datagrams:
            worth.append(due)
            due += len(data) / rate_of(DecodedPacket(data).cnt)
        starts = burst_starts(datagrams, burst_size)
        for i in starts:
            assert datagrams[i][0] - made >= worth[i] - 1e-4, f"burst {i} early"
        last = starts[-1]
        assert worth[last] > 0.9
        assert abs((datagrams[last][0] - made) - worth[last]) <= 0.02 * worth[last]

    def send_all(self, stream, calls):
        async def main():
            await asyncio.gather(*[call() for call in calls])
        asyncio.run(asyncio.wait_for(main(), 30))

    def test_heap_rate_overrides_an_unlimited_stream(self, thread_pool):
        with udp_socket() as sock:
            config = spead2.send.StreamConfig(max_heaps=64, burst_rate_ratio=2.0)
            made = time.time()   # CLOCK_REALTIME, like the kernel's stamps
            stream = spead2.send.asyncio.UdpStream(thread_pool, endpoints([sock]), config)
            heap = data_heap(bytes(100000))
            n = len(expected_packets(heap, 1))
            capture = TimestampedCapture(sock, 42 * n)
            self.send_all(stream, [lambda: stream.async_send_heap(heap, rate=4e6)] * 42)
            self.check(made, capture.finish(), lambda cnt: 4e6, config.burst_size)

    def test_group_heaps_at_their_own_rates(self, thread_pool):
        with udp_socket() as sock:
            config = spead2.send.StreamConfig(rate=2e6, max_heaps=60, burst_rate_ratio=2.0)
            made = time.time()
            stream = spead2.send.asyncio.UdpStream(thread_pool, endpoints([sock]), config)
            heaps = [data_heap(bytes(50000)) for _ in range(4)]
            rates = [-1.0, 4e6, 8e6, -1.0]   # -1: the stream's 2e6
            n = sum(len(expected_packets(h, 1)) for h in heaps)
            capture = TimestampedCapture(sock, 15 * n)
            refs = [spead2.send.HeapReference(h, rate=r) for h, r in zip(heaps, rates)]
            self.send_all(stream, [lambda: stream.async_send_heaps(refs, RR)] * 15)
            effective = {k: 2e6 if r < 0 else r for k, r in enumerate(rates)}
            self.check(made, capture.finish(), lambda cnt: effective[(cnt - 1) % 4],
                       config.burst_size)

    def test_zero_rate_is_unpaced(self, thread_pool):
        with udp_socket() as sock:
            config = spead2.send.StreamConfig(rate=1000.0, burst_size=0)
            stream = spead2.send.UdpStream(thread_pool, endpoints([sock]), config)
            for _ in range(20):
                stream.send_heap(data_heap(bytes(5000)), rate=0)
            # at the stream's rate these would take over a minute
            assert len(datagrams_waiting(sock)) == 80
