"""TcpStream: packets back to back on a connection, checked with a plain
listening socket, with the reference's TCP receiver and with our own
``recv.Stream.add_tcp_reader``.
"""

import errno
import os
import signal
import socket
import sys
import threading

import pytest

import itemsets
import spead2
import spead2.send
from conftest import wait_for
from isolated import child_env
from refimpl import RefProcess, load_dump
from test_send_support import data_heap, expected_packets

RR = spead2.send.GroupMode.ROUND_ROBIN


class Sink(threading.Thread):
    """A listening socket that accepts one connection and keeps everything
    read from it (until the peer closes, or ``limit`` bytes, or 30 s)."""

    def __init__(self, family=socket.AF_INET, host="127.0.0.1", limit=None, read=True):
        super().__init__(daemon=True)
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(1)
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.limit = limit
        self.read = read
        self.data = bytearray()
        self.conn = None
        self.accepted = threading.Event()
        self.release = threading.Event()
        self.start()

    def run(self):
        self.conn, _ = self.listener.accept()
        self.accepted.set()
        self.conn.settimeout(30)
        if not self.read:
            self.release.wait(30)
            return
        while self.limit is None or len(self.data) < self.limit:
            chunk = self.conn.recv(1 << 20)
            if not chunk:
                break
            self.data += chunk

    def finish(self):
        self.join(35)
        assert not self.is_alive()
        self.listener.close()
        if self.conn is not None:
            self.conn.close()
        return bytes(self.data)


def stream_bytes(heaps, config=None):
    """What a BytesStream writes for ``heaps``, which a TCP stream must
    write too."""
    stream = spead2.send.BytesStream(spead2.ThreadPool(), config)
    for heap in heaps:
        stream.send_heap(heap)
    return stream.getvalue()


class TestTcpStream:
    def test_packets_back_to_back(self, thread_pool):
        sink = Sink()
        heaps = [data_heap(bytes([i]) * (1000 * i + 1)) for i in range(1, 30)]
        stream = spead2.send.TcpStream(thread_pool, [("127.0.0.1", sink.port)])
        assert stream.num_substreams == 1
        total = sum(stream.send_heap(h) for h in heaps)
        del stream
        assert sink.finish() == stream_bytes(heaps)
        assert total == len(stream_bytes(heaps))

    def test_large_heaps_and_groups(self, thread_pool):
        sink = Sink()
        config = spead2.send.StreamConfig(max_packet_size=8972, max_heaps=4)
        heaps = [data_heap(os.urandom(1 << 20)) for _ in range(4)]
        stream = spead2.send.TcpStream(thread_pool, [("127.0.0.1", sink.port)], config)
        stream.send_heaps([spead2.send.HeapReference(h) for h in heaps], RR)
        del stream
        expected = spead2.send.BytesStream(spead2.ThreadPool(), config)
        expected.send_heaps([spead2.send.HeapReference(h) for h in heaps], RR)
        assert sink.finish() == expected.getvalue()

    def test_huge_packets(self, thread_pool):
        # packets far larger than any datagram: TCP does not mind
        sink = Sink()
        config = spead2.send.StreamConfig(max_packet_size=1 << 22)
        heap = spead2.send.Heap()
        from test_send_support import StandInItem
        for i in range(100):   # too many pieces to gather: copied in parts
            heap.add_item(StandInItem(0x1000 + i, bytes([i]) * 50000, variable=True))
        stream = spead2.send.TcpStream(thread_pool, [("127.0.0.1", sink.port)], config)
        stream.send_heap(heap)
        del stream
        assert sink.finish() == stream_bytes([heap], config)

    def test_connected_socket_form(self, thread_pool):
        sink = Sink()
        sock = socket.create_connection(("127.0.0.1", sink.port))
        stream = spead2.send.TcpStream(thread_pool, sock)
        sock.close()   # the stream has its own descriptor
        heap = data_heap(b"over a given socket")
        stream.send_heap(heap)
        del stream
        assert sink.finish() == b"".join(expected_packets(heap, 1))

    def test_keywords_and_ipv6(self, thread_pool):
        try:
            sink = Sink(socket.AF_INET6, "::1")
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        stream = spead2.send.TcpStream(thread_pool, endpoints=[("::1", sink.port)],
                                       config=spead2.send.StreamConfig(max_heaps=2),
                                       buffer_size=0, interface_address="::1")
        stream.send_heap(spead2.send.Heap())
        del stream
        assert len(sink.finish()) == 49   # an empty heap: header, 5 pointers, 1 byte
        assert spead2.send.TcpStream.DEFAULT_BUFFER_SIZE == 212992

    def test_refused_connection(self, thread_pool):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]   # bound, not listening: refused
            with pytest.raises(ConnectionRefusedError):
                spead2.send.TcpStream(thread_pool, [("127.0.0.1", port)])

    @pytest.mark.parametrize("endpoints", [[], [("127.0.0.1", 1), ("127.0.0.1", 2)]])
    def test_exactly_one_endpoint(self, thread_pool, endpoints):
        with pytest.raises(ValueError):
            spead2.send.TcpStream(thread_pool, endpoints)

    def test_host_not_found(self, thread_pool):
        with pytest.raises(RuntimeError, match="Host not found"):
            spead2.send.TcpStream(thread_pool, [("no-such-host.invalid", 1)])

    def test_broken_connection(self, thread_pool):
        sink = Sink(read=False)
        stream = spead2.send.TcpStream(thread_pool, [("127.0.0.1", sink.port)])
        assert sink.accepted.wait(10)
        # closing with unread data resets the connection
        sink.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sink.conn.close()
        sink.release.set()
        heap = data_heap(bytes(1 << 20))
        with pytest.raises(OSError) as info:
            for _ in range(100):
                stream.send_heap(heap)
        assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
        assert isinstance(info.value, (BrokenPipeError, ConnectionResetError))
        sink.finish()


