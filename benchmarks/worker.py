"""One benchmark scenario, run in its own process by ``run.py``.

    python worker.py --impl {ours,ref} SCENARIO [--params JSON]

``--impl ours`` drives whatever ``spead2`` the interpreter imports through
the documented API only; ``--impl ref`` drives the reference spead2 4.5.1
through its own (different) API. The differences are confined to the two
``Api`` classes below; the scenarios themselves are shared. Prints one JSON
object on the last line of stdout: the scenario's metrics plus ``maxrss_kib``
(this process's peak resident set size).
"""

import argparse
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback

import numpy as np

ITEM_ID = 0x1000
UDP_HOST = "127.0.0.1"  # loopback, for UDP and TCP alike


class DocumentedApi:
    """Our library, through the documented spead2 API."""

    def __init__(self):
        import spead2
        import spead2.recv
        import spead2.send
        self.spead2 = spead2

    def thread_pool(self):
        return self.spead2.ThreadPool()

    def recv_stream(self, thread_pool, max_heaps=4, ring_heaps=4):
        return self.spead2.recv.Stream(thread_pool, bug_compat=0, max_heaps=max_heaps,
                                       ring_heaps=ring_heaps)

    def add_udp_reader(self, stream, port, host, max_size, buffer_size):
        stream.add_udp_reader(port, max_size=max_size, buffer_size=buffer_size,
                              bind_hostname=host)

    def add_tcp_reader(self, stream, port, host):
        stream.add_tcp_reader(port, bind_hostname=host)  # default max_size and buffer_size

    def send_config(self, max_packet_size, rate=0.0, max_heaps=4):
        return self.spead2.send.StreamConfig(max_packet_size=max_packet_size, rate=rate,
                                             max_heaps=max_heaps)

    def udp_stream(self, thread_pool, host, port, config, buffer_size=524288):
        return self.spead2.send.UdpStream(thread_pool, host, port, config, buffer_size)

    def bytes_stream(self, thread_pool, config):
        return self.spead2.send.BytesStream(thread_pool, config)

    # Today's API, the same in both implementations.

    def udp_stream_endpoints(self, thread_pool, endpoints, config, buffer_size=524288):
        return self.spead2.send.UdpStream(thread_pool, endpoints, config, buffer_size)

    def tcp_stream(self, thread_pool, host, port, config):
        """Connected when it returns."""
        return self.spead2.send.TcpStream(thread_pool, [(host, port)], config)


class RefApi(DocumentedApi):
    """The reference spead2 4.5.1, whose constructors take config objects."""

    def recv_stream(self, thread_pool, max_heaps=4, ring_heaps=4):
        recv = self.spead2.recv
        return recv.Stream(thread_pool, recv.StreamConfig(max_heaps=max_heaps, bug_compat=0),
                           recv.RingStreamConfig(heaps=ring_heaps))

    def udp_stream(self, thread_pool, host, port, config, buffer_size=524288):
        return self.spead2.send.UdpStream(thread_pool, [(host, port)], config,
                                          buffer_size=buffer_size)


def make_api(impl):
    api = RefApi() if impl == "ref" else DocumentedApi()
    version = getattr(api.spead2, "__version__", "?")
    if impl == "ours" and version == "4.5.1":
        raise SystemExit("--impl ours imports the reference spead2 4.5.1, not ours")
    return api


# ---------------------------------------------------------------------------
# Helpers.

def payload(size):
    return (np.arange(size, dtype=np.uint32) % 251).astype(np.uint8)


def free_port(host, socktype):
    with socket.socket(socket.AF_INET, socktype) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def bind_reader(add, host, socktype, attempts=10):
    """Call ``add(port)`` with ports that were free a moment ago until one
    binds; return that port."""
    error = None
    for _ in range(attempts):
        port = free_port(host, socktype)
        try:
            add(port)
            return port
        except (RuntimeError, OSError) as exc:
            error = exc
    raise RuntimeError(f"could not bind a reader: {error!r}")


def consume(api, stream, on_heap, timeout, stop_flag=None):
    """Iterate ``stream`` (in a helper thread) calling ``on_heap(heap)``, at most ``timeout`` s.

    Returns how it ended: 'stopped' (by itself), 'timeout', 'terminated'
    (``stop_flag`` was set) or 'hung' (did not end even after ``stop()``).
    """
    done = threading.Event()
    errors = []

    def run():
        try:
            for heap in stream:
                on_heap(heap)
        except Exception as exc:
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    deadline = time.monotonic() + timeout
    end = "stopped"
    while not done.wait(0.05):
        if stop_flag and stop_flag[0]:
            end = "terminated"
        elif time.monotonic() > deadline:
            end = "timeout"
        else:
            continue
        stream.stop()
        if not done.wait(10.0):
            end = "hung"
        break
    if errors:
        raise errors[0]
    return end


