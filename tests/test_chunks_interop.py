"""The chunking receiver against the reference (spead2 4.5.1), run in its
own interpreter:

- the same chunk program (ref_scripts/chunk_prog.py) on the same input on
  both implementations gives identical chunks (ids, stream ids, present,
  data, extra) and statistics;
- the reference as sender (its BytesStream bytes, and UDP on loopback) into
  our chunk stream.
"""

import json
import pickle
import random

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("scipy")

import packets as P  # noqa: E402
import spead2  # noqa: E402
import spead2.recv  # noqa: E402
from chunk_support import (Snap, direct_heap, drain, make_chunk, prog,  # noqa: E402
                           random_direct_stream)
from refimpl import RefProcess  # noqa: E402

import sys  # noqa: E402

# the statistics both implementations keep under the same name and meaning
COMMON_STATS = ("heaps", "packets", "incomplete_heaps_evicted", "incomplete_heaps_flushed",
                "too_old_heaps", "rejected_heaps")
PROG = str(prog.__file__)


def run_prog(python, tmp_path, tag, scenarios, timeout=120.0):
    spec = tmp_path / f"spec-{tag}.json"
    spec.write_text(json.dumps({"scenarios": scenarios}))
    out = tmp_path / f"out-{tag}.pickle"
    with RefProcess([python, PROG, "recv", "--spec", spec, "--output", out]) as proc:
        proc.finish(timeout)
    with open(out, "rb") as f:
        return pickle.load(f)["results"]


def run_both(ref_python, tmp_path, scenarios):
    ours = run_prog(sys.executable, tmp_path, "ours", scenarios)
    ref = run_prog(ref_python.executable, tmp_path, "ref", scenarios)
    return ours, ref


def compare(ours, ref, scenarios):
    for i, (a, b) in enumerate(zip(ours, ref)):
        name = scenarios[i].get("name", i)
        assert [c[0] for c in a["chunks"]] == [c[0] for c in b["chunks"]], name
        for ca, cb in zip(a["chunks"], b["chunks"]):
            assert Snap(*ca) == Snap(*cb), (name, ca[0])
        names = [k for k in b["stats"] if k not in COMMON_STATS and k in a["stats"]
                 and k.startswith("custom")]
        for key in COMMON_STATS + tuple(names):
            assert a["stats"][key] == b["stats"][key], (name, key)
    assert len(ours) == len(ref) == len(scenarios)


def direct_scenario(path, seed, **kwargs):
    spec = dict(name=f"seed {seed} {kwargs}", place="direct", input=str(path), max_chunks=3,
                data_bytes=8 * 32, present_bytes=8, extra_bytes=64, max_heap_extra=8,
                custom_stats=[["custom_count", "COUNTER"], ["custom_max", "MAXIMUM"]],
                free_ring=4, data_ring=2)
    spec.update(kwargs)
    return spec


def test_same_program_same_chunks(ref_python, tmp_path):
    """Random window sequences (jumps, back-fill, too-old heaps, lost
    packets, extra data, custom statistics, rejected heaps), in heap and in
    packet presence mode, with several window sizes."""
    scenarios = []
    for seed in range(8):
        rng = random.Random(seed)
        path = tmp_path / f"direct-{seed}.bin"
        packet_mode = seed % 2 == 1
        pkts = random_direct_stream(rng, per=8, heap_size=32, packet_payload=8)
        if not packet_mode:
            # heap mode: index counts heaps, not packets
            pkts = random_direct_stream(random.Random(seed), per=8, heap_size=32,
                                        packet_payload=32)
        if seed % 4 == 3:
            pkts.append(P.stop_packet())
        path.write_bytes(b"".join(pkts))
        kwargs = dict(max_chunks=1 + seed % 4, stream_id=seed)
        if packet_mode:
            kwargs.update(packet_presence=8, present_bytes=32)
        scenarios.append(direct_scenario(path, seed, **kwargs))
    ours, ref = run_both(ref_python, tmp_path, scenarios)
    compare(ours, ref, scenarios)
    assert sum(len(r["chunks"]) for r in ours) > 40
    assert sum(r["stats"]["too_old_heaps"] for r in ours) > 0
    assert sum(r["stats"]["rejected_heaps"] for r in ours) > 0
    assert sum(r["stats"]["custom_count"] for r in ours) > 0


def test_same_program_chunk_ids_near_the_top(ref_python, tmp_path):
    """Chunk ids up to 2**63 - 1: jumps there, back-fill below, too old."""
    path = tmp_path / "top.bin"
    pkts = []
    for cnt, (below_max, index) in enumerate([(10**12, 0), (5, 1), (0, 2), (3, 3), (1, 0),
                                              (2, 1), (9, 2), (0, 3)], 1):
        pkts += direct_heap(cnt, bytes([cnt]) * 32, chunk=below_max, index=index,
                            offset=32 * index, top=8)
    path.write_bytes(b"".join(pkts))
    scenarios = [direct_scenario(path, 0, max_chunks=m, name=f"top {m}") for m in (1, 3, 4)]
    ours, ref = run_both(ref_python, tmp_path, scenarios)
    compare(ours, ref, scenarios)
    assert ours[2]["chunks"][-1][0] == 2**63 - 1


