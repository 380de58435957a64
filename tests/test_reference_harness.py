"""Self-tests of the interoperability harness.

The first part needs no reference: the item sets and the value comparison.
The second runs the reference scripts against each other only (reference
sender to reference receiver), which proves the scripts and the item sets'
expected values right before they are used to judge our implementation.
"""

import pickle
import threading
import time
import types

import numpy as np
import pytest

import itemsets
import refimpl
from itemsets import FLAVOURS, ITEM_SETS, value_mismatch

N_HEAPS = 4


class TestValueComparison:
    def test_identical_arrays_match(self):
        assert value_mismatch(np.arange(5, dtype="<i4"), np.arange(5, dtype="<i4")) is None

    def test_byte_order_is_ignored(self):
        assert value_mismatch(np.arange(5, dtype=">i4"), np.arange(5, dtype="<i4")) is None

    def test_structured_byte_order_is_ignored(self):
        big = np.array([(1, 2.5)], dtype=[("a", ">i4"), ("b", ">f8")])
        little = big.astype([("a", "<i4"), ("b", "<f8")])
        assert value_mismatch(big, little) is None

    def test_memory_order_is_ignored(self):
        a = np.arange(6).reshape(2, 3)
        assert value_mismatch(a, np.asfortranarray(a)) is None

    def test_different_values_are_reported(self):
        why = value_mismatch(np.arange(5), np.array([0, 1, 2, 9, 4]))
        assert why is not None and "index 3" in why

    def test_different_dtype_kind_is_reported(self):
        assert value_mismatch(np.arange(3, dtype="u2"), np.arange(3, dtype="i2")) is not None

    def test_different_shape_is_reported(self):
        assert value_mismatch(np.zeros((2, 3)), np.zeros((3, 2))) is not None

    def test_numpy_scalar_must_stay_a_numpy_scalar(self):
        assert value_mismatch(np.int32(-5), np.int32(-5)) is None
        assert value_mismatch(np.int32(-5), -5) is not None
        assert value_mismatch(np.int32(-5), np.int64(-5)) is not None

    def test_fallback_list_matches_object_array_or_list(self):
        expected = [0xABC, 0xDEF, 0x123]
        assert value_mismatch(expected, np.array(expected, dtype=object)) is None
        assert value_mismatch(expected, list(expected)) is None

    def test_fallback_elements_must_be_python_ints(self):
        assert value_mismatch([1, 2], np.array([1, 2], dtype=np.int64)) is not None
        assert value_mismatch([1, 2], [1, np.int64(2)]) is not None

    def test_python_int_scalar(self):
        assert value_mismatch(0x123456789ABC, 0x123456789ABC) is None
        assert value_mismatch(1, True) is not None

    def test_string_must_be_str(self):
        assert value_mismatch("abc", "abc") is None
        assert value_mismatch("abc", b"abc") is not None


@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_values_survive_encoding_between_processes(name):
    itemset = ITEM_SETS[name]
    for i in range(3):
        values = itemset.values(i)
        encoded = pickle.loads(pickle.dumps(
            {k: itemsets.encode_value(v) for k, v in values.items()}))
        decoded = {k: itemsets.decode_value(v) for k, v in encoded.items()}
        for key, value in values.items():
            assert value_mismatch(value, decoded[key]) is None, key


@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_item_set_values_are_deterministic_and_vary_by_heap(name):
    itemset = ITEM_SETS[name]
    for key in itemset.values(0):
        assert value_mismatch(itemset.values(2)[key], itemset.values(2)[key]) is None
    assert any(value_mismatch(itemset.values(1)[key], itemset.values(2)[key]) is not None
               for key in itemset.values(0))


def test_object_array_encoding_keeps_python_ints():
    value = np.array([1, 2 ** 47], dtype=object)
    decoded = itemsets.decode_value(itemsets.encode_value(value))
    assert decoded.dtype == object and decoded.tolist() == [1, 2 ** 47]


class _StreamThatNeverEnds:
    """Yields nothing until stopped (or, with ``ignore_stop``, forever)."""

    def __init__(self, ignore_stop=False):
        self.stopped = threading.Event()
        self.stop_calls = 0
        self.ignore_stop = ignore_stop

    def __iter__(self):
        if self.ignore_stop:
            threading.Event().wait(60)
        else:
            self.stopped.wait(60)
        return iter(())

    def stop(self):
        self.stop_calls += 1
        self.stopped.set()


