"""Fuzzing the receive path: a bounded run of about 1.5 * 10^4 inputs.

The harness, its invariants and why the tail heaps cannot collide with the
fuzz input are described in :mod:`fuzzing`; ``python tests/fuzz_long.py``
runs the same harness for as many inputs as you like.
"""

import json
import logging
import math
import os
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spead2
import spead2.recv
from spead2._codec import decode_raw_descriptor
import fuzzing
from fuzzing import (ALLOWED_UPDATE_ERRORS, BufferTarget, InvariantError, Mutator, Tally,
                     TcpTarget, UdpTarget)
from packets import packet, stop_packet

SEED = 20240611
BUFFER_MUTATIONS = 3000
UDP_MUTATIONS = 1500
BUFFER_GENERATED = 2000
UDP_GENERATED = 1000
DESCRIPTOR_MUTATIONS = 1500
# about 8 ms an input (a stream, a connection and a thread each): ~20 s in all
TCP_MUTATIONS = 1000
TCP_GENERATED = 800

FUZZ_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


@pytest.fixture(autouse=True, scope="module")
def quiet_spead2_logger():
    """Thousands of drops are logged per test; only their counts matter here."""
    logger = logging.getLogger("spead2")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(old)


@pytest.fixture(scope="module")
def thread_pool():
    tp = spead2.ThreadPool()
    yield tp
    tp.stop()


@pytest.fixture(scope="module")
def corpus(thread_pool):
    return fuzzing.own_captures(thread_pool)


@pytest.fixture(scope="module")
def udp_target(thread_pool):
    target = UdpTarget(thread_pool, random.Random(SEED), Tally())
    yield target
    target.close()


@pytest.fixture(scope="module")
def tcp_target(thread_pool):
    target = TcpTarget(thread_pool, random.Random(SEED), Tally())
    yield target
    target.close()


def run_inputs(target, inputs):
    """Feed every input; return the failures as (index, message)."""
    failures = []
    for i, data in enumerate(inputs):
        try:
            target.run(data)
        except InvariantError as exc:
            failures.append((i, str(exc)))
    return failures


class TestModel:
    """The oracle itself: it must frame what our sender writes exactly."""

    def test_frames_every_capture_without_loss(self, corpus):
        assert len(corpus) >= 20
        for data in corpus:
            framing = fuzzing.frame(data)
            assert framing.bad == 0 and framing.stop_at is None
            assert sum(p.size for p in framing.packets) == len(data)

    def test_predicts_resynchronisation_over_garbage(self, thread_pool):
        # garbage, then a plausible header without HEAP_CNT or PAYLOAD_LENGTH:
        # two rejected decodes, each skipping to the next plausible header
        fake = b"\x53\x04\x03\x05\x00\x00\x00\x01" + bytes(20)
        data = packet(1, b"a" * 10, 0, 10) + b"\x53\x04garbage" + fake + packet(2, b"b", 0, 1)
        framing = fuzzing.frame(data)
        assert [p.cnt for p in framing.packets] == [1, 2] and framing.bad == 2
        s = spead2.recv.Stream(thread_pool)
        s.add_buffer_reader(data)
        assert [h.cnt for h in s] == [1, 2]
        assert (s.stats.packets, s.stats.bad_packets) == (2, 2)

    def test_stream_model_frames_every_capture_as_the_buffer_model(self, corpus):
        for data in corpus:
            framing = fuzzing.frame_stream(data, 65536)
            assert [p.pos for p in framing.packets] == [p.pos for p in fuzzing.frame(data).packets]
            assert (framing.bad, framing.too_large) == (0, 0)

    def test_stream_model_predicts_the_tcp_reader(self, thread_pool):
        # zeros (8-byte skips), a header without PAYLOAD_LENGTH, an
        # oversized packet, a packet without HEAP_CNT, a partial packet
        fake = b"\x53\x04\x03\x05\x00\x00\x00\x01" + bytes(8)
        data = (packet(1, b"a" * 10, 0, 10) + bytes(24) + fake + packet(2, b"b" * 9000, 0, 9000)
                + packet(3, b"c", 0, 1) + packet(-1, b"dd", 0, 2, order="op")
                + packet(4, b"e" * 100, 0, 100)[:50])
        framing = fuzzing.frame_stream(data, 8192)
        assert [p.cnt for p in framing.packets] == [1, 3]
        assert (framing.bad, framing.too_large) == (3, 1)
        tally = Tally()
        target = TcpTarget(thread_pool, random.Random(SEED), tally, max_sizes=(8192,))
        try:
            target.run(data)
        finally:
            target.close()
        # run() checked the reader against the model; with its tail after
        # it, the partial packet is completed by the zero padding
        assert tally.stats["bad_packets"] == 2 and tally.stats["too_large_packets"] == 1

    def test_clean_captures_arrive_whole_with_their_tails(self, thread_pool, corpus):
        tally = Tally()
        target = BufferTarget(thread_pool, random.Random(SEED), tally)
        assert run_inputs(target, corpus) == []
        assert tally.heaps >= 2 * len(corpus)

    def test_a_stop_in_the_input_ends_the_stream_before_the_tail(self, thread_pool):
        tally = Tally()
        target = BufferTarget(thread_pool, random.Random(SEED), tally)
        target.run(packet(1, b"x", 0, 1) + stop_packet() + packet(2, b"y", 0, 1))
        assert tally.stops == 1 and tally.heaps == 1


