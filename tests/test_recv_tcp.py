"""TCP reader: both forms of add_tcp_reader, framing a byte stream into
packets (split reads, garbage, oversized and truncated packets), backpressure,
stopping, bad arguments, and the reference's TcpStream as the sender."""

import errno
import logging
import pickle
import random
import socket
import threading
import time

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.send
import itemsets
from itemsets import FLAVOURS, ITEM_SETS
from packets import header, heap_packets, packet, pointer, stop_packet
from ports import free_tcp_port
from refimpl import call_with_timeout

TIMEOUT = 30.0


def listener(host="127.0.0.1"):
    """A bound, listening TCP socket on a port the OS picks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    return sock


def stream_on_acceptor(thread_pool, ring_heaps=16, max_heaps=4, **kwargs):
    """A stream reading from a fresh listening socket (acceptor form);
    returns ``(stream, port)``. The caller's socket is closed at once: the
    reader has its own."""
    stream = spead2.recv.Stream(thread_pool, spead2.recv.StreamConfig(max_heaps=max_heaps),
                                spead2.recv.RingStreamConfig(heaps=ring_heaps))
    with listener() as sock:
        stream.add_tcp_reader(sock, **kwargs)
        return stream, sock.getsockname()[1]


def stream_on_port(thread_pool, host="127.0.0.1", attempts=10, **kwargs):
    """A stream listening on a free port (port form); returns ``(stream, port)``."""
    stream = spead2.recv.Stream(thread_pool, ring_heaps=16)
    error = None
    for _ in range(attempts):
        port = free_tcp_port(host)
        try:
            stream.add_tcp_reader(port, bind_hostname=host, **kwargs)
            return stream, port
        except RuntimeError as exc:  # taken meanwhile by another process
            error = exc
    raise AssertionError(f"could not listen on a free TCP port: {error!r}")


def connect(port, host="127.0.0.1"):
    return socket.create_connection((host, port), timeout=TIMEOUT)


def send_and_close(port, data, chunks=None, host="127.0.0.1"):
    """Connect, send ``data`` (in pieces of the sizes ``chunks`` yields, if
    given) and close, in a thread: the reader may need the consumer to make
    room before it takes everything. Returns the thread."""
    def run():
        with connect(port, host) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if chunks is None:
                conn.sendall(data)
                return
            pos = 0
            for size in chunks:
                conn.sendall(data[pos:pos + size])
                pos += size
                if pos >= len(data):
                    return
            conn.sendall(data[pos:])

    thread = threading.Thread(target=run, name="tcp-sender", daemon=True)
    thread.start()
    return thread


def assert_closed_by_the_reader(conn):
    """The reader has closed its end of ``conn``: the peer reads the end of
    the stream (or a reset, if the reader left bytes unread)."""
    conn.settimeout(TIMEOUT)
    try:
        assert conn.recv(1) == b""
    except ConnectionResetError:
        pass


def drain(stream):
    """Every heap until the stream stops (bounded in time)."""
    return call_with_timeout(lambda: list(stream), TIMEOUT, "draining the stream")


def raw_items(heap):
    return [(item.id, bytes(item)) for item in heap.get_items()]


def sample_heaps(cnts, size=3000, packet_payload=1000, seed=0):
    """``(packets, {cnt: payload})`` for heaps with random payloads, one
    addressed item each."""
    rng = random.Random(seed)
    pkts, payloads = [], {}
    for cnt in cnts:
        payloads[cnt] = rng.randbytes(size)
        pkts += heap_packets(cnt, payloads[cnt], packet_payload, items=[(False, 0x1000, 0)])
    return pkts, payloads


def assert_heaps(heaps, payloads):
    """The heaps delivered are exactly ``payloads`` (by cnt, in order), byte for byte."""
    assert [h.cnt for h in heaps] == list(payloads)
    for heap in heaps:
        assert raw_items(heap) == [(0x1000, payloads[heap.cnt])]


def our_bytes(thread_pool, itemset, n_heaps, max_packet_size=1472, flavour=None):
    """What our sender writes for ``n_heaps`` heaps of ``itemset`` and an end heap."""
    out = spead2.send.BytesStream(thread_pool,
                                  spead2.send.StreamConfig(max_packet_size=max_packet_size))
    itemsets.send_heaps(spead2, out.send_heap, itemset, n_heaps,
                        flavour or itemsets.make_flavour(spead2))
    return out.getvalue()


class TestForms:
    def test_acceptor_form_round_trip_of_our_sender(self, thread_pool):
        data = our_bytes(thread_pool, "mix", 5)
        stream, port = stream_on_acceptor(thread_pool)
        sender = send_and_close(port, data)
        dump = itemsets.collect_heaps(spead2, stream, TIMEOUT)
        sender.join(TIMEOUT)
        itemsets.assert_dump_matches("mix", dump, 5, context="our bytes over TCP: ")
        assert dump["end"] == "stopped"

    def test_acceptor_keyword_and_max_size(self, thread_pool):
        pkts, payloads = sample_heaps([1, 2])
        stream = spead2.recv.Stream(thread_pool)
        with listener() as sock:
            stream.add_tcp_reader(acceptor=sock, max_size=2000)
            port = sock.getsockname()[1]
        send_and_close(port, b"".join(pkts))
        assert_heaps(drain(stream), payloads)

    def test_port_form_with_bind_hostname(self, thread_pool):
        pkts, payloads = sample_heaps([1, 2, 3])
        stream, port = stream_on_port(thread_pool)
        send_and_close(port, b"".join(pkts) + stop_packet())
        assert_heaps(drain(stream), payloads)

    def test_port_form_defaults_listen_on_every_ipv4_address(self, thread_pool):
        pkts, payloads = sample_heaps([7])
        stream = spead2.recv.Stream(thread_pool)
        for _ in range(10):
            port = free_tcp_port("0.0.0.0")
            try:
                stream.add_tcp_reader(port)
                break
            except RuntimeError:
                continue
        send_and_close(port, b"".join(pkts))
        assert_heaps(drain(stream), payloads)

    def test_port_form_keywords(self, thread_pool):
        pkts, payloads = sample_heaps([1])
        stream, port = stream_on_port(thread_pool, max_size=spead2.recv.Stream.DEFAULT_TCP_MAX_SIZE,
                                      buffer_size=spead2.recv.Stream.DEFAULT_TCP_BUFFER_SIZE)
        send_and_close(port, b"".join(pkts))
        assert_heaps(drain(stream), payloads)

    def test_ipv6_loopback(self, thread_pool):
        try:
            with listener("::1"):
                pass
        except OSError as exc:
            pytest.skip(f"::1 unavailable: {exc}")
        pkts, payloads = sample_heaps([1, 2])
        stream, port = stream_on_port(thread_pool, host="::1")
        send_and_close(port, b"".join(pkts), host="::1")
        assert_heaps(drain(stream), payloads)

    def test_only_one_connection_is_accepted(self, thread_pool):
        pkts, payloads = sample_heaps([1])
        stream, port = stream_on_acceptor(thread_pool)
        with connect(port) as first:
            # the listener closes once the first connection is accepted
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    connect(port).close()
                except ConnectionRefusedError:
                    break
                except ConnectionResetError:
                    pass    # reached the backlog just as the listener closed
                assert time.monotonic() < deadline, "still accepting connections"
                time.sleep(0.002)
            first.sendall(b"".join(pkts))
        assert_heaps(drain(stream), payloads)

    def test_the_callers_acceptor_stays_usable(self, thread_pool):
        # the stream takes a duplicate; the caller's object may still be used
        stream = spead2.recv.Stream(thread_pool)
        with listener() as sock:
            stream.add_tcp_reader(sock)
            assert sock.fileno() >= 0 and sock.getsockname()[1] > 0
        stream.stop()


class TestFraming:
    def test_one_heap_sent_byte_by_byte(self, thread_pool):
        pkts, payloads = sample_heaps([1, 2, 3], size=2500, packet_payload=700)
        first = sum(len(p) for p in pkts[:4])  # heap 1: a packet header split every way
        stream, port = stream_on_acceptor(thread_pool)
        sender = send_and_close(port, b"".join(pkts), chunks=[1] * first)
        assert_heaps(drain(stream), payloads)
        sender.join(TIMEOUT)
        assert stream.stats.packets == len(pkts)
        assert stream.stats.bad_packets == 0

    def test_random_split_points(self, thread_pool):
        rng = random.Random(5)
        pkts, payloads = sample_heaps(range(1, 41), size=5000, packet_payload=1400)
        data = b"".join(pkts)
        chunks = [rng.choice([1, 3, 8, 9, 100, 1500, 7000]) for _ in range(len(data))]
        stream, port = stream_on_acceptor(thread_pool)
        send_and_close(port, data, chunks=chunks)
        assert_heaps(drain(stream), payloads)

    def test_garbage_between_packets_is_skipped_and_counted(self, thread_pool):
        pkts, payloads = sample_heaps([1, 2, 3, 4])
        no_length = header(2) + pointer(True, 1, 99) + pointer(True, 3, 0)  # no PAYLOAD_LENGTH
        data = (b"".join(pkts[0:3]) + bytes(16)            # zeros: not a header
                + b"".join(pkts[3:6]) + b"garbage!" * 5     # text: not a header
                + b"".join(pkts[6:9]) + no_length           # a header with no extent
                + b"".join(pkts[9:12]))
        stream, port = stream_on_acceptor(thread_pool)
        send_and_close(port, data, chunks=[5, 11, 4000] * 100)
        assert_heaps(drain(stream), payloads)
        # each run of skipped bytes is one bad packet
        assert (stream.stats.packets, stream.stats.bad_packets) == (12, 3)

    def test_a_packet_that_fails_to_decode_is_skipped_whole(self, thread_pool):
        pkts, payloads = sample_heaps([1, 2])
        # its extent is known (PAYLOAD_LENGTH), but it has no HEAP_CNT
        no_cnt = header(2) + pointer(True, 3, 0) + pointer(True, 4, 16) + bytes(range(16))
        data = b"".join(pkts[:3]) + no_cnt + b"".join(pkts[3:])
        stream, port = stream_on_acceptor(thread_pool)
        send_and_close(port, data)
        assert_heaps(drain(stream), payloads)
        assert (stream.stats.packets, stream.stats.bad_packets) == (6, 1)

    def test_misaligned_garbage_loses_what_follows_as_the_reference_does(self, thread_pool):
        # bad headers are skipped 8 bytes at a time, so after 3 stray bytes
        # the packets (all multiples of 8 long) are never found again
        pkts, payloads = sample_heaps([1, 2])
        data = b"".join(pkts[:3]) + b"abc" + b"".join(pkts[3:])
        stream, port = stream_on_acceptor(thread_pool)
        send_and_close(port, data)
        assert [h.cnt for h in drain(stream)] == [1]
        assert stream.stats.bad_packets == 1

    @pytest.mark.parametrize("big", [5000, 3 << 20])
    def test_an_oversized_packet_is_skipped_then_a_good_one_arrives(self, thread_pool, big):
        pkts, payloads = sample_heaps([2, 3])
        oversized = packet(1, bytes(range(256)) * (big // 256), 0, big, [(False, 0x1000, 0)])
        stream, port = stream_on_acceptor(thread_pool, max_size=4096)
        # the big one spans many reads: sent in pieces, the good ones after it
        send_and_close(port, oversized + b"".join(pkts), chunks=[65536] * (big // 65536 + 2))
        assert_heaps(drain(stream), payloads)
        assert stream.stats.too_large_packets == 1
        assert stream.stats.bad_packets == 0

    def test_a_pointer_block_larger_than_max_size_is_skipped(self, thread_pool):
        pkts, payloads = sample_heaps([2])
        many = [(True, 0x2000 + i, i) for i in range(1000)]  # 8000 bytes of pointers
        big = packet(1, b"xy", 0, 2, many)
        stream, port = stream_on_acceptor(thread_pool, max_size=2000)
        send_and_close(port, big + b"".join(pkts))
        assert_heaps(drain(stream), payloads)
        assert stream.stats.too_large_packets == 1

    def test_a_huge_claim_under_a_huge_max_size_allocates_nothing_unbounded(self, thread_pool):
        # a packet claiming 2^47 bytes: the buffer would have to grow to
        # hold it (it never fits memory); whether the allocation fails (the
        # stream ends with a warning) or is granted untouched (the bytes
        # never come), the stream ends when the peer closes
        pkts, payloads = sample_heaps([1])
        claim = header(4, hab=48) + b"".join(
            pointer(True, i, v, hab=48) for i, v in [(1, 2), (2, 1 << 47), (3, 0),
                                                     (4, (1 << 47) - 40)])
        stream, port = stream_on_acceptor(thread_pool, max_size=1 << 62)
        send_and_close(port, b"".join(pkts) + claim + bytes(1000))
        assert_heaps(drain(stream), payloads)

    def test_a_packet_of_exactly_max_size_is_kept(self, thread_pool):
        pkts, payloads = sample_heaps([1], size=1000, packet_payload=1000)
        stream, port = stream_on_acceptor(thread_pool, max_size=len(pkts[0]))
        send_and_close(port, pkts[0])
        assert_heaps(drain(stream), payloads)
        assert stream.stats.too_large_packets == 0

    def test_packets_larger_than_a_read(self, thread_pool):
        # 1.5 MB packets: the buffer grows to hold one
        pkts, payloads = sample_heaps([1, 2], size=3 << 20, packet_payload=3 << 19)
        stream, port = stream_on_acceptor(thread_pool, max_size=2 << 20)
        send_and_close(port, b"".join(pkts))
        assert_heaps(drain(stream), payloads)


class TestEnd:
    def test_peer_closing_mid_packet_ends_the_stream(self, thread_pool):
        pkts, payloads = sample_heaps([1, 2, 3])
        last = pkts[-1]
        data = b"".join(pkts[:-1]) + last[:len(last) // 2]
        stream, port = stream_on_acceptor(thread_pool)
        send_and_close(port, data)
        heaps = drain(stream)
        # heap 3 lost its last packet: incomplete, so not delivered
        assert_heaps(heaps, {cnt: payloads[cnt] for cnt in (1, 2)})
        assert stream.stats.bad_packets == 1  # the partial packet
        assert stream.stats.incomplete_heaps_flushed == 1

    def test_incomplete_heaps_are_handed_on_at_the_end_if_asked(self, thread_pool):
        pkts, payloads = sample_heaps([1, 2])
        stream = spead2.recv.Stream(thread_pool, spead2.recv.StreamConfig(),
                                    spead2.recv.RingStreamConfig(contiguous_only=False))
        with listener() as sock:
            stream.add_tcp_reader(sock)
            port = sock.getsockname()[1]
        send_and_close(port, b"".join(pkts[:-1]) + pkts[-1][:20])  # a partial header too
        heaps = drain(stream)
        assert [h.cnt for h in heaps] == [1, 2]
        assert isinstance(heaps[1], spead2.recv.IncompleteHeap)
        assert stream.stats.bad_packets == 1

    def test_a_stop_heap_ends_the_stream_before_the_peer_closes(self, thread_pool):
        pkts, payloads = sample_heaps([1])
        stream, port = stream_on_acceptor(thread_pool)
        with connect(port) as conn:
            conn.sendall(b"".join(pkts) + stop_packet())
            assert_heaps(drain(stream), payloads)
            assert_closed_by_the_reader(conn)

    def test_empty_connection(self, thread_pool):
        stream, port = stream_on_acceptor(thread_pool)
        connect(port).close()
        assert drain(stream) == []
        assert stream.stats.bad_packets == 0


class TestBackpressure:
    def test_a_full_ring_pauses_the_reader_without_loss(self, thread_pool, caplog):
        caplog.set_level(logging.WARNING, logger="spead2")
        pkts, payloads = sample_heaps(range(1, 201), size=20000, packet_payload=8000)
        stream, port = stream_on_acceptor(thread_pool, ring_heaps=2)
        sender = send_and_close(port, b"".join(pkts))
        deadline = time.monotonic() + TIMEOUT
        while stream.stats.worker_blocked == 0:
            assert time.monotonic() < deadline, "the reader never waited for the ring"
            time.sleep(0.001)
        # the sender is held back by TCP while nobody consumes
        assert sender.is_alive()
        assert_heaps(drain(stream), payloads)
        sender.join(TIMEOUT)
        assert not sender.is_alive()
        # lossless: no warning about a blocked worker (UDP readers give one)
        assert not [r for r in caplog.records if "blocked" in r.getMessage()]
        assert stream.stats.incomplete_heaps_evicted == 0


class TestStop:
    def test_stop_while_listening_frees_the_port(self, thread_pool):
        stream, port = stream_on_port(thread_pool)
        with pytest.raises(OSError) as info:
            with socket.socket() as again:
                again.bind(("127.0.0.1", port))
        assert info.value.errno == errno.EADDRINUSE
        call_with_timeout(stream.stop, TIMEOUT, "stop")
        with pytest.raises(ConnectionRefusedError):
            connect(port).close()
        with pytest.raises(spead2.Stopped):
            stream.get()

    def test_stop_while_connected_closes_the_connection(self, thread_pool):
        pkts, payloads = sample_heaps([1, 2])
        stream, port = stream_on_acceptor(thread_pool)
        with connect(port) as conn:
            conn.sendall(b"".join(pkts[:3]))
            heap = call_with_timeout(stream.get, TIMEOUT, "get")
            assert_heaps([heap], {1: payloads[1]})
            call_with_timeout(stream.stop, TIMEOUT, "stop")
            assert_closed_by_the_reader(conn)

    def test_stop_while_the_reader_is_paused(self, thread_pool):
        pkts, _ = sample_heaps(range(1, 100), size=20000, packet_payload=8000)
        stream, port = stream_on_acceptor(thread_pool, ring_heaps=1)
        sender = send_and_close(port, b"".join(pkts))
        deadline = time.monotonic() + TIMEOUT
        while stream.stats.worker_blocked == 0:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        call_with_timeout(stream.stop, TIMEOUT, "stop")
        sender.join(TIMEOUT)  # the sender gets a reset (the thread ends)
        assert not sender.is_alive()

    def test_a_reader_added_to_a_stopped_stream_is_ignored(self, thread_pool):
        stream = spead2.recv.Stream(thread_pool)
        stream.stop()
        port = free_tcp_port()
        stream.add_tcp_reader(port, bind_hostname="127.0.0.1")
        with pytest.raises(ConnectionRefusedError):
            connect(port).close()
        with listener() as sock:
            stream.add_tcp_reader(sock)

    def test_explicit_start(self, thread_pool):
        pkts, payloads = sample_heaps([1])
        stream = spead2.recv.Stream(thread_pool, spead2.recv.StreamConfig(explicit_start=True))
        with listener() as sock:
            stream.add_tcp_reader(sock)
            port = sock.getsockname()[1]
        send_and_close(port, b"".join(pkts))
        stream.start()
        assert_heaps(drain(stream), payloads)
        with pytest.raises(RuntimeError):
            stream.add_tcp_reader(free_tcp_port())


class TestErrors:
    @pytest.mark.parametrize("port", [-1, 65536, 1 << 40])
    def test_port_out_of_range(self, thread_pool, port):
        s = spead2.recv.Stream(thread_pool)
        with pytest.raises(spead2.PortRangeError) as info:
            s.add_tcp_reader(port)
        assert isinstance(info.value, OverflowError) and isinstance(info.value, TypeError)

    def test_port_in_use(self, thread_pool):
        with listener() as taken:
            s = spead2.recv.Stream(thread_pool)
            with pytest.raises(spead2.SocketError) as info:
                s.add_tcp_reader(taken.getsockname()[1], bind_hostname="127.0.0.1")
        assert isinstance(info.value, RuntimeError)
        assert info.value.errno == errno.EADDRINUSE

    def test_unresolvable_or_foreign_address(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with pytest.raises(RuntimeError):
            s.add_tcp_reader(free_tcp_port(), bind_hostname="no-such-host.invalid")
        with pytest.raises(RuntimeError):
            s.add_tcp_reader(free_tcp_port(), bind_hostname="192.0.2.1")

    @pytest.mark.parametrize("form", ["port", "acceptor"])
    def test_max_size_zero(self, thread_pool, form):
        s = spead2.recv.Stream(thread_pool)
        with listener() as sock:
            with pytest.raises(ValueError):
                s.add_tcp_reader(free_tcp_port() if form == "port" else sock, max_size=0)

    @pytest.mark.parametrize("make", [
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
        lambda: "127.0.0.1",
        lambda: 1.5,
    ])
    def test_acceptor_of_the_wrong_kind(self, thread_pool, make):
        s = spead2.recv.Stream(thread_pool)
        sock = make()
        try:
            with pytest.raises(TypeError):
                s.add_tcp_reader(sock)
        finally:
            if isinstance(sock, socket.socket):
                sock.close()

    def test_acceptor_not_listening(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            with pytest.raises(ValueError, match="listening"):
                s.add_tcp_reader(sock)

    def test_closed_acceptor(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        sock = listener()
        sock.close()
        with pytest.raises(spead2.SocketError):
            s.add_tcp_reader(sock)

    def test_wrong_arguments(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with listener() as sock:
            with pytest.raises(TypeError):
                s.add_tcp_reader(sock, 1000, 1000)  # no buffer_size with an acceptor
            with pytest.raises(TypeError):
                s.add_tcp_reader(sock, bind_hostname="127.0.0.1")
        with pytest.raises(TypeError):
            s.add_tcp_reader()
        with pytest.raises(TypeError):
            s.add_tcp_reader(free_tcp_port(), max_size="big")
        with pytest.raises(TypeError):
            s.add_tcp_reader(free_tcp_port(), bind_hostname=5)

    def test_small_buffer_warning_is_logged(self, thread_pool, caplog):
        caplog.set_level(logging.WARNING, logger="spead2")
        s, _ = stream_on_port(thread_pool, buffer_size=1 << 30)
        assert any("buffer" in r.getMessage() for r in caplog.records)
        s.stop()


class TestReferenceSender:
    """The reference's TcpStream sending to our reader."""

    pytestmark = pytest.mark.interop

    @pytest.mark.parametrize("flavour", sorted(FLAVOURS))
    @pytest.mark.parametrize("name", sorted(ITEM_SETS))
    def test_item_sets(self, ref_python, thread_pool, name, flavour):
        bits, bug_compat = FLAVOURS[flavour]
        stream = spead2.recv.Stream(thread_pool, bug_compat=bug_compat, max_heaps=4,
                                    ring_heaps=4)
        with listener() as sock:
            stream.add_tcp_reader(sock)
            port = sock.getsockname()[1]
        with ref_python.start_send_tcp(port, name, 4, bits, bug_compat,
                                       max_packet_size=9000) as sender:
            dump = itemsets.collect_heaps(spead2, stream, TIMEOUT, stop_when=sender.exited)
            sender.finish(timeout=TIMEOUT)
        itemsets.assert_dump_matches(name, dump, 4, context="reference TCP -> ours: ")
        assert dump["end"] == "stopped"

    def test_many_heaps_over_ipv6(self, ref_python, thread_pool):
        try:
            sock = listener("::1")
        except OSError as exc:
            pytest.skip(f"::1 unavailable: {exc}")
        stream = spead2.recv.Stream(thread_pool, ring_heaps=2)
        with sock:
            stream.add_tcp_reader(sock)
            port = sock.getsockname()[1]
        with ref_python.start_send_tcp(port, "large", 50, host="::1") as sender:
            dump = itemsets.collect_heaps(spead2, stream, TIMEOUT, stop_when=sender.exited)
            sender.finish(timeout=TIMEOUT)
        itemsets.assert_dump_matches("large", dump, 50, context="reference TCP (IPv6) -> ours: ")