def send_loop(api, stream, heap_size, n_heaps):
    """Send ``n_heaps`` heaps of one ``heap_size``-byte item, with ``ItemGroup`` per heap."""
    spead2 = api.spead2
    ig = spead2.send.ItemGroup()
    item = ig.add_item(ITEM_ID, "payload", "benchmark payload", (heap_size,), dtype=np.uint8)
    value = payload(heap_size)
    start = time.perf_counter()
    for _ in range(n_heaps):
        item.value = value
        stream.send_heap(ig.get_heap())
    elapsed = time.perf_counter() - start
    return ig, elapsed


def repeat(fn, min_reps, max_reps, budget):
    """Call ``fn()`` (which returns seconds) at least ``min_reps`` times, more while time allows."""
    times = []
    start = time.monotonic()
    while len(times) < max_reps and (len(times) < min_reps or time.monotonic() - start < budget):
        times.append(fn())
    return times


# ---------------------------------------------------------------------------
# Scenarios. Each returns a dict of metrics.

def scenario_memcpy(api, block=1 << 20, total=64 << 20, budget=1.0):
    """numpy copy of a ``total``-byte buffer, ``block`` bytes at a time, into one reused block.

    The same memory traffic as receiving from a buffer: every byte of a
    buffer larger than the caches is read once and written into heap memory
    that the allocator recycles.
    """
    src = np.ones(total, np.uint8)
    dst = np.zeros(block, np.uint8)
    n = total // block

    def once():
        t0 = time.perf_counter()
        for k in range(n):
            np.copyto(dst, src[k * block:(k + 1) * block])
        return time.perf_counter() - t0

    times = repeat(once, 3, 100, budget)
    return {"gbps": total / min(times) / 1e9, "reps": len(times), "total": total, "block": block}


def scenario_gen_bytes(api, path, heap_size, n_heaps, max_packet_size):
    """Write ``n_heaps`` heaps of one ``heap_size``-byte item, then an end heap, to ``path``."""
    stream = api.bytes_stream(api.thread_pool(), api.send_config(max_packet_size))
    ig, _ = send_loop(api, stream, heap_size, n_heaps)
    stream.send_heap(ig.get_end())
    data = stream.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return {"bytes": len(data)}


def timed_receive(api, tp, add_reader, timeout, what):
    """Make a stream, ``add_reader(stream)``, receive until it stops with
    ``ItemGroup.update`` per heap; return (seconds, heaps with the payload)."""
    ig = api.spead2.ItemGroup()
    got = [0]

    def on_heap(heap):
        if "payload" in ig.update(heap):
            got[0] += 1

    t0 = time.perf_counter()
    stream = api.recv_stream(tp)
    add_reader(stream)
    end = consume(api, stream, on_heap, timeout)
    elapsed = time.perf_counter() - t0
    if end != "stopped":
        raise RuntimeError(f"{what} did not finish ({end}) after {got[0]} heaps")
    return elapsed, got[0]


def scenario_recv_buffer(api, path, heap_size, n_heaps, min_reps=2, max_reps=30, budget=2.0,
                         timeout=60.0):
    """Receive a file of packets from memory with ``ItemGroup.update`` per heap."""
    with open(path, "rb") as f:
        data = f.read()
    tp = api.thread_pool()
    counts = []

    def once():
        elapsed, got = timed_receive(api, tp, lambda s: s.add_buffer_reader(data), timeout,
                                     "buffer receive")
        counts.append(got)
        return elapsed

    # The physical limit at the same moment and on the same memory: after each
    # receive, copy the input in 1 MiB blocks into one reused block.
    src = np.frombuffer(data, np.uint8)
    block = 1 << 20
    dst = np.empty(block, np.uint8)
    copy_times = []

    def once_then_copy():
        elapsed = once()
        t0 = time.perf_counter()
        for start in range(0, len(src), block):
            piece = src[start:start + block]
            np.copyto(dst[:len(piece)], piece)
        copy_times.append(time.perf_counter() - t0)
        return elapsed

    times = repeat(once_then_copy, min_reps, max_reps, budget)
    best = min(times)
    return {"gbps": heap_size * n_heaps / best / 1e9, "heaps_per_s": n_heaps / best,
            "heaps": min(counts), "expected_heaps": n_heaps, "reps": len(times),
            "memcpy_gbps": heap_size * n_heaps / min(copy_times) / 1e9}


