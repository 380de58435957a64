"""Resource use of send streams: 10^5 heaps through BytesStream, UdpStream
and the asyncio UdpStream leave memory and file descriptors flat after
warm-up, and streams made and dropped by the thousand leak nothing."""

import asyncio
import gc
import os
import socket

import numpy as np
import pytest

import spead2
import spead2.send
import spead2.send.asyncio

HEAPS = 100_000
RSS_SLACK = 8 << 20


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def sink():
    """A bound UDP socket nobody reads: the kernel drops what does not fit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def item_group():
    ig = spead2.send.ItemGroup()
    ig.add_item(0x1000, "counter", "", (), format=[("u", 32)])
    ig.add_item(0x1001, "data", "", (256,), dtype=np.uint16)
    return ig


def heaps(ig, n):
    """Heaps with fresh values (new numpy arrays each time)."""
    for i in range(n):
        ig["counter"].value = i
        ig["data"].value = np.full(256, i & 0xFFFF, np.uint16)
        yield ig.get_heap()


class Flatness:
    """Measures RSS and fds after a warm-up, then at the end."""

    def __init__(self):
        self.base = None

    def mark(self):
        gc.collect()
        self.base = (rss_bytes(), open_fds())

    def check(self):
        gc.collect()
        rss, fds = rss_bytes(), open_fds()
        assert fds <= self.base[1], f"{fds - self.base[1]} file descriptors leaked"
        assert rss - self.base[0] < RSS_SLACK, f"RSS grew by {(rss - self.base[0]) / 2**20:.1f} MiB"


def test_bytes_streams(thread_pool):
    ig = item_group()
    flat = Flatness()
    per_stream = 10_000
    for k in range(HEAPS // per_stream + 1):
        stream = spead2.send.BytesStream(thread_pool)
        for heap in heaps(ig, per_stream):
            stream.send_heap(heap)
        assert len(stream.getvalue()) > per_stream * 512
        del stream
        if k == 0:
            flat.mark()  # warm-up: the first stream
    flat.check()


def test_udp_stream(thread_pool, sink):
    ig = item_group()
    stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", sink)
    flat = Flatness()
    for i, heap in enumerate(heaps(ig, HEAPS + 5000)):
        stream.send_heap(heap)
        if i == 5000:
            flat.mark()
    flat.check()


def test_asyncio_udp_stream(thread_pool, sink):
    ig = item_group()

    async def main():
        stream = spead2.send.asyncio.UdpStream(
            thread_pool, "127.0.0.1", sink, spead2.send.StreamConfig(max_heaps=64))
        flat = Flatness()
        pending = []
        for i, heap in enumerate(heaps(ig, HEAPS + 5000)):
            pending.append(stream.async_send_heap(heap))
            if len(pending) == 32:
                await asyncio.gather(*pending)
                pending = []
            if i == 5000:
                flat.mark()
        await asyncio.gather(*pending)
        await stream.async_flush()
        flat.check()

    asyncio.run(main())


def test_streams_created_and_dropped(thread_pool, sink):
    heap = next(heaps(item_group(), 1))
    flat = Flatness()
    for k in range(2001):
        if k % 2:
            stream = spead2.send.UdpStream(thread_pool, "127.0.0.1", sink)
        else:
            stream = spead2.send.BytesStream(thread_pool)
        stream.send_heap(heap)
        del stream
        if k == 100:
            flat.mark()
    flat.check()