def framing_case(seed):
    """A byte stream of good heaps, garbage (aligned and not), oversized,
    undecodable and truncated packets, drawn from ``seed``."""
    rng = random.Random(seed)
    parts, cnt = [], 1
    for _ in range(rng.randint(3, 12)):
        k = rng.randrange(8)
        if k < 3:
            size = rng.choice([10, 1000, 3000, 20000])
            parts += heap_packets(cnt, rng.randbytes(size), rng.choice([500, 1000, 4000]),
                                  items=[(False, 0x1000, 0)])
        elif k == 3:
            parts.append(bytes(8 * rng.randint(1, 5)))
        elif k == 4:
            parts.append(rng.randbytes(rng.choice([8, 16, 40, 3, 13])))
        elif k == 5:
            parts.append(packet(cnt, b"z" * rng.choice([5000, 70000]), 0, None))
        elif k == 6:
            parts.append(header(2) + pointer(True, 1, 5) + pointer(True, 3, 0))
        else:
            first = heap_packets(cnt, b"q" * 3000, 1000, items=[(False, 0x1000, 0)])[0]
            parts.append(first[:rng.randrange(len(first))])
        cnt += 1
    if rng.random() < 0.5:
        parts.append(heap_packets(cnt, b"e" * 3000, 1000)[0][:rng.randrange(1, 1000)])
    return b"".join(parts)


@pytest.mark.interop
def test_framing_matches_the_reference_receiver(ref_python, thread_pool, tmp_path):
    """The same damaged byte streams into both receivers: the same heaps
    come out (the reference frames a stream by the same rules)."""
    max_size = 4096
    for seed in range(12):
        data = framing_case(seed)
        output = tmp_path / f"ref-{seed}.pickle"
        with ref_python.start("recv_tcp.py", "--output", output, "--max-size", max_size,
                              "--timeout", TIMEOUT) as receiver:
            port = int(receiver.readline(TIMEOUT))
            send_and_close(port, data, chunks=[7, 1000, 3] * len(data))
            receiver.finish(TIMEOUT)
        with open(output, "rb") as f:
            ref = pickle.load(f)
        stream, port = stream_on_acceptor(thread_pool, ring_heaps=64, max_size=max_size)
        send_and_close(port, data, chunks=[7, 1000, 3] * len(data))
        ours = [{"cnt": h.cnt, "items": raw_items(h)} for h in drain(stream)]
        assert ref["end"] == "stopped", ref
        assert ours == ref["heaps"], f"seed {seed}"
        assert stream.stats.packets == ref["packets"], f"seed {seed}"