def receive_timed(api, stream, heap_size, timeout):
    """Consume ``stream`` (``ItemGroup.update`` per heap) until end of stream,
    SIGTERM or ``timeout``. The rate, and the CPU time this process spent
    per GB (all its threads: the receiver's cost, whatever the sender's
    speed), are over the span from the first heap to the last."""
    stop_flag = [False]
    signal.signal(signal.SIGTERM, lambda *a: stop_flag.__setitem__(0, True))
    ig = api.spead2.ItemGroup()
    state = {"heaps": 0, "first": None, "last": None, "cpu_first": None, "cpu_last": None}

    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def on_heap(heap):
        if "payload" in ig.update(heap):
            now = time.perf_counter()
            if state["first"] is None:
                state["first"], state["cpu_first"] = now, cpu_seconds()
            state["last"], state["cpu_last"] = now, cpu_seconds()
            state["heaps"] += 1

    end = consume(api, stream, on_heap, timeout, stop_flag)
    span = (state["last"] - state["first"]) if state["heaps"] > 1 else 0.0
    gb = (state["heaps"] - 1) * heap_size / 1e9
    return {"heaps": state["heaps"], "end": end,
            "gbps": gb / span if span > 0 else None,
            "cpu_s_per_gb": (state["cpu_last"] - state["cpu_first"]) / gb if span > 0 else None}


def scenario_recv_udp(api, heap_size, max_size=9200, buffer_size=8 << 20, timeout=60.0,
                      max_heaps=4, ring_heaps=4):
    """Receive over UDP loopback until end of stream, SIGTERM or ``timeout``.

    Prints the bound port on its own line first, for the runner.
    """
    stream = api.recv_stream(api.thread_pool(), max_heaps=max_heaps, ring_heaps=ring_heaps)
    port = bind_reader(lambda port: api.add_udp_reader(stream, port, UDP_HOST, max_size,
                                                       buffer_size),
                       UDP_HOST, socket.SOCK_DGRAM)
    print(port, flush=True)
    return receive_timed(api, stream, heap_size, timeout)


def scenario_recv_tcp(api, heap_size, timeout=60.0, max_heaps=4, ring_heaps=4):
    """Receive one TCP connection on loopback (``add_tcp_reader(port)`` with
    its defaults) until end of stream, SIGTERM or ``timeout``.

    Prints the listening port on its own line first, for the runner.
    """
    stream = api.recv_stream(api.thread_pool(), max_heaps=max_heaps, ring_heaps=ring_heaps)
    port = bind_reader(lambda port: api.add_tcp_reader(stream, port, UDP_HOST), UDP_HOST,
                       socket.SOCK_STREAM)
    print(port, flush=True)
    return receive_timed(api, stream, heap_size, timeout)


def send_prepared(api, stream, heap_size, n_heaps):
    """Send ``n_heaps`` heaps of one item as a load generator does, with as
    little work per heap as it can: the first heap carries the descriptor,
    then one data-only heap object is sent again and again (the stream gives
    each sending a new heap cnt). Returns the rates and the ItemGroup."""
    spead2 = api.spead2
    ig = spead2.send.ItemGroup()
    ig.add_item(ITEM_ID, "payload", "benchmark payload", (heap_size,), dtype=np.uint8,
                value=payload(heap_size))
    first = ig.get_heap(descriptors="all", data="all")
    data_only = ig.get_heap(descriptors="none", data="all")
    start = time.perf_counter()
    stream.send_heap(first)
    for _ in range(n_heaps - 1):
        stream.send_heap(data_only)
    elapsed = time.perf_counter() - start
    return {"gbps": heap_size * n_heaps / elapsed / 1e9, "heaps_per_s": n_heaps / elapsed}, ig


def scenario_send_udp(api, port, heap_size, n_heaps, rate=0.0, max_packet_size=8972,
                      end_heaps=3):
    """Send ``n_heaps`` heaps to 127.0.0.1:``port`` at ``rate`` bytes/s (0: unlimited)."""
    stream = api.udp_stream(api.thread_pool(), UDP_HOST, port,
                            api.send_config(max_packet_size, rate=rate))
    result, ig = send_prepared(api, stream, heap_size, n_heaps)
    for _ in range(end_heaps):  # several, in case the receiver drops one
        stream.send_heap(ig.get_end())
        time.sleep(0.01)
    return result


def scenario_send_tcp(api, port, heap_size, n_heaps, max_packet_size=8972):
    """Connect to 127.0.0.1:``port`` and send ``n_heaps`` heaps as fast as the
    receiver takes them, then an end heap."""
    stream = api.tcp_stream(api.thread_pool(), UDP_HOST, port, api.send_config(max_packet_size))
    result, ig = send_prepared(api, stream, heap_size, n_heaps)
    stream.send_heap(ig.get_end())
    return result


