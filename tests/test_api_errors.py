"""Bad arguments to the public API: the documented exception, a message that
says what was wrong, and never a crash.

Arguments whose mistakes used to crash the process are checked in a child
interpreter (:mod:`isolated`), so a regression fails the test instead of
killing pytest.
"""

import socket

import numpy as np
import pytest

import spead2
import spead2.recv
import spead2.send
from isolated import check_python


class TestRecvSizesBeyondMemory:
    def test_udp_max_size_larger_than_any_datagram_is_accepted(self):
        # max_size is only an upper bound on datagrams; it used to size the
        # receive slots, so 2**58 wrapped the allocation and the first
        # datagram wrote far outside it.
        out = check_python("""
            import socket, time
            import spead2, spead2.recv
            from packets import packet
            from ports import free_udp_port

            tp = spead2.ThreadPool()
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for max_size in (2**40, 2**58, 2**64 - 1):
                s = spead2.recv.Stream(tp)
                port = free_udp_port()
                s.add_udp_reader(port, max_size=max_size, bind_hostname="127.0.0.1")
                payload = bytes(range(256)) * 200
                tx.sendto(packet(7, payload, 0, len(payload), [(False, 0x1000, 0)]),
                          ("127.0.0.1", port))
                deadline = time.monotonic() + 10
                while True:
                    try:
                        heap = s.get_nowait()
                        break
                    except spead2.Empty:
                        assert time.monotonic() < deadline, "no heap within 10 s"
                        time.sleep(0.005)
                (item,) = heap.get_items()
                assert bytes(item) == payload
                s.stop()
                print("ok", max_size)
        """)
        assert out.count("ok") == 3

    def test_ring_and_live_heap_counts_beyond_memory_raise_memory_error(self):
        # ring_heaps close to 2**64 used to wrap the ring's slot count to 0 and
        # the first heap divided by it (SIGFPE).
        out = check_python("""
            import sys
            import spead2, spead2.recv
            from packets import packet

            tp = spead2.ThreadPool()
            for kwargs in ({"ring_heaps": 2**64 - 4}, {"ring_heaps": 2**64 - 1},
                           {"ring_heaps": 2**62}, {"max_heaps": 2**64 - 1}):
                try:
                    s = spead2.recv.Stream(tp, **kwargs)
                except MemoryError as exc:
                    assert str(exc).startswith("cannot allocate a stream"), exc
                    print("MemoryError", kwargs)
                    continue
                s.add_buffer_reader(b"".join(packet(i, b"x", 0, 1) for i in range(1, 10)))
                print("stream", kwargs, len(list(s)))
        """)
        lines = out.splitlines()
        assert "MemoryError {'ring_heaps': 18446744073709551612}" in lines
        assert "MemoryError {'max_heaps': 18446744073709551615}" in lines
        assert "MemoryError {'ring_heaps': 4611686018427387904}" in lines
        assert len(lines) == 4


@pytest.fixture(scope="module")
def tp():
    pool = spead2.ThreadPool()
    yield pool
    pool.stop()


