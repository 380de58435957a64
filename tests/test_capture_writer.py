"""The capture's file writing: buffers written whole at their place in a
regular file (with direct I/O where the file system takes it, or through the
page cache), records straddling two buffers, flushes of the buffer being
filled, and the plain sequential writes used for anything else."""

import os
import random
import socket
import time

import pytest

from spead2._capture import Capture, UdpDatagrams

# more than two of the capture's 4 MiB buffers
N_DATAGRAMS = 2400
FLUSH_AFTER = 1200


def payloads(seed=1):
    rng = random.Random(seed)
    out = []
    for i in range(N_DATAGRAMS):
        size = rng.choice([8, 100, 1472, 8000, 8972, rng.randrange(9, 9000)])
        out.append(i.to_bytes(8, "big") + rng.randbytes(size - 8))
    return out


@pytest.fixture(scope="module")
def sent_payloads():
    return payloads()


def capture_into(fd, datagrams, fmt, flush_after=FLUSH_AFTER):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cap = Capture([rx], fd, fmt)
    try:
        done = 0
        for start in range(0, len(datagrams), 100):
            for d in datagrams[start:start + 100]:
                tx.sendto(d, rx.getsockname())
            target = min(start + 100, len(datagrams))
            deadline = time.monotonic() + 10
            while done < target and time.monotonic() < deadline:
                cap.run(limit=target, timeout=0.05)
                done = cap.stats["packets"]
            assert done == target, "datagrams went missing on loopback"
            if start < flush_after <= start + 100:
                cap.flush()
                yield "flushed", cap.stats
        cap.flush()
        yield "done", cap.stats
    finally:
        cap.close()
        rx.close()
        tx.close()


def read_payloads(data):
    return [bytes(data[off:off + n]) for off, n in UdpDatagrams(data)]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("direct", ["1", "0"], ids=["direct", "page-cache"])
def test_regular_file_holds_every_datagram_in_order(tmp_path, monkeypatch, sent_payloads, fmt,
                                                     direct):
    monkeypatch.setenv("SPEAD2_CAPTURE_DIRECT", direct)
    path = tmp_path / f"out.{fmt}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        steps = list(capture_into(fd, sent_payloads, fmt))
        # the flush made what came before it readable, while the buffer it
        # wrote was still being filled
        (_, flushed), (_, final) = steps
        assert final["file_bytes"] > 2 * (4 << 20)
        # the file descriptor ends where the capture does
        assert os.lseek(fd, 0, os.SEEK_CUR) == final["file_bytes"]
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert len(data) == final["file_bytes"]
    assert read_payloads(data) == sent_payloads


@pytest.mark.parametrize("direct", ["1", "0"], ids=["direct", "page-cache"])
def test_a_flush_leaves_a_readable_file(tmp_path, monkeypatch, sent_payloads, direct):
    monkeypatch.setenv("SPEAD2_CAPTURE_DIRECT", direct)
    path = tmp_path / "out.pcap"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        steps = capture_into(fd, sent_payloads, "pcap")
        what, flushed = next(steps)
        assert what == "flushed"
        data = path.read_bytes()
        assert len(data) == flushed["file_bytes"]
        got = read_payloads(data)
        assert got == sent_payloads[:len(got)]
        assert len(got) == flushed["packets"] >= FLUSH_AFTER
        for _ in steps:
            pass
    finally:
        os.close(fd)
    assert read_payloads(path.read_bytes()) == sent_payloads


def test_after_what_the_file_already_holds(tmp_path, sent_payloads):
    """A file descriptor not at the start of its file is written in order
    from where it stands."""
    path = tmp_path / "out.pcap"
    prefix = b"prefix bytes of somebody else's"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, prefix)
        for _ in capture_into(fd, sent_payloads[:300], "pcap"):
            pass
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert data.startswith(prefix)
    assert read_payloads(data[len(prefix):]) == sent_payloads[:300]


def test_a_pipe_gets_the_same_bytes_as_a_file(tmp_path, sent_payloads):
    r, w = os.pipe()
    chunks = []
    import threading

    def drain():
        while True:
            b = os.read(r, 1 << 20)
            if not b:
                return
            chunks.append(b)

    t = threading.Thread(target=drain)
    t.start()
    try:
        for _ in capture_into(w, sent_payloads[:500], "pcapng"):
            pass
    finally:
        os.close(w)
        t.join(30)
        os.close(r)
    assert read_payloads(b"".join(chunks)) == sent_payloads[:500]
