"""Resource use of receive streams: memory and file descriptors stay flat
over 10^5 heaps through the buffer and UDP readers with each allocator, and
streams left running never hang the interpreter."""

import gc
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import spead2
import spead2.recv
from conftest import wait_for
from isolated import check_python
from packets import packet
from ports import free_udp_port

HEAPS = 100_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def small_heaps(n, start=1, size=64):
    return b"".join(packet(i, bytes([i & 0xFF]) * size, 0, size, [(False, 0x1000, 0)])
                    for i in range(start, start + n))


@pytest.mark.parametrize("allocator", ["default", "pool", "mmap"])
def test_buffer_reader_memory_flat_over_many_heaps(allocator):
    # in a fresh interpreter, so what earlier tests left in the process's
    # heap does not blur the measurement
    out = check_python("""
        import gc, os, sys
        import spead2, spead2.recv
        from test_recv_resources import make_allocator, open_fds, rss_bytes, small_heaps, HEAPS
        allocator = sys.argv[1]
        tp = spead2.ThreadPool()
        chunk = small_heaps(10_000)

        def run_chunk():
            s = spead2.recv.Stream(tp, ring_heaps=8)
            s.set_memory_allocator(make_allocator(allocator))
            s.add_buffer_reader(chunk)
            n = 0
            for heap in s:
                heap.get_items()
                n += 1
            return n

        assert run_chunk() == 10_000  # warm-up
        gc.collect()
        base_rss, base_fds = rss_bytes(), open_fds()
        total = 0
        for _ in range(HEAPS // 10_000):
            total += run_chunk()
        gc.collect()
        assert total == HEAPS, total
        assert open_fds() <= base_fds, (open_fds(), base_fds)
        growth = rss_bytes() - base_rss
        assert growth < 8 << 20, growth
        tp.stop()
        print("growth", growth)
    """, timeout=120, args=[allocator])
    assert "growth" in out


def make_allocator(kind):
    if kind == "pool":
        return spead2.MemoryPool(16, 4096, 16, 8)
    if kind == "mmap":
        return spead2.MmapAllocator()
    return spead2.MemoryAllocator()


@pytest.mark.parametrize("allocator", ["default", "pool", "mmap"])
def test_udp_reader_memory_and_fds_flat(allocator):
    # in a fresh interpreter, so what earlier tests left in the process's
    # heap does not blur the measurement
    out = check_python("""
        import sys
        from test_recv_resources import udp_reader_memory_and_fds_flat
        udp_reader_memory_and_fds_flat(sys.argv[1])
        print("done")
    """, timeout=150, args=[allocator])
    assert "done" in out


def udp_reader_memory_and_fds_flat(allocator):
    """10^5 heaps over UDP: received, and RSS and fds flat after warm-up."""
    tp = spead2.ThreadPool()
    s = spead2.recv.Stream(tp, ring_heaps=64)
    s.set_memory_allocator(make_allocator(allocator))
    # values decoded as views of the heaps keep them (and their pool
    # buffers) alive until the next heap replaces them
    ig = spead2.ItemGroup()
    ig.add_item(0x1000, "u", "", (64,), dtype=np.uint8)
    port = free_udp_port()
    s.add_udp_reader(port, bind_hostname="127.0.0.1")
    base_fds = open_fds()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    per_round = 250
    received = 0
    sent = 0
    base_rss = None
    deadline = time.monotonic() + 120
    for rnd in range(HEAPS // per_round):
        for i in range(per_round):
            sent += 1
            tx.sendto(packet(sent, b"u" * 64, 0, 64, [(False, 0x1000, 0)]), ("127.0.0.1", port))
        # drain until the receiver has seen this round (loopback drops only
        # when the socket buffer overflows, which pacing by rounds avoids)
        round_deadline = min(deadline, time.monotonic() + 2.0)
        while time.monotonic() < round_deadline:
            try:
                ig.update(s.get_nowait())
                received += 1
            except spead2.Empty:
                if s.stats.packets >= sent:
                    break
                time.sleep(0.0005)
        if rnd == 40:
            gc.collect()
            base_rss = rss_bytes()
    tx.close()
    while True:
        try:
            s.get_nowait()
            received += 1
        except spead2.Empty:
            break
    gc.collect()
    assert received > HEAPS * 0.95
    assert bytes(ig["u"].value) == b"u" * 64
    assert open_fds() <= base_fds
    assert rss_bytes() - base_rss < 8 << 20
    s.stop()
    tp.stop()


def test_streams_garbage_collected_while_running():
    tp = spead2.ThreadPool(2)
    base_fds = open_fds()
    for _ in range(50):
        s = spead2.recv.Stream(tp, ring_heaps=1)
        s.add_buffer_reader(small_heaps(100))
        port = free_udp_port()
        s.add_udp_reader(port, bind_hostname="127.0.0.1", buffer_size=0)
        del s
    gc.collect()
    # collected streams close their sockets (a worker may finish the close)
    assert wait_for(lambda: open_fds() <= base_fds), f"{open_fds() - base_fds} fds still open"
    tp.stop()


def test_stream_in_reference_cycle_is_collected():
    tp = spead2.ThreadPool()

    class Holder:
        pass

    h = Holder()
    h.self = h
    h.stream = spead2.recv.Stream(tp)
    h.stream.add_buffer_reader(small_heaps(10))
    del h
    done = threading.Event()

    def collect():
        gc.collect()
        done.set()

    t = threading.Thread(target=collect)
    t.start()
    assert done.wait(10)
    tp.stop()


def test_interpreter_exit_with_live_streams():
    code = textwrap.dedent("""
        import socket, sys
        sys.path[:0] = sys.argv[1:]
        import spead2, spead2.recv
        from packets import packet
        tp = spead2.ThreadPool(2)
        streams = []
        for i in range(4):
            s = spead2.recv.Stream(tp, ring_heaps=1)
            s.add_buffer_reader(b"".join(packet(j, b"x", 0, 1, [(False, 0x1000, 0)])
                                         for j in range(1, 100)))
            s.add_udp_reader(0, bind_hostname="127.0.0.1", buffer_size=0)
            streams.append(s)
        blocked = spead2.recv.Stream(tp)
        print("exiting", flush=True)
    """)
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", code, here] + [p for p in sys.path if p],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "exiting" in proc.stdout