class TestMutatedCaptures:
    def test_buffer_reader(self, thread_pool, corpus):
        rng = random.Random(SEED)
        mutator = Mutator(corpus, rng)
        tally = Tally()
        target = BufferTarget(thread_pool, rng, tally)
        failures = run_inputs(target, (mutator.buffer_input() for _ in range(BUFFER_MUTATIONS)))
        assert failures == []
        assert tally.inputs == BUFFER_MUTATIONS
        # the mutations reach deep: heaps are assembled, rejected and malformed
        assert tally.heaps > BUFFER_MUTATIONS
        assert tally.stats["bad_packets"] > 0 and tally.stats["rejected_packets"] > 0
        assert tally.update_errors["ValueError"] > 0

    def test_udp_reader_one_stream_for_all_inputs(self, udp_target, corpus):
        rng = random.Random(SEED + 1)
        mutator = Mutator(corpus, rng)
        udp_target.rng = rng
        failures = run_inputs(udp_target, (mutator.datagram_input(udp_target.max_size)
                                           for _ in range(UDP_MUTATIONS)))
        assert failures == []
        st = udp_target.stream.stats
        assert st.too_large_packets > 0 and st.bad_packets > 0 and st.heaps > UDP_MUTATIONS

    def test_tcp_reader(self, tcp_target, corpus):
        rng = random.Random(SEED + 6)
        mutator = Mutator(corpus, rng)
        tcp_target.rng = rng
        tally = tcp_target.tally
        failures = run_inputs(tcp_target, (mutator.buffer_input() for _ in range(TCP_MUTATIONS)))
        assert failures == []
        assert tally.stats["bad_packets"] > 0 and tally.stats["too_large_packets"] > 0
        assert tally.stats["worker_blocked"] > 0  # a full ring paused the reader
        assert tally.heaps > TCP_MUTATIONS

    @pytest.mark.interop
    def test_buffer_reader_on_reference_captures(self, thread_pool, ref_python, tmp_path):
        captures = fuzzing.reference_captures(ref_python, str(tmp_path))
        rng = random.Random(SEED + 2)
        tally = Tally()
        target = BufferTarget(thread_pool, rng, tally)
        assert run_inputs(target, captures) == []
        mutator = Mutator(captures, rng)
        assert run_inputs(target, (mutator.buffer_input() for _ in range(500))) == []


class TestGeneratedPackets:
    """The structure-aware generator, drawing from a seeded random.Random."""

    def test_buffer_reader(self, thread_pool):
        rng = random.Random(SEED + 4)
        draw = fuzzing.RandomDraw(rng)
        tally = Tally()
        target = BufferTarget(thread_pool, rng, tally)
        inputs = (b"".join(fuzzing.gen_packets(draw)) for _ in range(BUFFER_GENERATED))
        assert run_inputs(target, inputs) == []
        assert tally.stops > 0 and tally.stats["duplicate_packets"] > 0
        assert tally.stats["incomplete_heaps_evicted"] + tally.stats["incomplete_heaps_flushed"] > 0

    def test_tcp_reader(self, tcp_target):
        rng = random.Random(SEED + 7)
        tcp_target.rng = rng
        draw = fuzzing.RandomDraw(rng)
        inputs = (b"".join(fuzzing.gen_packets(draw)) for _ in range(TCP_GENERATED))
        assert run_inputs(tcp_target, inputs) == []

    def test_udp_reader(self, udp_target):
        rng = random.Random(SEED + 5)
        udp_target.rng = rng
        draw = fuzzing.RandomDraw(rng)
        inputs = (fuzzing.gen_packets(draw) for _ in range(UDP_GENERATED))
        assert run_inputs(udp_target, inputs) == []


class TestStructuredPackets:
    """The same generator driven by hypothesis (shrinks what it finds)."""

    @settings(max_examples=1000, **FUZZ_SETTINGS)
    @given(packets=fuzzing.hypothesis_packets(), seed=st.integers(0, 2**32))
    def test_buffer_reader(self, thread_pool, packets, seed):
        BufferTarget(thread_pool, random.Random(seed), Tally()).run(b"".join(packets))

    @settings(max_examples=500, **FUZZ_SETTINGS)
    @given(packets=fuzzing.hypothesis_packets(), seed=st.integers(0, 2**32))
    def test_udp_reader(self, udp_target, packets, seed):
        udp_target.rng = random.Random(seed)
        udp_target.run(packets)