def raises(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


class TestThreadPool:
    @pytest.mark.parametrize("threads", ["2", 2.5, None, True])
    def test_threads_not_an_integer(self, threads):
        raises(TypeError, "threads must be an integer", spead2.ThreadPool, threads)

    def test_threads_beyond_a_c_int(self):
        raises(OverflowError, "threads", spead2.ThreadPool, 2**40)

    def test_affinity_not_a_sequence(self):
        raises(TypeError, "affinity must be a sequence of CPU numbers", spead2.ThreadPool, 1, 5)

    @pytest.mark.parametrize("cpu", ["a", 1.5, None])
    def test_affinity_entry_not_an_integer(self, cpu):
        raises(TypeError, "CPU number in affinity must be an integer", spead2.ThreadPool, 1, [cpu])

    def test_affinity_entry_beyond_a_c_int(self):
        raises(spead2.RangeError, "CPU number in affinity", spead2.ThreadPool, 1, [2**40])

    def test_affinity_entry_absurd(self):
        raises(ValueError, "invalid CPU number", spead2.ThreadPool, 1, [2**30])


class TestAllocators:
    @pytest.mark.parametrize("position", range(4))
    @pytest.mark.parametrize("bad", ["a", 1.5, None])
    def test_memory_pool_sizes_not_integers(self, position, bad):
        args = [0, 4096, 4, 2]
        args[position] = bad
        name = ("lower", "upper", "max_free", "initial")[position]
        raises(TypeError, f"{name} must be an integer", spead2.MemoryPool, *args)

    def test_memory_pool_size_beyond_64_bits(self):
        raises(OverflowError, "upper .* does not fit in 64 bits", spead2.MemoryPool, 0, 2**64, 1, 1)

    def test_memory_pool_negative_low_water(self, tp):
        raises(OverflowError, "low_water must be non-negative", spead2.MemoryPool,
               tp, 0, 4096, 4, 2, -1)

    def test_memory_pool_thread_pool_keyword_of_wrong_type(self):
        raises(TypeError, "thread_pool must be a spead2.ThreadPool", spead2.MemoryPool,
               thread_pool=5, lower=0, upper=10, max_free=1, initial=1, low_water=0)

    def test_mmap_flags(self):
        raises(TypeError, "flags must be an integer", spead2.MmapAllocator, "x")
        raises(OverflowError, "flags", spead2.MmapAllocator, 2**40)


class TestFlavour:
    @pytest.mark.parametrize("index, name", list(enumerate(
        ["version", "item_pointer_bits", "heap_address_bits", "bug_compat"])))
    @pytest.mark.parametrize("bad", ["4", 4.0, None])
    def test_fields_not_integers(self, index, name, bad):
        args = [4, 64, 40, 0]
        args[index] = bad
        raises(TypeError, f"{name} must be an integer", spead2.Flavour, *args)

    @pytest.mark.parametrize("bug_compat", [8, -1, 0x100])
    def test_unknown_bug_compat_flags(self, bug_compat):
        raises(ValueError, "unknown bug_compat flags", spead2.Flavour, 4, 64, 40, bug_compat)


class TestItems:
    def test_descriptor_id_not_an_integer(self):
        raises(TypeError, "integer", spead2.Descriptor, "a", "x", "", (), dtype="u1")

    def test_name_not_a_string(self):
        raises(TypeError, "name must be a str", spead2.Descriptor, 1, 5, "", (), dtype="u1")

    def test_description_not_ascii(self):
        raises(UnicodeDecodeError, "ascii", spead2.Descriptor, 1, "x", b"\xff", (), dtype="u1")

    def test_dtype_not_understood(self):
        raises(TypeError, "nonsense", spead2.Descriptor, 1, "x", "", (), dtype="nonsense")

    @pytest.mark.parametrize("fmt", [5, 2.5])
    def test_format_not_a_list(self, fmt):
        raises(ValueError, "is not a list of \\(code, bits\\)", spead2.Descriptor, 1, "x", "", (),
               format=fmt)

    @pytest.mark.parametrize("fmt, match", [
        ([("u", -8)], "has no bits"),
        ([("uu", 8)], "unsupported format code"),
        ([("u",)], "is not a \\(code, bits\\) pair"),
    ])
    def test_bad_format_entries(self, fmt, match):
        raises(ValueError, match, spead2.Descriptor, 1, "x", "", (), format=fmt)

    def test_format_bit_count_not_an_integer(self):
        raises(TypeError, "format bit count must be an integer", spead2.Descriptor, 1, "x", "",
               (), format=[("u", "8")])

    def test_shape_not_a_sequence(self):
        raises(TypeError, "shape must be a sequence of dimensions", spead2.Descriptor, 1, "x",
               "", 5, dtype="u1")

    def test_shape_entry_not_an_integer(self):
        raises(TypeError, "shape entry must be an integer", spead2.Descriptor, 1, "x", "",
               (2, 1.5), dtype="u1")

    def test_negative_id(self):
        raises(spead2.RangeError, "id must be non-negative", spead2.Descriptor, -1, "x", "", (),
               dtype="u1")

    def test_too_many_dimensions_for_a_bit_level_value(self):
        item = spead2.Item(1, "x", "", (1,) * 65, format=[("u", 12)], value=[[0]])
        raises(ValueError, "at most 64", item.to_buffer)

    @pytest.mark.parametrize("kwargs, value, exc, match", [
        ({"dtype": "u1", "shape": (3,)}, "abc", ValueError, "invalid literal"),
        ({"format": [("u", 12)], "shape": ()}, 5000, ValueError, "does not fit in an unsigned"),
        ({"format": [("i", 12)], "shape": ()}, -5000, ValueError, "does not fit in a signed"),
        ({"format": [("u", 12)], "shape": ()}, object(), TypeError, "integer"),
        ({"format": [("c", 8)], "shape": (2,)}, "\u00e9\u00e9", UnicodeEncodeError, "ascii"),
        ({"format": [("u", 12), ("u", 4)], "shape": ()}, 5, ValueError, "not a sequence"),
    ])
    def test_values_that_do_not_fit(self, kwargs, value, exc, match):
        shape = kwargs.pop("shape")
        item = spead2.Item(0x1000, "x", "", shape, value=value, **kwargs)
        raises(exc, match, item.to_buffer)

    def test_item_group_lookup_and_add(self):
        ig = spead2.ItemGroup()
        raises(KeyError, "1.5", ig.__getitem__, 1.5)
        raises(TypeError, "name must be a str", ig.add_item, None, 5, "", (), dtype="u1")
        raises(ValueError, "exactly one of dtype and format", ig.add_item, None, "x", "", ())


class TestRecvStream:
    @pytest.mark.parametrize("name", ["max_heaps", "ring_heaps", "max_heap_size", "bug_compat"])
    @pytest.mark.parametrize("bad", ["4", 4.5, None])
    def test_sizes_not_integers(self, tp, name, bad):
        raises(TypeError, f"{name} must be an integer", spead2.recv.Stream, tp, **{name: bad})

    @pytest.mark.parametrize("value, match", [(-1, "must be non-negative"),
                                              (2**64, "does not fit in 64 bits")])
    def test_max_heap_size_out_of_range(self, tp, value, match):
        raises(OverflowError, match, spead2.recv.Stream, tp, max_heap_size=value)

    def test_unknown_keyword_and_extra_positional(self, tp):
        raises(TypeError, "foo", spead2.recv.Stream, tp, foo=1)
        raises(TypeError, "positional", spead2.recv.Stream, tp, 0, 4, 4, 5)

    def test_methods(self, tp):
        s = spead2.recv.Stream(tp)
        raises(TypeError, "id must be an integer", s.set_memcpy, "a")
        raises(TypeError, "MemoryAllocator", s.set_memory_allocator, None)
        raises(TypeError, "MemoryAllocator", s.set_memory_allocator, 5)
        raises(TypeError, "bytes-like", s.add_buffer_reader, "abc")
        raises(TypeError, "bytes-like", s.add_buffer_reader, 5)
        raises(ValueError, "contiguous", s.add_buffer_reader, np.zeros(10)[::2])
        s.stop()


class TestAddUdpReader:
    @pytest.mark.parametrize("port", [8888.0, None, 1.5])
    def test_port_not_an_integer(self, tp, port):
        raises(TypeError, "port must be an integer", spead2.recv.Stream(tp).add_udp_reader, port)

    def test_max_size_below_a_header(self, tp):
        raises(ValueError, "at least 8", spead2.recv.Stream(tp).add_udp_reader, 0, max_size=4)

    @pytest.mark.parametrize("name", ["max_size", "buffer_size"])
    def test_negative_sizes(self, tp, name):
        raises(OverflowError, f"{name} must be non-negative",
               spead2.recv.Stream(tp).add_udp_reader, 0, **{name: -1})

    def test_bind_hostname_not_a_string(self, tp):
        raises(TypeError, "bind_hostname must be a str", spead2.recv.Stream(tp).add_udp_reader, 0,
               bind_hostname=5)

    def test_unknown_keyword(self, tp):
        raises(TypeError, "colour", spead2.recv.Stream(tp).add_udp_reader, 0, colour=1)

    def test_socket_not_a_socket(self, tp):
        raises(TypeError, "socket must be a socket.socket", spead2.recv.Stream(tp).add_udp_reader,
               0, socket=5)

    def test_closed_socket_is_a_socket_error(self, tp):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.close()
        with pytest.raises(RuntimeError, match="closed") as info:
            spead2.recv.Stream(tp).add_udp_reader(0, socket=sock)
        assert isinstance(info.value, OSError) and info.value.errno == 9

    def test_tcp_socket_is_refused(self, tp):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            raises(TypeError, "SOCK_DGRAM", spead2.recv.Stream(tp).add_udp_reader, 0, socket=sock)

    def test_unix_socket_is_refused(self, tp):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            raises(TypeError, "IPv4 or IPv6", spead2.recv.Stream(tp).add_udp_reader, 0,
                   socket=sock)

    def test_bound_socket_is_a_socket_error(self, tp):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            raises(RuntimeError, "cannot bind", spead2.recv.Stream(tp).add_udp_reader, 0,
                   socket=sock)

    def test_multicast_interface_address_not_a_string(self, tp):
        raises(TypeError, "interface_address must be a str",
               spead2.recv.Stream(tp).add_udp_reader, "239.1.1.1", 0, 9200, 0, 5.5)

    def test_multicast_form_with_unicast_address(self, tp):
        raises(ValueError, "not a multicast address", spead2.recv.Stream(tp).add_udp_reader,
               "127.0.0.1", 0)

    def test_unresolvable_host(self, tp):
        raises(spead2.SocketError, "Host not found", spead2.recv.Stream(tp).add_udp_reader, 0,
               bind_hostname="no-such-host.invalid")


def any_heap():
    heap = spead2.send.Heap()
    heap.add_item(spead2.Item(0x1000, "x", "", (), format=[("u", 8)], value=1))
    return heap


class TestSend:
    @pytest.mark.parametrize("rate", ["fast", None, b"1"])
    def test_rate_not_a_number(self, rate):
        raises(TypeError, "rate must be a number", spead2.send.StreamConfig, rate=rate)

    def test_unknown_config_keyword(self):
        raises(TypeError, "foo", spead2.send.StreamConfig, foo=1)

    def test_heap_items_of_the_wrong_kind(self):
        heap = spead2.send.Heap()
        raises(TypeError, "item must be a spead2.Item", heap.add_item, 5)
        raises(TypeError, "item must be a spead2.Item", heap.add_item, None)
        raises(TypeError, "descriptor must be a spead2.Descriptor", heap.add_descriptor, 5)
        raises(ValueError, "has no value", heap.add_item,
               spead2.Item(0x1000, "x", "", (), dtype="u1"))

    def test_bytes_stream(self, tp):
        raises(TypeError, "config must be a spead2.send.StreamConfig", spead2.send.BytesStream,
               tp, 5)
        stream = spead2.send.BytesStream(tp)
        raises(TypeError, "Heap", stream.send_heap, 5)
        raises(TypeError, "cnt must be an integer", stream.send_heap, any_heap(), "a")
        raises(spead2.RangeError, "cnt must be non-negative", stream.send_heap, any_heap(), -5)
        raises(spead2.RangeError, "cnt .* does not fit in 63 bits", stream.send_heap, any_heap(),
               2**70)
        assert stream.getvalue() == b""

    def test_udp_stream_arguments(self, tp):
        raises(TypeError, "hostname must be a str", spead2.send.UdpStream, tp, 5, 8888)
        raises(TypeError, "port must be an integer", spead2.send.UdpStream, tp, "127.0.0.1",
               "8888")
        raises(TypeError, "config must be", spead2.send.UdpStream, tp, "127.0.0.1", 8888, 5)
        raises(TypeError, "buffer_size must be an integer", spead2.send.UdpStream, tp,
               "127.0.0.1", 8888, buffer_size="x")
        raises(spead2.RangeError, "buffer_size must be non-negative", spead2.send.UdpStream, tp,
               "127.0.0.1", 8888, buffer_size=-1)
        raises(spead2.SocketError, "Host not found", spead2.send.UdpStream, tp,
               "no-such-host.invalid", 8888)

    def test_udp_stream_sockets(self, tp):
        raises(TypeError, "socket must be a socket.socket", spead2.send.UdpStream, tp,
               "127.0.0.1", 8888, socket=5)
        raises(TypeError, "socket must be a socket.socket", spead2.send.UdpStream, tp,
               "239.1.1.1", 8888, spead2.send.StreamConfig(), 0, "x")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.close()
        with pytest.raises(RuntimeError, match="closed") as info:
            spead2.send.UdpStream(tp, "127.0.0.1", 8888, socket=sock)
        assert isinstance(info.value, OSError) and info.value.errno == 9
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            raises(TypeError, "SOCK_DGRAM", spead2.send.UdpStream, tp, "127.0.0.1", 8888,
                   socket=tcp)

    def test_heap_generator(self):
        raises(TypeError, "descriptor_frequency must be an integer", spead2.send.HeapGenerator,
               spead2.ItemGroup(), "x")
        raises(ValueError, "descriptor_frequency must be at least 1", spead2.send.HeapGenerator,
               spead2.ItemGroup(), 0)
        gen = spead2.send.HeapGenerator(spead2.ItemGroup(), flavour=5)
        raises(TypeError, "flavour must be a spead2.Flavour", gen.get_heap)

    def test_packet_generator(self):
        raises(TypeError, "Heap", spead2.send.PacketGenerator, 5, 1, 1472)
        raises(ValueError, "packet size is too small", spead2.send.PacketGenerator, any_heap(), 1,
               10)


# ---------------------------------------------------------------------------
# One rule per mistake, whichever class or tool gets it (see spead2._args)

def _replay_socket(port=9, buffer_size=None, ttl=None, host="127.0.0.1"):
    import argparse
    from spead2.tools._common import Endpoint
    from spead2.tools.send import open_replay_socket
    args = argparse.Namespace(buffer_size=buffer_size, ttl=ttl, interface=None)
    sock, _ = open_replay_socket(Endpoint(host, port), args)
    sock.close()


def _heap_source(heap_size=1024, items=1):
    from spead2.tools.send import HeapSource
    HeapSource(spead2.Flavour(), heap_size, items, np.dtype(np.uint8))


def _send_cnt(tp, cnt):
    spead2.send.BytesStream(tp).send_heap(any_heap(), cnt)


MISTAKES = {
    "negative size or count": (spead2.RangeError, [
        ("recv add_udp_reader buffer_size", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            0, buffer_size=-1)),
        ("recv add_udp_reader max_size", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            0, max_size=-1)),
        ("recv multicast buffer_size", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            "239.255.0.1", 0, 9200, -1)),
        ("send UdpStream buffer_size", lambda tp: spead2.send.UdpStream(
            tp, "127.0.0.1", 9, buffer_size=-1)),
        ("send StreamConfig max_packet_size", lambda tp: spead2.send.StreamConfig(
            max_packet_size=-1)),
        ("send StreamConfig burst_size", lambda tp: spead2.send.StreamConfig(burst_size=-1)),
        ("send StreamConfig max_heaps", lambda tp: spead2.send.StreamConfig(max_heaps=-1)),
        ("send cnt", lambda tp: _send_cnt(tp, -5)),
        ("send HeapGenerator descriptor_frequency", lambda tp: spead2.send.HeapGenerator(
            spead2.ItemGroup(), -1)),
        ("MemoryPool lower", lambda tp: spead2.MemoryPool(-1, 10, 1, 1)),
        ("MemoryPool low_water", lambda tp: spead2.MemoryPool(tp, 0, 10, 1, 1, -1)),
        ("ThreadPool threads", lambda tp: spead2.ThreadPool(-1)),
        ("ThreadPool affinity", lambda tp: spead2.ThreadPool(1, [-1])),
        ("Descriptor id", lambda tp: spead2.Descriptor(-1, "x", "", (), dtype="u1")),
        ("tools replay buffer_size", lambda tp: _replay_socket(buffer_size=-1)),
        ("tools HeapSource heap_size", lambda tp: _heap_source(heap_size=-1)),
        ("recv Stream max_heaps", lambda tp: spead2.recv.Stream(tp, max_heaps=-1)),
        ("recv StreamConfig max_heaps", lambda tp: spead2.recv.StreamConfig(max_heaps=-1)),
        ("recv RingStreamConfig heaps", lambda tp: spead2.recv.RingStreamConfig(heaps=-1)),
    ]),
    "size too large for its C type": (spead2.RangeError, [
        ("recv add_udp_reader buffer_size", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            0, buffer_size=2**64)),
        ("send UdpStream buffer_size", lambda tp: spead2.send.UdpStream(
            tp, "127.0.0.1", 9, buffer_size=2**64)),
        ("send StreamConfig max_heaps", lambda tp: spead2.send.StreamConfig(max_heaps=2**64)),
        ("send cnt", lambda tp: _send_cnt(tp, 2**70)),
        ("send ttl", lambda tp: spead2.send.UdpStream(
            tp, "239.255.0.1", 9, spead2.send.StreamConfig(), 0, 256)),
        ("MemoryPool upper", lambda tp: spead2.MemoryPool(0, 2**64, 1, 1)),
        ("ThreadPool threads", lambda tp: spead2.ThreadPool(2**40)),
        ("MmapAllocator flags", lambda tp: spead2.MmapAllocator(2**40)),
        ("tools replay ttl", lambda tp: _replay_socket(ttl=256, host="239.255.0.1")),
    ]),
    "port out of range": (spead2.PortRangeError, [
        ("recv unicast", lambda tp: spead2.recv.Stream(tp).add_udp_reader(70000)),
        ("recv multicast", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            "239.255.0.1", -1)),
        ("send UdpStream", lambda tp: spead2.send.UdpStream(tp, "127.0.0.1", 70000)),
        ("tools replay", lambda tp: _replay_socket(port=70000)),
    ]),
    "not an integer": (TypeError, [
        ("recv add_udp_reader buffer_size", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            0, buffer_size=1.5)),
        ("recv add_udp_reader port", lambda tp: spead2.recv.Stream(tp).add_udp_reader(8888.0)),
        ("send UdpStream buffer_size", lambda tp: spead2.send.UdpStream(
            tp, "127.0.0.1", 9, buffer_size=1.5)),
        ("send UdpStream port", lambda tp: spead2.send.UdpStream(tp, "127.0.0.1", "9")),
        ("send StreamConfig max_heaps", lambda tp: spead2.send.StreamConfig(max_heaps=2.0)),
        ("send cnt", lambda tp: _send_cnt(tp, True)),
        ("MemoryPool lower", lambda tp: spead2.MemoryPool("1", 10, 1, 1)),
        ("ThreadPool threads", lambda tp: spead2.ThreadPool(True)),
        ("Flavour heap_address_bits", lambda tp: spead2.Flavour(4, 64, 40.0)),
        ("tools HeapSource items", lambda tp: _heap_source(items=1.5)),
    ]),
    "zero where zero is not allowed": (ValueError, [
        ("recv Stream max_heaps", lambda tp: spead2.recv.Stream(tp, max_heaps=0)),
        ("recv StreamConfig substreams", lambda tp: spead2.recv.StreamConfig(substreams=0)),
        ("send StreamConfig max_heaps", lambda tp: spead2.send.StreamConfig(max_heaps=0)),
        ("send HeapGenerator descriptor_frequency", lambda tp: spead2.send.HeapGenerator(
            spead2.ItemGroup(), 0)),
        ("ThreadPool threads", lambda tp: spead2.ThreadPool(0)),
        ("tools HeapSource items", lambda tp: _heap_source(items=0)),
    ]),
    "value outside the domain": (ValueError, [
        ("recv Stream bug_compat", lambda tp: spead2.recv.Stream(tp, bug_compat=8)),
        ("recv StreamConfig bug_compat", lambda tp: spead2.recv.StreamConfig(bug_compat=-1)),
        ("recv add_udp_reader max_size", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            0, max_size=4)),
        ("recv multicast group", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            "127.0.0.1", 0)),
        ("send packet size", lambda tp: spead2.send.BytesStream(
            tp, spead2.send.StreamConfig(max_packet_size=10)).send_heap(spead2.send.Heap())),
        ("send multicast group", lambda tp: spead2.send.UdpStream(
            tp, "127.0.0.1", 9, spead2.send.StreamConfig(), 0, 1)),
        ("Flavour bug_compat", lambda tp: spead2.Flavour(4, 64, 40, -1)),
        ("MmapAllocator flags", lambda tp: spead2.MmapAllocator(-1)),
        ("MemoryPool lower above upper", lambda tp: spead2.MemoryPool(10, 1, 1, 1)),
    ]),
    "host not found": (spead2.SocketError, [
        ("recv bind_hostname", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            0, bind_hostname="no-such-host.invalid")),
        ("recv multicast group", lambda tp: spead2.recv.Stream(tp).add_udp_reader(
            "no-such-host.invalid", 0)),
        ("send UdpStream", lambda tp: spead2.send.UdpStream(tp, "no-such-host.invalid", 9)),
        ("send multicast interface", lambda tp: spead2.send.UdpStream(
            tp, "239.255.0.1", 9, spead2.send.StreamConfig(), 0, 1, "no-such-host.invalid")),
        ("tools replay", lambda tp: _replay_socket(host="no-such-host.invalid")),
    ]),
}


