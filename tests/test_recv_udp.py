"""UDP reader: unicast, caller's socket, IPv4 and IPv6 multicast, errors."""

import errno
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.send
from packets import heap_packets, packet, stop_packet
from ports import free_udp_port
from refimpl import call_with_timeout


def send_all(packets, addr, family=socket.AF_INET, setup=None):
    with socket.socket(family, socket.SOCK_DGRAM) as tx:
        if setup:
            setup(tx)
        for p in packets:
            tx.sendto(p, addr)


def collect(stream, n, timeout=5.0):
    """Get up to n heaps, bounded in time."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            out.append(stream.get_nowait())
        except spead2.Empty:
            time.sleep(0.002)
        except spead2.Stopped:
            break
    return out


def sample_heaps(n, size=3000, first=1):
    pkts = []
    for cnt in range(first, first + n):
        pkts += heap_packets(cnt, bytes([cnt % 256]) * size, 1000, items=[(False, 0x1000, 0)])
    return pkts


class TestUnicast:
    def test_bind_hostname(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool, ring_heaps=16)
        s.add_udp_reader(port, bind_hostname="127.0.0.1")
        send_all(sample_heaps(5) + [stop_packet()], ("127.0.0.1", port))
        heaps = collect(s, 6)
        assert [h.cnt for h in heaps] == [1, 2, 3, 4, 5]
        assert bytes(heaps[2].get_items()[0]) == b"\x03" * 3000
        with pytest.raises(spead2.Stopped):
            s.get()

    def test_keyword_arguments_and_defaults(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader(port=port, max_size=spead2.recv.DEFAULT_UDP_MAX_SIZE,
                         buffer_size=0, bind_hostname="localhost")
        send_all([packet(1, b"x", 0, 1, [(False, 0x1000, 0)])], ("127.0.0.1", port))
        assert [h.cnt for h in collect(s, 1)] == [1]
        s.stop()

    def test_ipv6_loopback(self, thread_pool):
        if not socket.has_ipv6:
            pytest.skip("no IPv6 support")
        try:
            port = free_udp_port("::1")
        except OSError as exc:
            pytest.skip(f"::1 unavailable: {exc}")
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader(port, bind_hostname="::1")
        send_all(sample_heaps(2), ("::1", port), socket.AF_INET6)
        assert [h.cnt for h in collect(s, 2)] == [1, 2]
        s.stop()

    def test_callers_socket(self, thread_pool):
        port = free_udp_port()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader(port, bind_hostname="127.0.0.1", socket=sock)
        sock.close()  # the stream does not need the caller's object any more
        send_all(sample_heaps(3), ("127.0.0.1", port))
        assert [h.cnt for h in collect(s, 3)] == [1, 2, 3]
        s.stop()

    def test_oversized_datagrams_dropped(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader(port, max_size=600, bind_hostname="127.0.0.1")
        big = packet(1, b"b" * 1000, 0, 1000, [(False, 0x1000, 0)])
        small = packet(2, b"s" * 100, 0, 100, [(False, 0x1000, 0)])
        send_all([big, small], ("127.0.0.1", port))
        assert [h.cnt for h in collect(s, 1)] == [2]
        assert s.stats.too_large_packets == 1
        s.stop()

    def test_garbage_datagrams_do_not_disturb(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader(port, bind_hostname="127.0.0.1")
        send_all([b"", b"S", b"\x53\x04\x03\x05\x00\x00\xff\xff", os.urandom(500)]
                 + sample_heaps(2), ("127.0.0.1", port))
        assert [h.cnt for h in collect(s, 2)] == [1, 2]
        assert s.stats.bad_packets >= 3
        s.stop()

    def test_stop_closes_the_socket(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader(port, bind_hostname="127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            with pytest.raises(OSError) as info:
                again.bind(("127.0.0.1", port))  # the reader holds the port...
            assert info.value.errno == errno.EADDRINUSE
        s.stop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", port))  # ...until the stream stops
            assert again.getsockname() == ("127.0.0.1", port)

    def test_two_readers_one_stream(self, thread_pool):
        p1, p2 = free_udp_port(), free_udp_port()
        s = spead2.recv.Stream(thread_pool, ring_heaps=8)
        s.add_udp_reader(p1, bind_hostname="127.0.0.1")
        s.add_udp_reader(p2, bind_hostname="127.0.0.1")
        send_all(sample_heaps(2), ("127.0.0.1", p1))
        send_all(sample_heaps(2, first=10), ("127.0.0.1", p2))
        assert sorted(h.cnt for h in collect(s, 4)) == [1, 2, 10, 11]
        s.stop()


class TestBoundSocket:
    """Today's ``(socket, max_size)`` form: the caller's bound socket, as it is."""

    @staticmethod
    def bound(size=1 << 20):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        sock.bind(("127.0.0.1", 0))
        return sock

    @pytest.mark.parametrize("call", [
        lambda s, sock: s.add_udp_reader(sock),
        lambda s, sock: s.add_udp_reader(socket=sock),
        lambda s, sock: s.add_udp_reader(sock, 9200),
        lambda s, sock: s.add_udp_reader(socket=sock, max_size=9200),
    ])
    def test_positional_and_keyword(self, thread_pool, call):
        s = spead2.recv.Stream(thread_pool)
        with self.bound() as sock:
            call(s, sock)
            addr = sock.getsockname()
        send_all(sample_heaps(3), addr)
        assert [h.cnt for h in collect(s, 3)] == [1, 2, 3]
        s.stop()

    def test_used_as_it_is(self, thread_pool):
        # no buffer size is asked for: the caller's stays
        with self.bound(1 << 16) as sock:
            before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            s = spead2.recv.Stream(thread_pool)
            s.add_udp_reader(sock)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == before
        s.stop()

    def test_max_size_applies(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with self.bound() as sock:
            s.add_udp_reader(sock, max_size=600)
            addr = sock.getsockname()
        send_all([packet(1, b"b" * 1000, 0, 1000, [(False, 0x1000, 0)])] + sample_heaps(1, 300, 2),
                 addr)
        assert [h.cnt for h in collect(s, 1)] == [2]
        assert s.stats.too_large_packets == 1
        s.stop()

    def test_unbound_socket_is_refused(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(ValueError, match="bound"):
                s.add_udp_reader(sock)

    def test_wrong_socket_or_arguments(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            with pytest.raises(TypeError):
                s.add_udp_reader(tcp)
        with self.bound() as sock:
            with pytest.raises(TypeError):
                s.add_udp_reader(sock, 9200, 1 << 20)  # no buffer size in this form
            with pytest.raises(TypeError):
                s.add_udp_reader(sock, bind_hostname="127.0.0.1")
            with pytest.raises(ValueError):
                s.add_udp_reader(sock, max_size=4)


class TestIpv4Form:
    """``(multicast_group, port, max_size, buffer_size, interface_address)``
    with a unicast address, as today's API allows."""

    def test_unicast_address_equal_to_the_interface(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader("127.0.0.1", port, interface_address="127.0.0.1")
        send_all(sample_heaps(2), ("127.0.0.1", port))
        assert [h.cnt for h in collect(s, 2)] == [1, 2]
        s.stop()

    def test_wildcard_address_means_the_interface(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader("0.0.0.0", port, 9200, 0, "127.0.0.1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            with pytest.raises(OSError):
                again.bind(("127.0.0.1", port))  # bound to 127.0.0.1 itself
        send_all(sample_heaps(1), ("127.0.0.1", port))
        assert [h.cnt for h in collect(s, 1)] == [1]
        s.stop()

    def test_wildcard_with_the_default_interface(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader("0.0.0.0", port)
        send_all(sample_heaps(1), ("127.0.0.1", port))
        assert [h.cnt for h in collect(s, 1)] == [1]
        s.stop()

    @pytest.mark.parametrize("args, kwargs", [
        (("127.0.0.1",), {}),                                       # not the interface
        (("127.0.0.1",), {"interface_address": "127.0.0.2"}),
        (("ff14::1",), {}),                                         # IPv6 group
        (("::1",), {"interface_address": "127.0.0.1"}),
        (("239.255.77.1",), {"interface_address": "::1"}),         # IPv6 interface
    ])
    def test_value_errors(self, thread_pool, args, kwargs):
        s = spead2.recv.Stream(thread_pool)
        with pytest.raises(ValueError):
            s.add_udp_reader(*args, free_udp_port(), **kwargs)

    @pytest.mark.parametrize("address", ["::1", "239.255.0.1", "127.0.0.1"])
    def test_ipv6_form_needs_an_ipv6_group(self, thread_pool, address):
        s = spead2.recv.Stream(thread_pool)
        with pytest.raises(ValueError):
            s.add_udp_reader(address, free_udp_port(), 9200, 0, 0)
        with pytest.raises(ValueError):
            s.add_udp_reader(address, free_udp_port(), interface_index=1)


class TestErrors:
    @pytest.mark.parametrize("port", [-1, 65536, 1 << 40])
    def test_port_out_of_range(self, thread_pool, port):
        s = spead2.recv.Stream(thread_pool)
        for args, kwargs in [((port,), {}), (("239.255.0.1", port), {}),
                             (("239.255.0.1", port), {"interface_address": "127.0.0.1"}),
                             (("ff14::1", port), {"interface_index": 0})]:
            with pytest.raises(spead2.PortRangeError) as info:
                s.add_udp_reader(*args, **kwargs)
            # what 2016 programs catch, and what spead2 4.x programs catch
            assert isinstance(info.value, OverflowError) and isinstance(info.value, TypeError)

    def test_port_in_use_is_runtime_and_os_error(self, thread_pool):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            s = spead2.recv.Stream(thread_pool)
            with pytest.raises(RuntimeError) as info:
                s.add_udp_reader(port, bind_hostname="127.0.0.1")
            assert isinstance(info.value, OSError)
            assert info.value.errno == 98  # EADDRINUSE

    def test_address_not_on_this_host(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with pytest.raises(RuntimeError):
            s.add_udp_reader(free_udp_port(), bind_hostname="192.0.2.1")

    def test_unresolvable_name(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with pytest.raises(RuntimeError):
            s.add_udp_reader(free_udp_port(), bind_hostname="no-such-host.invalid")

    def test_ipv6_form_with_ipv4_group(self, thread_pool):
        s = spead2.recv.Stream(thread_pool)
        with pytest.raises(ValueError):
            s.add_udp_reader("239.255.0.1", free_udp_port(), interface_index=0)

    def test_small_buffer_warning_is_logged(self, thread_pool, caplog):
        s = spead2.recv.Stream(thread_pool)
        s.add_udp_reader(free_udp_port(), buffer_size=64 << 20, bind_hostname="127.0.0.1")
        assert any("buffer" in r.message for r in caplog.records)
        s.stop()


MCAST4 = "239.255.77.1"


def _mcast4_setup(tx):
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)


class TestMulticast:
    def test_ipv4_with_interface_address(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        try:
            s.add_udp_reader(MCAST4, port, interface_address="127.0.0.1")
        except RuntimeError as exc:
            pytest.skip(f"IPv4 multicast on loopback unavailable: {exc}")
        send_all(sample_heaps(3), (MCAST4, port), setup=_mcast4_setup)
        assert [h.cnt for h in collect(s, 3)] == [1, 2, 3]
        s.stop()

    def test_ipv4_positional_form(self, thread_pool):
        port = free_udp_port()
        s = spead2.recv.Stream(thread_pool)
        try:
            s.add_udp_reader(MCAST4, port, 9200, 0, "127.0.0.1")
        except RuntimeError as exc:
            pytest.skip(f"IPv4 multicast on loopback unavailable: {exc}")
        send_all(sample_heaps(1), (MCAST4, port), setup=_mcast4_setup)
        assert [h.cnt for h in collect(s, 1)] == [1]
        s.stop()

    def test_bind_hostname_multicast_subscribes(self, tmp_path):
        # Joining without an interface follows the multicast route; a private
        # network namespace routes multicast over its loopback device.
        out = run_in_netns(tmp_path, '''
            sh("ip link set lo up && ip link set lo multicast on")
            sh("ip route add 224.0.0.0/4 dev lo")
            group, port = "239.255.77.2", 8889
            tp = spead2.ThreadPool()
            s = spead2.recv.Stream(tp)
            s.add_udp_reader(port, bind_hostname=group)
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            for p in heap_packets(3, b"m4" * 700, 1000, items=[(False, 0x1000, 0)]):
                tx.sendto(p, (group, port))
            deadline = time.monotonic() + 10
            got = []
            while not got and time.monotonic() < deadline:
                try:
                    got.append(s.get_nowait())
                except spead2.Empty:
                    time.sleep(0.01)
            assert got and got[0].cnt == 3, got
            assert bytes(got[0].get_items()[0]) == b"m4" * 700
            print("OK")
        ''')
        assert "OK" in out

    def test_ipv6_in_network_namespace(self, tmp_path):
        out = run_in_netns(tmp_path, '''
            sh("ip link set lo up")
            sh("ip link add v0 type veth peer name v1")
            sh("ip link set v0 up && ip link set v1 up")
            idx = socket.if_nametoindex("v0")
            group = "ff14::1234"
            port = 8888
            tp = spead2.ThreadPool()
            s = spead2.recv.Stream(tp)
            deadline = time.monotonic() + 10
            while True:
                try:
                    s.add_udp_reader(group, port, 9200, 0, interface_index=idx)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
            tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
            got = []
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                try:
                    for p in heap_packets(5, b"v6" * 600, 1000, items=[(False, 0x1000, 0)]):
                        tx.sendto(p, (group, port))
                except OSError:
                    time.sleep(0.2)  # the link is still coming up: retry (bounded)
                    continue
                # a heap, or 0.1 s without one (then the packets were lost
                # while the link came up, and are sent again)
                if select.select([s.fd], [], [], 0.1)[0]:
                    got.append(s.get())
            assert got and got[0].cnt == 5, got
            assert bytes(got[0].get_items()[0]) == b"v6" * 600
            print("OK")
        ''')
        assert "OK" in out


_NETNS_PRELUDE = '''
import select, socket, subprocess, sys, time
sys.path[:0] = sys.argv[1:]
import spead2, spead2.recv
from packets import heap_packets
def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)
'''


def run_in_netns(tmp_path, body: str) -> str:
    """Run ``body`` in a fresh network namespace (skips where one cannot be made)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip to make a network namespace")
    script = tmp_path / "netns_test.py"
    script.write_text(_NETNS_PRELUDE + textwrap.dedent(body))
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [here] + [p for p in sys.path if p]
    try:
        proc = subprocess.run(["unshare", "--net", sys.executable, str(script)] + paths,
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("network namespace test timed out")
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"cannot create a network namespace: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


class TestCoalescedDatagrams:
    """UDP_GRO: the kernel may hand several datagrams over in one buffer."""

    def receive_from_our_sender(self, monkeypatch, caplog, gro, n_heaps=40):
        monkeypatch.setenv("SPEAD2_UDP_GRO", gro)
        caplog.set_level(logging.DEBUG, logger="spead2")
        tp = spead2.ThreadPool()
        stream = spead2.recv.Stream(tp, spead2.recv.StreamConfig(max_heaps=4),
                                    spead2.recv.RingStreamConfig(heaps=n_heaps + 2))
        port = free_udp_port()
        stream.add_udp_reader(port, bind_hostname="127.0.0.1", buffer_size=4 << 20)
        ig = spead2.send.ItemGroup()
        ig.add_item(0x1000, "x", "", (20000,), dtype=np.uint16)
        tx = spead2.send.UdpStream(tp, "127.0.0.1", port,
                                   spead2.send.StreamConfig(max_packet_size=1472, rate=2e8))
        for i in range(n_heaps):
            ig["x"].value = np.arange(20000, dtype=np.uint16) + i
            tx.send_heap(ig.get_heap(descriptors="none" if i else "all"))
        tx.send_heap(ig.get_end())
        heaps = call_with_timeout(lambda: list(stream), 30, "draining")
        tp.stop()
        return heaps, [r.message.split(",")[0] for r in caplog.records
                       if r.message.startswith("UDP reader")]

    @pytest.mark.parametrize("gro", ["1", "0"])
    def test_heaps_arrive_whole_either_way(self, monkeypatch, caplog, gro):
        heaps, _ = self.receive_from_our_sender(monkeypatch, caplog, gro)
        ig = spead2.ItemGroup()
        values = []
        for heap in heaps:
            if ig.update(heap):
                values.append(ig["x"].value.copy())
        assert len(values) == 40
        for i, value in enumerate(values):
            np.testing.assert_array_equal(value, np.arange(20000, dtype=np.uint16) + i)

    def test_the_switch_is_honoured(self, monkeypatch, caplog):
        _, lines = self.receive_from_our_sender(monkeypatch, caplog, "0", n_heaps=1)
        assert lines == ["UDP reader: one datagram per slot"]
        caplog.clear()
        _, lines = self.receive_from_our_sender(monkeypatch, caplog, "1", n_heaps=1)
        assert len(lines) == 1
        # kernels before 5.0 refuse UDP_GRO, which is then off
        assert lines[0] in ("UDP reader: coalesced datagrams (GRO)",
                            "UDP reader: one datagram per slot")
