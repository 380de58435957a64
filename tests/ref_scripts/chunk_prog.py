"""One chunk program, run unchanged by either implementation: the reference
(spead2 4.5.1) and ours, each in its own interpreter, so that the tests can
compare what the two make of the same input.

``recv``: runs the scenarios of a JSON spec, each a ChunkRingStream fed from
a file of packets (or from UDP, when ``"udp": true``: the port is printed on
a line of its own and the stream runs until its stop heap), and writes, for
each scenario, every chunk in the order it left the data ring (chunk_id,
stream_id, present, data, extra) and the statistics, as a pickle of plain
Python data.

``send``: sends ``--heaps`` heaps, each an immediate timestamp (0x1600, its
index) and ``--heap-size`` bytes of data (0x1601, byte ``(i + k) % 251``),
then an end-of-stream heap, into a BytesStream (``--output FILE``) or to UDP
(``--udp HOST:PORT``, at ``--rate`` bytes/s), using only spead2 4.x API.

Place callbacks (numba, compiled once per process):

- ``direct``: the 3-argument form ``void (void *, size_t, void *)``, its
  user data an int64 array holding the index of the first custom statistic.
  Every output field comes from an item of the heap's first packet (see
  DIRECT_ITEMS): the tests decide the placement packet by packet.
- ``timestamp``: the 2-argument form ``void (void *, size_t)``, compiled
  for each ``(heaps_per_chunk, heap_size, extra, stat)``: chunk ``ts //
  heaps_per_chunk``, index ``ts % heaps_per_chunk``, offset index *
  heap_size; heaps of another length are dropped; with ``extra`` the
  timestamp goes to ``Chunk.extra`` at 8 * index; with ``stat`` >= 0 that
  statistic counts placed heaps.
"""

import argparse
import ctypes
import json
import pickle
import socket
import sys
import time

import numba
import numpy as np
import scipy
from numba import types

import spead2
import spead2.recv
import spead2.send
from spead2.numba import intp_to_voidptr
from spead2.recv.numba import chunk_place_data

TIMESTAMP_ID = 0x1600
DATA_ID = 0x1601

# The direct callback's items, in this order.
DIRECT_ITEMS = [
    0x1000,  # chunk_id (absent: stays -1, the heap is dropped)
    0x1001,  # heap_index
    0x1002,  # heap_offset
    0x1003,  # extra_offset
    0x1004,  # extra_size; the scratch gets bytes (fill + k) & 0xff
    0x1005,  # fill
    0x1006,  # a custom statistic (0: the first): batch_stats[...] += value (or max with 0x1008)
    0x1007,  # value (default 1)
    0x1008,  # present: maximum instead of sum
    0x1009,  # chunk_id = -value (negative chunk ids)
    0x100A,  # bit mask: 1 heap_offset, 2 heap_index, 4 extra_offset are 2**64 - value;
             # 8 chunk_id is 2**63 - 1 - value
]
N_DIRECT = len(DIRECT_ITEMS)


@numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp, types.voidptr),
             nopython=True)
def place_direct(data_ptr, data_size, user_data):
    data = numba.carray(data_ptr, 1)
    stat_base = numba.carray(user_data, 1, dtype=np.int64)[0]
    items = numba.carray(intp_to_voidptr(data[0].items), N_DIRECT, dtype=np.int64)
    top = items[10] if items[10] >= 0 else 0
    if items[0] >= 0:
        data[0].chunk_id = items[0]
    if items[9] >= 0:
        data[0].chunk_id = -items[9]
    if top & 8 and items[0] >= 0:
        data[0].chunk_id = numba.int64(0x7FFFFFFFFFFFFFFF) - items[0]
    if items[1] >= 0:
        data[0].heap_index = items[1]
        if top & 2:
            data[0].heap_index = numba.uint64(0) - numba.uint64(items[1])
    if items[2] >= 0:
        data[0].heap_offset = items[2]
        if top & 1:
            data[0].heap_offset = numba.uint64(0) - numba.uint64(items[2])
    if items[3] >= 0:
        data[0].extra_offset = items[3]
        if top & 4:
            data[0].extra_offset = numba.uint64(0) - numba.uint64(items[3])
    if items[4] > 0:
        data[0].extra_size = items[4]
        extra = numba.carray(intp_to_voidptr(data[0].extra), items[4], dtype=np.uint8)
        fill = items[5] if items[5] >= 0 else 0
        for k in range(items[4]):
            extra[k] = (fill + k) & 0xFF
    if items[6] >= 0:
        index = stat_base + items[6]
        stats = numba.carray(intp_to_voidptr(data[0].batch_stats), index + 1, dtype=np.uint64)
        value = numba.uint64(items[7]) if items[7] >= 0 else numba.uint64(1)
        if items[8] >= 0:
            if value > stats[index]:
                stats[index] = value
        else:
            stats[index] += value