def check_descriptor(data, hab, bug_compat):
    """Decode a descriptor packet and make an item of it: only the documented
    exceptions may come out, and an item made keeps what the packet said."""
    try:
        raw = decode_raw_descriptor(data, bug_compat)
    except ValueError:
        return "rejected"
    flavour = spead2.Flavour(4, 64, hab, bug_compat)
    try:
        item = spead2.Item.from_raw(raw, flavour)
    except ALLOWED_UPDATE_ERRORS:
        return "bad descriptor"
    assert (item.id, item.name, item.description) == \
        (raw.id, raw.name.decode("ascii"), raw.description.decode("ascii"))
    if not raw.numpy_header:
        assert item.shape == tuple(None if d < 0 else d for d in raw.shape)
    bits = item.itemsize_bits
    fixed = math.prod(d for d in item.shape if d is not None)
    need = (fixed * bits + 7) // 8
    for size in {0, 1, 8, need} if need <= 1 << 16 else {0, 1, 8}:
        try:
            item.set_from_raw(bytes(range(256)) * (size // 256) + bytes(range(size % 256)))
        except ALLOWED_UPDATE_ERRORS:
            pass
    return "item"


class TestDescriptors:
    @settings(max_examples=2000, **FUZZ_SETTINGS)
    @given(fuzzing.hypothesis_descriptor())
    def test_structured_descriptors(self, case):
        assert check_descriptor(*case) in {"rejected", "bad descriptor", "item"}

    def test_mutated_descriptors(self, corpus):
        rng = random.Random(SEED + 3)
        mutator = Mutator(corpus, rng)
        draw = fuzzing.RandomDraw(rng)
        outcomes = {}
        for _ in range(DESCRIPTOR_MUTATIONS):
            hab = rng.choice([40, 48, 32, 56, 8])
            bug_compat = rng.choice([0, 7, 1, 2])
            data = mutator.mutate_bytes(fuzzing.gen_descriptor(draw, hab, bug_compat & 3), 4)
            outcome = check_descriptor(data, hab, bug_compat)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert set(outcomes) == {"rejected", "bad descriptor", "item"}, outcomes


def test_long_run_entry_point_reports_figures(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run(
        [sys.executable, os.path.join(root, "tests", "fuzz_long.py"), "--inputs", "400",
         "--chunk", "250", "--seed", "5", "--json", "--save-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["inputs"] == 400
    assert (report["crashes"], report["hangs"], report["invariant_failures"]) == (0, 0, 0)
    assert report["stream_stats"]["packets"] > 400 and report["heaps_delivered"] > 400


class TestFoundByFuzzing:
    """Minimal reproductions of what the long run found."""

    @pytest.mark.parametrize("dtype, shape, value", [
        ("<U1", (), b"\xff\xff\xff\xff"),
        (">U2", (3,), b"\x00\x00\x00\x41" * 5 + b"\x7f\xff\xff\xff"),
        ([("a", ">U2"), ("b", "u1")], (1,), b"\xff" * 8 + b"\x05"),
    ])
    def test_unicode_values_beyond_u10ffff_are_value_errors(self, thread_pool, dtype, shape,
                                                             value):
        # A numpy 'U' item holds UCS-4 code units straight from the wire.
        # numpy makes a str of one only when asked (indexing, a 0-d value,
        # repr) and then raises SystemError for a code point past U+10FFFF,
        # or, inside a structured value, makes a str Python does not allow.
        # Seed 3, input 317317 of the long run hit it through update().
        desc = spead2.Descriptor(0x1000, "u", "", shape, dtype=dtype)
        raw = desc.to_raw(spead2.Flavour())
        payload = raw + value
        items = [(False, spead2.DESCRIPTOR_ID, 0), (False, 0x1000, len(raw))]
        s = spead2.recv.Stream(thread_pool)
        s.add_buffer_reader(packet(1, payload, 0, len(payload), items))
        (heap,) = list(s)
        with pytest.raises(ValueError, match="not Unicode code points"):
            spead2.ItemGroup().update(heap)

    def test_valid_unicode_values_still_decode(self, thread_pool):
        desc = spead2.Descriptor(0x1000, "u", "", (2,), dtype="<U3")
        raw = desc.to_raw(spead2.Flavour())
        payload = raw + "ab\U0010ffffxyz".encode("utf-32-le")
        items = [(False, spead2.DESCRIPTOR_ID, 0), (False, 0x1000, len(raw))]
        s = spead2.recv.Stream(thread_pool)
        s.add_buffer_reader(packet(1, payload, 0, len(payload), items))
        ig = spead2.ItemGroup()
        ig.update(next(iter(s)))
        assert ig["u"].value.tolist() == ["ab\U0010ffff", "xyz"]