def scenario_send_bytes(api, heap_size, n_heaps, max_packet_size=8972, min_reps=2, max_reps=5,
                        budget=2.0):
    """Send heaps into a ``BytesStream``; the best repetition, and every
    repetition's figure in order (``gbps_reps``: the first one writes into
    memory the process has never touched)."""
    tp = api.thread_pool()
    sizes = []

    def once():
        stream = api.bytes_stream(tp, api.send_config(max_packet_size))
        _, elapsed = send_loop(api, stream, heap_size, n_heaps)
        sizes.append(len(stream.getvalue()))
        return elapsed

    times = repeat(once, min_reps, max_reps, budget)
    best = min(times)
    return {"gbps": heap_size * n_heaps / best / 1e9, "heaps_per_s": n_heaps / best,
            "bytes": sizes[-1], "reps": len(times),
            "gbps_reps": [heap_size * n_heaps / t / 1e9 for t in times]}


def scenario_send_heaps_udp(api, heap_size, n_groups, max_packet_size, n_substreams=4,
                            min_reps=2, max_reps=5, budget=2.0):
    """``send_heaps`` of ``n_substreams`` heaps, one per substream (ports on
    127.0.0.1 that nobody reads), round robin, with one reusable
    ``HeapReferenceList``."""
    spead2 = api.spead2
    send = spead2.send
    sinks = []
    for _ in range(n_substreams):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sink.bind((UDP_HOST, 0))
        sinks.append(sink)
    endpoints = [(UDP_HOST, sink.getsockname()[1]) for sink in sinks]
    tp = api.thread_pool()
    ig = send.ItemGroup()
    ig.add_item(ITEM_ID, "payload", "benchmark payload", (heap_size,), dtype=np.uint8)
    heaps = []
    for i in range(n_substreams):
        ig["payload"].value = payload(heap_size) + i
        heaps.append(ig.get_heap(descriptors="all" if i == 0 else "none", data="all"))
    refs = send.HeapReferenceList([send.HeapReference(h, substream_index=i)
                                   for i, h in enumerate(heaps)])

    def once():
        config = send.StreamConfig(max_packet_size=max_packet_size, max_heaps=2 * n_substreams)
        stream = api.udp_stream_endpoints(tp, endpoints, config)
        start = time.perf_counter()
        for _ in range(n_groups):
            stream.send_heaps(refs, send.GroupMode.ROUND_ROBIN)
        return time.perf_counter() - start

    try:
        times = repeat(once, min_reps, max_reps, budget)
    finally:
        for sink in sinks:
            sink.close()
    best = min(times)
    n_heaps = n_groups * n_substreams
    return {"gbps": heap_size * n_heaps / best / 1e9, "heaps_per_s": n_heaps / best,
            "reps": len(times)}


_TCP_SINK = """
import socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
print(listener.getsockname()[1], flush=True)
buf = bytearray(4 << 20)
listener.settimeout(float(sys.argv[1]))
while True:
    try:
        conn, _ = listener.accept()
    except OSError:
        break
    with conn:
        while conn.recv_into(buf):
            pass
"""