_TIMESTAMP_PLACES = {}


def place_timestamp(per, heap_size, with_extra, stat):
    """The timestamp callback for these parameters (compiled once each)."""
    key = (per, heap_size, with_extra, stat)
    if key in _TIMESTAMP_PLACES:
        return _TIMESTAMP_PLACES[key]

    @numba.cfunc(types.void(types.CPointer(chunk_place_data), types.uintp), nopython=True)
    def place(data_ptr, data_size):
        data = numba.carray(data_ptr, 1)
        items = numba.carray(intp_to_voidptr(data[0].items), 2, dtype=np.int64)
        ts = items[0]
        if ts < 0 or items[1] != heap_size:
            return
        index = ts % per
        data[0].chunk_id = ts // per
        data[0].heap_index = index
        data[0].heap_offset = index * heap_size
        if with_extra:
            extra = numba.carray(intp_to_voidptr(data[0].extra), 1, dtype=np.int64)
            extra[0] = ts
            data[0].extra_offset = index * 8
            data[0].extra_size = 8
        if stat >= 0:
            stats = numba.carray(intp_to_voidptr(data[0].batch_stats), stat + 1,
                                 dtype=np.uint64)
            stats[stat] += 1

    _TIMESTAMP_PLACES[key] = place
    return place


def make_place(spec, stat_base, keep):
    """The place value for a scenario; ``keep`` holds what must outlive it."""
    if spec["place"] == "direct":
        params = np.array([stat_base], np.int64)
        keep.append(params)
        return scipy.LowLevelCallable(place_direct.ctypes,
                                      user_data=params.ctypes.data_as(ctypes.c_void_p),
                                      signature="void (void *, size_t, void *)")
    place = place_timestamp(spec["heaps_per_chunk"], spec["heap_size"],
                            bool(spec.get("extra", False)), spec.get("stat_index", -1))
    return scipy.LowLevelCallable(place.ctypes, signature="void (void *, size_t)")