@pytest.mark.parametrize("mistake, exc, call", [
    pytest.param(mistake, exc, call, id=f"{mistake}: {where}")
    for mistake, (exc, cases) in MISTAKES.items()
    for where, call in cases
])
def test_one_exception_per_mistake(tp, mistake, exc, call):
    with pytest.raises(Exception) as info:
        call(tp)
    assert type(info.value) is exc, f"{mistake}: {type(info.value).__name__}: {info.value}"
    if exc is spead2.SocketError:
        assert "Host not found" in str(info.value)


def test_range_errors_are_what_both_apis_catch():
    # 2016 programs catch OverflowError; spead2 4.x programs catch TypeError.
    for exc in (spead2.RangeError, spead2.PortRangeError):
        assert issubclass(exc, OverflowError) and issubclass(exc, TypeError)
    assert issubclass(spead2.PortRangeError, spead2.RangeError)
    assert not issubclass(spead2.RangeError, ValueError)


@pytest.mark.parametrize("call, name", [
    (lambda tp: spead2.recv.Stream(tp).add_udp_reader(0, buffer_size=-1), "buffer_size"),
    (lambda tp: spead2.send.UdpStream(tp, "127.0.0.1", 9, buffer_size=-1), "buffer_size"),
    (lambda tp: spead2.MemoryPool(0, 10, -1, 1), "max_free"),
    (lambda tp: spead2.send.StreamConfig(burst_size=2.5), "burst_size"),
    (lambda tp: spead2.ThreadPool(0), "threads"),
    (lambda tp: spead2.recv.Stream(tp).add_udp_reader(70000), "port"),
])
def test_messages_name_the_argument(tp, call, name):
    with pytest.raises((TypeError, ValueError)) as info:
        call(tp)
    assert name in str(info.value)
