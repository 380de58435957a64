"""Bad arguments to the public API: the documented exception, a message that
says what was wrong, and never a crash.

Arguments whose mistakes used to crash the process are checked in a child
interpreter (:mod:`isolated`), so a regression fails the test instead of
killing pytest.
"""

import pytest

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

            tp = spead2.ThreadPool()
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for max_size in (2**40, 2**58, 2**64 - 1):
                s = spead2.recv.Stream(tp)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind(("127.0.0.1", 0))
                    port = probe.getsockname()[1]
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