def run_scenario(spec, thread_pool):
    keep = []
    config = spead2.recv.StreamConfig(max_heaps=spec.get("max_heaps", 4),
                                      stream_id=spec.get("stream_id", 0),
                                      allow_out_of_order=spec.get("allow_out_of_order", False))
    stat_base = config.next_stat_index()
    for name, mode in spec.get("custom_stats", []):
        config.add_stat(name, getattr(spead2.recv.StreamStatConfig.Mode, mode))
    if spec.get("stat_name"):
        spec = dict(spec, stat_index=config.get_stat_index(spec["stat_name"]))
    items = DIRECT_ITEMS if spec["place"] == "direct" else [TIMESTAMP_ID, spead2.HEAP_LENGTH_ID]
    chunk_config = spead2.recv.ChunkStreamConfig(
        items=items, max_chunks=spec["max_chunks"], place=make_place(spec, stat_base, keep),
        max_heap_extra=spec.get("max_heap_extra", 0))
    if spec.get("packet_presence"):
        chunk_config.enable_packet_presence(spec["packet_presence"])
    data_ring = spead2.recv.ChunkRingbuffer(spec.get("data_ring", 4))
    free_ring = spead2.recv.ChunkRingbuffer(spec.get("free_ring", 4))
    stream = spead2.recv.ChunkRingStream(thread_pool, config, chunk_config, data_ring, free_ring)
    for _ in range(spec.get("free_ring", 4)):
        extra = spec.get("extra_bytes")
        stream.add_free_chunk(spead2.recv.Chunk(
            present=np.zeros(spec["present_bytes"], np.uint8),
            data=np.zeros(spec["data_bytes"], np.uint8),
            extra=None if extra is None else np.zeros(extra, np.uint8)))
    if spec.get("udp"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        stream.add_udp_reader(port, bind_hostname="127.0.0.1",
                              buffer_size=spec.get("buffer_size", 8 * 1024 * 1024))
        print(port, flush=True)
    else:
        with open(spec["input"], "rb") as f:
            stream.add_buffer_reader(f.read())
    chunks = []
    deadline = time.monotonic() + spec.get("timeout", 60.0)
    for chunk in data_ring:
        extra = None if chunk.extra is None else bytes(chunk.extra)
        chunks.append((chunk.chunk_id, chunk.stream_id, bytes(chunk.present), bytes(chunk.data),
                       extra))
        stream.add_free_chunk(chunk)
        if time.monotonic() > deadline:
            break
    stream.stop()
    stats = stream.stats
    names = [s.name for s in stream.config.stats]
    return {"chunks": chunks, "stats": {name: stats[name] for name in names}}


def cmd_recv(args):
    with open(args.spec) as f:
        spec = json.load(f)
    thread_pool = spead2.ThreadPool()
    results = [run_scenario(s, thread_pool) for s in spec["scenarios"]]
    with open(args.output + ".tmp", "wb") as f:
        pickle.dump({"implementation": spead2.__file__, "results": results}, f, protocol=4)
    import os
    os.replace(args.output + ".tmp", args.output)


def heaps(n, heap_size):
    flavour = spead2.Flavour(4, 64, 48, 0)
    ig = spead2.send.ItemGroup(flavour=flavour)
    ig.add_item(TIMESTAMP_ID, "timestamp", "heap index", shape=(), format=[("u", 48)])
    ig.add_item(DATA_ID, "data", "payload", shape=(heap_size,), dtype=np.uint8)
    base = np.arange(heap_size, dtype=np.int64)
    for i in range(n):
        ig["timestamp"].value = i
        ig["data"].value = ((base + i) % 251).astype(np.uint8)
        yield ig.get_heap(descriptors="none", data="all")
    yield ig.get_end()


def cmd_send(args):
    thread_pool = spead2.ThreadPool()
    config = spead2.send.StreamConfig(max_packet_size=args.max_packet_size, rate=args.rate,
                                      max_heaps=8)
    if args.output:
        stream = spead2.send.BytesStream(thread_pool, config)
    else:
        host, port = args.udp.rsplit(":", 1)
        stream = spead2.send.UdpStream(thread_pool, [(host, int(port))], config,
                                       buffer_size=args.buffer_size)
    for heap in heaps(args.heaps, args.heap_size):
        stream.send_heap(heap)
    if args.output:
        with open(args.output, "wb") as f:
            f.write(stream.getvalue())
    print("sent", args.heaps, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    recv = sub.add_parser("recv")
    recv.add_argument("--spec", required=True)
    recv.add_argument("--output", required=True)
    send = sub.add_parser("send")
    send.add_argument("--heaps", type=int, default=16)
    send.add_argument("--heap-size", type=int, default=1024)
    send.add_argument("--max-packet-size", type=int, default=1472)
    send.add_argument("--rate", type=float, default=0.0)
    send.add_argument("--buffer-size", type=int, default=1024 * 1024)
    dest = send.add_mutually_exclusive_group(required=True)
    dest.add_argument("--output")
    dest.add_argument("--udp")
    args = parser.parse_args()
    if args.cmd == "recv":
        cmd_recv(args)
    else:
        cmd_send(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