def scenario_send_tcp_sink(api, heap_size, n_heaps, max_packet_size=8972, min_reps=2,
                           max_reps=5, budget=2.0, timeout=120.0):
    """Send heaps over TCP loopback to a plain socket (in another process)
    that reads and discards."""
    import subprocess
    sink = subprocess.Popen([sys.executable, "-c", _TCP_SINK, str(timeout)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        port = int(sink.stdout.readline())
        tp = api.thread_pool()

        def once():
            stream = api.tcp_stream(tp, UDP_HOST, port, api.send_config(max_packet_size))
            # send_heap returns once the heap is handed to the socket
            return send_loop(api, stream, heap_size, n_heaps)[1]

        times = repeat(once, min_reps, max_reps, budget)
    finally:
        sink.kill()
        sink.wait(10)
    best = min(times)
    return {"gbps": heap_size * n_heaps / best / 1e9, "heaps_per_s": n_heaps / best,
            "reps": len(times)}


def scenario_send_udp_sink(api, heap_size, n_heaps, max_packet_size, min_reps=2, max_reps=5,
                           budget=2.0):
    """Send heaps over UDP loopback to a socket that nobody reads (the kernel drops overflow)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sink.bind((UDP_HOST, 0))
    port = sink.getsockname()[1]
    tp = api.thread_pool()

    def once():
        stream = api.udp_stream(tp, UDP_HOST, port, api.send_config(max_packet_size))
        _, elapsed = send_loop(api, stream, heap_size, n_heaps)
        return elapsed

    try:
        times = repeat(once, min_reps, max_reps, budget)
    finally:
        sink.close()
    best = min(times)
    return {"gbps": heap_size * n_heaps / best / 1e9, "heaps_per_s": n_heaps / best,
            "reps": len(times)}


# ---------------------------------------------------------------------------
# Chunk streams. Today's chunk API is the same on both sides (spead2 4.x), so
# these scenarios take nothing from the Api classes but the module.

TIMESTAMP_ID = 0x1600
CHUNK_DATA_ID = 0x1601


def chunk_heaps(api, heap_size, n_heaps, members=1, member=0):
    """``n_heaps`` heaps (then an end heap): an immediate timestamp, the heap's
    index, and ``heap_size`` bytes of data; no descriptors, so every heap is
    exactly ``heap_size`` bytes of payload. With ``members`` > 1, only the
    heaps whose index is ``member`` modulo ``members`` (one member's share
    of each chunk, for a group)."""
    spead2 = api.spead2
    ig = spead2.send.ItemGroup(flavour=spead2.Flavour(4, 64, 48, 0))
    ig.add_item(TIMESTAMP_ID, "timestamp", "heap index", shape=(), format=[("u", 48)])
    ig.add_item(CHUNK_DATA_ID, "data", "payload", shape=(heap_size,), dtype=np.uint8)
    ig["data"].value = payload(heap_size)
    for i in range(member, n_heaps, members):
        ig["timestamp"].value = i
        yield ig.get_heap(descriptors="none", data="all")
    yield ig.get_end()


def scenario_gen_chunk_bytes(api, path, heap_size, n_heaps, max_packet_size, members=1,
                             member=0):
    """Write the heaps of :func:`chunk_heaps` to ``path`` with a BytesStream."""
    stream = api.bytes_stream(api.thread_pool(), api.send_config(max_packet_size))
    for heap in chunk_heaps(api, heap_size, n_heaps, members, member):
        stream.send_heap(heap)
    data = stream.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return {"bytes": len(data)}


def numba_place(heaps_per_chunk, heap_size):
    """The usual place callback, in numba: chunk ``timestamp // heaps_per_chunk``,
    slot ``timestamp % heaps_per_chunk``; heaps of another size are dropped.
    It is the "timestamp" callback of the tests' chunk program, which both
    implementations run there too."""
    import importlib.util
    import scipy
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                        "ref_scripts", "chunk_prog.py")
    spec = importlib.util.spec_from_file_location("chunk_prog", path)
    prog = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prog)
    place = prog.place_timestamp(heaps_per_chunk, heap_size, False, -1)
    return scipy.LowLevelCallable(place.ctypes, signature="void (void *, size_t)")


def chunk_config_and_chunks(api, heap_size, heaps_per_chunk, place, max_chunks, n_chunks):
    """The ChunkStreamConfig (``place``: "numba", or "placement" for ours'
    declarative placement) and ``n_chunks`` chunks, every page touched."""
    recv = api.spead2.recv
    if place == "placement":   # ours only: the declarative placement
        placement = recv.ChunkPlacement(chunk_item=TIMESTAMP_ID, chunk_step=heaps_per_chunk,
                                        axes=[("chunk", heaps_per_chunk, 1)],
                                        heap_size=heap_size)
        chunk_config = recv.ChunkStreamConfig(place=placement, max_chunks=max_chunks)
    else:
        chunk_config = recv.ChunkStreamConfig(
            items=[TIMESTAMP_ID, api.spead2.HEAP_LENGTH_ID], max_chunks=max_chunks,
            place=numba_place(heaps_per_chunk, heap_size))
    chunks = [recv.Chunk(data=np.zeros(heap_size * heaps_per_chunk, np.uint8),
                         present=np.zeros(heaps_per_chunk, np.uint8)) for _ in range(n_chunks)]
    for c in chunks:   # touch every page before measuring
        c.data.fill(1)
    return chunk_config, chunks


def chunk_stream_parts(api, heap_size, heaps_per_chunk, place, max_chunks, n_chunks,
                       memcpy="std"):
    """``make_stream(thread_pool)``, which returns ``(stream, data_ring)``
    with ``n_chunks`` chunks (the same ones each time) in its free ring.
    ``memcpy``: "std" (the default) or "nontemporal"."""
    recv = api.spead2.recv
    chunk_config, chunks = chunk_config_and_chunks(api, heap_size, heaps_per_chunk, place,
                                                   max_chunks, n_chunks)

    def make_stream(thread_pool):
        data_ring = recv.ChunkRingbuffer(n_chunks)
        free_ring = recv.ChunkRingbuffer(n_chunks)
        copy = api.spead2.MEMCPY_NONTEMPORAL if memcpy == "nontemporal" else api.spead2.MEMCPY_STD
        stream = recv.ChunkRingStream(thread_pool, recv.StreamConfig(max_heaps=4, memcpy=copy),
                                      chunk_config, data_ring, free_ring)
        while chunks:
            stream.add_free_chunk(chunks.pop())
        return stream, data_ring

    def take_back(stream):
        """After ``stream.stop()``: its chunks, back for the next stream."""
        chunks.extend(stream.free_ringbuffer)
        chunks.extend(stream.data_ringbuffer)

    make_stream.take_back = take_back

    return make_stream


def drain_chunks(stream, data_ring, timeout, stop_flag=None):
    """Consume every chunk (giving each back), in a helper thread, at most
    ``timeout`` s; returns ``(heaps present, chunks, how it ended)``."""
    counts = [0, 0]

    def on_chunk(chunk):
        counts[0] += int(np.count_nonzero(chunk.present))
        counts[1] += 1
        stream.add_free_chunk(chunk)

    class Iterate:  # consume() iterates its argument and calls stop() on it
        def __iter__(self):
            return iter(data_ring)

        def stop(self):
            stream.stop()

    end = consume(None, Iterate(), on_chunk, timeout, stop_flag)
    return counts[0], counts[1], end


def scenario_chunk_buffer(api, path, heap_size, n_heaps, heaps_per_chunk=64, place="numba",
                          max_chunks=4, n_chunks=8, min_reps=3, max_reps=40, budget=3.0,
                          memcpy="std"):
    """Receive a file of packets from memory into chunks; every repetition
    is a fresh stream on the same chunks. Reports each repetition's heaps/s."""
    with open(path, "rb") as f:
        data = f.read()
    tp = api.thread_pool()
    make_stream = chunk_stream_parts(api, heap_size, heaps_per_chunk, place, max_chunks,
                                     n_chunks, memcpy)

    def setup():
        stream, data_ring = make_stream(tp)

        def finish():
            stream.stop()
            make_stream.take_back(stream)

        return lambda: stream.add_buffer_reader(data), data_ring, stream.add_free_chunk, finish

    return time_chunk_receive(setup, heap_size, n_heaps, min_reps, max_reps, budget)


def time_chunk_receive(setup, heap_size, n_heaps, min_reps, max_reps, budget):
    """Repetitions of a chunk receive: ``setup()`` returns ``(start,
    data_ring, give_back, finish)``; timed from ``start()`` until the data
    ring stops, consuming every chunk here (not in a helper thread, so that
    the time is exact; the process has a time limit) and giving it back;
    then ``finish()``. Returns each repetition's heaps/s."""
    got = []
    cpu = []

    def once():
        start, data_ring, give_back, finish = setup()
        heaps = 0
        c0 = time.process_time()
        t0 = time.perf_counter()
        start()
        for chunk in data_ring:
            heaps += int(np.count_nonzero(chunk.present))
            give_back(chunk)
        elapsed = time.perf_counter() - t0
        cpu.append(time.process_time() - c0)
        got.append(heaps)
        finish()
        return elapsed

    once()   # warm-up: first use of the code paths and of the input's pages
    del cpu[:]
    times = repeat(once, min_reps, max_reps, budget)
    rates = sorted(n_heaps / t for t in times)
    # CPU time of every thread (workers and consumer): less at the mercy of
    # other load on the machine than the elapsed time
    cpu_rates = sorted(n_heaps / t for t in cpu if t > 0)
    return {"heaps_per_s": rates[-1], "rates": rates, "cpu_rates": cpu_rates, "heaps": min(got),
            "expected_heaps": n_heaps, "reps": len(times),
            "gbps": heap_size * n_heaps / min(times) / 1e9}


def scenario_chunk_group_buffer(api, paths, heap_size, n_heaps, heaps_per_chunk=64,
                                place="numba", max_chunks=4, n_chunks=8, min_reps=3,
                                max_reps=40, budget=3.0):
    """A ChunkStreamRingGroup (lossless eviction) of ``len(paths)`` members,
    each on its own one-thread pool and fed from its own file (a share of
    every chunk's heaps), all filling the same chunks. Every repetition is a
    fresh group on the same chunks; reports each one's heaps/s, from adding
    the readers to the end of the data ring."""
    recv = api.spead2.recv
    inputs = []
    for path in paths:
        with open(path, "rb") as f:
            inputs.append(f.read())
    pools = [api.spead2.ThreadPool(1) for _ in paths]
    chunk_config, chunks = chunk_config_and_chunks(api, heap_size, heaps_per_chunk, place,
                                                   max_chunks, n_chunks)
    mode = recv.ChunkStreamGroupConfig.EvictionMode.LOSSLESS

    def setup():
        data_ring = recv.ChunkRingbuffer(n_chunks)
        free_ring = recv.ChunkRingbuffer(n_chunks)
        group = recv.ChunkStreamRingGroup(
            recv.ChunkStreamGroupConfig(max_chunks=max_chunks, eviction_mode=mode),
            data_ring, free_ring)
        members = [group.emplace_back(pool, recv.StreamConfig(max_heaps=4, stream_id=k),
                                      chunk_config)
                   for k, pool in enumerate(pools)]
        while chunks:
            group.add_free_chunk(chunks.pop())

        def start():
            # each member stops at the end of its buffer; the data ring
            # stops after the last one
            for member, data in zip(members, inputs):
                member.add_buffer_reader(data)

        def finish():
            group.stop()
            chunks.extend(free_ring)
            chunks.extend(data_ring)

        return start, data_ring, group.add_free_chunk, finish

    return time_chunk_receive(setup, heap_size, n_heaps, min_reps, max_reps, budget)


def scenario_chunk_recv_udp(api, heap_size, heaps_per_chunk=64, place="numba", max_chunks=4,
                            n_chunks=16, max_size=9200, buffer_size=16 << 20, timeout=60.0):
    """Receive into chunks over UDP loopback until the end heap, SIGTERM or
    ``timeout``. Prints the bound port on its own line first, for the runner."""
    stop_flag = [False]
    signal.signal(signal.SIGTERM, lambda *a: stop_flag.__setitem__(0, True))
    make_stream = chunk_stream_parts(api, heap_size, heaps_per_chunk, place, max_chunks,
                                     n_chunks)
    stream, data_ring = make_stream(api.thread_pool())
    port = bind_reader(lambda port: api.add_udp_reader(stream, port, UDP_HOST, max_size,
                                                       buffer_size),
                       UDP_HOST, socket.SOCK_DGRAM)
    print(port, flush=True)
    heaps, chunks, end = drain_chunks(stream, data_ring, timeout, stop_flag)
    return {"heaps": heaps, "chunks": chunks, "end": end}


def scenario_chunk_send_udp(api, port, heap_size, n_heaps, rate=0.0, max_packet_size=8972,
                            end_heaps=3):
    """Send the heaps of :func:`chunk_heaps` (built beforehand) to
    127.0.0.1:``port`` at ``rate`` bytes/s (0: unlimited)."""
    stream = api.udp_stream(api.thread_pool(), UDP_HOST, port,
                            api.send_config(max_packet_size, rate=rate))
    heaps = list(chunk_heaps(api, heap_size, n_heaps))
    end = heaps.pop()
    start = time.perf_counter()
    for heap in heaps:
        stream.send_heap(heap)
    elapsed = time.perf_counter() - start
    for _ in range(end_heaps):  # several, in case the receiver drops one
        stream.send_heap(end)
        time.sleep(0.01)
    return {"gbps": heap_size * n_heaps / elapsed / 1e9, "heaps_per_s": n_heaps / elapsed}

def _split_packets(data):
    """Cut concatenated SPEAD packets (a BytesStream's output) at their
    boundaries: header, item pointers, then the payload that the
    PAYLOAD_LENGTH pointer gives."""
    packets, pos = [], 0
    while pos < len(data):
        n_items = int.from_bytes(data[pos + 6:pos + 8], "big")
        hab = data[pos + 3] * 8
        length = 0
        for k in range(n_items):
            ptr = int.from_bytes(data[pos + 8 + 8 * k:pos + 16 + 8 * k], "big")
            if (ptr >> hab) & ((1 << (63 - hab)) - 1) == 4:
                length = ptr & ((1 << hab) - 1)
        size = 8 + 8 * n_items + length
        packets.append(data[pos:pos + size])
        pos += size
    return packets


def _pointer_index(packet, item_id):
    """Where the item pointer of ``item_id`` starts in ``packet`` (or None)."""
    hab = packet[3] * 8
    for k in range(int.from_bytes(packet[6:8], "big")):
        off = 8 + 8 * k
        ptr = int.from_bytes(packet[off:off + 8], "big")
        if (ptr >> hab) & ((1 << (63 - hab)) - 1) == item_id:
            return off
    return None


def _cnt(packet):
    off = _pointer_index(packet, 1)
    return int.from_bytes(packet[off:off + 8], "big") & ((1 << packet[3] * 8) - 1)


def _with_cnt(packet, cnt):
    """``packet`` with its HEAP_CNT immediate set to ``cnt``."""
    out = bytearray(packet)
    off = _pointer_index(packet, 1)
    hab = out[3] * 8
    ptr = int.from_bytes(out[off:off + 8], "big")
    out[off:off + 8] = ((ptr >> hab << hab) | cnt).to_bytes(8, "big")
    return bytes(out)


def _udp_frame(payload, sport=40000, dport=7148):
    """Ethernet, IPv4 (10.0.0.1 -> 10.0.0.2) and UDP headers around ``payload``."""
    import struct
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0x4000, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    eth = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00"
    return eth + ip + udp + payload


def scenario_gen_pcap(api, path, heap_size, n_heaps, max_packet_size, write_size=64 << 20):
    """Write a classic pcap capture (Ethernet, IPv4, UDP) of ``n_heaps``
    heaps of one ``heap_size``-byte item, then an end heap, to ``path``.

    The packets of one descriptor heap, one data heap and the end heap come
    from this implementation's ``BytesStream``; the data heap is repeated
    with the heap cnt rewritten, so a large capture costs no sending. The
    file is written ``write_size`` bytes per ``write`` call, which decides
    how the page cache holds it: large writes leave it in large folios, as
    reading a file from disk does; small ones (a capture written record by
    record) leave it in single pages, which cost more to map."""
    import struct
    stream = api.bytes_stream(api.thread_pool(), api.send_config(max_packet_size))
    ig = api.spead2.send.ItemGroup()
    ig.add_item(ITEM_ID, "payload", "benchmark payload", (heap_size,), dtype=np.uint8,
                value=payload(heap_size))
    stream.send_heap(ig.get_heap(descriptors="all", data="all"))   # cnt 1
    stream.send_heap(ig.get_heap(descriptors="none", data="all"))  # cnt 2
    stream.send_heap(ig.get_end())                                 # cnt 3
    heaps = {}
    for pkt in _split_packets(stream.getvalue()):
        heaps.setdefault(_cnt(pkt), []).append(pkt)
    first, data, end = heaps[1], heaps[2], heaps[3]
    record = struct.Struct("<IIII")
    size = 0
    pending = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    with open(path, "wb", buffering=0) as f:

        def put(pkt, k=[0]):
            nonlocal size
            frame = _udp_frame(pkt)
            pending.extend(record.pack(k[0] // 1000000, k[0] % 1000000, len(frame), len(frame)))
            pending.extend(frame)
            k[0] += 1
            size += 16 + len(frame)
            while len(pending) >= write_size:
                f.write(pending[:write_size])
                del pending[:write_size]

        for pkt in first:
            put(pkt)
        for cnt in range(2, n_heaps + 1):
            for pkt in data:
                put(_with_cnt(pkt, cnt))
        for pkt in end:
            put(_with_cnt(pkt, n_heaps + 1))
        f.write(pending)
    return {"bytes": size + 24, "packets_per_heap": len(data)}


def scenario_recv_pcap(api, path, heap_size, n_heaps, reps=1, timeout=120.0):
    """Replay a capture with ``add_udp_pcap_file_reader``, ``ItemGroup.update``
    per heap; ``reps`` timed replays in this process."""
    tp = api.thread_pool()
    times, counts = [], []
    for _ in range(reps):
        elapsed, got = timed_receive(api, tp, lambda s: s.add_udp_pcap_file_reader(path),
                                     timeout, "replay")
        times.append(elapsed)
        counts.append(got)
    best = min(times)
    return {"gbps": heap_size * n_heaps / best / 1e9, "heaps_per_s": n_heaps / best,
            "times": times, "heaps": min(counts), "expected_heaps": n_heaps}


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items()
             if name.startswith("scenario_")}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", choices=["ours", "ref"], required=True)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--params", default="{}", help="keyword arguments as a JSON object")
    args = parser.parse_args()
    try:
        api = None if args.scenario == "memcpy" else make_api(args.impl)
        result = SCENARIOS[args.scenario](api, **json.loads(args.params))
        result["ok"] = True
        if api is not None:
            result["version"] = getattr(api.spead2, "__version__", "?")
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["numpy"] = np.__version__
    print(json.dumps(result), flush=True)
    # Skip interpreter teardown: a stream or thread pool that hangs on exit
    # must not hold up the runner once the result is out.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