_FAKE_SPEAD2 = types.SimpleNamespace(ItemGroup=dict)


def test_collect_heaps_stops_a_stream_after_the_timeout():
    stream = _StreamThatNeverEnds()
    dump = itemsets.collect_heaps(_FAKE_SPEAD2, stream, timeout=0.2)
    assert dump["end"] == "timeout" and stream.stop_calls == 1
    assert dump["heaps"] == []


def test_collect_heaps_stops_a_stream_soon_after_stop_when():
    stream = _StreamThatNeverEnds()
    start = time.monotonic()
    dump = itemsets.collect_heaps(_FAKE_SPEAD2, stream, timeout=30, stop_when=lambda: True,
                                  grace=0.1)
    assert dump["end"] == "timeout" and time.monotonic() - start < 5


def test_collect_heaps_gives_up_on_a_stream_that_ignores_stop():
    dump = itemsets.collect_heaps(_FAKE_SPEAD2, _StreamThatNeverEnds(ignore_stop=True),
                                  timeout=0.1, stop_wait=0.1)
    assert dump["end"] == "hung"


def test_call_with_timeout_bounds_a_blocking_call():
    with pytest.raises(refimpl.CallTimeout):
        refimpl.call_with_timeout(lambda: threading.Event().wait(5), 0.1, "blocking call")
    assert refimpl.call_with_timeout(lambda: 42, 5, "quick call") == 42


# ---------------------------------------------------------------------------
# Reference against itself.

@pytest.mark.interop
@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("name", sorted(ITEM_SETS))
def test_reference_bytes_round_trip(ref_python, tmp_path, name, flavour):
    bits, bug_compat = FLAVOURS[flavour]
    data = ref_python.send_bytes(tmp_path / "stream.bin", name, N_HEAPS, bits, bug_compat)
    assert data[:2] == b"\x53\x04" and data[2:4] == bytes([(64 - bits) // 8, bits // 8])
    dump = ref_python.recv_bytes(tmp_path / "stream.bin", tmp_path / "dump.pkl", bug_compat)
    itemsets.assert_dump_matches(name, dump, N_HEAPS)


@pytest.mark.interop
def test_reference_receiver_reports_missing_heaps(ref_python, tmp_path):
    """The comparison notices a short stream (here: only the first heap's packets)."""
    data = ref_python.send_bytes(tmp_path / "stream.bin", "simple", 2)
    first_heap_packets = data[: len(data) // 3]
    (tmp_path / "short.bin").write_bytes(first_heap_packets)
    dump = ref_python.recv_bytes(tmp_path / "short.bin", tmp_path / "dump.pkl")
    assert itemsets.dump_mismatches("simple", dump, 2)


UDP_CASES = [(name, "64-40") for name in sorted(ITEM_SETS)] + [
    ("mix", flavour) for flavour in sorted(FLAVOURS) if flavour != "64-40"]


@pytest.mark.interop
@pytest.mark.parametrize("name, flavour", UDP_CASES)
def test_reference_udp_round_trip(ref_python, tmp_path, name, flavour):
    bits, bug_compat = FLAVOURS[flavour]
    out = tmp_path / "dump.pkl"
    receiver, port = ref_python.start_recv_udp(out, bug_compat=bug_compat, timeout=30)
    with receiver:
        with ref_python.start_send_udp(port, name, N_HEAPS, bits, bug_compat, rate=1e8) as sender:
            sender.finish(timeout=60)
        receiver.finish(timeout=60, terminate_after=10)
    itemsets.assert_dump_matches(name, refimpl.load_dump(out), N_HEAPS)


@pytest.mark.interop
def test_reference_udp_round_trip_ipv6(ref_python, tmp_path):
    import socket
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    out = tmp_path / "dump.pkl"
    receiver, port = ref_python.start_recv_udp(out, host="::1", timeout=30)
    with receiver:
        with ref_python.start_send_udp(port, "simple", N_HEAPS, host="::1") as sender:
            sender.finish(timeout=60)
        receiver.finish(timeout=60, terminate_after=10)
    itemsets.assert_dump_matches("simple", refimpl.load_dump(out), N_HEAPS)