_CONNECT_CHILD = """
import socket, sys
import spead2, spead2.send
port = int(sys.argv[1])
print("connecting", flush=True)
try:
    spead2.send.TcpStream(spead2.ThreadPool(), [("127.0.0.1", port)])
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_blocking_connect_is_interrupted_by_sigint():
    # a listener whose backlog is full drops further SYNs, so the connect
    # waits (retrying) until interrupted
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        with RefProcess([sys.executable, "-c", _CONNECT_CHILD, port], env=child_env()) as child:
            assert child.readline(30) == "connecting"
            pid = child.proc.pid

            def in_connect():
                try:
                    with open(f"/proc/{pid}/syscall") as f:
                        return f.read().split()[0] == "42"   # connect, x86-64
                except (OSError, IndexError):
                    return False
            if os.uname().machine != "x86_64":
                pytest.skip("the syscall number check is for x86-64")
            assert wait_for(in_connect, 20), "the child never blocked in connect"
            child.proc.send_signal(signal.SIGINT)
            assert child.readline(20) == "interrupted"
    finally:
        for s in fillers:
            s.close()
        listener.close()


@pytest.mark.interop
def test_reference_decodes_our_stream(ref_python, tmp_path, thread_pool):
    output = tmp_path / "dump.pkl"
    with ref_python.start("recv_tcp_items.py", "--output", output, "--timeout", 30) as proc:
        port = int(proc.readline(30))
        stream = spead2.send.TcpStream(thread_pool, [("127.0.0.1", port)])
        itemsets.send_heaps(spead2, stream.send_heap, "mix", 4, spead2.Flavour())
        proc.finish(40)
    itemsets.assert_dump_matches("mix", load_dump(output), 4, context="ours tcp -> reference: ")


def test_our_tcp_reader_decodes_our_stream(thread_pool):
    import spead2.recv
    acceptor = socket.socket()
    acceptor.bind(("127.0.0.1", 0))
    acceptor.listen(1)
    rx = spead2.recv.Stream(thread_pool, spead2.recv.StreamConfig(),
                            spead2.recv.RingStreamConfig(heaps=16))
    rx.add_tcp_reader(acceptor)
    port = acceptor.getsockname()[1]
    acceptor.close()
    stream = spead2.send.TcpStream(thread_pool, [("127.0.0.1", port)])
    sent = threading.Thread(target=itemsets.send_heaps,
                            args=(spead2, stream.send_heap, "mix", 4, spead2.Flavour()))
    sent.start()
    dump = itemsets.collect_heaps(spead2, rx, 30)
    sent.join(30)
    assert not sent.is_alive()
    itemsets.assert_dump_matches("mix", dump, 4, context="ours tcp -> ours: ")
