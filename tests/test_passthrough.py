"""Every transport end to end: our sender into our receiver, the same item
sets over each (memory, UDP, UDP over IPv6, a caller's socket, IPv4
multicast, TCP, in-process), every value arriving exactly as sent.

IPv6 multicast needs a network namespace (see test_recv_udp.py and
test_send_udp_forms.py, which cover it there)."""

import socket

import pytest

import spead2
import spead2.recv
import spead2.send

import itemsets
from ports import free_tcp_port, free_udp_port
from refimpl import call_with_timeout

N_HEAPS = 3
TIMEOUT = 30.0
RATE = 2e8        # paced, so that loopback UDP never drops


def config():
    return spead2.send.StreamConfig(rate=RATE, max_packet_size=1472)


def ipv6_available():
    try:
        free_udp_port("::1")
        return True
    except OSError:
        return False


class Transport:
    """Opens a receiver on ``stream`` and returns a sender of our own."""

    def __init__(self, name):
        self.name = name

    def open(self, tp, stream):
        return getattr(self, "_" + self.name)(tp, stream)

    def _memory(self, tp, stream):
        out = spead2.send.BytesStream(tp, config())
        # the receiver reads the bytes once everything is sent: see run()
        self.finish = lambda: stream.add_buffer_reader(out.getvalue())
        return out

    def _udp(self, tp, stream):
        port = free_udp_port()
        stream.add_udp_reader(port, bind_hostname="127.0.0.1")
        return spead2.send.UdpStream(tp, [("127.0.0.1", port)], config())

    def _udp6(self, tp, stream):
        if not ipv6_available():
            pytest.skip("no IPv6 loopback")
        port = free_udp_port("::1")
        stream.add_udp_reader(port, bind_hostname="::1")
        return spead2.send.UdpStream(tp, [("::1", port)], config())

    def _udp_socket(self, tp, stream):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        stream.add_udp_reader(sock)       # today's form: a bound socket, used as it is
        sock.close()                      # the stream has its own duplicate
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out = spead2.send.UdpStream(tp, tx, [("127.0.0.1", port)], config())
        tx.close()
        return out

    def _multicast4(self, tp, stream):
        group = "239.255.42.17"
        port = free_udp_port()
        try:
            stream.add_udp_reader(group, port, interface_address="127.0.0.1")
        except (RuntimeError, OSError) as exc:
            pytest.skip(f"cannot join an IPv4 group on loopback: {exc}")
        return spead2.send.UdpStream(tp, [(group, port)], config(), ttl=1,
                                     interface_address="127.0.0.1")

    def _tcp(self, tp, stream):
        port = free_tcp_port()
        stream.add_tcp_reader(port, bind_hostname="127.0.0.1")
        return call_with_timeout(
            lambda: spead2.send.TcpStream(tp, [("127.0.0.1", port)], config()), TIMEOUT,
            "connecting")

    def _inproc(self, tp, stream):
        queue = spead2.InprocQueue()
        stream.add_inproc_reader(queue)
        return spead2.send.InprocStream(tp, [queue], config())


TRANSPORTS = ["memory", "udp", "udp6", "udp_socket", "multicast4", "tcp", "inproc"]


@pytest.mark.parametrize("name", sorted(itemsets.ITEM_SETS))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_values_arrive_as_sent(transport, name):
    tp = spead2.ThreadPool(2)
    stream = spead2.recv.Stream(tp, spead2.recv.StreamConfig(max_heaps=4),
                                spead2.recv.RingStreamConfig(heaps=8))
    carrier = Transport(transport)
    try:
        sender = carrier.open(tp, stream)
        flavour = itemsets.make_flavour(spead2, 40, 0)
        call_with_timeout(lambda: itemsets.send_heaps(spead2, sender.send_heap, name, N_HEAPS,
                                                      flavour), TIMEOUT, "sending")
        if transport == "memory":
            carrier.finish()
        dump = itemsets.collect_heaps(spead2, stream, TIMEOUT)
    finally:
        stream.stop()
        tp.stop()
    itemsets.assert_dump_matches(name, dump, N_HEAPS, context=f"{transport}: ")