def test_same_program_reordered_packets(ref_python, tmp_path):
    """Packets reordered and duplicated across heaps, few heaps under
    assembly (evictions), in order or out of order accepted."""
    scenarios = []
    for seed in range(8):
        rng = random.Random(100 + seed)
        path = tmp_path / f"shuffled-{seed}.bin"
        packet_mode = seed % 2 == 1
        pkts = random_direct_stream(rng, per=8, heap_size=32,
                                    packet_payload=8 if packet_mode else 32, shuffle=True)
        path.write_bytes(b"".join(pkts))
        kwargs = dict(max_chunks=1 + seed % 3, max_heaps=1 + seed % 3,
                      allow_out_of_order=seed % 4 >= 2)
        if packet_mode:
            kwargs.update(packet_presence=8, present_bytes=32)
        scenarios.append(direct_scenario(path, 100 + seed, **kwargs))
    ours, ref = run_both(ref_python, tmp_path, scenarios)
    compare(ours, ref, scenarios)
    assert sum(r["stats"]["incomplete_heaps_evicted"] for r in ours) > 0


def test_reference_bytes_into_our_chunk_stream(ref_python, tmp_path):
    """The reference's BytesStream output, placed by timestamp into chunks of
    4 heaps by our stream (numba callback and ChunkPlacement alike), and by
    the same program on the reference: identical chunks, each heap's data as
    sent."""
    path = tmp_path / "ref-sent.bin"
    n, heap_size, per = 22, 3000, 4
    with RefProcess([ref_python.executable, PROG, "send", "--heaps", n, "--heap-size", heap_size,
                     "--output", path]) as proc:
        proc.finish(60)
    scenarios = [dict(name="timestamp", place="timestamp", input=str(path), heaps_per_chunk=per,
                      heap_size=heap_size, extra=True, max_chunks=2, data_bytes=per * heap_size,
                      present_bytes=per, extra_bytes=8 * per, max_heap_extra=8,
                      custom_stats=[["custom_placed", "COUNTER"]], stat_name="custom_placed")]
    ours, ref = run_both(ref_python, tmp_path, scenarios)
    compare(ours, ref, scenarios)
    chunks = [Snap(*c) for c in ours[0]["chunks"]]
    assert [c.chunk_id for c in chunks] == list(range((n + per - 1) // per))
    base = np.arange(heap_size)
    for c in chunks:
        for k in range(per):
            i = c.chunk_id * per + k
            if i >= n:
                assert c.present[k] == 0
                continue
            assert c.present[k] == 1
            assert c.data[k * heap_size:(k + 1) * heap_size] == bytes(((base + i) % 251)
                                                                      .astype(np.uint8))
            assert int.from_bytes(c.extra[8 * k:8 * k + 8], sys.byteorder) == i
    assert ours[0]["stats"]["custom_placed"] == n

    # in-process, with a ChunkPlacement: the same chunks
    placement = spead2.recv.ChunkPlacement(chunk_item=prog.TIMESTAMP_ID, chunk_step=per,
                                           axes=[("chunk", per, 1)], heap_size=heap_size,
                                           extra=True)
    pool = spead2.ThreadPool()
    data_ring, free_ring = spead2.recv.ChunkRingbuffer(2), spead2.recv.ChunkRingbuffer(4)
    stream = spead2.recv.ChunkRingStream(
        pool, spead2.recv.StreamConfig(), spead2.recv.ChunkStreamConfig(place=placement),
        data_ring, free_ring)
    for _ in range(4):
        stream.add_free_chunk(make_chunk(placement.chunk_bytes, per, 8 * per))
    stream.add_buffer_reader(path.read_bytes())
    assert drain(data_ring, stream) == chunks
    stream.stop()


def test_reference_udp_sender_into_our_chunk_stream(ref_python, tmp_path):
    """The reference sends over UDP loopback (at a modest rate); our chunk
    stream, run by the same program, gets every heap in place."""
    n, heap_size, per = 64, 8192, 8
    scenarios = [dict(name="udp", place="timestamp", udp=True, heaps_per_chunk=per,
                      heap_size=heap_size, max_chunks=2, data_bytes=per * heap_size,
                      present_bytes=per, free_ring=6, data_ring=4, timeout=60)]
    spec = tmp_path / "spec-udp.json"
    spec.write_text(json.dumps({"scenarios": scenarios}))
    out = tmp_path / "out-udp.pickle"
    with RefProcess([sys.executable, PROG, "recv", "--spec", spec, "--output", out]) as recv:
        port = int(recv.readline(60))
        with RefProcess([ref_python.executable, PROG, "send", "--heaps", n, "--heap-size",
                         heap_size, "--rate", 20e6, "--udp", f"127.0.0.1:{port}"]) as send:
            send.finish(60)
        recv.finish(60)
    with open(out, "rb") as f:
        result = pickle.load(f)["results"][0]
    chunks = [Snap(*c) for c in result["chunks"]]
    assert [c.chunk_id for c in chunks] == list(range(n // per))
    base = np.arange(heap_size)
    for c in chunks:
        assert c.present == bytes([1]) * per, c.chunk_id
        for k in range(per):
            i = c.chunk_id * per + k
            assert c.data[k * heap_size:(k + 1) * heap_size] == bytes(((base + i) % 251)
                                                                      .astype(np.uint8))
    assert result["stats"]["heaps"] == n
    assert result["stats"]["too_old_heaps"] == 0
    assert result["stats"]["rejected_heaps"] == 1    # the end-of-stream heap, as in spead2
